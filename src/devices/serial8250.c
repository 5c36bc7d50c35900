/* SPDX-License-Identifier: MIT */
#include "serial8250.h"

#include <errno.h>

#include <string.h>

#include "util/snapshot_io.h"

/* Register offsets and bits (include/uapi/linux/serial_reg.h). */
#define UART_RX	 0
#define UART_TX	 0
#define UART_IER 1
#define UART_IIR 2
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI		 0x01
#define IER_THRI	 0x02
#define IIR_NO_INT	 0x01
#define IIR_THRI	 0x02
#define IIR_RDI		 0x04
#define IIR_FIFO_ENABLED 0xC0
#define FCR_ENABLE_FIFO	 0x01
#define FCR_CLEAR_RCVR	 0x02
#define LCR_DLAB	 0x80
#define MCR_DTR		 0x01
#define MCR_RTS		 0x02
#define MCR_OUT1	 0x04
#define MCR_OUT2	 0x08
#define MCR_LOOP	 0x10
#define LSR_DR		 0x01
#define LSR_THRE	 0x20
#define LSR_TEMT	 0x40
#define MSR_CTS		 0x10
#define MSR_DSR		 0x20
#define MSR_RI		 0x40
#define MSR_DCD		 0x80

void serial8250_init(struct serial8250 *s, const struct serial8250_ops *ops,
		     void *opaque)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->ops = ops;
	s->opaque = opaque;
	s->mcr = MCR_OUT2;
	s->dll = 0x0C; /* 9600 baud, as after a BIOS */
}

void serial8250_destroy(struct serial8250 *s)
{
	pthread_mutex_destroy(&s->lock);
}

static uint8_t iir_locked(const struct serial8250 *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE_FIFO) ? IIR_FIFO_ENABLED : 0;

	if ((s->ier & IER_RDI) && s->rx_count)
		return fifo | IIR_RDI;
	if ((s->ier & IER_THRI) && s->thre_pending)
		return fifo | IIR_THRI;
	return fifo | IIR_NO_INT;
}

static void update_irq_locked(struct serial8250 *s)
{
	int level = !(iir_locked(s) & IIR_NO_INT);

	if (level != s->irq_level) {
		s->irq_level = level;
		if (s->ops->set_irq)
			s->ops->set_irq(s->opaque, level);
	}
}

static void rx_push_locked(struct serial8250 *s, uint8_t c)
{
	if (s->rx_count == SERIAL8250_FIFO_SIZE)
		return; /* overrun: the byte is lost, as on hardware */
	s->rx[(s->rx_head + s->rx_count) % SERIAL8250_FIFO_SIZE] = c;
	s->rx_count++;
}

static uint8_t msr_locked(const struct serial8250 *s)
{
	uint8_t m = 0;

	if (!(s->mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;
	/* loopback: modem outputs feed the modem inputs */
	if (s->mcr & MCR_RTS)
		m |= MSR_CTS;
	if (s->mcr & MCR_DTR)
		m |= MSR_DSR;
	if (s->mcr & MCR_OUT1)
		m |= MSR_RI;
	if (s->mcr & MCR_OUT2)
		m |= MSR_DCD;
	return m;
}

static uint8_t read_reg_locked(struct serial8250 *s, unsigned reg,
			       int *notify_space)
{
	switch (reg) {
	case UART_RX:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		if (!s->rx_count)
			return 0;
		{
			uint8_t c = s->rx[s->rx_head];

			if (s->rx_count == SERIAL8250_FIFO_SIZE)
				*notify_space = 1;
			s->rx_head = (s->rx_head + 1) % SERIAL8250_FIFO_SIZE;
			s->rx_count--;
			return c;
		}
	case UART_IER: return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case UART_IIR: {
		uint8_t iir = iir_locked(s);

		/* Reading IIR acknowledges a THRE interrupt. */
		if ((iir & 0x0F) == IIR_THRI)
			s->thre_pending = false;
		return iir;
	}
	case UART_LCR: return s->lcr;
	case UART_MCR: return s->mcr;
	case UART_LSR:
		return (uint8_t)(LSR_THRE | LSR_TEMT |
				 (s->rx_count ? LSR_DR : 0));
	case UART_MSR: return msr_locked(s);
	default: return s->scr;
	}
}

static void write_reg_locked(struct serial8250 *s, unsigned reg, uint8_t v,
			     int *notify_space)
{
	switch (reg) {
	case UART_TX:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			return;
		}
		if (s->mcr & MCR_LOOP)
			rx_push_locked(s, v);
		else if (s->ops->output)
			s->ops->output(s->opaque, &v, 1);
		s->thre_pending = true; /* sent at once: THR empty again */
		return;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			return;
		}
		/* Enabling THRI with THR empty raises it, as on a 16550A. */
		if (!(s->ier & IER_THRI) && (v & IER_THRI))
			s->thre_pending = true;
		s->ier = v & 0x0F;
		return;
	case UART_FCR:
		s->fcr = v & (FCR_ENABLE_FIFO | 0xC0);
		if (v & FCR_CLEAR_RCVR) {
			/* a full FIFO emptied: the input side may go on */
			if (s->rx_count == SERIAL8250_FIFO_SIZE)
				*notify_space = 1;
			s->rx_head = s->rx_count = 0;
		}
		return;
	case UART_LCR: s->lcr = v; return;
	case UART_MCR: s->mcr = v & 0x1F; return;
	case UART_SCR: s->scr = v; return;
	default: return; /* LSR, MSR: read-only */
	}
}

void serial8250_access(void *opaque, uint64_t offset, uint8_t *data,
		       uint32_t size, bool is_write)
{
	struct serial8250 *s = opaque;
	int notify_space = 0;

	pthread_mutex_lock(&s->lock);
	/* Only byte accesses are meaningful; wider ones touch the first
	 * register and read the rest as all-ones. */
	if (is_write) {
		write_reg_locked(s, (unsigned)offset & 7, data[0],
				 &notify_space);
	} else {
		memset(data, 0xff, size);
		data[0] =
			read_reg_locked(s, (unsigned)offset & 7, &notify_space);
	}
	update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
	if (notify_space && s->ops->rx_space)
		s->ops->rx_space(s->opaque);
}

size_t serial8250_push_input(struct serial8250 *s, const uint8_t *buf,
			     size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && s->rx_count < SERIAL8250_FIFO_SIZE)
		rx_push_locked(s, buf[n++]);
	update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial8250_rx_room(struct serial8250 *s)
{
	size_t room;

	pthread_mutex_lock(&s->lock);
	room = SERIAL8250_FIFO_SIZE - s->rx_count;
	pthread_mutex_unlock(&s->lock);
	return room;
}

void serial8250_save(struct serial8250 *s, struct snapshot_writer *w)
{
	pthread_mutex_lock(&s->lock);
	sw_u8(w, s->ier);
	sw_u8(w, s->lcr);
	sw_u8(w, s->mcr);
	sw_u8(w, s->scr);
	sw_u8(w, s->fcr);
	sw_u8(w, s->dll);
	sw_u8(w, s->dlm);
	sw_u8(w, s->thre_pending);
	sw_u32(w, (uint32_t)s->irq_level);
	sw_u32(w, s->rx_count);
	for (unsigned i = 0; i < s->rx_count; i++)
		sw_u8(w, s->rx[(s->rx_head + i) % SERIAL8250_FIFO_SIZE]);
	pthread_mutex_unlock(&s->lock);
}

int serial8250_restore(struct serial8250 *s, struct snapshot_reader *r)
{
	uint32_t n;

	pthread_mutex_lock(&s->lock);
	s->ier = sr_u8(r);
	s->lcr = sr_u8(r);
	s->mcr = sr_u8(r);
	s->scr = sr_u8(r);
	s->fcr = sr_u8(r);
	s->dll = sr_u8(r);
	s->dlm = sr_u8(r);
	s->thre_pending = sr_u8(r);
	s->irq_level = (int)sr_u32(r);
	n = sr_u32(r);
	if (n > SERIAL8250_FIFO_SIZE)
		r->bad = true;
	s->rx_head = 0;
	s->rx_count = 0;
	for (uint32_t i = 0; i < n && !r->bad; i++)
		s->rx[s->rx_count++] = sr_u8(r);
	pthread_mutex_unlock(&s->lock);
	/* the line as it was (the irqchip's own state came back already) */
	if (!r->bad && s->ops && s->ops->set_irq)
		s->ops->set_irq(s->opaque, s->irq_level);
	return r->bad ? -EINVAL : 0;
}
