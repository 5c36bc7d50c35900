/* SPDX-License-Identifier: MIT */
/*
 * vhost-user back-end: serves one kiln virtio device to another VMM (QEMU,
 * crosvm, ...) over a Unix socket, one front-end at a time.
 *
 * The front-end is untrusted: every message is size-checked, file
 * descriptors are counted and closed unless used, memory tables are checked
 * before they are mapped, and ring addresses are translated to guest
 * addresses and then only reached through guest_mem_ptr(). A malformed
 * request is refused (with an error reply when one is asked for); only a
 * broken stream (truncated message, bad version, oversized payload, stalled
 * peer) ends the connection, after which the next front-end is accepted.
 *
 * Ring sizes are the front-end's choice (vhost-user cannot offer a
 * maximum): any power of two up to VIRTQ_MAX_SIZE is taken, whatever
 * ops->queue_max_size says, so a device served here must not size
 * per-queue state by queue_max_size.
 *
 * One thread drives everything (socket, kick eventfds, the device's
 * queue_notify) through vhost_user_server_poll() or _run(); only
 * vhost_user_server_stop() may be called from elsewhere.
 */
#ifndef KILN_VHOST_USER_SERVER_H
#define KILN_VHOST_USER_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "util/log.h"
#include "vhost_user/protocol.h"
#include "virtio/virtio.h"

/* Protocol features kiln offers. */
#define VHOST_USER_SERVER_PROTOCOL_FEATURES                                    \
	(1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK |                             \
	 1ull << VHOST_USER_PROTOCOL_F_CONFIG |                                \
	 1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE)

/* How long the rest of a message (or a reply) may take once begun. */
#define VHOST_USER_IO_TIMEOUT_MS 5000

struct vhost_user_server;

/* Creates a server for dev, whose ops/priv are set (e.g. by
 * virtio_blk_create); the server sets dev's transport, mem and log, also
 * serves the device's host fd (ops->host_fd) on its thread, and must be
 * destroyed before dev. No socket yet. Returns 0 or -errno. */
int vhost_user_server_create(struct virtio_dev *dev, const struct kiln_log *log,
			     struct vhost_user_server **out);

/* Listens on a Unix socket at path, replacing a stale socket there (but no
 * other file, and no socket something still listens on). 0 or -errno. */
int vhost_user_server_listen(struct vhost_user_server *s, const char *path);

/* Serves fd, a connected stream socket, as the front-end; takes ownership
 * of fd even on failure. -EBUSY if a front-end is already connected. */
int vhost_user_server_attach(struct vhost_user_server *s, int fd);

/* Waits up to timeout_ms (-1: no limit) for events and handles them:
 * connections, messages, kicks. Returns 1 once stopped, 0 otherwise, or
 * -errno if the server itself failed (its own fds, not the peer's). */
int vhost_user_server_poll(struct vhost_user_server *s, int timeout_ms);

/* Serves front-ends one after the other until stopped. 0 or -errno. */
int vhost_user_server_run(struct vhost_user_server *s);

/* Makes poll/run return 1/0 soon; async-signal-safe, any thread. */
void vhost_user_server_stop(struct vhost_user_server *s);

/* True while a front-end is connected. */
bool vhost_user_server_connected(const struct vhost_user_server *s);

/* Guest RAM as the current memory table maps it (empty without one). */
const struct guest_mem *
vhost_user_server_mem(const struct vhost_user_server *s);

/* Limit for finishing a started message or reply (tests shorten it). */
void vhost_user_server_set_io_timeout(struct vhost_user_server *s, int ms);

/* Handles one received message as if read from the socket (tests, fuzzers):
 * fds are owned by the server from here on (kept or closed). Replies go to
 * the connection, if any. Returns 0, or -errno when the connection must be
 * dropped (a reply could not be sent). */
int vhost_user_server_handle_msg(struct vhost_user_server *s,
				 const struct vhost_user_hdr *hdr,
				 const void *payload, int *fds, unsigned nfds);

/* Drops the front-end (device reset, memory unmapped), closes and removes
 * the socket, frees s. dev itself is left to the caller. NULL is fine. */
void vhost_user_server_destroy(struct vhost_user_server *s);

#endif
