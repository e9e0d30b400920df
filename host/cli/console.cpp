#include "cli/console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/debug.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

namespace vmhost::cli {
namespace {

class Entropy final : public kj::EntropySource {
 public:
  void generate(kj::ArrayPtr<kj::byte> buffer) override {
    size_t done = 0;
    for (int i = 0; done < buffer.size() && i < 64; ++i) {
      ssize_t n = getrandom(buffer.begin() + done, buffer.size() - done, 0);
      if (n > 0) done += static_cast<size_t>(n);
    }
    KJ_REQUIRE(done == buffer.size(), "getrandom failed");
  }
};

// Puts the terminal in raw mode (keys go to the guest as typed, Ctrl-C
// included) and restores it, and stdin's file flags, on destruction.
class TerminalGuard {
 public:
  TerminalGuard() {
    flags_ = fcntl(0, F_GETFL);
    if (isatty(0) && tcgetattr(0, &saved_) == 0) {
      struct termios raw = saved_;
      cfmakeraw(&raw);
      raw.c_oflag |= OPOST;  // keep "\n" -> "\r\n" on our own messages
      raw_ = tcsetattr(0, TCSANOW, &raw) == 0;
    }
  }
  ~TerminalGuard() {
    if (raw_) tcsetattr(0, TCSANOW, &saved_);
    if (flags_ >= 0) fcntl(0, F_SETFL, flags_);
  }
  bool raw() const { return raw_; }

 private:
  struct termios saved_ {};
  bool raw_ = false;
  int flags_ = -1;
};

std::string statusMessage(const std::string& body) {
  // The body is a metav1.Status: show its message without a JSON parser.
  auto at = body.find("\"message\":\"");
  if (at == std::string::npos) return body.substr(0, 300);
  std::string out;
  for (size_t i = at + 11; i < body.size() && body[i] != '"'; ++i) {
    if (body[i] == '\\' && i + 1 < body.size()) ++i;
    out += body[i];
  }
  return out;
}

// Writes all of `bytes` to stdout. Plain blocking writes: stdout may be a
// file (epoll refuses those), and a terminal may share stdin's non-blocking
// file description, hence the poll on EAGAIN.
void writeStdout(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  for (int stalls = 0; size > 0 && stalls < 1000;) {
    ssize_t n = ::write(1, p, size);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      stalls = 0;
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      struct pollfd pfd {
        1, POLLOUT, 0
      };
      ::poll(&pfd, 1, 100);
      ++stalls;
    } else {
      return;  // stdout closed: nothing to show the output on
    }
  }
}

struct Session {
  Session(kj::WebSocket& ws, kj::Timer& timer, const ConsoleOptions& options)
      : ws(ws), timer(timer), options(options) {}
  kj::WebSocket& ws;
  kj::Timer& timer;
  const ConsoleOptions& options;
  std::chrono::steady_clock::time_point lastOutput = std::chrono::steady_clock::now();
  std::string closeReason;
  bool closedByServer = false;

  // Guest -> terminal until the server closes.
  kj::Promise<void> pumpOut() {
    return ws.receive().then([this](kj::WebSocket::Message&& m) -> kj::Promise<void> {
      KJ_SWITCH_ONEOF(m) {
        KJ_CASE_ONEOF(text, kj::String) {
          lastOutput = std::chrono::steady_clock::now();
          writeStdout(text.begin(), text.size());
          return pumpOut();
        }
        KJ_CASE_ONEOF(data, kj::Array<kj::byte>) {
          lastOutput = std::chrono::steady_clock::now();
          writeStdout(data.begin(), data.size());
          return pumpOut();
        }
        KJ_CASE_ONEOF(close, kj::WebSocket::Close) {
          closedByServer = true;
          closeReason = close.reason.cStr();
          return kj::READY_NOW;
        }
      }
      KJ_UNREACHABLE;
    });
  }

  // Terminal -> guest until the escape byte or the end of stdin.
  kj::Promise<void> pumpIn(kj::AsyncInputStream& in) {
    auto buf = kj::heapArray<kj::byte>(4096);
    auto& ref = buf;
    return in.tryRead(ref.begin(), 1, ref.size())
        .then([this, &in, buf = kj::mv(buf)](size_t n) mutable -> kj::Promise<void> {
          if (n == 0) return drain();
          std::string_view bytes(reinterpret_cast<const char*>(buf.begin()), n);
          size_t esc = bytes.find(kConsoleEscape);
          bool detach = esc != std::string_view::npos;
          if (detach) bytes = bytes.substr(0, esc);
          kj::Promise<void> sent = kj::READY_NOW;
          if (!bytes.empty()) {
            auto copy = kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(bytes.data()),
                                                bytes.size());
            auto& c = copy;
            sent = ws.send(c.asPtr()).attach(kj::mv(copy));
          }
          if (detach) return sent;
          return sent.then([this, &in]() { return pumpIn(in); });
        });
  }

  // After the end of a piped stdin: wait for the guest to go quiet.
  kj::Promise<void> drain(std::chrono::steady_clock::time_point start = {}) {
    auto now = std::chrono::steady_clock::now();
    if (start == std::chrono::steady_clock::time_point{}) start = now;
    if (now - lastOutput >= std::chrono::milliseconds(options.quietMs) ||
        now - start >= std::chrono::milliseconds(options.maxDrainMs)) {
      return kj::READY_NOW;
    }
    return timer.afterDelay(100 * kj::MILLISECONDS).then([this, start]() { return drain(start); });
  }
};

}  // namespace

int runConsole(const ConsoleOptions& o) {
  if (o.server.rfind("http://", 0) != 0) {
    std::fprintf(stderr, "vmctl: console: the server URL must be http://HOST:PORT (got %s)\n",
                 o.server.c_str());
    return 1;
  }
  std::string base = o.server;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string url =
      base + "/apis/vmhost.io/v1/namespaces/" + o.ns + "/virtualmachines/" + o.name + "/console";
  try {
    auto io = kj::setupAsyncIo();
    kj::HttpHeaderTable::Builder builder;
    auto authorization = builder.add("Authorization");
    auto table = builder.build();
    Entropy entropy;
    kj::HttpClientSettings settings;
    settings.entropySource = entropy;
    auto client = kj::newHttpClient(io.provider->getTimer(), *table, io.provider->getNetwork(),
                                    nullptr, settings);
    kj::HttpHeaders headers(*table);
    if (!o.token.empty()) headers.set(authorization, kj::str("Bearer ", o.token.c_str()));
    auto response = client->openWebSocket(url, headers).wait(io.waitScope);
    kj::Own<kj::WebSocket> ws;
    KJ_SWITCH_ONEOF(response.webSocketOrBody) {
      KJ_CASE_ONEOF(body, kj::Own<kj::AsyncInputStream>) {
        auto text = body->readAllText(1 << 20).wait(io.waitScope);
        std::fprintf(stderr, "Error from server (HTTP %u): %s\n", response.statusCode,
                     statusMessage(text.cStr()).c_str());
        return 1;
      }
      KJ_CASE_ONEOF(socket, kj::Own<kj::WebSocket>) { ws = kj::mv(socket); }
    }

    // epoll takes terminals, pipes and sockets; anything else (a file,
    // /dev/null) is read at once.
    struct stat st {};
    bool pollable =
        isatty(0) || (fstat(0, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)));
    TerminalGuard terminal;
    std::fprintf(stderr, "Connected to %s/%s (escape character is ^])\r\n", o.ns.c_str(),
                 o.name.c_str());
    Session session(*ws, io.provider->getTimer(), o);

    kj::Promise<void> input = nullptr;
    kj::Own<kj::AsyncInputStream> in;
    if (!pollable) {
      std::string bytes;
      char buf[4096];
      for (ssize_t n; (n = ::read(0, buf, sizeof buf)) > 0;) bytes.append(buf, n);
      if (auto esc = bytes.find(kConsoleEscape); esc != std::string::npos) bytes.resize(esc);
      auto copy =
          kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size());
      auto& c = copy;
      input =
          ws->send(c.asPtr()).attach(kj::mv(copy)).then([&session]() { return session.drain(); });
    } else {
      in = io.lowLevelProvider->wrapInputFd(0);
      input = session.pumpIn(*in);
    }
    session.pumpOut().exclusiveJoin(kj::mv(input)).wait(io.waitScope);
    if (session.closedByServer) {
      std::fprintf(stderr, "\r\nvmctl: console closed: %s\r\n",
                   session.closeReason.empty() ? "by the server" : session.closeReason.c_str());
      return 1;
    }
    // Detach: say goodbye; the server answers with its own Close.
    ws->close(1000, "detached")
        .exclusiveJoin(io.provider->getTimer().afterDelay(2 * kj::SECONDS))
        .wait(io.waitScope);
    std::fprintf(stderr, "\r\n");
    return 0;
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "\r\nvmctl: console %s/%s: %s\r\n", o.ns.c_str(), o.name.c_str(),
                 e.getDescription().cStr());
    return 1;
  }
}

}  // namespace vmhost::cli
