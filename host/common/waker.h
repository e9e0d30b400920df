// Wakes a KJ event loop from another thread: notify() from any thread
// resolves the promise the loop got from wait() (or the next one, when
// nobody waits yet). What store watches use to reach the API's and the
// node server's loops.
#pragma once

#include <kj/async.h>

#include <mutex>

namespace vmhost {

class Waker {
 public:
  void notify() {
    std::lock_guard lock(mu_);
    if (fulfiller_) {
      fulfiller_->fulfill();
      fulfiller_ = nullptr;
    } else {
      pending_ = true;
    }
  }
  // Drops a pending fulfiller on the loop thread (after the notifier is
  // gone, so no notify can race with it).
  void reset() {
    std::lock_guard lock(mu_);
    fulfiller_ = nullptr;
  }
  // On the loop thread.
  kj::Promise<void> wait() {
    std::lock_guard lock(mu_);
    if (pending_) {
      pending_ = false;
      return kj::READY_NOW;
    }
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    fulfiller_ = kj::mv(paf.fulfiller);
    return kj::mv(paf.promise);
  }

 private:
  std::mutex mu_;
  bool pending_ = false;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> fulfiller_;
};

}  // namespace vmhost
