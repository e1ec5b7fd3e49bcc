#!/usr/bin/env bats
# run.bats: `kiln run` end to end, part 1: one real scenario per reason in the result record, and
# nothing left behind after any test. Part 2 (isolation, files, signals, kiln gc, hostile agents,
# concurrent runs) is run-life.bats: split so that an emulated-host freeze retries half as much.
# Needs root, /dev/kvm that runs guests and cgroup v2 (tests/kvmhost.sh provides all three).
# Each run boots a VM (seconds on an emulated host): the tests keep the number of runs small.
bats_require_minimum_version 1.5.0

ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
KILN=$ROOT/build/kiln

setup_file() {
	export KILN_STATE_DIR=/run/kiln-e2e-$$
}

load run-common

setup() { run_setup; }
teardown() { run_teardown; }

@test "run: bad options are rejected with exit 120 before anything starts" {
	run --separate-stderr "$KILN" run --mem 1X -- true
	[ "$status" -eq 120 ]
	[ "$stderr" = "kiln: --mem 1X: not a size (digits and an optional K, M, G or T suffix)" ]
	run --separate-stderr "$KILN" run --timeout 0s -- true
	[ "$status" -eq 120 ]
	[ "$stderr" = "kiln: --timeout 0s: out of range (100ms..24h)" ]
	run --separate-stderr "$KILN" run --disk 1G5 -- true
	[ "$status" -eq 120 ]
	run --separate-stderr "$KILN" run -xy -- true
	[ "$status" -eq 120 ]
	[ "$stderr" = "kiln: unknown option -x" ]
	# a value that holds a newline or an escape is quoted on the same line, '?' for each
	run --separate-stderr "$KILN" run --mem $'1\n\e[2J' -- true
	[ "$status" -eq 120 ]
	[ "$stderr" = "kiln: --mem 1??[2J: not a size (digits and an optional K, M, G or T suffix)" ]
	run --separate-stderr "$KILN" run --kernel "$T/no"$'\nfile' -- true
	[ "$status" -eq 120 ]
	[ "$stderr" = "kiln: --kernel $T/no?file: No such file or directory" ]
	run --separate-stderr "$KILN" run -- 
	[ "$status" -eq 120 ]
	[ "$stderr" = "kiln: no command given (kiln run [options] -- CMD [ARGS...])" ]
}

@test "run: uploads with .. are refused before anything starts" {
	echo data > "$T/f"
	run --separate-stderr "$KILN" run --put "$T/f:../etc/passwd" -- true
	[ "$status" -eq 120 ]
	[ "$stderr" = "kiln: --put $T/f:../etc/passwd: guest path ../etc/passwd refused: '..' path component (a relative path under /work)" ]
	run --separate-stderr "$KILN" run --put "$T/f:a/../../b" -- true
	[ "$status" -eq 120 ]
	run --separate-stderr "$KILN" run --put "$T/f:/etc/x" -- true
	[ "$status" -eq 120 ]
	run --separate-stderr "$KILN" run --get "../x:$T/x" -- true
	[ "$status" -eq 120 ]
	[ ! -e "$T/x" ]
}

@test "run: true -> ok; stdout, stderr and stdin streamed" {
	run --separate-stderr bash -c "printf 'from stdin' | '$KILN' run --json -- sh -c 'cat; echo; echo to-stderr >&2; true'"
	[ "$status" -eq 0 ] || { echo "status $status: $output $stderr"; false; }
	[ "${lines[0]}" = "from stdin" ]
	[ "$stderr" = "to-stderr" ]
	[ "$(field '["reason"]')" = ok ]
	[ "$(field '["status"]')" = exited ]
	[ "$(field '["exit_code"]')" = 0 ]
	[ "$(field '["stdout_bytes"]')" = 11 ]
	[ "$(field '["stdout_truncated"]')" = false ]
}

@test "run: exit 3 -> nonzero-exit, kiln exits 3" {
	run --separate-stderr "$KILN" run --json -- sh -c 'exit 3'
	[ "$status" -eq 3 ]
	[ "$(field '["reason"]')" = nonzero-exit ]
	[ "$(field '["exit_code"]')" = 3 ]
}

@test "run: kill -9 \$\$ -> signaled, kiln exits 137" {
	run --separate-stderr "$KILN" run --json -- sh -c 'kill -9 $$'
	[ "$status" -eq 137 ]
	[ "$(field '["reason"]')" = signaled ]
	[ "$(field '["signal"]')" = 9 ]
	[ "$(field '["status"]')" = signaled ]
}

@test "run: sleep 1000 with --timeout 5s -> timeout within tolerance, kiln exits 124" {
	run --separate-stderr "$KILN" run --json --timeout 5s -- sleep 1000
	[ "$status" -eq 124 ]
	[ "$(field '["reason"]')" = timeout ]
	[ "$(field '["status"]')" = none ]
	run_ms=$(field '["timings_ms"]["run"]')
	[ "$run_ms" -ge 5000 ] && [ "$run_ms" -le 8000 ] || { echo "run took $run_ms ms"; false; }
}

@test "run: while :; do :; done with --timeout 5s -> timeout within tolerance, kiln exits 124" {
	run --separate-stderr "$KILN" run --json --timeout 5s -- sh -c 'while :; do :; done'
	[ "$status" -eq 124 ] || { echo "$output $stderr"; false; }
	[ "$(field '["reason"]')" = timeout ]
	[ "$(field '["status"]')" = none ]
	[ "$stderr" = "kiln: the command ran longer than --timeout (5000 ms); the VM was killed" ]
	run_ms=$(field '["timings_ms"]["run"]')
	[ "$run_ms" -ge 5000 ] && [ "$run_ms" -le 8000 ] || { echo "run took $run_ms ms"; false; }
}

@test "run: a caller that never reads stdout holds up neither --timeout nor teardown" {
	# kiln's stdout is a FIFO whose only reader (fd 5 here) never reads.
	mkfifo "$T/fifo"
	exec 5<>"$T/fifo"
	local t0 el
	t0=$(date +%s%N)
	timeout -s KILL 180 "$KILN" run --timeout 3s --result-fd 3 -- yes > "$T/fifo" 2> "$T/err" 3> "$T/rec" || status=$?
	el=$(( ($(date +%s%N) - t0) / 1000000 ))
	exec 5>&-
	output=$(cat "$T/rec")
	[ "${status:-0}" -eq 124 ] || { echo "status ${status:-0} after $el ms: $(cat "$T/err") $output"; false; }
	[ "$(field '["reason"]')" = timeout ]
	run_ms=$(field '["timings_ms"]["run"]')
	[ "$run_ms" -ge 3000 ] && [ "$run_ms" -le 6000 ] || { echo "run took $run_ms ms"; false; }
	# kiln buffered a bounded amount (pipe, its 256 KiB queue, one frame), far below --output-max:
	# the guest was held back, and what the caller never took is counted.
	[ "$(field '["stdout_bytes"]')" -le $((1024 * 1024)) ]
	[ "$(field '["stdout_truncated"]')" = false ]
	[ "$(field '["undelivered_bytes"]')" -gt 0 ]
	# Whole run: boot, 3 s, teardown, then at most 10 s waiting for the caller to read.
	boot_ms=$(field '["timings_ms"]["boot"]')
	[ "$el" -le $((boot_ms + 3000 + 3000 + 10000 + 5000)) ] || { echo "kiln took $el ms (boot $boot_ms)"; false; }
	grep -qx "kiln: the command ran longer than --timeout (3000 ms); the VM was killed" "$T/err"
}

@test "run: yes -> output-limit, stdout cut exactly at --output-max, kiln exits 123" {
	"$KILN" run --json --output-max 64K -- yes > "$T/out" 2> "$T/err" || status=$?
	[ "${status:-0}" -eq 123 ]
	output=$(tail -1 "$T/out")
	[ "$(field '["reason"]')" = output-limit ]
	[ "$(field '["stdout_truncated"]')" = true ]
	[ "$(field '["stdout_bytes"]')" = 65536 ]
	# 65536 bytes of "y\n", then the newline kiln adds before the record, then the record.
	[ "$(head -c 65536 "$T/out" | tr -d 'y\n' | wc -c)" = 0 ]
}

@test "run: a CPU burner with --cpu-time 2s -> cpu-time" {
	run --separate-stderr "$KILN" run --json --cpu-time 2s --timeout 60s -- sh -c 'while :; do :; done'
	[ "$(field '["reason"]')" = cpu-time ] || { echo "$output"; false; }
	[ "$status" -eq 152 ] || [ "$status" -eq 137 ]
}

@test "run: a memory hog -> guest-oom" {
	run --separate-stderr "$KILN" run --json --mem 96M -- awk 'BEGIN { s = "x"; while (1) s = s s }'
	[ "$(field '["reason"]')" = guest-oom ] || { echo "$output $stderr"; false; }
	[ "$status" -eq 137 ]
	[ "$(field '["oom"]')" = true ]
	# What the host saw: the guest's memory in use (the console line is the other sign).
	[ "$(field '["usage"]["vmm_peak_kb"]')" -ge $((48 * 1024)) ]
}

@test "run: dd until full -> disk-full; the host scratch file never grows beyond --disk" {
	local cap=$((32 << 20)) max=0 size=0 img b u s k
	# dd's data reaches the host file only at the guest's writeback (the sync before a failed
	# command's EXIT), and the file is gone ~0.1 s later: sync and hold the full disk for 2 s so
	# that the sampler below cannot miss it (it did once, in a CI-like run: max 303104 bytes).
	"$KILN" run --json --disk 32M -- sh -c \
		'dd if=/dev/zero of=/work/fill bs=1M; r=$?; sync; sleep 2; exit $r' > "$T/out" 2> "$T/err" &
	k=$!
	# Sample the scratch image's allocated and apparent size on the host while the run lasts.
	while kill -0 "$k" 2>/dev/null; do
		img=$(ls "$S"/runs/*/scratch.img 2>/dev/null | head -1)
		if [ -n "$img" ] && read -r b u s < <(stat -c '%b %B %s' "$img" 2>/dev/null); then
			[ $((b * u)) -gt "$max" ] && max=$((b * u))
			[ "$s" -gt "$size" ] && size=$s
		fi
		sleep 0.1
	done
	wait "$k" || true
	output=$(tail -1 "$T/out")
	stderr=$(cat "$T/err")
	[ "$(field '["reason"]')" = disk-full ] || { echo "$output $stderr"; false; }
	[[ "$stderr" == *"No space left on device"* ]]
	echo "scratch image: at most $max bytes allocated, apparent size $size (cap $cap)"
	[ "$max" -le "$cap" ]
	[ "$size" -le "$cap" ]
	# The samples saw the disk filling up (not only the empty file system).
	[ "$max" -ge $((cap / 2)) ]
}

@test "run: --pids binds root: a fork bomb as root with --pids 64 is contained and reported" {
	local cg=/sys/fs/cgroup/command
	# Builtins only after the bomb starts (read, [, echo): the shell itself needs no fork.
	run --separate-stderr "$KILN" run --json --user root --pids 64 --timeout 60s -- sh -c "
		id -u; read m < $cg/pids.max; echo max=\$m
		f() { f | f & }; f
		while :; do read e < $cg/pids.events; [ \"\$e\" = 'max 0' ] || break; done
		read c < $cg/pids.current; echo \"\$e current=\$c\""
	[ "$status" -eq 0 ] || { echo "$output"; false; }
	[ "${lines[0]}" = 0 ]
	[ "${lines[1]}" = max=64 ]
	[[ "${lines[2]}" =~ ^max\ [1-9][0-9]*\ current=([0-9]+)$ ]] || { echo "$output"; false; }
	[ "${BASH_REMATCH[1]}" -le 64 ]
	[ "$(field '["reason"]')" = ok ]
	[ "$(field '["pids_limit_hit"]')" = true ]
}

@test "run: echo c > /proc/sysrq-trigger -> guest-panic, kiln exits 122" {
	run --separate-stderr "$KILN" run --json --user root -- sh -c 'echo c > /proc/sysrq-trigger; sleep 100'
	[ "$(field '["reason"]')" = guest-panic ] || { echo "$output $stderr"; false; }
	[ "$status" -eq 122 ]
	[[ "$stderr" == *"kiln: the guest kernel panicked or reset"* ]]
}
