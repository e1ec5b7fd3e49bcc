/* policy.c: the thread-class table and helpers shared by the generator, kiln-vmm and the tests. */
#include "policy.h"

const struct pol_class *const pol_classes[POL_CLASS_N] = {
	[POL_CLASS_LOOP] = &pol_loop,
	[POL_CLASS_VCPU] = &pol_vcpu,
};

size_t pol_nsyscalls(const struct pol_class *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->nrules; i++) {
		size_t j = 0;
		while (j < i && c->rules[j].nr != c->rules[i].nr)
			j++;
		n += j == i;
	}
	return n;
}

void pol_fds_init(struct pol_fds *f)
{
	for (unsigned int s = 0; s < POL_FD_SLOTS; s++)
		f->v[s] = POL_FD_UNUSED(s);
}

void pol_fds_set(struct pol_fds *f, unsigned int slot, int fd)
{
	if (fd >= 0 && slot < POL_FD_SLOTS)
		f->v[slot] = (uint32_t)fd;
}

static int cmp_holds(const struct pol_cmp *m, uint64_t arg, const struct pol_fds *fds)
{
	if (m->op != POL_FD)
		return (arg & m->mask) == m->val;
	for (unsigned int s = m->slot; s < (unsigned int)m->slot + m->nslots && s < POL_FD_SLOTS; s++)
		if ((arg & 0xffffffffULL) == fds->v[s])
			return 1;
	return 0;
}

static int rule_matches(const struct pol_rule *r, const uint64_t a[6], const struct pol_fds *fds)
{
	for (unsigned int k = 0; k < POL_MAX_CMP && r->cmp[k].op != POL_NONE; k++)
		if (!cmp_holds(&r->cmp[k], a[r->cmp[k].arg], fds))
			return 0;
	return 1;
}

int pol_allows(const struct pol_class *c, long nr, const uint64_t a[6], const struct pol_fds *fds)
{
	for (size_t i = 0; i < c->nrules; i++)
		if (c->rules[i].nr == nr && rule_matches(&c->rules[i], a, fds))
			return 1;
	return 0;
}

void pol_print(FILE *f, const struct pol_class *c)
{
	fprintf(f, "class %s (%s): %zu syscalls, %zu rules, default: kill the process\n", c->name,
		c->about, pol_nsyscalls(c), c->nrules);
	for (size_t i = 0; i < c->nrules; i++) {
		const struct pol_rule *r = &c->rules[i];
		char args[160] = "any arguments";
		size_t used = 0;
		for (unsigned int k = 0; k < POL_MAX_CMP && r->cmp[k].op != POL_NONE; k++) {
			int n = snprintf(args + used, sizeof(args) - used, "%s%s", k ? " && " : "", r->cmp[k].text);
			if (n < 0 || (size_t)n >= sizeof(args) - used)
				break;
			used += (size_t)n;
		}
		fprintf(f, "  %-16s %-58s # %s\n", r->name, args, r->why);
	}
}
