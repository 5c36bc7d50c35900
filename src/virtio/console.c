/* SPDX-License-Identifier: MIT */
#include "console.h"

#include <errno.h>
#include <string.h>

#include "util/snapshot_io.h"

#define VCON_RXQ 0
#define VCON_TXQ 1

static uint64_t console_features(struct virtio_dev *d)
{
	(void)d;
	return 0; /* one port, no size, no emergency write */
}

static void console_config_read(struct virtio_dev *d, uint32_t off,
				uint8_t *buf, uint32_t len)
{
	/* struct virtio_console_config: cols, rows, max_nr_ports, emerg_wr;
	 * all zero without the matching features. */
	(void)d;
	(void)off;
	memset(buf, 0, len);
}

/* Moves buffered input into posted receive buffers. */
static void deliver_input(struct virtio_dev *d)
{
	struct virtio_console *c = d->priv;
	struct virtq *q = &d->vqs[VCON_RXQ];
	int r = 1;

	if (!(d->status & VIRTIO_STATUS_DRIVER_OK) || !q->ready || q->broken)
		return;
	pthread_mutex_lock(&c->lock);
	while (c->rx_len && (r = virtq_pop(q, &c->chain)) > 0) {
		size_t n = virtq_chain_write(&c->chain, 0, c->rx, c->rx_len);

		memmove(c->rx, c->rx + n, c->rx_len - n);
		c->rx_len -= n;
		virtio_dev_complete(d, VCON_RXQ, c->chain.head, (uint32_t)n);
	}
	pthread_mutex_unlock(&c->lock);
	if (r < 0)
		virtio_dev_fail(d, "malformed console receive ring");
}

static void console_queue_notify(struct virtio_dev *d, unsigned qi)
{
	struct virtio_console *c = d->priv;
	int r;

	if (qi == VCON_RXQ) {
		deliver_input(d);
		return;
	}
	while ((r = virtq_pop(&d->vqs[qi], &c->chain)) > 0) {
		for (unsigned i = 0; i < c->chain.n_out; i++)
			c->output(c->opaque, c->chain.out[i].iov_base,
				  c->chain.out[i].iov_len);
		virtio_dev_complete(d, qi, c->chain.head, 0);
	}
	if (r < 0)
		virtio_dev_fail(d, "malformed console transmit ring");
}

static void console_reset(struct virtio_dev *d)
{
	(void)d; /* pending input survives a driver reset */
}

/* Host input not delivered yet goes with a snapshot. */
static int console_save(const struct virtio_dev *d, struct snapshot_writer *w)
{
	struct virtio_console *c = d->priv;

	pthread_mutex_lock(&c->lock);
	sw_u32(w, (uint32_t)c->rx_len);
	sw_bytes(w, c->rx, c->rx_len);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static int console_restore(struct virtio_dev *d, struct snapshot_reader *r)
{
	struct virtio_console *c = d->priv;
	uint32_t n = sr_u32(r);

	if (n > VCON_RX_BUF) {
		r->bad = true;
		return -EINVAL;
	}
	pthread_mutex_lock(&c->lock);
	sr_bytes(r, c->rx, n);
	c->rx_len = r->bad ? 0 : n;
	pthread_mutex_unlock(&c->lock);
	return r->bad ? -EINVAL : 0;
}

static const struct virtio_dev_ops console_ops = {
	.name = "virtio-console",
	.device_id = VIRTIO_ID_CONSOLE,
	.num_queues = 2,
	.queue_max_size = 256,
	.features = console_features,
	.config_size = 12,
	.config_read = console_config_read,
	.queue_notify = console_queue_notify,
	.reset = console_reset,
	.save = console_save,
	.restore = console_restore,
};

void virtio_console_init(struct virtio_console *c, struct virtio_dev *dev,
			 virtio_console_output_fn output, void *opaque)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	c->output = output;
	c->opaque = opaque;
	dev->ops = &console_ops;
	dev->priv = c;
}

size_t virtio_console_push_input(struct virtio_dev *dev, const uint8_t *buf,
				 size_t len)
{
	struct virtio_console *c = dev->priv;
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = VCON_RX_BUF - c->rx_len;
	if (n > len)
		n = len;
	memcpy(c->rx + c->rx_len, buf, n);
	c->rx_len += n;
	pthread_mutex_unlock(&c->lock);
	deliver_input(dev);
	return n;
}

size_t virtio_console_rx_room(struct virtio_dev *dev)
{
	struct virtio_console *c = dev->priv;
	size_t room;

	pthread_mutex_lock(&c->lock);
	room = VCON_RX_BUF - c->rx_len;
	pthread_mutex_unlock(&c->lock);
	return room;
}
