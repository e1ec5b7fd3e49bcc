# bench/runner.sh: the `kiln run` part of `make bench`, sourced by bench/run.sh (uses its helpers).
# Needs root, cgroup v2 and KVM (as kiln run does); skipped with a reason otherwise.
#   latency  `kiln run -- true` end to end (jail, boot, agent, command, teardown) against
#            (a) bare kiln-vmm booting the same kernel from an ext4 root on virtio-blk with a
#            scratch disk and a vsock device, same memory and vCPUs, its init ending the VM at
#            once (testroot.ext4's /sbin/kiln-exit, status 0: the least a boot can do), and
#            (b) QEMU microvm booting the same root the same way (virtio-blk-device, no vsock).
#            The gap to (a) is what the jailer, the agent conversation and the teardown cost.
#            KILN_BENCH_RUN_RUNS runs each (default 5), interleaved; medians.
#   rate     runs per minute of `kiln run -- true` with 2 at a time: two loops of
#            KILN_BENCH_RUN_RATE runs each (default 4), completed runs / wall minutes.
# The record's timings_ms (jail, boot, run, teardown) are kept in results.txt.

RN_RUNS=${KILN_BENCH_RUN_RUNS:-5}
RN_RATE=${KILN_BENCH_RUN_RATE:-4}
RN_KILN=$STAGE/kiln                # bench/run.sh's staged copies, with their guest/ images
RN_ROOT=$STAGE/guest/testroot.ext4

runner_bench() {
  if [ "$(id -u)" != 0 ] || [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]; then
    log "kiln run: skipped (needs root and cgroup v2)"; raw "run skipped: needs root and cgroup v2"; return
  fi
  for f in "$RN_KILN" "$RN_ROOT" "$STAGE/guest/rootfs.ext4" "$STAGE/kiln-jailer"; do
    [ -f "$f" ] || { log "kiln run: $f missing (run: make all guest guest-image)"; raw "run skipped: no $f"; return; }
  done
  local d i v o t0 t1 rc s rec
  local -a r_kiln=() r_bare=() r_qemu=()
  local rn_next=1 round
  # complete rounds of an earlier emulated host (bench/run.sh's kvmhost case)
  [ ! -f "$STATE.run" ] || . "$STATE.run"
  d=$(mktemp -d /tmp/kvr.XXXXXX) || return
  export KILN_STATE_DIR=$d/state
  truncate -s 256M "$d/scratch.img"
  # "0": a bare word on the kernel command line is passed to init as an argument
  local args="root=/dev/vda ro rootfstype=ext4 init=/sbin/kiln-exit 0"
  raw "# run: kiln run --mem ${MEM}M -- true vs bare kiln-vmm / qemu booting $RN_ROOT ($args), runs=$RN_RUNS"
  for i in $(seq "$rn_next" "$RN_RUNS"); do
    case $((i % 3)) in 1) o="run bare qemu";; 2) o="bare qemu run";; *) o="qemu run bare";; esac
    round="rn_next=$((i + 1))"
    for v in $o; do
      settle
      t0=$(now)
      case $v in
      run)
        timeout -k 5 "$RUN_TMO" "$RN_KILN" run --mem "${MEM}M" --json -- true </dev/null \
          >"$OUT/run-kiln-$i.out" 2>&1; rc=$?
        t1=$(now)
        rec=$(grep '^{"id"' "$OUT/run-kiln-$i.out" | tail -1)
        if [ "$rc" = 0 ] && grep -q '"reason":"ok"' <<< "$rec"; then
          s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }')
          round+=" r_kiln+=($s)"
          raw "run kiln run=$i ok=1 s=$s $(sed -n 's/.*"timings_ms":\({[^}]*}\).*/timings_ms=\1/p' <<< "$rec")"
        else raw "run kiln run=$i ok=0 rc=$rc"; log "kiln run $i FAILED (exit $rc): $(tail -2 "$OUT/run-kiln-$i.out" | tr '\n' '|')"; fi ;;
      bare)
        rm -f "$d"/v.sock*
        INITRD= kiln "run-bare-$i" "$args" --disk "$RN_ROOT,ro" --disk "$d/scratch.img" --vsock "cid=3,uds=$d/v.sock"
        rc=$?; t1=$(now)
        if [ "$rc" = 0 ]; then # only kiln-exit's status 0 ends kiln-vmm with 0
          s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'); round+=" r_bare+=($s)"; raw "run bare run=$i ok=1 s=$s"
        else raw "run bare run=$i ok=0"; fail_note kiln "run-bare-$i" "$rc"; fi ;;
      qemu)
        QEMU_M=microvm,accel=kvm,acpi=off INITRD= qemu "run-qemu-$i" "$args" \
          -drive "id=d0,file=$RN_ROOT,format=raw,if=none,readonly=on" -device virtio-blk-device,drive=d0
        rc=$?; t1=$(now)
        if ok_rc qemu "$rc"; then
          s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'); round+=" r_qemu+=($s)"; raw "run qemu run=$i ok=1 s=$s"
        else raw "run qemu run=$i ok=0"; fail_note qemu "run-qemu-$i" "$rc"; fi ;;
      esac
    done
    eval "$round"; printf '%s\n' "$round" >> "$STATE.run"
    log "kiln run $i/$RN_RUNS: kiln run ${r_kiln[*]: -1:1} s, bare kiln-vmm ${r_bare[*]: -1:1} s, qemu ${r_qemu[*]: -1:1} s"
  done
  local mk mb mq
  mk=$(median "${r_kiln[@]}") mb=$(median "${r_bare[@]}") mq=$(median "${r_qemu[@]}")
  raw "run kiln_run_median_s=${mk:-na} bare_kiln_vmm_median_s=${mb:-na} qemu_median_s=${mq:-na}"
  blk_rows+=("kiln run -- true vs bare kiln-vmm, s|${mk:-fail}|(bare) ${mb:-fail}|$(ratio "$mk" "$mb")|<= 1.15|$(met "$(ratio "$mk" "$mb")" 1.15 le)")
  blk_rows+=("kiln run -- true vs qemu boot, s|${mk:-fail}|${mq:-fail}|$(ratio "$mk" "$mq")|-|-")

  # rate: two loops side by side
  local n0 t_start t_end done_n=0
  t_start=$(now)
  for l in 1 2; do
    ( ok=0; for j in $(seq 1 "$RN_RATE"); do
        timeout -k 5 "$RUN_TMO" "$RN_KILN" run --mem "${MEM}M" -- true </dev/null >/dev/null 2>&1 && ok=$((ok + 1))
      done; echo "$ok" > "$d/rate.$l" ) &
  done
  wait
  t_end=$(now)
  for l in 1 2; do n0=$(cat "$d/rate.$l" 2>/dev/null || echo 0); done_n=$((done_n + n0)); done
  local rpm
  rpm=$(awk -v n="$done_n" -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.2f", n * 60 / (b - a) }')
  raw "run rate two_at_a_time runs_ok=$done_n/$((2 * RN_RATE)) secs=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }') runs_per_min=$rpm"
  blk_rows+=("kiln run -- true per minute, 2 at once|$rpm ($done_n/$((2 * RN_RATE)))|-|-|-|-")
  "$RN_KILN" gc >/dev/null 2>&1
  unset KILN_STATE_DIR
  rm -rf "$d"
}
runner_bench
