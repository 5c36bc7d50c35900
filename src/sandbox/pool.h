/* SPDX-License-Identifier: MIT */
/*
 * The pool engine behind kiln_pool_*: keeps `target` members ready, made by
 * a source (booted sandboxes; tests use fake ones), on filler threads, and
 * destroys released or expired members on a reaper thread, so neither a
 * boot nor a teardown is ever on a claimer's path.
 */
#ifndef KILN_SANDBOX_POOL_H
#define KILN_SANDBOX_POOL_H

#include <stddef.h>

#include <kiln/kiln.h>

#include "util/log.h"

/* Where members come from. Every hook may block; make and destroy run on
 * the pool's threads (make also on a claimer's, for KILN_POOL_COLD). */
struct pool_source {
	void *ctx;
	/* One new member: 0 and *member, or -errno (logged through the
	 * pool's log, which keeps the last error message). */
	int (*make)(void *ctx, int timeout_ms, void **member);
	/* Whether a ready member still works (NULL: always). */
	int (*alive)(void *ctx, void *member);
	/* Ends and frees a member. */
	void (*destroy)(void *ctx, void *member);
	/* Frees ctx when the pool goes (NULL: nothing to free). */
	void (*free_ctx)(void *ctx);
};

/* A pool over src (taken over: its free_ctx runs when the pool goes, or
 * here on failure), logging to log (copied); not filling yet. 0 or -errno
 * (-EINVAL logged for options out of range). */
int pool_new(const struct pool_source *src, const struct kiln_pool_opts *o,
	     const struct kiln_log *log, struct kiln_pool **out);

/* The log a source's members should log through: the pool's, which
 * forwards to the caller's and keeps the last error message. Valid from
 * pool_new to kiln_pool_destroy. */
const struct kiln_log *pool_log(struct kiln_pool *p);

/* Sets the source's context (once, before pool_start). */
void pool_set_ctx(struct kiln_pool *p, void *ctx);

/* Starts the filler and reaper threads: 0 or -errno. */
int pool_start(struct kiln_pool *p);

/* acquire/release for any source's members. */
int pool_acquire(struct kiln_pool *p, int timeout_ms, bool try_only,
		 void **member);
void pool_release(struct kiln_pool *p, void *member);

#endif
