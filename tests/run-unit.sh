#!/bin/bash
# run-unit.sh: run cmocka test binaries, each to completion, and print one summary line
# "unit: N passed, N failed" (N counts test cases; a binary that crashes or reports no
# cases counts as one failure). Exits 1 if anything failed.
# usage: tests/run-unit.sh BIN...
set -uo pipefail
pass=0 fail=0
for bin in "$@"; do
  out=$("$bin" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -E '^\[  (FAILED|ERROR)|Assertion|ERROR:|runtime error' || true
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    echo "unit: $(basename "$bin") exited $rc"; printf '%s\n' "$out" | tail -20; f=1
  fi
  if [ "$p" = 0 ] && [ "$f" = 0 ]; then echo "unit: $(basename "$bin") ran no tests"; f=1; fi
  pass=$((pass + p)) fail=$((fail + f))
done
echo "unit: $pass passed, $fail failed"
[ "$fail" = 0 ]
