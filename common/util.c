/* util.c: logging and parsing helpers shared by every kiln binary. */
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *progname = "kiln";

void kiln_set_progname(const char *name)
{
	progname = name;
}

static void vwarn(int err, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	kiln_one_line(msg);
	if (err)
		fprintf(stderr, "%s: %s: %s\n", progname, msg, strerror(err));
	else
		fprintf(stderr, "%s: %s\n", progname, msg);
}

void kiln_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vwarn(0, fmt, ap);
	va_end(ap);
	errno = saved;
}

void kiln_warn_errno(int err, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vwarn(err, fmt, ap);
	va_end(ap);
	errno = saved;
}

void kiln_die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(0, fmt, ap);
	va_end(ap);
	exit(code);
}

int kiln_refuse(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void kiln_one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

const char *kiln_printable(const char *s, char *buf, size_t len)
{
	size_t i = 0;

	for (; s[i] && i + 4 < len; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i]) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

const char *kiln_bad_option(int argc, char *const argv[], char *buf, size_t len)
{
	char one[3] = { '-', (char)optopt, '\0' };

	if (optopt > 0 && optopt < 256)
		return kiln_printable(one, buf, len);
	if (optind > 0 && optind <= argc && argv[optind - 1])
		return kiln_printable(argv[optind - 1], buf, len);
	return kiln_printable("?", buf, len);
}

size_t kiln_utf8_seq(const unsigned char *s, size_t n, bool *valid)
{
	unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
	size_t need, k;

	*valid = false;
	if (s[0] < 0x80) {
		*valid = true;
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		need = 1;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		need = 2;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		need = 3;
	else
		return 1; /* a continuation byte, C0, C1 or F5..FF */
	if (s[0] == 0xe0)
		lo = 0xa0; /* overlong */
	else if (s[0] == 0xed)
		hi = 0x9f; /* surrogates */
	else if (s[0] == 0xf0)
		lo = 0x90; /* overlong */
	else if (s[0] == 0xf4)
		hi = 0x8f; /* above U+10FFFF */
	for (k = 1; k <= need; k++) {
		if (k >= n || s[k] < (k == 1 ? lo : 0x80) || s[k] > (k == 1 ? hi : 0xbf))
			return k;
	}
	*valid = true;
	return need + 1;
}

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (!mul_u64(v, 10, &v) || !add_u64(v, (uint64_t)(*p - '0'), &v))
			return -ERANGE;
	}
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}
