/* SPDX-License-Identifier: MIT */
/*
 * A minimal FUSE client that drives a fuse_server in-process, laid out the
 * way a guest driver lays out a virtio-fs request: header and arguments in
 * one readable segment, WRITE data in the caller's own segments, the reply
 * header in one writable segment and the reply body (READ data included)
 * straight in the caller's buffer. For tests, fuzz seeds and benchmarks;
 * it trusts nothing in the reply (checks length, unique and error range).
 */
#ifndef KILN_FS_FUSE_CLIENT_H
#define KILN_FS_FUSE_CLIENT_H

#include <linux/fuse.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "fs/fuse_server.h"

#define FUSE_CLIENT_ARG_MAX (128 * 1024) /* header + arguments */

struct fuse_client {
	struct fuse_server *s;
	uint64_t unique;
	uint32_t uid, gid, pid; /* sent in every header */
	struct virtq_chain *chain;
	uint8_t *req; /* FUSE_CLIENT_ARG_MAX bytes */
	struct fuse_out_header rep_hdr;
	int last_ret; /* fuse_server_handle's return for the last call */
};

/* Allocates the client's buffers for server s. Returns 0 or -ENOMEM. */
int fuse_client_open(struct fuse_client *c, struct fuse_server *s);

/* Frees the buffers; the server is left alone. */
void fuse_client_close(struct fuse_client *c);

/* Builds "header + arg[0, arg_len)" as a request, appends the n_data
 * readable segments, and serves it with reply body space rbuf[0, rcap).
 * Returns the reply's error (0 or -errno) with *rlen (may be NULL) = body
 * bytes; 1 if there was no reply (FORGET); -EPROTO if the reply is
 * malformed; -E2BIG if the arguments do not fit. */
int fuse_client_call(struct fuse_client *c, uint32_t opcode, uint64_t nodeid,
		     const void *arg, size_t arg_len, const struct iovec *data,
		     unsigned n_data, void *rbuf, size_t rcap, size_t *rlen);

/* Builds arguments "fixed struct, then each string with its NUL" into buf
 * (cap bytes); returns the length, or 0 if it does not fit. */
size_t fuse_client_args(void *buf, size_t cap, const void *fixed,
			size_t fixed_len, const char *s1, const char *s2);

/* Common requests; each returns 0 or -errno as fuse_client_call. */
int fuse_client_init(struct fuse_client *c, struct fuse_init_out *out);
int fuse_client_lookup(struct fuse_client *c, uint64_t parent, const char *name,
		       struct fuse_entry_out *e);
int fuse_client_forget(struct fuse_client *c, uint64_t nodeid, uint64_t n);
int fuse_client_getattr(struct fuse_client *c, uint64_t nodeid,
			struct fuse_attr *a);
int fuse_client_mkdir(struct fuse_client *c, uint64_t parent, const char *name,
		      uint32_t mode, struct fuse_entry_out *e);
int fuse_client_create(struct fuse_client *c, uint64_t parent, const char *name,
		       uint32_t flags, uint32_t mode, struct fuse_entry_out *e,
		       uint64_t *fh);
int fuse_client_unlink(struct fuse_client *c, uint64_t parent,
		       const char *name);
int fuse_client_openfile(struct fuse_client *c, uint64_t nodeid, uint32_t flags,
			 uint64_t *fh);
int fuse_client_opendir(struct fuse_client *c, uint64_t nodeid, uint64_t *fh);
int fuse_client_release(struct fuse_client *c, uint64_t nodeid, uint64_t fh,
			int dir);

/* READ into buf / WRITE from buf; return bytes or -errno. */
ssize_t fuse_client_read(struct fuse_client *c, uint64_t nodeid, uint64_t fh,
			 uint64_t off, void *buf, uint32_t size);
ssize_t fuse_client_write(struct fuse_client *c, uint64_t nodeid, uint64_t fh,
			  uint64_t off, const void *buf, uint32_t size);

#endif
