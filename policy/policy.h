/* policy.h: kiln-vmm's seccomp allowlists as data: one table of rules per thread class. */
#ifndef KILN_POLICY_H
#define KILN_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>

/*
 * A rule allows one syscall when every one of its argument comparisons holds; several rules for
 * the same syscall are alternatives (OR). A rule with no comparison allows the syscall with any
 * arguments. Everything no rule allows kills the whole process (SECCOMP_RET_KILL_PROCESS).
 *
 * The tables are compiled twice: into policy/gen (linked with libseccomp), which turns them into
 * BPF at build time, and into kiln-vmm, which only prints them (--print-policy) and never parses
 * or compiles a policy at run time. tests/seccomp checks the BPF against these tables.
 */

enum pol_op {
	POL_NONE = 0, /* unused slot */
	POL_EQ,       /* (arg & mask) == val; mask 0xffffffff compares an int argument */
	POL_MASKED,   /* (arg & mask) == val, for flag words: the bits in mask must equal val */
};

#define POL_MAX_CMP 3

struct pol_cmp {
	uint8_t arg;          /* 0..5 */
	uint8_t op;           /* enum pol_op */
	uint64_t mask, val;
	const char *text;     /* how --print-policy shows it, e.g. "arg1 == KVM_RUN" */
};

struct pol_rule {
	const char *name;     /* syscall name */
	long nr;              /* x86_64 syscall number */
	struct pol_cmp cmp[POL_MAX_CMP];
	const char *why;      /* the reason the thread class needs it */
};

struct pol_class {
	const char *name;     /* "loop", "vcpu" */
	const char *about;    /* which thread(s) run under it */
	const struct pol_rule *rules;
	size_t nrules;
};

/* The thread classes, in enum order. */
enum pol_class_id { POL_CLASS_LOOP = 0, POL_CLASS_VCPU, POL_CLASS_N };
extern const struct pol_class pol_loop, pol_vcpu;
extern const struct pol_class *const pol_classes[POL_CLASS_N];

/* Rule-writing helpers: int-sized equality, exact 64-bit equality, bits under a mask. */
#define POL_ARG_EQ32(i, v) { (i), POL_EQ, 0xffffffffULL, (uint64_t)(uint32_t)(v), "arg" #i " == " #v }
#define POL_ARG_EQ(i, v)   { (i), POL_EQ, ~0ULL, (uint64_t)(v), "arg" #i " == " #v }
#define POL_ARG_BITS(i, m, v) { (i), POL_MASKED, (uint64_t)(m), (uint64_t)(v), "(arg" #i " & " #m ") == " #v }
#define POL_ALLOW(sys, reason) { #sys, __NR_##sys, { { 0 } }, reason }
#define POL_ALLOW_IF(sys, reason, ...) { #sys, __NR_##sys, { __VA_ARGS__ }, reason }

/* Number of distinct syscalls the class allows (what Firecracker's counts count). */
size_t pol_nsyscalls(const struct pol_class *c);

/* 1 if the table allows syscall nr with args a[0..5], else 0. The reference the BPF is tested against. */
int pol_allows(const struct pol_class *c, long nr, const uint64_t a[6]);

/* Print the class's rules, one line per rule, with the reasons. */
void pol_print(FILE *f, const struct pol_class *c);

#endif
