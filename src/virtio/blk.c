/* SPDX-License-Identifier: MIT */
#include "blk.h"
#include "util/le.h"
#include "virtio/device_table.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/snapshot_io.h"
#include "util/thread.h"
#include "vhost_user/memguard.h"

/* Requests a disk runs at once on its workers, and how many workers. */
#define BLK_MAX_INFLIGHT 32
#define BLK_WORKERS	 4

/* One request on its way through the workers. */
struct blk_job {
	struct blk_request req;
	uint16_t head;
	int status, err;
	uint64_t data_written;
	struct blk_job *next;
	struct block_io io; /* on the backend's own asynchronous path */
	struct virtio_blk *b;
};

/* Asynchronous execution: the ring side (pop, parse, check; status byte
 * and used ring) stays on the device's thread, the backend calls run on
 * BLK_WORKERS threads, several requests in flight, so a slow disk never
 * holds the device thread (or the transport's lock) for another device or
 * a register read. Finished jobs come back through done_fd, the device's
 * host fd. */
struct blk_aio {
	pthread_mutex_t lock;
	pthread_cond_t work, idle;
	struct blk_job *jobs;		  /* BLK_MAX_INFLIGHT of them */
	struct blk_job *free;		  /* device thread only */
	struct blk_job *todo, *todo_tail; /* for the workers */
	struct blk_job *done, *done_tail; /* for the device thread */
	unsigned running;		  /* jobs a worker holds */
	bool stopping;
	pthread_t workers[BLK_WORKERS];
	unsigned nworkers;
	/* a backend that is not thread-safe (qcow2, overlays) runs one call
	 * at a time */
	pthread_mutex_t be_lock;
	bool serial;
	/* the backend's own asynchronous path (io_uring) instead of workers:
	 * reads, writes and flushes go there; the rest runs on the device
	 * thread */
	bool native;
	bool discarding; /* a reset: finished requests are not reported */
};

struct virtio_blk {
	struct block_backend *be;
	bool owns_be; /* made by blk_create from options: destroyed with us */
	bool read_only;
	uint64_t capacity; /* 512-byte sectors */
	uint8_t config[BLK_CONFIG_SIZE];
	struct virtio_blk_stats stats;
	/* without aio, one request at a time, run on the device thread */
	struct virtq_chain chain;
	struct blk_request req;
	int done_fd; /* eventfd: the host fd (finished jobs) */
	struct blk_aio *aio;
	struct virtio_dev *dev;
};

/* ---- parsing: pure functions of the chain ---- */

static unsigned clamp_segs(unsigned n)
{
	return n < VIRTQ_MAX_SEGS ? n : VIRTQ_MAX_SEGS;
}

static uint64_t iov_sum(const struct iovec *iov, unsigned n)
{
	uint64_t t = 0;

	for (unsigned i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* Last byte of the last non-empty writable segment, or NULL. */
static uint8_t *find_status(const struct iovec *in, unsigned n_in)
{
	for (unsigned i = n_in; i-- > 0;)
		if (in[i].iov_len)
			return (uint8_t *)in[i].iov_base + in[i].iov_len - 1;
	return NULL;
}

/* Points req->data at `len` bytes of iov after the first `skip` ones. */
static void collect_data(struct blk_request *req, const struct iovec *iov,
			 unsigned n, uint64_t skip, uint64_t len)
{
	for (unsigned i = 0; i < n && len; i++) {
		uint64_t seg = iov[i].iov_len;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		seg -= skip;
		if (seg > len)
			seg = len;
		req->data[req->n_data++] = (struct iovec){
			(uint8_t *)iov[i].iov_base + skip, (size_t)seg};
		req->data_len += seg;
		len -= seg;
		skip = 0;
	}
}

/* Byte range of a read or write must be whole sectors and not wrap. */
static int check_rw_range(const struct blk_request *req)
{
	if (req->data_len % BLOCK_SECTOR_SIZE)
		return VIRTIO_BLK_S_IOERR;
	if (req->sector > UINT64_MAX / BLOCK_SECTOR_SIZE ||
	    req->sector * BLOCK_SECTOR_SIZE > UINT64_MAX - req->data_len)
		return VIRTIO_BLK_S_IOERR;
	return VIRTIO_BLK_S_OK;
}

/* Copies and checks the {sector, num_sectors, flags} segments after the
 * header; copying first means the guest cannot change them under us. */
static int parse_dwz_segs(const struct virtq_chain *c, uint64_t out_total,
			  struct blk_request *req)
{
	uint64_t len = out_total - BLK_HDR_SIZE;
	uint8_t buf[BLK_DWZ_SEG_SIZE];

	if (!len || len % BLK_DWZ_SEG_SIZE ||
	    len / BLK_DWZ_SEG_SIZE > BLK_MAX_DWZ_SEGS)
		return VIRTIO_BLK_S_IOERR;
	for (unsigned i = 0; i < len / BLK_DWZ_SEG_SIZE; i++) {
		struct blk_dwz_seg *s = &req->segs[i];

		if (virtq_chain_read(c, BLK_HDR_SIZE + BLK_DWZ_SEG_SIZE * i,
				     buf, sizeof(buf)) != sizeof(buf))
			return VIRTIO_BLK_S_IOERR;
		s->sector = get_le64(buf);
		s->num_sectors = get_le32(buf + 8);
		s->flags = get_le32(buf + 12);
		req->n_segs = i + 1;
		/* 5.2.6.2: unknown flags, and unmap on a discard, are UNSUPP */
		if (s->flags & ~VIRTIO_BLK_DWZ_F_UNMAP)
			return VIRTIO_BLK_S_UNSUPP;
		if (req->type == VIRTIO_BLK_T_DISCARD &&
		    (s->flags & VIRTIO_BLK_DWZ_F_UNMAP))
			return VIRTIO_BLK_S_UNSUPP;
		if (s->num_sectors > BLK_MAX_DWZ_SECTORS ||
		    s->sector > UINT64_MAX / BLOCK_SECTOR_SIZE - s->num_sectors)
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

int blk_parse_request(const struct virtq_chain *c, struct blk_request *req)
{
	unsigned n_out = clamp_segs(c->n_out), n_in = clamp_segs(c->n_in);
	uint64_t out_total = iov_sum(c->out, n_out);
	uint8_t hdr[BLK_HDR_SIZE];

	req->type = 0;
	req->sector = 0;
	req->n_data = 0;
	req->data_len = 0;
	req->n_segs = 0;
	req->in_len = iov_sum(c->in, n_in);
	req->status = find_status(c->in, n_in);
	if (!req->status)
		return -EINVAL;
	/* The header may span segments; it only has to be readable. */
	if (out_total < BLK_HDR_SIZE ||
	    virtq_chain_read(c, 0, hdr, sizeof(hdr)) != sizeof(hdr))
		return VIRTIO_BLK_S_IOERR;
	req->type = get_le32(hdr);
	req->sector = get_le64(hdr + 8);

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
		collect_data(req, c->in, n_in, 0, req->in_len - 1);
		return check_rw_range(req);
	case VIRTIO_BLK_T_OUT:
		collect_data(req, c->out, n_out, BLK_HDR_SIZE, UINT64_MAX);
		return check_rw_range(req);
	case VIRTIO_BLK_T_FLUSH: return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID:
		collect_data(req, c->in, n_in, 0, req->in_len - 1);
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return parse_dwz_segs(c, out_total, req);
	default: return VIRTIO_BLK_S_UNSUPP;
	}
}

bool blk_request_is_write(const struct blk_request *req)
{
	return req->type == VIRTIO_BLK_T_OUT ||
	       req->type == VIRTIO_BLK_T_DISCARD ||
	       req->type == VIRTIO_BLK_T_WRITE_ZEROES;
}

/* [sector, sector+count) within capacity; safe for any values. */
static bool sectors_ok(uint64_t cap, uint64_t sector, uint64_t count)
{
	return sector <= cap && count <= cap - sector;
}

int blk_check_request(const struct blk_request *req, uint64_t capacity_sectors,
		      bool read_only)
{
	if (read_only && blk_request_is_write(req))
		return VIRTIO_BLK_S_IOERR;
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (!sectors_ok(capacity_sectors, req->sector,
				req->data_len / BLOCK_SECTOR_SIZE))
			return VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		for (unsigned i = 0; i < req->n_segs && i < BLK_MAX_DWZ_SEGS;
		     i++)
			if (!sectors_ok(capacity_sectors, req->segs[i].sector,
					req->segs[i].num_sectors))
				return VIRTIO_BLK_S_IOERR;
		break;
	}
	return VIRTIO_BLK_S_OK;
}

/* ---- execution ---- */

static void note_backend_error(struct virtio_blk *b, const char *what, int err)
{
	uint64_t n = ++b->stats.backend_errors;

	/* Powers of two only: a guest can make every request fail. */
	if ((n & (n - 1)) == 0)
		log_warn(b->be->log,
			 "virtio-blk: %s failed: %s (%llu backend errors)",
			 what, strerror(-err), (unsigned long long)n);
}

static uint64_t copy_to_iov(const struct iovec *iov, unsigned n,
			    const void *src, uint64_t len)
{
	uint64_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		uint64_t k = iov[i].iov_len < len - done ? iov[i].iov_len
							 : len - done;

		memcpy(iov[i].iov_base, (const uint8_t *)src + done, (size_t)k);
		done += k;
	}
	return done;
}

static uint64_t seg_off(const struct blk_dwz_seg *s)
{
	return s->sector * BLOCK_SECTOR_SIZE;
}

static uint64_t seg_len(const struct blk_dwz_seg *s)
{
	return (uint64_t)s->num_sectors * BLOCK_SECTOR_SIZE;
}

/* Runs a checked request against the backend: its status, *err the
 * backend's error, *data_written the bytes put into the chain before the
 * status. No counters: this may run on a worker. */
static int blk_exec(struct block_backend *be, const struct blk_request *req,
		    uint64_t *data_written, int *err)
{
	uint64_t off = req->sector * BLOCK_SECTOR_SIZE;
	int r = 0;

	*data_written = 0;
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
		r = be->ops->readv(be, req->data, (int)req->n_data, off);
		if (r == 0)
			*data_written = req->data_len;
		break;
	case VIRTIO_BLK_T_OUT:
		r = be->ops->writev(be, req->data, (int)req->n_data, off);
		break;
	case VIRTIO_BLK_T_FLUSH: r = be->ops->flush(be); break;
	case VIRTIO_BLK_T_GET_ID: {
		uint8_t id[BLOCK_ID_BYTES] = {0};

		/* NUL-padded to 20 bytes, shorter buffers get a prefix */
		memcpy(id, be->id, strnlen(be->id, BLOCK_ID_BYTES));
		*data_written =
			copy_to_iov(req->data, req->n_data, id, sizeof(id));
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
		for (unsigned i = 0; i < req->n_segs && r == 0; i++)
			r = be->ops->discard(be, seg_off(&req->segs[i]),
					     seg_len(&req->segs[i]));
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		for (unsigned i = 0; i < req->n_segs && r == 0; i++)
			r = be->ops->write_zeroes(
				be, seg_off(&req->segs[i]),
				seg_len(&req->segs[i]),
				req->segs[i].flags & VIRTIO_BLK_DWZ_F_UNMAP);
		break;
	default: return VIRTIO_BLK_S_UNSUPP;
	}
	*err = r;
	return r < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

/* Counts a request blk_exec ran (on the device thread). */
static void blk_account(struct virtio_blk *b, const struct blk_request *req,
			int err)
{
	static const char *const what[] = {
		[VIRTIO_BLK_T_IN] = "read",
		[VIRTIO_BLK_T_OUT] = "write",
		[VIRTIO_BLK_T_FLUSH] = "flush",
		[VIRTIO_BLK_T_GET_ID] = "get id",
		[VIRTIO_BLK_T_DISCARD] = "discard",
		[VIRTIO_BLK_T_WRITE_ZEROES] = "write zeroes",
	};

	if (err < 0) {
		note_backend_error(b,
				   req->type < sizeof(what) / sizeof(what[0]) &&
						   what[req->type]
					   ? what[req->type]
					   : "request",
				   err);
		return;
	}
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
		b->stats.reads++;
		b->stats.bytes_read += req->data_len;
		break;
	case VIRTIO_BLK_T_OUT:
		b->stats.writes++;
		b->stats.bytes_written += req->data_len;
		break;
	case VIRTIO_BLK_T_FLUSH: b->stats.flushes++; break;
	case VIRTIO_BLK_T_GET_ID: b->stats.get_ids++; break;
	case VIRTIO_BLK_T_DISCARD: b->stats.discards++; break;
	case VIRTIO_BLK_T_WRITE_ZEROES: b->stats.write_zeroes++; break;
	}
}

/* Writes the status byte; returns the used-ring length. */
static uint32_t blk_finish(struct virtio_blk *b, const struct blk_request *req,
			   int status, uint64_t data_written)
{
	uint64_t written;

	*req->status = (uint8_t)status;
	if (status == VIRTIO_BLK_S_IOERR)
		b->stats.ioerr++;
	else if (status == VIRTIO_BLK_S_UNSUPP)
		b->stats.unsupp++;
	written = status == VIRTIO_BLK_S_OK ? data_written + 1 : 1;
	return written > UINT32_MAX ? UINT32_MAX : (uint32_t)written;
}

static bool negotiated(const struct virtio_dev *d, unsigned bit)
{
	return d->driver_features & (1ull << bit);
}

/* Parses and checks chain c into req: VIRTIO_BLK_S_OK (to run), another
 * status (to answer at once), or <0 (no status byte: hand it back). */
static int blk_prepare(struct virtio_dev *dev, struct virtio_blk *b,
		       const struct virtq_chain *c, struct blk_request *req)
{
	int status = blk_parse_request(c, req);

	if (status < 0) {
		/* Nowhere to report an error: hand the chain back untouched. */
		b->stats.no_status++;
		log_debug(dev->log, "virtio-blk: chain %u has no status byte",
			  c->head);
		return status;
	}
	if (status == VIRTIO_BLK_S_OK) {
		status = blk_check_request(req, b->capacity, b->read_only);
		if (status != VIRTIO_BLK_S_OK && b->read_only &&
		    blk_request_is_write(req))
			b->stats.ro_refused++;
	}
	/* Commands the driver did not negotiate were never promised. */
	if (status == VIRTIO_BLK_S_OK &&
	    ((req->type == VIRTIO_BLK_T_DISCARD &&
	      !negotiated(dev, VIRTIO_BLK_F_DISCARD)) ||
	     (req->type == VIRTIO_BLK_T_WRITE_ZEROES &&
	      !negotiated(dev, VIRTIO_BLK_F_WRITE_ZEROES))))
		status = VIRTIO_BLK_S_UNSUPP;
	if (status != VIRTIO_BLK_S_OK)
		log_debug(dev->log,
			  "virtio-blk: request type %u sector %llu: %s",
			  req->type, (unsigned long long)req->sector,
			  status == VIRTIO_BLK_S_UNSUPP ? "unsupported"
							: "I/O error");
	return status;
}

uint32_t virtio_blk_handle_chain(struct virtio_dev *dev,
				 const struct virtq_chain *c)
{
	struct virtio_blk *b = dev->priv;
	struct blk_request *req;
	uint64_t data_written = 0;
	int status, err = 0;

	if (!b || dev->ops != &virtio_blk_ops)
		return 0;
	req = &b->req;
	status = blk_prepare(dev, b, c, req);
	if (status < 0)
		return 0;
	if (status == VIRTIO_BLK_S_OK) {
		status = blk_exec(b->be, req, &data_written, &err);
		blk_account(b, req, err);
	}
	return blk_finish(b, req, status, data_written);
}

/* ---- asynchronous execution ---- */

static void *blk_worker(void *arg)
{
	struct virtio_blk *b = arg;
	struct blk_aio *a = b->aio;
	uint64_t one = 1;

	/* workers copy into guest memory a vhost-user front end may shrink
	 * under us: its SIGBUS must reach the guard, not kill the process */
	memguard_thread_prepare();
	pthread_mutex_lock(&a->lock);
	for (;;) {
		struct blk_job *j;

		while (!a->todo && !a->stopping)
			pthread_cond_wait(&a->work, &a->lock);
		if (!a->todo)
			break;
		j = a->todo;
		a->todo = j->next;
		if (!a->todo)
			a->todo_tail = NULL;
		a->running++;
		pthread_mutex_unlock(&a->lock);
		if (a->serial)
			pthread_mutex_lock(&a->be_lock);
		j->status = blk_exec(b->be, &j->req, &j->data_written, &j->err);
		if (a->serial)
			pthread_mutex_unlock(&a->be_lock);
		pthread_mutex_lock(&a->lock);
		j->next = NULL;
		if (a->done_tail)
			a->done_tail->next = j;
		else
			a->done = j;
		a->done_tail = j;
		a->running--;
		if (!a->running && !a->todo)
			pthread_cond_broadcast(&a->idle);
		/* the device thread wakes for it */
		(void)!write(b->done_fd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* Waits until no job is queued or running (queued ones are dropped when
 * drop, else run); returns the finished ones, the list emptied. */
static struct blk_job *aio_drain(struct blk_aio *a, bool drop)
{
	struct blk_job *list, *dropped;

	pthread_mutex_lock(&a->lock);
	dropped = drop ? a->todo : NULL;
	if (drop)
		a->todo = a->todo_tail = NULL;
	while (a->running || a->todo)
		pthread_cond_wait(&a->idle, &a->lock);
	list = a->done;
	a->done = a->done_tail = NULL;
	pthread_mutex_unlock(&a->lock);
	/* dropped jobs go back unfinished: appended, marked */
	for (struct blk_job *j = dropped; j; j = j->next)
		j->status = -1;
	if (dropped) {
		struct blk_job *t = dropped;

		while (t->next)
			t = t->next;
		t->next = list;
		list = dropped;
	}
	return list;
}

static void job_free(struct blk_aio *a, struct blk_job *j)
{
	j->next = a->free;
	a->free = j;
}

/* Finished jobs to the ring, in the order they finished. */
static void aio_complete(struct virtio_dev *d, struct virtio_blk *b,
			 struct blk_job *list)
{
	while (list) {
		struct blk_job *j = list;

		list = j->next;
		blk_account(b, &j->req, j->err);
		virtio_dev_complete(
			d, 0, j->head,
			blk_finish(b, &j->req, j->status, j->data_written));
		job_free(b->aio, j);
	}
}

/* Takes requests off the ring while there are free jobs: answered at once
 * when they fail their checks, else handed to the workers. */
/* A request the backend's own asynchronous path finished (reaped on the
 * device thread). */
static void native_done(struct block_io *io)
{
	struct blk_job *j = io->opaque;
	struct virtio_blk *b = j->b;

	if (!b->aio->discarding) {
		j->err = io->result;
		j->status =
			io->result < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		j->data_written =
			io->result == 0 && j->req.type == VIRTIO_BLK_T_IN
				? j->req.data_len
				: 0;
		blk_account(b, &j->req, j->err);
		virtio_dev_complete(
			b->dev, 0, j->head,
			blk_finish(b, &j->req, j->status, j->data_written));
	}
	job_free(b->aio, j);
}

/* Reads, writes and flushes to the backend's asynchronous path; false
 * when it did not take the request (the caller runs it itself). */
static bool native_submit(struct virtio_blk *b, struct blk_job *j)
{
	struct block_io *io = &j->io;

	memset(io, 0, sizeof(*io));
	switch (j->req.type) {
	case VIRTIO_BLK_T_IN: io->op = BLOCK_IO_READ; break;
	case VIRTIO_BLK_T_OUT: io->op = BLOCK_IO_WRITE; break;
	case VIRTIO_BLK_T_FLUSH: io->op = BLOCK_IO_FLUSH; break;
	default: return false;
	}
	io->iov = j->req.data;
	io->iovcnt = (int)j->req.n_data;
	io->off = j->req.sector * BLOCK_SECTOR_SIZE;
	io->done = native_done;
	io->opaque = j;
	j->b = b;
	return b->be->ops->submit(b->be, io) == 0;
}

static void aio_pop(struct virtio_dev *d, struct virtio_blk *b)
{
	struct blk_aio *a = b->aio;
	struct virtq *q = &d->vqs[0];

	while (a->free) {
		struct blk_job *j = a->free;
		int r = virtq_pop(q, &b->chain), status;

		if (r < 0) {
			virtio_dev_fail(d, "malformed request ring");
			return;
		}
		if (r == 0)
			return; /* the ring is empty */
		a->free = j->next;
		j->head = b->chain.head;
		j->err = 0;
		j->data_written = 0;
		status = blk_prepare(d, b, &b->chain, &j->req);
		if (status != VIRTIO_BLK_S_OK) {
			virtio_dev_complete(
				d, 0, j->head,
				status < 0 ? 0
					   : blk_finish(b, &j->req, status, 0));
			job_free(a, j);
			continue;
		}
		if (a->native) {
			if (native_submit(b, j))
				continue;
			/* discards, write-zeroes, GET_ID (and a full ring):
			 * here, now */
			j->status = blk_exec(b->be, &j->req, &j->data_written,
					     &j->err);
			blk_account(b, &j->req, j->err);
			virtio_dev_complete(d, 0, j->head,
					    blk_finish(b, &j->req, j->status,
						       j->data_written));
			job_free(a, j);
			continue;
		}
		pthread_mutex_lock(&a->lock);
		j->next = NULL;
		if (a->todo_tail)
			a->todo_tail->next = j;
		else
			a->todo = j;
		a->todo_tail = j;
		pthread_cond_signal(&a->work);
		pthread_mutex_unlock(&a->lock);
	}
	/* every job is out: finishing ones call us again */
}

static int blk_host_fd(const struct virtio_dev *d)
{
	const struct virtio_blk *b = d->priv;

	return b ? b->done_fd : -1;
}

static void blk_host_events(struct virtio_dev *d)
{
	struct virtio_blk *b = d->priv;
	struct blk_aio *a = b->aio;
	struct blk_job *list;
	uint64_t n;

	(void)!read(b->done_fd, &n, sizeof(n));
	if (!a)
		return;
	if (a->native)
		b->be->ops->reap(b->be, false); /* completes them */
	pthread_mutex_lock(&a->lock);
	list = a->done;
	a->done = a->done_tail = NULL;
	pthread_mutex_unlock(&a->lock);
	aio_complete(d, b, list);
	if (d->status & VIRTIO_STATUS_DRIVER_OK && d->vqs[0].ready &&
	    !d->vqs[0].broken)
		aio_pop(d, b); /* jobs came free: the ring may have more */
}

static void blk_quiesce(struct virtio_dev *d)
{
	struct virtio_blk *b = d->priv;

	if (b && b->aio && b->aio->native)
		b->be->ops->reap(b->be, true);
	else if (b && b->aio)
		aio_complete(d, b, aio_drain(b->aio, false));
}

static void blk_reset(struct virtio_dev *d)
{
	struct virtio_blk *b = d->priv;
	struct blk_job *list;

	if (!b || !b->aio)
		return;
	if (b->aio->native) {
		/* in flight: waited for, not reported */
		b->aio->discarding = true;
		b->be->ops->reap(b->be, true);
		b->aio->discarding = false;
		return;
	}
	/* the rings are going: what ran is not reported, what waited not
	 * run; no worker touches guest memory after this returns */
	list = aio_drain(b->aio, true);
	while (list) {
		struct blk_job *j = list;

		list = j->next;
		job_free(b->aio, j);
	}
}

static void aio_stop(struct virtio_blk *b)
{
	struct blk_aio *a = b->aio;

	if (!a)
		return;
	if (a->native) {
		a->discarding = true;
		b->be->ops->reap(b->be, true);
	}
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	a->todo = a->todo_tail = NULL; /* queued, never started: dropped */
	pthread_cond_broadcast(&a->work);
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < a->nworkers; i++)
		pthread_join(a->workers[i], NULL);
	pthread_mutex_destroy(&a->lock);
	pthread_mutex_destroy(&a->be_lock);
	pthread_cond_destroy(&a->work);
	pthread_cond_destroy(&a->idle);
	free(a->jobs);
	free(a);
	b->aio = NULL;
}

/* Starts the workers; the device runs requests asynchronously from then
 * on. 0 or -errno (logged). */
static int aio_start(struct virtio_dev *d, struct virtio_blk *b)
{
	struct blk_aio *a = calloc(1, sizeof(*a));

	if (!a || !(a->jobs = calloc(BLK_MAX_INFLIGHT, sizeof(*a->jobs)))) {
		free(a);
		return kiln_errorf(d->log, -ENOMEM,
				   "virtio-blk: out of memory");
	}
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->be_lock, NULL);
	pthread_cond_init(&a->work, NULL);
	pthread_cond_init(&a->idle, NULL);
	a->serial = !b->be->thread_safe;
	for (unsigned i = 0; i < BLK_MAX_INFLIGHT; i++)
		job_free(a, &a->jobs[i]);
	b->aio = a;
	/* the backend's own asynchronous path where it has one (io_uring
	 * on raw files), else threads; KILN_IO_URING=0 asks for threads */
	if (b->be->ops->async_init &&
	    !(getenv("KILN_IO_URING") &&
	      !strcmp(getenv("KILN_IO_URING"), "0")) &&
	    b->be->ops->async_init(b->be, b->done_fd) == 0) {
		a->native = true;
		return 0;
	}
	/* a backend that takes one call at a time gets one worker: more
	 * would only queue on its lock, and each handoff costs a wakeup */
	for (unsigned i = 0; i < (a->serial ? 1u : BLK_WORKERS); i++) {
		if (thread_start_blocked(&a->workers[i], blk_worker, b) != 0) {
			aio_stop(b);
			return kiln_errorf(d->log, -EAGAIN,
					   "virtio-blk: cannot start a "
					   "worker thread");
		}
		a->nworkers++;
	}
	return 0;
}

/* ---- device ops ---- */

static uint64_t blk_features(struct virtio_dev *d)
{
	struct virtio_blk *b = d->priv;
	uint64_t f = 1ull << VIRTIO_BLK_F_SEG_MAX |
		     1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH;

	if (!b)
		return f;
	/* A read-only disk offers no way to change it. */
	if (b->read_only)
		f |= 1ull << VIRTIO_BLK_F_RO;
	else
		f |= 1ull << VIRTIO_BLK_F_DISCARD |
		     1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	return f;
}

static void blk_config_read(struct virtio_dev *d, uint32_t off, uint8_t *buf,
			    uint32_t len)
{
	struct virtio_blk *b = d->priv;

	if (!b || off > BLK_CONFIG_SIZE || len > BLK_CONFIG_SIZE - off) {
		memset(buf, 0, len);
		return;
	}
	memcpy(buf, b->config + off, len);
}

static void blk_config_write(struct virtio_dev *d, uint32_t off,
			     const uint8_t *buf, uint32_t len)
{
	(void)buf;
	/* Nothing is writable without CONFIG_WCE, which is not offered. */
	log_debug(d->log, "virtio-blk: ignored config write at %u (%u bytes)",
		  off, len);
}

static void blk_queue_notify(struct virtio_dev *d, unsigned qi)
{
	struct virtio_blk *b = d->priv;
	struct virtq *q = &d->vqs[0];
	int r;

	if (!b || qi != 0)
		return;
	if (b->aio) {
		aio_pop(d, b);
		return;
	}
	while ((r = virtq_pop(q, &b->chain)) > 0) {
		uint32_t written = virtio_blk_handle_chain(d, &b->chain);

		virtio_dev_complete(d, 0, b->chain.head, written);
	}
	if (r < 0)
		virtio_dev_fail(d, "malformed request ring");
}

static const char *const blk_option_keys[] = {
	"path", "fd", "ro", "snapshot", "format", "insecure", NULL};

/* The disk as block_open takes it; 0 or -EINVAL (logged). */
static int blk_open_opts(const struct virtio_dev_opts *o,
			 const struct kiln_log *log, struct block_open_opts *bo)
{
	bool has_path = virtio_dev_opts_find(o, "path", NULL);
	bool has_fd = virtio_dev_opts_find(o, "fd", NULL);
	const char *format = virtio_dev_opts_get(o, "format");
	uint64_t fd;
	int err;

	memset(bo, 0, sizeof(*bo));
	bo->fd = -1;
	if (has_path && has_fd)
		return kiln_errorf(log, -EINVAL,
				   "blk: path= and fd= exclude each other");
	if (has_fd) {
		err = virtio_dev_opts_u64(o, "fd", 0, INT32_MAX, log, &fd);
		bo->fd = (int)fd;
	} else {
		err = virtio_dev_opts_require(o, "path", "path=IMAGE (or fd=N)",
					      log, &bo->path);
	}
	if (err == 0)
		err = virtio_dev_opts_bool(o, "ro", log, &bo->read_only);
	if (err == 0)
		err = virtio_dev_opts_bool(o, "snapshot", log, &bo->snapshot);
	if (err == 0)
		err = virtio_dev_opts_bool(o, "insecure", log, &bo->insecure);
	/* a disk on an HTTP server is read-only unless a snapshot */
	if (err == 0 && bo->path && block_is_url(bo->path) && !bo->snapshot)
		bo->read_only = true;
	if (err == 0 && (virtio_dev_opts_find(o, "format", NULL) || format) &&
	    (!format || block_format_parse(format, &bo->format) < 0))
		err = kiln_errorf(log, -EINVAL,
				  "blk: format=%s: expected raw, qcow2 or auto",
				  format ? format : "");
	return err;
}

static int blk_check(const struct virtio_dev_opts *o,
		     const struct kiln_log *log)
{
	struct block_open_opts bo;

	return blk_open_opts(o, log, &bo);
}

/* A disk image (raw or qcow2, detected unless format= says) or block
 * device, opened by the device itself or from a duplicate of the caller's
 * fd; with snapshot, behind a private copy-on-write overlay. */
static int blk_create(struct virtio_dev *d, const struct virtio_dev_opts *o)
{
	struct block_open_opts bo;
	struct block_backend *be;
	char what[32];
	int err;

	if (blk_open_opts(o, d->log, &bo) < 0)
		return -EINVAL;
	if (!bo.path)
		snprintf(what, sizeof(what), "fd %d", bo.fd);
	err = block_open(&bo, d->log, &be);
	if (err < 0)
		return kiln_errorf(d->log, err, "cannot use disk %s",
				   bo.path ? bo.path : what);
	err = virtio_blk_create(be, bo.read_only, d);
	if (err < 0) {
		block_backend_destroy(be);
		return kiln_errorf(d->log, err, "cannot create disk %s",
				   bo.path ? bo.path : what);
	}
	((struct virtio_blk *)d->priv)->owns_be = true;
	err = aio_start(d, d->priv);
	if (err < 0)
		virtio_blk_destroy(d);
	return err;
}

/* Snapshots: only a read-only disk (clones of a snapshot would all write
 * one image); nothing in flight (the caller quiesced it), so the state is
 * the capacity, checked against the disk at restore. */
static int blk_save(const struct virtio_dev *d, struct snapshot_writer *w)
{
	const struct virtio_blk *b = d->priv;

	if (!b->read_only)
		return kiln_errorf(d->log, -EROFS,
				   "snapshot: %s is read-write (restored "
				   "clones would all write it): only "
				   "read-only disks can be snapshotted",
				   d->ops->name);
	sw_u64(w, b->capacity);
	return 0;
}

static int blk_restore(struct virtio_dev *d, struct snapshot_reader *r)
{
	const struct virtio_blk *b = d->priv;
	uint64_t cap = sr_u64(r);

	if (r->bad || cap != b->capacity)
		return kiln_errorf(d->log, -ESTALE,
				   "restore: %s has %llu sectors, the "
				   "snapshot's had %llu: not the same disk",
				   d->ops->name,
				   (unsigned long long)b->capacity,
				   (unsigned long long)cap);
	return 0;
}

const struct virtio_dev_ops virtio_blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.queue_max_size = BLK_QUEUE_SIZE,
	.features = blk_features,
	.config_size = BLK_CONFIG_SIZE,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.quiesce = blk_quiesce,
	.save = blk_save,
	.restore = blk_restore,
	.host_fd = blk_host_fd,
	.host_events = blk_host_events,
	.type = "blk",
	.option_keys = blk_option_keys,
	.option_usage = "path=IMAGE|URL|fd=N[,ro][,snapshot][,format=raw|qcow2]"
			"[,insecure]",
	.check = blk_check,
	.create = blk_create,
	.destroy = virtio_blk_destroy,
	.vhost_user_frontend = "vhost-user-blk,num-queues=1",
};

static void fill_config(struct virtio_blk *b)
{
	uint8_t *c = b->config;

	put_le64(c + BLK_CFG_CAPACITY, b->capacity);
	put_le32(c + BLK_CFG_SEG_MAX, BLK_SEG_MAX);
	put_le32(c + BLK_CFG_BLK_SIZE, BLOCK_SECTOR_SIZE);
	put_le32(c + BLK_CFG_MAX_DISCARD_SECTORS, BLK_MAX_DWZ_SECTORS);
	put_le32(c + BLK_CFG_MAX_DISCARD_SEG, BLK_MAX_DWZ_SEGS);
	put_le32(c + BLK_CFG_DISCARD_ALIGN, BLK_DISCARD_ALIGN_SECTORS);
	put_le32(c + BLK_CFG_MAX_WZ_SECTORS, BLK_MAX_DWZ_SECTORS);
	put_le32(c + BLK_CFG_MAX_WZ_SEG, BLK_MAX_DWZ_SEGS);
	c[BLK_CFG_WZ_MAY_UNMAP] = b->be->can_unmap;
}

int virtio_blk_create(struct block_backend *be, bool read_only,
		      struct virtio_dev *dev)
{
	struct virtio_blk *b;
	uint64_t size;

	if (!be || !dev)
		return -EINVAL;
	size = block_backend_size(be);
	if (size % BLOCK_SECTOR_SIZE)
		return kiln_errorf(
			dev->log, -EINVAL,
			"virtio-blk: disk size %llu is not a multiple of %u",
			(unsigned long long)size, BLOCK_SECTOR_SIZE);
	b = calloc(1, sizeof(*b));
	if (!b)
		return kiln_errorf(dev->log, -ENOMEM,
				   "virtio-blk: out of memory");
	b->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->done_fd < 0) {
		free(b);
		return kiln_errorf(dev->log, -errno, "virtio-blk: eventfd: %s",
				   strerror(errno));
	}
	b->be = be;
	b->dev = dev;
	b->read_only = read_only || be->read_only;
	b->capacity = size / BLOCK_SECTOR_SIZE;
	fill_config(b);
	dev->ops = &virtio_blk_ops;
	dev->priv = b;
	return 0;
}

void virtio_blk_destroy(struct virtio_dev *dev)
{
	struct virtio_blk *b;

	if (!dev || dev->ops != &virtio_blk_ops || !dev->priv)
		return;
	b = dev->priv;
	aio_stop(b); /* before the backend goes */
	if (b->owns_be)
		block_backend_destroy(b->be);
	if (b->done_fd >= 0)
		close(b->done_fd);
	free(b);
	dev->priv = NULL;
}

void virtio_blk_get_stats(const struct virtio_dev *dev,
			  struct virtio_blk_stats *out)
{
	const struct virtio_blk *b = dev->priv;

	if (b)
		*out = b->stats;
	else
		memset(out, 0, sizeof(*out));
}
