/* SPDX-License-Identifier: MIT */
/*
 * Virtio 1.2 split virtqueues, device side, for a hostile driver.
 *
 * Every descriptor address and length goes through guest_mem_ptr(); chains
 * are bounded by the queue size (indirect tables by their own size, no
 * nesting); loops are detected; an avail index more than the queue size
 * ahead is rejected. A malformed ring makes virtq_pop() return -EINVAL and
 * marks the queue broken: the device must then set DEVICE_NEEDS_RESET and
 * stop using it until reset. Nothing here blocks or allocates.
 */
#ifndef KILN_VIRTIO_VIRTQUEUE_H
#define KILN_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "mem/guest_mem.h"

#define VIRTQ_MAX_SIZE 1024 /* largest queue size any kiln device offers */
#define VIRTQ_MAX_SEGS VIRTQ_MAX_SIZE

/* Descriptor flags (virtio 1.2, 2.7.5) */
#define VIRTQ_DESC_F_NEXT	   1
#define VIRTQ_DESC_F_WRITE	   2
#define VIRTQ_DESC_F_INDIRECT	   4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	   1

struct virtq {
	/* configuration, written by the transport while the queue is off */
	uint16_t size; /* power of two, 1..VIRTQ_MAX_SIZE */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool ready;
	/* negotiated features that change ring behaviour */
	bool event_idx, indirect;
	/* device-side state */
	const struct guest_mem *mem;
	uint16_t last_avail_idx; /* next avail entry to consume */
	uint16_t used_idx;	 /* our copy of used->idx */
	uint16_t signalled_used; /* used_idx at the last interrupt */
	bool signalled_used_valid;
	bool broken; /* a malformed ring was seen: no more processing */
	/* per-notify work budget (virtq_begin_batch): chains left to pop */
	bool batch;
	bool batch_cut;
	unsigned batch_left;
};

/* One descriptor chain taken from the avail ring: device-readable segments
 * (out) first, then device-writable ones (in), as host pointers into guest
 * RAM that are valid for their lengths. */
struct virtq_chain {
	uint16_t head;
	unsigned n_out, n_in;
	uint64_t out_len, in_len; /* byte totals */
	struct iovec out[VIRTQ_MAX_SEGS];
	struct iovec in[VIRTQ_MAX_SEGS];
};

/* Bounds the work one notification may do: until virtq_end_batch, pops
 * beyond `budget` chains return 0 as if the ring were empty. */
void virtq_begin_batch(struct virtq *q, unsigned budget);

/* Ends the batch; true if the budget cut it short (chains may be left, so
 * the transport must run the queue again after the other devices). */
bool virtq_end_batch(struct virtq *q);

/* Resets the device-side state (indices, broken flag) and the config. */
void virtq_reset(struct virtq *q);

/* Checks the configuration before the queue goes live: size a power of two
 * <= max_size, rings aligned (desc 16, avail 2, used 4) and wholly inside
 * guest RAM. Returns 0 or -EINVAL. */
int virtq_check_config(const struct virtq *q, uint16_t max_size);

/* Takes the next available chain. 1: *chain filled; 0: nothing available;
 * -EINVAL: malformed ring (queue now broken). */
int virtq_pop(struct virtq *q, struct virtq_chain *chain);

/* Gives back the last n chains popped and not pushed (they are popped again
 * next time), e.g. when a frame needs more buffers than the ring has. */
void virtq_unpop(struct virtq *q, unsigned n);

/* Returns a chain to the driver with `written` bytes written into its
 * device-writable part. -EINVAL if the queue is broken or ring not in RAM. */
int virtq_push(struct virtq *q, uint16_t head, uint32_t written);

/* True when the driver wants an interrupt for what was pushed since the last
 * one (honours VIRTQ_AVAIL_F_NO_INTERRUPT or the used_event index). */
bool virtq_should_notify(struct virtq *q);

/* Copies up to len bytes from / to a chain's segments, starting at byte
 * offset `off` of the out (resp. in) side. Return bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst,
			size_t len);
size_t virtq_chain_write(const struct virtq_chain *c, uint64_t off,
			 const void *src, size_t len);

#endif
