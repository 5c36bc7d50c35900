/* SPDX-License-Identifier: MIT */
/* kiln's qcow2 backend and snapshot overlay on hand-made images: an empty
 * image written and read back (across clusters, reopened), hostile headers
 * and tables (refused at open, or a failed request: never a crash), backing
 * chains that loop or go too deep, and the overlay leaving its base alone.
 * Interop with qemu-img is the disk tier's (tests/linux/disk.sh). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/block.h"

#define CS 65536u /* cluster size of the images made here */

static char dir[64];

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* A version-3 image of `size` bytes: header (cluster 0), refcount table
 * (1), refcount block (2), L1 table (3), refcounts 1 for those four.
 * backing: a backing file name or NULL. Returns its path (static). */
static const char *make_image(const char *name, uint64_t size,
			      const char *backing)
{
	static char path[128];
	uint8_t *img = calloc(4, CS);
	uint64_t l1 = (size + (uint64_t)CS * (CS / 8) - 1) /
		      ((uint64_t)CS * (CS / 8));
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	put32(img, 0x514649fb);
	put32(img + 4, 3);
	if (backing) {
		put64(img + 8, 512);
		put32(img + 16, (uint32_t)strlen(backing));
		memcpy(img + 512, backing, strlen(backing));
	}
	put32(img + 20, 16);
	put64(img + 24, size);
	put32(img + 36, (uint32_t)l1);
	put64(img + 40, 3 * CS);
	put64(img + 48, 1 * CS);
	put32(img + 56, 1);
	put32(img + 96, 4);
	put32(img + 100, 104);
	put64(img + CS, 2 * CS); /* refcount table -> block at cluster 2 */
	for (int c = 0; c < 4; c++)
		img[2 * CS + 2 * c + 1] = 1;
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, img, 4 * CS), 4 * CS);
	close(fd);
	free(img);
	return path;
}

static void patch(const char *path, uint64_t off, const void *bytes, size_t n)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static int open_img(const char *path, bool ro, struct block_backend **be)
{
	struct block_open_opts o = {.path = path, .fd = -1, .read_only = ro};

	return block_open(&o, NULL, be);
}

static int rd(struct block_backend *be, void *buf, size_t n, uint64_t off)
{
	struct iovec v = {buf, n};

	return be->ops->readv(be, &v, 1, off);
}

static int wr(struct block_backend *be, const void *buf, size_t n, uint64_t off)
{
	struct iovec v = {(void *)buf, n};

	return be->ops->writev(be, &v, 1, off);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/kiln-qcow2-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[96];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_write_read_reopen(void **state)
{
	const char *p = make_image("a.qcow2", 8 << 20, NULL);
	struct block_backend *be;
	uint8_t *buf = malloc(3 * CS), *back = malloc(3 * CS);

	(void)state;
	for (size_t i = 0; i < 3 * CS; i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(open_img(p, false, &be), 0);
	assert_int_equal(block_backend_size(be), 8 << 20);
	assert_int_equal(rd(be, back, CS, 0), 0);
	for (size_t i = 0; i < CS; i++)
		assert_int_equal(back[i], 0);
	/* unaligned, across three clusters; then a small overwrite */
	assert_int_equal(wr(be, buf, 2 * CS + 100, CS / 2 + 3), 0);
	assert_int_equal(wr(be, "xyz", 3, CS), 0);
	assert_int_equal(be->ops->write_zeroes(be, 4 << 20, 1000, false), 0);
	assert_int_equal(be->ops->flush(be), 0);
	assert_int_equal(rd(be, back, 2 * CS + 100, CS / 2 + 3), 0);
	assert_memory_equal(back + CS / 2 - 3, "xyz", 3);
	back[CS / 2 - 3] = buf[CS / 2 - 3];
	back[CS / 2 - 2] = buf[CS / 2 - 2];
	back[CS / 2 - 1] = buf[CS / 2 - 1];
	assert_memory_equal(back, buf, 2 * CS + 100);
	/* a write in odd segments across clusters, gathered per cluster */
	{
		struct iovec v[4] = {{buf, 1},
				     {buf + 1, 0},
				     {buf + 1, CS + 5},
				     {buf + CS + 6, CS - 1}};

		assert_int_equal(be->ops->writev(be, v, 4, 5 * CS - 7), 0);
		assert_int_equal(rd(be, back, 2 * CS + 5, 5 * CS - 7), 0);
		assert_memory_equal(back, buf, 2 * CS + 5);
		/* read back scattered into the same odd segments */
		{
			uint8_t *odd = malloc(2 * CS + 5);
			struct iovec r[4] = {{odd, 1},
					     {odd + 1, 0},
					     {odd + 1, CS + 5},
					     {odd + CS + 6, CS - 1}};

			assert_int_equal(be->ops->readv(be, r, 4, 5 * CS - 7),
					 0);
			assert_memory_equal(odd, buf, 2 * CS + 5);
			free(odd);
		}
	}
	/* whole new clusters go as runs (16 at most): 20 of them, twice */
	{
		size_t n = 20 * (size_t)CS;
		uint8_t *big = malloc(n), *got = malloc(n);

		for (size_t k = 0; k < n; k++)
			big[k] = (uint8_t)(k * 31 + 7);
		assert_int_equal(wr(be, big, n, 40ull * CS), 0);
		big[5] ^= 0xff;
		assert_int_equal(wr(be, big, n, 40ull * CS), 0); /* in place */
		assert_int_equal(rd(be, got, n, 40ull * CS), 0);
		assert_memory_equal(got, big, n);
		free(big);
		free(got);
	}
	/* write-zeroes: a whole data cluster becomes a zero cluster (kept
	 * as preallocated zeros, or with unmap released), a partial one gets
	 * zeros written; a write after it lands in the right place */
	{
		uint8_t one = 0x77;

		assert_int_equal(wr(be, buf, 3 * CS, 10ull * CS), 0);
		assert_int_equal(
			be->ops->write_zeroes(be, 10ull * CS, CS, false), 0);
		assert_int_equal(
			be->ops->write_zeroes(be, 11ull * CS, CS, true), 0);
		assert_int_equal(
			be->ops->write_zeroes(be, 12ull * CS + 10, 20, true),
			0);
		assert_int_equal(rd(be, back, 3 * CS, 10ull * CS), 0);
		for (size_t k = 0; k < 2 * CS; k++)
			assert_int_equal(back[k], 0);
		assert_memory_equal(back + 2 * CS, buf + 2 * CS, 10);
		for (size_t k = 2 * CS + 10; k < 2 * CS + 30; k++)
			assert_int_equal(back[k], 0);
		assert_memory_equal(back + 2 * CS + 30, buf + 2 * CS + 30,
				    CS - 30);
		assert_int_equal(wr(be, &one, 1, 10ull * CS + 5), 0);
		assert_int_equal(wr(be, &one, 1, 11ull * CS + 6), 0);
		assert_int_equal(rd(be, back, 2 * CS, 10ull * CS), 0);
		for (size_t k = 0; k < 2 * CS; k++)
			assert_int_equal(back[k],
					 k == 5 || k == CS + 6 ? 0x77 : 0);
		/* zeroing what is zero already changes nothing */
		assert_int_equal(
			be->ops->write_zeroes(be, 30ull * CS, 4 * CS, true), 0);
	}
	/* out of range and read-only */
	assert_int_equal(rd(be, back, 2, (8 << 20) - 1), -EINVAL);
	block_backend_destroy(be);
	assert_int_equal(open_img(p, true, &be), 0);
	assert_int_equal(rd(be, back, 3, CS), 0);
	assert_memory_equal(back, "xyz", 3);
	assert_int_equal(wr(be, "x", 1, 0), -EROFS);
	block_backend_destroy(be);
	free(buf);
	free(back);
}

static void test_hostile_headers(void **state)
{
	struct block_backend *be;
	const char *p;
	uint8_t b[8];

	(void)state;
	/* cluster_bits 30, an encrypted image, unknown incompatible bits,
	 * extended L2, a zero size, an unaligned L1 table, an L1 too small */
	struct {
		uint64_t off;
		unsigned n;
		uint64_t v;
		int err;
	} cases[] = {
		{20, 4, 30, -EBADMSG},	       {32, 4, 1, -ENOTSUP},
		{72, 8, 1ull << 40, -ENOTSUP}, {72, 8, 1 << 4, -ENOTSUP},
		{24, 8, 0, -EBADMSG},	       {40, 8, 3 * CS + 8, -EBADMSG},
		{36, 4, 0, -EBADMSG},	       {24, 8, 1ull << 62, -EBADMSG},
		{4, 4, 4, -EBADMSG},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p = make_image("h.qcow2", 1 << 20, NULL);
		if (cases[i].n == 8)
			put64(b, cases[i].v);
		else
			put32(b, (uint32_t)cases[i].v);
		patch(p, cases[i].off, b, cases[i].n);
		assert_int_equal(open_img(p, true, &be), cases[i].err);
	}
	/* internal snapshots: read-only is fine, writing is refused */
	p = make_image("s.qcow2", 1 << 20, NULL);
	put32(b, 1);
	patch(p, 60, b, 4);
	assert_int_equal(open_img(p, false, &be), -ENOTSUP);
	assert_int_equal(open_img(p, true, &be), 0);
	block_backend_destroy(be);
}

static void test_hostile_tables(void **state)
{
	const char *p = make_image("t.qcow2", 8 << 20, NULL);
	struct block_backend *be;
	uint8_t b[8], buf[512];

	(void)state;
	/* L1[0] -> an unaligned L2 table: the read fails, the VMM goes on */
	put64(b, 4 * CS + 512);
	patch(p, 3 * CS, b, 8);
	assert_int_equal(open_img(p, false, &be), 0);
	assert_int_equal(rd(be, buf, 512, 0), -EIO);
	assert_int_equal(wr(be, buf, 512, 0), -EIO);
	block_backend_destroy(be);
	/* L1[0] -> an L2 table past the end of the file: all unallocated */
	put64(b, 100ull * CS);
	patch(p, 3 * CS, b, 8);
	assert_int_equal(open_img(p, true, &be), 0);
	assert_int_equal(rd(be, buf, 512, 0), 0);
	block_backend_destroy(be);
	/* an L2 table at cluster 4 with a compressed entry of garbage and an
	 * unaligned data cluster */
	p = make_image("t.qcow2", 8 << 20, NULL);
	put64(b, 4 * CS);
	patch(p, 3 * CS, b, 8);
	put64(b, 1ull << 62 | 5 * CS);
	patch(p, 4 * CS, b, 8);
	put64(b, 5 * CS + 512);
	patch(p, 4 * CS + 8, b, 8);
	memset(buf, 0xee, sizeof(buf));
	patch(p, 5 * CS, buf, sizeof(buf));
	assert_int_equal(open_img(p, true, &be), 0);
	assert_int_equal(rd(be, buf, 512, 0), -EIO);
	assert_int_equal(rd(be, buf, 512, CS), -EIO);
	assert_int_equal(rd(be, buf, 512, 2 * CS), 0); /* still serves */
	block_backend_destroy(be);
}

static void test_backing_chains(void **state)
{
	struct block_backend *be;
	char name[128], next[32];
	uint8_t buf[4];

	(void)state;
	/* a loop: l1 -> l2 -> l1 */
	make_image("l1.qcow2", 1 << 20, "l2.qcow2");
	make_image("l2.qcow2", 1 << 20, "l1.qcow2");
	assert_int_equal(open_img(make_image("top.qcow2", 1 << 20, "l1.qcow2"),
				  true, &be),
			 -ELOOP);
	/* itself */
	assert_int_equal(open_img(make_image("me.qcow2", 1 << 20, "me.qcow2"),
				  true, &be),
			 -ELOOP);
	/* 20 deep: refused; 10 deep: fine, reading through to a raw base */
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "c%d.qcow2", i);
		snprintf(next, sizeof(next), "c%d.qcow2", i + 1);
		make_image(name, 1 << 20, i == 19 ? "raw.img" : next);
	}
	{
		char path[128];
		int fd;

		snprintf(path, sizeof(path), "%s/raw.img", dir);
		fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
		assert_int_equal(ftruncate(fd, 1 << 20), 0);
		assert_int_equal(pwrite(fd, "base", 4, 4096), 4);
		close(fd);
	}
	snprintf(name, sizeof(name), "%s/c0.qcow2", dir);
	assert_int_equal(open_img(name, true, &be), -ELOOP);
	snprintf(name, sizeof(name), "%s/c10.qcow2", dir);
	assert_int_equal(open_img(name, true, &be), 0);
	assert_int_equal(rd(be, buf, 4, 4096), 0);
	assert_memory_equal(buf, "base", 4);
	/* a write copies the backing cluster first */
	block_backend_destroy(be);
	assert_int_equal(open_img(name, false, &be), 0);
	assert_int_equal(wr(be, "B", 1, 4096), 0);
	assert_int_equal(rd(be, buf, 4, 4096), 0);
	assert_memory_equal(buf, "Base", 4);
	/* zeroing a whole cluster hides the backing file's data (the zero
	 * flag, no data written), a partial one writes zeros */
	assert_int_equal(be->ops->write_zeroes(be, 0, CS, true), 0);
	assert_int_equal(rd(be, buf, 4, 4096), 0);
	assert_memory_equal(buf, "\0\0\0\0", 4);
	assert_int_equal(wr(be, "x", 1, 4096), 0); /* a zero cluster again */
	assert_int_equal(rd(be, buf, 4, 4095), 0);
	assert_memory_equal(buf, "\0x\0\0", 4);
	block_backend_destroy(be);
	/* a missing backing file */
	assert_int_equal(
		open_img(make_image("m.qcow2", 1 << 20, "gone.img"), true, &be),
		-ENOENT);
}

/* A raw image found by detection keeps being raw: the guest may not write
 * a qcow2 header into it (format=raw given: it may). */
static void test_raw_header_guard(void **state)
{
	struct block_open_opts o = {.fd = -1};
	struct block_backend *be;
	char path[128];
	uint8_t magic[4] = {'Q', 'F', 'I', 0xfb}, back[4];
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/raw-guard.img", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	o.path = path;
	assert_int_equal(block_open(&o, NULL, &be), 0);
	assert_int_equal(wr(be, magic, 4, 0), -EPERM);
	assert_int_equal(wr(be, magic + 1, 3, 1), 0);  /* "\0FI\xfb": fine */
	assert_int_equal(wr(be, magic, 1, 0), -EPERM); /* completes it */
	assert_int_equal(wr(be, magic, 4, 512), 0);    /* elsewhere: fine */
	block_backend_destroy(be);
	o.format = BLOCK_FORMAT_RAW;
	assert_int_equal(block_open(&o, NULL, &be), 0);
	assert_int_equal(wr(be, magic, 4, 0), 0);
	assert_int_equal(rd(be, back, 4, 0), 0);
	assert_memory_equal(back, magic, 4);
	block_backend_destroy(be);
}

static void test_overlay(void **state)
{
	struct block_backend *base, *ov;
	uint8_t buf[200000], back[200000];
	struct iovec v = {buf, sizeof(buf)};

	(void)state;
	assert_int_equal(block_mem_create(1 << 20, false, NULL, &base), 0);
	memset(buf, 0x11, sizeof(buf));
	assert_int_equal(base->ops->writev(base, &v, 1, 0), 0);
	assert_int_equal(block_overlay_create(base, NULL, &ov), 0);
	/* a partial cluster write keeps the base's bytes around it */
	assert_int_equal(wr(ov, "abc", 3, 70000), 0);
	assert_int_equal(rd(ov, back, sizeof(back), 0), 0);
	assert_memory_equal(back + 70000, "abc", 3);
	back[70000] = back[70001] = back[70002] = 0x11;
	assert_memory_equal(back, buf, sizeof(back));
	assert_int_equal(ov->ops->write_zeroes(ov, 0, 1000, false), 0);
	assert_int_equal(rd(ov, back, 1000, 0), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(back[i], 0);
	assert_int_equal(wr(ov, "x", 1, 1 << 20), -EINVAL);
	/* the base never changed */
	{
		struct block_backend *b = base;
		struct iovec bv = {back, sizeof(back)};

		assert_int_equal(b->ops->readv(b, &bv, 1, 0), 0);
		assert_memory_equal(back, buf, sizeof(back));
	}
	block_backend_destroy(ov); /* and the base with it */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_read_reopen),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_hostile_tables),
		cmocka_unit_test(test_backing_chains),
		cmocka_unit_test(test_raw_header_guard),
		cmocka_unit_test(test_overlay),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
