/* SPDX-License-Identifier: MIT */
#include "user_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <slirp/libslirp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 4096 /* sockets the NAT may watch at once */

struct un_timer {
	SlirpTimerCb cb;
	void *opaque;
	int64_t expire_ms; /* -1: not armed */
	bool live;
};

struct watched {
	int fd;
	uint32_t events; /* EPOLL* currently registered */
};

struct user_net {
	Slirp *slirp;
	const struct kiln_log *log;
	user_net_deliver_fn deliver;
	void *opaque;
	int epfd, timerfd;
	/* this round's slirp_pollfds_fill */
	struct pollfd *pfds;
	unsigned npfds, cap;
	/* what epfd holds (besides timerfd) */
	struct watched *watched;
	unsigned nwatched, wcap;
	struct un_timer **timers;
	unsigned ntimers;
	bool dirty; /* input since the watch set was last refilled */
	struct kiln_ratelimit err_limit;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void user_net_addrs(const struct user_net_opts *o, struct user_net_addrs *a)
{
	static const uint8_t prefix6[8] = {0xfe, 0xc0};

	memset(a, 0, sizeof(*a));
	a->netmask = ~0u << (32 - o->prefix);
	a->gateway = (o->net4 & a->netmask) + 2;
	a->dns = (o->net4 & a->netmask) + 3;
	a->guest = (o->net4 & a->netmask) + 15;
	memcpy(a->gateway6, prefix6, 8);
	a->gateway6[15] = 2;
	memcpy(a->dns6, prefix6, 8);
	a->dns6[15] = 3;
}

/* ---- libslirp's callbacks ---- */

static ssize_t cb_send(const void *buf, size_t len, void *opaque)
{
	struct user_net *n = opaque;

	n->deliver(n->opaque, buf, len);
	return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
	struct user_net *n = opaque;

	kiln_logf_limited(n->log, &n->err_limit, KILN_LOG_INFO,
			  "net: guest error: %s", msg);
}

static int64_t cb_clock(void *opaque)
{
	(void)opaque;
	return now_ns();
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct user_net *n = opaque;
	struct un_timer *t = calloc(1, sizeof(*t)), **nt;

	if (!t)
		return NULL;
	nt = realloc(n->timers, (n->ntimers + 1) * sizeof(*nt));
	if (!nt) {
		free(t);
		return NULL;
	}
	n->timers = nt;
	t->cb = cb;
	t->opaque = cb_opaque;
	t->expire_ms = -1;
	t->live = true;
	n->timers[n->ntimers++] = t;
	return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
	struct user_net *n = opaque;

	for (unsigned i = 0; i < n->ntimers; i++) {
		if (n->timers[i] == timer) {
			n->timers[i] = n->timers[--n->ntimers];
			free(timer);
			return;
		}
	}
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	(void)opaque;
	((struct un_timer *)timer)->expire_ms = expire_ms;
}

static void cb_register(int fd, void *opaque)
{
	(void)fd;
	(void)opaque;
}

static void cb_notify(void *opaque)
{
	(void)opaque; /* every entry point refills the watch set anyway */
}

static const SlirpCb callbacks = {
	.send_packet = cb_send,
	.guest_error = cb_guest_error,
	.clock_get_ns = cb_clock,
	.timer_new = cb_timer_new,
	.timer_free = cb_timer_free,
	.timer_mod = cb_timer_mod,
	.register_poll_fd = cb_register,
	.unregister_poll_fd = cb_register,
	.notify = cb_notify,
};

/* ---- the watch set ---- */

static int add_poll(int fd, int events, void *opaque)
{
	struct user_net *n = opaque;
	short ev = 0;

	if (n->npfds == n->cap) {
		unsigned cap = n->cap ? n->cap * 2 : 32;
		struct pollfd *p;

		if (cap > MAX_FDS)
			return -1;
		p = realloc(n->pfds, cap * sizeof(*p));
		if (!p)
			return -1;
		n->pfds = p;
		n->cap = cap;
	}
	if (events & SLIRP_POLL_IN)
		ev |= POLLIN;
	if (events & SLIRP_POLL_OUT)
		ev |= POLLOUT;
	if (events & SLIRP_POLL_PRI)
		ev |= POLLPRI;
	n->pfds[n->npfds] = (struct pollfd){.fd = fd, .events = ev};
	return (int)n->npfds++;
}

static int get_revents(int idx, void *opaque)
{
	struct user_net *n = opaque;
	short r;
	int out = 0;

	if (idx < 0 || (unsigned)idx >= n->npfds)
		return 0;
	r = n->pfds[idx].revents;
	if (r & POLLIN)
		out |= SLIRP_POLL_IN;
	if (r & POLLOUT)
		out |= SLIRP_POLL_OUT;
	if (r & POLLPRI)
		out |= SLIRP_POLL_PRI;
	if (r & POLLERR)
		out |= SLIRP_POLL_ERR;
	if (r & POLLHUP)
		out |= SLIRP_POLL_HUP;
	return out;
}

static void watch(struct user_net *n, int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};

	if (epoll_ctl(n->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 &&
	    epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		kiln_logf_limited(n->log, &n->err_limit, KILN_LOG_WARN,
				  "net: cannot watch socket %d: %s", fd,
				  strerror(errno));
}

/* Asks slirp what to watch now and makes epfd and the timer say so. */
static void refill(struct user_net *n)
{
	uint32_t timeout = UINT32_MAX;
	int64_t now = now_ns() / 1000000, due = -1;
	struct watched *w;
	unsigned nw = 0;

	n->dirty = false;
	n->npfds = 0;
	slirp_pollfds_fill(n->slirp, &timeout, add_poll, n);
	w = malloc((n->npfds ? n->npfds : 1) * sizeof(*w));
	if (!w)
		return;
	for (unsigned i = 0; i < n->npfds; i++) {
		uint32_t ev = 0;
		bool seen = false;

		if (n->pfds[i].events & POLLIN)
			ev |= EPOLLIN;
		if (n->pfds[i].events & POLLOUT)
			ev |= EPOLLOUT;
		if (n->pfds[i].events & POLLPRI)
			ev |= EPOLLPRI;
		for (unsigned j = 0; j < nw; j++)
			if (w[j].fd == n->pfds[i].fd) {
				w[j].events |= ev;
				seen = true;
			}
		if (!seen)
			w[nw++] = (struct watched){n->pfds[i].fd, ev};
	}
	/* drop what is no longer wanted (closed fds left epoll by
	 * themselves: a failed DEL is fine), then add or change the rest */
	for (unsigned i = 0; i < n->nwatched; i++) {
		bool keep = false;

		for (unsigned j = 0; j < nw && !keep; j++)
			keep = w[j].fd == n->watched[i].fd;
		if (!keep)
			epoll_ctl(n->epfd, EPOLL_CTL_DEL, n->watched[i].fd,
				  NULL);
	}
	for (unsigned j = 0; j < nw; j++) {
		bool same = false;

		for (unsigned i = 0; i < n->nwatched && !same; i++)
			same = n->watched[i].fd == w[j].fd &&
			       n->watched[i].events == w[j].events;
		if (!same)
			watch(n, w[j].fd, w[j].events);
	}
	free(n->watched);
	n->watched = w;
	n->nwatched = nw;

	/* the timer: slirp's own (TCP) timeout and its timers */
	if (timeout != UINT32_MAX)
		due = now + timeout;
	for (unsigned i = 0; i < n->ntimers; i++) {
		int64_t e = n->timers[i]->expire_ms;

		if (e >= 0 && (due < 0 || e < due))
			due = e;
	}
	{
		struct itimerspec its = {0};

		if (due >= 0) {
			if (due <= now)
				due = now + 1;
			its.it_value.tv_sec = due / 1000;
			its.it_value.tv_nsec = (due % 1000) * 1000000;
		}
		timerfd_settime(n->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
	}
}

void user_net_service(struct user_net *n)
{
	int64_t now = now_ns() / 1000000;
	uint64_t ticks;
	int r;

	if (read(n->timerfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		log_debug(n->log, "net: timerfd: %s", strerror(errno));
	/* due timers; a callback may re-arm its own or free others */
	for (unsigned i = 0; i < n->ntimers; i++) {
		struct un_timer *t = n->timers[i];

		if (t->expire_ms >= 0 && t->expire_ms <= now) {
			t->expire_ms = -1;
			t->cb(t->opaque);
		}
	}
	do
		r = poll(n->pfds, n->npfds, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		for (unsigned i = 0; i < n->npfds; i++)
			n->pfds[i].revents = 0;
	slirp_pollfds_poll(n->slirp, r < 0, get_revents, n);
	refill(n);
}

void user_net_input(struct user_net *n, const uint8_t *frame, size_t len)
{
	if (len > INT32_MAX)
		return;
	slirp_input(n->slirp, frame, (int)len);
	n->dirty = true;
}

void user_net_flush(struct user_net *n)
{
	if (n->dirty)
		refill(n);
}

int user_net_forward(struct user_net *n, bool udp, uint32_t host_addr,
		     uint16_t host_port, uint16_t guest_port)
{
	struct in_addr h = {htonl(host_addr)}, g = {0};

	if (slirp_add_hostfwd(n->slirp, udp, h, host_port, g, guest_port) < 0)
		return kiln_errorf(n->log, -EADDRINUSE,
				   "net: cannot forward %s port %u to the "
				   "guest's %u (in use?)",
				   udp ? "UDP" : "TCP", host_port, guest_port);
	refill(n);
	return 0;
}

int user_net_fd(const struct user_net *n)
{
	return n->epfd;
}

int user_net_create(const struct user_net_opts *o, user_net_deliver_fn deliver,
		    void *opaque, const struct kiln_log *log,
		    struct user_net **out)
{
	struct user_net_addrs a;
	struct user_net *n;
	SlirpConfig cfg = {0};
	struct epoll_event ev = {.events = EPOLLIN};

	*out = NULL;
	if (o->prefix < 8 || o->prefix > 30)
		return kiln_errorf(log, -EINVAL,
				   "net: prefix /%u: must be /8../30",
				   o->prefix);
	n = calloc(1, sizeof(*n));
	if (!n)
		return kiln_errorf(log, -ENOMEM, "net: out of memory");
	n->log = log;
	n->deliver = deliver;
	n->opaque = opaque;
	n->epfd = epoll_create1(EPOLL_CLOEXEC);
	n->timerfd =
		timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	ev.data.fd = n->timerfd;
	if (n->epfd < 0 || n->timerfd < 0 ||
	    epoll_ctl(n->epfd, EPOLL_CTL_ADD, n->timerfd, &ev) < 0) {
		int err = -errno;

		user_net_destroy(n);
		return kiln_errorf(log, err, "net: %s", strerror(-err));
	}
	user_net_addrs(o, &a);
	cfg.version = 4;
	cfg.in_enabled = true;
	cfg.vnetwork.s_addr = htonl(o->net4 & a.netmask);
	cfg.vnetmask.s_addr = htonl(a.netmask);
	cfg.vhost.s_addr = htonl(a.gateway);
	cfg.vnameserver.s_addr = htonl(a.dns);
	cfg.vdhcp_start.s_addr = htonl(a.guest);
	cfg.in6_enabled = o->ipv6;
	memcpy(&cfg.vprefix_addr6, a.gateway6, 8);
	cfg.vprefix_len = 64;
	memcpy(&cfg.vhost6, a.gateway6, 16);
	memcpy(&cfg.vnameserver6, a.dns6, 16);
	cfg.vhostname = o->hostname;
	cfg.disable_host_loopback = !o->host_loopback;
	cfg.disable_dhcp = true; /* the agent configures the guest itself */
	n->slirp = slirp_new(&cfg, &callbacks, n);
	if (!n->slirp) {
		user_net_destroy(n);
		return kiln_errorf(log, -EINVAL,
				   "net: libslirp refused the "
				   "network configuration");
	}
	refill(n);
	*out = n;
	return 0;
}

void user_net_destroy(struct user_net *n)
{
	if (!n)
		return;
	if (n->slirp)
		slirp_cleanup(n->slirp); /* frees its timers through us */
	for (unsigned i = 0; i < n->ntimers; i++)
		free(n->timers[i]);
	free(n->timers);
	free(n->pfds);
	free(n->watched);
	if (n->timerfd >= 0)
		close(n->timerfd);
	if (n->epfd >= 0)
		close(n->epfd);
	free(n);
}
