# run-common.bash: what the `kiln run` suites (run.bats, run-stress.bats) share: the skip checks
# and names every test sets up, the leftover check every teardown makes, and reading the record.
# Each file sets ROOT and KILN and its own KILN_STATE_DIR (setup_file) before loading this.

# Skip unless this host can jail and boot a run; S: the state dir, T: the test's scratch dir.
run_setup() {
	[ "$(id -u)" = 0 ] || skip "kiln run jails the VM: needs root"
	[ -x "$KILN" ] || skip "build first: make build/kiln"
	[ -f "$ROOT/build/guest/bzImage" ] && [ -f "$ROOT/build/guest/rootfs.ext4" ] ||
		skip "no guest kernel or root image (make guest-kernel guest-image)"
	[ -c /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] || skip "no /dev/kvm that runs guests (use tests/kvmhost.sh)"
	[ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] || skip "cgroup v2 is not mounted"
	S=$KILN_STATE_DIR
	T=$BATS_TEST_TMPDIR
}

# What any run may have left: processes, cgroups, mounts, jail dirs, scratch disks, sockets.
# Prints them; empty when nothing is left.
leftovers() {
	local left=""
	pgrep -x kiln-vmm >/dev/null && left+=" kiln-vmm processes: $(pgrep -x kiln-vmm | tr '\n' ' ');"
	pgrep -x kiln-jailer >/dev/null && left+=" kiln-jailer processes;"
	[ -z "$(ls -A "$S/runs" 2>/dev/null)" ] || left+=" run dirs: $(ls "$S/runs");"
	[ -z "$(ls -A "$S/jail/kiln-vmm" 2>/dev/null)" ] || left+=" jail dirs;"
	[ -z "$(ls -d /sys/fs/cgroup/kiln/k* 2>/dev/null)" ] || left+=" cgroups;"
	! grep -q "$S" /proc/self/mountinfo || left+=" mounts;"
	[ -z "$(find "$S" \( -name scratch.img -o -type s \) 2>/dev/null)" ] || left+=" scratch disks or sockets;"
	printf '%s' "$left"
}

# Nothing of any run may remain after a test: fail it (after cleaning up) when something does.
run_teardown() {
	[ -n "${S:-}" ] || return 0
	local left
	left=$(leftovers)
	if [ -n "$left" ]; then
		pkill -KILL -x kiln-vmm || true
		"$KILN" gc >/dev/null 2>&1 || true
		echo "teardown: left behind:$left" >&2
		return 1
	fi
}

# The record: the last line of $output (stdout with --json); field EXPR prints record EXPR.
rec() { printf '%s\n' "$output" | tail -1; }
field() { rec | python3 -c "import json,sys; v=json.load(sys.stdin)$1; print(json.dumps(v) if isinstance(v,(bool,dict)) or v is None else v)"; }
