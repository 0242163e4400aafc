/* libFuzzer target for c360/catalog: the product validator, upsert, patch and observe.
 *
 * The input is parsed as JSON. As an upsert body: when it validates, the normalised form must
 * validate to itself (so the log replays as what was validated), apply to a fresh catalogue, read
 * back field for field, re-apply without a change event or a new updated_at, and give the same
 * catalogue in a second instance (replay determinism); every product's variants and availability
 * must answer, and the id-order listing must hold every product once, sorted. A refusal must carry
 * a code, a bounded field path and a message. As a patch (when an object) against a fixed product
 * with variants, stock and a rule: when it validates it must apply, and the result must validate
 * as an upsert. The same object is also observed as an event's product. Rules are "true" and
 * "false"; anything else is a syntax error. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c360/catalog.h"
#include "fuzz.h"

static void *rule_compile(const char *src, size_t len, ev_error *err, void *arg) {
    (void)arg;
    static int yes = 1, no = 0;
    if (len == 4 && memcmp(src, "true", 4) == 0) return &yes;
    if (len == 5 && memcmp(src, "false", 5) == 0) return &no;
    ev_error_set(err, "syntax_error", "", "not a rule");
    return NULL;
}

static int rule_eval(const void *compiled, const json_t *product, const void *ctx, void *arg) {
    (void)ctx, (void)arg;
    CHECK(json_is_object(product));
    return *(const int *)compiled;
}

static void rule_free(void *compiled, void *arg) {
    (void)compiled, (void)arg;
}

static const cat_options OPT = {rule_compile, rule_eval, rule_free, NULL, 0};

static const char *const readonly[] = {"in_stock", "source", "from_events", "created_at",
                                       "updated_at"};

/* cat_product_json() without its read-only members: the normalised product. */
static json_t *catalog_fields(const cat_product *p) {
    json_t *o = cat_product_json(p);
    CHECK(o);
    for (size_t i = 0; i < sizeof readonly / sizeof *readonly; i++)
        json_object_del(o, readonly[i]);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(o, "variants"), i, v) {
        json_object_del(v, "in_stock");
    }
    return o;
}

static void check_error(const ev_error *err) {
    CHECK(err->code && *err->code);
    CHECK(strlen(err->field) < sizeof err->field);
    CHECK(err->message[0]);
}

static char *dump(const cat *c, size_t expect) {
    static const cat_product *page[CAT_LIST_MAX];
    char cursor[CAT_CURSOR_MAX] = "", next[CAT_CURSOR_MAX];
    json_t *all = json_array();
    size_t total = 0, n;
    ev_error err;
    do {
        CHECK(cat_list(c, cursor, CAT_LIST_MAX, page, &n, next, &err) == 0);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(all, cat_product_json(page[i]));
        total += n;
        memcpy(cursor, next, sizeof cursor);
    } while (cursor[0]);
    CHECK(total == expect);
    for (size_t i = 1; i < total; i++) {
        const char *a = json_string_value(json_object_get(json_array_get(all, i - 1), "id"));
        const char *b = json_string_value(json_object_get(json_array_get(all, i), "id"));
        CHECK(strcmp(a, b) < 0);
    }
    char *s = json_dumps(all, JSON_COMPACT);
    json_decref(all);
    return s;
}

static void check_upsert(const json_t *body) {
    json_t *logged = NULL, *again = NULL;
    ev_error err = {0};
    if (cat_upsert_prepare(&OPT, body, &logged, &err)) {
        check_error(&err);
        CHECK(!logged);
        return;
    }
    CHECK(json_array_size(logged) == json_array_size(body));
    CHECK(cat_upsert_prepare(&OPT, logged, &again, &err) == 0);
    CHECK(json_equal(logged, again));
    json_decref(again);

    cat *a = cat_new(&OPT), *b = cat_new(&OPT);
    cat_changes ch = CAT_CHANGES_INIT;
    CHECK(cat_upsert_apply(a, logged, 1000, &ch) == CAT_OK);
    CHECK(ch.n == 0);
    CHECK(cat_count(a) == json_array_size(logged));
    size_t i;
    json_t *item;
    json_array_foreach(logged, i, item) {
        const char *id = json_string_value(json_object_get(item, "id"));
        const cat_product *p = cat_get(a, id, strlen(id));
        CHECK(p);
        json_t *back = catalog_fields(p);
        CHECK(json_equal(back, item));
        json_decref(back);
        cat_info info;
        cat_product_info(p, &info);
        for (size_t v = 0; v < info.nvariants; v++) {
            json_t *vj = cat_variant_json(p, v);
            CHECK(vj);
            json_decref(vj);
        }
        CHECK(!cat_variant_json(p, info.nvariants));
        const char *segs[] = {"vip"};
        cat_viewer viewer = {"de", "retail", segs, 1, NULL};
        cat_reason why;
        bool ok = cat_product_available(a, p, &viewer, &why);
        CHECK(ok == (why == CAT_AVAILABLE));
        CHECK(!ok || cat_product_sellable(p));
        CHECK(cat_product_sellable(p) == (info.status == CAT_ACTIVE && info.in_stock));
        CHECK(cat_reason_name(why));
    }
    char *d1 = dump(a, cat_count(a));
    /* The same again: nothing changes, not even updated_at. */
    CHECK(cat_upsert_apply(a, logged, 2000, &ch) == CAT_OK);
    CHECK(ch.n == 0);
    char *d2 = dump(a, cat_count(a));
    CHECK(strcmp(d1, d2) == 0);
    CHECK(cat_upsert_apply(b, logged, 1000, NULL) == CAT_OK);
    char *d3 = dump(b, cat_count(b));
    CHECK(strcmp(d1, d3) == 0);
    free(d1);
    free(d2);
    free(d3);
    cat_changes_free(&ch);
    cat_free(a);
    cat_free(b);
    json_decref(logged);
}

static const char *BASE =
    "[{\"id\":\"p\",\"title\":\"T\",\"price\":10,\"sale_price\":8,\"currency\":\"EUR\",\"stock\":"
    "{\"a\":1,\"b\":0},\"attributes\":{\"x\":{\"y\":1}},\"tags\":[\"t\"],\"variants\":[{\"id\":"
    "\"v1\",\"stock\":0},{\"id\":\"v2\",\"price\":12}],\"availability\":{\"markets\":[\"de\"],"
    "\"rule\":\"true\"}}]";

static void check_patch(const json_t *patch) {
    cat *c = cat_new(&OPT);
    json_t *base = json_loads(BASE, 0, NULL), *logged = NULL;
    CHECK(base && cat_upsert_apply(c, base, 1000, NULL) == CAT_OK);
    json_decref(base);
    ev_error err = {0};
    if (cat_patch_prepare(c, "p", patch, &logged, &err)) {
        check_error(&err);
        CHECK(!logged);
    } else {
        cat_changes ch = CAT_CHANGES_INIT;
        CHECK(cat_patch_apply(c, logged, 2000, &ch) == CAT_OK);
        for (size_t i = 0; i < ch.n; i++) {
            json_t *e = cat_change_json(&ch.v[i]);
            CHECK(e);
            json_decref(e);
        }
        cat_changes_free(&ch);
        json_t *now = catalog_fields(cat_get(c, "p", 1)), *arr = json_array();
        json_array_append_new(arr, now);
        CHECK(cat_upsert_prepare(&OPT, arr, NULL, &err) == 0);
        json_decref(arr);
        json_decref(logged);
    }
    int r = cat_observe_json(c, patch, 3000);
    CHECK(r == 0 || r == 1);
    CHECK(cat_count(c) == 1 || (r == 1 && cat_count(c) == 2)); /* at most one product made */
    cat_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!v) return 0;
    check_upsert(v);
    if (json_is_object(v)) check_patch(v);
    json_decref(v);
    return 0;
}
