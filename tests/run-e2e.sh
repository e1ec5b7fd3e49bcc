#!/bin/bash
# run-e2e.sh: run the bats end-to-end tests (tests/e2e/*.bats) where KVM can run a guest:
# directly when /dev/kvm works here, otherwise inside tests/kvmhost.sh (an emulated host with
# KVM). Prints the TAP stream, then "e2e: N passed, N failed, N skipped"; exits 1 on failure.
# KILN_E2E_HOST=direct|kvmhost forces the choice; KILN_KVMHOST_TIMEOUT bounds the emulated run.
set -uo pipefail
cd "$(dirname "$0")/.."

host=${KILN_E2E_HOST:-}
if [ -z "$host" ]; then
  if tests/kvm-usable.sh; then host=direct; else host=kvmhost; fi
fi
log=build/e2e.tap
mkdir -p build
case $host in
direct)  bats --tap tests/e2e 2>&1 | tee "$log" ;;
kvmhost) echo "e2e: /dev/kvm cannot run guests here; running in tests/kvmhost.sh (slow)"
         tests/kvmhost.sh -t "${KILN_KVMHOST_TIMEOUT:-1500}" -- bats --tap tests/e2e 2>&1 | tee "$log" ;;
*)       echo "run-e2e: KILN_E2E_HOST must be direct or kvmhost" >&2; exit 2 ;;
esac
rc=${PIPESTATUS[0]}
tr -d '\r' < "$log" > "$log.tmp" && mv "$log.tmp" "$log"
skip=$(grep -c -E '^ok [0-9]+ .*# skip' "$log")
pass=$(( $(grep -c -E '^ok [0-9]+' "$log") - skip ))
fail=$(grep -c -E '^not ok [0-9]+' "$log")
plan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$log" | head -1)
# A run that died before the plan or before reporting every test counts as one more failure.
if [ -z "$plan" ] || [ $((pass + fail + skip)) -lt "$plan" ] || { [ "$rc" != 0 ] && [ "$fail" = 0 ]; }; then
  echo "e2e: incomplete run (exit $rc, plan ${plan:-none})"; fail=$((fail + 1))
fi
echo "e2e: $pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
