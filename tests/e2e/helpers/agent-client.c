/* agent-client: host-side test client of kiln-init: vsock UDS handshake, PUT, EXEC with streamed I/O, GET, BYE. */
#include "agent_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/*
 * usage: agent-client --uds PATH [options] [-- CMD [ARG...]]
 * Connects to kiln-vmm's vsock Unix socket (retrying until the guest agent listens), sends the
 * PUTs, runs CMD with this process's stdin/stdout/stderr streamed, then the GETs, then BYE.
 * Exit status: the command's (128+N for signal N); without CMD, 0 after the PUTs/GETs.
 *   120 the agent refused a request (ERROR other than PROTO): the message is on stderr
 *   121 protocol error (ERROR PROTO from the agent, or a malformed frame from it)
 *   122 could not connect / handshake failed / connection lost
 *   123 usage error;  124 --timeout expired
 */

enum { X_REFUSED = 120, X_PROTO = 121, X_CONN = 122, X_USAGE = 123, X_TIMEOUT = 124 };

static int sock = -1;
static uint64_t deadline_ms;
static uint8_t rx[2 * KA_MAX_FRAME];
static size_t rxlen;
static uint8_t tx[2 * KA_MAX_FRAME];
static size_t txoff, txlen;
static struct ka_exec X;
static int verbose;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int left_ms(void)
{
	uint64_t n = now_ms();
	if (n >= deadline_ms) {
		fprintf(stderr, "agent-client: timed out\n");
		exit(X_TIMEOUT);
	}
	return (int)(deadline_ms - n > 1000000 ? 1000000 : deadline_ms - n);
}

static _Noreturn void die(int code, const char *fmt, ...) KILN_PRINTF(2, 3);
static _Noreturn void die(int code, const char *fmt, ...)
{
	va_list ap;
	fputs("agent-client: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* ---- connection -------------------------------------------------------------------------- */

/* One attempt: 0 connected (handshake done), -1 try again. */
static int try_connect(const char *uds, unsigned port)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char line[64];
	size_t n = 0;
	int fd;

	if (strlen(uds) >= sizeof(a.sun_path))
		die(X_USAGE, "socket path too long: %s", uds);
	strcpy(a.sun_path, uds);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die(X_CONN, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		goto again;
	n = (size_t)snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (write(fd, line, n) != (ssize_t)n)
		goto again;
	/* Read the reply byte by byte: nothing after the newline belongs to us yet. */
	for (n = 0; n < sizeof(line) - 1;) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t r;

		if (poll(&p, 1, left_ms()) <= 0)
			goto again;
		r = read(fd, line + n, 1);
		if (r <= 0)
			goto again;
		if (line[n++] == '\n')
			break;
	}
	line[n] = 0;
	if (strncmp(line, "OK ", 3) != 0)
		goto again;
	sock = fd;
	return 0;
again:
	close(fd);
	return -1;
}

/* ---- frames ---------------------------------------------------------------------------------- */

static void tx_flush(bool block)
{
	while (txoff < txlen) {
		ssize_t n = write(sock, tx + txoff, txlen - txoff);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { sock, POLLOUT, 0 };
			if (!block)
				return;
			if (poll(&p, 1, left_ms()) == 0)
				left_ms();
			continue;
		}
		if (n <= 0)
			die(X_CONN, "connection lost while sending: %s", n < 0 ? strerror(errno) : "EOF");
		txoff += (size_t)n;
	}
	txoff = txlen = 0;
}

/* Room for one more frame at the end of tx (blocking flush if needed); an encoder over it. */
static void tx_enc(struct ka_enc *e)
{
	if (sizeof(tx) - txlen < KA_MAX_FRAME)
		tx_flush(true);
	ka_enc_init(e, tx + txlen, sizeof(tx) - txlen);
}

static void tx_commit(long n, const char *what)
{
	if (n < 0)
		die(X_USAGE, "%s: frame too large", what);
	txlen += (size_t)n;
}

/* A complete frame at the start of rx: 1 (h set), 0 need more. Dies on a malformed frame. */
static int rx_frame(struct ka_hdr *h)
{
	int rc = ka_hdr_decode(rx, rxlen, h);

	if (rc == -EAGAIN)
		return 0;
	if (rc)
		die(X_PROTO, "malformed frame from the agent: %s", ka_strerror(rc));
	return rxlen >= KA_HDR_SIZE + h->len;
}

static void rx_consume(const struct ka_hdr *h)
{
	size_t n = KA_HDR_SIZE + h->len;
	memmove(rx, rx + n, rxlen - n);
	rxlen -= n;
}

/* Read what is there (socket must be readable or blocking ok). Dies on EOF. */
static void rx_read(void)
{
	ssize_t n = read(sock, rx + rxlen, sizeof(rx) - rxlen);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		die(X_CONN, "connection closed by the guest%s%s", n < 0 ? ": " : "",
		    n < 0 ? strerror(errno) : "");
	rxlen += (size_t)n;
}

/* Wait for the next complete frame. */
static void rx_wait(struct ka_hdr *h)
{
	while (!rx_frame(h)) {
		struct pollfd p = { sock, POLLIN, 0 };
		tx_flush(true);
		if (poll(&p, 1, left_ms()) == 0)
			continue;
		rx_read();
	}
}

/* An ERROR frame ends the client: 120 for a refusal, 121 for a protocol error. */
static _Noreturn void agent_error(const struct ka_hdr *h)
{
	struct ka_error e;
	if (ka_error_decode(rx + KA_HDR_SIZE, h->len, &e))
		die(X_PROTO, "malformed ERROR frame");
	die(e.code == KA_ERR_PROTO ? X_PROTO : X_REFUSED, "agent error %u: %.*s", e.code,
	    (int)e.msg.len, e.msg.p);
}

/* ---- operations ------------------------------------------------------------------------------ */

static void do_put(char *spec)
{
	char *guest = strchr(spec, ':');
	struct ka_put x;
	struct ka_enc e;
	struct ka_hdr h;
	struct stat st;
	uint64_t left;
	int fd;

	if (!guest)
		die(X_USAGE, "--put HOST:GUEST: %s", spec);
	*guest++ = 0;
	fd = open(spec, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		die(X_USAGE, "--put: %s: not a readable regular file", spec);
	x.size = (uint64_t)st.st_size;
	x.mode = st.st_mode & 0777;
	x.path.p = guest;
	x.path.len = (uint32_t)strnlen(guest, KA_PATH_MAX + 1);
	tx_enc(&e);
	tx_commit(ka_enc_put(&e, &x), "PUT");
	for (left = x.size; left;) {
		size_t want = left < KA_CHUNK_MAX ? (size_t)left : KA_CHUNK_MAX;
		ssize_t n;

		tx_enc(&e);
		ka_enc_begin(&e, KA_PUT_DATA);
		n = read(fd, e.buf + e.len, want);
		if (n <= 0)
			die(X_USAGE, "--put: %s: read failed or file shrank", spec);
		e.len += (size_t)n;
		tx_commit(ka_enc_end(&e), "PUT_DATA");
		left -= (uint64_t)n;
		tx_flush(true);
		/* Answers that come early (there are none before the end) stay in rx. */
	}
	close(fd);
	tx_flush(true);
	rx_wait(&h);
	if (h.type == KA_ERROR)
		agent_error(&h);
	if (h.type != KA_PUT_OK)
		die(X_PROTO, "PUT: unexpected %s", ka_type_name(h.type));
	rx_consume(&h);
}

static void do_get(char *spec)
{
	char *host = strchr(spec, ':');
	struct ka_get_begin gb;
	struct ka_enc e;
	struct ka_hdr h;
	uint64_t left;
	int fd, rc;

	if (!host)
		die(X_USAGE, "--get GUEST:HOST: %s", spec);
	*host++ = 0;
	tx_enc(&e);
	ka_enc_begin(&e, KA_GET);
	ka_put_str(&e, spec, strnlen(spec, KA_PATH_MAX + 1));
	tx_commit(ka_enc_end(&e), "GET");
	rx_wait(&h);
	if (h.type == KA_ERROR)
		agent_error(&h);
	if (h.type != KA_GET_BEGIN)
		die(X_PROTO, "GET: unexpected %s", ka_type_name(h.type));
	rc = ka_get_begin_decode(rx + KA_HDR_SIZE, h.len, &gb);
	if (rc)
		die(X_PROTO, "GET_BEGIN: %s", ka_strerror(rc));
	rx_consume(&h);
	/* Never follow a link or reuse a file on the host side either. */
	fd = open(host, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		die(X_USAGE, "--get: %s: %s", host, strerror(errno));
	for (left = gb.size; left;) {
		rx_wait(&h);
		if (h.type == KA_ERROR) {
			unlink(host);
			agent_error(&h);
		}
		if (h.type != KA_GET_DATA || h.len > left)
			die(X_PROTO, "GET: unexpected %s (%u bytes)", ka_type_name(h.type), h.len);
		if (write(fd, rx + KA_HDR_SIZE, h.len) != (ssize_t)h.len)
			die(X_USAGE, "--get: write %s: %s", host, strerror(errno));
		left -= h.len;
		rx_consume(&h);
	}
	if (close(fd) < 0)
		die(X_USAGE, "--get: close %s: %s", host, strerror(errno));
}

static int parse_resource(const char *name)
{
	static const char *const names[] = { "cpu", "fsize", "data", "stack", "core", "rss",
		"nproc", "nofile", "memlock", "as", "locks", "sigpending", "msgqueue", "nice",
		"rtprio", "rttime" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(name, names[i]) == 0)
			return (int)i;
	return -1;
}

static uint64_t parse_limit(const char *s)
{
	uint64_t v;
	if (strcmp(s, "inf") == 0 || strcmp(s, "unlimited") == 0)
		return KA_RLIM_INFINITY;
	if (parse_u64(s, 0, UINT64_MAX - 1, &v))
		die(X_USAGE, "bad rlimit value: %s", s);
	return v;
}

/* Run the command: stream stdin to it and its output back until EXIT. Returns the status. */
static int do_exec(const char *result_file)
{
	struct ka_enc e;
	struct ka_exit ex = { 0 };
	struct rusage ru;
	bool stdin_open = true, done = false;

	tx_enc(&e);
	tx_commit(ka_enc_exec(&e, &X), "EXEC");
	fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
	while (!done) {
		struct pollfd p[2] = { { sock, POLLIN, 0 }, { 0, POLLIN, 0 } };
		struct ka_hdr h;
		int np = 1;

		if (txoff < txlen)
			p[0].events |= POLLOUT;
		else if (stdin_open)
			np = 2;
		if (poll(p, (nfds_t)np, left_ms()) == 0)
			continue;
		if (p[0].revents & POLLOUT)
			tx_flush(false);
		if (np == 2 && p[1].revents) {
			ssize_t n;

			tx_enc(&e);
			ka_enc_begin(&e, KA_STDIN);
			n = read(0, e.buf + e.len, KA_CHUNK_MAX);
			if (n > 0) {
				e.len += (size_t)n;
				tx_commit(ka_enc_end(&e), "STDIN");
			} else if (n == 0 || errno != EINTR) {
				e.len = e.start;
				tx_commit(ka_enc_data(&e, KA_STDIN_CLOSE, NULL, 0), "STDIN_CLOSE");
				stdin_open = false;
			}
			tx_flush(false);
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
			rx_read();
		while (!done && rx_frame(&h)) {
			const uint8_t *q = rx + KA_HDR_SIZE;
			int rc;

			switch (h.type) {
			case KA_STDOUT:
			case KA_STDERR:
				if (write(h.type == KA_STDOUT ? 1 : 2, q, h.len) < 0) {
					/* the reader went away: keep draining */
				}
				break;
			case KA_EXIT:
				rc = ka_exit_decode(q, h.len, &ex);
				if (rc)
					die(X_PROTO, "EXIT: %s", ka_strerror(rc));
				done = true;
				break;
			case KA_ERROR:
				agent_error(&h);
			default:
				die(X_PROTO, "unexpected %s while the command runs", ka_type_name(h.type));
			}
			rx_consume(&h);
		}
	}
	fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) & ~O_NONBLOCK);
	getrusage(RUSAGE_SELF, &ru);
	if (result_file) {
		FILE *f = fopen(result_file, "w");
		if (!f)
			die(X_USAGE, "--result %s: %s", result_file, strerror(errno));
		fprintf(f, "kind=%s code=%u oom=%d core=%d user_us=%llu sys_us=%llu maxrss_kb=%llu "
			"wall_us=%llu client_maxrss_kb=%ld\n",
			ex.kind == KA_SIGNALED ? "signaled" : "exited", ex.code,
			!!(ex.flags & KA_EXIT_F_OOM), !!(ex.flags & KA_EXIT_F_CORE),
			(unsigned long long)ex.user_us, (unsigned long long)ex.sys_us,
			(unsigned long long)ex.maxrss_kb, (unsigned long long)ex.wall_us, ru.ru_maxrss);
		fclose(f);
	}
	return ex.kind == KA_SIGNALED ? 128 + (int)ex.code : (int)ex.code;
}

/* --raw FILE: send FILE's bytes as they are and report the agent's answer (for garbage tests). */
static int do_raw(const char *file)
{
	uint8_t buf[65536];
	struct ka_hdr h;
	ssize_t n;
	int fd = open(file, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die(X_USAGE, "--raw %s: %s", file, strerror(errno));
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(sock, buf, (size_t)n) != n)
			break;
	close(fd);
	rx_wait(&h);
	if (h.type == KA_ERROR)
		agent_error(&h);
	die(X_PROTO, "raw: agent answered %s", ka_type_name(h.type));
}

static _Noreturn void usage(void)
{
	fprintf(stderr,
		"usage: agent-client --uds PATH [--port N] [--timeout SECS] [--user root|sandbox]\n"
		"         [--cwd DIR] [--env K=V]... [--rlimit NAME=CUR[:MAX]]... [--put HOST:GUEST]...\n"
		"         [--get GUEST:HOST]... [--result FILE] [--no-bye] [--raw FILE] [-- CMD [ARG...]]\n");
	exit(X_USAGE);
}

int main(int argc, char **argv)
{
	const char *uds = NULL, *result = NULL, *raw = NULL;
	char *puts_[64], *gets_[64];
	unsigned port = KA_PORT, nput = 0, nget = 0;
	uint64_t timeout_s = 600, v;
	bool bye = true;
	struct ka_hdr h;
	uint32_t ver;
	int i, status = 0;

	kiln_set_progname("agent-client");
	X.user = KA_USER_ROOT;
	X.cwd.p = "";
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strcmp(a, "--no-bye") == 0) {
			bye = false;
			continue;
		}
		if (strcmp(a, "-v") == 0) {
			verbose = 1;
			continue;
		}
		if (!val)
			usage();
		i++;
		if (strcmp(a, "--uds") == 0)
			uds = val;
		else if (strcmp(a, "--port") == 0 && !parse_u64(val, 1, UINT32_MAX - 1, &v))
			port = (unsigned)v;
		else if (strcmp(a, "--timeout") == 0 && !parse_u64(val, 1, 86400, &v))
			timeout_s = v;
		else if (strcmp(a, "--user") == 0 && strcmp(val, "root") == 0)
			X.user = KA_USER_ROOT;
		else if (strcmp(a, "--user") == 0 && strcmp(val, "sandbox") == 0)
			X.user = KA_USER_SANDBOX;
		else if (strcmp(a, "--cwd") == 0)
			X.cwd = (struct ka_str){ val, (uint32_t)strnlen(val, KA_PATH_MAX + 1) };
		else if (strcmp(a, "--env") == 0 && X.envc < KA_ENVC_MAX)
			X.env[X.envc++] = (struct ka_str){ val, (uint32_t)strnlen(val, KA_ARG_MAX + 1) };
		else if (strcmp(a, "--rlimit") == 0 && X.nrlimits < KA_RLIMITS_MAX) {
			char *spec = strdup(val), *eq = spec ? strchr(spec, '=') : NULL, *colon;
			struct ka_rlimit *l = &X.rl[X.nrlimits++];
			int r;

			if (!eq)
				usage();
			*eq++ = 0;
			colon = strchr(eq, ':');
			if (colon)
				*colon++ = 0;
			r = parse_resource(spec);
			if (r < 0)
				die(X_USAGE, "unknown rlimit %s", spec);
			l->resource = (uint32_t)r;
			l->cur = parse_limit(eq);
			l->max = colon ? parse_limit(colon) : l->cur;
		} else if (strcmp(a, "--put") == 0 && nput < ARRAY_SIZE(puts_))
			puts_[nput++] = argv[i];
		else if (strcmp(a, "--get") == 0 && nget < ARRAY_SIZE(gets_))
			gets_[nget++] = argv[i];
		else if (strcmp(a, "--result") == 0)
			result = val;
		else if (strcmp(a, "--raw") == 0)
			raw = val;
		else
			usage();
	}
	if (!uds)
		usage();
	for (; i < argc && X.argc < KA_ARGC_MAX; i++)
		X.argv[X.argc++] = (struct ka_str){ argv[i], (uint32_t)strnlen(argv[i], KA_ARG_MAX + 1) };

	deadline_ms = now_ms() + timeout_s * 1000u;
	while (try_connect(uds, port) < 0) {
		left_ms();
		usleep(100 * 1000);
	}
	rx_wait(&h);
	if (h.type == KA_ERROR)
		agent_error(&h);
	if (h.type != KA_HELLO || ka_hello_decode(rx + KA_HDR_SIZE, h.len, &ver))
		die(X_PROTO, "expected HELLO, got %s", ka_type_name(h.type));
	rx_consume(&h);
	if (raw)
		return do_raw(raw);
	for (unsigned k = 0; k < nput; k++)
		do_put(puts_[k]);
	if (X.argc)
		status = do_exec(result);
	for (unsigned k = 0; k < nget; k++)
		do_get(gets_[k]);
	if (bye) {
		struct ka_enc e;
		tx_enc(&e);
		tx_commit(ka_enc_data(&e, KA_BYE, NULL, 0), "BYE");
		tx_flush(true);
	}
	close(sock);
	return status;
}
