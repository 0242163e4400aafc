/* jsonw: compact JSON with shortest round-trip reals. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/jsonw.h"

static void expect_text(json_t *v, const char *want) {
    buf b = BUF_INIT(0);
    assert_int_equal(jsonw_value(&b, v), BUF_OK);
    assert_string_equal(buf_str(&b), want);
    buf_free(&b);
    json_decref(v);
}

static void test_scalars(void **state) {
    (void)state;
    expect_text(json_integer(0), "0");
    expect_text(json_integer(-42), "-42");
    expect_text(json_integer(INT64_MIN), "-9223372036854775808");
    expect_text(json_integer(INT64_MAX), "9223372036854775807");
    expect_text(json_real(19.99), "19.99");
    expect_text(json_real(20), "20.0");
    expect_text(json_real(-0.5), "-0.5");
    expect_text(json_real(1e-7), "1e-7");
    expect_text(json_real(1e300), "1e300");
    expect_text(json_real(0.1 + 0.2), "0.30000000000000004");
    expect_text(json_true(), "true");
    expect_text(json_false(), "false");
    expect_text(json_null(), "null");
    expect_text(json_string("a\"b\\c\n\x01/é"), "\"a\\\"b\\\\c\\n\\u0001/é\"");
}

static void test_containers_keep_order(void **state) {
    (void)state;
    json_t *o = json_pack("{s:i, s:[i, s, {}], s:{s:n}, s:[]}", "z", 1, "a", 2, "x", "m", "k", "e");
    expect_text(o, "{\"z\":1,\"a\":[2,\"x\",{}],\"m\":{\"k\":null},\"e\":[]}");
}

/* Every real read back from what jsonw wrote is the same double, for many random doubles. */
static void test_round_trip(void **state) {
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double d;
        memcpy(&d, &x, sizeof d);
        if (d != d || d - d != 0) continue; /* NaN or infinity: not JSON */
        buf b = BUF_INIT(0);
        assert_int_equal(jsonw_real(&b, d), BUF_OK);
        json_error_t je;
        json_t *back = json_loads(buf_str(&b), JSON_DECODE_ANY, &je);
        assert_non_null(back);
        assert_true(json_is_real(back));
        assert_true(json_real_value(back) == d);
        json_decref(back);
        buf_free(&b);
    }
}

static void test_cap(void **state) {
    (void)state;
    json_t *v = json_pack("{s:s}", "key", "a long enough value");
    buf b = BUF_INIT(10);
    assert_int_equal(jsonw_value(&b, v), BUF_TOOBIG);
    assert_true(b.len <= 10);
    buf_free(&b);
    json_decref(v);
}

static void check_fixed(double d, int decimals, const char *want) {
    buf b = BUF_INIT(0);
    assert_int_equal(jsonw_fixed(&b, d, decimals), BUF_OK);
    assert_int_equal(buf_putc(&b, '\0'), BUF_OK);
    assert_string_equal(b.data, want);
    buf_free(&b);
}

static void test_fixed(void **state) {
    (void)state;
    check_fixed(1.0, 6, "1.0");
    check_fixed(0, 6, "0.0");
    check_fixed(435.25, 6, "435.25");
    check_fixed(1.0 / 3, 6, "0.333333");
    check_fixed(2.0 / 3, 6, "0.666667");
    check_fixed(0.0000004, 6, "0.0");
    check_fixed(0.0000005, 6, "0.000001");
    check_fixed(-12.5, 2, "-12.5");
    check_fixed(-0.0000001, 6, "0.0"); /* no "-0.0" */
    check_fixed(19.99, 2, "19.99");
    check_fixed(1234567.125, 0, "1234567.0");
    check_fixed(999999999999.5, 1, "999999999999.5");
    check_fixed(1e12, 6, "1000000000000.0"); /* past the range: jsonw_real */
    check_fixed(NAN, 6, "null");
    check_fixed(2.5, 12, "2.5"); /* decimals out of range: jsonw_real */
    /* Every value written reads back within half a unit of the last place. */
    for (int i = 0; i < 10000; i++) {
        double d = (i * 7919 % 100000) / 7.0 - 5000;
        buf b = BUF_INIT(0);
        assert_int_equal(jsonw_fixed(&b, d, 6), BUF_OK);
        buf_putc(&b, '\0');
        assert_true(fabs(strtod(b.data, NULL) - d) <= 0.5e-6 + 1e-9);
        buf_free(&b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),    cmocka_unit_test(test_containers_keep_order),
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_cap),
        cmocka_unit_test(test_fixed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
