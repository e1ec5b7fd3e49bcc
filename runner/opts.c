/* opts.c: `kiln run` option parsing: sizes, durations, every option checked against its range. */
#include "opts.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "agent_proto.h"

/* Leading decimal digits of s into *v; returns the number of digits, or -1 on overflow/none. */
static int digits(const char *s, uint64_t *v)
{
	int n = 0;

	*v = 0;
	while (s[n] >= '0' && s[n] <= '9') {
		if (!mul_u64(*v, 10, v) || !add_u64(*v, (uint64_t)(s[n] - '0'), v))
			return -1;
		n++;
		if (n > 20)
			return -1;
	}
	return n ? n : -1;
}

int run_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v, mult = 1;
	int n;
	const char *u;

	if (!s || !*s)
		return -EINVAL;
	n = digits(s, &v);
	if (n < 0)
		return s[0] >= '0' && s[0] <= '9' ? -ERANGE : -EINVAL;
	u = s + n;
	if (*u) {
		switch (*u) {
		case 'k': case 'K': mult = 1ull << 10; break;
		case 'm': case 'M': mult = 1ull << 20; break;
		case 'g': case 'G': mult = 1ull << 30; break;
		case 't': case 'T': mult = 1ull << 40; break;
		default: return -EINVAL;
		}
		u++;
		if (strcmp(u, "") != 0 && strcmp(u, "B") != 0 && strcmp(u, "iB") != 0)
			return -EINVAL;
	}
	if (!mul_u64(v, mult, &v))
		return -ERANGE;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int run_parse_time_ms(const char *s, uint64_t min_ms, uint64_t max_ms, uint64_t *out)
{
	uint64_t v, mult;
	int n;
	const char *u;

	if (!s || !*s)
		return -EINVAL;
	n = digits(s, &v);
	if (n < 0)
		return s[0] >= '0' && s[0] <= '9' ? -ERANGE : -EINVAL;
	u = s + n;
	if (strcmp(u, "") == 0 || strcmp(u, "s") == 0)
		mult = 1000;
	else if (strcmp(u, "ms") == 0)
		mult = 1;
	else if (strcmp(u, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(u, "h") == 0)
		mult = 3600 * 1000;
	else
		return -EINVAL;
	if (!mul_u64(v, mult, &v))
		return -ERANGE;
	if (v < min_ms || v > max_ms)
		return -ERANGE;
	*out = v;
	return 0;
}

/* An option's value quoted in a message: 256 characters at most, '?' for control bytes. */
#define QUOTE_LEN 260
#define Q(s, buf) kiln_printable((s), (buf), sizeof(buf))

static const char *size_text(uint64_t v, char *buf, size_t n)
{
	if (v && v % (1ull << 30) == 0)
		snprintf(buf, n, "%lluG", (unsigned long long)(v >> 30));
	else if (v && v % (1ull << 20) == 0)
		snprintf(buf, n, "%lluM", (unsigned long long)(v >> 20));
	else if (v && v % (1ull << 10) == 0)
		snprintf(buf, n, "%lluK", (unsigned long long)(v >> 10));
	else
		snprintf(buf, n, "%llu", (unsigned long long)v);
	return buf;
}

static int opt_size(const char *name, const char *arg, uint64_t min, uint64_t max, uint64_t *out,
		    char *err, size_t errlen)
{
	char a[32], b[32], q[QUOTE_LEN];
	int r = run_parse_size(arg, min, max, out);

	if (r == -EINVAL)
		return kiln_refuse(err, errlen, "%s %s: not a size (digits and an optional K, M, G or T suffix)", name,
				   Q(arg, q));
	if (r < 0)
		return kiln_refuse(err, errlen, "%s %s: out of range (%s..%s)", name, Q(arg, q),
				   size_text(min, a, sizeof(a)), size_text(max, b, sizeof(b)));
	return 0;
}

static const char *time_text(uint64_t ms, char *buf, size_t n)
{
	if (ms % 3600000 == 0)
		snprintf(buf, n, "%lluh", (unsigned long long)(ms / 3600000));
	else if (ms % 1000 == 0)
		snprintf(buf, n, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, n, "%llums", (unsigned long long)ms);
	return buf;
}

static int opt_time(const char *name, const char *arg, uint64_t min, uint64_t max, uint64_t *out,
		    char *err, size_t errlen)
{
	char a[32], b[32], q[QUOTE_LEN];
	int r = run_parse_time_ms(arg, min, max, out);

	if (r == -EINVAL)
		return kiln_refuse(err, errlen, "%s %s: not a duration (digits and a unit: ms, s, m or h)", name,
				   Q(arg, q));
	if (r < 0)
		return kiln_refuse(err, errlen, "%s %s: out of range (%s..%s)", name, Q(arg, q),
				   time_text(min, a, sizeof(a)), time_text(max, b, sizeof(b)));
	return 0;
}

/* NAME=VALUE with NAME from [A-Za-z_][A-Za-z0-9_]*. */
static bool env_ok(const char *s)
{
	size_t i;

	if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (i = 1; s[i] && s[i] != '='; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || s[i] == '_' ||
		      (s[i] >= '0' && s[i] <= '9')))
			return false;
	return s[i] == '=';
}

/* Split "A:B" at the first (put: last) ':' into x->buf; checks both halves. */
static int opt_xfer(const char *name, const char *arg, bool put, struct run_xfer *x, char *err,
		    size_t errlen)
{
	const char *colon = put ? strrchr(arg, ':') : strchr(arg, ':');
	const char *guest, *why = NULL;
	size_t len = strlen(arg);
	char q[QUOTE_LEN], g[QUOTE_LEN];

	if (!colon || colon == arg || !colon[1])
		return kiln_refuse(err, errlen, "%s %s: expected %s", name, Q(arg, q),
				   put ? "HOST:GUEST" : "GUEST:HOST");
	if (len >= sizeof(x->buf))
		return kiln_refuse(err, errlen, "%s: argument too long", name);
	memcpy(x->buf, arg, len + 1);
	x->buf[colon - arg] = 0;
	if (put) {
		x->host = x->buf;
		x->guest = x->buf + (colon - arg) + 1;
	} else {
		x->guest = x->buf;
		x->host = x->buf + (colon - arg) + 1;
	}
	guest = x->guest;
	if (ka_path_check(guest, strlen(guest), &why) != 0)
		return kiln_refuse(err, errlen, "%s %s: guest path %s refused: %s (a relative path under /work)", name,
				   Q(arg, q), Q(guest, g), why ? why : "invalid");
	if (strlen(x->host) > 4095)
		return kiln_refuse(err, errlen, "%s: host path too long", name);
	return 0;
}

/* An image NAME: 1-32 characters from [a-z0-9-]; anything with a '/' is a path. */
static int opt_image(const char *arg, struct run_opts *o, char *err, size_t errlen)
{
	size_t i, n = strlen(arg);
	char q[QUOTE_LEN];

	o->image = arg;
	o->image_is_path = strchr(arg, '/') != NULL;
	if (o->image_is_path)
		return n <= 4095 ? 0 : kiln_refuse(err, errlen, "--image: path too long");
	if (n == 0 || n > 32)
		return kiln_refuse(err, errlen, "--image %s: a NAME has 1-32 characters from [a-z0-9-] "
				   "(a path needs a '/')", Q(arg, q));
	for (i = 0; i < n; i++)
		if (!((arg[i] >= 'a' && arg[i] <= 'z') || (arg[i] >= '0' && arg[i] <= '9') || arg[i] == '-'))
			return kiln_refuse(err, errlen, "--image %s: a NAME has 1-32 characters from [a-z0-9-] "
					   "(a path needs a '/')", Q(arg, q));
	return 0;
}

uint64_t run_exec_payload_size(const struct run_opts *o)
{
	uint64_t n = 16 + 4 + (o->cwd ? strlen(o->cwd) : 0) + 3 * 24; /* fixed, cwd, rlimits */
	int i;

	for (i = 0; i < o->argc; i++)
		n += 4 + strlen(o->argv[i]);
	for (uint32_t k = 0; k < o->nenv; k++)
		n += 4 + strlen(o->env[k]);
	return n;
}

int run_opts_parse(int argc, char **argv, struct run_opts *o, char *err, size_t errlen)
{
	enum { O_MEM = 256, O_VCPUS, O_TIMEOUT, O_CPU, O_PIDS, O_OUT, O_DISK, O_ENV, O_CWD, O_USER,
	       O_PUT, O_GET, O_IMAGE, O_KERNEL, O_JSON, O_RFD, O_NOJAIL, O_HELP };
	static const struct option lopts[] = {
		{ "mem", required_argument, NULL, O_MEM },
		{ "vcpus", required_argument, NULL, O_VCPUS },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "cpu-time", required_argument, NULL, O_CPU },
		{ "pids", required_argument, NULL, O_PIDS },
		{ "output-max", required_argument, NULL, O_OUT },
		{ "disk", required_argument, NULL, O_DISK },
		{ "env", required_argument, NULL, O_ENV },
		{ "cwd", required_argument, NULL, O_CWD },
		{ "user", required_argument, NULL, O_USER },
		{ "put", required_argument, NULL, O_PUT },
		{ "get", required_argument, NULL, O_GET },
		{ "image", required_argument, NULL, O_IMAGE },
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "json", no_argument, NULL, O_JSON },
		{ "result-fd", required_argument, NULL, O_RFD },
		{ "no-jail", no_argument, NULL, O_NOJAIL },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	bool seen[O_HELP + 1 - O_MEM] = { false };
	char q[QUOTE_LEN];
	uint64_t v;
	int c, r;

	memset(o, 0, sizeof(*o));
	o->mem = RUN_MEM_DEF;
	o->vcpus = 1;
	o->timeout_ms = RUN_TIMEOUT_DEF_MS;
	o->pids = RUN_PIDS_DEF;
	o->output_max = RUN_OUT_DEF;
	o->disk = RUN_DISK_DEF;
	o->user = RUN_USER_SANDBOX;
	o->result_fd = -1;
	err[0] = 0;

	optind = 0; /* full reinitialisation (glibc), so the parse can run more than once */
	opterr = 0;
	int idx = -1;

	while ((c = getopt_long(argc, argv, "+:h", lopts, &idx)) != -1) {
		if (c >= O_MEM && c <= O_HELP && c != O_ENV && c != O_PUT && c != O_GET) {
			if (seen[c - O_MEM])
				return kiln_refuse(err, errlen, "--%s given twice", lopts[c - O_MEM].name);
			seen[c - O_MEM] = true;
		}
		idx = -1;
		switch (c) {
		case O_MEM:
			if ((r = opt_size("--mem", optarg, RUN_MEM_MIN, RUN_MEM_MAX, &o->mem, err, errlen)))
				return r;
			if (o->mem % (1ull << 20))
				return kiln_refuse(err, errlen, "--mem %s: not a whole number of MiB", Q(optarg, q));
			break;
		case O_VCPUS:
			if (parse_u64(optarg, 1, RUN_VCPUS_MAX, &v) < 0)
				return kiln_refuse(err, errlen, "--vcpus %s: expected a number in 1..%u", Q(optarg, q),
						   RUN_VCPUS_MAX);
			o->vcpus = (uint32_t)v;
			break;
		case O_TIMEOUT:
			if ((r = opt_time("--timeout", optarg, RUN_TIMEOUT_MIN_MS, RUN_TIMEOUT_MAX_MS,
					  &o->timeout_ms, err, errlen)))
				return r;
			break;
		case O_CPU:
			if ((r = opt_time("--cpu-time", optarg, RUN_CPU_MIN_MS, RUN_CPU_MAX_MS, &o->cpu_ms,
					  err, errlen)))
				return r;
			if (o->cpu_ms % 1000)
				return kiln_refuse(err, errlen, "--cpu-time %s: not a whole number of seconds",
						   Q(optarg, q));
			break;
		case O_PIDS:
			if (parse_u64(optarg, 1, RUN_PIDS_MAX, &v) < 0)
				return kiln_refuse(err, errlen, "--pids %s: expected a number in 1..%u", Q(optarg, q),
						   RUN_PIDS_MAX);
			o->pids = (uint32_t)v;
			break;
		case O_OUT:
			if ((r = opt_size("--output-max", optarg, 0, RUN_OUT_MAX, &o->output_max, err, errlen)))
				return r;
			break;
		case O_DISK:
			if ((r = opt_size("--disk", optarg, RUN_DISK_MIN, RUN_DISK_MAX, &o->disk, err, errlen)))
				return r;
			if (o->disk % 4096)
				return kiln_refuse(err, errlen, "--disk %s: not a multiple of 4K", Q(optarg, q));
			break;
		case O_ENV:
			if (o->nenv >= RUN_ENV_MAX)
				return kiln_refuse(err, errlen, "--env: at most %u variables", RUN_ENV_MAX);
			if (!env_ok(optarg))
				return kiln_refuse(err, errlen, "--env %s: expected NAME=VALUE, NAME from [A-Za-z0-9_] "
						   "not starting with a digit", Q(optarg, q));
			if (strlen(optarg) > KA_ARG_MAX)
				return kiln_refuse(err, errlen, "--env: a variable is longer than %u bytes",
						   KA_ARG_MAX);
			o->env[o->nenv++] = optarg;
			break;
		case O_CWD:
			if (!*optarg || strlen(optarg) > KA_PATH_MAX)
				return kiln_refuse(err, errlen, "--cwd: expected a path of 1..%u bytes", KA_PATH_MAX);
			o->cwd = optarg;
			break;
		case O_USER:
			if (strcmp(optarg, "root") == 0)
				o->user = RUN_USER_ROOT;
			else if (strcmp(optarg, "sandbox") == 0)
				o->user = RUN_USER_SANDBOX;
			else
				return kiln_refuse(err, errlen, "--user %s: expected root or sandbox", Q(optarg, q));
			break;
		case O_PUT:
			if (o->nput >= RUN_FILES_MAX)
				return kiln_refuse(err, errlen, "--put: at most %u files", RUN_FILES_MAX);
			if ((r = opt_xfer("--put", optarg, true, &o->put[o->nput], err, errlen)))
				return r;
			o->nput++;
			break;
		case O_GET:
			if (o->nget >= RUN_FILES_MAX)
				return kiln_refuse(err, errlen, "--get: at most %u files", RUN_FILES_MAX);
			if ((r = opt_xfer("--get", optarg, false, &o->get[o->nget], err, errlen)))
				return r;
			o->nget++;
			break;
		case O_IMAGE:
			if ((r = opt_image(optarg, o, err, errlen)))
				return r;
			break;
		case O_KERNEL:
			if (!*optarg || strlen(optarg) > 4095)
				return kiln_refuse(err, errlen, "--kernel: expected a path");
			o->kernel = optarg;
			break;
		case O_JSON:
			o->json = true;
			break;
		case O_RFD:
			if (parse_u64(optarg, 1, 65535, &v) < 0)
				return kiln_refuse(err, errlen,
						   "--result-fd %s: expected a descriptor number in 1..65535",
						   Q(optarg, q));
			o->result_fd = (int)v;
			break;
		case O_NOJAIL:
			o->no_jail = true;
			break;
		case 'h':
		case O_HELP:
			return 1;
		case ':':
			return kiln_refuse(err, errlen, "%s needs a value", kiln_bad_option(argc, argv, q, sizeof(q)));
		default:
			return kiln_refuse(err, errlen, "unknown option %s", kiln_bad_option(argc, argv, q, sizeof(q)));
		}
	}
	if (o->json && o->result_fd >= 0)
		return kiln_refuse(err, errlen, "--json and --result-fd: give one of them");
	if (optind >= argc)
		return kiln_refuse(err, errlen, "no command given (kiln run [options] -- CMD [ARGS...])");
	o->argv = argv + optind;
	o->argc = argc - optind;
	if ((unsigned)o->argc > KA_ARGC_MAX)
		return kiln_refuse(err, errlen, "the command has more than %u arguments", KA_ARGC_MAX);
	if (!o->argv[0][0])
		return kiln_refuse(err, errlen, "the command name is empty");
	for (int i = 0; i < o->argc; i++)
		if (strlen(o->argv[i]) > KA_ARG_MAX)
			return kiln_refuse(err, errlen, "argument %d is longer than %u bytes", i, KA_ARG_MAX);
	if (run_exec_payload_size(o) > KA_MAX_PAYLOAD)
		return kiln_refuse(err, errlen, "command, environment and --cwd together exceed %u bytes",
				   KA_MAX_PAYLOAD);
	return 0;
}
