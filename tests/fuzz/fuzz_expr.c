/* libFuzzer target for expr: the expression language.
 *
 * The input is compiled as an expression with the roots {profile, event}. A refusal must carry one
 * of the documented codes, a position within the input, and a message that ends with that
 * position's " at line:column". A program that compiles keeps its source byte for byte, and is
 * evaluated against a fixed world (nested objects, times as strings, a long list and a long string,
 * so the cost limit is reached) with the default limit and again with a small one. Invariants:
 *   - an evaluation either succeeds or fails with cost_exceeded (never anything else here);
 *   - it is deterministic: the same program over the same world gives the same value twice;
 *   - a lower cost limit either fails with cost_exceeded or gives exactly the same value;
 *   - expr_eval_bool() is true exactly when expr_eval() gives the bool true;
 *   - expr_compile_bool() accepts exactly the programs that compile and may give a bool;
 *   - strings in results are valid for their length (ASan checks the read), and free cleanly. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"
#include "fuzz.h"

static const char *const names[] = {"profile", "event"};
static const expr_roots roots = {names, 2};
static json_t *world[2];

static void build_world(void) {
    json_error_t e;
    world[0] = json_loads(
        "{\"orders_count\": 3, \"markets\": [\"de\", \"at\"], \"vip\": true, \"age\": 36.5,"
        " \"last_order_at\": \"2024-03-02T12:00:00Z\", \"signup\": \"2023-12-31\","
        " \"name\": \"  Ada Lovelace \", \"city\": \"Berlin\", \"nothing\": null,"
        " \"traits\": {\"first name\": \"Ada\", \"utf\": \"Stra\\u00dfe \\ud83d\\ude00\"},"
        " \"mixed\": [1, \"1\", null, true, [2], {\"k\": 3}, \"2024-01-01\"]}",
        0, &e);
    world[1] = json_loads("{\"type\": \"track\", \"timestamp\": \"2024-05-01T11:30:00Z\","
                          " \"properties\": {\"value\": 60, \"products\": [{\"price\": 19.99,"
                          " \"sku\": \"A-1\"}, {\"price\": -5, \"sku\": \"B-2\"}]}}",
                          0, &e);
    CHECK(world[0] && world[1]);
    json_t *big = json_array();
    for (int i = 0; i < 3000; i++)
        json_array_append_new(big, json_integer(i));
    json_object_set_new(world[0], "big", big);
    char s[3001];
    memset(s, 'a', 3000);
    s[3000] = '\0';
    json_object_set_new(world[0], "long", json_string(s));
}

static bool same(const expr_value *a, const expr_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case EXPR_NULL:
        return true;
    case EXPR_BOOL:
        return a->b == b->b;
    case EXPR_NUMBER:
        return a->num == b->num;
    case EXPR_TIME:
        return a->time_ms == b->time_ms;
    case EXPR_STRING:
        return a->len == b->len && (a->len == 0 || memcmp(a->str, b->str, a->len) == 0);
    case EXPR_LIST:
        return a->len == b->len && a->json == b->json;
    case EXPR_OBJECT:
        return a->json == b->json;
    }
    return false;
}

static void check_error(const expr_error *err, size_t size) {
    static const char *const codes[] = {"syntax_error",     "type_error",  "unknown_field_root",
                                        "unknown_function", "too_complex", "out_of_memory"};
    bool known = false;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        known = known || strcmp(err->ev.code, codes[i]) == 0;
    CHECK(known);
    CHECK(err->pos <= size);
    CHECK(err->line >= 1 && err->column >= 1 && err->column <= err->pos + 1);
    CHECK(err->ev.field[0] == '\0');
    char at[40];
    snprintf(at, sizeof at, " at %u:%u", err->line, err->column);
    size_t n = strlen(err->ev.message), k = strlen(at);
    CHECK(n > k && strcmp(err->ev.message + n - k, at) == 0);
}

static void check_value(const expr_value *v) {
    if (v->type == EXPR_STRING && v->len) {
        volatile char sink = v->str[0];
        sink = v->str[v->len - 1];
        (void)sink;
    }
    if (v->type == EXPR_NUMBER) CHECK(v->num == v->num && v->num - v->num == 0); /* finite */
    if (v->type == EXPR_LIST) {
        for (size_t i = 0; i < v->len; i++) {
            expr_value item;
            CHECK(expr_value_list_get(v, i, &item) == 0);
        }
        expr_value item;
        CHECK(expr_value_list_get(v, v->len, &item) == -1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!world[0]) build_world();
    const char *src = (const char *)data;
    expr_error err;
    expr *e = expr_compile(src, size, &roots, &err);
    expr *eb = expr_compile_bool(src, size, &roots, &err);
    if (!e) {
        CHECK(!eb);
        check_error(&err, size);
        return 0;
    }
    CHECK(!eb == !expr_may_give(e, EXPR_BOOL));
    if (!eb) check_error(&err, size);
    expr_free(eb);
    CHECK(size <= EXPR_MAX_SOURCE);
    CHECK(memcmp(expr_source(e), src, size) == 0 && expr_source(e)[size] == '\0');

    expr_env env = {(const json_t *const *)world, 2, 1714564800000LL, 0};
    expr_value v1, v2, v3;
    int r1 = expr_eval(e, &env, &v1, &err);
    if (r1) {
        CHECK(strcmp(err.ev.code, "cost_exceeded") == 0);
        CHECK(err.pos <= size);
        CHECK(v1.type == EXPR_NULL);
    } else {
        CHECK(expr_may_give(e, v1.type));
        check_value(&v1);
    }
    int r2 = expr_eval(e, &env, &v2, &err);
    CHECK(r1 == r2 && same(&v1, &v2));
    bool b;
    CHECK(expr_eval_bool(e, &env, &b, &err) == r1);
    CHECK(b == (r1 == 0 && v1.type == EXPR_BOOL && v1.b));
    env.cost_limit = 40;
    int r3 = expr_eval(e, &env, &v3, &err);
    if (r3)
        CHECK(strcmp(err.ev.code, "cost_exceeded") == 0);
    else
        CHECK(r1 == 0 && same(&v1, &v3));
    /* No world at all: every field is null, and nothing may crash. */
    expr_value v4;
    if (expr_eval(e, NULL, &v4, &err) == 0) check_value(&v4);
    expr_value_free(&v1);
    expr_value_free(&v2);
    expr_value_free(&v3);
    expr_value_free(&v4);
    expr_free(e);
    return 0;
}
