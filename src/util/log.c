/* SPDX-License-Identifier: MIT */
#include "log.h"
#include "util/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

static void rl_lock(struct kiln_ratelimit *rl)
{
	while (__atomic_exchange_n(&rl->lock, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&rl->lock, __ATOMIC_RELAXED))
			;
}

static void rl_unlock(struct kiln_ratelimit *rl)
{
	__atomic_store_n(&rl->lock, 0, __ATOMIC_RELEASE);
}

bool kiln_ratelimit_at(struct kiln_ratelimit *rl, int64_t now,
		       uint64_t *suppressed)
{
	bool ok;

	rl_lock(rl);
	if (!rl->started) {
		rl->started = true;
		rl->tokens = KILN_RATELIMIT_BURST;
		rl->refill_ms = now;
	} else if (now > rl->refill_ms) {
		int64_t n = (now - rl->refill_ms) / KILN_RATELIMIT_INTERVAL_MS;

		if (n >= KILN_RATELIMIT_BURST - (int64_t)rl->tokens) {
			rl->tokens = KILN_RATELIMIT_BURST;
			rl->refill_ms = now;
		} else if (n > 0) {
			rl->tokens += (uint32_t)n;
			rl->refill_ms += n * KILN_RATELIMIT_INTERVAL_MS;
		}
	} else if (now < rl->refill_ms) {
		rl->refill_ms = now; /* a clock that went back: start over */
	}
	ok = rl->tokens > 0;
	if (ok) {
		rl->tokens--;
		if (suppressed)
			*suppressed = rl->suppressed;
		rl->suppressed = 0;
	} else {
		rl->suppressed++;
	}
	rl_unlock(rl);
	return ok;
}

bool kiln_ratelimit(struct kiln_ratelimit *rl, uint64_t *suppressed)
{
	return kiln_ratelimit_at(rl, now_ms(), suppressed);
}

void kiln_logf_limited(const struct kiln_log *log, struct kiln_ratelimit *rl,
		       enum kiln_log_level level, const char *fmt, ...)
{
	char buf[1024];
	uint64_t dropped = 0;
	va_list ap;
	int n;

	if (!log || !log->fn || level > log->max_level)
		return;
	if (rl && !kiln_ratelimit(rl, &dropped))
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (dropped) {
		size_t len = strlen(buf);

		if (len > sizeof(buf) - 48)
			len = sizeof(buf) - 48;
		snprintf(buf + len, sizeof(buf) - len,
			 " (%llu similar messages suppressed)",
			 (unsigned long long)dropped);
	}
	log->fn(log->opaque, level, buf);
}
