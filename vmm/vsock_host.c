/* vsock_host.c: Firecracker-compatible Unix-socket side of virtio-vsock, non-blocking on the event loop. */
#include "vsock_host.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* ---- pure parsers ------------------------------------------------------------------------ */

int vsock_parse_opts(char *arg, struct vsock_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_conns = VSOCK_DEFAULT_MAX_CONNS;
	if (!arg || !*arg)
		return -EINVAL;
	bool have_cid = false, have_uds = false, have_max = false;
	char *p = arg;
	while (p) {
		char *next = strchr(p, ',');
		if (next)
			*next++ = '\0';
		uint64_t v;
		int r;
		if (strncmp(p, "cid=", 4) == 0 && !have_cid) {
			if ((r = parse_u64(p + 4, 3, 0xfffffffeull, &v)) != 0)
				return r;
			o->cid = v;
			have_cid = true;
		} else if (strncmp(p, "uds=", 4) == 0 && !have_uds) {
			size_t len = strlen(p + 4);
			if (len == 0 || len >= VSOCK_UDS_MAX)
				return -EINVAL;
			o->uds = p + 4;
			have_uds = true;
		} else if (strncmp(p, "max_conns=", 10) == 0 && !have_max) {
			if ((r = parse_u64(p + 10, 1, VSOCK_MAX_CONNS_LIMIT, &v)) != 0)
				return r;
			o->max_conns = (unsigned int)v;
			have_max = true;
		} else {
			return -EINVAL;
		}
		p = next;
	}
	return have_cid && have_uds ? 0 : -EINVAL;
}

static bool blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

int vsock_handshake_parse(const char *buf, size_t len, uint32_t *port)
{
	static const char kw[] = "connect";
	enum { KW, SEP, DIGITS, TRAIL } st = KW;
	uint64_t val = 0;
	unsigned int digits = 0;
	size_t n = len < VSOCK_HS_LINE_MAX ? len : VSOCK_HS_LINE_MAX;
	for (size_t i = 0; i < n; i++) {
		char ch = buf[i];
		switch (st) {
		case KW: {
			char lc = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
			if (lc != kw[i])
				return -EINVAL;
			if (i + 1 == sizeof(kw) - 1)
				st = SEP;
			break;
		}
		case SEP:
			if (blank(ch))
				break;
			if (ch < '0' || ch > '9' || !blank(buf[i - 1]))
				return -EINVAL;
			st = DIGITS;
			/* fall through */
		case DIGITS:
			if (ch >= '0' && ch <= '9') {
				if (++digits > 10)
					return -EINVAL;
				val = val * 10u + (uint64_t)(ch - '0');
				if (val >= 0xffffffffull) /* VMADDR_PORT_ANY and beyond */
					return -EINVAL;
				break;
			}
			st = TRAIL;
			/* fall through */
		case TRAIL:
			if (ch == '\n') {
				*port = (uint32_t)val;
				return (int)i + 1;
			}
			if (!blank(ch) && ch != '\r')
				return -EINVAL;
			break;
		}
	}
	return n >= VSOCK_HS_LINE_MAX ? -EINVAL : 0;
}

/* ---- timer ------------------------------------------------------------------------------- */

static void timer_update(struct vsock_host *h)
{
	bool want = h->nhs > 0 || h->dev.ntimed > 0;
	if (want == h->timer_armed)
		return;
	struct itimerspec its;
	memset(&its, 0, sizeof(its));
	if (want) {
		its.it_value.tv_nsec = (long)VSOCK_TICK_MS * 1000000L;
		its.it_interval = its.it_value;
	}
	if (timerfd_settime(h->timer_fd, 0, &its, NULL) == 0)
		h->timer_armed = want;
}

/* ---- backend (called by the device, lock held, loop thread) ------------------------------- */

static struct vsock_hconn *hc_alloc(struct vsock_host *h)
{
	if (h->hc_free < 0)
		return NULL;
	struct vsock_hconn *hc = &h->hc[h->hc_free];
	h->hc_free = hc->next_free;
	hc->next_free = -1;
	hc->c = NULL;
	hc->events = 0;
	return hc;
}

static void hc_free(struct vsock_host *h, struct vsock_hconn *hc)
{
	if (hc->events)
		evloop_del(h->loop, hc->fd);
	if (hc->fd >= 0)
		close(hc->fd);
	hc->fd = -1;
	hc->c = NULL;
	hc->events = 0;
	hc->gen++;
	hc->next_free = h->hc_free;
	h->hc_free = (int)(hc - h->hc);
}

static int be_connect(void *ctx, struct vsock_conn *c, uint32_t port)
{
	struct vsock_host *h = ctx;
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	/* Only "<uds>_<decimal port>": nothing the guest sends shapes the path otherwise. */
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", h->path, port);
	h->stats.g2h_connects++;
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		h->stats.g2h_refused++;
		return -ENAMETOOLONG;
	}
	struct vsock_hconn *hc = hc_alloc(h);
	if (!hc)
		return -ENOSPC;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		/* A Unix connect never waits: EAGAIN (backlog full) is a refusal like ENOENT. */
		int err = errno;
		if (fd >= 0)
			close(fd);
		hc_free(h, hc);
		h->stats.g2h_refused++;
		return -err;
	}
	hc->fd = fd;
	hc->c = c;
	c->be = hc;
	return 1;
}

static int be_established(void *ctx, struct vsock_conn *c)
{
	(void)ctx;
	struct vsock_hconn *hc = c->be;
	char line[24];
	int n = snprintf(line, sizeof(line), "OK %u\n", c->host_port);
	/* A fresh socket's buffer is empty: the whole line fits or the client is gone. */
	ssize_t w = send(hc->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	return w == n ? 0 : -EIO;
}

static ssize_t be_send(void *ctx, struct vsock_conn *c, const struct iovec *iov, int iovcnt)
{
	(void)ctx;
	struct vsock_hconn *hc = c->be;
	struct msghdr m;
	memset(&m, 0, sizeof(m));
	m.msg_iov = (struct iovec *)iov;
	m.msg_iovlen = (size_t)iovcnt;
	ssize_t n;
	do
		n = sendmsg(hc->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t be_recv(void *ctx, struct vsock_conn *c, const struct iovec *iov, int iovcnt)
{
	(void)ctx;
	struct vsock_hconn *hc = c->be;
	struct msghdr m;
	memset(&m, 0, sizeof(m));
	m.msg_iov = (struct iovec *)iov;
	m.msg_iovlen = (size_t)iovcnt;
	ssize_t n;
	do
		n = recvmsg(hc->fd, &m, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (n == 0) {
		/* EOF. A peer that only shut its write side leaves us writable (the guest gets SHUTDOWN);
		 * one that closed or vanished shows POLLHUP (the guest gets RST). */
		struct pollfd p = { .fd = hc->fd, .events = POLLOUT };
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)))
			return -EPIPE;
	}
	return n;
}

static void be_shut_wr(void *ctx, struct vsock_conn *c)
{
	(void)ctx;
	struct vsock_hconn *hc = c->be;
	(void)shutdown(hc->fd, SHUT_WR);
}

static void conn_cb(void *ctx, int fd, uint32_t events);

static void be_watch(void *ctx, struct vsock_conn *c, bool rd, bool wr)
{
	struct vsock_host *h = ctx;
	struct vsock_hconn *hc = c->be;
	uint32_t ev = (rd ? (uint32_t)EPOLLIN : 0u) | (wr ? (uint32_t)EPOLLOUT : 0u);
	if (ev == hc->events)
		return;
	int r = 0;
	/* Nothing wanted: leave the loop entirely (a hung-up socket would report EPOLLHUP forever). */
	if (ev == 0)
		evloop_del(h->loop, hc->fd);
	else if (hc->events == 0)
		r = evloop_add(h->loop, hc->fd, ev, conn_cb, hc);
	else
		r = evloop_mod(h->loop, hc->fd, ev);
	if (r == 0)
		hc->events = ev;
	else
		kiln_warn_errno(-r, "vsock: cannot watch a host connection");
}

static void be_release(void *ctx, struct vsock_conn *c)
{
	struct vsock_host *h = ctx;
	struct vsock_hconn *hc = c->be;
	if (hc)
		hc_free(h, hc);
	c->be = NULL;
}

static void be_kick(void *ctx)
{
	struct vsock_host *h = ctx;
	uint64_t one = 1;
	/* eventfd: never blocks short of 2^64-2 pending kicks. */
	if (write(h->kick_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: a kick is already pending, which is all we need. */
	}
}

static const struct vsock_backend host_backend = {
	.connect = be_connect,
	.established = be_established,
	.send = be_send,
	.recv = be_recv,
	.shut_wr = be_shut_wr,
	.watch = be_watch,
	.release = be_release,
	.kick = be_kick,
};

/* ---- event-loop callbacks ---------------------------------------------------------------- */

static void conn_cb(void *ctx, int fd, uint32_t events)
{
	struct vsock_hconn *hc = ctx;
	struct vsock_host *h = hc->h;
	(void)fd;
	if (hc->fd < 0 || !hc->c)
		return; /* stale event for a closed slot */
	uint32_t gen = hc->gen;
	bool err = events & (EPOLLHUP | EPOLLERR);
	if ((events & EPOLLIN) || (err && (hc->events & EPOLLIN)))
		vsock_dev_readable(&h->dev, hc->c);
	if (hc->gen == gen && hc->c && ((events & EPOLLOUT) || (err && (hc->events & EPOLLOUT))))
		vsock_dev_writable(&h->dev, hc->c);
	timer_update(h);
}

static void hs_close(struct vsock_host *h, struct vsock_hs *s)
{
	evloop_del(h->loop, s->fd);
	close(s->fd);
	s->fd = -1;
	s->len = 0;
	h->nhs--;
}

static void hs_cb(void *ctx, int fd, uint32_t events)
{
	struct vsock_hs *s = ctx;
	struct vsock_host *h = s->h;
	(void)events;
	if (s->fd < 0 || s->fd != fd)
		return;
	/* One byte at a time: nothing after the newline (the client's stream) is consumed here. */
	int r = 0;
	uint32_t port = 0;
	while (s->len < VSOCK_HS_LINE_MAX) {
		char ch;
		ssize_t n = recv(fd, &ch, 1, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			r = -EINVAL; /* EOF or error before a full line */
			break;
		}
		s->line[s->len++] = ch;
		r = vsock_handshake_parse(s->line, s->len, &port);
		if (r != 0)
			break;
	}
	if (r == 0)
		r = -EINVAL; /* 32 bytes without a newline */
	if (r < 0) {
		h->stats.hs_bad++;
		hs_close(h, s);
		timer_update(h);
		return;
	}
	/* Hand the socket over from the handshake slot to a connection. */
	evloop_del(h->loop, fd);
	s->fd = -1;
	s->len = 0;
	h->nhs--;
	struct vsock_hconn *hc = hc_alloc(h);
	struct vsock_conn *c = NULL;
	if (!hc) {
		h->stats.hs_refused++;
		close(fd);
	} else {
		hc->fd = fd;
		if (vsock_dev_host_connect(&h->dev, port, hc, &c) != 0) {
			h->stats.hs_refused++;
			hc_free(h, hc);
		} else {
			h->stats.hs_ok++;
			hc->c = c;
		}
	}
	timer_update(h);
}

static void listen_cb(void *ctx, int fd, uint32_t events)
{
	struct vsock_host *h = ctx;
	(void)events;
	for (unsigned int k = 0; k < 16; k++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			break;
		h->stats.accepted++;
		struct vsock_hs *s = NULL;
		for (unsigned int i = 0; i < VSOCK_HS_MAX; i++)
			if (h->hs[i].fd < 0) {
				s = &h->hs[i];
				break;
			}
		if (!s || evloop_add(h->loop, cfd, EPOLLIN, hs_cb, s) != 0) {
			h->stats.hs_full++;
			close(cfd);
			continue;
		}
		s->fd = cfd;
		s->len = 0;
		s->deadline_ms = vsock_now_ms() + VSOCK_TIMEOUT_MS;
		h->nhs++;
	}
	timer_update(h);
}

static void timer_cb(void *ctx, int fd, uint32_t events)
{
	struct vsock_host *h = ctx;
	(void)events;
	uint64_t ticks;
	if (read(fd, &ticks, sizeof(ticks)) < 0) {
		/* EAGAIN: spurious wake-up; the deadlines are checked anyway. */
	}
	uint64_t now = vsock_now_ms();
	for (unsigned int i = 0; i < VSOCK_HS_MAX && h->nhs > 0; i++) {
		struct vsock_hs *s = &h->hs[i];
		if (s->fd >= 0 && s->deadline_ms <= now) {
			h->stats.hs_timeout++;
			hs_close(h, s);
		}
	}
	if (h->dev.ntimed > 0)
		vsock_dev_tick(&h->dev, now);
	timer_update(h);
}

static void kick_cb(void *ctx, int fd, uint32_t events)
{
	struct vsock_host *h = ctx;
	(void)events;
	uint64_t n;
	if (read(fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: already drained */
	}
	vsock_dev_run(&h->dev);
	timer_update(h);
}

/* ---- set-up and tear-down ---------------------------------------------------------------- */

int vsock_host_init(struct vsock_host *h, struct evloop *l, const struct gmem *mem, uint64_t cid,
		    const char *uds_path, unsigned int max_conns, void (*irq_raise)(void *ctx), void *irq_ctx)
{
	memset(h, 0, sizeof(*h));
	h->listen_fd = h->timer_fd = h->kick_fd = -1;
	for (unsigned int i = 0; i < VSOCK_HS_MAX; i++) {
		h->hs[i].h = h;
		h->hs[i].fd = -1;
	}
	h->loop = l;
	if (max_conns == 0)
		max_conns = VSOCK_DEFAULT_MAX_CONNS;
	if (!uds_path || !*uds_path || strlen(uds_path) >= sizeof(h->path) || max_conns > VSOCK_MAX_CONNS_LIMIT)
		return -EINVAL;
	memcpy(h->path, uds_path, strlen(uds_path) + 1);
	h->max_conns = max_conns;
	h->hc = calloc(max_conns, sizeof(*h->hc));
	if (!h->hc)
		return -ENOMEM;
	for (unsigned int i = 0; i < max_conns; i++) {
		h->hc[i].h = h;
		h->hc[i].fd = -1;
		h->hc[i].next_free = i + 1 < max_conns ? (int)i + 1 : -1;
	}
	h->hc_free = 0;
	int r = vsock_dev_init(&h->dev, mem, cid, max_conns, &host_backend, h, irq_raise, irq_ctx);
	if (r) {
		free(h->hc);
		h->hc = NULL;
		return r;
	}

	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, h->path, strlen(h->path) + 1);
	h->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	h->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	h->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (h->listen_fd < 0 || h->timer_fd < 0 || h->kick_fd < 0) {
		r = -errno;
		goto fail;
	}
	/* bind refuses an existing path (EADDRINUSE): a stale socket is the operator's to remove. */
	if (bind(h->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		r = -errno;
		goto fail;
	}
	if (listen(h->listen_fd, 128) != 0) {
		r = -errno;
		unlink(h->path);
		goto fail;
	}
	if ((r = evloop_add(l, h->listen_fd, EPOLLIN, listen_cb, h)) != 0 ||
	    (r = evloop_add(l, h->timer_fd, EPOLLIN, timer_cb, h)) != 0 ||
	    (r = evloop_add(l, h->kick_fd, EPOLLIN, kick_cb, h)) != 0) {
		evloop_del(l, h->listen_fd);
		evloop_del(l, h->timer_fd);
		unlink(h->path);
		goto fail;
	}
	return 0;
fail:
	if (h->listen_fd >= 0)
		close(h->listen_fd);
	if (h->timer_fd >= 0)
		close(h->timer_fd);
	if (h->kick_fd >= 0)
		close(h->kick_fd);
	h->listen_fd = h->timer_fd = h->kick_fd = -1;
	vsock_dev_destroy(&h->dev);
	free(h->hc);
	h->hc = NULL;
	return r;
}

struct virtio_mmio_dev *vsock_host_mmio(struct vsock_host *h)
{
	return &h->dev.mmio;
}

void vsock_host_destroy(struct vsock_host *h)
{
	if (!h->hc)
		return;
	vsock_dev_destroy(&h->dev); /* releases (closes) every connection */
	for (unsigned int i = 0; i < VSOCK_HS_MAX; i++)
		if (h->hs[i].fd >= 0)
			hs_close(h, &h->hs[i]);
	int *fds[] = { &h->listen_fd, &h->timer_fd, &h->kick_fd };
	for (unsigned int i = 0; i < ARRAY_SIZE(fds); i++) {
		if (*fds[i] >= 0) {
			evloop_del(h->loop, *fds[i]);
			close(*fds[i]);
			*fds[i] = -1;
		}
	}
	unlink(h->path);
	free(h->hc);
	h->hc = NULL;
}
