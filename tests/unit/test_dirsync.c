/* Unit tests for util/dirsync: a directory syncs; a missing one or a file is an error with errno.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/dirsync.h"

static void test_dir_sync(void **state) {
    (void)state;
    char dir[] = "/tmp/engaged-dirsync-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(dir_sync(dir), 0);
    char file[64];
    snprintf(file, sizeof file, "%s/f", dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    errno = 0;
    assert_int_equal(dir_sync(file), -1); /* not a directory */
    assert_int_equal(errno, ENOTDIR);
    unlink(file);
    rmdir(dir);
    errno = 0;
    assert_int_equal(dir_sync(dir), -1); /* gone */
    assert_int_equal(errno, ENOENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_dir_sync)};
    return cmocka_run_group_tests_name("dirsync", tests, NULL, NULL);
}
