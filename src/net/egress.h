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
	EGRESS_ALLOW_LINK,     /* ARP, neighbour discovery */
	EGRESS_ALLOW_DNS,      /* the NAT's resolver */
	EGRESS_DENY_POSTURE,   /* egress=none */
	EGRESS_DENY_ADDRESS,   /* a non-public destination */
	EGRESS_DENY_MALFORMED, /* not a frame kiln can judge */
};

struct egress_policy {
	enum egress_posture posture;
	uint32_t dns4; /* the NAT's DNS address, host byte order */
	uint8_t dns6[16];
};

/* "public", "all", "none" -> *out; -EINVAL otherwise. */
int egress_posture_parse(const char *s, enum egress_posture *out);
const char *egress_posture_name(enum egress_posture p);

/* Decides one guest frame (Ethernet II, no FCS) of len bytes. */
enum egress_verdict egress_check(const struct egress_policy *p,
				 const uint8_t *frame, size_t len);

static inline int egress_allowed(enum egress_verdict v)
{
	return v <= EGRESS_ALLOW_DNS;
}

/* True when an IPv4 address (host byte order) is on the public internet. */
int egress_public4(uint32_t a);
/* True when an IPv6 address is on the public internet. */
int egress_public6(const uint8_t a[16]);

#endif
