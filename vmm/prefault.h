/* prefault.h: populate the guest RAM a booting Linux kernel is about to touch, in steps run by
 * the event loop while the vCPU runs. No KVM here. */
#ifndef KILN_PREFAULT_H
#define KILN_PREFAULT_H

#include <stdint.h>

#include "boot.h"
#include "gmem.h"
#include "util.h"

#define PREFAULT_MAX_RANGES 2
#define PREFAULT_STEP       (2ULL << 20) /* one transparent huge page per step */
#define PREFAULT_ABOVE_RUN  (8ULL << 20) /* bytes above the run area planned with it */

struct prefault_range {
	gpa_t gpa;
	uint64_t len;
	int down; /* step from the end towards gpa */
};

struct prefault {
	const struct gmem *mem;
	struct prefault_range r[PREFAULT_MAX_RANGES]; /* in the order they are populated */
	unsigned int n;    /* ranges planned */
	unsigned int i;    /* range in progress */
	uint64_t done;     /* bytes of r[i] done */
	uint64_t populated; /* bytes populated so far, all ranges */
	int err;           /* errno that ended it early (0: none) */
};

/*
 * Plan what to populate for a bzImage booting in RAM m: 2 MiB aligned (but where clipped to the
 * end of RAM), inside RAM, in this order:
 *  1. the top of the highest RAM region, RAM/64 + 4 MiB of it: Linux places its early memblock
 *     allocations (memmap, page tables) top down there (the initrd's pages, loaded there
 *     already, are populated and cost nothing);
 *  2. the kernel's run area ([pref_address, pref_address + init_size): the decompressor copies
 *     the compressed kernel to its top, then writes the kernel upwards from its start) and the
 *     PREFAULT_ABOVE_RUN above it (the page allocator's first pages are the lowest free ones,
 *     right above the kernel), from the top down: the guest's decompression runs upwards from
 *     the bottom at about the same pace, so the two meet in the middle instead of racing for
 *     the same pages.
 * Ranges are disjoint; one that would be empty is dropped. Never fails: n may be 0.
 */
void prefault_plan(struct prefault *pf, const struct gmem *m, const struct bzimage *bz);

/*
 * One step: populate (MADV_POPULATE_WRITE: allocate and map, contents untouched, so it is safe
 * while the guest runs) up to PREFAULT_STEP bytes of the plan. Returns nonzero while more
 * remains, 0 when done or stopped by an error (kept in pf->err; a kernel without
 * MADV_POPULATE_WRITE gives EINVAL: nothing is lost, the guest faults the pages in itself).
 * Signature of an evloop idle step; ctx is the struct prefault.
 */
int prefault_step(void *ctx) KILN_WUR;

#endif
