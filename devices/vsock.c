/* vsock.c: virtio-vsock: header validation (pure), stream state machine and credit flow control. */
#include "vsock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- pure helpers ------------------------------------------------------------------------ */

void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
	h->src_cid = ld64(raw + 0);
	h->dst_cid = ld64(raw + 8);
	h->src_port = ld32(raw + 16);
	h->dst_port = ld32(raw + 20);
	h->len = ld32(raw + 24);
	h->type = ld16(raw + 28);
	h->op = ld16(raw + 30);
	h->flags = ld32(raw + 32);
	h->buf_alloc = ld32(raw + 36);
	h->fwd_cnt = ld32(raw + 40);
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE])
{
	st64(raw + 0, h->src_cid);
	st64(raw + 8, h->dst_cid);
	st32(raw + 16, h->src_port);
	st32(raw + 20, h->dst_port);
	st32(raw + 24, h->len);
	st16(raw + 28, h->type);
	st16(raw + 30, h->op);
	st32(raw + 32, h->flags);
	st32(raw + 36, h->buf_alloc);
	st32(raw + 40, h->fwd_cnt);
}

enum vsock_verdict vsock_check(const struct vsock_hdr *h, uint64_t guest_cid, uint64_t out_len, uint64_t in_len)
{
	if (out_len < VSOCK_HDR_SIZE)
		return VSOCK_PKT_DROP_SHORT;
	if (in_len != 0 || h->len > VSOCK_MAX_PKT || out_len - VSOCK_HDR_SIZE != h->len)
		return VSOCK_PKT_DROP_LEN;
	if (h->op != VSOCK_OP_RW && h->len != 0)
		return VSOCK_PKT_DROP_LEN;
	if (h->src_cid != guest_cid)
		return VSOCK_PKT_DROP_SRC;
	enum vsock_verdict v = VSOCK_PKT_OK;
	if (h->dst_cid != VSOCK_HOST_CID)
		v = VSOCK_PKT_RST_DST;
	else if (h->type != VSOCK_TYPE_STREAM)
		v = VSOCK_PKT_RST_TYPE;
	else if (h->op == VSOCK_OP_INVALID || h->op > VSOCK_OP_CREDIT_REQUEST)
		v = VSOCK_PKT_RST_OP;
	else if (h->op == VSOCK_OP_SHUTDOWN && (h->flags & ~VSOCK_SHUTDOWN_ALL))
		v = VSOCK_PKT_RST_FLAGS;
	if (v != VSOCK_PKT_OK && h->op == VSOCK_OP_RST)
		return VSOCK_PKT_DROP_RST;
	return v;
}

const char *vsock_verdict_str(enum vsock_verdict v)
{
	static const char *const s[VSOCK_PKT_VERDICTS] = {
		[VSOCK_PKT_OK] = "ok",
		[VSOCK_PKT_DROP_SHORT] = "header under 44 bytes",
		[VSOCK_PKT_DROP_LEN] = "len does not match the chain or exceeds 64 KiB",
		[VSOCK_PKT_DROP_SRC] = "source CID is not the guest's",
		[VSOCK_PKT_DROP_RST] = "malformed RST",
		[VSOCK_PKT_RST_DST] = "destination CID is not the host",
		[VSOCK_PKT_RST_TYPE] = "type is not STREAM",
		[VSOCK_PKT_RST_OP] = "unknown op",
		[VSOCK_PKT_RST_FLAGS] = "unknown SHUTDOWN flags",
	};
	return (unsigned int)v < VSOCK_PKT_VERDICTS ? s[v] : "?";
}

uint64_t vsock_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- connection table -------------------------------------------------------------------- */

#define NOT_LISTED (-2)
#define HOST_PORT_MIN (1u << 30)
#define HOST_PORT_END (1u << 31) /* exclusive */

static unsigned int bucket(const struct vsock_dev *v, uint32_t host_port, uint32_t guest_port)
{
	uint32_t x = host_port * 0x9e3779b1u ^ (guest_port + 0x7f4a7c15u) * 0x85ebca77u;
	x ^= x >> 15;
	return x & (v->nbuckets - 1);
}

static int idx(const struct vsock_dev *v, const struct vsock_conn *c)
{
	return (int)(c - v->conns);
}

static struct vsock_conn *conn_find(struct vsock_dev *v, uint32_t host_port, uint32_t guest_port)
{
	unsigned int hops = 0;
	for (int i = v->hash[bucket(v, host_port, guest_port)]; i >= 0 && hops <= v->max_conns; hops++) {
		struct vsock_conn *c = &v->conns[i];
		if (c->host_port == host_port && c->guest_port == guest_port)
			return c;
		i = c->next;
	}
	return NULL;
}

/* Pool bytes beyond what live connections advertise and the floors of the free slots. */
static uint64_t pool_spare(const struct vsock_dev *v)
{
	uint64_t reserved = v->pool + (uint64_t)(v->max_conns - v->nconns) * v->buf_floor;
	return reserved < VSOCK_TOTAL_BUF ? VSOCK_TOTAL_BUF - reserved : 0;
}

static struct vsock_conn *conn_alloc(struct vsock_dev *v, uint32_t host_port, uint32_t guest_port,
				     enum vsock_state st)
{
	if (v->free_head < 0 || v->nconns >= v->max_conns)
		return NULL;
	struct vsock_conn *c = &v->conns[v->free_head];
	v->free_head = c->next;
	memset(c, 0, sizeof(*c));
	c->state = st;
	c->host_port = host_port;
	c->guest_port = guest_port;
	/* The pool holds at least this slot's floor (the invariant pool_spare() >= 0). */
	uint64_t room = pool_spare(v) + v->buf_floor;
	c->buf_alloc = room < v->buf_alloc ? (uint32_t)room : v->buf_alloc;
	v->pool += c->buf_alloc;
	c->ctl_next = c->ctl_prev = NOT_LISTED;
	c->park_next = c->park_prev = NOT_LISTED;
	unsigned int b = bucket(v, host_port, guest_port);
	c->next = v->hash[b];
	v->hash[b] = idx(v, c);
	v->nconns++;
	return c;
}

/* Intrusive doubly linked lists over pool indices (ctl: owed control packets; park: waiting rx). */
#define LIST_ADD(v, c, head, tail, nx, pv)                                   \
	do {                                                                 \
		if ((c)->nx != NOT_LISTED)                                   \
			break;                                               \
		(c)->nx = -1;                                                \
		(c)->pv = (v)->tail;                                         \
		if ((v)->tail >= 0)                                          \
			(v)->conns[(v)->tail].nx = idx(v, c);                \
		else                                                         \
			(v)->head = idx(v, c);                               \
		(v)->tail = idx(v, c);                                       \
	} while (0)
#define LIST_DEL(v, c, head, tail, nx, pv)                                   \
	do {                                                                 \
		if ((c)->nx == NOT_LISTED)                                   \
			break;                                               \
		if ((c)->pv >= 0)                                            \
			(v)->conns[(c)->pv].nx = (c)->nx;                    \
		else                                                         \
			(v)->head = (c)->nx;                                 \
		if ((c)->nx >= 0)                                            \
			(v)->conns[(c)->nx].pv = (c)->pv;                    \
		else                                                         \
			(v)->tail = (c)->pv;                                 \
		(c)->nx = (c)->pv = NOT_LISTED;                              \
	} while (0)

static void ctl_add(struct vsock_dev *v, struct vsock_conn *c) { LIST_ADD(v, c, ctl_head, ctl_tail, ctl_next, ctl_prev); }
static void ctl_del(struct vsock_dev *v, struct vsock_conn *c) { LIST_DEL(v, c, ctl_head, ctl_tail, ctl_next, ctl_prev); }
static void park_add(struct vsock_dev *v, struct vsock_conn *c)
{
	c->rx_parked = true;
	LIST_ADD(v, c, park_head, park_tail, park_next, park_prev);
}
static void park_del(struct vsock_dev *v, struct vsock_conn *c)
{
	c->rx_parked = false;
	LIST_DEL(v, c, park_head, park_tail, park_next, park_prev);
}

static void set_deadline(struct vsock_dev *v, struct vsock_conn *c, uint64_t when)
{
	if (c->deadline_ms == 0 && when != 0)
		v->ntimed++;
	else if (c->deadline_ms != 0 && when == 0)
		v->ntimed--;
	c->deadline_ms = when;
}

static uint32_t buffered(const struct vsock_conn *c)
{
	return c->tx_cnt - c->fwd_cnt;
}

/* Unlink and free the slot. The backend has been told (release) or never owned it. */
static void conn_free(struct vsock_dev *v, struct vsock_conn *c)
{
	unsigned int b = bucket(v, c->host_port, c->guest_port);
	int me = idx(v, c);
	for (int *p = &v->hash[b]; *p >= 0; p = &v->conns[*p].next) {
		if (*p == me) {
			*p = c->next;
			break;
		}
	}
	ctl_del(v, c);
	park_del(v, c);
	set_deadline(v, c, 0);
	v->buffered -= buffered(c);
	v->pool -= c->buf_alloc;
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->state = VSOCK_FREE;
	c->ctl_next = c->ctl_prev = c->park_next = c->park_prev = NOT_LISTED;
	c->next = v->free_head;
	v->free_head = me;
	v->nconns--;
}

static void conn_release(struct vsock_dev *v, struct vsock_conn *c)
{
	v->be->release(v->be_ctx, c);
	conn_free(v, c);
}

static void rst_queue_cap(struct vsock_dev *v, uint64_t src_cid, uint32_t src_port, uint32_t dst_port,
			  uint32_t cap)
{
	if (v->rst_len >= cap) {
		v->stats.rst_dropped++;
		return;
	}
	struct vsock_rst *r = &v->rst[(v->rst_head + v->rst_len) % VSOCK_RST_RING];
	r->src_cid = src_cid;
	r->src_port = src_port;
	r->dst_port = dst_port;
	v->rst_len++;
}

/* A reply to a guest packet that has no connection: may use only the spare part of the ring. */
static void rst_queue(struct vsock_dev *v, uint64_t src_cid, uint32_t src_port, uint32_t dst_port)
{
	rst_queue_cap(v, src_cid, src_port, dst_port, VSOCK_RST_SPARE);
}

/* RST to the guest and release: the end of every failed or finished connection. */
static void conn_rst(struct vsock_dev *v, struct vsock_conn *c)
{
	rst_queue_cap(v, VSOCK_HOST_CID, c->host_port, c->guest_port, VSOCK_RST_RING);
	conn_release(v, c);
}

/* ---- rx: packets to the guest ------------------------------------------------------------ */

static bool dev_live(const struct vsock_dev *v)
{
	uint32_t st = v->mmio.status;
	return (st & VIRTIO_STATUS_DRIVER_OK) &&
	       !(st & (VIRTIO_STATUS_FAILED | VIRTIO_STATUS_DEVICE_NEEDS_RESET));
}

static void queue_broken(struct vsock_dev *v, unsigned int q)
{
	static unsigned int warned;
	if (!(v->mmio.status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) &&
	    __atomic_fetch_add(&warned, 1u, __ATOMIC_RELAXED) < 16u)
		kiln_warn("virtio-vsock: queue %u: %s; device needs reset", q, virtq_strerror(v->mmio.vq[q].err));
	v->held = false;
	virtio_mmio_needs_reset(&v->mmio);
}

/* Make sure an rx chain with room for a header is held. 1: yes; 0: none available. */
static int rx_get(struct vsock_dev *v)
{
	struct virtq *q = &v->mmio.vq[VSOCK_RXQ];
	for (unsigned int tries = 0; !v->held; tries++) {
		if (tries > VSOCK_QUEUE_SIZE)
			return 0;
		if (!dev_live(v) || !q->ready)
			return 0;
		int r = virtq_pop(q, &v->held_c, v->held_bufs, VSOCK_MAX_BUFS);
		if (r < 0) {
			queue_broken(v, VSOCK_RXQ);
			return 0;
		}
		if (r == 0)
			return 0;
		if (v->held_c.in_len < VSOCK_HDR_SIZE) {
			/* Useless to us: hand it back empty (the driver drops it). */
			if (virtq_push(q, v->held_c.head, 0) != 0) {
				queue_broken(v, VSOCK_RXQ);
				return 0;
			}
			v->rx_pushed = true;
			continue;
		}
		v->held = true;
	}
	return 1;
}

/* Write len bytes at byte offset off of the held chain's writable stream. */
static void rx_scatter(struct vsock_dev *v, uint64_t off, const uint8_t *src, uint64_t len)
{
	for (unsigned int i = 0; i < v->held_c.n && len > 0; i++) {
		const struct virtq_buf *b = &v->held_bufs[i];
		if (!b->writable)
			continue;
		if (off >= b->len) {
			off -= b->len;
			continue;
		}
		uint64_t take = b->len - off;
		if (take > len)
			take = len;
		memcpy(b->host + off, src, take);
		src += take;
		len -= take;
		off = 0;
	}
}

/* Finish the held chain as one packet with header h (payload already in place). */
static void rx_complete(struct vsock_dev *v, const struct vsock_hdr *h)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(h, raw);
	rx_scatter(v, 0, raw, VSOCK_HDR_SIZE);
	v->held = false;
	if (virtq_push(&v->mmio.vq[VSOCK_RXQ], v->held_c.head, VSOCK_HDR_SIZE + h->len) != 0) {
		queue_broken(v, VSOCK_RXQ);
		return;
	}
	v->rx_pushed = true;
	v->stats.rx_pkts++;
	v->stats.rx_bytes += h->len;
	if (h->op == VSOCK_OP_RST)
		v->stats.rst_sent++;
}

static void conn_hdr(const struct vsock_dev *v, struct vsock_conn *c, uint16_t op, struct vsock_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = VSOCK_HOST_CID;
	h->dst_cid = v->guest_cid;
	h->src_port = c->host_port;
	h->dst_port = c->guest_port;
	h->type = VSOCK_TYPE_STREAM;
	h->op = op;
	h->buf_alloc = c->buf_alloc;
	h->fwd_cnt = c->fwd_cnt;
	c->fwd_cnt_sent = c->fwd_cnt; /* every packet tells the guest our credit */
}

static bool rst_flush(struct vsock_dev *v)
{
	while (v->rst_len > 0) {
		if (!rx_get(v))
			return false;
		const struct vsock_rst *r = &v->rst[v->rst_head];
		struct vsock_hdr h = {
			.src_cid = r->src_cid, .dst_cid = v->guest_cid, .src_port = r->src_port,
			.dst_port = r->dst_port, .type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST,
		};
		v->rst_head = (v->rst_head + 1) % VSOCK_RST_RING;
		v->rst_len--;
		rx_complete(v, &h);
	}
	return true;
}

/* Send the control packets c owes, in a fixed order. true when none is left. */
static bool conn_flush_ctl(struct vsock_dev *v, struct vsock_conn *c)
{
	static const struct {
		uint32_t bit;
		uint16_t op;
	} order[] = {
		{ VSOCK_CTL_REQUEST, VSOCK_OP_REQUEST },
		{ VSOCK_CTL_RESPONSE, VSOCK_OP_RESPONSE },
		{ VSOCK_CTL_CREDIT_REQUEST, VSOCK_OP_CREDIT_REQUEST },
		{ VSOCK_CTL_CREDIT_UPDATE, VSOCK_OP_CREDIT_UPDATE },
		{ VSOCK_CTL_SHUTDOWN, VSOCK_OP_SHUTDOWN },
	};
	for (unsigned int i = 0; i < ARRAY_SIZE(order) && c->ctl; i++) {
		if (!(c->ctl & order[i].bit))
			continue;
		if (!rx_get(v)) {
			ctl_add(v, c);
			return false;
		}
		struct vsock_hdr h;
		conn_hdr(v, c, order[i].op, &h);
		if (order[i].op == VSOCK_OP_SHUTDOWN)
			h.flags = c->local_shut;
		rx_complete(v, &h);
		c->ctl &= ~order[i].bit;
	}
	ctl_del(v, c);
	return true;
}

static void ctl_set(struct vsock_dev *v, struct vsock_conn *c, uint32_t bits)
{
	c->ctl |= bits;
	(void)conn_flush_ctl(v, c);
}

static uint32_t peer_credit(const struct vsock_conn *c)
{
	return vsock_credit(c->peer_buf_alloc, c->peer_fwd_cnt, c->rx_cnt);
}

static bool host_may_send(const struct vsock_conn *c)
{
	return c->state == VSOCK_ESTABLISHED && !(c->local_shut & VSOCK_SHUTDOWN_SEND) &&
	       !(c->peer_shut & VSOCK_SHUTDOWN_RCV);
}

/* Tell the backend what we want to hear about (only on change). */
static void update_watch(struct vsock_dev *v, struct vsock_conn *c)
{
	bool rd = host_may_send(c) && !c->rx_parked && peer_credit(c) > 0;
	bool wr = (c->state == VSOCK_ESTABLISHED || c->state == VSOCK_CLOSING) && buffered(c) > 0;
	if (rd != c->watch_rd || wr != c->watch_wr) {
		c->watch_rd = rd;
		c->watch_wr = wr;
		v->be->watch(v->be_ctx, c, rd, wr);
	}
}

#define RX_BATCH 32u /* packets per connection per readable event */

/* Move host data into guest rx buffers while there is credit, buffers and data. */
static void conn_rx(struct vsock_dev *v, struct vsock_conn *c)
{
	for (unsigned int k = 0; k < RX_BATCH; k++) {
		if (c->ctl && !conn_flush_ctl(v, c)) {
			park_add(v, c); /* control first; data waits behind it */
			break;
		}
		if (!host_may_send(c))
			break;
		uint32_t credit = peer_credit(c);
		if (credit == 0) {
			if (!c->credit_req_sent) {
				c->credit_req_sent = true;
				ctl_set(v, c, VSOCK_CTL_CREDIT_REQUEST);
			}
			break;
		}
		if (!rx_get(v)) {
			park_add(v, c);
			break;
		}
		uint64_t room = v->held_c.in_len - VSOCK_HDR_SIZE;
		uint64_t max = room < credit ? room : credit;
		if (max > VSOCK_MAX_PKT)
			max = VSOCK_MAX_PKT;
		if (max == 0) {
			/* A header-only buffer: spend it on a credit update rather than stall. */
			struct vsock_hdr h;
			conn_hdr(v, c, VSOCK_OP_CREDIT_UPDATE, &h);
			rx_complete(v, &h);
			continue;
		}
		/* max <= in_len - header: the writable stream always covers it */
		int n = virtq_iov(v->held_bufs, v->held_c.n, true, VSOCK_HDR_SIZE, max, v->iov, VSOCK_MAX_BUFS);
		if (n < 0) {
			v->stats.host_errors++;
			conn_rst(v, c);
			return;
		}
		ssize_t got = v->be->recv(v->be_ctx, c, v->iov, n);
		if (got == -EAGAIN)
			break;
		if (got < 0 || (uint64_t)got > max) {
			v->stats.host_errors++;
			conn_rst(v, c);
			return;
		}
		if (got == 0) {
			/* Host EOF: no more data from the host. */
			c->local_shut |= VSOCK_SHUTDOWN_SEND;
			ctl_set(v, c, VSOCK_CTL_SHUTDOWN);
			break;
		}
		struct vsock_hdr h;
		conn_hdr(v, c, VSOCK_OP_RW, &h);
		h.len = (uint32_t)got;
		rx_complete(v, &h);
		c->rx_cnt += (uint32_t)got;
		if ((uint64_t)got < max)
			break; /* drained for now */
	}
	update_watch(v, c);
}

#define PUMP_BUDGET 256u

/*
 * Deliver what waits for rx buffers: RSTs, control packets, then parked connections' data. Whatever
 * a parked connection's conn_rx queues goes out in the same call while buffers last: an RST (host
 * error) is only queued, so it is flushed here after each one; control packets (SHUTDOWN at EOF,
 * CREDIT_REQUEST) are tried at once and listed only when no buffer is left, for the next rx kick.
 * Work left when a budget runs out (buffers still there) asks for another call through the backend's
 * kick: the guest, holding buffers, would never kick rx again.
 */
static void rx_pump(struct vsock_dev *v)
{
	if (!rst_flush(v))
		return;
	for (unsigned int k = 0; k < PUMP_BUDGET && v->ctl_head >= 0; k++)
		if (!conn_flush_ctl(v, &v->conns[v->ctl_head]))
			return;
	for (unsigned int k = 0; k < PUMP_BUDGET && v->park_head >= 0; k++) {
		struct vsock_conn *c = &v->conns[v->park_head];
		park_del(v, c);
		conn_rx(v, c);
		if (!rst_flush(v))
			return; /* out of buffers: the next rx kick delivers it */
		if (c->state != VSOCK_FREE && c->rx_parked)
			return; /* out of buffers again */
	}
	if (v->ctl_head >= 0 || v->park_head >= 0) {
		/* A budget ran out with buffers left (an empty one returned above). */
		v->deferred_notify |= 1u << VSOCK_RXQ;
		v->be->kick(v->be_ctx);
	}
}

/* ---- tx: packets from the guest ---------------------------------------------------------- */

/*
 * The part of our credit the guest can use. Linux caps what it sends at min(our buf_alloc, its own
 * buf_alloc) (its receive buffer size, 256 KiB by default), which every header it sends carries.
 */
static uint32_t guest_window(const struct vsock_conn *c)
{
	return c->peer_buf_alloc < c->buf_alloc ? c->peer_buf_alloc : c->buf_alloc;
}

/*
 * A busy connection asks for more credit: x4, up to VSOCK_CONN_BUF_MAX and the guest's own
 * buf_alloc (guest_window), as far as the pool's spare allows, only while the guest may still send
 * and only while the host keeps up (at most a quarter of buf_alloc buffered: a bigger window would
 * only hold more memory for a slow host). A ring that holds data is moved into one of the new size
 * (its layout depends on buf_alloc). Never shrinks. The caller tells the guest (every packet
 * carries buf_alloc).
 */
static void conn_grow(struct vsock_dev *v, struct vsock_conn *c)
{
	if (c->state != VSOCK_ESTABLISHED || (c->peer_shut & VSOCK_SHUTDOWN_SEND) ||
	    c->buf_alloc >= VSOCK_CONN_BUF_MAX || c->buf_alloc >= c->peer_buf_alloc ||
	    buffered(c) > c->buf_alloc / 4)
		return;
	uint64_t want = (uint64_t)c->buf_alloc * 4;
	if (want > VSOCK_CONN_BUF_MAX)
		want = VSOCK_CONN_BUF_MAX;
	if (want > c->peer_buf_alloc)
		want = c->peer_buf_alloc; /* more would go unused (guest_window) */
	uint64_t delta = want - c->buf_alloc, spare = pool_spare(v);
	if (delta > spare)
		delta = spare;
	if (delta == 0)
		return;
	uint32_t nsize = c->buf_alloc + (uint32_t)delta;
	if (c->buf) {
		uint8_t *nb = malloc(nsize);
		if (!nb)
			return;
		uint32_t len = buffered(c), first = c->buf_alloc - c->buf_head;
		if (first > len)
			first = len;
		memcpy(nb, c->buf + c->buf_head, first);
		memcpy(nb + first, c->buf, len - first);
		free(c->buf);
		c->buf = nb;
		c->buf_head = 0;
	}
	v->pool += delta;
	c->buf_alloc = nsize;
	v->stats.credit_grows++;
}

/* After forwarding progress: refresh the guest's view of our credit when it runs low (growing the
 * credit of a connection that uses it). */
static void maybe_credit_update(struct vsock_dev *v, struct vsock_conn *c)
{
	if (c->fwd_cnt == c->fwd_cnt_sent)
		return;
	/* Measured against the window the guest can use: a guest that caps our credit at its own
	 * buf_alloc would otherwise wait for an update that never comes. */
	uint32_t win = guest_window(c);
	uint32_t view = vsock_credit(win, c->fwd_cnt_sent, c->tx_cnt);
	if (view < win / 2) {
		conn_grow(v, c);
		ctl_set(v, c, VSOCK_CTL_CREDIT_UPDATE);
	}
}

/* Guest will send no more (and all it sent reached the host), or the connection is done. */
static void conn_after_drain(struct vsock_dev *v, struct vsock_conn *c)
{
	if (buffered(c) != 0)
		return;
	if ((c->peer_shut & VSOCK_SHUTDOWN_SEND) && !c->host_shut_wr) {
		c->host_shut_wr = true;
		v->be->shut_wr(v->be_ctx, c);
	}
	if (c->state == VSOCK_CLOSING)
		conn_rst(v, c);
}

/* Append len bytes from iov (skipping skip bytes) to c's ring. Fits: the caller checked credit. */
static bool ring_put(struct vsock_dev *v, struct vsock_conn *c, const struct iovec *iov, int n, uint64_t skip)
{
	if (!c->buf) {
		c->buf = malloc(c->buf_alloc);
		if (!c->buf)
			return false;
		c->buf_head = 0;
	}
	for (int i = 0; i < n; i++) {
		const uint8_t *p = iov[i].iov_base;
		uint64_t len = iov[i].iov_len;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		p += skip;
		len -= skip;
		skip = 0;
		while (len > 0) {
			uint32_t tail = (c->buf_head + buffered(c)) % c->buf_alloc;
			uint32_t chunk = c->buf_alloc - tail;
			if (chunk > len)
				chunk = (uint32_t)len;
			memcpy(c->buf + tail, p, chunk);
			p += chunk;
			len -= chunk;
			c->tx_cnt += chunk;
			v->buffered += chunk;
		}
	}
	return true;
}

/* Write buffered data to the host. false: the connection was reset. */
static bool ring_flush(struct vsock_dev *v, struct vsock_conn *c)
{
	while (buffered(c) > 0) {
		uint32_t len = buffered(c);
		uint32_t first = c->buf_alloc - c->buf_head;
		struct iovec iov[2];
		int n = 1;
		iov[0].iov_base = c->buf + c->buf_head;
		iov[0].iov_len = len < first ? len : first;
		if (len > first) {
			iov[1].iov_base = c->buf;
			iov[1].iov_len = len - first;
			n = 2;
		}
		ssize_t w = v->be->send(v->be_ctx, c, iov, n);
		if (w == -EAGAIN || w == 0)
			break;
		if (w < 0 || (uint64_t)w > len) {
			v->stats.host_errors++;
			conn_rst(v, c);
			return false;
		}
		c->fwd_cnt += (uint32_t)w;
		v->buffered -= (uint64_t)w;
		c->buf_head = (uint32_t)((c->buf_head + (uint64_t)w) % c->buf_alloc);
	}
	if (buffered(c) == 0 && c->buf) {
		free(c->buf);
		c->buf = NULL;
		c->buf_head = 0;
	}
	return true;
}

/* RW from the guest: payload iov[0..n) of len bytes. */
static void conn_tx(struct vsock_dev *v, struct vsock_conn *c, const struct iovec *iov, int n, uint32_t len)
{
	if (len > c->buf_alloc - buffered(c)) {
		v->stats.credit_violations++;
		conn_rst(v, c);
		return;
	}
	uint64_t done = 0;
	if (buffered(c) == 0 && len > 0) {
		ssize_t w = v->be->send(v->be_ctx, c, iov, n);
		if (w == -EAGAIN)
			w = 0;
		if (w < 0 || (uint64_t)w > len) {
			v->stats.host_errors++;
			conn_rst(v, c);
			return;
		}
		done = (uint64_t)w;
		c->tx_cnt += (uint32_t)w;
		c->fwd_cnt += (uint32_t)w;
	}
	if (done < len && !ring_put(v, c, iov, n, done)) {
		v->stats.host_errors++;
		conn_rst(v, c);
		return;
	}
	maybe_credit_update(v, c);
}

static void update_peer_credit(struct vsock_conn *c, const struct vsock_hdr *h)
{
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->credit_req_sent = false;
}

/* A valid packet with no connection behind its ports. */
static void pkt_no_conn(struct vsock_dev *v, const struct vsock_hdr *h)
{
	if (h->op == VSOCK_OP_RST)
		return;
	if (h->op != VSOCK_OP_REQUEST) {
		rst_queue(v, VSOCK_HOST_CID, h->dst_port, h->src_port);
		return;
	}
	struct vsock_conn *c = conn_alloc(v, h->dst_port, h->src_port, VSOCK_CONNECTING_G2H);
	if (!c) {
		v->stats.table_full++;
		rst_queue(v, VSOCK_HOST_CID, h->dst_port, h->src_port);
		return;
	}
	update_peer_credit(c, h);
	int r = v->be->connect(v->be_ctx, c, h->dst_port);
	if (r < 0) {
		/* The backend keeps nothing on refusal: no release. */
		v->stats.refused++;
		rst_queue(v, VSOCK_HOST_CID, h->dst_port, h->src_port);
		conn_free(v, c);
		return;
	}
	if (r > 0) {
		c->state = VSOCK_ESTABLISHED;
		ctl_set(v, c, VSOCK_CTL_RESPONSE);
		update_watch(v, c);
	}
}

static void proto_error(struct vsock_dev *v, struct vsock_conn *c)
{
	v->stats.proto_errors++;
	conn_rst(v, c);
}

static void pkt_shutdown(struct vsock_dev *v, struct vsock_conn *c, uint32_t flags)
{
	c->peer_shut |= flags;
	if (c->peer_shut == VSOCK_SHUTDOWN_ALL) {
		if (buffered(c) == 0) {
			/* Both directions done: RST completes the guest's close. */
			if (!c->host_shut_wr) {
				c->host_shut_wr = true;
				v->be->shut_wr(v->be_ctx, c);
			}
			conn_rst(v, c);
			return;
		}
		if (c->state != VSOCK_CLOSING) {
			c->state = VSOCK_CLOSING;
			set_deadline(v, c, vsock_now_ms() + VSOCK_TIMEOUT_MS);
		}
		return;
	}
	conn_after_drain(v, c);
}

/* Dispatch one validated packet (verdict OK). */
static void pkt_handle(struct vsock_dev *v, const struct vsock_hdr *h, const struct iovec *iov, int n)
{
	struct vsock_conn *c = conn_find(v, h->dst_port, h->src_port);
	if (!c) {
		pkt_no_conn(v, h);
		return;
	}
	if (h->op == VSOCK_OP_RST) {
		conn_release(v, c);
		return;
	}
	update_peer_credit(c, h);
	switch (c->state) {
	case VSOCK_CONNECTING_H2G:
		if (h->op != VSOCK_OP_RESPONSE) {
			proto_error(v, c);
			return;
		}
		c->state = VSOCK_ESTABLISHED;
		set_deadline(v, c, 0);
		if (v->be->established(v->be_ctx, c) < 0) {
			v->stats.host_errors++;
			conn_rst(v, c);
			return;
		}
		break;
	case VSOCK_CONNECTING_G2H:
		proto_error(v, c);
		return;
	case VSOCK_ESTABLISHED:
	case VSOCK_CLOSING:
		switch (h->op) {
		case VSOCK_OP_RW:
			if (c->peer_shut & VSOCK_SHUTDOWN_SEND) {
				proto_error(v, c);
				return;
			}
			conn_tx(v, c, iov, n, h->len);
			if (c->state == VSOCK_FREE)
				return;
			break;
		case VSOCK_OP_CREDIT_UPDATE:
			break;
		case VSOCK_OP_CREDIT_REQUEST:
			conn_grow(v, c);
			ctl_set(v, c, VSOCK_CTL_CREDIT_UPDATE);
			break;
		case VSOCK_OP_SHUTDOWN:
			pkt_shutdown(v, c, h->flags);
			if (c->state == VSOCK_FREE)
				return;
			break;
		default: /* REQUEST on a live connection, unsolicited RESPONSE */
			proto_error(v, c);
			return;
		}
		break;
	case VSOCK_FREE:
		return;
	}
	update_watch(v, c);
}

#define TX_BATCH 128u

/* Handle a bounded batch of tx chains. true: more may be left. */
static bool tx_process(struct vsock_dev *v)
{
	struct virtq *q = &v->mmio.vq[VSOCK_TXQ];
	struct virtq_chain c;
	unsigned int budget = TX_BATCH;
	while (budget > 0) {
		int r = virtq_pop(q, &c, v->bufs, VSOCK_MAX_BUFS);
		if (r < 0) {
			queue_broken(v, VSOCK_TXQ);
			return false;
		}
		if (r == 0)
			break;
		budget--;
		v->stats.tx_pkts++;
		struct vsock_hdr h;
		memset(&h, 0, sizeof(h));
		uint8_t raw[VSOCK_HDR_SIZE];
		enum vsock_verdict vd = VSOCK_PKT_DROP_SHORT;
		if (c.out_len >= VSOCK_HDR_SIZE && virtq_copy_out(v->bufs, c.n, false, 0, raw, VSOCK_HDR_SIZE)) {
			vsock_hdr_decode(raw, &h);
			vd = vsock_check(&h, v->guest_cid, c.out_len, c.in_len);
		}
		v->stats.verdict[vd]++;
		if (vd == VSOCK_PKT_OK) {
			v->stats.tx_bytes += h.len;
			/* vsock_check made h.len the chain's readable bytes after the header */
			int n = virtq_iov(v->bufs, c.n, false, VSOCK_HDR_SIZE, h.len, v->iov, VSOCK_MAX_BUFS);
			if (n >= 0)
				pkt_handle(v, &h, v->iov, n);
			else
				v->stats.proto_errors++;
		} else if (vd >= VSOCK_PKT_RST_DST) {
			/* Answer from the address the guest used; a known connection goes down too. */
			struct vsock_conn *cn = h.dst_cid == VSOCK_HOST_CID ? conn_find(v, h.dst_port, h.src_port) : NULL;
			if (cn) {
				v->stats.proto_errors++;
				conn_rst(v, cn);
			} else {
				rst_queue(v, h.dst_cid, h.dst_port, h.src_port);
			}
		}
		/* The payload has been written to the host or copied: the chain goes back now. */
		if (virtq_push(q, c.head, 0) != 0) {
			queue_broken(v, VSOCK_TXQ);
			return false;
		}
		v->tx_pushed = true;
	}
	return budget == 0;
}

/* ---- device plumbing --------------------------------------------------------------------- */

static bool on_owner(const struct vsock_dev *v)
{
	return pthread_equal(pthread_self(), v->owner) != 0;
}

static void flush_used(struct vsock_dev *v)
{
	if (v->rx_pushed) {
		v->rx_pushed = false;
		virtio_mmio_used(&v->mmio, VSOCK_RXQ);
	}
	if (v->tx_pushed) {
		v->tx_pushed = false;
		virtio_mmio_used(&v->mmio, VSOCK_TXQ);
	}
}

/* Release every connection (owner thread, lock held). */
static void release_all(struct vsock_dev *v)
{
	for (unsigned int i = 0; i < v->max_conns; i++)
		if (v->conns[i].state != VSOCK_FREE)
			conn_release(v, &v->conns[i]);
	v->rst_len = 0;
	v->rst_head = 0;
}

/* Returns true when a reset was finished (connections the caller held are gone). */
static bool finish_reset(struct vsock_dev *v)
{
	if (!v->reset_pending)
		return false;
	v->reset_pending = false;
	release_all(v);
	return true;
}

static bool process_queue(struct vsock_dev *v, unsigned int q)
{
	bool more = false;
	if (q == VSOCK_TXQ)
		more = tx_process(v);
	/* rx kick: buffers arrived; tx: replies may be owed. The event queue is never used. */
	if (q == VSOCK_RXQ || q == VSOCK_TXQ)
		rx_pump(v);
	flush_used(v);
	return more;
}

static bool vsock_queue_notify(struct virtio_mmio_dev *d, unsigned int q)
{
	struct vsock_dev *v = d->priv;
	if (!on_owner(v)) {
		/* A vCPU wrote QueueNotify (no ioeventfd): sockets are only touched by the loop. */
		v->deferred_notify |= 1u << q;
		v->be->kick(v->be_ctx);
		return false;
	}
	(void)finish_reset(v);
	return process_queue(v, q);
}

static void vsock_reset(struct virtio_mmio_dev *d)
{
	struct vsock_dev *v = d->priv;
	/* The queues go away after this returns: drop the held chain and the work owed to them. */
	v->held = false;
	v->deferred_notify = 0;
	v->rx_pushed = v->tx_pushed = false;
	v->reset_pending = true;
	if (on_owner(v))
		(void)finish_reset(v);
	else
		v->be->kick(v->be_ctx);
}

static const struct virtio_dev_ops vsock_ops = {
	.queue_notify = vsock_queue_notify,
	.reset = vsock_reset,
	.config_write = NULL, /* guest_cid is read-only */
};

int vsock_dev_init(struct vsock_dev *v, const struct gmem *mem, uint64_t guest_cid, unsigned int max_conns,
		   const struct vsock_backend *be, void *be_ctx, void (*irq_raise)(void *ctx), void *irq_ctx)
{
	memset(v, 0, sizeof(*v));
	if (guest_cid < 3 || guest_cid >= 0xffffffffull || max_conns == 0 || max_conns > VSOCK_MAX_CONNS_LIMIT)
		return -EINVAL;
	if (!be || !be->connect || !be->established || !be->send || !be->recv || !be->shut_wr || !be->watch ||
	    !be->release || !be->kick)
		return -EINVAL;
	v->guest_cid = guest_cid;
	v->cfg.guest_cid = guest_cid;
	v->be = be;
	v->be_ctx = be_ctx;
	v->owner = pthread_self();
	v->max_conns = max_conns;
	uint64_t per = VSOCK_TOTAL_BUF / max_conns;
	v->buf_alloc = per < VSOCK_CONN_BUF_START ? (uint32_t)per : VSOCK_CONN_BUF_START;
	v->buf_floor = per / 2 < v->buf_alloc ? (uint32_t)(per / 2) : v->buf_alloc;
	v->pool = 0;
	v->nbuckets = 1;
	while (v->nbuckets < 2 * max_conns)
		v->nbuckets <<= 1;
	v->conns = calloc(max_conns, sizeof(*v->conns));
	v->hash = malloc(v->nbuckets * sizeof(*v->hash));
	if (!v->conns || !v->hash) {
		free(v->conns);
		free(v->hash);
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < v->nbuckets; i++)
		v->hash[i] = -1;
	for (unsigned int i = 0; i < max_conns; i++) {
		v->conns[i].next = i + 1 < max_conns ? (int)i + 1 : -1;
		v->conns[i].ctl_next = v->conns[i].ctl_prev = NOT_LISTED;
		v->conns[i].park_next = v->conns[i].park_prev = NOT_LISTED;
	}
	v->free_head = 0;
	v->ctl_head = v->ctl_tail = v->park_head = v->park_tail = -1;
	v->next_host_port = HOST_PORT_MIN;
	uint64_t features = (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_EVENT_IDX) |
			    (1ull << VIRTIO_F_INDIRECT_DESC);
	int r = virtio_mmio_init(&v->mmio, mem, VIRTIO_ID_VSOCK, features, 3, VSOCK_QUEUE_SIZE,
				 (const uint8_t *)&v->cfg, sizeof(v->cfg), &vsock_ops, v, irq_raise, irq_ctx);
	if (r) {
		free(v->conns);
		free(v->hash);
		v->conns = NULL;
		v->hash = NULL;
	}
	return r;
}

void vsock_dev_destroy(struct vsock_dev *v)
{
	if (!v->conns)
		return;
	pthread_mutex_lock(&v->mmio.lock);
	release_all(v);
	pthread_mutex_unlock(&v->mmio.lock);
	virtio_mmio_destroy(&v->mmio);
	free(v->conns);
	free(v->hash);
	v->conns = NULL;
	v->hash = NULL;
}

/* ---- backend entry points ---------------------------------------------------------------- */

static void enter(struct vsock_dev *v)
{
	pthread_mutex_lock(&v->mmio.lock);
}

static void leave(struct vsock_dev *v)
{
	flush_used(v);
	pthread_mutex_unlock(&v->mmio.lock);
}

int vsock_dev_host_connect(struct vsock_dev *v, uint32_t guest_port, void *be, struct vsock_conn **out)
{
	int rc = 0;
	enter(v);
	(void)finish_reset(v);
	if (v->nconns >= v->max_conns) {
		v->stats.table_full++;
		rc = -ENOSPC;
		goto out;
	}
	/* At most max_conns ports are taken: max_conns + 1 tries find a free one. */
	uint32_t port = 0;
	for (unsigned int i = 0; i <= v->max_conns; i++) {
		uint32_t p = v->next_host_port++;
		if (v->next_host_port >= HOST_PORT_END)
			v->next_host_port = HOST_PORT_MIN;
		if (!conn_find(v, p, guest_port)) {
			port = p;
			break;
		}
	}
	struct vsock_conn *c = port ? conn_alloc(v, port, guest_port, VSOCK_CONNECTING_H2G) : NULL;
	if (!c) {
		rc = -ENOSPC;
		goto out;
	}
	c->be = be;
	set_deadline(v, c, vsock_now_ms() + VSOCK_TIMEOUT_MS);
	*out = c;
	ctl_set(v, c, VSOCK_CTL_REQUEST);
out:
	leave(v);
	return rc;
}

void vsock_dev_connected(struct vsock_dev *v, struct vsock_conn *c)
{
	enter(v);
	if (!finish_reset(v) && c->state == VSOCK_CONNECTING_G2H) {
		c->state = VSOCK_ESTABLISHED;
		ctl_set(v, c, VSOCK_CTL_RESPONSE);
		update_watch(v, c);
	}
	leave(v);
}

void vsock_dev_host_reset(struct vsock_dev *v, struct vsock_conn *c)
{
	enter(v);
	if (!finish_reset(v) && c->state != VSOCK_FREE) {
		v->stats.host_errors++;
		conn_rst(v, c);
		rx_pump(v);
	}
	leave(v);
}

void vsock_dev_readable(struct vsock_dev *v, struct vsock_conn *c)
{
	enter(v);
	if (!finish_reset(v) && c->state != VSOCK_FREE) {
		if (c->rx_parked) {
			update_watch(v, c); /* stale event: we wait for rx buffers */
		} else {
			conn_rx(v, c);
			rx_pump(v);
		}
	}
	leave(v);
}

void vsock_dev_writable(struct vsock_dev *v, struct vsock_conn *c)
{
	enter(v);
	if (!finish_reset(v) && c->state != VSOCK_FREE) {
		if (ring_flush(v, c)) {
			maybe_credit_update(v, c);
			conn_after_drain(v, c);
			if (c->state != VSOCK_FREE)
				update_watch(v, c);
		}
		rx_pump(v);
	}
	leave(v);
}

void vsock_dev_run(struct vsock_dev *v)
{
	enter(v);
	(void)finish_reset(v);
	uint32_t q = v->deferred_notify;
	v->deferred_notify = 0;
	bool more = false;
	for (unsigned int i = 0; i < 3; i++)
		if ((q >> i) & 1u && dev_live(v) && v->mmio.vq[i].ready && process_queue(v, i))
			more = true;
	rx_pump(v);
	if (more) {
		v->deferred_notify |= 1u << VSOCK_TXQ;
		v->be->kick(v->be_ctx);
	}
	leave(v);
}

void vsock_dev_tick(struct vsock_dev *v, uint64_t now_ms)
{
	enter(v);
	(void)finish_reset(v);
	for (unsigned int i = 0; i < v->max_conns && v->ntimed > 0; i++) {
		struct vsock_conn *c = &v->conns[i];
		if (c->state != VSOCK_FREE && c->deadline_ms != 0 && c->deadline_ms <= now_ms) {
			v->stats.timeouts++;
			conn_rst(v, c);
		}
	}
	rx_pump(v);
	leave(v);
}
