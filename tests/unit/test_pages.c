/* Unit tests for util/pages: whole pages inside the range read as zeros after a release; the
 * partial pages at its ends, and everything outside it, keep their bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/pages.h"

static void test_release(void **state) {
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = 64 * page;
    unsigned char *m = malloc(n);
    assert_non_null(m);
    memset(m, 0xAB, n);
    /* From the middle of page 3 to the middle of page 10 of the block (wherever it starts). */
    unsigned char *from = m + 3 * page + page / 2, *to = m + 10 * page + page / 2;
    pages_release(from, to);
    uintptr_t a = ((uintptr_t)from + page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t b = (uintptr_t)to & ~(uintptr_t)(page - 1);
    assert_true(b - a >= 6 * page);
    for (size_t i = 0; i < n; i++) {
        uintptr_t at = (uintptr_t)(m + i);
        unsigned char want = at >= a && at < b ? 0 : 0xAB;
        if (m[i] != want) fail_msg("byte %zu is 0x%02x, expected 0x%02x", i, m[i], want);
    }
    /* Released pages are memory like any other: written again, they keep what is written. */
    memset(m, 0x5C, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(m[i], 0x5C);
    pages_release(to, from); /* an empty range: nothing happens */
    pages_release(from, from + page / 4);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(m[i], 0x5C);
    free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release),
    };
    return cmocka_run_group_tests_name("pages", tests, NULL, NULL);
}
