/* test_jailer.c: cmocka tests of kiln-jailer's side-effect-free checks (jailer/validate.c). */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "jailer/validate.h"

static void test_id(void **state)
{
	(void)state;
	char s[80];
	assert_true(jail_valid_id("vm-1"));
	assert_true(jail_valid_id("A"));
	memset(s, 'a', 64);
	s[64] = '\0';
	assert_true(jail_valid_id(s));
	s[64] = 'a';
	s[65] = '\0';
	assert_false(jail_valid_id(s));
	const char *bad[] = { "", "../x", "..", ".", "a/b", "a.b", "a b", "a_b", "a\n", "\xc3\xa9", "-\x01" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_false(jail_valid_id(bad[i]));
}

static void test_name(void **state)
{
	(void)state;
	assert_true(jail_valid_name("kiln-vmm"));
	assert_true(jail_valid_name("disk_0.img"));
	assert_true(jail_valid_name("..."));
	assert_false(jail_valid_name("."));
	assert_false(jail_valid_name(".."));
	assert_false(jail_valid_name(""));
	assert_false(jail_valid_name("a/b"));
	assert_false(jail_valid_name("a:b"));
	char s[80];
	memset(s, 'x', 65);
	s[65] = '\0';
	assert_false(jail_valid_name(s));
}

static void test_id_number(void **state)
{
	(void)state;
	uint32_t v = 7;
	assert_int_equal(jail_parse_id_number("0", &v), -ERANGE);
	assert_int_equal(jail_parse_id_number("4294967295", &v), -ERANGE);
	assert_int_equal(jail_parse_id_number("99999999999999999999999", &v), -ERANGE);
	assert_int_equal(jail_parse_id_number("-1", &v), -EINVAL);
	assert_int_equal(jail_parse_id_number("", &v), -EINVAL);
	assert_int_equal(jail_parse_id_number("12a", &v), -EINVAL);
	assert_int_equal(jail_parse_id_number(" 12", &v), -EINVAL);
	assert_int_equal(v, 7);
	assert_int_equal(jail_parse_id_number("1", &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(jail_parse_id_number("4294967294", &v), 0);
	assert_int_equal(v, 4294967294u);
}

static void test_abs_path(void **state)
{
	(void)state;
	assert_true(jail_valid_abs_path("/srv/kiln"));
	assert_true(jail_valid_abs_path("/a"));
	assert_true(jail_valid_abs_path("/a/..b/c."));
	const char *bad[] = { "", "/", "a", "a/b", "/a/", "//a", "/a//b", "/a/./b", "/a/../b", "/..", "/." };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_false(jail_valid_abs_path(bad[i]));
	static char longp[PATH_MAX + 2];
	longp[0] = '/';
	memset(longp + 1, 'a', PATH_MAX);
	assert_false(jail_valid_abs_path(longp));
	assert_string_equal(jail_basename("/a/b/kiln-vmm"), "kiln-vmm");
	assert_string_equal(jail_basename("x"), "x");
}

static void test_cgroup_path(void **state)
{
	(void)state;
	assert_true(jail_valid_cgroup_path("kiln"));
	assert_true(jail_valid_cgroup_path("a/b.slice/c_d"));
	assert_true(jail_valid_cgroup_path("1/2/3/4/5/6/7/8"));
	const char *bad[] = { "", "/kiln", "kiln/", "..", "a/../b", "a//b", "1/2/3/4/5/6/7/8/9", "a b", "." };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_false(jail_valid_cgroup_path(bad[i]));
}

static void test_cgroup_values(void **state)
{
	(void)state;
	static const struct { const char *file, *value; int want; } t[] = {
		{ "memory.max", "max", 0 },
		{ "memory.max", "1048576", 0 },
		{ "memory.max", "64M", 0 },
		{ "memory.max", "2G", 0 },
		{ "memory.max", "1048575", -ERANGE },       /* under 1 MiB */
		{ "memory.max", "0", -ERANGE },
		{ "memory.max", "5T", 0 },
		{ "memory.max", "99999999999999999999", -ERANGE },
		{ "memory.max", "16777216T", -ERANGE },     /* overflows with the suffix */
		{ "memory.max", "-1", -EINVAL },
		{ "memory.max", "1.5G", -EINVAL },
		{ "memory.max", "G", -EINVAL },
		{ "memory.max", "", -EINVAL },
		{ "memory.max", "64M\n", -EINVAL },
		{ "memory.swap.max", "0", 0 },
		{ "memory.swap.max", "max", 0 },
		{ "pids.max", "max", 0 },
		{ "pids.max", "1", 0 },
		{ "pids.max", "4194304", 0 },
		{ "pids.max", "0", -ERANGE },
		{ "pids.max", "4194305", -ERANGE },
		{ "pids.max", "MAX", -EINVAL },
		{ "cpu.max", "max", 0 },
		{ "cpu.max", "50000", 0 },
		{ "cpu.max", "50000 100000", 0 },
		{ "cpu.max", "max 100000", 0 },
		{ "cpu.max", "999", -ERANGE },
		{ "cpu.max", "50000 999", -ERANGE },
		{ "cpu.max", "50000 1000001", -ERANGE },
		{ "cpu.max", "50000  100000", -EINVAL },
		{ "cpu.max", "50000 ", -EINVAL },
		{ "cpu.max", "", -EINVAL },
		{ "cpuset.cpus", "0", 0 },
		{ "cpuset.cpus", "0-3,5,7-8", 0 },
		{ "cpuset.cpus", "8191", 0 },
		{ "cpuset.cpus", "8192", -ERANGE },
		{ "cpuset.cpus", "3-1", -EINVAL },
		{ "cpuset.cpus", "", -EINVAL },
		{ "cpuset.cpus", "1,", -EINVAL },
		{ "cpuset.cpus", "1-", -EINVAL },
		{ "cpuset.cpus", "a", -EINVAL },
		{ "io.max", "8:0 rbps=1048576", 0 },
		{ "io.max", "8:16 rbps=max wbps=1 riops=2 wiops=3", 0 },
		{ "io.max", "8:0 rbps=1 rbps=2", -EINVAL },
		{ "io.max", "8:0 foo=1", -EINVAL },
		{ "io.max", "8:0", -EINVAL },
		{ "io.max", "8:0 rbps=0", -ERANGE },
		{ "io.max", "4096:0 rbps=1", -ERANGE },
		{ "io.max", "8 rbps=1", -EINVAL },
		{ "cgroup.procs", "1", -EPERM },
		{ "cgroup.subtree_control", "+cpu", -EPERM },
		{ "memory.high", "1G", -EPERM },
		{ "../memory.max", "1G", -EPERM },
		{ "", "", -EPERM },
	};
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		int got = jail_check_cgroup(t[i].file, t[i].value);
		if (got != t[i].want)
			fail_msg("%s=\"%s\": got %d, want %d", t[i].file, t[i].value, got, t[i].want);
	}
	char c[16];
	assert_int_equal(jail_cgroup_controller("memory.swap.max", c, sizeof(c)), 0);
	assert_string_equal(c, "memory");
	assert_int_equal(jail_cgroup_controller("cpuset.cpus", c, sizeof(c)), 0);
	assert_string_equal(c, "cpuset");
	assert_int_equal(jail_cgroup_controller("nodot", c, sizeof(c)), -EINVAL);
	assert_int_equal(jail_cgroup_controller("averyveryverylongcontroller.x", c, sizeof(c)), -EINVAL);
}

static void test_rlimit(void **state)
{
	(void)state;
	struct jail_rlimit r;
	assert_int_equal(jail_parse_rlimit("no-file=3", &r), 0);
	assert_int_equal(r.resource, RLIMIT_NOFILE);
	assert_int_equal(r.value, 3);
	assert_int_equal(jail_parse_rlimit("fsize=unlimited", &r), 0);
	assert_int_equal(r.resource, RLIMIT_FSIZE);
	assert_true(r.value == UINT64_MAX);
	assert_int_equal(jail_parse_rlimit("core=0", &r), 0);
	assert_int_equal(r.resource, RLIMIT_CORE);
	assert_int_equal(jail_parse_rlimit("no-file=0", &r), -ERANGE);
	assert_int_equal(jail_parse_rlimit("no-file=1048577", &r), -ERANGE);
	assert_int_equal(jail_parse_rlimit("no-file=unlimited", &r), -ERANGE);
	assert_int_equal(jail_parse_rlimit("nproc=4194305", &r), -ERANGE);
	assert_int_equal(jail_parse_rlimit("fsize=-1", &r), -EINVAL);
	assert_int_equal(jail_parse_rlimit("fsize=", &r), -EINVAL);
	assert_int_equal(jail_parse_rlimit("fsize", &r), -EINVAL);
	assert_int_equal(jail_parse_rlimit("stack=1", &r), -EPERM);
	assert_int_equal(jail_parse_rlimit("no-files=1", &r), -EPERM);
	assert_int_equal(jail_parse_rlimit("=1", &r), -EPERM);
}

static void test_env(void **state)
{
	(void)state;
	assert_true(jail_check_env("TERM=xterm"));
	assert_true(jail_check_env("KILN_LOG=debug"));
	assert_true(jail_check_env("KILN_X="));
	const char *bad[] = { "LD_PRELOAD=/x.so", "LD_LIBRARY_PATH=/", "GLIBC_TUNABLES=x", "PATH=/bin",
			      "KILN_=x", "kiln_log=1", "KILN_LOG", "=x", "KILN_LOG=a\nb", "KILN_LOG=\x1b[2J",
			      "TERMX=1", "KILN-LOG=1" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (jail_check_env(bad[i]))
			fail_msg("accepted %s", bad[i]);
	char big[1100] = "KILN_X=";
	memset(big + 7, 'v', 1025);
	big[7 + 1025] = '\0';
	assert_false(jail_check_env(big));
}

static void test_exec_stat(void **state)
{
	(void)state;
	char err[JAIL_ERR_MAX];
	struct stat ok = { .st_mode = S_IFREG | 0755, .st_uid = 0, .st_nlink = 1, .st_size = 100 };
	struct stat st;
	assert_int_equal(jail_check_exec_stat(&ok, 0, err, sizeof(err)), 0);
	st = ok;
	st.st_mode = S_IFDIR | 0755;
	assert_int_equal(jail_check_exec_stat(&st, 0, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "is not a regular file");
	st = ok;
	st.st_mode = S_IFLNK | 0777;
	assert_int_equal(jail_check_exec_stat(&st, 0, err, sizeof(err)), -EINVAL);
	st = ok;
	st.st_uid = 1000;
	assert_int_equal(jail_check_exec_stat(&st, 0, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "is not owned by root (uid 1000)");
	st = ok;
	st.st_mode |= S_ISUID;
	assert_int_equal(jail_check_exec_stat(&st, 0, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "is setuid or setgid");
	st = ok;
	st.st_mode |= S_ISGID;
	assert_int_equal(jail_check_exec_stat(&st, 0, err, sizeof(err)), -EINVAL);
	st = ok;
	st.st_mode = S_IFREG | 0757;
	assert_int_equal(jail_check_exec_stat(&st, 0, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "is writable by group or others");
	st = ok;
	st.st_nlink = 2;
	assert_int_equal(jail_check_exec_stat(&st, 0, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "has 2 hard links (must have exactly 1)");
	st = ok;
	st.st_size = 0;
	assert_int_equal(jail_check_exec_stat(&st, 0, err, sizeof(err)), -EINVAL);
}

static void test_resource_and_dir_stat(void **state)
{
	(void)state;
	char err[JAIL_ERR_MAX];
	struct stat st = { .st_mode = S_IFREG | 0644, .st_uid = 1000, .st_nlink = 1 };
	assert_int_equal(jail_check_resource_stat(&st, err, sizeof(err)), 0);
	st.st_nlink = 3;
	assert_int_equal(jail_check_resource_stat(&st, err, sizeof(err)), -EINVAL);
	st = (struct stat){ .st_mode = S_IFDIR | 0700, .st_nlink = 5 };
	assert_int_equal(jail_check_resource_stat(&st, err, sizeof(err)), 0);
	st = (struct stat){ .st_mode = S_IFCHR | 0600, .st_nlink = 1 };
	assert_int_equal(jail_check_resource_stat(&st, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "is neither a regular file nor a directory");
	st = (struct stat){ .st_mode = S_IFSOCK | 0600, .st_nlink = 1 };
	assert_int_equal(jail_check_resource_stat(&st, err, sizeof(err)), -EINVAL);
	st = (struct stat){ .st_mode = S_IFREG | S_ISUID | 0755, .st_nlink = 1 };
	assert_int_equal(jail_check_resource_stat(&st, err, sizeof(err)), -EINVAL);

	st = (struct stat){ .st_mode = S_IFDIR | 0755, .st_uid = 0 };
	assert_int_equal(jail_check_dir_stat(&st, 0, err, sizeof(err)), 0);
	st.st_mode = S_IFDIR | S_ISVTX | 0777; /* /tmp */
	assert_int_equal(jail_check_dir_stat(&st, 0, err, sizeof(err)), 0);
	st.st_mode = S_IFDIR | 0777;
	assert_int_equal(jail_check_dir_stat(&st, 0, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "is writable by group or others and not sticky");
	st.st_mode = S_IFDIR | 0775;
	assert_int_equal(jail_check_dir_stat(&st, 0, err, sizeof(err)), -EINVAL);
	st = (struct stat){ .st_mode = S_IFDIR | 0700, .st_uid = 1000 };
	assert_int_equal(jail_check_dir_stat(&st, 0, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "is not owned by root (uid 1000)");
	st = (struct stat){ .st_mode = S_IFLNK | 0777 };
	assert_int_equal(jail_check_dir_stat(&st, 0, err, sizeof(err)), -EINVAL);
	/* rootless (--userns): the caller's own directories and files are fine, others' are not */
	st = (struct stat){ .st_mode = S_IFDIR | 0700, .st_uid = 1000 };
	assert_int_equal(jail_check_dir_stat(&st, 1000, err, sizeof(err)), 0);
	st.st_uid = 0;
	assert_int_equal(jail_check_dir_stat(&st, 1000, err, sizeof(err)), 0);
	st.st_uid = 1001;
	assert_int_equal(jail_check_dir_stat(&st, 1000, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "is owned by uid 1001, neither root nor the caller (uid 1000)");
	st = (struct stat){ .st_mode = S_IFREG | 0755, .st_uid = 1000, .st_nlink = 1, .st_size = 1 };
	assert_int_equal(jail_check_exec_stat(&st, 1000, err, sizeof(err)), 0);
	assert_int_equal(jail_check_exec_stat(&st, 1001, err, sizeof(err)), -EINVAL);
}

/* A minimal x86-64 ELF header with two program headers at offset 64. */
static void make_elf(uint8_t *b, size_t len, uint16_t type, uint32_t ph1_type)
{
	memset(b, 0, len);
	memcpy(b, "\177ELF", 4);
	b[4] = 2;
	b[5] = 1;
	st16(b + 16, type);
	st16(b + 18, 62);
	st64(b + 32, 64);
	st16(b + 54, 56);
	st16(b + 56, 2);
	st32(b + 64, 1);             /* PT_LOAD */
	st32(b + 64 + 56, ph1_type); /* PT_INTERP (3) or PT_NOTE (4) */
}

static void test_elf(void **state)
{
	(void)state;
	char err[JAIL_ERR_MAX];
	uint8_t b[256];
	make_elf(b, sizeof(b), 3, 4);
	assert_int_equal(jail_check_elf(b, sizeof(b), err, sizeof(err)), 0);
	make_elf(b, sizeof(b), 2, 4);
	assert_int_equal(jail_check_elf(b, sizeof(b), err, sizeof(err)), 0);
	make_elf(b, sizeof(b), 3, 3);
	assert_int_equal(jail_check_elf(b, sizeof(b), err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "is dynamically linked (has an ELF interpreter), but the jail holds no libraries: "
				 "link it statically");
	make_elf(b, sizeof(b), 1, 4); /* ET_REL */
	assert_int_equal(jail_check_elf(b, sizeof(b), err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "is not an ELF executable (type 1)");
	make_elf(b, sizeof(b), 3, 4);
	st16(b + 18, 183); /* aarch64 */
	assert_int_equal(jail_check_elf(b, sizeof(b), err, sizeof(err)), -EINVAL);
	make_elf(b, sizeof(b), 3, 4);
	b[4] = 1; /* 32-bit */
	assert_int_equal(jail_check_elf(b, sizeof(b), err, sizeof(err)), -EINVAL);
	make_elf(b, sizeof(b), 3, 4);
	assert_int_equal(jail_check_elf(b, 63, err, sizeof(err)), -EINVAL);
	assert_int_equal(jail_check_elf(b, 64 + 56 + 55, err, sizeof(err)), -EINVAL); /* phdrs cut short */
	st64(b + 32, UINT64_MAX - 8);                                                  /* phoff overflow */
	assert_int_equal(jail_check_elf(b, sizeof(b), err, sizeof(err)), -EINVAL);
	make_elf(b, sizeof(b), 3, 4);
	st16(b + 54, 8); /* phentsize too small */
	assert_int_equal(jail_check_elf(b, sizeof(b), err, sizeof(err)), -EINVAL);
	make_elf(b, sizeof(b), 3, 4);
	st16(b + 56, 0xffff); /* phnum beyond the buffer */
	assert_int_equal(jail_check_elf(b, sizeof(b), err, sizeof(err)), -EINVAL);
	memcpy(b, "#!/b", 4);
	assert_int_equal(jail_check_elf(b, sizeof(b), err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "is not an ELF executable");
}

/* ---- command line ---- */

static struct jail_config cfg;
static char err[JAIL_ERR_MAX * 2];

/* argv as a compound literal: it lives to the end of the caller's block, as cfg points into it. */
static int parse_argv(char **argv)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	return jail_parse_args(argc, argv, &cfg, err, sizeof(err));
}
#define PARSE(...) parse_argv((char *[]){ "kiln-jailer", __VA_ARGS__, NULL })
#define BASIC "--id", "vm1", "--exec-file", "/usr/bin/kiln-vmm", "--uid", "123", "--gid", "456"

static void test_parse_ok(void **state)
{
	(void)state;
	assert_int_equal(PARSE(BASIC, "--cgroup", "memory.max=64M", "--cgroup=pids.max=10", "--ro", "/k/vmlinux",
			       "--rw=/d/disk.img", "--keep-fd", "5", "--env", "KILN_LOG=1", "--resource-limit",
			       "fsize=100", "--netns", "/run/netns/a", "--", "--kernel", "/vmlinux"), 0);
	assert_string_equal(cfg.id, "vm1");
	assert_string_equal(cfg.exec_name, "kiln-vmm");
	assert_int_equal(cfg.uid, 123);
	assert_int_equal(cfg.gid, 456);
	assert_string_equal(cfg.chroot_base, JAIL_DEFAULT_BASE);
	assert_string_equal(cfg.parent_cgroup, JAIL_DEFAULT_CGROUP);
	assert_int_equal(cfg.ncg, 2);
	assert_string_equal(cfg.cg[1].value, "10");
	assert_int_equal(cfg.nres, 2);
	assert_string_equal(cfg.res[0].name, "vmlinux");
	assert_int_equal(cfg.res[0].mode, JAIL_RES_RO);
	assert_int_equal(cfg.res[1].mode, JAIL_RES_RW);
	assert_int_equal(cfg.nkeep, 1);
	assert_int_equal(cfg.keep_fds[0], 5);
	assert_int_equal(cfg.vmm_argc, 2);
	assert_string_equal(cfg.vmm_argv[0], "--kernel");
	assert_null(cfg.exec_cache);
	/* defaults added: fsize given, no-file 2048 and core 0 */
	assert_int_equal(cfg.nrl, 3);
	assert_int_equal(cfg.rl[1].resource, RLIMIT_NOFILE);
	assert_int_equal(cfg.rl[1].value, JAIL_DEFAULT_NOFILE);
	assert_int_equal(cfg.rl[2].resource, RLIMIT_CORE);
	assert_int_equal(cfg.rl[2].value, 0);

	assert_int_equal(PARSE(BASIC, "--exec-cache", "/var/lib/kiln/cache"), 0);
	assert_string_equal(cfg.exec_cache, "/var/lib/kiln/cache");
	/* an explicit no-file replaces the default */
	assert_int_equal(PARSE(BASIC, "--resource-limit", "no-file=4"), 0);
	assert_int_equal(cfg.nrl, 2);
	assert_int_equal(cfg.rl[0].resource, RLIMIT_NOFILE);
	assert_int_equal(cfg.rl[0].value, 4);

	assert_int_equal(PARSE("--cleanup", "--id", "vm1", "--chroot-base-dir", "/run/x"), 0);
	assert_true(cfg.cleanup);
	assert_int_equal(PARSE("--help"), 0);
	assert_true(cfg.help);
}

static void expect_reject(int r, const char *msg)
{
	assert_int_equal(r, -EINVAL);
	assert_string_equal(err, msg);
}

static void test_parse_reject(void **state)
{
	(void)state;
	expect_reject(PARSE("--exec-file", "/x", "--uid", "1", "--gid", "1"), "--id is required");
	expect_reject(PARSE("--id", "vm1", "--uid", "1", "--gid", "1"), "--exec-file is required");
	expect_reject(PARSE("--id", "vm1", "--exec-file", "/x"), "--uid and --gid are required (the VMM never runs as root)");
	expect_reject(PARSE("--id", "../etc"), "invalid --id \"../etc\": must be 1-64 characters from [A-Za-z0-9-]");
	expect_reject(PARSE("--id", "a\x1b[2J"), "invalid --id \"a?[2J\": must be 1-64 characters from [A-Za-z0-9-]");
	expect_reject(PARSE(BASIC, "--uid", "0"), "invalid --uid \"0\": must be a number from 1 to 4294967294 (never root)");
	expect_reject(PARSE(BASIC, "--gid", "-1"), "invalid --gid \"-1\": must be a number from 1 to 4294967294 (never root)");
	expect_reject(PARSE(BASIC, "--bogus"), "unknown option \"--bogus\" (see --help)");
	expect_reject(PARSE(BASIC, "--ro"), "option --ro needs a value");
	expect_reject(PARSE(BASIC, "--exec-file", "kiln-vmm"),
		      "invalid --exec-file \"kiln-vmm\": must be an absolute path whose last component is 1-64 "
		      "characters from [A-Za-z0-9._-]");
	expect_reject(PARSE(BASIC, "--chroot-base-dir", "/srv/../etc"),
		      "invalid --chroot-base-dir \"/srv/../etc\": must be absolute, without \".\", \"..\" or empty components");
	expect_reject(PARSE(BASIC, "--parent-cgroup", "../x"),
		      "invalid --parent-cgroup \"../x\": must be 1-8 relative components of [A-Za-z0-9._-]");
	expect_reject(PARSE(BASIC, "--cgroup", "cgroup.procs=1"),
		      "--cgroup: \"cgroup.procs\" is not an allowed cgroup file (allowed: memory.max, memory.swap.max, "
		      "cpu.max, pids.max, cpuset.cpus, io.max)");
	expect_reject(PARSE(BASIC, "--cgroup", "pids.max=0"), "--cgroup: invalid value \"0\" for pids.max: out of range");
	expect_reject(PARSE(BASIC, "--cgroup", "pids.max"), "invalid --cgroup \"pids.max\": expected FILE=VALUE");
	expect_reject(PARSE(BASIC, "--cgroup", "pids.max=1", "--cgroup", "pids.max=2"), "--cgroup: pids.max given twice");
	expect_reject(PARSE(BASIC, "--cgroup", "pids.max=1", "--no-cgroup"), "--cgroup and --no-cgroup exclude each other");
	expect_reject(PARSE(BASIC, "--ro", "/a/disk", "--rw", "/b/disk"), "two paths named \"disk\" in the jail");
	expect_reject(PARSE(BASIC, "--ro", "/a/kiln-vmm"), "path \"/a/kiln-vmm\" has the same name as the exec file in the jail");
	expect_reject(PARSE(BASIC, "--ro", "/a/dev"),
		      "invalid path \"/a/dev\": its last component must be 1-64 characters from [A-Za-z0-9._-] and not \"dev\"");
	expect_reject(PARSE(BASIC, "--rw", "disk.img"),
		      "invalid path \"disk.img\": must be absolute, without \".\", \"..\" or empty components");
	expect_reject(PARSE(BASIC, "--keep-fd", "2"), "invalid --keep-fd \"2\": must be a number from 3 to 65535");
	expect_reject(PARSE(BASIC, "--keep-fd", "9", "--keep-fd", "9"), "--keep-fd 9 given twice");
	/* an option that cannot be repeated, given twice, is refused rather than overridden */
	expect_reject(PARSE(BASIC, "--resource-limit", "no-file=3", "--resource-limit", "no-file=4"),
		      "--resource-limit: \"no-file=4\" sets a limit given before");
	expect_reject(PARSE(BASIC, "--id", "vm2"), "option --id given twice");
	expect_reject(PARSE(BASIC, "--uid=9"), "option --uid given twice");
	expect_reject(PARSE(BASIC, "--exec-file", "/usr/bin/other"), "option --exec-file given twice");
	expect_reject(PARSE(BASIC, "--chroot-base-dir", "/a", "--chroot-base-dir", "/b"),
		      "option --chroot-base-dir given twice");
	expect_reject(PARSE(BASIC, "--no-cgroup", "--no-cgroup"), "option --no-cgroup given twice");
	expect_reject(PARSE("--cleanup", "--cleanup", "--id", "vm1"), "option --cleanup given twice");
	expect_reject(PARSE(BASIC, "--userns", "--userns"), "option --userns given twice");
	/* the repeatable ones */
	assert_int_equal(PARSE(BASIC, "--ro", "/a/x", "--ro", "/a/y", "--rw", "/a/z", "--rw", "/a/w", "--env", "TERM=x",
			       "--env", "KILN_A=1", "--keep-fd", "3", "--keep-fd", "4", "--cgroup", "pids.max=9", "--cgroup",
			       "memory.max=1073741824", "--resource-limit", "fsize=1", "--resource-limit", "core=0"), 0);
	expect_reject(PARSE(BASIC, "--env", "LD_PRELOAD=/x.so"),
		      "invalid --env \"LD_PRELOAD=/x.so\": must be NAME=VALUE with NAME TERM or KILN_*, a printable VALUE");
	expect_reject(PARSE(BASIC, "--resource-limit", "stack=1"),
		      "--resource-limit: unknown limit in \"stack=1\" (known: no-file, fsize, core, nproc, memlock, as)");
	expect_reject(PARSE(BASIC, "--resource-limit", "no-file=0"), "--resource-limit: invalid \"no-file=0\": out of range");
	expect_reject(PARSE(BASIC, "--netns", "net"), "invalid --netns \"net\": must be an absolute path");
	expect_reject(PARSE("--cleanup", "--id", "vm1", "--exec-file", "/x"),
		      "--cleanup takes only --id, --chroot-base-dir, --parent-cgroup and --no-cgroup");
	expect_reject(PARSE("--cleanup", "--id", "vm1", "--", "x"),
		      "--cleanup takes only --id, --chroot-base-dir, --parent-cgroup and --no-cgroup");
	expect_reject(PARSE(BASIC, "--userns", "--netns", "/run/netns/x"),
		      "--netns and --userns exclude each other (joining a host network namespace needs host privileges "
		      "the user namespace does not have)");
	expect_reject(PARSE("--cleanup", "--id", "vm1", "--userns"),
		      "--cleanup takes only --id, --chroot-base-dir, --parent-cgroup and --no-cgroup");
	expect_reject(PARSE(BASIC, "--exec-cache", "cache"),
		      "invalid --exec-cache \"cache\": must be absolute, without \".\", \"..\" or empty components");
	expect_reject(PARSE(BASIC, "--exec-cache", "/var/../cache"),
		      "invalid --exec-cache \"/var/../cache\": must be absolute, without \".\", \"..\" or empty components");
	expect_reject(PARSE(BASIC, "--userns", "--exec-cache", "/c"),
		      "--exec-cache and --userns exclude each other (the cached copy is root's; without root each "
		      "jail gets its own copy)");
	expect_reject(PARSE("--cleanup", "--id", "vm1", "--exec-cache", "/c"),
		      "--cleanup takes only --id, --chroot-base-dir, --parent-cgroup and --no-cgroup");
	expect_reject(PARSE("--id", "vm1", "--exec-file", "/x/dev", "--uid", "1", "--gid", "1"),
		      "the exec file may not be named \"dev\"");
}

static void test_parse_limits(void **state)
{
	(void)state;
	char *argv[2 + 2 * (JAIL_MAX_RESOURCES + 1) + 8 + 1];
	char paths[JAIL_MAX_RESOURCES + 1][16];
	int n = 0;
	argv[n++] = "kiln-jailer";
	for (int i = 0; i <= JAIL_MAX_RESOURCES; i++) {
		snprintf(paths[i], sizeof(paths[i]), "/d/f%d", i);
		argv[n++] = "--ro";
		argv[n++] = paths[i];
	}
	argv[n] = NULL;
	assert_int_equal(jail_parse_args(n, argv, &cfg, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "too many --ro/--rw paths (at most 16)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id),
		cmocka_unit_test(test_name),
		cmocka_unit_test(test_id_number),
		cmocka_unit_test(test_abs_path),
		cmocka_unit_test(test_cgroup_path),
		cmocka_unit_test(test_cgroup_values),
		cmocka_unit_test(test_rlimit),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_exec_stat),
		cmocka_unit_test(test_resource_and_dir_stat),
		cmocka_unit_test(test_elf),
		cmocka_unit_test(test_parse_ok),
		cmocka_unit_test(test_parse_reject),
		cmocka_unit_test(test_parse_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
