/* SPDX-License-Identifier: MIT */
#include "switch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/dns.h"
#include "net/egress.h"
#include "util/clock.h"

#define ETH_HDR	      14
#define ETHERTYPE_IP  0x0800
#define ETHERTYPE_ARP 0x0806
#define TAG_LISTEN    UINT32_MAX

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- the wire format ---- */

bool sw_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > SW_NAME_MAX || name[0] == '.' || name[0] == '-')
		return false;
	for (const char *p = name; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '_' && *p != '-' &&
		    *p != '.')
			return false;
	return true;
}

size_t sw_hello_encode(const struct sw_hello *h, uint8_t *buf)
{
	size_t n = strlen(h->name);

	memcpy(buf, SW_MAGIC, 4);
	buf[4] = (uint8_t)h->kind;
	memcpy(buf + 5, h->mac, 6);
	buf[11] = (uint8_t)n;
	memcpy(buf + 12, h->name, n);
	return 12 + n;
}

int sw_hello_decode(const uint8_t *buf, size_t len, struct sw_hello *h)
{
	if (len < 12 || memcmp(buf, SW_MAGIC, 4) || buf[4] < SW_HELLO_LEASE ||
	    buf[4] > SW_HELLO_STOP || buf[11] > SW_NAME_MAX ||
	    len != 12u + buf[11])
		return -EINVAL;
	h->kind = (enum sw_hello_kind)buf[4];
	memcpy(h->mac, buf + 5, 6);
	memcpy(h->name, buf + 12, buf[11]);
	h->name[buf[11]] = 0;
	if (strlen(h->name) != buf[11] ||
	    (h->name[0] && !sw_name_valid(h->name)))
		return -EINVAL;
	/* a member's MAC: unicast, not zero */
	if ((h->kind == SW_HELLO_LEASE || h->kind == SW_HELLO_PORT) &&
	    ((h->mac[0] & 1) || !memcmp(h->mac, "\0\0\0\0\0\0", 6)))
		return -EINVAL;
	return 0;
}

size_t sw_reply_encode(int status, uint32_t addr, unsigned prefix, uint32_t dns,
		       const char *text, uint8_t *buf, size_t cap)
{
	size_t n = text ? strlen(text) : 0;

	if (cap < 14)
		return 0;
	if (n > cap - 14)
		n = cap - 14;
	if (n > SW_REPLY_MAX - 1)
		n = SW_REPLY_MAX - 1;
	memcpy(buf, SW_MAGIC, 4);
	buf[4] = (uint8_t)status;
	put32(buf + 5, addr);
	buf[9] = (uint8_t)prefix;
	put32(buf + 10, dns);
	memcpy(buf + 14, text ? text : "", n);
	return 14 + n;
}

int sw_reply_decode(const uint8_t *buf, size_t len, struct sw_reply *r)
{
	if (len < 14 || len > 14 + SW_REPLY_MAX - 1 || memcmp(buf, SW_MAGIC, 4))
		return -EINVAL;
	r->status = buf[4];
	r->addr = be32(buf + 5);
	r->prefix = buf[9];
	r->dns = be32(buf + 10);
	memcpy(r->textbuf, buf + 14, len - 14);
	r->textbuf[len - 14] = 0;
	r->text = r->textbuf;
	return 0;
}

/* ---- addresses ---- */

int sw_init(struct net_switch *sw, uint32_t net, unsigned prefix,
	    const struct kiln_log *log)
{
	uint32_t mask;

	if (prefix < 16 || prefix > 29)
		return -EINVAL;
	mask = ~0u << (32 - prefix);
	memset(sw, 0, sizeof(*sw));
	sw->net = net & mask;
	sw->prefix = prefix;
	sw->self_addr = sw->net + 1;
	/* locally administered, and different for each subnet */
	sw->self_mac[0] = 0x02;
	sw->self_mac[1] = 0x6b; /* 'k' */
	put32(sw->self_mac + 2, sw->net);
	sw->epfd = -1;
	if (log)
		sw->log = *log;
	for (int i = 0; i < SW_MAX_CONNS; i++)
		sw->conns[i].fd = -1;
	for (int i = 0; i < SW_MAX_LEASES; i++)
		sw->leases[i].conn = -1;
	return 0;
}

void sw_fini(struct net_switch *sw)
{
	for (int i = 0; i < SW_MAX_CONNS; i++)
		if (sw->conns[i].fd >= 0)
			sw_conn_remove(sw, i);
}

static void expire_leases(struct net_switch *sw, int64_t now)
{
	for (int i = 0; i < SW_MAX_LEASES; i++) {
		struct sw_lease *l = &sw->leases[i];

		if (l->used && l->conn < 0 && now >= l->expires_ms)
			l->used = false;
	}
}

static bool addr_taken(const struct net_switch *sw, uint32_t a)
{
	for (int i = 0; i < SW_MAX_LEASES; i++)
		if (sw->leases[i].used && sw->leases[i].addr == a)
			return true;
	return false;
}

static struct sw_lease *find_lease(struct net_switch *sw, const char *name,
				   const uint8_t mac[6], int64_t now, int *err)
{
	struct sw_lease *free_slot = NULL;
	uint32_t last = sw->net + (~(~0u << (32 - sw->prefix))) - 1;

	struct sw_lease *same_mac = NULL;

	expire_leases(sw, now);
	*err = 0;
	/* the switch's own MAC is not a member's */
	if (!memcmp(mac, sw->self_mac, 6)) {
		*err = -EEXIST;
		return NULL;
	}
	/* the whole table first: a name is one member's, whatever lease a
	 * MAC already has */
	for (int i = 0; i < SW_MAX_LEASES; i++) {
		struct sw_lease *l = &sw->leases[i];

		if (!l->used) {
			if (!free_slot)
				free_slot = l;
			continue;
		}
		if (!memcmp(l->mac, mac, 6)) {
			if (strcasecmp(l->name, name) && l->conn >= 0) {
				*err = -EEXIST; /* a live port has this MAC */
				return NULL;
			}
			same_mac = l;
		} else if (name[0] && !strcasecmp(l->name, name)) {
			*err = -EEXIST;
			return NULL;
		}
	}
	if (same_mac)
		return same_mac;
	if (!free_slot) {
		*err = -ENOSPC;
		return NULL;
	}
	for (uint32_t a = sw->self_addr + 1; a <= last; a++)
		if (!addr_taken(sw, a)) {
			memset(free_slot, 0, sizeof(*free_slot));
			free_slot->used = true;
			free_slot->conn = -1;
			free_slot->addr = a;
			memcpy(free_slot->mac, mac, 6);
			return free_slot;
		}
	*err = -ENOSPC;
	return NULL;
}

int sw_lease(struct net_switch *sw, const char *name, const uint8_t mac[6],
	     int64_t now, uint32_t *addr)
{
	int err;
	struct sw_lease *l = find_lease(sw, name, mac, now, &err);

	if (!l)
		return err;
	snprintf(l->name, sizeof(l->name), "%s", name);
	if (l->conn < 0)
		l->expires_ms = now + SW_LEASE_HOLD_MS;
	*addr = l->addr;
	return 0;
}

int sw_port_add(struct net_switch *sw, int fd, const char *name,
		const uint8_t mac[6], int64_t now, uint32_t *addr)
{
	struct sw_lease *l;
	int slot = -1, err;

	/* the connection's own slot when it said hello there, else a free one
	 */
	for (int i = 0; i < SW_MAX_CONNS && slot < 0; i++)
		if (sw->conns[i].fd == fd)
			slot = i;
	for (int i = 0; i < SW_MAX_CONNS && slot < 0; i++)
		if (sw->conns[i].fd < 0)
			slot = i;
	if (slot < 0)
		return -EMFILE;
	l = find_lease(sw, name, mac, now, &err);
	if (!l)
		return err;
	if (l->conn >= 0 && l->conn != slot)
		return -EEXIST;
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->conn = slot;
	{
		struct sw_conn *c = &sw->conns[slot];

		memset(c, 0, sizeof(*c));
		c->fd = fd;
		c->is_port = true;
		memcpy(c->mac, mac, 6);
		c->addr = l->addr;
		snprintf(c->name, sizeof(c->name), "%s", name);
	}
	*addr = l->addr;
	return slot;
}

void sw_conn_remove(struct net_switch *sw, int i)
{
	struct sw_conn *c = &sw->conns[i];

	if (c->fd < 0)
		return;
	if (sw->epfd >= 0)
		epoll_ctl(sw->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	while (c->qcount) {
		free(c->q[c->qhead].data);
		c->qhead = (c->qhead + 1) % SW_QUEUE;
		c->qcount--;
	}
	for (int k = 0; k < SW_MAX_LEASES; k++)
		if (sw->leases[k].used && sw->leases[k].conn == i)
			sw->leases[k].used = false;
	if (c->is_port)
		kiln_logf(&sw->log, KILN_LOG_INFO, "switch: %s left",
			  c->name[0] ? c->name : "a member");
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

/* ---- forwarding ---- */

static void want_out(struct net_switch *sw, int i, bool on)
{
	struct sw_conn *c = &sw->conns[i];
	struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
				 .data.u32 = (uint32_t)i};

	if (c->want_out == on || sw->epfd < 0)
		return;
	c->want_out = on;
	epoll_ctl(sw->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Sends or queues one frame for port `to`; a full queue (or one source's
 * share of it) drops it. */
static void output(struct net_switch *sw, int to, int from,
		   const uint8_t *frame, size_t len)
{
	struct sw_conn *c = &sw->conns[to];
	struct sw_frame *f;
	unsigned mine = 0;

	if (c->dead)
		return;
	if (!c->qcount) {
		ssize_t r =
			send(c->fd, frame, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (r == (ssize_t)len) {
			c->tx++;
			return;
		}
		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != ENOBUFS) {
			c->dead = true;
			return;
		}
	}
	for (unsigned k = 0; k < c->qcount; k++)
		mine += c->q[(c->qhead + k) % SW_QUEUE].src == from;
	if (c->qcount == SW_QUEUE || mine >= SW_QUEUE_PER_SRC) {
		c->dropped++;
		return;
	}
	f = &c->q[(c->qhead + c->qcount) % SW_QUEUE];
	f->data = malloc(len);
	if (!f->data) {
		c->dropped++;
		return;
	}
	memcpy(f->data, frame, len);
	f->len = (uint16_t)len;
	f->src = (uint16_t)from;
	c->qcount++;
	want_out(sw, to, true);
}

void sw_flush(struct net_switch *sw, int i)
{
	struct sw_conn *c = &sw->conns[i];

	while (c->qcount && !c->dead) {
		struct sw_frame *f = &c->q[c->qhead];
		ssize_t r = send(c->fd, f->data, f->len,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
			      errno == ENOBUFS))
			return;
		if (r < 0)
			c->dead = true;
		else
			c->tx++;
		free(f->data);
		f->data = NULL;
		c->qhead = (c->qhead + 1) % SW_QUEUE;
		c->qcount--;
	}
	if (!c->dead)
		want_out(sw, i, false);
}

/* The switch's own answers: ARP for its address, DNS for members. */
static void answer_arp(struct net_switch *sw, int from, const uint8_t *f,
		       size_t len)
{
	uint8_t *r = sw->reply;

	/* Ethernet/IPv4 request for the switch's own address */
	if (len < ETH_HDR + 28 || be16(f + 14) != 1 || be16(f + 16) != 0x0800 ||
	    f[18] != 6 || f[19] != 4 || be16(f + 20) != 1 ||
	    be32(f + 38) != sw->self_addr)
		return;
	memcpy(r, f + 6, 6);
	memcpy(r + 6, sw->self_mac, 6);
	r[12] = 0x08, r[13] = 0x06;
	memcpy(r + 14, f + 14, 6); /* htype, ptype, hlen, plen */
	r[20] = 0, r[21] = 2;	   /* reply */
	memcpy(r + 22, sw->self_mac, 6);
	put32(r + 28, sw->self_addr);
	memcpy(r + 32, f + 22, 10); /* the asker's MAC and address */
	output(sw, from, from, r, 42);
}

static const struct sw_conn *member_named(const struct net_switch *sw,
					  const char *name)
{
	for (int i = 0; i < SW_MAX_CONNS; i++) {
		const struct sw_conn *c = &sw->conns[i];

		if (c->fd >= 0 && c->is_port && !c->dead && c->name[0] &&
		    !strcasecmp(c->name, name))
			return c;
	}
	return NULL;
}

/* A member answering for "pypi.org" would speak for the internet to the
 * others: only single-label names are the network's. */
static const struct sw_conn *member_for_query(const struct net_switch *sw,
					      const char *name)
{
	return strchr(name, '.') ? NULL : member_named(sw, name);
}

static void answer_dns(struct net_switch *sw, int from, const uint8_t *f,
		       size_t len)
{
	size_t ihl = (size_t)(f[ETH_HDR] & 0x0f) * 4, udp = ETH_HDR + ihl;
	const struct sw_conn *m;
	struct dns_question q;
	uint8_t self[4], src[4], a[4], msg[512];
	size_t n, ulen;

	if (len < udp + 8)
		return;
	ulen = be16(f + udp + 4);
	if (ulen < 8 + DNS_HDR || ulen > len - udp ||
	    dns_parse_query(f + udp + 8, ulen - 8, &q) < 0 || q.end > 256)
		return;
	m = member_for_query(sw, q.name);
	if (m) {
		put32(a, m->addr);
		n = dns_build_a(f + udp + 8, &q, a, SW_DNS_TTL, msg,
				sizeof(msg));
	} else {
		/* not ours: the guest's resolver asks its next server */
		n = dns_build_error(f + udp + 8, &q, DNS_RCODE_REFUSED, msg,
				    sizeof(msg));
	}
	put32(self, sw->self_addr);
	memcpy(src, f + ETH_HDR + 12, 4);
	if (n)
		n = egress_build_udp(sw->reply, sizeof(sw->reply), f + 6,
				     sw->self_mac, 4, self, 53, src,
				     be16(f + udp), msg, n);
	if (n)
		output(sw, from, from, sw->reply, n);
}

static void to_self(struct net_switch *sw, int from, const uint8_t *f,
		    size_t len)
{
	uint16_t type = be16(f + 12);

	if (type == ETHERTYPE_ARP) {
		answer_arp(sw, from, f, len);
		return;
	}
	/* IPv4, not a fragment, UDP to the switch's port 53 */
	if (type == ETHERTYPE_IP && len >= ETH_HDR + 20 &&
	    (f[ETH_HDR] >> 4) == 4 && (f[ETH_HDR] & 0x0f) >= 5 &&
	    f[ETH_HDR + 9] == 17 && !(be16(f + ETH_HDR + 6) & 0x3fff) &&
	    be32(f + ETH_HDR + 16) == sw->self_addr &&
	    len >= ETH_HDR + (size_t)(f[ETH_HDR] & 0x0f) * 4 + 8 &&
	    be16(f + ETH_HDR + (f[ETH_HDR] & 0x0f) * 4 + 2) == 53)
		answer_dns(sw, from, f, len);
}

/* A member may only speak as itself: its MAC, and for IPv4 and ARP its
 * address (0.0.0.0 allowed: ARP probes). */
static bool spoofed(const struct sw_conn *c, const uint8_t *f, size_t len)
{
	uint16_t type = be16(f + 12);
	uint32_t src;

	if (memcmp(f + 6, c->mac, 6))
		return true;
	if (type == ETHERTYPE_ARP) {
		if (len < ETH_HDR + 28 || memcmp(f + 22, c->mac, 6))
			return true;
		src = be32(f + 28);
		return src && src != c->addr;
	}
	if (type == ETHERTYPE_IP) {
		if (len < ETH_HDR + 20)
			return true;
		src = be32(f + ETH_HDR + 12);
		return src && src != c->addr;
	}
	/* no router advertisements or redirects from members (they would
	 * steer the others' IPv6), no VLAN tags (around these checks) */
	if (type == 0x86dd)
		return len >= ETH_HDR + 41 && f[ETH_HDR + 6] == 58 &&
		       (f[ETH_HDR + 40] == 134 || f[ETH_HDR + 40] == 137);
	return type == 0x8100 || type == 0x88a8;
}

void sw_frame_in(struct net_switch *sw, int from, const uint8_t *frame,
		 size_t len)
{
	struct sw_conn *c = &sw->conns[from];
	bool group;

	if (len < ETH_HDR || len > SW_MAX_FRAME || spoofed(c, frame, len)) {
		c->spoofed++;
		kiln_logf_limited(&sw->log, &sw->limit, KILN_LOG_INFO,
				  "switch: %s sent a frame it may not send "
				  "(size %zu, or another's address): dropped",
				  c->name[0] ? c->name : "a member", len);
		return;
	}
	c->rx++;
	group = frame[0] & 1;
	if (group || !memcmp(frame, sw->self_mac, 6))
		to_self(sw, from, frame, len);
	for (int i = 0; i < SW_MAX_CONNS; i++) {
		struct sw_conn *o = &sw->conns[i];

		if (i == from || o->fd < 0 || !o->is_port)
			continue;
		if (group || !memcmp(frame, o->mac, 6))
			output(sw, i, from, frame, len);
	}
}

unsigned sw_list(const struct net_switch *sw, char *out, size_t cap)
{
	size_t used = 0;
	unsigned n = 0;

	out[0] = 0;
	for (int i = 0; i < SW_MAX_CONNS; i++) {
		const struct sw_conn *c = &sw->conns[i];
		struct in_addr a = {htonl(c->addr)};
		char text[16];
		int r;

		if (c->fd < 0 || !c->is_port)
			continue;
		n++;
		inet_ntop(AF_INET, &a, text, sizeof(text));
		r = snprintf(out + used, cap - used,
			     "%s %s %02x:%02x:%02x:%02x:%02x:%02x rx=%llu "
			     "tx=%llu dropped=%llu\n",
			     c->name[0] ? c->name : "-", text, c->mac[0],
			     c->mac[1], c->mac[2], c->mac[3], c->mac[4],
			     c->mac[5], (unsigned long long)c->rx,
			     (unsigned long long)c->tx,
			     (unsigned long long)(c->dropped + c->spoofed));
		if (r < 0 || (size_t)r >= cap - used) {
			out[used] = 0;
			break;
		}
		used += (size_t)r;
	}
	return n;
}

/* ---- the event loop ---- */

static void reply(int fd, uint8_t *buf, int status, uint32_t addr,
		  unsigned prefix, uint32_t dns, const char *text)
{
	size_t n = sw_reply_encode(status, addr, prefix, dns, text, buf,
				   14 + SW_REPLY_MAX - 1);

	/* a client that does not read its reply loses it */
	(void)!send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static const char *why(int err)
{
	return err == -EEXIST	? "the name or MAC is taken on this network"
	       : err == -ENOSPC ? "the network's subnet is full"
	       : err == -EMFILE ? "the switch has no free port"
				: strerror(-err);
}

/* The first message of a connection in slot i: its hello. */
static void hello(struct net_switch *sw, int i, const uint8_t *msg, size_t len)
{
	struct sw_conn *c = &sw->conns[i];
	struct sw_hello h;
	uint32_t addr = 0;
	int64_t now = now_ms();
	char *text;
	int r;

	if (sw_hello_decode(msg, len, &h) < 0) {
		reply(c->fd, sw->reply, EPROTO, 0, 0, 0, "bad hello");
		c->dead = true;
		return;
	}
	switch (h.kind) {
	case SW_HELLO_LEASE:
		r = sw_lease(sw, h.name, h.mac, now, &addr);
		reply(c->fd, sw->reply, r < 0 ? -r : 0, addr, sw->prefix,
		      sw->self_addr, r < 0 ? why(r) : NULL);
		c->dead = true;
		return;
	case SW_HELLO_PORT: {
		int fd = c->fd;

		/* the slot becomes the port (sw_port_add finds it by fd) */
		r = sw_port_add(sw, fd, h.name, h.mac, now, &addr);
		if (r < 0) {
			reply(fd, sw->reply, -r, 0, 0, 0, why(r));
			c->dead = true;
			return;
		}
		reply(fd, sw->reply, 0, addr, sw->prefix, sw->self_addr, NULL);
		kiln_logf(&sw->log, KILN_LOG_INFO, "switch: %s joined",
			  h.name[0] ? h.name : "a member");
		return;
	}
	case SW_HELLO_LIST:
		text = malloc(SW_REPLY_MAX);
		if (text) {
			sw_list(sw, text, SW_REPLY_MAX);
			reply(c->fd, sw->reply, 0, sw->net, sw->prefix,
			      sw->self_addr, text);
			free(text);
		}
		c->dead = true;
		return;
	case SW_HELLO_STOP:
		reply(c->fd, sw->reply, 0, 0, 0, 0, NULL);
		c->dead = true;
		sw->stop = true;
		return;
	}
}

static void accept_all(struct net_switch *sw, int listen_fd)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = {.events = EPOLLIN};
		int slot = -1;

		if (fd < 0)
			return;
		for (int i = 0; i < SW_MAX_CONNS && slot < 0; i++)
			if (sw->conns[i].fd < 0)
				slot = i;
		if (slot < 0) {
			reply(fd, sw->reply, EMFILE, 0, 0, 0,
			      "the switch has no free port");
			close(fd);
			continue;
		}
		memset(&sw->conns[slot], 0, sizeof(sw->conns[slot]));
		sw->conns[slot].fd = fd;
		sw->conns[slot].accepted_ms = now_ms();
		ev.data.u32 = (uint32_t)slot;
		if (epoll_ctl(sw->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			sw->conns[slot].fd = -1;
		}
	}
}

/* Reads up to SW_READ_BURST messages from connection i. */
static void readable(struct net_switch *sw, int i)
{
	struct sw_conn *c = &sw->conns[i];

	for (int k = 0; k < SW_READ_BURST && !c->dead && c->fd >= 0; k++) {
		ssize_t r = recv(c->fd, sw->buf, sizeof(sw->buf),
				 MSG_DONTWAIT | MSG_TRUNC);

		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			c->dead = true; /* closed, or failed */
			return;
		}
		/* r is the full length (MSG_TRUNC): a message longer than
		 * the buffer is refused on its length, never read past it */
		if (!c->is_port)
			hello(sw, i, sw->buf,
			      (size_t)r > sizeof(sw->buf) ? 0 : (size_t)r);
		else
			sw_frame_in(sw, i, sw->buf, (size_t)r);
	}
}

int sw_serve(struct net_switch *sw, int listen_fd, volatile sig_atomic_t *stop)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = TAG_LISTEN};
	struct epoll_event evs[32];

	sw->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sw->epfd < 0 ||
	    epoll_ctl(sw->epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
		int err = -errno;

		if (sw->epfd >= 0)
			close(sw->epfd);
		sw->epfd = -1;
		return err;
	}
	while (!*stop && !sw->stop) {
		int n = epoll_wait(sw->epfd, evs, 32, 1000);
		int64_t now = now_ms();

		if (n < 0 && errno != EINTR) {
			int err = -errno;

			sw_fini(sw);
			close(sw->epfd);
			sw->epfd = -1;
			return err;
		}
		for (int k = 0; k < n; k++) {
			uint32_t i = evs[k].data.u32;

			if (i == TAG_LISTEN) {
				accept_all(sw, listen_fd);
				continue;
			}
			if (evs[k].events & EPOLLOUT)
				sw_flush(sw, (int)i);
			if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				readable(sw, (int)i);
		}
		/* the dead go, and so do clients that never said hello */
		for (int i = 0; i < SW_MAX_CONNS; i++) {
			struct sw_conn *c = &sw->conns[i];

			if (c->fd >= 0 &&
			    (c->dead ||
			     (!c->is_port &&
			      now - c->accepted_ms > SW_HELLO_WAIT_MS)))
				sw_conn_remove(sw, i);
		}
	}
	sw_fini(sw);
	close(sw->epfd);
	sw->epfd = -1;
	return 0;
}
