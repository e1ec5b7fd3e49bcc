/* cli.c: kiln-vmm's option parsing; every value checked against its documented range. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "boot.h"
#include "vm.h"

int vmm_cli_parse(int argc, char **argv, struct vmm_opts *o, char *err, size_t errlen)
{
	enum { O_KERNEL = 256, O_INITRD, O_CMDLINE, O_MEM, O_VCPUS, O_DISK, O_VSOCK, O_HOLD, O_HELP, O_POLICY };
	static const struct option lopts[] = {
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "initrd", required_argument, NULL, O_INITRD },
		{ "cmdline", required_argument, NULL, O_CMDLINE },
		{ "mem", required_argument, NULL, O_MEM },
		{ "vcpus", required_argument, NULL, O_VCPUS },
		{ "disk", required_argument, NULL, O_DISK },
		{ "vsock", required_argument, NULL, O_VSOCK },
		{ "hold-fd", required_argument, NULL, O_HOLD },
		{ "help", no_argument, NULL, O_HELP },
		{ "print-policy", no_argument, NULL, O_POLICY },
		{ NULL, 0, NULL, 0 },
	};
	char q[260]; /* a value quoted in a message: 256 characters at most, '?' for control bytes */
	bool seen[O_POLICY + 1 - O_KERNEL] = { false };
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->mem_mib = 128;
	o->vcpus = 1;
	o->cmdline = VMM_DEFAULT_CMDLINE;
	o->hold_fd = -1;
	err[0] = '\0';
	optind = 0; /* full reinitialisation (glibc) */
	opterr = 0;
	/* ':' first: a long option without its value returns ':', not '?' */
	while ((c = getopt_long(argc, argv, ":", lopts, NULL)) != -1) {
		/* --disk may be repeated; any other option given twice is refused, not overridden */
		if (c >= O_KERNEL && c <= O_POLICY && c != O_DISK) {
			if (seen[c - O_KERNEL])
				return kiln_refuse(err, errlen, "--%s given twice", lopts[c - O_KERNEL].name);
			seen[c - O_KERNEL] = true;
		}
		switch (c) {
		case O_KERNEL: o->kernel = optarg; break;
		case O_INITRD: o->initrd = optarg; break;
		case O_CMDLINE: o->cmdline = optarg; break;
		case O_MEM:
			if (parse_u64(optarg, VM_MIN_MEM_MIB, VM_MAX_MEM_MIB, &v) < 0)
				return kiln_refuse(err, errlen, "--mem '%s': need a whole number of MiB in %llu..%llu",
						   kiln_printable(optarg, q, sizeof(q)), VM_MIN_MEM_MIB,
						   VM_MAX_MEM_MIB);
			o->mem_mib = v;
			break;
		case O_VCPUS:
			if (parse_u64(optarg, 1, VM_MAX_VCPUS, &v) < 0)
				return kiln_refuse(err, errlen, "--vcpus '%s': need a number in 1..%d",
						   kiln_printable(optarg, q, sizeof(q)), VM_MAX_VCPUS);
			o->vcpus = (unsigned int)v;
			break;
		case O_DISK:
			if (o->ndisks >= VMM_MAX_DISKS)
				return kiln_refuse(err, errlen, "--disk: at most %d disks", VMM_MAX_DISKS);
			kiln_printable(optarg, q, sizeof(q)); /* before the parse splits it */
			if (blk_parse_opts(optarg, &o->disk[o->ndisks]) < 0)
				return kiln_refuse(err, errlen, "--disk '%s': need PATH[,ro][,id=SERIAL] "
						   "(SERIAL 1..20 printable characters)", q);
			o->ndisks++;
			break;
		case O_VSOCK:
			kiln_printable(optarg, q, sizeof(q));
			if (vsock_parse_opts(optarg, &o->vsock) < 0)
				return kiln_refuse(err, errlen,
						   "--vsock '%s': need cid=N,uds=PATH[,max_conns=N] with N >= 3", q);
			o->has_vsock = 1;
			break;
		case O_HOLD:
			if (parse_u64(optarg, 3, INT_MAX, &v) < 0)
				return kiln_refuse(err, errlen,
						   "--hold-fd '%s': need a file descriptor number, 3 or more",
						   kiln_printable(optarg, q, sizeof(q)));
			o->hold_fd = (int)v;
			break;
		case O_HELP:
			return VMM_CLI_HELP;
		case O_POLICY:
			return VMM_CLI_POLICY;
		case ':':
			return kiln_refuse(err, errlen, "option %s needs a value (see --help)",
					   kiln_bad_option(argc, argv, q, sizeof(q)));
		default:
			return kiln_refuse(err, errlen, "unknown option %s (see --help)",
					   kiln_bad_option(argc, argv, q, sizeof(q)));
		}
	}
	if (optind < argc)
		return kiln_refuse(err, errlen, "unexpected argument '%s' (see --help)",
				   kiln_printable(argv[optind], q, sizeof(q)));
	if (!o->kernel)
		return kiln_refuse(err, errlen, "--kernel is required (see --help)");
	size_t clen = strlen(o->cmdline);
	if (clen > BOOT_CMDLINE_MAX)
		return kiln_refuse(err, errlen, "--cmdline is %zu bytes, at most %d allowed", clen, BOOT_CMDLINE_MAX);
	return VMM_CLI_RUN;
}
