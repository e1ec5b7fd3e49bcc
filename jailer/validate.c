/* validate.c: kiln-jailer's argument parsing and value/path checks. No OS side effects. */
#include "validate.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static bool in_set(char c, const char *extra)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr(extra, c));
}

bool jail_valid_id(const char *id)
{
	size_t n = 0;
	for (; id[n]; n++)
		if (n >= JAIL_ID_MAX || !in_set(id[n], "-"))
			return false;
	return n > 0;
}

bool jail_valid_name(const char *name)
{
	size_t n = 0;
	for (; name[n]; n++)
		if (n >= JAIL_NAME_MAX || !in_set(name[n], "._-"))
			return false;
	return n > 0 && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

int jail_parse_id_number(const char *s, uint32_t *out)
{
	uint64_t v;
	int r = parse_u64(s, 1, UINT32_MAX - 1, &v);
	if (r < 0)
		return r;
	*out = (uint32_t)v;
	return 0;
}

bool jail_valid_abs_path(const char *path)
{
	size_t len = strlen(path);
	if (len < 2 || len >= PATH_MAX || path[0] != '/' || path[len - 1] == '/')
		return false;
	for (const char *p = path + 1;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (!e)
			return true;
		p = e + 1;
	}
}

bool jail_valid_cgroup_path(const char *path)
{
	char comp[JAIL_NAME_MAX + 1];
	unsigned depth = 0;
	for (const char *p = path;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0 || n > JAIL_NAME_MAX || ++depth > JAIL_CGROUP_DEPTH_MAX)
			return false;
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (!jail_valid_name(comp))
			return false;
		if (!e)
			return true;
		p = e + 1;
	}
}

const char *jail_basename(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* ---- cgroup values ------------------------------------------------------- */

/* Decimal number, whole string; 0, -EINVAL or -ERANGE (also for out of [min, max]). */
static int num(const char *s, size_t n, uint64_t min, uint64_t max, uint64_t *out)
{
	char buf[32];
	if (n == 0 || n >= sizeof(buf))
		return n == 0 ? -EINVAL : -ERANGE;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return parse_u64(buf, min, max, out);
}

/* "max" or bytes with an optional K/M/G/T suffix (as the kernel's memparse). */
static int check_bytes(const char *v, uint64_t min, uint64_t max)
{
	uint64_t n, mult = 1;
	size_t len = strlen(v);
	if (strcmp(v, "max") == 0)
		return 0;
	if (len > 0) {
		switch (v[len - 1]) {
		case 'k': case 'K': mult = 1ull << 10; break;
		case 'm': case 'M': mult = 1ull << 20; break;
		case 'g': case 'G': mult = 1ull << 30; break;
		case 't': case 'T': mult = 1ull << 40; break;
		default: break;
		}
	}
	int r = num(v, mult == 1 ? len : len - 1, 0, UINT64_MAX, &n);
	if (r < 0)
		return r;
	if (!mul_u64(n, mult, &n) || n < min || n > max)
		return -ERANGE;
	return 0;
}

static int check_cpu_max(const char *v)
{
	const char *sp = strchr(v, ' ');
	size_t qlen = sp ? (size_t)(sp - v) : strlen(v);
	uint64_t x;
	int r;
	if (!(qlen == 3 && memcmp(v, "max", 3) == 0)) {
		r = num(v, qlen, 1000, 1ull << 40, &x);
		if (r < 0)
			return r;
	}
	if (!sp)
		return 0;
	return num(sp + 1, strlen(sp + 1), 1000, 1000000, &x);
}

static int check_cpus(const char *v)
{
	size_t len = strlen(v);
	if (len == 0)
		return -EINVAL;
	if (len > 256)
		return -ERANGE;
	for (const char *p = v;;) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		const char *dash = memchr(p, '-', n);
		uint64_t lo, hi;
		int r = num(p, dash ? (size_t)(dash - p) : n, 0, 8191, &lo);
		if (r < 0)
			return r;
		hi = lo;
		if (dash && (r = num(dash + 1, n - (size_t)(dash + 1 - p), 0, 8191, &hi)) < 0)
			return r;
		if (hi < lo)
			return -EINVAL;
		if (!e)
			return 0;
		p = e + 1;
	}
}

static int check_io_max(const char *v)
{
	static const char *const keys[] = { "rbps", "wbps", "riops", "wiops" };
	bool seen[4] = { false };
	const char *colon = strchr(v, ':'), *sp = strchr(v, ' ');
	uint64_t x;
	int r, nkeys = 0;
	if (!colon || !sp || colon > sp)
		return -EINVAL;
	if ((r = num(v, (size_t)(colon - v), 0, 4095, &x)) < 0 ||
	    (r = num(colon + 1, (size_t)(sp - colon - 1), 0, 1048575, &x)) < 0)
		return r;
	for (const char *p = sp + 1;;) {
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		const char *eq = memchr(p, '=', n);
		size_t k;
		if (!eq)
			return -EINVAL;
		for (k = 0; k < ARRAY_SIZE(keys); k++)
			if (strlen(keys[k]) == (size_t)(eq - p) && memcmp(p, keys[k], (size_t)(eq - p)) == 0)
				break;
		if (k == ARRAY_SIZE(keys) || seen[k])
			return -EINVAL;
		seen[k] = true;
		nkeys++;
		size_t vlen = n - (size_t)(eq + 1 - p);
		if (!(vlen == 3 && memcmp(eq + 1, "max", 3) == 0) &&
		    (r = num(eq + 1, vlen, 1, INT64_MAX, &x)) < 0)
			return r;
		if (!e)
			return nkeys > 0 ? 0 : -EINVAL;
		p = e + 1;
	}
}

int jail_check_cgroup(const char *file, const char *value)
{
	uint64_t x;
	if (strcmp(file, "memory.max") == 0)
		return check_bytes(value, 1ull << 20, 1ull << 62);
	if (strcmp(file, "memory.swap.max") == 0)
		return check_bytes(value, 0, 1ull << 62);
	if (strcmp(file, "pids.max") == 0)
		return strcmp(value, "max") == 0 ? 0 : parse_u64(value, 1, 4194304, &x);
	if (strcmp(file, "cpu.max") == 0)
		return check_cpu_max(value);
	if (strcmp(file, "cpuset.cpus") == 0)
		return check_cpus(value);
	if (strcmp(file, "io.max") == 0)
		return check_io_max(value);
	return -EPERM;
}

int jail_cgroup_controller(const char *file, char *buf, size_t len)
{
	const char *dot = strchr(file, '.');
	if (!dot || (size_t)(dot - file) >= len)
		return -EINVAL;
	memcpy(buf, file, (size_t)(dot - file));
	buf[dot - file] = '\0';
	return 0;
}

/* ---- rlimits, env -------------------------------------------------------- */

int jail_parse_rlimit(const char *spec, struct jail_rlimit *out)
{
	static const struct { const char *name; int res; uint64_t max; } tab[] = {
		{ "no-file", RLIMIT_NOFILE, 1048576 }, { "fsize", RLIMIT_FSIZE, UINT64_MAX },
		{ "core", RLIMIT_CORE, UINT64_MAX },   { "nproc", RLIMIT_NPROC, 4194304 },
		{ "memlock", RLIMIT_MEMLOCK, UINT64_MAX }, { "as", RLIMIT_AS, UINT64_MAX },
	};
	const char *eq = strchr(spec, '=');
	if (!eq)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(tab); i++) {
		if (strlen(tab[i].name) != (size_t)(eq - spec) || memcmp(spec, tab[i].name, (size_t)(eq - spec)))
			continue;
		out->resource = tab[i].res;
		if (strcmp(eq + 1, "unlimited") == 0) {
			if (tab[i].max != UINT64_MAX)
				return -ERANGE;
			out->value = UINT64_MAX;
			return 0;
		}
		/* no-file 0 would leave the VMM unable to keep even stdio. */
		return parse_u64(eq + 1, tab[i].res == RLIMIT_NOFILE ? 1 : 0,
				 tab[i].max == UINT64_MAX ? UINT64_MAX - 1 : tab[i].max, &out->value);
	}
	return -EPERM;
}

bool jail_check_env(const char *spec)
{
	const char *eq = strchr(spec, '=');
	if (!eq || eq == spec || eq - spec > 64 || strlen(eq + 1) > 1024)
		return false;
	size_t n = (size_t)(eq - spec);
	if (!((n == 4 && memcmp(spec, "TERM", 4) == 0) || (n > 5 && memcmp(spec, "KILN_", 5) == 0)))
		return false;
	for (const char *p = spec; p < eq; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	for (const char *p = eq + 1; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* ---- stat checks --------------------------------------------------------- */

/* Owned by root, or by the (non-root) caller. */
static int check_owner(const struct stat *st, uint32_t caller, char *err, size_t errlen)
{
	if (st->st_uid == 0 || st->st_uid == caller)
		return 0;
	if (caller == 0)
		return kiln_refuse(err, errlen, "is not owned by root (uid %u)", (unsigned)st->st_uid);
	return kiln_refuse(err, errlen, "is owned by uid %u, neither root nor the caller (uid %u)",
			   (unsigned)st->st_uid, (unsigned)caller);
}

int jail_check_exec_stat(const struct stat *st, uint32_t caller, char *err, size_t errlen)
{
	if (!S_ISREG(st->st_mode))
		return kiln_refuse(err, errlen, "is not a regular file");
	if (check_owner(st, caller, err, errlen) < 0)
		return -EINVAL;
	if (st->st_mode & (S_ISUID | S_ISGID))
		return kiln_refuse(err, errlen, "is setuid or setgid");
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return kiln_refuse(err, errlen, "is writable by group or others");
	if (st->st_nlink != 1)
		return kiln_refuse(err, errlen, "has %lu hard links (must have exactly 1)",
				   (unsigned long)st->st_nlink);
	if (st->st_size <= 0)
		return kiln_refuse(err, errlen, "is empty");
	return 0;
}

int jail_check_elf(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	if (len < 64 || memcmp(buf, "\177ELF", 4) != 0)
		return kiln_refuse(err, errlen, "is not an ELF executable");
	if (buf[4] != 2 || buf[5] != 1) /* ELFCLASS64, ELFDATA2LSB */
		return kiln_refuse(err, errlen, "is not a 64-bit little-endian ELF file");
	uint16_t type = ld16(buf + 16), machine = ld16(buf + 18);
	if (type != 2 && type != 3) /* ET_EXEC, ET_DYN */
		return kiln_refuse(err, errlen, "is not an ELF executable (type %u)", type);
	if (machine != 62) /* EM_X86_64 */
		return kiln_refuse(err, errlen, "is not an x86-64 ELF file (machine %u)", machine);
	uint64_t phoff = ld64(buf + 32), phsize;
	uint16_t phentsize = ld16(buf + 54), phnum = ld16(buf + 56);
	if (phentsize < 56 || !mul_u64(phentsize, phnum, &phsize) || !range_ok(phoff, phsize, len))
		return kiln_refuse(err, errlen, "has program headers that are malformed or beyond its first %u bytes",
				   (unsigned)len);
	for (uint16_t i = 0; i < phnum; i++)
		if (ld32(buf + phoff + (uint64_t)i * phentsize) == 3) /* PT_INTERP */
			return kiln_refuse(err, errlen,
					   "is dynamically linked (has an ELF interpreter), but the jail holds "
					   "no libraries: link it statically");
	return 0;
}

int jail_check_resource_stat(const struct stat *st, char *err, size_t errlen)
{
	if (S_ISDIR(st->st_mode))
		return 0;
	if (!S_ISREG(st->st_mode))
		return kiln_refuse(err, errlen, "is neither a regular file nor a directory");
	if (st->st_mode & (S_ISUID | S_ISGID))
		return kiln_refuse(err, errlen, "is setuid or setgid");
	if (st->st_nlink != 1)
		return kiln_refuse(err, errlen, "has %lu hard links (must have exactly 1)",
				   (unsigned long)st->st_nlink);
	return 0;
}

int jail_check_dir_stat(const struct stat *st, uint32_t caller, char *err, size_t errlen)
{
	if (!S_ISDIR(st->st_mode))
		return kiln_refuse(err, errlen, "is not a directory");
	if (check_owner(st, caller, err, errlen) < 0)
		return -EINVAL;
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX))
		return kiln_refuse(err, errlen, "is writable by group or others and not sticky");
	return 0;
}

/* ---- command line -------------------------------------------------------- */

/* "--name value" or "--name=value"; returns the value or NULL when argv[*i] is not --name. */
static const char *opt_value(int argc, char *const argv[], int *i, const char *name, bool *missing)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, n) != 0)
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (a[n] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

static int add_resource(struct jail_config *cfg, const char *path, enum jail_res_mode mode, char *err,
			size_t errlen)
{
	char q[84]; /* 80 characters of an untrusted value, and "..." */
	if (cfg->nres >= JAIL_MAX_RESOURCES)
		return kiln_refuse(err, errlen, "too many --ro/--rw paths (at most %d)", JAIL_MAX_RESOURCES);
	if (!jail_valid_abs_path(path))
		return kiln_refuse(err, errlen,
				   "invalid path \"%s\": must be absolute, without \".\", \"..\" or empty components",
				   kiln_printable(path, q, sizeof(q)));
	const char *name = jail_basename(path);
	if (!jail_valid_name(name) || strcmp(name, "dev") == 0)
		return kiln_refuse(err, errlen, "invalid path \"%s\": its last component must be 1-64 characters from "
				   "[A-Za-z0-9._-] and not \"dev\"", kiln_printable(path, q, sizeof(q)));
	for (size_t k = 0; k < cfg->nres; k++)
		if (strcmp(cfg->res[k].name, name) == 0)
			return kiln_refuse(err, errlen, "two paths named \"%s\" in the jail", name);
	cfg->res[cfg->nres++] = (struct jail_resource){ .path = path, .name = name, .mode = mode };
	return 0;
}

static int parse_one(struct jail_config *cfg, const char *opt, const char *v, char *err, size_t errlen)
{
	char q[84]; /* 80 characters of an untrusted value, and "..." */
	int r;

	if (strcmp(opt, "--id") == 0) {
		if (!jail_valid_id(v))
			return kiln_refuse(err, errlen,
					   "invalid --id \"%s\": must be 1-64 characters from [A-Za-z0-9-]",
					   kiln_printable(v, q, sizeof(q)));
		cfg->id = v;
	} else if (strcmp(opt, "--exec-file") == 0) {
		if (!jail_valid_abs_path(v) || !jail_valid_name(jail_basename(v)))
			return kiln_refuse(err, errlen,
					   "invalid --exec-file \"%s\": must be an absolute path whose last "
					   "component is 1-64 characters from [A-Za-z0-9._-]",
					   kiln_printable(v, q, sizeof(q)));
		cfg->exec_file = v;
		cfg->exec_name = jail_basename(v);
	} else if (strcmp(opt, "--uid") == 0 || strcmp(opt, "--gid") == 0) {
		bool is_uid = opt[2] == 'u';
		if (jail_parse_id_number(v, is_uid ? &cfg->uid : &cfg->gid) < 0)
			return kiln_refuse(err, errlen,
					   "invalid %s \"%s\": must be a number from 1 to 4294967294 (never root)", opt,
					   kiln_printable(v, q, sizeof(q)));
		*(is_uid ? &cfg->have_uid : &cfg->have_gid) = true;
	} else if (strcmp(opt, "--chroot-base-dir") == 0) {
		if (!jail_valid_abs_path(v))
			return kiln_refuse(err, errlen,
					   "invalid --chroot-base-dir \"%s\": must be absolute, without \".\", "
					   "\"..\" or empty components", kiln_printable(v, q, sizeof(q)));
		cfg->chroot_base = v;
	} else if (strcmp(opt, "--parent-cgroup") == 0) {
		if (!jail_valid_cgroup_path(v))
			return kiln_refuse(err, errlen,
					   "invalid --parent-cgroup \"%s\": must be 1-%d relative components of "
					   "[A-Za-z0-9._-]", kiln_printable(v, q, sizeof(q)), JAIL_CGROUP_DEPTH_MAX);
		cfg->parent_cgroup = v;
	} else if (strcmp(opt, "--cgroup") == 0) {
		const char *eq = strchr(v, '=');
		char file[32];
		if (!eq || (size_t)(eq - v) >= sizeof(file))
			return kiln_refuse(err, errlen, "invalid --cgroup \"%s\": expected FILE=VALUE",
					   kiln_printable(v, q, sizeof(q)));
		memcpy(file, v, (size_t)(eq - v));
		file[eq - v] = '\0';
		r = jail_check_cgroup(file, eq + 1);
		if (r == -EPERM)
			return kiln_refuse(err, errlen,
					   "--cgroup: \"%s\" is not an allowed cgroup file (allowed: memory.max, "
					   "memory.swap.max, cpu.max, pids.max, cpuset.cpus, io.max)",
					   kiln_printable(file, q, sizeof(q)));
		if (r < 0)
			return kiln_refuse(err, errlen, "--cgroup: invalid value \"%s\" for %s%s",
					   kiln_printable(eq + 1, q, sizeof(q)), file,
					   r == -ERANGE ? ": out of range" : "");
		for (size_t k = 0; k < cfg->ncg; k++)
			if (strncmp(cfg->cg[k].file, v, (size_t)(eq - v)) == 0 && cfg->cg[k].file[eq - v] == '=')
				return kiln_refuse(err, errlen, "--cgroup: %s given twice", file);
		if (cfg->ncg >= JAIL_MAX_CGROUP)
			return kiln_refuse(err, errlen, "--cgroup: too many settings");
		/* file keeps "FILE=VALUE"; the OS side splits at '='. */
		cfg->cg[cfg->ncg++] = (struct jail_cgroup_setting){ .file = v, .value = eq + 1 };
	} else if (strcmp(opt, "--exec-cache") == 0) {
		if (!jail_valid_abs_path(v))
			return kiln_refuse(err, errlen, "invalid --exec-cache \"%s\": must be absolute, without \".\", "
					   "\"..\" or empty components", kiln_printable(v, q, sizeof(q)));
		cfg->exec_cache = v;
	} else if (strcmp(opt, "--netns") == 0) {
		if (!jail_valid_abs_path(v))
			return kiln_refuse(err, errlen, "invalid --netns \"%s\": must be an absolute path",
					   kiln_printable(v, q, sizeof(q)));
		cfg->netns = v;
	} else if (strcmp(opt, "--resource-limit") == 0) {
		struct jail_rlimit rl;
		r = jail_parse_rlimit(v, &rl);
		if (r == -EPERM)
			return kiln_refuse(err, errlen,
					   "--resource-limit: unknown limit in \"%s\" (known: no-file, fsize, core, "
					   "nproc, memlock, as)", kiln_printable(v, q, sizeof(q)));
		if (r < 0)
			return kiln_refuse(err, errlen, "--resource-limit: invalid \"%s\"%s",
					   kiln_printable(v, q, sizeof(q)),
					   r == -ERANGE ? ": out of range" : ": expected NAME=NUMBER or NAME=unlimited");
		for (size_t k = 0; k < cfg->nrl; k++)
			if (cfg->rl[k].resource == rl.resource)
				return kiln_refuse(err, errlen, "--resource-limit: \"%s\" sets a limit given before",
						   kiln_printable(v, q, sizeof(q)));
		if (cfg->nrl == JAIL_MAX_RLIMITS)
			return kiln_refuse(err, errlen, "--resource-limit: too many limits");
		cfg->rl[cfg->nrl++] = rl;
	} else if (strcmp(opt, "--ro") == 0 || strcmp(opt, "--rw") == 0) {
		return add_resource(cfg, v, opt[3] == 'o' ? JAIL_RES_RO : JAIL_RES_RW, err, errlen);
	} else if (strcmp(opt, "--keep-fd") == 0) {
		uint64_t fd;
		if (parse_u64(v, 3, 65535, &fd) < 0)
			return kiln_refuse(err, errlen, "invalid --keep-fd \"%s\": must be a number from 3 to 65535",
					   kiln_printable(v, q, sizeof(q)));
		for (size_t k = 0; k < cfg->nkeep; k++)
			if (cfg->keep_fds[k] == (int)fd)
				return kiln_refuse(err, errlen, "--keep-fd %d given twice", (int)fd);
		if (cfg->nkeep >= JAIL_MAX_KEEP_FDS)
			return kiln_refuse(err, errlen, "too many --keep-fd (at most %d)", JAIL_MAX_KEEP_FDS);
		cfg->keep_fds[cfg->nkeep++] = (int)fd;
	} else if (strcmp(opt, "--env") == 0) {
		if (!jail_check_env(v))
			return kiln_refuse(err, errlen,
					   "invalid --env \"%s\": must be NAME=VALUE with NAME TERM or KILN_*, "
					   "a printable VALUE", kiln_printable(v, q, sizeof(q)));
		if (cfg->nenv >= JAIL_MAX_ENV)
			return kiln_refuse(err, errlen, "too many --env (at most %d)", JAIL_MAX_ENV);
		cfg->env[cfg->nenv++] = v;
	}
	return 0;
}

int jail_parse_args(int argc, char *const argv[], struct jail_config *cfg, char *err, size_t errlen)
{
	static const char *const valued[] = {
		"--id", "--exec-file", "--uid", "--gid", "--chroot-base-dir", "--parent-cgroup", "--cgroup",
		"--netns", "--resource-limit", "--ro", "--rw", "--keep-fd", "--env", "--exec-cache",
	};
	/* options that may be given more than once; any other twice is refused, not overridden */
	static const char *const repeatable[] = { "--cgroup", "--resource-limit", "--ro", "--rw", "--keep-fd",
						   "--env" };
	char q[84]; /* 80 characters of an untrusted value, and "..." */
	bool have_nofile = false, have_core = false;
	uint32_t seen = 0;
	_Static_assert(ARRAY_SIZE(valued) <= 32, "one bit per valued option in seen");

	memset(cfg, 0, sizeof(*cfg));
	err[0] = '\0';
	int i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			cfg->help = true;
			return 0;
		}
		bool *flag = strcmp(a, "--cleanup") == 0   ? &cfg->cleanup
			     : strcmp(a, "--no-cgroup") == 0 ? &cfg->no_cgroup
			     : strcmp(a, "--userns") == 0    ? &cfg->userns
							     : NULL;
		if (flag) {
			if (*flag)
				return kiln_refuse(err, errlen, "option %s given twice", a);
			*flag = true;
			continue;
		}
		size_t k = 0;
		bool missing = false;
		const char *v = NULL;
		for (; k < ARRAY_SIZE(valued); k++)
			if ((v = opt_value(argc, argv, &i, valued[k], &missing)) != NULL || missing)
				break;
		if (missing)
			return kiln_refuse(err, errlen, "option %s needs a value", valued[k]);
		if (k == ARRAY_SIZE(valued))
			return kiln_refuse(err, errlen, "unknown option \"%s\" (see --help)",
					   kiln_printable(a, q, sizeof(q)));
		int r = parse_one(cfg, valued[k], v, err, errlen);
		if (r < 0)
			return r;
		bool once = true;
		for (size_t j = 0; j < ARRAY_SIZE(repeatable); j++)
			once &= strcmp(valued[k], repeatable[j]) != 0;
		if (once && (seen & (1u << k)))
			return kiln_refuse(err, errlen, "option %s given twice", valued[k]);
		seen |= 1u << k;
	}
	cfg->vmm_argv = argv + i;
	cfg->vmm_argc = (size_t)(argc - i);

	if (!cfg->chroot_base)
		cfg->chroot_base = JAIL_DEFAULT_BASE;
	if (!cfg->parent_cgroup)
		cfg->parent_cgroup = JAIL_DEFAULT_CGROUP;
	if (!cfg->id)
		return kiln_refuse(err, errlen, "--id is required");
	if (cfg->no_cgroup && cfg->ncg)
		return kiln_refuse(err, errlen, "--cgroup and --no-cgroup exclude each other");
	if (cfg->userns && cfg->netns)
		return kiln_refuse(err, errlen,
				   "--netns and --userns exclude each other (joining a host network namespace "
				   "needs host privileges the user namespace does not have)");
	if (cfg->userns && cfg->exec_cache)
		return kiln_refuse(err, errlen,
				   "--exec-cache and --userns exclude each other (the cached copy is root's; "
				   "without root each jail gets its own copy)");
	if (cfg->cleanup) {
		if (cfg->exec_file || cfg->have_uid || cfg->have_gid || cfg->nres || cfg->ncg || cfg->vmm_argc ||
		    cfg->netns || cfg->nrl || cfg->nkeep || cfg->nenv || cfg->userns || cfg->exec_cache)
			return kiln_refuse(err, errlen,
					   "--cleanup takes only --id, --chroot-base-dir, --parent-cgroup and --no-cgroup");
		return 0;
	}
	if (!cfg->exec_file)
		return kiln_refuse(err, errlen, "--exec-file is required");
	if (!cfg->have_uid || !cfg->have_gid)
		return kiln_refuse(err, errlen, "--uid and --gid are required (the VMM never runs as root)");
	for (size_t k = 0; k < cfg->nres; k++)
		if (strcmp(cfg->res[k].name, cfg->exec_name) == 0)
			return kiln_refuse(err, errlen, "path \"%s\" has the same name as the exec file in the jail",
					   kiln_printable(cfg->res[k].path, q, sizeof(q)));
	if (strcmp(cfg->exec_name, "dev") == 0)
		return kiln_refuse(err, errlen, "the exec file may not be named \"dev\"");
	for (size_t k = 0; k < cfg->nrl; k++) {
		have_nofile |= cfg->rl[k].resource == RLIMIT_NOFILE;
		have_core |= cfg->rl[k].resource == RLIMIT_CORE;
	}
	if (!have_nofile && cfg->nrl < JAIL_MAX_RLIMITS)
		cfg->rl[cfg->nrl++] = (struct jail_rlimit){ RLIMIT_NOFILE, JAIL_DEFAULT_NOFILE };
	if (!have_core && cfg->nrl < JAIL_MAX_RLIMITS)
		cfg->rl[cfg->nrl++] = (struct jail_rlimit){ RLIMIT_CORE, 0 };
	return 0;
}
