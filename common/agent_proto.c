/* agent_proto.c: kiln agent frames: header checks, payload decoders and encoders (no OS calls). */
#include "agent_proto.h"

#include <string.h>

uint32_t ka_type_max_len(uint8_t type)
{
	switch (type) {
	case KA_EXEC:
		return KA_MAX_PAYLOAD;
	case KA_STDIN:
	case KA_STDOUT:
	case KA_STDERR:
	case KA_PUT_DATA:
	case KA_GET_DATA:
		return KA_CHUNK_MAX;
	case KA_PUT:
		return 8 + 4 + 4 + KA_PATH_MAX;
	case KA_GET:
		return 4 + KA_PATH_MAX;
	case KA_SIGNAL:
		return 4;
	case KA_HELLO:
		return 8;
	case KA_EXIT:
		return KA_EXIT_SIZE;
	case KA_ERROR:
		return 4 + 4 + KA_MSG_MAX;
	case KA_GET_BEGIN:
		return 12;
	default: /* STDIN_CLOSE, BYE, PUT_OK: empty; unknown: 0 */
		return 0;
	}
}

bool ka_type_known(uint8_t type)
{
	switch (type) {
	case KA_EXEC: case KA_STDIN: case KA_STDIN_CLOSE: case KA_PUT: case KA_PUT_DATA:
	case KA_GET: case KA_BYE: case KA_SIGNAL: case KA_HELLO: case KA_STDOUT: case KA_STDERR:
	case KA_EXIT: case KA_ERROR: case KA_PUT_OK: case KA_GET_BEGIN: case KA_GET_DATA:
		return true;
	default:
		return false;
	}
}

/* Types whose payload has exactly the cap's size. */
static bool fixed_size(uint8_t type)
{
	return type == KA_SIGNAL || type == KA_HELLO || type == KA_EXIT || type == KA_GET_BEGIN;
}

const char *ka_type_name(uint8_t type)
{
	switch (type) {
	case KA_EXEC: return "EXEC";
	case KA_STDIN: return "STDIN";
	case KA_STDIN_CLOSE: return "STDIN_CLOSE";
	case KA_PUT: return "PUT";
	case KA_PUT_DATA: return "PUT_DATA";
	case KA_GET: return "GET";
	case KA_BYE: return "BYE";
	case KA_SIGNAL: return "SIGNAL";
	case KA_HELLO: return "HELLO";
	case KA_STDOUT: return "STDOUT";
	case KA_STDERR: return "STDERR";
	case KA_EXIT: return "EXIT";
	case KA_ERROR: return "ERROR";
	case KA_PUT_OK: return "PUT_OK";
	case KA_GET_BEGIN: return "GET_BEGIN";
	case KA_GET_DATA: return "GET_DATA";
	default: return "?";
	}
}

const char *ka_strerror(int err)
{
	switch (err) {
	case KA_EBADMAGIC: return "bad magic";
	case KA_EVERSION: return "unsupported protocol version";
	case KA_ETYPE: return "unknown frame type";
	case KA_ETOOLONG: return "payload length beyond the frame type's cap";
	case KA_ETRUNC: return "truncated payload";
	case KA_ETRAIL: return "trailing bytes after the payload";
	case KA_ECOUNT: return "count or string length beyond its cap";
	case KA_EVALUE: return "field value not allowed";
	case KA_ENUL: return "NUL byte inside a string";
	case -EAGAIN: return "incomplete frame";
	default: return "?";
	}
}

int ka_hdr_decode(const uint8_t *buf, size_t n, struct ka_hdr *h)
{
	uint8_t type;
	uint32_t len, max;

	if (n < KA_HDR_SIZE)
		return -EAGAIN;
	if (ld32(buf) != KA_MAGIC)
		return KA_EBADMAGIC;
	if (buf[4] != KA_VERSION)
		return KA_EVERSION;
	type = buf[5];
	if (!ka_type_known(type))
		return KA_ETYPE;
	if (ld16(buf + 6) != 0)
		return KA_EVALUE;
	len = ld32(buf + 8);
	max = ka_type_max_len(type);
	if (len > max)
		return KA_ETOOLONG;
	if (fixed_size(type) && len != max)
		return KA_ETRUNC;
	h->type = type;
	h->len = len;
	return 0;
}

/* ---- payload reader ---------------------------------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t len, off;
	int err;  /* first failure, sticky */
};

static void rd_fail(struct rd *r, int err)
{
	if (!r->err)
		r->err = err;
}

static const uint8_t *rd_take(struct rd *r, size_t n)
{
	const uint8_t *q;

	if (r->err)
		return NULL;
	if (n > r->len - r->off) {
		rd_fail(r, KA_ETRUNC);
		return NULL;
	}
	q = r->p + r->off;
	r->off += n;
	return q;
}

static uint8_t rd_u8(struct rd *r)
{
	const uint8_t *q = rd_take(r, 1);
	return q ? q[0] : 0;
}

static uint32_t rd_u32(struct rd *r)
{
	const uint8_t *q = rd_take(r, 4);
	return q ? ld32(q) : 0;
}

static uint64_t rd_u64(struct rd *r)
{
	const uint8_t *q = rd_take(r, 8);
	return q ? ld64(q) : 0;
}

/* A string of at most max bytes without NUL. */
static struct ka_str rd_str(struct rd *r, uint32_t max)
{
	struct ka_str s = { "", 0 };
	uint32_t n = rd_u32(r);
	const uint8_t *q;

	if (r->err)
		return s;
	if (n > max) {
		rd_fail(r, KA_ECOUNT);
		return s;
	}
	q = rd_take(r, n);
	if (!q)
		return s;
	if (memchr(q, 0, n)) {
		rd_fail(r, KA_ENUL);
		return s;
	}
	s.p = (const char *)q;
	s.len = n;
	return s;
}

static int rd_end(struct rd *r)
{
	if (r->err)
		return r->err;
	return r->off == r->len ? 0 : KA_ETRAIL;
}

/* ---- decoders ------------------------------------------------------------------------------ */

int ka_exec_decode(const uint8_t *p, size_t len, struct ka_exec *out)
{
	struct rd r = { p, len, 0, 0 };
	bool seen[KA_RLIMIT_RESOURCES] = { false };
	uint32_t i;

	if (len > KA_MAX_PAYLOAD)
		return KA_ETOOLONG;
	out->user = rd_u8(&r);
	if (rd_u8(&r) | rd_u8(&r) | rd_u8(&r))
		rd_fail(&r, KA_EVALUE);
	out->argc = rd_u32(&r);
	out->envc = rd_u32(&r);
	out->nrlimits = rd_u32(&r);
	if (r.err)
		return r.err;
	if (out->user != KA_USER_ROOT && out->user != KA_USER_SANDBOX)
		return KA_EVALUE;
	if (out->argc > KA_ARGC_MAX || out->envc > KA_ENVC_MAX || out->nrlimits > KA_RLIMITS_MAX)
		return KA_ECOUNT;
	if (out->argc == 0)
		return KA_EVALUE;
	out->cwd = rd_str(&r, KA_PATH_MAX);
	for (i = 0; i < out->argc && !r.err; i++)
		out->argv[i] = rd_str(&r, KA_ARG_MAX);
	if (!r.err && out->argv[0].len == 0)
		return KA_EVALUE;
	for (i = 0; i < out->envc && !r.err; i++) {
		struct ka_str s = rd_str(&r, KA_ARG_MAX);
		const char *eq;

		if (r.err)
			break;
		eq = memchr(s.p, '=', s.len);
		if (!eq || eq == s.p)
			return KA_EVALUE;
		out->env[i] = s;
	}
	for (i = 0; i < out->nrlimits && !r.err; i++) {
		struct ka_rlimit *l = &out->rl[i];

		l->resource = rd_u32(&r);
		if (rd_u32(&r) != 0)
			rd_fail(&r, KA_EVALUE);
		l->cur = rd_u64(&r);
		l->max = rd_u64(&r);
		if (r.err)
			break;
		if (l->resource >= KA_RLIMIT_RESOURCES || seen[l->resource] || l->cur > l->max)
			return KA_EVALUE;
		seen[l->resource] = true;
	}
	return rd_end(&r);
}

int ka_path_check(const char *p, size_t len, const char **why)
{
	const char *w = NULL;
	int rc = KA_EVALUE;
	size_t i, start = 0;

	if (len == 0)
		w = "empty path";
	else if (len > KA_PATH_MAX)
		w = "path too long", rc = KA_ECOUNT;
	else if (memchr(p, 0, len))
		w = "NUL byte in path", rc = KA_ENUL;
	else if (p[0] == '/')
		w = "absolute path";
	else {
		for (i = 0; i <= len && !w; i++) {
			size_t n;

			if (i < len && p[i] != '/')
				continue;
			n = i - start;
			if (n == 0)
				w = i == len ? "trailing '/'" : "empty path component";
			else if (n == 1 && p[start] == '.')
				w = "'.' path component";
			else if (n == 2 && p[start] == '.' && p[start + 1] == '.')
				w = "'..' path component";
			start = i + 1;
		}
	}
	if (!w)
		return 0;
	if (why)
		*why = w;
	return rc;
}

int ka_put_decode(const uint8_t *p, size_t len, struct ka_put *out)
{
	struct rd r = { p, len, 0, 0 };
	int rc;

	out->size = rd_u64(&r);
	out->mode = rd_u32(&r);
	out->path = rd_str(&r, KA_PATH_MAX);
	rc = rd_end(&r);
	if (rc)
		return rc;
	if (out->size > KA_FILE_MAX)
		return KA_ECOUNT;
	if (out->mode & ~0777u)
		return KA_EVALUE;
	if (out->path.len == 0)
		return KA_EVALUE;
	return 0;
}

int ka_get_decode(const uint8_t *p, size_t len, struct ka_str *path)
{
	struct rd r = { p, len, 0, 0 };
	int rc;

	*path = rd_str(&r, KA_PATH_MAX);
	rc = rd_end(&r);
	if (rc)
		return rc;
	return path->len ? 0 : KA_EVALUE;
}

int ka_signal_decode(const uint8_t *p, size_t len, uint32_t *signo)
{
	struct rd r = { p, len, 0, 0 };
	int rc;

	*signo = rd_u32(&r);
	rc = rd_end(&r);
	if (rc)
		return rc;
	return *signo >= 1 && *signo <= 64 ? 0 : KA_EVALUE;
}

int ka_hello_decode(const uint8_t *p, size_t len, uint32_t *version)
{
	struct rd r = { p, len, 0, 0 };
	uint32_t flags;
	int rc;

	*version = rd_u32(&r);
	flags = rd_u32(&r);
	rc = rd_end(&r);
	if (rc)
		return rc;
	return *version == KA_VERSION && flags == 0 ? 0 : KA_EVALUE;
}

int ka_exit_decode(const uint8_t *p, size_t len, struct ka_exit *out)
{
	struct rd r = { p, len, 0, 0 };
	uint16_t zero;
	int rc;

	out->kind = rd_u8(&r);
	out->flags = rd_u8(&r);
	zero = (uint16_t)(rd_u8(&r) | rd_u8(&r));
	out->code = rd_u32(&r);
	out->user_us = rd_u64(&r);
	out->sys_us = rd_u64(&r);
	out->maxrss_kb = rd_u64(&r);
	out->wall_us = rd_u64(&r);
	rc = rd_end(&r);
	if (rc)
		return rc;
	if (zero || (out->flags & ~(KA_EXIT_F_OOM | KA_EXIT_F_CORE | KA_EXIT_F_PIDS)))
		return KA_EVALUE;
	if (out->kind == KA_EXITED)
		return out->code <= 255 ? 0 : KA_EVALUE;
	if (out->kind == KA_SIGNALED)
		return out->code >= 1 && out->code <= 64 ? 0 : KA_EVALUE;
	return KA_EVALUE;
}

int ka_error_decode(const uint8_t *p, size_t len, struct ka_error *out)
{
	struct rd r = { p, len, 0, 0 };

	out->code = rd_u32(&r);
	out->msg = rd_str(&r, KA_MSG_MAX);
	return rd_end(&r);
}

int ka_get_begin_decode(const uint8_t *p, size_t len, struct ka_get_begin *out)
{
	struct rd r = { p, len, 0, 0 };
	int rc;

	out->size = rd_u64(&r);
	out->mode = rd_u32(&r);
	rc = rd_end(&r);
	if (rc)
		return rc;
	if (out->size > KA_FILE_MAX)
		return KA_ECOUNT;
	return out->mode & ~07777u ? KA_EVALUE : 0;
}

long ka_frame_check(const uint8_t *buf, size_t n, struct ka_exec *scratch)
{
	struct ka_hdr h;
	const uint8_t *p = buf + KA_HDR_SIZE;
	int rc = ka_hdr_decode(buf, n, &h);

	if (rc)
		return rc;
	if (n - KA_HDR_SIZE < h.len)
		return -EAGAIN;
	switch (h.type) {
	case KA_EXEC:
		rc = ka_exec_decode(p, h.len, scratch);
		break;
	case KA_PUT: {
		struct ka_put x;
		rc = ka_put_decode(p, h.len, &x);
		break;
	}
	case KA_GET: {
		struct ka_str s;
		rc = ka_get_decode(p, h.len, &s);
		break;
	}
	case KA_SIGNAL: {
		uint32_t s;
		rc = ka_signal_decode(p, h.len, &s);
		break;
	}
	case KA_HELLO: {
		uint32_t v;
		rc = ka_hello_decode(p, h.len, &v);
		break;
	}
	case KA_EXIT: {
		struct ka_exit x;
		rc = ka_exit_decode(p, h.len, &x);
		break;
	}
	case KA_ERROR: {
		struct ka_error x;
		rc = ka_error_decode(p, h.len, &x);
		break;
	}
	case KA_GET_BEGIN: {
		struct ka_get_begin x;
		rc = ka_get_begin_decode(p, h.len, &x);
		break;
	}
	default: /* data chunks and empty frames: the header check is all there is */
		break;
	}
	return rc ? rc : (long)(KA_HDR_SIZE + h.len);
}

/* ---- encoder ------------------------------------------------------------------------------- */

void ka_enc_init(struct ka_enc *e, uint8_t *buf, size_t cap)
{
	e->buf = buf;
	e->cap = cap;
	e->len = 0;
	e->start = 0;
	e->type = 0;
	e->bad = false;
}

static uint8_t *enc_room(struct ka_enc *e, size_t n)
{
	uint8_t *q;

	if (e->bad || n > e->cap - e->len) {
		e->bad = true;
		return NULL;
	}
	q = e->buf + e->len;
	e->len += n;
	return q;
}

void ka_enc_begin(struct ka_enc *e, uint8_t type)
{
	uint8_t *q;

	e->bad = false;
	e->start = e->len;
	e->type = type;
	q = enc_room(e, KA_HDR_SIZE);
	if (!q)
		return;
	st32(q, KA_MAGIC);
	q[4] = KA_VERSION;
	q[5] = type;
	st16(q + 6, 0);
	st32(q + 8, 0);
}

void ka_put_u8(struct ka_enc *e, uint8_t v)
{
	uint8_t *q = enc_room(e, 1);
	if (q)
		q[0] = v;
}

void ka_put_u16(struct ka_enc *e, uint16_t v)
{
	uint8_t *q = enc_room(e, 2);
	if (q)
		st16(q, v);
}

void ka_put_u32(struct ka_enc *e, uint32_t v)
{
	uint8_t *q = enc_room(e, 4);
	if (q)
		st32(q, v);
}

void ka_put_u64(struct ka_enc *e, uint64_t v)
{
	uint8_t *q = enc_room(e, 8);
	if (q)
		st64(q, v);
}

void ka_put_bytes(struct ka_enc *e, const void *p, size_t n)
{
	uint8_t *q = enc_room(e, n);
	if (q && n)
		memcpy(q, p, n);
}

void ka_put_str(struct ka_enc *e, const char *p, size_t n)
{
	if (n > UINT32_MAX) {
		e->bad = true;
		return;
	}
	ka_put_u32(e, (uint32_t)n);
	ka_put_bytes(e, p, n);
}

long ka_enc_end(struct ka_enc *e)
{
	size_t plen;

	if (e->bad || e->len - e->start < KA_HDR_SIZE) {
		e->len = e->start;  /* drop the partial frame */
		e->bad = false;
		return -EMSGSIZE;
	}
	plen = e->len - e->start - KA_HDR_SIZE;
	if (plen > ka_type_max_len(e->type)) {
		e->len = e->start;
		return -EMSGSIZE;
	}
	st32(e->buf + e->start + 8, (uint32_t)plen);
	return (long)(e->len - e->start);
}

long ka_enc_exec(struct ka_enc *e, const struct ka_exec *x)
{
	uint32_t i;

	if (x->argc > KA_ARGC_MAX || x->envc > KA_ENVC_MAX || x->nrlimits > KA_RLIMITS_MAX)
		return -EMSGSIZE;
	ka_enc_begin(e, KA_EXEC);
	ka_put_u8(e, x->user);
	ka_put_bytes(e, "\0\0\0", 3);
	ka_put_u32(e, x->argc);
	ka_put_u32(e, x->envc);
	ka_put_u32(e, x->nrlimits);
	ka_put_str(e, x->cwd.p, x->cwd.len);
	for (i = 0; i < x->argc; i++)
		ka_put_str(e, x->argv[i].p, x->argv[i].len);
	for (i = 0; i < x->envc; i++)
		ka_put_str(e, x->env[i].p, x->env[i].len);
	for (i = 0; i < x->nrlimits; i++) {
		ka_put_u32(e, x->rl[i].resource);
		ka_put_u32(e, 0);
		ka_put_u64(e, x->rl[i].cur);
		ka_put_u64(e, x->rl[i].max);
	}
	return ka_enc_end(e);
}

long ka_enc_put(struct ka_enc *e, const struct ka_put *x)
{
	ka_enc_begin(e, KA_PUT);
	ka_put_u64(e, x->size);
	ka_put_u32(e, x->mode);
	ka_put_str(e, x->path.p, x->path.len);
	return ka_enc_end(e);
}

long ka_enc_exit(struct ka_enc *e, const struct ka_exit *x)
{
	ka_enc_begin(e, KA_EXIT);
	ka_put_u8(e, x->kind);
	ka_put_u8(e, x->flags);
	ka_put_u16(e, 0);
	ka_put_u32(e, x->code);
	ka_put_u64(e, x->user_us);
	ka_put_u64(e, x->sys_us);
	ka_put_u64(e, x->maxrss_kb);
	ka_put_u64(e, x->wall_us);
	return ka_enc_end(e);
}

long ka_enc_error(struct ka_enc *e, uint32_t code, const char *msg)
{
	size_t n = strnlen(msg, KA_MSG_MAX);

	ka_enc_begin(e, KA_ERROR);
	ka_put_u32(e, code);
	ka_put_str(e, msg, n);
	return ka_enc_end(e);
}

long ka_enc_data(struct ka_enc *e, uint8_t type, const void *p, size_t n)
{
	ka_enc_begin(e, type);
	ka_put_bytes(e, p, n);
	return ka_enc_end(e);
}

long ka_enc_u32(struct ka_enc *e, uint8_t type, uint32_t v)
{
	ka_enc_begin(e, type);
	ka_put_u32(e, v);
	return ka_enc_end(e);
}
