#!/usr/bin/env bats
# run-stress.bats: `kiln run` many times: sequential and concurrent runs all succeed, keep their
# output apart, and leave nothing behind. Needs root, /dev/kvm that runs guests and cgroup v2.
# Sizes: 20 sequential and 8 concurrent runs (the issue's figures). KILN_STRESS_SEQ and
# KILN_STRESS_CONC override them; nothing scales them down by default, also not in the emulated
# host (KILN_IN_KVMHOST=1), where the whole file took 172 s (well within its 900 s limit).
# In the emulated host only, a run that meets one of its known faults (a nested-guest reset, a
# vCPU left spinning) is run once more (the concurrent batch as a whole), said on the TAP stream;
# see known_fault in run-common.bash.
bats_require_minimum_version 1.5.0

ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
KILN=$ROOT/build/kiln
SEQ=${KILN_STRESS_SEQ:-20}
CONC=${KILN_STRESS_CONC:-8}

setup_file() {
	export KILN_STATE_DIR=/run/kiln-stress-$$
}

load run-common

setup() { run_setup; }
teardown() { run_teardown; }

@test "run-stress: sequential runs (20) all succeed and each leaves nothing behind" {
	# (loop variable rn: bats' run assigns i in the caller's scope)
	local ids="" left rn attempt
	for rn in $(seq "$SEQ"); do
		for attempt in 1 2; do
			run --separate-stderr "$KILN" run --json -- sh -c "echo seq-$rn; echo data > /work/f; cat /work/f"
			[ "$attempt" = 1 ] && known_fault "$status" "$output" "$stderr" || break
			echo "# run-stress: run $rn: known emulated-host fault: once more" >&3
			left=$(leftovers)
			[ -z "$left" ] || { echo "after the reset of run $rn:$left"; false; }
		done
		[ "$status" -eq 0 ] || { echo "run $rn: status $status: $output $stderr"; false; }
		[ "${lines[0]}" = "seq-$rn" ] || { echo "run $rn: $output"; false; }
		[ "${lines[1]}" = data ] || { echo "run $rn: $output"; false; }
		[ "$(field '["reason"]')" = ok ]
		[ -z "$stderr" ] || { echo "run $rn: stderr: $stderr"; false; }
		ids+="$(field '["id"]') "
		left=$(leftovers)
		[ -z "$left" ] || { echo "after run $rn:$left"; false; }
	done
	# Every run had its own id.
	[ "$(echo "$ids" | tr ' ' '\n' | grep -c .)" = "$SEQ" ]
	[ "$(echo "$ids" | tr ' ' '\n' | grep . | sort -u | wc -l)" = "$SEQ" ]
}

@test "run-stress: concurrent runs (8) all succeed, keep their output apart, leave nothing" {
	local pids=() rcs=() rn max n u snap attempt resets left
	for attempt in 1 2; do
		pids=() rcs=() max=0 resets=0
		for rn in $(seq "$CONC"); do
			"$KILN" run --json -- sh -c "for j in \$(seq 200); do echo c$rn-\$j; done; id -u" \
				> "$T/out.$rn" 2> "$T/err.$rn" &
			pids+=($!)
		done
		# While they run: count the VMs alive at once; in every sample each runs as its own uid.
		for _ in $(seq 1200); do
			snap=$(ps -o uid= -C kiln-vmm || true)
			n=$(printf '%s\n' "$snap" | grep -c . || true)
			u=$(printf '%s\n' "$snap" | grep . | sort -u | wc -l)
			[ "$u" = "$n" ] || { echo "VMs sharing a uid: $snap"; false; }
			[ "$n" -gt "$max" ] && max=$n
			[ "$n" -ge "$CONC" ] && break
			sleep 0.1
		done
		for rn in $(seq "$CONC"); do
			wait "${pids[$((rn - 1))]}" && rcs+=(0) || rcs+=($?)
		done
		# The whole batch once more only when every failed run is the known reset.
		for rn in $(seq "$CONC"); do
			[ "${rcs[$((rn - 1))]}" = 0 ] && continue
			if [ "$attempt" = 1 ] && known_fault "${rcs[$((rn - 1))]}" "$(cat "$T/out.$rn")" "$(cat "$T/err.$rn")"; then
				resets=$((resets + 1))
			else
				echo "run $rn failed (exit ${rcs[$((rn - 1))]}): $(cat "$T/out.$rn" "$T/err.$rn")"
				false
			fi
		done
		[ "$resets" != 0 ] || break
		echo "# run-stress: $resets of $CONC concurrent runs: known emulated-host fault: the batch once more" >&3
		left=$(leftovers)
		[ -z "$left" ] || { echo "after the reset batch:$left"; false; }
	done
	echo "at most $max VMs at once, each with its own uid"
	[ "$max" -ge 2 ]
	local ids=""
	for rn in $(seq "$CONC"); do
		# Its 200 lines, in order, and none of another run's.
		[ "$(grep -c "^c$rn-" "$T/out.$rn")" = 200 ]
		[ "$(grep -c '^c' "$T/out.$rn")" = 200 ]
		[ "$(grep "^c$rn-" "$T/out.$rn" | cut -d- -f2 | tr '\n' ' ')" = "$(seq -s ' ' 200) " ]
		[ "$(sed -n 201p "$T/out.$rn")" = 1000 ]
		[ ! -s "$T/err.$rn" ] || { echo "run $rn: stderr: $(cat "$T/err.$rn")"; false; }
		output=$(tail -1 "$T/out.$rn")
		[ "$(field '["reason"]')" = ok ]
		ids+="$(field '["id"]') "
	done
	[ "$(echo "$ids" | tr ' ' '\n' | grep . | sort -u | wc -l)" = "$CONC" ]
	[ -z "$(leftovers)" ]
}
