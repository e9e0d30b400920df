# shellcheck shell=bash
# What the vmhost cluster tests (cluster_e2e, cluster_recovery) share, on
# top of tests/lib/harness.sh and tests/cluster/lib_cluster.sh:
#   cluster_test_begin PREFIX   a test directory /tmp/PREFIX-XXXXXX (TDIR, with the
#                               cluster's state in CLUSTER_DIR), kept with the hosts'
#                               logs printed on failure, removed otherwise; a join
#                               token in $TDIR/token; free API_PORT and JOIN_PORT.

cluster_test_cleanup() {
  if [ "$FAILURES" -ne 0 ]; then
    local f
    for f in "$CLUSTER_DIR"/host*/node.log "$CLUSTER_DIR"/host*/var/log/libvirt/*.log; do
      [ -s "$f" ] && { echo "== $f"; tail -n 30 "$f"; }
    done
  fi
  cluster_down --keep || true
  if [ "$FAILURES" -ne 0 ]; then echo "--- cluster state kept in $TDIR"; else rm -rf "$TDIR"; fi
}

cluster_test_begin() {
  trap 'exit 130' INT
  trap 'exit 143' TERM
  TDIR=$(mktemp -d "/tmp/$1-XXXXXX")
  CLUSTER_DIR="$TDIR/cluster"
  EXTRA_CLEANUP=cluster_test_cleanup
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TDIR/token"
  API_PORT=$(free_port)
  JOIN_PORT=$(free_port)
}
