/* exitcodes.h: the one exit-status enum shared by every kiln binary. */
#ifndef KILN_EXITCODES_H
#define KILN_EXITCODES_H

/*
 * Exit statuses of kiln-vmm (and, later, the other binaries).
 * Keep in step with the README and every --help text (kiln_exit_help()).
 */
enum kiln_exit {
	KILN_EXIT_OK = 0,           /* guest finished normally and reported status 0 */
	KILN_EXIT_VMM_ERROR = 1,    /* kiln-vmm failed (KVM call, host resources) */
	KILN_EXIT_USAGE = 2,        /* bad option or value; nothing was started */
	KILN_EXIT_BAD_IMAGE = 3,    /* kernel, initrd or disk rejected; nothing was started */
	KILN_EXIT_GUEST_RESET = 4,  /* guest reset, rebooted or panicked (i8042 reset, triple fault) */
	KILN_EXIT_GUEST_STATUS = 5, /* guest finished normally but reported a non-zero status */
	KILN_EXIT_GUEST_FAULT = 6,  /* guest left the vCPU in a state KVM cannot run */
	KILN_EXIT_JAIL = 7,         /* kiln-jailer: jail setup failed (undone), or --cleanup refused */
	KILN_EXIT_NOT_RELEASED = 8, /* kiln-vmm --hold-fd: end of file (or an error) before the start byte */
};

/* The exit-status table as printed in --help. */
#define KILN_EXIT_HELP                                                              \
	"Exit status:\n"                                                            \
	"  0  guest finished normally (wrote 0 to the exit port)\n"                 \
	"  1  kiln-vmm error (KVM call failed, host out of resources)\n"            \
	"  2  usage error: bad option or value, nothing started\n"                  \
	"  3  kernel, initrd or disk rejected (missing, truncated, not a bzImage,\n" \
	"     does not fit in guest memory), nothing started\n"                     \
	"  4  guest reset, rebooted or panicked\n"                                  \
	"  5  guest finished normally with a non-zero status (printed on stderr)\n" \
	"  6  guest fault: the vCPU entered a state KVM cannot run\n"                \
	"  7  kiln-jailer: jail setup failed (everything it created was removed)\n" \
	"  8  --hold-fd reached end of file before the start byte: the guest never\n" \
	"     ran\n"

/*
 * Exit statuses of `kiln run`: the command's own status (0-255; 128+N when signal N killed it)
 * is passed through; kiln's own outcomes use 120-124 (the result record tells them apart from a
 * command that exits with the same number). Keep in step with the README and `kiln --help`.
 */
enum kiln_run_exit {
	KILN_RUN_EXIT_USAGE = 120,   /* bad option or value; nothing was started */
	KILN_RUN_EXIT_SETUP = 121,   /* setup-error: the sandbox could not be set up or started */
	KILN_RUN_EXIT_SANDBOX = 122, /* guest-panic, vmm-crash, vmm-seccomp, agent-protocol-error */
	KILN_RUN_EXIT_OUTPUT = 123,  /* output-limit: a stream went beyond --output-max */
	KILN_RUN_EXIT_TIMEOUT = 124, /* timeout: --timeout (wall clock) ran out */
};

#define KILN_RUN_EXIT_HELP                                                          \
	"Exit status: the command's (128+N if signal N killed it), or:\n"           \
	"  120  usage error: bad option or value, nothing started\n"                \
	"  121  setup-error: the sandbox could not be set up or started\n"          \
	"  122  the sandbox failed: guest-panic, vmm-crash, vmm-seccomp,\n"         \
	"       agent-protocol-error\n"                                             \
	"  123  output-limit: a stream went beyond --output-max (output cut)\n"     \
	"  124  timeout: --timeout ran out\n"                                       \
	"  128+N  kiln itself got signal N (SIGINT, SIGTERM, SIGHUP, SIGQUIT): run torn\n" \
	"       down\n"

#endif
