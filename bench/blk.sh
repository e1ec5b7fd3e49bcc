# bench/blk.sh: the virtio-blk part of `make bench`, sourced by bench/run.sh (uses its helpers).
# One raw image of KILN_BENCH_BLK_MB MiB (default 64, written out, not sparse) in $TMPDIR or /tmp;
# kiln-vmm gets it as --disk (/dev/vda), QEMU microvm as virtio-blk-device (raw, default cache;
# acpi=off so that QEMU puts the device on the kernel command line).
# In each of KILN_BENCH_BLK_RUNS boots per VMM (default 3, interleaved) the guest runs
# kiln-blkbench (bench/guest-blkbench.c, in build/bench-guest/initramfs.cpio.gz: the test
# initramfs plus that binary) with O_DIRECT: sequential read, 4 KiB random read at queue depth 1
# for KILN_BENCH_BLK_S seconds (default 3), sequential write + fdatasync. Medians, kiln/qemu.

BLK_RUNS=${KILN_BENCH_BLK_RUNS:-3}
BLK_S=${KILN_BENCH_BLK_S:-3}
BLK_INITRD=$STAGE/bench-guest/initramfs.cpio.gz

blk_bench() {
  [ -f "$BLK_INITRD" ] || { log "blk: $BLK_INITRD missing (run: make bench)"; raw "blk skipped: no $BLK_INITRD"; return; }
  local d img i v o rc line tail16
  d=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX") || return
  img=$d/disk.img
  dd if=/dev/zero of="$img" bs=1M count="$BLK_MB" status=none || { rm -rf "$d"; return; }
  raw "# blk image=$img ${BLK_MB}MiB runs=$BLK_RUNS rand_s=$BLK_S O_DIRECT in the guest, QD1 random reads"
  local INITRD=$BLK_INITRD QEMU_M=microvm,accel=kvm,acpi=off args="kiln.test=blkbench kiln.blk_dev=vda kiln.blk_mb=$BLK_MB kiln.blk_s=$BLK_S"
  local -a k_sr=() k_rr=() k_sw=() q_sr=() q_rr=() q_sw=()
  for i in $(seq 1 "$BLK_RUNS"); do
    if [ $((i % 2)) = 1 ]; then o="kiln qemu"; else o="qemu kiln"; fi
    for v in $o; do
      # zeros before each run; afterwards the last 16 bytes must be the guest's 0xa5 pattern
      dd if=/dev/zero of="$img" bs=1M count="$BLK_MB" conv=notrunc status=none
      if [ "$v" = kiln ]; then kiln "blk-kiln-$i" "$args" --disk "$img"
      else qemu "blk-qemu-$i" "$args" -drive "id=d0,file=$img,format=raw,if=none" \
        -device virtio-blk-device,drive=d0; fi
      rc=$?
      line=$(tr -d '\r' < "$OUT/blk-$v-$i.out" | grep -m1 '^KILN-BLK ')
      tail16=$(od -An -tx1 -j $((BLK_MB * 1048576 - 16)) -N 16 "$img" | tr -d ' \n')
      [ -z "$line" ] || [ "$tail16" = a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5 ] || {
        log "blk $v run $i: the guest's writes are not in the image (last bytes $tail16)"; line=; }
      if ok_rc "$v" "$rc" && [ -n "$line" ]; then
        raw "blk $v run=$i ok=1 ${line#KILN-BLK }"
        set -- $(echo "$line" | sed 's/[a-z_]*=//g; s/^KILN-BLK //')
        if [ "$v" = kiln ]; then k_sr+=("$1") k_rr+=("$2") k_sw+=("$3")
        else q_sr+=("$1") q_rr+=("$2") q_sw+=("$3"); fi
      else
        raw "blk $v run=$i ok=0"; fail_note "$v" "blk-$v-$i" "$rc"
      fi
    done
    log "blk run $i/$BLK_RUNS: kiln ${k_sr[*]: -1:1}/${k_rr[*]: -1:1}/${k_sw[*]: -1:1} qemu ${q_sr[*]: -1:1}/${q_rr[*]: -1:1}/${q_sw[*]: -1:1} (seq read MiB/s / rand read IOPS / seq write MiB/s)"
  done
  rm -rf "$d"
  local name k q r
  for m in "seq read MiB/s:sr" "4K rand read IOPS (QD1):rr" "seq write MiB/s:sw"; do
    name=${m%:*}
    eval "k=\$(median \"\${k_${m#*:}[@]}\") q=\$(median \"\${q_${m#*:}[@]}\")"
    r=$(ratio "$k" "$q")
    raw "blk ${m#*:} kiln_median=${k:-na} qemu_median=${q:-na} ratio=${r:-na}"
    blk_rows+=("blk $name (ok ${#k_sr[@]}/${#q_sr[@]})|${k:-fail}|${q:-fail}|${r:-n/a}|>= 1.00|$(met "$r" 1 ge)")
  done
}
blk_bench
