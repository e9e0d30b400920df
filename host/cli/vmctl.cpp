// vmctl: the vmhost CLI over the HTTP API (libcurl + simdjson).
//
//   vmctl apply -f FILE|-               create or update each document (YAML or JSON)
//   vmctl get [vm|node|migration] [NAME] [-o json|yaml] [-A]
//   vmctl describe [vm|node|migration] NAME
//   vmctl delete [vm|migration] NAME
//   vmctl start NAME | stop NAME        runStrategy Always | Halted
//   vmctl wait NAME --for=phase=Running [--timeout=120s]
//   vmctl migrate VM [--to NODE] [--wait] [--timeout=30m]
//                                       create a VirtualMachineMigration (api/migration.h)
//   vmctl migrate VM --cancel [--wait]  delete the VM's unfinished migrations
//   vmctl cordon NODE | uncordon NODE   spec.unschedulable true | false
//   vmctl drain NODE [--timeout=5m]     cordon and evict (host/api/eviction.h)
//
// Server, token and namespace come from flags, then $VMHOST_SERVER /
// $VMHOST_TOKEN, then the config file (--config, $VMCTL_CONFIG, or
// ~/.config/vmhost/vmctl.yaml), then defaults (http://127.0.0.1:8080, default).
#include "api/events.h"
#include "api/eviction.h"
#include "api/migration_state.h"
#include "api/timestamps.h"
#include "api/vocabulary.h"
#include "cli/console.h"
#include "cli/http_client.h"
#include "common/yaml.h"

#include <simdjson.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace vmhost::cli {
namespace {

const char* kUsage =
    "usage: vmctl [--server URL] [--token T] [--certificate-authority CA.crt] [-n NAMESPACE]\n"
    "             [--config FILE] COMMAND\n"
    "\n"
    "commands:\n"
    "  apply -f FILE|-                      create or update each document (YAML or JSON)\n"
    "  get [vm|node|migration] [NAME] [-o json|yaml] [-A]\n"
    "  describe [vm|node|migration] NAME\n"
    "  delete [vm|migration] NAME\n"
    "  start NAME                           set runStrategy Always\n"
    "  stop NAME                            set runStrategy Halted\n"
    "  wait NAME --for=phase=PHASE [--timeout=120s]\n"
    "  console NAME                         the guest's serial console; Ctrl-] detaches\n"
    "  migrate VM [--to NODE] [--wait] [--timeout=30m]\n"
    "                                       live-migrate VM (to NODE, or where the scheduler\n"
    "                                       says); --wait follows it to the end\n"
    "  migrate VM --cancel [--wait]         cancel VM's unfinished migrations\n"
    "  cordon NODE                          no new VMs are placed on NODE\n"
    "  uncordon NODE                        undo cordon (and cancel a drain: its migrations\n"
    "                                       not started yet are withdrawn)\n"
    "  drain NODE [--timeout=5m]            cordon, then stop, re-place or live-migrate NODE's\n"
    "                                       VMs by their evictionStrategy (None: stop,\n"
    "                                       Restart: move, LiveMigrate: migrate while running)\n";

struct Options {
  std::string server;
  std::string token;
  std::string ns;
  std::string configFile;
  std::string caFile;  // https: the CA to trust (vmhost init's pki/ca.crt)
};

struct Kind {
  const char* kind;
  const char* apiPath;  // /apis/G/V
  const char* resource;
  bool namespaced;
  const char* display;  // what apply prints: virtualmachine.vmhost.io
};

const Kind kVirtualMachine{"VirtualMachine", "/apis/vmhost.io/v1", "virtualmachines", true,
                           "virtualmachine.vmhost.io"};
const Kind kNode{"Node", "/apis/vmhost.io/v1", "nodes", false, "node.vmhost.io"};
const Kind kSeedVm{"VM", "/apis/kubevirt.io/v1alpha1", "vms", true, "vm.kubevirt.io"};
const Kind kMigration{"VirtualMachineMigration", "/apis/vmhost.io/v1", "virtualmachinemigrations",
                      true, "virtualmachinemigration.vmhost.io"};

std::optional<Kind> kindForType(const std::string& t) {
  if (t == "vm" || t == "vms" || t == "virtualmachine" || t == "virtualmachines")
    return kVirtualMachine;
  if (t == "node" || t == "nodes" || t == "no") return kNode;
  if (t == "vmim" || t == "vmims" || t == "migration" || t == "migrations" ||
      t == "virtualmachinemigration" || t == "virtualmachinemigrations")
    return kMigration;
  return std::nullopt;
}

std::optional<Kind> kindForManifest(const std::string& apiVersion, const std::string& kind) {
  if (apiVersion == "vmhost.io/v1" && kind == "VirtualMachine") return kVirtualMachine;
  if (apiVersion == "vmhost.io/v1" && kind == "Node") return kNode;
  if (apiVersion == "vmhost.io/v1" && kind == "VirtualMachineMigration") return kMigration;
  if (apiVersion == "kubevirt.io/v1alpha1" && kind == "VM") return kSeedVm;
  return std::nullopt;
}

std::string collection(const Kind& k, const std::string& ns) {
  return std::string(k.apiPath) + (k.namespaced ? "/namespaces/" + ns : "") + "/" + k.resource;
}

// Bad usage (an unknown flag, a missing argument): the problem and the
// usage on stderr, exit status 2, as command-line conventions have it.
[[noreturn]] void usageError(const std::string& message) {
  std::fprintf(stderr, "vmctl: %s\n\n%s", message.c_str(), kUsage);
  std::exit(2);
}

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "vmctl: %s\n", message.c_str());
  std::exit(1);
}

std::string str(simdjson::dom::element e, const char* pointer, const std::string& fallback = "") {
  auto v = e.at_pointer(pointer);
  if (v.error() != simdjson::SUCCESS) return fallback;
  std::string_view s;
  if (v.get(s) == simdjson::SUCCESS) return std::string(s);
  return simdjson::to_string(v.value());
}

// Prints the server's Status message the way kubectl does and exits.
[[noreturn]] void serverError(const HttpResponse& r) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.body).get(doc) == simdjson::SUCCESS && str(doc, "/kind") == "Status") {
    std::string reason = str(doc, "/reason");
    std::fprintf(stderr, "Error from server%s: %s\n",
                 reason.empty() ? "" : (" (" + reason + ")").c_str(), str(doc, "/message").c_str());
  } else {
    std::fprintf(stderr, "Error from server: HTTP %ld: %.300s\n", r.status, r.body.c_str());
  }
  std::exit(1);
}

HttpResponse call(HttpClient& http, const std::string& method, const std::string& path,
                  const std::string& body = "", const std::string& type = "application/json") {
  auto r = http.request(method, path, body, type);
  if (!r.ok()) die(r.error().message);
  return std::move(r.value());
}

bool ok(const HttpResponse& r) { return r.status >= 200 && r.status < 300; }

uint64_t num(simdjson::dom::element e, const char* pointer) {
  auto v = e.at_pointer(pointer);
  if (v.error() != simdjson::SUCCESS) return 0;
  uint64_t u = 0;
  if (v.get(u) == simdjson::SUCCESS) return u;
  int64_t i = 0;
  if (v.get(i) == simdjson::SUCCESS) return i < 0 ? 0 : static_cast<uint64_t>(i);
  double d = 0;
  if (v.get(d) == simdjson::SUCCESS) return d < 0 ? 0 : static_cast<uint64_t>(d);
  return 0;
}

// --- migrations ----------------------------------------------------------------

// A VirtualMachineMigration as vmctl shows it (api/migration.h).
struct MigrationInfo {
  std::string ns, name, uid, vm, phase, reason, message, source, target, specTarget;
  std::string created, startTime, endTime;
  std::string drainNode;  // the drain that created it (api/eviction.h); "" if none
  bool deleting = false;
  bool hasProgress = false;
  uint64_t total = 0, processed = 0, remaining = 0, dirtyRate = 0, iteration = 0, elapsedMs = 0,
           maxDowntimeMs = 0;
  bool postCopy = false;
  std::string lastDecision;
  bool hasResult = false;
  uint64_t totalMs = 0, downtimeMs = 0, bytesTransferred = 0;
  std::string endedBy;

  bool finished() const {
    return phase == api::kMigrationSucceeded || phase == api::kMigrationFailed;
  }
  // Not yet on any node: what a cancel or an uncordon withdraws at once.
  bool started() const {
    return phase == api::kMigrationPreparingTarget || phase == api::kMigrationRunning || finished();
  }
  std::string where() const { return target.empty() ? specTarget : target; }
};

MigrationInfo migrationInfo(simdjson::dom::element e) {
  MigrationInfo m;
  m.ns = str(e, "/metadata/namespace");
  m.name = str(e, "/metadata/name");
  m.uid = str(e, "/metadata/uid");
  m.created = str(e, "/metadata/creationTimestamp");
  m.deleting = !str(e, "/metadata/deletionTimestamp").empty();
  // JSON pointer: "/" in a key is "~1".
  m.drainNode = str(e, "/metadata/annotations/vmhost.io~1drain-node");
  m.vm = str(e, "/spec/vmName");
  m.specTarget = str(e, "/spec/targetNode");
  m.phase = str(e, "/status/phase");
  m.reason = str(e, "/status/reason");
  m.message = str(e, "/status/message");
  m.source = str(e, "/status/sourceNode");
  m.target = str(e, "/status/targetNode");
  m.startTime = str(e, "/status/startTimestamp");
  m.endTime = str(e, "/status/endTimestamp");
  if (e.at_pointer("/status/progress").error() == simdjson::SUCCESS) {
    m.hasProgress = true;
    m.total = num(e, "/status/progress/dataTotalBytes");
    m.processed = num(e, "/status/progress/dataProcessedBytes");
    m.remaining = num(e, "/status/progress/dataRemainingBytes");
    m.dirtyRate = num(e, "/status/progress/dirtyRateBytesPerSecond");
    m.iteration = num(e, "/status/progress/memoryIteration");
    m.elapsedMs = num(e, "/status/progress/elapsedMs");
    m.maxDowntimeMs = num(e, "/status/progress/maxDowntimeMs");
    m.postCopy = str(e, "/status/progress/postCopy") == "true";
    m.lastDecision = str(e, "/status/progress/lastDecision");
  }
  if (e.at_pointer("/status/result").error() == simdjson::SUCCESS) {
    m.hasResult = true;
    m.totalMs = num(e, "/status/result/totalMs");
    m.downtimeMs = num(e, "/status/result/downtimeMs");
    m.bytesTransferred = num(e, "/status/result/bytesTransferred");
    m.endedBy = str(e, "/status/result/endedBy");
  }
  return m;
}

std::string mib(uint64_t bytes) {
  char buf[32];
  double v = static_cast<double>(bytes) / (1024.0 * 1024.0);
  std::snprintf(buf, sizeof buf, v >= 10 || bytes == 0 ? "%.0f MiB" : "%.1f MiB", v);
  return buf;
}

std::string mibPerSecond(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB/s", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

// Percent of the data processed, 0-100.
int percentOf(const MigrationInfo& m) {
  if (m.total == 0) return m.phase == api::kMigrationSucceeded ? 100 : 0;
  if (m.processed >= m.total) return 100;
  return static_cast<int>(static_cast<double>(m.processed) * 100.0 / static_cast<double>(m.total));
}

// "Pending (NodeLimit: waiting: ...)", "Failed (SchedulingFailed: ...)".
std::string phaseWithReason(const MigrationInfo& m) {
  std::string s = m.phase.empty() ? "Created" : m.phase;
  if (!m.reason.empty() || !m.message.empty()) {
    s += " (" + m.reason + (m.reason.empty() || m.message.empty() ? "" : ": ") + m.message + ")";
  }
  return s;
}

// One plain line, as printed every second when stdout is not a terminal:
//   NAME: Running 45% (100 MiB of 220 MiB, 120 MiB remaining), dirty 3.2 MiB/s,
//   iteration 3, elapsed 12.3 s[, post-copy][, last decision: ...]
std::string progressLine(const MigrationInfo& m, double waitedSeconds) {
  std::string line = m.name + ": ";
  if (m.phase == api::kMigrationRunning && m.hasProgress) {
    line += "Running " + std::to_string(percentOf(m)) + "% (" + mib(m.processed) + " of " +
            mib(m.total) + ", " + mib(m.remaining) + " remaining), dirty " +
            mibPerSecond(m.dirtyRate) + ", iteration " + std::to_string(m.iteration) +
            ", elapsed " + seconds(static_cast<double>(m.elapsedMs) / 1000.0);
    if (m.postCopy) line += ", post-copy";
    if (!m.lastDecision.empty()) line += ", last decision: " + m.lastDecision;
    return line;
  }
  line += phaseWithReason(m);
  if (!m.where().empty() && m.phase != api::kMigrationPending) line += ", to node " + m.where();
  line += ", waited " + seconds(waitedSeconds);
  return line;
}

int terminalColumns() {
  struct winsize ws {};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

// The one-line bar redrawn in place on a terminal:
//   [##########..........]  45% Running -> node-b  120 MiB left  3.2 MiB/s dirty  iter 3
//   12.3 s  last: raise max downtime to 600 ms
std::string progressBar(const MigrationInfo& m, double waitedSeconds) {
  constexpr int kWidth = 24;
  int pct = m.phase == api::kMigrationRunning ? percentOf(m) : 0;
  int filled = pct * kWidth / 100;
  std::string line = "[" + std::string(static_cast<size_t>(filled), '#') +
                     std::string(static_cast<size_t>(kWidth - filled), '.') + "] ";
  char p[8];
  std::snprintf(p, sizeof p, "%3d%%", pct);
  line += p;
  line += " " + (m.phase.empty() ? std::string("Created") : m.phase);
  if (!m.where().empty()) line += " -> " + m.where();
  if (m.phase == api::kMigrationRunning && m.hasProgress) {
    line += "  " + mib(m.remaining) + " left  " + mibPerSecond(m.dirtyRate) + " dirty  iter " +
            std::to_string(m.iteration) + "  " + seconds(static_cast<double>(m.elapsedMs) / 1000.0);
    if (m.postCopy) line += "  post-copy";
    if (!m.lastDecision.empty()) line += "  last: " + m.lastDecision;
  } else {
    line += "  " + seconds(waitedSeconds);
    if (!m.reason.empty()) line += "  " + m.reason + (m.message.empty() ? "" : ": " + m.message);
  }
  size_t cols = static_cast<size_t>(std::max(20, terminalColumns() - 1));
  if (line.size() > cols) line = line.substr(0, cols);
  return line;
}

// "migrated vm1 to node-b in 1.2 s (downtime 85 ms, 63 MiB moved)".
std::string migratedLine(const MigrationInfo& m, double waitedSeconds) {
  double total = m.hasResult ? static_cast<double>(m.totalMs) / 1000.0 : waitedSeconds;
  std::string line = "migrated " + m.vm + " to " + m.where() + " in " + seconds(total);
  if (m.hasResult) {
    line +=
        " (downtime " + std::to_string(m.downtimeMs) + " ms, " + mib(m.bytesTransferred) + " moved";
    if (!m.endedBy.empty()) line += ", " + m.endedBy;
    line += ")";
  }
  return line;
}

// --- output ------------------------------------------------------------------

void emitYaml(YAML::Emitter& out, simdjson::dom::element e) {
  switch (e.type()) {
    case simdjson::dom::element_type::OBJECT: {
      out << YAML::BeginMap;
      for (auto field : simdjson::dom::object(e)) {
        out << YAML::Key << std::string(field.key) << YAML::Value;
        emitYaml(out, field.value);
      }
      out << YAML::EndMap;
      break;
    }
    case simdjson::dom::element_type::ARRAY: {
      out << YAML::BeginSeq;
      for (auto item : simdjson::dom::array(e)) emitYaml(out, item);
      out << YAML::EndSeq;
      break;
    }
    case simdjson::dom::element_type::STRING: {
      std::string s{std::string_view(e)};
      // Quote strings that a YAML reader would take as another type: by
      // our own rules (common/yaml.h), and YAML 1.1's yes/no/on/off, which
      // kubectl's reader still takes as booleans.
      std::string lower;
      for (char c : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      bool quote = !yaml::plainScalarJson(s).empty() || lower == "true" || lower == "false" ||
                   lower == "null" || lower == "yes" || lower == "no" || lower == "on" ||
                   lower == "off" || lower == "y" || lower == "n" ||
                   s.find_first_not_of("0123456789.-+eE_:") == std::string::npos;
      if (quote) out << YAML::DoubleQuoted;
      out << s;
      break;
    }
    case simdjson::dom::element_type::NULL_VALUE:
      out << YAML::Null;
      break;
    default:
      out << simdjson::to_string(e);
      break;
  }
}

// Indented JSON, two spaces, as kubectl prints it.
void emitJson(std::string& out, simdjson::dom::element e, int depth) {
  std::string pad(static_cast<size_t>(depth + 1) * 2, ' ');
  std::string closePad(static_cast<size_t>(depth) * 2, ' ');
  switch (e.type()) {
    case simdjson::dom::element_type::OBJECT: {
      simdjson::dom::object obj(e);
      if (obj.size() == 0) {
        out += "{}";
        return;
      }
      out += "{\n";
      bool first = true;
      for (auto field : obj) {
        if (!first) out += ",\n";
        first = false;
        out += pad;
        yaml::appendJsonString(out, std::string(field.key));
        out += ": ";
        emitJson(out, field.value, depth + 1);
      }
      out += "\n" + closePad + "}";
      return;
    }
    case simdjson::dom::element_type::ARRAY: {
      simdjson::dom::array arr(e);
      if (arr.size() == 0) {
        out += "[]";
        return;
      }
      out += "[\n";
      bool first = true;
      for (auto item : arr) {
        if (!first) out += ",\n";
        first = false;
        out += pad;
        emitJson(out, item, depth + 1);
      }
      out += "\n" + closePad + "]";
      return;
    }
    default:
      out += simdjson::to_string(e);
  }
}

void printTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 3, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

std::vector<std::string> rowFor(const Kind& k, simdjson::dom::element item, bool allNamespaces) {
  std::vector<std::string> row;
  if (allNamespaces) row.push_back(str(item, "/metadata/namespace"));
  row.push_back(str(item, "/metadata/name"));
  if (std::string(k.resource) == "nodes") {
    std::string ready = "Unknown";
    auto conds = item.at_pointer("/status/conditions");
    if (conds.error() == simdjson::SUCCESS && conds.is_array()) {
      for (auto c : conds.get_array()) {
        if (str(c, "/type") == api::kReadyCondition)
          ready = str(c, "/status") == "True" ? "Ready" : "NotReady";
      }
    }
    auto unschedulable = item.at_pointer("/spec/unschedulable");
    bool cordoned = false;
    if (unschedulable.error() != simdjson::SUCCESS ||
        unschedulable.get(cordoned) != simdjson::SUCCESS) {
      cordoned = false;
    }
    row.push_back(ready + (cordoned ? ",SchedulingDisabled" : ""));
  } else if (std::string(k.resource) == kMigration.resource) {
    MigrationInfo m = migrationInfo(item);
    auto orNone = [](const std::string& v) { return v.empty() ? std::string("<none>") : v; };
    row.push_back(m.vm);
    row.push_back(orNone(m.phase) + (m.deleting && !m.finished() ? ",Cancelling" : ""));
    row.push_back(orNone(m.source));
    row.push_back(orNone(m.where()));
    row.push_back(m.hasProgress || m.phase == api::kMigrationSucceeded
                      ? std::to_string(percentOf(m)) + "%"
                      : "<none>");
    row.push_back(orNone(m.reason));
  } else {
    row.push_back(str(item, "/status/phase", "<none>"));
    row.push_back(str(item, "/status/nodeName", "<none>"));
  }
  row.push_back(api::ageOf(str(item, "/metadata/creationTimestamp")));
  return row;
}

// --- commands ----------------------------------------------------------------

int apply(HttpClient& http, const Options& o, const std::vector<std::string>& args) {
  std::string file;
  for (size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "-f" || args[i] == "--filename") && i + 1 < args.size())
      file = args[++i];
    else
      usageError("apply: unexpected argument '" + args[i] + "'");
  }
  if (file.empty()) usageError("apply: -f FILE is required");
  std::string text;
  if (file == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    text = ss.str();
  } else {
    std::ifstream in(file);
    if (!in) die(file + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  auto docs = yaml::parseAllToJson(text);
  if (!docs.ok()) die(file + ": invalid YAML: " + docs.error().message);
  int index = 0;
  for (const std::string& json : docs.value()) {
    ++index;
    if (json == "null") continue;
    simdjson::dom::parser parser;
    simdjson::dom::element e;
    if (parser.parse(json).get(e) != simdjson::SUCCESS || !e.is_object()) {
      die(file + ": document " + std::to_string(index) + ": not an object");
    }
    auto k = kindForManifest(str(e, "/apiVersion"), str(e, "/kind"));
    if (!k) {
      die(file + ": document " + std::to_string(index) + ": unsupported apiVersion/kind '" +
          str(e, "/apiVersion") + "' '" + str(e, "/kind") + "'");
    }
    std::string name = str(e, "/metadata/name");
    if (name.empty())
      die(file + ": document " + std::to_string(index) + ": metadata.name is required");
    std::string ns = str(e, "/metadata/namespace", o.ns);
    std::string base = collection(*k, ns);
    auto existing = call(http, "GET", base + "/" + name);
    if (existing.status == 404) {
      auto r = call(http, "POST", base, json);
      if (!ok(r)) serverError(r);
      std::printf("%s/%s created\n", k->display, name.c_str());
    } else if (ok(existing)) {
      auto r = call(http, "PATCH", base + "/" + name, json, "application/merge-patch+json");
      if (!ok(r)) serverError(r);
      std::printf("%s/%s configured\n", k->display, name.c_str());
    } else {
      serverError(existing);
    }
  }
  return 0;
}

struct Target {
  Kind kind;
  std::string name;
  std::string output;
  bool allNamespaces = false;
  std::string waitFor;
  long timeoutSeconds = 120;
};

// [TYPE] [NAME] plus flags; TYPE defaults to vm.
Target parseTarget(const std::string& cmd, const std::vector<std::string>& args,
                   bool typeOptional) {
  Target t{kVirtualMachine, "", "", false, "", 120};
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-o" && i + 1 < args.size())
      t.output = args[++i];
    else if (a.rfind("-o", 0) == 0 && a.size() > 2)
      t.output = a.substr(a[2] == '=' ? 3 : 2);
    else if (a.rfind("--output=", 0) == 0)
      t.output = a.substr(9);
    else if (a == "-A" || a == "--all-namespaces")
      t.allNamespaces = true;
    else if (a.rfind("--for=", 0) == 0)
      t.waitFor = a.substr(6);
    else if (a.rfind("--timeout=", 0) == 0) {
      std::string v = a.substr(10);
      if (!v.empty() && v.back() == 's') v.pop_back();
      try {
        t.timeoutSeconds = std::stol(v);
      } catch (...) {
        usageError(cmd + ": --timeout: expected seconds like 120s, got '" + a.substr(10) + "'");
      }
    } else if (!a.empty() && a[0] == '-')
      usageError(cmd + ": unknown flag '" + a + "'");
    else
      positional.push_back(a);
  }
  if (!positional.empty()) {
    if (auto k = kindForType(positional[0])) {
      t.kind = *k;
      positional.erase(positional.begin());
    } else if (!typeOptional || positional.size() > 1) {
      usageError(cmd + ": unknown resource type '" + positional[0] +
                 "' (expected vm, node or migration)");
    }
  }
  if (positional.size() > 1) usageError(cmd + ": too many arguments");
  if (!positional.empty()) t.name = positional[0];
  if (!t.output.empty() && t.output != "json" && t.output != "yaml" && t.output != "wide" &&
      t.output != "name") {
    usageError(cmd + ": -o: expected json, yaml, wide or name, got '" + t.output + "'");
  }
  return t;
}

int get(HttpClient& http, const Options& o, const std::vector<std::string>& args) {
  Target t = parseTarget("get", args, true);
  std::string path = t.allNamespaces && t.kind.namespaced
                         ? std::string(t.kind.apiPath) + "/" + t.kind.resource
                         : collection(t.kind, o.ns);
  if (!t.name.empty()) path += "/" + t.name;
  auto r = call(http, "GET", path);
  if (!ok(r)) serverError(r);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) die("the server sent invalid JSON");
  if (t.output == "json") {
    std::string out;
    emitJson(out, doc, 0);
    std::printf("%s\n", out.c_str());
    return 0;
  }
  if (t.output == "yaml") {
    YAML::Emitter out;
    emitYaml(out, doc);
    std::printf("%s\n", out.c_str());
    return 0;
  }
  std::vector<simdjson::dom::element> items;
  if (t.name.empty()) {
    auto list = doc.at_pointer("/items");
    if (list.error() == simdjson::SUCCESS && list.is_array()) {
      for (auto item : list.get_array()) items.push_back(item);
    }
  } else {
    items.push_back(doc);
  }
  if (t.output == "name") {
    for (auto item : items)
      std::printf("%s/%s\n", t.kind.display, str(item, "/metadata/name").c_str());
    return 0;
  }
  if (items.empty()) {
    std::fprintf(
        stderr, "No resources found%s.\n",
        t.kind.namespaced && !t.allNamespaces ? (" in " + o.ns + " namespace").c_str() : "");
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  bool all = t.allNamespaces && t.kind.namespaced;
  if (std::string(t.kind.resource) == "nodes")
    rows.push_back({"NAME", "STATUS", "AGE"});
  else if (std::string(t.kind.resource) == kMigration.resource) {
    std::vector<std::string> head{"NAME",   "VM",       "PHASE",  "SOURCE",
                                  "TARGET", "PROGRESS", "REASON", "AGE"};
    if (all) head.insert(head.begin(), "NAMESPACE");
    rows.push_back(head);
  } else if (all)
    rows.push_back({"NAMESPACE", "NAME", "PHASE", "NODE", "AGE"});
  else
    rows.push_back({"NAME", "PHASE", "NODE", "AGE"});
  for (auto item : items) rows.push_back(rowFor(t.kind, item, all));
  printTable(rows);
  return 0;
}

// "a=b,c=d" as a query parameter value.
std::string queryEscape(const std::string& v) {
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// The VM's Events, oldest first, as kubectl describe shows them.
void printEvents(HttpClient& http, const std::string& ns, const std::string& name,
                 const std::string& uid, const std::string& kind = api::kVirtualMachineKind) {
  std::string selector =
      "involvedObject.kind=" + kind + ",involvedObject.name=" + name + ",involvedObject.uid=" + uid;
  auto r = call(http, "GET",
                "/api/v1/namespaces/" + ns + "/events?fieldSelector=" + queryEscape(selector));
  std::printf("Events:\n");
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (!ok(r) || parser.parse(r.body).get(doc) != simdjson::SUCCESS) {
    std::printf("  <unavailable: HTTP %ld>\n", r.status);
    return;
  }
  auto items = doc.at_pointer("/items");
  if (items.error() != simdjson::SUCCESS || !items.is_array() || items.get_array().size() == 0) {
    std::printf("  <none>\n");
    return;
  }
  struct Row {
    std::string first, last, type, reason, age, from, message;
  };
  std::vector<Row> rows;
  for (auto e : items.get_array()) {
    Row row;
    row.first = str(e, "/firstTimestamp");
    row.last = str(e, "/lastTimestamp");
    row.type = str(e, "/type");
    row.reason = str(e, "/reason");
    row.from = str(e, "/source/component");
    if (!str(e, "/source/host").empty()) row.from += ", " + str(e, "/source/host");
    row.message = str(e, "/message");
    std::string count = str(e, "/count", "1");
    row.age = api::ageOf(row.last);
    if (count != "1") row.age += " (x" + count + " over " + api::ageOf(row.first) + ")";
    rows.push_back(std::move(row));
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const Row& a, const Row& b) { return a.last < b.last; });
  std::vector<std::vector<std::string>> table{{"  TYPE", "REASON", "AGE", "FROM", "MESSAGE"}};
  for (auto& row : rows) {
    table.push_back({"  " + row.type, row.reason, row.age, row.from, row.message});
  }
  printTable(table);
}

int describe(HttpClient& http, const Options& o, const std::vector<std::string>& args) {
  Target t = parseTarget("describe", args, true);
  if (t.name.empty()) usageError("describe: NAME is required");
  auto r = call(http, "GET", collection(t.kind, o.ns) + "/" + t.name);
  if (!ok(r)) serverError(r);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) die("the server sent invalid JSON");
  auto line = [](const char* key, const std::string& value) {
    std::printf("%-20s%s\n", key, value.empty() ? "<none>" : value.c_str());
  };
  line("Name:", str(doc, "/metadata/name"));
  if (t.kind.namespaced) line("Namespace:", str(doc, "/metadata/namespace"));
  std::string labels;
  auto l = doc.at_pointer("/metadata/labels");
  if (l.error() == simdjson::SUCCESS && l.is_object()) {
    for (auto f : l.get_object()) {
      labels += (labels.empty() ? "" : ",") + std::string(f.key) + "=" +
                std::string(std::string_view(f.value));
    }
  }
  line("Labels:", labels);
  line("UID:", str(doc, "/metadata/uid"));
  line("Created:", str(doc, "/metadata/creationTimestamp"));
  if (std::string(t.kind.resource) == kMigration.resource) {
    MigrationInfo m = migrationInfo(doc);
    if (m.deleting) line("Deleting:", str(doc, "/metadata/deletionTimestamp") + " (a cancel)");
    if (!m.drainNode.empty()) line("Drain Of Node:", m.drainNode);
    line("VM:", m.vm);
    line("Target Node:", m.specTarget.empty() ? "<the scheduler's choice>" : m.specTarget);
    line("Phase:", m.phase);
    line("Reason:", m.reason);
    line("Message:", m.message);
    line("Source:", m.source);
    line("Target:", m.target);
    line("Started:", m.startTime);
    line("Ended:", m.endTime);
    if (m.hasProgress) {
      std::printf("Progress:\n");
      std::printf("  %-18s%d%% (%s of %s)\n", "Data:", percentOf(m), mib(m.processed).c_str(),
                  mib(m.total).c_str());
      std::printf("  %-18s%s\n", "Remaining:", mib(m.remaining).c_str());
      std::printf("  %-18s%s\n", "Dirty Rate:", mibPerSecond(m.dirtyRate).c_str());
      std::printf("  %-18s%llu\n", "Iteration:", static_cast<unsigned long long>(m.iteration));
      std::printf("  %-18s%llu ms\n",
                  "Max Downtime:", static_cast<unsigned long long>(m.maxDowntimeMs));
      std::printf("  %-18s%s\n",
                  "Elapsed:", seconds(static_cast<double>(m.elapsedMs) / 1000.0).c_str());
      std::printf("  %-18s%s\n", "Post-copy:", m.postCopy ? "yes" : "no");
      std::printf("  %-18s%s\n",
                  "Last Decision:", m.lastDecision.empty() ? "<none>" : m.lastDecision.c_str());
    }
    if (m.hasResult) {
      std::printf("Result:\n");
      std::printf("  %-18s%s\n",
                  "Total:", seconds(static_cast<double>(m.totalMs) / 1000.0).c_str());
      std::printf("  %-18s%llu ms\n", "Downtime:", static_cast<unsigned long long>(m.downtimeMs));
      std::printf("  %-18s%s\n", "Moved:", mib(m.bytesTransferred).c_str());
      std::printf("  %-18s%s\n", "Ended By:", m.endedBy.empty() ? "<none>" : m.endedBy.c_str());
    }
    printEvents(http, m.ns, m.name, m.uid, api::kVirtualMachineMigrationKind);
    return 0;
  }
  if (std::string(t.kind.resource) == "virtualmachines") {
    line("Run Strategy:", str(doc, "/spec/runStrategy", "Always"));
    line("CPU Cores:", str(doc, "/spec/cpu/cores", "1"));
    line("Memory:", str(doc, "/spec/memory"));
    line("Phase:", str(doc, "/status/phase"));
    line("Node:", str(doc, "/status/nodeName"));
    line("Eviction Strategy:", str(doc, "/spec/evictionStrategy", "None"));
    if (doc.at_pointer("/status/migration").error() == simdjson::SUCCESS) {
      // status.migration: the migration in flight, or the last one.
      std::string m = str(doc, "/status/migration/name") + " " +
                      str(doc, "/status/migration/phase") + " from node " +
                      str(doc, "/status/migration/sourceNode") + " to node " +
                      str(doc, "/status/migration/targetNode");
      std::string reason = str(doc, "/status/migration/reason");
      if (!reason.empty()) m += " (" + reason + ")";
      line("Migration:", m);
    }
  } else {
    line("Capacity CPU:", str(doc, "/status/capacity/cpu"));
    line("Capacity Memory:", str(doc, "/status/capacity/memory"));
    line("Unschedulable:", str(doc, "/spec/unschedulable", "false"));
  }
  auto conds = doc.at_pointer("/status/conditions");
  std::printf("Conditions:\n");
  if (conds.error() == simdjson::SUCCESS && conds.is_array() && conds.get_array().size() > 0) {
    std::vector<std::vector<std::string>> rows{{"  TYPE", "STATUS", "REASON", "MESSAGE"}};
    for (auto c : conds.get_array()) {
      rows.push_back(
          {"  " + str(c, "/type"), str(c, "/status"), str(c, "/reason"), str(c, "/message")});
    }
    printTable(rows);
  } else {
    std::printf("  <none>\n");
  }
  auto ifaces = doc.at_pointer("/status/interfaces");
  if (ifaces.error() == simdjson::SUCCESS && ifaces.is_array() && ifaces.get_array().size() > 0) {
    std::printf("Interfaces:\n");
    for (auto i : ifaces.get_array()) {
      std::printf("  %-16s%s\n", str(i, "/name").c_str(), str(i, "/mac").c_str());
    }
  }
  if (std::string(t.kind.resource) == "virtualmachines") {
    printEvents(http, str(doc, "/metadata/namespace"), t.name, str(doc, "/metadata/uid"));
  }
  return 0;
}

int remove(HttpClient& http, const Options& o, const std::vector<std::string>& args) {
  Target t = parseTarget("delete", args, true);
  if (t.name.empty()) usageError("delete: NAME is required");
  auto r = call(http, "DELETE", collection(t.kind, o.ns) + "/" + t.name);
  if (!ok(r)) serverError(r);
  std::printf("%s \"%s\" deleted\n", t.kind.display, t.name.c_str());
  return 0;
}

int setRunStrategy(HttpClient& http, const Options& o, const std::vector<std::string>& args,
                   const char* cmd, const char* strategy) {
  if (args.size() != 1 || args[0].empty() || args[0][0] == '-')
    usageError(std::string(cmd) + ": usage: vmctl " + cmd + " NAME");
  std::string body = std::string(R"({"spec":{"runStrategy":")") + strategy + "\"}}";
  auto r = call(http, "PATCH", collection(kVirtualMachine, o.ns) + "/" + args[0], body,
                "application/merge-patch+json");
  if (!ok(r)) serverError(r);
  std::printf("%s/%s %s\n", kVirtualMachine.display, args[0].c_str(),
              std::string(strategy) == "Halted" ? "stopping" : "starting");
  return 0;
}

int wait(HttpClient& http, const Options& o, const std::vector<std::string>& args) {
  Target t = parseTarget("wait", args, true);
  if (t.name.empty()) usageError("wait: NAME is required");
  if (t.waitFor.rfind("phase=", 0) != 0) usageError("wait: --for=phase=PHASE is required");
  std::string want = t.waitFor.substr(6);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(t.timeoutSeconds);
  std::string last = "<none>";
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = call(http, "GET", collection(t.kind, o.ns) + "/" + t.name);
    if (ok(r)) {
      simdjson::dom::parser parser;
      simdjson::dom::element doc;
      if (parser.parse(r.body).get(doc) == simdjson::SUCCESS) {
        last = str(doc, "/status/phase", "<none>");
        if (last == want) {
          std::printf("%s/%s condition met (phase=%s)\n", t.kind.display, t.name.c_str(),
                      want.c_str());
          return 0;
        }
      }
    } else if (r.status != 404) {
      serverError(r);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  std::fprintf(stderr, "vmctl: timed out after %lds waiting for %s/%s phase=%s (last phase: %s)\n",
               t.timeoutSeconds, t.kind.display, t.name.c_str(), want.c_str(), last.c_str());
  return 1;
}

// --- cordon / uncordon / drain --------------------------------------------------

std::string nodeArg(const std::string& cmd, const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  for (const auto& a : args) {
    if (a.rfind("--timeout=", 0) == 0 && cmd == "drain") continue;
    if (!a.empty() && a[0] == '-') usageError(cmd + ": unknown flag '" + a + "'");
    positional.push_back(a);
  }
  // An optional resource type first, as in `kubectl cordon node NAME`.
  if (positional.size() == 2 &&
      (positional[0] == "node" || positional[0] == "nodes" || positional[0] == "no")) {
    positional.erase(positional.begin());
  }
  if (positional.size() != 1) {
    usageError(cmd + ": usage: vmctl " + cmd + " NODE" + (cmd == "drain" ? " [--timeout=5m]" : ""));
  }
  return positional[0];
}

// "90", "90s", "5m", "1h" -> seconds.
long parseDuration(const std::string& flag, const std::string& v) {
  if (v.empty()) usageError(flag + ": expected a duration like 90s, 5m or 1h");
  long unit = 1;
  std::string digits = v;
  switch (v.back()) {
    case 's':
      digits.pop_back();
      break;
    case 'm':
      unit = 60;
      digits.pop_back();
      break;
    case 'h':
      unit = 3600;
      digits.pop_back();
      break;
    default:
      break;
  }
  if (digits.empty() || digits.size() > 9 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    usageError(flag + ": expected a duration like 90s, 5m or 1h, got '" + v + "'");
  }
  return std::stol(digits) * unit;
}

void patchNode(HttpClient& http, const std::string& node, const std::string& body) {
  auto r =
      call(http, "PATCH", collection(kNode, "") + "/" + node, body, "application/merge-patch+json");
  if (r.status == 404) die("node \"" + node + "\" not found");
  if (!ok(r)) serverError(r);
}

std::map<std::string, MigrationInfo> drainMigrations(HttpClient& http, const std::string& node);

int cordon(HttpClient& http, const std::vector<std::string>& args, bool on) {
  std::string node = nodeArg(on ? "cordon" : "uncordon", args);
  // Uncordoning also withdraws a drain request: evictions not completed yet
  // are cancelled and those VMs run on here.
  patchNode(http, node,
            on ? R"({"spec":{"unschedulable":true}})"
               : std::string(R"({"spec":{"unschedulable":false},"metadata":{"annotations":{")") +
                     std::string(api::kDrainAnnotation) + R"(":null}}})");
  std::printf("node/%s %s\n", node.c_str(), on ? "cordoned" : "uncordoned");
  if (on) return 0;
  // The drain's live migrations: the controller withdraws (deletes) those
  // not started yet; those already on the nodes are left to finish.
  for (const auto& [key, m] : drainMigrations(http, node)) {
    if (m.finished() || m.deleting) continue;
    std::string display = std::string(kMigration.display) + "/" + m.name;
    if (m.started()) {
      std::printf(
          "%s (VM %s) is %s to node %s: left to finish (vmctl migrate %s -n %s --cancel "
          "stops it)\n",
          display.c_str(), key.c_str(), m.phase.c_str(), m.where().c_str(), m.vm.c_str(),
          m.ns.c_str());
    } else {
      std::printf("%s (VM %s) has not started (%s): withdrawn by the controller\n", display.c_str(),
                  key.c_str(), m.phase.empty() ? "just created" : m.phase.c_str());
    }
  }
  return 0;
}

struct BoundVm {
  std::string key;  // namespace/name
  std::string strategy;
  std::string phase;
  std::string evicting;        // the Evicting condition's status, "" if none
  std::string evictingReason;  // and its reason and message
  std::string evictingMessage;
};

// The VMs bound to `node` (status.nodeName), across namespaces.
std::vector<BoundVm> vmsOn(HttpClient& http, const std::string& node) {
  auto r = call(http, "GET", std::string(kVirtualMachine.apiPath) + "/" + kVirtualMachine.resource);
  if (!ok(r)) serverError(r);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) die("the VM list is not valid JSON");
  std::vector<BoundVm> out;
  auto items = doc.at_pointer("/items");
  if (items.error() != simdjson::SUCCESS || !items.is_array()) return out;
  for (auto vm : items.get_array()) {
    if (str(vm, "/status/nodeName") != node) continue;
    if (!str(vm, "/metadata/deletionTimestamp").empty()) continue;
    BoundVm b;
    b.key = str(vm, "/metadata/namespace") + "/" + str(vm, "/metadata/name");
    b.strategy = str(vm, "/spec/evictionStrategy", "None");
    b.phase = str(vm, "/status/phase", "Pending");
    auto conds = vm.at_pointer("/status/conditions");
    if (conds.error() == simdjson::SUCCESS && conds.is_array()) {
      for (auto c : conds.get_array()) {
        if (str(c, "/type") != api::kEvictingCondition) continue;
        b.evicting = str(c, "/status");
        b.evictingReason = str(c, "/reason");
        b.evictingMessage = str(c, "/message");
      }
    }
    out.push_back(std::move(b));
  }
  return out;
}

// The migrations a drain of `node` created (annotation vmhost.io/drain-node),
// across namespaces, by "namespace/vm". An API without migrations: none.
std::map<std::string, MigrationInfo> drainMigrations(HttpClient& http, const std::string& node) {
  std::map<std::string, MigrationInfo> out;
  auto r = http.request("GET", std::string(kMigration.apiPath) + "/" + kMigration.resource);
  if (!r.ok() || !ok(r.value())) return out;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.value().body).get(doc) != simdjson::SUCCESS) return out;
  auto items = doc.at_pointer("/items");
  if (items.error() != simdjson::SUCCESS || !items.is_array()) return out;
  for (auto item : items.get_array()) {
    MigrationInfo m = migrationInfo(item);
    if (m.drainNode != node) continue;
    std::string key = m.ns + "/" + m.vm;
    // The newest one of a VM counts (an earlier drain's may be there too).
    if (out.count(key) == 0 || out[key].created <= m.created) out[key] = std::move(m);
  }
  return out;
}

int drain(HttpClient& http, const std::vector<std::string>& args) {
  std::string node = nodeArg("drain", args);
  long timeoutSeconds = 300;
  for (const auto& a : args) {
    if (a.rfind("--timeout=", 0) == 0) timeoutSeconds = parseDuration("--timeout", a.substr(10));
  }
  auto got = call(http, "GET", collection(kNode, "") + "/" + node);
  if (got.status == 404) die("node \"" + node + "\" not found");
  if (!ok(got)) serverError(got);
  patchNode(http, node,
            std::string(R"({"spec":{"unschedulable":true},"metadata":{"annotations":{")") +
                std::string(api::kDrainAnnotation) + R"(":")" + api::nowRfc3339() + R"("}}})");
  std::printf("node/%s cordoned\n", node.c_str());
  std::fflush(stdout);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSeconds);
  std::map<std::string, std::string> shown;  // VM -> the progress line last printed
  std::string summaryShown;
  std::vector<BoundVm> left;
  while (true) {
    left = vmsOn(http, node);
    auto migrations = drainMigrations(http, node);
    for (auto& [key, line] : shown) {
      bool still = false;
      for (const auto& vm : left) still |= vm.key == key;
      if (!still && line != "gone") {
        auto m = migrations.find(key);
        if (m != migrations.end() && m->second.phase == api::kMigrationSucceeded) {
          std::printf("%s\n", ("migrated " + key + " to node " + m->second.where() + " (" +
                               m->second.name + ")")
                                  .c_str());
        } else {
          std::printf("evicted %s\n", key.c_str());
        }
        line = "gone";
      }
    }
    if (left.empty()) {
      std::printf("node/%s drained\n", node.c_str());
      return 0;
    }
    int running = 0, pending = 0;
    for (const auto& [key, m] : migrations) {
      if (m.finished() || m.deleting) continue;
      if (m.started()) {
        ++running;
      } else {
        ++pending;
      }
    }
    for (const auto& vm : left) {
      std::string state;
      std::string verb = "evicting";
      auto m = migrations.find(vm.key);
      if (vm.evicting == "True") {
        state = vm.phase == "Stopped" ? "stopped, waiting to be unbound" : "stopping";
      } else if (vm.strategy == "LiveMigrate" &&
                 (vm.phase == "Running" || (m != migrations.end() && !m->second.finished()))) {
        verb = "migrating";
        if (m == migrations.end()) {
          state = "waiting for its migration";
        } else if (m->second.phase == api::kMigrationFailed) {
          state =
              m->second.name + " " + phaseWithReason(m->second) + "; the controller tries again";
        } else {
          state = m->second.name + " " + phaseWithReason(m->second);
          if (!m->second.where().empty() && m->second.started()) {
            state += " to node " + m->second.where();
          }
        }
      } else {
        state = "waiting (phase " + vm.phase + ")";
      }
      std::string line = verb + " " + vm.key + " (evictionStrategy " + vm.strategy + "): " + state;
      if (shown[vm.key] != line) {
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
        shown[vm.key] = line;
      }
    }
    std::string summary = "node/" + node + ": " + std::to_string(left.size()) +
                          (left.size() == 1 ? " VM" : " VMs") + " left, " +
                          std::to_string(running) + " migrating, " + std::to_string(pending) +
                          " waiting to migrate";
    if (summary != summaryShown) {
      std::printf("%s\n", summary.c_str());
      summaryShown = summary;
    }
    std::fflush(stdout);
    if (std::chrono::steady_clock::now() >= deadline) break;
    auto n = call(http, "GET", collection(kNode, "") + "/" + node);
    if (ok(n)) {
      simdjson::dom::parser parser;
      simdjson::dom::element doc;
      if (parser.parse(n.body).get(doc) == simdjson::SUCCESS &&
          doc.at_pointer("/metadata/annotations/vmhost.io~1drain").error() != simdjson::SUCCESS) {
        die("the drain of node " + node + " was cancelled (the node was uncordoned)");
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  std::string names;
  for (const auto& vm : left) names += (names.empty() ? "" : ", ") + vm.key;
  std::fprintf(stderr,
               "vmctl: timed out after %lds draining node %s; still bound to it: %s (the drain "
               "goes on in the controller; vmctl uncordon %s cancels it)\n",
               timeoutSeconds, node.c_str(), names.c_str(), node.c_str());
  return 1;
}

// --- migrate ---------------------------------------------------------------------

std::string migrationsPath(const std::string& ns) { return collection(kMigration, ns); }

// The migrations of VM `vm` in `ns` (field selector spec.vmName).
std::vector<MigrationInfo> migrationsOf(HttpClient& http, const std::string& ns,
                                        const std::string& vm) {
  auto r =
      call(http, "GET", migrationsPath(ns) + "?fieldSelector=" + queryEscape("spec.vmName=" + vm));
  if (!ok(r)) serverError(r);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) die("the server sent invalid JSON");
  std::vector<MigrationInfo> out;
  auto items = doc.at_pointer("/items");
  if (items.error() == simdjson::SUCCESS && items.is_array()) {
    for (auto item : items.get_array()) {
      MigrationInfo m = migrationInfo(item);
      if (m.vm == vm) out.push_back(std::move(m));  // a server without the selector
    }
  }
  return out;
}

// GET of one migration; nullopt when it is gone (404); a failed request is
// retried by the caller (a controller restart must not end a long wait).
struct Polled {
  bool gone = false;
  bool unreachable = false;
  std::string error;
  MigrationInfo m;
};

Polled pollMigration(HttpClient& http, const std::string& ns, const std::string& name) {
  Polled p;
  auto r = http.request("GET", migrationsPath(ns) + "/" + name);
  if (!r.ok()) {
    p.unreachable = true;
    p.error = r.error().message;
    return p;
  }
  if (r.value().status == 404) {
    p.gone = true;
    return p;
  }
  if (!ok(r.value())) serverError(r.value());
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.value().body).get(doc) != simdjson::SUCCESS) {
    p.unreachable = true;
    p.error = "the server sent invalid JSON";
    return p;
  }
  p.m = migrationInfo(doc);
  return p;
}

// Follows migration `name` to its end: a bar redrawn in place on a
// terminal, a plain line per second otherwise. 0: Succeeded.
int followMigration(HttpClient& http, const std::string& ns, const std::string& name,
                    long timeoutSeconds) {
  const bool tty = isatty(STDOUT_FILENO) == 1;
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::seconds(timeoutSeconds);
  MigrationInfo last;
  last.name = name;
  bool drawn = false;  // a bar is on the current line
  auto endBar = [&] {
    if (drawn) std::printf("\r\033[K");
    drawn = false;
  };
  std::string unreachable;
  while (true) {
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    Polled p = pollMigration(http, ns, name);
    if (p.gone) {
      endBar();
      std::fflush(stdout);
      std::fprintf(stderr,
                   "vmctl: migration %s/%s was deleted before it finished (last phase %s)\n",
                   ns.c_str(), name.c_str(), last.phase.empty() ? "none" : last.phase.c_str());
      return 1;
    }
    if (p.unreachable) {
      if (p.error != unreachable) {
        endBar();
        std::printf("%s: %s; still trying\n", name.c_str(), p.error.c_str());
        unreachable = p.error;
      }
    } else {
      unreachable.clear();
      last = p.m;
      if (last.phase == api::kMigrationSucceeded) {
        endBar();
        std::printf("%s\n", migratedLine(last, waited).c_str());
        return 0;
      }
      if (last.phase == api::kMigrationFailed) {
        endBar();
        std::fflush(stdout);
        std::fprintf(stderr, "vmctl: migration %s/%s failed: %s: %s\n", ns.c_str(), name.c_str(),
                     last.reason.empty() ? "Failed" : last.reason.c_str(), last.message.c_str());
        return 1;
      }
      if (tty) {
        std::printf("\r\033[K%s", progressBar(last, waited).c_str());
        drawn = true;
      } else {
        std::printf("%s\n", progressLine(last, waited).c_str());
      }
    }
    std::fflush(stdout);
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  endBar();
  std::fflush(stdout);
  std::fprintf(stderr,
               "vmctl: timed out after %lds waiting for migration %s/%s (phase %s); it goes on "
               "(vmctl migrate %s -n %s --cancel stops it)\n",
               timeoutSeconds, ns.c_str(), name.c_str(),
               last.phase.empty() ? "none" : last.phase.c_str(), last.vm.c_str(), ns.c_str());
  return 1;
}

// Whether the node has a drain requested (the annotation vmhost.io/drain).
bool nodeDrained(HttpClient& http, const std::string& node) {
  auto r = http.request("GET", collection(kNode, "") + "/" + node);
  if (!r.ok() || !ok(r.value())) return false;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  return parser.parse(r.value().body).get(doc) == simdjson::SUCCESS &&
         doc.at_pointer("/metadata/annotations/vmhost.io~1drain").error() == simdjson::SUCCESS;
}

// vmctl migrate VM --cancel: deletes each unfinished migration of the VM
// (the migration controller fails one not started yet at once and aborts
// one in flight; docs/operator-guide.md).
int cancelMigrations(HttpClient& http, const Options& o, const std::string& vm, bool wait,
                     long timeoutSeconds) {
  std::vector<MigrationInfo> cancelled;
  for (const auto& m : migrationsOf(http, o.ns, vm)) {
    if (m.finished()) continue;
    std::string display = std::string(kMigration.display) + "/" + m.name;
    if (m.deleting) {
      std::printf("%s is already being cancelled (phase %s)\n", display.c_str(),
                  m.phase.empty() ? "none" : m.phase.c_str());
      cancelled.push_back(m);
      continue;
    }
    auto r = call(http, "DELETE", migrationsPath(o.ns) + "/" + m.name);
    if (r.status == 404) continue;  // finished and removed meanwhile
    if (!ok(r)) serverError(r);
    if (m.started()) {
      std::printf(
          "%s cancelling (%s from node %s to node %s: the job is aborted; the VM stays "
          "on node %s unless it completes first)\n",
          display.c_str(), m.phase.c_str(), m.source.c_str(), m.where().c_str(), m.source.c_str());
    } else {
      std::printf("%s cancelled (not started: %s)\n", display.c_str(),
                  m.phase.empty() ? "just created" : m.phase.c_str());
    }
    if (!m.drainNode.empty() && nodeDrained(http, m.drainNode)) {
      std::printf(
          "note: %s belongs to the drain of node %s, which creates it again while the "
          "node is drained; vmctl uncordon %s stops the drain\n",
          m.name.c_str(), m.drainNode.c_str(), m.drainNode.c_str());
    }
    cancelled.push_back(m);
  }
  std::fflush(stdout);
  if (cancelled.empty()) {
    std::fprintf(stderr, "vmctl: VM %s/%s has no unfinished migration to cancel\n", o.ns.c_str(),
                 vm.c_str());
    return 1;
  }
  if (!wait) return 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSeconds);
  int rc = 0;
  for (const auto& c : cancelled) {
    std::string display = std::string(kMigration.display) + "/" + c.name;
    while (true) {
      Polled p = pollMigration(http, o.ns, c.name);
      if (p.gone || (!p.unreachable && p.m.uid != c.uid)) {
        std::printf("%s cancelled (deleted)\n", display.c_str());
        break;
      }
      if (!p.unreachable && p.m.phase == api::kMigrationFailed) {
        std::printf("%s cancelled: %s\n", display.c_str(), phaseWithReason(p.m).c_str());
        break;
      }
      if (!p.unreachable && p.m.phase == api::kMigrationSucceeded) {
        std::fflush(stdout);
        std::fprintf(stderr,
                     "vmctl: %s completed before the cancel took effect: the VM runs on node %s\n",
                     display.c_str(), p.m.where().c_str());
        rc = 1;
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        std::fflush(stdout);
        std::fprintf(
            stderr, "vmctl: timed out after %lds waiting for %s to be cancelled (phase %s)\n",
            timeoutSeconds, display.c_str(), p.m.phase.empty() ? "none" : p.m.phase.c_str());
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    std::fflush(stdout);
  }
  return rc;
}

int migrate(HttpClient& http, const Options& o, const std::vector<std::string>& args) {
  std::string vm, to;
  bool wait = false, cancel = false;
  long timeoutSeconds = 30 * 60;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--to" && i + 1 < args.size())
      to = args[++i];
    else if (a.rfind("--to=", 0) == 0)
      to = a.substr(5);
    else if (a == "--wait" || a == "-w")
      wait = true;
    else if (a == "--cancel")
      cancel = true;
    else if (a.rfind("--timeout=", 0) == 0)
      timeoutSeconds = parseDuration("--timeout", a.substr(10));
    else if (a == "--timeout" && i + 1 < args.size())
      timeoutSeconds = parseDuration("--timeout", args[++i]);
    else if (!a.empty() && a[0] == '-')
      usageError("migrate: unknown flag '" + a + "'");
    else if (vm.empty())
      vm = a;
    else
      usageError("migrate: too many arguments");
  }
  if (vm.empty()) usageError("migrate: usage: vmctl migrate VM [--to NODE] [--wait] | --cancel");
  if (cancel && !to.empty()) usageError("migrate: --cancel and --to do not go together");
  if (cancel) return cancelMigrations(http, o, vm, wait, timeoutSeconds);
  // The VM and the node must exist: said here rather than by a failed object.
  auto got = call(http, "GET", collection(kVirtualMachine, o.ns) + "/" + vm);
  if (!ok(got)) serverError(got);
  if (!to.empty()) {
    auto n = call(http, "GET", collection(kNode, "") + "/" + to);
    if (n.status == 404) die("node \"" + to + "\" not found");
    if (!ok(n)) serverError(n);
  }
  // generateName VM-migration-: the server appends five characters; a long
  // VM name is cut so the whole stays a valid name (253).
  std::string prefix = vm.substr(0, std::min<size_t>(vm.size(), 253 - 16)) + "-migration-";
  std::string body =
      R"({"apiVersion":"vmhost.io/v1","kind":"VirtualMachineMigration","metadata":{"generateName":)";
  yaml::appendJsonString(body, prefix);
  body += R"(},"spec":{"vmName":)";
  yaml::appendJsonString(body, vm);
  if (!to.empty()) {
    body += R"(,"targetNode":)";
    yaml::appendJsonString(body, to);
  }
  body += "}}";
  auto r = call(http, "POST", migrationsPath(o.ns), body);
  if (!ok(r)) serverError(r);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) die("the server sent invalid JSON");
  std::string name = str(doc, "/metadata/name");
  std::printf("%s/%s created\n", kMigration.display, name.c_str());
  std::fflush(stdout);
  if (!wait) return 0;
  return followMigration(http, o.ns, name, timeoutSeconds);
}

void loadConfigFile(Options& o) {
  std::string path = o.configFile;
  bool explicitFile = !path.empty();
  if (path.empty() && std::getenv("VMCTL_CONFIG") != nullptr) {
    path = std::getenv("VMCTL_CONFIG");
    explicitFile = true;
  }
  if (path.empty() && std::getenv("HOME") != nullptr) {
    path = std::string(std::getenv("HOME")) + "/.config/vmhost/vmctl.yaml";
  }
  std::ifstream in(path);
  if (!in) {
    if (explicitFile) die(path + ": cannot open config file");
    return;
  }
  YAML::Node c;
  try {
    c = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    die(path + ": invalid YAML: " + e.msg);
  }
  if (c.IsNull()) return;
  if (!c.IsMap()) die(path + ": expected a mapping with server, token, namespace");
  for (const auto& kv : c) {
    std::string key = kv.first.Scalar();
    if (key != "server" && key != "token" && key != "namespace" && key != "certificateAuthority") {
      die(path + ": unknown key '" + key +
          "' (expected one of: server, token, namespace, certificateAuthority)");
    }
  }
  if (o.caFile.empty() && c["certificateAuthority"]) o.caFile = c["certificateAuthority"].Scalar();
  if (o.server.empty() && c["server"]) o.server = c["server"].Scalar();
  if (o.token.empty() && c["token"]) o.token = c["token"].Scalar();
  if (o.ns.empty() && c["namespace"]) o.ns = c["namespace"].Scalar();
}

}  // namespace
}  // namespace vmhost::cli

int main(int argc, char** argv) {
  using namespace vmhost::cli;
  Options o;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) usageError(std::string(flag) + " needs a value");
      return argv[++i];
    };
    if (a == "--certificate-authority")
      o.caFile = value("--certificate-authority");
    else if (a == "--server" || a == "-s")
      o.server = value("--server");
    else if (a.rfind("--server=", 0) == 0)
      o.server = a.substr(9);
    else if (a == "--token")
      o.token = value("--token");
    else if (a.rfind("--token=", 0) == 0)
      o.token = a.substr(8);
    else if (a == "-n" || a == "--namespace")
      o.ns = value("--namespace");
    else if (a.rfind("--namespace=", 0) == 0)
      o.ns = a.substr(12);
    else if (a == "--config")
      o.configFile = value("--config");
    else if (a.rfind("--config=", 0) == 0)
      o.configFile = a.substr(9);
    else if (a == "-h" || a == "--help" || a == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else
      rest.push_back(a);
  }
  if (rest.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (o.server.empty() && std::getenv("VMHOST_SERVER") != nullptr)
    o.server = std::getenv("VMHOST_SERVER");
  if (o.token.empty() && std::getenv("VMHOST_TOKEN") != nullptr)
    o.token = std::getenv("VMHOST_TOKEN");
  loadConfigFile(o);
  if (o.server.empty()) o.server = "http://127.0.0.1:8080";
  if (o.ns.empty()) o.ns = "default";

  HttpClient http(o.server, o.token);
  if (!o.caFile.empty()) http.setCaFile(o.caFile);
  std::string cmd = rest[0];
  std::vector<std::string> args(rest.begin() + 1, rest.end());
  if (cmd == "apply") return apply(http, o, args);
  if (cmd == "get") return get(http, o, args);
  if (cmd == "describe") return describe(http, o, args);
  if (cmd == "delete") return remove(http, o, args);
  if (cmd == "start") return setRunStrategy(http, o, args, "start", "Always");
  if (cmd == "stop") return setRunStrategy(http, o, args, "stop", "Halted");
  if (cmd == "wait") return wait(http, o, args);
  if (cmd == "cordon") return cordon(http, args, true);
  if (cmd == "uncordon") return cordon(http, args, false);
  if (cmd == "drain") return drain(http, args);
  if (cmd == "migrate") return migrate(http, o, args);
  if (cmd == "console") {
    if (args.size() != 1 || args[0].empty() || args[0][0] == '-') {
      usageError("console: usage: vmctl console NAME");
    }
    return runConsole(ConsoleOptions{o.server, o.token, o.ns, args[0]});
  }
  std::fprintf(stderr, "vmctl: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
