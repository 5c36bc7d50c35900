/* SPDX-License-Identifier: MIT */
/*
 * virtio-net (virtio 1.2, 5.1) with kiln's user-mode NAT behind it:
 * "net[,egress=public|all|none][,mac=XX:XX:XX:XX:XX:XX][,net=A.B.C.D/N]",
 * or on a cluster network: "net,switch=SOCKET[,mac=...][,name=NAME]" (the
 * card is a port of that network's switch, net/switch.h: no NAT, no
 * policy: members reach each other on any port).
 *
 * Queue 0 receives, queue 1 transmits. Every transmitted frame passes the
 * egress policy (net/egress.h) before the NAT sees it. Frames for the guest
 * go straight into its receive buffers (mergeable: a frame may span
 * several); while it has posted none, up to NET_RX_PENDING frames wait and
 * later ones are dropped and counted (the NAT's TCP retransmits), so a
 * guest that never reads costs bounded memory. The NAT's sockets are the
 * device's host fd: everything runs on the device's thread.
 */
#ifndef KILN_VIRTIO_NET_H
#define KILN_VIRTIO_NET_H

#include <stdint.h>

#include "virtio/virtio.h"

#define VIRTIO_NET_F_CSUM	0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MTU	3
#define VIRTIO_NET_F_MAC	5
#define VIRTIO_NET_F_MRG_RXBUF	15
#define VIRTIO_NET_F_STATUS	16

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2

#define NET_MTU	       1500
#define NET_RX_PENDING 256

/* Cards one VM may have: --net user's and one per cluster network. */
#define NET_MAX_CARDS 5

struct virtio_net_stats {
	uint64_t tx_frames, tx_denied, tx_errors, tx_dropped;
	uint64_t rx_frames, rx_dropped;
};

/* The device type (device_table.h). */
extern const struct virtio_dev_ops virtio_net_ops;

/* The guest-side network as the agent configures it:
 * "MAC,ADDR/PREFIX,GW,DNS" for the NAT's card (options o, checked) into
 * buf; bytes, -ENOSPC, or -EINVAL for a cluster network's card (its
 * address comes from the switch). */
int virtio_net_guest_config(const struct virtio_dev_opts *o, char *buf,
			    unsigned len);

/* Copies the device's counters. */
void virtio_net_get_stats(const struct virtio_dev *d,
			  struct virtio_net_stats *out);

#endif
