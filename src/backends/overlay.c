/* SPDX-License-Identifier: MIT */
/*
 * The ephemeral copy-on-write overlay (`--disk IMG,snapshot`): the base
 * backend is only ever read; every write goes to a private, unlinked,
 * sparse temporary file of the same size, cluster by cluster, and a bitmap
 * says which clusters live there. A partial write to a cluster not yet in
 * the overlay first copies the base's cluster. Nothing survives the VM:
 * the file has no name and goes with its last fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/block.h"

#define OVERLAY_CLUSTER (64u * 1024)

struct overlay {
	struct block_backend be;
	struct block_backend *base;
	int fd; /* the overlay file: same size as base, sparse */
	uint64_t size;
	uint64_t *bits;	  /* one per cluster: in the overlay */
	uint8_t *cluster; /* OVERLAY_CLUSTER scratch for copy-on-write */
};

static struct overlay *to_ov(struct block_backend *be)
{
	return (struct overlay *)be;
}

bool overlay_bit(const uint64_t *bits, uint64_t c)
{
	return bits[c / 64] >> (c % 64) & 1;
}

static void set_bit(uint64_t *bits, uint64_t c)
{
	bits[c / 64] |= 1ull << (c % 64);
}

/* Reads [off, off+len) into buf from where each cluster lives: one read
 * per run of clusters that live in the same place. */
static int ov_read(struct overlay *ov, uint8_t *buf, uint64_t off, uint64_t len)
{
	while (len) {
		uint64_t c = off / OVERLAY_CLUSTER;
		bool here = overlay_bit(ov->bits, c);
		/* to the end of this cluster, then whole clusters alike */
		uint64_t n = OVERLAY_CLUSTER - off % OVERLAY_CLUSTER;
		int err;

		while (n < len && overlay_bit(ov->bits, ++c) == here)
			n += OVERLAY_CLUSTER;
		if (n > len)
			n = len;
		if (here) {
			err = block_pread_full(ov->fd, buf, n, off);
		} else {
			struct iovec v = {buf, n};

			err = ov->base->ops->readv(ov->base, &v, 1, off);
		}
		if (err < 0)
			return err;
		buf += n, off += n, len -= n;
	}
	return 0;
}

/* Reads or writes iov at off, a range the caller checked. */
static int for_each_iov(struct overlay *ov, const struct iovec *iov, int cnt,
			uint64_t off, bool write)
{
	for (int i = 0; i < cnt; i++) {
		int err = write ? 0
				: ov_read(ov, iov[i].iov_base, off,
					  iov[i].iov_len);

		if (write) {
			const uint8_t *p = iov[i].iov_base;
			uint64_t o = off, len = iov[i].iov_len;

			while (len && err == 0) {
				uint64_t c = o / OVERLAY_CLUSTER;
				uint64_t in = o % OVERLAY_CLUSTER;
				uint64_t n = OVERLAY_CLUSTER - in < len
						     ? OVERLAY_CLUSTER - in
						     : len;
				uint64_t start = c * OVERLAY_CLUSTER;
				uint64_t clen =
					ov->size - start < OVERLAY_CLUSTER
						? ov->size - start
						: OVERLAY_CLUSTER;

				if (!overlay_bit(ov->bits, c) && n < clen) {
					/* copy-on-write: the base's cluster
					 * first, then the new bytes on it */
					struct iovec v = {ov->cluster, clen};

					err = ov->base->ops->readv(ov->base, &v,
								   1, start);
					if (err == 0) {
						memcpy(ov->cluster + in, p, n);
						err = block_pwrite_full(
							ov->fd, ov->cluster,
							clen, start);
					}
				} else {
					err = block_pwrite_full(ov->fd, p, n,
								o);
				}
				if (err == 0)
					set_bit(ov->bits, c);
				p += n, o += n, len -= n;
			}
		}
		if (err < 0)
			return err;
		off += iov[i].iov_len;
	}
	return 0;
}

/* Whether every cluster of [off, off+len) lives in the base. */
static bool all_in_base(const struct overlay *ov, uint64_t off, uint64_t len)
{
	for (uint64_t c = off / OVERLAY_CLUSTER;
	     len && c <= (off + len - 1) / OVERLAY_CLUSTER; c++)
		if (overlay_bit(ov->bits, c))
			return false;
	return true;
}

static int ov_readv(struct block_backend *be, const struct iovec *iov,
		    int iovcnt, uint64_t off)
{
	struct overlay *ov = to_ov(be);
	uint64_t total;

	if (block_iov_range(iov, iovcnt, off, ov->size, &total) < 0)
		return -EINVAL;
	/* nothing of it written yet: the base's own vectored read */
	if (all_in_base(ov, off, total))
		return ov->base->ops->readv(ov->base, iov, iovcnt, off);
	return for_each_iov(ov, iov, iovcnt, off, false);
}

static int ov_writev(struct block_backend *be, const struct iovec *iov,
		     int iovcnt, uint64_t off)
{
	struct overlay *ov = to_ov(be);
	uint64_t total;

	if (block_iov_range(iov, iovcnt, off, ov->size, &total) < 0)
		return -EINVAL;
	return for_each_iov(ov, iov, iovcnt, off, true);
}

static int ov_flush(struct block_backend *be)
{
	(void)be;
	return 0; /* nothing of it outlives the VM: nothing to make durable */
}

static int ov_write_zeroes(struct block_backend *be, uint64_t off, uint64_t len,
			   bool unmap)
{
	struct overlay *ov = to_ov(be);
	static const uint8_t zeros[4096];

	(void)unmap;
	if (!block_range_ok(ov->size, off, len))
		return -EINVAL;
	while (len) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		struct iovec v = {(void *)zeros, n};
		int err = for_each_iov(ov, &v, 1, off, true);

		if (err < 0)
			return err;
		off += n, len -= n;
	}
	return 0;
}

static int ov_discard(struct block_backend *be, uint64_t off, uint64_t len)
{
	/* reads after a discard may return old data or zeros: the base's */
	return block_range_ok(to_ov(be)->size, off, len) ? 0 : -EINVAL;
}

static uint64_t ov_size(struct block_backend *be)
{
	return to_ov(be)->size;
}

static void ov_destroy(struct block_backend *be)
{
	struct overlay *ov = to_ov(be);

	block_backend_destroy(ov->base);
	if (ov->fd >= 0)
		close(ov->fd);
	free(ov->bits);
	free(ov->cluster);
	free(ov);
}

static const struct block_backend_ops overlay_ops = {
	.readv = ov_readv,
	.writev = ov_writev,
	.flush = ov_flush,
	.discard = ov_discard,
	.write_zeroes = ov_write_zeroes,
	.size = ov_size,
	.destroy = ov_destroy,
};

/* An unlinked file in $TMPDIR (or /var/tmp, /tmp): O_TMPFILE where the
 * file system has it, else a name removed at once. */
static int temp_file(void)
{
	const char *dirs[] = {getenv("TMPDIR"), "/var/tmp", "/tmp"};

	for (unsigned i = 0; i < 3; i++) {
		char path[4096];
		int fd;

		if (!dirs[i] || dirs[i][0] != '/')
			continue;
		fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		if (snprintf(path, sizeof(path), "%s/kiln-overlay-XXXXXX",
			     dirs[i]) >= (int)sizeof(path))
			continue;
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0) {
			unlink(path);
			return fd;
		}
	}
	return -errno;
}

int block_overlay_create(struct block_backend *base, const struct kiln_log *log,
			 struct block_backend **out)
{
	struct overlay *ov = calloc(1, sizeof(*ov));
	uint64_t clusters;

	*out = NULL;
	if (!ov)
		return kiln_errorf(log, -ENOMEM, "snapshot: out of memory");
	ov->base = base;
	ov->size = block_backend_size(base);
	clusters = (ov->size + OVERLAY_CLUSTER - 1) / OVERLAY_CLUSTER;
	ov->bits = calloc(clusters / 64 + 1, sizeof(uint64_t));
	ov->cluster = malloc(OVERLAY_CLUSTER);
	ov->fd = temp_file();
	if (!ov->bits || !ov->cluster || ov->fd < 0) {
		int err = ov->fd < 0 ? ov->fd : -ENOMEM;

		ov->base = NULL; /* the caller still owns it */
		ov_destroy(&ov->be);
		return kiln_errorf(log, err,
				   "snapshot: no overlay file in $TMPDIR, "
				   "/var/tmp or /tmp: %s",
				   strerror(-err));
	}
	/* sparse: as large as the disk, using only what the guest writes */
	if (ftruncate(ov->fd, (off_t)ov->size) < 0) {
		int err = -errno;

		ov->base = NULL;
		ov_destroy(&ov->be);
		return kiln_errorf(log, err, "snapshot: overlay file: %s",
				   strerror(-err));
	}
	ov->be.ops = &overlay_ops;
	ov->be.read_only = false;
	ov->be.can_unmap = false;
	ov->be.log = log;
	memcpy(ov->be.id, base->id, sizeof(ov->be.id));
	*out = &ov->be;
	return 0;
}
