/* seccomp_bpf.h: the BPF programs policy/gen compiled from policy/ at build time (build/policy/filters.c). */
#ifndef KILN_SECCOMP_BPF_H
#define KILN_SECCOMP_BPF_H

#include <linux/filter.h>

#define KILN_BPF_CLASSES 2      /* POL_CLASS_N: loop, vcpu */
#define KILN_BPF_MAX_INSNS 1024 /* policy/gen refuses a longer program; vmm/seccomp.c copies onto the stack */

/* One fd placeholder in a program: instruction insn is `jeq #POL_FD_PLACEHOLDER(slot)`. */
struct kiln_bpf_fd {
	unsigned short insn;
	unsigned char slot;
};

struct kiln_bpf {
	const struct sock_filter *prog;
	unsigned short len;
	const struct kiln_bpf_fd *fds; /* every placeholder of prog, in instruction order */
	unsigned short nfds;
};

/* Indexed by enum pol_class_id. */
extern const struct kiln_bpf kiln_bpf[KILN_BPF_CLASSES];

#endif
