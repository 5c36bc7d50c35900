/* SPDX-License-Identifier: MIT */
#include "fs.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "fs/fuse_server.h"
#include "util/le.h"
#include "virtio/device_table.h"

#define FS_NUM_QUEUES (1 + VIRTIO_FS_REQUEST_QUEUES)

struct virtio_fs {
	struct fuse_server *srv;
	uint8_t config[VIRTIO_FS_CONFIG_SIZE];
	/* One chain buffer and one set of counters per queue: queues never
	 * share state, whichever threads their notifications arrive on. The
	 * chains hold VIRTQ_MAX_SEGS segments, so any ring size a transport
	 * accepts (vhost-user front-ends pick up to VIRTQ_MAX_SIZE) fits. */
	struct virtq_chain *chains[FS_NUM_QUEUES];
	struct virtio_fs_stats stats[FS_NUM_QUEUES];
};

/* ---- device ops ---- */

static uint64_t fs_features(struct virtio_dev *d)
{
	(void)d;
	/* VIRTIO_FS_F_NOTIFICATION needs a notification queue the FUSE
	 * server has no use for: nothing device-specific is offered. */
	return 0;
}

static void fs_config_read(struct virtio_dev *d, uint32_t off, uint8_t *buf,
			   uint32_t len)
{
	struct virtio_fs *fs = d->priv;

	if (!fs || off > VIRTIO_FS_CONFIG_SIZE ||
	    len > VIRTIO_FS_CONFIG_SIZE - off) {
		memset(buf, 0, len);
		return;
	}
	memcpy(buf, fs->config + off, len);
}

static void fs_config_write(struct virtio_dev *d, uint32_t off,
			    const uint8_t *buf, uint32_t len)
{
	(void)buf;
	/* 5.11.4: every field is read-only for the driver. */
	log_debug(d->log, "virtio-fs: ignored config write at %u (%u bytes)",
		  off, len);
}

static void fs_queue_notify(struct virtio_dev *d, unsigned qi)
{
	struct virtio_fs *fs = d->priv;
	struct virtio_fs_stats *st;
	struct virtq_chain *c;
	int r;

	if (!fs || qi >= FS_NUM_QUEUES)
		return;
	c = fs->chains[qi];
	st = &fs->stats[qi];
	/* The high-priority queue only carries FORGET and INTERRUPT in
	 * practice, but a hostile driver may put anything on any queue:
	 * every queue gets the same full, checked server. */
	while ((r = virtq_pop(&d->vqs[qi], c)) > 0) {
		uint32_t written = 0;

		if (fuse_server_handle(fs->srv, c, &written) < 0) {
			/* No header, or no room for a reply: the chain
			 * can only go back untouched. */
			written = 0;
			st->dropped++;
		} else if (!written) {
			st->no_reply++;
		} else {
			st->requests++;
		}
		virtio_dev_complete(d, qi, c->head, written);
	}
	if (r < 0)
		virtio_dev_fail(d, "malformed request ring");
}

static void fs_reset(struct virtio_dev *d)
{
	struct virtio_fs *fs = d->priv;

	/* The next driver knows none of the old nodeids or handles; holding
	 * them would pin host fds for nothing. */
	if (fs)
		fuse_server_reset(fs->srv);
}

/* ---- life cycle from options:
 * fs,dir=DIR,tag=TAG[,ro][,nodev][,mount=/PATH] ---- */

static const char *const fs_option_keys[] = {"dir",   "dirfd", "tag", "ro",
					     "nodev", "mount", NULL};

/* Tags and mount paths also travel on the guest's kernel command line, in
 * the agent's TAG:PATH[:ro] mount list: nothing there may split it. */
static bool cmdline_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == ':' || *s == '"' ||
		    *s == 0x7f)
			return false;
	return true;
}

static int fs_check(const struct virtio_dev_opts *o, const struct kiln_log *log)
{
	const char *dir, *tag, *mount = NULL;
	uint64_t dirfd;
	bool ro, nodev;
	int err;

	if (virtio_dev_opts_find(o, "dirfd", NULL)) {
		err = virtio_dev_opts_find(o, "dir", NULL)
			      ? kiln_errorf(log, -EINVAL,
					    "fs: dir= and dirfd= exclude each "
					    "other")
			      : virtio_dev_opts_u64(o, "dirfd", 0, INT32_MAX,
						    log, &dirfd);
	} else {
		err = virtio_dev_opts_require(o, "dir", "dir=DIR (or dirfd=N)",
					      log, &dir);
	}
	if (err == 0)
		err = virtio_dev_opts_require(o, "tag", "tag=TAG", log, &tag);
	if (err == 0)
		err = virtio_dev_opts_bool(o, "ro", log, &ro);
	if (err == 0)
		err = virtio_dev_opts_bool(o, "nodev", log, &nodev);
	if (err < 0)
		return err;
	if (strlen(tag) > VIRTIO_FS_TAG_MAX || !cmdline_safe(tag))
		return kiln_errorf(
			log, -EINVAL,
			"share tag '%s': 1..%u bytes, no whitespace, "
			"':' or '\"'",
			tag, VIRTIO_FS_TAG_MAX);
	if (virtio_dev_opts_find(o, "mount", &mount) &&
	    (!mount || mount[0] != '/' || strlen(mount) > 255 ||
	     !cmdline_safe(mount)))
		return kiln_errorf(
			log, -EINVAL,
			"share guest path '%s': must be absolute, at "
			"most 255 bytes, no whitespace, ':' or '\"'",
			mount ? mount : "");
	return 0;
}

/* mount= is for a sandbox's agent (where it mounts the share); the
 * device itself does not use it. */
static int fs_create(struct virtio_dev *d, const struct virtio_dev_opts *o)
{
	const char *dir = virtio_dev_opts_get(o, "dir");
	char fd_dir[32];
	unsigned flags = 0;
	uint64_t dirfd;
	bool ro, nodev;

	if (virtio_dev_opts_bool(o, "ro", d->log, &ro) < 0 ||
	    virtio_dev_opts_bool(o, "nodev", d->log, &nodev) < 0)
		return -EINVAL;
	flags |= ro ? VIRTIO_FS_READ_ONLY : 0;
	flags |= nodev ? VIRTIO_FS_NO_DEV : 0;
	/* The caller's directory fd, reopened through its /proc link: the
	 * share opens the root itself (O_PATH) and keeps that. */
	if (!dir && virtio_dev_opts_u64(o, "dirfd", 0, INT32_MAX, d->log,
					&dirfd) == 0) {
		snprintf(fd_dir, sizeof(fd_dir), "/proc/self/fd/%d",
			 (int)dirfd);
		dir = fd_dir;
	}
	return virtio_fs_create(dir, virtio_dev_opts_get(o, "tag"), flags,
				d->log, d);
}

/* QEMU's vhost-user-fs-device needs the tag too. */
static int fs_frontend_props(const struct virtio_dev *d, char *buf,
			     unsigned len)
{
	const struct virtio_fs *fs = d->priv;
	int r = snprintf(buf, len, "tag=%.*s", VIRTIO_FS_TAG_MAX,
			 (const char *)fs->config + VIRTIO_FS_CFG_TAG);

	return r < 0 || (unsigned)r >= len ? -ENOSPC : r;
}

const struct virtio_dev_ops virtio_fs_ops = {
	.name = "virtio-fs",
	.device_id = VIRTIO_ID_FS,
	.num_queues = FS_NUM_QUEUES,
	.queue_max_size = VIRTIO_FS_QUEUE_SIZE,
	.features = fs_features,
	.config_size = VIRTIO_FS_CONFIG_SIZE,
	.config_read = fs_config_read,
	.config_write = fs_config_write,
	.queue_notify = fs_queue_notify,
	.reset = fs_reset,
	.type = "fs",
	.max_per_vm = VIRTIO_FS_MAX_PER_VM,
	.option_keys = fs_option_keys,
	.option_usage = "dir=DIR|dirfd=N,tag=TAG[,ro][,nodev]",
	.check = fs_check,
	.create = fs_create,
	.destroy = virtio_fs_destroy,
	.vhost_user_frontend = "vhost-user-fs-device",
	.frontend_props = fs_frontend_props,
};

/* ---- construction ---- */

/* The tag is what the guest passes to mount(8) and what appears in its
 * /proc/mounts: whitespace or control bytes there would need escaping the
 * guest's tools do not all do. One NUL always follows it in the config
 * field, for drivers that read it as a C string. */
static int check_tag(const char *tag, const struct kiln_log *log)
{
	size_t len;

	if (!tag || !*tag)
		return kiln_errorf(log, -EINVAL, "virtio-fs: the tag is empty");
	len = strnlen(tag, VIRTIO_FS_TAG_MAX + 1);
	if (len > VIRTIO_FS_TAG_MAX)
		return kiln_errorf(log, -EINVAL,
				   "virtio-fs: tag '%.*s...' is longer than "
				   "%u bytes",
				   VIRTIO_FS_TAG_MAX, tag, VIRTIO_FS_TAG_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)tag[i];

		if (ch <= ' ' || ch == 0x7f)
			return kiln_errorf(log, -EINVAL,
					   "virtio-fs: tag '%s' contains a "
					   "space or control character",
					   tag);
	}
	return 0;
}

static int check_dir(const char *dir, const struct kiln_log *log)
{
	struct stat st;

	if (!dir || !*dir)
		return kiln_errorf(log, -EINVAL,
				   "virtio-fs: no shared directory given");
	if (stat(dir, &st) < 0)
		return kiln_errorf(log, -errno,
				   "virtio-fs: shared directory %s: %s", dir,
				   strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return kiln_errorf(log, -ENOTDIR,
				   "virtio-fs: %s is not a directory", dir);
	return 0;
}

/* Every inode and handle the guest holds is a host fd. Past the process's
 * fd limit the server would answer ENFILE, but by then the embedder could
 * not open anything either (a vhost-user reconnect, a memory table): keep
 * the share's limits below RLIMIT_NOFILE with room to spare. */
static int fit_fd_limit(struct fuse_server_opts *o, const struct kiln_log *log)
{
	const uint64_t want = (uint64_t)FUSE_SERVER_DEFAULT_MAX_INODES +
			      FUSE_SERVER_DEFAULT_MAX_HANDLES;
	struct rlimit rl;
	uint64_t budget;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	if (rl.rlim_cur < VIRTIO_FS_RESERVED_FDS + 64)
		return kiln_errorf(log, -EMFILE,
				   "virtio-fs: RLIMIT_NOFILE is %llu; a share "
				   "needs at least %u",
				   (unsigned long long)rl.rlim_cur,
				   VIRTIO_FS_RESERVED_FDS + 64);
	budget = rl.rlim_cur - VIRTIO_FS_RESERVED_FDS;
	if (budget >= want)
		return 0;
	/* Most fds go to lookups (a READDIRPLUS of a big directory makes
	 * one per entry); an eighth is plenty for open files. */
	o->max_handles = (uint32_t)(budget / 8);
	if (o->max_handles > FUSE_SERVER_DEFAULT_MAX_HANDLES)
		o->max_handles = FUSE_SERVER_DEFAULT_MAX_HANDLES;
	o->max_inodes = (uint32_t)(budget - o->max_handles);
	log_info(log,
		 "virtio-fs: RLIMIT_NOFILE %llu: at most %u inodes and %u open "
		 "files in the share",
		 (unsigned long long)rl.rlim_cur, o->max_inodes,
		 o->max_handles);
	return 0;
}

int virtio_fs_create(const char *dir, const char *tag, unsigned flags,
		     const struct kiln_log *log, struct virtio_dev *dev)
{
	struct fuse_server_opts opts = {
		.read_only = flags & VIRTIO_FS_READ_ONLY,
		.no_dev = flags & VIRTIO_FS_NO_DEV,
	};
	struct virtio_fs *fs;
	int err;

	if (!dev)
		return -EINVAL;
	err = check_dir(dir, log);
	if (err < 0)
		return err;
	err = check_tag(tag, log);
	if (err < 0)
		return err;
	err = fit_fd_limit(&opts, log);
	if (err < 0)
		return err;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return kiln_errorf(log, -ENOMEM, "virtio-fs: out of memory");
	for (unsigned i = 0; i < FS_NUM_QUEUES; i++) {
		fs->chains[i] = malloc(sizeof(*fs->chains[i]));
		if (!fs->chains[i]) {
			err = kiln_errorf(log, -ENOMEM,
					  "virtio-fs: out of memory");
			goto fail;
		}
	}
	err = fuse_server_create(dir, &opts, log, &fs->srv);
	if (err < 0)
		goto fail; /* logged by the server */
	memcpy(fs->config + VIRTIO_FS_CFG_TAG, tag, strlen(tag));
	put_le32(fs->config + VIRTIO_FS_CFG_NUM_REQ_QUEUES,
		 VIRTIO_FS_REQUEST_QUEUES);
	dev->ops = &virtio_fs_ops;
	dev->priv = fs;
	return 0;
fail:
	for (unsigned i = 0; i < FS_NUM_QUEUES; i++)
		free(fs->chains[i]);
	free(fs);
	return err;
}

void virtio_fs_destroy(struct virtio_dev *dev)
{
	struct virtio_fs *fs;

	if (!dev || dev->ops != &virtio_fs_ops || !dev->priv)
		return;
	fs = dev->priv;
	fuse_server_destroy(fs->srv);
	for (unsigned i = 0; i < FS_NUM_QUEUES; i++)
		free(fs->chains[i]);
	free(fs);
	dev->priv = NULL;
}

void virtio_fs_get_stats(const struct virtio_dev *dev,
			 struct virtio_fs_stats *out)
{
	const struct virtio_fs *fs =
		dev && dev->ops == &virtio_fs_ops ? dev->priv : NULL;

	memset(out, 0, sizeof(*out));
	if (!fs)
		return;
	for (unsigned i = 0; i < FS_NUM_QUEUES; i++) {
		out->requests += fs->stats[i].requests;
		out->no_reply += fs->stats[i].no_reply;
		out->dropped += fs->stats[i].dropped;
	}
}
