/* SPDX-License-Identifier: MIT */
/*
 * Test support: a fresh temporary directory per test and its removal.
 */
#ifndef MS_TESTS_SUPPORT_TMPDIR_H
#define MS_TESTS_SUPPORT_TMPDIR_H

#include <stddef.h>

/* test_tmpdir creates $TMPDIR/monoshop-test.XXXXXX; returns 0 or -errno. */
int test_tmpdir(char *out, size_t len);

/* test_rmdir removes |dir| and everything under it. */
void test_rmdir(const char *dir);

#endif
