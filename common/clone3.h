/* clone3.h: clone3()'s argument block, for kiln-jailer (new namespaces) and kiln-init (the
 * command straight into its cgroup). */
#ifndef KILN_CLONE3_H
#define KILN_CLONE3_H

#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* As struct clone_args in linux/sched.h (not included: it clashes with glibc's sched.h). */
struct kiln_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
		set_tid_size, cgroup;
};

/* clone3 without a new stack: returns like fork (0 in the child), or -1 with errno set. */
static inline long kiln_clone3(struct kiln_clone_args *ca)
{
	return syscall(SYS_clone3, ca, sizeof(*ca));
}

#endif
