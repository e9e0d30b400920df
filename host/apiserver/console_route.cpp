#include "apiserver/console_route.h"

#include "api/objects.h"
#include "common/waker.h"

#include <memory>
#include <mutex>
#include <string>

namespace vmhost::apiserver {
namespace {

struct ConsoleBridge {
  std::mutex mu;
  std::string pending;  // output not yet sent
  bool closed = false;
  std::string reason;
  Waker waker;
};
// Output the client has not taken yet beyond this is dropped, oldest
// first (a console is interactive; the serial log keeps everything).
constexpr size_t kConsoleBacklog = 1u << 20;

// Guest -> client, until the provider closes the console (then a Close
// frame with its reason).
kj::Promise<void> consoleOut(kj::WebSocket& ws, std::shared_ptr<ConsoleBridge> b) {
  return b->waker.wait().then([&ws, b]() mutable -> kj::Promise<void> {
    std::string data;
    bool closed;
    std::string reason;
    {
      std::lock_guard lock(b->mu);
      data.swap(b->pending);
      closed = b->closed;
      reason = b->reason;
    }
    kj::Promise<void> sent = kj::READY_NOW;
    if (!data.empty()) {
      auto bytes =
          kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(data.data()), data.size());
      auto& ref = bytes;
      sent = ws.send(ref.asPtr()).attach(kj::mv(bytes));
    }
    if (closed) {
      // A close reason is at most 123 bytes.
      if (reason.size() > 120) reason.resize(120);
      return sent.then([&ws, reason]() { return ws.close(1000, reason); });
    }
    return sent.then([&ws, b]() mutable { return consoleOut(ws, kj::mv(b)); });
  });
}

// Client -> guest, until the client detaches (a Close frame) or goes away.
kj::Promise<void> consoleIn(kj::WebSocket& ws, api::ConsoleStream& console) {
  return ws.receive(64 * 1024).then(
      [&ws, &console](kj::WebSocket::Message&& m) -> kj::Promise<void> {
        std::string_view bytes;
        KJ_SWITCH_ONEOF(m) {
          KJ_CASE_ONEOF(text, kj::String) { bytes = std::string_view(text.begin(), text.size()); }
          KJ_CASE_ONEOF(data, kj::Array<kj::byte>) {
            bytes = std::string_view(reinterpret_cast<const char*>(data.begin()), data.size());
          }
          KJ_CASE_ONEOF(close, kj::WebSocket::Close) {
            (void)close;
            return ws.close(1000, "detached");
          }
        }
        // A failed write means the console ended: the output side reports
        // why and closes; keep reading until then or until the client leaves.
        if (!bytes.empty()) (void)console.write(bytes);
        return consoleIn(ws, console);
      });
}

}  // namespace

kj::Promise<void> serveConsole(const Route& route, const Request& req, Responder& out,
                               store::Store& store, api::ConsoleProvider* consoles) {
  if (req.verb != Verb::kGet) {
    return out.send(statusReply(405, "MethodNotAllowed", "the console is attached with GET"));
  }
  if (req.headers == nullptr || !req.headers->isWebSocket()) {
    return out.send(
        badRequest("the console subresource needs a WebSocket upgrade (use vmctl "
                   "console)"));
  }
  if (consoles == nullptr) {
    return out.send(statusReply(503, "ServiceUnavailable", "this API server serves no consoles"));
  }
  auto stored = store.get(api::virtualMachineKey(route.ns, route.name));
  if (!stored.ok()) {
    if (stored.error().code == VMHOST_ERR_NOT_FOUND) {
      return out.send(statusReply(
          404, "NotFound", "virtualmachines.vmhost.io \"" + route.name + "\" not found",
          Json{{"name", route.name}, {"group", api::kGroup}, {"kind", "virtualmachines"}}));
    }
    return out.send(statusReply(503, "ServiceUnavailable", stored.error().message));
  }
  auto vm = api::decodeStoredVirtualMachine(*stored);
  if (!vm.ok()) {
    return out.send(statusReply(500, "InternalError", vm.error().message));
  }
  if (vm->status.phase != api::kPhaseRunning) {
    return out.send(statusReply(
        409, "Conflict",
        "VirtualMachine " + route.ns + "/" + route.name + " is not running (phase " +
            (vm->status.phase.empty() ? "Pending" : vm->status.phase) + "); start it first"));
  }
  auto bridge = std::make_shared<ConsoleBridge>();
  api::ConsoleCallbacks callbacks;
  callbacks.onData = [bridge](std::string_view bytes) {
    std::lock_guard lock(bridge->mu);
    bridge->pending.append(bytes);
    if (bridge->pending.size() > kConsoleBacklog) {
      bridge->pending.erase(0, bridge->pending.size() - kConsoleBacklog);
    }
    bridge->waker.notify();
  };
  callbacks.onClose = [bridge](const std::string& reason) {
    std::lock_guard lock(bridge->mu);
    bridge->closed = true;
    bridge->reason = reason;
    bridge->waker.notify();
  };
  auto stream = consoles->openConsole(*vm, std::move(callbacks));
  if (!stream.ok()) {
    const Error& e = stream.error();
    unsigned code = e.code == VMHOST_ERR_NOT_FOUND             ? 404
                    : e.code == VMHOST_ERR_FAILED_PRECONDITION ? 409
                                                               : 503;
    const char* reason = code == 404 ? "NotFound" : code == 409 ? "Conflict" : "ServiceUnavailable";
    return out.send(statusReply(code, reason, e.message));
  }
  out.streaming(101);
  auto ws = out.response().acceptWebSocket(kj::HttpHeaders(out.table()));
  auto& socket = *ws;
  auto& input = *stream.value();
  auto toClient = consoleOut(socket, bridge);
  auto toGuest = consoleIn(socket, input);
  return toClient.exclusiveJoin(kj::mv(toGuest))
      .catch_([](kj::Exception&&) {})  // the client went away
      .attach(kj::mv(stream.value()), kj::mv(ws), kj::mv(bridge));
}

}  // namespace vmhost::apiserver
