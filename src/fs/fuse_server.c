/* SPDX-License-Identifier: MIT */
#include "fuse_server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fuse.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fs_table.h"

#define IN_HDR	  sizeof(struct fuse_in_header)
#define OUT_HDR	  sizeof(struct fuse_out_header)
#define MIN_MINOR 27 /* the oldest client whose struct sizes we speak */

#define XATTR_VALUE_MAX 65536 /* XATTR_SIZE_MAX */
#define XATTR_NAMELEN	255   /* XATTR_NAME_MAX */
#define XATTR_PREFIX	"user."
/* Largest argument block (all but WRITE data): SETXATTR's. */
#define ARGS_MAX   (16 + XATTR_NAMELEN + 1 + XATTR_VALUE_MAX)
#define ARGS_STACK (PATH_MAX + 2 * (NAME_MAX + 1) + 64)
#define IOV_SLICE  VIRTQ_MAX_SEGS /* a chain never has more segments */

#define PROC_SUPER_MAGIC 0x9fa0
#define TIMEOUT_S	 1 /* entry/attr cache: the host may change things */

struct fuse_server {
	struct fuse_server_opts opts;
	const struct kiln_log *log;
	struct fs_table t;
	int proc_fd; /* /proc/self/fd: reopens an O_PATH fd's exact object */
	bool chown_new;
	gid_t egid;
	atomic_bool initialized;
	atomic_bool have_openat2;
	atomic_bool fd_limit_logged;
};

/* A request's two sides, as iovecs that are valid for their lengths. */
struct iov_view {
	const struct iovec *iov;
	unsigned n;
	size_t len;
};

struct req {
	struct fuse_server *s;
	const struct iov_view *rd, *wr;
	struct fuse_in_header h;
	const uint8_t *arg; /* private copy of the arguments */
	size_t arg_len, pos;
	uint32_t written;
};

/* ---- guest buffers ---- */

static size_t view_copy(const struct iov_view *v, size_t off, void *buf,
			size_t len, bool to_view)
{
	size_t done = 0;

	for (unsigned i = 0; i < v->n && done < len; i++) {
		size_t seg = v->iov[i].iov_len, n;
		uint8_t *p = v->iov[i].iov_base;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		n = seg - off;
		if (n > len - done)
			n = len - done;
		if (to_view)
			memcpy(p + off, (const uint8_t *)buf + done, n);
		else
			memcpy((uint8_t *)buf + done, p + off, n);
		done += n;
		off = 0;
	}
	return done;
}

/* The segments covering [off, off + len) of v, at most max of them. */
static int view_slice(const struct iov_view *v, size_t off, size_t len,
		      struct iovec *iov, int max)
{
	int cnt = 0;

	for (unsigned i = 0; i < v->n && len && cnt < max; i++) {
		size_t seg = v->iov[i].iov_len, n;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		n = seg - off < len ? seg - off : len;
		iov[cnt].iov_base = (uint8_t *)v->iov[i].iov_base + off;
		iov[cnt].iov_len = n;
		cnt++;
		len -= n;
		off = 0;
	}
	return cnt;
}

static size_t room(const struct req *r)
{
	return r->wr->len - OUT_HDR; /* dispatch checked len >= OUT_HDR */
}

/* Writes the reply header and body; -ERANGE if the body does not fit. */
static int reply(struct req *r, const void *body, size_t len)
{
	struct fuse_out_header oh = {
		.len = (uint32_t)(OUT_HDR + len),
		.error = 0,
		.unique = r->h.unique,
	};

	if (len > room(r))
		return -ERANGE;
	view_copy(r->wr, OUT_HDR, (void *)body, len, true);
	view_copy(r->wr, 0, &oh, OUT_HDR, true);
	r->written = oh.len;
	return 0;
}

static void reply_err(struct req *r, int err)
{
	struct fuse_out_header oh = {
		.len = OUT_HDR,
		.error = err,
		.unique = r->h.unique,
	};

	if (err >= 0 || err < -4095)
		oh.error = -EIO;
	view_copy(r->wr, 0, &oh, OUT_HDR, true);
	r->written = OUT_HDR;
}

/* ---- argument parsing (on the private copy) ---- */

static int take(struct req *r, void *dst, size_t len)
{
	if (r->arg_len - r->pos < len)
		return -EINVAL;
	memcpy(dst, r->arg + r->pos, len);
	r->pos += len;
	return 0;
}

/* A NUL-terminated string that must end inside the arguments. */
static int take_str(struct req *r, const char **str, size_t *len)
{
	const char *p = (const char *)r->arg + r->pos;
	const char *nul = memchr(p, 0, r->arg_len - r->pos);

	if (!nul)
		return -EINVAL;
	*str = p;
	*len = (size_t)(nul - p);
	r->pos += *len + 1;
	return 0;
}

/* One path component: never empty, ".", ".." or containing '/'. */
static int take_name(struct req *r, const char **name)
{
	size_t len;
	int err = take_str(r, name, &len);

	if (err < 0)
		return err;
	if (len > NAME_MAX)
		return -ENAMETOOLONG;
	if (len == 0 || strchr(*name, '/') || !strcmp(*name, ".") ||
	    !strcmp(*name, ".."))
		return -EINVAL;
	return 0;
}

/* Xattr names: only the user namespace. security.capability on a host
 * binary, trusted.overlay.* or ACLs would reach beyond the share's data. */
static int take_xattr_name(struct req *r, const char **name)
{
	size_t len;
	int err = take_str(r, name, &len);

	if (err < 0)
		return err;
	if (len > XATTR_NAMELEN)
		return -ERANGE;
	if (len <= strlen(XATTR_PREFIX) ||
	    strncmp(*name, XATTR_PREFIX, strlen(XATTR_PREFIX)))
		return -EOPNOTSUPP;
	return 0;
}

/* ---- host helpers ---- */

static int host_err(struct fuse_server *s, int e)
{
	if (e == EMFILE || e == ENFILE) {
		if (!atomic_exchange(&s->fd_limit_logged, true))
			log_warn(s->log, "fuse: out of file descriptors; raise "
					 "RLIMIT_NOFILE or lower max_inodes");
		return -ENFILE;
	}
	return e > 0 ? -e : -EIO;
}

static void proc_name(char buf[16], int fd)
{
	snprintf(buf, 16, "%d", fd);
}

/* Opens one validated component under dirfd without following any
 * symlink, and without leaving dirfd even if name were a path. */
static int open_at(struct fuse_server *s, int dirfd, const char *name,
		   int flags, mode_t mode)
{
	int fd;

	flags |= O_NOFOLLOW | O_CLOEXEC;
	if (atomic_load_explicit(&s->have_openat2, memory_order_relaxed)) {
		struct open_how how = {
			.flags = (uint64_t)flags,
			.mode = (flags & O_CREAT) ? mode : 0,
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
				   RESOLVE_NO_SYMLINKS,
		};

		fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
		if (fd >= 0)
			return fd;
		if (errno != ENOSYS)
			return host_err(s, errno);
		atomic_store(&s->have_openat2, false);
		log_info(s->log, "fuse: no openat2, using openat(O_NOFOLLOW) "
				 "on single components");
	}
	fd = openat(dirfd, name, flags, mode);
	return fd < 0 ? host_err(s, errno) : fd;
}

/* Why a non-regular, non-directory object is not opened for I/O. */
static int special_err(mode_t type)
{
	switch (type) {
	case S_IFLNK: return -ELOOP;
	case S_IFIFO: return -EPERM; /* opening would block the device */
	default: return -EACCES;     /* devices, sockets: never opened */
	}
}

/* Opens the inode's own object for I/O: directories through "." of their
 * O_PATH fd, regular files through /proc/self/fd/N, whose magic link leads
 * to that exact object (no path is walked again). Nothing else. */
static int reopen(struct fuse_server *s, const struct fs_inode *ino, int flags)
{
	struct stat st;
	char name[16];
	int fd;

	if (S_ISDIR(ino->type)) {
		fd = openat(ino->fd, ".", flags | O_DIRECTORY | O_CLOEXEC);
	} else if (S_ISREG(ino->type)) {
		proc_name(name, ino->fd);
		fd = openat(s->proc_fd, name, flags | O_CLOEXEC | O_NOCTTY);
	} else {
		return special_err(ino->type);
	}
	if (fd < 0)
		return host_err(s, errno);
	/* cheap belt and braces: it must be the object we looked up */
	if (fstat(fd, &st) < 0 || st.st_dev != ino->dev ||
	    st.st_ino != ino->ino) {
		close(fd);
		log_error(s->log,
			  "fuse: reopen of inode %llu gave another "
			  "object",
			  (unsigned long long)ino->nodeid);
		return -EIO;
	}
	return fd;
}

/* Guest open flags -> host flags: access mode plus a few harmless bits;
 * never O_CREAT, O_PATH, O_TMPFILE, O_DIRECT or O_NOATIME. */
static int open_flags(uint32_t gf, int *out)
{
	int acc = (int)gf & O_ACCMODE;

	if (acc == O_ACCMODE)
		return -EINVAL;
	*out = acc | ((int)gf & (O_APPEND | O_TRUNC | O_SYNC | O_DSYNC));
	return 0;
}

static uint32_t encode_dev(dev_t d)
{
	/* the kernel's new_encode_dev(), what fuse_attr.rdev carries */
	uint32_t ma = major(d), mi = minor(d);

	return (mi & 0xff) | (ma & 0xfff) << 8 | (mi & ~0xffu) << 12;
}

static void fill_attr(struct fuse_attr *a, const struct stat *st)
{
	memset(a, 0, sizeof(*a));
	a->ino = st->st_ino;
	a->size = (uint64_t)st->st_size;
	a->blocks = (uint64_t)st->st_blocks;
	a->atime = (uint64_t)st->st_atim.tv_sec;
	a->mtime = (uint64_t)st->st_mtim.tv_sec;
	a->ctime = (uint64_t)st->st_ctim.tv_sec;
	a->atimensec = (uint32_t)st->st_atim.tv_nsec;
	a->mtimensec = (uint32_t)st->st_mtim.tv_nsec;
	a->ctimensec = (uint32_t)st->st_ctim.tv_nsec;
	a->mode = st->st_mode;
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->rdev = encode_dev(st->st_rdev);
	a->blksize = (uint32_t)st->st_blksize;
}

static void fill_entry(struct fuse_entry_out *e, const struct fs_inode *ino,
		       const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->nodeid = ino->nodeid;
	e->entry_valid = TIMEOUT_S;
	e->attr_valid = TIMEOUT_S;
	fill_attr(&e->attr, st);
}

/* Publishes an O_PATH fd (consumed) as a guest lookup; st is its fstat or
 * NULL; *out (optional) gets the inode with a reference. */
static int publish(struct fuse_server *s, int fd, const struct stat *st,
		   struct fuse_entry_out *e, struct fs_inode **out)
{
	struct fs_inode *ino;
	struct stat tmp;
	int err;

	if (!st) {
		if (fstat(fd, &tmp) < 0) {
			err = host_err(s, errno);
			close(fd);
			return err;
		}
		st = &tmp;
	}
	err = fs_inode_publish(&s->t, fd, st, &ino);
	if (err < 0)
		return err;
	fill_entry(e, ino, st);
	if (out)
		*out = ino;
	else
		fs_inode_put(&s->t, ino);
	return 0;
}

static int lookup_name(struct fuse_server *s, struct fs_inode *dir,
		       const char *name, struct fuse_entry_out *e,
		       struct fs_inode **out)
{
	int fd;

	if (!S_ISDIR(dir->type))
		return -ENOTDIR;
	fd = open_at(s, dir->fd, name, O_PATH, 0);
	if (fd < 0)
		return fd;
	return publish(s, fd, NULL, e, out);
}

/* After creating name in dir: the host umask may have dropped mode bits the
 * guest asked for, and a root server gives the object the caller's owner.
 * Best effort; the reply shows the result. */
static void fix_new(struct req *r, int fd, struct stat *st, mode_t mode)
{
	struct fuse_server *s = r->s;
	mode_t missing = mode & 07777 & ~st->st_mode;
	bool changed = false;
	char name[16];

	if (missing && !S_ISLNK(st->st_mode)) {
		proc_name(name, fd);
		changed |= !fchmodat(s->proc_fd, name,
				     (st->st_mode | missing) & 07777, 0);
	}
	if (s->chown_new) {
		uid_t uid = r->h.uid != st->st_uid ? r->h.uid : (uid_t)-1;
		/* a gid other than ours came from a setgid parent: keep it */
		gid_t gid = st->st_gid == s->egid && r->h.gid != st->st_gid
				    ? r->h.gid
				    : (gid_t)-1;

		if (uid != (uid_t)-1 || gid != (gid_t)-1)
			changed |=
				!fchownat(fd, "", uid, gid,
					  AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
	}
	if (changed)
		fstat(fd, st);
}

/* Looks up what MKNOD/MKDIR/SYMLINK just made and replies with its entry. */
static int finish_new(struct req *r, struct fs_inode *dir, const char *name,
		      mode_t type, mode_t mode)
{
	struct fuse_entry_out e;
	struct stat st;
	int fd, err;

	fd = open_at(r->s, dir->fd, name, O_PATH, 0);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || (st.st_mode & S_IFMT) != type) {
		close(fd); /* replaced under us: report nothing stale */
		return -EIO;
	}
	fix_new(r, fd, &st, mode);
	err = publish(r->s, fd, &st, &e, NULL);
	return err < 0 ? err : reply(r, &e, sizeof(e));
}

/* The request's nodeid, which must be a directory. */
static int get_dir(struct req *r, struct fs_inode **dir)
{
	int err = fs_inode_get(&r->s->t, r->h.nodeid, dir);

	if (err < 0)
		return err;
	if (!S_ISDIR((*dir)->type)) {
		fs_inode_put(&r->s->t, *dir);
		*dir = NULL;
		return -ENOTDIR;
	}
	return 0;
}

/* A handle of the request's own nodeid (the kernel always sends both). */
static int get_handle(struct req *r, uint64_t fh, bool dir,
		      struct fs_handle **out)
{
	int err = fs_handle_get(&r->s->t, fh, out);

	if (err < 0)
		return err;
	if ((*out)->inode->nodeid != r->h.nodeid)
		err = -EBADF;
	else if ((*out)->dir != dir)
		err = dir ? -ENOTDIR : -EISDIR;
	if (err < 0) {
		fs_handle_put(&r->s->t, *out);
		*out = NULL;
	}
	return err;
}

/* ---- opcodes ---- */

static int op_init(struct req *r)
{
	struct fuse_server *s = r->s;
	struct fuse_init_in in = {0};
	struct fuse_init_out out = {0};
	const uint32_t want = FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC |
			      FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS |
			      FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS |
			      FUSE_AUTO_INVAL_DATA | FUSE_MAX_PAGES;

	memcpy(&in, r->arg, r->arg_len < sizeof(in) ? r->arg_len : sizeof(in));
	out.major = FUSE_SERVER_MAJOR;
	out.minor = FUSE_SERVER_MINOR;
	if (in.major > FUSE_SERVER_MAJOR)
		return reply(r, &out, sizeof(out)); /* client retries with 7 */
	if (in.major < FUSE_SERVER_MAJOR || in.minor < MIN_MINOR) {
		log_warn(s->log, "fuse: client protocol %u.%u unsupported",
			 in.major, in.minor);
		return -EPROTO;
	}
	if (atomic_load(&s->initialized)) {
		log_info(s->log, "fuse: INIT again, dropping the old session");
		fs_table_reset(&s->t);
	}
	out.flags = in.flags & want;
	out.max_readahead = in.max_readahead < FUSE_SERVER_MAX_WRITE
				    ? in.max_readahead
				    : FUSE_SERVER_MAX_WRITE;
	out.max_background = 64;
	out.congestion_threshold = 48;
	out.max_write = FUSE_SERVER_MAX_WRITE;
	out.time_gran = 1;
	out.max_pages = FUSE_SERVER_MAX_PAGES;
	atomic_store(&s->initialized, true);
	log_debug(s->log, "fuse: client %u.%u, flags %#x", in.major, in.minor,
		  out.flags);
	return reply(r, &out, sizeof(out));
}

static int op_destroy(struct req *r)
{
	fs_table_reset(&r->s->t);
	atomic_store(&r->s->initialized, false);
	return reply(r, NULL, 0);
}

static int op_lookup(struct req *r)
{
	struct fuse_entry_out e;
	struct fs_inode *dir;
	const char *name;
	int err;

	if ((err = take_name(r, &name)) < 0 ||
	    (err = fs_inode_get(&r->s->t, r->h.nodeid, &dir)) < 0)
		return err;
	err = lookup_name(r->s, dir, name, &e, NULL);
	fs_inode_put(&r->s->t, dir);
	return err < 0 ? err : reply(r, &e, sizeof(e));
}

static int op_getattr(struct req *r)
{
	struct fuse_attr_out out = {.attr_valid = TIMEOUT_S};
	struct fs_inode *ino;
	struct stat st;
	int err;

	if ((err = fs_inode_get(&r->s->t, r->h.nodeid, &ino)) < 0)
		return err;
	err = fstat(ino->fd, &st) < 0 ? host_err(r->s, errno) : 0;
	fs_inode_put(&r->s->t, ino);
	if (err < 0)
		return err;
	fill_attr(&out.attr, &st);
	return reply(r, &out, sizeof(out));
}

static int set_times(struct fuse_server *s, struct fs_inode *ino,
		     const struct fuse_setattr_in *in)
{
	struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
	char name[16];

	if (in->valid & FATTR_ATIME_NOW) {
		ts[0].tv_nsec = UTIME_NOW;
	} else if (in->valid & FATTR_ATIME) {
		if (in->atimensec >= 1000000000)
			return -EINVAL;
		ts[0].tv_sec = (time_t)in->atime;
		ts[0].tv_nsec = in->atimensec;
	}
	if (in->valid & FATTR_MTIME_NOW) {
		ts[1].tv_nsec = UTIME_NOW;
	} else if (in->valid & FATTR_MTIME) {
		if (in->mtimensec >= 1000000000)
			return -EINVAL;
		ts[1].tv_sec = (time_t)in->mtime;
		ts[1].tv_nsec = in->mtimensec;
	}
	if (S_ISLNK(ino->type)) {
		/* the link itself; /proc would not name it for utimensat */
		if (utimensat(ino->fd, "", ts,
			      AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return errno == EINVAL ? -EPERM : host_err(s, errno);
		return 0;
	}
	proc_name(name, ino->fd);
	return utimensat(s->proc_fd, name, ts, 0) < 0 ? host_err(s, errno) : 0;
}

static int set_size(struct req *r, struct fs_inode *ino,
		    const struct fuse_setattr_in *in)
{
	struct fs_handle *h = NULL;
	int fd, err = 0;

	if (in->size > INT64_MAX)
		return -EINVAL;
	if (!S_ISREG(ino->type))
		return S_ISDIR(ino->type) ? -EISDIR : -EINVAL;
	/* ftruncate on an open file works whatever its mode is now */
	if ((in->valid & FATTR_FH) && !fs_handle_get(&r->s->t, in->fh, &h) &&
	    h->inode == ino && !h->dir) {
		fd = h->fd;
	} else {
		fs_handle_put(&r->s->t, h);
		h = NULL;
		fd = reopen(r->s, ino, O_WRONLY);
		if (fd < 0)
			return fd;
	}
	if (ftruncate(fd, (off_t)in->size) < 0)
		err = host_err(r->s, errno);
	if (h)
		fs_handle_put(&r->s->t, h);
	else
		close(fd);
	return err;
}

static int op_setattr(struct req *r)
{
	struct fuse_server *s = r->s;
	struct fuse_setattr_in in;
	struct fuse_attr_out out = {.attr_valid = TIMEOUT_S};
	struct fs_inode *ino;
	struct stat st;
	char name[16];
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0 ||
	    (err = fs_inode_get(&s->t, r->h.nodeid, &ino)) < 0)
		return err;
	proc_name(name, ino->fd);
	/* nodev: the guest may not open up a device node to other host users
	 * by its mode or owner either */
	if ((in.valid & (FATTR_MODE | FATTR_UID | FATTR_GID)) &&
	    s->opts.no_dev && (S_ISCHR(ino->type) || S_ISBLK(ino->type)))
		err = -EPERM;
	if (!err && (in.valid & FATTR_MODE)) {
		if (S_ISLNK(ino->type))
			err = -EOPNOTSUPP; /* Linux has no symlink modes */
		else if (fchmodat(s->proc_fd, name, in.mode & 07777, 0) < 0)
			err = host_err(s, errno);
	}
	if (!err && (in.valid & (FATTR_UID | FATTR_GID))) {
		uid_t uid = (in.valid & FATTR_UID) ? in.uid : (uid_t)-1;
		gid_t gid = (in.valid & FATTR_GID) ? in.gid : (gid_t)-1;

		if (fchownat(ino->fd, "", uid, gid,
			     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			err = host_err(s, errno);
	}
	if (!err && (in.valid & FATTR_SIZE))
		err = set_size(r, ino, &in);
	if (!err && (in.valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW |
				 FATTR_MTIME_NOW)))
		err = set_times(s, ino, &in);
	if (!err && fstat(ino->fd, &st) < 0)
		err = host_err(s, errno);
	fs_inode_put(&s->t, ino);
	if (err < 0)
		return err;
	fill_attr(&out.attr, &st);
	return reply(r, &out, sizeof(out));
}

static int op_readlink(struct req *r)
{
	struct fs_inode *ino;
	char buf[PATH_MAX];
	ssize_t n;
	int err;

	if ((err = fs_inode_get(&r->s->t, r->h.nodeid, &ino)) < 0)
		return err;
	if (!S_ISLNK(ino->type))
		n = -EINVAL;
	else if ((n = readlinkat(ino->fd, "", buf, sizeof(buf))) < 0)
		n = host_err(r->s, errno);
	else if ((size_t)n >= sizeof(buf))
		n = -ENAMETOOLONG;
	fs_inode_put(&r->s->t, ino);
	return n < 0 ? (int)n : reply(r, buf, (size_t)n);
}

static int op_symlink(struct req *r)
{
	struct fs_inode *dir;
	const char *name, *target;
	size_t tlen;
	int err;

	if ((err = take_name(r, &name)) < 0 ||
	    (err = take_str(r, &target, &tlen)) < 0)
		return err;
	if (tlen == 0)
		return -ENOENT;
	if (tlen >= PATH_MAX)
		return -ENAMETOOLONG;
	if ((err = get_dir(r, &dir)) < 0)
		return err;
	/* the target is only data: it is never resolved on the host */
	if (symlinkat(target, dir->fd, name) < 0)
		err = host_err(r->s, errno);
	else
		err = finish_new(r, dir, name, S_IFLNK, 0);
	fs_inode_put(&r->s->t, dir);
	return err;
}

/* The kernel's new_decode_dev(): fuse_mknod_in.rdev -> dev_t. */
static dev_t decode_dev(uint32_t d)
{
	return makedev((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00));
}

/* Every type mknod(2) makes, as the guest asked: a root guest expects its
 * fifos, sockets (bind) and device nodes. They are only ever created with
 * mknodat under the parent's O_PATH fd and never opened here (reopen), so a
 * device node is inert for the VMM; the nodev share option refuses them
 * for the sake of other host users. */
static int op_mknod(struct req *r)
{
	struct fuse_mknod_in in;
	struct fs_inode *dir;
	const char *name;
	mode_t type;
	dev_t rdev = 0;
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0 ||
	    (err = take_name(r, &name)) < 0)
		return err;
	type = in.mode & S_IFMT;
	switch (type) {
	case 0: type = S_IFREG; break;
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK: break;
	case S_IFCHR:
	case S_IFBLK:
		if (r->s->opts.no_dev)
			return -EPERM;
		rdev = decode_dev(in.rdev);
		break;
	case S_IFDIR: return -EPERM; /* as mknod(2): MKDIR makes those */
	default: return -EINVAL;
	}
	if ((err = get_dir(r, &dir)) < 0)
		return err;
	if (mknodat(dir->fd, name, type | (in.mode & 07777), rdev) < 0)
		err = host_err(r->s, errno);
	else
		err = finish_new(r, dir, name, type, in.mode);
	fs_inode_put(&r->s->t, dir);
	return err;
}

static int op_mkdir(struct req *r)
{
	struct fuse_mkdir_in in;
	struct fs_inode *dir;
	const char *name;
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0 ||
	    (err = take_name(r, &name)) < 0 || (err = get_dir(r, &dir)) < 0)
		return err;
	if (mkdirat(dir->fd, name, in.mode & 07777) < 0)
		err = host_err(r->s, errno);
	else
		err = finish_new(r, dir, name, S_IFDIR, in.mode);
	fs_inode_put(&r->s->t, dir);
	return err;
}

static int remove_name(struct req *r, int flags)
{
	struct fs_inode *dir;
	const char *name;
	int err;

	if ((err = take_name(r, &name)) < 0 || (err = get_dir(r, &dir)) < 0)
		return err;
	if (unlinkat(dir->fd, name, flags) < 0)
		err = host_err(r->s, errno);
	fs_inode_put(&r->s->t, dir);
	return err < 0 ? err : reply(r, NULL, 0);
}

static int op_unlink(struct req *r)
{
	return remove_name(r, 0);
}

static int op_rmdir(struct req *r)
{
	return remove_name(r, AT_REMOVEDIR);
}

/* Both directories are share inodes by construction: a rename can only
 * move things around inside the share. */
static int do_rename(struct req *r, bool v2)
{
	struct fuse_rename2_in in = {0};
	struct fs_inode *odir = NULL, *ndir = NULL;
	const char *oname, *nname;
	int err;

	err = v2 ? take(r, &in, sizeof(in))
		 : take(r, &in.newdir, sizeof(struct fuse_rename_in));
	if (err < 0)
		return err;
	if (in.flags & ~(uint32_t)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((err = take_name(r, &oname)) < 0 ||
	    (err = take_name(r, &nname)) < 0)
		return err;
	if ((err = get_dir(r, &odir)) < 0)
		return err;
	err = fs_inode_get(&r->s->t, in.newdir, &ndir);
	if (!err && !S_ISDIR(ndir->type))
		err = -ENOTDIR;
	if (!err && renameat2(odir->fd, oname, ndir->fd, nname, in.flags) < 0)
		err = host_err(r->s, errno);
	fs_inode_put(&r->s->t, ndir);
	fs_inode_put(&r->s->t, odir);
	return err < 0 ? err : reply(r, NULL, 0);
}

static int op_rename(struct req *r)
{
	return do_rename(r, false);
}

static int op_rename2(struct req *r)
{
	return do_rename(r, true);
}

static int op_link(struct req *r)
{
	struct fuse_link_in in;
	struct fuse_entry_out e;
	struct fs_inode *dir = NULL, *old = NULL;
	const char *name;
	char pname[16];
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0 ||
	    (err = take_name(r, &name)) < 0)
		return err;
	/* the source is a nodeid we handed out, so it is in the share */
	if ((err = fs_inode_get(&r->s->t, in.oldnodeid, &old)) < 0)
		return err;
	err = get_dir(r, &dir);
	if (!err && S_ISDIR(old->type))
		err = -EPERM;
	if (!err) {
		proc_name(pname, old->fd);
		if (linkat(r->s->proc_fd, pname, dir->fd, name,
			   AT_SYMLINK_FOLLOW) < 0)
			err = host_err(r->s, errno);
	}
	if (!err)
		err = lookup_name(r->s, dir, name, &e, NULL);
	fs_inode_put(&r->s->t, dir);
	fs_inode_put(&r->s->t, old);
	return err < 0 ? err : reply(r, &e, sizeof(e));
}

static int op_open(struct req *r)
{
	struct fuse_open_in in;
	struct fuse_open_out out = {0};
	struct fs_inode *ino;
	int flags, fd, err;

	if ((err = take(r, &in, sizeof(in))) < 0 ||
	    (err = open_flags(in.flags, &flags)) < 0)
		return err;
	if (r->s->opts.read_only &&
	    ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)))
		return -EROFS;
	if ((err = fs_inode_get(&r->s->t, r->h.nodeid, &ino)) < 0)
		return err;
	fd = S_ISDIR(ino->type) ? -EISDIR : reopen(r->s, ino, flags);
	err = fd < 0 ? fd : fs_handle_new(&r->s->t, fd, false, ino, &out.fh);
	fs_inode_put(&r->s->t, ino);
	return err < 0 ? err : reply(r, &out, sizeof(out));
}

static int op_opendir(struct req *r)
{
	struct fuse_open_in in;
	struct fuse_open_out out = {0};
	struct fs_inode *ino;
	int fd, err;

	if ((err = take(r, &in, sizeof(in))) < 0 ||
	    (err = get_dir(r, &ino)) < 0)
		return err;
	fd = reopen(r->s, ino, O_RDONLY);
	err = fd < 0 ? fd : fs_handle_new(&r->s->t, fd, true, ino, &out.fh);
	fs_inode_put(&r->s->t, ino);
	return err < 0 ? err : reply(r, &out, sizeof(out));
}

static int op_read(struct req *r)
{
	struct fuse_read_in in;
	struct fuse_out_header oh = {.unique = r->h.unique};
	struct fs_handle *h;
	struct iovec iov[IOV_SLICE];
	size_t size, done = 0;
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0)
		return err;
	if (in.offset > INT64_MAX)
		return -EINVAL;
	if ((err = get_handle(r, in.fh, false, &h)) < 0)
		return err;
	size = in.size;
	if (size > FUSE_SERVER_MAX_WRITE)
		size = FUSE_SERVER_MAX_WRITE;
	if (size > room(r))
		size = room(r);
	/* straight into the guest's buffers */
	while (done < size) {
		int cnt = view_slice(r->wr, OUT_HDR + done, size - done, iov,
				     IOV_SLICE);
		ssize_t n = preadv(h->fd, iov, cnt, (off_t)(in.offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && done == 0)
			err = host_err(r->s, errno);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	fs_handle_put(&r->s->t, h);
	if (err < 0)
		return err;
	oh.len = (uint32_t)(OUT_HDR + done);
	view_copy(r->wr, 0, &oh, OUT_HDR, true);
	r->written = oh.len;
	return 0;
}

static int op_write(struct req *r)
{
	struct fuse_write_in in;
	struct fuse_write_out out = {0};
	struct fs_handle *h;
	struct iovec iov[IOV_SLICE];
	size_t done = 0;
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0)
		return err;
	if (in.offset > INT64_MAX || in.size > FUSE_SERVER_MAX_WRITE ||
	    IN_HDR + sizeof(in) + in.size > r->h.len)
		return -EINVAL;
	if ((err = get_handle(r, in.fh, false, &h)) < 0)
		return err;
	/* straight from the guest's buffers: a racing guest only changes
	 * the data it writes */
	while (done < in.size) {
		int cnt = view_slice(r->rd, IN_HDR + sizeof(in) + done,
				     in.size - done, iov, IOV_SLICE);
		ssize_t n = pwritev(h->fd, iov, cnt, (off_t)(in.offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && done == 0)
			err = host_err(r->s, errno);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	fs_handle_put(&r->s->t, h);
	if (err < 0)
		return err;
	out.size = (uint32_t)done;
	return reply(r, &out, sizeof(out));
}

static int op_statfs(struct req *r)
{
	struct fuse_statfs_out out = {0};
	struct fs_inode *ino;
	struct statfs sf;
	int err;

	if ((err = fs_inode_get(&r->s->t, r->h.nodeid, &ino)) < 0)
		return err;
	err = fstatfs(ino->fd, &sf) < 0 ? host_err(r->s, errno) : 0;
	fs_inode_put(&r->s->t, ino);
	if (err < 0)
		return err;
	out.st.blocks = sf.f_blocks;
	out.st.bfree = sf.f_bfree;
	out.st.bavail = sf.f_bavail;
	out.st.files = sf.f_files;
	out.st.ffree = sf.f_ffree;
	out.st.bsize = (uint32_t)sf.f_bsize;
	out.st.namelen = (uint32_t)sf.f_namelen;
	out.st.frsize = (uint32_t)sf.f_frsize;
	return reply(r, &out, sizeof(out));
}

/* RELEASE and RELEASEDIR: the handle goes whatever its kind. */
static int op_release(struct req *r)
{
	struct fuse_release_in in;
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0 ||
	    (err = fs_handle_release(&r->s->t, in.fh)) < 0)
		return err;
	return reply(r, NULL, 0);
}

static int do_fsync(struct req *r, bool dir)
{
	struct fuse_fsync_in in;
	struct fs_handle *h;
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0 ||
	    (err = get_handle(r, in.fh, dir, &h)) < 0)
		return err;
	if ((in.fsync_flags & FUSE_FSYNC_FDATASYNC ? fdatasync(h->fd)
						   : fsync(h->fd)) < 0)
		err = host_err(r->s, errno);
	fs_handle_put(&r->s->t, h);
	return err < 0 ? err : reply(r, NULL, 0);
}

static int op_fsync(struct req *r)
{
	return do_fsync(r, false);
}

static int op_fsyncdir(struct req *r)
{
	return do_fsync(r, true);
}

static int op_flush(struct req *r)
{
	struct fuse_flush_in in;
	struct fs_handle *h;
	int err;

	/* nothing is buffered here and no locks are served */
	if ((err = take(r, &in, sizeof(in))) < 0 ||
	    (err = get_handle(r, in.fh, false, &h)) < 0)
		return err;
	fs_handle_put(&r->s->t, h);
	return reply(r, NULL, 0);
}

static int op_access(struct req *r)
{
	struct fuse_access_in in;
	struct fs_inode *ino;
	char name[16];
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0)
		return err;
	if (in.mask & ~(uint32_t)(R_OK | W_OK | X_OK))
		return -EINVAL;
	if (r->s->opts.read_only && (in.mask & W_OK))
		return -EROFS;
	if ((err = fs_inode_get(&r->s->t, r->h.nodeid, &ino)) < 0)
		return err;
	/* symlinks have no permissions of their own */
	if (!S_ISLNK(ino->type)) {
		proc_name(name, ino->fd);
		if (faccessat(r->s->proc_fd, name, (int)in.mask, 0) < 0)
			err = host_err(r->s, errno);
	}
	fs_inode_put(&r->s->t, ino);
	return err < 0 ? err : reply(r, NULL, 0);
}

static int op_create(struct req *r)
{
	struct fuse_server *s = r->s;
	struct fuse_create_in in;
	struct {
		struct fuse_entry_out e;
		struct fuse_open_out o;
	} out;
	struct fs_inode *dir, *ino = NULL;
	const char *name;
	char pname[16];
	int flags, fd, pfd, err;

	if ((err = take(r, &in, sizeof(in))) < 0 ||
	    (err = take_name(r, &name)) < 0 ||
	    (err = open_flags(in.flags, &flags)) < 0)
		return err;
	if ((in.mode & S_IFMT) && (in.mode & S_IFMT) != S_IFREG)
		return -EINVAL;
	if ((err = get_dir(r, &dir)) < 0)
		return err;
	memset(&out, 0, sizeof(out));
	/* O_EXCL always: opening an existing name must go through the type
	 * checks below, or a FIFO or device could be opened here */
	fd = open_at(s, dir->fd, name, flags | O_CREAT | O_EXCL,
		     in.mode & 07777);
	if (fd == -EEXIST && !(in.flags & O_EXCL)) {
		err = lookup_name(s, dir, name, &out.e, &ino);
		fd = err < 0 ? err : reopen(s, ino, flags);
	} else if (fd >= 0) {
		/* the O_PATH fd comes from the new file, not from its name */
		proc_name(pname, fd);
		pfd = openat(s->proc_fd, pname, O_PATH | O_CLOEXEC);
		if (pfd < 0) {
			err = host_err(s, errno);
		} else {
			struct stat st;

			if (fstat(pfd, &st) < 0) {
				err = host_err(s, errno);
				close(pfd);
			} else {
				fix_new(r, pfd, &st, in.mode);
				err = publish(s, pfd, &st, &out.e, &ino);
			}
		}
		if (err < 0) {
			close(fd);
			fd = err;
		}
	}
	if (fd >= 0)
		err = fs_handle_new(&s->t, fd, false, ino, &out.o.fh);
	else
		err = fd;
	if (err < 0 && ino) /* the guest never hears of this lookup */
		fs_inode_forget(&s->t, ino->nodeid, 1);
	fs_inode_put(&s->t, ino);
	fs_inode_put(&s->t, dir);
	return err < 0 ? err : reply(r, &out, sizeof(out));
}

static int op_fallocate(struct req *r)
{
	struct fuse_fallocate_in in;
	struct fs_handle *h;
	const uint32_t modes = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE |
			       FALLOC_FL_ZERO_RANGE;
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0)
		return err;
	if (in.mode & ~modes)
		return -EOPNOTSUPP;
	if (in.offset > INT64_MAX || in.length == 0 ||
	    in.length > INT64_MAX - in.offset)
		return -EINVAL;
	if ((err = get_handle(r, in.fh, false, &h)) < 0)
		return err;
	if (fallocate(h->fd, (int)in.mode, (off_t)in.offset, (off_t)in.length) <
	    0)
		err = host_err(r->s, errno);
	fs_handle_put(&r->s->t, h);
	return err < 0 ? err : reply(r, NULL, 0);
}

static int op_lseek(struct req *r)
{
	struct fuse_lseek_in in;
	struct fuse_lseek_out out;
	struct fs_handle *h;
	off_t res;
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0)
		return err;
	/* the kernel handles SET/CUR/END itself */
	if ((in.whence != SEEK_DATA && in.whence != SEEK_HOLE) ||
	    in.offset > INT64_MAX)
		return -EINVAL;
	if ((err = get_handle(r, in.fh, false, &h)) < 0)
		return err;
	res = lseek(h->fd, (off_t)in.offset, (int)in.whence);
	if (res < 0)
		err = host_err(r->s, errno);
	fs_handle_put(&r->s->t, h);
	if (err < 0)
		return err;
	out.offset = (uint64_t)res;
	return reply(r, &out, sizeof(out));
}

/* ---- directories ---- */

struct host_dirent {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

#define DIRENT_NAME offsetof(struct host_dirent, d_name)

static bool is_dot(const char *n)
{
	return n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2]));
}

/* Appends one record at out + pos if it fits; READDIRPLUS looks the name
 * up (a failed lookup, or "." and "..", leaves nodeid 0: no entry). */
static int emit_dirent(struct req *r, struct fs_inode *dir, bool plus,
		       const struct host_dirent *d, size_t namelen,
		       uint8_t *out, size_t size, size_t *pos)
{
	size_t hdr = plus ? FUSE_NAME_OFFSET_DIRENTPLUS : FUSE_NAME_OFFSET;
	size_t len = FUSE_DIRENT_ALIGN(hdr + namelen);
	struct fuse_dirent de = {
		.ino = d->d_ino,
		.off = (uint64_t)d->d_off,
		.namelen = (uint32_t)namelen,
		.type = d->d_type,
	};
	uint8_t *p = out + *pos;

	if (len > size - *pos)
		return -ENOSPC;
	memset(p, 0, len);
	if (plus) {
		struct fuse_entry_out e;

		if (!is_dot(d->d_name) &&
		    lookup_name(r->s, dir, d->d_name, &e, NULL) == 0)
			memcpy(p, &e, sizeof(e));
		p += sizeof(struct fuse_entry_out);
	}
	memcpy(p, &de, FUSE_NAME_OFFSET);
	memcpy(p + FUSE_NAME_OFFSET, d->d_name, namelen);
	*pos += len;
	return 0;
}

static int do_readdir(struct req *r, bool plus)
{
	struct fuse_read_in in;
	struct fs_handle *h;
	uint8_t *out = NULL, *dbuf = NULL;
	size_t size, dsize, pos = 0;
	int err;

	if ((err = take(r, &in, sizeof(in))) < 0)
		return err;
	if (in.offset > INT64_MAX)
		return -EINVAL;
	if ((err = get_handle(r, in.fh, true, &h)) < 0)
		return err;
	size = in.size < FUSE_SERVER_MAX_WRITE ? in.size
					       : FUSE_SERVER_MAX_WRITE;
	if (size > room(r))
		size = room(r);
	/* plain records are about as big as getdents ones; plus ones much
	 * bigger, so read fewer names to throw fewer away */
	dsize = plus ? size / 4 : size;
	dsize = dsize < 4096 ? 4096 : dsize > 65536 ? 65536 : dsize;
	out = malloc(size ? size : 1);
	dbuf = malloc(dsize);
	if (!out || !dbuf) {
		err = -ENOMEM;
		goto done;
	}
	/* offsets are the host's d_off cookies; seek to each request's */
	if (lseek(h->fd, (off_t)in.offset, SEEK_SET) < 0) {
		err = host_err(r->s, errno);
		goto done;
	}
	for (;;) {
		long n = syscall(SYS_getdents64, h->fd, dbuf, dsize);

		if (n < 0 && pos == 0)
			err = host_err(r->s, errno);
		if (n <= 0)
			break;
		for (long b = 0; b < n;) {
			struct host_dirent *d =
				(struct host_dirent *)(dbuf + b);
			size_t max = (size_t)(n - b), namelen;

			if (max < DIRENT_NAME + 1 || d->d_reclen > max ||
			    d->d_reclen < DIRENT_NAME + 1)
				goto done; /* not a kernel record */
			namelen = strnlen(d->d_name, d->d_reclen - DIRENT_NAME);
			if (emit_dirent(r, h->inode, plus, d, namelen, out,
					size, &pos) < 0)
				goto done; /* full: the rest comes next time */
			b += d->d_reclen;
		}
	}
done:
	fs_handle_put(&r->s->t, h);
	if (!err)
		err = reply(r, out, pos);
	free(dbuf);
	free(out);
	return err;
}

static int op_readdir(struct req *r)
{
	return do_readdir(r, false);
}

static int op_readdirplus(struct req *r)
{
	return do_readdir(r, true);
}

/* ---- xattrs (user.* only, regular files and directories only) ---- */

/* An fd on which f*xattr work; -errno for other object types. */
static int xattr_fd(struct req *r, int other_err)
{
	struct fs_inode *ino;
	int fd = fs_inode_get(&r->s->t, r->h.nodeid, &ino);

	if (fd < 0)
		return fd;
	if (!S_ISREG(ino->type) && !S_ISDIR(ino->type))
		fd = other_err;
	else
		fd = reopen(r->s, ino, O_RDONLY | O_NONBLOCK);
	fs_inode_put(&r->s->t, ino);
	return fd;
}

/* Replies to GETXATTR/LISTXATTR: only the length for size 0, else the data
 * if it fits in size. */
static int reply_xattr(struct req *r, uint32_t size, const void *buf,
		       size_t len)
{
	struct fuse_getxattr_out out = {.size = (uint32_t)len};

	if (size == 0)
		return reply(r, &out, sizeof(out));
	if (len > size || len > room(r))
		return -ERANGE;
	return reply(r, buf, len);
}

static int op_setxattr(struct req *r)
{
	struct fuse_setxattr_in in = {0};
	const char *name;
	int fd, err;

	if ((err = take(r, &in, FUSE_COMPAT_SETXATTR_IN_SIZE)) < 0 ||
	    (err = take_xattr_name(r, &name)) < 0)
		return err;
	if (in.size > XATTR_VALUE_MAX)
		return -E2BIG;
	if (in.size > r->arg_len - r->pos ||
	    (in.flags & ~(uint32_t)(XATTR_CREATE | XATTR_REPLACE)))
		return -EINVAL;
	if ((fd = xattr_fd(r, -EPERM)) < 0)
		return fd;
	if (fsetxattr(fd, name, r->arg + r->pos, in.size, (int)in.flags) < 0)
		err = host_err(r->s, errno);
	close(fd);
	return err < 0 ? err : reply(r, NULL, 0);
}

static int op_getxattr(struct req *r)
{
	struct fuse_getxattr_in in;
	const char *name;
	uint8_t *buf;
	ssize_t n;
	int fd, err;

	if ((err = take(r, &in, sizeof(in))) < 0 ||
	    (err = take_xattr_name(r, &name)) < 0)
		return err;
	if ((fd = xattr_fd(r, -ENODATA)) < 0)
		return fd;
	buf = malloc(XATTR_VALUE_MAX);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	n = fgetxattr(fd, name, buf, XATTR_VALUE_MAX);
	err = n < 0 ? host_err(r->s, errno)
		    : reply_xattr(r, in.size, buf, (size_t)n);
	free(buf);
	close(fd);
	return err;
}

static int op_listxattr(struct req *r)
{
	struct fuse_getxattr_in in;
	char *buf;
	size_t len = 0;
	ssize_t n;
	int fd, err;

	if ((err = take(r, &in, sizeof(in))) < 0)
		return err;
	fd = xattr_fd(r, -ENODATA);
	if (fd == -ENODATA) /* other object types: an empty list */
		return reply_xattr(r, in.size, NULL, 0);
	if (fd < 0)
		return fd;
	buf = malloc(XATTR_VALUE_MAX);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	n = flistxattr(fd, buf, XATTR_VALUE_MAX);
	if (n < 0) {
		err = errno == ERANGE ? -E2BIG : host_err(r->s, errno);
	} else {
		/* keep the user.* names, packed in place */
		for (size_t i = 0; i < (size_t)n;) {
			size_t l = strnlen(buf + i, (size_t)n - i);

			if (l > strlen(XATTR_PREFIX) &&
			    !strncmp(buf + i, XATTR_PREFIX,
				     strlen(XATTR_PREFIX)) &&
			    i + l < (size_t)n) {
				memmove(buf + len, buf + i, l + 1);
				len += l + 1;
			}
			i += l + 1;
		}
		err = reply_xattr(r, in.size, buf, len);
	}
	free(buf);
	close(fd);
	return err;
}

static int op_removexattr(struct req *r)
{
	const char *name;
	int fd, err;

	if ((err = take_xattr_name(r, &name)) < 0)
		return err;
	if ((fd = xattr_fd(r, -EPERM)) < 0)
		return fd;
	if (fremovexattr(fd, name) < 0)
		err = host_err(r->s, errno);
	close(fd);
	return err < 0 ? err : reply(r, NULL, 0);
}

/* ---- dispatch ---- */

enum {
	F_MUT = 1,   /* changes the share: EROFS when read-only */
	F_XATTR = 2, /* ENOSYS unless xattrs are enabled */
};

struct op_desc {
	int (*fn)(struct req *r);
	uint16_t arg_min;   /* fixed argument bytes */
	uint16_t reply_min; /* fixed reply body bytes, checked up front */
	uint8_t flags;
};

#define ENTRY sizeof(struct fuse_entry_out)
#define ATTR  sizeof(struct fuse_attr_out)
#define OPEN  sizeof(struct fuse_open_out)

static const struct op_desc ops[] = {
	[FUSE_LOOKUP] = {op_lookup, 0, ENTRY, 0},
	[FUSE_GETATTR] = {op_getattr, sizeof(struct fuse_getattr_in), ATTR, 0},
	[FUSE_SETATTR] = {op_setattr, sizeof(struct fuse_setattr_in), ATTR,
			  F_MUT},
	[FUSE_READLINK] = {op_readlink, 0, 0, 0},
	[FUSE_SYMLINK] = {op_symlink, 0, ENTRY, F_MUT},
	[FUSE_MKNOD] = {op_mknod, sizeof(struct fuse_mknod_in), ENTRY, F_MUT},
	[FUSE_MKDIR] = {op_mkdir, sizeof(struct fuse_mkdir_in), ENTRY, F_MUT},
	[FUSE_UNLINK] = {op_unlink, 0, 0, F_MUT},
	[FUSE_RMDIR] = {op_rmdir, 0, 0, F_MUT},
	[FUSE_RENAME] = {op_rename, sizeof(struct fuse_rename_in), 0, F_MUT},
	[FUSE_LINK] = {op_link, sizeof(struct fuse_link_in), ENTRY, F_MUT},
	[FUSE_OPEN] = {op_open, sizeof(struct fuse_open_in), OPEN, 0},
	[FUSE_READ] = {op_read, sizeof(struct fuse_read_in), 0, 0},
	[FUSE_WRITE] = {op_write, sizeof(struct fuse_write_in),
			sizeof(struct fuse_write_out), F_MUT},
	[FUSE_STATFS] = {op_statfs, 0, sizeof(struct fuse_statfs_out), 0},
	[FUSE_RELEASE] = {op_release, sizeof(struct fuse_release_in), 0, 0},
	[FUSE_FSYNC] = {op_fsync, sizeof(struct fuse_fsync_in), 0, 0},
	[FUSE_SETXATTR] = {op_setxattr, FUSE_COMPAT_SETXATTR_IN_SIZE, 0,
			   F_MUT | F_XATTR},
	[FUSE_GETXATTR] = {op_getxattr, sizeof(struct fuse_getxattr_in), 0,
			   F_XATTR},
	[FUSE_LISTXATTR] = {op_listxattr, sizeof(struct fuse_getxattr_in), 0,
			    F_XATTR},
	[FUSE_REMOVEXATTR] = {op_removexattr, 0, 0, F_MUT | F_XATTR},
	[FUSE_FLUSH] = {op_flush, sizeof(struct fuse_flush_in), 0, 0},
	[FUSE_INIT] = {op_init, 16 /* 7.31's fuse_init_in */,
		       sizeof(struct fuse_init_out), 0},
	[FUSE_OPENDIR] = {op_opendir, sizeof(struct fuse_open_in), OPEN, 0},
	[FUSE_READDIR] = {op_readdir, sizeof(struct fuse_read_in), 0, 0},
	[FUSE_RELEASEDIR] = {op_release, sizeof(struct fuse_release_in), 0, 0},
	[FUSE_FSYNCDIR] = {op_fsyncdir, sizeof(struct fuse_fsync_in), 0, 0},
	[FUSE_ACCESS] = {op_access, sizeof(struct fuse_access_in), 0, 0},
	[FUSE_CREATE] = {op_create, sizeof(struct fuse_create_in), ENTRY + OPEN,
			 F_MUT},
	[FUSE_DESTROY] = {op_destroy, 0, 0, 0},
	[FUSE_FALLOCATE] = {op_fallocate, sizeof(struct fuse_fallocate_in), 0,
			    F_MUT},
	[FUSE_READDIRPLUS] = {op_readdirplus, sizeof(struct fuse_read_in), 0,
			      0},
	[FUSE_RENAME2] = {op_rename2, sizeof(struct fuse_rename2_in), 0, F_MUT},
	[FUSE_LSEEK] = {op_lseek, sizeof(struct fuse_lseek_in),
			sizeof(struct fuse_lseek_out), 0},
};

#define N_OPS (sizeof(ops) / sizeof(ops[0]))

/* FORGET and BATCH_FORGET: no reply, whatever happens. */
static void do_forget(struct fuse_server *s, const struct iov_view *rd,
		      const struct fuse_in_header *h)
{
	size_t args = h->len - IN_HDR;

	if (!atomic_load(&s->initialized))
		return;
	if (h->opcode == FUSE_FORGET) {
		struct fuse_forget_in in;

		if (args >= sizeof(in)) {
			view_copy(rd, IN_HDR, &in, sizeof(in), false);
			fs_inode_forget(&s->t, h->nodeid, in.nlookup);
		}
	} else {
		struct fuse_batch_forget_in in;
		size_t off = IN_HDR + sizeof(in);

		if (args < sizeof(in))
			return;
		view_copy(rd, IN_HDR, &in, sizeof(in), false);
		/* each entry copied before use; no more than the request has */
		for (uint32_t i = 0; i < in.count; i++) {
			struct fuse_forget_one one;

			if (h->len - off < sizeof(one))
				break;
			view_copy(rd, off, &one, sizeof(one), false);
			fs_inode_forget(&s->t, one.nodeid, one.nlookup);
			off += sizeof(one);
		}
	}
}

static int dispatch(struct fuse_server *s, const struct iov_view *rd,
		    const struct iov_view *wr, uint32_t *written)
{
	struct req r = {.s = s, .rd = rd, .wr = wr};
	const struct op_desc *op = NULL;
	uint8_t stack[ARGS_STACK];
	uint8_t *heap = NULL;
	size_t copy;
	int err;

	*written = 0;
	if (rd->len < IN_HDR) {
		log_debug(s->log, "fuse: request shorter than its header");
		return -EINVAL;
	}
	view_copy(rd, 0, &r.h, IN_HDR, false);
	if (r.h.opcode == FUSE_FORGET || r.h.opcode == FUSE_BATCH_FORGET) {
		/* never a reply, not even to a malformed one */
		if (r.h.len >= IN_HDR && r.h.len <= rd->len)
			do_forget(s, rd, &r.h);
		return 0;
	}
	if (wr->len < OUT_HDR) {
		log_debug(s->log, "fuse: no room for a reply to opcode %u",
			  r.h.opcode);
		return -EINVAL;
	}
	if (r.h.opcode < N_OPS)
		op = &ops[r.h.opcode];
	if (r.h.len < IN_HDR || r.h.len > rd->len)
		err = -EINVAL;
	else if (!op || !op->fn)
		err = -ENOSYS;
	else if (!atomic_load(&s->initialized) && r.h.opcode != FUSE_INIT)
		err = -EIO;
	else if ((op->flags & F_XATTR) && !s->opts.xattr)
		err = -ENOSYS;
	else if (r.h.len - IN_HDR < op->arg_min ||
		 wr->len - OUT_HDR < op->reply_min)
		err = -EINVAL;
	else if ((op->flags & F_MUT) && s->opts.read_only)
		err = -EROFS;
	else
		err = 0;
	if (err < 0)
		goto out;

	/* one private copy of the arguments: what is checked is what is
	 * used, whatever the guest does to its memory meanwhile */
	r.arg_len = r.h.len - IN_HDR;
	copy = r.h.opcode == FUSE_WRITE ? sizeof(struct fuse_write_in)
					: r.arg_len;
	if (copy > ARGS_MAX) {
		err = -EINVAL;
		goto out;
	}
	if (copy > sizeof(stack)) {
		heap = malloc(copy);
		if (!heap) {
			err = -ENOMEM;
			goto out;
		}
	}
	r.arg = heap ? heap : stack;
	view_copy(rd, IN_HDR, (void *)r.arg, copy, false);
	r.arg_len = copy;
	err = op->fn(&r);
	free(heap);
out:
	if (err < 0)
		reply_err(&r, err);
	*written = r.written;
	return 0;
}

/* ---- public ---- */

int fuse_server_handle(struct fuse_server *s, const struct virtq_chain *req,
		       uint32_t *written)
{
	struct iov_view rd = {req->out, req->n_out, 0};
	struct iov_view wr = {req->in, req->n_in, 0};

	if (rd.n > VIRTQ_MAX_SEGS)
		rd.n = VIRTQ_MAX_SEGS;
	if (wr.n > VIRTQ_MAX_SEGS)
		wr.n = VIRTQ_MAX_SEGS;
	for (unsigned i = 0; i < rd.n; i++)
		rd.len += rd.iov[i].iov_len;
	for (unsigned i = 0; i < wr.n; i++)
		wr.len += wr.iov[i].iov_len;
	return dispatch(s, &rd, &wr, written);
}

int fuse_server_handle_buf(struct fuse_server *s, const void *in, size_t in_len,
			   void *out, size_t out_cap, size_t *out_len)
{
	struct iovec iin = {(void *)in, in_len}, iout = {out, out_cap};
	struct iov_view rd = {&iin, 1, in_len}, wr = {&iout, 1, out_cap};
	uint32_t written;
	int err = dispatch(s, &rd, &wr, &written);

	*out_len = written;
	return err;
}

int fuse_server_create(const char *root_dir,
		       const struct fuse_server_opts *opts,
		       const struct kiln_log *log, struct fuse_server **out)
{
	struct fuse_server *s;
	struct statfs sf;
	struct stat st;
	int root, err;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return kiln_errorf(log, -ENOMEM, "fuse: out of memory");
	s->log = log;
	if (opts)
		s->opts = *opts;
	if (!s->opts.max_inodes)
		s->opts.max_inodes = FUSE_SERVER_DEFAULT_MAX_INODES;
	if (!s->opts.max_handles)
		s->opts.max_handles = FUSE_SERVER_DEFAULT_MAX_HANDLES;
	if (s->opts.max_inodes > UINT32_MAX / 2)
		s->opts.max_inodes = UINT32_MAX / 2;
	if (s->opts.max_handles > UINT32_MAX / 2)
		s->opts.max_handles = UINT32_MAX / 2;
	s->chown_new = geteuid() == 0;
	s->egid = getegid();
	atomic_init(&s->initialized, false);
	atomic_init(&s->have_openat2, true);
	atomic_init(&s->fd_limit_logged, false);

	s->proc_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (s->proc_fd < 0 || fstatfs(s->proc_fd, &sf) < 0 ||
	    sf.f_type != PROC_SUPER_MAGIC) {
		err = kiln_errorf(log, -ENOENT,
				  "fuse: /proc/self/fd is not procfs");
		goto fail;
	}
	root = open(root_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		err = kiln_errorf(log, -errno, "fuse: share %s: %s", root_dir,
				  strerror(errno));
		goto fail;
	}
	if (fstat(root, &st) < 0) {
		err = kiln_errorf(log, -errno, "fuse: share %s: %s", root_dir,
				  strerror(errno));
		close(root);
		goto fail;
	}
	err = fs_table_init(&s->t, log, root, &st, s->opts.max_inodes,
			    s->opts.max_handles);
	if (err < 0) {
		kiln_errorf(log, err, "fuse: out of memory");
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->proc_fd >= 0)
		close(s->proc_fd);
	free(s);
	return err;
}

void fuse_server_destroy(struct fuse_server *s)
{
	if (!s)
		return;
	fs_table_destroy(&s->t);
	close(s->proc_fd);
	free(s);
}

void fuse_server_reset(struct fuse_server *s)
{
	fs_table_reset(&s->t);
	atomic_store(&s->initialized, false);
}

void fuse_server_get_stats(struct fuse_server *s, struct fuse_server_stats *st)
{
	fs_table_counts(&s->t, &st->inodes, &st->handles);
}
