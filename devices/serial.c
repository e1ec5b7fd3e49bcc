/* serial.c: 8250/16550A UART model as the Linux 8250 driver uses it; TX is instant into a bounded ring, RX is a 64-byte FIFO fed by the host. */
#include "serial.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Register offsets from the base port. */
enum {
	REG_RBR_THR = 0, /* DLAB=1: DLL */
	REG_IER = 1,     /* DLAB=1: DLM */
	REG_IIR_FCR = 2,
	REG_LCR = 3,
	REG_MCR = 4,
	REG_LSR = 5,
	REG_MSR = 6,
	REG_SCR = 7,
};

#define IER_ERDAI 0x01 /* received data available */
#define IER_ETBEI 0x02 /* transmitter holding register empty */
#define IER_ELSI  0x04 /* receiver line status */
#define IER_EDSSI 0x08 /* modem status */
#define IER_MASK  0x0f

#define IIR_NONE   0x01
#define IIR_MSI    0x00
#define IIR_THRI   0x02
#define IIR_RDI    0x04
#define IIR_RLSI   0x06
#define IIR_FIFO   0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04
#define FCR_KEEP     0xc9 /* enable, DMA mode select, RX trigger level */

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS  0x01
#define MSR_DDSR  0x02
#define MSR_TERI  0x04
#define MSR_DDCD  0x08
#define MSR_CTS   0x10
#define MSR_DSR   0x20
#define MSR_RI    0x40
#define MSR_DCD   0x80
#define MSR_DELTA 0x0f

/* Modem status lines seen by the guest: the far end is "present" (DCD DSR CTS),
 * or, in loopback, the MCR outputs wired back (RTS->CTS DTR->DSR OUT1->RI OUT2->DCD). */
static uint8_t msr_lines(uint8_t mcr)
{
	uint8_t v = 0;

	if (!(mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;
	if (mcr & MCR_RTS)
		v |= MSR_CTS;
	if (mcr & MCR_DTR)
		v |= MSR_DSR;
	if (mcr & MCR_OUT1)
		v |= MSR_RI;
	if (mcr & MCR_OUT2)
		v |= MSR_DCD;
	return v;
}

/* RX FIFO depth: 64 with FIFOs enabled, one holding register in 16450 mode. */
static unsigned int rx_cap(const struct serial *s)
{
	return (s->fcr & FCR_ENABLE) ? SERIAL_RX_FIFO : 1;
}

/* Highest-priority pending and enabled interrupt, as IIR bits 0..3. */
static uint8_t iir_source(const struct serial *s)
{
	if ((s->ier & IER_ELSI) && (s->lsr_err & LSR_OE))
		return IIR_RLSI;
	if ((s->ier & IER_ERDAI) && s->rx_count)
		return IIR_RDI;
	if ((s->ier & IER_ETBEI) && s->thri_pending)
		return IIR_THRI;
	if ((s->ier & IER_EDSSI) && (s->msr_delta & MSR_DELTA))
		return IIR_MSI;
	return IIR_NONE;
}

/* Drive the IRQ line to match the pending state; calls ops.irq only on a change. */
static void update_irq(struct serial *s)
{
	bool level = iir_source(s) != IIR_NONE;

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	if (s->ops.irq)
		s->ops.irq(s->ctx, level ? 1 : 0);
}

/*
 * The host may push only while the guest has the port open: RX interrupts wanted, OUT2 raised
 * (a PC UART's interrupt gate, which Linux's 8250 driver raises when the tty is opened) and
 * loopback off. Not on ERDAI alone: the driver's probe sets IER to 0x0f for a moment to see
 * that the UART exists, and bytes pushed then were lost when it cleared the FIFOs at open
 * (seen in the emulated host with one CPU: "hello" arrived as "llo").
 */
static bool rx_gate_open(const struct serial *s)
{
	return (s->ier & IER_ERDAI) && (s->mcr & MCR_OUT2) && !(s->mcr & MCR_LOOP);
}

static size_t rx_room_locked(const struct serial *s)
{
	if (!rx_gate_open(s))
		return 0;
	return rx_cap(s) - s->rx_count;
}

/*
 * Tell the host it may push when the gate just opened with room, or when the
 * guest emptied the FIFO. Not on every byte read: the host refills in bursts.
 */
static void rx_space_check(struct serial *s, bool was_open, size_t before)
{
	size_t after = rx_room_locked(s);

	if (after > before && (!was_open || s->rx_count == 0) && s->ops.rx_space)
		s->ops.rx_space(s->ctx);
}

static void rx_clear(struct serial *s)
{
	s->rx_head = 0;
	s->rx_count = 0;
}

/* One byte arrives at the receiver; a full FIFO loses it and flags overrun. */
static void rx_put(struct serial *s, uint8_t b)
{
	if (s->rx_count >= rx_cap(s)) {
		s->lsr_err |= LSR_OE;
		return;
	}
	s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_FIFO] = b;
	s->rx_count++;
}

static uint8_t rx_get(struct serial *s)
{
	uint8_t b;

	if (!s->rx_count)
		return 0;
	b = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_RX_FIFO;
	s->rx_count--;
	return b;
}

/*
 * Transmit one byte: loopback into RX, or append to the output ring (drop when full). out_ready
 * fires when the ring stops being empty and when it reaches half full, never once per byte.
 */
static void tx_byte(struct serial *s, uint8_t b)
{
	if (s->mcr & MCR_LOOP) {
		rx_put(s, b);
		return;
	}
	if (s->out_len >= s->out_cap) {
		s->out_dropped++;
		return;
	}
	s->out[(s->out_head + s->out_len) % s->out_cap] = b;
	s->out_len++;
	if ((s->out_len == 1 || s->out_len == s->out_high) && s->ops.out_ready)
		s->ops.out_ready(s->ctx);
}

int serial_init(struct serial *s, size_t out_cap, const struct serial_ops *ops, void *ctx)
{
	int err;

	if (out_cap == 0)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->out = malloc(out_cap);
	if (!s->out)
		return -ENOMEM;
	err = pthread_mutex_init(&s->lock, NULL);
	if (err) {
		free(s->out);
		s->out = NULL;
		return -err;
	}
	if (ops)
		s->ops = *ops;
	s->ctx = ctx;
	s->out_cap = out_cap;
	s->out_high = out_cap / 2;
	s->dll = 12;
	return 0;
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_destroy(&s->lock);
	free(s->out);
	s->out = NULL;
	s->out_cap = 0;
	s->out_len = 0;
}

static void write_locked(struct serial *s, uint16_t off, uint8_t val)
{
	bool dlab = s->lcr & LCR_DLAB;
	uint8_t old;

	switch (off) {
	case REG_RBR_THR:
		if (dlab) {
			s->dll = val;
			break;
		}
		/* Writing THR acknowledges the THR-empty interrupt; the byte leaves at
		 * once, the holding register is empty again and the interrupt re-arms.
		 * The line therefore pulses low then high when it is the only source. */
		s->thri_pending = false;
		update_irq(s);
		tx_byte(s, val);
		s->thri_pending = true;
		break;
	case REG_IER:
		if (dlab) {
			s->dlm = val;
			break;
		}
		old = s->ier;
		s->ier = val & IER_MASK;
		/* Enabling ETBEI while THR is empty (always) makes THRI pending. */
		if ((s->ier & IER_ETBEI) && !(old & IER_ETBEI))
			s->thri_pending = true;
		else if (!(s->ier & IER_ETBEI))
			s->thri_pending = false;
		break;
	case REG_IIR_FCR:
		/*
		 * Turning the FIFOs off clears them (as a 16550A does; their bytes could not fit
		 * the one-byte holding register). Turning them on keeps the byte the holding
		 * register has, where a 16550A drops it: Linux's 8250 driver turns the FIFOs off
		 * and on again as it opens the port, after its receive gate is open, and that
		 * byte was the first one the user typed (seen: "hello" arrived as "ello").
		 * FCR_CLEAR_RX still clears. The other bits only take effect while the enable
		 * bit is written as 1.
		 */
		if ((s->fcr & FCR_ENABLE) && !(val & FCR_ENABLE))
			rx_clear(s);
		if (val & FCR_ENABLE) {
			if (val & FCR_CLEAR_RX)
				rx_clear(s);
			/* FCR_CLEAR_TX: the transmitter never holds data here. */
			s->fcr = val & FCR_KEEP;
		} else {
			s->fcr = 0;
		}
		break;
	case REG_LCR:
		s->lcr = val;
		break;
	case REG_MCR: {
		uint8_t before = msr_lines(s->mcr);
		uint8_t after;

		s->mcr = val & MCR_MASK;
		after = msr_lines(s->mcr);
		if ((before ^ after) & MSR_CTS)
			s->msr_delta |= MSR_DCTS;
		if ((before ^ after) & MSR_DSR)
			s->msr_delta |= MSR_DDSR;
		if ((before & MSR_RI) && !(after & MSR_RI))
			s->msr_delta |= MSR_TERI;
		if ((before ^ after) & MSR_DCD)
			s->msr_delta |= MSR_DDCD;
		break;
	}
	case REG_LSR:
	case REG_MSR:
		/* Factory test registers: writes ignored. */
		break;
	case REG_SCR:
		s->scr = val;
		break;
	default:
		break;
	}
}

void serial_pio_write(struct serial *s, uint16_t off, uint8_t val)
{
	size_t room;
	bool open;

	if (off > REG_SCR)
		return;
	pthread_mutex_lock(&s->lock);
	open = rx_gate_open(s);
	room = rx_room_locked(s);
	write_locked(s, off, val);
	update_irq(s);
	rx_space_check(s, open, room);
	pthread_mutex_unlock(&s->lock);
}

static uint8_t read_locked(struct serial *s, uint16_t off)
{
	bool dlab = s->lcr & LCR_DLAB;
	uint8_t v;

	switch (off) {
	case REG_RBR_THR:
		return dlab ? s->dll : rx_get(s);
	case REG_IER:
		return dlab ? s->dlm : s->ier;
	case REG_IIR_FCR:
		v = iir_source(s);
		/* Reading IIR acknowledges THRI only when it is the reported source. */
		if (v == IIR_THRI)
			s->thri_pending = false;
		if (s->fcr & FCR_ENABLE)
			v |= IIR_FIFO;
		return v;
	case REG_LCR:
		return s->lcr;
	case REG_MCR:
		return s->mcr;
	case REG_LSR:
		v = LSR_THRE | LSR_TEMT | s->lsr_err;
		if (s->rx_count)
			v |= LSR_DR;
		s->lsr_err = 0;
		return v;
	case REG_MSR:
		v = (uint8_t)(msr_lines(s->mcr) | s->msr_delta);
		s->msr_delta = 0;
		return v;
	case REG_SCR:
		return s->scr;
	default:
		return 0xff;
	}
}

uint8_t serial_pio_read(struct serial *s, uint16_t off)
{
	size_t room;
	bool open;
	uint8_t v;

	if (off > REG_SCR)
		return 0xff;
	pthread_mutex_lock(&s->lock);
	open = rx_gate_open(s);
	room = rx_room_locked(s);
	v = read_locked(s, off);
	update_irq(s);
	rx_space_check(s, open, room);
	pthread_mutex_unlock(&s->lock);
	return v;
}

size_t serial_rx_room(struct serial *s)
{
	size_t room;

	pthread_mutex_lock(&s->lock);
	room = rx_room_locked(s);
	pthread_mutex_unlock(&s->lock);
	return room;
}

size_t serial_rx_push(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = rx_room_locked(s);
	if (n > len)
		n = len;
	for (size_t i = 0; i < n; i++)
		rx_put(s, buf[i]);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial_out_take(struct serial *s, uint8_t *buf, size_t len)
{
	size_t n, first;

	pthread_mutex_lock(&s->lock);
	n = len < s->out_len ? len : s->out_len;
	first = s->out_cap - s->out_head;
	if (first > n)
		first = n;
	if (n) {
		memcpy(buf, s->out + s->out_head, first);
		memcpy(buf + first, s->out, n - first);
	}
	s->out_head = s->out_len == n ? 0 : (s->out_head + n) % s->out_cap;
	s->out_len -= n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial_out_pending(struct serial *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->out_len;
	pthread_mutex_unlock(&s->lock);
	return n;
}

uint64_t serial_out_dropped(struct serial *s)
{
	uint64_t d;

	pthread_mutex_lock(&s->lock);
	d = s->out_dropped;
	pthread_mutex_unlock(&s->lock);
	return d;
}
