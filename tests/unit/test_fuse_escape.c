/* SPDX-License-Identifier: MIT */
/*
 * FUSE server escape suite: a hostile guest trying to reach host objects
 * outside the share, to open host devices, to crash the server or to make
 * it free what is still in use. docs/fs-escape-suite.md explains each case
 * and why it fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs/fuse_client.h"
#include "fs/fuse_server.h"
#include "fuse_test_util.h"

/* ---- fixture ---- */

struct fx {
	char dir[64];
	struct fuse_server *s;
	struct fuse_client c;
};

static struct fx *fx_new(const struct fuse_server_opts *opts)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/kiln-fuse-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(fuse_server_create(f->dir, opts, &test_log, &f->s), 0);
	assert_int_equal(fuse_client_open(&f->c, f->s), 0);
	assert_int_equal(fuse_client_init(&f->c, NULL), 0);
	return f;
}

static void fx_free(struct fx *f)
{
	fuse_client_close(&f->c);
	fuse_server_destroy(f->s);
	rm_rf(f->dir);
	free(f);
}

static int setup(void **state)
{
	struct fuse_server_opts o = {.xattr = true};

	*state = fx_new(&o);
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* ---- helpers ---- */

static void hpath(struct fx *f, const char *name, char *out)
{
	snprintf(out, PATH_MAX, "%s/%s", f->dir, name);
}

static void host_file(struct fx *f, const char *name, const char *data)
{
	char p[PATH_MAX];
	int fd;

	hpath(f, name, p);
	fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

static void host_mkdir(struct fx *f, const char *name)
{
	char p[PATH_MAX];

	hpath(f, name, p);
	assert_int_equal(mkdir(p, 0755), 0);
}

static void host_symlink(struct fx *f, const char *target, const char *name)
{
	char p[PATH_MAX];

	hpath(f, name, p);
	assert_int_equal(symlink(target, p), 0);
}

static bool host_exists(struct fx *f, const char *name)
{
	char p[PATH_MAX];
	struct stat st;

	hpath(f, name, p);
	return lstat(p, &st) == 0;
}

static uint64_t lookup(struct fx *f, uint64_t parent, const char *name)
{
	struct fuse_entry_out e;

	assert_int_equal(fuse_client_lookup(&f->c, parent, name, &e), 0);
	return e.nodeid;
}

static int call(struct fx *f, uint32_t op, uint64_t nodeid, const void *arg,
		size_t len, void *rbuf, size_t rcap, size_t *rlen)
{
	return fuse_client_call(&f->c, op, nodeid, arg, len, NULL, 0, rbuf,
				rcap, rlen);
}

static int call2(struct fx *f, uint32_t op, uint64_t nodeid, const void *fixed,
		 size_t flen, const char *s1, const char *s2, void *rbuf,
		 size_t rcap)
{
	static uint8_t buf[2 * 4200 + 256];
	size_t n = fuse_client_args(buf, sizeof(buf), fixed, flen, s1, s2);

	assert_true(n > 0);
	return call(f, op, nodeid, buf, n, rbuf, rcap, NULL);
}

static struct fuse_entry_out ent; /* scratch for replies we do not read */

static int do_mknod(struct fx *f, uint64_t parent, const char *name,
		    uint32_t mode)
{
	struct fuse_mknod_in in = {.mode = mode};

	return call2(f, FUSE_MKNOD, parent, &in, sizeof(in), name, NULL, &ent,
		     sizeof(ent));
}

static int do_symlink(struct fx *f, uint64_t parent, const char *name,
		      const char *target)
{
	return call2(f, FUSE_SYMLINK, parent, NULL, 0, name, target, &ent,
		     sizeof(ent));
}

static int do_link(struct fx *f, uint64_t old, uint64_t parent,
		   const char *name)
{
	struct fuse_link_in in = {.oldnodeid = old};

	return call2(f, FUSE_LINK, parent, &in, sizeof(in), name, NULL, &ent,
		     sizeof(ent));
}

static int do_rename2(struct fx *f, uint64_t odir, const char *o, uint64_t ndir,
		      const char *n, uint32_t flags)
{
	struct fuse_rename2_in in = {.newdir = ndir, .flags = flags};

	return call2(f, FUSE_RENAME2, odir, &in, sizeof(in), o, n, NULL, 0);
}

static int do_rename(struct fx *f, uint64_t odir, const char *o, uint64_t ndir,
		     const char *n)
{
	struct fuse_rename_in in = {.newdir = ndir};

	return call2(f, FUSE_RENAME, odir, &in, sizeof(in), o, n, NULL, 0);
}

static int do_open(struct fx *f, uint64_t ino, uint32_t flags, uint64_t *fh)
{
	return fuse_client_openfile(&f->c, ino, flags, fh);
}

static int do_create(struct fx *f, uint64_t parent, const char *name,
		     uint32_t flags, uint64_t *fh)
{
	return fuse_client_create(&f->c, parent, name, flags, 0644, NULL, fh);
}

/* Names listed by READDIR on nodeid dir, '\n'-joined; NULL if OPENDIR
 * failed (*err says why). */
static char *list_dir(struct fx *f, uint64_t dir, int *err)
{
	uint8_t buf[8192];
	char *names = calloc(1, 1 << 16);
	size_t nlen = 0;
	uint64_t fh, off = 0;

	assert_non_null(names);
	*err = fuse_client_opendir(&f->c, dir, &fh);
	if (*err) {
		free(names);
		return NULL;
	}
	for (;;) {
		struct fuse_read_in in = {
			.fh = fh, .offset = off, .size = sizeof(buf)};
		size_t got, pos = 0;

		*err = call(f, FUSE_READDIR, dir, &in, sizeof(in), buf,
			    sizeof(buf), &got);
		if (*err) { /* e.g. ENOENT from a deleted directory */
			assert_true(*err < 0);
			fuse_client_release(&f->c, dir, fh, 1);
			free(names);
			return NULL;
		}
		if (!got)
			break;
		while (pos < got) {
			struct fuse_dirent d;

			memcpy(&d, buf + pos, sizeof(d));
			assert_true(nlen + d.namelen + 2 < (1 << 16));
			memcpy(names + nlen, buf + pos + FUSE_NAME_OFFSET,
			       d.namelen);
			nlen += d.namelen;
			names[nlen++] = '\n';
			off = d.off;
			pos += FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + d.namelen);
		}
	}
	assert_int_equal(fuse_client_release(&f->c, dir, fh, 1), 0);
	return names;
}

static bool listed(const char *names, const char *name)
{
	char want[300];

	snprintf(want, sizeof(want), "\n%s\n", name);
	/* names starts without a '\n': compare the first one apart */
	return strstr(names, want + 1) == names || strstr(names, want);
}

static struct fuse_server_stats stats(struct fx *f)
{
	struct fuse_server_stats st;

	fuse_server_get_stats(f->s, &st);
	return st;
}

/* ---- symlinks ---- */

static void test_symlink_to_root(void **state)
{
	struct fx *f = *state;
	struct fuse_entry_out e;
	char buf[64];
	size_t got;
	uint64_t fh;

	host_symlink(f, "/", "root");
	assert_int_equal(fuse_client_lookup(&f->c, 1, "root", &e), 0);
	assert_true(S_ISLNK(e.attr.mode)); /* the link, not "/" */
	assert_int_equal(call(f, FUSE_READLINK, e.nodeid, NULL, 0, buf,
			      sizeof(buf), &got),
			 0);
	assert_int_equal(got, 1);
	assert_int_equal(buf[0], '/');
	/* nothing is looked up, opened or listed through it */
	assert_int_equal(fuse_client_lookup(&f->c, e.nodeid, "etc", &ent),
			 -ENOTDIR);
	assert_int_equal(fuse_client_lookup(&f->c, e.nodeid, "proc", &ent),
			 -ENOTDIR);
	assert_int_equal(fuse_client_opendir(&f->c, e.nodeid, &fh), -ENOTDIR);
	assert_int_equal(do_open(f, e.nodeid, O_RDONLY, &fh), -ELOOP);
	assert_int_equal(fuse_client_mkdir(&f->c, e.nodeid, "x", 0755, &ent),
			 -ENOTDIR);
	assert_int_equal(do_create(f, e.nodeid, "x", O_RDWR, &fh), -ENOTDIR);
	assert_int_equal(do_symlink(f, e.nodeid, "x", "y"), -ENOTDIR);
	assert_int_equal(do_rename2(f, 1, "root", e.nodeid, "x", 0), -ENOTDIR);
	assert_int_equal(stats(f).handles, 0);
}

static void test_absolute_symlinks(void **state)
{
	struct fx *f = *state;
	struct fuse_entry_out e;
	struct fuse_setattr_in sa = {.valid = FATTR_SIZE};
	struct fuse_attr_out ao;
	char buf[64];
	size_t got;
	uint64_t fh, dir;

	/* made by the guest */
	assert_int_equal(do_symlink(f, 1, "pw", "/etc/passwd"), 0);
	assert_int_equal(fuse_client_lookup(&f->c, 1, "pw", &e), 0);
	assert_true(S_ISLNK(e.attr.mode));
	assert_int_equal(e.attr.size, strlen("/etc/passwd"));
	assert_int_equal(call(f, FUSE_READLINK, e.nodeid, NULL, 0, buf,
			      sizeof(buf), &got),
			 0);
	assert_memory_equal(buf, "/etc/passwd", got);
	assert_int_equal(do_open(f, e.nodeid, O_RDONLY, &fh), -ELOOP);
	assert_int_equal(do_open(f, e.nodeid, O_WRONLY | O_TRUNC, &fh), -ELOOP);
	/* truncation, creation and xattrs through it do not follow it */
	assert_int_equal(call(f, FUSE_SETATTR, e.nodeid, &sa, sizeof(sa), &ao,
			      sizeof(ao), NULL),
			 -EINVAL);
	assert_int_equal(do_create(f, 1, "pw", O_WRONLY | O_TRUNC, &fh),
			 -ELOOP);
	/* made on the host, one level down, and relative with .. */
	host_mkdir(f, "d");
	host_symlink(f, "/etc", "d/etc");
	host_symlink(f, "../../../../../../etc", "d/rel");
	dir = lookup(f, 1, "d");
	assert_int_equal(
		fuse_client_lookup(&f->c, lookup(f, dir, "etc"), "passwd", &e),
		-ENOTDIR);
	assert_int_equal(
		fuse_client_lookup(&f->c, lookup(f, dir, "rel"), "passwd", &e),
		-ENOTDIR);
	/* /etc/passwd was never touched */
	assert_int_equal(stats(f).handles, 0);
}

/* ---- names ---- */

static void test_dotdot_names(void **state)
{
	struct fx *f = *state;
	const char *bad[] = {
		"../../etc/passwd", "..",	".", "", "a/b", "/",
		"/etc/passwd",	    "d/../../x"};
	uint64_t fh, file;

	host_mkdir(f, "d");
	host_file(f, "file", "x");
	file = lookup(f, 1, "file");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *n = bad[i];
		struct fuse_mkdir_in md = {.mode = 0755};

		assert_int_equal(fuse_client_lookup(&f->c, 1, n, &ent),
				 -EINVAL);
		assert_int_equal(call2(f, FUSE_MKDIR, 1, &md, sizeof(md), n,
				       NULL, &ent, sizeof(ent)),
				 -EINVAL);
		assert_int_equal(do_create(f, 1, n, O_RDWR, &fh), -EINVAL);
		assert_int_equal(do_mknod(f, 1, n, S_IFREG | 0644), -EINVAL);
		assert_int_equal(do_symlink(f, 1, n, "x"), -EINVAL);
		assert_int_equal(do_link(f, file, 1, n), -EINVAL);
		assert_int_equal(do_rename(f, 1, "file", 1, n), -EINVAL);
		assert_int_equal(do_rename(f, 1, n, 1, "z"), -EINVAL);
		if (n[0]) {
			assert_int_equal(call(f, FUSE_UNLINK, 1, n,
					      strlen(n) + 1, NULL, 0, NULL),
					 -EINVAL);
			assert_int_equal(call(f, FUSE_RMDIR, 1, n,
					      strlen(n) + 1, NULL, 0, NULL),
					 -EINVAL);
		}
	}
	/* an empty argument block, and a name without its NUL */
	assert_int_equal(
		call(f, FUSE_LOOKUP, 1, NULL, 0, &ent, sizeof(ent), NULL),
		-EINVAL);
	assert_int_equal(
		call(f, FUSE_LOOKUP, 1, "file", 4, &ent, sizeof(ent), NULL),
		-EINVAL);
	/* an embedded NUL ends the name: only "file" is ever used */
	assert_int_equal(call(f, FUSE_LOOKUP, 1, "file\0/../../etc", 16, &ent,
			      sizeof(ent), NULL),
			 0);
	assert_int_equal(ent.nodeid, file);
	/* nothing was created anywhere */
	assert_true(host_exists(f, "d"));
	assert_false(host_exists(f, "z"));
	assert_int_equal(stats(f).handles, 0);
}

static void test_long_names(void **state)
{
	struct fx *f = *state;
	static char n255[256], n256[257], n4096[4097], t4096[4097];
	struct fuse_mkdir_in md = {.mode = 0755};
	uint64_t fh, file;

	memset(n255, 'a', 255);
	memset(n256, 'b', 256);
	memset(n4096, 'c', 4096);
	memset(t4096, 'd', 4096);
	host_file(f, "file", "x");
	file = lookup(f, 1, "file");
	assert_int_equal(fuse_client_lookup(&f->c, 1, n255, &ent), -ENOENT);
	for (int i = 0; i < 2; i++) {
		const char *n = i ? n4096 : n256;

		assert_int_equal(fuse_client_lookup(&f->c, 1, n, &ent),
				 -ENAMETOOLONG);
		assert_int_equal(call2(f, FUSE_MKDIR, 1, &md, sizeof(md), n,
				       NULL, &ent, sizeof(ent)),
				 -ENAMETOOLONG);
		assert_int_equal(do_create(f, 1, n, O_RDWR, &fh),
				 -ENAMETOOLONG);
		assert_int_equal(do_mknod(f, 1, n, S_IFREG), -ENAMETOOLONG);
		assert_int_equal(do_symlink(f, 1, n, "x"), -ENAMETOOLONG);
		assert_int_equal(do_link(f, file, 1, n), -ENAMETOOLONG);
		assert_int_equal(do_rename(f, 1, "file", 1, n), -ENAMETOOLONG);
		assert_int_equal(call(f, FUSE_UNLINK, 1, n, strlen(n) + 1, NULL,
				      0, NULL),
				 -ENAMETOOLONG);
	}
	/* a 4096-byte name without a NUL is not a name at all */
	assert_int_equal(
		call(f, FUSE_LOOKUP, 1, n4096, 4096, &ent, sizeof(ent), NULL),
		-EINVAL);
	/* symlink targets: PATH_MAX including the NUL */
	assert_int_equal(do_symlink(f, 1, "t", t4096), -ENAMETOOLONG);
	t4096[4095] = 0;
	assert_int_equal(do_symlink(f, 1, "t", t4096), 0);
}

/* ---- objects outside the share ---- */

static void test_hardlink_outside(void **state)
{
	struct fx *f = *state;
	char out[64] = "/tmp/kiln-outside-XXXXXX", secret[PATH_MAX];
	const uint64_t guesses[] = {0,
				    2,
				    3,
				    4,
				    100,
				    (1ull << 32) | 1,
				    (1ull << 32) | 2,
				    0xffffffffull,
				    ~0ull};
	struct stat st;
	int fd;

	assert_non_null(mkdtemp(out));
	snprintf(secret, sizeof(secret), "%s/secret", out);
	fd = open(secret, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	/* the guest cannot get a nodeid for it: names do not leave the
	 * share, and nodeids are only what the server handed out */
	assert_int_equal(fuse_client_lookup(&f->c, 1, "..", &ent), -EINVAL);
	assert_int_equal(fuse_client_lookup(&f->c, 1, secret, &ent), -EINVAL);
	for (size_t i = 0; i < sizeof(guesses) / sizeof(guesses[0]); i++) {
		assert_int_equal(do_link(f, guesses[i], 1, "stolen"), -EBADF);
		assert_int_equal(fuse_client_getattr(&f->c, guesses[i], NULL),
				 -EBADF);
	}
	assert_false(host_exists(f, "stolen"));
	assert_int_equal(stat(secret, &st), 0);
	assert_int_equal(st.st_nlink, 1);
	rm_rf(out);
}

static void test_rename_out(void **state)
{
	struct fx *f = *state;
	char out[64] = "/tmp/kiln-outside-XXXXXX", p[PATH_MAX];
	struct stat st;

	assert_non_null(mkdtemp(out));
	host_file(f, "f", "data");
	host_mkdir(f, "d");
	snprintf(p, sizeof(p), "%s/escaped", out);
	assert_int_equal(do_rename(f, 1, "f", 1, p), -EINVAL);
	assert_int_equal(do_rename(f, 1, "f", 1, "../escaped"), -EINVAL);
	assert_int_equal(
		do_rename2(f, 1, "f", 1, "../../escaped", RENAME_NOREPLACE),
		-EINVAL);
	assert_int_equal(do_rename2(f, 1, "d", 1, "..", RENAME_EXCHANGE),
			 -EINVAL);
	/* a newdir the server never handed out */
	assert_int_equal(do_rename(f, 1, "f", 2, "x"), -EBADF);
	assert_int_equal(do_rename(f, 1, "f", (1ull << 32) | 1, "x"), -EBADF);
	assert_int_equal(do_rename(f, 1, "f", ~0ull, "x"), -EBADF);
	assert_true(host_exists(f, "f"));
	assert_int_equal(stat(p, &st), -1);
	/* moving a directory into itself is the host's EINVAL */
	assert_int_equal(do_rename(f, 1, "d", lookup(f, 1, "d"), "x"), -EINVAL);
	rm_rf(out);
}

/* After LOOKUP, the host replaces a directory by a symlink to "/": the
 * nodeid keeps naming the original directory (or nothing), never "/". */
static void test_dir_swapped_for_symlink(void **state)
{
	struct fx *f = *state;
	char a[PATH_MAX], b[PATH_MAX], *names;
	struct fuse_attr attr;
	struct fuse_entry_out e;
	uint64_t d, fnode, fh;
	char buf[16];
	int err;

	host_mkdir(f, "d");
	host_file(f, "d/inside", "x");
	host_file(f, "f", "orig");
	d = lookup(f, 1, "d");
	fnode = lookup(f, 1, "f");

	hpath(f, "d", a);
	hpath(f, "d.old", b);
	assert_int_equal(rename(a, b), 0);
	assert_int_equal(symlink("/", a), 0);
	hpath(f, "f", a);
	hpath(f, "f.old", b);
	assert_int_equal(rename(a, b), 0);
	assert_int_equal(symlink("/etc/passwd", a), 0);

	names = list_dir(f, d, &err);
	assert_non_null(names);
	assert_true(listed(names, "inside"));
	assert_false(listed(names, "etc"));
	assert_false(listed(names, "proc"));
	free(names);
	assert_int_equal(fuse_client_getattr(&f->c, d, &attr), 0);
	assert_true(S_ISDIR(attr.mode));
	assert_int_equal(fuse_client_lookup(&f->c, d, "etc", &e), -ENOENT);
	assert_int_equal(fuse_client_lookup(&f->c, d, "inside", &e), 0);
	/* the file nodeid still reads the original file */
	assert_int_equal(do_open(f, fnode, O_RDONLY, &fh), 0);
	assert_int_equal(
		fuse_client_read(&f->c, fnode, fh, 0, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "orig", 4);
	assert_int_equal(fuse_client_release(&f->c, fnode, fh, 0), 0);
	/* a fresh LOOKUP sees the symlink, as a symlink */
	assert_int_equal(fuse_client_lookup(&f->c, 1, "d", &e), 0);
	assert_true(S_ISLNK(e.attr.mode));
	assert_true(e.nodeid != d);

	/* the original directory deleted: empty or gone, never "/" */
	hpath(f, "d.old", a);
	rm_rf(a);
	names = list_dir(f, d, &err);
	if (names) {
		assert_false(listed(names, "etc"));
		assert_false(listed(names, "inside"));
		free(names);
	} else {
		assert_true(err < 0);
	}
	/* creating in the deleted directory fails on the host */
	assert_true(do_create(f, d, "new", O_RDWR, &fh) < 0);
}

/* ---- special files ---- */

static void test_special_files(void **state)
{
	struct fx *f = *state;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct fuse_setattr_in set = {.valid = FATTR_SIZE};
	struct fuse_getxattr_in gx = {.size = 64};
	struct fuse_attr_out ao;
	struct fuse_entry_out e;
	struct {
		const char *name;
		mode_t type;
		int open_err;
	} sp[3] = {{"sock", S_IFSOCK, -EACCES},
		   {"fifo", S_IFIFO, -EPERM},
		   {"null", S_IFCHR, -EACCES}};
	unsigned n = 2;
	char p[PATH_MAX], buf[64];
	size_t got;
	uint64_t fh;
	int s;

	s = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(s >= 0);
	hpath(f, "sock", sa.sun_path);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s, 1), 0);
	hpath(f, "fifo", p);
	assert_int_equal(mkfifo(p, 0666), 0);
	hpath(f, "null", p);
	if (mknod(p, S_IFCHR | 0666, makedev(1, 3)) == 0)
		n = 3; /* root: a real /dev/null twin */

	alarm(20); /* a blocking FIFO open would hang here */
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(fuse_client_lookup(&f->c, 1, sp[i].name, &e),
				 0);
		assert_int_equal(e.attr.mode & S_IFMT, sp[i].type);
		assert_int_equal(do_open(f, e.nodeid, O_RDONLY, &fh),
				 sp[i].open_err);
		assert_int_equal(do_open(f, e.nodeid, O_WRONLY, &fh),
				 sp[i].open_err);
		assert_int_equal(do_open(f, e.nodeid, O_RDWR | O_NONBLOCK, &fh),
				 sp[i].open_err);
		assert_int_equal(fuse_client_opendir(&f->c, e.nodeid, &fh),
				 -ENOTDIR);
		/* CREATE on the existing name opens nothing either */
		assert_int_equal(do_create(f, 1, sp[i].name, O_RDWR, &fh),
				 sp[i].open_err);
		set.valid = FATTR_SIZE;
		assert_int_equal(call(f, FUSE_SETATTR, e.nodeid, &set,
				      sizeof(set), &ao, sizeof(ao), NULL),
				 -EINVAL);
		/* their mode and owner are metadata: nothing is opened */
		set.valid = FATTR_MODE;
		set.mode = 0640;
		assert_int_equal(call(f, FUSE_SETATTR, e.nodeid, &set,
				      sizeof(set), &ao, sizeof(ao), NULL),
				 0);
		assert_int_equal(ao.attr.mode, sp[i].type | 0640);
		set.valid = FATTR_UID;
		set.uid = getuid();
		assert_int_equal(call(f, FUSE_SETATTR, e.nodeid, &set,
				      sizeof(set), &ao, sizeof(ao), NULL),
				 0);
		assert_int_equal(call2(f, FUSE_GETXATTR, e.nodeid, &gx,
				       sizeof(gx), "user.x", NULL, buf,
				       sizeof(buf)),
				 -ENODATA);
		assert_int_equal(call(f, FUSE_LISTXATTR, e.nodeid, &gx,
				      sizeof(gx), buf, sizeof(buf), &got),
				 0);
		assert_int_equal(got, 0);
		/* a guest MKNOD of the same kind makes one (mknodat under
		 * the parent's O_PATH fd), just as inert */
		snprintf(buf, sizeof(buf), "again-%s", sp[i].name);
		assert_int_equal(do_mknod(f, 1, buf, sp[i].type | 0666), 0);
		assert_int_equal(fuse_client_lookup(&f->c, 1, buf, &e), 0);
		assert_int_equal(e.attr.mode & S_IFMT, sp[i].type);
		assert_int_equal(do_open(f, e.nodeid, O_RDWR | O_NONBLOCK, &fh),
				 sp[i].open_err);
	}
	alarm(0);
	assert_int_equal(stats(f).handles, 0);
	close(s);
}

/* The nodev share option: no device node is made, and none in the share
 * can be chmod/chowned (opened up to other host users); fifos and sockets
 * are unaffected. */
static void test_nodev(void **state)
{
	struct fuse_server_opts o = {.no_dev = true};
	struct fuse_setattr_in set = {.valid = FATTR_MODE, .mode = 0666};
	struct fuse_attr_out ao;
	struct fuse_entry_out e;
	struct fx *f = fx_new(&o);
	char p[PATH_MAX];
	struct stat st;

	(void)state;
	assert_int_equal(do_mknod(f, 1, "chr", S_IFCHR | 0666), -EPERM);
	assert_int_equal(do_mknod(f, 1, "blk", S_IFBLK | 0666), -EPERM);
	hpath(f, "chr", p);
	assert_int_equal(lstat(p, &st), -1);
	hpath(f, "blk", p);
	assert_int_equal(lstat(p, &st), -1);
	assert_int_equal(do_mknod(f, 1, "fifo", S_IFIFO | 0666), 0);
	assert_int_equal(do_mknod(f, 1, "sock", S_IFSOCK | 0666), 0);
	hpath(f, "null", p);
	if (mknod(p, S_IFCHR | 0600, makedev(1, 3)) == 0) {
		/* root: a host device node already in the share */
		assert_int_equal(fuse_client_lookup(&f->c, 1, "null", &e), 0);
		assert_int_equal(call(f, FUSE_SETATTR, e.nodeid, &set,
				      sizeof(set), &ao, sizeof(ao), NULL),
				 -EPERM);
		set.valid = FATTR_UID;
		set.uid = 65534;
		assert_int_equal(call(f, FUSE_SETATTR, e.nodeid, &set,
				      sizeof(set), &ao, sizeof(ao), NULL),
				 -EPERM);
		assert_int_equal(lstat(p, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0600);
		assert_int_equal(st.st_uid, 0);
	}
	fx_free(f);
}

/* ---- malformed requests ---- */

static void expect_err(struct fx *f, const void *req, size_t len, size_t cap,
		       int err)
{
	static uint8_t out[4096];
	struct fuse_out_header oh;
	size_t out_len;

	memset(out, 0xa5, sizeof(out));
	assert_int_equal(
		fuse_server_handle_buf(f->s, req, len, out, cap, &out_len), 0);
	assert_int_equal(out_len, sizeof(oh));
	memcpy(&oh, out, sizeof(oh));
	assert_int_equal(oh.len, sizeof(oh));
	assert_int_equal(oh.error, err);
}

static void test_malformed_headers(void **state)
{
	struct fx *f = *state;
	uint8_t req[256] = {0}, out[256];
	struct fuse_in_header h = {
		.opcode = FUSE_GETATTR, .unique = 5, .nodeid = 1};
	size_t out_len;

	/* shorter than a header: dropped */
	memcpy(req, &h, sizeof(h));
	for (size_t l = 0; l < sizeof(h); l++) {
		assert_int_equal(fuse_server_handle_buf(f->s, req, l, out,
							sizeof(out), &out_len),
				 -EINVAL);
		assert_int_equal(out_len, 0);
	}
	/* len below the header, or past the buffer: EINVAL */
	h.len = 8;
	memcpy(req, &h, sizeof(h));
	expect_err(f, req, 56, sizeof(out), -EINVAL);
	h.len = 57;
	memcpy(req, &h, sizeof(h));
	expect_err(f, req, 56, sizeof(out), -EINVAL);
	h.len = 0xffffffff;
	memcpy(req, &h, sizeof(h));
	expect_err(f, req, 56, sizeof(out), -EINVAL);
	/* len short of the arguments */
	h.len = sizeof(h) + 15;
	memcpy(req, &h, sizeof(h));
	expect_err(f, req, 56, sizeof(out), -EINVAL);
	/* unknown opcode */
	h.len = 56;
	h.opcode = 0x7fff;
	memcpy(req, &h, sizeof(h));
	expect_err(f, req, 56, sizeof(out), -ENOSYS);
	/* no room for a reply header: dropped; for the body: EINVAL */
	h.opcode = FUSE_GETATTR;
	memcpy(req, &h, sizeof(h));
	assert_int_equal(
		fuse_server_handle_buf(f->s, req, 56, out, 15, &out_len),
		-EINVAL);
	assert_int_equal(out_len, 0);
	expect_err(f, req, 56, 16 + sizeof(struct fuse_attr_out) - 1, -EINVAL);
	/* FORGET never gets a reply, malformed or not */
	h.opcode = FUSE_FORGET;
	h.len = 8;
	memcpy(req, &h, sizeof(h));
	assert_int_equal(fuse_server_handle_buf(f->s, req, 56, out, sizeof(out),
						&out_len),
			 0);
	assert_int_equal(out_len, 0);
	/* the server still works */
	assert_int_equal(fuse_client_getattr(&f->c, 1, NULL), 0);
}

/* Every opcode with every argument length up to 160 bytes, zeros and
 * 0xff: each either answers with a well-formed reply or is a FORGET. */
static void test_truncated_args(void **state)
{
	struct fx *f = *state;
	static uint8_t req[512], out[8192];
	struct fuse_in_header h = {0};
	size_t out_len;

	host_file(f, "file", "content");
	lookup(f, 1, "file");
	for (uint32_t op = 1; op <= 52; op++) {
		if (op == FUSE_INIT || op == FUSE_DESTROY)
			continue; /* these reset the session: tested apart */
		for (int fill = 0; fill < 2; fill++) {
			for (size_t al = 0; al <= 160; al++) {
				struct fuse_out_header oh;
				int ret;

				h.len = (uint32_t)(sizeof(h) + al);
				h.opcode = op;
				h.unique = op * 1000 + al;
				h.nodeid = fill ? 2 : 1;
				memset(req, fill ? 0xff : 0, sizeof(req));
				memcpy(req, &h, sizeof(h));
				ret = fuse_server_handle_buf(f->s, req, h.len,
							     out, sizeof(out),
							     &out_len);
				assert_int_equal(ret, 0);
				if (op == FUSE_FORGET ||
				    op == FUSE_BATCH_FORGET) {
					assert_int_equal(out_len, 0);
					continue;
				}
				assert_true(out_len >= sizeof(oh));
				memcpy(&oh, out, sizeof(oh));
				assert_int_equal(oh.len, out_len);
				assert_int_equal(oh.unique, h.unique);
				assert_true(oh.error <= 0 && oh.error > -4096);
				if (oh.error)
					assert_int_equal(out_len, sizeof(oh));
			}
		}
	}
	/* the session survived */
	assert_int_equal(fuse_client_getattr(&f->c, 1, NULL), 0);
}

static void test_reply_too_small(void **state)
{
	struct fx *f = *state;
	struct fuse_server_stats before, after;
	struct fuse_create_in ci = {.flags = O_RDWR, .mode = 0644};
	uint8_t buf[64];

	host_file(f, "file", "x");
	before = stats(f);
	/* LOOKUP/CREATE whose entry would not fit: nothing is counted */
	assert_int_equal(call(f, FUSE_LOOKUP, 1, "file", 5, buf, 64, NULL),
			 -EINVAL);
	assert_int_equal(
		call2(f, FUSE_CREATE, 1, &ci, sizeof(ci), "new", NULL, buf, 64),
		-EINVAL);
	after = stats(f);
	assert_int_equal(after.inodes, before.inodes);
	assert_int_equal(after.handles, before.handles);
	assert_false(host_exists(f, "new"));
}

/* ---- lookup counts ---- */

static void test_forget_storm(void **state)
{
	struct fx *f = *state;
	struct {
		struct fuse_batch_forget_in in;
		struct fuse_forget_one one[4];
	} bf;
	uint64_t a, a2, g, fh;
	char buf[16];

	host_file(f, "a", "A");
	host_file(f, "g", "GGG");
	host_mkdir(f, "d");
	host_file(f, "d/child", "c");
	for (int i = 0; i < 3; i++)
		a = lookup(f, 1, "a");
	assert_int_equal(stats(f).inodes, 2);
	/* more than looked up: freed once, the rest ignored */
	assert_int_equal(fuse_client_forget(&f->c, a, 1000), 0);
	assert_int_equal(stats(f).inodes, 1);
	for (int i = 0; i < 100; i++)
		assert_int_equal(fuse_client_forget(&f->c, a, ~0ull), 0);
	assert_int_equal(fuse_client_getattr(&f->c, a, NULL), -EBADF);
	/* same slot, new generation: the stale id names nothing */
	a2 = lookup(f, 1, "a");
	assert_true(a2 != a);
	assert_int_equal(fuse_client_getattr(&f->c, a, NULL), -EBADF);
	assert_int_equal(fuse_client_getattr(&f->c, a2, NULL), 0);

	/* the root survives any number of forgets */
	for (int i = 0; i < 100; i++)
		assert_int_equal(fuse_client_forget(&f->c, 1, ~0ull), 0);
	assert_int_equal(fuse_client_getattr(&f->c, 1, NULL), 0);
	assert_true(lookup(f, 1, "g") != 0);

	/* an open handle keeps its inode alive */
	g = lookup(f, 1, "g");
	assert_int_equal(do_open(f, g, O_RDONLY, &fh), 0);
	assert_int_equal(fuse_client_forget(&f->c, g, ~0ull), 0);
	assert_int_equal(fuse_client_read(&f->c, g, fh, 0, buf, sizeof(buf)),
			 3);
	assert_int_equal(stats(f).inodes, 3);
	assert_int_equal(fuse_client_release(&f->c, g, fh, 0), 0);
	assert_int_equal(stats(f).inodes, 2);

	/* BATCH_FORGET claiming 4 billion entries, carrying four */
	memset(&bf, 0, sizeof(bf));
	bf.in.count = 0xffffffff;
	bf.one[0] = (struct fuse_forget_one){1, ~0ull};
	bf.one[1] = (struct fuse_forget_one){a2, 5};
	bf.one[2] = (struct fuse_forget_one){12345, 1};
	bf.one[3] = (struct fuse_forget_one){a, 1};
	assert_int_equal(
		call(f, FUSE_BATCH_FORGET, 0, &bf, sizeof(bf), NULL, 0, NULL),
		1);
	assert_int_equal(stats(f).inodes, 1);
	assert_int_equal(call(f, FUSE_BATCH_FORGET, 0, &bf, 3, NULL, 0, NULL),
			 1);
	/* everything still works */
	assert_true(lookup(f, lookup(f, 1, "d"), "child") != 0);
	assert_int_equal(fuse_client_getattr(&f->c, 1, NULL), 0);
}

static void test_nodeid_guessing(void **state)
{
	struct fx *f = *state;

	host_file(f, "a", "A");
	for (uint64_t id = 2; id < 300; id++)
		assert_int_equal(fuse_client_getattr(&f->c, id, NULL), -EBADF);
	assert_int_equal(fuse_client_getattr(&f->c, (1ull << 32) | 1, NULL),
			 -EBADF);
	assert_int_equal(fuse_client_getattr(&f->c, ~0ull, NULL), -EBADF);
	/* file handles alike */
	for (uint64_t fh = 0; fh < 100; fh++) {
		struct fuse_read_in in = {.fh = fh, .size = 16};
		char buf[16];

		assert_int_equal(call(f, FUSE_READ, 1, &in, sizeof(in), buf,
				      sizeof(buf), NULL),
				 -EBADF);
	}
}

/* ---- read-only share ---- */

static void test_read_only(void **state)
{
	struct fuse_server_opts o = {.read_only = true, .xattr = true};
	struct fx *f = fx_new(&o);
	struct fuse_setattr_in sa = {.valid = FATTR_MODE, .mode = 0777};
	struct fuse_mkdir_in md = {.mode = 0755};
	struct fuse_fallocate_in fa = {.length = 4096};
	struct fuse_setxattr_in sx = {.size = 1};
	struct fuse_access_in ac = {.mask = W_OK};
	struct fuse_attr_out ao;
	uint8_t buf[512];
	uint64_t file, dir, fh;
	size_t n;
	struct stat st;
	char p[PATH_MAX];

	(void)state;
	host_file(f, "file", "data");
	host_mkdir(f, "dir");
	host_file(f, "dir/c", "c");
	file = lookup(f, 1, "file");
	dir = lookup(f, 1, "dir");

	assert_int_equal(call(f, FUSE_SETATTR, file, &sa, sizeof(sa), &ao,
			      sizeof(ao), NULL),
			 -EROFS);
	assert_int_equal(do_symlink(f, 1, "l", "x"), -EROFS);
	assert_int_equal(do_mknod(f, 1, "n", S_IFREG | 0644), -EROFS);
	assert_int_equal(do_mknod(f, 1, "n", S_IFIFO | 0644), -EROFS);
	assert_int_equal(call2(f, FUSE_MKDIR, 1, &md, sizeof(md), "m", NULL,
			       &ent, sizeof(ent)),
			 -EROFS);
	assert_int_equal(call(f, FUSE_UNLINK, 1, "file", 5, NULL, 0, NULL),
			 -EROFS);
	assert_int_equal(call(f, FUSE_RMDIR, dir, "c", 2, NULL, 0, NULL),
			 -EROFS);
	assert_int_equal(call(f, FUSE_RMDIR, 1, "dir", 4, NULL, 0, NULL),
			 -EROFS);
	assert_int_equal(do_rename(f, 1, "file", 1, "moved"), -EROFS);
	assert_int_equal(do_rename2(f, 1, "file", 1, "dir", RENAME_EXCHANGE),
			 -EROFS);
	assert_int_equal(do_link(f, file, 1, "hard"), -EROFS);
	assert_int_equal(do_create(f, 1, "new", O_RDWR, &fh), -EROFS);
	assert_int_equal(do_create(f, 1, "file", O_RDONLY, &fh), -EROFS);
	assert_int_equal(do_open(f, file, O_WRONLY, &fh), -EROFS);
	assert_int_equal(do_open(f, file, O_RDWR, &fh), -EROFS);
	assert_int_equal(do_open(f, file, O_RDONLY | O_TRUNC, &fh), -EROFS);
	assert_int_equal(
		call(f, FUSE_ACCESS, file, &ac, sizeof(ac), NULL, 0, NULL),
		-EROFS);
	n = fuse_client_args(buf, sizeof(buf), &sx, 8, "user.a", NULL);
	buf[n] = 'v';
	assert_int_equal(
		call(f, FUSE_SETXATTR, file, buf, n + 1, NULL, 0, NULL),
		-EROFS);
	assert_int_equal(
		call(f, FUSE_REMOVEXATTR, file, "user.a", 7, NULL, 0, NULL),
		-EROFS);
	/* reading works; the read-only handle cannot write or allocate */
	assert_int_equal(do_open(f, file, O_RDONLY, &fh), 0);
	assert_int_equal(fuse_client_read(&f->c, file, fh, 0, buf, 4), 4);
	assert_int_equal(fuse_client_write(&f->c, file, fh, 0, "x", 1), -EROFS);
	fa.fh = fh;
	assert_int_equal(
		call(f, FUSE_FALLOCATE, file, &fa, sizeof(fa), NULL, 0, NULL),
		-EROFS);
	assert_int_equal(fuse_client_release(&f->c, file, fh, 0), 0);
	ac.mask = R_OK;
	assert_int_equal(
		call(f, FUSE_ACCESS, file, &ac, sizeof(ac), NULL, 0, NULL), 0);
	/* the host is as it was */
	hpath(f, "file", p);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 4);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_false(host_exists(f, "new"));
	assert_false(host_exists(f, "moved"));
	assert_false(host_exists(f, "hard"));
	assert_true(host_exists(f, "dir/c"));
	fx_free(f);
}

/* ---- limits ---- */

static void test_limits(void **state)
{
	struct fuse_server_opts o = {.max_inodes = 4, .max_handles = 2};
	struct fx *f = fx_new(&o);
	uint64_t a, b, fh1, fh2, fh3;
	unsigned logs;

	(void)state;
	host_file(f, "a", "A");
	host_file(f, "b", "B");
	host_file(f, "c", "C");
	host_file(f, "d", "D");
	a = lookup(f, 1, "a");
	b = lookup(f, 1, "b");
	lookup(f, 1, "c");
	logs = n_logs;
	assert_int_equal(fuse_client_lookup(&f->c, 1, "d", &ent), -ENFILE);
	assert_true(n_logs > logs);
	assert_non_null(strstr(last_log, "inode limit"));
	/* once per episode: a guest cannot flood the log */
	logs = n_logs;
	for (int i = 0; i < 50; i++)
		assert_int_equal(fuse_client_lookup(&f->c, 1, "d", &ent),
				 -ENFILE);
	assert_int_equal(n_logs, logs);
	/* known objects still resolve; forgetting makes room */
	assert_int_equal(lookup(f, 1, "a"), a);
	assert_int_equal(fuse_client_forget(&f->c, b, 1), 0);
	lookup(f, 1, "d");
	/* READDIRPLUS at the limit: entries without nodeids, no failure */
	{
		struct fuse_read_in in = {.size = 4096};
		uint8_t buf[4096];
		size_t got;

		assert_int_equal(fuse_client_opendir(&f->c, 1, &in.fh), 0);
		assert_int_equal(call(f, FUSE_READDIRPLUS, 1, &in, sizeof(in),
				      buf, sizeof(buf), &got),
				 0);
		assert_true(got > 0);
		assert_int_equal(fuse_client_release(&f->c, 1, in.fh, 1), 0);
	}

	/* handles */
	assert_int_equal(do_open(f, a, O_RDONLY, &fh1), 0);
	assert_int_equal(do_open(f, a, O_RDONLY, &fh2), 0);
	logs = n_logs;
	assert_int_equal(do_open(f, a, O_RDONLY, &fh3), -ENFILE);
	assert_int_equal(fuse_client_opendir(&f->c, 1, &fh3), -ENFILE);
	assert_true(n_logs > logs);
	assert_non_null(strstr(last_log, "handle limit"));
	assert_int_equal(fuse_client_release(&f->c, a, fh1, 0), 0);
	assert_int_equal(do_open(f, a, O_RDONLY, &fh1), 0);
	assert_int_equal(stats(f).handles, 2);
	/* CREATE at the handle limit leaves no lookup behind (d: LOOKUP,
	 * READDIRPLUS and this one) */
	assert_int_equal(fuse_client_forget(&f->c, lookup(f, 1, "d"), 3), 0);
	assert_int_equal(stats(f).inodes, 3);
	assert_int_equal(do_create(f, 1, "e", O_RDWR, &fh3), -ENFILE);
	assert_int_equal(stats(f).inodes, 3);
	fx_free(f);
}

/* ---- xattr namespaces ---- */

static void test_xattr_namespaces(void **state)
{
	struct fx *f = *state;
	struct fuse_setxattr_in sx = {.size = 4};
	struct fuse_getxattr_in gx = {.size = 256};
	uint8_t buf[512];
	char p[PATH_MAX];
	uint64_t file;
	size_t n, got;

	host_file(f, "bin", "x");
	file = lookup(f, 1, "bin");
	hpath(f, "bin", p);
	if (setxattr(p, "trusted.secret", "s3cr", 4, 0) < 0) {
		skip(); /* not root, or no trusted xattrs here */
		return;
	}
	const char *names[] = {"security.capability", "trusted.overlay.opaque",
			       "system.posix_acl_access", "trusted.secret"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		n = fuse_client_args(buf, sizeof(buf), &sx, 8, names[i], NULL);
		memcpy(buf + n, "AAAA", 4);
		assert_int_equal(
			call(f, FUSE_SETXATTR, file, buf, n + 4, NULL, 0, NULL),
			-EOPNOTSUPP);
		assert_int_equal(call2(f, FUSE_GETXATTR, file, &gx, sizeof(gx),
				       names[i], NULL, buf, sizeof(buf)),
				 -EOPNOTSUPP);
		assert_int_equal(call(f, FUSE_REMOVEXATTR, file, names[i],
				      strlen(names[i]) + 1, NULL, 0, NULL),
				 -EOPNOTSUPP);
	}
	/* not even listed */
	assert_int_equal(call(f, FUSE_LISTXATTR, file, &gx, sizeof(gx), buf,
			      sizeof(buf), &got),
			 0);
	assert_int_equal(got, 0);
	assert_int_equal(getxattr(p, "trusted.secret", buf, sizeof(buf)), 4);
	assert_int_equal(getxattr(p, "security.capability", buf, sizeof(buf)),
			 -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_symlink_to_root, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_absolute_symlinks, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dotdot_names, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_long_names, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hardlink_outside, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rename_out, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dir_swapped_for_symlink,
						setup, teardown),
		cmocka_unit_test(test_nodev),
		cmocka_unit_test_setup_teardown(test_special_files, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_malformed_headers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_truncated_args, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reply_too_small, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_forget_storm, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_nodeid_guessing, setup,
						teardown),
		cmocka_unit_test(test_read_only),
		cmocka_unit_test(test_limits),
		cmocka_unit_test_setup_teardown(test_xattr_namespaces, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
