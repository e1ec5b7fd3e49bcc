/* vcpu.c: seccomp allowlist of kiln-vmm's vCPU threads (KVM_RUN and MMIO/PIO dispatch). */
#include "policy.h"

#include <linux/futex.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/mman.h>

/*
 * Installed at the top of each vCPU thread, before its first KVM_RUN. A vCPU thread does no
 * device I/O: a queue notify reaches the loop through an ioeventfd, the serial device and vsock
 * wake the loop with an eventfd write, and interrupts go through irqfds or KVM_IRQ_LINE. Each
 * thread's copy of the program is pinned to its own vCPU fd (KVM_RUN) and the VM fd
 * (KVM_IRQ_LINE): a thread cannot run another thread's vCPU.
 */
static const struct pol_rule rules[] = {
	POL_ALLOW_IF(ioctl, "run the guest", POL_ARG_FD(0, POL_FD_VCPU, 1, "<own vCPU fd>"),
		     POL_ARG_EQ32(1, KVM_RUN)),
	POL_ALLOW_IF(ioctl, "serial interrupt (COM1 on the in-kernel IOAPIC)", POL_ARG_FD(0, POL_FD_VM, 1, "<VM fd>"),
		     POL_ARG_EQ32(1, KVM_IRQ_LINE)),
	POL_ALLOW(write, "eventfds: serial output/rx wake-ups, stop, irqfd, vsock deferred kick; stderr"),
	POL_ALLOW_IF(futex, "device and serial locks", POL_ARG_EQ32(1, FUTEX_WAIT_PRIVATE)),
	POL_ALLOW_IF(futex, "device and serial locks", POL_ARG_EQ32(1, FUTEX_WAKE_PRIVATE)),
	POL_ALLOW_IF(tgkill, "stop: kick the other vCPUs out of KVM_RUN (pthread_kill)",
		     POL_ARG_EQ32(2, SIGUSR1)),
	POL_ALLOW(getpid, "pthread_kill passes the thread group id to tgkill"),
	POL_ALLOW(rt_sigprocmask, "pthread_kill blocks signals around tgkill"),
	POL_ALLOW(rt_sigreturn, "return from the kick handler that interrupts KVM_RUN"),
	POL_ALLOW_IF(madvise, "thread exit: glibc releases the unused stack", POL_ARG_EQ32(2, MADV_DONTNEED)),
	POL_ALLOW(restart_syscall, "resume an allowed call interrupted by a stop signal"),
	POL_ALLOW(exit, "thread exit"),
};

const struct pol_class pol_vcpu = {
	.name = "vcpu",
	.about = "vCPU threads: KVM_RUN, port and MMIO exits",
	.rules = rules,
	.nrules = sizeof(rules) / sizeof(rules[0]),
};
