#include "apiserver/resources/registry.h"

namespace vmhost::apiserver {

const std::vector<ResourceRegistration>& registeredResources() {
  static const std::vector<ResourceRegistration> table = {
      virtualMachineResource(),
      nodeResource(),
      kubevirtVmResource(),
      eventResource(),
      virtualMachineMigrationResource(),
  };
  return table;
}

}  // namespace vmhost::apiserver
