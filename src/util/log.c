/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static void vlog(const struct kiln_log *log, enum kiln_log_level level,
		 const char *fmt, va_list ap)
{
	char buf[1024];

	if (!log || !log->fn || level > log->max_level)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	log->fn(log->opaque, level, buf);
}

void kiln_logf(const struct kiln_log *log, enum kiln_log_level level,
	       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(log, level, fmt, ap);
	va_end(ap);
}

int kiln_errorf(const struct kiln_log *log, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(log, KILN_LOG_ERROR, fmt, ap);
	va_end(ap);
	return err;
}
