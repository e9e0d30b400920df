// migration plugin `adaptive`: live migration that converges for guests that
// dirty memory faster than the link carries it.
//
// plan(): precopy's figures (KubeVirt's defaults, the request's overrides
// honoured), plus auto-converge and post-copy allowed (unless the config or
// the overrides say no). Auto-converge is enabled in the plan because QEMU
// cannot turn it on in the middle of a job: QEMU engages it (throttles the
// vCPUs) only when the guest does not converge, so a guest that converges is
// never slowed down.
//
// onProgress(): when the migration is not converging (the remaining data has
// reached no new low for `stallSeconds`, or the guest dirties memory faster
// than the link's measured rate), it escalates, one step after another:
//   step 1  max downtime: doubled from the plan's up to maxDowntimeCapMs; raise
//           n waits until the migration has gone (n-1) x stallSeconds without
//           a new low (the first goes as soon as it is not converging)
//   step 2  auto-converge: QEMU's throttle gets autoConvergeSeconds more
//           (until R x stallSeconds + autoConvergeSeconds without a new low,
//           R = the number of raises), or until it reaches 99 %
//   step 3  post-copy: switch (when the plan allows it)
// and aborts only at the completion timeout (where post-copy, when allowed,
// is switched to instead), or once every step is spent and the progress
// timeout passed. A step the plan leaves out is skipped ("step k/N" counts
// only the steps the plan has). Each reason names the step and the figures.
//
// Stateless: the step is derived from the progress message alone (the max
// downtime in force against the plan's, msSinceProgress, the throttle,
// postCopyActive, elapsed), so one instance serves any number of migrations on
// any threads (VMHOST_CAP_THREAD_SAFE) and survives an agent's restart.
#include "config.capnp.h"
#include "migration_common.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <string>

namespace {

using namespace vmhost::migration;
namespace schema = vmhost::schema;
using Action = schema::MigrationDecision::Action;
using vmhost::sdk::Error;

constexpr uint32_t kMaxThrottle = 99;  // QEMU's max-cpu-throttle default: it cannot do more

// The max downtime after one more raise: doubled, never past the cap.
uint64_t nextDowntime(uint64_t d, uint64_t cap) {
  if (d >= cap || d > cap / 2) return cap;
  return d * 2;
}

// Raises from `from` until at least `to` (at most 64: each one doubles).
unsigned raisesBetween(uint64_t from, uint64_t to, uint64_t cap) {
  unsigned n = 0;
  for (uint64_t d = from; d < to && d < cap; d = nextDowntime(d, cap)) ++n;
  return n;
}

class Adaptive final : public vmhost::sdk::MigrationPlugin {
 public:
  explicit Adaptive(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto c = vmhost::sdk::decodeConfig<AdaptiveConfig>(ctx, message);
    own_.bandwidthMiBps = c.getBandwidthMiBps();
    own_.maxDowntimeMs = c.getMaxDowntimeMs();
    own_.completionTimeoutPerGiBSeconds = c.getCompletionTimeoutPerGiBSeconds();
    own_.progressTimeoutSeconds = c.getProgressTimeoutSeconds();
    own_.parallelConnections = c.getParallelConnections();
    own_.autoConverge = c.getAutoConverge();
    own_.allowPostCopy = c.getAllowPostCopy();
    own_.autoConvergeInitial = c.getAutoConvergeInitial();
    own_.autoConvergeIncrement = c.getAutoConvergeIncrement();
    checkSettings(own_, "config.");
    capMs_ = c.getMaxDowntimeCapMs();
    if (capMs_ < own_.maxDowntimeMs) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  "config.maxDowntimeCapMs: must be >= config.maxDowntimeMs (" +
                      std::to_string(own_.maxDowntimeMs) + "), got " + std::to_string(capMs_));
    }
    if (c.getStallSeconds() == 0) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT, "config.stallSeconds: must be > 0");
    }
    stallMs_ = msOf(c.getStallSeconds());
    autoConvergeMs_ = msOf(c.getAutoConvergeSeconds());
    for (auto [key, value] : {std::pair{"autoConvergeInitial", own_.autoConvergeInitial},
                              std::pair{"autoConvergeIncrement", own_.autoConvergeIncrement}}) {
      if (value > kMaxThrottle) {
        throw Error(VMHOST_ERR_INVALID_ARGUMENT, std::string("config.") + key +
                                                     ": must be 0..99 (percent; 0: QEMU's "
                                                     "default), got " +
                                                     std::to_string(value));
      }
    }
  }

  void plan(schema::MigrationRequest::Reader request, schema::MigrationPlan::Builder out) override {
    auto overrides = request.getOverrides();
    Settings s = withOverrides(own_, overrides);
    s.autoConverge = choose(overrides.getAutoConverge(), own_.autoConverge);
    s.allowPostCopy = choose(overrides.getAllowPostCopy(), own_.allowPostCopy);
    writePlan(s, request, out);
  }

  void onProgress(schema::MigrationProgress::Reader p,
                  schema::MigrationDecision::Builder out) override {
    Situation s(p, capMs_, stallMs_);
    auto plan = p.getPlan();
    auto decide = [&](Action action, std::string reason, uint64_t newMaxDowntimeMs = 0) {
      out.setAction(action);
      out.setReason(reason);
      out.setNewMaxDowntimeMs(newMaxDowntimeMs);
    };

    // A job in post-copy cannot be aborted (the guest's state is split
    // between the hosts): only the target pulling the rest ends it.
    if (p.getPostCopyActive()) {
      return decide(Action::CONTINUE, s.step(s.postCopyStep) +
                                          "post-copy running: the target pulls the remaining " +
                                          bytesText(p.getDataRemainingBytes()));
    }

    const uint64_t completion = plan.getCompletionTimeoutSeconds();
    if (completion > 0 && p.getElapsedMs() > msOf(completion)) {
      std::string timeout = "completion timeout: " + secondsText(p.getElapsedMs()) +
                            " elapsed, limit " + std::to_string(completion) + " s";
      if (s.copyingDisks) {
        return decide(Action::ABORT, timeout + " while still copying disks (" +
                                         bytesText(p.getDiskRemainingBytes()) +
                                         " of disks remaining): " + figures(p));
      }
      if (plan.getAllowPostCopy()) {
        return decide(Action::SWITCH_TO_POST_COPY, s.step(s.postCopyStep) + timeout +
                                                       ": switching to post-copy: " + s.symptoms() +
                                                       s.tried());
      }
      return decide(Action::ABORT,
                    timeout + ", post-copy not allowed: " + s.symptoms() + s.tried());
    }

    // Until the disks are copied QEMU sends no memory: nothing below helps.
    if (s.copyingDisks) {
      return decide(Action::CONTINUE, "copying disks: " + bytesText(p.getDiskRemainingBytes()) +
                                          " of disks remaining");
    }
    if (!s.stalled && !s.outpaced) return decide(Action::CONTINUE, "");  // converging

    const uint64_t since = p.getMsSinceProgress();
    // Step 1: raise the max downtime, one raise per stall period.
    if (s.raisesDone < s.raises) {
      uint64_t gate = mulSat(stallMs_, s.raisesDone);
      if (since >= gate) {
        uint64_t next = nextDowntime(s.downtime, s.cap);
        return decide(Action::RAISE_MAX_DOWNTIME,
                      s.step(s.downtimeStep) + "raising max downtime " +
                          std::to_string(s.downtime) + " -> " + std::to_string(next) +
                          " ms: " + s.symptoms(),
                      next);
      }
      return decide(Action::CONTINUE, s.step(s.downtimeStep) + "max downtime " +
                                          std::to_string(s.downtime) + " ms; next raise after " +
                                          secondsText(gate) + " without a new low (" +
                                          secondsText(since) + " so far): " + s.symptoms());
    }

    // Step 2: the max downtime is at its cap; QEMU's throttle gets its time.
    const uint64_t capped = mulSat(stallMs_, s.raises);  // when the next raise would have come
    if (plan.getAutoConverge()) {
      uint64_t end = addSat(capped, autoConvergeMs_);
      if (since < end && p.getAutoConvergeThrottle() < kMaxThrottle) {
        return decide(Action::CONTINUE, s.step(s.autoConvergeStep) + "waiting for auto-converge (" +
                                            s.throttleText() + ") until " + secondsText(end) +
                                            " without a new low (" + secondsText(since) +
                                            " so far), max downtime " + std::to_string(s.downtime) +
                                            " ms: " + s.symptoms());
      }
    }

    // Step 3: post-copy.
    if (plan.getAllowPostCopy()) {
      if (since >= capped || plan.getAutoConverge()) {
        return decide(
            Action::SWITCH_TO_POST_COPY,
            s.step(s.postCopyStep) + "switching to post-copy: " + s.symptoms() + s.tried());
      }
      return decide(Action::CONTINUE, s.step(s.postCopyStep) + "max downtime " +
                                          std::to_string(s.downtime) + " ms; post-copy after " +
                                          secondsText(capped) + " without a new low (" +
                                          secondsText(since) + " so far): " + s.symptoms());
    }

    // Every step spent, and no post-copy: only the guest can end it now.
    const uint64_t progressTimeout = plan.getProgressTimeoutSeconds();
    if (progressTimeout > 0 && since > msOf(progressTimeout)) {
      return decide(
          Action::ABORT,
          "no progress for " + secondsText(since) + " (limit " + std::to_string(progressTimeout) +
              " s) with every step spent, post-copy not allowed: " + s.symptoms() + s.tried());
    }
    std::string ends = progressTimeout > 0
                           ? "abort after " + std::to_string(progressTimeout) +
                                 " s without a new low, or at the completion timeout"
                           : "abort at the completion timeout";
    return decide(Action::CONTINUE,
                  "every step spent, post-copy not allowed: waiting for the guest (" + ends +
                      "): " + s.symptoms() + s.tried());
  }

 private:
  // What one progress message says, in the terms of the decision table.
  struct Situation {
    schema::MigrationProgress::Reader p;
    uint64_t start;       // the plan's max downtime
    uint64_t cap;         // where raising stops (the plan's, when it starts above the config's)
    uint64_t downtime;    // in force now
    unsigned raises;      // from start to cap
    unsigned raisesDone;  // from start to now
    bool stalled, outpaced, copyingDisks;
    unsigned steps = 0, downtimeStep = 0, autoConvergeStep = 0, postCopyStep = 0;

    Situation(schema::MigrationProgress::Reader progress, uint64_t capMs, uint64_t stallMs)
        : p(progress) {
      auto plan = p.getPlan();
      start = plan.getMaxDowntimeMs() != 0 ? plan.getMaxDowntimeMs() : kQemuDefaultDowntimeMs;
      cap = capMs > start ? capMs : start;
      downtime = p.getMaxDowntimeMs() > start ? p.getMaxDowntimeMs() : start;
      raises = raisesBetween(start, cap, cap);
      raisesDone = raisesBetween(start, downtime, cap);
      stalled = p.getMsSinceProgress() >= stallMs;
      uint64_t link = linkRate(p);
      outpaced = link != 0 && p.getDirtyRateBytesPerSecond() > link;
      copyingDisks = p.getDiskRemainingBytes() > 0 && p.getIteration() == 0;
      if (raises > 0) downtimeStep = ++steps;
      if (plan.getAutoConverge()) autoConvergeStep = ++steps;
      if (plan.getAllowPostCopy()) postCopyStep = ++steps;
    }

    // "step 2/3: " (nothing for a step the plan does not have).
    std::string step(unsigned k) const {
      return k == 0 ? "" : "step " + std::to_string(k) + "/" + std::to_string(steps) + ": ";
    }

    // "48 MiB remaining, no new low for 6 s, dirty 60 MiB/s > link 20 MiB/s"
    std::string symptoms() const {
      std::string out = bytesText(p.getDataRemainingBytes()) + " remaining";
      if (stalled) out += ", no new low for " + secondsText(p.getMsSinceProgress());
      uint64_t link = linkRate(p), dirty = p.getDirtyRateBytesPerSecond();
      if (outpaced) {
        out += ", dirty " + rateText(dirty) + " > link " + rateText(link);
      } else if (dirty != 0 && link != 0) {
        out += ", dirty " + rateText(dirty) + " <= link " + rateText(link);
      }
      return out;
    }

    std::string throttleText() const {
      uint32_t t = p.getAutoConvergeThrottle();
      return t == 0 ? "vCPU throttle not engaged yet" : "vCPU throttle " + std::to_string(t) + "%";
    }

    // "; tried max downtime 2000 ms, vCPU throttle 99%"
    std::string tried() const {
      std::string out = "; tried max downtime " + std::to_string(downtime) + " ms";
      if (p.getPlan().getAutoConverge()) out += ", " + throttleText();
      return out;
    }
  };

  Settings own_;
  uint64_t capMs_ = 2000, stallMs_ = 5000, autoConvergeMs_ = 10000;
};

}  // namespace

VMHOST_PLUGIN(Adaptive, "adaptive", "0.1.0",
              "Live migration that converges: raises the max downtime, then auto-converge, then "
              "post-copy",
              VMHOST_CAP_THREAD_SAFE | VMHOST_CAP_MIGRATION_POSTCOPY)
