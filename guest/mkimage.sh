#!/bin/bash
# mkimage.sh: build a read-only ext4 root image for kiln guests, without root (mke2fs -d).
# usage: guest/mkimage.sh OUT KILN_INIT [--python]
#   busybox (static) with applet links, KILN_INIT as /sbin/init, /etc/{passwd,group,shadow} with
#   root and sandbox (uid/gid 1000), empty /proc /sys /dev /tmp /run /work /root.
#   --python adds the host's /usr/bin/python3.11, its stdlib (no test suites, no tkinter/idle)
#   and the shared libraries ldd says it and its extension modules need.
# Every inode is owned by 0:0 whoever builds it (debugfs rewrites the owners in the image).
set -euo pipefail
out=${1:?usage: mkimage.sh OUT KILN_INIT [--python]}
init=${2:?usage: mkimage.sh OUT KILN_INIT [--python]}
python=${3:-}
out=$(realpath -m "$out"); init=$(realpath "$init")
BUSYBOX=${BUSYBOX:-/bin/busybox}
PY=${PYTHON:-/usr/bin/python3.11}

file "$BUSYBOX" | grep -q 'statically linked' || { echo "mkimage: $BUSYBOX is not static" >&2; exit 1; }
stage=$(mktemp -d "${out}.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
cd "$stage"
mkdir -p bin sbin usr/bin usr/sbin etc proc sys dev tmp run work root lib lib64 usr/lib
chmod 1777 tmp
chmod 0700 root
# Never cp onto an existing name: it could be a link to a host file (applet links point to
# /bin/busybox). The applet links are made last, for names nothing else took.
cp --remove-destination "$BUSYBOX" bin/busybox
cp --remove-destination "$init" sbin/init
chmod 0755 bin/busybox sbin/init
cat > etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
sandbox:x:1000:1000:sandbox:/work:/bin/sh
EOF
cat > etc/group <<'EOF'
root:x:0:
tty:x:5:
sandbox:x:1000:
EOF
cat > etc/shadow <<'EOF'
root:!:1::::::
sandbox:!:1::::::
EOF
chmod 0644 etc/passwd etc/group
chmod 0600 etc/shadow
echo kiln > etc/hostname
printf '127.0.0.1 localhost kiln\n::1 localhost\n' > etc/hosts

if [ "$python" = --python ]; then
  [ -x "$PY" ] || { echo "mkimage: $PY missing" >&2; exit 1; }
  ver=$(basename "$PY")              # python3.11
  cp --remove-destination "$PY" "usr/bin/$ver"
  ln -s "$ver" usr/bin/python3
  ln -s "$ver" usr/bin/python
  mkdir -p usr/lib
  # The stdlib without test suites and GUI/dev tools; keep plain .pyc caches (root is read-only).
  tar -C /usr/lib -cf - \
    --exclude="$ver/test" --exclude="$ver/*/test" --exclude="$ver/*/tests" \
    --exclude="$ver/idlelib" --exclude="$ver/tkinter" --exclude="$ver/turtledemo" \
    --exclude="$ver/ensurepip" --exclude="$ver/lib2to3" --exclude="$ver/site-packages" \
    --exclude="$ver/dist-packages" --exclude="$ver/config-*" \
    --exclude='*.opt-1.pyc' --exclude='*.opt-2.pyc' "$ver" | tar -C usr/lib -xf -
  # Shared libraries of the interpreter and its extension modules, with their symlink names.
  libs=$( { ldd "$PY"; find "usr/lib/$ver/lib-dynload" -name '*.so' -exec ldd {} \; ; } 2>/dev/null \
          | awk '/=> \//{print $3} /^\t\/lib64\//{print $1}' | sort -u)
  for l in $libs; do
    d=${l%/*}; mkdir -p ".$d"
    cp --remove-destination -L "$l" ".$l"
  done
  mkdir -p lib64
  [ -e lib64/ld-linux-x86-64.so.2 ] || cp --remove-destination -L /lib64/ld-linux-x86-64.so.2 lib64/
fi

for a in $(bin/busybox --list-full); do [ -e "$a" ] || [ -L "$a" ] || ln -s /bin/busybox "$a"; done

# Size: contents plus a quarter and 8 MiB for ext4's own structures.
kb=$(du -sk --apparent-size . | cut -f1)
kb=$(( kb + kb / 4 + 8192 ))
cd - >/dev/null
rm -f "$out.tmp"; truncate -s "${kb}k" "$out.tmp"
mke2fs -q -F -t ext4 -O ^has_journal -m 0 -L kiln-root -E root_owner=0:0 -d "$stage" "$out.tmp" "${kb}k"
# Owners: everything 0:0 (the staging files belong to whoever ran make).
if [ "$(id -u)" != 0 ] || [ -n "$(find "$stage" ! -user 0 -o ! -group 0 | head -1)" ]; then
  (cd "$stage" && find . -mindepth 1 | sed 's|^\.||' | while IFS= read -r p; do
     printf 'sif "%s" uid 0\nsif "%s" gid 0\n' "$p" "$p"; done) > "$stage.debugfs"
  debugfs -w -f "$stage.debugfs" "$out.tmp" >/dev/null 2>&1
  rm -f "$stage.debugfs"
fi
e2fsck -fn "$out.tmp" >/dev/null 2>&1 || { echo "mkimage: e2fsck found errors in $out.tmp" >&2; exit 1; }
mv "$out.tmp" "$out"
echo "mkimage: $out $(du -h --apparent-size "$out" | cut -f1)" >&2
