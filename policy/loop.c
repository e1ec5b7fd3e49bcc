/* loop.c: seccomp allowlist of kiln-vmm's main thread (event loop, device I/O, vsock host side, teardown). */
#include "policy.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/futex.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Installed just before evloop_run, after every fd (KVM, disks, eventfds, the epoll fd, the vsock
 * listening socket and timerfd) exists and the vCPU threads are created. Nothing here opens a
 * path: the only new fds after this point are Unix sockets (accept4 on the vsock listener,
 * socket+connect to <uds>_<port> for guest-initiated connections). Calls on an fd that exists
 * before the filter and only ever serves one purpose are pinned to it (<disk fd>, <VM fd>,
 * <epoll fd>, <vsock listener fd>, <vsock timerfd>: bound at run time, see policy.h); read, write
 * and the socket calls also serve fds made after start (eventfds, vsock connections) and are not.
 */
#define DISK_FD POL_ARG_FD(0, POL_FD_DISK0, POL_FD_NDISKS, "<disk fd>")
#define VM_FD POL_ARG_FD(0, POL_FD_VM, 1, "<VM fd>")

static const struct pol_rule rules[] = {
	/* Event loop */
	POL_ALLOW_IF(epoll_wait, "the event loop's one wait", POL_ARG_FD(0, POL_FD_EPOLL, 1, "<epoll fd>")),
	POL_ALLOW_IF(epoll_ctl, "watch and unwatch fds as vsock connections and console readiness change",
		     POL_ARG_FD(0, POL_FD_EPOLL, 1, "<epoll fd>")),
	POL_ALLOW(read, "drain eventfds (kicks, stop, serial) and the timerfd; stdin for the serial console; "
			"the --hold-fd start byte"),
	POL_ALLOW(write, "stdout (guest console), eventfds (irqfd, re-kick), stderr messages"),
	POL_ALLOW(close, "close finished vsock connections; teardown"),
	POL_ALLOW_IF(timerfd_settime, "vsock connect/shutdown timeouts (timerfd made before start)",
		     POL_ARG_FD(0, POL_FD_VSOCK_TIMER, 1, "<vsock timerfd>")),
	POL_ALLOW(clock_gettime, "vsock timeouts: the vDSO falls back to the syscall on some clock sources"),
	POL_ALLOW_IF(fcntl, "console: read stdout's flags", POL_ARG_EQ32(0, STDOUT_FILENO),
		     POL_ARG_EQ32(1, F_GETFL)),
	POL_ALLOW_IF(fcntl, "console: restore stdout's blocking mode at teardown",
		     POL_ARG_EQ32(0, STDOUT_FILENO), POL_ARG_EQ32(1, F_SETFL)),

	/* virtio-blk: I/O on the disk fds opened before start */
	POL_ALLOW_IF(preadv, "virtio-blk reads", DISK_FD),
	POL_ALLOW_IF(pwritev, "virtio-blk writes", DISK_FD),
	POL_ALLOW_IF(pwrite64, "virtio-blk write-zeroes where the file system cannot zero a range", DISK_FD),
	POL_ALLOW_IF(fdatasync, "virtio-blk flush", DISK_FD),
	POL_ALLOW_IF(fallocate, "virtio-blk discard and write-zeroes with unmap", DISK_FD,
		     POL_ARG_EQ32(1, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)),
	POL_ALLOW_IF(fallocate, "virtio-blk write-zeroes", DISK_FD,
		     POL_ARG_EQ32(1, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)),

	/* virtio-vsock host side: Unix sockets only */
	POL_ALLOW_IF(accept4, "host-initiated vsock connections on the listening socket",
		     POL_ARG_FD(0, POL_FD_VSOCK_LISTEN, 1, "<vsock listener fd>"),
		     POL_ARG_EQ32(3, SOCK_NONBLOCK | SOCK_CLOEXEC)),
	POL_ALLOW_IF(socket, "guest-initiated vsock connections to <uds>_<port>: AF_UNIX stream only",
		     POL_ARG_EQ32(0, AF_UNIX), POL_ARG_EQ32(1, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC),
		     POL_ARG_EQ32(2, 0)),
	POL_ALLOW(connect, "guest-initiated vsock connections (the only sockets are AF_UNIX)"),
	POL_ALLOW(recvfrom, "vsock: read the CONNECT handshake line"),
	POL_ALLOW(recvmsg, "vsock: host to guest data"),
	POL_ALLOW(sendto, "vsock: the OK <port> reply"),
	POL_ALLOW(sendmsg, "vsock: guest to host data"),
	POL_ALLOW_IF(shutdown, "vsock: the guest shut its write side", POL_ARG_EQ32(1, SHUT_WR)),
	POL_ALLOW_IF(poll, "vsock: at a host peer's EOF, tell a half close from a hang-up (one fd, no wait)",
		     POL_ARG_EQ32(1, 1), POL_ARG_EQ32(2, 0)),
	POL_ALLOW(unlink, "teardown: remove the vsock listening socket kiln-vmm created"),

	/* KVM: only what the loop and teardown use on the VM fd */
	POL_ALLOW_IF(ioctl, "serial interrupt raised from the loop (stdin data for the guest)",
		     VM_FD, POL_ARG_EQ32(1, KVM_IRQ_LINE)),
	POL_ALLOW_IF(ioctl, "teardown: deassign the queue-notify ioeventfds", VM_FD,
		     POL_ARG_EQ32(1, KVM_IOEVENTFD)),
	POL_ALLOW_IF(ioctl, "teardown: deassign the device irqfds", VM_FD, POL_ARG_EQ32(1, KVM_IRQFD)),

	/* Threads and memory (glibc) */
	POL_ALLOW_IF(futex, "device and serial locks", POL_ARG_EQ32(1, FUTEX_WAIT_PRIVATE)),
	POL_ALLOW_IF(futex, "device and serial locks", POL_ARG_EQ32(1, FUTEX_WAKE_PRIVATE)),
	POL_ALLOW_IF(futex, "pthread_join of the vCPU threads waits on their tid",
		     POL_ARG_EQ32(1, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME)),
	POL_ALLOW_IF(tgkill, "stop: kick the vCPU threads out of KVM_RUN (pthread_kill)",
		     POL_ARG_EQ32(2, SIGUSR1)),
	POL_ALLOW(getpid, "pthread_kill passes the thread group id to tgkill"),
	POL_ALLOW(rt_sigprocmask, "pthread_kill blocks signals around tgkill"),
	POL_ALLOW_IF(mmap, "malloc: anonymous memory, never executable",
		     POL_ARG_BITS(2, PROT_EXEC, 0), POL_ARG_EQ32(4, -1)),
	POL_ALLOW(munmap, "free; teardown unmaps guest memory and kvm_run"),
	POL_ALLOW(brk, "malloc's main arena"),
	POL_ALLOW_IF(madvise, "free returns memory", POL_ARG_EQ32(2, MADV_DONTNEED)),
	POL_ALLOW_IF(madvise, "populate guest RAM ahead of the booting kernel (prefault.h): allocates, "
			      "never changes contents", POL_ARG_EQ32(2, MADV_POPULATE_WRITE)),
	POL_ALLOW(restart_syscall, "resume an allowed call interrupted by a stop signal"),
	POL_ALLOW(exit_group, "the end of kiln-vmm"),
};

const struct pol_class pol_loop = {
	.name = "loop",
	.about = "main thread: event loop, virtio-blk I/O, vsock host sockets, console, teardown",
	.rules = rules,
	.nrules = sizeof(rules) / sizeof(rules[0]),
};
