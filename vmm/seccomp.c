/* seccomp.c: installs kiln-vmm's build-time seccomp filters, one per thread class. */
#include "seccomp.h"

#include <errno.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "policy/policy.h"
#include "seccomp_bpf.h"

_Static_assert(KILN_BPF_CLASSES == POL_CLASS_N, "one BPF program per policy class");
_Static_assert((int)SECCOMP_CLASS_LOOP == (int)POL_CLASS_LOOP && (int)SECCOMP_CLASS_VCPU == (int)POL_CLASS_VCPU,
	       "class numbering");

/* Start gate: 0 until the main thread's filter is loaded, then 1 (loaded) or 2 (failed). */
enum { GATE_CLOSED = 0, GATE_OPEN = 1, GATE_FAILED = 2 };
static _Atomic int gate;

static void gate_set(int v)
{
	atomic_store(&gate, v);
	(void)syscall(SYS_futex, &gate, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

static int gate_wait(void)
{
	int v;
	while ((v = atomic_load(&gate)) == GATE_CLOSED)
		(void)syscall(SYS_futex, &gate, FUTEX_WAIT_PRIVATE, GATE_CLOSED, NULL, NULL, 0);
	return v == GATE_OPEN ? 0 : -ECANCELED;
}

int seccomp_load(enum seccomp_class c)
{
	if ((unsigned int)c >= KILN_BPF_CLASSES)
		return -EINVAL;
	const struct kiln_bpf *b = &kiln_bpf[c];
	struct sock_fprog prog = { .len = b->len, .filter = (struct sock_filter *)b->prog };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -errno;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
		return -errno;
	return 0;
}

int seccomp_install(enum seccomp_class c)
{
	if ((unsigned int)c >= KILN_BPF_CLASSES)
		return -EINVAL;
	int r = seccomp_load(c);
	if (r < 0)
		kiln_warn_errno(-r, "seccomp: cannot install the %s filter", pol_classes[c]->name);
	if (c == SECCOMP_CLASS_LOOP) {
		gate_set(r == 0 ? GATE_OPEN : GATE_FAILED);
		return r;
	}
	if (r < 0)
		return r;
	return gate_wait();
}

void seccomp_print_policy(FILE *f)
{
	fprintf(f, "kiln-vmm seccomp policy: compiled at build time from policy/*.c by libseccomp;\n"
		   "each thread loads its class before the guest runs. Every program first kills any\n"
		   "architecture but x86_64 and any x32 syscall number.\n");
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
