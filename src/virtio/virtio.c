/* SPDX-License-Identifier: MIT */
/* Transport-independent parts of a virtio device. */
#include "virtio.h"

static const char *dev_name(const struct virtio_dev *d)
{
	return d->ops && d->ops->name ? d->ops->name : "virtio";
}

uint64_t virtio_dev_features(struct virtio_dev *d)
{
	uint64_t f = d->ops && d->ops->features ? d->ops->features(d) : 0;

	return f | 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_EVENT_IDX |
	       1ull << VIRTIO_F_INDIRECT_DESC;
}

void virtio_dev_apply_features(struct virtio_dev *d)
{
	/* Only what we offered counts, whatever the driver wrote. */
	uint64_t f = d->driver_features & virtio_dev_features(d);

	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct virtq *q = &d->vqs[i];

		q->event_idx = f & 1ull << VIRTIO_F_EVENT_IDX;
		q->indirect = f & 1ull << VIRTIO_F_INDIRECT_DESC;
		q->mem = d->mem;
	}
}

void virtio_dev_complete(struct virtio_dev *d, unsigned q, uint16_t head,
			 uint32_t written)
{
	struct virtq *vq;

	if (q >= VIRTIO_MAX_QUEUES) {
		kiln_logf_limited(d->log, &d->log_limit, KILN_LOG_ERROR,
				  "%s: completion on queue %u", dev_name(d), q);
		return;
	}
	vq = &d->vqs[q];
	if (virtq_push(vq, head, written) < 0) {
		virtio_dev_fail(d, "cannot return a buffer to the used ring");
		return;
	}
	if (virtq_should_notify(vq) && d->transport &&
	    d->transport->notify_used)
		d->transport->notify_used(d, q);
}

void virtio_dev_fail(struct virtio_dev *d, const char *why)
{
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		d->vqs[i].broken = true;
	/* Tell the driver once: it has to reset the device anyway, and a
	 * guest must not be able to flood the log (nor by resetting the
	 * device and breaking it again: rate-limited). */
	if (d->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	kiln_logf_limited(d->log, &d->log_limit, KILN_LOG_ERROR,
			  "%s: %s; device needs reset", dev_name(d), why);
	d->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (d->transport && d->transport->needs_reset)
		d->transport->needs_reset(d);
}

void virtio_dev_reset(struct virtio_dev *d)
{
	if (d->ops && d->ops->reset)
		d->ops->reset(d);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		virtq_reset(&d->vqs[i]);
	d->status = 0;
	d->driver_features = 0;
}
