/* SPDX-License-Identifier: MIT */
/*
 * The I/O bus, the 16550A UART model (driven only through its bus handler
 * and callbacks, the way a vCPU and the console thread drive it) and the
 * legacy PC ports.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/bus.h"
#include "devices/legacy.h"
#include "devices/serial8250.h"

/* --- bus --- */

struct access_log {
	int calls;
	uint64_t offset;
	uint32_t size;
	bool is_write;
	uint8_t data[8];
	uint8_t fill; /* what reads return */
};

static void log_access(void *opaque, uint64_t offset, uint8_t *data,
		       uint32_t size, bool is_write)
{
	struct access_log *l = opaque;

	l->calls++;
	l->offset = offset;
	l->size = size;
	l->is_write = is_write;
	if (is_write)
		memcpy(l->data, data, size);
	else
		memset(data, l->fill, size);
}

static void test_bus_register(void **state)
{
	struct bus b;
	struct access_log l;

	(void)state;
	memset(&b, 0, sizeof(b));
	assert_int_equal(bus_register(&b, 0x3f8, 8, log_access, &l), 0);
	/* Any overlap is refused, adjacent ranges are fine. */
	assert_int_equal(bus_register(&b, 0x3f8, 8, log_access, &l), -EEXIST);
	assert_int_equal(bus_register(&b, 0x3f0, 9, log_access, &l), -EEXIST);
	assert_int_equal(bus_register(&b, 0x3ff, 1, log_access, &l), -EEXIST);
	assert_int_equal(bus_register(&b, 0x3fa, 1, log_access, &l), -EEXIST);
	assert_int_equal(bus_register(&b, 0x300, 0x200, log_access, &l),
			 -EEXIST);
	assert_int_equal(bus_register(&b, 0x3f0, 8, log_access, &l), 0);
	assert_int_equal(bus_register(&b, 0x400, 1, log_access, &l), 0);
	assert_int_equal(b.nr, 3);
	/* Empty and wrapping ranges. */
	assert_int_equal(bus_register(&b, 0x1000, 0, log_access, &l), -EINVAL);
	assert_int_equal(bus_register(&b, UINT64_MAX, 2, log_access, &l),
			 -EINVAL);
	assert_int_equal(bus_register(&b, 2, UINT64_MAX, log_access, &l),
			 -EINVAL);
	assert_int_equal(b.nr, 3);
	/* The range up to the top of the address space (but not wrapping). */
	assert_int_equal(bus_register(&b, UINT64_MAX - 15, 15, log_access, &l),
			 0);
}

static void test_bus_full(void **state)
{
	struct bus b;
	struct access_log l;

	(void)state;
	memset(&b, 0, sizeof(b));
	for (unsigned i = 0; i < BUS_MAX_DEVICES; i++)
		assert_int_equal(bus_register(&b, i * 16, 16, log_access, &l),
				 0);
	assert_int_equal(bus_register(&b, 0x10000, 1, log_access, &l), -ENOSPC);
	/* An overlapping one still says overlap. */
	assert_int_equal(bus_register(&b, 0, 1, log_access, &l), -EEXIST);
	assert_int_equal(b.nr, BUS_MAX_DEVICES);
}

static void test_bus_dispatch(void **state)
{
	struct bus b;
	struct access_log a = {.fill = 0x11}, c = {.fill = 0x22};
	uint8_t data[8];

	(void)state;
	memset(&b, 0, sizeof(b));
	assert_int_equal(bus_register(&b, 0x60, 1, log_access, &a), 0);
	assert_int_equal(bus_register(&b, 0x1000, 0x100, log_access, &c), 0);

	memset(data, 0, sizeof(data));
	assert_true(bus_access(&b, 0x60, data, 1, false));
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.offset, 0);
	assert_false(a.is_write);
	assert_int_equal(data[0], 0x11);

	data[0] = 0xAB;
	data[1] = 0xCD;
	assert_true(bus_access(&b, 0x1010, data, 2, true));
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.offset, 0x10);
	assert_int_equal(c.size, 2);
	assert_true(c.is_write);
	assert_int_equal(c.data[0], 0xAB);
	assert_int_equal(c.data[1], 0xCD);

	/* Last bytes of a range. */
	assert_true(bus_access(&b, 0x10F8, data, 8, false));
	assert_int_equal(c.offset, 0xF8);
	assert_int_equal(c.size, 8);
}

static void test_bus_unassigned(void **state)
{
	struct bus b;
	struct access_log a = {.fill = 0x11};
	uint8_t data[8];

	(void)state;
	memset(&b, 0, sizeof(b));
	assert_int_equal(bus_register(&b, 0x60, 1, log_access, &a), 0);
	assert_int_equal(bus_register(&b, 0x100, 4, log_access, &a), 0);

	/* Reads nobody claims return all-ones. */
	memset(data, 0, sizeof(data));
	assert_false(bus_access(&b, 0x61, data, 4, false));
	for (int i = 0; i < 4; i++)
		assert_int_equal(data[i], 0xFF);
	assert_int_equal(data[4], 0);
	/* An access that only partly hits a device is unassigned too. */
	memset(data, 0, sizeof(data));
	assert_false(bus_access(&b, 0x60, data, 2, false));
	assert_int_equal(data[0], 0xFF);
	assert_int_equal(data[1], 0xFF);
	assert_false(bus_access(&b, 0x102, data, 4, false));
	assert_false(bus_access(&b, 0xFF, data, 2, false));
	assert_false(bus_access(&b, UINT64_MAX, data, 8, false));
	assert_int_equal(a.calls, 0);

	/* Writes are dropped, the buffer left alone. */
	memset(data, 0x42, sizeof(data));
	assert_false(bus_access(&b, 0x64, data, 1, true));
	assert_false(bus_access(&b, 0x103, data, 2, true));
	assert_int_equal(data[0], 0x42);
	assert_int_equal(a.calls, 0);

	/* An empty bus. */
	memset(&b, 0, sizeof(b));
	assert_false(bus_access(&b, 0, data, 1, false));
	assert_int_equal(data[0], 0xFF);
}

/* --- serial8250 --- */

#define RBR 0
#define THR 0
#define IER 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

struct uart_obs {
	uint8_t out[256];
	size_t nout;
	int irq;	 /* last level reported */
	int irq_changes; /* set_irq calls */
	int rx_space;	 /* rx_space calls */
};

static void obs_output(void *opaque, const uint8_t *buf, size_t len)
{
	struct uart_obs *o = opaque;

	assert_true(o->nout + len <= sizeof(o->out));
	memcpy(o->out + o->nout, buf, len);
	o->nout += len;
}

static void obs_set_irq(void *opaque, int level)
{
	struct uart_obs *o = opaque;

	/* Only transitions are reported. */
	assert_int_not_equal(level, o->irq);
	o->irq = level;
	o->irq_changes++;
}

static void obs_rx_space(void *opaque)
{
	struct uart_obs *o = opaque;

	o->rx_space++;
}

static const struct serial8250_ops obs_ops = {
	.output = obs_output,
	.set_irq = obs_set_irq,
	.rx_space = obs_rx_space,
};

struct uart {
	struct serial8250 s;
	struct uart_obs o;
};

static int uart_setup(void **state)
{
	struct uart *u = calloc(1, sizeof(*u));

	if (!u)
		return -1;
	serial8250_init(&u->s, &obs_ops, &u->o);
	*state = u;
	return 0;
}

static int uart_teardown(void **state)
{
	struct uart *u = *state;

	serial8250_destroy(&u->s);
	free(u);
	return 0;
}

static uint8_t rd(struct uart *u, unsigned reg)
{
	uint8_t v = 0x5A;

	serial8250_access(&u->s, reg, &v, 1, false);
	return v;
}

static void wr(struct uart *u, unsigned reg, uint8_t v)
{
	serial8250_access(&u->s, reg, &v, 1, true);
}

static void test_uart_output(void **state)
{
	struct uart *u = *state;
	const char *msg = "hello\n";

	for (const char *p = msg; *p; p++)
		wr(u, THR, (uint8_t)*p);
	assert_int_equal(u->o.nout, strlen(msg));
	assert_memory_equal(u->o.out, msg, strlen(msg));
	/* Transmission is instantaneous: THR and shifter always empty. */
	assert_int_equal(rd(u, LSR), 0x60);
	/* No interrupt unless enabled. */
	assert_int_equal(u->o.irq_changes, 0);
}

static void test_uart_rx(void **state)
{
	struct uart *u = *state;
	const uint8_t in[3] = {'a', 'b', 'c'};

	assert_int_equal(rd(u, LSR) & 0x01, 0);
	assert_int_equal(serial8250_rx_room(&u->s), SERIAL8250_FIFO_SIZE);
	assert_int_equal(serial8250_push_input(&u->s, in, 3), 3);
	assert_int_equal(serial8250_rx_room(&u->s), SERIAL8250_FIFO_SIZE - 3);
	assert_int_equal(rd(u, LSR), 0x61); /* DR | THRE | TEMT */
	assert_int_equal(rd(u, RBR), 'a');
	assert_int_equal(rd(u, RBR), 'b');
	assert_int_equal(rd(u, LSR) & 0x01, 0x01);
	assert_int_equal(rd(u, RBR), 'c');
	assert_int_equal(rd(u, LSR), 0x60);
	/* Empty FIFO reads 0. */
	assert_int_equal(rd(u, RBR), 0);
	assert_int_equal(serial8250_rx_room(&u->s), SERIAL8250_FIFO_SIZE);
	/* Nothing was echoed. */
	assert_int_equal(u->o.nout, 0);
}

static void test_uart_rx_wraps(void **state)
{
	struct uart *u = *state;
	uint8_t in[SERIAL8250_FIFO_SIZE];

	/* Cycle enough bytes through the ring to wrap it several times. */
	for (unsigned round = 0; round < 5; round++) {
		for (unsigned i = 0; i < 40; i++)
			in[i] = (uint8_t)(round * 40 + i);
		assert_int_equal(serial8250_push_input(&u->s, in, 40), 40);
		for (unsigned i = 0; i < 40; i++)
			assert_int_equal(rd(u, RBR), (uint8_t)(round * 40 + i));
	}
	assert_int_equal(rd(u, LSR) & 0x01, 0);
}

static void test_uart_fifo_full(void **state)
{
	struct uart *u = *state;
	uint8_t in[SERIAL8250_FIFO_SIZE + 10];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	assert_int_equal(serial8250_push_input(&u->s, in, sizeof(in)),
			 SERIAL8250_FIFO_SIZE);
	assert_int_equal(serial8250_rx_room(&u->s), 0);
	assert_int_equal(serial8250_push_input(&u->s, in, 1), 0);
	assert_int_equal(serial8250_push_input(&u->s, in, 0), 0);
	assert_int_equal(u->o.rx_space, 0);

	/* Draining from full tells the console side once. */
	assert_int_equal(rd(u, RBR), 0);
	assert_int_equal(u->o.rx_space, 1);
	assert_int_equal(rd(u, RBR), 1);
	assert_int_equal(u->o.rx_space, 1);
	assert_int_equal(serial8250_rx_room(&u->s), 2);
	assert_int_equal(serial8250_push_input(&u->s, in + 64, 5), 2);
	/* Order kept across the refill. */
	for (unsigned i = 2; i < SERIAL8250_FIFO_SIZE; i++)
		assert_int_equal(rd(u, RBR), i);
	assert_int_equal(rd(u, RBR), 64);
	assert_int_equal(rd(u, RBR), 65);
	assert_int_equal(rd(u, LSR) & 0x01, 0);
	/* The first read after the refill filled it again. */
	assert_int_equal(u->o.rx_space, 2);
}

static void test_uart_fifo_full_null_rx_space(void **state)
{
	static const struct serial8250_ops ops = {.output = obs_output,
						  .set_irq = obs_set_irq};
	struct uart *u = *state;
	uint8_t in[SERIAL8250_FIFO_SIZE] = {0};

	/* rx_space may be NULL. */
	serial8250_destroy(&u->s);
	serial8250_init(&u->s, &ops, &u->o);
	assert_int_equal(serial8250_push_input(&u->s, in, sizeof(in)),
			 SERIAL8250_FIFO_SIZE);
	rd(u, RBR);
	assert_int_equal(serial8250_rx_room(&u->s), 1);
}

static void test_uart_fifo_clear(void **state)
{
	struct uart *u = *state;
	uint8_t in[4] = {1, 2, 3, 4};

	assert_int_equal(serial8250_push_input(&u->s, in, 4), 4);
	/* FCR: enable FIFO + clear receiver. */
	wr(u, FCR, 0x03);
	assert_int_equal(rd(u, LSR) & 0x01, 0);
	assert_int_equal(serial8250_rx_room(&u->s), SERIAL8250_FIFO_SIZE);
	assert_int_equal(rd(u, RBR), 0);
	assert_int_equal(serial8250_push_input(&u->s, in + 3, 1), 1);
	assert_int_equal(rd(u, RBR), 4);
}

/* Linux clears the FIFOs when it opens the port; if input filled the FIFO
 * before that, the console thread waits for rx_space, which must come. */
static void test_uart_fifo_clear_from_full_notifies(void **state)
{
	struct uart *u = *state;
	uint8_t in[SERIAL8250_FIFO_SIZE] = {0};

	assert_int_equal(serial8250_push_input(&u->s, in, sizeof(in)),
			 SERIAL8250_FIFO_SIZE);
	wr(u, FCR, 0x07);
	assert_int_equal(serial8250_rx_room(&u->s), SERIAL8250_FIFO_SIZE);
	assert_int_equal(u->o.rx_space, 1);
}

static void test_uart_iir_fifo_bits(void **state)
{
	struct uart *u = *state;

	/* FIFO disabled: 0x01 (no interrupt). Linux's autoconfig enables the
	 * FIFO and expects IIR[7:6] == 3 (16550A). */
	assert_int_equal(rd(u, IIR), 0x01);
	wr(u, FCR, 0x01);
	assert_int_equal(rd(u, IIR), 0xC1);
	wr(u, FCR, 0x00);
	assert_int_equal(rd(u, IIR), 0x01);
}

static void test_uart_thri(void **state)
{
	struct uart *u = *state;

	/* Enabling THRI with THR empty raises it at once. */
	wr(u, IER, 0x02);
	assert_int_equal(u->o.irq, 1);
	assert_int_equal(u->o.irq_changes, 1);
	/* Reading IIR reports and acknowledges it. */
	assert_int_equal(rd(u, IIR) & 0x0F, 0x02);
	assert_int_equal(u->o.irq, 0);
	assert_int_equal(rd(u, IIR) & 0x0F, 0x01);
	/* Writing to THR raises it again (the byte is sent at once). */
	wr(u, THR, 'x');
	assert_int_equal(u->o.irq, 1);
	assert_int_equal(u->o.nout, 1);
	assert_int_equal(rd(u, IIR) & 0x0F, 0x02);
	assert_int_equal(u->o.irq, 0);
	/* Disabling THRI with one pending lowers the line. */
	wr(u, THR, 'y');
	assert_int_equal(u->o.irq, 1);
	wr(u, IER, 0x00);
	assert_int_equal(u->o.irq, 0);
	assert_int_equal(rd(u, IIR) & 0x0F, 0x01);
	/* Rewriting IER without THRI set before: raised again. */
	wr(u, IER, 0x02);
	assert_int_equal(u->o.irq, 1);
	assert_int_equal(u->o.irq_changes, 7);
}

static void test_uart_rdi(void **state)
{
	struct uart *u = *state;
	const uint8_t in[2] = {'q', 'r'};

	/* Data without RDI enabled: no interrupt. */
	assert_int_equal(serial8250_push_input(&u->s, in, 1), 1);
	assert_int_equal(u->o.irq, 0);
	/* Enabling RDI with data waiting raises it. */
	wr(u, IER, 0x01);
	assert_int_equal(u->o.irq, 1);
	assert_int_equal(rd(u, IIR) & 0x0F, 0x04);
	/* Reading IIR does not acknowledge RDI; draining does. */
	assert_int_equal(u->o.irq, 1);
	assert_int_equal(rd(u, RBR), 'q');
	assert_int_equal(u->o.irq, 0);
	/* New input raises it again. */
	assert_int_equal(serial8250_push_input(&u->s, in + 1, 1), 1);
	assert_int_equal(u->o.irq, 1);
	assert_int_equal(rd(u, RBR), 'r');
	assert_int_equal(u->o.irq, 0);
}

static void test_uart_iir_priority(void **state)
{
	struct uart *u = *state;
	const uint8_t in[1] = {'z'};

	wr(u, IER, 0x03); /* RDI | THRI */
	assert_int_equal(serial8250_push_input(&u->s, in, 1), 1);
	/* Both pending: received data has priority ... */
	assert_int_equal(rd(u, IIR) & 0x0F, 0x04);
	assert_int_equal(rd(u, IIR) & 0x0F, 0x04);
	/* ... and reading IIR then did not acknowledge THRE. */
	assert_int_equal(rd(u, RBR), 'z');
	assert_int_equal(u->o.irq, 1);
	assert_int_equal(rd(u, IIR) & 0x0F, 0x02);
	assert_int_equal(u->o.irq, 0);
	assert_int_equal(rd(u, IIR) & 0x0F, 0x01);
}

static void test_uart_loopback(void **state)
{
	struct uart *u = *state;

	/* Not in loopback: carrier, DSR and CTS up. */
	assert_int_equal(rd(u, MSR), 0xB0);
	/* Linux's autoconfig: MCR = LOOP | OUT2 | RTS, expects MSR & 0xF0 ==
	 * 0x90 (DCD | CTS). */
	wr(u, MCR, 0x1A);
	assert_int_equal(rd(u, MCR), 0x1A);
	assert_int_equal(rd(u, MSR) & 0xF0, 0x90);
	/* Each modem output feeds its input. */
	wr(u, MCR, 0x10);
	assert_int_equal(rd(u, MSR) & 0xF0, 0x00);
	wr(u, MCR, 0x11); /* DTR -> DSR */
	assert_int_equal(rd(u, MSR) & 0xF0, 0x20);
	wr(u, MCR, 0x12); /* RTS -> CTS */
	assert_int_equal(rd(u, MSR) & 0xF0, 0x10);
	wr(u, MCR, 0x14); /* OUT1 -> RI */
	assert_int_equal(rd(u, MSR) & 0xF0, 0x40);
	wr(u, MCR, 0x18); /* OUT2 -> DCD */
	assert_int_equal(rd(u, MSR) & 0xF0, 0x80);
	wr(u, MCR, 0x1F);
	assert_int_equal(rd(u, MSR) & 0xF0, 0xF0);

	/* Transmitted bytes come back, not out. */
	wr(u, THR, 0x55);
	assert_int_equal(u->o.nout, 0);
	assert_int_equal(rd(u, LSR) & 0x01, 0x01);
	assert_int_equal(rd(u, RBR), 0x55);
	/* Upper MCR bits are not stored. */
	wr(u, MCR, 0xFF);
	assert_int_equal(rd(u, MCR), 0x1F);
	/* Out of loopback, output flows again. */
	wr(u, MCR, 0x0B);
	wr(u, THR, 'o');
	assert_int_equal(u->o.nout, 1);
	assert_int_equal(u->o.out[0], 'o');
	assert_int_equal(rd(u, MSR), 0xB0);
}

static void test_uart_scratch(void **state)
{
	struct uart *u = *state;

	/* Linux's autoconfig checks the scratch register holds values. */
	wr(u, SCR, 0xA5);
	assert_int_equal(rd(u, SCR), 0xA5);
	wr(u, SCR, 0x5A);
	assert_int_equal(rd(u, SCR), 0x5A);
	/* Independent of DLAB. */
	wr(u, LCR, 0x80);
	assert_int_equal(rd(u, SCR), 0x5A);
}

static void test_uart_dlab(void **state)
{
	struct uart *u = *state;
	const uint8_t in[1] = {'d'};

	/* Reset divisor: 12 (9600 baud). */
	wr(u, LCR, 0x83);
	assert_int_equal(rd(u, LCR), 0x83);
	assert_int_equal(rd(u, 0), 0x0C);
	assert_int_equal(rd(u, 1), 0x00);
	/* 115200 baud: divisor 1. */
	wr(u, 0, 0x01);
	wr(u, 1, 0x00);
	assert_int_equal(rd(u, 0), 0x01);
	assert_int_equal(rd(u, 1), 0x00);
	wr(u, 1, 0x12);
	assert_int_equal(rd(u, 1), 0x12);
	/* Divisor writes are neither output nor IER. */
	assert_int_equal(u->o.nout, 0);
	assert_int_equal(u->o.irq_changes, 0);
	/* With DLAB set, offset 0 reads the latch, not the FIFO. */
	assert_int_equal(serial8250_push_input(&u->s, in, 1), 1);
	assert_int_equal(rd(u, 0), 0x01);
	/* Back to normal. */
	wr(u, LCR, 0x03);
	assert_int_equal(rd(u, IER), 0x00);
	assert_int_equal(rd(u, RBR), 'd');
	wr(u, IER, 0x0F);
	assert_int_equal(rd(u, IER), 0x0F);
	wr(u, IER, 0xFF); /* upper bits reserved */
	assert_int_equal(rd(u, IER), 0x0F);
	/* The latch kept its value. */
	wr(u, LCR, 0x80);
	assert_int_equal(rd(u, 0), 0x01);
	assert_int_equal(rd(u, 1), 0x12);
}

static void test_uart_readonly_regs(void **state)
{
	struct uart *u = *state;

	/* Writes to LSR and MSR are ignored. */
	wr(u, LSR, 0x00);
	wr(u, MSR, 0x00);
	assert_int_equal(rd(u, LSR), 0x60);
	assert_int_equal(rd(u, MSR), 0xB0);
}

static void test_uart_wide_access(void **state)
{
	struct uart *u = *state;
	uint8_t data[4] = {0};

	/* A 4-byte read returns the register in byte 0, ones above. */
	serial8250_access(&u->s, LSR, data, 4, false);
	assert_int_equal(data[0], 0x60);
	assert_int_equal(data[1], 0xFF);
	assert_int_equal(data[2], 0xFF);
	assert_int_equal(data[3], 0xFF);
	/* A 2-byte write writes the first register only. */
	data[0] = 0x33;
	data[1] = 0x44;
	serial8250_access(&u->s, SCR, data, 2, true);
	assert_int_equal(rd(u, SCR), 0x33);
}

static void test_uart_on_bus(void **state)
{
	struct uart *u = *state;
	struct bus b;
	uint8_t v;

	memset(&b, 0, sizeof(b));
	assert_int_equal(bus_register(&b, SERIAL8250_COM1_PORT, 8,
				      serial8250_access, &u->s),
			 0);
	v = 'B';
	assert_true(bus_access(&b, SERIAL8250_COM1_PORT, &v, 1, true));
	assert_int_equal(u->o.nout, 1);
	assert_int_equal(u->o.out[0], 'B');
	assert_true(bus_access(&b, SERIAL8250_COM1_PORT + 5, &v, 1, false));
	assert_int_equal(v, 0x60);
	/* COM2 does not exist. */
	assert_false(bus_access(&b, 0x2f8 + 5, &v, 1, false));
	assert_int_equal(v, 0xFF);
}

/* --- legacy ports --- */

struct requests {
	int n;
	enum legacy_request last;
	int code;
};

static void on_request(void *opaque, enum legacy_request req, int code)
{
	struct requests *r = opaque;

	r->n++;
	r->last = req;
	r->code = code;
}

static void test_i8042(void **state)
{
	struct requests r = {0};
	struct legacy_devices l = {on_request, &r};
	uint8_t v;

	(void)state;
	/* Reads: empty buffers, no data. */
	v = 0xAA;
	i8042_access(&l, 4, &v, 1, false);
	assert_int_equal(v, 0);
	v = 0xAA;
	i8042_access(&l, 0, &v, 1, false);
	assert_int_equal(v, 0);
	/* Other commands and data are ignored. */
	v = 0xFE;
	i8042_access(&l, 0, &v, 1, true); /* 0xFE to the data port */
	v = 0xAD;
	i8042_access(&l, 4, &v, 1, true);
	v = 0xD1;
	i8042_access(&l, 4, &v, 1, true);
	assert_int_equal(r.n, 0);
	/* Pulse reset line: the reboot=k path. */
	v = 0xFE;
	i8042_access(&l, 4, &v, 1, true);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.last, LEGACY_RESET);
}

static void test_i8042_on_bus(void **state)
{
	struct requests r = {0};
	struct legacy_devices l = {on_request, &r};
	struct bus b;
	uint8_t v = 0xFE;

	(void)state;
	memset(&b, 0, sizeof(b));
	assert_int_equal(bus_register(&b, I8042_DATA_PORT, 5, i8042_access, &l),
			 0);
	assert_true(bus_access(&b, I8042_CMD_PORT, &v, 1, true));
	assert_int_equal(r.n, 1);
	assert_int_equal(r.last, LEGACY_RESET);
	assert_true(bus_access(&b, I8042_CMD_PORT, &v, 1, false));
	assert_int_equal(v, 0);
}

static void test_reset_control(void **state)
{
	struct requests r = {0};
	struct legacy_devices l = {on_request, &r};
	uint8_t v;

	(void)state;
	v = 0xFF;
	reset_control_access(&l, 0, &v, 1, false);
	assert_int_equal(v, 0);
	/* Selecting the reset type alone does nothing. */
	v = 0x02;
	reset_control_access(&l, 0, &v, 1, true);
	v = 0x08;
	reset_control_access(&l, 0, &v, 1, true);
	assert_int_equal(r.n, 0);
	/* Bit 2 performs it (Linux writes 0x02 then 0x06, or 0x0E). */
	v = 0x06;
	reset_control_access(&l, 0, &v, 1, true);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.last, LEGACY_RESET);
	v = 0x04;
	reset_control_access(&l, 0, &v, 1, true);
	assert_int_equal(r.n, 2);
}

static void test_debug_exit(void **state)
{
	struct requests r = {0};
	struct legacy_devices l = {on_request, &r};
	uint8_t v[4];

	(void)state;
	memset(v, 0, sizeof(v));
	debug_exit_access(&l, 0, v, 1, false);
	assert_int_equal(v[0], 0xFF);
	assert_int_equal(r.n, 0);
	v[0] = 0;
	debug_exit_access(&l, 0, v, 1, true);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.last, LEGACY_DEBUG_EXIT);
	assert_int_equal(r.code, 0);
	v[0] = 42;
	debug_exit_access(&l, 0, v, 1, true);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.code, 42);
	v[0] = 0xFF;
	debug_exit_access(&l, 0, v, 1, true);
	assert_int_equal(r.code, 255);
}

#define UART_TEST(f)                                                           \
	cmocka_unit_test_setup_teardown(f, uart_setup, uart_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bus_register),
		cmocka_unit_test(test_bus_full),
		cmocka_unit_test(test_bus_dispatch),
		cmocka_unit_test(test_bus_unassigned),
		UART_TEST(test_uart_output),
		UART_TEST(test_uart_rx),
		UART_TEST(test_uart_rx_wraps),
		UART_TEST(test_uart_fifo_full),
		UART_TEST(test_uart_fifo_full_null_rx_space),
		UART_TEST(test_uart_fifo_clear),
		UART_TEST(test_uart_fifo_clear_from_full_notifies),
		UART_TEST(test_uart_iir_fifo_bits),
		UART_TEST(test_uart_thri),
		UART_TEST(test_uart_rdi),
		UART_TEST(test_uart_iir_priority),
		UART_TEST(test_uart_loopback),
		UART_TEST(test_uart_scratch),
		UART_TEST(test_uart_dlab),
		UART_TEST(test_uart_readonly_regs),
		UART_TEST(test_uart_wide_access),
		UART_TEST(test_uart_on_bus),
		cmocka_unit_test(test_i8042),
		cmocka_unit_test(test_i8042_on_bus),
		cmocka_unit_test(test_reset_control),
		cmocka_unit_test(test_debug_exit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
