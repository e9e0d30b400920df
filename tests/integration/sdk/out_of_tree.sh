#!/usr/bin/env bash
# The SDK as a third party meets it. Against the installed SDK only:
#  - the conformance kit builds from sdk/ alone (a copy of it, configured as
#    its own project, with clang++);
#  - the SDK example (a scheduler, vmhost_add_plugin) and a second plugin
#    (third_party/: a storage plugin, once with vmhost_add_plugin and once as
#    a plain add_library linked to Vmhost::schema) build with g++ and with
#    clang++ under -Wall -Wextra -Wmissing-prototypes -Werror, the SDK
#    headers included as ordinary (non-system) headers so their warnings show;
#  - each of the six passes `vmhost-plugin-check --strict` (the kit built
#    above), and the installed host loads them from a config file and names
#    the key when their config is wrong.
# usage: out_of_tree.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
. "$src/deploy/lib/require.sh"
require_tools cmake:cmake g++:g++ gcc:gcc clang++:clang clang:clang make:make
work=$(mktemp -d /tmp/vmhost-sdk-oot-XXXXXX)
trap 'rm -rf "$work"' EXIT
step() { echo "--- $*"; }

step "installing vmhost into $work/prefix"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in lib/cmake/VmhostSdk/VmhostSdkConfig.cmake lib/cmake/VmhostSdk/VmhostSdkConfigVersion.cmake \
  lib/cmake/VmhostSdk/VmhostSdkTargets.cmake include/vmhost/plugin.h include/vmhost/plugin.hpp; do
  test -f "$prefix/$f" || { echo "not installed: $f" >&2; exit 1; }
done
for s in common scheduler storage network migration; do
  for ext in capnp capnp.h capnp.c++; do
    test -f "$prefix/include/vmhost/schema/$s.$ext" || {
      echo "not installed: include/vmhost/schema/$s.$ext" >&2
      exit 1
    }
  done
done
grep -q 'Vmhost::schema' "$prefix/lib/cmake/VmhostSdk/VmhostSdkTargets.cmake"

# Which compiler a CMake build directory configured.
compiler_id() { sed -n 's/^set(CMAKE_CXX_COMPILER_ID "\(.*\)")$/\1/p' "$1"/CMakeFiles/*/CMakeCXXCompiler.cmake; }

step "building the conformance kit from a copy of sdk/ alone, with clang++"
cp -r "$src/sdk" "$work/sdk-src"
cmake -S "$work/sdk-src" -B "$work/sdk-build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" \
  -DCMAKE_INSTALL_PREFIX="$work/kit-prefix" >/dev/null
test "$(compiler_id "$work/sdk-build")" = Clang
cmake --build "$work/sdk-build" -j2 >/dev/null
cmake --install "$work/sdk-build" >/dev/null
kit=$work/kit-prefix/bin/vmhost-plugin-check
test -x "$kit"
# The standalone SDK is a whole SDK package too.
test -f "$work/kit-prefix/lib/cmake/VmhostSdk/VmhostSdkConfig.cmake"
test -f "$work/kit-prefix/include/vmhost/schema/common.capnp.h"

cp -r "$src/sdk/examples/hello-scheduler" "$work/example"
cp -r "$src/tests/integration/sdk/third_party" "$work/third-party"
flags="-Wall -Wextra -Wmissing-prototypes -Wmissing-declarations -Werror"
plugins=()
for cxx in g++ clang++; do
  case $cxx in g++) cc=gcc id=GNU ;; clang++) cc=clang id=Clang ;; esac
  for project in example third-party; do
    dir=$work/$project-$cxx
    step "building $project with $cxx"
    # CMAKE_NO_SYSTEM_FROM_IMPORTED: the SDK headers as the plugin's own, so
    # that warnings in them (and in VMHOST_PLUGIN's expansion) fail the build.
    cmake -S "$work/$project" -B "$dir" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_C_COMPILER=$cc -DCMAKE_CXX_COMPILER=$cxx -DCMAKE_CXX_FLAGS="$flags" \
      -DCMAKE_NO_SYSTEM_FROM_IMPORTED=ON >/dev/null
    test "$(compiler_id "$dir")" = $id
    cmake --build "$dir" -j2 >/dev/null
  done
  plugins+=("$work/example-$cxx/vmhost-scheduler-first-fit.so"
    "$work/third-party-$cxx/vmhost-storage-tiny-dir.so"
    "$work/third-party-$cxx/vmhost-storage-tiny-dir-plain.so")
done

for so in "${plugins[@]}"; do
  step "vmhost-plugin-check --strict ${so#"$work"/}"
  test -f "$so"
  "$kit" --strict "$so"
done

step "the installed host loads them"
"$prefix/bin/vmhost" plugins inspect "${plugins[0]}"
"$prefix/bin/vmhost" plugins inspect "${plugins[5]}"
config() {
  cat >"$work/vmhost.yaml" <<YAML
pluginDir: $prefix/lib/vmhost/plugins
plugins:
  scheduler: {path: ${plugins[3]}, config: {reserveMemoryBytes: $1}}
  storage: {path: ${plugins[5]}, config: {$2}}
YAML
}
config 1048576 "pool: $work/pool"
"$prefix/bin/vmhost" check-config "$work/vmhost.yaml"

# A wrong config names the slot, the plugin and the key, in one line (the
# last: plugins created before the failing one may log).
expect_refusal() {
  local out
  if out=$("$prefix/bin/vmhost" check-config "$work/vmhost.yaml" 2>&1); then
    echo "check-config accepted a bad config: $out" >&2
    exit 1
  fi
  out=$(tail -n 1 <<<"$out")
  if [ "$out" != "$1" ]; then
    printf 'check-config said:\n  %s\nexpected:\n  %s\n' "$out" "$1" >&2
    exit 1
  fi
  echo "$out"
}
config 1048576 "pol: $work/pool"
expect_refusal "$work/vmhost.yaml: plugins.storage (tiny-dir): config: unknown key \"pol\" (known keys: pool, maxVolumeBytes)"
config lots "pool: $work/pool"
expect_refusal "$work/vmhost.yaml: plugins.scheduler (first-fit): config: key \"reserveMemoryBytes\": expected a number, got the string \"lots\""
echo "out-of-tree plugins: OK"
