/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock over Unix sockets (see vsock.h).
 *
 * A connection is keyed by (guest port, host port) and has two halves:
 *  - guest-bound: control packets it owes (bits in ctrl) and host data to
 *    read. Connections with such work wait in a FIFO (rxq) for rx buffers
 *    and send one packet per turn. Host data is read straight into a
 *    buffer the guest posted, never more than its credit, so nothing is
 *    buffered on this side and SHUTDOWN after EOF can never overtake data.
 *  - host-bound: RW payload goes to the host socket at once; what the
 *    socket does not take waits in a ring of buf_alloc bytes, allocated
 *    only while non-empty. fwd_cnt counts bytes the socket took.
 * A connection's fd is in the epoll set only for what it waits for:
 * EPOLLIN once a read said EAGAIN and the guest can take data, EPOLLOUT
 * while bytes wait. With neither it is out of the set, so a hung-up or
 * unread socket is never reported over and over.
 */
#include "vsock.h"
#include "util/le.h"
#include "util/clock.h"
#include "util/snapshot_io.h"
#include "util/unix_socket.h"
#include "virtio/device_table.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_STRAY	  64 /* RSTs owed for packets of unknown connections */
#define EVENTS_PER_CALL	  32
#define ACCEPTS_PER_CALL  16
#define LISTEN_BACKOFF_MS 100
#define MIN_HOST_PORT	  1024

/* epoll tags; a connection is TAG_CONN + slot, its generation above */
enum { TAG_LISTEN = 1, TAG_TIMER, TAG_CONN = 16 };

/* Control packets a connection owes the guest, in sending order. */
#define CTRL_RST	    (1u << 0)
#define CTRL_REQUEST	    (1u << 1)
#define CTRL_RESPONSE	    (1u << 2)
#define CTRL_CREDIT_UPDATE  (1u << 3)
#define CTRL_CREDIT_REQUEST (1u << 4)

enum conn_state {
	CS_LINE,	 /* host client: reading its CONNECT line */
	CS_CONNECTING,	 /* host client: REQUEST owed or sent to the guest */
	CS_CONNECTED,	 /* both ways (until SHUTDOWN) */
	CS_LOCAL_CLOSED, /* host socket gone, SHUTDOWN sent; waiting for RST */
	CS_CLOSED,	 /* owes the guest an RST and/or drains its socket */
};

struct vsock_conn {
	struct vsock_conn *hnext;	  /* hash chain */
	struct vsock_conn *qprev, *qnext; /* rxq */
	bool hashed, queued;
	unsigned slot;
	uint32_t gen;
	int fd;
	uint32_t ev_mask; /* events registered for fd; 0: not in the set */
	enum conn_state state;
	uint32_t guest_port, host_port;
	unsigned ctrl;
	int64_t deadline; /* CLOCK_MONOTONIC ms; 0: none */
	/* host -> guest */
	bool rx_ready;	   /* the host socket may have data (or EOF) */
	bool rx_probe;	   /* ...only because the last read filled its room */
	bool host_eof;	   /* the host sends no more */
	bool credit_asked; /* CREDIT_REQUEST owed/sent since credit ran out */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	/* guest -> host */
	bool peer_shut_rcv, peer_shut_send;
	uint32_t rx_cnt, fwd_cnt, adv_fwd_cnt;
	uint8_t *obuf; /* ring of buf_alloc bytes while olen > 0 */
	uint32_t ohead, olen;
	/* CS_LINE */
	char line[VSOCK_CONNECT_LINE_MAX];
	unsigned line_len;
};

struct vsock_stray {
	uint32_t guest_port, host_port;
};

struct vsock {
	struct virtio_dev *dev; /* refreshed at every entry point */
	uint64_t guest_cid;
	uint32_t buf_alloc;
	unsigned max_conns, connect_ms, close_ms;
	char *uds_path;
	struct unix_socket_id path_id; /* the socket file we made */
	int epoll_fd, listen_fd, timer_fd;
	bool listen_watched;
	int64_t listen_resume; /* accept again from then (ms); 0: not paused */
	int64_t timer_at;      /* what timer_fd is armed for; 0: disarmed */
	uint8_t config[VSOCK_CONFIG_SIZE];
	struct vsock_conn **slots;
	unsigned *free_slots, nfree, nhashed;
	uint32_t next_gen, next_host_port;
	struct vsock_conn **hash;
	unsigned hash_mask;
	struct vsock_conn *rxq_head, *rxq_tail;
	struct vsock_stray stray[MAX_STRAY];
	unsigned stray_head, nstray;
	uint64_t host_errors;
	struct virtio_vsock_stats stats;
	struct virtq_chain tx_chain, rx_chain;
	uint8_t buf[VSOCK_MAX_PKT];
};

static bool would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

/* ---- parsing: a pure function of the chain ---- */

enum vsock_verdict vsock_parse_pkt(const struct virtq_chain *c,
				   uint64_t guest_cid, struct vsock_hdr *h)
{
	uint8_t b[VSOCK_HDR_SIZE];

	memset(h, 0, sizeof(*h));
	/* The header may span segments; it only has to be readable. */
	if (c->out_len < VSOCK_HDR_SIZE ||
	    virtq_chain_read(c, 0, b, sizeof(b)) != sizeof(b))
		return VSOCK_PKT_SHORT;
	h->src_cid = get_le64(b);
	h->dst_cid = get_le64(b + 8);
	h->src_port = get_le32(b + 16);
	h->dst_port = get_le32(b + 20);
	h->len = get_le32(b + 24);
	h->type = get_le16(b + 28);
	h->op = get_le16(b + 30);
	h->flags = get_le32(b + 32);
	h->buf_alloc = get_le32(b + 36);
	h->fwd_cnt = get_le32(b + 40);
	if (h->type != VSOCK_TYPE_STREAM)
		return VSOCK_PKT_BAD_TYPE;
	if (h->src_cid != guest_cid || h->dst_cid != VSOCK_HOST_CID)
		return VSOCK_PKT_BAD_CID;
	if (h->op < VSOCK_OP_REQUEST || h->op > VSOCK_OP_CREDIT_REQUEST)
		return VSOCK_PKT_BAD_OP;
	if (h->len > VSOCK_MAX_PKT || h->len > c->out_len - VSOCK_HDR_SIZE ||
	    (h->op != VSOCK_OP_RW && h->len))
		return VSOCK_PKT_BAD_LEN;
	return VSOCK_PKT_OK;
}

static const char *verdict_name(enum vsock_verdict v)
{
	switch (v) {
	case VSOCK_PKT_OK: return "ok";
	case VSOCK_PKT_SHORT: return "short header";
	case VSOCK_PKT_BAD_TYPE: return "not a stream packet";
	case VSOCK_PKT_BAD_CID: return "wrong CIDs";
	case VSOCK_PKT_BAD_OP: return "unknown op";
	case VSOCK_PKT_BAD_LEN: return "bad length";
	}
	return "?";
}

/* ---- device state helpers ---- */

static bool dev_live(const struct virtio_dev *d)
{
	return (d->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(d->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* Powers of two only: a host-side problem can repeat for every packet. */
static void note_host_error(struct vsock *vs, const char *what, int err)
{
	uint64_t n = ++vs->host_errors;

	if ((n & (n - 1)) == 0)
		log_warn(vs->dev->log,
			 "virtio-vsock: %s: %s (%llu host errors)", what,
			 strerror(err), (unsigned long long)n);
}

static void timer_arm(struct vsock *vs, int64_t at)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (at > 0) {
		its.it_value.tv_sec = at / 1000;
		its.it_value.tv_nsec = (long)(at % 1000) * 1000000;
	}
	if (timerfd_settime(vs->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		note_host_error(vs, "timerfd_settime", errno);
	vs->timer_at = at > 0 ? at : 0;
}

/* Makes sure the timer fires by `at`. */
static void timer_note(struct vsock *vs, int64_t at)
{
	if (at > 0 && (!vs->timer_at || at < vs->timer_at))
		timer_arm(vs, at);
}

static void listen_watch(struct vsock *vs, bool on)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};

	if (on == vs->listen_watched || vs->listen_fd < 0)
		return;
	if (epoll_ctl(vs->epoll_fd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL,
		      vs->listen_fd, &ev) < 0) {
		note_host_error(vs, "epoll_ctl (listening socket)", errno);
		return;
	}
	vs->listen_watched = on;
}

/* ---- connection table, rx queue, epoll registration ---- */

static struct vsock_conn **bucket(struct vsock *vs, uint32_t gp, uint32_t hp)
{
	uint32_t h = gp * 0x9e3779b1u ^ hp * 0x85ebca6bu;

	return &vs->hash[(h ^ h >> 15) & vs->hash_mask];
}

static struct vsock_conn *conn_find(struct vsock *vs, uint32_t guest_port,
				    uint32_t host_port)
{
	struct vsock_conn *c = *bucket(vs, guest_port, host_port);

	while (c && (c->guest_port != guest_port || c->host_port != host_port))
		c = c->hnext;
	return c;
}

static void conn_hash(struct vsock *vs, struct vsock_conn *c)
{
	struct vsock_conn **b = bucket(vs, c->guest_port, c->host_port);

	c->hnext = *b;
	*b = c;
	c->hashed = true;
	vs->nhashed++;
}

static void conn_unhash(struct vsock *vs, struct vsock_conn *c)
{
	struct vsock_conn **p = bucket(vs, c->guest_port, c->host_port);

	if (!c->hashed)
		return;
	while (*p && *p != c)
		p = &(*p)->hnext;
	if (*p)
		*p = c->hnext;
	c->hashed = false;
	vs->nhashed--;
}

static void rxq_add(struct vsock *vs, struct vsock_conn *c)
{
	if (c->queued)
		return;
	c->qnext = NULL;
	c->qprev = vs->rxq_tail;
	if (vs->rxq_tail)
		vs->rxq_tail->qnext = c;
	else
		vs->rxq_head = c;
	vs->rxq_tail = c;
	c->queued = true;
}

static void rxq_del(struct vsock *vs, struct vsock_conn *c)
{
	if (!c->queued)
		return;
	if (c->qprev)
		c->qprev->qnext = c->qnext;
	else
		vs->rxq_head = c->qnext;
	if (c->qnext)
		c->qnext->qprev = c->qprev;
	else
		vs->rxq_tail = c->qprev;
	c->qprev = c->qnext = NULL;
	c->queued = false;
}

static uint32_t conn_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	/* A peer that shrank buf_alloc (or lies) just gets nothing. */
	return in_flight >= c->peer_buf_alloc ? 0
					      : c->peer_buf_alloc - in_flight;
}

/* The guest still takes data from the host socket. */
static bool conn_reads(const struct vsock_conn *c)
{
	return c->state == CS_CONNECTED && c->fd >= 0 && !c->host_eof &&
	       !c->peer_shut_rcv;
}

static bool conn_wants_rx(const struct vsock_conn *c)
{
	return c->ctrl || (conn_reads(c) && c->rx_ready && conn_credit(c) > 0);
}

static uint32_t conn_events(const struct vsock_conn *c)
{
	uint32_t ev = 0;

	if (c->fd < 0)
		return 0;
	if (c->state == CS_LINE)
		return EPOLLIN;
	if (conn_reads(c) && !c->rx_ready)
		ev |= EPOLLIN;
	if (c->olen)
		ev |= EPOLLOUT;
	return ev;
}

static void conn_watch(struct vsock *vs, struct vsock_conn *c)
{
	struct epoll_event ev = {
		.events = conn_events(c),
		.data.u64 = (uint64_t)c->gen << 32 | (TAG_CONN + c->slot),
	};
	int op;

	if (ev.events == c->ev_mask)
		return;
	op = !ev.events	  ? EPOLL_CTL_DEL
	     : c->ev_mask ? EPOLL_CTL_MOD
			  : EPOLL_CTL_ADD;
	if (epoll_ctl(vs->epoll_fd, op, c->fd, &ev) < 0) {
		/* Only ENOMEM/ENOSPC are possible here; the connection
		 * then waits for the guest or a timeout. */
		note_host_error(vs, "epoll_ctl", errno);
		if (op != EPOLL_CTL_DEL)
			return;
	}
	c->ev_mask = ev.events;
}

static void conn_close_fd(struct vsock *vs, struct vsock_conn *c)
{
	if (c->fd < 0)
		return;
	if (c->ev_mask)
		epoll_ctl(vs->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->ev_mask = 0;
}

static void obuf_clear(struct vsock *vs, struct vsock_conn *c)
{
	vs->stats.queued_bytes -= c->olen;
	free(c->obuf);
	c->obuf = NULL;
	c->ohead = c->olen = 0;
}

static struct vsock_conn *conn_new(struct vsock *vs, int fd,
				   enum conn_state state)
{
	struct vsock_conn *c;

	if (!vs->nfree)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->slot = vs->free_slots[--vs->nfree];
	c->gen = ++vs->next_gen;
	c->fd = fd;
	c->state = state;
	vs->slots[c->slot] = c;
	vs->stats.conns++;
	vs->stats.conns_opened++;
	return c;
}

static void conn_free(struct vsock *vs, struct vsock_conn *c)
{
	rxq_del(vs, c);
	conn_unhash(vs, c);
	conn_close_fd(vs, c);
	obuf_clear(vs, c);
	vs->slots[c->slot] = NULL;
	vs->free_slots[vs->nfree++] = c->slot;
	vs->stats.conns--;
	vs->stats.conns_closed++;
	free(c);
}

/* Re-evaluates c after any change: frees it once nothing is left to do,
 * asks for credit when it ran out, fixes its epoll events and its place
 * in rxq. c may be gone afterwards. */
static void conn_update(struct vsock *vs, struct vsock_conn *c)
{
	if (c->state == CS_CLOSED && c->fd < 0 && !(c->ctrl & CTRL_RST)) {
		conn_free(vs, c);
		return;
	}
	if (conn_reads(c) && c->rx_ready && conn_credit(c) == 0) {
		/* Linux updates credit as its reader drains; asking once
		 * covers a driver that only answers. */
		if (!c->credit_asked)
			c->ctrl |= CTRL_CREDIT_REQUEST;
		c->credit_asked = true;
	} else if (conn_credit(c) > 0) {
		c->credit_asked = false;
	}
	conn_watch(vs, c);
	if (conn_wants_rx(c))
		rxq_add(vs, c);
	else
		rxq_del(vs, c);
	timer_note(vs, c->deadline);
}

/* We reset c: the guest gets an RST (if it knows c), the host socket is
 * closed and unsent data dropped. c may be gone afterwards. */
static void conn_abort(struct vsock *vs, struct vsock_conn *c)
{
	if (c->state == CS_LINE ||
	    (c->state == CS_CONNECTING && (c->ctrl & CTRL_REQUEST))) {
		conn_free(vs, c);
		return;
	}
	obuf_clear(vs, c);
	conn_close_fd(vs, c);
	c->state = CS_CLOSED;
	c->ctrl = CTRL_RST;
	c->deadline = 0;
	conn_update(vs, c);
}

/* Owes the guest an RST for a pair without a connection; a guest that
 * floods us with those while posting no rx buffers loses some. */
static void stray_rst(struct vsock *vs, uint32_t guest_port, uint32_t host_port)
{
	struct vsock_stray *s;

	if (vs->nstray == MAX_STRAY) {
		vs->stats.rsts_dropped++;
		return;
	}
	s = &vs->stray[(vs->stray_head + vs->nstray) % MAX_STRAY];
	s->guest_port = guest_port;
	s->host_port = host_port;
	vs->nstray++;
}

static void credit_check(struct vsock *vs, struct vsock_conn *c)
{
	/* The guest's view of our free space lags by fwd_cnt - adv_fwd_cnt;
	 * a quarter of the buffer is worth a packet. */
	if (c->state == CS_CONNECTED &&
	    c->fwd_cnt - c->adv_fwd_cnt >= vs->buf_alloc / 4)
		c->ctrl |= CTRL_CREDIT_UPDATE;
}

/* ---- guest-bound packets ---- */

static uint32_t put_pkt(struct vsock *vs, const struct virtq_chain *ch,
			uint32_t guest_port, uint32_t host_port, uint16_t op,
			uint32_t flags, uint32_t len, uint32_t fwd_cnt)
{
	uint8_t b[VSOCK_HDR_SIZE];

	put_le64(b, VSOCK_HOST_CID);
	put_le64(b + 8, vs->guest_cid);
	put_le32(b + 16, host_port);
	put_le32(b + 20, guest_port);
	put_le32(b + 24, len);
	put_le16(b + 28, VSOCK_TYPE_STREAM);
	put_le16(b + 30, op);
	put_le32(b + 32, flags);
	put_le32(b + 36, vs->buf_alloc);
	put_le32(b + 40, fwd_cnt);
	virtq_chain_write(ch, 0, b, sizeof(b));
	vs->stats.rx_pkts++;
	if (op == VSOCK_OP_RST)
		vs->stats.rsts_sent++;
	return VSOCK_HDR_SIZE + len;
}

static uint32_t conn_pkt(struct vsock *vs, struct vsock_conn *c,
			 const struct virtq_chain *ch, uint16_t op,
			 uint32_t flags, uint32_t len)
{
	c->adv_fwd_cnt = c->fwd_cnt;
	return put_pkt(vs, ch, c->guest_port, c->host_port, op, flags, len,
		       c->fwd_cnt);
}

/* Both directions of the host socket are shut (the peer closed it). */
static bool host_hung_up(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

/* Reads host data into ch, at most the guest's credit; EOF and errors
 * become SHUTDOWN and RST, a spurious wake-up a credit update. */
static uint32_t conn_fill_data(struct vsock *vs, struct vsock_conn *c,
			       const struct virtq_chain *ch)
{
	uint64_t room = ch->in_len - VSOCK_HDR_SIZE;
	uint32_t credit = conn_credit(c);
	ssize_t n;

	if (room > credit)
		room = credit;
	if (room > VSOCK_MAX_PKT)
		room = VSOCK_MAX_PKT;
	if (room == 0) /* a header-only buffer: nothing to carry data in */
		return conn_pkt(vs, c, ch, VSOCK_OP_CREDIT_UPDATE, 0, 0);
	n = recv(c->fd, vs->buf, (size_t)room, MSG_DONTWAIT);
	if (n > 0) {
		/* A short read drained the socket: wait for EPOLLIN rather
		 * than spend a guest buffer on the EAGAIN. */
		c->rx_ready = (uint64_t)n == room;
		c->rx_probe = c->rx_ready;
		virtq_chain_write(ch, VSOCK_HDR_SIZE, vs->buf, (size_t)n);
		c->tx_cnt += (uint32_t)n;
		vs->stats.rx_bytes += (uint64_t)n;
		return conn_pkt(vs, c, ch, VSOCK_OP_RW, 0, (uint32_t)n);
	}
	if (n < 0 && would_block(errno)) {
		c->rx_ready = false;
		return conn_pkt(vs, c, ch, VSOCK_OP_CREDIT_UPDATE, 0, 0);
	}
	if (n == 0) {
		c->host_eof = true;
		if (!host_hung_up(c->fd))
			return conn_pkt(vs, c, ch, VSOCK_OP_SHUTDOWN,
					VSOCK_SHUTDOWN_SEND, 0);
		/* Gone both ways: the guest is asked to close, and reset
		 * if it does not in time (Firecracker does the same). */
		obuf_clear(vs, c);
		conn_close_fd(vs, c);
		c->state = CS_LOCAL_CLOSED;
		c->ctrl = 0;
		c->deadline = now_ms() + vs->close_ms;
		return conn_pkt(vs, c, ch, VSOCK_OP_SHUTDOWN,
				VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND, 0);
	}
	log_debug(vs->dev->log, "virtio-vsock: port %u<-%u: read: %s",
		  c->guest_port, c->host_port, strerror(errno));
	obuf_clear(vs, c);
	conn_close_fd(vs, c);
	c->state = CS_CLOSED;
	c->ctrl = 0;
	return conn_pkt(vs, c, ch, VSOCK_OP_RST, 0, 0);
}

/* Writes c's next packet into ch (in_len >= header); returns its length. */
static uint32_t conn_fill(struct vsock *vs, struct vsock_conn *c,
			  const struct virtq_chain *ch)
{
	static const struct {
		unsigned bit;
		uint16_t op;
	} ctrl_ops[] = {
		{CTRL_REQUEST, VSOCK_OP_REQUEST},
		{CTRL_RESPONSE, VSOCK_OP_RESPONSE},
		{CTRL_CREDIT_UPDATE, VSOCK_OP_CREDIT_UPDATE},
	};

	if (c->ctrl & CTRL_RST) {
		c->ctrl = 0; /* nothing else matters any more */
		return conn_pkt(vs, c, ch, VSOCK_OP_RST, 0, 0);
	}
	for (size_t i = 0; i < sizeof(ctrl_ops) / sizeof(ctrl_ops[0]); i++) {
		if (c->ctrl & ctrl_ops[i].bit) {
			c->ctrl &= ~ctrl_ops[i].bit;
			return conn_pkt(vs, c, ch, ctrl_ops[i].op, 0, 0);
		}
	}
	if (conn_reads(c) && c->rx_ready && conn_credit(c) > 0)
		return conn_fill_data(vs, c, ch);
	c->ctrl &= ~CTRL_CREDIT_REQUEST;
	return conn_pkt(vs, c, ch, VSOCK_OP_CREDIT_REQUEST, 0, 0);
}

/* Before taking a guest buffer for data that may not be there: false (and
 * c re-armed for EPOLLIN) if the host socket is empty. */
static bool conn_probe(struct vsock *vs, struct vsock_conn *c)
{
	char b;

	if (c->ctrl || !c->rx_probe)
		return true;
	c->rx_probe = false;
	if (recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
	    would_block(errno)) {
		c->rx_ready = false;
		conn_update(vs, c);
		return false;
	}
	return true;
}

static bool rx_usable(const struct vsock *vs)
{
	const struct virtq *q = &vs->dev->vqs[VSOCK_QUEUE_RX];

	return dev_live(vs->dev) && q->ready && !q->broken;
}

/* Sends what is owed while the guest has rx buffers. */
static void rx_flush(struct vsock *vs)
{
	struct virtio_dev *d = vs->dev;
	struct virtq_chain *ch = &vs->rx_chain;

	while (rx_usable(vs)) {
		struct vsock_conn *c = vs->rxq_head;
		uint32_t written;
		int r;

		if (!vs->nstray && !c)
			return;
		if (!vs->nstray && !conn_wants_rx(c)) {
			rxq_del(vs, c); /* stale entry: take no buffer for it */
			continue;
		}
		if (!vs->nstray && !conn_probe(vs, c))
			continue;
		r = virtq_pop(&d->vqs[VSOCK_QUEUE_RX], ch);
		if (r < 0) {
			virtio_dev_fail(d, "malformed receive ring");
			return;
		}
		if (r == 0)
			return; /* starved: the guest kicks when it adds some */
		if (ch->in_len < VSOCK_HDR_SIZE) {
			vs->stats.short_rx_bufs++;
			virtio_dev_complete(d, VSOCK_QUEUE_RX, ch->head, 0);
			continue;
		}
		if (vs->nstray) {
			const struct vsock_stray *s =
				&vs->stray[vs->stray_head];

			written = put_pkt(vs, ch, s->guest_port, s->host_port,
					  VSOCK_OP_RST, 0, 0, 0);
			vs->stray_head = (vs->stray_head + 1) % MAX_STRAY;
			vs->nstray--;
		} else {
			rxq_del(vs, c); /* to the back of the line */
			written = conn_fill(vs, c, ch);
			conn_update(vs, c);
		}
		virtio_dev_complete(d, VSOCK_QUEUE_RX, ch->head, written);
	}
}

/* ---- host-bound data ---- */

static int obuf_append(struct vsock *vs, struct vsock_conn *c, const uint8_t *p,
		       uint32_t len)
{
	uint32_t cap = vs->buf_alloc, tail, first;

	if (!len)
		return 0;
	if (!c->obuf) {
		c->obuf = malloc(cap);
		if (!c->obuf)
			return -ENOMEM;
		c->ohead = 0;
	}
	tail = (c->ohead + c->olen) % cap;
	first = cap - tail < len ? cap - tail : len;
	memcpy(c->obuf + tail, p, first);
	memcpy(c->obuf, p + first, len - first);
	c->olen += len;
	vs->stats.queued_bytes += len;
	return 0;
}

/* Writes queued bytes to the host socket. Returns -1 if c was reset (and
 * may be gone), else 0; the caller runs conn_update. */
static int conn_flush(struct vsock *vs, struct vsock_conn *c)
{
	uint32_t cap = vs->buf_alloc;

	while (c->olen) {
		uint32_t first =
			cap - c->ohead < c->olen ? cap - c->ohead : c->olen;
		struct iovec iov[2] = {
			{c->obuf + c->ohead, first},
			{c->obuf, c->olen - first},
		};
		struct msghdr mh = {.msg_iov = iov,
				    .msg_iovlen = c->olen > first ? 2 : 1};
		ssize_t n = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && would_block(errno))
			break;
		if (n <= 0) {
			log_debug(vs->dev->log,
				  "virtio-vsock: port %u->%u: write: %s",
				  c->guest_port, c->host_port,
				  strerror(n < 0 ? errno : EIO));
			if (c->state == CS_CLOSED) {
				obuf_clear(vs, c);
				conn_close_fd(vs, c);
				conn_update(vs, c);
			} else {
				conn_abort(vs, c);
			}
			return -1;
		}
		c->ohead = (uint32_t)((c->ohead + (uint64_t)n) % cap);
		c->olen -= (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
		vs->stats.queued_bytes -= (uint64_t)n;
	}
	if (!c->olen) {
		obuf_clear(vs, c);
		if (c->state == CS_CLOSED)
			conn_close_fd(vs, c);
		else if (c->peer_shut_send)
			shutdown(c->fd, SHUT_WR);
		/* After a stall the guest may be waiting for exactly this. */
		if (c->state == CS_CONNECTED && c->fwd_cnt != c->adv_fwd_cnt)
			c->ctrl |= CTRL_CREDIT_UPDATE;
	}
	credit_check(vs, c);
	return 0;
}

static void on_rw(struct vsock *vs, struct vsock_conn *c,
		  const struct vsock_hdr *h, const struct virtq_chain *ch)
{
	uint32_t n = h->len;
	ssize_t w = 0;

	if (c->peer_shut_send) {
		log_debug(vs->dev->log,
			  "virtio-vsock: port %u->%u: data after SHUTDOWN",
			  c->guest_port, c->host_port);
		conn_abort(vs, c);
		return;
	}
	if ((uint64_t)c->olen + n > vs->buf_alloc) {
		/* More than the credit we gave: the spec's MUST NOT. */
		vs->stats.credit_violations++;
		log_debug(vs->dev->log,
			  "virtio-vsock: port %u->%u: %u bytes with %u queued "
			  "exceed buf_alloc %u",
			  c->guest_port, c->host_port, n, c->olen,
			  vs->buf_alloc);
		conn_abort(vs, c);
		return;
	}
	if (n && virtq_chain_read(ch, VSOCK_HDR_SIZE, vs->buf, n) != n) {
		conn_abort(vs, c);
		return;
	}
	c->rx_cnt += n;
	vs->stats.tx_bytes += n;
	if (n && !c->olen) {
		w = send(c->fd, vs->buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && !would_block(errno)) {
			log_debug(vs->dev->log,
				  "virtio-vsock: port %u->%u: write: %s",
				  c->guest_port, c->host_port, strerror(errno));
			conn_abort(vs, c);
			return;
		}
		if (w < 0)
			w = 0;
		c->fwd_cnt += (uint32_t)w;
	}
	if (obuf_append(vs, c, vs->buf + w, n - (uint32_t)w) < 0) {
		note_host_error(vs, "connection buffer", ENOMEM);
		conn_abort(vs, c);
		return;
	}
	credit_check(vs, c);
	conn_update(vs, c);
}

static void on_shutdown(struct vsock *vs, struct vsock_conn *c,
			const struct vsock_hdr *h)
{
	if (h->flags & VSOCK_SHUTDOWN_RCV && !c->peer_shut_rcv) {
		c->peer_shut_rcv = true;
		/* The host writer gets EPIPE instead of filling a buffer
		 * nobody reads. */
		shutdown(c->fd, SHUT_RD);
	}
	if (h->flags & VSOCK_SHUTDOWN_SEND && !c->peer_shut_send) {
		c->peer_shut_send = true;
		if (!c->olen)
			shutdown(c->fd, SHUT_WR);
	}
	if (c->peer_shut_rcv && c->peer_shut_send) {
		/* A full close: the guest waits for our RST; queued data
		 * still drains to the host, for a while. */
		c->state = CS_CLOSED;
		c->ctrl = CTRL_RST;
		if (c->olen)
			c->deadline = now_ms() + vs->close_ms;
		else
			conn_close_fd(vs, c);
	}
	conn_update(vs, c);
}

/* ---- guest packets ---- */

static int connect_port(struct vsock *vs, uint32_t port)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd, err;

	/* Fits: checked against the longest port at create time. */
	snprintf(a.sun_path, sizeof(a.sun_path), "%s_%" PRIu32, vs->uds_path,
		 port);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = errno;
		note_host_error(vs, "socket", err);
		return -err;
	}
	/* Unix sockets connect at once or fail (EAGAIN: backlog full). */
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		err = errno;
		close(fd);
		log_debug(vs->dev->log, "virtio-vsock: connect %s: %s",
			  a.sun_path, strerror(err));
		return -err;
	}
	return fd;
}

static void on_request(struct vsock *vs, struct vsock_conn *c,
		       const struct vsock_hdr *h)
{
	int fd;

	if (c) {
		if (c->state != CS_CLOSED && c->state != CS_LOCAL_CLOSED) {
			/* The pair is in use: the RST answers both. */
			conn_abort(vs, c);
			return;
		}
		conn_free(vs, c); /* the guest has moved on */
	}
	if (vs->stats.conns >= vs->max_conns) {
		vs->stats.limit_refused++;
		log_debug(vs->dev->log,
			  "virtio-vsock: %u connections: refusing port %u",
			  vs->max_conns, h->dst_port);
		stray_rst(vs, h->src_port, h->dst_port);
		return;
	}
	fd = connect_port(vs, h->dst_port);
	if (fd < 0) {
		stray_rst(vs, h->src_port, h->dst_port);
		return;
	}
	c = conn_new(vs, fd, CS_CONNECTED);
	if (!c) {
		close(fd);
		stray_rst(vs, h->src_port, h->dst_port);
		return;
	}
	c->guest_port = h->src_port;
	c->host_port = h->dst_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->ctrl = CTRL_RESPONSE;
	conn_hash(vs, c);
	log_debug(vs->dev->log,
		  "virtio-vsock: guest port %u connected to %s_%u",
		  c->guest_port, vs->uds_path, c->host_port);
	conn_update(vs, c);
}

/* The guest accepted a host client's CONNECT. */
static void on_response(struct vsock *vs, struct vsock_conn *c)
{
	char msg[24];
	int len = snprintf(msg, sizeof(msg), "OK %" PRIu32 "\n", c->host_port);
	ssize_t n;

	c->state = CS_CONNECTED;
	c->deadline = 0;
	/* Nothing was written before, so the socket has room for this. */
	n = send(c->fd, msg, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n != len) {
		log_debug(vs->dev->log,
			  "virtio-vsock: port %u: host client gone",
			  c->guest_port);
		conn_abort(vs, c);
		return;
	}
	log_debug(vs->dev->log,
		  "virtio-vsock: host client connected to guest port %u "
		  "(host port %u)",
		  c->guest_port, c->host_port);
	conn_update(vs, c);
}

static void on_conn_pkt(struct vsock *vs, struct vsock_conn *c,
			const struct vsock_hdr *h, const struct virtq_chain *ch)
{
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (c->state) {
	case CS_LINE: return; /* never hashed */
	case CS_CONNECTING:
		if (h->op == VSOCK_OP_RESPONSE && !(c->ctrl & CTRL_REQUEST))
			on_response(vs, c);
		else
			conn_abort(vs, c);
		return;
	case CS_LOCAL_CLOSED:
		/* The guest may still drain what it has and update credit;
		 * anything else ends it. */
		if (h->op == VSOCK_OP_CREDIT_UPDATE ||
		    h->op == VSOCK_OP_CREDIT_REQUEST)
			return;
		c->state = CS_CLOSED;
		c->ctrl = CTRL_RST;
		c->deadline = 0;
		conn_update(vs, c);
		return;
	case CS_CLOSED: return; /* an RST is owed or was sent */
	case CS_CONNECTED: break;
	}
	switch (h->op) {
	case VSOCK_OP_RW: on_rw(vs, c, h, ch); return;
	case VSOCK_OP_SHUTDOWN: on_shutdown(vs, c, h); return;
	case VSOCK_OP_CREDIT_REQUEST:
		c->ctrl |= CTRL_CREDIT_UPDATE;
		conn_update(vs, c);
		return;
	case VSOCK_OP_CREDIT_UPDATE: conn_update(vs, c); return;
	default: conn_abort(vs, c); return; /* RESPONSE we did not ask for */
	}
}

static void handle_pkt(struct vsock *vs, const struct virtq_chain *ch)
{
	struct vsock_hdr h;
	enum vsock_verdict v = vsock_parse_pkt(ch, vs->guest_cid, &h);
	struct vsock_conn *c;

	vs->stats.tx_pkts++;
	if (v != VSOCK_PKT_OK) {
		vs->stats.bad_pkts++;
		log_debug(vs->dev->log,
			  "virtio-vsock: dropped packet op %u len %u ports "
			  "%u->%u: %s",
			  h.op, h.len, h.src_port, h.dst_port, verdict_name(v));
		/* Without a header, or not addressed to us, it cannot be
		 * answered; otherwise it resets what it names (never
		 * answering an RST with one). */
		if (v == VSOCK_PKT_SHORT || v == VSOCK_PKT_BAD_CID)
			return;
		c = conn_find(vs, h.src_port, h.dst_port);
		if (c && c->state != CS_CLOSED)
			conn_abort(vs, c);
		else if (!c && h.op != VSOCK_OP_RST)
			stray_rst(vs, h.src_port, h.dst_port);
		return;
	}
	c = conn_find(vs, h.src_port, h.dst_port);
	if (h.op == VSOCK_OP_REQUEST) {
		on_request(vs, c, &h);
	} else if (h.op == VSOCK_OP_RST) {
		if (c && c->state == CS_CONNECTING)
			log_debug(vs->dev->log,
				  "virtio-vsock: guest port %u refused a host "
				  "client",
				  c->guest_port);
		if (c)
			conn_free(vs, c);
	} else if (!c) {
		stray_rst(vs, h.src_port, h.dst_port);
	} else {
		on_conn_pkt(vs, c, &h, ch);
	}
}

static void tx_process(struct vsock *vs)
{
	struct virtio_dev *d = vs->dev;
	struct virtq_chain *ch = &vs->tx_chain;
	int r;

	while ((r = virtq_pop(&d->vqs[VSOCK_QUEUE_TX], ch)) > 0) {
		handle_pkt(vs, ch);
		virtio_dev_complete(d, VSOCK_QUEUE_TX, ch->head, 0);
	}
	if (r < 0)
		virtio_dev_fail(d, "malformed transmit ring");
	rx_flush(vs);
}

/* Closes every connection; with guests_only, host clients still on their
 * CONNECT line stay (they are refused when the line comes). */
static void drop_conns(struct vsock *vs, bool guests_only)
{
	for (unsigned i = 0; i < vs->max_conns; i++) {
		struct vsock_conn *c = vs->slots[i];

		if (c && (!guests_only || c->state != CS_LINE))
			conn_free(vs, c);
	}
	vs->nstray = 0;
	vs->stray_head = 0;
}

/* A failed or reset driver has no rings to serve connections with. */
static void check_live(struct vsock *vs)
{
	if (!dev_live(vs->dev) && (vs->nhashed || vs->nstray))
		drop_conns(vs, true);
}

/* ---- host side: listening socket, CONNECT lines, events, timers ---- */

/* "CONNECT <port>\n" (any case, CRLF accepted); 0 or -EINVAL. */
static int parse_connect(const char *s, unsigned len, uint32_t *port)
{
	uint64_t v = 0;
	unsigned i = 8;

	if (!len || s[len - 1] != '\n')
		return -EINVAL;
	len--;
	if (len && s[len - 1] == '\r')
		len--;
	if (len <= i || strncasecmp(s, "connect", 7) || s[7] != ' ')
		return -EINVAL;
	while (i < len && s[i] == ' ')
		i++;
	if (i == len)
		return -EINVAL;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > UINT32_MAX)
			return -EINVAL;
	}
	*port = (uint32_t)v;
	return 0;
}

/* A host port no connection to guest_port uses; 0 if none is found. */
static uint32_t pick_host_port(struct vsock *vs, uint32_t guest_port)
{
	for (unsigned i = 0; i <= vs->max_conns; i++) {
		uint32_t p = vs->next_host_port++;

		if (vs->next_host_port < MIN_HOST_PORT ||
		    vs->next_host_port == UINT32_MAX)
			vs->next_host_port = VSOCK_FIRST_HOST_PORT;
		if (p >= MIN_HOST_PORT && p != UINT32_MAX &&
		    !conn_find(vs, guest_port, p))
			return p;
	}
	return 0;
}

static void host_connect(struct vsock *vs, struct vsock_conn *c, uint32_t port)
{
	uint32_t hp;

	if (!dev_live(vs->dev)) {
		log_debug(vs->dev->log,
			  "virtio-vsock: CONNECT %u: the guest driver is not "
			  "ready",
			  port);
		conn_free(vs, c);
		return;
	}
	hp = pick_host_port(vs, port);
	if (!hp) {
		conn_free(vs, c);
		return;
	}
	c->guest_port = port;
	c->host_port = hp;
	c->state = CS_CONNECTING;
	c->ctrl = CTRL_REQUEST;
	c->deadline = now_ms() + vs->connect_ms;
	conn_hash(vs, c);
	conn_update(vs, c);
}

/* Reads the CONNECT line, never past its newline: what follows is data
 * for the guest. */
static void on_line(struct vsock *vs, struct vsock_conn *c)
{
	char peek[VSOCK_CONNECT_LINE_MAX];
	size_t room = sizeof(c->line) - c->line_len, take;
	const char *nl;
	uint32_t port;
	ssize_t n = recv(c->fd, peek, room, MSG_PEEK | MSG_DONTWAIT);

	if (n < 0 && would_block(errno))
		return;
	if (n <= 0) {
		conn_free(vs, c); /* the client left */
		return;
	}
	nl = memchr(peek, '\n', (size_t)n);
	take = nl ? (size_t)(nl - peek) + 1 : (size_t)n;
	if (recv(c->fd, c->line + c->line_len, take, MSG_DONTWAIT) !=
	    (ssize_t)take) {
		conn_free(vs, c);
		return;
	}
	c->line_len += (unsigned)take;
	if (!nl) {
		if (c->line_len == sizeof(c->line)) {
			log_debug(vs->dev->log,
				  "virtio-vsock: CONNECT line too long");
			conn_free(vs, c);
		}
		return;
	}
	if (parse_connect(c->line, c->line_len, &port) < 0) {
		log_debug(vs->dev->log, "virtio-vsock: bad CONNECT line");
		conn_free(vs, c);
		return;
	}
	host_connect(vs, c, port);
}

static void on_accept(struct vsock *vs)
{
	for (unsigned i = 0; i < ACCEPTS_PER_CALL; i++) {
		struct vsock_conn *c;
		int fd = accept4(vs->listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (would_block(errno) || errno == ECONNABORTED ||
			    errno == EPROTO)
				return;
			/* Out of fds or memory: the client stays pending and
			 * the socket readable, so back off instead of
			 * spinning. */
			note_host_error(vs, "accept", errno);
			listen_watch(vs, false);
			vs->listen_resume = now_ms() + LISTEN_BACKOFF_MS;
			timer_note(vs, vs->listen_resume);
			return;
		}
		if (vs->stats.conns >= vs->max_conns) {
			vs->stats.limit_refused++;
			log_debug(vs->dev->log,
				  "virtio-vsock: %u connections: closing a "
				  "host client",
				  vs->max_conns);
			close(fd);
			continue;
		}
		c = conn_new(vs, fd, CS_LINE);
		if (!c) {
			close(fd);
			continue;
		}
		c->deadline = now_ms() + vs->connect_ms;
		conn_update(vs, c);
	}
}

static void conn_expire(struct vsock *vs, struct vsock_conn *c)
{
	c->deadline = 0;
	switch (c->state) {
	case CS_LINE:
		log_debug(vs->dev->log,
			  "virtio-vsock: no CONNECT line in time");
		conn_free(vs, c);
		return;
	case CS_CONNECTING:
		log_debug(vs->dev->log,
			  "virtio-vsock: guest port %u did not answer in time",
			  c->guest_port);
		conn_abort(vs, c);
		return;
	case CS_LOCAL_CLOSED:
		c->state = CS_CLOSED;
		c->ctrl = CTRL_RST;
		conn_update(vs, c);
		return;
	case CS_CLOSED: /* could not drain in time */
		obuf_clear(vs, c);
		conn_close_fd(vs, c);
		conn_update(vs, c);
		return;
	case CS_CONNECTED: return;
	}
}

static void on_timer(struct vsock *vs)
{
	int64_t now = now_ms(), next = 0;
	uint64_t ticks;

	if (read(vs->timer_fd, &ticks, sizeof(ticks)) < 0) {
		/* EAGAIN: a deadline moved; the scan below is still right */
	}
	vs->timer_at = 0;
	if (vs->listen_resume && vs->listen_resume <= now) {
		vs->listen_resume = 0;
		listen_watch(vs, true);
	}
	next = vs->listen_resume;
	for (unsigned i = 0; i < vs->max_conns; i++) {
		struct vsock_conn *c = vs->slots[i];

		if (!c || !c->deadline)
			continue;
		if (c->deadline <= now) {
			conn_expire(vs, c);
			continue;
		}
		if (!next || c->deadline < next)
			next = c->deadline;
	}
	timer_note(vs, next);
}

static void on_conn_event(struct vsock *vs, struct vsock_conn *c,
			  uint32_t events)
{
	if (c->state == CS_LINE) {
		on_line(vs, c);
		return;
	}
	if (c->olen && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) &&
	    conn_flush(vs, c) < 0)
		return;
	/* A hang-up or error shows up in the next read. */
	if ((c->ev_mask & EPOLLIN) &&
	    (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) {
		c->rx_ready = true;
		c->rx_probe = false;
	}
	conn_update(vs, c);
}

void virtio_vsock_handle_events(struct virtio_dev *d)
{
	struct vsock *vs = d ? d->priv : NULL;
	struct epoll_event evs[EVENTS_PER_CALL];
	int n;

	if (!vs || d->ops != &virtio_vsock_ops)
		return;
	vs->dev = d;
	check_live(vs);
	n = epoll_wait(vs->epoll_fd, evs, EVENTS_PER_CALL, 0);
	if (n < 0 && errno != EINTR)
		note_host_error(vs, "epoll_wait", errno);
	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		uint32_t slot = (uint32_t)tag - TAG_CONN;
		struct vsock_conn *c;

		if (tag == TAG_LISTEN) {
			if (vs->listen_watched)
				on_accept(vs);
			continue;
		}
		if (tag == TAG_TIMER) {
			on_timer(vs);
			continue;
		}
		/* Events for a connection closed earlier in this batch, or
		 * whose slot was reused since, are stale. */
		if ((uint32_t)tag < TAG_CONN || slot >= vs->max_conns)
			continue;
		c = vs->slots[slot];
		if (c && c->gen == (uint32_t)(tag >> 32))
			on_conn_event(vs, c, evs[i].events);
	}
	rx_flush(vs);
	check_live(vs);
}

int virtio_vsock_poll_fd(const struct virtio_dev *d)
{
	const struct vsock *vs = d ? d->priv : NULL;

	if (!vs || d->ops != &virtio_vsock_ops)
		return -1;
	return vs->epoll_fd;
}

/* ---- device ops ---- */

static uint64_t vsock_features(struct virtio_dev *d)
{
	(void)d;
	return 0; /* stream only: no SEQPACKET */
}

static void vsock_config_read(struct virtio_dev *d, uint32_t off, uint8_t *buf,
			      uint32_t len)
{
	struct vsock *vs = d->priv;

	if (!vs || off > VSOCK_CONFIG_SIZE || len > VSOCK_CONFIG_SIZE - off) {
		memset(buf, 0, len);
		return;
	}
	memcpy(buf, vs->config + off, len);
}

static void vsock_config_write(struct virtio_dev *d, uint32_t off,
			       const uint8_t *buf, uint32_t len)
{
	(void)buf;
	log_debug(d->log, "virtio-vsock: ignored config write at %u (%u bytes)",
		  off, len);
}

static void vsock_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct vsock *vs = d->priv;

	if (!vs)
		return;
	vs->dev = d;
	if (q == VSOCK_QUEUE_TX)
		tx_process(vs);
	else if (q == VSOCK_QUEUE_RX)
		rx_flush(vs);
	/* The event queue only carries TRANSPORT_RESET, sent once when a
	 * snapshot is restored: its buffers stay with the device. */
	check_live(vs);
}

/* ---- snapshots ---- */

#define VSOCK_EVENT_TRANSPORT_RESET 0

/* A template has no connection: its host sockets could not come along,
 * and the restored guest resets every connection it had anyway. */
static int vsock_save(const struct virtio_dev *d, struct snapshot_writer *w)
{
	const struct vsock *vs = d->priv;

	if (!vs || vs->nhashed) {
		log_debug(d->log,
			  "snapshot: virtio-vsock has %u open "
			  "connections",
			  vs ? vs->nhashed : 0);
		return -EBUSY;
	}
	sw_u64(w, vs->guest_cid);
	return 0;
}

/* The restored guest's connections belong to a VM that is elsewhere: its
 * driver gets TRANSPORT_RESET on the event queue (virtio 1.2, 5.10.6.7),
 * drops them, and its listeners take new ones. */
static int vsock_restore(struct virtio_dev *d, struct snapshot_reader *r)
{
	struct vsock *vs = d->priv;
	struct virtq_chain ch;
	uint8_t ev[4] = {VSOCK_EVENT_TRANSPORT_RESET, 0, 0, 0};
	uint64_t cid = sr_u64(r);
	int n;

	if (r->bad || !vs || cid != vs->guest_cid)
		return kiln_errorf(d->log, -EINVAL,
				   "restore: virtio-vsock state does not "
				   "match (guest CID %llu, the snapshot's "
				   "%llu)",
				   vs ? (unsigned long long)vs->guest_cid : 0,
				   (unsigned long long)cid);
	vs->dev = d;
	if (!dev_live(d) || !d->vqs[VSOCK_QUEUE_EVENT].ready)
		return 0; /* no driver yet: nothing to reset */
	n = virtq_pop(&d->vqs[VSOCK_QUEUE_EVENT], &ch);
	if (n < 0) {
		virtio_dev_fail(d, "malformed event ring");
		return 0;
	}
	if (n == 0 || ch.in_len < sizeof(ev)) {
		kiln_logf(d->log, KILN_LOG_WARN,
			  "restore: the guest posted no vsock event buffer: "
			  "no TRANSPORT_RESET delivered");
		if (n)
			virtio_dev_complete(d, VSOCK_QUEUE_EVENT, ch.head, 0);
		return 0;
	}
	virtq_chain_write(&ch, 0, ev, sizeof(ev));
	virtio_dev_complete(d, VSOCK_QUEUE_EVENT, ch.head, sizeof(ev));
	return 0;
}

static void vsock_reset(struct virtio_dev *d)
{
	struct vsock *vs = d->priv;

	if (!vs)
		return;
	vs->dev = d;
	drop_conns(vs, true);
}

/* ---- creation ---- */

static int listen_uds(struct vsock *vs, const struct kiln_log *log)
{
	int fd = unix_listen(vs->uds_path, 64, true, "virtio-vsock", log,
			     &vs->path_id);

	if (fd < 0)
		return fd;
	vs->listen_fd = fd;
	listen_watch(vs, true);
	return vs->listen_watched ? 0 : -ENOMEM;
}

static void vsock_free(struct vsock *vs)
{
	if (vs->slots)
		drop_conns(vs, false);
	if (vs->listen_fd >= 0) {
		close(vs->listen_fd);
		/* Only our own socket: someone may have replaced it. */
		unix_unlink_own(vs->uds_path, &vs->path_id);
	}
	if (vs->timer_fd >= 0)
		close(vs->timer_fd);
	if (vs->epoll_fd >= 0)
		close(vs->epoll_fd);
	free(vs->uds_path);
	free(vs->slots);
	free(vs->free_slots);
	free(vs->hash);
	free(vs);
}

static int check_config(const struct virtio_vsock_config *cfg,
			const struct kiln_log *log)
{
	size_t max_path = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

	if (!cfg->uds_path || !*cfg->uds_path)
		return kiln_errorf(log, -EINVAL,
				   "virtio-vsock: no Unix socket path");
	/* Every "<path>_<port>" has to fit too. */
	if (strlen(cfg->uds_path) + sizeof("_4294967295") - 1 > max_path)
		return kiln_errorf(log, -ENAMETOOLONG,
				   "virtio-vsock: socket path longer than %zu "
				   "bytes",
				   max_path - (sizeof("_4294967295") - 1));
	/* 0-2 are reserved and U32_MAX is VMADDR_CID_ANY. */
	if (cfg->guest_cid < 3 || cfg->guest_cid >= UINT32_MAX)
		return kiln_errorf(log, -EINVAL,
				   "virtio-vsock: guest CID %llu is not in "
				   "3..%u",
				   (unsigned long long)cfg->guest_cid,
				   UINT32_MAX - 1);
	if (cfg->max_conns > VSOCK_MAX_CONNS)
		return kiln_errorf(log, -EINVAL,
				   "virtio-vsock: at most %u connections",
				   VSOCK_MAX_CONNS);
	if (cfg->buf_alloc && (cfg->buf_alloc < VSOCK_MIN_BUF_ALLOC ||
			       cfg->buf_alloc > VSOCK_MAX_BUF_ALLOC))
		return kiln_errorf(log, -EINVAL,
				   "virtio-vsock: buffer size %u not in %u..%u",
				   cfg->buf_alloc, VSOCK_MIN_BUF_ALLOC,
				   VSOCK_MAX_BUF_ALLOC);
	return 0;
}

int virtio_vsock_create(const struct virtio_vsock_config *cfg,
			struct virtio_dev *dev)
{
	const struct kiln_log *log = dev ? dev->log : NULL;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_TIMER};
	unsigned hsize = 16;
	struct vsock *vs;
	int err;

	if (!cfg || !dev)
		return -EINVAL;
	err = check_config(cfg, log);
	if (err < 0)
		return err;
	vs = calloc(1, sizeof(*vs));
	if (!vs)
		return kiln_errorf(log, -ENOMEM, "virtio-vsock: out of memory");
	vs->dev = dev;
	vs->epoll_fd = vs->listen_fd = vs->timer_fd = -1;
	vs->guest_cid = cfg->guest_cid;
	vs->max_conns =
		cfg->max_conns ? cfg->max_conns : VSOCK_DEFAULT_MAX_CONNS;
	vs->buf_alloc =
		cfg->buf_alloc ? cfg->buf_alloc : VSOCK_DEFAULT_BUF_ALLOC;
	vs->connect_ms =
		cfg->connect_ms ? cfg->connect_ms : VSOCK_DEFAULT_CONNECT_MS;
	vs->close_ms = cfg->close_ms ? cfg->close_ms : VSOCK_DEFAULT_CLOSE_MS;
	vs->next_host_port = VSOCK_FIRST_HOST_PORT;
	put_le64(vs->config, vs->guest_cid);
	while (hsize < vs->max_conns)
		hsize <<= 1;
	vs->hash_mask = hsize - 1;
	vs->uds_path = strdup(cfg->uds_path);
	vs->slots = calloc(vs->max_conns, sizeof(*vs->slots));
	vs->free_slots = calloc(vs->max_conns, sizeof(*vs->free_slots));
	vs->hash = calloc(hsize, sizeof(*vs->hash));
	if (!vs->uds_path || !vs->slots || !vs->free_slots || !vs->hash) {
		vsock_free(vs);
		return kiln_errorf(log, -ENOMEM, "virtio-vsock: out of memory");
	}
	/* Lowest slots first. */
	for (unsigned i = 0; i < vs->max_conns; i++)
		vs->free_slots[i] = vs->max_conns - 1 - i;
	vs->nfree = vs->max_conns;
	vs->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	vs->timer_fd =
		timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (vs->epoll_fd < 0 || vs->timer_fd < 0 ||
	    epoll_ctl(vs->epoll_fd, EPOLL_CTL_ADD, vs->timer_fd, &ev) < 0) {
		err = -errno;
		vsock_free(vs);
		return kiln_errorf(log, err, "virtio-vsock: %s",
				   strerror(-err));
	}
	err = listen_uds(vs, log);
	if (err < 0) {
		vsock_free(vs);
		return err;
	}
	dev->ops = &virtio_vsock_ops;
	dev->priv = vs;
	log_info(log, "virtio-vsock: guest CID %llu, host sockets at %s",
		 (unsigned long long)vs->guest_cid, vs->uds_path);
	return 0;
}

void virtio_vsock_destroy(struct virtio_dev *dev)
{
	if (!dev || dev->ops != &virtio_vsock_ops || !dev->priv)
		return;
	vsock_free(dev->priv);
	dev->priv = NULL;
}

void virtio_vsock_get_stats(const struct virtio_dev *dev,
			    struct virtio_vsock_stats *out)
{
	const struct vsock *vs =
		dev && dev->ops == &virtio_vsock_ops ? dev->priv : NULL;

	if (vs)
		*out = vs->stats;
	else
		memset(out, 0, sizeof(*out));
}

/* ---- life cycle from options: vsock,cid=CID,uds=PATH ---- */

static const char *const vsock_option_keys[] = {"cid", "uds", NULL};

static int vsock_opts_config(const struct virtio_dev_opts *o,
			     const struct kiln_log *log,
			     struct virtio_vsock_config *cfg)
{
	uint64_t cid;
	const char *uds;
	int err = virtio_dev_opts_u64(o, "cid", 3, UINT32_MAX - 1, log, &cid);

	if (err == -ENOENT)
		err = kiln_errorf(log, -EINVAL, "vsock: cid=CID is required");
	if (err == 0)
		err = virtio_dev_opts_require(o, "uds", "uds=PATH", log, &uds);
	if (err < 0)
		return err;
	memset(cfg, 0, sizeof(*cfg));
	cfg->guest_cid = cid;
	cfg->uds_path = uds;
	err = check_config(cfg, log);
	return err < 0 ? -EINVAL : 0;
}

static int vsock_check(const struct virtio_dev_opts *o,
		       const struct kiln_log *log)
{
	struct virtio_vsock_config cfg;

	return vsock_opts_config(o, log, &cfg);
}

static int vsock_create(struct virtio_dev *d, const struct virtio_dev_opts *o)
{
	struct virtio_vsock_config cfg;
	int err = vsock_opts_config(o, d->log, &cfg);

	return err < 0 ? err : virtio_vsock_create(&cfg, d);
}

const struct virtio_dev_ops virtio_vsock_ops = {
	.name = "virtio-vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.num_queues = VSOCK_NUM_QUEUES,
	.queue_max_size = VSOCK_QUEUE_SIZE,
	.features = vsock_features,
	.config_size = VSOCK_CONFIG_SIZE,
	.config_read = vsock_config_read,
	.config_write = vsock_config_write,
	.queue_notify = vsock_queue_notify,
	.reset = vsock_reset,
	.save = vsock_save,
	.restore = vsock_restore,
	.type = "vsock",
	.option_keys = vsock_option_keys,
	.option_usage = "cid=CID,uds=PATH",
	.max_per_vm = 1,
	.check = vsock_check,
	.create = vsock_create,
	.destroy = virtio_vsock_destroy,
	.host_fd = virtio_vsock_poll_fd,
	.host_events = virtio_vsock_handle_events,
	.vhost_user_frontend = "vhost-user-vsock-device",
};
