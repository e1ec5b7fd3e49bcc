#!/usr/bin/env bats
# seccomp.bats: kiln-vmm runs every thread under its build-time seccomp filter (Seccomp: 2,
# NoNewPrivs: 1) before the guest's first instruction (--hold-fd) and while it runs, a heavy guest
# workload needs nothing outside the allowlists (fd-pinned rules included), and a forbidden call
# kills the whole VMM with SIGSYS (debug-only trigger build). Policy: policy/*.c.

load helpers

TRIGGER_VMM=$ROOT/build/seccomp-trigger/kiln-vmm
TRIGGER_STATUS=92 # KILN_SECCOMP_TRIGGER_STATUS (0x5c) in vmm/seccomp.h

setup() {
  common_setup
  ulimit -c 0 # SIGSYS dumps core by default
}

teardown() {
  common_teardown
}

need_kvm() {
  ( exec 9<>/dev/kvm ) 2>/dev/null || skip "no usable /dev/kvm (make e2e runs these in tests/kvmhost.sh)"
}

# start_bg OUT ARGS...: kiln-vmm in the background, stdout to OUT; sets VPID.
start_bg() {
  local out=$1; shift
  "$KILN_VMM" "$@" < /dev/null > "$out" 2> "$out.err" &
  VPID=$!
  echo "$VPID" >> "$BATS_TEST_TMPDIR/pids"
}

# alive: VPID has not ended (deadlines below are wall-clock: the emulated host is slow to fork).
alive() {
  kill -0 "$VPID" 2>/dev/null
}

# wait_for FILE PATTERN SECONDS: until FILE has a line matching PATTERN.
wait_for() {
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ] && alive && ! grep -q "$2" "$1" 2>/dev/null; do sleep 0.2; done
  grep -q "$2" "$1" 2>/dev/null
}

# check_threads PID N: PID has N threads, each with Seccomp 2 and NoNewPrivs 1.
check_threads() {
  local t n=0 s
  for t in /proc/$1/task/*; do
    s=$(cat "$t/status") || fail "cannot read $t/status"
    grep -qx $'Seccomp:\t2' <<< "$s" || fail "thread ${t##*/} ($(cat "$t/comm")): $(grep ^Seccomp: <<< "$s")"
    grep -qx $'NoNewPrivs:\t1' <<< "$s" || fail "thread ${t##*/}: $(grep ^NoNewPrivs: <<< "$s")"
    n=$((n + 1))
  done
  [ "$n" -eq "$2" ] || fail "expected $2 threads, found $n"
}

# wait_exit: wait for VPID (at most 300 s) and put its status in VRC.
wait_exit() {
  local end=$((SECONDS + 300))
  while [ $SECONDS -lt $end ] && alive; do sleep 0.2; done
  alive && { kill -KILL "$VPID"; fail "kiln-vmm still running after 300 s"; }
  VRC=0
  wait "$VPID" || VRC=$?
}

# ---- without KVM -------------------------------------------------------------------------

@test "seccomp: --print-policy lists each thread class, its rules and reasons" {
  run --separate-stderr "$KILN_VMM" --print-policy
  assert_success
  assert_line --regexp '^class loop \(main thread: .*\): [0-9]+ syscalls, [0-9]+ rules, default: kill the process$'
  assert_line --regexp '^class vcpu \(vCPU threads: .*\): [0-9]+ syscalls, [0-9]+ rules, default: kill the process$'
  assert_line --regexp '^  ioctl +arg0 == <own vCPU fd> && arg1 == KVM_RUN +# run the guest$'
  assert_line --regexp '^  ioctl +arg0 == <VM fd> && arg1 == KVM_IRQ_LINE +# serial interrupt'
  assert_line --regexp '^  preadv +arg0 == <disk fd> +# virtio-blk reads$'
  assert_line --regexp '^  fallocate +arg0 == <disk fd> && arg1 == FALLOC_FL_PUNCH_HOLE'
  assert_line --regexp '^  accept4 +arg0 == <vsock listener fd> && arg3 == SOCK_NONBLOCK'
  assert_line --regexp '^  epoll_wait +arg0 == <epoll fd> +#'
  assert_line --regexp '^  timerfd_settime +arg0 == <vsock timerfd> +#'
  refute_line --regexp '^  (preadv|pwritev|pwrite64|fdatasync|fallocate|accept4|epoll_wait|epoll_ctl|ioctl) +any arguments'
  assert_line --regexp '^  socket +arg0 == AF_UNIX && arg1 == SOCK_STREAM'
  assert_line --regexp '^  mmap +\(arg2 & PROT_EXEC\) == 0 && arg4 == -1 '
  refute_line --regexp '^  (execve|clone|clone3|fork|openat|ptrace|mount|bpf) '
  # the vCPU class holds exactly these
  run sh -c "'$KILN_VMM' --print-policy | sed -n '/^class vcpu/,/BPF program/p' | awk 'NF && \$1 != \"class\" && \$1 != \"(BPF\" {print \$1}' | sort -u | tr '\n' ' '"
  assert_output "exit futex getpid ioctl madvise restart_syscall rt_sigprocmask rt_sigreturn tgkill write "
}

@test "seccomp: SECURITY.md states the sizes --print-policy reports" {
  local c n r b
  for c in loop vcpu; do
    n=$("$KILN_VMM" --print-policy | sed -n "s/^class $c (.*): \([0-9]*\) syscalls, \([0-9]*\) rules,.*/\1 (\2)/p")
    b=$("$KILN_VMM" --print-policy | sed -n "/^class $c /,/BPF program/s/^  (BPF program: \([0-9]*\) instructions)/\1/p")
    r=$(grep "^| $c |" "$ROOT/SECURITY.md") || fail "no $c row in SECURITY.md"
    [[ $r == *"| $n | $b |"* ]] || fail "SECURITY.md says '$r', --print-policy says $n syscalls (rules), $b instructions"
  done
}

@test "seccomp: kiln-vmm embeds BPF and does not link libseccomp" {
  run nm "$KILN_VMM"
  assert_success
  refute_line --regexp ' (seccomp_init|seccomp_rule_add|seccomp_export_bpf)$'
  assert_line --regexp ' kiln_bpf$'
}

@test "seccomp: the normal build has no trigger; the trigger build has it" {
  [ -x "$TRIGGER_VMM" ] || fail "$TRIGGER_VMM not built (make seccomp-trigger)"
  run grep -c KILN-SECCOMP-TRIGGER "$KILN_VMM"
  assert_output 0
  run grep -c KILN-SECCOMP-TRIGGER "$TRIGGER_VMM"
  refute_output 0
}

@test "seccomp: a bad --hold-fd is rejected before anything is opened (exit 2)" {
  local none=$BATS_TEST_TMPDIR/no-such-kernel v
  for v in abc 0 1 2 -1 '' 2147483648; do
    run --separate-stderr "$KILN_VMM" --kernel "$none" --hold-fd "$v"
    assert_equal "$status" 2
    assert_equal "$stderr" "kiln-vmm: --hold-fd '$v': need a file descriptor number, 3 or more"
  done
  run --separate-stderr "$KILN_VMM" --kernel "$none" --hold-fd 57 57<&-
  assert_equal "$status" 2
  assert_equal "$stderr" "kiln-vmm: --hold-fd 57: not an open file descriptor"
  run --separate-stderr "$KILN_VMM" --kernel "$none" --hold-fd 5 5>/dev/null
  assert_equal "$status" 2
  assert_equal "$stderr" "kiln-vmm: --hold-fd 5: not open for reading"
  # a valid hold fd gets as far as the kernel image
  run --separate-stderr "$KILN_VMM" --kernel "$none" --hold-fd 5 5</dev/null
  assert_equal "$status" 3
  assert_equal "$stderr" "kiln-vmm: cannot open kernel $none: No such file or directory"
}

@test "seccomp: a non-blocking --hold-fd is rejected (exit 2)" {
  command -v python3 >/dev/null || skip "python3 missing (opens the non-blocking fd)"
  run --separate-stderr python3 -c '
import os, sys
fd = os.open("/dev/null", os.O_RDONLY | os.O_NONBLOCK)
os.dup2(fd, 5)
os.set_inheritable(5, True) # dup2 onto itself keeps close-on-exec
os.execv(sys.argv[1], sys.argv[1:])' "$KILN_VMM" --kernel "$BATS_TEST_TMPDIR/none" --hold-fd 5
  assert_equal "$status" 2
  assert_equal "$stderr" "kiln-vmm: --hold-fd 5: non-blocking; kiln-vmm waits in a blocking read"
}

@test "seccomp: --help and the README document --hold-fd and exit 8" {
  run "$KILN_VMM" --help
  assert_success
  assert_line --regexp '^  --hold-fd N +hold the VM before the guest'"'"'s first instruction'
  assert_line '  8  --hold-fd reached end of file before the start byte: the guest never'
  grep -q -- '--hold-fd N' "$ROOT/README.md" || fail "README.md does not mention --hold-fd N"
  grep -q '^| 8 | ' "$ROOT/README.md" || fail "README.md has no exit status 8"
}

# ---- with KVM ----------------------------------------------------------------------------

HELD_LINE="kiln-vmm: held before the first guest instruction, all 3 threads filtered; one byte on fd 5 starts the guest"

# start_held OUT ARGS...: kiln-vmm ARGS --hold-fd 5 in the background, fd 5 reading the FIFO
# $BATS_TEST_TMPDIR/hold whose only writer is this shell's fd 6; waits for the held line.
start_held() {
  local out=$1; shift
  mkfifo "$BATS_TEST_TMPDIR/hold"
  exec 6<> "$BATS_TEST_TMPDIR/hold"
  "$KILN_VMM" "$@" --hold-fd 5 5< "$BATS_TEST_TMPDIR/hold" 6>&- < /dev/null > "$out" 2> "$out.err" &
  VPID=$!
  echo "$VPID" >> "$BATS_TEST_TMPDIR/pids"
  wait_for "$out.err" '^kiln-vmm: held' 120 || fail "no held line: $(cat "$out.err")"
  assert_equal "$(cat "$out.err")" "$HELD_LINE"
}

@test "seccomp: --hold-fd holds every thread filtered before the guest's first instruction; a byte starts it (2 vCPUs)" {
  need_kvm
  local out=$BATS_TEST_TMPDIR/out
  start_held "$out" --kernel "$KERNEL" --initrd "$INITRD" --vcpus 2 --cmdline "$CMDLINE kiln.test=boot"
  check_threads "$VPID" 3
  sleep 1
  alive || fail "kiln-vmm ended while held: $(cat "$out.err")"
  [ ! -s "$out" ] || fail "the guest printed before the release: $(head -c 300 "$out")"
  check_threads "$VPID" 3
  printf x >&6
  exec 6>&-
  wait_exit
  [ "$VRC" -eq 0 ] || fail "exit $VRC: $(cat "$out.err")"
  grep -q '^KILN-BOOT-OK cpus=2 ' "$out" || fail "no boot: $(tail -5 "$out")"
  assert_equal "$(cat "$out.err")" "$HELD_LINE"
}

@test "seccomp: end of file on --hold-fd ends kiln-vmm with exit 8 and the guest never runs" {
  need_kvm
  local out=$BATS_TEST_TMPDIR/out
  start_held "$out" --kernel "$KERNEL" --initrd "$INITRD" --vcpus 2 --cmdline "$CMDLINE kiln.test=boot"
  check_threads "$VPID" 3
  exec 6>&-
  wait_exit
  [ "$VRC" -eq 8 ] || fail "exit $VRC, want 8: $(cat "$out.err")"
  [ ! -s "$out" ] || fail "the guest ran: $(head -c 300 "$out")"
  assert_equal "$(cat "$out.err")" "$HELD_LINE
kiln-vmm: --hold-fd 5: end of file before the start byte; the guest did not run"
}

@test "seccomp: every thread shows Seccomp 2 and NoNewPrivs 1 while the guest runs (2 vCPUs)" {
  need_kvm
  local out=$BATS_TEST_TMPDIR/out
  start_bg "$out" --kernel "$KERNEL" --initrd "$INITRD" --vcpus 2 \
    --cmdline "$CMDLINE kiln.test=hold kiln.hold_s=10"
  wait_for "$out" '^KILN-HOLD' 240 || fail "guest did not reach the hold: $(cat "$out" "$out.err")"
  check_threads "$VPID" 3
  wait_exit
  [ "$VRC" -eq 0 ] || fail "exit $VRC: $(cat "$out.err")"
  [ ! -s "$out.err" ] || fail "stderr: $(cat "$out.err")"
}

@test "seccomp: with a host CPU to spare, the set-up prefault thread is joined before the gate" {
  need_kvm
  # 1 vCPU with a second CPU: kiln-vmm prefaults, with a thread of its own during set-up
  # (README, --mem). It must be gone, not merely done, before any filter: 32 GiB of RAM makes
  # its plan (the top 516 MiB among it) far longer than the set-up, so a thread left running
  # past the gate would still be there, unfiltered, while kiln-vmm is held.
  [ "$(nproc)" -ge 2 ] || skip "one CPU here (tests/run-e2e.sh gives the emulated host 1 unless KILN_KVMHOST_CPUS=2)"
  local out=$BATS_TEST_TMPDIR/out
  local HELD_LINE="kiln-vmm: held before the first guest instruction, all 2 threads filtered; one byte on fd 5 starts the guest"
  start_held "$out" --kernel "$KERNEL" --initrd "$INITRD" --vcpus 1 --mem 32768 --cmdline "$CMDLINE kiln.test=boot"
  check_threads "$VPID" 2
  exec 6>&-
  wait_exit
  [ "$VRC" -eq 8 ] || fail "exit $VRC, want 8: $(cat "$out.err")"
}

@test "seccomp: disks, console, vsock and 2 vCPUs at once run to the end with no violation" {
  need_kvm
  command -v python3 >/dev/null || skip "python3 missing (vsock host client)"
  local d=$BATS_TEST_TMPDIR out=$BATS_TEST_TMPDIR/out
  truncate -s 16M "$d/scratch.img"
  truncate -s 8M "$d/discard.img"
  cat > "$d/script.sh" <<'SCRIPT'
echo "WL-START $(grep -c ^processor /proc/cpuinfo)"
# two disk writers, a reader and a console writer at once, on both vCPUs
( for i in 1 2 3; do dd if=/dev/urandom of=/dev/vdb bs=65536 count=16 conv=fsync 2>/dev/null; done; echo WL-W1 ) &
( for i in 1 2 3; do dd if=/dev/zero of=/dev/vdc bs=65536 count=16 conv=fsync 2>/dev/null; blkdiscard /dev/vdc; done; echo WL-W2 ) &
( for i in 1 2 3 4; do dd if=/dev/vdb of=/dev/null bs=4096 2>/dev/null; done; echo WL-R ) &
( i=0; while [ $i -lt 300 ]; do echo "console line $i"; i=$((i + 1)); done; echo WL-C ) &
wait
sync
# stay up while the host hammers the vsock socket: at least 20 rounds, and until the host has
# reached the one listener (port 5000; every other port is refused with a reset), 120 s at most
kiln-vsock accept 5000 </dev/null >/dev/null 2>&1 &
a=$!
i=0 t0=$(date +%s)
while [ $i -lt 20 ] || { kill -0 $a 2>/dev/null && [ $(($(date +%s) - t0)) -lt 120 ]; }; do
  dd if=/dev/vdb of=/dev/null bs=65536 count=16 2>/dev/null; i=$((i + 1))
done
if kill -0 $a 2>/dev/null; then kill $a; else wait $a && echo WL-ACCEPTED; fi
echo WL-END
SCRIPT
  cp "$d/script.sh" "$d/script.img"; truncate -s 4096 "$d/script.img"
  # KNOWN BUG (open, issue 3 note): in the emulated host a busy guest sometimes ends in a reset
  # (exit 4, cause not found yet; also seen in boot.bats' console flood). There only, a reset on
  # the first boot gets one more boot; a seccomp kill (159) or any other status never does.
  local attempt
  for attempt in 1 2; do
    rm -f "$d/v.sock" "$d/vsock.log"
    start_bg "$out" --kernel "$KERNEL" --initrd "$INITRD" --vcpus 2 --mem 256 \
      --disk "$d/script.img,ro" --disk "$d/scratch.img" --disk "$d/discard.img" \
      --vsock "cid=3,uds=$d/v.sock" \
      --cmdline "$CMDLINE kiln.test=script kiln.script_dev=vda kiln.script_len=$(stat -c %s "$d/script.sh")"
    wait_for "$out" '^WL-START' 240 || fail "workload did not start: $(cat "$out" "$out.err")"
    check_threads "$VPID" 3
    # host-initiated connections: ports 5001-5006 have no listener (each is refused with a
    # reset), port 5000 has one for the first connection, which lets the guest finish
    python3 - "$d/v.sock" "$VPID" > "$d/vsock.log" 2>&1 <<'PY' &
import os, socket, sys, time
path, pid = sys.argv[1], int(sys.argv[2])
n, end = 0, time.time() + 300
def alive():
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
while n < 200 and time.time() < end and alive():
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(3)
        s.connect(path)
        s.sendall(b"CONNECT %d\n" % (5000 + n % 7))
        s.recv(64)
        s.close()
        n += 1
    except OSError:
        time.sleep(0.05)
print("connections", n)
PY
    local py=$!
    wait_exit
    wait "$py"
    [ "$VRC" = 4 ] && [ -n "${KILN_IN_KVMHOST:-}" ] && [ "$attempt" = 1 ] || break
    echo "# heavy workload: guest reset on attempt 1 (known bug, see issue 3): booting once more" >&3
  done
  [ "$VRC" -eq 0 ] || fail "exit $VRC (SIGSYS is 159): $(cat "$out.err"; tail -5 "$out")"
  for m in WL-W1 WL-W2 WL-R WL-C WL-ACCEPTED WL-END; do grep -q "^$m" "$out" || fail "no $m: $(tail -5 "$out")"; done
  grep -q '^console line 299' "$out"
  grep -Eq '^connections [1-9]' "$d/vsock.log" || fail "no vsock connection: $(cat "$d/vsock.log")"
  [ ! -e "$d/v.sock" ] || fail "vsock socket left behind"
  [ ! -s "$out.err" ] || fail "stderr: $(cat "$out.err")"
}

@test "seccomp: execve from a vCPU thread (trigger build) kills kiln-vmm with SIGSYS" {
  need_kvm
  [ -x "$TRIGGER_VMM" ] || fail "$TRIGGER_VMM not built (make seccomp-trigger)"
  KILN_VMM=$TRIGGER_VMM run --separate-stderr guest status kiln.status=$TRIGGER_STATUS --
  [ "$status" -eq 159 ] || fail "exit $status, want 159 (128 + SIGSYS): $stderr"
  assert_equal "${stderr_lines[0]}" "kiln-vmm: KILN-SECCOMP-TRIGGER: calling execve from a vCPU thread"
  [ "${#stderr_lines[@]}" -eq 1 ] || fail "execve returned? $stderr"
}

@test "seccomp: the trigger status does nothing special in the normal build (exit 5)" {
  need_kvm
  run --separate-stderr guest status kiln.status=$TRIGGER_STATUS --
  assert_equal "$status" 5
  assert_equal "$stderr" "kiln-vmm: guest finished with status $TRIGGER_STATUS"
}
