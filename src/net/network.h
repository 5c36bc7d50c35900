/* SPDX-License-Identifier: MIT */
/*
 * Cluster networks on this host: each one a directory
 * <runtime>/kiln/.networks/NAME (private to the user: $XDG_RUNTIME_DIR/kiln
 * or /tmp/kiln-UID) holding its subnet and the listening socket of its
 * switch process (net/switch.h), started by kiln_network_create and
 * stopped by kiln_network_remove. Members reach it by name from any
 * process of the user: a VM's NIC is one port of the switch.
 */
#ifndef KILN_NET_NETWORK_H
#define KILN_NET_NETWORK_H

#include <stddef.h>
#include <stdint.h>

#include "net/switch.h"
#include "util/log.h"

/* The socket of network name's switch into buf: 0, -EINVAL (not a
 * network name), -ENOENT (no such network), -ENAMETOOLONG. Logged. */
int network_socket_path(const char *name, char *buf, size_t len,
			const struct kiln_log *log);

/* Sends hello h to the switch at path and reads its reply into *r (within
 * timeout_ms): 0 (r->status says whether the switch agreed), or -errno:
 * the switch is not there (-ECONNREFUSED, -ENOENT), did not answer
 * (-ETIMEDOUT), or answered nonsense (-EPROTO). Not logged. With port_fd,
 * a PORT hello the switch agreed to leaves the connected socket
 * (non-blocking, close-on-exec) in *port_fd; it is -1 otherwise. */
int network_hello(const char *path, const struct sw_hello *h,
		  struct sw_reply *r, int timeout_ms, int *port_fd);

#endif
