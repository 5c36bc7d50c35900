/* SPDX-License-Identifier: MIT */
/* Logging through the embedder's callback; no global state. */
#ifndef KILN_UTIL_LOG_H
#define KILN_UTIL_LOG_H

#include <kiln/kiln.h>
#include <stdbool.h>
#include <stdint.h>

struct kiln_log {
	kiln_log_fn fn;
	void *opaque;
	enum kiln_log_level max_level;
};

/* Formats and delivers one message if level <= max_level and fn is set. */
void kiln_logf(const struct kiln_log *log, enum kiln_log_level level,
	       const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Logs an error message and returns err (a negative errno) for `return`. */
int kiln_errorf(const struct kiln_log *log, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * A token bucket for messages a guest or a peer can trigger at will: up to
 * KILN_RATELIMIT_BURST at once, then one per KILN_RATELIMIT_INTERVAL_MS.
 * All zeros is a full bucket, so it can live in any zeroed struct; it is
 * safe to share between threads.
 */
#define KILN_RATELIMIT_BURST	   10
#define KILN_RATELIMIT_INTERVAL_MS 1000

struct kiln_ratelimit {
	int lock;	     /* a spinlock (held for a few instructions) */
	bool started;	     /* false: the bucket is full */
	uint32_t tokens;     /* messages that may go out now */
	int64_t refill_ms;   /* when the last token was added */
	uint64_t suppressed; /* dropped since the last one that went out */
};

/* True if a message may go out at now_ms (monotonic). When it may,
 * *suppressed (if non-NULL) gets how many were refused since the last one
 * allowed, and the count starts again. */
bool kiln_ratelimit_at(struct kiln_ratelimit *rl, int64_t now_ms,
		       uint64_t *suppressed);

/* kiln_ratelimit_at with the monotonic clock. */
bool kiln_ratelimit(struct kiln_ratelimit *rl, uint64_t *suppressed);

/* kiln_logf for guest- or peer-triggerable lines: rate-limited by rl
 * (messages the log would filter out by level cost nothing). The first
 * message after a suppression ends in "(N similar messages suppressed)". */
void kiln_logf_limited(const struct kiln_log *log, struct kiln_ratelimit *rl,
		       enum kiln_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define log_error(l, ...) kiln_logf((l), KILN_LOG_ERROR, __VA_ARGS__)
#define log_warn(l, ...)  kiln_logf((l), KILN_LOG_WARN, __VA_ARGS__)
#define log_info(l, ...)  kiln_logf((l), KILN_LOG_INFO, __VA_ARGS__)
#define log_debug(l, ...) kiln_logf((l), KILN_LOG_DEBUG, __VA_ARGS__)

#endif
