// The node's side of `vmctl console`: attaches to a running domain's first
// serial port through libvirt's console API (virDomainOpenConsole on a
// non-blocking stream, driven by libvirt's event loop), so the bytes are the
// guest's own and keystrokes reach its UART.
//
// One session per VM at a time: a new attach takes the console over (as
// `virsh console --force` does) and the previous session ends with
// "another client attached". Output written while nobody is attached still
// goes to the serial log (<dataDir>/node/console/<ns>_<vm>.log).
#pragma once

#include "api/console.h"
#include "node/libvirt.h"

namespace vmhost::node {

class LibvirtConsoles final : public api::ConsoleProvider {
 public:
  // `libvirt` must outlive every stream this returns.
  explicit LibvirtConsoles(Connection& libvirt) : libvirt_(libvirt) {}

  Result<std::unique_ptr<api::ConsoleStream>> openConsole(const api::VirtualMachine& vm,
                                                          api::ConsoleCallbacks callbacks) override;

 private:
  Connection& libvirt_;
};

}  // namespace vmhost::node
