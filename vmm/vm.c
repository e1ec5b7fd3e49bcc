/* vm.c: the KVM virtual machine: guest memory, in-kernel irqchip, vCPU threads, I/O dispatch. */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "boot.h"
#include "devices/serial.h"
#include "seccomp.h"
#include "x86_64.h"

#define TSS_ADDR      0xfffbd000ULL
#define IDMAP_ADDR    0xfffbc000ULL
#define COM1_BASE     0x3f8
#define I8042_DATA    0x60
#define I8042_CMD     0x64
#define I8042_RESET   0xfe
#define VCPU_KICK_SIG SIGUSR1

int vm_irq_line(struct vm *vm, uint32_t irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = (uint32_t)level };
	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

/*
 * Guest RAM is 2 MiB aligned and asks for transparent huge pages (best effort: the host may have
 * them off), so KVM can map it with 2 MiB nested pages: one nested page fault per 2 MiB the guest
 * first touches instead of 512. Measured in the emulated host on the way to /init: 9103 nested
 * page faults with 4 KiB pages, 359 under QEMU, which does the same.
 */
#define GUEST_RAM_ALIGN (2ULL << 20)

static int map_region(struct vm *vm, unsigned int slot, gpa_t gpa, uint64_t size)
{
	uint64_t len = size + GUEST_RAM_ALIGN;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			  -1, 0);
	if (m == MAP_FAILED)
		return -errno;
	uint64_t head = (GUEST_RAM_ALIGN - ((uintptr_t)m & (GUEST_RAM_ALIGN - 1))) & (GUEST_RAM_ALIGN - 1);
	uint8_t *p = m + head;
	if (head)
		munmap(m, head);
	if (len - head - size)
		munmap(p + size, len - head - size);
	(void)madvise(p, size, MADV_HUGEPAGE);
	(void)madvise(p, size, MADV_DONTDUMP);
	struct gmem_region *r = &vm->mem.r[vm->mem.nr++];
	r->gpa = gpa;
	r->size = size;
	r->host = p;
	vm->mem.ram_size += size;
	struct kvm_userspace_memory_region kr = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = size, .userspace_addr = (uintptr_t)p,
	};
	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0 ? -errno : 0;
}

int vm_create(struct vm *vm, uint64_t mem_bytes, unsigned int ncpus)
{
	struct mem_layout l;
	int r;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	for (unsigned int i = 0; i < VM_MAX_VCPUS; i++)
		vm->vcpu[i].fd = -1;
	vm->ncpus = ncpus;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		r = -errno;
		kiln_warn_errno(-r, "cannot open /dev/kvm");
		return r;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		kiln_warn("unsupported KVM API version");
		return -ENOTSUP;
	}
	static const struct { int cap; const char *name; } caps[] = {
		{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" }, { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
		{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" }, { KVM_CAP_PIT2, "KVM_CAP_PIT2" },
		{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" }, { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(caps); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
			kiln_warn("KVM lacks %s", caps[i].name);
			return -ENOTSUP;
		}
	}
	int rs = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (rs < (int)sizeof(struct kvm_run)) {
		kiln_warn("KVM_GET_VCPU_MMAP_SIZE failed");
		return -EINVAL;
	}
	vm->run_size = (size_t)rs;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		r = -errno;
		kiln_warn_errno(-r, "KVM_CREATE_VM");
		return r;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ IDMAP_ADDR }) < 0) {
		r = -errno;
		kiln_warn_errno(-r, "KVM_SET_TSS_ADDR");
		return r;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		r = -errno;
		kiln_warn_errno(-r, "KVM_CREATE_IRQCHIP");
		return r;
	}
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		r = -errno;
		kiln_warn_errno(-r, "KVM_CREATE_PIT2");
		return r;
	}

	mem_layout_for(mem_bytes, &l);
	if ((r = map_region(vm, 0, 0, l.low_size)) < 0 ||
	    (l.high_size && (r = map_region(vm, 1, MEM_HOLE_END, l.high_size)) < 0)) {
		kiln_warn_errno(-r, "cannot map %llu MiB of guest memory",
				(unsigned long long)(mem_bytes >> 20));
		return r;
	}
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0) {
		r = -errno;
		kiln_warn_errno(-r, "eventfd");
		return r;
	}
	return 0;
}

int vm_create_vcpus(struct vm *vm, uint64_t entry)
{
	const uint32_t max_ent = 256;
	struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + max_ent * sizeof(cpuid->entries[0]));
	int r = 0;

	if (!cpuid)
		return -ENOMEM;
	cpuid->nent = max_ent;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
		r = -errno;
		kiln_warn_errno(-r, "KVM_GET_SUPPORTED_CPUID");
		goto out;
	}
	uint32_t nent = cpuid->nent;
	int tscd = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpu[i];
		c->vm = vm;
		c->idx = i;
		c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (c->fd < 0) {
			r = -errno;
			kiln_warn_errno(-r, "KVM_CREATE_VCPU %u", i);
			goto out;
		}
		void *run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
		if (run == MAP_FAILED) {
			r = -errno;
			kiln_warn_errno(-r, "mmap of kvm_run for vCPU %u", i);
			goto out;
		}
		c->run = run;
		/* Each vCPU gets its own filtered copy: APIC ids differ. */
		struct kvm_cpuid2 *mine = calloc(1, sizeof(*cpuid) + nent * sizeof(cpuid->entries[0]));
		if (!mine) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(mine, cpuid, sizeof(*cpuid) + nent * sizeof(cpuid->entries[0]));
		x86_cpuid_filter(mine, i, vm->ncpus, tscd);
		r = x86_vcpu_init(c->fd, mine);
		free(mine);
		if (r < 0) {
			kiln_warn_errno(-r, "vCPU %u set-up", i);
			goto out;
		}
		if (i == 0 && (r = x86_vcpu_boot_regs(c->fd, entry)) < 0) {
			kiln_warn_errno(-r, "vCPU 0 boot registers");
			goto out;
		}
	}
out:
	free(cpuid);
	return r;
}

int vm_add_mmio(struct vm *vm, const struct mmio_dev *d)
{
	if (vm->nmmio >= VM_MAX_MMIO_DEVS)
		return -ENOSPC;
	vm->mmio[vm->nmmio++] = *d;
	return 0;
}

void vm_request_stop(struct vm *vm, enum vm_stop why, int status)
{
	int expected = VM_RUNNING;
	if (atomic_compare_exchange_strong(&vm->stop_reason, &expected, (int)why))
		atomic_store(&vm->exit_status, status);
	uint64_t one = 1;
	ssize_t n = write(vm->stop_efd, &one, sizeof(one));
	(void)n; /* the counter only saturates; the loop needs one wake-up */
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpu[i];
		if (c->run)
			__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (c->started && !pthread_equal(c->thread, pthread_self()))
			pthread_kill(c->thread, VCPU_KICK_SIG);
	}
}

/* Port I/O from the guest. data holds len bytes (1, 2 or 4). */
static void pio_access(struct vm *vm, uint16_t port, uint8_t *data, uint32_t len, int is_write)
{
	if (port >= COM1_BASE && port < COM1_BASE + 8 && len == 1) {
		if (is_write)
			serial_pio_write(vm->serial, (uint16_t)(port - COM1_BASE), data[0]);
		else
			data[0] = serial_pio_read(vm->serial, (uint16_t)(port - COM1_BASE));
		return;
	}
	if (port == EXIT_PORT) {
		if (is_write)
			seccomp_debug_trigger(data[0]); /* only in `make seccomp-trigger` builds */
		if (is_write)
			vm_request_stop(vm, VM_STOP_EXIT, data[0]);
		else
			memset(data, 0xff, len);
		return;
	}
	if (port == I8042_CMD || port == I8042_DATA) {
		/* Only what a reset needs: an idle controller, and the pulse-reset command. */
		if (is_write && port == I8042_CMD && data[0] == I8042_RESET)
			vm_request_stop(vm, VM_STOP_RESET, 0);
		else if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (port == 0x70 || port == 0x71) {
		/* No RTC: reads as zero (update-in-progress clear), writes ignored. */
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	/* Nothing else is decoded: reads float high, writes are ignored. */
	if (!is_write)
		memset(data, 0xff, len);
}

static void mmio_access(struct vm *vm, uint64_t addr, uint8_t *data, uint32_t len, int is_write)
{
	for (unsigned int i = 0; i < vm->nmmio; i++) {
		const struct mmio_dev *d = &vm->mmio[i];
		if (addr >= d->base && range_ok(addr - d->base, len, d->len)) {
			if (is_write)
				d->write(d->ctx, addr - d->base, data, len);
			else
				d->read(d->ctx, addr - d->base, data, len);
			return;
		}
	}
	if (!is_write)
		memset(data, 0xff, len);
}

static void kick_handler(int sig)
{
	(void)sig;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	struct vm *vm = c->vm;
	struct kvm_run *run = c->run;
	struct pol_fds fds;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIG);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	/* Filtered before the first KVM_RUN, pinned to this vCPU's fd and the VM fd; waits at the
	 * start gate until the main thread is filtered too (and, with --hold-fd, released). */
	pol_fds_init(&fds);
	pol_fds_set(&fds, POL_FD_VM, vm->vm_fd);
	pol_fds_set(&fds, POL_FD_VCPU, c->fd);
	if (seccomp_install_vcpu(&fds) < 0) {
		vm_request_stop(vm, VM_STOP_ERROR, 0);
		return NULL;
	}

	while (atomic_load(&vm->stop_reason) == VM_RUNNING) {
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			kiln_warn_errno(errno, "KVM_RUN on vCPU %u", c->idx);
			vm_request_stop(vm, VM_STOP_ERROR, 0);
			break;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			/* The kernel bounds data_offset, size and count to the kvm_run page; check anyway. */
			uint64_t off = run->io.data_offset, sz = run->io.size, cnt = run->io.count, total;
			if ((sz != 1 && sz != 2 && sz != 4) || !mul_u64(sz, cnt, &total) ||
			    !range_ok(off, total, vm->run_size)) {
				vm_request_stop(vm, VM_STOP_FAULT, KVM_EXIT_IO);
				break;
			}
			uint8_t *p = (uint8_t *)run + off;
			for (uint64_t i = 0; i < cnt; i++, p += sz)
				pio_access(vm, run->io.port, p, (uint32_t)sz, run->io.direction == KVM_EXIT_IO_OUT);
			break;
		}
		case KVM_EXIT_MMIO: {
			uint32_t len = run->mmio.len;
			if (len == 0 || len > sizeof(run->mmio.data)) {
				vm_request_stop(vm, VM_STOP_FAULT, KVM_EXIT_MMIO);
				break;
			}
			mmio_access(vm, run->mmio.phys_addr, run->mmio.data, len, run->mmio.is_write);
			break;
		}
		case KVM_EXIT_SHUTDOWN:
			vm_request_stop(vm, VM_STOP_RESET, 0);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			vm_request_stop(vm, VM_STOP_RESET, (int)run->system_event.type);
			break;
		case KVM_EXIT_HLT:
		case KVM_EXIT_INTR:
			break;
		case KVM_EXIT_FAIL_ENTRY:
			kiln_warn("vCPU %u: KVM entry failed, hardware reason 0x%llx", c->idx,
				  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
			vm_request_stop(vm, VM_STOP_FAULT, (int)run->exit_reason);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			kiln_warn("vCPU %u: KVM internal error, suberror %u", c->idx, run->internal.suberror);
			vm_request_stop(vm, VM_STOP_FAULT, (int)run->exit_reason);
			break;
		default:
			kiln_warn("vCPU %u: unhandled KVM exit %u", c->idx, run->exit_reason);
			vm_request_stop(vm, VM_STOP_FAULT, (int)run->exit_reason);
			break;
		}
	}
	return NULL;
}

int vm_start(struct vm *vm)
{
	struct sigaction sa;
	pthread_attr_t attr;
	sigset_t set;
	int r;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler; /* no SA_RESTART: KVM_RUN must return EINTR */
	if (sigaction(VCPU_KICK_SIG, &sa, NULL) < 0)
		return -errno;
	/* Only vCPU threads take the kick signal; they unblock it themselves. */
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIG);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		r = pthread_create(&vm->vcpu[i].thread, &attr, vcpu_thread, &vm->vcpu[i]);
		if (r) {
			pthread_attr_destroy(&attr);
			kiln_warn_errno(r, "cannot start vCPU thread %u", i);
			vm_request_stop(vm, VM_STOP_ERROR, 0);
			return -r;
		}
		vm->vcpu[i].started = 1;
	}
	pthread_attr_destroy(&attr);
	return 0;
}

unsigned int vm_started(const struct vm *vm)
{
	unsigned int n = 0;
	for (unsigned int i = 0; i < vm->ncpus; i++)
		n += vm->vcpu[i].started != 0;
	return n;
}

void vm_join(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		if (vm->vcpu[i].started) {
			pthread_join(vm->vcpu[i].thread, NULL);
			vm->vcpu[i].started = 0;
		}
	}
}

void vm_destroy(struct vm *vm)
{
	for (unsigned int i = 0; i < VM_MAX_VCPUS; i++) {
		struct vcpu *c = &vm->vcpu[i];
		if (c->run)
			munmap(c->run, vm->run_size);
		if (c->fd >= 0)
			close(c->fd);
		c->run = NULL;
		c->fd = -1;
	}
	for (unsigned int i = 0; i < vm->mem.nr; i++)
		munmap(vm->mem.r[i].host, vm->mem.r[i].size);
	vm->mem.nr = 0;
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->stop_efd = vm->vm_fd = vm->kvm_fd = -1;
}
