/* SPDX-License-Identifier: MIT */
/* The egress policy on hand-made frames: every posture, IPv4 with
 * fragments, IPv6 with extension headers and fragments, ARP/NDP, and
 * frames too short or lying about their lengths. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "net/egress.h"

static const struct egress_policy pub = {
	.posture = EGRESS_PUBLIC,
	.dns4 = 0x0a000203,
	.dns6 = {0xfe, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3},
};

static size_t eth(uint8_t *f, uint16_t type)
{
	memset(f, 0, 14);
	f[12] = (uint8_t)(type >> 8);
	f[13] = (uint8_t)type;
	return 14;
}

/* IPv4 header + 8 bytes of L4 (ports) at f+14; returns the frame length. */
static size_t ip4(uint8_t *f, uint32_t dst, uint8_t proto, uint16_t dport,
		  uint16_t frag)
{
	uint8_t *ip = f + eth(f, 0x0800);

	memset(ip, 0, 28);
	ip[0] = 0x45;
	ip[2] = 0;
	ip[3] = 28;
	ip[6] = (uint8_t)(frag >> 8);
	ip[7] = (uint8_t)frag;
	ip[8] = 64;
	ip[9] = proto;
	ip[12] = 10, ip[13] = 0, ip[14] = 2, ip[15] = 15;
	ip[16] = (uint8_t)(dst >> 24), ip[17] = (uint8_t)(dst >> 16);
	ip[18] = (uint8_t)(dst >> 8), ip[19] = (uint8_t)dst;
	ip[22] = (uint8_t)(dport >> 8), ip[23] = (uint8_t)dport;
	return 14 + 28;
}

static const uint8_t v6_public[16] = {0x26, 0x06, 0x47, 0, 0, 0, 0, 0,
				      0,    0,	  0,	0, 0, 0, 0, 1};

/* IPv6 header, extension headers exts[] (each 8 bytes; 44 = fragment with
 * offset frag_off), then 8 bytes of L4. */
static size_t ip6(uint8_t *f, const uint8_t dst[16], const uint8_t *exts,
		  int nexts, uint8_t proto, uint16_t dport, uint16_t frag_off)
{
	uint8_t *ip = f + eth(f, 0x86dd);
	size_t off = 40;
	size_t plen = (size_t)nexts * 8 + 8;

	memset(ip, 0, 40 + plen);
	ip[0] = 0x60;
	ip[4] = (uint8_t)(plen >> 8);
	ip[5] = (uint8_t)plen;
	ip[6] = nexts ? exts[0] : proto;
	ip[7] = 64;
	memcpy(ip + 24, dst, 16);
	for (int i = 0; i < nexts; i++) {
		ip[off] = i + 1 < nexts ? exts[i + 1] : proto;
		if (exts[i] == 44) {
			ip[off + 2] = (uint8_t)(frag_off >> 8);
			ip[off + 3] = (uint8_t)frag_off;
		} else {
			ip[off + 1] = 0; /* (0 + 1) * 8 bytes */
		}
		off += 8;
	}
	if (proto == 58) {
		ip[off] = (uint8_t)dport; /* the ICMPv6 type */
	} else {
		ip[off + 2] = (uint8_t)(dport >> 8);
		ip[off + 3] = (uint8_t)dport;
	}
	return 14 + 40 + plen;
}

static void test_public4(void **state)
{
	(void)state;
	assert_true(egress_public4(0x08080808));  /* 8.8.8.8 */
	assert_true(egress_public4(0x01010101));  /* 1.1.1.1 */
	assert_false(egress_public4(0x0a000202)); /* the NAT's host alias */
	assert_false(egress_public4(0x0a000203)); /* its DNS */
	assert_false(egress_public4(0xc0a80101)); /* 192.168.1.1 */
	assert_false(egress_public4(0xac1f0001)); /* 172.31.0.1 */
	assert_true(egress_public4(0xac200001));  /* 172.32.0.1 */
	assert_false(egress_public4(0xa9fea9fe)); /* 169.254.169.254 */
	assert_false(egress_public4(0x7f000001)); /* loopback */
	assert_false(egress_public4(0x64400001)); /* CGNAT */
	assert_true(egress_public4(0x64800001));  /* 100.128.0.1 */
	assert_false(egress_public4(0xe00000fb)); /* mDNS multicast */
	assert_false(egress_public4(0xffffffff)); /* broadcast */
	assert_false(egress_public4(0x00000000));
}

static void test_public6(void **state)
{
	uint8_t a[16] = {0};

	(void)state;
	assert_true(egress_public6(v6_public));
	assert_false(egress_public6(a)); /* :: */
	a[15] = 1;
	assert_false(egress_public6(a)); /* ::1 */
	a[0] = 0xfe, a[1] = 0x80;
	assert_false(egress_public6(a)); /* link-local */
	a[0] = 0xfe, a[1] = 0xc0;
	assert_false(egress_public6(a)); /* site-local (slirp's fec0::) */
	a[0] = 0xfd, a[1] = 0x00;
	assert_false(egress_public6(a)); /* ULA */
	a[0] = 0xff, a[1] = 0x02;
	assert_false(egress_public6(a)); /* multicast */
	memset(a, 0, 16);
	a[10] = a[11] = 0xff;
	a[12] = 10, a[13] = 0, a[14] = 2, a[15] = 2;
	assert_false(egress_public6(a)); /* ::ffff:10.0.2.2 */
	a[12] = 8, a[13] = 8, a[14] = 8, a[15] = 8;
	assert_true(egress_public6(a)); /* ::ffff:8.8.8.8 */
	memset(a, 0, 16);
	a[0] = 0x20, a[1] = 0x01, a[2] = 0x0d, a[3] = 0xb8;
	assert_false(egress_public6(a)); /* documentation */
	memset(a, 0, 16);
	a[0] = 0x20, a[1] = 0x02, a[2] = 192, a[3] = 168, a[4] = 0, a[5] = 1;
	assert_false(egress_public6(a)); /* 6to4 of a private address */
	memset(a, 0, 16);
	a[1] = 0x64, a[2] = 0xff, a[3] = 0x9b, a[12] = 127, a[15] = 1;
	assert_false(egress_public6(a)); /* NAT64 of loopback */
}

static void test_ip4_postures(void **state)
{
	struct egress_policy all = pub, none = pub;
	uint8_t f[128];
	size_t n;

	(void)state;
	all.posture = EGRESS_ALL;
	none.posture = EGRESS_NONE;
	n = ip4(f, 0x08080808, 6, 443, 0);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_ALLOW);
	assert_int_equal(egress_check(&none, f, n), EGRESS_DENY_POSTURE);
	n = ip4(f, 0x0a000202, 6, 80, 0); /* the host alias */
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_ADDRESS);
	assert_int_equal(egress_check(&all, f, n), EGRESS_ALLOW);
	n = ip4(f, 0xa9fea9fe, 6, 80, 0); /* metadata */
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_ADDRESS);
	n = ip4(f, 0x0a000203, 17, 53, 0); /* DNS */
	assert_int_equal(egress_check(&pub, f, n), EGRESS_ALLOW_DNS);
	n = ip4(f, 0x0a000203, 6, 53, 0);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_ALLOW_DNS);
	assert_int_equal(egress_check(&none, f, n), EGRESS_DENY_POSTURE);
	n = ip4(f, 0x0a000203, 6, 22, 0); /* the DNS address, another port */
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_ADDRESS);
	n = ip4(f, 0x0a000203, 1, 0, 0); /* ICMP to it */
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_ADDRESS);
	n = eth(f, 0x0806);
	memset(f + n, 0, 28);
	assert_int_equal(egress_check(&none, f, n + 28), EGRESS_ALLOW_LINK);
}

static void test_ip4_fragments(void **state)
{
	uint8_t f[128];
	size_t n;

	(void)state;
	/* a later fragment to a private address: its header has the
	 * destination, so it is denied like the first */
	n = ip4(f, 0xc0a80001, 17, 0, 185);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_ADDRESS);
	n = ip4(f, 0x08080808, 17, 0, 185);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_ALLOW);
	/* a later fragment to the DNS address has no port: not DNS */
	n = ip4(f, 0x0a000203, 17, 53, 185);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_ADDRESS);
	/* more-fragments set, offset 0: the first, judged with its port */
	n = ip4(f, 0x0a000203, 17, 53, 0x2000);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_ALLOW_DNS);
}

static void test_ip6(void **state)
{
	static const uint8_t hop_frag[] = {0, 44};
	static const uint8_t frag[] = {44};
	static const uint8_t many[] = {60, 60, 60, 60, 60, 60, 60, 60, 60};
	uint8_t f[256], gw[16] = {0xfe, 0xc0, [15] = 2}, mc[16] = {0xff, 2};
	size_t n;

	(void)state;
	n = ip6(f, v6_public, NULL, 0, 6, 443, 0);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_ALLOW);
	n = ip6(f, gw, NULL, 0, 6, 80, 0);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_ADDRESS);
	n = ip6(f, pub.dns6, NULL, 0, 17, 53, 0);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_ALLOW_DNS);
	/* DNS behind extension headers is still DNS */
	n = ip6(f, pub.dns6, hop_frag, 2, 17, 53, 0);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_ALLOW_DNS);
	/* a later fragment to the gateway: denied by its address */
	n = ip6(f, gw, frag, 1, 17, 53, 0x100);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_ADDRESS);
	n = ip6(f, v6_public, frag, 1, 17, 0, 0x100);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_ALLOW);
	/* neighbour solicitation to a solicited-node multicast address */
	n = ip6(f, mc, NULL, 0, 58, 135, 0);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_ALLOW_LINK);
	/* an MLDv2 report behind hop-by-hop options to ff02::16: link-local
	 * housekeeping; the same to a global-scope group is not */
	n = ip6(f, mc, hop_frag, 1, 58, 143, 0);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_ALLOW_LINK);
	{
		uint8_t global_mc[16] = {0xff, 0x0e, [15] = 1};

		n = ip6(f, global_mc, hop_frag, 1, 58, 143, 0);
		assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_ADDRESS);
	}
	/* an echo request to multicast is not housekeeping */
	n = ip6(f, mc, NULL, 0, 58, 128, 0);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_ADDRESS);
	/* more extension headers than kiln walks: refused, not guessed */
	n = ip6(f, v6_public, many, 9, 6, 443, 0);
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_MALFORMED);
}

static void test_malformed(void **state)
{
	uint8_t f[128] = {0};
	size_t n;

	(void)state;
	assert_int_equal(egress_check(&pub, f, 0), EGRESS_DENY_MALFORMED);
	assert_int_equal(egress_check(&pub, f, 13), EGRESS_DENY_MALFORMED);
	n = ip4(f, 0x08080808, 6, 443, 0);
	/* total length beyond the frame */
	f[14 + 3] = 200;
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_MALFORMED);
	n = ip4(f, 0x08080808, 6, 443, 0);
	f[14] = 0x44; /* IHL 4 */
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_MALFORMED);
	n = ip4(f, 0x08080808, 6, 443, 0);
	assert_int_equal(egress_check(&pub, f, 14 + 19), EGRESS_DENY_MALFORMED);
	f[14] = 0x65; /* IPv6 version under the IPv4 type */
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_MALFORMED);
	n = ip6(f, v6_public, NULL, 0, 6, 443, 0);
	f[14 + 5] = 200; /* payload beyond the frame */
	assert_int_equal(egress_check(&pub, f, n), EGRESS_DENY_MALFORMED);
	n = eth(f, 0x8100); /* a VLAN tag */
	assert_int_equal(egress_check(&pub, f, 60), EGRESS_DENY_MALFORMED);
	(void)n;
}

static void test_rules(void **state)
{
	struct egress_policy p = pub;
	const char *bad;
	uint8_t f[256], fd[16] = {0xfd, 0x12, [15] = 5};
	size_t n;

	(void)state;
	p.host4 = 0x0a000202;
	assert_int_equal(egress_rules_parse(&p,
					    "allow:10.1.2.0/24:80/tcp;"
					    "deny:8.8.8.8;allow:host:8080-8081;"
					    "allow:[fd00::/8]:53/udp;"
					    "allow:192.168.7.7",
					    &bad),
			 0);
	assert_int_equal(p.nrules, 5);
	assert_true(egress_has_host_rule(&p));
	n = ip4(f, 0x0a010203, 6, 80, 0);
	assert_int_equal(egress_check(&p, f, n), EGRESS_ALLOW_RULE);
	n = ip4(f, 0x0a010203, 6, 81, 0);
	assert_int_equal(egress_check(&p, f, n), EGRESS_DENY_ADDRESS);
	n = ip4(f, 0x0a010203, 17, 80, 0);
	assert_int_equal(egress_check(&p, f, n), EGRESS_DENY_ADDRESS);
	/* a later fragment to an allowed network: its first was judged */
	n = ip4(f, 0x0a010203, 6, 0, 185);
	assert_int_equal(egress_check(&p, f, n), EGRESS_ALLOW_RULE);
	n = ip4(f, 0x08080808, 6, 443, 0);
	assert_int_equal(egress_check(&p, f, n), EGRESS_DENY_RULE);
	n = ip4(f, 0x0a000202, 6, 8081, 0);
	assert_int_equal(egress_check(&p, f, n), EGRESS_ALLOW_RULE);
	n = ip4(f, 0x0a000202, 6, 8082, 0);
	assert_int_equal(egress_check(&p, f, n), EGRESS_DENY_ADDRESS);
	n = ip6(f, fd, NULL, 0, 17, 53, 0);
	assert_int_equal(egress_check(&p, f, n), EGRESS_ALLOW_RULE);
	n = ip6(f, fd, NULL, 0, 6, 53, 0);
	assert_int_equal(egress_check(&p, f, n), EGRESS_DENY_ADDRESS);
	/* rules on top of egress=none */
	p.posture = EGRESS_NONE;
	n = ip4(f, 0xc0a80707, 1, 0, 0);
	assert_int_equal(egress_check(&p, f, n), EGRESS_ALLOW_RULE);
	n = ip4(f, 0x01010101, 6, 443, 0);
	assert_int_equal(egress_check(&p, f, n), EGRESS_DENY_POSTURE);

	/* what is refused, and where */
	static const char *const refused[] = {"permit:1.2.3.4",
					      "allow:",
					      "allow:1.2.3.4/33",
					      "allow:1.2.3.4:0",
					      "allow:1.2.3.4:70000",
					      "allow:1.2.3.0/16",
					      "allow:host:",
					      "allow:[fd00::/8",
					      "allow:fd00::/8:53",
					      "allow:1.2.3.4:80-70",
					      "allow:1.2.3.4;;deny:5.6.7.8",
					      "allow:nonsense"};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		struct egress_policy q = pub;

		assert_int_equal(egress_rules_parse(&q, refused[i], &bad),
				 -EINVAL);
		assert_non_null(bad);
	}
}

static uint16_t csum(const uint8_t *p, size_t len, uint32_t acc)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		acc += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		acc += (uint32_t)p[len - 1] << 8;
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)acc;
}

static void test_reject(void **state)
{
	uint8_t f[256], out[1514], mc[16] = {0xff, 2};
	size_t n, r;

	(void)state;
	/* a SYN to a denied address: a RST+ACK from it, acking the SYN */
	n = ip4(f, 0xc0a80101, 6, 80, 0);
	memset(f + n, 0, 12); /* a whole 20-byte TCP header */
	f[14 + 3] = 40;
	n = 14 + 40;
	f[14 + 20 + 4] = 0, f[14 + 20 + 5] = 0, f[14 + 20 + 6] = 0x10,
		    f[14 + 20 + 7] = 0; /* seq 0x1000 */
	f[14 + 20 + 12] = 5 << 4;
	f[14 + 20 + 13] = 0x02; /* SYN */
	f[0] = 0x52;		/* to the gateway's MAC, from the guest's */
	f[6] = 0x54;
	r = egress_reject(f, n, out, sizeof(out));
	assert_int_equal(r, 14 + 40);
	assert_int_equal(out[0], 0x54);
	assert_int_equal(out[6], 0x52);
	assert_memory_equal(out + 14 + 12, f + 14 + 16, 4); /* src: dst */
	assert_int_equal(out[14 + 20 + 13], 0x14);	    /* RST ACK */
	assert_int_equal(out[14 + 20 + 8 + 2], 0x10);	    /* ack 0x1001 */
	assert_int_equal(out[14 + 20 + 8 + 3], 0x01);
	assert_int_equal(out[14 + 20 + 2], f[14 + 20 + 0]); /* ports swap */
	assert_int_equal(csum(out + 14, 20, 0), 0xffff);
	{
		uint32_t ph = 6 + 20;

		ph += csum(out + 14 + 12, 8, 0);
		assert_int_equal(csum(out + 14 + 20, 20, ph), 0xffff);
	}
	/* a RST is never answered */
	f[14 + 20 + 13] = 0x04;
	assert_int_equal(egress_reject(f, n, out, sizeof(out)), 0);
	/* UDP: ICMP administratively prohibited, quoting the header */
	n = ip4(f, 0xc0a80101, 17, 53, 0);
	r = egress_reject(f, n, out, sizeof(out));
	assert_int_equal(r, 14 + 20 + 8 + 28);
	assert_int_equal(out[14 + 9], 1);
	assert_int_equal(out[14 + 20], 3);
	assert_int_equal(out[14 + 20 + 1], 13);
	assert_memory_equal(out + 14 + 28, f + 14, 28);
	assert_int_equal(csum(out + 14 + 20, 8 + 28, 0), 0xffff);
	/* ICMP errors, later fragments, broadcast: silence */
	n = ip4(f, 0xc0a80101, 1, 0, 0);
	f[14 + 20] = 3;
	assert_int_equal(egress_reject(f, n, out, sizeof(out)), 0);
	n = ip4(f, 0xc0a80101, 17, 53, 185);
	assert_int_equal(egress_reject(f, n, out, sizeof(out)), 0);
	n = ip4(f, 0xffffffff, 17, 67, 0);
	assert_int_equal(egress_reject(f, n, out, sizeof(out)), 0);
	/* IPv6 UDP: ICMPv6 destination unreachable, checksummed */
	{
		uint8_t gw[16] = {0xfe, 0xc0, [15] = 2};
		uint32_t ph;

		n = ip6(f, gw, NULL, 0, 17, 80, 0);
		r = egress_reject(f, n, out, sizeof(out));
		assert_int_equal(r, 14 + 40 + 8 + (n - 14));
		assert_int_equal(out[14 + 6], 58);
		assert_int_equal(out[14 + 40], 1);
		assert_int_equal(out[14 + 40 + 1], 1);
		ph = 58 + (uint32_t)(r - 14 - 40);
		ph += csum(out + 14 + 8, 32, 0);
		assert_int_equal(csum(out + 14 + 40, r - 14 - 40, ph), 0xffff);
		n = ip6(f, mc, NULL, 0, 17, 80, 0);
		assert_int_equal(egress_reject(f, n, out, sizeof(out)), 0);
	}
}

static void test_parse(void **state)
{
	enum egress_posture p;

	(void)state;
	assert_int_equal(egress_posture_parse("public", &p), 0);
	assert_int_equal(p, EGRESS_PUBLIC);
	assert_int_equal(egress_posture_parse("none", &p), 0);
	assert_int_equal(p, EGRESS_NONE);
	assert_int_equal(egress_posture_parse("all", &p), 0);
	assert_string_equal(egress_posture_name(p), "all");
	assert_int_equal(egress_posture_parse("some", &p), -22);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_public4),
		cmocka_unit_test(test_public6),
		cmocka_unit_test(test_ip4_postures),
		cmocka_unit_test(test_ip4_fragments),
		cmocka_unit_test(test_ip6),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_reject),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
