# guest/guest.mk: guest artifacts for the end-to-end tests (included by the top Makefile).
#   guest-kernel  build/guest/bzImage         kiln's minimal kernel (guest/build-kernel.sh, cached)
#   stock-kernel  build/guest/vmlinuz-stock   Debian's stock kernel (guest/stock-kernel.sh, cached)
#   initramfs     build/guest/initramfs.cpio.gz  busybox + guest/test-init as /init + kiln-exit, kiln-vsock
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

$(G)/kiln-vsock: guest/kiln-vsock.c
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -o $@ $<

# Built without root: a staged tree archived as newc with every file owned by 0:0.
# No device nodes: the kernel mounts devtmpfs (CONFIG_DEVTMPFS_MOUNT) and /init mounts it too.
$(G)/vq-attack: guest/vq-attack.c
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -o $@ $<

$(G)/initramfs.cpio.gz: guest/test-init $(G)/kiln-exit $(G)/kiln-vsock $(G)/vq-attack $(BUSYBOX) guest/guest.mk
	@rm -rf $(G)/initramfs.d && mkdir -p $(G)/initramfs.d
	@cd $(G)/initramfs.d && mkdir -p bin sbin usr/bin usr/sbin proc sys dev tmp run etc root
	cp $(BUSYBOX) $(G)/initramfs.d/bin/busybox
	@cd $(G)/initramfs.d && for a in $$(bin/busybox --list-full); do \
	  [ -e "$$a" ] || ln -s /bin/busybox "$$a"; done
	cp guest/test-init $(G)/initramfs.d/init
	cp $(G)/kiln-exit $(G)/initramfs.d/sbin/kiln-exit
	cp $(G)/kiln-vsock $(G)/initramfs.d/sbin/kiln-vsock
	cp $(G)/vq-attack $(G)/initramfs.d/sbin/vq-attack
	chmod 0755 $(G)/initramfs.d/init $(G)/initramfs.d/sbin/kiln-exit $(G)/initramfs.d/sbin/kiln-vsock
	cd $(G)/initramfs.d && find . -mindepth 1 | LC_ALL=C sort | \
	  cpio --quiet -o -H newc -R 0:0 --reproducible | gzip -9n > ../initramfs.cpio.gz.tmp
	mv $@.tmp $@

# The test initramfs tree as an ext4 image (mke2fs -d, no root needed): the root disk of the
# virtio-blk e2e tests (root=/dev/vda ro init=/init).
$(G)/testroot.ext4: $(G)/initramfs.cpio.gz
	@rm -f $@
	mke2fs -q -t ext4 -L kiln-test -d $(G)/initramfs.d $@ 24M

# ---- kiln-init and the root images -------------------------------------------------------
#   guest-image         build/guest/rootfs.ext4         busybox + kiln-init as /sbin/init, read-only root
#   guest-image-python  build/guest/rootfs-python.ext4  the same plus the host's python3.11
# Boot with --disk IMAGE,ro and the command line "root=/dev/vda ro init=/sbin/init".
.PHONY: guest-image guest-image-python
guest-image: $(G)/rootfs.ext4
guest-image-python: $(G)/rootfs-python.ext4

KILN_INIT_CFLAGS := $(GUEST_CFLAGS) -std=gnu11 -D_GNU_SOURCE -Wshadow -Wformat=2 -Icommon
$(G)/kiln-init: guest/kiln-init.c common/agent_proto.c common/agent_proto.h common/util.h common/clone3.h
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(KILN_INIT_CFLAGS) -o $@ guest/kiln-init.c common/agent_proto.c

$(G)/rootfs.ext4: guest/mkimage.sh $(G)/kiln-init $(BUSYBOX)
	BUSYBOX=$(BUSYBOX) guest/mkimage.sh $@ $(G)/kiln-init

$(G)/rootfs-python.ext4: guest/mkimage.sh $(G)/kiln-init $(BUSYBOX)
	BUSYBOX=$(BUSYBOX) guest/mkimage.sh $@ $(G)/kiln-init --python
