// The serial console of a running VM, as the API serves it: a byte stream in
// each direction between a WebSocket client (vmctl console) and whatever
// owns the guest's serial port (the node that runs it).
//
// The API does not know where a VM runs; a ConsoleProvider does. In the
// all-in-one process the node agent's provider opens libvirt's console
// stream directly.
#pragma once

#include "api/types.h"
#include "common/result.h"

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace vmhost::api {

// One attached console. Destroying it detaches (the guest keeps running).
class ConsoleStream {
 public:
  virtual ~ConsoleStream() = default;
  // Sends the user's keystrokes to the guest. Any thread. UNAVAILABLE once
  // the console has closed.
  virtual Status write(std::string_view bytes) = 0;
};

struct ConsoleCallbacks {
  // Output from the guest. Called from a provider thread, never after the
  // stream is destroyed, never concurrently with itself.
  std::function<void(std::string_view bytes)> onData;
  // The console ended on its own (the guest stopped, the node went away):
  // called at most once, with the reason; not called after destruction.
  std::function<void(const std::string& reason)> onClose;
};

class ConsoleProvider {
 public:
  virtual ~ConsoleProvider() = default;
  // Attaches to `vm`'s first serial console. Errors: NOT_FOUND (no such
  // domain here), FAILED_PRECONDITION (not running), UNAVAILABLE (the
  // hypervisor refused; the message says why).
  virtual Result<std::unique_ptr<ConsoleStream>> openConsole(const VirtualMachine& vm,
                                                             ConsoleCallbacks callbacks) = 0;
};

}  // namespace vmhost::api
