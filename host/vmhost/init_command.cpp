// `vmhost init --data-dir DIR`: a new cluster's secrets, once.
//
//   DIR/pki/ca.crt, ca.key                the cluster CA (signs the controller's
//                                         and every node's certificate)
//   DIR/pki/controller.crt, controller.key  the API's and the node server's
//                                         certificate (SANs: --address ...)
//   DIR/join-token                        nodes present it once to get their
//                                         certificate (then they use the cert)
//   DIR/api-token                         the API's bearer token (admin)
//   DIR/admin.kubeconfig, DIR/vmctl.yaml  clients, with the CA and the token
// Keys and tokens are written 0600. An existing CA is never overwritten.
#include "common/pki.h"
#include "vmhost/all_in_one.h"
#include "vmhost/usage.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace vmhost::cli {
namespace {

namespace fs = std::filesystem;

const char* kInitUsage =
    "usage: vmhost init --data-dir DIR [--address HOST_OR_IP]... [--api-port 8443]\n"
    "                   [--cluster-port 7070]\n";

std::string base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

int fail(const std::string& message) {
  std::fprintf(stderr, "vmhost init: %s\n", message.c_str());
  return 1;
}

}  // namespace

int initCluster(const std::vector<std::string>& args) {
  if (helpRequested(args)) return printUsage(kInitUsage);
  std::string dataDir;
  std::vector<std::string> addresses;
  int apiPort = 8443, clusterPort = 7070;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "vmhost init: %s needs a value\n%s", flag, kInitUsage);
        std::exit(2);
      }
      return args[++i];
    };
    const std::string& a = args[i];
    try {
      if (a == "--data-dir")
        dataDir = value("--data-dir");
      else if (a == "--address")
        addresses.push_back(value("--address"));
      else if (a == "--api-port")
        apiPort = std::stoi(value("--api-port"));
      else if (a == "--cluster-port")
        clusterPort = std::stoi(value("--cluster-port"));
      else {
        return usageError(
            "vmhost init",
            (a.size() > 1 && a[0] == '-' ? "unknown flag '" : "unexpected argument '") + a + "'",
            kInitUsage);
      }
    } catch (const std::exception&) {
      return usageError("vmhost init", a + ": expected a port number", kInitUsage);
    }
  }
  if (dataDir.empty()) {
    return usageError("vmhost init", "--data-dir is required", kInitUsage);
  }
  if (apiPort < 1 || apiPort > 65535 || clusterPort < 1 || clusterPort > 65535) {
    return fail("ports must be in 1..65535");
  }
  if (addresses.empty()) {
    addresses.push_back("127.0.0.1");
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) == 0 && host[0] != '\0') addresses.push_back(host);
  }
  addresses.push_back("localhost");
  fs::path dir = fs::absolute(dataDir).lexically_normal();
  fs::path pkiDir = dir / "pki";
  if (fs::exists(pkiDir / "ca.key")) {
    return fail(dir.string() +
                " already holds a cluster CA (pki/ca.key); refusing to overwrite it");
  }
  std::error_code ec;
  fs::create_directories(pkiDir, ec);
  if (ec) return fail("creating " + pkiDir.string() + ": " + ec.message());
  fs::permissions(pkiDir, fs::perms::owner_all, ec);

  auto ca = pki::createCa("vmhost cluster CA", 3650);
  if (!ca.ok()) return fail(ca.error().message);
  auto controllerKey = pki::generateKey();
  if (!controllerKey.ok()) return fail(controllerKey.error().message);
  auto controllerCert = pki::issue(ca.value(), controllerKey.value(), "vmhost-controller",
                                   addresses, /*server=*/true, /*client=*/false, 825);
  if (!controllerCert.ok()) return fail(controllerCert.error().message);
  std::string joinToken = pki::randomHex(24);
  std::string apiToken = pki::randomHex(24);
  std::string server = "https://" + addresses[0] + ":" + std::to_string(apiPort);

  std::string kubeconfig =
      "apiVersion: v1\nkind: Config\nclusters:\n- name: vmhost\n  cluster:\n"
      "    server: \"" +
      server + "\"\n    certificate-authority-data: " + base64(ca.value().certPem) +
      "\ncontexts:\n- name: vmhost\n  context: {cluster: vmhost, user: "
      "admin, namespace: default}\ncurrent-context: vmhost\nusers:\n- name: "
      "admin\n  user:\n    token: \"" +
      apiToken + "\"\n";
  std::string vmctl = "server: \"" + server + "\"\ntoken: \"" + apiToken +
                      "\"\ncertificateAuthority: \"" + (pkiDir / "ca.crt").string() + "\"\n";
  struct File {
    fs::path path;
    const std::string& text;
    unsigned mode;
  };
  const File files[] = {
      {pkiDir / "ca.crt", ca.value().certPem, 0644},
      {pkiDir / "ca.key", ca.value().keyPem, 0600},
      {pkiDir / "controller.crt", controllerCert.value(), 0644},
      {pkiDir / "controller.key", controllerKey.value(), 0600},
      {dir / "join-token", joinToken + "\n", 0600},
      {dir / "api-token", apiToken + "\n", 0600},
      {dir / "admin.kubeconfig", kubeconfig, 0600},
      {dir / "vmctl.yaml", vmctl, 0600},
  };
  for (const auto& f : files) {
    if (auto s = pki::writeFile(f.path.string(), f.text, f.mode); !s.ok()) {
      return fail(s.error().message);
    }
  }
  std::printf(
      "vmhost init: cluster secrets in %s\n"
      "  CA               pki/ca.crt (give it to every node: cluster.caFile)\n"
      "  controller cert  pki/controller.crt for %s\n"
      "  join token       join-token (nodes: cluster.joinTokenFile; used once per node)\n"
      "  API token        api-token; clients: admin.kubeconfig, vmctl.yaml (vmctl --config)\n"
      "Start the controller with --data-dir %s: it serves the API on :%d (https, bearer\n"
      "token) and nodes on :%d (mutual TLS).\n",
      dir.c_str(),
      [&] {
        std::string s;
        for (const auto& a : addresses) s += (s.empty() ? "" : ", ") + a;
        return s;
      }()
          .c_str(),
      dir.c_str(), apiPort, clusterPort);
  return 0;
}

}  // namespace vmhost::cli
