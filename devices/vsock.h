/* vsock.h: virtio-vsock device (stream sockets, credit flow control) over a socket-free backend API. */
#ifndef KILN_VSOCK_H
#define KILN_VSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "gmem.h"
#include "util.h"
#include "virtio_mmio.h"
#include "virtq.h"

#define VIRTIO_ID_VSOCK 19

#define VSOCK_HOST_CID 2u
#define VSOCK_HDR_SIZE 44u
#define VSOCK_MAX_PKT (64u * 1024u)     /* payload bytes in one packet, either way */
#define VSOCK_QUEUE_SIZE 256u
#define VSOCK_MAX_BUFS VSOCK_QUEUE_SIZE /* buffers per chain (a walk is capped by the queue size) */
#define VSOCK_RXQ 0u
#define VSOCK_TXQ 1u
#define VSOCK_EVQ 2u

#define VSOCK_DEFAULT_MAX_CONNS 1024u
#define VSOCK_MAX_CONNS_LIMIT 2048u     /* the event loop has 4096 slots for everything */
/* Bytes of host memory all connections together may ever hold for guest->host data: the credit
 * (buf_alloc) advertised over all live connections never sums to more (the pool). Every slot has a
 * floor of min(start, this / (2 * max_conns)) reserved in the pool; a new connection advertises
 * start = min(VSOCK_CONN_BUF_START, this / max_conns) where the pool has room, else what is left
 * (at least its floor). A connection whose guest has used over half of its credit while the host
 * keeps up (at most a quarter of it buffered), or that asks CREDIT_REQUEST, grows x4 up to
 * VSOCK_CONN_BUF_MAX and the guest's own buf_alloc (Linux sends at most min(ours, its own): 256 KiB
 * by default) out of the pool beyond the reserved floors. It never shrinks (the guest's credit is
 * buf_alloc - in flight, in u32); its credit goes back to the pool when it is freed. */
#define VSOCK_TOTAL_BUF (64u * 1024u * 1024u)
#define VSOCK_CONN_BUF_START (256u * 1024u)
#define VSOCK_CONN_BUF_MAX (1024u * 1024u)
#define VSOCK_TIMEOUT_MS 2000u          /* host-initiated connect and shutdown drain */
/* RSTs waiting for an rx buffer. Replies to guest packets that get no connection (refused,
 * malformed) may fill only VSOCK_RST_SPARE of it (more are dropped, counted); the rest is kept for
 * the RST that ends each connection the guest knows, so a mass close (the host hanging up on
 * every connection at once) never loses one. */
#define VSOCK_RST_SPARE 256u
#define VSOCK_RST_RING (VSOCK_MAX_CONNS_LIMIT + VSOCK_RST_SPARE)

/* Packet header fields (virtio 1.2, 5.10.6). */
#define VSOCK_TYPE_STREAM 1u
enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};
#define VSOCK_SHUTDOWN_RCV 1u  /* the sender will receive no more data */
#define VSOCK_SHUTDOWN_SEND 2u /* the sender will send no more data */
#define VSOCK_SHUTDOWN_ALL (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)

/* The header as the guest lays it out (little-endian), for the size check only. */
struct virtio_vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_vsock_hdr) == VSOCK_HDR_SIZE, "virtio_vsock_hdr layout");

struct virtio_vsock_config {
	uint64_t guest_cid;
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_vsock_config) == 8, "virtio_vsock_config layout");

/* A decoded header (host byte order). */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

/* ---- pure helpers (no state, no fds) ---------------------------------------------------- */

void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h);
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE]);

/* What to do with a packet from the guest's tx queue. */
enum vsock_verdict {
	VSOCK_PKT_OK = 0,
	VSOCK_PKT_DROP_SHORT,  /* readable part under 44 bytes: no header to answer */
	VSOCK_PKT_DROP_LEN,    /* len > 64 KiB, len != readable bytes - 44, or payload on a control op */
	VSOCK_PKT_DROP_SRC,    /* src_cid is not the guest's CID (impersonation): never answered */
	VSOCK_PKT_DROP_RST,    /* an RST that would otherwise be answered with RST: dropped */
	VSOCK_PKT_RST_DST,     /* dst_cid is not the host (2) */
	VSOCK_PKT_RST_TYPE,    /* type is not STREAM */
	VSOCK_PKT_RST_OP,      /* unknown op */
	VSOCK_PKT_RST_FLAGS,   /* SHUTDOWN with bits other than RCV|SEND */
	VSOCK_PKT_VERDICTS
};

/*
 * Validate a decoded header against the chain it came in: out_len is the chain's total readable
 * bytes (header included), in_len its writable bytes (must be 0: tx chains are device-readable only).
 * Pure. Checks, in order: size, len (<= 64 KiB and == out_len - 44, 0 on control ops), src_cid ==
 * guest_cid, dst_cid == 2, type STREAM, known op, SHUTDOWN flags. An RST never earns an RST.
 */
enum vsock_verdict vsock_check(const struct vsock_hdr *h, uint64_t guest_cid, uint64_t out_len, uint64_t in_len);

/* Text for a verdict (logs, tests). */
const char *vsock_verdict_str(enum vsock_verdict v);

/*
 * Credit the sender may still use: the receiver advertised buf_alloc and has consumed fwd_cnt bytes;
 * the sender has sent tx_cnt bytes. All counters wrap at 2^32. If the receiver claims to have
 * consumed more than was sent, or to hold more than buf_alloc (it shrank), the credit is 0.
 */
static inline uint32_t vsock_credit(uint32_t buf_alloc, uint32_t fwd_cnt, uint32_t tx_cnt)
{
	uint32_t in_flight = tx_cnt - fwd_cnt; /* modulo 2^32 */
	return in_flight > buf_alloc ? 0 : buf_alloc - in_flight;
}

/* ---- device --------------------------------------------------------------------------- */

enum vsock_state {
	VSOCK_FREE = 0,
	VSOCK_CONNECTING_H2G,  /* host client asked: REQUEST sent (or queued) to the guest */
	VSOCK_CONNECTING_G2H,  /* guest asked: the backend is connecting to the host listener */
	VSOCK_ESTABLISHED,
	VSOCK_CLOSING,         /* guest shut both ways: RST once buffered data reaches the host */
};

struct vsock_conn {
	enum vsock_state state;
	uint32_t host_port, guest_port;
	void *be;                     /* the backend's own per-connection state */
	/* guest -> host: we are the receiver */
	uint32_t buf_alloc;           /* credit we advertise (only grows, out of the device's pool) */
	uint32_t fwd_cnt;             /* bytes handed to the host */
	uint32_t fwd_cnt_sent;        /* fwd_cnt the guest was last told */
	uint32_t tx_cnt;              /* bytes received from the guest (buffered = tx_cnt - fwd_cnt) */
	uint8_t *buf;                 /* ring of buf_alloc bytes, allocated only while data waits */
	uint32_t buf_head;            /* offset of the oldest byte */
	/* host -> guest: we are the sender */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
	uint32_t rx_cnt;              /* bytes delivered to the guest */
	/* shutdown state */
	uint32_t peer_shut;           /* VSOCK_SHUTDOWN_* the guest sent */
	uint32_t local_shut;          /* VSOCK_SHUTDOWN_* we sent (SEND: host EOF) */
	bool host_shut_wr;            /* backend told to shut the host write side */
	/* control packets owed to the guest (sent before any data of this connection) */
	uint32_t ctl;                 /* VSOCK_CTL_* bits */
	bool credit_req_sent;         /* CREDIT_REQUEST sent since the guest last spoke */
	bool rx_parked;               /* waits for rx buffers */
	bool watch_rd, watch_wr;      /* interest last given to the backend */
	uint64_t deadline_ms;         /* 0: none */
	int next;                     /* hash chain, pool index or -1 */
	int ctl_next, ctl_prev;       /* list of connections with ctl != 0 (-2: not on it) */
	int park_next, park_prev;     /* list of connections waiting for rx buffers */
};

#define VSOCK_CTL_REQUEST  1u
#define VSOCK_CTL_RESPONSE 2u
#define VSOCK_CTL_CREDIT_UPDATE 4u
#define VSOCK_CTL_CREDIT_REQUEST 8u
#define VSOCK_CTL_SHUTDOWN 16u   /* SHUTDOWN with local_shut flags */

/*
 * The backend: the device calls these in the event-loop thread with the transport lock held.
 * They must not call back into vsock_dev_* (they would deadlock); they report by return value.
 */
struct vsock_backend {
	/* Guest wants host port P. 1: connected now; 0: in progress (then vsock_dev_connected() or
	 * vsock_dev_host_reset()); negative: refused (the guest gets RST). Set c->be on 1 or 0. */
	int (*connect)(void *ctx, struct vsock_conn *c, uint32_t host_port);
	/* A host-initiated connection was accepted by the guest (RESPONSE). 0, or negative: RST. */
	int (*established)(void *ctx, struct vsock_conn *c);
	/* Write guest data to the host. Bytes taken (may be fewer), -EAGAIN, or -errno (RST). */
	ssize_t (*send)(void *ctx, struct vsock_conn *c, const struct iovec *iov, int iovcnt);
	/* Read host data into guest buffers. Bytes, 0 at EOF, -EAGAIN, or -errno (RST). */
	ssize_t (*recv)(void *ctx, struct vsock_conn *c, const struct iovec *iov, int iovcnt);
	/* Guest will send no more and everything was written: shut the host socket's write side. */
	void (*shut_wr)(void *ctx, struct vsock_conn *c);
	/* Interest: call vsock_dev_readable/writable when the host side is readable/writable. */
	void (*watch)(void *ctx, struct vsock_conn *c, bool rd, bool wr);
	/* The connection is gone (the guest was sent RST or sent one): close everything; c is not
	 * valid after this returns. Called at most once per connection. */
	void (*release)(void *ctx, struct vsock_conn *c);
	/* Any thread: please call vsock_dev_run() soon from the event loop (an eventfd write). */
	void (*kick)(void *ctx);
};

/* Counters (for logs, tests, metrics). */
struct vsock_stats {
	uint64_t rx_pkts, tx_pkts;           /* packets to / from the guest */
	uint64_t rx_bytes, tx_bytes;         /* payload bytes to / from the guest */
	uint64_t verdict[VSOCK_PKT_VERDICTS];/* tx packets per verdict */
	uint64_t rst_sent;                   /* RSTs delivered to the guest */
	uint64_t rst_dropped;                /* RSTs lost because the RST ring was full */
	uint64_t credit_violations;          /* guest sent past our credit: RST */
	uint64_t proto_errors;               /* op not valid in the connection's state: RST */
	uint64_t table_full;                 /* REQUEST or host connect refused: table full */
	uint64_t refused;                    /* backend refused a guest connect */
	uint64_t timeouts;                   /* connect or shutdown timeouts */
	uint64_t host_errors;                /* host peer errors or vanished: RST */
	uint64_t credit_grows;               /* a connection's buf_alloc grew out of the pool */
};

struct vsock_rst {
	uint64_t src_cid;
	uint32_t src_port, dst_port;
};

struct vsock_dev {
	struct virtio_mmio_dev mmio;
	struct virtio_vsock_config cfg;
	uint64_t guest_cid;
	const struct vsock_backend *be;
	void *be_ctx;
	pthread_t owner;                     /* the event-loop thread: the only one touching the backend */

	unsigned int max_conns, nconns;
	uint32_t buf_alloc;                  /* credit a new connection starts with (pool permitting) */
	uint32_t buf_floor;                  /* credit reserved in the pool for every slot */
	uint64_t pool;                       /* sum of buf_alloc over live connections (<= VSOCK_TOTAL_BUF) */
	struct vsock_conn *conns;            /* max_conns slots */
	int *hash;                           /* nbuckets heads */
	unsigned int nbuckets;               /* power of two */
	int free_head;                       /* free slots, chained through next */
	int ctl_head, ctl_tail;
	int park_head, park_tail;
	uint32_t next_host_port;             /* host-initiated ports come from [2^30, 2^31) */
	unsigned int ntimed;                 /* connections with a deadline */
	uint64_t buffered;                   /* bytes held in connection rings (<= pool) */

	struct vsock_rst rst[VSOCK_RST_RING];
	unsigned int rst_head, rst_len;

	/* one rx chain taken from the ring but not used yet */
	bool held;
	struct virtq_chain held_c;
	struct virtq_buf held_bufs[VSOCK_MAX_BUFS];

	struct virtq_buf bufs[VSOCK_MAX_BUFS];
	struct iovec iov[VSOCK_MAX_BUFS];

	bool reset_pending;                  /* the driver reset the device on another thread */
	uint32_t deferred_notify;            /* queue bits kicked on a non-owner thread */
	bool rx_pushed, tx_pushed;           /* used-ring entries waiting for virtio_mmio_used */
	struct vsock_stats stats;
};

/*
 * Set up the device: guest_cid in [3, 2^32-2], max_conns in [1, VSOCK_MAX_CONNS_LIMIT], be with every
 * callback set. The calling thread becomes the owner (the event-loop thread): the backend is only
 * ever called on it. Returns 0, -EINVAL or -ENOMEM. Route MMIO to v->mmio and kicks of queue q to
 * virtio_mmio_notify(&v->mmio, q) (q = 0 rx, 1 tx, 2 event). Undo with vsock_dev_destroy().
 */
int vsock_dev_init(struct vsock_dev *v, const struct gmem *mem, uint64_t guest_cid, unsigned int max_conns,
		   const struct vsock_backend *be, void *be_ctx, void (*irq_raise)(void *ctx),
		   void *irq_ctx) KILN_WUR;
/* Release every connection (backend release each), free memory. Owner thread. */
void vsock_dev_destroy(struct vsock_dev *v);

/*
 * Entry points for the backend, owner thread only, transport lock not held. Any of them may call
 * the backend's release() for the connection it is given (or for others): the backend must not
 * touch c after the call unless it still owns it (release not called).
 */
/* A host client asked to connect to guest port guest_port: allocates a host port in [2^30, 2^31),
 * queues REQUEST. 0 with *out set, -ENOSPC (table full) or -EINVAL. */
int vsock_dev_host_connect(struct vsock_dev *v, uint32_t guest_port, void *be,
			   struct vsock_conn **out) KILN_WUR;
/* An in-progress guest-initiated connect finished: RESPONSE to the guest. */
void vsock_dev_connected(struct vsock_dev *v, struct vsock_conn *c);
/* The host side failed or vanished: RST to the guest, release. */
void vsock_dev_host_reset(struct vsock_dev *v, struct vsock_conn *c);
/* The host side is readable / writable (as asked through watch). */
void vsock_dev_readable(struct vsock_dev *v, struct vsock_conn *c);
void vsock_dev_writable(struct vsock_dev *v, struct vsock_conn *c);
/* Deferred work: a reset done on a vCPU thread, kicks that came on another thread. */
void vsock_dev_run(struct vsock_dev *v);
/* Expire deadlines (connect and shutdown timeouts) at monotonic time now_ms. */
void vsock_dev_tick(struct vsock_dev *v, uint64_t now_ms);

/* Milliseconds of CLOCK_MONOTONIC (the clock deadlines use). */
uint64_t vsock_now_ms(void);

#endif
