// `vmctl console VM`: the user's terminal on the guest's serial console,
// through the API's WebSocket console subresource.
#pragma once

#include <string>

namespace vmhost::cli {

// The byte that detaches when typed (Ctrl-], as in virsh console and telnet).
constexpr char kConsoleEscape = 0x1d;

struct ConsoleOptions {
  std::string server;  // http://host:port
  std::string token;   // bearer token or ""
  std::string ns;
  std::string name;
  // When stdin is not a terminal (a script pipes keystrokes in): after its
  // end, keep printing the guest's output until it has been quiet this
  // long, then detach; never longer than maxDrainMs in total.
  int quietMs = 1500;
  int maxDrainMs = 30000;
};

// Attaches and runs until the user detaches, stdin ends (see above) or the
// console closes. Returns the process exit code: 0 on a detach, 1 when the
// server refused or the console closed on its own (the reason is printed
// on stderr).
int runConsole(const ConsoleOptions& options);

}  // namespace vmhost::cli
