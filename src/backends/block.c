/* SPDX-License-Identifier: MIT */
#include "block.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* iovecs copied when a short transfer leaves us mid-array */
#define RAW_IOV_WINDOW 64
#define ZERO_CHUNK     65536

int block_iov_range(const struct iovec *iov, int cnt, uint64_t off,
		    uint64_t size, uint64_t *total)
{
	uint64_t t = 0;

	if (cnt < 0)
		return -EINVAL;
	for (int i = 0; i < cnt; i++) {
		if (iov[i].iov_len > UINT64_MAX - t)
			return -EINVAL;
		t += iov[i].iov_len;
	}
	*total = t;
	return block_range_ok(size, off, t) ? 0 : -EINVAL;
}

int block_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) { /* past the end: what was never written */
			memset((char *)buf + done, 0, len - done);
			return 0;
		}
		done += (size_t)r;
	}
	return 0;
}

int block_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		done += (size_t)r;
	}
	return 0;
}

int block_backend_set_id(struct block_backend *be, const char *id)
{
	size_t n = strlen(id);

	if (n > BLOCK_ID_BYTES)
		return kiln_errorf(be->log, -EINVAL,
				   "block: id '%s' longer than %d bytes", id,
				   BLOCK_ID_BYTES);
	memset(be->id, 0, sizeof(be->id));
	memcpy(be->id, id, n);
	return 0;
}

void block_backend_destroy(struct block_backend *be)
{
	if (be)
		be->ops->destroy(be);
}

/* ---- raw file or block device ---- */

struct raw_backend {
	struct block_backend be;
	int fd;
	uint64_t size;
	/* fallocate modes the file system refused once: not retried */
	bool no_punch_hole, no_zero_range;
	/* the format was detected (not given): the guest may not write a
	 * header that the next detection would take for another format (a
	 * qcow2 header naming a host file as its backing file) */
	bool guard_header;
	/* the asynchronous path: an io_uring, NULL without one */
	struct io_uring *ring;
	unsigned inflight;
};

#define RAW_URING_DEPTH 64

static struct raw_backend *to_raw(struct block_backend *be)
{
	return (struct raw_backend *)be;
}

/* preadv/pwritev until all of iov is done: the kernel may transfer less
 * (signals, huge requests), and a copy of the array is needed only then. */
static int raw_rw(int fd, const struct iovec *iov, int cnt, uint64_t off,
		  bool write)
{
	struct iovec win[RAW_IOV_WINDOW];
	size_t skip = 0; /* bytes of iov[0] already done */

	while (cnt > 0) {
		const struct iovec *v = iov;
		int n = cnt < IOV_MAX ? cnt : IOV_MAX;
		ssize_t r;

		if (iov[0].iov_len == skip) {
			iov++;
			cnt--;
			skip = 0;
			continue;
		}
		if (skip) {
			n = cnt < RAW_IOV_WINDOW ? cnt : RAW_IOV_WINDOW;
			memcpy(win, iov, sizeof(win[0]) * (size_t)n);
			win[0].iov_base = (uint8_t *)win[0].iov_base + skip;
			win[0].iov_len -= skip;
			v = win;
		}
		/* One buffer (the common 4 KiB case): plain pread/pwrite
		 * spare the kernel importing an iovec array. */
		if (n == 1 && write)
			r = pwrite(fd, v->iov_base, v->iov_len, (off_t)off);
		else if (n == 1)
			r = pread(fd, v->iov_base, v->iov_len, (off_t)off);
		else if (write)
			r = pwritev(fd, v, n, (off_t)off);
		else
			r = preadv(fd, v, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* EOF inside the checked size: the file shrank under us. */
		if (r == 0)
			return -EIO;
		off += (uint64_t)r;
		while (r > 0) {
			size_t left = iov[0].iov_len - skip;

			if ((size_t)r < left) {
				skip += (size_t)r;
				break;
			}
			r -= (ssize_t)left;
			iov++;
			cnt--;
			skip = 0;
		}
	}
	return 0;
}

static int raw_readv(struct block_backend *be, const struct iovec *iov,
		     int iovcnt, uint64_t off)
{
	struct raw_backend *rb = to_raw(be);
	uint64_t len;

	if (block_iov_range(iov, iovcnt, off, rb->size, &len) < 0)
		return -EINVAL;
	return raw_rw(rb->fd, iov, iovcnt, off, false);
}

/* Whether writing iov at off would make the image start like a qcow2
 * one. */
static bool forges_header(struct raw_backend *rb, const struct iovec *iov,
			  int cnt, uint64_t off)
{
	uint8_t hdr[4] = {0};
	uint64_t pos = off;

	if (!rb->guard_header || off >= sizeof(hdr))
		return false;
	if (pread(rb->fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		memset(hdr, 0, sizeof(hdr));
	for (int i = 0; i < cnt && pos < sizeof(hdr); i++)
		for (size_t k = 0; k < iov[i].iov_len && pos < sizeof(hdr); k++)
			hdr[pos++] = ((const uint8_t *)iov[i].iov_base)[k];
	return block_qcow2_probe(hdr, sizeof(hdr));
}

void block_raw_guard_header(struct block_backend *be)
{
	to_raw(be)->guard_header = true;
}

static int raw_writev(struct block_backend *be, const struct iovec *iov,
		      int iovcnt, uint64_t off)
{
	struct raw_backend *rb = to_raw(be);
	uint64_t len;

	if (be->read_only)
		return -EROFS;
	/* A write past the end would silently grow the image. */
	if (block_iov_range(iov, iovcnt, off, rb->size, &len) < 0)
		return -EINVAL;
	if (forges_header(rb, iov, iovcnt, off))
		return -EPERM;
	return raw_rw(rb->fd, iov, iovcnt, off, true);
}

static int raw_flush(struct block_backend *be)
{
	if (fdatasync(to_raw(be)->fd) < 0)
		return -errno;
	return 0;
}

static bool unsupported(int err)
{
	return err == EOPNOTSUPP || err == ENOSYS;
}

/* fallocate(mode | KEEP_SIZE); 1 if the mode is unsupported, else 0/-errno */
static int raw_fallocate(struct raw_backend *rb, int mode, uint64_t off,
			 uint64_t len)
{
	int r;

	do
		r = fallocate(rb->fd, mode | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      (off_t)len);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return 0;
	return unsupported(errno) ? 1 : -errno;
}

static int raw_write_zero_bytes(struct raw_backend *rb, uint64_t off,
				uint64_t len)
{
	static const uint8_t zeros[ZERO_CHUNK];

	while (len) {
		size_t n = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
		ssize_t r = pwrite(rb->fd, zeros, n, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

static int raw_punch_hole(struct raw_backend *rb, uint64_t off, uint64_t len)
{
	int r;

	if (rb->no_punch_hole)
		return 1;
	r = raw_fallocate(rb, FALLOC_FL_PUNCH_HOLE, off, len);
	if (r == 1)
		rb->no_punch_hole = true;
	return r;
}

static int raw_zero_range(struct raw_backend *rb, uint64_t off, uint64_t len)
{
	int r;

	if (rb->no_zero_range)
		return 1;
	r = raw_fallocate(rb, FALLOC_FL_ZERO_RANGE, off, len);
	if (r == 1)
		rb->no_zero_range = true;
	return r;
}

static int raw_discard(struct block_backend *be, uint64_t off, uint64_t len)
{
	struct raw_backend *rb = to_raw(be);
	int r;

	if (be->read_only)
		return -EROFS;
	if (!block_range_ok(rb->size, off, len))
		return -EINVAL;
	if (!len)
		return 0;
	r = raw_punch_hole(rb, off, len);
	/* Discard is a hint: a file system without holes just keeps data. */
	return r == 1 ? 0 : r;
}

static int raw_write_zeroes(struct block_backend *be, uint64_t off,
			    uint64_t len, bool unmap)
{
	struct raw_backend *rb = to_raw(be);
	int r;

	if (be->read_only)
		return -EROFS;
	if (!block_range_ok(rb->size, off, len))
		return -EINVAL;
	if (!len)
		return 0;
	/* Cheapest first: a hole when deallocation is allowed, else zeroed
	 * extents; a raw image is sparse anyway, so a hole is the next best
	 * either way. Writing zeros is the last resort. */
	if (unmap) {
		r = raw_punch_hole(rb, off, len);
		if (r <= 0)
			return r;
		r = raw_zero_range(rb, off, len);
	} else {
		r = raw_zero_range(rb, off, len);
		if (r <= 0)
			return r;
		r = raw_punch_hole(rb, off, len);
	}
	if (r <= 0)
		return r;
	return raw_write_zero_bytes(rb, off, len);
}

static uint64_t raw_size(struct block_backend *be)
{
	return to_raw(be)->size;
}

/* ---- the asynchronous path: io_uring ---- */

static int raw_async_init(struct block_backend *be, int notify_fd)
{
	struct raw_backend *rb = to_raw(be);
	struct io_uring *r = calloc(1, sizeof(*r));
	int err;

	if (!r)
		return -ENOMEM;
	/* -ENOSYS, -EPERM (io_uring disabled, a seccomp filter): the caller
	 * falls back to threads */
	err = io_uring_queue_init(RAW_URING_DEPTH, r, 0);
	if (err < 0) {
		free(r);
		return err;
	}
	err = io_uring_register_eventfd(r, notify_fd);
	if (err < 0) {
		io_uring_queue_exit(r);
		free(r);
		return err;
	}
	rb->ring = r;
	return 0;
}

static int raw_submit(struct block_backend *be, struct block_io *io)
{
	struct raw_backend *rb = to_raw(be);
	struct io_uring_sqe *sqe;
	int r;

	io->len = 0;
	if (io->op == BLOCK_IO_READ || io->op == BLOCK_IO_WRITE) {
		if (io->op == BLOCK_IO_WRITE && be->read_only)
			return -EROFS;
		if (block_iov_range(io->iov, io->iovcnt, io->off, rb->size,
				    &io->len) < 0 ||
		    io->iovcnt > IOV_MAX)
			return -EINVAL;
		if (io->op == BLOCK_IO_WRITE &&
		    forges_header(rb, io->iov, io->iovcnt, io->off))
			return -EPERM;
	}
	if (!rb->ring || !(sqe = io_uring_get_sqe(rb->ring)))
		return -EAGAIN;
	if (io->op == BLOCK_IO_READ)
		io_uring_prep_readv(sqe, rb->fd, io->iov, (unsigned)io->iovcnt,
				    io->off);
	else if (io->op == BLOCK_IO_WRITE)
		io_uring_prep_writev(sqe, rb->fd, io->iov, (unsigned)io->iovcnt,
				     io->off);
	else
		io_uring_prep_fsync(sqe, rb->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, io);
	r = io_uring_submit(rb->ring);
	if (r < 0) {
		/* the entry stays queued and goes with the next submit; the
		 * caller runs this one itself: make it a no-op */
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, NULL);
		return r;
	}
	rb->inflight++;
	return 0;
}

static void raw_reap(struct block_backend *be, bool wait_all)
{
	struct raw_backend *rb = to_raw(be);
	struct io_uring_cqe *cqe;

	while (rb->ring && (wait_all ? rb->inflight : 1)) {
		struct block_io *io;
		int res, r = wait_all ? io_uring_wait_cqe(rb->ring, &cqe)
				      : io_uring_peek_cqe(rb->ring, &cqe);

		if (r == -EINTR)
			continue;
		if (r < 0)
			return;
		io = io_uring_cqe_get_data(cqe);
		res = cqe->res;
		io_uring_cqe_seen(rb->ring, cqe);
		if (!io)
			continue; /* a no-op left by a failed submit */
		rb->inflight--;
		/* short transfers are rare (a huge request): the whole of it
		 * again, synchronously, is simplest and idempotent */
		if (res >= 0 && io->op != BLOCK_IO_FLUSH &&
		    (uint64_t)res < io->len)
			res = raw_rw(rb->fd, io->iov, io->iovcnt, io->off,
				     io->op == BLOCK_IO_WRITE);
		io->result = res < 0 ? res : 0;
		io->done(io);
	}
}

static void raw_destroy(struct block_backend *be)
{
	struct raw_backend *rb = to_raw(be);

	if (rb->ring) {
		io_uring_queue_exit(rb->ring);
		free(rb->ring);
	}
	close(rb->fd);
	free(rb);
}

static const struct block_backend_ops raw_ops = {
	.readv = raw_readv,
	.writev = raw_writev,
	.flush = raw_flush,
	.discard = raw_discard,
	.write_zeroes = raw_write_zeroes,
	.size = raw_size,
	.destroy = raw_destroy,
	.async_init = raw_async_init,
	.submit = raw_submit,
	.reap = raw_reap,
};

/* Size of an open image: regular file or block device, nothing else. */
static int raw_get_size(int fd, const char *path, const struct kiln_log *log,
			uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return kiln_errorf(log, -errno, "block: stat %s: %s", path,
				   strerror(errno));
	if (S_ISDIR(st.st_mode))
		return kiln_errorf(log, -EISDIR,
				   "block: %s is a directory, not a disk image",
				   path);
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;

		if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
			return kiln_errorf(log, -errno, "block: size of %s: %s",
					   path, strerror(errno));
		*size = bytes;
	} else if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
	} else {
		return kiln_errorf(
			log, -EINVAL,
			"block: %s is a %s, not a regular file or block device",
			path,
			S_ISFIFO(st.st_mode)   ? "FIFO"
			: S_ISCHR(st.st_mode)  ? "character device"
			: S_ISSOCK(st.st_mode) ? "socket"
					       : "special file");
	}
	if (*size % BLOCK_SECTOR_SIZE)
		return kiln_errorf(log, -EINVAL,
				   "block: size of %s (%llu bytes) is not a "
				   "multiple of %u",
				   path, (unsigned long long)*size,
				   BLOCK_SECTOR_SIZE);
	return 0;
}

/* The raw backend around an open fd of `size` bytes, checked by
 * raw_get_size (taken over, even on failure). */
static int raw_from_fd(int fd, uint64_t size, bool read_only,
		       const struct kiln_log *log, struct block_backend **out)
{
	struct raw_backend *rb = calloc(1, sizeof(*rb));
	struct stat st;
	char id[64];

	if (!rb) {
		close(fd);
		return kiln_errorf(log, -ENOMEM, "block: out of memory");
	}
	rb->be.ops = &raw_ops;
	rb->be.read_only = read_only;
	rb->be.can_unmap = true;
	rb->be.thread_safe = true; /* preadv/pwritev/fallocate on one fd */
	rb->be.log = log;
	rb->fd = fd;
	rb->size = size;
	/* Stable across runs for the same image, like a disk serial. */
	if (fstat(fd, &st) == 0) {
		snprintf(id, sizeof(id), "kiln%llx-%llx",
			 (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino);
		memcpy(rb->be.id, id, BLOCK_ID_BYTES);
	}
	*out = &rb->be;
	return 0;
}

int block_file_open(const char *path, bool read_only,
		    const struct kiln_log *log)
{
	int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;
	int fd;

	/* O_NONBLOCK: a FIFO (or a device that waits for a carrier) must be
	 * refused by raw_get_size, not block open() forever. */
	fd = open(path, flags | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		int err = errno;

		if (err == ENOENT)
			return kiln_errorf(log, -ENOENT,
					   "block: %s: no such file", path);
		/* open(O_RDWR) on a directory fails with EISDIR */
		if (err == EISDIR)
			return kiln_errorf(
				log, -EISDIR,
				"block: %s is a directory, not a disk image",
				path);
		return kiln_errorf(log, -err, "block: cannot open %s%s: %s",
				   path, read_only ? "" : " read-write",
				   strerror(err));
	}
	if (fstat(fd, &st) < 0 ||
	    !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
		uint64_t size;
		int r = raw_get_size(fd, path, log, &size); /* says why */

		close(fd);
		return r < 0 ? r : -EINVAL;
	}
	/* a regular file or a block device: blocking I/O from here on */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		int err = -errno;

		close(fd);
		return kiln_errorf(log, err, "block: %s: fcntl: %s", path,
				   strerror(-err));
	}
	return fd;
}

int block_raw_from_fd(int fd, const char *path, bool read_only,
		      const struct kiln_log *log, struct block_backend **out)
{
	uint64_t size;
	int r = raw_get_size(fd, path, log, &size);

	if (r < 0) {
		close(fd);
		return r;
	}
	return raw_from_fd(fd, size, read_only, log, out);
}

int block_raw_open(const char *path, bool read_only, const struct kiln_log *log,
		   struct block_backend **out)
{
	int fd = block_file_open(path, read_only, log);

	if (fd < 0)
		return fd;
	return block_raw_from_fd(fd, path, read_only, log, out);
}

int block_raw_open_fd(int fd, bool read_only, const struct kiln_log *log,
		      struct block_backend **out)
{
	char name[32];
	uint64_t size;
	int fl = fcntl(fd, F_GETFL), copy, r;

	snprintf(name, sizeof(name), "fd %d", fd);
	if (fl < 0)
		return kiln_errorf(log, -EBADF, "block: %s is not open", name);
	if (!read_only && (fl & O_ACCMODE) == O_RDONLY)
		return kiln_errorf(log, -EBADF,
				   "block: %s is open read-only (add ro)",
				   name);
	if ((fl & O_ACCMODE) == O_WRONLY)
		return kiln_errorf(log, -EBADF, "block: %s is open write-only",
				   name);
	/* our own descriptor: the caller may close theirs */
	copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (copy < 0)
		return kiln_errorf(log, -errno, "block: dup %s: %s", name,
				   strerror(errno));
	r = raw_get_size(copy, name, log, &size);
	if (r < 0) {
		close(copy);
		return r;
	}
	return raw_from_fd(copy, size, read_only, log, out);
}

/* ---- in memory ---- */

struct mem_backend {
	struct block_backend be;
	uint8_t *buf;
	uint64_t size;
};

static struct mem_backend *to_mem(struct block_backend *be)
{
	return (struct mem_backend *)be;
}

static int mem_rw(struct block_backend *be, const struct iovec *iov, int iovcnt,
		  uint64_t off, bool write)
{
	struct mem_backend *mb = to_mem(be);
	uint64_t len;

	if (write && be->read_only)
		return -EROFS;
	if (block_iov_range(iov, iovcnt, off, mb->size, &len) < 0)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (write)
			memcpy(mb->buf + off, iov[i].iov_base, iov[i].iov_len);
		else
			memcpy(iov[i].iov_base, mb->buf + off, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	return 0;
}

static int mem_readv(struct block_backend *be, const struct iovec *iov,
		     int iovcnt, uint64_t off)
{
	return mem_rw(be, iov, iovcnt, off, false);
}

static int mem_writev(struct block_backend *be, const struct iovec *iov,
		      int iovcnt, uint64_t off)
{
	return mem_rw(be, iov, iovcnt, off, true);
}

static int mem_flush(struct block_backend *be)
{
	(void)be;
	return 0;
}

/* Zeroes a range; whole pages go back to the kernel (anonymous private
 * memory reads as zeros after MADV_DONTNEED), the edges are memset. */
static void mem_zero(struct mem_backend *mb, uint64_t off, uint64_t len)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t start = (off + page - 1) / page * page;
	uint64_t end = (off + len) / page * page;

	if (start < end &&
	    madvise(mb->buf + start, end - start, MADV_DONTNEED) == 0) {
		memset(mb->buf + off, 0, start - off);
		memset(mb->buf + end, 0, off + len - end);
		return;
	}
	memset(mb->buf + off, 0, len);
}

static int mem_discard(struct block_backend *be, uint64_t off, uint64_t len)
{
	struct mem_backend *mb = to_mem(be);

	if (be->read_only)
		return -EROFS;
	if (!block_range_ok(mb->size, off, len))
		return -EINVAL;
	mem_zero(mb, off, len);
	return 0;
}

static int mem_write_zeroes(struct block_backend *be, uint64_t off,
			    uint64_t len, bool unmap)
{
	(void)unmap;
	return mem_discard(be, off, len);
}

static uint64_t mem_size(struct block_backend *be)
{
	return to_mem(be)->size;
}

static void mem_destroy(struct block_backend *be)
{
	struct mem_backend *mb = to_mem(be);

	munmap(mb->buf, (size_t)mb->size);
	free(mb);
}

static const struct block_backend_ops mem_ops = {
	.readv = mem_readv,
	.writev = mem_writev,
	.flush = mem_flush,
	.discard = mem_discard,
	.write_zeroes = mem_write_zeroes,
	.size = mem_size,
	.destroy = mem_destroy,
};

int block_mem_create(uint64_t size, bool read_only, const struct kiln_log *log,
		     struct block_backend **out)
{
	struct mem_backend *mb;
	void *p;

	if (!size || size % BLOCK_SECTOR_SIZE || size > (uint64_t)SIZE_MAX)
		return kiln_errorf(log, -EINVAL,
				   "block: memory disk size %llu is not a "
				   "non-zero multiple of %u",
				   (unsigned long long)size, BLOCK_SECTOR_SIZE);
	mb = calloc(1, sizeof(*mb));
	if (!mb)
		return kiln_errorf(log, -ENOMEM, "block: out of memory");
	/* Untouched pages cost nothing: a big scratch disk is cheap. */
	p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		int err = errno;

		free(mb);
		return kiln_errorf(
			log, -err,
			"block: cannot map a %llu-byte memory disk: %s",
			(unsigned long long)size, strerror(err));
	}
	mb->be.ops = &mem_ops;
	mb->be.read_only = read_only;
	mb->be.can_unmap = true;
	mb->be.log = log;
	mb->buf = p;
	mb->size = size;
	memcpy(mb->be.id, "kiln-mem", sizeof("kiln-mem"));
	*out = &mb->be;
	return 0;
}
