/* serial.h: 8250/16550A UART (COM1) device model; no KVM, driven by the VMM through register accesses and host-side push/take. */
#ifndef KILN_SERIAL_H
#define KILN_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Callbacks into the VMM. Every callback is invoked WITH the device lock held,
 * from whichever thread made the call that caused it (a vCPU thread for
 * register accesses, the host thread for serial_rx_push). A callback must not
 * call back into this device (it would deadlock) and must not block on a lock
 * that a thread calling into this device may hold. Writing an eventfd or doing
 * KVM_IRQ_LINE is fine. Any member may be NULL.
 */
struct serial_ops {
	void (*irq)(void *ctx, int level);   /* set the IRQ line level (1 asserted, 0 deasserted); the VMM maps it to KVM_IRQ_LINE on IRQ 4 */
	/* output ring went from empty to non-empty, or filled to half its size: host should drain
	 * (at once after the second; it may batch after the first, see serial_out_pending) */
	void (*out_ready)(void *ctx);
	void (*rx_space)(void *ctx);         /* guest consumed rx data, or enabled receive interrupts: host may push more */
};

#define SERIAL_RX_FIFO 64

_Static_assert(SERIAL_RX_FIFO > 0 && (SERIAL_RX_FIFO & (SERIAL_RX_FIFO - 1)) == 0,
	       "SERIAL_RX_FIFO must be a power of two");

/*
 * Device state. Everything is inline except the output ring. All fields are
 * protected by `lock`; tests and fuzzers may read them only while no other
 * thread uses the device.
 */
struct serial {
	pthread_mutex_t lock;
	struct serial_ops ops; /* copied at init */
	void *ctx;

	/* Registers. */
	uint8_t ier;       /* interrupt enable, low nibble only */
	uint8_t lcr;       /* line control; bit 7 is DLAB */
	uint8_t mcr;       /* modem control, low 5 bits (DTR RTS OUT1 OUT2 LOOP) */
	uint8_t fcr;       /* FIFO control as last programmed: enable, DMA mode, trigger level */
	uint8_t scr;       /* scratch */
	uint8_t dll, dlm;  /* divisor latch */
	uint8_t lsr_err;   /* sticky LSR error bits (OE), cleared by reading LSR */
	uint8_t msr_delta; /* MSR delta bits (low nibble), cleared by reading MSR */
	bool thri_pending; /* THR-empty interrupt pending (see serial.c) */
	bool irq_level;    /* last level passed to ops.irq */

	/* Receive FIFO: guest reads from rx[rx_head], rx_count bytes queued. */
	uint8_t rx[SERIAL_RX_FIFO];
	unsigned int rx_head;
	unsigned int rx_count;

	/* Output ring: guest THR writes land here until the host takes them. */
	uint8_t *out;
	size_t out_cap;
	size_t out_head;   /* index of the oldest byte */
	size_t out_len;    /* bytes queued, never above out_cap */
	size_t out_high;   /* out_len at which out_ready is called a second time: out_cap / 2 */
	uint64_t out_dropped;
};

/*
 * Set up the device in its power-on state (IER=0, LCR=0, MCR=0, FIFOs off,
 * divisor 12 = 9600 baud, IRQ line deasserted without calling ops->irq).
 * out_cap bounds the output ring (bytes), allocated here once and never grown.
 * ops may be NULL (no callbacks); it is copied, ctx is passed to each callback.
 * Returns 0, -EINVAL when out_cap is 0, -ENOMEM, or the error of
 * pthread_mutex_init. On failure nothing needs to be destroyed.
 */
int serial_init(struct serial *s, size_t out_cap, const struct serial_ops *ops, void *ctx)
	__attribute__((warn_unused_result));

/*
 * Free the output ring and the lock. Call once, after a successful
 * serial_init, when no other thread can call into the device any more.
 */
void serial_destroy(struct serial *s);

/*
 * Guest write of val to port 0x3f8 + off (off 0..7; anything else is ignored).
 * Never blocks on the host: a THR write with a full output ring drops the byte
 * and counts it (serial_out_dropped). May call irq, out_ready, rx_space.
 */
void serial_pio_write(struct serial *s, uint16_t off, uint8_t val);

/*
 * Guest read of port 0x3f8 + off (off 0..7; anything else reads 0xff).
 * Reads have the 16550 side effects: RBR pops the RX FIFO, IIR acknowledges a
 * THR-empty interrupt it reports, LSR clears OE, MSR clears the delta bits.
 * May call irq and rx_space.
 */
uint8_t serial_pio_read(struct serial *s, uint16_t off);

/*
 * Bytes the host may push now. 0 while the guest has not enabled the
 * receive-data interrupt (IER bit 0) or loopback is on, so early host input is
 * held back in the host pipe rather than lost when the Linux driver clears the
 * FIFO at startup. Otherwise the free space of the RX FIFO (64 bytes with
 * FIFOs on, 1 byte in 16450 mode). ops->rx_space is called when the gate
 * opens with room, and when the guest empties the FIFO (not on every byte
 * read), so a host holding input back pushes again in bursts.
 */
size_t serial_rx_room(struct serial *s);

/*
 * Host input: queue up to serial_rx_room() bytes of buf into the RX FIFO and
 * return how many were taken (the caller keeps the rest for later). Never
 * overruns. May call irq.
 */
size_t serial_rx_push(struct serial *s, const uint8_t *buf, size_t len);

/*
 * Host drains guest output: copy up to len bytes, oldest first, into buf,
 * remove them from the ring and return how many were copied (0 when empty).
 * Calls no callback.
 */
size_t serial_out_take(struct serial *s, uint8_t *buf, size_t len);

/*
 * Bytes queued in the output ring now. With out_ready this lets the host batch: after the
 * empty -> non-empty call it may wait a little for more bytes while fewer than out_cap / 2 are
 * queued (the device calls out_ready again when half the ring is full), rather than wake up and
 * drain for every byte the guest writes.
 */
size_t serial_out_pending(struct serial *s);

/*
 * Bytes the guest wrote while the output ring was full: dropped and counted,
 * never blocks the vCPU and never grows memory.
 */
uint64_t serial_out_dropped(struct serial *s);

#endif
