/* fuzz_serial.c: libFuzzer harness for the UART model; build: clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Icommon tests/fuzz/fuzz_serial.c devices/serial.c common/util.c -o build/fuzz/fuzz_serial */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/serial.h"
#include "tests/fuzz/fuzz_check.h"

#define MAX_CAP 256

/* Harness-side model of what the callbacks and the output ring must show. */
struct model {
	int level;
	uint64_t irqs;
	uint64_t out_ready;
	uint8_t ring[MAX_CAP];
	size_t head, len, cap;
	uint64_t dropped;
};

static void cb_irq(void *ctx, int level)
{
	struct model *m = ctx;

	CHECK(level == 0 || level == 1);
	CHECK(level != m->level); /* level changes only */
	m->level = level;
	m->irqs++;
}

static void cb_out_ready(void *ctx)
{
	((struct model *)ctx)->out_ready++;
}

static void cb_rx_space(void *ctx)
{
	(void)ctx;
}

static const struct serial_ops ops = { cb_irq, cb_out_ready, cb_rx_space };

static void check_state(const struct serial *s, const struct model *m)
{
	CHECK(s->out_len <= s->out_cap);
	CHECK(s->out_cap == m->cap);
	CHECK(s->out_head < s->out_cap);
	CHECK(s->out_len == m->len);
	CHECK(s->out_dropped == m->dropped);
	CHECK(s->rx_count <= SERIAL_RX_FIFO);
	CHECK(s->rx_count <= ((s->fcr & 1) ? SERIAL_RX_FIFO : 1u));
	CHECK(s->rx_head < SERIAL_RX_FIFO);
	CHECK((s->ier & 0xf0) == 0);
	CHECK((s->mcr & 0xe0) == 0);
	CHECK((int)s->irq_level == m->level);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct serial s;
	struct model m;
	uint8_t buf[MAX_CAP + 64];

	if (size < 1)
		return 0;
	memset(&m, 0, sizeof(m));
	m.cap = (size_t)data[0] % MAX_CAP + 1;
	if (serial_init(&s, m.cap, &ops, &m) != 0)
		abort();
	data++;
	size--;

	for (size_t i = 0; i + 3 <= size; i += 3) {
		uint8_t op = data[i], val = data[i + 2];
		uint16_t off = (op & 0x80) ? (uint16_t)(data[i + 1] | (op << 8)) : data[i + 1] & 7;

		switch (op % 6) {
		case 0: { /* guest register write */
			bool thr = off == 0 && !(s.lcr & 0x80) && !(s.mcr & 0x10);
			uint64_t ready = m.out_ready;

			serial_pio_write(&s, off, val);
			if (thr) {
				if (m.len < m.cap) {
					m.ring[(m.head + m.len) % m.cap] = val;
					m.len++;
					/* out_ready: empty -> non-empty, and once more at half full */
					CHECK(m.out_ready == ready + (m.len == 1 || m.len == m.cap / 2));
				} else {
					m.dropped++;
				}
			}
			if (!thr)
				CHECK(m.out_ready == ready);
			break;
		}
		case 1: /* guest register read */
			if (off > 7)
				CHECK(serial_pio_read(&s, off) == 0xff);
			else
				(void)serial_pio_read(&s, off);
			break;
		case 2: { /* host push */
			size_t room = serial_rx_room(&s);
			size_t len = val % (SERIAL_RX_FIFO + 16);
			size_t n;

			CHECK(room <= SERIAL_RX_FIFO);
			memset(buf, val, len);
			n = serial_rx_push(&s, buf, len);
			CHECK(n <= len && n == (room < len ? room : len));
			break;
		}
		case 3: { /* host take, checked against the model ring */
			size_t len = val % sizeof(buf);
			size_t n = serial_out_take(&s, buf, len);

			CHECK(n == (len < m.len ? len : m.len));
			for (size_t k = 0; k < n; k++)
				CHECK(buf[k] == m.ring[(m.head + k) % m.cap]);
			m.head = (m.head + n) % m.cap;
			m.len -= n;
			break;
		}
		case 4:
			CHECK(serial_out_dropped(&s) == m.dropped);
			break;
		default: /* bulk THR burst to hit the full-ring path quickly */
			for (unsigned int k = 0; k < val; k++) {
				bool thr = !(s.lcr & 0x80) && !(s.mcr & 0x10);

				serial_pio_write(&s, 0, (uint8_t)k);
				if (!thr)
					continue;
				if (m.len < m.cap) {
					m.ring[(m.head + m.len) % m.cap] = (uint8_t)k;
					m.len++;
				} else {
					m.dropped++;
				}
			}
			break;
		}
		check_state(&s, &m);
	}
	serial_destroy(&s);
	return 0;
}
