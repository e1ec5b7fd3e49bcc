/* vq-attack.c: guest-side e2e attacker: as root, drives a virtio-blk device's registers through
 * /dev/mem and posts malformed virtqueues (addresses outside guest RAM, wrapping, straddling its
 * end, loops, bad indices, bad indirect tables, avail index jumps). The VMM must survive each
 * one, fail the request or put the device into DEVICE_NEEDS_RESET, and never touch the disk.
 * usage: vq-attack MMIO-BASE-HEX RAM-BYTES [ro-write]  (prints one "ATTACK name status=.. used=.." line each)
 * ro-write: instead, post one well-formed write request (for a read-only disk: must get IOERR).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define R_STATUS 0x70
#define R_DEVFEAT_SEL 0x14
#define R_DRVFEAT 0x20
#define R_DRVFEAT_SEL 0x24
#define R_QSEL 0x30
#define R_QNUM 0x38
#define R_QREADY 0x44
#define R_QNOTIFY 0x50
#define R_QDESC 0x80
#define R_QDRIVER 0x90
#define R_QDEVICE 0xa0
#define QSIZE 8

static volatile uint32_t *regs;

static void wr(unsigned off, uint32_t v) { regs[off / 4] = v; __sync_synchronize(); }
static uint32_t rd(unsigned off) { __sync_synchronize(); return regs[off / 4]; }

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };
#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4

static uint8_t *page;   /* one locked page: descs at 0, avail at 0x100, used at 0x200, req at 0x400 */
static uint64_t page_pa;

static uint64_t virt_to_phys(void *p)
{
	uint64_t e;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0 || pread(fd, &e, 8, (off_t)((uintptr_t)p / 4096 * 8)) != 8 || !(e >> 63)) {
		perror("pagemap");
		exit(2);
	}
	close(fd);
	return (e & ((1ULL << 55) - 1)) * 4096;
}

/* Reset the device and bring queue 0 up on our page. */
static void setup_queue(void)
{
	wr(R_STATUS, 0);
	wr(R_STATUS, 1);
	wr(R_STATUS, 1 | 2);
	wr(R_DRVFEAT_SEL, 1);
	wr(R_DRVFEAT, 1); /* VERSION_1 (bit 32) */
	wr(R_DRVFEAT_SEL, 0);
	wr(R_DRVFEAT, 1u << 28); /* INDIRECT_DESC, so the indirect attacks reach the walker */
	wr(R_STATUS, 1 | 2 | 8);
	wr(R_QSEL, 0);
	wr(R_QNUM, QSIZE);
	wr(R_QDESC, (uint32_t)page_pa);
	wr(R_QDESC + 4, (uint32_t)(page_pa >> 32));
	wr(R_QDRIVER, (uint32_t)(page_pa + 0x100));
	wr(R_QDRIVER + 4, (uint32_t)((page_pa + 0x100) >> 32));
	wr(R_QDEVICE, (uint32_t)(page_pa + 0x200));
	wr(R_QDEVICE + 4, (uint32_t)((page_pa + 0x200) >> 32));
	wr(R_QREADY, 1);
	wr(R_STATUS, 1 | 2 | 8 | 4);
	memset(page, 0, 0x400);
}

/* Post head 0 with avail idx `idx`, kick, wait, report. */
static void fire(const char *name, uint16_t idx)
{
	volatile uint16_t *avail = (uint16_t *)(page + 0x100);
	volatile uint16_t *used = (uint16_t *)(page + 0x200);
	avail[2] = 0; /* ring[0] = head 0 */
	__sync_synchronize();
	avail[1] = idx;
	__sync_synchronize();
	wr(R_QNOTIFY, 0);
	usleep(200000);
	printf("ATTACK %s status=0x%x used=%u reqstatus=%u\n", name, rd(R_STATUS), used[1], page[0x410]);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4)
		return 2;
	uint64_t base = strtoull(argv[1], NULL, 16), ram = strtoull(argv[2], NULL, 0);
	int fd = open("/dev/mem", O_RDWR | O_SYNC);
	if (fd < 0) {
		perror("/dev/mem");
		return 2;
	}
	regs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)base);
	if (regs == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	page = aligned_alloc(4096, 4096);
	memset(page, 0, 4096);
	mlock(page, 4096);
	page_pa = virt_to_phys(page);
	uint64_t hdr = page_pa + 0x400, status = page_pa + 0x410;
	struct desc *d = (struct desc *)page;
	/* Every request is a write of sector 0 (type OUT): if the VMM followed a bad address, it would
	 * put whatever it found into the host file. */
	uint32_t out_hdr[4] = { 1, 0, 0, 0 };

#define REQ3(daddr, dlen)                                                               \
	do {                                                                            \
		setup_queue();                                                          \
		memcpy(page + 0x400, out_hdr, 16);                                      \
		page[0x410] = 0xee;                                                     \
		d[0] = (struct desc){ hdr, 16, F_NEXT, 1 };                             \
		d[1] = (struct desc){ (daddr), (dlen), F_NEXT, 2 };                     \
		d[2] = (struct desc){ status, 1, F_WRITE, 0 };                          \
	} while (0)

	if (argc == 4) {
		REQ3(page_pa + 0x800, 512);
		fire("ro-write", 1);
		wr(R_STATUS, 0);
		return 0;
	}
	REQ3(0x100000000000ULL, 512);
	fire("data-outside-ram", 1);
	REQ3(ram - 256, 4096);
	fire("data-straddles-ram-end", 1);
	REQ3(0xfffffffffffff000ULL, 0x2000);
	fire("data-wraps", 1);
	REQ3(page_pa, 0xffffffffu);
	fire("data-huge-length", 1);
	REQ3(page_pa + 0x800, 512);
	d[1].next = 0; /* 0 -> 1 -> 0 ... */
	fire("loop", 1);
	REQ3(page_pa + 0x800, 512);
	d[1].next = 200;
	fire("next-out-of-range", 1);
	REQ3(page_pa + 0x800, 512);
	d[0] = (struct desc){ 0x200000000000ULL, 48, F_INDIRECT, 0 };
	fire("indirect-outside-ram", 1);
	REQ3(page_pa + 0x800, 512);
	d[0] = (struct desc){ page_pa + 0xc00, 40, F_INDIRECT, 0 };
	fire("indirect-len-not-16x", 1);
	REQ3(page_pa + 0x800, 512);
	fire("avail-jump", QSIZE + 5);
	REQ3(page_pa, 16);
	fire("desc-is-the-ring", 1);
	/* A sane request last: the device must still work after a reset. */
	REQ3(page_pa + 0x800, 512);
	page[0x400] = 0; /* type IN: a read, so the disk stays unchanged */
	d[1].flags = F_NEXT | F_WRITE;
	fire("sane-after-attacks", 1);
	wr(R_STATUS, 0);
	return 0;
}
