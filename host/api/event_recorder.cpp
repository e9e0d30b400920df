#include "api/event_recorder.h"

#include "api/objects.h"
#include "api/timestamps.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace vmhost::api {

namespace {

using Clock = std::chrono::steady_clock;

// "<object>.<nanoseconds, hex>", as Kubernetes names events; unique enough
// that two records of one object never collide (a collision is retried).
std::string eventName(const std::string& object) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  char hex[24];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(ns));
  std::string base = object.substr(0, 253 - 1 - 16);
  return base + "." + hex;
}

// Cuts at a UTF-8 character boundary.
std::string cut(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
  s.resize(n);
  return s;
}

}  // namespace

EventRecord vmEvent(const VirtualMachine& vm, const char* type, std::string reason,
                    std::string message, EventSource source) {
  EventRecord r;
  r.object = referenceTo(vm);
  r.type = type;
  r.reason = std::move(reason);
  r.message = std::move(message);
  r.source = std::move(source);
  return r;
}

EventRecorder::EventRecorder(store::Store& store, metrics::Registry* metrics,
                             EventRecorderOptions options)
    : store_(store), options_(options) {
  if (metrics != nullptr) {
    if (auto c = metrics->counter("vmhost_events_total",
                                  "Events recorded, by outcome: created, aggregated (a repeat "
                                  "raised the count of an Event), rate_limited, queue_full, failed",
                                  {"result"});
        c.ok()) {
      events_ = c.value();
    }
  }
  writer_ = std::jthread([this](std::stop_token stop) { run(stop); });
}

EventRecorder::~EventRecorder() {
  {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(1), [&] { return queue_.empty() && inFlight_ == 0; });
  }
  writer_.request_stop();
  cv_.notify_all();
}

void EventRecorder::count(const char* result) {
  if (events_ != nullptr) events_->inc({result});
}

uint64_t EventRecorder::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

void EventRecorder::record(EventRecord event) {
  event.message = cut(std::move(event.message), kMaxEventMessageBytes);
  if (event.reason.empty() || event.object.name.empty()) return;
  std::string id =
      event.object.uid.empty() ? event.object.ns + "/" + event.object.name : event.object.uid;
  auto now = Clock::now();
  std::lock_guard lock(mu_);
  auto [it, fresh] = objects_.try_emplace(id);
  ObjectState& st = it->second;
  if (fresh) {
    st.tokens = options_.burst;
    st.refilled = now;
    lru_.push_front(id);
    st.lru = lru_.begin();
    if (objects_.size() > options_.maxObjects) {
      objects_.erase(lru_.back());
      lru_.pop_back();
    }
  } else {
    lru_.splice(lru_.begin(), lru_, st.lru);
    double refill = std::chrono::duration<double>(now - st.refilled).count() /
                    std::chrono::duration<double>(options_.refill).count();
    st.tokens = std::min<double>(options_.burst, st.tokens + refill);
    st.refilled = now;
  }
  if (st.tokens < 1) {
    ++dropped_;
    count("rate_limited");
    return;
  }
  if (queue_.size() >= options_.queueLimit) {
    ++dropped_;
    count("queue_full");
    return;
  }
  st.tokens -= 1;
  Pending p;
  p.now = nowRfc3339();
  std::string key = event.type + "\n" + event.reason + "\n" + event.message;
  auto recent = st.recent.find(key);
  if (recent != st.recent.end() && now - recent->second.at < options_.aggregateWindow) {
    p.repeat = true;
    p.name = recent->second.name;
  } else {
    p.name = eventName(event.object.name);
    // Old entries go as new ones come: the map holds what may still repeat.
    std::erase_if(st.recent,
                  [&](const auto& e) { return now - e.second.at >= options_.aggregateWindow; });
  }
  st.recent[key] = Recent{p.name, now};
  p.record = std::move(event);
  queue_.push_back(std::move(p));
  cv_.notify_all();
}

void EventRecorder::flush() {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::seconds(30), [&] { return queue_.empty() && inFlight_ == 0; });
}

void EventRecorder::run(std::stop_token stop) {
  while (true) {
    Pending p;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop.stop_requested() || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      p = std::move(queue_.front());
      queue_.pop_front();
      ++inFlight_;
    }
    write(p);
    {
      std::lock_guard lock(mu_);
      --inFlight_;
    }
    cv_.notify_all();
  }
}

void EventRecorder::write(const Pending& p) {
  const EventRecord& r = p.record;
  std::string ns = r.object.ns.empty() ? "default" : r.object.ns;
  auto key = eventKey(ns, p.name);
  if (p.repeat) {
    for (int attempt = 0; attempt < 4; ++attempt) {
      auto cur = store_.get(key);
      if (!cur.ok()) break;  // expired or deleted meanwhile: a new Event below
      auto e = decodeStoredEvent(cur.value());
      if (!e.ok()) break;
      e->count += 1;
      e->lastTimestamp = p.now;
      auto written = store_.update(key, storeValue(e.value()), cur->modRevision);
      if (written.ok()) return count("aggregated");
      if (written.error().code != VMHOST_ERR_ABORTED) {
        count("failed");
        return;
      }
    }
  }
  Event e;
  e.metadata.name = p.name;
  e.metadata.ns = ns;
  e.metadata.uid = newUid();
  e.metadata.creationTimestamp = p.now;
  e.involvedObject = r.object;
  e.reason = r.reason;
  e.message = r.message;
  e.source = r.source;
  e.firstTimestamp = p.now;
  e.lastTimestamp = p.now;
  e.count = 1;
  e.type = r.type;
  e.reportingComponent = r.source.component;
  e.reportingInstance = r.source.host;
  auto created = store_.create(key, storeValue(e));
  if (!created.ok() && created.error().code == VMHOST_ERR_ALREADY_EXISTS) {
    e.metadata.name = eventName(r.object.name + "x");
    created = store_.create(eventKey(ns, e.metadata.name), storeValue(e));
  }
  if (created.ok()) {
    count("created");
  } else {
    count("failed");
    std::fprintf(stderr, "events: not recorded (%s %s on %s/%s): %s\n", r.type.c_str(),
                 r.reason.c_str(), ns.c_str(), r.object.name.c_str(),
                 created.error().message.c_str());
  }
}

size_t EventExpiry::expireOnce() {
  int64_t cutoff = static_cast<int64_t>(std::time(nullptr)) - options_.ttl.count();
  size_t deleted = 0;
  store::ListOptions opts;
  opts.limit = 500;
  for (int page = 0; page < 100000; ++page) {
    auto res = store_.list(kEventsResource, "", opts);
    if (!res.ok()) return deleted;
    for (const auto& o : res->items) {
      auto e = decodeStoredEvent(o);
      std::string when =
          e.ok() ? (e->lastTimestamp.empty() ? e->metadata.creationTimestamp : e->lastTimestamp)
                 : std::string();
      auto t = parseRfc3339(when);
      // Undecodable events go too: nothing reads them.
      if (!e.ok() || !t || *t < cutoff) {
        if (store_.remove(o.key, o.modRevision).ok()) ++deleted;
      }
    }
    if (!res->next) break;
    opts.after = res->next;
  }
  return deleted;
}

void EventExpiry::run(std::stop_token stop) {
  auto next = Clock::now();
  while (!stop.stop_requested()) {
    if (Clock::now() >= next) {
      expireOnce();
      next = Clock::now() + options_.interval;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace vmhost::api
