/* util.h: small helpers shared by every kiln module: logging, attributes, checked arithmetic. */
#ifndef KILN_UTIL_H
#define KILN_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KILN_WUR __attribute__((warn_unused_result))
#define KILN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Program name used as the prefix of every message ("kiln-vmm"). */
void kiln_set_progname(const char *name);

/* One line on stderr: "PROG: message". Saves and restores errno. */
void kiln_warn(const char *fmt, ...) KILN_PRINTF(1, 2);
/* Same, with ": strerror(err)" appended; err is a positive errno value. */
void kiln_warn_errno(int err, const char *fmt, ...) KILN_PRINTF(2, 3);
/* Print one line and exit with status code. Only for main() and the jailer's apply step. */
_Noreturn void kiln_die(int code, const char *fmt, ...) KILN_PRINTF(2, 3);
/*
 * The three above print exactly one line: every control byte (below 0x20, and 0x7f) that a
 * message carries, from a path or an argument someone typed, is printed as '?'.
 */
void kiln_one_line(char *s);

/* Format a refusal into err (len bytes, one line, no program prefix) for the caller to print. Returns -EINVAL. */
int kiln_refuse(char *err, size_t len, const char *fmt, ...) KILN_PRINTF(3, 4);

/*
 * An untrusted string, quoted in a message: at most len - 4 bytes of s copied into buf, '?' for
 * every byte outside printable ASCII, "..." appended when s was longer. len >= 5. Returns buf.
 */
const char *kiln_printable(const char *s, char *buf, size_t len);

/*
 * The option getopt_long() has just refused (it returned '?' or ':'), for a message: "-x" for a
 * short option (every long option of kiln's parsers has a value of 256 or more), else the
 * argument itself, through kiln_printable.
 */
const char *kiln_bad_option(int argc, char *const argv[], char *buf, size_t len);

/* Overflow-checked helpers: return false (and leave *out unspecified) on overflow. */
static inline KILN_WUR bool add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_add_overflow(a, b, out);
}
static inline KILN_WUR bool mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}
/* True when [off, off+len) lies inside [0, size), overflow-safe. */
static inline KILN_WUR bool range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	uint64_t end;
	return add_u64(off, len, &end) && end <= size;
}

/*
 * The UTF-8 sequence at s (n > 0 bytes available): returns its length (1-4) and sets *valid, or,
 * when s does not start a well-formed sequence (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), clears *valid and returns the length of its maximal ill-formed
 * subpart (at least 1), the bytes one U+FFFD replaces (Unicode 15, 3.9; what Python's "replace" does).
 */
size_t kiln_utf8_seq(const unsigned char *s, size_t n, bool *valid);

/* Parse a decimal unsigned integer in [min, max]; whole string, no sign, no spaces. 0 or -EINVAL/-ERANGE. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) KILN_WUR;

/* Little-endian loads from a byte buffer (no alignment needed). */
static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ld32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32); }
static inline void st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void st32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void st64(uint8_t *p, uint64_t v) { st32(p, (uint32_t)v); st32(p + 4, (uint32_t)(v >> 32)); }

#endif
