/* jail-probe.c: static stand-in for kiln-vmm in tests/e2e/jailer.bats; runs actions given as arguments
 * inside the jail and reports each on stdout as "probe: ...".
 *
 * Actions, run in order:
 *   open PATH    open PATH read-write                  -> "probe: open PATH: ok" or ": <error>"
 *   write PATH   open PATH for writing (creating it), write a byte -> "probe: write PATH: ok" or ": <error>"
 *   exec PATH    execve PATH (no arguments)             -> only on failure: "probe: exec PATH: <error>"
 *   fds          list open descriptors 0..4095           -> "probe: fds: 0 1 2"
 *   env          print the environment, one per line     -> "probe: env: NAME=VALUE"
 *   id           real/effective ids and groups           -> "probe: id: uid=U gid=G groups=N"
 *   thread       start a second thread that waits forever
 *   hold         print "probe: ready", wait for SIGTERM, then "probe: term" and go on
 *   exit N       exit with status N
 * Ends with status 0 after the last action.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t got_term;

static void on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static void result(const char *what, const char *path, int ok)
{
	if (ok)
		printf("probe: %s %s: ok\n", what, path);
	else
		printf("probe: %s %s: %s\n", what, path, strerror(errno));
	fflush(stdout);
}

int main(int argc, char *argv[])
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *arg = i + 1 < argc ? argv[i + 1] : "";
		if (strcmp(a, "open") == 0) {
			int fd = open(arg, O_RDWR | O_CLOEXEC);
			result("open", arg, fd >= 0);
			i++;
		} else if (strcmp(a, "write") == 0) {
			int fd = open(arg, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
			result("write", arg, fd >= 0 && write(fd, "x", 1) == 1);
			i++;
		} else if (strcmp(a, "exec") == 0) {
			char *const av[] = { (char *)arg, NULL };
			execve(arg, av, environ);
			result("exec", arg, 0);
			i++;
		} else if (strcmp(a, "fds") == 0) {
			printf("probe: fds:");
			for (int fd = 0; fd < 4096; fd++)
				if (fcntl(fd, F_GETFD) >= 0)
					printf(" %d", fd);
			printf("\n");
		} else if (strcmp(a, "env") == 0) {
			for (char **e = environ; *e; e++)
				printf("probe: env: %s\n", *e);
		} else if (strcmp(a, "id") == 0) {
			printf("probe: id: uid=%u euid=%u gid=%u egid=%u groups=%d\n", getuid(), geteuid(), getgid(),
			       getegid(), getgroups(0, NULL));
		} else if (strcmp(a, "thread") == 0) {
			pthread_t t;
			if (pthread_create(&t, NULL, sleeper, NULL) != 0)
				printf("probe: thread: failed\n");
		} else if (strcmp(a, "hold") == 0) {
			sigset_t block, old;
			struct sigaction sa = { .sa_handler = on_term };
			sigemptyset(&block);
			sigaddset(&block, SIGTERM);
			sigprocmask(SIG_BLOCK, &block, &old);
			sigaction(SIGTERM, &sa, NULL);
			printf("probe: ready\n");
			fflush(stdout);
			while (!got_term)
				sigsuspend(&old);
			printf("probe: term\n");
		} else if (strcmp(a, "exit") == 0) {
			fflush(stdout);
			exit(atoi(arg));
		} else {
			printf("probe: unknown action %s\n", a);
			return 100;
		}
		fflush(stdout);
	}
	return 0;
}
