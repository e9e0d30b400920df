#define BOOST_TEST_MODULE migration_adaptive
#include "migration_fixture.h"

#include <algorithm>
#include <limits>
#include <thread>
#include <vector>

using namespace vmhost;
using namespace vmhost::test;

namespace {

constexpr const char* kFile = "vmhost-migration-adaptive.so";
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// A plan with both later steps, as adaptive's default plan.
Progress outpaced() {
  Progress g;
  g.autoConverge = true;
  g.allowPostCopy = true;
  g.completionS = 150;
  g.elapsedMs = 30'000;
  g.remaining = 48 * kMiB;
  g.dirty = 60 * kMiB;
  g.bandwidth = 20 * kMiB;
  return g;
}

}  // namespace

BOOST_AUTO_TEST_CASE(descriptor_declares_post_copy_and_thread_safety) {
  auto lib = PluginLibrary::open(std::string(std::getenv("VMHOST_PLUGIN_DIR")) + "/" + kFile);
  BOOST_TEST_REQUIRE(lib.ok());
  const PluginInfo& info = lib.value()->info();
  BOOST_TEST(info.kind == VMHOST_KIND_MIGRATION);
  BOOST_TEST(info.name == "adaptive");
  BOOST_TEST((info.capabilities & VMHOST_CAP_THREAD_SAFE) != 0u);
  BOOST_TEST((info.capabilities & VMHOST_CAP_MIGRATION_POSTCOPY) != 0u);
}

// precopy's figures, with auto-converge and post-copy allowed.
BOOST_AUTO_TEST_CASE(plan_enables_auto_converge_and_post_copy) {
  auto p = loadPlugin(kFile);
  auto r = plan(*p, {.memory = 4 * kGiB, .disk = 10 * kGiB, .shared = false});
  auto s = r.get();
  BOOST_TEST(s.getBandwidthMiBps() == 0u);
  BOOST_TEST(s.getMaxDowntimeMs() == 300u);
  BOOST_TEST(s.getCompletionTimeoutSeconds() == 150u * 14);
  BOOST_TEST(s.getProgressTimeoutSeconds() == 150u);
  BOOST_TEST(s.getParallelConnections() == 1u);
  BOOST_TEST(s.getCopyStorage());
  BOOST_TEST(s.getAutoConverge());
  BOOST_TEST(s.getAllowPostCopy());
  BOOST_TEST(s.getAutoConvergeInitial() == 0u);  // QEMU's defaults
  BOOST_TEST(s.getAutoConvergeIncrement() == 0u);
  auto tuned = loadPlugin(kFile, R"({"autoConvergeInitial":30,"autoConvergeIncrement":5})");
  BOOST_TEST(plan(*tuned).get().getAutoConvergeInitial() == 30u);
  BOOST_TEST(plan(*tuned).get().getAutoConvergeIncrement() == 5u);
}

BOOST_AUTO_TEST_CASE(plan_honours_overrides) {
  auto p = loadPlugin(kFile);
  auto r = plan(*p, {.memory = 2 * kGiB,
                     .bandwidthMiBps = 100,
                     .maxDowntimeMs = 800,
                     .perGiB = 30,
                     .progressTimeout = 40,
                     .parallel = 8});
  BOOST_TEST(r.get().getBandwidthMiBps() == 100u);
  BOOST_TEST(r.get().getMaxDowntimeMs() == 800u);
  BOOST_TEST(r.get().getCompletionTimeoutSeconds() == 60u);
  BOOST_TEST(r.get().getProgressTimeoutSeconds() == 40u);
  BOOST_TEST(r.get().getParallelConnections() == 8u);
  BOOST_TEST(r.get().getAutoConverge());
  BOOST_TEST(r.get().getAllowPostCopy());
  auto no = plan(*p, {.allowPostCopy = Choice::NO, .autoConverge = Choice::NO});
  BOOST_TEST(!no.get().getAllowPostCopy());
  BOOST_TEST(!no.get().getAutoConverge());
  // yes beats a config that turns them off
  auto off = loadPlugin(kFile, R"({"allowPostCopy":false,"autoConverge":false})");
  BOOST_TEST(!plan(*off).get().getAllowPostCopy());
  BOOST_TEST(!plan(*off).get().getAutoConverge());
  auto yes = plan(*off, {.allowPostCopy = Choice::YES, .autoConverge = Choice::YES});
  BOOST_TEST(yes.get().getAllowPostCopy());
  BOOST_TEST(yes.get().getAutoConverge());
  auto bad = tryPlan(*p, {.parallel = 65});
  BOOST_TEST_REQUIRE(!bad.ok());
  BOOST_TEST(bad.error().message ==
             "migration plugin 'adaptive': overrides.parallelConnections: must be 1..64, got 65");
}

BOOST_AUTO_TEST_CASE(config_is_checked) {
  const std::string prefix = "plugin 'adaptive' (migration): create failed: INVALID_ARGUMENT: ";
  BOOST_TEST(createError(kFile, R"({"maxDowntimeCapMs":200})") ==
             prefix + "config.maxDowntimeCapMs: must be >= config.maxDowntimeMs (300), got 200");
  BOOST_TEST(createError(kFile, R"({"stallSeconds":0})") ==
             prefix + "config.stallSeconds: must be > 0");
  BOOST_TEST(createError(kFile, R"({"autoConvergeIncrement":100})") ==
             prefix +
                 "config.autoConvergeIncrement: must be 0..99 (percent; 0: QEMU's default), "
                 "got 100");
  BOOST_TEST(createError(kFile, R"({"parallelConnections":65})") ==
             prefix + "config.parallelConnections: must be 1..64");
  BOOST_TEST(createError(kFile, R"({"stall":3})").find("unknown key \"stall\"") !=
             std::string::npos);
}

// Not converging triggers nothing while it converges: continue, no reason.
BOOST_AUTO_TEST_CASE(row_converging_continues) {
  auto p = loadPlugin(kFile);
  Progress g = outpaced();
  g.dirty = 10 * kMiB;  // below the link
  g.sinceMs = 4'999;    // and a new low less than stallSeconds ago
  auto d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason == "");
  BOOST_TEST(d.newMaxDowntimeMs == 0u);
  g.dirty = 20 * kMiB;  // equal is not faster
  BOOST_TEST(decide(*p, g).action == Action::CONTINUE);
  g.bandwidth = 0;  // no rate known, no limit: only the stall can tell
  g.dirty = 600 * kMiB;
  BOOST_TEST(decide(*p, g).action == Action::CONTINUE);
}

// Step 1: the max downtime doubles from the plan's up to the cap, one raise per
// stall period.
BOOST_AUTO_TEST_CASE(row_step1_raises_max_downtime_in_steps) {
  auto p = loadPlugin(kFile);
  Progress g = outpaced();
  // dirtier than the link: the first raise at once
  auto d = decide(*p, g);
  BOOST_TEST(d.action == Action::RAISE_MAX_DOWNTIME);
  BOOST_TEST(d.newMaxDowntimeMs == 600u);
  BOOST_TEST(d.reason ==
             "step 1/3: raising max downtime 300 -> 600 ms: 48 MiB remaining, dirty 60 MiB/s > "
             "link 20 MiB/s");
  // stalled (no rates known): the same
  Progress s = outpaced();
  s.dirty = 0;
  s.bandwidth = 0;
  s.sinceMs = 5'000;
  d = decide(*p, s);
  BOOST_TEST(d.action == Action::RAISE_MAX_DOWNTIME);
  BOOST_TEST(d.newMaxDowntimeMs == 600u);
  BOOST_TEST(d.reason ==
             "step 1/3: raising max downtime 300 -> 600 ms: 48 MiB remaining, no new low for 5 s");
  // the second raise waits for one stall period without a new low
  g.downtimeMs = 600;
  g.sinceMs = 2'000;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason ==
             "step 1/3: max downtime 600 ms; next raise after 5 s without a new low (2 s so far): "
             "48 MiB remaining, dirty 60 MiB/s > link 20 MiB/s");
  g.sinceMs = 5'000;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::RAISE_MAX_DOWNTIME);
  BOOST_TEST(d.newMaxDowntimeMs == 1200u);
  BOOST_TEST(d.reason ==
             "step 1/3: raising max downtime 600 -> 1200 ms: 48 MiB remaining, no new low for 5 s, "
             "dirty 60 MiB/s > link 20 MiB/s");
  // the third at two periods, clamped to the cap
  g.downtimeMs = 1200;
  g.sinceMs = 9'999;
  BOOST_TEST(decide(*p, g).action == Action::CONTINUE);
  g.sinceMs = 10'000;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::RAISE_MAX_DOWNTIME);
  BOOST_TEST(d.newMaxDowntimeMs == 2000u);
  // the link's rate falls back to the plan's limit when QEMU measures none
  Progress limited = outpaced();
  limited.bandwidth = 0;
  limited.planBandwidthMiBps = 32;
  d = decide(*p, limited);
  BOOST_TEST(d.action == Action::RAISE_MAX_DOWNTIME);
  BOOST_TEST(d.reason.find("dirty 60 MiB/s > link 32 MiB/s") != std::string::npos, d.reason);
  // a max downtime in force that the host does not report (0), or below the
  // plan's, counts as the plan's
  g.downtimeMs = 0;
  g.sinceMs = 0;
  BOOST_TEST(decide(*p, g).newMaxDowntimeMs == 600u);
  g.downtimeMs = 100;
  BOOST_TEST(decide(*p, g).newMaxDowntimeMs == 600u);
  // a plan without a max downtime starts from QEMU's 300 ms
  g.planDowntimeMs = 0;
  g.downtimeMs = 0;
  BOOST_TEST(decide(*p, g).newMaxDowntimeMs == 600u);
}

// Step 2: at the cap, QEMU's vCPU throttle gets autoConvergeSeconds (until
// 3 x 5 + 10 = 25 s without a new low), or until it reaches 99 %.
BOOST_AUTO_TEST_CASE(row_step2_waits_for_auto_converge) {
  auto p = loadPlugin(kFile);
  Progress g = outpaced();
  g.downtimeMs = 2000;
  g.sinceMs = 12'000;
  g.throttle = 40;
  auto d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason ==
             "step 2/3: waiting for auto-converge (vCPU throttle 40%) until 25 s without a new "
             "low (12 s so far), max downtime 2000 ms: 48 MiB remaining, no new low for 12 s, "
             "dirty 60 MiB/s > link 20 MiB/s");
  g.throttle = 0;
  g.sinceMs = 24'999;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason.find("(vCPU throttle not engaged yet)") != std::string::npos, d.reason);
  // a new low (auto-converge working) keeps it in step 2: the max downtime stays
  g.sinceMs = 1'000;
  g.throttle = 60;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason.rfind("step 2/3: waiting for auto-converge", 0) == 0, d.reason);
}

// Step 3: post-copy, once auto-converge had its time or can do no more.
BOOST_AUTO_TEST_CASE(row_step3_switches_to_post_copy) {
  auto p = loadPlugin(kFile);
  Progress g = outpaced();
  g.downtimeMs = 2000;
  g.sinceMs = 25'000;
  g.throttle = 70;
  auto d = decide(*p, g);
  BOOST_TEST(d.action == Action::SWITCH_TO_POST_COPY);
  BOOST_TEST(d.reason ==
             "step 3/3: switching to post-copy: 48 MiB remaining, no new low for 25 s, dirty 60 "
             "MiB/s > link 20 MiB/s; tried max downtime 2000 ms, vCPU throttle 70%");
  // throttle at its maximum: no need to wait out the window
  g.sinceMs = 16'000;
  g.throttle = 99;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::SWITCH_TO_POST_COPY);
  BOOST_TEST(d.reason.find("vCPU throttle 99%") != std::string::npos, d.reason);
  // and once in post-copy: continue, never abort (not even past the timeout)
  g.postCopy = true;
  g.elapsedMs = 1'000'000;
  g.sinceMs = 1'000'000;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason == "step 3/3: post-copy running: the target pulls the remaining 48 MiB");
}

// Without auto-converge (overrides.autoConverge no): the steps are 1/2 and
// 2/2; post-copy comes one stall period after the last raise.
BOOST_AUTO_TEST_CASE(row_without_auto_converge) {
  auto p = loadPlugin(kFile);
  Progress g = outpaced();
  g.autoConverge = false;
  BOOST_TEST(decide(*p, g).reason.rfind("step 1/2: raising max downtime 300 -> 600 ms", 0) == 0);
  g.downtimeMs = 2000;
  g.sinceMs = 14'000;
  auto d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason ==
             "step 2/2: max downtime 2000 ms; post-copy after 15 s without a new low (14 s so "
             "far): 48 MiB remaining, no new low for 14 s, dirty 60 MiB/s > link 20 MiB/s");
  g.sinceMs = 15'000;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::SWITCH_TO_POST_COPY);
  BOOST_TEST(d.reason ==
             "step 2/2: switching to post-copy: 48 MiB remaining, no new low for 15 s, dirty 60 "
             "MiB/s > link 20 MiB/s; tried max downtime 2000 ms");
}

// Without post-copy (overrides.allowPostCopy no): every step spent, it waits;
// it aborts after the progress timeout, or at the completion timeout.
BOOST_AUTO_TEST_CASE(row_without_post_copy) {
  auto p = loadPlugin(kFile);
  Progress g = outpaced();
  g.allowPostCopy = false;
  BOOST_TEST(decide(*p, g).reason.rfind("step 1/2: raising max downtime", 0) == 0);
  g.downtimeMs = 2000;
  g.sinceMs = 20'000;
  g.throttle = 50;
  BOOST_TEST(decide(*p, g).reason.rfind("step 2/2: waiting for auto-converge", 0) == 0);
  g.sinceMs = 30'000;
  auto d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason ==
             "every step spent, post-copy not allowed: waiting for the guest (abort after 150 s "
             "without a new low, or at the completion timeout): 48 MiB remaining, no new low for "
             "30 s, dirty 60 MiB/s > link 20 MiB/s; tried max downtime 2000 ms, vCPU throttle 50%");
  g.sinceMs = 150'000;
  BOOST_TEST(decide(*p, g).action == Action::CONTINUE);
  g.sinceMs = 150'001;
  g.elapsedMs = 149'000;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::ABORT);
  BOOST_TEST(d.reason ==
             "no progress for 150 s (limit 150 s) with every step spent, post-copy not allowed: "
             "48 MiB remaining, no new low for 150 s, dirty 60 MiB/s > link 20 MiB/s; tried max "
             "downtime 2000 ms, vCPU throttle 50%");
  g.progressS = 0;  // never
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason.find("waiting for the guest (abort at the completion timeout): ") !=
                 std::string::npos,
             d.reason);
}

// The completion timeout ends it: by post-copy when allowed, else by abort;
// while disks are still copied post-copy cannot start, so abort.
BOOST_AUTO_TEST_CASE(row_completion_timeout) {
  auto p = loadPlugin(kFile);
  Progress g = outpaced();
  g.elapsedMs = 151'000;
  g.sinceMs = 0;
  g.dirty = 0;  // converging, even: the limit is the limit
  auto d = decide(*p, g);
  BOOST_TEST(d.action == Action::SWITCH_TO_POST_COPY);
  BOOST_TEST(d.reason ==
             "step 3/3: completion timeout: 151 s elapsed, limit 150 s: switching to post-copy: "
             "48 MiB remaining; tried max downtime 300 ms, vCPU throttle not engaged yet");
  g.allowPostCopy = false;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::ABORT);
  BOOST_TEST(d.reason ==
             "completion timeout: 151 s elapsed, limit 150 s, post-copy not allowed: 48 MiB "
             "remaining; tried max downtime 300 ms, vCPU throttle not engaged yet");
  g.allowPostCopy = true;
  g.iteration = 0;
  g.diskRemaining = 3 * kGiB;
  g.remaining = 3 * kGiB + 512 * kMiB;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::ABORT);
  BOOST_TEST(d.reason ==
             "completion timeout: 151 s elapsed, limit 150 s while still copying disks (3 GiB of "
             "disks remaining): 3.5 GiB remaining, link 20 MiB/s");
  g.completionS = 0;  // never
  BOOST_TEST(decide(*p, g).action == Action::CONTINUE);
}

// While the disks are copied (no memory pass yet) nothing but the completion
// timeout applies: raising the downtime or post-copy cannot help the disks.
BOOST_AUTO_TEST_CASE(row_copying_disks) {
  auto p = loadPlugin(kFile);
  Progress g = outpaced();
  g.iteration = 0;
  g.diskRemaining = 2 * kGiB;
  g.sinceMs = 60'000;
  auto d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason == "copying disks: 2 GiB of disks remaining");
  // once memory passes run, disk bytes in flight do not hold the steps back
  g.iteration = 2;
  BOOST_TEST(decide(*p, g).action == Action::RAISE_MAX_DOWNTIME);
}

// A plan that starts at or above the cap (an override) has no step 1.
BOOST_AUTO_TEST_CASE(row_plan_above_the_cap) {
  auto p = loadPlugin(kFile);
  Progress g = outpaced();
  g.planDowntimeMs = 3000;
  auto d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason.rfind("step 1/2: waiting for auto-converge", 0) == 0, d.reason);
  BOOST_TEST(d.reason.find("until 10 s without a new low") != std::string::npos, d.reason);
  g.sinceMs = 10'000;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::SWITCH_TO_POST_COPY);
  BOOST_TEST(d.reason.rfind("step 2/2: switching to post-copy", 0) == 0, d.reason);
  BOOST_TEST(d.reason.find("tried max downtime 3000 ms") != std::string::npos, d.reason);
  // no step at all: only the timeouts
  g.autoConverge = false;
  g.allowPostCopy = false;
  g.sinceMs = 100'000;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason.rfind("every step spent", 0) == 0, d.reason);
}

// The configured pace: stallSeconds 2, cap 1000 ms, autoConvergeSeconds 0.
BOOST_AUTO_TEST_CASE(config_sets_the_pace) {
  auto p =
      loadPlugin(kFile, R"({"stallSeconds":2,"maxDowntimeCapMs":1000,"autoConvergeSeconds":0})");
  Progress g = outpaced();
  g.dirty = 0;
  g.sinceMs = 2'000;
  BOOST_TEST(decide(*p, g).newMaxDowntimeMs == 600u);
  g.downtimeMs = 600;
  BOOST_TEST(decide(*p, g).newMaxDowntimeMs == 1000u);
  g.downtimeMs = 1000;
  g.sinceMs = 3'999;
  auto d = decide(*p, g);
  BOOST_TEST(d.action == Action::CONTINUE);
  BOOST_TEST(d.reason.find("step 2/3: waiting for auto-converge") == 0, d.reason);
  g.sinceMs = 4'000;
  BOOST_TEST(decide(*p, g).action == Action::SWITCH_TO_POST_COPY);
}

// A whole migration of a guest that dirties 3x faster than the link, the
// decisions fed back as the host applies them, one message a second, QEMU's
// throttle engaging at 12 s (20 %, +10 % a second): raises at 0, 5 and 10 s
// without a new low, then auto-converge until the throttle reaches 99 % (at
// 20 s, before the 25 s window ends), then post-copy.
BOOST_AUTO_TEST_CASE(a_hopeless_guest_walks_every_step) {
  auto p = loadPlugin(kFile);
  Progress g = outpaced();
  std::vector<std::string> events;
  for (uint64_t s = 0; s < 60 && !g.postCopy; ++s) {
    g.sinceMs = s * 1000;
    g.elapsedMs = 20'000 + s * 1000;
    g.throttle = s < 12 ? 0 : static_cast<uint32_t>(std::min<uint64_t>(99, 20 + (s - 12) * 10));
    auto d = decide(*p, g);
    if (d.action == Action::RAISE_MAX_DOWNTIME) {
      events.push_back(std::to_string(s) + " s: raise to " + std::to_string(d.newMaxDowntimeMs));
      g.downtimeMs = d.newMaxDowntimeMs;
    } else if (d.action == Action::SWITCH_TO_POST_COPY) {
      events.push_back(std::to_string(s) + " s: post-copy");
      g.postCopy = true;
    } else if (d.action == Action::ABORT) {
      events.push_back(std::to_string(s) + " s: abort");
      break;
    }
  }
  std::vector<std::string> expected = {"0 s: raise to 600", "5 s: raise to 1200",
                                       "10 s: raise to 2000", "20 s: post-copy"};
  BOOST_TEST(events == expected, boost::test_tools::per_element());
}

// Stateless: the same message always gets the same answer, on any thread.
BOOST_AUTO_TEST_CASE(decisions_are_stateless_and_thread_safe) {
  auto p = loadPlugin(kFile);
  Progress g = outpaced();
  g.downtimeMs = 600;
  g.sinceMs = 5'000;
  auto first = decide(*p, g);
  std::vector<std::thread> threads;
  std::vector<int> same(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        Progress other = outpaced();
        other.sinceMs = static_cast<uint64_t>(i) * 100;
        (void)decide(*p, other);  // another VM's migration in between
        auto d = decide(*p, g);
        if (d.action == first.action && d.reason == first.reason &&
            d.newMaxDowntimeMs == first.newMaxDowntimeMs) {
          ++same[t];
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int n : same) BOOST_TEST(n == 200);
}

// Figures near 2^64: no overflow, a decision every time.
BOOST_AUTO_TEST_CASE(extreme_figures_do_not_wrap) {
  auto p = loadPlugin(kFile, R"({"maxDowntimeCapMs":"18446744073709551615"})");
  Progress g = outpaced();
  g.planDowntimeMs = kMax / 2 + 1;
  g.downtimeMs = kMax / 2 + 1;
  auto d = decide(*p, g);
  BOOST_TEST(d.action == Action::RAISE_MAX_DOWNTIME);
  BOOST_TEST(d.newMaxDowntimeMs == kMax);  // clamped to the cap, not wrapped
  g.completionS = kMax;
  g.progressS = kMax;
  g.elapsedMs = kMax;
  g.sinceMs = kMax;
  g.downtimeMs = kMax;
  g.remaining = kMax;
  g.dirty = kMax;
  d = decide(*p, g);
  BOOST_TEST(d.action == Action::SWITCH_TO_POST_COPY);
}
