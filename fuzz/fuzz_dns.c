/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: kiln's DNS message parser, which reads a guest's
 * queries and an upstream resolver's answers (compression pointers, CNAME
 * chains, counts and lengths that lie). Any bytes are parsed as a query
 * and as an answer for the query's name without reading past the message
 * (copied to a buffer of exactly its size) or looping; an NXDOMAIN built
 * from an accepted query parses back as a response to it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void count(void *opaque, int family, const uint8_t *addr, uint32_t ttl)
{
	(void)addr;
	(void)ttl;
	if (family != 4 && family != 6)
		abort();
	++*(int *)opaque;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_question q;
	uint8_t *m = malloc(size ? size : 1), out[4096];
	int n = 0, r;

	if (!m)
		return 0;
	memcpy(m, data, size);
	if (dns_parse_query(m, size, &q) == 0) {
		size_t len = dns_build_error(m, &q, DNS_RCODE_NXDOMAIN, out,
					     sizeof(out));

		if (strlen(q.name) > DNS_NAME_MAX || q.end > size)
			abort();
		if (len && dns_answer_addrs(out, len, q.name, count, &n) != 0)
			abort(); /* an error answer has no addresses */
		(void)dns_name_match("*.example.com", q.name);
	}
	r = dns_answer_addrs(m, size, "example.com", count, &n);
	if (r > 0 && r != n)
		abort();
	free(m);
	return 0;
}
