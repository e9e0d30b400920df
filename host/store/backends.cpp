#include "store/backends.h"

#include "store/sqlite/sqlite_store.h"

#include <functional>
#include <map>

namespace vmhost::store {

namespace {

using Opener =
    std::function<Result<std::unique_ptr<Store>>(const StoreSettings&, const std::string&)>;

// One line per backend, in kBackends' order.
const std::map<std::string, Opener, std::less<>>& openers() {
  static const std::map<std::string, Opener, std::less<>> table = {
      {"sqlite",
       [](const StoreSettings& settings,
          const std::string& dataDir) -> Result<std::unique_ptr<Store>> {
         SqliteStoreOptions options;
         options.bestEffortResources = settings.bestEffortResources;
         auto s = SqliteStore::open(dataDir, options);
         if (!s.ok()) return s.error();
         return std::unique_ptr<Store>(std::move(s.value()));
       }},
  };
  return table;
}

}  // namespace

Result<std::unique_ptr<Store>> openStore(const StoreSettings& settings,
                                         const std::string& dataDir) {
  auto it = openers().find(settings.backend);
  if (it == openers().end()) {
    std::string known;
    for (auto b : kBackends) known += (known.empty() ? "" : ", ") + std::string(b);
    return Error{VMHOST_ERR_INVALID_ARGUMENT,
                 "store.backend: '" + settings.backend + "' is not a store backend of this build " +
                     "(known: " + known + ")",
                 false};
  }
  return it->second(settings, dataDir);
}

}  // namespace vmhost::store
