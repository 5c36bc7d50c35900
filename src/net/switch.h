/* SPDX-License-Identifier: MIT */
/*
 * A cluster network's switch: one virtual Ethernet segment that the NICs
 * of several VMs (in any processes) plug into, each over its own Unix
 * SOCK_SEQPACKET connection ("port"), one frame per message.
 *
 * Every member says hello first (its MAC and name) and is given an address
 * of the network's subnet; the switch knows each port's MAC from then on,
 * so unicast goes to one port only and a frame with another source MAC (or
 * an IPv4/ARP sender address other than the member's) is dropped: a member
 * cannot take over another's traffic. Broadcast and multicast go to every
 * other member. The switch itself is a host on the segment (the subnet's
 * first address): it answers ARP, and DNS queries for members' names, so
 * members reach each other by name; other names get REFUSED (the guest's
 * resolver goes on to its next server).
 *
 * Nothing a member does can stall the switch or starve the others: every
 * socket is non-blocking, each port's outgoing queue is bounded
 * (SW_QUEUE frames, of which one source may hold at most SW_QUEUE_PER_SRC),
 * a port is read at most SW_READ_BURST frames per turn, and a member that
 * dies (its connection closes) is removed with its address.
 *
 * The wire format (a hello, its reply) and the switch's state are here so
 * the unit tests and fuzzers drive them on socketpairs; network.h has the
 * process around it.
 */
#ifndef KILN_NET_SWITCH_H
#define KILN_NET_SWITCH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"

#define SW_MAGIC	 "KSW1"
#define SW_NAME_MAX	 63
#define SW_MAX_FRAME	 1522 /* MTU 1500 + Ethernet header + one VLAN tag */
#define SW_MAX_CONNS	 128  /* members plus clients saying hello */
#define SW_MAX_LEASES	 256
#define SW_QUEUE	 128
#define SW_QUEUE_PER_SRC 32
#define SW_READ_BURST	 16
#define SW_LEASE_HOLD_MS (120 * 1000) /* a lease no port has taken yet */
#define SW_HELLO_WAIT_MS 2000	      /* a client's hello must come by then */
#define SW_REPLY_MAX	 16384
#define SW_DNS_TTL	 10 /* members come and go */

enum sw_hello_kind {
	SW_HELLO_LEASE = 1, /* reserve an address for (name, mac); close */
	SW_HELLO_PORT = 2,  /* plug in: frames follow both ways */
	SW_HELLO_LIST = 3,  /* the members, as text; close */
	SW_HELLO_STOP = 4,  /* the switch exits (kiln network rm) */
};

/* A hello on the wire: "KSW1", kind, mac[6], name length, name. */
struct sw_hello {
	enum sw_hello_kind kind;
	uint8_t mac[6];
	char name[SW_NAME_MAX + 1]; /* "" for a member without a name */
};

/* The reply: "KSW1", status (0 or an errno value), addr[4], prefix,
 * dns[4], then text (an error message, or LIST's lines). */
struct sw_reply {
	int status;
	uint32_t addr, dns;
	unsigned prefix;
	const char *text; /* points into the message; NUL-terminated copy */
	char textbuf[SW_REPLY_MAX];
};

/* Encodes h into buf (at least 80 bytes); its length. */
size_t sw_hello_encode(const struct sw_hello *h, uint8_t *buf);
/* Decodes a hello; 0 or -EINVAL (bad magic, kind, name length or a name
 * that is not a valid member name). */
int sw_hello_decode(const uint8_t *buf, size_t len, struct sw_hello *h);
/* True for a member name: 1..63 of a-z A-Z 0-9 '-' '_' '.', not starting
 * with '-' or '.' (a sandbox name; also its DNS name on the network). */
bool sw_name_valid(const char *name);

/* Encodes a reply; its length (at most 14 + SW_REPLY_MAX). */
size_t sw_reply_encode(int status, uint32_t addr, unsigned prefix, uint32_t dns,
		       const char *text, uint8_t *buf, size_t cap);
/* Decodes a reply into r; 0 or -EINVAL. */
int sw_reply_decode(const uint8_t *buf, size_t len, struct sw_reply *r);

struct sw_frame {
	uint8_t *data;
	uint16_t len;
	uint16_t src; /* the port it came from */
};

struct sw_conn {
	int fd; /* -1: free */
	bool is_port;
	bool dead;	     /* closed or failed: removed after this turn */
	int64_t accepted_ms; /* a client still to say hello */
	uint8_t mac[6];
	uint32_t addr;
	char name[SW_NAME_MAX + 1];
	struct sw_frame q[SW_QUEUE]; /* frames waiting for the socket */
	unsigned qhead, qcount;
	bool want_out; /* EPOLLOUT asked for */
	uint64_t rx, tx, dropped, spoofed;
};

struct sw_lease {
	bool used;
	char name[SW_NAME_MAX + 1];
	uint8_t mac[6];
	uint32_t addr;
	int conn;	    /* the port holding it, -1: reserved only */
	int64_t expires_ms; /* when reserved only */
};

struct net_switch {
	uint32_t net, self_addr; /* host byte order */
	unsigned prefix;
	uint8_t self_mac[6];
	int epfd; /* -1 when driven without a loop (tests) */
	struct sw_conn conns[SW_MAX_CONNS];
	struct sw_lease leases[SW_MAX_LEASES];
	uint8_t buf[SW_MAX_FRAME + 64];
	uint8_t reply[SW_REPLY_MAX + 64];
	struct kiln_log log;
	struct kiln_ratelimit limit;
	bool stop; /* a STOP hello came */
};

/* Sets up a switch for net/prefix (host byte order, prefix 16..29). epfd
 * -1: no event loop (sw_frame etc. only). 0 or -EINVAL. */
int sw_init(struct net_switch *sw, uint32_t net, unsigned prefix,
	    const struct kiln_log *log);
/* Frees queued frames and closes every connection. */
void sw_fini(struct net_switch *sw);

/* Reserves (or finds) the address of (name, mac) at now. 0 and *addr, or
 * -EEXIST (name held by another MAC), -ENOSPC (subnet or table full). */
int sw_lease(struct net_switch *sw, const char *name, const uint8_t mac[6],
	     int64_t now, uint32_t *addr);
/* Plugs connected fd in as a port for (name, mac): its index, and *addr;
 * -errno as sw_lease, or -EMFILE (no free slot). fd is the switch's then. */
int sw_port_add(struct net_switch *sw, int fd, const char *name,
		const uint8_t mac[6], int64_t now, uint32_t *addr);
/* Unplugs port i: closes it, frees its queue and its address. */
void sw_conn_remove(struct net_switch *sw, int i);
/* A frame port `from` sent: checked, then queued for (or sent to) its
 * destinations; the switch's own ARP/DNS answers go back to `from`. */
void sw_frame_in(struct net_switch *sw, int from, const uint8_t *frame,
		 size_t len);
/* Sends what port i has queued, until its socket is full. */
void sw_flush(struct net_switch *sw, int i);
/* Writes the members as lines "NAME ADDR MAC rx=N tx=N dropped=N" into
 * out; the number of members. */
unsigned sw_list(const struct net_switch *sw, char *out, size_t cap);

/* Serves listen_fd (a listening SEQPACKET socket) until *stop or a STOP
 * hello: 0, or -errno when the event loop itself fails. */
int sw_serve(struct net_switch *sw, int listen_fd, volatile sig_atomic_t *stop);

#endif
