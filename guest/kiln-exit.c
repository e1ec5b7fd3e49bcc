/* kiln-exit: guest-side payload that ends the VM with a status via kiln's exit port. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/io.h>
#include <sys/reboot.h>
#include <unistd.h>

/* kiln-vmm's paravirtual exit port: one byte written here ends the VM. */
#define KILN_EXIT_PORT 0xf4

/*
 * usage: kiln-exit STATUS   (STATUS 0-255)
 * Writes STATUS to port 0xf4: under kiln-vmm the VM ends here (0 -> exit 0,
 * non-zero -> exit 5). If the write does not end the VM (another VMM, no such
 * port), falls back to reboot(RB_POWER_OFF).
 */
int main(int argc, char **argv)
{
	char *end;
	long status;

	if (argc != 2) {
		fprintf(stderr, "usage: kiln-exit STATUS\n");
		return 2;
	}
	errno = 0;
	status = strtol(argv[1], &end, 10);
	if (errno || *end || end == argv[1] || status < 0 || status > 255) {
		fprintf(stderr, "kiln-exit: status must be 0-255: %s\n", argv[1]);
		return 2;
	}
	sync();
	if (ioperm(KILN_EXIT_PORT, 1, 1) == 0)
		outb((unsigned char)status, KILN_EXIT_PORT);
	else
		perror("kiln-exit: ioperm");
	/* Still here: no exit port. Power off instead. */
	reboot(RB_POWER_OFF);
	perror("kiln-exit: reboot");
	return 1;
}
