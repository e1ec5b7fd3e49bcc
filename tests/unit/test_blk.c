/* test_blk.c: virtio-blk request validation (every rejection), host I/O over a memfd, and the device path. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/blk.h"
#include "fake_guest.h"

#define CAP 128 /* sectors: 64 KiB disk */

static const struct blk_geom rw = { CAP, false };
static const struct blk_geom ro = { CAP, true };
static const char SER[BLK_ID_BYTES] = "serial";

/* A request built in host memory: header, data buffers, status. */
struct rq {
	uint8_t hdr[16];
	uint8_t data[4][1024];
	uint8_t status[4];
	struct virtq_buf b[8];
	unsigned int n;
	struct blk_req r;
};

static void rq_hdr(struct rq *q, uint32_t type, uint64_t sector)
{
	memset(q, 0, sizeof(*q));
	st32(q->hdr, type);
	st64(q->hdr + 8, sector);
}
static void rq_add(struct rq *q, uint8_t *p, uint32_t len, bool w)
{
	q->b[q->n].gpa = 0x1000u * (q->n + 1);
	q->b[q->n].len = len;
	q->b[q->n].writable = w;
	q->b[q->n].host = p;
	q->n++;
}
static void rq_hdr_buf(struct rq *q) { rq_add(q, q->hdr, 16, false); }
static void rq_status(struct rq *q) { rq_add(q, q->status, 1, true); }
static uint8_t parse(struct rq *q, const struct blk_geom *g) { return blk_parse(g, q->b, q->n, &q->r); }

/* ---- parse: chain shape ---------------------------------------------------- */

static void test_head_only_chain(void **state)
{
	(void)state;
	struct rq q;
	rq_hdr(&q, VIRTIO_BLK_T_IN, 0);
	rq_hdr_buf(&q);
	assert_int_equal(parse(&q, &rw), VIRTIO_BLK_S_IOERR);
	assert_null(q.r.status);
	assert_int_equal(q.r.used_len, 0);
	assert_int_equal(blk_parse(&rw, q.b, 0, &q.r), VIRTIO_BLK_S_IOERR);
	assert_null(q.r.status);
}

static void test_status_not_writable(void **state)
{
	(void)state;
	struct rq q;
	rq_hdr(&q, VIRTIO_BLK_T_OUT, 0);
	rq_hdr_buf(&q);
	rq_add(&q, q.data[0], 512, false);
	assert_int_equal(parse(&q, &rw), VIRTIO_BLK_S_IOERR);
	assert_null(q.r.status);
}

static void test_header_short(void **state)
{
	(void)state;
	struct rq q;
	rq_hdr(&q, VIRTIO_BLK_T_FLUSH, 0);
	rq_add(&q, q.hdr, 15, false);
	rq_status(&q);
	assert_int_equal(parse(&q, &rw), VIRTIO_BLK_S_IOERR);
	assert_ptr_equal(q.r.status, q.status);
	assert_int_equal(q.r.used_len, 1);
	/* no readable part at all */
	rq_hdr(&q, VIRTIO_BLK_T_FLUSH, 0);
	rq_status(&q);
	assert_int_equal(parse(&q, &rw), VIRTIO_BLK_S_IOERR);
}

static void test_header_split(void **state)
{
	(void)state;
	struct rq q;
	rq_hdr(&q, VIRTIO_BLK_T_IN, 5);
	rq_add(&q, q.hdr, 3, false);
	rq_add(&q, q.hdr + 3, 9, false);
	rq_add(&q, q.hdr + 12, 4, false);
	rq_add(&q, q.data[0], 512, true);
	rq_status(&q);
	assert_int_equal(parse(&q, &rw), VIRTIO_BLK_S_OK);
	assert_int_equal(q.r.type, VIRTIO_BLK_T_IN);
	assert_int_equal(q.r.sector, 5);
	assert_int_equal(q.r.off, 5 * 512);
	assert_int_equal(q.r.len, 512);
	assert_int_equal(q.r.niov, 1);
	assert_int_equal(q.r.used_len, 513);
}

static void test_header_and_data_in_one_buffer(void **state)
{
	(void)state;
	struct rq q;
	rq_hdr(&q, VIRTIO_BLK_T_OUT, 2);
	uint8_t one[16 + 1024];
	memcpy(one, q.hdr, 16);
	rq_add(&q, one, sizeof(one), false);
	/* status as the last byte of a larger writable buffer */
	rq_add(&q, q.data[1], 8, true);
	assert_int_equal(parse(&q, &rw), VIRTIO_BLK_S_OK);
	assert_int_equal(q.r.len, 1024);
	assert_int_equal(q.r.niov, 1);
	assert_ptr_equal(q.r.iov[0].iov_base, one + 16);
	assert_ptr_equal(q.r.status, q.data[1] + 7);
}

static void test_data_split_status_in_data_buffer(void **state)
{
	(void)state;
	struct rq q;
	rq_hdr(&q, VIRTIO_BLK_T_IN, 0);
	rq_hdr_buf(&q);
	rq_add(&q, q.data[0], 100, true);
	rq_add(&q, q.data[1], 413, true); /* 512 data + 1 status */
	assert_int_equal(parse(&q, &rw), VIRTIO_BLK_S_OK);
	assert_int_equal(q.r.niov, 2);
	assert_int_equal(q.r.iov[1].iov_len, 412);
	assert_ptr_equal(q.r.status, q.data[1] + 412);
}

static void test_too_many_bufs(void **state)
{
	(void)state;
	static struct virtq_buf b[BLK_MAX_BUFS + 1];
	uint8_t st[1];
	struct blk_req r;
	for (unsigned int i = 0; i < BLK_MAX_BUFS + 1; i++)
		b[i] = (struct virtq_buf){ 0x1000, 1, true, st };
	assert_int_equal(blk_parse(&rw, b, BLK_MAX_BUFS + 1, &r), VIRTIO_BLK_S_IOERR);
	assert_null(r.status);
}

/* ---- parse: IN / OUT ranges ------------------------------------------------ */

static uint8_t rw_req(uint32_t type, uint64_t sector, uint32_t len, const struct blk_geom *g)
{
	struct rq q;
	rq_hdr(&q, type, sector);
	rq_hdr_buf(&q);
	rq_add(&q, q.data[0], len, type == VIRTIO_BLK_T_IN);
	rq_status(&q);
	return parse(&q, g);
}

static void test_in_out_ranges(void **state)
{
	(void)state;
	for (uint32_t type = 0; type < 2; type++) {
		assert_int_equal(rw_req(type, 0, 512, &rw), VIRTIO_BLK_S_OK);
		assert_int_equal(rw_req(type, CAP - 2, 1024, &rw), VIRTIO_BLK_S_OK);   /* to the last byte */
		assert_int_equal(rw_req(type, CAP - 1, 1024, &rw), VIRTIO_BLK_S_IOERR); /* partial past end */
		assert_int_equal(rw_req(type, CAP, 512, &rw), VIRTIO_BLK_S_IOERR);
		assert_int_equal(rw_req(type, CAP, 0, &rw), VIRTIO_BLK_S_OK);          /* empty at the end */
		assert_int_equal(rw_req(type, CAP + 1, 0, &rw), VIRTIO_BLK_S_IOERR);
		assert_int_equal(rw_req(type, 0, 513, &rw), VIRTIO_BLK_S_IOERR);       /* not a multiple */
		assert_int_equal(rw_req(type, 0, 100, &rw), VIRTIO_BLK_S_IOERR);
		assert_int_equal(rw_req(type, UINT64_MAX, 512, &rw), VIRTIO_BLK_S_IOERR);     /* sector*512 overflow */
		assert_int_equal(rw_req(type, UINT64_MAX / 512, 1024, &rw), VIRTIO_BLK_S_IOERR); /* off+len overflow */
		assert_int_equal(rw_req(type, 1ull << 55, 512, &rw), VIRTIO_BLK_S_IOERR);
	}
	/* a disk whose capacity*512 overflows */
	struct blk_geom huge = { UINT64_MAX, false };
	assert_int_equal(rw_req(VIRTIO_BLK_T_IN, 0, 512, &huge), VIRTIO_BLK_S_IOERR);
}

static void test_ro_refuses_writes(void **state)
{
	(void)state;
	assert_int_equal(rw_req(VIRTIO_BLK_T_OUT, 0, 512, &ro), VIRTIO_BLK_S_IOERR);
	assert_int_equal(rw_req(VIRTIO_BLK_T_IN, 0, 512, &ro), VIRTIO_BLK_S_OK);
	struct rq q;
	rq_hdr(&q, VIRTIO_BLK_T_FLUSH, 0);
	rq_hdr_buf(&q);
	rq_status(&q);
	assert_int_equal(parse(&q, &ro), VIRTIO_BLK_S_OK);
}

static void test_unsupported_types(void **state)
{
	(void)state;
	const uint32_t bad[] = { 2, 3, 5, 7, 9, 10, 12, 14, 15, 0x80000000u, UINT32_MAX };
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		struct rq q;
		rq_hdr(&q, bad[i], 0);
		rq_hdr_buf(&q);
		rq_status(&q);
		assert_int_equal(parse(&q, &rw), VIRTIO_BLK_S_UNSUPP);
		assert_ptr_equal(q.r.status, q.status);
	}
}

/* ---- parse: GET_ID --------------------------------------------------------- */

static void test_get_id(void **state)
{
	(void)state;
	struct rq q;
	rq_hdr(&q, VIRTIO_BLK_T_GET_ID, 0);
	rq_hdr_buf(&q);
	rq_add(&q, q.data[0], 64, true);
	rq_status(&q);
	assert_int_equal(parse(&q, &rw), VIRTIO_BLK_S_OK);
	assert_int_equal(q.r.len, 20);
	assert_int_equal(q.r.used_len, 21);
	char serial[BLK_ID_BYTES] = "disk-serial-0123456";
	assert_int_equal(blk_execute(-1, &rw, serial, &q.r), VIRTIO_BLK_S_OK);
	assert_memory_equal(q.data[0], serial, 20);
	assert_int_equal(q.data[0][20], 0); /* nothing past 20 bytes */
}

static void test_get_id_short_buffer(void **state)
{
	(void)state;
	struct rq q;
	rq_hdr(&q, VIRTIO_BLK_T_GET_ID, 0);
	rq_hdr_buf(&q);
	rq_add(&q, q.data[0], 3, true);
	rq_add(&q, q.data[1], 5, true);
	rq_status(&q);
	assert_int_equal(parse(&q, &rw), VIRTIO_BLK_S_OK);
	assert_int_equal(q.r.len, 8);
	assert_int_equal(q.r.used_len, 9);
	char serial[BLK_ID_BYTES] = "ABCDEFGHIJ";
	assert_int_equal(blk_execute(-1, &rw, serial, &q.r), VIRTIO_BLK_S_OK);
	assert_memory_equal(q.data[0], "ABC", 3);
	assert_memory_equal(q.data[1], "DEFGH", 5);
	/* no room at all */
	rq_hdr(&q, VIRTIO_BLK_T_GET_ID, 0);
	rq_hdr_buf(&q);
	rq_status(&q);
	assert_int_equal(parse(&q, &rw), VIRTIO_BLK_S_IOERR);
}

/* ---- parse: DISCARD / WRITE_ZEROES ----------------------------------------- */

static uint8_t seg_req(uint32_t type, const struct blk_geom *g, unsigned int nseg, uint64_t sector,
		       uint32_t num, uint32_t flags, uint32_t extra)
{
	struct rq q;
	rq_hdr(&q, type, 0);
	rq_hdr_buf(&q);
	for (unsigned int i = 0; i < nseg && i < 64; i++) {
		st64(q.data[0] + 16 * i, sector);
		st32(q.data[0] + 16 * i + 8, num);
		st32(q.data[0] + 16 * i + 12, flags);
	}
	if (nseg * 16 + extra)
		rq_add(&q, q.data[0], nseg * 16 + extra, false);
	rq_status(&q);
	return parse(&q, g);
}

static void test_discard_validation(void **state)
{
	(void)state;
	const uint32_t D = VIRTIO_BLK_T_DISCARD, W = VIRTIO_BLK_T_WRITE_ZEROES;
	for (uint32_t t = D; t <= W; t += W - D) {
		assert_int_equal(seg_req(t, &rw, 1, 0, 8, 0, 0), VIRTIO_BLK_S_OK);
		assert_int_equal(seg_req(t, &rw, BLK_MAX_DISCARD_SEG, 0, 8, 0, 0), VIRTIO_BLK_S_OK);
		assert_int_equal(seg_req(t, &rw, 1, CAP - 8, 8, 0, 0), VIRTIO_BLK_S_OK);
		assert_int_equal(seg_req(t, &ro, 1, 0, 8, 0, 0), VIRTIO_BLK_S_IOERR);   /* read-only */
		assert_int_equal(seg_req(t, &rw, 0, 0, 0, 0, 0), VIRTIO_BLK_S_IOERR);   /* no segment */
		assert_int_equal(seg_req(t, &rw, 1, 0, 8, 0, 4), VIRTIO_BLK_S_IOERR);   /* not 16 bytes each */
		assert_int_equal(seg_req(t, &rw, 0, 0, 8, 0, 15), VIRTIO_BLK_S_IOERR);
		assert_int_equal(seg_req(t, &rw, BLK_MAX_DISCARD_SEG + 1, 0, 8, 0, 0), VIRTIO_BLK_S_IOERR);
		assert_int_equal(seg_req(t, &rw, 1, CAP - 7, 8, 0, 0), VIRTIO_BLK_S_IOERR); /* past the end */
		assert_int_equal(seg_req(t, &rw, 1, UINT64_MAX, 1, 0, 0), VIRTIO_BLK_S_IOERR);
		assert_int_equal(seg_req(t, &rw, 1, UINT64_MAX / 512, 2, 0, 0), VIRTIO_BLK_S_IOERR);
		assert_int_equal(seg_req(t, &rw, 1, 0, BLK_MAX_DISCARD_SECTORS + 1, 0, 0), VIRTIO_BLK_S_IOERR);
		assert_int_equal(seg_req(t, &rw, 1, 0, 8, 2, 0), VIRTIO_BLK_S_UNSUPP);  /* reserved flag */
	}
	/* the unmap flag: allowed for write-zeroes only */
	assert_int_equal(seg_req(W, &rw, 1, 0, 8, VIRTIO_BLK_WZ_F_UNMAP, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(seg_req(D, &rw, 1, 0, 8, VIRTIO_BLK_WZ_F_UNMAP, 0), VIRTIO_BLK_S_UNSUPP);
}

/* ---- options ---------------------------------------------------------------- */

static void test_parse_opts(void **state)
{
	(void)state;
	struct blk_opts o;
	char a[] = "/img/root.ext4";
	assert_int_equal(blk_parse_opts(a, &o), 0);
	assert_string_equal(o.path, "/img/root.ext4");
	assert_false(o.ro);
	assert_string_equal(o.serial, "");
	char b[] = "disk.img,ro,id=SER-1";
	assert_int_equal(blk_parse_opts(b, &o), 0);
	assert_string_equal(o.path, "disk.img");
	assert_true(o.ro);
	assert_string_equal(o.serial, "SER-1");
	char c[] = "d,id=01234567890123456789";
	assert_int_equal(blk_parse_opts(c, &o), 0);
	assert_string_equal(o.serial, "01234567890123456789");
	char *bad[] = { "", ",ro", "d,rw", "d,id=", "d,id=012345678901234567890", "d,id=a b", "d,", "d,ro,,", "d,RO" };
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		char buf[64];
		snprintf(buf, sizeof(buf), "%s", bad[i]);
		assert_int_equal(blk_parse_opts(buf, &o), -EINVAL);
	}
}

/* ---- execute over a memfd ---------------------------------------------------- */

static int disk(void)
{
	int fd = memfd_create("kiln-test-disk", 0);
	assert_true(fd >= 0);
	uint8_t buf[CAP * 512];
	for (unsigned int i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	return fd;
}

static uint8_t run(int fd, const struct blk_geom *g, struct rq *q)
{
	uint8_t st = parse(q, g);
	if (st == VIRTIO_BLK_S_OK)
		st = blk_execute(fd, g, SER, &q->r);
	return st;
}

static void test_exec_read_write_flush(void **state)
{
	(void)state;
	int fd = disk();
	struct rq q;
	rq_hdr(&q, VIRTIO_BLK_T_OUT, 3);
	rq_hdr_buf(&q);
	memset(q.data[0], 0x5a, 512);
	memset(q.data[1], 0xa5, 512);
	rq_add(&q, q.data[0], 512, false);
	rq_add(&q, q.data[1], 512, false);
	rq_status(&q);
	assert_int_equal(run(fd, &rw, &q), VIRTIO_BLK_S_OK);

	rq_hdr(&q, VIRTIO_BLK_T_IN, 3);
	rq_hdr_buf(&q);
	rq_add(&q, q.data[2], 1024, true);
	rq_status(&q);
	assert_int_equal(run(fd, &rw, &q), VIRTIO_BLK_S_OK);
	assert_int_equal(q.data[2][0], 0x5a);
	assert_int_equal(q.data[2][511], 0x5a);
	assert_int_equal(q.data[2][512], 0xa5);
	assert_int_equal(q.data[2][1023], 0xa5);

	rq_hdr(&q, VIRTIO_BLK_T_FLUSH, 0);
	rq_hdr_buf(&q);
	rq_status(&q);
	assert_int_equal(run(fd, &rw, &q), VIRTIO_BLK_S_OK);
	close(fd);
}

static void test_exec_ro_never_writes(void **state)
{
	(void)state;
	int fd = disk();
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int rofd = open(path, O_RDONLY);
	assert_true(rofd >= 0);
	struct rq q;
	rq_hdr(&q, VIRTIO_BLK_T_OUT, 0);
	rq_hdr_buf(&q);
	rq_add(&q, q.data[0], 512, false);
	rq_status(&q);
	/* Even a request that got past parsing is refused by execute on a read-only disk. */
	q.r.type = VIRTIO_BLK_T_OUT;
	q.r.iov[0].iov_base = q.data[0];
	q.r.iov[0].iov_len = 512;
	q.r.niov = 1;
	q.r.len = 512;
	assert_int_equal(blk_execute(rofd, &ro, SER, &q.r), VIRTIO_BLK_S_IOERR);
	q.r.type = VIRTIO_BLK_T_DISCARD;
	q.r.nseg = 1;
	q.r.seg[0] = (struct blk_seg){ 0, 8, 0 };
	assert_int_equal(blk_execute(rofd, &ro, SER, &q.r), VIRTIO_BLK_S_IOERR);
	q.r.type = VIRTIO_BLK_T_WRITE_ZEROES;
	assert_int_equal(blk_execute(rofd, &ro, SER, &q.r), VIRTIO_BLK_S_IOERR);
	q.r.type = VIRTIO_BLK_T_FLUSH;
	assert_int_equal(blk_execute(rofd, &ro, SER, &q.r), VIRTIO_BLK_S_OK);
	uint8_t c;
	assert_int_equal(pread(fd, &c, 1, 0), 1);
	assert_int_equal(c, 1);
	close(rofd);
	close(fd);
}

static void test_exec_io_errors(void **state)
{
	(void)state;
	int fd = disk();
	struct rq q;
	/* reading through a write-only fd fails in the host: IOERR */
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int wfd = open(path, O_WRONLY);
	rq_hdr(&q, VIRTIO_BLK_T_IN, 0);
	rq_hdr_buf(&q);
	rq_add(&q, q.data[0], 512, true);
	rq_status(&q);
	assert_int_equal(run(wfd, &rw, &q), VIRTIO_BLK_S_IOERR);
	close(wfd);
	/* the image shrank under us: EOF is an error, not a hang */
	assert_int_equal(ftruncate(fd, 512), 0);
	rq_hdr(&q, VIRTIO_BLK_T_IN, 4);
	rq_hdr_buf(&q);
	rq_add(&q, q.data[0], 512, true);
	rq_status(&q);
	assert_int_equal(run(fd, &rw, &q), VIRTIO_BLK_S_IOERR);
	/* a closed fd */
	close(fd);
	assert_int_equal(run(fd, &rw, &q), VIRTIO_BLK_S_IOERR);
}

static void test_exec_discard_and_write_zeroes(void **state)
{
	(void)state;
	int fd = disk();
	struct rq q;
	for (uint32_t fl = 0; fl < 2; fl++) {
		/* discard sectors 8..15, write-zeroes 16..23 (with and without unmap) */
		rq_hdr(&q, VIRTIO_BLK_T_DISCARD, 0);
		rq_hdr_buf(&q);
		st64(q.data[0], 8);
		st32(q.data[0] + 8, 8);
		rq_add(&q, q.data[0], 16, false);
		rq_status(&q);
		assert_int_equal(run(fd, &rw, &q), VIRTIO_BLK_S_OK);
		rq_hdr(&q, VIRTIO_BLK_T_WRITE_ZEROES, 0);
		rq_hdr_buf(&q);
		st64(q.data[0], 16);
		st32(q.data[0] + 8, 8);
		st32(q.data[0] + 12, fl);
		rq_add(&q, q.data[0], 16, false);
		rq_status(&q);
		assert_int_equal(run(fd, &rw, &q), VIRTIO_BLK_S_OK);
		uint8_t buf[16 * 512];
		assert_int_equal(pread(fd, buf, sizeof(buf), 8 * 512), (ssize_t)sizeof(buf));
		for (unsigned int i = 0; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 0);
		uint8_t c;
		assert_int_equal(pread(fd, &c, 1, 24 * 512), 1);
		assert_int_equal(c, (uint8_t)(24 * 512 * 7 + 1)); /* neighbours untouched */
		assert_int_equal(pread(fd, &c, 1, 8 * 512 - 1), 1);
		assert_int_equal(c, (uint8_t)((8 * 512 - 1) * 7 + 1));
	}
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, CAP * 512); /* KEEP_SIZE */
	close(fd);
}

/* ---- the device, end to end over a fake guest -------------------------------- */

struct dctx {
	struct fake_guest f;
	struct blk_dev b;
	int fd, irqs;
};

static void dirq(void *p) { ((struct dctx *)p)->irqs++; }

static uint32_t drd(struct dctx *t, uint64_t off)
{
	uint32_t v = 0;
	(void)virtio_mmio_read(&t->b.mmio, off, &v, 4);
	return v;
}
static void dwr(struct dctx *t, uint64_t off, uint32_t v) { (void)virtio_mmio_write(&t->b.mmio, off, &v, 4); }

static int dsetup(void **state)
{
	struct dctx *t = calloc(1, sizeof(*t));
	fg_init(&t->f, 128);
	t->fd = disk();
	assert_int_equal(blk_init(&t->b, &t->f.m, t->fd, false, "kiln-serial", dirq, t), 0);
	/* the Linux driver's sequence */
	dwr(t, VIRTIO_MMIO_STATUS, 1);
	dwr(t, VIRTIO_MMIO_STATUS, 3);
	dwr(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = drd(t, VIRTIO_MMIO_DEVICE_FEATURES);
	dwr(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	uint32_t hi = drd(t, VIRTIO_MMIO_DEVICE_FEATURES);
	dwr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	dwr(t, VIRTIO_MMIO_DRIVER_FEATURES, lo);
	dwr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	dwr(t, VIRTIO_MMIO_DRIVER_FEATURES, hi);
	dwr(t, VIRTIO_MMIO_STATUS, 0xb);
	assert_int_equal(drd(t, VIRTIO_MMIO_STATUS), 0xb);
	dwr(t, VIRTIO_MMIO_QUEUE_SEL, 0);
	assert_int_equal(drd(t, VIRTIO_MMIO_QUEUE_NUM_MAX), BLK_QUEUE_SIZE);
	dwr(t, VIRTIO_MMIO_QUEUE_NUM, 128);
	dwr(t, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)FG_DESC);
	dwr(t, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)FG_AVAIL);
	dwr(t, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)FG_USED);
	dwr(t, VIRTIO_MMIO_QUEUE_READY, 1);
	dwr(t, VIRTIO_MMIO_STATUS, 0xf);
	assert_int_equal(drd(t, VIRTIO_MMIO_STATUS), 0xf);
	*state = t;
	return 0;
}
static int dteardown(void **state)
{
	struct dctx *t = *state;
	blk_destroy(&t->b);
	close(t->fd);
	fg_free(&t->f);
	free(t);
	return 0;
}

#define HDR  (FG_DATA)
#define DATA (FG_DATA + 0x1000)
#define STAT (FG_DATA + 0x100)

static void test_dev_config(void **state)
{
	struct dctx *t = *state;
	assert_int_equal(drd(t, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);
	assert_int_equal(drd(t, VIRTIO_MMIO_CONFIG), CAP);      /* capacity low */
	assert_int_equal(drd(t, VIRTIO_MMIO_CONFIG + 4), 0);    /* capacity high */
	assert_int_equal(drd(t, VIRTIO_MMIO_CONFIG + 12), BLK_SEG_MAX);
	assert_int_equal(drd(t, VIRTIO_MMIO_CONFIG + 20), 512);
	assert_int_equal(drd(t, VIRTIO_MMIO_CONFIG + 36), BLK_MAX_DISCARD_SECTORS);
	assert_int_equal(drd(t, VIRTIO_MMIO_CONFIG + 40), BLK_MAX_DISCARD_SEG);
	uint8_t u = 0;
	assert_int_equal(virtio_mmio_read(&t->b.mmio, VIRTIO_MMIO_CONFIG + 56, &u, 1), 0);
	assert_int_equal(u, 1);
	assert_true(virtio_mmio_has(&t->b.mmio, VIRTIO_BLK_F_DISCARD));
	assert_false(virtio_mmio_has(&t->b.mmio, VIRTIO_BLK_F_RO));
}

static void test_dev_read_request(void **state)
{
	struct dctx *t = *state;
	uint8_t *h = fg_host(&t->f, HDR);
	st32(h, VIRTIO_BLK_T_IN);
	st64(h + 8, 1);
	*fg_host(&t->f, STAT) = 0xff;
	fg_desc(&t->f, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&t->f, 1, DATA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	fg_desc(&t->f, 2, STAT, 1, VIRTQ_DESC_F_WRITE, 0);
	fg_post(&t->f, 0);
	virtio_mmio_notify(&t->b.mmio, 0);
	assert_int_equal(*fg_host(&t->f, STAT), VIRTIO_BLK_S_OK);
	assert_int_equal(fg_host(&t->f, DATA)[0], (uint8_t)(512 * 7 + 1));
	assert_int_equal(fg_used_idx(&t->f), 1);
	uint32_t id, len;
	fg_used_elem(&t->f, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 513);
	assert_int_equal(t->irqs, 1);
	assert_int_equal(drd(t, VIRTIO_MMIO_INTERRUPT_STATUS), 1);
}

static void test_dev_head_only_chain_returned(void **state)
{
	struct dctx *t = *state;
	fg_desc(&t->f, 4, HDR, 16, 0, 0);
	fg_post(&t->f, 4);
	virtio_mmio_notify(&t->b.mmio, 0);
	assert_int_equal(fg_used_idx(&t->f), 1);
	uint32_t id, len;
	fg_used_elem(&t->f, 0, &id, &len);
	assert_int_equal(id, 4);
	assert_int_equal(len, 0);
	assert_int_equal(drd(t, VIRTIO_MMIO_STATUS), 0xf); /* not a queue fault */
}

static void test_dev_get_id(void **state)
{
	struct dctx *t = *state;
	st32(fg_host(&t->f, HDR), VIRTIO_BLK_T_GET_ID);
	fg_desc(&t->f, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&t->f, 1, DATA, 20, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	fg_desc(&t->f, 2, STAT, 1, VIRTQ_DESC_F_WRITE, 0);
	fg_post(&t->f, 0);
	virtio_mmio_notify(&t->b.mmio, 0);
	assert_int_equal(*fg_host(&t->f, STAT), VIRTIO_BLK_S_OK);
	assert_memory_equal(fg_host(&t->f, DATA), "kiln-serial\0\0\0\0\0\0\0\0\0", 20);
}

static void test_dev_malformed_queue_needs_reset(void **state)
{
	struct dctx *t = *state;
	fg_desc(&t->f, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 0); /* loop */
	fg_post(&t->f, 0);
	virtio_mmio_notify(&t->b.mmio, 0);
	assert_int_equal(drd(t, VIRTIO_MMIO_STATUS), 0x4f);
	assert_int_equal(drd(t, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(t->irqs, 1);
	assert_int_equal(fg_used_idx(&t->f), 0);
	/* further kicks do nothing; a reset brings the device back */
	virtio_mmio_notify(&t->b.mmio, 0);
	dwr(t, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(drd(t, VIRTIO_MMIO_STATUS), 0);
	assert_false(t->b.mmio.vq[0].broken);
}

static void test_dev_outside_ram_buffer(void **state)
{
	struct dctx *t = *state;
	/* /dev/mem-style attack: data buffer pointed past guest RAM */
	st32(fg_host(&t->f, HDR), VIRTIO_BLK_T_IN);
	fg_desc(&t->f, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&t->f, 1, FG_RAM_GPA + FG_RAM_SIZE - 256, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	fg_desc(&t->f, 2, STAT, 1, VIRTQ_DESC_F_WRITE, 0);
	fg_post(&t->f, 0);
	virtio_mmio_notify(&t->b.mmio, 0);
	assert_int_equal(drd(t, VIRTIO_MMIO_STATUS), 0x4f);
}

static void test_dev_event_idx_batch(void **state)
{
	struct dctx *t = *state;
	/* several flushes in one kick: one interrupt */
	st32(fg_host(&t->f, HDR), VIRTIO_BLK_T_FLUSH);
	for (uint16_t i = 0; i < 4; i++) {
		fg_desc(&t->f, (uint16_t)(2 * i), HDR, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(2 * i + 1));
		fg_desc(&t->f, (uint16_t)(2 * i + 1), STAT + i, 1, VIRTQ_DESC_F_WRITE, 0);
		fg_post(&t->f, (uint16_t)(2 * i));
	}
	virtio_mmio_notify(&t->b.mmio, 0);
	assert_int_equal(fg_used_idx(&t->f), 4);
	assert_int_equal(t->irqs, 1);
	assert_int_equal(fg_avail_event(&t->f), 4);
	assert_int_equal(t->b.requests, 4);
	assert_int_equal(t->b.errors, 0);
}

static void test_dev_batch_yields(void **state)
{
	struct dctx *t = *state;
	/* 100 flushes posted at once: the device yields after a batch and reports pending work. */
	st32(fg_host(&t->f, HDR), VIRTIO_BLK_T_FLUSH);
	fg_desc(&t->f, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&t->f, 1, STAT, 1, VIRTQ_DESC_F_WRITE, 0);
	for (unsigned int i = 0; i < 100; i++)
		fg_post(&t->f, 0);
	assert_true(virtio_mmio_notify(&t->b.mmio, 0));
	assert_int_equal(fg_used_idx(&t->f), 64);
	assert_false(virtio_mmio_notify(&t->b.mmio, 0));
	assert_int_equal(fg_used_idx(&t->f), 100);
	assert_int_equal(t->b.errors, 0);
}

static void test_dev_ro_disk(void **state)
{
	(void)state;
	struct fake_guest f;
	struct blk_dev b;
	fg_init(&f, 16);
	int fd = disk();
	assert_int_equal(blk_init(&b, &f.m, fd, true, NULL, dirq, NULL), 0);
	assert_true((b.mmio.host_features >> VIRTIO_BLK_F_RO) & 1);
	blk_destroy(&b);
	/* not a file or block device */
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(blk_init(&b, &f.m, p[0], false, NULL, dirq, NULL), -EINVAL);
	assert_int_equal(blk_init(&b, &f.m, fd, false, "012345678901234567890", dirq, NULL), -EINVAL);
	assert_int_equal(blk_init(&b, &f.m, -1, false, NULL, dirq, NULL), -EBADF);
	close(p[0]);
	close(p[1]);
	close(fd);
	fg_free(&f);
}

#define D(fn) cmocka_unit_test_setup_teardown(fn, dsetup, dteardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_head_only_chain),
		cmocka_unit_test(test_status_not_writable),
		cmocka_unit_test(test_header_short),
		cmocka_unit_test(test_header_split),
		cmocka_unit_test(test_header_and_data_in_one_buffer),
		cmocka_unit_test(test_data_split_status_in_data_buffer),
		cmocka_unit_test(test_too_many_bufs),
		cmocka_unit_test(test_in_out_ranges),
		cmocka_unit_test(test_ro_refuses_writes),
		cmocka_unit_test(test_unsupported_types),
		cmocka_unit_test(test_get_id),
		cmocka_unit_test(test_get_id_short_buffer),
		cmocka_unit_test(test_discard_validation),
		cmocka_unit_test(test_parse_opts),
		cmocka_unit_test(test_exec_read_write_flush),
		cmocka_unit_test(test_exec_ro_never_writes),
		cmocka_unit_test(test_exec_io_errors),
		cmocka_unit_test(test_exec_discard_and_write_zeroes),
		D(test_dev_config),
		D(test_dev_read_request),
		D(test_dev_head_only_chain_returned),
		D(test_dev_get_id),
		D(test_dev_malformed_queue_needs_reset),
		D(test_dev_outside_ram_buffer),
		D(test_dev_event_idx_batch),
		D(test_dev_batch_yields),
		cmocka_unit_test(test_dev_ro_disk),
	};
	return cmocka_run_group_tests_name("blk", tests, NULL, NULL);
}
