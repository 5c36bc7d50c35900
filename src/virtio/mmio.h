/* SPDX-License-Identifier: MIT */
/*
 * virtio-mmio transport, version 2 (virtio 1.2, 4.2.2). Registers are
 * reached from vCPU threads through the MMIO bus; queue notifications arrive
 * on per-queue eventfds (KVM ioeventfd, or written by the bus handler when
 * ioeventfd is missing) that the VM's device thread watches; interrupts go
 * out through an irqfd. Queue configuration is ignored once the queue is
 * enabled or DRIVER_OK is set.
 */
#ifndef KILN_VIRTIO_MMIO_H
#define KILN_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdatomic.h>

#include "virtio/virtio.h"

#define VIRTIO_MMIO_SIZE 0x200
/* Chains one queue notification may handle before the other devices on
 * the device thread get their turn. */
#define VIRTIO_MMIO_NOTIFY_BUDGET 64

struct virtio_mmio {
	struct virtio_dev dev;
	uint64_t base;	      /* guest-physical address of the registers */
	uint32_t gsi;	      /* interrupt line */
	pthread_mutex_t lock; /* registers and queue config (not ISR) */
	atomic_uint isr;      /* InterruptStatus */
	uint32_t dev_features_sel, drv_features_sel, queue_sel;
	uint32_t config_generation;
	int irq_fd;			  /* eventfd bound to gsi by irqfd */
	int notify_fd[VIRTIO_MAX_QUEUES]; /* one eventfd per queue */
	bool ioeventfd;			  /* KVM delivers notifies itself */
};

/* Sets up the transport around an already created device (dev->ops/priv
 * filled): eventfds, irqfd and ioeventfds on vm_fd (-1 for tests: no KVM).
 * Returns 0 or -errno. */
int virtio_mmio_init(struct virtio_mmio *t, const struct guest_mem *mem,
		     const struct kiln_log *log, uint64_t base, uint32_t gsi,
		     int vm_fd);

/* Closes the transport's fds (the device itself is the caller's). */
void virtio_mmio_destroy(struct virtio_mmio *t, int vm_fd);

/* MMIO bus handler for [base, base + VIRTIO_MMIO_SIZE). */
void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data,
			uint32_t size, bool is_write);

/* Device thread: queue q's notify eventfd fired. */
void virtio_mmio_handle_notify(struct virtio_mmio *t, unsigned q);

struct snapshot_writer;
struct snapshot_reader;
/* Snapshots: the transport's registers, each queue's configuration and
 * position, then the device's own state (ops->save). 0, or -ENOTSUP for a
 * device type that cannot be saved, or the device's refusal (logged).
 * The device must be idle (the VM paused, ops->quiesce done). */
int virtio_mmio_save(struct virtio_mmio *t, struct snapshot_writer *w);
/* Puts what virtio_mmio_save wrote into a transport just set up for the
 * same device: queues are checked as when a driver configures them, a
 * device whose driver was live is activated again, ops->restore gets its
 * part; then every ready queue is kicked once (a notify the guest made
 * before the snapshot must not be waited for again). 0 or -errno
 * (logged). */
int virtio_mmio_restore(struct virtio_mmio *t, struct snapshot_reader *r);

/* Kernel cmdline fragment announcing the device, e.g.
 * "virtio_mmio.device=512@0xd0000000:5". */
int virtio_mmio_cmdline(const struct virtio_mmio *t, char *buf, size_t len);

#endif
