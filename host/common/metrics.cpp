#include "common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace vmhost::metrics {

std::string escapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string formatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", value);
    return buf;
  }
  // The shortest form that reads back as the same double ("0.1", not
  // "0.10000000000000001"), as Prometheus clients print bucket bounds.
  char buf[64];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  return buf;
}

namespace {

// Help text escaping differs from label values: no quote escaping.
std::string escapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

const char* kindName(Family::Kind kind) {
  switch (kind) {
    case Family::Kind::kCounter:
      return "counter";
    case Family::Kind::kGauge:
      return "gauge";
    case Family::Kind::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void renderHeader(const Family& f, std::string& out) {
  out += "# HELP " + f.name() + " " + escapeHelp(f.help()) + "\n";
  out += "# TYPE " + f.name() + " " + kindName(f.kind()) + "\n";
}

}  // namespace

Family::Family(Kind kind, std::string name, std::string help, std::vector<std::string> labelNames)
    : kind_(kind),
      name_(std::move(name)),
      help_(std::move(help)),
      labelNames_(std::move(labelNames)) {}

LabelValues Family::normalize(LabelValues values) const {
  values.resize(labelNames_.size());
  return values;
}

std::string Family::labelText(const LabelValues& values, const std::string& extraName,
                              const std::string& extraValue) const {
  std::string out;
  for (size_t i = 0; i < labelNames_.size() && i < values.size(); ++i) {
    out += out.empty() ? "{" : ",";
    out += labelNames_[i] + "=\"" + escapeLabelValue(values[i]) + "\"";
  }
  if (!extraName.empty()) {
    out += out.empty() ? "{" : ",";
    out += extraName + "=\"" + escapeLabelValue(extraValue) + "\"";
  }
  if (!out.empty()) out += "}";
  return out;
}

Counter::Counter(std::string name, std::string help, std::vector<std::string> labelNames)
    : Family(Kind::kCounter, std::move(name), std::move(help), std::move(labelNames)) {}

void Counter::inc(const LabelValues& labels, double by) {
  if (!(by >= 0)) return;
  auto key = normalize(labels);
  std::lock_guard lock(mu_);
  series_[std::move(key)] += by;
}

double Counter::value(const LabelValues& labels) const {
  auto key = normalize(labels);
  std::lock_guard lock(mu_);
  auto it = series_.find(key);
  return it == series_.end() ? 0 : it->second;
}

void Counter::render(std::string& out) const {
  renderHeader(*this, out);
  std::lock_guard lock(mu_);
  for (const auto& [labels, v] : series_) {
    out += name() + labelText(labels) + " " + formatValue(v) + "\n";
  }
}

Gauge::Gauge(std::string name, std::string help, std::vector<std::string> labelNames)
    : Family(Kind::kGauge, std::move(name), std::move(help), std::move(labelNames)) {}

void Gauge::set(const LabelValues& labels, double value) {
  auto key = normalize(labels);
  std::lock_guard lock(mu_);
  series_[std::move(key)] = value;
}

void Gauge::add(const LabelValues& labels, double by) {
  auto key = normalize(labels);
  std::lock_guard lock(mu_);
  series_[std::move(key)] += by;
}

double Gauge::value(const LabelValues& labels) const {
  auto key = normalize(labels);
  std::lock_guard lock(mu_);
  auto it = series_.find(key);
  return it == series_.end() ? 0 : it->second;
}

void Gauge::clear() {
  std::lock_guard lock(mu_);
  series_.clear();
}

void Gauge::render(std::string& out) const {
  renderHeader(*this, out);
  std::lock_guard lock(mu_);
  for (const auto& [labels, v] : series_) {
    out += name() + labelText(labels) + " " + formatValue(v) + "\n";
  }
}

Histogram::Histogram(std::string name, std::string help, std::vector<std::string> labelNames,
                     std::vector<double> buckets)
    : Family(Kind::kHistogram, std::move(name), std::move(help), std::move(labelNames)),
      buckets_([&] {
        std::sort(buckets.begin(), buckets.end());
        buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
        return buckets;
      }()) {}

std::vector<double> Histogram::defaultLatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

void Histogram::observe(const LabelValues& labels, double value) {
  auto key = normalize(labels);
  // First bucket whose upper bound holds the value; past the end is +Inf.
  size_t idx = std::lower_bound(buckets_.begin(), buckets_.end(), value) - buckets_.begin();
  std::lock_guard lock(mu_);
  auto& s = series_[std::move(key)];
  if (s.counts.empty()) s.counts.assign(buckets_.size() + 1, 0);
  s.counts[idx]++;
  s.count++;
  s.sum += value;
}

uint64_t Histogram::count(const LabelValues& labels) const {
  auto key = normalize(labels);
  std::lock_guard lock(mu_);
  auto it = series_.find(key);
  return it == series_.end() ? 0 : it->second.count;
}

double Histogram::sum(const LabelValues& labels) const {
  auto key = normalize(labels);
  std::lock_guard lock(mu_);
  auto it = series_.find(key);
  return it == series_.end() ? 0 : it->second.sum;
}

void Histogram::render(std::string& out) const {
  renderHeader(*this, out);
  std::lock_guard lock(mu_);
  for (const auto& [labels, s] : series_) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      cumulative += s.counts[i];
      out += name() + "_bucket" + labelText(labels, "le", formatValue(buckets_[i])) + " " +
             std::to_string(cumulative) + "\n";
    }
    out +=
        name() + "_bucket" + labelText(labels, "le", "+Inf") + " " + std::to_string(s.count) + "\n";
    out += name() + "_sum" + labelText(labels) + " " + formatValue(s.sum) + "\n";
    out += name() + "_count" + labelText(labels) + " " + std::to_string(s.count) + "\n";
  }
}

template <typename T, typename... Args>
Result<T*> Registry::getOrCreate(Family::Kind kind, const std::string& name,
                                 const std::string& help, std::vector<std::string> labelNames,
                                 Args&&... args) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    if (it->second->kind() != kind || it->second->labelNames() != labelNames) {
      return Error{VMHOST_ERR_FAILED_PRECONDITION,
                   "metric " + name + " is already registered as a " +
                       kindName(it->second->kind()) + " with other labels",
                   false};
    }
    return static_cast<T*>(it->second.get());
  }
  auto family = std::make_unique<T>(name, help, std::move(labelNames), std::forward<Args>(args)...);
  T* raw = family.get();
  families_.emplace(name, std::move(family));
  return raw;
}

Result<Counter*> Registry::counter(const std::string& name, const std::string& help,
                                   std::vector<std::string> labelNames) {
  return getOrCreate<Counter>(Family::Kind::kCounter, name, help, std::move(labelNames));
}

Result<Gauge*> Registry::gauge(const std::string& name, const std::string& help,
                               std::vector<std::string> labelNames) {
  return getOrCreate<Gauge>(Family::Kind::kGauge, name, help, std::move(labelNames));
}

Result<Histogram*> Registry::histogram(const std::string& name, const std::string& help,
                                       std::vector<std::string> labelNames,
                                       std::vector<double> buckets) {
  return getOrCreate<Histogram>(Family::Kind::kHistogram, name, help, std::move(labelNames),
                                std::move(buckets));
}

std::string Registry::render() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& [name, family] : families_) family->render(out);
  return out;
}

}  // namespace vmhost::metrics
