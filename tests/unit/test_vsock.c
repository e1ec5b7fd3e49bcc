/* test_vsock.c: virtio-vsock header validation, credit arithmetic, the state machine (each op in each
 * state) over a fake guest and a fake backend, the host handshake parser and --vsock options. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/vsock.h"
#include "fake_guest.h"
#include "vmm/evloop.h"
#include "vmm/vsock_host.h"

#define CID 3u
#define QS 16u

/* ---- pure: header, verdicts, credit --------------------------------------------------------- */

static uint32_t guest_ba = 65536; /* buf_alloc in the guest's headers (setup_dev resets it) */

static struct vsock_hdr hdr(uint16_t op, uint32_t len)
{
	struct vsock_hdr h = {
		.src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = 1000, .dst_port = 52,
		.len = len, .type = VSOCK_TYPE_STREAM, .op = op, .buf_alloc = guest_ba, .fwd_cnt = 0,
	};
	return h;
}

static void test_hdr_roundtrip(void **state)
{
	(void)state;
	struct vsock_hdr a = { 0x1122334455667788ull, 0x99aabbccddeeff00ull, 1, 2, 3, 4, 5, 6, 7, 8 }, b;
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(&a, raw);
	assert_int_equal(raw[0], 0x88); /* little-endian */
	assert_int_equal(raw[28], 4);
	assert_int_equal(raw[30], 5);
	vsock_hdr_decode(raw, &b);
	assert_memory_equal(&a, &b, sizeof(a));
}

static void test_check_verdicts(void **state)
{
	(void)state;
	struct vsock_hdr h = hdr(VSOCK_OP_RW, 10);
	assert_int_equal(vsock_check(&h, CID, 54, 0), VSOCK_PKT_OK);
	assert_int_equal(vsock_check(&h, CID, 43, 0), VSOCK_PKT_DROP_SHORT);
	assert_int_equal(vsock_check(&h, CID, 0, 0), VSOCK_PKT_DROP_SHORT);
	assert_int_equal(vsock_check(&h, CID, 53, 0), VSOCK_PKT_DROP_LEN);  /* len beyond the chain */
	assert_int_equal(vsock_check(&h, CID, 55, 0), VSOCK_PKT_DROP_LEN);  /* chain beyond len */
	assert_int_equal(vsock_check(&h, CID, 54, 1), VSOCK_PKT_DROP_LEN);  /* writable part */
	h.len = VSOCK_MAX_PKT;
	assert_int_equal(vsock_check(&h, CID, 44 + VSOCK_MAX_PKT, 0), VSOCK_PKT_OK);
	h.len = VSOCK_MAX_PKT + 1;
	assert_int_equal(vsock_check(&h, CID, 45 + VSOCK_MAX_PKT, 0), VSOCK_PKT_DROP_LEN);
	h.len = 0xffffffffu;
	assert_int_equal(vsock_check(&h, CID, 44ull + 0xffffffffull, 0), VSOCK_PKT_DROP_LEN);
	h = hdr(VSOCK_OP_REQUEST, 4); /* payload on a control op */
	assert_int_equal(vsock_check(&h, CID, 48, 0), VSOCK_PKT_DROP_LEN);
	h = hdr(VSOCK_OP_REQUEST, 0);
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_OK);
	h.src_cid = 4;
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_DROP_SRC);
	h.src_cid = VSOCK_HOST_CID; /* host impersonated */
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_DROP_SRC);
	h.src_cid = CID | (1ull << 32);
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_DROP_SRC);
	h = hdr(VSOCK_OP_REQUEST, 0);
	h.dst_cid = 5;
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_RST_DST);
	h.dst_cid = CID; /* loopback to itself */
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_RST_DST);
	h = hdr(VSOCK_OP_REQUEST, 0);
	h.type = 2; /* SEQPACKET: not offered */
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_RST_TYPE);
	h = hdr(VSOCK_OP_INVALID, 0);
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_RST_OP);
	h = hdr(8, 0);
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_RST_OP);
	h = hdr(0xffff, 0);
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_RST_OP);
	h = hdr(VSOCK_OP_SHUTDOWN, 0);
	h.flags = VSOCK_SHUTDOWN_ALL;
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_OK);
	h.flags = 4;
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_RST_FLAGS);
	h = hdr(VSOCK_OP_RST, 0);
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_OK);
	h.dst_cid = 7; /* a malformed RST is never answered */
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_DROP_RST);
	h = hdr(VSOCK_OP_RST, 0);
	h.type = 9;
	assert_int_equal(vsock_check(&h, CID, 44, 0), VSOCK_PKT_DROP_RST);
	for (int v = 0; v < VSOCK_PKT_VERDICTS; v++)
		assert_non_null(vsock_verdict_str((enum vsock_verdict)v));
	assert_string_equal(vsock_verdict_str(VSOCK_PKT_VERDICTS), "?");
}

static void test_credit(void **state)
{
	(void)state;
	assert_int_equal(vsock_credit(65536, 0, 0), 65536);
	assert_int_equal(vsock_credit(65536, 100, 1100), 64536);
	assert_int_equal(vsock_credit(65536, 0, 65536), 0);
	/* wraparound: the sender's counter wrapped, the receiver's not yet */
	assert_int_equal(vsock_credit(65536, 0xfffffff0u, 0x10u), 65536 - 0x20);
	assert_int_equal(vsock_credit(65536, 0xffffffffu, 0xffffffffu), 65536);
	assert_int_equal(vsock_credit(65536, 0xffff0000u, 0x0u), 0);
	/* receiver shrank its buffer under what is in flight */
	assert_int_equal(vsock_credit(100, 0, 200), 0);
	/* receiver claims to have consumed more than was sent: in flight looks huge: 0 */
	assert_int_equal(vsock_credit(65536, 10, 5), 0);
	/* zero buf_alloc */
	assert_int_equal(vsock_credit(0, 0, 0), 0);
	assert_int_equal(vsock_credit(0xffffffffu, 0, 0), 0xffffffffu);
}

/* ---- pure: handshake parser and options ----------------------------------------------------- */

static int hs(const char *s, uint32_t *port)
{
	return vsock_handshake_parse(s, strlen(s), port);
}

static void test_handshake(void **state)
{
	(void)state;
	uint32_t p = 0;
	assert_int_equal(hs("CONNECT 52\n", &p), 11);
	assert_int_equal(p, 52);
	assert_int_equal(hs("connect 1024\n", &p), 13);
	assert_int_equal(p, 1024);
	assert_int_equal(hs("CoNnEcT\t  7 \r\n", &p), 14);
	assert_int_equal(p, 7);
	assert_int_equal(hs("CONNECT 0\n", &p), 10);
	assert_int_equal(p, 0);
	assert_int_equal(hs("CONNECT 4294967294\n", &p), 19);
	assert_int_equal(p, 4294967294u);
	/* the client's stream may follow the line: only the line is counted */
	assert_int_equal(hs("CONNECT 52\nhello", &p), 11);
	/* short: more bytes needed */
	assert_int_equal(hs("", &p), 0);
	assert_int_equal(hs("CONN", &p), 0);
	assert_int_equal(hs("CONNECT", &p), 0);
	assert_int_equal(hs("CONNECT 52", &p), 0);
	assert_int_equal(hs("CONNECT 52 \r", &p), 0);
	/* missing newline within 32 bytes */
	assert_int_equal(hs("CONNECT 52                      ", &p), -EINVAL);
	assert_int_equal(hs("CONNECT                         52\n", &p), -EINVAL);
	/* non-numeric, signs, overflow, VMADDR_PORT_ANY */
	assert_int_equal(hs("CONNECT abc\n", &p), -EINVAL);
	assert_int_equal(hs("CONNECT -1\n", &p), -EINVAL);
	assert_int_equal(hs("CONNECT +1\n", &p), -EINVAL);
	assert_int_equal(hs("CONNECT 0x10\n", &p), -EINVAL);
	assert_int_equal(hs("CONNECT 4294967295\n", &p), -EINVAL);
	assert_int_equal(hs("CONNECT 4294967296\n", &p), -EINVAL);
	assert_int_equal(hs("CONNECT 99999999999\n", &p), -EINVAL);
	assert_int_equal(hs("CONNECT 00000000001\n", &p), -EINVAL); /* 11 digits */
	assert_int_equal(hs("CONNECT 52 53\n", &p), -EINVAL);
	assert_int_equal(hs("CONNECT 52x\n", &p), -EINVAL);
	/* keyword */
	assert_int_equal(hs("CONNECT\n", &p), -EINVAL);
	assert_int_equal(hs("CONNECT \n", &p), -EINVAL);
	assert_int_equal(hs("CONNECT52\n", &p), -EINVAL);
	assert_int_equal(hs("CONNECTX 52\n", &p), -EINVAL);
	assert_int_equal(hs("CONNEC 52\n", &p), -EINVAL);
	assert_int_equal(hs(" CONNECT 52\n", &p), -EINVAL);
	assert_int_equal(hs("GET / HTTP/1.1", &p), -EINVAL); /* rejected before any newline */
	assert_int_equal(hs("OK 52\n", &p), -EINVAL);
	char nul[] = "CONNECT 5\0\n";
	assert_int_equal(vsock_handshake_parse(nul, sizeof(nul) - 1, &p), -EINVAL);
	/* long: only the first 32 bytes count */
	char lng[64];
	memset(lng, '1', sizeof(lng));
	memcpy(lng, "CONNECT ", 8);
	assert_int_equal(vsock_handshake_parse(lng, sizeof(lng), &p), -EINVAL);
	memset(lng, ' ', sizeof(lng));
	memcpy(lng, "CONNECT 5", 9);
	lng[40] = '\n';
	assert_int_equal(vsock_handshake_parse(lng, sizeof(lng), &p), -EINVAL);
	memset(lng, ' ', sizeof(lng));
	memcpy(lng, "CONNECT 5", 9);
	lng[31] = '\n'; /* exactly 32 bytes with the newline */
	assert_int_equal(vsock_handshake_parse(lng, sizeof(lng), &p), 32);
	assert_int_equal(p, 5);
}

static void test_parse_opts(void **state)
{
	(void)state;
	struct vsock_opts o;
	char a1[] = "cid=3,uds=/tmp/v.sock";
	assert_int_equal(vsock_parse_opts(a1, &o), 0);
	assert_int_equal(o.cid, 3);
	assert_string_equal(o.uds, "/tmp/v.sock");
	assert_int_equal(o.max_conns, VSOCK_DEFAULT_MAX_CONNS);
	char a2[] = "uds=x,max_conns=7,cid=4294967294";
	assert_int_equal(vsock_parse_opts(a2, &o), 0);
	assert_int_equal(o.cid, 4294967294u);
	assert_int_equal(o.max_conns, 7);
	char b1[] = "cid=2,uds=x";
	assert_int_not_equal(vsock_parse_opts(b1, &o), 0);
	char b2[] = "cid=4294967295,uds=x";
	assert_int_not_equal(vsock_parse_opts(b2, &o), 0);
	char b3[] = "cid=3";
	assert_int_not_equal(vsock_parse_opts(b3, &o), 0);
	char b4[] = "uds=x";
	assert_int_not_equal(vsock_parse_opts(b4, &o), 0);
	char b5[] = "cid=3,uds=";
	assert_int_not_equal(vsock_parse_opts(b5, &o), 0);
	char b6[] = "cid=3,uds=x,max_conns=0";
	assert_int_not_equal(vsock_parse_opts(b6, &o), 0);
	char b7[] = "cid=3,uds=x,max_conns=99999";
	assert_int_not_equal(vsock_parse_opts(b7, &o), 0);
	char b8[] = "cid=3,cid=4,uds=x";
	assert_int_not_equal(vsock_parse_opts(b8, &o), 0);
	char b9[] = "cid=3,uds=x,foo=1";
	assert_int_not_equal(vsock_parse_opts(b9, &o), 0);
	char b10[] = "cid=-3,uds=x";
	assert_int_not_equal(vsock_parse_opts(b10, &o), 0);
	char b11[] = "cid=3,uds=x,";
	assert_int_not_equal(vsock_parse_opts(b11, &o), 0);
	char b12[] = "";
	assert_int_not_equal(vsock_parse_opts(b12, &o), 0);
	char lng[200];
	snprintf(lng, sizeof(lng), "cid=3,uds=%0*d", (int)VSOCK_UDS_MAX, 0);
	assert_int_not_equal(vsock_parse_opts(lng, &o), 0);
	snprintf(lng, sizeof(lng), "cid=3,uds=%0*d", (int)VSOCK_UDS_MAX - 1, 0);
	assert_int_equal(vsock_parse_opts(lng, &o), 0);
}

/* ---- the device over a fake guest and a fake backend ---------------------------------------- */

/* Queue layouts inside fake guest RAM: rx at +0, tx at +0x1000, event at +0x2000. */
#define QBASE(q) (FG_RAM_GPA + 0x1000ull * (q))
#define QDESC(q) (QBASE(q))
#define QAVAIL(q) (QBASE(q) + 0x400)
#define QUSED(q) (QBASE(q) + 0x800)
#define RXBUF(i) (FG_DATA + 0x2000ull * (i))        /* 16 rx buffers of 8 KiB */
#define TXHDR (FG_DATA + 0x40000)
#define TXDATA (FG_DATA + 0x41000)                  /* up to 64 KiB of payload */
#define RXLEN 4140u                                 /* 44 + 4096 */

struct fake_be {
	int connect_rc;
	int established_rc;
	unsigned int connects, establisheds, releases, shut_wrs, kicks, watches;
	bool rd, wr;
	uint32_t last_port;
	/* host -> device */
	uint8_t src[300000];
	size_t src_len, src_off;
	bool src_eof;
	int recv_err;
	/* device -> host */
	uint8_t sink[600000];
	size_t sink_len, sink_cap; /* sink_cap: bytes the host accepts before EAGAIN */
	int send_err;
	struct vsock_conn *last;
};

static struct fake_guest fg;
static struct vsock_dev dev;
static struct vsock_dev *D = &dev; /* the device the helpers drive */
static struct fake_be fb;
static uint16_t avail[3], used_seen[3];
static unsigned int irqs;

static int f_connect(void *ctx, struct vsock_conn *c, uint32_t port)
{
	(void)ctx;
	fb.connects++;
	fb.last_port = port;
	fb.last = c;
	if (fb.connect_rc >= 0)
		c->be = &fb;
	return fb.connect_rc;
}
static int f_established(void *ctx, struct vsock_conn *c)
{
	(void)ctx;
	(void)c;
	fb.establisheds++;
	return fb.established_rc;
}
static ssize_t f_send(void *ctx, struct vsock_conn *c, const struct iovec *iov, int n)
{
	(void)ctx;
	(void)c;
	if (fb.send_err)
		return fb.send_err;
	size_t done = 0;
	for (int i = 0; i < n; i++) {
		size_t room = fb.sink_cap - fb.sink_len;
		size_t k = iov[i].iov_len < room ? iov[i].iov_len : room;
		memcpy(fb.sink + fb.sink_len, iov[i].iov_base, k);
		fb.sink_len += k;
		done += k;
	}
	return done ? (ssize_t)done : -EAGAIN;
}
static ssize_t f_recv(void *ctx, struct vsock_conn *c, const struct iovec *iov, int n)
{
	(void)ctx;
	(void)c;
	if (fb.recv_err)
		return fb.recv_err;
	size_t done = 0;
	for (int i = 0; i < n && fb.src_off < fb.src_len; i++) {
		size_t k = fb.src_len - fb.src_off;
		if (k > iov[i].iov_len)
			k = iov[i].iov_len;
		memcpy(iov[i].iov_base, fb.src + fb.src_off, k);
		fb.src_off += k;
		done += k;
	}
	if (done)
		return (ssize_t)done;
	return fb.src_eof ? 0 : -EAGAIN;
}
static void f_shut_wr(void *ctx, struct vsock_conn *c)
{
	(void)ctx;
	(void)c;
	fb.shut_wrs++;
}
static void f_watch(void *ctx, struct vsock_conn *c, bool rd, bool wr)
{
	(void)ctx;
	(void)c;
	fb.watches++;
	fb.rd = rd;
	fb.wr = wr;
}
static void f_release(void *ctx, struct vsock_conn *c)
{
	(void)ctx;
	assert_ptr_equal(c->be, &fb);
	fb.releases++;
}
static void f_kick(void *ctx)
{
	(void)ctx;
	fb.kicks++;
}
static const struct vsock_backend fbe = { f_connect, f_established, f_send, f_recv, f_shut_wr, f_watch,
					  f_release, f_kick };

static void irq(void *ctx)
{
	(void)ctx;
	irqs++;
}

static void w32(uint64_t off, uint32_t v)
{
	assert_int_equal(virtio_mmio_write(&D->mmio, off, &v, 4), 0);
}
static uint32_t r32(uint64_t off)
{
	uint32_t v = 0;
	(void)virtio_mmio_read(&D->mmio, off, &v, 4);
	return v;
}

static void desc(unsigned int q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	fg_desc_at(&fg, QDESC(q), i, addr, len, flags, next);
}
static void post(unsigned int q, uint16_t head)
{
	st16(fg_host(&fg, QAVAIL(q)) + 4 + 2u * (avail[q] % QS), head);
	avail[q]++;
	st16(fg_host(&fg, QAVAIL(q)) + 2, avail[q]);
}

static void driver_up(void);

static void setup_dev(unsigned int max_conns)
{
	fg_init(&fg, QS);
	memset(&fb, 0, sizeof(fb));
	guest_ba = 65536;
	fb.connect_rc = 1;
	fb.sink_cap = sizeof(fb.sink);
	memset(avail, 0, sizeof(avail));
	memset(used_seen, 0, sizeof(used_seen));
	irqs = 0;
	D = &dev;
	assert_int_equal(vsock_dev_init(&dev, &fg.m, CID, max_conns, &fbe, NULL, irq, NULL), 0);
	driver_up();
}

static void driver_up(void)
{
	assert_int_equal(r32(VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_VSOCK);
	uint32_t cid_lo = 0, cid_hi = 0;
	assert_int_equal(virtio_mmio_read(&D->mmio, 0x100, &cid_lo, 4), 0);
	assert_int_equal(virtio_mmio_read(&D->mmio, 0x104, &cid_hi, 4), 0);
	assert_int_equal(cid_lo, CID);
	assert_int_equal(cid_hi, 0);
	w32(VIRTIO_MMIO_STATUS, 1);
	w32(VIRTIO_MMIO_STATUS, 3);
	w32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	w32(VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
	w32(VIRTIO_MMIO_STATUS, 0xb);
	for (unsigned int q = 0; q < 3; q++) {
		w32(VIRTIO_MMIO_QUEUE_SEL, q);
		w32(VIRTIO_MMIO_QUEUE_NUM, QS);
		w32(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)QDESC(q));
		w32(VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)QAVAIL(q));
		w32(VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)QUSED(q));
		w32(VIRTIO_MMIO_QUEUE_READY, 1);
	}
	w32(VIRTIO_MMIO_STATUS, 0xf);
	assert_int_equal(r32(VIRTIO_MMIO_STATUS), 0xf);
}

static void teardown_dev(void)
{
	vsock_dev_destroy(&dev);
	fg_free(&fg);
}

/* Post n fresh rx buffers (one descriptor each; slots reused round-robin). */
static void rx_give(unsigned int n)
{
	for (unsigned int k = 0; k < n; k++) {
		uint16_t i = (uint16_t)(avail[0] % QS);
		desc(0, i, RXBUF(i), RXLEN, VIRTQ_DESC_F_WRITE, 0);
		post(0, i);
	}
	(void)virtio_mmio_notify(&D->mmio, VSOCK_RXQ);
}

/* Next packet the device gave the guest, or false. Payload copied to data (if any). */
static bool rx_take(struct vsock_hdr *h, uint8_t *data)
{
	uint16_t u = ld16(fg_host(&fg, QUSED(0)) + 2);
	if (u == used_seen[0])
		return false;
	uint8_t *e = fg_host(&fg, QUSED(0)) + 4 + 8u * (used_seen[0] % QS);
	uint32_t id = ld32(e), len = ld32(e + 4);
	used_seen[0]++;
	assert_true(len >= VSOCK_HDR_SIZE);
	const uint8_t *b = fg_host(&fg, RXBUF(id));
	vsock_hdr_decode(b, h);
	assert_int_equal(len, VSOCK_HDR_SIZE + h->len);
	assert_int_equal(h->src_cid, VSOCK_HOST_CID);
	assert_int_equal(h->dst_cid, CID);
	assert_int_equal(h->type, VSOCK_TYPE_STREAM);
	if (data)
		memcpy(data, b + VSOCK_HDR_SIZE, h->len);
	return true;
}

static uint16_t rx_expect(uint32_t host_port, uint32_t guest_port)
{
	struct vsock_hdr h;
	assert_true(rx_take(&h, NULL));
	assert_int_equal(h.src_port, host_port);
	assert_int_equal(h.dst_port, guest_port);
	return h.op;
}

static void rx_none(void)
{
	struct vsock_hdr h;
	assert_false(rx_take(&h, NULL));
}

/* The guest sends one packet (header + optional payload descriptor) and kicks tx. */
static void tx_full(const struct vsock_hdr *h, const void *data, uint32_t len)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(h, raw);
	memcpy(fg_host(&fg, TXHDR), raw, sizeof(raw));
	if (len) {
		memcpy(fg_host(&fg, TXDATA), data, len);
		desc(1, 0, TXHDR, VSOCK_HDR_SIZE, VIRTQ_DESC_F_NEXT, 1);
		desc(1, 1, TXDATA, len, 0, 0);
	} else {
		desc(1, 0, TXHDR, VSOCK_HDR_SIZE, 0, 0);
	}
	post(1, 0);
	(void)virtio_mmio_notify(&D->mmio, VSOCK_TXQ);
	assert_int_equal(ld16(fg_host(&fg, QUSED(1)) + 2), avail[1]); /* every tx chain comes back */
}

static void tx(uint16_t op, uint32_t gport, uint32_t hport, uint32_t flags)
{
	struct vsock_hdr h = hdr(op, 0);
	h.src_port = gport;
	h.dst_port = hport;
	h.flags = flags;
	tx_full(&h, NULL, 0);
}

static void tx_rw(uint32_t gport, uint32_t hport, const void *data, uint32_t len)
{
	struct vsock_hdr h = hdr(VSOCK_OP_RW, len);
	h.src_port = gport;
	h.dst_port = hport;
	tx_full(&h, data, len);
}

/* Guest connects 1000 -> host 52, the backend accepts: RESPONSE. */
static struct vsock_conn *establish(void)
{
	tx(VSOCK_OP_REQUEST, 1000, 52, 0);
	assert_int_equal(fb.connects, 1);
	assert_int_equal(fb.last_port, 52);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RESPONSE);
	assert_int_equal(dev.nconns, 1);
	return fb.last;
}

static void test_guest_connect_echo(void **state)
{
	(void)state;
	setup_dev(16);
	rx_give(8);
	struct vsock_conn *c = establish();
	assert_int_equal(c->state, VSOCK_ESTABLISHED);
	assert_true(fb.rd); /* the guest gave 64 KiB credit: host reads are wanted */
	/* guest -> host */
	tx_rw(1000, 52, "hello", 5);
	assert_int_equal(fb.sink_len, 5);
	assert_memory_equal(fb.sink, "hello", 5);
	assert_int_equal(c->fwd_cnt, 5);
	rx_none(); /* no credit update needed yet */
	/* host -> guest */
	memcpy(fb.src, "world!", 6);
	fb.src_len = 6;
	vsock_dev_readable(&dev, c);
	struct vsock_hdr h;
	uint8_t data[8];
	assert_true(rx_take(&h, data));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.len, 6);
	assert_memory_equal(data, "world!", 6);
	assert_int_equal(h.fwd_cnt, 5);         /* our credit rides on every packet */
	assert_int_equal(h.buf_alloc, dev.buf_alloc);
	assert_true(irqs > 0);
	/* host EOF: SHUTDOWN(SEND) */
	fb.src_eof = true;
	vsock_dev_readable(&dev, c);
	assert_true(rx_take(&h, NULL));
	assert_int_equal(h.op, VSOCK_OP_SHUTDOWN);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
	assert_false(fb.rd);
	/* guest closes: SHUTDOWN both -> RST, released */
	tx(VSOCK_OP_SHUTDOWN, 1000, 52, VSOCK_SHUTDOWN_ALL);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	assert_int_equal(fb.releases, 1);
	assert_int_equal(fb.shut_wrs, 1);
	assert_int_equal(dev.nconns, 0);
	/* RW after the close: RST from "no connection" */
	tx_rw(1000, 52, "x", 1);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	teardown_dev();
}

static void test_guest_connect_refused(void **state)
{
	(void)state;
	setup_dev(16);
	rx_give(4);
	fb.connect_rc = -ENOENT;
	tx(VSOCK_OP_REQUEST, 1000, 52, 0);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	assert_int_equal(dev.nconns, 0);
	assert_int_equal(fb.releases, 0); /* the backend kept nothing */
	assert_int_equal(dev.stats.refused, 1);
	teardown_dev();
}

static void test_table_full(void **state)
{
	(void)state;
	setup_dev(2);
	rx_give(8);
	tx(VSOCK_OP_REQUEST, 1, 52, 0);
	tx(VSOCK_OP_REQUEST, 2, 52, 0);
	tx(VSOCK_OP_REQUEST, 3, 52, 0);
	assert_int_equal(rx_expect(52, 1), VSOCK_OP_RESPONSE);
	assert_int_equal(rx_expect(52, 2), VSOCK_OP_RESPONSE);
	assert_int_equal(rx_expect(52, 3), VSOCK_OP_RST);
	assert_int_equal(dev.stats.table_full, 1);
	assert_int_equal(fb.connects, 2);
	struct vsock_conn *c;
	assert_int_equal(vsock_dev_host_connect(&dev, 9, &fb, &c), -ENOSPC);
	/* one goes away: room again */
	tx(VSOCK_OP_RST, 1, 52, 0);
	rx_none();
	assert_int_equal(dev.nconns, 1);
	tx(VSOCK_OP_REQUEST, 3, 52, 0);
	assert_int_equal(rx_expect(52, 3), VSOCK_OP_RESPONSE);
	teardown_dev();
}

static void test_bad_packets(void **state)
{
	(void)state;
	setup_dev(16);
	rx_give(8);
	struct vsock_hdr h = hdr(VSOCK_OP_REQUEST, 0);
	h.src_cid = 9; /* impersonation: dropped silently */
	tx_full(&h, NULL, 0);
	rx_none();
	assert_int_equal(dev.stats.verdict[VSOCK_PKT_DROP_SRC], 1);
	h = hdr(VSOCK_OP_REQUEST, 0);
	h.dst_cid = 77; /* not the host: RST from the CID the guest asked for */
	tx_full(&h, NULL, 0);
	struct vsock_hdr r;
	{
		uint16_t u = ld16(fg_host(&fg, QUSED(0)) + 2);
		assert_int_equal(u, used_seen[0] + 1);
		uint8_t *e = fg_host(&fg, QUSED(0)) + 4 + 8u * (used_seen[0] % QS);
		vsock_hdr_decode(fg_host(&fg, RXBUF(ld32(e))), &r);
		used_seen[0]++;
		assert_int_equal(r.op, VSOCK_OP_RST);
		assert_int_equal(r.src_cid, 77);
		assert_int_equal(r.dst_cid, CID);
	}
	/* len beyond the chain: dropped */
	h = hdr(VSOCK_OP_RW, 100);
	vsock_hdr_encode(&h, fg_host(&fg, TXHDR));
	desc(1, 0, TXHDR, VSOCK_HDR_SIZE, VIRTQ_DESC_F_NEXT, 1);
	desc(1, 1, TXDATA, 50, 0, 0);
	post(1, 0);
	(void)virtio_mmio_notify(&dev.mmio, VSOCK_TXQ);
	rx_none();
	assert_int_equal(dev.stats.verdict[VSOCK_PKT_DROP_LEN], 1);
	/* header split over descriptors, short: dropped */
	desc(1, 0, TXHDR, 20, VIRTQ_DESC_F_NEXT, 1);
	desc(1, 1, TXHDR + 20, 20, 0, 0);
	post(1, 0);
	(void)virtio_mmio_notify(&dev.mmio, VSOCK_TXQ);
	assert_int_equal(dev.stats.verdict[VSOCK_PKT_DROP_SHORT], 1);
	/* header split over descriptors, complete: fine (REQUEST) */
	h = hdr(VSOCK_OP_REQUEST, 0);
	vsock_hdr_encode(&h, fg_host(&fg, TXHDR));
	desc(1, 0, TXHDR, 20, VIRTQ_DESC_F_NEXT, 1);
	desc(1, 1, TXHDR + 20, 24, 0, 0);
	post(1, 0);
	(void)virtio_mmio_notify(&dev.mmio, VSOCK_TXQ);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RESPONSE);
	/* unknown op on the live connection: RST and gone */
	h = hdr(12, 0);
	tx_full(&h, NULL, 0);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	assert_int_equal(dev.nconns, 0);
	/* wrong type: RST */
	h = hdr(VSOCK_OP_REQUEST, 0);
	h.type = 2;
	tx_full(&h, NULL, 0);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	assert_int_equal(dev.nconns, 0);
	/* RST for nothing: nothing */
	tx(VSOCK_OP_RST, 5, 6, 0);
	rx_none();
	/* a tx chain with a writable descriptor: dropped, still returned */
	h = hdr(VSOCK_OP_REQUEST, 0);
	vsock_hdr_encode(&h, fg_host(&fg, TXHDR));
	desc(1, 0, TXHDR, VSOCK_HDR_SIZE, VIRTQ_DESC_F_NEXT, 1);
	desc(1, 1, TXDATA, 8, VIRTQ_DESC_F_WRITE, 0);
	post(1, 0);
	(void)virtio_mmio_notify(&dev.mmio, VSOCK_TXQ);
	rx_none();
	assert_int_equal(ld16(fg_host(&fg, QUSED(1)) + 2), avail[1]);
	assert_int_equal(dev.mmio.status, 0xf); /* none of this breaks the device */
	teardown_dev();
}

static void test_credit_violation_and_flush(void **state)
{
	(void)state;
	setup_dev(4); /* buf_alloc = 256 KiB */
	assert_int_equal(dev.buf_alloc, VSOCK_CONN_BUF_START);
	rx_give(8);
	struct vsock_conn *c = establish();
	static uint8_t chunk[VSOCK_MAX_PKT];
	fb.sink_cap = 1000; /* host reads 1000 bytes, then blocks */
	uint32_t sent = 0;
	for (unsigned int i = 0; i < 4; i++) {
		memset(chunk, 'a' + i, sizeof(chunk));
		tx_rw(1000, 52, chunk, sizeof(chunk));
		sent += sizeof(chunk);
	}
	assert_int_equal(fb.sink_len, 1000);
	assert_int_equal(c->tx_cnt - c->fwd_cnt, sent - 1000);
	assert_int_equal(dev.buffered, sent - 1000);
	assert_true(fb.wr);
	/* the guest was told fwd_cnt 1000 only if its view ran low; it may send exactly the rest */
	uint32_t view = vsock_credit(c->buf_alloc, c->fwd_cnt_sent, c->tx_cnt);
	uint32_t real = vsock_credit(c->buf_alloc, c->fwd_cnt, c->tx_cnt);
	assert_true(view <= real);
	assert_int_equal(real, 1000);
	memset(chunk, 'z', 1001);
	tx_rw(1000, 52, chunk, 1001); /* one byte past the credit */
	assert_int_equal(dev.stats.credit_violations, 1);
	struct vsock_hdr h;
	bool rst = false;
	while (rx_take(&h, NULL))
		rst = rst || h.op == VSOCK_OP_RST;
	assert_true(rst);
	assert_int_equal(dev.nconns, 0);
	assert_int_equal(dev.buffered, 0);
	teardown_dev();
}

static void test_writable_flush_in_order(void **state)
{
	(void)state;
	setup_dev(4);
	rx_give(8);
	struct vsock_conn *c = establish();
	static uint8_t chunk[VSOCK_MAX_PKT];
	fb.sink_cap = 10;
	for (unsigned int i = 0; i < 3; i++) {
		for (unsigned int k = 0; k < sizeof(chunk); k++)
			chunk[k] = (uint8_t)(i * 7 + k);
		tx_rw(1000, 52, chunk, sizeof(chunk));
	}
	assert_true(fb.wr);
	fb.sink_cap = sizeof(fb.sink);
	vsock_dev_writable(&dev, c);
	assert_int_equal(fb.sink_len, 3 * sizeof(chunk));
	for (unsigned int i = 0; i < 3; i++)
		for (unsigned int k = 0; k < sizeof(chunk); k += 997)
			assert_int_equal(fb.sink[i * sizeof(chunk) + k], (uint8_t)(i * 7 + k));
	assert_false(fb.wr);
	assert_null(c->buf); /* the ring is freed once empty */
	assert_int_equal(dev.buffered, 0);
	/* the guest's view ran low: a CREDIT_UPDATE carrying the new fwd_cnt came */
	struct vsock_hdr h;
	bool upd = false;
	while (rx_take(&h, NULL))
		if (h.op == VSOCK_OP_CREDIT_UPDATE && h.fwd_cnt == 3 * sizeof(chunk))
			upd = true;
	assert_true(upd);
	assert_int_equal(c->fwd_cnt_sent, c->fwd_cnt);
	teardown_dev();
}

static void test_counters_wrap(void **state)
{
	(void)state;
	setup_dev(4);
	rx_give(16);
	struct vsock_conn *c = establish();
	/* Put every counter just below 2^32 and push data through both ways. */
	c->tx_cnt = c->fwd_cnt = c->fwd_cnt_sent = 0xfffffff0u;
	c->rx_cnt = 0xfffffff8u;
	struct vsock_hdr h = hdr(VSOCK_OP_CREDIT_UPDATE, 0);
	h.src_port = 1000;
	h.dst_port = 52;
	h.buf_alloc = 100;
	h.fwd_cnt = 0xfffffff8u; /* the guest consumed everything */
	tx_full(&h, NULL, 0);
	assert_int_equal(vsock_credit(c->peer_buf_alloc, c->peer_fwd_cnt, c->rx_cnt), 100);
	memset(fb.src, 'q', 300);
	fb.src_len = 300;
	vsock_dev_readable(&dev, c);
	uint32_t got = 0;
	struct vsock_hdr r;
	while (rx_take(&r, NULL))
		if (r.op == VSOCK_OP_RW)
			got += r.len;
	assert_int_equal(got, 100); /* exactly the credit, across the wrap */
	assert_int_equal(c->rx_cnt, 0xfffffff8u + 100u);
	assert_false(fb.rd);
	/* credit 0: a CREDIT_REQUEST was sent once */
	vsock_dev_readable(&dev, c);
	/* guest -> host across the wrap */
	static uint8_t d[64];
	memset(d, 'w', sizeof(d));
	tx_rw(1000, 52, d, sizeof(d));
	assert_int_equal(c->fwd_cnt, 0x30u);
	assert_int_equal(c->tx_cnt, 0x30u);
	teardown_dev();
}

static void test_credit_request_and_zero_buf_alloc(void **state)
{
	(void)state;
	setup_dev(16);
	rx_give(8);
	struct vsock_hdr h = hdr(VSOCK_OP_REQUEST, 0);
	h.buf_alloc = 0; /* the guest gives no credit at all */
	tx_full(&h, NULL, 0);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RESPONSE);
	struct vsock_conn *c = fb.last;
	assert_false(fb.rd); /* nothing is read from the host without credit */
	memset(fb.src, 'x', 10);
	fb.src_len = 10;
	vsock_dev_readable(&dev, c); /* spurious: no data moves */
	assert_int_equal(fb.src_off, 0);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_CREDIT_REQUEST);
	vsock_dev_readable(&dev, c);
	rx_none(); /* asked once only */
	tx(VSOCK_OP_CREDIT_UPDATE, 1000, 52, 0); /* hdr() gives 64 KiB */
	assert_true(fb.rd);
	vsock_dev_readable(&dev, c);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RW);
	/* the guest asks for our credit */
	tx(VSOCK_OP_CREDIT_REQUEST, 1000, 52, 0);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_CREDIT_UPDATE);
	teardown_dev();
}

static void test_rx_starved(void **state)
{
	(void)state;
	setup_dev(16);
	/* no rx buffers: the RESPONSE waits */
	tx(VSOCK_OP_REQUEST, 1000, 52, 0);
	rx_none();
	struct vsock_conn *c = fb.last;
	memset(fb.src, 'd', 5000);
	fb.src_len = 5000;
	vsock_dev_readable(&dev, c);
	rx_none();
	assert_int_equal(fb.src_off, 0);
	assert_false(fb.rd); /* parked until buffers come */
	rx_give(4);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RESPONSE);
	struct vsock_hdr h;
	uint32_t got = 0;
	while (rx_take(&h, NULL)) {
		assert_int_equal(h.op, VSOCK_OP_RW);
		got += h.len;
	}
	assert_int_equal(got, 5000);
	/* an RST for a refused connect waits for a buffer too */
	fb.connect_rc = -ECONNREFUSED;
	for (uint32_t p = 0; p < VSOCK_RST_SPARE + 10; p++)
		tx(VSOCK_OP_REQUEST, 2000 + p, 53, 0);
	assert_true(dev.stats.rst_dropped >= 9);
	assert_int_equal(dev.rst_len, VSOCK_RST_SPARE);
	unsigned int n = 0;
	while (rx_take(&h, NULL))
		n++;
	for (unsigned int k = 0; k < 64 + VSOCK_RST_SPARE && dev.rst_len; k++) {
		rx_give(8);
		while (rx_take(&h, NULL)) {
			assert_int_equal(h.op, VSOCK_OP_RST);
			n++;
		}
	}
	assert_int_equal(dev.rst_len, 0);
	assert_int_equal(n + dev.stats.rst_dropped, VSOCK_RST_SPARE + 10);
	teardown_dev();
}

/* Park c: the host has data but the guest has no rx buffer (all taken). */
static void park_one(struct vsock_conn *c)
{
	memset(fb.src, 'p', 100);
	fb.src_len = 100;
	fb.src_off = 0;
	vsock_dev_readable(&dev, c);
	assert_true(c->rx_parked);
	assert_int_equal(fb.src_off, 0);
	rx_none();
}

/* Whatever a parked connection's pump queues (RST on a host error, SHUTDOWN at host EOF,
 * CREDIT_REQUEST when credit runs out, CREDIT_UPDATE owed from the tx side) reaches the guest in
 * the same rx kick that freed buffers, never waiting for something else to kick the queue. */
static void test_parked_pump_flushes_ctl(void **state)
{
	(void)state;
	setup_dev(16);
	rx_give(1);
	struct vsock_conn *c = establish(); /* the RESPONSE took the only buffer */
	/* RST: the host socket fails while the connection waits for buffers */
	park_one(c);
	fb.recv_err = -ECONNRESET;
	rx_give(1);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	rx_none();
	assert_int_equal(fb.releases, 1);
	assert_int_equal(dev.nconns, 0);
	assert_int_equal(dev.rst_len, 0);
	assert_int_equal(dev.park_head, -1);
	fb.recv_err = 0;

	/* RST behind another parked connection's data: both delivered in one kick */
	fb.connects = 0;
	rx_give(2);
	c = establish();
	struct vsock_hdr h = hdr(VSOCK_OP_REQUEST, 0);
	h.src_port = 1001;
	tx_full(&h, NULL, 0);
	assert_int_equal(rx_expect(52, 1001), VSOCK_OP_RESPONSE);
	struct vsock_conn *c2 = fb.last;
	park_one(c);
	park_one(c2); /* c2 behind c */
	fb.recv_err = -EPIPE;
	rx_give(2);
	struct vsock_hdr r;
	uint32_t ports = 0;
	for (int k = 0; k < 2; k++) {
		assert_true(rx_take(&r, NULL));
		assert_int_equal(r.op, VSOCK_OP_RST);
		assert_int_equal(r.src_port, 52);
		ports |= 1u << (r.dst_port - 1000); /* park order rotates: either first */
	}
	assert_int_equal(ports, 3);
	rx_none();
	assert_int_equal(dev.nconns, 0);
	assert_int_equal(dev.rst_len, 0);
	fb.recv_err = 0;

	/* SHUTDOWN: host EOF found while parked */
	fb.connects = 0;
	rx_give(1);
	c = establish();
	park_one(c);
	fb.src_off = fb.src_len; /* data gone, EOF */
	fb.src_eof = true;
	rx_give(1);
	assert_true(rx_take(&r, NULL));
	assert_int_equal(r.op, VSOCK_OP_SHUTDOWN);
	assert_int_equal(r.flags, VSOCK_SHUTDOWN_SEND);
	rx_none();
	fb.src_eof = false;
	tx(VSOCK_OP_RST, 1000, 52, 0);
	assert_int_equal(dev.nconns, 0);

	/* CREDIT_REQUEST: the parked data uses up the guest's credit, one buffer only */
	fb.connects = 0;
	rx_give(1);
	h = hdr(VSOCK_OP_REQUEST, 0);
	h.buf_alloc = 60;
	tx_full(&h, NULL, 0);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RESPONSE);
	c = fb.last;
	park_one(c);
	rx_give(1);
	assert_true(rx_take(&r, NULL));
	assert_int_equal(r.op, VSOCK_OP_RW);
	assert_int_equal(r.len, 60);
	rx_none(); /* no buffer left for the request yet */
	assert_int_equal(c->ctl, VSOCK_CTL_CREDIT_REQUEST);
	rx_give(1);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_CREDIT_REQUEST);
	rx_none();
	/* with buffers enough, RW and CREDIT_REQUEST in one kick */
	struct vsock_hdr u = hdr(VSOCK_OP_CREDIT_UPDATE, 0);
	u.buf_alloc = 20;
	u.fwd_cnt = 60;
	tx_full(&u, NULL, 0); /* 20 more bytes of credit */
	vsock_dev_readable(&dev, c);
	assert_true(c->rx_parked);
	rx_give(3);
	assert_true(rx_take(&r, NULL));
	assert_int_equal(r.op, VSOCK_OP_RW);
	assert_int_equal(r.len, 20);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_CREDIT_REQUEST);
	rx_none();
	assert_false(c->rx_parked);
	assert_int_equal(c->ctl, 0);
	tx(VSOCK_OP_RST, 1000, 52, 0);

	/* CREDIT_UPDATE owed (the guest asked) while parked: sent before the data */
	fb.connects = 0;
	c = establish(); /* the last buffer */
	park_one(c);
	tx(VSOCK_OP_CREDIT_REQUEST, 1000, 52, 0);
	rx_none();
	rx_give(1);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_CREDIT_UPDATE);
	rx_none();
	rx_give(4);
	assert_true(rx_take(&r, NULL));
	assert_int_equal(r.op, VSOCK_OP_RW);
	assert_int_equal(r.len, 100);
	rx_none();
	teardown_dev();
}

/* More parked connections than one pump's budget, buffers left when it runs out: the pump asks
 * for another run (backend kick) instead of leaving the rest parked until some later rx kick. */
static void test_parked_pump_budget(void **state)
{
	(void)state;
	enum { N = 300 };
	static struct vsock_conn *cs[N];
	setup_dev(N);
	for (uint32_t p = 0; p < N; p++) {
		rx_give(1);
		struct vsock_hdr h = hdr(VSOCK_OP_REQUEST, 0);
		h.src_port = 3000 + p;
		tx_full(&h, NULL, 0);
		assert_int_equal(rx_expect(52, 3000 + p), VSOCK_OP_RESPONSE);
		cs[p] = fb.last;
	}
	memset(fb.src, 'q', 10);
	fb.src_len = 10;
	for (unsigned int p = 0; p < N; p++)
		vsock_dev_readable(&dev, cs[p]); /* no buffer: every one parks */
	for (unsigned int p = 0; p < N; p++)
		assert_true(cs[p]->rx_parked);
	fb.src_off = fb.src_len; /* the data went elsewhere: reads find nothing */
	unsigned int kicks = fb.kicks;
	rx_give(1);
	assert_true(fb.kicks > kicks);
	assert_true(dev.park_head >= 0);
	vsock_dev_run(&dev); /* the loop answers the kick */
	assert_int_equal(dev.park_head, -1);
	for (unsigned int p = 0; p < N; p++)
		assert_false(cs[p]->rx_parked);
	rx_none();
	teardown_dev();
}

static void test_shutdown_flows(void **state)
{
	(void)state;
	setup_dev(4);
	rx_give(8);
	struct vsock_conn *c = establish();
	/* SEND only: the host write side is shut once the data is out */
	fb.sink_cap = 2;
	tx_rw(1000, 52, "abcd", 4);
	tx(VSOCK_OP_SHUTDOWN, 1000, 52, VSOCK_SHUTDOWN_SEND);
	assert_int_equal(fb.shut_wrs, 0);
	fb.sink_cap = sizeof(fb.sink);
	vsock_dev_writable(&dev, c);
	assert_int_equal(fb.shut_wrs, 1);
	assert_int_equal(fb.sink_len, 4);
	/* RW after SHUTDOWN(SEND): protocol error */
	tx_rw(1000, 52, "e", 1);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	assert_int_equal(dev.stats.proto_errors, 1);
	assert_int_equal(dev.nconns, 0);

	/* both with data waiting: CLOSING until drained, then RST */
	memset(&fb.sink, 0, 16);
	fb.sink_len = 0;
	fb.connects = 0;
	c = establish();
	fb.sink_cap = 1;
	tx_rw(1000, 52, "xyz", 3);
	tx(VSOCK_OP_SHUTDOWN, 1000, 52, VSOCK_SHUTDOWN_ALL);
	assert_int_equal(c->state, VSOCK_CLOSING);
	assert_int_equal(dev.ntimed, 1);
	rx_none();
	fb.sink_cap = 3;
	vsock_dev_writable(&dev, c);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	assert_int_equal(dev.nconns, 0);
	assert_int_equal(dev.ntimed, 0);

	/* both with a host that never reads: timeout, RST */
	fb.sink_len = 0;
	fb.sink_cap = 0;
	fb.connects = 0;
	c = establish();
	tx_rw(1000, 52, "xyz", 3);
	tx(VSOCK_OP_SHUTDOWN, 1000, 52, VSOCK_SHUTDOWN_ALL);
	vsock_dev_tick(&dev, vsock_now_ms());
	rx_none();
	vsock_dev_tick(&dev, vsock_now_ms() + VSOCK_TIMEOUT_MS + 1);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	assert_int_equal(dev.stats.timeouts, 1);
	assert_int_equal(dev.nconns, 0);
	assert_int_equal(dev.buffered, 0);
	teardown_dev();
}

static void test_host_initiated(void **state)
{
	(void)state;
	setup_dev(16);
	rx_give(8);
	struct vsock_conn *c = NULL;
	assert_int_equal(vsock_dev_host_connect(&dev, 52, &fb, &c), 0);
	assert_non_null(c);
	assert_true(c->host_port >= (1u << 30) && c->host_port < (1u << 31));
	struct vsock_hdr h;
	assert_true(rx_take(&h, NULL));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_int_equal(h.dst_port, 52);
	assert_int_equal(h.src_port, c->host_port);
	uint32_t hp = c->host_port;
	/* the guest accepts */
	tx(VSOCK_OP_RESPONSE, 52, hp, 0);
	assert_int_equal(fb.establisheds, 1);
	assert_int_equal(c->state, VSOCK_ESTABLISHED);
	assert_int_equal(dev.ntimed, 0);
	tx_rw(52, hp, "hi", 2);
	assert_int_equal(fb.sink_len, 2);
	/* a second one: distinct port; the guest refuses with RST */
	struct vsock_conn *c2 = NULL;
	assert_int_equal(vsock_dev_host_connect(&dev, 52, &fb, &c2), 0);
	assert_int_not_equal(c2->host_port, hp);
	assert_true(rx_take(&h, NULL));
	tx(VSOCK_OP_RST, 52, c2->host_port, 0);
	assert_int_equal(fb.releases, 1);
	rx_none();
	/* a third: never answered, timeout */
	assert_int_equal(vsock_dev_host_connect(&dev, 99, &fb, &c2), 0);
	assert_true(rx_take(&h, NULL));
	vsock_dev_tick(&dev, vsock_now_ms() + VSOCK_TIMEOUT_MS + 1);
	assert_int_equal(fb.releases, 2);
	assert_int_equal(rx_expect(h.src_port, 99), VSOCK_OP_RST);
	/* a fourth: the host client is gone by the time the guest accepts */
	fb.established_rc = -EIO;
	assert_int_equal(vsock_dev_host_connect(&dev, 98, &fb, &c2), 0);
	assert_true(rx_take(&h, NULL));
	tx(VSOCK_OP_RESPONSE, 98, h.src_port, 0);
	assert_int_equal(rx_expect(h.src_port, 98), VSOCK_OP_RST);
	assert_int_equal(fb.releases, 3);
	/* the first still flows */
	assert_int_equal(dev.nconns, 1);
	tx_rw(52, hp, "yo", 2);
	assert_int_equal(fb.sink_len, 4);
	teardown_dev();
}

/* ---- credit pool ---------------------------------------------------------------------------- */

/* The pool's invariants: sum of buf_alloc over live connections == pool <= VSOCK_TOTAL_BUF, with every
 * free slot's floor still reserved; each connection within [floor, VSOCK_CONN_BUF_MAX] and holding at
 * most its buf_alloc. */
static void pool_check(void)
{
	uint64_t sum = 0, held = 0;
	unsigned int live = 0;
	for (unsigned int i = 0; i < dev.max_conns; i++) {
		const struct vsock_conn *c = &dev.conns[i];
		if (c->state == VSOCK_FREE)
			continue;
		live++;
		sum += c->buf_alloc;
		held += c->tx_cnt - c->fwd_cnt;
		assert_true(c->buf_alloc >= dev.buf_floor);
		assert_true(c->buf_alloc <= VSOCK_CONN_BUF_MAX);
		assert_true(c->tx_cnt - c->fwd_cnt <= c->buf_alloc);
	}
	assert_int_equal(live, dev.nconns);
	assert_int_equal(sum, dev.pool);
	assert_int_equal(held, dev.buffered);
	assert_true(dev.pool + (uint64_t)(dev.max_conns - dev.nconns) * dev.buf_floor <= VSOCK_TOTAL_BUF);
}

/* Last CREDIT_UPDATE among the packets waiting for the guest (buf_alloc 0 if none); then the guest
 * tops its rx ring up to 8 buffers again. */
static struct vsock_hdr rx_last_update(void)
{
	struct vsock_hdr h, last = { 0 };
	while (rx_take(&h, NULL))
		if (h.op == VSOCK_OP_CREDIT_UPDATE)
			last = h;
	uint16_t give = (uint16_t)(8u - (uint16_t)(avail[0] - used_seen[0]));
	if (give > 0 && give <= 8)
		rx_give(give);
	return last;
}

static void test_credit_grows(void **state)
{
	(void)state;
	setup_dev(VSOCK_DEFAULT_MAX_CONNS);
	assert_int_equal(dev.buf_alloc, 64u * 1024u); /* 64 MiB / 1024 */
	assert_int_equal(dev.buf_floor, 32u * 1024u);
	guest_ba = 0xffffffffu; /* the guest would take any window: VSOCK_CONN_BUF_MAX bounds it */
	rx_give(8);
	struct vsock_conn *c = establish();
	assert_int_equal(c->buf_alloc, 64u * 1024u);
	assert_int_equal(dev.pool, 64u * 1024u);
	static uint8_t chunk[VSOCK_MAX_PKT];
	memset(chunk, 'g', sizeof(chunk));
	/* The host keeps up; the guest spends its whole credit at once: x4 and a CREDIT_UPDATE saying so. */
	tx_rw(1000, 52, chunk, sizeof(chunk));
	assert_int_equal(c->buf_alloc, 256u * 1024u);
	struct vsock_hdr u = rx_last_update();
	assert_int_equal(u.op, VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(u.buf_alloc, 256u * 1024u);
	assert_int_equal(u.fwd_cnt, sizeof(chunk));
	assert_int_equal(dev.pool, 256u * 1024u);
	/* Busy on: 1 MiB, and no further. */
	uint32_t last = c->buf_alloc;
	for (unsigned int i = 0; i < 40; i++) {
		fb.sink_len = 0;
		tx_rw(1000, 52, chunk, sizeof(chunk));
		u = rx_last_update();
		if (u.op == VSOCK_OP_CREDIT_UPDATE) {
			assert_true(u.buf_alloc >= last); /* never shrinks */
			last = u.buf_alloc;
		}
		pool_check();
	}
	assert_int_equal(c->buf_alloc, VSOCK_CONN_BUF_MAX);
	assert_int_equal(last, VSOCK_CONN_BUF_MAX);
	assert_int_equal(dev.stats.credit_grows, 2);
	/* A hostile guest asking again and again gets no more. */
	for (unsigned int i = 0; i < 10; i++) {
		tx(VSOCK_OP_CREDIT_REQUEST, 1000, 52, 0);
		assert_int_equal(rx_last_update().buf_alloc, VSOCK_CONN_BUF_MAX);
	}
	assert_int_equal(c->buf_alloc, VSOCK_CONN_BUF_MAX);
	/* The grown credit is real: with the host blocked the guest may fill exactly 1 MiB, not a byte more. */
	fb.sink_len = 0;
	fb.sink_cap = 0;
	uint32_t room = vsock_credit(c->buf_alloc, c->fwd_cnt, c->tx_cnt);
	assert_int_equal(room, VSOCK_CONN_BUF_MAX);
	for (uint32_t k = 0; k < room / sizeof(chunk); k++)
		tx_rw(1000, 52, chunk, sizeof(chunk));
	assert_int_equal(dev.buffered, VSOCK_CONN_BUF_MAX);
	assert_int_equal(dev.stats.credit_violations, 0);
	pool_check();
	tx_rw(1000, 52, chunk, 1);
	assert_int_equal(dev.stats.credit_violations, 1);
	/* Released with the connection. */
	assert_int_equal(dev.nconns, 0);
	assert_int_equal(dev.pool, 0);
	assert_int_equal(dev.buffered, 0);
	teardown_dev();
}

static void test_credit_no_grow_when_host_slow(void **state)
{
	(void)state;
	setup_dev(VSOCK_DEFAULT_MAX_CONNS);
	guest_ba = VSOCK_CONN_BUF_MAX;
	rx_give(8);
	struct vsock_conn *c = establish();
	static uint8_t chunk[VSOCK_MAX_PKT];
	memset(chunk, 's', sizeof(chunk));
	fb.sink_cap = 100; /* the host reads 100 bytes, then nothing */
	tx_rw(1000, 52, chunk, sizeof(chunk));
	assert_int_equal(c->buf_alloc, 64u * 1024u); /* a bigger window would only hold more memory */
	tx(VSOCK_OP_CREDIT_REQUEST, 1000, 52, 0);
	assert_int_equal(c->buf_alloc, 64u * 1024u);
	assert_int_equal(rx_last_update().buf_alloc, 64u * 1024u);
	assert_int_equal(dev.stats.credit_grows, 0);
	/* Once the host catches up, it does. */
	fb.sink_cap = sizeof(fb.sink);
	vsock_dev_writable(&dev, c);
	assert_int_equal(dev.buffered, 0);
	assert_int_equal(c->buf_alloc, 256u * 1024u);
	assert_int_equal(rx_last_update().buf_alloc, 256u * 1024u);
	/* A connection the guest shut for sending does not grow any more. */
	tx(VSOCK_OP_SHUTDOWN, 1000, 52, VSOCK_SHUTDOWN_SEND);
	tx(VSOCK_OP_CREDIT_REQUEST, 1000, 52, 0);
	assert_int_equal(c->buf_alloc, 256u * 1024u);
	assert_int_equal(dev.stats.credit_grows, 1);
	teardown_dev();
}

/* Every slot open, each guest connection asking for credit as soon as it is up (hostile): the pool
 * is never exceeded, the last connections still get their floor, and an RST gives credit back. */
static void test_credit_pool_bound(void **state)
{
	(void)state;
	setup_dev(VSOCK_DEFAULT_MAX_CONNS);
	guest_ba = 0x7fffffffu;
	struct vsock_conn *first = NULL, *lastc = NULL;
	for (uint32_t i = 0; i < VSOCK_DEFAULT_MAX_CONNS; i++) {
		rx_give(4);
		tx(VSOCK_OP_REQUEST, 2000 + i, 52, 0);
		lastc = fb.last;
		if (!first)
			first = lastc;
		for (unsigned int k = 0; k < 3; k++)
			tx(VSOCK_OP_CREDIT_REQUEST, 2000 + i, 52, 0);
		struct vsock_hdr h;
		uint32_t seen = 0;
		while (rx_take(&h, NULL)) {
			assert_int_equal(h.dst_port, 2000 + i);
			assert_true(h.op == VSOCK_OP_RESPONSE || h.op == VSOCK_OP_CREDIT_UPDATE);
			assert_true(h.buf_alloc >= seen);
			seen = h.buf_alloc;
		}
		assert_int_equal(seen, lastc->buf_alloc);
		if (i % 64 == 0)
			pool_check();
	}
	pool_check();
	assert_int_equal(dev.nconns, VSOCK_DEFAULT_MAX_CONNS);
	assert_int_equal(first->buf_alloc, VSOCK_CONN_BUF_MAX);
	assert_int_equal(lastc->buf_alloc, dev.buf_floor); /* the pool ran dry: the floor it kept */
	assert_true(dev.pool <= VSOCK_TOTAL_BUF);
	assert_true(dev.pool > VSOCK_TOTAL_BUF - VSOCK_CONN_BUF_MAX); /* and it was used */
	/* The table is full: one more is refused, the pool untouched. */
	uint64_t pool = dev.pool;
	rx_give(1);
	tx(VSOCK_OP_REQUEST, 9999, 52, 0);
	assert_int_equal(rx_expect(52, 9999), VSOCK_OP_RST);
	assert_int_equal(dev.pool, pool);
	/* The guest resets the first (grown) connection: its credit goes back and a busy one can grow. */
	tx(VSOCK_OP_RST, 2000, 52, 0);
	assert_int_equal(dev.pool, pool - VSOCK_CONN_BUF_MAX);
	pool_check();
	rx_give(1);
	tx(VSOCK_OP_CREDIT_REQUEST, 2000 + VSOCK_DEFAULT_MAX_CONNS - 1, 52, 0);
	assert_int_equal(rx_last_update().buf_alloc, 4u * dev.buf_floor);
	assert_int_equal(lastc->buf_alloc, 4u * dev.buf_floor);
	pool_check();
	/* The host hangs up on everything: all credit is back. */
	for (unsigned int i = 0; i < dev.max_conns; i++)
		if (dev.conns[i].state != VSOCK_FREE)
			vsock_dev_host_reset(&dev, &dev.conns[i]);
	assert_int_equal(dev.nconns, 0);
	assert_int_equal(dev.pool, 0);
	pool_check();
	teardown_dev();
}

/* Growth while the ring holds data that wraps around its end, with the stream counters wrapping at
 * 2^32: nothing is lost or reordered, and the guest's credit stays consistent. */
static uint32_t wrap_checked; /* stream bytes the host got and the test checked */

static uint8_t wrap_byte(uint32_t k)
{
	return (uint8_t)(k * 13u + (k >> 9));
}

static void wrap_check_sink(void)
{
	for (size_t k = 0; k < fb.sink_len; k++, wrap_checked++)
		if (fb.sink[k] != wrap_byte(wrap_checked))
			fail_msg("byte %u differs", wrap_checked);
	fb.sink_len = 0;
}

/* The guest sends len stream bytes (packets of up to 50000) while the host takes nothing. */
static uint32_t wrap_off;
static void wrap_send(uint32_t len)
{
	static uint8_t chunk[50000];
	fb.sink_cap = 0;
	while (len > 0) {
		uint32_t p = len < sizeof(chunk) ? len : (uint32_t)sizeof(chunk);
		for (uint32_t k = 0; k < p; k++)
			chunk[k] = wrap_byte(wrap_off + k);
		tx_rw(1000, 52, chunk, p);
		wrap_off += p;
		len -= p;
	}
}

/* The host takes up to len bytes of what the device holds. */
static void wrap_take(struct vsock_conn *c, uint32_t len)
{
	fb.sink_cap = len;
	vsock_dev_writable(&dev, c);
	wrap_check_sink();
}

static void test_credit_grow_ring_wrap(void **state)
{
	(void)state;
	setup_dev(4); /* starts at 256 KiB */
	guest_ba = VSOCK_CONN_BUF_MAX;
	rx_give(8);
	struct vsock_conn *c = establish();
	const uint32_t base = 0xfffd0000u; /* the counters wrap 192 KiB into the stream */
	c->tx_cnt = c->fwd_cnt = c->fwd_cnt_sent = base;
	wrap_off = wrap_checked = 0;
	wrap_send(200000);
	assert_int_equal(dev.buffered, 200000);
	/* The host takes half: the guest hears of it, but the connection does not grow (host behind). */
	wrap_take(c, 100000);
	assert_int_equal(rx_last_update().fwd_cnt, base + 100000);
	assert_int_equal(c->buf_alloc, 256u * 1024u);
	/* The ring's data now runs past its end: [100000, 262144) + [0, 17856). */
	wrap_send(80000);
	assert_int_equal(c->buf_head, 100000);
	/* The host takes 120000: 60000 left in [220000, 262144) + [0, 17856), the guest's view is low,
	 * the host keeps up: x4, the data moved to the start of the new ring. */
	wrap_take(c, 120000);
	assert_int_equal(c->buf_alloc, VSOCK_CONN_BUF_MAX);
	assert_int_equal(c->buf_head, 0);
	assert_int_equal(dev.buffered, 60000);
	struct vsock_hdr u = rx_last_update();
	assert_int_equal(u.buf_alloc, VSOCK_CONN_BUF_MAX);
	assert_int_equal(u.fwd_cnt, base + 220000u); /* past 2^32 */
	pool_check();
	/* The whole new credit is usable and comes out in order. */
	uint32_t room = vsock_credit(c->buf_alloc, c->fwd_cnt, c->tx_cnt);
	assert_int_equal(room, VSOCK_CONN_BUF_MAX - 60000);
	wrap_send(room);
	assert_int_equal(dev.buffered, VSOCK_CONN_BUF_MAX);
	pool_check();
	while (dev.buffered > 0)
		wrap_take(c, 300000);
	assert_int_equal(wrap_checked, wrap_off);
	assert_int_equal(c->fwd_cnt, base + wrap_off);
	assert_int_equal(dev.stats.credit_violations, 0);
	assert_int_equal(dev.stats.credit_grows, 1);
	teardown_dev();
}

/* A sender that behaves like Linux 6.1: credit from the last header it got, capped at its own
 * buf_alloc (own), min(ours, own) - (tx_cnt - fwd_cnt), packets of up to 64 KiB, waits when that is
 * 0, against a host that takes random amounts: every byte arrives in order, our window grows to
 * min(own, 1 MiB) (never past what the guest can use) and the sender never waits forever (it did
 * when the update threshold ignored the guest's cap). */
static void linux_like_sender(uint32_t own, uint32_t want_alloc)
{
	setup_dev(VSOCK_DEFAULT_MAX_CONNS);
	guest_ba = own;
	rx_give(8);
	struct vsock_conn *c = establish();
	static uint8_t chunk[VSOCK_MAX_PKT];
	uint32_t g_tx = 0, g_alloc = dev.buf_alloc, g_fwd = 0, rng = 12345, idle = 0;
	const uint32_t total = 24u << 20;
	wrap_checked = 0;
	while (wrap_checked < total) {
		uint32_t credit = vsock_credit(g_alloc < own ? g_alloc : own, g_fwd, g_tx);
		uint32_t p = credit < sizeof(chunk) ? credit : (uint32_t)sizeof(chunk);
		if (p > total - g_tx)
			p = total - g_tx;
		if (p > 0) {
			for (uint32_t k = 0; k < p; k++)
				chunk[k] = wrap_byte(g_tx + k);
			fb.sink_cap = 0;
			tx_rw(1000, 52, chunk, p);
			g_tx += p;
		}
		rng = rng * 1103515245u + 12345u;
		fb.sink_cap = (rng >> 8) % (300u * 1024u);
		if (fb.wr)
			vsock_dev_writable(&dev, c);
		uint32_t before = wrap_checked;
		wrap_check_sink();
		struct vsock_hdr h;
		while (rx_take(&h, NULL)) {
			g_alloc = h.buf_alloc;
			g_fwd = h.fwd_cnt;
		}
		uint16_t give = (uint16_t)(8u - (uint16_t)(avail[0] - used_seen[0]));
		if (give > 0 && give <= 8)
			rx_give(give);
		idle = (p == 0 && wrap_checked == before) ? idle + 1 : 0;
		if (idle > 50)
			fail_msg("stalled: guest sent %u, host got %u, guest credit %u", g_tx, wrap_checked, credit);
		pool_check();
	}
	assert_int_equal(c->buf_alloc, want_alloc);
	assert_int_equal(g_alloc, want_alloc);
	assert_int_equal(dev.stats.credit_violations, 0);
	teardown_dev();
}

static void test_credit_linux_like_sender(void **state)
{
	(void)state;
	linux_like_sender(256u * 1024u, 256u * 1024u);      /* Linux's default */
	linux_like_sender(2u << 20, VSOCK_CONN_BUF_MAX);    /* SO_VM_SOCKETS_BUFFER_SIZE raised */
	linux_like_sender(16u * 1024u, 64u * 1024u);        /* smaller than our start: no growth */
	linux_like_sender(100000u, 100000u);                /* grows to exactly what it can use */
}

static void test_host_errors(void **state)
{
	(void)state;
	setup_dev(16);
	rx_give(8);
	struct vsock_conn *c = establish();
	fb.recv_err = -ECONNRESET;
	vsock_dev_readable(&dev, c);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	assert_int_equal(fb.releases, 1);
	fb.recv_err = 0;
	fb.connects = 0;
	c = establish();
	fb.send_err = -EPIPE;
	tx_rw(1000, 52, "a", 1);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	assert_int_equal(fb.releases, 2);
	fb.send_err = 0;
	fb.connects = 0;
	c = establish();
	vsock_dev_host_reset(&dev, c);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RST);
	assert_int_equal(dev.stats.host_errors, 3);
	teardown_dev();
}

/* Each op in each state. Expected: connection kept, and the op of the reply (0: none). */
enum st { S_G2H, S_H2G, S_EST, S_CLOSING, S_N };
struct cell {
	bool alive;
	uint16_t reply;
};
static const struct cell table[S_N][8] = {
	/*            -       REQUEST               RESPONSE              RST          SHUTDOWN(SEND)        RW                    CREDIT_UPDATE         CREDIT_REQUEST */
	[S_G2H] = { { 0, 0 }, { 0, VSOCK_OP_RST }, { 0, VSOCK_OP_RST }, { 0, 0 }, { 0, VSOCK_OP_RST }, { 0, VSOCK_OP_RST }, { 0, VSOCK_OP_RST }, { 0, VSOCK_OP_RST } },
	[S_H2G] = { { 0, 0 }, { 0, VSOCK_OP_RST }, { 1, 0 },            { 0, 0 }, { 0, VSOCK_OP_RST }, { 0, VSOCK_OP_RST }, { 0, VSOCK_OP_RST }, { 0, VSOCK_OP_RST } },
	[S_EST] = { { 0, 0 }, { 0, VSOCK_OP_RST }, { 0, VSOCK_OP_RST }, { 0, 0 }, { 1, 0 },            { 1, 0 },            { 1, 0 },            { 1, VSOCK_OP_CREDIT_UPDATE } },
	[S_CLOSING] = { { 0, 0 }, { 0, VSOCK_OP_RST }, { 0, VSOCK_OP_RST }, { 0, 0 }, { 1, 0 },        { 0, VSOCK_OP_RST }, { 1, 0 },            { 1, VSOCK_OP_CREDIT_UPDATE } },
};

static void test_state_machine(void **state)
{
	(void)state;
	for (int s = 0; s < S_N; s++) {
		for (uint16_t op = VSOCK_OP_REQUEST; op <= VSOCK_OP_CREDIT_REQUEST; op++) {
			setup_dev(8);
			rx_give(8);
			uint32_t gport = 1000, hport = 52;
			struct vsock_conn *c = NULL;
			switch (s) {
			case S_G2H:
				fb.connect_rc = 0; /* in progress */
				tx(VSOCK_OP_REQUEST, gport, hport, 0);
				c = fb.last;
				assert_int_equal(c->state, VSOCK_CONNECTING_G2H);
				rx_none();
				break;
			case S_H2G:
				gport = 77;
				assert_int_equal(vsock_dev_host_connect(&dev, gport, &fb, &c), 0);
				hport = c->host_port;
				assert_int_equal(rx_expect(hport, gport), VSOCK_OP_REQUEST);
				break;
			case S_EST:
				c = establish();
				break;
			case S_CLOSING:
				c = establish();
				fb.sink_cap = 0;
				tx_rw(gport, hport, "z", 1);
				tx(VSOCK_OP_SHUTDOWN, gport, hport, VSOCK_SHUTDOWN_ALL);
				assert_int_equal(c->state, VSOCK_CLOSING);
				break;
			}
			if (op == VSOCK_OP_RW)
				tx_rw(gport, hport, "", 0);
			else
				tx(op, gport, hport, op == VSOCK_OP_SHUTDOWN ? VSOCK_SHUTDOWN_SEND : 0);
			const struct cell *e = &table[s][op];
			struct vsock_hdr h;
			bool got = rx_take(&h, NULL);
			if (e->reply) {
				assert_true(got);
				assert_int_equal(h.op, e->reply);
				assert_int_equal(h.src_port, hport);
				assert_int_equal(h.dst_port, gport);
			} else if (got) {
				print_error("state %d op %u: unexpected reply op %u\n", s, op, h.op);
				fail();
			}
			assert_int_equal(dev.nconns, e->alive ? 1u : 0u);
			if (!e->alive)
				assert_int_equal(fb.releases, (s == S_G2H || s == S_H2G || s == S_EST || s == S_CLOSING) ? 1u : 0u);
			teardown_dev();
		}
	}
}

static void test_g2h_async_connect(void **state)
{
	(void)state;
	setup_dev(8);
	rx_give(4);
	fb.connect_rc = 0;
	tx(VSOCK_OP_REQUEST, 1000, 52, 0);
	rx_none();
	vsock_dev_connected(&dev, fb.last);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RESPONSE);
	fb.connects = 0;
	tx(VSOCK_OP_REQUEST, 1001, 52, 0);
	vsock_dev_host_reset(&dev, fb.last);
	assert_int_equal(rx_expect(52, 1001), VSOCK_OP_RST);
	teardown_dev();
}

static void test_reset_releases_all(void **state)
{
	(void)state;
	setup_dev(8);
	rx_give(8);
	establish();
	struct vsock_conn *c;
	assert_int_equal(vsock_dev_host_connect(&dev, 5, &fb, &c), 0);
	assert_int_equal(dev.nconns, 2);
	w32(VIRTIO_MMIO_STATUS, 0); /* same thread: finished at once */
	assert_int_equal(dev.nconns, 0);
	assert_int_equal(fb.releases, 2);
	assert_int_equal(dev.ntimed, 0);
	/* kicks on a dead device do nothing */
	(void)virtio_mmio_notify(&dev.mmio, VSOCK_TXQ);
	teardown_dev();
}

static void *reset_thread(void *arg)
{
	(void)arg;
	uint32_t z = 0;
	(void)virtio_mmio_write(&dev.mmio, VIRTIO_MMIO_STATUS, &z, 4);
	uint32_t q = VSOCK_TXQ; /* and a QueueNotify from a "vCPU" */
	(void)virtio_mmio_write(&dev.mmio, VIRTIO_MMIO_QUEUE_NOTIFY, &q, 4);
	return NULL;
}

static void test_reset_from_vcpu_thread(void **state)
{
	(void)state;
	setup_dev(8);
	rx_give(8);
	establish();
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, reset_thread, NULL), 0);
	pthread_join(t, NULL);
	/* the backend was not called on that thread: only asked for a kick */
	assert_int_equal(fb.releases, 0);
	assert_true(fb.kicks >= 1);
	vsock_dev_run(&dev);
	assert_int_equal(fb.releases, 1);
	assert_int_equal(dev.nconns, 0);
	teardown_dev();
}

static void *notify_thread(void *arg)
{
	(void)arg;
	uint32_t q = VSOCK_TXQ;
	(void)virtio_mmio_write(&dev.mmio, VIRTIO_MMIO_QUEUE_NOTIFY, &q, 4);
	return NULL;
}

static void test_deferred_notify(void **state)
{
	(void)state;
	setup_dev(8);
	rx_give(8);
	/* the guest posts a REQUEST and kicks through the MMIO register on a vCPU thread */
	struct vsock_hdr h = hdr(VSOCK_OP_REQUEST, 0);
	vsock_hdr_encode(&h, fg_host(&fg, TXHDR));
	desc(1, 0, TXHDR, VSOCK_HDR_SIZE, 0, 0);
	post(1, 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, notify_thread, NULL), 0);
	pthread_join(t, NULL);
	assert_int_equal(fb.connects, 0); /* no backend call on the vCPU thread */
	assert_int_equal(fb.kicks, 1);
	vsock_dev_run(&dev);
	assert_int_equal(fb.connects, 1);
	assert_int_equal(rx_expect(52, 1000), VSOCK_OP_RESPONSE);
	teardown_dev();
}


/* ---- the host side over real Unix sockets --------------------------------------------------- */

static struct vsock_host host;
static struct evloop loop;
static char tmpdir[64], upath[128];

static void loop_once(int ms)
{
	struct epoll_event evs[64];
	int n = epoll_wait(loop.ep, evs, 64, ms);
	for (int i = 0; i < n; i++) {
		struct evloop_handler *h = evs[i].data.ptr;
		if (h->fd >= 0 && h->cb)
			h->cb(h->ctx, h->fd, evs[i].events);
	}
}

static void setup_host(unsigned int max_conns)
{
	fg_init(&fg, QS);
	guest_ba = 65536;
	memset(avail, 0, sizeof(avail));
	memset(used_seen, 0, sizeof(used_seen));
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kiln-vsock-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(upath, sizeof(upath), "%s/v.sock", tmpdir);
	assert_int_equal(evloop_init(&loop), 0);
	assert_int_equal(vsock_host_init(&host, &loop, &fg.m, CID, upath, max_conns, irq, NULL), 0);
	D = &host.dev;
	driver_up();
}

static void teardown_host(void)
{
	vsock_host_destroy(&host);
	assert_int_equal(access(upath, F_OK), -1); /* the listening socket is gone */
	for (unsigned int i = 0; i < loop.used; i++)
		assert_int_equal(loop.h[i].fd, -1); /* nothing left on the loop */
	evloop_destroy(&loop);
	rmdir(tmpdir);
	fg_free(&fg);
	D = &dev;
}

static int unix_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static int unix_listen(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	return fd;
}

/* Read what the fd has within ms (non-blocking after the first wait). */
static ssize_t read_wait(int fd, char *buf, size_t len, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, ms) != 1)
		return -EAGAIN;
	return recv(fd, buf, len, MSG_DONTWAIT);
}

/* The peer closed fd: EOF, or ECONNRESET when it left our bytes unread. */
static void assert_closed(int fd)
{
	char buf[8];
	ssize_t r = read_wait(fd, buf, sizeof(buf), 500);
	assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
}

/* A host client connects to guest port gport: returns the fd after "OK <port>\n". */
static int host_client(uint32_t gport, uint32_t *hport)
{
	int fd = unix_connect(upath);
	loop_once(100); /* accept */
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", gport);
	assert_int_equal(send(fd, line, (size_t)n, 0), n);
	loop_once(100); /* handshake -> REQUEST to the guest */
	struct vsock_hdr h;
	assert_true(rx_take(&h, NULL));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_int_equal(h.dst_port, gport);
	*hport = h.src_port;
	tx(VSOCK_OP_RESPONSE, gport, h.src_port, 0);
	char ok[32];
	ssize_t r = read_wait(fd, ok, sizeof(ok) - 1, 500);
	assert_true(r > 0);
	ok[r] = '\0';
	char want[32];
	snprintf(want, sizeof(want), "OK %u\n", h.src_port);
	assert_string_equal(ok, want);
	return fd;
}

static void test_host_initiated_echo(void **state)
{
	(void)state;
	setup_host(8);
	rx_give(QS);
	uint32_t hp;
	int fd = host_client(52, &hp);
	assert_true(hp >= (1u << 30) && hp < (1u << 31));
	/* host -> guest */
	assert_int_equal(send(fd, "ping", 4, 0), 4);
	loop_once(100);
	struct vsock_hdr h;
	uint8_t data[16];
	assert_true(rx_take(&h, data));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.len, 4);
	assert_memory_equal(data, "ping", 4);
	/* guest -> host */
	tx_rw(52, hp, "pong", 4);
	char buf[16];
	assert_int_equal(read_wait(fd, buf, sizeof(buf), 500), 4);
	assert_memory_equal(buf, "pong", 4);
	/* a second client in parallel; then the first vanishes: RST for it only */
	uint32_t hp2;
	int fd2 = host_client(53, &hp2);
	close(fd);
	loop_once(100);
	assert_int_equal(rx_expect(hp, 52), VSOCK_OP_RST);
	assert_int_equal(host.dev.nconns, 1);
	tx_rw(53, hp2, "still", 5);
	assert_int_equal(read_wait(fd2, buf, sizeof(buf), 500), 5);
	/* half close from the host: SHUTDOWN(SEND), the guest may still send */
	shutdown(fd2, SHUT_WR);
	loop_once(100);
	assert_true(rx_take(&h, NULL));
	assert_int_equal(h.op, VSOCK_OP_SHUTDOWN);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
	tx_rw(53, hp2, "late", 4);
	assert_int_equal(read_wait(fd2, buf, sizeof(buf), 500), 4);
	close(fd2);
	teardown_host();
}

static void test_host_bad_handshakes(void **state)
{
	(void)state;
	setup_host(8);
	rx_give(QS);
	const char *bad[] = { "HELLO 52\n", "CONNECT 4294967296\n", "CONNECT\n", "CONNECT 5x\n",
			      "CONNECT 52                        \n" };
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		int fd = unix_connect(upath);
		loop_once(100);
		assert_int_equal(send(fd, bad[i], strlen(bad[i]), MSG_NOSIGNAL), (ssize_t)strlen(bad[i]));
		loop_once(100);
		assert_closed(fd); /* closed, no reply */
		close(fd);
	}
	assert_int_equal(host.stats.hs_bad, ARRAY_SIZE(bad));
	assert_int_equal(host.nhs, 0);
	rx_none();
	/* silent client: closed after the timeout */
	int fd = unix_connect(upath);
	loop_once(100);
	assert_int_equal(send(fd, "CONN", 4, 0), 4); /* partial line, then nothing */
	loop_once(100);
	assert_int_equal(host.nhs, 1);
	assert_true(host.timer_armed);
	for (int t = 0; t < 40 && host.nhs; t++)
		loop_once(100);
	assert_int_equal(host.nhs, 0);
	assert_int_equal(host.stats.hs_timeout, 1);
	assert_closed(fd);
	close(fd);
	loop_once(300);
	assert_false(host.timer_armed); /* nothing pending: no wake-ups */
	/* a guest that never answers the REQUEST: the client is closed after the timeout */
	fd = unix_connect(upath);
	loop_once(100);
	assert_int_equal(send(fd, "connect 9\n", 10, 0), 10);
	loop_once(100);
	struct vsock_hdr rq;
	assert_true(rx_take(&rq, NULL));
	assert_int_equal(rq.op, VSOCK_OP_REQUEST);
	assert_int_equal(rq.dst_port, 9);
	for (int t = 0; t < 40 && host.dev.nconns; t++)
		loop_once(100);
	assert_int_equal(host.dev.nconns, 0);
	assert_closed(fd);
	close(fd);
	teardown_host();
}

static void test_guest_initiated_host(void **state)
{
	(void)state;
	setup_host(8);
	rx_give(QS);
	char lpath[160];
	snprintf(lpath, sizeof(lpath), "%s_53", upath);
	int lfd = unix_listen(lpath);
	tx(VSOCK_OP_REQUEST, 1000, 53, 0);
	assert_int_equal(rx_expect(53, 1000), VSOCK_OP_RESPONSE);
	int afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	tx_rw(1000, 53, "guest", 5);
	char buf[16];
	assert_int_equal(read_wait(afd, buf, sizeof(buf), 500), 5);
	assert_memory_equal(buf, "guest", 5);
	assert_int_equal(send(afd, "host", 4, 0), 4);
	loop_once(100);
	struct vsock_hdr h;
	uint8_t data[8];
	assert_true(rx_take(&h, data));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_memory_equal(data, "host", 4);
	/* no listener: RST at once */
	tx(VSOCK_OP_REQUEST, 1001, 54, 0);
	assert_int_equal(rx_expect(54, 1001), VSOCK_OP_RST);
	/* guest closes: SHUTDOWN both -> RST, the host sees EOF */
	tx(VSOCK_OP_SHUTDOWN, 1000, 53, VSOCK_SHUTDOWN_ALL);
	assert_int_equal(rx_expect(53, 1000), VSOCK_OP_RST);
	assert_int_equal(read_wait(afd, buf, sizeof(buf), 500), 0);
	close(afd);
	close(lfd);
	unlink(lpath);
	teardown_host();
}

/* Guest -> host bulk through the real backend (a Unix socket the test reads in random bites), the
 * guest sending like Linux 6.1 (credit from the last header capped at its own 256 KiB, 64 KiB
 * packets), then SHUT_WR and waiting for the host's close: everything arrives in order, the window
 * grows to 256 KiB, nothing stalls. */
static void test_host_g2h_bulk_grows(void **state)
{
	(void)state;
	setup_host(VSOCK_DEFAULT_MAX_CONNS);
	guest_ba = 256u * 1024u;
	rx_give(8);
	char lpath[160];
	snprintf(lpath, sizeof(lpath), "%s_55", upath);
	int lfd = unix_listen(lpath);
	tx(VSOCK_OP_REQUEST, 1000, 55, 0);
	struct vsock_hdr h;
	assert_true(rx_take(&h, NULL));
	assert_int_equal(h.op, VSOCK_OP_RESPONSE);
	uint32_t g_alloc = h.buf_alloc, g_fwd = h.fwd_cnt, g_tx = 0, got = 0, rng = 777;
	int afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	static uint8_t chunk[VSOCK_MAX_PKT], in[300000];
	const uint32_t total = 32u << 20;
	unsigned int idle = 0;
	bool shut = false, eof = false, closed = false;
	uint32_t max_alloc = g_alloc;
	const uint32_t own = 256u * 1024u; /* Linux's default buffer size: it caps our credit */
	while (!closed) {
		uint32_t credit = vsock_credit(g_alloc < own ? g_alloc : own, g_fwd, g_tx);
		uint32_t p = credit < sizeof(chunk) ? credit : (uint32_t)sizeof(chunk);
		if (p > total - g_tx)
			p = total - g_tx;
		if (p > 0) {
			for (uint32_t k = 0; k < p; k++)
				chunk[k] = wrap_byte(g_tx + k);
			tx_rw(1000, 55, chunk, p);
			g_tx += p;
		} else if (g_tx == total && !shut) {
			tx(VSOCK_OP_SHUTDOWN, 1000, 55, VSOCK_SHUTDOWN_SEND);
			shut = true;
		}
		loop_once(0);
		rng = rng * 1103515245u + 12345u;
		size_t bite = (rng >> 8) % sizeof(in) + 1;
		ssize_t r = eof ? -1 : recv(afd, in, bite, MSG_DONTWAIT);
		if (r > 0) {
			for (ssize_t k = 0; k < r; k++, got++)
				if (in[k] != wrap_byte(got))
					fail_msg("byte %u differs", got);
		} else if (r == 0 && !eof) {
			eof = true;
			close(afd); /* the host reader is done */
		}
		loop_once(0);
		while (rx_take(&h, NULL)) {
			g_alloc = h.buf_alloc;
			g_fwd = h.fwd_cnt;
			if (g_alloc > max_alloc)
				max_alloc = g_alloc;
			if (h.op == VSOCK_OP_RST || h.op == VSOCK_OP_SHUTDOWN)
				closed = true;
		}
		uint16_t give = (uint16_t)(8u - (uint16_t)(avail[0] - used_seen[0]));
		if (give > 0 && give <= 8)
			rx_give(give);
		idle = (p == 0 && r <= 0) ? idle + 1 : 0;
		if (idle > 200)
			fail_msg("stalled: guest sent %u, host got %u, credit %u, shut %d eof %d", g_tx, got, credit,
				 shut, eof);
	}
	assert_int_equal(got, total);
	assert_int_equal(max_alloc, 256u * 1024u);
	assert_int_equal(host.dev.stats.credit_violations, 0);
	if (host.dev.nconns) { /* the guest ends it as Linux does: SHUTDOWN both -> RST */
		tx(VSOCK_OP_SHUTDOWN, 1000, 55, VSOCK_SHUTDOWN_ALL);
		loop_once(0);
	}
	close(lfd);
	unlink(lpath);
	teardown_host();
}

static void test_host_init_refusals(void **state)
{
	(void)state;
	fg_init(&fg, QS);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kiln-vsock-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(upath, sizeof(upath), "%s/v.sock", tmpdir);
	assert_int_equal(evloop_init(&loop), 0);
	int fd = unix_listen(upath);
	assert_int_equal(vsock_host_init(&host, &loop, &fg.m, CID, upath, 8, irq, NULL), -EADDRINUSE);
	close(fd);
	unlink(upath);
	assert_int_equal(vsock_host_init(&host, &loop, &fg.m, 2, upath, 8, irq, NULL), -EINVAL);
	assert_int_equal(access(upath, F_OK), -1);
	assert_int_equal(vsock_host_init(&host, &loop, &fg.m, CID, upath, 99999, irq, NULL), -EINVAL);
	vsock_host_destroy(&host); /* safe after a failed init */
	evloop_destroy(&loop);
	rmdir(tmpdir);
	fg_free(&fg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_roundtrip),
		cmocka_unit_test(test_check_verdicts),
		cmocka_unit_test(test_credit),
		cmocka_unit_test(test_handshake),
		cmocka_unit_test(test_parse_opts),
		cmocka_unit_test(test_guest_connect_echo),
		cmocka_unit_test(test_guest_connect_refused),
		cmocka_unit_test(test_table_full),
		cmocka_unit_test(test_bad_packets),
		cmocka_unit_test(test_credit_violation_and_flush),
		cmocka_unit_test(test_credit_grows),
		cmocka_unit_test(test_credit_no_grow_when_host_slow),
		cmocka_unit_test(test_credit_pool_bound),
		cmocka_unit_test(test_credit_grow_ring_wrap),
		cmocka_unit_test(test_credit_linux_like_sender),
		cmocka_unit_test(test_writable_flush_in_order),
		cmocka_unit_test(test_counters_wrap),
		cmocka_unit_test(test_credit_request_and_zero_buf_alloc),
		cmocka_unit_test(test_rx_starved),
		cmocka_unit_test(test_parked_pump_flushes_ctl),
		cmocka_unit_test(test_parked_pump_budget),
		cmocka_unit_test(test_shutdown_flows),
		cmocka_unit_test(test_host_initiated),
		cmocka_unit_test(test_host_errors),
		cmocka_unit_test(test_state_machine),
		cmocka_unit_test(test_g2h_async_connect),
		cmocka_unit_test(test_reset_releases_all),
		cmocka_unit_test(test_reset_from_vcpu_thread),
		cmocka_unit_test(test_deferred_notify),
		cmocka_unit_test(test_host_initiated_echo),
		cmocka_unit_test(test_host_bad_handshakes),
		cmocka_unit_test(test_guest_initiated_host),
		cmocka_unit_test(test_host_g2h_bulk_grows),
		cmocka_unit_test(test_host_init_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
