// What the store tests share: temporary directories, result helpers, and
// the backends the contract suite (contract_test.cpp) runs against. A new
// backend adds a struct here and joins `Backends`; every contract case then
// runs against it too, as kube-apiserver's storage/testing runs against
// every storage.Interface.
#pragma once

#include <boost/test/unit_test.hpp>

#include "store/sqlite/sqlite_store.h"
#include "store/store.h"

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace vmhost::store::testing {

namespace fs = std::filesystem;

// A fresh directory under $TMPDIR, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "vmhost-store-test-XXXXXX").string();
    BOOST_TEST_REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string data() const { return (path / "data").string(); }
};

Key vm(const std::string& name, const std::string& ns = "default") {
  return Key{"virtualmachines", ns, name};
}

template <typename T>
T must(Result<T> r) {
  BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().describe()));
  return std::move(r).value();
}

template <typename T>
Error mustFail(Result<T> r) {
  BOOST_TEST_REQUIRE(!r.ok());
  return r.error();
}

int64_t revisionOf(Store& s) { return must(s.currentRevision()); }

// Takes every event ready now (bounded).
std::vector<WatchEvent> drain(Watch& w, size_t max = 100000) {
  std::vector<WatchEvent> events;
  while (events.size() < max) {
    auto e = w.tryNext();
    if (!e) break;
    events.push_back(std::move(*e));
  }
  return events;
}

// What a contract case may ask of a backend it opens.
struct ContractOptions {
  size_t watchQueueLimit = kDefaultWatchQueueLimit;
};

// The embedded backend, in a temporary directory.
struct SqliteBackend {
  static constexpr const char* kName = "sqlite";
  static std::unique_ptr<Store> open(const TempDir& dir, const ContractOptions& contract) {
    SqliteStoreOptions options;
    options.watchQueueLimit = contract.watchQueueLimit;
    options.syncEveryCommit = false;  // durability is the backend's own test (integration)
    auto s = SqliteStore::open(dir.data(), options);
    BOOST_TEST_REQUIRE(s.ok(), (s.ok() ? "" : s.error().describe()));
    return std::move(s.value());
  }
};

using Backends = std::tuple<SqliteBackend>;

// A fresh, empty store of backend B.
template <typename B>
struct Fixture {
  TempDir tmp;
  std::unique_ptr<Store> store = B::open(tmp, {});
};

}  // namespace vmhost::store::testing

// One contract case, run once per backend in `Backends` (`Backend` names it).
#define STORE_CONTRACT_CASE(name) \
  BOOST_AUTO_TEST_CASE_TEMPLATE(name, Backend, ::vmhost::store::testing::Backends)
