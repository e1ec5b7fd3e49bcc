/* vdev.h: puts a virtio-mmio device on the VM: MMIO window, irqfd, one ioeventfd per queue. */
#ifndef KILN_VDEV_H
#define KILN_VDEV_H

#include <stdint.h>

#include "devices/virtio_mmio.h"
#include "evloop.h"
#include "util.h"

#define VDEV_MMIO_BASE 0xd0000000ULL /* first device window, in the 32-bit MMIO hole */
#define VDEV_IRQ_BASE  5             /* first device IRQ (IOAPIC pin) */
#define VDEV_MAX       16

struct vm;
struct vdev;

struct vdev_kick {
	struct vdev *v;
	unsigned int q;
	int fd;
};

struct vdev {
	struct vm *vm;
	struct evloop *loop;
	struct virtio_mmio_dev *mmio;
	uint64_t base;
	uint32_t irq;
	int irqfd;
	unsigned int nq;
	struct vdev_kick kick[VIRTIO_MMIO_MAX_QUEUES];
};

/*
 * Reserve window and IRQ number slot (0..VDEV_MAX-1) and create the irqfd, so that
 * vdev_irq_raise(v) works before the device exists. Call before the device's init.
 */
int vdev_prepare(struct vdev *v, struct vm *vm, struct evloop *loop, unsigned int slot) KILN_WUR;

/* irq_raise callback for devices: signals the irqfd (an edge on the device's IRQ). Any thread. */
void vdev_irq_raise(void *v);

/*
 * Route the window to mmio and each of its nq queues' QueueNotify writes to an ioeventfd
 * served by the loop (virtio_mmio_notify). Appends the device to cmdline (cap bytes).
 * Call before vCPUs run.
 */
int vdev_attach(struct vdev *v, struct virtio_mmio_dev *mmio, unsigned int nq, char *cmdline,
		size_t cap) KILN_WUR;

/* Unregister and close everything vdev_prepare/vdev_attach made. Safe on a partial set-up. */
void vdev_release(struct vdev *v);

#endif
