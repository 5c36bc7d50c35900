/* SPDX-License-Identifier: MIT */
#include "mmio.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "util/snapshot_io.h"

#define MMIO_MAGIC		 0x000
#define MMIO_VERSION		 0x004
#define MMIO_DEVICE_ID		 0x008
#define MMIO_VENDOR_ID		 0x00c
#define MMIO_DEVICE_FEATURES	 0x010
#define MMIO_DEVICE_FEATURES_SEL 0x014
#define MMIO_DRIVER_FEATURES	 0x020
#define MMIO_DRIVER_FEATURES_SEL 0x024
#define MMIO_QUEUE_SEL		 0x030
#define MMIO_QUEUE_NUM_MAX	 0x034
#define MMIO_QUEUE_NUM		 0x038
#define MMIO_QUEUE_READY	 0x044
#define MMIO_QUEUE_NOTIFY	 0x050
#define MMIO_INTERRUPT_STATUS	 0x060
#define MMIO_INTERRUPT_ACK	 0x064
#define MMIO_STATUS		 0x070
#define MMIO_QUEUE_DESC_LOW	 0x080
#define MMIO_QUEUE_DESC_HIGH	 0x084
#define MMIO_QUEUE_AVAIL_LOW	 0x090
#define MMIO_QUEUE_AVAIL_HIGH	 0x094
#define MMIO_QUEUE_USED_LOW	 0x0a0
#define MMIO_QUEUE_USED_HIGH	 0x0a4
#define MMIO_CONFIG_GENERATION	 0x0fc
#define MMIO_CONFIG		 0x100

#define MMIO_MAGIC_VALUE 0x74726976 /* "virt" */
#define MMIO_VENDOR_KILN 0x4e4c494b /* "KILN" */
#define ISR_USED	 1
#define ISR_CONFIG	 2

static void mmio_notify_used(struct virtio_dev *d, unsigned q)
{
	struct virtio_mmio *t = d->transport_priv;
	uint64_t one = 1;

	(void)q;
	atomic_fetch_or(&t->isr, ISR_USED);
	if (t->irq_fd >= 0 && write(t->irq_fd, &one, sizeof(one)) < 0) {
		/* eventfd counter saturated: an interrupt is pending anyway */
	}
}

static void mmio_needs_reset(struct virtio_dev *d)
{
	struct virtio_mmio *t = d->transport_priv;
	uint64_t one = 1;

	d->status |= VIRTIO_STATUS_NEEDS_RESET;
	atomic_fetch_or(&t->isr, ISR_CONFIG);
	if (t->irq_fd >= 0 && write(t->irq_fd, &one, sizeof(one)) < 0) {
		/* as above */
	}
}

/* Signals queue q's notify eventfd, as KVM's ioeventfd does. */
static void queue_kick(struct virtio_mmio *t, unsigned q)
{
	uint64_t one = 1;

	if (t->notify_fd[q] >= 0 &&
	    write(t->notify_fd[q], &one, sizeof(one)) < 0) {
		/* counter saturated: a notify is pending anyway */
	}
}

static const struct virtio_transport_ops mmio_transport_ops = {
	.notify_used = mmio_notify_used,
	.needs_reset = mmio_needs_reset,
};

int virtio_mmio_init(struct virtio_mmio *t, const struct guest_mem *mem,
		     const struct kiln_log *log, uint64_t base, uint32_t gsi,
		     int vm_fd)
{
	unsigned nq = t->dev.ops->num_queues;

	if (nq == 0 || nq > VIRTIO_MAX_QUEUES)
		return -EINVAL;
	pthread_mutex_init(&t->lock, NULL);
	atomic_init(&t->isr, 0);
	t->base = base;
	t->gsi = gsi;
	t->dev.mem = mem;
	t->dev.log = log;
	t->dev.transport = &mmio_transport_ops;
	t->dev.transport_priv = t;
	t->irq_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		t->notify_fd[q] = -1;
		virtq_reset(&t->dev.vqs[q]);
		t->dev.vqs[q].mem = mem;
	}
	t->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->irq_fd < 0)
		return -errno;
	if (vm_fd >= 0) {
		struct kvm_irqfd irqfd = {.fd = (uint32_t)t->irq_fd,
					  .gsi = gsi};

		if (ioctl(vm_fd, KVM_IRQFD, &irqfd) < 0)
			return kiln_errorf(log, -errno, "KVM_IRQFD for %s: %s",
					   t->dev.ops->name, strerror(errno));
	}
	t->ioeventfd = vm_fd >= 0;
	for (unsigned q = 0; q < nq; q++) {
		t->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (t->notify_fd[q] < 0)
			return -errno;
		if (vm_fd >= 0) {
			struct kvm_ioeventfd io = {
				.datamatch = q,
				.addr = base + MMIO_QUEUE_NOTIFY,
				.len = 4,
				.fd = t->notify_fd[q],
				.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
			};

			if (ioctl(vm_fd, KVM_IOEVENTFD, &io) < 0)
				t->ioeventfd =
					false; /* bus handler writes it */
		}
	}
	return 0;
}

void virtio_mmio_destroy(struct virtio_mmio *t, int vm_fd)
{
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (t->notify_fd[q] < 0)
			continue;
		if (vm_fd >= 0 && t->ioeventfd) {
			struct kvm_ioeventfd io = {
				.datamatch = q,
				.addr = t->base + MMIO_QUEUE_NOTIFY,
				.len = 4,
				.fd = t->notify_fd[q],
				.flags = KVM_IOEVENTFD_FLAG_DATAMATCH |
					 KVM_IOEVENTFD_FLAG_DEASSIGN,
			};

			ioctl(vm_fd, KVM_IOEVENTFD, &io);
		}
		close(t->notify_fd[q]);
		t->notify_fd[q] = -1;
	}
	if (t->irq_fd >= 0) {
		if (vm_fd >= 0) {
			struct kvm_irqfd irqfd = {
				.fd = (uint32_t)t->irq_fd,
				.gsi = t->gsi,
				.flags = KVM_IRQFD_FLAG_DEASSIGN};

			ioctl(vm_fd, KVM_IRQFD, &irqfd);
		}
		close(t->irq_fd);
		t->irq_fd = -1;
	}
	pthread_mutex_destroy(&t->lock);
}

static struct virtq *selected_queue(struct virtio_mmio *t)
{
	if (t->queue_sel >= t->dev.ops->num_queues)
		return NULL;
	return &t->dev.vqs[t->queue_sel];
}

/* Queue registers may change only while the queue is off and the driver is
 * not live: afterwards a guest could retarget rings under the device. */
static struct virtq *configurable_queue(struct virtio_mmio *t)
{
	struct virtq *q = selected_queue(t);

	if (!q || q->ready || (t->dev.status & VIRTIO_STATUS_DRIVER_OK))
		return NULL;
	return q;
}

static void set_addr_half(uint64_t *addr, uint32_t v, bool high)
{
	if (high)
		*addr = (*addr & 0xffffffffull) | (uint64_t)v << 32;
	else
		*addr = (*addr & ~0xffffffffull) | v;
}

static void write_status(struct virtio_mmio *t, uint32_t v)
{
	struct virtio_dev *d = &t->dev;
	uint8_t old = d->status, status = (uint8_t)v;

	if (status == 0) {
		virtio_dev_reset(d);
		for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
			d->vqs[q].mem = d->mem;
		atomic_store(&t->isr, 0);
		return;
	}
	/* A driver only adds bits (virtio 1.2, 2.1.1); only a reset clears
	 * them. Otherwise dropping DRIVER_OK or FEATURES_OK would unfreeze
	 * the queue and feature registers under a live device. */
	status |= old;
	/* FEATURES_OK only sticks if we accept the driver's choice. */
	if ((status & VIRTIO_STATUS_FEATURES_OK) &&
	    !(old & VIRTIO_STATUS_FEATURES_OK)) {
		uint64_t offered = virtio_dev_features(d);

		if ((d->driver_features & ~offered) ||
		    !(d->driver_features & (1ull << VIRTIO_F_VERSION_1)))
			status &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
		else
			virtio_dev_apply_features(d);
	}
	d->status = status;
	if ((status & VIRTIO_STATUS_DRIVER_OK) &&
	    !(old & VIRTIO_STATUS_DRIVER_OK)) {
		if (!(d->status & VIRTIO_STATUS_FEATURES_OK) ||
		    (d->ops->activate && d->ops->activate(d) < 0))
			virtio_dev_fail(d, "activation failed");
	}
}

static uint32_t mmio_read(struct virtio_mmio *t, uint64_t off)
{
	struct virtio_dev *d = &t->dev;
	struct virtq *q;

	switch (off) {
	case MMIO_MAGIC: return MMIO_MAGIC_VALUE;
	case MMIO_VERSION: return 2;
	case MMIO_DEVICE_ID: return d->ops->device_id;
	case MMIO_VENDOR_ID: return MMIO_VENDOR_KILN;
	case MMIO_DEVICE_FEATURES:
		if (t->dev_features_sel > 1)
			return 0;
		return (uint32_t)(virtio_dev_features(d) >>
				  (32 * t->dev_features_sel));
	case MMIO_QUEUE_NUM_MAX:
		return selected_queue(t) ? d->ops->queue_max_size : 0;
	case MMIO_QUEUE_READY: q = selected_queue(t); return q && q->ready;
	case MMIO_INTERRUPT_STATUS: return atomic_load(&t->isr);
	case MMIO_STATUS: return d->status;
	case MMIO_CONFIG_GENERATION: return t->config_generation;
	default: return 0;
	}
}

static void mmio_write(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	struct virtio_dev *d = &t->dev;
	struct virtq *q;

	switch (off) {
	case MMIO_DEVICE_FEATURES_SEL: t->dev_features_sel = v; return;
	case MMIO_DRIVER_FEATURES_SEL: t->drv_features_sel = v; return;
	case MMIO_DRIVER_FEATURES:
		/* frozen once FEATURES_OK is set */
		if (t->drv_features_sel > 1 ||
		    (d->status & VIRTIO_STATUS_FEATURES_OK))
			return;
		set_addr_half(&d->driver_features, v, t->drv_features_sel == 1);
		return;
	case MMIO_QUEUE_SEL: t->queue_sel = v; return;
	case MMIO_QUEUE_NUM:
		if ((q = configurable_queue(t)))
			q->size = v > 0xffff ? 0 : (uint16_t)v;
		return;
	case MMIO_QUEUE_READY:
		q = selected_queue(t);
		if (!q || (d->status & VIRTIO_STATUS_DRIVER_OK))
			return;
		if (v == 0) {
			q->ready = false;
		} else if (!q->ready) {
			if (virtq_check_config(q, d->ops->queue_max_size) == 0)
				q->ready = true;
			else
				kiln_logf_limited(
					d->log, &d->log_limit, KILN_LOG_WARN,
					"%s: queue %u configuration refused",
					d->ops->name, t->queue_sel);
		}
		return;
	case MMIO_QUEUE_DESC_LOW:
	case MMIO_QUEUE_DESC_HIGH:
		if ((q = configurable_queue(t)))
			set_addr_half(&q->desc_gpa, v,
				      off == MMIO_QUEUE_DESC_HIGH);
		return;
	case MMIO_QUEUE_AVAIL_LOW:
	case MMIO_QUEUE_AVAIL_HIGH:
		if ((q = configurable_queue(t)))
			set_addr_half(&q->avail_gpa, v,
				      off == MMIO_QUEUE_AVAIL_HIGH);
		return;
	case MMIO_QUEUE_USED_LOW:
	case MMIO_QUEUE_USED_HIGH:
		if ((q = configurable_queue(t)))
			set_addr_half(&q->used_gpa, v,
				      off == MMIO_QUEUE_USED_HIGH);
		return;
	case MMIO_STATUS: write_status(t, v); return;
	default: return;
	}
}

void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data,
			uint32_t size, bool is_write)
{
	struct virtio_mmio *t = opaque;
	struct virtio_dev *d = &t->dev;
	uint32_t v = 0;

	if (offset >= MMIO_CONFIG) {
		uint64_t coff = offset - MMIO_CONFIG;

		if (coff >= d->ops->config_size ||
		    size > d->ops->config_size - coff) {
			if (!is_write)
				memset(data, 0xff, size);
			return;
		}
		pthread_mutex_lock(&t->lock);
		if (is_write && d->ops->config_write)
			d->ops->config_write(d, (uint32_t)coff, data, size);
		else if (!is_write && d->ops->config_read)
			d->ops->config_read(d, (uint32_t)coff, data, size);
		else if (!is_write)
			memset(data, 0, size);
		pthread_mutex_unlock(&t->lock);
		return;
	}
	/* Registers are 32-bit; anything else is a driver bug: ignore. */
	if (size != 4 || (offset & 3)) {
		if (!is_write)
			memset(data, 0xff, size);
		return;
	}
	if (!is_write) {
		if (offset == MMIO_INTERRUPT_STATUS) {
			v = atomic_load(&t->isr);
		} else {
			pthread_mutex_lock(&t->lock);
			v = mmio_read(t, offset);
			pthread_mutex_unlock(&t->lock);
		}
		memcpy(data, &v, 4);
		return;
	}
	memcpy(&v, data, 4);
	if (offset == MMIO_QUEUE_NOTIFY) {
		/* Reached only without ioeventfd: hand it to the device thread
		 * the same way KVM would. */
		if (v < d->ops->num_queues)
			queue_kick(t, v);
		return;
	}
	if (offset == MMIO_INTERRUPT_ACK) {
		atomic_fetch_and(&t->isr, ~v);
		return;
	}
	pthread_mutex_lock(&t->lock);
	mmio_write(t, offset, v);
	pthread_mutex_unlock(&t->lock);
}

void virtio_mmio_handle_notify(struct virtio_mmio *t, unsigned q)
{
	struct virtio_dev *d = &t->dev;
	uint64_t count;

	if (q >= d->ops->num_queues ||
	    read(t->notify_fd[q], &count, sizeof(count)) < 0)
		return;
	pthread_mutex_lock(&t->lock);
	/* Work only for a live driver on a ready, healthy queue. */
	if ((d->status & VIRTIO_STATUS_DRIVER_OK) &&
	    !(d->status & VIRTIO_STATUS_NEEDS_RESET) && d->vqs[q].ready &&
	    !d->vqs[q].broken && d->ops->queue_notify) {
		/* Every device shares the device thread: a busy queue does a
		 * bounded batch, then goes to the back of the line by
		 * notifying itself again. */
		virtq_begin_batch(&d->vqs[q], VIRTIO_MMIO_NOTIFY_BUDGET);
		d->ops->queue_notify(d, q);
		if (virtq_end_batch(&d->vqs[q]))
			queue_kick(t, q);
	}
	pthread_mutex_unlock(&t->lock);
}

int virtio_mmio_cmdline(const struct virtio_mmio *t, char *buf, size_t len)
{
	int n = snprintf(buf, len, "virtio_mmio.device=%u@0x%" PRIx64 ":%u",
			 VIRTIO_MMIO_SIZE, t->base, t->gsi);

	return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

/* ---- snapshots ---- */

int virtio_mmio_save(struct virtio_mmio *t, struct snapshot_writer *w)
{
	struct virtio_dev *d = &t->dev;
	int err;

	if (!d->ops->save)
		return kiln_errorf(d->log, -ENOTSUP,
				   "snapshot: %s cannot be saved (kiln "
				   "snapshots %s devices only when idle and "
				   "stateless to the host)",
				   d->ops->name, d->ops->name);
	pthread_mutex_lock(&t->lock);
	sw_u32(w, d->ops->device_id);
	sw_u32(w, d->ops->num_queues);
	sw_u8(w, d->status);
	sw_u64(w, d->driver_features);
	sw_u32(w, t->dev_features_sel);
	sw_u32(w, t->drv_features_sel);
	sw_u32(w, t->queue_sel);
	sw_u32(w, t->config_generation);
	sw_u32(w, atomic_load(&t->isr));
	for (unsigned q = 0; q < d->ops->num_queues; q++) {
		const struct virtq *vq = &d->vqs[q];

		sw_u16(w, vq->size);
		sw_u64(w, vq->desc_gpa);
		sw_u64(w, vq->avail_gpa);
		sw_u64(w, vq->used_gpa);
		sw_u8(w, (uint8_t)(vq->ready | vq->event_idx << 1 |
				   vq->indirect << 2 | vq->broken << 3 |
				   vq->signalled_used_valid << 4));
		sw_u16(w, vq->last_avail_idx);
		sw_u16(w, vq->used_idx);
		sw_u16(w, vq->signalled_used);
	}
	err = d->ops->save(d, w);
	pthread_mutex_unlock(&t->lock);
	return err;
}

int virtio_mmio_restore(struct virtio_mmio *t, struct snapshot_reader *r)
{
	struct virtio_dev *d = &t->dev;
	uint32_t id = sr_u32(r), nq = sr_u32(r);
	uint8_t status;
	int err = 0;

	if (r->bad || id != d->ops->device_id || nq != d->ops->num_queues ||
	    !d->ops->restore)
		return kiln_errorf(d->log, -EINVAL,
				   "restore: the state of %s does not match "
				   "the device",
				   d->ops->name);
	pthread_mutex_lock(&t->lock);
	status = sr_u8(r);
	d->driver_features = sr_u64(r);
	t->dev_features_sel = sr_u32(r);
	t->drv_features_sel = sr_u32(r);
	t->queue_sel = sr_u32(r);
	t->config_generation = sr_u32(r);
	atomic_store(&t->isr, sr_u32(r));
	for (unsigned q = 0; q < nq && !r->bad; q++) {
		struct virtq *vq = &d->vqs[q];
		uint8_t flags;

		vq->size = sr_u16(r);
		vq->desc_gpa = sr_u64(r);
		vq->avail_gpa = sr_u64(r);
		vq->used_gpa = sr_u64(r);
		flags = sr_u8(r);
		vq->last_avail_idx = sr_u16(r);
		vq->used_idx = sr_u16(r);
		vq->signalled_used = sr_u16(r);
		vq->event_idx = flags & 2;
		vq->indirect = flags & 4;
		vq->broken = flags & 8;
		vq->signalled_used_valid = flags & 16;
		vq->mem = d->mem;
		vq->ready = false;
		/* the same checks as a driver's QUEUE_READY */
		if ((flags & 1) &&
		    virtq_check_config(vq, d->ops->queue_max_size) == 0)
			vq->ready = true;
		else if (flags & 1)
			err = -EINVAL;
	}
	if (r->bad || err) {
		pthread_mutex_unlock(&t->lock);
		return kiln_errorf(d->log, -EINVAL,
				   "restore: the queues of %s are malformed",
				   d->ops->name);
	}
	d->status = status;
	if ((status & VIRTIO_STATUS_DRIVER_OK) &&
	    !(status & VIRTIO_STATUS_NEEDS_RESET) && d->ops->activate &&
	    d->ops->activate(d) < 0)
		virtio_dev_fail(d, "activation after restore failed");
	err = d->ops->restore(d, r);
	pthread_mutex_unlock(&t->lock);
	if (err < 0)
		return err;
	if (r->bad)
		return kiln_errorf(d->log, -EINVAL,
				   "restore: the state of %s is malformed",
				   d->ops->name);
	for (unsigned q = 0; q < nq; q++)
		if (d->vqs[q].ready)
			queue_kick(t, q);
	if (atomic_load(&t->isr) && t->irq_fd >= 0) {
		uint64_t one = 1;

		/* an interrupt the driver has yet to see: raised again */
		if (write(t->irq_fd, &one, sizeof(one)) < 0) {
			/* saturated: pending anyway */
		}
	}
	return 0;
}
