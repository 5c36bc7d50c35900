/* SPDX-License-Identifier: MIT */
/*
 * Opening disks: the format table (detected from the first bytes, never
 * from a file name), backing chains without loops, and the snapshot
 * overlay on top. Adding a format: its open function in its own file and
 * one line in `formats`.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/block.h"

#define MAX_CHAIN 16

typedef int (*format_open_fn)(int fd, const char *path, bool read_only,
			      const struct block_chain *chain,
			      const struct kiln_log *log,
			      struct block_backend **out);

static int open_raw(int fd, const char *path, bool read_only,
		    const struct block_chain *chain, const struct kiln_log *log,
		    struct block_backend **out)
{
	(void)chain; /* raw images have no backing file */
	return block_raw_from_fd(fd, path, read_only, log, out);
}

static const struct block_format_type {
	const char *name;
	enum block_format format;
	/* true when the header is this format's; NULL: anything (last) */
	bool (*probe)(const uint8_t *hdr, size_t len);
	format_open_fn open;
} formats[] = {
	{"qcow2", BLOCK_FORMAT_QCOW2, block_qcow2_probe, block_qcow2_open},
	{"raw", BLOCK_FORMAT_RAW, NULL, open_raw},
};

#define NFORMATS (sizeof(formats) / sizeof(formats[0]))

int block_format_parse(const char *name, enum block_format *out)
{
	if (!strcmp(name, "auto")) {
		*out = BLOCK_FORMAT_AUTO;
		return 0;
	}
	for (size_t i = 0; i < NFORMATS; i++)
		if (!strcmp(formats[i].name, name)) {
			*out = formats[i].format;
			return 0;
		}
	return -EINVAL;
}

/* Opens fd (taken over) as format (AUTO: by its header). */
static int open_format(int fd, const char *path, enum block_format format,
		       bool read_only, const struct block_chain *chain,
		       const struct kiln_log *log, struct block_backend **out)
{
	uint8_t hdr[512] = {0};
	ssize_t n = pread(fd, hdr, sizeof(hdr), 0);

	if (n < 0) {
		int err = -errno;

		close(fd);
		return kiln_errorf(log, err, "block: %s: %s", path,
				   strerror(-err));
	}
	for (size_t i = 0; i < NFORMATS; i++) {
		const struct block_format_type *t = &formats[i];

		if (format == BLOCK_FORMAT_AUTO
			    ? !t->probe || t->probe(hdr, (size_t)n)
			    : t->format == format) {
			int err = t->open(fd, path, read_only, chain, log, out);

			/* detected as raw: keep it raw */
			if (err == 0 && format == BLOCK_FORMAT_AUTO &&
			    t->format == BLOCK_FORMAT_RAW)
				block_raw_guard_header(*out);
			return err;
		}
	}
	close(fd);
	return -EINVAL;
}

int block_open_chain(const char *path, const char *format,
		     const struct block_chain *chain,
		     const struct kiln_log *log, struct block_backend **out)
{
	enum block_format f = BLOCK_FORMAT_AUTO;
	struct stat st;
	unsigned depth = 0;
	int fd;

	if (format && block_format_parse(format, &f) < 0)
		return kiln_errorf(log, -EINVAL,
				   "block: %s: unknown format '%s'", path,
				   format);
	fd = block_file_open(path, true, log);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -EIO;
	}
	for (const struct block_chain *c = chain; c; c = c->prev, depth++)
		if (c->dev == st.st_dev && c->ino == st.st_ino) {
			close(fd);
			return kiln_errorf(log, -ELOOP,
					   "block: %s: the backing chain loops "
					   "back to it",
					   path);
		}
	if (depth >= MAX_CHAIN) {
		close(fd);
		return kiln_errorf(log, -ELOOP,
				   "block: %s: backing chain deeper than %d",
				   path, MAX_CHAIN);
	}
	return open_format(fd, path, f, true, chain, log, out);
}

int block_open(const struct block_open_opts *o, const struct kiln_log *log,
	       struct block_backend **out)
{
	/* with snapshot the image itself is only read */
	bool image_ro = o->read_only || o->snapshot;
	struct block_backend *be;
	char name[4096];
	int fd, err;

	*out = NULL;
	if (o->path && block_is_url(o->path)) {
		/* raw over HTTP(S), read-only; writable only as a snapshot */
		if (o->format == BLOCK_FORMAT_QCOW2)
			return kiln_errorf(log, -ENOTSUP,
					   "block: %s: kiln reads raw images "
					   "over HTTP",
					   o->path);
		err = block_http_open(o->path, o->insecure, log, &be);
		if (err < 0)
			return err;
		goto opened;
	}
	if (o->path) {
		snprintf(name, sizeof(name), "%s", o->path);
		fd = block_file_open(o->path, image_ro, log);
		if (fd < 0)
			return fd;
	} else {
		int fl = fcntl(o->fd, F_GETFL);

		/* no directory for relative backing files: '<' says so */
		snprintf(name, sizeof(name), "<fd %d>", o->fd);
		if (fl < 0)
			return kiln_errorf(log, -EBADF,
					   "block: fd %d is not open", o->fd);
		if (!image_ro && (fl & O_ACCMODE) == O_RDONLY)
			return kiln_errorf(log, -EBADF,
					   "block: fd %d is open read-only "
					   "(add ro or snapshot)",
					   o->fd);
		if ((fl & O_ACCMODE) == O_WRONLY)
			return kiln_errorf(log, -EBADF,
					   "block: fd %d is open write-only",
					   o->fd);
		fd = fcntl(o->fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			return kiln_errorf(log, -errno, "block: dup fd %d: %s",
					   o->fd, strerror(errno));
	}
	/* a qcow2 image adds itself to the chain its backing file sees */
	err = open_format(fd, name, o->format, image_ro, NULL, log, &be);
	if (err < 0)
		return err;
opened:
	if (!o->snapshot) {
		*out = be;
		return 0;
	}
	err = block_overlay_create(be, log, out);
	if (err < 0) {
		block_backend_destroy(be);
		return err;
	}
	(*out)->read_only = o->read_only;
	return 0;
}
