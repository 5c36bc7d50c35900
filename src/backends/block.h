/* SPDX-License-Identifier: MIT */
/*
 * Block backends: what a disk device (virtio-blk) reads from and writes to,
 * addressed in bytes. A backend checks every range against its size itself,
 * so a device bug cannot grow or overrun the image. Operations are
 * synchronous; each returns 0 or a negative errno and logs only at debug
 * level, since a hostile guest can make them fail at will.
 */
#ifndef KILN_BACKENDS_BLOCK_H
#define KILN_BACKENDS_BLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "util/log.h"

#define BLOCK_SECTOR_SIZE 512u
#define BLOCK_ID_BYTES	  20 /* virtio-blk GET_ID: up to 20 bytes, NUL padded */

struct block_backend;

/* One request on a backend's asynchronous path. */
enum block_io_op { BLOCK_IO_READ, BLOCK_IO_WRITE, BLOCK_IO_FLUSH };
struct block_io {
	enum block_io_op op;
	const struct iovec *iov; /* READ/WRITE */
	int iovcnt;
	uint64_t off;
	uint64_t len; /* set by submit */
	int result;   /* 0 or -errno, when done runs */
	void (*done)(struct block_io *io);
	void *opaque;
};

struct block_backend_ops {
	/* Fills iov from [off, off + iov bytes); all of it or -errno. */
	int (*readv)(struct block_backend *be, const struct iovec *iov,
		     int iovcnt, uint64_t off);
	/* Writes iov at off; all of it or -errno (-EROFS when read-only). */
	int (*writev)(struct block_backend *be, const struct iovec *iov,
		      int iovcnt, uint64_t off);
	/* Makes completed writes durable. */
	int (*flush)(struct block_backend *be);
	/* Hint that [off, off+len) is unused; may do nothing, reads after it
	 * return either the old data or zeros. */
	int (*discard)(struct block_backend *be, uint64_t off, uint64_t len);
	/* Makes [off, off+len) read as zeros; unmap allows deallocating it. */
	int (*write_zeroes)(struct block_backend *be, uint64_t off,
			    uint64_t len, bool unmap);
	/* Current size in bytes (a multiple of BLOCK_SECTOR_SIZE). */
	uint64_t (*size)(struct block_backend *be);
	/* Releases the backend and everything it holds (nothing in flight). */
	void (*destroy)(struct block_backend *be);

	/* Optional asynchronous path (raw files: io_uring). async_init sets
	 * it up, signalling notify_fd (an eventfd) as requests finish: 0, or
	 * -errno and the synchronous calls stay the only ones. submit checks
	 * and queues io: 0, or -errno with nothing queued. reap runs the done
	 * callbacks of finished requests (all in flight, waiting, when
	 * wait_all), on the submitter's thread. */
	int (*async_init)(struct block_backend *be, int notify_fd);
	int (*submit)(struct block_backend *be, struct block_io *io);
	void (*reap)(struct block_backend *be, bool wait_all);
};

struct block_backend {
	const struct block_backend_ops *ops;
	bool read_only;
	/* Whether write_zeroes(unmap) really deallocates (config hint). */
	bool can_unmap;
	/* Whether calls may run on several threads at once (raw files,
	 * memory); others get one call at a time. */
	bool thread_safe;
	/* Serial number for GET_ID; NUL-terminated, at most 20 bytes used. */
	char id[BLOCK_ID_BYTES + 1];
	const struct kiln_log *log;
};

/* Opens a raw image file or block device (O_CLOEXEC; O_RDONLY if read_only
 * else O_RDWR). Sparse files are fine; the size must be a multiple of 512.
 * Returns 0 and *out, or -errno with the reason logged. */
int block_raw_open(const char *path, bool read_only, const struct kiln_log *log,
		   struct block_backend **out);

/* Like block_raw_open on an fd the caller opened (kept open by the caller;
 * kiln uses its own duplicate, which shares the file offset and flags). A
 * read-write disk needs an fd open for reading and writing. */
int block_raw_open_fd(int fd, bool read_only, const struct kiln_log *log,
		      struct block_backend **out);

/* A zero-filled in-memory disk of `size` bytes (a non-zero multiple of 512),
 * for tests and scratch disks. Returns 0 and *out, or -errno (logged). */
int block_mem_create(uint64_t size, bool read_only, const struct kiln_log *log,
		     struct block_backend **out);

/*
 * Opening a disk as users name it: a format (detected from the header,
 * never from the name, unless forced) and, with snapshot, a private
 * copy-on-write overlay over it. Formats are the table in block_open.c:
 * adding one is a file with its open function and one line there.
 */
enum block_format {
	BLOCK_FORMAT_AUTO = 0,
	BLOCK_FORMAT_RAW,
	BLOCK_FORMAT_QCOW2,
};

struct block_open_opts {
	const char *path; /* or NULL and fd */
	int fd;		  /* the caller's, duplicated; -1 with a path */
	enum block_format format;
	bool read_only; /* the guest may not write */
	bool snapshot;	/* writes go to a private overlay; the image is only
			   read */
	bool insecure;	/* an http:// URL may name any host */
};

/* Parses "raw", "qcow2" (or "auto"); -EINVAL otherwise. */
int block_format_parse(const char *name, enum block_format *out);

/* Opens a disk per o: 0 and *out, or -errno (logged, naming the file). */
int block_open(const struct block_open_opts *o, const struct kiln_log *log,
	       struct block_backend **out);

/* The images a backing chain went through, to refuse loops. */
struct block_chain {
	const struct block_chain *prev;
	dev_t dev;
	ino_t ino;
};

/* A backing file (read-only): format by name (NULL: detected), chain the
 * images above it (QCOW2_MAX_CHAIN at most). 0 or -errno (logged). */
int block_open_chain(const char *path, const char *format,
		     const struct block_chain *chain,
		     const struct kiln_log *log, struct block_backend **out);

/* True when hdr (the file's first bytes) is a qcow2 header. */
bool block_qcow2_probe(const uint8_t *hdr, size_t len);

/* A qcow2 image on fd (taken over, closed on failure), called path in
 * messages (relative backing files are found beside it; a path starting
 * with '<' has no directory). 0 or -errno (logged). */
int block_qcow2_open(int fd, const char *path, bool read_only,
		     const struct block_chain *chain,
		     const struct kiln_log *log, struct block_backend **out);

/* A raw image on fd (taken over, closed on failure), checked like
 * block_raw_open's. 0 or -errno (logged). */
int block_raw_from_fd(int fd, const char *path, bool read_only,
		      const struct kiln_log *log, struct block_backend **out);

/* A raw backend whose format was detected: guest writes that would make
 * its first bytes a qcow2 header fail (-EPERM), so the next detection
 * cannot be turned against the host. */
void block_raw_guard_header(struct block_backend *be);

/* Opens path for a disk (O_NONBLOCK refusals of FIFOs and the like
 * included): the fd, or -errno (logged). */
int block_file_open(const char *path, bool read_only,
		    const struct kiln_log *log);

/* True when path is an http:// or https:// URL. */
bool block_is_url(const char *path);

/* A raw image on an HTTP(S) server, read-only, through the persistent
 * sparse cache (http.c): plain http only to the loopback unless insecure.
 * 0 or -errno (logged): -EHOSTUNREACH, -ENOENT (not there), -ENOTSUP (no
 * range support, or a qcow2 image), -EPERM (plain http elsewhere). */
int block_http_open(const char *url, bool insecure, const struct kiln_log *log,
		    struct block_backend **out);

/* The copy-on-write overlay over base (taken over on success): reads
 * come from base until the guest writes a cluster, which then lives in an
 * unlinked temporary file. 0 or -errno (logged). */
int block_overlay_create(struct block_backend *base, const struct kiln_log *log,
			 struct block_backend **out);

/* Whether cluster c of an overlay's bitmap is set (for tests). */
bool overlay_bit(const uint64_t *bits, uint64_t c);

/* Sets the GET_ID serial; -EINVAL (logged) if longer than 20 bytes. */
int block_backend_set_id(struct block_backend *be, const char *id);

/* Size of the backend in bytes. */
static inline uint64_t block_backend_size(struct block_backend *be)
{
	return be->ops->size(be);
}

/* Destroys a backend; NULL is fine. */
void block_backend_destroy(struct block_backend *be);

/* The bytes iov holds into *total: 0, or -EINVAL when the count is
 * negative, the sum overflows, or [off, off + total) is not within size. */
int block_iov_range(const struct iovec *iov, int cnt, uint64_t off,
		    uint64_t size, uint64_t *total);

/* pread(2) of all len bytes at off, retried on EINTR and short reads;
 * what lies past the end of the file reads as zeros. 0 or -errno. */
int block_pread_full(int fd, void *buf, size_t len, uint64_t off);
/* pwrite(2) of all len bytes at off, retried likewise. 0 or -errno. */
int block_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* True if [off, off+len) lies within `size` bytes; safe for any values. */
static inline bool block_range_ok(uint64_t size, uint64_t off, uint64_t len)
{
	return off <= size && len <= size - off;
}

#endif
