// The SQLite store on this machine's disk: create throughput with durable
// commits (synchronous=FULL: one WAL fsync per write) next to unsynced ones
// (what the fsync costs), and get/list latency with 10,000 objects.
// Values are 1 KiB, about the size of a VM object's JSON.
#include "store/sqlite/sqlite_store.h"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

namespace {

namespace fs = std::filesystem;
using vmhost::store::Key;
using vmhost::store::ListOptions;
using vmhost::store::SqliteStore;
using vmhost::store::SqliteStoreOptions;

constexpr int kObjects = 10000;
constexpr int kNamespaces = 100;  // 100 objects per namespace
const std::string kValue(1024, 'v');

// A store directory under $TMPDIR, removed at exit.
struct BenchDir {
  fs::path path;
  BenchDir() {
    std::string tmpl = (fs::temp_directory_path() / "vmhost-store-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    path = tmpl;
  }
  ~BenchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

Key objectKey(int i) {
  return Key{"virtualmachines", "ns" + std::to_string(i % kNamespaces), "vm" + std::to_string(i)};
}

void createLoop(benchmark::State& state, bool durable) {
  BenchDir dir;
  SqliteStoreOptions options;
  options.syncEveryCommit = durable;
  auto store = SqliteStore::open(dir.path.string(), options);
  if (!store.ok()) {
    state.SkipWithError(store.error().describe().c_str());
    return;
  }
  int i = 0;
  for (auto _ : state) {
    auto r = store.value()->create(objectKey(i++), kValue);
    if (!r.ok()) {
      state.SkipWithError(r.error().describe().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_CreateDurable(benchmark::State& state) { createLoop(state, true); }
BENCHMARK(BM_CreateDurable)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_CreateUnsynced(benchmark::State& state) { createLoop(state, false); }
BENCHMARK(BM_CreateUnsynced)->Unit(benchmark::kMicrosecond)->UseRealTime();

// One store of kObjects objects, shared by the read benchmarks (populated
// without fsync, then reopened as in production).
SqliteStore& populated() {
  static BenchDir dir;
  static std::unique_ptr<SqliteStore> store = [] {
    {
      SqliteStoreOptions fast;
      fast.syncEveryCommit = false;
      auto s = SqliteStore::open(dir.path.string(), fast);
      if (!s.ok()) std::abort();
      for (int i = 0; i < kObjects; ++i) {
        if (!s.value()->create(objectKey(i), kValue).ok()) std::abort();
      }
    }
    auto s = SqliteStore::open(dir.path.string());
    if (!s.ok()) std::abort();
    return std::move(s.value());
  }();
  return *store;
}

void BM_Get(benchmark::State& state) {
  auto& store = populated();
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> pick(0, kObjects - 1);
  for (auto _ : state) {
    auto r = store.get(objectKey(pick(rng)));
    if (!r.ok()) {
      state.SkipWithError(r.error().describe().c_str());
      return;
    }
    benchmark::DoNotOptimize(r.value().modRevision);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Get)->Unit(benchmark::kMicrosecond)->UseRealTime()->Threads(1)->Threads(2);

// List everything (10,000 x 1 KiB), a 500-item page (kubectl's default chunk
// size) and one namespace (100 objects).
void BM_ListAll(benchmark::State& state) {
  auto& store = populated();
  for (auto _ : state) {
    auto r = store.list("virtualmachines", "");
    if (!r.ok() || r.value().items.size() != size_t(kObjects)) {
      state.SkipWithError("list failed");
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * kObjects);
}
BENCHMARK(BM_ListAll)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ListPage500(benchmark::State& state) {
  auto& store = populated();
  ListOptions options;
  options.limit = 500;
  options.after = vmhost::store::ListCursor{"ns5", "vm5"};  // a page in the middle
  for (auto _ : state) {
    auto r = store.list("virtualmachines", "", options);
    if (!r.ok() || r.value().items.size() != 500u) {
      state.SkipWithError("list failed");
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * 500);
}
BENCHMARK(BM_ListPage500)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_ListNamespace(benchmark::State& state) {
  auto& store = populated();
  for (auto _ : state) {
    auto r = store.list("virtualmachines", "ns42");
    if (!r.ok() || r.value().items.size() != size_t(kObjects / kNamespaces)) {
      state.SkipWithError("list failed");
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * (kObjects / kNamespaces));
}
BENCHMARK(BM_ListNamespace)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
