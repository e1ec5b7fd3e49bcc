/* opts.h: `kiln run` options: size/time parsing and the whole option parse, pure (no OS calls). */
#ifndef KILN_RUNNER_OPTS_H
#define KILN_RUNNER_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Limits of each option (inclusive) and defaults; the README and --help print the same. */
#define RUN_MEM_MIN (32ull << 20)
#define RUN_MEM_MAX (16ull << 30)
#define RUN_MEM_DEF (256ull << 20)
#define RUN_VCPUS_MAX 32u
#define RUN_TIMEOUT_MIN_MS 100ull
#define RUN_TIMEOUT_MAX_MS (24ull * 3600 * 1000)
#define RUN_TIMEOUT_DEF_MS (60ull * 1000)
#define RUN_CPU_MIN_MS 1000ull
#define RUN_CPU_MAX_MS (24ull * 3600 * 1000)
#define RUN_PIDS_MAX 65536u
#define RUN_PIDS_DEF 1024u
#define RUN_OUT_MAX (1ull << 30)
#define RUN_OUT_DEF (16ull << 20)
#define RUN_DISK_MIN (16ull << 20)
#define RUN_DISK_MAX (64ull << 30)
#define RUN_DISK_DEF (256ull << 20)
#define RUN_ENV_MAX 256u
#define RUN_FILES_MAX 16u   /* --put and --get, each */

enum run_user { RUN_USER_SANDBOX = 0, RUN_USER_ROOT = 1 };

struct run_xfer {
	const char *host;   /* host path (points into argv) */
	const char *guest;  /* guest path relative to /work, checked by ka_path_check */
	char buf[4096 + 4096 + 2]; /* split copy of the argument */
};

struct run_opts {
	uint64_t mem;          /* bytes, a multiple of 1 MiB */
	uint32_t vcpus;
	uint64_t timeout_ms;   /* wall clock of the command */
	uint64_t cpu_ms;       /* CPU time of the command, whole seconds; 0: no limit but the wall one */
	uint32_t pids;         /* processes of the command: pids.max in the guest and RLIMIT_NPROC */
	uint64_t output_max;   /* bytes per stream */
	uint64_t disk;         /* scratch disk bytes, a multiple of 4 KiB */
	const char *env[RUN_ENV_MAX];
	uint32_t nenv;
	const char *cwd;       /* NULL: /work */
	enum run_user user;
	struct run_xfer put[RUN_FILES_MAX];
	uint32_t nput;
	struct run_xfer get[RUN_FILES_MAX];
	uint32_t nget;
	const char *image;     /* NULL: "default" */
	bool image_is_path;
	const char *kernel;    /* NULL: the default kernel */
	bool json;
	int result_fd;         /* -1: none */
	bool no_jail;
	char **argv;           /* the command; argc >= 1 */
	int argc;
};

/*
 * Parse a size: decimal digits and an optional binary suffix K, M, G or T (any case, optionally
 * followed by "iB" or "B"): "4096", "256M", "1GiB". No sign, spaces, fractions or overflow.
 * The value must lie in [min, max]. Returns 0, -EINVAL (malformed) or -ERANGE (out of range).
 */
int run_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out) KILN_WUR;

/*
 * Parse a duration into milliseconds: decimal digits and a unit ms, s, m or h; a bare number is
 * seconds ("10s", "1500ms", "2m", "30"). Same rejections as run_parse_size, range in ms.
 */
int run_parse_time_ms(const char *s, uint64_t min_ms, uint64_t max_ms, uint64_t *out) KILN_WUR;

/*
 * Parse `kiln run` arguments: argv[0] is "run", options, then "--" (or the first non-option)
 * and the command. On success returns 0 with *o filled (pointers into argv); 1 for --help;
 * otherwise -EINVAL with one message in err (no trailing newline). Every value is checked
 * against its range; nothing is ever clamped. Not reentrant (getopt).
 */
int run_opts_parse(int argc, char **argv, struct run_opts *o, char *err, size_t errlen) KILN_WUR;

/* Bytes the EXEC frame's payload needs for these options (argv, env, cwd, rlimits). */
uint64_t run_exec_payload_size(const struct run_opts *o);

#endif
