/* SPDX-License-Identifier: MIT */
/*
 * A fake virtio driver for the device unit tests: split virtqueues built by
 * hand in fake guest RAM, the way a guest driver lays them out (descriptor
 * table, avail ring, used ring; little-endian), and a transport that only
 * counts what the device asks of it. Header-only: each test is one file.
 *
 *   struct fake_vq v = {.ram = ram, .desc_gpa = ..., .size = 16};
 *   fake_vq_attach(&v, &dev->vqs[0], max);  the device's queue uses it
 *   fake_vq_desc(&v, 0, gpa, len, VIRTQ_DESC_F_NEXT, 1);
 *   fake_vq_publish(&v, 0);                 offers the chain at head 0
 *   dev->ops->queue_notify(dev, 0);
 *   fake_vq_take_used(&v, &id, &len);       what the device gave back
 *
 * and, without any ring, chains made by hand as virtq_pop hands them to a
 * device (fake_chain_new, fake_chain_out, fake_chain_in).
 */
#ifndef KILN_TESTS_FAKE_DRIVER_H
#define KILN_TESTS_FAKE_DRIVER_H

#include <endian.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mem/guest_mem.h"
#include "virtio/virtio.h"
#include "virtio/virtqueue.h"

/* One queue as its driver sees it. */
struct fake_vq {
	uint8_t *ram; /* the fake guest RAM the rings live in */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t size;
	uint16_t avail_idx; /* the driver's next avail index */
	uint16_t used_seen; /* used elements taken so far */
};

/* Descriptor i of the table at table_gpa (a queue's or an indirect one). */
static inline void fake_desc(uint8_t *ram, uint64_t table_gpa, uint16_t i,
			     uint64_t addr, uint32_t len, uint16_t flags,
			     uint16_t next)
{
	uint8_t *d = ram + table_gpa + 16ull * i;
	uint64_t a = htole64(addr);
	uint32_t l = htole32(len);
	uint16_t f = htole16(flags), n = htole16(next);

	memcpy(d, &a, 8);
	memcpy(d + 8, &l, 4);
	memcpy(d + 12, &f, 2);
	memcpy(d + 14, &n, 2);
}

static inline void fake_vq_desc(struct fake_vq *v, uint16_t i, uint64_t addr,
				uint32_t len, uint16_t flags, uint16_t next)
{
	fake_desc(v->ram, v->desc_gpa, i, addr, len, flags, next);
}

/* Offers the chain at head: the ring entry, then the index (release). */
static inline void fake_vq_publish(struct fake_vq *v, uint16_t head)
{
	uint16_t h = htole16(head);

	memcpy(v->ram + v->avail_gpa + 4 + 2ull * (v->avail_idx % v->size), &h,
	       2);
	v->avail_idx++;
	__atomic_store_n((uint16_t *)(v->ram + v->avail_gpa + 2),
			 htole16(v->avail_idx), __ATOMIC_RELEASE);
}

/* The next used element: its id and length; false (and both untouched)
 * when there is none. */
static inline bool fake_vq_take_used(struct fake_vq *v, uint32_t *id,
				     uint32_t *len)
{
	uint16_t idx = le16toh(__atomic_load_n(
		(uint16_t *)(v->ram + v->used_gpa + 2), __ATOMIC_ACQUIRE));
	const uint8_t *el;

	if (idx == v->used_seen)
		return false;
	el = v->ram + v->used_gpa + 4 + 8ull * (v->used_seen % v->size);
	memcpy(id, el, 4);
	memcpy(len, el + 4, 4);
	*id = le32toh(*id);
	*len = le32toh(*len);
	v->used_seen++;
	return true;
}

/* What the driver writes to the transport for this queue (size, ring
 * addresses, ready), checked as a transport would against max_size. The
 * driver's indexes start again at 0. */
static inline int fake_vq_attach(struct fake_vq *v, struct virtq *q,
				 uint16_t max_size)
{
	int err;

	v->avail_idx = v->used_seen = 0;
	q->size = v->size;
	q->desc_gpa = v->desc_gpa;
	q->avail_gpa = v->avail_gpa;
	q->used_gpa = v->used_gpa;
	err = virtq_check_config(q, max_size);
	if (err == 0)
		q->ready = true;
	return err;
}

/* An empty chain (freed by the caller), then its device-readable (out)
 * and device-writable (in) segments, in order. */
static inline struct virtq_chain *fake_chain_new(void)
{
	struct virtq_chain *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	return c;
}

static inline void fake_chain_out(struct virtq_chain *c, void *p, size_t len)
{
	c->out[c->n_out++] = (struct iovec){p, len};
	c->out_len += len;
}

static inline void fake_chain_in(struct virtq_chain *c, void *p, size_t len)
{
	c->in[c->n_in++] = (struct iovec){p, len};
	c->in_len += len;
}

/* A transport that counts notifications and reset requests. */
struct fake_transport {
	unsigned notified, resets;
};

__attribute__((unused)) static void fake_transport_notify(struct virtio_dev *d,
							  unsigned q)
{
	struct fake_transport *t = d->transport_priv;

	(void)q;
	t->notified++;
}

__attribute__((unused)) static void
fake_transport_needs_reset(struct virtio_dev *d)
{
	struct fake_transport *t = d->transport_priv;

	t->resets++;
}

__attribute__((
	unused)) static const struct virtio_transport_ops fake_transport_ops = {
	.notify_used = fake_transport_notify,
	.needs_reset = fake_transport_needs_reset,
};

/* Puts a created device on fake RAM and the counting transport. */
static inline void fake_driver_bind(struct virtio_dev *d, struct guest_mem *mem,
				    struct fake_transport *t)
{
	d->mem = mem;
	d->transport = &fake_transport_ops;
	d->transport_priv = t;
}

/* The driver accepts every feature the device offers. */
static inline void fake_driver_take_features(struct virtio_dev *d)
{
	d->driver_features = virtio_dev_features(d);
	virtio_dev_apply_features(d);
}

/* The status a driver sets once its queues are configured. */
static inline void fake_driver_ok(struct virtio_dev *d)
{
	d->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		    VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
}

#endif
