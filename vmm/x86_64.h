/* x86_64.h: x86-specific vCPU set-up: CPUID filter, MSRs, long-mode registers, page tables, LAPIC. */
#ifndef KILN_X86_64_H
#define KILN_X86_64_H

#include <linux/kvm.h>
#include <stdint.h>

#include "gmem.h"
#include "util.h"

/*
 * Write the boot GDT, IDT and identity page tables (first 4 GiB, 2 MiB pages) into
 * guest memory. Call once, before the BSP first runs.
 */
int x86_write_boot_tables(const struct gmem *m) KILN_WUR;

/*
 * Filter KVM_GET_SUPPORTED_CPUID output in place for vCPU `index` of `ncpus`:
 * hypervisor bit set, KVM paravirt leaves, APIC ids, topology, no PMU, no
 * host-only features (monitor/mwait). tsc_deadline: KVM emulates the LAPIC
 * TSC-deadline timer (KVM_CAP_TSC_DEADLINE_TIMER), which KVM_GET_SUPPORTED_CPUID
 * does not report; advertising it spares the guest a LAPIC timer calibration
 * that fails under nested virtualization.
 */
void x86_cpuid_filter(struct kvm_cpuid2 *c, unsigned int index, unsigned int ncpus, int tsc_deadline);

/* Set CPUID, MSRs and LAPIC LINT0/LINT1 on a vCPU fd. 0 or -errno. */
int x86_vcpu_init(int vcpu_fd, const struct kvm_cpuid2 *cpuid) KILN_WUR;

/* Set the BSP's registers for the 64-bit Linux boot protocol entry. 0 or -errno. */
int x86_vcpu_boot_regs(int vcpu_fd, uint64_t entry) KILN_WUR;

#endif
