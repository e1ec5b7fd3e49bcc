#!/bin/bash
# deps.sh: make sure the Debian packages kiln builds and tests with are installed.
# Silent and quick when all are present; installs what is missing when root; otherwise
# prints the apt-get command to run and exits 1.
set -euo pipefail
pkgs=(build-essential clang libcmocka-dev bats bats-assert bats-support qemu-system-x86
      busybox-static cpio linux-source-6.1 flex bison bc libelf-dev libssl-dev xz-utils
      e2fsprogs libseccomp-dev libcap-ng-dev libfdt-dev lz4 strace)
missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages: ${missing[*]}" >&2
  echo "run: sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing[*]}" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
