/* prefault.h: populate the guest RAM a booting Linux kernel is about to touch: in steps on a
 * thread of its own while the VMM is set up, then in steps run by the event loop while the vCPU
 * runs. No KVM here. */
#ifndef KILN_PREFAULT_H
#define KILN_PREFAULT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "boot.h"
#include "gmem.h"
#include "util.h"

#define PREFAULT_MAX_RANGES 3
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
 * end of RAM), inside RAM, in this order (the order in which a booting Linux first needs them):
 *  1. the kernel's run area ([pref_address, pref_address + init_size)), from the top down: the
 *     decompressor's first writes copy the compressed kernel to the area's top, downwards; then
 *     it writes the kernel upwards from the bottom, so the two meet in the middle instead of
 *     racing for the same pages;
 *  2. the top of the highest RAM region, RAM/64 + 4 MiB of it: Linux places its early memblock
 *     allocations (memmap, page tables) top down there (the initrd's pages, loaded there
 *     already, are populated and cost nothing);
 *  3. the PREFAULT_ABOVE_RUN above the run area, upwards: the page allocator's first pages are
 *     the lowest free ones, right above the kernel.
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

/*
 * The early phase: a thread that runs prefault_step() on pf until the plan is done or
 * prefault_early_stop(), started once guest RAM is mapped, so that what the kernel touches
 * first is populated while the VMM is still being set up and no vCPU runs. Stop it before any
 * seccomp filter is installed (it has none) and before guest RAM is unmapped; pf is the
 * caller's again once stop returns (the event loop's steps go on from where it stopped).
 * start returns 0 or -errno (then nothing runs); stop is a no-op when nothing runs.
 */
struct prefault_early {
	struct prefault *pf;
	pthread_t thread;
	atomic_int stop;
	int started;
};
int prefault_early_start(struct prefault_early *e, struct prefault *pf) KILN_WUR;
void prefault_early_stop(struct prefault_early *e);

#endif
