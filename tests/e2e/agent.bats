#!/usr/bin/env bats
# agent.bats: kiln-init (the guest agent) end to end, through the host-side test client
# build/agent-client over kiln-vmm's vsock Unix socket. Nested boots are slow, so setup_file
# boots each image once and runs every client conversation against it (one connection each,
# --no-bye, the last one sends BYE); the tests then check the recorded outputs and statuses.
# Client exit codes: the command's status (128+N for signal N), 120 agent refused a request,
# 121 protocol error, 122 connection failed, 124 timeout (tests/e2e/helpers/agent-client.c).

load helpers

CLIENT=$ROOT/build/agent-client
IMAGE=$ROOT/build/guest/rootfs.ext4
PY_IMAGE=$ROOT/build/guest/rootfs-python.ext4
# The output-streaming test: 100 MB in the issue; scaled down to 32 MiB because the e2e run is
# nested inside an emulated (TCG) host where guest-to-host vsock moves about 1.3 MB/s (16 MiB took
# 13 s), so 100 MB would add over a minute. Memory stays bounded either way (kiln-init peaked at
# ~1.1 MB, the client at ~1.6 MB). KILN_AGENT_FLOOD_MB=100 runs the full size.
FLOOD_MB=${KILN_AGENT_FLOOD_MB:-32}

# boot IMAGE NAME: start kiln-vmm in the background with IMAGE as the read-only root.
boot() {
  local d=$BATS_FILE_TMPDIR
  UDS=$d/$2.sock
  timeout -k 5 600 sh -c 'echo $$ > "$0"; exec "$@"' "$d/$2.pid" "$KILN_VMM" \
    --kernel "$KERNEL" --mem 256 --disk "$1,ro" --vsock "cid=3,uds=$UDS" \
    --cmdline "console=ttyS0 quiet reboot=k panic=-1 root=/dev/vda ro init=/sbin/init" \
    </dev/null >"$d/$2.console" 2>&1 &
  VMM_BG=$!
}

# c NAME [CLIENT-ARGS...]: one conversation; records NAME.out .err .rc .res. Stdin from $CIN.
c() {
  local n=$1 d=$BATS_FILE_TMPDIR rc=0; shift
  timeout -k 5 300 "$CLIENT" --uds "$UDS" --timeout 240 --no-bye --result "$d/$n.res" "$@" \
    <"${CIN:-/dev/null}" >"$d/$n.out" 2>"$d/$n.err" || rc=$?
  echo $rc > "$d/$n.rc"
}

# end NAME: send BYE (client without --no-bye), wait for kiln-vmm, record its status.
end_vm() {
  local d=$BATS_FILE_TMPDIR rc=0
  timeout -k 5 120 "$CLIENT" --uds "$UDS" --timeout 100 >"$d/$1.bye.out" 2>&1 || rc=$?
  echo $rc > "$d/$1.bye.rc"
  rc=0; wait "$VMM_BG" || rc=$?
  echo $rc > "$d/$1.vmm.rc"
}

# flood_round NAME: the output-streaming conversation (agent's peak RSS from /proc/1/status),
# recorded as flood.*, then BYE to VM NAME (end_vm NAME).
flood_round() {
  local d=$BATS_FILE_TMPDIR
  timeout -k 5 300 "$CLIENT" --uds "$UDS" --timeout 280 --no-bye --result "$d/flood.res" -- \
    sh -c "head -c $((FLOOD_MB * 1048576)) /dev/zero; grep VmHWM /proc/1/status >&2" \
    </dev/null 2>"$d/flood.err" | wc -c > "$d/flood.bytes" || true
  end_vm "$1"
}

setup_file() {
  ( exec 9<>/dev/kvm ) 2>/dev/null || return 0
  [ -x "$CLIENT" ] && [ -f "$IMAGE" ] || return 0
  local d=$BATS_FILE_TMPDIR
  cd "$d"
  boot "$IMAGE" base
  # -- commands
  c echo -- echo hi
  c exit42 -- sh -c 'exit 42'
  c kill9 -- sh -c 'kill -9 $$'
  printf 'hello\nworld\n' > stdin.txt
  CIN=stdin.txt c stdin -- sh -c 'read a; read b; echo "got:$a,$b"'
  head -c 1048576 /dev/urandom > rand.bin
  CIN=rand.bin c cat -- cat
  c mkdir -- mkdir /work/sub
  c envcwd --env FOO=bar --env PATH=/bin --cwd sub -- sh -c 'echo "$FOO $PATH $(pwd)"'
  c streams -- sh -c 'echo out; echo err >&2; echo out2'
  c sandbox --user sandbox -- sh -c 'id -u; id -g; touch /etc/x 2>/dev/null || echo ro'
  c root -- id -u
  c orphan -- sh -c 'sleep 1000 & echo started'
  c noexec -- /no/such/cmd
  c rlimit --rlimit nofile=64 -- sh -c 'ulimit -n'
  c mounts -- sh -c 'grep -E " / | /tmp | /work " /proc/mounts | cut -d" " -f2-4; hostname; ip link show lo | head -1'
  # -- files
  head -c 10485760 /dev/urandom > big.bin
  c put --put "$d/big.bin:dir/big.bin"
  c putsha -- sha256sum dir/big.bin
  c get --get "dir/big.bin:$d/big.back"
  printf 'x' > small.txt
  c dotdot --put "$d/small.txt:../x"
  c abs --put "$d/small.txt:/etc/x"
  c mklinks -- sh -c 'ln -s /etc/shadow /work/shadow; ln -s /etc /work/etclink'
  c getlink --get "shadow:$d/shadow.out"
  c putlink --put "$d/small.txt:etclink/x"
  c getdir --get "dir:$d/dir.out"
  # -- garbage, then the agent still serves
  printf 'GARBAGE GARBAGE GARBAGE\n' > garbage.bin
  c garbage --raw garbage.bin
  # a valid header (STDIN) whose length is beyond the cap
  printf 'KILN\001\002\000\000\000\000\020\000' > toolong.bin
  c toolong --raw toolong.bin
  c alive -- echo alive
  flood_round base
  # KNOWN emulated-host fault (see known_fault in run-common.bash): the nested guest ends in a
  # reset with no kernel message before it; in CI it hit this VM in the middle of the flood
  # ("connection closed by the guest" at 10.7 MB, kiln-vmm status 4, console: only the agent's
  # ready line and "kiln-vmm: guest reset"). Exactly that, in the emulated host only: the flood
  # and BYE once more on a fresh VM, said on the TAP stream; a second fault still fails.
  echo base > floodvm
  if [ -n "${KILN_IN_KVMHOST:-}" ] && [ "$(cat base.vmm.rc)" = 4 ] &&
     grep -q 'kiln-vmm: guest reset' base.console &&
     ! grep -v '^kiln-vmm:' base.console | grep -qiE 'panic|Restarting|BUG'; then
    echo "# agent: the base VM met the emulated host's known guest reset: flood and BYE once more on a fresh VM" >&3
    boot "$IMAGE" flood2
    flood_round flood2
    echo flood2 > floodvm
  fi

  if [ -f "$PY_IMAGE" ]; then
    boot "$PY_IMAGE" py
    c py -- python3 -c 'import sys, json; print(json.dumps({"sum": sum(range(10)), "v": sys.version_info[0]}))'
    end_vm py
  fi
}

setup() {
  common_setup
  ( exec 9<>/dev/kvm ) 2>/dev/null || skip "no usable /dev/kvm (make e2e runs these in tests/kvmhost.sh)"
  [ -x "$CLIENT" ] || fail "$CLIENT not built (run: make build/agent-client)"
  [ -f "$IMAGE" ] || fail "$IMAGE not built (run: make guest-image)"
  D=$BATS_FILE_TMPDIR
}

teardown() {
  local p
  for p in "$BATS_FILE_TMPDIR"/*.pid; do [ -f "$p" ] && cat "$p"; done >> "$BATS_TEST_TMPDIR/pids" 2>/dev/null
  common_teardown
}

# r NAME: load a recorded conversation into $rc $out $err $res
r() {
  rc=$(cat "$D/$1.rc"); out=$(cat "$D/$1.out"); err=$(cat "$D/$1.err")
  res=$(cat "$D/$1.res" 2>/dev/null || true)
}

@test "agent: echo hi gives stdout hi and exit 0" {
  r echo
  [ "$rc" = 0 ] || fail "rc $rc err: $err"
  [ "$out" = hi ] || fail "stdout: $out"
  [[ $res == "kind=exited code=0 "* ]] || fail "result: $res"
}

@test "agent: exit 42 gives 42" {
  r exit42
  [ "$rc" = 42 ] || fail "rc $rc err: $err"
  [[ $res == "kind=exited code=42 "* ]] || fail "result: $res"
}

@test "agent: kill -9 \$\$ is reported as signal 9" {
  r kill9
  [ "$rc" = 137 ] || fail "rc $rc err: $err"
  [[ $res == "kind=signaled code=9 "* ]] || fail "result: $res"
}

@test "agent: stdin reaches the command (lines, and 1 MiB through cat unchanged)" {
  r stdin
  [ "$out" = "got:hello,world" ] || fail "stdout: $out err: $err"
  [ "$(cat "$D/cat.rc")" = 0 ] || fail "cat rc $(cat "$D/cat.rc"): $(cat "$D/cat.err")"
  cmp "$D/rand.bin" "$D/cat.out" || fail "cat output differs from its input"
}

@test "agent: env and cwd apply (relative cwd is under /work)" {
  r envcwd
  [ "$rc" = 0 ] || fail "rc $rc err: $err"
  [ "$out" = "bar /bin /work/sub" ] || fail "stdout: $out"
}

@test "agent: stdout and stderr arrive separated" {
  r streams
  [ "$out" = "$(printf 'out\nout2')" ] || fail "stdout: $out"
  [ "$err" = err ] || fail "stderr: $err"
}

@test "agent: --user sandbox runs as uid/gid 1000, root as 0; the root image is read-only" {
  r sandbox
  [ "$out" = "$(printf '1000\n1000\nro')" ] || fail "stdout: $out err: $err"
  r root
  [ "$out" = 0 ] || fail "root stdout: $out"
}

@test "agent: a background child does not hold up EXIT; exec failures give 127; rlimits apply" {
  r orphan
  [ "$rc" = 0 ] && [ "$out" = started ] || fail "orphan rc $rc out: $out err: $err"
  r noexec
  [ "$rc" = 127 ] || fail "noexec rc $rc"
  [ "$err" = "kiln-init: exec /no/such/cmd: No such file or directory" ] || fail "stderr: $err"
  r rlimit
  [ "$out" = 64 ] || fail "rlimit stdout: $out err: $err"
}

@test "agent: guest mounts (root ro, /tmp and /work tmpfs nosuid,nodev), hostname, loopback" {
  r mounts
  [[ $out == *"/ ext4 ro"* ]] || fail "root: $out"
  [[ $out == *"/tmp tmpfs rw,nosuid,nodev"* ]] || fail "/tmp: $out"
  [[ $out == *"/work tmpfs rw,nosuid,nodev"* ]] || fail "/work: $out"
  [[ $out == *kiln* ]] || fail "hostname: $out"
  # Loopback is up unless the kernel has no CONFIG_INET (kiln-init then says so on the console).
  [[ $out == *"<LOOPBACK,UP"* ]] || grep -q "no loopback" "$D/base.console" || fail "lo: $out"
}

@test "agent: PUT then GET of a 10 MB file round-trips with equal SHA-256" {
  [ "$(cat "$D/put.rc")" = 0 ] || fail "put: $(cat "$D/put.err")"
  want=$(sha256sum < "$D/big.bin" | cut -d' ' -f1)
  r putsha
  [ "$out" = "$want  dir/big.bin" ] || fail "guest sha: $out"
  [ "$(cat "$D/get.rc")" = 0 ] || fail "get: $(cat "$D/get.err")"
  [ "$(sha256sum < "$D/big.back" | cut -d' ' -f1)" = "$want" ] || fail "GET sha differs"
}

@test "agent: PUT with ../x or an absolute path is refused" {
  r dotdot
  [ "$rc" = 120 ] || fail "rc $rc"
  [ "$err" = "agent-client: agent error 2: put: '..' path component" ] || fail "stderr: $err"
  r abs
  [ "$rc" = 120 ] || fail "rc $rc"
  [ "$err" = "agent-client: agent error 2: put: absolute path" ] || fail "stderr: $err"
}

@test "agent: GET of a symlink to /etc/shadow and PUT through a symlinked dir are refused" {
  r getlink
  [ "$rc" = 120 ] || fail "rc $rc err: $err"
  [ "$err" = "agent-client: agent error 2: get: symlink in path (links are never followed)" ] || fail "stderr: $err"
  [ ! -e "$D/shadow.out" ] || fail "a host file was created"
  r putlink
  [ "$rc" = 120 ] || fail "rc $rc err: $err"
  [ "$err" = "agent-client: agent error 2: put: symlink in path (links are never followed)" ] || fail "stderr: $err"
  r getdir
  [ "$rc" = 120 ] || fail "rc $rc err: $err"
  [ "$err" = "agent-client: agent error 3: get: not a regular file" ] || fail "stderr: $err"
}

@test "agent: garbage frames get ERROR and the guest stays up" {
  r garbage
  [ "$rc" = 121 ] || fail "rc $rc err: $err"
  [ "$err" = "agent-client: agent error 1: bad frame header: bad magic" ] || fail "stderr: $err"
  r toolong
  [ "$rc" = 121 ] || fail "rc $rc err: $err"
  [ "$err" = "agent-client: agent error 1: bad frame header: payload length beyond the frame type's cap" ] || fail "stderr: $err"
  r alive
  [ "$rc" = 0 ] && [ "$out" = alive ] || fail "after garbage: rc $rc out $out err $err"
}

@test "agent: $FLOOD_MB MiB of output streams through with bounded memory on both ends" {
  local v
  v=$(cat "$D/floodvm")
  bytes=$(cat "$D/flood.bytes")
  [ "$bytes" = $((FLOOD_MB * 1048576)) ] || fail "got $bytes bytes; stderr: $(cat "$D/flood.err"); kiln-vmm exit $(cat "$D/$v.vmm.rc"); console: $(tail -20 "$D/$v.console")"
  hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "$D/flood.err")
  [ -n "$hwm" ] && [ "$hwm" -lt 8192 ] || fail "kiln-init peak RSS ${hwm:-?} kB (limit 8192); stderr: $(cat "$D/flood.err"); result: $(cat "$D/flood.res")"
  crss=$(sed -n 's/.*client_maxrss_kb=\([0-9]*\).*/\1/p' "$D/flood.res")
  [ -n "$crss" ] && [ "$crss" -lt 16384 ] || fail "client peak RSS ${crss:-?} kB (limit 16384)"
}

@test "agent: BYE ends the VM through the exit port (kiln-vmm exits 0)" {
  local v
  v=$(cat "$D/floodvm")
  [ "$(cat "$D/$v.bye.rc")" = 0 ] || fail "bye client: $(cat "$D/$v.bye.out"); kiln-vmm exit $(cat "$D/$v.vmm.rc"); console: $(tail -20 "$D/$v.console")"
  [ "$(cat "$D/$v.vmm.rc")" = 0 ] || fail "kiln-vmm exit $(cat "$D/$v.vmm.rc"); console: $(tail -20 "$D/$v.console")"
}

@test "agent: a python3 one-liner runs in the python image" {
  [ -f "$PY_IMAGE" ] || fail "$PY_IMAGE not built (run: make guest-image-python)"
  r py
  [ "$rc" = 0 ] || fail "rc $rc err: $err console: $(tail -20 "$D/py.console")"
  [ "$out" = '{"sum": 45, "v": 3}' ] || fail "stdout: $out"
  [ "$(cat "$D/py.vmm.rc")" = 0 ] || fail "kiln-vmm exit $(cat "$D/py.vmm.rc")"
}
