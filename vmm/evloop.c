/* evloop.c: the single-threaded epoll event loop of kiln-vmm's main thread. */
#include "evloop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

int evloop_init(struct evloop *l)
{
	l->used = 0;
	l->stop = 0;
	l->ntimers = 0;
	l->idle = NULL;
	l->idle_ctx = NULL;
	l->h = calloc(EVLOOP_MAX_HANDLERS, sizeof(*l->h));
	if (!l->h)
		return -ENOMEM;
	for (unsigned int i = 0; i < EVLOOP_MAX_HANDLERS; i++)
		l->h[i].fd = -1;
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	if (l->ep < 0) {
		int r = -errno;
		free(l->h);
		l->h = NULL;
		return r;
	}
	return 0;
}

static struct evloop_handler *find(struct evloop *l, int fd)
{
	for (unsigned int i = 0; i < l->used; i++)
		if (l->h[i].fd == fd)
			return &l->h[i];
	return NULL;
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *ctx)
{
	struct evloop_handler *h = NULL;
	if (fd < 0 || find(l, fd))
		return -EINVAL;
	for (unsigned int i = 0; i < l->used; i++)
		if (l->h[i].fd < 0) {
			h = &l->h[i];
			break;
		}
	if (!h) {
		if (l->used >= EVLOOP_MAX_HANDLERS)
			return -ENOSPC;
		h = &l->h[l->used++];
	}
	struct epoll_event ev = { .events = events, .data.ptr = h };
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	h->fd = fd;
	h->cb = cb;
	h->ctx = ctx;
	return 0;
}

int evloop_mod(struct evloop *l, int fd, uint32_t events)
{
	struct evloop_handler *h = fd >= 0 ? find(l, fd) : NULL;
	if (!h)
		return -ENOENT;
	struct epoll_event ev = { .events = events, .data.ptr = h };
	return epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void evloop_del(struct evloop *l, int fd)
{
	struct evloop_handler *h = fd >= 0 ? find(l, fd) : NULL;
	if (!h)
		return;
	(void)epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL);
	h->fd = -1; /* a pending event for this slot in the current batch is skipped */
	h->cb = NULL;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int evloop_timer_add(struct evloop *l, struct evloop_timer *t, void (*cb)(void *ctx), void *ctx)
{
	if (l->ntimers >= EVLOOP_MAX_TIMERS)
		return -ENOSPC;
	t->cb = cb;
	t->ctx = ctx;
	t->due_ns = 0;
	l->timers[l->ntimers++] = t;
	return 0;
}

void evloop_timer_arm(struct evloop_timer *t, uint64_t delay_ns)
{
	if (t->due_ns == 0)
		t->due_ns = now_ns() + delay_ns + 1; /* + 1: never 0, the "not armed" mark */
}

void evloop_timer_cancel(struct evloop_timer *t)
{
	t->due_ns = 0;
}

void evloop_timer_del(struct evloop *l, struct evloop_timer *t)
{
	for (unsigned int i = 0; i < l->ntimers; i++) {
		if (l->timers[i] == t) {
			t->due_ns = 0;
			l->timers[i] = l->timers[--l->ntimers];
			return;
		}
	}
}

/* epoll_wait timeout for the nearest armed timer: -1 (none), 0 (due), else ms rounded up. */
static int next_timeout_ms(const struct evloop *l)
{
	uint64_t first = 0, now;

	for (unsigned int i = 0; i < l->ntimers; i++) {
		uint64_t d = l->timers[i]->due_ns;
		if (d && (!first || d < first))
			first = d;
	}
	if (!first)
		return -1;
	now = now_ns();
	if (first <= now)
		return 0;
	uint64_t ms = (first - now + 999999u) / 1000000u;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/*
 * Fire the timers whose deadline has passed. A callback may arm, cancel or delete timers; one
 * moved into a slot already visited by a deletion fires on the next pass (its timeout is 0).
 */
static void run_timers(struct evloop *l)
{
	uint64_t now = 0; /* read once, and only when a timer is armed: where the vDSO cannot read
			   * the clock source (the emulated host), every read is a syscall */

	for (unsigned int i = 0; i < l->ntimers && !l->stop; i++) {
		struct evloop_timer *t = l->timers[i];
		if (t->due_ns && !now)
			now = now_ns();
		if (t->due_ns && t->due_ns <= now) {
			t->due_ns = 0;
			t->cb(t->ctx);
		}
	}
}

int evloop_run(struct evloop *l)
{
	struct epoll_event evs[64];
	while (!l->stop) {
		int n = epoll_wait(l->ep, evs, 64, l->idle ? 0 : next_timeout_ms(l));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			struct evloop_handler *h = evs[i].data.ptr;
			if (h->fd >= 0 && h->cb)
				h->cb(h->ctx, h->fd, evs[i].events);
		}
		if (l->ntimers && !l->stop)
			run_timers(l);
		int (*step)(void *) = l->idle;
		if (step && !l->stop && !step(l->idle_ctx) && l->idle == step)
			l->idle = NULL;
	}
	return 0;
}

void evloop_set_idle(struct evloop *l, int (*step)(void *ctx), void *ctx)
{
	l->idle = step;
	l->idle_ctx = ctx;
}

void evloop_stop(struct evloop *l)
{
	l->stop = 1;
}

void evloop_destroy(struct evloop *l)
{
	if (l->ep >= 0)
		close(l->ep);
	l->ep = -1;
	free(l->h);
	l->h = NULL;
}
