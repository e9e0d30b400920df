#!/usr/bin/env bash
# Prepares a node for `vmhost node` / `vmhost all-in-one`: makes sure libvirtd
# runs with its network driver, so the libvirt-network plugin can create the
# node's NAT networks (bridge + dnsmasq + iptables NAT) and QEMU, embedded
# (qemu:///embed) or not (qemu:///system), can attach guests to them.
#
# What it does, each step only when needed (re-running it is safe):
#   - checks the binaries are installed (deploy/install-deps.sh installs them)
#   - creates the libvirt-qemu user (libvirt's QEMU driver resolves it before
#     it reads qemu.conf, even with user = "root")
#   - creates /var/log/libvirt, /var/lib/libvirt, /var/cache/libvirt, /run/libvirt
#   - writes /etc/libvirt/qemu.conf for a node without systemd or cgroup
#     delegation (containers): root, no security driver, no cgroups, no
#     namespaces, console output to files (no virtlogd), TLS migration
#     certificates from the node's directory. A qemu.conf this
#     script did not write is left alone; missing settings are reported.
#   - starts libvirtd (systemd's unit where systemd runs, else as a daemon
#     logging to /var/log/libvirt/libvirtd.log) unless it already answers.
#   - links /run/libvirt/virtnetworkd-sock{,-ro} to libvirtd's sockets when no
#     virtnetworkd runs (Debian 12 has none): processes embedding a libvirt
#     driver (qemu:///embed) may only reach the network driver there.
#     /run is cleared at boot: run this script before vmhost on every boot.
# Run as root. Exit status 0 when libvirtd answers on $VMHOST_LIBVIRT_URI.
#   VMHOST_LIBVIRT_URI        the URI to check (default network:///system, the
#                             libvirt-network plugin's default config.uri)
#   VMHOST_LIBVIRTD_TIMEOUT   seconds to wait for libvirtd (default 60)
#   VMHOST_MIGRATION_TLS_DIR  qemu.conf's migrate_tls_x509_cert_dir (default
#                             /var/lib/vmhost/node/migration-tls, where a node
#                             with the default dataDir writes its certificate)
set -euo pipefail
# shellcheck source=deploy/lib/require.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/require.sh"

uri=${VMHOST_LIBVIRT_URI:-network:///system}
timeout_s=${VMHOST_LIBVIRTD_TIMEOUT:-60}
conf=/etc/libvirt/qemu.conf
tls_dir=${VMHOST_MIGRATION_TLS_DIR:-/var/lib/vmhost/node/migration-tls}
log=/var/log/libvirt/libvirtd.log
marker="# Written by vmhost deploy/node-setup.sh"

say() { echo "node-setup: $*"; }
die() { echo "node-setup: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it starts libvirtd and writes $conf)"

require_tools libvirtd:libvirt-daemon virsh:libvirt-clients dnsmasq:dnsmasq-base \
  iptables:iptables ip:iproute2 qemu-system-x86_64:qemu-system-x86
[ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_network.so ] ||
  [ -n "$(find /usr/lib* -path '*libvirt/connection-driver/libvirt_driver_network.so' -print -quit 2>/dev/null)" ] ||
  die "libvirt's network driver (libvirt_driver_network.so) is missing; run deploy/install-deps.sh first"

if ! getent passwd libvirt-qemu >/dev/null; then
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  useradd --system --gid libvirt-qemu --no-create-home --home-dir /var/lib/libvirt \
    --shell /usr/sbin/nologin --comment "Libvirt Qemu" libvirt-qemu
  say "created the libvirt-qemu user"
fi

mkdir -p /etc/libvirt /var/log/libvirt /var/lib/libvirt /var/cache/libvirt /run/libvirt
mkdir -p "$tls_dir" && chmod 700 "$tls_dir"

required=(
  'user = "root"'
  'group = "root"'
  'security_driver = "none"'
  'cgroup_controllers = [ ]'
  'namespaces = [ ]'
  'stdio_handler = "file"'
  # libvirt's TLS migration: the node writes its certificate here (vmhost
  # node, node.migrationTlsDir); libvirtd refuses to start while it is missing.
  "migrate_tls_x509_cert_dir = \"$tls_dir\""
)
if [ ! -e "$conf" ] || head -n 1 "$conf" | grep -qxF "$marker"; then
  want=$( { echo "$marker"; printf '%s\n' "${required[@]}"; } )
  if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" >"$conf.tmp"
    mv "$conf.tmp" "$conf"
    say "wrote $conf"
  fi
else
  # Someone else's: report what a container node needs, change nothing.
  for line in "${required[@]}"; do
    grep -qxF "$line" "$conf" || say "warning: $conf lacks '$line' (needed where libvirtd runs in a container)"
  done
fi

answers() { timeout 15 virsh -q -c "$uri" net-list --all >/dev/null 2>&1; }

start_libvirtd() {
  if [ -d /run/systemd/system ] && systemctl cat libvirtd.service >/dev/null 2>&1; then
    say "starting libvirtd (systemctl start libvirtd)"
    systemctl start libvirtd || die "systemctl start libvirtd failed; see journalctl -u libvirtd"
    pid=""
  else
    pidfile=/run/libvirtd.pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      say "libvirtd (pid $(cat "$pidfile")) runs but does not answer yet; waiting"
      pid=$(cat "$pidfile")
    else
      say "starting libvirtd (log: $log)"
      LIBVIRT_LOG_OUTPUTS="3:file:$log" libvirtd --daemon --pid-file "$pidfile" 2>>"$log" ||
        { tail -n 20 "$log" >&2 2>/dev/null || true; die "libvirtd --daemon failed to start; see $log"; }
      pid=""
      for _ in $(seq 1 50); do
        [ -s "$pidfile" ] && { pid=$(cat "$pidfile"); break; }
        sleep 0.1
      done
    fi
  fi

  deadline=$((SECONDS + timeout_s))
  until answers; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2 2>/dev/null || true
      die "libvirtd exited before answering on $uri; see $log"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 20 "$log" >&2 2>/dev/null || true
      die "libvirtd does not answer on $uri after ${timeout_s}s; see $log"
    fi
    sleep 0.5
  done
  say "libvirtd answers on $uri${pid:+ (pid $pid)}"
}

if answers; then
  say "libvirtd already answers on $uri"
else
  start_libvirtd
fi

# A process that embeds a libvirt driver (vmhost with qemu:///embed) counts
# as "inside a daemon" to libvirt: it reaches the network driver only in
# direct mode, through virtnetworkd's socket, and refuses libvirtd's
# ("Connections from inside daemon must be direct"); so does QEMU's embedded
# driver when it plugs a guest into a network. Debian 12 ships no
# virtnetworkd, but libvirtd serves the network driver on its own socket:
# give it virtnetworkd's names unless a real virtnetworkd owns them.
rundir=/run/libvirt
for suffix in sock sock-ro; do
  direct="$rundir/virtnetworkd-$suffix"
  if [ -S "$direct" ] && [ ! -L "$direct" ]; then continue; fi  # virtnetworkd's own
  [ -S "$rundir/libvirt-$suffix" ] || die "libvirtd's socket $rundir/libvirt-$suffix is missing"
  if [ "$(readlink "$direct" 2>/dev/null)" != "libvirt-$suffix" ]; then
    ln -sfn "libvirt-$suffix" "$direct"
    say "linked $direct to libvirtd's socket (for embedded drivers)"
  fi
done
direct_uri="$uri"
case "$direct_uri" in
  *\?*) direct_uri="$direct_uri&mode=direct" ;;
  *) direct_uri="$direct_uri?mode=direct" ;;
esac
timeout 15 virsh -q -c "$direct_uri" net-list --all >/dev/null 2>&1 ||
  die "the network driver does not answer in direct mode ($direct_uri), as embedded drivers reach it"
say "the network driver answers for embedded drivers too ($direct_uri)"
