/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk: the request parser on hand-made chains (short, split and
 * missing headers, missing status, overflowing sectors, odd lengths,
 * discard segments), execution against memory and raw-file backends, the
 * whole path through a real split ring in fake guest RAM, and the raw
 * backend's open errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/block.h"
#include "fake_driver.h"
#include "test_log.h"
#include "virtio/blk.h"
#include "virtio/device_table.h"

#define MEM_DISK  (1u << 20)
#define RAM_SIZE  (1u << 20)
#define QSZ	  16
#define DESC_GPA  0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA  0x3000
#define BUF_GPA	  0x10000

/* ---- helpers ---- */

static void put_hdr(uint8_t *p, uint32_t type, uint64_t sector)
{
	memset(p, 0, BLK_HDR_SIZE);
	memcpy(p, &type, 4); /* the test host is little-endian, like x86 */
	memcpy(p + 8, &sector, 8);
}

static void put_seg(uint8_t *p, uint64_t sector, uint32_t num, uint32_t flags)
{
	memcpy(p, &sector, 8);
	memcpy(p + 8, &num, 4);
	memcpy(p + 12, &flags, 4);
}

/* A device over a fresh memory disk with every offered feature taken. */
struct blkdev {
	struct block_backend *be;
	struct virtio_dev dev;
};

static void blkdev_init(struct blkdev *b, struct block_backend *be,
			bool read_only)
{
	memset(b, 0, sizeof(*b));
	b->be = be;
	b->dev.log = &test_log;
	assert_int_equal(virtio_blk_create(be, read_only, &b->dev), 0);
	b->dev.driver_features = virtio_dev_features(&b->dev);
}

static void blkdev_init_mem(struct blkdev *b, bool read_only)
{
	struct block_backend *be;

	assert_int_equal(block_mem_create(MEM_DISK, false, &test_log, &be), 0);
	blkdev_init(b, be, read_only);
}

static void blkdev_fini(struct blkdev *b)
{
	virtio_blk_destroy(&b->dev);
	block_backend_destroy(b->be);
}

static struct virtio_blk_stats stats_of(struct blkdev *b)
{
	struct virtio_blk_stats s;

	virtio_blk_get_stats(&b->dev, &s);
	return s;
}

/* Runs one request: header {type, sector}, then out data, then in data of
 * in_len bytes, then a status byte. Returns the status; *written gets the
 * used length. */
static int run_req(struct blkdev *b, uint32_t type, uint64_t sector,
		   const void *out, size_t out_len, void *in, size_t in_len,
		   uint32_t *written)
{
	struct virtq_chain *c = fake_chain_new();
	uint8_t hdr[BLK_HDR_SIZE], status = 0xff;
	uint32_t w;

	put_hdr(hdr, type, sector);
	fake_chain_out(c, hdr, sizeof(hdr));
	if (out_len)
		fake_chain_out(c, (void *)out, out_len);
	if (in_len)
		fake_chain_in(c, in, in_len);
	fake_chain_in(c, &status, 1);
	w = virtio_blk_handle_chain(&b->dev, c);
	if (written)
		*written = w;
	free(c);
	return status;
}

static char *temp_file(uint64_t size)
{
	char *path = strdup("/tmp/kiln-test-blk-XXXXXX");
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	return path;
}

/* ---- parser ---- */

static void test_parse_short_header(void **state)
{
	struct virtq_chain *c = fake_chain_new();
	struct blk_request *req = malloc(sizeof(*req));
	uint8_t hdr[BLK_HDR_SIZE], status;

	(void)state;
	put_hdr(hdr, VIRTIO_BLK_T_IN, 0);
	fake_chain_out(c, hdr, 15);
	fake_chain_in(c, &status, 1);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);
	assert_ptr_equal(req->status, &status);
	free(req);
	free(c);
}

static void test_parse_header_spans_segments(void **state)
{
	struct virtq_chain *c = fake_chain_new();
	struct blk_request *req = malloc(sizeof(*req));
	uint8_t hdr[BLK_HDR_SIZE], data[1024], status;

	(void)state;
	put_hdr(hdr, VIRTIO_BLK_T_IN, 0x0102030405ull);
	fake_chain_out(c, hdr, 7);
	fake_chain_out(c, hdr + 7, 9);
	fake_chain_in(c, data, 512);
	fake_chain_in(c, data + 512, 512);
	fake_chain_in(c, &status, 1);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_OK);
	assert_int_equal(req->type, VIRTIO_BLK_T_IN);
	assert_int_equal(req->sector, 0x0102030405ull);
	assert_int_equal(req->n_data, 2);
	assert_int_equal(req->data_len, 1024);
	assert_ptr_equal(req->status, &status);
	free(req);
	free(c);
}

static void test_parse_status_shares_segment(void **state)
{
	struct virtq_chain *c = fake_chain_new();
	struct blk_request *req = malloc(sizeof(*req));
	uint8_t buf[BLK_HDR_SIZE + 512], in[513];

	(void)state;
	/* header and data in one readable buffer, data and status in one
	 * writable one: both sides must be split at the right byte */
	put_hdr(buf, VIRTIO_BLK_T_OUT, 1);
	fake_chain_out(c, buf, sizeof(buf));
	fake_chain_in(c, in, sizeof(in));
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_OK);
	assert_int_equal(req->n_data, 1);
	assert_ptr_equal(req->data[0].iov_base, buf + BLK_HDR_SIZE);
	assert_int_equal(req->data[0].iov_len, 512);
	assert_ptr_equal(req->status, in + 512);

	memset(c, 0, sizeof(*c));
	put_hdr(buf, VIRTIO_BLK_T_IN, 1);
	fake_chain_out(c, buf, BLK_HDR_SIZE);
	fake_chain_in(c, in, sizeof(in));
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_OK);
	assert_int_equal(req->n_data, 1);
	assert_ptr_equal(req->data[0].iov_base, in);
	assert_int_equal(req->data[0].iov_len, 512);
	assert_ptr_equal(req->status, in + 512);
	free(req);
	free(c);
}

static void test_parse_missing_status(void **state)
{
	struct virtq_chain *c = fake_chain_new();
	struct blk_request *req = malloc(sizeof(*req));
	uint8_t hdr[BLK_HDR_SIZE], data[512];

	(void)state;
	put_hdr(hdr, VIRTIO_BLK_T_OUT, 0);
	fake_chain_out(c, hdr, sizeof(hdr));
	fake_chain_out(c, data, sizeof(data));
	assert_int_equal(blk_parse_request(c, req), -EINVAL);
	/* an empty writable segment is no status byte either */
	fake_chain_in(c, data, 0);
	assert_int_equal(blk_parse_request(c, req), -EINVAL);
	free(req);
	free(c);
}

static void test_parse_status_only(void **state)
{
	struct virtq_chain *c = fake_chain_new();
	struct blk_request *req = malloc(sizeof(*req));
	uint8_t status = 0xff;

	(void)state;
	fake_chain_in(c, &status, 1);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);
	assert_ptr_equal(req->status, &status);
	free(req);
	free(c);
}

static void test_parse_sector_overflow(void **state)
{
	struct virtq_chain *c = fake_chain_new();
	struct blk_request *req = malloc(sizeof(*req));
	uint8_t hdr[BLK_HDR_SIZE], data[512], status;

	(void)state;
	fake_chain_out(c, hdr, sizeof(hdr));
	fake_chain_in(c, data, sizeof(data));
	fake_chain_in(c, &status, 1);
	/* sector * 512 wraps */
	put_hdr(hdr, VIRTIO_BLK_T_IN, UINT64_MAX / 512 + 1);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);
	put_hdr(hdr, VIRTIO_BLK_T_IN, UINT64_MAX);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);
	/* sector * 512 fits, + len wraps */
	put_hdr(hdr, VIRTIO_BLK_T_IN, UINT64_MAX / 512);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);
	/* the last representable sector with no data is fine for the parser
	 * (the capacity check rejects it) */
	put_hdr(hdr, VIRTIO_BLK_T_IN, UINT64_MAX / 512 - 1);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_check_request(req, 1u << 20, false),
			 VIRTIO_BLK_S_IOERR);
	free(req);
	free(c);
}

static void test_check_past_end(void **state)
{
	struct virtq_chain *c = fake_chain_new();
	struct blk_request *req = malloc(sizeof(*req));
	uint8_t hdr[BLK_HDR_SIZE], data[1024], status;

	(void)state;
	fake_chain_out(c, hdr, sizeof(hdr));
	fake_chain_in(c, data, sizeof(data));
	fake_chain_in(c, &status, 1);
	put_hdr(hdr, VIRTIO_BLK_T_IN, 7);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_check_request(req, 8, false), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_check_request(req, 9, false), VIRTIO_BLK_S_OK);
	put_hdr(hdr, VIRTIO_BLK_T_IN, 9);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_check_request(req, 8, false), VIRTIO_BLK_S_IOERR);
	free(req);
	free(c);
}

static void test_parse_len_not_multiple(void **state)
{
	struct virtq_chain *c = fake_chain_new();
	struct blk_request *req = malloc(sizeof(*req));
	uint8_t hdr[BLK_HDR_SIZE], data[600], status;

	(void)state;
	put_hdr(hdr, VIRTIO_BLK_T_IN, 0);
	fake_chain_out(c, hdr, sizeof(hdr));
	fake_chain_in(c, data, 511);
	fake_chain_in(c, &status, 1);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);

	memset(c, 0, sizeof(*c));
	put_hdr(hdr, VIRTIO_BLK_T_OUT, 0);
	fake_chain_out(c, hdr, sizeof(hdr));
	fake_chain_out(c, data, 600);
	fake_chain_in(c, &status, 1);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);
	free(req);
	free(c);
}

static void test_parse_unknown_type(void **state)
{
	struct virtq_chain *c = fake_chain_new();
	struct blk_request *req = malloc(sizeof(*req));
	uint8_t hdr[BLK_HDR_SIZE], status;
	static const uint32_t types[] = {2, 3, 10, 14, 0x80000000u, 255};

	(void)state;
	fake_chain_out(c, hdr, sizeof(hdr));
	fake_chain_in(c, &status, 1);
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		put_hdr(hdr, types[i], 0);
		assert_int_equal(blk_parse_request(c, req),
				 VIRTIO_BLK_S_UNSUPP);
	}
	free(req);
	free(c);
}

static void test_parse_dwz_segments(void **state)
{
	struct virtq_chain *c = fake_chain_new();
	struct blk_request *req = malloc(sizeof(*req));
	uint8_t hdr[BLK_HDR_SIZE],
		segs[BLK_DWZ_SEG_SIZE * (BLK_MAX_DWZ_SEGS + 1)];
	uint8_t status;

	(void)state;
	fake_chain_out(c, hdr, sizeof(hdr));
	fake_chain_out(c, segs, BLK_DWZ_SEG_SIZE);
	fake_chain_in(c, &status, 1);

	put_hdr(hdr, VIRTIO_BLK_T_WRITE_ZEROES, 0);
	put_seg(segs, 8, 16, VIRTIO_BLK_DWZ_F_UNMAP);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_OK);
	assert_int_equal(req->n_segs, 1);
	assert_int_equal(req->segs[0].sector, 8);
	assert_int_equal(req->segs[0].num_sectors, 16);
	assert_int_equal(req->segs[0].flags, VIRTIO_BLK_DWZ_F_UNMAP);
	assert_int_equal(blk_check_request(req, 24, false), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_check_request(req, 23, false), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_check_request(req, 24, true), VIRTIO_BLK_S_IOERR);

	/* unmap is for write zeroes only; unknown flags are unsupported */
	put_hdr(hdr, VIRTIO_BLK_T_DISCARD, 0);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_UNSUPP);
	put_seg(segs, 8, 16, 2);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_UNSUPP);
	/* too big a segment, or one wrapping */
	put_seg(segs, 8, BLK_MAX_DWZ_SECTORS + 1, 0);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);
	put_seg(segs, UINT64_MAX - 4, 16, 0);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);

	/* segment payload split over descriptors, odd or empty payload */
	put_seg(segs, 8, 16, 0);
	c->out[1].iov_len = 5;
	fake_chain_out(c, segs + 5, BLK_DWZ_SEG_SIZE - 5);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_OK);
	assert_int_equal(req->segs[0].num_sectors, 16);
	c->out[2].iov_len = 3;
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);
	c->n_out = 1;
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);

	/* count limit */
	for (unsigned i = 0; i <= BLK_MAX_DWZ_SEGS; i++)
		put_seg(segs + BLK_DWZ_SEG_SIZE * i, i, 1, 0);
	c->n_out = 1;
	fake_chain_out(c, segs, BLK_DWZ_SEG_SIZE * BLK_MAX_DWZ_SEGS);
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_OK);
	assert_int_equal(req->n_segs, BLK_MAX_DWZ_SEGS);
	c->out[1].iov_len += BLK_DWZ_SEG_SIZE;
	assert_int_equal(blk_parse_request(c, req), VIRTIO_BLK_S_IOERR);
	free(req);
	free(c);
}

/* ---- device over backends ---- */

static void test_config_and_features(void **state)
{
	struct blkdev b;
	uint8_t cfg[BLK_CONFIG_SIZE];
	uint64_t cap, f;
	uint32_t v;

	(void)state;
	blkdev_init_mem(&b, false);
	assert_int_equal(b.dev.ops->device_id, VIRTIO_ID_BLOCK);
	assert_int_equal(b.dev.ops->num_queues, 1);
	assert_int_equal(b.dev.ops->queue_max_size, 256);
	assert_int_equal(b.dev.ops->config_size, BLK_CONFIG_SIZE);
	b.dev.ops->config_read(&b.dev, 0, cfg, sizeof(cfg));
	memcpy(&cap, cfg + BLK_CFG_CAPACITY, 8);
	assert_int_equal(cap, MEM_DISK / 512);
	memcpy(&v, cfg + BLK_CFG_SEG_MAX, 4);
	assert_int_equal(v, 254);
	memcpy(&v, cfg + BLK_CFG_BLK_SIZE, 4);
	assert_int_equal(v, 512);
	memcpy(&v, cfg + BLK_CFG_MAX_DISCARD_SEG, 4);
	assert_int_equal(v, BLK_MAX_DWZ_SEGS);
	assert_int_equal(cfg[BLK_CFG_WZ_MAY_UNMAP], 1);
	f = virtio_dev_features(&b.dev);
	assert_true(f & 1ull << VIRTIO_BLK_F_SEG_MAX);
	assert_true(f & 1ull << VIRTIO_BLK_F_BLK_SIZE);
	assert_true(f & 1ull << VIRTIO_BLK_F_FLUSH);
	assert_true(f & 1ull << VIRTIO_BLK_F_DISCARD);
	assert_true(f & 1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	assert_false(f & 1ull << VIRTIO_BLK_F_RO);
	/* partial reads at an offset (the transport reads 1, 2 or 4 bytes) */
	b.dev.ops->config_read(&b.dev, BLK_CFG_CAPACITY + 1, cfg, 1);
	assert_int_equal(cfg[0], (MEM_DISK / 512) >> 8 & 0xff);
	blkdev_fini(&b);

	blkdev_init_mem(&b, true);
	f = virtio_dev_features(&b.dev);
	assert_true(f & 1ull << VIRTIO_BLK_F_RO);
	assert_false(f & 1ull << VIRTIO_BLK_F_DISCARD);
	blkdev_fini(&b);
}

static void test_mem_write_read(void **state)
{
	struct blkdev b;
	uint8_t out[4096], in[4096];
	uint32_t w;

	(void)state;
	blkdev_init_mem(&b, false);
	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_OUT, 10, out, sizeof(out),
				 NULL, 0, &w),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(w, 1);
	assert_int_equal(
		run_req(&b, VIRTIO_BLK_T_IN, 10, NULL, 0, in, sizeof(in), &w),
		VIRTIO_BLK_S_OK);
	assert_int_equal(w, sizeof(in) + 1);
	assert_memory_equal(in, out, sizeof(in));
	/* the last sector is readable, the one after is not */
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_IN, MEM_DISK / 512 - 1, NULL,
				 0, in, 512, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_IN, MEM_DISK / 512 - 1, NULL,
				 0, in, 1024, &w),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(w, 1);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_OUT, MEM_DISK / 512, out, 512,
				 NULL, 0, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(stats_of(&b).reads, 2);
	assert_int_equal(stats_of(&b).writes, 1);
	assert_int_equal(stats_of(&b).ioerr, 2);
	blkdev_fini(&b);
}

static void test_status_only_and_no_status(void **state)
{
	struct blkdev b;
	struct virtq_chain *c = fake_chain_new();
	uint8_t status = 0xff, hdr[BLK_HDR_SIZE];

	(void)state;
	blkdev_init_mem(&b, false);
	fake_chain_in(c, &status, 1);
	assert_int_equal(virtio_blk_handle_chain(&b.dev, c), 1);
	assert_int_equal(status, VIRTIO_BLK_S_IOERR);

	memset(c, 0, sizeof(*c));
	put_hdr(hdr, VIRTIO_BLK_T_FLUSH, 0);
	fake_chain_out(c, hdr, sizeof(hdr));
	assert_int_equal(virtio_blk_handle_chain(&b.dev, c), 0);
	assert_int_equal(stats_of(&b).no_status, 1);
	free(c);
	blkdev_fini(&b);
}

static void test_read_only(void **state)
{
	struct blkdev b;
	uint8_t data[512] = {1}, seg[BLK_DWZ_SEG_SIZE];

	(void)state;
	blkdev_init_mem(&b, true);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_OUT, 0, data, sizeof(data),
				 NULL, 0, NULL),
			 VIRTIO_BLK_S_IOERR);
	put_seg(seg, 0, 1, 0);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_DISCARD, 0, seg, sizeof(seg),
				 NULL, 0, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_WRITE_ZEROES, 0, seg,
				 sizeof(seg), NULL, 0, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(stats_of(&b).ro_refused, 3);
	assert_int_equal(stats_of(&b).writes, 0);
	/* reads still work; the disk was never written */
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_IN, 0, NULL, 0, data,
				 sizeof(data), NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(data[0], 0);
	blkdev_fini(&b);

	/* a read-only backend makes a read-only device */
	{
		struct block_backend *be;

		assert_int_equal(
			block_mem_create(MEM_DISK, true, &test_log, &be), 0);
		blkdev_init(&b, be, false);
		assert_true(virtio_dev_features(&b.dev) &
			    1ull << VIRTIO_BLK_F_RO);
		assert_int_equal(run_req(&b, VIRTIO_BLK_T_OUT, 0, data,
					 sizeof(data), NULL, 0, NULL),
				 VIRTIO_BLK_S_IOERR);
		assert_int_equal(stats_of(&b).ro_refused, 1);
		blkdev_fini(&b);
	}
}

static void test_get_id(void **state)
{
	struct blkdev b;
	uint8_t id[BLOCK_ID_BYTES], small[4];
	uint32_t w;

	(void)state;
	blkdev_init_mem(&b, false);
	assert_int_equal(block_backend_set_id(b.be, "disk-serial-0001"), 0);
	memset(id, 0xaa, sizeof(id));
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_GET_ID, 0, NULL, 0, id,
				 sizeof(id), &w),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(w, BLOCK_ID_BYTES + 1);
	assert_memory_equal(id, "disk-serial-0001\0\0\0\0", BLOCK_ID_BYTES);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_GET_ID, 0, NULL, 0, small,
				 sizeof(small), &w),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(w, sizeof(small) + 1);
	assert_memory_equal(small, "disk", 4);
	/* 20 bytes is the limit */
	assert_int_equal(block_backend_set_id(b.be, "123456789012345678901"),
			 -EINVAL);
	assert_int_equal(block_backend_set_id(b.be, "12345678901234567890"), 0);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_GET_ID, 0, NULL, 0, id,
				 sizeof(id), NULL),
			 VIRTIO_BLK_S_OK);
	assert_memory_equal(id, "12345678901234567890", BLOCK_ID_BYTES);
	blkdev_fini(&b);
}

static void test_unknown_type_unsupp(void **state)
{
	struct blkdev b;
	uint8_t seg[BLK_DWZ_SEG_SIZE];
	uint32_t w;

	(void)state;
	blkdev_init_mem(&b, false);
	assert_int_equal(run_req(&b, 2, 0, NULL, 0, NULL, 0, &w),
			 VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(w, 1);
	/* not negotiated: unsupported too */
	b.dev.driver_features &= ~(1ull << VIRTIO_BLK_F_DISCARD);
	put_seg(seg, 0, 1, 0);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_DISCARD, 0, seg, sizeof(seg),
				 NULL, 0, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(stats_of(&b).unsupp, 2);
	blkdev_fini(&b);
}

/* Fills a raw file with a non-zero pattern through the device. */
static void fill_pattern(struct blkdev *b, uint64_t bytes)
{
	uint8_t *buf = malloc(bytes);

	assert_non_null(buf);
	memset(buf, 0x5a, bytes);
	assert_int_equal(
		run_req(b, VIRTIO_BLK_T_OUT, 0, buf, bytes, NULL, 0, NULL),
		VIRTIO_BLK_S_OK);
	free(buf);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void test_raw_flush_discard_write_zeroes(void **state)
{
	const uint64_t size = 64 * 1024;
	char *path = temp_file(size);
	struct block_backend *be;
	struct blkdev b;
	uint8_t seg[2 * BLK_DWZ_SEG_SIZE], *buf = malloc(size);
	off_t hole;
	int fd;

	(void)state;
	assert_non_null(buf);
	assert_int_equal(block_raw_open(path, false, &test_log, &be), 0);
	blkdev_init(&b, be, false);
	fill_pattern(&b, size);
	assert_int_equal(
		run_req(&b, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, NULL, 0, NULL),
		VIRTIO_BLK_S_OK);
	assert_int_equal(stats_of(&b).flushes, 1);

	/* discard [8 KiB, 16 KiB): punched, so a hole there */
	put_seg(seg, 16, 16, 0);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_DISCARD, 0, seg,
				 BLK_DWZ_SEG_SIZE, NULL, 0, NULL),
			 VIRTIO_BLK_S_OK);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	hole = lseek(fd, 0, SEEK_HOLE);
	assert_int_equal(hole, 8192);
	assert_int_equal(lseek(fd, hole, SEEK_DATA), 16384);

	/* write zeroes with unmap at [32 KiB, 36 KiB) and without at
	 * [40 KiB, 41 KiB): both read back as zeros, neighbours intact */
	put_seg(seg, 64, 8, VIRTIO_BLK_DWZ_F_UNMAP);
	put_seg(seg + BLK_DWZ_SEG_SIZE, 80, 2, 0);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_WRITE_ZEROES, 0, seg,
				 sizeof(seg), NULL, 0, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(stats_of(&b).write_zeroes, 1);
	assert_int_equal(stats_of(&b).discards, 1);
	assert_int_equal(pread(fd, buf, size, 0), (ssize_t)size);
	assert_true(all_zero(buf + 8192, 8192));
	assert_true(all_zero(buf + 32768, 4096));
	assert_true(all_zero(buf + 40960, 1024));
	assert_int_equal(buf[8191], 0x5a);
	assert_int_equal(buf[16384], 0x5a);
	assert_int_equal(buf[32767], 0x5a);
	assert_int_equal(buf[36864], 0x5a);
	assert_int_equal(buf[40959], 0x5a);
	assert_int_equal(buf[41984], 0x5a);
	assert_int_equal(lseek(fd, 16384, SEEK_HOLE), 32768);
	/* the file never grows */
	put_seg(seg, size / 512 - 1, 2, 0);
	assert_int_equal(run_req(&b, VIRTIO_BLK_T_WRITE_ZEROES, 0, seg,
				 BLK_DWZ_SEG_SIZE, NULL, 0, NULL),
			 VIRTIO_BLK_S_IOERR);
	{
		struct stat st;

		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_size, size);
	}
	close(fd);
	blkdev_fini(&b);
	unlink(path);
	free(path);
	free(buf);
}

/* tmpfs has holes but no FALLOC_FL_ZERO_RANGE: write zeroes without unmap
 * must fall back and still read back zeros, twice (the refusal is cached). */
static void test_raw_zero_range_fallback(void **state)
{
	char path[] = "/dev/shm/kiln-test-blk-XXXXXX";
	struct block_backend *be;
	struct blkdev b;
	uint8_t seg[BLK_DWZ_SEG_SIZE], buf[8192];
	int fd;

	(void)state;
	fd = mkstemp(path);
	if (fd < 0)
		skip();
	assert_int_equal(ftruncate(fd, sizeof(buf)), 0);
	assert_int_equal(block_raw_open(path, false, &test_log, &be), 0);
	blkdev_init(&b, be, false);
	for (int round = 0; round < 2; round++) {
		fill_pattern(&b, sizeof(buf));
		put_seg(seg, 1, 9, 0);
		assert_int_equal(run_req(&b, VIRTIO_BLK_T_WRITE_ZEROES, 0, seg,
					 sizeof(seg), NULL, 0, NULL),
				 VIRTIO_BLK_S_OK);
		assert_int_equal(pread(fd, buf, sizeof(buf), 0),
				 (ssize_t)sizeof(buf));
		assert_int_equal(buf[511], 0x5a);
		assert_true(all_zero(buf + 512, 9 * 512));
		assert_int_equal(buf[10 * 512], 0x5a);
	}
	close(fd);
	blkdev_fini(&b);
	unlink(path);
}

static void test_raw_read_only_open(void **state)
{
	char *path = temp_file(4096);
	struct block_backend *be;
	uint8_t data[512] = {0};
	struct iovec iov = {data, sizeof(data)};

	(void)state;
	assert_int_equal(block_raw_open(path, true, &test_log, &be), 0);
	assert_true(be->read_only);
	assert_int_equal(be->ops->writev(be, &iov, 1, 0), -EROFS);
	assert_int_equal(be->ops->discard(be, 0, 512), -EROFS);
	assert_int_equal(be->ops->write_zeroes(be, 0, 512, true), -EROFS);
	assert_int_equal(be->ops->readv(be, &iov, 1, 0), 0);
	assert_int_equal(be->ops->flush(be), 0);
	block_backend_destroy(be);
	unlink(path);
	free(path);
}

static void test_raw_backend_bounds_and_many_iovecs(void **state)
{
	const uint64_t size = 2048 * 512;
	char *path = temp_file(size);
	struct block_backend *be;
	struct iovec *iov = calloc(2048, sizeof(*iov));
	uint8_t *buf = malloc(size), *back = malloc(size);

	(void)state;
	assert_non_null(iov);
	assert_non_null(buf);
	assert_non_null(back);
	assert_int_equal(block_raw_open(path, false, &test_log, &be), 0);
	assert_int_equal(block_backend_size(be), size);
	assert_string_not_equal(be->id, "");
	/* more iovecs than IOV_MAX: the backend splits the call */
	for (unsigned i = 0; i < 2048; i++) {
		memset(buf + 512 * i, (int)(i & 0xff), 512);
		iov[i] = (struct iovec){buf + 512 * i, 512};
	}
	assert_int_equal(be->ops->writev(be, iov, 2048, 0), 0);
	for (unsigned i = 0; i < 2048; i++)
		iov[i] = (struct iovec){back + 512 * i, 512};
	assert_int_equal(be->ops->readv(be, iov, 2048, 0), 0);
	assert_memory_equal(buf, back, size);
	/* out of range, even by one byte, and never growing the file */
	assert_int_equal(be->ops->readv(be, iov, 1, size - 511), -EINVAL);
	assert_int_equal(be->ops->writev(be, iov, 1, size), -EINVAL);
	assert_int_equal(be->ops->writev(be, iov, 1, UINT64_MAX - 100),
			 -EINVAL);
	assert_int_equal(be->ops->discard(be, size, 512), -EINVAL);
	assert_int_equal(be->ops->write_zeroes(be, 512, size, false), -EINVAL);
	assert_int_equal(block_backend_size(be), size);
	block_backend_destroy(be);
	unlink(path);
	free(path);
	free(iov);
	free(buf);
	free(back);
}

static void test_raw_open_errors(void **state)
{
	struct block_backend *be = NULL;
	char dir[] = "/tmp/kiln-test-blkdir-XXXXXX";
	char *odd;
	int fd;

	(void)state;
	n_logs = 0;
	assert_int_equal(block_raw_open("/nonexistent/kiln-disk.img", false,
					&test_log, &be),
			 -ENOENT);
	assert_non_null(strstr(last_log, "no such file"));
	assert_non_null(strstr(last_log, "/nonexistent/kiln-disk.img"));

	assert_non_null(mkdtemp(dir));
	assert_int_equal(block_raw_open(dir, false, &test_log, &be), -EISDIR);
	assert_non_null(strstr(last_log, "directory"));
	assert_int_equal(block_raw_open(dir, true, &test_log, &be), -EISDIR);
	assert_non_null(strstr(last_log, "directory"));
	rmdir(dir);

	odd = temp_file(1000);
	assert_int_equal(block_raw_open(odd, false, &test_log, &be), -EINVAL);
	assert_non_null(strstr(last_log, "multiple of 512"));
	unlink(odd);
	free(odd);

	assert_int_equal(block_raw_open("/dev/null", true, &test_log, &be),
			 -EINVAL);
	assert_non_null(strstr(last_log, "not a regular file"));

	assert_int_equal(block_mem_create(0, false, &test_log, &be), -EINVAL);
	assert_int_equal(block_mem_create(513, false, &test_log, &be), -EINVAL);
	assert_int_equal(n_logs, 7);
	assert_null(be);

	/* a sparse file is fine, and reads back zeros */
	odd = temp_file(1ull << 30);
	assert_int_equal(block_raw_open(odd, false, &test_log, &be), 0);
	{
		uint8_t buf[512] = {1};
		struct iovec iov = {buf, sizeof(buf)};

		assert_int_equal(
			be->ops->readv(be, &iov, 1, (1ull << 30) - 512), 0);
		assert_true(all_zero(buf, sizeof(buf)));
	}
	block_backend_destroy(be);
	fd = open(odd, O_RDONLY);
	assert_true(fd >= 0);
	close(fd);
	unlink(odd);
	free(odd);
}

/* issue 18: a FIFO (nobody at the other end) as a disk is refused at
 * once, read-only or not, instead of blocking open() forever. */
static void test_raw_open_fifo(void **state)
{
	struct block_backend *be = NULL;
	char dir[] = "/tmp/kiln-test-blkfifo-XXXXXX", path[64];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	alarm(10); /* a regression hangs: let SIGALRM end the test */
	assert_int_equal(block_raw_open(path, true, &test_log, &be), -EINVAL);
	assert_non_null(strstr(last_log, "is a FIFO, not a regular file"));
	assert_int_equal(block_raw_open(path, false, &test_log, &be), -EINVAL);
	assert_non_null(strstr(last_log, "FIFO"));
	alarm(0);
	assert_null(be);
	unlink(path);
	rmdir(dir);
}

static void test_mem_backend_zeroing(void **state)
{
	struct block_backend *be;
	uint8_t *buf = malloc(3 * 4096);
	struct iovec iov = {buf, 3 * 4096};

	(void)state;
	assert_non_null(buf);
	assert_int_equal(block_mem_create(MEM_DISK, false, &test_log, &be), 0);
	memset(buf, 0x77, 3 * 4096);
	assert_int_equal(be->ops->writev(be, &iov, 1, 4096), 0);
	/* unaligned range over whole pages: edges memset, middle dropped */
	assert_int_equal(be->ops->write_zeroes(be, 4096 + 512, 8192, true), 0);
	assert_int_equal(be->ops->readv(be, &iov, 1, 4096), 0);
	assert_int_equal(buf[511], 0x77);
	assert_true(all_zero(buf + 512, 8192));
	assert_int_equal(buf[512 + 8192], 0x77);
	assert_int_equal(be->ops->discard(be, MEM_DISK, 512), -EINVAL);
	block_backend_destroy(be);
	free(buf);
}

/* ---- the whole path: a driver on a real split ring in fake RAM ---- */

struct ring_env {
	uint8_t *ram;
	struct guest_mem mem;
	struct blkdev b;
	struct fake_vq vq;
	struct fake_transport tr;
};

static void ring_env_init(struct ring_env *e)
{
	memset(e, 0, sizeof(*e));
	e->ram = calloc(1, RAM_SIZE);
	assert_non_null(e->ram);
	guest_mem_init(&e->mem, e->ram, RAM_SIZE);
	blkdev_init_mem(&e->b, false);
	fake_driver_bind(&e->b.dev, &e->mem, &e->tr);
	fake_driver_take_features(&e->b.dev);
	e->vq = (struct fake_vq){.ram = e->ram,
				 .desc_gpa = DESC_GPA,
				 .avail_gpa = AVAIL_GPA,
				 .used_gpa = USED_GPA,
				 .size = QSZ};
	assert_int_equal(fake_vq_attach(&e->vq, &e->b.dev.vqs[0],
					e->b.dev.ops->queue_max_size),
			 0);
	fake_driver_ok(&e->b.dev);
}

static void ring_env_fini(struct ring_env *e)
{
	blkdev_fini(&e->b);
	free(e->ram);
}

/* Queues {hdr, data, status} at descriptors head..head+2; hdr at gpa,
 * data at gpa+512, status at gpa+511. */
static void queue_rw(struct ring_env *e, uint16_t head, uint64_t gpa,
		     uint32_t type, uint64_t sector, uint32_t len)
{
	bool in = type == VIRTIO_BLK_T_IN;

	put_hdr(e->ram + gpa, type, sector);
	e->ram[gpa + 511] = 0xff;
	fake_vq_desc(&e->vq, head, gpa, BLK_HDR_SIZE, VIRTQ_DESC_F_NEXT,
		     head + 1);
	fake_vq_desc(&e->vq, head + 1, gpa + 512, len,
		     VIRTQ_DESC_F_NEXT | (in ? VIRTQ_DESC_F_WRITE : 0),
		     head + 2);
	fake_vq_desc(&e->vq, head + 2, gpa + 511, 1, VIRTQ_DESC_F_WRITE, 0);
	fake_vq_publish(&e->vq, head);
}

static void test_ring_write_then_read(void **state)
{
	struct ring_env *e = malloc(sizeof(*e));
	uint32_t id, len;

	(void)state;
	assert_non_null(e);
	ring_env_init(e);
	for (unsigned i = 0; i < 8192; i++)
		e->ram[BUF_GPA + 512 + i] = (uint8_t)(i * 13 + 1);
	queue_rw(e, 0, BUF_GPA, VIRTIO_BLK_T_OUT, 100, 8192);
	e->b.dev.ops->queue_notify(&e->b.dev, 0);
	assert_true(fake_vq_take_used(&e->vq, &id, &len));
	assert_int_equal(id, 0);
	assert_int_equal(len, 1);
	assert_int_equal(e->ram[BUF_GPA + 511], VIRTIO_BLK_S_OK);
	assert_int_equal(e->tr.notified, 1);

	/* two reads in one notify: one of them past the end */
	queue_rw(e, 3, 0x20000, VIRTIO_BLK_T_IN, 100, 8192);
	queue_rw(e, 6, 0x30000, VIRTIO_BLK_T_IN, MEM_DISK / 512 - 1, 1024);
	e->b.dev.ops->queue_notify(&e->b.dev, 0);
	assert_true(fake_vq_take_used(&e->vq, &id, &len));
	assert_int_equal(id, 3);
	assert_int_equal(len, 8193);
	assert_int_equal(e->ram[0x20000 + 511], VIRTIO_BLK_S_OK);
	assert_memory_equal(e->ram + 0x20000 + 512, e->ram + BUF_GPA + 512,
			    8192);
	assert_true(fake_vq_take_used(&e->vq, &id, &len));
	assert_int_equal(id, 6);
	assert_int_equal(len, 1);
	assert_int_equal(e->ram[0x30000 + 511], VIRTIO_BLK_S_IOERR);
	assert_false(fake_vq_take_used(&e->vq, &id, &len));

	/* a chain without status comes back with 0 written */
	put_hdr(e->ram + 0x40000, VIRTIO_BLK_T_FLUSH, 0);
	fake_vq_desc(&e->vq, 9, 0x40000, BLK_HDR_SIZE, 0, 0);
	fake_vq_publish(&e->vq, 9);
	e->b.dev.ops->queue_notify(&e->b.dev, 0);
	assert_true(fake_vq_take_used(&e->vq, &id, &len));
	assert_int_equal(id, 9);
	assert_int_equal(len, 0);
	assert_int_equal(e->tr.resets, 0);

	/* a descriptor outside RAM breaks the ring: needs reset, and the
	 * device stops serving the queue */
	fake_vq_desc(&e->vq, 10, RAM_SIZE - 8, BLK_HDR_SIZE, 0, 0);
	fake_vq_publish(&e->vq, 10);
	e->b.dev.ops->queue_notify(&e->b.dev, 0);
	assert_int_equal(e->tr.resets, 1);
	assert_true(e->b.dev.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_false(fake_vq_take_used(&e->vq, &id, &len));
	queue_rw(e, 0, BUF_GPA, VIRTIO_BLK_T_IN, 0, 512);
	e->b.dev.ops->queue_notify(&e->b.dev, 0);
	assert_false(fake_vq_take_used(&e->vq, &id, &len));
	assert_int_equal(e->tr.resets, 1);
	ring_env_fini(e);
	free(e);
}

static void test_destroy_idempotent(void **state)
{
	struct blkdev b;

	(void)state;
	blkdev_init_mem(&b, false);
	virtio_blk_destroy(&b.dev);
	virtio_blk_destroy(&b.dev);
	/* ops on a destroyed device are harmless */
	b.dev.ops->queue_notify(&b.dev, 0);
	block_backend_destroy(b.be);
	block_backend_destroy(NULL);
	virtio_blk_destroy(NULL);
}

/* ---- asynchronous execution (a disk made from options) ---- */

#define A_QSZ  256
#define A_RAM  (4u << 20)
#define A_REQS 60 /* more than the 32 a disk runs at once */
#define A_DATA 0x100000

struct async_env {
	uint8_t *ram;
	struct guest_mem mem;
	struct virtio_dev dev;
	struct fake_vq vq;
	struct fake_transport tr;
	char path[64];
};

static void async_env_init(struct async_env *e)
{
	char spec[128];
	struct virtio_dev_opts o;
	int fd;

	memset(e, 0, sizeof(*e));
	snprintf(e->path, sizeof(e->path), "/tmp/kiln-blk-async-XXXXXX");
	fd = mkstemp(e->path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	e->ram = calloc(1, A_RAM);
	assert_non_null(e->ram);
	guest_mem_init(&e->mem, e->ram, A_RAM);
	snprintf(spec, sizeof(spec), "blk,path=%s", e->path);
	assert_int_equal(virtio_dev_opts_parse(spec, &test_log, &o), 0);
	assert_int_equal(virtio_dev_create(&e->dev, &o, &test_log), 0);
	virtio_dev_opts_free(&o);
	fake_driver_bind(&e->dev, &e->mem, &e->tr);
	fake_driver_take_features(&e->dev);
	e->vq = (struct fake_vq){.ram = e->ram,
				 .desc_gpa = 0x1000,
				 .avail_gpa = 0x5000,
				 .used_gpa = 0x6000,
				 .size = A_QSZ};
	assert_int_equal(fake_vq_attach(&e->vq, &e->dev.vqs[0], A_QSZ), 0);
	fake_driver_ok(&e->dev);
}

/* Request i: {hdr, 4 KiB at sector 8*i, status}, descriptors 3i..3i+2. */
static void async_queue(struct async_env *e, unsigned i, uint32_t type)
{
	uint64_t gpa = A_DATA + i * 8192ull;

	put_hdr(e->ram + gpa, type, 8ull * i);
	e->ram[gpa + 511] = 0xff;
	fake_vq_desc(&e->vq, (uint16_t)(3 * i), gpa, BLK_HDR_SIZE,
		     VIRTQ_DESC_F_NEXT, (uint16_t)(3 * i + 1));
	fake_vq_desc(&e->vq, (uint16_t)(3 * i + 1), gpa + 512, 4096,
		     VIRTQ_DESC_F_NEXT |
			     (type == VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0),
		     (uint16_t)(3 * i + 2));
	fake_vq_desc(&e->vq, (uint16_t)(3 * i + 2), gpa + 511, 1,
		     VIRTQ_DESC_F_WRITE, 0);
	fake_vq_publish(&e->vq, (uint16_t)(3 * i));
}

/* Serves the device's host fd until n used elements came (5 s at most). */
static unsigned async_collect(struct async_env *e, unsigned n, bool *seen)
{
	unsigned got = 0;

	for (int spin = 0; got < n && spin < 5000; spin++) {
		uint32_t id, len;

		usleep(1000);
		e->dev.ops->host_events(&e->dev);
		while (fake_vq_take_used(&e->vq, &id, &len)) {
			assert_int_equal(id % 3, 0);
			assert_false(seen[id / 3]);
			seen[id / 3] = true;
			got++;
		}
	}
	return got;
}

static void async_many_in_flight(void);

/* io_uring where the kernel has it, then the worker threads */
static void test_async_many_in_flight(void **state)
{
	(void)state;
	unsetenv("KILN_IO_URING");
	async_many_in_flight();
	setenv("KILN_IO_URING", "0", 1);
	async_many_in_flight();
	unsetenv("KILN_IO_URING");
}

static void async_many_in_flight(void)
{
	struct async_env *e = malloc(sizeof(*e));
	bool seen[A_REQS] = {false};
	int fd;

	assert_non_null(e);
	async_env_init(e);
	assert_true(e->dev.ops->host_fd(&e->dev) >= 0);
	for (unsigned i = 0; i < A_REQS; i++) {
		memset(e->ram + A_DATA + i * 8192ull + 512, (int)(i + 1), 4096);
		async_queue(e, i, VIRTIO_BLK_T_OUT);
	}
	/* the notify returns at once: the workers do the writing */
	e->dev.ops->queue_notify(&e->dev, 0);
	assert_int_equal(async_collect(e, A_REQS, seen), A_REQS);
	for (unsigned i = 0; i < A_REQS; i++)
		assert_int_equal(e->ram[A_DATA + i * 8192ull + 511],
				 VIRTIO_BLK_S_OK);
	fd = open(e->path, O_RDONLY);
	for (unsigned i = 0; i < A_REQS; i++) {
		uint8_t b[4096];

		assert_int_equal(pread(fd, b, 4096, 4096ll * i), 4096);
		assert_int_equal(b[0], i + 1);
		assert_int_equal(b[4095], i + 1);
	}
	close(fd);
	/* reads queued, then a reset with them in flight: no crash, no used
	 * element after it, and the device works again afterwards */
	e->vq.avail_idx = e->vq.used_seen = 0;
	virtio_dev_reset(&e->dev);
	fake_driver_take_features(&e->dev);
	assert_int_equal(fake_vq_attach(&e->vq, &e->dev.vqs[0], A_QSZ), 0);
	memset(e->ram + 0x5000, 0, 0x2000);
	fake_driver_ok(&e->dev);
	for (unsigned i = 0; i < A_REQS; i++)
		async_queue(e, i, VIRTIO_BLK_T_IN);
	e->dev.ops->queue_notify(&e->dev, 0);
	virtio_dev_reset(&e->dev);
	e->dev.ops->host_events(&e->dev);
	{
		uint32_t id, len;

		memset(e->ram + 0x6000, 0, 4);
		e->vq.used_seen = 0;
		assert_false(fake_vq_take_used(&e->vq, &id, &len));
	}
	virtio_dev_destroy(&e->dev);
	unlink(e->path);
	free(e->ram);
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_short_header),
		cmocka_unit_test(test_parse_header_spans_segments),
		cmocka_unit_test(test_parse_status_shares_segment),
		cmocka_unit_test(test_parse_missing_status),
		cmocka_unit_test(test_parse_status_only),
		cmocka_unit_test(test_parse_sector_overflow),
		cmocka_unit_test(test_check_past_end),
		cmocka_unit_test(test_parse_len_not_multiple),
		cmocka_unit_test(test_parse_unknown_type),
		cmocka_unit_test(test_parse_dwz_segments),
		cmocka_unit_test(test_config_and_features),
		cmocka_unit_test(test_mem_write_read),
		cmocka_unit_test(test_status_only_and_no_status),
		cmocka_unit_test(test_read_only),
		cmocka_unit_test(test_get_id),
		cmocka_unit_test(test_unknown_type_unsupp),
		cmocka_unit_test(test_raw_flush_discard_write_zeroes),
		cmocka_unit_test(test_raw_zero_range_fallback),
		cmocka_unit_test(test_raw_read_only_open),
		cmocka_unit_test(test_raw_backend_bounds_and_many_iovecs),
		cmocka_unit_test(test_raw_open_errors),
		cmocka_unit_test(test_raw_open_fifo),
		cmocka_unit_test(test_mem_backend_zeroing),
		cmocka_unit_test(test_ring_write_then_read),
		cmocka_unit_test(test_async_many_in_flight),
		cmocka_unit_test(test_destroy_idempotent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
