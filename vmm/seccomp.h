/* seccomp.h: installs kiln-vmm's build-time seccomp filters, one per thread class. */
#ifndef KILN_SECCOMP_H
#define KILN_SECCOMP_H

#include <stdio.h>

#include "policy/policy.h"
#include "util.h"

enum seccomp_class {
	SECCOMP_CLASS_LOOP = 0, /* the main thread: event loop, device I/O, teardown */
	SECCOMP_CLASS_VCPU = 1, /* each vCPU thread */
};

/*
 * The start sequence (every thread filtered before the guest's first instruction):
 *   main thread                         each vCPU thread
 *   vm_start: create the vCPU threads   seccomp_install_vcpu: load its filter, report,
 *   seccomp_install_loop                  wait at the start gate
 *   seccomp_wait_vcpus (all reported)
 *   [--hold-fd: wait for the start byte]
 *   seccomp_open_gate(1)            ->  return 0, first KVM_RUN
 * On any failure the main thread calls seccomp_open_gate(0) instead: every vCPU thread's
 * seccomp_install_vcpu returns -ECANCELED and the guest never runs.
 */

/*
 * Set NO_NEW_PRIVS on the calling thread, copy the class's embedded BPF program, write the fds
 * bound in fds over its placeholders (policy.h) and load it with the raw seccomp(2) syscall.
 * Refuses (-EINVAL) a binding that gives two of the class's slots the same value. Returns 0 or a
 * negative errno; prints nothing; no start gate (tests use it directly).
 */
int seccomp_load(enum seccomp_class c, const struct pol_fds *fds) KILN_WUR;

/* Main thread: load the loop class pinned to fds. Call after vm_start (the vCPU threads exist, so
 * the filter never needs clone) and before evloop_run. 0, or a negative errno after a message. */
int seccomp_install_loop(const struct pol_fds *fds) KILN_WUR;

/*
 * vCPU thread, before its first KVM_RUN: load the vcpu class pinned to fds (its own vCPU fd and
 * the VM fd), report to seccomp_wait_vcpus, then wait until the main thread opens the start gate.
 * Returns 0 when the guest may run; a negative errno after a message when the filter could not be
 * loaded; -ECANCELED, silently, when the main thread closed the gate for good. On any failure
 * the caller must stop the VM: never run the guest unfiltered.
 */
int seccomp_install_vcpu(const struct pol_fds *fds) KILN_WUR;

/* Main thread: wait until n vCPU threads have reported (each has loaded its filter, or failed,
 * and now waits at the gate). 0 when all n loaded theirs, -ECANCELED when any failed. */
int seccomp_wait_vcpus(unsigned int n) KILN_WUR;

/* Main thread: open the start gate once: run != 0 lets the vCPU threads run the guest, 0 makes
 * them return -ECANCELED. Call on every path after vm_start, even when it failed. */
void seccomp_open_gate(int run);

/* Print the effective rules of every class (--print-policy) and the size of each BPF program. */
void seccomp_print_policy(FILE *f);

#ifdef KILN_SECCOMP_TRIGGER
/* Debug builds only (make seccomp-trigger): value KILN_SECCOMP_TRIGGER_STATUS written to the exit
 * port makes the calling vCPU thread call execve, which its filter answers with SIGSYS. */
#define KILN_SECCOMP_TRIGGER_STATUS 0x5c
void seccomp_debug_trigger(unsigned int status);
#else
static inline void seccomp_debug_trigger(unsigned int status)
{
	(void)status;
}
#endif

#endif
