// The one table of served resources. A new resource is one new file in
// resources/ (its traits, rest.h does the rest) and one line in
// registry.cpp; discovery, OpenAPI routing, metrics labels and dispatch all
// read this table (and openapi.h builds the documents from it).
#pragma once

#include "apiserver/resource.h"

#include <functional>
#include <memory>
#include <vector>

namespace vmhost::apiserver {

struct ResourceRegistration {
  ResourceInfo info;
  std::function<std::unique_ptr<ResourceHandler>(ResourceInfo, Services)> make;
  // The kind's OpenAPI object schema (openapi_schema.h builders), published
  // as info.schemaName; its list kind is derived.
  std::function<Json()> schema;
};

// Every served resource, in discovery order.
const std::vector<ResourceRegistration>& registeredResources();

// One per file in resources/.
ResourceRegistration virtualMachineResource();  // vmhost.io/v1 virtualmachines
ResourceRegistration nodeResource();            // vmhost.io/v1 nodes
ResourceRegistration kubevirtVmResource();      // kubevirt.io/v1alpha1 vms (the seed's VM)
ResourceRegistration eventResource();           // v1 events (core group)
// vmhost.io/v1 virtualmachinemigrations
ResourceRegistration virtualMachineMigrationResource();

}  // namespace vmhost::apiserver
