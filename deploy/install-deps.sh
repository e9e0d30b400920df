#!/usr/bin/env bash
# Installs every build and runtime dependency of vmhost from Debian 12 packages.
# Idempotent: packages already installed are not touched, and apt is only
# contacted when something is missing. Run as root (or with sudo available).
set -euo pipefail

# Build: compiler, CMake, and the libraries the host, SDK and plugins link.
build_pkgs=(
  build-essential cmake pkg-config git
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
)

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
echo "install-deps: done"
