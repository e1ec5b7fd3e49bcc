/* virtq.h: split virtqueue (virtio 1.x) walked over checked guest memory; no KVM, no threads. */
#ifndef KILN_VIRTQ_H
#define KILN_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "gmem.h"
#include "util.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "virtq.c reads little-endian ring fields with native loads"
#endif

/* Ring layout constants (virtio 1.x, 2.7). */
#define VIRTQ_DESC_F_NEXT      1u
#define VIRTQ_DESC_F_WRITE     2u
#define VIRTQ_DESC_F_INDIRECT  4u
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
#define VIRTQ_USED_F_NO_NOTIFY     1u

#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1     32

/* Largest queue kiln ever offers; a power of two. Bounds the in-flight bitmap. */
#define VIRTQ_MAX_SIZE 1024u
/* Largest indirect table accepted (entries); the spec's largest queue size. */
#define VIRTQ_MAX_INDIRECT 32768u

/* Guest-visible layouts, for size checks and offsets only (never dereferenced). */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
_Static_assert(sizeof(struct virtq_desc) == 16, "virtq_desc layout");
struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};
_Static_assert(sizeof(struct virtq_used_elem) == 8, "virtq_used_elem layout");

/* Bytes each ring occupies for a queue of n entries (event-idx fields included). */
static inline uint64_t virtq_desc_bytes(uint32_t n) { return 16ull * n; }
static inline uint64_t virtq_avail_bytes(uint32_t n) { return 6ull + 2ull * n; }
static inline uint64_t virtq_used_bytes(uint32_t n) { return 6ull + 8ull * n; }

/* One buffer of a popped chain: guest address, length, direction, and its host mapping
 * (checked: [host, host+len) is inside guest RAM). Zero-length descriptors are not reported. */
struct virtq_buf {
	gpa_t gpa;
	uint32_t len;
	bool writable;
	uint8_t *host;
};

/* Summary of a popped chain. */
struct virtq_chain {
	uint16_t head;     /* what virtq_push() must be given back */
	unsigned int n;    /* buffers filled in the caller's array */
	uint32_t out_len;  /* total readable (driver -> device) bytes */
	uint32_t in_len;   /* total writable (device -> driver) bytes */
};

/* Why a queue was declared broken (kept for logs and tests). */
enum virtq_err {
	VQ_OK = 0,
	VQ_ERR_AVAIL_JUMP,     /* avail idx more than queue size ahead (or backwards) */
	VQ_ERR_HEAD_RANGE,     /* head index >= queue size */
	VQ_ERR_HEAD_BUSY,      /* head already in flight (posted twice) */
	VQ_ERR_NEXT_RANGE,     /* next index out of the table */
	VQ_ERR_LOOP,           /* more hops than the table has entries */
	VQ_ERR_ADDR,           /* buffer not inside guest RAM, straddles its end, or wraps */
	VQ_ERR_RING_OVERLAP,   /* buffer overlaps the queue's own rings */
	VQ_ERR_LEN_OVERFLOW,   /* total chain length over 32 bits */
	VQ_ERR_DIRECTION,      /* readable descriptor after a writable one */
	VQ_ERR_INDIRECT_FEAT,  /* indirect used without VIRTIO_F_INDIRECT_DESC */
	VQ_ERR_INDIRECT_NESTED,/* indirect descriptor inside an indirect table */
	VQ_ERR_INDIRECT_NEXT,  /* indirect descriptor with NEXT set */
	VQ_ERR_INDIRECT_LEN,   /* indirect table length 0, not a multiple of 16, or too big */
	VQ_ERR_TOO_MANY,       /* more buffers than the caller's capacity */
	VQ_ERR_NOT_READY,      /* queue not set up */
};

/* One split virtqueue. All fields are the device's own copies: the guest cannot change them. */
struct virtq {
	const struct gmem *mem;
	uint16_t size;            /* entries, power of two, <= VIRTQ_MAX_SIZE */
	bool ready;
	bool broken;              /* set on the first malformed input; pops return -EIO after */
	bool event_idx;           /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;            /* VIRTIO_F_INDIRECT_DESC negotiated */
	enum virtq_err err;       /* reason for broken */
	gpa_t desc_gpa, avail_gpa, used_gpa;
	uint8_t *desc, *avail, *used; /* checked host mappings of the three rings */
	uint16_t last_avail_idx;  /* next avail entry to consume */
	uint16_t shadow_avail_idx;/* last avail->idx value read (copied once) */
	uint16_t used_idx;        /* next used entry to fill (device-private copy) */
	uint16_t signalled_used;  /* used_idx at the last interrupt */
	bool signalled_used_valid;
	unsigned int inflight;    /* heads popped and not yet pushed */
	uint64_t busy[VIRTQ_MAX_SIZE / 64]; /* bitmap of heads in flight */
};

/*
 * Check and activate a queue: size a power of two in [1, VIRTQ_MAX_SIZE]; desc 16-aligned,
 * avail 2-aligned, used 4-aligned; each ring wholly inside one guest RAM region; rings do not
 * overlap. On success the queue is ready with indices at 0. Returns 0 or -EINVAL (queue untouched
 * except cleared). features are the negotiated feature bits (EVENT_IDX, INDIRECT_DESC used).
 */
int virtq_init(struct virtq *q, const struct gmem *mem, uint32_t size, gpa_t desc, gpa_t avail,
	       gpa_t used, uint64_t features) KILN_WUR;

/* Return the queue to its never-set-up state. Heads in flight are forgotten. */
void virtq_reset(struct virtq *q);

/*
 * Take the next available chain. bufs has room for cap entries (cap is also a bound on hops).
 * Returns 1 with *c and bufs[0..c->n) filled; 0 when the ring is empty; -EIO when the queue is
 * (now) broken: the caller must put the device into DEVICE_NEEDS_RESET. The walk never reads
 * outside guest RAM, reads each guest field once, and never returns a buffer overlapping the rings.
 * With EVENT_IDX, an empty ring also publishes avail_event so the driver kicks on the next add.
 */
int virtq_pop(struct virtq *q, struct virtq_chain *c, struct virtq_buf *bufs, unsigned int cap) KILN_WUR;

/*
 * Return a chain to the driver: used element {head, len} then, with release ordering, used->idx.
 * head must be one returned by virtq_pop and not pushed since; otherwise -EINVAL and nothing is
 * written. Returns 0.
 */
int virtq_push(struct virtq *q, uint16_t head, uint32_t len) KILN_WUR;

/*
 * After one or more pushes: true when the driver wants an interrupt (EVENT_IDX used_event, or
 * the NO_INTERRUPT flag without it). Contains the full barrier the spec needs between
 * publishing used->idx and reading the driver's suppression fields. Records the point signalled.
 */
bool virtq_should_notify(struct virtq *q);

/*
 * One direction of a popped chain as a byte stream: its readable buffers (writable false) or its
 * writable ones, in chain order. virtq_iov() points at most max iovecs at bytes [skip, skip+len)
 * of it and returns their count, or -1 when the stream ends before skip+len or max iovecs are
 * not enough. virtq_copy_out() copies those bytes out of guest memory, each read once, into dst
 * (the caller decodes only its copy); false when the stream ends before skip+len.
 */
int virtq_iov(const struct virtq_buf *bufs, unsigned int n, bool writable, uint64_t skip, uint64_t len,
	      struct iovec *iov, unsigned int max) KILN_WUR;
bool virtq_copy_out(const struct virtq_buf *bufs, unsigned int n, bool writable, uint64_t skip, void *dst,
		    uint64_t len) KILN_WUR;

/* Human-readable text for an enum virtq_err. */
const char *virtq_strerror(enum virtq_err e);

#endif
