#!/bin/bash
# kvmhost.sh: run a command on an emulated x86_64 host that has /dev/kvm, for machines without
# usable KVM. QEMU (TCG, -cpu max, which emulates AMD SVM) boots Debian's stock kernel, loads
# kvm-amd (kvm-intel is tried and may fail), mounts this machine's / read-only over 9p, tmpfs on
# /tmp /run /var/tmp /root, cgroup2, and DIR (default: cwd) read-write at the same path, then
# runs the command there with stdin from /dev/null. Exits with the command's status; 124 if
# the whole run exceeded the timeout; 125 if the emulated host failed before reporting one.
# usage: tests/kvmhost.sh [-d DIR] [-m MiB] [-c CPUS] [-t SECONDS] [-s SECONDS] [--] command...
# -s: stall limit: when the emulated host prints nothing for that long it is taken as hung
#     (seen: the whole emulated host freezing under a nested guest), stopped, and 124 returned;
#     with -s, a kernel report of a CPU in soft lockup for 120 s or more counts as hung too.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
DIR=$PWD MEM=4096 CPUS=2 TMO=1500 STALL=0
while [ $# -gt 0 ]; do case $1 in
  -d) DIR=$(realpath "$2"); shift 2;; -m) MEM=$2; shift 2;; -c) CPUS=$2; shift 2;;
  -t) TMO=$2; shift 2;; -s) STALL=$2; shift 2;; --) shift; break;; -*) echo "kvmhost: unknown option $1" >&2; exit 2;;
  *) break;; esac; done
[ $# -gt 0 ] || { echo "usage: kvmhost.sh [-d DIR] [-m MiB] [-c CPUS] [-t SECONDS] [-s SECONDS] [--] command..." >&2; exit 2; }
case $DIR in *[[:space:]]*) echo "kvmhost: work dir must not contain spaces: $DIR" >&2; exit 2;; esac
command -v qemu-system-x86_64 >/dev/null || { echo "kvmhost: qemu-system-x86_64 missing (run: make deps)" >&2; exit 2; }
[ -x /bin/busybox ] || { echo "kvmhost: /bin/busybox missing (run: make deps)" >&2; exit 2; }

# The L1 kernel and its modules: Debian's stock kernel, shared with guest/stock-kernel.sh.
kdir=$("$here/../guest/stock-kernel.sh" --dir)
CACHE=${KILN_CACHE:-/var/cache/kiln}/kvmhost/$(basename "$kdir")
MODS="irqbypass:virt/lib kvm:arch/x86/kvm ccp:drivers/crypto/ccp kvm-amd:arch/x86/kvm kvm-intel:arch/x86/kvm
  virtio_ring:drivers/virtio virtio:drivers/virtio virtio_pci_modern_dev:drivers/virtio
  virtio_pci_legacy_dev:drivers/virtio virtio_pci:drivers/virtio 9pnet:net/9p 9pnet_virtio:net/9p
  netfs:fs/netfs fscache:fs/fscache 9p:fs/9p vhost_iotlb:drivers/vhost vhost:drivers/vhost vsock:net/vmw_vsock
  vmw_vsock_virtio_transport_common:net/vmw_vsock vhost_vsock:drivers/vhost"
# Rebuild the L1 initramfs when this script changes.
key=$(sha256sum "$0" | cut -c1-16)
if [ ! -f "$CACHE/l1-$key.cpio.gz" ]; then
  mkdir -p "$CACHE"
  r=$(mktemp -d "$CACHE/l1.XXXXXX")
  mkdir -p "$r"/{bin,proc,sys,dev,mods,host}
  cp /bin/busybox "$r/bin/"
  for m in $MODS; do cp "$kdir/modules/${m#*:}/${m%%:*}.ko" "$r/mods/"; done
  cat > "$r/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc; $B mount -t sysfs sys /sys; $B mount -t devtmpfs dev /dev
$B ln -s /proc/self/fd /dev/fd; $B ln -s fd/0 /dev/stdin; $B ln -s fd/1 /dev/stdout; $B ln -s fd/2 /dev/stderr
arg() { $B sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
W=$(arg kvmhost.dir) ID=$(arg kvmhost.id)
for m in irqbypass kvm ccp kvm-amd virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci 9pnet 9pnet_virtio netfs fscache 9p; do
  $B insmod /mods/$m.ko || echo "kvmhost: insmod $m failed"; done
$B insmod /mods/kvm-intel.ko 2>/dev/null  # fails on the emulated AMD CPU; harmless
# vhost-vsock: only bench/vsock.sh's QEMU peer (vhost-vsock-device) uses it
for m in vhost_iotlb vhost vsock vmw_vsock_virtio_transport_common vhost_vsock; do
  $B insmod /mods/$m.ko || echo "kvmhost: insmod $m failed"; done
[ -c /dev/kvm ] || echo "kvmhost: no /dev/kvm in the emulated host"
o=trans=virtio,version=9p2000.L,msize=512000
$B mount -t 9p -o $o,cache=loose,ro hostroot /host || echo "kvmhost: mounting / failed"
$B mount --rbind /dev /host/dev; $B mount -t proc proc /host/proc; $B mount -t sysfs sys /host/sys
$B mount -t cgroup2 cgroup2 /host/sys/fs/cgroup 2>/dev/null || echo "kvmhost: no cgroup2"
for d in /tmp /run /var/tmp /root; do $B mount -t tmpfs tmpfs /host$d; done
$B mount -t devpts devpts /host/dev/pts 2>/dev/null; $B mount -t tmpfs shm /host/dev/shm 2>/dev/null
$B mkdir -p /host$W 2>/dev/null  # under /tmp or /run: on the tmpfs just mounted
$B mount -t 9p -o $o work /host$W || echo "kvmhost: mounting $W failed"
echo kvmhost-start
$B chroot /host /bin/bash -c 'cd "$0" && export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root KILN_IN_KVMHOST=1 && bash ".kvmhost-$1.cmd" </dev/null; rc=$?; echo $rc > ".kvmhost-$1.rc"; echo "kvmhost-exit=$rc"' "$W" "$ID"
$B sync; $B poweroff -f
INIT
  chmod +x "$r/init"
  (cd "$r" && find . -mindepth 1 | cpio --quiet -o -H newc -R 0:0 | gzip -1) > "$r.cpio.gz"
  mv "$r.cpio.gz" "$CACHE/l1-$key.cpio.gz"; rm -rf "$r"
fi

id=$$.$RANDOM
cmdf=$DIR/.kvmhost-$id.cmd rcf=$DIR/.kvmhost-$id.rc log=$DIR/.kvmhost-$id.log
stallf=$DIR/.kvmhost-$id.stalled watch=
LOCKUP='soft lockup - CPU#[0-9]+ stuck for ([0-9]{4,}|1[2-9][0-9]|[2-9][0-9][0-9])s!'  # a CPU stuck 120 s or more
trap 'rm -f "$cmdf" "$rcf" "$log" "$stallf"; [ -z "$watch" ] || kill "$watch" 2>/dev/null' EXIT
printf '%q ' "$@" > "$cmdf"
set +e
if [ "$STALL" -gt 0 ]; then
  # Watchdog: the log grows with everything the emulated host prints; no growth for STALL
  # seconds means it froze. So does a kernel report of a CPU in soft lockup for 120 s or more:
  # seen several times, both L1 CPUs stuck for good, while those very reports every ~30 s kept
  # the log growing (the file then waited out its whole time limit). Stop its QEMU (found by
  # the unique id on its command line).
  ( last=-1 since=$(date +%s)
    while sleep 10; do
      sz=$(stat -c %s "$log" 2>/dev/null || echo 0)
      if grep -qE "$LOCKUP" "$log" 2>/dev/null; then
        touch "$stallf"; pkill -TERM -f "kvmhost.id=$id" ; sleep 10; pkill -KILL -f "kvmhost.id=$id"; exit 0
      fi
      if [ "$sz" != "$last" ]; then last=$sz since=$(date +%s)
      elif [ $(( $(date +%s) - since )) -ge "$STALL" ]; then
        touch "$stallf"; pkill -TERM -f "kvmhost.id=$id" ; sleep 10; pkill -KILL -f "kvmhost.id=$id"; exit 0
      fi
    done ) &
  watch=$!
fi
# -k: a QEMU that ignores TERM is killed 10 s later. Only the command's output is shown (from
# the start marker on, without kernel log lines and the exit marker); the rest stays in $log.
timeout -k 10 "$TMO" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m "$MEM" -smp "$CPUS" \
  -nographic -no-reboot -nodefaults -no-user-config -serial stdio \
  -kernel "$kdir/vmlinuz" -initrd "$CACHE/l1-$key.cpio.gz" \
  -append "console=ttyS0 quiet loglevel=1 panic=-1 kvmhost.dir=$DIR kvmhost.id=$id" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$DIR",mount_tag=work,security_model=none </dev/null 2>&1 \
  | tee "$log" | sed -u -n '/kvmhost-start\r\?$/,$ { /kvmhost-start/d; /^\[ *[0-9]*\.[0-9]*\] /d; /^kvmhost-exit=/d; p }'
qrc=${PIPESTATUS[0]}
set -e
if [ -e "$stallf" ]; then
  if grep -qE "$LOCKUP" "$log"; then
    echo "kvmhost: the emulated host froze (a CPU in soft lockup for 120 s or more): stopped as hung;" \
      "its kernel's last reports:" >&2
    grep -E 'soft lockup|BUG|panic' "$log" | tail -6 | tr -d '\r' | sed 's/^/kvmhost:   /' >&2
  else
    echo "kvmhost: the emulated host printed nothing for $STALL s: stopped as hung" >&2
  fi
  exit 124
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
  echo "kvmhost: timed out after $TMO s" >&2; exit 124
fi
rc=$(cat "$rcf" 2>/dev/null || sed -n 's/.*kvmhost-exit=\([0-9]*\).*/\1/p' "$log" | tail -1)
[ -n "$rc" ] || { echo "kvmhost: the emulated host ended without a status (qemu exit $qrc):" >&2
  tail -20 "$log" >&2; exit 125; }
exit "$rc"
