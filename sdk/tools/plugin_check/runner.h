// Runs one piece of work in a forked child so that a crash, an abort or a
// hang in the plugin under test is a result, not the end of the kit.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace vmhost::plugincheck {

struct ChildOutcome {
  enum class Kind {
    Reported,  // the child wrote its report and exited 0
    Signaled,  // killed by a signal (SIGSEGV, SIGABRT from std::terminate, ...)
    TimedOut,  // still running at the deadline; killed with SIGKILL
    Exited,    // exited without a complete report (exit() from the plugin, ...)
  };
  Kind kind = Kind::Exited;
  std::string report;  // what the child wrote (complete only when Reported)
  int signal = 0;      // Signaled
  int status = 0;      // Exited: the exit status
  std::string step;    // the last noteStep() of the child
  std::string call;    // the plugin function it was in, if any (noteCall)

  // One line: "killed by signal SIGSEGV (Segmentation fault) in invoke_fn,
  // during PREPARE with 7 bytes", "timed out after 10 s ...", ...
  std::string describe(std::chrono::seconds timeout) const;
};

// Forks; the child runs `body` and writes what it returns back to the
// parent, then _exit(0)s (no static destructors, no atexit handlers: those
// belong to the parent). Whatever the child prints to stdout goes to stderr.
// The parent waits up to `timeout`.
ChildOutcome runInChild(const std::function<std::string()>& body, std::chrono::seconds timeout);

// What the child is doing, kept where the parent can read it if the child
// dies: the check's current step ("PREPARE with 7 bytes") and the plugin
// function being called ("invoke_fn"; "" once it returned). No-ops outside
// runInChild.
void noteStep(std::string_view step);
void noteCall(std::string_view call);

// "SIGSEGV (Segmentation fault)", or "signal N".
std::string signalName(int sig);

}  // namespace vmhost::plugincheck
