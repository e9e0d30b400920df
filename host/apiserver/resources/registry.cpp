#include "apiserver/resources/registry.h"

namespace vmhost::apiserver {

const std::vector<ResourceRegistration>& registeredResources() {
  // One resource a line.
  // clang-format off
  static const std::vector<ResourceRegistration> table = {
      virtualMachineResource(),
      nodeResource(),
      kubevirtVmResource(),
      eventResource(),
      virtualMachineMigrationResource(),
  };
  // clang-format on
  return table;
}

}  // namespace vmhost::apiserver
