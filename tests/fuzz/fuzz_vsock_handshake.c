/* fuzz_vsock_handshake.c: libFuzzer harness for the host-side "CONNECT <port>\n" parser and the
 * --vsock option parser. Checks the parser's contract: an accepted line ends at its first newline
 * within 32 bytes, its port round-trips through decimal, every prefix of it asks for more bytes,
 * "need more" only without a newline under 32 bytes, and the same bytes give the same answer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vsock_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	uint32_t port = 0, port2 = 0;
	int r = vsock_handshake_parse(buf, size, &port);
	const char *nl = memchr(buf, '\n', size < VSOCK_HS_LINE_MAX ? size : VSOCK_HS_LINE_MAX);
	if (r > 0) {
		if ((size_t)r > size || r > (int)VSOCK_HS_LINE_MAX || !nl || nl != buf + r - 1)
			abort();
		if (port == 0xffffffffu)
			abort();
		/* the digits in the line are the port */
		char tmp[16];
		snprintf(tmp, sizeof(tmp), "%u", port);
		if (!memmem(buf, (size_t)r, tmp, strlen(tmp)))
			abort();
		/* deterministic, and independent of what follows the line */
		if (vsock_handshake_parse(buf, (size_t)r, &port2) != r || port2 != port)
			abort();
		for (size_t k = 0; k + 1 < (size_t)r; k++)
			if (vsock_handshake_parse(buf, k, &port2) != 0)
				abort();
	} else if (r == 0) {
		if (nl || size >= VSOCK_HS_LINE_MAX)
			abort();
	} else if (r != -22) {
		abort();
	}

	/* The option parser over the same bytes as a NUL-terminated string. */
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct vsock_opts o;
	if (vsock_parse_opts(s, &o) == 0) {
		if (o.cid < 3 || o.cid > 0xfffffffeull || !o.uds || !*o.uds || strlen(o.uds) >= VSOCK_UDS_MAX ||
		    o.max_conns == 0 || o.max_conns > VSOCK_MAX_CONNS_LIMIT || strchr(o.uds, ','))
			abort();
	}
	free(s);
	return 0;
}
