// Plugin invoke round trip (encode the request, call through the C ABI,
// decode and validate the response) next to a direct C++ virtual call doing
// the same work. Target: <= 1 us per round trip.
#include "direct_planner.h"

#include <vmhost/loader/plugin_host.h>
#include <vmhost/schema/migration.capnp.h>

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>

namespace {

void BM_DirectVirtualCall(benchmark::State& state) {
  auto planner = makeDirectPlanner();
  DirectRequest request{2ull << 30, 0, true};
  for (auto _ : state) {
    DirectPlan plan = planner->plan(request);
    benchmark::DoNotOptimize(plan);
    request.memoryBytes += 1;  // defeat hoisting
  }
}
BENCHMARK(BM_DirectVirtualCall);

void BM_PluginInvokeRoundTrip(benchmark::State& state) {
  std::string dir =
      std::getenv("VMHOST_PLUGIN_DIR") != nullptr ? std::getenv("VMHOST_PLUGIN_DIR") : ".";
  auto lib = vmhost::PluginLibrary::open(dir + "/vmhost-migration-precopy.so");
  if (!lib.ok()) {
    state.SkipWithError(lib.error().message.c_str());
    return;
  }
  auto instance = vmhost::PluginInstance::create(lib.value(), "{}");
  if (!instance.ok()) {
    state.SkipWithError(instance.error().message.c_str());
    return;
  }
  auto& plugin = *instance.value();
  uint64_t memory = 2ull << 30;
  // The first segment lives on the stack, as a hot caller would keep it.
  capnp::word scratch[64];
  for (auto _ : state) {
    std::memset(scratch, 0, sizeof(scratch));
    capnp::MallocMessageBuilder message(kj::arrayPtr(scratch, 64));
    auto request = message.initRoot<vmhost::schema::MigrationRequest>();
    request.setMemoryBytes(memory++);
    request.setSharedStorage(true);
    auto words = capnp::messageToFlatArray(message);
    auto reply =
        plugin.call<vmhost::schema::MigrationPlan>(VMHOST_METHOD_MIGRATION_PLAN, words.asPtr());
    if (!reply.ok()) {
      state.SkipWithError(reply.error().message.c_str());
      return;
    }
    uint64_t timeout = reply.value().get().getCompletionTimeoutSeconds();
    benchmark::DoNotOptimize(timeout);
  }
}
BENCHMARK(BM_PluginInvokeRoundTrip);

}  // namespace

BENCHMARK_MAIN();
