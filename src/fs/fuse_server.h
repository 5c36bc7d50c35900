/* SPDX-License-Identifier: MIT */
/*
 * In-process FUSE 7.31 server: the file system half of kiln's virtio-fs
 * device. It serves one host directory (the share) to a hostile guest.
 *
 * Every request is copied out of guest memory before it is checked (no
 * double fetch), then validated: header length against the buffers, fixed
 * argument sizes, names (NUL-terminated, 1..255 bytes, no '/', not "." or
 * ".."), offsets and sizes. The guest names host objects only through
 * nodeids and file handles the server handed out (see fs_table.h); every
 * name is resolved one component at a time relative to its parent's O_PATH
 * fd, with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
 * RESOLVE_NO_SYMLINKS) or, where that syscall is missing, openat with
 * O_NOFOLLOW. Symlinks are data (READLINK), never followed on the host;
 * only regular files and directories are ever opened for I/O; a read-only
 * share answers every mutating request with EROFS. Unsupported opcodes get
 * ENOSYS. See docs/fs-escape-suite.md.
 *
 * The server runs with the embedder's credentials; new files get the
 * caller's uid/gid only when that is root. Requests may come from several
 * threads (two READDIRs on one directory handle at once may see each
 * other's position: safe, but the listing is then undefined, as it is in
 * the guest kernel, which never sends them).
 */
#ifndef KILN_FS_FUSE_SERVER_H
#define KILN_FS_FUSE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"
#include "virtio/virtqueue.h"

#define FUSE_SERVER_MAJOR     7
#define FUSE_SERVER_MINOR     31
#define FUSE_SERVER_MAX_WRITE (1u << 20) /* also the largest READ served */
#define FUSE_SERVER_MAX_PAGES 256	 /* max_write in 4 KiB pages */

#define FUSE_SERVER_DEFAULT_MAX_INODES	65536
#define FUSE_SERVER_DEFAULT_MAX_HANDLES 4096

struct fuse_server_opts {
	bool read_only; /* every mutating request fails with EROFS */
	bool xattr;	/* serve user.* xattrs; else xattr ops are ENOSYS */
	bool no_dev;	/* MKNOD of char/block devices, and chmod/chown of
			   existing ones, fail with EPERM */
	uint32_t max_inodes;  /* live nodeids, root included; 0: default */
	uint32_t max_handles; /* open files and dirs; 0: default */
};

struct fuse_server_stats {
	uint32_t inodes;  /* live inodes, root included */
	uint32_t handles; /* open handles */
};

struct fuse_server;

/* Opens the share at root_dir (must be a directory; needs /proc/self/fd)
 * and returns a server in *out. Each inode and handle holds one fd: the
 * embedder's RLIMIT_NOFILE must cover max_inodes + max_handles. log may be
 * NULL, else must outlive the server. Returns 0 or -errno (logged). */
int fuse_server_create(const char *root_dir,
		       const struct fuse_server_opts *opts,
		       const struct kiln_log *log, struct fuse_server **out);

/* Closes every handle and inode and frees the server; NULL is a no-op. No
 * request may be running. */
void fuse_server_destroy(struct fuse_server *s);

/* Serves one request: struct fuse_in_header and arguments in req's
 * device-readable segments, the reply (struct fuse_out_header and body)
 * written into its device-writable ones. Returns 0 with *written = the
 * reply's length, or 0 for FORGET and BATCH_FORGET, which have no reply;
 * -EINVAL with *written = 0 when no reply can be made (fewer readable bytes
 * than a header, or no room for the reply header). */
int fuse_server_handle(struct fuse_server *s, const struct virtq_chain *req,
		       uint32_t *written);

/* fuse_server_handle on flat buffers (tests, fuzzers, benchmarks): the
 * request is in[0, in_len), the reply goes to out[0, out_cap), its length
 * to *out_len. Same returns. */
int fuse_server_handle_buf(struct fuse_server *s, const void *in, size_t in_len,
			   void *out, size_t out_cap, size_t *out_len);

/* Drops everything the guest driver held (lookups, open handles) and
 * requires a new INIT, as after DESTROY; for a device reset. */
void fuse_server_reset(struct fuse_server *s);

/* Current inode and handle counts. */
void fuse_server_get_stats(struct fuse_server *s, struct fuse_server_stats *st);

#endif
