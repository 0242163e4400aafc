/* Unit tests for util/jmerge: RFC 7396's own examples (appendix A), and that the result shares no
 * value with the patch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util/jmerge.h"

/* Merges patch into target (JSON texts) and compares with want. The RFC's examples with a target
 * or patch that is not an object are the caller's business (every engaged resource is one). */
static void check(const char *target, const char *patch, const char *want) {
    json_t *t = json_loads(target, 0, NULL), *p = json_loads(patch, 0, NULL),
           *w = json_loads(want, 0, NULL);
    assert_non_null(t);
    assert_non_null(p);
    assert_non_null(w);
    assert_int_equal(jmerge_patch(t, p), 0);
    assert_true(json_equal(t, w));
    json_decref(t);
    json_decref(p);
    json_decref(w);
}

static void test_rfc7396_examples(void **state) {
    (void)state;
    check("{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    check("{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}");
    check("{\"a\":\"b\"}", "{\"a\":null}", "{}");
    check("{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}");
    check("{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    check("{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}");
    check("{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}");
    check("{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}");
    check("{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}");
    check("{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}");
}

static void test_no_sharing(void **state) {
    (void)state;
    json_t *t = json_object(), *p = json_loads("{\"list\":[1,2]}", 0, NULL);
    assert_int_equal(jmerge_patch(t, p), 0);
    /* Changing the target's copy leaves the patch as it was. */
    json_array_append_new(json_object_get(t, "list"), json_integer(3));
    assert_int_equal(json_array_size(json_object_get(p, "list")), 2);
    assert_ptr_not_equal(json_object_get(t, "list"), json_object_get(p, "list"));
    json_decref(t);
    json_decref(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7396_examples),
        cmocka_unit_test(test_no_sharing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
