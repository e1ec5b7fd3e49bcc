/* fuzz_bzimage.c: libFuzzer harness for the bzImage checks, memory layout, initrd placement and boot_write; build: make build/fuzz/fuzz_bzimage */
#include <asm/bootparam.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/boot.h"
#include "tests/fuzz/fuzz_check.h"

#define GUEST_MAX (32ULL << 20)

/*
 * Knobs for the rest of the run are read from file bytes 0x270..0x28f, inside the
 * setup part (every accepted image has at least 1024 bytes) and past the header bytes
 * that bzimage_parse reads, so the fuzzer can change them without changing the verdict.
 */
#define K_MEM     0x270 /* u32: guest memory in pages (mod 2^24, plus 256) */
#define K_INITRD  0x278 /* u64 >> (byte 0x280 & 63): initrd size */
#define K_SHIFT   0x280
#define K_GUEST   0x281 /* bit 0: full 32 MiB guest, else size from 0x284 */
#define K_GSIZE   0x284 /* u32 % 32 MiB + 1: guest RAM bytes */
#define K_CMDLEN  0x288 /* u16 % 4097: command line length */

static uint8_t *guest_buf;
static char cmd[BOOT_CMDLINE_MAX + 2];

static int in_ram(uint64_t gpa, uint64_t len, uint64_t gsize)
{
	return range_ok(gpa, len, gsize);
}

static void check_e820(const struct mem_layout *l)
{
	struct e820_ent e[4];
	unsigned int n = e820_build(l, e, 4);
	uint64_t ram = 0;

	CHECK(n >= 2 && n <= 4);
	CHECK((n == 4) == (l->high_size != 0));
	for (unsigned int i = 0; i < n; i++) {
		uint64_t end = e[i].addr + e[i].size;
		CHECK(e[i].size > 0 && end > e[i].addr);
		CHECK(i == 0 || e[i].addr >= e[i - 1].addr + e[i - 1].size);
		if (e[i].type == 1) {
			ram += e[i].size;
			CHECK(!(e[i].addr < 0x100000 && end > 0x9fc00));
			CHECK(!(e[i].addr < MEM_HOLE_END && end > MEM_HOLE_START));
		} else {
			CHECK(e[i].type == 2);
		}
	}
	CHECK(ram == l->low_size + l->high_size - (0x100000 - 0x9fc00));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bzimage bz;
	char why[256];

	if (!guest_buf) {
		guest_buf = malloc(GUEST_MAX);
		CHECK(guest_buf);
	}

	why[0] = '\0';
	int r = bzimage_parse(data, size, &bz, why, sizeof(why));
	if (r != 0) {
		CHECK(r == -EINVAL);
		CHECK(why[0] != '\0');
		return 0;
	}

	/* What every accepted image guarantees. */
	CHECK(size >= 1024);
	CHECK(bz.pm_offset + bz.pm_size == size);
	CHECK(bz.pm_offset >= 1024 && bz.pm_offset % 512 == 0 && bz.pm_size > 0);
	CHECK(bz.pm_offset == (uint64_t)((data[0x1f1] ? data[0x1f1] : 4) + 1) * 512);
	CHECK(bz.load_addr == BOOT_HIMEM_START && bz.entry == BOOT_HIMEM_START + 0x200);
	CHECK(bz.mem_end >= bz.load_addr + bz.pm_size);
	CHECK(bz.mem_end >= ld64(data + 0x258) + ld32(data + 0x260));
	CHECK(bz.cmdline_max >= 1 && bz.cmdline_max <= BOOT_CMDLINE_MAX);
	CHECK(bz.version >= 0x020c);
	CHECK(bz.setup_hdr_len > 0 && bz.setup_hdr_len <= sizeof(bz.setup_hdr));
	CHECK(memcmp(bz.setup_hdr, data + 0x1f1, bz.setup_hdr_len) == 0);

	/* Layout and e820. */
	struct mem_layout l;
	uint64_t mem = ((uint64_t)(ld32(data + K_MEM) % (1u << 24)) + 256) * 4096;
	mem_layout_for(mem, &l);
	CHECK(l.low_size + l.high_size == mem);
	CHECK(l.low_size <= MEM_HOLE_START);
	CHECK(l.high_size == 0 || l.low_size == MEM_HOLE_START);
	check_e820(&l);

	/* initrd placement against a model in 128-bit arithmetic (no wrap possible). */
	uint64_t isize = ld64(data + K_INITRD) >> (data[K_SHIFT] & 63);
	uint64_t iaddr = 0;
	unsigned __int128 top = l.low_size, lo = ((unsigned __int128)bz.mem_end + 0xfff) & ~(unsigned __int128)0xfff;
	if ((unsigned __int128)bz.initrd_max + 1 < top)
		top = (unsigned __int128)bz.initrd_max + 1;
	int fits = isize != 0 && isize <= top && ((top - isize) & ~(unsigned __int128)0xfff) >= lo;
	why[0] = '\0';
	r = initrd_place(&bz, &l, isize, &iaddr, why, sizeof(why));
	if (isize == 0) {
		CHECK(r == -EINVAL && why[0]);
	} else if (!fits) {
		CHECK(r == -ENOSPC && why[0]);
	} else {
		CHECK(r == 0);
		CHECK(iaddr % 4096 == 0);
		CHECK(iaddr >= bz.mem_end);
		CHECK(iaddr + isize <= l.low_size);
		CHECK(iaddr + isize - 1 <= bz.initrd_max);
		CHECK(iaddr == (uint64_t)((top - isize) & ~(unsigned __int128)0xfff));
	}
	if (r != 0) {
		iaddr = 0;
		isize = 0;
	}

	/* boot_write into a guest whose RAM ends exactly at the end of the heap buffer (ASan sees overruns). */
	uint64_t gsize = (data[K_GUEST] & 1) ? GUEST_MAX : ld32(data + K_GSIZE) % GUEST_MAX + 1;
	struct gmem m;
	memset(&m, 0, sizeof(m));
	m.r[0].gpa = 0;
	m.r[0].size = gsize;
	m.r[0].host = guest_buf + (GUEST_MAX - gsize);
	m.nr = 1;
	m.ram_size = gsize;

	size_t clen = ld16(data + K_CMDLEN) % (BOOT_CMDLINE_MAX + 2);
	memset(cmd, 'k', clen);
	cmd[clen] = '\0';

	int want;
	if (clen > bz.cmdline_max)
		want = -E2BIG;
	else if (!in_ram(bz.load_addr, bz.pm_size, gsize) || !in_ram(BOOT_CMDLINE_ADDR, clen + 1, gsize) ||
		 !in_ram(BOOT_ZEROPAGE_ADDR, 4096, gsize))
		want = -EFAULT;
	else
		want = 0;
	r = boot_write(&m, &l, &bz, data, cmd, iaddr, isize);
	CHECK(r == want);
	if (r != 0)
		return 0;

	const uint8_t *g = m.r[0].host;
	struct boot_params bp;
	memcpy(&bp, g + BOOT_ZEROPAGE_ADDR, sizeof(bp));
	CHECK(memcmp(g + bz.load_addr, data + bz.pm_offset, bz.pm_size) == 0);
	CHECK(memcmp(g + BOOT_CMDLINE_ADDR, cmd, clen + 1) == 0);
	CHECK(bp.hdr.type_of_loader == 0xff);
	CHECK(bp.hdr.cmd_line_ptr == BOOT_CMDLINE_ADDR);
	CHECK(bp.hdr.loadflags & CAN_USE_HEAP);
	CHECK(bp.hdr.heap_end_ptr == 0xfe00);
	CHECK(bp.hdr.ramdisk_image == (uint32_t)iaddr && bp.ext_ramdisk_image == (uint32_t)(iaddr >> 32));
	CHECK(bp.hdr.ramdisk_size == (uint32_t)isize && bp.ext_ramdisk_size == (uint32_t)(isize >> 32));
	struct e820_ent e[4];
	unsigned int n = e820_build(&l, e, 4);
	CHECK(bp.e820_entries == n);
	for (unsigned int i = 0; i < n; i++)
		CHECK(bp.e820_table[i].addr == e[i].addr && bp.e820_table[i].size == e[i].size &&
		      bp.e820_table[i].type == e[i].type);
	return 0;
}
