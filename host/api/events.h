// core/v1 Event: what happened to an object, as Kubernetes records it, so
// `kubectl get events` and `kubectl describe virtualmachine NAME` show it.
// Events are written by the event recorder (api/event_recorder.h), never by
// users in normal operation, and expire (the controller deletes them once
// lastTimestamp is older than the TTL).
#pragma once

#include "api/types.h"
#include "common/result.h"
#include "store/store.h"

#include <cstdint>
#include <string>

namespace vmhost::api {

inline constexpr const char* kEventKind = "Event";
inline constexpr const char* kEventsResource = "events";
inline constexpr const char* kEventTypeNormal = "Normal";
inline constexpr const char* kEventTypeWarning = "Warning";

// The object an event is about (corev1.ObjectReference).
struct ObjectReference {
  std::string apiVersion;
  std::string kind;
  std::string ns;  // "namespace"
  std::string name;
  std::string uid;
  std::string resourceVersion;
  std::string fieldPath;
};

struct EventSource {
  std::string component;  // "vmhost-controller", "vmhost-node"
  std::string host;       // the node, for node events
};

struct Event {
  ObjectMeta metadata;
  ObjectReference involvedObject;
  std::string reason;   // CamelCase: Scheduled, FailedScheduling, Started, ...
  std::string message;  // one line for humans
  EventSource source;
  std::string firstTimestamp;  // RFC 3339
  std::string lastTimestamp;
  int64_t count = 1;               // how often it happened between the two timestamps
  std::string type = "Normal";     // Normal | Warning
  std::string reportingComponent;  // as source.component (events.k8s.io's name for it)
  std::string reportingInstance;   // as source.host
};

// The reference to a VM for its events.
ObjectReference referenceTo(const VirtualMachine& vm);

Decoded<Event> decodeEvent(const Json& j, FieldValidation mode);
// Names, namespace (it must be the involved object's), type, reason and
// sizes (a message is cut to kMaxEventMessageBytes by the recorder; the API
// refuses longer).
FieldErrors validateEvent(const Event& e);
Json encode(const Event& e);

inline constexpr size_t kMaxEventMessageBytes = 1024;

store::Key eventKey(const std::string& ns, const std::string& name);
std::string storeValue(const Event& e);
// DATA_LOSS if the value does not decode.
Result<Event> decodeStoredEvent(const store::StoredObject& object);

}  // namespace vmhost::api
