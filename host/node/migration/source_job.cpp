#include "node/migration/source_job.h"

#include <vmhost/schema/migration.capnp.h>

#include <capnp/message.h>

#include <algorithm>
#include <cstdio>

namespace vmhost::node {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t msSince(Clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

SourceJob::SourceJob(Connection& libvirt, SourceJobOptions options)
    : libvirt_(libvirt), options_(std::move(options)) {
  maxDowntimeMs_ = options_.params.maxDowntimeMs;
  progress_.maxDowntimeMs = maxDowntimeMs_;
}

SourceJob::~SourceJob() {
  stop_ = true;
  if (!outcome() && !migrateDone_) (void)abortJob(libvirt_, options_.domainName);
  // jthreads join here (the monitor first: it is declared last).
}

void SourceJob::start() {
  started_ = Clock::now();
  lastLow_ = started_;
  if (!options_.attach) {
    migrateThread_ = std::jthread([this] { runMigrate(); });
  } else {
    migrateDone_ = true;
  }
  monitorThread_ = std::jthread([this] { runMonitor(); });
}

void SourceJob::cancel() {
  {
    std::lock_guard lock(mu_);
    if (outcome_ || !abortReason_.empty()) return;
    abortReason_ = "Cancelled";
    abortMessage_ = "cancelled: the VirtualMachineMigration was deleted";
  }
  (void)abortJob(libvirt_, options_.domainName);
}

api::MigrationProgress SourceJob::progress(bool* changed) {
  std::lock_guard lock(mu_);
  if (changed != nullptr) *changed = progressChanged_;
  progressChanged_ = false;
  return progress_;
}

std::optional<SourceJobOutcome> SourceJob::outcome() const {
  std::lock_guard lock(mu_);
  return outcome_;
}

void SourceJob::finish(SourceJobOutcome outcome) {
  std::lock_guard lock(mu_);
  if (outcome_) return;
  if (!outcome.ok && !abortReason_.empty()) {
    // libvirt says "operation aborted"; say who aborted it and why.
    outcome.message =
        abortMessage_ + (outcome.message.empty() ? "" : " (libvirt: " + outcome.message + ")");
    outcome.reason = abortReason_;
  }
  outcome_ = std::move(outcome);
  progressChanged_ = true;
}

void SourceJob::runMigrate() {
  Status s = migrate(libvirt_, options_.domainName, options_.params);
  migrateDone_ = true;
  if (!s.ok()) {
    finish(SourceJobOutcome{false, "MigrationFailed", s.error().message, {}});
    return;
  }
  SourceJobOutcome ok;
  ok.ok = true;
  auto done = jobStats(libvirt_, options_.domainName, /*completed=*/true);
  if (done.ok()) {
    ok.result.totalMs = done.value().elapsedMs;
    ok.result.downtimeMs = done.value().downtimeMs;
    ok.result.bytesTransferred = done.value().dataProcessed;
  } else {
    ok.result.totalMs = msSince(started_);
  }
  {
    std::lock_guard lock(mu_);
    ok.result.endedBy = endedBy_.empty() ? (postCopy_ ? "post-copy" : "pre-copy") : endedBy_;
  }
  finish(std::move(ok));
}

void SourceJob::runMonitor() {
  // A job may take a moment to show up after migrate() is called.
  int missing = 0;
  while (!stop_) {
    auto deadline = Clock::now() + options_.poll;
    auto stats = jobStats(libvirt_, options_.domainName, /*completed=*/false);
    if (stats.ok() && stats.value().active) {
      missing = 0;
      decide(stats.value());
    } else if (migrateDone_) {
      if (options_.attach) {
        // Re-attached: the job is over; the agent reads the domain's state.
        SourceJobOutcome o;
        o.ok = false;
        o.reason = "JobEnded";
        o.message = "the migration job ended while the agent was re-attaching";
        {
          std::lock_guard lock(mu_);
          if (!outcome_) {
            outcome_ = o;
            progressChanged_ = true;
          }
        }
      }
      return;
    } else if (++missing > 600) {
      return;  // bounded: migrate() is stuck without a job for 10 minutes
    }
    while (!stop_ && !migrateDone_ && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (migrateDone_ && !options_.attach) return;
  }
}

void SourceJob::decide(const JobStats& st) {
  uint64_t remaining = st.dataRemaining;
  if (remaining < lowestRemaining_) {
    lowestRemaining_ = remaining;
    lastLow_ = Clock::now();
  }
  api::MigrationProgress p;
  p.dataTotalBytes = st.dataTotal;
  p.dataProcessedBytes = st.dataProcessed;
  p.dataRemainingBytes = st.dataRemaining;
  p.dirtyRateBytesPerSecond = st.dirtyRateBytesPerSecond;
  p.memoryIteration = st.memIteration;
  p.elapsedMs = st.elapsedMs != 0 ? st.elapsedMs : msSince(started_);
  p.postCopy = postCopy_ || st.postCopy;
  p.maxDowntimeMs = maxDowntimeMs_;

  std::string decision;
  if (options_.plugin != nullptr) {
    capnp::MallocMessageBuilder message;
    auto req = message.initRoot<schema::MigrationProgress>();
    auto plan = req.initPlan();
    const auto& pv = options_.plan;
    plan.setBandwidthMiBps(pv.bandwidthMiBps);
    plan.setMaxDowntimeMs(pv.maxDowntimeMs);
    plan.setAutoConverge(pv.autoConverge);
    plan.setAllowPostCopy(pv.allowPostCopy);
    plan.setCompletionTimeoutSeconds(pv.completionTimeoutSeconds);
    plan.setProgressTimeoutSeconds(pv.progressTimeoutSeconds);
    plan.setParallelConnections(pv.parallelConnections);
    plan.setCopyStorage(pv.copyStorage);
    plan.setAutoConvergeInitial(pv.autoConvergeInitial);
    plan.setAutoConvergeIncrement(pv.autoConvergeIncrement);
    req.setElapsedMs(p.elapsedMs);
    req.setDataTotalBytes(st.dataTotal);
    req.setDataProcessedBytes(st.dataProcessed);
    req.setDataRemainingBytes(st.dataRemaining);
    req.setDirtyRateBytesPerSecond(st.dirtyRateBytesPerSecond);
    req.setIteration(st.memIteration);
    req.setMsSinceProgress(msSince(lastLow_));
    req.setPostCopyActive(p.postCopy);
    req.setMaxDowntimeMs(maxDowntimeMs_);
    req.setAutoConvergeThrottle(st.autoConvergeThrottle);
    req.setMemoryRemainingBytes(st.memRemaining);
    req.setDiskRemainingBytes(st.diskRemaining);
    req.setBandwidthBytesPerSecond(st.memBps);
    auto reply =
        options_.plugin->call<schema::MigrationDecision>(VMHOST_METHOD_MIGRATION_PROGRESS, message);
    if (!reply.ok()) {
      // A plugin that cannot answer does not stop a migration; it is said.
      decision = "the migration plugin failed: " + reply.error().message;
    } else {
      auto d = reply.value().get();
      std::string reason = d.getReason().cStr();
      using Action = schema::MigrationDecision::Action;
      uint64_t newDowntime = d.getNewMaxDowntimeMs();
      switch (d.getAction()) {
        case Action::CONTINUE:
        case Action::RAISE_MAX_DOWNTIME:
          if (newDowntime != 0 && newDowntime != maxDowntimeMs_) {
            if (auto s = setMaxDowntime(libvirt_, options_.domainName, newDowntime); s.ok()) {
              decision = "max downtime " + std::to_string(maxDowntimeMs_) + " -> " +
                         std::to_string(newDowntime) + " ms: " + reason;
              maxDowntimeMs_ = newDowntime;
              endedBy_ = "max downtime " + std::to_string(newDowntime) + " ms";
            } else {
              decision = "raising the max downtime failed: " + s.error().message;
            }
          }
          break;
        case Action::SWITCH_TO_POST_COPY:
          if (!postCopy_) {
            if (!options_.params.allowPostCopy) {
              decision = "post-copy asked for but not planned (allowPostCopy false): " + reason;
            } else if (auto s = startPostCopy(libvirt_, options_.domainName); s.ok()) {
              postCopy_ = true;
              endedBy_ = "post-copy";
              decision = "switched to post-copy: " + reason;
            } else {
              decision = "switching to post-copy failed: " + s.error().message;
            }
          }
          break;
        case Action::ABORT: {
          {
            std::lock_guard lock(mu_);
            if (abortReason_.empty()) {
              abortReason_ = "AbortedByPlugin";
              abortMessage_ = "aborted by the migration plugin: " + reason;
            }
          }
          decision = "abort: " + reason;
          (void)abortJob(libvirt_, options_.domainName);
          break;
        }
        default:
          decision = "the migration plugin answered an unknown action; continuing";
      }
    }
  }
  if (st.autoConvergeThrottle > 0 && endedBy_.find("post-copy") == std::string::npos) {
    endedBy_ = "auto-converge (vCPU throttle " + std::to_string(st.autoConvergeThrottle) + "%)";
  }
  std::lock_guard lock(mu_);
  p.maxDowntimeMs = maxDowntimeMs_;
  p.postCopy = postCopy_ || st.postCopy;
  p.lastDecision = decision.empty() ? progress_.lastDecision : decision;
  if (!decision.empty()) {
    std::fprintf(stderr, "migration of %s: %s (%s remaining)\n", options_.vmLabel.c_str(),
                 decision.c_str(), mib(st.dataRemaining).c_str());
  }
  progress_ = p;
  progressChanged_ = true;
}

}  // namespace vmhost::node
