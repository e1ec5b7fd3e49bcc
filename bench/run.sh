#!/bin/bash
# bench/run.sh: `make bench`. kiln-vmm against QEMU's `-M microvm` (Debian's qemu-system-x86),
# same kernel, initramfs, command line, memory and vCPUs, runs interleaved:
#   boot   launch -> /init -> exit, KILN_BENCH_RUNS runs each (default 5); a run counts only if
#          the guest printed KILN-BOOT-OK and the VMM reported a normal finish; medians, ratio.
#   mem    VMM memory beyond guest RAM: /proc/PID/smaps sampled while the guest idles
#          (kiln.test=hold), Rss of every mapping except the anonymous one(s) whose size is the
#          guest RAM size; max over the samples of a run, median over KILN_BENCH_MEM_RUNS (3).
#   blk    (once kiln-vmm has --disk) guest-side sequential read/write and 4 KiB random-read
#          IOPS on the same raw image against QEMU's virtio-blk-device.
#   vsock  host->guest and guest->host throughput, 64-byte round trips, against QEMU's
#          vhost-vsock-device (bench/vsock.sh)
#   run    `kiln run -- true` against bare kiln-vmm and QEMU, runs per minute (bench/runner.sh)
# Where /dev/kvm cannot run guests (tests/kvm-usable.sh) it re-runs itself inside
# tests/kvmhost.sh: absolute times there are meaningless, only the ratios are figures.
# Table on stdout; raw numbers in build/bench/results.txt, per-run guest output in build/bench/.
# Env: KILN_BENCH_HOST=direct|kvmhost, KILN_BENCH_RUNS, KILN_BENCH_MEM_RUNS, KILN_BENCH_HOLD_S,
#      KILN_BENCH_MEM (MiB, default 256), KILN_BENCH_BLK_MB (default 64), KILN_BENCH_BLK_RUNS,
#      KILN_BENCH_BLK_S (see bench/blk.sh), KILN_BENCH_VSOCK_* (bench/vsock.sh),
#      KILN_BENCH_RUN_* (bench/runner.sh), KILN_BENCH_SKIP_{BOOT,MEM,BLK,VSOCK,RUN}=1 to leave
#      a part out, KILN_KVMHOST_TIMEOUT, KILN_KVMHOST_CPUS (default 2; see the kvmhost case),
#      KILN_BENCH_ATTEMPTS (emulated hosts to use when one freezes or dies, default 3; see the
#      kvmhost case below), KILN_BENCH_SETTLE_MIB (see settle below).
set -uo pipefail
cd "$(dirname "$0")/.."

RUNS=${KILN_BENCH_RUNS:-5}
MEM_RUNS=${KILN_BENCH_MEM_RUNS:-3}
[ -z "${KILN_BENCH_SKIP_BOOT:-}" ] || RUNS=0
[ -z "${KILN_BENCH_SKIP_MEM:-}" ] || MEM_RUNS=0
HOLD_S=${KILN_BENCH_HOLD_S:-5}
MEM=${KILN_BENCH_MEM:-256}
BLK_MB=${KILN_BENCH_BLK_MB:-64}
RUN_TMO=120                       # one guest run, seconds
# MiB for kiln-bench-settle between timed samples: see settle() below
SETTLE_MIB=${KILN_BENCH_SETTLE_MIB:-$([ -n "${KILN_IN_KVMHOST:-}" ] && echo $((2 * MEM)) || echo 0)}
VMM=build/kiln-vmm
KERNEL=build/guest/bzImage
INITRD=build/guest/initramfs.cpio.gz
CMDLINE="console=ttyS0 reboot=k panic=-1 quiet"
OUT=build/bench
RES=$OUT/results.txt

case $SETTLE_MIB in ''|*[!0-9]*) echo "bench: KILN_BENCH_SETTLE_MIB must be a number of MiB" >&2; exit 2;; esac
for f in "$VMM" "$KERNEL" "$INITRD"; do
  [ -f "$f" ] || { echo "bench: $f missing (run: make all guest-kernel initramfs)" >&2; exit 2; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "bench: qemu-system-x86_64 missing (run: make deps)" >&2; exit 2; }

host=${KILN_BENCH_HOST:-}
if [ -z "$host" ]; then
  if [ -n "${KILN_IN_KVMHOST:-}" ] || tests/kvm-usable.sh; then host=direct; else host=kvmhost; fi
fi
case $host in
direct) ;;
kvmhost)
  echo "bench: /dev/kvm cannot run guests here; re-running inside tests/kvmhost.sh (only ratios mean anything there)"
  # the emulated host starts with a clean environment: pass the KILN_BENCH_* knobs on
  # -s: the emulated host sometimes freezes (see tests/kvmhost.sh); give up after 120 s of silence
  # The emulated host itself sometimes freezes or dies (tests/kvmhost.sh exits 124 or 125; see
  # the notes there). Every complete sample round is kept in build/bench/state*.sh as it ends;
  # after such a stop the bench goes on in a fresh emulated host from the next round (up to
  # KILN_BENCH_ATTEMPTS emulated hosts, default 3), and says so. A round cut short is run again
  # whole, so kiln and its peers are always measured side by side.
  attempt=1 resume=
  while :; do
    tests/kvmhost.sh -c "${KILN_KVMHOST_CPUS:-2}" -t "${KILN_KVMHOST_TIMEOUT:-900}" -s 120 -- env $(env | grep '^KILN_BENCH_[A-Z_]*=[^[:space:]]*$') \
      KILN_BENCH_HOST=direct ${resume:+KILN_BENCH_RESUME=$attempt} bench/run.sh
    rc=$?
    if { [ "$rc" = 124 ] || [ "$rc" = 125 ]; } && [ -f build/bench/state.sh ] && \
       [ "$attempt" -lt "${KILN_BENCH_ATTEMPTS:-3}" ]; then
      attempt=$((attempt + 1)) resume=1
      echo "bench: the emulated host stopped (exit $rc); attempt $attempt goes on in a fresh one after the last complete round"
      continue
    fi
    exit "$rc"
  done ;;
*) echo "bench: KILN_BENCH_HOST must be direct or kvmhost" >&2; exit 2 ;;
esac

# State kept across emulated hosts (see the kvmhost case above): shell lines that replay each
# complete sample round and each finished part; a fresh bench starts from nothing.
STATE=$OUT/state.sh
if [ -n "${KILN_BENCH_RESUME:-}" ] && [ -f "$STATE" ]; then
  echo "# attempt ${KILN_BENCH_RESUME}: resumed in a fresh emulated host after the last complete round (lines of a round cut short above do not count)" >> "$OUT/results.txt"
else
  rm -rf "$OUT"; mkdir -p "$OUT"; : > "$STATE"
fi
save() { printf '%s\n' "$*" >> "$STATE"; }
boot_next=1 mem_next=1 part_blk= part_vsock=
. "$STATE"
where="direct ($(nproc) CPUs)"; [ -z "${KILN_IN_KVMHOST:-}" ] || where="tests/kvmhost.sh (QEMU TCG, nested SVM, $(nproc) CPUs)"
# Every VMM reads its inputs (binaries, kernel, initrds, disk images) from one staged copy under
# /tmp: inside tests/kvmhost.sh the work directory is an uncached 9p mount, where each exec and
# each guest disk read is a round trip to the outer machine; a real host serves them from its
# page cache. kiln-vmm, kiln run and QEMU all use the same copies.
STAGE=$(mktemp -d /tmp/kiln-bench.XXXXXX) || exit 2
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/guest" "$STAGE/bench-guest" "$STAGE/bench-host"
for f in kiln kiln-jailer kiln-vmm bench-host/kiln-bench-settle guest/bzImage guest/initramfs.cpio.gz guest/rootfs.ext4 \
  guest/testroot.ext4 bench-guest/initramfs.cpio.gz; do
  [ ! -f "build/$f" ] || cp "build/$f" "$STAGE/$f" || exit 2
done
VMM=$STAGE/kiln-vmm KERNEL=$STAGE/guest/bzImage INITRD=$STAGE/guest/initramfs.cpio.gz
[ -n "${KILN_BENCH_RESUME:-}" ] || { echo "# kiln bench $(date -u +%FT%TZ) host=$where mem=${MEM}MiB vcpus=1 runs=$RUNS"
  echo "# inputs staged in $STAGE (copies of build/): kernel=$KERNEL initrd=$INITRD cmdline=\"$CMDLINE\""
  echo "# qemu=$(qemu-system-x86_64 --version | head -1)"
  echo "# settle: ${SETTLE_MIB} MiB taken and freed by kiln-bench-settle before every timed boot (0 = none; see bench/run.sh)"; } > "$RES"
raw() { echo "$*" >> "$RES"; }
log() { echo "bench: $*"; }

# settle: run before every timed boot (boot part, and the kiln run part's latency samples), not
# timed. In the emulated host (QEMU TCG) a page that held translated code costs its next owner
# the invalidation of those translations when it is zeroed for it: the pages of the guest just
# torn down hold tens of thousands of them, and the next VMM to fault in memory paid for them,
# 0.3-0.8 s a boot (bench/settle.c). kiln-bench-settle takes and frees KILN_BENCH_SETTLE_MIB of
# memory (default twice the guest memory in the emulated host, 0 = off, the default elsewhere)
# so that each sample pays only for itself. It never picks a side: it runs before every sample
# of every VMM, and results.txt says whether it ran.
settle() {
  [ "$SETTLE_MIB" -gt 0 ] || return 0
  "$STAGE/bench-host/kiln-bench-settle" "$SETTLE_MIB" || { echo "bench: kiln-bench-settle failed" >&2; exit 2; }
}
if [ "$SETTLE_MIB" -gt 0 ]; then
  [ -x "$STAGE/bench-host/kiln-bench-settle" ] || { echo "bench: build/bench-host/kiln-bench-settle missing (run: make bench)" >&2; exit 2; }
  settle
fi

# ---- launchers: kiln NAME KERNEL-ARGS [VMM-ARGS...] / qemu NAME KERNEL-ARGS [QEMU-ARGS...]
# Run in the foreground with stdin from /dev/null, all output to $OUT/NAME.out. With BG=1 they
# run in the background and set PID.
# QEMU's machine: as given; bench/blk.sh adds acpi=off (only then does microvm announce its
# virtio-mmio devices on the kernel command line, which is how kiln's guest kernel finds them).
QEMU_M=microvm,accel=kvm
BG=0 PID=
launch() {
  local name=$1; shift
  if [ "$BG" = 1 ]; then "$@" </dev/null >"$OUT/$name.out" 2>&1 & PID=$!
  else timeout -k 5 "$RUN_TMO" "$@" </dev/null >"$OUT/$name.out" 2>&1; fi
}
kiln() { local n=$1 a=$2; shift 2
  launch "$n" "$VMM" --kernel "$KERNEL" ${INITRD:+--initrd "$INITRD"} --cmdline "$CMDLINE $a" \
    --mem "$MEM" --vcpus 1 "$@"; }
qemu() { local n=$1 a=$2; shift 2
  launch "$n" qemu-system-x86_64 -M "$QEMU_M" -cpu host -m "$MEM" -smp 1 -nodefaults \
    -no-user-config -nographic -no-reboot -serial stdio -kernel "$KERNEL" ${INITRD:+-initrd "$INITRD"} \
    -device isa-debug-exit,iobase=0xf4,iosize=1 -append "$CMDLINE $a" "$@"; }
# Normal finish: kiln-vmm exits 0; QEMU's isa-debug-exit exits (status << 1) | 1 = 1.
ok_rc() { [ "$1" = kiln ] && [ "$2" = 0 ] || { [ "$1" = qemu ] && [ "$2" = 1 ]; }; }
# fail_note VMM NAME RC: one line on why a run does not count
fail_note() {
  log "$1 $2 FAILED (exit $3): $(tr -d '\r' < "$OUT/$2.out" | grep -v '^$' | tail -3 | tr '\n' '|')"
  raw "fail $1 $2 rc=$3"
}

# median of the arguments (empty if none)
median() { [ $# -gt 0 ] || return 0; printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
  END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b }'; }
now() { echo "${EPOCHREALTIME/,/.}"; }
# met X GOAL le|ge: "yes" if X <= GOAL (le) or X >= GOAL (ge), "NO" if not, "n/a" without X
met() { [ -n "$1" ] && awk -v x="$1" -v g="$2" -v d="$3" 'BEGIN {
  print ((d == "le" ? x <= g : x >= g) ? "yes" : "NO") }' || echo n/a; }

# ---- 1. boot to /init and exit -----------------------------------------------------------
# time_boot VMM NAME: one timed run; prints seconds if it counts, else nothing
time_boot() {
  local t0 t1 rc
  settle
  t0=$(now); "$1" "$2" "kiln.test=boot"; rc=$?; t1=$(now)
  if ok_rc "$1" "$rc" && grep -q KILN-BOOT-OK "$OUT/$2.out"; then
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
  else fail_note "$1" "$2" "$rc" >&2; fi
}
boot_kiln=() boot_qemu=() boot_fail_kiln=0 boot_fail_qemu=0
[ ! -f "$STATE.boot" ] || . "$STATE.boot"
if [ "$RUNS" -ge "$boot_next" ]; then
  log "boot: warm-up run of each (not timed)"
  time_boot kiln boot-kiln-warmup >/dev/null
  time_boot qemu boot-qemu-warmup >/dev/null
fi
for i in $(seq "$boot_next" "$RUNS"); do
  # alternate which goes first so neither always runs right after the other
  if [ $((i % 2)) = 1 ]; then order="kiln qemu"; else order="qemu kiln"; fi
  round="boot_next=$((i + 1))"
  for v in $order; do
    s=$(time_boot "$v" "boot-$v-$i")
    if [ -n "$s" ]; then raw "boot $v run=$i ok=1 s=$s"; round+=" boot_$v+=($s)"
    else raw "boot $v run=$i ok=0"; round+=" boot_fail_$v=\$((boot_fail_$v + 1))"; fi
  done
  eval "$round"; printf '%s\n' "$round" >> "$STATE.boot"
  log "boot run $i/$RUNS: kiln ${boot_kiln[*]: -1:1}${boot_kiln[*]:+ s} qemu ${boot_qemu[*]: -1:1}${boot_qemu[*]:+ s}"
done
bk=$(median "${boot_kiln[@]}") bq=$(median "${boot_qemu[@]}") br=$(ratio "$bk" "$bq")
raw "boot kiln median_s=${bk:-na} ok=${#boot_kiln[@]}/$RUNS"
raw "boot qemu median_s=${bq:-na} ok=${#boot_qemu[@]}/$RUNS"
raw "boot ratio_kiln_over_qemu=${br:-na}"

# ---- 2. memory beyond guest RAM ------------------------------------------------------------
# smaps_kb PID: "total guest other nguest" in kB; guest = Rss of the anonymous mappings whose
# Size is the guest RAM size (nguest of them), other = everything else.
smaps_kb() {
  awk -v gk=$((MEM * 1024)) '
    /^[0-9a-f]+-[0-9a-f]+ / { anon = (NF == 5); next }
    /^Size:/ { size = $2; next }
    /^Rss:/  { t += $2; if (anon && size == gk) { g += $2; n++ } else o += $2 }
    END { if (NR) printf "%d %d %d %d\n", t, g, o, n }' "/proc/$1/smaps" 2>/dev/null
}
# smaps_top PID: the five biggest non-guest Rss contributors, "kB name" (for results.txt)
smaps_top() {
  awk -v gk=$((MEM * 1024)) '
    /^[0-9a-f]+-[0-9a-f]+ / { anon = (NF == 5); name = anon ? "[anon]" : $6; next }
    /^Size:/ { size = $2; next }
    /^Rss:/  { if (!(anon && size == gk)) r[name] += $2 }
    END { for (k in r) if (r[k]) print r[k], k }' "/proc/$1/smaps" 2>/dev/null | sort -rn | head -5 | tr '\n' ';'
}
# mem_run VMM NAME: boots kiln.test=hold, samples while the guest idles; prints
# "total guest other nguest" with the maximum "other" seen, or nothing if the run failed.
mem_run() {
  local v=$1 n=$2 deadline best= s rc top=
  BG=1; "$v" "$n" "kiln.test=hold kiln.hold_s=$HOLD_S"; BG=0
  local pid=$PID
  deadline=$((SECONDS + RUN_TMO))
  while ! grep -q KILN-HOLD "$OUT/$n.out" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || break
    [ $SECONDS -lt $deadline ] || { kill -KILL "$pid"; break; }
    sleep 0.1
  done
  if grep -q KILN-HOLD "$OUT/$n.out"; then
    sleep 0.5                                   # let the guest settle into its sleep
    for _ in $(seq 1 $((HOLD_S > 2 ? 2 * (HOLD_S - 2) : 1))); do
      # a sample counts only while the guest RAM is mapped (not during teardown)
      s=$(smaps_kb "$pid"); [ -n "$s" ] || break
      set -- $s; [ "$4" -ge 1 ] || break
      if [ -z "$best" ] || [ "$3" -gt "$(echo "$best" | cut -d' ' -f3)" ]; then
        best=$s; top=$(smaps_top "$pid"); fi
      sleep 0.5
    done
  fi
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid"; rc=$?
  [ -n "$best" ] || log "$v $n: no smaps sample with an anonymous ${MEM} MiB mapping while the guest ran" >&2
  if ok_rc "$v" "$rc" && [ -n "$best" ]; then
    echo "$best $(tr -d '\r' < "$OUT/$n.out" | sed -n 's/^KILN-HOLD uptime=\([0-9.]*\).*/\1/p' | head -1)"
    raw "mem $v $n top_other_kb: $top"
  else fail_note "$v" "$n" "$rc" >&2; fi
}
mem_kiln_other=() mem_kiln_total=() mem_qemu_other=() mem_qemu_total=() up_kiln=() up_qemu=()
[ ! -f "$STATE.mem" ] || . "$STATE.mem"
for i in $(seq "$mem_next" "$MEM_RUNS"); do
  round="mem_next=$((i + 1))"
  for v in kiln qemu; do
    s=$(mem_run "$v" "mem-$v-$i")
    if [ -z "$s" ]; then raw "mem $v run=$i ok=0"; continue; fi
    set -- $s
    raw "mem $v run=$i ok=1 total_kb=$1 guest_kb=$2 other_kb=$3 guest_mappings=$4 uptime_at_init_s=${5:-na}"
    round+=" mem_${v}_total+=($1) mem_${v}_other+=($3)"; [ -z "${5:-}" ] || round+=" up_${v}+=($5)"
  done
  eval "$round"; printf '%s\n' "$round" >> "$STATE.mem"
  log "mem run $i/$MEM_RUNS: kiln other ${mem_kiln_other[*]: -1:1} kB, qemu total ${mem_qemu_total[*]: -1:1} kB"
done
mib() { [ -n "$1" ] && awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'; }
mko=$(mib "$(median "${mem_kiln_other[@]}")") mqo=$(mib "$(median "${mem_qemu_other[@]}")")
mkt=$(mib "$(median "${mem_kiln_total[@]}")") mqt=$(mib "$(median "${mem_qemu_total[@]}")")
raw "mem kiln median_other_mib=${mko:-na} median_total_mib=${mkt:-na}"
raw "mem qemu median_other_mib=${mqo:-na} median_total_mib=${mqt:-na}"
uk=$(median "${up_kiln[@]}") uq=$(median "${up_qemu[@]}") ur=$(ratio "$uk" "$uq")
raw "uptime_at_init kiln median_s=${uk:-na} qemu median_s=${uq:-na} ratio=${ur:-na}"

# ---- 3. blk (hook: runs once kiln-vmm has --disk) ------------------------------------------
blk_rows=()
if [ -n "$part_blk" ]; then
  eval "$part_blk"
elif [ -n "${KILN_BENCH_SKIP_BLK:-}" ]; then
  raw "blk skipped: KILN_BENCH_SKIP_BLK"
elif "$VMM" --help 2>&1 | grep -q -- '--disk'; then
  . bench/blk.sh
else
  log "blk: skipped (kiln-vmm has no --disk yet)"; raw "blk skipped: kiln-vmm has no --disk"
fi
[ -n "$part_blk" ] || save "part_blk=$(printf '%q' "$(declare -p blk_rows)")"
# ---- 4. vsock: host->guest, guest->host, round trips (bench/vsock.sh) ----------------------
if [ -n "$part_vsock" ]; then eval "$part_vsock"
else
  [ -n "${KILN_BENCH_SKIP_VSOCK:-}" ] || . bench/vsock.sh
  save "part_vsock=$(printf '%q' "$(declare -p blk_rows)")"
fi
# ---- 5. kiln run -- true against bare kiln-vmm and QEMU; runs per minute (bench/runner.sh) ----
[ -n "${KILN_BENCH_SKIP_RUN:-}" ] || . bench/runner.sh

# ---- table ---------------------------------------------------------------------------------
row() { printf '%-38s %12s %14s %7s %9s %5s\n' "$@"; }
echo
[ -z "${KILN_IN_KVMHOST:-}" ] || echo "(inside the emulated host: absolute times are meaningless, compare the ratios)"
row metric kiln "qemu microvm" ratio goal met?
[ "$RUNS" = 0 ] || row "boot->init->exit, median s (ok/$RUNS)" "${bk:-fail} (${#boot_kiln[@]})" "${bq:-fail} (${#boot_qemu[@]})" \
  "${br:-n/a}" "<= 0.50" "$(met "$br" 0.5 le)"
row "VMM RSS beyond guest RAM, MiB" "${mko:-n/a}" "${mqo:-n/a}" "$(ratio "$mko" "$mqo")" "<= 1.00" "$(met "$mko" 1 le)"
row "VMM total RSS while guest idles, MiB" "${mkt:-n/a}" "${mqt:-n/a}" "$(ratio "$mkt" "$mqt")" "-" "-"
row "guest uptime at /init, median s" "${uk:-n/a}" "${uq:-n/a}" "${ur:-n/a}" "-" "-"
for r in "${blk_rows[@]}"; do IFS='|' read -r a b c d e f <<< "$r"; row "$a" "$b" "$c" "$d" "$e" "$f"; done
echo "raw figures: $RES"
[ "${#boot_kiln[@]}" = "$RUNS" ] && [ "${#boot_qemu[@]}" = "$RUNS" ] && { [ "$MEM_RUNS" = 0 ] || [ -n "$mko" ]; }
