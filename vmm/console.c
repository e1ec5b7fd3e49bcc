/* console.c: wires the COM1 serial device to the VMM's stdin and stdout through the event loop. */
#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vm.h"

static void efd_kick(int fd)
{
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof(one));
	(void)n; /* saturation only means a wake-up is already pending */
}

static void efd_drain(int fd)
{
	uint64_t v;
	ssize_t n = read(fd, &v, sizeof(v));
	(void)n;
}

/* Device callbacks: called with the device lock held, from vCPU or loop thread. */
static void irq_cb(void *ctx, int level)
{
	struct console *c = ctx;
	/* The IOAPIC pin is edge-triggered: every assertion is made a fresh rising edge. */
	int r = vm_irq_line(c->vm, CONSOLE_IRQ, 0);
	if (r == 0 && level)
		r = vm_irq_line(c->vm, CONSOLE_IRQ, 1);
	if (r < 0)
		atomic_fetch_add(&c->irq_errors, 1);
}

static void out_cb(void *ctx)
{
	efd_kick(((struct console *)ctx)->out_efd);
}

static void rx_cb(void *ctx)
{
	efd_kick(((struct console *)ctx)->rx_efd);
}

/* Write what is pending, then refill from the device until stdout would block. */
static void flush_out(struct console *c)
{
	for (;;) {
		if (c->pend_len == 0) {
			c->pend_off = 0;
			c->pend_len = serial_out_take(&c->serial, c->pend, sizeof(c->pend));
			if (c->pend_len == 0)
				break;
		}
		if (c->out_dead) {
			c->pend_len = 0;
			continue;
		}
		ssize_t n = write(STDOUT_FILENO, c->pend + c->pend_off, c->pend_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			c->out_dead = 1;
			continue;
		}
		c->pend_off += (size_t)n;
		c->pend_len -= (size_t)n;
	}
	int want = c->pend_len > 0 && !c->out_dead;
	if (want != c->out_watch) {
		if (want)
			c->out_watch = evloop_mod(c->loop, STDOUT_FILENO, EPOLLOUT) == 0;
		else
			c->out_watch = evloop_mod(c->loop, STDOUT_FILENO, 0) == 0 ? 0 : 1;
	}
}

/* Watch stdin only while there is room in the guest FIFO and nothing held back. */
static void update_in_watch(struct console *c)
{
	int want = c->in_fd >= 0 && !c->in_regular && c->in_len == 0 &&
		   serial_rx_room(&c->serial) > 0;
	if (want != c->in_watch)
		c->in_watch = evloop_mod(c->loop, c->in_fd, want ? EPOLLIN : 0) == 0 ? want : c->in_watch;
}

/* Move host input into the guest FIFO. readable: a read will not block. */
static void push_in(struct console *c, int readable)
{
	while (c->in_fd >= 0) {
		if (c->in_len == 0) {
			size_t room = serial_rx_room(&c->serial);
			if (room == 0 || !(readable || c->in_regular))
				break;
			if (room > sizeof(c->in_buf))
				room = sizeof(c->in_buf);
			ssize_t n = read(c->in_fd, c->in_buf, room);
			readable = 0; /* one read per readiness report: the next may block */
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				break;
			if (n <= 0) {
				evloop_del(c->loop, c->in_fd);
				c->in_fd = -1;
				c->in_watch = 0;
				break;
			}
			c->in_off = 0;
			c->in_len = (size_t)n;
		}
		size_t took = serial_rx_push(&c->serial, c->in_buf + c->in_off, c->in_len);
		c->in_off += took;
		c->in_len -= took;
		if (took == 0)
			break;
	}
	if (c->in_fd >= 0)
		update_in_watch(c);
}

/*
 * The device rang: its ring went non-empty or reached half full. Write out at once in the second
 * case (or when stdout is gone: nothing to batch for); otherwise let the batch grow for
 * CONSOLE_FLUSH_DELAY_NS (a timer already armed keeps its deadline).
 */
static void on_out_efd(void *ctx, int fd, uint32_t ev)
{
	struct console *c = ctx;
	(void)ev;
	efd_drain(fd);
	if (c->out_dead || serial_out_pending(&c->serial) >= CONSOLE_OUT_CAP / 2)
		flush_out(c);
	else
		evloop_timer_arm(&c->flush_timer, CONSOLE_FLUSH_DELAY_NS);
}

static void on_flush_timer(void *ctx)
{
	flush_out(ctx);
}

static void on_stdout(void *ctx, int fd, uint32_t ev)
{
	(void)fd;
	struct console *c = ctx;
	if (ev & (EPOLLERR | EPOLLHUP))
		c->out_dead = 1;
	flush_out(c);
}

static void on_rx_efd(void *ctx, int fd, uint32_t ev)
{
	(void)ev;
	efd_drain(fd);
	push_in(ctx, 0);
}

static void on_stdin(void *ctx, int fd, uint32_t ev)
{
	(void)fd;
	(void)ev;
	push_in(ctx, 1); /* EPOLLHUP too: the read sees EOF */
}

int console_init(struct console *c, struct vm *vm, struct evloop *loop)
{
	static const struct serial_ops ops = { irq_cb, out_cb, rx_cb };
	int r;

	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->loop = loop;
	c->in_fd = STDIN_FILENO;
	c->out_flags = -1;
	c->out_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->rx_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->out_efd < 0 || c->rx_efd < 0)
		return -errno;
	if ((r = serial_init(&c->serial, CONSOLE_OUT_CAP, &ops, c)) < 0)
		return r;
	if ((r = evloop_timer_add(loop, &c->flush_timer, on_flush_timer, c)) < 0)
		return r;
	c->timer_added = 1;
	if ((r = evloop_add(loop, c->out_efd, EPOLLIN, on_out_efd, c)) < 0 ||
	    (r = evloop_add(loop, c->rx_efd, EPOLLIN, on_rx_efd, c)) < 0)
		return r;

	int fl = fcntl(STDOUT_FILENO, F_GETFL);
	if (fl >= 0 && fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK) == 0)
		c->out_flags = fl;
	r = evloop_add(loop, STDOUT_FILENO, 0, on_stdout, c);
	if (r == -EPERM)
		r = 0; /* a regular file never blocks and cannot be polled */
	else if (r < 0)
		c->out_dead = 1;

	if (fcntl(STDIN_FILENO, F_GETFL) < 0) {
		c->in_fd = -1; /* no stdin at all */
	} else {
		r = evloop_add(loop, STDIN_FILENO, 0, on_stdin, c);
		if (r == -EPERM)
			c->in_regular = 1;
		else if (r < 0)
			c->in_fd = -1;
	}
	return 0;
}

void console_final_flush(struct console *c)
{
	for (int tries = 0; tries < 20; tries++) {
		flush_out(c);
		if (c->pend_len == 0 || c->out_dead)
			break;
		struct pollfd p = { .fd = STDOUT_FILENO, .events = POLLOUT };
		(void)poll(&p, 1, 100);
	}
}

void console_destroy(struct console *c)
{
	if (c->loop) {
		evloop_del(c->loop, STDOUT_FILENO);
		if (c->in_fd >= 0)
			evloop_del(c->loop, c->in_fd);
		evloop_del(c->loop, c->out_efd);
		evloop_del(c->loop, c->rx_efd);
		if (c->timer_added)
			evloop_timer_del(c->loop, &c->flush_timer);
		c->timer_added = 0;
	}
	if (c->out_flags >= 0)
		(void)fcntl(STDOUT_FILENO, F_SETFL, c->out_flags);
	if (c->out_efd >= 0)
		close(c->out_efd);
	if (c->rx_efd >= 0)
		close(c->rx_efd);
	if (c->serial.out)
		serial_destroy(&c->serial);
	c->out_efd = c->rx_efd = -1;
}
