// Recording Events: what every component calls when something happens to a
// VM (placed, unschedulable, started, stopped, failed, evicted, recovered).
//
// An EventSink takes a record and never blocks on the store or fails the
// caller: events are best effort, as in Kubernetes. Components hold an
// EventSink; who stands behind it differs:
//   EventRecorder   the controller side (and the all-in-one): writes to the
//                   store on a thread of its own;
//   a node process  its control plane forwards records to the controller
//                   over RPC (node/agent/rpc_control_plane.h), whose
//                   EventRecorder writes them.
//
// So that a flapping VM cannot fill the store, the recorder, like client-go's
// EventCorrelator:
//   - aggregates: a record repeating an earlier one (same object, type,
//     reason and message) within `aggregateWindow` raises that Event's count
//     and lastTimestamp instead of creating another Event;
//   - rate-limits per object: a token bucket of `burst` records, refilled by
//     one every `refill`; what exceeds it is dropped (and counted);
//   - bounds its queue: records beyond `queueLimit` waiting to be written
//     are dropped (and counted).
// Events expire: the controller deletes those whose lastTimestamp is older
// than the TTL (EventExpiry below).
#pragma once

#include "api/events.h"
#include "common/metrics.h"
#include "store/store.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <unordered_map>

namespace vmhost::api {

struct EventRecord {
  ObjectReference object;
  std::string type = kEventTypeNormal;  // Normal | Warning
  std::string reason;                   // CamelCase
  std::string message;                  // cut to kMaxEventMessageBytes
  EventSource source;                   // who reports it
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Any thread; returns at once.
  virtual void record(EventRecord event) = 0;
};

// A record about `vm`.
EventRecord vmEvent(const VirtualMachine& vm, const char* type, std::string reason,
                    std::string message, EventSource source);

// Drops every record (tests of components whose events are not the point).
class NullEventSink final : public EventSink {
 public:
  void record(EventRecord) override {}
};

struct EventRecorderOptions {
  size_t queueLimit = 1000;
  int burst = 25;
  std::chrono::seconds refill{300};
  std::chrono::seconds aggregateWindow{600};
  size_t maxObjects = 4096;  // objects whose bucket and recent events are remembered (LRU)
};

class EventRecorder final : public EventSink {
 public:
  // `store` must outlive the recorder; `metrics` may be null.
  EventRecorder(store::Store& store, metrics::Registry* metrics, EventRecorderOptions options = {});
  ~EventRecorder() override;  // writes what is queued (at most ~1 s), then stops
  EventRecorder(const EventRecorder&) = delete;
  EventRecorder& operator=(const EventRecorder&) = delete;

  void record(EventRecord event) override;

  // Blocks until every record taken so far is written (or dropped). Tests.
  void flush();

  uint64_t dropped() const;

 private:
  struct Pending {
    EventRecord record;
    std::string name;  // the Event to create, or to update when `repeat`
    bool repeat = false;
    std::string now;  // when it was recorded
  };
  struct Recent {
    std::string name;
    std::chrono::steady_clock::time_point at;
  };
  struct ObjectState {
    double tokens = 0;
    std::chrono::steady_clock::time_point refilled;
    std::map<std::string, Recent> recent;  // type/reason/message -> the Event it made
    std::list<std::string>::iterator lru;
  };

  void run(std::stop_token stop);
  void write(const Pending& p);
  void count(const char* result);

  store::Store& store_;
  EventRecorderOptions options_;
  metrics::Counter* events_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  size_t inFlight_ = 0;
  uint64_t dropped_ = 0;
  std::unordered_map<std::string, ObjectState> objects_;  // by object uid (or ns/name)
  std::list<std::string> lru_;                            // most recent first
  std::jthread writer_;
};

struct EventExpiryOptions {
  std::chrono::seconds ttl{3600};  // kube-apiserver's --event-ttl default
  std::chrono::seconds interval{60};
};

// Deletes Events whose lastTimestamp (or creation) is older than the TTL.
// Runs on the controller side only.
class EventExpiry {
 public:
  EventExpiry(store::Store& store, EventExpiryOptions options) : store_(store), options_(options) {}
  void run(std::stop_token stop);
  // One pass; returns how many it deleted.
  size_t expireOnce();

 private:
  store::Store& store_;
  EventExpiryOptions options_;
};

}  // namespace vmhost::api
