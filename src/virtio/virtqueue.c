/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.2, 2.7), device side. The driver owns the rings
 * and may rewrite them at any time: every value is read once into a local,
 * checked, and only the local is used.
 */
#include "virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

/* Ring layouts (virtio 1.2, 2.7), all little-endian. */
struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[]; /* [size], then le16 used_event */
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[]; /* [size], then le16 avail_event */
};

_Static_assert(sizeof(struct vring_desc) == 16, "descriptor layout");
_Static_assert(sizeof(struct vring_used_elem) == 8, "used element layout");

/* Largest indirect table we follow, in descriptors: a chain never has more
 * segments than that anyway. */
#define VIRTQ_MAX_INDIRECT VIRTQ_MAX_SEGS

static uint64_t desc_bytes(uint16_t size)
{
	return 16ull * size;
}

/* The event fields exist in memory only to a driver that negotiated
 * EVENT_IDX, so only then are they part of what we touch. */
static uint64_t avail_bytes(uint16_t size, bool event_idx)
{
	return 4 + 2ull * size + (event_idx ? 2 : 0);
}

static uint64_t used_bytes(uint16_t size, bool event_idx)
{
	return 4 + 8ull * size + (event_idx ? 2 : 0);
}

static bool size_ok(uint16_t size)
{
	return size && size <= VIRTQ_MAX_SIZE && !(size & (size - 1));
}

/* Host pointer to a ring, or NULL if it is not wholly RAM or not aligned on
 * the host (atomic accesses below need natural alignment). */
static void *ring_ptr(const struct virtq *q, uint64_t gpa, uint64_t len,
		      uintptr_t align)
{
	void *p;

	if (gpa & (align - 1))
		return NULL;
	p = guest_mem_ptr(q->mem, gpa, len);
	if (p && ((uintptr_t)p & (align - 1)))
		return NULL;
	return p;
}

static struct vring_avail *avail_ring(const struct virtq *q)
{
	return ring_ptr(q, q->avail_gpa, avail_bytes(q->size, q->event_idx), 2);
}

static struct vring_used *used_ring(const struct virtq *q)
{
	return ring_ptr(q, q->used_gpa, used_bytes(q->size, q->event_idx), 4);
}

static uint16_t load16(const uint16_t *p, int order)
{
	return le16toh(__atomic_load_n(p, order));
}

static void store16(uint16_t *p, uint16_t v, int order)
{
	__atomic_store_n(p, htole16(v), order);
}

void virtq_reset(struct virtq *q)
{
	/* The memory binding is the device's, not the driver's config. */
	const struct guest_mem *mem = q->mem;

	memset(q, 0, sizeof(*q));
	q->mem = mem;
}

int virtq_check_config(const struct virtq *q, uint16_t max_size)
{
	if (!q->mem || !size_ok(q->size) || q->size > max_size)
		return -EINVAL;
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		return -EINVAL;
	/* Whole rings as the spec sizes them (2.7), event fields included,
	 * whatever gets negotiated. */
	if (!guest_mem_valid(q->mem, q->desc_gpa, desc_bytes(q->size)) ||
	    !guest_mem_valid(q->mem, q->avail_gpa,
			     avail_bytes(q->size, true)) ||
	    !guest_mem_valid(q->mem, q->used_gpa, used_bytes(q->size, true)))
		return -EINVAL;
	return 0;
}

static int fail(struct virtq *q)
{
	q->broken = true;
	return -EINVAL;
}

/* Adds one descriptor's buffer to the chain. */
static int add_segment(struct virtq *q, struct virtq_chain *c,
		       const struct vring_desc *d, bool *seen_write)
{
	uint16_t flags = le16toh(d->flags);
	uint32_t len = le32toh(d->len);
	void *p;

	if (flags & VIRTQ_DESC_F_WRITE)
		*seen_write = true;
	else if (*seen_write)
		return -EINVAL; /* spec: readable ones come first */
	/* Nothing to access: skip, and do not let empty descriptors count
	 * against the segment limit. */
	if (!len)
		return 0;
	p = guest_mem_ptr(q->mem, le64toh(d->addr), len);
	if (!p || c->n_out + c->n_in >= VIRTQ_MAX_SEGS)
		return -EINVAL;
	if (flags & VIRTQ_DESC_F_WRITE) {
		c->in[c->n_in++] = (struct iovec){p, len};
		c->in_len += len;
	} else {
		c->out[c->n_out++] = (struct iovec){p, len};
		c->out_len += len;
	}
	return 0;
}

/* Walks the chain at `head`. Each table is walked at most once per
 * descriptor it holds (a longer walk is a loop); an indirect descriptor ends
 * the direct part of the chain (no NEXT) and may not nest. */
static int walk_chain(struct virtq *q, struct virtq_chain *c, uint16_t head)
{
	const uint8_t *table; /* bytes: indirect tables may be unaligned */
	uint32_t table_size = q->size, i = head, steps = 0;
	bool indirect = false, seen_write = false;
	struct vring_desc d;

	table = ring_ptr(q, q->desc_gpa, desc_bytes(q->size), 16);
	if (!table || head >= q->size)
		return -EINVAL;
	for (;;) {
		uint16_t flags;

		if (++steps > table_size)
			return -EINVAL;
		memcpy(&d, table + 16 * i, sizeof(d));
		flags = le16toh(d.flags);
		if (flags & VIRTQ_DESC_F_INDIRECT) {
			uint32_t len = le32toh(d.len);

			if (!q->indirect || indirect ||
			    (flags & VIRTQ_DESC_F_NEXT))
				return -EINVAL;
			if (!len || len % 16 || len / 16 > VIRTQ_MAX_INDIRECT)
				return -EINVAL;
			table = guest_mem_ptr(q->mem, le64toh(d.addr), len);
			if (!table)
				return -EINVAL;
			table_size = len / 16;
			indirect = true;
			i = 0;
			steps = 0;
			continue;
		}
		if (add_segment(q, c, &d, &seen_write) < 0)
			return -EINVAL;
		if (!(flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = le16toh(d.next);
		if (i >= table_size)
			return -EINVAL;
	}
}

void virtq_begin_batch(struct virtq *q, unsigned budget)
{
	q->batch = true;
	q->batch_cut = false;
	q->batch_left = budget;
}

bool virtq_end_batch(struct virtq *q)
{
	bool cut = q->batch_cut;

	q->batch = q->batch_cut = false;
	return cut;
}

int virtq_pop(struct virtq *q, struct virtq_chain *chain)
{
	struct vring_avail *avail;
	uint16_t idx, head;

	if (q->broken)
		return -EINVAL;
	/* A queue the driver has not enabled has nothing to offer; its
	 * addresses may be stale or unset. */
	if (!q->ready)
		return 0;
	if (q->batch && q->batch_left == 0) {
		q->batch_cut = true;
		return 0;
	}
	if (!q->mem || !size_ok(q->size))
		return fail(q);
	avail = avail_ring(q);
	if (!avail)
		return fail(q);
	if (q->event_idx) {
		struct vring_used *used = used_ring(q);

		if (!used)
			return fail(q);
		/* Ask for a kick once the driver adds the entry after those
		 * seen so far, and make that visible before reading avail
		 * idx: otherwise a buffer added in between could wait for a
		 * kick the driver thinks we did not ask for. */
		store16((uint16_t *)&used->ring[q->size], q->last_avail_idx,
			__ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	/* Acquire: the ring entry and descriptors are read after idx. */
	idx = load16(&avail->idx, __ATOMIC_ACQUIRE);
	if (idx == q->last_avail_idx)
		return 0;
	if ((uint16_t)(idx - q->last_avail_idx) > q->size)
		return fail(q);
	head = load16(&avail->ring[q->last_avail_idx & (q->size - 1)],
		      __ATOMIC_RELAXED);

	chain->head = head;
	chain->n_out = chain->n_in = 0;
	chain->out_len = chain->in_len = 0;
	if (walk_chain(q, chain, head) < 0)
		return fail(q);
	q->last_avail_idx++;
	if (q->batch)
		q->batch_left--;
	return 1;
}

void virtq_unpop(struct virtq *q, unsigned n)
{
	q->last_avail_idx = (uint16_t)(q->last_avail_idx - n);
	if (q->batch)
		q->batch_left += n;
}

int virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	struct vring_used *used;
	struct vring_used_elem *e;

	if (q->broken)
		return -EINVAL;
	if (!q->mem || !size_ok(q->size) || head >= q->size)
		return fail(q);
	used = used_ring(q);
	if (!used)
		return fail(q);
	e = &used->ring[q->used_idx & (q->size - 1)];
	e->id = htole32(head);
	e->len = htole32(written);
	if (q->event_idx)
		store16((uint16_t *)&used->ring[q->size], q->last_avail_idx,
			__ATOMIC_RELAXED);
	/* Release: the element is visible before the index that covers it. */
	q->used_idx++;
	store16(&used->idx, q->used_idx, __ATOMIC_RELEASE);
	/* After 2^16 pushes without an interrupt signalled_used would look
	 * recent again; forget it so the next check notifies. */
	if (q->used_idx == q->signalled_used)
		q->signalled_used_valid = false;
	return 0;
}

/* The spec's vring_need_event(): true if event lies in [old, new). */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_should_notify(struct virtq *q)
{
	struct vring_avail *avail;
	uint16_t old = q->signalled_used, event;
	bool valid = q->signalled_used_valid;

	if (q->broken)
		return false;
	/* Our used idx store must be visible before we read the driver's
	 * event fields, or both sides could decide not to act. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	q->signalled_used = q->used_idx;
	q->signalled_used_valid = true;
	avail = q->mem && size_ok(q->size) ? avail_ring(q) : NULL;
	/* Unreadable ring: a spurious interrupt is harmless, a lost one
	 * hangs the driver. */
	if (!avail)
		return true;
	if (!q->event_idx)
		return !(load16(&avail->flags, __ATOMIC_RELAXED) &
			 VIRTQ_AVAIL_F_NO_INTERRUPT);
	event = load16(&avail->ring[q->size], __ATOMIC_RELAXED);
	return !valid || need_event(event, q->used_idx, old);
}

/* Copies between a flat buffer and iov[0..n) starting `off` bytes into the
 * iovecs; to_iov selects the direction. Returns bytes copied. */
static size_t iov_copy(const struct iovec *iov, unsigned n, uint64_t off,
		       uint8_t *buf, size_t len, bool to_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && i < VIRTQ_MAX_SEGS && done < len; i++) {
		size_t seg = iov[i].iov_len, chunk;
		uint8_t *p;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		chunk = seg - (size_t)off;
		if (chunk > len - done)
			chunk = len - done;
		p = (uint8_t *)iov[i].iov_base + off;
		if (to_iov)
			memcpy(p, buf + done, chunk);
		else
			memcpy(buf + done, p, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst,
			size_t len)
{
	return iov_copy(c->out, c->n_out, off, dst, len, false);
}

size_t virtq_chain_write(const struct virtq_chain *c, uint64_t off,
			 const void *src, size_t len)
{
	/* iov_copy only reads buf when copying into the iovecs */
	return iov_copy(c->in, c->n_in, off, (uint8_t *)(uintptr_t)src, len,
			true);
}
