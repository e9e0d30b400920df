// migration_tool: node/migration/libvirt_migration.h from a shell, for the
// cluster tests (tests/cluster/libvirt_migration_test.sh) and by hand on the
// harness. Exactly what the node agent's source side does: migrate() on one
// thread, jobStats() polled (and the job steered) from another, on one shared
// Connection.
//
//   migration_tool migrate SRC_URI DOMAIN --dest-uri URI [options]
//       --migrate-uri URI  --dest-xml FILE  --no-align
//       --copy-disk DEV (repeatable)  --full-chain
//       --bandwidth MIBPS  --postcopy-bandwidth MIBPS  --parallel N
//       --auto-converge  --ac-initial PCT  --ac-increment PCT
//       --postcopy  --postcopy-after SECONDS   (switch once the memory phase ran that long)
//       --tls  --tls-destination NAME  --unsafe  --max-downtime MS
//       --abort-after SECONDS                  (virDomainAbortJob from the poller, once
//                                               the job ran that long)
//       --abort-after-memory SECONDS           (... once the memory phase ran that long)
//       --set-bandwidth-after SECONDS:MIBPS  --set-downtime-after SECONDS:MS
//       --poll-ms MS (default 500)
//     prints "flags: ...", one "stats: ..." line per poll while the job runs,
//     "max-downtime: MS" once the job is seen, then "completed: ..." (the
//     source's completed stats) and "result: ok" or "result: error CODE: MSG".
//     Exit status 0 on success, 1 when the migration failed, 2 on bad usage.
//   migration_tool stats URI DOMAIN [--completed]
//   migration_tool max-downtime URI DOMAIN [MS]     get (or set) it
//   migration_tool migratable-xml URI DOMAIN
//   migration_tool align SOURCE_XML_FILE DEST_XML_FILE
//   migration_tool xml NAME UUID DISK SERIAL_LOG [MACHINE]
//     vmhost's own domain XML (toDomainXml) for the tiny guest (GUEST_DIR)
//     with one qcow2 virtio disk: what a target node would generate.
#include "node/domain/domain_xml.h"
#include "node/libvirt.h"
#include "node/migration/libvirt_migration.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace vmhost;
using namespace vmhost::node;

namespace {

std::mutex gOut;

void say(const std::string& line) {
  std::lock_guard<std::mutex> lock(gOut);
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "migration_tool: %s (see the comment at the top of migration_tool.cpp)\n",
               why.c_str());
  std::exit(2);
}

std::string readFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) usage("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

uint64_t number(const std::string& s, const char* what) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || *end) usage(std::string(what) + ": not a number: " + s);
  return v;
}

double seconds(const std::string& s, const char* what) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end || v < 0) usage(std::string(what) + ": not a number of seconds: " + s);
  return v;
}

// "SECONDS:VALUE"
std::pair<double, uint64_t> timed(const std::string& s, const char* what) {
  auto colon = s.find(':');
  if (colon == std::string::npos) usage(std::string(what) + ": want SECONDS:VALUE, got " + s);
  return {seconds(s.substr(0, colon), what), number(s.substr(colon + 1), what)};
}

Connection openOrDie(const std::string& uri) {
  auto c = Connection::open(uri);
  if (!c) {
    say("result: error " + std::string(statusName(c.error().code)) + ": " + c.error().message);
    std::exit(1);
  }
  return std::move(c.value());
}

int cmdMigrate(const std::vector<std::string>& args) {
  if (args.size() < 2) usage("migrate SRC_URI DOMAIN --dest-uri URI ...");
  std::string srcUri = args[0], domain = args[1];
  MigrateParams p;
  double postCopyAfter = -1, abortAfter = -1, abortAfterMemory = -1;
  std::pair<double, uint64_t> bwAfter{-1, 0}, dtAfter{-1, 0};
  uint64_t pollMs = 500;
  for (size_t i = 2; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= args.size()) usage(a + " needs a value");
      return args[++i];
    };
    if (a == "--dest-uri")
      p.destUri = val();
    else if (a == "--migrate-uri")
      p.migrateUri = val();
    else if (a == "--dest-xml")
      p.destXml = readFile(val());
    else if (a == "--no-align")
      p.alignWithSource = false;
    else if (a == "--copy-disk")
      p.copyDisks.push_back(val());
    else if (a == "--full-chain")
      p.copyFullChain = true;
    else if (a == "--bandwidth")
      p.bandwidthMiBps = number(val(), "--bandwidth");
    else if (a == "--postcopy-bandwidth")
      p.postCopyBandwidthMiBps = number(val(), a.c_str());
    else if (a == "--parallel")
      p.parallelConnections = static_cast<uint32_t>(number(val(), "--parallel"));
    else if (a == "--auto-converge")
      p.autoConverge = true;
    else if (a == "--ac-initial")
      p.autoConvergeInitial = static_cast<uint32_t>(number(val(), a.c_str()));
    else if (a == "--ac-increment")
      p.autoConvergeIncrement = static_cast<uint32_t>(number(val(), a.c_str()));
    else if (a == "--postcopy")
      p.allowPostCopy = true;
    else if (a == "--postcopy-after")
      postCopyAfter = seconds(val(), a.c_str());
    else if (a == "--tls")
      p.tls = true;
    else if (a == "--tls-destination")
      p.tlsDestination = val();
    else if (a == "--unsafe")
      p.unsafe = true;
    else if (a == "--max-downtime")
      p.maxDowntimeMs = number(val(), a.c_str());
    else if (a == "--abort-after")
      abortAfter = seconds(val(), a.c_str());
    else if (a == "--abort-after-memory")
      abortAfterMemory = seconds(val(), a.c_str());
    else if (a == "--set-bandwidth-after")
      bwAfter = timed(val(), a.c_str());
    else if (a == "--set-downtime-after")
      dtAfter = timed(val(), a.c_str());
    else if (a == "--poll-ms")
      pollMs = number(val(), a.c_str());
    else
      usage("unknown option " + a);
  }
  if (p.destUri.empty()) usage("migrate needs --dest-uri");

  Connection conn = openOrDie(srcUri);
  say("flags: " + describeMigrateFlags(p));

  std::atomic<bool> done{false};
  Status result = Ok{};
  auto t0 = std::chrono::steady_clock::now();
  std::thread worker([&] {
    result = migrate(conn, domain, p);
    done = true;
  });

  bool sawJob = false, postCopyStarted = false, aborted = false, bwSet = false, dtSet = false;
  double memoryStartS = -1;
  while (!done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(pollMs));
    if (done) break;
    auto st = jobStats(conn, domain);
    if (!st) {
      say("stats-error: " + st.error().message);
      continue;
    }
    const JobStats& s = st.value();
    if (!s.active) continue;
    say("stats: " + describeJobStats(s));
    if (!sawJob) {
      sawJob = true;
      auto md = maxDowntime(conn, domain);
      say(md ? "max-downtime: " + std::to_string(md.value())
             : "max-downtime-error: " + md.error().message);
    }
    double jobS = static_cast<double>(s.elapsedMs) / 1000.0;
    // The memory phase: QEMU's own migration, after the NBD disk copy (libvirt
    // reports no memory figures before it; QEMU refuses post-copy before it).
    if (s.memTotal > 0 && memoryStartS < 0) {
      memoryStartS = jobS;
      say("memory-phase: from " + std::to_string(s.elapsedMs) + "ms");
    }
    double memS = memoryStartS < 0 ? -1 : jobS - memoryStartS;
    if (!aborted && ((abortAfter >= 0 && jobS >= abortAfter) ||
                     (abortAfterMemory >= 0 && memS >= abortAfterMemory))) {
      aborted = true;
      auto a = abortJob(conn, domain);
      say(a ? "abort: requested at " + std::to_string(s.elapsedMs) + "ms"
            : "abort-error: " + a.error().message);
    }
    if (!postCopyStarted && postCopyAfter >= 0 && memS >= postCopyAfter) {
      postCopyStarted = true;
      auto a = startPostCopy(conn, domain);
      say(a ? "post-copy: started at " + std::to_string(s.elapsedMs) + "ms"
            : "post-copy-error: " + a.error().message);
    }
    if (!bwSet && bwAfter.first >= 0 && jobS >= bwAfter.first) {
      bwSet = true;
      auto a = setBandwidth(conn, domain, bwAfter.second);
      say(a ? "bandwidth: set to " + std::to_string(bwAfter.second) + "MiB/s"
            : "bandwidth-error: " + a.error().message);
    }
    if (!dtSet && dtAfter.first >= 0 && jobS >= dtAfter.first) {
      dtSet = true;
      auto a = setMaxDowntime(conn, domain, dtAfter.second);
      auto md = maxDowntime(conn, domain);
      say(a ? "max-downtime: set to " + std::to_string(dtAfter.second) + ", now " +
                  (md ? std::to_string(md.value()) : md.error().message)
            : "max-downtime-error: " + a.error().message);
    }
  }
  worker.join();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char wallBuf[32];
  std::snprintf(wallBuf, sizeof wallBuf, "%.2f", wall);

  auto c = jobStats(conn, domain, true);
  if (c) {
    const JobStats& s = c.value();
    say("completed: " + describeJobStats(s) + " | elapsed=" + std::to_string(s.elapsedMs) +
        " downtime=" + std::to_string(s.downtimeMs) + " data=" + std::to_string(s.dataProcessed) +
        " disk=" + std::to_string(s.diskProcessed) +
        " postcopy_requests=" + std::to_string(s.postCopyRequests) + " wall=" + wallBuf);
  } else {
    say("completed-error: " + c.error().message);
  }
  if (result) {
    say("result: ok");
    return 0;
  }
  say("result: error " + std::string(statusName(result.error().code)) + ": " +
      result.error().message);
  return 1;
}

int cmdStats(const std::vector<std::string>& args) {
  if (args.size() < 2) usage("stats URI DOMAIN [--completed]");
  bool completed = args.size() > 2 && args[2] == "--completed";
  Connection conn = openOrDie(args[0]);
  auto s = jobStats(conn, args[1], completed);
  if (!s) {
    say("error " + std::string(statusName(s.error().code)) + ": " + s.error().message);
    return 1;
  }
  say(describeJobStats(s.value()) + " | elapsed=" + std::to_string(s->elapsedMs) +
      " downtime=" + std::to_string(s->downtimeMs));
  return 0;
}

int cmdMaxDowntime(const std::vector<std::string>& args) {
  if (args.size() < 2) usage("max-downtime URI DOMAIN [MS]");
  Connection conn = openOrDie(args[0]);
  if (args.size() > 2) {
    auto st = setMaxDowntime(conn, args[1], number(args[2], "MS"));
    if (!st) {
      say("error: " + st.error().message);
      return 1;
    }
  }
  auto md = maxDowntime(conn, args[1]);
  if (!md) {
    say("error: " + md.error().message);
    return 1;
  }
  say(std::to_string(md.value()));
  return 0;
}

int cmdMigratableXml(const std::vector<std::string>& args) {
  if (args.size() < 2) usage("migratable-xml URI DOMAIN");
  Connection conn = openOrDie(args[0]);
  auto x = migratableXml(conn, args[1]);
  if (!x) {
    say("error: " + x.error().message);
    return 1;
  }
  std::fputs(x.value().c_str(), stdout);
  return 0;
}

int cmdAlign(const std::vector<std::string>& args) {
  if (args.size() < 2) usage("align SOURCE_XML_FILE DEST_XML_FILE");
  auto x = alignDestXml(readFile(args[0]), readFile(args[1]));
  if (!x) {
    std::fprintf(stderr, "error: %s\n", x.error().message.c_str());
    return 1;
  }
  std::fputs(x.value().c_str(), stdout);
  return 0;
}

int cmdXml(const std::vector<std::string>& args) {
  if (args.size() < 4) usage("xml NAME UUID DISK SERIAL_LOG [MACHINE]");
  const char* guest = std::getenv("GUEST_DIR");
  if (!guest || !*guest) usage("xml needs GUEST_DIR (the built tiny guest)");
  DomainSpec spec;
  spec.name = args[0];
  spec.uuid = args[1];
  spec.vm.ns = "default";
  spec.vm.name = args[0];
  spec.vm.uid = args[1];
  spec.vm.generation = 1;
  if (args.size() > 4) spec.machine = args[4];
  spec.memoryBytes = 128ull << 20;
  spec.vcpus = 1;
  spec.kernel = std::string(guest) + "/vmlinux";
  spec.initrd = std::string(guest) + "/initramfs.gz";
  spec.cmdline = "console=ttyS0 quiet cryptomgr.notests";
  DiskSpec d;
  d.volumeName = "root";
  d.sourcePath = args[2];
  d.format = "qcow2";
  d.targetDev = "vda";
  spec.disks.push_back(d);
  spec.serialLogFile = args[3];
  auto x = toDomainXml(spec);
  if (!x) {
    std::fprintf(stderr, "error: %s\n", x.error().message.c_str());
    return 1;
  }
  std::fputs(x.value().c_str(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage("no command");
  std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "migrate") return cmdMigrate(args);
  if (cmd == "stats") return cmdStats(args);
  if (cmd == "max-downtime") return cmdMaxDowntime(args);
  if (cmd == "migratable-xml") return cmdMigratableXml(args);
  if (cmd == "align") return cmdAlign(args);
  if (cmd == "xml") return cmdXml(args);
  usage("unknown command " + cmd);
}
