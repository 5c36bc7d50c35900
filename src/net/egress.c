/* SPDX-License-Identifier: MIT */
#include "egress.h"

#include <errno.h>
#include <string.h>

#define ETH_HLEN      14
#define ETHERTYPE_IP  0x0800
#define ETHERTYPE_ARP 0x0806
#define ETHERTYPE_IP6 0x86dd

#define PROTO_TCP    6
#define PROTO_UDP    17
#define PROTO_ICMP6  58
#define IP6_HOPOPTS  0
#define IP6_ROUTING  43
#define IP6_FRAGMENT 44
#define IP6_DSTOPTS  60
#define IP6_MAX_EXT  8 /* extension headers walked before giving up */

#define DNS_PORT 53

int egress_posture_parse(const char *s, enum egress_posture *out)
{
	if (!strcmp(s, "public"))
		*out = EGRESS_PUBLIC;
	else if (!strcmp(s, "all"))
		*out = EGRESS_ALL;
	else if (!strcmp(s, "none"))
		*out = EGRESS_NONE;
	else
		return -EINVAL;
	return 0;
}

const char *egress_posture_name(enum egress_posture p)
{
	switch (p) {
	case EGRESS_PUBLIC: return "public";
	case EGRESS_ALL: return "all";
	case EGRESS_NONE: return "none";
	}
	return "?";
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* Not on the public internet: special-purpose registries (RFC 6890 and
 * successors). */
static const struct {
	uint32_t net;
	unsigned bits;
} denied4[] = {
	{0x00000000, 8},  /* "this network" */
	{0x0a000000, 8},  /* RFC 1918 (and the NAT's 10.0.2.0/24) */
	{0x64400000, 10}, /* CGNAT */
	{0x7f000000, 8},  /* loopback */
	{0xa9fe0000, 16}, /* link-local, 169.254.169.254 metadata */
	{0xac100000, 12}, /* RFC 1918 */
	{0xc0000000, 24}, /* IETF protocol assignments */
	{0xc0000200, 24}, /* TEST-NET-1 */
	{0xc0586300, 24}, /* 6to4 relay anycast */
	{0xc0a80000, 16}, /* RFC 1918 */
	{0xc6120000, 15}, /* benchmarking */
	{0xc6336400, 24}, /* TEST-NET-2 */
	{0xcb007100, 24}, /* TEST-NET-3 */
	{0xe0000000, 4},  /* multicast */
	{0xf0000000, 4},  /* reserved, broadcast */
};

int egress_public4(uint32_t a)
{
	for (size_t i = 0; i < sizeof(denied4) / sizeof(denied4[0]); i++) {
		uint32_t mask = ~0u << (32 - denied4[i].bits);

		if ((a & mask) == denied4[i].net)
			return 0;
	}
	return 1;
}

int egress_public6(const uint8_t a[16])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
					   0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0,
					  0, 0,	   0,	 0,    0, 0};

	/* an IPv4 address in IPv6 clothes is judged as IPv4 */
	if (!memcmp(a, mapped, 12) || !memcmp(a, nat64, 12))
		return egress_public4(be32(a + 12));
	/* global unicast is 2000::/3; the rest (::, ::1, fc00::/7 unique
	 * local, fe80::/10 link-local, fec0::/10 site-local, ff00::/8
	 * multicast, 64:ff9b:1::/48, 100::/64) is not the internet */
	if ((a[0] & 0xe0) != 0x20)
		return 0;
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] < 0x02)
		return 0; /* 2001::/23: Teredo, ORCHID, benchmarking, ... */
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
		return 0;		  /* 2001:db8::/32 documentation */
	if (a[0] == 0x20 && a[1] == 0x02) /* 6to4: the embedded IPv4 */
		return egress_public4(be32(a + 2));
	return 1;
}

/* The destination port of a TCP/UDP header at l4 (len bytes), or -1. */
static int dst_port(uint8_t proto, const uint8_t *l4, size_t len)
{
	if ((proto != PROTO_TCP && proto != PROTO_UDP) || len < 4)
		return -1;
	return be16(l4 + 2);
}

static enum egress_verdict check_ip4(const struct egress_policy *p,
				     const uint8_t *ip, size_t len)
{
	size_t ihl, total;
	uint32_t dst;
	uint16_t frag;

	if (len < 20 || (ip[0] >> 4) != 4)
		return EGRESS_DENY_MALFORMED;
	ihl = (size_t)(ip[0] & 0xf) * 4;
	total = be16(ip + 2);
	if (ihl < 20 || total < ihl || total > len)
		return EGRESS_DENY_MALFORMED;
	dst = be32(ip + 16);
	frag = be16(ip + 6) & 0x1fff; /* offset: 0 in the first fragment */
	if (p->posture == EGRESS_NONE)
		return EGRESS_DENY_POSTURE;
	/* every fragment carries the destination, so every fragment is
	 * judged by it; only the first has the ports */
	if (dst == p->dns4 && frag == 0 &&
	    dst_port(ip[9], ip + ihl, total - ihl) == DNS_PORT)
		return EGRESS_ALLOW_DNS;
	return egress_public4(dst) ? EGRESS_ALLOW : EGRESS_DENY_ADDRESS;
}

static enum egress_verdict check_ip6(const struct egress_policy *p,
				     const uint8_t *ip, size_t len)
{
	const uint8_t *dst = ip + 24;
	size_t off = 40, end;
	uint8_t next;
	int first = 1;

	if (len < 40 || (ip[0] >> 4) != 6)
		return EGRESS_DENY_MALFORMED;
	end = 40 + (size_t)be16(ip + 4);
	if (end > len)
		return EGRESS_DENY_MALFORMED;
	next = ip[6];
	/* to the upper-layer header, through a bounded number of extension
	 * headers (a fragment other than the first has none) */
	for (int i = 0; i < IP6_MAX_EXT; i++) {
		if (next == IP6_FRAGMENT) {
			if (end - off < 8)
				return EGRESS_DENY_MALFORMED;
			if (be16(ip + off + 2) & 0xfff8)
				first = 0;
			next = ip[off];
			off += 8;
		} else if (next == IP6_HOPOPTS || next == IP6_ROUTING ||
			   next == IP6_DSTOPTS) {
			size_t hl;

			if (end - off < 8)
				return EGRESS_DENY_MALFORMED;
			hl = ((size_t)ip[off + 1] + 1) * 8;
			if (hl > end - off)
				return EGRESS_DENY_MALFORMED;
			next = ip[off];
			off += hl;
		} else {
			break;
		}
		if (!first)
			break;
	}
	if (first && (next == IP6_HOPOPTS || next == IP6_ROUTING ||
		      next == IP6_FRAGMENT || next == IP6_DSTOPTS))
		return EGRESS_DENY_MALFORMED; /* too many extension headers */
	/* neighbour discovery with the NAT's router never leaves the link */
	if (first && next == PROTO_ICMP6 && end - off >= 1 && ip[off] >= 133 &&
	    ip[off] <= 136)
		return EGRESS_ALLOW_LINK;
	if (p->posture == EGRESS_NONE)
		return EGRESS_DENY_POSTURE;
	if (!memcmp(dst, p->dns6, 16) && first &&
	    dst_port(next, ip + off, end - off) == DNS_PORT)
		return EGRESS_ALLOW_DNS;
	return egress_public6(dst) ? EGRESS_ALLOW : EGRESS_DENY_ADDRESS;
}

enum egress_verdict egress_check(const struct egress_policy *p,
				 const uint8_t *frame, size_t len)
{
	uint16_t type;

	if (p->posture == EGRESS_ALL)
		return EGRESS_ALLOW;
	if (len < ETH_HLEN)
		return EGRESS_DENY_MALFORMED;
	type = be16(frame + 12);
	switch (type) {
	case ETHERTYPE_ARP: return EGRESS_ALLOW_LINK;
	case ETHERTYPE_IP:
		return check_ip4(p, frame + ETH_HLEN, len - ETH_HLEN);
	case ETHERTYPE_IP6:
		return check_ip6(p, frame + ETH_HLEN, len - ETH_HLEN);
	default: return EGRESS_DENY_MALFORMED; /* VLAN tags, other L3 */
	}
}
