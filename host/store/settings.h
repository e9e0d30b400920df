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

namespace vmhost::store {

inline constexpr std::array<std::string_view, 1> kBackends = {"sqlite"};

struct StoreSettings {
  std::string backend = "sqlite";
};

}  // namespace vmhost::store
