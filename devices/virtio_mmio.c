/* virtio_mmio.c: virtio-mmio v2 register file with a forward-only status machine and checked queues. */
#include "virtio_mmio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Counters are bumped from vCPU threads with and without the lock: always atomically. */
#define STAT_INC(d, f) __atomic_fetch_add(&(d)->stats.f, 1u, __ATOMIC_RELAXED)

#define STATUS_GUEST_BITS (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK | \
			   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED)

int virtio_mmio_init(struct virtio_mmio_dev *d, const struct gmem *mem, uint32_t device_id,
		     uint64_t features, unsigned int num_queues, uint16_t queue_num_max,
		     const uint8_t *config, uint32_t config_len, const struct virtio_dev_ops *ops,
		     void *priv, void (*irq_raise)(void *ctx), void *irq_ctx)
{
	if (!d || !mem || !ops || !ops->reset || !ops->queue_notify || !irq_raise)
		return -EINVAL;
	if (!((features >> VIRTIO_F_VERSION_1) & 1u))
		return -EINVAL;
	if (num_queues == 0 || num_queues > VIRTIO_MMIO_MAX_QUEUES)
		return -EINVAL;
	if (queue_num_max == 0 || queue_num_max > VIRTQ_MAX_SIZE || (queue_num_max & (queue_num_max - 1)))
		return -EINVAL;
	if ((config == NULL) != (config_len == 0) || config_len > VIRTIO_MMIO_SIZE - VIRTIO_MMIO_CONFIG)
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	if (pthread_mutex_init(&d->lock, NULL) != 0)
		return -EINVAL;
	d->device_id = device_id;
	d->host_features = features;
	d->num_queues = num_queues;
	d->queue_num_max = queue_num_max;
	d->config = config;
	d->config_len = config_len;
	d->ops = ops;
	d->priv = priv;
	d->mem = mem;
	d->irq_raise = irq_raise;
	d->irq_ctx = irq_ctx;
	return 0;
}

void virtio_mmio_destroy(struct virtio_mmio_dev *d)
{
	pthread_mutex_destroy(&d->lock);
}

static void raise_int(struct virtio_mmio_dev *d, uint32_t bit)
{
	__atomic_fetch_or(&d->interrupt_status, bit, __ATOMIC_SEQ_CST);
	d->irq_raise(d->irq_ctx);
}

void virtio_mmio_used(struct virtio_mmio_dev *d, unsigned int qidx)
{
	if (qidx < d->num_queues && virtq_should_notify(&d->vq[qidx]))
		raise_int(d, VIRTIO_MMIO_INT_VRING);
}

void virtio_mmio_needs_reset(struct virtio_mmio_dev *d)
{
	if (d->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
		return;
	d->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		raise_int(d, VIRTIO_MMIO_INT_CONFIG);
}

void virtio_mmio_config_changed(struct virtio_mmio_dev *d)
{
	__atomic_fetch_add(&d->config_generation, 1u, __ATOMIC_SEQ_CST);
	raise_int(d, VIRTIO_MMIO_INT_CONFIG);
}

static bool live(const struct virtio_mmio_dev *d)
{
	return (d->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(d->status & (VIRTIO_STATUS_FAILED | VIRTIO_STATUS_DEVICE_NEEDS_RESET));
}

/* Queue registers may change only after FEATURES_OK and before DRIVER_OK, in a healthy device. */
static bool queue_regs_writable(const struct virtio_mmio_dev *d)
{
	return (d->status & VIRTIO_STATUS_FEATURES_OK) &&
	       !(d->status & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FAILED | VIRTIO_STATUS_DEVICE_NEEDS_RESET));
}

static void reset_locked(struct virtio_mmio_dev *d)
{
	/* The device drains first, while the queues it may still push to are intact. */
	d->ops->reset(d);
	for (unsigned int i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
		virtq_reset(&d->vq[i]);
	memset(d->qregs, 0, sizeof(d->qregs));
	d->status = 0;
	d->dev_features_sel = 0;
	d->drv_features_sel = 0;
	d->queue_sel = 0;
	d->driver_features = 0;
	d->driver_features_bad = false;
	__atomic_store_n(&d->interrupt_status, 0u, __ATOMIC_SEQ_CST);
}

static bool notify_locked(struct virtio_mmio_dev *d, unsigned int qidx)
{
	if (!live(d) || qidx >= d->num_queues || !d->vq[qidx].ready) {
		STAT_INC(d, bad_notify);
		return false;
	}
	return d->ops->queue_notify(d, qidx);
}

bool virtio_mmio_notify(struct virtio_mmio_dev *d, unsigned int qidx)
{
	pthread_mutex_lock(&d->lock);
	bool more = notify_locked(d, qidx);
	pthread_mutex_unlock(&d->lock);
	return more;
}

static bool features_acceptable(const struct virtio_mmio_dev *d)
{
	return !d->driver_features_bad && (d->driver_features & ~d->host_features) == 0 &&
	       ((d->driver_features >> VIRTIO_F_VERSION_1) & 1u);
}

static int write_status(struct virtio_mmio_dev *d, uint32_t val)
{
	if (val == 0) {
		reset_locked(d);
		return 0;
	}
	uint32_t cur = d->status;
	/* The driver may echo DEVICE_NEEDS_RESET back, but only the device sets it. */
	uint32_t want = val & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	uint32_t cur_g = cur & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	if ((want & ~STATUS_GUEST_BITS) || (cur_g & ~want) || ((cur & VIRTIO_STATUS_FAILED) && want != cur_g))
		goto refuse;
	uint32_t added = want & ~cur_g;
	if ((want & VIRTIO_STATUS_DRIVER) && !(want & VIRTIO_STATUS_ACKNOWLEDGE))
		goto refuse;
	if ((want & VIRTIO_STATUS_FEATURES_OK) && !(want & VIRTIO_STATUS_DRIVER))
		goto refuse;
	if ((want & VIRTIO_STATUS_DRIVER_OK) && !(want & VIRTIO_STATUS_FEATURES_OK))
		goto refuse;
	if ((added & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(d)) {
		/* Leave FEATURES_OK clear: the driver reads it back and gives up (3.1.1 step 6). */
		STAT_INC(d, bad_features);
		added &= ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	}
	d->status = cur | added;
	return 0;
refuse:
	STAT_INC(d, bad_status);
	return -EINVAL;
}

static int queue_ready(struct virtio_mmio_dev *d, struct virtio_mmio_queue_regs *r, struct virtq *q, uint32_t val)
{
	if (val == 0) {
		virtq_reset(q);
		return 0;
	}
	if (val != 1 || q->ready)
		return -EINVAL;
	if (r->num == 0 || r->num > d->queue_num_max)
		return -EINVAL;
	/* virtq_init checks power of two, alignment, RAM and overlap. */
	return virtq_init(q, d->mem, r->num, r->desc, r->driver, r->device, d->driver_features);
}

static void set_lo(uint64_t *v, uint32_t x) { *v = (*v & 0xffffffff00000000ull) | x; }
static void set_hi(uint64_t *v, uint32_t x) { *v = (*v & 0xffffffffull) | ((uint64_t)x << 32); }

static int write_queue_reg(struct virtio_mmio_dev *d, uint64_t off, uint32_t val)
{
	if (!queue_regs_writable(d) || d->queue_sel >= d->num_queues)
		return -EINVAL;
	struct virtio_mmio_queue_regs *r = &d->qregs[d->queue_sel];
	struct virtq *q = &d->vq[d->queue_sel];
	if (off == VIRTIO_MMIO_QUEUE_READY)
		return queue_ready(d, r, q, val);
	if (q->ready) /* the driver must not change a ready queue */
		return -EINVAL;
	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM:
		if (val == 0 || val > d->queue_num_max || (val & (val - 1)))
			return -EINVAL;
		r->num = val;
		return 0;
	case VIRTIO_MMIO_QUEUE_DESC_LOW: set_lo(&r->desc, val); return 0;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH: set_hi(&r->desc, val); return 0;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW: set_lo(&r->driver, val); return 0;
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH: set_hi(&r->driver, val); return 0;
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW: set_lo(&r->device, val); return 0;
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH: set_hi(&r->device, val); return 0;
	}
	return -EINVAL;
}

static int config_access_ok(const struct virtio_mmio_dev *d, uint64_t off, unsigned int len)
{
	return (len == 1 || len == 2 || len == 4) && off >= VIRTIO_MMIO_CONFIG &&
	       range_ok(off - VIRTIO_MMIO_CONFIG, len, d->config_len);
}

int virtio_mmio_read(struct virtio_mmio_dev *d, uint64_t off, void *data, unsigned int len)
{
	if (!data || len == 0 || len > 8)
		return -EINVAL;
	memset(data, 0, len);
	if (off >= VIRTIO_MMIO_CONFIG) {
		if (!config_access_ok(d, off, len)) {
			STAT_INC(d, bad_access);
			return -EINVAL;
		}
		memcpy(data, d->config + (off - VIRTIO_MMIO_CONFIG), len);
		return 0;
	}
	if (len != 4 || (off & 3)) {
		STAT_INC(d, bad_access);
		return -EINVAL;
	}
	uint32_t v = 0;
	int rc = 0;
	/* Lock-free registers first: the interrupt handler must never wait behind device I/O. */
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE: v = VIRTIO_MMIO_MAGIC; goto out;
	case VIRTIO_MMIO_VERSION: v = 2; goto out;
	case VIRTIO_MMIO_DEVICE_ID: v = d->device_id; goto out;
	case VIRTIO_MMIO_VENDOR_ID: v = KILN_VIRTIO_VENDOR; goto out;
	case VIRTIO_MMIO_INTERRUPT_STATUS: v = __atomic_load_n(&d->interrupt_status, __ATOMIC_SEQ_CST); goto out;
	case VIRTIO_MMIO_CONFIG_GENERATION: v = __atomic_load_n(&d->config_generation, __ATOMIC_SEQ_CST); goto out;
	}
	pthread_mutex_lock(&d->lock);
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES:
		v = d->dev_features_sel == 0 ? (uint32_t)d->host_features
		  : d->dev_features_sel == 1 ? (uint32_t)(d->host_features >> 32) : 0;
		break;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		v = d->queue_sel < d->num_queues ? d->queue_num_max : 0;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		v = d->queue_sel < d->num_queues && d->vq[d->queue_sel].ready;
		break;
	case VIRTIO_MMIO_STATUS:
		v = d->status;
		break;
	default: /* write-only or undefined */
		STAT_INC(d, bad_access);
		rc = -EINVAL;
		break;
	}
	pthread_mutex_unlock(&d->lock);
out:
	memcpy(data, &v, 4);
	return rc;
}

int virtio_mmio_write(struct virtio_mmio_dev *d, uint64_t off, const void *data, unsigned int len)
{
	if (!data || len == 0 || len > 8)
		return -EINVAL;
	int rc = 0;
	if (off == VIRTIO_MMIO_INTERRUPT_ACK && len == 4) {
		/* Lock-free: the guest's interrupt handler must never wait behind device I/O. */
		uint32_t ack;
		memcpy(&ack, data, 4);
		__atomic_fetch_and(&d->interrupt_status, ~ack, __ATOMIC_SEQ_CST);
		return 0;
	}
	pthread_mutex_lock(&d->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		if (!config_access_ok(d, off, len)) {
			STAT_INC(d, bad_access);
			rc = -EINVAL;
		} else if (d->ops->config_write) {
			d->ops->config_write(d, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, len);
		}
		goto out;
	}
	if (len != 4 || (off & 3)) {
		STAT_INC(d, bad_access);
		rc = -EINVAL;
		goto out;
	}
	uint32_t v;
	memcpy(&v, data, 4);
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		d->dev_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (!(d->status & VIRTIO_STATUS_DRIVER) ||
		    (d->status & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED))) {
			STAT_INC(d, bad_features);
			rc = -EINVAL;
		} else if (d->drv_features_sel == 0) {
			set_lo(&d->driver_features, v);
		} else if (d->drv_features_sel == 1) {
			set_hi(&d->driver_features, v);
		} else if (v != 0) {
			d->driver_features_bad = true; /* nothing is offered above bit 63 */
		}
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		d->drv_features_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		d->queue_sel = v; /* out of range: QueueNumMax reads 0, queue writes refused */
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
	case VIRTIO_MMIO_QUEUE_READY:
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		rc = write_queue_reg(d, off, v);
		if (rc)
			STAT_INC(d, bad_queue);
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		if (d->kicks_by_eventfd) {
			/* Each queue's index is caught by its ioeventfd and served by the loop; what gets
			 * here names no queue. A vCPU thread never runs device I/O (its seccomp class). */
			STAT_INC(d, bad_notify);
			break;
		}
		/* Fallback when no ioeventfd is registered: finish the whole queue here. */
		while (notify_locked(d, v))
			;
		break;
	case VIRTIO_MMIO_STATUS:
		rc = write_status(d, v);
		break;
	default: /* read-only or undefined */
		STAT_INC(d, bad_access);
		rc = -EINVAL;
		break;
	}
out:
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int virtio_mmio_cmdline_append(char *buf, size_t cap, uint64_t base, unsigned int irq)
{
	if (!buf || (base & (VIRTIO_MMIO_SIZE - 1)) || base == 0)
		return -EINVAL;
	size_t used = strnlen(buf, cap);
	if (used >= cap)
		return -ENOSPC;
	char item[64];
	int n = snprintf(item, sizeof(item), "%svirtio_mmio.device=4K@0x%llx:%u", used ? " " : "",
			 (unsigned long long)base, irq);
	if (n < 0 || (size_t)n >= cap - used)
		return -ENOSPC;
	memcpy(buf + used, item, (size_t)n + 1);
	return 0;
}
