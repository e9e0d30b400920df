// How API objects live in the store, for the API server and for the
// reconcilers that watch the store directly.
//
// Keys: ("virtualmachines", <namespace>, <name>) and ("nodes", "", <name>).
// Values: the object's vmhost.io/v1 JSON (types.h encode()) without
// metadata.resourceVersion: that is the store's modRevision, filled in on
// read, so a value never disagrees with its revision.
//
// Status writers (the controller's scheduler, the node agents) change
// status through updateVirtualMachineStatus()/updateNodeStatus(): a
// read-modify-write with optimistic concurrency and bounded retries, the
// same path the API's status subresource takes, so watchers see one kind
// of change whoever made it.
#pragma once

#include "api/timestamps.h"
#include "api/types.h"
#include "store/store.h"

#include <functional>
#include <string>

namespace vmhost::api {

inline constexpr const char* kVirtualMachinesResource = "virtualmachines";
inline constexpr const char* kNodesResource = "nodes";

store::Key virtualMachineKey(const std::string& ns, const std::string& name);
store::Key nodeKey(const std::string& name);

std::string storeValue(const VirtualMachine& vm);
std::string storeValue(const Node& node);

// Decodes a stored value (leniently: fields a newer writer added are
// ignored) and sets resourceVersion from the object's modRevision.
// DATA_LOSS if the value is not a decodable object.
Result<VirtualMachine> decodeStoredVirtualMachine(const store::StoredObject& object);
Result<Node> decodeStoredNode(const store::StoredObject& object);

// Reads the VM, lets `mutate` change its status (return false to skip the
// write), validates the status, writes with expectedModRevision, and retries
// on a conflict (at most `maxAttempts` reads). Returns the VM as stored.
// NOT_FOUND if absent; INVALID_ARGUMENT with the field errors if `mutate`
// produced an invalid status.
Result<VirtualMachine> updateVirtualMachineStatus(
    store::Store& store, const std::string& ns, const std::string& name,
    const std::function<bool(VirtualMachineStatus&)>& mutate, int maxAttempts = 16);

// A node agent registering itself: creates the Node if absent; otherwise
// merges `node`'s labels and annotations into the stored ones and replaces
// its status. The
// spec (cordoning) is the operator's and is left alone. The
// kubernetes.io/hostname label is always set.
Result<Node> registerNode(store::Store& store, const Node& node, int maxAttempts = 16);

// As updateVirtualMachineStatus(), for a Node (heartbeats, Ready).
Result<Node> updateNodeStatus(store::Store& store, const std::string& name,
                              const std::function<bool(NodeStatus&)>& mutate, int maxAttempts = 16);

// A random (version 4) UUID for metadata.uid.
std::string newUid();

}  // namespace vmhost::api
