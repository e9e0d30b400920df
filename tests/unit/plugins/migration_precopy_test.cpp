#define BOOST_TEST_MODULE migration_precopy
#include "plugin_fixture.h"

#include <vmhost/schema/migration.capnp.h>

using namespace vmhost;

namespace {

constexpr uint64_t kGiB = 1ull << 30;

Reply<schema::MigrationPlan> plan(PluginInstance& p, uint64_t memory, uint64_t disk, bool shared) {
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<schema::MigrationRequest>();
  r.setMemoryBytes(memory);
  r.setDiskBytesToCopy(disk);
  r.setSharedStorage(shared);
  auto reply = p.call<schema::MigrationPlan>(VMHOST_METHOD_MIGRATION_PLAN, m);
  BOOST_TEST_REQUIRE(reply.ok());
  return std::move(reply.value());
}

schema::MigrationDecision::Action decide(PluginInstance& p, uint64_t completionS, uint64_t stallS,
                                         uint64_t elapsedMs, uint64_t sinceProgressMs,
                                         std::string* reason = nullptr) {
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<schema::MigrationProgress>();
  r.initPlan().setCompletionTimeoutSeconds(completionS);
  r.getPlan().setProgressTimeoutSeconds(stallS);
  r.setElapsedMs(elapsedMs);
  r.setMsSinceProgress(sinceProgressMs);
  r.setDataRemainingBytes(1234);
  auto reply = p.call<schema::MigrationDecision>(VMHOST_METHOD_MIGRATION_PROGRESS, m);
  BOOST_TEST_REQUIRE(reply.ok());
  if (reason) *reason = reply.value().get().getReason().cStr();
  return reply.value().get().getAction();
}

}  // namespace

BOOST_AUTO_TEST_CASE(plan_scales_completion_timeout_with_data) {
  auto p = test::loadPlugin("vmhost-migration-precopy.so");
  auto small = plan(*p, 128 << 20, 0, true);
  BOOST_TEST(small.get().getCompletionTimeoutSeconds() == 150u);  // at least one GiB's worth
  BOOST_TEST(small.get().getMaxDowntimeMs() == 300u);
  BOOST_TEST(small.get().getAutoConverge());
  BOOST_TEST(!small.get().getAllowPostCopy());
  BOOST_TEST(!small.get().getCopyStorage());
  auto big = plan(*p, 4 * kGiB, 10 * kGiB, false);
  BOOST_TEST(big.get().getCompletionTimeoutSeconds() == 150u * 14);
  BOOST_TEST(big.get().getCopyStorage());
  auto sharedDisks = plan(*p, 4 * kGiB, 10 * kGiB, true);
  BOOST_TEST(sharedDisks.get().getCompletionTimeoutSeconds() == 150u * 4);
  BOOST_TEST(!sharedDisks.get().getCopyStorage());
}

BOOST_AUTO_TEST_CASE(config_overrides_defaults) {
  auto p = test::loadPlugin(
      "vmhost-migration-precopy.so",
      R"({"bandwidthMiBps":64,"maxDowntimeMs":50,"completionTimeoutPerGiBSeconds":10,"autoConverge":false,"parallelConnections":4})");
  auto r = plan(*p, 2 * kGiB, 0, true);
  BOOST_TEST(r.get().getBandwidthMiBps() == 64u);
  BOOST_TEST(r.get().getMaxDowntimeMs() == 50u);
  BOOST_TEST(r.get().getCompletionTimeoutSeconds() == 20u);
  BOOST_TEST(!r.get().getAutoConverge());
  BOOST_TEST(r.get().getParallelConnections() == 4u);
  BOOST_TEST(test::createError("vmhost-migration-precopy.so", R"({"parallelConnections":0})") ==
             "plugin 'precopy' (migration): create failed: INVALID_ARGUMENT: "
             "config.parallelConnections: must be 1..64");
}

BOOST_AUTO_TEST_CASE(progress_decisions) {
  auto p = test::loadPlugin("vmhost-migration-precopy.so");
  using A = schema::MigrationDecision::Action;
  BOOST_TEST((decide(*p, 150, 150, 10'000, 1'000) == A::CONTINUE));
  std::string why;
  BOOST_TEST((decide(*p, 150, 150, 151'000, 0, &why) == A::ABORT));
  BOOST_TEST(why == "completion timeout: 151 s elapsed, limit 150 s");
  BOOST_TEST((decide(*p, 1000, 150, 200'000, 151'000, &why) == A::ABORT));
  BOOST_TEST(why == "no progress for 151 s (limit 150 s), 1234 bytes remaining");
  BOOST_TEST((decide(*p, 0, 0, 10'000'000, 10'000'000) == A::CONTINUE));  // 0: no limit
}
