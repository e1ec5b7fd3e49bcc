/* boot.h: Linux x86 boot protocol: bzImage checks, memory layout, zero page, e820. No KVM here. */
#ifndef KILN_BOOT_H
#define KILN_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "gmem.h"
#include "util.h"

/* Fixed guest-physical layout below 1 MiB (see README "Guest memory layout"). */
#define BOOT_GDT_ADDR      0x500ULL
#define BOOT_IDT_ADDR      0x520ULL
#define BOOT_ZEROPAGE_ADDR 0x7000ULL
#define BOOT_STACK_TOP     0x8ff0ULL
#define BOOT_PML4_ADDR     0x9000ULL  /* PML4, PDPT at +0x1000, 4 PDs after it */
#define BOOT_CMDLINE_ADDR  0x20000ULL
#define BOOT_MPTABLE_ADDR  0x9fc00ULL /* last KiB of base memory, scanned by Linux */
#define BOOT_EBDA_START    0x9fc00ULL
#define BOOT_HIMEM_START   0x100000ULL /* protected-mode kernel load address */

/* Guest RAM: [0, 3 GiB) then [4 GiB, ...); the last GiB below 4 GiB is the MMIO hole. */
#define MEM_HOLE_START     0xC0000000ULL
#define MEM_HOLE_END       0x100000000ULL

/* Limits of the kernel command line kept by kiln-vmm (the kernel may accept less). */
#define BOOT_CMDLINE_MAX   4095

struct bzimage {
	uint64_t load_addr;    /* where the protected-mode part goes */
	uint64_t entry;        /* 64-bit entry point */
	uint64_t pm_offset;    /* offset of the protected-mode part in the file */
	uint64_t pm_size;      /* its size */
	uint64_t mem_end;      /* first byte above what the kernel needs while it boots */
	uint64_t run_addr;     /* pref_address: where the kernel decompresses and runs */
	uint64_t run_size;     /* init_size: bytes it needs there before it reads the e820 map */
	uint32_t initrd_max;   /* highest address the initrd may occupy */
	uint32_t cmdline_max;  /* longest command line the kernel accepts, without NUL */
	uint16_t version;      /* boot protocol version */
	uint8_t setup_hdr[0x7b]; /* copy of the setup header, file offsets 0x1f1.. */
	size_t setup_hdr_len;
};

/*
 * Check a bzImage held in memory (file, size bytes) and fill *bz.
 * Refuses: a file too short for the setup header, no 0xAA55 boot flag, no "HdrS"
 * magic, protocol older than 2.12 or no 64-bit entry, setup_sects beyond the file,
 * a protected-mode part shorter than syssize says (truncated), not loadable high.
 * On refusal returns -EINVAL and writes a one-line reason into why[whylen].
 * Only the setup header is read (file offsets below 0x270): file may hold just the first
 * min(size, BZIMAGE_HDR_BYTES) bytes of the image, zero-padded to BZIMAGE_HDR_BYTES.
 */
#define BZIMAGE_HDR_BYTES 0x1000 /* bzimage_parse reads no byte of file beyond this */
int bzimage_parse(const uint8_t *file, size_t size, struct bzimage *bz, char *why, size_t whylen) KILN_WUR;

/* The guest RAM layout for mem_bytes of memory: one region below the hole, one above. */
struct mem_layout {
	uint64_t low_size;  /* bytes of RAM at [0, low_size) */
	uint64_t high_size; /* bytes of RAM at [4 GiB, 4 GiB + high_size) */
};
void mem_layout_for(uint64_t mem_bytes, struct mem_layout *l);

/*
 * Choose where the initrd goes: the highest page-aligned address that keeps it below
 * the end of low RAM and below initrd_max, and above everything the kernel needs.
 * Returns 0 with *addr set, or -ENOSPC (does not fit) and a reason in why.
 */
int initrd_place(const struct bzimage *bz, const struct mem_layout *l, uint64_t initrd_size,
		 uint64_t *addr, char *why, size_t whylen) KILN_WUR;

/* Build the e820 map; returns the number of entries (at most max). */
struct e820_ent {
	uint64_t addr, size;
	uint32_t type; /* 1 RAM, 2 reserved */
};
unsigned int e820_build(const struct mem_layout *l, struct e820_ent *e, unsigned int max);

/*
 * Write the boot state into guest memory: protected-mode kernel, command line,
 * zero page (setup header, loader type, heap, cmdline and initrd pointers, e820).
 * The initrd itself, when any, must already be copied to initrd_addr by the caller. With
 * file NULL the protected-mode kernel is not copied either: the caller puts bz->pm_size bytes
 * from file offset bz->pm_offset at bz->load_addr itself (kiln-vmm reads them straight from
 * the file into guest memory).
 * The caller has checked everything with bzimage_parse/initrd_place; this still
 * returns -EFAULT rather than write outside guest RAM.
 */
int boot_write(const struct gmem *m, const struct mem_layout *l, const struct bzimage *bz,
	       const uint8_t *file, const char *cmdline, uint64_t initrd_addr,
	       uint64_t initrd_size) KILN_WUR;

#endif
