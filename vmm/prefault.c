/*
 * prefault.c: populate guest RAM ahead of the booting kernel.
 *
 * Every 2 MiB of guest RAM the guest first touches is a nested page fault in which the host
 * allocates and zeroes a huge page, on the vCPU's critical path. A kernel booting to /init
 * touches about 40 MiB in places the boot protocol and Linux's allocator make predictable (its
 * run area, the top of RAM). A thread of its own starts on them while the VMM is still being
 * set up (the run area is what the guest's first instructions write), and the event loop, idle
 * while the guest boots, goes on from where the thread stopped, on another host CPU (only where
 * there is one to spare: main.c asks the CPU affinity), so the vCPU finds them mapped. Measured
 * in the emulated host, where zeroing a huge page takes 5-12 ms: nested page faults over 2 ms on
 * the vCPU thread went from 16-17 per boot to 3-11 with the loop alone, and to 0-1 with the
 * thread (the 8-10 in the run area, all in the guest's first 75 ms, are gone).
 */
#include "prefault.h"

#include <errno.h>
#include <sys/mman.h>

#define ALIGN_DOWN(x) ((x) & ~(PREFAULT_STEP - 1))

static uint64_t align_up(uint64_t x)
{
	uint64_t r;
	return add_u64(x, PREFAULT_STEP - 1, &r) ? ALIGN_DOWN(r) : ALIGN_DOWN(UINT64_MAX);
}

/* Add [lo, hi) clipped to region g, when not empty. */
static void add_range(struct prefault *pf, const struct gmem_region *g, uint64_t lo, uint64_t hi, int down)
{
	uint64_t gend = g->gpa + g->size; /* no wrap: regions are checked when made */
	if (lo < g->gpa)
		lo = g->gpa;
	if (hi > gend)
		hi = gend;
	if (lo >= hi || pf->n >= PREFAULT_MAX_RANGES)
		return;
	pf->r[pf->n] = (struct prefault_range){ .gpa = lo, .len = hi - lo, .down = down };
	pf->n++;
}

void prefault_plan(struct prefault *pf, const struct gmem *m, const struct bzimage *bz)
{
	*pf = (struct prefault){ .mem = m };
	if (m->nr == 0)
		return;
	const struct gmem_region *low = &m->r[0], *top = &m->r[m->nr - 1];
	uint64_t run_lo = ALIGN_DOWN(bz->run_addr), run_end, run_hi, top_len, top_lo;

	if (!add_u64(bz->run_addr, bz->run_size, &run_end))
		run_end = UINT64_MAX;
	run_end = align_up(run_end);
	if (!add_u64(run_end, PREFAULT_ABOVE_RUN, &run_hi))
		run_hi = UINT64_MAX;
	run_hi = align_up(run_hi);

	top_len = align_up(m->ram_size / 64 + (4ULL << 20));
	top_lo = top->size > top_len ? ALIGN_DOWN(top->gpa + top->size - top_len) : top->gpa;
	if (top == low && top_lo < run_hi)
		top_lo = run_hi; /* the run area's ranges cover the rest */
	add_range(pf, low, run_lo, run_end, 1);
	add_range(pf, top, top_lo, top->gpa + top->size, 0);
	add_range(pf, low, run_end, run_hi, 0);
}

int prefault_step(void *ctx)
{
	struct prefault *pf = ctx;

	while (pf->i < pf->n && pf->done >= pf->r[pf->i].len) {
		pf->i++;
		pf->done = 0;
	}
	if (pf->i >= pf->n)
		return 0;
	const struct prefault_range *r = &pf->r[pf->i];
	uint64_t left = r->len - pf->done, len = left > PREFAULT_STEP ? PREFAULT_STEP : left;
	/* down: the step ends where the previous one began (r->gpa + left) */
	gpa_t at = r->down ? r->gpa + (left - len) : r->gpa + pf->done;
	void *host = gmem_ptr(pf->mem, at, len);
	if (!host) {
		pf->err = EFAULT;
		return 0;
	}
	if (madvise(host, len, MADV_POPULATE_WRITE) < 0) {
		if (errno == EINTR || errno == EAGAIN)
			return 1; /* try the same step again on the next pass */
		pf->err = errno;
		return 0;
	}
	pf->done += len;
	pf->populated += len;
	return pf->i + 1 < pf->n || pf->done < r->len;
}

static void *early_main(void *arg)
{
	struct prefault_early *e = arg;
	while (!atomic_load_explicit(&e->stop, memory_order_relaxed) && prefault_step(e->pf))
		;
	return NULL;
}

int prefault_early_start(struct prefault_early *e, struct prefault *pf)
{
	pthread_attr_t attr;
	int r;

	e->pf = pf;
	e->started = 0;
	atomic_store(&e->stop, 0);
	if ((r = pthread_attr_init(&attr)) != 0)
		return -r;
	r = pthread_attr_setstacksize(&attr, 64 * 1024);
	if (r == 0)
		r = pthread_create(&e->thread, &attr, early_main, e);
	pthread_attr_destroy(&attr);
	if (r != 0)
		return -r;
	e->started = 1;
	return 0;
}

void prefault_early_stop(struct prefault_early *e)
{
	if (!e->started)
		return;
	atomic_store(&e->stop, 1);
	pthread_join(e->thread, NULL);
	e->started = 0;
}
