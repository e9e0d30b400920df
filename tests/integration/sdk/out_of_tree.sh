#!/usr/bin/env bash
# Builds the SDK example out of tree against an installed SDK, as a third
# party would, then runs the installed conformance kit and host on it.
# usage: out_of_tree.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
. "$src/deploy/lib/require.sh"
require_tools cmake:cmake c++:g++ make:make
work=$(mktemp -d /tmp/vmhost-sdk-oot-XXXXXX)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/lib/cmake/VmhostSdk/VmhostSdkConfig.cmake"
test -f "$work/prefix/lib/cmake/VmhostSdk/VmhostSdkConfigVersion.cmake"
test -f "$work/prefix/include/vmhost/plugin.h"
test -f "$work/prefix/include/vmhost/schema/scheduler.capnp"

# The example gets nothing from the source tree: only the installed prefix.
cp -r "$src/sdk/examples/hello-scheduler" "$work/example"
cmake -S "$work/example" -B "$work/example-build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/example-build" -j2 >/dev/null
so="$work/example-build/vmhost-scheduler-first-fit.so"
test -f "$so"

"$work/prefix/bin/vmhost" plugins inspect "$so"
"$work/prefix/bin/vmhost-plugin-check" "$so"

# The host picks it up by name from a plugin directory, or by path.
cat >"$work/vmhost.yaml" <<YAML
pluginDir: $work/prefix/lib/vmhost/plugins
plugins:
  scheduler: {path: $so, config: {reserveMemoryBytes: 1048576}}
  storage: {name: local, config: {pool: $work/pool}}
YAML
"$work/prefix/bin/vmhost" check-config "$work/vmhost.yaml"
echo "out-of-tree plugin: OK"
