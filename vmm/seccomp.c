/* seccomp.c: installs kiln-vmm's build-time seccomp filters, one per thread class. */
#include "seccomp.h"

#include <errno.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "policy/policy.h"
#include "seccomp_bpf.h"

_Static_assert(KILN_BPF_CLASSES == POL_CLASS_N, "one BPF program per policy class");
_Static_assert(POL_FD_SLOTS <= 32, "slot set is a uint32_t");
_Static_assert((int)SECCOMP_CLASS_LOOP == (int)POL_CLASS_LOOP && (int)SECCOMP_CLASS_VCPU == (int)POL_CLASS_VCPU,
	       "class numbering");

/* Start gate: 0 until the main thread decides, then 1 (run the guest) or 2 (do not). */
enum { GATE_CLOSED = 0, GATE_OPEN = 1, GATE_FAILED = 2 };
static _Atomic int gate;
/* vCPU threads that have reported (filter loaded or failed), and how many of them failed. */
static _Atomic int vcpus_reported, vcpus_failed;

static void futex_wake_all(_Atomic int *w)
{
	(void)syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

static void futex_wait_while(_Atomic int *w, int v)
{
	(void)syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

/* Copy b into out (room for KILN_BPF_MAX_INSNS) with fds' values over the placeholders. */
static int patch(const struct kiln_bpf *b, const struct pol_fds *fds, struct sock_filter *out)
{
	uint32_t used = 0;

	if (b->len > KILN_BPF_MAX_INSNS)
		return -E2BIG;
	memcpy(out, b->prog, b->len * sizeof(*out));
	for (unsigned int i = 0; i < b->nfds; i++) {
		const struct kiln_bpf_fd *p = &b->fds[i];
		if (p->insn >= b->len || p->slot >= POL_FD_SLOTS || out[p->insn].code != (BPF_JMP | BPF_JEQ | BPF_K) ||
		    out[p->insn].k != POL_FD_PLACEHOLDER(p->slot))
			return -EINVAL;
		out[p->insn].k = fds->v[p->slot];
		used |= 1u << p->slot;
	}
	/* Distinct values keep the program's meaning (policy/gen checks the rest). */
	for (unsigned int s = 0; s < POL_FD_SLOTS; s++)
		for (unsigned int t = s + 1; t < POL_FD_SLOTS; t++)
			if ((used >> s & 1) && (used >> t & 1) && fds->v[s] == fds->v[t])
				return -EINVAL;
	return 0;
}

int seccomp_load(enum seccomp_class c, const struct pol_fds *fds)
{
	struct sock_filter buf[KILN_BPF_MAX_INSNS];

	if ((unsigned int)c >= KILN_BPF_CLASSES || !fds)
		return -EINVAL;
	const struct kiln_bpf *b = &kiln_bpf[c];
	int r = patch(b, fds, buf);
	if (r < 0)
		return r;
	struct sock_fprog prog = { .len = b->len, .filter = buf };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -errno;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
		return -errno;
	return 0;
}

int seccomp_install_loop(const struct pol_fds *fds)
{
	int r = seccomp_load(SECCOMP_CLASS_LOOP, fds);
	if (r < 0)
		kiln_warn_errno(-r, "seccomp: cannot install the %s filter", pol_classes[POL_CLASS_LOOP]->name);
	return r;
}

int seccomp_install_vcpu(const struct pol_fds *fds)
{
	int r = seccomp_load(SECCOMP_CLASS_VCPU, fds);
	if (r < 0) {
		kiln_warn_errno(-r, "seccomp: cannot install the %s filter", pol_classes[POL_CLASS_VCPU]->name);
		atomic_fetch_add(&vcpus_failed, 1);
	}
	atomic_fetch_add(&vcpus_reported, 1);
	futex_wake_all(&vcpus_reported);
	if (r < 0)
		return r;
	int v;
	while ((v = atomic_load(&gate)) == GATE_CLOSED)
		futex_wait_while(&gate, GATE_CLOSED);
	return v == GATE_OPEN ? 0 : -ECANCELED;
}

int seccomp_wait_vcpus(unsigned int n)
{
	int v;
	while ((v = atomic_load(&vcpus_reported)) < (int)n)
		futex_wait_while(&vcpus_reported, v);
	return atomic_load(&vcpus_failed) ? -ECANCELED : 0;
}

void seccomp_open_gate(int run)
{
	atomic_store(&gate, run ? GATE_OPEN : GATE_FAILED);
	futex_wake_all(&gate);
}

void seccomp_print_policy(FILE *f)
{
	fprintf(f, "kiln-vmm seccomp policy: compiled at build time from policy/*.c by libseccomp;\n"
		   "each thread loads its class before the guest runs. Every program first kills any\n"
		   "architecture but x86_64 and any x32 syscall number. <... fd> is an fd kiln-vmm\n"
		   "opened before start, written into the thread's copy of the program just before\n"
		   "loading it (a slot with no such fd gets a value no fd has).\n");
	for (unsigned int c = 0; c < POL_CLASS_N; c++) {
		fprintf(f, "\n");
		pol_print(f, pol_classes[c]);
		fprintf(f, "  (BPF program: %u instructions)\n", kiln_bpf[c].len);
	}
}

#ifdef KILN_SECCOMP_TRIGGER
void seccomp_debug_trigger(unsigned int status)
{
	static const char msg[] = "kiln-vmm: KILN-SECCOMP-TRIGGER: calling execve from a vCPU thread\n";
	if (status != KILN_SECCOMP_TRIGGER_STATUS)
		return;
	ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)n;
	char *const argv[] = { (char *)"/bin/true", NULL };
	execve(argv[0], argv, argv + 1);
	kiln_warn_errno(errno, "KILN-SECCOMP-TRIGGER: execve returned");
}
#endif
