/* SPDX-License-Identifier: MIT */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/dns.h"
#include "net/egress.h"
#include "net/network.h"
#include "net/user_net.h"
#include "util/clock.h"
#include "virtio/device_table.h"

#define NET_Q_RX	  0
#define NET_Q_TX	  1
#define NET_QUEUE_SIZE	  256
#define NET_HDR		  12	/* struct virtio_net_hdr_v1 */
#define NET_MAX_FRAME	  65536 /* no GSO offered: far above MTU + 14 */
#define NET_MAX_RX_CHAINS 32	/* mergeable buffers one frame may take */
#define NET_CFG_SIZE	  12	/* mac[6], status, max_pairs, mtu */
#define NET_S_LINK_UP	  1
#define NET_REJECT_MAX	  1514

#define NET_MAX_FORWARDS    16
#define NET_INBOUND_MAX	    256
#define NET_INBOUND_IDLE_MS (10 * 60 * 1000)

struct net_forward {
	bool udp;
	uint32_t host_addr;
	uint16_t host_port, guest_port;
};

#define NET_MAX_DOMAINS 32
#define NET_DNS_PENDING 64
#define NET_DNS_WAIT_MS 5000 /* an unanswered query's slot is reused after */
#define NET_DNS_MSG_MAX 4096 /* queries and answers kiln relays */
#define NET_TAG_NAT	1
#define NET_TAG_DNS	2
#define NET_TAG_PORT	3
#define NET_PORT_BURST	64 /* frames taken from the switch per turn */

/* A guest query kiln forwarded upstream, and where its answer goes. */
struct dns_pending {
	int64_t sent_ms; /* 0: free */
	uint16_t our_id, guest_id;
	uint8_t family;
	uint8_t guest_addr[16], dns_addr[16];
	uint16_t guest_port;
	uint8_t guest_mac[6], gw_mac[6];
	bool learn; /* an --allow-domain name: its addresses become reachable */
	char name[DNS_NAME_MAX + 1];
};

/* A connection someone outside made to a published port. */
struct inbound {
	struct egress_tuple t; /* as the guest sends its answers */
	int64_t last_ms;       /* 0: free */
};

struct rx_frame {
	uint8_t *data;
	size_t len;
};

struct virtio_net {
	uint8_t mac[6];
	struct user_net *nat;
	struct egress_policy policy;
	uint8_t *tx_buf;     /* NET_HDR + NET_MAX_FRAME */
	uint8_t *reject_buf; /* NET_REJECT_MAX: answers to denied frames */
	struct virtq_chain *chains; /* NET_MAX_RX_CHAINS */
	struct rx_frame pending[NET_RX_PENDING];
	unsigned pend_head, pend_count;
	/* published guest ports, and the connections made to them from
	 * outside: their answers pass whatever the policy says */
	struct net_forward published[NET_MAX_FORWARDS];
	unsigned npublished;
	struct inbound inbound[NET_INBOUND_MAX];
	/* kiln's resolver proxy (--dns, --allow-domain): dns_fd is a UDP
	 * socket connected to the upstream server, -1 when the NAT's own DNS
	 * forwarding is used */
	int epfd; /* the host fd: the NAT's epoll and dns_fd, or port_fd */
	int dns_fd;
	/* on a cluster network (switch=PATH): the switch port, instead of
	 * the NAT and its policy; -1 otherwise, or once the switch is gone */
	int port_fd;
	bool on_switch;
	char (*domains)[DNS_NAME_MAX + 1];
	unsigned ndomains;
	struct dns_pending dns[NET_DNS_PENDING];
	uint16_t dns_next_id;
	uint8_t *dns_buf; /* NET_DNS_MSG_MAX */
	struct virtio_net_stats stats;
	struct kiln_ratelimit deny_limit, drop_limit;
	struct virtio_dev *dev;
};

static uint64_t net_features(struct virtio_dev *d)
{
	(void)d;
	/* checksum offload both ways: the guest leaves its outgoing TCP/UDP
	 * checksums to kiln (completed before anything sees the frame), and
	 * skips verifying what the NAT built; no segmentation offload: the
	 * NAT takes MTU-sized frames */
	return 1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_STATUS |
	       1ull << VIRTIO_NET_F_MTU | 1ull << VIRTIO_NET_F_MRG_RXBUF |
	       1ull << VIRTIO_NET_F_CSUM | 1ull << VIRTIO_NET_F_GUEST_CSUM;
}

static void net_config_read(struct virtio_dev *d, uint32_t off, uint8_t *buf,
			    uint32_t len)
{
	struct virtio_net *n = d->priv;
	uint8_t cfg[NET_CFG_SIZE] = {0};

	memcpy(cfg, n->mac, 6);
	cfg[6] = NET_S_LINK_UP; /* status, little endian */
	cfg[8] = 1;		/* max_virtqueue_pairs */
	cfg[10] = NET_MTU & 0xff;
	cfg[11] = NET_MTU >> 8;
	memcpy(buf, cfg + off, len); /* off + len checked by the caller */
}

static void net_config_write(struct virtio_dev *d, uint32_t off,
			     const uint8_t *buf, uint32_t len)
{
	(void)d, (void)off, (void)buf, (void)len; /* read-only (no CTRL_MAC) */
}

static bool mergeable(const struct virtio_dev *d)
{
	return d->driver_features & (1ull << VIRTIO_NET_F_MRG_RXBUF);
}

/* One frame into the guest's receive buffers. 0, -EAGAIN (not enough
 * buffers: nothing consumed), -EINVAL (broken ring or unusable buffer). */
static int rx_one(struct virtio_net *n, const uint8_t *frame, size_t len)
{
	struct virtio_dev *d = n->dev;
	struct virtq *q = &d->vqs[NET_Q_RX];
	uint8_t hdr[NET_HDR] = {0};
	size_t total = NET_HDR + len, done = 0;
	uint32_t put[NET_MAX_RX_CHAINS];
	unsigned k = 0, max = mergeable(d) ? NET_MAX_RX_CHAINS : 1;

	while (done < total) {
		struct virtq_chain *c = &n->chains[k];
		size_t chunk, off = 0;
		int r;

		if (k == max) {
			/* a frame no buffer set can hold: give the buffers
			 * back with nothing in them and lose the frame */
			virtq_unpop(q, k);
			return -EINVAL;
		}
		r = virtq_pop(q, c);
		if (r < 0)
			return -EINVAL;
		if (r == 0) {
			virtq_unpop(q, k);
			return -EAGAIN;
		}
		if (k == 0 && c->in_len < NET_HDR) {
			/* no room for the header: used, empty, frame lost */
			virtio_dev_complete(d, NET_Q_RX, c->head, 0);
			return -EINVAL;
		}
		chunk = c->in_len < total - done ? (size_t)c->in_len
						 : total - done;
		/* the header goes in last, once num_buffers is known */
		if (done < NET_HDR)
			off = NET_HDR - done < chunk ? NET_HDR - done : chunk;
		if (chunk > off)
			virtq_chain_write(c, off,
					  frame + (done + off - NET_HDR),
					  chunk - off);
		put[k++] = (uint32_t)chunk;
		done += chunk;
		if (chunk == 0)
			break; /* a buffer without room: guest error */
	}
	if (done < total) {
		virtq_unpop(q, k);
		return -EINVAL;
	}
	/* frames from the NAT (and kiln's own answers) carry complete,
	 * correct checksums; a cluster network's come from other guests */
	if (!n->on_switch &&
	    (d->driver_features & (1ull << VIRTIO_NET_F_GUEST_CSUM)))
		hdr[0] = VIRTIO_NET_HDR_F_DATA_VALID;
	hdr[10] = (uint8_t)k; /* num_buffers, little endian */
	hdr[11] = (uint8_t)(k >> 8);
	virtq_chain_write(&n->chains[0], 0, hdr, NET_HDR);
	for (unsigned i = 0; i < k; i++)
		virtio_dev_complete(d, NET_Q_RX, n->chains[i].head, put[i]);
	n->stats.rx_frames++;
	return 0;
}

static void drop(struct virtio_net *n, const char *why)
{
	n->stats.rx_dropped++;
	kiln_logf_limited(n->dev->log, &n->drop_limit, KILN_LOG_DEBUG,
			  "virtio-net: frame for the guest dropped: %s", why);
}

/* Frames that waited for buffers, in order, while buffers last. */
static void rx_flush(struct virtio_net *n)
{
	while (n->pend_count) {
		struct rx_frame *f = &n->pending[n->pend_head];
		int r = rx_one(n, f->data, f->len);

		if (r == -EAGAIN)
			return;
		if (r < 0 && n->dev->vqs[NET_Q_RX].broken) {
			virtio_dev_fail(n->dev, "malformed receive ring");
			return;
		}
		if (r < 0)
			drop(n, "receive buffers too small");
		free(f->data);
		f->data = NULL;
		n->pend_head = (n->pend_head + 1) % NET_RX_PENDING;
		n->pend_count--;
	}
}

static void rx_clear(struct virtio_net *n)
{
	while (n->pend_count) {
		free(n->pending[n->pend_head].data);
		n->pending[n->pend_head].data = NULL;
		n->pend_head = (n->pend_head + 1) % NET_RX_PENDING;
		n->pend_count--;
	}
}

static bool same_tuple(const struct egress_tuple *a,
		       const struct egress_tuple *b)
{
	return a->family == b->family && a->proto == b->proto &&
	       a->sport == b->sport && a->dport == b->dport &&
	       !memcmp(a->src, b->src, 16) && !memcmp(a->dst, b->dst, 16);
}

/* A frame for the guest: a new connection (TCP SYN, any UDP datagram) to
 * a published port is remembered, so the guest's answers can leave. */
static void inbound_note(struct virtio_net *n, const uint8_t *frame, size_t len)
{
	struct egress_tuple t, answer;
	struct inbound *slot = NULL;
	int64_t now;
	bool syn, published = false;

	if (!n->npublished || !egress_tuple_of(frame, len, &t, &syn))
		return;
	for (unsigned i = 0; i < n->npublished && !published; i++)
		published = n->published[i].guest_port == t.dport &&
			    n->published[i].udp == (t.proto == 17);
	if (!published || (t.proto == 6 && !syn))
		return;
	answer = t;
	memcpy(answer.src, t.dst, 16);
	memcpy(answer.dst, t.src, 16);
	answer.sport = t.dport;
	answer.dport = t.sport;
	now = now_ms();
	for (unsigned i = 0; i < NET_INBOUND_MAX; i++) {
		struct inbound *e = &n->inbound[i];

		if (e->last_ms && same_tuple(&e->t, &answer)) {
			e->last_ms = now;
			return;
		}
		/* a free or expired slot, else the least recently used */
		if (!slot || !e->last_ms || e->last_ms < slot->last_ms)
			slot = e;
	}
	slot->t = answer;
	slot->last_ms = now;
}

/* True when the frame of tuple t answers a connection made to a published
 * port. */
static bool inbound_answer(struct virtio_net *n, const struct egress_tuple *t)
{
	int64_t now;

	if (!n->npublished)
		return false;
	now = now_ms();
	for (unsigned i = 0; i < NET_INBOUND_MAX; i++) {
		struct inbound *e = &n->inbound[i];

		if (!e->last_ms)
			continue;
		if (now - e->last_ms > NET_INBOUND_IDLE_MS) {
			e->last_ms = 0;
			continue;
		}
		if (same_tuple(&e->t, t)) {
			e->last_ms = now;
			return true;
		}
	}
	return false;
}

/* The NAT's frames for the guest (on the device thread). */
static void nat_deliver(void *opaque, const uint8_t *frame, size_t len)
{
	struct virtio_net *n = opaque;
	struct virtio_dev *d = n->dev;
	struct rx_frame *f;
	int r;

	if (!(d->status & VIRTIO_STATUS_DRIVER_OK) || len > NET_MAX_FRAME)
		return drop(n, "no driver");
	inbound_note(n, frame, len);
	if (!n->pend_count) {
		r = rx_one(n, frame, len);
		if (r == 0)
			return;
		if (r != -EAGAIN) {
			if (d->vqs[NET_Q_RX].broken)
				virtio_dev_fail(d, "malformed receive ring");
			return drop(n, "receive buffers too small");
		}
	}
	if (n->pend_count == NET_RX_PENDING)
		return drop(n, "the guest posts no receive buffers");
	f = &n->pending[(n->pend_head + n->pend_count) % NET_RX_PENDING];
	f->data = malloc(len ? len : 1);
	if (!f->data)
		return drop(n, "out of memory");
	memcpy(f->data, frame, len);
	f->len = len;
	n->pend_count++;
}

/* ---- the resolver proxy ---- */

static bool domain_allowed(const struct virtio_net *n, const char *name)
{
	for (unsigned i = 0; i < n->ndomains; i++)
		if (dns_name_match(n->domains[i], name))
			return true;
	return false;
}

static void dns_reply(struct virtio_net *n, const struct dns_pending *q,
		      const uint8_t *msg, size_t len)
{
	size_t fl =
		egress_build_udp(n->reject_buf, NET_REJECT_MAX, q->guest_mac,
				 q->gw_mac, q->family, q->dns_addr, 53,
				 q->guest_addr, q->guest_port, msg, len);

	if (fl)
		nat_deliver(n, n->reject_buf, fl);
}

struct learn_ctx {
	struct virtio_net *n;
	const char *name;
	int64_t now;
};

static void learn_addr(void *opaque, int family, const uint8_t *addr,
		       uint32_t ttl)
{
	struct learn_ctx *c = opaque;
	char text[64];

	if (egress_learn(&c->n->policy, family, addr, ttl, c->now))
		return;
	inet_ntop(family == 4 ? AF_INET : AF_INET6, addr, text, sizeof(text));
	kiln_logf_limited(c->n->dev->log, &c->n->deny_limit, KILN_LOG_WARN,
			  "virtio-net: %s answered with %s, not a public "
			  "address: not reachable",
			  c->name, text);
}

/* True when t goes to port 53 of the NAT's resolver address over proto. */
static bool to_resolver(const struct virtio_net *n,
			const struct egress_tuple *t, uint8_t proto)
{
	const struct egress_policy *p = &n->policy;
	uint8_t dns4[4] = {(uint8_t)(p->dns4 >> 24), (uint8_t)(p->dns4 >> 16),
			   (uint8_t)(p->dns4 >> 8), (uint8_t)p->dns4};

	return t->proto == proto && t->dport == 53 &&
	       !(t->family == 4 ? memcmp(t->dst, dns4, 4)
				: memcmp(t->dst, p->dns6, 16));
}

/* A UDP query (frame, tuple t) to the NAT's resolver address: answered here
 * (NXDOMAIN for a name outside --allow-domain under egress=none) or
 * forwarded upstream. True when the frame was such a query (consumed either
 * way). */
static bool dns_query(struct virtio_net *n, const uint8_t *frame,
		      const struct egress_tuple *tp)
{
	const struct egress_policy *p = &n->policy;
	const struct egress_tuple t = *tp;
	struct dns_question q;
	struct dns_pending *slot = NULL;
	int64_t now = now_ms();
	bool allowed;

	if (!to_resolver(n, &t, 17))
		return false;
	if (!t.data_len || t.data_len > NET_DNS_MSG_MAX ||
	    dns_parse_query(frame + t.data_off, t.data_len, &q) < 0)
		return true; /* not a query kiln relays: dropped */
	for (unsigned i = 0; i < NET_DNS_PENDING; i++) {
		struct dns_pending *e = &n->dns[i];

		if (e->sent_ms && now - e->sent_ms > NET_DNS_WAIT_MS)
			e->sent_ms = 0;
		if (!slot || !e->sent_ms ||
		    (slot->sent_ms && e->sent_ms < slot->sent_ms))
			slot = e;
	}
	memset(slot, 0, sizeof(*slot));
	slot->family = t.family;
	memcpy(slot->guest_addr, t.src, 16);
	memcpy(slot->dns_addr, t.dst, 16);
	slot->guest_port = t.sport;
	memcpy(slot->guest_mac, frame + 6, 6);
	memcpy(slot->gw_mac, frame, 6);
	slot->guest_id = q.id;
	strcpy(slot->name, q.name);
	allowed = domain_allowed(n, q.name);
	slot->learn = allowed;
	if (!allowed && p->posture == EGRESS_NONE) {
		size_t r = dns_build_error(frame + t.data_off, &q,
					   DNS_RCODE_NXDOMAIN, n->dns_buf,
					   NET_DNS_MSG_MAX);

		kiln_logf_limited(n->dev->log, &n->deny_limit, KILN_LOG_INFO,
				  "virtio-net: egress=none: %s is not an "
				  "allowed domain (NXDOMAIN)",
				  q.name);
		if (r)
			dns_reply(n, slot, n->dns_buf, r);
		return true;
	}
	/* upstream, under an id of ours (two guests' ids may collide) */
	memcpy(n->dns_buf, frame + t.data_off, t.data_len);
	slot->our_id = n->dns_next_id++;
	n->dns_buf[0] = (uint8_t)(slot->our_id >> 8);
	n->dns_buf[1] = (uint8_t)slot->our_id;
	if (send(n->dns_fd, n->dns_buf, t.data_len, MSG_DONTWAIT) < 0) {
		kiln_logf_limited(n->dev->log, &n->drop_limit, KILN_LOG_WARN,
				  "virtio-net: resolver: %s", strerror(errno));
		return true;
	}
	slot->sent_ms = now;
	return true;
}

/* Answers from the upstream resolver, back to whoever asked. */
static void dns_answers(struct virtio_net *n)
{
	for (;;) {
		ssize_t r = recv(n->dns_fd, n->dns_buf, NET_DNS_MSG_MAX,
				 MSG_DONTWAIT);
		struct dns_pending *q = NULL;
		uint16_t id;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return; /* EAGAIN, or an ICMP error on the socket */
		if (r < DNS_HDR)
			continue;
		id = (uint16_t)(n->dns_buf[0] << 8 | n->dns_buf[1]);
		for (unsigned i = 0; i < NET_DNS_PENDING && !q; i++)
			if (n->dns[i].sent_ms && n->dns[i].our_id == id)
				q = &n->dns[i];
		if (!q)
			continue; /* late, or not ours */
		if (q->learn && n->ndomains) {
			struct learn_ctx c = {n, q->name, now_ms()};

			dns_answer_addrs(n->dns_buf, (size_t)r, q->name,
					 learn_addr, &c);
		}
		n->dns_buf[0] = (uint8_t)(q->guest_id >> 8);
		n->dns_buf[1] = (uint8_t)q->guest_id;
		dns_reply(n, q, n->dns_buf, (size_t)r);
		q->sent_ms = 0;
	}
}

/* Completes a checksum the guest left to the device (NEEDS_CSUM): the
 * one's complement sum from start to the end of the frame, stored at
 * start + off (the field holds the pseudo-header sum already). False for
 * offsets outside the frame. */
static bool complete_csum(uint8_t *frame, size_t len, uint16_t start,
			  uint16_t off)
{
	uint32_t sum = 0;
	uint16_t c;
	size_t i;

	if (start >= len || off > len - start || len - start - off < 2)
		return false;
	for (i = start; i + 1 < len; i += 2)
		sum += (uint32_t)frame[i] << 8 | frame[i + 1];
	if (i < len)
		sum += (uint32_t)frame[i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	c = (uint16_t)~sum;
	if (c == 0 && off == 6)
		c = 0xffff; /* UDP: 0 means "no checksum" */
	frame[start + off] = (uint8_t)(c >> 8);
	frame[start + off + 1] = (uint8_t)c;
	return true;
}

/* The transmit header: no segmentation (not offered), and a checksum the
 * guest left to us completed. False: the frame is dropped. */
static bool tx_header(uint8_t *buf, size_t len)
{
	const uint8_t *h = buf;

	if (h[1] != 0) /* gso_type: none was offered */
		return false;
	if (!(h[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM))
		return true;
	return complete_csum(buf + NET_HDR, len - NET_HDR,
			     (uint16_t)(h[6] | h[7] << 8),
			     (uint16_t)(h[8] | h[9] << 8));
}

/* ---- a cluster network's switch port ---- */

/* The switch went away: the card keeps working with nothing behind it. */
static void port_lost(struct virtio_net *n, const char *why)
{
	kiln_logf(n->dev->log, KILN_LOG_WARN,
		  "virtio-net: the network's switch is gone (%s): this card "
		  "reaches nothing any more",
		  why);
	epoll_ctl(n->epfd, EPOLL_CTL_DEL, n->port_fd, NULL);
	close(n->port_fd);
	n->port_fd = -1;
}

/* One frame to the switch; a full socket drops it (the guest's TCP
 * retransmits), so a stalled switch never stalls the device thread. */
static void port_out(struct virtio_net *n, const uint8_t *frame, size_t len)
{
	if (n->port_fd < 0 || len > SW_MAX_FRAME) {
		n->stats.tx_errors++;
		return;
	}
	if (send(n->port_fd, frame, len, MSG_DONTWAIT | MSG_NOSIGNAL) ==
	    (ssize_t)len) {
		n->stats.tx_frames++;
		return;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
		n->stats.tx_dropped++;
	else
		port_lost(n, strerror(errno));
}

/* Frames from the switch, at most NET_PORT_BURST a turn. */
static void port_in(struct virtio_net *n)
{
	for (int k = 0; k < NET_PORT_BURST && n->port_fd >= 0; k++) {
		ssize_t r = recv(n->port_fd, n->tx_buf, NET_HDR + NET_MAX_FRAME,
				 MSG_DONTWAIT | MSG_TRUNC);

		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			port_lost(n, r == 0 ? "it closed the connection"
					    : strerror(errno));
			return;
		}
		if (r < 14 || r > SW_MAX_FRAME) {
			drop(n, "a runt or giant from the switch");
			continue;
		}
		nat_deliver(n, n->tx_buf, (size_t)r);
	}
}

static void tx(struct virtio_net *n)
{
	struct virtio_dev *d = n->dev;
	struct virtq *q = &d->vqs[NET_Q_TX];
	struct virtq_chain *c = &n->chains[0];
	int r;

	while ((r = virtq_pop(q, c)) > 0) {
		size_t len = virtq_chain_read(c, 0, n->tx_buf,
					      NET_HDR + NET_MAX_FRAME);
		const uint8_t *frame = n->tx_buf + NET_HDR;
		enum egress_verdict v;
		struct egress_tuple t;
		bool has_t, syn;

		virtio_dev_complete(d, NET_Q_TX, c->head, 0);
		if (len < NET_HDR + 14 ||
		    c->out_len > NET_HDR + NET_MAX_FRAME ||
		    !tx_header(n->tx_buf, len)) {
			n->stats.tx_errors++;
			continue;
		}
		if (n->on_switch) {
			port_out(n, frame, len - NET_HDR);
			continue;
		}
		/* TCP/UDP: parsed once for the resolver proxy and the
		 * published ports (the policy judges the frame itself) */
		has_t = (n->dns_fd >= 0 || n->npublished) &&
			egress_tuple_of(frame, len - NET_HDR, &t, &syn);
		if (has_t && n->dns_fd >= 0 && dns_query(n, frame, &t)) {
			n->stats.tx_frames++;
			continue;
		}
		n->policy.now_ms = now_ms();
		/* with the proxy on and names to allow, TCP to the resolver
		 * would resolve around the allow-list */
		if (has_t && n->dns_fd >= 0 && n->ndomains &&
		    to_resolver(n, &t, 6))
			v = EGRESS_DENY_RULE;
		else if (has_t && inbound_answer(n, &t))
			v = EGRESS_ALLOW;
		else
			v = egress_check(&n->policy, n->tx_buf + NET_HDR,
					 len - NET_HDR);
		if (!egress_allowed(v)) {
			size_t rl = egress_reject(n->tx_buf + NET_HDR,
						  len - NET_HDR, n->reject_buf,
						  NET_REJECT_MAX);

			/* a RST or an ICMP error, so the guest's tools fail
			 * at once instead of waiting for a timeout */
			if (rl)
				nat_deliver(n, n->reject_buf, rl);
			char what[96];

			egress_describe(n->tx_buf + NET_HDR, len - NET_HDR,
					what, sizeof(what));
			n->stats.tx_denied++;
			kiln_logf_limited(
				d->log, &n->deny_limit, KILN_LOG_INFO,
				"virtio-net: egress=%s: %s denied (%s)",
				egress_posture_name(n->policy.posture), what,
				v == EGRESS_DENY_MALFORMED ? "unparsable"
				: v == EGRESS_DENY_POSTURE ? "no egress"
				: v == EGRESS_DENY_RULE	   ? "a --deny rule"
							   : "not a public "
							     "address");
			continue;
		}
		n->stats.tx_frames++;
		user_net_input(n->nat, n->tx_buf + NET_HDR, len - NET_HDR);
	}
	/* once per batch: the NAT's new sockets into the watch set */
	if (n->nat)
		user_net_flush(n->nat);
	if (r < 0)
		virtio_dev_fail(d, "malformed transmit ring");
}

static void net_queue_notify(struct virtio_dev *d, unsigned qi)
{
	struct virtio_net *n = d->priv;

	if (qi == NET_Q_TX)
		tx(n);
	else if (qi == NET_Q_RX)
		rx_flush(n);
}

static void net_reset(struct virtio_dev *d)
{
	struct virtio_net *n = d->priv;

	if (n)
		rx_clear(n);
}

static int net_host_fd(const struct virtio_dev *d)
{
	const struct virtio_net *n = d->priv;

	return n ? n->epfd : -1;
}

static void net_host_events(struct virtio_dev *d)
{
	struct virtio_net *n = d->priv;
	struct epoll_event ev[2];
	int k = epoll_wait(n->epfd, ev, 2, 0);

	for (int i = 0; i < k; i++) {
		if (ev[i].data.u32 == NET_TAG_NAT)
			user_net_service(n->nat);
		else if (ev[i].data.u32 == NET_TAG_DNS)
			dns_answers(n);
		else if (ev[i].data.u32 == NET_TAG_PORT)
			port_in(n);
	}
}

/* ---- options: net[,egress=...][,mac=...][,net=A.B.C.D/N] ---- */

static const char *const net_option_keys[] = {
	"egress",  "mac", "net",    "rules", "forward",
	"domains", "dns", "switch", "name",  NULL};

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	/* unicast only: a multicast source address breaks the link */
	return mac[0] & 1 ? -EINVAL : 0;
}

/* Everything the options say, checked. */
struct net_settings {
	char domains[NET_MAX_DOMAINS][DNS_NAME_MAX + 1];
	unsigned ndomains;
	bool dns_set;		 /* dns= given */
	const char *switch_path; /* switch=: a cluster network's port */
	const char *name;	 /* name=: the member's name there */
	struct sockaddr_storage dns_upstream;
	uint8_t mac[6];
	struct user_net_opts uo;
	struct egress_policy policy;
	struct net_forward fwd[NET_MAX_FORWARDS];
	unsigned nfwd;
};

/* "tcp|udp:HOSTIP:HOSTPORT:GUESTPORT;..." */
static int parse_forwards(const char *s, struct net_settings *ns)
{
	while (*s) {
		char proto[4], host[16];
		unsigned hp, gp;
		int used = 0;
		struct in_addr a;
		struct net_forward *f;

		if (ns->nfwd == NET_MAX_FORWARDS ||
		    sscanf(s, "%3[a-z]:%15[0-9.]:%u:%u%n", proto, host, &hp,
			   &gp, &used) != 4 ||
		    (strcmp(proto, "tcp") && strcmp(proto, "udp")) ||
		    inet_pton(AF_INET, host, &a) != 1 || hp < 1 || hp > 65535 ||
		    gp < 1 || gp > 65535 || (s[used] && s[used] != ';'))
			return -EINVAL;
		f = &ns->fwd[ns->nfwd++];
		f->udp = proto[0] == 'u';
		f->host_addr = ntohl(a.s_addr);
		f->host_port = (uint16_t)hp;
		f->guest_port = (uint16_t)gp;
		s += used;
		if (*s == ';')
			s++;
	}
	return 0;
}

/* "NAME;*.SUFFIX;..." (letters, digits, '-', '.', a leading "*.") */
static int parse_domains(const char *s, struct net_settings *ns)
{
	while (*s) {
		size_t n = strcspn(s, ";");
		char *d;

		if (n == 0 || n > DNS_NAME_MAX ||
		    ns->ndomains == NET_MAX_DOMAINS)
			return -EINVAL;
		d = ns->domains[ns->ndomains++];
		memcpy(d, s, n);
		d[n] = 0;
		for (size_t i = 0; i < n; i++) {
			char c = d[i];

			if (c >= 'A' && c <= 'Z')
				d[i] = (char)(c - 'A' + 'a');
			else if (!((c >= 'a' && c <= 'z') ||
				   (c >= '0' && c <= '9') || c == '-' ||
				   c == '.' ||
				   (c == '*' && i == 0 && d[1] == '.')))
				return -EINVAL;
		}
		if (d[n - 1] == '.' || strstr(d, ".."))
			return -EINVAL;
		s += n;
		if (*s == ';')
			s++;
	}
	return 0;
}

/* IPV4[:PORT] or [IPV6]:PORT or IPV6 (port 53 unless given). */
static int parse_host_port(const char *s, struct sockaddr_storage *ss)
{
	char host[64];
	const char *port = NULL;
	unsigned long p = 53;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || (close[1] && close[1] != ':'))
			return -EINVAL;
		hl = (size_t)(close - s - 1);
		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hl);
		host[hl] = 0;
		if (close[1] == ':')
			port = close + 2;
	} else {
		const char *c = strchr(s, ':');

		if (c && strchr(c + 1, ':'))
			c = NULL; /* a bare IPv6 address */
		hl = c ? (size_t)(c - s) : strlen(s);
		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, hl);
		host[hl] = 0;
		if (c)
			port = c + 1;
	}
	if (port) {
		char *end;

		p = strtoul(port, &end, 10);
		if (end == port || *end || p < 1 || p > 65535)
			return -EINVAL;
	}
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr)) {
		((struct sockaddr_in *)ss)->sin_family = AF_INET;
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)p);
		return 0;
	}
	if (inet_pton(AF_INET6, host,
		      &((struct sockaddr_in6 *)ss)->sin6_addr)) {
		((struct sockaddr_in6 *)ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)p);
		return 0;
	}
	return -EINVAL;
}

/* The host's own resolver: the first nameserver of /etc/resolv.conf. */
static int host_resolver(struct sockaddr_storage *ss)
{
	FILE *f = fopen("/etc/resolv.conf", "re");
	char line[256], addr[64];
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (r < 0 && fgets(line, sizeof(line), f))
		if (sscanf(line, " nameserver %63s", addr) == 1)
			r = parse_host_port(addr, ss);
	fclose(f);
	return r;
}

static int net_settings(const struct virtio_dev_opts *o,
			const struct kiln_log *log, struct net_settings *ns)
{
	static const uint8_t def_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
	struct user_net_opts *uo = &ns->uo;
	struct user_net_addrs a;
	const char *v, *bad;

	memset(ns, 0, sizeof(*ns));
	ns->policy.posture = EGRESS_PUBLIC;
	memcpy(ns->mac, def_mac, 6);
	uo->net4 = 0x0a000200;
	uo->prefix = 24;
	uo->ipv6 = true;
	if ((v = virtio_dev_opts_get(o, "egress")) &&
	    egress_posture_parse(v, &ns->policy.posture) < 0)
		return kiln_errorf(log, -EINVAL,
				   "net: egress=%s: expected public, all or "
				   "none",
				   v);
	if (virtio_dev_opts_find(o, "egress", NULL) && !v)
		return kiln_errorf(log, -EINVAL,
				   "net: egress needs a value (public, all, "
				   "none)");
	if ((v = virtio_dev_opts_get(o, "mac")) && parse_mac(v, ns->mac) < 0)
		return kiln_errorf(log, -EINVAL,
				   "net: mac=%s: expected six hex bytes "
				   "XX:XX:XX:XX:XX:XX, unicast",
				   v);
	if ((v = virtio_dev_opts_get(o, "net")) &&
	    egress_net4_parse(v, 8, 24, &uo->net4, &uo->prefix) < 0)
		return kiln_errorf(log, -EINVAL,
				   "net: net=%s: expected an IPv4 network "
				   "A.B.C.D/N with N 8..24",
				   v);
	if ((v = virtio_dev_opts_get(o, "rules")) &&
	    egress_rules_parse(&ns->policy, v, &bad) < 0)
		return kiln_errorf(log, -EINVAL,
				   "net: rule '%.*s' is not ALLOW|DENY:CIDR"
				   "[:PORT[-PORT]][/tcp|/udp], "
				   "[IPV6CIDR]:PORT or host:PORT (at most %u "
				   "rules)",
				   (int)strcspn(bad, ";"), bad,
				   EGRESS_MAX_RULES);
	if ((v = virtio_dev_opts_get(o, "forward")) &&
	    parse_forwards(v, ns) < 0)
		return kiln_errorf(log, -EINVAL,
				   "net: forward=%s: expected "
				   "tcp|udp:HOSTIP:HOSTPORT:GUESTPORT, ';' "
				   "between them (at most %u)",
				   v, NET_MAX_FORWARDS);
	if ((v = virtio_dev_opts_get(o, "domains")) && parse_domains(v, ns) < 0)
		return kiln_errorf(log, -EINVAL,
				   "net: domains=%s: expected NAME or *.SUFFIX "
				   "(letters, digits, '-', '.'), ';' between "
				   "them (at most %u)",
				   v, NET_MAX_DOMAINS);
	ns->switch_path = virtio_dev_opts_get(o, "switch");
	ns->name = virtio_dev_opts_get(o, "name");
	if (virtio_dev_opts_find(o, "switch", NULL) &&
	    (!ns->switch_path || !*ns->switch_path))
		return kiln_errorf(log, -EINVAL,
				   "net: switch needs a value (the socket "
				   "of a network's switch)");
	if (ns->name && !sw_name_valid(ns->name))
		return kiln_errorf(log, -EINVAL,
				   "net: name=%s: 1..63 of A-Z a-z 0-9 _ - ., "
				   "not starting with . or -",
				   ns->name);
	if (ns->switch_path) {
		static const char *const nat_only[] = {
			"egress", "net", "rules", "forward", "domains", "dns"};

		for (unsigned i = 0; i < 6; i++)
			if (virtio_dev_opts_find(o, nat_only[i], NULL))
				return kiln_errorf(
					log, -EINVAL,
					"net: %s applies to the user-mode "
					"NAT, not to a cluster network's "
					"card (switch=)",
					nat_only[i]);
	} else if (ns->name) {
		return kiln_errorf(log, -EINVAL,
				   "net: name= needs switch= (a member's "
				   "name on a cluster network)");
	}
	if ((v = virtio_dev_opts_get(o, "dns"))) {
		if (parse_host_port(v, &ns->dns_upstream) < 0)
			return kiln_errorf(log, -EINVAL,
					   "net: dns=%s: expected IP[:PORT] or "
					   "[IPV6]:PORT",
					   v);
		ns->dns_set = true;
	}
	user_net_addrs(uo, &a);
	ns->policy.dns4 = a.dns;
	memcpy(ns->policy.dns6, a.dns6, 16);
	ns->policy.host4 = a.gateway;
	memcpy(ns->policy.host6, a.gateway6, 16);
	/* the host's own loopback (as the host alias) only when something
	 * may reach it: everything, or a host:PORT rule */
	uo->host_loopback = ns->policy.posture == EGRESS_ALL ||
			    egress_has_host_rule(&ns->policy);
	uo->hostname = "kiln";
	return 0;
}

static int net_check(const struct virtio_dev_opts *o,
		     const struct kiln_log *log)
{
	struct net_settings *ns = malloc(sizeof(*ns));
	int r;

	if (!ns)
		return -ENOMEM;
	r = net_settings(o, log, ns);
	free(ns);
	return r;
}

static void net_destroy(struct virtio_dev *d)
{
	struct virtio_net *n = d->priv;

	if (!n)
		return;
	rx_clear(n);
	user_net_destroy(n->nat);
	if (n->dns_fd >= 0)
		close(n->dns_fd);
	if (n->port_fd >= 0)
		close(n->port_fd);
	if (n->epfd >= 0)
		close(n->epfd);
	free(n->domains);
	free(n->dns_buf);
	free(n->tx_buf);
	free(n->reject_buf);
	free(n->chains);
	free(n);
	d->priv = NULL;
}

/* The device's host fd: an epoll over the NAT's own and, with --dns or
 * --allow-domain, the resolver proxy's socket. */
static int net_watch(struct virtio_net *n, const struct net_settings *ns)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = NET_TAG_NAT};
	struct sockaddr_storage up = ns->dns_upstream;
	int err;

	n->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (n->epfd < 0 ||
	    epoll_ctl(n->epfd, EPOLL_CTL_ADD, user_net_fd(n->nat), &ev) < 0)
		return kiln_errorf(n->dev->log, -errno, "net: epoll: %s",
				   strerror(errno));
	if (!ns->dns_set && !ns->ndomains)
		return 0; /* the NAT forwards DNS to the host's resolver */
	if (!ns->dns_set && (err = host_resolver(&up)) < 0)
		return kiln_errorf(n->dev->log, err,
				   "net: no resolver for --allow-domain: "
				   "/etc/resolv.conf names none (give --dns)");
	n->domains =
		calloc(ns->ndomains ? ns->ndomains : 1, sizeof(*n->domains));
	n->dns_buf = malloc(NET_DNS_MSG_MAX);
	if (!n->domains || !n->dns_buf)
		return kiln_errorf(n->dev->log, -ENOMEM, "net: out of memory");
	memcpy(n->domains, ns->domains, ns->ndomains * sizeof(*n->domains));
	n->ndomains = ns->ndomains;
	n->dns_fd = socket(up.ss_family,
			   SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (n->dns_fd < 0 ||
	    connect(n->dns_fd, (struct sockaddr *)&up,
		    up.ss_family == AF_INET ? sizeof(struct sockaddr_in)
					    : sizeof(struct sockaddr_in6)) < 0)
		return kiln_errorf(n->dev->log, -errno, "net: resolver: %s",
				   strerror(errno));
	ev.data.u32 = NET_TAG_DNS;
	if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, n->dns_fd, &ev) < 0)
		return kiln_errorf(n->dev->log, -errno, "net: epoll: %s",
				   strerror(errno));
	/* ids of ours start anywhere: an off-path guess is harder */
	n->dns_next_id = (uint16_t)(now_ms() * 2654435761u >> 16);
	return 0;
}

/* Plugs the card into its network's switch (before the guest boots: a
 * switch that is not there, or a name taken, fails the VM's creation). */
static int port_connect(struct virtio_net *n, const struct net_settings *ns)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = NET_TAG_PORT};
	struct sw_hello h = {.kind = SW_HELLO_PORT};
	struct sw_reply *r = malloc(sizeof(*r));
	int fd = -1, err;

	if (!r)
		return kiln_errorf(n->dev->log, -ENOMEM, "net: out of memory");
	memcpy(h.mac, ns->mac, 6);
	snprintf(h.name, sizeof(h.name), "%s", ns->name ? ns->name : "");
	err = network_hello(ns->switch_path, &h, r, 5000, &fd);
	if (err < 0) {
		free(r);
		return kiln_errorf(n->dev->log, err,
				   "net: the network's switch at %s: %s (is "
				   "the network there? kiln network ls)",
				   ns->switch_path, strerror(-err));
	}
	if (r->status) {
		/* refused: no connection was kept */
		err = -r->status;
		kiln_logf(n->dev->log, KILN_LOG_ERROR,
			  "net: joining the network%s%s: %s",
			  h.name[0] ? " as " : "", h.name, r->text);
		free(r);
		return err;
	}
	free(r);
	n->on_switch = true;
	n->port_fd = fd;
	n->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (n->epfd < 0 ||
	    epoll_ctl(n->epfd, EPOLL_CTL_ADD, n->port_fd, &ev) < 0)
		return kiln_errorf(n->dev->log, -errno, "net: epoll: %s",
				   strerror(errno));
	return 0;
}

static int net_create(struct virtio_dev *d, const struct virtio_dev_opts *o)
{
	struct net_settings *ns = malloc(sizeof(*ns));
	struct virtio_net *n = calloc(1, sizeof(*n));
	int err;

	if (!n || !ns) {
		free(n);
		free(ns);
		return kiln_errorf(d->log, -ENOMEM, "net: out of memory");
	}
	d->ops = &virtio_net_ops;
	d->priv = n;
	n->dev = d;
	n->epfd = n->dns_fd = n->port_fd = -1;
	err = net_settings(o, d->log, ns);
	if (err < 0)
		goto fail;
	memcpy(n->mac, ns->mac, 6);
	n->policy = ns->policy;
	memcpy(n->published, ns->fwd, sizeof(n->published));
	n->npublished = ns->nfwd;
	n->tx_buf = malloc(NET_HDR + NET_MAX_FRAME);
	n->reject_buf = malloc(NET_REJECT_MAX);
	n->chains = malloc(NET_MAX_RX_CHAINS * sizeof(*n->chains));
	if (!n->tx_buf || !n->chains || !n->reject_buf) {
		err = kiln_errorf(d->log, -ENOMEM, "net: out of memory");
		goto fail;
	}
	n->epfd = n->dns_fd = n->port_fd = -1;
	if (ns->switch_path) {
		err = port_connect(n, ns);
		if (err < 0)
			goto fail;
		free(ns);
		return 0;
	}
	err = user_net_create(&ns->uo, nat_deliver, n, d->log, &n->nat);
	if (err == 0)
		err = net_watch(n, ns);
	/* a taken host port fails here, before the guest boots */
	for (unsigned i = 0; err == 0 && i < ns->nfwd; i++)
		err = user_net_forward(
			n->nat, ns->fwd[i].udp, ns->fwd[i].host_addr,
			ns->fwd[i].host_port, ns->fwd[i].guest_port);
	if (err < 0)
		goto fail;
	free(ns);
	return 0;
fail:
	free(ns);
	net_destroy(d);
	return err;
}

static int net_frontend_props(const struct virtio_dev *d, char *buf,
			      unsigned len)
{
	const struct virtio_net *n = d->priv;
	int r = snprintf(buf, len, "mac=%02x:%02x:%02x:%02x:%02x:%02x",
			 n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4],
			 n->mac[5]);

	return r < 0 || (unsigned)r >= len ? -ENOSPC : r;
}

int virtio_net_guest_config(const struct virtio_dev_opts *o, char *buf,
			    unsigned len)
{
	struct net_settings *ns = malloc(sizeof(*ns));
	struct user_net_addrs a;
	struct in_addr g, gw, dns;
	char s1[16], s2[16], s3[16];
	int r;

	if (!ns)
		return -ENOMEM;
	if (net_settings(o, NULL, ns) < 0 || ns->switch_path) {
		free(ns);
		return -EINVAL;
	}
	user_net_addrs(&ns->uo, &a);
	g.s_addr = htonl(a.guest);
	gw.s_addr = htonl(a.gateway);
	dns.s_addr = htonl(a.dns);
	inet_ntop(AF_INET, &g, s1, sizeof(s1));
	inet_ntop(AF_INET, &gw, s2, sizeof(s2));
	inet_ntop(AF_INET, &dns, s3, sizeof(s3));
	r = snprintf(buf, len, "%02x:%02x:%02x:%02x:%02x:%02x,%s/%u,%s,%s",
		     ns->mac[0], ns->mac[1], ns->mac[2], ns->mac[3], ns->mac[4],
		     ns->mac[5], s1, ns->uo.prefix, s2, s3);
	free(ns);
	return r < 0 || (unsigned)r >= len ? -ENOSPC : r;
}

void virtio_net_get_stats(const struct virtio_dev *d,
			  struct virtio_net_stats *out)
{
	const struct virtio_net *n = d->priv;

	/* the device thread writes them; word-sized reads of a snapshot */
	out->tx_frames = __atomic_load_n(&n->stats.tx_frames, __ATOMIC_RELAXED);
	out->tx_denied = __atomic_load_n(&n->stats.tx_denied, __ATOMIC_RELAXED);
	out->tx_errors = __atomic_load_n(&n->stats.tx_errors, __ATOMIC_RELAXED);
	out->tx_dropped =
		__atomic_load_n(&n->stats.tx_dropped, __ATOMIC_RELAXED);
	out->rx_frames = __atomic_load_n(&n->stats.rx_frames, __ATOMIC_RELAXED);
	out->rx_dropped =
		__atomic_load_n(&n->stats.rx_dropped, __ATOMIC_RELAXED);
}

const struct virtio_dev_ops virtio_net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.num_queues = 2,
	.queue_max_size = NET_QUEUE_SIZE,
	.features = net_features,
	.config_size = NET_CFG_SIZE,
	.config_read = net_config_read,
	.config_write = net_config_write,
	.queue_notify = net_queue_notify,
	.reset = net_reset,
	.type = "net",
	.max_per_vm = NET_MAX_CARDS,
	.option_keys = net_option_keys,
	.option_usage =
		"[egress=public|all|none][,mac=MAC][,net=A.B.C.D/N]"
		"[,rules=allow|deny:SPEC;...][,forward=tcp|udp:HOSTIP:"
		"HOSTPORT:GUESTPORT;...][,domains=NAME;*.SUFFIX;...]"
		"[,dns=IP[:PORT]] | switch=SOCKET[,mac=MAC][,name=NAME]",
	.check = net_check,
	.create = net_create,
	.destroy = net_destroy,
	.host_fd = net_host_fd,
	.host_events = net_host_events,
	.vhost_user_frontend = "virtio-net-device",
	.vhost_user_netdev = true,
	.frontend_props = net_frontend_props,
};
