/* SPDX-License-Identifier: MIT */
/*
 * Listening Unix stream sockets with one policy for what a path already
 * holds: a socket nobody accepts on any more (left by a run that died) is
 * replaced; a live socket (-EADDRINUSE) or any other file (-EEXIST) is
 * never touched. On close only the socket we made is removed, never one
 * that replaced it meanwhile.
 */
#ifndef KILN_UTIL_UNIX_SOCKET_H
#define KILN_UTIL_UNIX_SOCKET_H

#include <stdbool.h>
#include <sys/types.h>

#include "util/log.h"

/* The socket file a listener made, to remove it and nothing else. */
struct unix_socket_id {
	dev_t dev;
	ino_t ino;
	bool valid;
};

/* Listens on path with backlog; nonblock sets O_NONBLOCK; the fd is
 * close-on-exec. Messages are prefixed with who ("virtio-vsock"). Returns
 * the fd and fills *id, or -errno (logged): -ENAMETOOLONG, -EADDRINUSE,
 * -EEXIST, others from socket/bind/listen. */
int unix_listen(const char *path, int backlog, bool nonblock, const char *who,
		const struct kiln_log *log, struct unix_socket_id *id);

/* Removes path if it still is the socket id names. */
void unix_unlink_own(const char *path, const struct unix_socket_id *id);

#endif
