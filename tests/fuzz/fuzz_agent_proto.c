/* fuzz_agent_proto.c: libFuzzer harness for the agent frame parser (common/agent_proto.c).
 * Checks the parser's contract on any bytes: it never reads past the input; an accepted frame
 * has a known type and a length within that type's cap; every strict prefix of an accepted frame
 * asks for more bytes; an accepted EXEC's counts and strings are within their caps, NUL-free, and
 * re-encode to the very same bytes; the path check agrees with a naive re-implementation.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/agent_proto.h"

static struct ka_exec X, Y;
static uint8_t out[KA_MAX_FRAME];

/* Independent reference for ka_path_check. */
static int naive_path_ok(const char *p, size_t n)
{
	size_t i, start = 0;

	if (n == 0 || n > KA_PATH_MAX || memchr(p, 0, n) || p[0] == '/')
		return 0;
	for (i = 0; i <= n; i++) {
		if (i < n && p[i] != '/')
			continue;
		if (i == start || (i - start == 1 && p[start] == '.') ||
		    (i - start == 2 && p[start] == '.' && p[start + 1] == '.'))
			return 0;
		start = i + 1;
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exact-size heap copy so ASan catches any read past the end. */
	uint8_t *b = malloc(size ? size : 1);
	long r;

	if (!b)
		return 0;
	memcpy(b, data, size);
	r = ka_frame_check(b, size, &X);
	if (r > 0) {
		struct ka_hdr h;
		if (ka_hdr_decode(b, size, &h) != 0 || (size_t)r != KA_HDR_SIZE + h.len ||
		    h.len > ka_type_max_len(h.type) || h.len > KA_MAX_PAYLOAD || !ka_type_known(h.type))
			abort();
		for (size_t k = KA_HDR_SIZE; k < (size_t)r; k += 1 + k / 4)
			if (ka_frame_check(b, k, &Y) != -EAGAIN)
				abort();
		if (h.type == KA_EXEC) {
			struct ka_enc e;
			long n;

			if (X.argc < 1 || X.argc > KA_ARGC_MAX || X.envc > KA_ENVC_MAX ||
			    X.nrlimits > KA_RLIMITS_MAX || X.argv[0].len == 0)
				abort();
			for (uint32_t i = 0; i < X.argc; i++)
				if (X.argv[i].len > KA_ARG_MAX || memchr(X.argv[i].p, 0, X.argv[i].len))
					abort();
			for (uint32_t i = 0; i < X.envc; i++)
				if (!memchr(X.env[i].p, '=', X.env[i].len) || X.env[i].p[0] == '=')
					abort();
			ka_enc_init(&e, out, sizeof(out));
			n = ka_enc_exec(&e, &X);
			if (n != r || memcmp(out, b, (size_t)r) != 0)
				abort();
		}
	} else if (r != -EAGAIN && r != KA_EBADMAGIC && r != KA_EVERSION && r != KA_ETYPE &&
		   r != KA_ETOOLONG && r != KA_ETRUNC && r != KA_ETRAIL && r != KA_ECOUNT &&
		   r != KA_EVALUE && r != KA_ENUL) {
		abort();
	}
	if ((ka_path_check((const char *)b, size, NULL) == 0) != naive_path_ok((const char *)b, size))
		abort();
	free(b);
	return 0;
}
