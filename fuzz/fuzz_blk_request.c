/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: virtio-blk requests. The input is cut into a chain of
 * separately allocated segments (so ASan sees any overrun of one), parsed
 * with blk_parse_request and, through virtio_blk_handle_chain, executed
 * against a small in-memory disk. Invariants are checked on every input.
 *
 * Input: byte 0 = mode (bit 0: read-only device, bit 1: driver did not take
 * DISCARD/WRITE_ZEROES), then records {tag, len}: size = (tag >> 1 & 63) <<
 * 8 | len; tag bit 0 set: a writable segment of `size` bytes, else a
 * readable one whose `size` bytes come next in the input (zero-padded).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/blk.h"

#define DISK_SIZE (64u * 1024u)
#define MAX_SEGS  64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

struct fuzz_dev {
	struct block_backend *be;
	struct virtio_dev dev;
};

static struct fuzz_dev *get_dev(unsigned mode)
{
	static struct fuzz_dev devs[2];
	struct fuzz_dev *f = &devs[mode & 1];

	if (!f->be) {
		if (block_mem_create(DISK_SIZE, false, NULL, &f->be) < 0)
			return NULL;
		if (virtio_blk_create(f->be, mode & 1, &f->dev) < 0) {
			block_backend_destroy(f->be);
			f->be = NULL;
			return NULL;
		}
	}
	f->dev.driver_features = virtio_dev_features(&f->dev);
	if (mode & 2)
		f->dev.driver_features &= ~(1ull << VIRTIO_BLK_F_DISCARD |
					    1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_chain chain;
	static struct blk_request req;
	void *bufs[MAX_SEGS];
	unsigned nbufs = 0;
	struct fuzz_dev *f;
	struct virtio_blk_stats before, after;
	size_t pos = 1;
	int st;
	uint32_t written;

	if (size < 1)
		return 0;
	f = get_dev(data[0]);
	if (!f)
		return 0;
	memset(&chain, 0, sizeof(chain));
	while (pos + 2 <= size && nbufs < MAX_SEGS) {
		uint8_t tag = data[pos];
		size_t len = (size_t)((tag >> 1) & 63) << 8 | data[pos + 1];
		uint8_t *p;

		pos += 2;
		p = malloc(len ? len : 1);
		if (!p)
			break;
		bufs[nbufs++] = p;
		if (tag & 1) {
			memset(p, 0xee, len);
			chain.in[chain.n_in++] = (struct iovec){p, len};
			chain.in_len += len;
		} else {
			size_t n = size - pos < len ? size - pos : len;

			memcpy(p, data + pos, n);
			memset(p + n, 0, len - n);
			pos += n;
			chain.out[chain.n_out++] = (struct iovec){p, len};
			chain.out_len += len;
		}
	}

	st = blk_parse_request(&chain, &req);
	if (st >= 0) {
		check(st == VIRTIO_BLK_S_OK || st == VIRTIO_BLK_S_IOERR ||
		      st == VIRTIO_BLK_S_UNSUPP);
		check(req.status != NULL);
		check(req.n_data <= VIRTQ_MAX_SEGS);
		check(req.data_len < req.in_len ||
		      req.type == VIRTIO_BLK_T_OUT || req.data_len == 0);
		if (st == VIRTIO_BLK_S_OK && (req.type == VIRTIO_BLK_T_IN ||
					      req.type == VIRTIO_BLK_T_OUT))
			check(req.data_len % BLOCK_SECTOR_SIZE == 0);
		if (st == VIRTIO_BLK_S_OK &&
		    blk_check_request(&req, DISK_SIZE / 512, false) ==
			    VIRTIO_BLK_S_OK &&
		    req.type == VIRTIO_BLK_T_IN)
			check(req.sector * 512 + req.data_len <= DISK_SIZE);
	} else {
		check(chain.in_len == 0);
	}

	virtio_blk_get_stats(&f->dev, &before);
	written = virtio_blk_handle_chain(&f->dev, &chain);
	virtio_blk_get_stats(&f->dev, &after);
	if (st < 0) {
		check(written == 0);
		check(after.no_status == before.no_status + 1);
	} else {
		uint8_t status = *req.status;

		check(written >= 1 && written <= chain.in_len);
		check(status <= VIRTIO_BLK_S_UNSUPP);
		/* a read-only device never writes */
		if (data[0] & 1)
			check(after.writes == before.writes &&
			      after.discards == before.discards &&
			      after.write_zeroes == before.write_zeroes);
	}

	for (unsigned i = 0; i < nbufs; i++)
		free(bufs[i]);
	return 0;
}
