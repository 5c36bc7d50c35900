/* SPDX-License-Identifier: MIT */
/* Shared by the FUSE server's unit tests: the log sink of test_log.h, and
 * recursive removal of a test share. */
#ifndef KILN_TESTS_FUSE_TEST_UTIL_H
#define KILN_TESTS_FUSE_TEST_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

#include "test_log.h"

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
