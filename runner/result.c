/* result.c: decide how a `kiln run` ended from host observations, and format the JSON record. */
#include "result.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "exitcodes.h"

/* kiln-vmm exit statuses that mean the guest itself ended badly. */
#define VMM_GUEST_RESET 4
#define VMM_GUEST_FAULT 6

static const char *const names[RR_COUNT] = {
	[RR_OK] = "ok",
	[RR_NONZERO_EXIT] = "nonzero-exit",
	[RR_SIGNALED] = "signaled",
	[RR_TIMEOUT] = "timeout",
	[RR_CPU_TIME] = "cpu-time",
	[RR_GUEST_OOM] = "guest-oom",
	[RR_OUTPUT_LIMIT] = "output-limit",
	[RR_DISK_FULL] = "disk-full",
	[RR_GUEST_PANIC] = "guest-panic",
	[RR_VMM_SECCOMP] = "vmm-seccomp",
	[RR_VMM_CRASH] = "vmm-crash",
	[RR_AGENT_PROTOCOL] = "agent-protocol-error",
	[RR_SETUP_ERROR] = "setup-error",
	[RR_INTERRUPTED] = "interrupted",
};

const char *run_reason_name(enum run_reason r)
{
	return (unsigned)r < RR_COUNT ? names[r] : "?";
}

static void set(struct run_result *o, enum run_reason r, int status)
{
	o->reason = r;
	o->exit_status = status;
}

void run_decide(const struct run_facts *f, struct run_result *o)
{
	bool vmm_sig = f->vmm_ended && f->vmm_signaled && !f->killed_by_us;

	o->status = "none";
	o->exit_code = -1;
	o->signal = -1;
	if (f->got_exit && f->exit.kind == KA_EXITED) {
		o->status = "exited";
		o->exit_code = (int)(f->exit.code & 0xff);
	} else if (f->got_exit) {
		o->status = "signaled";
		o->signal = (int)f->exit.code;
	}

	if (f->setup_failed)
		return set(o, RR_SETUP_ERROR, KILN_RUN_EXIT_SETUP);
	if (f->interrupted)
		return set(o, RR_INTERRUPTED, 128 + f->interrupt_sig);
	if (vmm_sig && f->vmm_code == SIGSYS)
		return set(o, RR_VMM_SECCOMP, KILN_RUN_EXIT_SANDBOX);
	if (vmm_sig)
		return set(o, RR_VMM_CRASH, KILN_RUN_EXIT_SANDBOX);
	if (f->proto_error)
		return set(o, RR_AGENT_PROTOCOL, KILN_RUN_EXIT_SANDBOX);
	if (f->output_limit)
		return set(o, RR_OUTPUT_LIMIT, KILN_RUN_EXIT_OUTPUT);
	if (f->timed_out)
		return set(o, RR_TIMEOUT, KILN_RUN_EXIT_TIMEOUT);

	if (f->got_exit) {
		if (f->exit.kind == KA_SIGNALED) {
			int sig = o->signal;
			uint64_t used, lim_us = f->cpu_limit_ms * 1000, floor_us = lim_us / 10 * 9;

			/* The agent's usage figures are its word: any u64, so the sum saturates. */
			if (!add_u64(f->exit.user_us, f->exit.sys_us, &used))
				used = UINT64_MAX;

			/* The agent's OOM flag, confirmed by two things the host saw: the guest
			 * kernel's OOM-kill line and guest memory really used. */
			if (sig == SIGKILL && (f->exit.flags & KA_EXIT_F_OOM) && f->console_oom &&
			    f->mem_bytes && f->vmm_peak_bytes / RUN_OOM_PEAK_PERCENT >= f->mem_bytes / 100)
				return set(o, RR_GUEST_OOM, 128 + sig);
			/* The agent's word (signal, usage) must agree with what the host saw spent. The
			 * kernel sends SIGXCPU on precise runtime while rusage is tick-sampled and can
			 * read a little under the limit (1989 ms at a 2 s limit, seen): allow 10 %. */
			if (f->cpu_limit_ms && (sig == SIGXCPU || sig == SIGKILL) && used >= floor_us &&
			    f->vmm_cpu_us >= floor_us)
				return set(o, RR_CPU_TIME, 128 + sig);
			return set(o, RR_SIGNALED, 128 + sig);
		}
		if (o->exit_code == 0)
			return set(o, RR_OK, 0);
		if (f->disk_full)
			return set(o, RR_DISK_FULL, o->exit_code);
		return set(o, RR_NONZERO_EXIT, o->exit_code);
	}

	/* No EXIT: what the VMM's end says. */
	if (!f->vmm_ended)
		return set(o, RR_AGENT_PROTOCOL, KILN_RUN_EXIT_SANDBOX);
	if (f->vmm_signaled) /* killed by us without any reason above: treat as a crash */
		return set(o, RR_VMM_CRASH, KILN_RUN_EXIT_SANDBOX);
	if (f->vmm_code == VMM_GUEST_RESET || f->vmm_code == VMM_GUEST_FAULT)
		return set(o, RR_GUEST_PANIC, KILN_RUN_EXIT_SANDBOX);
	if (f->vmm_code == KILN_EXIT_USAGE || f->vmm_code == KILN_EXIT_BAD_IMAGE ||
	    f->vmm_code == KILN_EXIT_JAIL || !f->got_hello)
		return set(o, RR_SETUP_ERROR, KILN_RUN_EXIT_SETUP);
	if (f->vmm_code == KILN_EXIT_VMM_ERROR)
		return set(o, RR_VMM_CRASH, KILN_RUN_EXIT_SANDBOX);
	/* The agent answered, then the VM ended without EXIT. */
	return set(o, RR_AGENT_PROTOCOL, KILN_RUN_EXIT_SANDBOX);
}

/* The kernel's line (mm/oom_kill.c, pr_err; shown under "quiet"). Its first byte occurs nowhere
 * else in it, so after a mismatch a match can only restart at the current byte. */
static const char oom_line[] = "Out of memory: Killed process";

void con_watch_feed(struct con_watch *w, const char *p, size_t n)
{
	for (size_t i = 0; i < n && !w->oom; i++) {
		if (p[i] == oom_line[w->matched])
			w->matched++;
		else
			w->matched = p[i] == oom_line[0] ? 1 : 0;
		if (w->matched == sizeof(oom_line) - 1)
			w->oom = true;
	}
}

size_t con_clean(char *dst, const char *src, size_t n)
{
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];

		if (c == '\r' && i + 1 < n && src[i + 1] == '\n')
			continue;
		dst[m++] = (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f ? '?' : (char)c;
	}
	return m;
}

struct jbuf {
	char *p;
	size_t cap, len;
	bool bad;
};

static void jputf(struct jbuf *j, const char *fmt, ...) KILN_PRINTF(2, 3);
static void jputf(struct jbuf *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (j->bad)
		return;
	va_start(ap, fmt);
	n = vsnprintf(j->p + j->len, j->cap - j->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= j->cap - j->len) {
		j->bad = true;
		return;
	}
	j->len += (size_t)n;
}

/* A JSON string of s: always valid UTF-8 (RFC 8259), whatever s holds; the message can carry a
 * hostile agent's text. Each ill-formed UTF-8 subpart becomes one U+FFFD. */
static void jstr(struct jbuf *j, const char *s)
{
	const unsigned char *u = (const unsigned char *)(s ? s : "");
	size_t n = strlen((const char *)u), len;
	bool valid;

	jputf(j, "\"");
	for (size_t i = 0; i < n; i += len) {
		unsigned char c = u[i];

		len = kiln_utf8_seq(u + i, n - i, &valid);
		if (!valid)
			jputf(j, "\\ufffd");
		else if (len > 1)
			jputf(j, "%.*s", (int)len, (const char *)u + i);
		else if (c == '"' || c == '\\')
			jputf(j, "\\%c", c);
		else if (c == '\n')
			jputf(j, "\\n");
		else if (c < 0x20 || c == 0x7f)
			jputf(j, "\\u%04x", c);
		else
			jputf(j, "%c", c);
	}
	jputf(j, "\"");
}

static unsigned long long ms(uint64_t us)
{
	return (unsigned long long)(us / 1000);
}

long run_record_json(const struct run_record *rec, char *buf, size_t cap)
{
	struct jbuf j = { buf, cap, 0, cap == 0 };
	const struct run_result *r = &rec->r;

	jputf(&j, "{\"id\":");
	jstr(&j, rec->id ? rec->id : "");
	jputf(&j, ",\"reason\":");
	jstr(&j, run_reason_name(r->reason));
	jputf(&j, ",\"status\":");
	jstr(&j, r->status ? r->status : "none");
	if (r->exit_code >= 0)
		jputf(&j, ",\"exit_code\":%d", r->exit_code);
	else
		jputf(&j, ",\"exit_code\":null");
	if (r->signal >= 0)
		jputf(&j, ",\"signal\":%d", r->signal);
	else
		jputf(&j, ",\"signal\":null");
	jputf(&j, ",\"kiln_exit\":%d,\"message\":", r->exit_status);
	jstr(&j, rec->message ? rec->message : "");
	jputf(&j, ",\"stdout_bytes\":%llu,\"stderr_bytes\":%llu,"
		  "\"stdout_truncated\":%s,\"stderr_truncated\":%s,\"undelivered_bytes\":%llu,"
		  "\"oom\":%s,\"pids_limit_hit\":%s",
	      (unsigned long long)rec->stdout_bytes, (unsigned long long)rec->stderr_bytes,
	      rec->stdout_truncated ? "true" : "false", rec->stderr_truncated ? "true" : "false",
	      (unsigned long long)rec->undelivered_bytes, rec->oom ? "true" : "false",
	      rec->pids_limit_hit ? "true" : "false");
	jputf(&j, ",\"usage\":{\"cpu_user_ms\":%llu,\"cpu_sys_ms\":%llu,\"peak_rss_kb\":%llu,"
		  "\"vmm_cpu_ms\":%llu,\"vmm_peak_kb\":%llu}",
	      ms(rec->cpu_user_us), ms(rec->cpu_sys_us), (unsigned long long)rec->peak_rss_kb,
	      ms(rec->vmm_cpu_us), (unsigned long long)(rec->vmm_peak_bytes / 1024));
	jputf(&j, ",\"timings_ms\":{\"jail\":%llu,\"boot\":%llu,\"run\":%llu,\"teardown\":%llu,"
		  "\"total\":%llu}}\n",
	      ms(rec->t_jail_us), ms(rec->t_boot_us), ms(rec->t_run_us), ms(rec->t_teardown_us),
	      ms(rec->t_total_us));
	if (j.bad)
		return -ENOSPC;
	return (long)j.len;
}
