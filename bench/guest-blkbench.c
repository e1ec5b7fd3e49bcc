/*
 * kiln-blkbench: guest-side block benchmark for `make bench` (bench/blk.sh). Runs inside the
 * test guest (kiln.test=blkbench) and measures, with O_DIRECT so the guest page cache plays no
 * part:
 *   seq read    MiB/s, 1 MiB requests over the first SIZE MiB of the device
 *   rand read   4 KiB reads per second at queue depth 1, random 4 KiB-aligned offsets in the
 *               same range (fixed seed), for SECONDS seconds
 *   seq write   MiB/s, 1 MiB requests over the same range, then fdatasync (counted)
 * and prints one parseable line:
 *   KILN-BLK seq_read_mibps=X rand_read_iops=Y seq_write_mibps=Z
 * or "KILN-BLK-FAILED <why>" with exit status 1.
 * usage: kiln-blkbench DEVICE SIZE_MIB SECONDS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 20)
#define SMALL 4096u

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what)
{
	printf("KILN-BLK-FAILED %s: %s\n", what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: kiln-blkbench DEVICE SIZE_MIB SECONDS\n");
		return 2;
	}
	const char *dev = argv[1];
	long mib = strtol(argv[2], NULL, 10), secs = strtol(argv[3], NULL, 10);
	if (mib <= 0 || mib > 65536 || secs <= 0 || secs > 3600) {
		fprintf(stderr, "kiln-blkbench: bad size or seconds\n");
		return 2;
	}
	uint64_t bytes = (uint64_t)mib * CHUNK;
	void *buf;
	if (posix_memalign(&buf, 4096, CHUNK))
		return fail("posix_memalign");

	int fd = open(dev, O_RDONLY | O_DIRECT);
	if (fd < 0)
		return fail("open for reading");
	double t0 = now_s();
	for (uint64_t off = 0; off < bytes; off += CHUNK)
		if (pread(fd, buf, CHUNK, (off_t)off) != (ssize_t)CHUNK)
			return fail("sequential read");
	double rd = now_s() - t0;

	uint64_t x = 0x9e3779b97f4a7c15ull, n = 0, blocks = bytes / SMALL;
	t0 = now_s();
	double t1 = t0;
	while (t1 - t0 < (double)secs) {
		for (int i = 0; i < 16; i++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			if (pread(fd, buf, SMALL, (off_t)((x % blocks) * SMALL)) != (ssize_t)SMALL)
				return fail("random read");
		}
		n += 16;
		t1 = now_s();
	}
	double rr = t1 - t0;
	close(fd);

	memset(buf, 0xa5, CHUNK); /* the reads above overwrote it; bench/blk.sh checks this pattern */
	fd = open(dev, O_WRONLY | O_DIRECT);
	if (fd < 0)
		return fail("open for writing");
	t0 = now_s();
	for (uint64_t off = 0; off < bytes; off += CHUNK)
		if (pwrite(fd, buf, CHUNK, (off_t)off) != (ssize_t)CHUNK)
			return fail("sequential write");
	if (fdatasync(fd))
		return fail("fdatasync");
	double wr = now_s() - t0;
	close(fd);

	printf("KILN-BLK seq_read_mibps=%.1f rand_read_iops=%.0f seq_write_mibps=%.1f\n",
	       (double)mib / rd, (double)n / rr, (double)mib / wr);
	return 0;
}
