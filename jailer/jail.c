/* jail.c: kiln-jailer's OS side: the one ordered apply step, rollback on failure, and --cleanup. */
#include "jail.h"

#include <cap-ng.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clone3.h"
#include "exitcodes.h"

#define CGROUP_ROOT "/sys/fs/cgroup"
#define KVM_MAJOR 10
#define KVM_MINOR 232

/* What the jailer created, undone in reverse order if setup fails. */
enum undo_kind { UNDO_RMDIR, UNDO_RMTREE, UNDO_CGROUP, UNDO_UNLINK };
static struct {
	enum undo_kind kind;
	char path[PATH_MAX];
} undo[32];
static size_t nundo;
static bool in_child;   /* after clone: failures report through status_fd and _exit */
static int status_fd = -1;
static pid_t child_pid = -1;

/* ---- errors and rollback -------------------------------------------------- */

static int rmtree_at(int pfd, const char *name, dev_t dev, int depth);

static void push_undo(enum undo_kind kind, const char *path)
{
	if (nundo < ARRAY_SIZE(undo)) {
		undo[nundo].kind = kind;
		snprintf(undo[nundo].path, sizeof(undo[nundo].path), "%s", path);
		nundo++;
	}
}

/* rmdir a cgroup; it may stay busy for a moment after its last process was reaped. */
static int rmdir_cgroup(const char *path)
{
	for (int tries = 0; tries < 200; tries++) {
		if (rmdir(path) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -errno;
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	return -EBUSY;
}

static void rollback(void)
{
	while (nundo > 0) {
		nundo--;
		const char *p = undo[nundo].path;
		int r = 0;
		switch (undo[nundo].kind) {
		case UNDO_RMDIR:
			if (rmdir(p) < 0 && errno != ENOTEMPTY && errno != EEXIST && errno != EBUSY)
				r = -errno;
			break;
		case UNDO_CGROUP:
			r = rmdir_cgroup(p);
			break;
		case UNDO_UNLINK:
			if (unlink(p) < 0 && errno != ENOENT)
				r = -errno;
			break;
		case UNDO_RMTREE: {
			struct stat st;
			if (lstat(p, &st) == 0)
				r = rmtree_at(AT_FDCWD, p, st.st_dev, 0);
			break;
		}
		}
		if (r < 0)
			kiln_warn_errno(-r, "cleanup after failure: cannot remove %s", p);
	}
}

/* Report a setup failure and exit: from the child through the status pipe, from the parent after rollback. */
static _Noreturn KILN_PRINTF(3, 4) void jfail(int code, int err, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err)
		kiln_warn_errno(err, "%s", msg);
	else
		kiln_warn("%s", msg);
	if (in_child) {
		char c = 1;
		if (write(status_fd, &c, 1) < 0)
			_exit(KILN_EXIT_JAIL);
		_exit(KILN_EXIT_JAIL);
	}
	if (child_pid > 0) {
		kill(child_pid, SIGKILL);
		waitpid(child_pid, NULL, 0);
	}
	rollback();
	exit(code);
}

#define jail_die(err, ...) jfail(KILN_EXIT_JAIL, err, __VA_ARGS__)
#define reject(err, ...) jfail(KILN_EXIT_USAGE, err, __VA_ARGS__)

/* ---- small fd helpers ----------------------------------------------------- */

/* openat2() that refuses symbolic links (and magic links) in every component. */
static int open_beneath(int dirfd, const char *path, uint64_t flags, uint64_t mode)
{
	struct open_how how = { .flags = flags | O_CLOEXEC, .mode = mode,
				.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

static void reject_open(const char *what, const char *path, int err)
{
	if (err == ELOOP)
		reject(0, "%s %s: refusing a path that contains a symbolic link", what, path);
	reject(err, "%s %s", what, path);
}

static int write_file_at(int dirfd, const char *name, const char *value)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	size_t len = strlen(value);
	ssize_t n = write(fd, value, len);
	int r = n < 0 ? -errno : (size_t)n != len ? -EIO : 0;
	close(fd);
	return r;
}

/* Read a small file (cgroup interface files) into buf, NUL-terminated. */
static int read_file_at(int dirfd, const char *name, char *buf, size_t len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, len - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int r = n < 0 ? -errno : 0;
			close(fd);
			buf[got] = '\0';
			return r;
		}
		got += (size_t)n;
		if (got == len - 1) {
			close(fd);
			buf[got] = '\0';
			return 0;
		}
	}
}

static int rmtree_at(int pfd, const char *name, dev_t dev, int depth)
{
	struct stat st;
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (st.st_dev != dev)
		return -EXDEV; /* a mount: never descend into another file system */
	if (!S_ISDIR(st.st_mode))
		return unlinkat(pfd, name, 0) < 0 ? -errno : 0;
	if (depth > 16)
		return -ELOOP;
	int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return -e;
	}
	struct dirent *e;
	int r = 0;
	while (r == 0 && (e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			r = rmtree_at(dirfd(d), e->d_name, dev, depth + 1);
	closedir(d);
	if (r < 0)
		return r;
	return unlinkat(pfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

/*
 * Open (creating with mode 0700 when missing) each component of the absolute directory path,
 * never following a symbolic link, and check each with jail_check_dir_stat().
 * Created directories are recorded for rollback when record is true.
 */
static int open_dir_chain(const char *path, bool create, bool record)
{
	uint32_t caller = (uint32_t)getuid();
	char sofar[PATH_MAX] = "";
	char comp[NAME_MAX + 1];
	int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		jail_die(errno, "cannot open /");
	for (const char *p = path + 1;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		char why[JAIL_ERR_MAX];
		struct stat st;
		memcpy(comp, p, n);
		comp[n] = '\0';
		size_t sl = strlen(sofar);
		snprintf(sofar + sl, sizeof(sofar) - sl, "/%s", comp);
		int next = open_beneath(fd, comp, O_PATH | O_DIRECTORY, 0);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, comp, 0700) == 0) {
				if (record)
					push_undo(UNDO_RMDIR, sofar);
			} else if (errno != EEXIST) {
				jail_die(errno, "cannot create %s", sofar);
			}
			next = open_beneath(fd, comp, O_PATH | O_DIRECTORY, 0);
		}
		if (next < 0) {
			int err = errno;
			close(fd);
			if (err == ENOENT && !create)
				return -ENOENT;
			if (err == ELOOP || err == ENOTDIR)
				jail_die(0, "%s: refusing a path component that is a symbolic link or not a directory", sofar);
			jail_die(err, "cannot open %s", sofar);
		}
		close(fd);
		fd = next;
		if (fstat(fd, &st) < 0)
			jail_die(errno, "cannot stat %s", sofar);
		if (jail_check_dir_stat(&st, caller, why, sizeof(why)) < 0)
			jail_die(0, "%s %s: refusing it", sofar, why);
		if (!e)
			return fd;
		p = e + 1;
	}
}

/* ---- step 1: sanitize the jailer itself ----------------------------------- */

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static void sanitize_self(const struct jail_config *cfg)
{
	int keep[JAIL_MAX_KEEP_FDS];
	unsigned lo = 3;

	/* stdio must be open, or a later open() would land on 0-2. */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
			jail_die(errno, "cannot open /dev/null for fd %d", fd);
	memcpy(keep, cfg->keep_fds, cfg->nkeep * sizeof(int));
	qsort(keep, cfg->nkeep, sizeof(int), cmp_int);
	for (size_t k = 0; k < cfg->nkeep; k++) {
		if (fcntl(keep[k], F_SETFD, 0) < 0)
			reject(0, "--keep-fd %d: not an open file descriptor", keep[k]);
		if ((unsigned)keep[k] > lo && close_range(lo, (unsigned)keep[k] - 1, 0) < 0)
			jail_die(errno, "close_range");
		lo = (unsigned)keep[k] + 1;
	}
	if (close_range(lo, ~0U, 0) < 0)
		jail_die(errno, "close_range");
	if (clearenv() != 0)
		jail_die(0, "cannot clear the environment");
	umask(077);
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		jail_die(errno, "prctl(PR_SET_DUMPABLE)");
}

/* ---- step 2: open and check every input ----------------------------------- */

struct jail_inputs {
	uint32_t caller;                     /* uid running the jailer: 0, or the VMM's uid with --userns */
	int exec_fd;
	struct stat exec_st;
	struct stat res_st[JAIL_MAX_RESOURCES]; /* what was checked: the VMM process binds only this */
	struct stat kvm_st;                  /* --userns: the host's /dev/kvm, bound into the jail */
	int netns_fd;
	int cache_fd;                        /* --exec-cache directory, or -1 */
	char cache_name[JAIL_NAME_MAX + 160]; /* --exec-cache: the sealed copy's name in it */
	char cache_path[PATH_MAX];           /* ... and path: what the VMM process binds in */
	struct stat cache_st;                /* ... and what was checked of it */
};

static void open_inputs(const struct jail_config *cfg, struct jail_inputs *in)
{
	char why[JAIL_ERR_MAX];

	in->exec_fd = open_beneath(AT_FDCWD, cfg->exec_file, O_RDONLY, 0);
	if (in->exec_fd < 0)
		reject_open("--exec-file", cfg->exec_file, errno);
	if (fstat(in->exec_fd, &in->exec_st) < 0)
		reject(errno, "--exec-file %s", cfg->exec_file);
	if (jail_check_exec_stat(&in->exec_st, in->caller, why, sizeof(why)) < 0)
		reject(0, "--exec-file %s %s", cfg->exec_file, why);
	uint8_t head[JAIL_ELF_PEEK];
	ssize_t got = pread(in->exec_fd, head, sizeof(head), 0);
	if (got < 0)
		reject(errno, "--exec-file %s", cfg->exec_file);
	if (jail_check_elf(head, (size_t)got, why, sizeof(why)) < 0)
		reject(0, "--exec-file %s %s", cfg->exec_file, why);

	for (size_t k = 0; k < cfg->nres; k++) {
		const char *opt = cfg->res[k].mode == JAIL_RES_RO ? "--ro" : "--rw";
		int fd = open_beneath(AT_FDCWD, cfg->res[k].path, O_PATH, 0);
		if (fd < 0)
			reject_open(opt, cfg->res[k].path, errno);
		if (fstat(fd, &in->res_st[k]) < 0)
			reject(errno, "%s %s", opt, cfg->res[k].path);
		if (jail_check_resource_stat(&in->res_st[k], why, sizeof(why)) < 0)
			reject(0, "%s %s %s", opt, cfg->res[k].path, why);
		close(fd);
	}
	if (cfg->userns) {
		/* No mknod in a user namespace: the host's node is bound in, so the host's
		 * permissions on it decide whether the VMM may use it. */
		if (stat("/dev/kvm", &in->kvm_st) < 0)
			reject(errno, "--userns binds the host's /dev/kvm into the jail, and it is missing");
		if (!S_ISCHR(in->kvm_st.st_mode) || in->kvm_st.st_rdev != makedev(KVM_MAJOR, KVM_MINOR))
			reject(0, "/dev/kvm is not the KVM device (char 10:232)");
	}

	in->cache_fd = -1;
	if (cfg->exec_cache) {
		struct stat st;
		in->cache_fd = open_beneath(AT_FDCWD, cfg->exec_cache, O_RDONLY | O_DIRECTORY, 0);
		if (in->cache_fd < 0)
			reject_open("--exec-cache", cfg->exec_cache, errno);
		if (fstat(in->cache_fd, &st) < 0)
			reject(errno, "--exec-cache %s", cfg->exec_cache);
		if (st.st_uid != 0 || (st.st_mode & 022))
			reject(0, "--exec-cache %s must be owned by root and writable by no one else", cfg->exec_cache);
		if (jail_exec_cache_name(in->cache_name, sizeof(in->cache_name), cfg->exec_name, &in->exec_st) < 0 ||
		    (size_t)snprintf(in->cache_path, sizeof(in->cache_path), "%s/%s", cfg->exec_cache,
				     in->cache_name) >= sizeof(in->cache_path))
			reject(0, "--exec-cache %s: path too long", cfg->exec_cache);
	}

	in->netns_fd = -1;
	if (cfg->netns) {
		in->netns_fd = open_beneath(AT_FDCWD, cfg->netns, O_RDONLY, 0);
		if (in->netns_fd < 0)
			reject_open("--netns", cfg->netns, errno);
		if (ioctl(in->netns_fd, NS_GET_NSTYPE) != CLONE_NEWNET)
			reject(0, "--netns %s: not a network namespace", cfg->netns);
	}
}

/* ---- step 3: the jail directory ------------------------------------------- */

/* Copy the validated exec file to dirfd/<name>, root-owned, mode 0511: execute-only for the VMM. */
static void copy_exec(int dirfd, const char *name, const struct jail_inputs *in, const char *dst_path)
{
	struct stat after;
	int out = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0500);
	if (out < 0)
		jail_die(errno, "cannot create %s", dst_path);
	off_t off = 0;
	while (off < in->exec_st.st_size) {
		ssize_t n = sendfile(out, in->exec_fd, &off, (size_t)(in->exec_st.st_size - off));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			jail_die(n < 0 ? errno : 0, "cannot copy the exec file to %s%s", dst_path,
				 n == 0 ? ": it shrank while being copied" : "");
	}
	if (fstat(in->exec_fd, &after) < 0 || after.st_size != in->exec_st.st_size ||
	    after.st_mtim.tv_sec != in->exec_st.st_mtim.tv_sec || after.st_mtim.tv_nsec != in->exec_st.st_mtim.tv_nsec)
		jail_die(0, "the exec file changed while being copied");
	/* Not readable by the VMM's uid: exec then keeps the process non-dumpable (no ptrace, no
	 * /proc/PID/mem). Without root (--userns) the copy is the VMM uid's own: execute-only. */
	if (in->caller == 0 ? fchown(out, 0, 0) < 0 || fchmod(out, 0511) < 0 : fchmod(out, 0111) < 0)
		jail_die(errno, "cannot set owner and mode of %s", dst_path);
	if (close(out) < 0)
		jail_die(errno, "cannot write %s", dst_path);
}

/* The cached copy in->cache_name, if it is exactly a sealed copy of the exec file: its stat. */
static bool cache_usable(struct jail_inputs *in)
{
	struct stat *c = &in->cache_st;
	int fd = openat(in->cache_fd, in->cache_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = fstat(fd, c) == 0 && S_ISREG(c->st_mode) && c->st_uid == 0 && (c->st_mode & 07777) == 0511 &&
	     c->st_nlink == 1 && c->st_size == in->exec_st.st_size;
	close(fd);
	return ok;
}

int jail_exec_cache_name(char *buf, size_t n, const char *exec_name, const struct stat *x)
{
	int r = snprintf(buf, n, "exec-%s-%llx-%llx-%lld-%lld.%09ld-%lld.%09ld", exec_name,
			 (unsigned long long)x->st_dev, (unsigned long long)x->st_ino, (long long)x->st_size,
			 (long long)x->st_mtim.tv_sec, x->st_mtim.tv_nsec, (long long)x->st_ctim.tv_sec,
			 x->st_ctim.tv_nsec);
	return r < 0 || (size_t)r >= n ? -1 : 0;
}

/*
 * --exec-cache: the sealed copy of the exec file for this jail, made once per exec file and
 * reused by every later jail, which binds it in read-only instead of copying 1-2 MB each time
 * (and the kernel then also keeps its pages cached between VMs). Its name (in->cache_name,
 * from open_inputs) holds everything that changes when the exec file does: device, inode,
 * size, mtime and ctime (only root can write the checked exec file, and no one can set a ctime
 * back). An entry is used only while cache_usable(); a new copy is written under a temporary
 * name and moved into place only where no usable one is (RENAME_NOREPLACE first), so
 * concurrent jailers never see half a file, nor have the copy they checked replaced under them.
 */
static void exec_from_cache(const struct jail_config *cfg, struct jail_inputs *in)
{
	char tmp[64], tmp_path[PATH_MAX + 64];

	if (cache_usable(in))
		return;
	snprintf(tmp, sizeof(tmp), ".exec.%d.tmp", (int)getpid()); /* kiln gc knows this pattern */
	snprintf(tmp_path, sizeof(tmp_path), "%s/%s", cfg->exec_cache, tmp);
	(void)unlinkat(in->cache_fd, tmp, 0); /* left by a jailer that died with this pid */
	push_undo(UNDO_UNLINK, tmp_path);
	copy_exec(in->cache_fd, tmp, in, tmp_path);
	/* Never replace a good copy another jailer put there meanwhile: it may be checked and about
	 * to be bound in. Only one that fails the checks is replaced. */
	if (renameat2(in->cache_fd, tmp, in->cache_fd, in->cache_name, RENAME_NOREPLACE) < 0) {
		if (errno != EEXIST)
			jail_die(errno, "cannot rename %s to %s", tmp_path, in->cache_path);
		if (cache_usable(in)) {
			(void)unlinkat(in->cache_fd, tmp, 0);
			return;
		}
		if (renameat(in->cache_fd, tmp, in->cache_fd, in->cache_name) < 0)
			jail_die(errno, "cannot rename %s to %s", tmp_path, in->cache_path);
	}
	if (!cache_usable(in))
		jail_die(0, "%s is not the sealed copy just made", in->cache_path);
}

/* Create <base>/<exec-name>/<id>/root with dev/, the exec copy (or, with --exec-cache, a mount
 * point for the cached one) and one mount point per resource. */
static int make_jail_dir(const struct jail_config *cfg, struct jail_inputs *in, char *root_path, size_t len)
{
	char exec_dir[PATH_MAX], id_dir[PATH_MAX];
	if ((size_t)snprintf(exec_dir, sizeof(exec_dir), "%s/%s", cfg->chroot_base, cfg->exec_name) >= sizeof(exec_dir) ||
	    (size_t)snprintf(id_dir, sizeof(id_dir), "%s/%s", exec_dir, cfg->id) >= sizeof(id_dir) ||
	    (size_t)snprintf(root_path, len, "%s/root", id_dir) >= len)
		reject(0, "--chroot-base-dir %s: path too long", cfg->chroot_base);

	int exfd = open_dir_chain(exec_dir, true, true);
	if (mkdirat(exfd, cfg->id, 0700) < 0) {
		if (errno == EEXIST)
			jail_die(0, "jail directory %s already exists; refusing to reuse it (another VM with this id, "
				 "or planted: run --cleanup or remove it)", id_dir);
		jail_die(errno, "cannot create %s", id_dir);
	}
	push_undo(UNDO_RMTREE, id_dir);
	int idfd = openat(exfd, cfg->id, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (idfd < 0 || mkdirat(idfd, "root", 0700) < 0)
		jail_die(errno, "cannot create %s", root_path);
	int rootfd = openat(idfd, "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0 || fchmod(rootfd, 0711) < 0 || mkdirat(rootfd, "dev", 0711) < 0)
		jail_die(errno, "cannot populate %s", root_path);

	char dst[PATH_MAX + 80];
	snprintf(dst, sizeof(dst), "%s/%s", root_path, cfg->exec_name);
	if (in->cache_fd >= 0) {
		int r;
		exec_from_cache(cfg, in);
		r = openat(rootfd, cfg->exec_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0);
		if (r < 0 || close(r) < 0)
			jail_die(errno, "cannot create mount point %s", dst);
	} else {
		copy_exec(rootfd, cfg->exec_name, in, dst);
	}
	for (size_t k = 0; k < cfg->nres; k++) {
		int r;
		if (S_ISDIR(in->res_st[k].st_mode)) {
			r = mkdirat(rootfd, cfg->res[k].name, 0);
		} else {
			r = openat(rootfd, cfg->res[k].name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0);
			if (r >= 0)
				r = close(r);
		}
		if (r < 0)
			jail_die(errno, "cannot create mount point %s/%s", root_path, cfg->res[k].name);
	}
	close(idfd);
	close(exfd);
	return rootfd;
}

/* ---- step 4: the cgroup --------------------------------------------------- */

/* True when word is one of the space-separated words of list. */
static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

/* Enable the controllers in dirfd's cgroup.subtree_control, writing only those missing (a
 * delegated, non-root caller may not write an ancestor's file that is already right). */
static void enable_controllers(int dirfd, const char *path, const char ctl[][16], size_t nctl)
{
	char buf[24], cur[512];
	int r = read_file_at(dirfd, "cgroup.subtree_control", cur, sizeof(cur));
	if (r < 0)
		jail_die(-r, "cannot read %s/cgroup.subtree_control", path);
	for (size_t k = 0; k < nctl; k++) {
		if (has_word(cur, ctl[k]))
			continue;
		snprintf(buf, sizeof(buf), "+%s", ctl[k]);
		r = write_file_at(dirfd, "cgroup.subtree_control", buf);
		if (r < 0)
			jail_die(-r, "cannot enable the %s controller in %s/cgroup.subtree_control%s", ctl[k], path,
				 r == -EBUSY ? " (it holds processes)" : "");
	}
}

/* Create <parent>/<id> under the cgroup v2 root, configure it, return an fd for CLONE_INTO_CGROUP. */
static int make_cgroup(const struct jail_config *cfg)
{
	struct statfs sfs;
	char ctl[JAIL_MAX_CGROUP][16], avail[512], path[PATH_MAX], comp[JAIL_NAME_MAX + 1];
	size_t nctl = 0;

	if (statfs(CGROUP_ROOT, &sfs) < 0 || sfs.f_type != CGROUP2_SUPER_MAGIC)
		jail_die(0, "cgroup v2 is not mounted at " CGROUP_ROOT "; refusing to run without resource "
			 "limits (pass --no-cgroup to accept that)");
	for (size_t k = 0; k < cfg->ncg; k++) {
		char c[16];
		size_t j = 0;
		if (jail_cgroup_controller(cfg->cg[k].file, c, sizeof(c)) < 0)
			jail_die(0, "bad cgroup file %s", cfg->cg[k].file);
		while (j < nctl && strcmp(ctl[j], c) != 0)
			j++;
		if (j == nctl)
			memcpy(ctl[nctl++], c, sizeof(c));
	}
	int fd = open(CGROUP_ROOT, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		jail_die(errno, "cannot open " CGROUP_ROOT);
	int r = read_file_at(fd, "cgroup.controllers", avail, sizeof(avail));
	if (r < 0)
		jail_die(-r, "cannot read " CGROUP_ROOT "/cgroup.controllers");
	for (size_t k = 0; k < nctl; k++) {
		char word[20];
		snprintf(word, sizeof(word), " %s ", ctl[k]);
		char padded[sizeof(avail) + 2];
		snprintf(padded, sizeof(padded), " %s", avail);
		padded[strcspn(padded, "\n")] = ' ';
		if (!strstr(padded, word))
			jail_die(0, "the cgroup v2 %s controller is not available (" CGROUP_ROOT "/cgroup.controllers: %.*s)",
				 ctl[k], (int)strcspn(avail, "\n"), avail);
	}

	snprintf(path, sizeof(path), CGROUP_ROOT);
	for (const char *p = cfg->parent_cgroup;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		memcpy(comp, p, n);
		comp[n] = '\0';
		enable_controllers(fd, path, ctl, nctl);
		size_t pl = strlen(path);
		snprintf(path + pl, sizeof(path) - pl, "/%s", comp);
		if (mkdirat(fd, comp, 0755) == 0)
			push_undo(UNDO_CGROUP, path);
		else if (errno != EEXIST)
			jail_die(errno, "cannot create cgroup %s (is cgroup v2 delegated to this user?)", path);
		int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
			jail_die(errno, "cannot open cgroup %s", path);
		close(fd);
		fd = next;
		if (!e)
			break;
		p = e + 1;
	}
	enable_controllers(fd, path, ctl, nctl);
	size_t pl = strlen(path);
	snprintf(path + pl, sizeof(path) - pl, "/%s", cfg->id);
	if (mkdirat(fd, cfg->id, 0755) < 0) {
		if (errno == EEXIST)
			jail_die(0, "cgroup %s already exists (another VM with this id? run --cleanup)", path);
		jail_die(errno, "cannot create cgroup %s (is cgroup v2 delegated to this user?)", path);
	}
	push_undo(UNDO_CGROUP, path);
	int cg = openat(fd, cfg->id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (cg < 0)
		jail_die(errno, "cannot open cgroup %s", path);
	close(fd);
	for (size_t k = 0; k < cfg->ncg; k++) {
		char file[32];
		size_t n = (size_t)(cfg->cg[k].value - 1 - cfg->cg[k].file);
		memcpy(file, cfg->cg[k].file, n);
		file[n] = '\0';
		r = write_file_at(cg, file, cfg->cg[k].value);
		if (r < 0)
			jail_die(-r, "cannot set %s/%s to \"%s\"", path, file, cfg->cg[k].value);
	}
	return cg;
}

/* ---- step 5: inside the new namespaces (child) ---------------------------- */

/*
 * Bind host path at ./name (the jail root is the cwd) with the mount attributes attr_set.
 * The path is opened again here, in the new mount namespace (open_tree clones only mounts of
 * the caller's own namespace), without following symbolic links, and must still be the very
 * object the parent checked (want). Only its own mount is cloned, never mounts below it.
 */
static void bind_checked(const char *path, const struct stat *want, const char *name, uint64_t attr_set,
			 uint64_t attr_clr)
{
	struct mount_attr attr = { .attr_set = attr_set, .attr_clr = attr_clr };
	struct stat st;
	int fd = open_beneath(AT_FDCWD, path, O_PATH, 0);
	if (fd < 0 || fstat(fd, &st) < 0)
		jail_die(errno, "%s: cannot open it again in the new mount namespace", path);
	if (st.st_dev != want->st_dev || st.st_ino != want->st_ino)
		jail_die(0, "%s was replaced while the jail was being built", path);
	int tree = open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
	if (tree < 0)
		jail_die(errno, "%s: cannot make a bind mount of it", path);
	if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
		jail_die(errno, "%s: cannot set its mount attributes", path);
	if (move_mount(tree, "", AT_FDCWD, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		jail_die(errno, "cannot mount %s at /%s in the jail", path, name);
	close(tree);
	close(fd);
}

static bool caps_all_clear(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) < 0)
		return false;
	for (int i = 0; i < 2; i++)
		if (data[i].effective || data[i].permitted || data[i].inheritable)
			return false;
	for (int c = 0; c < 64; c++) {
		int b = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
		if (b < 0)
			break; /* past the kernel's last capability */
		if (b > 0 || prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0) > 0)
			return false;
	}
	return true;
}

/*
 * The apply step, in the VMM process, in this order (minijail's enter is the model):
 *  a. join --netns if given; new cgroup namespace (now that we are in our cgroup); hostname = id;
 *  b. make every mount slave, so nothing we do reaches the host;
 *  c. bind the jail root onto itself, mount each --ro/--rw path (nosuid,nodev,noexec; --ro read-only),
 *     a tiny tmpfs on /dev with only the kvm node (0600, uid:gid), read-only;
 *  d. pivot_root into the jail, detach the old root, remount / read-only,nosuid,nodev;
 *  e. rlimits; reset signal dispositions and mask;
 *  f. NO_NEW_PRIVS; drop the bounding and ambient sets; uid/gid with no supplementary groups and
 *     no capabilities (libcap-ng); verify every set is empty; parent-death signal;
 *  g. exec the VMM with the allowlisted environment only.
 */
static _Noreturn void enter_jail(const struct jail_config *cfg, const struct jail_inputs *in,
				 const char *root_path, int go_fd)
{
	/* --userns: wait until the parent has written our uid and gid maps. */
	if (go_fd >= 0) {
		char c;
		ssize_t n;
		while ((n = read(go_fd, &c, 1)) < 0 && errno == EINTR)
			;
		if (n != 1)
			jail_die(0, "the jailer did not set up the user namespace");
		close(go_fd);
		if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
			jail_die(errno, "prctl(PR_SET_DUMPABLE)");
	}
	/* a. */
	if (in->netns_fd >= 0 && setns(in->netns_fd, CLONE_NEWNET) < 0)
		jail_die(errno, "cannot join the network namespace %s", cfg->netns);
	if (!cfg->no_cgroup && unshare(CLONE_NEWCGROUP) < 0)
		jail_die(errno, "cannot create a cgroup namespace");
	if (sethostname(cfg->id, strlen(cfg->id)) < 0)
		jail_die(errno, "sethostname");

	/* b. c. */
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
		jail_die(errno, "cannot make / a slave mount");
	if (mount(root_path, root_path, NULL, MS_BIND, NULL) < 0)
		jail_die(errno, "cannot bind %s onto itself", root_path);
	if (chdir(root_path) < 0)
		jail_die(errno, "chdir %s", root_path);
	/* The cached copy keeps its mount's flags but for these: read-only, nosuid, nodev, and
	 * (as for the jail root below) not noexec even where the host mounted the cache noexec. */
	if (in->cache_fd >= 0)
		bind_checked(in->cache_path, &in->cache_st, cfg->exec_name,
			     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC);
	for (size_t k = 0; k < cfg->nres; k++)
		bind_checked(cfg->res[k].path, &in->res_st[k], cfg->res[k].name,
			     MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |
				     (cfg->res[k].mode == JAIL_RES_RO ? MOUNT_ATTR_RDONLY : 0), 0);
	/* /dev: a tiny tmpfs holding only kvm. As root: a fresh node owned by uid:gid, 0600.
	 * With --userns (no mknod there): the host's node bound onto an empty file. */
	unsigned long devfl = MS_NOSUID | MS_NOEXEC | (cfg->userns ? MS_NODEV : 0);
	if (mount("kiln-dev", "dev", "tmpfs", devfl, "mode=0711,size=4k,nr_inodes=4") < 0)
		jail_die(errno, "cannot mount a tmpfs on %s/dev", root_path);
	if (cfg->userns) {
		int fd = open("dev/kvm", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || close(fd) < 0)
			jail_die(errno, "cannot create /dev/kvm in the jail");
		bind_checked("/dev/kvm", &in->kvm_st, "dev/kvm", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, 0);
	} else if (mknod("dev/kvm", S_IFCHR | 0600, makedev(KVM_MAJOR, KVM_MINOR)) < 0 ||
		   chown("dev/kvm", cfg->uid, cfg->gid) < 0 || chmod("dev/kvm", 0600) < 0) {
		jail_die(errno, "cannot create /dev/kvm in the jail");
	}
	if (mount(NULL, "dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | devfl, NULL) < 0)
		jail_die(errno, "cannot remount the jail's /dev read-only");

	/* d. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		jail_die(errno, "pivot_root into %s", root_path);
	if (umount2(".", MNT_DETACH) < 0)
		jail_die(errno, "cannot detach the old root");
	if (chdir("/") < 0)
		jail_die(errno, "chdir /");
	/* As root this also clears a noexec inherited from the host; in a user namespace such a
	 * flag is locked, so only flags are added there. */
	struct mount_attr ro = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV };
	if (cfg->userns ? mount_setattr(AT_FDCWD, "/", 0, &ro, sizeof(ro)) < 0
			: mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
		jail_die(errno, "cannot remount the jail root read-only");

	/* e. */
	for (size_t k = 0; k < cfg->nrl; k++) {
		rlim_t v = cfg->rl[k].value == UINT64_MAX ? RLIM_INFINITY : (rlim_t)cfg->rl[k].value;
		struct rlimit rl = { v, v };
		if (setrlimit(cfg->rl[k].resource, &rl) < 0)
			jail_die(errno, "setrlimit(%d, %llu)", cfg->rl[k].resource, (unsigned long long)v);
	}
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL); /* fails harmlessly for SIGKILL, SIGSTOP and the libc-reserved ones */
	sigset_t none;
	sigemptyset(&none);

	/* f. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		jail_die(errno, "prctl(PR_SET_NO_NEW_PRIVS)");
	for (int c = 0; c < 64; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				break;
			jail_die(errno, "cannot drop capability %d from the bounding set", c);
		}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		jail_die(errno, "cannot clear the ambient capabilities");
	capng_clear(CAPNG_SELECT_ALL);
	capng_setpid(getpid()); /* libcap-ng was initialised in the parent */
	/* With --userns the ids are already the caller's, and setgroups is denied in the namespace
	 * (an unprivileged caller's supplementary groups stay: the kernel allows no less). */
	int r = capng_change_id((int)cfg->uid, (int)cfg->gid,
				(cfg->userns ? 0 : CAPNG_DROP_SUPP_GRP) | CAPNG_CLEAR_BOUNDING);
	if (r < 0)
		jail_die(errno, "capng_change_id(%u, %u) failed (%d)", cfg->uid, cfg->gid, r);
	if (getuid() != cfg->uid || geteuid() != cfg->uid || getgid() != cfg->gid || getegid() != cfg->gid ||
	    (!cfg->userns && getgroups(0, NULL) != 0) || !caps_all_clear())
		jail_die(0, "credentials or capabilities not fully dropped; refusing to exec");
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		jail_die(errno, "prctl(PR_SET_PDEATHSIG)");

	/* g. */
	char exe[JAIL_NAME_MAX + 2];
	char *argv[1 + 256 + 1];
	char *envp[JAIL_MAX_ENV + 1];
	snprintf(exe, sizeof(exe), "/%s", cfg->exec_name);
	if (cfg->vmm_argc > 256)
		jail_die(0, "too many VMM arguments (at most 256)");
	argv[0] = exe;
	for (size_t k = 0; k < cfg->vmm_argc; k++)
		argv[k + 1] = cfg->vmm_argv[k];
	argv[cfg->vmm_argc + 1] = NULL;
	for (size_t k = 0; k < cfg->nenv; k++)
		envp[k] = (char *)cfg->env[k];
	envp[cfg->nenv] = NULL;
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(exe, argv, envp);
	jail_die(errno, "cannot exec %s in the jail", exe);
}

/* ---- step 6: supervise ---------------------------------------------------- */

static _Noreturn void supervise(pid_t pid, const sigset_t *set)
{
	int last_sig = 0;
	for (;;) {
		siginfo_t si;
		int s = sigwaitinfo(set, &si);
		if (s < 0)
			continue;
		if (s == SIGCHLD) {
			int status;
			pid_t w = waitpid(pid, &status, WNOHANG);
			if (w == pid) {
				if (WIFEXITED(status))
					exit(WEXITSTATUS(status));
				exit(128 + WTERMSIG(status));
			}
			continue;
		}
		/* The VMM is PID 1 of its namespace: it gets the signal only if it handles it.
		 * The same signal twice means "now": SIGKILL. */
		kill(pid, s == last_sig ? SIGKILL : s);
		last_sig = s;
	}
}

void jail_run(const struct jail_config *cfg)
{
	struct jail_inputs in;
	char root_path[PATH_MAX];
	int pipefd[2];
	sigset_t set;

	sanitize_self(cfg);                                       /* 1 */
	in.caller = (uint32_t)getuid();
	if (cfg->userns && in.caller == 0)
		reject(0, "--userns is for running without root; as root, leave it out");
	if (!cfg->userns && (in.caller != 0 || geteuid() != 0))
		reject(0, "must run as root (or, without root, with --userns)");
	if (cfg->userns && (cfg->uid != in.caller || cfg->gid != (uint32_t)getgid()))
		reject(0, "--userns runs the VMM as the caller: --uid and --gid must be %u and %u", in.caller,
		       (unsigned)getgid());
	open_inputs(cfg, &in);                                    /* 2 */
	capng_clear(CAPNG_SELECT_ALL); /* initialise libcap-ng while /proc is still visible */
	int rootfd = make_jail_dir(cfg, &in, root_path, sizeof(root_path)); /* 3 */
	close(rootfd);
	int cgfd = cfg->no_cgroup ? -1 : make_cgroup(cfg);        /* 4 */

	/* 5 */
	int gofd[2] = { -1, -1 };
	if (pipe2(pipefd, O_CLOEXEC) < 0 || (cfg->userns && pipe2(gofd, O_CLOEXEC) < 0))
		jail_die(errno, "pipe2");
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	/* Without root, the parent can write the child's id maps only while the child is dumpable
	 * (/proc/PID is then the caller's); both go back to non-dumpable right after. */
	if (cfg->userns && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
		jail_die(errno, "prctl(PR_SET_DUMPABLE)");
	struct kiln_clone_args ca = {
		.flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
			 (cfg->netns ? 0 : CLONE_NEWNET) | (cgfd >= 0 ? CLONE_INTO_CGROUP : 0) |
			 (cfg->userns ? CLONE_NEWUSER : 0),
		.exit_signal = SIGCHLD,
		.cgroup = cgfd >= 0 ? (uint64_t)cgfd : 0,
	};
	long pid = kiln_clone3(&ca);
	if (pid < 0)
		jail_die(errno, "clone3 into new namespaces%s", cgfd >= 0 ? " and the cgroup" : "");
	if (pid == 0) {
		in_child = true;
		status_fd = pipefd[1];
		close(pipefd[0]);
		if (cfg->userns)
			close(gofd[1]);
		enter_jail(cfg, &in, root_path, gofd[0]);
	}
	child_pid = (pid_t)pid;
	close(pipefd[1]);
	if (cgfd >= 0)
		close(cgfd);
	close(in.exec_fd);
	if (in.cache_fd >= 0)
		close(in.cache_fd);
	if (in.netns_fd >= 0)
		close(in.netns_fd);
	if (cfg->userns) {
		/* Map the caller's uid and gid 1:1 and nothing else; an unprivileged caller must
		 * deny setgroups first. Then let the child go on. */
		char dir[64], map[64];
		snprintf(dir, sizeof(dir), "/proc/%ld", pid);
		int pfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		int r = pfd < 0 ? -errno : write_file_at(pfd, "setgroups", "deny");
		snprintf(map, sizeof(map), "%u %u 1\n", cfg->uid, cfg->uid);
		if (r == 0)
			r = write_file_at(pfd, "uid_map", map);
		snprintf(map, sizeof(map), "%u %u 1\n", cfg->gid, cfg->gid);
		if (r == 0)
			r = write_file_at(pfd, "gid_map", map);
		if (pfd >= 0)
			close(pfd);
		if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 && r == 0)
			r = -errno;
		if (r < 0)
			jail_die(-r, "cannot write the user namespace's id maps");
		close(gofd[0]);
		if (write(gofd[1], "g", 1) != 1)
			jail_die(errno, "cannot start the VMM process");
		close(gofd[1]);
	}
	char c;
	ssize_t n;
	while ((n = read(pipefd[0], &c, 1)) < 0 && errno == EINTR)
		;
	if (n != 0) {
		/* The child printed why; reap it and undo everything. */
		waitpid(child_pid, NULL, 0);
		child_pid = -1;
		rollback();
		exit(KILN_EXIT_JAIL);
	}
	close(pipefd[0]);
	/* The supervisor needs nothing but to signal the VMM (another uid): keep only CAP_KILL. */
	capng_clear(CAPNG_SELECT_BOTH);
	if (in.caller == 0)
		capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_KILL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || capng_apply(CAPNG_SELECT_BOTH) < 0)
		kiln_warn_errno(errno, "cannot drop the supervisor's capabilities");
	supervise(child_pid, &set);                               /* 6 */
}

/* ---- --cleanup ------------------------------------------------------------ */

/* A process whose root directory is the jail root (dev, ino), or 0. */
static pid_t process_rooted_at(dev_t dev, ino_t ino)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;
	if (!d)
		return 0;
	while (!found && (e = readdir(d)) != NULL) {
		char p[300];
		struct stat st;
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(p, sizeof(p), "/proc/%s/root", e->d_name);
		if (stat(p, &st) == 0 && st.st_dev == dev && st.st_ino == ino)
			found = (pid_t)atoi(e->d_name);
	}
	closedir(d);
	return found;
}

int jail_cleanup(const struct jail_config *cfg)
{
	char cgpath[PATH_MAX], buf[64];
	bool found = false;
	umask(077);

	/* Refuse while anything still runs: first the cgroup, then any process rooted in a jail. */
	snprintf(cgpath, sizeof(cgpath), CGROUP_ROOT "/%s/%s", cfg->parent_cgroup, cfg->id);
	int cgfd = -1;
	struct statfs sfs;
	if (!cfg->no_cgroup && statfs(CGROUP_ROOT, &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC) {
		cgfd = open(cgpath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cgfd >= 0) {
			int r = read_file_at(cgfd, "cgroup.procs", buf, sizeof(buf));
			if (r < 0)
				jail_die(-r, "cannot read %s/cgroup.procs", cgpath);
			if (buf[0])
				jail_die(0, "cannot clean up %s: process %.*s is still running in cgroup %s", cfg->id,
					 (int)strcspn(buf, "\n"), buf, cgpath);
			found = true;
		}
	}

	int basefd = open_dir_chain(cfg->chroot_base, false, false);
	if (basefd >= 0) {
		int dfd = openat(basefd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		struct dirent *e;
		if (!d)
			jail_die(errno, "cannot list %s", cfg->chroot_base);
		/* Two passes: check every jail of this id first, then remove. */
		for (int pass = 0; pass < 2; pass++) {
			rewinddir(d);
			while ((e = readdir(d)) != NULL) {
				char p[PATH_MAX];
				struct stat st, rst;
				if (e->d_name[0] == '.')
					continue;
				int exfd = openat(dirfd(d), e->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (exfd < 0)
					continue;
				snprintf(p, sizeof(p), "%s/%s/%s", cfg->chroot_base, e->d_name, cfg->id);
				if (fstatat(exfd, cfg->id, &st, AT_SYMLINK_NOFOLLOW) < 0) {
					close(exfd);
					continue;
				}
				found = true;
				if (pass == 0) {
					char why[JAIL_ERR_MAX];
					if (jail_check_dir_stat(&st, (uint32_t)getuid(), why, sizeof(why)) < 0)
						jail_die(0, "%s %s: refusing to remove it", p, why);
					char rp[PATH_MAX + 8];
					snprintf(rp, sizeof(rp), "%s/%s/root", e->d_name, cfg->id);
					if (fstatat(dirfd(d), rp, &rst, AT_SYMLINK_NOFOLLOW) == 0) {
						pid_t pid = process_rooted_at(rst.st_dev, rst.st_ino);
						if (pid)
							jail_die(0, "cannot clean up %s: process %d still has its root in %s/root",
								 cfg->id, (int)pid, p);
					}
				} else {
					int r = rmtree_at(exfd, cfg->id, st.st_dev, 0);
					if (r < 0)
						jail_die(-r, "cannot remove %s", p);
					unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR); /* only if now empty */
				}
				close(exfd);
			}
		}
		closedir(d);
		close(basefd);
	}
	if (cgfd >= 0) {
		close(cgfd);
		int r = rmdir_cgroup(cgpath);
		if (r < 0)
			jail_die(-r, "cannot remove cgroup %s", cgpath);
	}
	if (!found)
		jail_die(0, "nothing to clean up: no jail directory or cgroup for id %s", cfg->id);
	return KILN_EXIT_OK;
}
