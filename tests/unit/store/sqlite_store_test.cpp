// What only the SQLite backend promises, beyond the contract: history read
// in batches, automatic compaction, reopening, and the errors for a data
// directory or database file that will not do.
#define BOOST_TEST_MODULE store_sqlite
#include "store_testing.h"

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

using namespace vmhost;
using namespace vmhost::store;
using namespace vmhost::store::testing;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<SqliteStore> openStore(const std::string& dir, SqliteStoreOptions options = {}) {
  auto store = SqliteStore::open(dir, options);
  BOOST_TEST_REQUIRE(store.ok(), (store.ok() ? "" : store.error().describe()));
  return std::move(store.value());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(watch)

BOOST_AUTO_TEST_CASE(long_replay_is_read_in_batches_not_limited_by_the_queue) {
  TempDir tmp2;
  SqliteStoreOptions options;
  options.watchQueueLimit = 5;
  options.watchReplayBatch = 3;
  auto s = openStore(tmp2.data(), options);
  for (int i = 0; i < 50; ++i) must(s->create(vm("vm" + std::to_string(i)), "x"));
  auto w = must(s->watch("virtualmachines", "", 0));
  int64_t expect = 1;
  for (int i = 0; i < 60; ++i) {
    auto e = w->tryNext();
    if (!e) break;
    BOOST_TEST_REQUIRE((e->type == WatchEventType::kAdded));
    BOOST_TEST_REQUIRE(e->revision() == expect);
    ++expect;
  }
  BOOST_TEST(expect == 51);
  must(s->create(vm("live"), "x"));
  auto e = w->next(1s);
  BOOST_TEST_REQUIRE(e.has_value());
  BOOST_TEST(e->revision() == 51);
}

BOOST_AUTO_TEST_CASE(compaction_during_a_replay_ends_the_watch_with_out_of_range) {
  TempDir tmp2;
  SqliteStoreOptions options;
  options.watchReplayBatch = 2;
  auto s = openStore(tmp2.data(), options);
  for (int i = 1; i <= 10; ++i) must(s->create(vm("vm" + std::to_string(i)), "x"));
  auto w = must(s->watch("virtualmachines", "", 0));
  BOOST_TEST(w->tryNext()->revision() == 1);
  BOOST_TEST(w->tryNext()->revision() == 2);
  BOOST_TEST(s->compact(8).ok());
  auto e = w->tryNext();
  BOOST_TEST_REQUIRE(e.has_value());
  BOOST_TEST((e->type == WatchEventType::kError));
  BOOST_TEST(e->error.code == VMHOST_ERR_OUT_OF_RANGE);
  BOOST_TEST(e->error.message == "revision 2 is compacted (oldest available: 8)");
  BOOST_TEST(w->finished());
  BOOST_TEST(!w->tryNext().has_value());
}

BOOST_AUTO_TEST_CASE(automatic_compaction_keeps_the_last_n_revisions) {
  TempDir tmp2;
  SqliteStoreOptions options;
  options.historyLimit = 10;
  options.compactEvery = 5;
  auto s = openStore(tmp2.data(), options);
  for (int i = 1; i <= 43; ++i) must(s->create(vm("vm" + std::to_string(i)), "x"));
  // Checked at writes 5, 10, ..., 40: at 40 it compacts to 30.
  BOOST_TEST(must(s->compactedRevision()) == 30);
  BOOST_TEST(mustFail(s->watch("virtualmachines", "", 29)).code == VMHOST_ERR_OUT_OF_RANGE);
  auto w = must(s->watch("virtualmachines", "", 30));
  BOOST_TEST(drain(*w).size() == 13u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(files)

BOOST_AUTO_TEST_CASE(reopen_keeps_objects_revision_and_history) {
  TempDir tmp;
  {
    auto s = openStore(tmp.data());
    must(s->create(vm("vm1"), "a"));
    must(s->create(vm("vm2"), "b"));
    must(s->update(vm("vm1"), "c", 1));
    must(s->remove(vm("vm2"), 0));
    BOOST_TEST(s->compact(1).ok());
  }
  auto s = openStore(tmp.data());
  BOOST_TEST(revisionOf(*s) == 4);
  BOOST_TEST(must(s->compactedRevision()) == 1);
  auto got = must(s->get(vm("vm1")));
  BOOST_TEST(got.value == "c");
  BOOST_TEST(got.createRevision == 1);
  BOOST_TEST(got.modRevision == 3);
  BOOST_TEST(mustFail(s->get(vm("vm2"))).code == VMHOST_ERR_NOT_FOUND);

  auto w = must(s->watch("virtualmachines", "", 1));
  auto events = drain(*w);
  BOOST_TEST_REQUIRE(events.size() == 3u);
  BOOST_TEST((events[2].type == WatchEventType::kDeleted));
  BOOST_TEST(events[2].object->value == "b");
  BOOST_TEST(mustFail(s->watch("virtualmachines", "", 0)).code == VMHOST_ERR_OUT_OF_RANGE);

  BOOST_TEST(must(s->create(vm("vm3"), "d")).modRevision == 5);
  BOOST_TEST(w->next(1s)->revision() == 5);
  BOOST_TEST(must(s->integrityCheck()) == "ok");
}

BOOST_AUTO_TEST_CASE(creates_a_missing_data_dir) {
  TempDir tmp;
  auto nested = (tmp.path / "a" / "b" / "c").string();
  auto s = openStore(nested);
  BOOST_TEST(s->path() == nested + "/store.db");
  BOOST_TEST(fs::exists(nested + "/store.db"));
}

BOOST_AUTO_TEST_CASE(an_uncreatable_data_dir_is_a_clear_error) {
  TempDir tmp;
  std::ofstream(tmp.path / "file") << "x";
  auto e = mustFail(SqliteStore::open((tmp.path / "file").string()));
  BOOST_TEST(e.code == VMHOST_ERR_FAILED_PRECONDITION);
  BOOST_TEST(e.message == "store data directory " + (tmp.path / "file").string() +
                              " exists and is not a directory");
  e = mustFail(SqliteStore::open((tmp.path / "file" / "sub").string()));
  BOOST_TEST(e.message.find("cannot create store data directory " +
                            (tmp.path / "file" / "sub").string()) == 0u,
             e.message);
}

BOOST_AUTO_TEST_CASE(a_second_open_of_the_same_dir_is_unavailable) {
  TempDir tmp;
  auto s = openStore(tmp.data());
  SqliteStoreOptions options;
  options.busyTimeout = 50ms;
  auto e = mustFail(SqliteStore::open(tmp.data(), options));
  BOOST_TEST(e.code == VMHOST_ERR_UNAVAILABLE);
  BOOST_TEST(e.message == tmp.data() +
                              "/store.db is in use by another process (or another open "
                              "store)");
  // The first store is unaffected.
  BOOST_TEST(s->create(vm("a"), "x").ok());
}

BOOST_AUTO_TEST_CASE(a_newer_schema_version_is_refused) {
  TempDir tmp;
  openStore(tmp.data()).reset();
  sqlite3* db = nullptr;
  BOOST_TEST_REQUIRE(sqlite3_open((tmp.data() + "/store.db").c_str(), &db) == SQLITE_OK);
  BOOST_TEST_REQUIRE(sqlite3_exec(db, "UPDATE schema_version SET version = 2", nullptr, nullptr,
                                  nullptr) == SQLITE_OK);
  sqlite3_close(db);
  auto e = mustFail(SqliteStore::open(tmp.data()));
  BOOST_TEST(e.code == VMHOST_ERR_FAILED_PRECONDITION);
  BOOST_TEST(e.message == tmp.data() +
                              "/store.db has schema version 2, newer than this vmhost supports "
                              "(1); run a newer vmhost");
}

BOOST_AUTO_TEST_CASE(a_file_that_is_not_a_store_is_refused) {
  TempDir tmp;
  fs::create_directories(tmp.data());
  std::ofstream(tmp.data() + "/store.db") << std::string(4096, 'g');
  auto e = mustFail(SqliteStore::open(tmp.data()));
  BOOST_TEST(e.code == VMHOST_ERR_DATA_LOSS);
  BOOST_TEST(e.message ==
             tmp.data() + "/store.db is not a vmhost store (not a SQLite database, or corrupt)");

  // A SQLite database of something else.
  fs::remove(tmp.data() + "/store.db");
  sqlite3* db = nullptr;
  BOOST_TEST_REQUIRE(sqlite3_open((tmp.data() + "/store.db").c_str(), &db) == SQLITE_OK);
  BOOST_TEST_REQUIRE(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  e = mustFail(SqliteStore::open(tmp.data()));
  BOOST_TEST(e.code == VMHOST_ERR_FAILED_PRECONDITION);
  BOOST_TEST(e.message ==
             tmp.data() + "/store.db is not a vmhost store (it has no schema_version table)");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(best_effort)

BOOST_AUTO_TEST_CASE(best_effort_writes_are_kept_by_a_clean_close) {
  TempDir tmp;
  SqliteStoreOptions options;
  options.bestEffortResources = {"events"};
  {
    auto s = openStore(tmp.data(), options);
    for (int i = 0; i < 10; ++i)
      must(s->create(Key{"events", "default", "e" + std::to_string(i)}, "x"));
    must(s->create(vm("vm1"), "y"));
    must(s->create(Key{"events", "default", "last"}, "z"));
    BOOST_TEST(revisionOf(*s) == 12);
  }
  auto s = openStore(tmp.data(), options);
  BOOST_TEST(revisionOf(*s) == 12);  // a clean close skips nothing
  BOOST_TEST(must(s->get(Key{"events", "default", "last"})).value == "z");
  BOOST_TEST(must(s->list("events", "")).items.size() == 11u);
}

// A process that dies after best-effort writes (here: _exit without
// closing the store) may have lost the unsynced ones on a power loss, so
// the next open skips the revisions they may have used.
BOOST_AUTO_TEST_CASE(a_reopen_after_unsynced_writes_skips_their_revisions) {
  TempDir tmp;
  SqliteStoreOptions options;
  options.bestEffortResources = {"events"};
  pid_t pid = fork();
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    auto s = SqliteStore::open(tmp.data(), options);
    if (!s.ok()) _exit(10);
    for (int i = 0; i < 5; ++i) {
      if (!s.value()->create(Key{"events", "default", "e" + std::to_string(i)}, "x").ok())
        _exit(11);
    }
    _exit(0);  // no close: the mark stays
  }
  int status = 0;
  BOOST_TEST_REQUIRE(waitpid(pid, &status, 0) == pid);
  BOOST_TEST_REQUIRE(WIFEXITED(status));
  BOOST_TEST_REQUIRE(WEXITSTATUS(status) == 0);
  auto s = openStore(tmp.data(), options);
  BOOST_TEST(revisionOf(*s) == 5 + SqliteStore::kMaxUnsyncedWrites);
  // The writes themselves survived the process's death (no power loss here).
  BOOST_TEST(must(s->list("events", "")).items.size() == 5u);
  auto next = must(s->create(vm("vm1"), "y"));
  BOOST_TEST(next.modRevision == 6 + SqliteStore::kMaxUnsyncedWrites);
}

BOOST_AUTO_TEST_CASE(a_process_without_best_effort_writes_leaves_no_gap) {
  TempDir tmp;
  pid_t pid = fork();
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    auto s = SqliteStore::open(tmp.data());
    if (!s.ok()) _exit(10);
    if (!s.value()->create(Key{"events", "default", "e"}, "x").ok()) _exit(11);
    _exit(0);
  }
  int status = 0;
  BOOST_TEST_REQUIRE(waitpid(pid, &status, 0) == pid);
  BOOST_TEST_REQUIRE(WEXITSTATUS(status) == 0);
  auto s = openStore(tmp.data());
  BOOST_TEST(revisionOf(*s) == 1);
}

BOOST_AUTO_TEST_SUITE_END()
