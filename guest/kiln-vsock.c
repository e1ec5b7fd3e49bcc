/* kiln-vsock: guest-side AF_VSOCK tool for kiln's e2e tests and benchmarks (listen, connect, send, flood). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define BUF_SIZE (256 * 1024)
#define AGENT_REQ_MAX (64 * 1024)

static char buf[BUF_SIZE];

static void usage(void)
{
	fprintf(stderr,
		"usage: kiln-vsock listen PORT echo|agent   accept forever, one child per connection:\n"
		"                                           echo bytes back / run the request as sh -c\n"
		"       kiln-vsock accept PORT              one connection: stdin->socket, socket->stdout\n"
		"       kiln-vsock connect CID PORT         the same, connecting out\n"
		"       kiln-vsock gen BYTES [SEED]         deterministic pattern on stdout\n"
		"       kiln-vsock send BYTES CID PORT [SEED]  connect and send the pattern\n"
		"       kiln-vsock flood N CID PORT [WRITE_BYTES]  open N connections, never read\n");
	exit(2);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t num(const char *s, uint64_t max)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end || end == s || s[0] == '-' || v > max) {
		fprintf(stderr, "kiln-vsock: bad number: %s\n", s);
		exit(2);
	}
	return v;
}

static int vsock_socket(void)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("kiln-vsock: socket(AF_VSOCK)");
		exit(1);
	}
	return fd;
}

/* Connect to CID:PORT. On failure reports errno and elapsed time and returns -1 (errno kept). */
static int vsock_connect(uint32_t cid, uint32_t port, int quiet)
{
	int fd = vsock_socket();
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	uint64_t t0 = now_ms();
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		if (!quiet)
			fprintf(stderr, "kiln-vsock: connect %u:%u: %s (%s) after %" PRIu64 " ms\n", cid, port,
				strerror(e), strerrorname_np(e), now_ms() - t0);
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int vsock_listen(uint32_t port)
{
	int fd = vsock_socket();
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 1024) != 0) {
		fprintf(stderr, "kiln-vsock: listen on port %u: %s\n", port, strerror(errno));
		exit(1);
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* stdin -> sock (half-close at stdin EOF), sock -> stdout, until the socket's EOF. 0 or 1. */
static int relay(int sock)
{
	struct pollfd p[2] = { { .fd = 0, .events = POLLIN }, { .fd = sock, .events = POLLIN } };
	int in_open = 1;
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("kiln-vsock: poll");
			return 1;
		}
		if (in_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = read(0, buf, sizeof(buf));
			if (n > 0) {
				if (write_all(sock, buf, (size_t)n) != 0) {
					perror("kiln-vsock: socket write");
					return 1;
				}
			} else if (n == 0 || errno != EINTR) {
				in_open = 0;
				p[0].fd = -1;
				shutdown(sock, SHUT_WR);
			}
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(sock, buf, sizeof(buf));
			if (n == 0)
				return 0;
			if (n < 0) {
				if (errno == EINTR)
					continue;
				perror("kiln-vsock: socket read");
				return 1;
			}
			if (write_all(1, buf, (size_t)n) != 0) {
				perror("kiln-vsock: stdout write");
				return 1;
			}
		}
	}
}

static void serve_echo(int c)
{
	for (;;) {
		ssize_t n = read(c, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (write_all(c, buf, (size_t)n) != 0)
			_exit(1);
	}
	shutdown(c, SHUT_WR);
	_exit(0);
}

/* The request (until the client's half-close) is a shell command: its stdout and stderr go back,
 * then a last line "KILN-RC=<status>". */
static void serve_agent(int c)
{
	size_t len = 0;
	for (;;) {
		if (len == AGENT_REQ_MAX)
			_exit(1);
		ssize_t n = read(c, buf + len, AGENT_REQ_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			_exit(1);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	pid_t pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);
		if (nul < 0 || dup2(nul, 0) < 0 || dup2(c, 1) < 0 || dup2(c, 2) < 0)
			_exit(127);
		execl("/bin/sh", "sh", "-c", buf, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	int rc = pid < 0 ? 126 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	int n = snprintf(buf, 64, "KILN-RC=%d\n", rc);
	(void)write_all(c, buf, (size_t)n);
	shutdown(c, SHUT_WR);
	_exit(0);
}

static int cmd_listen(uint32_t port, const char *mode)
{
	void (*serve)(int);
	if (strcmp(mode, "echo") == 0)
		serve = serve_echo;
	else if (strcmp(mode, "agent") == 0)
		serve = serve_agent;
	else
		usage();
	struct sigaction sa = { .sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT };
	sigaction(SIGCHLD, &sa, NULL); /* children reap themselves */
	int l = vsock_listen(port);
	for (;;) {
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE ||
			    errno == ENOMEM) {
				if (errno != EINTR && errno != ECONNABORTED)
					usleep(10000);
				continue;
			}
			perror("kiln-vsock: accept");
			return 1;
		}
		pid_t pid = fork();
		if (pid == 0) {
			/* The agent waits for its command: SIGCHLD back to default, or the status is lost. */
			signal(SIGCHLD, SIG_DFL);
			close(l);
			serve(c);
		}
		if (pid < 0)
			perror("kiln-vsock: fork");
		close(c);
	}
}

/* xorshift64*: the same BYTES and SEED give the same stream on every run. */
static void pattern(uint64_t *s, char *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		*s ^= *s >> 12;
		*s ^= *s << 25;
		*s ^= *s >> 27;
		uint64_t v = *s * 0x2545F4914F6CDD1Dull;
		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

static int send_pattern(int fd, uint64_t bytes, uint64_t seed)
{
	uint64_t s = seed ? seed : 1;
	while (bytes > 0) {
		size_t n = bytes < sizeof(buf) ? (size_t)bytes : sizeof(buf);
		pattern(&s, buf, n);
		if (write_all(fd, buf, n) != 0)
			return -1;
		bytes -= n;
	}
	return 0;
}

static int cmd_send(uint64_t bytes, uint32_t cid, uint32_t port, uint64_t seed)
{
	int fd = vsock_connect(cid, port, 0);
	if (fd < 0)
		return 1;
	uint64_t t0 = now_ms();
	if (send_pattern(fd, bytes, seed) != 0) {
		perror("kiln-vsock: send");
		return 1;
	}
	shutdown(fd, SHUT_WR);
	/* Wait for the peer's EOF: everything was taken. */
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	uint64_t ms = now_ms() - t0;
	fprintf(stderr, "kiln-vsock: sent %" PRIu64 " bytes in %" PRIu64 " ms\n", bytes, ms);
	return 0;
}

/*
 * Open n connections to cid:port one after another and never read from them. After each connect,
 * write up to write_bytes without blocking (the peer may not read either). Then wait until the
 * peer has closed every open one (or 120 s). Prints one line: ok, failed (by errno), closed.
 */
static int cmd_flood(unsigned int n, uint32_t cid, uint32_t port, uint64_t write_bytes)
{
	struct pollfd *p = calloc(n, sizeof(*p));
	unsigned int ok = 0, failed = 0, reset = 0, other = 0, first_err = 0;
	uint64_t written = 0;
	if (!p)
		return 1;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max; /* 4096 by default: room for every connection the VMM allows */
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	memset(buf, 0x5a, sizeof(buf));
	uint64_t t0 = now_ms();
	for (unsigned int i = 0; i < n; i++) {
		int fd = vsock_connect(cid, port, 1);
		if (fd < 0) {
			failed++;
			if (errno == ECONNRESET)
				reset++;
			else
				other++;
			if (!first_err)
				first_err = (unsigned int)errno;
			continue;
		}
		fcntl(fd, F_SETFL, O_NONBLOCK);
		for (uint64_t left = write_bytes; left > 0;) {
			ssize_t w = write(fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf));
			if (w <= 0)
				break;
			left -= (uint64_t)w;
			written += (uint64_t)w;
		}
		p[ok].fd = fd;
		p[ok].events = POLLRDHUP; /* no POLLIN: nothing is ever read */
		ok++;
	}
	printf("KILN-FLOOD-OPEN ok=%u failed=%u reset=%u other=%u first_err=%s written=%" PRIu64
	       " ms=%" PRIu64 "\n", ok, failed, reset, other, first_err ? strerrorname_np((int)first_err) : "-",
	       written, now_ms() - t0);
	fflush(stdout);
	unsigned int closed = 0;
	uint64_t deadline = now_ms() + 120000;
	while (closed < ok && now_ms() < deadline) {
		int r = poll(p, ok, 1000);
		if (r < 0 && errno != EINTR)
			break;
		for (unsigned int i = 0; r > 0 && i < ok; i++)
			if (p[i].fd >= 0 && (p[i].revents & (POLLHUP | POLLERR | POLLRDHUP))) {
				close(p[i].fd);
				p[i].fd = -1;
				closed++;
			}
	}
	printf("KILN-FLOOD-DONE ok=%u closed_by_peer=%u\n", ok, closed);
	return closed == ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2)
		usage();
	const char *c = argv[1];
	if (strcmp(c, "listen") == 0 && argc == 4)
		return cmd_listen((uint32_t)num(argv[2], UINT32_MAX), argv[3]);
	if (strcmp(c, "accept") == 0 && argc == 3) {
		int l = vsock_listen((uint32_t)num(argv[2], UINT32_MAX));
		int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (s < 0) {
			perror("kiln-vsock: accept");
			return 1;
		}
		close(l);
		return relay(s);
	}
	if (strcmp(c, "connect") == 0 && argc == 4) {
		int s = vsock_connect((uint32_t)num(argv[2], UINT32_MAX), (uint32_t)num(argv[3], UINT32_MAX), 0);
		return s < 0 ? 1 : relay(s);
	}
	if (strcmp(c, "gen") == 0 && (argc == 3 || argc == 4)) {
		uint64_t s = argc == 4 ? num(argv[3], UINT64_MAX) : 1;
		return send_pattern(1, num(argv[2], UINT64_MAX), s) == 0 ? 0 : 1;
	}
	if (strcmp(c, "send") == 0 && (argc == 5 || argc == 6))
		return cmd_send(num(argv[2], UINT64_MAX), (uint32_t)num(argv[3], UINT32_MAX),
				(uint32_t)num(argv[4], UINT32_MAX), argc == 6 ? num(argv[5], UINT64_MAX) : 1);
	if (strcmp(c, "flood") == 0 && (argc == 5 || argc == 6))
		return cmd_flood((unsigned int)num(argv[2], 100000), (uint32_t)num(argv[3], UINT32_MAX),
				 (uint32_t)num(argv[4], UINT32_MAX), argc == 6 ? num(argv[5], 1ull << 30) : 0);
	usage();
}
