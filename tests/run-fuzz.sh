#!/bin/bash
# run-fuzz.sh: run each libFuzzer binary for FUZZ_SECONDS (default 20) on its corpus
# tests/fuzz/corpus/NAME/ (if present; read-only, new inputs go to build/fuzz/corpus-NAME/)
# and print "fuzz: N passed, N failed" (one per binary). Crashes land in build/fuzz/NAME-crash-*.
# usage: tests/run-fuzz.sh BIN...
set -uo pipefail
secs=${FUZZ_SECONDS:-20}
pass=0 fail=0
for bin in "$@"; do
  name=$(basename "$bin") dir=$(dirname "$bin")
  work=$dir/corpus-$name; mkdir -p "$work"
  seeds=(); [ -d "tests/fuzz/corpus/$name" ] && seeds=("tests/fuzz/corpus/$name")
  log=$dir/$name.log
  timeout -k 5 $((secs + 60)) "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$dir/$name-" -print_final_stats=1 "$work" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then
    pass=$((pass + 1)); echo "fuzz: $name ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') execs)"
  else
    fail=$((fail + 1)); echo "fuzz: $name FAILED (exit $rc), log $log:"; tail -30 "$log"
  fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" = 0 ]
