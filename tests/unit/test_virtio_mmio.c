/* test_virtio_mmio.c: virtio-mmio v2 register file, status machine and queue set-up rules. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "devices/virtio_mmio.h"
#include "fake_guest.h"

#define QMAX 16
#define DEV_FEATURES ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_EVENT_IDX) | (1ull << 5))

struct ctx {
	struct fake_guest f;
	struct virtio_mmio_dev d;
	uint8_t config[12];
	int irqs, resets, notifies, last_q, cfg_writes, more;
	uint32_t cfg_off, cfg_len;
};

static bool dev_notify(struct virtio_mmio_dev *d, unsigned int q)
{
	struct ctx *t = d->priv;
	t->notifies++;
	t->last_q = (int)q;
	return t->more > 0 && t->more--;
}
static void dev_reset(struct virtio_mmio_dev *d)
{
	struct ctx *t = d->priv;
	t->resets++;
}
static void dev_cfg_write(struct virtio_mmio_dev *d, uint32_t off, const uint8_t *data, unsigned int len)
{
	struct ctx *t = d->priv;
	(void)data;
	t->cfg_writes++;
	t->cfg_off = off;
	t->cfg_len = len;
}
static void irq(void *p)
{
	struct ctx *t = p;
	t->irqs++;
}

static const struct virtio_dev_ops ops = { dev_notify, dev_reset, dev_cfg_write };

static int setup(void **state)
{
	struct ctx *t = calloc(1, sizeof(*t));
	fg_init(&t->f, QMAX);
	for (unsigned int i = 0; i < sizeof(t->config); i++)
		t->config[i] = (uint8_t)(0xa0 + i);
	assert_int_equal(virtio_mmio_init(&t->d, &t->f.m, 2, DEV_FEATURES, 2, QMAX, t->config,
					  sizeof(t->config), &ops, t, irq, t), 0);
	*state = t;
	return 0;
}
static int teardown(void **state)
{
	struct ctx *t = *state;
	virtio_mmio_destroy(&t->d);
	fg_free(&t->f);
	free(t);
	return 0;
}

static uint32_t rd(struct ctx *t, uint64_t off)
{
	uint32_t v = 0xdeadbeef;
	(void)virtio_mmio_read(&t->d, off, &v, 4);
	return v;
}
static int wr(struct ctx *t, uint64_t off, uint32_t v) { return virtio_mmio_write(&t->d, off, &v, 4); }

/* Drive the device to FEATURES_OK with the given driver features. */
static void to_features_ok(struct ctx *t, uint64_t feat)
{
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE), 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER), 0);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)feat);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(feat >> 32));
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 0xb), 0);
}

static void setup_queue(struct ctx *t, uint32_t sel, uint32_t num, uint64_t desc, uint64_t avail, uint64_t used)
{
	wr(t, VIRTIO_MMIO_QUEUE_SEL, sel);
	wr(t, VIRTIO_MMIO_QUEUE_NUM, num);
	wr(t, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(t, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	wr(t, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
	wr(t, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
	wr(t, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
	wr(t, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
	wr(t, VIRTIO_MMIO_QUEUE_READY, 1);
}

static void to_live(struct ctx *t)
{
	to_features_ok(t, (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_EVENT_IDX));
	setup_queue(t, 0, QMAX, FG_DESC, FG_AVAIL, FG_USED);
	assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_READY), 1);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 0xf), 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 0xf);
}

static void test_identity(void **state)
{
	struct ctx *t = *state;
	assert_int_equal(rd(t, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	assert_int_equal(rd(t, VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(rd(t, VIRTIO_MMIO_DEVICE_ID), 2);
	assert_int_equal(rd(t, VIRTIO_MMIO_VENDOR_ID), KILN_VIRTIO_VENDOR);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_NUM_MAX), QMAX);
	assert_int_equal(t->d.stats.bad_access, 0);
}

static void test_features_words(void **state)
{
	struct ctx *t = *state;
	assert_int_equal(rd(t, VIRTIO_MMIO_DEVICE_FEATURES), (uint32_t)DEV_FEATURES);
	wr(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	assert_int_equal(rd(t, VIRTIO_MMIO_DEVICE_FEATURES), 1);
	wr(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 7);
	assert_int_equal(rd(t, VIRTIO_MMIO_DEVICE_FEATURES), 0);
}

static void test_bad_widths_and_offsets(void **state)
{
	struct ctx *t = *state;
	uint8_t b[8];
	memset(b, 0xff, sizeof(b));
	assert_int_equal(virtio_mmio_read(&t->d, VIRTIO_MMIO_MAGIC_VALUE, b, 1), -EINVAL);
	assert_int_equal(b[0], 0);
	assert_int_equal(virtio_mmio_read(&t->d, VIRTIO_MMIO_MAGIC_VALUE, b, 2), -EINVAL);
	assert_int_equal(virtio_mmio_read(&t->d, VIRTIO_MMIO_MAGIC_VALUE, b, 8), -EINVAL);
	assert_int_equal(virtio_mmio_read(&t->d, VIRTIO_MMIO_MAGIC_VALUE + 1, b, 4), -EINVAL);
	assert_int_equal(virtio_mmio_read(&t->d, 0x18, b, 4), -EINVAL);      /* undefined */
	assert_int_equal(virtio_mmio_read(&t->d, VIRTIO_MMIO_QUEUE_NUM, b, 4), -EINVAL); /* write-only */
	assert_int_equal(virtio_mmio_read(&t->d, 0, b, 0), -EINVAL);
	assert_int_equal(virtio_mmio_read(&t->d, 0, b, 9), -EINVAL);
	/* a 2-byte status write is ignored */
	uint16_t s = VIRTIO_STATUS_ACKNOWLEDGE;
	assert_int_equal(virtio_mmio_write(&t->d, VIRTIO_MMIO_STATUS, &s, 2), -EINVAL);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_MAGIC_VALUE, 0), -EINVAL);  /* read-only */
	assert_int_equal(wr(t, VIRTIO_MMIO_INTERRUPT_STATUS, 1), -EINVAL);
	assert_int_equal(wr(t, 0xffc - 0x100 + 0x40, 1), -EINVAL);     /* undefined */
	assert_int_equal(rd(t, VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
	assert_int_equal(t->d.stats.bad_access, 10);
}

static void test_config_space(void **state)
{
	struct ctx *t = *state;
	uint8_t b1 = 0;
	uint16_t b2 = 0;
	uint32_t b4 = 0;
	uint64_t b8 = 0;
	assert_int_equal(virtio_mmio_read(&t->d, 0x100, &b1, 1), 0);
	assert_int_equal(b1, 0xa0);
	assert_int_equal(virtio_mmio_read(&t->d, 0x101, &b2, 2), 0);
	assert_int_equal(b2, 0xa2a1);
	assert_int_equal(virtio_mmio_read(&t->d, 0x108, &b4, 4), 0);
	assert_int_equal(b4, 0xabaaa9a8);
	assert_int_equal(virtio_mmio_read(&t->d, 0x100, &b8, 8), -EINVAL); /* 8-byte refused */
	assert_int_equal(virtio_mmio_read(&t->d, 0x10a, &b4, 4), -EINVAL); /* crosses the end */
	assert_int_equal(b4, 0);
	assert_int_equal(virtio_mmio_read(&t->d, 0x10c, &b1, 1), -EINVAL); /* beyond */
	assert_int_equal(virtio_mmio_read(&t->d, 0xfff, &b1, 1), -EINVAL);
	assert_int_equal(virtio_mmio_read(&t->d, UINT64_MAX, &b1, 1), -EINVAL);
	b2 = 0x1234;
	assert_int_equal(virtio_mmio_write(&t->d, 0x104, &b2, 2), 0);
	assert_int_equal(t->cfg_writes, 1);
	assert_int_equal(t->cfg_off, 4);
	assert_int_equal(t->cfg_len, 2);
	assert_int_equal(virtio_mmio_write(&t->d, 0x10b, &b2, 2), -EINVAL);
	assert_int_equal(t->cfg_writes, 1);
}

static void test_status_forward_only(void **state)
{
	struct ctx *t = *state;
	/* skipping ACKNOWLEDGE */
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_DRIVER), -EINVAL);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 1), 0);
	/* FEATURES_OK without DRIVER, DRIVER_OK without FEATURES_OK */
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 1 | 8), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 1 | 2 | 4), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 3), 0);
	/* reserved bits */
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 3 | 0x10), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 3 | 0x20), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 3 | 0x100), -EINVAL);
	/* clearing a bit */
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 2), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 1), -EINVAL);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 3);
	/* the driver cannot set DEVICE_NEEDS_RESET */
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 3 | 0x40), 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 3);
	assert_int_equal(t->d.stats.bad_status, 8);
	/* FAILED is always allowed, then only reset */
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 3 | 0x80), 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 3 | 0x80 | 8), -EINVAL);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 0x83);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 0), 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(t->resets, 1);
}

static void test_several_steps_at_once(void **state)
{
	struct ctx *t = *state;
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 3), 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 3);
}

static void test_features_negotiation(void **state)
{
	struct ctx *t = *state;
	/* features before DRIVER are refused */
	assert_int_equal(wr(t, VIRTIO_MMIO_DRIVER_FEATURES, 1), -EINVAL);
	to_features_ok(t, (1ull << VIRTIO_F_VERSION_1) | (1ull << 5));
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 0xb);
	assert_int_equal(t->d.driver_features, (1ull << VIRTIO_F_VERSION_1) | (1ull << 5));
	/* changing features after FEATURES_OK */
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff), -EINVAL);
	assert_int_equal(t->d.driver_features, (1ull << VIRTIO_F_VERSION_1) | (1ull << 5));
}

static void test_features_unoffered(void **state)
{
	struct ctx *t = *state;
	to_features_ok(t, (1ull << VIRTIO_F_VERSION_1) | (1ull << 6));
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 3); /* FEATURES_OK not set */
	assert_int_equal(t->d.stats.bad_features, 1);
	/* DRIVER_OK cannot follow, not even together with FEATURES_OK */
	wr(t, VIRTIO_MMIO_STATUS, 0xf);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 3);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 7), -EINVAL);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 3);
}

static void test_features_without_version1(void **state)
{
	struct ctx *t = *state;
	to_features_ok(t, 1ull << 5);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 3);
}

static void test_features_high_word(void **state)
{
	struct ctx *t = *state;
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 3), 0);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, 1);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, 1);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 0xb), 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 3);
}

static void test_queue_regs_before_features_ok(void **state)
{
	struct ctx *t = *state;
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 3), 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NUM, 8), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_READY, 1), -EINVAL);
	assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_READY), 0);
}

static void test_queue_num_checks(void **state)
{
	struct ctx *t = *state;
	to_features_ok(t, 1ull << VIRTIO_F_VERSION_1);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NUM, 0), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NUM, 12), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NUM, QMAX * 2), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NUM, 4), 0);
	/* no QueueNum yet on queue 1: ready refused */
	wr(t, VIRTIO_MMIO_QUEUE_SEL, 1);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_READY, 1), -EINVAL);
	/* QueueSel out of range */
	wr(t, VIRTIO_MMIO_QUEUE_SEL, 2);
	assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NUM, 4), -EINVAL);
	wr(t, VIRTIO_MMIO_QUEUE_SEL, 0xffffffff);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_READY, 1), -EINVAL);
	assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
}

static void check_queue_refused(void **state, uint64_t desc, uint64_t avail, uint64_t used)
{
	struct ctx *t = *state;
	to_features_ok(t, 1ull << VIRTIO_F_VERSION_1);
	setup_queue(t, 0, QMAX, desc, avail, used);
	assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_true(t->d.stats.bad_queue >= 1);
	assert_false(t->d.vq[0].ready);
}
static void test_queue_misaligned_desc(void **state) { check_queue_refused(state, FG_DESC + 8, FG_AVAIL, FG_USED); }
static void test_queue_misaligned_avail(void **state) { check_queue_refused(state, FG_DESC, FG_AVAIL + 1, FG_USED); }
static void test_queue_misaligned_used(void **state) { check_queue_refused(state, FG_DESC, FG_AVAIL, FG_USED + 2); }
static void test_queue_outside_ram(void **state) { check_queue_refused(state, 0xd0000000ull, FG_AVAIL, FG_USED); }
static void test_queue_in_mmio_hole(void **state) { check_queue_refused(state, FG_DESC, FG_AVAIL, 0xfeb00000ull); }
static void test_queue_straddles_ram_end(void **state)
{
	check_queue_refused(state, FG_RAM_GPA + FG_RAM_SIZE - 16 * 8, FG_AVAIL, FG_USED);
}
static void test_queue_overlap(void **state) { check_queue_refused(state, FG_DESC, FG_DESC + 0x40, FG_USED); }
static void test_queue_high_addr(void **state) { check_queue_refused(state, FG_DESC | (1ull << 40), FG_AVAIL, FG_USED); }

static void test_queue_locked_after_driver_ok(void **state)
{
	struct ctx *t = *state;
	to_live(t);
	/* CVE-2026-5747: rewriting the queue size after activation */
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NUM, 1), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_DESC_LOW, 0), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_READY, 0), -EINVAL);
	assert_int_equal(t->d.vq[0].size, QMAX);
	assert_true(t->d.vq[0].ready);
	assert_int_equal(t->d.vq[0].desc_gpa, FG_DESC);
}

static void test_queue_locked_while_ready(void **state)
{
	struct ctx *t = *state;
	to_features_ok(t, 1ull << VIRTIO_F_VERSION_1);
	setup_queue(t, 0, QMAX, FG_DESC, FG_AVAIL, FG_USED);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NUM, 2), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_READY, 1), -EINVAL);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_READY, 0), 0); /* disable before DRIVER_OK is fine */
	assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NUM, 2), 0);
}

static void test_notify_gating(void **state)
{
	struct ctx *t = *state;
	virtio_mmio_notify(&t->d, 0);          /* before anything */
	to_features_ok(t, 1ull << VIRTIO_F_VERSION_1);
	setup_queue(t, 0, QMAX, FG_DESC, FG_AVAIL, FG_USED);
	virtio_mmio_notify(&t->d, 0);          /* before DRIVER_OK */
	assert_int_equal(t->notifies, 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 0xf), 0);
	virtio_mmio_notify(&t->d, 1);          /* queue 1 never set up */
	virtio_mmio_notify(&t->d, 7);          /* no such queue */
	assert_int_equal(t->notifies, 0);
	virtio_mmio_notify(&t->d, 0);
	assert_int_equal(t->notifies, 1);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NOTIFY, 0), 0); /* kick through MMIO too */
	assert_int_equal(t->notifies, 2);
	/* a device that yields: notify reports it; the MMIO fallback loops until done */
	t->more = 1;
	assert_true(virtio_mmio_notify(&t->d, 0));
	assert_false(virtio_mmio_notify(&t->d, 0));
	t->more = 3;
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NOTIFY, 0), 0);
	assert_int_equal(t->notifies, 8);
	assert_int_equal(t->more, 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 0), 0);       /* reset */
	virtio_mmio_notify(&t->d, 0);
	assert_int_equal(t->notifies, 8);
	assert_int_equal(t->d.stats.bad_notify, 5);
}

/* With ioeventfds serving every queue (kiln-vmm), an MMIO QueueNotify reaching the transport on
 * a vCPU thread is refused and counted: the device never runs there. */
static void test_notify_mmio_refused_with_eventfds(void **state)
{
	struct ctx *t = *state;
	t->d.kicks_by_eventfd = true;
	to_features_ok(t, 1ull << VIRTIO_F_VERSION_1);
	setup_queue(t, 0, QMAX, FG_DESC, FG_AVAIL, FG_USED);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 0xf), 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NOTIFY, 0), 0);
	assert_int_equal(wr(t, VIRTIO_MMIO_QUEUE_NOTIFY, 7), 0);
	assert_int_equal(t->notifies, 0);
	assert_int_equal(t->d.stats.bad_notify, 2);
	virtio_mmio_notify(&t->d, 0); /* the event loop's path still works */
	assert_int_equal(t->notifies, 1);
}

static void test_reset_clears_everything(void **state)
{
	struct ctx *t = *state;
	to_live(t);
	wr(t, VIRTIO_MMIO_QUEUE_SEL, 1);
	virtio_mmio_needs_reset(&t->d);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 0), 0);
	assert_int_equal(t->resets, 1);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_int_equal(t->d.queue_sel, 0);
	assert_int_equal(t->d.driver_features, 0);
	assert_false(t->d.vq[0].ready);
	assert_int_equal(t->d.qregs[0].num, 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_READY), 0);
	/* and the device can be brought up again */
	to_live(t);
}

static void test_interrupts(void **state)
{
	struct ctx *t = *state;
	to_live(t);
	/* a used buffer: the first one always signals */
	fg_desc(&t->f, 0, FG_DATA, 16, 0, 0);
	fg_post(&t->f, 0);
	struct virtq_chain c;
	struct virtq_buf b[4];
	assert_int_equal(virtq_pop(&t->d.vq[0], &c, b, 4), 1);
	assert_int_equal(virtq_push(&t->d.vq[0], 0, 0), 0);
	virtio_mmio_used(&t->d, 0);
	assert_int_equal(t->irqs, 1);
	assert_int_equal(rd(t, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	assert_int_equal(wr(t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING), 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	virtio_mmio_used(&t->d, 9); /* bad index: nothing */
	assert_int_equal(t->irqs, 1);
	virtio_mmio_config_changed(&t->d);
	assert_int_equal(rd(t, VIRTIO_MMIO_CONFIG_GENERATION), 1);
	assert_int_equal(rd(t, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(t->irqs, 2);
}

static void test_needs_reset(void **state)
{
	struct ctx *t = *state;
	to_live(t);
	virtio_mmio_needs_reset(&t->d);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 0x4f);
	assert_int_equal(rd(t, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(t->irqs, 1);
	virtio_mmio_needs_reset(&t->d); /* once */
	assert_int_equal(t->irqs, 1);
	virtio_mmio_notify(&t->d, 0);   /* a failed device takes no more work */
	assert_int_equal(t->notifies, 0);
	/* the driver echoing the bit back (read-modify-write) keeps it */
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 0x4f), 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 0x4f);
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 0xcf), 0); /* FAILED */
	assert_int_equal(wr(t, VIRTIO_MMIO_STATUS, 0), 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_STATUS), 0);
}

static void test_init_rejects(void **state)
{
	struct ctx *t = *state;
	struct virtio_mmio_dev d;
	const struct gmem *m = &t->f.m;
	assert_int_equal(virtio_mmio_init(&d, m, 2, 1, 1, 16, NULL, 0, &ops, t, irq, t), -EINVAL); /* no VERSION_1 */
	assert_int_equal(virtio_mmio_init(&d, m, 2, DEV_FEATURES, 0, 16, NULL, 0, &ops, t, irq, t), -EINVAL);
	assert_int_equal(virtio_mmio_init(&d, m, 2, DEV_FEATURES, 9, 16, NULL, 0, &ops, t, irq, t), -EINVAL);
	assert_int_equal(virtio_mmio_init(&d, m, 2, DEV_FEATURES, 1, 12, NULL, 0, &ops, t, irq, t), -EINVAL);
	assert_int_equal(virtio_mmio_init(&d, m, 2, DEV_FEATURES, 1, 2048, NULL, 0, &ops, t, irq, t), -EINVAL);
	assert_int_equal(virtio_mmio_init(&d, m, 2, DEV_FEATURES, 1, 16, t->config, 0xf01, &ops, t, irq, t), -EINVAL);
	assert_int_equal(virtio_mmio_init(&d, m, 2, DEV_FEATURES, 1, 16, NULL, 0, &ops, t, NULL, t), -EINVAL);
}

static void test_cmdline(void **state)
{
	(void)state;
	char buf[96] = "console=ttyS0";
	assert_int_equal(virtio_mmio_cmdline_append(buf, sizeof(buf), 0xd0000000ull, 5), 0);
	assert_string_equal(buf, "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5");
	char e[64] = "";
	assert_int_equal(virtio_mmio_cmdline_append(e, sizeof(e), 0xd0001000ull, 6), 0);
	assert_string_equal(e, "virtio_mmio.device=4K@0xd0001000:6");
	assert_int_equal(virtio_mmio_cmdline_append(e, sizeof(e), 0xd0000800ull, 6), -EINVAL);
	assert_int_equal(virtio_mmio_cmdline_append(e, sizeof(e), 0, 6), -EINVAL);
	char s[40] = "0123456789";
	assert_int_equal(virtio_mmio_cmdline_append(s, sizeof(s), 0xd0000000ull, 5), -ENOSPC);
	assert_string_equal(s, "0123456789");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_identity),
		T(test_features_words),
		T(test_bad_widths_and_offsets),
		T(test_config_space),
		T(test_status_forward_only),
		T(test_several_steps_at_once),
		T(test_features_negotiation),
		T(test_features_unoffered),
		T(test_features_without_version1),
		T(test_features_high_word),
		T(test_queue_regs_before_features_ok),
		T(test_queue_num_checks),
		T(test_queue_misaligned_desc),
		T(test_queue_misaligned_avail),
		T(test_queue_misaligned_used),
		T(test_queue_outside_ram),
		T(test_queue_in_mmio_hole),
		T(test_queue_straddles_ram_end),
		T(test_queue_overlap),
		T(test_queue_high_addr),
		T(test_queue_locked_after_driver_ok),
		T(test_queue_locked_while_ready),
		T(test_notify_gating),
		T(test_notify_mmio_refused_with_eventfds),
		T(test_reset_clears_everything),
		T(test_interrupts),
		T(test_needs_reset),
		T(test_init_rejects),
		cmocka_unit_test(test_cmdline),
	};
	return cmocka_run_group_tests_name("virtio_mmio", tests, NULL, NULL);
}
