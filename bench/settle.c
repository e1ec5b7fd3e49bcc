/*
 * kiln-bench-settle: run by `make bench` between timed samples when it runs inside the emulated
 * host (tests/kvmhost.sh), never timed itself. It faults in SIZE MiB of fresh anonymous memory
 * (transparent huge pages where the kernel gives them) and exits, so that the pages the previous
 * sample's VMM freed are taken, written and freed once more before the next sample starts.
 *
 * Why: the emulated host is QEMU TCG. When its kernel hands a freed page to a new process and
 * zeroes it, TCG must first throw away all the code it translated from that page; pages that
 * held the previous guest's kernel hold tens of thousands of translations. Measured there
 * (kiln-vmm boots back to back, 2 CPUs): 1.4-1.9 s per boot when it inherits the previous
 * boot's pages, 1.0-1.3 s after this tool ran. Whoever allocates first pays, so without it each
 * sample also pays for the one before it (kiln for QEMU's guest and the other way round), which
 * no real host does.
 *
 * usage: kiln-bench-settle SIZE_MIB      exit 0, or 1 with one line on stderr
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE (2ul << 20)
#define MAX_MIB (64ul << 10)

int main(int argc, char **argv)
{
	char *end, *p;
	unsigned long mib;
	size_t len, i;

	errno = 0;
	mib = argc == 2 ? strtoul(argv[1], &end, 10) : 0;
	if (argc != 2 || errno || end == argv[1] || *end || mib == 0 || mib > MAX_MIB) {
		fprintf(stderr, "kiln-bench-settle: usage: kiln-bench-settle SIZE_MIB (1..%lu)\n", MAX_MIB);
		return 1;
	}
	len = (size_t)mib << 20;
	/* one huge page more, to start on a 2 MiB boundary */
	p = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "kiln-bench-settle: mmap %lu MiB: %s\n", mib, strerror(errno));
		return 1;
	}
	p = (char *)(((uintptr_t)p + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
	(void)madvise(p, len, MADV_HUGEPAGE); /* best effort: 4 KiB pages do the job, more slowly */
	if (madvise(p, len, MADV_POPULATE_WRITE) != 0) {
		/* kernels before 5.14: touch every page */
		for (i = 0; i < len; i += 4096)
			((volatile char *)p)[i] = 1;
	}
	return 0;
}
