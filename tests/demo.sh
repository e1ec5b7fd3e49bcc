#!/bin/bash
# demo.sh: boot one kiln microVM (2 vCPUs, 256 MiB, the test initramfs) and show what the guest
# saw. Runs directly where /dev/kvm can run guests, else inside the emulated host.
set -uo pipefail
cd "$(dirname "$0")/.."
cmd=(build/kiln-vmm --kernel build/guest/bzImage --initrd build/guest/initramfs.cpio.gz
     --vcpus 2 --mem 256 --cmdline "console=ttyS0 quiet reboot=k panic=-1 kiln.test=boot")
echo "demo: ${cmd[*]}"
if tests/kvm-usable.sh; then
  timeout 120 "${cmd[@]}" </dev/null; rc=$?
else
  echo "demo: /dev/kvm cannot run guests here; booting an emulated KVM host first (slow)"
  tests/kvmhost.sh -t 300 -- timeout 120 "${cmd[@]}"; rc=$?
fi
echo "demo: kiln-vmm exited with status $rc (0: the guest finished normally)"
exit $rc
