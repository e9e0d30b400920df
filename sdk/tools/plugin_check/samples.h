// What the kit sends: per plugin kind, the methods with a valid sample
// request each, and the malformed and hostile payloads derived from them.
#pragma once

#include "abi.h"

#include <capnp/schema.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vmhost {
class PluginInstance;
}

namespace vmhost::plugincheck {

// Names the VM a sample refers to, so that concurrent users do not collide.
struct SampleVm {
  std::string name = "conformance-vm";
};

struct MethodSpec {
  uint32_t id = 0;
  std::string name;  // "PREPARE"
  capnp::StructSchema request;
  capnp::StructSchema response;
  // A valid request for this method.
  std::function<Bytes(const SampleVm&)> sample;
  // Well-formed requests with extreme or nonsensical values.
  std::function<std::vector<Payload>()> extremes;
  // Calls the method through the host loader (PluginInstance::call<T>, which
  // validates the response); "" on success, else the host's error.
  std::function<std::string(PluginInstance&, const Bytes&)> viaHost;
};

// The methods of `kind` (a vmhost_plugin_kind), in id order.
std::vector<MethodSpec> methodsOf(int32_t kind);

// `request` (a `type` message) re-encoded with one object per segment, far
// pointers everywhere: unusual, but valid.
Bytes splitIntoSegments(const Bytes& request, capnp::StructSchema type);

// Payloads that are not a `method.request` message (bad size, segment table,
// pointers, depth...). classify() says which of them a plugin must refuse.
std::vector<Payload> malformedPayloads(const MethodSpec& method);

// Everything a plugin must survive for `method`: the malformed payloads,
// truncated, misaligned and mutated samples, other methods' requests, an
// empty message, pointers of the wrong kind, the extremes.
std::vector<Payload> hostilePayloads(const MethodSpec& method);

}  // namespace vmhost::plugincheck
