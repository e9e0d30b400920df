// The backend-neutral parts of the store: key checks and the watch queue.
#include "store/store.h"

#include <utility>

namespace vmhost::store {

namespace {

// The notify callbacks running on this thread, innermost first: a callback
// that calls close() on its own watch must not wait for itself to finish,
// and one that writes to the store must not be re-entered for its own watch.
struct NotifyingScope {
  explicit NotifyingScope(const WatchChannel* c) : channel(c), outer(innermost) {
    innermost = this;
  }
  ~NotifyingScope() { innermost = outer; }
  NotifyingScope(const NotifyingScope&) = delete;
  NotifyingScope& operator=(const NotifyingScope&) = delete;

  static bool active(const WatchChannel* c) {
    for (const NotifyingScope* s = innermost; s != nullptr; s = s->outer) {
      if (s->channel == c) return true;
    }
    return false;
  }

  const WatchChannel* channel;
  const NotifyingScope* outer;
  static thread_local const NotifyingScope* innermost;
};
thread_local const NotifyingScope* NotifyingScope::innermost = nullptr;

Status checkPart(std::string_view field, std::string_view value, bool required) {
  if (value.empty()) {
    if (!required) return Ok{};
    return Error{VMHOST_ERR_INVALID_ARGUMENT, std::string(field) + " is empty"};
  }
  if (value.size() > kMaxKeyPartBytes) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT,
                 std::string(field) + " is " + std::to_string(value.size()) +
                     " bytes, over the limit of " + std::to_string(kMaxKeyPartBytes)};
  }
  if (value.find('/') != std::string_view::npos) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT,
                 std::string(field) + " \"" + std::string(value) + "\" contains '/'"};
  }
  if (value.find('\0') != std::string_view::npos) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT, std::string(field) + " contains a NUL byte"};
  }
  return Ok{};
}

}  // namespace

std::string Key::describe() const {
  if (ns.empty()) return resource + "/" + name;
  return resource + "/" + ns + "/" + name;
}

Status validateKey(const Key& key) {
  if (auto st = checkPart("resource", key.resource, true); !st) return st;
  if (auto st = checkPart("namespace", key.ns, false); !st) return st;
  return checkPart("name", key.name, true);
}

Status validateScope(std::string_view resource, std::string_view ns) {
  if (auto st = checkPart("resource", resource, true); !st) return st;
  return checkPart("namespace", ns, false);
}

std::string_view watchEventTypeName(WatchEventType type) {
  switch (type) {
    case WatchEventType::kAdded:
      return "ADDED";
    case WatchEventType::kModified:
      return "MODIFIED";
    case WatchEventType::kDeleted:
      return "DELETED";
    case WatchEventType::kError:
      return "ERROR";
  }
  return "ERROR";
}

// --- Watch: a handle that closes its channel when dropped. ---

Watch::Watch(std::shared_ptr<WatchChannel> channel) : channel_(std::move(channel)) {}
Watch::~Watch() { channel_->close(); }
std::optional<WatchEvent> Watch::tryNext() { return channel_->tryNext(); }
bool Watch::waitNext(std::chrono::milliseconds timeout) { return channel_->waitNext(timeout); }
std::optional<WatchEvent> Watch::next(std::chrono::milliseconds timeout) {
  if (!channel_->waitNext(timeout)) return std::nullopt;
  return channel_->tryNext();
}
void Watch::setNotify(std::function<void()> fn) { channel_->setNotify(std::move(fn)); }
void Watch::close() { channel_->close(); }
bool Watch::finished() const { return channel_->finished(); }

// --- WatchChannel ---

WatchChannel::WatchChannel(int64_t afterRevision, size_t queueLimit, RefillFn refill)
    : queueLimit_(queueLimit == 0 ? 1 : queueLimit),
      refill_(std::move(refill)),
      lastRevision_(afterRevision) {}

bool WatchChannel::pushLocked(WatchEvent event) {
  bool wasEmpty = queue_.empty();
  queue_.push_back(std::move(event));
  cv_.notify_all();
  return wasEmpty;
}

std::optional<WatchEvent> WatchChannel::popLocked() {
  if (queue_.empty()) return std::nullopt;
  WatchEvent event = std::move(queue_.front());
  queue_.pop_front();
  return event;
}

WatchChannel::Delivery WatchChannel::deliverLive(const WatchEvent& event) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::kEnded || state_ == State::kClosed) return {false, false};
  // Not live yet: the replay will read this revision from history.
  if (state_ == State::kCatchingUp) return {true, false};
  if (event.revision() <= lastRevision_) return {true, false};
  if (queue_.size() >= queueLimit_) {
    // Terminate rather than grow: the consumer keeps what is queued, then
    // learns where to resume from.
    state_ = State::kEnded;
    WatchEvent error;
    error.type = WatchEventType::kError;
    error.error =
        Error{VMHOST_ERR_RESOURCE_EXHAUSTED,
              "watch too slow: fell more than " + std::to_string(queueLimit_) +
                  " events behind (last queued revision " + std::to_string(lastRevision_) +
                  "); watch again from the last revision received",
              true};
    return {false, pushLocked(std::move(error))};
  }
  lastRevision_ = event.revision();
  return {true, pushLocked(event)};
}

void WatchChannel::appendHistory(std::vector<WatchEvent> events) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kCatchingUp) return;
  for (auto& event : events) {
    if (event.revision() <= lastRevision_) continue;
    lastRevision_ = event.revision();
    pushLocked(std::move(event));
  }
}

void WatchChannel::goLive() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::kCatchingUp) state_ = State::kLive;
  cv_.notify_all();
}

bool WatchChannel::fail(Error error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::kEnded || state_ == State::kClosed) return false;
  state_ = State::kEnded;
  WatchEvent event;
  event.type = WatchEventType::kError;
  event.error = std::move(error);
  return pushLocked(std::move(event));
}

void WatchChannel::notifyConsumer() {
  // Inside this channel's own callback: the consumer is being woken already.
  if (NotifyingScope::active(this)) return;
  std::function<void()> fn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::kClosed || !notify_) return;
    fn = notify_;
    ++notifying_;
  }
  runNotify(fn);
}

void WatchChannel::runNotify(const std::function<void()>& fn) {
  {
    NotifyingScope scope(this);
    fn();
  }
  std::lock_guard<std::mutex> lock(mu_);
  --notifying_;
  cv_.notify_all();
}

int64_t WatchChannel::lastRevision() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lastRevision_;
}

bool WatchChannel::catchingUp() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == State::kCatchingUp;
}

bool WatchChannel::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == State::kClosed || state_ == State::kEnded;
}

bool WatchChannel::refillLocked(std::unique_lock<std::mutex>& lock) {
  if (state_ != State::kCatchingUp || refilling_ || !queue_.empty() || !refill_) return false;
  refilling_ = true;
  lock.unlock();
  refill_(shared_from_this());
  lock.lock();
  refilling_ = false;
  cv_.notify_all();
  // Another thread's tryNext() returned nullopt because this refill was in
  // progress; it is waiting for a notification that only this can send.
  bool notify = missedDuringRefill_ && !queue_.empty();
  missedDuringRefill_ = false;
  if (notify) {
    lock.unlock();
    notifyConsumer();
    lock.lock();
  }
  return true;
}

std::optional<WatchEvent> WatchChannel::tryNext() {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed) return std::nullopt;
  if (auto event = popLocked()) return event;
  if (state_ != State::kCatchingUp) return std::nullopt;
  if (refilling_) {
    missedDuringRefill_ = true;
    return std::nullopt;
  }
  refillLocked(lock);
  if (state_ == State::kClosed) return std::nullopt;
  return popLocked();
}

bool WatchChannel::waitNext(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (state_ == State::kClosed) return false;
    if (!queue_.empty()) return true;
    if (state_ == State::kEnded) return false;
    // A refill either queues events or goes live, so this runs at most
    // once per batch; if it made no progress, fall through and wait.
    if (refillLocked(lock) && (!queue_.empty() || state_ != State::kCatchingUp)) continue;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      return state_ != State::kClosed && !queue_.empty();
    }
  }
}

void WatchChannel::setNotify(std::function<void()> fn) {
  bool callNow;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::kClosed) return;
    notify_ = fn;
    callNow =
        fn && (!queue_.empty() || state_ == State::kCatchingUp) && !NotifyingScope::active(this);
    if (callNow) ++notifying_;
  }
  if (callNow) runNotify(fn);
}

void WatchChannel::close() {
  std::unique_lock<std::mutex> lock(mu_);
  state_ = State::kClosed;
  queue_.clear();
  notify_ = nullptr;
  cv_.notify_all();
  // Wait for callbacks in flight on other threads, so that none runs after
  // close() returns (its captures may be about to be destroyed). A callback
  // of this channel on this thread (close() called from inside it) is not
  // waited for.
  const int own = NotifyingScope::active(this) ? 1 : 0;
  cv_.wait(lock, [&] { return notifying_ <= own; });
}

bool WatchChannel::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == State::kClosed || (state_ == State::kEnded && queue_.empty());
}

}  // namespace vmhost::store
