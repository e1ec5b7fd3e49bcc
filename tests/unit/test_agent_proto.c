/* test_agent_proto.c: cmocka unit tests for the agent wire protocol (common/agent_proto.c): round trips and every rejection. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/agent_proto.h"

static uint8_t buf[2 * KA_MAX_FRAME];
static struct ka_exec X, Y;

static struct ka_str S(const char *s)
{
	return (struct ka_str){ s, (uint32_t)strlen(s) };
}

static void hdr(uint8_t *p, uint32_t magic, uint8_t ver, uint8_t type, uint16_t zero, uint32_t len)
{
	st32(p, magic);
	p[4] = ver;
	p[5] = type;
	st16(p + 6, zero);
	st32(p + 8, len);
}

/* A minimal valid EXEC in X. */
static void base_exec(void)
{
	memset(&X, 0, sizeof(X));
	X.user = KA_USER_SANDBOX;
	X.cwd = S("sub");
	X.argc = 2;
	X.argv[0] = S("sh");
	X.argv[1] = S("-c");
	X.envc = 1;
	X.env[0] = S("A=b");
	X.nrlimits = 1;
	X.rl[0] = (struct ka_rlimit){ 7, 64, 128 };
}

static long enc_exec(void)
{
	struct ka_enc e;
	ka_enc_init(&e, buf, sizeof(buf));
	return ka_enc_exec(&e, &X);
}

/* Decode the EXEC frame in buf (header checked too). */
static int dec_exec(long n)
{
	struct ka_hdr h;
	int rc = ka_hdr_decode(buf, (size_t)n, &h);
	if (rc)
		return rc;
	return ka_exec_decode(buf + KA_HDR_SIZE, h.len, &Y);
}

static void test_exec_round_trip(void **st)
{
	long n;
	(void)st;
	base_exec();
	n = enc_exec();
	assert_true(n > (long)KA_HDR_SIZE);
	assert_int_equal(ka_frame_check(buf, (size_t)n, &Y), n);
	assert_int_equal(dec_exec(n), 0);
	assert_int_equal(Y.user, KA_USER_SANDBOX);
	assert_int_equal(Y.argc, 2);
	assert_memory_equal(Y.argv[1].p, "-c", 2);
	assert_int_equal(Y.envc, 1);
	assert_int_equal(Y.env[0].len, 3);
	assert_int_equal(Y.cwd.len, 3);
	assert_int_equal(Y.nrlimits, 1);
	assert_int_equal(Y.rl[0].resource, 7);
	assert_int_equal(Y.rl[0].cur, 64);
	assert_int_equal(Y.rl[0].max, 128);
	/* every strict prefix is incomplete */
	for (long k = 0; k < n; k++)
		assert_int_equal(ka_frame_check(buf, (size_t)k, &Y), -EAGAIN);
}

static void test_header_rejections(void **st)
{
	struct ka_hdr h;
	(void)st;
	hdr(buf, KA_MAGIC, KA_VERSION, KA_STDOUT, 0, 5);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), 0);
	assert_int_equal(h.type, KA_STDOUT);
	assert_int_equal(h.len, 5);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE - 1, &h), -EAGAIN);      /* truncated header */
	hdr(buf, 0x12345678, KA_VERSION, KA_STDOUT, 0, 5);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_EBADMAGIC);     /* bad magic */
	hdr(buf, KA_MAGIC, 2, KA_STDOUT, 0, 5);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_EVERSION);      /* bad version */
	hdr(buf, KA_MAGIC, 0, KA_STDOUT, 0, 5);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_EVERSION);
	hdr(buf, KA_MAGIC, KA_VERSION, 0x42, 0, 0);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_ETYPE);         /* unknown type */
	hdr(buf, KA_MAGIC, KA_VERSION, 0, 0, 0);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_ETYPE);
	hdr(buf, KA_MAGIC, KA_VERSION, KA_STDOUT, 1, 5);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_EVALUE);        /* reserved non-zero */
	/* length beyond each type's cap */
	hdr(buf, KA_MAGIC, KA_VERSION, KA_STDIN, 0, KA_CHUNK_MAX + 1);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_ETOOLONG);
	hdr(buf, KA_MAGIC, KA_VERSION, KA_STDIN, 0, KA_CHUNK_MAX);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), 0);
	hdr(buf, KA_MAGIC, KA_VERSION, KA_EXEC, 0, KA_MAX_PAYLOAD + 1);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_ETOOLONG);
	hdr(buf, KA_MAGIC, KA_VERSION, KA_EXEC, 0, UINT32_MAX);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_ETOOLONG);
	hdr(buf, KA_MAGIC, KA_VERSION, KA_BYE, 0, 1);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_ETOOLONG);      /* empty types */
	hdr(buf, KA_MAGIC, KA_VERSION, KA_STDIN_CLOSE, 0, 1);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_ETOOLONG);
	hdr(buf, KA_MAGIC, KA_VERSION, KA_PUT, 0, 16 + KA_PATH_MAX + 1);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_ETOOLONG);
	hdr(buf, KA_MAGIC, KA_VERSION, KA_ERROR, 0, 8 + KA_MSG_MAX + 1);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_ETOOLONG);
	/* fixed-size types: shorter is truncated */
	hdr(buf, KA_MAGIC, KA_VERSION, KA_EXIT, 0, KA_EXIT_SIZE - 1);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_ETRUNC);
	hdr(buf, KA_MAGIC, KA_VERSION, KA_SIGNAL, 0, 3);
	assert_int_equal(ka_hdr_decode(buf, KA_HDR_SIZE, &h), KA_ETRUNC);
	/* truncated frame: the header promises more than is there */
	hdr(buf, KA_MAGIC, KA_VERSION, KA_STDOUT, 0, 10);
	assert_int_equal(ka_frame_check(buf, KA_HDR_SIZE + 9, &Y), -EAGAIN);
	assert_int_equal(ka_frame_check(buf, KA_HDR_SIZE + 10, &Y), KA_HDR_SIZE + 10);
	assert_string_equal(ka_strerror(KA_EBADMAGIC), "bad magic");
}

static void test_exec_rejections(void **st)
{
	long n;
	uint32_t i;
	(void)st;

	/* argv count beyond its cap: the encoder refuses, and a hand-made count is rejected */
	base_exec();
	X.argc = KA_ARGC_MAX + 1;
	assert_int_equal(enc_exec(), -EMSGSIZE);
	base_exec();
	n = enc_exec();
	st32(buf + KA_HDR_SIZE + 4, KA_ARGC_MAX + 1);
	assert_int_equal(dec_exec(n), KA_ECOUNT);
	st32(buf + KA_HDR_SIZE + 4, 0);
	assert_int_equal(dec_exec(n), KA_EVALUE);                 /* argc 0 */
	st32(buf + KA_HDR_SIZE + 4, 3);
	assert_true(dec_exec(n) < 0);                             /* more args than the payload holds */
	/* env count beyond its cap */
	base_exec();
	n = enc_exec();
	st32(buf + KA_HDR_SIZE + 8, KA_ENVC_MAX + 1);
	assert_int_equal(dec_exec(n), KA_ECOUNT);
	base_exec();
	X.envc = KA_ENVC_MAX + 1;
	assert_int_equal(enc_exec(), -EMSGSIZE);
	/* rlimit count beyond its cap */
	base_exec();
	n = enc_exec();
	st32(buf + KA_HDR_SIZE + 12, KA_RLIMITS_MAX + 1);
	assert_int_equal(dec_exec(n), KA_ECOUNT);
	/* the most args that fit still decode */
	base_exec();
	X.argc = KA_ARGC_MAX;
	for (i = 0; i < X.argc; i++)
		X.argv[i] = S("a");
	n = enc_exec();
	assert_true(n > 0);
	assert_int_equal(dec_exec(n), 0);
	assert_int_equal(Y.argc, KA_ARGC_MAX);
	/* an argument beyond KA_ARG_MAX */
	{
		static char big[KA_ARG_MAX + 2];
		memset(big, 'x', sizeof(big) - 1);
		base_exec();
		X.argv[1] = S(big);
		n = enc_exec();
		assert_true(n > 0);
		assert_int_equal(dec_exec(n), KA_ECOUNT);
	}
	/* NUL inside an argument, env entry and cwd */
	base_exec();
	X.argv[1] = (struct ka_str){ "a\0b", 3 };
	assert_int_equal(dec_exec(enc_exec()), KA_ENUL);
	base_exec();
	X.env[0] = (struct ka_str){ "A=\0", 3 };
	assert_int_equal(dec_exec(enc_exec()), KA_ENUL);
	base_exec();
	X.cwd = (struct ka_str){ "x\0", 2 };
	assert_int_equal(dec_exec(enc_exec()), KA_ENUL);
	/* env without '=' or with an empty name; empty argv[0] */
	base_exec();
	X.env[0] = S("NOEQUALS");
	assert_int_equal(dec_exec(enc_exec()), KA_EVALUE);
	base_exec();
	X.env[0] = S("=x");
	assert_int_equal(dec_exec(enc_exec()), KA_EVALUE);
	base_exec();
	X.argv[0] = S("");
	assert_int_equal(dec_exec(enc_exec()), KA_EVALUE);
	/* bad user, reserved bytes */
	base_exec();
	X.user = 2;
	assert_int_equal(dec_exec(enc_exec()), KA_EVALUE);
	base_exec();
	n = enc_exec();
	buf[KA_HDR_SIZE + 2] = 1;
	assert_int_equal(dec_exec(n), KA_EVALUE);
	/* rlimits: unknown resource, twice the same, cur > max */
	base_exec();
	X.rl[0].resource = KA_RLIMIT_RESOURCES;
	assert_int_equal(dec_exec(enc_exec()), KA_EVALUE);
	base_exec();
	X.nrlimits = 2;
	X.rl[1] = X.rl[0];
	assert_int_equal(dec_exec(enc_exec()), KA_EVALUE);
	base_exec();
	X.rl[0].cur = 200;
	assert_int_equal(dec_exec(enc_exec()), KA_EVALUE);
	base_exec();
	X.rl[0] = (struct ka_rlimit){ 0, KA_RLIM_INFINITY, KA_RLIM_INFINITY };
	assert_int_equal(dec_exec(enc_exec()), 0);
	/* truncated payload and trailing bytes */
	base_exec();
	n = enc_exec();
	assert_int_equal(ka_exec_decode(buf + KA_HDR_SIZE, (size_t)n - KA_HDR_SIZE - 1, &Y), KA_ETRUNC);
	buf[n] = 0;
	assert_int_equal(ka_exec_decode(buf + KA_HDR_SIZE, (size_t)n - KA_HDR_SIZE + 1, &Y), KA_ETRAIL);
	assert_int_equal(ka_exec_decode(buf + KA_HDR_SIZE, KA_MAX_PAYLOAD + 1, &Y), KA_ETOOLONG);
}

static void test_path_check(void **st)
{
	const char *why = NULL;
	static char longp[KA_PATH_MAX + 2];
	(void)st;
	assert_int_equal(ka_path_check("a", 1, &why), 0);
	assert_int_equal(ka_path_check("a/b.txt", 7, &why), 0);
	assert_int_equal(ka_path_check("..a/b..", 7, &why), 0);
	assert_int_equal(ka_path_check("../x", 4, &why), KA_EVALUE);
	assert_string_equal(why, "'..' path component");
	assert_int_equal(ka_path_check("a/../x", 6, &why), KA_EVALUE);
	assert_int_equal(ka_path_check("a/..", 4, &why), KA_EVALUE);
	assert_int_equal(ka_path_check("..", 2, &why), KA_EVALUE);
	assert_int_equal(ka_path_check("/etc/x", 6, &why), KA_EVALUE);
	assert_string_equal(why, "absolute path");
	assert_int_equal(ka_path_check("a\0b", 3, &why), KA_ENUL);
	assert_string_equal(why, "NUL byte in path");
	assert_int_equal(ka_path_check("", 0, &why), KA_EVALUE);
	assert_int_equal(ka_path_check("a//b", 4, &why), KA_EVALUE);
	assert_string_equal(why, "empty path component");
	assert_int_equal(ka_path_check("a/", 2, &why), KA_EVALUE);
	assert_string_equal(why, "trailing '/'");
	assert_int_equal(ka_path_check("./a", 3, &why), KA_EVALUE);
	assert_int_equal(ka_path_check("a/./b", 5, &why), KA_EVALUE);
	memset(longp, 'a', sizeof(longp));
	assert_int_equal(ka_path_check(longp, KA_PATH_MAX, &why), 0);
	assert_int_equal(ka_path_check(longp, KA_PATH_MAX + 1, &why), KA_ECOUNT);
}

static void test_put_get(void **st)
{
	struct ka_enc e;
	struct ka_put p = { 10, 0644, { "dir/f", 5 } }, q;
	struct ka_hdr h;
	struct ka_str path;
	long n;
	(void)st;

	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_put(&e, &p);
	assert_int_equal(ka_hdr_decode(buf, (size_t)n, &h), 0);
	assert_int_equal(ka_put_decode(buf + KA_HDR_SIZE, h.len, &q), 0);
	assert_int_equal(q.size, 10);
	assert_int_equal(q.mode, 0644);
	assert_memory_equal(q.path.p, "dir/f", 5);
	/* mode beyond permission bits, size beyond the cap, empty path, NUL in path, truncated */
	p.mode = 04755;
	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_put(&e, &p);
	assert_int_equal(ka_put_decode(buf + KA_HDR_SIZE, (size_t)n - KA_HDR_SIZE, &q), KA_EVALUE);
	p.mode = 0644;
	p.size = KA_FILE_MAX + 1;
	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_put(&e, &p);
	assert_int_equal(ka_put_decode(buf + KA_HDR_SIZE, (size_t)n - KA_HDR_SIZE, &q), KA_ECOUNT);
	p.size = 1;
	p.path = (struct ka_str){ "", 0 };
	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_put(&e, &p);
	assert_int_equal(ka_put_decode(buf + KA_HDR_SIZE, (size_t)n - KA_HDR_SIZE, &q), KA_EVALUE);
	p.path = (struct ka_str){ "a\0", 2 };
	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_put(&e, &p);
	assert_int_equal(ka_put_decode(buf + KA_HDR_SIZE, (size_t)n - KA_HDR_SIZE, &q), KA_ENUL);
	assert_int_equal(ka_put_decode(buf + KA_HDR_SIZE, 11, &q), KA_ETRUNC);
	/* a path longer than the cap does not fit the frame */
	{
		static char longp[KA_PATH_MAX + 1];
		memset(longp, 'a', sizeof(longp));
		p.path = (struct ka_str){ longp, KA_PATH_MAX + 1 };
		ka_enc_init(&e, buf, sizeof(buf));
		assert_int_equal(ka_enc_put(&e, &p), -EMSGSIZE);
		assert_int_equal(e.len, 0); /* the partial frame is dropped */
	}
	/* GET */
	ka_enc_init(&e, buf, sizeof(buf));
	ka_enc_begin(&e, KA_GET);
	ka_put_str(&e, "x/y", 3);
	n = ka_enc_end(&e);
	assert_int_equal(ka_get_decode(buf + KA_HDR_SIZE, (size_t)n - KA_HDR_SIZE, &path), 0);
	assert_int_equal(path.len, 3);
	assert_int_equal(ka_get_decode(buf + KA_HDR_SIZE, (size_t)n - KA_HDR_SIZE - 1, &path), KA_ETRUNC);
}

static void test_small_frames(void **st)
{
	struct ka_enc e;
	struct ka_exit x = { KA_SIGNALED, KA_EXIT_F_OOM, 9, 1, 2, 3, 4 }, y;
	struct ka_error er;
	struct ka_get_begin gb;
	uint32_t v;
	long n;
	(void)st;

	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_exit(&e, &x);
	assert_int_equal(n, KA_HDR_SIZE + KA_EXIT_SIZE);
	assert_int_equal(ka_frame_check(buf, (size_t)n, &Y), n);
	assert_int_equal(ka_exit_decode(buf + KA_HDR_SIZE, KA_EXIT_SIZE, &y), 0);
	assert_int_equal(y.kind, KA_SIGNALED);
	assert_int_equal(y.code, 9);
	assert_int_equal(y.flags, KA_EXIT_F_OOM);
	assert_int_equal(y.wall_us, 4);
	x.flags = KA_EXIT_F_OOM | KA_EXIT_F_CORE | KA_EXIT_F_PIDS; /* every known flag */
	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_exit(&e, &x);
	assert_int_equal(ka_exit_decode(buf + KA_HDR_SIZE, KA_EXIT_SIZE, &y), 0);
	assert_int_equal(y.flags, 7);
	x.flags = 8; /* an unknown flag */
	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_exit(&e, &x);
	assert_int_equal(ka_exit_decode(buf + KA_HDR_SIZE, KA_EXIT_SIZE, &y), KA_EVALUE);
	x.flags = KA_EXIT_F_OOM;
	x.code = 65; /* no such signal */
	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_exit(&e, &x);
	assert_int_equal(ka_exit_decode(buf + KA_HDR_SIZE, KA_EXIT_SIZE, &y), KA_EVALUE);
	x.kind = KA_EXITED, x.code = 256;
	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_exit(&e, &x);
	assert_int_equal(ka_exit_decode(buf + KA_HDR_SIZE, KA_EXIT_SIZE, &y), KA_EVALUE);
	x.kind = 2, x.code = 0;
	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_exit(&e, &x);
	assert_int_equal(ka_exit_decode(buf + KA_HDR_SIZE, KA_EXIT_SIZE, &y), KA_EVALUE);

	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_error(&e, KA_ERR_PATH, "absolute path");
	assert_int_equal(ka_error_decode(buf + KA_HDR_SIZE, (size_t)n - KA_HDR_SIZE, &er), 0);
	assert_int_equal(er.code, KA_ERR_PATH);
	assert_int_equal(er.msg.len, 13);

	ka_enc_init(&e, buf, sizeof(buf));
	n = ka_enc_u32(&e, KA_SIGNAL, 15);
	assert_int_equal(ka_signal_decode(buf + KA_HDR_SIZE, 4, &v), 0);
	assert_int_equal(v, 15);
	st32(buf + KA_HDR_SIZE, 0);
	assert_int_equal(ka_signal_decode(buf + KA_HDR_SIZE, 4, &v), KA_EVALUE);
	st32(buf + KA_HDR_SIZE, 65);
	assert_int_equal(ka_signal_decode(buf + KA_HDR_SIZE, 4, &v), KA_EVALUE);

	ka_enc_init(&e, buf, sizeof(buf));
	ka_enc_begin(&e, KA_HELLO);
	ka_put_u32(&e, KA_VERSION);
	ka_put_u32(&e, 0);
	n = ka_enc_end(&e);
	assert_int_equal(ka_frame_check(buf, (size_t)n, &Y), n);
	assert_int_equal(ka_hello_decode(buf + KA_HDR_SIZE, 8, &v), 0);
	st32(buf + KA_HDR_SIZE, 2);
	assert_int_equal(ka_hello_decode(buf + KA_HDR_SIZE, 8, &v), KA_EVALUE);

	ka_enc_init(&e, buf, sizeof(buf));
	ka_enc_begin(&e, KA_GET_BEGIN);
	ka_put_u64(&e, KA_FILE_MAX + 1);
	ka_put_u32(&e, 0644);
	n = ka_enc_end(&e);
	assert_int_equal(ka_get_begin_decode(buf + KA_HDR_SIZE, 12, &gb), KA_ECOUNT);

	/* data chunks: a full chunk fits, one more byte does not */
	{
		static uint8_t src[KA_CHUNK_MAX + 1];
		ka_enc_init(&e, buf, sizeof(buf));
		assert_int_equal(ka_enc_data(&e, KA_STDOUT, src, KA_CHUNK_MAX), KA_HDR_SIZE + KA_CHUNK_MAX);
		assert_int_equal(ka_enc_data(&e, KA_STDOUT, src, KA_CHUNK_MAX + 1), -EMSGSIZE);
		assert_int_equal(e.len, KA_HDR_SIZE + KA_CHUNK_MAX); /* the refused frame left nothing */
	}
	/* a buffer too small */
	ka_enc_init(&e, buf, 8);
	assert_int_equal(ka_enc_data(&e, KA_BYE, NULL, 0), -EMSGSIZE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exec_round_trip),
		cmocka_unit_test(test_header_rejections),
		cmocka_unit_test(test_exec_rejections),
		cmocka_unit_test(test_path_check),
		cmocka_unit_test(test_put_get),
		cmocka_unit_test(test_small_frames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
