/* seccomp.h: installs kiln-vmm's build-time seccomp filters, one per thread class. */
#ifndef KILN_SECCOMP_H
#define KILN_SECCOMP_H

#include <stdio.h>

#include "util.h"

enum seccomp_class {
	SECCOMP_CLASS_LOOP = 0, /* the main thread: event loop, device I/O, teardown */
	SECCOMP_CLASS_VCPU = 1, /* each vCPU thread */
};

/*
 * Set NO_NEW_PRIVS on the calling thread and load the class's embedded BPF program with the raw
 * seccomp(2) syscall (no allocation, nothing that needs a syscall the filter refuses).
 * Ordering: the main thread calls it for SECCOMP_CLASS_LOOP after vm_start (the vCPU threads
 * exist, so it never needs clone) and before evloop_run; it must be called on that path even
 * when vm_start failed, since it also opens the start gate. Each vCPU thread calls it for
 * SECCOMP_CLASS_VCPU before its first KVM_RUN; that call returns only after the main thread's
 * own filter is in place (or failed), so no thread runs unfiltered while the guest runs.
 * Returns 0, or a negative errno after printing a message (vCPU: also when the main thread
 * failed, -ECANCELED). On failure the caller must stop the VM: never run the guest unfiltered.
 */
int seccomp_install(enum seccomp_class c) KILN_WUR;

/* NO_NEW_PRIVS and the class's filter on the calling thread, without the start gate (for tests).
 * Returns 0 or a negative errno; prints nothing. */
int seccomp_load(enum seccomp_class c) KILN_WUR;

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
