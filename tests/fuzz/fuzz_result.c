/*
 * fuzz_result.c: libFuzzer harness for what `kiln run` makes of the guest's words: the console
 * watch for the kernel's OOM-kill line (console bytes in chunks of any size) and the console tail
 * as kiln prints it, the decision of a run's reason from an agent's EXIT frame and the host's
 * observations, and the JSON record whose message can carry a hostile agent's text.
 * build: make build/fuzz/fuzz_result
 *
 * Input: byte 0 picks the part (mod 3); the rest is that part's input (see each part).
 */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_proto.h"
#include "exitcodes.h"
#include "runner/result.h"
#include "tests/fuzz/fuzz_check.h"

/* Part 0: byte k gives chunk k's size (1..16); then the console bytes. Same verdict as memmem. */
static void part_console(const uint8_t *d, size_t n)
{
	static const char line[] = "Out of memory: Killed process";
	struct con_watch w = { 0 };
	size_t nsz = n ? d[0] % 8 + 1 : 0, off;

	if (n < nsz)
		return;
	const uint8_t *sz = d + 1, *s = d + nsz;
	size_t len = n - nsz;
	off = 0;
	for (size_t k = 0; off < len; k++) {
		size_t c = k + 1 < nsz ? sz[k] % 16 + 1 : len - off;
		if (c > len - off)
			c = len - off;
		char *chunk = malloc(c); /* exact size: ASan sees a read past it */
		CHECK(chunk);
		memcpy(chunk, s + off, c);
		con_watch_feed(&w, chunk, c);
		free(chunk);
		off += c;
		CHECK(w.matched <= sizeof(line) - 1);
	}
	CHECK(w.oom == (memmem(s, len, line, sizeof(line) - 1) != NULL));

	/* the same bytes as kiln prints them: only '\n' and '\t' of the control bytes, one byte
	 * out per byte in except the '\r' of each "\r\n" */
	char *in = malloc(len ? len : 1), *out = malloc(len ? len : 1);
	CHECK(in && out);
	memcpy(in, s, len);
	size_t m = con_clean(out, in, len), crlf = 0;
	for (size_t i = 0; i + 1 < len; i++)
		crlf += in[i] == '\r' && in[i + 1] == '\n';
	CHECK(m == len - crlf);
	for (size_t i = 0; i < m; i++) {
		unsigned char c = (unsigned char)out[i];
		CHECK(c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f));
	}
	free(in);
	free(out);
}

/* Part 1: 40 bytes of an EXIT payload, then the host's facts. */
static void part_decide(const uint8_t *d, size_t n)
{
	struct run_facts f = { 0 };
	struct run_result r;
	uint8_t b[16] = { 0 };

	if (n < 40)
		return;
	f.got_exit = ka_exit_decode(d, 40, &f.exit) == 0;
	memcpy(b, d + 40, n - 40 < sizeof(b) ? n - 40 : sizeof(b));
	f.setup_failed = b[0] & 1;
	f.interrupted = b[0] & 2;
	f.got_hello = b[0] & 4;
	f.proto_error = b[0] & 8;
	f.output_limit = b[0] & 16;
	f.timed_out = b[0] & 32;
	f.vmm_ended = b[0] & 64;
	f.vmm_signaled = b[0] & 128;
	f.killed_by_us = b[1] & 1;
	f.disk_full = b[1] & 2;
	f.console_oom = b[1] & 4;
	f.interrupt_sig = (int[]){ SIGINT, SIGTERM, SIGHUP, SIGQUIT }[b[1] >> 6];
	f.vmm_code = b[2] % 70;
	f.cpu_limit_ms = (uint64_t)(b[3] % 5) * 1000;
	f.vmm_cpu_us = (uint64_t)b[4] << (b[5] % 40);
	f.vmm_peak_bytes = (uint64_t)b[6] << (b[7] % 40);
	f.mem_bytes = (uint64_t)b[8] << 20;
	run_decide(&f, &r);

	CHECK((unsigned)r.reason < RR_COUNT && strcmp(run_reason_name(r.reason), "?") != 0);
	CHECK(r.exit_status >= 0 && r.exit_status <= 255);
	if (f.got_exit && f.exit.kind == KA_EXITED)
		CHECK(strcmp(r.status, "exited") == 0 && r.exit_code == (int)f.exit.code && r.signal == -1);
	else if (f.got_exit)
		CHECK(strcmp(r.status, "signaled") == 0 && r.signal >= 1 && r.signal <= 64 && r.exit_code == -1);
	else
		CHECK(strcmp(r.status, "none") == 0 && r.exit_code == -1 && r.signal == -1);
	switch (r.reason) {
	case RR_OK: CHECK(r.exit_status == 0 && r.exit_code == 0); break;
	case RR_NONZERO_EXIT:
	case RR_DISK_FULL: CHECK(r.exit_code > 0 && r.exit_status == r.exit_code); break;
	case RR_SIGNALED: CHECK(r.exit_status == 128 + r.signal); break;
	case RR_CPU_TIME:
		CHECK(r.exit_status == 128 + r.signal && f.cpu_limit_ms &&
		      f.vmm_cpu_us >= f.cpu_limit_ms * 900);
		break;
	case RR_GUEST_OOM:
		CHECK(r.signal == SIGKILL && r.exit_status == 128 + SIGKILL && f.console_oom &&
		      (f.exit.flags & KA_EXIT_F_OOM));
		break;
	case RR_TIMEOUT: CHECK(r.exit_status == KILN_RUN_EXIT_TIMEOUT && f.timed_out); break;
	case RR_OUTPUT_LIMIT: CHECK(r.exit_status == KILN_RUN_EXIT_OUTPUT && f.output_limit); break;
	case RR_SETUP_ERROR: CHECK(r.exit_status == KILN_RUN_EXIT_SETUP); break;
	case RR_INTERRUPTED: CHECK(f.interrupted && r.exit_status == 128 + f.interrupt_sig); break;
	default: CHECK(r.exit_status == KILN_RUN_EXIT_SANDBOX); break;
	}
	/* a signal at --cpu-time that the host saw spent and the agent's usage (summed without
	 * wrapping) backs is cpu-time, unless the OOM evidence came first */
	unsigned __int128 used = (unsigned __int128)f.exit.user_us + f.exit.sys_us;
	if (r.reason == RR_SIGNALED && f.cpu_limit_ms && (r.signal == SIGXCPU || r.signal == SIGKILL))
		CHECK(!(used * 10 >= (unsigned __int128)f.cpu_limit_ms * 9000 &&
			f.vmm_cpu_us >= f.cpu_limit_ms * 900));
	/* the host's view wins over anything the agent said */
	if (f.setup_failed)
		CHECK(r.reason == RR_SETUP_ERROR);
	else if (!f.interrupted && f.vmm_ended && f.vmm_signaled && !f.killed_by_us)
		CHECK(r.reason == (f.vmm_code == SIGSYS ? RR_VMM_SECCOMP : RR_VMM_CRASH));
}

/* ---- part 2: the record ---- */

/* An independent reading of UTF-8: code points from the bits, then the limits. */
static int lead_len(uint8_t c)
{
	return c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
}

/* Can the first k bytes of s (lead and continuation bits already checked) still become a
 * well-formed sequence of length L? The code points its completions reach form an interval. */
static bool completable(const uint8_t *s, int k, int L)
{
	static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	uint32_t lo = s[0] & (0x7f >> L), hi;

	for (int i = 1; i < k; i++)
		lo = lo << 6 | (s[i] & 0x3f);
	hi = lo;
	for (int i = k; i < L; i++) {
		lo = lo << 6;
		hi = hi << 6 | 0x3f;
	}
	if (L == 1)
		return true;
	if (hi < min[L] || lo > 0x10ffff)
		return false;
	if (lo < min[L])
		lo = min[L];
	if (hi > 0x10ffff)
		hi = 0x10ffff;
	return !(lo >= 0xd800 && hi <= 0xdfff);
}

/* Decode s the way Python's errors="replace" does; returns the number of code points. */
static size_t ref_decode(const uint8_t *s, size_t n, uint32_t *out)
{
	size_t m = 0;

	for (size_t i = 0; i < n;) {
		int L = lead_len(s[i]), k = 0;
		if (L && completable(s + i, 1, L))
			for (k = 1; k < L && i + k < n && (s[i + k] & 0xc0) == 0x80 && completable(s + i, k + 1, L);)
				k++;
		if (L && k == L) {
			uint32_t cp = s[i] & (0x7f >> L);
			for (int j = 1; j < L; j++)
				cp = cp << 6 | (s[i + j] & 0x3f);
			out[m++] = L == 1 ? s[i] : cp;
			i += (size_t)L;
		} else {
			out[m++] = 0xfffd;
			i += k ? (size_t)k : 1;
		}
	}
	return m;
}

/* A small JSON reader: the whole record must be one object; the "message" string is decoded. */
struct jr {
	const char *p, *end;
	uint32_t *msg;
	size_t nmsg;
	bool in_msg;
};

static void ws(struct jr *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t'))
		j->p++;
}

static bool jstring(struct jr *j, uint32_t *cps, size_t *ncp)
{
	size_t m = 0;

	if (j->p >= j->end || *j->p++ != '"')
		return false;
	while (j->p < j->end && *j->p != '"') {
		uint8_t c = (uint8_t)*j->p;
		uint32_t cp;
		if (c < 0x20)
			return false;
		if (c == '\\') {
			if (j->end - j->p < 2)
				return false;
			char e = j->p[1];
			j->p += 2;
			if (e == 'u') {
				if (j->end - j->p < 4)
					return false;
				char hex[5] = { j->p[0], j->p[1], j->p[2], j->p[3], 0 };
				char *x;
				cp = (uint32_t)strtoul(hex, &x, 16);
				if (x != hex + 4)
					return false;
				j->p += 4;
			} else if (e == 'n') {
				cp = '\n';
			} else if (e == '"' || e == '\\' || e == '/') {
				cp = (uint32_t)e;
			} else {
				return false;
			}
		} else {
			uint32_t one[4];
			int L = lead_len(c);
			/* raw bytes must be well-formed UTF-8: one code point, and a U+FFFD only as itself */
			if (!L || j->end - j->p < L || ref_decode((const uint8_t *)j->p, (size_t)L, one) != 1 ||
			    (one[0] == 0xfffd && (L != 3 || memcmp(j->p, "\xef\xbf\xbd", 3) != 0)))
				return false;
			cp = one[0];
			j->p += L;
		}
		if (cps)
			cps[m++] = cp;
	}
	if (j->p >= j->end)
		return false;
	j->p++;
	if (ncp)
		*ncp = m;
	return true;
}

static bool jvalue(struct jr *j, int depth);

static bool jobject(struct jr *j, int depth)
{
	if (depth > 4 || j->p >= j->end || *j->p++ != '{')
		return false;
	ws(j);
	if (j->p < j->end && *j->p == '}')
		return j->p++, true;
	for (;;) {
		const char *key = j->p;
		ws(j);
		if (!jstring(j, NULL, NULL))
			return false;
		j->in_msg = depth == 0 && j->p - key == 9 && memcmp(key, "\"message\"", 9) == 0;
		ws(j);
		if (j->p >= j->end || *j->p++ != ':')
			return false;
		ws(j);
		if (!jvalue(j, depth + 1))
			return false;
		ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		return j->p < j->end && *j->p++ == '}';
	}
}

static bool jvalue(struct jr *j, int depth)
{
	if (j->p >= j->end)
		return false;
	if (*j->p == '{')
		return jobject(j, depth);
	if (*j->p == '"') {
		bool m = j->in_msg;
		j->in_msg = false;
		return jstring(j, m ? j->msg : NULL, m ? &j->nmsg : NULL);
	}
	for (const char *const *w = (const char *const[]){ "true", "false", "null", NULL }; *w; w++)
		if ((size_t)(j->end - j->p) >= strlen(*w) && memcmp(j->p, *w, strlen(*w)) == 0)
			return j->p += strlen(*w), true;
	const char *s = j->p;
	if (j->p < j->end && *j->p == '-')
		j->p++;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > s && s[0] != '-' ? (j->p - s == 1 || s[0] != '0') : false;
}

/* Part 2: byte 0 the buffer size for a second, small render; the rest is the message. */
static void part_record(const uint8_t *d, size_t n)
{
	static char buf[16384], small[256];
	static uint32_t got[4096], want[4096];
	struct run_record rec = { 0 };

	if (n < 1 || n > 2048)
		return;
	char *msg = malloc(n);
	CHECK(msg);
	memcpy(msg, d + 1, n - 1);
	msg[n - 1] = '\0';
	rec.id = "k0123456789abcdef";
	rec.message = msg;
	rec.r.reason = RR_AGENT_PROTOCOL;
	rec.r.status = "signaled";
	rec.r.signal = 9;
	rec.r.exit_code = -1;
	rec.r.exit_status = KILN_RUN_EXIT_SANDBOX;
	rec.stdout_bytes = UINT64_MAX;
	rec.t_total_us = UINT64_MAX;
	long len = run_record_json(&rec, buf, sizeof(buf));
	CHECK(len > 0 && (size_t)len == strlen(buf) && buf[len - 1] == '\n');
	CHECK(memchr(buf, '\n', (size_t)len - 1) == NULL);

	struct jr j = { buf, buf + len - 1, got, 0, false };
	CHECK(jobject(&j, 0) && j.p == j.end);
	size_t nwant = ref_decode((const uint8_t *)msg, strlen(msg), want);
	CHECK(j.nmsg == nwant && memcmp(got, want, nwant * sizeof(uint32_t)) == 0);

	/* a buffer too small gives -ENOSPC, never a cut record */
	size_t cap = d[0];
	long r = run_record_json(&rec, small, cap);
	CHECK(cap > (size_t)len ? r == len : r == -ENOSPC);
	free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0: part_console(data + 1, size - 1); break;
	case 1: part_decide(data + 1, size - 1); break;
	default: part_record(data + 1, size - 1); break;
	}
	return 0;
}
