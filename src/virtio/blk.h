/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk (virtio 1.2, 5.2) over a block backend: one request queue,
 * requests executed synchronously on the device thread. The request parser
 * is pure (no device, no backend) so that fuzzers and unit tests can drive
 * it with hand-made chains.
 */
#ifndef KILN_VIRTIO_BLK_H
#define KILN_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "backends/block.h"
#include "virtio/virtio.h"

/* Feature bits (virtio 1.2, 5.2.3) */
#define VIRTIO_BLK_F_SIZE_MAX	  1
#define VIRTIO_BLK_F_SEG_MAX	  2
#define VIRTIO_BLK_F_RO		  5
#define VIRTIO_BLK_F_BLK_SIZE	  6
#define VIRTIO_BLK_F_FLUSH	  9
#define VIRTIO_BLK_F_DISCARD	  13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types (5.2.6) */
#define VIRTIO_BLK_T_IN		  0
#define VIRTIO_BLK_T_OUT	  1
#define VIRTIO_BLK_T_FLUSH	  4
#define VIRTIO_BLK_T_GET_ID	  8
#define VIRTIO_BLK_T_DISCARD	  11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

/* Status byte values */
#define VIRTIO_BLK_S_OK	    0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_DWZ_F_UNMAP 1u /* discard/write-zeroes segment flag */

#define BLK_HDR_SIZE		  16 /* le32 type, le32 reserved, le64 sector */
#define BLK_DWZ_SEG_SIZE	  16 /* le64 sector, le32 num_sectors, le32 flags */
#define BLK_QUEUE_SIZE		  256
#define BLK_SEG_MAX		  (BLK_QUEUE_SIZE - 2) /* header and status take two */
#define BLK_MAX_DWZ_SEGS	  32 /* discard/write-zeroes per request */
#define BLK_MAX_DWZ_SECTORS	  (1u << 22) /* 2 GiB per segment */
#define BLK_DISCARD_ALIGN_SECTORS 8	     /* 4 KiB: file system blocks */

/* Config space layout (5.2.4), little-endian; kiln exposes up to and
 * including write_zeroes_may_unmap and its padding. */
#define BLK_CFG_CAPACITY	    0
#define BLK_CFG_SIZE_MAX	    8
#define BLK_CFG_SEG_MAX		    12
#define BLK_CFG_BLK_SIZE	    20
#define BLK_CFG_MAX_DISCARD_SECTORS 36
#define BLK_CFG_MAX_DISCARD_SEG	    40
#define BLK_CFG_DISCARD_ALIGN	    44
#define BLK_CFG_MAX_WZ_SECTORS	    48
#define BLK_CFG_MAX_WZ_SEG	    52
#define BLK_CFG_WZ_MAY_UNMAP	    56
#define BLK_CONFIG_SIZE		    60

struct blk_dwz_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

/* A request as parsed from a chain; everything the guest could change later
 * (header, discard segments) is copied, data stays in guest RAM. */
struct blk_request {
	uint32_t type;
	uint64_t sector;
	uint8_t *status; /* last device-writable byte of the chain */
	uint64_t in_len; /* device-writable bytes, status included */
	/* IN/GET_ID: writable bytes before the status; OUT: readable bytes
	 * after the header; empty otherwise */
	unsigned n_data;
	uint64_t data_len;
	struct iovec data[VIRTQ_MAX_SEGS];
	/* DISCARD/WRITE_ZEROES */
	unsigned n_segs;
	struct blk_dwz_seg segs[BLK_MAX_DWZ_SEGS];
};

struct virtio_blk_stats {
	uint64_t reads, writes, flushes, get_ids, discards, write_zeroes;
	uint64_t bytes_read, bytes_written;
	uint64_t ioerr, unsupp;	 /* requests completed with that status */
	uint64_t ro_refused;	 /* writes refused by a read-only device */
	uint64_t no_status;	 /* chains without a status byte */
	uint64_t backend_errors; /* backend calls that failed */
};

/* Parses a chain. <0: no status byte, the chain can only be returned with
 * 0 bytes written; else the status before execution: VIRTIO_BLK_S_OK (run
 * it) or IOERR/UNSUPP (just report it). Does not check capacity or RO. */
int blk_parse_request(const struct virtq_chain *c, struct blk_request *req);

/* Checks a parsed, OK request against the disk: VIRTIO_BLK_S_OK or IOERR
 * (range past capacity_sectors, or a write on a read-only disk). */
int blk_check_request(const struct blk_request *req, uint64_t capacity_sectors,
		      bool read_only);

/* True for requests that modify the disk (OUT, DISCARD, WRITE_ZEROES). */
bool blk_request_is_write(const struct blk_request *req);

/* Makes dev a virtio-blk device over be (read-only if read_only or be is);
 * be must outlive the device. Only dev->ops/priv are set. 0 or -errno. */
int virtio_blk_create(struct block_backend *be, bool read_only,
		      struct virtio_dev *dev);

/* The device type (device_table.h): "blk,path=IMAGE[,ro]" opens a raw image
 * and owns it. */
extern const struct virtio_dev_ops virtio_blk_ops;

/* Frees what virtio_blk_create allocated (not the backend, unless the
 * device was made from options); idempotent. */
void virtio_blk_destroy(struct virtio_dev *dev);

/* Handles one chain completely (parse, check, run, status byte) without
 * touching the ring; returns the byte count for the used ring. */
uint32_t virtio_blk_handle_chain(struct virtio_dev *dev,
				 const struct virtq_chain *c);

/* Copies the device's counters. */
void virtio_blk_get_stats(const struct virtio_dev *dev,
			  struct virtio_blk_stats *out);

#endif
