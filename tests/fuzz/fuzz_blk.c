/* fuzz_blk.c: libFuzzer harness for virtio-blk request handling through the virtio-mmio transport.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon tests/fuzz/fuzz_blk.c devices/blk.c devices/virtio_mmio.c devices/virtq.c common/util.c -o build/fuzz/fuzz_blk
 *
 * Input: [flags | nops] then nops MMIO register writes of 5 bytes (offset/4, value) applied after
 * a normal driver handshake (so the transport state machine is fuzzed too), then bytes copied over
 * guest RAM (descriptor table at 0, avail at 0x1000, used at 0x2000, requests anywhere after).
 * The disk is a 64 KiB memfd (read-write or read-only by a flag bit). Checks: the used index only
 * a live queue has returned every chain it took, reset releases everything, and ASan/UBSan see
 * nothing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate, memfd_create; the Makefile defines it already */
#endif
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devices/blk.h"

#define RAM_SIZE 0x10000u
#define QSIZE 16u

static uint8_t *ram;
static int disk_fd = -1;
static unsigned int irqs;

static void irq(void *ctx)
{
	(void)ctx;
	irqs++;
}

static void w32(struct blk_dev *b, uint64_t off, uint32_t v)
{
	(void)virtio_mmio_write(&b->mmio, off, &v, 4);
}

static uint32_t r32(struct blk_dev *b, uint64_t off)
{
	uint32_t v = 0;
	(void)virtio_mmio_read(&b->mmio, off, &v, 4);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	if (!ram) {
		ram = aligned_alloc(4096, RAM_SIZE);
		disk_fd = memfd_create("fuzz-disk", 0);
		if (disk_fd < 0 || ftruncate(disk_fd, 64 * 1024) != 0)
			abort();
	}
	memset(ram, 0, RAM_SIZE);
	struct gmem m = { .nr = 1, .ram_size = RAM_SIZE };
	m.r[0] = (struct gmem_region){ 0, RAM_SIZE, ram };

	static struct blk_dev b;
	bool ro = data[0] & 1;
	unsigned int nops = data[1] % 8;
	data += 2;
	size -= 2;
	if (blk_init(&b, &m, disk_fd, ro, "fuzz-serial", irq, NULL) != 0)
		abort();

	/* The Linux driver's handshake, all features accepted. */
	w32(&b, VIRTIO_MMIO_STATUS, 1);
	w32(&b, VIRTIO_MMIO_STATUS, 3);
	w32(&b, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = r32(&b, VIRTIO_MMIO_DEVICE_FEATURES);
	w32(&b, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	uint32_t hi = r32(&b, VIRTIO_MMIO_DEVICE_FEATURES);
	w32(&b, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	w32(&b, VIRTIO_MMIO_DRIVER_FEATURES, lo);
	w32(&b, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	w32(&b, VIRTIO_MMIO_DRIVER_FEATURES, hi);
	w32(&b, VIRTIO_MMIO_STATUS, 0xb);
	w32(&b, VIRTIO_MMIO_QUEUE_SEL, 0);
	w32(&b, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
	w32(&b, VIRTIO_MMIO_QUEUE_DESC_LOW, 0);
	w32(&b, VIRTIO_MMIO_QUEUE_DRIVER_LOW, 0x1000);
	w32(&b, VIRTIO_MMIO_QUEUE_DEVICE_LOW, 0x2000);
	w32(&b, VIRTIO_MMIO_QUEUE_READY, 1);
	w32(&b, VIRTIO_MMIO_STATUS, 0xf);

	/* Hostile register writes (and config-space accesses of any width). */
	for (unsigned int i = 0; i < nops && size >= 5; i++) {
		uint64_t off = (uint64_t)data[0] * 4;
		uint32_t v;
		memcpy(&v, data + 1, 4);
		if (data[0] & 0x80) /* odd widths and offsets into config space */
			(void)virtio_mmio_write(&b.mmio, 0x100u + (data[0] & 0x7f), &v, 1u + (data[1] & 7));
		else
			w32(&b, off, v);
		data += 5;
		size -= 5;
	}

	size_t n = size < RAM_SIZE - 0x3000 ? size : RAM_SIZE - 0x3000;
	/* desc table and avail ring come first in the input, then request memory from 0x3000. */
	if (n > 0x1000 + 0x80) {
		memcpy(ram, data, 0x1000);
		memcpy(ram + 0x1000, data + 0x1000, 0x80);
		memcpy(ram + 0x3000, data + 0x1080, n - 0x1080);
	} else {
		memcpy(ram, data, n);
	}

	while (virtio_mmio_notify(&b.mmio, 0))
		;
	uint16_t avail = (uint16_t)(ram[0x1002] | (ram[0x1003] << 8));
	const struct virtq *q = &b.mmio.vq[0];
	if (b.mmio.status == 0xf && q->ready &&
	    (q->inflight != 0 || q->used_idx != q->last_avail_idx || q->last_avail_idx != avail))
		abort(); /* a live queue must have consumed and returned every posted chain */
	(void)virtio_mmio_notify(&b.mmio, 0); /* a second kick on the same state */
	w32(&b, VIRTIO_MMIO_STATUS, 0);  /* reset releases everything */
	if (b.mmio.vq[0].ready || b.mmio.status != 0)
		abort();
	blk_destroy(&b);
	return 0;
}
