/* SPDX-License-Identifier: MIT */
/* kiln's DNS message parser on hand-made messages: queries, answers with
 * compression and CNAME chains, and hostile ones (pointer loops, forward
 * pointers, truncation, oversized names). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "net/dns.h"

/* Appends a name in wire form. */
static size_t put_name(uint8_t *p, const char *name)
{
	size_t n = 0;

	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);

		p[n++] = (uint8_t)l;
		memcpy(p + n, name, l);
		n += l;
		name += l + (dot ? 1 : 0);
	}
	p[n++] = 0;
	return n;
}

static size_t query(uint8_t *m, const char *name, uint16_t type)
{
	size_t n;

	memset(m, 0, 12);
	m[0] = 0x12, m[1] = 0x34;
	m[2] = 0x01; /* RD */
	m[5] = 1;
	n = 12 + put_name(m + 12, name);
	m[n++] = 0, m[n++] = (uint8_t)type;
	m[n++] = 0, m[n++] = 1;
	return n;
}

/* A record after the question: owner as a pointer to off, type, rdata. */
static size_t rr(uint8_t *p, uint16_t ptr, uint16_t type, uint32_t ttl,
		 const uint8_t *rdata, uint16_t rdlen)
{
	size_t n = 0;

	p[n++] = (uint8_t)(0xc0 | ptr >> 8), p[n++] = (uint8_t)ptr;
	p[n++] = (uint8_t)(type >> 8), p[n++] = (uint8_t)type;
	p[n++] = 0, p[n++] = 1;
	p[n++] = (uint8_t)(ttl >> 24), p[n++] = (uint8_t)(ttl >> 16);
	p[n++] = (uint8_t)(ttl >> 8), p[n++] = (uint8_t)ttl;
	p[n++] = (uint8_t)(rdlen >> 8), p[n++] = (uint8_t)rdlen;
	memcpy(p + n, rdata, rdlen);
	return n + rdlen;
}

struct seen {
	int n;
	int family[8];
	uint8_t addr[8][16];
	uint32_t ttl[8];
};

static void collect(void *opaque, int family, const uint8_t *addr, uint32_t ttl)
{
	struct seen *s = opaque;

	if (s->n < 8) {
		s->family[s->n] = family;
		memcpy(s->addr[s->n], addr, family == 4 ? 4 : 16);
		s->ttl[s->n] = ttl;
		s->n++;
	}
}

static void test_query(void **state)
{
	struct dns_question q;
	uint8_t m[512], out[512];
	size_t n, r;

	(void)state;
	n = query(m, "WWW.Example.com", DNS_TYPE_A);
	assert_int_equal(dns_parse_query(m, n, &q), 0);
	assert_string_equal(q.name, "www.example.com");
	assert_int_equal(q.qtype, DNS_TYPE_A);
	assert_int_equal(q.id, 0x1234);
	assert_int_equal(q.end, n);
	r = dns_build_error(m, &q, DNS_RCODE_NXDOMAIN, out, sizeof(out));
	assert_int_equal(r, n);
	assert_int_equal(out[2], 0x81); /* QR, RD */
	assert_int_equal(out[3], 0x83); /* RA, NXDOMAIN */
	assert_int_equal(out[5], 1);
	assert_int_equal(out[7], 0);
	/* refused: a response, two questions, a pointer in a query,
	 * truncation, a label with a dot */
	m[2] |= 0x80;
	assert_int_equal(dns_parse_query(m, n, &q), -EINVAL);
	m[2] &= 0x7f;
	m[5] = 2;
	assert_int_equal(dns_parse_query(m, n, &q), -EINVAL);
	m[5] = 1;
	assert_int_equal(dns_parse_query(m, n - 1, &q), -EINVAL);
	assert_int_equal(dns_parse_query(m, 11, &q), -EINVAL);
	m[12] = 0xc0;
	assert_int_equal(dns_parse_query(m, n, &q), -EINVAL);
	n = query(m, "a.b", 1);
	m[13] = '.';
	assert_int_equal(dns_parse_query(m, n, &q), -EINVAL);
}

static void test_long_names(void **state)
{
	struct dns_question q;
	uint8_t m[1024];
	char name[400];
	size_t n;

	(void)state;
	/* 4 labels of 63 = 255 bytes dotted: the longest name */
	memset(name, 'a', sizeof(name));
	name[63] = name[127] = name[191] = '.';
	name[254] = 0;
	n = query(m, name, 1);
	assert_int_equal(dns_parse_query(m, n, &q), 0);
	assert_int_equal(strlen(q.name), 254);
	name[254] = 'a';
	name[255] = '.';
	name[256] = 'b';
	name[257] = 0;
	n = query(m, name, 1);
	assert_int_equal(dns_parse_query(m, n, &q), -EINVAL);
	/* a label of 64 uses the reserved 0x40 bit */
	memset(name, 'x', 64);
	name[64] = 0;
	n = query(m, name, 1);
	assert_int_equal(dns_parse_query(m, n, &q), -EINVAL);
}

static void test_answers(void **state)
{
	static const uint8_t a1[4] = {93, 184, 216, 34}, a2[4] = {1, 2, 3, 4};
	static const uint8_t v6[16] = {0x26, 0x06, [15] = 1};
	uint8_t m[1024], cname[64];
	struct seen s = {0};
	size_t n, cn;

	(void)state;
	/* www.example.com CNAME edge.cdn.net; edge.cdn.net A a1, AAAA v6;
	 * other.org A a2 (not in the chain) */
	n = query(m, "www.example.com", 1);
	m[2] |= 0x80;
	m[7] = 4;
	cn = put_name(cname, "edge.cdn.net");
	n += rr(m + n, 12, DNS_TYPE_CNAME, 300, cname, (uint16_t)cn);
	{
		/* the target's own records: owner in full at this offset */
		size_t owner = n;

		memcpy(m + n, cname, cn);
		n += cn;
		m[n++] = 0, m[n++] = 1, m[n++] = 0, m[n++] = 1;
		m[n++] = 0, m[n++] = 0, m[n++] = 0, m[n++] = 60;
		m[n++] = 0, m[n++] = 4;
		memcpy(m + n, a1, 4);
		n += 4;
		n += rr(m + n, (uint16_t)owner, DNS_TYPE_AAAA, 30, v6, 16);
	}
	{
		uint8_t other[32];
		size_t on = put_name(other, "other.org");

		memcpy(m + n, other, on);
		n += on;
		m[n++] = 0, m[n++] = 1, m[n++] = 0, m[n++] = 1;
		m[n++] = 0, m[n++] = 0, m[n++] = 0, m[n++] = 60;
		m[n++] = 0, m[n++] = 4;
		memcpy(m + n, a2, 4);
		n += 4;
	}
	assert_int_equal(dns_answer_addrs(m, n, "www.example.com", collect, &s),
			 2);
	assert_int_equal(s.family[0], 4);
	assert_memory_equal(s.addr[0], a1, 4);
	assert_int_equal(s.ttl[0], 60);
	assert_int_equal(s.family[1], 6);
	assert_memory_equal(s.addr[1], v6, 16);
	/* truncated anywhere: an error, never a read past the end */
	for (size_t cut = 12; cut < n; cut++) {
		struct seen t = {0};
		int r = dns_answer_addrs(m, cut, "www.example.com", collect,
					 &t);

		assert_true(r == -EINVAL || r >= 0);
	}
}

static void test_hostile_pointers(void **state)
{
	uint8_t m[512];
	struct seen s = {0};
	size_t n;

	(void)state;
	n = query(m, "a.example", 1);
	m[2] |= 0x80;
	m[7] = 1;
	/* a record whose owner points at itself */
	m[n] = 0xc0;
	m[n + 1] = (uint8_t)n;
	memset(m + n + 2, 0, 10);
	assert_int_equal(dns_answer_addrs(m, n + 12, "a.example", collect, &s),
			 -EINVAL);
	/* a forward pointer */
	m[n + 1] = (uint8_t)(n + 4);
	assert_int_equal(dns_answer_addrs(m, n + 12, "a.example", collect, &s),
			 -EINVAL);
	/* two pointers that point at each other: the second is backwards,
	 * the first forward: refused at the first */
	m[12] = 0xc0;
	m[13] = 14;
	m[14] = 0xc0;
	m[15] = 12;
	assert_int_equal(dns_answer_addrs(m, n + 12, "a.example", collect, &s),
			 -EINVAL);
	/* an answer count far beyond the message */
	n = query(m, "a.example", 1);
	m[2] |= 0x80;
	m[6] = 0xff, m[7] = 0xff;
	assert_int_equal(dns_answer_addrs(m, n, "a.example", collect, &s),
			 -EINVAL);
	/* not a response */
	n = query(m, "a.example", 1);
	assert_int_equal(dns_answer_addrs(m, n, "a.example", collect, &s),
			 -EINVAL);
	assert_int_equal(s.n, 0);
}

static void test_match(void **state)
{
	(void)state;
	assert_true(dns_name_match("example.com", "EXAMPLE.com"));
	assert_false(dns_name_match("example.com", "www.example.com"));
	assert_true(dns_name_match("*.example.com", "www.example.com"));
	assert_true(dns_name_match("*.example.com", "a.b.example.com"));
	assert_false(dns_name_match("*.example.com", "example.com"));
	assert_false(dns_name_match("*.example.com", "badexample.com"));
	assert_false(dns_name_match("*.example.com", "example.com.evil"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_long_names),
		cmocka_unit_test(test_answers),
		cmocka_unit_test(test_hostile_pointers),
		cmocka_unit_test(test_match),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
