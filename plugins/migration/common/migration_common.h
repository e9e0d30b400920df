// What the `precopy` and `adaptive` migration plugins share: the plan's
// figures (per-GiB completion timeout, the request's overrides), overflow-safe
// arithmetic on the host's figures, and the words their reasons use.
// Header-only; both plugins are stateless, so nothing here holds state.
#pragma once

#include <vmhost/plugin.hpp>

#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

namespace vmhost::migration {

inline constexpr uint64_t kKiB = 1ull << 10;
inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint64_t kGiB = 1ull << 30;
inline constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
// libvirt's and QEMU's own default max downtime, when a plan carries none.
inline constexpr uint64_t kQemuDefaultDowntimeMs = 300;
inline constexpr uint32_t kMaxParallelConnections = 64;

// Saturating: the host's figures may be anything up to 2^64-1.
inline uint64_t addSat(uint64_t a, uint64_t b) { return a > kMax - b ? kMax : a + b; }
inline uint64_t mulSat(uint64_t a, uint64_t b) { return a != 0 && b > kMax / a ? kMax : a * b; }
inline uint64_t msOf(uint64_t seconds) { return mulSat(seconds, 1000); }

// "48 MiB", "1.5 GiB", "512 B": what the reasons say.
inline std::string bytesText(uint64_t bytes) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024.0 && unit < 6) {
    value /= 1024.0;
    ++unit;
  }
  char buf[32];
  if (unit == 0 || value >= 10.0 || bytes % (1ull << (10 * unit)) == 0) {
    std::snprintf(buf, sizeof buf, "%.0f %s", value, units[unit]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", value, units[unit]);
  }
  return buf;
}
inline std::string rateText(uint64_t bytesPerSecond) { return bytesText(bytesPerSecond) + "/s"; }
inline std::string secondsText(uint64_t ms) { return std::to_string(ms / 1000) + " s"; }

// A plugin's own parameters, before and after the request's overrides.
struct Settings {
  uint64_t bandwidthMiBps = 0;  // 0: unlimited
  uint64_t maxDowntimeMs = kQemuDefaultDowntimeMs;
  uint64_t completionTimeoutPerGiBSeconds = 150;
  uint64_t progressTimeoutSeconds = 150;
  uint32_t parallelConnections = 1;
  bool autoConverge = false;
  bool allowPostCopy = false;
  uint32_t autoConvergeInitial = 0;    // 0: QEMU's default (20 %)
  uint32_t autoConvergeIncrement = 0;  // 0: QEMU's default (10 %)
};

// Refuses what libvirt cannot be given; `field` prefixes the key
// ("config." or "overrides.").
inline void checkSettings(const Settings& s, const std::string& field) {
  if (s.maxDowntimeMs == 0) {
    throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT, field + "maxDowntimeMs: must be > 0");
  }
  if (s.parallelConnections == 0 || s.parallelConnections > kMaxParallelConnections) {
    throw sdk::Error(
        VMHOST_ERR_INVALID_ARGUMENT,
        field + "parallelConnections: must be 1.." + std::to_string(kMaxParallelConnections) +
            (field == "config." ? "" : ", got " + std::to_string(s.parallelConnections)));
  }
}

// The request's overrides of the numeric parameters (0: the plugin's own
// value). The two choices are each plugin's call, so they are left alone.
inline Settings withOverrides(Settings s, schema::MigrationOverrides::Reader o) {
  if (o.getBandwidthMiBps() != 0) s.bandwidthMiBps = o.getBandwidthMiBps();
  if (o.getMaxDowntimeMs() != 0) s.maxDowntimeMs = o.getMaxDowntimeMs();
  if (o.getCompletionTimeoutPerGiBSeconds() != 0) {
    s.completionTimeoutPerGiBSeconds = o.getCompletionTimeoutPerGiBSeconds();
  }
  if (o.getProgressTimeoutSeconds() != 0) s.progressTimeoutSeconds = o.getProgressTimeoutSeconds();
  if (o.getParallelConnections() != 0) {
    s.parallelConnections = o.getParallelConnections();
    checkSettings(s, "overrides.");
  }
  return s;
}

// `own` unless the choice is set.
inline bool choose(schema::MigrationOverrides::Choice choice, bool own) {
  switch (choice) {
    case schema::MigrationOverrides::Choice::YES:
      return true;
    case schema::MigrationOverrides::Choice::NO:
      return false;
    default:
      return own;
  }
}

// The data to move: memory, plus the disks when they are copied.
inline uint64_t bytesToMove(schema::MigrationRequest::Reader r) {
  return addSat(r.getMemoryBytes(), r.getSharedStorage() ? 0 : r.getDiskBytesToCopy());
}

// Fills the plan from `s`: the completion timeout is per started GiB of the
// data to move (at least one), as KubeVirt's completionTimeoutPerGiB.
inline void writePlan(const Settings& s, schema::MigrationRequest::Reader r,
                      schema::MigrationPlan::Builder out) {
  uint64_t bytes = bytesToMove(r);
  uint64_t gib = bytes == 0 ? 1 : bytes / kGiB + (bytes % kGiB != 0 ? 1 : 0);
  out.setBandwidthMiBps(s.bandwidthMiBps);
  out.setMaxDowntimeMs(s.maxDowntimeMs);
  out.setAutoConverge(s.autoConverge);
  out.setAllowPostCopy(s.allowPostCopy);
  out.setCompletionTimeoutSeconds(mulSat(s.completionTimeoutPerGiBSeconds, gib));
  out.setProgressTimeoutSeconds(s.progressTimeoutSeconds);
  out.setParallelConnections(s.parallelConnections);
  out.setCopyStorage(!r.getSharedStorage() && r.getDiskBytesToCopy() > 0);
  if (s.autoConverge) {
    out.setAutoConvergeInitial(s.autoConvergeInitial);
    out.setAutoConvergeIncrement(s.autoConvergeIncrement);
  }
}

// The link's rate: what QEMU measures now, else the plan's limit (0: unknown).
inline uint64_t linkRate(schema::MigrationProgress::Reader p) {
  if (p.getBandwidthBytesPerSecond() != 0) return p.getBandwidthBytesPerSecond();
  return mulSat(p.getPlan().getBandwidthMiBps(), kMiB);
}

// "1.2 GiB remaining, dirty 60 MiB/s, link 20 MiB/s" (the rates when known).
inline std::string figures(schema::MigrationProgress::Reader p) {
  std::string out = bytesText(p.getDataRemainingBytes()) + " remaining";
  if (p.getDirtyRateBytesPerSecond() != 0)
    out += ", dirty " + rateText(p.getDirtyRateBytesPerSecond());
  if (uint64_t link = linkRate(p); link != 0) out += ", link " + rateText(link);
  return out;
}

}  // namespace vmhost::migration
