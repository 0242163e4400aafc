/* Unit tests for util/utf8: the sequences JSON allows and the ones it refuses, and writing code
 * points at every length boundary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/utf8.h"

static void test_seq(void **state) {
    (void)state;
    static const struct {
        const char *bytes;
        size_t n;
        size_t want; /* 0: invalid */
    } cases[] = {
        {"a", 1, 1},
        {"\0", 1, 1},
        {"\xc2\x80", 2, 2},         /* U+0080 */
        {"\xdf\xbf", 2, 2},         /* U+07FF */
        {"\xc0\x80", 2, 0},         /* overlong NUL */
        {"\xc1\xbf", 2, 0},         /* overlong */
        {"\xc2", 1, 0},             /* cut short */
        {"\xc2\x41", 2, 0},         /* no continuation */
        {"\x80", 1, 0},             /* a lone continuation byte */
        {"\xe0\xa0\x80", 3, 3},     /* U+0800 */
        {"\xe0\x9f\xbf", 3, 0},     /* overlong */
        {"\xed\x9f\xbf", 3, 3},     /* U+D7FF */
        {"\xed\xa0\x80", 3, 0},     /* U+D800, a surrogate */
        {"\xef\xbf\xbf", 3, 3},     /* U+FFFF */
        {"\xe2\x82", 2, 0},         /* cut short */
        {"\xf0\x90\x80\x80", 4, 4}, /* U+10000 */
        {"\xf0\x8f\xbf\xbf", 4, 0}, /* overlong */
        {"\xf4\x8f\xbf\xbf", 4, 4}, /* U+10FFFF */
        {"\xf4\x90\x80\x80", 4, 0}, /* past U+10FFFF */
        {"\xf5\x80\x80\x80", 4, 0},
        {"\xf0\x9f\x98", 3, 0}, /* cut short */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t got = utf8_seq((const unsigned char *)cases[i].bytes, cases[i].n);
        if (got != cases[i].want) fail_msg("case %zu: %zu, expected %zu", i, got, cases[i].want);
    }
}

static void test_put(void **state) {
    (void)state;
    static const struct {
        uint32_t cp;
        const char *bytes;
    } cases[] = {
        {0x41, "A"},
        {0x7f, "\x7f"},
        {0x80, "\xc2\x80"},
        {0x7ff, "\xdf\xbf"},
        {0x800, "\xe0\xa0\x80"},
        {0xe9, "\xc3\xa9"},
        {0xffff, "\xef\xbf\xbf"},
        {0x10000, "\xf0\x90\x80\x80"},
        {0x1f600, "\xf0\x9f\x98\x80"},
        {0x10ffff, "\xf4\x8f\xbf\xbf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[4];
        size_t n = utf8_put(cases[i].cp, out);
        assert_int_equal(n, strlen(cases[i].bytes));
        assert_memory_equal(out, cases[i].bytes, n);
        /* What is written reads back as one valid sequence of that length. */
        assert_int_equal(utf8_seq((const unsigned char *)out, n), n);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq),
        cmocka_unit_test(test_put),
    };
    return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
