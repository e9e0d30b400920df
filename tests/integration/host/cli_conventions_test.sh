#!/usr/bin/env bash
# Every command follows the command-line conventions (host/vmhost/usage.h):
# --help prints the usage on stdout and exits 0; an unknown flag prints the
# problem and the usage on stderr and exits 2.
# usage: cli_conventions_test.sh BUILD_DIR SOURCE_DIR
BUILD=$1
SRC=$2
. "$SRC/tests/lib/harness.sh"
VMHOST="$BUILD/bin/vmhost"
VMCTL="$BUILD/bin/vmctl"

# help_ok DESCRIPTION COMMAND...: exit 0, "usage:" on stdout, nothing on stderr.
help_ok() {
  local what=$1; shift
  local out err rc
  rc=0; out=$("$@" 2>"$WORK/err") || rc=$?
  err=$(cat "$WORK/err")
  if [ $rc -eq 0 ] && grep -q '^usage: ' <<<"$out" && [ -z "$err" ]; then
    pass "$what --help: usage on stdout, exit 0"
  else
    fail "$what --help: exit $rc, stdout: ${out:0:200}, stderr: ${err:0:200}"
  fi
}

# flag_refused DESCRIPTION COMMAND...: exit 2, the flag named and the usage on stderr.
flag_refused() {
  local what=$1; shift
  local err rc
  rc=0; "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  err=$(cat "$WORK/err")
  if [ $rc -eq 2 ] && grep -q -- "--no-such-flag" <<<"$err" && grep -q 'usage: ' <<<"$err"; then
    pass "$what --no-such-flag: named, usage on stderr, exit 2"
  else
    fail "$what --no-such-flag: exit $rc, stderr: ${err:0:300}"
  fi
}

help_ok "vmhost" "$VMHOST" --help
flag_refused "vmhost" "$VMHOST" --no-such-flag
for cmd in all-in-one controller node init check-config "plugins list" "plugins inspect" plugins version; do
  # shellcheck disable=SC2086  # the words of $cmd are separate arguments
  help_ok "vmhost $cmd" "$VMHOST" $cmd --help
  # shellcheck disable=SC2086
  [ "$cmd" = plugins ] || [ "$cmd" = version ] || flag_refused "vmhost $cmd" "$VMHOST" $cmd --no-such-flag
done
help_ok "vmctl" "$VMCTL" --help
help_ok "vmctl get" "$VMCTL" get --help
for cmd in get describe delete wait drain cordon migrate; do
  flag_refused "vmctl $cmd" "$VMCTL" "$cmd" --no-such-flag
done
flag_refused "vmctl" "$VMCTL" --no-such-flag
finish
