/* Unit tests for c360/catalog: every operation with the exact JSON it produces, merge-patch
 * semantics, variant inheritance, change events, availability with each condition (against a fake
 * rule language the test interprets itself), the limits, hostile input, and replay determinism
 * (one log applied to two catalogues gives byte-identical products). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stdbool.h>

#include "c360/catalog.h"
#include "util/buf.h"
#include "util/jsonw.h"

#define T0 1714557600000LL /* 2024-05-01T10:00:00.000Z */
#define T1 (T0 + 60000)    /* 2024-05-01T10:01:00.000Z */
#define T2 (T0 + 120000)   /* 2024-05-01T10:02:00.000Z */
#define META0                                                                                      \
    "\"created_at\":\"2024-05-01T10:00:00.000Z\",\"updated_at\":\"2024-05-01T10:00:00.000Z\""

/* ---- a fake rule language: "true", "false", "error" (evaluation fails), "viewer.vip" (the
 * viewer context is a bool) and "product.price < N"; anything else is a syntax error. ---- */

typedef struct fake_rule {
    int kind; /* 0 true, 1 false, 2 error, 3 price below, 4 viewer.vip */
    double limit;
} fake_rule;

static int rules_live; /* compiled and not yet freed */

static void *fake_compile(const char *src, size_t len, ev_error *err, void *arg) {
    (void)arg;
    static const char *const fixed[] = {"true", "false", "error"};
    fake_rule r = {-1, 0};
    for (int i = 0; i < 3; i++)
        if (len == strlen(fixed[i]) && memcmp(src, fixed[i], len) == 0) r.kind = i;
    if (len == 10 && memcmp(src, "viewer.vip", 10) == 0) r.kind = 4;
    if (len > 16 && memcmp(src, "product.price < ", 16) == 0) {
        r.kind = 3;
        r.limit = strtod(src + 16, NULL);
    }
    if (r.kind < 0) {
        ev_error_set(err, "syntax_error", "", "unexpected '%c' at 1:1", src[0]);
        return NULL;
    }
    fake_rule *p = malloc(sizeof *p);
    assert_non_null(p);
    *p = r;
    rules_live++;
    return p;
}

static int fake_eval(const void *compiled, const json_t *product, const void *ctx, void *arg) {
    (void)arg;
    const fake_rule *r = compiled;
    assert_non_null(product);
    switch (r->kind) {
    case 0:
        return 1;
    case 1:
        return 0;
    case 2:
        return -1;
    case 3:
        return json_number_value(json_object_get(product, "price")) < r->limit;
    default:
        return ctx && *(const bool *)ctx;
    }
}

static void fake_free(void *compiled, void *arg) {
    (void)arg;
    rules_live--;
    free(compiled);
}

static const cat_options OPT = {fake_compile, fake_eval, fake_free, NULL, 0};

/* ---- helpers ---- */

static json_t *J(const char *text) {
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v) fail_msg("test JSON does not parse (%s): %s", e.text, text);
    return v;
}

static char *S(const json_t *v) {
    buf b = BUF_INIT(0);
    assert_int_equal(jsonw_value(&b, v), BUF_OK);
    return buf_detach(&b, NULL);
}

/* Compares compact JSON and releases v. */
static void json_is(json_t *v, const char *expected) {
    assert_non_null(v);
    char *s = S(v);
    assert_string_equal(s, expected);
    free(s);
    json_decref(v);
}

static const cat_product *get(const cat *c, const char *id) {
    const cat_product *p = cat_get(c, id, strlen(id));
    if (!p) fail_msg("no product %s", id);
    return p;
}

static void product_is(const cat *c, const char *id, const char *expected) {
    json_is(cat_product_json(get(c, id)), expected);
}

/* Prepares and applies an upsert that must succeed. */
static void upsert(cat *c, const char *text, int64_t now, cat_changes *ch) {
    json_t *in = J(text), *logged = NULL;
    ev_error err = {0};
    if (cat_upsert_prepare(&OPT, in, &logged, &err))
        fail_msg("upsert refused: %s %s: %s", err.code, err.field, err.message);
    assert_int_equal(cat_upsert_apply(c, logged, now, ch), CAT_OK);
    json_decref(in);
    json_decref(logged);
}

static void patch(cat *c, const char *id, const char *text, int64_t now, cat_changes *ch) {
    json_t *in = J(text), *logged = NULL;
    ev_error err = {0};
    if (cat_patch_prepare(c, id, in, &logged, &err))
        fail_msg("patch refused: %s %s: %s", err.code, err.field, err.message);
    assert_int_equal(cat_patch_apply(c, logged, now, ch), CAT_OK);
    json_decref(in);
    json_decref(logged);
}

/* An upsert that must be refused with exactly this code and field (and message, unless NULL). */
static void refused_with(const cat_options *opt, const char *text, const char *code,
                         const char *field, const char *message) {
    json_t *in = J(text), *logged = (json_t *)1;
    ev_error err = {0};
    if (cat_upsert_prepare(opt, in, &logged, &err) == 0) fail_msg("accepted: %s", text);
    assert_null(logged);
    if (strcmp(err.code, code) || strcmp(err.field, field))
        fail_msg("%s: got %s at \"%s\" (%s), wanted %s at \"%s\"", text, err.code, err.field,
                 err.message, code, field);
    if (message) assert_string_equal(err.message, message);
    json_decref(in);
}

static void refused(const char *text, const char *code, const char *field, const char *message) {
    refused_with(&OPT, text, code, field, message);
}

static void patch_refused(cat *c, const char *id, const char *text, const char *code,
                          const char *field, const char *message) {
    json_t *in = J(text), *logged = (json_t *)1;
    ev_error err = {0};
    if (cat_patch_prepare(c, id, in, &logged, &err) == 0) fail_msg("patch accepted: %s", text);
    assert_null(logged);
    if (strcmp(err.code, code) || strcmp(err.field, field))
        fail_msg("%s: got %s at \"%s\" (%s), wanted %s at \"%s\"", text, err.code, err.field,
                 err.message, code, field);
    if (message) assert_string_equal(err.message, message);
    json_decref(in);
}

static char *changes_text(const cat_changes *ch) {
    json_t *a = json_array();
    for (size_t i = 0; i < ch->n; i++)
        json_array_append_new(a, cat_change_json(&ch->v[i]));
    char *s = S(a);
    json_decref(a);
    return s;
}

static void changes_are(cat_changes *ch, const char *expected) {
    char *s = changes_text(ch);
    assert_string_equal(s, expected);
    free(s);
    cat_changes_free(ch);
}

/* A JSON text of n products {"id":"<prefix><i>"}. */
static char *many(const char *prefix, int n) {
    buf b = BUF_INIT(0);
    buf_putc(&b, '[');
    for (int i = 0; i < n; i++)
        buf_printf(&b, "%s{\"id\":\"%s%05d\"}", i ? "," : "", prefix, i);
    buf_putc(&b, ']');
    return buf_detach(&b, NULL);
}

/* ---- fetching ahead ---- */

/* cat_prefetch() only reads: every stage, for ids present and unknown, on an empty catalogue and
 * a grown one, leaves every lookup as it was (and, under ASan, reads nothing it must not). */
static void test_prefetch(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    for (int stage = 0; stage < 4; stage++)
        cat_prefetch(c, cat_hash("none", 4), stage);
    char text[64], id[16];
    for (int i = 0; i < 300; i++) {
        snprintf(text, sizeof text, "[{\"id\":\"p%d\",\"price\":%d}]", i, i + 1);
        upsert(c, text, T1, NULL);
    }
    for (int i = 0; i < 320; i++) {
        snprintf(id, sizeof id, "p%d", i);
        for (int stage = 0; stage < 4; stage++)
            cat_prefetch(c, cat_hash(id, strlen(id)), stage);
        const cat_product *p = cat_get(c, id, strlen(id));
        if (i < 300) {
            cat_info info;
            cat_product_info(p, &info);
            assert_string_equal(info.id, id);
            assert_true(info.price == i + 1);
        } else {
            assert_null(p);
        }
    }
    cat_free(c);
}

/* ---- upsert ---- */

static void test_upsert_normalises(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    const char *in =
        "[{\"id\":\"p1\",\"sku\":\"SKU-1\",\"name\":\"Runner\",\"url\":\"https://s.example/p1\","
        "\"image\":\"https://s.example/p1.jpg\",\"brand\":\"Acme\",\"category\":\"Shoes>  Running "
        "\",\"price\":\"59.90\",\"sale_price\":49.9,\"currency\":\"eur\",\"stock\":{\"berlin\":3,"
        "\"hamburg\":\"2\"},\"tags\":[\"new\",\"sale\",\"new\"],\"attributes\":{\"color\":\"red\","
        "\"size\":[42,43]},\"replenishable\":false,\"created_at\":\"ignored\"},"
        "{\"product_id\":12345,\"price\":10,\"stock\":0,\"status\":\"draft\"}]";
    const char *norm =
        "[{\"id\":\"p1\",\"sku\":\"SKU-1\",\"title\":\"Runner\",\"url\":\"https://s.example/p1\","
        "\"image_url\":\"https://s.example/p1.jpg\",\"brand\":\"Acme\",\"categories\":[\"Shoes\","
        "\"Shoes > Running\"],\"price\":59.9,\"sale_price\":49.9,\"currency\":\"EUR\",\"stock\":{"
        "\"berlin\":3,\"hamburg\":2},\"tags\":[\"new\",\"sale\"],\"attributes\":{\"color\":"
        "\"red\",\"size\":[42,43]},\"replenishable\":false,\"status\":\"active\"},"
        "{\"id\":\"12345\",\"price\":10.0,\"stock\":{\"default\":0},\"status\":\"draft\"}]";
    json_t *body = J(in), *logged = NULL, *again = NULL;
    ev_error err;
    assert_int_equal(cat_upsert_prepare(&OPT, body, &logged, &err), 0);
    char *s = S(logged);
    assert_string_equal(s, norm);
    free(s);
    /* Normalising the normal form changes nothing: what is logged replays as itself. */
    assert_int_equal(cat_upsert_prepare(&OPT, logged, &again, &err), 0);
    assert_true(json_equal(logged, again));
    /* Validation alone. */
    assert_int_equal(cat_upsert_prepare(NULL, body, NULL, &err), 0);

    cat_changes ch = CAT_CHANGES_INIT;
    assert_int_equal(cat_upsert_apply(c, logged, T0, &ch), CAT_OK);
    assert_int_equal(ch.n, 0); /* creation is not a change */
    assert_int_equal(cat_count(c), 2);
    product_is(c, "p1",
               "{\"id\":\"p1\",\"sku\":\"SKU-1\",\"title\":\"Runner\",\"url\":\"https://s.example/"
               "p1\",\"image_url\":\"https://s.example/p1.jpg\",\"brand\":\"Acme\",\"categories\":"
               "[\"Shoes\",\"Shoes > Running\"],\"price\":59.9,\"sale_price\":49.9,\"currency\":"
               "\"EUR\",\"stock\":{\"berlin\":3,\"hamburg\":2},\"tags\":[\"new\",\"sale\"],"
               "\"attributes\":{\"color\":\"red\",\"size\":[42,43]},\"replenishable\":false,"
               "\"status\":\"active\",\"in_stock\":true,\"source\":\"catalog\"," META0 "}");
    product_is(c, "12345",
               "{\"id\":\"12345\",\"price\":10.0,\"stock\":{\"default\":0},\"status\":\"draft\","
               "\"in_stock\":false,\"source\":\"catalog\"," META0 "}");

    cat_info info;
    cat_product_info(get(c, "p1"), &info);
    assert_string_equal(info.id, "p1");
    assert_string_equal(info.title, "Runner");
    assert_string_equal(info.currency, "EUR");
    assert_true(info.has_price && info.has_sale_price && info.has_effective);
    assert_true(info.price == 59.9 && info.sale_price == 49.9 && info.effective_price == 49.9);
    assert_int_equal(info.stock_total, 5);
    assert_true(info.in_stock);
    assert_false(info.from_events);
    assert_int_equal(info.status, CAT_ACTIVE);
    assert_int_equal(info.created_ms, T0);
    assert_null(cat_get(c, "p", 1));
    assert_non_null(cat_get(c, "p1x", 2));
    json_decref(body);
    json_decref(logged);
    json_decref(again);
    cat_free(c);
}

static void test_upsert_replaces_whole(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    upsert(c, "[{\"id\":\"p\",\"brand\":\"Acme\",\"tags\":[\"x\"],\"price\":5}]", T0, NULL);
    upsert(c, "[{\"id\":\"p\",\"title\":\"Only\"}]", T1, NULL);
    product_is(c, "p",
               "{\"id\":\"p\",\"title\":\"Only\",\"status\":\"active\",\"in_stock\":true,"
               "\"source\":\"catalog\",\"created_at\":\"2024-05-01T10:00:00.000Z\",\"updated_at\":"
               "\"2024-05-01T10:01:00.000Z\"}");
    /* The same content again is no update. */
    upsert(c, "[{\"name\":\"Only\",\"id\":\"p\",\"in_stock\":false}]", T2, NULL);
    cat_info info;
    cat_product_info(get(c, "p"), &info);
    assert_int_equal(info.updated_ms, T1);
    assert_int_equal(cat_ordinal(get(c, "p")), 0);
    assert_int_equal(cat_count(c), 1);
    cat_free(c);
}

/* updated_at moves when any catalogue field changes, however deep, and only then. */
static void test_updated_at_tracks_content(void **state) {
    (void)state;
#define BASE_FIELDS                                                                                \
    "\"sku\":\"S\",\"title\":\"T\",\"url\":\"u\",\"image_url\":\"i\",\"brand\":\"B\","             \
    "\"categories\":[\"A\",\"B\"],\"price\":10,\"sale_price\":9,\"currency\":\"EUR\","             \
    "\"stock\":{\"x\":1,\"y\":2},\"tags\":[\"t1\",\"t2\"],\"attributes\":{\"k\":[1,{\"z\":2}]},"   \
    "\"replenishable\":false,\"status\":\"active\""
    const char *base = "{\"id\":\"p\"," BASE_FIELDS ",\"variants\":[{\"id\":\"v\",\"sku\":\"VS\","
                       "\"price\":8,\"stock\":{\"x\":1},\"attributes\":{\"s\":1}}],"
                       "\"availability\":{\"markets\":[\"de\"],\"price_lists\":[\"r\"],"
                       "\"segments\":[\"g\"],\"rule\":\"true\"}}";
    const char *edits[][2] = {
        {"\"sku\":\"S\"", "\"sku\":\"S2\""},
        {"\"title\":\"T\"", "\"title\":\"T \""},
        {"\"url\":\"u\"", "\"url\":\"U\""},
        {"\"image_url\":\"i\",", ""},
        {"\"brand\":\"B\"", "\"brand\":\"b\""},
        {"[\"A\",\"B\"]", "[\"B\",\"A\"]"},
        {"\"price\":10,", "\"price\":10.5,"},
        {"\"sale_price\":9,", ""},
        {"\"EUR\"", "\"USD\""},
        {"{\"x\":1,\"y\":2}", "{\"x\":1,\"z\":2}"},
        {"{\"x\":1,\"y\":2}", "{\"y\":2,\"x\":1}"},
        {"{\"x\":1,\"y\":2}", "{\"x\":1,\"y\":3}"},
        {"[\"t1\",\"t2\"]", "[\"t1\"]"},
        {"{\"z\":2}", "{\"z\":2.0}"},
        {"\"replenishable\":false", "\"replenishable\":true"},
        {"\"replenishable\":false,", ""},
        {"\"status\":\"active\"", "\"status\":\"draft\""},
        {"\"sku\":\"VS\"", "\"sku\":\"VS2\""},
        {"\"price\":8,", "\"price\":7,"},
        {"\"stock\":{\"x\":1},\"attributes\"", "\"stock\":{\"x\":0},\"attributes\""},
        {"{\"s\":1}", "{\"s\":2}"},
        {"\"id\":\"v\"", "\"id\":\"w\""},
        {"[\"de\"]", "[\"at\"]"},
        {"[\"r\"]", "[\"r\",\"s\"]"},
        {"[\"g\"]", "[\"h\"]"},
        {"\"rule\":\"true\"", "\"rule\":\"false\""},
    };
    for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
        cat *c = cat_new(&OPT);
        char text[1024], edited[1024];
        snprintf(text, sizeof text, "[%s]", base);
        upsert(c, text, T0, NULL);
        upsert(c, text, T1, NULL); /* the same: no update */
        cat_info info;
        cat_product_info(get(c, "p"), &info);
        assert_int_equal(info.updated_ms, T0);
        const char *at = strstr(text, edits[i][0]);
        if (!at) fail_msg("edit %zu does not apply", i);
        snprintf(edited, sizeof edited, "%.*s%s%s", (int)(at - text), text, edits[i][1],
                 at + strlen(edits[i][0]));
        upsert(c, edited, T2, NULL);
        cat_product_info(get(c, "p"), &info);
        if (info.updated_ms != T2)
            fail_msg("edit %zu (%s) did not count as a change", i, edits[i][1]);
        cat_free(c);
    }
#undef BASE_FIELDS
}

static void test_upsert_all_or_nothing(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    upsert(c, "[{\"id\":\"keep\",\"price\":1}]", T0, NULL);
    refused("[{\"id\":\"keep\",\"price\":2},{\"id\":\"b\",\"price\":-1},{\"id\":\"c\",\"price\":"
            "true}]",
            "invalid_field", "[1].price", "[1].price must be a number from 0 to 1000000000000");
    /* A logged array that does not validate (a corrupt log) changes nothing either. */
    json_t *bad = J("[{\"id\":\"keep\",\"price\":2},{\"id\":\"new\"},{\"price\":3}]");
    cat_changes ch = CAT_CHANGES_INIT;
    assert_int_equal(cat_upsert_apply(c, bad, T1, &ch), CAT_INVALID);
    assert_int_equal(ch.n, 0);
    assert_int_equal(cat_count(c), 1);
    product_is(c, "keep",
               "{\"id\":\"keep\",\"price\":1.0,\"status\":\"active\",\"in_stock\":true,"
               "\"source\":\"catalog\"," META0 "}");
    json_decref(bad);
    bad = J("{}");
    assert_int_equal(cat_upsert_apply(c, bad, T1, NULL), CAT_INVALID);
    json_decref(bad);
    cat_free(c);
}

/* Field errors, each with the exact code, path and (for most) message. */
static void test_upsert_field_errors(void **state) {
    (void)state;
    refused("{}", "invalid_body", "", "the body must be a JSON array of products");
    refused("[1]", "invalid_field", "[0]", "[0] must be an object");
    refused("[{}]", "missing_field", "[0].id", "[0].id is required");
    refused("[{\"id\":\"\"}]", "missing_field", "[0].id", "[0].id must not be empty");
    refused("[{\"id\":null}]", "missing_field", "[0].id", NULL);
    refused("[{\"id\":1.5}]", "invalid_field", "[0].id", "[0].id must be a string");
    refused("[{\"id\":[\"a\"]}]", "invalid_field", "[0].id", NULL);
    refused("[{\"id\":\"a\",\"prices\":1}]", "invalid_field", "[0].prices",
            "[0].prices is not a product field (custom data goes in attributes)");
    refused("[{\"id\":\"a\",\"title\":\"X\",\"name\":\"Y\"}]", "invalid_field", "[0].name",
            "[0].name and title are the same field with different values");
    refused("[{\"id\":\"a\",\"product_id\":\"b\"}]", "invalid_field", "[0].product_id", NULL);
    refused("[{\"id\":\"a\",\"sku\":true}]", "invalid_field", "[0].sku",
            "[0].sku must be a string");
    refused("[{\"id\":\"a\",\"title\":{}}]", "invalid_field", "[0].title", NULL);
    refused("[{\"id\":\"a\",\"url\":[]}]", "invalid_field", "[0].url", NULL);
    refused("[{\"id\":\"a\",\"image\":2.5}]", "invalid_field", "[0].image", NULL);
    refused("[{\"id\":\"a\",\"brand\":false}]", "invalid_field", "[0].brand", NULL);
    refused("[{\"id\":\"a\",\"price\":\"abc\"}]", "invalid_field", "[0].price", NULL);
    refused("[{\"id\":\"a\",\"price\":\" 5\"}]", "invalid_field", "[0].price", NULL);
    refused("[{\"id\":\"a\",\"price\":\"0x10\"}]", "invalid_field", "[0].price", NULL);
    refused("[{\"id\":\"a\",\"price\":\"1e400\"}]", "invalid_field", "[0].price", NULL);
    refused("[{\"id\":\"a\",\"price\":1e13}]", "invalid_field", "[0].price", NULL);
    refused("[{\"id\":\"a\",\"price\":-0.01}]", "invalid_field", "[0].price", NULL);
    refused("[{\"id\":\"a\",\"price\":{}}]", "invalid_field", "[0].price", NULL);
    refused("[{\"id\":\"a\",\"sale_price\":[1]}]", "invalid_field", "[0].sale_price", NULL);
    refused("[{\"id\":\"a\",\"price\":10,\"sale_price\":10.01}]", "invalid_field", "[0].sale_price",
            "[0].sale_price must not exceed price");
    refused("[{\"id\":\"a\",\"currency\":\"EURO\"}]", "invalid_field", "[0].currency",
            "[0].currency must be an ISO 4217 code of three letters, like \"EUR\"");
    refused("[{\"id\":\"a\",\"currency\":\"E1R\"}]", "invalid_field", "[0].currency", NULL);
    refused("[{\"id\":\"a\",\"currency\":978}]", "invalid_field", "[0].currency", NULL);
    refused("[{\"id\":\"a\",\"stock\":-1}]", "invalid_field", "[0].stock",
            "[0].stock must be a whole number from 0 to 1000000000");
    refused("[{\"id\":\"a\",\"stock\":1000000001}]", "invalid_field", "[0].stock", NULL);
    refused("[{\"id\":\"a\",\"stock\":2.5}]", "invalid_field", "[0].stock", NULL);
    refused("[{\"id\":\"a\",\"stock\":[1]}]", "invalid_field", "[0].stock",
            "[0].stock must be an object of location: count, or a count");
    refused("[{\"id\":\"a\",\"stock\":true}]", "invalid_field", "[0].stock", NULL);
    refused("[{\"id\":\"a\",\"stock\":{\"berlin\":-1}}]", "invalid_field", "[0].stock.berlin",
            "[0].stock.berlin must be a whole number from 0 to 1000000000");
    refused("[{\"id\":\"a\",\"stock\":{\"berlin\":\"many\"}}]", "invalid_field", "[0].stock.berlin",
            NULL);
    refused("[{\"id\":\"a\",\"stock\":{\"\":1}}]", "invalid_field", "[0].stock.",
            "[0].stock. is not a location name (1 to 255 bytes)");
    refused("[{\"id\":\"a\",\"tags\":\"x\"}]", "invalid_field", "[0].tags",
            "[0].tags must be an array of strings");
    refused("[{\"id\":\"a\",\"tags\":[\"x\",\"\"]}]", "invalid_field", "[0].tags[1]",
            "[0].tags[1] must not be empty");
    refused("[{\"id\":\"a\",\"tags\":[{}]}]", "invalid_field", "[0].tags[0]", NULL);
    refused("[{\"id\":\"a\",\"categories\":\"Shoes\"}]", "invalid_field", "[0].categories", NULL);
    refused("[{\"id\":\"a\",\"categories\":[\"Shoes > > Running\"]}]", "invalid_field",
            "[0].categories[0]", "[0].categories[0] has an empty name in its path");
    refused("[{\"id\":\"a\",\"category\":\"> Shoes\"}]", "invalid_field", "[0].category", NULL);
    refused("[{\"id\":\"a\",\"category\":"
            "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa > "
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"}]",
            "invalid_field", "[0].category", "[0].category is longer than 255 bytes");
    refused("[{\"id\":\"a\",\"category\":[\"Shoes\"]}]", "invalid_field", "[0].category", NULL);
    refused("[{\"id\":\"a\",\"attributes\":[1]}]", "invalid_field", "[0].attributes",
            "[0].attributes must be an object");
    refused("[{\"id\":\"a\",\"replenishable\":\"yes\"}]", "invalid_field", "[0].replenishable",
            "[0].replenishable must be true or false");
    refused("[{\"id\":\"a\",\"status\":\"deleted\"}]", "invalid_field", "[0].status",
            "[0].status must be \"active\", \"archived\" or \"draft\"");
    refused("[{\"id\":\"a\",\"status\":1}]", "invalid_field", "[0].status", NULL);
    refused("[{\"id\":\"a\",\"variants\":{}}]", "invalid_field", "[0].variants", NULL);
    refused("[{\"id\":\"a\",\"variants\":[1]}]", "invalid_field", "[0].variants[0]",
            "[0].variants[0] must be an object");
    refused("[{\"id\":\"a\",\"variants\":[{\"sku\":\"x\"}]}]", "missing_field",
            "[0].variants[0].id", "[0].variants[0].id is required");
    refused("[{\"id\":\"a\",\"variants\":[{\"id\":\"v\"},{\"id\":\"v\"}]}]", "invalid_field",
            "[0].variants[1].id", "[0].variants[1].id repeats the id of variants[0]");
    refused("[{\"id\":\"a\",\"variants\":[{\"id\":\"v\",\"brand\":\"x\"}]}]", "invalid_field",
            "[0].variants[0].brand", "[0].variants[0].brand is not a known field");
    refused("[{\"id\":\"a\",\"variants\":[{\"id\":\"v0\"},{\"id\":\"v1\"},{\"id\":\"v2\"},{"
            "\"id\":\"v3\",\"stock\":{\"berlin\":-4}}]}]",
            "invalid_field", "[0].variants[3].stock.berlin", NULL);
    refused("[{\"id\":\"a\",\"price\":10,\"variants\":[{\"id\":\"v\",\"sale_price\":11}]}]",
            "invalid_field", "[0].variants[0].sale_price",
            "[0].variants[0].sale_price must not exceed the variant's price");
    refused("[{\"id\":\"a\",\"availability\":[]}]", "invalid_field", "[0].availability", NULL);
    refused("[{\"id\":\"a\",\"availability\":{\"markets\":[]}}]", "invalid_field",
            "[0].availability.markets",
            "[0].availability.markets must not be empty (leave it out to allow all)");
    refused("[{\"id\":\"a\",\"availability\":{\"markets\":\"de\"}}]", "invalid_field",
            "[0].availability.markets", NULL);
    refused("[{\"id\":\"a\",\"availability\":{\"segments\":[\"vip\",null]}}]", "invalid_field",
            "[0].availability.segments[1]", NULL);
    refused("[{\"id\":\"a\",\"availability\":{\"colour\":[\"x\"]}}]", "invalid_field",
            "[0].availability.colour", "[0].availability.colour is not a known field");
    refused("[{\"id\":\"a\",\"availability\":{\"rule\":\"price >\"}}]", "invalid_field",
            "[0].availability.rule",
            "[0].availability.rule is not a valid rule: unexpected 'p' at 1:1");
    refused("[{\"id\":\"a\",\"availability\":{\"rule\":7}}]", "invalid_field",
            "[0].availability.rule", NULL);
    refused_with(NULL, "[{\"id\":\"a\"},{\"id\":\"b\",\"availability\":{\"rule\":\"true\"}}]",
                 "invalid_field", "[1].availability.rule",
                 "[1].availability.rule cannot be used: rules are not enabled");
    /* Ids given twice, also once as a number. */
    refused("[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"a\"}]", "invalid_field", "[2].id",
            "[2].id repeats the id of [0]");
    refused("[{\"id\":\"7\"},{\"product_id\":7}]", "invalid_field", "[1].id", NULL);
    /* The first bad product in array order wins, not the first bad field kind. */
    refused("[{\"id\":\"a\",\"stock\":-1},{\"id\":\"a\"}]", "invalid_field", "[0].stock", NULL);
    assert_int_equal(rules_live, 0); /* every rule compiled while validating was freed */
}

/* Every field given values of every wrong JSON type: each is refused naming that field (or
 * accepted, for the shapes a field takes), never a crash. */
static void test_upsert_wrong_types_everywhere(void **state) {
    (void)state;
    static const char *const fields[] = {"id",          "product_id", "sku",           "title",
                                         "name",        "url",        "image_url",     "image",
                                         "brand",       "categories", "category",      "price",
                                         "sale_price",  "currency",   "stock",         "tags",
                                         "attributes",  "variants",   "replenishable", "status",
                                         "availability"};
    static const char *const values[] = {"true",  "false",      "{}",    "[]",          "[[]]",
                                         "[{}]",  "{\"a\":{}}", "1.5",   "-3",          "\"\"",
                                         "\"x\"", "1e300",      "[1,2]", "{\"rule\":1}"};
    int refusals = 0;
    for (size_t f = 0; f < sizeof fields / sizeof *fields; f++)
        for (size_t v = 0; v < sizeof values / sizeof *values; v++) {
            char text[256], want[64];
            bool id = strcmp(fields[f], "id") == 0;
            snprintf(text, sizeof text, "[{%s\"%s\":%s}]", id ? "" : "\"id\":\"p\",", fields[f],
                     values[v]);
            snprintf(want, sizeof want, "[0].%s", fields[f]);
            json_t *in = J(text);
            ev_error err = {0};
            if (cat_upsert_prepare(&OPT, in, NULL, &err)) {
                refusals++;
                if (strncmp(err.field, want, strlen(want)) != 0)
                    fail_msg("%s refused at %s (%s)", text, err.field, err.message);
            }
            json_decref(in);
        }
    /* Counted by hand from the table (14 values per field): id takes -3 and "x" (12 refused);
     * product_id beside id must equal it (14); the seven text fields take -3, "" and "x" (11
     * each); categories takes [] and [1,2] (12); category -3, "" and "x" (11); price and
     * sale_price only 1.5 (13 each); currency nothing (14); stock {} and {"rule":1} (12); tags []
     * and [1,2] (12); attributes the three objects (11); variants [] (13); replenishable the two
     * booleans (12); status nothing (14); availability {} (13). */
    assert_int_equal(refusals, 253);
}

static void test_upsert_limits(void **state) {
    (void)state;
    buf b = BUF_INIT(0);
    /* 10,000 products are taken (and folded into the index); 10,001 are not. */
    char *text = many("p", CAT_BULK_MAX);
    cat *c = cat_new(&OPT);
    upsert(c, text, T0, NULL);
    assert_int_equal(cat_count(c), CAT_BULK_MAX);
    free(text);
    text = many("p", CAT_BULK_MAX + 1);
    refused(text, "too_many_products", "",
            "an upsert takes at most 10000 products; this one has 10001");
    free(text);
    cat_free(c);

    /* 100 variants, 100 locations, 64 tags, 64 category levels: taken; one more: refused. */
    const char *lists[][3] = {
        {"variants", "{\"id\":\"v%d\"}", "[0].variants must have at most 100 variants"},
        {"tags", "\"t%d\"", "[0].tags must have at most 64 entries"},
        {"categories", "\"c%d\"", "[0].categories must have at most 64 entries"},
        {"markets", "\"m%d\"", "[0].availability.markets must have at most 64 entries"},
    };
    for (size_t l = 0; l < 4; l++) {
        int max = l == 0 ? CAT_VARIANTS_MAX : CAT_LIST_ITEMS_MAX;
        for (int extra = 0; extra <= 1; extra++) {
            buf_reset(&b);
            bool avail = l == 3;
            buf_printf(&b, "[{\"id\":\"a\",%s\"%s\":[", avail ? "\"availability\":{" : "",
                       lists[l][0]);
            for (int i = 0; i < max + extra; i++) {
                if (i) buf_putc(&b, ',');
                buf_printf(&b, lists[l][1], i);
            }
            buf_printf(&b, "]%s}]", avail ? "}" : "");
            if (!extra) {
                json_t *in = J(buf_str(&b));
                ev_error err;
                assert_int_equal(cat_upsert_prepare(&OPT, in, NULL, &err), 0);
                json_decref(in);
            } else {
                char field[64];
                snprintf(field, sizeof field, "[0].%s%s", avail ? "availability." : "",
                         lists[l][0]);
                refused(buf_str(&b), "invalid_field", field, lists[l][2]);
            }
        }
    }
    for (int extra = 0; extra <= 1; extra++) {
        buf_reset(&b);
        buf_puts(&b, "[{\"id\":\"a\",\"stock\":{");
        for (int i = 0; i < CAT_LOCATIONS_MAX + extra; i++)
            buf_printf(&b, "%s\"l%d\":1", i ? "," : "", i);
        buf_puts(&b, "}}]");
        if (extra)
            refused(buf_str(&b), "invalid_field", "[0].stock",
                    "[0].stock must have at most 100 locations");
        else
            upsert(c = cat_new(&OPT), buf_str(&b), T0, NULL), cat_free(c);
    }
    /* A category path adds one entry per level, and they count towards the 64: 62 names and a
     * two-level path fit, 63 and the path do not. (A path alone cannot get there: 65 levels
     * take more than 255 bytes.) */
    for (int extra = 0; extra <= 1; extra++) {
        buf_reset(&b);
        buf_puts(&b, "[{\"id\":\"a\",\"categories\":[");
        for (int i = 0; i < 62 + extra; i++)
            buf_printf(&b, "%s\"c%d\"", i ? "," : "", i);
        buf_puts(&b, "],\"category\":\"x > y\"}]");
        if (extra)
            refused(buf_str(&b), "invalid_field", "[0].category",
                    "[0].category makes more than 64 categories (a path counts each level)");
        else
            upsert(c = cat_new(&OPT), buf_str(&b), T0, NULL), cat_free(c);
    }
    buf_free(&b);
}

static void test_upsert_hostile(void **state) {
    (void)state;
    buf b = BUF_INIT(0);
    /* Strings just over each cap. */
    const struct {
        const char *field;
        int len;
        const char *path;
    } caps[] = {{"id", 256, "[0].id"},        {"sku", 256, "[0].sku"},
                {"title", 1025, "[0].title"}, {"url", 2049, "[0].url"},
                {"brand", 256, "[0].brand"},  {"category", 256, "[0].category"}};
    for (size_t i = 0; i < sizeof caps / sizeof *caps; i++)
        for (int extra = -1; extra <= 0; extra++) {
            buf_reset(&b);
            buf_printf(&b, "[{%s\"%s\":\"", strcmp(caps[i].field, "id") ? "\"id\":\"p\"," : "",
                       caps[i].field);
            for (int k = 0; k < caps[i].len + extra; k++)
                buf_putc(&b, 'x');
            buf_puts(&b, "\"}]");
            json_t *in = J(buf_str(&b));
            ev_error err = {0};
            int rc = cat_upsert_prepare(&OPT, in, NULL, &err);
            json_decref(in);
            if (extra < 0) {
                assert_int_equal(rc, 0);
            } else {
                assert_int_equal(rc, -1);
                assert_string_equal(err.field, caps[i].path);
                assert_string_equal(err.code, "invalid_field");
            }
        }
    /* A megabyte string: refused as too large before anything looks at it. */
    buf_reset(&b);
    buf_puts(&b, "[{\"id\":\"p\",\"title\":\"");
    for (int k = 0; k < 1 << 20; k++)
        buf_putc(&b, 'y');
    buf_puts(&b, "\"}]");
    refused(buf_str(&b), "product_too_large", "[0]", "[0] is over 32768 bytes");
    /* Attributes: 8 levels fit, 9 do not; 40 levels are refused for the whole product. */
    const int depths[] = {8, 9, 40};
    for (size_t d = 0; d < 3; d++) {
        buf_reset(&b);
        buf_puts(&b, "[{\"id\":\"p\",\"attributes\":");
        for (int k = 0; k < depths[d]; k++)
            buf_puts(&b, "{\"a\":");
        buf_puts(&b, "1");
        for (int k = 0; k < depths[d]; k++)
            buf_putc(&b, '}');
        buf_puts(&b, "}]");
        json_t *in = J(buf_str(&b));
        ev_error err = {0};
        int rc = cat_upsert_prepare(&OPT, in, NULL, &err);
        json_decref(in);
        if (d == 0) {
            assert_int_equal(rc, 0);
        } else if (d == 1) {
            assert_int_equal(rc, -1);
            assert_string_equal(err.field, "[0].attributes");
            assert_string_equal(err.message, "[0].attributes nests deeper than 8 levels");
        } else {
            assert_int_equal(rc, -1);
            assert_string_equal(err.code, "too_deep");
            assert_string_equal(err.field, "[0]");
            assert_string_equal(err.message, "[0] nests deeper than 32 levels");
        }
    }
    buf_free(&b);
    /* Attributes of 33 KB in total: too large. */
    char *big = malloc(34000);
    memset(big, 'z', 33999);
    big[33999] = '\0';
    json_t *in = json_pack("[{sss{ss}}]", "id", "p", "attributes", "note", big);
    ev_error err = {0};
    assert_int_equal(cat_upsert_prepare(&OPT, in, NULL, &err), -1);
    assert_string_equal(err.code, "product_too_large");
    json_decref(in);
    free(big);
    /* A string with a NUL byte (jansson only makes those when asked). */
    in = json_pack("[{ss#}]", "id", "a\0b", (size_t)3);
    assert_int_equal(cat_upsert_prepare(&OPT, in, NULL, &err), -1);
    assert_string_equal(err.field, "[0].id");
    assert_string_equal(err.message, "[0].id must not contain NUL characters");
    json_decref(in);
    /* 1e400 is not a number jansson will read, so it never reaches the catalogue. */
    json_error_t je;
    assert_null(json_loads("[{\"id\":\"a\",\"price\":1e400}]", 0, &je));
    /* -0 is 0; integers as prices become reals; a numeric string stock becomes a count. */
    cat *c = cat_new(&OPT);
    upsert(c, "[{\"id\":\"z\",\"price\":-0.0,\"stock\":{\"a\":\"7\",\"b\":3.0,\"c\":null}}]", T0,
           NULL);
    product_is(c, "z",
               "{\"id\":\"z\",\"price\":0.0,\"stock\":{\"a\":7,\"b\":3},\"status\":\"active\","
               "\"in_stock\":true,\"source\":\"catalog\"," META0 "}");
    cat_free(c);
}

/* ---- stock and variants ---- */

static void test_in_stock_rules(void **state) {
    (void)state;
    /* variants: each variant's in_stock, in order ('1' in, '0' out). */
    const struct {
        const char *product;
        bool in_stock;
        int64_t total;
        const char *variants;
    } cases[] = {
        {"{\"id\":\"x\"}", true, -1, ""},
        {"{\"id\":\"x\",\"stock\":{}}", false, 0, ""},
        {"{\"id\":\"x\",\"stock\":0}", false, 0, ""},
        {"{\"id\":\"x\",\"stock\":{\"a\":0,\"b\":2}}", true, 2, ""},
        {"{\"id\":\"x\",\"variants\":[{\"id\":\"a\",\"stock\":0}]}", false, 0, "0"},
        /* b has no stock of its own and the product none either: b follows the whole. */
        {"{\"id\":\"x\",\"variants\":[{\"id\":\"a\",\"stock\":0},{\"id\":\"b\"}]}", false, 0, "00"},
        {"{\"id\":\"x\",\"variants\":[{\"id\":\"a\",\"stock\":2},{\"id\":\"b\"}]}", true, 2, "11"},
        /* The product's own stock is what a variant without stock follows. */
        {"{\"id\":\"x\",\"stock\":0,\"variants\":[{\"id\":\"a\",\"stock\":3},{\"id\":\"b\"}]}",
         true, 3, "10"},
        {"{\"id\":\"x\",\"variants\":[{\"id\":\"a\"}]}", true, -1, "1"},
        {"{\"id\":\"x\",\"stock\":1,\"variants\":[{\"id\":\"a\",\"stock\":0},{\"id\":\"b\"}]}",
         true, 1, "01"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cat *c = cat_new(&OPT);
        char text[256];
        snprintf(text, sizeof text, "[%s]", cases[i].product);
        upsert(c, text, T0, NULL);
        const cat_product *p = get(c, "x");
        cat_info info;
        cat_product_info(p, &info);
        if (info.in_stock != cases[i].in_stock || info.stock_total != cases[i].total)
            fail_msg("%s: in_stock %d total %lld", text, info.in_stock,
                     (long long)info.stock_total);
        assert_int_equal(cat_product_sellable(p), cases[i].in_stock);
        assert_int_equal(info.nvariants, strlen(cases[i].variants));
        for (size_t v = 0; v < info.nvariants; v++) {
            json_t *vj = cat_variant_json(p, v);
            if (json_is_true(json_object_get(vj, "in_stock")) != (cases[i].variants[v] == '1'))
                fail_msg("%s: variant %zu in_stock wrong", text, v);
            json_decref(vj);
        }
        cat_free(c);
    }
}

static void test_variants_inherit(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    upsert(c,
           "[{\"id\":\"p\",\"sku\":\"P\",\"title\":\"Shirt\",\"image_url\":\"img\",\"price\":30,"
           "\"sale_price\":25,\"currency\":\"EUR\",\"attributes\":{\"material\":\"cotton\","
           "\"fit\":\"slim\"},\"stock\":{\"default\":0},\"variants\":[{\"id\":\"s\",\"attributes\""
           ":{\"size\":\"S\",\"fit\":\"regular\"},\"stock\":{\"default\":2}},{\"id\":\"m\","
           "\"price\":32,\"name\":\"Shirt M\",\"image\":\"m.jpg\"},{\"id\":\"l\",\"sale_price\":"
           "20}]}]",
           T0, NULL);
    const cat_product *p = get(c, "p");
    json_is(cat_variant_json(p, 0),
            "{\"id\":\"s\",\"sku\":\"P\",\"title\":\"Shirt\",\"image_url\":\"img\",\"price\":30.0,"
            "\"sale_price\":25.0,\"stock\":{\"default\":2},\"currency\":\"EUR\",\"attributes\":{"
            "\"material\":\"cotton\",\"fit\":\"regular\",\"size\":\"S\"},\"in_stock\":true}");
    /* Its own price: the product's sale price is not inherited. No stock of its own: follows the
     * product's own stock (0). */
    json_is(cat_variant_json(p, 1),
            "{\"id\":\"m\",\"sku\":\"P\",\"title\":\"Shirt M\",\"image_url\":\"m.jpg\","
            "\"price\":32.0,\"currency\":\"EUR\",\"attributes\":{\"material\":\"cotton\",\"fit\":"
            "\"slim\"},\"in_stock\":false}");
    json_is(cat_variant_json(p, 2),
            "{\"id\":\"l\",\"sku\":\"P\",\"title\":\"Shirt\",\"image_url\":\"img\",\"price\":30.0,"
            "\"sale_price\":20.0,\"currency\":\"EUR\",\"attributes\":{\"material\":\"cotton\","
            "\"fit\":\"slim\"},\"in_stock\":false}");
    assert_null(cat_variant_json(p, 3));
    /* The product's JSON keeps each variant's own fields only. */
    product_is(c, "p",
               "{\"id\":\"p\",\"sku\":\"P\",\"title\":\"Shirt\",\"image_url\":\"img\",\"price\":"
               "30.0,\"sale_price\":25.0,\"currency\":\"EUR\",\"stock\":{\"default\":0},"
               "\"attributes\":{\"material\":\"cotton\",\"fit\":\"slim\"},\"variants\":[{\"id\":"
               "\"s\",\"stock\":{\"default\":2},\"attributes\":{\"size\":\"S\",\"fit\":"
               "\"regular\"},\"in_stock\":true},{\"id\":\"m\",\"title\":\"Shirt M\",\"image_url\":"
               "\"m.jpg\",\"price\":32.0,\"in_stock\":false},{\"id\":\"l\",\"sale_price\":20.0,"
               "\"in_stock\":false}],\"status\":\"active\",\"in_stock\":true,\"source\":"
               "\"catalog\"," META0 "}");
    cat_info info;
    cat_product_info(p, &info);
    assert_int_equal(info.nvariants, 3);
    assert_int_equal(info.stock_total, 2);
    /* A variant with its own price is not held to the product's sale price. */
    upsert(
        c,
        "[{\"id\":\"q\",\"price\":10,\"sale_price\":8,\"variants\":[{\"id\":\"a\",\"price\":5}]}]",
        T0, NULL);
    cat_free(c);
}

/* ---- observe ---- */

static void test_observe_creates_and_fills(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    json_t *ev = J("{\"product_id\":\"p9\",\"sku\":\"S9\",\"name\":\"Cap\",\"brand\":\"Acme\","
                   "\"category\":\"Hats\",\"price\":12.5,\"currency\":\"usd\",\"url\":\"u\","
                   "\"image_url\":\"i\",\"variant\":\"Blue\",\"quantity\":2}");
    assert_int_equal(cat_observe_json(c, ev, T0), 1);
    json_decref(ev);
    const char *p9 =
        "{\"id\":\"p9\",\"sku\":\"S9\",\"title\":\"Cap\",\"url\":\"u\",\"image_url\":\"i\","
        "\"brand\":\"Acme\",\"categories\":[\"Hats\"],\"price\":12.5,\"currency\":\"USD\","
        "\"status\":\"active\",\"in_stock\":true,\"source\":\"events\",\"from_events\":[\"sku\","
        "\"title\",\"url\",\"image_url\",\"brand\",\"categories\",\"price\",\"currency\"]," META0
        "}";
    product_is(c, "p9", p9);
    /* The first value seen is kept: later events change nothing. */
    ev = J("{\"product_id\":\"p9\",\"name\":\"Other\",\"price\":1,\"brand\":\"B\"}");
    assert_int_equal(cat_observe_json(c, ev, T1), 0);
    json_decref(ev);
    product_is(c, "p9", p9);

    /* A catalogue product gets only what it lacks; its price never changes. */
    upsert(c, "[{\"id\":\"p1\",\"title\":\"Runner\",\"price\":50,\"currency\":\"EUR\"}]", T0, NULL);
    cm_product seen = {.product_id = "p1",
                       .name = "Renamed",
                       .brand = "Acme",
                       .category = "Shoes > Running",
                       .price = 40,
                       .has = CM_HAS_PRICE};
    assert_int_equal(cat_observe(c, &seen, "USD", T1), 1);
    product_is(c, "p1",
               "{\"id\":\"p1\",\"title\":\"Runner\",\"brand\":\"Acme\",\"categories\":[\"Shoes\","
               "\"Shoes > Running\"],\"price\":50.0,\"currency\":\"EUR\",\"status\":\"active\","
               "\"in_stock\":true,\"source\":\"catalog\",\"from_events\":[\"brand\","
               "\"categories\"],\"created_at\":\"2024-05-01T10:00:00.000Z\",\"updated_at\":"
               "\"2024-05-01T10:01:00.000Z\"}");
    assert_int_equal(cat_observe(c, &seen, "USD", T2), 0);
    /* A catalogue with a sale price only has a price too, as far as events are concerned. */
    upsert(c, "[{\"id\":\"s\",\"sale_price\":5}]", T0, NULL);
    seen.product_id = "s";
    assert_int_equal(cat_observe(c, &seen, NULL, T1), 1);
    cat_info info;
    cat_product_info(get(c, "s"), &info);
    assert_false(info.has_price);
    assert_true(info.effective_price == 5);

    /* An upsert keeps learned fields it lacks and takes over those it gives. */
    upsert(c, "[{\"id\":\"p1\",\"title\":\"Runner 2\",\"brand\":\"Acme Co\",\"price\":45}]", T2,
           NULL);
    product_is(c, "p1",
               "{\"id\":\"p1\",\"title\":\"Runner 2\",\"brand\":\"Acme Co\",\"categories\":["
               "\"Shoes\",\"Shoes > Running\"],\"price\":45.0,\"status\":\"active\",\"in_stock\":"
               "true,\"source\":\"catalog\",\"from_events\":[\"categories\"],\"created_at\":"
               "\"2024-05-01T10:00:00.000Z\",\"updated_at\":\"2024-05-01T10:02:00.000Z\"}");
    /* An events product upserted: source becomes catalog; the learned price and currency stay
     * only while the upsert gives no price, sale price or currency. */
    upsert(c, "[{\"id\":\"p9\",\"title\":\"Cap\"}]", T1, NULL);
    product_is(c, "p9",
               "{\"id\":\"p9\",\"sku\":\"S9\",\"title\":\"Cap\",\"url\":\"u\",\"image_url\":\"i\","
               "\"brand\":\"Acme\",\"categories\":[\"Hats\"],\"price\":12.5,\"currency\":\"USD\","
               "\"status\":\"active\",\"in_stock\":true,\"source\":\"catalog\",\"from_events\":["
               "\"sku\",\"url\",\"image_url\",\"brand\",\"categories\",\"price\",\"currency\"],"
               "\"created_at\":\"2024-05-01T10:00:00.000Z\",\"updated_at\":\"2024-05-01T10:01:00."
               "000Z\"}");
    upsert(c, "[{\"id\":\"p9\",\"title\":\"Cap\",\"sale_price\":9}]", T2, NULL);
    product_is(c, "p9",
               "{\"id\":\"p9\",\"sku\":\"S9\",\"title\":\"Cap\",\"url\":\"u\",\"image_url\":\"i\","
               "\"brand\":\"Acme\",\"categories\":[\"Hats\"],\"sale_price\":9.0,\"status\":"
               "\"active\",\"in_stock\":true,\"source\":\"catalog\",\"from_events\":[\"sku\","
               "\"url\",\"image_url\",\"brand\",\"categories\"],\"created_at\":\"2024-05-01T10:00:"
               "00.000Z\",\"updated_at\":\"2024-05-01T10:02:00.000Z\"}");
    cat_free(c);
}

static void test_observe_hostile_and_capped(void **state) {
    (void)state;
    cat_options opt = OPT;
    opt.max_observed = 2;
    cat *c = cat_new(&opt);
    char longsku[300];
    memset(longsku, 'k', sizeof longsku - 1);
    longsku[sizeof longsku - 1] = '\0';
    cm_product p = {.product_id = "a",
                    .sku = longsku,
                    .name = "",
                    .category = "x > > y",
                    .price = -1,
                    .has = CM_HAS_PRICE};
    assert_int_equal(cat_observe(c, &p, "EURO", T0), 1);
    product_is(c, "a",
               "{\"id\":\"a\",\"status\":\"active\",\"in_stock\":true,\"source\":\"events\"," META0
               "}");
    cm_product none = {0};
    assert_int_equal(cat_observe(c, &none, "EUR", T0), 0);
    assert_int_equal(cat_observe(c, NULL, "EUR", T0), 0);
    json_t *bad = J("{\"product_id\":[1],\"id\":{}}");
    assert_int_equal(cat_observe_json(c, bad, T0), 0);
    json_decref(bad);
    bad = J("[1]");
    assert_int_equal(cat_observe_json(c, bad, T0), 0);
    json_decref(bad);
    /* Wrong types are skipped field by field; a numeric id becomes its digits. */
    bad = J("{\"id\":42,\"sku\":{},\"name\":7,\"price\":\"3.5\",\"currency\":5}");
    assert_int_equal(cat_observe_json(c, bad, T0), 1);
    json_decref(bad);
    product_is(c, "42",
               "{\"id\":\"42\",\"title\":\"7\",\"price\":3.5,\"status\":\"active\",\"in_stock\":"
               "true,\"source\":\"events\",\"from_events\":[\"title\",\"price\"]," META0 "}");
    /* The cap: a third events product is not created; a catalogue one still is. */
    cm_product third = {.product_id = "c"};
    assert_int_equal(cat_observe(c, &third, NULL, T0), 0);
    assert_null(cat_get(c, "c", 1));
    upsert(c, "[{\"id\":\"a\"}]", T1, NULL); /* a leaves the events count */
    assert_int_equal(cat_observe(c, &third, NULL, T1), 1);
    assert_int_equal(cat_count(c), 3);
    cat_free(c);
}

/* ---- patch ---- */

static void test_patch_merge_semantics(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    upsert(c,
           "[{\"id\":\"p1\",\"title\":\"Old\",\"price\":20,\"sale_price\":15,\"stock\":{"
           "\"berlin\":3,\"hamburg\":0},\"attributes\":{\"color\":\"red\",\"size\":{\"eu\":42,"
           "\"us\":9}},\"tags\":[\"a\",\"b\"]}]",
           T0, NULL);
    json_t *in = J("{\"sale_price\":null,\"stock\":{\"hamburg\":5,\"berlin\":null,\"munich\":1},"
                   "\"attributes\":{\"size\":{\"us\":null}},\"tags\":[\"c\"],\"name\":\"New\","
                   "\"id\":\"p1\",\"updated_at\":\"x\",\"category\":\"Shoes\"}");
    json_t *logged;
    ev_error err;
    assert_int_equal(cat_patch_prepare(c, "p1", in, &logged, &err), 0);
    json_decref(in);
    /* The log holds the patch with canonical names; the id only names the product. */
    char *s = S(logged);
    assert_string_equal(s,
                        "{\"id\":\"p1\",\"patch\":{\"sale_price\":null,\"stock\":{\"hamburg\":"
                        "5,\"berlin\":null,\"munich\":1},\"attributes\":{\"size\":{\"us\":"
                        "null}},\"tags\":[\"c\"],\"title\":\"New\",\"categories\":[\"Shoes\"]}}");
    free(s);
    cat_changes ch = CAT_CHANGES_INIT;
    assert_int_equal(cat_patch_apply(c, logged, T1, &ch), CAT_OK);
    json_decref(logged);
    product_is(c, "p1",
               "{\"id\":\"p1\",\"title\":\"New\",\"categories\":[\"Shoes\"],\"price\":20.0,"
               "\"stock\":{\"hamburg\":5,\"munich\":1},\"tags\":[\"c\"],\"attributes\":{\"color\":"
               "\"red\",\"size\":{\"eu\":42}},\"status\":\"active\",\"in_stock\":true,\"source\":"
               "\"catalog\",\"created_at\":\"2024-05-01T10:00:00.000Z\",\"updated_at\":\"2024-05-"
               "01T10:01:00.000Z\"}");
    /* Effective price 15 -> 20 (sale price deleted); stock 3 -> 6. */
    changes_are(&ch, "[{\"type\":\"price_changed\",\"product_id\":\"p1\",\"old_price\":15.0,"
                     "\"new_price\":20.0,\"price_drop\":false},{\"type\":\"stock_changed\","
                     "\"product_id\":\"p1\",\"old_stock\":3,\"new_stock\":6,\"in_stock\":true,"
                     "\"back_in_stock\":false,\"sold_out\":false}]");
    /* A bare count replaces the stock object; an attribute set to a scalar replaces an object. */
    patch(c, "p1", "{\"stock\":2,\"attributes\":{\"size\":\"L\"},\"title\":null}", T2, NULL);
    product_is(c, "p1",
               "{\"id\":\"p1\",\"categories\":[\"Shoes\"],\"price\":20.0,\"stock\":{\"default\":"
               "2},\"tags\":[\"c\"],\"attributes\":{\"color\":\"red\",\"size\":\"L\"},\"status\":"
               "\"active\",\"in_stock\":true,\"source\":\"catalog\",\"created_at\":\"2024-05-01T10:"
               "00:00.000Z\",\"updated_at\":\"2024-05-01T10:02:00.000Z\"}");
    /* Validation alone. */
    in = J("{\"price\":1}");
    assert_int_equal(cat_patch_prepare(c, "p1", in, NULL, &err), 0);
    json_decref(in);
    cat_free(c);
}

static void test_patch_errors(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    upsert(c, "[{\"id\":\"p1\",\"price\":20,\"sale_price\":15,\"variants\":[{\"id\":\"v1\"}]}]", T0,
           NULL);
    patch_refused(c, "nope", "{}", "not_found", "id", "no product has the id \"nope\"");
    patch_refused(c, "p1", "[]", "invalid_body", "", "a patch must be a JSON object");
    patch_refused(c, "p1", "{\"price\":5}", "invalid_field", "sale_price",
                  "sale_price must not exceed price");
    patch_refused(c, "p1", "{\"id\":\"other\"}", "invalid_field", "id",
                  "id cannot be changed (this is \"p1\")");
    patch_refused(c, "p1", "{\"product_id\":null}", "invalid_field", "product_id", NULL);
    patch_refused(c, "p1", "{\"price\":\"x\"}", "invalid_field", "price",
                  "price must be a number from 0 to 1000000000000");
    patch_refused(c, "p1", "{\"stock\":{\"berlin\":-1}}", "invalid_field", "stock.berlin", NULL);
    patch_refused(c, "p1", "{\"name\":\"A\",\"title\":\"B\"}", "invalid_field", "name",
                  "name and title are the same field with different values");
    patch_refused(c, "p1", "{\"category\":\"A\",\"categories\":[\"B\"]}", "invalid_field",
                  "category", "category and categories cannot both be in a patch");
    patch_refused(c, "p1", "{\"colour\":\"red\"}", "invalid_field", "colour", NULL);
    patch_refused(c, "p1", "{\"variants\":{\"v1\":5}}", "invalid_field", "variants.v1",
                  "variants.v1 must be an object or null");
    patch_refused(c, "p1", "{\"variants\":{\"v1\":{\"id\":\"v2\"}}}", "invalid_field",
                  "variants.v1.id", NULL);
    patch_refused(c, "p1", "{\"variants\":{\"v1\":{\"price\":-2}}}", "invalid_field",
                  "variants[0].price", NULL);
    patch_refused(c, "p1", "{\"variants\":[{\"id\":\"a\"},{\"id\":\"a\"}]}", "invalid_field",
                  "variants[1].id", NULL);
    patch_refused(c, "p1", "{\"availability\":{\"rule\":\"nonsense\"}}", "invalid_field",
                  "availability.rule", NULL);
    /* Deep or large patches, and results over 32 KB. */
    buf b = BUF_INIT(0);
    buf_puts(&b, "{\"attributes\":");
    for (int k = 0; k < 40; k++)
        buf_puts(&b, "{\"a\":");
    buf_puts(&b, "1");
    for (int k = 0; k < 41; k++)
        buf_putc(&b, '}');
    patch_refused(c, "p1", buf_str(&b), "too_deep", "", NULL);
    buf_reset(&b);
    buf_puts(&b, "{\"attributes\":{\"a\":\"");
    for (int k = 0; k < 20000; k++)
        buf_putc(&b, 'a');
    buf_puts(&b, "\"}}");
    patch(c, "p1", buf_str(&b), T1, NULL); /* 20 KB fits */
    buf_reset(&b);
    buf_puts(&b, "{\"attributes\":{\"b\":\"");
    for (int k = 0; k < 20000; k++)
        buf_putc(&b, 'b');
    buf_puts(&b, "\"}}");
    patch_refused(c, "p1", buf_str(&b), "product_too_large", "", "the product is over 32768 bytes");
    buf_free(&b);
    /* An apply whose product vanished, or whose log entry is nonsense, changes nothing. */
    json_t *bad = J("{\"id\":\"nope\",\"patch\":{}}");
    assert_int_equal(cat_patch_apply(c, bad, T1, NULL), CAT_INVALID);
    json_decref(bad);
    bad = J("{\"id\":\"p1\",\"patch\":{\"price\":-1}}");
    assert_int_equal(cat_patch_apply(c, bad, T1, NULL), CAT_INVALID);
    json_decref(bad);
    cat_info info;
    cat_product_info(get(c, "p1"), &info);
    assert_true(info.price == 20);
    cat_free(c);
}

static void test_patch_variants_by_id(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    upsert(c,
           "[{\"id\":\"p\",\"price\":10,\"variants\":[{\"id\":\"v1\",\"stock\":2},{\"id\":\"v2\","
           "\"stock\":0,\"title\":\"Two\"}]}]",
           T0, NULL);
    cat_changes ch = CAT_CHANGES_INIT;
    patch(c, "p",
          "{\"variants\":{\"v2\":{\"stock\":{\"default\":4},\"name\":\"Deux\",\"in_stock\":false},"
          "\"v1\":null,\"v3\":{\"name\":\"Three\",\"price\":5},\"v9\":null}}",
          T1, &ch);
    product_is(c, "p",
               "{\"id\":\"p\",\"price\":10.0,\"variants\":[{\"id\":\"v2\",\"title\":\"Deux\","
               "\"stock\":{\"default\":4},\"in_stock\":true},{\"id\":\"v3\",\"title\":\"Three\","
               "\"price\":5.0,\"in_stock\":true}],\"status\":\"active\",\"in_stock\":true,"
               "\"source\":\"catalog\",\"created_at\":\"2024-05-01T10:00:00.000Z\",\"updated_at\":"
               "\"2024-05-01T10:01:00.000Z\"}");
    /* Product total 2 -> 4; variant v2 back in stock. v1 went, v3 came: no events for them. */
    changes_are(&ch, "[{\"type\":\"stock_changed\",\"product_id\":\"p\",\"old_stock\":2,"
                     "\"new_stock\":4,\"in_stock\":true,\"back_in_stock\":false,\"sold_out\":"
                     "false},{\"type\":\"stock_changed\",\"product_id\":\"p\",\"variant_id\":"
                     "\"v2\",\"old_stock\":0,\"new_stock\":4,\"in_stock\":true,\"back_in_stock\":"
                     "true,\"sold_out\":false}]");
    /* An array replaces the variants whole. */
    patch(c, "p", "{\"variants\":[{\"id\":\"only\"}]}", T2, NULL);
    cat_info info;
    cat_product_info(get(c, "p"), &info);
    assert_int_equal(info.nvariants, 1);
    assert_int_equal(info.stock_total, -1);
    cat_free(c);
}

static void test_patch_events_product(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    json_t *ev = J("{\"product_id\":\"e\",\"name\":\"Cap\",\"brand\":\"Acme\",\"price\":9}");
    assert_int_equal(cat_observe_json(c, ev, T0), 1);
    json_decref(ev);
    patch(c, "e", "{\"brand\":\"Acme Inc\",\"stock\":0}", T1, NULL);
    product_is(c, "e",
               "{\"id\":\"e\",\"title\":\"Cap\",\"brand\":\"Acme Inc\",\"price\":9.0,\"stock\":{"
               "\"default\":0},\"status\":\"active\",\"in_stock\":false,\"source\":\"catalog\","
               "\"from_events\":[\"title\",\"price\"],\"created_at\":\"2024-05-01T10:00:00.000Z\","
               "\"updated_at\":\"2024-05-01T10:01:00.000Z\"}");
    cat_free(c);
}

/* ---- change events ---- */

static void test_change_events(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    cat_changes ch = CAT_CHANGES_INIT;
    upsert(c, "[{\"id\":\"p1\",\"price\":20,\"currency\":\"EUR\",\"stock\":3},{\"id\":\"p2\"}]", T0,
           &ch);
    assert_int_equal(ch.n, 0);
    /* A price drop and a sell-out. */
    upsert(c, "[{\"id\":\"p1\",\"price\":15,\"currency\":\"EUR\",\"stock\":0}]", T1, &ch);
    changes_are(&ch, "[{\"type\":\"price_changed\",\"product_id\":\"p1\",\"old_price\":20.0,"
                     "\"new_price\":15.0,\"currency\":\"EUR\",\"price_drop\":true},{\"type\":"
                     "\"stock_changed\",\"product_id\":\"p1\",\"old_stock\":3,\"new_stock\":0,"
                     "\"in_stock\":false,\"back_in_stock\":false,\"sold_out\":true}]");
    assert_true(ch.n == 0 && ch.v == NULL);
    /* Back in stock, and a rise. */
    upsert(c, "[{\"id\":\"p1\",\"price\":18,\"currency\":\"EUR\",\"stock\":{\"a\":1,\"b\":4}}]", T2,
           &ch);
    assert_int_equal(ch.n, 2);
    assert_int_equal(ch.v[0].kind, CAT_PRICE_CHANGED);
    assert_int_equal(ch.v[0].flags, 0);
    assert_int_equal(ch.v[1].kind, CAT_STOCK_CHANGED);
    assert_int_equal(ch.v[1].flags, CAT_BACK_IN_STOCK);
    assert_int_equal(ch.v[1].old_stock, 0);
    assert_int_equal(ch.v[1].new_stock, 5);
    assert_null(ch.v[1].variant_id);
    cat_changes_free(&ch);
    /* The same value in another currency: a change, never a drop. Moving stock between
     * locations with the same total: no change. */
    upsert(c, "[{\"id\":\"p1\",\"price\":18,\"currency\":\"USD\",\"stock\":{\"a\":5}}]", T2, &ch);
    changes_are(&ch, "[{\"type\":\"price_changed\",\"product_id\":\"p1\",\"old_price\":18.0,"
                     "\"new_price\":18.0,\"old_currency\":\"EUR\",\"currency\":\"USD\","
                     "\"price_drop\":false}]");
    /* A sale price is the effective price; from no stock information to 0 is a sell-out. */
    upsert(c,
           "[{\"id\":\"p1\",\"price\":18,\"sale_price\":9.5,\"currency\":\"USD\",\"stock\":{"
           "\"a\":5}},{\"id\":\"p2\",\"stock\":0},{\"id\":\"p3\",\"stock\":0}]",
           T2, &ch);
    changes_are(&ch, "[{\"type\":\"price_changed\",\"product_id\":\"p1\",\"old_price\":18.0,"
                     "\"new_price\":9.5,\"currency\":\"USD\",\"price_drop\":true},{\"type\":"
                     "\"stock_changed\",\"product_id\":\"p2\",\"old_stock\":null,\"new_stock\":0,"
                     "\"in_stock\":false,\"back_in_stock\":false,\"sold_out\":true}]");
    /* Variants: an inherited price moves with the product's; own stock is reported per variant.
     */
    upsert(c,
           "[{\"id\":\"v\",\"price\":10,\"variants\":[{\"id\":\"a\",\"stock\":1},{\"id\":\"b\","
           "\"price\":7,\"stock\":0}]}]",
           T0, NULL);
    upsert(c,
           "[{\"id\":\"v\",\"price\":8,\"variants\":[{\"id\":\"b\",\"price\":7,\"stock\":2},{"
           "\"id\":\"a\",\"stock\":0}]}]",
           T1, &ch);
    changes_are(&ch, "[{\"type\":\"price_changed\",\"product_id\":\"v\",\"old_price\":10.0,"
                     "\"new_price\":8.0,\"price_drop\":true},{\"type\":\"stock_changed\","
                     "\"product_id\":\"v\",\"old_stock\":1,\"new_stock\":2,\"in_stock\":true,"
                     "\"back_in_stock\":false,\"sold_out\":false},{\"type\":\"stock_changed\","
                     "\"product_id\":\"v\",\"variant_id\":\"b\",\"old_stock\":0,\"new_stock\":2,"
                     "\"in_stock\":true,\"back_in_stock\":true,\"sold_out\":false},{\"type\":"
                     "\"price_changed\",\"product_id\":\"v\",\"variant_id\":\"a\",\"old_price\":"
                     "10.0,\"new_price\":8.0,\"price_drop\":true},{\"type\":\"stock_changed\","
                     "\"product_id\":\"v\",\"variant_id\":\"a\",\"old_stock\":1,\"new_stock\":0,"
                     "\"in_stock\":false,\"back_in_stock\":false,\"sold_out\":true}]");
    /* A price removed is not a price change; archiving reports nothing. */
    upsert(c, "[{\"id\":\"v\"}]", T2, &ch);
    changes_are(&ch, "[{\"type\":\"stock_changed\",\"product_id\":\"v\",\"old_stock\":2,"
                     "\"new_stock\":null,\"in_stock\":true,\"back_in_stock\":false,\"sold_out\":"
                     "false}]");
    cat_free(c);
}

/* ---- availability ---- */

static void test_availability(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    upsert(c,
           "[{\"id\":\"plain\"},"
           "{\"id\":\"m\",\"availability\":{\"markets\":[\"DE\",\"at\",\"de\"]}},"
           "{\"id\":\"pl\",\"availability\":{\"price_lists\":[\"retail\"]}},"
           "{\"id\":\"s\",\"availability\":{\"segments\":[\"vip\",\"staff\"]}},"
           "{\"id\":\"cheap\",\"price\":5,\"availability\":{\"rule\":\"product.price < 10\"}},"
           "{\"id\":\"dear\",\"price\":15,\"availability\":{\"rule\":\"product.price < 10\"}},"
           "{\"id\":\"err\",\"availability\":{\"rule\":\"error\"}},"
           "{\"id\":\"vip\",\"availability\":{\"rule\":\"viewer.vip\"}},"
           "{\"id\":\"arch\",\"status\":\"archived\",\"stock\":0},"
           "{\"id\":\"draft\",\"status\":\"draft\"},"
           "{\"id\":\"out\",\"stock\":0,\"availability\":{\"markets\":[\"fr\"]}},"
           "{\"id\":\"all\",\"availability\":{\"markets\":[\"de\"],\"price_lists\":[\"retail\"],"
           "\"segments\":[\"vip\"],\"rule\":\"true\"}}]",
           T0, NULL);
    assert_int_equal(rules_live, 5);
    product_is(c, "m",
               "{\"id\":\"m\",\"status\":\"active\",\"availability\":{\"markets\":[\"de\",\"at\"]},"
               "\"in_stock\":true,\"source\":\"catalog\"," META0 "}");
    const char *vip_and_staff[] = {"new", "staff"}, *only_new[] = {"new"}, *vips[] = {"vip"};
    bool yes = true, no = false;
    const struct {
        const char *id;
        cat_viewer v;
        cat_reason want;
    } cases[] = {
        {"plain", {0}, CAT_AVAILABLE},
        {"m", {.market = "De"}, CAT_AVAILABLE},
        {"m", {.market = "at"}, CAT_AVAILABLE},
        {"m", {.market = "fr"}, CAT_R_NOT_IN_MARKET},
        {"m", {0}, CAT_R_NOT_IN_MARKET},
        {"pl", {.price_list = "retail"}, CAT_AVAILABLE},
        {"pl", {.price_list = "Retail"}, CAT_R_PRICE_LIST},
        {"pl", {0}, CAT_R_PRICE_LIST},
        {"s", {.segments = vip_and_staff, .nsegments = 2}, CAT_AVAILABLE},
        {"s", {.segments = only_new, .nsegments = 1}, CAT_R_SEGMENT},
        {"s", {0}, CAT_R_SEGMENT},
        {"cheap", {0}, CAT_AVAILABLE},
        {"dear", {0}, CAT_R_RULE},
        {"err", {0}, CAT_R_RULE},
        {"vip", {.ctx = &yes}, CAT_AVAILABLE},
        {"vip", {.ctx = &no}, CAT_R_RULE},
        {"arch", {0}, CAT_R_INACTIVE},
        {"draft", {0}, CAT_R_INACTIVE},
        {"out", {.market = "de"}, CAT_R_OUT_OF_STOCK},
        {"missing", {0}, CAT_R_UNKNOWN},
        {"all",
         {.market = "de", .price_list = "retail", .segments = vips, .nsegments = 1},
         CAT_AVAILABLE},
        {"all",
         {.market = "at", .price_list = "x", .segments = only_new, .nsegments = 1},
         CAT_R_NOT_IN_MARKET},
        {"all",
         {.market = "de", .price_list = "x", .segments = only_new, .nsegments = 1},
         CAT_R_PRICE_LIST},
        {"all",
         {.market = "de", .price_list = "retail", .segments = only_new, .nsegments = 1},
         CAT_R_SEGMENT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cat_reason why = CAT_NREASONS;
        bool ok = cat_available(c, cases[i].id, &cases[i].v, &why);
        if (why != cases[i].want || ok != (cases[i].want == CAT_AVAILABLE))
            fail_msg("case %zu (%s): %s, wanted %s", i, cases[i].id, cat_reason_name(why),
                     cat_reason_name(cases[i].want));
    }
    /* By ordinal, the same answers for every product and viewer above (most from the gate byte). */
    for (uint32_t o = 0; o < cat_count(c); o++) {
        assert_int_equal(cat_sellable_at(c, o), cat_product_sellable(cat_at(c, o)));
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            cat_reason w1 = CAT_NREASONS, w2 = CAT_NREASONS;
            bool a1 = cat_available_at(c, o, &cases[i].v, &w1);
            bool a2 = cat_product_available(c, cat_at(c, o), &cases[i].v, &w2);
            assert_int_equal(a1, a2);
            assert_int_equal(w1, w2);
        }
    }
    cat_reason beyond;
    assert_false(cat_available_at(c, 12, NULL, &beyond));
    assert_int_equal(beyond, CAT_R_UNKNOWN);
    assert_false(cat_sellable_at(c, 12));
    assert_true(cat_available_at(c, 0, NULL, NULL)); /* "plain" */
    /* A NULL viewer is a viewer with nothing; the reason pointer may be NULL. */
    assert_true(cat_available(c, "plain", NULL, NULL));
    assert_false(cat_available(c, "m", NULL, NULL));
    assert_false(cat_available(c, NULL, NULL, NULL));
    assert_false(cat_product_available(c, NULL, NULL, NULL));
    const char *names[] = {"available",     "unknown",    "inactive", "out_of_stock",
                           "not_in_market", "price_list", "segment",  "rule"};
    for (int r = 0; r < CAT_NREASONS; r++)
        assert_string_equal(cat_reason_name((cat_reason)r), names[r]);
    assert_null(cat_reason_name(CAT_NREASONS));
    assert_null(cat_reason_name((cat_reason)-1));
    assert_true(cat_product_sellable(get(c, "m")));
    assert_false(cat_product_sellable(get(c, "arch")));
    assert_false(cat_product_sellable(get(c, "out")));
    assert_false(cat_product_sellable(NULL));
    /* The rule sees the product as it is now: a patched price flips it. */
    patch(c, "dear", "{\"price\":9.99}", T1, NULL);
    assert_true(cat_available(c, "dear", NULL, NULL));
    /* Events filling a field keep the rule's view current too. */
    cm_product seen = {.product_id = "cheap", .brand = "B"};
    assert_int_equal(cat_observe(c, &seen, NULL, T1), 1);
    assert_true(cat_available(c, "cheap", NULL, NULL));
    json_t *arch;
    ev_error err;
    assert_int_equal(cat_archive_prepare(c, "cheap", &arch, &err), 0);
    assert_int_equal(cat_archive_apply(c, arch, T1), CAT_OK);
    json_decref(arch);
    cat_reason why;
    assert_false(cat_available(c, "cheap", NULL, &why));
    assert_int_equal(why, CAT_R_INACTIVE);
    assert_false(cat_sellable_at(c, cat_ordinal(get(c, "cheap"))));
    /* The gate follows replacements too: "plain" sold out, "m" open to all. */
    upsert(c, "[{\"id\":\"plain\",\"stock\":0},{\"id\":\"m\"}]", T2, NULL);
    assert_false(cat_available_at(c, 0, NULL, &why));
    assert_int_equal(why, CAT_R_OUT_OF_STOCK);
    assert_true(cat_available_at(c, cat_ordinal(get(c, "m")), NULL, &why));
    /* Replacing rules frees the old ones. */
    upsert(c, "[{\"id\":\"dear\"},{\"id\":\"err\",\"availability\":{\"rule\":\"false\"}}]", T2,
           NULL);
    assert_int_equal(rules_live, 4);
    cat_free(c);
    assert_int_equal(rules_live, 0);
}

/* ---- archive, list, ordinals ---- */

static void test_archive(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    upsert(c, "[{\"id\":\"p\",\"price\":3}]", T0, NULL);
    json_t *logged = (json_t *)1;
    ev_error err;
    assert_int_equal(cat_archive_prepare(c, "q", &logged, &err), -1);
    assert_null(logged);
    assert_string_equal(err.code, "not_found");
    assert_string_equal(err.field, "id");
    assert_int_equal(cat_archive_prepare(c, "p", &logged, &err), 0);
    json_is(json_incref(logged), "{\"id\":\"p\"}");
    assert_int_equal(cat_archive_apply(c, logged, T1), CAT_OK);
    assert_int_equal(cat_archive_apply(c, logged, T2), CAT_OK); /* already archived: no update */
    json_decref(logged);
    product_is(c, "p",
               "{\"id\":\"p\",\"price\":3.0,\"status\":\"archived\",\"in_stock\":true,\"source\":"
               "\"catalog\",\"created_at\":\"2024-05-01T10:00:00.000Z\",\"updated_at\":\"2024-05-"
               "01T10:01:00.000Z\"}");
    json_t *bad = J("{\"id\":\"q\"}");
    assert_int_equal(cat_archive_apply(c, bad, T1), CAT_INVALID);
    json_decref(bad);
    /* Back with a patch or an upsert. */
    patch(c, "p", "{\"status\":\"active\"}", T2, NULL);
    assert_true(cat_available(c, "p", NULL, NULL));
    assert_int_equal(cat_count(c), 1);
    cat_free(c);
}

static void list_ids(const cat *c, const char *cursor, size_t limit, const char *want_ids,
                     const char *want_next, char next[CAT_CURSOR_MAX]) {
    const cat_product *out[CAT_LIST_MAX];
    size_t n;
    ev_error err;
    assert_int_equal(cat_list(c, cursor, limit, out, &n, next, &err), 0);
    buf b = BUF_INIT(0);
    for (size_t i = 0; i < n; i++) {
        cat_info info;
        cat_product_info(out[i], &info);
        buf_printf(&b, "%s%s", i ? "," : "", info.id);
    }
    assert_string_equal(buf_str(&b), want_ids);
    if (want_next) assert_string_equal(next, want_next);
    buf_free(&b);
}

static void test_list_and_ordinals(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    upsert(c, "[{\"id\":\"b\"},{\"id\":\"a\"},{\"id\":\"c\"},{\"id\":\"aa\"},{\"id\":\"B\"}]", T0,
           NULL);
    char next[CAT_CURSOR_MAX], next2[CAT_CURSOR_MAX];
    list_ids(c, NULL, 2, "B,a", "61", next);
    /* A product created between pages shows up where its id sorts. */
    upsert(c, "[{\"id\":\"ab\"},{\"id\":\"A\"}]", T1, NULL);
    list_ids(c, next, 2, "aa,ab", "6162", next2);
    list_ids(c, next2, 2, "b,c", "", next);
    list_ids(c, "", 100, "A,B,a,aa,ab,b,c", "", next);
    list_ids(c, "63", 10, "", "", next);
    list_ids(c, NULL, 0, "A,B,a,aa,ab,b,c", "", next); /* 0: the largest page */
    const cat_product *out[4];
    size_t n = 9;
    ev_error err;
    assert_int_equal(cat_list(c, "6", 2, out, &n, next, &err), -1);
    assert_int_equal(n, 0);
    assert_string_equal(err.field, "cursor");
    assert_int_equal(cat_list(c, "zz", 2, out, &n, next, &err), -1);
    assert_int_equal(cat_list(c, "6A", 2, out, &n, next, &err), -1);
    /* Ordinals: creation order, stable across replacement. */
    assert_int_equal(cat_ordinal(get(c, "b")), 0);
    assert_int_equal(cat_ordinal(get(c, "A")), 6);
    upsert(c, "[{\"id\":\"b\",\"price\":1}]", T2, NULL);
    assert_int_equal(cat_ordinal(get(c, "b")), 0);
    assert_ptr_equal(cat_at(c, 0), get(c, "b"));
    assert_null(cat_at(c, 7));
    cat_free(c);

    /* Thousands of products, most created one at a time by events (the sorted index merges its
     * tail every 1024): a full walk in pages of 1000 sees each once, in order. */
    c = cat_new(&OPT);
    buf b = BUF_INIT(0);
    buf_putc(&b, '[');
    for (int i = 0; i < 3000; i += 2)
        buf_printf(&b, "%s{\"id\":\"k%05d\"}", i ? "," : "", i);
    buf_putc(&b, ']');
    upsert(c, buf_str(&b), T0, NULL); /* 1500 even ids: merged into the index at once */
    buf_free(&b);
    /* 1100 odd ids interleaved with them, one at a time: the 1025th merges into a full index. */
    for (int i = 2999; i > 799; i -= 2) {
        char id[16];
        snprintf(id, sizeof id, "k%05d", i);
        cm_product p = {.product_id = id};
        assert_int_equal(cat_observe(c, &p, NULL, T1), 1);
    }
    cm_product again = {.product_id = "k00002"};
    assert_int_equal(cat_observe(c, &again, NULL, T1), 0);
    assert_int_equal(cat_count(c), 2600);
    static const cat_product *page[CAT_LIST_MAX];
    char cursor[CAT_CURSOR_MAX] = "";
    int pages = 0, total = 0;
    char prev[16] = "";
    do {
        assert_int_equal(cat_list(c, cursor, CAT_LIST_MAX, page, &n, next, &err), 0);
        for (size_t i = 0; i < n; i++) {
            cat_info info;
            cat_product_info(page[i], &info);
            assert_true(strcmp(prev, info.id) < 0);
            snprintf(prev, sizeof prev, "%s", info.id);
        }
        total += (int)n;
        pages++;
        memcpy(cursor, next, sizeof cursor);
    } while (cursor[0]);
    assert_int_equal(pages, 3);
    assert_int_equal(total, 2600);
    assert_string_equal(prev, "k02999");
    /* Pages of 7 from the middle, across the merged and unmerged parts. */
    list_ids(c, "6b3030383030", 7, "k00801,k00802,k00803,k00804,k00805,k00806,k00807",
             "6b3030383037", next);
    cat_free(c);
}

/* ---- replay determinism ---- */

/* One log: upserts, patches, events and archives, in order, with their times. */
typedef struct logrec {
    char op; /* u upsert, p patch, e event, a archive */
    const char *id;
    const char *json;
} logrec;

static const logrec LOG[] = {
    {'u', NULL,
     "[{\"id\":\"p1\",\"title\":\"Runner\",\"price\":50,\"currency\":\"EUR\",\"stock\":{\"b\":2},"
     "\"variants\":[{\"id\":\"v1\",\"stock\":1},{\"id\":\"v2\",\"price\":55}]},{\"id\":\"p2\","
     "\"category\":\"Shoes > Trail\",\"availability\":{\"markets\":[\"de\"],\"rule\":\"product."
     "price < 100\"},\"price\":80}]"},
    {'e', NULL, "{\"product_id\":\"p3\",\"name\":\"Cap\",\"price\":9,\"currency\":\"eur\"}"},
    {'e', NULL, "{\"product_id\":\"p1\",\"brand\":\"Acme\",\"price\":1}"},
    {'p', "p1", "{\"price\":45,\"stock\":{\"b\":0},\"variants\":{\"v1\":{\"stock\":0}}}"},
    {'u', NULL, "[{\"id\":\"p3\",\"sku\":\"C-1\"},{\"id\":\"p4\",\"stock\":5}]"},
    {'a', "p2", NULL},
    {'p', "p4", "{\"stock\":null,\"tags\":[\"x\"]}"},
    {'e', NULL, "{\"product_id\":\"p4\",\"brand\":\"Z\",\"category\":\"Misc\"}"},
};

/* Runs the log into c (validating first, as the server does); returns the changes as text. */
static char *replay(cat *c) {
    cat_changes ch = CAT_CHANGES_INIT;
    for (size_t i = 0; i < sizeof LOG / sizeof *LOG; i++) {
        int64_t now = T0 + (int64_t)i * 1000;
        json_t *in = LOG[i].json ? J(LOG[i].json) : NULL, *logged = NULL;
        ev_error err;
        switch (LOG[i].op) {
        case 'u':
            assert_int_equal(cat_upsert_prepare(&OPT, in, &logged, &err), 0);
            assert_int_equal(cat_upsert_apply(c, logged, now, &ch), CAT_OK);
            break;
        case 'p':
            assert_int_equal(cat_patch_prepare(c, LOG[i].id, in, &logged, &err), 0);
            assert_int_equal(cat_patch_apply(c, logged, now, &ch), CAT_OK);
            break;
        case 'e':
            assert_int_equal(cat_observe_json(c, in, now), 1);
            break;
        default:
            assert_int_equal(cat_archive_prepare(c, LOG[i].id, &logged, &err), 0);
            assert_int_equal(cat_archive_apply(c, logged, now), CAT_OK);
        }
        json_decref(in);
        json_decref(logged);
    }
    char *s = changes_text(&ch);
    cat_changes_free(&ch);
    return s;
}

static char *dump_all(const cat *c) {
    static const cat_product *page[CAT_LIST_MAX];
    size_t n;
    char next[CAT_CURSOR_MAX];
    ev_error err;
    assert_int_equal(cat_list(c, NULL, CAT_LIST_MAX, page, &n, next, &err), 0);
    assert_string_equal(next, "");
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, cat_product_json(page[i]));
    char *s = S(a);
    json_decref(a);
    return s;
}

/* What a recommendation shows of a product, kept ready: escaped once, rebuilt by every change
 * of a field it shows (upsert, patch, a field learned from events). */
static void card_is(const cat *c, const char *id, const char *fields, const char *title) {
    cat_card_text card;
    cat_card(get(c, id), &card);
    assert_int_equal(card.id_len, strlen(id));
    assert_memory_equal(card.id, id, card.id_len);
    assert_string_equal(card.fields, fields);
    assert_int_equal(card.fields_len, strlen(fields));
    if (!title) {
        assert_null(card.title);
        return;
    }
    assert_non_null(card.title);
    assert_int_equal(card.title_len, strlen(title));
    assert_memory_equal(card.title, title, card.title_len);
}

static void test_card(void **state) {
    (void)state;
    cat *c = cat_new(&OPT);
    upsert(c,
           "[{\"id\":\"p1\",\"title\":\"Blue \\\"Shoe\\\" \u00e9\\u0001\",\"url\":\"https://s/p1\","
           "\"image_url\":\"https://s/p1.jpg\",\"brand\":\"Acme\",\"currency\":\"eur\",\"price\":"
           "20,\"sale_price\":15.5},{\"id\":\"bare\"}]",
           T0, NULL);
    const char *title = "Blue \\\"Shoe\\\" \u00e9\\u0001";
    char want[512];
    snprintf(want, sizeof want,
             ",\"title\":\"%s\",\"url\":\"https://s/p1\",\"image_url\":\"https://s/p1.jpg\","
             "\"brand\":\"Acme\",\"currency\":\"EUR\",\"price\":20.0,\"sale_price\":15.5",
             title);
    card_is(c, "p1", want, title);
    card_is(c, "bare", "", NULL);
    /* The card is valid JSON members: wrapped in braces, it parses to the product's values. */
    char obj[600];
    snprintf(obj, sizeof obj, "{%s}", want + 1);
    json_t *o = J(obj);
    assert_string_equal(json_string_value(json_object_get(o, "title")), "Blue \"Shoe\" \u00e9\x01");
    assert_true(json_real_value(json_object_get(o, "sale_price")) == 15.5);
    json_decref(o);
    /* A patch: new title, no sale price. */
    patch(c, "p1", "{\"title\":\"Red\",\"sale_price\":null}", T1, NULL);
    card_is(c, "p1",
            ",\"title\":\"Red\",\"url\":\"https://s/p1\",\"image_url\":\"https://s/p1.jpg\","
            "\"brand\":\"Acme\",\"currency\":\"EUR\",\"price\":20.0",
            "Red");
    /* Fields learned from events: a new product, and what a catalogue product lacked. */
    json_t *ev = J("{\"product_id\":\"bare\",\"name\":\"Cap\",\"brand\":\"B\",\"price\":3}");
    assert_int_equal(cat_observe_json(c, ev, T1), 1);
    json_decref(ev);
    card_is(c, "bare", ",\"title\":\"Cap\",\"brand\":\"B\",\"price\":3.0", "Cap");
    ev = J("{\"product_id\":\"p2\",\"url\":\"u2\"}");
    assert_int_equal(cat_observe_json(c, ev, T1), 1);
    json_decref(ev);
    card_is(c, "p2", ",\"url\":\"u2\"", NULL);
    cat_free(c);
}

static void test_replay_determinism(void **state) {
    (void)state;
    cat *a = cat_new(&OPT), *b = cat_new(&OPT);
    char *ca = replay(a), *cb = replay(b);
    assert_string_equal(ca, cb);
    char *da = dump_all(a), *db = dump_all(b);
    assert_string_equal(da, db);
    assert_int_equal(cat_count(a), 4);
    /* And the end state, by hand. */
    assert_string_equal(
        da, "[{\"id\":\"p1\",\"title\":\"Runner\",\"brand\":\"Acme\",\"price\":45.0,\"currency\":"
            "\"EUR\",\"stock\":{\"b\":0},\"variants\":[{\"id\":\"v1\",\"stock\":{\"default\":0},"
            "\"in_stock\":false},{\"id\":\"v2\",\"price\":55.0,\"in_stock\":false}],\"status\":"
            "\"active\",\"in_stock\":false,\"source\":\"catalog\",\"from_events\":[\"brand\"],"
            "\"created_at\":\"2024-05-01T10:00:"
            "00.000Z\",\"updated_at\":\"2024-05-01T10:00:03.000Z\"},"
            "{\"id\":\"p2\",\"categories\":[\"Shoes\",\"Shoes > Trail\"],\"price\":80.0,\"status\":"
            "\"archived\",\"availability\":{\"markets\":[\"de\"],\"rule\":\"product.price < 100\"},"
            "\"in_stock\":true,\"source\":\"catalog\",\"created_at\":\"2024-05-01T10:00:00.000Z\","
            "\"updated_at\":\"2024-05-01T10:00:05.000Z\"},"
            "{\"id\":\"p3\",\"sku\":\"C-1\",\"title\":\"Cap\",\"price\":9.0,\"currency\":\"EUR\","
            "\"status\":\"active\",\"in_stock\":true,\"source\":\"catalog\",\"from_events\":["
            "\"title\",\"price\",\"currency\"],\"created_at\":\"2024-05-01T10:00:01.000Z\","
            "\"updated_at\":\"2024-05-01T10:00:04.000Z\"},"
            "{\"id\":\"p4\",\"brand\":\"Z\",\"categories\":[\"Misc\"],\"tags\":[\"x\"],\"status\":"
            "\"active\",\"in_stock\":true,\"source\":\"catalog\",\"from_events\":[\"brand\","
            "\"categories\"],\"created_at\":\"2024-05-01T10:00:04.000Z\",\"updated_at\":\"2024-05-"
            "01T10:00:07.000Z\"}]");
    /* Changes: the patch of p1 (price 50 -> 45 drop; stock 3 -> 0 sold out; v1 sold out; v2
     * keeps its own price; v2 followed the product's own stock 2 -> 0) and p4's stock going
     * (5 -> no information: in stock either way). */
    assert_string_equal(
        ca, "[{\"type\":\"price_changed\",\"product_id\":\"p1\",\"old_price\":50.0,"
            "\"new_price\":45.0,\"currency\":\"EUR\",\"price_drop\":true},{\"type\":"
            "\"stock_changed\",\"product_id\":\"p1\",\"old_stock\":3,\"new_stock\":0,"
            "\"in_stock\":false,\"back_in_stock\":false,\"sold_out\":true},{\"type\":"
            "\"price_changed\",\"product_id\":\"p1\",\"variant_id\":\"v1\",\"old_price\":50.0,"
            "\"new_price\":45.0,\"currency\":\"EUR\",\"price_drop\":true},{\"type\":"
            "\"stock_changed\",\"product_id\":\"p1\",\"variant_id\":\"v1\",\"old_stock\":1,"
            "\"new_stock\":0,\"in_stock\":false,\"back_in_stock\":false,\"sold_out\":true},{"
            "\"type\":\"stock_changed\",\"product_id\":\"p1\",\"variant_id\":\"v2\","
            "\"old_stock\":null,\"new_stock\":null,\"in_stock\":false,\"back_in_stock\":false,"
            "\"sold_out\":true},{\"type\":\"stock_changed\",\"product_id\":\"p4\",\"old_stock\":"
            "5,\"new_stock\":null,\"in_stock\":true,\"back_in_stock\":false,\"sold_out\":false}]");
    free(ca);
    free(cb);
    free(da);
    free(db);
    cat_free(a);
    cat_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefetch),
        cmocka_unit_test(test_upsert_normalises),
        cmocka_unit_test(test_upsert_replaces_whole),
        cmocka_unit_test(test_updated_at_tracks_content),
        cmocka_unit_test(test_upsert_all_or_nothing),
        cmocka_unit_test(test_upsert_field_errors),
        cmocka_unit_test(test_upsert_wrong_types_everywhere),
        cmocka_unit_test(test_upsert_limits),
        cmocka_unit_test(test_upsert_hostile),
        cmocka_unit_test(test_in_stock_rules),
        cmocka_unit_test(test_variants_inherit),
        cmocka_unit_test(test_observe_creates_and_fills),
        cmocka_unit_test(test_observe_hostile_and_capped),
        cmocka_unit_test(test_patch_merge_semantics),
        cmocka_unit_test(test_patch_errors),
        cmocka_unit_test(test_patch_variants_by_id),
        cmocka_unit_test(test_patch_events_product),
        cmocka_unit_test(test_change_events),
        cmocka_unit_test(test_availability),
        cmocka_unit_test(test_archive),
        cmocka_unit_test(test_list_and_ordinals),
        cmocka_unit_test(test_card),
        cmocka_unit_test(test_replay_determinism),
    };
    return cmocka_run_group_tests_name("catalog", tests, NULL, NULL);
}
