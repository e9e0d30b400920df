#include "runner.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

namespace vmhost::plugincheck {
namespace {

// The report ends with this byte, so that a child dying halfway through
// writing it is not mistaken for one that finished.
constexpr char kEndOfReport = '\x04';

// A page shared with the child: its current step and call.
constexpr size_t kStepSize = 3072;
constexpr size_t kCallSize = 1024;
struct Notes {
  char step[kStepSize];
  char call[kCallSize];
};
Notes* gNotes = nullptr;  // set in the child only

void copyNote(char* to, size_t size, std::string_view what) {
  size_t n = std::min(what.size(), size - 1);
  std::memcpy(to, what.data(), n);
  to[n] = '\0';
}

void writeAll(int fd, const std::string& data) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

void noteStep(std::string_view step) {
  if (gNotes != nullptr) copyNote(gNotes->step, kStepSize, step);
}

void noteCall(std::string_view call) {
  if (gNotes != nullptr) copyNote(gNotes->call, kCallSize, call);
}

std::string signalName(int sig) {
  static const struct {
    int number;
    const char* name;
  } kNames[] = {
      {SIGSEGV, "SIGSEGV"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
      {SIGILL, "SIGILL"},   {SIGKILL, "SIGKILL"}, {SIGTERM, "SIGTERM"}, {SIGTRAP, "SIGTRAP"},
      {SIGSYS, "SIGSYS"},   {SIGPIPE, "SIGPIPE"}, {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},
      {SIGHUP, "SIGHUP"},   {SIGALRM, "SIGALRM"}, {SIGUSR1, "SIGUSR1"}, {SIGUSR2, "SIGUSR2"},
      {SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"},
  };
  for (const auto& entry : kNames) {
    if (entry.number == sig) {
      const char* text = ::strsignal(sig);
      return std::string(entry.name) + (text != nullptr ? std::string(" (") + text + ")" : "");
    }
  }
  return "signal " + std::to_string(sig);
}

std::string ChildOutcome::describe(std::chrono::seconds timeout) const {
  std::string text;
  switch (kind) {
    case Kind::Reported:
      return "completed";
    case Kind::Signaled:
      text = "killed by signal " + signalName(signal);
      if (signal == SIGABRT)
        text += " (abort(), or std::terminate: an exception escaping a noexcept function?)";
      break;
    case Kind::TimedOut:
      text = "timed out after " + std::to_string(timeout.count()) + " s";
      break;
    case Kind::Exited:
      text = "the process exited with status " + std::to_string(status) +
             " in the middle of the check (exit() called by the plugin, or a sanitizer report on "
             "stderr)";
      break;
  }
  if (!call.empty()) text += " in " + call;
  if (!step.empty()) text += (call.empty() ? " during " : ", during ") + step;
  return text;
}

ChildOutcome runInChild(const std::function<std::string()>& body, std::chrono::seconds timeout) {
  ChildOutcome outcome;
  int fds[2];
  if (::pipe(fds) != 0) {
    outcome.report = std::string("pipe: ") + std::strerror(errno);
    return outcome;
  }
  void* page =
      ::mmap(nullptr, sizeof(Notes), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    outcome.report = std::string("mmap: ") + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return outcome;
  }
  auto* notes = static_cast<Notes*>(page);
  notes->step[0] = notes->call[0] = '\0';
  std::fflush(nullptr);  // the child must not flush the parent's buffered output again
  pid_t pid = ::fork();
  if (pid < 0) {
    outcome.report = std::string("fork: ") + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    ::munmap(page, sizeof(Notes));
    return outcome;
  }
  if (pid == 0) {
    gNotes = notes;
    ::close(fds[0]);
    ::dup2(STDERR_FILENO, STDOUT_FILENO);  // the parent's stdout carries only results
    ::signal(SIGPIPE, SIG_IGN);
    std::string report;
    try {
      report = body();
    } catch (...) {
      ::_exit(70);  // the caller's body is expected to contain everything
    }
    writeAll(fds[1], report + kEndOfReport);
    ::close(fds[1]);
    std::fflush(nullptr);
    ::_exit(0);
  }
  ::close(fds[1]);

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string data;
  int status = 0;
  bool reaped = false, eof = false;
  auto drain = [&](int waitMs) {
    pollfd p{fds[0], POLLIN, 0};
    if (eof || ::poll(&p, 1, waitMs) <= 0) return;
    char buf[4096];
    ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      eof = true;
    }
  };
  // Collect the report while waiting for the child to end. The child, not
  // the pipe, decides: a grandchild may still hold the write end.
  while (std::chrono::steady_clock::now() < deadline) {
    drain(10);
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) {
      reaped = true;
      break;
    }
  }
  bool timedOut = !reaped;
  if (reaped) {
    for (size_t before = data.size() + 1; !eof && before != data.size();) {
      before = data.size();
      drain(0);
    }
  }
  ::close(fds[0]);
  notes->step[kStepSize - 1] = notes->call[kCallSize - 1] = '\0';
  outcome.step = notes->step;
  outcome.call = notes->call;
  ::munmap(page, sizeof(Notes));

  if (timedOut) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    outcome.kind = ChildOutcome::Kind::TimedOut;
    return outcome;
  }
  if (WIFSIGNALED(status)) {
    outcome.kind = ChildOutcome::Kind::Signaled;
    outcome.signal = WTERMSIG(status);
    return outcome;
  }
  outcome.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (outcome.status == 0 && !data.empty() && data.back() == kEndOfReport) {
    data.pop_back();
    outcome.kind = ChildOutcome::Kind::Reported;
    outcome.report = std::move(data);
  } else {
    outcome.kind = ChildOutcome::Kind::Exited;
  }
  return outcome;
}

}  // namespace vmhost::plugincheck
