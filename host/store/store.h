// The store: the state of the cluster, as etcd v3 keeps it for Kubernetes.
//
// Objects are opaque values under (resource, namespace, name) keys. Every
// write (create, update, delete) gets the next value of one global revision
// counter; an object carries the revision that created it and the one that
// last changed it (its resourceVersion in the API). Optimistic concurrency is
// "update/remove only if the object is still at revision N"; watches deliver
// every change after a given revision, in order, from history then live.
//
// The interface mirrors etcd v3 so an etcd backend can implement it later;
// SqliteStore (sqlite_store.h) is the embedded backend.
//
// Error codes, as the API maps them:
//   NOT_FOUND           the key does not exist                          (404)
//   ALREADY_EXISTS      create() of an existing key                     (409)
//   ABORTED             expectedModRevision does not match              (409)
//   OUT_OF_RANGE        the revision asked for is compacted             (410)
//   INVALID_ARGUMENT    empty or malformed key part, bad revision       (400)
//   RESOURCE_EXHAUSTED  value over the size limit                       (413)
//   UNAVAILABLE, INTERNAL, DATA_LOSS   I/O or storage failure           (500/503)
// A write that fails changes nothing.
#pragma once

#include "common/result.h"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmhost::store {

// The largest value a store accepts by default: etcd's default request limit
// (--max-request-bytes, 1.5 MiB), so an object that fits here fits in etcd.
inline constexpr size_t kDefaultMaxValueBytes = 1536u * 1024u;
// The longest resource, namespace or name (a DNS subdomain is at most 253;
// the rest is headroom), so keys stay small in indexes and etcd key paths.
inline constexpr size_t kMaxKeyPartBytes = 512;
// Events a watcher may fall behind by before it is terminated (see Watch).
inline constexpr size_t kDefaultWatchQueueLimit = 10000;

// ("virtualmachines", "default", "vm1"); cluster-scoped objects use ns "".
struct Key {
  std::string resource;
  std::string ns;
  std::string name;

  // "virtualmachines/default/vm1", "nodes/n1" (cluster-scoped) — for messages.
  std::string describe() const;
  friend bool operator==(const Key&, const Key&) = default;
};

// Checks a key's parts: resource and name non-empty; no part contains '/'
// or NUL (an etcd backend maps keys to "/registry/<resource>/<ns>/<name>"
// paths, which must stay unambiguous) or is longer than kMaxKeyPartBytes.
// INVALID_ARGUMENT naming the field otherwise.
Status validateKey(const Key& key);

// The same checks for the scope of a list or watch: resource required,
// namespace optional ("" = all namespaces).
Status validateScope(std::string_view resource, std::string_view ns);

struct StoredObject {
  Key key;
  std::string value;           // opaque bytes (the API stores the object's JSON)
  int64_t createRevision = 0;  // revision of the create
  int64_t modRevision = 0;     // revision of the last write (the resourceVersion);
                               // for a deleted object, the revision of the delete
};

// Where a page of list() starts: strictly after this (namespace, name).
struct ListCursor {
  std::string ns;
  std::string name;
};

struct ListOptions {
  size_t limit = 0;                 // at most this many items; 0 = all
  std::optional<ListCursor> after;  // continue after this item (from ListResult::next)
};

struct ListResult {
  std::vector<StoredObject> items;  // sorted by (namespace, name)
  int64_t revision = 0;             // the store's revision when the list was taken
  // Set when a limit cut the list short: pass it as ListOptions::after for
  // the next page. Each page is read at its own revision (pages are not one
  // snapshot); watch from the first page's revision to see what changed.
  std::optional<ListCursor> next;
};

enum class WatchEventType : uint8_t {
  kAdded,
  kModified,
  kDeleted,
  kError,  // the watch has ended; `error` says why. Always the last event.
};

// "ADDED", "MODIFIED", "DELETED", "ERROR" (the Kubernetes watch event types).
std::string_view watchEventTypeName(WatchEventType type);

struct WatchEvent {
  WatchEventType type = WatchEventType::kError;
  // The object after the change; for kDeleted its last value with modRevision
  // = the delete's revision. Null for kError. Shared, not copied, between
  // all watchers of the same change: a write costs one copy however many
  // watch it.
  std::shared_ptr<const StoredObject> object;
  Error error;  // kError only

  int64_t revision() const { return object ? object->modRevision : 0; }
};

class WatchChannel;

// A watch's event stream, pulled by its consumer. Thread-safe.
//
// Events arrive strictly in revision order, without gaps or duplicates:
// the history after the start revision first, then live changes.
//
// Memory is bounded: a watcher that falls more than `queueLimit` events
// behind the writers (kDefaultWatchQueueLimit unless the store is configured
// otherwise) is terminated: it still gets the events queued so far, then a
// kError event (RESOURCE_EXHAUSTED, "watch too slow...") and nothing more.
// Its consumer watches again from the last revision it received (or lists
// again if that is compacted), as a Kubernetes client does after a closed
// watch. History replay is read from the store in batches as the consumer
// pulls, so replaying a long history does not count against the limit.
//
// For an event loop on another thread (the API server's KJ loop), use
// setNotify(): the callback wakes the loop, which drains with tryNext().
class Watch {
 public:
  explicit Watch(std::shared_ptr<WatchChannel> channel);
  ~Watch();  // close()
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

  // The next event, or nullopt when none is ready. While replaying history
  // this may read the next batch from the store (a short, bounded read).
  std::optional<WatchEvent> tryNext();

  // Blocks until an event is ready (true), or the timeout passes, the watch
  // is closed or has delivered its final kError event (false).
  bool waitNext(std::chrono::milliseconds timeout);

  // waitNext() then tryNext().
  std::optional<WatchEvent> next(std::chrono::milliseconds timeout);

  // `fn` is called when events become ready after the queue was drained
  // (edge-triggered: after each call, drain with tryNext() until nullopt,
  // or a later event may not call it again). It runs on a writer's thread,
  // after the store has released its locks, so it may call this watch's
  // methods; it must be quick, thread-safe and must not block: post a
  // wake-up to the consumer's event loop. Two writers may call it at the
  // same time. If events are already ready, setNotify calls it once before
  // returning. No call starts after close() returns, and close() waits for
  // calls in flight on other threads.
  void setNotify(std::function<void()> fn);

  // Stops the watch: drops queued events; tryNext() returns nullopt from now
  // on. Safe to call from the notify callback and more than once.
  void close();

  // True when no event will ever be returned again: closed, or the final
  // kError event has been taken.
  bool finished() const;

 private:
  std::shared_ptr<WatchChannel> channel_;
};

// The backend side of a Watch: a bounded queue plus the state of the
// history replay. Backend-neutral; store implementations feed it.
//
// Protocol: a backend creates a channel (with std::make_shared) starting
// after revision R in the catching-up state with a refill hook. The hook
// runs on the consumer's thread when the queue is empty; it appends the next
// history batch with appendHistory() and, under the same lock that orders
// its writes, calls goLive() when it has reached the head. From then on the
// backend delivers each matching write with deliverLive(), in revision
// order, under that lock. Because the switch to live happens under the
// writers' lock, no revision is missed or delivered twice. (A backend whose
// source replays history itself, like an etcd watch stream, calls goLive()
// at once and feeds everything through deliverLive().)
class WatchChannel : public std::enable_shared_from_this<WatchChannel> {
 public:
  using RefillFn = std::function<void(const std::shared_ptr<WatchChannel>&)>;

  // Delivers events with revision > afterRevision. `refill` may be empty for
  // a channel that starts live (goLive() before the Watch is handed out).
  WatchChannel(int64_t afterRevision, size_t queueLimit, RefillFn refill);
  WatchChannel(const WatchChannel&) = delete;
  WatchChannel& operator=(const WatchChannel&) = delete;

  // --- Producer side (the backend). ---

  // What deliverLive() asks of the caller.
  struct Delivery {
    bool keep = true;     // false: closed or ended; drop the channel from the live set
    bool notify = false;  // call notifyConsumer() once the backend's locks are released
  };

  // Appends one live event. Events at or below the last queued revision are
  // ignored (never delivered twice). A full queue ends the watch with a
  // "too slow" kError event.
  Delivery deliverLive(const WatchEvent& event);

  // Appends replayed history (ascending revisions) while catching up.
  void appendHistory(std::vector<WatchEvent> events);

  // Marks the replay done: live events follow. Call under the writers' lock.
  void goLive();

  // Ends the watch with a kError event carrying `error` (after what is
  // queued). Returns whether notifyConsumer() is due.
  bool fail(Error error);

  // Calls the consumer's notify callback, if any. Call without backend locks.
  void notifyConsumer();

  // The revision of the last event queued (or the start revision): the next
  // refill reads history after it.
  int64_t lastRevision() const;
  bool catchingUp() const;
  bool closed() const;  // closed by the consumer or ended by fail()/overflow
  size_t queueLimit() const { return queueLimit_; }

  // --- Consumer side (used by Watch). ---
  std::optional<WatchEvent> tryNext();
  bool waitNext(std::chrono::milliseconds timeout);
  void setNotify(std::function<void()> fn);
  void close();
  bool finished() const;

 private:
  enum class State : uint8_t { kCatchingUp, kLive, kEnded, kClosed };

  // Runs the refill hook if catching up with an empty queue and nobody else
  // is refilling; `lock` is released around the hook. Returns whether it ran.
  bool refillLocked(std::unique_lock<std::mutex>& lock);
  bool pushLocked(WatchEvent event);  // returns whether the queue was empty
  std::optional<WatchEvent> popLocked();
  // Calls fn (notifying_ already counted, mu_ not held), then uncounts it.
  void runNotify(const std::function<void()>& fn);

  const size_t queueLimit_;
  const RefillFn refill_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WatchEvent> queue_;
  int64_t lastRevision_;
  State state_ = State::kCatchingUp;
  bool refilling_ = false;
  bool missedDuringRefill_ = false;  // a tryNext() gave up while another thread refilled
  std::function<void()> notify_;

  int notifying_ = 0;  // notify callbacks running now (close() waits for them)
};

// The store interface. Implementations are thread-safe.
class Store {
 public:
  virtual ~Store() = default;

  // NOT_FOUND if absent.
  virtual Result<StoredObject> get(const Key& key) = 0;

  // Objects of `resource` in namespace `ns` ("" = all namespaces, which for
  // a cluster-scoped resource is all of them), sorted by (namespace, name).
  virtual Result<ListResult> list(std::string_view resource, std::string_view ns,
                                  const ListOptions& options = {}) = 0;

  // ALREADY_EXISTS if present. The result has createRevision = modRevision
  // = the new revision.
  virtual Result<StoredObject> create(const Key& key, std::string_view value) = 0;

  // Replaces the value. expectedModRevision != 0: ABORTED unless the object
  // is at that revision (optimistic concurrency); 0: unconditional.
  // NOT_FOUND if absent.
  virtual Result<StoredObject> update(const Key& key, std::string_view value,
                                      int64_t expectedModRevision) = 0;

  // Deletes; same expectedModRevision rule as update(). Returns the deleted
  // object: its last value, with modRevision = the delete's revision.
  virtual Result<StoredObject> remove(const Key& key, int64_t expectedModRevision) = 0;

  // Changes to `resource` in `ns` ("" = all namespaces) with revision >
  // fromRevision: history first, then live. OUT_OF_RANGE if history after
  // fromRevision is compacted ("revision 5 is compacted (oldest available:
  // 120)": the oldest fromRevision still accepted).
  virtual Result<std::unique_ptr<Watch>> watch(std::string_view resource, std::string_view ns,
                                               int64_t fromRevision) = 0;

  // The revision of the last write; 0 for an empty store.
  virtual Result<int64_t> currentRevision() = 0;

  // Drops the history of revisions <= revision: watches from before it fail
  // with OUT_OF_RANGE. Objects are unaffected. Compacting an already
  // compacted revision is a no-op; INVALID_ARGUMENT beyond the current one.
  virtual Status compact(int64_t revision) = 0;
};

}  // namespace vmhost::store
