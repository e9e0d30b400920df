// The store contract every backend passes (store/store.h): CRUD and
// revisions, optimistic concurrency, bad keys and values, list order, scope
// and pagination, watch replay + live without gaps or duplicates, selection
// by resource and namespace, compaction and 410, slow watchers, notify.
// Each case runs once per backend in store_testing.h's `Backends`.
#define BOOST_TEST_MODULE store_contract
#include "store_testing.h"

#include <atomic>
#include <chrono>

using namespace vmhost;
using namespace vmhost::store;
using namespace vmhost::store::testing;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(crud)

STORE_CONTRACT_CASE(create_get_update_remove_with_revisions) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  BOOST_TEST(revisionOf(*store) == 0);
  auto created = must(store->create(vm("vm1"), R"({"spec":1})"));
  BOOST_TEST(created.createRevision == 1);
  BOOST_TEST(created.modRevision == 1);
  BOOST_TEST(created.value == R"({"spec":1})");

  auto got = must(store->get(vm("vm1")));
  BOOST_TEST(got.value == R"({"spec":1})");
  BOOST_TEST(got.createRevision == 1);
  BOOST_TEST(got.modRevision == 1);
  BOOST_TEST((got.key == vm("vm1")));

  auto updated = must(store->update(vm("vm1"), R"({"spec":2})", 1));
  BOOST_TEST(updated.createRevision == 1);
  BOOST_TEST(updated.modRevision == 2);
  BOOST_TEST(must(store->get(vm("vm1"))).value == R"({"spec":2})");

  auto removed = must(store->remove(vm("vm1"), 2));
  BOOST_TEST(removed.value == R"({"spec":2})");  // the last value
  BOOST_TEST(removed.createRevision == 1);
  BOOST_TEST(removed.modRevision == 3);  // the delete's revision
  auto gone = mustFail(store->get(vm("vm1")));
  BOOST_TEST(gone.code == VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(gone.message == "virtualmachines/default/vm1 not found");
  BOOST_TEST(revisionOf(*store) == 3);
}

STORE_CONTRACT_CASE(revision_is_global_and_monotonic_across_resources) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  int64_t last = 0;
  for (int i = 0; i < 5; ++i) {
    auto a = must(store->create(vm("vm" + std::to_string(i)), "a"));
    auto b = must(store->create(Key{"nodes", "", "n" + std::to_string(i)}, "b"));
    BOOST_TEST(a.modRevision == last + 1);
    BOOST_TEST(b.modRevision == last + 2);
    last = b.modRevision;
  }
  BOOST_TEST(revisionOf(*store) == 10);
  // A failed write does not consume a revision.
  BOOST_TEST(!store->create(vm("vm0"), "again").ok());
  BOOST_TEST(must(store->create(vm("vm9"), "x")).modRevision == 11);
}

STORE_CONTRACT_CASE(create_existing_is_already_exists_and_changes_nothing) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  must(store->create(vm("vm1"), "first"));
  auto e = mustFail(store->create(vm("vm1"), "second"));
  BOOST_TEST(e.code == VMHOST_ERR_ALREADY_EXISTS);
  BOOST_TEST(e.message == "virtualmachines/default/vm1 already exists");
  BOOST_TEST(must(store->get(vm("vm1"))).value == "first");
  BOOST_TEST(revisionOf(*store) == 1);
  // Same name in another namespace, and cluster-scoped, are other keys.
  BOOST_TEST(store->create(vm("vm1", "other"), "x").ok());
  BOOST_TEST(store->create(vm("vm1", ""), "x").ok());
}

STORE_CONTRACT_CASE(update_with_stale_revision_is_aborted_and_value_unchanged) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  auto v1 = must(store->create(vm("vm1"), "v1"));
  auto v2 = must(store->update(vm("vm1"), "v2", v1.modRevision));
  auto e = mustFail(store->update(vm("vm1"), "v3", v1.modRevision));
  BOOST_TEST(e.code == VMHOST_ERR_ABORTED);
  BOOST_TEST(e.message == "virtualmachines/default/vm1 is at revision 2, not the expected 1");
  auto now = must(store->get(vm("vm1")));
  BOOST_TEST(now.value == "v2");
  BOOST_TEST(now.modRevision == v2.modRevision);
  BOOST_TEST(revisionOf(*store) == 2);
  // 0 = unconditional.
  BOOST_TEST(must(store->update(vm("vm1"), "v3", 0)).modRevision == 3);
}

STORE_CONTRACT_CASE(remove_with_stale_revision_is_aborted) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  auto v1 = must(store->create(vm("vm1"), "v1"));
  must(store->update(vm("vm1"), "v2", 0));
  auto e = mustFail(store->remove(vm("vm1"), v1.modRevision));
  BOOST_TEST(e.code == VMHOST_ERR_ABORTED);
  BOOST_TEST(must(store->get(vm("vm1"))).value == "v2");
  BOOST_TEST(must(store->remove(vm("vm1"), 0)).modRevision == 3);
}

STORE_CONTRACT_CASE(update_or_remove_missing_is_not_found) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  BOOST_TEST(mustFail(store->update(vm("nope"), "x", 0)).code == VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(mustFail(store->remove(vm("nope"), 0)).code == VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(revisionOf(*store) == 0);
}

STORE_CONTRACT_CASE(values_are_opaque_bytes) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  std::string binary("\0\x01\xff{\"a\":1}\0", 11);
  must(store->create(vm("bin"), binary));
  BOOST_TEST(must(store->get(vm("bin"))).value == binary);
  must(store->create(vm("empty"), ""));
  BOOST_TEST(must(store->get(vm("empty"))).value.empty());
}

STORE_CONTRACT_CASE(bad_keys_are_invalid_argument_naming_the_field) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  auto e = mustFail(store->create(Key{"", "default", "vm1"}, "x"));
  BOOST_TEST(e.code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(e.message == "resource is empty");
  e = mustFail(store->create(Key{"virtualmachines", "default", ""}, "x"));
  BOOST_TEST(e.message == "name is empty");
  e = mustFail(store->get(Key{"virtualmachines", "a/b", "vm1"}));
  BOOST_TEST(e.code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(e.message == "namespace \"a/b\" contains '/'");
  e = mustFail(store->create(Key{"virtualmachines", "default", std::string("a\0b", 3)}, "x"));
  BOOST_TEST(e.message == "name contains a NUL byte");
  e = mustFail(store->create(vm(std::string(kMaxKeyPartBytes + 1, 'n')), "x"));
  BOOST_TEST(e.message == "name is 513 bytes, over the limit of 512");
  BOOST_TEST(mustFail(store->list("", "")).message == "resource is empty");
  BOOST_TEST(mustFail(store->watch("", "", 0)).message == "resource is empty");
  BOOST_TEST(mustFail(store->watch("virtualmachines", "", -1)).code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(mustFail(store->update(vm("vm1"), "x", -3)).code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(revisionOf(*store) == 0);
}

STORE_CONTRACT_CASE(values_over_the_limit_are_resource_exhausted) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  std::string atLimit(kDefaultMaxValueBytes, 'x');
  must(store->create(vm("big"), atLimit));
  BOOST_TEST(must(store->get(vm("big"))).value.size() == kDefaultMaxValueBytes);

  std::string over(kDefaultMaxValueBytes + 1, 'x');
  auto e = mustFail(store->create(vm("bigger"), over));
  BOOST_TEST(e.code == VMHOST_ERR_RESOURCE_EXHAUSTED);
  BOOST_TEST(e.message ==
             "value of virtualmachines/default/bigger is 1572865 bytes, over the limit of "
             "1572864 bytes");
  BOOST_TEST(mustFail(store->update(vm("big"), over, 0)).code == VMHOST_ERR_RESOURCE_EXHAUSTED);
  BOOST_TEST(must(store->get(vm("big"))).value == atLimit);
  BOOST_TEST(mustFail(store->get(vm("bigger"))).code == VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(revisionOf(*store) == 1);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(list)

STORE_CONTRACT_CASE(sorted_by_namespace_then_name_and_scoped) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  for (auto [ns, name] : std::vector<std::pair<std::string, std::string>>{
           {"b", "vm2"}, {"a", "vm9"}, {"b", "vm1"}, {"a", "vm10"}, {"c", "x"}}) {
    must(store->create(vm(name, ns), ns + "/" + name));
  }
  must(store->create(Key{"nodes", "", "n1"}, "node"));  // another resource

  auto all = must(store->list("virtualmachines", ""));
  std::vector<std::string> got;
  for (auto& o : all.items) got.push_back(o.value);
  std::vector<std::string> want{"a/vm10", "a/vm9", "b/vm1", "b/vm2", "c/x"};
  BOOST_TEST(got == want, boost::test_tools::per_element());
  BOOST_TEST(all.revision == 6);
  BOOST_TEST(!all.next.has_value());
  BOOST_TEST(all.items[0].key.resource == "virtualmachines");
  BOOST_TEST(all.items[0].key.ns == "a");
  BOOST_TEST(all.items[0].key.name == "vm10");
  BOOST_TEST(all.items[0].createRevision == 4);

  auto b = must(store->list("virtualmachines", "b"));
  BOOST_TEST(b.items.size() == 2u);
  BOOST_TEST(b.items[0].value == "b/vm1");
  BOOST_TEST(b.items[1].value == "b/vm2");

  BOOST_TEST(must(store->list("virtualmachines", "zzz")).items.empty());
  auto nodes = must(store->list("nodes", ""));
  BOOST_TEST(nodes.items.size() == 1u);
  BOOST_TEST(nodes.revision == 6);
  BOOST_TEST(must(store->list("nothing", "")).items.empty());
}

STORE_CONTRACT_CASE(pagination_across_and_within_namespaces) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  std::vector<std::string> want;
  for (int ns = 0; ns < 3; ++ns) {
    for (int i = 0; i < 7; ++i) {
      std::string n = "ns" + std::to_string(ns), name = "vm" + std::to_string(i);
      must(store->create(vm(name, n), n + "/" + name));
      want.push_back(n + "/" + name);
    }
  }
  // All namespaces, pages of 5: 21 items -> 5 pages, the last with 1.
  std::vector<std::string> got;
  ListOptions options;
  options.limit = 5;
  int pages = 0;
  for (; pages < 10; ++pages) {
    auto page = must(store->list("virtualmachines", "", options));
    BOOST_TEST(page.items.size() <= 5u);
    for (auto& o : page.items) got.push_back(o.value);
    if (!page.next) break;
    BOOST_TEST(page.next->ns == page.items.back().key.ns);
    BOOST_TEST(page.next->name == page.items.back().key.name);
    options.after = page.next;
  }
  BOOST_TEST(pages == 4);
  BOOST_TEST(got == want, boost::test_tools::per_element());

  // One namespace, a limit that divides it exactly: no empty trailing page.
  options = ListOptions{};
  options.limit = 7;
  auto page = must(store->list("virtualmachines", "ns1", options));
  BOOST_TEST(page.items.size() == 7u);
  BOOST_TEST(!page.next.has_value());

  options.limit = 3;
  got.clear();
  for (pages = 0; pages < 10; ++pages) {
    page = must(store->list("virtualmachines", "ns1", options));
    for (auto& o : page.items) got.push_back(o.value);
    if (!page.next) break;
    options.after = page.next;
  }
  BOOST_TEST(pages == 2);
  std::vector<std::string> ns1(want.begin() + 7, want.begin() + 14);
  BOOST_TEST(got == ns1, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(watch)

STORE_CONTRACT_CASE(from_zero_replays_all_history_in_order_then_live) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  must(store->create(vm("vm1"), "a"));              // 1
  must(store->update(vm("vm1"), "b", 1));           // 2
  must(store->create(vm("vm2"), "c"));              // 3
  must(store->remove(vm("vm1"), 2));                // 4
  must(store->create(Key{"nodes", "", "n"}, "n"));  // 5, not watched

  auto w = must(store->watch("virtualmachines", "", 0));
  auto events = drain(*w);
  BOOST_TEST_REQUIRE(events.size() == 4u);
  BOOST_TEST((events[0].type == WatchEventType::kAdded));
  BOOST_TEST(events[0].revision() == 1);
  BOOST_TEST(events[0].object->value == "a");
  BOOST_TEST((events[1].type == WatchEventType::kModified));
  BOOST_TEST(events[1].object->value == "b");
  BOOST_TEST(events[1].object->createRevision == 1);
  BOOST_TEST((events[2].type == WatchEventType::kAdded));
  BOOST_TEST(events[2].object->key.name == "vm2");
  BOOST_TEST((events[3].type == WatchEventType::kDeleted));
  BOOST_TEST(events[3].object->value == "b");  // the last value
  BOOST_TEST(events[3].object->modRevision == 4);
  BOOST_TEST(events[3].object->createRevision == 1);
  BOOST_TEST(!w->tryNext().has_value());

  must(store->update(vm("vm2"), "d", 0));  // 6, live
  auto live = w->next(1s);
  BOOST_TEST_REQUIRE(live.has_value());
  BOOST_TEST((live->type == WatchEventType::kModified));
  BOOST_TEST(live->revision() == 6);
  BOOST_TEST(live->object->value == "d");
  BOOST_TEST(!w->tryNext().has_value());
  BOOST_TEST(!w->finished());
}

STORE_CONTRACT_CASE(from_a_mid_revision_and_from_now) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  for (int i = 1; i <= 6; ++i) must(store->create(vm("vm" + std::to_string(i)), "x"));
  auto w = must(store->watch("virtualmachines", "", 4));
  auto events = drain(*w);
  BOOST_TEST_REQUIRE(events.size() == 2u);
  BOOST_TEST(events[0].revision() == 5);
  BOOST_TEST(events[1].revision() == 6);

  auto now = must(store->watch("virtualmachines", "", 6));
  BOOST_TEST(!now->tryNext().has_value());
  must(store->create(vm("vm7"), "x"));
  auto e = now->next(1s);
  BOOST_TEST_REQUIRE(e.has_value());
  BOOST_TEST(e->revision() == 7);
  BOOST_TEST(drain(*w).size() == 1u);

  // A future revision: events after it only (etcd allows this).
  auto future = must(store->watch("virtualmachines", "", 8));
  must(store->create(vm("vm8"), "x"));
  must(store->create(vm("vm9"), "x"));
  auto f = drain(*future);
  BOOST_TEST_REQUIRE(f.size() == 1u);
  BOOST_TEST(f[0].revision() == 9);
}

STORE_CONTRACT_CASE(filtered_by_resource_and_namespace) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  must(store->create(vm("a", "ns1"), "1"));
  must(store->create(vm("b", "ns2"), "2"));
  must(store->create(Key{"nodes", "", "n1"}, "3"));
  auto ns1 = must(store->watch("virtualmachines", "ns1", 0));
  auto nodes = must(store->watch("nodes", "", 0));
  auto all = must(store->watch("virtualmachines", "", 0));
  must(store->create(vm("c", "ns1"), "4"));
  must(store->create(vm("d", "ns2"), "5"));
  must(store->create(Key{"nodes", "", "n2"}, "6"));

  auto revs = [](std::vector<WatchEvent> events) {
    std::vector<int64_t> r;
    for (auto& e : events) r.push_back(e.revision());
    return r;
  };
  BOOST_TEST(revs(drain(*ns1)) == (std::vector<int64_t>{1, 4}), boost::test_tools::per_element());
  BOOST_TEST(revs(drain(*nodes)) == (std::vector<int64_t>{3, 6}), boost::test_tools::per_element());
  BOOST_TEST(revs(drain(*all)) == (std::vector<int64_t>{1, 2, 4, 5}),
             boost::test_tools::per_element());
}

STORE_CONTRACT_CASE(from_a_compacted_revision_is_out_of_range) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  for (int i = 1; i <= 10; ++i) must(store->create(vm("vm" + std::to_string(i)), "x"));
  BOOST_TEST(store->compact(5).ok());
  auto e = mustFail(store->watch("virtualmachines", "", 2));
  BOOST_TEST(e.code == VMHOST_ERR_OUT_OF_RANGE);
  BOOST_TEST(e.message == "revision 2 is compacted (oldest available: 5)");
  BOOST_TEST(mustFail(store->watch("virtualmachines", "", 0)).code == VMHOST_ERR_OUT_OF_RANGE);

  // From the compacted revision itself: everything after it is still there.
  auto w = must(store->watch("virtualmachines", "", 5));
  auto events = drain(*w);
  BOOST_TEST_REQUIRE(events.size() == 5u);
  BOOST_TEST(events.front().revision() == 6);
  // Objects are unaffected by compaction.
  BOOST_TEST(must(store->list("virtualmachines", "")).items.size() == 10u);

  BOOST_TEST(store->compact(3).ok());  // already compacted: no-op
  auto future = store->compact(11);
  BOOST_TEST_REQUIRE(!future.ok());
  BOOST_TEST(future.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(future.error().message == "cannot compact revision 11: the current revision is 10");
}

STORE_CONTRACT_CASE(a_slow_watcher_is_terminated_others_are_not) {
  TempDir tmp2;
  ContractOptions options;
  options.watchQueueLimit = 5;
  auto s = Backend::open(tmp2, options);
  auto slow = must(s->watch("virtualmachines", "", 0));
  auto fast = must(s->watch("virtualmachines", "", 0));
  for (int i = 1; i <= 8; ++i) {
    must(s->create(vm("vm" + std::to_string(i)), "x"));
    BOOST_TEST_REQUIRE(fast->tryNext()->revision() == i);
  }
  auto events = drain(*slow);
  BOOST_TEST_REQUIRE(events.size() == 6u);
  for (int i = 0; i < 5; ++i) BOOST_TEST(events[i].revision() == i + 1);
  BOOST_TEST((events[5].type == WatchEventType::kError));
  BOOST_TEST(events[5].error.code == VMHOST_ERR_RESOURCE_EXHAUSTED);
  BOOST_TEST(events[5].error.message ==
             "watch too slow: fell more than 5 events behind (last queued revision 5); watch "
             "again from the last revision received");
  BOOST_TEST(slow->finished());
  BOOST_TEST(!slow->waitNext(10ms));

  // Resuming from the last revision received gives the rest.
  auto resumed = must(s->watch("virtualmachines", "", 5));
  BOOST_TEST(drain(*resumed).size() == 3u);
  must(s->create(vm("vm9"), "x"));
  BOOST_TEST(fast->next(1s)->revision() == 9);
}

STORE_CONTRACT_CASE(notify_is_called_when_events_arrive_and_not_after_close) {
  Fixture<Backend> fx;
  auto& store = fx.store;
  auto w = must(store->watch("virtualmachines", "", 0));
  std::atomic<int> calls{0};
  w->setNotify([&] { ++calls; });
  BOOST_TEST(calls == 0);  // nothing ready yet
  must(store->create(vm("a"), "x"));
  BOOST_TEST(calls == 1);
  must(store->create(vm("b"), "x"));
  BOOST_TEST(calls == 1);  // edge-triggered: the queue was not drained
  BOOST_TEST(drain(*w).size() == 2u);
  must(store->create(vm("c"), "x"));
  BOOST_TEST(calls == 2);

  // setNotify with events already ready calls it at once.
  std::atomic<int> second{0};
  w->setNotify([&] { ++second; });
  BOOST_TEST(second == 1);
  drain(*w);

  // The callback may close its own watch.
  w->setNotify([&] {
    ++second;
    w->close();
  });
  must(store->create(vm("d"), "x"));
  BOOST_TEST(second == 2);
  BOOST_TEST(w->finished());
  must(store->create(vm("e"), "x"));
  BOOST_TEST(second == 2);
  BOOST_TEST(!w->tryNext().has_value());
}

STORE_CONTRACT_CASE(a_watch_outliving_its_store_ends_with_unavailable) {
  TempDir tmp2;
  auto s = Backend::open(tmp2, {});
  must(s->create(vm("a"), "x"));
  auto w = must(s->watch("virtualmachines", "", 1));
  s.reset();
  auto e = w->tryNext();
  BOOST_TEST_REQUIRE(e.has_value());
  BOOST_TEST((e->type == WatchEventType::kError));
  BOOST_TEST(e->error.code == VMHOST_ERR_UNAVAILABLE);
  BOOST_TEST(w->finished());
}

BOOST_AUTO_TEST_SUITE_END()
