/* SPDX-License-Identifier: MIT */
/*
 * virtio-fs (virtio 1.2, 5.11): one host directory shared with the guest,
 * served by kiln's in-process FUSE server (src/fs/fuse_server.h).
 *
 * Queue 0 is the high-priority queue (the guest sends FORGETs there so
 * they never wait behind a full request queue), queues 1..N the request
 * queues. Every queue is served the same way, synchronously on the thread
 * that runs queue_notify: each chain is one FUSE request, answered in its
 * device-writable buffers. No DAX window and no notification queue are
 * offered. A device reset drops everything the driver held (lookups, open
 * files) and the next driver must send INIT again.
 */
#ifndef KILN_VIRTIO_FS_H
#define KILN_VIRTIO_FS_H

#include <stdbool.h>
#include <stdint.h>

#include "util/log.h"
#include "virtio/virtio.h"

#define VIRTIO_FS_TAG_SIZE	     36 /* config field, NUL-padded */
#define VIRTIO_FS_TAG_MAX	     35 /* bytes; one NUL always follows */
#define VIRTIO_FS_REQUEST_QUEUES     1
#define VIRTIO_FS_HIPRIO_QUEUE	     0
#define VIRTIO_FS_QUEUE_SIZE	     1024
#define VIRTIO_FS_CFG_TAG	     0
#define VIRTIO_FS_CFG_NUM_REQ_QUEUES 36
#define VIRTIO_FS_CONFIG_SIZE	     40

/* Shares one VM may have (max_per_vm): each may hold up to RLIMIT_NOFILE
 * host fds. */
#define VIRTIO_FS_MAX_PER_VM 8

/* Descriptors reserved for the embedder's own use (guest memory, eventfds,
 * sockets) when the share's inode limit is fitted to RLIMIT_NOFILE. */
#define VIRTIO_FS_RESERVED_FDS 256

struct virtio_fs_stats {
	uint64_t requests; /* chains answered with a reply */
	uint64_t no_reply; /* FORGET/BATCH_FORGET: returned with 0 bytes */
	uint64_t dropped;  /* no room for a reply: returned with 0 bytes */
};

#define VIRTIO_FS_READ_ONLY 1u /* every change fails with EROFS */
#define VIRTIO_FS_NO_DEV    2u /* no device nodes made or chmod/chowned */

/* Makes dev a virtio-fs device sharing the directory dir under tag (1..35
 * bytes, no whitespace or control characters); flags: VIRTIO_FS_*.
 * Each inode the guest looks up holds one host fd: the share's inode limit
 * is lowered to fit this process's RLIMIT_NOFILE (minus
 * VIRTIO_FS_RESERVED_FDS), so raise that limit first for large trees. log
 * may be NULL, else must outlive the device. Only dev->ops/priv are set.
 * Returns 0 or -errno: -ENOENT (no dir), -ENOTDIR, -EINVAL (bad tag),
 * -EMFILE (RLIMIT_NOFILE too low), -ENOMEM; each logged. */
int virtio_fs_create(const char *dir, const char *tag, unsigned flags,
		     const struct kiln_log *log, struct virtio_dev *dev);

/* The device type (device_table.h):
 * "fs,dir=DIR,tag=TAG[,ro][,nodev][,mount=PATH]"
 * (mount: where a sandbox's agent mounts it, unused by the device). */
extern const struct virtio_dev_ops virtio_fs_ops;

/* Frees what virtio_fs_create allocated and closes the share; idempotent.
 * No queue_notify may be running. */
void virtio_fs_destroy(struct virtio_dev *dev);

/* Copies the device's counters. */
void virtio_fs_get_stats(const struct virtio_dev *dev,
			 struct virtio_fs_stats *out);

#endif
