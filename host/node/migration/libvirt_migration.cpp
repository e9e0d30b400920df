#include "node/migration/libvirt_migration.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace vmhost::node {

static_assert(kShutoffMigrated == VIR_DOMAIN_SHUTOFF_MIGRATED);
static_assert(kRunningMigrated == VIR_DOMAIN_RUNNING_MIGRATED);

namespace {

// libvirtError with the codes a migration needs told apart: an aborted job
// (virDomainAbortJob, or libvirt's own cancel) is CANCELLED, a migration
// libvirt refuses as unsafe is FAILED_PRECONDITION.
Error migrationError(std::string_view vm, std::string_view action) {
  virErrorPtr e = virGetLastError();
  int code = e ? e->code : VIR_ERR_OK;
  Error out = libvirtError(vm, action);
  if (code == VIR_ERR_OPERATION_ABORTED) {
    out.code = VMHOST_ERR_CANCELLED;
    out.retryable = false;
  } else if (code == VIR_ERR_MIGRATE_UNSAFE) {
    out.code = VMHOST_ERR_FAILED_PRECONDITION;
    out.retryable = false;
  }
  return out;
}

// Typed parameters built with virTypedParamsAdd*, freed on every path.
class TypedParams {
 public:
  TypedParams() = default;
  TypedParams(const TypedParams&) = delete;
  TypedParams& operator=(const TypedParams&) = delete;
  ~TypedParams() { virTypedParamsFree(params_, n_); }

  bool addString(const char* name, const std::string& value) {
    return virTypedParamsAddString(&params_, &n_, &max_, name, value.c_str()) == 0;
  }
  bool addULLong(const char* name, uint64_t value) {
    return virTypedParamsAddULLong(&params_, &n_, &max_, name, value) == 0;
  }
  bool addInt(const char* name, int value) {
    return virTypedParamsAddInt(&params_, &n_, &max_, name, value) == 0;
  }

  virTypedParameterPtr get() const { return params_; }
  int size() const { return n_; }

 private:
  virTypedParameterPtr params_ = nullptr;
  int n_ = 0;
  int max_ = 0;
};

unsigned migrateFlags(const MigrateParams& p) {
  unsigned flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST;
  if (!p.copyDisks.empty()) {
    flags |= p.copyFullChain ? VIR_MIGRATE_NON_SHARED_DISK : VIR_MIGRATE_NON_SHARED_INC;
  }
  if (p.parallelConnections > 1) flags |= VIR_MIGRATE_PARALLEL;
  if (p.autoConverge) flags |= VIR_MIGRATE_AUTO_CONVERGE;
  if (p.allowPostCopy) flags |= VIR_MIGRATE_POSTCOPY;
  if (p.tls) flags |= VIR_MIGRATE_TLS;
  if (p.unsafe) flags |= VIR_MIGRATE_UNSAFE;
  return flags;
}

Result<Domain> lookup(Connection& conn, const std::string& domainName) {
  return conn.lookupByName(domainName);
}

JobType toJobType(int t) {
  switch (t) {
    case VIR_DOMAIN_JOB_BOUNDED:
      return JobType::kBounded;
    case VIR_DOMAIN_JOB_UNBOUNDED:
      return JobType::kUnbounded;
    case VIR_DOMAIN_JOB_COMPLETED:
      return JobType::kCompleted;
    case VIR_DOMAIN_JOB_FAILED:
      return JobType::kFailed;
    case VIR_DOMAIN_JOB_CANCELLED:
      return JobType::kCancelled;
    default:
      return JobType::kNone;
  }
}

// --- XML surgery for alignDestXml ------------------------------------------

// The position of the start tag `<name` (followed by a blank, '>' or '/', so
// that "cpu" does not find "<cputune>") at or after `from`; npos if none.
size_t findTag(std::string_view xml, std::string_view name, size_t from = 0) {
  std::string open = "<" + std::string(name);
  for (size_t pos = xml.find(open, from); pos != std::string_view::npos;
       pos = xml.find(open, pos + 1)) {
    size_t after = pos + open.size();
    if (after >= xml.size()) return std::string_view::npos;
    char c = xml[after];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '>' || c == '/') return pos;
  }
  return std::string_view::npos;
}

// The end (one past '>') of the start tag beginning at `pos`; npos if unterminated.
size_t tagEnd(std::string_view xml, size_t pos) {
  char quote = 0;
  for (size_t i = pos; i < xml.size(); ++i) {
    char c = xml[i];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '>') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// [begin, end) of the whole element starting at `pos` (start tag through its
// end tag, or the self-closing tag). The element must not nest itself (true
// of <cpu>).
std::pair<size_t, size_t> elementRange(std::string_view xml, std::string_view name, size_t pos) {
  size_t end = tagEnd(xml, pos);
  if (end == std::string_view::npos) return {std::string_view::npos, std::string_view::npos};
  if (xml[end - 2] == '/') return {pos, end};
  std::string close = "</" + std::string(name) + ">";
  size_t c = xml.find(close, end);
  if (c == std::string_view::npos) return {std::string_view::npos, std::string_view::npos};
  return {pos, c + close.size()};
}

// The top-level <os> element's <type ...> start tag: [begin, end); npos if none.
std::pair<size_t, size_t> osTypeTag(std::string_view xml) {
  size_t os = findTag(xml, "os");
  if (os == std::string_view::npos) return {std::string_view::npos, std::string_view::npos};
  size_t osEnd = xml.find("</os>", os);
  size_t type = findTag(xml, "type", os);
  if (type == std::string_view::npos || (osEnd != std::string_view::npos && type > osEnd)) {
    return {std::string_view::npos, std::string_view::npos};
  }
  return {type, tagEnd(xml, type)};
}

// The value of attribute `name` in the start tag [begin, end): its [begin,
// end) inside the quotes, or npos.
std::pair<size_t, size_t> attrValue(std::string_view xml, size_t begin, size_t end,
                                    std::string_view name) {
  std::string_view tag = xml.substr(begin, end - begin);
  for (size_t pos = tag.find(name); pos != std::string_view::npos; pos = tag.find(name, pos + 1)) {
    if (pos == 0 || (tag[pos - 1] != ' ' && tag[pos - 1] != '\t' && tag[pos - 1] != '\n')) continue;
    size_t i = pos + name.size();
    while (i < tag.size() && (tag[i] == ' ' || tag[i] == '\t')) ++i;
    if (i >= tag.size() || tag[i] != '=') continue;
    ++i;
    while (i < tag.size() && (tag[i] == ' ' || tag[i] == '\t')) ++i;
    if (i >= tag.size() || (tag[i] != '\'' && tag[i] != '"')) continue;
    char q = tag[i];
    size_t close = tag.find(q, i + 1);
    if (close == std::string_view::npos) break;
    return {begin + i + 1, begin + close};
  }
  return {std::string_view::npos, std::string_view::npos};
}

// The top-level <cpu> element (a direct child of <domain>, never inside
// <devices>): its range, or npos.
std::pair<size_t, size_t> cpuElement(std::string_view xml) {
  size_t cpu = findTag(xml, "cpu");
  size_t devices = findTag(xml, "devices");
  if (cpu == std::string_view::npos || (devices != std::string_view::npos && cpu > devices)) {
    return {std::string_view::npos, std::string_view::npos};
  }
  return elementRange(xml, "cpu", cpu);
}

std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

// --- migrate -------------------------------------------------------------------

std::string describeMigrateFlags(const MigrateParams& p) {
  unsigned f = migrateFlags(p);
  std::string out;
  auto add = [&](unsigned bit, const char* name) {
    if (!(f & bit)) return;
    if (!out.empty()) out += ",";
    out += name;
  };
  add(VIR_MIGRATE_LIVE, "live");
  add(VIR_MIGRATE_PEER2PEER, "peer2peer");
  add(VIR_MIGRATE_PERSIST_DEST, "persist-dest");
  add(VIR_MIGRATE_NON_SHARED_INC, "non-shared-inc");
  add(VIR_MIGRATE_NON_SHARED_DISK, "non-shared-disk");
  add(VIR_MIGRATE_PARALLEL, "parallel");
  add(VIR_MIGRATE_AUTO_CONVERGE, "auto-converge");
  add(VIR_MIGRATE_POSTCOPY, "postcopy");
  add(VIR_MIGRATE_TLS, "tls");
  add(VIR_MIGRATE_UNSAFE, "unsafe");
  return out;
}

Status migrate(Connection& conn, const std::string& domainName, const MigrateParams& p) {
  std::string label = vmLabel(domainName);
  if (p.destUri.empty()) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT,
                 "vm " + label + ": migrate: no destination libvirt URI", false};
  }
  auto dom = lookup(conn, domainName);
  if (!dom) return dom.error();
  const std::string action = "migrate to " + p.destUri;

  std::string destXml = p.destXml;
  if (!destXml.empty() && p.alignWithSource) {
    // What libvirt checks the destination XML against.
    auto src = migratableXml(conn, domainName);
    if (!src) return src.error();
    auto aligned = alignDestXml(src.value(), destXml);
    if (!aligned) {
      Error e = aligned.error();
      e.message = "vm " + label + ": " + action + ": destination XML: " + e.message;
      return e;
    }
    destXml = std::move(aligned.value());
  }

  // No migration parameter carries the max downtime; set on the running
  // domain, libvirt applies it to the job that starts next (measured).
  if (p.maxDowntimeMs > 0 && virDomainMigrateSetMaxDowntime(dom->raw(), p.maxDowntimeMs, 0) < 0) {
    return migrationError(label, action + ": set max downtime");
  }

  TypedParams params;
  bool ok = true;
  if (!p.migrateUri.empty()) ok = ok && params.addString(VIR_MIGRATE_PARAM_URI, p.migrateUri);
  if (!destXml.empty()) ok = ok && params.addString(VIR_MIGRATE_PARAM_DEST_XML, destXml);
  for (const auto& dev : p.copyDisks) {
    ok = ok && params.addString(VIR_MIGRATE_PARAM_MIGRATE_DISKS, dev);
  }
  if (p.bandwidthMiBps > 0)
    ok = ok && params.addULLong(VIR_MIGRATE_PARAM_BANDWIDTH, p.bandwidthMiBps);
  if (p.postCopyBandwidthMiBps > 0) {
    ok = ok && params.addULLong(VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY, p.postCopyBandwidthMiBps);
  }
  if (p.parallelConnections > 1) {
    ok = ok && params.addInt(VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS,
                             static_cast<int>(p.parallelConnections));
  }
  if (p.autoConverge && p.autoConvergeInitial > 0) {
    ok = ok && params.addInt(VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL,
                             static_cast<int>(p.autoConvergeInitial));
  }
  if (p.autoConverge && p.autoConvergeIncrement > 0) {
    ok = ok && params.addInt(VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT,
                             static_cast<int>(p.autoConvergeIncrement));
  }
  if (p.tls && !p.tlsDestination.empty()) {
    ok = ok && params.addString(VIR_MIGRATE_PARAM_TLS_DESTINATION, p.tlsDestination);
  }
  if (!ok) return migrationError(label, action + ": migration parameters");

  // The call that waits for the whole job goes over a connection of its
  // own: other calls on a connection with this one in flight were measured
  // to stall for seconds (until libvirtd's next keepalive), which would
  // freeze the poller's jobStats() and abortJob() on `conn`.
  auto own = Connection::open(conn.uri());
  if (!own) return own.error();
  auto ownDom = own->lookupByName(domainName);
  if (!ownDom) return ownDom.error();
  if (virDomainMigrateToURI3(ownDom->raw(), p.destUri.c_str(), params.get(),
                             static_cast<unsigned>(params.size()), migrateFlags(p)) < 0) {
    return migrationError(label, action);
  }
  return Ok{};
}

// --- job statistics --------------------------------------------------------------

const char* jobTypeName(JobType t) {
  switch (t) {
    case JobType::kNone:
      return "none";
    case JobType::kBounded:
      return "bounded";
    case JobType::kUnbounded:
      return "unbounded";
    case JobType::kCompleted:
      return "completed";
    case JobType::kFailed:
      return "failed";
    case JobType::kCancelled:
      return "cancelled";
  }
  return "none";
}

Result<JobStats> jobStats(Connection& conn, const std::string& domainName, bool completed) {
  auto dom = lookup(conn, domainName);
  if (!dom) return dom.error();
  int type = VIR_DOMAIN_JOB_NONE;
  virTypedParameterPtr params = nullptr;
  int n = 0;
  unsigned flags =
      completed ? (VIR_DOMAIN_JOB_STATS_COMPLETED | VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED) : 0;
  if (virDomainGetJobStats(dom->raw(), &type, &params, &n, flags) < 0) {
    // A domain that is not running has no job ("domain is not running"):
    // e.g. the source of a migration that just completed.
    Error e = migrationError(dom->label(), completed ? "get completed job stats" : "get job stats");
    if (e.code == VMHOST_ERR_FAILED_PRECONDITION && virDomainIsActive(dom->raw()) == 0) {
      virResetLastError();
      return JobStats{};
    }
    virResetLastError();
    return e;
  }
  JobStats s;
  s.type = toJobType(type);
  s.active = s.type == JobType::kBounded || s.type == JobType::kUnbounded;
  auto u64 = [&](const char* name) {
    unsigned long long v = 0;
    return virTypedParamsGetULLong(params, n, name, &v) == 1 ? static_cast<uint64_t>(v) : 0;
  };
  int op = 0;
  if (virTypedParamsGetInt(params, n, VIR_DOMAIN_JOB_OPERATION, &op) == 1) {
    s.operation = op == VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT  ? JobOperation::kMigrationOut
                  : op == VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN ? JobOperation::kMigrationIn
                  : op == VIR_DOMAIN_JOB_OPERATION_UNKNOWN      ? JobOperation::kUnknown
                                                                : JobOperation::kOther;
  }
  s.elapsedMs = u64(VIR_DOMAIN_JOB_TIME_ELAPSED);
  s.remainingMs = u64(VIR_DOMAIN_JOB_TIME_REMAINING);
  s.dataTotal = u64(VIR_DOMAIN_JOB_DATA_TOTAL);
  s.dataProcessed = u64(VIR_DOMAIN_JOB_DATA_PROCESSED);
  s.dataRemaining = u64(VIR_DOMAIN_JOB_DATA_REMAINING);
  s.memTotal = u64(VIR_DOMAIN_JOB_MEMORY_TOTAL);
  s.memProcessed = u64(VIR_DOMAIN_JOB_MEMORY_PROCESSED);
  s.memRemaining = u64(VIR_DOMAIN_JOB_MEMORY_REMAINING);
  s.diskTotal = u64(VIR_DOMAIN_JOB_DISK_TOTAL);
  s.diskProcessed = u64(VIR_DOMAIN_JOB_DISK_PROCESSED);
  s.diskRemaining = u64(VIR_DOMAIN_JOB_DISK_REMAINING);
  s.dirtyRatePagesPerSecond = u64(VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE);
  s.pageSize = u64(VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE);
  s.dirtyRateBytesPerSecond = s.dirtyRatePagesPerSecond * (s.pageSize ? s.pageSize : 4096);
  s.memIteration = u64(VIR_DOMAIN_JOB_MEMORY_ITERATION);
  s.memBps = u64(VIR_DOMAIN_JOB_MEMORY_BPS);
  s.diskBps = u64(VIR_DOMAIN_JOB_DISK_BPS);
  s.postCopyRequests = u64(VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS);
  s.downtimeMs = u64(VIR_DOMAIN_JOB_DOWNTIME);
  s.downtimeNetMs = u64(VIR_DOMAIN_JOB_DOWNTIME_NET);
  s.setupTimeMs = u64(VIR_DOMAIN_JOB_SETUP_TIME);
  int throttle = 0;
  if (virTypedParamsGetInt(params, n, VIR_DOMAIN_JOB_AUTO_CONVERGE_THROTTLE, &throttle) == 1 &&
      throttle > 0) {
    s.autoConvergeThrottle = static_cast<uint32_t>(throttle);
  }
  int success = 0;
  if (virTypedParamsGetBoolean(params, n, VIR_DOMAIN_JOB_SUCCESS, &success) == 1) {
    s.hasSuccess = true;
    s.success = success != 0;
  }
  const char* errmsg = nullptr;
  if (virTypedParamsGetString(params, n, VIR_DOMAIN_JOB_ERRMSG, &errmsg) == 1 && errmsg) {
    s.errorMessage = errmsg;
  }
  virTypedParamsFree(params, n);
  virResetLastError();

  if (!completed && s.active) {
    int st = 0;
    int reason = 0;
    if (virDomainGetState(dom->raw(), &st, &reason, 0) == 0) {
      s.postCopy = (st == VIR_DOMAIN_RUNNING && reason == VIR_DOMAIN_RUNNING_POSTCOPY) ||
                   (st == VIR_DOMAIN_PAUSED && reason == VIR_DOMAIN_PAUSED_POSTCOPY);
    } else {
      virResetLastError();  // the domain went meanwhile; the stats stand
    }
  }
  return s;
}

std::string describeJobStats(const JobStats& s) {
  std::string out = jobTypeName(s.type);
  if (s.type == JobType::kNone) return out;
  switch (s.operation) {
    case JobOperation::kMigrationOut:
      out += " migration-out";
      break;
    case JobOperation::kMigrationIn:
      out += " migration-in";
      break;
    case JobOperation::kOther:
      out += " other-job";
      break;
    case JobOperation::kUnknown:
      break;
  }
  out += " " + std::to_string(s.elapsedMs) + "ms";
  out += " data " + mib(s.dataProcessed) + "/" + mib(s.dataTotal) + "MiB (" + mib(s.dataRemaining) +
         "MiB left)";
  out += " mem " + mib(s.memProcessed) + "/" + mib(s.memTotal) + "MiB it " +
         std::to_string(s.memIteration) + " " + mib(s.memBps) + "MiB/s dirty " +
         mib(s.dirtyRateBytesPerSecond) + "MiB/s";
  if (s.diskTotal > 0) {
    out += " disk " + mib(s.diskProcessed) + "/" + mib(s.diskTotal) + "MiB";
  }
  if (s.autoConvergeThrottle > 0)
    out += " throttle " + std::to_string(s.autoConvergeThrottle) + "%";
  if (s.postCopy) out += " post-copy";
  if (s.postCopyRequests > 0) out += " postcopy-requests " + std::to_string(s.postCopyRequests);
  if (s.type == JobType::kCompleted || s.type == JobType::kFailed ||
      s.type == JobType::kCancelled) {
    out += " downtime " + std::to_string(s.downtimeMs) + "ms";
  }
  if (!s.errorMessage.empty()) out += " error: " + s.errorMessage;
  return out;
}

// --- steering ------------------------------------------------------------------

Status abortJob(Connection& conn, const std::string& domainName) {
  auto dom = lookup(conn, domainName);
  if (!dom) return dom.error();
  if (virDomainAbortJob(dom->raw()) < 0) return migrationError(dom->label(), "abort job");
  return Ok{};
}

Status setMaxDowntime(Connection& conn, const std::string& domainName, uint64_t ms) {
  auto dom = lookup(conn, domainName);
  if (!dom) return dom.error();
  if (virDomainMigrateSetMaxDowntime(dom->raw(), ms, 0) < 0) {
    return migrationError(dom->label(), "set max downtime to " + std::to_string(ms) + "ms");
  }
  return Ok{};
}

Result<uint64_t> maxDowntime(Connection& conn, const std::string& domainName) {
  auto dom = lookup(conn, domainName);
  if (!dom) return dom.error();
  unsigned long long ms = 0;
  if (virDomainMigrateGetMaxDowntime(dom->raw(), &ms, 0) < 0) {
    return migrationError(dom->label(), "get max downtime");
  }
  return static_cast<uint64_t>(ms);
}

Status startPostCopy(Connection& conn, const std::string& domainName) {
  auto dom = lookup(conn, domainName);
  if (!dom) return dom.error();
  if (virDomainMigrateStartPostCopy(dom->raw(), 0) < 0) {
    return migrationError(dom->label(), "start post-copy");
  }
  return Ok{};
}

Status setBandwidth(Connection& conn, const std::string& domainName, uint64_t MiBps) {
  auto dom = lookup(conn, domainName);
  if (!dom) return dom.error();
  if (virDomainMigrateSetMaxSpeed(dom->raw(), MiBps, 0) < 0) {
    return migrationError(dom->label(),
                          "set migration bandwidth to " + std::to_string(MiBps) + "MiB/s");
  }
  return Ok{};
}

// --- XML -------------------------------------------------------------------------

Result<std::string> migratableXml(Connection& conn, const std::string& domainName) {
  auto dom = lookup(conn, domainName);
  if (!dom) return dom.error();
  char* raw = virDomainGetXMLDesc(dom->raw(), VIR_DOMAIN_XML_MIGRATABLE);
  if (!raw) return migrationError(dom->label(), "get migratable XML");
  std::string out(raw);
  std::free(raw);
  return out;
}

Result<std::string> alignDestXml(std::string_view sourceXml, std::string_view destXml) {
  auto [srcType, srcTypeEnd] = osTypeTag(sourceXml);
  if (srcType == std::string_view::npos || srcTypeEnd == std::string_view::npos) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT, "the source XML has no <os><type>", false};
  }
  auto [machBegin, machEnd] = attrValue(sourceXml, srcType, srcTypeEnd, "machine");
  std::string out(destXml);

  // The machine type, as the source runs it.
  if (machBegin != std::string_view::npos) {
    std::string machine(sourceXml.substr(machBegin, machEnd - machBegin));
    auto [dType, dTypeEnd] = osTypeTag(out);
    if (dType == std::string::npos || dTypeEnd == std::string::npos) {
      return Error{VMHOST_ERR_INVALID_ARGUMENT, "the destination XML has no <os><type>", false};
    }
    auto [dBegin, dEnd] = attrValue(out, dType, dTypeEnd, "machine");
    if (dBegin != std::string::npos) {
      out.replace(dBegin, dEnd - dBegin, machine);
    } else {
      out.insert(dType + 5, " machine='" + machine + "'");  // after "<type"
    }
  }

  // The CPU, as the source runs it.
  auto [srcCpu, srcCpuEnd] = cpuElement(sourceXml);
  if (srcCpu != std::string_view::npos) {
    std::string cpu(sourceXml.substr(srcCpu, srcCpuEnd - srcCpu));
    auto [dCpu, dCpuEnd] = cpuElement(out);
    if (dCpu != std::string::npos) {
      out.replace(dCpu, dCpuEnd - dCpu, cpu);
    } else {
      size_t devices = findTag(out, "devices");
      if (devices == std::string::npos) {
        return Error{VMHOST_ERR_INVALID_ARGUMENT, "the destination XML has no <devices>", false};
      }
      // Indented like the element it precedes.
      size_t lineStart = out.rfind('\n', devices);
      std::string indent =
          lineStart == std::string::npos ? "" : out.substr(lineStart + 1, devices - lineStart - 1);
      if (indent.find_first_not_of(" \t") != std::string::npos) indent.clear();
      out.insert(devices, cpu + "\n" + indent);
    }
  }
  return out;
}

}  // namespace vmhost::node
