// Which store backend a controller runs on: the config's `store:` section.
// Header-only, so the config loader (host/common) can check it without
// linking the backends.
//
//   store:
//     backend: sqlite        # the embedded default: <dataDir>/store.db
//
// A backend is one folder under host/store/ (sqlite/ now; the etcd issue
// adds etcd/), one entry in kBackends, and one line in backends.cpp; every
// backend passes the contract suite in tests/unit/store/.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace vmhost::store {

inline constexpr std::array<std::string_view, 1> kBackends = {"sqlite"};

struct StoreSettings {
  std::string backend = "sqlite";
  // Not from the config: resources the process writes best effort (Events),
  // which a backend may commit without a sync of their own (see
  // SqliteStoreOptions::bestEffortResources).
  std::vector<std::string> bestEffortResources;
};

}  // namespace vmhost::store
