#!/bin/bash
# kvm-usable.sh: exit 0 if /dev/kvm here can run kiln's test guest, 1 if not (then the KVM
# suites and benchmarks run inside tests/kvmhost.sh). Usable means: /dev/kvm opens read-write,
# it is a full KVM (not PVM, which only runs PVM-enabled guest kernels), and QEMU's microvm
# boots the test guest on it (checked only once build/guest/ holds the kernel and initramfs).
cd "$(dirname "$0")/.." || exit 1
( exec 9<>/dev/kvm ) 2>/dev/null || exit 1
[ ! -d /sys/module/kvm_pvm ] || exit 1
[ -f build/guest/bzImage ] && [ -f build/guest/initramfs.cpio.gz ] || exit 0
timeout 30 qemu-system-x86_64 -M microvm,accel=kvm -cpu host -m 128 -nodefaults -no-user-config \
  -nographic -no-reboot -serial stdio -kernel build/guest/bzImage -initrd build/guest/initramfs.cpio.gz \
  -append "console=ttyS0 quiet panic=-1 kiln.test=boot" -device isa-debug-exit,iobase=0xf4,iosize=1 \
  </dev/null 2>/dev/null | grep -q -m1 KILN-BOOT-OK
