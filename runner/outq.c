/* outq.c: `kiln run`'s bounded output queues toward the caller (no OS calls). */
#include "runner/outq.h"

#include <string.h>
#include <sys/stat.h>

size_t outq_used(const struct outq *q)
{
	return q->len - q->off;
}

bool outq_has_room(const struct outq *q, size_t chunk, size_t limit)
{
	size_t lim = limit < OUTQ_CAP ? limit : OUTQ_CAP;

	return chunk <= lim && outq_used(q) <= lim - chunk;
}

size_t outq_push(struct outq *q, const void *p, size_t n)
{
	size_t room = OUTQ_CAP - outq_used(q), k = n < room ? n : room;

	if (k && q->len + k > OUTQ_CAP) {
		memmove(q->buf, q->buf + q->off, outq_used(q));
		q->len -= q->off;
		q->off = 0;
	}
	if (k)
		memcpy(q->buf + q->len, p, k);
	q->len += k;
	q->dropped += n - k;
	return k;
}

const uint8_t *outq_peek(const struct outq *q, size_t *n)
{
	*n = outq_used(q);
	return q->buf + q->off;
}

void outq_consume(struct outq *q, size_t n)
{
	size_t used = outq_used(q);

	q->off += n < used ? n : used;
	if (q->off == q->len)
		q->off = q->len = 0;
}

void outq_discard(struct outq *q)
{
	q->dropped += outq_used(q);
	q->off = q->len = 0;
}

enum outq_how outq_how_for(mode_t st_mode)
{
	switch (st_mode & S_IFMT) {
	case S_IFIFO:
	case S_IFCHR:
		return OUTQ_REOPEN;
	case S_IFSOCK:
		return OUTQ_SOCKET;
	default:
		return OUTQ_PLAIN;
	}
}
