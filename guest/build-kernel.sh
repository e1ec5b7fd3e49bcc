#!/bin/bash
# build-kernel.sh: build the kiln guest bzImage from Debian's linux-source-6.1 and
# guest/kernel.config, cached outside the tree keyed by (config, source version, this script).
# usage: guest/build-kernel.sh OUT   (OUT gets a copy of, or link to, the cached bzImage)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-kernel.sh OUT}
src=/usr/src/linux-source-6.1.tar.xz
[ -f "$src" ] || { echo "build-kernel: $src missing (run: make deps)" >&2; exit 1; }
ver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %s "$src")
key=$( { cat "$here/kernel.config" "$0"; echo "$ver"; } | sha256sum | cut -c1-16)
cache=${KILN_CACHE:-/var/cache/kiln}
dst=$cache/kernel-$key/bzImage
if [ ! -f "$dst" ]; then
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/kbuild.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "build-kernel: building guest kernel $key (several minutes, once per machine)" >&2
  start=$(date +%s)
  tar -C "$work" -xf "$src"
  cd "$work"/linux-source-6.1
  make -s ARCH=x86_64 allnoconfig >/dev/null
  KCONFIG_CONFIG=.config scripts/kconfig/merge_config.sh -m -O . .config "$here/kernel.config" >/dev/null
  make -s ARCH=x86_64 olddefconfig >/dev/null
  # every line of the fragment must have survived olddefconfig
  miss=0
  while IFS= read -r l; do
    case "$l" in CONFIG_*) grep -qx "$l" .config || { echo "build-kernel: not applied: $l" >&2; miss=1; };; esac
  done < "$here/kernel.config"
  [ $miss = 0 ] || exit 1
  make -s ARCH=x86_64 -j"$(nproc)" bzImage KBUILD_BUILD_USER=kiln KBUILD_BUILD_HOST=kiln
  mkdir -p "$cache/kernel-$key"
  cp arch/x86/boot/bzImage "$dst.tmp" && mv "$dst.tmp" "$dst"
  cp .config "$cache/kernel-$key/config"
  echo "build-kernel: built in $(( $(date +%s) - start )) s, $(stat -c %s "$dst") bytes" >&2
fi
mkdir -p "$(dirname "$out")"
cp "$dst" "$out.tmp" && mv "$out.tmp" "$out"
