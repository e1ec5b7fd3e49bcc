/* vsock_host.h: host side of virtio-vsock: Firecracker-compatible Unix-socket multiplexer on the event loop. */
#ifndef KILN_VSOCK_HOST_H
#define KILN_VSOCK_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#include "devices/vsock.h"
#include "evloop.h"
#include "gmem.h"
#include "util.h"

#define VSOCK_HS_MAX 64u          /* host clients still in the CONNECT handshake */
#define VSOCK_HS_LINE_MAX 32u     /* bytes of "CONNECT <port>\n", newline included */
#define VSOCK_UDS_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))
#define VSOCK_TICK_MS 250u        /* timer period while anything has a deadline */

/* --vsock cid=N,uds=PATH[,max_conns=N] */
struct vsock_opts {
	uint64_t cid;
	const char *uds;              /* points into the string given to vsock_parse_opts */
	unsigned int max_conns;
};

/*
 * Parse the --vsock argument in place (commas become NULs). cid in [3, 2^32-2]; uds non-empty,
 * shorter than sun_path; max_conns in [1, VSOCK_MAX_CONNS_LIMIT] (default 1024). Each key at most
 * once, cid and uds required, nothing else. Returns 0 or -EINVAL (-ERANGE for numbers out of range).
 */
int vsock_parse_opts(char *arg, struct vsock_opts *o) KILN_WUR;

/*
 * Parse a host client's handshake line from the len bytes read so far (pure). Accepted:
 * "CONNECT" in any letter case, one or more spaces or tabs, a decimal port (no sign, at most 10
 * digits, < 2^32-1), optional spaces, tabs or '\r', then '\n' within VSOCK_HS_LINE_MAX bytes.
 * Returns the line length (newline included) with *port set; 0 when more bytes are needed (no
 * newline yet, fewer than 32 bytes, and what is there can still become valid); -EINVAL otherwise.
 */
int vsock_handshake_parse(const char *buf, size_t len, uint32_t *port) KILN_WUR;

struct vsock_host;

struct vsock_hs {
	struct vsock_host *h;
	int fd;                       /* -1: free */
	uint64_t deadline_ms;
	size_t len;
	char line[VSOCK_HS_LINE_MAX];
};

struct vsock_hconn {
	struct vsock_host *h;
	int fd;                       /* -1: free slot */
	struct vsock_conn *c;
	uint32_t events;              /* registered epoll events, 0: not registered */
	uint32_t gen;                 /* bumped on release (detects release inside a callback) */
	int next_free;
};

struct vsock_host_stats {
	uint64_t accepted, hs_ok, hs_bad, hs_timeout, hs_full, hs_refused;
	uint64_t g2h_connects, g2h_refused;
};

struct vsock_host {
	struct vsock_dev dev;
	struct evloop *loop;
	int listen_fd, timer_fd, kick_fd;
	bool timer_armed;
	char path[VSOCK_UDS_MAX];
	struct vsock_hs hs[VSOCK_HS_MAX];
	unsigned int nhs;
	struct vsock_hconn *hc;       /* max_conns slots */
	unsigned int max_conns;
	int hc_free;
	struct vsock_host_stats stats;
};

/*
 * Create the device (guest CID cid) and its host side: a listening Unix socket at uds_path (must
 * not exist yet: -EADDRINUSE), a timerfd and an eventfd, all on loop l. Call on the event-loop
 * thread (it becomes the device's owner), before any vCPU runs. max_conns 0 means the default.
 * Then map vsock_host_mmio(h) on the MMIO bus and route the ioeventfd of queue q (0, 1, 2) to
 * virtio_mmio_notify(vsock_host_mmio(h), q) in the loop thread. Returns 0 or a negative errno;
 * on failure nothing is left open or created.
 */
int vsock_host_init(struct vsock_host *h, struct evloop *l, const struct gmem *mem, uint64_t cid,
		    const char *uds_path, unsigned int max_conns, void (*irq_raise)(void *ctx),
		    void *irq_ctx) KILN_WUR;

/* The virtio-mmio device to put on the bus. */
struct virtio_mmio_dev *vsock_host_mmio(struct vsock_host *h);

/* Close every connection and fd, take them off the loop, unlink the listening socket. Loop thread,
 * after the vCPUs have stopped. Safe after a failed init. */
void vsock_host_destroy(struct vsock_host *h);

#endif
