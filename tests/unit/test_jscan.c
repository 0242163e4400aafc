/* jscan: the tape's layout, and a differential table against jansson — every text jscan accepts
 * jansson accepts and reads as the same value, written byte for byte as jsonw writes jansson's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/jscan.h"
#include "util/jsonw.h"

/* The limits the differential table runs under. */
#define TABLE_DEPTH 4
#define TABLE_TOKENS 64

static void expect_tok(const js_doc *d, uint32_t i, js_kind kind, uint32_t start, uint32_t len,
                       uint32_t next, uint32_t count) {
    assert_true(i < d->n);
    assert_int_equal(d->tok[i].kind, kind);
    assert_int_equal(d->tok[i].start, start);
    assert_int_equal(d->tok[i].len, len);
    assert_int_equal(d->tok[i].next, next);
    assert_int_equal(d->tok[i].count, count);
}

static void test_layout(void **state) {
    (void)state;
    /*                 0         1         2         3         4
     *                 0123456789012345678901234567890123456789012345 */
    const char *text = "{\"a\":[1,2.5,\"x\"], \"b\" :{\"c\":null},\"d\":true} ";
    js_doc d;
    js_init(&d, 100);
    assert_int_equal(js_parse(&d, text, strlen(text), 8), 0);
    assert_int_equal(d.n, 12);
    expect_tok(&d, 0, JS_OBJECT, 0, 43, 12, 3);
    expect_tok(&d, 1, JS_STRING, 2, 1, 2, 0);
    expect_tok(&d, 2, JS_ARRAY, 5, 11, 6, 3);
    expect_tok(&d, 3, JS_INT, 6, 1, 4, 0);
    assert_int_equal(d.tok[3].num.i, 1);
    expect_tok(&d, 4, JS_REAL, 8, 3, 5, 0);
    assert_true(d.tok[4].num.d == 2.5);
    expect_tok(&d, 5, JS_STRING, 13, 1, 6, 0);
    expect_tok(&d, 6, JS_STRING, 19, 1, 7, 0);
    expect_tok(&d, 7, JS_OBJECT, 23, 10, 10, 1);
    expect_tok(&d, 8, JS_STRING, 25, 1, 9, 0);
    expect_tok(&d, 9, JS_NULL, 28, 4, 10, 0);
    expect_tok(&d, 10, JS_STRING, 35, 1, 11, 0);
    expect_tok(&d, 11, JS_TRUE, 38, 4, 12, 0);
    assert_int_equal(d.tok[5].escaped, 0);
    /* The space after "b" is the root's: its text is not what js_write() writes, its children's
     * are. */
    assert_int_equal(d.tok[0].verbatim, 0);
    assert_int_equal(d.tok[2].verbatim, 1);
    assert_int_equal(d.tok[7].verbatim, 1);

    /* A scalar root is one token; the array is reused. */
    assert_int_equal(js_parse(&d, " -12 ", 5, 8), 0);
    assert_int_equal(d.n, 1);
    expect_tok(&d, 0, JS_INT, 1, 3, 1, 0);
    assert_int_equal(d.tok[0].num.i, -12);

    /* A refusal leaves no tokens. */
    assert_int_equal(js_parse(&d, "[1,", 3, 8), -1);
    assert_int_equal(d.n, 0);
    js_free(&d);
}

static void test_get(void **state) {
    (void)state;
    const char *text = "{\"id\":\"u1\",\"props\":{\"price\":9.5,\"tags\":[\"a\"]},\"n\":3,\"\":0}";
    js_doc d;
    js_init(&d, 0);
    assert_int_equal(js_parse(&d, text, strlen(text), 8), 0);
    uint32_t props = js_get(&d, 0, "props", 5);
    assert_int_equal(d.tok[props].kind, JS_OBJECT);
    uint32_t price = js_get(&d, props, "price", 5);
    assert_int_equal(d.tok[price].kind, JS_REAL);
    assert_true(d.tok[price].num.d == 9.5);
    assert_int_equal(d.tok[js_get(&d, props, "tags", 4)].kind, JS_ARRAY);
    assert_int_equal(d.tok[js_get(&d, 0, "n", 1)].num.i, 3); /* after a nested object */
    assert_int_equal(d.tok[js_get(&d, 0, "", 0)].kind, JS_INT);
    assert_int_equal(js_get(&d, 0, "price", 5), 0); /* only direct members */
    assert_int_equal(js_get(&d, 0, "i", 1), 0);     /* a prefix of a key is not the key */
    assert_int_equal(js_get(&d, 0, "ids", 3), 0);
    assert_int_equal(js_get(&d, js_get(&d, 0, "id", 2), "x", 1), 0); /* not an object */
    js_free(&d);
}

static void test_string(void **state) {
    (void)state;
    const char *text = "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t|\\u0041\\u00e9\\u00E9\\u20AC|"
                       "\\ud83d\\ude00\\uD800\\uDC00\\udbff\\udfff|\xc3\xa9 plain\",\"raw\"]";
    js_doc d;
    js_init(&d, 0);
    assert_int_equal(js_parse(&d, text, strlen(text), 8), 0);
    assert_int_equal(d.tok[1].escaped, 1);
    char out[128];
    size_t n = js_string(&d, 1, out);
    const char want[] = "\"\\/\b\f\n\r\t|A\xc3\xa9\xc3\xa9\xe2\x82\xac|"
                        "\xf0\x9f\x98\x80\xf0\x90\x80\x80\xf4\x8f\xbf\xbf|\xc3\xa9 plain";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(out[n], '\0');
    assert_int_equal(d.tok[2].escaped, 0);
    assert_int_equal(js_string(&d, 2, out), 3);
    assert_string_equal(out, "raw");
    js_free(&d);
}

struct jcase {
    const char *text;
    size_t len;
    int js;      /* js_parse() accepts */
    int jansson; /* json_loadb() accepts */
};
#define T(s, js, jl)                                                                               \
    { s, sizeof(s) - 1, js, jl }

/* 17 members (past the pairwise comparison), the last a repeat of the fourth; and the same without
 * the repeat. */
#define KEYS16                                                                                     \
    "\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,"   \
    "\"k10\":10,\"k11\":11,\"k12\":12,\"k13\":13,\"k14\":14,\"k15\":15"

static const struct jcase cases[] = {
    /* literals, whitespace, what may follow the value */
    T("null", 1, 1),
    T("true", 1, 1),
    T("false", 1, 1),
    T(" \t\n\r1 \t\n\r", 1, 1),
    T("", 0, 0),
    T(" \n ", 0, 0),
    T("nul", 0, 0),
    T("True", 0, 0),
    T("truex", 0, 0),
    T("true false", 0, 0),
    T("\f1", 0, 0),
    T("1 x", 0, 0),
    T("1\0\0", 0, 0),
    T("\"a\"\0", 0, 0),
    T("1 2", 0, 0),
    T("{} {}", 0, 0),
    T("\xef\xbb\xbf{}", 0, 0),
    /* integers */
    T("0", 1, 1),
    T("-0", 1, 1),
    T("01", 0, 0),
    T("-01", 0, 0),
    T("+1", 0, 0),
    T("-", 0, 0),
    T("- 1", 0, 0),
    T("9223372036854775807", 1, 1),
    T("9223372036854775808", 0, 0),
    T("-9223372036854775808", 1, 1),
    T("-9223372036854775809", 0, 0),
    T("12345678901234567890123", 0, 0),
    T("[1234567890123456789,-999999999999999999]", 1, 1),
    /* reals */
    T("1.", 0, 0),
    T(".5", 0, 0),
    T("1.e5", 0, 0),
    T("1e", 0, 0),
    T("1e+", 0, 0),
    T("1.5.3", 0, 0),
    T("0x10", 0, 0),
    T("-0.0", 1, 1),
    T("-0.5", 1, 1),
    T("0.1e1", 1, 1),
    T("1.5e3", 1, 1),
    T("1E-2", 1, 1),
    T("19.99", 1, 1),
    T("1e-7", 1, 1),
    T("1e309", 0, 0),
    T("-1e309", 0, 0),
    T("1e-400", 1, 1),
    T("4.9e-324", 1, 1),
    T("2.2250738585072011e-308", 1, 1),
    T("1.7976931348623157e308", 1, 1),
    T("0.30000000000000004", 1, 1),
    T("123456789012345678901234567890.5", 1, 1),
    T("100000000000000000000000.0", 1, 1),
    T("[1e22,1e23,9007199254740993.0,9007199254740992e1]", 1, 1),
    T("[1e5,-1.5E-5,0.5,123.456,1.0,100.0,1e-5,0.0001,0.00012345,0.00001]", 1, 1),
    T("[123456789012345.6,1234567890123456.7,0.1234567890123456,0.100]", 1, 1),
    T("[-0,-0.0,0e0,0e-999,-0e999,0.000e5]", 1, 1),
    T("0.0000000000000000000000000000000000000001e40", 1, 1),
    /* arrays and objects */
    T("[]", 1, 1),
    T("{}", 1, 1),
    T(" [ ] ", 1, 1),
    T("{ }", 1, 1),
    T("[1,[2,[3,{\"x\":0}]],{}]", 1, 1),
    T("{\"a\" : 1 , \"b\" :\t[ 1 , 2 ] }", 1, 1),
    T("[true,false,null]", 1, 1),
    T("[", 0, 0),
    T("]", 0, 0),
    T("[1]]", 0, 0),
    T("[1,]", 0, 0),
    T("[,1]", 0, 0),
    T("[1,,2]", 0, 0),
    T("[1 2]", 0, 0),
    T("[\"a\" \"b\"]", 0, 0),
    T("[tru]", 0, 0),
    T("{\"a\":1", 0, 0),
    T("{\"a\":1,}", 0, 0),
    T("{\"a\" 1}", 0, 0),
    T("{\"a\"}", 0, 0),
    T("{\"a\":}", 0, 0),
    T("{,}", 0, 0),
    T("{1:1}", 0, 0),
    T("{\"a\":tru}", 0, 0),
    T("{\"\":1}", 1, 1),
    T("{\"a\":1,\"ab\":2,\"b\":{\"a\":2}}", 1, 1),
    /* strings: control bytes, escapes */
    T("\"\"", 1, 1),
    T("\"abc", 0, 0),
    T("\"a\x01"
      "b\"",
      0, 0),
    T("\"a\tb\"", 0, 0),
    T("\"a\nb\"", 0, 0),
    T("\"a\0b\"", 0, 0),
    T("\"\x7f\"", 1, 1),
    T("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", 1, 1),
    T("\"\\x\"", 0, 0),
    T("\"\\'\"", 0, 0),
    T("\"\\u12\"", 0, 0),
    T("\"\\u12g4\"", 0, 0),
    T("\"\\", 0, 0),
    T("\"\\u0000\"", 0, 0),
    T("\"\\u0001\\u001f\\u007f\\u00e9\\u00E9\"", 1, 1),
    T("\"\\u0080\\u07ff\\u0800\\uffff\"", 1, 1),
    T("[\"a\",\"\\u00e9\",\"b\\\"c\",\"\xc3\xa9\\n\"]", 1, 1),
    /* surrogate escapes */
    T("\"\\ud83d\\ude00\"", 1, 1),
    T("\"\\uD800\\uDC00\\uDBFF\\uDFFF\"", 1, 1),
    T("\"\\ud83d\"", 0, 0),
    T("\"\\ud83dx\"", 0, 0),
    T("\"\\ude00\"", 0, 0),
    T("\"\\ud83d\\u0041\"", 0, 0),
    T("\"\\ud83d\\ud83d\"", 0, 0),
    T("\"\\uD800\\\\uDC00\"", 0, 0),
    /* raw UTF-8 */
    T("\"\xc3\xa9\"", 1, 1),
    T("\"\xc0\x80\"", 0, 0),
    T("\"\xc1\xbf\"", 0, 0),
    T("\"\xe0\x80\x80\"", 0, 0),
    T("\"\xe0\x9f\xbf\"", 0, 0),
    T("\"\xe0\xa0\x80\"", 1, 1),
    T("\"\xed\x9f\xbf\"", 1, 1),
    T("\"\xed\xa0\x80\"", 0, 0),
    T("\"\xed\xbf\xbf\"", 0, 0),
    T("\"\xee\x80\x80\xef\xbf\xbf\"", 1, 1),
    T("\"\xf0\x80\x80\x80\"", 0, 0),
    T("\"\xf0\x8f\xbf\xbf\"", 0, 0),
    T("\"\xf0\x90\x80\x80\"", 1, 1),
    T("\"\xf4\x8f\xbf\xbf\"", 1, 1),
    T("\"\xf4\x90\x80\x80\"", 0, 0),
    T("\"\xf5\x80\x80\x80\"", 0, 0),
    T("\"\xc3\"", 0, 0),
    T("\"\xe2\x82\"", 0, 0),
    T("\"\xf0\x9f\x98\"", 0, 0),
    T("\"\xc3", 0, 0),
    T("\"\x80\"", 0, 0),
    T("\"\xff\"", 0, 0),
    T("\"\xc3\x28\"", 0, 0),
    T("\xc3\xa9", 0, 0),
    /* long strings: the 16-byte scan, then the rare bytes past it */
    T("\"abcdefghijklmnopqrstuvwxyz\xc3\xa9 and more text after it\"", 1, 1),
    T("\"abcdefghijklmnopqrstuvwxyz\\u00e9 and more text after it\"", 1, 1),
    T("\"abcdefghijklmnopqrstuvwxyz\x01 and more text after it\"", 0, 0),
    T("\"abcdefghijklmnopqrstuvwxyz\xed\xa0\x80 and more text after it\"", 0, 0),
    T("\"abcdefghijklmnopqrstuvwxyz and more text, never closed", 0, 0),
    /* written back as a copy of the text, or not (whitespace, escapes jsonw writes otherwise) */
    T("\"a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f\"", 1, 1),
    T("[\"\\u001F\",\"\\u000a\",\"\\u0022\",\"\\b\",\"\\/\",\"\\u0020\",\"\\u0041\"]", 1, 1),
    T("{\"a\":{\"b\" :1},\"c\":[1],\"d\":{\"e\":[-0]},\"f\":[2.50]}", 1, 1),
    T("[ [ ], { }, [[ ]], {\"a\":[ ]}, \"x\" ]", 1, 1),
    T("[[1, 2],[3,4]]", 1, 1),
    /* refused by jscan, read by jansson */
    T("{\"a\":1,\"a\":2}", 0, 1),
    T("{\"a\":{\"b\":1,\"c\":2,\"b\":3}}", 0, 1),
    T("{" KEYS16 ",\"k3\":3}", 0, 1),
    T("{" KEYS16 ",\"k16\":16}", 1, 1),
    T("{\"\\u0061\":1}", 0, 1),
    T("{\"a\\n\":1}", 0, 1),
    /* jansson's lexer loses a NUL byte it reads past a number or literal and puts back */
    T("1\0", 0, 1),
    T("[1\0]", 0, 1),
    T("[true\0,2.5\0]", 0, 1),
    T("[[[[1]]]]", 1, 1),
    T("[[[[[1]]]]]", 0, 1),
    T("{\"a\":{\"b\":[{}]}}", 1, 1),
    T("{\"a\":{\"b\":[{\"c\":[]}]}}", 0, 1),
};

static void check_case(int i, const struct jcase *c) {
    js_doc d;
    js_init(&d, TABLE_TOKENS);
    int js = js_parse(&d, c->text, c->len, TABLE_DEPTH) == 0;
    json_error_t je;
    json_t *v = json_loadb(c->text, c->len, JSON_DECODE_ANY, &je);
    if (js != c->js || (v != NULL) != c->jansson)
        fail_msg("case %d \"%.*s\": jscan %s, jansson %s (%s)", i, (int)c->len, c->text,
                 js ? "accepts" : "refuses", v ? "accepts" : "refuses", v ? "" : je.text);
    if (js) {
        buf mine = BUF_INIT(0), theirs = BUF_INIT(0);
        assert_int_equal(js_write(&mine, &d, 0), BUF_OK);
        assert_int_equal(jsonw_value(&theirs, v), BUF_OK);
        if (mine.len != theirs.len || memcmp(buf_str(&mine), buf_str(&theirs), mine.len))
            fail_msg("case %d: jscan writes %s, jsonw %s", i, buf_str(&mine), buf_str(&theirs));
        json_t *j = js_to_json(&d, 0);
        assert_non_null(j);
        if (!json_equal(j, v)) fail_msg("case %d: js_to_json differs", i);
        json_decref(j);
        buf_free(&mine);
        buf_free(&theirs);
    }
    json_decref(v);
    js_free(&d);
}

static void test_differential(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case((int)i, &cases[i]);
}

/* Appends "[0,0,...]" with n elements. */
static void zeros(buf *b, int n) {
    buf_putc(b, '[');
    for (int i = 0; i < n; i++)
        buf_puts(b, i ? ",0" : "0");
    buf_putc(b, ']');
}

static void test_limits(void **state) {
    (void)state;
    js_doc d;
    js_init(&d, 10);
    buf b = BUF_INIT(0);
    zeros(&b, 9); /* 10 tokens */
    assert_int_equal(js_parse(&d, b.data, b.len, 1), 0);
    assert_int_equal(d.n, 10);
    assert_int_equal(js_parse(&d, b.data, b.len, 0), -1); /* a container at depth 1 */
    assert_int_equal(js_parse(&d, "7", 1, 0), 0);
    buf_reset(&b);
    zeros(&b, 10);
    assert_int_equal(js_parse(&d, b.data, b.len, 1), -1);
    js_free(&d);

    /* The tape grows by doubling, without a limit but the text's. */
    js_init(&d, 0);
    buf_reset(&b);
    zeros(&b, 5000);
    assert_int_equal(js_parse(&d, b.data, b.len, 1), 0);
    assert_int_equal(d.n, 5001);
    assert_int_equal(d.tok[0].count, 5000);
    assert_int_equal(d.tok[0].next, 5001);

    /* max_depth is at most JS_MAX_DEPTH, which it reaches. */
    assert_int_equal(js_parse(&d, "1", 1, JS_MAX_DEPTH + 1), -1);
    assert_int_equal(js_parse(&d, "1", 1, -1), -1);
    buf_reset(&b);
    for (int i = 0; i < JS_MAX_DEPTH; i++)
        buf_putc(&b, '[');
    for (int i = 0; i < JS_MAX_DEPTH; i++)
        buf_putc(&b, ']');
    assert_int_equal(js_parse(&d, b.data, b.len, JS_MAX_DEPTH), 0);
    buf out = BUF_INIT(0);
    assert_int_equal(js_write(&out, &d, 0), BUF_OK);
    assert_int_equal(out.len, b.len);
    assert_memory_equal(out.data, b.data, b.len);
    json_t *j = js_to_json(&d, 0);
    assert_non_null(j);
    json_decref(j);
    buf_free(&out);

    /* Many members, all distinct, then one repeat far apart, through the hash table. */
    buf_reset(&b);
    buf_putc(&b, '{');
    for (int i = 0; i < 3000; i++)
        buf_printf(&b, "%s\"key%d\":%d", i ? "," : "", i, i);
    buf_putc(&b, '}');
    assert_int_equal(js_parse(&d, b.data, b.len, 1), 0);
    assert_int_equal(d.tok[0].count, 3000);
    assert_int_equal(d.tok[js_get(&d, 0, "key2999", 7)].num.i, 2999);
    b.len--;
    buf_puts(&b, ",\"key17\":1}");
    assert_int_equal(js_parse(&d, b.data, b.len, 1), -1);
    js_free(&d);
    buf_free(&b);
}

static void test_write_cap(void **state) {
    (void)state;
    const char *text = "{\"key\":\"a long enough value\",\"e\":\"\\u00e9\\n\"}";
    js_doc d;
    js_init(&d, 0);
    assert_int_equal(js_parse(&d, text, strlen(text), 4), 0);
    for (size_t cap = 1; cap < 40; cap++) {
        buf b = BUF_INIT(cap);
        assert_int_equal(js_write(&b, &d, 0), BUF_TOOBIG);
        assert_true(b.len <= cap);
        buf_free(&b);
    }
    buf b = BUF_INIT(40);
    assert_int_equal(js_write(&b, &d, 0), BUF_OK);
    assert_string_equal(buf_str(&b), "{\"key\":\"a long enough value\",\"e\":\"\xc3\xa9\\n\"}");
    /* A member's value alone. */
    buf_reset(&b);
    assert_int_equal(js_write(&b, &d, js_get(&d, 0, "e", 1)), BUF_OK);
    assert_string_equal(buf_str(&b), "\"\xc3\xa9\\n\"");
    buf_free(&b);
    js_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout), cmocka_unit_test(test_get),
        cmocka_unit_test(test_string), cmocka_unit_test(test_differential),
        cmocka_unit_test(test_limits), cmocka_unit_test(test_write_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
