/* SPDX-License-Identifier: MIT */
/* A log sink for unit tests: test_log keeps the last message in last_log
 * and counts them in n_logs. */
#ifndef KILN_TESTS_TEST_LOG_H
#define KILN_TESTS_TEST_LOG_H

#include <stdio.h>

#include <kiln/kiln.h>

#include "util/log.h"

static char last_log[1024];
static unsigned n_logs;

static void capture_log(void *opaque, enum kiln_log_level level,
			const char *msg)
{
	(void)opaque;
	(void)level;
	snprintf(last_log, sizeof(last_log), "%s", msg);
	n_logs++;
}

static const struct kiln_log test_log = {capture_log, NULL, KILN_LOG_DEBUG};

#endif
