#!/usr/bin/env bats
# seccomp.bats: kiln-vmm runs every thread under its build-time seccomp filter (Seccomp: 2,
# NoNewPrivs: 1), a heavy guest workload needs nothing outside the allowlists, and a forbidden
# call kills the whole VMM with SIGSYS (debug-only trigger build). Policy: policy/*.c.

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
  wait "$VPID"; VRC=$?
}

# ---- without KVM -------------------------------------------------------------------------

@test "seccomp: --print-policy lists each thread class, its rules and reasons" {
  run --separate-stderr "$KILN_VMM" --print-policy
  assert_success
  assert_line --regexp '^class loop \(main thread: .*\): [0-9]+ syscalls, [0-9]+ rules, default: kill the process$'
  assert_line --regexp '^class vcpu \(vCPU threads: .*\): [0-9]+ syscalls, [0-9]+ rules, default: kill the process$'
  assert_line --regexp '^  ioctl +arg1 == KVM_RUN +# run the guest$'
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

# ---- with KVM ----------------------------------------------------------------------------

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
# stay up while the host hammers the vsock socket
i=0; while [ $i -lt 20 ]; do dd if=/dev/vdb of=/dev/null bs=65536 count=16 2>/dev/null; i=$((i + 1)); done
echo WL-END
SCRIPT
  cp "$d/script.sh" "$d/script.img"; truncate -s 4096 "$d/script.img"
  start_bg "$out" --kernel "$KERNEL" --initrd "$INITRD" --vcpus 2 --mem 256 \
    --disk "$d/script.img,ro" --disk "$d/scratch.img" --disk "$d/discard.img" \
    --vsock "cid=3,uds=$d/v.sock" \
    --cmdline "$CMDLINE kiln.test=script kiln.script_dev=vda kiln.script_len=$(stat -c %s "$d/script.sh")"
  wait_for "$out" '^WL-START' 240 || fail "workload did not start: $(cat "$out" "$out.err")"
  check_threads "$VPID" 3
  # host-initiated connections (the guest has no listener: each is refused with a reset)
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
  [ "$VRC" -eq 0 ] || fail "exit $VRC (SIGSYS is 159): $(cat "$out.err"; tail -5 "$out")"
  for m in WL-W1 WL-W2 WL-R WL-C WL-END; do grep -q "^$m" "$out" || fail "no $m: $(tail -5 "$out")"; done
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
