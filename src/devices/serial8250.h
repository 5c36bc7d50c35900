/* SPDX-License-Identifier: MIT */
/*
 * A 16550A UART as Linux's 8250 driver sees it: registers, a receive FIFO,
 * THRE/RDA interrupts, loopback (Linux's probe uses it). Transmission is
 * instantaneous. The model is pure: bytes out and the IRQ level go through
 * callbacks, bytes in come from serial8250_push_input.
 */
#ifndef KILN_DEVICES_SERIAL8250_H
#define KILN_DEVICES_SERIAL8250_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERIAL8250_FIFO_SIZE 64
#define SERIAL8250_COM1_PORT 0x3f8
#define SERIAL8250_COM1_IRQ  4

struct serial8250_ops {
	/* Guest wrote bytes to the line. */
	void (*output)(void *opaque, const uint8_t *buf, size_t len);
	/* Interrupt line changed level. */
	void (*set_irq)(void *opaque, int level);
	/* Receive FIFO has room again after being full (may be NULL). */
	void (*rx_space)(void *opaque);
};

struct serial8250 {
	pthread_mutex_t lock;
	const struct serial8250_ops *ops;
	void *opaque;
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thre_pending; /* THR-empty interrupt armed */
	int irq_level;
	uint8_t rx[SERIAL8250_FIFO_SIZE];
	unsigned rx_head, rx_count;
};

void serial8250_init(struct serial8250 *s, const struct serial8250_ops *ops,
		     void *opaque);
void serial8250_destroy(struct serial8250 *s);

/* Bus handler for the 8 registers (offset 0..7). */
void serial8250_access(void *opaque, uint64_t offset, uint8_t *data,
		       uint32_t size, bool is_write);

/* Queues received bytes; returns how many fit (0 when the FIFO is full). */
size_t serial8250_push_input(struct serial8250 *s, const uint8_t *buf,
			     size_t len);

/* Free receive FIFO space. */
size_t serial8250_rx_room(struct serial8250 *s);

struct snapshot_writer;
struct snapshot_reader;
/* Snapshots: the registers and received bytes not read yet, out and back
 * in (restore sets the interrupt line as it was): 0 or -EINVAL. */
void serial8250_save(struct serial8250 *s, struct snapshot_writer *w);
int serial8250_restore(struct serial8250 *s, struct snapshot_reader *r);

#endif
