// The node agent's two sides of a live migration (api/migration.h says who
// writes what; node/migration/source_job.h runs the libvirt job).
//
// Target: prepares the VM's disks and NICs through this node's plugins,
// writes the domain XML from its own attachments (same name, uuid and MACs
// as on the source) and reports TargetReady with what the source needs. On a
// failed migration it removes what it prepared (the partial copies of
// non-shared disks included).
//
// Source: asks the migration plugin for a plan, starts the job, reports its
// progress, and reports the outcome; Succeeded is the handover (the VM's
// binding moves in the same write). Only libvirt's word counts: the domain
// shut off with reason "migrated" is a finished migration, a domain still
// running with no job is a failed one. A restarted agent re-attaches to a job
// that libvirtd still runs.
#include "api/conditions.h"
#include "api/migration.h"
#include "api/objects.h"
#include "api/vocabulary.h"
#include "node/agent/agent.h"
#include "node/domain/converter.h"

#include <vmhost/schema/migration.capnp.h>

#include <capnp/message.h>
#include <libvirt/libvirt.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace vmhost::node {
namespace {

namespace fs = std::filesystem;

bool migratedAway(const DomainStatus& s) {
  return s.state == DomainState::kShutOff && s.reason == VIR_DOMAIN_SHUTOFF_MIGRATED;
}

// "tcp://10.0.0.2" from "qemu+tcp://10.0.0.2/system" (the host part of a
// libvirt URI); empty when there is none.
std::string migrateUriFor(const std::string& libvirtUri) {
  auto scheme = libvirtUri.find("://");
  if (scheme == std::string::npos) return "";
  auto rest = libvirtUri.substr(scheme + 3);
  auto slash = rest.find('/');
  std::string host = rest.substr(0, slash);
  if (auto at = host.find('@'); at != std::string::npos) host = host.substr(at + 1);
  if (host.empty()) return "";
  // A port in the libvirt URI is libvirtd's, not QEMU's.
  if (host.front() != '[') {
    if (auto colon = host.find(':'); colon != std::string::npos) host = host.substr(0, colon);
  } else if (auto close = host.find(']'); close != std::string::npos) {
    host = host.substr(0, close + 1);
  }
  return "tcp://" + host;
}

}  // namespace

std::string NodeAgent::migratedMarker(const VmKey& key) const {
  return stateFile(key) + ".migrated";
}

Status NodeAgent::reportMigration(const api::VirtualMachine& vm, api::MigrationState report) {
  auto s = control_.reportMigration(vm.metadata.ns, vm.metadata.name, report);
  if (!s.ok() && s.error().code == VMHOST_ERR_FAILED_PRECONDITION) {
    std::fprintf(stderr, "node %s: vm %s/%s: %s\n", options_.nodeName.c_str(),
                 vm.metadata.ns.c_str(), vm.metadata.name.c_str(), s.error().message.c_str());
  }
  return s;
}

// ---- the target

Status NodeAgent::reconcileMigrationTarget(const api::VirtualMachine& vm,
                                           std::optional<Domain>& domain) {
  VmKey key{vm.metadata.ns, vm.metadata.name};
  const api::MigrationState& m = *vm.status.migration;
  mine_.insert(key);  // resynced while the record names this node

  if (m.phase == api::kMigrationFailed) {
    // Undo what this node prepared: an incoming domain libvirt left behind,
    // the devices (partial copies of non-shared disks go), the local state.
    if (!fs::exists(stateFile(key)) && !domain) return Ok{};
    if (domain) {
      auto state = domain->state();
      if (state.ok() && !isStoppedState(state.value().state)) {
        std::fprintf(
            stderr, "node %s: vm %s/%s: removing the incoming domain of failed migration %s\n",
            options_.nodeName.c_str(), key.first.c_str(), key.second.c_str(), m.name.c_str());
      }
    }
    return cleanup(key, vm.metadata.uid, /*deleteData=*/false, /*migrated=*/true);
  }
  if (m.phase == api::kMigrationSucceeded) return Ok{};  // the handover push follows

  if (m.phase == api::kMigrationTargetReady || m.phase == api::kMigrationRunning) {
    // libvirt resumes the guest here only once the migration completed: a
    // running (not paused) domain is the proof, whatever became of the source.
    // The source normally says so first, with libvirt's figures; this is
    // for a source that cannot (its agent or host is down), after a grace.
    if (domain) {
      auto state = domain->state();
      if (state.ok() && state.value().state == DomainState::kRunning) {
        auto since = targetRunningSince_.try_emplace(key, Clock::now()).first->second;
        auto active = domain->isActive();
        if (active.ok() && active.value() && Clock::now() - since >= kTargetHandoverGrace) {
          api::MigrationState report = m;
          report.phase = api::kMigrationSucceeded;
          auto s = reportMigration(vm, report);
          if (s.ok()) {
            event(vm, api::kEventTypeNormal, "Migrated",
                  "the guest runs on node " + options_.nodeName + " (migration " + m.name + ")");
          }
          return s.ok() || s.error().code == VMHOST_ERR_FAILED_PRECONDITION ? Status(Ok{}) : s;
        }
        queue_.insert(key);  // looked at again until the grace is over
      }
    }
    return Ok{};
  }
  targetRunningSince_.erase(key);

  // PreparingTarget.
  if (m.abortRequested) {
    api::MigrationState report = m;
    report.phase = api::kMigrationFailed;
    report.reason = "Cancelled";
    report.message = "cancelled before the target was ready";
    (void)reportMigration(vm, report);
    return Ok{};
  }
  {
    std::error_code ec;
    fs::remove(migratedMarker(key), ec);  // a stale one from an earlier migration away
    std::ofstream out(stateFile(key), std::ios::trunc);
    out << api::storeValue(vm);
  }
  auto fail = [&](const std::string& why) -> Status {
    api::MigrationState report = m;
    report.phase = api::kMigrationFailed;
    report.reason = "PreparingTargetFailed";
    report.message = "preparing the target " + options_.nodeName + ": " + why;
    event(vm, api::kEventTypeWarning, "MigrationTargetFailed", report.message);
    (void)reportMigration(vm, report);
    return Error{VMHOST_ERR_FAILED_PRECONDITION, report.message, false};
  };
  auto prepared = devices_.prepare(vm);
  if (!prepared.ok()) {
    if (prepared.error().retryable) return prepared.error();  // the next pass tries again
    return fail(prepared.error().message);
  }
  // The guest keeps its MACs: the source's, as the VM's status has them.
  api::VirtualMachine here = vm;
  for (auto& iface : here.spec.interfaces) {
    if (!iface.macAddress.empty()) continue;
    for (const auto& st : vm.status.interfaces) {
      if (st.name == iface.name) iface.macAddress = st.mac;
    }
  }
  NodeChoices choices;
  choices.serialLogFile = consoleLog(key);
  auto spec = toDomainSpec(here, prepared.value().attachments(), choices);
  if (!spec.ok()) return fail(spec.error().message);
  auto xml = toDomainXml(spec.value());
  if (!xml.ok()) return fail(xml.error().message);
  std::vector<api::InterfaceStatus> macs;
  for (const auto& n : spec.value().interfaces) macs.push_back({n.interfaceName, n.mac});
  if (auto s = devices_.claimMacs(key, macs); !s.ok()) return fail(s.error().message);

  api::MigrationTarget target;
  target.domainXml = xml.value();
  target.libvirtUri = options_.libvirtEndpoint.empty() ? libvirt_.uri() : options_.libvirtEndpoint;
  target.migrateUri =
      options_.migrationUri.empty() ? migrateUriFor(target.libvirtUri) : options_.migrationUri;
  target.tls = options_.migrationTls;
  auto attachments = prepared.value().attachments();
  for (const auto& a : attachments.volumes) {
    if (a.getShared() || a.getReadOnly()) continue;
    target.copyDisks.push_back(a.getTargetDev().cStr());
  }
  if (target.copyDisks.empty() && !vm.spec.disks.empty()) {
    // Nothing to copy: every disk is shared (or read-only).
  }
  api::MigrationState report = m;
  report.phase = api::kMigrationTargetReady;
  report.target = target;
  auto s = reportMigration(vm, report);
  if (s.ok()) {
    event(vm, api::kEventTypeNormal, "MigrationTargetReady",
          "node " + options_.nodeName + " is ready to receive the guest (" +
              std::to_string(target.copyDisks.size()) + " disk(s) to copy)");
  }
  return s.ok() || s.error().code == VMHOST_ERR_FAILED_PRECONDITION ? Status(Ok{}) : s;
}

// ---- the source

Status NodeAgent::reconcileMigrationSource(const api::VirtualMachine& vm,
                                           std::optional<Domain>& domain) {
  VmKey key{vm.metadata.ns, vm.metadata.name};
  const api::MigrationState& m = *vm.status.migration;
  std::string label = key.first + "/" + key.second;
  auto failed = [&](const std::string& reason, const std::string& message,
                    std::optional<api::MigrationProgress> progress = std::nullopt) {
    api::MigrationState report = m;
    report.phase = api::kMigrationFailed;
    report.reason = reason;
    report.message = message;
    if (progress) report.progress = progress;
    auto s = reportMigration(vm, report);
    if (s.ok()) event(vm, api::kEventTypeWarning, "MigrationFailed", message);
    return s;
  };
  auto succeeded = [&](api::MigrationResult result,
                       std::optional<api::MigrationProgress> progress = std::nullopt) {
    {
      // libvirt said complete: whatever the store says, this node's copy is
      // not the VM any more (cleanup() releases it as migrated).
      std::ofstream out(migratedMarker(key), std::ios::trunc);
      out << m.targetNode << "\n";
    }
    api::MigrationState report = m;
    report.phase = api::kMigrationSucceeded;
    report.result = result;
    if (progress) report.progress = progress;
    auto s = reportMigration(vm, report);
    if (s.ok()) {
      event(vm, api::kEventTypeNormal, "Migrated",
            "migrated to node " + m.targetNode + " in " + std::to_string(result.totalMs) +
                " ms (downtime " + std::to_string(result.downtimeMs) + " ms)");
    }
    return s;
  };

  auto it = sourceJobs_.find(key);
  if (it != sourceJobs_.end() && it->second.uid != m.uid) {
    sourceJobs_.erase(it);  // a job of an earlier migration (its destructor aborts it)
    it = sourceJobs_.end();
  }
  if (it != sourceJobs_.end()) {
    SourceJob& job = *it->second.job;
    if (m.abortRequested) job.cancel();
    auto outcome = job.outcome();
    if (!outcome) {
      bool changed = false;
      auto progress = job.progress(&changed);
      if (!changed && m.phase == api::kMigrationRunning) return Ok{};
      api::MigrationState report = m;
      report.phase = api::kMigrationRunning;
      report.progress = progress;
      auto s = reportMigration(vm, report);
      return s.ok() || s.error().code == VMHOST_ERR_FAILED_PRECONDITION ? Status(Ok{}) : s;
    }
    auto progress = job.progress();
    Status s = Ok{};
    if (outcome->ok) {
      s = succeeded(outcome->result, progress);
    } else if (outcome->reason == "JobEnded") {
      sourceJobs_.erase(key);  // re-attached and the job is over: read the domain below
      return reconcileMigrationSource(vm, domain);
    } else {
      // The job failed: is the guest still here? (libvirt resumes it.)
      s = failed(outcome->reason, "migrating to node " + m.targetNode + ": " + outcome->message,
                 progress);
    }
    if (s.ok() || s.error().code == VMHOST_ERR_FAILED_PRECONDITION ||
        s.error().code == VMHOST_ERR_NOT_FOUND) {
      sourceJobs_.erase(key);
      return Ok{};
    }
    return s;  // the controller is away: said again on the next pass
  }

  if (m.phase == api::kMigrationPreparingTarget) {
    if (m.abortRequested) return Ok{};  // the target (or the controller) ends it
    return Ok{};                        // waiting for the target
  }

  // TargetReady or Running, and no job of ours: a fresh start, or an agent
  // that restarted under a job.
  if (!domain) {
    return failed("SourceDomainMissing",
                  "the source node " + options_.nodeName + " has no domain for the VM");
  }
  auto state = domain->state();
  if (!state.ok()) return state.error();
  if (migratedAway(state.value())) {
    api::MigrationResult result;
    auto done = jobStats(libvirt_, domain->name(), /*completed=*/true);
    if (done.ok()) {
      result.totalMs = done.value().elapsedMs;
      result.downtimeMs = done.value().downtimeMs;
      result.bytesTransferred = done.value().dataProcessed;
    }
    result.endedBy = "pre-copy";
    return succeeded(result);
  }
  auto job = jobStats(libvirt_, domain->name(), /*completed=*/false);
  if (job.ok() && job.value().active) {
    std::fprintf(stderr, "node %s: vm %s: re-attaching to migration %s in flight\n",
                 options_.nodeName.c_str(), label.c_str(), m.name.c_str());
    SourceJobOptions o;
    o.domainName = domain->name();
    o.vmLabel = label;
    o.attach = true;
    o.poll = options_.migrationPoll;
    auto j = std::make_unique<SourceJob>(libvirt_, std::move(o));
    j->start();
    sourceJobs_[key] = SourceJobEntry{m.uid, std::move(j)};
    return Ok{};
  }
  if (m.phase == api::kMigrationRunning) {
    return failed("MigrationInterrupted",
                  "the migration job ended while the source agent was away; the guest runs on "
                  "node " +
                      options_.nodeName);
  }
  if (m.abortRequested) return failed("Cancelled", "cancelled before the migration started");
  if (state.value().state != DomainState::kRunning) {
    return failed("SourceNotRunning", std::string("the domain is ") +
                                          domainStateName(state.value().state) + " on node " +
                                          options_.nodeName + ", not running");
  }
  if (!m.target) return failed("NoTarget", "the target published nothing to migrate to");

  // The plan.
  SourceJobOptions o;
  o.domainName = domain->name();
  o.vmLabel = label;
  o.poll = options_.migrationPoll;
  o.params.destUri = m.target->libvirtUri;
  o.params.migrateUri = m.target->migrateUri;
  o.params.destXml = m.target->domainXml;
  o.params.copyDisks = m.target->copyDisks;
  o.params.tls = m.target->tls;
  // The target's certificate names the node (its CN), not its address.
  if (o.params.tls) o.params.tlsDestination = m.targetNode;
  uint64_t diskBytes = 0;
  for (const auto& dev : m.target->copyDisks) {
    virDomainBlockInfo info{};
    if (virDomainGetBlockInfo(domain->raw(), dev.c_str(), &info, 0) == 0)
      diskBytes += info.capacity;
  }
  if (migrationPlugin_ != nullptr) {
    capnp::MallocMessageBuilder message;
    auto req = message.initRoot<schema::MigrationRequest>();
    auto ref = req.initVm();
    ref.setNamespace(vm.metadata.ns);
    ref.setName(vm.metadata.name);
    ref.setUid(vm.metadata.uid);
    req.setSourceNode(options_.nodeName);
    req.setTargetNode(m.targetNode);
    req.setMemoryBytes(static_cast<uint64_t>(vm.spec.memory.value()));
    req.setDiskBytesToCopy(diskBytes);
    req.setSharedStorage(m.target->copyDisks.empty());
    auto ov = req.initOverrides();
    const auto& p = m.parameters;
    ov.setBandwidthMiBps(p.bandwidthMiBps);
    ov.setMaxDowntimeMs(p.maxDowntimeMs);
    ov.setCompletionTimeoutPerGiBSeconds(p.completionTimeoutPerGiBSeconds);
    ov.setProgressTimeoutSeconds(p.progressTimeoutSeconds);
    ov.setParallelConnections(p.parallelConnections);
    using Choice = schema::MigrationOverrides::Choice;
    auto choice = [](const std::optional<bool>& b) {
      return !b ? Choice::UNSET : (*b ? Choice::YES : Choice::NO);
    };
    ov.setAllowPostCopy(choice(p.allowPostCopy));
    ov.setAutoConverge(choice(p.autoConverge));
    auto plan =
        migrationPlugin_->call<schema::MigrationPlan>(VMHOST_METHOD_MIGRATION_PLAN, message);
    if (!plan.ok()) return failed("PlanFailed", "planning: " + plan.error().message);
    auto pl = plan.value().get();
    o.plan.bandwidthMiBps = pl.getBandwidthMiBps();
    o.plan.maxDowntimeMs = pl.getMaxDowntimeMs();
    o.plan.autoConverge = pl.getAutoConverge();
    o.plan.allowPostCopy = pl.getAllowPostCopy();
    o.plan.completionTimeoutSeconds = pl.getCompletionTimeoutSeconds();
    o.plan.progressTimeoutSeconds = pl.getProgressTimeoutSeconds();
    o.plan.parallelConnections = pl.getParallelConnections();
    o.plan.copyStorage = pl.getCopyStorage();
    o.plan.autoConvergeInitial = pl.getAutoConvergeInitial();
    o.plan.autoConvergeIncrement = pl.getAutoConvergeIncrement();
    o.plugin = migrationPlugin_;
  } else {
    o.plan.copyStorage = !m.target->copyDisks.empty();
  }
  o.params.bandwidthMiBps = o.plan.bandwidthMiBps;
  o.params.maxDowntimeMs = o.plan.maxDowntimeMs;
  o.params.autoConverge = o.plan.autoConverge;
  o.params.autoConvergeInitial = o.plan.autoConvergeInitial;
  o.params.autoConvergeIncrement = o.plan.autoConvergeIncrement;
  o.params.allowPostCopy = o.plan.allowPostCopy;
  o.params.parallelConnections = o.plan.parallelConnections;
  if (!o.plan.copyStorage) o.params.copyDisks.clear();
  // Disks the target attached as shared are not copied; libvirt cannot tell
  // a shared directory from a local one and would refuse them as unsafe.
  size_t writable = 0;
  for (const auto& d : vm.spec.disks) writable += d.readOnly ? 0 : 1;
  o.params.unsafe = writable > m.target->copyDisks.size();
  if (!m.target->copyDisks.empty() && o.params.copyDisks.empty()) {
    return failed("PlanRefused", "the migration plugin planned no storage copy, but disks " +
                                     std::to_string(m.target->copyDisks.size()) +
                                     " are not shared with node " + m.targetNode);
  }

  api::MigrationState report = m;
  report.phase = api::kMigrationRunning;
  report.progress = api::MigrationProgress{};
  report.progress->maxDowntimeMs = o.plan.maxDowntimeMs;
  if (auto s = reportMigration(vm, report); !s.ok()) {
    // Not recorded as running: not started (a cancel or a failure won).
    return s.error().code == VMHOST_ERR_FAILED_PRECONDITION ? Status(Ok{}) : s;
  }
  event(vm, api::kEventTypeNormal, "MigrationStarted",
        "live-migrating to node " + m.targetNode +
            (o.params.copyDisks.empty()
                 ? std::string(" (shared storage)")
                 : " (copying " + std::to_string(o.params.copyDisks.size()) + " disk(s))"));
  auto j = std::make_unique<SourceJob>(libvirt_, std::move(o));
  j->start();
  sourceJobs_[key] = SourceJobEntry{m.uid, std::move(j)};
  return Ok{};
}

}  // namespace vmhost::node
