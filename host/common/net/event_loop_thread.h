// A KJ event loop on a thread of its own, started and stopped from another
// thread: what the API server, the node server and the node's RPC client
// each run their connections on. One place owns the thread, the cross-thread
// stop signal, the start-up hand-shake (the caller learns the bound port, or
// why it could not start) and the executor other threads call in through.
//
//   EventLoopThread loop;
//   auto port = loop.start("the API on " + address, [&](LoopContext& ctx) {
//     auto listener = ...;              // may throw kj::Exception: start() returns it
//     ctx.ready(listener->getPort());   // start() returns this
//     http.listenHttp(*listener).exclusiveJoin(ctx.stopped()).wait(ctx.io.waitScope);
//   });
//   ...
//   loop.stop();   // resolves ctx.stopped(), joins
#pragma once

#include "common/result.h"

#include <kj/async-io.h>

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace vmhost::net {

// What the body running on the loop thread gets.
class LoopContext {
 public:
  kj::AsyncIoContext& io;
  kj::Timer& timer() { return io.provider->getTimer(); }
  // Resolves when stop() is called; each call gives a new branch, so a
  // body may wait on it many times.
  kj::Promise<void> stopped() { return stopped_.addBranch(); }
  // Start-up is done: start() returns `port` (0 when there is none). Call
  // it at most once; a body that never calls it reports when it returns.
  void ready(uint16_t port);
  void failed(Error error);  // start-up failed: start() returns `error`

  LoopContext(kj::AsyncIoContext& io, kj::ForkedPromise<void>& stopped,
              std::function<void(Result<uint16_t>)> report)
      : io(io), stopped_(stopped), report_(std::move(report)) {}

 private:
  kj::ForkedPromise<void>& stopped_;
  std::function<void(Result<uint16_t>)> report_;
};

class EventLoopThread {
 public:
  using Body = std::function<void(LoopContext&)>;

  EventLoopThread() = default;
  ~EventLoopThread();  // stop()
  EventLoopThread(const EventLoopThread&) = delete;
  EventLoopThread& operator=(const EventLoopThread&) = delete;

  // Runs `body` on a new thread inside a fresh event loop and waits until it
  // calls ready() or failed(), or returns. An exception thrown before then
  // becomes UNAVAILABLE "cannot serve <what>: <description>"; one thrown
  // later is logged naming `what`. FAILED_PRECONDITION if already started.
  Result<uint16_t> start(std::string what, Body body);

  // Resolves stopped() and joins the thread. Idempotent; safe before start().
  void stop();

  // The loop's executor, for calls from other threads
  // (executor->executeSync(...)); null before start or after the loop ended.
  kj::Own<const kj::Executor> executor() const;

 private:
  void run(Body body, std::shared_ptr<std::promise<Result<uint16_t>>> ready);

  std::string what_;
  std::thread thread_;
  mutable std::mutex mu_;
  bool started_ = false;
  bool stopping_ = false;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stopFulfiller_;
  kj::Own<const kj::Executor> executor_;
};

}  // namespace vmhost::net
