/* blk.h: virtio-blk over a raw image fd: request parsing (pure) apart from host I/O. */
#ifndef KILN_BLK_H
#define KILN_BLK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "gmem.h"
#include "util.h"
#include "virtio_mmio.h"
#include "virtq.h"

#define VIRTIO_ID_BLOCK 2

/* Feature bits (virtio 1.x, 5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values (5.2.6). */
#define VIRTIO_BLK_T_IN           0u
#define VIRTIO_BLK_T_OUT          1u
#define VIRTIO_BLK_T_FLUSH        4u
#define VIRTIO_BLK_T_GET_ID       8u
#define VIRTIO_BLK_T_DISCARD      11u
#define VIRTIO_BLK_T_WRITE_ZEROES 13u
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_WZ_F_UNMAP 1u

#define BLK_SECTOR 512u
#define BLK_ID_BYTES 20u
#define BLK_QUEUE_SIZE 256u
#define BLK_SEG_MAX 126u                   /* data segments per request (config seg_max) */
#define BLK_MAX_BUFS (BLK_SEG_MAX + 2u)    /* + header + status */
#define BLK_MAX_DISCARD_SEG 16u
#define BLK_MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB per segment */
#define BLK_DISCARD_ALIGN_SECTORS 8u       /* 4 KiB */

/* Device config space (5.2.4), as the guest reads it at 0x100. */
struct virtio_blk_config {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp;
	uint8_t alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_blk_config) == 60, "virtio_blk_config layout");

/* A discard / write-zeroes segment as read from the guest (copied once). */
struct blk_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

/* What the pure parser needs to know about the disk. */
struct blk_geom {
	uint64_t capacity; /* sectors */
	bool ro;
};

/* A parsed, validated request. Host pointers all come from checked virtq buffers. */
struct blk_req {
	uint32_t type;
	uint64_t sector;
	uint64_t off, len;                 /* IN/OUT: byte offset and length on the disk */
	struct iovec iov[BLK_MAX_BUFS];    /* IN/OUT/GET_ID: data, header and status sliced off */
	unsigned int niov;
	struct blk_seg seg[BLK_MAX_DISCARD_SEG];
	unsigned int nseg;
	uint8_t *status;                   /* NULL: the chain has no status byte to write */
	uint32_t used_len;                 /* bytes reported in the used ring */
};

/*
 * Parse and validate one request chain (bufs in chain order, readable ones first). Pure: reads the
 * guest's header and segments once through the buffers' checked host mappings, no file I/O.
 * Returns VIRTIO_BLK_S_OK when *r is ready to execute, or the status to report without I/O
 * (IOERR: malformed, out of range, write to a read-only disk; UNSUPP: unknown type).
 * r->status and r->used_len are always set (status NULL when the chain has no writable last byte).
 */
uint8_t blk_parse(const struct blk_geom *g, const struct virtq_buf *bufs, unsigned int n, struct blk_req *r);

/* Options of one --disk PATH[,ro][,id=SERIAL]. */
struct blk_opts {
	const char *path;                  /* points into the string given to blk_parse_opts */
	bool ro;
	char serial[BLK_ID_BYTES + 1];
};

/* Parse "PATH[,ro][,id=SERIAL]" in place (commas become NULs). SERIAL: 1..20 printable ASCII
 * characters, no comma. Returns 0 or -EINVAL. */
int blk_parse_opts(char *arg, struct blk_opts *o) KILN_WUR;

/* One virtio-blk device. */
struct blk_dev {
	struct virtio_mmio_dev mmio;
	int fd;                            /* owned by the caller */
	struct blk_geom geom;
	char serial[BLK_ID_BYTES];         /* zero-padded, not NUL-terminated when 20 long */
	struct virtio_blk_config cfg;
	struct virtq_buf bufs[BLK_MAX_BUFS];
	struct blk_req req;
	uint64_t requests, errors;
};

/*
 * Set up a block device over fd (opened O_RDONLY for ro, else O_RDWR; kept open by the caller
 * until blk_destroy). Capacity is the file size rounded down to 512 bytes. serial may be NULL.
 * irq_raise/irq_ctx as for virtio_mmio_init. Then route MMIO to b->mmio with virtio_mmio_read/
 * write and kicks to virtio_mmio_notify(&b->mmio, 0). Returns 0 or a negative errno.
 */
int blk_init(struct blk_dev *b, const struct gmem *mem, int fd, bool ro, const char *serial,
	     void (*irq_raise)(void *ctx), void *irq_ctx) KILN_WUR;
void blk_destroy(struct blk_dev *b);

/* Execute a request parsed by blk_parse on fd (exposed for tests). Returns the status byte. */
uint8_t blk_execute(int fd, const struct blk_geom *g, const char serial[BLK_ID_BYTES], struct blk_req *r);

#endif
