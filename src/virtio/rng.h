/* SPDX-License-Identifier: MIT */
/* virtio-rng (virtio 1.2, 5.4): entropy from the host's getrandom(). */
#ifndef KILN_VIRTIO_RNG_H
#define KILN_VIRTIO_RNG_H

#include "virtio/virtio.h"

/* The device type (device_table.h): "rng", no options; every VM has one. */
extern const struct virtio_dev_ops virtio_rng_ops;

/* Fills dev->ops/priv for a virtio-rng device. */
void virtio_rng_init(struct virtio_dev *dev);

#endif
