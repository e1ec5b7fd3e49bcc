#!/usr/bin/env bats
# blk.bats: virtio-blk end to end. One guest boot (setup_file) serves every assertion: the guest
# runs a script from a disk that prints "CHECK name value" lines, and the tests read those lines
# and the host files afterwards.
# Disks: vda ext4 root (ro), vdb the script (ro), vdc scratch (rw, id=SCRATCH42),
# vdd discard target (rw), vde attack target (rw, never used by the guest's driver).

load helpers

RAM_MIB=256

setup_file() {
  ( exec 9<>/dev/kvm ) 2>/dev/null || return 0
  local d=$BATS_FILE_TMPDIR BATS_TEST_TMPDIR=$BATS_FILE_TMPDIR
  cp "$ROOT/build/guest/testroot.ext4" "$d/root.img"
  sha256sum < "$d/root.img" > "$d/root.sha.before"
  truncate -s 8M "$d/scratch.img"
  truncate -s 8M "$d/discard.img"
  # attack target: known non-zero content, fully allocated
  head -c 1048576 /dev/zero | tr '\0' 'A' > "$d/attack.img"
  sha256sum < "$d/attack.img" > "$d/attack.sha.before"
  cat > "$d/script.sh" <<'SCRIPT'
grep -q '^/dev/root / ext4 ro' /proc/mounts && echo "CHECK root-ro-ext4 yes"
echo "CHECK serial $(cat /sys/block/vdc/serial)"
echo "CHECK vdc-sectors $(cat /sys/block/vdc/size)"
echo "CHECK ro-flag $(cat /sys/block/vda/ro)"
# data written and synced by the guest must be on the host file
dd if=/dev/urandom of=/tmp/pat bs=65536 count=16 2>/dev/null
dd if=/tmp/pat of=/dev/vdc bs=65536 conv=fsync 2>/dev/null && echo "CHECK write-rc 0"
echo "CHECK written-sha $(sha256sum < /tmp/pat | cut -d' ' -f1)"
# writing to the read-only disk fails in the guest, also with the kernel's own check lifted
if dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=fsync 2>/dev/null; then echo "CHECK ro-write allowed"; else echo "CHECK ro-write refused"; fi
blockdev --setrw /dev/vda 2>/dev/null
if dd if=/dev/zero of=/dev/vda bs=4096 count=1 oflag=direct conv=fsync 2>/dev/null; then echo "CHECK ro-write-forced allowed"; else echo "CHECK ro-write-forced refused"; fi
# reads and writes past the end get nothing
n=$(cat /sys/block/vdc/size)
echo "CHECK read-past-end-bytes $(dd if=/dev/vdc bs=512 skip=$n count=1 2>/dev/null | wc -c)"
if dd if=/dev/zero of=/dev/vdc bs=512 seek=$n count=1 conv=fsync 2>/dev/null; then echo "CHECK write-past-end allowed"; else echo "CHECK write-past-end refused"; fi
# discard punches holes: fill vdd, then discard all of it
dd if=/dev/urandom of=/dev/vdd bs=65536 count=64 conv=fsync 2>/dev/null
blkdiscard /dev/vdd && echo "CHECK discard-rc 0"
echo "CHECK discard-reads-zero $(dd if=/dev/vdd bs=65536 count=64 2>/dev/null | tr -d '\0' | wc -c)"
# a root program points a virtqueue outside guest RAM through /dev/mem
base=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^virtio_mmio.device=4K@\(0x[0-9a-f]*\):.*/\1/p' | sed -n 5p)
echo "CHECK attack-base $base"
vq-attack "$base" $((RAM_MIB * 1048576))
echo "CHECK alive-after-attack yes"
# a well-formed write request straight to the read-only script disk (vdb) must get IOERR
vq-attack "$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^virtio_mmio.device=4K@\(0x[0-9a-f]*\):.*/\1/p' | sed -n 2p)" 1 ro-write
sync
SCRIPT
  sed -i "s/\$((RAM_MIB \* 1048576))/$((RAM_MIB * 1048576))/" "$d/script.sh"
  cp "$d/script.sh" "$d/script.img"
  truncate -s 4096 "$d/script.img"
  sha256sum < "$d/script.img" > "$d/script.sha.before"
  vmm --kernel "$KERNEL" --mem $RAM_MIB \
    --disk "$d/root.img,ro" --disk "$d/script.img,ro" --disk "$d/scratch.img,id=SCRATCH42" \
    --disk "$d/discard.img" --disk "$d/attack.img" \
    --cmdline "$CMDLINE root=/dev/vda ro rootfstype=ext4 init=/init kiln.test=script kiln.script_len=$(stat -c %s "$d/script.sh")" \
    > "$d/out" 2> "$d/err"
  echo $? > "$d/rc"
}

setup() {
  common_setup
  ( exec 9<>/dev/kvm ) 2>/dev/null || skip "no usable /dev/kvm (make e2e runs these in tests/kvmhost.sh)"
  D=$BATS_FILE_TMPDIR
}

teardown() {
  common_teardown
}

check() { sed -n "s/^CHECK $1 //p" "$D/out" | tr -d '\r' | head -1; }

@test "blk: guest boots from a read-only ext4 root on virtio-blk and finishes (exit 0)" {
  [ "$(cat "$D/rc")" = 0 ] || fail "kiln-vmm exit $(cat "$D/rc"): $(cat "$D/err"; tail -20 "$D/out")"
  [ "$(check root-ro-ext4)" = yes ]
  [ "$(check ro-flag)" = 1 ]
}

@test "blk: five disks appear; the serial number is visible in /sys/block/vdc/serial" {
  [ "$(check serial)" = SCRATCH42 ]
  [ "$(check vdc-sectors)" = 16384 ]
}

@test "blk: data written and synced by the guest is on the host file (checksums match)" {
  [ "$(check write-rc)" = 0 ]
  want=$(check written-sha)
  [ -n "$want" ]
  got=$(head -c 1048576 "$D/scratch.img" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || fail "host $got guest $want"
}

@test "blk: writing to the read-only disk fails in the guest; the host file is unchanged" {
  [ "$(check ro-write)" = refused ]
  [ "$(check ro-write-forced)" = refused ]
  [ "$(sha256sum < "$D/root.img")" = "$(cat "$D/root.sha.before")" ]
}

@test "blk: a well-formed write request to a read-only disk gets IOERR from the device; the file is unchanged" {
  line=$(grep "^ATTACK ro-write " "$D/out" | tr -d '\r')
  [[ $line == *"used=1 reqstatus=1"* ]] || fail "read-only disk answered: $line"
  [ "$(sha256sum < "$D/script.img")" = "$(cat "$D/script.sha.before")" ]
}

@test "blk: reads and writes past the end fail in the guest; the host file keeps its size" {
  [ "$(check read-past-end-bytes)" = 0 ]
  [ "$(check write-past-end)" = refused ]
  [ "$(stat -c %s "$D/scratch.img")" = 8388608 ]
}

@test "blk: discard punches holes in the host file (allocated size drops, data reads as zeros)" {
  [ "$(check discard-rc)" = 0 ]
  [ "$(check discard-reads-zero)" = 0 ]
  blocks=$(stat -c %b "$D/discard.img")
  # 4 MiB were written before the discard: 8192 512-byte blocks; after it, almost nothing.
  [ "$blocks" -lt 1024 ] || fail "discard.img still has $blocks blocks allocated"
  [ "$(stat -c %s "$D/discard.img")" = 8388608 ]
}

@test "blk: a root guest program pointing a virtqueue outside guest RAM leaves the VMM alive and the disk unchanged" {
  [ -n "$(check attack-base)" ]
  for a in data-outside-ram data-straddles-ram-end data-wraps data-huge-length loop \
           next-out-of-range indirect-outside-ram indirect-len-not-16x avail-jump desc-is-the-ring; do
    line=$(grep "^ATTACK $a " "$D/out" | tr -d '\r')
    [ -n "$line" ] || fail "no result for attack $a"
    st=$(echo "$line" | sed -n 's/.*status=\(0x[0-9a-f]*\).*/\1/p')
    rs=$(echo "$line" | sed -n 's/.*reqstatus=\([0-9]*\).*/\1/p')
    # Safe outcomes: the device asks for a reset (0x40), or the request failed with IOERR (1).
    if (( (st & 0x40) == 0 )) && [ "$rs" != 1 ]; then fail "attack $a: $line"; fi
  done
  line=$(grep "^ATTACK sane-after-attacks " "$D/out" | tr -d '\r')
  [[ $line == *"used=1 reqstatus=0"* ]] || fail "device did not recover after reset: $line"
  [ "$(check alive-after-attack)" = yes ]
  [ "$(sha256sum < "$D/attack.img")" = "$(cat "$D/attack.sha.before")" ]
  [ "$(cat "$D/rc")" = 0 ]
}

@test "blk: a disk that does not exist is rejected before boot (exit 3)" {
  run --separate-stderr "$KILN_VMM" --kernel "$KERNEL" --disk /nonexistent/disk.img
  [ "$status" -eq 3 ]
  assert_diag
  [[ $stderr == *"cannot open disk /nonexistent/disk.img"* ]]
}

@test "blk: a bad --disk option is a usage error (exit 2)" {
  run --separate-stderr "$KILN_VMM" --kernel "$KERNEL" --disk "$D/scratch.img,id=this-serial-is-too-long-for-virtio"
  [ "$status" -eq 2 ]
  assert_diag
  run --separate-stderr "$KILN_VMM" --kernel "$KERNEL" --disk "$D/scratch.img,bogus"
  [ "$status" -eq 2 ]
  assert_diag
}
