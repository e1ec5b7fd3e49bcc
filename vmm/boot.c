/* boot.c: Linux x86 boot protocol: bzImage checks, memory layout, zero page, e820. */
#include "boot.h"

#include <asm/bootparam.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(struct boot_params) == 4096, "zero page is one page");
_Static_assert(offsetof(struct boot_params, hdr) == 0x1f1, "setup header offset");
_Static_assert(offsetof(struct boot_params, e820_table) == 0x2d0, "e820 table offset");
_Static_assert(sizeof(struct boot_e820_entry) == 20, "e820 entry size");
_Static_assert(sizeof(((struct bzimage *)0)->setup_hdr) == sizeof(struct setup_header),
	       "setup header copy matches the zero page");

#define HDR_OFF          0x1f1
#define HDR_MAGIC        0x53726448u /* "HdrS" */
#define MIN_PROTOCOL     0x020c      /* 2.12: xloadflags, 64-bit entry */

#define why_set(...) snprintf(why, whylen, __VA_ARGS__)

int bzimage_parse(const uint8_t *f, size_t size, struct bzimage *bz, char *why, size_t whylen)
{
	memset(bz, 0, sizeof(*bz));
	if (size < 0x264) {
		why_set("kernel image is %zu bytes, too short for a bzImage setup header", size);
		return -EINVAL;
	}
	if (ld16(f + 0x1fe) != 0xAA55) {
		why_set("kernel image is not a bzImage (no 0xAA55 boot flag)");
		return -EINVAL;
	}
	if (ld32(f + 0x202) != HDR_MAGIC) {
		why_set("kernel image is not a bzImage (no HdrS setup header)");
		return -EINVAL;
	}
	uint16_t version = ld16(f + 0x206);
	if (version < MIN_PROTOCOL) {
		why_set("kernel boot protocol %u.%02u is too old (need 2.12 or later)", version >> 8,
			version & 0xff);
		return -EINVAL;
	}
	uint16_t xlf = ld16(f + 0x236);
	if (!(xlf & XLF_KERNEL_64)) {
		why_set("kernel has no 64-bit entry point (xloadflags)");
		return -EINVAL;
	}
	if (!(f[0x211] & LOADED_HIGH)) {
		why_set("kernel is not loadable high (loadflags)");
		return -EINVAL;
	}
	uint64_t setup_sects = f[0x1f1] ? f[0x1f1] : 4;
	uint64_t pm_off = (setup_sects + 1) * 512;
	if (pm_off >= size) {
		why_set("kernel setup_sects (%llu) reaches beyond the file (%zu bytes)",
			(unsigned long long)setup_sects, size);
		return -EINVAL;
	}
	uint64_t syssize = (uint64_t)ld32(f + 0x1f4) * 16;
	if (syssize == 0 || !range_ok(pm_off, syssize, size)) {
		why_set("kernel image is truncated: payload needs %llu bytes at offset %llu, file has %zu",
			(unsigned long long)syssize, (unsigned long long)pm_off, size);
		return -EINVAL;
	}
	uint64_t hdr_end = 0x202 + (uint64_t)f[0x201];
	if (hdr_end > size || hdr_end <= HDR_OFF || hdr_end - HDR_OFF > sizeof(bz->setup_hdr))
		hdr_end = HDR_OFF + sizeof(bz->setup_hdr);
	bz->setup_hdr_len = hdr_end - HDR_OFF;
	memcpy(bz->setup_hdr, f + HDR_OFF, bz->setup_hdr_len);

	uint64_t pref = ld64(f + 0x258);
	uint64_t init_size = ld32(f + 0x260);
	uint64_t kend;
	bz->version = version;
	bz->load_addr = BOOT_HIMEM_START;
	bz->entry = BOOT_HIMEM_START + 0x200;
	bz->pm_offset = pm_off;
	bz->pm_size = size - pm_off;
	/* The decompressor runs the kernel at pref_address (or higher) and needs init_size there. */
	if (pref < BOOT_HIMEM_START || !add_u64(pref, init_size, &kend)) {
		why_set("kernel pref_address/init_size (0x%llx/0x%llx) are not usable",
			(unsigned long long)pref, (unsigned long long)init_size);
		return -EINVAL;
	}
	bz->run_addr = pref;
	bz->run_size = init_size;
	if (kend < bz->load_addr + bz->pm_size)
		kend = bz->load_addr + bz->pm_size;
	bz->mem_end = kend;
	bz->initrd_max = ld32(f + 0x22c);
	bz->cmdline_max = ld32(f + 0x238);
	if (bz->cmdline_max == 0 || bz->cmdline_max > BOOT_CMDLINE_MAX)
		bz->cmdline_max = BOOT_CMDLINE_MAX;
	return 0;
}

void mem_layout_for(uint64_t mem_bytes, struct mem_layout *l)
{
	l->low_size = mem_bytes < MEM_HOLE_START ? mem_bytes : MEM_HOLE_START;
	l->high_size = mem_bytes - l->low_size;
}

int initrd_place(const struct bzimage *bz, const struct mem_layout *l, uint64_t initrd_size,
		 uint64_t *addr, char *why, size_t whylen)
{
	uint64_t top = l->low_size;
	uint64_t lo;
	/* Page above the kernel's end; a kernel end in the last page leaves no room (no wrap to 0). */
	if (add_u64(bz->mem_end, 0xfff, &lo))
		lo &= ~0xfffULL;
	else
		lo = UINT64_MAX;
	if ((uint64_t)bz->initrd_max + 1 < top)
		top = (uint64_t)bz->initrd_max + 1;
	if (initrd_size == 0) {
		why_set("initrd is empty");
		return -EINVAL;
	}
	if (initrd_size > top || ((top - initrd_size) & ~0xfffULL) < lo) {
		why_set("initrd (%llu bytes) does not fit between the kernel (ends at 0x%llx) and "
			"the end of usable memory (0x%llx)",
			(unsigned long long)initrd_size, (unsigned long long)lo, (unsigned long long)top);
		return -ENOSPC;
	}
	*addr = (top - initrd_size) & ~0xfffULL;
	return 0;
}

unsigned int e820_build(const struct mem_layout *l, struct e820_ent *e, unsigned int max)
{
	struct e820_ent all[4] = {
		{ 0, BOOT_EBDA_START, 1 },
		{ BOOT_EBDA_START, 0x100000 - BOOT_EBDA_START, 2 },
		{ BOOT_HIMEM_START, l->low_size - BOOT_HIMEM_START, 1 },
		{ MEM_HOLE_END, l->high_size, 1 },
	};
	unsigned int n = l->high_size ? 4 : 3;
	if (l->low_size <= BOOT_HIMEM_START)
		n = 2; /* callers refuse such small memories; keep the map truthful anyway */
	if (n > max)
		n = max;
	memcpy(e, all, n * sizeof(*e));
	return n;
}

int boot_write(const struct gmem *m, const struct mem_layout *l, const struct bzimage *bz,
	       const uint8_t *file, const char *cmdline, uint64_t initrd_addr, uint64_t initrd_size)
{
	struct boot_params bp;
	struct e820_ent e[4];
	size_t clen = strlen(cmdline);
	int r;

	if (clen > bz->cmdline_max)
		return -E2BIG;
	if (file && (r = gmem_write(m, bz->load_addr, file + bz->pm_offset, bz->pm_size)) < 0)
		return r;
	if ((r = gmem_write(m, BOOT_CMDLINE_ADDR, cmdline, clen + 1)) < 0)
		return r;

	memset(&bp, 0, sizeof(bp));
	memcpy(&bp.hdr, bz->setup_hdr, bz->setup_hdr_len);
	bp.hdr.type_of_loader = 0xff;
	bp.hdr.loadflags |= CAN_USE_HEAP;
	bp.hdr.heap_end_ptr = 0xfe00;
	bp.hdr.cmd_line_ptr = (uint32_t)BOOT_CMDLINE_ADDR;
	bp.hdr.ramdisk_image = (uint32_t)initrd_addr;
	bp.hdr.ramdisk_size = (uint32_t)initrd_size;
	bp.ext_ramdisk_image = (uint32_t)(initrd_addr >> 32);
	bp.ext_ramdisk_size = (uint32_t)(initrd_size >> 32);
	bp.hdr.vid_mode = 0xffff; /* "normal" */
	unsigned int n = e820_build(l, e, ARRAY_SIZE(e));
	for (unsigned int i = 0; i < n; i++) {
		bp.e820_table[i].addr = e[i].addr;
		bp.e820_table[i].size = e[i].size;
		bp.e820_table[i].type = e[i].type;
	}
	bp.e820_entries = (uint8_t)n;
	return gmem_write(m, BOOT_ZEROPAGE_ADDR, &bp, sizeof(bp));
}
