/* main.c: kiln-vmm entry point: options, image loading, the event loop, the exit status. */
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boot.h"
#include "cli.h"
#include "console.h"
#include "devices/blk.h"
#include "vdev.h"
#include "vsock_host.h"
#include "evloop.h"
#include "exitcodes.h"
#include "mptable.h"
#include "prefault.h"
#include "seccomp.h"
#include "vm.h"
#include "x86_64.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kiln-vmm --kernel FILE [options]\n"
		"Boot a Linux bzImage in a KVM microVM; the guest's serial console is on\n"
		"stdout and stdin.\n\n"
		"Options:\n"
		"  --kernel FILE    bzImage to boot (Linux x86 boot protocol 2.12 or later)\n"
		"  --initrd FILE    initial ramdisk\n"
		"  --cmdline STR    kernel command line (at most %d bytes;\n"
		"                   default \"" VMM_DEFAULT_CMDLINE "\")\n"
		"  --mem MIB        guest memory in MiB, %llu..%llu (default 128)\n"
		"  --vcpus N        number of vCPUs, 1..%d (default 1)\n"
		"  --disk PATH[,ro][,id=SERIAL]\n"
		"                   virtio-blk disk over a raw image (up to %d; the first is\n"
		"                   /dev/vda); ro: read-only; SERIAL: up to 20 characters\n"
		"  --vsock cid=N,uds=PATH[,max_conns=N]\n"
		"                   virtio-vsock, guest CID N (>= 3), host side on the Unix\n"
		"                   socket PATH (Firecracker protocol: CONNECT <port>; guest\n"
		"                   connections to host port P go to PATH_P)\n"
		"  --hold-fd N      hold the VM before the guest's first instruction: every\n"
		"                   thread filtered, kiln-vmm prints one line on stderr and\n"
		"                   waits for one byte on fd N (open for reading, blocking,\n"
		"                   3 or more), then runs the guest; end of file on N ends\n"
		"                   kiln-vmm with status 8 and the guest never runs\n"
		"  --print-policy   print the seccomp rules of each thread class and exit\n"
		"  --help           this text\n"
		"--disk may be repeated; any other option given twice is a usage error.\n\n"
		"The guest ends the VM by writing a status byte to I/O port 0x%x\n"
		"(kiln-init does it), by resetting (reboot=k), or by a triple fault.\n\n" KILN_EXIT_HELP,
		BOOT_CMDLINE_MAX, VM_MIN_MEM_MIB, VM_MAX_MEM_MIB, VM_MAX_VCPUS, VMM_MAX_DISKS, EXIT_PORT);
}

static void parse_opts(int argc, char **argv, struct vmm_opts *o)
{
	char err[512];

	switch (vmm_cli_parse(argc, argv, o, err, sizeof(err))) {
	case VMM_CLI_RUN:
		break;
	case VMM_CLI_HELP:
		usage(stdout);
		exit(KILN_EXIT_OK);
	case VMM_CLI_POLICY:
		seccomp_print_policy(stdout);
		exit(KILN_EXIT_OK);
	default:
		kiln_die(KILN_EXIT_USAGE, "%s", err);
	}
	/* Before kiln-vmm opens anything, or a closed N could become one of its own fds. */
	if (o->hold_fd >= 0) {
		int fl = fcntl(o->hold_fd, F_GETFL);
		if (fl < 0)
			kiln_die(KILN_EXIT_USAGE, "--hold-fd %d: not an open file descriptor", o->hold_fd);
		if ((fl & O_ACCMODE) == O_WRONLY || (fl & O_PATH))
			kiln_die(KILN_EXIT_USAGE, "--hold-fd %d: not open for reading", o->hold_fd);
		if (fl & O_NONBLOCK)
			kiln_die(KILN_EXIT_USAGE, "--hold-fd %d: non-blocking; kiln-vmm waits in a blocking read",
				 o->hold_fd);
	}
}

/* Open name read-only and return its fd and size; dies with BAD_IMAGE on any problem. */
static int open_image(const char *what, const char *name, uint64_t *size)
{
	struct stat st;
	int fd = open(name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		kiln_die(KILN_EXIT_BAD_IMAGE, "cannot open %s %s: %s", what, name, strerror(errno));
	if (fstat(fd, &st) < 0)
		kiln_die(KILN_EXIT_BAD_IMAGE, "cannot stat %s %s: %s", what, name, strerror(errno));
	if (!S_ISREG(st.st_mode))
		kiln_die(KILN_EXIT_BAD_IMAGE, "%s %s is not a regular file", what, name);
	*size = (uint64_t)st.st_size;
	return fd;
}

/* Read exactly len bytes at offset off of fd into dst. */
static int read_at(int fd, uint8_t *dst, uint64_t len, uint64_t off)
{
	uint64_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, dst + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (uint64_t)n;
	}
	return 0;
}

/*
 * Start-up is over: drop this binary's read-only pages (code and constants of option parsing,
 * image loading, VM and device set-up, and much of the glibc they pulled in) from the address
 * space. They are clean file pages: what the running VM needs faults back in from the page
 * cache, the rest stops counting against the VMM's resident memory (about 900 KiB of a
 * static binary otherwise stays mapped). Writable segments (data, relocated pointers, bss)
 * are left alone: dropping them would lose their contents.
 */
static int drop_ro_segment(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	(void)data;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo, hi;

		if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W))
			continue;
		lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)4095;
		hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + 4095) & ~(uintptr_t)4095;
		(void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
	}
	return 1; /* the executable only (the vDSO is not ours to drop) */
}

static void on_stop(void *ctx, int fd, uint32_t ev)
{
	(void)fd;
	(void)ev;
	evloop_stop(ctx);
}

/* Everything one kiln-vmm process runs. Large: static storage. */
struct vmm {
	struct vmm_opts o;
	struct vm vm;
	struct evloop loop;
	struct console con;
	struct blk_dev disk[VMM_MAX_DISKS];
	int disk_fd[VMM_MAX_DISKS];
	struct vsock_host vsock;
	struct vdev vdev[VDEV_MAX];
	unsigned int nvdev;
	struct prefault pf;
	struct prefault_early pf_early;
	char cmdline[BOOT_CMDLINE_MAX + 1];
};

/* ---- devices: set up in table order, torn down in reverse --------------- */

static int console_setup(struct vmm *m)
{
	int r = console_init(&m->con, &m->vm, &m->loop);
	if (r == 0)
		m->vm.serial = &m->con.serial;
	return r;
}

static void console_teardown(struct vmm *m)
{
	m->vm.serial = NULL;
	console_destroy(&m->con);
}

static int disks_setup(struct vmm *m)
{
	for (unsigned int i = 0; i < m->o.ndisks; i++) {
		struct vdev *v = &m->vdev[m->nvdev];
		const struct blk_opts *d = &m->o.disk[i];
		int r = vdev_prepare(v, &m->vm, &m->loop, m->nvdev);
		if (r < 0)
			return r;
		m->nvdev++;
		r = blk_init(&m->disk[i], &m->vm.mem, m->disk_fd[i], d->ro, d->serial[0] ? d->serial : NULL,
			     vdev_irq_raise, v);
		if (r < 0)
			return r;
		r = vdev_attach(v, &m->disk[i].mmio, 1, m->cmdline, sizeof(m->cmdline));
		if (r < 0)
			return r;
	}
	return 0;
}

static void disks_teardown(struct vmm *m)
{
	for (unsigned int i = 0; i < m->o.ndisks; i++)
		if (m->disk[i].mmio.ops)
			blk_destroy(&m->disk[i]);
}

static int vsock_setup(struct vmm *m)
{
	if (!m->o.has_vsock)
		return 0;
	struct vdev *v = &m->vdev[m->nvdev];
	int r = vdev_prepare(v, &m->vm, &m->loop, m->nvdev);
	if (r < 0)
		return r;
	m->nvdev++;
	r = vsock_host_init(&m->vsock, &m->loop, &m->vm.mem, m->o.vsock.cid, m->o.vsock.uds,
			    m->o.vsock.max_conns, vdev_irq_raise, v);
	if (r == -EADDRINUSE) {
		kiln_warn("--vsock: %s already exists", m->o.vsock.uds);
		return r;
	}
	if (r < 0)
		return r;
	return vdev_attach(v, vsock_host_mmio(&m->vsock), 3, m->cmdline, sizeof(m->cmdline));
}

static void vsock_teardown(struct vmm *m)
{
	if (m->o.has_vsock)
		vsock_host_destroy(&m->vsock);
}

static const struct {
	const char *name;
	int (*setup)(struct vmm *m);
	void (*teardown)(struct vmm *m);
} devtab[] = {
	{ "serial console", console_setup, console_teardown },
	{ "virtio-blk", disks_setup, disks_teardown },
	{ "virtio-vsock", vsock_setup, vsock_teardown },
};

/* The fds the main thread's pinned rules may use (policy/loop.c), bound to their slots. */
static void loop_fds(const struct vmm *m, struct pol_fds *f)
{
	_Static_assert(VMM_MAX_DISKS == POL_FD_NDISKS, "one disk fd slot per disk");
	pol_fds_init(f);
	for (unsigned int i = 0; i < m->o.ndisks; i++)
		pol_fds_set(f, POL_FD_DISK0 + i, m->disk_fd[i]);
	pol_fds_set(f, POL_FD_VM, m->vm.vm_fd);
	pol_fds_set(f, POL_FD_EPOLL, m->loop.ep);
	if (m->o.has_vsock) {
		pol_fds_set(f, POL_FD_VSOCK_LISTEN, m->vsock.listen_fd);
		pol_fds_set(f, POL_FD_VSOCK_TIMER, m->vsock.timer_fd);
	}
}

/* --hold-fd: every thread is filtered and the vCPUs wait at the start gate. Say so, then block
 * until one byte arrives on fd (0) or it ends (-1, after a message). Runs under the loop filter. */
static int hold(int fd, unsigned int nvcpus)
{
	kiln_warn("held before the first guest instruction, all %u threads filtered; "
		  "one byte on fd %d starts the guest", 1 + nvcpus, fd);
	for (;;) {
		char b;
		ssize_t n = read(fd, &b, 1);
		if (n == 1) {
			close(fd);
			return 0;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			kiln_warn("--hold-fd %d: end of file before the start byte; the guest did not run", fd);
		else
			kiln_warn_errno(errno, "--hold-fd %d: no start byte; the guest did not run", fd);
		return -1;
	}
}

/* Release everything: devices done (count) in reverse, their VM plumbing, the loop, the VM. */
static void vmm_teardown(struct vmm *m, size_t devs_done)
{
	while (devs_done > 0)
		devtab[--devs_done].teardown(m);
	prefault_early_stop(&m->pf_early); /* before guest RAM goes */
	for (unsigned int i = 0; i < m->nvdev; i++)
		vdev_release(&m->vdev[i]);
	if (m->loop.h)
		evloop_destroy(&m->loop);
	vm_destroy(&m->vm);
	for (unsigned int i = 0; i < m->o.ndisks; i++)
		if (m->disk_fd[i] >= 0)
			close(m->disk_fd[i]);
}

int main(int argc, char **argv)
{
	static struct vmm vmm;
	struct vmm *m = &vmm;
	struct vmm_opts *o = &m->o;
	struct bzimage bz;
	struct mem_layout layout;
	char why[256];
	uint64_t ksize, isize = 0, initrd_addr = 0;
	size_t devs = 0;
	struct pol_fds fds;
	int kfd, ifd = -1, r, run, not_released = 0;

	kiln_set_progname("kiln-vmm");
	signal(SIGPIPE, SIG_IGN);
	parse_opts(argc, argv, o);

	/* Each vsock connection holds one host fd: make room for the connection cap. */
	if (o->has_vsock) {
		struct rlimit rl;
		rlim_t want = (rlim_t)(o->vsock.max_conns ? o->vsock.max_conns : 1024) + 64;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
			rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
			if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want)
				kiln_warn("open-file limit %llu is below the %llu that --vsock max_conns needs: "
					  "connections beyond it will be refused",
					  (unsigned long long)rl.rlim_cur, (unsigned long long)want);
		}
	}

	/* 1. Check every input before any KVM object exists. */
	uint64_t mem_bytes = o->mem_mib << 20;
	kfd = open_image("kernel", o->kernel, &ksize);
	if (ksize > mem_bytes)
		kiln_die(KILN_EXIT_BAD_IMAGE, "kernel %s (%llu bytes) is larger than guest memory (%llu MiB)",
			 o->kernel, (unsigned long long)ksize, (unsigned long long)o->mem_mib);
	/*
	 * Only the setup header is read here; the protected-mode part goes from the file straight
	 * into guest memory (one pread, not a page fault per 4 KiB of a mapping: that cost 0.26 s of
	 * start-up where the image sits on a 9p mount, as in the emulated host).
	 */
	static uint8_t khdr[BZIMAGE_HDR_BYTES];
	if (ksize == 0)
		kiln_die(KILN_EXIT_BAD_IMAGE, "cannot read kernel %s: empty file", o->kernel);
	if ((r = read_at(kfd, khdr, ksize < sizeof(khdr) ? ksize : sizeof(khdr), 0)) < 0)
		kiln_die(KILN_EXIT_BAD_IMAGE, "cannot read kernel %s: %s", o->kernel, strerror(-r));
	if (bzimage_parse(khdr, ksize, &bz, why, sizeof(why)) < 0)
		kiln_die(KILN_EXIT_BAD_IMAGE, "%s: %s", o->kernel, why);
	mem_layout_for(mem_bytes, &layout);
	if (bz.mem_end > layout.low_size)
		kiln_die(KILN_EXIT_BAD_IMAGE,
			 "kernel %s needs memory up to 0x%llx to boot, more than the %llu MiB given",
			 o->kernel, (unsigned long long)bz.mem_end, (unsigned long long)o->mem_mib);
	if (o->initrd) {
		ifd = open_image("initrd", o->initrd, &isize);
		if (isize > mem_bytes)
			kiln_die(KILN_EXIT_BAD_IMAGE, "initrd %s (%llu bytes) is larger than guest memory (%llu MiB)",
				 o->initrd, (unsigned long long)isize, (unsigned long long)o->mem_mib);
		if (initrd_place(&bz, &layout, isize, &initrd_addr, why, sizeof(why)) < 0)
			kiln_die(KILN_EXIT_BAD_IMAGE, "%s: %s", o->initrd, why);
	}
	for (unsigned int i = 0; i < VMM_MAX_DISKS; i++)
		m->disk_fd[i] = -1;
	for (unsigned int i = 0; i < o->ndisks; i++) {
		const struct blk_opts *d = &o->disk[i];
		struct stat st;
		m->disk_fd[i] = open(d->path, (d->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY);
		if (m->disk_fd[i] < 0)
			kiln_die(KILN_EXIT_BAD_IMAGE, "cannot open disk %s: %s", d->path, strerror(errno));
		if (fstat(m->disk_fd[i], &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
			kiln_die(KILN_EXIT_BAD_IMAGE, "disk %s is not a regular file or block device", d->path);
	}
	if (strlen(o->cmdline) > bz.cmdline_max)
		kiln_die(KILN_EXIT_USAGE, "--cmdline is %zu bytes, kernel %s accepts at most %u",
			 strlen(o->cmdline), o->kernel, bz.cmdline_max);
	snprintf(m->cmdline, sizeof(m->cmdline), "%s", o->cmdline);

	/* 2. The VM and its event loop. */
	if (vm_create(&m->vm, mem_bytes, o->vcpus) < 0)
		goto fail;
	/* The prefault (prefault.h) runs on a thread of its own while the images load (step 4),
	 * then on this thread while the vCPUs run: it pays only where the host lets kiln-vmm use a
	 * CPU beyond one per vCPU; else it takes the vCPUs' CPU time for pages they may fault in
	 * anyway (figures: README, --mem). Asked now: the loop's filter has no sched_getaffinity. */
	cpu_set_t cpus;
	int prefault_on = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 &&
			  (unsigned int)CPU_COUNT(&cpus) > o->vcpus;
	if ((r = evloop_init(&m->loop)) < 0 ||
	    (r = evloop_add(&m->loop, m->vm.stop_efd, EPOLLIN, on_stop, &m->loop)) < 0) {
		kiln_warn_errno(-r, "event loop");
		goto fail;
	}

	/* 3. Devices, in table order; each virtio device adds itself to the command line. */
	for (devs = 0; devs < ARRAY_SIZE(devtab); devs++) {
		if ((r = devtab[devs].setup(m)) < 0) {
			if (r == -ENOSPC)
				kiln_warn("%s: the kernel command line has no room left for the device", devtab[devs].name);
			else
				kiln_warn_errno(-r, "%s", devtab[devs].name);
			devs++; /* its teardown copes with a partial set-up */
			goto fail;
		}
	}
	if (strlen(m->cmdline) > bz.cmdline_max) {
		kiln_warn("the command line with the devices is %zu bytes, kernel %s accepts at most %u",
			  strlen(m->cmdline), o->kernel, bz.cmdline_max);
		vmm_teardown(m, devs);
		return KILN_EXIT_USAGE;
	}

	/* 4. The vCPUs, then the boot state in guest memory. While the images load (tens of ms), a
	 * thread populates the RAM the kernel touches first; the loop goes on after. It starts after
	 * the vCPUs are made: their mmap, like any other, would wait for its current step. */
	if (vm_create_vcpus(&m->vm, bz.entry) < 0)
		goto fail;
	if (prefault_on) {
		prefault_plan(&m->pf, &m->vm.mem, &bz);
		if ((r = prefault_early_start(&m->pf_early, &m->pf)) < 0)
			kiln_warn_errno(-r, "prefault thread"); /* the loop does it all */
	}
	r = boot_write(&m->vm.mem, &layout, &bz, NULL, m->cmdline, initrd_addr, isize);
	if (r == 0) {
		uint8_t *dst = gmem_ptr(&m->vm.mem, bz.load_addr, bz.pm_size);
		r = dst ? read_at(kfd, dst, bz.pm_size, bz.pm_offset) : -EFAULT;
		if (r < 0) {
			kiln_warn("cannot read kernel %s: %s", o->kernel, strerror(-r));
			vmm_teardown(m, devs);
			return KILN_EXIT_BAD_IMAGE;
		}
	}
	if (r == 0 && ifd >= 0) {
		uint8_t *dst = gmem_ptr(&m->vm.mem, initrd_addr, isize);
		r = dst ? read_at(ifd, dst, isize, 0) : -EFAULT;
		if (r < 0) {
			kiln_warn("cannot read initrd %s: %s", o->initrd, strerror(-r));
			vmm_teardown(m, devs);
			return KILN_EXIT_BAD_IMAGE;
		}
	}
	if (r == 0) {
		uint8_t mp[1024];
		int n = mptable_build(mp, sizeof(mp), (uint32_t)BOOT_MPTABLE_ADDR, o->vcpus);
		r = n < 0 ? n : gmem_write(&m->vm.mem, BOOT_MPTABLE_ADDR, mp, (uint64_t)n);
	}
	if (r == 0)
		r = x86_write_boot_tables(&m->vm.mem);
	close(kfd);
	if (ifd >= 0)
		close(ifd);
	if (r < 0) {
		kiln_warn_errno(-r, "cannot write the boot state into guest memory");
		goto fail;
	}

	/* 5. Every thread filtered before the guest's first instruction (seccomp.h: the start
	 * sequence), then run until the guest or an error stops the VM. The vCPU threads exist now,
	 * so the main thread's filter needs no clone; they wait at the gate even when vm_start failed. */
	prefault_early_stop(&m->pf_early); /* no thread without a filter past this point */
	r = vm_start(&m->vm);
	loop_fds(m, &fds);
	dl_iterate_phdr(drop_ro_segment, NULL);
	run = seccomp_install_loop(&fds) == 0;
	run = seccomp_wait_vcpus(vm_started(&m->vm)) == 0 && run && r == 0;
	if (run && o->hold_fd >= 0 && hold(o->hold_fd, m->vm.ncpus) < 0) {
		run = 0;
		not_released = 1;
	}
	seccomp_open_gate(run);
	/* While the guest boots, the loop populates the RAM its kernel is about to touch (prefault.h),
	 * where a CPU is left for it (above). */
	if (prefault_on && m->pf.err == 0)
		evloop_set_idle(&m->loop, prefault_step, &m->pf);
	if (!run)
		vm_request_stop(&m->vm, VM_STOP_ERROR, 0);
	else if ((r = evloop_run(&m->loop)) < 0) {
		kiln_warn_errno(-r, "event loop");
		vm_request_stop(&m->vm, VM_STOP_ERROR, 0);
	}
	vm_join(&m->vm);
	console_final_flush(&m->con);

	int why_stop = atomic_load(&m->vm.stop_reason), status = atomic_load(&m->vm.exit_status);
	uint64_t dropped = serial_out_dropped(&m->con.serial);
	if (dropped)
		kiln_warn("guest console output: %llu bytes dropped (stdout too slow)",
			  (unsigned long long)dropped);
	if (atomic_load(&m->con.irq_errors))
		kiln_warn("serial interrupt injection failed %u times", atomic_load(&m->con.irq_errors));
	vmm_teardown(m, devs);
	if (not_released)
		return KILN_EXIT_NOT_RELEASED;
	switch (why_stop) {
	case VM_STOP_EXIT:
		if (status == 0)
			return KILN_EXIT_OK;
		kiln_warn("guest finished with status %d", status);
		return KILN_EXIT_GUEST_STATUS;
	case VM_STOP_RESET:
		kiln_warn("guest reset (reboot, panic or triple fault)");
		return KILN_EXIT_GUEST_RESET;
	case VM_STOP_FAULT:
		kiln_warn("guest fault (KVM exit %d)", status);
		return KILN_EXIT_GUEST_FAULT;
	default:
		return KILN_EXIT_VMM_ERROR;
	}

fail:
	vmm_teardown(m, devs);
	return KILN_EXIT_VMM_ERROR;
}
