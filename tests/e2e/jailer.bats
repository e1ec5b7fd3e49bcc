#!/usr/bin/env bats
# jailer.bats: kiln-jailer end to end: the jailed process inspected from the host, attacks that
# must fail with an exact message and exit status, and no leftovers after any test.
# The jailed program is build/jail-probe (static), standing in for kiln-vmm.
# Needs root; the cgroup tests need cgroup v2 at /sys/fs/cgroup (tests/kvmhost.sh provides it).

ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
JAILER=$ROOT/build/kiln-jailer
PROBE_SRC=$ROOT/build/jail-probe
VUID=4242
VGID=4243

have_cgroup2() { [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; }
need_cgroup2() { have_cgroup2 || skip "cgroup v2 is not mounted at /sys/fs/cgroup"; }

setup() {
	[ "$(id -u)" = 0 ] || skip "kiln-jailer must run as root"
	[ -x "$JAILER" ] && [ -x "$PROBE_SRC" ] || skip "build first: make build/kiln-jailer build/jail-probe"
	ID=vm-$BATS_TEST_NUMBER-$$
	BASE=/run/kiln-jail-test-$$
	CG=kiln-test-$$
	JAIL=$BASE/jail-probe/$ID
	WORK=$(mktemp -d /run/kiln-jail-work.XXXXXX)
	chmod 0755 "$WORK"
	install -o root -g root -m 0755 "$PROBE_SRC" "$WORK/jail-probe"
	EXE=$WORK/jail-probe
	if have_cgroup2; then CGOPT=(--parent-cgroup "$CG"); else CGOPT=(--no-cgroup); fi
	JPID= VPID=
	WRAP=()
}

teardown() {
	[ -n "${WORK:-}" ] || return 0
	if [ -n "$JPID" ] && kill -0 "$JPID" 2>/dev/null; then
		kill -KILL "$JPID" 2>/dev/null || true
	fi
	[ -z "$VPID" ] || kill -KILL "$VPID" 2>/dev/null || true
	wait 2>/dev/null || true
	for _ in $(seq 50); do [ -z "$VPID" ] || [ ! -e "/proc/$VPID" ] && break; sleep 0.1; done
	if [ -e "$JAIL" ] || [ -e "/sys/fs/cgroup/$CG/$ID" ]; then
		"$JAILER" --cleanup --id "$ID" --chroot-base-dir "$BASE" "${CGOPT[@]}" || true
		leaked="jail or cgroup left behind (removed by teardown)"
	fi
	# Nothing may leak: processes, jail directories, cgroups, mounts.
	local left=""
	[ -z "$VPID" ] || [ ! -e "/proc/$VPID" ] || left+=" process $VPID;"
	# (one find, not a readlink per process: this runs on an emulated host)
	local jailed
	jailed=$(find /proc -mindepth 2 -maxdepth 2 -name exe -lname /jail-probe 2>/dev/null | tr '\n' ' ')
	[ -z "$jailed" ] || left+=" jailed processes $jailed;"
	[ ! -e "$JAIL" ] || left+=" $JAIL;"
	[ ! -e "/sys/fs/cgroup/$CG/$ID" ] || left+=" cgroup $CG/$ID;"
	! grep -q -e "$BASE" -e "$WORK" /proc/self/mountinfo || left+=" mounts;"
	rm -rf "$BASE" "$WORK" "/run/kiln-jail-planted-$$"
	[ ! -d "/sys/fs/cgroup/$CG" ] || rmdir "/sys/fs/cgroup/$CG"
	[ -z "${leaked:-}$left" ] || { echo "teardown: leaked:${leaked:-}$left" >&2; return 1; }
}

# Run the jailer in the background with the probe; wait until the probe says "ready".
start_jail() {
	local probe_args=() opts=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
	[ $# -eq 0 ] || shift
	probe_args=("$@")
	"${WRAP[@]}" "$JAILER" --id "$ID" --exec-file "$EXE" --uid $VUID --gid $VGID --chroot-base-dir "$BASE" \
		"${CGOPT[@]}" "${opts[@]}" -- "${probe_args[@]}" >"$WORK/out" 2>"$WORK/err" &
	JPID=$!
	for _ in $(seq 300); do
		grep -q '^probe: ready' "$WORK/out" 2>/dev/null && break
		kill -0 "$JPID" 2>/dev/null || break
		sleep 0.1
	done
	grep -q '^probe: ready' "$WORK/out" || { cat "$WORK/out" "$WORK/err"; return 1; }
	VPID=$(cut -d' ' -f1 "/proc/$JPID/task/$JPID/children")
	[ -n "$VPID" ]
}

# SIGTERM the jailer (forwarded to the VMM), expect a clean exit 0, then --cleanup.
stop_jail() {
	kill -TERM "$JPID"
	local st=0
	wait "$JPID" || st=$?
	[ "$st" -eq 0 ] || { echo "jailer exited $st"; cat "$WORK/err"; return 1; }
	grep -q '^probe: term' "$WORK/out"
	JPID=
	"${WRAP[@]}" "$JAILER" --cleanup --id "$ID" --chroot-base-dir "$BASE" "${CGOPT[@]}"
}

jail() {
	"$JAILER" --id "$ID" --exec-file "$EXE" --uid $VUID --gid $VGID --chroot-base-dir "$BASE" "${CGOPT[@]}" "$@"
}

# One jail run to its end (output in $output, exit in $status), then --cleanup of its id.
jail_then_cleanup() {
	run jail "$@"
	"$JAILER" --cleanup --id "$ID" --chroot-base-dir "$BASE" "${CGOPT[@]}"
}

# Nothing of ours exists: called after each rejected run.
assert_untouched() {
	[ ! -e "$BASE" ] || { find "$BASE"; return 1; }
	[ ! -e "/sys/fs/cgroup/$CG/$ID" ]
}

@test "jailer: --help documents the options and every exit status" {
	run "$JAILER" --help
	[ "$status" -eq 0 ]
	[[ "$output" == *"--exec-file PATH"* ]]
	[[ "$output" == *"  7  kiln-jailer: jail setup failed"* ]]
}

@test "jailer: a bad --id (../, empty, 65 characters, slash) is rejected with exit 2, nothing touched" {
	for bad in "../x" "" "$(printf 'a%.0s' $(seq 65))" "a/b" "a.b"; do
		run "$JAILER" --id "$bad" --exec-file "$EXE" --uid $VUID --gid $VGID --chroot-base-dir "$BASE" --no-cgroup -- hold
		[ "$status" -eq 2 ]
		[ "$output" = "kiln-jailer: invalid --id \"$bad\": must be 1-64 characters from [A-Za-z0-9-]" ]
		assert_untouched
	done
}

@test "jailer: uid 0, gid 0 and a repeated --uid are rejected with exit 2, nothing touched" {
	run "$JAILER" --id "$ID" --exec-file "$EXE" --uid 0 --gid $VGID --chroot-base-dir "$BASE" -- hold
	[ "$status" -eq 2 ]
	[ "$output" = 'kiln-jailer: invalid --uid "0": must be a number from 1 to 4294967294 (never root)' ]
	run "$JAILER" --id "$ID" --exec-file "$EXE" --uid $VUID --gid 0 --chroot-base-dir "$BASE" -- hold
	[ "$status" -eq 2 ]
	[ "$output" = 'kiln-jailer: invalid --gid "0": must be a number from 1 to 4294967294 (never root)' ]
	# a second --uid does not override the first
	run "$JAILER" --id "$ID" --exec-file "$EXE" --uid $VUID --gid $VGID --uid 1 --chroot-base-dir "$BASE" -- hold
	[ "$status" -eq 2 ]
	[ "$output" = 'kiln-jailer: option --uid given twice' ]
	assert_untouched
}

@test "jailer: an exec file that is a symlink is refused, nothing touched" {
	ln -s "$EXE" "$WORK/link"
	EXE=$WORK/link run jail -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-file $WORK/link: refusing a path that contains a symbolic link" ]
	assert_untouched
	# ... also when a directory above it is the symlink
	mkdir "$WORK/d" && ln -s "$WORK/d" "$WORK/dlink" && cp "$EXE" "$WORK/d/vmm"
	EXE=$WORK/dlink/vmm run jail -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-file $WORK/dlink/vmm: refusing a path that contains a symbolic link" ]
	assert_untouched
}

@test "jailer: an exec file with a second hard link is refused, nothing touched" {
	ln "$EXE" "$WORK/hard"
	run jail -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-file $EXE has 2 hard links (must have exactly 1)" ]
	assert_untouched
}

@test "jailer: an exec file that is a directory is refused, nothing touched" {
	mkdir "$WORK/dir"
	EXE=$WORK/dir run jail -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-file $WORK/dir is not a regular file" ]
	assert_untouched
}

@test "jailer: a script or a dynamically linked exec file is refused (the jail holds no libraries)" {
	printf '#!/bin/sh\nexit 0\n' > "$EXE"
	run jail -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-file $EXE is not an ELF executable" ]
	install -o root -g root -m 0755 /usr/bin/env "$EXE"   # any dynamically linked program
	run jail -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-file $EXE is dynamically linked (has an ELF interpreter), but the jail holds no libraries: link it statically" ]
	assert_untouched
}

@test "jailer: a setuid, a group-writable or a non-root exec file is refused, nothing touched" {
	chmod 4755 "$EXE"
	run jail -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-file $EXE is setuid or setgid" ]
	chmod 0775 "$EXE"
	run jail -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-file $EXE is writable by group or others" ]
	chmod 0755 "$EXE" && chown $VUID "$EXE"
	run jail -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-file $EXE is not owned by root (uid $VUID)" ]
	assert_untouched
}

@test "jailer: a planted jail directory (with a symlink inside) is refused and left untouched" {
	mkdir -p "$JAIL" "/run/kiln-jail-planted-$$"
	echo original > "/run/kiln-jail-planted-$$/victim"
	ln -s "/run/kiln-jail-planted-$$" "$JAIL/root"
	run jail -- hold
	[ "$status" -eq 7 ]
	[ "$output" = "kiln-jailer: jail directory $JAIL already exists; refusing to reuse it (another VM with this id, or planted: run --cleanup or remove it)" ]
	[ "$(cat "/run/kiln-jail-planted-$$/victim")" = original ]
	[ "$(ls "/run/kiln-jail-planted-$$")" = victim ]
	[ -L "$JAIL/root" ]
	[ ! -e "/sys/fs/cgroup/$CG/$ID" ]
	rm -rf "$BASE"
}

@test "jailer: a chroot base owned by another user is refused" {
	mkdir -p "$BASE" && chown $VUID "$BASE"
	run jail -- hold
	[ "$status" -eq 7 ]
	[ "$output" = "kiln-jailer: $BASE is not owned by root (uid $VUID): refusing it" ]
	[ -z "$(ls -A "$BASE")" ]
	rm -rf "$BASE"
}

@test "jailer: a --ro/--rw path with a symlinked component is refused, nothing touched" {
	mkdir "$WORK/disks" && touch "$WORK/disks/disk.img" && ln -s "$WORK/disks" "$WORK/lnk"
	run jail --ro "$WORK/lnk/disk.img" -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --ro $WORK/lnk/disk.img: refusing a path that contains a symbolic link" ]
	ln -s "$WORK/disks/disk.img" "$WORK/disk-link.img"
	run jail --rw "$WORK/disk-link.img" -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --rw $WORK/disk-link.img: refusing a path that contains a symbolic link" ]
	run jail --ro "$WORK/disks/../disks/disk.img" -- hold
	[ "$status" -eq 2 ]
	[[ "$output" == "kiln-jailer: invalid path \"$WORK/disks/../disks/disk.img\": must be absolute"* ]]
	assert_untouched
}

@test "jailer: a cgroup file outside the allowlist or a value out of range is refused, nothing touched" {
	run jail --cgroup cgroup.procs=1 -- hold
	[ "$status" -eq 2 ]
	[ "$output" = 'kiln-jailer: --cgroup: "cgroup.procs" is not an allowed cgroup file (allowed: memory.max, memory.swap.max, cpu.max, pids.max, cpuset.cpus, io.max)' ]
	run jail --cgroup ../memory.max=1G -- hold
	[ "$status" -eq 2 ]
	run jail --cgroup pids.max=0 -- hold
	[ "$status" -eq 2 ]
	[ "$output" = 'kiln-jailer: --cgroup: invalid value "0" for pids.max: out of range' ]
	run jail --cgroup memory.max=-1 -- hold
	[ "$status" -eq 2 ]
	[ "$output" = 'kiln-jailer: --cgroup: invalid value "-1" for memory.max' ]
	run jail --cgroup "cpu.max=50000 10" -- hold
	[ "$status" -eq 2 ]
	[ "$output" = 'kiln-jailer: --cgroup: invalid value "50000 10" for cpu.max: out of range' ]
	assert_untouched
}

@test "jailer: without cgroup v2 or its delegation it fails closed (exit 7), nothing left" {
	if have_cgroup2; then
		# No delegation: the cgroup tree is read-only for us (in a private mount namespace).
		run unshare -m sh -c 'mount -o remount,bind,ro /sys/fs/cgroup && exec "$@"' sh \
			"$JAILER" --id "$ID" --exec-file "$EXE" --uid $VUID --gid $VGID --chroot-base-dir "$BASE" \
			--parent-cgroup "$CG" -- hold
		[ "$status" -eq 7 ]
		[ "$output" = "kiln-jailer: cannot create cgroup /sys/fs/cgroup/$CG (is cgroup v2 delegated to this user?): Read-only file system" ]
		assert_untouched
		# No cgroup v2 at all.
		run unshare -m sh -c 'mount -t tmpfs none /sys/fs/cgroup && exec "$@"' sh \
			"$JAILER" --id "$ID" --exec-file "$EXE" --uid $VUID --gid $VGID --chroot-base-dir "$BASE" -- hold
	else
		run "$JAILER" --id "$ID" --exec-file "$EXE" --uid $VUID --gid $VGID --chroot-base-dir "$BASE" -- hold
	fi
	[ "$status" -eq 7 ]
	[ "$output" = "kiln-jailer: cgroup v2 is not mounted at /sys/fs/cgroup; refusing to run without resource limits (pass --no-cgroup to accept that)" ]
	assert_untouched
}

@test "jailer: a setup failure after the jail and cgroup exist undoes both" {
	need_cgroup2
	# Accepted by the checks, refused by the kernel: a CPU this host does not have.
	run jail --cgroup cpuset.cpus=8000 -- hold
	[ "$status" -eq 7 ]
	[[ "$output" == "kiln-jailer: cannot set /sys/fs/cgroup/$CG/$ID/cpuset.cpus to \"8000\": "* ]]
	[ ! -e "$JAIL" ]
	[ ! -e "$BASE/jail-probe" ]
	[ ! -e "/sys/fs/cgroup/$CG/$ID" ]
}

@test "jailer: a failure inside the new namespaces (exec refused) undoes everything" {
	# An ELF that passes the jailer's checks but that the kernel refuses (no program headers).
	printf '\0\0' | dd of="$EXE" bs=1 seek=56 conv=notrunc status=none
	run jail -- hold
	[ "$status" -eq 7 ]
	[ "$output" = "kiln-jailer: cannot exec /jail-probe in the jail: Exec format error" ]
	assert_untouched
}

@test "jailer: the VMM runs as uid:gid with no supplementary groups, NoNewPrivs, all capability sets empty on every thread" {
	start_jail -- thread hold
	grep -q "^Uid:	$VUID	$VUID	$VUID	$VUID$" "/proc/$VPID/status"
	grep -q "^Gid:	$VGID	$VGID	$VGID	$VGID$" "/proc/$VPID/status"
	grep -q "^Groups:[[:space:]]*$" "/proc/$VPID/status"
	[ "$(ls "/proc/$VPID/task" | wc -l)" -eq 2 ]
	for t in /proc/$VPID/task/*; do
		for c in CapInh CapPrm CapEff CapBnd CapAmb; do
			grep -q "^$c:	0000000000000000$" "$t/status" || { grep "^$c" "$t/status"; return 1; }
		done
		grep -q "^NoNewPrivs:	1$" "$t/status"
	done
	stop_jail
}

@test "jailer: the supervising jailer keeps only CAP_KILL, and SIGTERM to it reaches the VMM" {
	start_jail -- hold
	grep -q "^CapEff:	0000000000000020$" "/proc/$JPID/status"
	grep -q "^CapPrm:	0000000000000020$" "/proc/$JPID/status"
	grep -q "^NoNewPrivs:	1$" "/proc/$JPID/status"
	stop_jail      # SIGTERM to the jailer; the probe reports "term" and exits 0
}

@test "jailer: every namespace but user differs from the host's and the network has only lo" {
	start_jail -- hold
	for ns in mnt pid net ipc uts cgroup; do
		[ "$ns" != cgroup ] || have_cgroup2 || continue
		[ "$(readlink "/proc/$VPID/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ] || { echo "same $ns"; return 1; }
	done
	grep -q "^NSpid:	$VPID	1$" "/proc/$VPID/status"          # PID 1 of its own pid namespace
	[ "$(tail -n +3 "/proc/$VPID/net/dev" | cut -d: -f1 | tr -d ' ')" = lo ]
	stop_jail
}

@test "jailer: /proc/PID/root is the read-only jail holding only the exec copy and /dev/kvm" {
	start_jail -- write /x write /dev/y hold
	[ "$(stat -L -c %d:%i "/proc/$VPID/root")" = "$(stat -c %d:%i "$JAIL/root")" ]
	[ "$(cd "/proc/$VPID/root" && find . | sort | tr '\n' ' ')" = ". ./dev ./dev/kvm ./jail-probe " ]
	[ "$(stat -c '%F %t:%T %a %u:%g' "/proc/$VPID/root/dev/kvm")" = "character special file a:e8 600 $VUID:$VGID" ]
	[ "$(stat -c '%a %u' "/proc/$VPID/root/jail-probe")" = "511 0" ]
	[ -z "$(find "/proc/$VPID/root/" -perm /6000)" ]
	[ -z "$(find "/proc/$VPID/root/" -type b)" ]
	# Every mount is nosuid; / is read-only; /dev is read-only and noexec.
	[ -z "$(awk '$6 !~ /nosuid/' "/proc/$VPID/mountinfo")" ]
	awk '$5 == "/" { print $6 }' "/proc/$VPID/mountinfo" | grep -q '^ro,nosuid,nodev'
	awk '$5 == "/dev" { print $6 }' "/proc/$VPID/mountinfo" | grep -q '^ro,nosuid,noexec'
	grep -q '^probe: write /x: Read-only file system$' "$WORK/out"
	grep -q '^probe: write /dev/y: Read-only file system$' "$WORK/out"
	stop_jail
}

@test "jailer: only stdio and --keep-fd reach the VMM although the caller leaked fds 3-20" {
	# shellcheck disable=SC2016
	bash -c 'for i in $(seq 3 20); do eval "exec $i</dev/null"; done; exec "$@"' sh \
		"$JAILER" --id "$ID" --exec-file "$EXE" --uid $VUID --gid $VGID --chroot-base-dir "$BASE" \
		"${CGOPT[@]}" --keep-fd 7 -- fds hold >"$WORK/out" 2>"$WORK/err" &
	JPID=$!
	for _ in $(seq 300); do grep -q '^probe: ready' "$WORK/out" && break; sleep 0.1; done
	VPID=$(cut -d' ' -f1 "/proc/$JPID/task/$JPID/children")
	[ "$(ls "/proc/$VPID/fd" | sort -n | tr '\n' ' ')" = "0 1 2 7 " ]
	grep -q '^probe: fds: 0 1 2 7$' "$WORK/out"
	[ "$(ls "/proc/$JPID/fd" | sort -n | tr '\n' ' ')" = "0 1 2 7 " ]
	stop_jail
}

@test "jailer: the VMM's environment is only --env; LD_PRELOAD reaches neither jailer nor VMM" {
	command -v cc >/dev/null || skip "no C compiler to build the LD_PRELOAD library"
	printf '%s\n' '#include <stdio.h>' "__attribute__((constructor)) static void f(void) { FILE *f = fopen(\"$WORK/preloaded\", \"a\"); if (f) fclose(f); }" > "$WORK/evil.c"
	cc -shared -fPIC -o "$WORK/evil.so" "$WORK/evil.c"
	env LD_PRELOAD="$WORK/evil.so" /bin/true && [ -e "$WORK/preloaded" ] && rm "$WORK/preloaded"   # it works
	WRAP=(env LD_PRELOAD="$WORK/evil.so" SECRET=hunter2)
	start_jail --env KILN_LOG=debug --env TERM=dumb -- env hold
	[ "$(tr '\0' '\n' < "/proc/$VPID/environ")" = "$(printf 'KILN_LOG=debug\nTERM=dumb')" ]
	[ "$(grep '^probe: env' "$WORK/out")" = "$(printf 'probe: env: KILN_LOG=debug\nprobe: env: TERM=dumb')" ]
	[ ! -e "$WORK/preloaded" ]
	run jail --env LD_PRELOAD=/x -- hold
	[ "$status" -eq 2 ]
	stop_jail
}

@test "jailer: the VMM is in its cgroup with each limit set, and rlimits apply" {
	need_cgroup2
	start_jail --cgroup memory.max=64M --cgroup pids.max=32 --cgroup "cpu.max=50000 100000" \
		--resource-limit fsize=1048576 -- hold
	[ "$(cat "/proc/$VPID/cgroup")" = "0::/$CG/$ID" ]
	[ "$(cat "/sys/fs/cgroup/$CG/$ID/cgroup.procs")" = "$VPID" ]
	[ "$(cat "/sys/fs/cgroup/$CG/$ID/memory.max")" = 67108864 ]
	[ "$(cat "/sys/fs/cgroup/$CG/$ID/pids.max")" = 32 ]
	[ "$(cat "/sys/fs/cgroup/$CG/$ID/cpu.max")" = "50000 100000" ]
	grep -Eq '^Max open files +2048 +2048 ' "/proc/$VPID/limits"
	grep -Eq '^Max core file size +0 +0 ' "/proc/$VPID/limits"
	grep -Eq '^Max file size +1048576 +1048576 ' "/proc/$VPID/limits"
	stop_jail
}

@test "jailer: no other uid, not even the VMM's own, can read /proc/PID/mem (not dumpable)" {
	command -v setpriv >/dev/null || skip "setpriv missing"
	start_jail -- hold
	[ "$(stat -c %u "/proc/$VPID/mem")" = 0 ]   # non-dumpable: /proc/PID is root's
	run setpriv --reuid 1000 --regid 1000 --clear-groups dd if="/proc/$VPID/mem" of=/dev/null bs=1 count=1 skip=4096
	[ "$status" -ne 0 ]
	[[ "$output" == *"Permission denied"* ]]
	run setpriv --reuid $VUID --regid $VGID --clear-groups dd if="/proc/$VPID/mem" of=/dev/null bs=1 count=1 skip=4096
	[ "$status" -ne 0 ]
	[[ "$output" == *"Permission denied"* ]]
	stop_jail
}

@test "jailer: --exec-cache: one sealed copy, bound in read-only, execute-only, reused, and remade when the exec file changes" {
	command -v setpriv >/dev/null || skip "setpriv missing"
	local C=$WORK/cache first
	mkdir -m 0700 "$C"
	start_jail --exec-cache "$C" -- write /jail-probe hold
	first=$(ls "$C")
	[ "$(echo "$first" | wc -l)" -eq 1 ] && [[ "$first" == exec-jail-probe-* ]] || { ls -la "$C"; return 1; }
	cmp "$EXE" "$C/$first"
	[ "$(stat -c '%a %u %h' "$C/$first")" = "511 0 1" ]
	# The VMM's /jail-probe is that very file, on a read-only, nosuid, nodev mount of its own;
	# the jail root holds nothing else new, and the VMM cannot write it.
	[ "$(stat -L -c %d:%i "/proc/$VPID/root/jail-probe")" = "$(stat -c %d:%i "$C/$first")" ]
	awk '$5 == "/jail-probe" { print $6 }' "/proc/$VPID/mountinfo" | grep -q '^ro,nosuid,nodev'
	[ "$(cd "/proc/$VPID/root" && find . | sort | tr '\n' ' ')" = ". ./dev ./dev/kvm ./jail-probe " ]
	grep -q '^probe: write /jail-probe: \(Read-only file system\|Permission denied\)$' "$WORK/out"
	# Not dumpable: the file is execute-only for the VMM's uid.
	[ "$(stat -c %u "/proc/$VPID/mem")" = 0 ]
	run setpriv --reuid $VUID --regid $VGID --clear-groups dd if="/proc/$VPID/mem" of=/dev/null bs=1 count=1 skip=4096
	[ "$status" -ne 0 ]
	stop_jail
	[ ! -e "$JAIL" ] && [ ! -e "$BASE/jail-probe" ]
	# A second jail reuses the copy; a changed exec file gets a new one.
	jail_then_cleanup --exec-cache "$C" -- exit 0
	[ "$status" -eq 0 ] && [ "$(ls "$C")" = "$first" ]
	printf 'x' >> "$EXE"
	jail_then_cleanup --exec-cache "$C" -- exit 0
	[ "$status" -eq 0 ]
	[ "$(ls "$C" | wc -l)" -eq 2 ]
	cmp "$EXE" "$C/$(ls -t "$C" | head -1)"
	[ -z "$(ls -A "$C" | grep '^\.')" ] # no temporary file left
}

@test "jailer: --exec-cache on a noexec mount still runs the VMM (its bind is not noexec), and stays read-only" {
	local C=$WORK/cache st=0 opts
	mkdir -m 0700 "$C"
	mount -t tmpfs -o noexec,nosuid,nodev,mode=0700 kiln-test-cache "$C"
	start_jail --exec-cache "$C" -- hold || st=$?
	opts=$(awk '$5 == "/jail-probe" { print $6 }' "/proc/$VPID/mountinfo" 2>/dev/null || true)
	[ "$st" -ne 0 ] || stop_jail || st=$?
	umount "$C"
	[ "$st" -eq 0 ]
	[[ "$opts" == ro,nosuid,nodev* ]] && [[ "$opts" != *noexec* ]] || { echo "mount options: $opts"; return 1; }
}

@test "jailer: --exec-cache: jailers started together on an empty cache all run, and leave one copy" {
	local C=$WORK/cache i st=0
	local -a pids=()
	mkdir -m 0700 "$C"
	for i in 1 2 3 4; do
		"$JAILER" --id "$ID-$i" --exec-file "$EXE" --uid $VUID --gid $VGID --chroot-base-dir "$BASE" \
			"${CGOPT[@]}" --exec-cache "$C" -- exit 0 >"$WORK/out.$i" 2>&1 &
		pids+=($!)
	done
	for i in 1 2 3 4; do wait "${pids[$((i - 1))]}" || { st=$?; cat "$WORK/out.$i"; }; done
	for i in 1 2 3 4; do "$JAILER" --cleanup --id "$ID-$i" --chroot-base-dir "$BASE" "${CGOPT[@]}"; done
	[ "$st" -eq 0 ]
	[ "$(ls -A "$C" | wc -l)" -eq 1 ] || { ls -la "$C"; return 1; }
	cmp "$EXE" "$C/$(ls "$C")"
}

@test "jailer: --exec-cache replaces a cached copy that is not exactly the sealed one" {
	local C=$WORK/cache f
	mkdir -m 0700 "$C"
	jail_then_cleanup --exec-cache "$C" -- exit 0
	[ "$status" -eq 0 ]
	f=$C/$(ls "$C")
	# Made readable (so the VMM would be dumpable), then truncated: each is replaced, not used.
	chmod 0755 "$f"
	jail_then_cleanup --exec-cache "$C" -- exit 0
	[ "$status" -eq 0 ]
	[ "$(stat -c '%a %u' "$f")" = "511 0" ]
	: > "$f"; chmod 0511 "$f"
	jail_then_cleanup --exec-cache "$C" -- exit 0
	[ "$status" -eq 0 ]
	cmp "$EXE" "$f"
}

@test "jailer: --exec-cache refuses a directory others can write, a symlink, or use with --userns; nothing touched" {
	local C=$WORK/cache
	mkdir -m 0777 "$C"
	run jail --exec-cache "$C" -- exit 0
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-cache $C must be owned by root and writable by no one else" ]
	assert_untouched
	chmod 0700 "$C" && chown $VUID "$C"
	run jail --exec-cache "$C" -- exit 0
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-cache $C must be owned by root and writable by no one else" ]
	chown 0 "$C" && ln -s "$C" "$WORK/clink"
	run jail --exec-cache "$WORK/clink" -- exit 0
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --exec-cache $WORK/clink: refusing a path that contains a symbolic link" ]
	run "$JAILER" --id "$ID" --exec-file "$EXE" --uid $VUID --gid $VGID --chroot-base-dir "$BASE" --userns \
		--no-cgroup --exec-cache "$C" -- exit 0
	[ "$status" -eq 2 ]
	[[ "$output" == "kiln-jailer: --exec-cache and --userns exclude each other"* ]]
	[ -z "$(ls -A "$C")" ]
	assert_untouched
}

@test "jailer: --resource-limit no-file=3 leaves the VMM unable to open more, and it ends cleanly" {
	run jail --resource-limit no-file=3 -- open /dev/kvm exit 0
	[ "$status" -eq 0 ]
	[ "$output" = "probe: open /dev/kvm: Too many open files" ]
	"$JAILER" --cleanup --id "$ID" --chroot-base-dir "$BASE" "${CGOPT[@]}"
}

@test "jailer: /dev/kvm in the jail is usable by the VMM" {
	[ -c /dev/kvm ] || skip "no /dev/kvm on this host"
	run jail -- open /dev/kvm exit 0
	[ "$status" -eq 0 ]
	[ "$output" = "probe: open /dev/kvm: ok" ]
	"$JAILER" --cleanup --id "$ID" --chroot-base-dir "$BASE" "${CGOPT[@]}"
}

@test "jailer: --ro is read-only, --rw writable, both nosuid,nodev,noexec" {
	printf data > "$WORK/disk.img" && echo kernel > "$WORK/vmlinux"
	chown $VUID "$WORK/disk.img" "$WORK/vmlinux"
	mkdir "$WORK/vsock" && chown $VUID "$WORK/vsock"
	start_jail --ro "$WORK/vmlinux" --rw "$WORK/disk.img" --rw "$WORK/vsock" -- \
		write /vmlinux write /disk.img write /vsock/sock hold
	grep -q '^probe: write /vmlinux: Read-only file system$' "$WORK/out"
	grep -q '^probe: write /disk.img: ok$' "$WORK/out"
	grep -q '^probe: write /vsock/sock: ok$' "$WORK/out"
	[ "$(cat "$WORK/disk.img")" = datax ]
	[ "$(cat "$WORK/vmlinux")" = kernel ]
	awk '$5 == "/vmlinux" { print $6 }' "/proc/$VPID/mountinfo" | grep -q '^ro,nosuid,nodev,noexec'
	awk '$5 == "/disk.img" { print $6 }' "/proc/$VPID/mountinfo" | grep -q '^rw,nosuid,nodev,noexec'
	awk '$5 == "/vsock" { print $6 }' "/proc/$VPID/mountinfo" | grep -q '^rw,nosuid,nodev,noexec'
	stop_jail
	[ -e "$WORK/vsock/sock" ]      # the host's files stay; only the jail goes
}

@test "jailer: --cleanup refuses while the VMM runs; after it exits nothing is left" {
	start_jail -- hold
	run "$JAILER" --cleanup --id "$ID" --chroot-base-dir "$BASE" "${CGOPT[@]}"
	[ "$status" -eq 7 ]
	if have_cgroup2; then
		[ "$output" = "kiln-jailer: cannot clean up $ID: process $VPID is still running in cgroup /sys/fs/cgroup/$CG/$ID" ]
	else
		[ "$output" = "kiln-jailer: cannot clean up $ID: process $VPID still has its root in $JAIL/root" ]
	fi
	[ -d "$JAIL/root" ]
	stop_jail
	[ ! -e "$JAIL" ]
	[ ! -e "$BASE/jail-probe" ]
	[ ! -e "/sys/fs/cgroup/$CG/$ID" ]
	! grep -q "$BASE" /proc/self/mountinfo
	run "$JAILER" --cleanup --id "$ID" --chroot-base-dir "$BASE" "${CGOPT[@]}"
	[ "$status" -eq 7 ]
	[ "$output" = "kiln-jailer: nothing to clean up: no jail directory or cgroup for id $ID" ]
}

@test "jailer: the VMM's exit status is the jailer's" {
	run jail -- exit 5
	[ "$status" -eq 5 ]
	"$JAILER" --cleanup --id "$ID" --chroot-base-dir "$BASE" "${CGOPT[@]}"
}

@test "jailer: --netns joins an existing network namespace" {
	command -v ip >/dev/null || skip "ip (iproute2) missing"
	local ns=kiln-test-$$
	ip netns add "$ns"
	start_jail --netns "/run/netns/$ns" -- hold || { ip netns del "$ns"; return 1; }
	[ "$(readlink "/proc/$VPID/ns/net")" = "$(ip netns exec "$ns" readlink /proc/self/ns/net)" ]
	stop_jail
	ip netns del "$ns"
}

@test "jailer: the real kiln-vmm boots the test guest inside the jail" {
	[ -c /dev/kvm ] || skip "no /dev/kvm on this host"
	[ ! -d /sys/module/kvm_pvm ] || skip "KVM here is PVM, which boots only PVM guest kernels"
	[ -f "$ROOT/build/guest/bzImage" ] && [ -f "$ROOT/build/guest/initramfs.cpio.gz" ] || skip "no test guest (make guest)"
	local vmm=${KILN_VMM:-$ROOT/build/kiln-vmm}
	[ -x "$vmm" ] || skip "no $vmm"
	install -o root -g root -m 0755 "$vmm" "$WORK/kiln-vmm"
	JAIL=$BASE/kiln-vmm/$ID
	install -o root -g root -m 0644 "$ROOT/build/guest/bzImage" "$ROOT/build/guest/initramfs.cpio.gz" "$WORK/"
	cgl=(); have_cgroup2 && cgl=(--cgroup memory.max=512M --cgroup pids.max=16)
	EXE=$WORK/kiln-vmm run jail "${cgl[@]}" --ro "$WORK/bzImage" --ro "$WORK/initramfs.cpio.gz" -- \
		--kernel /bzImage --initrd /initramfs.cpio.gz --mem 128 \
		--cmdline "console=ttyS0 quiet reboot=k panic=-1 kiln.test=boot" </dev/null
	[[ "$output" != *"is dynamically linked"* ]] || skip "build/kiln-vmm is dynamically linked: link it with -static-pie to run it jailed"
	[ "$status" -eq 0 ]
	[[ "$output" == *"KILN-BOOT-OK"* ]]
	"$JAILER" --cleanup --id "$ID" --chroot-base-dir "$BASE" "${CGOPT[@]}"
	[ ! -e "$BASE/kiln-vmm/$ID" ]
}

# --userns: the jailer run by the VMM's own (non-root) user.
as_vmm_user() { setpriv --reuid $VUID --regid $VGID --clear-groups "$@"; }
need_userns() {
	command -v setpriv >/dev/null || skip "setpriv missing"
	as_vmm_user unshare -U true 2>/dev/null || skip "unprivileged user namespaces are disabled here"
}

@test "jailer: --userns runs without root: only the caller's ids mapped, no capabilities, NoNewPrivs, not dumpable" {
	need_userns
	mkdir -p "$BASE" && chown $VUID:$VGID "$BASE"
	CGOPT=(--no-cgroup)
	WRAP=(setpriv --reuid $VUID --regid $VGID --clear-groups)
	start_jail --userns -- id write /x thread hold
	[ "$(readlink "/proc/$VPID/ns/user")" != "$(readlink /proc/self/ns/user)" ]
	[ "$(tr -s ' ' < "/proc/$VPID/uid_map")" = " $VUID $VUID 1" ]
	[ "$(tr -s ' ' < "/proc/$VPID/gid_map")" = " $VGID $VGID 1" ]
	[ "$(cat "/proc/$VPID/setgroups")" = deny ]
	grep -q "^Uid:	$VUID	$VUID	$VUID	$VUID$" "/proc/$VPID/status"
	for t in /proc/$VPID/task/*; do
		for c in CapInh CapPrm CapEff CapBnd CapAmb; do
			grep -q "^$c:	0000000000000000$" "$t/status" || { grep "^$c" "$t/status"; return 1; }
		done
		grep -q "^NoNewPrivs:	1$" "$t/status"
	done
	[ "$(stat -c %u "/proc/$VPID/mem")" = 0 ]
	for ns in mnt pid net ipc uts; do
		[ "$(readlink "/proc/$VPID/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ]
	done
	[ "$(cd "/proc/$VPID/root" && find . | sort | tr '\n' ' ')" = ". ./dev ./dev/kvm ./jail-probe " ]
	[ "$(stat -c '%F %t:%T' "/proc/$VPID/root/dev/kvm")" = "character special file a:e8" ]
	[ "$(stat -c '%a %u' "/proc/$VPID/root/jail-probe")" = "111 $VUID" ]
	grep -q "^probe: id: uid=$VUID euid=$VUID gid=$VGID egid=$VGID" "$WORK/out"
	grep -q '^probe: write /x: Read-only file system$' "$WORK/out"
	stop_jail
	[ ! -e "$JAIL" ]
}

@test "jailer: --userns is refused as root, with foreign ids or with --netns; root mode is refused without root" {
	command -v setpriv >/dev/null || skip "setpriv missing"
	run jail --userns -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --userns is for running without root; as root, leave it out" ]
	run as_vmm_user "$JAILER" --userns --id "$ID" --exec-file "$EXE" --uid 1 --gid $VGID --chroot-base-dir "$BASE" --no-cgroup -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: --userns runs the VMM as the caller: --uid and --gid must be $VUID and $VGID" ]
	run as_vmm_user "$JAILER" --id "$ID" --exec-file "$EXE" --uid $VUID --gid $VGID --chroot-base-dir "$BASE" --no-cgroup -- hold
	[ "$status" -eq 2 ]
	[ "$output" = "kiln-jailer: must run as root (or, without root, with --userns)" ]
	run jail --userns --netns /run/netns/x -- hold
	[ "$status" -eq 2 ]
	assert_untouched
}
