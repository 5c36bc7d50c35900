/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: split virtqueues driven by a hostile driver. The input
 * is a small queue configuration followed by the first bytes of guest RAM,
 * where the rings live back to back (optionally displaced, misaligned or
 * outside RAM). The device side pops, copies, writes and pushes a bounded
 * number of times; it must never touch memory outside the fake RAM (ASan
 * watches the heap buffer's bounds), never hang, and every segment it
 * returns must lie inside RAM.
 *
 * Input: u8 log2(size), u8 flags, le16 last_avail_idx, le16 used_idx,
 * le16 desc/avail/used displacements, then a RAM image: copied to address 0,
 * or to the end of RAM so that ring bounds meet the end of RAM.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/virtqueue.h"

#define FAKE_RAM (64u << 10)
#define CFG_BYTES 12

#define FL_EVENT_IDX 0x01
#define FL_INDIRECT 0x02
#define FL_NOT_READY 0x04
#define FL_DISPLACE 0x08 /* apply the displacements to the ring addresses */
#define FL_CHECKED 0x10	 /* give up unless virtq_check_config passes */
#define FL_USED_HIGH 0x20 /* used ring far outside RAM */
#define FL_AT_END 0x40	 /* image (and rings) at the end of RAM */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* Every segment inside RAM, totals consistent: else a bug, so crash. */
static void check_chain(const struct virtq_chain *c, const uint8_t *ram)
{
	uint64_t out = 0, in = 0;

	if (c->n_out + c->n_in > VIRTQ_MAX_SEGS)
		__builtin_trap();
	for (unsigned i = 0; i < c->n_out + c->n_in; i++) {
		const struct iovec *v =
			i < c->n_out ? &c->out[i] : &c->in[i - c->n_out];
		uintptr_t b = (uintptr_t)v->iov_base;

		if (!v->iov_len || b < (uintptr_t)ram ||
		    v->iov_len > FAKE_RAM ||
		    b - (uintptr_t)ram > FAKE_RAM - v->iov_len)
			__builtin_trap();
		if (i < c->n_out)
			out += v->iov_len;
		else
			in += v->iov_len;
	}
	if (out != c->out_len || in != c->in_len)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *ram;
	static struct virtq_chain chain;
	static uint8_t scratch[512];
	struct guest_mem mem;
	struct virtq q;
	uint8_t flags;
	uint64_t base, avail;
	size_t n;
	unsigned rounds;

	if (!ram)
		ram = malloc(FAKE_RAM);
	if (!ram || size < CFG_BYTES)
		return 0;
	flags = data[1];
	n = size - CFG_BYTES < FAKE_RAM ? size - CFG_BYTES : FAKE_RAM;
	base = flags & FL_AT_END ? (FAKE_RAM - n) & ~15ull : 0;
	memset(ram, 0, FAKE_RAM);
	memcpy(ram + base, data + CFG_BYTES, n);
	guest_mem_init(&mem, ram, FAKE_RAM);

	memset(&q, 0, sizeof(q));
	q.mem = &mem;
	q.size = (uint16_t)(1u << (data[0] % 11));
	q.event_idx = flags & FL_EVENT_IDX;
	q.indirect = flags & FL_INDIRECT;
	q.ready = !(flags & FL_NOT_READY);
	q.last_avail_idx = get16(data + 2);
	q.used_idx = get16(data + 4);
	/* Rings back to back at the image, as a driver would lay them. */
	avail = base + 16ull * q.size;
	q.desc_gpa = base;
	q.avail_gpa = avail;
	q.used_gpa = (avail + 6 + 2ull * q.size + 3) & ~3ull;
	if (flags & FL_DISPLACE) {
		q.desc_gpa += get16(data + 6);
		q.avail_gpa += get16(data + 8);
		q.used_gpa += get16(data + 10);
	}
	if (flags & FL_USED_HIGH)
		q.used_gpa += 0xfffffffffff00000ull;
	if (virtq_check_config(&q, VIRTQ_MAX_SIZE) < 0 && (flags & FL_CHECKED))
		return 0;

	/* Bounded: a hostile ring gets at most this many turns. */
	rounds = 2u * q.size;
	for (unsigned i = 0; i < rounds; i++) {
		int rc = virtq_pop(&q, &chain);

		if (rc < 0) {
			if (!q.broken || virtq_push(&q, 0, 0) != -EINVAL)
				__builtin_trap();
			break;
		}
		if (rc == 0)
			break;
		check_chain(&chain, ram);
		virtq_chain_read(&chain, i, scratch, sizeof(scratch));
		/* Writing into the chain may rewrite the rings themselves, as
		 * a racing driver could. */
		virtq_chain_write(&chain, chain.in_len / 2, scratch,
				  sizeof(scratch));
		virtq_push(&q, chain.head,
			   (uint32_t)(chain.in_len < 512 ? chain.in_len : 512));
		virtq_should_notify(&q);
	}
	return 0;
}
