/* SPDX-License-Identifier: MIT */
/*
 * FUSE server: each opcode's happy path and main errors, on a fresh temp
 * directory under /tmp per test, driven in-process through fuse_client
 * (header + args in one segment, data and reply body in their own, as a
 * guest lays them out) and through the flat-buffer API. The escape suite is
 * in test_fuse_escape.c.
 *
 * KILN_FUSE_WRITE_CORPUS=dir additionally writes the fuzz seed corpus
 * (fuzz/corpus/fuse) from the requests built here.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs/fuse_client.h"
#include "fs/fuse_server.h"
#include "fuse_test_util.h"

/* ---- fixture ---- */

struct fx {
	char dir[64];
	int dfd;
	struct fuse_server *s;
	struct fuse_client c;
};

static struct fx *fx_new(const struct fuse_server_opts *opts, bool init)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/kiln-fuse-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->dfd = open(f->dir, O_PATH | O_DIRECTORY);
	assert_true(f->dfd >= 0);
	assert_int_equal(fuse_server_create(f->dir, opts, &test_log, &f->s), 0);
	assert_int_equal(fuse_client_open(&f->c, f->s), 0);
	if (init)
		assert_int_equal(fuse_client_init(&f->c, NULL), 0);
	return f;
}

static int setup(void **state)
{
	struct fuse_server_opts o = {.xattr = true};

	*state = fx_new(&o, true);
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	fuse_client_close(&f->c);
	fuse_server_destroy(f->s);
	close(f->dfd);
	rm_rf(f->dir);
	free(f);
	return 0;
}

/* ---- helpers ---- */

static void host_file(struct fx *f, const char *name, const char *data)
{
	int fd = openat(f->dfd, name, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	char path[PATH_MAX];

	if (fd < 0) { /* f->dfd is O_PATH: go by path */
		snprintf(path, sizeof(path), "%s/%s", f->dir, name);
		fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	}
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

static void host_path(struct fx *f, const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", f->dir, name);
}

static uint64_t lookup(struct fx *f, uint64_t parent, const char *name)
{
	struct fuse_entry_out e;

	assert_int_equal(fuse_client_lookup(&f->c, parent, name, &e), 0);
	assert_true(e.nodeid != 0);
	return e.nodeid;
}

static int call(struct fx *f, uint32_t op, uint64_t nodeid, const void *arg,
		size_t len, void *rbuf, size_t rcap, size_t *rlen)
{
	return fuse_client_call(&f->c, op, nodeid, arg, len, NULL, 0, rbuf,
				rcap, rlen);
}

/* A request with a fixed struct and up to two names. */
static int call2(struct fx *f, uint32_t op, uint64_t nodeid, const void *fixed,
		 size_t flen, const char *s1, const char *s2, void *rbuf,
		 size_t rcap, size_t *rlen)
{
	static uint8_t buf[2 * 4200 + 256];
	size_t n = fuse_client_args(buf, sizeof(buf), fixed, flen, s1, s2);

	assert_true(n > 0 || (!flen && !s1 && !s2));
	return call(f, op, nodeid, buf, n, rbuf, rcap, rlen);
}

static int setattr(struct fx *f, uint64_t nodeid,
		   const struct fuse_setattr_in *in, struct fuse_attr *a)
{
	struct fuse_attr_out out;
	int err = call(f, FUSE_SETATTR, nodeid, in, sizeof(*in), &out,
		       sizeof(out), NULL);

	if (!err && a)
		*a = out.attr;
	return err;
}

static int mknod_(struct fx *f, uint64_t parent, const char *name,
		  uint32_t mode, struct fuse_entry_out *e)
{
	struct fuse_mknod_in in = {.mode = mode};
	struct fuse_entry_out tmp;

	return call2(f, FUSE_MKNOD, parent, &in, sizeof(in), name, NULL,
		     e ? e : &tmp, sizeof(tmp), NULL);
}

static int symlink_(struct fx *f, uint64_t parent, const char *name,
		    const char *target, struct fuse_entry_out *e)
{
	struct fuse_entry_out tmp;

	return call2(f, FUSE_SYMLINK, parent, NULL, 0, name, target,
		     e ? e : &tmp, sizeof(tmp), NULL);
}

static int rename2(struct fx *f, uint64_t odir, const char *o, uint64_t ndir,
		   const char *n, uint32_t flags)
{
	struct fuse_rename2_in in = {.newdir = ndir, .flags = flags};

	return call2(f, FUSE_RENAME2, odir, &in, sizeof(in), o, n, NULL, 0,
		     NULL);
}

static uint64_t create_file(struct fx *f, uint64_t parent, const char *name,
			    uint64_t *fh)
{
	struct fuse_entry_out e;

	assert_int_equal(
		fuse_client_create(&f->c, parent, name, O_RDWR, 0644, &e, fh),
		0);
	return e.nodeid;
}

/* Reads a whole directory with READDIR(PLUS) requests of `chunk` bytes;
 * returns the names joined by '\n' (caller frees), nodeids of plus entries
 * summed into *plus_nodeids when not NULL. */
static char *read_dir(struct fx *f, uint64_t dir, bool plus, uint32_t chunk,
		      unsigned *count, unsigned *with_nodeid)
{
	char *names = calloc(1, 1 << 20);
	size_t nlen = 0;
	uint64_t fh, off = 0;
	uint8_t *buf = malloc(chunk);

	assert_non_null(names);
	assert_non_null(buf);
	*count = 0;
	if (with_nodeid)
		*with_nodeid = 0;
	assert_int_equal(fuse_client_opendir(&f->c, dir, &fh), 0);
	for (;;) {
		struct fuse_read_in in = {
			.fh = fh, .offset = off, .size = chunk};
		size_t got, pos = 0;

		assert_int_equal(call(f, plus ? FUSE_READDIRPLUS : FUSE_READDIR,
				      dir, &in, sizeof(in), buf, chunk, &got),
				 0);
		if (got == 0)
			break;
		while (pos < got) {
			struct fuse_entry_out e;
			struct fuse_dirent d;
			size_t hdr = plus ? FUSE_NAME_OFFSET_DIRENTPLUS
					  : FUSE_NAME_OFFSET;

			assert_true(got - pos >= hdr);
			if (plus) {
				memcpy(&e, buf + pos, sizeof(e));
				if (e.nodeid && with_nodeid)
					(*with_nodeid)++;
				memcpy(&d, buf + pos + sizeof(e), sizeof(d));
			} else {
				memcpy(&d, buf + pos, sizeof(d));
			}
			assert_true(d.namelen > 0 && d.namelen <= 255);
			assert_true(got - pos >= hdr + d.namelen);
			memcpy(names + nlen, buf + pos + hdr, d.namelen);
			nlen += d.namelen;
			names[nlen++] = '\n';
			(*count)++;
			off = d.off;
			pos += FUSE_DIRENT_ALIGN(hdr + d.namelen);
		}
	}
	assert_int_equal(fuse_client_release(&f->c, dir, fh, 1), 0);
	free(buf);
	return names;
}

static bool has_name(const char *names, const char *name)
{
	size_t l = strlen(name);

	for (const char *p = names; *p;) {
		const char *nl = strchr(p, '\n');

		if ((size_t)(nl - p) == l && !memcmp(p, name, l))
			return true;
		p = nl + 1;
	}
	return false;
}

/* ---- INIT / DESTROY / dispatch ---- */

static void test_init(void **state)
{
	struct fx *f = fx_new(NULL, false);
	struct fuse_init_in in = {.major = 7,
				  .minor = 38,
				  .flags = ~0u,
				  .max_readahead = 1u << 22};
	struct fuse_init_out out;
	struct fuse_entry_out e;
	size_t got;

	(void)state;
	/* nothing before INIT */
	assert_int_equal(fuse_client_lookup(&f->c, 1, "x", &e), -EIO);
	/* a newer major: the server answers with its own, no session */
	in.major = 8;
	assert_int_equal(
		call(f, FUSE_INIT, 0, &in, sizeof(in), &out, sizeof(out), &got),
		0);
	assert_int_equal(out.major, 7);
	assert_int_equal(out.minor, 31);
	assert_int_equal(fuse_client_getattr(&f->c, 1, NULL), -EIO);
	/* too old */
	in.major = 7;
	in.minor = 12;
	assert_int_equal(
		call(f, FUSE_INIT, 0, &in, sizeof(in), &out, sizeof(out), NULL),
		-EPROTO);
	/* 7.31-sized request (16 bytes) */
	in.minor = 31;
	assert_int_equal(
		call(f, FUSE_INIT, 0, &in, 16, &out, sizeof(out), &got), 0);
	assert_int_equal(got, sizeof(out));
	assert_int_equal(out.major, 7);
	assert_int_equal(out.minor, 31);
	assert_int_equal(out.max_write, 1u << 20);
	assert_int_equal(out.max_readahead, 1u << 20);
	assert_int_equal(out.max_pages, 256);
	assert_true(out.flags & FUSE_DO_READDIRPLUS);
	assert_true(out.flags & FUSE_MAX_PAGES);
	assert_false(out.flags & FUSE_EXPORT_SUPPORT);
	assert_false(out.flags & FUSE_WRITEBACK_CACHE);
	assert_false(out.flags & FUSE_POSIX_LOCKS);
	/* only flags the client offered */
	in.flags = FUSE_ASYNC_READ;
	assert_int_equal(
		call(f, FUSE_INIT, 0, &in, 16, &out, sizeof(out), NULL), 0);
	assert_int_equal(out.flags, FUSE_ASYNC_READ);
	assert_int_equal(fuse_client_getattr(&f->c, 1, NULL), 0);
	/* short INIT */
	assert_int_equal(call(f, FUSE_INIT, 0, &in, 8, &out, sizeof(out), NULL),
			 -EINVAL);
	teardown((void **)&f);
}

static void test_destroy(void **state)
{
	struct fx *f = *state;
	struct fuse_server_stats st;
	uint64_t fh;

	host_file(f, "a", "data");
	lookup(f, 1, "a");
	create_file(f, 1, "b", &fh);
	fuse_server_get_stats(f->s, &st);
	assert_int_equal(st.inodes, 3);
	assert_int_equal(st.handles, 1);
	assert_int_equal(call(f, FUSE_DESTROY, 0, NULL, 0, NULL, 0, NULL), 0);
	fuse_server_get_stats(f->s, &st);
	assert_int_equal(st.inodes, 1);
	assert_int_equal(st.handles, 0);
	assert_int_equal(fuse_client_getattr(&f->c, 1, NULL), -EIO);
	assert_int_equal(fuse_client_init(&f->c, NULL), 0);
	lookup(f, 1, "a");
	/* INIT again without DESTROY drops the old session too */
	assert_int_equal(fuse_client_init(&f->c, NULL), 0);
	fuse_server_get_stats(f->s, &st);
	assert_int_equal(st.inodes, 1);
	/* and so does a device reset */
	lookup(f, 1, "a");
	fuse_server_reset(f->s);
	assert_int_equal(fuse_client_getattr(&f->c, 1, NULL), -EIO);
}

static void test_unknown_opcodes(void **state)
{
	struct fx *f = *state;
	uint32_t ops[] = {0,
			  7,
			  19,
			  FUSE_GETLK,
			  FUSE_SETLK,
			  FUSE_SETLKW,
			  FUSE_INTERRUPT,
			  FUSE_BMAP,
			  FUSE_IOCTL,
			  FUSE_POLL,
			  FUSE_NOTIFY_REPLY,
			  FUSE_COPY_FILE_RANGE,
			  FUSE_SETUPMAPPING,
			  FUSE_REMOVEMAPPING,
			  FUSE_SYNCFS,
			  FUSE_TMPFILE,
			  52,
			  4096,
			  CUSE_INIT,
			  0xffffffffu};
	uint8_t args[128] = {0};

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		assert_int_equal(
			call(f, ops[i], 1, args, sizeof(args), NULL, 0, NULL),
			-ENOSYS);
}

/* ---- names and attributes ---- */

static void test_lookup(void **state)
{
	struct fx *f = *state;
	struct fuse_entry_out e, e2;
	struct fuse_server_stats st;

	host_file(f, "file", "hello");
	assert_int_equal(fuse_client_lookup(&f->c, 1, "file", &e), 0);
	assert_int_equal(e.attr.size, 5);
	assert_true(S_ISREG(e.attr.mode));
	assert_int_equal(e.attr.mode & 07777, 0644);
	assert_true(e.nodeid != 1);
	/* one host object, one nodeid */
	assert_int_equal(fuse_client_lookup(&f->c, 1, "file", &e2), 0);
	assert_int_equal(e2.nodeid, e.nodeid);
	fuse_server_get_stats(f->s, &st);
	assert_int_equal(st.inodes, 2);
	assert_int_equal(fuse_client_lookup(&f->c, 1, "nope", &e2), -ENOENT);
	/* a file is no directory */
	assert_int_equal(fuse_client_lookup(&f->c, e.nodeid, "x", &e2),
			 -ENOTDIR);
	/* nodeids nobody handed out */
	assert_int_equal(fuse_client_lookup(&f->c, 0, "file", &e2), -EBADF);
	assert_int_equal(fuse_client_lookup(&f->c, 999, "file", &e2), -EBADF);
	/* the reply must fit: no lookup is counted otherwise */
	assert_int_equal(call(f, FUSE_LOOKUP, 1, "file", 5, &e2, 100, NULL),
			 -EINVAL);
	assert_int_equal(fuse_client_forget(&f->c, e.nodeid, 2), 0);
	fuse_server_get_stats(f->s, &st);
	assert_int_equal(st.inodes, 1);
}

static void test_getattr_statfs(void **state)
{
	struct fx *f = *state;
	struct fuse_statfs_out sf;
	struct fuse_attr a;
	struct stat st;

	assert_int_equal(fstat(f->dfd, &st), 0);
	assert_int_equal(fuse_client_getattr(&f->c, 1, &a), 0);
	assert_true(S_ISDIR(a.mode));
	assert_int_equal(a.ino, st.st_ino);
	assert_int_equal(fuse_client_getattr(&f->c, 77, &a), -EBADF);
	/* short argument */
	assert_int_equal(
		call(f, FUSE_GETATTR, 1, "1234", 4, &a, sizeof(a), NULL),
		-EINVAL);
	assert_int_equal(
		call(f, FUSE_STATFS, 1, NULL, 0, &sf, sizeof(sf), NULL), 0);
	assert_true(sf.st.bsize > 0);
	assert_int_equal(sf.st.namelen, 255);
}

static void test_setattr(void **state)
{
	struct fx *f = *state;
	struct fuse_setattr_in in;
	struct fuse_attr a;
	uint64_t ino, dir, fh;
	char p[PATH_MAX];
	struct stat st;

	host_file(f, "f", "0123456789");
	ino = lookup(f, 1, "f");
	host_path(f, "f", p, sizeof(p));

	memset(&in, 0, sizeof(in));
	in.valid = FATTR_MODE;
	in.mode = S_IFREG | 0600;
	assert_int_equal(setattr(f, ino, &in, &a), 0);
	assert_int_equal(a.mode & 07777, 0600);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	memset(&in, 0, sizeof(in));
	in.valid = FATTR_SIZE;
	in.size = 3;
	assert_int_equal(setattr(f, ino, &in, &a), 0);
	assert_int_equal(a.size, 3);
	/* through an open handle */
	assert_int_equal(fuse_client_openfile(&f->c, ino, O_RDWR, &fh), 0);
	in.valid = FATTR_SIZE | FATTR_FH;
	in.fh = fh;
	in.size = 8192;
	assert_int_equal(setattr(f, ino, &in, &a), 0);
	assert_int_equal(a.size, 8192);
	in.size = 1ull << 63;
	assert_int_equal(setattr(f, ino, &in, &a), -EINVAL);
	assert_int_equal(fuse_client_release(&f->c, ino, fh, 0), 0);

	memset(&in, 0, sizeof(in));
	in.valid = FATTR_ATIME | FATTR_MTIME;
	in.atime = 1000000;
	in.atimensec = 5;
	in.mtime = 2000000;
	in.mtimensec = 7;
	assert_int_equal(setattr(f, ino, &in, &a), 0);
	assert_int_equal(a.atime, 1000000);
	assert_int_equal(a.mtime, 2000000);
	assert_int_equal(a.mtimensec, 7);
	in.valid = FATTR_MTIME_NOW | FATTR_ATIME_NOW;
	assert_int_equal(setattr(f, ino, &in, &a), 0);
	assert_true(a.mtime > 2000000);
	in.valid = FATTR_MTIME;
	in.mtimensec = 1000000000;
	assert_int_equal(setattr(f, ino, &in, &a), -EINVAL);

	if (geteuid() == 0) {
		memset(&in, 0, sizeof(in));
		in.valid = FATTR_UID | FATTR_GID;
		in.uid = 1234;
		in.gid = 4321;
		assert_int_equal(setattr(f, ino, &in, &a), 0);
		assert_int_equal(a.uid, 1234);
		assert_int_equal(a.gid, 4321);
		in.valid = FATTR_GID;
		in.gid = 77;
		assert_int_equal(setattr(f, ino, &in, &a), 0);
		assert_int_equal(a.uid, 1234);
		assert_int_equal(a.gid, 77);
	}

	/* size of a directory */
	host_path(f, "d", p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
	dir = lookup(f, 1, "d");
	memset(&in, 0, sizeof(in));
	in.valid = FATTR_SIZE;
	assert_int_equal(setattr(f, dir, &in, &a), -EISDIR);
	/* short argument */
	assert_int_equal(call(f, FUSE_SETATTR, ino, &in, sizeof(in) - 1, &a,
			      sizeof(struct fuse_attr_out), NULL),
			 -EINVAL);
}

static void test_symlink_readlink(void **state)
{
	struct fx *f = *state;
	struct fuse_entry_out e;
	char buf[PATH_MAX], p[PATH_MAX];
	size_t got;
	uint64_t file;

	assert_int_equal(symlink_(f, 1, "ln", "some/where", &e), 0);
	assert_true(S_ISLNK(e.attr.mode));
	assert_int_equal(e.attr.size, 10);
	host_path(f, "ln", p, sizeof(p));
	assert_int_equal(readlink(p, buf, sizeof(buf)), 10);
	assert_int_equal(call(f, FUSE_READLINK, e.nodeid, NULL, 0, buf,
			      sizeof(buf), &got),
			 0);
	assert_int_equal(got, 10);
	assert_memory_equal(buf, "some/where", 10);
	/* the reply must fit */
	assert_int_equal(
		call(f, FUSE_READLINK, e.nodeid, NULL, 0, buf, 4, &got),
		-ERANGE);
	assert_int_equal(symlink_(f, 1, "ln", "x", NULL), -EEXIST);
	assert_int_equal(symlink_(f, 1, "empty", "", NULL), -ENOENT);
	host_file(f, "file", "x");
	file = lookup(f, 1, "file");
	assert_int_equal(
		call(f, FUSE_READLINK, file, NULL, 0, buf, sizeof(buf), &got),
		-EINVAL);
	/* target without its NUL */
	assert_int_equal(
		call(f, FUSE_SYMLINK, 1, "l2\0abc", 6, &e, sizeof(e), NULL),
		-EINVAL);
	/* entry under a file */
	assert_int_equal(symlink_(f, file, "x", "y", NULL), -ENOTDIR);
}

static void test_mknod(void **state)
{
	struct fx *f = *state;
	struct fuse_entry_out e;
	char p[PATH_MAX];
	struct stat st;

	assert_int_equal(mknod_(f, 1, "reg", S_IFREG | 0640, &e), 0);
	assert_true(S_ISREG(e.attr.mode));
	assert_int_equal(e.attr.mode & 07777, 0640);
	assert_int_equal(mknod_(f, 1, "fifo", S_IFIFO | 0600, &e), 0);
	assert_true(S_ISFIFO(e.attr.mode));
	host_path(f, "fifo", p, sizeof(p));
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	/* sockets (a guest bind()) and, with CAP_MKNOD, device nodes with
	 * the guest's device number */
	assert_int_equal(mknod_(f, 1, "sock", S_IFSOCK | 0600, &e), 0);
	assert_true(S_ISSOCK(e.attr.mode));
	host_path(f, "sock", p, sizeof(p));
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	if (geteuid() == 0) {
		struct fuse_mknod_in in = {.mode = S_IFBLK | 0640,
					   .rdev = (0x123 << 8) | 0x45 |
						   (0x678 << 12) << 8};
		assert_int_equal(call2(f, FUSE_MKNOD, 1, &in, sizeof(in), "blk",
				       NULL, &e, sizeof(e), NULL),
				 0);
		assert_int_equal(e.attr.rdev, in.rdev);
		host_path(f, "blk", p, sizeof(p));
		assert_int_equal(lstat(p, &st), 0);
		assert_true(S_ISBLK(st.st_mode));
		assert_int_equal(major(st.st_rdev), 0x123);
		assert_int_equal(minor(st.st_rdev), 0x67845);
	}
	/* not directories (MKDIR), nor types mknod(2) does not know */
	assert_int_equal(mknod_(f, 1, "dir", S_IFDIR | 0600, NULL), -EPERM);
	assert_int_equal(mknod_(f, 1, "odd", 0170000 | 0600, NULL), -EINVAL);
	host_path(f, "odd", p, sizeof(p));
	assert_int_equal(lstat(p, &st), -1);
	assert_int_equal(mknod_(f, 1, "reg", S_IFREG | 0600, NULL), -EEXIST);
	/* mode bits the host umask would drop are kept */
	assert_int_equal(mknod_(f, 1, "wide", S_IFREG | 0666, &e), 0);
	assert_int_equal(e.attr.mode & 07777, 0666);
}

static void test_mkdir_rmdir_unlink(void **state)
{
	struct fx *f = *state;
	struct fuse_entry_out e, e2;
	char p[PATH_MAX];
	struct stat st;

	assert_int_equal(fuse_client_mkdir(&f->c, 1, "d", 0777, &e), 0);
	assert_true(S_ISDIR(e.attr.mode));
	assert_int_equal(e.attr.mode & 0777, 0777);
	assert_int_equal(fuse_client_mkdir(&f->c, 1, "d", 0755, &e2), -EEXIST);
	assert_int_equal(fuse_client_mkdir(&f->c, e.nodeid, "sub", 0700, &e2),
			 0);
	host_path(f, "d/sub", p, sizeof(p));
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(call(f, FUSE_RMDIR, 1, "d", 2, NULL, 0, NULL),
			 -ENOTEMPTY);
	assert_int_equal(call(f, FUSE_RMDIR, e.nodeid, "sub", 4, NULL, 0, NULL),
			 0);
	assert_int_equal(call(f, FUSE_RMDIR, 1, "d", 2, NULL, 0, NULL), 0);
	assert_int_equal(call(f, FUSE_RMDIR, 1, "d", 2, NULL, 0, NULL),
			 -ENOENT);
	host_file(f, "f", "x");
	assert_int_equal(call(f, FUSE_RMDIR, 1, "f", 2, NULL, 0, NULL),
			 -ENOTDIR);
	assert_int_equal(fuse_client_unlink(&f->c, 1, "f"), 0);
	assert_int_equal(fuse_client_unlink(&f->c, 1, "f"), -ENOENT);
	host_path(f, "f", p, sizeof(p));
	assert_int_equal(lstat(p, &st), -1);
	/* unlink of a dir, mkdir under a file */
	assert_int_equal(fuse_client_mkdir(&f->c, 1, "d2", 0755, &e), 0);
	assert_int_equal(fuse_client_unlink(&f->c, 1, "d2"), -EISDIR);
	host_file(f, "g", "x");
	assert_int_equal(
		fuse_client_mkdir(&f->c, lookup(f, 1, "g"), "x", 0755, &e),
		-ENOTDIR);
	/* a directory's inode stays usable after its name is gone */
	assert_int_equal(call(f, FUSE_RMDIR, 1, "d2", 3, NULL, 0, NULL), 0);
	assert_int_equal(fuse_client_getattr(&f->c, e.nodeid, NULL), 0);
}

static void test_rename(void **state)
{
	struct fx *f = *state;
	struct fuse_entry_out d;
	struct fuse_rename_in rin;
	char p[PATH_MAX], buf[16];
	int fd;

	host_file(f, "a", "A");
	host_file(f, "b", "B");
	assert_int_equal(fuse_client_mkdir(&f->c, 1, "d", 0755, &d), 0);
	rin.newdir = d.nodeid;
	assert_int_equal(call2(f, FUSE_RENAME, 1, &rin, sizeof(rin), "a", "a2",
			       NULL, 0, NULL),
			 0);
	host_path(f, "d/a2", p, sizeof(p));
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 'A');
	close(fd);
	/* back, NOREPLACE onto b */
	assert_int_equal(rename2(f, d.nodeid, "a2", 1, "b", RENAME_NOREPLACE),
			 -EEXIST);
	assert_int_equal(rename2(f, d.nodeid, "a2", 1, "a", RENAME_NOREPLACE),
			 0);
	/* EXCHANGE swaps */
	assert_int_equal(rename2(f, 1, "a", 1, "b", RENAME_EXCHANGE), 0);
	host_path(f, "a", p, sizeof(p));
	fd = open(p, O_RDONLY);
	assert_int_equal(read(fd, buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 'B');
	close(fd);
	assert_int_equal(rename2(f, 1, "a", 1, "none", RENAME_EXCHANGE),
			 -ENOENT);
	/* whiteouts and unknown flags are not for guests */
	assert_int_equal(rename2(f, 1, "a", 1, "c", RENAME_WHITEOUT), -EINVAL);
	assert_int_equal(rename2(f, 1, "a", 1, "c", 1u << 20), -EINVAL);
	assert_int_equal(
		rename2(f, 1, "a", 1, "c", RENAME_EXCHANGE | RENAME_NOREPLACE),
		-EINVAL);
	/* plain rename replaces */
	assert_int_equal(rename2(f, 1, "a", 1, "b", 0), 0);
	assert_int_equal(rename2(f, 1, "missing", 1, "c", 0), -ENOENT);
	/* the target directory must be a directory we handed out */
	assert_int_equal(rename2(f, 1, "b", 4242, "c", 0), -EBADF);
	assert_int_equal(rename2(f, 1, "b", lookup(f, 1, "b"), "c", 0),
			 -ENOTDIR);
}

static void test_link(void **state)
{
	struct fx *f = *state;
	struct fuse_link_in in;
	struct fuse_entry_out e;
	uint64_t a;

	host_file(f, "a", "A");
	a = lookup(f, 1, "a");
	in.oldnodeid = a;
	assert_int_equal(call2(f, FUSE_LINK, 1, &in, sizeof(in), "b", NULL, &e,
			       sizeof(e), NULL),
			 0);
	assert_int_equal(e.nodeid, a); /* same object, same nodeid */
	assert_int_equal(e.attr.nlink, 2);
	assert_int_equal(call2(f, FUSE_LINK, 1, &in, sizeof(in), "b", NULL, &e,
			       sizeof(e), NULL),
			 -EEXIST);
	/* directories cannot be linked */
	in.oldnodeid = 1;
	assert_int_equal(call2(f, FUSE_LINK, 1, &in, sizeof(in), "root2", NULL,
			       &e, sizeof(e), NULL),
			 -EPERM);
	/* a symlink is linked as a link, not its target */
	assert_int_equal(symlink_(f, 1, "sl", "/etc/passwd", &e), 0);
	in.oldnodeid = e.nodeid;
	assert_int_equal(call2(f, FUSE_LINK, 1, &in, sizeof(in), "sl2", NULL,
			       &e, sizeof(e), NULL),
			 0);
	assert_true(S_ISLNK(e.attr.mode));
	assert_int_equal(e.attr.nlink, 2);
	/* into a non-directory */
	in.oldnodeid = a;
	assert_int_equal(call2(f, FUSE_LINK, a, &in, sizeof(in), "c", NULL, &e,
			       sizeof(e), NULL),
			 -ENOTDIR);
}

/* ---- files ---- */

static void test_open_read_write(void **state)
{
	struct fx *f = *state;
	uint8_t wbuf[70000], rbuf[70000];
	uint64_t ino, fh, fh2;
	char p[PATH_MAX];
	struct stat st;

	for (size_t i = 0; i < sizeof(wbuf); i++)
		wbuf[i] = (uint8_t)(i * 7 + 3);
	ino = create_file(f, 1, "f", &fh);
	assert_int_equal(fuse_client_write(&f->c, ino, fh, 0, wbuf, 1000),
			 1000);
	assert_int_equal(fuse_client_write(&f->c, ino, fh, 1000, wbuf + 1000,
					   sizeof(wbuf) - 1000),
			 (ssize_t)sizeof(wbuf) - 1000);
	host_path(f, "f", p, sizeof(p));
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, sizeof(wbuf));
	assert_int_equal(
		fuse_client_read(&f->c, ino, fh, 0, rbuf, sizeof(rbuf)),
		(ssize_t)sizeof(rbuf));
	assert_memory_equal(rbuf, wbuf, sizeof(wbuf));
	/* short read at the end, nothing past it */
	assert_int_equal(
		fuse_client_read(&f->c, ino, fh, sizeof(wbuf) - 10, rbuf, 100),
		10);
	assert_int_equal(fuse_client_read(&f->c, ino, fh, 1u << 30, rbuf, 100),
			 0);
	/* offsets that are negative as off_t */
	assert_int_equal(fuse_client_read(&f->c, ino, fh, 1ull << 63, rbuf, 1),
			 -EINVAL);
	assert_int_equal(fuse_client_write(&f->c, ino, fh, ~0ull, wbuf, 1),
			 -EINVAL);
	assert_int_equal(fuse_client_release(&f->c, ino, fh, 0), 0);
	/* the handle is gone */
	assert_int_equal(fuse_client_read(&f->c, ino, fh, 0, rbuf, 1), -EBADF);
	assert_int_equal(fuse_client_release(&f->c, ino, fh, 0), -EBADF);

	/* read-only open cannot write; O_TRUNC truncates */
	assert_int_equal(fuse_client_openfile(&f->c, ino, O_RDONLY, &fh), 0);
	assert_int_equal(fuse_client_write(&f->c, ino, fh, 0, wbuf, 1), -EBADF);
	assert_int_equal(
		fuse_client_openfile(&f->c, ino, O_WRONLY | O_TRUNC, &fh2), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 0);
	/* a handle only works with its own nodeid */
	assert_int_equal(fuse_client_read(&f->c, 1, fh, 0, rbuf, 1), -EBADF);
	assert_int_equal(fuse_client_release(&f->c, ino, fh, 0), 0);
	assert_int_equal(fuse_client_release(&f->c, ino, fh2, 0), 0);
	/* O_APPEND appends whatever the offset */
	assert_int_equal(
		fuse_client_openfile(&f->c, ino, O_WRONLY | O_APPEND, &fh), 0);
	assert_int_equal(fuse_client_write(&f->c, ino, fh, 0, "ab", 2), 2);
	assert_int_equal(fuse_client_write(&f->c, ino, fh, 0, "cd", 2), 2);
	assert_int_equal(fuse_client_release(&f->c, ino, fh, 0), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 4);

	assert_int_equal(fuse_client_openfile(&f->c, ino, O_ACCMODE, &fh),
			 -EINVAL);
	assert_int_equal(fuse_client_openfile(&f->c, 1, O_RDONLY, &fh),
			 -EISDIR);
	assert_int_equal(fuse_client_openfile(&f->c, 555, O_RDONLY, &fh),
			 -EBADF);
}

static void test_write_limits(void **state)
{
	struct fx *f = *state;
	struct fuse_write_in in;
	static uint8_t big[(1u << 20) + 4096];
	struct iovec iov = {big, sizeof(big)};
	struct fuse_write_out out;
	uint64_t ino, fh;

	ino = create_file(f, 1, "f", &fh);
	/* more than max_write */
	memset(&in, 0, sizeof(in));
	in.fh = fh;
	in.size = (1u << 20) + 1;
	assert_int_equal(fuse_client_call(&f->c, FUSE_WRITE, ino, &in,
					  sizeof(in), &iov, 1, &out,
					  sizeof(out), NULL),
			 -EINVAL);
	/* size claims more data than the request carries */
	in.size = 100;
	iov.iov_len = 99;
	assert_int_equal(fuse_client_call(&f->c, FUSE_WRITE, ino, &in,
					  sizeof(in), &iov, 1, &out,
					  sizeof(out), NULL),
			 -EINVAL);
	/* exactly max_write, in several segments */
	struct iovec segs[3] = {
		{big, 1}, {big + 1, 4095}, {big + 4096, (1u << 20) - 4096}};
	in.size = 1u << 20;
	assert_int_equal(fuse_client_call(&f->c, FUSE_WRITE, ino, &in,
					  sizeof(in), segs, 3, &out,
					  sizeof(out), NULL),
			 0);
	assert_int_equal(out.size, 1u << 20);
	assert_int_equal(fuse_client_release(&f->c, ino, fh, 0), 0);
}

static void test_create(void **state)
{
	struct fx *f = *state;
	struct fuse_entry_out e;
	uint64_t fh, fh2, ino;
	char p[PATH_MAX];
	struct stat st;

	assert_int_equal(fuse_client_create(&f->c, 1, "n", O_RDWR | O_CREAT,
					    0604, &e, &fh),
			 0);
	ino = e.nodeid;
	assert_true(S_ISREG(e.attr.mode));
	assert_int_equal(e.attr.mode & 07777, 0604);
	host_path(f, "n", p, sizeof(p));
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_ino, e.attr.ino);
	assert_int_equal(fuse_client_write(&f->c, ino, fh, 0, "xyz", 3), 3);
	/* existing name: O_EXCL fails, without it the file is opened */
	assert_int_equal(fuse_client_create(&f->c, 1, "n",
					    O_RDWR | O_CREAT | O_EXCL, 0644, &e,
					    &fh2),
			 -EEXIST);
	assert_int_equal(fuse_client_create(&f->c, 1, "n", O_RDONLY | O_CREAT,
					    0644, &e, &fh2),
			 0);
	assert_int_equal(e.nodeid, ino);
	assert_int_equal(e.attr.size, 3);
	assert_int_equal(fuse_client_release(&f->c, ino, fh2, 0), 0);
	assert_int_equal(fuse_client_create(&f->c, 1, "n",
					    O_WRONLY | O_CREAT | O_TRUNC, 0644,
					    &e, &fh2),
			 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(fuse_client_release(&f->c, ino, fh2, 0), 0);
	assert_int_equal(fuse_client_release(&f->c, ino, fh, 0), 0);
	/* a directory by that name */
	assert_int_equal(fuse_client_mkdir(&f->c, 1, "d", 0755, &e), 0);
	assert_int_equal(fuse_client_create(&f->c, 1, "d", O_RDWR | O_CREAT,
					    0644, &e, &fh),
			 -EISDIR);
	/* not a regular file type */
	assert_int_equal(fuse_client_create(&f->c, 1, "x", O_RDWR,
					    S_IFDIR | 0644, &e, &fh),
			 -EINVAL);
	assert_int_equal(
		fuse_client_create(&f->c, 1, "x", O_ACCMODE, 0644, &e, &fh),
		-EINVAL);
	assert_int_equal(
		fuse_client_create(&f->c, 777, "x", O_RDWR, 0644, &e, &fh),
		-EBADF);
}

static void test_fsync_flush(void **state)
{
	struct fx *f = *state;
	struct fuse_fsync_in in = {0};
	struct fuse_flush_in fl = {0};
	uint64_t ino, fh, dfh;

	ino = create_file(f, 1, "f", &fh);
	in.fh = fh;
	assert_int_equal(
		call(f, FUSE_FSYNC, ino, &in, sizeof(in), NULL, 0, NULL), 0);
	in.fsync_flags = FUSE_FSYNC_FDATASYNC;
	assert_int_equal(
		call(f, FUSE_FSYNC, ino, &in, sizeof(in), NULL, 0, NULL), 0);
	fl.fh = fh;
	assert_int_equal(
		call(f, FUSE_FLUSH, ino, &fl, sizeof(fl), NULL, 0, NULL), 0);
	fl.fh = fh + 99;
	assert_int_equal(
		call(f, FUSE_FLUSH, ino, &fl, sizeof(fl), NULL, 0, NULL),
		-EBADF);
	/* FSYNCDIR wants a directory handle */
	assert_int_equal(
		call(f, FUSE_FSYNCDIR, ino, &in, sizeof(in), NULL, 0, NULL),
		-ENOTDIR);
	assert_int_equal(fuse_client_opendir(&f->c, 1, &dfh), 0);
	in.fh = dfh;
	assert_int_equal(
		call(f, FUSE_FSYNCDIR, 1, &in, sizeof(in), NULL, 0, NULL), 0);
	assert_int_equal(call(f, FUSE_FSYNC, 1, &in, sizeof(in), NULL, 0, NULL),
			 -EISDIR);
	assert_int_equal(fuse_client_release(&f->c, 1, dfh, 1), 0);
	assert_int_equal(fuse_client_release(&f->c, ino, fh, 0), 0);
}

static void test_access(void **state)
{
	struct fx *f = *state;
	struct fuse_access_in in = {.mask = R_OK | W_OK};
	uint64_t ino;

	host_file(f, "f", "x");
	ino = lookup(f, 1, "f");
	assert_int_equal(
		call(f, FUSE_ACCESS, ino, &in, sizeof(in), NULL, 0, NULL), 0);
	in.mask = F_OK;
	assert_int_equal(
		call(f, FUSE_ACCESS, 1, &in, sizeof(in), NULL, 0, NULL), 0);
	in.mask = 0x100;
	assert_int_equal(
		call(f, FUSE_ACCESS, ino, &in, sizeof(in), NULL, 0, NULL),
		-EINVAL);
	if (geteuid() != 0) {
		in.mask = X_OK;
		assert_int_equal(call(f, FUSE_ACCESS, ino, &in, sizeof(in),
				      NULL, 0, NULL),
				 -EACCES);
	}
}

static void test_fallocate_lseek(void **state)
{
	struct fx *f = *state;
	struct fuse_fallocate_in fa = {0};
	struct fuse_lseek_in ls = {0};
	struct fuse_lseek_out lo;
	struct fuse_attr a;
	uint64_t ino, fh;
	int err;

	ino = create_file(f, 1, "f", &fh);
	fa.fh = fh;
	fa.offset = 0;
	fa.length = 1 << 20;
	err = call(f, FUSE_FALLOCATE, ino, &fa, sizeof(fa), NULL, 0, NULL);
	if (err == -EOPNOTSUPP) {
		skip();
		return;
	}
	assert_int_equal(err, 0);
	assert_int_equal(fuse_client_getattr(&f->c, ino, &a), 0);
	assert_int_equal(a.size, 1 << 20);
	fa.mode = FALLOC_FL_KEEP_SIZE;
	fa.offset = 1 << 20;
	assert_int_equal(
		call(f, FUSE_FALLOCATE, ino, &fa, sizeof(fa), NULL, 0, NULL),
		0);
	assert_int_equal(fuse_client_getattr(&f->c, ino, &a), 0);
	assert_int_equal(a.size, 1 << 20);
	fa.mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	fa.offset = 0;
	fa.length = 1 << 20;
	assert_int_equal(
		call(f, FUSE_FALLOCATE, ino, &fa, sizeof(fa), NULL, 0, NULL),
		0);
	/* errors */
	fa.mode = 0x40; /* FALLOC_FL_INSERT_RANGE etc.: not served */
	assert_int_equal(
		call(f, FUSE_FALLOCATE, ino, &fa, sizeof(fa), NULL, 0, NULL),
		-EOPNOTSUPP);
	fa.mode = 0;
	fa.length = 0;
	assert_int_equal(
		call(f, FUSE_FALLOCATE, ino, &fa, sizeof(fa), NULL, 0, NULL),
		-EINVAL);
	fa.offset = INT64_MAX;
	fa.length = 2;
	assert_int_equal(
		call(f, FUSE_FALLOCATE, ino, &fa, sizeof(fa), NULL, 0, NULL),
		-EINVAL);

	/* data at 4 MiB, a hole before it */
	assert_int_equal(fuse_client_write(&f->c, ino, fh, 4 << 20, "d", 1), 1);
	ls.fh = fh;
	ls.offset = 0;
	ls.whence = SEEK_HOLE;
	assert_int_equal(call(f, FUSE_LSEEK, ino, &ls, sizeof(ls), &lo,
			      sizeof(lo), NULL),
			 0);
	assert_true(lo.offset < (4u << 20));
	ls.whence = SEEK_DATA;
	ls.offset = 2 << 20;
	assert_int_equal(call(f, FUSE_LSEEK, ino, &ls, sizeof(ls), &lo,
			      sizeof(lo), NULL),
			 0);
	assert_true(lo.offset <= (4u << 20) && lo.offset >= (2u << 20));
	ls.offset = 8 << 20;
	assert_int_equal(call(f, FUSE_LSEEK, ino, &ls, sizeof(ls), &lo,
			      sizeof(lo), NULL),
			 -ENXIO);
	ls.whence = SEEK_SET;
	assert_int_equal(call(f, FUSE_LSEEK, ino, &ls, sizeof(ls), &lo,
			      sizeof(lo), NULL),
			 -EINVAL);
	assert_int_equal(fuse_client_release(&f->c, ino, fh, 0), 0);
}

/* ---- directories ---- */

static void test_readdir(void **state)
{
	struct fx *f = *state;
	struct fuse_entry_out e;
	struct fuse_server_stats st;
	char name[64], *names;
	unsigned count, with_nodeid;
	uint64_t d, fh;

	assert_int_equal(fuse_client_mkdir(&f->c, 1, "d", 0755, &e), 0);
	d = e.nodeid;
	for (int i = 0; i < 150; i++) {
		snprintf(name, sizeof(name), "file-with-a-longish-name-%03d",
			 i);
		uint64_t ino = create_file(f, d, name, &fh);

		assert_int_equal(fuse_client_release(&f->c, ino, fh, 0), 0);
		assert_int_equal(
			fuse_client_forget(&f->c, lookup(f, d, name), 2), 0);
	}
	assert_int_equal(fuse_client_mkdir(&f->c, d, "subdir", 0755, &e), 0);
	assert_int_equal(fuse_client_forget(&f->c, e.nodeid, 1), 0);
	fuse_server_get_stats(f->s, &st);
	assert_int_equal(st.inodes, 2);

	/* small chunks: the listing continues from each reply's offsets */
	names = read_dir(f, d, false, 512, &count, NULL);
	assert_int_equal(count, 153);
	assert_true(has_name(names, "."));
	assert_true(has_name(names, ".."));
	assert_true(has_name(names, "subdir"));
	for (int i = 0; i < 150; i++) {
		snprintf(name, sizeof(name), "file-with-a-longish-name-%03d",
			 i);
		assert_true(has_name(names, name));
	}
	free(names);
	names = read_dir(f, d, false, 65536, &count, NULL);
	assert_int_equal(count, 153);
	free(names);

	/* plus: every name but . and .. is looked up (and counted) */
	names = read_dir(f, d, true, 1024, &count, &with_nodeid);
	assert_int_equal(count, 153);
	assert_int_equal(with_nodeid, 151);
	free(names);
	fuse_server_get_stats(f->s, &st);
	assert_int_equal(st.inodes, 2 + 151);
	assert_int_equal(st.handles, 0);

	/* too small for one entry: an empty reply */
	{
		struct fuse_read_in in = {.size = 8};
		uint8_t buf[8];
		size_t got;

		assert_int_equal(fuse_client_opendir(&f->c, d, &in.fh), 0);
		assert_int_equal(call(f, FUSE_READDIR, d, &in, sizeof(in), buf,
				      sizeof(buf), &got),
				 0);
		assert_int_equal(got, 0);
		/* a directory handle is no file handle, and vice versa */
		assert_int_equal(call(f, FUSE_READ, d, &in, sizeof(in), buf,
				      sizeof(buf), &got),
				 -EISDIR);
		assert_int_equal(fuse_client_release(&f->c, d, in.fh, 1), 0);
	}
	/* OPENDIR of a file */
	host_file(f, "plain", "x");
	assert_int_equal(fuse_client_opendir(&f->c, lookup(f, 1, "plain"), &fh),
			 -ENOTDIR);
}

static void test_opendir_handles(void **state)
{
	struct fx *f = *state;
	struct fuse_read_in in = {0};
	uint8_t buf[4096];
	uint64_t fh, fino;
	size_t got;

	host_file(f, "f", "x");
	fino = lookup(f, 1, "f");
	assert_int_equal(fuse_client_openfile(&f->c, fino, O_RDONLY, &fh), 0);
	in.fh = fh;
	in.size = sizeof(buf);
	assert_int_equal(call(f, FUSE_READDIR, fino, &in, sizeof(in), buf,
			      sizeof(buf), &got),
			 -ENOTDIR);
	assert_int_equal(fuse_client_release(&f->c, fino, fh, 0), 0);
	in.fh = 12345;
	assert_int_equal(call(f, FUSE_READDIR, 1, &in, sizeof(in), buf,
			      sizeof(buf), &got),
			 -EBADF);
}

/* ---- xattrs ---- */

static void test_xattr(void **state)
{
	struct fx *f = *state;
	struct fuse_setxattr_in sx = {.size = 5};
	struct fuse_getxattr_in gx = {0};
	struct fuse_getxattr_out go;
	uint8_t buf[512];
	char val[4096];
	size_t got, n;
	uint64_t ino;
	int err;

	host_file(f, "f", "x");
	ino = lookup(f, 1, "f");
	n = fuse_client_args(buf, sizeof(buf), &sx, 8, "user.color", NULL);
	memcpy(buf + n, "green", 5);
	err = call(f, FUSE_SETXATTR, ino, buf, n + 5, NULL, 0, NULL);
	if (err == -EOPNOTSUPP) { /* /tmp without user xattrs */
		skip();
		return;
	}
	assert_int_equal(err, 0);
	/* size query, then the value */
	gx.size = 0;
	assert_int_equal(call2(f, FUSE_GETXATTR, ino, &gx, sizeof(gx),
			       "user.color", NULL, &go, sizeof(go), &got),
			 0);
	assert_int_equal(got, sizeof(go));
	assert_int_equal(go.size, 5);
	gx.size = sizeof(val);
	assert_int_equal(call2(f, FUSE_GETXATTR, ino, &gx, sizeof(gx),
			       "user.color", NULL, val, sizeof(val), &got),
			 0);
	assert_int_equal(got, 5);
	assert_memory_equal(val, "green", 5);
	gx.size = 3;
	assert_int_equal(call2(f, FUSE_GETXATTR, ino, &gx, sizeof(gx),
			       "user.color", NULL, val, sizeof(val), &got),
			 -ERANGE);
	gx.size = sizeof(val);
	assert_int_equal(call2(f, FUSE_GETXATTR, ino, &gx, sizeof(gx),
			       "user.none", NULL, val, sizeof(val), &got),
			 -ENODATA);
	/* XATTR_CREATE on an existing name */
	sx.flags = XATTR_CREATE;
	n = fuse_client_args(buf, sizeof(buf), &sx, 8, "user.color", NULL);
	memcpy(buf + n, "green", 5);
	assert_int_equal(call(f, FUSE_SETXATTR, ino, buf, n + 5, NULL, 0, NULL),
			 -EEXIST);
	/* value shorter than its size */
	sx.flags = 0;
	sx.size = 100;
	n = fuse_client_args(buf, sizeof(buf), &sx, 8, "user.b", NULL);
	assert_int_equal(call(f, FUSE_SETXATTR, ino, buf, n + 5, NULL, 0, NULL),
			 -EINVAL);
	sx.size = 1u << 20;
	n = fuse_client_args(buf, sizeof(buf), &sx, 8, "user.b", NULL);
	assert_int_equal(call(f, FUSE_SETXATTR, ino, buf, n, NULL, 0, NULL),
			 -E2BIG);
	/* a second one on the directory, then list */
	sx.size = 1;
	n = fuse_client_args(buf, sizeof(buf), &sx, 8, "user.d", NULL);
	buf[n] = '1';
	assert_int_equal(call(f, FUSE_SETXATTR, 1, buf, n + 1, NULL, 0, NULL),
			 0);
	gx.size = 0;
	assert_int_equal(call(f, FUSE_LISTXATTR, ino, &gx, sizeof(gx), &go,
			      sizeof(go), &got),
			 0);
	assert_int_equal(go.size, sizeof("user.color"));
	gx.size = sizeof(val);
	assert_int_equal(call(f, FUSE_LISTXATTR, ino, &gx, sizeof(gx), val,
			      sizeof(val), &got),
			 0);
	assert_int_equal(got, sizeof("user.color"));
	assert_string_equal(val, "user.color");
	gx.size = 4;
	assert_int_equal(call(f, FUSE_LISTXATTR, ino, &gx, sizeof(gx), val,
			      sizeof(val), &got),
			 -ERANGE);
	/* remove */
	assert_int_equal(
		call(f, FUSE_REMOVEXATTR, ino, "user.color", 11, NULL, 0, NULL),
		0);
	assert_int_equal(
		call(f, FUSE_REMOVEXATTR, ino, "user.color", 11, NULL, 0, NULL),
		-ENODATA);
	gx.size = 0;
	assert_int_equal(call(f, FUSE_LISTXATTR, ino, &gx, sizeof(gx), &go,
			      sizeof(go), &got),
			 0);
	assert_int_equal(go.size, 0);
	/* other namespaces are not served */
	sx.size = 1;
	n = fuse_client_args(buf, sizeof(buf), &sx, 8, "trusted.x", NULL);
	assert_int_equal(call(f, FUSE_SETXATTR, ino, buf, n + 1, NULL, 0, NULL),
			 -EOPNOTSUPP);
	n = fuse_client_args(buf, sizeof(buf), &sx, 8, "user.", NULL);
	assert_int_equal(call(f, FUSE_SETXATTR, ino, buf, n + 1, NULL, 0, NULL),
			 -EOPNOTSUPP);
}

static void test_xattr_disabled(void **state)
{
	struct fx *f = fx_new(NULL, true);
	struct fuse_getxattr_in gx = {0};
	uint8_t buf[64];

	(void)state;
	assert_int_equal(call2(f, FUSE_GETXATTR, 1, &gx, sizeof(gx), "user.a",
			       NULL, buf, sizeof(buf), NULL),
			 -ENOSYS);
	assert_int_equal(call(f, FUSE_LISTXATTR, 1, &gx, sizeof(gx), buf,
			      sizeof(buf), NULL),
			 -ENOSYS);
	assert_int_equal(call2(f, FUSE_SETXATTR, 1, &gx, sizeof(gx), "user.a",
			       NULL, NULL, 0, NULL),
			 -ENOSYS);
	assert_int_equal(
		call(f, FUSE_REMOVEXATTR, 1, "user.a", 7, NULL, 0, NULL),
		-ENOSYS);
	teardown((void **)&f);
}

/* ---- transports: chains and flat buffers ---- */

static void test_chain_segments(void **state)
{
	struct fx *f = *state;
	static struct virtq_chain ch;
	struct fuse_in_header h = {0};
	struct fuse_read_in in = {0};
	uint8_t req[sizeof(h) + sizeof(in)], hdr[16];
	char data[32];
	uint8_t *segs[sizeof(req)];
	struct fuse_out_header oh;
	uint64_t ino, fh;
	uint32_t written;

	host_file(f, "f", "abcdefghijklmnopqrstuvwxyz");
	ino = lookup(f, 1, "f");
	assert_int_equal(fuse_client_openfile(&f->c, ino, O_RDONLY, &fh), 0);
	h.len = sizeof(req);
	h.opcode = FUSE_READ;
	h.unique = 77;
	h.nodeid = ino;
	in.fh = fh;
	in.offset = 2;
	in.size = 20;
	memcpy(req, &h, sizeof(h));
	memcpy(req + sizeof(h), &in, sizeof(in));
	/* one byte per readable segment, separately allocated */
	memset(&ch, 0, sizeof(ch));
	for (size_t i = 0; i < sizeof(req); i++) {
		segs[i] = malloc(1);
		*segs[i] = req[i];
		ch.out[ch.n_out++] = (struct iovec){segs[i], 1};
	}
	ch.out_len = sizeof(req);
	/* reply header split 3 + 13, data over three segments */
	ch.in[ch.n_in++] = (struct iovec){hdr, 3};
	ch.in[ch.n_in++] = (struct iovec){hdr + 3, 13};
	ch.in[ch.n_in++] = (struct iovec){data, 1};
	ch.in[ch.n_in++] = (struct iovec){data + 1, 5};
	ch.in[ch.n_in++] = (struct iovec){data + 6, 26};
	ch.in_len = 16 + 32;
	assert_int_equal(fuse_server_handle(f->s, &ch, &written), 0);
	assert_int_equal(written, 16 + 20);
	memcpy(&oh, hdr, sizeof(oh));
	assert_int_equal(oh.len, 36);
	assert_int_equal(oh.error, 0);
	assert_int_equal(oh.unique, 77);
	assert_memory_equal(data, "cdefghijklmnopqrstuv", 20);
	for (size_t i = 0; i < sizeof(req); i++)
		free(segs[i]);
	assert_int_equal(fuse_client_release(&f->c, ino, fh, 0), 0);
}

static void test_flat_buffer(void **state)
{
	struct fx *f = *state;
	uint8_t req[64], rep[256];
	struct fuse_in_header h = {.len = sizeof(h) + 2,
				   .opcode = FUSE_LOOKUP,
				   .unique = 9,
				   .nodeid = 1};
	struct fuse_out_header oh;
	size_t out_len;

	host_file(f, "a", "x");
	memcpy(req, &h, sizeof(h));
	memcpy(req + sizeof(h), "a", 2);
	assert_int_equal(fuse_server_handle_buf(f->s, req, h.len, rep,
						sizeof(rep), &out_len),
			 0);
	assert_int_equal(out_len, 16 + sizeof(struct fuse_entry_out));
	memcpy(&oh, rep, sizeof(oh));
	assert_int_equal(oh.error, 0);
	assert_int_equal(oh.unique, 9);
	/* no room for even the header: dropped */
	assert_int_equal(
		fuse_server_handle_buf(f->s, req, h.len, rep, 15, &out_len),
		-EINVAL);
	assert_int_equal(out_len, 0);
}

/* ---- threads ---- */

struct worker {
	struct fuse_server *s;
	int id, errors;
};

/* LOOKUP, OPEN, READ, RELEASE, FORGET in a loop, while another worker
 * forgets the same nodeid into the ground and a third resets nothing but
 * guesses ids: the counts must come out right and nothing may crash. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct fuse_client c;
	struct fuse_entry_out e;
	char buf[16];
	uint64_t fh;

	if (fuse_client_open(&c, w->s))
		return NULL;
	for (int i = 0; i < 2000; i++) {
		if (w->id == 3) {
			/* the hostile one: forgets and guesses */
			fuse_client_forget(&c, (uint64_t)(i % 8) + 1, ~0ull);
			fuse_client_getattr(&c, (uint64_t)(i % 8) + 1, NULL);
			continue;
		}
		if (fuse_client_lookup(&c, 1, "f", &e)) {
			w->errors++;
			continue;
		}
		/* the hostile worker may have freed it already */
		if (fuse_client_openfile(&c, e.nodeid, O_RDONLY, &fh) == 0) {
			if (fuse_client_read(&c, e.nodeid, fh, 0, buf, 4) != 4)
				w->errors++;
			if (fuse_client_release(&c, e.nodeid, fh, 0))
				w->errors++;
		}
		fuse_client_forget(&c, e.nodeid, 1);
	}
	fuse_client_close(&c);
	return NULL;
}

static void test_threads(void **state)
{
	struct fx *f = *state;
	struct worker w[4];
	pthread_t t[4];
	struct fuse_server_stats st;

	host_file(f, "f", "data");
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){f->s, i, 0};
		assert_int_equal(
			pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].errors, 0);
	}
	fuse_server_get_stats(f->s, &st);
	assert_int_equal(st.handles, 0);
	assert_true(st.inodes <= 2);
	assert_int_equal(fuse_client_getattr(&f->c, 1, NULL), 0);
}

/* ---- fuzz seeds (only with KILN_FUSE_WRITE_CORPUS=dir) ---- */

/* Seed records in fuzz_fuse's format: le16 request length, le16 reply
 * capacity, request bytes; nodeids as a fresh server hands them out. */
struct seed {
	uint8_t buf[8192];
	size_t len;
};

static void seed_add(struct seed *sd, uint32_t op, uint64_t nodeid,
		     const void *fixed, size_t flen, const char *s1,
		     const char *s2, const void *tail, size_t tlen,
		     uint16_t rcap)
{
	struct fuse_in_header h = {
		.opcode = op, .unique = sd->len + 1, .nodeid = nodeid};
	uint8_t args[4096];
	size_t n = fuse_client_args(args, sizeof(args), fixed, flen, s1, s2);
	uint16_t rl;

	assert_true(n + tlen < sizeof(args));
	memcpy(args + n, tail, tlen);
	n += tlen;
	h.len = (uint32_t)(sizeof(h) + n);
	rl = (uint16_t)h.len;
	assert_true(sd->len + 4 + h.len <= sizeof(sd->buf));
	memcpy(sd->buf + sd->len, &rl, 2);
	memcpy(sd->buf + sd->len + 2, &rcap, 2);
	memcpy(sd->buf + sd->len + 4, &h, sizeof(h));
	memcpy(sd->buf + sd->len + 4 + sizeof(h), args, n);
	sd->len += 4 + h.len;
}

static void seed_write(const char *dir, const char *name, struct seed *sd,
		       uint8_t mode)
{
	char p[PATH_MAX];
	FILE *fp;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fp = fopen(p, "wb");
	assert_non_null(fp);
	fputc(mode, fp);
	fwrite(sd->buf, 1, sd->len, fp);
	fclose(fp);
	sd->len = 0;
}

static void test_write_corpus(void **state)
{
	const char *dir = getenv("KILN_FUSE_WRITE_CORPUS");
	struct seed *sd = calloc(1, sizeof(*sd));
	struct fuse_init_in init = {7, 31, 1 << 20, ~0u, 0, {0}};
	struct fuse_open_in open_in = {.flags = O_RDWR};
	struct fuse_read_in rd = {.fh = 1, .size = 4096};
	struct fuse_write_in wr = {.fh = 1, .size = 5};
	struct fuse_getattr_in ga = {0};
	struct fuse_setattr_in sa = {
		.valid = FATTR_SIZE | FATTR_MODE, .size = 3, .mode = 0600};
	struct fuse_mknod_in mk = {.mode = S_IFIFO | 0644};
	struct fuse_mkdir_in md = {.mode = 0755};
	struct fuse_create_in cr = {.flags = O_RDWR | O_CREAT, .mode = 0644};
	struct fuse_rename2_in rn = {.newdir = 1, .flags = RENAME_NOREPLACE};
	struct fuse_link_in ln = {.oldnodeid = 2};
	struct fuse_release_in rl = {.fh = 1};
	struct fuse_forget_in fg = {.nlookup = 1};
	struct {
		struct fuse_batch_forget_in in;
		struct fuse_forget_one one[2];
	} bf = {{2, 0}, {{2, 1}, {3, 5}}};
	struct fuse_fallocate_in fa = {.fh = 1, .length = 4096};
	struct fuse_lseek_in ls = {.fh = 1, .whence = SEEK_DATA};
	struct fuse_setxattr_in sx = {.size = 2};
	struct fuse_getxattr_in gx = {.size = 256};
	struct fuse_access_in ac = {.mask = R_OK};
	struct fuse_fsync_in fs = {.fh = 1};

	(void)state;
	if (!dir) {
		free(sd);
		skip();
		return;
	}
	/* The harness sends INIT itself; seeds start with their own ops.
	 * Its share holds: file (11 bytes), dir/, dir/inner, link -> file,
	 * abs -> /, fifo. */
	seed_add(sd, FUSE_INIT, 0, &init, sizeof(init), NULL, NULL, NULL, 0,
		 256);
	seed_write(dir, "init", sd, 0);
	seed_add(sd, FUSE_LOOKUP, 1, NULL, 0, "file", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_GETATTR, 2, &ga, sizeof(ga), NULL, NULL, NULL, 0,
		 256);
	seed_write(dir, "lookup_getattr", sd, 0);
	seed_add(sd, FUSE_LOOKUP, 1, NULL, 0, "file", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_OPEN, 2, &open_in, sizeof(open_in), NULL, NULL, NULL,
		 0, 64);
	seed_add(sd, FUSE_READ, 2, &rd, sizeof(rd), NULL, NULL, NULL, 0, 4096);
	seed_add(sd, FUSE_WRITE, 2, &wr, sizeof(wr), NULL, NULL, "hello", 5,
		 64);
	seed_add(sd, FUSE_FSYNC, 2, &fs, sizeof(fs), NULL, NULL, NULL, 0, 64);
	seed_add(sd, FUSE_FALLOCATE, 2, &fa, sizeof(fa), NULL, NULL, NULL, 0,
		 64);
	seed_add(sd, FUSE_LSEEK, 2, &ls, sizeof(ls), NULL, NULL, NULL, 0, 64);
	seed_add(sd, FUSE_RELEASE, 2, &rl, sizeof(rl), NULL, NULL, NULL, 0, 64);
	seed_write(dir, "open_read_write", sd, 0);
	seed_add(sd, FUSE_OPENDIR, 1, &open_in, sizeof(open_in), NULL, NULL,
		 NULL, 0, 64);
	seed_add(sd, FUSE_READDIR, 1, &rd, sizeof(rd), NULL, NULL, NULL, 0,
		 1024);
	seed_add(sd, FUSE_READDIRPLUS, 1, &rd, sizeof(rd), NULL, NULL, NULL, 0,
		 2048);
	seed_add(sd, FUSE_RELEASEDIR, 1, &rl, sizeof(rl), NULL, NULL, NULL, 0,
		 64);
	seed_write(dir, "readdir", sd, 1);
	seed_add(sd, FUSE_LOOKUP, 1, NULL, 0, "link", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_READLINK, 2, NULL, 0, NULL, NULL, NULL, 0, 256);
	seed_add(sd, FUSE_LOOKUP, 1, NULL, 0, "abs", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_LOOKUP, 3, NULL, 0, "etc", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_OPENDIR, 3, &open_in, sizeof(open_in), NULL, NULL,
		 NULL, 0, 64);
	seed_write(dir, "symlinks", sd, 0);
	seed_add(sd, FUSE_MKDIR, 1, &md, sizeof(md), "nd", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_CREATE, 2, &cr, sizeof(cr), "nf", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_SETATTR, 3, &sa, sizeof(sa), NULL, NULL, NULL, 0,
		 256);
	seed_add(sd, FUSE_SYMLINK, 2, NULL, 0, "sl", "../../etc", NULL, 0, 256);
	seed_add(sd, FUSE_MKNOD, 2, &mk, sizeof(mk), "ff", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_RENAME2, 2, &rn, sizeof(rn), "nf", "moved", NULL, 0,
		 64);
	seed_add(sd, FUSE_LINK, 1, &ln, sizeof(ln), "hard", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_UNLINK, 1, NULL, 0, "moved", NULL, NULL, 0, 64);
	seed_add(sd, FUSE_RMDIR, 1, NULL, 0, "nd", NULL, NULL, 0, 64);
	seed_write(dir, "mutate", sd, 0);
	seed_add(sd, FUSE_LOOKUP, 1, NULL, 0, "file", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_SETXATTR, 2, &sx, 8, "user.k", NULL, "v1", 2, 64);
	seed_add(sd, FUSE_GETXATTR, 2, &gx, sizeof(gx), "user.k", NULL, NULL, 0,
		 300);
	seed_add(sd, FUSE_LISTXATTR, 2, &gx, sizeof(gx), NULL, NULL, NULL, 0,
		 300);
	seed_add(sd, FUSE_REMOVEXATTR, 2, NULL, 0, "user.k", NULL, NULL, 0, 64);
	seed_add(sd, FUSE_ACCESS, 2, &ac, sizeof(ac), NULL, NULL, NULL, 0, 64);
	seed_add(sd, FUSE_STATFS, 1, NULL, 0, NULL, NULL, NULL, 0, 128);
	seed_write(dir, "xattr_misc", sd, 2);
	seed_add(sd, FUSE_LOOKUP, 1, NULL, 0, "file", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_LOOKUP, 1, NULL, 0, "dir", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_FORGET, 2, &fg, sizeof(fg), NULL, NULL, NULL, 0, 0);
	seed_add(sd, FUSE_BATCH_FORGET, 0, &bf, sizeof(bf), NULL, NULL, NULL, 0,
		 0);
	seed_add(sd, FUSE_FORGET, 1, &fg, sizeof(fg), NULL, NULL, NULL, 0, 0);
	seed_add(sd, FUSE_LOOKUP, 1, NULL, 0, "../../etc/passwd", NULL, NULL, 0,
		 256);
	seed_add(sd, FUSE_DESTROY, 0, NULL, 0, NULL, NULL, NULL, 0, 64);
	seed_write(dir, "forget_destroy", sd, 0);
	seed_add(sd, FUSE_LOOKUP, 1, NULL, 0, "fifo", NULL, NULL, 0, 256);
	seed_add(sd, FUSE_OPEN, 2, &open_in, sizeof(open_in), NULL, NULL, NULL,
		 0, 64);
	seed_add(sd, FUSE_GETLK, 2, &rd, sizeof(rd), NULL, NULL, NULL, 0, 64);
	seed_write(dir, "fifo_unknown", sd, 4);
	free(sd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test_setup_teardown(test_destroy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_opcodes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_getattr_statfs, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_setattr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_readlink, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_mknod, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mkdir_rmdir_unlink, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_read_write, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_limits, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fsync_flush, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_access, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fallocate_lseek, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_readdir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_opendir_handles, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_xattr, setup, teardown),
		cmocka_unit_test(test_xattr_disabled),
		cmocka_unit_test_setup_teardown(test_chain_segments, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flat_buffer, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test(test_write_corpus),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
