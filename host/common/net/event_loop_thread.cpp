#include "common/net/event_loop_thread.h"

#include <kj/debug.h>

#include <cstdio>
#include <future>

namespace vmhost::net {

void LoopContext::ready(uint16_t port) {
  if (report_) report_(port);
  report_ = nullptr;
}

void LoopContext::failed(Error error) {
  if (report_) report_(std::move(error));
  report_ = nullptr;
}

EventLoopThread::~EventLoopThread() { stop(); }

Result<uint16_t> EventLoopThread::start(std::string what, Body body) {
  {
    std::lock_guard lock(mu_);
    if (started_) return Error{VMHOST_ERR_FAILED_PRECONDITION, what + ": already started", false};
    started_ = true;
    what_ = std::move(what);
  }
  // Shared: the thread may still be inside set_value() when get() returns.
  auto ready = std::make_shared<std::promise<Result<uint16_t>>>();
  auto future = ready->get_future();
  thread_ = std::thread(
      [this, body = std::move(body), ready]() mutable { run(std::move(body), std::move(ready)); });
  Result<uint16_t> r = future.get();
  if (!r.ok()) {
    stop();
  }
  return r;
}

void EventLoopThread::run(Body body, std::shared_ptr<std::promise<Result<uint16_t>>> ready) {
  bool reported = false;
  auto report = [&](Result<uint16_t> r) {
    if (reported) return;
    reported = true;
    ready->set_value(std::move(r));
  };
  try {
    auto io = kj::setupAsyncIo();
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    auto stopped = paf.promise.fork();
    {
      std::lock_guard lock(mu_);
      stopFulfiller_ = kj::mv(paf.fulfiller);
      executor_ = kj::getCurrentThreadExecutor().addRef();
      if (stopping_) stopFulfiller_->fulfill();
    }
    LoopContext ctx(io, stopped, report);
    body(ctx);
    report(uint16_t{0});
  } catch (const kj::Exception& e) {
    std::string why = e.getDescription().cStr();
    if (!reported) {
      report(Error{VMHOST_ERR_UNAVAILABLE, "cannot serve " + what_ + ": " + why, false});
    } else {
      std::fprintf(stderr, "%s stopped: %s\n", what_.c_str(), why.c_str());
    }
  } catch (const std::exception& e) {
    if (!reported) {
      report(Error{VMHOST_ERR_UNAVAILABLE, "cannot serve " + what_ + ": " + e.what(), false});
    } else {
      std::fprintf(stderr, "%s stopped: %s\n", what_.c_str(), e.what());
    }
  }
  std::lock_guard lock(mu_);
  executor_ = nullptr;
  stopFulfiller_ = nullptr;
}

void EventLoopThread::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (stopFulfiller_) stopFulfiller_->fulfill();
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

kj::Own<const kj::Executor> EventLoopThread::executor() const {
  std::lock_guard lock(mu_);
  if (!executor_) return kj::Own<const kj::Executor>();
  return executor_->addRef();
}

}  // namespace vmhost::net
