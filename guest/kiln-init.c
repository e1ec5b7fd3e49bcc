/* kiln-init: PID 1 of kiln guests: sets up the guest, runs one command for the host over vsock, powers off. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_proto.h"
#include "clone3.h"

/*
 * What kiln-init does, in order (see guest/PROTOCOL.md for the conversation):
 *  0. starts reading /bin/sh into the page cache, listens on vsock port KA_PORT and prints
 *     "kiln-init: ready" (kiln's connection is accepted by the kernel while step 1 runs);
 *  1. mounts /proc /sys /dev /dev/pts /dev/shm /tmp /run and the work directory /work (tmpfs,
 *     or the ext4 scratch disk named by kiln.scratch=vdX on the kernel command line), sets the
 *     hostname "kiln", brings up loopback, makes itself unkillable by the OOM killer;
 *  2. serves one control connection at a time (others get
 *     ERROR busy): PUT/GET files under /work, EXEC one command, stream its stdin/stdout/stderr,
 *     report EXIT;
 *  3. on BYE: kills what is left and writes status 0 to the exit port (a setup failure writes
 *     status 1 instead). Nothing is synced there: the scratch disk is thrown away with the VM.
 *     Before an EXIT for a command that failed, the work file system is synced, so that the
 *     host sees on the scratch disk's file everything the command wrote (how kiln tells a full
 *     disk). A connection that closes without BYE only ends its session:
 *     its command and everything else are killed and the next connection is served.
 * A malformed frame gets ERROR (KA_ERR_PROTO), the connection is closed, any running command is
 * killed, and the agent waits for the next connection: it never exits (PID 1 must not).
 */

#define EXIT_PORT 0xf4
#define WORK_DIR "/work"
#define SANDBOX_UID 1000
#define SANDBOX_GID 1000
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define OUT_CAP (3 * KA_MAX_FRAME)
#define CG_ROOT "/sys/fs/cgroup"
#define CMD_CGROUP CG_ROOT "/command"

static int sig_fd = -1, listen_fd = -1, work_fd = -1;
static int cg_fd = -1; /* the command's cgroup v2 directory; -1: the kernel has no pids cgroup */

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	char buf[256];
	int saved = errno;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(2, "kiln-init: ", 11) < 0 || write(2, buf, (size_t)n) < 0)
		errno = saved;
	errno = saved;
}

/* End the VM: status 0 is the agent's normal finish. Never returns. */
static _Noreturn void power_off(unsigned char status)
{
	if (ioperm(EXIT_PORT, 1, 1) == 0)
		outb(status, EXIT_PORT);
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

static _Noreturn void fatal(const char *what)
{
	logmsg("%s: %s", what, strerror(errno));
	power_off(1);
}

/* ---- setup --------------------------------------------------------------------------------- */

static void do_mount(const char *src, const char *dst, const char *type, unsigned long flags,
		     const char *data)
{
	if (mkdir(dst, 0755) < 0 && errno != EEXIST) {
		logmsg("mkdir %s: %s", dst, strerror(errno));
		power_off(1);
	}
	if (mount(src, dst, type, flags, data) < 0) {
		logmsg("mount %s on %s: %s", type, dst, strerror(errno));
		power_off(1);
	}
}

static void write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, s, strlen(s)) < 0)
		logmsg("write %s: %s", path, strerror(errno));
	close(fd);
}

/* Value of kernel parameter name=... in /proc/cmdline, or "" */
static void cmdline_arg(const char *name, char *out, size_t cap)
{
	char buf[4096], *w, *save = NULL;
	size_t nl = strlen(name);
	ssize_t n;
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);

	out[0] = 0;
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	for (w = strtok_r(buf, " \n", &save); w; w = strtok_r(NULL, " \n", &save)) {
		if (strncmp(w, name, nl) == 0 && w[nl] == '=') {
			snprintf(out, cap, "%s", w + nl + 1);
			return;
		}
	}
}

/* Loopback up (the kernel gives it 127.0.0.1 when it comes up). No network device exists. */
static void loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		/* A kernel without CONFIG_INET: no loopback, nothing else to do. */
		logmsg("no loopback (socket AF_INET: %s)", strerror(errno));
		return;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		logmsg("SIOCGIFFLAGS lo: %s", strerror(errno));
	} else {
		ifr.ifr_flags = (short)(ifr.ifr_flags | IFF_UP);
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
			logmsg("SIOCSIFFLAGS lo: %s", strerror(errno));
	}
	close(fd);
}

/*
 * The command's cgroup: cgroup v2 at /sys/fs/cgroup with the pids controller, the command in
 * /sys/fs/cgroup/command. Its pids.max binds root too (RLIMIT_NPROC does not). A kernel without
 * CONFIG_CGROUP_PIDS leaves cg_fd at -1: the limit then binds only non-root commands.
 */
static void cgroup_setup(void)
{
	int fd;

	if (mount("cgroup2", CG_ROOT, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		logmsg("no cgroup v2 (%s): --pids binds only non-root commands", strerror(errno));
		return;
	}
	fd = open(CG_ROOT "/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "+pids", 5) != 5) {
		logmsg("no pids controller (%s): --pids binds only non-root commands", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	if (mkdir(CMD_CGROUP, 0755) < 0 && errno != EEXIST) {
		logmsg("mkdir " CMD_CGROUP ": %s", strerror(errno));
		return;
	}
	cg_fd = open(CMD_CGROUP, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg_fd < 0)
		logmsg("open " CMD_CGROUP ": %s", strerror(errno));
}

/* Write s to the file name of the command's cgroup: 0 or -errno. */
static int cg_write(const char *name, const char *s)
{
	int fd = openat(cg_fd, name, O_WRONLY | O_CLOEXEC), r = 0;
	size_t n = strlen(s);

	if (fd < 0)
		return -errno;
	if (write(fd, s, n) != (ssize_t)n)
		r = -errno;
	close(fd);
	return r;
}

/* The "max" count of the command cgroup's pids.events: forks refused at pids.max so far. */
static unsigned long pids_refused(void)
{
	char buf[256], *p;
	ssize_t n;
	int fd;

	if (cg_fd < 0 || (fd = openat(cg_fd, "pids.events", O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strncmp(buf, "max ", 4) == 0 ? buf : strstr(buf, "\nmax ");
	if (!p)
		return 0;
	return strtoul(p + (p == buf ? 4 : 5), NULL, 10);
}

/*
 * Start reading the image's shell (in our images /bin/busybox, which every applet and most
 * commands run) into the page cache now, while the rest of set-up and the host's connect go on:
 * the reads are only queued (virtio-blk serves them on the VMM's loop thread), and the command's
 * exec later finds its pages cached instead of faulting them in from the disk one window at a
 * time. A missing or odd /bin/sh just means nothing is prefetched.
 */
static void prefetch_shell(void)
{
	int fd = open("/bin/sh", O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return;
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
	close(fd);
}

/*
 * What must come before the "ready" line: the console as fds 0-2, SIGCHLD as a signalfd, and
 * the vsock listener. Once it listens, the guest kernel accepts kiln's connection on its own
 * (the backlog), so the host's connect and handshake overlap the rest of set-up; the HELLO, and
 * so any command, still waits for setup() to finish.
 */
static void setup_listen(void)
{
	struct statfs sf;
	sigset_t set;

	umask(022);
	prefetch_shell();
	/* CONFIG_DEVTMPFS_MOUNT usually mounted /dev already. */
	if (statfs("/dev", &sf) < 0 || sf.f_type != 0x01021994 /* TMPFS_MAGIC */)
		do_mount("dev", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755");
	if (fcntl(2, F_GETFD) < 0) {
		int fd = open("/dev/console", O_RDWR | O_NOCTTY);
		if (fd >= 0) {
			dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		fatal("sigprocmask");
	sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sig_fd < 0)
		fatal("signalfd");

	listen_fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (listen_fd < 0)
		fatal("socket AF_VSOCK");
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = KA_PORT };
	if (bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		fatal("bind vsock");
	if (listen(listen_fd, 4) < 0)
		fatal("listen vsock");
}

static void setup(void)
{
	const unsigned long nsnd = MS_NOSUID | MS_NODEV;
	char scratch[64];

	do_mount("proc", "/proc", "proc", nsnd | MS_NOEXEC, NULL);
	do_mount("sys", "/sys", "sysfs", nsnd | MS_NOEXEC, NULL);
	cgroup_setup();
	do_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		 "newinstance,ptmxmode=0666,mode=0620,gid=5");
	do_mount("shm", "/dev/shm", "tmpfs", nsnd, "mode=1777");
	do_mount("tmp", "/tmp", "tmpfs", nsnd, "mode=1777");
	do_mount("run", "/run", "tmpfs", nsnd | MS_NOEXEC, "mode=0755");
	if (symlink("/proc/self/fd", "/dev/fd") < 0 && errno != EEXIST)
		logmsg("symlink /dev/fd: %s", strerror(errno));
	symlink("/proc/self/fd/0", "/dev/stdin");
	symlink("/proc/self/fd/1", "/dev/stdout");
	symlink("/proc/self/fd/2", "/dev/stderr");

	cmdline_arg("kiln.scratch", scratch, sizeof(scratch));
	if (scratch[0]) {
		char dev[80];

		if (strchr(scratch, '/') || strstr(scratch, "..")) {
			errno = EINVAL;
			fatal("kiln.scratch must name a device in /dev");
		}
		snprintf(dev, sizeof(dev), "/dev/%s", scratch);
		do_mount(dev, WORK_DIR, "ext4", nsnd, NULL);
		if (chown(WORK_DIR, SANDBOX_UID, SANDBOX_GID) < 0 || chmod(WORK_DIR, 0755) < 0)
			fatal("chown " WORK_DIR);
	} else {
		do_mount("work", WORK_DIR, "tmpfs", nsnd, "mode=0755,uid=1000,gid=1000");
	}
	work_fd = open(WORK_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (work_fd < 0)
		fatal("open " WORK_DIR);

	if (sethostname("kiln", 4) < 0)
		logmsg("sethostname: %s", strerror(errno));
	loopback_up();
	/* The agent itself must survive the OOM killer; children reset this to 0. */
	write_file("/proc/self/oom_score_adj", "-1000");
	write_file("/proc/sys/fs/protected_hardlinks", "1");
	write_file("/proc/sys/fs/protected_symlinks", "1");
	write_file("/proc/sys/fs/protected_fifos", "2");
	write_file("/proc/sys/fs/protected_regular", "2");
}

/* ---- session ------------------------------------------------------------------------------ */

enum state { S_IDLE, S_RUNNING, S_DONE };
enum outcome { SESSION_AGAIN, SESSION_FINISH };

struct sess {
	int sock;
	enum state st;
	bool closed, bye, failed;

	uint8_t in[KA_MAX_FRAME];
	size_t inlen;
	struct ka_hdr h;
	bool have_hdr;

	uint8_t out[OUT_CAP];
	size_t outoff, outlen;

	/* PUT in progress */
	bool putting;
	uint64_t put_left;
	int put_fd, put_dir;
	char put_name[KA_PATH_MAX + 1];
	uint32_t put_err;
	char put_msg[256];

	/* the command */
	pid_t pid;
	int fd_in, fd_out, fd_err;
	const uint8_t *sin_p;
	size_t sin_len;
	bool exited;
	int wstatus;
	struct rusage ru;
	struct timespec t0, t1;
	unsigned long oom0, pids0;
};

static struct sess S;
static struct ka_exec X; /* decoded EXEC (large: kept off the stack) */

static size_t out_pending(const struct sess *s)
{
	return s->outlen - s->outoff;
}

/* Write what the socket takes now. Marks the session closed on a hard error. */
static void out_flush(struct sess *s)
{
	while (out_pending(s) && !s->closed) {
		ssize_t n = write(s->sock, s->out + s->outoff, out_pending(s));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				s->closed = true;
			break;
		}
		s->outoff += (size_t)n;
	}
	if (s->outoff == s->outlen)
		s->outoff = s->outlen = 0;
}

/* Free bytes at the end of the out buffer after compaction. */
static size_t out_free(struct sess *s)
{
	if (s->outoff && s->outlen + KA_MAX_FRAME > OUT_CAP) {
		memmove(s->out, s->out + s->outoff, out_pending(s));
		s->outlen -= s->outoff;
		s->outoff = 0;
	}
	return OUT_CAP - s->outlen;
}

/* Make room for n bytes, waiting for the socket if needed. False if the connection is gone. */
static bool out_room(struct sess *s, size_t n)
{
	while (out_free(s) < n) {
		struct pollfd p = { .fd = s->sock, .events = POLLOUT };

		if (s->closed)
			return false;
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return false;
		out_flush(s);
	}
	return !s->closed;
}

/* Append one frame built by the encoder call in `body` (which uses `e`). */
#define EMIT(s, need, body)                                                        \
	do {                                                                       \
		struct ka_enc e;                                                   \
		long _n;                                                           \
		if (!out_room((s), KA_HDR_SIZE + (need)))                          \
			break;                                                     \
		ka_enc_init(&e, (s)->out + (s)->outlen, OUT_CAP - (s)->outlen);    \
		_n = (body);                                                       \
		if (_n > 0)                                                        \
			(s)->outlen += (size_t)_n;                                 \
	} while (0)

static void send_error(struct sess *s, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void send_error(struct sess *s, uint32_t code, const char *fmt, ...)
{
	char msg[KA_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	EMIT(s, 8 + KA_MSG_MAX, ka_enc_error(&e, code, msg));
	out_flush(s);
}

static void send_empty(struct sess *s, uint8_t type)
{
	EMIT(s, 0, ka_enc_data(&e, type, NULL, 0));
	out_flush(s);
}

/* A protocol violation: report it and end the session (the agent stays up). */
static void proto_error(struct sess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void proto_error(struct sess *s, const char *fmt, ...)
{
	char msg[KA_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	send_error(s, KA_ERR_PROTO, "%s", msg);
	s->failed = true;
}

static unsigned long oom_kills(void)
{
	char buf[8192], *p;
	ssize_t n;
	int fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strstr(buf, "\noom_kill ");
	return p ? strtoul(p + 10, NULL, 10) : 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Reap every child (PID 1 duty). The command's status is kept; when it has ended, everything
 * else it left behind is killed, so its pipes reach EOF. */
static void reap(struct sess *s)
{
	struct signalfd_siginfo si;

	while (read(sig_fd, &si, sizeof(si)) == sizeof(si))
		;
	for (;;) {
		struct rusage ru;
		int st;
		pid_t p = wait4(-1, &st, WNOHANG, &ru);

		if (p <= 0)
			break;
		if (s && s->st == S_RUNNING && p == s->pid && !s->exited) {
			s->exited = true;
			s->wstatus = st;
			s->ru = ru;
			clock_gettime(CLOCK_MONOTONIC, &s->t1);
			kill(-1, SIGKILL);
		}
	}
}

static uint64_t tv_us(struct timeval tv)
{
	return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* The command has ended and its output is drained: send EXIT. */
static void finish_command(struct sess *s)
{
	struct ka_exit x = { 0 };
	int64_t wall;

	if (WIFSIGNALED(s->wstatus)) {
		x.kind = KA_SIGNALED;
		x.code = (uint32_t)WTERMSIG(s->wstatus);
		if (WCOREDUMP(s->wstatus))
			x.flags |= KA_EXIT_F_CORE;
	} else {
		x.kind = KA_EXITED;
		x.code = (uint32_t)WEXITSTATUS(s->wstatus);
	}
	if (oom_kills() > s->oom0)
		x.flags |= KA_EXIT_F_OOM;
	if (pids_refused() > s->pids0)
		x.flags |= KA_EXIT_F_PIDS;
	x.user_us = tv_us(s->ru.ru_utime);
	x.sys_us = tv_us(s->ru.ru_stime);
	x.maxrss_kb = s->ru.ru_maxrss > 0 ? (uint64_t)s->ru.ru_maxrss : 0;
	wall = (int64_t)(s->t1.tv_sec - s->t0.tv_sec) * 1000000 + (s->t1.tv_nsec - s->t0.tv_nsec) / 1000;
	x.wall_us = wall > 0 ? (uint64_t)wall : 0;
	close_fd(&s->fd_in);
	s->sin_len = 0;
	s->st = S_DONE;
	if (x.kind != KA_EXITED || x.code != 0)
		syncfs(work_fd);
	EMIT(s, KA_EXIT_SIZE, ka_enc_exit(&e, &x));
	out_flush(s);
}

/* Kill the command and everything else, wait until they are gone. */
static void kill_all(struct sess *s)
{
	kill(-1, SIGKILL);
	close_fd(&s->fd_in);
	close_fd(&s->fd_out);
	close_fd(&s->fd_err);
	for (;;) {
		pid_t p = waitpid(-1, NULL, 0);
		if (p < 0 && errno != EINTR)
			break;
	}
	reap(NULL);
}

/* ---- files under the work directory ---------------------------------------------------------- */

/*
 * Walk path (already checked by ka_path_check) beneath the work directory, one component at a
 * time with O_NOFOLLOW: a symlink anywhere fails with ELOOP. With create, missing directories
 * are made (owned by sandbox). Returns the directory fd holding the last component, whose name
 * is copied into name; or -errno.
 */
static int walk_parent(const struct ka_str *path, bool create, char *name)
{
	char buf[KA_PATH_MAX + 1], *comp, *slash;
	int dfd = dup(work_fd);

	if (dfd < 0)
		return -errno;
	memcpy(buf, path->p, path->len);
	buf[path->len] = 0;
	comp = buf;
	while ((slash = strchr(comp, '/'))) {
		int nfd;

		*slash = 0;
		if (create) {
			if (mkdirat(dfd, comp, 0755) == 0) {
				if (fchownat(dfd, comp, SANDBOX_UID, SANDBOX_GID, AT_SYMLINK_NOFOLLOW) < 0)
					logmsg("chown %s: %s", comp, strerror(errno));
			} else if (errno != EEXIST) {
				int err = errno;
				close(dfd);
				return -err;
			}
		}
		nfd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0) {
			int err = errno;
			struct stat st;

			/* O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR: name the real cause. */
			if (err == ENOTDIR && fstatat(dfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(st.st_mode))
				err = ELOOP;
			close(dfd);
			return -err;
		}
		close(dfd);
		dfd = nfd;
		comp = slash + 1;
	}
	strcpy(name, comp);
	return dfd;
}

static uint32_t path_err_code(int err)
{
	return err == ELOOP ? KA_ERR_PATH : KA_ERR_IO;
}

static const char *path_err_text(int err)
{
	return err == ELOOP ? "symlink in path (links are never followed)" : strerror(err);
}

static void put_finish(struct sess *s)
{
	if (s->put_fd >= 0 && !s->put_err && close(s->put_fd) < 0) {
		s->put_err = KA_ERR_IO;
		snprintf(s->put_msg, sizeof(s->put_msg), "close: %s", strerror(errno));
	} else if (s->put_fd >= 0 && s->put_err) {
		close(s->put_fd);
	}
	if (s->put_err && s->put_fd >= 0)
		unlinkat(s->put_dir, s->put_name, 0);
	s->put_fd = -1;
	close_fd(&s->put_dir);
	s->putting = false;
	if (s->put_err)
		send_error(s, s->put_err, "put: %s", s->put_msg);
	else
		send_empty(s, KA_PUT_OK);
}

static void handle_put(struct sess *s, const uint8_t *p, uint32_t len)
{
	struct ka_put x;
	const char *why;
	struct stat st;
	int rc = ka_put_decode(p, len, &x);

	if (rc) {
		proto_error(s, "PUT: %s", ka_strerror(rc));
		return;
	}
	s->putting = true;
	s->put_left = x.size;
	s->put_fd = s->put_dir = -1;
	s->put_err = 0;
	if (ka_path_check(x.path.p, x.path.len, &why)) {
		s->put_err = KA_ERR_PATH;
		snprintf(s->put_msg, sizeof(s->put_msg), "%s", why);
	} else if ((rc = walk_parent(&x.path, true, s->put_name)) < 0) {
		s->put_err = path_err_code(-rc);
		snprintf(s->put_msg, sizeof(s->put_msg), "%s", path_err_text(-rc));
	} else {
		s->put_dir = rc;
		s->put_fd = openat(s->put_dir, s->put_name,
				   O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY,
				   x.mode);
		if (s->put_fd < 0) {
			s->put_err = path_err_code(errno);
			snprintf(s->put_msg, sizeof(s->put_msg), "%s", path_err_text(errno));
		} else if (fstat(s->put_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			s->put_err = KA_ERR_NOTREG;
			snprintf(s->put_msg, sizeof(s->put_msg), "not a regular file");
			close_fd(&s->put_fd);
		} else if (fchown(s->put_fd, SANDBOX_UID, SANDBOX_GID) < 0 || fchmod(s->put_fd, x.mode) < 0) {
			s->put_err = KA_ERR_IO;
			snprintf(s->put_msg, sizeof(s->put_msg), "chown/chmod: %s", strerror(errno));
		} else {
			int fl = fcntl(s->put_fd, F_GETFL);
			if (fl >= 0)
				fcntl(s->put_fd, F_SETFL, fl & ~O_NONBLOCK);
		}
	}
	if (s->put_left == 0)
		put_finish(s);
}

static void handle_put_data(struct sess *s, const uint8_t *p, uint32_t len)
{
	if (len > s->put_left) {
		proto_error(s, "PUT_DATA beyond the announced size");
		return;
	}
	s->put_left -= len;
	while (len && s->put_fd >= 0 && !s->put_err) {
		ssize_t n = write(s->put_fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			s->put_err = KA_ERR_IO;
			snprintf(s->put_msg, sizeof(s->put_msg), "write: %s",
				 n < 0 ? strerror(errno) : "short write");
			break;
		}
		p += n;
		len -= (uint32_t)n;
	}
	if (s->put_left == 0)
		put_finish(s);
}

/* GET: synchronous; the socket must keep draining, the command's output waits meanwhile. */
static void handle_get(struct sess *s, const uint8_t *p, uint32_t len)
{
	struct ka_str path;
	const char *why;
	char name[KA_PATH_MAX + 1];
	struct stat st;
	uint64_t left;
	int dfd, fd, rc = ka_get_decode(p, len, &path);

	if (rc) {
		proto_error(s, "GET: %s", ka_strerror(rc));
		return;
	}
	if (ka_path_check(path.p, path.len, &why)) {
		send_error(s, KA_ERR_PATH, "get: %s", why);
		return;
	}
	dfd = walk_parent(&path, false, name);
	if (dfd < 0) {
		send_error(s, path_err_code(-dfd), "get: %s", path_err_text(-dfd));
		return;
	}
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	close(dfd);
	if (fd < 0) {
		send_error(s, path_err_code(errno), "get: %s", path_err_text(errno));
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		send_error(s, KA_ERR_NOTREG, "get: not a regular file");
		return;
	}
	if ((uint64_t)st.st_size > KA_FILE_MAX) {
		close(fd);
		send_error(s, KA_ERR_TOOBIG, "get: file larger than %llu bytes",
			   (unsigned long long)KA_FILE_MAX);
		return;
	}
	left = (uint64_t)st.st_size;
	EMIT(s, 12, (ka_enc_begin(&e, KA_GET_BEGIN), ka_put_u64(&e, left),
		     ka_put_u32(&e, (uint32_t)(st.st_mode & 07777)), ka_enc_end(&e)));
	while (left && !s->closed) {
		uint8_t *q;
		size_t want = left < KA_CHUNK_MAX ? (size_t)left : KA_CHUNK_MAX;
		ssize_t n;

		if (!out_room(s, KA_HDR_SIZE + KA_CHUNK_MAX))
			break;
		q = s->out + s->outlen;
		n = read(fd, q + KA_HDR_SIZE, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			send_error(s, KA_ERR_IO, "get: file changed while being read");
			return;
		}
		{
			struct ka_enc e;
			long fl;

			ka_enc_init(&e, q, OUT_CAP - s->outlen);
			ka_enc_begin(&e, KA_GET_DATA);
			e.len += (size_t)n; /* payload already in place */
			fl = ka_enc_end(&e);
			if (fl > 0)
				s->outlen += (size_t)fl;
		}
		left -= (uint64_t)n;
		out_flush(s);
	}
	close(fd);
	out_flush(s);
}

/* ---- EXEC ------------------------------------------------------------------------------------ */

static char *dupstr(const struct ka_str *s)
{
	char *p = malloc((size_t)s->len + 1);
	if (p) {
		memcpy(p, s->p, s->len);
		p[s->len] = 0;
	}
	return p;
}

static _Noreturn void child_fail(int code, const char *what, const char *arg, int err)
{
	dprintf(2, "kiln-init: %s %s: %s\n", what, arg, strerror(err));
	_exit(code);
}

/* execve argv[0], searching PATH from envp when it has no '/'. */
static _Noreturn void child_exec(char **argv, char **envp)
{
	const char *path = DEFAULT_PATH, *p;
	char buf[4096];
	int err = ENOENT;
	size_t i;

	if (strchr(argv[0], '/')) {
		execve(argv[0], argv, envp);
		child_fail(errno == ENOENT ? 127 : 126, "exec", argv[0], errno);
	}
	for (i = 0; envp[i]; i++)
		if (strncmp(envp[i], "PATH=", 5) == 0)
			path = envp[i] + 5;
	for (p = path;; p++) {
		const char *q = strchrnul(p, ':');
		int n = snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(q - p), p, q == p ? "" : "/", argv[0]);

		if (n > 0 && (size_t)n < sizeof(buf)) {
			execve(buf, argv, envp);
			if (errno != ENOENT && errno != ENOTDIR)
				err = errno;
		}
		if (!*q)
			break;
		p = q;
	}
	child_fail(err == ENOENT ? 127 : 126, "exec", argv[0], err);
}

static bool env_has(char **envp, size_t n, const char *kv)
{
	size_t k = (size_t)(strchr(kv, '=') - kv) + 1, i;

	for (i = 0; i < n; i++)
		if (strncmp(envp[i], kv, k) == 0)
			return true;
	return false;
}

/*
 * fork() for the command, the child born in the command's cgroup where the kernel can
 * (clone3 with CLONE_INTO_CGROUP, Linux 5.7): moving a process in afterwards (a cgroup.procs
 * write) waits for an RCU grace period, measured ~14 ms in the emulated host. Any clone3
 * failure falls back to fork(), and the child then moves itself in (*in_cg false), as before.
 * Raw clone3 is safe here: kiln-init is single-threaded, so no lock can be held across it.
 */
static pid_t fork_command(bool *in_cg)
{
	*in_cg = false;
	if (cg_fd >= 0) {
		struct kiln_clone_args ca = { .flags = CLONE_INTO_CGROUP, .exit_signal = SIGCHLD,
					      .cgroup = (uint64_t)cg_fd };
		long pid = kiln_clone3(&ca);

		if (pid >= 0) {
			*in_cg = pid == 0;
			return (pid_t)pid;
		}
	}
	return fork();
}

static void handle_exec(struct sess *s, const uint8_t *p, uint32_t len)
{
	int rc = ka_exec_decode(p, len, &X), pin[2], pout[2], perr[2];
	bool sandbox, in_cg;
	char **argv, **envp, *cwd;
	const char *defs[4];
	size_t i, ne;

	if (rc) {
		proto_error(s, "EXEC: %s", ka_strerror(rc));
		return;
	}
	sandbox = X.user == KA_USER_SANDBOX;
	defs[0] = "PATH=" DEFAULT_PATH;
	defs[1] = sandbox ? "HOME=" WORK_DIR : "HOME=/root";
	defs[2] = sandbox ? "USER=sandbox" : "USER=root";
	defs[3] = sandbox ? "LOGNAME=sandbox" : "LOGNAME=root";
	argv = calloc(X.argc + 1, sizeof(char *));
	envp = calloc(X.envc + ARRAY_SIZE(defs) + 1, sizeof(char *));
	cwd = malloc(sizeof(WORK_DIR) + 1 + X.cwd.len);
	if (!argv || !envp || !cwd) {
		send_error(s, KA_ERR_EXEC, "exec: out of memory");
		s->st = S_DONE;
		goto out;
	}
	for (i = 0; i < X.argc; i++)
		if (!(argv[i] = dupstr(&X.argv[i])))
			goto oom;
	for (i = 0; i < X.envc; i++)
		if (!(envp[i] = dupstr(&X.env[i])))
			goto oom;
	ne = X.envc;
	for (i = 0; i < ARRAY_SIZE(defs); i++)
		if (!env_has(envp, X.envc, defs[i]))
			envp[ne++] = (char *)defs[i];
	if (X.cwd.len == 0)
		strcpy(cwd, WORK_DIR);
	else if (X.cwd.p[0] == '/')
		sprintf(cwd, "%.*s", (int)X.cwd.len, X.cwd.p);
	else
		sprintf(cwd, WORK_DIR "/%.*s", (int)X.cwd.len, X.cwd.p);

	if (pipe2(pin, O_CLOEXEC) < 0) {
		send_error(s, KA_ERR_EXEC, "exec: pipe: %s", strerror(errno));
		s->st = S_DONE;
		goto out;
	}
	if (pipe2(pout, O_CLOEXEC) < 0) {
		close(pin[0]), close(pin[1]);
		send_error(s, KA_ERR_EXEC, "exec: pipe: %s", strerror(errno));
		s->st = S_DONE;
		goto out;
	}
	if (pipe2(perr, O_CLOEXEC) < 0) {
		close(pin[0]), close(pin[1]), close(pout[0]), close(pout[1]);
		send_error(s, KA_ERR_EXEC, "exec: pipe: %s", strerror(errno));
		s->st = S_DONE;
		goto out;
	}
	/* The process limit (RLIMIT_NPROC's soft value) is also the cgroup's pids.max. */
	if (cg_fd >= 0) {
		char v[32] = "max";

		for (i = 0; i < X.nrlimits; i++)
			if (X.rl[i].resource == RLIMIT_NPROC && X.rl[i].cur != UINT64_MAX)
				snprintf(v, sizeof(v), "%llu", (unsigned long long)X.rl[i].cur);
		rc = cg_write("pids.max", v);
		if (rc < 0) {
			close(pin[0]), close(pin[1]), close(pout[0]), close(pout[1]);
			close(perr[0]), close(perr[1]);
			send_error(s, KA_ERR_EXEC, "exec: pids.max %s: %s", v, strerror(-rc));
			s->st = S_DONE;
			goto out;
		}
	}
	s->pids0 = pids_refused();
	s->oom0 = oom_kills();
	clock_gettime(CLOCK_MONOTONIC, &s->t0);
	s->pid = fork_command(&in_cg);
	if (s->pid == 0) {
		sigset_t none;
		int sig;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		setsid();
		if (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0 || dup2(perr[1], 2) < 0)
			_exit(125);
		write_file("/proc/self/oom_score_adj", "0");
		/* Into the command's cgroup before anything can fork (moving in is never refused). */
		if (cg_fd >= 0 && !in_cg && (rc = cg_write("cgroup.procs", "0")) < 0)
			child_fail(125, "cgroup", CMD_CGROUP, -rc);
		for (i = 0; i < X.nrlimits; i++) {
			struct rlimit rl = { X.rl[i].cur, X.rl[i].max };
			if (setrlimit((int)X.rl[i].resource, &rl) < 0)
				child_fail(125, "setrlimit", "", errno);
		}
		if (sandbox && (setgroups(0, NULL) < 0 || setgid(SANDBOX_GID) < 0 ||
				setuid(SANDBOX_UID) < 0))
			child_fail(125, "setuid", "sandbox", errno);
		if (chdir(cwd) < 0)
			child_fail(125, "chdir", cwd, errno);
		child_exec(argv, envp);
	}
	close(pin[0]), close(pout[1]), close(perr[1]);
	if (s->pid < 0) {
		close(pin[1]), close(pout[0]), close(perr[0]);
		send_error(s, KA_ERR_EXEC, "exec: fork: %s", strerror(errno));
		s->st = S_DONE;
		goto out;
	}
	s->fd_in = pin[1];
	s->fd_out = pout[0];
	s->fd_err = perr[0];
	fcntl(s->fd_in, F_SETFL, O_NONBLOCK);
	fcntl(s->fd_out, F_SETFL, O_NONBLOCK);
	fcntl(s->fd_err, F_SETFL, O_NONBLOCK);
	s->exited = false;
	s->st = S_RUNNING;
	goto out;
oom:
	send_error(s, KA_ERR_EXEC, "exec: out of memory");
	s->st = S_DONE;
out:
	if (argv)
		for (i = 0; i < X.argc; i++)
			free(argv[i]);
	if (envp)
		for (i = 0; i < X.envc; i++)
			free(envp[i]);
	free(argv);
	free(envp);
	free(cwd);
}

/* Push pending stdin bytes into the command's pipe (nonblocking). */
static void stdin_push(struct sess *s)
{
	while (s->sin_len && s->fd_in >= 0) {
		ssize_t n = write(s->fd_in, s->sin_p, s->sin_len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			close_fd(&s->fd_in); /* EPIPE: the command closed its stdin */
			break;
		}
		s->sin_p += n;
		s->sin_len -= (size_t)n;
	}
	s->sin_len = 0;
}

/* One complete frame is in s->in. */
static void handle_frame(struct sess *s)
{
	const uint8_t *p = s->in + KA_HDR_SIZE;
	uint32_t len = s->h.len, signo;
	uint8_t t = s->h.type;

	if (s->putting && t != KA_PUT_DATA) {
		proto_error(s, "%s during a PUT (PUT_DATA expected)", ka_type_name(t));
		return;
	}
	switch (t) {
	case KA_EXEC:
		if (s->st != S_IDLE) {
			proto_error(s, "EXEC: a command was already started");
			return;
		}
		handle_exec(s, p, len);
		return;
	case KA_STDIN:
		if (s->st == S_IDLE) {
			proto_error(s, "STDIN before EXEC");
			return;
		}
		if (s->st == S_RUNNING && s->fd_in >= 0 && len) {
			s->sin_p = p;
			s->sin_len = len;
			stdin_push(s);
		}
		return;
	case KA_STDIN_CLOSE:
		if (s->st == S_IDLE) {
			proto_error(s, "STDIN_CLOSE before EXEC");
			return;
		}
		close_fd(&s->fd_in);
		return;
	case KA_SIGNAL:
		if (s->st == S_IDLE) {
			proto_error(s, "SIGNAL before EXEC");
			return;
		}
		if (ka_signal_decode(p, len, &signo)) {
			proto_error(s, "SIGNAL: bad signal number");
			return;
		}
		if (s->st == S_RUNNING && !s->exited && kill(-s->pid, (int)signo) < 0)
			kill(s->pid, (int)signo);
		return;
	case KA_PUT:
		handle_put(s, p, len);
		return;
	case KA_PUT_DATA:
		if (!s->putting) {
			proto_error(s, "PUT_DATA without PUT");
			return;
		}
		handle_put_data(s, p, len);
		return;
	case KA_GET:
		handle_get(s, p, len);
		return;
	case KA_BYE:
		s->bye = true;
		return;
	default:
		proto_error(s, "%s is not a host-to-guest frame", ka_type_name(t));
		return;
	}
}

/* Read toward the current frame; handle it when complete. */
static void sock_read(struct sess *s)
{
	size_t need;
	ssize_t n;
	int rc;

	need = s->have_hdr ? KA_HDR_SIZE + s->h.len - s->inlen : KA_HDR_SIZE - s->inlen;
	if (need) {
		n = read(s->sock, s->in + s->inlen, need);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			s->closed = true;
			return;
		}
		if (n < 0)
			return;
		s->inlen += (size_t)n;
	}
	if (!s->have_hdr) {
		if (s->inlen < KA_HDR_SIZE)
			return;
		rc = ka_hdr_decode(s->in, s->inlen, &s->h);
		if (rc) {
			proto_error(s, "bad frame header: %s", ka_strerror(rc));
			return;
		}
		s->have_hdr = true;
	}
	if (s->inlen < KA_HDR_SIZE + s->h.len)
		return;
	s->have_hdr = false;
	s->inlen = 0;
	handle_frame(s);
}

/* Read one chunk of the command's output into a STDOUT/STDERR frame. */
static void pipe_read(struct sess *s, int *fd, uint8_t type)
{
	uint8_t *q = s->out + s->outlen;
	ssize_t n = read(*fd, q + KA_HDR_SIZE, KA_CHUNK_MAX);
	struct ka_enc e;
	long fl;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close_fd(fd);
		return;
	}
	ka_enc_init(&e, q, OUT_CAP - s->outlen);
	ka_enc_begin(&e, type);
	e.len += (size_t)n;
	fl = ka_enc_end(&e);
	if (fl > 0)
		s->outlen += (size_t)fl;
}

static enum outcome session(int sock)
{
	struct sess *s = &S;

	memset(s, 0, offsetof(struct sess, in));
	s->inlen = 0;
	s->have_hdr = false;
	s->outoff = s->outlen = 0;
	s->putting = false;
	s->put_fd = s->put_dir = -1;
	s->sock = sock;
	s->fd_in = s->fd_out = s->fd_err = -1;
	s->sin_len = 0;
	s->st = S_IDLE;

	EMIT(s, 8, (ka_enc_begin(&e, KA_HELLO), ka_put_u32(&e, KA_VERSION), ka_put_u32(&e, 0),
		    ka_enc_end(&e)));
	out_flush(s);
	for (;;) {
		struct pollfd pf[6];
		int np = 0, i_sock, i_out = -1, i_err = -1, i_in = -1, i_sig, i_lis;
		bool room;

		if (s->st == S_RUNNING && s->exited && s->fd_out < 0 && s->fd_err < 0)
			finish_command(s);
		if (s->failed || s->closed || s->bye)
			break;
		room = out_free(s) >= KA_HDR_SIZE + KA_CHUNK_MAX;
		i_sock = np;
		pf[np++] = (struct pollfd){ s->sock, (short)((s->sin_len ? 0 : POLLIN) |
							     (out_pending(s) ? POLLOUT : 0)), 0 };
		if (s->fd_out >= 0 && room) {
			i_out = np;
			pf[np++] = (struct pollfd){ s->fd_out, POLLIN, 0 };
		}
		if (s->fd_err >= 0 && room) {
			i_err = np;
			pf[np++] = (struct pollfd){ s->fd_err, POLLIN, 0 };
		}
		if (s->fd_in >= 0 && s->sin_len) {
			i_in = np;
			pf[np++] = (struct pollfd){ s->fd_in, POLLOUT, 0 };
		}
		i_sig = np;
		pf[np++] = (struct pollfd){ sig_fd, POLLIN, 0 };
		i_lis = np;
		pf[np++] = (struct pollfd){ listen_fd, POLLIN, 0 };
		if (poll(pf, (nfds_t)np, -1) < 0) {
			if (errno == EINTR)
				continue;
			fatal("poll");
		}
		if (pf[i_sig].revents)
			reap(s);
		if (pf[i_lis].revents) {
			int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (c >= 0) {
				uint8_t buf[64];
				struct ka_enc e;
				long n;

				ka_enc_init(&e, buf, sizeof(buf));
				n = ka_enc_error(&e, KA_ERR_BUSY, "busy: another control connection is active");
				if (n > 0 && write(c, buf, (size_t)n) < 0)
					n = 0;
				close(c);
			}
		}
		if (pf[i_sock].revents & POLLOUT)
			out_flush(s);
		/* Not while stdin bytes wait: they live in s->in. */
		if (!s->sin_len && (pf[i_sock].revents & (POLLIN | POLLHUP | POLLERR)))
			sock_read(s);
		if (i_in >= 0 && pf[i_in].revents)
			stdin_push(s);
		if (i_out >= 0 && pf[i_out].revents && out_free(s) >= KA_HDR_SIZE + KA_CHUNK_MAX)
			pipe_read(s, &s->fd_out, KA_STDOUT);
		if (i_err >= 0 && pf[i_err].revents && out_free(s) >= KA_HDR_SIZE + KA_CHUNK_MAX)
			pipe_read(s, &s->fd_err, KA_STDERR);
		out_flush(s);
	}
	if (s->putting) {
		s->put_err = KA_ERR_IO;
		s->closed = true; /* no reply: just drop the partial file */
		if (s->put_fd >= 0) {
			close(s->put_fd);
			unlinkat(s->put_dir, s->put_name, 0);
			s->put_fd = -1;
		}
		close_fd(&s->put_dir);
		s->putting = false;
	}
	/* Let a final ERROR reach the host before the close (bounded: nonblocking). */
	out_flush(s);
	kill_all(s);
	if (s->bye) {
		close(sock);
		return SESSION_FINISH;
	}
	shutdown(sock, SHUT_RDWR);
	close(sock);
	return SESSION_AGAIN;
}

int main(void)
{
	if (getpid() != 1) {
		fprintf(stderr, "kiln-init: must run as PID 1 of a kiln guest\n");
		return 2;
	}
	struct timespec up;

	setup_listen();
	clock_gettime(CLOCK_BOOTTIME, &up);
	/* kiln connects as soon as it sees this line on the console (a hint: it also retries); the
	 * rest of set-up runs while it does. */
	logmsg("ready (%lld ms after boot)", (long long)up.tv_sec * 1000 + up.tv_nsec / 1000000);
	setup();
	for (;;) {
		struct pollfd pf[2] = { { listen_fd, POLLIN, 0 }, { sig_fd, POLLIN, 0 } };
		int c;

		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			fatal("poll");
		if (pf[1].revents)
			reap(NULL);
		if (!pf[0].revents)
			continue;
		c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c < 0)
			continue;
		if (session(c) == SESSION_FINISH)
			break;
	}
	close(listen_fd);
	power_off(0);
}
