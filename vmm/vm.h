/* vm.h: the KVM virtual machine: guest memory, in-kernel irqchip, vCPU threads, I/O dispatch. */
#ifndef KILN_VM_H
#define KILN_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "gmem.h"
#include "util.h"

#define VM_MAX_VCPUS 32
#define VM_MAX_MEM_MIB 65536ULL
#define VM_MIN_MEM_MIB 32ULL
#define VM_MAX_MMIO_DEVS 16

#define EXIT_PORT 0xf4 /* paravirtual exit port: a byte written here ends the VM with that status */

/* Why the VM stopped (first reason wins). */
enum vm_stop {
	VM_RUNNING = 0,
	VM_STOP_EXIT,       /* guest wrote its status to the exit port */
	VM_STOP_RESET,      /* i8042 reset, triple fault, system event */
	VM_STOP_FAULT,      /* KVM could not run the vCPU (internal error, failed entry) */
	VM_STOP_ERROR,      /* a host-side failure inside kiln-vmm */
};

/* An MMIO device on the bus: [base, base+len) routed to read/write with the offset. */
struct mmio_dev {
	uint64_t base, len;
	void (*read)(void *ctx, uint64_t off, uint8_t *data, uint32_t len);
	void (*write)(void *ctx, uint64_t off, const uint8_t *data, uint32_t len);
	void *ctx;
};

struct serial;
struct vm;

struct vcpu {
	struct vm *vm;
	unsigned int idx;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	int started;
};

struct vm {
	int kvm_fd, vm_fd;
	struct gmem mem;
	unsigned int ncpus;
	size_t run_size;
	struct vcpu vcpu[VM_MAX_VCPUS];
	struct serial *serial;
	struct mmio_dev mmio[VM_MAX_MMIO_DEVS];
	unsigned int nmmio;
	int stop_efd;             /* written once when the VM stops */
	_Atomic int stop_reason;  /* enum vm_stop */
	_Atomic int exit_status;  /* exit-port status, or KVM exit reason for a fault */
};

/*
 * Open /dev/kvm, create the VM with its in-kernel irqchip and PIT, and map
 * mem_bytes of guest RAM (below and above the 32-bit MMIO hole). On failure
 * everything acquired is released and a message has been printed.
 */
int vm_create(struct vm *vm, uint64_t mem_bytes, unsigned int ncpus) KILN_WUR;

/*
 * Create the vCPUs: CPUID from KVM_GET_SUPPORTED_CPUID through the x86 filter,
 * MSRs, LAPIC; the BSP gets the boot registers for entry. Call after guest
 * memory holds the boot tables.
 */
int vm_create_vcpus(struct vm *vm, uint64_t entry) KILN_WUR;

/* Register an MMIO device. Call before vm_start. */
int vm_add_mmio(struct vm *vm, const struct mmio_dev *d) KILN_WUR;

/* Assert (1) or deassert (0) a guest IRQ line. Thread-safe. */
int vm_irq_line(struct vm *vm, uint32_t irq, int level) KILN_WUR;

/*
 * Start one thread per vCPU. Each loads its seccomp filter and waits at the start gate
 * (seccomp.h) before its first KVM_RUN. On failure the threads already started stay, a stop is
 * requested and the error is returned; the caller still runs the gate sequence.
 */
int vm_start(struct vm *vm) KILN_WUR;

/* How many vCPU threads vm_start started (and vm_join will wait for). */
unsigned int vm_started(const struct vm *vm);

/* Record why the VM stops (first caller wins) and wake the event loop and every vCPU. */
void vm_request_stop(struct vm *vm, enum vm_stop why, int status);

/* Wait for every vCPU thread to leave KVM_RUN and end. Call after a stop was requested. */
void vm_join(struct vm *vm);

/* Release every fd and mapping. Safe on a partly created VM. */
void vm_destroy(struct vm *vm);

#endif
