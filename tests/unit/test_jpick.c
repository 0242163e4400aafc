/* Unit tests for util/jpick: several members of an object in one pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util/jpick.h"

static void test_picks(void **state) {
    (void)state;
    json_t *o = json_loads("{\"type\":\"track\",\"traits\":{\"a\":1},\"t\":2,\"userId\":null,"
                           "\"context\":{},\"tr\":3}",
                           0, NULL);
    assert_non_null(o);
    static const char *const names[] = {"traits", "type", "userId", "anonymousId", "context", "t"};
    const json_t *m[6];
    jpick(o, names, 6, m);
    assert_ptr_equal(m[0], json_object_get(o, "traits"));
    assert_ptr_equal(m[1], json_object_get(o, "type"));
    assert_true(json_is_null(m[2])); /* present, null */
    assert_null(m[3]);               /* absent */
    assert_ptr_equal(m[4], json_object_get(o, "context"));
    assert_ptr_equal(m[5], json_object_get(o, "t")); /* not taken for "traits" or "type" */
    json_decref(o);
}

static void test_not_an_object(void **state) {
    (void)state;
    static const char *const names[] = {"a"};
    const json_t *m[1] = {(const json_t *)1};
    jpick(NULL, names, 1, m);
    assert_null(m[0]);
    json_t *arr = json_loads("[{\"a\":1}]", 0, NULL);
    m[0] = (const json_t *)1;
    jpick(arr, names, 1, m);
    assert_null(m[0]);
    json_decref(arr);
    json_t *empty = json_object();
    m[0] = (const json_t *)1;
    jpick(empty, names, 1, m);
    assert_null(m[0]);
    json_decref(empty);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_picks),
        cmocka_unit_test(test_not_an_object),
    };
    return cmocka_run_group_tests_name("jpick", tests, NULL, NULL);
}
