#!/bin/bash
# stock-kernel.sh: fetch Debian's stock kernel (the package linux-image-amd64 depends on) once
# into a cache, then copy its vmlinuz to OUT. The cache also keeps the few modules that
# tests/kvmhost.sh needs (KVM, virtio, 9p, and vhost-vsock for the QEMU peer of bench/vsock.sh).
# usage: guest/stock-kernel.sh OUT      copy the cached vmlinuz to OUT
#        guest/stock-kernel.sh --dir    print the cache directory (vmlinuz, modules/)
set -euo pipefail
out=${1:?usage: stock-kernel.sh OUT | --dir}
cache=${KILN_CACHE:-/var/cache/kiln}

depname() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
pkg=$(depname)
if [ -z "$pkg" ]; then
  [ "$(id -u)" = 0 ] || { echo "stock-kernel: no apt lists; run: apt-get update" >&2; exit 1; }
  apt-get update -qq
  pkg=$(depname)
fi
[ -n "$pkg" ] || { echo "stock-kernel: cannot resolve linux-image-amd64" >&2; exit 1; }

# .2: the module set grew (vhost, vsock); an older cache lacks them
dir=$cache/stock-$pkg.2
if [ ! -f "$dir/vmlinuz" ]; then
  mkdir -p "$cache"
  t=$(mktemp -d "$cache/stock.XXXXXX")
  trap 'rm -rf "$t"' EXIT
  echo "stock-kernel: fetching $pkg (once per machine)" >&2
  (cd "$t" && apt-get download "$pkg" >/dev/null 2>&1) \
    || { echo "stock-kernel: apt-get download $pkg failed" >&2; exit 1; }
  dpkg -x "$t"/*.deb "$t/root"
  mkdir -p "$t/out/modules"
  cp "$t"/root/boot/vmlinuz-* "$t/out/vmlinuz"
  # Keep only what kvmhost loads: KVM, virtio-pci, 9p, vhost-vsock (with their dependencies).
  k=$(echo "$t"/root/lib/modules/*/kernel)
  (cd "$k" && find virt arch/x86/kvm drivers/crypto/ccp drivers/virtio net/9p fs/netfs fs/fscache fs/9p \
     drivers/vhost net/vmw_vsock \
     -name '*.ko*' 2>/dev/null | cpio --quiet -pdm "$t/out/modules")
  rm -rf "$dir" && mv "$t/out" "$dir"
fi
if [ "$out" = --dir ]; then echo "$dir"; exit 0; fi
mkdir -p "$(dirname "$out")"
cp "$dir/vmlinuz" "$out.tmp" && mv "$out.tmp" "$out"
