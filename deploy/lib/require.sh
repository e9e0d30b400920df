# Sourced by the scripts in deploy/ and tests/. require_tools checks, before a
# script does anything, that the command-line tools it calls are installed,
# and names the Debian package of each one missing, so that a machine nobody
# prepared says what to install instead of failing halfway with "command not
# found". deploy/install-deps.sh installs every package named here.
#
#   . "$root/deploy/lib/require.sh"
#   require_tools curl:curl qemu-img:qemu-utils
#
# Scripts list every tool they call except those of the packages every Debian
# system has, the ones debootstrap --variant=minbase installs (coreutils,
# util-linux, bash, grep, sed, mawk, findutils, diffutils, gzip, tar, mount,
# hostname, dpkg, apt, passwd, libc-bin). procps (pgrep, pkill), iproute2 (ip)
# and python3 are not among them.
#
# A missing tool ends the script with status 1: a test fails, never skips.

# deploy/install-deps.sh of the checkout this file belongs to.
_vmhost_install_deps="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/install-deps.sh"

# missing_tools TOOL:PACKAGE...: prints one line per tool not on PATH, naming
# its package; returns 1 if any is missing. For callers that refuse in their
# own way (the cluster harness's preflight).
missing_tools() {
  local spec tool pkg rc=0
  for spec in "$@"; do
    tool=${spec%%:*}
    pkg=${spec#*:}
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "${0##*/}: needs '$tool' (Debian package $pkg): run $_vmhost_install_deps" >&2
      rc=1
    fi
  done
  return "$rc"
}

# require_tools TOOL:PACKAGE...: as missing_tools, then exits 1 if any is missing.
require_tools() {
  missing_tools "$@" || exit 1
}
