/* cli.h: kiln-vmm's command line, parsed and checked without touching the OS (fuzzed, unit-tested). */
#ifndef KILN_VMM_CLI_H
#define KILN_VMM_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "devices/blk.h"
#include "util.h"
#include "vsock_host.h"

#define VMM_DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=-1"
#define VMM_MAX_DISKS 8

struct vmm_opts {
	const char *kernel, *initrd, *cmdline;
	uint64_t mem_mib;
	unsigned int vcpus;
	struct blk_opts disk[VMM_MAX_DISKS];
	unsigned int ndisks;
	struct vsock_opts vsock;
	int has_vsock;
	int hold_fd; /* --hold-fd, or -1; main() checks that it is open, readable and blocking */
};

enum { VMM_CLI_RUN = 0, VMM_CLI_HELP = 1, VMM_CLI_POLICY = 2 };

/*
 * Parse kiln-vmm's arguments into o (zeroed first, then the defaults: 128 MiB, 1 vCPU, the default
 * command line). o keeps pointers into argv, and --disk and --vsock values are split in place.
 * Returns VMM_CLI_RUN, VMM_CLI_HELP (--help), VMM_CLI_POLICY (--print-policy), or -EINVAL with one
 * line in err: an unknown option, a missing or bad value, a stray argument, no --kernel, or a
 * command line over BOOT_CMDLINE_MAX bytes. Can run more than once (resets getopt).
 */
int vmm_cli_parse(int argc, char **argv, struct vmm_opts *o, char *err, size_t errlen) KILN_WUR;

#endif
