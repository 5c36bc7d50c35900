/* SPDX-License-Identifier: MIT */
/* Logging through the embedder's callback; no global state. */
#ifndef KILN_UTIL_LOG_H
#define KILN_UTIL_LOG_H

#include <kiln/kiln.h>

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

#define log_error(l, ...) kiln_logf((l), KILN_LOG_ERROR, __VA_ARGS__)
#define log_warn(l, ...)  kiln_logf((l), KILN_LOG_WARN, __VA_ARGS__)
#define log_info(l, ...)  kiln_logf((l), KILN_LOG_INFO, __VA_ARGS__)
#define log_debug(l, ...) kiln_logf((l), KILN_LOG_DEBUG, __VA_ARGS__)

#endif
