// Requests and progress messages for the migration plugins' tests, built
// from plain structs with a field per schema field the plugins read.
#pragma once

#include "plugin_fixture.h"

#include <vmhost/schema/migration.capnp.h>

#include <cstdint>
#include <string>

namespace vmhost::test {

inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint64_t kGiB = 1ull << 30;

using Choice = schema::MigrationOverrides::Choice;
using Action = schema::MigrationDecision::Action;

struct Request {
  uint64_t memory = 1 * kGiB;
  uint64_t disk = 0;
  bool shared = true;
  // overrides
  uint64_t bandwidthMiBps = 0, maxDowntimeMs = 0, perGiB = 0, progressTimeout = 0;
  uint32_t parallel = 0;
  Choice allowPostCopy = Choice::UNSET, autoConverge = Choice::UNSET;
};

inline Result<Reply<schema::MigrationPlan>> tryPlan(PluginInstance& p, const Request& q) {
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<schema::MigrationRequest>();
  r.initVm().setNamespace("default");
  r.getVm().setName("vm1");
  r.getVm().setUid("uid-1");
  r.setSourceNode("node-a");
  r.setTargetNode("node-b");
  r.setMemoryBytes(q.memory);
  r.setDiskBytesToCopy(q.disk);
  r.setSharedStorage(q.shared);
  auto o = r.initOverrides();
  o.setBandwidthMiBps(q.bandwidthMiBps);
  o.setMaxDowntimeMs(q.maxDowntimeMs);
  o.setCompletionTimeoutPerGiBSeconds(q.perGiB);
  o.setProgressTimeoutSeconds(q.progressTimeout);
  o.setParallelConnections(q.parallel);
  o.setAllowPostCopy(q.allowPostCopy);
  o.setAutoConverge(q.autoConverge);
  return p.call<schema::MigrationPlan>(VMHOST_METHOD_MIGRATION_PLAN, m);
}

inline Reply<schema::MigrationPlan> plan(PluginInstance& p, const Request& q = {}) {
  auto reply = tryPlan(p, q);
  BOOST_TEST_REQUIRE(reply.ok(), (reply.ok() ? "" : reply.error().message));
  return std::move(reply.value());
}

// A progress message: the plan in force and the job's figures.
struct Progress {
  // the plan
  uint64_t planDowntimeMs = 300;
  uint64_t completionS = 150;
  uint64_t progressS = 150;
  uint64_t planBandwidthMiBps = 0;
  bool autoConverge = false;
  bool allowPostCopy = false;
  // the job
  uint64_t elapsedMs = 30'000;
  uint64_t sinceMs = 0;  // msSinceProgress
  uint64_t remaining = 48 * kMiB;
  uint64_t dirty = 0;       // bytes/s
  uint64_t bandwidth = 0;   // bytes/s, measured
  uint64_t downtimeMs = 0;  // in force (0: not reported)
  uint64_t iteration = 3;
  uint64_t diskRemaining = 0;
  uint32_t throttle = 0;
  bool postCopy = false;
};

struct Decision {
  Action action;
  std::string reason;
  uint64_t newMaxDowntimeMs;
};

inline Decision decide(PluginInstance& p, const Progress& g) {
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<schema::MigrationProgress>();
  auto plan = r.initPlan();
  plan.setMaxDowntimeMs(g.planDowntimeMs);
  plan.setCompletionTimeoutSeconds(g.completionS);
  plan.setProgressTimeoutSeconds(g.progressS);
  plan.setBandwidthMiBps(g.planBandwidthMiBps);
  plan.setAutoConverge(g.autoConverge);
  plan.setAllowPostCopy(g.allowPostCopy);
  plan.setParallelConnections(1);
  r.setElapsedMs(g.elapsedMs);
  r.setMsSinceProgress(g.sinceMs);
  r.setDataRemainingBytes(g.remaining);
  r.setDataTotalBytes(g.remaining * 4);
  r.setDataProcessedBytes(g.remaining * 3);
  r.setMemoryRemainingBytes(g.remaining > g.diskRemaining ? g.remaining - g.diskRemaining : 0);
  r.setDiskRemainingBytes(g.diskRemaining);
  r.setDirtyRateBytesPerSecond(g.dirty);
  r.setBandwidthBytesPerSecond(g.bandwidth);
  r.setMaxDowntimeMs(g.downtimeMs);
  r.setIteration(g.iteration);
  r.setAutoConvergeThrottle(g.throttle);
  r.setPostCopyActive(g.postCopy);
  auto reply = p.call<schema::MigrationDecision>(VMHOST_METHOD_MIGRATION_PROGRESS, m);
  BOOST_TEST_REQUIRE(reply.ok(), (reply.ok() ? "" : reply.error().message));
  auto d = reply.value().get();
  return {d.getAction(), d.getReason().cStr(), d.getNewMaxDowntimeMs()};
}

inline const char* actionName(Action a) {
  switch (a) {
    case Action::CONTINUE:
      return "continue";
    case Action::SWITCH_TO_POST_COPY:
      return "switchToPostCopy";
    case Action::ABORT:
      return "abort";
    case Action::RAISE_MAX_DOWNTIME:
      return "raiseMaxDowntime";
  }
  return "?";
}

}  // namespace vmhost::test

namespace boost::test_tools::tt_detail {
template <>
struct print_log_value<vmhost::schema::MigrationDecision::Action> {
  void operator()(std::ostream& os, vmhost::schema::MigrationDecision::Action a) {
    os << vmhost::test::actionName(a);
  }
};
}  // namespace boost::test_tools::tt_detail
