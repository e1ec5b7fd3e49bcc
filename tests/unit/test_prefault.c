/* test_prefault.c: cmocka unit tests for the guest RAM prefault plan and its steps (vmm/prefault.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/boot.h"
#include "vmm/prefault.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* A gmem of mem bytes laid out as kiln-vmm does (mem_layout_for), with no host memory. */
static void mk_gmem(struct gmem *m, uint64_t mem)
{
	struct mem_layout l;
	mem_layout_for(mem, &l);
	*m = (struct gmem){ .nr = 1, .ram_size = mem };
	m->r[0] = (struct gmem_region){ .gpa = 0, .size = l.low_size, .host = (uint8_t *)(uintptr_t)4096 };
	if (l.high_size) {
		m->r[1] = (struct gmem_region){ .gpa = MEM_HOLE_END, .size = l.high_size,
						.host = (uint8_t *)(uintptr_t)4096 };
		m->nr = 2;
	}
}

static void mk_bz(struct bzimage *bz, uint64_t run_addr, uint64_t run_size, uint64_t pm_size)
{
	*bz = (struct bzimage){ .load_addr = BOOT_HIMEM_START, .pm_size = pm_size, .run_addr = run_addr,
				.run_size = run_size };
}

/* Every planned range is 2 MiB aligned, non-empty, inside one RAM region, and disjoint. */
static void check_invariants(const struct prefault *pf, const struct gmem *m)
{
	assert_true(pf->n <= PREFAULT_MAX_RANGES);
	for (unsigned int i = 0; i < pf->n; i++) {
		const struct prefault_range *r = &pf->r[i];
		int inside = 0;
		assert_true(r->len > 0);
		assert_int_equal(r->gpa % PREFAULT_STEP, 0);
		assert_int_equal(r->len % PREFAULT_STEP, 0);
		for (unsigned int k = 0; k < m->nr; k++)
			if (r->gpa >= m->r[k].gpa && r->len <= m->r[k].size &&
			    r->gpa - m->r[k].gpa <= m->r[k].size - r->len)
				inside = 1;
		assert_true(inside);
		for (unsigned int j = 0; j < i; j++)
			assert_true(r->gpa + r->len <= pf->r[j].gpa || pf->r[j].gpa + pf->r[j].len <= r->gpa);
	}
}

/* Plan for mem bytes of RAM and a kernel with these header values, then check the invariants. */
static void plan_for(struct prefault *pf, struct gmem *m, uint64_t mem, uint64_t run_addr, uint64_t run_size,
		     uint64_t pm_size)
{
	struct bzimage bz;
	mk_gmem(m, mem);
	mk_bz(&bz, run_addr, run_size, pm_size);
	prefault_plan(pf, m, &bz);
	check_invariants(pf, m);
}

/* Our guest kernel's numbers (pref_address 16 MiB, init_size 0x138a000, a 4 MiB image), 256 MiB RAM. */
static void test_plan_typical(void **state)
{
	struct gmem m;
	struct prefault pf;
	(void)state;
	plan_for(&pf, &m, 256 * MiB, 16 * MiB, 0x138a000, 4174848);
	assert_int_equal(pf.n, 3);
	/* the run area (ends at 0x238a000, rounded up to 36 MiB), first, from the top down */
	assert_int_equal(pf.r[0].gpa, 16 * MiB);
	assert_int_equal(pf.r[0].len, 20 * MiB);
	assert_true(pf.r[0].down);
	/* RAM/64 + 4 MiB = 8 MiB at the top */
	assert_int_equal(pf.r[1].gpa, 248 * MiB);
	assert_int_equal(pf.r[1].len, 8 * MiB);
	assert_false(pf.r[1].down);
	/* the 8 MiB above the run area, upwards */
	assert_int_equal(pf.r[2].gpa, 36 * MiB);
	assert_int_equal(pf.r[2].len, 8 * MiB);
	assert_false(pf.r[2].down);
	assert_int_equal(pf.i, 0);
	assert_int_equal(pf.populated, 0);
}

/* Above 3 GiB of RAM the top range is the top of the high region. */
static void test_plan_high_ram(void **state)
{
	struct gmem m;
	struct prefault pf;
	(void)state;
	plan_for(&pf, &m, 4 * GiB, 16 * MiB, 32 * MiB, 4 * MiB);
	assert_int_equal(pf.n, 3);
	assert_int_equal(pf.r[0].gpa, 16 * MiB);
	assert_int_equal(pf.r[0].len, 32 * MiB);
	assert_int_equal(pf.r[1].gpa + pf.r[1].len, MEM_HOLE_END + 1 * GiB);
	assert_int_equal(pf.r[1].len, 4 * GiB / 64 + 4 * MiB);
	assert_int_equal(pf.r[2].gpa, 48 * MiB);
	assert_int_equal(pf.r[2].len, 8 * MiB);
}

/* RAM smaller than the run area: clipped to RAM, and the top range (inside it) is dropped. */
static void test_plan_small_ram(void **state)
{
	struct gmem m;
	struct prefault pf;
	(void)state;
	plan_for(&pf, &m, 24 * MiB, 16 * MiB, 32 * MiB, 4 * MiB);
	assert_int_equal(pf.n, 1);
	assert_int_equal(pf.r[0].gpa, 16 * MiB);
	assert_int_equal(pf.r[0].len, 8 * MiB);
	assert_true(pf.r[0].down);
}

/* Hostile or odd header values (the image is untrusted): no wrap, no range outside RAM. */
static void test_plan_odd_headers(void **state)
{
	static const uint64_t addrs[] = { 0, 1, BOOT_HIMEM_START, 16 * MiB + 1, 255 * MiB, 3 * GiB - 1,
					  MEM_HOLE_END, UINT64_MAX - 4096, UINT64_MAX };
	static const uint64_t sizes[] = { 0, 1, 2 * MiB, 0xffffffffULL, UINT64_MAX };
	static const uint64_t pms[] = { 0, 4096, 64 * MiB, UINT64_MAX };
	static const uint64_t mems[] = { 2 * MiB, 6 * MiB, 256 * MiB, 4 * GiB };
	struct gmem m;
	struct prefault pf;
	(void)state;
	for (size_t a = 0; a < sizeof(addrs) / sizeof(addrs[0]); a++)
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
			for (size_t p = 0; p < sizeof(pms) / sizeof(pms[0]); p++)
				for (size_t k = 0; k < sizeof(mems) / sizeof(mems[0]); k++)
					plan_for(&pf, &m, mems[k], addrs[a], sizes[s], pms[p]);
}

/*
 * Steps on real memory: each populates at most one 2 MiB step, the pages become resident, what
 * was written before is unchanged (MADV_POPULATE_WRITE never writes), and the last step says done.
 */
static void test_steps_populate_without_writing(void **state)
{
	const uint64_t size = 12 * MiB;
	struct gmem m = { .nr = 1, .ram_size = size };
	struct prefault pf = { .mem = &m };
	unsigned char vec[(6 * MiB) / 4096];
	int more, steps = 0;
	(void)state;
	uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	m.r[0] = (struct gmem_region){ .gpa = 0, .size = size, .host = p };
	(void)madvise(p, size, MADV_NOHUGEPAGE); /* residency per 4 KiB page, whatever the host's THP mode */
	p[4 * MiB + 5] = 0x5a;
	pf.r[0] = (struct prefault_range){ .gpa = 4 * MiB, .len = 5 * MiB, .down = 1 };
	pf.r[1] = (struct prefault_range){ .gpa = 10 * MiB, .len = 1 * MiB };
	pf.n = 2;
	do {
		uint64_t before = pf.populated;
		more = prefault_step(&pf);
		assert_int_equal(pf.err, 0);
		assert_true(pf.populated - before <= PREFAULT_STEP);
		steps++;
		if (steps == 1) { /* down: the first step is the top 2 MiB of [4, 9) MiB, nothing below */
			assert_int_equal(mincore(p + 7 * MiB, 2 * MiB, vec), 0);
			for (size_t i = 0; i < (2 * MiB) / 4096; i++)
				assert_true(vec[i] & 1);
			assert_int_equal(mincore(p + 6 * MiB, 4096, vec), 0);
			assert_false(vec[0] & 1);
		}
	} while (more && steps < 100);
	assert_int_equal(more, 0);
	assert_int_equal(steps, 4); /* 2 + 2 + 1 MiB (top down), then 1 MiB */
	assert_int_equal(pf.populated, 6 * MiB);
	assert_int_equal(prefault_step(&pf), 0); /* done stays done */
	assert_int_equal(p[4 * MiB + 5], 0x5a);
	assert_int_equal(mincore(p + 4 * MiB, 5 * MiB, vec), 0);
	for (size_t i = 0; i < (5 * MiB) / 4096; i++)
		assert_true(vec[i] & 1);
	assert_int_equal(mincore(p + 10 * MiB, 1 * MiB, vec), 0);
	for (size_t i = 0; i < MiB / 4096; i++)
		assert_true(vec[i] & 1);
	/* outside every range: untouched */
	assert_int_equal(mincore(p + 1 * MiB, 2 * MiB, vec), 0);
	for (size_t i = 0; i < (2 * MiB) / 4096; i++)
		assert_false(vec[i] & 1);
	munmap(p, size);
}

/* A range that is not guest RAM stops the plan (EFAULT) before any madvise. */
static void test_step_outside_ram_stops(void **state)
{
	struct gmem m;
	struct prefault pf;
	(void)state;
	mk_gmem(&m, 64 * MiB); /* fake host pointers: a step that reached madvise would fail ENOMEM */
	pf = (struct prefault){ .mem = &m, .n = 1 };
	pf.r[0] = (struct prefault_range){ .gpa = 63 * MiB, .len = 2 * MiB };
	assert_int_equal(prefault_step(&pf), 0);
	assert_int_equal(pf.err, EFAULT);
	assert_int_equal(pf.populated, 0);
}

/*
 * The early thread hands the plan back wherever it is stopped: stopped at once or after it may
 * have finished, the loop's steps then complete the plan, every planned byte is populated
 * exactly once (populated adds up), nothing written before changes, and a second stop, or a stop
 * of one never started, does nothing.
 */
static void test_early_thread_hands_over(void **state)
{
	const uint64_t size = 12 * MiB;
	struct gmem m = { .nr = 1, .ram_size = size };
	unsigned char vec[(5 * MiB) / 4096];
	struct prefault_early idle = { 0 };
	(void)state;
	prefault_early_stop(&idle);
	for (int wait_ms = 0; wait_ms <= 300; wait_ms += 300) {
		struct prefault pf = { .mem = &m };
		struct prefault_early e;
		int steps = 0;
		uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_true(p != MAP_FAILED);
		m.r[0] = (struct gmem_region){ .gpa = 0, .size = size, .host = p };
		(void)madvise(p, size, MADV_NOHUGEPAGE);
		p[8 * MiB + 7] = 0x3c;
		pf.r[0] = (struct prefault_range){ .gpa = 4 * MiB, .len = 5 * MiB, .down = 1 };
		pf.r[1] = (struct prefault_range){ .gpa = 10 * MiB, .len = 1 * MiB };
		pf.n = 2;
		assert_int_equal(prefault_early_start(&e, &pf), 0);
		if (wait_ms)
			usleep((useconds_t)wait_ms * 1000);
		prefault_early_stop(&e);
		prefault_early_stop(&e);
		assert_int_equal(pf.err, 0);
		assert_true(pf.populated <= 6 * MiB);
		while (prefault_step(&pf) && steps < 100)
			steps++;
		assert_int_equal(pf.err, 0);
		assert_int_equal(pf.populated, 6 * MiB);
		assert_int_equal(p[8 * MiB + 7], 0x3c);
		assert_int_equal(mincore(p + 4 * MiB, 5 * MiB, vec), 0);
		for (size_t i = 0; i < (5 * MiB) / 4096; i++)
			assert_true(vec[i] & 1);
		munmap(p, size);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_typical),
		cmocka_unit_test(test_plan_high_ram),
		cmocka_unit_test(test_plan_small_ram),
		cmocka_unit_test(test_plan_odd_headers),
		cmocka_unit_test(test_steps_populate_without_writing),
		cmocka_unit_test(test_step_outside_ram_stops),
		cmocka_unit_test(test_early_thread_hands_over),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
