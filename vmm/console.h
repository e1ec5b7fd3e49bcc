/* console.h: wires the COM1 serial device to the VMM's stdin and stdout through the event loop. */
#ifndef KILN_CONSOLE_H
#define KILN_CONSOLE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/serial.h"
#include "evloop.h"
#include "util.h"

#define CONSOLE_OUT_CAP (64 * 1024) /* bound of buffered guest console output */
/*
 * Guest output waits up to this long in the ring before the loop writes it out, unless half the
 * ring fills first: one wake-up of the loop thread per batch, not per byte (each byte is a VM
 * exit; waking the loop for each doubled the thread switches of a console flood).
 */
#define CONSOLE_FLUSH_DELAY_NS (5 * 1000 * 1000)
#define CONSOLE_IRQ 4

struct vm;

struct console {
	struct serial serial;
	struct vm *vm;
	struct evloop *loop;
	int out_efd;    /* guest output available */
	int rx_efd;     /* guest can take more input */
	int in_fd;      /* host input; -1 once at EOF or on error */
	int in_regular; /* in_fd cannot be polled (regular file): always readable */
	int in_watch;   /* in_fd is registered with the loop */
	int out_watch;  /* stdout is registered for EPOLLOUT */
	int out_flags;  /* stdout's original status flags, -1 if untouched */
	int out_dead;   /* stdout is gone: output is discarded */
	int timer_added; /* flush_timer is registered with the loop */
	struct evloop_timer flush_timer; /* deferred write-out of a batch of guest output */
	uint8_t pend[4096];
	size_t pend_off, pend_len;
	uint8_t in_buf[SERIAL_RX_FIFO];
	size_t in_off, in_len;
	_Atomic unsigned int irq_errors;
};

/*
 * Set up the serial device and its host side: guest output to stdout (made
 * non-blocking; restored by console_destroy), stdin into the guest's receive FIFO,
 * never more than the FIFO has room for (host input is never buffered beyond 64
 * bytes). Registers its fds with loop. Call from the loop thread before vCPUs run.
 */
int console_init(struct console *c, struct vm *vm, struct evloop *loop) KILN_WUR;

/* After the vCPUs stopped: give stdout up to 2 s for what is still buffered. */
void console_final_flush(struct console *c);

/* Unregister, restore stdout's flags, free the device. */
void console_destroy(struct console *c);

#endif
