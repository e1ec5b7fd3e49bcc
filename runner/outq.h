/* outq.h: `kiln run`'s bounded output queues toward the caller, and how each caller fd is written. */
#ifndef KILN_RUNNER_OUTQ_H
#define KILN_RUNNER_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

/*
 * One queue per caller stream (stdout, stderr). While the command runs, kiln reads the agent's
 * next frame only when every queue is at most OUTQ_SOFT - KA_CHUNK_MAX full: a caller that does
 * not read its output stops kiln reading the connection, the vsock window fills and the guest's
 * writes block; kiln's loop, its deadlines and its teardown never wait for the caller. The room
 * between OUTQ_SOFT and OUTQ_CAP takes what is already in flight when the VM ends.
 */
#define OUTQ_CAP (1024u * 1024u)
#define OUTQ_SOFT (256u * 1024u)

struct outq {
	uint8_t buf[OUTQ_CAP];
	size_t off, len;     /* queued bytes are buf[off, len) */
	uint64_t dropped;    /* bytes refused (queue full) or discarded (the caller's fd failed) */
};

/* Bytes queued. */
size_t outq_used(const struct outq *q);

/* Whether q can take a frame of up to `chunk` bytes without going beyond `limit` bytes queued. */
bool outq_has_room(const struct outq *q, size_t chunk, size_t limit);

/*
 * Queue up to n bytes of p; what does not fit in OUTQ_CAP is counted in q->dropped. Returns the
 * number of bytes queued. Never blocks, never allocates.
 */
size_t outq_push(struct outq *q, const void *p, size_t n);

/* The queued bytes, oldest first: a pointer and their count (0: empty). */
const uint8_t *outq_peek(const struct outq *q, size_t *n);

/* Remove n bytes (at most outq_used) from the front after they were written. */
void outq_consume(struct outq *q, size_t n);

/* Discard everything queued, counting it in q->dropped (the caller's fd failed). */
void outq_discard(struct outq *q);

/* How kiln writes one of the caller's descriptors without ever blocking on it. */
enum outq_how {
	OUTQ_PLAIN,     /* regular file or block device: a write completes without a reader */
	OUTQ_REOPEN,    /* pipe, FIFO or character device (tty): written through its own nonblocking
			 * open file description (/proc/self/fd/N), leaving the caller's flags alone */
	OUTQ_SOCKET,    /* socket: send(MSG_DONTWAIT) */
};

/* The method for a descriptor of file type st_mode (S_IFMT bits of fstat's st_mode). */
enum outq_how outq_how_for(mode_t st_mode);

/*
 * At most this many bytes per write to a pipe that could not be given its own nonblocking
 * description: after POLLOUT a pipe has a free page, so a write of PIPE_BUF bytes or fewer
 * does not block.
 */
#define OUTQ_PIPE_STEP 4096u

#endif
