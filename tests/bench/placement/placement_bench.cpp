// Placement throughput of the scheduler plugins through the plugin boundary,
// as the host drives them: one full sync of 5,000 nodes, then 10,000 VMs,
// each one a ScheduleRequest encoded by the host, passed through
// PluginInstance::call (the C ABI), placed, and its ScheduleResult decoded.
//
// The cluster is mixed: five node shapes, some nodes partly allocated, ~20%
// labelled with a zone (and a quarter of those with a GPU), 1% cordoned, 1%
// not ready; ~30% of the VMs carry a node selector. Target: >= 2,700 VMs/s
// on one core (counter vms_per_s); --min_vms_per_s=N makes the run fail
// below N, which is how ctest -L bench uses it.
#include <vmhost/loader/plugin_host.h>

#include <vmhost/schema/scheduler.capnp.h>

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr int kNodes = 5000;
constexpr int kVms = 10000;
constexpr uint64_t GiB = 1ull << 30;

using Labels = std::vector<std::pair<std::string, std::string>>;

struct NodeSpec {
  std::string name;
  uint64_t cpuMillis, memoryBytes, usedCpu, usedMemory;
  Labels labels;
  bool schedulable, ready;
};

struct VmSpec {
  std::string name;
  uint64_t cpuMillis, memoryBytes;
  Labels selector;
};

struct Workload {
  std::vector<NodeSpec> nodes;
  std::vector<VmSpec> vms;
};

std::string numbered(const char* prefix, int i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s-%05d", prefix, i);
  return buf;
}

// The same cluster and VMs on every run (fixed seed).
const Workload& workload() {
  static const Workload w = [] {
    Workload w;
    std::mt19937_64 rng(20240601);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
    const std::pair<uint64_t, uint64_t> shapes[] = {{16000, 64 * GiB},
                                                    {32000, 128 * GiB},
                                                    {64000, 256 * GiB},
                                                    {96000, 384 * GiB},
                                                    {128000, 1024 * GiB}};
    const char* zones[] = {"zone-a", "zone-b", "zone-c", "zone-d"};
    for (int i = 0; i < kNodes; ++i) {
      auto [cpu, mem] = shapes[pick(5)];
      NodeSpec n{numbered("node", i), cpu, mem, 0, 0, {}, true, true};
      if (pick(2) == 0) {  // half the nodes already run something
        n.usedCpu = cpu * static_cast<uint64_t>(pick(50)) / 100;
        n.usedMemory = mem * static_cast<uint64_t>(pick(50)) / 100;
      }
      if (pick(5) == 0) {  // ~20% labelled
        n.labels.emplace_back("topology.vmhost.io/zone", zones[pick(4)]);
        if (pick(4) == 0) n.labels.emplace_back("vmhost.io/gpu", "true");
      }
      n.schedulable = pick(100) != 0;
      n.ready = pick(100) != 0;
      w.nodes.push_back(std::move(n));
    }
    const std::pair<uint64_t, uint64_t> sizes[] = {{1000, 2 * GiB},  {2000, 4 * GiB},
                                                   {4000, 8 * GiB},  {4000, 16 * GiB},
                                                   {8000, 32 * GiB}, {16000, 64 * GiB}};
    for (int i = 0; i < kVms; ++i) {
      auto [cpu, mem] = sizes[pick(6)];
      VmSpec vm{numbered("vm", i), cpu, mem, {}};
      int s = pick(100);
      if (s < 24) {  // 24% a zone
        vm.selector.emplace_back("topology.vmhost.io/zone", zones[pick(4)]);
      } else if (s < 27) {  // 3% a GPU anywhere
        vm.selector.emplace_back("vmhost.io/gpu", "true");
      } else if (s < 30) {  // 3% a GPU in a zone
        vm.selector.emplace_back("topology.vmhost.io/zone", zones[pick(4)]);
        vm.selector.emplace_back("vmhost.io/gpu", "true");
      }
      w.vms.push_back(std::move(vm));
    }
    return w;
  }();
  return w;
}

void setLabels(capnp::List<vmhost::schema::Label>::Builder out, const Labels& labels) {
  for (unsigned i = 0; i < labels.size(); ++i) {
    out[i].setKey(labels[i].first);
    out[i].setValue(labels[i].second);
  }
}

void fillVm(vmhost::schema::VmSpec::Builder spec, const VmSpec& vm) {
  auto ref = spec.initRef();
  ref.setNamespace("bench");
  ref.setName(vm.name);
  ref.setUid(vm.name);
  auto requests = spec.initRequests();
  requests.setCpuMillis(vm.cpuMillis);
  requests.setMemoryBytes(vm.memoryBytes);
  setLabels(spec.initNodeSelector(static_cast<unsigned>(vm.selector.size())), vm.selector);
}

std::unique_ptr<vmhost::PluginInstance> createScheduler(benchmark::State& state,
                                                        const std::string& plugin) {
  const char* dir = std::getenv("VMHOST_PLUGIN_DIR");
  std::string path =
      std::string(dir != nullptr ? dir : ".") + "/vmhost-scheduler-" + plugin + ".so";
  auto lib = vmhost::PluginLibrary::open(path);
  if (!lib.ok()) {
    state.SkipWithError(lib.error().message.c_str());
    return nullptr;
  }
  auto instance = vmhost::PluginInstance::create(lib.value(), "{}");
  if (!instance.ok()) {
    state.SkipWithError(instance.error().message.c_str());
    return nullptr;
  }
  return std::move(instance.value());
}

// Sends the whole cluster (fullSync) with a zero-size probe VM.
bool fullSync(benchmark::State& state, vmhost::PluginInstance& plugin) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<vmhost::schema::ScheduleRequest>();
  fillVm(request.initVm(), VmSpec{"sync-probe", 0, 0, {}});
  request.setFullSync(true);
  const auto& nodes = workload().nodes;
  auto list = request.initNodes(static_cast<unsigned>(nodes.size()));
  for (unsigned i = 0; i < nodes.size(); ++i) {
    const NodeSpec& n = nodes[i];
    auto node = list[i];
    node.setName(n.name);
    setLabels(node.initLabels(static_cast<unsigned>(n.labels.size())), n.labels);
    node.setSchedulable(n.schedulable);
    node.setReady(n.ready);
    node.initCapacity().setCpuMillis(n.cpuMillis);
    node.getCapacity().setMemoryBytes(n.memoryBytes);
    node.initAllocated().setCpuMillis(n.usedCpu);
    node.getAllocated().setMemoryBytes(n.usedMemory);
  }
  auto reply =
      plugin.call<vmhost::schema::ScheduleResult>(VMHOST_METHOD_SCHEDULER_SCHEDULE, message);
  if (!reply.ok()) {
    state.SkipWithError(reply.error().message.c_str());
    return false;
  }
  return true;
}

// 10,000 VMs per iteration onto a freshly synced cluster; the instance
// creation and full sync are outside the timed region.
void BM_Place(benchmark::State& state, const std::string& plugin) {
  const auto& vms = workload().vms;
  uint64_t placed = 0, unschedulable = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto scheduler = createScheduler(state, plugin);
    if (!scheduler || !fullSync(state, *scheduler)) return;
    placed = unschedulable = 0;
    state.ResumeTiming();

    for (const VmSpec& vm : vms) {
      capnp::MallocMessageBuilder message;
      fillVm(message.initRoot<vmhost::schema::ScheduleRequest>().initVm(), vm);
      auto reply = scheduler->call<vmhost::schema::ScheduleResult>(VMHOST_METHOD_SCHEDULER_SCHEDULE,
                                                                   message);
      if (!reply.ok()) {
        state.SkipWithError(reply.error().message.c_str());
        return;
      }
      auto result = reply.value().get();
      if (result.isScheduled()) {
        auto node = result.getScheduled().getNode();
        benchmark::DoNotOptimize(node.begin());
        ++placed;
      } else {
        ++unschedulable;
      }
    }

    state.PauseTiming();
    scheduler.reset();  // frees the cache outside the timed region
    state.ResumeTiming();
  }
  state.counters["vms_per_s"] =
      benchmark::Counter(kVms, benchmark::Counter::kIsIterationInvariantRate);
  // Seconds per VM, shown with an SI prefix (e.g. "16.4us").
  state.counters["per_vm"] = benchmark::Counter(
      kVms, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["placed"] = static_cast<double>(placed);
  state.counters["unschedulable"] = static_cast<double>(unschedulable);
  state.counters["nodes"] = kNodes;
}
BENCHMARK_CAPTURE(BM_Place, default, std::string("default"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Place, binpack, std::string("binpack"))->Unit(benchmark::kMillisecond);

// The one-off cost of the full sync itself (5,000 nodes in one request).
void BM_FullSync(benchmark::State& state, const std::string& plugin) {
  auto scheduler = createScheduler(state, plugin);
  if (!scheduler) return;
  for (auto _ : state) {
    if (!fullSync(state, *scheduler)) return;
  }
  state.counters["nodes_per_s"] =
      benchmark::Counter(kNodes, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_CAPTURE(BM_FullSync, default, std::string("default"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_FullSync, binpack, std::string("binpack"))->Unit(benchmark::kMillisecond);

// Console output as usual, plus a pass/fail verdict for ctest: every run
// must complete and every vms_per_s must reach the floor.
class FloorReporter : public benchmark::ConsoleReporter {
 public:
  explicit FloorReporter(double floor)
      : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular), floor_(floor) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) {
        std::fprintf(stderr, "FAIL %s: %s\n", run.benchmark_name().c_str(),
                     run.error_message.c_str());
        failed_ = true;
        continue;
      }
      // With --benchmark_repetitions, judge the runs and their mean and
      // median, not the spread statistics (stddev, cv).
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "mean" &&
          run.aggregate_name != "median") {
        continue;
      }
      auto it = run.counters.find("vms_per_s");
      if (it != run.counters.end() && it->second.value < floor_) {
        std::fprintf(stderr, "FAIL %s: %.0f VMs/s is below the floor of %.0f VMs/s\n",
                     run.benchmark_name().c_str(), it->second.value, floor_);
        failed_ = true;
      }
    }
  }
  bool failed() const { return failed_; }

 private:
  double floor_;
  bool failed_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  // Our own flag first, so that benchmark::Initialize does not reject it.
  double floor = 0;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const char* prefix = "--min_vms_per_s=";
    if (std::strncmp(argv[i], prefix, std::strlen(prefix)) == 0) {
      floor = std::strtod(argv[i] + std::strlen(prefix), nullptr);
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  FloorReporter reporter(floor);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return reporter.failed() ? 1 : 0;
}
