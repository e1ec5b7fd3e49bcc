#!/bin/bash
# run-e2e.sh: run the bats end-to-end tests (tests/e2e/*.bats) where KVM can run a guest:
# directly when /dev/kvm works here, otherwise inside tests/kvmhost.sh (an emulated host with
# KVM). Each .bats file runs on its own (a fresh emulated host each) under its own time limit,
# so a hang fails that file only. Prints the TAP streams, then
# "e2e: N passed, N failed, N skipped"; exits 1 on failure.
# KILN_E2E_HOST=direct|kvmhost forces the choice; KILN_E2E_FILE_TIMEOUT bounds each file (s);
# KILN_E2E_FILES picks files (default: all of tests/e2e/*.bats); KILN_E2E_STALL: an emulated host
# that prints nothing for that many seconds (default 420) is taken as hung; KILN_KVMHOST_CPUS: its
# CPUs (default 1: with 2, the emulated host froze (both CPUs in soft lockup, or silent) about
# once in every CI-like run, up to three times in one file, and one such file failed CI; with 1
# it never froze in the runs on record, and the whole e2e stage took 18 min instead of 22-27).
set -uo pipefail
cd "$(dirname "$0")/.."

host=${KILN_E2E_HOST:-}
if [ -z "$host" ]; then
  if tests/kvm-usable.sh; then host=direct; else host=kvmhost; fi
fi
tmo=${KILN_E2E_FILE_TIMEOUT:-900}
mkdir -p build/e2e
[ "$host" = kvmhost ] && echo "e2e: /dev/kvm cannot run guests here; running in tests/kvmhost.sh (slow)"
tpass=0 tfail=0 tskip=0
for f in ${KILN_E2E_FILES:-tests/e2e/*.bats}; do
  name=$(basename "$f" .bats)
  log=build/e2e/$name.tap
  start=$(date +%s)
  for attempt in 1 2 3; do
    case $host in
    direct)  timeout -k 10 "$tmo" bats --tap "$f" 2>&1 | tee "$log" ;;
    kvmhost) tests/kvmhost.sh -c "${KILN_KVMHOST_CPUS:-1}" -t "$tmo" -s "${KILN_E2E_STALL:-420}" -- bats --tap "$f" 2>&1 | tee "$log" ;;
    *)       echo "run-e2e: KILN_E2E_HOST must be direct or kvmhost" >&2; exit 2 ;;
    esac
    rc=${PIPESTATUS[0]}
    tr -d '\r' < "$log" > "$log.tmp" && mv "$log.tmp" "$log"
    skip=$(grep -c -E '^ok [0-9]+ .*# skip' "$log")
    pass=$(( $(grep -c -E '^ok [0-9]+' "$log") - skip ))
    fail=$(grep -c -E '^not ok [0-9]+' "$log")
    plan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$log" | head -1)
    # The emulated host itself occasionally hangs (a nested boot that never returns, both of its
    # CPUs stuck, its kernel dead): a file cut short by its time limit or stall watchdog (exit
    # 124) or by a dead emulated host (125), with no failed test, gets up to two more tries (one
    # CI-like run met four such freezes in ten files, two of them in the same file). A failed
    # assertion is never retried; in direct mode (real KVM) nothing is retried.
    if [ "$fail" = 0 ] && { [ "$rc" = 124 ] || [ "$rc" = 125 ]; } && [ "$host" = kvmhost ] && [ "$attempt" -lt 3 ]; then
      echo "e2e: $name: cut short (exit $rc) with no failure: running it once more"
      continue
    fi
    break
  done
  # A run that died before the plan or before reporting every test counts as one more failure.
  if [ -z "$plan" ] || [ $((pass + fail + skip)) -lt "$plan" ] || { [ "$rc" != 0 ] && [ "$fail" = 0 ]; }; then
    echo "e2e: $name: incomplete run (exit $rc, plan ${plan:-none})"; fail=$((fail + 1))
  fi
  echo "e2e: $name: $pass passed, $fail failed, $skip skipped in $(( $(date +%s) - start )) s"
  tpass=$((tpass + pass)) tfail=$((tfail + fail)) tskip=$((tskip + skip))
done
echo "e2e: $tpass passed, $tfail failed, $tskip skipped"
[ "$tfail" = 0 ]
