/* Unit tests for util/strpool: one copy per distinct string, stable pointers and ids across
 * growth, the byte cap, and the length cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util/strpool.h"

static void test_interning(void **state) {
    (void)state;
    strpool *p = strpool_new(1 << 20);
    char a[] = "Shoes", b[] = "Shoes";
    const char *x = strpool_intern(p, a), *y = strpool_intern(p, b);
    assert_ptr_equal(x, y);
    assert_ptr_not_equal(x, a);
    assert_string_equal(x, "Shoes");
    assert_int_equal(strpool_id(p, "Shoes"), 1);
    assert_int_equal(strpool_id(p, "Shirts"), 2);
    assert_string_equal(strpool_at(p, 2), "Shirts");
    /* find never interns: a miss stays a miss, and the count does not move. */
    assert_int_equal(strpool_find(p, "Shirts"), 2);
    assert_int_equal(strpool_find(p, "Socks"), 0);
    assert_int_equal(strpool_count(p), 2);
    assert_null(strpool_at(p, 0));
    assert_null(strpool_at(p, 3));
    assert_int_equal(strpool_id(p, "Socks"), 3);
    assert_int_equal(strpool_find(p, "Socks"), 3);
    assert_int_equal(strpool_count(p), 3);
    strpool_free(p);
}

/* 100,000 names: every pointer and id taken early still reads back after the table and the
 * chunks grew. */
static void test_growth(void **state) {
    (void)state;
    strpool *p = strpool_new(64 << 20);
    const char *first = strpool_intern(p, "name-0");
    char s[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(s, sizeof s, "name-%d", i);
        assert_int_equal(strpool_id(p, s), (uint32_t)i + 1);
    }
    assert_int_equal(strpool_count(p), 100000);
    assert_string_equal(first, "name-0");
    assert_ptr_equal(strpool_intern(p, "name-0"), first);
    assert_string_equal(strpool_at(p, 77778), "name-77777");
    strpool_free(p);
}

static void test_caps(void **state) {
    (void)state;
    strpool *p = strpool_new(64);
    char big[STRPOOL_MAX_LEN + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_null(strpool_intern(p, big)); /* over the length cap */
    assert_int_equal(strpool_id(p, big), 0);
    /* 64 bytes hold a few short names (each costs its bytes, its NUL and a 4-byte id). */
    int taken = 0;
    for (int i = 0; i < 20; i++) {
        snprintf(big, sizeof big, "n%02d", i);
        taken += strpool_intern(p, big) != NULL;
    }
    assert_int_equal(taken, 8);                /* 8 x (3 + 1 + 4) = 64 */
    assert_non_null(strpool_intern(p, "n00")); /* already in: still found when full */
    strpool_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interning),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
