/* main.c: kiln-jailer's entry point: parse, then build the jail and exec the VMM, or --cleanup. */
#include <stdio.h>

#include "exitcodes.h"
#include "jail.h"
#include "validate.h"

static const char usage[] =
	"usage: kiln-jailer --id ID --exec-file PATH --uid UID --gid GID [options] -- VMM-ARGS...\n"
	"       kiln-jailer --cleanup --id ID [--chroot-base-dir DIR] [--parent-cgroup PATH] [--no-cgroup]\n"
	"\n"
	"Runs PATH (a root-owned, non-setuid regular file with one link) as UID:GID, copied into\n"
	"<base>/<exec-name>/<id>/root (or bound there from --exec-cache), in new mount, pid, network,\n"
	"ipc, uts and cgroup namespaces,\n"
	"with no capabilities in any set, NO_NEW_PRIVS, an empty environment but --env, and only\n"
	"stdio and --keep-fd descriptors. Runs as root (or see --userns). Inside the jail: /<exec-name>,\n"
	"/dev/kvm (0600, UID:GID), and /<name> for each --ro/--rw path; nothing else.\n"
	"\n"
	"Options:\n"
	"  --id ID                 VM id, 1-64 characters from [A-Za-z0-9-]\n"
	"  --exec-file PATH        the VMM binary (statically linked: the jail holds no libraries)\n"
	"  --uid UID, --gid GID    ids to run as (1 to 4294967294; never 0)\n"
	"  --chroot-base-dir DIR   jail base, default " JAIL_DEFAULT_BASE "\n"
	"  --parent-cgroup PATH    cgroup v2 parent, relative to /sys/fs/cgroup, default " JAIL_DEFAULT_CGROUP "\n"
	"  --cgroup FILE=VALUE     set memory.max, memory.swap.max, cpu.max, pids.max, cpuset.cpus or io.max\n"
	"  --no-cgroup             run without a cgroup (otherwise no cgroup v2 is an error)\n"
	"  --netns PATH            join this network namespace instead of a new empty one\n"
	"  --exec-cache DIR        keep one sealed copy of PATH (root's, mode 0511) in DIR, which must be\n"
	"                          root's and writable by no one else, and bind it read-only into each\n"
	"                          jail instead of copying PATH every time; remade when PATH changes\n"
	"  --userns                run without root: a new user namespace mapping only the caller's\n"
	"                          uid/gid (which --uid/--gid must be); /dev/kvm is the host's node\n"
	"                          bound in; the chroot base may be the caller's; cgroups need a\n"
	"                          delegated --parent-cgroup that holds the caller, else --no-cgroup\n"
	"  --resource-limit N=V    no-file (default 2048), fsize, core (default 0), nproc, memlock, as;\n"
	"                          V a number or unlimited\n"
	"  --ro PATH, --rw PATH    bind a file or directory at /<last component>, read-only or read-write\n"
	"                          (never following a symbolic link in PATH)\n"
	"  --keep-fd N             pass descriptor N (3-65535) to the VMM; all others are closed\n"
	"  --env NAME=VALUE        add to the VMM's environment (NAME: TERM or KILN_*)\n"
	"  --cleanup               remove the jail directory and cgroup of a VM that has ended\n"
	"  -h, --help              this text\n"
	"--cgroup (one per file), --resource-limit (one per limit), --ro, --rw, --keep-fd and --env\n"
	"may be repeated; any other option given twice is a usage error.\n"
	"\n"
	"Exit status: the VMM's own status once it runs (128+N if killed by signal N); before that:\n"
	"  2  usage error: bad option or value, or an input path rejected; nothing was touched\n"
	"  7  jail setup failed (or --cleanup refused); everything created was removed\n"
	"\n" KILN_EXIT_HELP;

int main(int argc, char *argv[])
{
	struct jail_config cfg;
	char err[JAIL_ERR_MAX * 2];

	kiln_set_progname("kiln-jailer");
	if (jail_parse_args(argc, argv, &cfg, err, sizeof(err)) < 0)
		kiln_die(KILN_EXIT_USAGE, "%s", err);
	if (cfg.help) {
		fputs(usage, stdout);
		return KILN_EXIT_OK;
	}
	if (cfg.cleanup)
		return jail_cleanup(&cfg);
	jail_run(&cfg);
}
