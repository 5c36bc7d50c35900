/* SPDX-License-Identifier: MIT */
/*
 * The disk tier's probe: opens a disk through kiln's block layer exactly
 * as the virtio-blk device does (format detection, backing chains,
 * snapshot overlays) and reads or writes it, so images made by qemu-img
 * can be compared byte for byte with qemu-img's own view.
 *
 *   blktool SPEC read              whole disk, raw, to stdout
 *   blktool SPEC write OFF LEN SEED  a pattern from SEED at OFF
 *   blktool SPEC zero OFF LEN       write_zeroes
 *   blktool SPEC ops FILE           "w OFF LEN SEED" / "z OFF LEN" /
 *                                   "Z OFF LEN" (unmap) / "f" /
 *                                   "r OFF LEN" / "s SECONDS" (sleep) lines,
 *                                   in order, then a final flush
 *
 * SPEC is "PATH|URL[,ro][,snapshot][,insecure][,format=raw|qcow2]". Exit
 * 0, or 1 with the
 * library's message on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/block.h"

static void log_fn(void *opaque, enum kiln_log_level level, const char *msg)
{
	(void)opaque, (void)level;
	fprintf(stderr, "blktool: %s\n", msg);
}

static const struct kiln_log LOG = {log_fn, NULL, KILN_LOG_WARN};

static void pattern(uint8_t *buf, size_t len, uint64_t seed, uint64_t off)
{
	/* byte i of the disk at off depends on seed and i: rewrites differ */
	for (size_t i = 0; i < len; i++) {
		uint64_t x = (off + i) * 0x9e3779b97f4a7c15ull ^ seed;

		buf[i] = (uint8_t)(x >> 29);
	}
}

static int do_write(struct block_backend *be, uint64_t off, uint64_t len,
		    uint64_t seed)
{
	uint8_t *buf = malloc(len ? len : 1);
	struct iovec v = {buf, len};
	int r;

	if (!buf)
		return -ENOMEM;
	pattern(buf, len, seed, off);
	r = be->ops->writev(be, &v, 1, off);
	free(buf);
	return r;
}

static int do_read(struct block_backend *be, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len ? len : 1);
	struct iovec v = {buf, len};
	int r;

	if (!buf)
		return -ENOMEM;
	r = be->ops->readv(be, &v, 1, off);
	free(buf);
	return r;
}

int main(int argc, char **argv)
{
	struct block_open_opts o = {.fd = -1};
	struct block_backend *be;
	char *spec, *tok, *save = NULL;
	int r = 0;

	if (argc < 3) {
		fprintf(stderr,
			"usage: blktool SPEC read|write|zero|ops ...\n");
		return 2;
	}
	spec = strdup(argv[1]);
	o.path = strtok_r(spec, ",", &save);
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "ro"))
			o.read_only = true;
		else if (!strcmp(tok, "snapshot"))
			o.snapshot = true;
		else if (!strcmp(tok, "insecure"))
			o.insecure = true;
		else if (!strncmp(tok, "format=", 7) &&
			 block_format_parse(tok + 7, &o.format) == 0)
			;
		else {
			fprintf(stderr, "blktool: bad option %s\n", tok);
			return 2;
		}
	}
	if (block_open(&o, &LOG, &be) < 0)
		return 1;
	if (!strcmp(argv[2], "read")) {
		uint64_t size = block_backend_size(be), off = 0;
		uint8_t *buf = malloc(1 << 20);

		while (r == 0 && off < size) {
			size_t n = size - off < (1u << 20)
					   ? (size_t)(size - off)
					   : 1u << 20;
			struct iovec v = {buf, n};

			r = be->ops->readv(be, &v, 1, off);
			if (r == 0 && fwrite(buf, 1, n, stdout) != n)
				r = -EIO;
			off += n;
		}
		free(buf);
	} else if (!strcmp(argv[2], "write") && argc == 6) {
		r = do_write(be, strtoull(argv[3], NULL, 0),
			     strtoull(argv[4], NULL, 0),
			     strtoull(argv[5], NULL, 0));
		if (r == 0)
			r = be->ops->flush(be);
	} else if (!strcmp(argv[2], "zero") && argc == 5) {
		r = be->ops->write_zeroes(be, strtoull(argv[3], NULL, 0),
					  strtoull(argv[4], NULL, 0), false);
		if (r == 0)
			r = be->ops->flush(be);
	} else if (!strcmp(argv[2], "ops") && argc == 4) {
		FILE *f = fopen(argv[3], "r");
		char line[128];

		if (!f) {
			perror(argv[3]);
			return 2;
		}
		while (r == 0 && fgets(line, sizeof(line), f)) {
			unsigned long long a, b, c;

			if (sscanf(line, "w %llu %llu %llu", &a, &b, &c) == 3)
				r = do_write(be, a, b, c);
			else if (sscanf(line, "r %llu %llu", &a, &b) == 2)
				r = do_read(be, a, b);
			else if (sscanf(line, "s %llu", &a) == 1)
				sleep((unsigned)a);
			else if (sscanf(line, "z %llu %llu", &a, &b) == 2)
				r = be->ops->write_zeroes(be, a, b, false);
			else if (sscanf(line, "Z %llu %llu", &a, &b) == 2)
				r = be->ops->write_zeroes(be, a, b, true);
			else if (line[0] == 'f')
				r = be->ops->flush(be);
		}
		fclose(f);
		if (r == 0)
			r = be->ops->flush(be);
	} else {
		fprintf(stderr, "blktool: bad command\n");
		r = -EINVAL;
	}
	if (r < 0)
		fprintf(stderr, "blktool: %s\n", strerror(-r));
	block_backend_destroy(be);
	free(spec);
	return r < 0 ? 1 : 0;
}
