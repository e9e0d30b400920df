#define BOOST_TEST_MODULE migration_precopy
#include "migration_fixture.h"

#include <limits>

using namespace vmhost;
using namespace vmhost::test;

namespace {

constexpr const char* kFile = "vmhost-migration-precopy.so";
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

}  // namespace

// KubeVirt's defaults: unlimited bandwidth, 150 s per GiB, 150 s without
// progress, no post-copy, no auto-converge; libvirt's 300 ms max downtime.
BOOST_AUTO_TEST_CASE(plan_has_kubevirts_defaults_and_scales_the_completion_timeout) {
  auto p = loadPlugin(kFile);
  auto small = plan(*p, {.memory = 128 * kMiB, .disk = 0, .shared = true});
  auto s = small.get();
  BOOST_TEST(s.getBandwidthMiBps() == 0u);
  BOOST_TEST(s.getMaxDowntimeMs() == 300u);
  BOOST_TEST(s.getCompletionTimeoutSeconds() == 150u);  // at least one GiB's worth
  BOOST_TEST(s.getProgressTimeoutSeconds() == 150u);
  BOOST_TEST(!s.getAutoConverge());
  BOOST_TEST(!s.getAllowPostCopy());
  BOOST_TEST(s.getParallelConnections() == 1u);
  BOOST_TEST(!s.getCopyStorage());
  BOOST_TEST(s.getAutoConvergeInitial() == 0u);
  BOOST_TEST(s.getAutoConvergeIncrement() == 0u);
  auto big = plan(*p, {.memory = 4 * kGiB, .disk = 10 * kGiB, .shared = false});
  BOOST_TEST(big.get().getCompletionTimeoutSeconds() == 150u * 14);
  BOOST_TEST(big.get().getCopyStorage());
  auto partGiB = plan(*p, {.memory = 4 * kGiB + 1, .disk = 0, .shared = true});
  BOOST_TEST(partGiB.get().getCompletionTimeoutSeconds() == 150u * 5);  // a started GiB counts
  auto sharedDisks = plan(*p, {.memory = 4 * kGiB, .disk = 10 * kGiB, .shared = true});
  BOOST_TEST(sharedDisks.get().getCompletionTimeoutSeconds() == 150u * 4);
  BOOST_TEST(!sharedDisks.get().getCopyStorage());
  // Sizes near 2^64 saturate instead of wrapping to a short timeout.
  auto huge = plan(*p, {.memory = kMax, .disk = kMax, .shared = false});
  BOOST_TEST(huge.get().getCompletionTimeoutSeconds() == 150u * (1ull << 34));
}

BOOST_AUTO_TEST_CASE(config_replaces_defaults) {
  auto p = loadPlugin(
      kFile,
      R"({"bandwidthMiBps":64,"maxDowntimeMs":50,"completionTimeoutPerGiBSeconds":10,"progressTimeoutSeconds":20,"autoConverge":true,"parallelConnections":4})");
  auto r = plan(*p, {.memory = 2 * kGiB});
  BOOST_TEST(r.get().getBandwidthMiBps() == 64u);
  BOOST_TEST(r.get().getMaxDowntimeMs() == 50u);
  BOOST_TEST(r.get().getCompletionTimeoutSeconds() == 20u);
  BOOST_TEST(r.get().getProgressTimeoutSeconds() == 20u);
  BOOST_TEST(r.get().getAutoConverge());
  BOOST_TEST(!r.get().getAllowPostCopy());
  BOOST_TEST(r.get().getParallelConnections() == 4u);
  BOOST_TEST(createError(kFile, R"({"parallelConnections":0})") ==
             "plugin 'precopy' (migration): create failed: INVALID_ARGUMENT: "
             "config.parallelConnections: must be 1..64");
  BOOST_TEST(createError(kFile, R"({"maxDowntimeMs":0})") ==
             "plugin 'precopy' (migration): create failed: INVALID_ARGUMENT: "
             "config.maxDowntimeMs: must be > 0");
  BOOST_TEST(
      createError(kFile, R"({"allowPostCopy":true})").find("unknown key \"allowPostCopy\"") !=
      std::string::npos);
}

// MigrationRequest.overrides: a non-zero figure replaces the plugin's, 0 keeps
// it; autoConverge yes/no is honoured; allowPostCopy yes is not (precopy never
// switches to post-copy).
BOOST_AUTO_TEST_CASE(plan_honours_overrides_except_post_copy) {
  auto p = loadPlugin(kFile);
  auto r = plan(*p, {.memory = 2 * kGiB,
                     .bandwidthMiBps = 100,
                     .maxDowntimeMs = 800,
                     .perGiB = 30,
                     .progressTimeout = 40,
                     .parallel = 8,
                     .allowPostCopy = Choice::YES,
                     .autoConverge = Choice::YES});
  BOOST_TEST(r.get().getBandwidthMiBps() == 100u);
  BOOST_TEST(r.get().getMaxDowntimeMs() == 800u);
  BOOST_TEST(r.get().getCompletionTimeoutSeconds() == 60u);
  BOOST_TEST(r.get().getProgressTimeoutSeconds() == 40u);
  BOOST_TEST(r.get().getParallelConnections() == 8u);
  BOOST_TEST(r.get().getAutoConverge());
  BOOST_TEST(!r.get().getAllowPostCopy());  // not honoured
  auto none =
      plan(*p, {.memory = 2 * kGiB, .allowPostCopy = Choice::NO, .autoConverge = Choice::NO});
  BOOST_TEST(none.get().getMaxDowntimeMs() == 300u);
  BOOST_TEST(none.get().getCompletionTimeoutSeconds() == 300u);
  BOOST_TEST(!none.get().getAutoConverge());
  BOOST_TEST(!none.get().getAllowPostCopy());
  // autoConverge no beats a config that turns it on.
  auto on = loadPlugin(kFile, R"({"autoConverge":true})");
  BOOST_TEST(!plan(*on, {.autoConverge = Choice::NO}).get().getAutoConverge());
  BOOST_TEST(plan(*on, {}).get().getAutoConverge());
  // More connections than libvirt is given is refused, naming the override.
  auto bad = tryPlan(*p, {.parallel = 100});
  BOOST_TEST_REQUIRE(!bad.ok());
  BOOST_TEST(bad.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(bad.error().message ==
             "migration plugin 'precopy': overrides.parallelConnections: must be 1..64, got 100");
}

// The decision table, row by row.
BOOST_AUTO_TEST_CASE(decision_table) {
  auto p = loadPlugin(kFile);
  // within both limits: continue, nothing to say
  auto d = decide(*p, {.elapsedMs = 10'000, .sinceMs = 1'000});
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason == "");
  BOOST_TEST(d.newMaxDowntimeMs == 0u);
  // exactly at the limits: still continue (past them aborts)
  BOOST_TEST(decide(*p, {.elapsedMs = 150'000, .sinceMs = 150'000}).action == Action::CONTINUE);
  // past the completion timeout: abort
  d = decide(*p, {.elapsedMs = 151'000,
                  .sinceMs = 0,
                  .remaining = 48 * kMiB,
                  .dirty = 60 * kMiB,
                  .bandwidth = 20 * kMiB});
  BOOST_TEST(d.action == Action::ABORT);
  BOOST_TEST(d.reason ==
             "completion timeout: 151 s elapsed, limit 150 s: 48 MiB remaining, dirty 60 MiB/s, "
             "link 20 MiB/s");
  // no new low for longer than the progress timeout: abort
  d = decide(
      *p,
      {.completionS = 1000, .elapsedMs = 200'000, .sinceMs = 151'000, .remaining = 1536 * kMiB});
  BOOST_TEST(d.action == Action::ABORT);
  BOOST_TEST(d.reason == "no progress for 151 s (limit 150 s): 1.5 GiB remaining");
  // the link's rate falls back to the plan's limit when QEMU measures none
  d = decide(*p, {.completionS = 1000,
                  .planBandwidthMiBps = 32,
                  .elapsedMs = 200'000,
                  .sinceMs = 151'000,
                  .remaining = 1234});
  BOOST_TEST(d.reason == "no progress for 151 s (limit 150 s): 1.2 KiB remaining, link 32 MiB/s");
  // 0: no limit
  BOOST_TEST(
      decide(*p, {.completionS = 0, .progressS = 0, .elapsedMs = 10'000'000, .sinceMs = 10'000'000})
          .action == Action::CONTINUE);
  // post-copy running (not precopy's doing): never aborted, whatever the clock says
  d = decide(*p, {.elapsedMs = 500'000, .sinceMs = 500'000, .postCopy = true});
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason ==
             "post-copy is running (precopy never starts it) and cannot be aborted: 48 MiB "
             "remaining");
  // precopy never raises the max downtime nor switches, however hopeless
  for (uint64_t since : {0ull, 5'000ull, 60'000ull, 149'000ull}) {
    auto h = decide(*p, {.elapsedMs = 140'000,
                         .sinceMs = since,
                         .dirty = 600 * kMiB,
                         .bandwidth = 20 * kMiB,
                         .throttle = 99});
    BOOST_TEST(h.action == Action::CONTINUE);
  }
}

// Figures near 2^64 (the host's are unchecked): no overflow into an abort.
BOOST_AUTO_TEST_CASE(extreme_figures_do_not_wrap) {
  auto p = loadPlugin(kFile);
  BOOST_TEST(
      decide(*p,
             {.completionS = kMax, .progressS = kMax, .elapsedMs = kMax - 1, .sinceMs = kMax - 1})
          .action == Action::CONTINUE);
  BOOST_TEST(
      decide(
          *p,
          {.completionS = kMax / 100, .progressS = kMax / 100, .elapsedMs = kMax / 2, .sinceMs = 0})
          .action == Action::CONTINUE);
}
