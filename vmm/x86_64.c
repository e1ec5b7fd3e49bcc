/* x86_64.c: x86-specific vCPU set-up: CPUID filter, MSRs, long-mode registers, page tables, LAPIC. */
#include "x86_64.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "boot.h"

/* GDT entry from flags (high nibble of byte 6 + access byte), base, limit. */
static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0x0000ffffu);
}

/* Boot GDT: selectors as the boot protocol names them (__BOOT_CS 0x10, __BOOT_DS 0x18). */
#define SEL_CS  0x10
#define SEL_DS  0x18
#define SEL_TSS 0x20
static const uint16_t gdt_flags[5] = { 0, 0, 0xa09b, 0xc093, 0x808b };

int x86_write_boot_tables(const struct gmem *m)
{
	uint8_t gdt[5 * 8];
	int r;

	for (unsigned int i = 0; i < 5; i++)
		st64(gdt + i * 8, i ? gdt_entry(gdt_flags[i], 0, 0xfffff) : 0);
	if ((r = gmem_write(m, BOOT_GDT_ADDR, gdt, sizeof(gdt))) < 0)
		return r;
	uint8_t idt[8] = { 0 };
	if ((r = gmem_write(m, BOOT_IDT_ADDR, idt, sizeof(idt))) < 0)
		return r;

	/* PML4[0] -> PDPT; PDPT[0..3] -> PD0..3; each PD maps 1 GiB with 2 MiB pages. */
	uint8_t pt[4096];
	memset(pt, 0, sizeof(pt));
	st64(pt, (BOOT_PML4_ADDR + 0x1000) | 0x3);
	if ((r = gmem_write(m, BOOT_PML4_ADDR, pt, sizeof(pt))) < 0)
		return r;
	memset(pt, 0, sizeof(pt));
	for (unsigned int i = 0; i < 4; i++)
		st64(pt + i * 8, (BOOT_PML4_ADDR + 0x2000 + i * 0x1000ULL) | 0x3);
	if ((r = gmem_write(m, BOOT_PML4_ADDR + 0x1000, pt, sizeof(pt))) < 0)
		return r;
	for (unsigned int d = 0; d < 4; d++) {
		for (unsigned int i = 0; i < 512; i++)
			st64(pt + i * 8, (((uint64_t)d << 30) + ((uint64_t)i << 21)) | 0x83);
		if ((r = gmem_write(m, BOOT_PML4_ADDR + 0x2000 + d * 0x1000ULL, pt, sizeof(pt))) < 0)
			return r;
	}
	return 0;
}

#define CPUID_HYPERVISOR (1u << 31)
#define KVM_SIGNATURE_LEAF 0x40000000u

void x86_cpuid_filter(struct kvm_cpuid2 *c, unsigned int index, unsigned int ncpus, int tsc_deadline)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 1:
			/* APIC id, logical processor count; hypervisor present; no MONITOR/MWAIT. */
			e->ebx = (e->ebx & 0x0000ffffu) | (index << 24) | ((ncpus & 0xff) << 16);
			e->ecx |= CPUID_HYPERVISOR;
			e->ecx &= ~(1u << 3);
			if (tsc_deadline)
				e->ecx |= 1u << 24;
			if (ncpus > 1)
				e->edx |= 1u << 28; /* HTT: the count in EBX is valid */
			break;
		case 4:
			/* Deterministic cache parameters: one core per package as far as caches go. */
			e->eax &= 0x3ff;
			e->eax |= (ncpus - 1) << 26;
			break;
		case 6:
			e->ecx &= ~(1u << 3); /* no energy/performance bias */
			break;
		case 0xa:
			e->eax = e->ebx = e->ecx = e->edx = 0; /* no architectural PMU */
			break;
		case 0xb:
		case 0x1f:
			/* Extended topology: x2APIC id of this vCPU. */
			e->edx = index;
			break;
		case KVM_SIGNATURE_LEAF:
			e->eax = 0x40000001u;
			e->ebx = 0x4b4d564b; /* "KVMK" */
			e->ecx = 0x564b4d56; /* "VMKV" */
			e->edx = 0x4d;       /* "M\0\0\0" */
			break;
		default:
			break;
		}
	}
}

#define MSR_IA32_SYSENTER_CS  0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SYSCALL_MASK      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102
#define MSR_IA32_TSC          0x10
#define MSR_IA32_MISC_ENABLE  0x1a0
#define MSR_MTRR_DEF_TYPE     0x2ff

static int set_msrs(int fd)
{
	static const struct { uint32_t idx; uint64_t val; } init[] = {
		{ MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 }, { MSR_IA32_SYSENTER_EIP, 0 },
		{ MSR_STAR, 0 }, { MSR_CSTAR, 0 }, { MSR_KERNEL_GS_BASE, 0 }, { MSR_SYSCALL_MASK, 0 },
		{ MSR_LSTAR, 0 }, { MSR_IA32_TSC, 0 },
		{ MSR_IA32_MISC_ENABLE, 1 },                   /* fast strings */
		{ MSR_MTRR_DEF_TYPE, (1u << 11) | 6 },         /* MTRRs on, default write-back */
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[ARRAY_SIZE(init)];
	} msrs;
	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = ARRAY_SIZE(init);
	for (size_t i = 0; i < ARRAY_SIZE(init); i++) {
		msrs.e[i].index = init[i].idx;
		msrs.e[i].data = init[i].val;
	}
	int n = ioctl(fd, KVM_SET_MSRS, &msrs);
	if (n < 0)
		return -errno;
	return (size_t)n == ARRAY_SIZE(init) ? 0 : -EINVAL;
}

/* LAPIC register offsets and LVT delivery modes. */
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_EXTINT 0x7
#define APIC_MODE_NMI    0x4

static void lvt_set_mode(struct kvm_lapic_state *s, unsigned int reg, uint32_t mode)
{
	uint32_t v;
	memcpy(&v, &s->regs[reg], 4);
	v = (v & ~0x700u) | (mode << 8);
	memcpy(&s->regs[reg], &v, 4);
}

int x86_vcpu_init(int fd, const struct kvm_cpuid2 *cpuid)
{
	struct kvm_lapic_state lapic;
	int r;

	if (ioctl(fd, KVM_SET_CPUID2, cpuid) < 0)
		return -errno;
	if ((r = set_msrs(fd)) < 0)
		return r;
	if (ioctl(fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	lvt_set_mode(&lapic, APIC_LVT0, APIC_MODE_EXTINT);
	lvt_set_mode(&lapic, APIC_LVT1, APIC_MODE_NMI);
	if (ioctl(fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

static void seg_from_gdt(struct kvm_segment *s, uint16_t sel)
{
	uint16_t f = gdt_flags[sel >> 3];
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff; /* 4 KiB granularity over 0xfffff */
	s->selector = sel;
	s->type = f & 0xf;
	s->present = (f >> 7) & 1;
	s->dpl = (f >> 5) & 3;
	s->db = (f >> 14) & 1;
	s->s = (f >> 4) & 1;
	s->l = (f >> 13) & 1;
	s->g = (f >> 15) & 1;
	s->avl = (f >> 12) & 1;
}

#define CR0_PE 0x1ULL
#define CR0_ET 0x10ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

int x86_vcpu_boot_regs(int fd, uint64_t entry)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_fpu fpu;

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	seg_from_gdt(&sregs.cs, SEL_CS);
	seg_from_gdt(&sregs.ds, SEL_DS);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	seg_from_gdt(&sregs.tr, SEL_TSS);
	sregs.gdt.base = BOOT_GDT_ADDR;
	sregs.gdt.limit = 5 * 8 - 1;
	sregs.idt.base = BOOT_IDT_ADDR;
	sregs.idt.limit = 7;
	sregs.cr3 = BOOT_PML4_ADDR;
	sregs.cr4 = CR4_PAE;
	sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 2;
	regs.rip = entry;
	regs.rsp = BOOT_STACK_TOP;
	regs.rbp = BOOT_STACK_TOP;
	regs.rsi = BOOT_ZEROPAGE_ADDR;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return -errno;

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return 0;
}
