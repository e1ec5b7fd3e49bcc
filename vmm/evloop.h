/* evloop.h: the single-threaded epoll event loop of kiln-vmm's main thread. */
#ifndef KILN_EVLOOP_H
#define KILN_EVLOOP_H

#include <stdint.h>

#include "util.h"

#define EVLOOP_MAX_HANDLERS 4096

/* Called in the loop thread with the epoll events that fired for fd. */
typedef void (*evloop_cb)(void *ctx, int fd, uint32_t events);

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

/* Run until evloop_stop() is called from a callback. 0, or -errno if epoll_wait fails. */
int evloop_run(struct evloop *l) KILN_WUR;

/* Make evloop_run return after the current batch of callbacks. */
void evloop_stop(struct evloop *l);

/* Close the epoll fd and free the handler table (registered fds stay open). */
void evloop_destroy(struct evloop *l);

#endif
