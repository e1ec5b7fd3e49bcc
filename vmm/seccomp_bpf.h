/* seccomp_bpf.h: the BPF programs policy/gen compiled from policy/ at build time (build/policy/filters.c). */
#ifndef KILN_SECCOMP_BPF_H
#define KILN_SECCOMP_BPF_H

#include <linux/filter.h>

#define KILN_BPF_CLASSES 2 /* POL_CLASS_N: loop, vcpu */

struct kiln_bpf {
	const struct sock_filter *prog;
	unsigned short len;
};

/* Indexed by enum pol_class_id. */
extern const struct kiln_bpf kiln_bpf[KILN_BPF_CLASSES];

#endif
