/* vdev.c: puts a virtio-mmio device on the VM: MMIO window, irqfd, one ioeventfd per queue. */
#include "vdev.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vm.h"

#define QUEUE_NOTIFY_OFF 0x50

int vdev_prepare(struct vdev *v, struct vm *vm, struct evloop *loop, unsigned int slot)
{
	memset(v, 0, sizeof(*v));
	v->irqfd = -1;
	for (unsigned int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
		v->kick[q].fd = -1;
	if (slot >= VDEV_MAX)
		return -ENOSPC;
	v->vm = vm;
	v->loop = loop;
	v->base = VDEV_MMIO_BASE + (uint64_t)slot * VIRTIO_MMIO_SIZE;
	v->irq = VDEV_IRQ_BASE + slot;
	v->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->irqfd < 0)
		return -errno;
	struct kvm_irqfd k = { .fd = (uint32_t)v->irqfd, .gsi = v->irq };
	if (ioctl(vm->vm_fd, KVM_IRQFD, &k) < 0) {
		int r = -errno;
		close(v->irqfd);
		v->irqfd = -1;
		return r;
	}
	return 0;
}

void vdev_irq_raise(void *ctx)
{
	struct vdev *v = ctx;
	uint64_t one = 1;
	ssize_t n = write(v->irqfd, &one, sizeof(one));
	(void)n; /* a saturated counter still means an interrupt is pending */
}

static void mmio_rd(void *ctx, uint64_t off, uint8_t *data, uint32_t len)
{
	(void)virtio_mmio_read(ctx, off, data, len); /* refused reads are zero-filled and counted */
}

static void mmio_wr(void *ctx, uint64_t off, const uint8_t *data, uint32_t len)
{
	(void)virtio_mmio_write(ctx, off, data, len); /* refused writes change nothing, counted */
}

static void on_kick(void *ctx, int fd, uint32_t ev)
{
	struct vdev_kick *k = ctx;
	uint64_t cnt;
	(void)ev;
	ssize_t n = read(fd, &cnt, sizeof(cnt));
	(void)n;
	/* A bounded batch: if work is left, come back after the other fds had their turn. */
	if (virtio_mmio_notify(k->v->mmio, k->q)) {
		uint64_t one = 1;
		n = write(fd, &one, sizeof(one));
		(void)n;
	}
}

int vdev_attach(struct vdev *v, struct virtio_mmio_dev *mmio, unsigned int nq, char *cmdline, size_t cap)
{
	int r;
	if (nq > VIRTIO_MMIO_MAX_QUEUES)
		return -EINVAL;
	v->mmio = mmio;
	struct mmio_dev d = { .base = v->base, .len = VIRTIO_MMIO_SIZE, .read = mmio_rd,
			      .write = mmio_wr, .ctx = mmio };
	if ((r = vm_add_mmio(v->vm, &d)) < 0)
		return r;
	for (unsigned int q = 0; q < nq; q++) {
		struct vdev_kick *k = &v->kick[q];
		k->v = v;
		k->q = q;
		k->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (k->fd < 0)
			return -errno;
		v->nq = q + 1;
		struct kvm_ioeventfd io = {
			.datamatch = q, .addr = v->base + QUEUE_NOTIFY_OFF, .len = 4, .fd = k->fd,
			.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
		};
		if (ioctl(v->vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
			return -errno;
		if ((r = evloop_add(v->loop, k->fd, EPOLLIN, on_kick, k)) < 0)
			return r;
	}
	mmio->kicks_by_eventfd = nq == mmio->num_queues; /* vCPU threads never serve a queue */
	return virtio_mmio_cmdline_append(cmdline, cap, v->base, v->irq);
}

void vdev_release(struct vdev *v)
{
	for (unsigned int q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
		struct vdev_kick *k = &v->kick[q];
		if (k->fd < 0)
			continue;
		evloop_del(v->loop, k->fd);
		struct kvm_ioeventfd io = {
			.datamatch = q, .addr = v->base + QUEUE_NOTIFY_OFF, .len = 4, .fd = k->fd,
			.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | KVM_IOEVENTFD_FLAG_DEASSIGN,
		};
		if (v->vm && v->vm->vm_fd >= 0)
			(void)ioctl(v->vm->vm_fd, KVM_IOEVENTFD, &io);
		close(k->fd);
		k->fd = -1;
	}
	if (v->irqfd >= 0) {
		struct kvm_irqfd k = { .fd = (uint32_t)v->irqfd, .gsi = v->irq, .flags = KVM_IRQFD_FLAG_DEASSIGN };
		if (v->vm && v->vm->vm_fd >= 0)
			(void)ioctl(v->vm->vm_fd, KVM_IRQFD, &k);
		close(v->irqfd);
		v->irqfd = -1;
	}
}
