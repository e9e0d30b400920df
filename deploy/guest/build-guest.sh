#!/usr/bin/env bash
# Builds the tiny test guest: a Debian 12 kernel plus a busybox-static
# initramfs that boots to a shell on the serial console in a few seconds
# under TCG. Tests and the quick start boot it with direct kernel boot:
#
#   <kernel>CACHE/vmlinux</kernel> <initrd>CACHE/initramfs.gz</initrd>
#   <cmdline>console=ttyS0 quiet cryptomgr.notests</cmdline>
#
# vmlinux is the kernel ELF taken out of Debian's xz-compressed bzImage. QEMU
# boots it through PVH, skipping the in-guest decompression, which alone costs
# 5-6 s under TCG (measured: ~4-6 s to the "booted" line instead of ~10-12 s).
# vmlinuz, the unmodified bzImage, is kept for anything that needs one.
# cryptomgr.notests skips the crypto self-tests (~1 s under TCG); quiet keeps
# the kernel off the emulated UART, which is slow.
#
# Test hooks, read by /init from the kernel command line (the kernel ignores
# these dotted names; /init parses /proc/cmdline):
#
#   vmhost.ip=ADDR/PREFIX   eth0 gets this static address instead of DHCP;
#                           prints "vmhost-guest: eth0 address ADDR/PREFIX".
#   vmhost.echo=PORT        a TCP echo service on PORT (busybox nc -ll -e cat);
#                           prints "vmhost-guest: echo PORT".
#   vmhost.ticker=SECONDS   after boot, prints "vmhost-guest: tick N uptime=U
#                           disk=D" every SECONDS (N counts from 1, U is
#                           /proc/uptime, D the first line of the first
#                           marker's disk read with O_DIRECT, or "-"): a live
#                           migration must continue N and U, never restart them.
#   vmhost.dirty=MIB        after boot, rewrites MIB MiB of random data in RAM
#                           in a loop (a guest that dirties memory fast);
#                           prints "vmhost-guest: dirtying MIB MiB".
#   vmhost.fill=MIB         fills MIB MiB of RAM with random data once (memory
#                           a migration must move, which then stays put);
#                           prints "vmhost-guest: filled MIB MiB".
#   vmhost.marker=DEV:TEXT  prints what the disk /dev/DEV holds at its start,
#                           "vmhost-guest: marker DEV HELD" or "... DEV none";
#                           if none, writes TEXT there (and syncs) and prints
#                           "vmhost-guest: marker DEV wrote TEXT". Repeat the
#                           parameter for several disks. TEXT: [A-Za-z0-9._-],
#                           at most 64 bytes. On disk: "vmhost-marker:TEXT\n".
#
# All run before the "booted" line, so a test that saw it can rely on them.
#
# Usage: deploy/guest/build-guest.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${VMHOST_CACHE_DIR:-$HOME/.cache/vmhost}/guest.
#   VMHOST_GUEST_KERNEL_PKG pins the kernel package (e.g. linux-image-6.1.0-56-amd64);
#   by default it is the package that Debian's linux-image-amd64 currently depends on.
#
# Outputs in CACHE_DIR: vmlinux, vmlinuz, initramfs.gz, manifest (inputs, kernel release
# and sha256s). Cached: when the manifest's inputs match this run's and the
# outputs still hash to what it records, nothing is done. Needs only the
# Debian mirrors (apt-get download), busybox-static, cpio and gzip; runs as root
# in CI but any user with a readable apt cache works.
set -euo pipefail
# shellcheck source=deploy/lib/require.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../lib/require.sh"

log() { echo "build-guest: $*" >&2; }
die() { log "error: $*"; exit 1; }

cache=${1:-${VMHOST_CACHE_DIR:-$HOME/.cache/vmhost}/guest}
busybox=/bin/busybox
# Modules loaded at boot, in any order (dependencies are resolved below): the
# virtio transports and the devices the vmhost domain XML gives a guest, e1000
# for the non-virtio NIC model, and the ACPI power button plus evdev so that a
# graceful (ACPI) shutdown request powers the guest off.
modules=(virtio_pci virtio_blk virtio_net e1000 button evdev)

# xz and zstd: Debian's kernels compress the image with xz (zstd covers later
# ones); readelf (binutils, from build-essential) tells a static busybox.
require_tools cpio:cpio xz:xz-utils zstd:zstd readelf:binutils
[ -x "$busybox" ] || die "$busybox not found: install the Debian package busybox-static (run deploy/install-deps.sh)"
file_is_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'; }
file_is_static "$busybox" || die "$busybox is dynamically linked (install busybox-static, not busybox)"

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
# Two builds (two ctest runs, two build trees) may share the cache.
exec 9>"$cache/.lock"
flock 9

sha() { sha256sum "$1" | cut -d' ' -f1; }
manifest_get() { sed -n "s/^$1=//p" "$cache/manifest" 2>/dev/null | head -n1; }

# The kernel package: what linux-image-amd64 pulls in today, so the guest
# follows Debian 12's security updates.
# One apt-cache call (each costs seconds here): the candidate metapackage
# depends on exactly one kernel package at one exact version.
resolve_kernel() {
  local dep
  if [ -n "${VMHOST_GUEST_KERNEL_PKG:-}" ]; then
    kpkg=$VMHOST_GUEST_KERNEL_PKG
    kver=$(apt-cache policy "$kpkg" 2>/dev/null | sed -n 's/^ *Candidate: //p')
  else
    dep=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
      sed -n 's/^Depends: .*\(linux-image-[0-9][^ ]*-amd64\) (= \([^)]*\)).*/\1 \2/p' | head -n1)
    kpkg=${dep% *}
    kver=${dep#* }
  fi
  [ -n "$kpkg" ] && [ -n "$kver" ] && [ "$kver" != "(none)" ]
}
if ! resolve_kernel; then
  if [ "$(id -u)" -eq 0 ]; then
    log "kernel package not in the apt lists; running apt-get update"
    apt-get update -q >&2 || true
  fi
  if ! resolve_kernel; then
    if [ -s "$cache/manifest" ] && [ -s "$cache/vmlinux" ] && [ -s "$cache/initramfs.gz" ] &&
      [ "$(sha "$cache/vmlinux")" = "$(manifest_get vmlinux_sha256)" ] &&
      [ "$(sha "$cache/initramfs.gz")" = "$(manifest_get initramfs_sha256)" ]; then
      log "cannot resolve the kernel package (no apt lists?); using the cached guest as is"
      exit 0
    fi
    die "cannot find the Debian kernel package (apt-cache depends linux-image-amd64); run apt-get update"
  fi
fi

recipe_sha=$(sha "${BASH_SOURCE[0]}")
busybox_sha=$(sha "$busybox")
if [ -s "$cache/manifest" ] && [ -s "$cache/vmlinuz" ] && [ -s "$cache/initramfs.gz" ] &&
  [ "$(manifest_get kernel_package)" = "$kpkg" ] &&
  [ "$(manifest_get kernel_package_version)" = "$kver" ] &&
  [ "$(manifest_get busybox_sha256)" = "$busybox_sha" ] &&
  [ "$(manifest_get recipe_sha256)" = "$recipe_sha" ] &&
  [ "$(sha "$cache/vmlinuz")" = "$(manifest_get vmlinuz_sha256)" ] &&
  [ "$(sha "$cache/vmlinux")" = "$(manifest_get vmlinux_sha256)" ] &&
  [ "$(sha "$cache/initramfs.gz")" = "$(manifest_get initramfs_sha256)" ]; then
  log "up to date: $cache ($kpkg $kver)"
  exit 0
fi

work=$(mktemp -d "$cache/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Keep the .deb so that a change to this recipe rebuilds without the network.
deb_dir=$cache/debs
mkdir -p "$deb_dir"
deb=$(find "$deb_dir" -maxdepth 1 -name "${kpkg}_*.deb" 2>/dev/null | head -n1)
want_deb="${kpkg}_${kver//:/%3a}_amd64.deb"
if [ -z "$deb" ] || [ "$(basename "$deb")" != "$want_deb" ]; then
  log "downloading $kpkg $kver"
  # The _apt sandbox user cannot write into root's home; download as the caller.
  (cd "$work" && apt-get -q -o APT::Sandbox::User="$(id -un)" download "$kpkg=$kver" >&2) ||
    die "apt-get download $kpkg=$kver failed"
  deb=$(find "$work" -maxdepth 1 -name "${kpkg}_*.deb" | head -n1)
  [ -n "$deb" ] || die "apt-get download produced no .deb for $kpkg"
  rm -f "$deb_dir"/*.deb
  mv "$deb" "$deb_dir/"
  deb=$deb_dir/$(basename "$deb")
fi

log "extracting $(basename "$deb")"
dpkg-deb -x "$deb" "$work/pkg"
vmlinuz=$(find "$work/pkg/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n1)
[ -n "$vmlinuz" ] || die "no /boot/vmlinuz-* in $deb"
krel=${vmlinuz##*/vmlinuz-}
moddir=$work/pkg/lib/modules/$krel
[ -d "$moddir" ] || die "no /lib/modules/$krel in $deb"

# Module dependencies come from each module's own .modinfo "depends=" field:
# the .deb ships no modules.dep (depmod runs in its postinst), and this avoids
# needing kmod on the build machine.
declare -A modpath=()
while IFS= read -r -d '' f; do
  n=${f##*/}
  n=${n%%.ko*}
  modpath[${n//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko*' -print0)
builtin_mods=$(sed 's,.*/,,; s/\.ko$//; s/-/_/g' "$moddir/modules.builtin" 2>/dev/null || true)

# bzImage -> the ELF vmlinux inside it: try each compressed-stream signature
# until one decompresses to an ELF (the approach of the kernel's
# scripts/extract-vmlinux). Debian 12 uses xz; zstd and gzip cover later ones.
extract_vmlinux() {
  local img=$1 out=$2 sig cmd pos
  for sig in 'xz:\xfd7zXZ\x00:xz -dcq' 'zstd:\x28\xb5\x2f\xfd:zstd -dcq' 'gzip:\x1f\x8b\x08:gzip -dcq'; do
    cmd=${sig##*:}
    command -v "${cmd%% *}" >/dev/null 2>&1 || continue
    sig=${sig#*:}
    sig=${sig%%:*}
    # shellcheck disable=SC2013 # offsets are numbers, one per word
    for pos in $(LC_ALL=C grep -aboP "$sig" "$img" | cut -d: -f1); do
      # Trailing bytes after the stream make the decompressor complain; the
      # ELF check below is what decides.
      tail -c +$((pos + 1)) "$img" | $cmd >"$out" 2>/dev/null || true
      if [ "$(head -c4 "$out" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
        return 0
      fi
    done
  done
  die "no ELF kernel found inside $img"
}

module_file() {  # module file -> uncompressed .ko on stdout
  case $1 in
    *.ko) cat "$1" ;;
    *.ko.xz) xz -dc "$1" ;;
    *.ko.zst) zstd -dcq "$1" ;;
    *.ko.gz) gzip -dc "$1" ;;
    *) die "unknown module format: $1" ;;
  esac
}
declare -A seen=()
order=()
add_module() {
  local m=${1//-/_} dep deps
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  if grep -qx "$m" <<<"$builtin_mods"; then return 0; fi
  [ -n "${modpath[$m]:-}" ] || die "module $m not in $kpkg"
  deps=$(module_file "${modpath[$m]}" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1)
  for dep in ${deps//,/ }; do add_module "$dep"; done
  order+=("$m")
}
for m in "${modules[@]}"; do add_module "$m"; done

root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,root,etc/acpi/PWRF,lib/modules,usr/share/udhcpc,var/log}
ln -s bin "$root/sbin"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
for m in "${order[@]}"; do
  module_file "${modpath[$m]}" >"$root/lib/modules/$m.ko"
done
printf '%s\n' "${order[@]}" >"$root/lib/modules/load-order"

cat >"$root/init" <<'EOF'
#!/bin/sh
# vmhost test guest: PID 1 sets up the system, reports on the serial console,
# then hands over to busybox init, which respawns the console shell forever.
export PATH=/bin HOME=/root TERM=vt100
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
exec </dev/console >/dev/console 2>&1

while read -r m; do
  insmod "/lib/modules/$m.ko" 2>/dev/null || echo "vmhost-guest: insmod $m failed"
done </lib/modules/load-order

# The ACPI power button (graceful shutdown from the host) powers off.
acpid -l /dev/null

# Test hooks from the kernel command line (documented in build-guest.sh).
static_ip= echo_port= markers= ticker= dirty= fill=
for arg in $(cat /proc/cmdline); do
  case $arg in
    vmhost.ticker=*) ticker=${arg#vmhost.ticker=} ;;
    vmhost.dirty=*) dirty=${arg#vmhost.dirty=} ;;
    vmhost.fill=*) fill=${arg#vmhost.fill=} ;;
    vmhost.ip=*) static_ip=${arg#vmhost.ip=} ;;
    vmhost.echo=*) echo_port=${arg#vmhost.echo=} ;;
    vmhost.marker=*) markers="$markers ${arg#vmhost.marker=}" ;;
  esac
done

ip link set lo up 2>/dev/null
for dev in /sys/class/net/*; do
  n=${dev##*/}
  [ "$n" = lo ] && continue
  echo "vmhost-guest: nic $n $(cat "$dev/address" 2>/dev/null)"
  ip link set "$n" up 2>/dev/null
  [ "$n" = eth0 ] || continue
  if [ -n "$static_ip" ]; then
    if ip addr add "$static_ip" dev eth0; then
      echo "vmhost-guest: eth0 address $static_ip"
    else
      echo "vmhost-guest: eth0 address $static_ip failed"
    fi
  else
    # Background: a NIC with no DHCP server behind it must not delay the boot.
    udhcpc -i eth0 -n -q -t 5 -T 2 -s /usr/share/udhcpc/default.script >/dev/null 2>&1 &
  fi
done
if [ -n "$echo_port" ]; then
  # -ll: keep listening after each connection; one cat per connection.
  nc -ll -p "$echo_port" -e /bin/cat </dev/null >/dev/null 2>&1 &
  echo "vmhost-guest: echo $echo_port"
fi
disks=
for b in /sys/block/*; do
  case ${b##*/} in vd*|sd*|hd*) disks="$disks ${b##*/}" ;; esac
done
[ -n "$disks" ] && echo "vmhost-guest: disks$disks"
for m in $markers; do
  dev=${m%%:*} text=${m#*:}
  case $text in
    ''|*[!A-Za-z0-9._-]*) echo "vmhost-guest: marker $dev bad text '$text'"; continue ;;
  esac
  [ ${#text} -le 64 ] || { echo "vmhost-guest: marker $dev text longer than 64"; continue; }
  if [ ! -b "/dev/$dev" ]; then
    echo "vmhost-guest: marker $dev no such disk"
    continue
  fi
  # The first line of the disk: "vmhost-marker:TEXT" when written by this hook.
  held=$(head -c 80 "/dev/$dev" | tr -d '\000' | head -n 1)
  case $held in
    vmhost-marker:?*) echo "vmhost-guest: marker $dev ${held#vmhost-marker:}" ;;
    *)
      echo "vmhost-guest: marker $dev none"
      if printf 'vmhost-marker:%s\n' "$text" | dd of="/dev/$dev" conv=notrunc,fsync 2>/dev/null &&
        sync; then
        echo "vmhost-guest: marker $dev wrote $text"
      else
        echo "vmhost-guest: marker $dev write failed"
      fi
      ;;
  esac
done

case $ticker in ''|*[!0-9]*) ticker= ;; esac
case $dirty in ''|*[!0-9]*) dirty= ;; esac
case $fill in ''|*[!0-9]*) fill= ;; esac
if [ -n "$fill" ]; then
  mkdir -p /run/fill
  mount -t tmpfs -o size=$((fill + 8))m tmpfs /run/fill 2>/dev/null
  dd if=/dev/urandom of=/run/fill/a bs=1M count="$fill" 2>/dev/null
  echo "vmhost-guest: filled $fill MiB"
fi
if [ -n "$ticker" ]; then
  first=${markers# }
  first=${first%% *}
  tdev=${first%%:*}
  (
    n=0
    while :; do
      n=$((n + 1))
      read -r u _ </proc/uptime
      d=-
      if [ -n "$tdev" ] && [ -b "/dev/$tdev" ]; then
        d=$(dd if="/dev/$tdev" bs=4096 count=1 iflag=direct 2>/dev/null | tr -d '\000' | head -n 1)
      fi
      echo "vmhost-guest: tick $n uptime=$u disk=${d:--}" >/dev/console
      sleep "$ticker"
    done
  ) &
fi
if [ -n "$dirty" ]; then
  mkdir -p /run/dirty
  mount -t tmpfs -o size=$((dirty * 2 + 8))m tmpfs /run/dirty 2>/dev/null
  dd if=/dev/urandom of=/run/dirty/a bs=1M count="$dirty" 2>/dev/null
  ( while :; do cp /run/dirty/a /run/dirty/b; done ) >/dev/null 2>&1 &
  echo "vmhost-guest: dirtying $dirty MiB"
fi

read -r up _ </proc/uptime
echo "vmhost-guest: booted $(uname -r) uptime=$up"
exec /bin/busybox init
# Not reached unless exec fails: PID 1 must never exit (the kernel would panic).
while :; do setsid cttyhack sh; sleep 1; done
EOF
chmod 755 "$root/init"

cat >"$root/etc/inittab" <<'EOF'
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/bin/poweroff
::shutdown:/bin/echo vmhost-guest: shutting down
EOF

# Power off at once (-f): nothing in this guest needs an orderly stop, and
# busybox init's TERM/KILL sequence would add ~2 s to every graceful shutdown.
cat >"$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "vmhost-guest: power button: powering off" >/dev/console
sync
poweroff -f
EOF
chmod 755 "$root/etc/acpi/PWRF/00000080"

cat >"$root/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/sh
# udhcpc hook: apply the lease and say so on the console.
case $1 in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
    echo "vmhost-guest: $interface address $ip/${mask:-24}" >/dev/console
    ;;
esac
exit 0
EOF
chmod 755 "$root/usr/share/udhcpc/default.script"
echo 'export PS1="vmhost-guest# "' >"$root/etc/profile"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

# Reproducible archive: fixed timestamps and order, no gzip name/time.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
  cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9 -n >"$work/initramfs.gz"
cp "$vmlinuz" "$work/vmlinuz"
extract_vmlinux "$vmlinuz" "$work/vmlinux"

vmlinuz_sha=$(sha "$work/vmlinuz")
vmlinux_sha=$(sha "$work/vmlinux")
initramfs_sha=$(sha "$work/initramfs.gz")
cat >"$work/manifest" <<EOF
# vmhost test guest, built by deploy/guest/build-guest.sh
kernel_package=$kpkg
kernel_package_version=$kver
kernel_release=$krel
modules=${order[*]}
busybox_sha256=$busybox_sha
recipe_sha256=$recipe_sha
cmdline=console=ttyS0 quiet cryptomgr.notests
vmlinuz_sha256=$vmlinuz_sha
vmlinux_sha256=$vmlinux_sha
initramfs_sha256=$initramfs_sha
EOF
# The manifest goes last: a build interrupted before it is redone next time.
rm -f "$cache/manifest"
mv -f "$work/vmlinuz" "$cache/vmlinuz"
mv -f "$work/vmlinux" "$cache/vmlinux"
mv -f "$work/initramfs.gz" "$cache/initramfs.gz"
mv -f "$work/manifest" "$cache/manifest"
log "built $cache: $krel, modules: ${order[*]}"
