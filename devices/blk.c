/* blk.c: virtio-blk: pure request validation (blk_parse) and synchronous host I/O (blk_execute). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fallocate, memfd_create; the Makefile defines it already */
#endif
#include "blk.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- pure parsing -------------------------------------------------------- */

/* Build r->iov for bytes [skip, skip+len) of one direction's stream. */
static bool slice(const struct virtq_buf *bufs, unsigned int n, bool writable, uint64_t skip,
		  uint64_t len, struct blk_req *r)
{
	int k = virtq_iov(bufs, n, writable, skip, len, r->iov, BLK_MAX_BUFS);

	r->niov = k < 0 ? 0 : (unsigned int)k;
	return k >= 0;
}

/* [sector*512, +len) inside the disk, overflow-safe. */
static bool in_disk(const struct blk_geom *g, uint64_t sector, uint64_t len, uint64_t *off)
{
	uint64_t size;
	if (!mul_u64(sector, BLK_SECTOR, off) || !mul_u64(g->capacity, BLK_SECTOR, &size))
		return false;
	return range_ok(*off, len, size);
}

static uint8_t parse_segs(const struct blk_geom *g, const struct virtq_buf *bufs, unsigned int n,
			  uint64_t dout, struct blk_req *r)
{
	if (g->ro)
		return VIRTIO_BLK_S_IOERR;
	if (dout == 0 || dout % 16 != 0 || dout / 16 > BLK_MAX_DISCARD_SEG)
		return VIRTIO_BLK_S_IOERR;
	uint8_t raw[16 * BLK_MAX_DISCARD_SEG];
	if (!virtq_copy_out(bufs, n, false, 16, raw, dout))
		return VIRTIO_BLK_S_IOERR;
	r->nseg = (unsigned int)(dout / 16);
	for (unsigned int i = 0; i < r->nseg; i++) {
		struct blk_seg *s = &r->seg[i];
		uint64_t off;
		s->sector = ld64(raw + 16 * i);
		s->num_sectors = ld32(raw + 16 * i + 8);
		s->flags = ld32(raw + 16 * i + 12);
		uint32_t allowed = r->type == VIRTIO_BLK_T_WRITE_ZEROES ? VIRTIO_BLK_WZ_F_UNMAP : 0;
		if (s->flags & ~allowed)
			return VIRTIO_BLK_S_UNSUPP;
		if (s->num_sectors > BLK_MAX_DISCARD_SECTORS)
			return VIRTIO_BLK_S_IOERR;
		if (!in_disk(g, s->sector, (uint64_t)s->num_sectors * BLK_SECTOR, &off))
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

uint8_t blk_parse(const struct blk_geom *g, const struct virtq_buf *bufs, unsigned int n, struct blk_req *r)
{
	r->type = UINT32_MAX;
	r->sector = 0;
	r->off = 0;
	r->len = 0;
	r->niov = 0;
	r->nseg = 0;
	r->status = NULL;
	r->used_len = 0;
	if (n == 0 || n > BLK_MAX_BUFS || !bufs[n - 1].writable || bufs[n - 1].len == 0)
		return VIRTIO_BLK_S_IOERR; /* no status byte: returned with len 0 */

	/* The status is the last byte of the last (writable) buffer; it is never part of data. */
	r->status = bufs[n - 1].host + bufs[n - 1].len - 1;
	r->used_len = 1;
	uint64_t out = 0, in = 0;
	for (unsigned int i = 0; i < n; i++) {
		if (bufs[i].writable)
			in += bufs[i].len;
		else
			out += bufs[i].len;
	}
	uint64_t din = in - 1;

	uint8_t hdr[16];
	if (out < sizeof(hdr) || !virtq_copy_out(bufs, n, false, 0, hdr, sizeof(hdr)))
		return VIRTIO_BLK_S_IOERR;
	r->type = ld32(hdr);
	r->sector = ld64(hdr + 8);
	uint64_t dout = out - sizeof(hdr);

	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		if (din % BLK_SECTOR != 0 || !in_disk(g, r->sector, din, &r->off))
			return VIRTIO_BLK_S_IOERR;
		if (!slice(bufs, n, true, 0, din, r))
			return VIRTIO_BLK_S_IOERR;
		r->len = din;
		r->used_len = (uint32_t)in; /* in fits: the chain total is capped at 32 bits */
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_OUT:
		if (g->ro)
			return VIRTIO_BLK_S_IOERR;
		if (dout % BLK_SECTOR != 0 || !in_disk(g, r->sector, dout, &r->off))
			return VIRTIO_BLK_S_IOERR;
		if (!slice(bufs, n, false, sizeof(hdr), dout, r))
			return VIRTIO_BLK_S_IOERR;
		r->len = dout;
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_FLUSH:
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID: {
		/* A buffer under 20 bytes gets the first din bytes of the ID. */
		uint64_t take = din < BLK_ID_BYTES ? din : BLK_ID_BYTES;
		if (take == 0 || !slice(bufs, n, true, 0, take, r))
			return VIRTIO_BLK_S_IOERR;
		r->len = take;
		r->used_len = (uint32_t)take + 1;
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return parse_segs(g, bufs, n, dout, r);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

int blk_parse_opts(char *arg, struct blk_opts *o)
{
	memset(o, 0, sizeof(*o));
	if (!arg || !*arg || *arg == ',')
		return -EINVAL;
	o->path = arg;
	char *p = strchr(arg, ',');
	while (p) {
		*p++ = '\0';
		char *next = strchr(p, ',');
		if (next)
			*next = '\0';
		if (strcmp(p, "ro") == 0) {
			o->ro = true;
		} else if (strncmp(p, "id=", 3) == 0) {
			size_t len = strlen(p + 3);
			if (len == 0 || len > BLK_ID_BYTES)
				return -EINVAL;
			for (size_t i = 0; i < len; i++)
				if (p[3 + i] < 0x21 || p[3 + i] > 0x7e)
					return -EINVAL;
			memcpy(o->serial, p + 3, len);
		} else {
			return -EINVAL;
		}
		p = next;
	}
	return 0;
}

/* ---- host I/O ------------------------------------------------------------ */

static bool rw_full(int fd, bool write, struct iovec *iov, unsigned int niov, uint64_t off)
{
	unsigned int i = 0;
	while (i < niov) {
		if (iov[i].iov_len == 0) {
			i++;
			continue;
		}
		ssize_t n = write ? pwritev(fd, iov + i, (int)(niov - i), (off_t)off)
				  : preadv(fd, iov + i, (int)(niov - i), (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false; /* error, or EOF: the image shrank under us */
		off += (uint64_t)n;
		size_t done = (size_t)n;
		while (i < niov && done >= iov[i].iov_len) {
			done -= iov[i].iov_len;
			i++;
		}
		if (done) {
			iov[i].iov_base = (uint8_t *)iov[i].iov_base + done;
			iov[i].iov_len -= done;
		}
	}
	return true;
}

static bool write_zeroes_slow(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zero[65536];
	while (len) {
		size_t chunk = len < sizeof(zero) ? (size_t)len : sizeof(zero);
		ssize_t n = pwrite(fd, zero, chunk, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return true;
}

static bool do_seg(int fd, uint32_t type, const struct blk_seg *s)
{
	off_t off = (off_t)(s->sector * BLK_SECTOR);
	off_t len = (off_t)((uint64_t)s->num_sectors * BLK_SECTOR);
	if (len == 0)
		return true;
	if (type == VIRTIO_BLK_T_DISCARD) {
		/* Discard is a hint: a host file system without hole punching just keeps the data. */
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
			return true;
		return errno == EOPNOTSUPP;
	}
	if ((s->flags & VIRTIO_BLK_WZ_F_UNMAP) &&
	    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
		return true;
	if (fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
		return true;
	if (errno != EOPNOTSUPP && errno != EINVAL)
		return false;
	return write_zeroes_slow(fd, (uint64_t)off, (uint64_t)len);
}

uint8_t blk_execute(int fd, const struct blk_geom *g, const char serial[BLK_ID_BYTES], struct blk_req *r)
{
	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		return rw_full(fd, false, r->iov, r->niov, r->off) ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
	case VIRTIO_BLK_T_OUT:
		if (g->ro) /* parse refuses this already; a read-only disk never reaches a write */
			return VIRTIO_BLK_S_IOERR;
		return rw_full(fd, true, r->iov, r->niov, r->off) ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
	case VIRTIO_BLK_T_FLUSH:
		if (g->ro)
			return VIRTIO_BLK_S_OK;
		return fdatasync(fd) == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
	case VIRTIO_BLK_T_GET_ID: {
		uint64_t left = r->len, pos = 0;
		for (unsigned int i = 0; i < r->niov && left; i++) {
			size_t k = r->iov[i].iov_len;
			memcpy(r->iov[i].iov_base, serial + pos, k);
			pos += k;
			left -= k;
		}
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (g->ro)
			return VIRTIO_BLK_S_IOERR;
		for (unsigned int i = 0; i < r->nseg; i++)
			if (!do_seg(fd, r->type, &r->seg[i]))
				return VIRTIO_BLK_S_IOERR;
		return VIRTIO_BLK_S_OK;
	}
	return VIRTIO_BLK_S_UNSUPP;
}

/* ---- device -------------------------------------------------------------- */

#define BLK_MAX_WARNINGS 16u
/* Requests handled per notify call before yielding to the event loop. */
#define BLK_BATCH 64u

static bool blk_notify(struct virtio_mmio_dev *d, unsigned int qidx)
{
	struct blk_dev *b = d->priv;
	struct virtq *q = &d->vq[qidx];
	struct virtq_chain c;
	bool pushed = false;
	unsigned int budget = BLK_BATCH;
	int r = 0;

	while (budget > 0 && (r = virtq_pop(q, &c, b->bufs, BLK_MAX_BUFS)) > 0) {
		budget--;
		uint8_t st = blk_parse(&b->geom, b->bufs, c.n, &b->req);
		if (st == VIRTIO_BLK_S_OK)
			st = blk_execute(b->fd, &b->geom, b->serial, &b->req);
		b->requests++;
		if (st != VIRTIO_BLK_S_OK)
			b->errors++;
		if (b->req.status)
			__atomic_store_n(b->req.status, st, __ATOMIC_RELAXED);
		if (virtq_push(q, c.head, b->req.used_len) != 0) {
			r = -EIO; /* cannot happen: c.head was just popped */
			break;
		}
		pushed = true;
	}
	if (pushed)
		virtio_mmio_used(d, qidx);
	if (r < 0) {
		/* A guest can repeat this after every reset: bound the log lines per process. */
		static unsigned int warned;
		if (!(d->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) &&
		    __atomic_fetch_add(&warned, 1u, __ATOMIC_RELAXED) < BLK_MAX_WARNINGS)
			kiln_warn("virtio-blk: queue %u: %s; device needs reset", qidx, virtq_strerror(q->err));
		virtio_mmio_needs_reset(d);
		return false;
	}
	return budget == 0;
}

static void blk_reset(struct virtio_mmio_dev *d)
{
	/* Requests complete synchronously inside notify, under the transport lock: nothing is in
	 * flight here. An asynchronous back end must wait for its completions at this point. */
	(void)d;
}

static const struct virtio_dev_ops blk_ops = {
	.queue_notify = blk_notify,
	.reset = blk_reset,
	.config_write = NULL,
};

int blk_init(struct blk_dev *b, const struct gmem *mem, int fd, bool ro, const char *serial,
	     void (*irq_raise)(void *ctx), void *irq_ctx)
{
	struct stat st;
	uint64_t bytes;
	memset(b, 0, sizeof(*b));
	if (fstat(fd, &st) != 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		bytes = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &bytes) != 0)
			return -errno;
	} else {
		return -EINVAL;
	}
	b->fd = fd;
	b->geom.capacity = bytes / BLK_SECTOR;
	b->geom.ro = ro;
	if (serial) {
		size_t len = strnlen(serial, BLK_ID_BYTES + 1);
		if (len > BLK_ID_BYTES)
			return -EINVAL;
		memcpy(b->serial, serial, len);
	}
	b->cfg.capacity = b->geom.capacity;
	b->cfg.seg_max = BLK_SEG_MAX;
	b->cfg.blk_size = BLK_SECTOR;
	b->cfg.num_queues = 1;
	b->cfg.max_discard_sectors = BLK_MAX_DISCARD_SECTORS;
	b->cfg.max_discard_seg = BLK_MAX_DISCARD_SEG;
	b->cfg.discard_sector_alignment = BLK_DISCARD_ALIGN_SECTORS;
	b->cfg.max_write_zeroes_sectors = BLK_MAX_DISCARD_SECTORS;
	b->cfg.max_write_zeroes_seg = BLK_MAX_DISCARD_SEG;
	b->cfg.write_zeroes_may_unmap = 1;

	uint64_t features = (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_EVENT_IDX) |
			    (1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
			    (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH) |
			    (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	if (ro)
		features |= 1ull << VIRTIO_BLK_F_RO;
	return virtio_mmio_init(&b->mmio, mem, VIRTIO_ID_BLOCK, features, 1, BLK_QUEUE_SIZE,
				(const uint8_t *)&b->cfg, sizeof(b->cfg), &blk_ops, b, irq_raise, irq_ctx);
}

void blk_destroy(struct blk_dev *b)
{
	virtio_mmio_destroy(&b->mmio);
}
