/* result.h: how a `kiln run` ended: the reason decided from host observations, and the JSON record. */
#ifndef KILN_RUNNER_RESULT_H
#define KILN_RUNNER_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_proto.h"

enum run_reason {
	RR_OK,                  /* the command exited 0 */
	RR_NONZERO_EXIT,        /* the command exited non-zero */
	RR_SIGNALED,            /* a signal killed the command (not one of the limits below) */
	RR_TIMEOUT,             /* --timeout (wall clock) ran out; kiln killed the VM */
	RR_CPU_TIME,            /* --cpu-time ran out (SIGXCPU/SIGKILL, and the host saw the CPU used) */
	RR_GUEST_OOM,           /* the guest's OOM killer killed the command */
	RR_OUTPUT_LIMIT,        /* a stream went beyond --output-max; output cut at the cap, VM killed */
	RR_DISK_FULL,           /* the command failed with the scratch disk full */
	RR_GUEST_PANIC,         /* the guest kernel panicked / reset / faulted before reporting */
	RR_VMM_SECCOMP,         /* kiln-vmm was killed by its seccomp filter (SIGSYS) */
	RR_VMM_CRASH,           /* kiln-vmm died or failed on its own */
	RR_AGENT_PROTOCOL,      /* kiln-init sent a malformed or unexpected frame, or went silent */
	RR_SETUP_ERROR,         /* kiln could not set up or start the sandbox */
	RR_INTERRUPTED,         /* kiln got SIGINT/SIGTERM/SIGHUP and tore the run down */
	RR_COUNT
};

/* What the host observed during one run. */
struct run_facts {
	bool setup_failed;
	bool interrupted;
	int interrupt_sig;
	bool got_hello;          /* the agent answered */
	bool proto_error;        /* malformed/unexpected frame, or silence past a deadline */
	bool output_limit;
	bool timed_out;
	bool got_exit;           /* an EXIT frame arrived */
	struct ka_exit exit;
	bool vmm_ended;          /* the VMM (or the jailer around it) was reaped */
	bool vmm_signaled;       /* it died of a signal (vmm_code is the signal) */
	int vmm_code;            /* exit status or signal number */
	bool killed_by_us;       /* kiln killed it (timeout, limit, interrupt, teardown) */
	uint64_t cpu_limit_ms;   /* --cpu-time, 0 if none */
	uint64_t vmm_cpu_us;     /* CPU time the host saw the VMM use */
	bool disk_full;          /* the scratch file system had no free blocks left */
	bool console_oom;        /* the guest kernel's OOM-kill line came over the serial console */
	uint64_t vmm_peak_bytes; /* the VMM's peak resident memory (host rusage) */
	uint64_t mem_bytes;      /* the guest's memory (--mem) */
};

/* Guest-oom evidence the host sees: the VMM's peak resident memory reached this share of the
 * guest's memory (an OOM kill means the guest had allocated nearly all of it). */
#define RUN_OOM_PEAK_PERCENT 50u

/* Watches the guest's serial console for the kernel's OOM-kill line ("Out of memory: Killed
 * process"), across reads of any size. */
struct con_watch {
	uint32_t matched;        /* bytes of the line matched so far */
	bool oom;                /* the line was seen */
};

/* Feed n console bytes. Never allocates; any bytes, any split. */
void con_watch_feed(struct con_watch *w, const char *p, size_t n);

/*
 * The guest's console bytes made fit for kiln's stderr: "\r\n" becomes "\n", every other control
 * byte but '\n' and '\t', and DEL, becomes '?' (a guest cannot move the cursor, clear the screen
 * or retitle the terminal through kiln's diagnostics). dst holds at least n bytes; returns its length.
 */
size_t con_clean(char *dst, const char *src, size_t n);

struct run_result {
	enum run_reason reason;
	int exit_status;         /* kiln's own exit status */
	const char *status;      /* "exited", "signaled" or "none" (the command never reported) */
	int exit_code;           /* -1 unless status is "exited" */
	int signal;              /* -1 unless status is "signaled" */
};

/* Everything the JSON record holds beyond the decided result. */
struct run_record {
	const char *id;
	struct run_result r;
	const char *message;     /* one line, may be "" */
	bool stdout_truncated, stderr_truncated;
	uint64_t stdout_bytes, stderr_bytes;
	uint64_t undelivered_bytes;  /* output (the command's and kiln's messages) the caller did not take */
	bool oom;                /* the agent saw the guest's OOM killer act (its word alone) */
	bool pids_limit_hit;     /* the agent saw a fork of the command refused at --pids (its word) */
	uint64_t cpu_user_us, cpu_sys_us, peak_rss_kb;   /* the command, from the agent */
	uint64_t vmm_cpu_us, vmm_peak_bytes;             /* the VMM, from the host */
	uint64_t t_jail_us, t_boot_us, t_run_us, t_teardown_us, t_total_us;
};

/* "ok", "nonzero-exit", ... (the documented set); "?" outside it. */
const char *run_reason_name(enum run_reason r);

/*
 * Decide the reason and kiln's exit status. Host observations win over the agent's report:
 * a VMM killed by SIGSYS is vmm-seccomp, a VMM dying of a signal kiln did not send is vmm-crash,
 * a guest that reset without EXIT is guest-panic; cpu-time needs the host to have seen the CPU
 * time spent; guest-oom needs the command's SIGKILL and the agent's OOM flag, and the kernel's
 * OOM-kill line on the console, and the VMM's peak memory at RUN_OOM_PEAK_PERCENT of --mem. Exit status: the command's (0-255, 128+N for signal N) or one of KILN_RUN_EXIT_*.
 */
void run_decide(const struct run_facts *f, struct run_result *out);

/*
 * Write the record as one line of JSON (newline included) into buf. Returns the length, or
 * -ENOSPC when cap is too small (buf then holds nothing meaningful). Strings are escaped.
 */
long run_record_json(const struct run_record *rec, char *buf, size_t cap);

#endif
