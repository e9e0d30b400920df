// A small Prometheus-style metrics registry: counters, gauges and histograms
// with labels, thread-safe, rendered in the text exposition format (0.0.4).
//
// main() builds one Registry and hands it (by reference) to every component
// that records metrics: the API server (request counts and latency), the
// reconcilers (reconcile latency, VMs by phase), the plugin host (plugin call
// latency). Nothing registers itself globally.
//
// Families are created once (name, help, label names) and then updated by
// label values; a family lives as long as its Registry, so components keep
// references to the families they use. Asking again for a family with the
// same name returns the existing one (when kind and labels agree), so two
// components may share a family without coordinating.
#pragma once

#include "common/result.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace vmhost::metrics {

using LabelValues = std::vector<std::string>;

class Family {
 public:
  enum class Kind : uint8_t { kCounter, kGauge, kHistogram };

  virtual ~Family() = default;
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& labelNames() const { return labelNames_; }
  Kind kind() const { return kind_; }

  // Appends "# HELP", "# TYPE" and one line per series to `out`.
  virtual void render(std::string& out) const = 0;

 protected:
  Family(Kind kind, std::string name, std::string help, std::vector<std::string> labelNames);
  // Label values padded or cut to the number of label names, so a caller's
  // mistake yields a wrong series rather than a crash.
  LabelValues normalize(LabelValues values) const;
  // `{a="x",b="y"}` (empty string without labels); `extra` is appended as
  // one more label (the histogram's `le`).
  std::string labelText(const LabelValues& values, const std::string& extraName = "",
                        const std::string& extraValue = "") const;

  mutable std::mutex mu_;

 private:
  const Kind kind_;
  const std::string name_;
  const std::string help_;
  const std::vector<std::string> labelNames_;
};

class Counter : public Family {
 public:
  Counter(std::string name, std::string help, std::vector<std::string> labelNames);
  // Negative increments are ignored: a counter only goes up.
  void inc(const LabelValues& labels = {}, double by = 1.0);
  double value(const LabelValues& labels = {}) const;
  void render(std::string& out) const override;

 private:
  std::map<LabelValues, double> series_;
};

class Gauge : public Family {
 public:
  Gauge(std::string name, std::string help, std::vector<std::string> labelNames);
  void set(const LabelValues& labels, double value);
  void add(const LabelValues& labels, double by);
  double value(const LabelValues& labels = {}) const;
  // Drops every series (for gauges recomputed wholesale, like VMs by phase).
  void clear();
  void render(std::string& out) const override;

 private:
  std::map<LabelValues, double> series_;
};

class Histogram : public Family {
 public:
  // `buckets`: upper bounds, ascending; +Inf is implicit.
  Histogram(std::string name, std::string help, std::vector<std::string> labelNames,
            std::vector<double> buckets);
  void observe(const LabelValues& labels, double value);
  uint64_t count(const LabelValues& labels = {}) const;
  double sum(const LabelValues& labels = {}) const;
  void render(std::string& out) const override;

  // Latency buckets in seconds, 1 ms to 60 s, like apiserver_request_duration_seconds.
  static std::vector<double> defaultLatencyBuckets();

 private:
  struct Series {
    std::vector<uint64_t> counts;  // per bucket, not cumulative; last = +Inf
    uint64_t count = 0;
    double sum = 0;
  };
  const std::vector<double> buckets_;
  std::map<LabelValues, Series> series_;
};

class Registry {
 public:
  // Each returns the family registered under `name`, creating it if needed.
  // A name already used by another kind or other label names is a caller
  // bug: FAILED_PRECONDITION names the conflict.
  Result<Counter*> counter(const std::string& name, const std::string& help,
                           std::vector<std::string> labelNames = {});
  Result<Gauge*> gauge(const std::string& name, const std::string& help,
                       std::vector<std::string> labelNames = {});
  Result<Histogram*> histogram(const std::string& name, const std::string& help,
                               std::vector<std::string> labelNames = {},
                               std::vector<double> buckets = Histogram::defaultLatencyBuckets());

  // The text exposition of every family, sorted by name.
  std::string render() const;

  // Content-Type of render()'s output.
  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  template <typename T, typename... Args>
  Result<T*> getOrCreate(Family::Kind kind, const std::string& name, const std::string& help,
                         std::vector<std::string> labelNames, Args&&... args);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>> families_;
};

// Prometheus text-format escaping of a label value (backslash, quote, newline).
std::string escapeLabelValue(const std::string& value);
// A sample value: integers without a fraction, +Inf/-Inf/NaN spelled as Prometheus does.
std::string formatValue(double value);

}  // namespace vmhost::metrics
