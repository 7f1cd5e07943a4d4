/* SPDX-License-Identifier: MIT */
/*
 * Test support: temporary directories (see tmpdir.h).
 */
#define _XOPEN_SOURCE 700
#include "support/tmpdir.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

int
test_tmpdir(char *out, size_t len)
{
	const char *base = getenv("TMPDIR");

	snprintf(out, len, "%s/monoshop-test.XXXXXX", base ? base : "/tmp");
	return mkdtemp(out) ? 0 : -errno;
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void
test_rmdir(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
