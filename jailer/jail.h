/* jail.h: kiln-jailer's OS side: build the jail, apply it in one ordered step, clean it up. */
#ifndef KILN_JAILER_JAIL_H
#define KILN_JAILER_JAIL_H

#include "validate.h"

/*
 * Build the jail described by cfg (already checked by jail_parse_args) and run the VMM in it.
 * Order (each step documented in jail.c):
 *   1. sanitize the jailer itself: close inherited fds, clear the environment, umask 077,
 *      not dumpable;
 *   2. open and check every input (exec file, --ro/--rw paths, --netns) without following
 *      symlinks, before touching anything;
 *   3. create <base>/<exec-name>/<id>/root (the id directory must not exist), copy the exec
 *      file in (with --exec-cache: make or reuse the cached copy, bound in at step 5), create
 *      mount points;
 *   4. create and configure the cgroup <parent>/<id>;
 *   5. clone the VMM process into new mount, pid, net, ipc and uts namespaces and the cgroup;
 *      it enters a new cgroup namespace, mounts the jail, pivots into it, sets rlimits,
 *      NO_NEW_PRIVS, drops to uid/gid with no groups and no capabilities, then execs;
 *   6. supervise, holding only CAP_KILL: forward SIGTERM/SIGINT/SIGHUP/SIGQUIT (the same one
 *      twice: SIGKILL), exit with the VMM's status (128+N if killed by signal N).
 * Never returns. Exits KILN_EXIT_USAGE when an input is rejected (nothing was touched),
 * KILN_EXIT_JAIL when setup failed (everything created so far is removed first).
 */
_Noreturn void jail_run(const struct jail_config *cfg);

/*
 * --cleanup: remove the jail directory and the cgroup of VM cfg->id. Refuses (KILN_EXIT_JAIL)
 * while any process is still in the cgroup or has its root in the jail. Returns the exit status.
 */
int jail_cleanup(const struct jail_config *cfg) KILN_WUR;

/*
 * --exec-cache: the name of the sealed copy of exec file x (exec_name: its base name) in the cache
 * directory. It holds everything that changes when the exec file does (device, inode, size, mtime,
 * ctime), so a copy whose name is not that of the current file is stale. Returns 0, or -1 when the
 * name does not fit in n bytes.
 */
int jail_exec_cache_name(char *buf, size_t n, const char *exec_name, const struct stat *x) KILN_WUR;

#endif
