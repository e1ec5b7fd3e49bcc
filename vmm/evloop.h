/* evloop.h: the single-threaded epoll event loop of kiln-vmm's main thread. */
#ifndef KILN_EVLOOP_H
#define KILN_EVLOOP_H

#include <stdint.h>

#include "util.h"

#define EVLOOP_MAX_HANDLERS 4096
#define EVLOOP_MAX_TIMERS   4

/* Called in the loop thread with the epoll events that fired for fd. */
typedef void (*evloop_cb)(void *ctx, int fd, uint32_t events);

/*
 * A one-shot timer run by the loop thread (no fd, no syscall beyond epoll_wait's timeout and the
 * clock). Owned by the caller; registered once with evloop_timer_add.
 */
struct evloop_timer {
	void (*cb)(void *ctx);
	void *ctx;
	uint64_t due_ns; /* CLOCK_MONOTONIC deadline; 0: not armed */
};

struct evloop_handler {
	int fd;            /* -1: free slot */
	evloop_cb cb;
	void *ctx;
};

struct evloop {
	int ep;
	struct evloop_handler *h; /* EVLOOP_MAX_HANDLERS slots, allocated once */
	unsigned int used;
	int stop;
	struct evloop_timer *timers[EVLOOP_MAX_TIMERS];
	unsigned int ntimers;
	int (*idle)(void *ctx); /* background work step, NULL: none */
	void *idle_ctx;
};

/* Create the loop. 0 or -errno. */
int evloop_init(struct evloop *l) KILN_WUR;

/*
 * Watch fd for events (EPOLLIN, EPOLLOUT, ...); cb(ctx, fd, events) runs in the
 * loop thread. An fd may be registered once. 0, -ENOSPC when all handler slots are
 * taken, or the epoll_ctl error (-EPERM for a regular file).
 */
int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *ctx) KILN_WUR;

/* Change the events watched for a registered fd. 0 or -errno. */
int evloop_mod(struct evloop *l, int fd, uint32_t events) KILN_WUR;

/* Stop watching fd (does not close it). Safe inside a callback, also for other fds. */
void evloop_del(struct evloop *l, int fd);

/*
 * Register timer t (disarmed) whose cb(ctx) the loop runs once per arming, after the fd callbacks
 * of the wake-up in which its deadline has passed. 0, or -ENOSPC beyond EVLOOP_MAX_TIMERS.
 */
int evloop_timer_add(struct evloop *l, struct evloop_timer *t, void (*cb)(void *ctx), void *ctx) KILN_WUR;

/*
 * Arm t to fire delay_ns from now, unless it is already armed: an armed timer keeps its earlier
 * deadline (a burst of arm calls fires once, delay_ns after the first). From the loop thread only.
 */
void evloop_timer_arm(struct evloop_timer *t, uint64_t delay_ns);

/* Disarm t (a no-op when it is not armed). */
void evloop_timer_cancel(struct evloop_timer *t);

/* Unregister t; it never fires after this. Safe inside a callback. */
void evloop_timer_del(struct evloop *l, struct evloop_timer *t);

/*
 * Background work for the loop thread: while set, the loop does not block in epoll_wait and runs
 * step(ctx) once per pass, after that pass's fd callbacks and timers; step does one short piece
 * and returns nonzero while more remains (0: the loop forgets it). One at a time: a new call
 * replaces the old; step NULL clears it.
 */
void evloop_set_idle(struct evloop *l, int (*step)(void *ctx), void *ctx);

/* Run until evloop_stop() is called from a callback. 0, or -errno if epoll_wait fails. */
int evloop_run(struct evloop *l) KILN_WUR;

/* Make evloop_run return after the current batch of callbacks. */
void evloop_stop(struct evloop *l);

/* Close the epoll fd and free the handler table (registered fds stay open). */
void evloop_destroy(struct evloop *l);

#endif
