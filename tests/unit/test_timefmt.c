/* Unit tests for util/timefmt: RFC 3339 parsing and formatting. Expected values were computed with
 * Python's datetime, independently of the code under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/timefmt.h"

#define T_MIN (-62135596800000LL) /* 0001-01-01T00:00:00.000Z */
#define T_MAX (253402300799999LL) /* 9999-12-31T23:59:59.999Z */

static void test_parse_accepts(void **state) {
    (void)state;
    static const struct {
        const char *text;
        int64_t ms;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T00:00:00.001Z", 1},
        {"1969-12-31T23:59:59.999Z", -1},
        {"2024-05-01T10:00:00Z", 1714557600000LL},
        {"2024-05-01T10:00:00.123Z", 1714557600123LL},
        {"2024-05-01T10:00:00.1Z", 1714557600100LL},
        {"2024-05-01T10:00:00.12Z", 1714557600120LL},
        {"2024-05-01T10:00:00.123456789Z", 1714557600123LL}, /* kept to the millisecond */
        {"2024-05-01T10:00:00.999999Z", 1714557600999LL},    /* truncated, not rounded */
        {"2024-05-01T10:00:00,5Z", 1714557600500LL},         /* ISO 8601 decimal comma */
        {"2024-05-01t10:00:00z", 1714557600000LL},
        {"2024-05-01 10:00:00Z", 1714557600000LL},
        {"2024-05-01T10:00Z", 1714557600000LL}, /* seconds may be left out */
        {"2024-05-01T12:00:00+02:00", 1714557600000LL},
        {"2024-05-01T12:00:00+0200", 1714557600000LL},
        {"2024-05-01T12:00:00+02", 1714557600000LL},
        {"2024-05-01T04:30:00-05:30", 1714557600000LL},
        {"2024-05-01T10:00:00+00:00", 1714557600000LL},
        {"2024-05-01T10:00:00-00:00", 1714557600000LL},
        {"2024-05-01T00:30:00+23:59", 1714437060000LL},
        {"2024-05-01", 1714521600000LL},
        {"2000-02-29T00:00:00Z", 951782400000LL},
        {"2024-02-29T12:34:56Z", 1709210096000LL},
        {"1600-02-29T00:00:00Z", -11670998400000LL},
        {"1900-03-01T00:00:00Z", -2203891200000LL},
        {"1969-07-20T20:17:40Z", -14182940000LL},
        {"2038-01-19T03:14:08Z", 2147483648000LL},
        {"2016-12-31T23:59:60Z", 1483228800000LL}, /* a leap second folds into the next */
        {"0001-01-01T00:00:00Z", T_MIN},
        {"0001-01-01", T_MIN},
        {"9999-12-31T23:59:59.999Z", T_MAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t ms = 42;
        if (!tf_parse(cases[i].text, strlen(cases[i].text), &ms))
            fail_msg("refused %s", cases[i].text);
        if (ms != cases[i].ms)
            fail_msg("%s -> %lld, expected %lld", cases[i].text, (long long)ms,
                     (long long)cases[i].ms);
    }
}

static void test_parse_rejects(void **state) {
    (void)state;
    static const char *const cases[] = {
        "",
        "2024",
        "2024-05",
        "2024-5-01",
        "2024-05-1",
        "24-05-01",
        "0000-01-01",
        "2024-00-01",
        "2024-13-01",
        "2024-01-00",
        "2024-01-32",
        "2024-04-31",
        "2023-02-29",
        "1900-02-29",
        "2100-02-29",
        "2024-05-01T",
        "2024-05-01T10",
        "2024-05-01T10:00", /* a time needs a zone */
        "2024-05-01T10:00:00",
        "2024-05-01T24:00:00Z",
        "2024-05-01T10:60:00Z",
        "2024-05-01T10:00:61Z",
        "2024-05-01T1:00:00Z",
        "2024-05-01T10:0:00Z",
        "2024-05-01T10:00:0Z",
        "2024-05-01T10:00:00.Z",
        "2024-05-01T10:00:00.1234567890Z", /* more than nanoseconds */
        "2024-05-01T10:00:00Zjunk",
        "2024-05-01T10:00:00ZZ",
        "2024-05-01T10:00:00 Z",
        "2024-05-01X10:00:00Z",
        "2024-05-01T10:00:00+24:00",
        "2024-05-01T10:00:00+02:60",
        "2024-05-01T10:00:00+2:00",
        "2024-05-01T10:00:00+02:0",
        "2024-05-01T10:00:00+02:00:00",
        "2024-05-01T10:00:00+",
        "2024-05-01T10:00:00UTC",
        " 2024-05-01",
        "2024-05-01 ",
        "2024/05/01",
        "2024-05-01T10:00:00.-1Z",
        "-024-05-01",
        "yesterday",
        "1714557600000",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t ms = 42;
        if (tf_parse(cases[i], strlen(cases[i]), &ms)) fail_msg("accepted '%s'", cases[i]);
        assert_int_equal(ms, 42); /* untouched on failure */
    }
}

/* The length bounds the parse: bytes past n are never read, and a cut-short string is refused. */
static void test_parse_length(void **state) {
    (void)state;
    int64_t ms;
    const char *s = "2024-05-01T10:00:00Zgarbage";
    assert_true(tf_parse(s, 20, &ms));
    assert_int_equal(ms, 1714557600000LL);
    assert_false(tf_parse(s, 19, &ms));
    assert_false(tf_parse(s, strlen(s), &ms));
    assert_true(tf_parse(s, 10, &ms)); /* the date alone */
    assert_int_equal(ms, 1714521600000LL);
    assert_false(tf_parse(s, 0, &ms));
    /* A heap copy without a NUL, so that AddressSanitizer catches a read past n. */
    char *exact = malloc(20);
    memcpy(exact, s, 20);
    assert_true(tf_parse(exact, 20, &ms));
    for (size_t n = 0; n < 20; n++)
        tf_parse(exact, n, &ms);
    free(exact);
}

static void test_format(void **state) {
    (void)state;
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1, "1970-01-01T00:00:00.001Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
        {-1000, "1969-12-31T23:59:59.000Z"},
        {-1001, "1969-12-31T23:59:58.999Z"},
        {-86400000, "1969-12-31T00:00:00.000Z"},
        {1714557600123LL, "2024-05-01T10:00:00.123Z"},
        {951782400000LL, "2000-02-29T00:00:00.000Z"},
        {1709210096000LL, "2024-02-29T12:34:56.000Z"},
        {-11670998400000LL, "1600-02-29T00:00:00.000Z"},
        {2147483648000LL, "2038-01-19T03:14:08.000Z"},
        {T_MIN, "0001-01-01T00:00:00.000Z"},
        {T_MAX, "9999-12-31T23:59:59.999Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[TF_LEN];
        char *r = tf_format(cases[i].ms, out);
        assert_ptr_equal(r, out);
        assert_string_equal(out, cases[i].text);
    }
}

/* Times of one second written in a row reuse that second's text (tf_format() keeps the last one
 * per thread): each must still come out whole, on both sides of 1970 and across seconds. */
static void test_format_same_second(void **state) {
    (void)state;
    static const struct {
        int64_t ms;
        const char *text;
    } seq[] = {
        {1700000000123LL, "2023-11-14T22:13:20.123Z"},
        {1700000000999LL, "2023-11-14T22:13:20.999Z"},
        {1700000000000LL, "2023-11-14T22:13:20.000Z"},
        {1700000001000LL, "2023-11-14T22:13:21.000Z"},
        {1700000000005LL, "2023-11-14T22:13:20.005Z"},
        {-1LL, "1969-12-31T23:59:59.999Z"},
        {-1000LL, "1969-12-31T23:59:59.000Z"},
        {-1001LL, "1969-12-31T23:59:58.999Z"},
        {-999LL, "1969-12-31T23:59:59.001Z"},
        {0LL, "1970-01-01T00:00:00.000Z"},
        {T_MAX, "9999-12-31T23:59:59.999Z"},
        {T_MAX + 5000, "9999-12-31T23:59:59.999Z"},
        {T_MAX - 999, "9999-12-31T23:59:59.000Z"},
    };
    for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
        char out[TF_LEN];
        tf_format(seq[i].ms, out);
        assert_string_equal(out, seq[i].text);
    }
}

/* Every millisecond value in range survives format -> parse; a fixed-seed generator covers all eras
 * including before 1970 and every month end. */
static void test_round_trip(void **state) {
    (void)state;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    const uint64_t span = (uint64_t)(T_MAX - T_MIN) + 1;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = T_MIN + (int64_t)(x % span);
        char out[TF_LEN];
        tf_format(ms, out);
        assert_int_equal(strlen(out), TF_TEXT_LEN);
        int64_t back;
        if (!tf_parse(out, strlen(out), &back) || back != ms)
            fail_msg("%lld -> %s -> %lld", (long long)ms, out, (long long)back);
    }
    /* Day by day across leap and non-leap years around the Gregorian century rules. */
    static const char *const starts[] = {"1899-12-25", "1999-12-25", "2099-12-25", "2399-12-25"};
    for (size_t s = 0; s < 4; s++) {
        int64_t ms;
        assert_true(tf_parse(starts[s], 10, &ms));
        for (int d = 0; d < 800; d++, ms += 86400000) {
            char out[TF_LEN], back_text[TF_LEN];
            tf_format(ms, out);
            int64_t back;
            assert_true(tf_parse(out, 10, &back)); /* the date part alone is midnight */
            assert_int_equal(back, ms);
            tf_format(back, back_text);
            assert_string_equal(out, back_text);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_accepts), cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_parse_length),  cmocka_unit_test(test_format),
        cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_format_same_second),
    };
    return cmocka_run_group_tests_name("timefmt", tests, NULL, NULL);
}
