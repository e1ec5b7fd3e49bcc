/* test_runner.c: cmocka tests of `kiln run`'s pure parts: sizes, durations, options, result record. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "exitcodes.h"
#include "runner/opts.h"
#include "runner/outq.h"
#include "runner/result.h"

static struct run_opts O;
static char err[512];

/* Parse a NULL-terminated list of arguments after "run". */
static int parse_v(const char *const *args)
{
	static char *argv[64];
	static char store[64][256];
	int argc = 0;

	argv[argc++] = strcpy(store[0], "run");
	for (; *args; args++, argc++)
		argv[argc] = strcpy(store[argc], *args);
	argv[argc] = NULL;
	return run_opts_parse(argc, argv, &O, err, sizeof(err));
}
#define PARSE(...) parse_v((const char *const[]){ __VA_ARGS__, NULL })

static void test_size(void **state)
{
	uint64_t v;
	(void)state;

	assert_int_equal(run_parse_size("4096", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(run_parse_size("256M", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 256ull << 20);
	assert_int_equal(run_parse_size("64k", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 64ull << 10);
	assert_int_equal(run_parse_size("1GiB", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(run_parse_size("2TB", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 2ull << 40);
	assert_int_equal(run_parse_size("0", 0, 10, &v), 0);
	assert_int_equal(v, 0);

	const char *bad[] = { "", "M", "-1", "+1", " 1", "1 ", "1.5M", "1X", "1MM", "1Mi", "1MiBs",
			      "0x10", "1e3", "1,000" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(run_parse_size(bad[i], 0, UINT64_MAX, &v), -EINVAL);
	/* overflow and range: never clamped */
	assert_int_equal(run_parse_size("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(run_parse_size("99999999999999999999999", 0, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(run_parse_size("17179869184G", 0, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(run_parse_size("31M", 32ull << 20, 1ull << 40, &v), -ERANGE);
	assert_int_equal(run_parse_size("17G", 0, 16ull << 30, &v), -ERANGE);
	assert_int_equal(run_parse_size("16G", 0, 16ull << 30, &v), 0);
}

static void test_time(void **state)
{
	uint64_t v;
	(void)state;

	assert_int_equal(run_parse_time_ms("10s", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 10000);
	assert_int_equal(run_parse_time_ms("30", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 30000);
	assert_int_equal(run_parse_time_ms("1500ms", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 1500);
	assert_int_equal(run_parse_time_ms("2m", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 120000);
	assert_int_equal(run_parse_time_ms("1h", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 3600000);

	const char *bad[] = { "", "s", "-1s", "1.5s", "10 s", "10sec", "10S", "1d", "ms", "1hm", "0x1s" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(run_parse_time_ms(bad[i], 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(run_parse_time_ms("0s", 100, 1000, &v), -ERANGE);
	assert_int_equal(run_parse_time_ms("99ms", 100, 1000, &v), -ERANGE);
	assert_int_equal(run_parse_time_ms("25h", 0, 24ull * 3600000, &v), -ERANGE);
	assert_int_equal(run_parse_time_ms("99999999999999999999h", 0, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(run_parse_time_ms("5124095576030431h", 0, UINT64_MAX, &v), -ERANGE);
}

static void test_parse_defaults(void **state)
{
	(void)state;
	assert_int_equal(PARSE("--", "true"), 0);
	assert_int_equal(O.mem, RUN_MEM_DEF);
	assert_int_equal(O.vcpus, 1);
	assert_int_equal(O.timeout_ms, RUN_TIMEOUT_DEF_MS);
	assert_int_equal(O.cpu_ms, 0);
	assert_int_equal(O.pids, RUN_PIDS_DEF);
	assert_int_equal(O.output_max, RUN_OUT_DEF);
	assert_int_equal(O.disk, RUN_DISK_DEF);
	assert_int_equal(O.user, RUN_USER_SANDBOX);
	assert_int_equal(O.result_fd, -1);
	assert_false(O.json);
	assert_false(O.no_jail);
	assert_null(O.image);
	assert_null(O.kernel);
	assert_int_equal(O.argc, 1);
	assert_string_equal(O.argv[0], "true");
	/* without "--" the first non-option starts the command; its own options stay its own */
	assert_int_equal(PARSE("ls", "--mem", "-l"), 0);
	assert_int_equal(O.argc, 3);
	assert_string_equal(O.argv[1], "--mem");
	assert_int_equal(O.mem, RUN_MEM_DEF);
	assert_int_equal(PARSE("-h"), 1);
	assert_int_equal(PARSE("--help"), 1);
}

static void test_parse_all(void **state)
{
	(void)state;
	assert_int_equal(PARSE("--mem", "1G", "--vcpus", "4", "--timeout", "90s", "--cpu-time", "5s",
			       "--pids", "64", "--output-max", "1M", "--disk", "1G", "--env", "A=1",
			       "--env", "_B2=x=y", "--cwd", "sub", "--user", "root", "--put", "/h/f:g/f",
			       "--put", "/h:x:y", "--get", "out:/tmp/o:1", "--image", "python", "--kernel",
			       "/k/bz", "--result-fd", "5", "--no-jail", "--", "sh", "-c", "echo hi"),
			 0);
	assert_int_equal(O.mem, 1ull << 30);
	assert_int_equal(O.vcpus, 4);
	assert_int_equal(O.timeout_ms, 90000);
	assert_int_equal(O.cpu_ms, 5000);
	assert_int_equal(O.pids, 64);
	assert_int_equal(O.output_max, 1ull << 20);
	assert_int_equal(O.disk, 1ull << 30);
	assert_int_equal(O.nenv, 2);
	assert_string_equal(O.env[1], "_B2=x=y");
	assert_string_equal(O.cwd, "sub");
	assert_int_equal(O.user, RUN_USER_ROOT);
	assert_int_equal(O.nput, 2);
	assert_string_equal(O.put[0].host, "/h/f");
	assert_string_equal(O.put[0].guest, "g/f");
	assert_string_equal(O.put[1].host, "/h:x"); /* --put splits at the last ':' */
	assert_string_equal(O.put[1].guest, "y");
	assert_int_equal(O.nget, 1);
	assert_string_equal(O.get[0].guest, "out"); /* --get splits at the first ':' */
	assert_string_equal(O.get[0].host, "/tmp/o:1");
	assert_string_equal(O.image, "python");
	assert_false(O.image_is_path);
	assert_string_equal(O.kernel, "/k/bz");
	assert_int_equal(O.result_fd, 5);
	assert_true(O.no_jail);
	assert_int_equal(O.argc, 3);
	assert_string_equal(O.argv[2], "echo hi");
	assert_int_equal(PARSE("--image", "./my.ext4", "--json", "true"), 0);
	assert_true(O.image_is_path);
	assert_true(O.json);
	assert_int_equal(PARSE("--output-max", "0", "--user", "sandbox", "true"), 0);
	assert_int_equal(O.output_max, 0);
	assert_int_equal(PARSE("--mem=64M", "true"), 0);
	assert_int_equal(O.mem, 64ull << 20);
}

struct reject {
	const char *args[6];
	const char *msg;
};

static void test_parse_reject(void **state)
{
	(void)state;
	static const struct reject r[] = {
		{ { "--mem", "1X", "true" }, "--mem 1X: not a size (digits and an optional K, M, G or T suffix)" },
		{ { "--mem", "31M", "true" }, "--mem 31M: out of range (32M..16G)" },
		{ { "--mem", "17G", "true" }, "--mem 17G: out of range (32M..16G)" },
		{ { "--mem", "33000K", "true" }, "--mem 33000K: not a whole number of MiB" },
		{ { "--mem", "-1", "true" }, "--mem -1: not a size (digits and an optional K, M, G or T suffix)" },
		{ { "--vcpus", "0", "true" }, "--vcpus 0: expected a number in 1..32" },
		{ { "--vcpus", "33", "true" }, "--vcpus 33: expected a number in 1..32" },
		{ { "--vcpus", "1x", "true" }, "--vcpus 1x: expected a number in 1..32" },
		{ { "--timeout", "0", "true" }, "--timeout 0: out of range (100ms..24h)" },
		{ { "--timeout", "25h", "true" }, "--timeout 25h: out of range (100ms..24h)" },
		{ { "--timeout", "10x", "true" }, "--timeout 10x: not a duration (digits and a unit: ms, s, m or h)" },
		{ { "--timeout", "", "true" }, "--timeout : not a duration (digits and a unit: ms, s, m or h)" },
		{ { "--cpu-time", "0s", "true" }, "--cpu-time 0s: out of range (1s..24h)" },
		{ { "--cpu-time", "1500ms", "true" }, "--cpu-time 1500ms: not a whole number of seconds" },
		{ { "--pids", "0", "true" }, "--pids 0: expected a number in 1..65536" },
		{ { "--pids", "65537", "true" }, "--pids 65537: expected a number in 1..65536" },
		{ { "--output-max", "2G", "true" }, "--output-max 2G: out of range (0..1G)" },
		{ { "--disk", "8M", "true" }, "--disk 8M: out of range (16M..64G)" },
		{ { "--disk", "65G", "true" }, "--disk 65G: out of range (16M..64G)" },
		{ { "--disk", "16777217", "true" }, "--disk 16777217: not a multiple of 4K" },
		{ { "--env", "A", "true" }, "--env A: expected NAME=VALUE, NAME from [A-Za-z0-9_] not starting with a digit" },
		{ { "--env", "=x", "true" }, "--env =x: expected NAME=VALUE, NAME from [A-Za-z0-9_] not starting with a digit" },
		{ { "--env", "1A=x", "true" }, "--env 1A=x: expected NAME=VALUE, NAME from [A-Za-z0-9_] not starting with a digit" },
		{ { "--env", "A-B=x", "true" }, "--env A-B=x: expected NAME=VALUE, NAME from [A-Za-z0-9_] not starting with a digit" },
		{ { "--cwd", "", "true" }, "--cwd: expected a path of 1..4095 bytes" },
		{ { "--user", "admin", "true" }, "--user admin: expected root or sandbox" },
		{ { "--put", "/h", "true" }, "--put /h: expected HOST:GUEST" },
		{ { "--put", ":g", "true" }, "--put :g: expected HOST:GUEST" },
		{ { "--put", "/h:", "true" }, "--put /h:: expected HOST:GUEST" },
		{ { "--put", "/h:../x", "true" }, "--put /h:../x: guest path ../x refused: '..' path component (a relative path under /work)" },
		{ { "--get", "a/../b:/h", "true" }, "--get a/../b:/h: guest path a/../b refused: '..' path component (a relative path under /work)" },
		{ { "--image", "Big", "true" }, "--image Big: a NAME has 1-32 characters from [a-z0-9-] (a path needs a '/')" },
		{ { "--image", "", "true" }, "--image : a NAME has 1-32 characters from [a-z0-9-] (a path needs a '/')" },
		{ { "--kernel", "", "true" }, "--kernel: expected a path" },
		{ { "--result-fd", "0", "true" }, "--result-fd 0: expected a descriptor number in 1..65535" },
		{ { "--json", "--result-fd", "3", "true" }, "--json and --result-fd: give one of them" },
		{ { "--mem", "64M", "--mem", "64M", "true" }, "--mem given twice" },
		{ { "--bogus", "true" }, "unknown option --bogus" },
		{ { "-xy", "true" }, "unknown option -x" },
		{ { "-\033", "true" }, "unknown option -?" },
		{ { "--mem", "1\n2", "true" }, "--mem 1?2: not a size (digits and an optional K, M, G or T suffix)" },
		{ { "--user", "\033[2Jroot", "true" }, "--user ?[2Jroot: expected root or sandbox" },
		{ { "--put", "/h\r:../x", "true" }, "--put /h?:../x: guest path ../x refused: '..' path component (a relative path under /work)" },
		{ { "--timeout" }, "--timeout needs a value" },
		{ { "--" }, "no command given (kiln run [options] -- CMD [ARGS...])" },
		{ { "" }, "the command name is empty" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(r); i++) {
		int rc = parse_v(r[i].args);
		if (rc != -EINVAL || strcmp(err, r[i].msg) != 0)
			fail_msg("case %zu: rc %d, message \"%s\", expected \"%s\"", i, rc, err, r[i].msg);
	}
	/* absolute and other malformed guest paths */
	const char *badpaths[] = { "/h:/etc/x", "/h:a//b", "/h:a/", "/h:./a" };
	for (size_t i = 0; i < ARRAY_SIZE(badpaths); i++)
		assert_int_equal(PARSE("--put", badpaths[i], "true"), -EINVAL);
}

static void test_parse_limits(void **state)
{
	static char big[40000];
	(void)state;

	/* 16 --put files at most */
	{
		const char *a[40];
		int n = 0;
		for (int i = 0; i < 17; i++) {
			a[n++] = "--put";
			a[n++] = "/h:g";
		}
		a[n++] = "true";
		a[n] = NULL;
		assert_int_equal(parse_v(a), -EINVAL);
		assert_string_equal(err, "--put: at most 16 files");
	}
	/* an argument beyond the agent's 32 KiB cap */
	memset(big, 'a', sizeof(big) - 1);
	{
		static char *argv[4];
		argv[0] = "run";
		argv[1] = "echo";
		argv[2] = big;
		argv[3] = NULL;
		assert_int_equal(run_opts_parse(3, argv, &O, err, sizeof(err)), -EINVAL);
		assert_string_equal(err, "argument 1 is longer than 32768 bytes");
	}
	/* a long bad value is quoted cut to 256 characters and "..." */
	{
		static char val[301];
		static char *argv[5];
		memset(val, 'u', 300);
		argv[0] = "run";
		argv[1] = "--user";
		argv[2] = val;
		argv[3] = "true";
		assert_int_equal(run_opts_parse(4, argv, &O, err, sizeof(err)), -EINVAL);
		assert_int_equal(strlen(err), strlen("--user : expected root or sandbox") + 256 + 3);
		assert_non_null(strstr(err, "uuu...: expected root or sandbox"));
	}
	/* five 30 KiB arguments: each fits, the EXEC frame would not */
	big[30000] = 0;
	{
		static char *argv[8];
		argv[0] = "run";
		for (int i = 1; i <= 6; i++)
			argv[i] = big;
		argv[7] = NULL;
		assert_int_equal(run_opts_parse(7, argv, &O, err, sizeof(err)), -EINVAL);
		assert_string_equal(err, "command, environment and --cwd together exceed 131072 bytes");
	}
}

static struct run_facts exited(uint32_t code)
{
	struct run_facts f = { 0 };
	f.got_hello = f.got_exit = f.vmm_ended = true;
	f.exit.kind = KA_EXITED;
	f.exit.code = code;
	return f;
}

static struct run_facts signaled(uint32_t sig)
{
	struct run_facts f = exited(0);
	f.exit.kind = KA_SIGNALED;
	f.exit.code = sig;
	return f;
}

static void expect(const struct run_facts *f, enum run_reason reason, int status)
{
	struct run_result r;

	run_decide(f, &r);
	if (r.reason != reason || r.exit_status != status)
		fail_msg("got %s/%d, expected %s/%d", run_reason_name(r.reason), r.exit_status,
			 run_reason_name(reason), status);
}

static void test_decide(void **state)
{
	struct run_facts f;
	(void)state;

	f = exited(0);
	expect(&f, RR_OK, 0);
	f = exited(3);
	expect(&f, RR_NONZERO_EXIT, 3);
	f.disk_full = true;
	expect(&f, RR_DISK_FULL, 3);
	f = exited(0);
	f.disk_full = true; /* a full disk and success: ok */
	expect(&f, RR_OK, 0);
	f = signaled(SIGKILL);
	expect(&f, RR_SIGNALED, 137);
	/* guest-oom: the agent's flag and SIGKILL, the console line and the memory the host saw */
	f.exit.flags = KA_EXIT_F_OOM;
	f.console_oom = true;
	f.mem_bytes = 96ull << 20;
	f.vmm_peak_bytes = 90ull << 20;
	expect(&f, RR_GUEST_OOM, 137);
	f.vmm_peak_bytes = 48ull << 20; /* exactly half */
	expect(&f, RR_GUEST_OOM, 137);
	f.vmm_peak_bytes = 40ull << 20; /* the guest never used most of its memory */
	expect(&f, RR_SIGNALED, 137);
	f.vmm_peak_bytes = 90ull << 20;
	f.console_oom = false; /* no OOM-kill line from the guest kernel */
	expect(&f, RR_SIGNALED, 137);
	f.console_oom = true;
	f.exit.flags = 0; /* the host's signs without the agent's flag */
	expect(&f, RR_SIGNALED, 137);
	f.exit.flags = KA_EXIT_F_OOM;
	f.mem_bytes = 0;
	expect(&f, RR_SIGNALED, 137);
	f = signaled(SIGTERM); /* an OOM elsewhere, the command killed otherwise */
	f.exit.flags = KA_EXIT_F_OOM;
	f.console_oom = true;
	f.mem_bytes = 96ull << 20;
	f.vmm_peak_bytes = 90ull << 20;
	expect(&f, RR_SIGNALED, 128 + SIGTERM);
	/* cpu-time needs the limit, the agent's usage and the host's observation */
	f = signaled(SIGXCPU);
	f.cpu_limit_ms = 2000;
	f.exit.user_us = 2000000;
	f.vmm_cpu_us = 2500000;
	expect(&f, RR_CPU_TIME, 128 + SIGXCPU);
	f.vmm_cpu_us = 100000; /* the agent claims CPU the host never saw spent */
	expect(&f, RR_SIGNALED, 128 + SIGXCPU);
	f.vmm_cpu_us = 2500000;
	f.exit.user_us = 1000;
	expect(&f, RR_SIGNALED, 128 + SIGXCPU);
	f = signaled(SIGXCPU);
	expect(&f, RR_SIGNALED, 128 + SIGXCPU); /* no --cpu-time */
	/* 1.8 s of 2 s (the 10 % allowance) counts, less does not */
	f = signaled(SIGKILL);
	f.cpu_limit_ms = 2000;
	f.vmm_cpu_us = 2500000;
	f.exit.user_us = 1000000;
	f.exit.sys_us = 800000;
	expect(&f, RR_CPU_TIME, 128 + SIGKILL);
	f.exit.sys_us = 799999;
	expect(&f, RR_SIGNALED, 128 + SIGKILL);
	/* usage figures that wrap a u64 when added saturate: they do not read as 8 us */
	f.exit.user_us = UINT64_MAX - 1;
	f.exit.sys_us = 10;
	expect(&f, RR_CPU_TIME, 128 + SIGKILL);

	/* kiln's own decisions win over the command's */
	f = exited(0);
	f.timed_out = f.killed_by_us = true;
	expect(&f, RR_TIMEOUT, KILN_RUN_EXIT_TIMEOUT);
	f = exited(0);
	f.got_exit = false;
	f.output_limit = true;
	expect(&f, RR_OUTPUT_LIMIT, KILN_RUN_EXIT_OUTPUT);
	f.proto_error = true;
	expect(&f, RR_AGENT_PROTOCOL, KILN_RUN_EXIT_SANDBOX);
	f.interrupted = true;
	f.interrupt_sig = SIGTERM;
	expect(&f, RR_INTERRUPTED, 143);
	f.setup_failed = true;
	expect(&f, RR_SETUP_ERROR, KILN_RUN_EXIT_SETUP);

	/* the VMM's end, as the host saw it */
	f = exited(0);
	f.vmm_signaled = true;
	f.vmm_code = SIGSYS;
	expect(&f, RR_VMM_SECCOMP, KILN_RUN_EXIT_SANDBOX); /* even after an EXIT */
	f.vmm_code = SIGSEGV;
	expect(&f, RR_VMM_CRASH, KILN_RUN_EXIT_SANDBOX);
	f.killed_by_us = true; /* kiln's own kill after EXIT: the command's result stands */
	expect(&f, RR_OK, 0);
	f = exited(0);
	f.got_exit = false;
	f.vmm_code = 4;
	expect(&f, RR_GUEST_PANIC, KILN_RUN_EXIT_SANDBOX);
	f.vmm_code = 6;
	expect(&f, RR_GUEST_PANIC, KILN_RUN_EXIT_SANDBOX);
	f.vmm_code = 1;
	expect(&f, RR_VMM_CRASH, KILN_RUN_EXIT_SANDBOX);
	f.vmm_code = 0; /* the agent answered, then powered off without EXIT */
	expect(&f, RR_AGENT_PROTOCOL, KILN_RUN_EXIT_SANDBOX);
	f.got_hello = false; /* never answered */
	expect(&f, RR_SETUP_ERROR, KILN_RUN_EXIT_SETUP);
	f.got_hello = true;
	f.vmm_code = 7; /* the jail could not be built */
	expect(&f, RR_SETUP_ERROR, KILN_RUN_EXIT_SETUP);
	f.vmm_code = 3;
	expect(&f, RR_SETUP_ERROR, KILN_RUN_EXIT_SETUP);
	f.vmm_ended = false; /* no EXIT and the VM still up: only a protocol failure gets here */
	expect(&f, RR_AGENT_PROTOCOL, KILN_RUN_EXIT_SANDBOX);

	assert_string_equal(run_reason_name(RR_AGENT_PROTOCOL), "agent-protocol-error");
	assert_string_equal(run_reason_name(RR_COUNT), "?");
}

static void test_con_watch(void **state)
{
	static const char line[] = "[    3.1] Out of memory: Killed process 71 (awk) total-vm:9kB\n";
	struct con_watch w;
	(void)state;

	/* Whole, and split at every byte. */
	memset(&w, 0, sizeof(w));
	con_watch_feed(&w, line, strlen(line));
	assert_true(w.oom);
	for (size_t cut = 0; cut <= strlen(line); cut++) {
		memset(&w, 0, sizeof(w));
		con_watch_feed(&w, line, cut);
		con_watch_feed(&w, line + cut, strlen(line) - cut);
		assert_true(w.oom);
	}
	for (size_t i = 0; i < strlen(line); i++) {
		if (i == 0)
			memset(&w, 0, sizeof(w));
		con_watch_feed(&w, line + i, 1);
	}
	assert_true(w.oom);
	/* A restart inside a near match; lookalikes are not the line. */
	memset(&w, 0, sizeof(w));
	con_watch_feed(&w, "Out of memOut of memory: Killed process", 39);
	assert_true(w.oom);
	const char *no[] = { "Out of memory: Killed proces", "out of memory: Killed process",
			     "Out of memory (oom_kill_allocating_task)", "Out of memory: killed process",
			     "Out of memory:\nKilled process", "" };
	for (size_t i = 0; i < ARRAY_SIZE(no); i++) {
		memset(&w, 0, sizeof(w));
		con_watch_feed(&w, no[i], strlen(no[i]));
		assert_false(w.oom);
	}
	/* Once seen, it stays seen. */
	memset(&w, 0, sizeof(w));
	con_watch_feed(&w, line, strlen(line));
	con_watch_feed(&w, "more", 4);
	assert_true(w.oom);
}

/* The console tail as kiln prints it: no control byte but newline and tab reaches the caller. */
static void test_con_clean(void **state)
{
	static const char in[] = "boot\r\nok\x1b[2J\tend\r\x07\x7f\xc3\xa9\r\n\r";
	char out[sizeof(in)];
	(void)state;

	size_t n = con_clean(out, in, sizeof(in) - 1);
	assert_int_equal(n, strlen("boot\nok?[2J\tend???\xc3\xa9\n?"));
	assert_memory_equal(out, "boot\nok?[2J\tend???\xc3\xa9\n?", n);
	assert_int_equal(con_clean(out, "", 0), 0);
}

static void test_record(void **state)
{
	struct run_record rec = { 0 };
	struct run_facts f = signaled(SIGKILL);
	char buf[2048];
	long n;
	(void)state;

	f.exit.flags = KA_EXIT_F_OOM;
	f.console_oom = true;
	f.mem_bytes = 4096 * 1024;
	f.vmm_peak_bytes = 4096 * 1024;
	run_decide(&f, &rec.r);
	rec.id = "kabc";
	rec.message = "say \"hi\"\n\\\x01";
	rec.stdout_truncated = true;
	rec.stdout_bytes = 65536;
	rec.stderr_bytes = 3;
	rec.undelivered_bytes = 12345;
	rec.oom = true;
	rec.pids_limit_hit = true;
	rec.cpu_user_us = 1500;
	rec.cpu_sys_us = 2999;
	rec.peak_rss_kb = 77;
	rec.vmm_cpu_us = 1000000;
	rec.vmm_peak_bytes = 2048 * 1024;
	rec.t_jail_us = 1000;
	rec.t_boot_us = 2000;
	rec.t_run_us = 3000;
	rec.t_teardown_us = 4000;
	rec.t_total_us = 10000;
	n = run_record_json(&rec, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(buf));
	assert_string_equal(buf,
		"{\"id\":\"kabc\",\"reason\":\"guest-oom\",\"status\":\"signaled\",\"exit_code\":null,"
		"\"signal\":9,\"kiln_exit\":137,\"message\":\"say \\\"hi\\\"\\n\\\\\\u0001\","
		"\"stdout_bytes\":65536,\"stderr_bytes\":3,\"stdout_truncated\":true,"
		"\"stderr_truncated\":false,\"undelivered_bytes\":12345,\"oom\":true,\"pids_limit_hit\":true,\"usage\":{\"cpu_user_ms\":1,\"cpu_sys_ms\":2,"
		"\"peak_rss_kb\":77,\"vmm_cpu_ms\":1000,\"vmm_peak_kb\":2048},\"timings_ms\":{\"jail\":1,"
		"\"boot\":2,\"run\":3,\"teardown\":4,\"total\":10}}\n");

	f = exited(0);
	f.got_exit = false;
	f.timed_out = true;
	memset(&rec, 0, sizeof(rec));
	run_decide(&f, &rec.r);
	n = run_record_json(&rec, buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(strstr(buf, "\"reason\":\"timeout\",\"status\":\"none\",\"exit_code\":null,"
				    "\"signal\":null,\"kiln_exit\":124,\"message\":\"\""));
	/* a hostile agent's bytes: valid UTF-8 kept, each ill-formed subpart one U+FFFD */
	rec.message = "caf\xc3\xa9 \xf0\x9f\x94\xa5 \xff\xc3(\xe2\x82x\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80\x7f";
	n = run_record_json(&rec, buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(strstr(buf, "\"message\":\"caf\xc3\xa9 \xf0\x9f\x94\xa5 \\ufffd\\ufffd(\\ufffdx"
				    "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\u007f\","));
	/* too small a buffer: an error, never a cut record */
	assert_int_equal(run_record_json(&rec, buf, 40), -ENOSPC);
	assert_int_equal(run_record_json(&rec, buf, 0), -ENOSPC);
}

/* The caller's output queue: bounded, order kept, never beyond its cap, the overflow counted. */
static struct outq Q;

static void test_outq(void **state)
{
	static uint8_t chunk[KA_CHUNK_MAX], big[OUTQ_CAP + 100];
	const uint8_t *p;
	size_t n, total = 0;
	(void)state;

	memset(&Q, 0, sizeof(Q));
	p = outq_peek(&Q, &n);
	assert_int_equal(n, 0);
	assert_true(outq_has_room(&Q, KA_CHUNK_MAX, OUTQ_SOFT));
	/* Frames while each fits below the soft limit: the gate then closes. */
	for (unsigned i = 0; outq_has_room(&Q, KA_CHUNK_MAX, OUTQ_SOFT); i++) {
		memset(chunk, 'a' + (int)(i % 26), sizeof(chunk));
		assert_int_equal(outq_push(&Q, chunk, sizeof(chunk)), sizeof(chunk));
		total += sizeof(chunk);
	}
	assert_int_equal(total, OUTQ_SOFT);
	assert_int_equal(outq_used(&Q), OUTQ_SOFT);
	assert_false(outq_has_room(&Q, 1, OUTQ_SOFT));
	assert_true(outq_has_room(&Q, KA_CHUNK_MAX, OUTQ_CAP));
	/* A partial write by the caller: the rest stays, in order. */
	outq_consume(&Q, 10);
	p = outq_peek(&Q, &n);
	assert_int_equal(n, OUTQ_SOFT - 10);
	assert_int_equal(p[0], 'a');
	outq_consume(&Q, KA_CHUNK_MAX - 10);
	p = outq_peek(&Q, &n);
	assert_int_equal(p[0], 'b');
	assert_true(outq_has_room(&Q, KA_CHUNK_MAX, OUTQ_SOFT));
	/* Beyond the hard cap: what does not fit is dropped and counted, after compaction. */
	memset(big, 'z', sizeof(big));
	n = outq_push(&Q, big, sizeof(big));
	assert_int_equal(n, OUTQ_CAP - (OUTQ_SOFT - KA_CHUNK_MAX));
	assert_int_equal(outq_used(&Q), OUTQ_CAP);
	assert_int_equal(Q.dropped, sizeof(big) - n);
	p = outq_peek(&Q, &n);
	assert_int_equal(p[0], 'b');
	assert_int_equal(p[n - 1], 'z');
	assert_int_equal(outq_push(&Q, "x", 1), 0);
	assert_int_equal(Q.dropped, sizeof(big) - (OUTQ_CAP - (OUTQ_SOFT - KA_CHUNK_MAX)) + 1);
	assert_false(outq_has_room(&Q, 0 + 1, OUTQ_CAP));
	assert_true(outq_has_room(&Q, 0, OUTQ_CAP));
	/* Consuming more than is queued empties it; a discard counts what was queued. */
	outq_consume(&Q, OUTQ_CAP * 2);
	assert_int_equal(outq_used(&Q), 0);
	assert_int_equal(Q.off, 0);
	assert_int_equal(outq_push(&Q, "hello", 5), 5);
	n = (size_t)Q.dropped;
	outq_discard(&Q);
	assert_int_equal(outq_used(&Q), 0);
	assert_int_equal(Q.dropped, n + 5);
	/* A chunk larger than the limit never fits. */
	assert_false(outq_has_room(&Q, OUTQ_SOFT + 1, OUTQ_SOFT));
	assert_false(outq_has_room(&Q, OUTQ_CAP + 1, (size_t)-1));

	/* How each kind of caller fd is written. */
	assert_int_equal(outq_how_for(S_IFREG | 0644), OUTQ_PLAIN);
	assert_int_equal(outq_how_for(S_IFBLK | 0600), OUTQ_PLAIN);
	assert_int_equal(outq_how_for(S_IFIFO | 0600), OUTQ_REOPEN);
	assert_int_equal(outq_how_for(S_IFCHR | 0620), OUTQ_REOPEN);
	assert_int_equal(outq_how_for(S_IFSOCK | 0777), OUTQ_SOCKET);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_parse_defaults),
		cmocka_unit_test(test_parse_all),
		cmocka_unit_test(test_parse_reject),
		cmocka_unit_test(test_parse_limits),
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_con_watch),
		cmocka_unit_test(test_con_clean),
		cmocka_unit_test(test_record),
		cmocka_unit_test(test_outq),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
