/* fuzz_virtq.c: libFuzzer harness for the virtqueue walker over an input-built fake guest RAM.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon tests/fuzz/fuzz_virtq.c devices/virtq.c common/util.c -o build/fuzz/fuzz_virtq
 *
 * Input: [qsize_log2 | flags | cap | pops] then bytes copied over guest RAM (descriptor table at
 * 0, avail at 0x1000, used at 0x2000, the rest free for buffers and indirect tables). Guest RAM is
 * two regions (0..64 KiB and 1 MiB..+4 KiB) so that "between regions" and "past the end" exist.
 * After each pop the next input bytes are written over RAM, as a guest racing the device would.
 * Checks: every returned buffer lies inside one RAM region, counts and lengths are consistent.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtq.h"

#define R0_SIZE 0x10000u
#define R1_GPA 0x100000u
#define R1_SIZE 0x1000u

static uint8_t *ram0, *ram1;

static void check_buf(const struct virtq_buf *b)
{
	const uint8_t *p = b->host;
	if (b->len == 0)
		abort();
	if (p >= ram0 && p + b->len <= ram0 + R0_SIZE && b->gpa == (uint64_t)(p - ram0))
		return;
	if (p >= ram1 && p + b->len <= ram1 + R1_SIZE && b->gpa == R1_GPA + (uint64_t)(p - ram1))
		return;
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	if (!ram0) {
		ram0 = aligned_alloc(4096, R0_SIZE);
		ram1 = aligned_alloc(4096, R1_SIZE);
	}
	memset(ram0, 0, R0_SIZE);
	memset(ram1, 0, R1_SIZE);
	struct gmem m = { .nr = 2, .ram_size = R0_SIZE + R1_SIZE };
	m.r[0] = (struct gmem_region){ 0, R0_SIZE, ram0 };
	m.r[1] = (struct gmem_region){ R1_GPA, R1_SIZE, ram1 };

	uint32_t qsize = 1u << (data[0] % 9);
	uint64_t feat = 1ull << VIRTIO_F_VERSION_1;
	if (data[1] & 1)
		feat |= 1ull << VIRTIO_F_EVENT_IDX;
	if (data[1] & 2)
		feat |= 1ull << VIRTIO_F_INDIRECT_DESC;
	unsigned int cap = 1u + data[2] % 64;
	unsigned int pops = 1u + data[3] % 32;
	data += 4;
	size -= 4;

	/* Initial guest RAM contents. */
	size_t first = size < 0x3000 ? size : 0x3000;
	memcpy(ram0, data, first);
	data += first;
	size -= first;

	struct virtq q;
	if (virtq_init(&q, &m, qsize, 0, 0x1000, 0x2000, feat) != 0)
		abort();
	struct virtq_buf bufs[64];
	struct virtq_chain c;
	for (unsigned int i = 0; i < pops; i++) {
		int r = virtq_pop(&q, &c, bufs, cap);
		if (r < 0) {
			if (!q.broken || virtq_pop(&q, &c, bufs, cap) != -EIO)
				abort();
			break;
		}
		if (r == 0) {
			(void)virtq_should_notify(&q);
		} else {
			if (c.n > cap || c.head >= qsize)
				abort();
			uint64_t in = 0, out = 0;
			for (unsigned int k = 0; k < c.n; k++) {
				check_buf(&bufs[k]);
				if (bufs[k].writable)
					in += bufs[k].len;
				else
					out += bufs[k].len;
			}
			if (in != c.in_len || out != c.out_len)
				abort();
			/* Return it (every other one later, to keep heads in flight). */
			if ((i & 1) == 0 && virtq_push(&q, c.head, c.in_len) != 0)
				abort();
			(void)virtq_should_notify(&q);
		}
		/* The guest rewrites part of its memory: 2-byte offset, 1-byte length, bytes. */
		if (size >= 3) {
			size_t off = (size_t)(data[0] | (data[1] << 8)) % R0_SIZE;
			size_t len = data[2];
			data += 3;
			size -= 3;
			if (len > size)
				len = size;
			if (len > R0_SIZE - off)
				len = R0_SIZE - off;
			memcpy(ram0 + off, data, len);
			data += len;
			size -= len;
		}
	}
	virtq_reset(&q);
	return 0;
}
