/* SPDX-License-Identifier: MIT */
/*
 * qcow2 (versions 2 and 3) as a block backend: reads through L1/L2 tables
 * (an LRU cache of L2 tables), zero clusters, zlib-compressed clusters and
 * backing files (raw or qcow2, relative to the image's directory, at most
 * QCOW2_MAX_CHAIN deep, loops refused); writes allocate clusters at the end
 * of the file and keep refcounts exact (16-bit refcounts, the default), so
 * `qemu-img check` finds nothing to fix. Every number read from the image
 * is hostile: offsets are checked for alignment and range before use, table
 * sizes are bounded, and a broken image fails the request (-EIO, logged
 * once) rather than the VMM.
 *
 * Refused with a clear message: encryption, external data files, extended
 * L2 entries, compression types other than zlib, unknown incompatible
 * features; for writing also internal snapshots, a dirty or corrupt image
 * and refcount widths other than 16 bits.
 *
 * Write order: data, then refcounts, then the L2 entry, then the L1 entry,
 * each with pwrite; FLUSH is fdatasync. A crash can leak a cluster, never
 * point at garbage.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "backends/block.h"

#define QCOW2_MAGIC	       0x514649fbu
#define QCOW2_MAX_CHAIN	       16
#define QCOW2_L2_CACHE	       16
#define QCOW2_MAX_SIZE	       (1ull << 50) /* 1 PiB of guest disk */
#define QCOW2_MAX_L1_BYTES     (32u << 20)
#define QCOW2_MAX_RT_BYTES     (32u << 20) /* the refcount table */
#define QCOW2_OFFSET_MASK      0x00fffffffffffe00ull
#define QCOW2_OFLAG_COPIED     (1ull << 63)
#define QCOW2_OFLAG_COMPR      (1ull << 62)
#define QCOW2_OFLAG_ZERO       1ull
#define QCOW2_INCOMPAT_DIRTY   (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA    (1ull << 2)
#define QCOW2_INCOMPAT_COMPR   (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2   (1ull << 4)
#define QCOW2_EXT_BACKING_FMT  0xe2792acau
#define QCOW2_BATCH	       16 /* clusters in one run, at most */
#define QCOW2_BATCH_BYTES      (1u << 20)

struct l2_slot {
	uint64_t offset; /* of the table in the file; 0: free */
	uint64_t used;	 /* LRU clock */
	uint64_t *table; /* big-endian entries as on disk */
};

struct qcow2 {
	struct block_backend be;
	int fd;
	char *path;
	uint64_t size; /* virtual */
	unsigned cluster_bits;
	uint64_t cluster_size;
	uint64_t l2_entries;
	uint64_t *l1; /* big-endian, as on disk */
	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t *rt; /* refcount table, big-endian */
	uint64_t rt_entries;
	uint64_t rt_offset;
	bool writable;
	uint64_t next_free; /* where the next cluster goes: the file's end */
	struct l2_slot l2[QCOW2_L2_CACHE];
	uint64_t clock;
	struct block_backend *backing; /* NULL: unallocated reads as zeros */
	uint64_t backing_size;
	uint8_t *cbuf;	    /* one cluster: compressed input */
	uint8_t *dbuf;	    /* one cluster: decompressed / COW data */
	uint64_t dbuf_from; /* the compressed entry dbuf holds, or 0 */
	uint8_t *zeros;	    /* one cluster of zeros (write_zeroes) */
	uint8_t *wbuf; /* batch_bytes: a write gathered from its segments */
	uint64_t batch_bytes;  /* a run of new clusters written at once */
	uint64_t zero_flag;    /* QCOW2_OFLAG_ZERO in version 3, else 0 */
	uint16_t *refblock;    /* one refcount block, cached */
	uint64_t refblock_off; /* its offset, 0: none */
	bool warned;
};

static struct qcow2 *to_q(struct block_backend *be)
{
	return (struct qcow2 *)be;
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint64_t from_be64(uint64_t v)
{
	return be64((const uint8_t *)&v);
}

static uint64_t to_be64(uint64_t v)
{
	uint64_t out;
	uint8_t *p = (uint8_t *)&out;

	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
	return out;
}

/* A broken image: logged once, -EIO for the request. */
static int broken(struct qcow2 *q, const char *what)
{
	if (!q->warned)
		kiln_logf(q->be.log, KILN_LOG_ERROR, "qcow2: %s: %s", q->path,
			  what);
	q->warned = true;
	return -EIO;
}

static bool aligned(const struct qcow2 *q, uint64_t off)
{
	return (off & (q->cluster_size - 1)) == 0;
}

/* ---- L2 tables ---- */

/* The L2 table at offset (cluster aligned, checked by the caller). */
static int l2_load(struct qcow2 *q, uint64_t offset, uint64_t **table)
{
	struct l2_slot *slot = NULL;
	int err;

	for (int i = 0; i < QCOW2_L2_CACHE; i++) {
		struct l2_slot *s = &q->l2[i];

		if (s->offset == offset && s->table) {
			s->used = ++q->clock;
			*table = s->table;
			return 0;
		}
		if (!slot || s->used < slot->used)
			slot = s;
	}
	if (!slot->table && !(slot->table = malloc(q->cluster_size)))
		return -ENOMEM;
	slot->offset = 0;
	err = block_pread_full(q->fd, slot->table, q->cluster_size, offset);
	if (err < 0)
		return err;
	slot->offset = offset;
	slot->used = ++q->clock;
	*table = slot->table;
	return 0;
}

/* The L2 entry of guest cluster vc (0 when there is no L2 table). */
static int l2_entry(struct qcow2 *q, uint64_t vc, uint64_t *entry,
		    uint64_t **table, uint64_t *l2_off)
{
	uint64_t l1i = vc / q->l2_entries, l1e, off;
	int err;

	*entry = 0;
	*table = NULL;
	*l2_off = 0;
	if (l1i >= q->l1_size)
		return broken(q, "a cluster beyond the L1 table");
	l1e = from_be64(q->l1[l1i]);
	off = l1e & QCOW2_OFFSET_MASK;
	if (!off)
		return 0;
	if (!aligned(q, off))
		return broken(q, "an L2 table offset that is not cluster "
				 "aligned");
	err = l2_load(q, off, table);
	if (err < 0)
		return err;
	*l2_off = off;
	*entry = from_be64((*table)[vc % q->l2_entries]);
	return 0;
}

/* ---- reading ---- */

/* Fills buf with [off, off+len) of the backing file (zeros past its end or
 * without one). */
static int read_backing(struct qcow2 *q, uint8_t *buf, uint64_t off,
			uint64_t len)
{
	uint64_t n = 0;

	if (q->backing && off < q->backing_size) {
		struct iovec v;
		int err;

		n = q->backing_size - off < len ? q->backing_size - off : len;
		v.iov_base = buf;
		v.iov_len = n;
		err = q->backing->ops->readv(q->backing, &v, 1, off);
		if (err < 0)
			return err;
	}
	memset(buf + n, 0, len - n);
	return 0;
}

/* The whole guest cluster a compressed entry describes, into q->dbuf. */
static int decompress(struct qcow2 *q, uint64_t entry)
{
	unsigned shift = 62 - (q->cluster_bits - 8);
	uint64_t coff = entry & ((1ull << shift) - 1);
	uint64_t sectors =
		((entry >> shift) & ((1ull << (q->cluster_bits - 8)) - 1)) + 1;
	uint64_t clen = sectors * 512 - (coff & 511);
	z_stream z = {0};
	int err, zr;

	if (q->dbuf_from == entry)
		return 0;
	if (clen > q->cluster_size + 512 || !coff)
		return broken(q, "a compressed cluster of impossible size");
	if (clen > q->cluster_size)
		clen = q->cluster_size; /* what deflate can need at most */
	err = block_pread_full(q->fd, q->cbuf, clen, coff);
	if (err < 0)
		return err;
	if (inflateInit2(&z, -12) != Z_OK)
		return -ENOMEM;
	z.next_in = q->cbuf;
	z.avail_in = (uInt)clen;
	z.next_out = q->dbuf;
	z.avail_out = (uInt)q->cluster_size;
	zr = inflate(&z, Z_FINISH);
	inflateEnd(&z);
	/* a cluster must come out whole; input may have padding after */
	if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR) || z.avail_out != 0) {
		q->dbuf_from = 0;
		return broken(q, "a compressed cluster that does not "
				 "decompress to one cluster");
	}
	q->dbuf_from = entry;
	return 0;
}

/* [off, off+len) within guest cluster vc into buf. */
static int read_piece(struct qcow2 *q, uint8_t *buf, uint64_t off, uint64_t len)
{
	uint64_t vc = off >> q->cluster_bits, in = off & (q->cluster_size - 1);
	uint64_t entry, *table, l2_off, host;
	int err = l2_entry(q, vc, &entry, &table, &l2_off);

	if (err < 0)
		return err;
	if (entry & QCOW2_OFLAG_COMPR) {
		err = decompress(q, entry);
		if (err == 0)
			memcpy(buf, q->dbuf + in, len);
		return err;
	}
	if (entry & q->zero_flag) {
		memset(buf, 0, len);
		return 0;
	}
	host = entry & QCOW2_OFFSET_MASK;
	if (!host)
		return read_backing(q, buf, off, len);
	if (!aligned(q, host))
		return broken(q, "a data cluster offset that is not cluster "
				 "aligned");
	return block_pread_full(q->fd, buf, len, host + in);
}

/* A position in a caller's iovec, walked a cluster (or a run) at a time
 * by both directions. Callers only ask for bytes the iovec still holds, so
 * skipping empty segments never runs past its end. */
struct iov_cursor {
	const struct iovec *iov;
	int i;
	size_t used;
};

static void cursor_skip_empty(struct iov_cursor *c)
{
	while (c->used == c->iov[c->i].iov_len)
		c->i++, c->used = 0;
}

/* The next n bytes as one pointer when one segment holds them all (the
 * cursor moves past them), else NULL (it stays). */
static uint8_t *cursor_span(struct iov_cursor *c, uint64_t n)
{
	uint8_t *p;

	cursor_skip_empty(c);
	if (c->iov[c->i].iov_len - c->used < n)
		return NULL;
	p = (uint8_t *)c->iov[c->i].iov_base + c->used;
	c->used += (size_t)n;
	return p;
}

/* Copies the next n bytes into buf (gather) or from buf into the
 * segments (scatter), moving past them. */
static void cursor_copy(struct iov_cursor *c, uint8_t *buf, uint64_t n,
			bool gather)
{
	for (uint64_t done = 0; done < n;) {
		size_t k;
		uint8_t *seg;

		cursor_skip_empty(c);
		k = c->iov[c->i].iov_len - c->used;
		if (k > n - done)
			k = (size_t)(n - done);
		seg = (uint8_t *)c->iov[c->i].iov_base + c->used;
		if (gather)
			memcpy(buf + done, seg, k);
		else
			memcpy(seg, buf + done, k);
		done += k, c->used += k;
	}
}

/* A read's or write's start: the range checked (*total its bytes) and the
 * bounce buffer there. 0 or -errno. */
static int io_begin(struct qcow2 *q, const struct iovec *iov, int iovcnt,
		    uint64_t off, uint64_t *total)
{
	*total = 0;
	if (block_iov_range(iov, iovcnt, off, q->size, total) < 0)
		return -EINVAL;
	if (!q->wbuf && !(q->wbuf = malloc(q->batch_bytes)))
		return -ENOMEM;
	return 0;
}

static int q_readv(struct block_backend *be, const struct iovec *iov,
		   int iovcnt, uint64_t off)
{
	struct qcow2 *q = to_q(be);
	/* cluster by cluster, one read each, scattered to however many
	 * segments the guest's buffers came in */
	struct iov_cursor cur = {iov, 0, 0};
	uint64_t total;
	int err = io_begin(q, iov, iovcnt, off, &total);

	if (err < 0)
		return err;
	for (; total;) {
		uint64_t in = off & (q->cluster_size - 1);
		uint64_t n = q->cluster_size - in < total ? q->cluster_size - in
							  : total;
		uint8_t *dst = cursor_span(&cur, n);

		if (dst) {
			err = read_piece(q, dst, off, n);
		} else {
			err = read_piece(q, q->wbuf, off, n);
			if (err == 0)
				cursor_copy(&cur, q->wbuf, n, false);
		}
		if (err < 0)
			return err;
		off += n, total -= n;
	}
	return 0;
}

/* ---- refcounts (writable images: 16-bit) ---- */

static int refblock_load(struct qcow2 *q, uint64_t off)
{
	int err;

	if (q->refblock_off == off)
		return 0;
	q->refblock_off = 0;
	err = block_pread_full(q->fd, q->refblock, q->cluster_size, off);
	if (err == 0)
		q->refblock_off = off;
	return err;
}

static uint64_t alloc_raw(struct qcow2 *q)
{
	uint64_t off = q->next_free;

	q->next_free += q->cluster_size;
	return off;
}

/* Adds delta to the refcount of the cluster at host offset off (a new
 * refcount block, if one is needed, is allocated and counts itself). */
static int refcount_add(struct qcow2 *q, uint64_t off, int delta)
{
	uint64_t per_block = q->cluster_size / 2;
	uint64_t c = off >> q->cluster_bits;
	uint64_t rti = c / per_block, rb;
	uint16_t v;
	int err;

	if (rti >= q->rt_entries)
		return broken(q, "the refcount table is full (kiln does not "
				 "grow it)");
	rb = from_be64(q->rt[rti]) & QCOW2_OFFSET_MASK;
	if (!rb) {
		uint64_t e;

		uint64_t rbc;
		bool self;

		/* a new refcount block, written whole (counting itself when
		 * it covers itself) before the table points at it: a crash
		 * between the two leaks a cluster, never counts one 0 */
		rb = alloc_raw(q);
		rbc = rb >> q->cluster_bits;
		self = rbc / per_block == rti;
		memset(q->refblock, 0, q->cluster_size);
		q->refblock_off = 0;
		if (self)
			q->refblock[rbc % per_block] = (uint16_t)(1 << 8);
		err = block_pwrite_full(q->fd, q->refblock, q->cluster_size,
					rb);
		if (err < 0)
			return err;
		e = to_be64(rb);
		err = block_pwrite_full(q->fd, &e, 8, q->rt_offset + rti * 8);
		if (err < 0)
			return err;
		q->rt[rti] = e;
		q->refblock_off = rb; /* what the buffer holds */
		if (!self) {
			err = refcount_add(q, rb, 1);
			if (err < 0)
				return err;
		}
	} else if (!aligned(q, rb)) {
		return broken(q, "a refcount block offset that is not "
				 "cluster aligned");
	}
	err = refblock_load(q, rb);
	if (err < 0)
		return err;
	v = (uint16_t)(q->refblock[c % per_block] >> 8 |
		       q->refblock[c % per_block] << 8);
	if ((delta > 0 && v == UINT16_MAX) || (delta < 0 && v == 0))
		return broken(q, "a refcount out of range");
	v = (uint16_t)(v + delta);
	q->refblock[c % per_block] = (uint16_t)(v >> 8 | v << 8);
	return block_pwrite_full(q->fd, &q->refblock[c % per_block], 2,
				 rb + (c % per_block) * 2);
}

/* A new cluster, counted. */
static int alloc_cluster(struct qcow2 *q, uint64_t *off)
{
	*off = alloc_raw(q);
	return refcount_add(q, *off, 1);
}

/* ---- writing ---- */

/* The L2 table for guest cluster vc, allocated if there is none. */
static int l2_for_write(struct qcow2 *q, uint64_t vc, uint64_t **table,
			uint64_t *l2_off)
{
	uint64_t l1i = vc / q->l2_entries, l1e, off, e;
	int err;

	if (l1i >= q->l1_size)
		return broken(q, "a cluster beyond the L1 table");
	l1e = from_be64(q->l1[l1i]);
	off = l1e & QCOW2_OFFSET_MASK;
	if (off) {
		if (!aligned(q, off))
			return broken(q, "an L2 table offset that is not "
					 "cluster aligned");
		if (!(l1e & QCOW2_OFLAG_COPIED))
			return broken(q, "a shared L2 table (snapshots)");
		*l2_off = off;
		return l2_load(q, off, table);
	}
	err = alloc_cluster(q, &off);
	if (err < 0)
		return err;
	err = l2_load(q, off, table); /* past the end: reads zeros */
	if (err < 0)
		return err;
	memset(*table, 0, q->cluster_size);
	err = block_pwrite_full(q->fd, *table, q->cluster_size, off);
	if (err < 0)
		return err;
	e = to_be64(off | QCOW2_OFLAG_COPIED);
	err = block_pwrite_full(q->fd, &e, 8, q->l1_offset + l1i * 8);
	if (err < 0)
		return err;
	q->l1[l1i] = e;
	*l2_off = off;
	return 0;
}

/* Drops the references a compressed entry holds (each host cluster its
 * bytes touch counts it once). */
static int free_compressed(struct qcow2 *q, uint64_t entry)
{
	unsigned shift = 62 - (q->cluster_bits - 8);
	uint64_t coff = entry & ((1ull << shift) - 1);
	uint64_t sectors =
		((entry >> shift) & ((1ull << (q->cluster_bits - 8)) - 1)) + 1;
	uint64_t first = (coff & ~511ull) >> q->cluster_bits;
	uint64_t last =
		((coff & ~511ull) + sectors * 512 - 1) >> q->cluster_bits;

	/* the header's cluster never holds compressed data */
	if (first == 0)
		return broken(q, "a compressed cluster in the header");
	for (uint64_t c = first; c <= last; c++) {
		int err = refcount_add(q, c << q->cluster_bits, -1);

		if (err < 0)
			return err;
	}
	return 0;
}

/* Guest cluster vc's L2 table (allocated if none) and entry, its data
 * cluster's host offset (0: none or compressed data) checked as writable
 * in place: aligned, and not shared with an internal snapshot. */
static int writable_entry(struct qcow2 *q, uint64_t vc, uint64_t **table,
			  uint64_t *l2_off, uint64_t *entry, uint64_t *host)
{
	int err = l2_for_write(q, vc, table, l2_off);

	if (err < 0)
		return err;
	*entry = from_be64((*table)[vc % q->l2_entries]);
	*host = *entry & QCOW2_OFFSET_MASK;
	if ((*entry & QCOW2_OFLAG_COMPR) || !*host)
		return 0;
	if (!aligned(q, *host))
		return broken(q, "a data cluster offset that is not cluster "
				 "aligned");
	if (!(*entry & QCOW2_OFLAG_COPIED))
		return broken(q, "a shared data cluster (snapshots)");
	return 0;
}

/* Writes [off, off+len) of guest cluster vc from buf. */
static int write_piece(struct qcow2 *q, const uint8_t *buf, uint64_t off,
		       uint64_t len)
{
	uint64_t vc = off >> q->cluster_bits, in = off & (q->cluster_size - 1);
	uint64_t cstart = vc << q->cluster_bits;
	uint64_t clen = q->size - cstart < q->cluster_size ? q->size - cstart
							   : q->cluster_size;
	uint64_t *table, l2_off, entry, host, e;
	int err = writable_entry(q, vc, &table, &l2_off, &entry, &host);

	if (err < 0)
		return err;
	if (!(entry & QCOW2_OFLAG_COMPR) && host) {
		if (!(entry & q->zero_flag))
			return block_pwrite_full(q->fd, buf, len, host + in);
		/* a preallocated zero cluster: whole, then no longer zero */
		memset(q->dbuf, 0, q->cluster_size);
		q->dbuf_from = 0;
		memcpy(q->dbuf + in, buf, len);
		err = block_pwrite_full(q->fd, q->dbuf, q->cluster_size, host);
	} else {
		/* a new cluster: what the guest saw there, then its bytes;
		 * a whole cluster's worth goes to the file as it is */
		const uint8_t *data = buf;

		if (len < clen) {
			if (!(entry & QCOW2_OFLAG_COMPR))
				q->dbuf_from = 0; /* about to change */
			if (entry & QCOW2_OFLAG_COMPR) {
				err = decompress(q, entry);
			} else if (!(entry & q->zero_flag)) {
				err = read_backing(q, q->dbuf, cstart, clen);
				memset(q->dbuf + clen, 0,
				       q->cluster_size - clen);
			} else {
				memset(q->dbuf, 0, q->cluster_size);
			}
			if (err < 0)
				return err;
			q->dbuf_from = 0; /* about to change: not a cache */
			memcpy(q->dbuf + in, buf, len);
			data = q->dbuf;
		}
		err = alloc_cluster(q, &host);
		if (err == 0)
			err = block_pwrite_full(
				q->fd, data, len < clen ? q->cluster_size : len,
				host);
	}
	if (err < 0)
		return err;
	e = to_be64(host | QCOW2_OFLAG_COPIED);
	/* the table may have left the cache while refcounts were written */
	err = l2_load(q, l2_off, &table);
	if (err < 0)
		return err;
	table[vc % q->l2_entries] = e;
	err = block_pwrite_full(q->fd, &e, 8,
				l2_off + (vc % q->l2_entries) * 8);
	/* the old compressed data is unreferenced only now (a crash before
	 * leaks it, never frees what an entry still points at) */
	if (err == 0 && (entry & QCOW2_OFLAG_COMPR))
		err = free_compressed(q, entry);
	return err;
}

/* Adds one to the refcounts of k clusters from host offset off: one
 * write when they share an existing refcount block, else one by one. */
static int refcount_add_run(struct qcow2 *q, uint64_t off, unsigned k)
{
	uint64_t per_block = q->cluster_size / 2;
	uint64_t c0 = off >> q->cluster_bits, rti = c0 / per_block, rb;
	int err;

	rb = rti < q->rt_entries ? from_be64(q->rt[rti]) & QCOW2_OFFSET_MASK
				 : 0;
	if (!rb || !aligned(q, rb) || c0 % per_block + k > per_block) {
		for (unsigned i = 0; i < k; i++) {
			err = refcount_add(q, off + i * q->cluster_size, 1);
			if (err < 0)
				return err;
		}
		return 0;
	}
	err = refblock_load(q, rb);
	if (err < 0)
		return err;
	for (unsigned i = 0; i < k; i++) {
		uint16_t *e = &q->refblock[(c0 + i) % per_block];
		uint16_t v = (uint16_t)(*e >> 8 | *e << 8);

		if (v == UINT16_MAX)
			return broken(q, "a refcount out of range");
		v++;
		*e = (uint16_t)(v >> 8 | v << 8);
	}
	return block_pwrite_full(q->fd, &q->refblock[c0 % per_block],
				 2 * (size_t)k, rb + (c0 % per_block) * 2);
}

/* Whether the L2 entry's cluster would be written to a new cluster (not
 * in place). */
static bool needs_new(uint64_t entry)
{
	return (entry & QCOW2_OFLAG_COMPR) || !(entry & QCOW2_OFFSET_MASK);
}

/* k (>= 2) whole guest clusters from vc, all new, in one L2 table: one
 * allocation, one refcount write, one data write, one L2 write. */
static int write_run(struct qcow2 *q, uint64_t vc, unsigned k,
		     const uint8_t *data, uint64_t l2_off)
{
	uint64_t host = q->next_free, e[QCOW2_BATCH], old[QCOW2_BATCH];
	uint64_t *table, first = vc % q->l2_entries;
	int err;

	q->next_free += k * q->cluster_size;
	err = refcount_add_run(q, host, k);
	if (err == 0)
		err = block_pwrite_full(q->fd, data, k * q->cluster_size, host);
	if (err == 0)
		err = l2_load(q, l2_off, &table);
	if (err < 0)
		return err;
	for (unsigned i = 0; i < k; i++) {
		old[i] = from_be64(table[first + i]);
		e[i] = to_be64((host + i * q->cluster_size) |
			       QCOW2_OFLAG_COPIED);
		table[first + i] = e[i];
	}
	err = block_pwrite_full(q->fd, e, 8 * (size_t)k, l2_off + first * 8);
	for (unsigned i = 0; err == 0 && i < k; i++)
		if (old[i] & QCOW2_OFLAG_COMPR)
			err = free_compressed(q, old[i]);
	return err;
}

/* How many whole guest clusters from vc (the request has `whole` of them
 * left) can go as one run: new, in vc's L2 table, at most the batch. */
static unsigned run_length(struct qcow2 *q, uint64_t vc, uint64_t whole,
			   uint64_t *l2_off)
{
	uint64_t *table, first = vc % q->l2_entries;
	unsigned k = 0, max = (unsigned)(q->batch_bytes / q->cluster_size);

	if (whole < 2 || max < 2 || l2_for_write(q, vc, &table, l2_off) < 0)
		return 0;
	while (k < max && k < whole && first + k < q->l2_entries &&
	       needs_new(from_be64(table[first + k])))
		k++;
	return k;
}

static int q_writev(struct block_backend *be, const struct iovec *iov,
		    int iovcnt, uint64_t off)
{
	struct qcow2 *q = to_q(be);
	/* cluster by cluster (runs of whole new clusters at once), each
	 * gathered from however many segments the guest's buffers came in:
	 * one write per cluster, or per run */
	struct iov_cursor cur = {iov, 0, 0};
	uint64_t total;
	int err;

	if (!q->writable)
		return -EROFS;
	err = io_begin(q, iov, iovcnt, off, &total);
	if (err < 0)
		return err;
	for (; total;) {
		uint64_t in = off & (q->cluster_size - 1);
		uint64_t n = q->cluster_size - in < total ? q->cluster_size - in
							  : total;
		uint64_t l2_off = 0;
		unsigned run =
			in == 0 && off + total <= q->size
				? run_length(q, off >> q->cluster_bits,
					     total / q->cluster_size, &l2_off)
				: 0;
		const uint8_t *src;

		if (run >= 2)
			n = run * q->cluster_size;
		/* within one segment: no copy */
		src = cursor_span(&cur, n);
		if (!src) {
			cursor_copy(&cur, q->wbuf, n, true);
			src = q->wbuf;
		}
		if (run >= 2)
			err = write_run(q, off >> q->cluster_bits, run, src,
					l2_off);
		else
			err = write_piece(q, src, off, n);
		if (err < 0)
			return err;
		off += n, total -= n;
	}
	return 0;
}

static int q_flush(struct block_backend *be)
{
	struct qcow2 *q = to_q(be);

	if (q->writable && fdatasync(q->fd) < 0)
		return -errno;
	return 0;
}

/* Whether guest cluster vc reads as zeros without touching the file: a
 * zero entry, or unallocated with nothing underneath. */
static int reads_zero(struct qcow2 *q, uint64_t vc, bool *zero)
{
	uint64_t entry, *table, l2_off;
	int err = l2_entry(q, vc, &entry, &table, &l2_off);

	if (err < 0)
		return err;
	*zero = !(entry & QCOW2_OFLAG_COMPR) &&
		((entry & q->zero_flag) ||
		 (!(entry & QCOW2_OFFSET_MASK) &&
		  (!q->backing || (vc << q->cluster_bits) >= q->backing_size)));
	return 0;
}

/* Makes whole guest cluster vc a zero cluster (version 3): its data
 * cluster is kept as preallocated zeros, or, with unmap, released (and its
 * space punched out of the file). The entry changes before the refcount
 * drops, so a crash leaks a cluster rather than leaving one referenced
 * and free. */
static int zero_cluster(struct qcow2 *q, uint64_t vc, bool unmap)
{
	uint64_t *table, l2_off, entry, host, e;
	int err = writable_entry(q, vc, &table, &l2_off, &entry, &host);

	if (err < 0)
		return err;
	if ((entry & QCOW2_OFLAG_COMPR) || unmap || !host)
		e = to_be64(QCOW2_OFLAG_ZERO);
	else
		e = to_be64(host | QCOW2_OFLAG_COPIED | QCOW2_OFLAG_ZERO);
	table[vc % q->l2_entries] = e;
	err = block_pwrite_full(q->fd, &e, 8,
				l2_off + (vc % q->l2_entries) * 8);
	if (err < 0)
		return err;
	if (entry & QCOW2_OFLAG_COMPR)
		return free_compressed(q, entry);
	if (host && unmap) {
		err = refcount_add(q, host, -1);
		/* the space back to the host; failing that it stays
		 * allocated, unreferenced, which is harmless */
		if (err == 0)
			(void)fallocate(q->fd,
					FALLOC_FL_PUNCH_HOLE |
						FALLOC_FL_KEEP_SIZE,
					(off_t)host, (off_t)q->cluster_size);
	}
	return err;
}

static int q_write_zeroes(struct block_backend *be, uint64_t off, uint64_t len,
			  bool unmap)
{
	struct qcow2 *q = to_q(be);

	if (!q->writable)
		return -EROFS;
	if (!block_range_ok(q->size, off, len))
		return -EINVAL;
	if (!q->zeros && !(q->zeros = calloc(1, q->cluster_size)))
		return -ENOMEM;
	while (len) {
		uint64_t vc = off >> q->cluster_bits;
		uint64_t in = off & (q->cluster_size - 1);
		uint64_t cstart = vc << q->cluster_bits;
		uint64_t clen = q->size - cstart < q->cluster_size
					? q->size - cstart
					: q->cluster_size;
		uint64_t n =
			q->cluster_size - in < len ? q->cluster_size - in : len;
		bool zero = false;
		int err = reads_zero(q, vc, &zero);

		/* already zeros: nothing to write; a whole cluster in
		 * version 3: the zero flag, no data; else real zeros */
		if (err == 0 && !zero) {
			if (q->zero_flag && in == 0 && n == clen)
				err = zero_cluster(q, vc, unmap);
			else
				err = write_piece(q, q->zeros, off, n);
		}
		if (err < 0)
			return err;
		off += n, len -= n;
	}
	return 0;
}

static int q_discard(struct block_backend *be, uint64_t off, uint64_t len)
{
	/* allowed to do nothing: reads return the old data */
	return block_range_ok(to_q(be)->size, off, len) ? 0 : -EINVAL;
}

static uint64_t q_size(struct block_backend *be)
{
	return to_q(be)->size;
}

static void q_destroy(struct block_backend *be)
{
	struct qcow2 *q = to_q(be);

	if (q->fd >= 0)
		close(q->fd);
	block_backend_destroy(q->backing);
	for (int i = 0; i < QCOW2_L2_CACHE; i++)
		free(q->l2[i].table);
	free(q->l1);
	free(q->rt);
	free(q->cbuf);
	free(q->dbuf);
	free(q->refblock);
	free(q->zeros);
	free(q->wbuf);
	free(q->path);
	free(q);
}

static const struct block_backend_ops qcow2_ops = {
	.readv = q_readv,
	.writev = q_writev,
	.flush = q_flush,
	.discard = q_discard,
	.write_zeroes = q_write_zeroes,
	.size = q_size,
	.destroy = q_destroy,
};

/* ---- opening ---- */

bool block_qcow2_probe(const uint8_t *hdr, size_t len)
{
	return len >= 4 && be32(hdr) == QCOW2_MAGIC;
}

/* Header extensions: the backing file's format, if named. */
static int read_extensions(struct qcow2 *q, const uint8_t *h, size_t hlen,
			   uint64_t start, char *fmt, size_t fmtcap)
{
	uint64_t off = start;

	fmt[0] = 0;
	for (int n = 0; n < 64; n++) {
		uint32_t type, len;

		if (off + 8 > hlen)
			return 0; /* the header cluster ends: no more */
		type = be32(h + off);
		len = be32(h + off + 4);
		if (type == 0)
			return 0;
		if (len > hlen - off - 8)
			return broken(q, "a header extension past the header "
					 "cluster");
		if (type == QCOW2_EXT_BACKING_FMT) {
			if (len >= fmtcap)
				return broken(q, "a backing format name too "
						 "long");
			memcpy(fmt, h + off + 8, len);
			fmt[len] = 0;
		}
		off += 8 + ((len + 7ull) & ~7ull);
	}
	return 0;
}

int block_qcow2_open(int fd, const char *path, bool read_only,
		     const struct block_chain *chain,
		     const struct kiln_log *log, struct block_backend **out)
{
	struct qcow2 *q = calloc(1, sizeof(*q));
	uint8_t *h = NULL;
	uint64_t incompat = 0, boff, l1_need, fsize;
	uint32_t version, blen, hlen = 72, refcount_order = 4, nb_snap;
	char fmt[32], backing[PATH_MAX];
	struct stat st;
	int err = -EINVAL;

	*out = NULL;
	if (!q) {
		close(fd);
		return kiln_errorf(log, -ENOMEM, "qcow2: out of memory");
	}
	q->fd = fd;
	q->be.log = log;
	q->path = strdup(path);
	if (!q->path || fstat(fd, &st) < 0) {
		err = -ENOMEM;
		goto fail;
	}
	fsize = (uint64_t)st.st_size;
	h = malloc(4096);
	if (!h || block_pread_full(fd, h, 4096, 0) < 0) {
		err = kiln_errorf(log, -EIO,
				  "qcow2: %s: cannot read its "
				  "header",
				  path);
		goto fail;
	}
	version = be32(h + 4);
	if (be32(h) != QCOW2_MAGIC || (version != 2 && version != 3)) {
		err = kiln_errorf(log, -EBADMSG,
				  "qcow2: %s: not a qcow2 image of version 2 "
				  "or 3",
				  path);
		goto fail;
	}
	boff = be64(h + 8);
	blen = be32(h + 16);
	q->cluster_bits = be32(h + 20);
	q->size = be64(h + 24);
	q->l1_size = be32(h + 36);
	q->l1_offset = be64(h + 40);
	q->rt_offset = be64(h + 48);
	nb_snap = be32(h + 60);
	if (version == 3) {
		q->zero_flag = QCOW2_OFLAG_ZERO;
		incompat = be64(h + 72);
		refcount_order = be32(h + 96);
		hlen = be32(h + 100);
	}
	if (q->cluster_bits < 9 || q->cluster_bits > 21) {
		err = kiln_errorf(log, -EBADMSG,
				  "qcow2: %s: cluster_bits %u (9..21)", path,
				  q->cluster_bits);
		goto fail;
	}
	q->cluster_size = 1ull << q->cluster_bits;
	q->l2_entries = q->cluster_size / 8;
	{
		uint64_t k = QCOW2_BATCH_BYTES / q->cluster_size;

		k = k > QCOW2_BATCH ? QCOW2_BATCH : k ? k : 1;
		q->batch_bytes = k * q->cluster_size;
	}
	if (be32(h + 32) != 0) {
		err = kiln_errorf(log, -ENOTSUP,
				  "qcow2: %s is encrypted: kiln does not "
				  "read encrypted images",
				  path);
		goto fail;
	}
	if (incompat & (QCOW2_INCOMPAT_DATA | QCOW2_INCOMPAT_EXTL2 |
			QCOW2_INCOMPAT_COMPR) ||
	    incompat & ~0x1full) {
		err = kiln_errorf(
			log, -ENOTSUP,
			"qcow2: %s uses %s: not supported by kiln", path,
			incompat & QCOW2_INCOMPAT_DATA ? "an external data file"
			: incompat & QCOW2_INCOMPAT_EXTL2
				? "extended L2 entries"
			: incompat & QCOW2_INCOMPAT_COMPR
				? "a compression type other than zlib"
				: "unknown incompatible features");
		goto fail;
	}
	if (incompat & QCOW2_INCOMPAT_CORRUPT && !read_only) {
		err = kiln_errorf(log, -EBADMSG,
				  "qcow2: %s is marked corrupt: only read-only "
				  "(qemu-img check -r all repairs it)",
				  path);
		goto fail;
	}
	if (q->size == 0 || q->size > QCOW2_MAX_SIZE ||
	    q->size % BLOCK_SECTOR_SIZE) {
		err = kiln_errorf(log, -EBADMSG,
				  "qcow2: %s: virtual size %llu (a multiple of "
				  "512 up to 1 PiB)",
				  path, (unsigned long long)q->size);
		goto fail;
	}
	l1_need = (q->size + (q->cluster_size * q->l2_entries) - 1) /
		  (q->cluster_size * q->l2_entries);
	if (q->l1_size < l1_need ||
	    (uint64_t)q->l1_size * 8 > QCOW2_MAX_L1_BYTES ||
	    !aligned(q, q->l1_offset) || !q->l1_offset ||
	    q->l1_offset > fsize) {
		err = kiln_errorf(log, -EBADMSG,
				  "qcow2: %s: a broken L1 table (%u entries at "
				  "%llu)",
				  path, q->l1_size,
				  (unsigned long long)q->l1_offset);
		goto fail;
	}
	q->l1 = malloc((size_t)q->l1_size * 8 + 8);
	q->cbuf = malloc(q->cluster_size + 512);
	q->dbuf = malloc(q->cluster_size);
	q->refblock = malloc(q->cluster_size);
	if (!q->l1 || !q->cbuf || !q->dbuf || !q->refblock) {
		err = kiln_errorf(log, -ENOMEM, "qcow2: out of memory");
		goto fail;
	}
	if (block_pread_full(fd, q->l1, (size_t)q->l1_size * 8, q->l1_offset) <
	    0) {
		err = kiln_errorf(log, -EIO,
				  "qcow2: %s: cannot read the L1 "
				  "table",
				  path);
		goto fail;
	}
	if (version == 3 && (hlen < 104 || hlen > 4096 - 8)) {
		err = kiln_errorf(log, -EBADMSG, "qcow2: %s: header length %u",
				  path, hlen);
		goto fail;
	}
	err = read_extensions(q, h,
			      q->cluster_size < 4096 ? q->cluster_size : 4096,
			      hlen, fmt, sizeof(fmt));
	if (err < 0)
		goto fail;
	/* writing: refcounts we keep exact, so nothing shared or unknown */
	q->writable = !read_only;
	if (q->writable) {
		uint32_t rt_clusters = be32(h + 56);

		if (nb_snap || refcount_order != 4 ||
		    incompat & QCOW2_INCOMPAT_DIRTY) {
			err = kiln_errorf(
				log, -ENOTSUP,
				"qcow2: %s: kiln writes qcow2 images without "
				"internal snapshots, with 16-bit refcounts, "
				"not marked dirty: use ro, snapshot, or "
				"qemu-img convert",
				path);
			goto fail;
		}
		if (!aligned(q, q->rt_offset) || !q->rt_offset ||
		    (uint64_t)rt_clusters * q->cluster_size >
			    QCOW2_MAX_RT_BYTES ||
		    !rt_clusters) {
			err = kiln_errorf(log, -EBADMSG,
					  "qcow2: %s: a broken refcount table",
					  path);
			goto fail;
		}
		q->rt_entries = (uint64_t)rt_clusters * q->cluster_size / 8;
		q->rt = malloc(q->rt_entries * 8);
		if (!q->rt || block_pread_full(fd, q->rt, q->rt_entries * 8,
					       q->rt_offset) < 0) {
			err = kiln_errorf(log, -EIO,
					  "qcow2: %s: cannot read the refcount "
					  "table",
					  path);
			goto fail;
		}
		q->next_free =
			(fsize + q->cluster_size - 1) & ~(q->cluster_size - 1);
		/* autoclear features (persistent bitmaps...) describe data
		 * kiln is about to change without keeping them: the spec
		 * says a writer that does not know them clears them */
		if (version == 3 && be64(h + 88)) {
			uint64_t zero = 0;

			if (block_pwrite_full(fd, &zero, 8, 88) < 0) {
				err = kiln_errorf(log, -EIO,
						  "qcow2: %s: cannot clear its "
						  "autoclear features",
						  path);
				goto fail;
			}
		}
	}
	if (boff) {
		struct block_chain link = {
			.prev = chain, .dev = st.st_dev, .ino = st.st_ino};
		char dir[PATH_MAX];

		if (blen == 0 || blen > 1023 || boff > 4096 - blen) {
			err = kiln_errorf(log, -EBADMSG,
					  "qcow2: %s: a broken backing file "
					  "name",
					  path);
			goto fail;
		}
		memcpy(backing, h + boff, blen);
		backing[blen] = 0;
		if (strlen(backing) != blen) {
			err = kiln_errorf(log, -EBADMSG,
					  "qcow2: %s: a backing file name with "
					  "a NUL",
					  path);
			goto fail;
		}
		if (backing[0] != '/') {
			/* relative to the image's own directory */
			snprintf(dir, sizeof(dir), "%s", path);
			if (path[0] == '<' ||
			    snprintf(backing, sizeof(backing), "%s/%.*s",
				     dirname(dir), (int)blen,
				     (const char *)h + boff) >=
				    (int)sizeof(backing)) {
				err = kiln_errorf(
					log, -EINVAL,
					"qcow2: %s: cannot place its relative "
					"backing file",
					path);
				goto fail;
			}
		}
		err = block_open_chain(backing, fmt[0] ? fmt : NULL, &link, log,
				       &q->backing);
		if (err < 0) {
			kiln_logf(log, KILN_LOG_ERROR,
				  "qcow2: %s: its backing file %s cannot be "
				  "used",
				  path, backing);
			goto fail;
		}
		q->backing_size = block_backend_size(q->backing);
	}
	free(h);
	q->be.ops = &qcow2_ops;
	q->be.read_only = read_only;
	q->be.can_unmap = q->zero_flag != 0; /* zero clusters */
	snprintf(q->be.id, sizeof(q->be.id), "kiln%llx-%llx",
		 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	*out = &q->be;
	return 0;
fail:
	free(h);
	q_destroy(&q->be);
	return err;
}
