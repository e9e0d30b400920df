// Opening the store the config chose (settings.h). The controller and the
// all-in-one open their store only through here.
#pragma once

#include "common/result.h"
#include "store/settings.h"
#include "store/store.h"

#include <memory>
#include <string>

namespace vmhost::store {

// Opens `settings.backend` with its state under `dataDir` (where a
// backend keeps local files). INVALID_ARGUMENT naming the known backends
// for an unknown one; otherwise what the backend's open returns.
Result<std::unique_ptr<Store>> openStore(const StoreSettings& settings, const std::string& dataDir);

}  // namespace vmhost::store
