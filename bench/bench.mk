# bench/bench.mk: `make bench` (included by the top Makefile; not part of `make check`).
# kiln-vmm against QEMU's `-M microvm` on the same kernel, initramfs, memory and vCPUs, run
# directly where /dev/kvm runs guests, else inside tests/kvmhost.sh (ratios only there).
# Parts: boot, memory, blk (bench/blk.sh), vsock (bench/vsock.sh), kiln run (bench/runner.sh).
# Table on stdout, raw figures in build/bench/results.txt. Knobs: see bench/run.sh.
# build/bench-guest/initramfs.cpio.gz: the test initramfs with the guest-side block benchmark
# appended as a second (concatenated) cpio archive, for bench/blk.sh.

BG_DIR := $(B)/bench-guest
# kiln-bench-settle: host-side helper run between timed samples in the emulated host (bench/settle.c)
BH_SETTLE := $(B)/bench-host/kiln-bench-settle

bench: all guest-kernel initramfs testroot guest-image $(BG_DIR)/initramfs.cpio.gz $(BH_SETTLE)
	@bench/run.sh

$(BH_SETTLE): bench/settle.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(HARDEN) $(CFLAGS) -static-pie -o $@ $<

$(BG_DIR)/kiln-blkbench: bench/guest-blkbench.c
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -o $@ $<

$(BG_DIR)/initramfs.cpio.gz: $(G)/initramfs.cpio.gz $(BG_DIR)/kiln-blkbench bench/bench.mk
	@rm -rf $(BG_DIR)/extra.d && mkdir -p $(BG_DIR)/extra.d/sbin
	cp $(BG_DIR)/kiln-blkbench $(BG_DIR)/extra.d/sbin/kiln-blkbench
	cd $(BG_DIR)/extra.d && find . -mindepth 1 | LC_ALL=C sort | \
	  cpio --quiet -o -H newc -R 0:0 --reproducible | gzip -9n > ../extra.cpio.gz
	cat $(G)/initramfs.cpio.gz $(BG_DIR)/extra.cpio.gz > $@.tmp
	mv $@.tmp $@
