/* SPDX-License-Identifier: MIT */
/*
 * FUSE server benchmark (not a timed test): kiln's server driven
 * in-process, requests laid out as a guest lays them out (data and reply
 * bodies in their own segments, no extra copies), against the same
 * operations done directly on the host, in the same run and directory:
 *   - sequential write of a file in 1 MiB requests, and read of the same
 *     file (page cache warm) in 1 MiB requests
 *   - create + stat + unlink of many small files
 * Each measurement is the best of --rounds, kiln and host alternating,
 * one phase (write, read, metadata) after the other.
 *
 * usage: fuse [--mib N] [--files N] [--rounds N] DIR...
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "fs/fuse_client.h"
#include "fs/fuse_server.h"

#define CHUNK (1u << 20)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench/fuse: %s: %s\n", what,
		strerror(err < 0 ? -err : err));
	exit(1);
}

struct ctx {
	const char *dir;
	int dfd;
	unsigned mib, files;
	uint8_t *buf;
	struct fuse_server *s;
	struct fuse_client c;
};

/* ---- kiln ---- */

static double kiln_write(struct ctx *x)
{
	uint64_t ino, fh;
	struct fuse_entry_out e;
	double t;
	int err;

	unlinkat(x->dfd, "kiln.dat", 0);
	t = now();
	err = fuse_client_create(&x->c, 1, "kiln.dat",
				 O_WRONLY | O_CREAT | O_TRUNC, 0644, &e, &fh);
	if (err)
		die("CREATE", err);
	ino = e.nodeid;
	for (unsigned i = 0; i < x->mib; i++) {
		ssize_t n = fuse_client_write(
			&x->c, ino, fh, (uint64_t)i * CHUNK, x->buf, CHUNK);

		if (n != CHUNK)
			die("WRITE", n < 0 ? (int)n : EIO);
	}
	fuse_client_release(&x->c, ino, fh, 0);
	t = now() - t;
	fuse_client_forget(&x->c, ino, 1);
	return (double)x->mib * CHUNK / 1e6 / t;
}

static double kiln_read(struct ctx *x)
{
	struct fuse_entry_out e;
	uint64_t fh;
	double t;
	int err;

	t = now();
	err = fuse_client_lookup(&x->c, 1, "host.dat", &e);
	if (!err)
		err = fuse_client_openfile(&x->c, e.nodeid, O_RDONLY, &fh);
	if (err)
		die("LOOKUP/OPEN", err);
	for (unsigned i = 0; i < x->mib; i++) {
		ssize_t n =
			fuse_client_read(&x->c, e.nodeid, fh,
					 (uint64_t)i * CHUNK, x->buf, CHUNK);

		if (n != CHUNK)
			die("READ", n < 0 ? (int)n : EIO);
	}
	fuse_client_release(&x->c, e.nodeid, fh, 0);
	t = now() - t;
	fuse_client_forget(&x->c, e.nodeid, 1);
	return (double)x->mib * CHUNK / 1e6 / t;
}

/* What a guest's "touch f; stat f; rm f" costs: CREATE, RELEASE,
 * GETATTR, UNLINK, and the FORGET once the guest drops the inode. */
static double kiln_meta(struct ctx *x)
{
	struct fuse_entry_out e;
	struct fuse_attr a;
	char name[32];
	uint64_t fh;
	double t = now();

	for (unsigned i = 0; i < x->files; i++) {
		int err;

		snprintf(name, sizeof(name), "k%u", i);
		err = fuse_client_create(&x->c, 1, name,
					 O_WRONLY | O_CREAT | O_EXCL, 0644, &e,
					 &fh);
		if (!err)
			err = fuse_client_release(&x->c, e.nodeid, fh, 0);
		if (!err)
			err = fuse_client_getattr(&x->c, e.nodeid, &a);
		if (!err)
			err = fuse_client_unlink(&x->c, 1, name);
		if (!err)
			err = fuse_client_forget(&x->c, e.nodeid, 1);
		if (err)
			die("create/stat/unlink", err);
	}
	return x->files / (now() - t);
}

/* ---- host ---- */

static double host_write(struct ctx *x)
{
	double t;
	int fd;

	unlinkat(x->dfd, "host.dat", 0);
	t = now();
	fd = openat(x->dfd, "host.dat", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open", errno);
	for (unsigned i = 0; i < x->mib; i++)
		if (pwrite(fd, x->buf, CHUNK, (off_t)i * CHUNK) != CHUNK)
			die("pwrite", errno);
	close(fd);
	t = now() - t;
	return (double)x->mib * CHUNK / 1e6 / t;
}

static double host_read(struct ctx *x)
{
	double t = now();
	int fd = openat(x->dfd, "host.dat", O_RDONLY);

	if (fd < 0)
		die("open", errno);
	for (unsigned i = 0; i < x->mib; i++)
		if (pread(fd, x->buf, CHUNK, (off_t)i * CHUNK) != CHUNK)
			die("pread", errno);
	close(fd);
	t = now() - t;
	return (double)x->mib * CHUNK / 1e6 / t;
}

static double host_meta(struct ctx *x)
{
	struct stat st;
	char name[32];
	double t = now();

	for (unsigned i = 0; i < x->files; i++) {
		int fd;

		snprintf(name, sizeof(name), "h%u", i);
		fd = openat(x->dfd, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			die("open", errno);
		close(fd);
		if (fstatat(x->dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    unlinkat(x->dfd, name, 0) < 0)
			die("stat/unlink", errno);
	}
	return x->files / (now() - t);
}

/* ---- driver ---- */

static const char *fs_name(int fd)
{
	struct statfs sf;

	if (fstatfs(fd, &sf) < 0)
		return "?";
	switch ((unsigned long)sf.f_type) {
	case 0x01021994: return "tmpfs";
	case 0xef53: return "ext4";
	case 0x58465342: return "xfs";
	case 0x9123683e: return "btrfs";
	case 0x794c7630: return "overlayfs";
	default: return "other";
	}
}

static double best(double (*fn)(struct ctx *), struct ctx *x, double cur)
{
	double v = fn(x);

	return v > cur ? v : cur;
}

static void bench_dir(const char *dir, unsigned mib, unsigned files,
		      unsigned rounds, uint8_t *buf)
{
	struct ctx x = {.dir = dir, .mib = mib, .files = files, .buf = buf};
	double kw = 0, hw = 0, kr = 0, hr = 0, km = 0, hm = 0;
	struct fuse_server_opts o = {0};
	int err;

	x.dfd = open(dir, O_DIRECTORY | O_RDONLY);
	if (x.dfd < 0)
		die(dir, errno);
	err = fuse_server_create(dir, &o, NULL, &x.s);
	if (err)
		die("fuse_server_create", err);
	if (fuse_client_open(&x.c, x.s) || fuse_client_init(&x.c, NULL))
		die("INIT", EIO);

	/* one phase at a time (a read right after a 256 MiB write measures
	 * the write's cache leftovers), alternating who goes first: the
	 * cores are shared and noisy */
	for (unsigned r = 0; r < 2 * rounds; r++) {
		if (r & 1)
			kw = best(kiln_write, &x, kw);
		else
			hw = best(host_write, &x, hw);
	}
	/* both read the same file, written by plain pwrite */
	for (unsigned r = 0; r < 2 * rounds; r++) {
		if (r & 1)
			kr = best(kiln_read, &x, kr);
		else
			hr = best(host_read, &x, hr);
	}
	for (unsigned r = 0; r < 2 * rounds; r++) {
		if (r & 1)
			km = best(kiln_meta, &x, km);
		else
			hm = best(host_meta, &x, hm);
	}
	printf("dir %s (%s), %u MiB file, %u files, best of %u\n", dir,
	       fs_name(x.dfd), mib, files, rounds);
	printf("fuse seq read 1MiB: kiln %.0f MB/s, host %.0f MB/s, ratio "
	       "%.2f (target >= 0.7)\n",
	       kr, hr, kr / hr);
	printf("fuse seq write 1MiB: kiln %.0f MB/s, host %.0f MB/s, ratio "
	       "%.2f (target >= 0.7)\n",
	       kw, hw, kw / hw);
	printf("fuse metadata create+stat+unlink: kiln %.0f ops/s, host %.0f "
	       "ops/s, ratio %.2f (target >= 0.5)\n",
	       km, hm, km / hm);
	fflush(stdout);

	unlinkat(x.dfd, "kiln.dat", 0);
	unlinkat(x.dfd, "host.dat", 0);
	fuse_client_close(&x.c);
	fuse_server_destroy(x.s);
	close(x.dfd);
}

int main(int argc, char **argv)
{
	unsigned mib = 256, files = 20000, rounds = 5;
	uint8_t *buf;
	int i = 1;

	for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
		if (!strcmp(argv[i], "--mib"))
			mib = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--files"))
			files = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--rounds"))
			rounds = (unsigned)atoi(argv[i + 1]);
		else
			break;
	}
	if (i >= argc || !mib || !files || !rounds) {
		fprintf(stderr,
			"usage: %s [--mib N] [--files N] [--rounds N] "
			"DIR...\n",
			argv[0]);
		return 2;
	}
	buf = aligned_alloc(4096, CHUNK);
	if (!buf)
		die("malloc", ENOMEM);
	for (size_t j = 0; j < CHUNK; j++)
		buf[j] = (uint8_t)(j * 131 + 7);
	for (; i < argc; i++)
		bench_dir(argv[i], mib, files, rounds, buf);
	free(buf);
	return 0;
}
