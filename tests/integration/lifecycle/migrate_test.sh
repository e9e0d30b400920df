#!/usr/bin/env bash
# vmctl migrate against the all-in-one on libvirt's test driver: the
# VirtualMachineMigration it creates (generateName VM-migration-,
# spec.vmName, spec.targetNode from --to), the checks it makes before
# creating anything, --wait following the migration to its end (one node: no
# target, so it ends Failed with SchedulingFailed, and vmctl exits 1 naming
# it), vmctl get/describe of migrations, and --cancel with nothing to cancel.
# The path that ends Succeeded (the progress line per second, the bar on a
# terminal, the final line) runs against a scripted API
# (fake_migration_api.py). A cancel of a migration in flight needs a second
# node: drain_test.sh.
# usage: migrate_test.sh BUILD_DIR SOURCE_DIR
BUILD=$1
SRC=$2
. "$SRC/tests/lib/harness.sh"
require_tools script:bsdutils

start_aio aio "$SRC/deploy/all-in-one-test.yaml" master
cat >"$WORK/vm1.yaml" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachine
metadata: {name: vm1}
spec:
  memory: 64Mi
  evictionStrategy: LiveMigrate
  disks: [{name: scratch}]
  volumes: [{name: scratch, empty: {size: 16Mi}}]
YAML
check "vm1 created" vmctl aio apply -f "$WORK/vm1.yaml"
check "vm1 runs" wait_phase aio vm1 Running 30
mfield() { kctl aio get virtualmachinemigrations "$1" -o jsonpath="$2"; }
count() { kctl aio get virtualmachinemigrations -o name | grep -c . || true; }
failed_with() {  # failed_with NAME REASON
  [ "$(mfield "$1" '{.status.phase}/{.status.reason}')" = "Failed/$2" ]
}

# ---- the object
out=$(vmctl aio migrate vm1)
echo "$out"
name=$(sed -n 's#^virtualmachinemigration.vmhost.io/\(.*\) created$#\1#p' <<<"$out")
check "vmctl migrate prints the migration it created" test -n "$name"
check "its name is generated from vm1-migration-" grep -Eq '^vm1-migration-[a-z0-9]{5}$' <<<"$name"
check "spec.vmName is the VM" test "$(mfield "$name" '{.spec.vmName}')" = vm1
check "no spec.targetNode without --to" test -z "$(mfield "$name" '{.spec.targetNode}')"
check "one node: it fails, SchedulingFailed" wait_for 20 failed_with "$name" SchedulingFailed
check "the message says why" grep -q "no node can take the VM" <<<"$(mfield "$name" '{.status.message}')"
check "the VM still runs on master" test "$(phase aio vm1)" = Running

out=$(vmctl aio migrate vm1 --to master)
to=$(sed -n 's#^virtualmachinemigration.vmhost.io/\(.*\) created$#\1#p' <<<"$out")
check "--to sets spec.targetNode" test "$(mfield "$to" '{.spec.targetNode}')" = master
check "--to the VM's own node fails, SchedulingFailed" wait_for 20 failed_with "$to" SchedulingFailed
check "and says so" grep -q "is the node the VM runs on" <<<"$(mfield "$to" '{.status.message}')"

# ---- refused before anything is created
before=$(count)
set +e
out=$(vmctl aio migrate vm1 --to nosuch 2>&1); rc=$?
set -e
check "--to a missing node fails (exit 1)" test "$rc" -eq 1
check "naming the node" grep -q 'node "nosuch" not found' <<<"$out"
set +e
out=$(vmctl aio migrate nosuchvm 2>&1); rc=$?
set -e
check "a missing VM fails (exit 1)" test "$rc" -eq 1
check "naming the VM" grep -q 'nosuchvm' <<<"$out"
check "neither created a migration" test "$(count)" = "$before"
set +e
out=$(vmctl aio migrate 2>&1); rc=$?
set -e
check "no VM: usage, exit 2" test "$rc" -eq 2

# ---- --wait: followed to the end, exit 1 with the reason
set +e
out=$(timeout 60 "$VMCTL_BIN" --server "$API_aio" migrate vm1 --wait 2>&1); rc=$?
set -e
echo "$out"
check "vmctl migrate --wait exits 1 when the migration fails" test "$rc" -eq 1
check "it printed the migration it created" grep -q '^virtualmachinemigration.vmhost.io/vm1-migration-.* created$' <<<"$out"
check "it names the reason and the message" grep -Eq \
  '^vmctl: migration default/vm1-migration-[a-z0-9]{5} failed: SchedulingFailed: no node can take the VM' <<<"$out"
no_escapes() { ! grep -q $'\033' <<<"$out"; }
check "no terminal: no bar, no escape sequences" no_escapes
set +e
out=$(vmctl aio migrate vm1 --wait --timeout=1x 2>&1); rc=$?
set -e
check "a bad --timeout is a usage error" test "$rc" -eq 2

# ---- get / describe
out=$(vmctl aio get migrations)
echo "$out"
check "vmctl get migrations: the columns" grep -Eq '^NAME +VM +PHASE +SOURCE +TARGET +PROGRESS +REASON +AGE$' <<<"$out"
check "vmctl get migrations: a row per migration" grep -Eq "^$name +vm1 +Failed +master +<none> +<none> +SchedulingFailed " <<<"$out"
check "vmctl get migrations --to: the target" grep -Eq "^$to +vm1 +Failed +master +master " <<<"$out"
check "vmctl get vmim NAME" sh -c "HOME=$WORK $VMCTL_BIN --server $API_aio get vmim $name | grep -q '^$name '"
check "vmctl get migration -o json" sh -c "HOME=$WORK $VMCTL_BIN --server $API_aio get migration $name -o json | grep -q '\"vmName\": \"vm1\"'"
check "vmctl get migrations -o name" sh -c "HOME=$WORK $VMCTL_BIN --server $API_aio get migrations -o name | grep -q '^virtualmachinemigration.vmhost.io/$name$'"
check "kubectl get vmim shows the printer columns" sh -c \
  "HOME=$WORK KUBECONFIG=$WORK/aio.kubeconfig kubectl get vmim $name | grep -q 'SchedulingFailed\|Failed'"
out=$(vmctl aio describe migration "$name")
echo "$out"
check "vmctl describe migration: the phase" grep -Eq '^Phase: +Failed$' <<<"$out"
check "vmctl describe migration: the reason" grep -Eq '^Reason: +SchedulingFailed$' <<<"$out"
check "vmctl describe migration: the VM" grep -Eq '^VM: +vm1$' <<<"$out"
check "vmctl describe migration: its events" \
  wait_for 10 sh -c "HOME=$WORK $VMCTL_BIN --server $API_aio describe migration $name | sed -n '/^Events:/,\$p' | grep -q 'Warning .*MigrationFailed'"

# ---- --cancel
set +e
out=$(vmctl aio migrate vm1 --cancel 2>&1); rc=$?
set -e
check "--cancel with nothing unfinished fails (exit 1)" test "$rc" -eq 1
check "and says so" grep -q "VM default/vm1 has no unfinished migration to cancel" <<<"$out"
check "finished migrations are left alone" test "$(mfield "$name" '{.status.phase}')" = Failed
set +e
out=$(vmctl aio migrate vm1 --cancel --to master 2>&1); rc=$?
set -e
check "--cancel with --to is a usage error" test "$rc" -eq 2
check "vmctl delete migration" vmctl aio delete migration "$to"
gone() { ! kctl aio get virtualmachinemigrations "$to" >/dev/null 2>&1; }
check "a finished migration deleted is gone" wait_for 10 gone
check "the VM still runs on master" test "$(phase aio vm1)/$(kctl aio get virtualmachines vm1 -o jsonpath='{.status.nodeName}')" = Running/master
# ---- a migration that succeeds, against a scripted API
python3 "$SRC/tests/integration/lifecycle/fake_migration_api.py" "$WORK/fake.port" "$WORK/fake.body" &
FAKE_PID=$!
EXTRA_CLEANUP="kill $FAKE_PID"
fake_up() { [ -s "$WORK/fake.port" ]; }
check "the scripted API is up" wait_for 10 fake_up
FAKE="http://127.0.0.1:$(cat "$WORK/fake.port")"
set +e
out=$(HOME=$WORK "$VMCTL_BIN" --server "$FAKE" migrate vm1 --to node-b --wait 2>&1); rc=$?
set -e
echo "$out"
check "vmctl migrate --wait exits 0 when it succeeds" test "$rc" -eq 0
body() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$WORK/fake.body" "$1"; }
check "it POSTs generateName vm1-migration-" test "$(body 'd["metadata"]["generateName"]')" = vm1-migration-
check "with spec.vmName" test "$(body 'd["spec"]["vmName"]')" = vm1
check "and spec.targetNode from --to" test "$(body 'd["spec"]["targetNode"]')" = node-b
check "a line while Pending, with why" grep -q \
  '^vm1-migration-abcde: Pending (NodeLimit: waiting: 2 migrations are running from node node-a (limit 2)), waited ' <<<"$out"
check "a line while preparing the target" grep -q '^vm1-migration-abcde: PreparingTarget, to node node-b, waited ' <<<"$out"
check "a line per second while Running" grep -q \
  '^vm1-migration-abcde: Running 25% (55 MiB of 220 MiB, 165 MiB remaining), dirty 3.2 MiB/s, iteration 2, elapsed 1.0 s$' <<<"$out"
check "with the last decision" grep -q \
  '^vm1-migration-abcde: Running 75% .*iteration 3, elapsed 2.0 s, last decision: raise max downtime to 600 ms: not converging$' <<<"$out"
check "it ends with the time, downtime and data moved" grep -q \
  '^migrated vm1 to node-b in 1.2 s (downtime 85 ms, 63 MiB moved, pre-copy)$' <<<"$out"
# On a terminal (script(1) gives it one): one line redrawn in place.
set +e
HOME=$WORK script -qfec "stty cols 200 rows 40; $VMCTL_BIN --server $FAKE migrate vm1 --to node-b --wait" "$WORK/tty.out" >/dev/null 2>&1
rc=$?
set -e
check "on a terminal too, exit 0" test "$rc" -eq 0
tty_has() { grep -qF -- "$1" "$WORK/tty.out"; }
check "the bar is redrawn in place (carriage return, erase line)" tty_has $'\r\033[K['
check "the bar at 25% (its width: the terminal's)" tty_has '[######..................]  25% Running -> node-b  165 MiB left  3.2 MiB/s dirty  iter 2  1.0 s'
check "the bar shows the last decision" tty_has 'last: raise max downtime to 600 ms'
check "the bar while Pending says why" tty_has '0% Pending -> node-b  0.0 s  NodeLimit: waiting: 2 migrations'
# A narrow terminal: the line is cut to fit, never wrapped (a wrapped line
# would not be redrawn in place).
HOME=$WORK script -qfec "stty cols 60 rows 40; $VMCTL_BIN --server $FAKE migrate vm1 --to node-b --wait" "$WORK/narrow.out" >/dev/null 2>&1 || true
narrow_fits() {
  python3 - "$WORK/narrow.out" <<'PY2'
import re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace", newline="").read()
bars = [b for b in re.split(r"\r\x1b\[K", text) if b.startswith("[")]
sys.exit(0 if bars and all(len(b.split("\r")[0].rstrip("\n")) <= 59 for b in bars) else 1)
PY2
}
check "on a 60-column terminal the bar stays within 59 columns" narrow_fits
check "the final line" tty_has 'migrated vm1 to node-b in 1.2 s (downtime 85 ms, 63 MiB moved, pre-copy)'
kill "$FAKE_PID" 2>/dev/null || true
EXTRA_CLEANUP=""
finish
