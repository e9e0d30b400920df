#!/usr/bin/env bash
# Sets up and runs the test suite: installs dependencies, builds, starts the
# services the tests need, runs every tier but the benchmarks, stops the
# services. Extra arguments go to ctest (e.g. -L unit, -R loader).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

. "$root/deploy/lib/require.sh"

"$root/deploy/install-deps.sh"
require_tools ctest:cmake
"$root/deploy/build.sh"

cd "$build"
if [ $# -eq 0 ]; then
  set -- -LE bench
fi
ctest --output-on-failure --timeout 900 -j "${JOBS:-$(nproc)}" "$@"
