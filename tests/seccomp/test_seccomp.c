/* test_seccomp.c: checks kiln-vmm's embedded seccomp filters rule by rule in forked children. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/policy.h"
#include "vmm/seccomp.h"
#include "vmm/seccomp_bpf.h"

/*
 * bubblewrap's try-syscall idea: arguments the filter does not look at get BAD (-1: an invalid
 * fd, a faulting pointer, an invalid size), so an allowed call fails harmlessly (EBADF, EFAULT,
 * EINVAL) and a forbidden one never runs: the filter kills the child with SIGSYS first.
 */
#define BAD UINT64_MAX
#define X32_BIT 0x40000000L
#define NR_MAX 600 /* above every x86_64 syscall number */

enum how { CALL_RAW, CALL_INT80 };
enum load { LOAD_NONE, LOAD_CLASS, LOAD_KILL_ALL };

/*
 * fd slots (policy.h): slot_fd[s] is an open fd (on /dev/null, distinct per slot) made by main;
 * other_fd is open too but bound to no slot. `full` binds every slot to its slot_fd (a VMM with
 * 8 disks and vsock); `partial` only disk 0, the VM, the vCPU and the epoll fd (one disk, no
 * vsock: the other slots get their unused value). The filters are loaded patched with *bound.
 */
static int slot_fd[POL_FD_SLOTS], other_fd = -1;
static struct pol_fds full, partial;
static const struct pol_fds *bound = &full;

/* Control filter: kills every syscall but exit and exit_group. A syscall it does not kill is one
 * the kernel (or a sandbox under it) answers without consulting seccomp at all. */
static int load_kill_all(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit_group, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/* In a child: load class c's real filter, make the call, leave with the class's own exit call. */
static int run_child(enum seccomp_class c, enum load load, enum how how, long nr, const uint64_t a[6])
{
	long exit_nr = pol_allows(pol_classes[c], SYS_exit_group, (uint64_t[6]){ 0 }, bound) ? SYS_exit_group
										       : SYS_exit;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		/* A fault kills the child: cmocka's handlers would carry on with the suite in it. */
		const int faults[] = { SIGSEGV, SIGILL, SIGFPE, SIGBUS, SIGSYS };
		for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
			signal(faults[i], SIG_DFL);
		/* Its own stdout: fcntl(STDOUT_FILENO, F_SETFL, BAD) is allowed and would set flags on
		 * the file description the test runner writes to. */
		int null = open("/dev/null", O_WRONLY);
		if (null < 0 || dup2(null, STDOUT_FILENO) < 0)
			_exit(121);
		if ((load == LOAD_CLASS && seccomp_load(c, bound) != 0) ||
		    (load == LOAD_KILL_ALL && load_kill_all() != 0))
			_exit(120);
		if (how == CALL_INT80) {
			long ret;
			__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr) : "memory");
			(void)ret;
		} else {
			(void)syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		}
		syscall(exit_nr, 0);
		for (;;)
			;
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return st;
}

static int killed_by_sigsys(int st)
{
	return st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS;
}

/* The arguments that satisfy rule r: its compared values (an fd comparison: the fd bound to
 * the first slot of its group), BAD elsewhere. The upper half of an int fd argument keeps BAD's
 * bits: the kernel ignores them, and so must the filter. */
static void allowed_args(const struct pol_rule *r, uint64_t a[6])
{
	for (int i = 0; i < 6; i++)
		a[i] = BAD;
	for (int k = 0; k < POL_MAX_CMP && r->cmp[k].op != POL_NONE; k++) {
		const struct pol_cmp *m = &r->cmp[k];
		uint64_t v = m->op == POL_FD ? bound->v[m->slot] : m->val;
		a[m->arg] = (a[m->arg] & ~m->mask) | v;
	}
}

static void check_allowed(enum seccomp_class c)
{
	const struct pol_class *pc = pol_classes[c];
	int bad = 0;
	for (size_t i = 0; i < pc->nrules; i++) {
		const struct pol_rule *r = &pc->rules[i];
		uint64_t a[6];
		allowed_args(r, a);
		assert_true(pol_allows(pc, r->nr, a, bound));
		int st = run_child(c, LOAD_CLASS, CALL_RAW, r->nr, a);
		/* rt_sigreturn without a signal frame may die of SIGSEGV; only SIGSYS means refused. */
		if (st == -1 || killed_by_sigsys(st) || (WIFEXITED(st) && WEXITSTATUS(st) == 120)) {
			print_error("class %s: rule %zu (%s) was refused (status 0x%x)\n", pc->name, i, r->name, st);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

/* A value of argument m->arg that no rule of the class accepts together with the other args
 * (an fd comparison: another open fd, bound to no slot). */
static int perturb(const struct pol_class *pc, const struct pol_rule *r, const struct pol_cmp *m, uint64_t a[6])
{
	uint64_t low = m->mask & (~m->mask + 1);
	const uint64_t cand[] = { m->val ^ low, m->val + 1, m->val - 1, m->val ^ 0x80, m->val ^ 0xdead, BAD };
	const uint64_t fd_cand[] = { (uint64_t)other_fd, BAD };
	const uint64_t *cands = m->op == POL_FD ? fd_cand : cand;
	size_t ncand = m->op == POL_FD ? sizeof(fd_cand) / sizeof(fd_cand[0]) : sizeof(cand) / sizeof(cand[0]);
	for (size_t j = 0; j < ncand; j++) {
		a[m->arg] = cands[j];
		if (!pol_allows(pc, r->nr, a, bound))
			return 0;
	}
	return -1;
}

static void check_perturbed(enum seccomp_class c)
{
	const struct pol_class *pc = pol_classes[c];
	int bad = 0, n = 0;
	for (size_t i = 0; i < pc->nrules; i++) {
		const struct pol_rule *r = &pc->rules[i];
		for (int k = 0; k < POL_MAX_CMP && r->cmp[k].op != POL_NONE; k++) {
			uint64_t a[6];
			allowed_args(r, a);
			if (perturb(pc, r, &r->cmp[k], a) != 0) {
				print_error("class %s: rule %zu (%s): no refused value for %s\n", pc->name, i,
					    r->name, r->cmp[k].text);
				bad++;
				continue;
			}
			int st = run_child(c, LOAD_CLASS, CALL_RAW, r->nr, a);
			n++;
			if (!killed_by_sigsys(st)) {
				print_error("class %s: %s with arg%u = 0x%llx was not killed (status 0x%x)\n", pc->name,
					    r->name, r->cmp[k].arg, (unsigned long long)a[r->cmp[k].arg], st);
				bad++;
			}
		}
	}
	assert_true(n > 0);
	assert_int_equal(bad, 0);
}

/* Call rule r with its fd argument (comparison m) set to v; want 1: must pass, 0: must be killed,
 * and the table must agree. Returns the number of failures (0 or 1). */
static int try_fd(enum seccomp_class c, const struct pol_rule *r, const struct pol_cmp *m, uint64_t v, int want,
		  const char *what)
{
	const struct pol_class *pc = pol_classes[c];
	uint64_t a[6];
	allowed_args(r, a);
	a[m->arg] = v;
	if (pol_allows(pc, r->nr, a, bound) != want) {
		print_error("class %s: %s on %s (0x%llx): the table says %d\n", pc->name, r->name, what,
			    (unsigned long long)v, !want);
		return 1;
	}
	int st = run_child(c, LOAD_CLASS, CALL_RAW, r->nr, a);
	if (want ? (st == -1 || killed_by_sigsys(st) || (WIFEXITED(st) && WEXITSTATUS(st) == 120))
		 : !killed_by_sigsys(st)) {
		print_error("class %s: %s on %s (0x%llx): %s (status 0x%x)\n", pc->name, r->name, what,
			    (unsigned long long)v, want ? "refused" : "not killed", st);
		return 1;
	}
	return 0;
}

/*
 * Every fd-pinned rule, under the binding *bound: the call on each bound fd of its group passes
 * (also with the upper half of the argument set: the kernel reads an int); the same call on the
 * open fd a slot of the group would have when that slot is unbound, on another open fd bound to
 * no slot, and on every bound fd of another slot, is killed.
 */
static void check_pinned(enum seccomp_class c)
{
	const struct pol_class *pc = pol_classes[c];
	int bad = 0, pinned = 0;
	for (size_t i = 0; i < pc->nrules; i++) {
		const struct pol_rule *r = &pc->rules[i];
		for (int k = 0; k < POL_MAX_CMP && r->cmp[k].op != POL_NONE; k++) {
			const struct pol_cmp *m = &r->cmp[k];
			if (m->op != POL_FD)
				continue;
			pinned++;
			for (unsigned int sl = 0; sl < POL_FD_SLOTS; sl++) {
				int in_group = sl >= m->slot && sl < (unsigned int)m->slot + m->nslots;
				int is_bound = bound->v[sl] == (uint32_t)slot_fd[sl];
				if (in_group && is_bound) {
					bad += try_fd(c, r, m, (uint64_t)slot_fd[sl], 1, "its pinned fd");
					bad += try_fd(c, r, m, (uint64_t)slot_fd[sl] | 0xdead00000000ULL, 1,
						      "its pinned fd, upper half set");
				} else if (in_group) {
					bad += try_fd(c, r, m, (uint64_t)slot_fd[sl], 0, "the fd of an unbound slot");
				} else if (is_bound) {
					uint64_t a[6];
					allowed_args(r, a);
					a[m->arg] = (uint64_t)slot_fd[sl];
					if (!pol_allows(pc, r->nr, a, bound)) /* another rule may take it */
						bad += try_fd(c, r, m, (uint64_t)slot_fd[sl], 0, "another slot's fd");
				}
			}
			bad += try_fd(c, r, m, (uint64_t)other_fd, 0, "an open fd bound to no slot");
		}
	}
	assert_true(pinned > 0);
	assert_int_equal(bad, 0);
}

struct forbidden {
	const char *what;
	long nr;
	uint64_t a[6];
};

static void check_forbidden(enum seccomp_class c)
{
	const struct forbidden f[] = {
		{ "execve", SYS_execve, { BAD, BAD, BAD, BAD, BAD, BAD } },
		{ "execveat", SYS_execveat, { BAD, BAD, BAD, BAD, BAD, BAD } },
		{ "clone (fork-style)", SYS_clone, { SIGCHLD, 0, 0, 0, 0, 0 } },
		{ "clone (thread)", SYS_clone, { CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD, BAD, BAD, BAD, BAD, BAD } },
		{ "clone3", SYS_clone3, { BAD, BAD, BAD, BAD, BAD, BAD } },
		{ "fork", SYS_fork, { 0 } },
		{ "vfork", SYS_vfork, { 0 } },
		{ "ptrace", SYS_ptrace, { PTRACE_PEEKDATA, BAD, BAD, BAD, BAD, BAD } },
		{ "socket(AF_INET)", SYS_socket, { AF_INET, SOCK_STREAM, 0, 0, 0, 0 } },
		{ "socket(AF_UNIX, SOCK_DGRAM)", SYS_socket, { AF_UNIX, SOCK_DGRAM, 0, 0, 0, 0 } },
		{ "socket(AF_NETLINK)", SYS_socket, { AF_NETLINK, SOCK_RAW, 0, 0, 0, 0 } },
		{ "openat", SYS_openat, { (uint64_t)AT_FDCWD, BAD, O_RDONLY, 0, 0, 0 } },
		{ "open", SYS_open, { BAD, O_RDONLY, 0, 0, 0, 0 } },
		{ "mount", SYS_mount, { BAD, BAD, BAD, BAD, BAD, BAD } },
		{ "unshare", SYS_unshare, { 0, 0, 0, 0, 0, 0 } },
		{ "setns", SYS_setns, { BAD, 0, 0, 0, 0, 0 } },
		{ "bpf", SYS_bpf, { BAD, BAD, BAD, BAD, BAD, BAD } },
		{ "keyctl", SYS_keyctl, { BAD, BAD, BAD, BAD, BAD, BAD } },
		{ "userfaultfd", SYS_userfaultfd, { BAD, 0, 0, 0, 0, 0 } },
		{ "io_uring_setup", SYS_io_uring_setup, { 0, BAD, 0, 0, 0, 0 } },
		{ "mprotect(PROT_EXEC)", SYS_mprotect, { BAD, BAD, 4 /* PROT_EXEC */, 0, 0, 0 } },
		{ "kill", SYS_kill, { BAD, 0, 0, 0, 0, 0 } },
		{ "prctl", SYS_prctl, { BAD, BAD, BAD, BAD, BAD, BAD } },
		{ "seccomp", SYS_seccomp, { BAD, BAD, BAD, BAD, BAD, BAD } },
		{ "x32 getpid", SYS_getpid | X32_BIT, { 0 } },
		{ "x32 write", SYS_write | X32_BIT, { BAD, BAD, BAD, 0, 0, 0 } },
	};
	int bad = 0;
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		int st = run_child(c, LOAD_CLASS, CALL_RAW, f[i].nr, f[i].a);
		if (!killed_by_sigsys(st)) {
			print_error("class %s: %s was not killed (status 0x%x)\n", pol_classes[c]->name, f[i].what, st);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

/* An i386 syscall (int 0x80, getpid = 20) fails the architecture check. Skipped where the
 * kernel has no IA32 emulation (then int 0x80 faults even without a filter). */
static void check_int80(enum seccomp_class c)
{
	int st = run_child(c, LOAD_NONE, CALL_INT80, 20, (uint64_t[6]){ 0 });
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		skip();
	st = run_child(c, LOAD_CLASS, CALL_INT80, 20, (uint64_t[6]){ 0 });
	assert_true(killed_by_sigsys(st));
}

/* Every syscall number no rule names dies, whatever its arguments. */
static void check_all_others(enum seccomp_class c)
{
	const struct pol_class *pc = pol_classes[c];
	int bad = 0;
	for (long nr = 0; nr < NR_MAX; nr++) {
		int named = 0;
		for (size_t i = 0; i < pc->nrules; i++)
			named |= pc->rules[i].nr == nr;
		if (named)
			continue;
		const uint64_t a[6] = { BAD, BAD, BAD, BAD, BAD, BAD };
		int st = run_child(c, LOAD_CLASS, CALL_RAW, nr, a);
		if (!killed_by_sigsys(st) && !killed_by_sigsys(run_child(c, LOAD_KILL_ALL, CALL_RAW, nr, a))) {
			print_message("class %s: syscall %ld bypasses seccomp on this kernel: not checked\n",
				      pc->name, nr);
		} else if (!killed_by_sigsys(st)) {
			print_error("class %s: syscall %ld was not killed (status 0x%x)\n", pc->name, nr, st);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

/* The tables and the BPF agree on size, and the BPF starts with the architecture check. */
static void bpf_shape(void **state)
{
	(void)state;
	for (unsigned int c = 0; c < POL_CLASS_N; c++) {
		const struct kiln_bpf *b = &kiln_bpf[c];
		assert_true(b->len > 4 && b->len < 4096);
		/* ld [arch]; jeq AUDIT_ARCH_X86_64 */
		assert_int_equal(b->prog[0].code, BPF_LD | BPF_W | BPF_ABS);
		assert_int_equal(b->prog[0].k, 4 /* offsetof(struct seccomp_data, arch) */);
		assert_int_equal(b->prog[1].code, BPF_JMP | BPF_JEQ | BPF_K);
		assert_int_equal(b->prog[1].k, 0xc000003eU /* AUDIT_ARCH_X86_64 */);
		assert_true(pol_nsyscalls(pol_classes[c]) > 0);
		/* fd placeholders: each listed one is a jeq on its slot's constant, no other
		 * instruction holds a constant in the placeholder range, and every slot a rule of
		 * the class names is in the program */
		uint32_t listed = 0, named = 0;
		unsigned int in_range = 0;
		for (unsigned int i = 0; i < b->nfds; i++) {
			const struct kiln_bpf_fd *p = &b->fds[i];
			assert_true(p->insn < b->len && p->slot < POL_FD_SLOTS);
			assert_int_equal(b->prog[p->insn].code, BPF_JMP | BPF_JEQ | BPF_K);
			assert_int_equal(b->prog[p->insn].k, POL_FD_PLACEHOLDER(p->slot));
			listed |= 1u << p->slot;
		}
		for (unsigned int i = 0; i < b->len; i++)
			in_range += b->prog[i].k - POL_FD_PH_BASE < POL_FD_PH_SPAN;
		assert_int_equal(in_range, b->nfds);
		const struct pol_class *pc = pol_classes[c];
		for (size_t i = 0; i < pc->nrules; i++)
			for (int k = 0; k < POL_MAX_CMP && pc->rules[i].cmp[k].op != POL_NONE; k++)
				if (pc->rules[i].cmp[k].op == POL_FD)
					for (unsigned int sl = 0; sl < pc->rules[i].cmp[k].nslots; sl++)
						named |= 1u << (pc->rules[i].cmp[k].slot + sl);
		assert_int_equal(listed, named);
		assert_true(named != 0);
	}
	/* The vCPU class is the small one: no file, socket or memory-mapping calls at all. */
	const long never_vcpu[] = { SYS_read, SYS_openat, SYS_socket, SYS_connect, SYS_mmap, SYS_preadv,
				    SYS_pwritev, SYS_close, SYS_unlink, SYS_exit_group };
	for (size_t i = 0; i < sizeof(never_vcpu) / sizeof(never_vcpu[0]); i++)
		for (size_t j = 0; j < pol_vcpu.nrules; j++)
			assert_int_not_equal(pol_vcpu.rules[j].nr, never_vcpu[i]);
}

/* seccomp_load refuses a binding that gives two slots of the class the same fd, and then has
 * done nothing (no NO_NEW_PRIVS, no filter: this process goes on unfiltered). */
static void patch_refuses_shared_fds(void **state)
{
	(void)state;
	struct pol_fds f = full;
	f.v[POL_FD_VCPU] = f.v[POL_FD_VM];
	assert_int_equal(seccomp_load(SECCOMP_CLASS_VCPU, &f), -EINVAL);
	f = full;
	f.v[POL_FD_DISK0 + 3] = f.v[POL_FD_DISK0 + 5];
	assert_int_equal(seccomp_load(SECCOMP_CLASS_LOOP, &f), -EINVAL);
	f = full;
	f.v[POL_FD_EPOLL] = f.v[POL_FD_VM];
	assert_int_equal(seccomp_load(SECCOMP_CLASS_LOOP, &f), -EINVAL);
	assert_int_equal(seccomp_load(SECCOMP_CLASS_LOOP, NULL), -EINVAL);
	assert_int_equal(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 0);
}

/* A binding as main binds it: only the slots given get a value; pol_fds_set ignores fd < 0. */
static void fds_binding(void **state)
{
	(void)state;
	struct pol_fds f;
	pol_fds_init(&f);
	for (unsigned int sl = 0; sl < POL_FD_SLOTS; sl++) {
		assert_int_equal(f.v[sl], POL_FD_UNUSED(sl));
		assert_true((int32_t)f.v[sl] < 0); /* no fd has it */
	}
	pol_fds_set(&f, POL_FD_VM, -1);
	pol_fds_set(&f, POL_FD_SLOTS, 7);
	assert_int_equal(f.v[POL_FD_VM], POL_FD_UNUSED(POL_FD_VM));
	pol_fds_set(&f, POL_FD_VM, 7);
	assert_int_equal(f.v[POL_FD_VM], 7);
}

#define CLASS_TESTS(cls, id)                                                                  \
	static void cls##_allowed(void **s) { (void)s; check_allowed(id); }                   \
	static void cls##_pinned(void **s) { (void)s; check_pinned(id); }                     \
	static void cls##_perturbed(void **s) { (void)s; check_perturbed(id); }               \
	static void cls##_forbidden(void **s) { (void)s; check_forbidden(id); }               \
	static void cls##_int80(void **s) { (void)s; check_int80(id); }                       \
	static void cls##_all_others(void **s) { (void)s; check_all_others(id); }

CLASS_TESTS(loop, SECCOMP_CLASS_LOOP)
CLASS_TESTS(vcpu, SECCOMP_CLASS_VCPU)

/* Fixtures: run a test under the one-disk, no-vsock binding instead of the full one. */
static int bind_partial(void **s)
{
	(void)s;
	bound = &partial;
	return 0;
}

static int bind_full(void **s)
{
	(void)s;
	bound = &full;
	return 0;
}

static void loop_pinned_one_disk(void **s)
{
	(void)s;
	check_pinned(SECCOMP_CLASS_LOOP);
}

int main(void)
{
	/* slot fds: distinct open fds, none of them 0-2 */
	for (unsigned int sl = 0; sl < POL_FD_SLOTS; sl++)
		if ((slot_fd[sl] = open("/dev/null", O_RDWR | O_CLOEXEC)) < 3)
			return 1;
	if ((other_fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 3)
		return 1;
	pol_fds_init(&full);
	pol_fds_init(&partial);
	for (unsigned int sl = 0; sl < POL_FD_SLOTS; sl++)
		pol_fds_set(&full, sl, slot_fd[sl]);
	const unsigned int one_disk[] = { POL_FD_DISK0, POL_FD_VM, POL_FD_VCPU, POL_FD_EPOLL };
	for (size_t i = 0; i < sizeof(one_disk) / sizeof(one_disk[0]); i++)
		pol_fds_set(&partial, one_disk[i], slot_fd[one_disk[i]]);

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bpf_shape),
		cmocka_unit_test(fds_binding),
		cmocka_unit_test(patch_refuses_shared_fds),
		cmocka_unit_test(loop_allowed),
		cmocka_unit_test(loop_pinned),
		cmocka_unit_test_setup_teardown(loop_pinned_one_disk, bind_partial, bind_full),
		cmocka_unit_test(loop_perturbed),
		cmocka_unit_test(loop_forbidden),
		cmocka_unit_test(loop_int80),
		cmocka_unit_test(loop_all_others),
		cmocka_unit_test(vcpu_allowed),
		cmocka_unit_test(vcpu_pinned),
		cmocka_unit_test(vcpu_perturbed),
		cmocka_unit_test(vcpu_forbidden),
		cmocka_unit_test(vcpu_int80),
		cmocka_unit_test(vcpu_all_others),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
