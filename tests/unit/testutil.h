/* testutil — what the unit tests that touch the file system share: a temp directory per test. */
#ifndef ENGAGED_TESTUTIL_H
#define ENGAGED_TESTUTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int testutil_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Removes dir and everything below it. Returns 0 or -1. */
static inline int test_rmtree(const char *dir) {
    return nftw(dir, testutil_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

#endif
