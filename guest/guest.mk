# guest/guest.mk: guest artifacts for the end-to-end tests (included by the top Makefile).
#   guest-kernel  build/guest/bzImage         kiln's minimal kernel (guest/build-kernel.sh, cached)
#   stock-kernel  build/guest/vmlinuz-stock   Debian's stock kernel (guest/stock-kernel.sh, cached)
#   initramfs     build/guest/initramfs.cpio.gz  busybox + guest/test-init as /init + kiln-exit
#   testroot      build/guest/testroot.ext4  the initramfs tree as an ext4 root disk
#   guest         all of them
# Guest payloads are static guest binaries: they get their own flags, not the host hardening ones.

G := $(B)/guest
GUEST_CC     ?= gcc
GUEST_CFLAGS := -static -O2 -Wall -Wextra -Werror
BUSYBOX      ?= /bin/busybox

.PHONY: stock-kernel testroot
guest: guest-kernel stock-kernel initramfs testroot
testroot: $(G)/testroot.ext4
guest-kernel: $(G)/bzImage
stock-kernel: $(G)/vmlinuz-stock
initramfs: $(G)/initramfs.cpio.gz

$(G)/bzImage: guest/build-kernel.sh guest/kernel.config
	guest/build-kernel.sh $@

$(G)/vmlinuz-stock: guest/stock-kernel.sh
	guest/stock-kernel.sh $@

$(G)/kiln-exit: guest/kiln-exit.c
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -o $@ $<

# Built without root: a staged tree archived as newc with every file owned by 0:0.
# No device nodes: the kernel mounts devtmpfs (CONFIG_DEVTMPFS_MOUNT) and /init mounts it too.
$(G)/initramfs.cpio.gz: guest/test-init $(G)/kiln-exit $(BUSYBOX) guest/guest.mk
	@rm -rf $(G)/initramfs.d && mkdir -p $(G)/initramfs.d
	@cd $(G)/initramfs.d && mkdir -p bin sbin usr/bin usr/sbin proc sys dev tmp run etc root
	cp $(BUSYBOX) $(G)/initramfs.d/bin/busybox
	@cd $(G)/initramfs.d && for a in $$(bin/busybox --list-full); do \
	  [ -e "$$a" ] || ln -s /bin/busybox "$$a"; done
	cp guest/test-init $(G)/initramfs.d/init
	cp $(G)/kiln-exit $(G)/initramfs.d/sbin/kiln-exit
	chmod 0755 $(G)/initramfs.d/init $(G)/initramfs.d/sbin/kiln-exit
	cd $(G)/initramfs.d && find . -mindepth 1 | LC_ALL=C sort | \
	  cpio --quiet -o -H newc -R 0:0 --reproducible | gzip -9n > ../initramfs.cpio.gz.tmp
	mv $@.tmp $@

# The test initramfs tree as an ext4 image (mke2fs -d, no root needed): the root disk of the
# virtio-blk e2e tests (root=/dev/vda ro init=/init).
$(G)/testroot.ext4: $(G)/initramfs.cpio.gz
	@rm -f $@
	mke2fs -q -t ext4 -L kiln-test -d $(G)/initramfs.d $@ 24M
