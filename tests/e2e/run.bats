#!/usr/bin/env bats
# run.bats: `kiln run` end to end: one real scenario per reason in the result record, isolation
# between runs, file transfer, signals to kiln, `kiln gc`, and nothing left behind after any test.
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
	"$KILN" run --json --disk 32M -- dd if=/dev/zero of=/work/fill bs=1M > "$T/out" 2> "$T/err" &
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

@test "run: a file written in one run is absent in the next" {
	run --separate-stderr "$KILN" run -- sh -c 'echo secret > /work/left; echo secret > /tmp/left; ls /work'
	[ "$status" -eq 0 ]
	[[ "$output" == *left* ]]
	run --separate-stderr "$KILN" run -- sh -c 'ls -A /work /tmp; cat /work/left /tmp/left'
	[ "$status" -eq 1 ]
	[[ "$output" != *secret* ]]
}

@test "run: --put and --get copy files; a GET of a guest symlink to a host path is refused" {
	printf 'payload\n' > "$T/in"
	mkdir "$T/out"
	run --separate-stderr "$KILN" run --put "$T/in:dir/in" --get "dir/res:$T/out/res" \
		--get "link:$T/out/link" -- sh -c 'tr a-z A-Z < dir/in > dir/res; ln -s /etc/shadow link'
	[ "$status" -eq 0 ]
	[ "$(cat "$T/out/res")" = PAYLOAD ]
	[ ! -e "$T/out/link" ]
	[ ! -L "$T/out/link" ]
	[[ "$stderr" == *"kiln: --get link: refused by the guest: get: symlink in path (links are never followed)"* ]]
	[ -z "$(ls -A "$T/out" | grep -v '^res$')" ]
}

@test "run: SIGTERM to kiln mid-run tears the run down, kiln exits 143" {
	"$KILN" run --json -- sleep 1000 > "$T/out" 2> "$T/err" &
	local k=$!
	for _ in $(seq 600); do [ -S "$(ls -d "$KILN_STATE_DIR"/runs/*/vsock/v.sock 2>/dev/null | head -1)" ] && break; sleep 0.1; done
	sleep 1
	kill -TERM "$k"
	wait "$k" || status=$?
	[ "${status:-0}" -eq 143 ]
	output=$(tail -1 "$T/out")
	[ "$(field '["reason"]')" = interrupted ]
}

@test "run: SIGKILL of kiln mid-run, then kiln gc, leaves nothing" {
	"$KILN" run -- sleep 1000 > "$T/out" 2> "$T/err" &
	local k=$!
	for _ in $(seq 600); do [ -S "$(ls -d "$KILN_STATE_DIR"/runs/*/vsock/v.sock 2>/dev/null | head -1)" ] && break; sleep 0.1; done
	sleep 1
	kill -KILL "$k"
	wait "$k" || true
	# The VMM dies with kiln (parent-death signal through the jailer).
	for _ in $(seq 50); do pgrep -x kiln-vmm >/dev/null || break; sleep 0.1; done
	[ -z "$(pgrep -x kiln-vmm)" ]
	[ -n "$(ls -A "$KILN_STATE_DIR/runs")" ]
	run "$KILN" gc
	[ "$status" -eq 0 ]
	[[ "$output" == "kiln gc: removed run k"* ]]
}

@test "run: kiln gc removes an orphaned run cgroup and a dead kiln's unfinished scratch cache file, nothing else" {
	local cg=/sys/fs/cgroup/kiln
	mkdir -p "$cg/k0123456789abcdef" "$cg/not-a-run" "$S/cache"
	: > "$S/cache/.scratch-v1-1024.99999999.tmp" # no such pid: its maker is dead
	: > "$S/cache/.scratch-v1-1024.$$.tmp"       # this shell: alive
	run "$KILN" gc
	rmdir "$cg/not-a-run" || { echo "kiln gc removed a cgroup it did not make" >&2; return 1; }
	[ "$status" -eq 0 ] || { echo "gc exit $status: $output" >&2; return 1; }
	[[ "$output" == *"kiln gc: removed cgroup k0123456789abcdef"* ]] || { echo "output: $output" >&2; return 1; }
	[[ "$output" == *"kiln gc: removed unfinished scratch cache file .scratch-v1-1024.99999999.tmp"* ]] || { echo "output: $output" >&2; return 1; }
	[ ! -e "$cg/k0123456789abcdef" ]
	[ ! -e "$S/cache/.scratch-v1-1024.99999999.tmp" ]
	[ -e "$S/cache/.scratch-v1-1024.$$.tmp" ] || { echo "removed the file of a live pid" >&2; return 1; }
	rm "$S/cache/.scratch-v1-1024.$$.tmp"
}

# A root image whose /sbin/init is a hostile agent: it accepts kiln's connection on the agent
# port and sends the bytes of $T/frames (or nothing, and never closes, with "silent").
hostile_image() {
	local st=$T/stage vs=$ROOT/build/guest/kiln-vsock
	[ -x "$vs" ] || skip "no build/guest/kiln-vsock (make initramfs)"
	mkdir -p "$st"/{bin,sbin,proc,sys,dev,tmp,work}
	cp /bin/busybox "$st/bin/busybox"
	for a in sh mount sleep cat; do ln -s busybox "$st/bin/$a"; done
	cp "$vs" "$st/sbin/kiln-vsock"
	cp "$T/frames" "$st/frames"
	if [ "${1:-}" = silent ]; then
		printf '#!/bin/sh\nmount -t proc proc /proc\nsleep 1000 | /sbin/kiln-vsock accept 1024 >/dev/null\nsleep 1000\n' > "$st/sbin/init"
	else
		printf '#!/bin/sh\nmount -t proc proc /proc\n/sbin/kiln-vsock accept 1024 </frames >/dev/null\nsleep 1000\n' > "$st/sbin/init"
	fi
	chmod 0755 "$st/sbin/init"
	mke2fs -q -t ext4 -d "$st" "$T/hostile.ext4" 16M >/dev/null
}

@test "run: a frame beyond its type's cap from the agent -> agent-protocol-error, kiln exits 122" {
	# A valid HELLO, then a STDOUT header announcing 1 MiB (the cap is 64 KiB).
	printf 'KILN\x01\x81\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00KILN\x01\x82\x00\x00\x00\x00\x10\x00' > "$T/frames"
	hostile_image
	run --separate-stderr "$KILN" run --json --image "$T/hostile.ext4" -- true
	[ "$(field '["reason"]')" = agent-protocol-error ] || { echo "$output $stderr"; false; }
	[ "$status" -eq 122 ]
	[ "$stderr" = "kiln: guest agent: bad frame header: payload length beyond the frame type's cap" ] || { echo "$stderr"; false; }
}

@test "run: an agent that accepts and stays silent hits the deadline -> agent-protocol-error" {
	: > "$T/frames"
	hostile_image silent
	run --separate-stderr "$KILN" run --json --image "$T/hostile.ext4" -- true
	[ "$(field '["reason"]')" = agent-protocol-error ] || { echo "$output $stderr"; false; }
	[ "$status" -eq 122 ]
	[ "$stderr" = "kiln: guest agent: accepted the connection but sent no HELLO within 15 s" ]
}

@test "run: concurrent runs get their own uid, CID and output; a fork bomb is contained" {
	local a b c uids rcc attempt left
	# A second round only when the bomb's VM met the emulated host's known reset (known_fault).
	for attempt in 1 2; do
		"$KILN" run --json -- sh -c 'for i in $(seq 300); do echo A$i; done; id -u' > "$T/a" 2>&1 &
		a=$!
		"$KILN" run --json -- sh -c 'for i in $(seq 300); do echo B$i; done' > "$T/b" 2>&1 &
		b=$!
		"$KILN" run --json --pids 64 --timeout 15s -- sh -c 'f() { f | f & }; f; sleep 1000' > "$T/c" 2>&1 &
		c=$!
		# While they run: three VMMs, each as its own uid.
		for _ in $(seq 600); do [ "$(pgrep -x kiln-vmm | wc -l)" -ge 2 ] && break; sleep 0.1; done
		uids=$(ps -o uid= -p "$(pgrep -d, -x kiln-vmm)" | sort -u | wc -l)
		wait "$a"; wait "$b"; rcc=0; wait "$c" || rcc=$?
		# (its reset only: a bomb that runs into --timeout is an outcome this test accepts)
		[ "$attempt" = 1 ] && [ "$rcc" = 122 ] && known_fault "$rcc" "$(cat "$T/c")" "$(cat "$T/c")" || break
		echo "# run: the fork bomb's VM met a known emulated-host fault: the three runs once more" >&3
		left=$(leftovers)
		[ -z "$left" ] || { echo "after the faulted round:$left"; false; }
	done
	# (one assertion per line: bats does not fail on the first part of an && list, or on "! cmd")
	[ "$(grep -c '^A[0-9]' "$T/a")" = 300 ]
	[ -z "$(grep '^B' "$T/a")" ]
	[ "$(grep -c '^B[0-9]' "$T/b")" = 300 ]
	[ -z "$(grep '^A' "$T/b")" ]
	output=$(tail -1 "$T/a"); [ "$(field '["reason"]')" = ok ]; ida=$(field '["id"]')
	output=$(tail -1 "$T/b"); [ "$(field '["reason"]')" = ok ]; idb=$(field '["id"]')
	[ "$ida" != "$idb" ]
	# The bomb ends by --timeout or when its shell gives up; either way within the run's limits.
	output=$(tail -1 "$T/c")
	case $(field '["reason"]') in timeout|nonzero-exit|signaled) ;; *) cat "$T/c"; false;; esac
	[ "$uids" -ge 2 ]
}

@test "run: two concurrent runs cannot reach each other over vsock" {
	local vs=$ROOT/build/guest/kiln-vsock cidb
	[ -x "$vs" ] || skip "no build/guest/kiln-vsock (make initramfs)"
	# Run B listens on vsock port 5000 and keeps any bytes a connection brings, until the test
	# writes a line to its stdin (after run A is done).
	# (Bounded, as B's --timeout: a failed assertion below must not leave the loop running.)
	( for _ in $(seq 1500); do [ -e "$T/a-done" ] && break; sleep 0.2; done; echo go ) |
		"$KILN" run --json --put "$vs:kv" --timeout 300s -- sh -c \
		'./kv accept 5000 </dev/null >got 2>&1 & echo listening; read x; echo "got:$(cat got)"' > "$T/b" 2>&1 &
	local b=$!
	for _ in $(seq 1200); do grep -q '^listening' "$T/b" && break; sleep 0.1; done
	grep -q '^listening' "$T/b" || { cat "$T/b"; false; }
	# B's CID, from the arguments of B's VMM (B is the only run).
	cidb=$(for p in $(pgrep -x kiln-vmm); do tr '\0' ' ' < /proc/$p/cmdline; echo; done |
		sed -n 's/.*--vsock cid=\([0-9]*\)[, ].*/\1/p' | sort -u)
	echo "B's CID: $cidb"
	if [ -z "$cidb" ] || [ "$(echo "$cidb" | wc -l)" != 1 ]; then
		touch "$T/a-done"; wait "$b"; cat "$T/b"; false
	fi
	# Run A: connect to B's listener and to B's agent port; both must fail.
	run --separate-stderr "$KILN" run --json --put "$vs:kv" -- sh -c \
		"for p in 5000 1024; do echo hello | ./kv connect $cidb \$p; echo rc=\$?; done"
	touch "$T/a-done"
	wait "$b"
	echo "A: $output; A's stderr: $stderr"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = rc=1 ]
	[ "${lines[1]}" = rc=1 ]
	[[ "$stderr" == *"kiln-vsock: connect $cidb:5000: "* ]]
	[[ "$stderr" == *"kiln-vsock: connect $cidb:1024: "* ]]
	# B saw no connection, and ended normally.
	grep -qx 'got:' "$T/b" || { cat "$T/b"; false; }
	output=$(tail -1 "$T/b")
	[ "$(field '["reason"]')" = ok ]
}

@test "run: a kernel kiln-vmm rejects -> setup-error, kiln exits 121, nothing left" {
	head -c 4096 /dev/zero > "$T/notakernel"
	run --separate-stderr "$KILN" run --json --kernel "$T/notakernel" -- true
	[ "$(field '["reason"]')" = setup-error ] || { echo "$output $stderr"; false; }
	[ "$status" -eq 121 ]
	[[ "$stderr" == "kiln: setup failed: "* ]]
}

@test "run: --no-jail runs the VM without kiln-jailer; --result-fd gets the record" {
	run --separate-stderr bash -c "'$KILN' run --no-jail --result-fd 3 -- sh -c 'echo hi; exit 4' 3>'$T/rec'"
	[ "$status" -eq 4 ]
	[ "$output" = hi ]
	output=$(cat "$T/rec")
	[ "$(field '["reason"]')" = nonzero-exit ]
	[ "$(field '["exit_code"]')" = 4 ]
}
