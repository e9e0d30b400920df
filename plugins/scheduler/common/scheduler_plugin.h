// The plugin class behind scheduler `default` and `binpack`: decodes and
// checks the config and each request, keeps the node cache, and turns the
// engine's answer into a ScheduleResult. The two plugins differ only in the
// Strategy they pass in.
#pragma once

#include "node_cache.h"

#include <vmhost/plugin.hpp>

namespace vmhost::scheduler {

class CachingScheduler : public sdk::SchedulerPlugin {
 public:
  // Throws sdk::Error(INVALID_ARGUMENT, "config...: ...") on a bad config.
  CachingScheduler(sdk::PluginContext& ctx, Strategy strategy);

  // Throws sdk::Error(INVALID_ARGUMENT) on a malformed request, before
  // changing anything: a rejected request leaves the node cache as it was.
  void schedule(schema::ScheduleRequest::Reader request,
                schema::ScheduleResult::Builder result) override;

 private:
  Strategy strategy_;
  NodeCache cache_;
  Selector selector_;  // reused between calls
};

}  // namespace vmhost::scheduler
