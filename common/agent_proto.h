/* agent_proto.h: the kiln agent wire protocol (host <-> kiln-init over vsock): pure frame encode/decode. */
#ifndef KILN_AGENT_PROTO_H
#define KILN_AGENT_PROTO_H

/*
 * One definition for both ends: guest/kiln-init.c and the host side (tests/e2e/helpers/
 * agent-client.c, runner/). No OS calls in here, so it is unit-tested and fuzzed anywhere.
 * guest/PROTOCOL.md describes the conversation; this header is the reference for the bytes.
 *
 * Frame: a 12-byte header, then `len` payload bytes. Everything little-endian.
 *   0  u32 magic    KA_MAGIC ("KILN")
 *   4  u8  version  KA_VERSION
 *   5  u8  type     enum ka_type
 *   6  u16 zero     must be 0
 *   8  u32 len      payload bytes, at most ka_type_max_len(type) (never above KA_MAX_PAYLOAD)
 * A string in a payload is a u32 length and that many bytes: no terminator, no NUL inside.
 *
 * Caps (a frame beyond any of them is rejected as malformed):
 *   KA_MAX_PAYLOAD 128 KiB  payload of any frame (EXEC is the only one that can be this big)
 *   KA_CHUNK_MAX    64 KiB  payload of STDIN, STDOUT, STDERR, PUT_DATA, GET_DATA
 *   KA_ARGC_MAX       1024  argv entries (at least 1), KA_ENVC_MAX 1024 env entries
 *   KA_ARG_MAX      32 KiB  one argv or env string; env strings are NAME=VALUE, NAME non-empty
 *   KA_PATH_MAX       4095  bytes of a cwd, PUT or GET path
 *   KA_RLIMITS_MAX      16  rlimit entries, each resource < 16 and at most once, cur <= max
 *   KA_FILE_MAX      1 GiB  size of one PUT or GET file
 *   KA_MSG_MAX        1024  bytes of an ERROR message
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define KA_MAGIC 0x4e4c494bu /* bytes 'K' 'I' 'L' 'N' */
#define KA_VERSION 1u
#define KA_HDR_SIZE 12u
#define KA_PORT 1024u        /* vsock port kiln-init listens on */

#define KA_MAX_PAYLOAD (128u * 1024u)
#define KA_MAX_FRAME (KA_HDR_SIZE + KA_MAX_PAYLOAD)
#define KA_CHUNK_MAX (64u * 1024u)
#define KA_ARGC_MAX 1024u
#define KA_ENVC_MAX 1024u
#define KA_ARG_MAX (32u * 1024u)
#define KA_PATH_MAX 4095u
#define KA_RLIMITS_MAX 16u
#define KA_RLIMIT_RESOURCES 16u /* Linux RLIM_NLIMITS: resources 0..15 */
#define KA_FILE_MAX (1024ull * 1024ull * 1024ull)
#define KA_MSG_MAX 1024u
#define KA_RLIM_INFINITY UINT64_MAX

/* Frame types. 0x0N: host to guest; 0x8N: guest to host. */
enum ka_type {
	KA_EXEC = 0x01,        /* start the command (once per connection) */
	KA_STDIN = 0x02,       /* bytes for the command's stdin (while it runs) */
	KA_STDIN_CLOSE = 0x03, /* empty: close the command's stdin */
	KA_PUT = 0x04,         /* u64 size, u32 mode, str path; then PUT_DATA frames totalling size */
	KA_PUT_DATA = 0x05,    /* bytes of the file being PUT */
	KA_GET = 0x06,         /* str path */
	KA_BYE = 0x07,         /* empty: the host is done; the guest syncs and powers off */
	KA_SIGNAL = 0x08,      /* u32 signal number (1-64) for the running command */

	KA_HELLO = 0x81,       /* u32 version, u32 flags (0): sent once on accept */
	KA_STDOUT = 0x82,      /* bytes the command wrote to stdout */
	KA_STDERR = 0x83,      /* bytes the command wrote to stderr */
	KA_EXIT = 0x84,        /* how the command ended (struct ka_exit) */
	KA_ERROR = 0x85,       /* u32 code, str message */
	KA_PUT_OK = 0x86,      /* empty: the PUT file was written and closed */
	KA_GET_BEGIN = 0x87,   /* u64 size, u32 mode; then GET_DATA frames totalling size */
	KA_GET_DATA = 0x88,    /* bytes of the file being read */
};

/* ERROR codes. KA_ERR_PROTO is fatal (the agent closes the connection after it); the others
 * refuse one request and the conversation goes on. */
enum ka_err {
	KA_ERR_PROTO = 1,      /* malformed frame, or a frame that is not allowed now */
	KA_ERR_PATH = 2,       /* path refused: absolute, '..', empty component, symlink on the way */
	KA_ERR_NOTREG = 3,     /* GET of something that is not a regular file */
	KA_ERR_TOOBIG = 4,     /* file beyond KA_FILE_MAX */
	KA_ERR_IO = 5,         /* open/read/write failed in the guest */
	KA_ERR_EXEC = 6,       /* the command could not be started (pipes, fork) */
	KA_ERR_BUSY = 7,       /* another control connection is active */
};

/* Decode failures (negative errno values), each with one ka_strerror() text. */
#define KA_EBADMAGIC (-EBADMSG)   /* magic mismatch */
#define KA_EVERSION (-EPROTO)     /* unknown version */
#define KA_ETYPE (-ENOMSG)        /* unknown type */
#define KA_ETOOLONG (-EMSGSIZE)   /* payload length beyond the type's cap */
#define KA_ETRUNC (-ENODATA)      /* payload ends inside a field */
#define KA_ETRAIL (-EOVERFLOW)    /* bytes left after the last field */
#define KA_ECOUNT (-E2BIG)        /* argc/envc/rlimit count or a string beyond its cap */
#define KA_EVALUE (-EINVAL)       /* a field has a value that is not allowed */
#define KA_ENUL (-EILSEQ)         /* NUL byte inside a string */

enum ka_user { KA_USER_ROOT = 0, KA_USER_SANDBOX = 1 };
enum ka_exit_kind { KA_EXITED = 0, KA_SIGNALED = 1 };
#define KA_EXIT_F_OOM 1u        /* the guest OOM killer killed a process while the command ran */
#define KA_EXIT_F_CORE 2u       /* the command dumped core */
#define KA_EXIT_F_PIDS 4u       /* a fork or clone of the command failed at its pids.max (--pids) */

struct ka_hdr {
	uint8_t type;
	uint32_t len;
};

/* A string inside a payload buffer (not NUL-terminated, no NUL inside). */
struct ka_str {
	const char *p;
	uint32_t len;
};

struct ka_rlimit {
	uint32_t resource;
	uint64_t cur, max;
};

/* EXEC: u8 user, 3 zero bytes, u32 argc, u32 envc, u32 nrlimits, str cwd (empty: the work
 * directory; relative: under it), argc strs, envc strs, nrlimits x (u32 resource, u32 zero,
 * u64 cur, u64 max). */
struct ka_exec {
	uint8_t user;
	uint32_t argc, envc, nrlimits;
	struct ka_str cwd;
	struct ka_str argv[KA_ARGC_MAX];
	struct ka_str env[KA_ENVC_MAX];
	struct ka_rlimit rl[KA_RLIMITS_MAX];
};

struct ka_put {
	uint64_t size;
	uint32_t mode;        /* permission bits only (<= 0777) */
	struct ka_str path;
};

/* EXIT: u8 kind, u8 flags, u16 zero, u32 code (exit status 0-255 or signal 1-64), u64 user_us,
 * u64 sys_us, u64 maxrss_kb, u64 wall_us: 40 bytes. */
#define KA_EXIT_SIZE 40u
struct ka_exit {
	uint8_t kind, flags;
	uint32_t code;
	uint64_t user_us, sys_us, maxrss_kb, wall_us;
};

struct ka_error {
	uint32_t code;
	struct ka_str msg;
};

struct ka_get_begin {
	uint64_t size;
	uint32_t mode;
};

/* Largest payload a frame of this type may carry; 0 for unknown types and empty frames. */
uint32_t ka_type_max_len(uint8_t type);
/* True for a known type. */
bool ka_type_known(uint8_t type);
/* "EXEC", "STDOUT", ... or "?" */
const char *ka_type_name(uint8_t type);
/* Text for a decode failure (KA_E*), or "?" */
const char *ka_strerror(int err);

/*
 * Decode the header in buf[0..n). n < KA_HDR_SIZE: -EAGAIN (need more). Checks magic, version,
 * the zero field, a known type, and len against the type's cap (exact for fixed-size types).
 * Returns 0 with *h set, or a KA_E* error. After 0, the frame is KA_HDR_SIZE + h->len bytes.
 */
int ka_hdr_decode(const uint8_t *buf, size_t n, struct ka_hdr *h) KILN_WUR;

/* Payload decoders: p/len is exactly one frame's payload. Every field and cap is checked; a
 * string points into p. Return 0 or a KA_E* error (nothing in *out is meaningful then). */
int ka_exec_decode(const uint8_t *p, size_t len, struct ka_exec *out) KILN_WUR;
int ka_put_decode(const uint8_t *p, size_t len, struct ka_put *out) KILN_WUR;
int ka_get_decode(const uint8_t *p, size_t len, struct ka_str *path) KILN_WUR;
int ka_signal_decode(const uint8_t *p, size_t len, uint32_t *signo) KILN_WUR;
int ka_hello_decode(const uint8_t *p, size_t len, uint32_t *version) KILN_WUR;
int ka_exit_decode(const uint8_t *p, size_t len, struct ka_exit *out) KILN_WUR;
int ka_error_decode(const uint8_t *p, size_t len, struct ka_error *out) KILN_WUR;
int ka_get_begin_decode(const uint8_t *p, size_t len, struct ka_get_begin *out) KILN_WUR;

/*
 * Check a PUT/GET path (len bytes, need not be NUL-terminated): 1..KA_PATH_MAX bytes, no NUL,
 * relative, components separated by single '/', none empty, "." or "..", no trailing '/'.
 * Returns 0, or KA_EVALUE / KA_ENUL / KA_ECOUNT with *why (if non-NULL) set to a short reason.
 * Passing it does not make a path safe by itself: the agent also opens each component with
 * O_NOFOLLOW beneath its work directory.
 */
int ka_path_check(const char *p, size_t len, const char **why) KILN_WUR;

/*
 * Encoder: frames are built in a caller's buffer. ka_enc_begin writes a header; the put
 * functions append payload fields; ka_enc_end patches the length and returns the frame size.
 * Any overflow of the buffer or of the type's cap is remembered and ka_enc_end returns
 * -EMSGSIZE (no partial frame is ever meant to be sent). Several frames may be built one after
 * another in the same buffer: ka_enc_begin starts at the current end.
 */
struct ka_enc {
	uint8_t *buf;
	size_t cap, len;  /* buffer size, bytes used */
	size_t start;     /* offset of the frame being built */
	uint8_t type;
	bool bad;
};
void ka_enc_init(struct ka_enc *e, uint8_t *buf, size_t cap);
void ka_enc_begin(struct ka_enc *e, uint8_t type);
void ka_put_u8(struct ka_enc *e, uint8_t v);
void ka_put_u16(struct ka_enc *e, uint16_t v);
void ka_put_u32(struct ka_enc *e, uint32_t v);
void ka_put_u64(struct ka_enc *e, uint64_t v);
void ka_put_bytes(struct ka_enc *e, const void *p, size_t n);
/* u32 length then the bytes */
void ka_put_str(struct ka_enc *e, const char *p, size_t n);
/* Returns the size of the finished frame (header included) or -EMSGSIZE. */
long ka_enc_end(struct ka_enc *e) KILN_WUR;

/* Whole-message helpers (each one frame; same return as ka_enc_end). */
long ka_enc_exec(struct ka_enc *e, const struct ka_exec *x) KILN_WUR;
long ka_enc_put(struct ka_enc *e, const struct ka_put *x) KILN_WUR;
long ka_enc_exit(struct ka_enc *e, const struct ka_exit *x) KILN_WUR;
long ka_enc_error(struct ka_enc *e, uint32_t code, const char *msg) KILN_WUR;
long ka_enc_data(struct ka_enc *e, uint8_t type, const void *p, size_t n) KILN_WUR;
long ka_enc_u32(struct ka_enc *e, uint8_t type, uint32_t v) KILN_WUR;

/*
 * Parse one complete frame from buf[0..n) for tests and fuzzing: header, then the payload
 * decoder of its type (data and empty types need no decoder). Returns the frame size, -EAGAIN
 * when n is short of a complete frame, or a KA_E* error.
 */
long ka_frame_check(const uint8_t *buf, size_t n, struct ka_exec *scratch) KILN_WUR;

#endif
