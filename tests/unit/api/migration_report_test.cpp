// api::applyMigrationReport(): how a node's view of a VM's migration is
// merged into the VM's status (api/migration.h). One case per row of the
// rules: who may report which phase from which phase, the handover
// (status.nodeName moves to the target exactly once, only while the VM is
// bound to the source), a finished migration never changing, and reports
// for another migration or from a node that is neither side refused.
// Every refusal must leave the status exactly as it was.
#define BOOST_TEST_MODULE api_migration_report
#include <boost/test/unit_test.hpp>

#include "api/migration.h"
#include "api/types.h"

#include <string>

using namespace vmhost;
using namespace vmhost::api;

namespace {

constexpr const char* kSource = "n1";
constexpr const char* kTarget = "n2";
constexpr const char* kOther = "n3";

MigrationTarget readyTarget() {
  MigrationTarget t;
  t.domainXml = "<domain type='kvm'><name>default_vm1</name></domain>";
  t.libvirtUri = "qemu+tcp://10.0.0.2/system";
  t.migrateUri = "tcp://10.0.0.2";
  t.copyDisks = {"vda"};
  return t;
}

// A Running VM bound to the source, with a record in `phase` (and what the
// nodes would have written to reach it).
VirtualMachineStatus statusIn(const std::string& phase) {
  VirtualMachineStatus s;
  s.phase = "Running";
  s.nodeName = kSource;
  MigrationState m;
  m.name = "mig1";
  m.uid = "uid-mig1";
  m.sourceNode = kSource;
  m.targetNode = kTarget;
  m.phase = phase;
  m.startTimestamp = "2026-01-01T00:00:00Z";
  if (phase != kMigrationPreparingTarget) m.target = readyTarget();
  if (phase == kMigrationRunning) {
    m.progress = MigrationProgress{};
    m.progress->dataTotalBytes = 1000;
    m.progress->dataProcessedBytes = 10;
  }
  s.migration = m;
  return s;
}

// What a node says: its view of the record, with the phase it reports.
MigrationState report(const VirtualMachineStatus& s, const std::string& phase) {
  MigrationState r = *s.migration;
  r.phase = phase;
  return r;
}

// The merge is refused (FAILED_PRECONDITION) and leaves the status as it was.
void expectRefused(VirtualMachineStatus s, const std::string& node, const MigrationState& r,
                   const std::string& what) {
  BOOST_TEST_CONTEXT(what) {
    const VirtualMachineStatus before = s;
    auto merged = applyMigrationReport(s, node, r);
    BOOST_TEST(!merged.ok(), "accepted, changed=" << (merged.ok() && merged.value()));
    if (merged.ok()) return;
    BOOST_TEST(merged.error().code == VMHOST_ERR_FAILED_PRECONDITION);
    BOOST_TEST(merged.error().message.find("migration report refused") != std::string::npos,
               merged.error().message);
    BOOST_TEST(s.nodeName == before.nodeName);
    BOOST_TEST(s.phase == before.phase);
    BOOST_TEST((s.migration == before.migration));
  }
}

// The merge is accepted and changes nothing.
void expectNoOp(VirtualMachineStatus s, const std::string& node, const MigrationState& r,
                const std::string& what) {
  BOOST_TEST_CONTEXT(what) {
    const VirtualMachineStatus before = s;
    auto merged = applyMigrationReport(s, node, r);
    BOOST_TEST_REQUIRE(merged.ok(), (merged.ok() ? "" : merged.error().describe()));
    BOOST_TEST(!merged.value());
    BOOST_TEST(s.nodeName == before.nodeName);
    BOOST_TEST((s.migration == before.migration));
  }
}

// Applies and requires it accepted with a change.
void apply(VirtualMachineStatus& s, const std::string& node, const MigrationState& r) {
  auto merged = applyMigrationReport(s, node, r);
  BOOST_TEST_REQUIRE(merged.ok(), (merged.ok() ? "" : merged.error().describe()));
  BOOST_TEST(merged.value());
}

}  // namespace

// ---- whose report it is ---------------------------------------------------------

BOOST_AUTO_TEST_CASE(no_record_wrong_uid_wrong_name_and_strangers_are_refused) {
  VirtualMachineStatus none;
  none.nodeName = kSource;
  auto s = statusIn(kMigrationPreparingTarget);
  auto ready = report(s, kMigrationTargetReady);
  ready.target = readyTarget();
  expectRefused(none, kTarget, ready, "the VM has no migration");

  auto otherUid = ready;
  otherUid.uid = "uid-other";
  expectRefused(s, kTarget, otherUid, "another uid (a re-created migration of the same name)");
  auto otherName = ready;
  otherName.name = "mig2";
  expectRefused(s, kTarget, otherName, "another migration name");

  // A node that is neither side, whatever it says, in every phase.
  for (const char* phase : kMigrationStatePhases) {
    auto cur = statusIn(phase);
    for (const char* said : kMigrationStatePhases) {
      auto r = report(cur, said);
      r.target = readyTarget();
      expectRefused(cur, kOther, r, std::string("stranger says ") + said + " in " + phase);
    }
  }
  // Nor does a finished migration accept a stranger's repeat of its outcome.
  expectRefused(statusIn(kMigrationSucceeded), kOther,
                report(statusIn(kMigrationSucceeded), kMigrationSucceeded),
                "stranger repeats Succeeded");
}

BOOST_AUTO_TEST_CASE(phases_a_node_never_reports_are_refused) {
  for (const char* phase : {kMigrationPreparingTarget, kMigrationTargetReady, kMigrationRunning}) {
    auto s = statusIn(phase);
    for (const std::string said : {"", "PreparingTarget", "Pending", "Scheduling", "Bogus"}) {
      if (said == phase) continue;
      expectRefused(s, kSource, report(s, said), "source says '" + said + "' in " + phase);
      expectRefused(s, kTarget, report(s, said), "target says '" + said + "' in " + phase);
    }
  }
}

// ---- the target: TargetReady --------------------------------------------------------

BOOST_AUTO_TEST_CASE(target_ready_from_preparing_with_xml_and_uri) {
  auto s = statusIn(kMigrationPreparingTarget);
  auto r = report(s, kMigrationTargetReady);
  r.target = readyTarget();
  apply(s, kTarget, r);
  BOOST_TEST(s.migration->phase == kMigrationTargetReady);
  BOOST_TEST_REQUIRE(s.migration->target.has_value());
  BOOST_TEST((*s.migration->target == readyTarget()));
  BOOST_TEST(s.nodeName == kSource);  // nothing moved
  BOOST_TEST(s.migration->endTimestamp.empty());
  // The same report again (a restarted target agent): nothing to do.
  expectNoOp(s, kTarget, r, "TargetReady repeated");
}

BOOST_AUTO_TEST_CASE(target_ready_needs_the_domain_xml_and_the_libvirt_uri) {
  auto s = statusIn(kMigrationPreparingTarget);
  auto r = report(s, kMigrationTargetReady);
  r.target.reset();
  expectRefused(s, kTarget, r, "no target at all");
  r.target = readyTarget();
  r.target->domainXml.clear();
  expectRefused(s, kTarget, r, "no domain XML");
  r.target = readyTarget();
  r.target->libvirtUri.clear();
  expectRefused(s, kTarget, r, "no libvirt URI");
  // migrateUri and copyDisks are optional (libvirt picks; shared storage).
  r.target = readyTarget();
  r.target->migrateUri.clear();
  r.target->copyDisks.clear();
  apply(s, kTarget, r);
  BOOST_TEST(s.migration->phase == kMigrationTargetReady);
}

BOOST_AUTO_TEST_CASE(only_the_target_reports_target_ready) {
  auto s = statusIn(kMigrationPreparingTarget);
  auto r = report(s, kMigrationTargetReady);
  r.target = readyTarget();
  expectRefused(s, kSource, r, "the source says TargetReady");
}

BOOST_AUTO_TEST_CASE(target_ready_only_from_preparing_target) {
  // Once ready, what the source may already be migrating to does not
  // change under it: a different target is refused, not merged.
  {
    auto s = statusIn(kMigrationTargetReady);
    auto r = report(s, kMigrationTargetReady);
    r.target = readyTarget();
    r.target->libvirtUri = "qemu+tcp://10.9.9.9/system";
    r.target->domainXml = "<domain>other</domain>";
    expectRefused(s, kTarget, r, "TargetReady with another target while TargetReady");
  }
  // Running: the target's retry of what it said (its first try got
  // through) is a repeat; anything else would be a phase going back.
  {
    auto s = statusIn(kMigrationRunning);
    auto r = report(s, kMigrationTargetReady);
    expectNoOp(s, kTarget, r, "the same TargetReady again while Running");
    r.target->libvirtUri = "qemu+tcp://10.9.9.9/system";
    expectRefused(s, kTarget, r, "TargetReady with another target while Running");
    r.target.reset();
    expectRefused(s, kTarget, r, "TargetReady without a target while Running");
  }
  for (const char* done : {kMigrationSucceeded, kMigrationFailed}) {
    auto s = statusIn(done);
    if (std::string(done) == kMigrationSucceeded) s.nodeName = kTarget;
    expectRefused(s, kTarget, report(s, kMigrationTargetReady),
                  std::string("TargetReady when ") + done);
  }
}

// ---- the source: Running --------------------------------------------------------------

BOOST_AUTO_TEST_CASE(source_running_only_after_target_ready) {
  auto s = statusIn(kMigrationPreparingTarget);
  auto r = report(s, kMigrationRunning);
  r.progress = MigrationProgress{};
  expectRefused(s, kSource, r, "Running while PreparingTarget");

  s = statusIn(kMigrationTargetReady);
  r = report(s, kMigrationRunning);
  r.progress = MigrationProgress{};
  r.progress->maxDowntimeMs = 300;
  expectRefused(s, kTarget, r, "the target says Running");
  apply(s, kSource, r);
  BOOST_TEST(s.migration->phase == kMigrationRunning);
  BOOST_TEST((s.migration->progress == r.progress));
  BOOST_TEST(s.nodeName == kSource);
  BOOST_TEST((s.migration->target == std::optional<MigrationTarget>(readyTarget())));

  // Progress updates while Running; the same progress again is no change.
  r.progress->dataTotalBytes = 2048;
  r.progress->dataProcessedBytes = 1024;
  r.progress->dataRemainingBytes = 1024;
  r.progress->memoryIteration = 2;
  apply(s, kSource, r);
  BOOST_TEST(s.migration->progress->dataProcessedBytes == 1024u);
  expectNoOp(s, kSource, r, "the same progress again");
  // A report without progress keeps what is there.
  auto bare = r;
  bare.progress.reset();
  expectNoOp(s, kSource, bare, "Running without progress");
  BOOST_TEST(s.migration->progress.has_value());
}

BOOST_AUTO_TEST_CASE(a_report_never_clears_abort_requested_nor_rewrites_the_record) {
  auto s = statusIn(kMigrationRunning);
  s.migration->abortRequested = true;
  auto r = report(s, kMigrationRunning);
  r.abortRequested = false;  // the node's view is older than the cancel
  r.targetNode = kOther;     // nor does a node re-point the migration
  r.sourceNode = kOther;
  r.progress->dataProcessedBytes = 500;
  apply(s, kSource, r);
  BOOST_TEST(s.migration->abortRequested);
  BOOST_TEST(s.migration->targetNode == kTarget);
  BOOST_TEST(s.migration->sourceNode == kSource);
  BOOST_TEST(s.migration->progress->dataProcessedBytes == 500u);
}

// ---- Succeeded: the handover -------------------------------------------------------

BOOST_AUTO_TEST_CASE(source_succeeded_moves_the_binding_once) {
  for (const char* from : {kMigrationRunning, kMigrationTargetReady}) {
    BOOST_TEST_CONTEXT("from " << from) {
      auto s = statusIn(from);
      auto r = report(s, kMigrationSucceeded);
      r.result = MigrationResult{1200, 40, 1 << 30, "pre-copy"};
      apply(s, kSource, r);
      BOOST_TEST(s.nodeName == kTarget);
      BOOST_TEST(s.migration->phase == kMigrationSucceeded);
      BOOST_TEST((s.migration->result == r.result));
      BOOST_TEST(!s.migration->endTimestamp.empty());
      BOOST_TEST(s.phase == "Running");  // the guest runs on, elsewhere

      // Said again, by either side, with whatever figures: nothing moves.
      auto again = r;
      again.result->totalMs = 9999;
      expectNoOp(s, kSource, again, "the source repeats Succeeded");
      expectNoOp(s, kTarget, again, "the target says Succeeded after the source");
      BOOST_TEST(s.migration->result->totalMs == 1200u);
    }
  }
}

BOOST_AUTO_TEST_CASE(target_succeeded_moves_the_binding_once) {
  // The target runs the resumed guest (the source may be gone).
  auto s = statusIn(kMigrationRunning);
  apply(s, kTarget, report(s, kMigrationSucceeded));
  BOOST_TEST(s.nodeName == kTarget);
  BOOST_TEST(s.migration->phase == kMigrationSucceeded);
  expectNoOp(s, kSource, report(s, kMigrationSucceeded), "the source after the target");
  expectNoOp(s, kTarget, report(s, kMigrationSucceeded), "the target again");
}

BOOST_AUTO_TEST_CASE(succeeded_only_after_target_ready) {
  auto s = statusIn(kMigrationPreparingTarget);
  expectRefused(s, kSource, report(s, kMigrationSucceeded), "the source, while preparing");
  expectRefused(s, kTarget, report(s, kMigrationSucceeded), "the target, while preparing");
}

BOOST_AUTO_TEST_CASE(succeeded_only_while_bound_to_the_source) {
  for (const std::string& bound : {std::string(kTarget), std::string(kOther), std::string()}) {
    auto s = statusIn(kMigrationRunning);
    s.nodeName = bound;
    expectRefused(s, kSource, report(s, kMigrationSucceeded), "bound to '" + bound + "'");
    expectRefused(s, kTarget, report(s, kMigrationSucceeded), "bound to '" + bound + "' (target)");
  }
}

BOOST_AUTO_TEST_CASE(source_succeeded_after_abort_requested_is_accepted) {
  // The job completed before the abort took effect: the guest is on the
  // target, and the record must say so.
  auto s = statusIn(kMigrationRunning);
  s.migration->abortRequested = true;
  auto r = report(s, kMigrationSucceeded);
  r.result = MigrationResult{800, 20, 4096, "pre-copy"};
  apply(s, kSource, r);
  BOOST_TEST(s.nodeName == kTarget);
  BOOST_TEST(s.migration->phase == kMigrationSucceeded);
  BOOST_TEST(s.migration->abortRequested);
}

// ---- Failed ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(target_may_fail_only_while_preparing) {
  auto s = statusIn(kMigrationPreparingTarget);
  auto r = report(s, kMigrationFailed);
  r.reason = "PreparingTargetFailed";
  r.message = "preparing the target n2: no space";
  apply(s, kTarget, r);
  BOOST_TEST(s.migration->phase == kMigrationFailed);
  BOOST_TEST(s.migration->reason == "PreparingTargetFailed");
  BOOST_TEST(s.migration->message == r.message);
  BOOST_TEST(!s.migration->endTimestamp.empty());
  BOOST_TEST(s.nodeName == kSource);

  // Once the source may be running the job, only the source decides.
  for (const char* phase : {kMigrationTargetReady, kMigrationRunning}) {
    auto cur = statusIn(phase);
    auto f = report(cur, kMigrationFailed);
    f.reason = "TargetGone";
    expectRefused(cur, kTarget, f, std::string("the target fails while ") + phase);
  }
}

BOOST_AUTO_TEST_CASE(source_may_fail_before_the_handover) {
  for (const char* phase : {kMigrationPreparingTarget, kMigrationTargetReady, kMigrationRunning}) {
    BOOST_TEST_CONTEXT("while " << phase) {
      auto s = statusIn(phase);
      auto r = report(s, kMigrationFailed);
      r.reason = "MigrationFailed";
      r.message = "migrating to node n2: operation failed";
      r.progress = MigrationProgress{};
      r.progress->dataProcessedBytes = 77;
      apply(s, kSource, r);
      BOOST_TEST(s.migration->phase == kMigrationFailed);
      BOOST_TEST(s.migration->reason == "MigrationFailed");
      BOOST_TEST(s.migration->progress->dataProcessedBytes == 77u);
      BOOST_TEST(s.nodeName == kSource);  // the guest stays where it runs
    }
  }
  // Not once the VM is bound elsewhere.
  auto s = statusIn(kMigrationRunning);
  s.nodeName = kTarget;
  expectRefused(s, kSource, report(s, kMigrationFailed), "Failed while bound to the target");
}

// ---- a finished migration never changes ----------------------------------------------

BOOST_AUTO_TEST_CASE(a_finished_migration_never_changes) {
  // Failed: repeats are no-ops (even with other words), anything else refused.
  auto failed = statusIn(kMigrationPreparingTarget);
  auto f = report(failed, kMigrationFailed);
  f.reason = "PreparingTargetFailed";
  f.message = "first words";
  apply(failed, kTarget, f);
  auto f2 = f;
  f2.reason = "Other";
  f2.message = "second words";
  expectNoOp(failed, kTarget, f2, "the target repeats Failed");
  expectNoOp(failed, kSource, f2, "the source says Failed too");
  BOOST_TEST(failed.migration->message == "first words");
  for (const char* said : {kMigrationTargetReady, kMigrationRunning, kMigrationSucceeded}) {
    auto r = report(failed, said);
    r.target = readyTarget();
    expectRefused(failed, kSource, r, std::string("source says ") + said + " after Failed");
    expectRefused(failed, kTarget, r, std::string("target says ") + said + " after Failed");
  }

  // Succeeded: the same, and the binding stays on the target.
  auto ok = statusIn(kMigrationRunning);
  apply(ok, kSource, report(ok, kMigrationSucceeded));
  BOOST_TEST(ok.nodeName == kTarget);
  for (const char* said : {kMigrationTargetReady, kMigrationRunning, kMigrationFailed}) {
    auto r = report(ok, said);
    expectRefused(ok, kSource, r, std::string("source says ") + said + " after Succeeded");
    expectRefused(ok, kTarget, r, std::string("target says ") + said + " after Succeeded");
  }
  BOOST_TEST(ok.nodeName == kTarget);
}

BOOST_AUTO_TEST_CASE(a_whole_migration_in_order) {
  auto s = statusIn(kMigrationPreparingTarget);
  auto r = report(s, kMigrationTargetReady);
  r.target = readyTarget();
  apply(s, kTarget, r);
  auto run = report(s, kMigrationRunning);
  run.progress = MigrationProgress{};
  run.progress->dataTotalBytes = 100;
  apply(s, kSource, run);
  run.progress->dataProcessedBytes = 100;
  apply(s, kSource, run);
  auto done = report(s, kMigrationSucceeded);
  done.result = MigrationResult{10, 1, 100, "pre-copy"};
  apply(s, kSource, done);
  BOOST_TEST(s.nodeName == kTarget);
  BOOST_TEST(s.migration->phase == kMigrationSucceeded);
  BOOST_TEST(s.migration->progress->dataProcessedBytes == 100u);
  BOOST_TEST(s.migration->result->bytesTransferred == 100u);
  // The record is still valid as the API validates it.
  BOOST_TEST(validateMigrationState(*s.migration, "status.migration").empty());
}
