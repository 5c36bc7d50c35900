/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock (virtio 1.2, 5.10), stream sockets only, in Firecracker's
 * "hybrid" model: the host end of every connection is a Unix socket.
 *
 *  guest -> host  a guest connect to host (CID 2) port P connects to the
 *                 Unix socket "<uds_path>_P"; nobody listening there: RST.
 *  host -> guest  a client connects to "<uds_path>" (kiln listens there) and
 *                 writes "CONNECT P\n"; kiln asks the guest's port P and
 *                 answers "OK <host port>\n" once the guest accepts, or
 *                 closes the client (RST, timeout, bad line).
 *
 * The guest is hostile: every tx packet is checked (whole header readable,
 * STREAM, its own CID to the host's, known op, len within the buffer and
 * VSOCK_MAX_PKT, no payload on control ops) and dropped otherwise, with an
 * RST for the connection it names. Memory is bounded: at most buf_alloc
 * bytes per connection wait for a slow host socket (the spec's credit keeps
 * an honest guest below that; one that sends more is reset), and a host
 * socket is only read as far as the guest's advertised space and posted rx
 * buffers allow (otherwise kiln stops polling it). At most max_conns
 * connections; guest requests beyond that get RST, host clients are closed.
 *
 * Threads: everything runs on the device thread. The transport calls
 * queue_notify; the owner watches virtio_vsock_poll_fd() (one fd: an epoll
 * set of the listening socket, the connections and a timer) and calls
 * virtio_vsock_handle_events() when it is readable, under the same lock the
 * transport holds for queue_notify (virtio-mmio: the transport lock).
 */
#ifndef KILN_VIRTIO_VSOCK_H
#define KILN_VIRTIO_VSOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtio.h"

/* Packet header (5.10.6), 44 bytes, little-endian on the wire */
#define VSOCK_HDR_SIZE	  44
#define VSOCK_HOST_CID	  2
#define VSOCK_TYPE_STREAM 1

enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};

/* SHUTDOWN flags: the sender will receive / send no more */
#define VSOCK_SHUTDOWN_RCV  1u
#define VSOCK_SHUTDOWN_SEND 2u

#define VSOCK_QUEUE_RX	  0
#define VSOCK_QUEUE_TX	  1
#define VSOCK_QUEUE_EVENT 2
#define VSOCK_NUM_QUEUES  3
#define VSOCK_QUEUE_SIZE  256
#define VSOCK_CONFIG_SIZE 8 /* le64 guest_cid */

#define VSOCK_MAX_PKT		 (64u * 1024) /* payload, either way */
#define VSOCK_DEFAULT_BUF_ALLOC	 (256u * 1024)
#define VSOCK_MIN_BUF_ALLOC	 4096u
#define VSOCK_MAX_BUF_ALLOC	 (64u * 1024 * 1024)
#define VSOCK_DEFAULT_MAX_CONNS	 1024u
#define VSOCK_MAX_CONNS		 65536u
#define VSOCK_DEFAULT_CONNECT_MS 2000u	    /* CONNECT line, guest's answer */
#define VSOCK_DEFAULT_CLOSE_MS	 8000u	    /* guest's RST, draining a socket */
#define VSOCK_CONNECT_LINE_MAX	 32	    /* "CONNECT 4294967295\n" is 19 */
#define VSOCK_FIRST_HOST_PORT	 (1u << 30) /* host ports kiln hands out */

/* A tx header as read from the wire (host byte order). */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

/* What vsock_parse_pkt thinks of a tx chain. */
enum vsock_verdict {
	VSOCK_PKT_OK = 0,
	VSOCK_PKT_SHORT,    /* header not wholly in the readable part */
	VSOCK_PKT_BAD_TYPE, /* not STREAM */
	VSOCK_PKT_BAD_CID,  /* not from the guest's CID to the host */
	VSOCK_PKT_BAD_OP,   /* unknown op */
	VSOCK_PKT_BAD_LEN,  /* len past the buffer or VSOCK_MAX_PKT, or a
			     * payload on a control op */
};

struct virtio_vsock_config {
	uint64_t guest_cid;   /* 3..UINT32_MAX-1 */
	const char *uds_path; /* listening socket; "<uds_path>_P" for P */
	unsigned max_conns;   /* 0: VSOCK_DEFAULT_MAX_CONNS */
	uint32_t buf_alloc;   /* per connection; 0: VSOCK_DEFAULT_BUF_ALLOC */
	unsigned connect_ms;  /* 0: VSOCK_DEFAULT_CONNECT_MS */
	unsigned close_ms;    /* 0: VSOCK_DEFAULT_CLOSE_MS */
};

struct virtio_vsock_stats {
	uint64_t tx_pkts, rx_pkts;   /* packets from / to the guest */
	uint64_t tx_bytes, rx_bytes; /* RW payload from / to the guest */
	uint64_t bad_pkts;	     /* tx packets dropped by vsock_parse_pkt */
	uint64_t rsts_sent;
	uint64_t credit_violations; /* RW beyond our buf_alloc: reset */
	uint64_t conns_opened, conns_closed;
	uint64_t limit_refused; /* requests or clients over max_conns */
	uint64_t rsts_dropped;	/* RSTs for unknown connections not sent */
	uint64_t short_rx_bufs; /* rx buffers too small for a header */
	unsigned conns;		/* open now */
	uint64_t queued_bytes;	/* guest data waiting for host sockets */
};

/* Checks a tx chain and reads its header into *h (as far as readable).
 * Returns VSOCK_PKT_OK or why the packet must be dropped. */
enum vsock_verdict vsock_parse_pkt(const struct virtq_chain *c,
				   uint64_t guest_cid, struct vsock_hdr *h);

/* Makes dev a virtio-vsock device: listens on cfg->uds_path (replacing a
 * stale socket, never another file). Only dev->ops/priv are set; dev->log
 * is used if set. 0 or -errno (-EINVAL bad config, -ENAMETOOLONG path). */
int virtio_vsock_create(const struct virtio_vsock_config *cfg,
			struct virtio_dev *dev);

/* The device type (device_table.h): "vsock,cid=CID,uds=PATH". */
extern const struct virtio_dev_ops virtio_vsock_ops;

/* Closes every connection and the listening socket (removing it), frees
 * the state; idempotent. */
void virtio_vsock_destroy(struct virtio_dev *dev);

/* The one fd the owner's loop watches (EPOLLIN), or -1. */
int virtio_vsock_poll_fd(const struct virtio_dev *dev);

/* Handles ready host sockets and timers; never blocks. Device thread, with
 * the transport lock held where the transport has one. */
void virtio_vsock_handle_events(struct virtio_dev *dev);

/* Copies the device's counters. */
void virtio_vsock_get_stats(const struct virtio_dev *dev,
			    struct virtio_vsock_stats *out);

#endif
