/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the egress policy's frame parser, which sees every
 * frame a guest transmits (Ethernet, ARP, IPv4 with options and fragments,
 * IPv6 with extension headers, TCP/UDP ports). Any bytes get a verdict
 * under every posture, without reading past the frame (it is copied to a
 * buffer of exactly its size, so ASan sees an over-read); egress=all
 * allows everything and egress=none never allows an IP packet. The answer
 * to a denied frame (RST / ICMP), its tuple and its log line are built
 * from the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/egress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct egress_policy p = {.posture = EGRESS_PUBLIC,
				  .dns4 = 0x0a000203,
				  .dns6 = {0xfe, 0xc0, [15] = 3}};
	uint8_t *f = malloc(size ? size : 1);
	enum egress_verdict v;

	if (!f)
		return 0;
	memcpy(f, data, size);
	v = egress_check(&p, f, size);
	if (v > EGRESS_DENY_MALFORMED)
		abort();
	p.posture = EGRESS_ALL;
	if (egress_check(&p, f, size) != EGRESS_ALLOW)
		abort();
	p.posture = EGRESS_NONE;
	v = egress_check(&p, f, size);
	if (v == EGRESS_ALLOW || v == EGRESS_ALLOW_DNS)
		abort();
	/* what kiln does with a denied frame, and its log line */
	{
		static uint8_t out[1514];
		struct egress_tuple t;
		char what[96];
		bool syn;
		size_t r = egress_reject(f, size, out, sizeof(out));

		if (r > sizeof(out))
			abort();
		if (egress_tuple_of(f, size, &t, &syn) &&
		    t.data_off + t.data_len > size)
			abort();
		if (egress_describe(f, size, what, sizeof(what)) < 0)
			abort();
	}
	free(f);
	return 0;
}
