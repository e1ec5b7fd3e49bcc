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
	long exit_nr = pol_allows(pol_classes[c], SYS_exit_group, (uint64_t[6]){ 0 }) ? SYS_exit_group
										: SYS_exit;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if ((load == LOAD_CLASS && seccomp_load(c) != 0) || (load == LOAD_KILL_ALL && load_kill_all() != 0))
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

/* The arguments that satisfy rule r: its compared values, BAD elsewhere. */
static void allowed_args(const struct pol_rule *r, uint64_t a[6])
{
	for (int i = 0; i < 6; i++)
		a[i] = BAD;
	for (int k = 0; k < POL_MAX_CMP && r->cmp[k].op != POL_NONE; k++) {
		const struct pol_cmp *m = &r->cmp[k];
		a[m->arg] = (a[m->arg] & ~m->mask) | m->val;
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
		assert_true(pol_allows(pc, r->nr, a));
		int st = run_child(c, LOAD_CLASS, CALL_RAW, r->nr, a);
		/* rt_sigreturn without a signal frame may die of SIGSEGV; only SIGSYS means refused. */
		if (st == -1 || killed_by_sigsys(st) || (WIFEXITED(st) && WEXITSTATUS(st) == 120)) {
			print_error("class %s: rule %zu (%s) was refused (status 0x%x)\n", pc->name, i, r->name, st);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

/* A value of argument m->arg that no rule of the class accepts together with the other args. */
static int perturb(const struct pol_class *pc, const struct pol_rule *r, const struct pol_cmp *m, uint64_t a[6])
{
	uint64_t low = m->mask & (~m->mask + 1);
	const uint64_t cand[] = { m->val ^ low, m->val + 1, m->val - 1, m->val ^ 0x80, m->val ^ 0xdead, BAD };
	for (size_t j = 0; j < sizeof(cand) / sizeof(cand[0]); j++) {
		a[m->arg] = cand[j];
		if (!pol_allows(pc, r->nr, a))
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
	}
	/* The vCPU class is the small one: no file, socket or memory-mapping calls at all. */
	const long never_vcpu[] = { SYS_read, SYS_openat, SYS_socket, SYS_connect, SYS_mmap, SYS_preadv,
				    SYS_pwritev, SYS_close, SYS_unlink, SYS_exit_group };
	for (size_t i = 0; i < sizeof(never_vcpu) / sizeof(never_vcpu[0]); i++)
		for (size_t j = 0; j < pol_vcpu.nrules; j++)
			assert_int_not_equal(pol_vcpu.rules[j].nr, never_vcpu[i]);
}

#define CLASS_TESTS(cls, id)                                                                  \
	static void cls##_allowed(void **s) { (void)s; check_allowed(id); }                   \
	static void cls##_perturbed(void **s) { (void)s; check_perturbed(id); }               \
	static void cls##_forbidden(void **s) { (void)s; check_forbidden(id); }               \
	static void cls##_int80(void **s) { (void)s; check_int80(id); }                       \
	static void cls##_all_others(void **s) { (void)s; check_all_others(id); }

CLASS_TESTS(loop, SECCOMP_CLASS_LOOP)
CLASS_TESTS(vcpu, SECCOMP_CLASS_VCPU)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bpf_shape),
		cmocka_unit_test(loop_allowed),
		cmocka_unit_test(loop_perturbed),
		cmocka_unit_test(loop_forbidden),
		cmocka_unit_test(loop_int80),
		cmocka_unit_test(loop_all_others),
		cmocka_unit_test(vcpu_allowed),
		cmocka_unit_test(vcpu_perturbed),
		cmocka_unit_test(vcpu_forbidden),
		cmocka_unit_test(vcpu_int80),
		cmocka_unit_test(vcpu_all_others),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
