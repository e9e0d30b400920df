#include "store/sqlite/sqlite_store.h"

#include <sqlite3.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace vmhost::store {

namespace {

namespace fs = std::filesystem;

// The event types as stored in events.type.
constexpr int kEventAdded = 0;
constexpr int kEventModified = 1;
constexpr int kEventDeleted = 2;

WatchEventType eventType(int stored) {
  switch (stored) {
    case kEventAdded:
      return WatchEventType::kAdded;
    case kEventModified:
      return WatchEventType::kModified;
    default:
      return WatchEventType::kDeleted;
  }
}

// The layout of schema version 1. Keys are TEXT; values BLOB (opaque), last
// in each row so reading a row's revisions never walks a large value's
// overflow pages. events.rev is the rowid, so history reads in revision
// order are a range scan; events_by_resource serves watches of one resource.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE schema_version(version INTEGER NOT NULL);
INSERT INTO schema_version(version) VALUES (1);
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES ('revision', 0), ('compacted', 0);
CREATE TABLE objects(
  resource TEXT NOT NULL,
  namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  create_rev INTEGER NOT NULL,
  mod_rev INTEGER NOT NULL,
  value BLOB NOT NULL,
  PRIMARY KEY (resource, namespace, name));
CREATE TABLE events(
  rev INTEGER PRIMARY KEY,
  type INTEGER NOT NULL,
  resource TEXT NOT NULL,
  namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  create_rev INTEGER NOT NULL,
  value BLOB NOT NULL);
CREATE INDEX events_by_resource ON events(resource, rev);
)sql";

Error sqlError(sqlite3* db, int rc, const std::string& what) {
  Error error;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      error.code = VMHOST_ERR_UNAVAILABLE;
      error.retryable = true;
      break;
    case SQLITE_FULL:
      error.code = VMHOST_ERR_UNAVAILABLE;
      error.retryable = true;
      break;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL:
      error.code = VMHOST_ERR_UNAVAILABLE;
      break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      error.code = VMHOST_ERR_DATA_LOSS;
      break;
    case SQLITE_TOOBIG:
      error.code = VMHOST_ERR_RESOURCE_EXHAUSTED;
      break;
    default:
      error.code = VMHOST_ERR_INTERNAL;
  }
  error.message = what + ": " + sqlite3_errstr(rc);
  // The connection's message often says more ("no such table: x"), but is
  // only about this call when it is the same error.
  if (db != nullptr && sqlite3_extended_errcode(db) == rc) {
    const char* detail = sqlite3_errmsg(db);
    if (detail != nullptr && std::strcmp(detail, sqlite3_errstr(rc)) != 0) {
      error.message += " (" + std::string(detail) + ")";
    }
  }
  return error;
}

// An empty string_view may have a null data(), which SQLite would bind as
// NULL rather than as an empty string.
const char* bytes(std::string_view s) { return s.data() != nullptr ? s.data() : ""; }

std::string columnText(sqlite3_stmt* s, int column) {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(s, column));
  return text != nullptr ? std::string(text, sqlite3_column_bytes(s, column)) : std::string();
}

std::string columnBlob(sqlite3_stmt* s, int column) {
  const void* blob = sqlite3_column_blob(s, column);
  int size = sqlite3_column_bytes(s, column);
  return blob != nullptr ? std::string(static_cast<const char*>(blob), size) : std::string();
}

// Resets a cached statement when a call is done with it, whatever happened.
class StmtUse {
 public:
  explicit StmtUse(sqlite3_stmt* s) : s_(s) {}
  ~StmtUse() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  StmtUse(const StmtUse&) = delete;
  StmtUse& operator=(const StmtUse&) = delete;
  sqlite3_stmt* get() const { return s_; }

  void text(int index, std::string_view value) {
    sqlite3_bind_text(s_, index, bytes(value), static_cast<int>(value.size()), SQLITE_STATIC);
  }
  void blob(int index, std::string_view value) {
    sqlite3_bind_blob(s_, index, bytes(value), static_cast<int>(value.size()), SQLITE_STATIC);
  }
  void integer(int index, int64_t value) { sqlite3_bind_int64(s_, index, value); }

 private:
  sqlite3_stmt* s_;
};

// fsync a directory so that an entry just created in it survives a crash.
void syncDirectory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

Error ioError(const std::error_code& ec, const std::string& what) {
  Error error;
  error.code = (ec == std::errc::permission_denied || ec == std::errc::operation_not_permitted)
                   ? VMHOST_ERR_PERMISSION_DENIED
                   : VMHOST_ERR_UNAVAILABLE;
  error.message = what + ": " + ec.message();
  return error;
}

}  // namespace

struct SqliteStore::Impl : std::enable_shared_from_this<SqliteStore::Impl> {
  enum class Op { kCreate, kUpdate, kDelete };

  // Every statement the store runs, prepared once.
  struct Statements {
    sqlite3_stmt* begin = nullptr;
    sqlite3_stmt* commit = nullptr;
    sqlite3_stmt* rollback = nullptr;
    sqlite3_stmt* get = nullptr;
    sqlite3_stmt* insertObject = nullptr;
    sqlite3_stmt* updateObject = nullptr;
    sqlite3_stmt* deleteObject = nullptr;
    sqlite3_stmt* insertEvent = nullptr;
    sqlite3_stmt* setMeta = nullptr;
    sqlite3_stmt* listAll = nullptr;
    sqlite3_stmt* listNamespace = nullptr;
    sqlite3_stmt* history = nullptr;
    sqlite3_stmt* historyNamespace = nullptr;
    sqlite3_stmt* compactEvents = nullptr;
  };

  struct LiveWatch {
    std::string resource;
    std::string ns;  // "" = all namespaces
    std::shared_ptr<WatchChannel> channel;
  };

  SqliteStoreOptions options;
  std::string path;

  std::mutex mu;  // guards everything below, and the connection
  sqlite3* db = nullptr;
  Statements st;
  int64_t revision = 0;   // the last committed write
  int64_t compacted = 0;  // history <= this is gone
  int64_t writesSinceCompactionCheck = 0;
  // Set when a commit failed with an I/O error: whether that transaction is
  // durable is unknown (it may reappear from the WAL on reopen), so the
  // in-memory revision can no longer be trusted. Writes fail until reopen.
  std::optional<Error> failed;
  bool closed = false;
  std::vector<LiveWatch> live;
  // Best-effort durability (SqliteStoreOptions::bestEffortResources).
  std::set<std::string, std::less<>> bestEffort;
  bool syncFull = true;         // the connection's synchronous setting now
  int64_t unsyncedInARow = 0;   // best-effort commits since the last fsynced one
  bool unsyncedMarked = false;  // meta 'unsynced' = 1 is durable

  ~Impl() { closeDatabase(); }

  void closeDatabase() {
    for (sqlite3_stmt* s :
         {st.begin, st.commit, st.rollback, st.get, st.insertObject, st.updateObject,
          st.deleteObject, st.insertEvent, st.setMeta, st.listAll, st.listNamespace, st.history,
          st.historyNamespace, st.compactEvents}) {
      sqlite3_finalize(s);
    }
    st = Statements{};
    if (db != nullptr) sqlite3_close_v2(db);
    db = nullptr;
  }

  Error error(int rc, const std::string& what) const {
    return sqlError(db, rc, path + ": " + what);
  }

  Status exec(const char* sql, const char* what) {
    char* message = nullptr;
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, &message);
    sqlite3_free(message);
    if (rc != SQLITE_OK) return error(rc, what);
    return Ok{};
  }

  Status prepare(sqlite3_stmt** out, const char* sql) {
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, nullptr);
    if (rc != SQLITE_OK) return error(rc, std::string("prepare \"") + sql + "\"");
    return Ok{};
  }

  // Runs a statement that returns no rows. The message names `key` if given
  // (built only on failure: this is every write's path).
  Status run(StmtUse& use, const char* what, const Key* key = nullptr) {
    int rc = sqlite3_step(use.get());
    if (rc != SQLITE_DONE) return error(rc, key ? what + (" " + key->describe()) : what);
    return Ok{};
  }
  Status run(sqlite3_stmt* s, const char* what) {
    StmtUse use(s);
    return run(use, what);
  }

  Status prepareAll() {
    struct {
      sqlite3_stmt** out;
      const char* sql;
    } const all[] = {
        {&st.begin, "BEGIN IMMEDIATE"},
        {&st.commit, "COMMIT"},
        {&st.rollback, "ROLLBACK"},
        {&st.get,
         "SELECT value, create_rev, mod_rev FROM objects"
         " WHERE resource = ?1 AND namespace = ?2 AND name = ?3"},
        {&st.insertObject,
         "INSERT INTO objects(resource, namespace, name, value, create_rev, mod_rev)"
         " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
        {&st.updateObject,
         "UPDATE objects SET value = ?4, mod_rev = ?5"
         " WHERE resource = ?1 AND namespace = ?2 AND name = ?3"},
        {&st.deleteObject,
         "DELETE FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3"},
        {&st.insertEvent,
         "INSERT INTO events(rev, type, resource, namespace, name, value, create_rev)"
         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
        {&st.setMeta, "UPDATE meta SET value = ?2 WHERE key = ?1"},
        // Names are never empty, so ('', '') as the cursor starts at the top.
        {&st.listAll,
         "SELECT namespace, name, value, create_rev, mod_rev FROM objects"
         " WHERE resource = ?1 AND (namespace, name) > (?2, ?3)"
         " ORDER BY namespace, name LIMIT ?4"},
        {&st.listNamespace,
         "SELECT namespace, name, value, create_rev, mod_rev FROM objects"
         " WHERE resource = ?1 AND namespace = ?2 AND name > ?3"
         " ORDER BY name LIMIT ?4"},
        {&st.history,
         "SELECT rev, type, namespace, name, value, create_rev FROM events"
         " WHERE resource = ?1 AND rev > ?2 ORDER BY rev LIMIT ?3"},
        {&st.historyNamespace,
         "SELECT rev, type, namespace, name, value, create_rev FROM events"
         " WHERE resource = ?1 AND rev > ?2 AND namespace = ?4 ORDER BY rev LIMIT ?3"},
        {&st.compactEvents, "DELETE FROM events WHERE rev <= ?1"},
    };
    for (const auto& s : all) {
      if (auto r = prepare(s.out, s.sql); !r) return r;
    }
    return Ok{};
  }

  // Rolls the open transaction back unless commit() succeeded.
  class Transaction {
   public:
    explicit Transaction(Impl& impl) : impl_(impl) {}
    ~Transaction() {
      if (!done_) {
        StmtUse use(impl_.st.rollback);
        sqlite3_step(use.get());  // fails harmlessly if SQLite already rolled back
      }
    }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    Status commit() {
      StmtUse use(impl_.st.commit);
      int rc = sqlite3_step(use.get());
      if (rc == SQLITE_DONE) {
        done_ = true;
        return Ok{};
      }
      Error e = impl_.error(rc, "commit");
      int primary = rc & 0xff;
      if (primary == SQLITE_IOERR || primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) {
        impl_.failed = Error{e.code,
                             "store failed after an I/O error and refuses writes until "
                             "it is reopened: " +
                                 e.message};
      }
      return e;
    }

   private:
    Impl& impl_;
    bool done_ = false;
  };

  Status begin() {
    if (auto r = run(st.begin, "begin transaction"); !r) return r;
    return Ok{};
  }

  // Sets the connection's synchronous mode for the next commit. The first
  // best-effort commit of a process first records, durably, that unsynced
  // writes may follow (meta 'unsynced'), so that a reopen after a power
  // loss knows to skip the revisions they may have taken.
  Status chooseSync(bool relaxed) {
    if (!options.syncEveryCommit) return Ok{};
    if (relaxed && !unsyncedMarked) {
      if (!syncFull) {
        if (auto r = exec("PRAGMA synchronous = FULL", "set synchronous"); !r) return r;
        syncFull = true;
      }
      if (auto r = exec("INSERT OR REPLACE INTO meta(key, value) VALUES ('unsynced', 1)",
                        "mark unsynced writes");
          !r) {
        return r;
      }
      unsyncedMarked = true;
    }
    if (relaxed == !syncFull) return Ok{};
    if (auto r = exec(relaxed ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL",
                      "set synchronous");
        !r) {
      return r;
    }
    syncFull = !relaxed;
    return Ok{};
  }

  // On a clean close: everything is made durable and the mark cleared.
  void clearUnsyncedMark() {
    if (!unsyncedMarked || db == nullptr || failed) return;
    if (!syncFull && exec("PRAGMA synchronous = FULL", "set synchronous")) syncFull = true;
    if (exec("UPDATE meta SET value = 0 WHERE key = 'unsynced'", "clear unsynced mark")) {
      unsyncedMarked = false;
    }
  }

  Status setMeta(const char* key, int64_t value) {
    StmtUse use(st.setMeta);
    use.text(1, key);
    use.integer(2, value);
    return run(use, "update meta");
  }

  // The object at `key`, or nullopt. Without `withValue` the value is left
  // empty (an update only needs the revisions, not up to 1.5 MiB of bytes).
  Result<std::optional<StoredObject>> read(const Key& key, bool withValue = true) {
    StmtUse use(st.get);
    use.text(1, key.resource);
    use.text(2, key.ns);
    use.text(3, key.name);
    int rc = sqlite3_step(use.get());
    if (rc == SQLITE_DONE) return std::optional<StoredObject>();
    if (rc != SQLITE_ROW) return error(rc, "read " + key.describe());
    StoredObject obj;
    obj.key = key;
    if (withValue) obj.value = columnBlob(use.get(), 0);
    obj.createRevision = sqlite3_column_int64(use.get(), 1);
    obj.modRevision = sqlite3_column_int64(use.get(), 2);
    return std::optional<StoredObject>(std::move(obj));
  }

  Status checkWritable() {
    if (closed) return Error{VMHOST_ERR_UNAVAILABLE, path + ": store closed", false};
    if (failed) return *failed;
    return Ok{};
  }

  Result<StoredObject> write(Op op, const Key& key, std::string_view value, int64_t expected) {
    if (auto v = validateKey(key); !v) return v.error();
    if (op != Op::kDelete && value.size() > options.maxValueBytes) {
      return Error{VMHOST_ERR_RESOURCE_EXHAUSTED,
                   "value of " + key.describe() + " is " + std::to_string(value.size()) +
                       " bytes, over the limit of " + std::to_string(options.maxValueBytes) +
                       " bytes"};
    }
    if (expected < 0) {
      return Error{VMHOST_ERR_INVALID_ARGUMENT,
                   "expected revision " + std::to_string(expected) + " is negative"};
    }

    std::vector<std::shared_ptr<WatchChannel>> toNotify;
    Result<StoredObject> result = [&]() -> Result<StoredObject> {
      std::lock_guard<std::mutex> lock(mu);
      if (auto w = checkWritable(); !w) return w.error();
      bool relaxed = options.syncEveryCommit && unsyncedInARow < SqliteStore::kMaxUnsyncedWrites &&
                     bestEffort.count(key.resource) > 0;
      if (auto r = chooseSync(relaxed); !r) return r.error();
      if (auto r = begin(); !r) return r.error();
      Transaction txn(*this);

      auto existing = read(key, op == Op::kDelete);
      if (!existing) return existing.error();
      std::optional<StoredObject>& current = existing.value();
      if (op == Op::kCreate && current) {
        return Error{VMHOST_ERR_ALREADY_EXISTS, key.describe() + " already exists"};
      }
      if (op != Op::kCreate && !current) {
        return Error{VMHOST_ERR_NOT_FOUND, key.describe() + " not found"};
      }
      if (op != Op::kCreate && expected != 0 && current->modRevision != expected) {
        return Error{VMHOST_ERR_ABORTED,
                     key.describe() + " is at revision " + std::to_string(current->modRevision) +
                         ", not the expected " + std::to_string(expected),
                     true};
      }

      const int64_t rev = revision + 1;
      StoredObject obj;
      obj.key = key;
      obj.modRevision = rev;
      int type = kEventAdded;
      switch (op) {
        case Op::kCreate: {
          obj.value = std::string(value);
          obj.createRevision = rev;
          StmtUse use(st.insertObject);
          use.text(1, key.resource);
          use.text(2, key.ns);
          use.text(3, key.name);
          use.blob(4, value);
          use.integer(5, rev);
          use.integer(6, rev);
          if (auto r = run(use, "insert", &key); !r) return r.error();
          break;
        }
        case Op::kUpdate: {
          type = kEventModified;
          obj.value = std::string(value);
          obj.createRevision = current->createRevision;
          StmtUse use(st.updateObject);
          use.text(1, key.resource);
          use.text(2, key.ns);
          use.text(3, key.name);
          use.blob(4, value);
          use.integer(5, rev);
          if (auto r = run(use, "update", &key); !r) return r.error();
          break;
        }
        case Op::kDelete: {
          type = kEventDeleted;
          obj.value = std::move(current->value);
          obj.createRevision = current->createRevision;
          StmtUse use(st.deleteObject);
          use.text(1, key.resource);
          use.text(2, key.ns);
          use.text(3, key.name);
          if (auto r = run(use, "delete", &key); !r) return r.error();
          break;
        }
      }
      {
        StmtUse use(st.insertEvent);
        use.integer(1, rev);
        use.integer(2, type);
        use.text(3, key.resource);
        use.text(4, key.ns);
        use.text(5, key.name);
        use.blob(6, obj.value);
        use.integer(7, obj.createRevision);
        if (auto r = run(use, "record event"); !r) return r.error();
      }
      if (auto r = setMeta("revision", rev); !r) return r.error();
      if (auto r = txn.commit(); !r) return r.error();
      revision = rev;
      unsyncedInARow = relaxed ? unsyncedInARow + 1 : 0;

      if (!live.empty()) {
        WatchEvent event;
        event.type = eventType(type);
        event.object = std::make_shared<const StoredObject>(obj);
        dispatchLocked(event, toNotify);
      }
      maybeCompactLocked();
      return obj;
    }();
    // Outside the lock: a callback may call back into the store.
    for (auto& channel : toNotify) channel->notifyConsumer();
    return result;
  }

  // Hands a committed event to the live watches it matches, in commit order
  // (the caller holds `mu`, which serializes writes), and forgets watches
  // that were closed or ended.
  void dispatchLocked(const WatchEvent& event,
                      std::vector<std::shared_ptr<WatchChannel>>& toNotify) {
    const Key& key = event.object->key;
    for (size_t i = 0; i < live.size();) {
      LiveWatch& w = live[i];
      bool keep;
      if (w.resource == key.resource && (w.ns.empty() || w.ns == key.ns)) {
        auto delivery = w.channel->deliverLive(event);
        if (delivery.notify) toNotify.push_back(w.channel);
        keep = delivery.keep;
      } else {
        keep = !w.channel->closed();
      }
      if (keep) {
        ++i;
      } else {
        live[i] = std::move(live.back());
        live.pop_back();
      }
    }
  }

  void maybeCompactLocked() {
    if (options.historyLimit <= 0) return;
    if (++writesSinceCompactionCheck < options.compactEvery) return;
    writesSinceCompactionCheck = 0;
    if (revision - compacted > options.historyLimit) {
      // Housekeeping: a failure leaves more history than needed and is
      // retried at the next check; the write itself has committed.
      (void)compactLocked(revision - options.historyLimit);
    }
  }

  Status compactLocked(int64_t rev) {
    if (auto r = begin(); !r) return r;
    Transaction txn(*this);
    {
      StmtUse use(st.compactEvents);
      use.integer(1, rev);
      if (auto r = run(use, "compact history"); !r) return r;
    }
    if (auto r = setMeta("compacted", rev); !r) return r;
    if (auto r = txn.commit(); !r) return r;
    compacted = rev;
    return Ok{};
  }

  Error compactedError(int64_t rev) const {
    return Error{VMHOST_ERR_OUT_OF_RANGE,
                 "revision " + std::to_string(rev) +
                     " is compacted (oldest available: " + std::to_string(compacted) + ")"};
  }

  // Queues the next batch of history for a watch that is catching up, and
  // switches it to live once the batch reaches the head. Under `mu`, so no
  // write can commit between the history read and the switch: the live
  // stream starts exactly where the history ends.
  void refillLocked(const std::shared_ptr<WatchChannel>& channel, const std::string& resource,
                    const std::string& ns) {
    if (closed) {
      channel->fail(Error{VMHOST_ERR_UNAVAILABLE, path + ": store closed"});
      return;
    }
    if (channel->closed()) return;
    const int64_t after = channel->lastRevision();
    if (after < compacted) {
      // Compacted while this watch was still replaying.
      channel->fail(compactedError(after));
      return;
    }
    const size_t batch =
        std::max<size_t>(1, std::min(options.watchReplayBatch, channel->queueLimit()));
    StmtUse use(ns.empty() ? st.history : st.historyNamespace);
    use.text(1, resource);
    use.integer(2, after);
    use.integer(3, static_cast<int64_t>(batch));
    if (!ns.empty()) use.text(4, ns);
    std::vector<WatchEvent> events;
    int rc;
    while ((rc = sqlite3_step(use.get())) == SQLITE_ROW) {
      auto obj = std::make_shared<StoredObject>();
      obj->modRevision = sqlite3_column_int64(use.get(), 0);
      obj->key.resource = resource;
      obj->key.ns = columnText(use.get(), 2);
      obj->key.name = columnText(use.get(), 3);
      obj->value = columnBlob(use.get(), 4);
      obj->createRevision = sqlite3_column_int64(use.get(), 5);
      WatchEvent event;
      event.type = eventType(sqlite3_column_int(use.get(), 1));
      event.object = std::move(obj);
      events.push_back(std::move(event));
    }
    if (rc != SQLITE_DONE) {
      channel->fail(error(rc, "read watch history"));
      return;
    }
    const bool reachedHead = events.size() < batch;
    channel->appendHistory(std::move(events));
    if (reachedHead) {
      channel->goLive();
      live.push_back(LiveWatch{resource, ns, channel});
    }
  }

  void shutdown() {
    std::vector<std::shared_ptr<WatchChannel>> toNotify;
    {
      std::lock_guard<std::mutex> lock(mu);
      closed = true;
      for (auto& w : live) {
        if (w.channel->fail(Error{VMHOST_ERR_UNAVAILABLE, path + ": store closed"})) {
          toNotify.push_back(w.channel);
        }
      }
      live.clear();
      clearUnsyncedMark();
      closeDatabase();
    }
    for (auto& channel : toNotify) channel->notifyConsumer();
  }
};

// --- open ---

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& dataDir,
                                                       SqliteStoreOptions options) {
  if (dataDir.empty()) return Error{VMHOST_ERR_INVALID_ARGUMENT, "store data directory is empty"};
  const fs::path dir(dataDir);
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) {
      return Error{VMHOST_ERR_FAILED_PRECONDITION,
                   "store data directory " + dataDir + " exists and is not a directory"};
    }
  } else {
    fs::create_directories(dir, ec);
    if (ec) return ioError(ec, "cannot create store data directory " + dataDir);
    syncDirectory(dir.parent_path().empty() ? fs::path(".") : dir.parent_path());
  }

  auto impl = std::make_shared<Impl>();
  impl->options = options;
  impl->path = (dir / "store.db").string();

  int rc =
      sqlite3_open_v2(impl->path.c_str(), &impl->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Error e = sqlError(impl->db, rc, "cannot open store " + impl->path);
    return e;
  }
  sqlite3_extended_result_codes(impl->db, 1);
  sqlite3_busy_timeout(impl->db, static_cast<int>(options.busyTimeout.count()));

  // Exclusive locking before WAL: no shared-memory index, and the lock taken
  // at the first access is held until close, so no other process (or
  // connection) can write behind this one's in-memory revision.
  if (auto r = impl->exec("PRAGMA locking_mode = EXCLUSIVE", "set locking mode"); !r) {
    return r.error();
  }
  {
    sqlite3_stmt* s = nullptr;
    rc = sqlite3_prepare_v2(impl->db, "PRAGMA journal_mode = WAL", -1, &s, nullptr);
    std::string mode;
    if (rc == SQLITE_OK) {
      rc = sqlite3_step(s);
      if (rc == SQLITE_ROW) mode = columnText(s, 0);
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_BUSY || (rc & 0xff) == SQLITE_BUSY) {
      return Error{VMHOST_ERR_UNAVAILABLE,
                   impl->path + " is in use by another process (or another open store)", true};
    }
    if (rc != SQLITE_ROW) {
      Error e = impl->error(rc, "enable WAL");
      if (e.code == VMHOST_ERR_DATA_LOSS) {
        e.message = impl->path + " is not a vmhost store (not a SQLite database, or corrupt)";
      }
      return e;
    }
    if (mode != "wal") {
      return Error{VMHOST_ERR_UNAVAILABLE,
                   impl->path + ": cannot enable WAL (journal mode is " + mode + ")"};
    }
  }
  // FULL: the WAL is fsynced at every commit, so a returned write is durable.
  if (auto r = impl->exec(
          options.syncEveryCommit ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
          "set synchronous");
      !r) {
    return r.error();
  }

  // Create or check the schema in one transaction (first open of a new file
  // may race with nothing: the lock is exclusive).
  {
    if (auto r = impl->exec("BEGIN IMMEDIATE", "begin"); !r) {
      if (r.error().code == VMHOST_ERR_UNAVAILABLE && r.error().retryable) {
        return Error{VMHOST_ERR_UNAVAILABLE,
                     impl->path + " is in use by another process (or another open store)", true};
      }
      return r.error();
    }
    bool committed = false;
    auto rollback = [&] {
      if (!committed) sqlite3_exec(impl->db, "ROLLBACK", nullptr, nullptr, nullptr);
    };

    auto queryInt = [&](const char* sql, int64_t& out, bool& found) -> Status {
      sqlite3_stmt* s = nullptr;
      int r = sqlite3_prepare_v2(impl->db, sql, -1, &s, nullptr);
      if (r == SQLITE_OK) r = sqlite3_step(s);
      found = r == SQLITE_ROW;
      if (found) out = sqlite3_column_int64(s, 0);
      sqlite3_finalize(s);
      if (r != SQLITE_ROW && r != SQLITE_DONE) return impl->error(r, sql);
      return Ok{};
    };

    int64_t tables = 0, hasVersionTable = 0;
    bool found = false;
    if (auto r = queryInt("SELECT count(*) FROM sqlite_master", tables, found); !r) {
      rollback();
      return r.error();
    }
    if (auto r = queryInt("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
                          "'schema_version'",
                          hasVersionTable, found);
        !r) {
      rollback();
      return r.error();
    }
    if (tables == 0) {
      if (auto r = impl->exec(kSchemaV1, "create schema"); !r) {
        rollback();
        return r.error();
      }
    } else if (hasVersionTable == 0) {
      rollback();
      return Error{VMHOST_ERR_FAILED_PRECONDITION,
                   impl->path + " is not a vmhost store (it has no schema_version table)"};
    }
    int64_t version = 0;
    if (auto r = queryInt("SELECT max(version) FROM schema_version", version, found); !r) {
      rollback();
      return r.error();
    }
    if (version > kSchemaVersion) {
      rollback();
      return Error{VMHOST_ERR_FAILED_PRECONDITION,
                   impl->path + " has schema version " + std::to_string(version) +
                       ", newer than this vmhost supports (" + std::to_string(kSchemaVersion) +
                       "); run a newer vmhost"};
    }
    if (version != kSchemaVersion) {
      rollback();
      return Error{VMHOST_ERR_FAILED_PRECONDITION,
                   impl->path + " has unknown schema version " + std::to_string(version)};
    }
    int64_t maxEvent = 0;
    bool ok = queryInt("SELECT value FROM meta WHERE key = 'revision'", impl->revision, found) &&
              found &&
              queryInt("SELECT value FROM meta WHERE key = 'compacted'", impl->compacted, found) &&
              found && queryInt("SELECT coalesce(max(rev), 0) FROM events", maxEvent, found);
    if (!ok) {
      rollback();
      return Error{VMHOST_ERR_DATA_LOSS, impl->path + ": cannot read the store's revision"};
    }
    int64_t unsynced = 0;
    bool marked = false;
    if (!queryInt("SELECT value FROM meta WHERE key = 'unsynced'", unsynced, marked)) {
      rollback();
      return Error{VMHOST_ERR_DATA_LOSS, impl->path + ": cannot read the store's meta table"};
    }
    if (marked && unsynced != 0) {
      // The last run ended without a clean close after best-effort writes:
      // up to kMaxUnsyncedWrites revisions it handed out may be gone. Skip
      // them, so that none is handed out again for another write.
      impl->revision += kMaxUnsyncedWrites;
      std::string sql = "UPDATE meta SET value = " + std::to_string(impl->revision) +
                        " WHERE key = 'revision'; UPDATE meta SET value = 0 WHERE key = 'unsynced'";
      if (auto r = impl->exec(sql.c_str(), "skip unsynced revisions"); !r) {
        rollback();
        return r.error();
      }
    }
    if (maxEvent > impl->revision || impl->compacted > impl->revision) {
      rollback();
      return Error{VMHOST_ERR_DATA_LOSS, impl->path + " is inconsistent: revision " +
                                             std::to_string(impl->revision) + ", compacted " +
                                             std::to_string(impl->compacted) + ", newest event " +
                                             std::to_string(maxEvent)};
    }
    if (auto r = impl->exec("COMMIT", "commit schema"); !r) {
      rollback();
      return r.error();
    }
    committed = true;
  }

  if (auto r = impl->prepareAll(); !r) return r.error();
  impl->bestEffort.insert(impl->options.bestEffortResources.begin(),
                          impl->options.bestEffortResources.end());
  impl->syncFull = impl->options.syncEveryCommit;
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(impl)));
}

SqliteStore::SqliteStore(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

SqliteStore::~SqliteStore() { impl_->shutdown(); }

const std::string& SqliteStore::path() const { return impl_->path; }

// --- reads ---

Result<StoredObject> SqliteStore::get(const Key& key) {
  if (auto v = validateKey(key); !v) return v.error();
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto found = impl_->read(key);
  if (!found) return found.error();
  if (!found.value()) return Error{VMHOST_ERR_NOT_FOUND, key.describe() + " not found"};
  return std::move(*found.value());
}

Result<ListResult> SqliteStore::list(std::string_view resource, std::string_view ns,
                                     const ListOptions& options) {
  if (auto v = validateScope(resource, ns); !v) return v.error();
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl& d = *impl_;
  StmtUse use(ns.empty() ? d.st.listAll : d.st.listNamespace);
  use.text(1, resource);
  if (ns.empty()) {
    use.text(2, options.after ? std::string_view(options.after->ns) : std::string_view(""));
    use.text(3, options.after ? std::string_view(options.after->name) : std::string_view(""));
  } else {
    use.text(2, ns);
    use.text(3, options.after ? std::string_view(options.after->name) : std::string_view(""));
  }
  // One more than asked, to know whether there is a next page.
  use.integer(4, options.limit == 0 ? -1 : static_cast<int64_t>(options.limit) + 1);

  ListResult result;
  result.revision = d.revision;
  int rc;
  while ((rc = sqlite3_step(use.get())) == SQLITE_ROW) {
    StoredObject obj;
    obj.key.resource = std::string(resource);
    obj.key.ns = columnText(use.get(), 0);
    obj.key.name = columnText(use.get(), 1);
    obj.value = columnBlob(use.get(), 2);
    obj.createRevision = sqlite3_column_int64(use.get(), 3);
    obj.modRevision = sqlite3_column_int64(use.get(), 4);
    result.items.push_back(std::move(obj));
  }
  if (rc != SQLITE_DONE) return d.error(rc, "list " + std::string(resource));
  if (options.limit != 0 && result.items.size() > options.limit) {
    result.items.pop_back();
    const Key& last = result.items.back().key;
    result.next = ListCursor{last.ns, last.name};
  }
  return result;
}

Result<int64_t> SqliteStore::currentRevision() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->revision;
}

Result<int64_t> SqliteStore::compactedRevision() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->compacted;
}

Result<std::string> SqliteStore::integrityCheck() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(impl_->db, "PRAGMA integrity_check", -1, &s, nullptr);
  std::string report;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      if (!report.empty()) report += "; ";
      report += columnText(s, 0);
    }
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) return impl_->error(rc, "integrity check");
  return report;
}

// --- writes ---

Result<StoredObject> SqliteStore::create(const Key& key, std::string_view value) {
  return impl_->write(Impl::Op::kCreate, key, value, 0);
}

Result<StoredObject> SqliteStore::update(const Key& key, std::string_view value,
                                         int64_t expectedModRevision) {
  return impl_->write(Impl::Op::kUpdate, key, value, expectedModRevision);
}

Result<StoredObject> SqliteStore::remove(const Key& key, int64_t expectedModRevision) {
  return impl_->write(Impl::Op::kDelete, key, {}, expectedModRevision);
}

Status SqliteStore::compact(int64_t revision) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (auto w = impl_->checkWritable(); !w) return w;
  if (revision > impl_->revision) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT,
                 "cannot compact revision " + std::to_string(revision) +
                     ": the current revision is " + std::to_string(impl_->revision)};
  }
  if (revision <= impl_->compacted) return Ok{};
  return impl_->compactLocked(revision);
}

// --- watch ---

Result<std::unique_ptr<Watch>> SqliteStore::watch(std::string_view resource, std::string_view ns,
                                                  int64_t fromRevision) {
  if (auto v = validateScope(resource, ns); !v) return v.error();
  if (fromRevision < 0) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT,
                 "watch revision " + std::to_string(fromRevision) + " is negative"};
  }
  std::string res(resource), space(ns);
  std::weak_ptr<Impl> weak = impl_;
  // Runs on the consumer's thread when the replay needs its next batch.
  auto refill = [weak, res, space](const std::shared_ptr<WatchChannel>& channel) {
    auto impl = weak.lock();
    if (!impl) {
      channel->fail(Error{VMHOST_ERR_UNAVAILABLE, "store closed"});
      return;
    }
    std::lock_guard<std::mutex> lock(impl->mu);
    impl->refillLocked(channel, res, space);
  };

  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl& d = *impl_;
  if (d.closed) return Error{VMHOST_ERR_UNAVAILABLE, d.path + ": store closed"};
  if (fromRevision < d.compacted) return d.compactedError(fromRevision);
  auto channel =
      std::make_shared<WatchChannel>(fromRevision, d.options.watchQueueLimit, std::move(refill));
  if (fromRevision >= d.revision) {
    // Nothing to replay (or a future revision, as etcd allows).
    channel->goLive();
    d.live.push_back(Impl::LiveWatch{std::move(res), std::move(space), channel});
  } else {
    // The first batch now, so its events are ready when this returns.
    d.refillLocked(channel, res, space);
  }
  return std::make_unique<Watch>(std::move(channel));
}

}  // namespace vmhost::store
