// The API server driven by the real kubectl: an in-process Server over a
// temporary SqliteStore on 127.0.0.1, a generated kubeconfig, and kubectl
// run as a user would (KUBECONFIG and HOME point into the sandbox so no
// user configuration interferes). Raw HTTP covers what kubectl cannot send
// (oversized and malformed bodies, watch from a compacted revision).
//
// kubectl missing is a failure with instructions, never a skip.
#define BOOST_TEST_MODULE api_kubectl
#include <boost/test/unit_test.hpp>

#include "api/migration.h"
#include "api/objects.h"
#include "apiserver/server.h"
#include "store/sqlite/sqlite_store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "common/yaml.h"

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using namespace vmhost;
using Json = nlohmann::json;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// VMHOST_TEST_KUBECTL picks another kubectl binary (e.g. Debian's v1.20 to
// check compatibility: the suite passes with both).
std::optional<std::string> findKubectl() {
  if (const char* forced = std::getenv("VMHOST_TEST_KUBECTL"); forced && *forced) {
    if (::access(forced, X_OK) == 0) return std::string(forced);
    return std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    fs::path p = fs::path(dir) / "kubectl";
    if (!dir.empty() && ::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return std::nullopt;
}

struct Run {
  int exit = -1;
  std::string out;
  std::string err;
};

struct HttpResult {
  int code = 0;
  std::string headers;
  std::string body;
};

// One server and store for the whole suite: kubectl's discovery and
// OpenAPI fetches are the slow part, and each case uses its own names.
class Env {
 public:
  static Env& get() {
    static Env env;
    return env;
  }

  fs::path dir;
  std::unique_ptr<store::SqliteStore> store;
  metrics::Registry metrics;
  std::unique_ptr<apiserver::Server> server;
  uint16_t port = 0;
  std::string kubectl;
  // kubectl's minor version: v1.20 (Debian's) validates manifests itself
  // against /openapi/v2 and lacks --subresource; v1.27+ leaves unknown
  // fields to the server (fieldValidation=Strict).
  int minor = 0;

  Run kc(const std::string& args, const std::string& envPrefix = "") {
    static int n = 0;
    ++n;
    fs::path out = dir / ("out" + std::to_string(n)), err = dir / ("err" + std::to_string(n));
    std::string cmd = envPrefix + " " + kubectl + " --request-timeout=10s " + args + " >" +
                      out.string() + " 2>" + err.string() + " </dev/null";
    int status = std::system(cmd.c_str());
    Run r;
    r.exit = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    BOOST_TEST_MESSAGE("kubectl " << args << " -> " << r.exit << "\n" << r.out << r.err);
    return r;
  }

  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
    return dir / name;
  }

  int64_t revision() { return store->currentRevision().value(); }

  // A minimal HTTP/1.1 client (Connection: close), for requests kubectl
  // cannot be made to send.
  HttpResult http(const std::string& method, const std::string& path,
                  const std::string& contentType = "", const std::string& body = "") {
    HttpResult res;
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd);
      return res;
    }
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (!contentType.empty()) req += "Content-Type: " + contentType + "\r\n";
    if (method != "GET") req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n" + body;
    size_t sent = 0;
    while (sent < req.size()) {
      ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;  // the server may answer 413 and close before reading it all
      sent += static_cast<size_t>(n);
    }
    // Read until the response is complete (Content-Length or the last
    // chunk): the server keeps connections open for the next request.
    std::string raw;
    char buf[65536];
    for (int i = 0; i < 100000; ++i) {
      size_t split = raw.find("\r\n\r\n");
      if (split != std::string::npos) {
        std::string head = raw.substr(0, split);
        size_t cl = head.find("Content-Length: ");
        if (cl != std::string::npos && raw.size() - split - 4 >= std::stoul(head.substr(cl + 16))) {
          break;
        }
        if (head.find("Transfer-Encoding: chunked") != std::string::npos &&
            raw.find("\r\n0\r\n\r\n", split) != std::string::npos) {
          break;
        }
      }
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      raw.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    size_t split = raw.find("\r\n\r\n");
    if (raw.size() < 12 || split == std::string::npos) return res;
    res.code = std::stoi(raw.substr(9, 3));
    res.headers = raw.substr(0, split);
    res.body = raw.substr(split + 4);
    if (res.headers.find("Transfer-Encoding: chunked") != std::string::npos) {
      std::string decoded;
      size_t pos = 0;
      for (int i = 0; i < 100000 && pos < res.body.size(); ++i) {
        size_t eol = res.body.find("\r\n", pos);
        if (eol == std::string::npos) break;
        size_t len = std::stoul(res.body.substr(pos, eol - pos), nullptr, 16);
        if (len == 0) break;
        decoded += res.body.substr(eol + 2, len);
        pos = eol + 2 + len + 2;
      }
      res.body = decoded;
    }
    return res;
  }

 private:
  Env() {
    auto found = findKubectl();
    BOOST_TEST_REQUIRE(found.has_value(),
                       "kubectl is not installed (not on PATH): the API tests drive the real "
                       "kubectl. Install it with deploy/install-deps.sh (Debian package "
                       "kubernetes-client).");
    kubectl = *found;
    {
      std::string out =
          (fs::temp_directory_path() / ("kubectl-version-" + std::to_string(::getpid()))).string();
      std::system((kubectl + " version --client -o json >" + out + " 2>/dev/null").c_str());
      Json v = Json::parse(slurp(out), nullptr, false);
      fs::remove(out);
      if (v.is_object() && v.contains("clientVersion")) {
        std::string m = v["clientVersion"].value("minor", "0");
        minor = std::atoi(m.c_str());
      }
      BOOST_TEST_REQUIRE(minor >= 20, "cannot tell kubectl's version (" << kubectl << ")");
      BOOST_TEST_MESSAGE("kubectl " << kubectl << ": minor version " << minor);
    }
    char tmpl[] = "/tmp/vmhost-api-kubectl-XXXXXX";
    dir = ::mkdtemp(tmpl);
    fs::create_directories(dir / "home");
    auto s = store::SqliteStore::open((dir / "data").string());
    BOOST_TEST_REQUIRE(s.ok(), (s.ok() ? "" : s.error().describe()));
    store = std::move(s.value());
    apiserver::ServerOptions opts;
    opts.listenAddress = "127.0.0.1:0";
    server = std::make_unique<apiserver::Server>(*store, metrics, opts);
    auto p = server->start();
    BOOST_TEST_REQUIRE(p.ok(), (p.ok() ? "" : p.error().describe()));
    port = *p;
    write("kubeconfig",
          "apiVersion: v1\nkind: Config\nclusters:\n- name: vmhost\n  cluster:\n    server: "
          "http://127.0.0.1:" +
              std::to_string(port) +
              "\ncontexts:\n- name: vmhost\n  context:\n    cluster: vmhost\n    user: vmhost\n"
              "    namespace: default\ncurrent-context: vmhost\nusers:\n- name: vmhost\n  user: "
              "{}\n");
    ::setenv("KUBECONFIG", (dir / "kubeconfig").c_str(), 1);
    ::setenv("HOME", (dir / "home").c_str(), 1);
  }
  ~Env() {
    server->stop();
    server.reset();
    store.reset();
    fs::remove_all(dir);
  }
};

std::string vmManifest(const std::string& name, const std::string& memory = "128Mi",
                       const std::string& extra = "") {
  return "apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata:\n  name: " + name +
         "\n  labels:\n    app: web\nspec:\n  memory: " + memory + "\n" + extra +
         "  cpu:\n    cores: 2\n  boot:\n    kernel: /var/lib/vmhost/guest/vmlinuz\n    initrd: "
         "/var/lib/vmhost/guest/initrd.img\n    cmdline: console=ttyS0\n  interfaces:\n  - name: "
         "net0\n    user: {}\n";
}

// Manifests read as the API and vmctl read them (common/yaml.h).
Json yamlToJson(const YAML::Node& n) {
  auto json = vmhost::yaml::toJson(n);
  BOOST_REQUIRE_MESSAGE(json.ok(), (json.ok() ? std::string() : json.error().message));
  return Json::parse(json.value());
}

// A background process (kubectl get -w), ended by its pid.
struct Background {
  pid_t pid = -1;
  fs::path out;
  Background(const std::string& kubectl, const std::vector<std::string>& args, fs::path outFile)
      : out(std::move(outFile)) {
    pid = ::fork();
    if (pid == 0) {
      FILE* f = std::freopen(out.c_str(), "w", stdout);
      (void)f;
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(kubectl.c_str()));
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(kubectl.c_str(), argv.data());
      ::_exit(127);
    }
  }
  ~Background() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      int status;
      ::waitpid(pid, &status, 0);
    }
  }
  // Waits (at most `timeout`) until the output contains `text`.
  bool waitFor(const std::string& text, std::chrono::seconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (slurp(out).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
};

int countOf(const std::string& haystack, const std::string& needle) {
  int n = 0;
  for (size_t p = haystack.find(needle); p != std::string::npos; p = haystack.find(needle, p + 1)) {
    ++n;
  }
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(discovery_and_version) {
  auto& env = Env::get();
  auto v = env.kc("version -o json");
  BOOST_TEST(v.exit == 0);
  BOOST_TEST(v.out.find("\"gitVersion\": \"v1.32.0+vmhost-") != std::string::npos);
  auto r = env.kc("api-resources");
  BOOST_TEST(r.exit == 0);
  BOOST_TEST(r.out.find("virtualmachines") != std::string::npos);
  BOOST_TEST(r.out.find("vmhost.io/v1") != std::string::npos);
  BOOST_TEST(r.out.find("kubevirt.io/v1alpha1") != std::string::npos);
  BOOST_TEST(r.out.find("nodes") != std::string::npos);
  auto ns = env.kc("get namespaces");
  BOOST_TEST(ns.exit == 0);
  BOOST_TEST(ns.out.find("default   Active") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(create_and_get_in_every_format) {
  auto& env = Env::get();
  auto file = env.write("get.yaml", vmManifest("get-vm"));
  auto c = env.kc("create -f " + file.string());
  BOOST_TEST(c.exit == 0);
  BOOST_TEST(c.out == "virtualmachine.vmhost.io/get-vm created\n");

  auto table = env.kc("get virtualmachines get-vm");
  BOOST_TEST(table.exit == 0);
  BOOST_TEST(table.out.rfind("NAME     PHASE     NODE   AGE", 0) == 0);
  BOOST_TEST(table.out.find("get-vm   Pending") != std::string::npos);

  auto json = env.kc("get virtualmachine get-vm -o json");
  BOOST_TEST_REQUIRE(json.exit == 0);
  Json j = Json::parse(json.out);
  BOOST_TEST(j["spec"]["memory"] == "128Mi");
  BOOST_TEST(j["spec"]["runStrategy"] == "Always");
  BOOST_TEST(j["metadata"]["generation"] == 1);
  BOOST_TEST(j["status"]["phase"] == "Pending");
  BOOST_TEST(!j["metadata"]["uid"].get<std::string>().empty());

  auto yaml = env.kc("get virtualmachine get-vm -o yaml");
  BOOST_TEST(yaml.exit == 0);
  BOOST_TEST(yaml.out.find("  memory: 128Mi\n") != std::string::npos);
  BOOST_TEST(yaml.out.find("kind: VirtualMachine\n") != std::string::npos);

  auto name = env.kc("get virtualmachines -l app=web -o name");
  BOOST_TEST(name.out.find("virtualmachine.vmhost.io/get-vm\n") != std::string::npos);
  auto none = env.kc("get virtualmachines -l app=db -o name");
  BOOST_TEST(none.out.find("get-vm") == std::string::npos);

  // What kubectl sees is what the store holds.
  auto stored = env.store->get(api::virtualMachineKey("default", "get-vm"));
  BOOST_TEST_REQUIRE(stored.ok());
  auto vm = api::decodeStoredVirtualMachine(*stored);
  BOOST_TEST_REQUIRE(vm.ok());
  BOOST_TEST(vm->spec.memory.value() == 128 * 1024 * 1024);
  BOOST_TEST(vm->metadata.resourceVersion == j["metadata"]["resourceVersion"]);
}

BOOST_AUTO_TEST_CASE(seed_vm_verbatim) {
  auto& env = Env::get();
  fs::path repo(VMHOST_TEST_SOURCE_DIR);
  fs::path fixture = repo / "tests/fixtures/seed-vm.yaml";
  fs::path shared = repo.parent_path() / "shared" / "seed-vm.yaml";
  if (fs::exists(shared)) BOOST_TEST(slurp(shared) == slurp(fixture));
  auto c = env.kc("create -f " + fixture.string());
  BOOST_TEST(c.exit == 0);
  BOOST_TEST(c.out == "vm.kubevirt.io/testvm created\n");

  // Read back through kubevirt.io: the spec is exactly the manifest's.
  auto back = env.kc("get vms.kubevirt.io testvm -o json");
  BOOST_TEST_REQUIRE(back.exit == 0);
  Json seed = yamlToJson(YAML::LoadFile(fixture.string()));
  Json got = Json::parse(back.out);
  BOOST_TEST(got["spec"] == seed["spec"]);
  BOOST_TEST(got["kind"] == "VM");

  // The same object through vmhost.io.
  auto vm = env.kc("get virtualmachine testvm -o json");
  BOOST_TEST_REQUIRE(vm.exit == 0);
  Json v = Json::parse(vm.out);
  BOOST_TEST(v["spec"]["memory"] == "8192Ki");
  BOOST_TEST(v["spec"]["nodeSelector"]["kubernetes.io/hostname"] == "master");
  BOOST_TEST(v["spec"]["interfaces"][0]["network"] == "default");
  BOOST_TEST(v["spec"]["graphics"]["type"] == "spice");
  BOOST_TEST(v["spec"]["video"]["model"] == "qxl");

  auto table = env.kc("get vms");
  BOOST_TEST(table.out.find("testvm") != std::string::npos);
  auto del = env.kc("delete -f " + fixture.string());
  BOOST_TEST(del.exit == 0);
  BOOST_TEST(del.out == "vm.kubevirt.io \"testvm\" deleted\n");
}

BOOST_AUTO_TEST_CASE(apply_creates_then_changes) {
  auto& env = Env::get();
  auto file = env.write("apply.yaml", vmManifest("apply-vm"));
  auto a = env.kc("apply -f " + file.string());
  BOOST_TEST(a.exit == 0);
  BOOST_TEST(a.out == "virtualmachine.vmhost.io/apply-vm created\n");
  auto same = env.kc("apply -f " + file.string());
  BOOST_TEST(same.out == "virtualmachine.vmhost.io/apply-vm unchanged\n");
  env.write("apply.yaml", vmManifest("apply-vm", "256Mi", "  runStrategy: Manual\n"));
  auto b = env.kc("apply -f " + file.string());
  BOOST_TEST(b.exit == 0);
  BOOST_TEST(b.out == "virtualmachine.vmhost.io/apply-vm configured\n");
  Json j = Json::parse(env.kc("get virtualmachine apply-vm -o json").out);
  BOOST_TEST(j["spec"]["memory"] == "256Mi");
  BOOST_TEST(j["spec"]["runStrategy"] == "Manual");
  BOOST_TEST(j["metadata"]["generation"] == 2);
  BOOST_TEST(
      j["metadata"]["annotations"].contains("kubectl.kubernetes.io/last-applied-configuration"));
}

BOOST_AUTO_TEST_CASE(watch_sees_create_patch_delete) {
  auto& env = Env::get();
  // One VM selected before the watch starts: kubectl lists it, then watches.
  auto pre = env.write("pre.yaml",
                       "apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata:\n"
                       "  name: watch-pre\n  labels:\n    watch: me\nspec:\n"
                       "  memory: 64Mi\n");
  BOOST_TEST(env.kc("create -f " + pre.string()).exit == 0);
  Background watch(env.kubectl,
                   {"--request-timeout=0", "get", "virtualmachines", "-w", "--output-watch-events",
                    "-l", "watch=me"},
                   env.dir / "watch.out");
  // Also a store watcher, as the reconcilers use: the same changes arrive.
  auto storeWatch = env.store->watch(api::kVirtualMachinesResource, "", env.revision());
  BOOST_TEST_REQUIRE(storeWatch.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // let kubectl start watching
  auto file = env.write("watch.yaml",
                        "apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata:\n"
                        "  name: watch-vm\n  labels:\n    watch: me\nspec:\n"
                        "  memory: 64Mi\n");
  BOOST_TEST(env.kc("create -f " + file.string()).exit == 0);
  BOOST_TEST(watch.waitFor("ADDED      watch-vm", std::chrono::seconds(10)));
  BOOST_TEST(env.kc("patch virtualmachine watch-vm --type=merge -p "
                    "'{\"spec\":{\"runStrategy\":\"Halted\"}}'")
                 .exit == 0);
  BOOST_TEST(watch.waitFor("MODIFIED   watch-vm", std::chrono::seconds(10)));
  // Leaving the label selection is a DELETED for this watcher; coming back, ADDED.
  BOOST_TEST(env.kc("label virtualmachine watch-vm watch=not-me --overwrite").exit == 0);
  BOOST_TEST(watch.waitFor("DELETED    watch-vm", std::chrono::seconds(10)));
  BOOST_TEST(env.kc("label virtualmachine watch-vm watch=me --overwrite").exit == 0);
  auto twice = [&](const std::string& line) {
    for (int i = 0; i < 200; ++i) {
      if (countOf(slurp(watch.out), line) >= 2) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  BOOST_TEST(twice("ADDED      watch-vm"));
  // The one that was selected before the watch began leaves the selection too.
  BOOST_TEST(env.kc("label virtualmachine watch-pre watch- ").exit == 0);
  BOOST_TEST(watch.waitFor("DELETED    watch-pre", std::chrono::seconds(10)));
  auto del = env.kc("delete virtualmachine watch-vm");
  BOOST_TEST(del.exit == 0);
  BOOST_TEST(twice("DELETED    watch-vm"));
  std::string out = slurp(watch.out);
  BOOST_TEST(countOf(out, "EVENT") == 1, "headers printed once:\n" << out);

  std::vector<std::string> types;
  for (int i = 0; i < 40 && types.size() < 5; ++i) {
    auto ev = (*storeWatch)->next(std::chrono::milliseconds(500));
    if (!ev) continue;
    if (ev->object->key.name != "watch-vm") continue;
    auto vm = api::decodeStoredVirtualMachine(*ev->object);
    BOOST_TEST(vm.ok());
    types.emplace_back(store::watchEventTypeName(ev->type));
  }
  BOOST_TEST(
      types == (std::vector<std::string>{"ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"}),
      boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(describe_patch_edit_delete) {
  auto& env = Env::get();
  auto file = env.write("life.yaml", vmManifest("life-vm"));
  BOOST_TEST(env.kc("create -f " + file.string()).exit == 0);

  auto d = env.kc("describe virtualmachine life-vm");
  BOOST_TEST(d.exit == 0);
  BOOST_TEST(d.out.find("Name:         life-vm") != std::string::npos);
  BOOST_TEST(d.out.find("Memory:") != std::string::npos);
  BOOST_TEST(d.out.find("Phase:  Pending") != std::string::npos);

  auto p = env.kc(
      "patch virtualmachine life-vm --type=merge -p "
      "'{\"spec\":{\"runStrategy\":\"Halted\",\"cpu\":{\"cores\":4}}}'");
  BOOST_TEST(p.exit == 0);
  BOOST_TEST(p.out == "virtualmachine.vmhost.io/life-vm patched\n");
  Json j = Json::parse(env.kc("get virtualmachine life-vm -o json").out);
  BOOST_TEST(j["spec"]["runStrategy"] == "Halted");
  BOOST_TEST(j["spec"]["cpu"]["cores"] == 4);
  BOOST_TEST(j["metadata"]["generation"] == 2);

  // kubectl edit: the "editor" rewrites the memory line.
  auto editor =
      env.write("editor.sh", "#!/bin/sh\nsed -i 's/memory: 128Mi/memory: 512Mi/' \"$1\"\n");
  fs::permissions(editor, fs::perms::owner_all);
  auto e = env.kc("edit virtualmachine life-vm", "EDITOR=" + shellQuote(editor.string()));
  BOOST_TEST(e.exit == 0);
  BOOST_TEST(e.out == "virtualmachine.vmhost.io/life-vm edited\n");
  j = Json::parse(env.kc("get virtualmachine life-vm -o json").out);
  BOOST_TEST(j["spec"]["memory"] == "512Mi");

  // The status subresource changes status only; the main resource ignores status.
  const std::string statusPatch =
      "{\"status\":{\"phase\":\"Running\",\"nodeName\":\"master\"},\"spec\":{\"memory\":"
      "\"1Gi\"}}";
  if (env.minor >= 24) {
    auto s = env.kc("patch virtualmachine life-vm --subresource=status --type=merge -p '" +
                    statusPatch + "'");
    BOOST_TEST(s.exit == 0);
  } else {  // kubectl before 1.24 has no --subresource
    auto s =
        env.http("PATCH", "/apis/vmhost.io/v1/namespaces/default/virtualmachines/life-vm/status",
                 "application/merge-patch+json", statusPatch);
    BOOST_TEST(s.code == 200);
  }
  auto ignored = env.kc(
      "patch virtualmachine life-vm --type=merge -p "
      "'{\"status\":{\"phase\":\"Failed\"}}'");
  BOOST_TEST(ignored.exit == 0);
  j = Json::parse(env.kc("get virtualmachine life-vm -o json").out);
  BOOST_TEST(j["status"]["phase"] == "Running");
  BOOST_TEST(j["status"]["nodeName"] == "master");
  BOOST_TEST(j["spec"]["memory"] == "512Mi");
  auto wide = env.kc("get virtualmachine life-vm");
  BOOST_TEST(wide.out.find("life-vm   Running   master") != std::string::npos);

  auto del = env.kc("delete virtualmachine life-vm");
  BOOST_TEST(del.exit == 0);
  BOOST_TEST(del.out == "virtualmachine.vmhost.io \"life-vm\" deleted\n");
  BOOST_TEST(env.store->get(api::virtualMachineKey("default", "life-vm")).error().code ==
             VMHOST_ERR_NOT_FOUND);
  auto gone = env.kc("get virtualmachine life-vm");
  BOOST_TEST(gone.exit != 0);
  BOOST_TEST(gone.err ==
             "Error from server (NotFound): virtualmachines.vmhost.io \"life-vm\" not found\n");
}

BOOST_AUTO_TEST_CASE(explain) {
  auto& env = Env::get();
  auto e = env.kc("explain virtualmachine.spec");
  BOOST_TEST(e.exit == 0);
  BOOST_TEST(e.out.find("KIND:") != std::string::npos);
  BOOST_TEST(e.out.find("VirtualMachine") != std::string::npos);
  BOOST_TEST(e.out.find("runStrategy\t<string>") != std::string::npos);
  BOOST_TEST(e.out.find("memory\t<") != std::string::npos);
  BOOST_TEST(e.out.find("Direct kernel boot") != std::string::npos);
  if (env.minor >= 27) {
    // kubectl v1.27+ reads /openapi/v3; make it read the Swagger 2.0
    // document (protobuf, as kubectl v1.20 always does) too.
    auto v2 = env.kc("explain virtualmachine.spec.runStrategy --output=plaintext-openapiv2");
    BOOST_TEST(v2.exit == 0);
    BOOST_TEST(v2.out.find("Whether the VM should run") != std::string::npos);
  }
  auto kv = env.kc("explain vms.spec.domain.memory");
  BOOST_TEST(kv.exit == 0);
  BOOST_TEST(kv.out.find("VM") != std::string::npos);
  BOOST_TEST(kv.out.find("libvirt unit") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(get_nodes) {
  auto& env = Env::get();
  api::Node node;
  node.metadata.name = "master";
  node.status.capacity.cpu = api::parseQuantity("2").value();
  node.status.capacity.memory = api::parseQuantity("24Gi").value();
  node.status.allocatable = node.status.capacity;
  node.status.conditions.push_back({"Ready", "True", "NodeReady", "vmhost node is ready", ""});
  BOOST_TEST_REQUIRE(api::registerNode(*env.store, node).ok());
  auto g = env.kc("get nodes");
  BOOST_TEST(g.exit == 0);
  BOOST_TEST(g.out.rfind("NAME     STATUS   CPU   MEMORY   AGE", 0) == 0);
  BOOST_TEST(g.out.find("master   Ready    2     24Gi") != std::string::npos);
  auto l = env.kc("get nodes -l kubernetes.io/hostname=master -o name");
  BOOST_TEST(l.out == "node.vmhost.io/master\n");
  auto c = env.kc("patch node master --type=merge -p '{\"spec\":{\"unschedulable\":true}}'");
  BOOST_TEST(c.exit == 0);
  BOOST_TEST(env.kc("get nodes").out.find("Ready,SchedulingDisabled") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(rejected_requests_change_nothing) {
  auto& env = Env::get();
  auto file = env.write("exists.yaml", vmManifest("exists-vm"));
  BOOST_TEST(env.kc("create -f " + file.string()).exit == 0);
  int64_t before = env.revision();

  auto neg = env.kc("create -f " + env.write("neg.yaml", vmManifest("neg-vm", "-128Mi")).string());
  BOOST_TEST(neg.exit != 0);
  BOOST_TEST(neg.err ==
             "The VirtualMachine \"neg-vm\" is invalid: spec.memory: Invalid value: \"-128Mi\": "
             "must be greater than zero\n");

  auto unknown =
      env.kc("create -f " +
             env.write("unknown.yaml", vmManifest("unknown-vm", "128Mi", "  foo: bar\n")).string());
  BOOST_TEST(unknown.exit != 0);
  if (env.minor >= 27) {
    BOOST_TEST(unknown.err ==
               "The VirtualMachine \"unknown-vm\" is invalid: spec.foo: Unknown field: field not "
               "declared in schema\n");
  } else {  // validated by kubectl itself against /openapi/v2
    BOOST_TEST(unknown.err.find("ValidationError(VirtualMachine.spec): unknown field \"foo\" in "
                                "io.vmhost.v1.VirtualMachine.spec") != std::string::npos);
  }
  // Whatever kubectl does, the server refuses it under Strict.
  auto strict = env.http(
      "POST", "/apis/vmhost.io/v1/namespaces/default/virtualmachines?fieldValidation=Strict",
      "application/yaml", vmManifest("unknown-vm", "128Mi", "  foo: bar\n"));
  BOOST_TEST(strict.code == 422);
  BOOST_TEST(Json::parse(strict.body)["details"]["causes"][0]["field"] == "spec.foo");

  auto badName = env.kc("create -f " + env.write("name.yaml", vmManifest("Bad_Name")).string());
  BOOST_TEST(badName.exit != 0);
  BOOST_TEST(badName.err.find("metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 "
                              "subdomain") != std::string::npos);

  auto model = env.kc("create -f " + env.write("model.yaml",
                                               "apiVersion: vmhost.io/v1\nkind: VirtualMachine\n"
                                               "metadata:\n  name: model-vm\nspec:\n  memory: 1Gi\n"
                                               "  interfaces:\n  - name: net0\n    user: {}\n"
                                               "    model: ne2k\n")
                                         .string());
  BOOST_TEST(model.err.find("spec.interfaces[0].model: Unsupported value: \"ne2k\": supported "
                            "values: \"virtio\", \"e1000\"") != std::string::npos);

  auto wrongType =
      env.kc("create -f " + env.write("type.yaml",
                                      "apiVersion: vmhost.io/v1\nkind: VirtualMachine\n"
                                      "metadata:\n  name: type-vm\nspec:\n  memory: 1Gi\n"
                                      "  cpu:\n    cores: many\n")
                                .string());
  if (env.minor >= 27) {
    BOOST_TEST(wrongType.err.find("spec.cpu.cores: Invalid value: \"string\": spec.cpu.cores in "
                                  "body must be of type integer: \"string\"") != std::string::npos);
  } else {
    BOOST_TEST(wrongType.err.find("spec.cpu.cores") != std::string::npos);
    BOOST_TEST(wrongType.err.find("expected \"integer\"") != std::string::npos);
  }

  auto exists = env.kc("create -f " + file.string());
  BOOST_TEST(exists.exit != 0);
  BOOST_TEST(exists.err == "Error from server (AlreadyExists): error when creating \"" +
                               file.string() +
                               "\": virtualmachines.vmhost.io \"exists-vm\" already exists\n");

  auto missing = env.kc("delete virtualmachine no-such-vm");
  BOOST_TEST(missing.exit != 0);
  BOOST_TEST(missing.err ==
             "Error from server (NotFound): virtualmachines.vmhost.io \"no-such-vm\" not found\n");

  auto badPatch = env.kc(
      "patch virtualmachine exists-vm --type=merge -p "
      "'{\"spec\":{\"memory\":\"-1Gi\"}}'");
  BOOST_TEST(badPatch.exit != 0);
  BOOST_TEST(badPatch.err.find("spec.memory: Invalid value: \"-1Gi\"") != std::string::npos);

  BOOST_TEST(env.revision() == before);
}

BOOST_AUTO_TEST_CASE(http_errors_are_status_objects) {
  auto& env = Env::get();
  const std::string coll = "/apis/vmhost.io/v1/namespaces/default/virtualmachines";
  int64_t before = env.revision();

  auto malformed = env.http("POST", coll, "application/json", "{\"metadata\": {\"name\": }");
  BOOST_TEST(malformed.code == 400);
  Json m = Json::parse(malformed.body);
  BOOST_TEST(m["kind"] == "Status");
  BOOST_TEST(m["reason"] == "BadRequest");
  BOOST_TEST(m["message"].get<std::string>().find("line 1, column 23") != std::string::npos);

  auto badYaml = env.http("POST", coll, "application/yaml", "metadata:\n  name: [x\nspec: 1\n");
  BOOST_TEST(badYaml.code == 400);
  BOOST_TEST(Json::parse(badYaml.body)["message"].get<std::string>().find(
                 "the request body is not valid YAML: line ") != std::string::npos);

  std::string laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    laughs += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 10; ++i) laughs += std::string(i ? ", *" : "*") + char(c - 1);
    laughs += "]\n";
  }
  auto bomb = env.http("POST", coll, "application/yaml", laughs);
  BOOST_TEST(bomb.code == 400);
  BOOST_TEST(Json::parse(bomb.body)["message"].get<std::string>().rfind(
                 "the request body is not valid YAML: it expands to too many nodes", 0) == 0);

  auto yaml = env.http("POST", coll, "application/yaml",
                       "apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata:\n  name: "
                       "yaml-vm\nspec:\n  memory: 64Mi\n");
  BOOST_TEST(yaml.code == 201);
  before = env.revision();

  auto big = env.http("POST", coll, "application/json", std::string(4u << 20, ' '));
  BOOST_TEST(big.code == 413);
  BOOST_TEST(Json::parse(big.body)["reason"] == "RequestEntityTooLarge");

  auto media = env.http("POST", coll, "application/xml", "<vm/>");
  BOOST_TEST(media.code == 415);
  auto smp = env.http("PATCH", coll + "/yaml-vm", "application/strategic-merge-patch+json", "{}");
  BOOST_TEST(smp.code == 415);

  auto method = env.http("DELETE", "/version");
  BOOST_TEST(method.code == 405);

  // PUT with a stale resourceVersion: 409 Conflict.
  Json cur = Json::parse(env.http("GET", coll + "/yaml-vm").body);
  Json stale = cur;
  stale["metadata"]["resourceVersion"] = "1";
  stale["spec"]["memory"] = "96Mi";
  auto put = env.http("PUT", coll + "/yaml-vm", "application/json", stale.dump());
  BOOST_TEST(put.code == 409);
  BOOST_TEST(Json::parse(put.body)["reason"] == "Conflict");
  BOOST_TEST(env.revision() == before);

  // The current one succeeds.
  Json fresh = cur;
  fresh["spec"]["memory"] = "96Mi";
  auto ok = env.http("PUT", coll + "/yaml-vm", "application/json", fresh.dump());
  BOOST_TEST(ok.code == 200);
  BOOST_TEST(env.revision() == before + 1);

  // JSON patch.
  auto jp = env.http("PATCH", coll + "/yaml-vm", "application/json-patch+json",
                     R"([{"op":"replace","path":"/spec/cpu/cores","value":3}])");
  BOOST_TEST(jp.code == 200);
  BOOST_TEST(Json::parse(jp.body)["spec"]["cpu"]["cores"] == 3);
}

BOOST_AUTO_TEST_CASE(watch_from_compacted_revision_is_gone) {
  auto& env = Env::get();
  BOOST_TEST_REQUIRE(env.store->compact(env.revision()).ok());
  auto w = env.http("GET",
                    "/apis/vmhost.io/v1/namespaces/default/virtualmachines?watch=true&"
                    "resourceVersion=1");
  BOOST_TEST(w.code == 200);
  Json ev = Json::parse(w.body.substr(0, w.body.find('\n')));
  BOOST_TEST(ev["type"] == "ERROR");
  BOOST_TEST(ev["object"]["code"] == 410);
  BOOST_TEST(ev["object"]["reason"] == "Expired");
}

BOOST_AUTO_TEST_CASE(metrics_exposition) {
  auto& env = Env::get();
  auto m = env.http("GET", "/metrics");
  BOOST_TEST(m.code == 200);
  BOOST_TEST(m.headers.find("text/plain; version=0.0.4") != std::string::npos);
  BOOST_TEST(m.body.find("# TYPE apiserver_request_total counter") != std::string::npos);
  BOOST_TEST(m.body.find("apiserver_request_total{verb=\"POST\",group=\"vmhost.io\",version=\"v1\","
                         "resource=\"virtualmachines\",subresource=\"\",code=\"201\"}") !=
             std::string::npos);
  BOOST_TEST(m.body.find("apiserver_request_duration_seconds_bucket{verb=\"GET\"") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(paging_selectors_dry_run_and_finalizers) {
  auto& env = Env::get();
  const std::string coll = "/apis/vmhost.io/v1/namespaces/paging/virtualmachines";
  for (int i = 0; i < 5; ++i) {
    auto r = env.http("POST", coll, "application/yaml",
                      "apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata:\n  name: page-" +
                          std::to_string(i) + "\nspec:\n  memory: 64Mi\n");
    BOOST_TEST(r.code == 201);
  }
  // limit/continue: pages of two, every item once, in name order.
  std::vector<std::string> names;
  std::string cont;
  for (int page = 0; page < 10; ++page) {
    auto r = env.http("GET", coll + "?limit=2" + (cont.empty() ? "" : "&continue=" + cont));
    BOOST_TEST_REQUIRE(r.code == 200);
    Json list = Json::parse(r.body);
    BOOST_TEST(list["kind"] == "VirtualMachineList");
    BOOST_TEST(list["items"].size() <= 2u);
    for (const auto& item : list["items"]) names.push_back(item["metadata"]["name"]);
    if (!list["metadata"].contains("continue")) break;
    cont = list["metadata"]["continue"];
  }
  BOOST_TEST(names == (std::vector<std::string>{"page-0", "page-1", "page-2", "page-3", "page-4"}),
             boost::test_tools::per_element());
  auto chunked = env.kc("get virtualmachines -n paging --chunk-size=2 -o name");
  BOOST_TEST(countOf(chunked.out, "virtualmachine.vmhost.io/page-") == 5);

  // Field selectors.
  BOOST_TEST(env.http("PATCH", coll + "/page-3/status", "application/merge-patch+json",
                      R"({"status":{"phase":"Running","nodeName":"master"}})")
                 .code == 200);
  auto running =
      env.kc("get virtualmachines -n paging --field-selector status.phase=Running -o name");
  BOOST_TEST(running.out == "virtualmachine.vmhost.io/page-3\n");
  auto badField = env.kc("get virtualmachines -n paging --field-selector spec.memory=1Gi");
  BOOST_TEST(badField.exit != 0);
  BOOST_TEST(badField.err.find("field label not supported: spec.memory") != std::string::npos);

  // Server-side dry run: the answer, no write.
  int64_t before = env.revision();
  auto dry = env.kc("create --dry-run=server -o name -f " +
                    env.write("dry.yaml", vmManifest("dry-vm")).string());
  BOOST_TEST(dry.exit == 0);
  BOOST_TEST(dry.out == "virtualmachine.vmhost.io/dry-vm\n");
  BOOST_TEST(env.revision() == before);
  BOOST_TEST(env.store->get(api::virtualMachineKey("default", "dry-vm")).error().code ==
             VMHOST_ERR_NOT_FOUND);

  // Finalizers hold a delete until they are removed.
  auto fin = env.http("POST", coll, "application/yaml",
                      "apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata:\n  name: held\n"
                      "  finalizers: [vmhost.io/node-cleanup]\nspec:\n  memory: 64Mi\n");
  BOOST_TEST(fin.code == 201);
  auto del = env.kc("delete virtualmachine held -n paging --wait=false");
  BOOST_TEST(del.exit == 0);
  Json held = Json::parse(env.http("GET", coll + "/held").body);
  BOOST_TEST(held["metadata"].contains("deletionTimestamp"));
  BOOST_TEST(held["metadata"]["generation"] == 2);
  auto release = env.kc(
      "patch virtualmachine held -n paging --type=merge -p '{\"metadata\":{\"finalizers\":null}}'");
  BOOST_TEST(release.exit == 0);
  BOOST_TEST(env.http("GET", coll + "/held").code == 404);
}

// vmhost.io/v1 VirtualMachineMigration as kubectl users see it. No
// migration controller runs here: the status is written as the controller
// would (the status subresource), and a delete without its finalizer is
// immediate.
BOOST_AUTO_TEST_CASE(virtual_machine_migrations) {
  auto& env = Env::get();
  const std::string coll = "/apis/vmhost.io/v1/namespaces/default/virtualmachinemigrations";
  auto resources = env.kc("api-resources --api-group=vmhost.io");
  BOOST_TEST(resources.exit == 0);
  BOOST_TEST(resources.out.find("virtualmachinemigrations") != std::string::npos);
  BOOST_TEST(resources.out.find("vmim,migration") != std::string::npos);

  const std::string manifest =
      "apiVersion: vmhost.io/v1\nkind: VirtualMachineMigration\nmetadata:\n  name: mig-a\n"
      "spec:\n  vmName: mig-vm1\n  targetNode: node-b\n  parameters:\n    maxDowntimeMs: 300\n"
      "    allowPostCopy: true\n";
  auto file = env.write("mig-a.yaml", manifest);
  auto a = env.kc("apply -f " + file.string());
  BOOST_TEST(a.exit == 0);
  BOOST_TEST(a.out == "virtualmachinemigration.vmhost.io/mig-a created\n");
  BOOST_TEST(env.kc("apply -f " + file.string()).out ==
             "virtualmachinemigration.vmhost.io/mig-a unchanged\n");
  BOOST_TEST(
      env.kc("create -f " + env.write("mig-b.yaml",
                                      "apiVersion: vmhost.io/v1\nkind: VirtualMachineMigration\n"
                                      "metadata:\n  name: mig-b\nspec:\n  vmName: mig-vm2\n")
                                .string())
          .exit == 0);

  // The controller's view of a running migration.
  auto st = env.http("PATCH", coll + "/mig-a/status", "application/merge-patch+json",
                     R"({"status":{"phase":"Running","sourceNode":"node-a","targetNode":"node-b",
                        "progress":{"dataTotalBytes":1000,"dataProcessedBytes":420,
                                    "dataRemainingBytes":580}}})");
  BOOST_TEST(st.code == 200);

  auto table = env.kc("get vmim");
  BOOST_TEST_REQUIRE(table.exit == 0);
  std::istringstream lines(table.out);
  std::string header, row;
  std::getline(lines, header);
  std::istringstream words(header);
  std::vector<std::string> columns{std::istream_iterator<std::string>(words), {}};
  BOOST_TEST(columns == (std::vector<std::string>{"NAME", "VM", "PHASE", "SOURCE", "TARGET",
                                                  "PROGRESS", "AGE"}),
             boost::test_tools::per_element());
  std::getline(lines, row);
  std::istringstream cells(row);
  std::vector<std::string> first{std::istream_iterator<std::string>(cells), {}};
  BOOST_TEST_REQUIRE(first.size() == 7u, row);
  BOOST_TEST(
      (std::vector<std::string>(first.begin(), first.begin() + 6)) ==
          (std::vector<std::string>{"mig-a", "mig-vm1", "Running", "node-a", "node-b", "42%"}),
      boost::test_tools::per_element());
  BOOST_TEST(table.out.find("\nmig-b ") != std::string::npos);
  BOOST_TEST(env.kc("get migration mig-a -o name").out ==
             "virtualmachinemigration.vmhost.io/mig-a\n");
  BOOST_TEST(env.kc("get virtualmachinemigration mig-b -o name").out ==
             "virtualmachinemigration.vmhost.io/mig-b\n");

  auto selected = env.kc("get vmim --field-selector spec.vmName=mig-vm1 -o name");
  BOOST_TEST(selected.out == "virtualmachinemigration.vmhost.io/mig-a\n");
  auto running = env.kc("get vmim --field-selector status.phase=Running -o name");
  BOOST_TEST(running.out == "virtualmachinemigration.vmhost.io/mig-a\n");

  // -o yaml round-trips: the spec as applied; replacing with it is a no-op.
  auto yaml = env.kc("get virtualmachinemigrations -o yaml");
  BOOST_TEST_REQUIRE(yaml.exit == 0);
  Json list = yamlToJson(YAML::Load(yaml.out));
  BOOST_TEST_REQUIRE(list["items"].size() == 2u);
  Json item = list["items"][0];
  BOOST_TEST(item["kind"] == "VirtualMachineMigration");
  BOOST_TEST(item["spec"] == yamlToJson(YAML::Load(manifest))["spec"]);
  BOOST_TEST(item["status"]["progress"]["dataRemainingBytes"] == 580);
  // (kubectl replace rewrites an apply's last-applied annotation, so the
  // object without one shows the no-op.)
  auto one = env.kc("get vmim mig-b -o yaml");
  int64_t before = env.revision();
  auto replaced = env.kc("replace -f " + env.write("mig-b-back.yaml", one.out).string());
  BOOST_TEST(replaced.exit == 0);
  BOOST_TEST(replaced.out == "virtualmachinemigration.vmhost.io/mig-b replaced\n");
  BOOST_TEST(env.revision() == before);
  BOOST_TEST(yamlToJson(YAML::Load(env.kc("get vmim mig-b -o yaml").out)) ==
             yamlToJson(YAML::Load(one.out)));
  Json a1 = yamlToJson(YAML::Load(env.kc("get vmim mig-a -o yaml").out));
  auto replacedA = env.kc(
      "replace -f " + env.write("mig-a-back.yaml", env.kc("get vmim mig-a -o yaml").out).string());
  BOOST_TEST(replacedA.exit == 0);
  Json a2 = yamlToJson(YAML::Load(env.kc("get vmim mig-a -o yaml").out));
  BOOST_TEST(a2["spec"] == a1["spec"]);
  BOOST_TEST(a2["status"] == a1["status"]);
  BOOST_TEST(a2["metadata"]["generation"] == 1);

  // Refused: no vmName (the field named), a changed spec (immutable).
  auto bad = env.kc("apply -f " + env.write("mig-bad.yaml",
                                            "apiVersion: vmhost.io/v1\nkind: "
                                            "VirtualMachineMigration\nmetadata:\n  name: "
                                            "mig-bad\nspec:\n  targetNode: node-b\n")
                                      .string());
  BOOST_TEST(bad.exit != 0);
  if (env.minor >= 27) {
    BOOST_TEST(bad.err.find("The VirtualMachineMigration \"mig-bad\" is invalid: spec.vmName: "
                            "Required value") != std::string::npos);
  } else {  // validated by kubectl itself against /openapi/v2
    BOOST_TEST(bad.err.find("missing required field \"vmName\"") != std::string::npos);
  }
  BOOST_TEST(env.http("GET", coll + "/mig-bad").code == 404);
  auto noVm = env.http("POST", coll, "application/yaml",
                       "apiVersion: vmhost.io/v1\nkind: VirtualMachineMigration\nmetadata:\n"
                       "  name: mig-bad\nspec:\n  targetNode: node-b\n");
  BOOST_TEST(noVm.code == 422);
  BOOST_TEST(Json::parse(noVm.body)["details"]["causes"][0]["field"] == "spec.vmName");

  before = env.revision();
  auto changed =
      env.kc("patch vmim mig-a --type=merge -p '{\"spec\":{\"targetNode\":\"node-c\"}}'");
  BOOST_TEST(changed.exit != 0);
  BOOST_TEST(changed.err.find("The VirtualMachineMigration \"mig-a\" is invalid: spec: Invalid "
                              "value: ") != std::string::npos);
  BOOST_TEST(changed.err.find("field is immutable") != std::string::npos);
  env.write("mig-a.yaml", manifest + "  nodeSelector:\n    zone: a\n");
  auto reapplied = env.kc("apply -f " + file.string());
  BOOST_TEST(reapplied.exit != 0);
  BOOST_TEST(reapplied.err.find("field is immutable") != std::string::npos);
  BOOST_TEST(env.revision() == before);

  // The VM's side: status.migration, as the nodes write it.
  BOOST_TEST(
      env.kc("create -f " + env.write("mig-vm1.yaml", vmManifest("mig-vm1")).string()).exit == 0);
  auto vmStatus =
      env.http("PATCH", "/apis/vmhost.io/v1/namespaces/default/virtualmachines/mig-vm1/status",
               "application/merge-patch+json",
               R"({"status":{"phase":"Running","nodeName":"node-a","migration":{"name":"mig-a",
          "uid":"u-1","sourceNode":"node-a","targetNode":"node-b","phase":"TargetReady",
          "target":{"domainXml":"<domain/>","migrateUri":"tcp://10.0.0.2","copyDisks":["vda"]}}}})");
  BOOST_TEST(vmStatus.code == 200);
  Json vm = Json::parse(env.kc("get virtualmachine mig-vm1 -o json").out);
  BOOST_TEST(vm["status"]["migration"]["target"]["domainXml"] == "<domain/>");
  BOOST_TEST(vm["status"]["migration"]["phase"] == "TargetReady");
  auto badRecord =
      env.http("PATCH", "/apis/vmhost.io/v1/namespaces/default/virtualmachines/mig-vm1/status",
               "application/merge-patch+json", R"({"status":{"migration":{"phase":"Pending"}}})");
  BOOST_TEST(badRecord.code == 422);
  BOOST_TEST(Json::parse(badRecord.body)["details"]["causes"][0]["field"] ==
             "status.migration.phase");
  auto explain = env.kc("explain virtualmachinemigration.spec.parameters");
  BOOST_TEST(explain.exit == 0);
  BOOST_TEST(explain.out.find("maxDowntimeMs") != std::string::npos);

  // Delete: at once without a finalizer; held by the controller's until it goes.
  auto del = env.kc("delete vmim mig-b");
  BOOST_TEST(del.exit == 0);
  BOOST_TEST(del.out == "virtualmachinemigration.vmhost.io \"mig-b\" deleted\n");
  BOOST_TEST(env.store->get(api::migrationKey("default", "mig-b")).error().code ==
             VMHOST_ERR_NOT_FOUND);
  auto fin = env.kc(
      "patch vmim mig-a --type=merge -p "
      "'{\"metadata\":{\"finalizers\":[\"vmhost.io/migration\"]}}'");
  BOOST_TEST(fin.exit == 0);
  auto held = env.kc("delete vmim mig-a --wait=false");
  BOOST_TEST(held.exit == 0);
  Json h = Json::parse(env.http("GET", coll + "/mig-a").body);
  BOOST_TEST(h["metadata"].contains("deletionTimestamp"));
  auto release = env.kc("patch vmim mig-a --type=merge -p '{\"metadata\":{\"finalizers\":null}}'");
  BOOST_TEST(release.exit == 0);
  BOOST_TEST(env.http("GET", coll + "/mig-a").code == 404);
  auto gone = env.kc("get vmim mig-a");
  BOOST_TEST(gone.err ==
             "Error from server (NotFound): virtualmachinemigrations.vmhost.io "
             "\"mig-a\" not found\n");
}
