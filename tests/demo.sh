#!/bin/bash
# demo.sh: run one real sandboxed command through `kiln run` (a fresh jailed microVM: 2 vCPUs,
# 256 MiB, the kiln-init root image, a scratch disk at /work, no network device) and print its
# output and the result record. Runs directly where /dev/kvm can run guests (as root with
# cgroup v2; otherwise unjailed with --no-jail), else inside the emulated host.
set -uo pipefail
cd "$(dirname "$0")/.."
cmd=(build/kiln run --json --vcpus 2 --mem 256M --timeout 60s --
     sh -c 'echo "hello from $(hostname), running as $(id -un) (uid $(id -u))"; uname -sr;
            echo "cpus: $(grep -c ^processor /proc/cpuinfo), memory: $(free -m | awk "/Mem:/ {print \$2}") MiB";
            echo "network devices: $(ls /sys/class/net | tr "\n" " ")";
            df -h /work | tail -1; echo 6*7 | bc 2>/dev/null || echo $((6*7))')
if tests/kvm-usable.sh; then
  if [ "$(id -u)" != 0 ] || [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ]; then
    echo "demo: not root or no cgroup v2 here: running unjailed (--no-jail, debugging mode)"
    cmd=("${cmd[@]:0:2}" --no-jail "${cmd[@]:2}")
  fi
  echo "demo: ${cmd[*]}"
  "${cmd[@]}" </dev/null; rc=$?
else
  echo "demo: ${cmd[*]}"
  echo "demo: /dev/kvm cannot run guests here; booting an emulated KVM host first (slow)"
  tests/kvmhost.sh -t 300 -- "${cmd[@]}"; rc=$?
fi
echo "demo: kiln exited with status $rc (the command's own status; the last line is the result record)"
exit $rc
