/* SPDX-License-Identifier: MIT */
/*
 * A virtio device as every transport sees it: one const ops table per device
 * type (console, blk, rng, ...), driven the same way by virtio-mmio inside
 * the VMM and by the vhost-user server for other VMMs.
 */
#ifndef KILN_VIRTIO_VIRTIO_H
#define KILN_VIRTIO_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "mem/guest_mem.h"
#include "util/log.h"
#include "virtio/virtqueue.h"

/* Device status bits (virtio 1.2, 2.1) */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER	  2
#define VIRTIO_STATUS_DRIVER_OK	  4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED	  128

/* Feature bits every kiln device may offer */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1     32

#define VIRTIO_MAX_QUEUES 8

/* Device ids (virtio 1.2, 5) */
#define VIRTIO_ID_NET	  1
#define VIRTIO_ID_BLOCK	  2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG	  4
#define VIRTIO_ID_VSOCK	  19
#define VIRTIO_ID_FS	  26

struct virtio_dev;
struct virtio_dev_opts;
struct snapshot_writer;
struct snapshot_reader;

struct virtio_dev_ops {
	const char *name; /* for messages: "virtio-blk" */
	uint32_t device_id;
	unsigned num_queues;
	uint16_t queue_max_size;
	/* device-specific feature bits (transport adds VERSION_1 etc.) */
	uint64_t (*features)(struct virtio_dev *d);
	uint32_t config_size;
	/* config space access; off+len <= config_size is checked by caller */
	void (*config_read)(struct virtio_dev *d, uint32_t off, uint8_t *buf,
			    uint32_t len);
	void (*config_write)(struct virtio_dev *d, uint32_t off,
			     const uint8_t *buf, uint32_t len);
	/* driver set DRIVER_OK: queues are configured and frozen; <0 fails */
	int (*activate)(struct virtio_dev *d);
	/* queue q has new available buffers; runs on the device thread */
	void (*queue_notify)(struct virtio_dev *d, unsigned q);
	/* back to the state before the driver touched the device */
	void (*reset)(struct virtio_dev *d);
	/* optional: a device that runs requests on threads of its own waits
	 * for all of them and completes them to their rings; the transport
	 * calls it before a ring stops or the memory it points into changes */
	void (*quiesce)(struct virtio_dev *d);

	/* ---- life cycle: what the device table (device_table.h) needs;
	 * a type without create is not in the table (the console) ---- */
	const char *type;		/* its name in options: "blk" */
	const char *const *option_keys; /* NULL-terminated; NULL: none */
	const char *option_usage;	/* for help texts: "path=IMAGE[,ro]" */
	/* at most this many per VM; 0: no limit of its own */
	unsigned max_per_vm;
	/* checks option values, no side effects: 0 or -EINVAL (logged) */
	int (*check)(const struct virtio_dev_opts *o,
		     const struct kiln_log *log);
	/* builds the device in d (ops, priv) from checked options; d->log
	 * is set: 0 or -errno (logged) */
	int (*create)(struct virtio_dev *d, const struct virtio_dev_opts *o);
	/* frees what create made; idempotent */
	void (*destroy)(struct virtio_dev *d);
	/* optional: a host fd the owner watches for readability and then
	 * calls host_events, on the thread and under the lock it runs
	 * queue_notify with */
	int (*host_fd)(const struct virtio_dev *d);
	void (*host_events)(struct virtio_dev *d);
	/* QEMU's vhost-user front end for this type (emulating engine),
	 * with fixed properties: "vhost-user-blk,num-queues=1" */
	const char *vhost_user_frontend;
	/* the front end is a network device: QEMU wants
	 * -netdev vhost-user,chardev=C -device FRONTEND,netdev=N */
	bool vhost_user_netdev;
	/* optional: per-device front-end properties ("tag=data"); bytes
	 * written (< len) or -ENOSPC */
	int (*frontend_props)(const struct virtio_dev *d, char *buf,
			      unsigned len);
	/* optional (snapshots): device state out and back in; a device
	 * without them cannot be snapshotted */
	int (*save)(const struct virtio_dev *d, struct snapshot_writer *w);
	int (*restore)(struct virtio_dev *d, struct snapshot_reader *r);
};

/* What a device asks of its transport. */
struct virtio_transport_ops {
	/* interrupt the driver for used buffers on queue q */
	void (*notify_used)(struct virtio_dev *d, unsigned q);
	/* the device saw a malformed ring: set DEVICE_NEEDS_RESET, notify */
	void (*needs_reset)(struct virtio_dev *d);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *priv; /* device state */
	const struct guest_mem *mem;
	const struct kiln_log *log;
	uint64_t driver_features;
	uint8_t status;
	struct virtq vqs[VIRTIO_MAX_QUEUES];
	const struct virtio_transport_ops *transport;
	void *transport_priv;
	/* for the log lines a driver can trigger at will (zeroed: full) */
	struct kiln_ratelimit log_limit;
};

/* Features the device offers: ops->features() plus VERSION_1, EVENT_IDX
 * and INDIRECT_DESC. */
uint64_t virtio_dev_features(struct virtio_dev *d);

/* Applies negotiated features to the queues (event idx, indirect). */
void virtio_dev_apply_features(struct virtio_dev *d);

/* Pushes a used chain and interrupts the driver if it wants one. */
void virtio_dev_complete(struct virtio_dev *d, unsigned q, uint16_t head,
			 uint32_t written);

/* Marks the device broken (DEVICE_NEEDS_RESET) after a malformed ring. */
void virtio_dev_fail(struct virtio_dev *d, const char *why);

/* Resets device and queues (status 0). */
void virtio_dev_reset(struct virtio_dev *d);

#endif
