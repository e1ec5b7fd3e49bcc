/* test_boot.c: cmocka unit tests for the bzImage checks, memory layout, e820, initrd placement and zero page (vmm/boot.c). */
#include <asm/bootparam.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/boot.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* Defaults of the synthetic bzImage built by mk_image(). */
#define IMG_SETUP_SECTS 4
#define IMG_PM_OFF      ((IMG_SETUP_SECTS + 1) * 512)
#define IMG_PAYLOAD     4096
#define IMG_PREF        (16 * MiB)
#define IMG_INIT_SIZE   (32 * MiB)
#define IMG_INITRD_MAX  0x7fffffffu
#define IMG_CMDLINE     2047u
#define IMG_HDR_JUMP    0x6a /* header ends at 0x202 + 0x6a = 0x26c, like a real kernel */

/*
 * A valid bzImage of size bytes (>= IMG_PM_OFF + 16): setup_sects IMG_SETUP_SECTS, a
 * payload pattern after the setup part and syssize covering the whole payload.
 * The buffer is exactly size bytes long so ASan sees any read past the file.
 */
static uint8_t *mk_image_sized(size_t size)
{
	uint8_t *f = calloc(1, size);
	assert_non_null(f);
	for (size_t i = IMG_PM_OFF; i < size; i++)
		f[i] = (uint8_t)(i * 7 + 3);
	f[0x1f1] = IMG_SETUP_SECTS;
	st32(f + 0x1f4, (uint32_t)((size - IMG_PM_OFF) / 16));
	st16(f + 0x1fe, 0xAA55);
	f[0x200] = 0xeb;
	f[0x201] = IMG_HDR_JUMP;
	st32(f + 0x202, 0x53726448u); /* "HdrS" */
	st16(f + 0x206, 0x020f);
	f[0x211] = LOADED_HIGH;
	st32(f + 0x22c, IMG_INITRD_MAX);
	st16(f + 0x236, XLF_KERNEL_64);
	st32(f + 0x238, IMG_CMDLINE);
	st64(f + 0x258, IMG_PREF);
	st32(f + 0x260, (uint32_t)IMG_INIT_SIZE);
	return f;
}

static uint8_t *mk_image(void)
{
	return mk_image_sized(IMG_PM_OFF + IMG_PAYLOAD);
}

/* bzimage_parse must refuse f[size] with -EINVAL and a reason containing want. */
static void expect_reject(const uint8_t *f, size_t size, const char *want)
{
	struct bzimage bz;
	char why[256];

	memset(why, 0, sizeof(why));
	assert_int_equal(bzimage_parse(f, size, &bz, why, sizeof(why)), -EINVAL);
	assert_true(why[0] != '\0');
	if (!strstr(why, want))
		fail_msg("reason \"%s\" does not mention \"%s\"", why, want);
}

static void parse_ok(const uint8_t *f, size_t size, struct bzimage *bz)
{
	char why[256] = "";
	int r = bzimage_parse(f, size, bz, why, sizeof(why));
	if (r != 0)
		fail_msg("bzimage_parse refused a valid image: %d %s", r, why);
}

/* ---- bzimage_parse ---------------------------------------------------------- */

static void test_parse_too_short(void **state)
{
	(void)state;
	uint8_t *f = mk_image();
	expect_reject(f, 0, "too short");
	expect_reject(f, 0x1f0, "too short");
	expect_reject(f, 0x263, "too short");
	/* Long enough for the header, but then the setup part does not fit. */
	expect_reject(f, 0x264, "setup_sects");
	free(f);
}

static void test_parse_bad_boot_flag(void **state)
{
	(void)state;
	uint8_t *f = mk_image();
	st16(f + 0x1fe, 0x55AA);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "0xAA55");
	free(f);
}

static void test_parse_bad_magic(void **state)
{
	(void)state;
	uint8_t *f = mk_image();
	memcpy(f + 0x202, "HdrT", 4);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "HdrS");
	free(f);
}

static void test_parse_old_protocol(void **state)
{
	(void)state;
	uint8_t *f = mk_image();
	st16(f + 0x206, 0x0209);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "2.09 is too old");
	st16(f + 0x206, 0x020b);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "2.11 is too old");
	st16(f + 0x206, 0x0000);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "too old");
	/* 2.12 is the oldest accepted. */
	struct bzimage bz;
	st16(f + 0x206, 0x020c);
	parse_ok(f, IMG_PM_OFF + IMG_PAYLOAD, &bz);
	assert_int_equal(bz.version, 0x020c);
	free(f);
}

static void test_parse_no_64bit_entry(void **state)
{
	(void)state;
	uint8_t *f = mk_image();
	st16(f + 0x236, (uint16_t)(0xffff & ~XLF_KERNEL_64));
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "64-bit");
	free(f);
}

static void test_parse_not_loaded_high(void **state)
{
	(void)state;
	uint8_t *f = mk_image();
	f[0x211] = (uint8_t)(0xff & ~LOADED_HIGH);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "loadable high");
	free(f);
}

static void test_parse_setup_sects_beyond_file(void **state)
{
	(void)state;
	uint8_t *f = mk_image();
	f[0x1f1] = 0xff; /* 256 * 512 bytes of setup */
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "setup_sects");
	/* The setup part ending exactly at the end of the file leaves no payload. */
	f[0x1f1] = (IMG_PM_OFF + IMG_PAYLOAD) / 512 - 1;
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "setup_sects");
	free(f);
}

static void test_parse_truncated(void **state)
{
	(void)state;
	uint8_t *f = mk_image();
	st32(f + 0x1f4, IMG_PAYLOAD / 16 + 1);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "truncated");
	st32(f + 0x1f4, 0xffffffffu);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "truncated");
	/* The same image cut short by one byte. */
	st32(f + 0x1f4, IMG_PAYLOAD / 16);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD - 1, "truncated");
	free(f);
}

static void test_parse_syssize_zero(void **state)
{
	(void)state;
	uint8_t *f = mk_image();
	st32(f + 0x1f4, 0);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "truncated");
	free(f);
}

static void test_parse_pref_address(void **state)
{
	(void)state;
	uint8_t *f = mk_image();
	st64(f + 0x258, 0);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "pref_address");
	st64(f + 0x258, BOOT_HIMEM_START - 1);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "pref_address");
	st64(f + 0x258, 0xfffffffffffff000ULL);
	st32(f + 0x260, 0x1000);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "pref_address");
	st32(f + 0x260, 0xffffffffu);
	expect_reject(f, IMG_PM_OFF + IMG_PAYLOAD, "init_size");
	/* The highest pref_address + init_size that does not wrap is accepted. */
	struct bzimage bz;
	st32(f + 0x260, 0xfff);
	parse_ok(f, IMG_PM_OFF + IMG_PAYLOAD, &bz);
	assert_true(bz.mem_end == UINT64_MAX);
	free(f);
}

static void test_parse_accepts(void **state)
{
	(void)state;
	const size_t size = IMG_PM_OFF + IMG_PAYLOAD;
	uint8_t *f = mk_image();
	struct bzimage bz;

	parse_ok(f, size, &bz);
	assert_int_equal(bz.load_addr, 0x100000);
	assert_int_equal(bz.entry, 0x100200);
	assert_int_equal(bz.pm_offset, IMG_PM_OFF);
	assert_int_equal(bz.pm_size, IMG_PAYLOAD);
	assert_int_equal(bz.pm_offset + bz.pm_size, size);
	assert_int_equal(bz.mem_end, IMG_PREF + IMG_INIT_SIZE); /* pref + init_size > load + pm_size */
	assert_int_equal(bz.initrd_max, IMG_INITRD_MAX);
	assert_int_equal(bz.cmdline_max, IMG_CMDLINE);
	assert_int_equal(bz.version, 0x020f);
	assert_int_equal(bz.setup_hdr_len, 0x202 + IMG_HDR_JUMP - 0x1f1);
	assert_memory_equal(bz.setup_hdr, f + 0x1f1, bz.setup_hdr_len);

	/* load + pm_size above pref + init_size: mem_end follows the payload. */
	st64(f + 0x258, BOOT_HIMEM_START);
	st32(f + 0x260, 0x100);
	parse_ok(f, size, &bz);
	assert_int_equal(bz.mem_end, BOOT_HIMEM_START + IMG_PAYLOAD);

	/* Payload longer than syssize: pm_size is the rest of the file. */
	st32(f + 0x1f4, 1);
	parse_ok(f, size, &bz);
	assert_int_equal(bz.pm_size, IMG_PAYLOAD);

	/* Header length beyond the copy buffer, or beyond the file, is clamped. */
	f[0x201] = 0xff;
	parse_ok(f, size, &bz);
	assert_int_equal(bz.setup_hdr_len, sizeof(bz.setup_hdr));
	assert_memory_equal(bz.setup_hdr, f + 0x1f1, sizeof(bz.setup_hdr));
	f[0x201] = 0;
	parse_ok(f, size, &bz);
	assert_int_equal(bz.setup_hdr_len, 0x202 - 0x1f1);
	free(f);
}

static void test_parse_cmdline_max(void **state)
{
	(void)state;
	const size_t size = IMG_PM_OFF + IMG_PAYLOAD;
	uint8_t *f = mk_image();
	struct bzimage bz;
	static const struct { uint32_t in, out; } cases[] = {
		{ 0, BOOT_CMDLINE_MAX },             /* not given: our own limit */
		{ 1, 1 },
		{ 255, 255 },
		{ BOOT_CMDLINE_MAX, BOOT_CMDLINE_MAX },
		{ BOOT_CMDLINE_MAX + 1, BOOT_CMDLINE_MAX },
		{ 0xffffffffu, BOOT_CMDLINE_MAX },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		st32(f + 0x238, cases[i].in);
		parse_ok(f, size, &bz);
		assert_int_equal(bz.cmdline_max, cases[i].out);
	}
	free(f);
}

static void test_parse_setup_sects_zero(void **state)
{
	(void)state;
	const size_t size = IMG_PM_OFF + IMG_PAYLOAD;
	uint8_t *f = mk_image();
	struct bzimage bz;

	f[0x1f1] = 0; /* means 4 */
	parse_ok(f, size, &bz);
	assert_int_equal(bz.pm_offset, 5 * 512);
	assert_int_equal(bz.pm_size, size - 5 * 512);

	f[0x1f1] = 1; /* a different, explicit value is honoured */
	parse_ok(f, size, &bz);
	assert_int_equal(bz.pm_offset, 2 * 512);
	assert_int_equal(bz.pm_size, size - 2 * 512);
	free(f);
}

/* ---- mem_layout_for / e820_build --------------------------------------------- */

static void test_mem_layout(void **state)
{
	(void)state;
	static const struct { uint64_t mem, low, high; } cases[] = {
		{ 128 * MiB, 128 * MiB, 0 },
		{ 3 * GiB, 3 * GiB, 0 },
		{ 3 * GiB + 4096, 3 * GiB, 4096 },
		{ 4 * GiB, 3 * GiB, 1 * GiB },
		{ 64 * GiB, 3 * GiB, 61 * GiB },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct mem_layout l;
		mem_layout_for(cases[i].mem, &l);
		assert_int_equal(l.low_size, cases[i].low);
		assert_int_equal(l.high_size, cases[i].high);
		assert_int_equal(l.low_size + l.high_size, cases[i].mem);
	}
}

/* Sorted, no overlaps, RAM (type 1) never on the EBDA/BIOS area or the MMIO hole. */
static void check_e820(const struct e820_ent *e, unsigned int n, const struct mem_layout *l)
{
	uint64_t ram = 0;
	for (unsigned int i = 0; i < n; i++) {
		uint64_t end = e[i].addr + e[i].size;
		assert_true(e[i].size > 0);
		assert_true(end > e[i].addr);
		assert_true(e[i].type == 1 || e[i].type == 2);
		if (i > 0)
			assert_true(e[i].addr >= e[i - 1].addr + e[i - 1].size);
		if (e[i].type == 1) {
			ram += e[i].size;
			assert_false(e[i].addr < 0x100000 && end > 0x9fc00);
			assert_false(e[i].addr < MEM_HOLE_END && end > MEM_HOLE_START);
			/* RAM only where the layout has RAM. */
			if (e[i].addr < MEM_HOLE_START)
				assert_true(end <= l->low_size);
			else
				assert_true(end <= MEM_HOLE_END + l->high_size);
		}
	}
	/* Everything but the 384 KiB between 0x9fc00 and 1 MiB is reported. */
	assert_int_equal(ram, l->low_size + l->high_size - (0x100000 - 0x9fc00));
}

static void test_e820_small(void **state)
{
	(void)state;
	struct mem_layout l;
	struct e820_ent *e = calloc(4, sizeof(*e));

	mem_layout_for(128 * MiB, &l);
	assert_int_equal(e820_build(&l, e, 4), 3);
	assert_int_equal(e[0].addr, 0);
	assert_int_equal(e[0].size, 0x9fc00);
	assert_int_equal(e[0].type, 1);
	assert_int_equal(e[1].addr, 0x9fc00);
	assert_int_equal(e[1].size, 0x100000 - 0x9fc00);
	assert_int_equal(e[1].type, 2);
	assert_int_equal(e[2].addr, 0x100000);
	assert_int_equal(e[2].size, 127 * MiB);
	assert_int_equal(e[2].type, 1);
	check_e820(e, 3, &l);

	mem_layout_for(3 * GiB, &l);
	assert_int_equal(e820_build(&l, e, 4), 3);
	assert_int_equal(e[2].size, 3 * GiB - MiB);
	check_e820(e, 3, &l);
	free(e);
}

static void test_e820_high(void **state)
{
	(void)state;
	struct mem_layout l;
	struct e820_ent *e = calloc(4, sizeof(*e));

	mem_layout_for(8 * GiB, &l);
	assert_int_equal(e820_build(&l, e, 4), 4);
	assert_int_equal(e[0].addr, 0);
	assert_int_equal(e[0].type, 1);
	assert_int_equal(e[1].type, 2);
	assert_int_equal(e[2].addr, 0x100000);
	assert_int_equal(e[2].size, 3 * GiB - MiB);
	assert_int_equal(e[2].type, 1);
	assert_int_equal(e[3].addr, 4 * GiB);
	assert_int_equal(e[3].size, 5 * GiB);
	assert_int_equal(e[3].type, 1);
	check_e820(e, 4, &l);

	mem_layout_for(3 * GiB + 4096, &l);
	assert_int_equal(e820_build(&l, e, 4), 4);
	assert_int_equal(e[3].addr, 4 * GiB);
	assert_int_equal(e[3].size, 4096);
	check_e820(e, 4, &l);
	free(e);
}

static void test_e820_max(void **state)
{
	(void)state;
	struct mem_layout l;

	mem_layout_for(64 * GiB, &l);
	/* Exactly sized heap arrays: ASan proves nothing is written past max. */
	for (unsigned int max = 1; max <= 4; max++) {
		struct e820_ent *e = calloc(max, sizeof(*e));
		assert_int_equal(e820_build(&l, e, max), max);
		assert_int_equal(e[0].addr, 0);
		free(e);
	}
	struct e820_ent one;
	assert_int_equal(e820_build(&l, &one, 0), 0);
}

/* ---- initrd_place --------------------------------------------------------------- */

static void bz_for(struct bzimage *bz, uint64_t mem_end, uint32_t initrd_max)
{
	memset(bz, 0, sizeof(*bz));
	bz->load_addr = BOOT_HIMEM_START;
	bz->mem_end = mem_end;
	bz->initrd_max = initrd_max;
}

static void expect_place(const struct bzimage *bz, const struct mem_layout *l, uint64_t size, uint64_t want)
{
	char why[256] = "";
	uint64_t addr = 0;
	int r = initrd_place(bz, l, size, &addr, why, sizeof(why));
	if (r != 0)
		fail_msg("initrd_place(%llu) refused: %d %s", (unsigned long long)size, r, why);
	assert_int_equal(addr, want);
	assert_int_equal(addr & 0xfff, 0);
	assert_true(addr >= bz->mem_end);
	assert_true(addr + size <= l->low_size);
	assert_true(addr + size - 1 <= bz->initrd_max);
}

static void expect_no_place(const struct bzimage *bz, const struct mem_layout *l, uint64_t size, int err,
			    const char *want)
{
	char why[256] = "";
	uint64_t addr = 0x1234;
	assert_int_equal(initrd_place(bz, l, size, &addr, why, sizeof(why)), err);
	assert_true(why[0] != '\0');
	if (!strstr(why, want))
		fail_msg("reason \"%s\" does not mention \"%s\"", why, want);
	assert_int_equal(addr, 0x1234);
}

static void test_initrd_top(void **state)
{
	(void)state;
	struct bzimage bz;
	struct mem_layout l;

	bz_for(&bz, 48 * MiB, IMG_INITRD_MAX);
	mem_layout_for(128 * MiB, &l);
	expect_place(&bz, &l, 4096, 128 * MiB - 4096);
	expect_place(&bz, &l, 10 * MiB + 123, (128 * MiB - (10 * MiB + 123)) & ~0xfffULL);
	expect_place(&bz, &l, 1, 128 * MiB - 4096);

	/* Above 3 GiB of RAM: the initrd stays below the hole. */
	mem_layout_for(8 * GiB, &l);
	bz.initrd_max = 0xffffffffu;
	expect_place(&bz, &l, 4096, 3 * GiB - 4096);
}

static void test_initrd_max_below_ram(void **state)
{
	(void)state;
	struct bzimage bz;
	struct mem_layout l;

	bz_for(&bz, 48 * MiB, 0x37ffffffu); /* 896 MiB - 1 */
	mem_layout_for(2 * GiB, &l);
	expect_place(&bz, &l, 4096, 896 * MiB - 4096);
	expect_place(&bz, &l, 5000, (896 * MiB - 5000) & ~0xfffULL);
	/* initrd_max not a page boundary minus one. */
	bz.initrd_max = 0x37ffff7fu;
	expect_place(&bz, &l, 4096, 896 * MiB - 2 * 4096);
}

static void test_initrd_too_big(void **state)
{
	(void)state;
	struct bzimage bz;
	struct mem_layout l;

	bz_for(&bz, 48 * MiB, IMG_INITRD_MAX);
	mem_layout_for(128 * MiB, &l);
	expect_no_place(&bz, &l, 80 * MiB + 1, -ENOSPC, "does not fit"); /* would overlap the kernel */
	expect_no_place(&bz, &l, 128 * MiB, -ENOSPC, "does not fit");
	expect_no_place(&bz, &l, 200 * MiB, -ENOSPC, "does not fit");
	expect_no_place(&bz, &l, UINT64_MAX, -ENOSPC, "does not fit");

	/* The kernel's needs reach past low RAM: nothing fits. */
	bz_for(&bz, 129 * MiB, IMG_INITRD_MAX);
	expect_no_place(&bz, &l, 1, -ENOSPC, "does not fit");

	/* initrd_max below the kernel's end. */
	bz_for(&bz, 48 * MiB, 32 * MiB - 1);
	expect_no_place(&bz, &l, 1, -ENOSPC, "does not fit");
}

static void test_initrd_kernel_end_wraps(void **state)
{
	(void)state;
	struct bzimage bz;
	struct mem_layout l;

	/* A kernel that needs memory up to the top of the address space (bzimage_parse accepts it). */
	mem_layout_for(128 * MiB, &l);
	bz_for(&bz, UINT64_MAX - 0x7ff, IMG_INITRD_MAX);
	expect_no_place(&bz, &l, 4096, -ENOSPC, "does not fit");
	bz_for(&bz, UINT64_MAX, IMG_INITRD_MAX);
	expect_no_place(&bz, &l, 4096, -ENOSPC, "does not fit");
}

static void test_initrd_empty(void **state)
{
	(void)state;
	struct bzimage bz;
	struct mem_layout l;

	bz_for(&bz, 48 * MiB, IMG_INITRD_MAX);
	mem_layout_for(128 * MiB, &l);
	expect_no_place(&bz, &l, 0, -EINVAL, "empty");
}

static void test_initrd_exact_fit(void **state)
{
	(void)state;
	struct bzimage bz;
	struct mem_layout l;

	bz_for(&bz, 48 * MiB, IMG_INITRD_MAX);
	mem_layout_for(128 * MiB, &l);
	expect_place(&bz, &l, 80 * MiB, 48 * MiB);

	/* Kernel end not page aligned: the initrd starts on the next page. */
	bz_for(&bz, 48 * MiB + 1, IMG_INITRD_MAX);
	expect_place(&bz, &l, 80 * MiB - 4096, 48 * MiB + 4096);
	expect_no_place(&bz, &l, 80 * MiB - 4095, -ENOSPC, "does not fit");

	/* Exactly up to initrd_max. */
	bz_for(&bz, 48 * MiB, 64 * MiB - 1);
	expect_place(&bz, &l, 16 * MiB, 48 * MiB);
	expect_no_place(&bz, &l, 16 * MiB + 1, -ENOSPC, "does not fit");
}

/* ---- boot_write ------------------------------------------------------------------ */

#define GUEST_SIZE (64 * MiB)

struct guest {
	struct gmem m;
	uint8_t *ram;
};

static void guest_init(struct guest *g, uint64_t size)
{
	memset(g, 0, sizeof(*g));
	g->ram = calloc(1, size);
	assert_non_null(g->ram);
	g->m.r[0].gpa = 0;
	g->m.r[0].size = size;
	g->m.r[0].host = g->ram;
	g->m.nr = 1;
	g->m.ram_size = size;
}

static void test_boot_write(void **state)
{
	(void)state;
	const size_t size = IMG_PM_OFF + IMG_PAYLOAD;
	uint8_t *f = mk_image();
	struct bzimage bz;
	struct mem_layout l;
	struct guest g;
	struct boot_params bp;
	struct e820_ent e[4];
	const char *cmdline = "console=ttyS0 panic=-1 quiet";
	uint64_t initrd_addr;
	char why[256];

	parse_ok(f, size, &bz);
	mem_layout_for(GUEST_SIZE, &l);
	assert_int_equal(initrd_place(&bz, &l, 3 * MiB + 5, &initrd_addr, why, sizeof(why)), 0);
	guest_init(&g, GUEST_SIZE);
	assert_int_equal(boot_write(&g.m, &l, &bz, f, cmdline, initrd_addr, 3 * MiB + 5), 0);

	/* Kernel payload at 1 MiB. */
	assert_memory_equal(g.ram + 0x100000, f + IMG_PM_OFF, IMG_PAYLOAD);
	/* Command line with its NUL. */
	assert_memory_equal(g.ram + 0x20000, cmdline, strlen(cmdline) + 1);

	memcpy(&bp, g.ram + 0x7000, sizeof(bp));
	assert_int_equal(bp.hdr.type_of_loader, 0xff);
	assert_int_equal(bp.hdr.cmd_line_ptr, 0x20000);
	assert_int_equal(bp.hdr.ramdisk_image, initrd_addr);
	assert_int_equal(bp.hdr.ramdisk_size, 3 * MiB + 5);
	assert_int_equal(bp.ext_ramdisk_image, 0);
	assert_int_equal(bp.ext_ramdisk_size, 0);
	assert_int_equal(bp.hdr.heap_end_ptr, 0xfe00);
	assert_true(bp.hdr.loadflags & CAN_USE_HEAP);
	assert_true(bp.hdr.loadflags & LOADED_HIGH);
	assert_int_equal(bp.hdr.vid_mode, 0xffff);
	/* The rest of the setup header comes from the image. */
	assert_int_equal(bp.hdr.boot_flag, 0xAA55);
	assert_int_equal(bp.hdr.header, 0x53726448u);
	assert_int_equal(bp.hdr.version, 0x020f);
	assert_int_equal(bp.hdr.setup_sects, IMG_SETUP_SECTS);
	assert_int_equal(bp.hdr.syssize, IMG_PAYLOAD / 16);
	assert_int_equal(bp.hdr.pref_address, IMG_PREF);
	assert_int_equal(bp.hdr.init_size, IMG_INIT_SIZE);
	assert_int_equal(bp.hdr.xloadflags, XLF_KERNEL_64);
	assert_int_equal(bp.hdr.cmdline_size, IMG_CMDLINE);
	/* e820 as e820_build says. */
	unsigned int n = e820_build(&l, e, 4);
	assert_int_equal(n, 3);
	assert_int_equal(bp.e820_entries, n);
	for (unsigned int i = 0; i < n; i++) {
		assert_int_equal(bp.e820_table[i].addr, e[i].addr);
		assert_int_equal(bp.e820_table[i].size, e[i].size);
		assert_int_equal(bp.e820_table[i].type, e[i].type);
	}
	assert_int_equal(bp.e820_table[n].size, 0);
	/* Nothing else in the zero page outside the header and the e820 table. */
	for (size_t i = 0; i < 0x1e8; i++)
		assert_int_equal(((uint8_t *)&bp)[i], 0);

	free(g.ram);
	free(f);
}

/*
 * kiln-vmm parses a buffer that holds only the image's first BZIMAGE_HDR_BYTES (zero-padded)
 * with the file's real size, then boot_write(file NULL) and reads the payload into place itself:
 * the verdict and fields match a parse of the whole file, and guest memory at the load address
 * is left alone.
 */
static void test_parse_header_only_and_write_without_payload(void **state)
{
	(void)state;
	const size_t size = IMG_PM_OFF + IMG_PAYLOAD;
	uint8_t *f = mk_image();
	static uint8_t hdr[BZIMAGE_HDR_BYTES];
	struct bzimage whole, head;
	struct mem_layout l;
	struct guest g;

	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, f, sizeof(hdr) < size ? sizeof(hdr) : size);
	parse_ok(f, size, &whole);
	parse_ok(hdr, size, &head);
	assert_memory_equal(&whole, &head, sizeof(whole));
	/* A truncated file is still refused from the header alone: syssize against the size. */
	expect_reject(hdr, size - 16, "truncated");

	mem_layout_for(GUEST_SIZE, &l);
	guest_init(&g, GUEST_SIZE);
	memset(g.ram + head.load_addr, 0xa5, IMG_PAYLOAD);
	assert_int_equal(boot_write(&g.m, &l, &head, NULL, "console=ttyS0", 0, 0), 0);
	for (size_t i = 0; i < IMG_PAYLOAD; i++)
		assert_int_equal(g.ram[head.load_addr + i], 0xa5);
	assert_memory_equal(g.ram + 0x20000, "console=ttyS0", 14);
	free(g.ram);
	free(f);
}

static void test_boot_write_initrd_high_and_none(void **state)
{
	(void)state;
	const size_t size = IMG_PM_OFF + IMG_PAYLOAD;
	uint8_t *f = mk_image();
	struct bzimage bz;
	struct mem_layout l;
	struct guest g;
	struct boot_params bp;

	parse_ok(f, size, &bz);
	mem_layout_for(8 * GiB, &l);
	guest_init(&g, GUEST_SIZE);
	assert_int_equal(boot_write(&g.m, &l, &bz, f, "", 0x123456000ULL, 0x100000005ULL), 0);
	memcpy(&bp, g.ram + 0x7000, sizeof(bp));
	assert_int_equal(bp.hdr.ramdisk_image, 0x23456000u);
	assert_int_equal(bp.ext_ramdisk_image, 1);
	assert_int_equal(bp.hdr.ramdisk_size, 5);
	assert_int_equal(bp.ext_ramdisk_size, 1);
	assert_int_equal(bp.e820_entries, 4);
	assert_int_equal(bp.e820_table[3].addr, 4 * GiB);
	assert_int_equal(bp.e820_table[3].size, 5 * GiB);
	assert_int_equal(g.ram[0x20000], 0);

	memset(g.ram, 0xa5, GUEST_SIZE);
	assert_int_equal(boot_write(&g.m, &l, &bz, f, "x", 0, 0), 0);
	memcpy(&bp, g.ram + 0x7000, sizeof(bp));
	assert_int_equal(bp.hdr.ramdisk_image, 0);
	assert_int_equal(bp.hdr.ramdisk_size, 0);
	assert_int_equal(bp.ext_ramdisk_image, 0);
	assert_int_equal(bp.ext_ramdisk_size, 0);
	assert_memory_equal(g.ram + 0x20000, "x", 2);
	free(g.ram);
	free(f);
}

static void test_boot_write_cmdline_too_long(void **state)
{
	(void)state;
	const size_t size = IMG_PM_OFF + IMG_PAYLOAD;
	uint8_t *f = mk_image();
	struct bzimage bz;
	struct mem_layout l;
	struct guest g;
	char *cmd = malloc(BOOT_CMDLINE_MAX + 2);

	st32(f + 0x238, 255);
	parse_ok(f, size, &bz);
	mem_layout_for(GUEST_SIZE, &l);
	guest_init(&g, GUEST_SIZE);

	memset(cmd, 'a', 256);
	cmd[255] = '\0'; /* exactly cmdline_max */
	assert_int_equal(boot_write(&g.m, &l, &bz, f, cmd, 0, 0), 0);
	assert_int_equal(strlen((char *)g.ram + 0x20000), 255);
	cmd[255] = 'a';
	cmd[256] = '\0';
	assert_int_equal(boot_write(&g.m, &l, &bz, f, cmd, 0, 0), -E2BIG);

	/* Our own limit when the kernel gives none. */
	st32(f + 0x238, 0);
	parse_ok(f, size, &bz);
	memset(cmd, 'b', BOOT_CMDLINE_MAX + 1);
	cmd[BOOT_CMDLINE_MAX] = '\0';
	assert_int_equal(boot_write(&g.m, &l, &bz, f, cmd, 0, 0), 0);
	cmd[BOOT_CMDLINE_MAX] = 'b';
	cmd[BOOT_CMDLINE_MAX + 1] = '\0';
	assert_int_equal(boot_write(&g.m, &l, &bz, f, cmd, 0, 0), -E2BIG);
	free(cmd);
	free(g.ram);
	free(f);
}

/* Guest memories that lack one of the places boot_write needs; each region buffer is exactly its size. */
static void test_boot_write_guest_too_small(void **state)
{
	(void)state;
	const size_t size = IMG_PM_OFF + IMG_PAYLOAD;
	uint8_t *f = mk_image();
	struct bzimage bz;
	struct mem_layout l;
	struct guest g;

	parse_ok(f, size, &bz);
	mem_layout_for(GUEST_SIZE, &l);

	/* RAM ends one byte before the end of the kernel payload. */
	guest_init(&g, BOOT_HIMEM_START + IMG_PAYLOAD - 1);
	assert_int_equal(boot_write(&g.m, &l, &bz, f, "console=ttyS0", 0, 0), -EFAULT);
	free(g.ram);
	/* RAM ends inside the command line. */
	guest_init(&g, BOOT_CMDLINE_ADDR + 4);
	assert_int_equal(boot_write(&g.m, &l, &bz, f, "console=ttyS0", 0, 0), -EFAULT);
	free(g.ram);
	/* RAM ends inside the zero page. */
	guest_init(&g, BOOT_ZEROPAGE_ADDR + 100);
	assert_int_equal(boot_write(&g.m, &l, &bz, f, "", 0, 0), -EFAULT);
	free(g.ram);

	/* Two regions: kernel and command line are RAM, the zero page is not. */
	memset(&g, 0, sizeof(g));
	uint8_t *lo = calloc(1, 0x1000), *hi = calloc(1, IMG_PAYLOAD);
	g.m.r[0] = (struct gmem_region){ .gpa = BOOT_CMDLINE_ADDR, .size = 0x1000, .host = lo };
	g.m.r[1] = (struct gmem_region){ .gpa = BOOT_HIMEM_START, .size = IMG_PAYLOAD, .host = hi };
	g.m.nr = 2;
	assert_int_equal(boot_write(&g.m, &l, &bz, f, "console=ttyS0", 0, 0), -EFAULT);
	/* The command line ending exactly at the end of its region is fine; one byte more is not. */
	g.m.r[0].gpa = BOOT_ZEROPAGE_ADDR;
	g.m.r[0].size = 0x1000;
	free(lo);
	lo = calloc(1, BOOT_CMDLINE_ADDR - BOOT_ZEROPAGE_ADDR + 4);
	g.m.r[0].host = lo;
	g.m.r[0].size = BOOT_CMDLINE_ADDR - BOOT_ZEROPAGE_ADDR + 4;
	assert_int_equal(boot_write(&g.m, &l, &bz, f, "abc", 0, 0), 0);
	assert_memory_equal(lo + (BOOT_CMDLINE_ADDR - BOOT_ZEROPAGE_ADDR), "abc", 4);
	assert_int_equal(boot_write(&g.m, &l, &bz, f, "abcd", 0, 0), -EFAULT);
	/* No RAM at all. */
	g.m.nr = 0;
	assert_int_equal(boot_write(&g.m, &l, &bz, f, "", 0, 0), -EFAULT);
	free(lo);
	free(hi);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_too_short),
		cmocka_unit_test(test_parse_bad_boot_flag),
		cmocka_unit_test(test_parse_bad_magic),
		cmocka_unit_test(test_parse_old_protocol),
		cmocka_unit_test(test_parse_no_64bit_entry),
		cmocka_unit_test(test_parse_not_loaded_high),
		cmocka_unit_test(test_parse_setup_sects_beyond_file),
		cmocka_unit_test(test_parse_truncated),
		cmocka_unit_test(test_parse_syssize_zero),
		cmocka_unit_test(test_parse_pref_address),
		cmocka_unit_test(test_parse_accepts),
		cmocka_unit_test(test_parse_cmdline_max),
		cmocka_unit_test(test_parse_setup_sects_zero),
		cmocka_unit_test(test_mem_layout),
		cmocka_unit_test(test_e820_small),
		cmocka_unit_test(test_e820_high),
		cmocka_unit_test(test_e820_max),
		cmocka_unit_test(test_initrd_top),
		cmocka_unit_test(test_initrd_max_below_ram),
		cmocka_unit_test(test_initrd_too_big),
		cmocka_unit_test(test_initrd_kernel_end_wraps),
		cmocka_unit_test(test_initrd_empty),
		cmocka_unit_test(test_initrd_exact_fit),
		cmocka_unit_test(test_boot_write),
		cmocka_unit_test(test_parse_header_only_and_write_without_payload),
		cmocka_unit_test(test_boot_write_initrd_high_and_none),
		cmocka_unit_test(test_boot_write_cmdline_too_long),
		cmocka_unit_test(test_boot_write_guest_too_small),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
