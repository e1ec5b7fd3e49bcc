#!/usr/bin/env bats
# vsock.bats: virtio-vsock end to end through kiln-vmm's Firecracker-compatible Unix socket.
# One guest (setup_file) serves every test: it runs guest/kiln-vsock as an echo server (port
# 5000), an agent that runs host-sent shell commands (5002), and waits for a connection on 5999
# to exit 0. The host side is tests/e2e/helpers/vsock-host.py (CONNECT handshakes, listeners at
# UDS_<port>, hashing). Tests run in file order; the last one stops the guest and checks leaks.

load helpers

RAM_MIB=256
CID=3
ECHO=5000 AGENT=5002 STOP=5999
VH="$BATS_TEST_DIRNAME/helpers/vsock-host.py"
# The issue asks for 1 GiB each way. Inside tests/kvmhost.sh (QEMU TCG running nested KVM) the
# path moves only a few MiB/s, so the bulk size is scaled down there to keep each direction under
# about a minute: KILN_VSOCK_BULK_MIB, default 1024 on real KVM, 64 in the emulated host
# (measured there: 3-5 MiB/s each way, so 64 MiB takes 12-20 s).
BULK_MIB=${KILN_VSOCK_BULK_MIB:-$([ -n "${KILN_IN_KVMHOST:-}" ] && echo 64 || echo 1024)}

need_kvm() {
  ( exec 9<>/dev/kvm ) 2>/dev/null || skip "no usable /dev/kvm (make e2e runs these in tests/kvmhost.sh)"
}

# The guest's script: listeners in the background, then wait to be told to stop.
guest_script() {
  cat <<SCRIPT
kiln-vsock listen $ECHO echo </dev/null >/dev/null 2>&1 &
kiln-vsock listen $AGENT agent </dev/null >/dev/null 2>&1 &
echo KILN-VSOCK-READY
kiln-vsock accept $STOP </dev/null >/dev/null
echo KILN-VSOCK-STOP
SCRIPT
}

setup_file() {
  ( exec 9<>/dev/kvm ) 2>/dev/null || return 0
  # AF_UNIX paths must be under 108 bytes: a short directory of our own, removed in teardown_file.
  D=$(mktemp -d /tmp/kvs.XXXXXX)
  export D UDS=$D/v.sock
  guest_script > "$D/script.sh"
  cp "$D/script.sh" "$D/script.img"
  truncate -s 4096 "$D/script.img"
  # 1024 connections need more than the default 1024 descriptors (as under kiln-jailer's rlimits).
  ( ulimit -n 4096
    BATS_TEST_TMPDIR=$D VMM_TIMEOUT=900 vmm --kernel "$KERNEL" --initrd "$INITRD" --mem $RAM_MIB \
      --disk "$D/script.img,ro" --vsock "cid=$CID,uds=$UDS" \
      --cmdline "$CMDLINE kiln.test=script kiln.script_dev=vda kiln.script_len=$(stat -c %s "$D/script.sh")" \
      > "$D/out" 2> "$D/err"
    echo $? > "$D/rc" ) 3>&- &
  # The VMM's pid (written by vmm() before exec).
  for _ in $(seq 100); do
    VMM_PID=$(cat "$D"/pid.* 2>/dev/null) && [ -n "$VMM_PID" ] && break
    sleep 0.1
  done
  export VMM_PID
  # Wait for the agent (the guest boots in 3-10 s nested).
  python3 "$VH" agent "$UDS" $AGENT "echo up" 120 > "$D/boot" 2>&1 || true
}

teardown_file() {
  [ -n "${D:-}" ] || return 0
  if [ -n "${VMM_PID:-}" ] && [ "$(cat "/proc/$VMM_PID/comm" 2>/dev/null)" = kiln-vmm ]; then
    kill -KILL "$VMM_PID" 2>/dev/null
  fi
  rm -rf "$D"
}

setup() {
  common_setup
  need_kvm
  [ -n "${D:-}" ] && [ "$(cat "$D/boot" 2>/dev/null)" = up ] \
    || fail "guest agent never answered. agent: $(cat "$D/boot" 2>/dev/null)
vmm rc: $(cat "$D/rc" 2>/dev/null) stderr: $(cat "$D/err" 2>/dev/null)
guest output: $(tail -c 3000 "$D/out" 2>/dev/null)"
}

# Every helper process a test starts must be gone when it ends.
teardown() {
  local left
  left=$(pgrep -f "vsock-host.py .*$D" || true)
  if [ -n "$left" ]; then
    kill -KILL $left 2>/dev/null
    fail "vsock-host.py processes left behind: $left"
  fi
}

vh() { python3 "$VH" "$@"; }

# ---- streams ----------------------------------------------------------------------------

@test "vsock: host-initiated echo returns exactly what was sent" {
  run -0 vh echo "$UDS" $ECHO "hello from the host $$"
  assert_output "echo=hello from the host $$"
}

@test "vsock: guest-initiated echo reaches the host listener at UDS_<port> and comes back" {
  run -0 vh g2h-echo "$UDS" $AGENT 7000 "hello from the guest"
  assert_output "rc=0 echo=hello from the guest"
  [ ! -e "${UDS}_7000" ] || fail "listener socket left behind"
}

@test "vsock: host to guest bulk transfer arrives whole and in order (equal SHA-256)" {
  run -0 vh h2g "$UDS" $AGENT 5003 $((BULK_MIB << 20))
  echo "# host->guest ${BULK_MIB} MiB: ${lines[0]}" >&3
  assert_output --partial "bytes=$((BULK_MIB << 20)) "
}

@test "vsock: guest to host bulk transfer arrives whole and in order (equal SHA-256)" {
  run -0 vh g2h "$UDS" $AGENT 7001 $((BULK_MIB << 20))
  echo "# guest->host ${BULK_MIB} MiB: ${lines[0]}" >&3
  assert_output --partial "bytes=$((BULK_MIB << 20)) "
  [ ! -e "${UDS}_7001" ] || fail "listener socket left behind"
}

@test "vsock: 100 concurrent host connections each get their own distinct payload back" {
  run -0 vh concurrent "$UDS" $ECHO 100 65536
  assert_output "connections=100 size=65536 closed=100 mismatched=0"
}

@test "vsock: a host client killed mid-transfer does not disturb a parallel transfer" {
  run vh killmid "$UDS" $ECHO $((16 << 20))
  [ "$status" -eq 0 ] || fail "killmid exit $status: $output"
  echo "# ${lines[0]}" >&3
  assert_output --partial "echo=after-kill"
}

# ---- refusals ---------------------------------------------------------------------------

@test "vsock: guest connect to a host port with no listener fails fast (ECONNRESET, < 1 s)" {
  [ ! -e "${UDS}_7777" ]
  run vh agent "$UDS" $AGENT "kiln-vsock connect 2 7777 </dev/null"
  [ "$status" = 1 ] || fail "exit $status, expected 1: $output"
  assert_output --regexp '^kiln-vsock: connect 2:7777: Connection reset by peer \(ECONNRESET\) after [0-9]+ ms$'
  ms=$(sed -n 's/.* after \([0-9]*\) ms$/\1/p' <<< "$output")
  [ "$ms" -lt 1000 ] || fail "took $ms ms"
}

@test "vsock: guest connect to a CID other than the host's (2) fails" {
  for cid in 5 $((CID + 1)) 4294967294; do
    run vh agent "$UDS" $AGENT "kiln-vsock connect $cid $ECHO </dev/null"
    [ "$status" = 1 ] || fail "CID $cid: exit $status, expected 1: $output"
    assert_output --regexp "^kiln-vsock: connect $cid:$ECHO: .* after [0-9]+ ms\$"
  done
}

# Closed: EOF, or RESET where kiln-vmm closes with the rest of the client's line unread.
@test "vsock: a bad handshake is closed (non-numeric port, no newline in 32 bytes, silence)" {
  run -0 vh handshake "$UDS" 'CONNECT abc\n'
  assert_output --regexp '^answer=(EOF|RESET) ms=[0-9]+$'
  run -0 vh handshake "$UDS" "CONNECT $ECHO$(printf '%40s' '')"
  assert_output --regexp '^answer=(EOF|RESET) ms=[0-9]+$'
  run -0 vh handshake "$UDS" "CONNECT 99999999999\\n"
  assert_output --regexp '^answer=(EOF|RESET) ms=[0-9]+$'
  # nothing at all: closed by the handshake timeout (2 s), well before our 6 s
  run -0 vh handshake "$UDS" '' 6
  assert_output --regexp '^answer=(EOF|RESET) ms=[0-9]+$'
  ms=${output##*ms=}
  [ "$ms" -ge 1500 ] && [ "$ms" -le 4000 ] || fail "silent client closed after $ms ms, expected about 2000"
  # a port nobody listens on in the guest: the guest RSTs, the client is closed without OK
  run -0 vh handshake "$UDS" 'CONNECT 4242\n'
  assert_output --regexp '^answer=(EOF|RESET) ms=[0-9]+$'
  # and a good one still works
  run -0 vh echo "$UDS" $ECHO after-bad-handshakes
}

# ---- limits -----------------------------------------------------------------------------

# The guest opens 5000 connections to UDS_7002 one after another, writes up to 320 KiB on each
# without blocking and never reads; the host accepts, writes 64 KiB to each and never reads
# either. The cap (1024, the default) minus the agent's and one echo connection leaves 1022; the
# other 3978 must get RST. kiln-vmm may hold at most VSOCK_TOTAL_BUF (64 MiB) of guest data for
# all connections together and reads host data only against the guest's credit, so its memory
# outside guest RAM must stay under 64 MiB + 16 MiB, and its peak RSS under guest RAM + that.
# (Measured in tests/kvmhost.sh: about 1.2 MiB outside guest RAM, also with credit that grows
# from the shared pool; opening takes 22-85 s there. The guest's writes stop at the first EAGAIN,
# within the 64 KiB starting credit (about 38 KiB each), which the host socket absorbs: the
# per-connection rings are not filled here; tests/unit/test_vsock.c covers them and the pool.)
# The echo connection opened before the flood must still answer while the table is full.
@test "vsock: 5000 guest connections never read: excess fails, VMM RSS bounded, old connection answers" {
  run vh flood "$UDS" $AGENT $ECHO 7002 5000 $((320 << 10)) "$VMM_PID" $RAM_MIB
  echo "# $(tr '\n' ' ' <<< "$output")" >&3
  [ "$status" -eq 0 ] || fail "flood helper exited $status: $output"
  assert_line --regexp '^KILN-FLOOD-OPEN ok=1022 failed=3978 reset=3978 other=0 '
  assert_line "new_conn_refused_while_full=yes"
  assert_line "old_conn_echo=ping"
  assert_line "KILN-FLOOD-DONE ok=1022 closed_by_peer=1022"
  assert_line "after=agent-alive"
  other=$(sed -n 's/.*vmm_non_guest_rss_kb=\([0-9]*\).*/\1/p' <<< "$output")
  hwm=$(sed -n 's/.*vmm_hwm_kb=\([0-9]*\).*/\1/p' <<< "$output")
  [ "$other" -le $(((64 + 16) * 1024)) ] || fail "VMM RSS outside guest RAM $other kB > 80 MiB"
  [ "$hwm" -le $(((RAM_MIB + 64 + 16) * 1024)) ] || fail "VMM peak RSS $hwm kB > guest RAM + 80 MiB"
}

# ---- the end ----------------------------------------------------------------------------

@test "vsock: guest exits 0 when told; the VMM removes its socket; no process is left" {
  run -0 vh stop "$UDS" $STOP
  for _ in $(seq 300); do [ -s "$D/rc" ] && break; sleep 0.1; done
  [ "$(cat "$D/rc")" = 0 ] || fail "kiln-vmm exited $(cat "$D/rc" 2>/dev/null): $(cat "$D/err")"
  grep -q KILN-VSOCK-STOP "$D/out" || fail "guest did not reach the end of its script: $(tail -c 2000 "$D/out")"
  [ ! -e "$UDS" ] || fail "$UDS left behind"
  left=$(ls "$D" | grep '^v\.sock' || true)
  [ -z "$left" ] || fail "sockets left behind: $left"
  [ "$(cat "/proc/$VMM_PID/comm" 2>/dev/null)" != kiln-vmm ] || fail "kiln-vmm $VMM_PID still running"
  left=$(pgrep -f "$D" || true)
  [ -z "$left" ] || fail "processes left behind: $(ps -o pid,args -p $left)"
}
