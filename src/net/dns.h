/* SPDX-License-Identifier: MIT */
/*
 * The few DNS message operations kiln's resolver proxy needs (RFC 1035),
 * on hostile input: a guest's query, an upstream server's answer. Names
 * are bounded (255 bytes, labels of 63), compression pointers are followed
 * a bounded number of times and only backwards, every count and length is
 * checked against the message. Pure functions, no allocation.
 */
#ifndef KILN_NET_DNS_H
#define KILN_NET_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_HDR		   12
#define DNS_NAME_MAX	   255 /* dotted, without the final dot */
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_REFUSED  5
#define DNS_TYPE_A	   1
#define DNS_TYPE_CNAME	   5
#define DNS_TYPE_AAAA	   28

struct dns_question {
	uint16_t id;
	char name[DNS_NAME_MAX + 1]; /* lower case, dotted, "" for the root */
	uint16_t qtype, qclass;
	size_t end; /* offset just past the question */
};

/* Parses a standard query with exactly one question. 0 or -EINVAL. */
int dns_parse_query(const uint8_t *msg, size_t len, struct dns_question *q);

/* An answer to query (its header and question, q->end bytes) with no
 * records and rcode (NXDOMAIN, REFUSED) into out; its length or 0. */
size_t dns_build_error(const uint8_t *query, const struct dns_question *q,
		       uint8_t rcode, uint8_t *out, size_t cap);

/* A NOERROR answer to query: one A record for addr (TTL ttl) when the
 * question is of type A and class IN, no record otherwise (or addr NULL).
 * Its length, or 0 if it does not fit in cap. */
size_t dns_build_a(const uint8_t *query, const struct dns_question *q,
		   const uint8_t addr[4], uint32_t ttl, uint8_t *out,
		   size_t cap);

/* Calls fn for each A/AAAA record of a response that belongs to name (or
 * to a name it is a CNAME of, within the same answer): family 4 or 6, the
 * address, its TTL. Returns the number of addresses or -EINVAL (a broken
 * message: fn may have been called for the records before the break). */
typedef void (*dns_addr_fn)(void *opaque, int family, const uint8_t *addr,
			    uint32_t ttl);
int dns_answer_addrs(const uint8_t *msg, size_t len, const char *name,
		     dns_addr_fn fn, void *opaque);

/* True when name matches pattern: equal (case-insensitive), or pattern is
 * "*.suffix" and name ends with ".suffix". */
bool dns_name_match(const char *pattern, const char *name);

#endif
