#include "node/agent/console.h"

#include "node/domain/domain_xml.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <thread>

namespace vmhost::node {
namespace {

// What the event callback and the session share. The callback runs on
// libvirt's event-loop thread; the session's owner on the API's thread.
struct SessionState {
  std::mutex mu;
  virStreamPtr stream = nullptr;  // owned by the Session
  api::ConsoleCallbacks callbacks;
  bool closed = false;  // no more callbacks once set
};

// Called with state.mu held.
void finishLocked(SessionState& s, const std::string& reason) {
  if (s.closed) return;
  s.closed = true;
  virStreamEventRemoveCallback(s.stream);
  auto onClose = std::move(s.callbacks.onClose);
  s.callbacks = {};
  if (onClose) onClose(reason);
}

void onStreamEvent(virStreamPtr stream, int events, void* opaque) {
  auto& s = **static_cast<std::shared_ptr<SessionState>*>(opaque);
  std::lock_guard lock(s.mu);
  if (s.closed) return;
  if (events & VIR_STREAM_EVENT_READABLE) {
    char buf[16384];
    // Bounded per wake-up so one chatty guest cannot starve the event loop;
    // the stream stays readable and the loop calls back.
    for (int i = 0; i < 16; ++i) {
      int n = virStreamRecv(stream, buf, sizeof buf);
      if (n > 0) {
        if (s.callbacks.onData) s.callbacks.onData(std::string_view(buf, static_cast<size_t>(n)));
        continue;
      }
      if (n == -2) break;  // nothing more for now
      if (n == 0) {
        finishLocked(s, "the console closed (the guest stopped or another client attached)");
      } else {
        finishLocked(s, "console stream error: " + libvirtError("", "read").message);
      }
      return;
    }
  }
  if (events & (VIR_STREAM_EVENT_HANGUP | VIR_STREAM_EVENT_ERROR)) {
    finishLocked(s, "the console closed (the guest stopped or another client attached)");
  }
}

class Session final : public api::ConsoleStream {
 public:
  Session(std::shared_ptr<SessionState> state, std::string label)
      : state_(std::move(state)), label_(std::move(label)) {}

  ~Session() override {
    {
      std::lock_guard lock(state_->mu);
      if (!state_->closed) {
        state_->closed = true;
        virStreamEventRemoveCallback(state_->stream);
        state_->callbacks = {};
      }
    }
    // No callback can touch the stream any more: each checks `closed` first.
    virStreamAbort(state_->stream);
    virResetLastError();
    virStreamFree(state_->stream);
  }

  Status write(std::string_view bytes) override {
    // Keystrokes are small; a full pty buffer (guest not reading) is waited
    // out for a bounded time, then reported.
    for (int attempt = 0; !bytes.empty() && attempt < 200; ++attempt) {
      int n;
      {
        std::lock_guard lock(state_->mu);
        if (state_->closed) {
          return Error{VMHOST_ERR_UNAVAILABLE, "vm " + label_ + ": the console is closed", false};
        }
        n = virStreamSend(state_->stream, bytes.data(), bytes.size());
        if (n == -1) {
          auto e = libvirtError(label_, "console write");
          finishLocked(*state_, e.message);
          return e;
        }
      }
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
        attempt = 0;
        continue;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!bytes.empty()) {
      return Error{VMHOST_ERR_UNAVAILABLE,
                   "vm " + label_ + ": the guest is not reading its console (input dropped)", true};
    }
    return Ok{};
  }

 private:
  std::shared_ptr<SessionState> state_;
  std::string label_;
};

}  // namespace

Result<std::unique_ptr<api::ConsoleStream>> LibvirtConsoles::openConsole(
    const api::VirtualMachine& vm, api::ConsoleCallbacks callbacks) {
  std::string label = vm.metadata.ns + "/" + vm.metadata.name;
  auto domain = libvirt_.lookupByName(domainName(vm.metadata.ns, vm.metadata.name));
  if (!domain.ok()) {
    if (domain.error().code == VMHOST_ERR_NOT_FOUND) {
      return Error{VMHOST_ERR_NOT_FOUND, "vm " + label + ": no domain on this node", false};
    }
    return domain.error();
  }
  auto active = domain->isActive();
  if (!active.ok()) return active.error();
  if (!*active) {
    return Error{VMHOST_ERR_FAILED_PRECONDITION, "vm " + label + ": the domain is not running",
                 false};
  }
  virStreamPtr stream = virStreamNew(libvirt_.raw(), VIR_STREAM_NONBLOCK);
  if (stream == nullptr) return libvirtError(label, "console stream");
  if (virDomainOpenConsole(domain->raw(), nullptr, stream, VIR_DOMAIN_CONSOLE_FORCE) < 0) {
    auto e = libvirtError(label, "open console");
    virStreamFree(stream);
    if (e.code != VMHOST_ERR_NOT_FOUND) e.code = VMHOST_ERR_UNAVAILABLE;
    return e;
  }
  auto state = std::make_shared<SessionState>();
  state->stream = stream;
  state->callbacks = std::move(callbacks);
  auto* opaque = new std::shared_ptr<SessionState>(state);
  std::lock_guard lock(state->mu);  // no event before the session exists
  if (virStreamEventAddCallback(
          stream, VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_HANGUP | VIR_STREAM_EVENT_ERROR,
          onStreamEvent, opaque,
          [](void* p) { delete static_cast<std::shared_ptr<SessionState>*>(p); }) < 0) {
    auto e = libvirtError(label, "watch console stream");
    delete opaque;
    virStreamAbort(stream);
    virResetLastError();
    virStreamFree(stream);
    state->closed = true;
    e.code = VMHOST_ERR_UNAVAILABLE;
    return e;
  }
  return std::unique_ptr<api::ConsoleStream>(std::make_unique<Session>(state, label));
}

}  // namespace vmhost::node
