/* fake_guest.h: a malloc'd fake guest RAM with a split virtqueue laid out in it, for device tests. */
#ifndef KILN_TEST_FAKE_GUEST_H
#define KILN_TEST_FAKE_GUEST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gmem.h"
#include "util.h"

#define FG_RAM_GPA   0x10000ull        /* RAM starts above 0 so "below RAM" is testable */
#define FG_RAM_SIZE  (1ull << 20)
#define FG_DESC      (FG_RAM_GPA + 0x0000)
#define FG_AVAIL     (FG_RAM_GPA + 0x4000)
#define FG_USED      (FG_RAM_GPA + 0x6000)
#define FG_DATA      (FG_RAM_GPA + 0x10000) /* buffers from here on */

struct fake_guest {
	struct gmem m;
	uint8_t *ram;
	uint16_t qsize;
	uint16_t avail_idx;
	void *huge;      /* optional PROT_NONE second region (4 GiB) */
};

static inline void fg_init(struct fake_guest *f, uint16_t qsize)
{
	memset(f, 0, sizeof(*f));
	f->ram = aligned_alloc(4096, FG_RAM_SIZE);
	memset(f->ram, 0, FG_RAM_SIZE);
	f->m.r[0].gpa = FG_RAM_GPA;
	f->m.r[0].size = FG_RAM_SIZE;
	f->m.r[0].host = f->ram;
	f->m.nr = 1;
	f->m.ram_size = FG_RAM_SIZE;
	f->qsize = qsize;
}

/* Adds a 4 GiB region at 4 GiB that is never touched (lengths only): PROT_NONE, no memory. */
static inline void fg_add_huge(struct fake_guest *f)
{
	f->huge = mmap(NULL, 1ull << 32, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	f->m.r[1].gpa = 1ull << 32;
	f->m.r[1].size = 1ull << 32;
	f->m.r[1].host = f->huge;
	f->m.nr = 2;
}

static inline void fg_free(struct fake_guest *f)
{
	if (f->huge)
		munmap(f->huge, 1ull << 32);
	free(f->ram);
}

static inline uint8_t *fg_host(struct fake_guest *f, gpa_t gpa)
{
	return f->ram + (gpa - FG_RAM_GPA);
}

static inline void fg_desc_at(struct fake_guest *f, gpa_t table, uint32_t i, uint64_t addr, uint32_t len,
			      uint16_t flags, uint16_t next)
{
	uint8_t *p = fg_host(f, table) + 16u * i;
	st64(p, addr);
	st32(p + 8, len);
	st16(p + 12, flags);
	st16(p + 14, next);
}

static inline void fg_desc(struct fake_guest *f, uint32_t i, uint64_t addr, uint32_t len, uint16_t flags,
			   uint16_t next)
{
	fg_desc_at(f, FG_DESC, i, addr, len, flags, next);
}

static inline void fg_set_avail_idx(struct fake_guest *f, uint16_t idx)
{
	f->avail_idx = idx;
	st16(fg_host(f, FG_AVAIL) + 2, idx);
}

/* Post head in the next avail slot and publish it. */
static inline void fg_post(struct fake_guest *f, uint16_t head)
{
	st16(fg_host(f, FG_AVAIL) + 4 + 2u * (f->avail_idx % f->qsize), head);
	fg_set_avail_idx(f, (uint16_t)(f->avail_idx + 1));
}

static inline uint16_t fg_used_idx(struct fake_guest *f)
{
	return ld16(fg_host(f, FG_USED) + 2);
}

static inline void fg_used_elem(struct fake_guest *f, uint16_t slot, uint32_t *id, uint32_t *len)
{
	uint8_t *e = fg_host(f, FG_USED) + 4 + 8u * (slot % f->qsize);
	*id = ld32(e);
	*len = ld32(e + 4);
}

/* The driver's used_event (tail of avail) and the device's avail_event (tail of used). */
static inline void fg_set_used_event(struct fake_guest *f, uint16_t v)
{
	st16(fg_host(f, FG_AVAIL) + 4 + 2u * f->qsize, v);
}
static inline uint16_t fg_avail_event(struct fake_guest *f)
{
	return ld16(fg_host(f, FG_USED) + 4 + 8u * f->qsize);
}

#endif
