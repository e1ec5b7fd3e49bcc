/* gen.c: build-time generator: compiles the policy tables with libseccomp into C arrays of BPF. */
#include "policy.h"

#include <errno.h>
#include <linux/filter.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/seccomp_bpf.h"

/*
 * usage: gen OUT.c
 * Writes one `struct sock_filter` array per thread class, exported by seccomp_export_bpf: the
 * architecture check first (anything but x86_64, and x32 numbers, kill the process), then the
 * allow rules; the default action kills the process. A comparison with fd slots (POL_FD) is
 * compiled as one alternative per slot, comparing with the slot's placeholder constant; gen then
 * finds every placeholder in the exported program and writes their positions beside it, for
 * kiln-vmm to patch in the real fds (vmm/seccomp.c). kiln-vmm embeds the result and never links
 * libseccomp. Exits non-zero (and writes nothing usable) on any error.
 */

static void die(const char *what, int err)
{
	fprintf(stderr, "policy/gen: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static void fail(const struct pol_class *c, size_t i, const char *why)
{
	fprintf(stderr, "policy/gen: class %s, rule %zu (%s): %s\n", c->name, i, c->rules[i].name, why);
	exit(1);
}

static int in_ph_range(uint64_t v)
{
	return v - POL_FD_PH_BASE < POL_FD_PH_SPAN;
}

/*
 * The table checks placeholder patching relies on: every fd comparison names valid slots and
 * compares 32 bits; no other constant falls in the placeholder range (so each placeholder found
 * in the program comes from a slot); and an argument compared with fd slots is compared with
 * nothing else in that syscall's rules (so binding distinct values keeps the program's meaning
 * whatever tree libseccomp builds). Returns the set of slots the class uses.
 */
static uint32_t check_table(const struct pol_class *c)
{
	uint32_t used = 0;
	for (size_t i = 0; i < c->nrules; i++) {
		const struct pol_rule *r = &c->rules[i];
		if (in_ph_range((uint64_t)r->nr))
			fail(c, i, "syscall number in the fd placeholder range");
		for (unsigned int k = 0; k < POL_MAX_CMP && r->cmp[k].op != POL_NONE; k++) {
			const struct pol_cmp *m = &r->cmp[k];
			if (m->arg > 5)
				fail(c, i, "argument index above 5");
			if (m->op == POL_FD) {
				if (m->nslots == 0 || m->slot + m->nslots > POL_FD_SLOTS || m->mask != 0xffffffffULL)
					fail(c, i, "fd comparison with bad slots or not on 32 bits");
				for (unsigned int s = m->slot; s < (unsigned int)m->slot + m->nslots; s++)
					used |= 1u << s;
			} else if (in_ph_range(m->val & 0xffffffff) || in_ph_range(m->val >> 32) ||
				   in_ph_range(m->mask & 0xffffffff) || in_ph_range(m->mask >> 32)) {
				fail(c, i, "constant in the fd placeholder range");
			}
			for (size_t j = 0; j < c->nrules; j++) {
				const struct pol_rule *o = &c->rules[j];
				for (unsigned int l = 0; o->nr == r->nr && l < POL_MAX_CMP && o->cmp[l].op != POL_NONE; l++)
					if (o->cmp[l].arg == m->arg && (o->cmp[l].op == POL_FD) != (m->op == POL_FD))
						fail(c, i, "an argument compared with fd slots and with constants");
			}
		}
	}
	_Static_assert(POL_FD_SLOTS <= 32, "slot set is a uint32_t");
	return used;
}

/* Add rule r with one libseccomp rule per combination of its fd comparisons' slots. */
static void add_rule(scmp_filter_ctx ctx, const struct pol_class *c, size_t i, int nr)
{
	const struct pol_rule *r = &c->rules[i];
	unsigned int n = 0, pick[POL_MAX_CMP] = { 0 };
	while (n < POL_MAX_CMP && r->cmp[n].op != POL_NONE)
		n++;
	for (;;) {
		struct scmp_arg_cmp cmp[POL_MAX_CMP];
		for (unsigned int k = 0; k < n; k++) {
			const struct pol_cmp *m = &r->cmp[k];
			uint64_t val = m->op == POL_FD ? POL_FD_PLACEHOLDER(m->slot + pick[k]) : m->val;
			cmp[k] = (struct scmp_arg_cmp){ .arg = m->arg, .op = SCMP_CMP_MASKED_EQ,
							.datum_a = m->mask, .datum_b = val };
		}
		int e = seccomp_rule_add_exact_array(ctx, SCMP_ACT_ALLOW, nr, n, cmp);
		if (e < 0)
			fail(c, i, strerror(-e));
		/* next combination: the last fd comparison varies fastest */
		unsigned int k = n;
		while (k > 0) {
			k--;
			if (r->cmp[k].op == POL_FD && ++pick[k] < r->cmp[k].nslots)
				break;
			pick[k] = 0;
			if (k == 0)
				return;
		}
		if (n == 0)
			return;
	}
}

/* The class's BPF program into *len instructions at the returned malloc'd buffer. */
static struct sock_filter *compile(const struct pol_class *c, size_t *len)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	int r;

	if (!ctx)
		die("seccomp_init", ENOMEM);
	/* A non-native architecture (i386 int 0x80) or an x32 number: kill, like any other miss. */
	if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0)
		die("SCMP_FLTATR_ACT_BADARCH", r);
	/* kiln-vmm sets NO_NEW_PRIVS itself before loading the program. */
	if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0)
		die("SCMP_FLTATR_CTL_NNP", r);
	if ((r = seccomp_arch_exist(ctx, SCMP_ARCH_X86_64)) < 0)
		die("the native architecture of this build is not x86_64", r);
	for (size_t i = 0; i < c->nrules; i++) {
		const struct pol_rule *rule = &c->rules[i];
		int nr = seccomp_syscall_resolve_name(rule->name);
		if (nr != rule->nr) {
			fprintf(stderr, "policy/gen: %s: libseccomp says %d, the table says %ld\n", rule->name,
				nr, rule->nr);
			exit(1);
		}
		add_rule(ctx, c, i, nr);
	}
	FILE *tmp = tmpfile();
	if (!tmp)
		die("tmpfile", errno);
	if ((r = seccomp_export_bpf(ctx, fileno(tmp))) < 0)
		die("seccomp_export_bpf", r);
	seccomp_release(ctx);
	long size = fseek(tmp, 0, SEEK_END) == 0 ? ftell(tmp) : -1;
	if (size <= 0 || size % (long)sizeof(struct sock_filter) != 0 ||
	    size > KILN_BPF_MAX_INSNS * (long)sizeof(struct sock_filter))
		die("exported BPF has a bad size (or more than KILN_BPF_MAX_INSNS instructions)", EINVAL);
	struct sock_filter *prog = malloc((size_t)size);
	rewind(tmp);
	if (!prog || fread(prog, 1, (size_t)size, tmp) != (size_t)size)
		die("reading the exported BPF back", EIO);
	fclose(tmp);
	*len = (size_t)size / sizeof(struct sock_filter);
	return prog;
}

/*
 * Find every fd placeholder in prog: each must be the constant of a `jeq` (never a load offset,
 * a mask or a return value), and every slot the class uses must appear. Returns the count and
 * fills at[] (room for len entries).
 */
static size_t find_placeholders(const struct pol_class *c, uint32_t used, const struct sock_filter *prog,
				size_t len, struct kiln_bpf_fd *at)
{
	uint32_t seen = 0;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (!in_ph_range(prog[i].k))
			continue;
		uint32_t s = prog[i].k - POL_FD_PH_BASE;
		if (prog[i].code != (BPF_JMP | BPF_JEQ | BPF_K) || s >= POL_FD_SLOTS || !(used & (1u << s))) {
			fprintf(stderr, "policy/gen: class %s: instruction %zu (code 0x%04x, k 0x%08x) holds an "
				"fd placeholder where it cannot be patched\n", c->name, i, prog[i].code, prog[i].k);
			exit(1);
		}
		at[n++] = (struct kiln_bpf_fd){ .insn = (unsigned short)i, .slot = (unsigned char)s };
		seen |= 1u << s;
	}
	if (seen != used) {
		fprintf(stderr, "policy/gen: class %s: fd slots 0x%x are used by rules but not in the program\n",
			c->name, used & ~seen);
		exit(1);
	}
	return n;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen OUT.c\n");
		return 2;
	}
	char tmpname[4096];
	snprintf(tmpname, sizeof(tmpname), "%s.tmp", argv[1]);
	FILE *out = fopen(tmpname, "w");
	if (!out)
		die(tmpname, errno);
	fprintf(out, "/* Generated by policy/gen from the tables in policy/ with libseccomp. Do not edit. */\n"
		     "#include <stddef.h>\n\n#include \"vmm/seccomp_bpf.h\"\n\n");
	size_t lens[POL_CLASS_N], nfds[POL_CLASS_N];
	for (unsigned int c = 0; c < POL_CLASS_N; c++) {
		const struct pol_class *pc = pol_classes[c];
		uint32_t used = check_table(pc);
		struct sock_filter *prog = compile(pc, &lens[c]);
		struct kiln_bpf_fd *at = malloc(lens[c] * sizeof(*at));
		if (!at)
			die("malloc", ENOMEM);
		nfds[c] = find_placeholders(pc, used, prog, lens[c], at);
		fprintf(out, "static const struct sock_filter bpf_%s[%zu] = {\n", pc->name, lens[c]);
		for (size_t i = 0; i < lens[c]; i++)
			fprintf(out, "\t{ 0x%04x, %u, %u, 0x%08x },\n", prog[i].code, prog[i].jt, prog[i].jf,
				prog[i].k);
		fprintf(out, "};\n\n");
		if (nfds[c]) {
			fprintf(out, "/* fd placeholders of bpf_%s: { instruction, slot } */\n", pc->name);
			fprintf(out, "static const struct kiln_bpf_fd fds_%s[%zu] = {\n", pc->name, nfds[c]);
			for (size_t i = 0; i < nfds[c]; i++)
				fprintf(out, "\t{ %u, %u },\n", at[i].insn, at[i].slot);
			fprintf(out, "};\n\n");
		}
		free(at);
		free(prog);
	}
	fprintf(out, "const struct kiln_bpf kiln_bpf[KILN_BPF_CLASSES] = {\n");
	for (unsigned int c = 0; c < POL_CLASS_N; c++) {
		const char *n = pol_classes[c]->name;
		if (nfds[c])
			fprintf(out, "\t{ bpf_%s, %zu, fds_%s, %zu },\n", n, lens[c], n, nfds[c]);
		else
			fprintf(out, "\t{ bpf_%s, %zu, NULL, 0 },\n", n, lens[c]);
	}
	fprintf(out, "};\n");
	if (fclose(out) != 0 || rename(tmpname, argv[1]) != 0)
		die(argv[1], errno);
	return 0;
}
