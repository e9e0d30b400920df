#!/usr/bin/env bash
# Configures and builds vmhost into BUILD_DIR (default: build/). Idempotent:
# re-running only rebuilds what changed.
#   BUILD_TYPE=RelWithDebInfo  VMHOST_SANITIZE=OFF  VMHOST_WERROR=OFF  JOBS=$(nproc)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/deploy/lib/require.sh"
# The compiler, and make for CMake's default generator (ninja is used when present).
require_tools cmake:cmake c++:g++ make:make pkg-config:pkg-config capnp:capnproto
build=${BUILD_DIR:-$root/build}
jobs=${JOBS:-$(nproc)}
generator=()
if command -v ninja >/dev/null 2>&1 && [ ! -f "$build/Makefile" ]; then generator=(-G Ninja); fi
cmake -S "$root" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
  -DVMHOST_SANITIZE="${VMHOST_SANITIZE:-OFF}" \
  -DVMHOST_WERROR="${VMHOST_WERROR:-OFF}" >/dev/null
cmake --build "$build" -j "$jobs"
