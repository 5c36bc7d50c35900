/* SPDX-License-Identifier: MIT */
/*
 * User-mode NAT: libslirp inside the VMM process, rootless (no TAP, no
 * CAP_NET_ADMIN). It is driven entirely from its owner's thread: its
 * sockets and timers sit in one epoll fd (user_net_fd) that the owner
 * watches, and every call below runs on that thread. No thread of its own.
 *
 * Defaults as QEMU's: network 10.0.2.0/24, the host alias (gateway)
 * 10.0.2.2, DNS 10.0.2.3 forwarded to the host's resolver, the guest at
 * 10.0.2.15; IPv6 fec0::/64 with the gateway at fec0::2 and DNS fec0::3.
 */
#ifndef KILN_NET_USER_NET_H
#define KILN_NET_USER_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"

struct user_net_opts {
	uint32_t net4;	 /* host byte order, e.g. 0x0a000200 */
	unsigned prefix; /* 8..30 */
	bool ipv6;
	bool host_loopback; /* may the guest reach the host's 127.0.0.1 */
	const char *hostname;
};

/* The addresses the NAT uses inside net4/prefix (host byte order). */
struct user_net_addrs {
	uint32_t gateway, dns, guest, netmask;
	uint8_t gateway6[16], dns6[16];
};

/* Fills a with the addresses of o's network. */
void user_net_addrs(const struct user_net_opts *o, struct user_net_addrs *a);

/* A frame for the guest; called from inside user_net_input/service. */
typedef void (*user_net_deliver_fn)(void *opaque, const uint8_t *frame,
				    size_t len);

struct user_net;

/* Makes a NAT; frames for the guest go to deliver(opaque, ...). 0 or
 * -errno (logged). log must outlive it. */
int user_net_create(const struct user_net_opts *o, user_net_deliver_fn deliver,
		    void *opaque, const struct kiln_log *log,
		    struct user_net **out);
/* Closes every socket and frees it; NULL is fine. */
void user_net_destroy(struct user_net *n);
/* Readable when sockets or timers need user_net_service. */
int user_net_fd(const struct user_net *n);
/* Serves ready sockets and due timers. */
void user_net_service(struct user_net *n);
/* A frame from the guest (already allowed by the egress policy). Call
 * user_net_flush after a batch of them. */
void user_net_input(struct user_net *n, const uint8_t *frame, size_t len);
/* Brings the watch set up to date after inputs (sockets they opened). */
void user_net_flush(struct user_net *n);
/* Forwards host_addr:host_port (TCP or UDP) to the guest's port. 0 or
 * -errno (logged). */
int user_net_forward(struct user_net *n, bool udp, uint32_t host_addr,
		     uint16_t host_port, uint16_t guest_port);

#endif
