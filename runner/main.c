/* main.c: kiln: `kiln run` runs one command in a fresh jailed microVM and reports how it ended; `kiln gc`. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_proto.h"
#include "exitcodes.h"
#include "jailer/jail.h"
#include "runner/opts.h"
#include "runner/outq.h"
#include "runner/result.h"
#include "util.h"

/*
 * One run, in order:
 *  1. parse and check every option (nothing touched on a bad one: exit 120);
 *  2. take a free slot (uid/gid/CID) under a lock in STATE/locks, make STATE/runs/ID with a lock
 *     held for the whole run (`kiln gc` removes runs whose lock is free), a sparse ext4 scratch
 *     disk of --disk bytes and a vsock directory owned by the slot's uid;
 *  3. start kiln-jailer (its code, linked in, in a forked child named kiln-jailer; or, with
 *     --no-jail, an exec of kiln-vmm itself) in its own process group with
 *     PDEATHSIG, its console into a pipe that kiln drains and keeps the tail of;
 *  4. connect to kiln-init over the vsock socket, PUT files, EXEC, stream output and stdin,
 *     EXIT, GET files; every frame capped and checked, every wait under a deadline; then end
 *     the VM: killed at once (nothing in it is needed any more), or, when the agent reported an
 *     OOM kill, with BYE so that the VM's console (the kernel's OOM line) arrives whole;
 *  5. kill what still runs, the jailer's --cleanup (linked in, in a forked child), remove the
 *     run directory; decide the reason from what the host saw; write the record; exit with the
 *     command's status or 120-124.
 */

#define STATE_DIR_DEF "/run/kiln"
#define UID_BASE_DEF 200000u
#define UID_COUNT_DEF 1024u
#define CG_PARENT "kiln"
#define CG_ROOT "/sys/fs/cgroup"
#define BOOT_MS 120000u        /* start to the agent's HELLO */
#define REPLY_MS 15000u        /* an expected reply (PUT_OK, GET data) or the VM's end after BYE */
#define LOST_MS 5000u          /* connection gone: the VM must end by then */
#define KILL_MS 5000u          /* killed VM not reaped by then: SIGKILL the jailer too */
#define CON_TAIL 4096u
#define AGENT_READY "kiln-init: ready"
#define OUT_CAP (4u * KA_MAX_FRAME)
#define VMM_OVERHEAD (64ull << 20) /* memory.max = guest memory + this */
#define VMM_PIDS 64u               /* pids.max of the VMM's cgroup (threads) */
#define DRAIN_IDLE_MS 10000u       /* after the run: output the caller takes no byte of is dropped */

/* PH_LOST: the agent hung up without EXIT; the VM's end (within LOST_MS) explains why. */
enum phase { PH_CONNECT, PH_HANDSHAKE, PH_HELLO, PH_PUT, PH_RUN, PH_GET, PH_BYE, PH_LOST, PH_DONE };

struct run {
	struct run_opts *o;
	char id[24];
	char bindir[PATH_MAX];
	char state[PATH_MAX], rundir[PATH_MAX], scratch[PATH_MAX], vsockdir[PATH_MAX], uds[PATH_MAX];
	char jailbase[PATH_MAX], cgdir[PATH_MAX];
	char kernel[PATH_MAX], image[PATH_MAX], vmm[PATH_MAX];
	unsigned slot;
	uint32_t uid, cid;
	int slot_fd, lock_fd;
	bool rundir_made;

	pid_t child;
	int pidfd;
	bool reaped;
	int wstatus;
	struct rusage ru;
	uint64_t kill_at;        /* when kiln killed the VM (0: not yet) */

	int con_fd;
	struct con_watch con_watch;
	char con[CON_TAIL];
	size_t con_len;          /* bytes in con (a sliding tail) */

	int sig_fd;
	enum phase ph;
	int sock;
	uint64_t next_connect, deadline;
	char hs[40];
	size_t hslen;
	uint8_t in[KA_MAX_FRAME];
	size_t inlen;
	uint8_t out[OUT_CAP];
	size_t outoff, outlen;

	int put_fds[RUN_FILES_MAX];
	uint32_t put_i;
	uint64_t put_left;
	bool put_sent_all;
	bool stdin_done;

	uint32_t get_i;
	bool get_begun;
	uint64_t get_left;
	int get_fd;
	char get_tmp[PATH_MAX];
	bool get_failed;

	bool vm_gone;            /* the VM ended: read what it sent regardless of the caller */
	bool ready_seen;         /* the console said the agent listens */
	int last_out;            /* last byte queued for stdout, -1: none */
	struct run_facts f;
	struct run_record rec;
	char msg[512];
	uint64_t t0, t_spawn, t_sock, t_hello, t_exec, t_exit, t_kill, t_end;
};

static struct run R;
static struct run_opts O;
static struct ka_exec X;

/* The caller's stdout, stderr and --result-fd: written only as far as they take bytes now. */
struct sink {
	int fd;                  /* -1: none, or it failed (what comes is dropped) */
	bool own;                /* fd is kiln's own nonblocking reopening of the caller's */
	bool step;               /* a blocking pipe or tty: OUTQ_PIPE_STEP bytes per POLLOUT */
	enum outq_how how;
	struct outq q;
};
enum { SINK_OUT, SINK_ERR, SINK_RESULT, NSINKS };
static struct sink SK[NSINKS];

/* snprintf for paths and arguments; every base is length-checked (state dir, bindir), so the
 * results fit. Returns what vsnprintf returns. */
static int fmt(char *buf, size_t n, const char *f, ...) KILN_PRINTF(3, 4);
static int fmt(char *buf, size_t n, const char *f, ...)
{
	va_list ap;
	int r;

	va_start(ap, f);
	r = vsnprintf(buf, n, f, ap);
	va_end(ap);
	return r;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void)
{
	return now_us() / 1000u;
}

/* KILN_DEBUG=1: one stderr line per step, with milliseconds since kiln started. */
static bool debug_on(void)
{
	static int on = -1;

	if (on < 0)
		on = getenv("KILN_DEBUG") != NULL;
	return on;
}

static void dbg(const char *fmt, ...) KILN_PRINTF(1, 2);
static void dbg(const char *fmt, ...)
{
	char m[256];
	va_list ap;

	if (!debug_on())
		return;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	kiln_one_line(m);
	fprintf(stderr, "kiln: debug: %8.1f ms %s\n", (double)(now_us() - R.t0) / 1000.0, m);
}

static void set_msg(const char *fmt, ...) KILN_PRINTF(1, 2);
static void set_msg(const char *fmt, ...)
{
	va_list ap;

	if (R.msg[0])
		return; /* the first explanation wins */
	va_start(ap, fmt);
	vsnprintf(R.msg, sizeof(R.msg), fmt, ap);
	va_end(ap);
	kiln_one_line(R.msg); /* the record's message is one line */
}

/* ---- help ----------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kiln run [options] -- CMD [ARGS...]\n"
		"       kiln gc\n"
		"Runs CMD in a fresh microVM (kiln-vmm, jailed by kiln-jailer, no network device),\n"
		"streams its stdout/stderr, forwards stdin, and exits with its status.\n\n"
		"Options (sizes: 4096, 64K, 256M, 1G; times: 1500ms, 10s, 2m, 1h):\n"
		"  --mem SIZE          guest memory, 32M..16G, whole MiB (default 256M)\n"
		"  --vcpus N           1..32 (default 1)\n"
		"  --timeout TIME      wall clock for the command, 100ms..24h (default 60s)\n"
		"  --cpu-time TIME     CPU time of the command, whole seconds 1s..24h (default none)\n"
		"  --pids N            processes and threads of the command, 1..65536 (default 1024):\n"
		"                      pids.max of its cgroup in the guest (binds root too) and RLIMIT_NPROC\n"
		"  --output-max SIZE   per stream, 0..1G (default 16M); beyond it the run is killed\n"
		"  --disk SIZE         scratch disk at /work, 16M..64G, multiple of 4K (default 256M)\n"
		"  --env NAME=VALUE    environment of the command (repeatable, up to 256)\n"
		"  --cwd PATH          working directory (relative: under /work; default /work)\n"
		"  --user root|sandbox run as root or as sandbox (uid 1000, the default)\n"
		"  --put HOST:GUEST    copy a host file to /work/GUEST before the command (up to 16)\n"
		"  --get GUEST:HOST    copy /work/GUEST to HOST after the command (up to 16)\n"
		"  --image NAME|PATH   root image: NAME is <bindir>/guest/rootfs-NAME.ext4\n"
		"                      (default: <bindir>/guest/rootfs.ext4)\n"
		"  --kernel PATH       guest kernel (default <bindir>/guest/bzImage)\n"
		"  --json              print the result record as the last line of stdout\n"
		"  --result-fd N       write the result record to descriptor N (1..65535; not with --json)\n"
		"  --no-jail           debugging only: run kiln-vmm without kiln-jailer (no root or\n"
		"                      cgroup v2 needed; no namespaces, cgroup or uid isolation)\n"
		"  -h, --help          this text\n\n"
		"kiln never blocks on its caller: while 256 KiB of a stream wait unread, the guest is held\n"
		"back (limits keep running); after teardown, output the caller takes nothing of for 10 s\n"
		"is dropped and counted (undelivered_bytes in the record).\n"
		"Reasons in the record: ok, nonzero-exit, signaled, timeout, cpu-time, guest-oom,\n"
		"output-limit, disk-full, guest-panic, vmm-seccomp, vmm-crash, agent-protocol-error,\n"
		"setup-error, interrupted.\n"
		"SIGINT, SIGTERM, SIGHUP or SIGQUIT to kiln tear the run down (reason interrupted).\n"
		"kiln gc removes what runs left behind when their kiln was killed (SIGKILL) and, when no\n"
		"run is alive, the cached copies of a kiln-vmm that has since been replaced; it exits 0,\n"
		"or 121 when something could not be removed.\n"
		"Environment: KILN_STATE_DIR (default /run/kiln, at most 64 characters), KILN_UID_BASE\n"
		"and KILN_UID_COUNT (uids of runs, default 200000 and 1024; CIDs 3 + slot), KILN_DEBUG\n"
		"(set: one stderr line per step of the run, with milliseconds since kiln started, and\n"
		"the tail of the VM's console at the end).\n\n"
		KILN_RUN_EXIT_HELP);
}

/* ---- small OS helpers ------------------------------------------------------------------------ */

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -errno;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int write_str_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	int r;

	if (fd < 0)
		return -errno;
	r = write_all(fd, s, strlen(s));
	close(fd);
	return r;
}

/* Run argv (absolute path) with stdin/stdout from /dev/null and stderr as given; its status. */
static int run_tool(char *const argv[], bool quiet)
{
	pid_t p = fork();
	int st;

	if (p < 0)
		return -errno;
	if (p == 0) {
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			if (quiet)
				dup2(nul, 2);
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(argv[0], argv);
		_exit(127);
	}
	while (waitpid(p, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static const char *find_tool(const char *name)
{
	static char buf[128];
	static const char *const dirs[] = { "/usr/sbin", "/sbin", "/usr/bin", "/bin" };

	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		fmt(buf, sizeof(buf), "%s/%s", dirs[i], name);
		if (access(buf, X_OK) == 0)
			return buf;
	}
	return NULL;
}

static bool is_cgroup2(void)
{
	struct statfs s;

	return statfs(CG_ROOT, &s) == 0 && s.f_type == 0x63677270 /* CGROUP2_SUPER_MAGIC */;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static void state_dir(char *out, size_t n)
{
	const char *s = getenv("KILN_STATE_DIR");

	if (s && s[0] == '/' && strlen(s) > 64)
		kiln_die(KILN_RUN_EXIT_USAGE, "KILN_STATE_DIR: at most 64 characters (socket paths)");
	fmt(out, n, "%s", s && s[0] == '/' ? s : STATE_DIR_DEF);
}

static uint32_t env_u32(const char *name, uint32_t def, uint32_t min, uint32_t max)
{
	const char *s = getenv(name);
	uint64_t v;

	if (!s)
		return def;
	if (parse_u64(s, min, max, &v) < 0)
		kiln_die(KILN_RUN_EXIT_USAGE, "%s=%s: expected a number in %u..%u", name, s, min, max);
	return (uint32_t)v;
}

/* Remove every entry of a flat directory (sockets, files), then the directory. */
static void rm_flat_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (d) {
		while ((e = readdir(d)) != NULL)
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	rmdir(path);
}

/* ---- output to the caller ------------------------------------------------------------------- */

/*
 * Set up sink s for the caller's descriptor fd. Pipes, FIFOs and ttys get a nonblocking open
 * file description of their own (the caller's, shared with its shell, keeps its flags); when
 * that cannot be opened, a descriptor that is not already nonblocking is written in
 * OUTQ_PIPE_STEP pieces after POLLOUT. A closed fd makes a sink that drops everything.
 */
static void sink_init(struct sink *s, int fd)
{
	struct stat st, st2;
	char p[64];
	int fl, nfd;

	s->fd = -1;
	s->own = s->step = false;
	if (fd < 0 || fstat(fd, &st) < 0 || (fl = fcntl(fd, F_GETFL)) < 0 ||
	    (fl & O_ACCMODE) == O_RDONLY)
		return;
	s->fd = fd;
	s->how = outq_how_for(st.st_mode);
	if (s->how != OUTQ_REOPEN)
		return;
	fmt(p, sizeof(p), "/proc/self/fd/%d", fd);
	nfd = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (fl & O_APPEND));
	if (nfd >= 0 && fstat(nfd, &st2) == 0 && st2.st_dev == st.st_dev && st2.st_ino == st.st_ino &&
	    st2.st_rdev == st.st_rdev) {
		s->fd = nfd;
		s->own = true;
		return;
	}
	if (nfd >= 0)
		close(nfd);
	s->step = !(fl & O_NONBLOCK);
}

/* Write what s's descriptor takes now (pollout: poll said it has room). Never blocks, except
 * on a regular file. A failed descriptor (EPIPE, EBADF, ...) drops what is queued and what comes. */
static void sink_write(struct sink *s, bool pollout)
{
	size_t n;
	const uint8_t *p = outq_peek(&s->q, &n);

	if (s->fd < 0) {
		outq_discard(&s->q);
		return;
	}
	if (s->step && !pollout)
		return;
	while (n) {
		size_t k = s->step && n > OUTQ_PIPE_STEP ? OUTQ_PIPE_STEP : n;
		ssize_t w = s->how == OUTQ_SOCKET ? send(s->fd, p, k, MSG_DONTWAIT | MSG_NOSIGNAL)
						  : write(s->fd, p, k);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w <= 0) {
			if (s->own)
				close(s->fd);
			s->fd = -1;
			outq_discard(&s->q);
			return;
		}
		outq_consume(&s->q, (size_t)w);
		p = outq_peek(&s->q, &n);
		if (s->step)
			return;
	}
}

/* Queue bytes for a sink and write what it takes now. */
static void sink_put(struct sink *s, const void *p, size_t n)
{
	if (s->fd < 0) {
		s->q.dropped += n;
		return;
	}
	(void)outq_push(&s->q, p, n);
	sink_write(s, false);
}

/* kiln's own message on stderr ("kiln: ...\n"), queued behind the command's stderr. */
static void note(const char *fmt, ...) KILN_PRINTF(1, 2);
static void note(const char *fmt, ...)
{
	char m[1024];
	va_list ap;
	int n;

	memcpy(m, "kiln: ", 6);
	va_start(ap, fmt);
	n = vsnprintf(m + 6, sizeof(m) - 7, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n = 6 + (n < (int)sizeof(m) - 7 ? n : (int)sizeof(m) - 8);
	m[n] = '\0';
	kiln_one_line(m); /* paths and the agent's text may hold control bytes */
	m[n++] = '\n';
	sink_put(&SK[SINK_ERR], m, (size_t)n);
}

/* Whether the agent's next frame may be read: while the command runs, only when every sink
 * has room for a whole STDOUT/STDERR frame below OUTQ_SOFT. */
static bool out_gate(void)
{
	if (R.vm_gone || R.ph != PH_RUN)
		return true;
	return outq_has_room(&SK[SINK_OUT].q, KA_CHUNK_MAX, OUTQ_SOFT) &&
	       outq_has_room(&SK[SINK_ERR].q, KA_CHUNK_MAX, OUTQ_SOFT);
}

/* Add a POLLOUT entry for each sink with bytes queued; returns the new count. idx[i] is the
 * entry of sink i, or -1. */
static int sink_poll_add(struct pollfd *pf, int np, int idx[NSINKS])
{
	for (int i = 0; i < NSINKS; i++) {
		idx[i] = -1;
		if (SK[i].fd >= 0 && outq_used(&SK[i].q)) {
			idx[i] = np;
			pf[np++] = (struct pollfd){ SK[i].fd, POLLOUT, 0 };
		}
	}
	return np;
}

static void sink_poll_done(const struct pollfd *pf, const int idx[NSINKS])
{
	for (int i = 0; i < NSINKS; i++)
		if (idx[i] >= 0 && pf[idx[i]].revents)
			sink_write(&SK[i], true);
}

/*
 * After the run is torn down: give the caller what is queued. Returns when every sink is empty,
 * when no sink took a byte for DRAIN_IDLE_MS (what is left is dropped and counted), or at once
 * on SIGINT/SIGTERM/SIGHUP/SIGQUIT. Holds nothing of the run: its VM, jail and disk are gone.
 */
static void sink_drain(void)
{
	uint64_t last = now_ms();

	for (;;) {
		struct pollfd pf[NSINKS + 1];
		int idx[NSINKS], np, r;
		size_t before = 0, after = 0;
		uint64_t t = now_ms();

		for (int i = 0; i < NSINKS; i++) {
			before += outq_used(&SK[i].q);
			sink_write(&SK[i], false);
		}
		np = sink_poll_add(pf, 0, idx);
		if (np == 0)
			return;
		if (t >= last + DRAIN_IDLE_MS) {
			for (int i = 0; i < NSINKS; i++)
				outq_discard(&SK[i].q);
			return;
		}
		if (R.sig_fd >= 0)
			pf[np++] = (struct pollfd){ R.sig_fd, POLLIN, 0 };
		r = poll(pf, (nfds_t)np, (int)(last + DRAIN_IDLE_MS - t));
		if (r < 0 && errno != EINTR)
			return;
		if (r > 0 && R.sig_fd >= 0 && pf[np - 1].revents) {
			for (int i = 0; i < NSINKS; i++)
				outq_discard(&SK[i].q);
			return;
		}
		if (r > 0)
			sink_poll_done(pf, idx);
		for (int i = 0; i < NSINKS; i++)
			after += outq_used(&SK[i].q);
		if (after < before)
			last = now_ms();
	}
}

/* ---- removal of a run (shared by teardown and gc) -------------------------------------------- */

/*
 * kiln-jailer --cleanup for run id, without exec'ing it: the same argument parsing and the same
 * jail_cleanup(), linked in from jailer/, in a forked child (it exits on refusal, and its
 * umask and messages stay its own). An exec and a static-pie start cost as much as the whole
 * cleanup (about 40 ms each in the emulated host). 0: removed; else the jailer's status.
 */
static int jailer_cleanup(const char *jailbase, const char *id, bool cgroup)
{
	char *argv[] = { "kiln-jailer", "--cleanup", "--id", (char *)id, "--chroot-base-dir",
			 (char *)jailbase, cgroup ? "--parent-cgroup" : "--no-cgroup",
			 cgroup ? CG_PARENT : NULL, NULL };
	int argc = cgroup ? 8 : 7, st;
	pid_t p;

	fflush(NULL); /* kiln gc's lines out first; the child's copies of buffers go to /dev/null */
	p = fork();
	if (p < 0)
		return -errno;
	if (p == 0) {
		struct jail_config cfg;
		char err[JAIL_ERR_MAX * 2];
		int nul = open("/dev/null", O_RDWR);

		if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
			_exit(127);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		kiln_set_progname("kiln-jailer");
		if (jail_parse_args(argc, argv, &cfg, err, sizeof(err)) < 0)
			_exit(KILN_EXIT_USAGE);
		_exit(jail_cleanup(&cfg));
	}
	while (waitpid(p, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/*
 * Remove what a run left: its VMM (through its cgroup), jail, cgroup, scratch disk, sockets and
 * run directory. Safe to call for a run that got only partly set up. Returns 0 when nothing is
 * left, -EBUSY when a jail or cgroup could not be removed.
 */
static int remove_run(const char *state, const char *id)
{
	char p[PATH_MAX], cg[PATH_MAX], jail[PATH_MAX], base[PATH_MAX];
	struct stat st;
	bool cgroup = is_cgroup2();
	int tries;

	fmt(cg, sizeof(cg), CG_ROOT "/" CG_PARENT "/%s", id);
	fmt(base, sizeof(base), "%s/jail", state);
	fmt(jail, sizeof(jail), "%s/kiln-vmm/%s", base, id);
	if (cgroup && stat(cg, &st) == 0) {
		fmt(p, sizeof(p), "%s/cgroup.kill", cg);
		if (write_str_file(p, "1") < 0)
			kiln_warn_errno(errno, "%s", p);
	}
	for (tries = 0; tries < 50; tries++) {
		bool has_cg = cgroup && stat(cg, &st) == 0, has_jail = lstat(jail, &st) == 0;

		if (!has_cg && !has_jail)
			break;
		if (jailer_cleanup(base, id, cgroup) == 0)
			continue;
		usleep(100 * 1000);
	}
	fmt(p, sizeof(p), "%s/runs/%s/scratch.img", state, id);
	unlink(p);
	fmt(p, sizeof(p), "%s/runs/%s/vsock", state, id);
	rm_flat_dir(p);
	fmt(p, sizeof(p), "%s/runs/%s/lock", state, id);
	unlink(p);
	fmt(p, sizeof(p), "%s/runs/%s", state, id);
	rmdir(p);
	if ((cgroup && stat(cg, &st) == 0) || lstat(jail, &st) == 0) {
		kiln_warn("run %s: could not remove its %s", id, lstat(jail, &st) == 0 ? jail : cg);
		return -EBUSY;
	}
	return 0;
}

/* ---- setup ------------------------------------------------------------------------------------ */

static void bin_dir(void)
{
	ssize_t n = readlink("/proc/self/exe", R.bindir, sizeof(R.bindir) - 1);
	char *slash;

	if (n <= 0)
		kiln_die(KILN_RUN_EXIT_SETUP, "cannot find my own executable (/proc/self/exe)");
	R.bindir[n] = 0;
	if ((size_t)n > PATH_MAX - 256)
		kiln_die(KILN_RUN_EXIT_SETUP, "my executable's path is too long");
	slash = strrchr(R.bindir, '/');
	if (slash)
		*slash = 0;
}

static int check_file(const char *what, const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		kiln_warn_errno(errno, "%s %s", what, path);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		kiln_warn("%s %s: not a regular file", what, path);
		return -1;
	}
	return 0;
}

/* Resolve and check paths and host files (a bad one is a usage error, exit 120). Returns -1 when
 * this host cannot jail the VM. */
static int resolve(void)
{
	struct stat st;
	bool bad = false;

	bin_dir();
	fmt(R.vmm, sizeof(R.vmm), "%s/kiln-vmm", R.bindir);
	if (O.kernel)
		fmt(R.kernel, sizeof(R.kernel), "%s", O.kernel);
	else
		fmt(R.kernel, sizeof(R.kernel), "%s/guest/bzImage", R.bindir);
	if (O.image && O.image_is_path)
		fmt(R.image, sizeof(R.image), "%s", O.image);
	else if (O.image && strcmp(O.image, "default") != 0)
		fmt(R.image, sizeof(R.image), "%s/guest/rootfs-%s.ext4", R.bindir, O.image);
	else
		fmt(R.image, sizeof(R.image), "%s/guest/rootfs.ext4", R.bindir);
	bad |= check_file("--kernel", R.kernel) < 0;
	bad |= check_file("--image", R.image) < 0;
	bad |= check_file("kiln-vmm", R.vmm) < 0;
	if (bad)
		exit(KILN_RUN_EXIT_USAGE);
	/* The jail binds each file at /<basename>: the two must differ. */
	if (!O.no_jail) {
		const char *kb = strrchr(R.kernel, '/'), *ib = strrchr(R.image, '/');
		kb = kb ? kb + 1 : R.kernel;
		ib = ib ? ib + 1 : R.image;
		if (strcmp(kb, ib) == 0 || !strcmp(kb, "scratch.img") || !strcmp(ib, "scratch.img") ||
		    !strcmp(kb, "vsock") || !strcmp(ib, "vsock") || !strcmp(kb, "kiln-vmm") ||
		    !strcmp(ib, "kiln-vmm") || !strcmp(kb, "dev") || !strcmp(ib, "dev"))
			kiln_die(KILN_RUN_EXIT_USAGE, "the kernel and image file names must differ from each "
				 "other and from scratch.img, vsock, kiln-vmm and dev");
	}
	for (uint32_t i = 0; i < O.nput; i++) {
		int fd = open(O.put[i].host, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (fd < 0 || fstat(fd, &st) < 0)
			kiln_die(KILN_RUN_EXIT_USAGE, "--put %s: %s", O.put[i].host, strerror(errno));
		if (!S_ISREG(st.st_mode))
			kiln_die(KILN_RUN_EXIT_USAGE, "--put %s: not a regular file", O.put[i].host);
		if ((uint64_t)st.st_size > KA_FILE_MAX)
			kiln_die(KILN_RUN_EXIT_USAGE, "--put %s: larger than %llu bytes", O.put[i].host,
				 (unsigned long long)KA_FILE_MAX);
		R.put_fds[i] = fd;
	}
	if (O.result_fd >= 0 && fcntl(O.result_fd, F_GETFD) < 0)
		kiln_die(KILN_RUN_EXIT_USAGE, "--result-fd %d: not an open descriptor", O.result_fd);
	/* The host cannot jail: a setup-error with a record, nothing started. */
	if (!O.no_jail && geteuid() != 0) {
		set_msg("kiln run jails the VM with kiln-jailer, which needs root (--no-jail runs it "
			"unjailed, for debugging only)");
		return -1;
	}
	if (!O.no_jail && !is_cgroup2()) {
		set_msg("cgroup v2 is not mounted at " CG_ROOT ": kiln-jailer cannot limit the VM "
			"(--no-jail runs it unjailed, for debugging only)");
		return -1;
	}
	return 0;
}

/* Bump when the mke2fs options below change: cached file systems of another version are not used. */
#define SCRATCH_VER 1

/* mke2fs an empty scratch file system of O.disk bytes into path (which must not exist). */
static int mkfs_scratch(const char *path)
{
	const char *mke2fs = find_tool("mke2fs");
	char size_k[32], owner[64];
	int fd, r;

	if (!mke2fs) {
		set_msg("mke2fs not found (install e2fsprogs)");
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)O.disk) < 0) {
		set_msg("scratch disk %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	fmt(size_k, sizeof(size_k), "%lluk", (unsigned long long)(O.disk / 1024));
	fmt(owner, sizeof(owner), "root_owner=1000:1000,lazy_itable_init=1,nodiscard");
	{
		char *argv[] = { (char *)mke2fs, "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0",
				 "-E", owner, "-L", "kiln-scratch", (char *)path, size_k, NULL };
		r = run_tool(argv, false);
	}
	if (r != 0) {
		set_msg("mke2fs on the scratch disk failed (status %d)", r);
		return -1;
	}
	return 0;
}

/* A cached file system fit to copy: a regular file of ours, of exactly O.disk bytes. */
static bool template_ok(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	       !(st.st_mode & 077) && (uint64_t)st.st_size == O.disk;
}

/*
 * The empty scratch file system of O.disk bytes, made once per size and mke2fs options:
 * STATE/cache/scratch-vVER-BYTES.ext4. A kiln that does not find it runs mke2fs into a name of
 * its own, fsyncs it and renames it into place, so a reader only ever opens a complete one;
 * concurrent makers each rename a complete file (the last one stays). Returns a read-only fd,
 * or -1 with the message set.
 */
static int scratch_template(void)
{
	char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX];
	int fd;

	fmt(dir, sizeof(dir), "%s/cache", R.state);
	fmt(path, sizeof(path), "%s/scratch-v%d-%llu.ext4", dir, SCRATCH_VER,
	    (unsigned long long)O.disk);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0 && template_ok(fd))
		return fd;
	if (fd >= 0)
		close(fd);
	if (mkdir_p(dir, 0700) < 0) {
		set_msg("cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	fmt(tmp, sizeof(tmp), "%s/.scratch-v%d-%llu.%d.tmp", dir, SCRATCH_VER,
	    (unsigned long long)O.disk, (int)getpid());
	unlink(tmp); /* left by a kiln that died with this pid */
	if (mkfs_scratch(tmp) < 0) {
		unlink(tmp);
		return -1;
	}
	fd = open(tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
		set_msg("scratch disk cache %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return -1;
	}
	return fd;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Copy [off, end) of src to the same place in dst: in the kernel where it can, else through a
 * buffer, leaving all-zero blocks unwritten (holes). */
static int copy_range(int src, int dst, off_t off, off_t end)
{
	static uint8_t buf[1 << 16];
	bool cfr = true;

	while (off < end) {
		size_t want = (size_t)(end - off) < sizeof(buf) ? (size_t)(end - off) : sizeof(buf);
		ssize_t n;

		if (cfr) {
			off_t in = off, out = off;

			n = copy_file_range(src, &in, dst, &out, (size_t)(end - off), 0);
			if (n > 0) {
				off += n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n == 0)
				return -EIO;
			if (errno != EXDEV && errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
				return -errno;
			cfr = false;
		}
		n = pread(src, buf, want, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		if (!all_zero(buf, (size_t)n)) {
			for (size_t done = 0; done < (size_t)n;) {
				ssize_t w = pwrite(dst, buf + done, (size_t)n - done, off + (off_t)done);
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					return w < 0 ? -errno : -EIO;
				done += (size_t)w;
			}
		}
		off += n;
	}
	return 0;
}

/* Make dst (O.disk bytes, sparse) a copy of src: a clone where the file system shares blocks,
 * else a copy of src's allocated ranges only. */
static int sparse_copy(int src, int dst)
{
	off_t off = 0, end, size = (off_t)O.disk;

	if (ioctl(dst, FICLONE, src) == 0)
		return 0;
	while (off < size) {
		off = lseek(src, off, SEEK_DATA);
		if (off < 0)
			return errno == ENXIO ? 0 : -errno;
		end = lseek(src, off, SEEK_HOLE);
		if (end < 0)
			return -errno;
		if (end > size)
			end = size;
		int r = copy_range(src, dst, off, end);
		if (r < 0)
			return r;
		off = end;
	}
	return 0;
}

/* The run's scratch disk: a sparse copy of the cached empty file system, owned by the slot's uid. */
static int make_scratch(void)
{
	int src = scratch_template(), fd, r;

	if (src < 0)
		return -1;
	fd = open(R.scratch, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)O.disk) < 0) {
		set_msg("scratch disk %s: %s", R.scratch, strerror(errno));
		goto out;
	}
	r = sparse_copy(src, fd);
	if (r < 0) {
		set_msg("scratch disk %s: copying the empty file system: %s", R.scratch, strerror(-r));
		goto out;
	}
	if (fchown(fd, R.uid, R.uid) < 0) {
		set_msg("chown %s: %s", R.scratch, strerror(errno));
		goto out;
	}
	close(src);
	close(fd);
	return 0;
out:
	close(src);
	if (fd >= 0)
		close(fd);
	return -1;
}

/* A free slot: uid base+slot, CID 3+slot; held by an flock until kiln exits. */
static int take_slot(void)
{
	uint32_t base = env_u32("KILN_UID_BASE", UID_BASE_DEF, 1, 4000000000u);
	uint32_t count = env_u32("KILN_UID_COUNT", UID_COUNT_DEF, 1, 65536);
	char p[PATH_MAX];

	if ((uint64_t)base + count > 4294967294ull)
		kiln_die(KILN_RUN_EXIT_USAGE, "KILN_UID_BASE + KILN_UID_COUNT beyond the uid range");
	fmt(p, sizeof(p), "%s/locks", R.state);
	if (mkdir_p(p, 0700) < 0) {
		set_msg("cannot create %s: %s", p, strerror(errno));
		return -1;
	}
	for (uint32_t i = 0; i < count; i++) {
		int fd;

		fmt(p, sizeof(p), "%s/locks/slot-%u", R.state, i);
		fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0) {
			set_msg("cannot open %s: %s", p, strerror(errno));
			return -1;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			char prev[32] = "";
			ssize_t n = pread(fd, prev, sizeof(prev) - 1, 0);

			/* A previous holder that died may have left remains: remove them first. */
			if (n > 0) {
				prev[n] = 0;
				prev[strcspn(prev, "\n")] = 0;
				if (prev[0] && !strchr(prev, '/') && strcmp(prev, ".") && strcmp(prev, "..")) {
					char lk[PATH_MAX];
					int lfd;

					fmt(lk, sizeof(lk), "%s/runs/%s/lock", R.state, prev);
					lfd = open(lk, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
					if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) == 0)
						(void)remove_run(R.state, prev);
					if (lfd >= 0)
						close(lfd);
				}
			}
			if (ftruncate(fd, 0) < 0 || pwrite(fd, R.id, strlen(R.id), 0) < 0) {
				set_msg("cannot write %s: %s", p, strerror(errno));
				close(fd);
				return -1;
			}
			R.slot = i;
			R.slot_fd = fd;
			R.uid = base + i;
			R.cid = 3 + i;
			return 0;
		}
		close(fd);
	}
	set_msg("all %u run slots are in use (KILN_UID_COUNT)", count);
	return -1;
}

static int make_run_dir(void)
{
	uint8_t rnd[8];
	char p[PATH_MAX];

	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		set_msg("getrandom: %s", strerror(errno));
		return -1;
	}
	fmt(R.id, sizeof(R.id), "k%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
		 rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	if (mkdir_p(R.state, 0711) < 0 || chmod(R.state, 0711) < 0) {
		set_msg("cannot create the state directory %s: %s", R.state, strerror(errno));
		return -1;
	}
	fmt(p, sizeof(p), "%s/runs", R.state);
	if (mkdir_p(p, 0711) < 0) {
		set_msg("cannot create %s: %s", p, strerror(errno));
		return -1;
	}
	fmt(R.rundir, sizeof(R.rundir), "%s/runs/%s", R.state, R.id);
	if (mkdir(R.rundir, 0711) < 0) {
		set_msg("cannot create %s: %s", R.rundir, strerror(errno));
		return -1;
	}
	R.rundir_made = true;
	fmt(p, sizeof(p), "%s/lock", R.rundir);
	R.lock_fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (R.lock_fd < 0 || flock(R.lock_fd, LOCK_EX) < 0) {
		set_msg("cannot lock %s: %s", p, strerror(errno));
		return -1;
	}
	if (take_slot() < 0)
		return -1;
	fmt(R.scratch, sizeof(R.scratch), "%s/scratch.img", R.rundir);
	fmt(R.vsockdir, sizeof(R.vsockdir), "%s/vsock", R.rundir);
	fmt(R.uds, sizeof(R.uds), "%s/v.sock", R.vsockdir);
	fmt(R.jailbase, sizeof(R.jailbase), "%s/jail", R.state);
	fmt(R.cgdir, sizeof(R.cgdir), CG_ROOT "/" CG_PARENT "/%s", R.id);
	if (mkdir(R.vsockdir, 0700) < 0 || chown(R.vsockdir, R.uid, R.uid) < 0) {
		set_msg("cannot create %s: %s", R.vsockdir, strerror(errno));
		return -1;
	}
	if (strlen(R.uds) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		set_msg("vsock socket path %s too long (KILN_STATE_DIR)", R.uds);
		return -1;
	}
	if (!O.no_jail && mkdir_p(R.jailbase, 0700) < 0) {
		set_msg("cannot create %s: %s", R.jailbase, strerror(errno));
		return -1;
	}
	return make_scratch();
}

/*
 * The supervising jailer, in the forked child of spawn(): kiln-jailer's own argument parsing and
 * jail_run(), linked in from jailer/, with its name (comm "kiln-jailer", messages "kiln-jailer:")
 * instead of an exec of the kiln-jailer binary. The same code and order as that binary (jail_run
 * closes every other fd, clears the environment, builds the jail, execs the VMM in it, drops to
 * CAP_KILL and supervises); only the exec is saved: ~40 ms with a static-pie start in the
 * emulated host. Never returns.
 */
static _Noreturn void run_jailer(int argc, char **argv)
{
	struct jail_config cfg;
	char err[JAIL_ERR_MAX * 2];

	kiln_set_progname("kiln-jailer");
	prctl(PR_SET_NAME, "kiln-jailer");
	if (jail_parse_args(argc, argv, &cfg, err, sizeof(err)) < 0 || cfg.help || cfg.cleanup)
		kiln_die(KILN_EXIT_USAGE, "%s", err[0] ? err : "bad arguments");
	jail_run(&cfg);
}

/* Build the VMM's (or jailer's) argv and start it. */
static int spawn(void)
{
	static char a_mem[32], a_vcpus[16], a_cmd[512], a_root[PATH_MAX + 32], a_scr[PATH_MAX + 32];
	static char a_vsock[PATH_MAX + 64], a_uid[16], a_memmax[64], a_pids[32], a_fsize[48];
	static char a_kernel[PATH_MAX + 2], a_cache[PATH_MAX];
	char *argv[64];
	int n = 0, pipefd[2];
	const char *kb, *ib;

	kb = strrchr(R.kernel, '/');
	kb = kb ? kb + 1 : R.kernel;
	ib = strrchr(R.image, '/');
	ib = ib ? ib + 1 : R.image;
	fmt(a_mem, sizeof(a_mem), "%llu", (unsigned long long)(O.mem >> 20));
	fmt(a_vcpus, sizeof(a_vcpus), "%u", O.vcpus);
	fmt(a_cmd, sizeof(a_cmd), "console=ttyS0 quiet reboot=k panic=-1 root=/dev/vda ro "
		 "rootfstype=ext4 init=/sbin/init kiln.scratch=vdb");
	if (O.no_jail) {
		fmt(a_kernel, sizeof(a_kernel), "%s", R.kernel);
		fmt(a_root, sizeof(a_root), "%s,ro,id=root", R.image);
		fmt(a_scr, sizeof(a_scr), "%s,id=scratch", R.scratch);
		fmt(a_vsock, sizeof(a_vsock), "cid=%u,uds=%s", R.cid, R.uds);
		argv[n++] = R.vmm;
	} else {
		fmt(a_kernel, sizeof(a_kernel), "/%s", kb);
		fmt(a_root, sizeof(a_root), "/%s,ro,id=root", ib);
		fmt(a_scr, sizeof(a_scr), "/scratch.img,id=scratch");
		fmt(a_vsock, sizeof(a_vsock), "cid=%u,uds=/vsock/v.sock", R.cid);
		fmt(a_uid, sizeof(a_uid), "%u", R.uid);
		fmt(a_memmax, sizeof(a_memmax), "memory.max=%llu",
			 (unsigned long long)(O.mem + VMM_OVERHEAD));
		fmt(a_pids, sizeof(a_pids), "pids.max=%u", VMM_PIDS + O.vcpus);
		fmt(a_fsize, sizeof(a_fsize), "fsize=%llu", (unsigned long long)O.disk);
		argv[n++] = "kiln-jailer";
		argv[n++] = "--id";
		argv[n++] = R.id;
		argv[n++] = "--exec-file";
		argv[n++] = R.vmm;
		argv[n++] = "--uid";
		argv[n++] = a_uid;
		argv[n++] = "--gid";
		argv[n++] = a_uid;
		argv[n++] = "--chroot-base-dir";
		argv[n++] = R.jailbase;
		/* One sealed copy of kiln-vmm for all runs, bound into each jail (made by the first). */
		fmt(a_cache, sizeof(a_cache), "%s/cache", R.state);
		argv[n++] = "--exec-cache";
		argv[n++] = a_cache;
		argv[n++] = "--parent-cgroup";
		argv[n++] = CG_PARENT;
		argv[n++] = "--cgroup";
		argv[n++] = a_memmax;
		argv[n++] = "--cgroup";
		argv[n++] = "memory.swap.max=0";
		argv[n++] = "--cgroup";
		argv[n++] = a_pids;
		argv[n++] = "--resource-limit";
		argv[n++] = a_fsize;
		argv[n++] = "--ro";
		argv[n++] = R.kernel;
		argv[n++] = "--ro";
		argv[n++] = R.image;
		argv[n++] = "--rw";
		argv[n++] = R.scratch;
		argv[n++] = "--rw";
		argv[n++] = R.vsockdir;
		argv[n++] = "--";
	}
	argv[n++] = "--kernel";
	argv[n++] = a_kernel;
	argv[n++] = "--mem";
	argv[n++] = a_mem;
	argv[n++] = "--vcpus";
	argv[n++] = a_vcpus;
	argv[n++] = "--cmdline";
	argv[n++] = a_cmd;
	argv[n++] = "--disk";
	argv[n++] = a_root;
	argv[n++] = "--disk";
	argv[n++] = a_scr;
	argv[n++] = "--vsock";
	argv[n++] = a_vsock;
	argv[n] = NULL;

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		set_msg("pipe: %s", strerror(errno));
		return -1;
	}
	pid_t parent = getpid();
	R.t_spawn = now_us();
	dbg("run directory ready; spawning the jailer");
	fflush(NULL); /* the child's exit() (the jailer's) must not write kiln's stdio buffers again */
	R.child = fork();
	if (R.child < 0) {
		set_msg("fork: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	if (R.child == 0) {
		sigset_t none;
		int nul = open("/dev/null", O_RDONLY);

		/* Own process group: a terminal's ^C reaches kiln only, which tears down in order. */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (nul < 0 || dup2(nul, 0) < 0 || dup2(pipefd[1], 1) < 0 || dup2(pipefd[1], 2) < 0)
			_exit(127);
		if (O.no_jail && setrlimit(RLIMIT_FSIZE, &(struct rlimit){ O.disk, O.disk }) < 0)
			_exit(127);
		closefrom(3);
		if (!O.no_jail)
			run_jailer(n, argv);
		execve(argv[0], argv, (char *[]){ NULL });
		dprintf(2, "kiln: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	R.con_fd = pipefd[0];
	fcntl(R.con_fd, F_SETFL, O_NONBLOCK);
	R.pidfd = (int)syscall(SYS_pidfd_open, R.child, 0);
	if (R.pidfd < 0) {
		set_msg("pidfd_open: %s", strerror(errno));
		return -1;
	}
	R.ph = PH_CONNECT;
	R.deadline = now_ms() + BOOT_MS;
	return 0;
}

/* ---- the VM's lifetime ------------------------------------------------------------------------ */

static void kill_vm(void)
{
	char p[PATH_MAX];

	if (R.reaped || R.child <= 0)
		return;
	if (!R.kill_at) {
		R.kill_at = now_ms();
		R.t_kill = now_us();
		R.f.killed_by_us = true;
	}
	if (!O.no_jail) {
		fmt(p, sizeof(p), "%s/cgroup.kill", R.cgdir);
		if (write_str_file(p, "1") == 0)
			return;
	}
	kill(R.child, SIGKILL); /* the VMM (or, jailed, the supervisor: the VMM gets PDEATHSIG) */
}

static void reap(void)
{
	int st;
	pid_t p;

	if (R.reaped)
		return;
	while ((p = wait4(R.child, &st, WNOHANG, &R.ru)) < 0 && errno == EINTR)
		;
	if (p != R.child)
		return;
	R.reaped = true;
	R.wstatus = st;
	dbg("VMM (or jailer) reaped, status 0x%x", st);
	R.f.vmm_ended = true;
	if (WIFSIGNALED(st)) {
		R.f.vmm_signaled = true;
		R.f.vmm_code = WTERMSIG(st);
	} else if (!O.no_jail && WEXITSTATUS(st) > 128) {
		/* The jailer reports a VMM killed by signal N as 128+N. */
		R.f.vmm_signaled = true;
		R.f.vmm_code = WEXITSTATUS(st) - 128;
	} else {
		R.f.vmm_code = WEXITSTATUS(st);
	}
	R.f.vmm_cpu_us = (uint64_t)R.ru.ru_utime.tv_sec * 1000000u + (uint64_t)R.ru.ru_utime.tv_usec +
			 (uint64_t)R.ru.ru_stime.tv_sec * 1000000u + (uint64_t)R.ru.ru_stime.tv_usec;
	R.rec.vmm_peak_bytes = (uint64_t)R.ru.ru_maxrss * 1024u;
}

static void con_read(void)
{
	char buf[4096];
	ssize_t n;

	while ((n = read(R.con_fd, buf, sizeof(buf))) > 0) {
		size_t k = (size_t)n;

		con_watch_feed(&R.con_watch, buf, k);
		if (k >= CON_TAIL) {
			memcpy(R.con, buf + k - CON_TAIL, CON_TAIL);
			R.con_len = CON_TAIL;
			continue;
		}
		if (R.con_len + k > CON_TAIL) {
			size_t drop = R.con_len + k - CON_TAIL;
			memmove(R.con, R.con + drop, R.con_len - drop);
			R.con_len -= drop;
		}
		memcpy(R.con + R.con_len, buf, k);
		R.con_len += k;
	}
	/* The agent announces on the console that it listens: connect now rather than at the next
	 * retry. Only a hint (the console is the guest's to write): a refused connect retries. */
	if (R.ph <= PH_HANDSHAKE && !R.ready_seen && memmem(R.con, R.con_len, AGENT_READY, strlen(AGENT_READY))) {
		R.ready_seen = true;
		R.next_connect = 0;
		dbg("the console says the agent is ready");
	}
	if (n == 0) {
		close(R.con_fd);
		R.con_fd = -1;
	}
}

/* ---- agent connection ------------------------------------------------------------------------- */

static void end_proto(const char *fmt, ...) KILN_PRINTF(1, 2);
static void end_proto(const char *fmt, ...)
{
	va_list ap;
	char m[400];

	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	set_msg("guest agent: %s", m);
	R.f.proto_error = true;
	R.ph = PH_DONE;
	kill_vm();
}

static void end_setup(const char *fmt, ...) KILN_PRINTF(1, 2);
static void end_setup(const char *fmt, ...)
{
	va_list ap;
	char m[400];

	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	set_msg("%s", m);
	R.f.setup_failed = true;
	R.ph = PH_DONE;
	kill_vm();
}

static void try_connect(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	/* After a refusal: until the console says the agent listens, every attempt costs the
	 * booting guest an interrupt and a reset, so retry slowly; after that, quickly. */
	R.next_connect = now_ms() + (R.ready_seen ? 20 : 100);
	/* Nonblocking from the start: a VMM that does not accept must not block kiln. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	fmt(a.sun_path, sizeof(a.sun_path), "%s", R.uds);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return;
	}
	if (!R.t_sock) {
		R.t_sock = now_us();
		dbg("connected to the VMM's vsock socket");
	}
	{
		char line[32];
		int n = fmt(line, sizeof(line), "CONNECT %u\n", KA_PORT);
		if (write(fd, line, (size_t)n) != n) { /* an empty new socket takes 13 bytes */
			close(fd);
			return;
		}
	}
	R.sock = fd;
	R.hslen = 0;
	R.ph = PH_HANDSHAKE;
}

static size_t out_free(void)
{
	if (R.outoff && R.outlen + KA_MAX_FRAME > OUT_CAP) {
		memmove(R.out, R.out + R.outoff, R.outlen - R.outoff);
		R.outlen -= R.outoff;
		R.outoff = 0;
	}
	return OUT_CAP - R.outlen;
}

static void out_flush(void)
{
	while (R.outoff < R.outlen && R.sock >= 0) {
		ssize_t n = write(R.sock, R.out + R.outoff, R.outlen - R.outoff);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			R.outoff = R.outlen; /* the VMM's end is gone: nothing queued can arrive */
		if (n <= 0)
			break;
		R.outoff += (size_t)n;
	}
	if (R.outoff == R.outlen)
		R.outoff = R.outlen = 0;
}

/* Queue one frame built by fn (which gets an encoder over the free space). */
static bool queue(long n)
{
	if (n < 0) {
		end_setup("cannot encode a frame for the guest agent");
		return false;
	}
	R.outlen += (size_t)n;
	return true;
}

static struct ka_enc enc_here(void)
{
	struct ka_enc e;

	(void)out_free();
	ka_enc_init(&e, R.out + R.outlen, OUT_CAP - R.outlen);
	return e;
}

static void send_exec(void)
{
	struct ka_enc e;
	uint32_t nrl = 0;

	memset(&X, 0, sizeof(X));
	X.user = O.user == RUN_USER_ROOT ? KA_USER_ROOT : KA_USER_SANDBOX;
	X.argc = (uint32_t)O.argc;
	for (int i = 0; i < O.argc; i++)
		X.argv[i] = (struct ka_str){ O.argv[i], (uint32_t)strlen(O.argv[i]) };
	X.envc = O.nenv;
	for (uint32_t i = 0; i < O.nenv; i++)
		X.env[i] = (struct ka_str){ O.env[i], (uint32_t)strlen(O.env[i]) };
	X.cwd = (struct ka_str){ O.cwd ? O.cwd : "", O.cwd ? (uint32_t)strlen(O.cwd) : 0 };
	X.rl[nrl++] = (struct ka_rlimit){ RLIMIT_NPROC, O.pids, O.pids };
	if (O.cpu_ms)
		X.rl[nrl++] = (struct ka_rlimit){ RLIMIT_CPU, O.cpu_ms / 1000, O.cpu_ms / 1000 + 1 };
	X.nrlimits = nrl;
	e = enc_here();
	if (!queue(ka_enc_exec(&e, &X)))
		return;
	R.t_exec = now_us();
	dbg("EXEC queued");
	R.ph = PH_RUN;
	R.deadline = now_ms() + O.timeout_ms;
}

static void start_put(void)
{
	struct ka_enc e;
	struct ka_put p;
	struct stat st;
	struct run_xfer *x = &O.put[R.put_i];

	if (fstat(R.put_fds[R.put_i], &st) < 0) {
		end_setup("--put %s: %s", x->host, strerror(errno));
		return;
	}
	p.size = (uint64_t)st.st_size;
	p.mode = (uint32_t)(st.st_mode & 0777);
	p.path = (struct ka_str){ x->guest, (uint32_t)strlen(x->guest) };
	e = enc_here();
	if (!queue(ka_enc_put(&e, &p)))
		return;
	R.put_left = p.size;
	R.put_sent_all = p.size == 0;
	R.ph = PH_PUT;
	R.deadline = now_ms() + REPLY_MS;
}

static void start_get(void);

/* After HELLO, after each PUT_OK: the next PUT or the EXEC. */
static void next_after_put(void)
{
	if (R.put_i < O.nput)
		start_put();
	else
		send_exec();
}

/* The conversation is over: end the VM. */
static void send_bye(void)
{
	struct ka_enc e;

	/* Nothing in the VM is needed any more, and killing it is quicker than its own power-off;
	 * except when the agent reported an OOM kill: the guest kernel's OOM line (which confirms
	 * it) may still be on its way through the console, and the VMM flushes that only when the
	 * VM ends by itself. */
	if (!(R.f.got_exit && (R.f.exit.flags & KA_EXIT_F_OOM))) {
		dbg("ending the VM");
		R.ph = PH_DONE;
		kill_vm();
		return;
	}
	e = enc_here();
	if (!queue(ka_enc_data(&e, KA_BYE, NULL, 0)))
		return;
	R.ph = PH_BYE;
	dbg("BYE queued");
	R.deadline = now_ms() + REPLY_MS;
}

static void start_get(void)
{
	struct ka_enc e;
	struct run_xfer *x;

	if (R.get_i >= O.nget) {
		send_bye();
		return;
	}
	x = &O.get[R.get_i];
	e = enc_here();
	ka_enc_begin(&e, KA_GET);
	ka_put_str(&e, x->guest, strlen(x->guest));
	if (!queue(ka_enc_end(&e)))
		return;
	R.get_begun = false;
	R.ph = PH_GET;
	R.deadline = now_ms() + REPLY_MS;
}

static void get_fail(const char *fmt, ...) KILN_PRINTF(1, 2);
static void get_fail(const char *fmt, ...)
{
	va_list ap;
	char m[400];

	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	note("--get %s: %s", O.get[R.get_i].guest, m);
	set_msg("--get %s: %s", O.get[R.get_i].guest, m);
	R.get_failed = true;
}

static void get_done(void)
{
	struct run_xfer *x = &O.get[R.get_i];

	if (R.get_fd >= 0) {
		if (close(R.get_fd) < 0 || rename(R.get_tmp, x->host) < 0) {
			get_fail("cannot write %s: %s", x->host, strerror(errno));
			unlink(R.get_tmp);
		}
		R.get_fd = -1;
	}
	R.get_i++;
	start_get();
}

/* Open a fresh temporary file beside the destination (O_EXCL: never through a link). */
static void get_open(uint32_t mode)
{
	struct run_xfer *x = &O.get[R.get_i];
	const char *slash = strrchr(x->host, '/');
	int n;

	if (slash)
		n = fmt(R.get_tmp, sizeof(R.get_tmp), "%.*s/.%s.kiln-XXXXXX", (int)(slash - x->host),
			     x->host, slash + 1);
	else
		n = fmt(R.get_tmp, sizeof(R.get_tmp), ".%s.kiln-XXXXXX", x->host);
	if (n < 0 || (size_t)n >= sizeof(R.get_tmp)) {
		get_fail("destination path too long");
		return;
	}
	R.get_fd = mkostemp(R.get_tmp, O_CLOEXEC);
	if (R.get_fd < 0) {
		get_fail("cannot create a file beside %s: %s", x->host, strerror(errno));
		return;
	}
	if (fchmod(R.get_fd, mode & 0755) < 0)
		get_fail("chmod: %s", strerror(errno));
}

/* The command's output: counted against --output-max, queued for the caller. */
static void emit(int fd, const uint8_t *p, uint32_t n, uint64_t *count, bool *trunc)
{
	uint64_t room = O.output_max - *count;

	if (n > room) {
		*trunc = true;
		n = (uint32_t)room;
	}
	if (n) {
		sink_put(&SK[fd == 1 ? SINK_OUT : SINK_ERR], p, n);
		*count += n;
		if (fd == 1)
			R.last_out = p[n - 1];
	}
	if (*trunc) {
		set_msg("%s went beyond --output-max (%llu bytes); the run was killed",
			fd == 1 ? "stdout" : "stderr", (unsigned long long)O.output_max);
		R.f.output_limit = true;
		R.ph = PH_DONE;
		kill_vm();
	}
}

/* One complete frame from the agent. Every type is checked against the phase. */
static void handle_frame(const struct ka_hdr *h, const uint8_t *p)
{
	struct ka_error er;
	uint32_t ver;

	if (h->type == KA_ERROR) {
		if (ka_error_decode(p, h->len, &er) != 0) {
			end_proto("malformed ERROR frame");
			return;
		}
		char m[KA_MSG_MAX + 1];
		size_t k = er.msg.len;
		memcpy(m, er.msg.p, k);
		m[k] = 0;
		for (size_t i = 0; i < k; i++)
			if ((unsigned char)m[i] < 0x20)
				m[i] = '?';
		if (R.ph == PH_PUT && er.code != KA_ERR_PROTO) {
			if (!R.put_sent_all) {
				end_proto("ERROR before the PUT data was sent");
				return;
			}
			end_setup("--put %s: refused by the guest: %s", O.put[R.put_i].guest, m);
			return;
		}
		if (R.ph == PH_GET && !R.get_begun && er.code != KA_ERR_PROTO) {
			get_fail("refused by the guest: %s", m);
			R.get_i++;
			start_get();
			return;
		}
		if (R.ph == PH_RUN && er.code == KA_ERR_EXEC) {
			end_setup("the guest could not start the command: %s", m);
			return;
		}
		end_proto("ERROR %u: %s", er.code, m);
		return;
	}
	switch (R.ph) {
	case PH_HELLO:
		if (h->type != KA_HELLO || ka_hello_decode(p, h->len, &ver) != 0 || ver != KA_VERSION) {
			end_proto("expected HELLO version %u, got %s", KA_VERSION, ka_type_name(h->type));
			return;
		}
		R.f.got_hello = true;
		R.t_hello = now_us();
		dbg("HELLO");
		next_after_put();
		return;
	case PH_PUT:
		if (h->type != KA_PUT_OK || !R.put_sent_all || R.put_left) {
			end_proto("unexpected %s during a PUT", ka_type_name(h->type));
			return;
		}
		close(R.put_fds[R.put_i]);
		R.put_fds[R.put_i] = -1;
		R.put_i++;
		next_after_put();
		return;
	case PH_RUN:
		if (h->type == KA_STDOUT) {
			emit(1, p, h->len, &R.rec.stdout_bytes, &R.rec.stdout_truncated);
			return;
		}
		if (h->type == KA_STDERR) {
			emit(2, p, h->len, &R.rec.stderr_bytes, &R.rec.stderr_truncated);
			return;
		}
		if (h->type == KA_EXIT) {
			if (ka_exit_decode(p, h->len, &R.f.exit) != 0) {
				end_proto("malformed EXIT frame");
				return;
			}
			R.f.got_exit = true;
			R.t_exit = now_us();
			dbg("EXIT (guest: wall %llu us, user %llu us, sys %llu us)",
			    (unsigned long long)R.f.exit.wall_us, (unsigned long long)R.f.exit.user_us,
			    (unsigned long long)R.f.exit.sys_us);
			start_get();
			return;
		}
		end_proto("unexpected %s while the command runs", ka_type_name(h->type));
		return;
	case PH_GET:
		if (!R.get_begun && h->type == KA_GET_BEGIN) {
			struct ka_get_begin gb;
			if (ka_get_begin_decode(p, h->len, &gb) != 0 || gb.size > KA_FILE_MAX) {
				end_proto("malformed GET_BEGIN frame");
				return;
			}
			R.get_begun = true;
			R.get_left = gb.size;
			R.get_fd = -1;
			get_open(gb.mode);
			if (R.get_left == 0)
				get_done();
			return;
		}
		if (R.get_begun && h->type == KA_GET_DATA) {
			if (h->len > R.get_left) {
				end_proto("GET_DATA beyond the announced size");
				return;
			}
			R.get_left -= h->len;
			if (R.get_fd >= 0 && write_all(R.get_fd, p, h->len) < 0) {
				get_fail("write %s: %s", O.get[R.get_i].host, strerror(errno));
				close(R.get_fd);
				R.get_fd = -1;
				unlink(R.get_tmp);
			}
			if (R.get_left == 0)
				get_done();
			return;
		}
		end_proto("unexpected %s during a GET", ka_type_name(h->type));
		return;
	default:
		end_proto("unexpected %s", ka_type_name(h->type));
		return;
	}
}

/* Read what the socket has; handle each complete frame. EOF: the connection is gone. */
static void sock_read(void)
{
	for (;;) {
		struct ka_hdr h;
		size_t need;
		ssize_t n;
		int rc;

		if (R.inlen == 0 && !out_gate())
			return; /* the caller has not taken the output yet: the guest waits */
		if (R.inlen >= KA_HDR_SIZE) {
			rc = ka_hdr_decode(R.in, R.inlen, &h);
			if (rc) {
				end_proto("bad frame header: %s", ka_strerror(rc));
				return;
			}
			if (R.inlen >= KA_HDR_SIZE + h.len) {
				R.inlen = 0;
				handle_frame(&h, R.in + KA_HDR_SIZE);
				if (R.ph == PH_DONE || R.sock < 0)
					return;
				continue;
			}
			need = KA_HDR_SIZE + h.len - R.inlen;
		} else {
			need = KA_HDR_SIZE - R.inlen;
		}
		n = read(R.sock, R.in + R.inlen, need);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close(R.sock);
			R.sock = -1;
			if (R.ph == PH_BYE)
				return; /* expected: the guest powers off */
			if (R.ph != PH_DONE) {
				/* The VM ending explains it (reap decides); otherwise the agent hung up. */
				R.ph = R.reaped ? PH_DONE : PH_LOST;
				R.deadline = now_ms() + LOST_MS;
			}
			return;
		}
		R.inlen += (size_t)n;
	}
}

static void handshake_read(void)
{
	for (;;) {
		ssize_t n = read(R.sock, R.hs + R.hslen, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			/* The agent does not listen yet: the VMM reset the connection. Try again. */
			close(R.sock);
			R.sock = -1;
			R.ph = PH_CONNECT;
			return;
		}
		R.hslen++;
		if (R.hs[R.hslen - 1] == '\n') {
			if (R.hslen < 4 || strncmp(R.hs, "OK ", 3) != 0) {
				end_setup("vsock handshake: unexpected reply from kiln-vmm");
				return;
			}
			/* The VMM answers OK once the guest accepted: HELLO follows at once. */
			R.ph = PH_HELLO;
			R.inlen = 0;
			R.deadline = now_ms() + REPLY_MS;
			return;
		}
		if (R.hslen >= 32) {
			end_setup("vsock handshake: reply line too long");
			return;
		}
	}
}

/* Stream the current PUT's data while the out buffer has room. */
static void put_pump(void)
{
	while (R.ph == PH_PUT && !R.put_sent_all && out_free() >= KA_HDR_SIZE + KA_CHUNK_MAX) {
		uint8_t *q = R.out + R.outlen;
		size_t want = R.put_left < KA_CHUNK_MAX ? (size_t)R.put_left : KA_CHUNK_MAX;
		ssize_t n = read(R.put_fds[R.put_i], q + KA_HDR_SIZE, want);
		struct ka_enc e;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			end_setup("--put %s: the file shrank or cannot be read", O.put[R.put_i].host);
			return;
		}
		ka_enc_init(&e, q, OUT_CAP - R.outlen);
		ka_enc_begin(&e, KA_PUT_DATA);
		e.len += (size_t)n;
		if (!queue(ka_enc_end(&e)))
			return;
		R.put_left -= (uint64_t)n;
		if (!R.put_left)
			R.put_sent_all = true;
		R.deadline = now_ms() + REPLY_MS;
	}
}

static void stdin_read(void)
{
	uint8_t *q;
	ssize_t n;
	struct ka_enc e;

	if (out_free() < KA_HDR_SIZE + KA_CHUNK_MAX)
		return;
	q = R.out + R.outlen;
	n = read(0, q + KA_HDR_SIZE, KA_CHUNK_MAX);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	ka_enc_init(&e, q, OUT_CAP - R.outlen);
	if (n <= 0) {
		R.stdin_done = true;
		(void)queue(ka_enc_data(&e, KA_STDIN_CLOSE, NULL, 0));
		return;
	}
	ka_enc_begin(&e, KA_STDIN);
	e.len += (size_t)n;
	(void)queue(ka_enc_end(&e));
}

static void on_deadline(void)
{
	switch (R.ph) {
	case PH_CONNECT:
	case PH_HANDSHAKE:
		end_setup("the guest agent did not answer within %u s of the VM's start", BOOT_MS / 1000);
		break;
	case PH_HELLO:
		end_proto("accepted the connection but sent no HELLO within %u s", REPLY_MS / 1000);
		break;
	case PH_RUN:
		set_msg("the command ran longer than --timeout (%llu ms); the VM was killed",
			(unsigned long long)O.timeout_ms);
		R.f.timed_out = true;
		R.ph = PH_DONE;
		kill_vm();
		break;
	case PH_LOST:
		end_proto("closed the connection without reporting, and the VM did not end");
		break;
	case PH_BYE:
		/* The command has reported; a VM that does not power off is only killed. */
		R.ph = PH_DONE;
		kill_vm();
		break;
	default:
		end_proto("silent past its deadline");
		break;
	}
}

static void loop(void)
{
	enum phase seen = (enum phase)-1;

	while (!R.reaped || (R.sock >= 0 && R.ph != PH_DONE)) {
		if (R.ph != seen) {
			dbg("phase %d", (int)R.ph);
			seen = R.ph;
		}
		struct pollfd pf[5 + NSINKS];
		int np = 0, i_sock = -1, i_in = -1, i_pid, i_con = -1, i_sig, tmo, i_sk[NSINKS];
		short sev = 0;
		uint64_t t = now_ms(), wake;

		if (R.ph == PH_DONE && !R.reaped && R.kill_at && t > R.kill_at + KILL_MS) {
			kill(R.child, SIGKILL);
			R.kill_at = t; /* and again after another KILL_MS */
		}
		if (R.ph != PH_DONE && R.ph != PH_CONNECT && t >= R.deadline) {
			on_deadline();
			continue;
		}
		if (R.ph == PH_CONNECT) {
			if (t >= R.deadline) {
				on_deadline();
				continue;
			}
			if (t >= R.next_connect)
				try_connect();
			if (R.ph != PH_CONNECT)
				continue;
		}
		put_pump();
		out_flush();
		if (R.ph == PH_DONE && R.sock >= 0) {
			close(R.sock);
			R.sock = -1;
		}

		i_pid = np;
		pf[np++] = (struct pollfd){ R.pidfd, R.reaped ? 0 : POLLIN, 0 };
		i_sig = np;
		pf[np++] = (struct pollfd){ R.sig_fd, POLLIN, 0 };
		if (R.con_fd >= 0) {
			i_con = np;
			pf[np++] = (struct pollfd){ R.con_fd, POLLIN, 0 };
		}
		if (R.sock >= 0) {
			/* Not readable while the caller's output is held up (out_gate). */
			if (R.ph == PH_HANDSHAKE || R.inlen || out_gate())
				sev |= POLLIN;
			if (R.outoff < R.outlen)
				sev |= POLLOUT;
		}
		if (sev) {
			i_sock = np;
			pf[np++] = (struct pollfd){ R.sock, sev, 0 };
		}
		np = sink_poll_add(pf, np, i_sk);
		if (R.ph == PH_RUN && !R.stdin_done && out_free() >= KA_HDR_SIZE + KA_CHUNK_MAX) {
			i_in = np;
			pf[np++] = (struct pollfd){ 0, POLLIN, 0 };
		}
		wake = R.ph == PH_CONNECT ? R.next_connect : R.deadline;
		if (R.ph == PH_DONE)
			wake = R.kill_at ? R.kill_at + KILL_MS : t + 1000;
		tmo = wake > t ? (int)(wake - t < 1000 ? wake - t : 1000) : 0;
		if (poll(pf, (nfds_t)np, tmo) < 0) {
			if (errno == EINTR)
				continue;
			end_setup("poll: %s", strerror(errno));
			continue;
		}
		if (pf[i_sig].revents) {
			struct signalfd_siginfo si;
			if (read(R.sig_fd, &si, sizeof(si)) == sizeof(si) && !R.f.interrupted) {
				R.f.interrupted = true;
				R.f.interrupt_sig = (int)si.ssi_signo;
				set_msg("kiln got signal %u; the run was torn down", si.ssi_signo);
				R.ph = PH_DONE;
				kill_vm();
			}
		}
		if (i_con >= 0 && pf[i_con].revents)
			con_read();
		sink_poll_done(pf, i_sk);
		if (i_sock >= 0 && R.sock >= 0 && (pf[i_sock].revents & (POLLOUT | POLLHUP | POLLERR)))
			out_flush();
		if (i_sock >= 0 && R.sock >= 0 && (sev & POLLIN) &&
		    (pf[i_sock].revents & (POLLIN | POLLHUP | POLLERR))) {
			if (R.ph == PH_HANDSHAKE)
				handshake_read();
			else
				sock_read();
		}
		if (i_in >= 0 && (pf[i_in].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
			if (pf[i_in].revents & POLLNVAL) {
				struct ka_enc e = enc_here();
				R.stdin_done = true;
				(void)queue(ka_enc_data(&e, KA_STDIN_CLOSE, NULL, 0));
			} else {
				stdin_read();
			}
		}
		if (pf[i_pid].revents) {
			reap();
			if (R.reaped && R.ph != PH_DONE && R.ph != PH_BYE && R.sock < 0)
				R.ph = PH_DONE; /* nothing more can arrive */
			if (R.reaped && R.ph == PH_BYE)
				R.ph = PH_DONE;
			if (R.reaped && R.ph != PH_DONE && R.sock >= 0) {
				/* Drain what the agent sent before the VM ended (frames only once the
				 * handshake is done; the caller's output held up or not), then stop. */
				R.vm_gone = true;
				if (R.ph >= PH_HELLO)
					sock_read();
				if (R.sock >= 0) {
					close(R.sock);
					R.sock = -1;
				}
				R.ph = PH_DONE;
			}
		}
	}
	if (R.con_fd >= 0)
		con_read();
}

/* ---- teardown --------------------------------------------------------------------------------- */

/* Host-side check of a full scratch disk: the sparse file almost entirely allocated. */
static bool scratch_full(void)
{
	struct stat st;

	if (stat(R.scratch, &st) < 0 || O.disk == 0)
		return false;
	return (uint64_t)st.st_blocks * 512u >= O.disk / 100u * 90u;
}

static void teardown(void)
{
	if (R.child > 0 && !R.reaped) {
		kill_vm();
		for (int i = 0; i < 100 && !R.reaped; i++) {
			reap();
			if (!R.reaped)
				usleep(50 * 1000);
			if (i == 60)
				kill(R.child, SIGKILL);
		}
		if (!R.reaped) {
			while (waitpid(R.child, &R.wstatus, 0) < 0 && errno == EINTR)
				;
			R.reaped = true;
		}
	}
	if (R.sock >= 0)
		close(R.sock);
	R.sock = -1;
	dbg("teardown");
	if (R.rundir_made) {
		if (R.f.got_exit && !(R.f.exit.kind == KA_EXITED && R.f.exit.code == 0))
			R.f.disk_full = scratch_full();
		if (remove_run(R.state, R.id) < 0 && !R.msg[0])
			set_msg("remains of the run could not be removed (kiln gc)");
	}
	if (R.slot_fd >= 0)
		close(R.slot_fd);
	if (R.lock_fd >= 0)
		close(R.lock_fd);
	dbg("removed");
}

static void print_console_tail(void)
{
	size_t start = 0;

	if (!R.con_len)
		return;
	/* The last 1 KiB or so, from a line start. */
	if (R.con_len > 1024) {
		start = R.con_len - 1024;
		while (start < R.con_len && R.con[start - 1] != '\n')
			start++;
	}
	static char clean[CON_TAIL];
	size_t n = con_clean(clean, R.con + start, R.con_len - start);

	note("last console output of the VM:");
	sink_put(&SK[SINK_ERR], clean, n);
	if (!n || clean[n - 1] != '\n')
		sink_put(&SK[SINK_ERR], "\n", 1);
}

static int finish(void)
{
	char buf[4096];
	long n;

	R.t_end = now_us();
	R.f.cpu_limit_ms = O.cpu_ms;
	R.f.console_oom = R.con_watch.oom;
	R.f.vmm_peak_bytes = R.rec.vmm_peak_bytes;
	R.f.mem_bytes = O.mem;
	run_decide(&R.f, &R.rec.r);
	R.rec.id = R.id;
	R.rec.message = R.msg;
	R.rec.oom = R.f.got_exit && (R.f.exit.flags & KA_EXIT_F_OOM);
	R.rec.pids_limit_hit = R.f.got_exit && (R.f.exit.flags & KA_EXIT_F_PIDS);
	R.rec.cpu_user_us = R.f.exit.user_us;
	R.rec.cpu_sys_us = R.f.exit.sys_us;
	R.rec.peak_rss_kb = R.f.exit.maxrss_kb;
	R.rec.vmm_cpu_us = R.f.vmm_cpu_us;
	R.rec.t_jail_us = R.t_sock ? R.t_sock - R.t_spawn : 0;
	R.rec.t_boot_us = R.t_hello ? R.t_hello - R.t_spawn : 0;
	{
		/* The command's time ends with its EXIT, or when kiln killed the VM. */
		uint64_t stop = R.t_exit ? R.t_exit : R.t_kill && R.t_kill > R.t_exec ? R.t_kill : R.t_end;

		R.rec.t_run_us = R.t_exec ? stop - R.t_exec : 0;
		R.rec.t_teardown_us = R.t_end - (R.t_exec ? stop : R.t_end);
	}
	R.rec.t_total_us = R.t_end - R.t0;

	switch (R.rec.r.reason) {
	case RR_SETUP_ERROR:
		note("setup failed: %s", R.msg[0] ? R.msg : "the VM ended before the agent answered");
		print_console_tail();
		break;
	case RR_GUEST_PANIC:
		note("the guest kernel panicked or reset (kiln-vmm status %d)", R.f.vmm_code);
		print_console_tail();
		break;
	case RR_VMM_SECCOMP:
		note("kiln-vmm was killed by its seccomp filter (SIGSYS)");
		print_console_tail();
		break;
	case RR_VMM_CRASH:
		note("kiln-vmm failed (%s %d)", R.f.vmm_signaled ? "signal" : "status", R.f.vmm_code);
		print_console_tail();
		break;
	case RR_AGENT_PROTOCOL:
	case RR_TIMEOUT:
	case RR_OUTPUT_LIMIT:
	case RR_INTERRUPTED:
		note("%s", R.msg);
		if (debug_on())
			print_console_tail();
		break;
	default:
		if (debug_on())
			print_console_tail();
		break;
	}

	/* The output still queued, then the record (which counts what the caller did not take). */
	sink_drain();
	R.rec.undelivered_bytes = SK[SINK_OUT].q.dropped + SK[SINK_ERR].q.dropped;
	if (R.rec.undelivered_bytes)
		set_msg("the caller did not take %llu bytes of output (it read nothing for %u s)",
			(unsigned long long)R.rec.undelivered_bytes, DRAIN_IDLE_MS / 1000);
	n = run_record_json(&R.rec, buf, sizeof(buf));
	if (n > 0 && O.json) {
		if (R.last_out >= 0 && R.last_out != '\n')
			sink_put(&SK[SINK_OUT], "\n", 1);
		sink_put(&SK[SINK_OUT], buf, (size_t)n);
	} else if (n > 0 && O.result_fd >= 0) {
		sink_init(&SK[SINK_RESULT], O.result_fd);
		sink_put(&SK[SINK_RESULT], buf, (size_t)n);
	}
	sink_drain();
	return R.rec.r.exit_status;
}

/* ---- commands --------------------------------------------------------------------------------- */

static int cmd_run(int argc, char **argv)
{
	char err[512];
	sigset_t set;
	int r;

	r = run_opts_parse(argc, argv, &O, err, sizeof(err));
	if (r == 1) {
		usage(stdout);
		return 0;
	}
	if (r < 0) {
		kiln_warn("%s", err);
		return KILN_RUN_EXIT_USAGE;
	}
	R.o = &O;
	R.t0 = now_us();
	signal(SIGPIPE, SIG_IGN); /* a caller that went away is a failed sink, not a dead kiln */
	R.slot_fd = R.lock_fd = R.pidfd = R.con_fd = R.sock = R.get_fd = R.sig_fd = -1;
	sink_init(&SK[SINK_OUT], 1);
	sink_init(&SK[SINK_ERR], 2);
	SK[SINK_RESULT].fd = -1;
	R.last_out = -1;
	for (unsigned i = 0; i < RUN_FILES_MAX; i++)
		R.put_fds[i] = -1;
	state_dir(R.state, sizeof(R.state));
	if (resolve() < 0) {
		R.f.setup_failed = true;
		return finish();
	}

	/* Signals that end kiln become events: the run is torn down in order, then kiln exits. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	R.sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (R.sig_fd < 0)
		kiln_die(KILN_RUN_EXIT_SETUP, "signalfd: %s", strerror(errno));

	dbg("resolved");
	if (make_run_dir() < 0 || spawn() < 0)
		R.f.setup_failed = true;
	else
		loop();
	teardown();
	return finish();
}

/* A run id as kiln makes them: "k" and 16 lowercase hex digits. */
static bool is_run_id(const char *s)
{
	if (s[0] != 'k' || strlen(s) != 17)
		return false;
	for (int i = 1; i < 17; i++)
		if (!isdigit((unsigned char)s[i]) && (s[i] < 'a' || s[i] > 'f'))
			return false;
	return true;
}

/*
 * kiln gc, with no run alive: remove the sealed copies of kiln-vmm (the jailer's --exec-cache
 * entries) made for a kiln-vmm that has since been replaced, i.e. every exec-kiln-vmm-* in
 * STATE/cache but the one named after the current file. A jail still using one keeps its inode;
 * with no run alive none is, and a run starting meanwhile uses the current name. Nothing is
 * removed when the current kiln-vmm cannot be examined. Returns -1 when a copy could not be
 * removed (kiln gc then exits 121, as for its other removals), else 0.
 */
static int gc_stale_vmm_copies(const char *state)
{
	static const char prefix[] = "exec-kiln-vmm-";
	char p[PATH_MAX], cur[NAME_MAX + 1];
	struct stat st;
	DIR *d;
	struct dirent *e;
	int r = 0;

	bin_dir();
	fmt(p, sizeof(p), "%s/kiln-vmm", R.bindir);
	if (lstat(p, &st) < 0 || !S_ISREG(st.st_mode) || jail_exec_cache_name(cur, sizeof(cur), "kiln-vmm", &st) < 0)
		return 0;
	fmt(p, sizeof(p), "%s/cache", state);
	d = opendir(p);
	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, sizeof(prefix) - 1) != 0 || strcmp(e->d_name, cur) == 0 ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0) {
			printf("kiln gc: removed the copy of a replaced kiln-vmm %s\n", e->d_name);
		} else {
			kiln_warn_errno(errno, "%s/%s", p, e->d_name);
			r = -1;
		}
	}
	closedir(d);
	return r;
}

static int cmd_gc(void)
{
	char state[PATH_MAX], p[PATH_MAX];
	DIR *d;
	struct dirent *e;
	int removed = 0, rc = 0, busy = 0;

	state_dir(state, sizeof(state));
	fmt(p, sizeof(p), "%s/runs", state);
	d = opendir(p);
	if (!d && errno != ENOENT) {
		kiln_warn_errno(errno, "%s", p);
		return KILN_RUN_EXIT_SETUP;
	}
	/* No runs directory: still look for jails, cgroups and cache files below. */
	while (d && (e = readdir(d)) != NULL) {
		char lk[PATH_MAX];
		int fd;

		if (e->d_name[0] == '.')
			continue;
		fmt(lk, sizeof(lk), "%s/%s/lock", p, e->d_name);
		fd = open(lk, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
			close(fd); /* alive */
			busy++;
			continue;
		}
		if (fd < 0) {
			struct stat st;
			char dir[PATH_MAX];
			fmt(dir, sizeof(dir), "%s/%s", p, e->d_name);
			/* No lock file yet: a run being created; leave it unless it is old. */
			if (stat(dir, &st) < 0 || time(NULL) - st.st_mtime < 60) {
				busy++;
				continue;
			}
		}
		if (remove_run(state, e->d_name) < 0)
			rc = KILN_RUN_EXIT_SETUP;
		else
			printf("kiln gc: removed run %s\n", e->d_name);
		removed++;
		if (fd >= 0)
			close(fd);
	}
	if (d)
		closedir(d);
	/* Jails and cgroups whose run directory is gone. */
	fmt(p, sizeof(p), "%s/jail/kiln-vmm", state);
	d = opendir(p);
	if (d) {
		while ((e = readdir(d)) != NULL) {
			char rd[PATH_MAX];
			struct stat st;

			if (e->d_name[0] == '.')
				continue;
			fmt(rd, sizeof(rd), "%s/runs/%s", state, e->d_name);
			if (stat(rd, &st) == 0)
				continue;
			if (remove_run(state, e->d_name) < 0)
				rc = KILN_RUN_EXIT_SETUP;
			else
				printf("kiln gc: removed jail %s\n", e->d_name);
		}
		closedir(d);
	}
	/* Cgroups of runs whose run directory and jail are both gone (kiln killed between the
	 * jailer's set-up and the cgroup's removal). Only names kiln makes: the parent cgroup may be
	 * shared. */
	d = is_cgroup2() ? opendir(CG_ROOT "/" CG_PARENT) : NULL;
	if (d) {
		while ((e = readdir(d)) != NULL) {
			char rd[PATH_MAX], jd[PATH_MAX];
			struct stat st;

			if (e->d_type != DT_DIR || !is_run_id(e->d_name))
				continue;
			fmt(rd, sizeof(rd), "%s/runs/%s", state, e->d_name);
			fmt(jd, sizeof(jd), "%s/jail/kiln-vmm/%s", state, e->d_name);
			if (stat(rd, &st) == 0 || lstat(jd, &st) == 0)
				continue;
			if (remove_run(state, e->d_name) < 0)
				rc = KILN_RUN_EXIT_SETUP;
			else
				printf("kiln gc: removed cgroup %s\n", e->d_name);
		}
		closedir(d);
	}
	/* Scratch file systems a kiln was making when it died (.scratch-...PID.tmp, PID gone), and
	 * kiln-vmm copies a jailer was making (.exec.PID.tmp). */
	fmt(p, sizeof(p), "%s/cache", state);
	d = opendir(p);
	if (d) {
		while ((e = readdir(d)) != NULL) {
			size_t n = strlen(e->d_name);
			char *dot, *end;
			long pid;

			if ((strncmp(e->d_name, ".scratch-", 9) != 0 && strncmp(e->d_name, ".exec.", 6) != 0) ||
			    n < 11 || strcmp(e->d_name + n - 4, ".tmp") != 0)
				continue;
			e->d_name[n - 4] = 0;
			dot = strrchr(e->d_name, '.');
			pid = dot ? strtol(dot + 1, &end, 10) : 0;
			if (!dot || *end || pid <= 0 || pid > INT_MAX || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
				continue;
			e->d_name[n - 4] = '.';
			if (unlinkat(dirfd(d), e->d_name, 0) == 0)
				printf("kiln gc: removed unfinished cache file %s\n", e->d_name);
		}
		closedir(d);
	}
	if (!busy && gc_stale_vmm_copies(state) < 0)
		rc = KILN_RUN_EXIT_SETUP;
	(void)removed;
	return rc;
}

int main(int argc, char **argv)
{
	kiln_set_progname("kiln");
	if (argc < 2) {
		usage(stderr);
		return KILN_RUN_EXIT_USAGE;
	}
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(argv[1], "gc") == 0) {
		if (argc != 2) {
			kiln_warn("gc takes no arguments");
			return KILN_RUN_EXIT_USAGE;
		}
		return cmd_gc();
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	kiln_warn("unknown command %s (run or gc; see --help)", argv[1]);
	return KILN_RUN_EXIT_USAGE;
}
