/* test_virtq.c: the split-virtqueue walker against well-formed and malformed rings. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "devices/virtq.h"
#include "fake_guest.h"

#define QS 16
#define FEAT_ALL ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << VIRTIO_F_EVENT_IDX))

struct ctx {
	struct fake_guest f;
	struct virtq q;
	struct virtq_buf bufs[64];
	struct virtq_chain c;
};

static int setup_feat(void **state, uint64_t feat)
{
	struct ctx *t = calloc(1, sizeof(*t));
	fg_init(&t->f, QS);
	assert_int_equal(virtq_init(&t->q, &t->f.m, QS, FG_DESC, FG_AVAIL, FG_USED, feat), 0);
	*state = t;
	return 0;
}
static int setup(void **state) { return setup_feat(state, FEAT_ALL); }
static int setup_plain(void **state) { return setup_feat(state, 1ull << VIRTIO_F_VERSION_1); }
static int teardown(void **state)
{
	struct ctx *t = *state;
	fg_free(&t->f);
	free(t);
	return 0;
}

static int pop(struct ctx *t, unsigned int cap) { return virtq_pop(&t->q, &t->c, t->bufs, cap); }

/* Pop once and expect the queue to break for reason e; it must stay broken. */
static void expect_broken(struct ctx *t, enum virtq_err e)
{
	assert_int_equal(pop(t, 64), -EIO);
	assert_int_equal(t->q.err, e);
	assert_true(t->q.broken);
	assert_int_equal(pop(t, 64), -EIO);
	assert_int_equal(fg_used_idx(&t->f), 0);
}

static void test_empty(void **state)
{
	struct ctx *t = *state;
	assert_int_equal(pop(t, 64), 0);
	/* EVENT_IDX: an empty ring asks for a kick at the current index. */
	assert_int_equal(fg_avail_event(&t->f), 0);
}

static void test_simple_chain_and_push(void **state)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 3, FG_DATA, 16, VIRTQ_DESC_F_NEXT, 7);
	fg_desc(&t->f, 7, FG_DATA + 0x100, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	fg_desc(&t->f, 1, FG_DATA + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
	fg_post(&t->f, 3);
	assert_int_equal(pop(t, 64), 1);
	assert_int_equal(t->c.head, 3);
	assert_int_equal(t->c.n, 3);
	assert_int_equal(t->c.out_len, 16);
	assert_int_equal(t->c.in_len, 513);
	assert_false(t->bufs[0].writable);
	assert_true(t->bufs[1].writable);
	assert_ptr_equal(t->bufs[1].host, fg_host(&t->f, FG_DATA + 0x100));
	assert_int_equal(t->bufs[2].gpa, FG_DATA + 0x400);
	assert_int_equal(pop(t, 64), 0);
	assert_int_equal(fg_avail_event(&t->f), 1);

	assert_int_equal(virtq_push(&t->q, 3, 513), 0);
	assert_int_equal(fg_used_idx(&t->f), 1);
	uint32_t id, len;
	fg_used_elem(&t->f, 0, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 513);
	/* The same head can be reused once returned. */
	fg_post(&t->f, 3);
	assert_int_equal(pop(t, 64), 1);
	assert_int_equal(virtq_push(&t->q, 3, 0), 0);
}

static void test_push_rejects_unknown_head(void **state)
{
	struct ctx *t = *state;
	assert_int_equal(virtq_push(&t->q, 2, 0), -EINVAL);  /* never popped */
	assert_int_equal(virtq_push(&t->q, QS, 0), -EINVAL); /* out of range */
	fg_desc(&t->f, 2, FG_DATA, 8, 0, 0);
	fg_post(&t->f, 2);
	assert_int_equal(pop(t, 64), 1);
	assert_int_equal(virtq_push(&t->q, 2, 0), 0);
	assert_int_equal(virtq_push(&t->q, 2, 0), -EINVAL);  /* pushed twice */
	assert_int_equal(fg_used_idx(&t->f), 1);
}

static void test_loop(void **state)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 0, FG_DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&t->f, 1, FG_DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_LOOP);
}

static void test_self_loop(void **state)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 5, FG_DATA, 8, VIRTQ_DESC_F_NEXT, 5);
	fg_post(&t->f, 5);
	expect_broken(t, VQ_ERR_LOOP);
}

static void test_zero_len_loop(void **state)
{
	struct ctx *t = *state;
	/* Zero-length descriptors are skipped but still count as hops. */
	fg_desc(&t->f, 0, 0, 0, VIRTQ_DESC_F_NEXT, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_LOOP);
}

static void test_chain_of_queue_size_ok(void **state)
{
	struct ctx *t = *state;
	for (uint16_t i = 0; i < QS; i++)
		fg_desc(&t->f, i, FG_DATA + 16u * i, 16, i + 1 < QS ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	fg_post(&t->f, 0);
	assert_int_equal(pop(t, 64), 1);
	assert_int_equal(t->c.n, QS);
}

static void test_capacity(void **state)
{
	struct ctx *t = *state;
	for (uint16_t i = 0; i < 5; i++)
		fg_desc(&t->f, i, FG_DATA, 16, i + 1 < 5 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	fg_post(&t->f, 0);
	assert_int_equal(pop(t, 4), -EIO);
	assert_int_equal(t->q.err, VQ_ERR_TOO_MANY);
}

static void test_head_out_of_range(void **state)
{
	struct ctx *t = *state;
	fg_post(&t->f, QS);
	expect_broken(t, VQ_ERR_HEAD_RANGE);
}

static void test_next_out_of_range(void **state)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 0, FG_DATA, 8, VIRTQ_DESC_F_NEXT, 0xffff);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_NEXT_RANGE);
}

static void check_bad_addr(void **state, uint64_t addr, uint32_t len)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 0, addr, len, 0, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_ADDR);
}
static void test_addr_below_ram(void **state) { check_bad_addr(state, FG_RAM_GPA - 8, 4); }
static void test_addr_above_ram(void **state) { check_bad_addr(state, FG_RAM_GPA + FG_RAM_SIZE, 1); }
static void test_addr_straddles_end(void **state) { check_bad_addr(state, FG_RAM_GPA + FG_RAM_SIZE - 8, 9); }
static void test_addr_straddles_start(void **state) { check_bad_addr(state, FG_RAM_GPA - 1, 2); }
static void test_addr_wraps(void **state) { check_bad_addr(state, UINT64_MAX - 3, 16); }

static void test_len_overflow(void **state)
{
	struct ctx *t = *state;
	fg_add_huge(&t->f);
	fg_desc(&t->f, 0, 1ull << 32, 0xffffffffu, VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&t->f, 1, 1ull << 32, 1, 0, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_LEN_OVERFLOW);
}

static void test_len_max_ok(void **state)
{
	struct ctx *t = *state;
	fg_add_huge(&t->f);
	fg_desc(&t->f, 0, 1ull << 32, 0xfffffffeu, VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&t->f, 1, FG_DATA, 1, VIRTQ_DESC_F_WRITE, 0);
	fg_post(&t->f, 0);
	assert_int_equal(pop(t, 64), 1);
	assert_int_equal(t->c.out_len, 0xfffffffeu);
	assert_int_equal(t->c.in_len, 1);
}

static void test_direction(void **state)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 0, FG_DATA, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	fg_desc(&t->f, 1, FG_DATA + 8, 8, 0, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_DIRECTION);
}

static void test_ring_overlap(void **state)
{
	struct ctx *t = *state;
	/* A writable buffer over the used ring would let the device scribble on its own ring. */
	fg_desc(&t->f, 0, FG_USED + 4, 8, VIRTQ_DESC_F_WRITE, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_RING_OVERLAP);
}

static void test_ring_overlap_desc_table(void **state)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 0, FG_DESC + 16 * QS - 1, 4, 0, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_RING_OVERLAP);
}

static void test_avail_jump(void **state)
{
	struct ctx *t = *state;
	fg_set_avail_idx(&t->f, QS + 1);
	expect_broken(t, VQ_ERR_AVAIL_JUMP);
}

static void test_avail_backwards(void **state)
{
	struct ctx *t = *state;
	fg_set_avail_idx(&t->f, 0xffff);
	expect_broken(t, VQ_ERR_AVAIL_JUMP);
}

static void test_avail_full_ring_ok(void **state)
{
	struct ctx *t = *state;
	for (uint16_t i = 0; i < QS; i++) {
		fg_desc(&t->f, i, FG_DATA + 16u * i, 16, 0, 0);
		fg_post(&t->f, i);
	}
	for (uint16_t i = 0; i < QS; i++) {
		assert_int_equal(pop(t, 64), 1);
		assert_int_equal(t->c.head, i);
	}
	assert_int_equal(pop(t, 64), 0);
	for (uint16_t i = 0; i < QS; i++)
		assert_int_equal(virtq_push(&t->q, i, 0), 0);
	assert_int_equal(fg_used_idx(&t->f), QS);
}

static void test_avail_wrap(void **state)
{
	struct ctx *t = *state;
	/* Start near the 16-bit wrap: both sides agree on 65534. */
	t->q.last_avail_idx = t->q.shadow_avail_idx = 65534;
	t->q.used_idx = 65534;
	t->f.avail_idx = 65534;
	fg_set_avail_idx(&t->f, 65534);
	for (uint16_t i = 0; i < 4; i++) {
		fg_desc(&t->f, i, FG_DATA, 16, 0, 0);
		fg_post(&t->f, i);
	}
	assert_int_equal(t->f.avail_idx, 2);
	for (uint16_t i = 0; i < 4; i++) {
		assert_int_equal(pop(t, 64), 1);
		assert_int_equal(t->c.head, i);
		assert_int_equal(virtq_push(&t->q, i, 0), 0);
	}
	assert_int_equal(pop(t, 64), 0);
	assert_int_equal(fg_used_idx(&t->f), 2);
}

static void test_same_head_twice(void **state)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 4, FG_DATA, 16, 0, 0);
	fg_post(&t->f, 4);
	fg_post(&t->f, 4);
	assert_int_equal(pop(t, 64), 1);
	assert_int_equal(pop(t, 64), -EIO);
	assert_int_equal(t->q.err, VQ_ERR_HEAD_BUSY);
}

static void test_zero_len_skipped(void **state)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 0, 0xdead0000ull, 0, VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&t->f, 1, FG_DATA, 4, 0, 0);
	fg_post(&t->f, 0);
	assert_int_equal(pop(t, 64), 1);
	assert_int_equal(t->c.n, 1);
	assert_int_equal(t->bufs[0].gpa, FG_DATA);
}

/* ---- indirect -------------------------------------------------------------- */

#define ITAB (FG_DATA + 0x8000)

static void test_indirect_ok(void **state)
{
	struct ctx *t = *state;
	fg_desc_at(&t->f, ITAB, 0, FG_DATA, 16, VIRTQ_DESC_F_NEXT, 2);
	fg_desc_at(&t->f, ITAB, 2, FG_DATA + 0x200, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	fg_desc_at(&t->f, ITAB, 1, FG_DATA + 0x1000, 1, VIRTQ_DESC_F_WRITE, 0);
	fg_desc(&t->f, 0, ITAB, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	fg_post(&t->f, 0);
	assert_int_equal(pop(t, 64), 1);
	assert_int_equal(t->c.head, 0);
	assert_int_equal(t->c.n, 3);
	assert_int_equal(t->bufs[1].gpa, FG_DATA + 0x200);
	assert_int_equal(t->c.in_len, 513);
}

static void test_indirect_after_direct_ok(void **state)
{
	struct ctx *t = *state;
	fg_desc_at(&t->f, ITAB, 0, FG_DATA + 0x200, 4, VIRTQ_DESC_F_WRITE, 0);
	fg_desc(&t->f, 0, FG_DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&t->f, 1, ITAB, 16, VIRTQ_DESC_F_INDIRECT, 0);
	fg_post(&t->f, 0);
	assert_int_equal(pop(t, 64), 1);
	assert_int_equal(t->c.n, 2);
}

static void test_indirect_unaligned_table_ok(void **state)
{
	struct ctx *t = *state;
	fg_desc_at(&t->f, ITAB + 3, 0, FG_DATA, 16, 0, 0);
	fg_desc(&t->f, 0, ITAB + 3, 16, VIRTQ_DESC_F_INDIRECT, 0);
	fg_post(&t->f, 0);
	assert_int_equal(pop(t, 64), 1);
	assert_int_equal(t->bufs[0].gpa, FG_DATA);
}

static void test_indirect_not_negotiated(void **state)
{
	struct ctx *t = *state;
	fg_desc_at(&t->f, ITAB, 0, FG_DATA, 16, 0, 0);
	fg_desc(&t->f, 0, ITAB, 16, VIRTQ_DESC_F_INDIRECT, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_INDIRECT_FEAT);
}

static void test_indirect_nested(void **state)
{
	struct ctx *t = *state;
	fg_desc_at(&t->f, ITAB + 0x100, 0, FG_DATA, 16, 0, 0);
	fg_desc_at(&t->f, ITAB, 0, ITAB + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	fg_desc(&t->f, 0, ITAB, 16, VIRTQ_DESC_F_INDIRECT, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_INDIRECT_NESTED);
}

static void test_indirect_with_next(void **state)
{
	struct ctx *t = *state;
	fg_desc_at(&t->f, ITAB, 0, FG_DATA, 16, 0, 0);
	fg_desc(&t->f, 0, ITAB, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&t->f, 1, FG_DATA, 16, 0, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_INDIRECT_NEXT);
}

static void check_indirect_len(void **state, uint32_t len)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 0, ITAB, len, VIRTQ_DESC_F_INDIRECT, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_INDIRECT_LEN);
}
static void test_indirect_len_zero(void **state) { check_indirect_len(state, 0); }
static void test_indirect_len_not_16(void **state) { check_indirect_len(state, 24); }
static void test_indirect_len_huge(void **state) { check_indirect_len(state, 16u * (VIRTQ_MAX_INDIRECT + 1)); }

static void test_indirect_table_outside_ram(void **state)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 0, FG_RAM_GPA + FG_RAM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_ADDR);
}

static void test_indirect_table_over_ring(void **state)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 0, FG_DESC, 32, VIRTQ_DESC_F_INDIRECT, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_RING_OVERLAP);
}

static void test_indirect_loop(void **state)
{
	struct ctx *t = *state;
	fg_desc_at(&t->f, ITAB, 0, FG_DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	fg_desc_at(&t->f, ITAB, 1, FG_DATA, 16, VIRTQ_DESC_F_NEXT, 0);
	fg_desc(&t->f, 0, ITAB, 32, VIRTQ_DESC_F_INDIRECT, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_LOOP);
}

static void test_indirect_next_out_of_table(void **state)
{
	struct ctx *t = *state;
	fg_desc_at(&t->f, ITAB, 0, FG_DATA, 16, VIRTQ_DESC_F_NEXT, 2); /* table has 2 entries */
	fg_desc(&t->f, 0, ITAB, 32, VIRTQ_DESC_F_INDIRECT, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_NEXT_RANGE);
}

static void test_indirect_bad_buffer(void **state)
{
	struct ctx *t = *state;
	fg_desc_at(&t->f, ITAB, 0, 0x1000, 16, 0, 0); /* below RAM */
	fg_desc(&t->f, 0, ITAB, 16, VIRTQ_DESC_F_INDIRECT, 0);
	fg_post(&t->f, 0);
	expect_broken(t, VQ_ERR_ADDR);
}

/* ---- notification suppression ---------------------------------------------- */

static void push_one(struct ctx *t, uint16_t head)
{
	fg_desc(&t->f, head, FG_DATA, 16, 0, 0);
	fg_post(&t->f, head);
	assert_int_equal(pop(t, 64), 1);
	assert_int_equal(virtq_push(&t->q, head, 0), 0);
}

static void test_event_idx_notify(void **state)
{
	struct ctx *t = *state;
	push_one(t, 0);
	assert_true(virtq_should_notify(&t->q));   /* first signal always */
	assert_false(virtq_should_notify(&t->q));  /* nothing new */
	fg_set_used_event(&t->f, 5);               /* driver: wake me once used passes 5 */
	push_one(t, 1);                            /* used 2 */
	assert_false(virtq_should_notify(&t->q));
	for (uint16_t h = 2; h < 6; h++)
		push_one(t, h);                        /* used 6 */
	assert_true(virtq_should_notify(&t->q));
	/* Poisoned used_event: only affects whether we interrupt, never memory safety. */
	fg_set_used_event(&t->f, 0xffff);
	push_one(t, 6);
	(void)virtq_should_notify(&t->q);
}

static void test_no_interrupt_flag(void **state)
{
	struct ctx *t = *state;
	push_one(t, 0);
	assert_true(virtq_should_notify(&t->q));
	st16(fg_host(&t->f, FG_AVAIL), VIRTQ_AVAIL_F_NO_INTERRUPT);
	push_one(t, 1);
	assert_false(virtq_should_notify(&t->q));
}

/* ---- virtq_init ------------------------------------------------------------ */

static void test_init_rejects(void **state)
{
	(void)state;
	struct fake_guest f;
	struct virtq q;
	fg_init(&f, 16);
	const uint64_t F = FEAT_ALL;
	assert_int_equal(virtq_init(&q, &f.m, 0, FG_DESC, FG_AVAIL, FG_USED, F), -EINVAL);
	assert_int_equal(virtq_init(&q, &f.m, 24, FG_DESC, FG_AVAIL, FG_USED, F), -EINVAL);
	assert_int_equal(virtq_init(&q, &f.m, VIRTQ_MAX_SIZE * 2, FG_DESC, FG_AVAIL, FG_USED, F), -EINVAL);
	assert_int_equal(virtq_init(&q, &f.m, 16, FG_DESC + 8, FG_AVAIL, FG_USED, F), -EINVAL);
	assert_int_equal(virtq_init(&q, &f.m, 16, FG_DESC, FG_AVAIL + 1, FG_USED, F), -EINVAL);
	assert_int_equal(virtq_init(&q, &f.m, 16, FG_DESC, FG_AVAIL, FG_USED + 2, F), -EINVAL);
	/* outside RAM / straddling the end / below RAM */
	assert_int_equal(virtq_init(&q, &f.m, 16, 0x1000, FG_AVAIL, FG_USED, F), -EINVAL);
	assert_int_equal(virtq_init(&q, &f.m, 16, FG_DESC, FG_RAM_GPA + FG_RAM_SIZE - 8, FG_USED, F), -EINVAL);
	assert_int_equal(virtq_init(&q, &f.m, 16, FG_DESC, FG_AVAIL, 0xfffffffffffffff0ull, F), -EINVAL);
	/* overlapping rings */
	assert_int_equal(virtq_init(&q, &f.m, 16, FG_DESC, FG_DESC + 0x80, FG_USED, F), -EINVAL);
	assert_int_equal(virtq_init(&q, &f.m, 16, FG_DESC, FG_AVAIL, FG_AVAIL + 0x20, F), -EINVAL);
	assert_int_equal(virtq_init(&q, &f.m, 16, FG_DESC, FG_USED, FG_USED, F), -EINVAL);
	assert_false(q.ready);
	/* and a good one */
	assert_int_equal(virtq_init(&q, &f.m, 16, FG_DESC, FG_AVAIL, FG_USED, F), 0);
	assert_true(q.ready);
	virtq_reset(&q);
	assert_false(q.ready);
	struct virtq_chain c;
	struct virtq_buf b[4];
	assert_int_equal(virtq_pop(&q, &c, b, 4), 0);
	fg_free(&f);
}

static void test_guest_rewrites_after_pop(void **state)
{
	struct ctx *t = *state;
	fg_desc(&t->f, 0, FG_DATA, 16, 0, 0);
	fg_post(&t->f, 0);
	assert_int_equal(pop(t, 64), 1);
	/* The guest now points the descriptor outside RAM: the popped copy is unaffected. */
	fg_desc(&t->f, 0, 0xffffffff00000000ull, 0xffffffffu, VIRTQ_DESC_F_NEXT, 9);
	assert_int_equal(t->bufs[0].gpa, FG_DATA);
	assert_int_equal(t->bufs[0].len, 16);
	assert_int_equal(virtq_push(&t->q, 0, 0), 0);
}

/* One direction of a chain as a byte stream: iovecs and copies over [skip, skip+len). */
static void test_stream(void **state)
{
	static uint8_t m[64];
	const struct virtq_buf b[] = {
		{ .len = 4, .writable = false, .host = m },      /* readable: 0..3 */
		{ .len = 3, .writable = true, .host = m + 10 },  /* writable: 0..2 */
		{ .len = 5, .writable = false, .host = m + 20 }, /* readable: 4..8 */
		{ .len = 2, .writable = true, .host = m + 30 },  /* writable: 3..4 */
	};
	struct iovec iov[4];
	uint8_t out[16];
	(void)state;

	for (unsigned i = 0; i < sizeof(m); i++)
		m[i] = (uint8_t)i;
	/* readable bytes 2..6: the end of the first buffer and the start of the third */
	assert_int_equal(virtq_iov(b, 4, false, 2, 5, iov, 4), 2);
	assert_ptr_equal(iov[0].iov_base, m + 2);
	assert_int_equal(iov[0].iov_len, 2);
	assert_ptr_equal(iov[1].iov_base, m + 20);
	assert_int_equal(iov[1].iov_len, 3);
	assert_true(virtq_copy_out(b, 4, false, 2, out, 5));
	assert_memory_equal(out, ((uint8_t[]){ 2, 3, 20, 21, 22 }), 5);
	/* writable bytes 3..4 start at a buffer boundary */
	assert_int_equal(virtq_iov(b, 4, true, 3, 2, iov, 4), 1);
	assert_ptr_equal(iov[0].iov_base, m + 30);
	/* the whole readable stream, exactly; one byte more is refused */
	assert_int_equal(virtq_iov(b, 4, false, 0, 9, iov, 4), 2);
	assert_int_equal(virtq_iov(b, 4, false, 0, 10, iov, 4), -1);
	assert_int_equal(virtq_iov(b, 4, false, 9, 1, iov, 4), -1);
	assert_false(virtq_copy_out(b, 4, false, 5, out, 5));
	assert_false(virtq_copy_out(b, 4, true, 0, out, 6));
	/* too few iovecs */
	assert_int_equal(virtq_iov(b, 4, false, 0, 9, iov, 1), -1);
	/* nothing asked: nothing needed, even past the end */
	assert_int_equal(virtq_iov(b, 4, false, 100, 0, iov, 0), 0);
	assert_true(virtq_copy_out(b, 4, true, 100, out, 0));
	/* offsets that would wrap are just beyond the stream */
	assert_int_equal(virtq_iov(b, 4, false, UINT64_MAX, 1, iov, 4), -1);
	assert_false(virtq_copy_out(b, 0, false, 0, out, 1));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TP(fn) cmocka_unit_test_setup_teardown(fn, setup_plain, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_empty),
		T(test_simple_chain_and_push),
		T(test_push_rejects_unknown_head),
		T(test_loop),
		T(test_self_loop),
		T(test_zero_len_loop),
		T(test_chain_of_queue_size_ok),
		T(test_capacity),
		T(test_head_out_of_range),
		T(test_next_out_of_range),
		T(test_addr_below_ram),
		T(test_addr_above_ram),
		T(test_addr_straddles_end),
		T(test_addr_straddles_start),
		T(test_addr_wraps),
		T(test_len_overflow),
		T(test_len_max_ok),
		T(test_direction),
		T(test_ring_overlap),
		T(test_ring_overlap_desc_table),
		T(test_avail_jump),
		T(test_avail_backwards),
		T(test_avail_full_ring_ok),
		T(test_avail_wrap),
		T(test_same_head_twice),
		T(test_zero_len_skipped),
		T(test_indirect_ok),
		T(test_indirect_after_direct_ok),
		T(test_indirect_unaligned_table_ok),
		TP(test_indirect_not_negotiated),
		T(test_indirect_nested),
		T(test_indirect_with_next),
		T(test_indirect_len_zero),
		T(test_indirect_len_not_16),
		T(test_indirect_len_huge),
		T(test_indirect_table_outside_ram),
		T(test_indirect_table_over_ring),
		T(test_indirect_loop),
		T(test_indirect_next_out_of_table),
		T(test_indirect_bad_buffer),
		T(test_event_idx_notify),
		TP(test_no_interrupt_flag),
		cmocka_unit_test(test_init_rejects),
		cmocka_unit_test(test_stream),
		T(test_guest_rewrites_after_pop),
	};
	return cmocka_run_group_tests_name("virtq", tests, NULL, NULL);
}
