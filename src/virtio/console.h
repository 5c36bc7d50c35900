/* SPDX-License-Identifier: MIT */
/*
 * virtio-console (virtio 1.2, 5.3), single port: hvc0 in the guest. Output
 * goes to a callback; input comes from push_input, buffered (bounded) until the
 * driver posts receive buffers.
 */
#ifndef KILN_VIRTIO_CONSOLE_H
#define KILN_VIRTIO_CONSOLE_H

#include <pthread.h>
#include <stddef.h>

#include "virtio/virtio.h"

#define VCON_RX_BUF 4096

typedef void (*virtio_console_output_fn)(void *opaque, const uint8_t *buf,
					 size_t len);

struct virtio_console {
	virtio_console_output_fn output;
	void *opaque;
	pthread_mutex_t lock; /* rx buffer */
	uint8_t rx[VCON_RX_BUF];
	size_t rx_len;
	struct virtq_chain chain; /* scratch, device thread only */
};

/* Fills dev->ops/priv; guest output goes to output(opaque, ...). */
void virtio_console_init(struct virtio_console *c, struct virtio_dev *dev,
			 virtio_console_output_fn output, void *opaque);

/* Queues host input for the guest and delivers what fits in posted
 * buffers; returns bytes accepted (less than len when the buffer is full).
 * Call on the device thread (it touches the receive queue). */
size_t virtio_console_push_input(struct virtio_dev *dev, const uint8_t *buf,
				 size_t len);

/* Free space in the input buffer. */
size_t virtio_console_rx_room(struct virtio_dev *dev);

#endif
