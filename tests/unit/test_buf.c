/* Unit tests for util/buf: growth, the hard cap, JSON escaping, detach. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/buf.h"

static void test_empty(void **state) {
    (void)state;
    buf b = BUF_INIT(0);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_string_equal(buf_str(&b), "");
    buf_reset(&b); /* fine on a buf that never grew */
    buf_free(&b);
    buf_free(&b);
    assert_null(b.data);
}

static void test_append_grows(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 0);
    assert_int_equal(buf_puts(&b, "hello"), BUF_OK);
    assert_int_equal(buf_putc(&b, ' '), BUF_OK);
    assert_int_equal(buf_append(&b, "world!!", 5), BUF_OK);
    assert_int_equal(b.len, 11);
    assert_string_equal(b.data, "hello world");
    assert_int_equal(b.data[b.len], '\0');
    assert_true(b.alloc >= b.len + 1);
    /* Many small appends: contents stay exact across reallocations. */
    for (int i = 0; i < 10000; i++)
        assert_int_equal(buf_putc(&b, (char)('a' + i % 26)), BUF_OK);
    assert_int_equal(b.len, 10011);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(b.data[11 + i], 'a' + i % 26);
    assert_int_equal(b.data[b.len], '\0');
    /* Embedded NULs count. */
    size_t before = b.len;
    assert_int_equal(buf_append(&b, "x\0y", 3), BUF_OK);
    assert_int_equal(b.len, before + 3);
    assert_int_equal(b.data[before + 1], '\0');
    /* An empty append is fine, also with a NULL pointer. */
    assert_int_equal(buf_append(&b, NULL, 0), BUF_OK);
    assert_int_equal(b.len, before + 3);
    buf_free(&b);
}

static void test_reset_keeps_allocation(void **state) {
    (void)state;
    buf b = BUF_INIT(0);
    buf_puts(&b, "some text that needs an allocation");
    char *data = b.data;
    size_t alloc = b.alloc;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.alloc, alloc);
    assert_string_equal(buf_str(&b), "");
    buf_puts(&b, "again");
    assert_string_equal(b.data, "again");
    buf_free(&b);
}

/* The cap: reaching it exactly is fine; passing it fails and leaves the contents intact. */
static void test_cap(void **state) {
    (void)state;
    buf b = BUF_INIT(8);
    assert_int_equal(buf_puts(&b, "12345678"), BUF_OK);
    assert_int_equal(b.len, 8);
    assert_int_equal(buf_putc(&b, '9'), BUF_TOOBIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    /* Never allocates much beyond what the cap allows. */
    assert_true(b.alloc <= 9);
    buf_free(&b);

    buf_init(&b, 5);
    assert_int_equal(buf_puts(&b, "abc"), BUF_OK);
    assert_int_equal(buf_puts(&b, "def"), BUF_TOOBIG);
    assert_string_equal(b.data, "abc");
    assert_int_equal(buf_append(&b, "de", 2), BUF_OK);
    assert_string_equal(b.data, "abcde");
    /* A huge length cannot wrap the check around. */
    assert_int_equal(buf_append(&b, "x", SIZE_MAX), BUF_TOOBIG);
    assert_int_equal(buf_append(&b, "x", SIZE_MAX - 2), BUF_TOOBIG);
    assert_string_equal(b.data, "abcde");
    buf_free(&b);
    /* buf_free keeps the cap, so the buf is reusable with the same limit. */
    assert_int_equal(b.cap, 5);
    assert_int_equal(buf_puts(&b, "123456"), BUF_TOOBIG);
    assert_null(b.data);
}

static void test_printf(void **state) {
    (void)state;
    buf b = BUF_INIT(0);
    assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), BUF_OK);
    assert_string_equal(b.data, "42-x");
    /* Longer than the 256-byte fast path. */
    char big[1001];
    memset(big, 'q', 1000);
    big[1000] = '\0';
    assert_int_equal(buf_printf(&b, "[%s]", big), BUF_OK);
    assert_int_equal(b.len, 4 + 1002);
    assert_int_equal(b.data[4], '[');
    assert_int_equal(b.data[1005], ']');
    assert_int_equal(b.data[1006], '\0');
    buf_free(&b);

    buf_init(&b, 10);
    assert_int_equal(buf_printf(&b, "%s", "0123456789"), BUF_OK);
    buf_reset(&b);
    assert_int_equal(buf_printf(&b, "%s", "01234567890"), BUF_TOOBIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_puts(&b, "ab"), BUF_OK);
    assert_int_equal(buf_printf(&b, "%s", big), BUF_TOOBIG); /* the long path */
    assert_string_equal(b.data, "ab");
    buf_free(&b);
}

static void test_json_escape(void **state) {
    (void)state;
    buf b = BUF_INIT(0);
    const char in[] = "a\"b\\c\nd\re\tf\x01g\x1fh\x7f caf\xc3\xa9";
    assert_int_equal(buf_json_escape(&b, in, sizeof in - 1), BUF_OK);
    assert_string_equal(b.data, "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001fh\x7f caf\xc3\xa9");
    buf_reset(&b);
    /* An embedded NUL is escaped, not a terminator. */
    assert_int_equal(buf_json_escape(&b, "x\0y", 3), BUF_OK);
    assert_string_equal(b.data, "x\\u0000y");
    buf_reset(&b);
    assert_int_equal(buf_json_escape(&b, "", 0), BUF_OK);
    assert_int_equal(b.len, 0);
    buf_free(&b);

    /* An escape that does not fit leaves what was there before it, whole. */
    buf_init(&b, 12);
    buf_puts(&b, "ok:");
    assert_int_equal(buf_json_escape(&b, "\"\"\"\"\"", 5), BUF_TOOBIG); /* needs 10 bytes */
    assert_string_equal(b.data, "ok:");
    assert_int_equal(b.len, 3);
    assert_int_equal(buf_json_escape(&b, "plain text", 10), BUF_TOOBIG);
    assert_string_equal(b.data, "ok:");
    assert_int_equal(buf_json_escape(&b, "\"\"\"\"", 4), BUF_OK); /* 8 bytes: fits, 11 in all */
    assert_string_equal(b.data, "ok:\\\"\\\"\\\"\\\"");
    buf_free(&b);
}

static void test_detach(void **state) {
    (void)state;
    buf b = BUF_INIT(100);
    buf_puts(&b, "payload");
    size_t len = 0;
    char *p = buf_detach(&b, &len);
    assert_string_equal(p, "payload");
    assert_int_equal(len, 7);
    /* The buf is empty and reusable, with its cap. */
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 100);
    assert_int_equal(buf_puts(&b, "next"), BUF_OK);
    assert_string_equal(b.data, "next");
    assert_ptr_not_equal(b.data, p);
    free(p);
    buf_free(&b);

    /* Detaching a buf that never grew yields "", which free() accepts. */
    buf e = BUF_INIT(0);
    p = buf_detach(&e, &len);
    assert_non_null(p);
    assert_string_equal(p, "");
    assert_int_equal(len, 0);
    free(p);
    p = buf_detach(&e, NULL); /* len may be NULL */
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_append_grows),
        cmocka_unit_test(test_reset_keeps_allocation),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_detach),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
