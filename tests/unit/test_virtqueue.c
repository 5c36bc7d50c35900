/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues against a hostile driver: rings are built by hand in fake
 * guest RAM, well-formed and malformed, and the device side must take the
 * good ones apart correctly and refuse the bad ones without touching memory
 * outside RAM. Also the virtio_dev helpers, with a fake transport.
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_driver.h"
#include "mem/guest_mem.h"
#include "virtio/virtio.h"
#include "virtio/virtqueue.h"

#define RAM_SIZE (1u << 20)
#define DESC	 0x1000u
#define AVAIL	 0x2000u
#define USED	 0x3000u
#define BUF	 0x10000u
#define INDIR	 0x20000u
#define QSZ	 8

#define F_NEXT	   VIRTQ_DESC_F_NEXT
#define F_WRITE	   VIRTQ_DESC_F_WRITE
#define F_INDIRECT VIRTQ_DESC_F_INDIRECT

struct fx {
	uint8_t *ram;
	struct guest_mem mem;
	struct virtq q;
	struct virtq_chain *c;
	struct fake_vq drv; /* the driver's side of q */
};

static void wr16(struct fx *f, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	memcpy(f->ram + gpa, &v, sizeof(v));
}

static uint16_t rd16(struct fx *f, uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, f->ram + gpa, sizeof(v));
	return le16toh(v);
}

static uint32_t rd32(struct fx *f, uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, f->ram + gpa, sizeof(v));
	return le32toh(v);
}

static void desc(struct fx *f, unsigned i, uint64_t addr, uint32_t len,
		 uint16_t flags, uint16_t next)
{
	fake_vq_desc(&f->drv, (uint16_t)i, addr, len, flags, next);
}

/* Driver side: offers the chain at head. */
static void avail_put(struct fx *f, uint16_t head)
{
	fake_vq_publish(&f->drv, head);
}

static void set_avail_idx(struct fx *f, uint16_t idx)
{
	f->drv.avail_idx = idx;
	wr16(f, AVAIL + 2, idx);
}

static uint64_t used_event_gpa(struct fx *f)
{
	return AVAIL + 4 + 2ull * f->q.size;
}

static uint64_t avail_event_gpa(struct fx *f)
{
	return USED + 4 + 8ull * f->q.size;
}

static void *gpa_ptr(struct fx *f, uint64_t gpa)
{
	return f->ram + gpa;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->ram = calloc(1, RAM_SIZE);
	f->c = calloc(1, sizeof(*f->c));
	if (!f->ram || !f->c) {
		free(f->ram);
		free(f->c);
		free(f);
		return -1;
	}
	guest_mem_init(&f->mem, f->ram, RAM_SIZE);
	f->q.mem = &f->mem;
	f->q.size = QSZ;
	f->q.desc_gpa = DESC;
	f->q.avail_gpa = AVAIL;
	f->q.used_gpa = USED;
	f->q.ready = true;
	f->drv = (struct fake_vq){.ram = f->ram,
				  .desc_gpa = DESC,
				  .avail_gpa = AVAIL,
				  .used_gpa = USED,
				  .size = QSZ};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	free(f->ram);
	free(f->c);
	free(f);
	return 0;
}

static void expect_broken(struct fx *f)
{
	assert_int_equal(virtq_pop(&f->q, f->c), -EINVAL);
	assert_true(f->q.broken);
}

/* --- well-formed chains --- */

static void test_empty(void **state)
{
	struct fx *f = *state;

	assert_int_equal(virtq_pop(&f->q, f->c), 0);
	assert_false(f->q.broken);
	assert_int_equal(f->q.last_avail_idx, 0);
}

static void test_not_ready(void **state)
{
	struct fx *f = *state;

	desc(f, 0, BUF, 16, 0, 0);
	avail_put(f, 0);
	f->q.ready = false;
	assert_int_equal(virtq_pop(&f->q, f->c), 0);
	assert_int_equal(f->q.last_avail_idx, 0);
}

static void test_single(void **state)
{
	struct fx *f = *state;

	desc(f, 3, BUF, 100, 0, 0);
	avail_put(f, 3);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->head, 3);
	assert_int_equal(f->c->n_out, 1);
	assert_int_equal(f->c->n_in, 0);
	assert_int_equal(f->c->out_len, 100);
	assert_int_equal(f->c->in_len, 0);
	assert_ptr_equal(f->c->out[0].iov_base, gpa_ptr(f, BUF));
	assert_int_equal(f->c->out[0].iov_len, 100);
	assert_int_equal(f->q.last_avail_idx, 1);
	assert_int_equal(virtq_pop(&f->q, f->c), 0);
}

static void test_multi(void **state)
{
	struct fx *f = *state;

	/* Scattered order in the table: 5 -> 1 -> 7 -> 0. */
	desc(f, 5, BUF, 10, F_NEXT, 1);
	desc(f, 1, BUF + 0x100, 20, F_NEXT, 7);
	desc(f, 7, BUF + 0x200, 30, F_NEXT | F_WRITE, 0);
	desc(f, 0, BUF + 0x300, 40, F_WRITE, 6);
	desc(f, 2, BUF + 0x400, 1, 0, 0);
	avail_put(f, 5);
	avail_put(f, 2);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->head, 5);
	assert_int_equal(f->c->n_out, 2);
	assert_int_equal(f->c->n_in, 2);
	assert_int_equal(f->c->out_len, 30);
	assert_int_equal(f->c->in_len, 70);
	assert_ptr_equal(f->c->out[0].iov_base, gpa_ptr(f, BUF));
	assert_ptr_equal(f->c->out[1].iov_base, gpa_ptr(f, BUF + 0x100));
	assert_ptr_equal(f->c->in[0].iov_base, gpa_ptr(f, BUF + 0x200));
	assert_int_equal(f->c->in[0].iov_len, 30);
	assert_ptr_equal(f->c->in[1].iov_base, gpa_ptr(f, BUF + 0x300));
	assert_int_equal(f->c->in[1].iov_len, 40);
	/* The next pop starts from a clean chain. */
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->head, 2);
	assert_int_equal(f->c->n_out, 1);
	assert_int_equal(f->c->n_in, 0);
	assert_int_equal(f->c->out_len, 1);
	assert_int_equal(f->c->in_len, 0);
}

/* A notification's batch stops at its budget; outside a batch, and in
 * the next one, the rest is still there. */
static void test_batch_budget(void **state)
{
	struct fx *f = *state;

	for (unsigned i = 0; i < 5; i++) {
		desc(f, i, BUF + i, 1, 0, 0);
		avail_put(f, (uint16_t)i);
	}
	virtq_begin_batch(&f->q, 2);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(virtq_pop(&f->q, f->c), 0);
	assert_true(virtq_end_batch(&f->q));
	virtq_begin_batch(&f->q, 2);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->head, 2);
	assert_false(virtq_end_batch(&f->q)); /* budget left: not cut */
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->head, 4);
	virtq_begin_batch(&f->q, 2);
	assert_int_equal(virtq_pop(&f->q, f->c), 0); /* empty, not cut */
	assert_false(virtq_end_batch(&f->q));
}

static void test_in_only(void **state)
{
	struct fx *f = *state;

	desc(f, 0, BUF, 8, F_WRITE | F_NEXT, 1);
	desc(f, 1, BUF + 8, 8, F_WRITE, 0);
	avail_put(f, 0);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->n_out, 0);
	assert_int_equal(f->c->n_in, 2);
	assert_int_equal(f->c->in_len, 16);
}

static void test_wraparound(void **state)
{
	struct fx *f = *state;

	f->q.last_avail_idx = 65534;
	f->q.used_idx = 65534;
	set_avail_idx(f, 65534);
	for (unsigned i = 0; i < 4; i++) {
		desc(f, i, BUF + 0x100 * i, 4, 0, 0);
		avail_put(f, (uint16_t)i);
	}
	assert_int_equal(f->drv.avail_idx, 2);
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(virtq_pop(&f->q, f->c), 1);
		assert_int_equal(f->c->head, i);
		assert_int_equal(virtq_push(&f->q, f->c->head, 0), 0);
	}
	assert_int_equal(virtq_pop(&f->q, f->c), 0);
	assert_int_equal(f->q.last_avail_idx, 2);
	assert_int_equal(f->q.used_idx, 2);
	assert_int_equal(rd16(f, USED + 2), 2);
	/* 65534 % 8 == 6: used elements 6, 7, 0, 1. */
	assert_int_equal(rd32(f, USED + 4 + 8 * 6), 0);
	assert_int_equal(rd32(f, USED + 4 + 8 * 7), 1);
	assert_int_equal(rd32(f, USED + 4 + 8 * 0), 2);
	assert_int_equal(rd32(f, USED + 4 + 8 * 1), 3);
}

static void test_full_ring(void **state)
{
	struct fx *f = *state;

	/* Exactly size entries ahead is allowed. */
	for (unsigned i = 0; i < QSZ; i++) {
		desc(f, i, BUF, 4, 0, 0);
		avail_put(f, (uint16_t)i);
	}
	for (unsigned i = 0; i < QSZ; i++)
		assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(virtq_pop(&f->q, f->c), 0);
}

static void test_zero_len_skipped(void **state)
{
	struct fx *f = *state;

	/* Zero-length descriptors are not accessed, even at a bogus
	 * address. */
	desc(f, 0, 0xdead00000000ull, 0, F_NEXT, 1);
	desc(f, 1, BUF, 5, F_NEXT, 2);
	desc(f, 2, BUF + 0x100, 0, F_WRITE | F_NEXT, 3);
	desc(f, 3, BUF + 0x200, 6, F_WRITE, 0);
	avail_put(f, 0);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->n_out, 1);
	assert_int_equal(f->c->n_in, 1);
	assert_int_equal(f->c->out_len, 5);
	assert_int_equal(f->c->in_len, 6);
	assert_ptr_equal(f->c->out[0].iov_base, gpa_ptr(f, BUF));
	assert_ptr_equal(f->c->in[0].iov_base, gpa_ptr(f, BUF + 0x200));
}

static void test_buffer_at_ram_end(void **state)
{
	struct fx *f = *state;

	desc(f, 0, RAM_SIZE - 16, 16, 0, 0);
	avail_put(f, 0);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->out_len, 16);
}

static void test_indirect(void **state)
{
	struct fx *f = *state;

	f->q.indirect = true;
	fake_desc(f->ram, INDIR, 0, BUF, 10, F_NEXT, 2);
	fake_desc(f->ram, INDIR, 2, BUF + 0x100, 20, F_NEXT | F_WRITE, 1);
	fake_desc(f->ram, INDIR, 1, BUF + 0x200, 30, F_WRITE, 0);
	/* The WRITE flag on the indirect descriptor itself is ignored. */
	desc(f, 4, INDIR, 3 * 16, F_INDIRECT | F_WRITE, 0);
	avail_put(f, 4);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->head, 4);
	assert_int_equal(f->c->n_out, 1);
	assert_int_equal(f->c->n_in, 2);
	assert_int_equal(f->c->out_len, 10);
	assert_int_equal(f->c->in_len, 50);
	assert_ptr_equal(f->c->in[0].iov_base, gpa_ptr(f, BUF + 0x100));
	assert_ptr_equal(f->c->in[1].iov_base, gpa_ptr(f, BUF + 0x200));
}

static void test_indirect_after_direct(void **state)
{
	struct fx *f = *state;

	/* Direct descriptors may lead up to an indirect one. */
	f->q.indirect = true;
	fake_desc(f->ram, INDIR, 0, BUF + 0x100, 20, F_WRITE, 0);
	desc(f, 0, BUF, 10, F_NEXT, 1);
	desc(f, 1, INDIR, 16, F_INDIRECT, 0);
	avail_put(f, 0);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->out_len, 10);
	assert_int_equal(f->c->in_len, 20);
}

static void test_indirect_unaligned(void **state)
{
	struct fx *f = *state;

	f->q.indirect = true;
	fake_desc(f->ram, INDIR + 3, 0, BUF, 10, 0, 0);
	desc(f, 0, INDIR + 3, 16, F_INDIRECT, 0);
	avail_put(f, 0);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->out_len, 10);
}

static void test_max_segs(void **state)
{
	struct fx *f = *state;

	/* A full-size indirect table is exactly VIRTQ_MAX_SEGS segments. */
	f->q.indirect = true;
	for (unsigned i = 0; i < VIRTQ_MAX_SEGS; i++)
		fake_desc(f->ram, INDIR, i, BUF + i, 1,
			  i + 1 < VIRTQ_MAX_SEGS ? F_NEXT : 0,
			  (uint16_t)(i + 1));
	desc(f, 0, INDIR, 16 * VIRTQ_MAX_SEGS, F_INDIRECT, 0);
	avail_put(f, 0);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->n_out, VIRTQ_MAX_SEGS);
	assert_int_equal(f->c->out_len, VIRTQ_MAX_SEGS);
}

/* --- malformed rings --- */

static void test_desc_out_of_ram(void **state)
{
	struct fx *f = *state;

	desc(f, 0, RAM_SIZE - 8, 16, 0, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_desc_in_mmio_hole(void **state)
{
	struct fx *f = *state;

	desc(f, 0, GUEST_MMIO_HOLE_START, 16, 0, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_desc_addr_wraps(void **state)
{
	struct fx *f = *state;

	desc(f, 0, 0xfffffffffffff000ull, 0x2000, 0, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_desc_4gib_len(void **state)
{
	struct fx *f = *state;

	desc(f, 0, BUF, 0xffffffffu, F_WRITE, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_loop(void **state)
{
	struct fx *f = *state;

	desc(f, 0, BUF, 4, F_NEXT, 1);
	desc(f, 1, BUF, 4, F_NEXT, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_self_loop_zero_len(void **state)
{
	struct fx *f = *state;

	/* Zero-length descriptors add no segments but still count as
	 * steps: the walk ends. */
	desc(f, 2, BUF, 0, F_NEXT, 2);
	avail_put(f, 2);
	expect_broken(f);
}

static void test_chain_longer_than_queue(void **state)
{
	struct fx *f = *state;

	/* 0 -> 1 -> ... -> 7 -> 0: size + 1 descriptors. */
	for (unsigned i = 0; i < QSZ; i++)
		desc(f, i, BUF, 1, F_NEXT, (uint16_t)((i + 1) % QSZ));
	avail_put(f, 0);
	expect_broken(f);
}

static void test_chain_of_queue_size(void **state)
{
	struct fx *f = *state;

	for (unsigned i = 0; i < QSZ; i++)
		desc(f, i, BUF, 1, i + 1 < QSZ ? F_NEXT : 0, (uint16_t)(i + 1));
	avail_put(f, 0);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(f->c->n_out, QSZ);
}

static void test_next_out_of_range(void **state)
{
	struct fx *f = *state;

	desc(f, 0, BUF, 4, F_NEXT, QSZ);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_head_out_of_range(void **state)
{
	struct fx *f = *state;

	avail_put(f, QSZ);
	expect_broken(f);
}

static void test_head_huge(void **state)
{
	struct fx *f = *state;

	avail_put(f, 0xffff);
	expect_broken(f);
}

static void test_read_after_write(void **state)
{
	struct fx *f = *state;

	desc(f, 0, BUF, 4, F_WRITE | F_NEXT, 1);
	desc(f, 1, BUF, 4, 0, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_indirect_not_negotiated(void **state)
{
	struct fx *f = *state;

	fake_desc(f->ram, INDIR, 0, BUF, 10, 0, 0);
	desc(f, 0, INDIR, 16, F_INDIRECT, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_indirect_nested(void **state)
{
	struct fx *f = *state;

	f->q.indirect = true;
	fake_desc(f->ram, INDIR + 0x100, 0, BUF, 10, 0, 0);
	fake_desc(f->ram, INDIR, 0, INDIR + 0x100, 16, F_INDIRECT, 0);
	desc(f, 0, INDIR, 16, F_INDIRECT, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void indirect_bad_len(struct fx *f, uint32_t len)
{
	f->q.indirect = true;
	fake_desc(f->ram, INDIR, 0, BUF, 10, 0, 0);
	desc(f, 0, INDIR, len, F_INDIRECT, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_indirect_len_zero(void **state)
{
	indirect_bad_len(*state, 0);
}

static void test_indirect_len_not_multiple(void **state)
{
	indirect_bad_len(*state, 24);
}

static void test_indirect_len_too_big(void **state)
{
	indirect_bad_len(*state, 16 * (VIRTQ_MAX_SEGS + 1));
}

static void test_indirect_len_4gib(void **state)
{
	indirect_bad_len(*state, 0xfffffff0u);
}

static void test_indirect_table_out_of_ram(void **state)
{
	struct fx *f = *state;

	f->q.indirect = true;
	desc(f, 0, RAM_SIZE - 16, 32, F_INDIRECT, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_indirect_with_next(void **state)
{
	struct fx *f = *state;

	f->q.indirect = true;
	fake_desc(f->ram, INDIR, 0, BUF, 10, 0, 0);
	desc(f, 0, INDIR, 16, F_INDIRECT | F_NEXT, 1);
	desc(f, 1, BUF, 10, 0, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_indirect_loop(void **state)
{
	struct fx *f = *state;

	f->q.indirect = true;
	fake_desc(f->ram, INDIR, 0, BUF, 10, F_NEXT, 1);
	fake_desc(f->ram, INDIR, 1, BUF, 10, F_NEXT, 0);
	desc(f, 0, INDIR, 32, F_INDIRECT, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_indirect_next_out_of_range(void **state)
{
	struct fx *f = *state;

	/* next must index the indirect table, not the queue's. */
	f->q.indirect = true;
	fake_desc(f->ram, INDIR, 0, BUF, 10, F_NEXT, 2);
	desc(f, 0, INDIR, 32, F_INDIRECT, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_too_many_segs(void **state)
{
	struct fx *f = *state;

	/* QSZ - 1 direct segments, then a full indirect table. */
	f->q.indirect = true;
	for (unsigned i = 0; i < VIRTQ_MAX_SEGS; i++)
		fake_desc(f->ram, INDIR, i, BUF + i, 1,
			  i + 1 < VIRTQ_MAX_SEGS ? F_NEXT : 0,
			  (uint16_t)(i + 1));
	for (unsigned i = 0; i + 1 < QSZ; i++)
		desc(f, i, BUF, 1, F_NEXT, (uint16_t)(i + 1));
	desc(f, QSZ - 1, INDIR, 16 * VIRTQ_MAX_SEGS, F_INDIRECT, 0);
	avail_put(f, 0);
	expect_broken(f);
}

static void test_avail_idx_jump(void **state)
{
	struct fx *f = *state;

	desc(f, 0, BUF, 4, 0, 0);
	set_avail_idx(f, QSZ + 1);
	expect_broken(f);
}

static void test_avail_idx_behind(void **state)
{
	struct fx *f = *state;

	/* A driver moving idx backwards looks like a jump of ~65535. */
	f->q.last_avail_idx = 5;
	set_avail_idx(f, 4);
	expect_broken(f);
}

static void test_rings_not_in_ram(void **state)
{
	struct fx *f = *state;

	/* No virtq_check_config here: pop must check on its own. */
	f->q.desc_gpa = RAM_SIZE - 16;
	desc(f, 0, BUF, 4, 0, 0);
	avail_put(f, 0);
	expect_broken(f);

	f->q = (struct virtq){.mem = &f->mem,
			      .size = QSZ,
			      .ready = true,
			      .desc_gpa = DESC,
			      .used_gpa = USED,
			      .avail_gpa = RAM_SIZE - 8};
	expect_broken(f);

	f->q = (struct virtq){.mem = &f->mem,
			      .size = QSZ,
			      .ready = true,
			      .desc_gpa = DESC,
			      .avail_gpa = AVAIL,
			      .used_gpa = GUEST_4GIB};
	assert_int_equal(virtq_push(&f->q, 0, 0), -EINVAL);
	assert_true(f->q.broken);
}

static void test_misaligned_avail(void **state)
{
	struct fx *f = *state;

	f->q.avail_gpa = AVAIL + 1;
	expect_broken(f);
}

static void test_bad_size(void **state)
{
	struct fx *f = *state;

	f->q.size = 0;
	expect_broken(f);
	virtq_reset(&f->q);
	f->q.size = 6;
	f->q.ready = true;
	expect_broken(f);
}

static void test_no_mem(void **state)
{
	struct fx *f = *state;

	f->q.mem = NULL;
	expect_broken(f);
	assert_int_equal(virtq_push(&f->q, 0, 0), -EINVAL);
	assert_int_equal(virtq_check_config(&f->q, QSZ), -EINVAL);
}

static void test_broken_until_reset(void **state)
{
	struct fx *f = *state;

	desc(f, 0, BUF, 4, F_NEXT, 0);
	avail_put(f, 0);
	expect_broken(f);
	/* Fixing the ring does not help: the device waits for a reset. */
	desc(f, 0, BUF, 4, 0, 0);
	expect_broken(f);
	assert_int_equal(virtq_push(&f->q, 0, 0), -EINVAL);
	assert_false(virtq_should_notify(&f->q));

	virtq_reset(&f->q);
	assert_false(f->q.broken);
	assert_ptr_equal(f->q.mem, &f->mem);
	assert_int_equal(f->q.size, 0);
	assert_false(f->q.ready);
	assert_int_equal(f->q.last_avail_idx, 0);
	f->q.size = QSZ;
	f->q.desc_gpa = DESC;
	f->q.avail_gpa = AVAIL;
	f->q.used_gpa = USED;
	f->q.ready = true;
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
}

/* --- used ring and notifications --- */

static void test_push(void **state)
{
	struct fx *f = *state;

	desc(f, 6, BUF, 4, F_WRITE, 0);
	avail_put(f, 6);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(virtq_push(&f->q, 6, 1234), 0);
	assert_int_equal(rd16(f, USED + 2), 1);
	assert_int_equal(rd32(f, USED + 4), 6);
	assert_int_equal(rd32(f, USED + 8), 1234);
	assert_int_equal(f->q.used_idx, 1);
	/* Without EVENT_IDX the avail_event slot is not ours to write. */
	wr16(f, avail_event_gpa(f), 0xabcd);
	assert_int_equal(virtq_push(&f->q, 6, 1), 0);
	assert_int_equal(rd16(f, avail_event_gpa(f)), 0xabcd);
	assert_int_equal(rd16(f, USED + 2), 2);
}

static void test_push_bad_head(void **state)
{
	struct fx *f = *state;

	assert_int_equal(virtq_push(&f->q, QSZ, 0), -EINVAL);
	assert_int_equal(rd16(f, USED + 2), 0);
}

static void test_avail_event(void **state)
{
	struct fx *f = *state;

	f->q.event_idx = true;
	wr16(f, avail_event_gpa(f), 0xffff);
	/* An empty pop asks for a kick at the next entry. */
	assert_int_equal(virtq_pop(&f->q, f->c), 0);
	assert_int_equal(rd16(f, avail_event_gpa(f)), 0);
	for (unsigned i = 0; i < 3; i++) {
		desc(f, i, BUF, 4, 0, 0);
		avail_put(f, (uint16_t)i);
	}
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_int_equal(rd16(f, avail_event_gpa(f)), 2);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(virtq_pop(&f->q, f->c), 0);
	assert_int_equal(rd16(f, avail_event_gpa(f)), 3);
}

static void test_no_interrupt_flag(void **state)
{
	struct fx *f = *state;

	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_true(virtq_should_notify(&f->q));
	wr16(f, AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_false(virtq_should_notify(&f->q));
	/* used_event means nothing without EVENT_IDX. */
	wr16(f, AVAIL, 0);
	wr16(f, used_event_gpa(f), 100);
	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_true(virtq_should_notify(&f->q));
}

static void test_used_event(void **state)
{
	struct fx *f = *state;

	f->q.event_idx = true;
	/* The flag is ignored with EVENT_IDX. */
	wr16(f, AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	wr16(f, used_event_gpa(f), 2);
	/* The first check always interrupts (nothing signalled yet). */
	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_true(virtq_should_notify(&f->q));
	/* used idx 1 -> 2: crossing entry 2 is not reached yet. */
	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_false(virtq_should_notify(&f->q));
	/* 2 -> 3 covers entry 2. */
	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_true(virtq_should_notify(&f->q));
	/* Nothing new since the last interrupt. */
	assert_false(virtq_should_notify(&f->q));
	/* Several pushes past used_event at once. */
	wr16(f, used_event_gpa(f), 4);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_true(virtq_should_notify(&f->q));
	/* used_event behind: already signalled for it. */
	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_false(virtq_should_notify(&f->q));
}

static void test_used_event_wrap(void **state)
{
	struct fx *f = *state;

	f->q.event_idx = true;
	f->q.used_idx = 65534;
	f->q.signalled_used = 65534;
	f->q.signalled_used_valid = true;
	wr16(f, used_event_gpa(f), 0);
	assert_int_equal(virtq_push(&f->q, 0, 0), 0); /* 65535 */
	assert_false(virtq_should_notify(&f->q));
	assert_int_equal(virtq_push(&f->q, 0, 0), 0); /* 0 */
	assert_false(virtq_should_notify(&f->q));
	assert_int_equal(virtq_push(&f->q, 0, 0), 0); /* 1: covers 0 */
	assert_true(virtq_should_notify(&f->q));
}

static void test_signalled_used_stale(void **state)
{
	struct fx *f = *state;
	uint16_t used_event;

	/* 2^16 pushes without an interrupt bring used idx back to where it
	 * was last signalled: that must not read as "nothing new". */
	f->q.event_idx = true;
	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_true(virtq_should_notify(&f->q));
	used_event = f->q.used_idx; /* the element about to be pushed */
	wr16(f, used_event_gpa(f), used_event);
	for (unsigned i = 0; i < 65536; i++)
		assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_int_equal(f->q.used_idx, f->q.signalled_used);
	assert_true(virtq_should_notify(&f->q));
}

static void test_event_fields_at_ram_end(void **state)
{
	struct fx *f = *state;

	/* Rings that end at the end of RAM without their event fields: fine
	 * until EVENT_IDX makes those fields part of the rings. */
	f->q.avail_gpa = RAM_SIZE - (4 + 2 * QSZ);
	f->q.used_gpa = RAM_SIZE - (4 + 8 * QSZ);
	f->drv.avail_idx = 0;
	wr16(f, f->q.avail_gpa + 4, 0);
	wr16(f, f->q.avail_gpa + 2, 1);
	desc(f, 0, BUF, 4, 0, 0);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);
	assert_int_equal(virtq_push(&f->q, 0, 0), 0);
	assert_true(virtq_should_notify(&f->q));
	assert_int_equal(rd16(f, f->q.used_gpa + 2), 1);

	f->q.event_idx = true;
	assert_int_equal(virtq_push(&f->q, 0, 0), -EINVAL);
	assert_true(f->q.broken);
	f->q.broken = false;
	expect_broken(f);
	f->q.broken = false;
	f->q.used_gpa = USED;
	expect_broken(f); /* the avail ring's used_event is outside */
}

/* --- configuration --- */

static void test_check_config(void **state)
{
	struct fx *f = *state;
	struct virtq q = f->q;
	static const uint16_t bad_sizes[] = {0, 3, 6, 12, 100, 1023};

	assert_int_equal(virtq_check_config(&q, QSZ), 0);
	q.size = 1;
	assert_int_equal(virtq_check_config(&q, QSZ), 0);
	for (unsigned i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]);
	     i++) {
		q.size = bad_sizes[i];
		assert_int_equal(virtq_check_config(&q, VIRTQ_MAX_SIZE),
				 -EINVAL);
	}
	q.size = 16;
	assert_int_equal(virtq_check_config(&q, QSZ), -EINVAL);
	q.size = 2 * VIRTQ_MAX_SIZE;
	assert_int_equal(virtq_check_config(&q, 0xffff), -EINVAL);
	q.size = VIRTQ_MAX_SIZE;
	q.desc_gpa = 0x10000;
	q.avail_gpa = 0x20000;
	q.used_gpa = 0x30000;
	assert_int_equal(virtq_check_config(&q, VIRTQ_MAX_SIZE), 0);
}

static void test_check_config_alignment(void **state)
{
	struct fx *f = *state;
	struct virtq q = f->q;

	q.desc_gpa = DESC + 8;
	assert_int_equal(virtq_check_config(&q, QSZ), -EINVAL);
	q.desc_gpa = DESC;
	q.avail_gpa = AVAIL + 1;
	assert_int_equal(virtq_check_config(&q, QSZ), -EINVAL);
	q.avail_gpa = AVAIL + 2;
	assert_int_equal(virtq_check_config(&q, QSZ), 0);
	q.used_gpa = USED + 2;
	assert_int_equal(virtq_check_config(&q, QSZ), -EINVAL);
	q.used_gpa = USED + 4;
	assert_int_equal(virtq_check_config(&q, QSZ), 0);
}

static void test_check_config_ram(void **state)
{
	struct fx *f = *state;
	struct virtq q = f->q;

	/* Each ring as close to the end of RAM as its alignment allows,
	 * then one step over. */
	q.desc_gpa = RAM_SIZE - 16 * QSZ;
	assert_int_equal(virtq_check_config(&q, QSZ), 0);
	q.desc_gpa += 16;
	assert_int_equal(virtq_check_config(&q, QSZ), -EINVAL);
	q.desc_gpa = DESC;

	q.avail_gpa = RAM_SIZE - (6 + 2 * QSZ);
	assert_int_equal(virtq_check_config(&q, QSZ), 0);
	q.avail_gpa += 2;
	assert_int_equal(virtq_check_config(&q, QSZ), -EINVAL);
	q.avail_gpa = AVAIL;

	q.used_gpa = RAM_SIZE - (8 + 8 * QSZ);
	assert_int_equal(virtq_check_config(&q, QSZ), 0);
	q.used_gpa += 4;
	assert_int_equal(virtq_check_config(&q, QSZ), -EINVAL);
	q.used_gpa = 0xfffffffffffffff0ull;
	assert_int_equal(virtq_check_config(&q, QSZ), -EINVAL);
	q.used_gpa = GUEST_MMIO_HOLE_START;
	assert_int_equal(virtq_check_config(&q, QSZ), -EINVAL);
}

/* --- chain copies --- */

static void test_chain_copy(void **state)
{
	struct fx *f = *state;
	uint8_t buf[32];
	static const uint8_t src[] = "0123456789abcdefghij";

	desc(f, 0, BUF, 3, F_NEXT, 1);
	desc(f, 1, BUF + 0x100, 5, F_NEXT, 2);
	desc(f, 2, BUF + 0x200, 4, F_WRITE | F_NEXT, 3);
	desc(f, 3, BUF + 0x300, 6, F_WRITE, 0);
	memcpy(gpa_ptr(f, BUF), "abc", 3);
	memcpy(gpa_ptr(f, BUF + 0x100), "defgh", 5);
	avail_put(f, 0);
	assert_int_equal(virtq_pop(&f->q, f->c), 1);

	memset(buf, 0, sizeof(buf));
	assert_int_equal(virtq_chain_read(f->c, 0, buf, sizeof(buf)), 8);
	assert_memory_equal(buf, "abcdefgh", 8);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(virtq_chain_read(f->c, 2, buf, 4), 4);
	assert_memory_equal(buf, "cdef", 4);
	assert_int_equal(virtq_chain_read(f->c, 3, buf, 5), 5);
	assert_memory_equal(buf, "defgh", 5);
	assert_int_equal(virtq_chain_read(f->c, 7, buf, 10), 1);
	assert_int_equal(buf[0], 'h');
	assert_int_equal(virtq_chain_read(f->c, 8, buf, 10), 0);
	assert_int_equal(virtq_chain_read(f->c, UINT64_MAX, buf, 10), 0);
	assert_int_equal(virtq_chain_read(f->c, 0, buf, 0), 0);

	assert_int_equal(virtq_chain_write(f->c, 0, src, 20), 10);
	assert_memory_equal(gpa_ptr(f, BUF + 0x200), "0123", 4);
	assert_memory_equal(gpa_ptr(f, BUF + 0x300), "456789", 6);
	assert_int_equal(virtq_chain_write(f->c, 3, "XY", 2), 2);
	assert_memory_equal(gpa_ptr(f, BUF + 0x200), "012X", 4);
	assert_memory_equal(gpa_ptr(f, BUF + 0x300), "Y56789", 6);
	assert_int_equal(virtq_chain_write(f->c, 9, "ZZ", 2), 1);
	assert_int_equal(*(uint8_t *)gpa_ptr(f, BUF + 0x305), 'Z');
	assert_int_equal(*(uint8_t *)gpa_ptr(f, BUF + 0x306), 0);
	assert_int_equal(virtq_chain_write(f->c, 10, "Q", 1), 0);
	/* The readable side was not written. */
	assert_memory_equal(gpa_ptr(f, BUF), "abc", 3);
}

/* --- virtio_dev helpers --- */

/* What the virtio_dev helpers did to the transport, the device and the log
 * (the fake driver's counting transport has no room for all of it). */
struct ft_state {
	unsigned notified, notified_q, resets_asked, dev_resets;
	char last_log[256];
};

static struct ft_state ft;

static void ft_notify_used(struct virtio_dev *d, unsigned q)
{
	(void)d;
	ft.notified++;
	ft.notified_q = q;
}

static void ft_needs_reset(struct virtio_dev *d)
{
	(void)d;
	ft.resets_asked++;
}

static void ft_log(void *opaque, enum kiln_log_level level, const char *msg)
{
	(void)opaque;
	(void)level;
	snprintf(ft.last_log, sizeof(ft.last_log), "%s", msg);
}

static uint64_t fake_features(struct virtio_dev *d)
{
	(void)d;
	return 1ull << 5;
}

static void fake_reset(struct virtio_dev *d)
{
	(void)d;
	ft.dev_resets++;
}

static const struct virtio_dev_ops fake_ops = {
	.name = "fake",
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_max_size = QSZ,
	.features = fake_features,
	.reset = fake_reset,
};

static const struct virtio_transport_ops ft_transport = {
	.notify_used = ft_notify_used,
	.needs_reset = ft_needs_reset,
};

static const struct kiln_log fake_log = {ft_log, NULL, KILN_LOG_DEBUG};

static void dev_init(struct fx *f, struct virtio_dev *d)
{
	memset(&ft, 0, sizeof(ft));
	memset(d, 0, sizeof(*d));
	d->ops = &fake_ops;
	d->mem = &f->mem;
	d->log = &fake_log;
	d->transport = &ft_transport;
	d->vqs[2] = f->q;
}

static void test_dev_features(void **state)
{
	struct fx *f = *state;
	struct virtio_dev d;
	uint64_t all = 1ull << 5 | 1ull << VIRTIO_F_VERSION_1 |
		       1ull << VIRTIO_F_EVENT_IDX |
		       1ull << VIRTIO_F_INDIRECT_DESC;

	dev_init(f, &d);
	assert_int_equal(virtio_dev_features(&d), all);
	d.vqs[2].mem = NULL;
	d.driver_features =
		1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_EVENT_IDX;
	virtio_dev_apply_features(&d);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		assert_true(d.vqs[i].event_idx);
		assert_false(d.vqs[i].indirect);
		assert_ptr_equal(d.vqs[i].mem, &f->mem);
	}
	d.driver_features = 1ull << VIRTIO_F_INDIRECT_DESC;
	virtio_dev_apply_features(&d);
	assert_false(d.vqs[0].event_idx);
	assert_true(d.vqs[0].indirect);
}

static void test_dev_complete(void **state)
{
	struct fx *f = *state;
	struct virtio_dev d;

	dev_init(f, &d);
	virtio_dev_complete(&d, 2, 5, 77);
	assert_int_equal(rd16(f, USED + 2), 1);
	assert_int_equal(rd32(f, USED + 4), 5);
	assert_int_equal(rd32(f, USED + 8), 77);
	assert_int_equal(ft.notified, 1);
	assert_int_equal(ft.notified_q, 2);
	/* The driver asked for no interrupts. */
	wr16(f, AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	virtio_dev_complete(&d, 2, 5, 0);
	assert_int_equal(rd16(f, USED + 2), 2);
	assert_int_equal(ft.notified, 1);
	/* Bogus queue index from a device: logged, nothing else. */
	virtio_dev_complete(&d, VIRTIO_MAX_QUEUES, 0, 0);
	assert_int_equal(ft.resets_asked, 0);
	assert_int_equal(d.status, 0);
}

static void test_dev_complete_fails(void **state)
{
	struct fx *f = *state;
	struct virtio_dev d;

	dev_init(f, &d);
	d.status = VIRTIO_STATUS_DRIVER_OK;
	d.vqs[2].used_gpa = RAM_SIZE; /* used ring not in RAM */
	virtio_dev_complete(&d, 2, 0, 0);
	assert_int_equal(ft.notified, 0);
	assert_int_equal(ft.resets_asked, 1);
	assert_int_equal(d.status,
			 VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		assert_true(d.vqs[i].broken);
	assert_non_null(strstr(ft.last_log, "fake"));
	/* Once only. */
	virtio_dev_complete(&d, 2, 0, 0);
	virtio_dev_fail(&d, "again");
	assert_int_equal(ft.resets_asked, 1);
	assert_null(strstr(ft.last_log, "again"));
}

static void test_dev_fail(void **state)
{
	struct fx *f = *state;
	struct virtio_dev d;

	dev_init(f, &d);
	d.transport = NULL; /* no transport: still marks the device */
	d.log = NULL;
	virtio_dev_fail(&d, "bad ring");
	assert_true(d.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(d.vqs[0].broken);

	dev_init(f, &d);
	virtio_dev_fail(&d, "bad ring");
	assert_int_equal(ft.resets_asked, 1);
	assert_non_null(strstr(ft.last_log, "bad ring"));
}

static void test_dev_reset(void **state)
{
	struct fx *f = *state;
	struct virtio_dev d;

	dev_init(f, &d);
	d.driver_features = 1ull << VIRTIO_F_VERSION_1;
	d.status = VIRTIO_STATUS_DRIVER_OK;
	virtio_dev_fail(&d, "x");
	virtio_dev_reset(&d);
	assert_int_equal(ft.dev_resets, 1);
	assert_int_equal(d.status, 0);
	assert_int_equal(d.driver_features, 0);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		assert_false(d.vqs[i].broken);
		assert_false(d.vqs[i].ready);
		assert_int_equal(d.vqs[i].size, 0);
	}
	/* Also without a device reset hook. */
	static const struct virtio_dev_ops bare_ops = {.name = "bare"};
	d.ops = &bare_ops;
	virtio_dev_reset(&d);
	assert_int_equal(ft.dev_resets, 1);
	assert_int_equal(virtio_dev_features(&d),
			 1ull << VIRTIO_F_VERSION_1 |
				 1ull << VIRTIO_F_EVENT_IDX |
				 1ull << VIRTIO_F_INDIRECT_DESC);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_empty),
		T(test_not_ready),
		T(test_single),
		T(test_multi),
		T(test_batch_budget),
		T(test_in_only),
		T(test_wraparound),
		T(test_full_ring),
		T(test_zero_len_skipped),
		T(test_buffer_at_ram_end),
		T(test_indirect),
		T(test_indirect_after_direct),
		T(test_indirect_unaligned),
		T(test_max_segs),
		T(test_desc_out_of_ram),
		T(test_desc_in_mmio_hole),
		T(test_desc_addr_wraps),
		T(test_desc_4gib_len),
		T(test_loop),
		T(test_self_loop_zero_len),
		T(test_chain_longer_than_queue),
		T(test_chain_of_queue_size),
		T(test_next_out_of_range),
		T(test_head_out_of_range),
		T(test_head_huge),
		T(test_read_after_write),
		T(test_indirect_not_negotiated),
		T(test_indirect_nested),
		T(test_indirect_len_zero),
		T(test_indirect_len_not_multiple),
		T(test_indirect_len_too_big),
		T(test_indirect_len_4gib),
		T(test_indirect_table_out_of_ram),
		T(test_indirect_with_next),
		T(test_indirect_loop),
		T(test_indirect_next_out_of_range),
		T(test_too_many_segs),
		T(test_avail_idx_jump),
		T(test_avail_idx_behind),
		T(test_rings_not_in_ram),
		T(test_misaligned_avail),
		T(test_bad_size),
		T(test_no_mem),
		T(test_broken_until_reset),
		T(test_push),
		T(test_push_bad_head),
		T(test_avail_event),
		T(test_no_interrupt_flag),
		T(test_used_event),
		T(test_used_event_wrap),
		T(test_signalled_used_stale),
		T(test_event_fields_at_ram_end),
		T(test_check_config),
		T(test_check_config_alignment),
		T(test_check_config_ram),
		T(test_chain_copy),
		T(test_dev_features),
		T(test_dev_complete),
		T(test_dev_complete_fails),
		T(test_dev_fail),
		T(test_dev_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
