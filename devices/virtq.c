/* virtq.c: split virtqueue walker: copy-once ring reads, bounded chain walk, used ring, EVENT_IDX. */
#include "virtq.h"

#include <errno.h>
#include <string.h>

/*
 * Memory model. The rings live in guest RAM that the guest's vCPUs write concurrently.
 * Every guest-writable field is read with exactly one __atomic load into a local, and only
 * the local is checked and used (no double fetch, whatever the compiler does).
 * Ordering (virtio 1.x 2.7.13 and the Linux/vhost conventions):
 *  - avail->idx is loaded with acquire: ring entries and descriptors behind it are read after it;
 *  - used elements are stored before used->idx, which is stored with release;
 *  - a full fence separates publishing avail_event / used->idx from re-reading the driver's
 *    avail->idx / used_event, so neither side can miss the other's update.
 */

#define AVAIL_FLAGS 0u
#define AVAIL_IDX   2u
#define AVAIL_RING  4u
#define USED_FLAGS  0u
#define USED_IDX    2u
#define USED_RING   4u

static inline uint16_t load16(const uint8_t *p, int order)
{
	return __atomic_load_n((const uint16_t *)(const void *)p, order);
}

static inline void store16(uint8_t *p, uint16_t v, int order)
{
	__atomic_store_n((uint16_t *)(void *)p, v, order);
}

static inline void store32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)(void *)p, v, __ATOMIC_RELAXED);
}

/* A descriptor copied out of guest memory once. */
struct desc_copy {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

static void desc_load(const uint8_t *p, struct desc_copy *d)
{
	if (((uintptr_t)p & 7u) == 0) {
		d->addr = __atomic_load_n((const uint64_t *)(const void *)p, __ATOMIC_RELAXED);
		d->len = __atomic_load_n((const uint32_t *)(const void *)(p + 8), __ATOMIC_RELAXED);
		d->flags = load16(p + 12, __ATOMIC_RELAXED);
		d->next = load16(p + 14, __ATOMIC_RELAXED);
	} else {
		/* Indirect tables need not be aligned: one volatile pass, then decode the copy. */
		uint8_t tmp[16];
		const volatile uint8_t *v = p;
		for (unsigned int i = 0; i < sizeof(tmp); i++)
			tmp[i] = v[i];
		d->addr = ld64(tmp);
		d->len = ld32(tmp + 8);
		d->flags = ld16(tmp + 12);
		d->next = ld16(tmp + 14);
	}
}

static bool overlaps(gpa_t a, uint64_t alen, gpa_t b, uint64_t blen)
{
	uint64_t aend, bend;
	if (!add_u64(a, alen, &aend) || !add_u64(b, blen, &bend))
		return true;
	return a < bend && b < aend;
}

static bool hits_rings(const struct virtq *q, gpa_t gpa, uint64_t len)
{
	return overlaps(gpa, len, q->desc_gpa, virtq_desc_bytes(q->size)) ||
	       overlaps(gpa, len, q->avail_gpa, virtq_avail_bytes(q->size)) ||
	       overlaps(gpa, len, q->used_gpa, virtq_used_bytes(q->size));
}

static bool head_busy(const struct virtq *q, uint16_t h)
{
	return (q->busy[h / 64] >> (h % 64)) & 1u;
}

static void head_set(struct virtq *q, uint16_t h, bool on)
{
	uint64_t bit = 1ull << (h % 64);
	if (on)
		q->busy[h / 64] |= bit;
	else
		q->busy[h / 64] &= ~bit;
}

static int fail(struct virtq *q, enum virtq_err e)
{
	if (!q->broken) {
		q->broken = true;
		q->err = e;
	}
	return -EIO;
}

/* The buffer holding byte skip of one direction's stream, and skip made relative to it. */
static bool stream_seek(const struct virtq_buf *bufs, unsigned int n, bool writable, unsigned int *i,
			uint64_t *skip)
{
	for (; *i < n; (*i)++) {
		if (bufs[*i].writable != writable)
			continue;
		if (*skip < bufs[*i].len)
			return true;
		*skip -= bufs[*i].len;
	}
	return false;
}

int virtq_iov(const struct virtq_buf *bufs, unsigned int n, bool writable, uint64_t skip, uint64_t len,
	      struct iovec *iov, unsigned int max)
{
	unsigned int i = 0, k = 0;

	while (len > 0) {
		if (!stream_seek(bufs, n, writable, &i, &skip) || k >= max)
			return -1;
		uint64_t take = bufs[i].len - skip;
		if (take > len)
			take = len;
		iov[k].iov_base = bufs[i].host + skip;
		iov[k].iov_len = take;
		k++;
		len -= take;
		skip = 0;
		i++;
	}
	return (int)k;
}

bool virtq_copy_out(const struct virtq_buf *bufs, unsigned int n, bool writable, uint64_t skip, void *dst,
		    uint64_t len)
{
	unsigned int i = 0;
	uint8_t *d = dst;

	while (len > 0) {
		if (!stream_seek(bufs, n, writable, &i, &skip))
			return false;
		uint64_t take = bufs[i].len - skip;
		if (take > len)
			take = len;
		const volatile uint8_t *src = bufs[i].host + skip;
		for (uint64_t k = 0; k < take; k++)
			*d++ = src[k];
		len -= take;
		skip = 0;
		i++;
	}
	return true;
}

const char *virtq_strerror(enum virtq_err e)
{
	switch (e) {
	case VQ_OK: return "no error";
	case VQ_ERR_AVAIL_JUMP: return "avail index moved more than the queue size";
	case VQ_ERR_HEAD_RANGE: return "head index out of range";
	case VQ_ERR_HEAD_BUSY: return "head posted while already in flight";
	case VQ_ERR_NEXT_RANGE: return "next index out of range";
	case VQ_ERR_LOOP: return "descriptor chain loops or exceeds the table";
	case VQ_ERR_ADDR: return "buffer outside guest RAM";
	case VQ_ERR_RING_OVERLAP: return "buffer overlaps the queue rings";
	case VQ_ERR_LEN_OVERFLOW: return "chain length exceeds 32 bits";
	case VQ_ERR_DIRECTION: return "readable descriptor after a writable one";
	case VQ_ERR_INDIRECT_FEAT: return "indirect descriptor not negotiated";
	case VQ_ERR_INDIRECT_NESTED: return "nested indirect descriptor";
	case VQ_ERR_INDIRECT_NEXT: return "indirect descriptor with NEXT";
	case VQ_ERR_INDIRECT_LEN: return "bad indirect table length";
	case VQ_ERR_TOO_MANY: return "chain has more buffers than the device accepts";
	case VQ_ERR_NOT_READY: return "queue not ready";
	}
	return "unknown";
}

void virtq_reset(struct virtq *q)
{
	memset(q, 0, sizeof(*q));
}

int virtq_init(struct virtq *q, const struct gmem *mem, uint32_t size, gpa_t desc, gpa_t avail,
	       gpa_t used, uint64_t features)
{
	virtq_reset(q);
	if (!mem || size == 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1)) != 0)
		return -EINVAL;
	if ((desc & 15) || (avail & 1) || (used & 3))
		return -EINVAL;
	uint64_t dlen = virtq_desc_bytes(size), alen = virtq_avail_bytes(size), ulen = virtq_used_bytes(size);
	uint8_t *d = gmem_ptr(mem, desc, dlen);
	uint8_t *a = gmem_ptr(mem, avail, alen);
	uint8_t *u = gmem_ptr(mem, used, ulen);
	if (!d || !a || !u)
		return -EINVAL;
	/* The atomic loads need host alignment too (guest RAM is page-aligned, so this holds). */
	if (((uintptr_t)d & 15) || ((uintptr_t)a & 1) || ((uintptr_t)u & 3))
		return -EINVAL;
	if (overlaps(desc, dlen, avail, alen) || overlaps(desc, dlen, used, ulen) ||
	    overlaps(avail, alen, used, ulen))
		return -EINVAL;
	q->mem = mem;
	q->size = (uint16_t)size;
	q->desc_gpa = desc;
	q->avail_gpa = avail;
	q->used_gpa = used;
	q->desc = d;
	q->avail = a;
	q->used = u;
	q->event_idx = (features >> VIRTIO_F_EVENT_IDX) & 1u;
	q->indirect = (features >> VIRTIO_F_INDIRECT_DESC) & 1u;
	q->ready = true;
	return 0;
}

/* Re-read avail->idx (acquire). false when it moved by more than the queue size. */
static bool refresh_avail(struct virtq *q)
{
	uint16_t idx = load16(q->avail + AVAIL_IDX, __ATOMIC_ACQUIRE);
	if ((uint16_t)(idx - q->last_avail_idx) > q->size)
		return false;
	q->shadow_avail_idx = idx;
	return true;
}

static int walk(struct virtq *q, uint16_t head, struct virtq_chain *c, struct virtq_buf *bufs,
		unsigned int cap)
{
	const uint8_t *table = q->desc;
	uint32_t tsize = q->size, idx = head, hops = 0;
	bool in_indirect = false, seen_write = false;
	uint64_t in = 0, out = 0;
	unsigned int n = 0;

	for (;;) {
		struct desc_copy d;
		if (++hops > tsize)
			return fail(q, VQ_ERR_LOOP);
		desc_load(table + 16u * idx, &d);

		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!q->indirect)
				return fail(q, VQ_ERR_INDIRECT_FEAT);
			if (in_indirect)
				return fail(q, VQ_ERR_INDIRECT_NESTED);
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return fail(q, VQ_ERR_INDIRECT_NEXT);
			if (d.len == 0 || (d.len % 16) != 0 || d.len / 16 > VIRTQ_MAX_INDIRECT)
				return fail(q, VQ_ERR_INDIRECT_LEN);
			const uint8_t *t = gmem_ptr(q->mem, d.addr, d.len);
			if (!t)
				return fail(q, VQ_ERR_ADDR);
			if (hits_rings(q, d.addr, d.len))
				return fail(q, VQ_ERR_RING_OVERLAP);
			table = t;
			tsize = d.len / 16;
			in_indirect = true;
			idx = 0;
			hops = 0;
			continue;
		}

		if (d.len != 0) {
			bool w = (d.flags & VIRTQ_DESC_F_WRITE) != 0;
			if (!w && seen_write)
				return fail(q, VQ_ERR_DIRECTION);
			seen_write |= w;
			uint8_t *p = gmem_ptr(q->mem, d.addr, d.len);
			if (!p)
				return fail(q, VQ_ERR_ADDR);
			if (hits_rings(q, d.addr, d.len))
				return fail(q, VQ_ERR_RING_OVERLAP);
			if (n >= cap)
				return fail(q, VQ_ERR_TOO_MANY);
			if (w)
				in += d.len;
			else
				out += d.len;
			if (in + out > UINT32_MAX)
				return fail(q, VQ_ERR_LEN_OVERFLOW);
			bufs[n].gpa = d.addr;
			bufs[n].len = d.len;
			bufs[n].writable = w;
			bufs[n].host = p;
			n++;
		}

		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= tsize)
			return fail(q, VQ_ERR_NEXT_RANGE);
		idx = d.next;
	}
	c->head = head;
	c->n = n;
	c->in_len = (uint32_t)in;
	c->out_len = (uint32_t)out;
	return 1;
}

int virtq_pop(struct virtq *q, struct virtq_chain *c, struct virtq_buf *bufs, unsigned int cap)
{
	if (q->broken)
		return -EIO;
	if (!q->ready)
		return 0;
	if (q->last_avail_idx == q->shadow_avail_idx) {
		if (!refresh_avail(q))
			return fail(q, VQ_ERR_AVAIL_JUMP);
		if (q->last_avail_idx == q->shadow_avail_idx) {
			if (!q->event_idx)
				return 0;
			/* Ask for a kick on the next add, then look once more (the driver may have
			 * added between our read and its check of avail_event). */
			store16(q->used + USED_RING + 8u * q->size, q->last_avail_idx, __ATOMIC_RELAXED);
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			if (!refresh_avail(q))
				return fail(q, VQ_ERR_AVAIL_JUMP);
			if (q->last_avail_idx == q->shadow_avail_idx)
				return 0;
		}
	}
	uint16_t slot = (uint16_t)(q->last_avail_idx & (q->size - 1));
	uint16_t head = load16(q->avail + AVAIL_RING + 2u * slot, __ATOMIC_RELAXED);
	if (head >= q->size)
		return fail(q, VQ_ERR_HEAD_RANGE);
	if (head_busy(q, head))
		return fail(q, VQ_ERR_HEAD_BUSY);
	int r = walk(q, head, c, bufs, cap);
	if (r < 0)
		return r;
	q->last_avail_idx++;
	head_set(q, head, true);
	q->inflight++;
	return 1;
}

int virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
	if (!q->ready || head >= q->size || !head_busy(q, head))
		return -EINVAL;
	uint8_t *e = q->used + USED_RING + 8u * (q->used_idx & (q->size - 1u));
	store32(e, head);
	store32(e + 4, len);
	q->used_idx++;
	store16(q->used + USED_IDX, q->used_idx, __ATOMIC_RELEASE);
	head_set(q, head, false);
	q->inflight--;
	return 0;
}

bool virtq_should_notify(struct virtq *q)
{
	if (!q->ready)
		return false;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!q->event_idx) {
		uint16_t flags = load16(q->avail + AVAIL_FLAGS, __ATOMIC_RELAXED);
		return !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
	}
	uint16_t old = q->signalled_used, now = q->used_idx;
	bool valid = q->signalled_used_valid;
	q->signalled_used = now;
	q->signalled_used_valid = true;
	if (!valid)
		return true;
	uint16_t ev = load16(q->avail + AVAIL_RING + 2u * q->size, __ATOMIC_RELAXED);
	/* vring_need_event(): the driver asked for an interrupt once used passes ev. */
	return (uint16_t)(now - ev - 1u) < (uint16_t)(now - old);
}
