/* Unit tests for http/static: the asset table lookup, Content-Type by extension, Accept-Encoding
 * and If-None-Match parsing, the choice between the gzip and plain copies and 304, demo mode, and
 * the generated table itself (web_assets.c: sorted, each gzip copy inflating to its file, the
 * tracker under its size budget). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stdbool.h>
#include <zlib.h>

#include "http/static.h"

/* The tracker's promise in docs/browser.md: under 6 KB gzipped. */
#define TRACKER_GZ_BUDGET 6144

static const unsigned char A_DATA[] = "alert(1)";
static const unsigned char A_GZ[] = "GZ";
static const unsigned char B_DATA[] = "<p>index</p>";

/* Sorted by path, as the generator writes it. */
static const static_asset table[] = {
    {"/demo/a.css", A_DATA, 8, NULL, 0, "\"c0\"", NULL},
    {"/demo/index.html", B_DATA, 12, NULL, 0, "\"i0\"", NULL},
    {"/sdk/engaged.js", A_DATA, 8, A_GZ, 2, "\"e1\"", "\"e1-gz\""},
};
#define NTABLE (sizeof table / sizeof table[0])

static void test_find(void **state) {
    (void)state;
    assert_ptr_equal(static_find(table, NTABLE, "/sdk/engaged.js"), &table[2]);
    assert_ptr_equal(static_find(table, NTABLE, "/demo/a.css"), &table[0]);
    assert_ptr_equal(static_find(table, NTABLE, "/demo/index.html"), &table[1]);
    /* A directory means its index.html. */
    assert_ptr_equal(static_find(table, NTABLE, "/demo/"), &table[1]);
    assert_null(static_find(table, NTABLE, "/demo"));
    assert_null(static_find(table, NTABLE, "/sdk/"));
    assert_null(static_find(table, NTABLE, "/sdk/engaged.jsx"));
    assert_null(static_find(table, NTABLE, "/sdk/engaged.j"));
    assert_null(static_find(table, NTABLE, "/SDK/engaged.js"));
    assert_null(static_find(table, NTABLE, ""));
    assert_null(static_find(table, NTABLE, "/"));
    assert_null(static_find(table, 0, "/sdk/engaged.js"));
    /* A directory path too long for the index name is no asset, never a truncated match. */
    char longdir[400];
    memset(longdir, 'a', sizeof longdir);
    longdir[0] = '/';
    longdir[sizeof longdir - 2] = '/';
    longdir[sizeof longdir - 1] = '\0';
    assert_null(static_find(table, NTABLE, longdir));
    /* Every row is found, from either end of the search. */
    for (size_t i = 0; i < NTABLE; i++)
        assert_ptr_equal(static_find(table, NTABLE, table[i].path), &table[i]);
}

static void test_content_type(void **state) {
    (void)state;
    assert_string_equal(static_content_type("/sdk/engaged.js"), "text/javascript; charset=utf-8");
    assert_string_equal(static_content_type("/demo/index.html"), "text/html; charset=utf-8");
    assert_string_equal(static_content_type("/demo/INDEX.HTML"), "text/html; charset=utf-8");
    assert_string_equal(static_content_type("/demo/shop.css"), "text/css; charset=utf-8");
    assert_string_equal(static_content_type("/demo/img-shoes.svg"), "image/svg+xml");
    assert_string_equal(static_content_type("/x.png"), "image/png");
    assert_string_equal(static_content_type("/x.json"), "application/json");
    assert_string_equal(static_content_type("/demo/README"), "application/octet-stream");
    assert_string_equal(static_content_type("/demo.d/README"), "application/octet-stream");
    assert_string_equal(static_content_type("/x.jsx"), "application/octet-stream");
    assert_string_equal(static_content_type("/x."), "application/octet-stream");
    assert_string_equal(static_content_type(""), "application/octet-stream");
}

static void test_accepts_gzip(void **state) {
    (void)state;
    static const struct {
        const char *header;
        bool gzip;
    } cases[] = {
        {"gzip", true},
        {"gzip, deflate, br, zstd", true}, /* Chromium's */
        {"deflate, br", false},
        {"GZIP", true},
        {"x-gzip", true},
        {"  gzip  ", true},
        {",,gzip,,", true},
        {"gzip;q=0", false},
        {"gzip;q=0.0", false},
        {"gzip;q=0.000", false},
        {"gzip;q=0.001", true},
        {"gzip;q=1", true},
        {"gzip;q=1.000", true},
        {"gzip ; q=0.5", true},
        {"gzip;Q=0.5", true},
        {"gzip;level=1;q=0", false},
        {"gzip;q=0;level=1", false},
        {"*", true},
        {"*;q=0", false},
        {"identity, *;q=0.5", true},
        {"gzip;q=0, *", false},      /* the coding's own entry wins over "*" */
        {"*;q=0, gzip;q=0.2", true}, /* in either order */
        {"gzip;q=0, x-gzip", true},  /* either name will do */
        /* Malformed entries count as absent. */
        {"gzip;q=1.5", false},
        {"gzip;q=2", false},
        {"gzip;q=abc", false},
        {"gzip;q=", false},
        {"gzip;q=0.0001", false},
        {"gzip;q=.5", false},
        {"gzip q=0.5", false},
        {"gzip;;q=1", false},
        {"gzips", false},
        {"gzi", false},
        {"xgzip", false},
        {"br, gzip;q=bad, *;q=0.1", true},
        {"", false},
        {",", false},
        {";q=1", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (static_accepts_gzip(cases[i].header) != cases[i].gzip)
            fail_msg("Accept-Encoding \"%s\": expected %s", cases[i].header,
                     cases[i].gzip ? "gzip" : "no gzip");
    }
    assert_false(static_accepts_gzip(NULL));
    /* Only the first 1,024 bytes are read. */
    char big[2048];
    memset(big, ' ', sizeof big);
    memcpy(big + 1030, "gzip", 4);
    big[sizeof big - 1] = '\0';
    assert_false(static_accepts_gzip(big));
    memcpy(big + 10, "gzip,", 5);
    assert_true(static_accepts_gzip(big));
}

static void test_etag_match(void **state) {
    (void)state;
    static const struct {
        const char *header;
        bool match;
    } cases[] = {
        {"\"e1\"", true},
        {"W/\"e1\"", true}, /* weak comparison */
        {"  \"e1\"  ", true},
        {"\"zz\", \"e1\"", true},
        {"\"zz\",W/\"e1\"", true},
        {"\"zz\" , \"e1\" ,", true},
        {"*", true},
        {" * ", true},
        {"\"e\"", false},
        {"\"e11\"", false},
        {"\"E1\"", false}, /* opaque tags compare byte for byte */
        {"e1", false},
        {"\"e1", false},
        {"w/\"e1\"", false},
        {"\"zz\" \"e1\"", false}, /* no comma: malformed from there on */
        {"\"zz\"x, \"e1\"", false},
        {"*, \"e1\"", false},
        {"**", false},
        {"", false},
        {",,,", false},
        {"\"\"", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (static_etag_match(cases[i].header, "\"e1\"") != cases[i].match)
            fail_msg("If-None-Match %s: expected %s", cases[i].header,
                     cases[i].match ? "a match" : "no match");
    }
    assert_false(static_etag_match(NULL, "\"e1\""));
    assert_false(static_etag_match("\"e1\"", NULL));
}

static void test_choose(void **state) {
    (void)state;
    const static_asset *js = &table[2], *css = &table[0];
    static_choice c = static_choose(js, "gzip, deflate", NULL);
    assert_int_equal(c.status, 200);
    assert_true(c.gzip);
    assert_ptr_equal(c.body, A_GZ);
    assert_int_equal(c.len, 2);
    assert_string_equal(c.etag, "\"e1-gz\"");

    c = static_choose(js, "br", NULL);
    assert_int_equal(c.status, 200);
    assert_false(c.gzip);
    assert_ptr_equal(c.body, A_DATA);
    assert_int_equal(c.len, 8);
    assert_string_equal(c.etag, "\"e1\"");

    c = static_choose(js, NULL, NULL);
    assert_false(c.gzip);
    assert_int_equal(c.len, 8);

    /* Either copy's tag is the same content: 304 whichever the client kept. */
    c = static_choose(js, "gzip", "\"e1\"");
    assert_int_equal(c.status, 304);
    assert_null(c.body);
    assert_int_equal(c.len, 0);
    assert_string_equal(c.etag, "\"e1-gz\"");
    c = static_choose(js, NULL, "W/\"e1-gz\"");
    assert_int_equal(c.status, 304);
    assert_string_equal(c.etag, "\"e1\"");
    c = static_choose(js, "gzip", "\"other\"");
    assert_int_equal(c.status, 200);
    assert_true(c.gzip);

    /* No gzip copy: the file as it is, whatever the client accepts. */
    c = static_choose(css, "gzip", NULL);
    assert_int_equal(c.status, 200);
    assert_false(c.gzip);
    assert_ptr_equal(c.body, A_DATA);
    assert_string_equal(c.etag, "\"c0\"");
    c = static_choose(css, "gzip", "\"c0\"");
    assert_int_equal(c.status, 304);
}

static void test_demo_mode(void **state) {
    (void)state;
    assert_false(static_demo_enabled());
    static_demo_enable();
    assert_true(static_demo_enabled());
    static_demo_enable();
    assert_true(static_demo_enabled());
}

/* Inflates a gzip stream; returns its length, or -1. */
static long gunzip(const unsigned char *in, size_t n, unsigned char *out, size_t room) {
    z_stream z = {0};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return -1;
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)room;
    int rc = inflate(&z, Z_FINISH);
    long len = rc == Z_STREAM_END && z.avail_in == 0 ? (long)z.total_out : -1;
    inflateEnd(&z);
    return len;
}

static void test_generated_table(void **state) {
    (void)state;
    assert_true(static_nassets >= 10);
    for (size_t i = 0; i < static_nassets; i++) {
        const static_asset *a = &static_assets[i];
        assert_int_equal(a->path[0], '/');
        if (i) assert_true(strcmp(static_assets[i - 1].path, a->path) < 0);
        assert_ptr_equal(static_find(static_assets, static_nassets, a->path), a);
        if (strcmp(static_content_type(a->path), "application/octet-stream") == 0)
            fail_msg("%s has no Content-Type", a->path);
        /* "\"" + 16 hex digits + "\"" */
        assert_int_equal(strlen(a->etag), 18);
        assert_int_equal(strspn(a->etag + 1, "0123456789abcdef"), 16);
        assert_true(a->len > 0);
        if (!a->gz) {
            assert_null(a->etag_gz);
            continue;
        }
        assert_true(a->gz_len < a->len);
        assert_int_equal(strncmp(a->etag_gz, a->etag, 17), 0);
        assert_string_equal(a->etag_gz + 17, "-gz\"");
        unsigned char *out = malloc(a->len + 1);
        assert_non_null(out);
        assert_int_equal(gunzip(a->gz, a->gz_len, out, a->len + 1), (long)a->len);
        assert_memory_equal(out, a->data, a->len);
        free(out);
    }
    const static_asset *sdk = static_find(static_assets, static_nassets, "/sdk/engaged.js");
    assert_non_null(sdk);
    assert_non_null(sdk->gz);
    if (sdk->gz_len > TRACKER_GZ_BUDGET)
        fail_msg("engaged.js is %zu bytes gzipped, over its %d budget", sdk->gz_len,
                 TRACKER_GZ_BUDGET);
    assert_non_null(static_find(static_assets, static_nassets, "/demo/"));
    assert_non_null(static_find(static_assets, static_nassets, "/demo/shop.js"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_accepts_gzip),
        cmocka_unit_test(test_etag_match),
        cmocka_unit_test(test_choose),
        cmocka_unit_test(test_demo_mode),
        cmocka_unit_test(test_generated_table),
    };
    return cmocka_run_group_tests_name("static", tests, NULL, NULL);
}
