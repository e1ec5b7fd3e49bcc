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
