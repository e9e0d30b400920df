// PROVISIONAL (lead): the API agreed with the libvirt-migration helper; the
// helper's header replaces this one at merge.
#pragma once

#include "common/result.h"
#include "node/libvirt.h"

#include <cstdint>
#include <string>
#include <vector>

namespace vmhost::node {

struct MigrateParams {
  std::string destUri;
  std::string migrateUri;
  std::string destXml;
  std::vector<std::string> copyDisks;
  uint64_t bandwidthMiBps = 0;
  uint32_t parallelConnections = 0;
  bool autoConverge = false;
  uint32_t autoConvergeInitial = 0, autoConvergeIncrement = 0;
  bool allowPostCopy = false;
  bool tls = false;
  uint64_t maxDowntimeMs = 0;
};

Status migrate(Connection& conn, const std::string& domainName, const MigrateParams& p);

struct JobStats {
  bool active = false;
  uint64_t elapsedMs = 0, dataTotal = 0, dataProcessed = 0, dataRemaining = 0;
  uint64_t memTotal = 0, memProcessed = 0, memRemaining = 0;
  uint64_t diskTotal = 0, diskProcessed = 0, diskRemaining = 0;
  uint64_t dirtyRateBytesPerSecond = 0, memIteration = 0, memBps = 0, downtimeMs = 0;
  uint32_t autoConvergeThrottle = 0;
  bool postCopy = false;
};

Result<JobStats> jobStats(Connection& conn, const std::string& domainName, bool completed = false);
Status abortJob(Connection& conn, const std::string& domainName);
Status setMaxDowntime(Connection& conn, const std::string& domainName, uint64_t ms);
Status startPostCopy(Connection& conn, const std::string& domainName);
Status setBandwidth(Connection& conn, const std::string& domainName, uint64_t MiBps);

}  // namespace vmhost::node
