# bench/vsock.sh: the virtio-vsock part of `make bench`, sourced by bench/run.sh (uses its helpers).
# kiln-vmm's vsock (Firecracker-style Unix socket on the host) against QEMU microvm's
# vhost-vsock-device (the host kernel's vhost_vsock; the host side uses AF_VSOCK), same kernel,
# initramfs, memory. In each of KILN_BENCH_VSOCK_RUNS boots per VMM (default 3, interleaved) the
# guest runs guest/kiln-vsock as an echo server and an agent (tests/e2e/helpers/vsock-host.py
# drives both):
#   h2g   host -> guest: KILN_BENCH_VSOCK_MB MiB into `kiln-vsock accept` (no hashing), MiB/s
#   g2h   guest -> host: the same size from `kiln-vsock send` to a host listener, MiB/s
#   rtt   KILN_BENCH_VSOCK_RTT round trips of 64 bytes through the guest echo server, median us
# Medians over the runs. KILN_BENCH_VSOCK_OPTS is appended to kiln-vmm's --vsock (e.g.
# ",max_conns=256"). Size default: 512 MiB on real KVM, 32 in the emulated host (a few MiB/s
# there). QEMU needs /dev/vhost-vsock (tests/kvmhost.sh loads vhost_vsock): without it the QEMU
# column is empty and the ratios say n/a.

VS_RUNS=${KILN_BENCH_VSOCK_RUNS:-3}
VS_MB=${KILN_BENCH_VSOCK_MB:-$([ -n "${KILN_IN_KVMHOST:-}" ] && echo 32 || echo 512)}
VS_RTT=${KILN_BENCH_VSOCK_RTT:-$([ -n "${KILN_IN_KVMHOST:-}" ] && echo 300 || echo 5000)}
VS_CID=3 VS_ECHO=5000 VS_AGENT=5002 VS_STOP=5999 VS_H2G=6000 VS_G2H=6001
VH=tests/e2e/helpers/vsock-host.py

# vs_step SECS CMD...: one measurement, stopped early once the VMM ($pid) has exited or its guest
# panicked (seen in the emulated host: a nested guest's double fault), so a dead guest costs
# seconds, not the whole time limit.
vs_step() {
  local secs=$1 sp end; shift
  "$@" & sp=$! end=$((SECONDS + secs))
  while kill -0 "$sp" 2>/dev/null; do
    if [ $SECONDS -ge $end ] || ! kill -0 "$pid" 2>/dev/null || grep -q 'Kernel panic' "$OUT/$vs_name.out"; then
      kill "$sp" 2>/dev/null; echo "vsock: step stopped (time limit, VMM gone or guest panic)"; break
    fi
    sleep 0.5
  done
  wait "$sp"
}

vsock_bench() {
  local d i v o pid rc t line
  local -a k_h=() k_g=() k_r=() q_h=() q_g=() q_r=()
  d=$(mktemp -d /tmp/kvb.XXXXXX) || return     # short: AF_UNIX paths are under 108 bytes
  cat > "$d/script.sh" <<SCRIPT
kiln-vsock listen $VS_ECHO echo </dev/null >/dev/null 2>&1 &
kiln-vsock listen $VS_AGENT agent </dev/null >/dev/null 2>&1 &
echo KILN-VSOCK-READY
kiln-vsock accept $VS_STOP </dev/null >/dev/null
SCRIPT
  cp "$d/script.sh" "$d/script.img"; truncate -s 4096 "$d/script.img"
  local args="kiln.test=script kiln.script_dev=vda kiln.script_len=$(stat -c %s "$d/script.sh")"
  local have_vhost=1
  [ -c /dev/vhost-vsock ] || { have_vhost=0; log "vsock: no /dev/vhost-vsock: QEMU's vhost-vsock-device cannot run, kiln only"; }
  raw "# vsock size=${VS_MB}MiB each way, rtt=$VS_RTT x 64 B, runs=$VS_RUNS; qemu: vhost-vsock-device (have=$have_vhost)"
  for i in $(seq 1 "$VS_RUNS"); do
    if [ $((i % 2)) = 1 ]; then o="kiln qemu"; else o="qemu kiln"; fi
    for v in $o; do
      [ "$v" = kiln ] || [ "$have_vhost" = 1 ] || continue
      rm -f "$d"/v.sock*
      BG=1 vs_name=vsock-$v-$i
      if [ "$v" = kiln ]; then
        t=$d/v.sock
        kiln "vsock-kiln-$i" "$args" --disk "$d/script.img,ro" --vsock "cid=$VS_CID,uds=$t${KILN_BENCH_VSOCK_OPTS:-}"
      else
        t=vsock:$VS_CID
        QEMU_M=microvm,accel=kvm,acpi=off qemu "vsock-qemu-$i" "$args" \
          -drive "id=d0,file=$d/script.img,format=raw,if=none,readonly=on" \
          -device virtio-blk-device,drive=d0 -device "vhost-vsock-device,guest-cid=$VS_CID"
      fi
      BG=0; pid=$PID
      local h= g= r= ok=1
      line=$(vs_step 150 python3 "$VH" agent "$t" $VS_AGENT "echo up" 120 2>&1)
      if [ "$line" != up ]; then
        ok=0; log "vsock $v agent: $line"
      else
        line=$(vs_step 600 python3 "$VH" bench-h2g "$t" $VS_AGENT $VS_H2G $((VS_MB << 20)) 2>&1) \
          && h=$(sed -n 's/.*mib_s=\([0-9.]*\).*/\1/p' <<< "$line") || { ok=0; log "vsock $v h2g: $line"; }
        [ "$ok" = 1 ] && { line=$(vs_step 600 python3 "$VH" bench-g2h "$t" $VS_AGENT $VS_G2H $((VS_MB << 20)) 2>&1) \
          && g=$(sed -n 's/.*mib_s=\([0-9.]*\).*/\1/p' <<< "$line") || { ok=0; log "vsock $v g2h: $line"; }; }
        [ "$ok" = 1 ] && { line=$(vs_step 300 python3 "$VH" rtt "$t" $VS_ECHO "$VS_RTT" 64 2>&1) \
          && r=$(sed -n 's/.*rtt_us_median=\([0-9.]*\).*/\1/p' <<< "$line") || { ok=0; log "vsock $v rtt: $line"; }; }
        vs_step 30 python3 "$VH" stop "$t" $VS_STOP >/dev/null 2>&1
      fi
      local end=$((SECONDS + 60))
      while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null; wait "$pid"; rc=$?
      if [ "$ok" = 1 ] && [ -n "$h" ] && [ -n "$g" ] && [ -n "$r" ] && ok_rc "$v" "$rc"; then
        raw "vsock $v run=$i ok=1 h2g_mib_s=$h g2h_mib_s=$g rtt_us=$r"
        if [ "$v" = kiln ]; then k_h+=("$h") k_g+=("$g") k_r+=("$r"); else q_h+=("$h") q_g+=("$g") q_r+=("$r"); fi
      else
        raw "vsock $v run=$i ok=0"; fail_note "$v" "vsock-$v-$i" "$rc"
      fi
    done
    log "vsock run $i/$VS_RUNS: kiln ${k_h[*]: -1:1}/${k_g[*]: -1:1}/${k_r[*]: -1:1} qemu ${q_h[*]: -1:1}/${q_g[*]: -1:1}/${q_r[*]: -1:1} (h2g MiB/s / g2h MiB/s / rtt us)"
  done
  rm -rf "$d"
  local k q r
  for m in "host->guest MiB/s:h" "guest->host MiB/s:g"; do
    eval "k=\$(median \"\${k_${m#*:}[@]}\") q=\$(median \"\${q_${m#*:}[@]}\")"
    r=$(ratio "$k" "$q")
    raw "vsock ${m#*:} kiln_median=${k:-na} qemu_median=${q:-na} ratio=${r:-na}"
    blk_rows+=("vsock ${m%:*} (ok ${#k_h[@]}/${#q_h[@]})|${k:-fail}|${q:-fail}|${r:-n/a}|>= 1.00|$(met "$r" 1 ge)")
  done
  # latency: lower is better, so the ratio is qemu/kiln (how many times faster kiln is)
  k=$(median "${k_r[@]}") q=$(median "${q_r[@]}") r=$(ratio "$q" "$k")
  raw "vsock rtt kiln_median_us=${k:-na} qemu_median_us=${q:-na} speedup_qemu_over_kiln=${r:-na}"
  blk_rows+=("vsock 64 B RTT us, ratio=qemu/kiln|${k:-fail}|${q:-fail}|${r:-n/a}|>= 1.00|$(met "$r" 1 ge)")
}
vsock_bench
