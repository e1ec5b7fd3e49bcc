/* fuzz_vsock.c: libFuzzer harness for virtio-vsock: guest tx/rx queues over fake guest memory and a
 * fake backend whose behaviour (accept, refuse, partial writes, errors, EOF) the input chooses.
 *
 * Input: [be flags][nops] then nops MMIO writes of 5 bytes (offset/4, value) applied after a normal
 * driver handshake, then bytes copied over guest RAM: rx rings at 0x0/0x100/0x200, tx rings at
 * 0x400/0x500/0x600, event rings at 0x800.., buffers anywhere from 0x1000 (RAM is 64 KiB, QS 16).
 * Several rounds of kicks and host events run over the same memory. Checks: the connection table
 * and buffered bytes stay within their bounds, every connection the backend took is released
 * exactly once, reset and destroy leave nothing, and ASan/UBSan see nothing.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/vsock.h"

#define RAM_SIZE 0x10000u
#define QSIZE 16u
#define MAX_CONNS 8u

static uint8_t *ram;
static struct vsock_dev v;
static uint8_t be_flags;
static unsigned int owned, released;
static uint8_t pattern[64];

static void irq(void *ctx) { (void)ctx; }

static int f_connect(void *ctx, struct vsock_conn *c, uint32_t port)
{
	(void)ctx;
	switch ((be_flags + port) & 3u) {
	case 0:
		return -ECONNREFUSED;
	case 1:
		c->be = &owned;
		owned++;
		return 0; /* in progress */
	default:
		c->be = &owned;
		owned++;
		return 1;
	}
}
static int f_established(void *ctx, struct vsock_conn *c)
{
	(void)ctx;
	return (c->host_port & 1u) && (be_flags & 0x40) ? -EIO : 0;
}
static ssize_t f_send(void *ctx, struct vsock_conn *c, const struct iovec *iov, int n)
{
	(void)ctx;
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		const volatile uint8_t *p = iov[i].iov_base;
		for (size_t k = 0; k < iov[i].iov_len; k += 512)
			(void)p[k]; /* touch: ASan checks the range is real memory */
		if (iov[i].iov_len)
			(void)p[iov[i].iov_len - 1];
		total += iov[i].iov_len;
	}
	switch ((be_flags >> 2) & 3u) {
	case 0: return (ssize_t)total;
	case 1: return total > 7 ? 7 : (ssize_t)total;
	case 2: return -EAGAIN;
	default: return (c->guest_port & 1u) ? -EPIPE : (ssize_t)total;
	}
}
static ssize_t f_recv(void *ctx, struct vsock_conn *c, const struct iovec *iov, int n)
{
	(void)ctx;
	switch ((be_flags >> 4) & 3u) {
	case 0: return -EAGAIN;
	case 1: return (c->guest_port & 1u) ? 0 : -EAGAIN;
	case 2: return -ECONNRESET;
	default: break;
	}
	size_t done = 0;
	for (int i = 0; i < n; i++) {
		uint8_t *p = iov[i].iov_base;
		for (size_t k = 0; k < iov[i].iov_len; k++)
			p[k] = pattern[(done + k) % sizeof(pattern)];
		done += iov[i].iov_len;
	}
	return (ssize_t)done;
}
static void f_shut_wr(void *ctx, struct vsock_conn *c) { (void)ctx; (void)c; }
static void f_watch(void *ctx, struct vsock_conn *c, bool rd, bool wr) { (void)ctx; (void)c; (void)rd; (void)wr; }
static void f_release(void *ctx, struct vsock_conn *c)
{
	(void)ctx;
	if (c->be != &owned)
		abort(); /* released something the backend never took, or twice */
	c->be = NULL;
	released++;
}
static void f_kick(void *ctx) { (void)ctx; }
static const struct vsock_backend fbe = { f_connect, f_established, f_send, f_recv, f_shut_wr, f_watch,
					  f_release, f_kick };

static void w32(uint64_t off, uint32_t val)
{
	(void)virtio_mmio_write(&v.mmio, off, &val, 4);
}

static void check_bounds(void)
{
	if (v.nconns > v.max_conns)
		abort();
	uint64_t sum = 0, credit = 0;
	unsigned int live = 0;
	for (unsigned int i = 0; i < v.max_conns; i++) {
		const struct vsock_conn *c = &v.conns[i];
		if (c->state == VSOCK_FREE)
			continue;
		live++;
		uint32_t b = c->tx_cnt - c->fwd_cnt;
		if (b > c->buf_alloc)
			abort(); /* the guest made us hold more than we advertised */
		if (c->buf_alloc < v.buf_floor || c->buf_alloc > VSOCK_CONN_BUF_MAX)
			abort();
		sum += b;
		credit += c->buf_alloc;
	}
	if (live != v.nconns || sum != v.buffered || credit != v.pool || v.buffered > v.pool)
		abort();
	/* the pool: never more than the total, with every free slot's floor still reserved */
	if (v.pool + (uint64_t)(v.max_conns - v.nconns) * v.buf_floor > VSOCK_TOTAL_BUF)
		abort();
	if (v.rst_len > VSOCK_RST_RING)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	if (!ram)
		ram = aligned_alloc(4096, RAM_SIZE);
	memset(ram, 0, RAM_SIZE);
	struct gmem m = { .nr = 1, .ram_size = RAM_SIZE };
	m.r[0] = (struct gmem_region){ 0, RAM_SIZE, ram };
	be_flags = data[0];
	unsigned int nops = data[1] % 8;
	data += 2;
	size -= 2;
	owned = released = 0;
	for (unsigned int i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 37u + be_flags);
	if (vsock_dev_init(&v, &m, 3, MAX_CONNS, &fbe, NULL, irq, NULL) != 0)
		abort();

	w32(VIRTIO_MMIO_STATUS, 1);
	w32(VIRTIO_MMIO_STATUS, 3);
	w32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	w32(VIRTIO_MMIO_DRIVER_FEATURES, (be_flags & 0x80) ? (1u << VIRTIO_F_EVENT_IDX) | (1u << VIRTIO_F_INDIRECT_DESC) : 0);
	w32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	w32(VIRTIO_MMIO_DRIVER_FEATURES, 1);
	w32(VIRTIO_MMIO_STATUS, 0xb);
	for (uint32_t q = 0; q < 3; q++) {
		w32(VIRTIO_MMIO_QUEUE_SEL, q);
		w32(VIRTIO_MMIO_QUEUE_NUM, QSIZE);
		w32(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x400 * q);
		w32(VIRTIO_MMIO_QUEUE_DRIVER_LOW, 0x400 * q + 0x100);
		w32(VIRTIO_MMIO_QUEUE_DEVICE_LOW, 0x400 * q + 0x200);
		w32(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	w32(VIRTIO_MMIO_STATUS, 0xf);

	for (unsigned int i = 0; i < nops && size >= 5; i++) {
		uint32_t val;
		memcpy(&val, data + 1, 4);
		if (data[0] & 0x80)
			(void)virtio_mmio_write(&v.mmio, 0x100u + (data[0] & 0x7f), &val, 1u + (data[1] & 7));
		else
			w32((uint64_t)data[0] * 4, val);
		data += 5;
		size -= 5;
	}

	/* Rings as given, but keep the device-written used rings (0x200, 0x600, 0xa00) ours. */
	size_t n = size < RAM_SIZE ? size : RAM_SIZE;
	for (size_t off = 0; off < n; off++) {
		size_t page = off & ~(size_t)0x3ff;
		if (off < 0xc00 && (off - page) >= 0x200 && (off - page) < 0x300)
			continue;
		ram[off] = data[off];
	}

	for (unsigned int round = 0; round < 4; round++) {
		while (virtio_mmio_notify(&v.mmio, VSOCK_TXQ))
			check_bounds();
		(void)virtio_mmio_notify(&v.mmio, VSOCK_RXQ);
		(void)virtio_mmio_notify(&v.mmio, VSOCK_EVQ);
		check_bounds();
		for (unsigned int i = 0; i < v.max_conns; i++) {
			struct vsock_conn *c = &v.conns[i];
			if (c->state == VSOCK_FREE)
				continue;
			if (c->state == VSOCK_CONNECTING_G2H && (round & 1))
				vsock_dev_connected(&v, c);
			else if ((be_flags ^ round) & 1)
				vsock_dev_readable(&v, c);
			else
				vsock_dev_writable(&v, c);
			check_bounds();
		}
		struct vsock_conn *c = NULL;
		if (vsock_dev_host_connect(&v, 1000u + round, &owned, &c) == 0)
			owned++;
		check_bounds();
		if (round == 2)
			vsock_dev_tick(&v, vsock_now_ms() + VSOCK_TIMEOUT_MS + 1);
		vsock_dev_run(&v);
		check_bounds();
	}
	w32(VIRTIO_MMIO_STATUS, 0); /* reset releases everything */
	if (v.nconns != 0 || v.buffered != 0 || v.ntimed != 0 || released != owned)
		abort();
	vsock_dev_destroy(&v);
	if (released != owned)
		abort();
	return 0;
}
