/* SPDX-License-Identifier: MIT */
#include "dns.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#define MAX_POINTERS 16 /* compression jumps followed in one name */
#define MAX_CHAIN    8	/* CNAMEs followed from the question's name */

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Reads the name at *off into out (dotted, lower case); *off moves past it
 * in the message (not past what pointers led to). 0 or -EINVAL. */
static int read_name(const uint8_t *msg, size_t len, size_t *off, char *out,
		     bool allow_pointers)
{
	size_t pos = *off, n = 0;
	bool jumped = false;
	int jumps = 0;

	for (;;) {
		uint8_t l;

		if (pos >= len)
			return -EINVAL;
		l = msg[pos];
		if ((l & 0xc0) == 0xc0) {
			size_t target;

			if (!allow_pointers || pos + 1 >= len ||
			    ++jumps > MAX_POINTERS)
				return -EINVAL;
			target = (size_t)(l & 0x3f) << 8 | msg[pos + 1];
			/* only backwards: no loops, no forward references */
			if (target >= pos)
				return -EINVAL;
			if (!jumped)
				*off = pos + 2;
			jumped = true;
			pos = target;
			continue;
		}
		if (l & 0xc0)
			return -EINVAL; /* extended label types */
		if (l == 0) {
			if (!jumped)
				*off = pos + 1;
			out[n] = 0;
			return 0;
		}
		if (pos + 1 + l > len || n + (n ? 1 : 0) + l > DNS_NAME_MAX)
			return -EINVAL;
		if (n)
			out[n++] = '.';
		for (unsigned i = 0; i < l; i++) {
			unsigned char c = msg[pos + 1 + i];

			/* a name with '.' or NUL in a label would read as
			 * another name */
			if (c == '.' || c == 0)
				return -EINVAL;
			out[n++] = (char)tolower(c);
		}
		pos += 1 + l;
	}
}

int dns_parse_query(const uint8_t *msg, size_t len, struct dns_question *q)
{
	size_t off = DNS_HDR;

	if (len < DNS_HDR)
		return -EINVAL;
	/* QR 0, opcode QUERY, exactly one question */
	if ((msg[2] & 0x80) || (msg[2] & 0x78) || be16(msg + 4) != 1)
		return -EINVAL;
	q->id = be16(msg);
	if (read_name(msg, len, &off, q->name, false) < 0 || len - off < 4)
		return -EINVAL;
	q->qtype = be16(msg + off);
	q->qclass = be16(msg + off + 2);
	q->end = off + 4;
	return 0;
}

size_t dns_build_error(const uint8_t *query, const struct dns_question *q,
		       uint8_t rcode, uint8_t *out, size_t cap)
{
	if (q->end > cap || q->end < DNS_HDR)
		return 0;
	memcpy(out, query, q->end);
	out[2] = (uint8_t)(0x80 | (query[2] & 0x01)); /* QR, keep RD */
	out[3] = (uint8_t)(0x80 | (rcode & 0x0f));    /* RA, rcode */
	memset(out + 4, 0, 8);
	out[5] = 1; /* one question, no records */
	return q->end;
}

size_t dns_build_a(const uint8_t *query, const struct dns_question *q,
		   const uint8_t addr[4], uint32_t ttl, uint8_t *out,
		   size_t cap)
{
	size_t n = dns_build_error(query, q, 0, out, cap);
	uint8_t *r;

	if (!n || !addr || q->qtype != DNS_TYPE_A || q->qclass != 1)
		return n; /* NOERROR, no record: the name has no such type */
	if (n + 16 > cap)
		return 0;
	r = out + n;
	r[0] = 0xc0; /* the name: a pointer to the question's */
	r[1] = DNS_HDR;
	r[2] = 0, r[3] = DNS_TYPE_A;
	r[4] = 0, r[5] = 1; /* IN */
	r[6] = (uint8_t)(ttl >> 24), r[7] = (uint8_t)(ttl >> 16);
	r[8] = (uint8_t)(ttl >> 8), r[9] = (uint8_t)ttl;
	r[10] = 0, r[11] = 4;
	memcpy(r + 12, addr, 4);
	out[2] |= 0x04; /* AA: the switch is the authority for its members */
	out[7] = 1;	/* one answer */
	return n + 16;
}

static bool in_chain(char chain[][DNS_NAME_MAX + 1], int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(chain[i], name))
			return true;
	return false;
}

int dns_answer_addrs(const uint8_t *msg, size_t len, const char *name,
		     dns_addr_fn fn, void *opaque)
{
	char chain[MAX_CHAIN + 1][DNS_NAME_MAX + 1];
	char owner[DNS_NAME_MAX + 1], target[DNS_NAME_MAX + 1];
	unsigned qd, an;
	size_t off = DNS_HDR, first;
	int nchain = 1, found = 0;

	if (len < DNS_HDR || !(msg[2] & 0x80) || strlen(name) > DNS_NAME_MAX)
		return -EINVAL;
	strcpy(chain[0], name);
	qd = be16(msg + 4);
	an = be16(msg + 6);
	for (unsigned i = 0; i < qd; i++) {
		if (read_name(msg, len, &off, owner, true) < 0 || len - off < 4)
			return -EINVAL;
		off += 4;
	}
	first = off;
	/* twice: a CNAME may come after the records of its target */
	for (int pass = 0; pass < 2; pass++) {
		off = first;
		for (unsigned i = 0; i < an; i++) {
			uint16_t type, rdlen;
			uint32_t ttl;

			if (read_name(msg, len, &off, owner, true) < 0 ||
			    len - off < 10)
				return -EINVAL;
			type = be16(msg + off);
			ttl = (uint32_t)be16(msg + off + 4) << 16 |
			      be16(msg + off + 6);
			rdlen = be16(msg + off + 8);
			off += 10;
			if (len - off < rdlen)
				return -EINVAL;
			if (in_chain(chain, nchain, owner)) {
				if (type == DNS_TYPE_CNAME && pass == 0) {
					size_t t = off;

					if (read_name(msg, off + rdlen, &t,
						      target, true) < 0)
						return -EINVAL;
					if (nchain <= MAX_CHAIN &&
					    !in_chain(chain, nchain, target))
						strcpy(chain[nchain++], target);
				} else if (pass == 1 && type == DNS_TYPE_A &&
					   rdlen == 4) {
					fn(opaque, 4, msg + off, ttl);
					found++;
				} else if (pass == 1 && type == DNS_TYPE_AAAA &&
					   rdlen == 16) {
					fn(opaque, 6, msg + off, ttl);
					found++;
				}
			}
			off += rdlen;
		}
	}
	return found;
}

bool dns_name_match(const char *pattern, const char *name)
{
	size_t pl, nl;

	if (!strncmp(pattern, "*.", 2)) {
		pattern += 1; /* ".suffix" */
		pl = strlen(pattern);
		nl = strlen(name);
		return nl > pl && !strcasecmp(name + nl - pl, pattern);
	}
	return !strcasecmp(pattern, name);
}
