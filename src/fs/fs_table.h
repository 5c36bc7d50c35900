/* SPDX-License-Identifier: MIT */
/*
 * The FUSE server's inode and open-handle tables (internal to src/fs/).
 *
 * An inode is an O_PATH|O_NOFOLLOW fd on a host object inside the share,
 * found again by (st_dev, st_ino) so one host object has one nodeid. Two
 * counts keep it alive:
 *   nlookup - the guest's lookup count (LOOKUP/CREATE/... add, FORGET
 *             subtracts, saturating at 0); while it is non-zero it holds
 *             one server reference.
 *   refs    - the server's own references: the lookup one above, one per
 *             open handle on the inode, one per request using it, and a
 *             permanent one on the root.
 * Only refs reaching 0 frees an inode, so no FORGET storm can free the root
 * or an inode a handle or a running request still uses.
 *
 * Nodeids and file handles are (generation << 32 | slot + 1): a slot's
 * generation changes when it is freed, so a stale or guessed id finds
 * nothing instead of someone else's object. The guest can only name objects
 * this table handed out. All functions are thread-safe (one mutex).
 */
#ifndef KILN_FS_FS_TABLE_H
#define KILN_FS_FS_TABLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "util/log.h"

struct fs_inode {
	int fd;	     /* O_PATH|O_NOFOLLOW; fixed for the inode's life */
	mode_t type; /* S_IFMT bits: an object never changes type */
	dev_t dev;
	ino_t ino;
	uint64_t nodeid;
	uint64_t nlookup; /* guest's count */
	uint32_t refs;	  /* server's count */
	struct fs_inode *hnext;
};

struct fs_handle {
	int fd; /* opened for I/O: regular file or directory */
	bool dir;
	uint64_t fh;
	uint32_t refs; /* 1 while in the table + 1 per request using it */
	struct fs_inode *inode; /* holds one inode reference */
};

struct fs_slot {
	void *p;
	uint32_t gen;
	uint32_t next_free;
};

struct fs_slots {
	struct fs_slot *v;
	uint32_t len, cap, max, used;
	uint32_t free_head;
};

struct fs_table {
	pthread_mutex_t lock;
	const struct kiln_log *log;
	struct fs_slots inodes, handles;
	struct fs_inode **hash; /* (dev, ino) -> inode */
	uint32_t hash_size;	/* power of two */
	struct fs_inode *root;
	bool inode_limit_logged, handle_limit_logged;
};

/* Sets up empty tables with the given limits (>= 1); root_fd (O_PATH, a
 * directory, st its fstat) becomes nodeid 1, owned by the table from then
 * on, also on failure. Returns 0 or -ENOMEM. */
int fs_table_init(struct fs_table *t, const struct kiln_log *log, int root_fd,
		  const struct stat *st, uint32_t max_inodes,
		  uint32_t max_handles);

/* Closes every handle and inode; no request may be running. */
void fs_table_destroy(struct fs_table *t);

/* Finds the inode for a guest nodeid and takes a reference (put it with
 * fs_inode_put). -EBADF for an id this table does not hold. */
int fs_inode_get(struct fs_table *t, uint64_t nodeid, struct fs_inode **out);

/* Drops a reference from fs_inode_get / fs_inode_publish. */
void fs_inode_put(struct fs_table *t, struct fs_inode *ino);

/* Records one guest lookup of the object behind fd (an O_PATH fd the caller
 * opened; st its fstat): an existing inode for (st_dev, st_ino) is reused
 * and fd closed, else a new one takes fd. Returns 0 with the inode and one
 * reference for the caller; -ENFILE (fd closed, logged) at max_inodes. */
int fs_inode_publish(struct fs_table *t, int fd, const struct stat *st,
		     struct fs_inode **out);

/* Subtracts n from the guest's lookup count of nodeid (saturating);
 * unknown ids are ignored, as FORGET has no reply. */
void fs_inode_forget(struct fs_table *t, uint64_t nodeid, uint64_t n);

/* Opens a handle on fd (owned by the table from then on, also on failure)
 * for ino; the handle takes its own inode reference. Returns 0 and the
 * guest's fh, or -ENFILE (logged) at max_handles, -ENOMEM. */
int fs_handle_new(struct fs_table *t, int fd, bool dir, struct fs_inode *ino,
		  uint64_t *fh);

/* Finds a handle and takes a reference (put with fs_handle_put); -EBADF
 * for an fh this table does not hold. */
int fs_handle_get(struct fs_table *t, uint64_t fh, struct fs_handle **out);

/* Drops a reference from fs_handle_get. */
void fs_handle_put(struct fs_table *t, struct fs_handle *h);

/* Removes fh from the table (its fd closes once no request uses it).
 * Returns 0 or -EBADF. */
int fs_handle_release(struct fs_table *t, uint64_t fh);

/* Forgets every guest lookup and releases every handle: what the guest
 * driver held is gone after DESTROY or a device reset. The root stays. */
void fs_table_reset(struct fs_table *t);

/* Counts of live inodes (root included) and open handles. */
void fs_table_counts(struct fs_table *t, uint32_t *inodes, uint32_t *handles);

#endif
