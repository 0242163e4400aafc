/* Unit tests for util/vec: doubling from four, the small arrays' exact start and quarter growth
 * with their overflow and 32-bit limits, and the filled arrays' new entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "util/vec.h"

static void test_doubling(void **state) {
    (void)state;
    int *v = NULL;
    size_t alloc = 0;
    assert_int_equal(vec_reserve((void **)&v, &alloc, 1, sizeof *v), 0);
    assert_int_equal(alloc, 4);
    assert_int_equal(vec_reserve((void **)&v, &alloc, 4, sizeof *v), 0);
    assert_int_equal(alloc, 4); /* room already: nothing moves */
    assert_int_equal(vec_reserve((void **)&v, &alloc, 9, sizeof *v), 0);
    assert_int_equal(alloc, 16);
    free(v);
}

/* Exactly the need at first, then a quarter more (at least the need): 1, 2, 3, 4, 5, 6, 7, 8, 10,
 * 12, 15, 18, 22. */
static void test_small_growth(void **state) {
    (void)state;
    int *v = NULL;
    size_t alloc = 0;
    static const size_t steps[] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 10, 12, 12, 15, 15, 15, 18};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        assert_int_equal(vec_reserve_small((void **)&v, &alloc, i + 1, sizeof *v), 0);
        v[i] = (int)i; /* the room is really there (ASan checks) */
        assert_int_equal(alloc, steps[i]);
    }
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++)
        assert_int_equal(v[i], (int)i);
    /* A jump asks for exactly what is needed. */
    assert_int_equal(vec_reserve_small((void **)&v, &alloc, 100, sizeof *v), 0);
    assert_int_equal(alloc, 100);
    free(v);
}

static void test_small_limits(void **state) {
    (void)state;
    char *v = NULL;
    size_t alloc = 0;
    /* need * elem would overflow: refused, nothing changed. */
    assert_int_equal(vec_reserve_small((void **)&v, &alloc, SIZE_MAX / 2, 4), -1);
    assert_null(v);
    assert_int_equal(alloc, 0);
    uint32_t a32 = 0;
    assert_int_equal(vec_reserve_small32((void **)&v, &a32, (size_t)UINT32_MAX + 1, 1), -1);
    assert_int_equal(vec_reserve_small32((void **)&v, &a32, 3, 1), 0);
    assert_int_equal(a32, 3);
    assert_int_equal(vec_reserve_small32((void **)&v, &a32, 4, 1), 0);
    assert_int_equal(a32, 4);
    free(v);
}

/* Entries made by growth hold the fill; those already there keep their values. */
static void test_filled(void **state) {
    (void)state;
    uint32_t *v = NULL;
    size_t alloc = 0;
    assert_int_equal(vec_reserve_filled((void **)&v, &alloc, 3, sizeof *v, 0xff), 0);
    assert_int_equal(alloc, 3);
    for (size_t i = 0; i < alloc; i++)
        assert_int_equal(v[i], UINT32_MAX);
    v[1] = 7;
    assert_int_equal(vec_reserve_filled((void **)&v, &alloc, 40, sizeof *v, 0), 0);
    assert_int_equal(alloc, 40);
    assert_int_equal(v[1], 7);
    assert_int_equal(v[2], UINT32_MAX);
    for (size_t i = 3; i < alloc; i++)
        assert_int_equal(v[i], 0);
    free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubling),
        cmocka_unit_test(test_small_growth),
        cmocka_unit_test(test_small_limits),
        cmocka_unit_test(test_filled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
