#!/usr/bin/env bash
# The Debian packages as an operator gets them: builds them from the build
# tree with cpack, installs them with apt into a fresh Debian 12 root (a
# debootstrap minbase: none of the build machine's packages), and runs what
# docs/operator-guide.md's "Installing" section runs there: vmhost version,
# vmhost check-config on the shipped configs, vmhost init, a controller and
# a node from the shipped configs and units' command lines, vmctl against
# them; the units through systemd-analyze verify; a plugin built against the
# installed SDK; removal and purge.
#
# usage: package_test.sh BUILD_DIR SOURCE_DIR
#   VMHOST_PACKAGE_TEST_CACHE  where the debootstrap base and apt's downloads
#                              are kept between runs (default /var/cache/vmhost-tests)
# Needs root and the Debian mirror the machine's apt uses; fails (never
# skips) without them.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
cache=${VMHOST_PACKAGE_TEST_CACHE:-/var/cache/vmhost-tests}

die() {
  echo "package_test: FAIL: $*" >&2
  exit 1
}
pass=0
check() {  # DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then
    echo "ok: $what"
    pass=$((pass + 1))
  else
    die "$what"
  fi
}
t0=$SECONDS
step() { echo "== $* (t=$((SECONDS - t0))s)"; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mount namespaces)"
for tool in cpack:cmake dpkg-deb:dpkg dpkg-shlibdeps:dpkg-dev file:file debootstrap:debootstrap unshare:util-linux flock:util-linux \
  systemd-analyze:systemd chroot:coreutils ip:iproute2; do
  command -v "${tool%%:*}" >/dev/null ||
    die "${tool%%:*} is missing: install the ${tool#*:} package (deploy/install-deps.sh does)"
done
[ -f "$build/CPackConfig.cmake" ] || die "$build/CPackConfig.cmake is missing: configure the build first"

mkdir -p "$cache"
# One run at a time: the base root and apt's download cache are shared.
exec 9>"$cache/lock"
flock -w 1800 9 || die "another package test holds $cache/lock"
rm -rf --one-file-system "$cache"/run.*
work=$(mktemp -d "$cache/run.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT

# ---- the packages ------------------------------------------------------------
step "cpack -G DEB"
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/cpack" >"$work/cpack.log" 2>&1 ||
  { tail -20 "$work/cpack.log" >&2; die "cpack -G DEB failed (log above)"; }
debs=("$work"/cpack/*.deb)
deb() { ls "$work/cpack/$1"_*.deb; }
in_root_deb() { echo "/tmp/debs/$(basename "$(deb "$1")")"; }  # the package's path in the root
field() { dpkg-deb -f "$(deb "$1")" "$2"; }
check "three packages: vmhost, vmctl, vmhost-sdk" \
  test "$(for d in "${debs[@]}"; do dpkg-deb -f "$d" Package; done | sort | tr '\n' ' ')" = \
  "vmctl vmhost vmhost-sdk "
for d in "${debs[@]}"; do
  echo "  $(basename "$d"): Depends: $(dpkg-deb -f "$d" Depends)"
  echo "  $(basename "$d"): Recommends: $(dpkg-deb -f "$d" Recommends)"
done
declares() {  # PACKAGE FIELD NAME...: the control field FIELD of PACKAGE names each NAME
  local value n
  value=$(field "$1" "$2")
  for n in "${@:3}"; do
    grep -Eq "(^|[ ,|])$n( |,|\$)" <<<"$value" || { echo "  $1 $2 lacks $n" >&2; return 1; }
  done
}
check "vmhost depends on the libraries it links (dpkg-shlibdeps): libvirt0, libcapnp, libsqlite3" \
  declares vmhost Depends libvirt0 'libcapnp-[0-9.]+' libsqlite3-0
check "vmhost recommends libvirt's daemon, QEMU and qemu-utils" \
  declares vmhost Recommends libvirt-daemon-system qemu-system-x86 qemu-utils
check "vmhost-sdk depends on capnproto, libcapnp-dev, cmake and pkg-config" \
  declares vmhost-sdk Depends capnproto libcapnp-dev cmake pkg-config
check "the configs in /etc/vmhost are conffiles" \
  test "$(dpkg-deb -I "$(deb vmhost)" conffiles | sort | tr '\n' ' ')" = \
  "/etc/vmhost/controller.yaml /etc/vmhost/node.yaml /etc/vmhost/vmhost.yaml "

# Every file the build installs is in exactly one package (an install()
# rule of a component no package takes would be missing from all of them).
DESTDIR="$work/stage" cmake --install "$build" --prefix /usr >/dev/null
(cd "$work/stage" && find . ! -type d | sed 's|^\.||' | sort) >"$work/installed"
for d in "${debs[@]}"; do dpkg-deb -c "$d" | awk '$1 !~ /^d/ { print $6 }' | sed 's|^\.||'; done |
  sort >"$work/packaged"
check "every file cmake --install installs is in one package ($(wc -l <"$work/installed") files)" \
  sh -c "comm -23 '$work/installed' '$work/packaged' | sed 's/^/  in no package: /' >&2;
         uniq -d '$work/packaged' | sed 's/^/  in two packages: /' >&2;
         [ -z \"\$(comm -23 '$work/installed' '$work/packaged')\" ] && [ -z \"\$(uniq -d '$work/packaged')\" ]"

# ---- a fresh Debian 12 root ------------------------------------------------------
# The mirror the machine's apt uses (as ../shared/tools/fresh-machine.sh finds it).
# Each file is read only if present: under pipefail a missing one would end
# the script without a word (a debootstrap root has only sources.list).
mirror=
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources | head -n1)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
base=$cache/bookworm-minbase
if [ ! -x "$base/usr/bin/apt-get" ]; then
  step "debootstrap --variant=minbase bookworm from $mirror (once; kept in $base)"
  rm -rf --one-file-system "$base.tmp"
  debootstrap --variant=minbase bookworm "$base.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log" >&2; die "debootstrap from $mirror failed (log above, $cache/debootstrap.log)"; }
  # The machine's own sources (updates and security too), as an operator's
  # machine has them.
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$base.tmp/etc/apt/sources.list.d/debian.sources"
    rm -f "$base.tmp/etc/apt/sources.list"
  fi
  # Packages must not start services in a chroot (as in any image build).
  printf '#!/bin/sh\nexit 101\n' >"$base.tmp/usr/sbin/policy-rc.d"
  chmod 755 "$base.tmp/usr/sbin/policy-rc.d"
  mv "$base.tmp" "$base"
fi
step "copying the base root"
root=$work/root
cp -a "$base/." "$root/"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$cache/archives" "$root/tmp/debs" "$root/root/example"
cp "${debs[@]}" "$root/tmp/debs/"
chmod 755 "$root/tmp/debs" && chmod 644 "$root"/tmp/debs/*.deb
cp -r "$src/sdk/examples/hello-scheduler/." "$root/root/example/"

# in_root [--net] COMMAND...: COMMAND as root of the fresh root, in its own
# mount and PID namespaces (what it leaves running ends with it); --net: in
# a network namespace of its own with only loopback.
in_root() {
  local net=()
  if [ "$1" = --net ]; then
    net=(--net)
    shift
  fi
  ROOT=$root ARCHIVES=$cache/archives NET=${net[*]} \
    unshare --mount --pid --fork --propagation private "${net[@]}" /bin/bash -c '
      set -e
      if [ -n "$NET" ]; then ip link set lo up; fi
      mount -t proc proc "$ROOT/proc"
      mount --rbind /dev "$ROOT/dev"
      mount --rbind /sys "$ROOT/sys"
      mount --bind "$ARCHIVES" "$ROOT/var/cache/apt/archives"
      exec chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' in_root "$@"
}
apt_in_root() {
  in_root apt-get -q -o Dpkg::Use-Pty=0 "$@" >"$work/apt.log" 2>&1 ||
    { tail -30 "$work/apt.log" >&2; return 1; }
}

step "apt-get update in the root"
attempt=0
until apt_in_root update; do
  attempt=$((attempt + 1))
  [ $attempt -lt 3 ] || die "apt-get update in the fresh root failed 3 times: is $mirror reachable?"
  sleep 5
done
check "the root is fresh: no vmhost, libvirt or capnp library in it" \
  sh -c "! ls '$root'/usr/lib/x86_64-linux-gnu/ | grep -Eq '^lib(virt|capnp|yaml-cpp)'"

step "apt-get install ./vmhost_*.deb ./vmctl_*.deb"
check "apt installs vmhost and vmctl, resolving their Depends from the mirror" \
  apt_in_root install -y --no-install-recommends "$(in_root_deb vmhost)" "$(in_root_deb vmctl)"
grep -E '^(Setting up|Unpacking) ' "$work/apt.log" | sed 's/^/  /' | head -40

out=$(in_root vmhost version)
echo "  vmhost version: $out"
check "vmhost version runs from /usr/bin" \
  grep -qx "vmhost $(field vmhost Version | cut -d- -f1) (plugin ABI [0-9]*\.\.[0-9]*)" <<<"$out"
out=$(in_root vmctl --help) || die "vmctl --help exited $?"
check "vmctl --help prints the usage and exits 0" grep -q '^usage: vmctl' <<<"$out"
out=$(in_root vmhost plugins list)
echo "$out" | sed 's/^/  /'
check "/usr/bin/vmhost finds its plugins in /usr/lib/vmhost/plugins (no pluginDir, no environment)" \
  test "$(grep -c ' /usr/lib/vmhost/plugins/vmhost-.*\.so$' <<<"$out")" -eq 8
for f in vmhost controller; do
  out=$(in_root vmhost check-config "/etc/vmhost/$f.yaml" 2>&1) || die "check-config /etc/vmhost/$f.yaml: $out"
  echo "  $out"
  check "vmhost check-config /etc/vmhost/$f.yaml: OK" grep -q "^/etc/vmhost/$f.yaml: OK (" <<<"$out"
done
out=$(in_root vmhost check-config /etc/vmhost/node.yaml 2>&1) && die "node.yaml passed without a join token"
echo "  $out"
check "the unedited node.yaml names what is missing: the join token file" \
  grep -q '^/etc/vmhost/node.yaml:[0-9]*:[0-9]*: cluster.joinTokenFile: cannot read /etc/vmhost/join-token$' <<<"$out"

# ---- the units ---------------------------------------------------------------
# An operator's machine runs systemd; installing it here (not running) also
# shows that installing it where systemd does not run breaks nothing.
step "apt-get install systemd (for the units' dependencies: sysinit.target, network-online.target)"
check "apt installs systemd in a root where systemd does not run" \
  apt_in_root install -y --no-install-recommends systemd
out=$(systemd-analyze verify --root="$root" --man=no \
  /usr/lib/systemd/system/vmhost-all-in-one.service \
  /usr/lib/systemd/system/vmhost-controller.service \
  /usr/lib/systemd/system/vmhost-node.service 2>&1) || die "systemd-analyze verify: $out"
check "systemd-analyze verify of the installed units is silent" test -z "$out"
for u in controller node all-in-one; do
  e=$(systemd-analyze security --offline=yes --root="$root" "vmhost-$u.service" 2>&1 |
    sed -n 's/.*Overall exposure level for [^:]*: *//p')
  echo "  systemd-analyze security vmhost-$u.service: $e"
done
for u in controller node all-in-one; do
  exec_start=$(sed -n 's/^ExecStart=//p' "$root/usr/lib/systemd/system/vmhost-$u.service")
  cfg=$(sed -n 's/.*--config \([^ ]*\).*/\1/p' <<<"$exec_start")
  check "vmhost-$u.service runs /usr/bin/vmhost $u with a config the package ships ($cfg)" \
    sh -c "case '$exec_start' in '/usr/bin/vmhost $u '*) ;; *) exit 1;; esac && test -f '$root$cfg'"
done

# Stopping a unit must not kill guests: QEMU under libvirtd (qemu:///system)
# is outside the unit's cgroup, whatever KillMode; an embedded QEMU driver
# would make QEMU this process's child, which only KillMode=process spares.
unit_key() { sed -n "s/^$2=//p" "$root/usr/lib/systemd/system/vmhost-$1.service"; }
config_uri() { sed -n 's/^libvirt: *{uri: *"\(.*\)"}.*/\1/p' "$root/etc/vmhost/$1.yaml"; }
check "vmhost-node.service: KillMode=$(unit_key node KillMode), and node.yaml's guests are libvirtd's ($(config_uri node))" \
  test "$(unit_key node KillMode)" = mixed -a "$(config_uri node)" = "qemu:///system"
check "vmhost-all-in-one.service: KillMode=$(unit_key all-in-one KillMode) (spares embedded guests too); vmhost.yaml: $(config_uri vmhost)" \
  test "$(unit_key all-in-one KillMode)" = process -a "$(config_uri vmhost)" = "qemu:///system"

# ---- a cluster from the shipped configs, as the guide sets one up ------------------
cat >"$root/root/cluster.sh" <<'SH'
set -eu
vmhost init --data-dir /var/lib/vmhost --address 127.0.0.1 >/tmp/init.log
install -m 0644 /var/lib/vmhost/pki/ca.crt /etc/vmhost/ca.crt
install -m 0600 /var/lib/vmhost/join-token /etc/vmhost/join-token
sed -i 's/CONTROLLER-ADDRESS/127.0.0.1/' /etc/vmhost/node.yaml
vmhost check-config /etc/vmhost/node.yaml
vmhost controller --config /etc/vmhost/controller.yaml >/tmp/controller.log 2>&1 &
for _ in $(seq 100); do grep -q 'API on https://' /tmp/controller.log && break; sleep 0.2; done
head -n1 /tmp/controller.log
# This root has no libvirtd: the node runs on libvirt's test driver (in libvirt0).
sed 's|qemu:///system|test:///default|' /etc/vmhost/node.yaml >/tmp/node.yaml
vmhost node --config /tmp/node.yaml --node-name packaged-node >/tmp/node.log 2>&1 &
for _ in $(seq 150); do
  state=$(vmctl --config /var/lib/vmhost/vmctl.yaml get node packaged-node 2>/dev/null |
    awk 'NR == 2 { print $2 }')
  [ "$state" = Ready ] && break
  sleep 0.2
done
vmctl --config /var/lib/vmhost/vmctl.yaml get nodes
[ "$state" = Ready ] || { cat /tmp/controller.log /tmp/node.log; exit 1; }
SH
step "vmhost init, controller and node from the shipped configs (private network namespace)"
out=$(in_root --net /bin/bash /root/cluster.sh 2>&1) || { echo "$out" >&2; die "the packaged cluster did not come up"; }
echo "$out" | sed 's/^/  /'
check "with the guide's steps, a node from node.yaml joins the controller from controller.yaml (mutual TLS) and vmctl sees it Ready" \
  grep -q '^packaged-node *Ready' <<<"$out"

# ---- the SDK, as a plugin author installs it ------------------------------------
step "apt-get install ./vmhost-sdk_*.deb (with its Recommends: a compiler)"
check "apt installs vmhost-sdk with what it recommends" \
  apt_in_root install -y "$(in_root_deb vmhost-sdk)"
cat >"$root/root/sdk.sh" <<'SH'
set -eu
cmake -S /root/example -B /root/build -DCMAKE_BUILD_TYPE=Release >/root/cmake.log
cmake --build /root/build -j2 >/root/build.log
vmhost-plugin-check /root/build/vmhost-scheduler-first-fit.so
printf 'plugins:\n  scheduler: {path: /root/build/vmhost-scheduler-first-fit.so}\n' >/root/first-fit.yaml
vmhost check-config /root/first-fit.yaml
SH
step "a plugin built against the installed SDK"
out=$(in_root /bin/bash /root/sdk.sh 2>&1) || { echo "$out" >&2; die "the SDK example did not build or pass the kit"; }
echo "$out" | tail -n 4 | sed 's/^/  /'
check "the SDK example builds against /usr (find_package(VmhostSdk)) and loads in the packaged host" \
  grep -q '^/root/first-fit.yaml: OK (scheduler first-fit ' <<<"$out"

# ---- what vmhost recommends exists in Debian 12 --------------------------------------
recommends=$(field vmhost Recommends | tr ',' '\n' | sed 's/|.*//; s/(.*//; s/ //g' | grep -v '^vmctl$')
check "vmhost's Recommends ($(echo $recommends)) are installable from the mirror (apt-get -s)" \
  apt_in_root install -s --no-install-recommends $recommends

# ---- removal -----------------------------------------------------------------
step "apt-get remove, then purge"
check "removing vmhost works without systemd running" apt_in_root remove -y vmhost
check "removal keeps the configs (conffiles) and /var/lib/vmhost" \
  test -f "$root/etc/vmhost/vmhost.yaml" -a -f "$root/var/lib/vmhost/pki/ca.key"
check "purging vmhost works" apt_in_root purge -y vmhost
check "purge removes the shipped configs but never /var/lib/vmhost (disks, store, CA)" \
  test ! -e "$root/etc/vmhost/vmhost.yaml" -a ! -e "$root/usr/bin/vmhost" -a -f "$root/var/lib/vmhost/pki/ca.key"

echo "package_test: $pass passed, 0 failed ($((SECONDS - t0)) s)"
