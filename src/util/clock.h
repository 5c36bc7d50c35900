/* SPDX-License-Identifier: MIT */
/* The monotonic clock in milliseconds, for deadlines. */
#ifndef KILN_UTIL_CLOCK_H
#define KILN_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC now, in milliseconds. */
static inline int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
