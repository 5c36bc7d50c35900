/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: FUSE requests against a real share. Each input gets a
 * fresh server (so nodeids and handles are 2, 3, ... and 1, 2, ... as the
 * seeds expect) on a freshly populated temp directory, an INIT, then its
 * requests in order. Invariants are checked on every reply, and a decoy
 * directory outside the share (the target of the share's "abs" symlink)
 * must come through every input untouched.
 *
 * Input: byte 0 = mode (bit 0: cut requests and replies into several
 * separately allocated segments; bit 1: read-only share; bit 2: xattrs
 * off), then records {le16 request length, le16 reply capacity, request
 * bytes (zero-padded if the input ends)}. Share: file ("hello world"),
 * dir/, dir/inner, link -> file, abs -> decoy, fifo.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fuse_client.h"
#include "fs/fuse_server.h"

#define MAX_RECORDS 64
#define MAX_INODES  64
#define MAX_HANDLES 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

static char share[64], decoy[64], canary[128];
static struct stat canary_st;

static int unlock_one(const char *path, const struct stat *st, int flag,
		      struct FTW *ftw)
{
	(void)ftw;
	/* a guest chmod 000 must not keep us from cleaning up */
	if (flag == FTW_D && !S_ISLNK(st->st_mode))
		chmod(path, 0700);
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (ftw->level > 0)
		remove(path);
	return 0;
}

static void put(const char *name, const char *data, mode_t mode)
{
	char p[256];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", share, name);
	fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, mode);
	if (fd >= 0) {
		check(write(fd, data, strlen(data)) == (ssize_t)strlen(data));
		close(fd);
	}
}

static void populate(void)
{
	char p[256];

	chmod(share, 0755);
	nftw(share, unlock_one, 16, FTW_PHYS);
	nftw(share, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	put("file", "hello world", 0644);
	snprintf(p, sizeof(p), "%s/dir", share);
	mkdir(p, 0755);
	put("dir/inner", "inner", 0600);
	snprintf(p, sizeof(p), "%s/link", share);
	symlink("file", p);
	snprintf(p, sizeof(p), "%s/abs", share);
	symlink(decoy, p);
	snprintf(p, sizeof(p), "%s/fifo", share);
	mkfifo(p, 0644);
}

static void cleanup(void)
{
	chmod(share, 0700);
	nftw(share, unlock_one, 16, FTW_PHYS);
	nftw(share, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	rmdir(share);
	remove(canary);
	snprintf(canary, sizeof(canary), "%s/etc", decoy);
	rmdir(canary);
	rmdir(decoy);
}

static int setup(void)
{
	struct rlimit fsz = {64u << 20, 64u << 20};
	char p[128];
	int fd;

	strcpy(share, "/tmp/kiln-fuzz-fuse-XXXXXX");
	strcpy(decoy, "/tmp/kiln-fuzz-decoy-XXXXXX");
	if (!mkdtemp(share) || !mkdtemp(decoy))
		return -1;
	atexit(cleanup);
	/* a file size cap instead of a full disk: writes and fallocate past
	 * it fail with EFBIG */
	signal(SIGXFSZ, SIG_IGN);
	setrlimit(RLIMIT_FSIZE, &fsz);
	snprintf(p, sizeof(p), "%s/etc", decoy);
	mkdir(p, 0755);
	snprintf(canary, sizeof(canary), "%s/etc/passwd", decoy);
	fd = open(canary, O_CREAT | O_WRONLY, 0644);
	if (fd < 0 || write(fd, "canary", 6) != 6)
		return -1;
	close(fd);
	return lstat(canary, &canary_st);
}

/* Nothing outside the share may change. */
static void check_decoy(void)
{
	struct stat st;
	char p[128];

	check(lstat(canary, &st) == 0);
	check(st.st_size == 6 && st.st_ino == canary_st.st_ino &&
	      st.st_mode == canary_st.st_mode &&
	      st.st_mtim.tv_sec == canary_st.st_mtim.tv_sec &&
	      st.st_mtim.tv_nsec == canary_st.st_mtim.tv_nsec &&
	      st.st_nlink == 1 && st.st_uid == canary_st.st_uid);
	snprintf(p, sizeof(p), "%s/etc", decoy);
	check(lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && st.st_nlink == 2);
	check(lstat(decoy, &st) == 0 && st.st_nlink == 3);
}

/* Cuts [p, p+len) into separately allocated segments at a few fixed
 * points (inside the header, at its end, one byte after). */
static unsigned cut(struct iovec *iov, unsigned max, uint8_t *p, size_t len,
		    bool split, void **bufs, unsigned *nbufs, bool copy)
{
	static const size_t points[] = {3, 16, 17, 40, 41, 88, 200};
	unsigned n = 0;
	size_t off = 0;

	for (unsigned i = 0; split && i < sizeof(points) / sizeof(points[0]) &&
			     off < len && n + 1 < max;
	     i++) {
		size_t end = points[i] < len ? points[i] : len, l = end - off;
		uint8_t *b;

		if (end <= off)
			continue;
		b = malloc(l);
		check(b != NULL);
		if (copy)
			memcpy(b, p + off, l);
		bufs[(*nbufs)++] = b;
		iov[n++] = (struct iovec){b, l};
		off = end;
	}
	if (off < len || n == 0) {
		size_t l = len - off;
		uint8_t *b = malloc(l ? l : 1);

		check(b != NULL);
		if (copy)
			memcpy(b, p + off, l);
		bufs[(*nbufs)++] = b;
		iov[n++] = (struct iovec){b, l};
	}
	return n;
}

static void run_one(struct fuse_server *s, uint8_t *req, size_t len,
		    size_t rcap, bool split)
{
	static struct virtq_chain ch;
	struct fuse_in_header h = {0};
	struct fuse_out_header oh;
	struct fuse_server_stats st;
	void *bufs[32];
	unsigned nbufs = 0;
	uint32_t written;
	uint8_t *rep;
	int ret;

	memset(&ch, 0, sizeof(ch));
	ch.n_out = cut(ch.out, 16, req, len, split, bufs, &nbufs, true);
	ch.out_len = len;
	ch.n_in = cut(ch.in, 16, NULL, rcap, split, bufs, &nbufs, false);
	ch.in_len = rcap;
	ret = fuse_server_handle(s, &ch, &written);
	if (len >= sizeof(h))
		memcpy(&h, req, sizeof(h));

	check(ret == 0 || ret == -EINVAL);
	if (ret < 0) {
		check(written == 0);
		check(len < sizeof(h) || rcap < sizeof(oh));
	} else if (len >= sizeof(h) &&
		   (h.opcode == FUSE_FORGET || h.opcode == FUSE_BATCH_FORGET)) {
		check(written == 0);
	} else {
		check(written >= sizeof(oh) && written <= rcap);
		rep = malloc(written);
		check(rep != NULL);
		/* gather the reply from its segments */
		for (unsigned i = 0, off = 0; i < ch.n_in && off < written;
		     i++) {
			size_t l = ch.in[i].iov_len;

			if (l > written - off)
				l = written - off;
			memcpy(rep + off, ch.in[i].iov_base, l);
			off += (unsigned)l;
		}
		memcpy(&oh, rep, sizeof(oh));
		check(oh.len == written);
		check(oh.unique == h.unique);
		check(oh.error <= 0 && oh.error > -4096);
		check(oh.error == 0 || written == sizeof(oh));
		free(rep);
	}
	fuse_server_get_stats(s, &st);
	check(st.inodes >= 1 && st.inodes <= MAX_INODES);
	check(st.handles <= MAX_HANDLES);
	for (unsigned i = 0; i < nbufs; i++)
		free(bufs[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct fuse_server_opts o = {.max_inodes = MAX_INODES,
				     .max_handles = MAX_HANDLES};
	struct fuse_server *s;
	struct fuse_client c;
	size_t pos = 1;
	uint8_t mode;

	if (!ready)
		ready = setup() == 0 ? 1 : -1;
	if (ready < 0 || size < 1)
		return 0;
	mode = data[0];
	o.read_only = mode & 2;
	o.xattr = !(mode & 4);
	populate();
	check(fuse_server_create(share, &o, NULL, &s) == 0);
	check(fuse_client_open(&c, s) == 0);
	check(fuse_client_init(&c, NULL) == 0);

	for (unsigned n = 0; n < MAX_RECORDS && pos + 4 <= size; n++) {
		uint16_t len, rcap;
		uint8_t *req;
		size_t have;

		memcpy(&len, data + pos, 2);
		memcpy(&rcap, data + pos + 2, 2);
		pos += 4;
		have = size - pos < len ? size - pos : len;
		req = calloc(1, len ? len : 1);
		check(req != NULL);
		memcpy(req, data + pos, have);
		pos += have;
		run_one(s, req, len, rcap, mode & 1);
		free(req);
	}
	fuse_client_close(&c);
	fuse_server_destroy(s);
	check_decoy();
	return 0;
}
