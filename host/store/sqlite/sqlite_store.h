// The embedded store backend: one SQLite database, <data dir>/store.db.
//
// Durability: WAL with synchronous=FULL, one transaction per write (object,
// history event and revision together), so once create()/update()/remove()
// returns, a crash or kill -9 cannot lose the write; a write that fails
// changes nothing.
//
// One process owns the store: the database is opened in exclusive locking
// mode, because the current revision is kept in memory between writes.
// A second open of the same directory fails with UNAVAILABLE ("in use").
//
// Concurrency: one connection behind a mutex. Writes are serialized anyway
// (and each costs an fsync); reads are short indexed lookups, so a pool of
// read connections would buy little (see tests/bench/store).
//
// History: every write is kept in an events table for watches; automatic
// compaction keeps the last `historyLimit` revisions, checked every
// `compactEvery` writes so its cost is amortized.
#pragma once

#include "store/store.h"

#include <chrono>
#include <memory>
#include <string>

namespace vmhost::store {

struct SqliteStoreOptions {
  // Larger values are refused with RESOURCE_EXHAUSTED.
  size_t maxValueBytes = kDefaultMaxValueBytes;
  // Automatic compaction keeps at least this many revisions of history
  // (0 = never compact automatically; compact() still works).
  int64_t historyLimit = 100000;
  // Check for automatic compaction every this many writes.
  int64_t compactEvery = 1000;
  // A watcher further behind than this many events is terminated.
  size_t watchQueueLimit = kDefaultWatchQueueLimit;
  // History events read per refill while a watch replays history.
  size_t watchReplayBatch = 1000;
  // true: synchronous=FULL, every commit is fsynced before the write
  // returns (durable across power loss). false: synchronous=NORMAL, durable
  // across a process crash but the last commits may be lost on power loss —
  // only for tests and benchmarks that populate large stores quickly.
  bool syncEveryCommit = true;
  // Resources whose writes need not be fsynced one by one (Events: best
  // effort by nature, and one per VM start would otherwise double the
  // commits a VM costs). Their commits reach the WAL without an fsync
  // (SQLite's synchronous=NORMAL): durable across a process crash, and
  // made durable by the next ordinary commit; on a power loss the last few
  // may be lost. At most kMaxUnsyncedWrites go unsynced in a row, and a
  // store reopened after such writes were left unsynced skips that many
  // revisions, so no revision a client saw is ever handed out twice.
  std::vector<std::string> bestEffortResources;
  // How long open() waits for another process holding the database.
  std::chrono::milliseconds busyTimeout{2000};
};

class SqliteStore final : public Store {
 public:
  // The version of the database layout this build writes and reads.
  static constexpr int64_t kSchemaVersion = 1;
  // Best-effort writes (SqliteStoreOptions::bestEffortResources) in a row
  // before one is fsynced anyway.
  static constexpr int64_t kMaxUnsyncedWrites = 256;

  // Opens <dataDir>/store.db, creating the directory and the database if
  // missing. Errors name the path: UNAVAILABLE/PERMISSION_DENIED when the
  // directory or file cannot be created or is in use, FAILED_PRECONDITION
  // for a newer schema version or a database that is not a vmhost store,
  // DATA_LOSS for a corrupt file.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& dataDir,
                                                   SqliteStoreOptions options = {});

  // Watches still open receive a kError (UNAVAILABLE, "store closed").
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  Result<StoredObject> get(const Key& key) override;
  Result<ListResult> list(std::string_view resource, std::string_view ns,
                          const ListOptions& options = {}) override;
  Result<StoredObject> create(const Key& key, std::string_view value) override;
  Result<StoredObject> update(const Key& key, std::string_view value,
                              int64_t expectedModRevision) override;
  Result<StoredObject> remove(const Key& key, int64_t expectedModRevision) override;
  Result<std::unique_ptr<Watch>> watch(std::string_view resource, std::string_view ns,
                                       int64_t fromRevision) override;
  Result<int64_t> currentRevision() override;
  Status compact(int64_t revision) override;

  // The newest compacted revision (0 if none): watches must start at or after it.
  Result<int64_t> compactedRevision();

  // SQLite's PRAGMA integrity_check: "ok", or the problems it found.
  Result<std::string> integrityCheck();

  // <dataDir>/store.db
  const std::string& path() const;

 private:
  struct Impl;
  explicit SqliteStore(std::shared_ptr<Impl> impl);
  // Shared with the refill hooks of watches replaying history (which hold it
  // weakly), so a Watch may outlive the store safely.
  std::shared_ptr<Impl> impl_;
};

}  // namespace vmhost::store
