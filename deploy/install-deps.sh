#!/usr/bin/env bash
# Installs every build and runtime dependency of vmhost from Debian 12 packages.
# Idempotent: packages already installed are not touched, and apt is only
# contacted when something is missing. Run as root (or with sudo available).
set -euo pipefail

# Build: compiler, CMake, and the libraries the host, SDK and plugins link.
build_pkgs=(
  build-essential cmake pkg-config git
  clang  # the SDK's out-of-tree test builds plugins with clang++ as well as g++
  capnproto libcapnp-dev
  libboost-dev libboost-filesystem-dev libboost-test-dev libboost-program-options-dev
  libsimdjson-dev libcurl4-openssl-dev libvirt-dev libsqlite3-dev libyaml-cpp-dev
  libssl-dev libbenchmark-dev
  # RFC 7386 JSON merge patch and object manipulation in the API layer
  # (simdjson, used elsewhere, is read-only).
  nlohmann-json3-dev
)
# Run and test: libvirt + QEMU (TCG), the tiny guest's parts, etcd, kubectl,
# and the tools the multi-host harness uses.
runtime_pkgs=(
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
  busybox-static cpio xz-utils zstd
  iproute2 dnsmasq-base procps psmisc
  # NAT networks the node creates (libvirt-network's `networks`): libvirtd's
  # network driver ships in libvirt-daemon on Debian 12 (there is no
  # libvirt-daemon-driver-network before Debian 13); it runs dnsmasq
  # (dnsmasq-base) for DHCP/DNS and the iptables binaries for NAT rules.
  iptables
  # the multi-host harness (tests/cluster): unshare, nsenter, setsid, setpriv
  util-linux
  # the VM lifecycle benchmark (tests/bench/lifecycle, standard library only)
  python3
)

# libvirt's QEMU driver (libvirtd and qemu:///embed alike) resolves its
# default user, libvirt-qemu, before it reads qemu.conf, so it fails to start
# without one even when qemu.conf says user = "root". libvirt-daemon-system
# would create it but drags in systemd units; create it here instead.
ensure_qemu_user() {
  getent passwd libvirt-qemu >/dev/null && return 0
  local sudo=
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  getent group libvirt-qemu >/dev/null || $sudo groupadd --system libvirt-qemu
  $sudo useradd --system --gid libvirt-qemu --no-create-home --home-dir /var/lib/libvirt \
    --shell /usr/sbin/nologin --comment "Libvirt Qemu" libvirt-qemu
  echo "install-deps: created the libvirt-qemu user"
}

want=("${build_pkgs[@]}" "${runtime_pkgs[@]}")
missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done
# kubectl: these machines may ship one; on a fresh Debian 12 it comes from
# kubernetes-client. Either is fine (the API must work with both).
if ! command -v kubectl >/dev/null 2>&1; then
  missing+=(kubernetes-client)
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  ensure_qemu_user
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A container without systemd must not try to start services on install.
if [ ! -d /run/systemd/system ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
attempt=0
until $SUDO apt-get update -q; do
  attempt=$((attempt + 1)); [ $attempt -ge 3 ] && { echo "install-deps: apt-get update failed" >&2; exit 1; }
  sleep 5
done
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
ensure_qemu_user
echo "install-deps: done"
