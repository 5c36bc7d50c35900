/* SPDX-License-Identifier: MIT */
#include "egress.h"

#include <errno.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
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

/* What the policy needs to know about one IP packet. */
struct flow {
	uint8_t family; /* 4, 6 */
	uint8_t dst[16];
	uint8_t proto;
	int port;   /* destination port, -1 if none (or not this fragment) */
	bool first; /* the first (or only) fragment: the L4 header is here */
};

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, net, whole))
		return false;
	return !rest || ((a[whole] ^ net[whole]) & (0xff00 >> rest)) == 0;
}

static bool rule_match(const struct egress_policy *p,
		       const struct egress_rule *r, const struct flow *f)
{
	if (r->host) {
		uint8_t h4[4] = {(uint8_t)(p->host4 >> 24),
				 (uint8_t)(p->host4 >> 16),
				 (uint8_t)(p->host4 >> 8), (uint8_t)p->host4};

		if (f->family == 4 ? memcmp(f->dst, h4, 4)
				   : memcmp(f->dst, p->host6, 16))
			return false;
	} else if (r->family != f->family ||
		   !prefix_match(f->dst, r->addr, r->prefix)) {
		return false;
	}
	if (r->proto && r->proto != f->proto)
		return false;
	/* a later fragment has no ports: its first fragment was judged
	 * with them, and without it the NAT never reassembles the rest */
	if (r->port_hi && f->first &&
	    (f->port < r->port_lo || f->port > r->port_hi))
		return false;
	if (r->port_hi && f->first && f->port < 0)
		return false;
	return true;
}

static enum egress_verdict decide(const struct egress_policy *p,
				  const struct flow *f)
{
	bool is_dns;

	for (unsigned i = 0; i < p->nrules; i++)
		if (rule_match(p, &p->rules[i], f))
			return p->rules[i].allow ? EGRESS_ALLOW_RULE
						 : EGRESS_DENY_RULE;
	for (unsigned i = 0; i < EGRESS_MAX_LEARNED; i++) {
		const struct egress_learned *l = &p->learned[i];

		if (l->expires_ms > p->now_ms && l->family == f->family &&
		    !memcmp(l->addr, f->dst, f->family == 4 ? 4 : 16))
			return EGRESS_ALLOW_RULE;
	}
	if (p->posture == EGRESS_NONE)
		return EGRESS_DENY_POSTURE;
	if (f->family == 4) {
		uint32_t d = be32(f->dst);

		is_dns = d == p->dns4;
		if (is_dns && f->first && f->port == DNS_PORT)
			return EGRESS_ALLOW_DNS;
		return egress_public4(d) ? EGRESS_ALLOW : EGRESS_DENY_ADDRESS;
	}
	is_dns = !memcmp(f->dst, p->dns6, 16);
	if (is_dns && f->first && f->port == DNS_PORT)
		return EGRESS_ALLOW_DNS;
	return egress_public6(f->dst) ? EGRESS_ALLOW : EGRESS_DENY_ADDRESS;
}

/* Parses an IPv4 packet into f; false if malformed. *l4 is the offset of
 * the L4 header. */
static bool parse_ip4(const uint8_t *ip, size_t len, struct flow *f, size_t *l4,
		      size_t *end)
{
	size_t ihl, total;

	if (len < 20 || (ip[0] >> 4) != 4)
		return false;
	ihl = (size_t)(ip[0] & 0xf) * 4;
	total = be16(ip + 2);
	if (ihl < 20 || total < ihl || total > len)
		return false;
	memset(f, 0, sizeof(*f));
	f->family = 4;
	memcpy(f->dst, ip + 16, 4);
	f->proto = ip[9];
	/* fragment offset 0: the first fragment, with the ports */
	f->first = (be16(ip + 6) & 0x1fff) == 0;
	f->port = f->first ? dst_port(f->proto, ip + ihl, total - ihl) : -1;
	*l4 = ihl;
	*end = total;
	return true;
}

/* Parses an IPv6 packet through a bounded number of extension headers. */
static bool parse_ip6(const uint8_t *ip, size_t len, struct flow *f, size_t *l4,
		      size_t *end)
{
	size_t off = 40, e;
	uint8_t next;

	if (len < 40 || (ip[0] >> 4) != 6)
		return false;
	e = 40 + (size_t)be16(ip + 4);
	if (e > len)
		return false;
	memset(f, 0, sizeof(*f));
	f->family = 6;
	memcpy(f->dst, ip + 24, 16);
	f->first = true;
	next = ip[6];
	for (int i = 0; i < IP6_MAX_EXT && f->first; i++) {
		if (next == IP6_FRAGMENT) {
			if (e - off < 8)
				return false;
			if (be16(ip + off + 2) & 0xfff8)
				f->first = false; /* no L4 header here */
			next = ip[off];
			off += 8;
		} else if (next == IP6_HOPOPTS || next == IP6_ROUTING ||
			   next == IP6_DSTOPTS) {
			size_t hl;

			if (e - off < 8)
				return false;
			hl = ((size_t)ip[off + 1] + 1) * 8;
			if (hl > e - off)
				return false;
			next = ip[off];
			off += hl;
		} else {
			break;
		}
	}
	if (f->first && (next == IP6_HOPOPTS || next == IP6_ROUTING ||
			 next == IP6_FRAGMENT || next == IP6_DSTOPTS))
		return false; /* more extension headers than kiln walks */
	f->proto = next;
	f->port = f->first ? dst_port(next, ip + off, e - off) : -1;
	*l4 = off;
	*end = e;
	return true;
}

static enum egress_verdict check_ip4(const struct egress_policy *p,
				     const uint8_t *ip, size_t len)
{
	struct flow f;
	size_t l4, end;

	if (!parse_ip4(ip, len, &f, &l4, &end))
		return EGRESS_DENY_MALFORMED;
	return decide(p, &f);
}

static enum egress_verdict check_ip6(const struct egress_policy *p,
				     const uint8_t *ip, size_t len)
{
	struct flow f;
	size_t l4, end;

	if (!parse_ip6(ip, len, &f, &l4, &end))
		return EGRESS_DENY_MALFORMED;
	/* neighbour discovery with the NAT's router never leaves the link */
	if (f.first && f.proto == PROTO_ICMP6 && end - l4 >= 1 &&
	    ip[l4] >= 133 && ip[l4] <= 136)
		return EGRESS_ALLOW_LINK;
	/* nor do multicast listener reports and queries (MLD, MLDv2) to a
	 * link-scope group: the kernel sends them as an interface comes up */
	if (f.first && f.proto == PROTO_ICMP6 && end - l4 >= 1 &&
	    ((ip[l4] >= 130 && ip[l4] <= 132) || ip[l4] == 143) &&
	    ip[24] == 0xff && (ip[25] & 0x0f) == 2)
		return EGRESS_ALLOW_LINK;
	return decide(p, &f);
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

bool egress_tuple_of(const uint8_t *frame, size_t len, struct egress_tuple *t,
		     bool *syn)
{
	const uint8_t *ip = frame + ETH_HLEN;
	struct flow f;
	size_t l4, end;
	uint16_t type;

	if (len < ETH_HLEN)
		return false;
	type = be16(frame + 12);
	memset(t, 0, sizeof(*t));
	if (type == ETHERTYPE_IP &&
	    parse_ip4(ip, len - ETH_HLEN, &f, &l4, &end)) {
		memcpy(t->src, ip + 12, 4);
		memcpy(t->dst, ip + 16, 4);
	} else if (type == ETHERTYPE_IP6 &&
		   parse_ip6(ip, len - ETH_HLEN, &f, &l4, &end)) {
		memcpy(t->src, ip + 8, 16);
		memcpy(t->dst, ip + 24, 16);
	} else {
		return false;
	}
	if (!f.first || (f.proto != PROTO_TCP && f.proto != PROTO_UDP) ||
	    end - l4 < (f.proto == PROTO_TCP ? 14u : 4u))
		return false;
	t->family = f.family;
	t->proto = f.proto;
	t->sport = be16(ip + l4);
	t->dport = be16(ip + l4 + 2);
	if (f.proto == PROTO_UDP && end - l4 >= 8) {
		size_t ulen = be16(ip + l4 + 4);

		/* the UDP length, within the IP packet */
		if (ulen >= 8 && ulen <= end - l4) {
			t->data_off = ETH_HLEN + l4 + 8;
			t->data_len = ulen - 8;
		}
	}
	*syn = f.proto == PROTO_TCP && (ip[l4 + 13] & 0x12) == 0x02;
	return true;
}

/* ---- rules ---- */

static int parse_ports(const char *s, struct egress_rule *r)
{
	char *end;
	unsigned long lo, hi;

	lo = strtoul(s, &end, 10);
	if (end == s || lo < 1 || lo > 65535)
		return -EINVAL;
	hi = lo;
	if (*end == '-') {
		s = end + 1;
		hi = strtoul(s, &end, 10);
		if (end == s || hi < lo || hi > 65535)
			return -EINVAL;
	}
	if (*end)
		return -EINVAL;
	r->port_lo = (uint16_t)lo;
	r->port_hi = (uint16_t)hi;
	return 0;
}

/* One SPEC (NUL-terminated, writable) into r. */
static int parse_spec(char *s, struct egress_rule *r)
{
	char *proto = strrchr(s, '/'), *port = NULL, *slash;
	unsigned long bits;

	/* a trailing /tcp or /udp (a prefix length is digits) */
	if (proto && (!strcmp(proto, "/tcp") || !strcmp(proto, "/udp"))) {
		r->proto = proto[1] == 't' ? 6 : 17;
		*proto = 0;
	}
	if (!strncmp(s, "host:", 5)) {
		r->host = true;
		return parse_ports(s + 5, r);
	}
	if (s[0] == '[') { /* [IPv6/N]:PORT */
		char *close = strchr(s, ']');

		if (!close)
			return -EINVAL;
		*close = 0;
		if (close[1] == ':')
			port = close + 2;
		else if (close[1])
			return -EINVAL;
		s++;
	} else if (strchr(s, '.')) { /* IPv4[/N][:PORT] */
		port = strchr(s, ':');
		if (port)
			*port++ = 0;
	}
	slash = strchr(s, '/');
	if (slash)
		*slash++ = 0;
	if (inet_pton(AF_INET, s, r->addr) == 1) {
		r->family = 4;
		bits = 32;
	} else if (inet_pton(AF_INET6, s, r->addr) == 1) {
		r->family = 6;
		bits = 128;
	} else {
		return -EINVAL;
	}
	if (slash) {
		char *end;
		unsigned long b = strtoul(slash, &end, 10);

		if (end == slash || *end || b > bits)
			return -EINVAL;
		bits = b;
	}
	r->prefix = (uint8_t)bits;
	/* host bits set would never match: say so instead */
	for (unsigned i = bits; i < (r->family == 4 ? 32u : 128u); i++)
		if (r->addr[i / 8] & (0x80 >> (i % 8)))
			return -EINVAL;
	return port ? parse_ports(port, r) : 0;
}

int egress_net4_parse(const char *s, unsigned min_prefix, unsigned max_prefix,
		      uint32_t *addr, unsigned *prefix)
{
	char text[16];
	const char *slash = s ? strchr(s, '/') : NULL;
	struct in_addr a;
	unsigned long p;
	char *end;

	if (!slash || (size_t)(slash - s) >= sizeof(text))
		return -EINVAL;
	memcpy(text, s, (size_t)(slash - s));
	text[slash - s] = 0;
	p = strtoul(slash + 1, &end, 10);
	if (inet_pton(AF_INET, text, &a) != 1 || *end || end == slash + 1 ||
	    p < min_prefix || p > max_prefix)
		return -EINVAL;
	*addr = ntohl(a.s_addr);
	*prefix = (unsigned)p;
	return 0;
}

int egress_rules_parse(struct egress_policy *p, const char *s, const char **bad)
{
	char item[128];

	*bad = NULL;
	while (*s) {
		const char *semi = strchr(s, ';');
		size_t n = semi ? (size_t)(semi - s) : strlen(s);
		struct egress_rule r = {0};
		char *spec;

		*bad = s;
		if (n == 0 || n >= sizeof(item) ||
		    p->nrules == EGRESS_MAX_RULES)
			return -EINVAL;
		memcpy(item, s, n);
		item[n] = 0;
		if (!strncmp(item, "allow:", 6)) {
			r.allow = true;
			spec = item + 6;
		} else if (!strncmp(item, "deny:", 5)) {
			spec = item + 5;
		} else {
			return -EINVAL;
		}
		if (parse_spec(spec, &r) < 0)
			return -EINVAL;
		p->rules[p->nrules++] = r;
		s += n;
		if (*s == ';')
			s++;
	}
	*bad = NULL;
	return 0;
}

bool egress_has_host_rule(const struct egress_policy *p)
{
	for (unsigned i = 0; i < p->nrules; i++)
		if (p->rules[i].host && p->rules[i].allow)
			return true;
	return false;
}

/* ---- answers to denied frames ---- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t acc)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		acc += be16(p + i);
	if (len & 1)
		acc += (uint32_t)p[len - 1] << 8;
	return acc;
}

static uint16_t fold(uint32_t acc)
{
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)~acc;
}

/* Checksum of an L4 segment with the pseudo-header of its IP header. */
static uint16_t l4_csum(int family, const uint8_t *iph, uint8_t proto,
			const uint8_t *seg, size_t len)
{
	uint32_t acc = 0;

	if (family == 4)
		acc = sum16(iph + 12, 8, 0);
	else
		acc = sum16(iph + 8, 32, 0);
	acc += proto + (uint32_t)len;
	return fold(sum16(seg, len, acc));
}

/* A TCP RST answering the segment at tcp (the original's addresses are in
 * oip); the reply's L4 goes to seg. Returns its length, 0 for a RST. */
static size_t make_rst(const uint8_t *tcp, size_t tlen, uint8_t *seg)
{
	uint8_t flags;
	size_t doff, payload;

	if (tlen < 20)
		return 0;
	flags = tcp[13];
	if (flags & 0x04) /* never answer a RST */
		return 0;
	doff = (size_t)(tcp[12] >> 4) * 4;
	payload = doff <= tlen ? tlen - doff : 0;
	memset(seg, 0, 20);
	memcpy(seg, tcp + 2, 2); /* ports swapped */
	memcpy(seg + 2, tcp, 2);
	if (flags & 0x10) { /* ACK: RST with the sequence they expect */
		memcpy(seg + 4, tcp + 8, 4);
		seg[13] = 0x04;
	} else {
		put32(seg + 8, be32(tcp + 4) + (uint32_t)payload +
				       ((flags & 0x02) ? 1 : 0) +
				       ((flags & 0x01) ? 1 : 0));
		seg[13] = 0x14; /* RST, ACK */
	}
	seg[12] = 5 << 4;
	return 20;
}

size_t egress_reject(const uint8_t *frame, size_t len, uint8_t *out, size_t cap)
{
	const uint8_t *ip = frame + ETH_HLEN;
	uint8_t *oip = out + ETH_HLEN, *seg;
	struct flow f;
	size_t l4, end, n;

	if (len < ETH_HLEN || cap < 1514 || (frame[0] & 1))
		return 0;	   /* not to a unicast MAC: nothing to answer */
	memcpy(out, frame + 6, 6); /* to the sender, from whom it addressed */
	memcpy(out + 6, frame, 6);
	memcpy(out + 12, frame + 12, 2);
	if (be16(frame + 12) == ETHERTYPE_IP) {
		if (!parse_ip4(ip, len - ETH_HLEN, &f, &l4, &end) || !f.first ||
		    (f.dst[0] & 0xf0) >= 0xe0)
			return 0; /* later fragments, multicast, broadcast */
		memset(oip, 0, 20);
		oip[0] = 0x45;
		put16(oip + 6, 0x4000); /* DF */
		oip[8] = 64;
		memcpy(oip + 12, ip + 16, 4); /* from the destination */
		memcpy(oip + 16, ip + 12, 4);
		seg = oip + 20;
		if (f.proto == PROTO_TCP) {
			n = make_rst(ip + l4, end - l4, seg);
			if (!n)
				return 0;
			oip[9] = PROTO_TCP;
		} else {
			/* ICMP errors and replies are never answered */
			if (f.proto == 1 && (end - l4 < 1 || ip[l4] != 8))
				return 0;
			/* destination unreachable, administratively
			 * prohibited, with the header + 8 bytes */
			n = 8 + (end < l4 + 8 ? end : l4 + 8);
			memset(seg, 0, 8);
			seg[0] = 3;
			seg[1] = 13;
			memcpy(seg + 8, ip, n - 8);
			put16(seg + 2, fold(sum16(seg, n, 0)));
			oip[9] = 1;
		}
		put16(oip + 2, (uint16_t)(20 + n));
		if (oip[9] == PROTO_TCP)
			put16(seg + 16, l4_csum(4, oip, PROTO_TCP, seg, n));
		put16(oip + 10, fold(sum16(oip, 20, 0)));
		return ETH_HLEN + 20 + n;
	}
	if (be16(frame + 12) == ETHERTYPE_IP6) {
		if (!parse_ip6(ip, len - ETH_HLEN, &f, &l4, &end) || !f.first ||
		    f.dst[0] == 0xff)
			return 0;
		memset(oip, 0, 40);
		oip[0] = 0x60;
		oip[7] = 64;
		memcpy(oip + 8, ip + 24, 16); /* from the destination */
		memcpy(oip + 24, ip + 8, 16);
		seg = oip + 40;
		if (f.proto == PROTO_TCP) {
			n = make_rst(ip + l4, end - l4, seg);
			if (!n)
				return 0;
			oip[6] = PROTO_TCP;
			put16(seg + 16, l4_csum(6, oip, PROTO_TCP, seg, n));
		} else {
			if (f.proto == PROTO_ICMP6 &&
			    (end - l4 < 1 || ip[l4] < 128))
				return 0; /* an ICMPv6 error */
			/* as much of the packet as the minimum MTU holds */
			n = end < 1280 - 48 ? end : 1280 - 48;
			memset(seg, 0, 8);
			seg[0] = 1; /* destination unreachable */
			seg[1] = 1; /* administratively prohibited */
			memcpy(seg + 8, ip, n);
			n += 8;
			oip[6] = PROTO_ICMP6;
			put16(seg + 2, l4_csum(6, oip, PROTO_ICMP6, seg, n));
		}
		put16(oip + 4, (uint16_t)n);
		return ETH_HLEN + 40 + n;
	}
	return 0;
}

bool egress_learn(struct egress_policy *p, int family, const uint8_t *addr,
		  uint32_t ttl, int64_t now_ms)
{
	struct egress_learned *slot = NULL;
	size_t alen = family == 4 ? 4 : 16;

	if (family == 4 ? !egress_public4(be32(addr)) : !egress_public6(addr))
		return false;
	if (ttl > EGRESS_LEARN_TTL_MAX)
		ttl = EGRESS_LEARN_TTL_MAX;
	if (ttl < 1)
		ttl = 1;
	for (unsigned i = 0; i < EGRESS_MAX_LEARNED; i++) {
		struct egress_learned *l = &p->learned[i];

		if (l->expires_ms > now_ms && l->family == family &&
		    !memcmp(l->addr, addr, alen)) {
			slot = l; /* the same address: refresh it */
			break;
		}
		/* else a free or expired slot, else the soonest to expire */
		if (!slot || l->expires_ms < slot->expires_ms)
			slot = l;
	}
	memset(slot, 0, sizeof(*slot));
	slot->family = (uint8_t)family;
	memcpy(slot->addr, addr, alen);
	slot->expires_ms = now_ms + (int64_t)ttl * 1000;
	return true;
}

size_t egress_build_udp(uint8_t *out, size_t cap, const uint8_t dst_mac[6],
			const uint8_t src_mac[6], int family,
			const uint8_t *src, uint16_t sport, const uint8_t *dst,
			uint16_t dport, const uint8_t *payload, size_t len)
{
	size_t iph = family == 4 ? 20 : 40;
	uint8_t *ip = out + ETH_HLEN, *udp = ip + iph;

	if (len > 65000 || ETH_HLEN + iph + 8 + len > cap)
		return 0;
	memcpy(out, dst_mac, 6);
	memcpy(out + 6, src_mac, 6);
	put16(out + 12, family == 4 ? ETHERTYPE_IP : ETHERTYPE_IP6);
	memset(ip, 0, iph);
	if (family == 4) {
		ip[0] = 0x45;
		put16(ip + 2, (uint16_t)(20 + 8 + len));
		ip[8] = 64;
		ip[9] = PROTO_UDP;
		memcpy(ip + 12, src, 4);
		memcpy(ip + 16, dst, 4);
		put16(ip + 10, fold(sum16(ip, 20, 0)));
	} else {
		ip[0] = 0x60;
		put16(ip + 4, (uint16_t)(8 + len));
		ip[6] = PROTO_UDP;
		ip[7] = 64;
		memcpy(ip + 8, src, 16);
		memcpy(ip + 24, dst, 16);
	}
	put16(udp, sport);
	put16(udp + 2, dport);
	put16(udp + 4, (uint16_t)(8 + len));
	put16(udp + 6, 0);
	memcpy(udp + 8, payload, len);
	{
		uint16_t c = l4_csum(family, ip, PROTO_UDP, udp, 8 + len);

		put16(udp + 6, c ? c : 0xffff); /* 0 means "none" in UDP */
	}
	return ETH_HLEN + iph + 8 + len;
}

int egress_describe(const uint8_t *frame, size_t len, char *buf, size_t cap)
{
	const uint8_t *ip = frame + ETH_HLEN;
	char addr[INET6_ADDRSTRLEN];
	const char *proto;
	struct flow f;
	size_t l4, end;
	bool ok;

	if (len < ETH_HLEN)
		return snprintf(buf, cap, "a runt frame");
	if (be16(frame + 12) == ETHERTYPE_ARP)
		return snprintf(buf, cap, "ARP");
	if (be16(frame + 12) == ETHERTYPE_IP)
		ok = parse_ip4(ip, len - ETH_HLEN, &f, &l4, &end);
	else if (be16(frame + 12) == ETHERTYPE_IP6)
		ok = parse_ip6(ip, len - ETH_HLEN, &f, &l4, &end);
	else
		return snprintf(buf, cap, "ethertype %#06x", be16(frame + 12));
	if (!ok)
		return snprintf(buf, cap, "a malformed IPv%c packet",
				be16(frame + 12) == ETHERTYPE_IP ? '4' : '6');
	inet_ntop(f.family == 4 ? AF_INET : AF_INET6, f.dst, addr,
		  sizeof(addr));
	proto = f.proto == PROTO_TCP	 ? "TCP"
		: f.proto == PROTO_UDP	 ? "UDP"
		: f.proto == 1		 ? "ICMP"
		: f.proto == PROTO_ICMP6 ? "ICMPv6"
					 : NULL;
	if (f.port >= 0)
		return snprintf(buf, cap,
				f.family == 4 ? "%s %s:%d" : "%s [%s]:%d",
				proto, addr, f.port);
	if (proto)
		return snprintf(buf, cap, "%s %s%s", proto, addr,
				f.first ? "" : " (fragment)");
	return snprintf(buf, cap, "protocol %u to %s", f.proto, addr);
}
