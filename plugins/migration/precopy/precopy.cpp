// migration plugin `precopy` (the default): classic pre-copy live migration
// with KubeVirt's defaults. plan(): unlimited bandwidth, max downtime 300 ms,
// completion timeout 150 s per GiB of the data to move (memory, plus the disks
// when they are copied), progress timeout 150 s, no auto-converge, one
// connection; the request's overrides replace each figure (0 / unset: the
// config's). Never post-copy: a plan from precopy never allows it, whatever the
// overrides ask, and onProgress never switches.
//
// onProgress, first row that holds:
//   post-copy active (not precopy's doing)      -> continue (it cannot be aborted)
//   elapsed > completion timeout                -> abort
//   no new low of the remaining data for longer
//     than the progress timeout                 -> abort
//   otherwise                                   -> continue (empty reason)
// Stateless: every figure comes in the progress message (its plan included),
// so one instance serves any number of migrations on any threads.
#include "config.capnp.h"
#include "migration_common.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <string>

namespace {

using namespace vmhost::migration;
namespace schema = vmhost::schema;
using Action = schema::MigrationDecision::Action;

class Precopy final : public vmhost::sdk::MigrationPlugin {
 public:
  explicit Precopy(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto c = vmhost::sdk::decodeConfig<PrecopyConfig>(ctx, message);
    own_.bandwidthMiBps = c.getBandwidthMiBps();
    own_.maxDowntimeMs = c.getMaxDowntimeMs();
    own_.completionTimeoutPerGiBSeconds = c.getCompletionTimeoutPerGiBSeconds();
    own_.progressTimeoutSeconds = c.getProgressTimeoutSeconds();
    own_.autoConverge = c.getAutoConverge();
    own_.parallelConnections = c.getParallelConnections();
    own_.allowPostCopy = false;
    checkSettings(own_, "config.");
  }

  void plan(schema::MigrationRequest::Reader request, schema::MigrationPlan::Builder out) override {
    auto overrides = request.getOverrides();
    Settings s = withOverrides(own_, overrides);
    s.autoConverge = choose(overrides.getAutoConverge(), own_.autoConverge);
    s.allowPostCopy = false;  // overrides.allowPostCopy = yes is not honoured: never post-copy
    writePlan(s, request, out);
  }

  void onProgress(schema::MigrationProgress::Reader p,
                  schema::MigrationDecision::Builder out) override {
    auto plan = p.getPlan();
    uint64_t completion = plan.getCompletionTimeoutSeconds();
    uint64_t stall = plan.getProgressTimeoutSeconds();
    if (p.getPostCopyActive()) {
      out.setAction(Action::CONTINUE);
      out.setReason("post-copy is running (precopy never starts it) and cannot be aborted: " +
                    bytesText(p.getDataRemainingBytes()) + " remaining");
      return;
    }
    if (completion > 0 && p.getElapsedMs() > msOf(completion)) {
      out.setAction(Action::ABORT);
      out.setReason("completion timeout: " + secondsText(p.getElapsedMs()) + " elapsed, limit " +
                    std::to_string(completion) + " s: " + figures(p));
      return;
    }
    if (stall > 0 && p.getMsSinceProgress() > msOf(stall)) {
      out.setAction(Action::ABORT);
      out.setReason("no progress for " + secondsText(p.getMsSinceProgress()) + " (limit " +
                    std::to_string(stall) + " s): " + figures(p));
      return;
    }
    out.setAction(Action::CONTINUE);
  }

 private:
  Settings own_;
};

}  // namespace

VMHOST_PLUGIN(Precopy, "precopy", "0.2.0",
              "Pre-copy live migration with KubeVirt's defaults; never post-copy",
              VMHOST_CAP_THREAD_SAFE)
