// Time as the API shows it: RFC 3339 timestamps in UTC with second
// precision (metav1.Time), and ages as kubectl prints them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace vmhost::api {

// "2026-01-02T03:04:05Z", the Kubernetes timestamp format.
std::string nowRfc3339();
// `seconds` since the epoch in that format.
std::string formatRfc3339(int64_t seconds);
// Seconds since the epoch of an RFC 3339 timestamp as nowRfc3339() writes
// it; nullopt if it does not parse.
std::optional<int64_t> parseRfc3339(const std::string& ts);

// "5s", "3m20s", "2d4h": Kubernetes' duration.HumanDuration, as kubectl
// shows AGE. Negative inputs below -1 s are "<invalid>".
std::string humanDuration(int64_t seconds);
// The age of an object created at `timestamp` (RFC 3339), or "<unknown>".
std::string ageOf(const std::string& timestamp);

}  // namespace vmhost::api
