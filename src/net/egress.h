/* SPDX-License-Identifier: MIT */
/*
 * Egress policy: the decision kiln makes on every Ethernet frame the guest
 * sends, before the user-mode NAT sees it. A pure function of the frame and
 * the posture, so every protocol (ARP, IPv4 with fragments, IPv6 with
 * extension headers, anything else) is decided here in one place.
 *
 * Postures:
 *   PUBLIC  the internet only: private (RFC 1918), loopback, link-local
 *           (169.254/16 with cloud metadata, fe80::/10), CGNAT 100.64/10,
 *           unique/site-local IPv6, documentation/benchmark and reserved
 *           ranges, multicast and broadcast, the NAT's own network (its
 *           host alias, the gateway, included) are denied; the NAT's DNS
 *           (port 53) is allowed
 *   ALL     everything
 *   NONE    nothing but the link's own housekeeping
 * ARP and IPv6 neighbour discovery (ICMPv6 133..136) are always allowed:
 * they never leave the virtual link. A frame that cannot be parsed is
 * denied.
 */
#ifndef KILN_NET_EGRESS_H
#define KILN_NET_EGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum egress_posture {
	EGRESS_PUBLIC = 0,
	EGRESS_ALL,
	EGRESS_NONE,
};

/* Why a frame was decided as it was (for counters and log lines). */
enum egress_verdict {
	EGRESS_ALLOW = 0,
	EGRESS_ALLOW_LINK,   /* ARP, neighbour discovery */
	EGRESS_ALLOW_DNS,    /* the NAT's resolver */
	EGRESS_ALLOW_RULE,   /* an --allow rule, or an allowed name's address */
	EGRESS_DENY_RULE,    /* a --deny rule */
	EGRESS_DENY_POSTURE, /* egress=none */
	EGRESS_DENY_ADDRESS, /* a non-public destination */
	EGRESS_DENY_MALFORMED, /* not a frame kiln can judge */
};

#define EGRESS_MAX_RULES 64

/* One --allow/--deny rule: a destination network, optionally a protocol
 * and a port range. "host:PORT" is the NAT's host alias (the gateway). */
struct egress_rule {
	bool allow;
	bool host;	/* the host alias, IPv4 and IPv6 */
	uint8_t family; /* 4 or 6 (unless host) */
	uint8_t addr[16];
	uint8_t prefix;
	uint8_t proto;		   /* 0: any, 6 TCP, 17 UDP */
	uint16_t port_lo, port_hi; /* 0, 0: any port */
};

#define EGRESS_MAX_LEARNED   256
#define EGRESS_LEARN_TTL_MAX 3600 /* seconds an answer keeps its address */

/* An address an allowed domain name resolved to, until expires_ms. */
struct egress_learned {
	uint8_t family;
	uint8_t addr[16];
	int64_t expires_ms; /* 0: free */
};

struct egress_policy {
	enum egress_posture posture;
	uint32_t dns4; /* the NAT's DNS address, host byte order */
	uint8_t dns6[16];
	uint32_t host4; /* the NAT's host alias (gateway), host byte order */
	uint8_t host6[16];
	/* checked in order before the posture; the first match decides */
	struct egress_rule rules[EGRESS_MAX_RULES];
	unsigned nrules;
	/* after the rules, before the posture: answers for --allow-domain
	 * names (judged at now_ms, which the caller keeps current) */
	struct egress_learned learned[EGRESS_MAX_LEARNED];
	int64_t now_ms;
};

/* Makes addr reachable for ttl seconds (at most EGRESS_LEARN_TTL_MAX) from
 * now_ms; only public addresses are learned (a name that answers with a
 * private or link-local address must not open it: DNS rebinding). False
 * when refused. */
bool egress_learn(struct egress_policy *p, int family, const uint8_t *addr,
		  uint32_t ttl, int64_t now_ms);

/* Builds an Ethernet/IP/UDP frame (checksummed) into out: from src:sport
 * to dst:dport, family 4 or 6, MACs as given. Its length, or 0 if it does
 * not fit in cap. */
size_t egress_build_udp(uint8_t *out, size_t cap, const uint8_t dst_mac[6],
			const uint8_t src_mac[6], int family,
			const uint8_t *src, uint16_t sport, const uint8_t *dst,
			uint16_t dport, const uint8_t *payload, size_t len);

/* Parses an IPv4 network "A.B.C.D/N" with min_prefix <= N <= max_prefix:
 * *addr the address as written (host byte order; host bits kept), *prefix
 * N. 0 or -EINVAL. */
int egress_net4_parse(const char *s, unsigned min_prefix, unsigned max_prefix,
		      uint32_t *addr, unsigned *prefix);

/* Parses "allow:SPEC;deny:SPEC;..." (SPEC: CIDR[:PORT[-PORT]][/tcp|/udp],
 * an IPv6 CIDR in brackets when it has a port, or host:PORT[-PORT]) and
 * appends the rules to p. 0 or -EINVAL (*bad points at the rule). */
int egress_rules_parse(struct egress_policy *p, const char *s,
		       const char **bad);
/* True when some rule allows reaching the host alias. */
bool egress_has_host_rule(const struct egress_policy *p);

/* "public", "all", "none" -> *out; -EINVAL otherwise. */
int egress_posture_parse(const char *s, enum egress_posture *out);
const char *egress_posture_name(enum egress_posture p);

/* Decides one guest frame (Ethernet II, no FCS) of len bytes. */
enum egress_verdict egress_check(const struct egress_policy *p,
				 const uint8_t *frame, size_t len);

static inline int egress_allowed(enum egress_verdict v)
{
	return v <= EGRESS_ALLOW_RULE;
}

/* For a denied frame: the answer that makes the guest's tools fail at once
 * (a TCP RST, else an ICMP/ICMPv6 "administratively prohibited") into out
 * (cap bytes, 1514 is enough). Its length, or 0 when nothing is answered
 * (a RST, an ICMP error, a later fragment, broadcast or multicast). */
size_t egress_reject(const uint8_t *frame, size_t len, uint8_t *out,
		     size_t cap);

/* A TCP/UDP packet's addresses and ports. */
struct egress_tuple {
	uint8_t family, proto; /* 4 or 6; 6 TCP, 17 UDP */
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
	size_t data_off, data_len; /* UDP: the payload within the frame */
};

/* The tuple of a TCP or UDP frame (its first fragment); *syn: a TCP SYN
 * without ACK. False for anything else. */
bool egress_tuple_of(const uint8_t *frame, size_t len, struct egress_tuple *t,
		     bool *syn);

/* "TCP 10.0.2.2:80", "UDP [fec0::3]:53", "ICMP 192.168.1.1", "ARP", ...
 * for log lines; the length written (truncated to cap). */
int egress_describe(const uint8_t *frame, size_t len, char *buf, size_t cap);

/* True when an IPv4 address (host byte order) is on the public internet. */
int egress_public4(uint32_t a);
/* True when an IPv6 address is on the public internet. */
int egress_public6(const uint8_t a[16]);

#endif
