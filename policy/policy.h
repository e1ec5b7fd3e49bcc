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
	POL_FD,       /* (arg & 0xffffffff) is the fd bound to one of the slots [slot, slot+nslots) */
};

/*
 * fd slots: the file descriptors a rule can be pinned to. Their numbers exist only at run time
 * and the BPF is compiled at build time, so policy/gen compiles a comparison with slot s as a
 * comparison with the constant POL_FD_PLACEHOLDER(s) and records where each one lands in the
 * program; kiln-vmm copies the program and writes the real fd over each placeholder just before
 * loading it (vmm/seccomp.c). A slot with no fd gets POL_FD_UNUSED(s): negative as an int, so no
 * fd has it. Every value is distinct per slot, so the patched program means exactly what the
 * table means with the slots bound. fd arguments are compared on 32 bits: the kernel reads them
 * as (unsigned) int and ignores the upper half.
 */
#define POL_FD_NDISKS 8
enum pol_fd_slot {
	POL_FD_DISK0 = 0,                              /* virtio-blk disks 0..7 */
	POL_FD_VM = POL_FD_DISK0 + POL_FD_NDISKS,      /* the KVM VM fd */
	POL_FD_VCPU,                                   /* the calling vCPU thread's own vCPU fd */
	POL_FD_EPOLL,                                  /* the event loop's epoll fd */
	POL_FD_VSOCK_LISTEN,                           /* the vsock host side's listening socket */
	POL_FD_VSOCK_TIMER,                            /* the vsock host side's timeout timerfd */
	POL_FD_SLOTS,
};
#define POL_FD_PH_BASE 0xf1d00000u /* placeholders: POL_FD_PH_BASE + slot */
#define POL_FD_PH_SPAN 0x100u      /* no other constant of a program may fall in [BASE, BASE+SPAN) */
#define POL_FD_PLACEHOLDER(s) (POL_FD_PH_BASE + (uint32_t)(s))
#define POL_FD_UNUSED(s) (0xfffe0000u + (uint32_t)(s))
_Static_assert(POL_FD_SLOTS <= POL_FD_PH_SPAN, "placeholder range");

/* The fd bound to each slot (as the 32-bit value the BPF compares). */
struct pol_fds {
	uint32_t v[POL_FD_SLOTS];
};

#define POL_MAX_CMP 3

struct pol_cmp {
	uint8_t arg;          /* 0..5 */
	uint8_t op;           /* enum pol_op */
	uint8_t slot, nslots; /* POL_FD: the slots */
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

/* Rule-writing helpers: int-sized equality, exact 64-bit equality, bits under a mask, an fd
 * pinned to nslots slots from slot (what: how --print-policy names them). */
#define POL_ARG_EQ32(i, v) \
	{ .arg = (i), .op = POL_EQ, .mask = 0xffffffffULL, .val = (uint64_t)(uint32_t)(v), .text = "arg" #i " == " #v }
#define POL_ARG_EQ(i, v) { .arg = (i), .op = POL_EQ, .mask = ~0ULL, .val = (uint64_t)(v), .text = "arg" #i " == " #v }
#define POL_ARG_BITS(i, m, v) \
	{ .arg = (i), .op = POL_MASKED, .mask = (uint64_t)(m), .val = (uint64_t)(v), .text = "(arg" #i " & " #m ") == " #v }
#define POL_ARG_FD(i, s, n, what) \
	{ .arg = (i), .op = POL_FD, .slot = (s), .nslots = (n), .mask = 0xffffffffULL, .text = "arg" #i " == " what }
#define POL_ALLOW(sys, reason) { #sys, __NR_##sys, { { 0 } }, reason }
#define POL_ALLOW_IF(sys, reason, ...) { #sys, __NR_##sys, { __VA_ARGS__ }, reason }

/* Number of distinct syscalls the class allows (what Firecracker's counts count). */
size_t pol_nsyscalls(const struct pol_class *c);

/* Bind no fd to any slot (each gets its POL_FD_UNUSED value). */
void pol_fds_init(struct pol_fds *f);

/* Bind fd to slot; an fd < 0 or a slot out of range leaves the binding unchanged. */
void pol_fds_set(struct pol_fds *f, unsigned int slot, int fd);

/* 1 if the table allows syscall nr with args a[0..5], the slots bound as in fds, else 0. The
 * reference the patched BPF is tested against. */
int pol_allows(const struct pol_class *c, long nr, const uint64_t a[6], const struct pol_fds *fds);

/* Print the class's rules, one line per rule, with the reasons. */
void pol_print(FILE *f, const struct pol_class *c);

#endif
