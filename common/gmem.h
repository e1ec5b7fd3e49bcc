/* gmem.h: guest physical memory and the one checked way to touch it. No KVM here. */
#ifndef KILN_GMEM_H
#define KILN_GMEM_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

/* A guest physical address. Never a host pointer; convert only through gmem_ptr(). */
typedef uint64_t gpa_t;

#define GMEM_MAX_REGIONS 2

struct gmem_region {
	gpa_t gpa;     /* first guest physical address */
	uint64_t size; /* bytes */
	uint8_t *host; /* host mapping of the whole region */
};

struct gmem {
	struct gmem_region r[GMEM_MAX_REGIONS];
	unsigned int nr;
	uint64_t ram_size; /* total RAM bytes over all regions */
};

/*
 * Host pointer for the guest range [gpa, gpa+len), or NULL when any byte of it
 * lies outside guest RAM or the range wraps. A range never straddles two regions.
 * len 0 is treated as 1 (the address itself must be RAM).
 */
static inline KILN_WUR void *gmem_ptr(const struct gmem *m, gpa_t gpa, uint64_t len)
{
	if (len == 0)
		len = 1;
	for (unsigned int i = 0; i < m->nr && i < GMEM_MAX_REGIONS; i++) {
		const struct gmem_region *r = &m->r[i];
		if (gpa >= r->gpa && range_ok(gpa - r->gpa, len, r->size))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

/* Copy len bytes from guest to host. 0, or -EFAULT when the range is not RAM. */
static inline KILN_WUR int gmem_read(const struct gmem *m, void *dst, gpa_t gpa, uint64_t len)
{
	const void *p = gmem_ptr(m, gpa, len);
	if (!p)
		return -14; /* -EFAULT */
	memcpy(dst, p, len);
	return 0;
}

/* Copy len bytes from host to guest. 0, or -EFAULT when the range is not RAM. */
static inline KILN_WUR int gmem_write(const struct gmem *m, gpa_t gpa, const void *src, uint64_t len)
{
	void *p = gmem_ptr(m, gpa, len);
	if (!p)
		return -14; /* -EFAULT */
	memcpy(p, src, len);
	return 0;
}

#endif
