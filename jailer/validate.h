/* validate.h: kiln-jailer's side-effect-free half: argument parsing and every value/path check. */
#ifndef KILN_JAILER_VALIDATE_H
#define KILN_JAILER_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "util.h"

#define JAIL_ID_MAX 64           /* --id: [A-Za-z0-9-]{1,64} */
#define JAIL_NAME_MAX 64         /* one path component we create: [A-Za-z0-9._-]{1,64} */
#define JAIL_CGROUP_DEPTH_MAX 8  /* components in --parent-cgroup */
#define JAIL_MAX_RESOURCES 16
#define JAIL_MAX_CGROUP 6
#define JAIL_MAX_RLIMITS 8
#define JAIL_MAX_KEEP_FDS 16
#define JAIL_MAX_ENV 16
#define JAIL_DEFAULT_BASE "/srv/kiln"
#define JAIL_DEFAULT_CGROUP "kiln"
#define JAIL_DEFAULT_NOFILE 2048
#define JAIL_ERR_MAX 256

enum jail_res_mode { JAIL_RES_RO, JAIL_RES_RW };

/* A host file or directory made visible at /<name> inside the jail. */
struct jail_resource {
	const char *path;  /* absolute host path, as given */
	const char *name;  /* its last component: the name inside the jail */
	enum jail_res_mode mode;
};

struct jail_cgroup_setting {
	const char *file;  /* one of the allowlisted interface files */
	const char *value; /* already checked by jail_check_cgroup() */
};

struct jail_rlimit {
	int resource;      /* RLIMIT_* */
	uint64_t value;    /* soft = hard = value; UINT64_MAX means unlimited */
};

struct jail_config {
	bool help;
	bool cleanup;                 /* --cleanup: remove a finished VM's jail and cgroup */
	const char *id;
	const char *exec_file;
	const char *exec_name;        /* last component of exec_file */
	uint32_t uid, gid;
	bool have_uid, have_gid;
	const char *chroot_base;      /* default JAIL_DEFAULT_BASE */
	const char *parent_cgroup;    /* default JAIL_DEFAULT_CGROUP, relative to the cgroup2 root */
	bool no_cgroup;
	bool userns;                  /* new user namespace mapping uid/gid 1:1; allows running without root */
	const char *netns;            /* join this network namespace instead of a new, empty one */
	const char *exec_cache;       /* keep one sealed exec copy here and bind it into each jail */
	struct jail_resource res[JAIL_MAX_RESOURCES];
	size_t nres;
	struct jail_cgroup_setting cg[JAIL_MAX_CGROUP];
	size_t ncg;
	struct jail_rlimit rl[JAIL_MAX_RLIMITS];
	size_t nrl;
	int keep_fds[JAIL_MAX_KEEP_FDS];
	size_t nkeep;
	const char *env[JAIL_MAX_ENV]; /* NAME=VALUE, names checked by jail_check_env() */
	size_t nenv;
	char *const *vmm_argv;        /* arguments after "--" (argv[0] of the VMM is added by the jailer) */
	size_t vmm_argc;
};

/*
 * Parse kiln-jailer's command line into cfg (which it zeroes first) and check every value.
 * Pure: touches nothing but cfg and err. cfg keeps pointers into argv.
 * Returns 0, or -EINVAL with a one-line reason in err (no program prefix).
 * Defaults applied: chroot base, parent cgroup, RLIMIT_NOFILE 2048 and RLIMIT_CORE 0
 * unless given explicitly.
 */
int jail_parse_args(int argc, char *const argv[], struct jail_config *cfg, char *err, size_t errlen) KILN_WUR;

/* --id: 1 to 64 characters from [A-Za-z0-9-]. */
bool jail_valid_id(const char *id) KILN_WUR;
/* One path component the jailer creates: 1 to 64 from [A-Za-z0-9._-], not "." or "..". */
bool jail_valid_name(const char *name) KILN_WUR;
/* uid/gid: decimal, 1 .. 4294967294 (0 is root, 4294967295 is (uid_t)-1). 0 or -EINVAL/-ERANGE. */
int jail_parse_id_number(const char *s, uint32_t *out) KILN_WUR;
/* Absolute path, no empty, "." or ".." component, no trailing "/", shorter than PATH_MAX. */
bool jail_valid_abs_path(const char *path) KILN_WUR;
/* Relative cgroup path of 1..8 components, each a jail_valid_name(). */
bool jail_valid_cgroup_path(const char *path) KILN_WUR;
/* Last component of a path (pointer into path). */
const char *jail_basename(const char *path);

/*
 * Check "FILE" and "VALUE" for --cgroup FILE=VALUE against the allowlist
 * (memory.max, memory.swap.max, cpu.max, pids.max, cpuset.cpus, io.max) and each file's range.
 * Returns 0, -EPERM for a file outside the allowlist, -EINVAL/-ERANGE for a bad value.
 */
int jail_check_cgroup(const char *file, const char *value) KILN_WUR;
/* The controller a cgroup interface file belongs to ("memory" for memory.max), into buf. */
int jail_cgroup_controller(const char *file, char *buf, size_t len) KILN_WUR;

/* --resource-limit NAME=VALUE: no-file, fsize, core, nproc, memlock, as; VALUE decimal or "unlimited". */
int jail_parse_rlimit(const char *spec, struct jail_rlimit *out) KILN_WUR;

/* --env NAME=VALUE: NAME is TERM or KILN_[A-Z0-9_]*, at most 64 characters; VALUE printable, ≤ 1024. */
bool jail_check_env(const char *spec) KILN_WUR;

/*
 * The exec file as fstat() saw it: a regular file, owned by root (or by caller, the uid running
 * the jailer; pass 0 when that is root), not setuid/setgid, not writable by group or others,
 * exactly one link. 0 or -EINVAL with the reason in err.
 */
int jail_check_exec_stat(const struct stat *st, uint32_t caller, char *err, size_t errlen) KILN_WUR;
/*
 * The first bytes of the exec file (at least the ELF header and program headers; buf holds len
 * bytes from offset 0): an x86-64 ELF executable (ET_EXEC or ET_DYN) with no PT_INTERP, that is
 * statically linked, since the jail holds no libraries. 0 or -EINVAL with the reason in err.
 */
#define JAIL_ELF_PEEK 4096
int jail_check_elf(const uint8_t *buf, size_t len, char *err, size_t errlen) KILN_WUR;
/* A resource: a regular file (one link, not setuid/setgid) or a directory. 0 or -EINVAL. */
int jail_check_resource_stat(const struct stat *st, char *err, size_t errlen) KILN_WUR;
/*
 * A directory on the way to or inside the chroot base that already exists: owned by root (or
 * by caller, as above), and if group- or other-writable then sticky (like /tmp). 0 or -EINVAL.
 */
int jail_check_dir_stat(const struct stat *st, uint32_t caller, char *err, size_t errlen) KILN_WUR;

#endif
