/* test_mptable.c: cmocka unit tests for the MP floating pointer and configuration table (vmm/mptable.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/boot.h"
#include "vmm/mptable.h"

#define GPA ((uint32_t)BOOT_MPTABLE_ADDR)

/* Build the table for ncpus into an exactly sized heap buffer and check every structure in it. */
static void check_table(unsigned int ncpus)
{
	size_t size = mptable_size(ncpus);
	uint8_t *buf = malloc(size);
	assert_non_null(buf);
	memset(buf, 0xa5, size);

	int n = mptable_build(buf, size, GPA, ncpus);
	assert_int_equal(n, size);

	/* Floating pointer. */
	const uint8_t *mpf = buf;
	assert_memory_equal(mpf, "_MP_", 4);
	assert_int_equal(mptable_sum(mpf, 16), 0);
	assert_int_equal(ld32(mpf + 4), GPA + 16);
	assert_int_equal(mpf[8], 1);  /* 16-byte units */
	assert_int_equal(mpf[9], 4);  /* spec 1.4 */
	for (int i = 11; i < 16; i++) /* no default configuration, no IMCR */
		assert_int_equal(mpf[i], 0);

	/* Configuration table header. */
	const uint8_t *mpc = buf + (ld32(mpf + 4) - GPA);
	uint16_t len = ld16(mpc + 4);
	assert_memory_equal(mpc, "PCMP", 4);
	assert_int_equal(len, size - 16);
	assert_int_equal(mptable_sum(mpc, len), 0);
	assert_int_equal(mpc[6], 4);
	assert_int_equal(ld32(mpc + 36), LAPIC_ADDR);
	assert_int_equal(ld16(mpc + 40), 0); /* no extended table */
	uint16_t count = ld16(mpc + 34);
	assert_int_equal(count, ncpus + 1 + 1 + MPTABLE_IOAPIC_PINS + 2);

	/* Entries. */
	unsigned int cpus = 0, buses = 0, ioapics = 0, ints = 0, lints = 0;
	const uint8_t *p = mpc + 44, *end = mpc + len;
	for (unsigned int i = 0; i < count; i++) {
		assert_true(p < end);
		switch (p[0]) {
		case 0: /* processor */
			assert_true(p + 20 <= end);
			assert_int_equal(p[1], cpus);        /* APIC id i */
			assert_true(p[3] & 1);               /* enabled */
			assert_int_equal(!!(p[3] & 2), cpus == 0); /* BSP only on CPU 0 */
			assert_int_equal(p[3] & ~3u, 0);
			cpus++;
			p += 20;
			break;
		case 1: /* bus */
			assert_memory_equal(p + 2, "ISA   ", 6);
			buses++;
			p += 8;
			break;
		case 2: /* IOAPIC */
			assert_int_equal(p[1], ncpus);
			assert_true(p[3] & 1);
			assert_int_equal(ld32(p + 4), IOAPIC_ADDR);
			ioapics++;
			p += 8;
			break;
		case 3: /* I/O interrupt: ISA IRQ i to IOAPIC pin i */
			assert_int_equal(p[1], 0);
			assert_int_equal(p[4], 0);
			assert_int_equal(p[5], ints);
			assert_int_equal(p[6], ncpus);
			assert_int_equal(p[7], ints);
			ints++;
			p += 8;
			break;
		case 4: /* local interrupt: LINT0 ExtINT, LINT1 NMI, to every local APIC */
			assert_int_equal(p[1], lints == 0 ? 3 : 1);
			assert_int_equal(p[6], 0xff);
			assert_int_equal(p[7], lints);
			lints++;
			p += 8;
			break;
		default:
			fail_msg("entry %u has unknown type %u", i, p[0]);
		}
	}
	assert_true(p == end);
	assert_int_equal(cpus, ncpus);
	assert_int_equal(buses, 1);
	assert_int_equal(ioapics, 1);
	assert_int_equal(ints, MPTABLE_IOAPIC_PINS);
	assert_int_equal(lints, 2);
	free(buf);
}

static void test_one_cpu(void **state)
{
	(void)state;
	check_table(1);
}

static void test_two_cpus(void **state)
{
	(void)state;
	check_table(2);
}

static void test_max_cpus(void **state)
{
	(void)state;
	check_table(MPTABLE_MAX_CPUS);
	assert_int_equal(MPTABLE_MAX_CPUS, 32);
	/* The VMM builds it in a 1 KiB buffer and puts it in the last KiB of base memory. */
	assert_true(mptable_size(MPTABLE_MAX_CPUS) <= 1024);
	assert_true(BOOT_MPTABLE_ADDR + mptable_size(MPTABLE_MAX_CPUS) <= 0xa0000);
	uint8_t buf[1024];
	assert_int_equal(mptable_build(buf, sizeof(buf), GPA, MPTABLE_MAX_CPUS), mptable_size(32));
}

static void test_every_count(void **state)
{
	(void)state;
	for (unsigned int n = 1; n <= MPTABLE_MAX_CPUS; n++)
		check_table(n);
}

static void test_bad_ncpus(void **state)
{
	(void)state;
	uint8_t buf[1024], ref[1024];
	memset(buf, 0x5a, sizeof(buf));
	memcpy(ref, buf, sizeof(buf));
	assert_int_equal(mptable_build(buf, sizeof(buf), GPA, 0), -EINVAL);
	assert_int_equal(mptable_build(buf, sizeof(buf), GPA, MPTABLE_MAX_CPUS + 1), -EINVAL);
	assert_int_equal(mptable_build(buf, sizeof(buf), GPA, 0xffffffffu), -EINVAL);
	assert_memory_equal(buf, ref, sizeof(buf));
}

static void test_buffer_too_small(void **state)
{
	(void)state;
	static const unsigned int counts[] = { 1, 2, MPTABLE_MAX_CPUS };
	for (size_t i = 0; i < ARRAY_SIZE(counts); i++) {
		size_t need = mptable_size(counts[i]);
		/* Exactly sized heap buffer, one byte short: ASan proves nothing is written past it. */
		uint8_t *buf = malloc(need - 1), *ref = malloc(need - 1);
		memset(buf, 0x5a, need - 1);
		memcpy(ref, buf, need - 1);
		assert_int_equal(mptable_build(buf, need - 1, GPA, counts[i]), -ENOSPC);
		assert_int_equal(mptable_build(buf, 16, GPA, counts[i]), -ENOSPC);
		assert_memory_equal(buf, ref, need - 1);
		free(buf);
		free(ref);
	}
	assert_int_equal(mptable_build(NULL, 0, GPA, 1), -ENOSPC);
}

static void test_sum(void **state)
{
	(void)state;
	const uint8_t b[] = { 0x80, 0x80, 0x01, 0xff };
	assert_int_equal(mptable_sum(b, 0), 0);
	assert_int_equal(mptable_sum(b, 2), 0);
	assert_int_equal(mptable_sum(b, 3), 1);
	assert_int_equal(mptable_sum(b, 4), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_cpu),
		cmocka_unit_test(test_two_cpus),
		cmocka_unit_test(test_max_cpus),
		cmocka_unit_test(test_every_count),
		cmocka_unit_test(test_bad_ncpus),
		cmocka_unit_test(test_buffer_too_small),
		cmocka_unit_test(test_sum),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
