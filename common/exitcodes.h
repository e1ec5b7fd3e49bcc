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
	"  7  kiln-jailer: jail setup failed (everything it created was removed)\n"

#endif
