// migration plugin `precopy`: classic pre-copy live migration. Plans the
// libvirt parameters and aborts a migration that runs past its completion
// timeout (scaled by the data to move, as KubeVirt does) or stops making
// progress. Never switches to post-copy.
#include "config.capnp.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <string>

namespace {

using vmhost::sdk::Error;
namespace schema = vmhost::schema;

constexpr uint64_t kGiB = 1ull << 30;

class Precopy final : public vmhost::sdk::MigrationPlugin {
 public:
  explicit Precopy(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto c = vmhost::sdk::decodeConfig<PrecopyConfig>(ctx, message);
    bandwidth_ = c.getBandwidthMiBps();
    downtime_ = c.getMaxDowntimeMs();
    perGiB_ = c.getCompletionTimeoutPerGiBSeconds();
    progressTimeout_ = c.getProgressTimeoutSeconds();
    autoConverge_ = c.getAutoConverge();
    parallel_ = c.getParallelConnections();
    if (downtime_ == 0)
      throw Error(VMHOST_ERR_INVALID_ARGUMENT, "config.maxDowntimeMs: must be > 0");
    if (parallel_ == 0 || parallel_ > 64) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT, "config.parallelConnections: must be 1..64");
    }
  }

  void plan(schema::MigrationRequest::Reader request, schema::MigrationPlan::Builder out) override {
    uint64_t bytes =
        request.getMemoryBytes() + (request.getSharedStorage() ? 0 : request.getDiskBytesToCopy());
    uint64_t gib = bytes == 0 ? 1 : (bytes + kGiB - 1) / kGiB;
    out.setBandwidthMiBps(bandwidth_);
    out.setMaxDowntimeMs(downtime_);
    out.setAutoConverge(autoConverge_);
    out.setAllowPostCopy(false);
    out.setCompletionTimeoutSeconds(perGiB_ * gib);
    out.setProgressTimeoutSeconds(progressTimeout_);
    out.setParallelConnections(parallel_);
    out.setCopyStorage(!request.getSharedStorage() && request.getDiskBytesToCopy() > 0);
  }

  void onProgress(schema::MigrationProgress::Reader p,
                  schema::MigrationDecision::Builder out) override {
    auto plan = p.getPlan();
    uint64_t completion = plan.getCompletionTimeoutSeconds();
    uint64_t stall = plan.getProgressTimeoutSeconds();
    if (completion > 0 && p.getElapsedMs() > completion * 1000) {
      out.setAction(schema::MigrationDecision::Action::ABORT);
      out.setReason("completion timeout: " + std::to_string(p.getElapsedMs() / 1000) +
                    " s elapsed, limit " + std::to_string(completion) + " s");
      return;
    }
    if (stall > 0 && p.getMsSinceProgress() > stall * 1000) {
      out.setAction(schema::MigrationDecision::Action::ABORT);
      out.setReason("no progress for " + std::to_string(p.getMsSinceProgress() / 1000) +
                    " s (limit " + std::to_string(stall) + " s), " +
                    std::to_string(p.getDataRemainingBytes()) + " bytes remaining");
      return;
    }
    out.setAction(schema::MigrationDecision::Action::CONTINUE);
  }

 private:
  uint64_t bandwidth_ = 0, downtime_ = 0, perGiB_ = 0, progressTimeout_ = 0;
  bool autoConverge_ = true;
  uint32_t parallel_ = 1;
};

}  // namespace

VMHOST_PLUGIN(Precopy, "precopy", "0.1.0", "Pre-copy live migration with KubeVirt-style timeouts",
              VMHOST_CAP_THREAD_SAFE)
