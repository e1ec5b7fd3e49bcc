/* test_serial.c: cmocka unit tests for the 8250/16550A UART model (devices/serial.c). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/serial.h"

enum { THR = 0, RBR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

/* What the callbacks saw. */
struct rec {
	int irq_log[64];
	unsigned int nirq;
	int level;
	unsigned int out_ready;
	unsigned int rx_space;
};

static void cb_irq(void *ctx, int level)
{
	struct rec *r = ctx;

	/* The device only reports changes. */
	assert_int_not_equal(level, r->level);
	r->level = level;
	if (r->nirq < sizeof(r->irq_log) / sizeof(r->irq_log[0]))
		r->irq_log[r->nirq] = level;
	r->nirq++;
}

static void cb_out_ready(void *ctx)
{
	((struct rec *)ctx)->out_ready++;
}

static void cb_rx_space(void *ctx)
{
	((struct rec *)ctx)->rx_space++;
}

static const struct serial_ops ops = {
	.irq = cb_irq,
	.out_ready = cb_out_ready,
	.rx_space = cb_rx_space,
};

struct fx {
	struct serial s;
	struct rec r;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (serial_init(&f->s, 4096, &ops, &f->r) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	serial_destroy(&f->s);
	free(f);
	return 0;
}

static void reset_rec(struct rec *r)
{
	int level = r->level;

	memset(r, 0, sizeof(*r));
	r->level = level;
}

static void test_init_errors(void **state)
{
	struct serial s;

	(void)state;
	assert_int_equal(serial_init(&s, 0, &ops, NULL), -EINVAL);
	/* No ops at all is allowed. */
	assert_int_equal(serial_init(&s, 16, NULL, NULL), 0);
	serial_pio_write(&s, IER, 0x0f);
	serial_pio_write(&s, THR, 'x');
	assert_int_equal(serial_pio_read(&s, IIR), 0x02);
	serial_destroy(&s);
}

static void test_reset_state(void **state)
{
	struct fx *f = *state;
	struct serial *s = &f->s;

	assert_int_equal(serial_pio_read(s, IER), 0);
	assert_int_equal(serial_pio_read(s, IIR), 0x01);
	assert_int_equal(serial_pio_read(s, LCR), 0);
	assert_int_equal(serial_pio_read(s, MCR), 0);
	assert_int_equal(serial_pio_read(s, LSR), 0x60);
	assert_int_equal(serial_pio_read(s, MSR), 0xb0);
	assert_int_equal(serial_pio_read(s, SCR), 0);
	assert_int_equal(serial_rx_room(s), 0);
	assert_int_equal(serial_out_dropped(s), 0);
	assert_int_equal(f->r.nirq, 0);
}

static void test_plain_registers(void **state)
{
	struct fx *f = *state;
	struct serial *s = &f->s;

	serial_pio_write(s, SCR, 0xa5);
	assert_int_equal(serial_pio_read(s, SCR), 0xa5);
	serial_pio_write(s, LCR, 0x1b);
	assert_int_equal(serial_pio_read(s, LCR), 0x1b);
	serial_pio_write(s, MCR, 0xff);
	assert_int_equal(serial_pio_read(s, MCR), 0x1f);
	serial_pio_write(s, MCR, 0x0b);
	assert_int_equal(serial_pio_read(s, MCR), 0x0b);
	/* IER keeps the low nibble only (Linux autoconfig checks 0x0f reads back). */
	serial_pio_write(s, IER, 0xff);
	assert_int_equal(serial_pio_read(s, IER), 0x0f);
	serial_pio_write(s, IER, 0);
	assert_int_equal(serial_pio_read(s, IER), 0);
	/* LSR and MSR writes are ignored. */
	serial_pio_write(s, LSR, 0);
	assert_int_equal(serial_pio_read(s, LSR), 0x60);
	serial_pio_write(s, MSR, 0);
	assert_int_equal(serial_pio_read(s, MSR) & 0xf0, 0xb0);
	/* Offsets beyond 7 are ignored and read as 0xff. */
	serial_pio_write(s, 8, 0x12);
	serial_pio_write(s, 0xffff, 0x12);
	assert_int_equal(serial_pio_read(s, 8), 0xff);
	assert_int_equal(serial_pio_read(s, 0xffff), 0xff);
	assert_int_equal(serial_pio_read(s, SCR), 0xa5);
}

static void test_dlab(void **state)
{
	struct fx *f = *state;
	struct serial *s = &f->s;
	uint8_t out[8];

	serial_pio_write(s, IER, 0x05);
	serial_pio_write(s, LCR, 0x80 | 0x03);
	/* Reset divisor is 12 (9600 baud). */
	assert_int_equal(serial_pio_read(s, DLL), 12);
	assert_int_equal(serial_pio_read(s, DLM), 0);
	serial_pio_write(s, DLL, 0x01);
	serial_pio_write(s, DLM, 0x02);
	assert_int_equal(serial_pio_read(s, DLL), 0x01);
	assert_int_equal(serial_pio_read(s, DLM), 0x02);
	/* With DLAB set, offset 0 is not THR: nothing transmitted. */
	assert_int_equal(serial_out_take(s, out, sizeof(out)), 0);
	assert_int_equal(f->r.out_ready, 0);
	/* Offsets 2..7 are unaffected by DLAB. */
	assert_int_equal(serial_pio_read(s, IIR), 0x01);
	assert_int_equal(serial_pio_read(s, LSR), 0x60);
	serial_pio_write(s, LCR, 0x03);
	assert_int_equal(serial_pio_read(s, IER), 0x05);
	serial_pio_write(s, THR, 'A');
	assert_int_equal(serial_out_take(s, out, sizeof(out)), 1);
	assert_int_equal(out[0], 'A');
	serial_pio_write(s, LCR, 0x83);
	assert_int_equal(serial_pio_read(s, DLL), 0x01);
	assert_int_equal(serial_pio_read(s, DLM), 0x02);
}

static void test_thre_interrupt(void **state)
{
	struct fx *f = *state;
	struct serial *s = &f->s;

	/* Enabling ETBEI with THR empty raises THRI. */
	serial_pio_write(s, IER, 0x02);
	assert_int_equal(f->r.nirq, 1);
	assert_int_equal(f->r.level, 1);
	/* LSR does not acknowledge it. */
	assert_int_equal(serial_pio_read(s, LSR), 0x60);
	assert_int_equal(f->r.level, 1);
	/* Reading IIR reports and acknowledges it. */
	assert_int_equal(serial_pio_read(s, IIR), 0x02);
	assert_int_equal(f->r.level, 0);
	assert_int_equal(serial_pio_read(s, IIR), 0x01);
	/* Rewriting IER with ETBEI still set does not re-raise. */
	serial_pio_write(s, IER, 0x02);
	assert_int_equal(f->r.level, 0);
	assert_int_equal(serial_pio_read(s, IIR), 0x01);
	/* Clearing and setting it again does. */
	serial_pio_write(s, IER, 0x00);
	serial_pio_write(s, IER, 0x02);
	assert_int_equal(f->r.level, 1);
	/* Writing THR acknowledges, the byte leaves at once, THR empty again:
	 * the line pulses 0 then 1. */
	reset_rec(&f->r);
	serial_pio_write(s, THR, 'x');
	assert_int_equal(f->r.nirq, 2);
	assert_int_equal(f->r.irq_log[0], 0);
	assert_int_equal(f->r.irq_log[1], 1);
	assert_int_equal(serial_pio_read(s, LSR) & 0x60, 0x60);
	/* Disabling ETBEI drops the line. */
	serial_pio_write(s, IER, 0x00);
	assert_int_equal(f->r.level, 0);
	assert_int_equal(serial_pio_read(s, IIR), 0x01);
	/* A THR write without ETBEI raises nothing. */
	reset_rec(&f->r);
	serial_pio_write(s, THR, 'y');
	assert_int_equal(f->r.nirq, 0);
	/* With FIFOs on, IIR carries 0xc0. */
	serial_pio_write(s, FCR, 0x01);
	serial_pio_write(s, IER, 0x02);
	assert_int_equal(serial_pio_read(s, IIR), 0xc2);
	assert_int_equal(serial_pio_read(s, IIR), 0xc1);
}

/* Enter loopback and write n bytes through THR into the RX FIFO. */
static void loop_bytes(struct serial *s, uint8_t first, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		serial_pio_write(s, THR, (uint8_t)(first + i));
}

static void test_iir_priority(void **state)
{
	struct fx *f = *state;
	struct serial *s = &f->s;

	serial_pio_write(s, FCR, 0x01);
	serial_pio_write(s, MCR, 0x10);        /* loopback: lines drop, deltas set */
	(void)serial_pio_read(s, MSR);         /* clear those deltas */
	loop_bytes(s, 'a', SERIAL_RX_FIFO + 1); /* FIFO full plus an overrun */
	serial_pio_write(s, MCR, 0x10 | 0x02); /* RTS -> CTS: DCTS delta */
	assert_int_equal(f->r.level, 0);       /* nothing enabled yet */
	assert_int_equal(serial_pio_read(s, IIR), 0xc1);

	/* Each source alone, lowest first, confirms it is gated by its IER bit. */
	serial_pio_write(s, IER, 0x08);
	assert_int_equal(f->r.level, 1);
	assert_int_equal(serial_pio_read(s, IIR), 0xc0);
	serial_pio_write(s, IER, 0x0f);

	/* All four pending: line status first. */
	assert_int_equal(serial_pio_read(s, IIR), 0xc6);
	assert_int_equal(serial_pio_read(s, IIR), 0xc6); /* reading IIR does not clear it */
	assert_int_equal(serial_pio_read(s, LSR), 0x60 | 0x02 | 0x01);
	/* Then received data. */
	assert_int_equal(serial_pio_read(s, IIR), 0xc4);
	assert_int_equal(serial_pio_read(s, LSR), 0x61); /* OE cleared by the previous read */
	for (unsigned int i = 0; i < SERIAL_RX_FIFO; i++) {
		assert_int_equal(serial_pio_read(s, IIR), 0xc4);
		assert_int_equal(serial_pio_read(s, RBR), (uint8_t)('a' + i));
	}
	/* Then THR empty, acknowledged by this read. */
	assert_int_equal(serial_pio_read(s, IIR), 0xc2);
	/* Then modem status, cleared by reading MSR. */
	assert_int_equal(serial_pio_read(s, IIR), 0xc0);
	assert_int_equal(f->r.level, 1);
	assert_int_equal(serial_pio_read(s, MSR), 0x10 | 0x01);
	assert_int_equal(serial_pio_read(s, IIR), 0xc1);
	assert_int_equal(f->r.level, 0);
}

static void test_iir_rda_over_thri(void **state)
{
	struct fx *f = *state;
	struct serial *s = &f->s;
	const uint8_t b = 'z';

	serial_pio_write(s, MCR, 0x08); /* OUT2, as the Linux driver raises it at open */
	serial_pio_write(s, IER, 0x03);
	assert_int_equal(serial_rx_push(s, &b, 1), 1);
	assert_int_equal(serial_pio_read(s, IIR), 0x04);
	assert_int_equal(serial_pio_read(s, IIR), 0x04); /* RDA stays until data read */
	assert_int_equal(serial_pio_read(s, RBR), 'z');
	/* THRI was masked by RDA, never acknowledged: still pending. */
	assert_int_equal(serial_pio_read(s, IIR), 0x02);
	assert_int_equal(serial_pio_read(s, IIR), 0x01);
	assert_int_equal(f->r.level, 0);
	/* RLS over RDA with ELSI, and RLS masked when ELSI is off. */
	serial_pio_write(s, MCR, 0x10);
	loop_bytes(s, '0', 2); /* 16450 mode: one-byte holding register, second overruns */
	assert_int_equal(serial_pio_read(s, IIR), 0x04);
	serial_pio_write(s, IER, 0x05);
	assert_int_equal(serial_pio_read(s, IIR), 0x06);
	assert_int_equal(serial_pio_read(s, LSR), 0x63);
	assert_int_equal(serial_pio_read(s, IIR), 0x04);
	assert_int_equal(serial_pio_read(s, RBR), '0');
	assert_int_equal(serial_pio_read(s, LSR), 0x60);
	assert_int_equal(serial_pio_read(s, IIR), 0x01);
}

static void test_rx_fifo_fill_overrun(void **state)
{
	struct fx *f = *state;
	struct serial *s = &f->s;
	uint8_t buf[SERIAL_RX_FIFO * 2];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	serial_pio_write(s, FCR, 0x01 | 0xc0);
	serial_pio_write(s, MCR, 0x08); /* OUT2, as the Linux driver raises it at open */
	serial_pio_write(s, IER, 0x01);
	assert_int_equal(serial_rx_room(s), SERIAL_RX_FIFO);
	/* Host push never overruns: it takes what fits. */
	assert_int_equal(serial_rx_push(s, buf, sizeof(buf)), SERIAL_RX_FIFO);
	assert_int_equal(serial_rx_room(s), 0);
	assert_int_equal(serial_rx_push(s, buf, sizeof(buf)), 0);
	assert_int_equal(serial_pio_read(s, LSR), 0x61);
	assert_int_equal(f->r.level, 1);
	for (unsigned int i = 0; i < SERIAL_RX_FIFO; i++) {
		assert_int_equal(serial_pio_read(s, LSR) & 0x01, 0x01);
		assert_int_equal(serial_pio_read(s, RBR), i);
	}
	assert_int_equal(serial_pio_read(s, LSR), 0x60);
	assert_int_equal(f->r.level, 0);
	/* Reading an empty RBR is harmless. */
	assert_int_equal(serial_pio_read(s, RBR), 0);
	assert_int_equal(serial_pio_read(s, LSR), 0x60);

	/* Overrun through loopback: the 65th byte is lost and OE is set once. */
	serial_pio_write(s, MCR, 0x10);
	loop_bytes(s, 0x40, SERIAL_RX_FIFO);
	assert_int_equal(serial_pio_read(s, LSR), 0x61);
	loop_bytes(s, 0xee, 3);
	assert_int_equal(serial_pio_read(s, LSR), 0x63);
	assert_int_equal(serial_pio_read(s, LSR), 0x61);
	for (unsigned int i = 0; i < SERIAL_RX_FIFO; i++)
		assert_int_equal(serial_pio_read(s, RBR), 0x40 + i);
	assert_int_equal(serial_pio_read(s, LSR), 0x60);

	/* 16450 mode (FIFOs off): one byte deep. */
	serial_pio_write(s, FCR, 0x00);
	loop_bytes(s, 'p', 1);
	assert_int_equal(serial_pio_read(s, LSR), 0x61);
	loop_bytes(s, 'q', 1);
	assert_int_equal(serial_pio_read(s, LSR), 0x63);
	assert_int_equal(serial_pio_read(s, RBR), 'p');
	assert_int_equal(serial_pio_read(s, LSR), 0x60);
	serial_pio_write(s, MCR, 0x08);
	assert_int_equal(serial_rx_room(s), 1);
}

static void test_fifo_clear(void **state)
{
	struct fx *f = *state;
	struct serial *s = &f->s;
	const uint8_t buf[4] = { 1, 2, 3, 4 };

	serial_pio_write(s, FCR, 0x01);
	serial_pio_write(s, MCR, 0x08); /* OUT2, as the Linux driver raises it at open */
	serial_pio_write(s, IER, 0x01);
	assert_int_equal(serial_rx_push(s, buf, sizeof(buf)), 4);
	assert_int_equal(f->r.level, 1);
	reset_rec(&f->r);
	/* Clear RX (and TX, a no-op): data gone, IRQ drops, host told it may push. */
	serial_pio_write(s, FCR, 0x01 | 0x02 | 0x04);
	assert_int_equal(serial_pio_read(s, LSR), 0x60);
	assert_int_equal(serial_pio_read(s, IIR), 0xc1);
	assert_int_equal(f->r.level, 0);
	assert_int_equal(f->r.rx_space, 1);
	assert_int_equal(serial_rx_room(s), SERIAL_RX_FIFO);

	/* Clear bits are ignored unless the enable bit is written as 1... */
	assert_int_equal(serial_rx_push(s, buf, 1), 1);
	serial_pio_write(s, FCR, 0x01 | 0x04);
	assert_int_equal(serial_pio_read(s, LSR), 0x61);
	/* ...but turning the FIFOs off clears them. */
	serial_pio_write(s, FCR, 0x02);
	assert_int_equal(serial_pio_read(s, LSR), 0x60);
	assert_int_equal(serial_pio_read(s, IIR), 0x01);
	/* Turning them back on keeps the held byte (a 16550A would drop it; see serial.c)... */
	assert_int_equal(serial_rx_push(s, buf, sizeof(buf)), 1);
	serial_pio_write(s, FCR, 0x01);
	assert_int_equal(serial_pio_read(s, LSR), 0x61);
	assert_int_equal(serial_rx_room(s), SERIAL_RX_FIFO - 1);
	assert_int_equal(serial_pio_read(s, RBR), 1);
	assert_int_equal(serial_pio_read(s, LSR), 0x60);
	assert_int_equal(serial_pio_read(s, IIR), 0xc1);
	/* ...and writing the enable bit again while on clears nothing. */
	assert_int_equal(serial_rx_push(s, buf, 2), 2);
	serial_pio_write(s, FCR, 0x01);
	assert_int_equal(serial_rx_room(s), SERIAL_RX_FIFO - 2);
	serial_pio_write(s, FCR, 0x01 | 0x02);
	assert_int_equal(serial_pio_read(s, LSR), 0x60);
	/* Linux probe: FIFO enable makes IIR bits 7:6 read 3 (16550A), bit 5 clear (not a 16750). */
	serial_pio_write(s, FCR, 0x01 | 0x20);
	assert_int_equal(serial_pio_read(s, IIR) >> 5, 6);
}

static void test_loopback(void **state)
{
	struct fx *f = *state;
	struct serial *s = &f->s;
	uint8_t out[4];

	serial_pio_write(s, FCR, 0x01);
	serial_pio_write(s, MCR, 0x08); /* OUT2, as the Linux driver raises it at open */
	serial_pio_write(s, IER, 0x01);
	assert_int_equal(serial_rx_room(s), SERIAL_RX_FIFO);
	/* The Linux autoconfig test: LOOP | RTS | OUT2 reads back CTS | DCD. */
	serial_pio_write(s, MCR, 0x10 | 0x0a);
	assert_int_equal(serial_pio_read(s, MSR) & 0xf0, 0x90);
	assert_int_equal(serial_pio_read(s, MSR), 0x90); /* deltas cleared */
	/* The host may not push in loopback. */
	assert_int_equal(serial_rx_room(s), 0);
	assert_int_equal(serial_rx_push(s, (const uint8_t *)"h", 1), 0);
	/* Every line follows its MCR bit. */
	serial_pio_write(s, MCR, 0x10 | 0x01);
	assert_int_equal(serial_pio_read(s, MSR), 0x20 | 0x08 | 0x02 | 0x01);
	serial_pio_write(s, MCR, 0x10 | 0x04);
	assert_int_equal(serial_pio_read(s, MSR), 0x40 | 0x02);
	/* RI falling edge sets TERI; rising edge does not. */
	serial_pio_write(s, MCR, 0x10);
	assert_int_equal(serial_pio_read(s, MSR), 0x04);
	serial_pio_write(s, MCR, 0x10 | 0x0f);
	assert_int_equal(serial_pio_read(s, MSR), 0xf0 | 0x0b);
	/* THR loops to RX, not to the output ring. */
	reset_rec(&f->r);
	serial_pio_write(s, THR, 'L');
	assert_int_equal(f->r.out_ready, 0);
	assert_int_equal(serial_out_take(s, out, sizeof(out)), 0);
	assert_int_equal(serial_pio_read(s, LSR), 0x61);
	assert_int_equal(f->r.level, 1);
	assert_int_equal(serial_pio_read(s, IIR), 0xc4);
	assert_int_equal(serial_pio_read(s, RBR), 'L');
	assert_int_equal(f->r.level, 0);
	/* Leaving loopback: the far end is back (DCD DSR CTS), RI fell. */
	serial_pio_write(s, MCR, 0x0b);
	assert_int_equal(serial_pio_read(s, MSR), 0xb0 | 0x04);
	assert_int_equal(serial_pio_read(s, MSR), 0xb0);
	assert_int_equal(f->r.rx_space, 1);
	assert_int_equal(serial_rx_room(s), SERIAL_RX_FIFO);
	serial_pio_write(s, THR, 'T');
	assert_int_equal(serial_out_take(s, out, sizeof(out)), 1);
	assert_int_equal(out[0], 'T');
	assert_int_equal(f->r.out_ready, 1);
}

static void test_rx_room_gating(void **state)
{
	struct fx *f = *state;
	struct serial *s = &f->s;
	uint8_t buf[100];

	memset(buf, 'k', sizeof(buf));
	/* Before the guest enables RX interrupts the host holds input back. */
	assert_int_equal(serial_rx_room(s), 0);
	assert_int_equal(serial_rx_push(s, buf, sizeof(buf)), 0);
	serial_pio_write(s, FCR, 0x01);
	serial_pio_write(s, IER, 0x02); /* THRI only: still gated */
	assert_int_equal(serial_rx_room(s), 0);
	assert_int_equal(f->r.rx_space, 0);
	serial_pio_write(s, IER, 0x00);
	/* ERDAI without OUT2 (the driver's probe writes IER 0x0f for a moment) stays gated: the
	 * driver clears the FIFOs when it opens the port, and what was pushed would be lost. */
	serial_pio_write(s, IER, 0x0f);
	assert_int_equal(serial_rx_room(s), 0);
	assert_int_equal(serial_rx_push(s, buf, sizeof(buf)), 0);
	assert_int_equal(f->r.rx_space, 0);
	serial_pio_write(s, IER, 0x00);
	/* OUT2 alone neither. */
	serial_pio_write(s, MCR, 0x08);
	assert_int_equal(serial_rx_room(s), 0);
	assert_int_equal(f->r.rx_space, 0);
	/* Enabling ERDAI with OUT2 up (the driver's open) opens the gate and tells the host. */
	serial_pio_write(s, IER, 0x01);
	assert_int_equal(f->r.rx_space, 1);
	assert_int_equal(serial_rx_room(s), SERIAL_RX_FIFO);
	serial_pio_write(s, IER, 0x01);
	assert_int_equal(f->r.rx_space, 1);
	assert_int_equal(serial_rx_push(s, buf, sizeof(buf)), SERIAL_RX_FIFO);
	assert_int_equal(f->r.level, 1);
	/* Partial reads do not wake the host; draining the FIFO does, once. */
	for (unsigned int i = 0; i < SERIAL_RX_FIFO - 1; i++)
		assert_int_equal(serial_pio_read(s, RBR), 'k');
	assert_int_equal(f->r.rx_space, 1);
	assert_int_equal(serial_rx_room(s), SERIAL_RX_FIFO - 1);
	assert_int_equal(serial_pio_read(s, RBR), 'k');
	assert_int_equal(f->r.rx_space, 2);
	assert_int_equal(f->r.level, 0);
	assert_int_equal(serial_pio_read(s, RBR), 0);
	assert_int_equal(f->r.rx_space, 2);
	/* Disabling ERDAI closes the gate again (driver shutdown). */
	serial_pio_write(s, IER, 0x00);
	assert_int_equal(serial_rx_room(s), 0);
	assert_int_equal(serial_rx_push(s, buf, 1), 0);
	/* A push of zero bytes is fine. */
	serial_pio_write(s, IER, 0x01);
	assert_int_equal(serial_rx_push(s, NULL, 0), 0);
}

static long rss_kib(void)
{
	FILE *fp = fopen("/proc/self/statm", "r");
	long size = 0, resident = 0;

	if (!fp)
		return -1;
	if (fscanf(fp, "%ld %ld", &size, &resident) != 2)
		resident = -1;
	fclose(fp);
	return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_out_ring_bounded(void **state)
{
	const size_t cap = 64 * 1024;
	const size_t total = 10 * 1024 * 1024;
	struct serial s;
	struct rec r;
	uint8_t *buf;
	uint8_t *ring;
	long rss0, rss1;

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_int_equal(serial_init(&s, cap, &ops, &r), 0);
	ring = s.out;
	rss0 = rss_kib();
	for (size_t i = 0; i < total; i++) {
		serial_pio_write(&s, THR, (uint8_t)(i * 7));
		if ((i & 0xffff) == 0)
			assert_true(s.out_len <= cap);
	}
	rss1 = rss_kib();
	/* Same buffer, same bound, exactly the overflow dropped. */
	assert_ptr_equal(s.out, ring);
	assert_int_equal(s.out_cap, cap);
	assert_int_equal(s.out_len, cap);
	assert_int_equal(serial_out_dropped(&s), total - cap);
	/* Two wake-ups for 10 MB: non-empty, then half full; none per byte, none while full. */
	assert_int_equal(r.out_ready, 2);
	assert_int_equal(serial_out_pending(&s), cap);
	if (rss0 >= 0 && rss1 >= 0)
		assert_true(rss1 - rss0 < 4096); /* far below the 10 MB written */
	/* What is kept is the oldest output, in order. */
	buf = malloc(cap + 1);
	assert_non_null(buf);
	assert_int_equal(serial_out_take(&s, buf, cap + 1), cap);
	for (size_t i = 0; i < cap; i++)
		assert_int_equal(buf[i], (uint8_t)(i * 7));
	assert_int_equal(serial_out_take(&s, buf, cap), 0);
	free(buf);
	serial_destroy(&s);
}

static void write_str(struct serial *s, const char *p)
{
	while (*p)
		serial_pio_write(s, THR, (uint8_t)*p++);
}

static void test_drain_ordering(void **state)
{
	struct serial s;
	struct rec r;
	uint8_t buf[16];

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_int_equal(serial_init(&s, 8, &ops, &r), 0);
	assert_int_equal(serial_out_take(&s, buf, sizeof(buf)), 0);
	write_str(&s, "abcdef");
	assert_int_equal(r.out_ready, 2); /* "a": non-empty; "d": half of 8 */
	assert_int_equal(serial_out_take(&s, buf, 4), 4);
	assert_memory_equal(buf, "abcd", 4);
	/* Not empty yet: no call for "g"; "h" brings it back to half full. Wraps around the end. */
	write_str(&s, "ghijk");
	assert_int_equal(r.out_ready, 3);
	assert_int_equal(s.out_len, 7);
	assert_int_equal(serial_out_take(&s, buf, 3), 3);
	assert_memory_equal(buf, "efg", 3);
	write_str(&s, "lmnopq"); /* 4 queued + 6 = 10 > 8: "pq" dropped */
	assert_int_equal(serial_out_dropped(&s), 2);
	assert_int_equal(r.out_ready, 3); /* from 4 upwards: never reaches 4 again, no call */
	assert_int_equal(serial_out_take(&s, buf, sizeof(buf)), 8);
	assert_memory_equal(buf, "hijklmno", 8);
	/* Empty -> non-empty signals again. */
	write_str(&s, "z");
	assert_int_equal(r.out_ready, 4);
	assert_int_equal(serial_out_take(&s, buf, 0), 0);
	assert_int_equal(serial_out_take(&s, buf, 1), 1);
	assert_int_equal(buf[0], 'z');
	assert_int_equal(serial_out_dropped(&s), 2);
	serial_destroy(&s);
}

/*
 * out_ready lets the host batch: it rings when the ring stops being empty and when it reaches
 * half full, so a host that waits after the first call is told before the ring can overflow.
 */
static void test_out_ready_batching(void **state)
{
	struct serial s;
	struct rec r;
	uint8_t buf[64];

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_int_equal(serial_init(&s, 64, &ops, &r), 0);
	assert_int_equal(serial_out_pending(&s), 0);
	serial_pio_write(&s, THR, 'x');
	assert_int_equal(r.out_ready, 1);
	for (int i = 1; i < 31; i++)
		serial_pio_write(&s, THR, 'x');
	assert_int_equal(r.out_ready, 1);
	assert_int_equal(serial_out_pending(&s), 31);
	serial_pio_write(&s, THR, 'x'); /* the 32nd byte: half of 64 */
	assert_int_equal(r.out_ready, 2);
	for (int i = 0; i < 40; i++) /* fills the ring, 8 dropped: no more calls */
		serial_pio_write(&s, THR, 'y');
	assert_int_equal(r.out_ready, 2);
	assert_int_equal(serial_out_pending(&s), 64);
	assert_int_equal(serial_out_dropped(&s), 8);
	/* A partial drain that leaves bytes queued re-arms neither call until refilled to half. */
	assert_int_equal(serial_out_take(&s, buf, 40), 40);
	assert_int_equal(serial_out_pending(&s), 24);
	for (int i = 0; i < 7; i++)
		serial_pio_write(&s, THR, 'z');
	assert_int_equal(r.out_ready, 2);
	serial_pio_write(&s, THR, 'z');
	assert_int_equal(r.out_ready, 3);
	assert_int_equal(serial_out_take(&s, buf, sizeof(buf)), 32);
	assert_int_equal(serial_out_pending(&s), 0);
	serial_pio_write(&s, THR, 'w');
	assert_int_equal(r.out_ready, 4);
	serial_destroy(&s);

	/* A one-byte ring: one call per empty -> full, the half mark (0) never counts. */
	memset(&r, 0, sizeof(r));
	assert_int_equal(serial_init(&s, 1, &ops, &r), 0);
	serial_pio_write(&s, THR, 'a');
	serial_pio_write(&s, THR, 'b');
	assert_int_equal(r.out_ready, 1);
	assert_int_equal(serial_out_take(&s, buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 'a');
	serial_destroy(&s);
}

/* Linux 8250 autoconfig and startup probes, in the order the driver does them. */
static void test_linux_probe(void **state)
{
	struct fx *f = *state;
	struct serial *s = &f->s;
	uint8_t lsr, iir;

	/* autoconfig: IER scratch test. */
	serial_pio_write(s, IER, 0);
	assert_int_equal(serial_pio_read(s, IER) & 0x0f, 0);
	serial_pio_write(s, IER, 0x0f);
	assert_int_equal(serial_pio_read(s, IER) & 0x0f, 0x0f);
	serial_pio_write(s, IER, 0);
	/* Loopback test. */
	serial_pio_write(s, MCR, 0x10 | 0x0a);
	assert_int_equal(serial_pio_read(s, MSR) & 0xf0, 0x90);
	serial_pio_write(s, MCR, 0);
	/* FIFO type. */
	serial_pio_write(s, FCR, 0x01);
	assert_int_equal(serial_pio_read(s, IIR) >> 6, 3);
	serial_pio_write(s, FCR, 0);
	/* startup: clear FIFOs, drain status, then the THRE re-trigger test. */
	serial_pio_write(s, FCR, 0x01);
	serial_pio_write(s, FCR, 0x07);
	serial_pio_write(s, FCR, 0);
	(void)serial_pio_read(s, LSR);
	(void)serial_pio_read(s, RBR);
	(void)serial_pio_read(s, IIR);
	(void)serial_pio_read(s, MSR);
	serial_pio_write(s, IER, 0x02);
	iir = serial_pio_read(s, IIR);
	serial_pio_write(s, IER, 0);
	serial_pio_write(s, IER, 0x02);
	iir = (uint8_t)(iir | serial_pio_read(s, IIR));
	serial_pio_write(s, IER, 0);
	assert_int_equal(iir & 0x01, 0); /* no UART_BUG_THRE */
	serial_pio_write(s, IER, 0x02);
	lsr = serial_pio_read(s, LSR);
	iir = serial_pio_read(s, IIR);
	serial_pio_write(s, IER, 0);
	assert_false((lsr & 0x40) && (iir & 0x01)); /* no UART_BUG_TXEN */
	assert_int_equal(f->r.level, 0);
}

struct thr_arg {
	struct serial *s;
	size_t n;
};

static void *guest_writer(void *p)
{
	struct thr_arg *a = p;

	for (size_t i = 0; i < a->n; i++)
		serial_pio_write(a->s, THR, (uint8_t)i);
	return NULL;
}

/* A vCPU thread writes while the host thread drains: every byte is taken or counted dropped. */
static void test_threads(void **state)
{
	struct serial s;
	struct thr_arg a = { .s = &s, .n = 200000 };
	pthread_t t;
	uint8_t buf[300];
	size_t taken = 0;
	uint8_t expect = 0;
	bool in_order = true;

	(void)state;
	assert_int_equal(serial_init(&s, 256, NULL, NULL), 0);
	assert_int_equal(pthread_create(&t, NULL, guest_writer, &a), 0);
	for (;;) {
		size_t n = serial_out_take(&s, buf, sizeof(buf));
		taken += n;
		/* With no drops so far, the stream is contiguous. */
		for (size_t i = 0; i < n && serial_out_dropped(&s) == 0; i++) {
			if (buf[i] != expect)
				in_order = false;
			expect++;
		}
		if (taken + serial_out_dropped(&s) == a.n)
			break;
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(taken + serial_out_dropped(&s), a.n);
	assert_true(in_order);
	serial_destroy(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_errors),
		cmocka_unit_test_setup_teardown(test_reset_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plain_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dlab, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thre_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iir_priority, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iir_rda_over_thri, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_fifo_fill_overrun, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_clear, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_room_gating, setup, teardown),
		cmocka_unit_test(test_out_ring_bounded),
		cmocka_unit_test(test_drain_ordering),
		cmocka_unit_test(test_out_ready_batching),
		cmocka_unit_test_setup_teardown(test_linux_probe, setup, teardown),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
