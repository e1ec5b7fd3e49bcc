# helpers.bash: shared setup for kiln's bats end-to-end tests. The one way to run kiln-vmm is vmm().
bats_require_minimum_version 1.5.0
load /usr/lib/bats/bats-support/load
load /usr/lib/bats/bats-assert/load

ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
KILN_VMM=${KILN_VMM:-$ROOT/build/kiln-vmm}
KERNEL=${KILN_KERNEL:-$ROOT/build/guest/bzImage}
STOCK_KERNEL=${KILN_STOCK_KERNEL:-$ROOT/build/guest/vmlinuz-stock}
INITRD=${KILN_INITRD:-$ROOT/build/guest/initramfs.cpio.gz}
VMM_TIMEOUT=${VMM_TIMEOUT:-120}
CMDLINE="console=ttyS0 quiet reboot=k panic=-1"

# vmm ARGS...: run kiln-vmm with ARGS under `timeout $VMM_TIMEOUT` (exit 124 on a hang),
# stdin from $VMM_STDIN (default /dev/null). Records its pid for teardown's leak check.
# With VMM_HWM=FILE, also writes its peak RSS (VmHWM, kB) to FILE. With VMM_WRAP="CMD ARGS",
# runs kiln-vmm under that command (e.g. taskset, strace; split on spaces); the pid recorded
# for the leak check is then the wrapper's, so keep wrapped runs to ones that end by themselves.
vmm() {
  local pidf=$BATS_TEST_TMPDIR/pid.$RANDOM poller= rc
  : > "$pidf"
  if [ -n "${VMM_HWM:-}" ]; then
    echo 0 > "$VMM_HWM"
    ( while [ ! -s "$pidf" ]; do sleep 0.05; done; p=$(<"$pidf")
      while [ -r "/proc/$p/status" ]; do
        h=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null)
        [ -z "$h" ] || echo "$h" > "$VMM_HWM"
        sleep 0.1
      done ) &
    poller=$!
  fi
  # shellcheck disable=SC2086 # VMM_WRAP is a command line
  timeout -k 5 "$VMM_TIMEOUT" sh -c 'echo $$ > "$0"; exec "$@"' "$pidf" ${VMM_WRAP:-} "$KILN_VMM" "$@" \
    < "${VMM_STDIN:-/dev/null}"
  rc=$?
  cat "$pidf" >> "$BATS_TEST_TMPDIR/pids"
  [ -z "$poller" ] || wait "$poller"
  return $rc
}

# guest TEST [KERNEL-ARGS...] -- [VMM-ARGS...]: boot the test initramfs running scenario TEST.
guest() {
  local t=$1 extra=(); shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do extra+=("$1"); shift; done
  [ $# -eq 0 ] || shift
  vmm --kernel "${GUEST_KERNEL:-$KERNEL}" --initrd "$INITRD" \
      --cmdline "$CMDLINE kiln.test=$t${extra[*]:+ ${extra[*]}}" "$@"
}

# assert_diag: stderr (run --separate-stderr) is exactly one line starting "kiln-vmm: ".
assert_diag() {
  [ "${#stderr_lines[@]}" -eq 1 ] || fail "expected one stderr line, got ${#stderr_lines[@]}: $stderr"
  [[ ${stderr_lines[0]} == "kiln-vmm: "* ]] || fail "stderr does not start with 'kiln-vmm: ': $stderr"
}

common_setup() {
  [ -x "$KILN_VMM" ] || fail "$KILN_VMM not built (run: make)"
}

# No kiln-vmm started by this test may outlive it.
common_teardown() {
  local p leaked=
  [ -f "$BATS_TEST_TMPDIR/pids" ] || return 0
  for p in $(cat "$BATS_TEST_TMPDIR/pids"); do
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = kiln-vmm ]; then
      leaked="$leaked $p"; kill -KILL "$p" 2>/dev/null
    fi
  done
  [ -z "$leaked" ] || fail "kiln-vmm processes left behind:$leaked"
}
