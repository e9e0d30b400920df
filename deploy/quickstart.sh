#!/usr/bin/env bash
# The quick start: installs dependencies, builds vmhost, validates the
# example config and lists the plugins the host would load.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

"$root/deploy/install-deps.sh"
"$root/deploy/build.sh"

echo
echo "== vmhost $("$build/bin/vmhost" version)"
echo "== plugins in $build/lib/vmhost/plugins:"
"$build/bin/vmhost" plugins list
echo
echo "== the example config, deploy/vmhost.yaml:"
"$build/bin/vmhost" check-config "$root/deploy/vmhost.yaml"
"$build/bin/vmhost" plugins list --config "$root/deploy/vmhost.yaml"
cat <<TXT

Next:
  $build/bin/vmhost plugins inspect $build/lib/vmhost/plugins/vmhost-scheduler-default.so
  $build/bin/vmhost-plugin-check $build/lib/vmhost/plugins/vmhost-scheduler-binpack.so
  edit deploy/vmhost.yaml (swap 'default' for 'binpack') and run check-config again.
TXT
