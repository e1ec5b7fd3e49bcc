/* test_cli.c: cmocka tests of kiln-vmm's command line (vmm/cli.c) and of the message helpers every
 * binary shares (common/util.c): one line per message, untrusted values quoted safely. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/boot.h"
#include "vmm/cli.h"

static struct vmm_opts O;
static char err[512];

/* Parse a NULL-terminated list of arguments after "kiln-vmm" (copied: --disk splits in place). */
static int parse_v(const char *const *args)
{
	static char *argv[64];
	static char store[64][5000];
	int argc = 0;

	argv[argc++] = strcpy(store[0], "kiln-vmm");
	for (; *args; args++, argc++)
		argv[argc] = strcpy(store[argc], *args);
	argv[argc] = NULL;
	return vmm_cli_parse(argc, argv, &O, err, sizeof(err));
}
#define PARSE(...) parse_v((const char *const[]){ __VA_ARGS__, NULL })

static void test_defaults_and_values(void **state)
{
	(void)state;
	assert_int_equal(PARSE("--kernel", "k"), VMM_CLI_RUN);
	assert_string_equal(O.kernel, "k");
	assert_null(O.initrd);
	assert_string_equal(O.cmdline, VMM_DEFAULT_CMDLINE);
	assert_int_equal(O.mem_mib, 128);
	assert_int_equal(O.vcpus, 1);
	assert_int_equal(O.ndisks, 0);
	assert_int_equal(O.has_vsock, 0);
	assert_int_equal(O.hold_fd, -1);

	assert_int_equal(PARSE("--kernel", "k", "--initrd", "i", "--cmdline", "quiet", "--mem", "32",
			       "--vcpus", "32", "--disk", "/a,ro,id=s1", "--disk", "/b", "--vsock",
			       "cid=3,uds=/v", "--hold-fd", "3"), VMM_CLI_RUN);
	assert_string_equal(O.initrd, "i");
	assert_string_equal(O.cmdline, "quiet");
	assert_int_equal(O.mem_mib, 32);
	assert_int_equal(O.vcpus, 32);
	assert_int_equal(O.ndisks, 2);
	assert_string_equal(O.disk[0].path, "/a");
	assert_string_equal(O.disk[1].path, "/b");
	assert_int_equal(O.has_vsock, 1);
	assert_int_equal(O.vsock.cid, 3);
	assert_string_equal(O.vsock.uds, "/v");
	assert_int_equal(O.hold_fd, 3);
	assert_int_equal(PARSE("--mem=65536", "--kernel=k"), VMM_CLI_RUN);
	assert_int_equal(O.mem_mib, 65536);

	assert_int_equal(PARSE("--help"), VMM_CLI_HELP);
	assert_int_equal(PARSE("--print-policy"), VMM_CLI_POLICY);
	/* a 4095-byte command line is the most there is */
	static char cl[BOOT_CMDLINE_MAX + 1];
	memset(cl, 'c', BOOT_CMDLINE_MAX);
	assert_int_equal(PARSE("--kernel", "k", "--cmdline", cl), VMM_CLI_RUN);
}

struct reject {
	const char *args[6];
	const char *msg;
};

static void test_reject(void **state)
{
	(void)state;
	static const struct reject r[] = {
		{ { "--kernel", "k", "--mem", "0" }, "--mem '0': need a whole number of MiB in 32..65536" },
		{ { "--kernel", "k", "--mem", "65537" }, "--mem '65537': need a whole number of MiB in 32..65536" },
		{ { "--kernel", "k", "--mem", "1\n2" }, "--mem '1?2': need a whole number of MiB in 32..65536" },
		{ { "--kernel", "k", "--vcpus", "0" }, "--vcpus '0': need a number in 1..32" },
		{ { "--kernel", "k", "--vcpus", "33" }, "--vcpus '33': need a number in 1..32" },
		{ { "--kernel", "k", "--disk", "/a,zz,\x1b" }, "--disk '/a,zz,?': need PATH[,ro][,id=SERIAL] (SERIAL 1..20 printable characters)" },
		{ { "--kernel", "k", "--vsock", "cid=2,uds=/v" }, "--vsock 'cid=2,uds=/v': need cid=N,uds=PATH[,max_conns=N] with N >= 3" },
		{ { "--vsock", "cid=3,uds=/v", "--vsock", "cid=4,uds=/w" }, "--vsock given twice" },
		{ { "--kernel", "k", "--kernel", "k2" }, "--kernel given twice" },
		{ { "--kernel", "k", "--mem", "64", "--mem=128" }, "--mem given twice" },
		{ { "--kernel", "k", "--cmdline", "a", "--cmdline", "b" }, "--cmdline given twice" },
		{ { "--kernel", "k", "--initrd", "a", "--initrd", "a" }, "--initrd given twice" },
		{ { "--kernel", "k", "--vcpus", "1", "--vcpus", "2" }, "--vcpus given twice" },
		{ { "--kernel", "k", "--hold-fd", "3", "--hold-fd", "4" }, "--hold-fd given twice" },
		{ { "--kernel", "k", "--hold-fd", "2" }, "--hold-fd '2': need a file descriptor number, 3 or more" },
		{ { "--kernel" }, "option --kernel needs a value (see --help)" },
		{ { "--kernel", "k", "--mem" }, "option --mem needs a value (see --help)" },
		{ { "--no-such", "--kernel", "k" }, "unknown option --no-such (see --help)" },
		{ { "-xy", "--kernel", "k" }, "unknown option -x (see --help)" },
		{ { "--kernel", "k", "-\n" }, "unknown option -? (see --help)" },
		{ { "--help=1" }, "unknown option --help=1 (see --help)" },
		{ { "--kernel", "k", "stray\tone" }, "unexpected argument 'stray?one' (see --help)" },
		{ { "--initrd", "i" }, "--kernel is required (see --help)" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(r); i++) {
		int rc = parse_v(r[i].args);
		if (rc != -EINVAL || strcmp(err, r[i].msg) != 0)
			fail_msg("case %zu: rc %d, message \"%s\", expected \"%s\"", i, rc, err, r[i].msg);
	}
	/* at most 8 disks; a command line one byte too long */
	const char *d[24];
	int n = 0;
	for (int i = 0; i < 9; i++) {
		d[n++] = "--disk";
		d[n++] = "/d";
	}
	d[n++] = "--kernel";
	d[n++] = "k";
	d[n] = NULL;
	assert_int_equal(parse_v(d), -EINVAL);
	assert_string_equal(err, "--disk: at most 8 disks");
	static char cl[BOOT_CMDLINE_MAX + 2];
	memset(cl, 'c', BOOT_CMDLINE_MAX + 1);
	assert_int_equal(PARSE("--kernel", "k", "--cmdline", cl), -EINVAL);
	assert_string_equal(err, "--cmdline is 4096 bytes, at most 4095 allowed");
	/* a long bad value is cut to 256 characters and "..." */
	static char big[4000];
	memset(big, '9', sizeof(big) - 1);
	assert_int_equal(PARSE("--kernel", "k", "--vcpus", big), -EINVAL);
	assert_int_equal(strlen(err), strlen("--vcpus '': need a number in 1..32") + 256 + 3);
}

static void test_printable(void **state)
{
	char b[8];
	(void)state;

	assert_string_equal(kiln_printable("abc", b, sizeof(b)), "abc");
	assert_string_equal(kiln_printable("abcd", b, sizeof(b)), "abcd");
	assert_string_equal(kiln_printable("abcde", b, sizeof(b)), "abcd...");
	assert_string_equal(kiln_printable("a\nb\x7f\xc3\xa9", b, sizeof(b)), "a?b?...");
	assert_string_equal(kiln_printable("\x1b[2J", b, sizeof(b)), "?[2J");
	assert_string_equal(kiln_printable("", b, sizeof(b)), "");
	assert_string_equal(kiln_printable("abcdefgh", b, 5), "a...");

	char line[] = "a\nb\rc\td\x1b" "e\x7f" "f\xc3\xa9";
	kiln_one_line(line);
	assert_string_equal(line, "a?b?c?d?e?f\xc3\xa9");
}

/* Well-formed UTF-8 and the maximal ill-formed subparts (the bytes one U+FFFD replaces). */
static void test_utf8(void **state)
{
	static const struct {
		const char *s;
		size_t len;
		bool valid;
	} t[] = {
		{ "a", 1, true }, { "\x7f", 1, true }, { "\xc3\xa9", 2, true }, { "\xe2\x82\xac", 3, true },
		{ "\xf0\x9f\x94\xa5", 4, true }, { "\xf4\x8f\xbf\xbf", 4, true }, { "\xed\x9f\xbf", 3, true },
		{ "\xee\x80\x80", 3, true }, { "\xe0\xa0\x80", 3, true }, { "\xf0\x90\x80\x80", 4, true },
		{ "\x80", 1, false },            /* a lone continuation byte */
		{ "\xc0\xaf", 1, false },        /* C0, C1: overlong leads */
		{ "\xc1\xbf", 1, false },
		{ "\xf5\x80\x80\x80", 1, false }, /* beyond U+10FFFF's leads */
		{ "\xff", 1, false },
		{ "\xc3", 1, false },            /* cut short by the end */
		{ "\xc3(", 1, false },
		{ "\xe2\x82", 2, false },
		{ "\xe2\x82x", 2, false },
		{ "\xf0\x9f\x94", 3, false },
		{ "\xe0\x80\x80", 1, false },    /* overlong */
		{ "\xf0\x8f\xbf\xbf", 1, false },
		{ "\xed\xa0\x80", 1, false },    /* a surrogate */
		{ "\xf4\x90\x80\x80", 1, false }, /* above U+10FFFF */
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		bool valid = !t[i].valid;
		size_t len = kiln_utf8_seq((const unsigned char *)t[i].s, strlen(t[i].s), &valid);
		if (len != t[i].len || valid != t[i].valid)
			fail_msg("case %zu: length %zu valid %d, expected %zu %d", i, len, valid, t[i].len,
				 t[i].valid);
	}
}

/* kiln_warn prints one line whatever its arguments hold. */
static void test_warn_one_line(void **state)
{
	char path[] = "/tmp/kiln-test-cli-XXXXXX", buf[256];
	int fd = mkstemp(path), saved = dup(2);
	(void)state;

	assert_true(fd >= 0 && saved >= 0);
	unlink(path);
	assert_int_equal(dup2(fd, 2), 2);
	kiln_set_progname("t");
	kiln_warn("file %s", "a\nb\x1b[1m");
	kiln_warn_errno(ENOENT, "x\ry");
	fflush(stderr);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "t: file a?b?[1m\nt: x?y: No such file or directory\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_values),
		cmocka_unit_test(test_reject),
		cmocka_unit_test(test_printable),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_warn_one_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
