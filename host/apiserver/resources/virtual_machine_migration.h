// The VirtualMachineMigration resource's schema parts other resources show:
// a VirtualMachine's status.migration is the migration's record.
#pragma once

#include "api/validation.h"

namespace vmhost::apiserver {

// The OpenAPI schema of a VM's status.migration (api::MigrationState).
api::Json migrationStateSchema();

}  // namespace vmhost::apiserver
