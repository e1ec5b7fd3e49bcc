/* fuzz_check.h: the harnesses' invariant check: on failure, name the line and abort (libFuzzer
 * then saves the input as a crash). */
#ifndef KILN_FUZZ_CHECK_H
#define KILN_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                  \
	do {                                                                      \
		if (!(c)) {                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, \
				__LINE__, #c);                                    \
			abort();                                                  \
		}                                                                 \
	} while (0)

#endif
