/* SPDX-License-Identifier: MIT */
/* Shared by the FUSE server's unit tests: a log sink that keeps the last
 * message, and recursive removal of a test share. */
#ifndef KILN_TESTS_FUSE_TEST_UTIL_H
#define KILN_TESTS_FUSE_TEST_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

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

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
