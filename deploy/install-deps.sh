#!/usr/bin/env bash
# Installs every build and runtime dependency of vmhost from Debian 12 packages.
# Idempotent: packages already installed are not touched, and apt is only
# contacted when something is missing. Run as root (or with sudo available).
set -euo pipefail
# shellcheck source=deploy/lib/require.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/require.sh"
# as_root CMD...: root runs CMD itself; anyone else through sudo (checked for
# only then: a prepared machine needs no root at all).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else require_tools sudo:sudo && sudo "$@"; fi
}

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
  # the VM lifecycle benchmark (tests/bench/lifecycle, standard library only),
  # the harness's free_port and the tests' small HTTP server and JSON checks
  python3
  # the quick start's health check and the tests that call the API directly
  # (/metrics, watches, the TLS API's status codes)
  curl
  # integration_cluster_tls verifies the node certificates `vmhost init`'s CA issues
  openssl
  # xmllint: virt-xml-validate (libvirt-clients) runs it to check the domain XML
  # goldens against libvirt's schema (unit_node_domain_xml)
  libxml2-utils
  # tests/packaging: systemd-analyze verify; debootstrap makes the fresh Debian 12 root;
  # cpack -G DEB computes the packages' library dependencies with dpkg-shlibdeps
  # (dpkg-dev), which needs `file`
  systemd debootstrap file dpkg-dev
)

# libvirt's QEMU driver (libvirtd and qemu:///embed alike) resolves its
# default user, libvirt-qemu, before it reads qemu.conf, so it fails to start
# without one even when qemu.conf says user = "root". libvirt-daemon-system
# would create it but drags in systemd units; create it here instead.
ensure_qemu_user() {
  getent passwd libvirt-qemu >/dev/null && return 0
  getent group libvirt-qemu >/dev/null || as_root groupadd --system libvirt-qemu
  as_root useradd --system --gid libvirt-qemu --no-create-home --home-dir /var/lib/libvirt \
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

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A container without systemd must not try to start services on install.
if [ ! -d /run/systemd/system ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
  as_root chmod +x /usr/sbin/policy-rc.d
  trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
fi
attempt=0
until as_root apt-get update -q; do
  attempt=$((attempt + 1)); [ $attempt -ge 3 ] && { echo "install-deps: apt-get update failed" >&2; exit 1; }
  sleep 5
done
as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
ensure_qemu_user
echo "install-deps: done"
