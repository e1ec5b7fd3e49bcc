/* virtio_mmio.h: virtio-mmio version 2 transport (register file, status machine, queue setup). */
#ifndef KILN_VIRTIO_MMIO_H
#define KILN_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gmem.h"
#include "util.h"
#include "virtq.h"

/* Size of each device's MMIO window; announce as virtio_mmio.device=4K@ADDR:IRQ. */
#define VIRTIO_MMIO_SIZE 0x1000u
#define VIRTIO_MMIO_MAX_QUEUES 4u

/* Register offsets (virtio 1.x, 4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE         0x000
#define VIRTIO_MMIO_VERSION             0x004
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_VENDOR_ID           0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW    0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH   0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW    0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH   0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100

#define VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" */
#define KILN_VIRTIO_VENDOR 0x4e4c494bu /* "KILN" */

/* Device status bits (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE        1u
#define VIRTIO_STATUS_DRIVER             2u
#define VIRTIO_STATUS_DRIVER_OK          4u
#define VIRTIO_STATUS_FEATURES_OK        8u
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 0x40u
#define VIRTIO_STATUS_FAILED             0x80u

/* InterruptStatus bits. */
#define VIRTIO_MMIO_INT_VRING  1u
#define VIRTIO_MMIO_INT_CONFIG 2u

struct virtio_mmio_dev;

/*
 * What a device supplies. Every callback runs with the transport lock held, on the thread that
 * made the call (notify: the event loop; the others: a vCPU doing an MMIO write).
 */
struct virtio_dev_ops {
	/* Guest kicked queue qidx (queue ready, device DRIVER_OK and not failed). Pop, handle, push,
	 * then virtio_mmio_used(). On a malformed queue call virtio_mmio_needs_reset(). Handle a
	 * bounded batch; return true when work was left for a later call (fairness to other devices). */
	bool (*queue_notify)(struct virtio_mmio_dev *d, unsigned int qidx);
	/* Device reset: finish or drop everything in flight; after return nothing may touch the
	 * queues or guest memory until the next notify. Required. */
	void (*reset)(struct virtio_mmio_dev *d);
	/* Optional: driver wrote config bytes [off, off+len) (already range-checked). NULL: ignored. */
	void (*config_write)(struct virtio_mmio_dev *d, uint32_t off, const uint8_t *data, unsigned int len);
};

/* Counters of refused guest actions (for logs, tests and the metrics endpoint). */
struct virtio_mmio_stats {
	uint64_t bad_access;   /* wrong width, misaligned, undefined offset, read-only register */
	uint64_t bad_status;   /* status write refused (backwards, skipped step, reserved bit) */
	uint64_t bad_features; /* FEATURES_OK refused, or features written at the wrong time */
	uint64_t bad_queue;    /* queue register write refused, or queue set-up rejected */
	uint64_t bad_notify;   /* kick before DRIVER_OK, after failure, or to a dead queue */
};

/* Per-queue registers the driver programs before QueueReady. */
struct virtio_mmio_queue_regs {
	uint32_t num;
	uint64_t desc, driver, device;
};

struct virtio_mmio_dev {
	/* Set by virtio_mmio_init, constant afterwards. */
	uint32_t device_id;
	uint64_t host_features;
	unsigned int num_queues;
	uint16_t queue_num_max;
	const uint8_t *config;      /* device config space bytes (device-owned, read at 0x100+) */
	uint32_t config_len;
	const struct virtio_dev_ops *ops;
	void *priv;                 /* the device's own state */
	const struct gmem *mem;
	void (*irq_raise)(void *ctx);
	void *irq_ctx;
	bool kicks_by_eventfd;      /* set by the VMM once every queue has an ioeventfd: MMIO
				     * QueueNotify writes are then refused (counted), never served */

	/* Transport state, under lock. */
	pthread_mutex_t lock;
	uint32_t status;
	uint32_t dev_features_sel, drv_features_sel, queue_sel;
	uint64_t driver_features;
	bool driver_features_bad;   /* driver wrote a bit in a word above 1 */
	uint32_t interrupt_status;  /* atomic: set from the event loop, acked by a vCPU */
	uint32_t config_generation;
	struct virtio_mmio_queue_regs qregs[VIRTIO_MMIO_MAX_QUEUES];
	struct virtq vq[VIRTIO_MMIO_MAX_QUEUES];
	struct virtio_mmio_stats stats;
};

/*
 * Set up a device's transport. features must include VIRTIO_F_VERSION_1; num_queues in
 * [1, VIRTIO_MMIO_MAX_QUEUES]; queue_num_max a power of two <= VIRTQ_MAX_SIZE; ops->reset and
 * ops->queue_notify non-NULL; irq_raise is called (from whatever thread signals) to assert the
 * device's interrupt (the VMM writes the irqfd). config may be NULL with config_len 0.
 * Returns 0 or -EINVAL. Undo with virtio_mmio_destroy().
 */
int virtio_mmio_init(struct virtio_mmio_dev *d, const struct gmem *mem, uint32_t device_id,
		     uint64_t features, unsigned int num_queues, uint16_t queue_num_max,
		     const uint8_t *config, uint32_t config_len, const struct virtio_dev_ops *ops,
		     void *priv, void (*irq_raise)(void *ctx), void *irq_ctx) KILN_WUR;
void virtio_mmio_destroy(struct virtio_mmio_dev *d);

/*
 * A guest MMIO access at offset off (0..VIRTIO_MMIO_SIZE) inside the device's window, len bytes
 * (KVM gives 1, 2, 4 or 8). Registers take 4-byte aligned 4-byte accesses only; config space
 * (0x100 + config_len) takes 1, 2 or 4 bytes. A refused read fills data with zeros; a refused
 * write changes nothing. Both return 0, or -EINVAL when refused (counted; the VMM may ignore it).
 * Safe from any vCPU thread.
 */
int virtio_mmio_read(struct virtio_mmio_dev *d, uint64_t off, void *data, unsigned int len);
int virtio_mmio_write(struct virtio_mmio_dev *d, uint64_t off, const void *data, unsigned int len);

/*
 * The guest kicked queue qidx (the VMM's ioeventfd on QueueNotify fired, datamatch qidx).
 * Calls the device's queue_notify when the device is live; ignored (and counted) otherwise.
 * Call from the event loop thread. Returns true when the device stopped after a bounded batch
 * with requests still pending: call again after serving other events (for instance by writing 1
 * to the queue's ioeventfd so the loop comes back to it); the guest will not kick again for them.
 */
bool virtio_mmio_notify(struct virtio_mmio_dev *d, unsigned int qidx);

/* For devices (lock held, inside ops): raise the used-buffer interrupt when the queue's
 * suppression state asks for one. */
void virtio_mmio_used(struct virtio_mmio_dev *d, unsigned int qidx);
/* For devices (lock held): the device hit a malformed queue. Sets DEVICE_NEEDS_RESET, raises a
 * config-change interrupt, and stops delivering notifies until the driver resets the device. */
void virtio_mmio_needs_reset(struct virtio_mmio_dev *d);
/* For devices, any thread, lock not needed: bump ConfigGeneration and raise a config interrupt. */
void virtio_mmio_config_changed(struct virtio_mmio_dev *d);

/*
 * Append " virtio_mmio.device=4K@0x<base>:<irq>" (the Linux command-line form for one device) to
 * the NUL-terminated string in buf of capacity cap. base must be 4 KiB aligned. Returns 0, or
 * -EINVAL (bad base) / -ENOSPC (does not fit; buf unchanged).
 */
int virtio_mmio_cmdline_append(char *buf, size_t cap, uint64_t base, unsigned int irq) KILN_WUR;

/* True when the driver has negotiated feature bit. */
static inline bool virtio_mmio_has(const struct virtio_mmio_dev *d, unsigned int bit)
{
	return (d->driver_features >> bit) & 1u;
}

#endif
