/* Unit tests for expr: the expression language. Every operator and function is checked against a
 * hand-computed result over one fixed world (a profile, an event and a cart as jansson values, and
 * the engine clock at 2024-05-01T12:00:00Z); then null and run-time mismatch semantics, static
 * type errors and syntax errors with their exact codes, positions and messages, every limit with
 * hostile input, and the ownership of returned values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "expr/expr.h"

/* 2024-05-01T12:00:00Z, a Wednesday: the engine clock in every test. */
#define NOW 1714564800000LL
#define DAY 86400000LL

static const char *const root_names[] = {"profile", "event", "cart", "a"};
static const expr_roots ROOTS = {root_names, 4};

/* The world every test reads: profile, event, cart (root "a" is left null). */
static json_t *world[3];

static json_t *parse(const char *text) {
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v) fail_msg("test JSON does not parse: %s: %s", e.text, text);
    return v;
}

#define BIG_N 20000

static int setup(void **state) {
    (void)state;
    world[0] =
        parse("{\"orders_count\": 0, \"markets\": [\"de\", \"at\"],"
              " \"last_order_at\": \"2024-03-02T12:00:00Z\", \"signup\": \"2023-12-31\","
              " \"name\": \"  Ada Lovelace \", \"city\": \"Berlin\", \"age\": 36,"
              " \"ratio\": 0.25, \"vip\": true, \"flag_str\": \"yes\", \"nothing\": null,"
              " \"tags\": [], \"scores\": [3, 1.5, \"x\", null, true],"
              " \"traits\": {\"first name\": \"Ada\", \"in\": \"kw\", \"utf\": \"Stra\\u00dfe\"}}");
    world[1] = parse("{\"type\": \"track\", \"timestamp\": \"2024-05-01T11:30:00.000Z\","
                     " \"properties\": {\"revenue\": 24.99, \"products\":"
                     " [{\"price\": 19.99, \"sku\": \"A-1\"}, {\"price\": 5, \"sku\": \"B-2\"}]}}");
    world[2] = parse("{\"value\": 60, \"items\": 2}");
    /* profile.big: the numbers 0 .. BIG_N-1; profile.long: BIG_N times 'a'. */
    json_t *big = json_array();
    for (int i = 0; i < BIG_N; i++)
        json_array_append_new(big, json_integer(i));
    json_object_set_new(world[0], "big", big);
    char *s = malloc(BIG_N + 1);
    memset(s, 'a', BIG_N);
    s[BIG_N] = '\0';
    json_object_set_new(world[0], "long", json_string(s));
    free(s);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < 3; i++)
        json_decref(world[i]);
    return 0;
}

static expr_env env_now(void) {
    expr_env env = {(const json_t *const *)world, 3, NOW, 0};
    return env;
}

/* ---- helpers: compile and evaluate one source, check the result, free everything ---- */

static expr *compile_ok(const char *src) {
    expr_error err;
    expr *e = expr_compile(src, strlen(src), &ROOTS, &err);
    if (!e) fail_msg("'%s' does not compile: %s: %s", src, err.ev.code, err.ev.message);
    return e;
}

/* Evaluates src in env, checks the type, and hands the value to check() before freeing it. */
static void eval_in(const char *src, const expr_env *env, expr_type want, expr_value *copy) {
    expr *e = compile_ok(src);
    expr_value v;
    expr_error err;
    if (expr_eval(e, env, &v, &err))
        fail_msg("'%s' fails: %s: %s", src, err.ev.code, err.ev.message);
    if (v.type != want) fail_msg("'%s' gives type %d, want %d", src, v.type, want);
    *copy = v;
    copy->owned_ = NULL;
    copy->str = NULL; /* strings are checked by str_is(), before the free */
    expr_value_free(&v);
    expr_free(e);
}

static double num(const char *src) {
    expr_env env = env_now();
    expr_value v;
    eval_in(src, &env, EXPR_NUMBER, &v);
    return v.num;
}

static bool truth(const char *src) {
    expr_env env = env_now();
    expr_value v;
    eval_in(src, &env, EXPR_BOOL, &v);
    return v.b;
}

static int64_t tm(const char *src) {
    expr_env env = env_now();
    expr_value v;
    eval_in(src, &env, EXPR_TIME, &v);
    return v.time_ms;
}

static void null_is(const char *src) {
    expr_env env = env_now();
    expr_value v;
    eval_in(src, &env, EXPR_NULL, &v);
}

static void str_is(const char *src, const char *want) {
    expr *e = compile_ok(src);
    expr_env env = env_now();
    expr_value v;
    expr_error err;
    if (expr_eval(e, &env, &v, &err)) fail_msg("'%s' fails: %s", src, err.ev.message);
    if (v.type != EXPR_STRING) fail_msg("'%s' gives type %d, not a string", src, v.type);
    if (v.len != strlen(want) || memcmp(v.str, want, v.len))
        fail_msg("'%s' gives '%.*s', want '%s'", src, (int)v.len, v.str, want);
    expr_value_free(&v);
    expr_free(e);
}

#define NUM_IS(src, want)                                                                          \
    do {                                                                                           \
        double got_ = num(src);                                                                    \
        if (got_ != (double)(want))                                                                \
            fail_msg("'%s' = %.17g, want %.17g", src, got_, (double)(want));                       \
    } while (0)
#define TRUE_IS(src)                                                                               \
    do {                                                                                           \
        if (!truth(src)) fail_msg("'%s' is false, want true", src);                                \
    } while (0)
#define FALSE_IS(src)                                                                              \
    do {                                                                                           \
        if (truth(src)) fail_msg("'%s' is true, want false", src);                                 \
    } while (0)

/* Compiling src (with the bool check when cond) fails with exactly this code, position and
 * message; line and column are checked against the message's own "at L:C". */
static void err_as(const char *src, size_t len, bool cond, const char *code, size_t pos,
                   const char *message) {
    expr_error err;
    memset(&err, 0x5a, sizeof err);
    expr *e =
        cond ? expr_compile_bool(src, len, &ROOTS, &err) : expr_compile(src, len, &ROOTS, &err);
    if (e) fail_msg("'%.60s' compiles, want %s", src, code);
    if (strcmp(err.ev.code, code))
        fail_msg("'%.60s': code %s (%s), want %s", src, err.ev.code, err.ev.message, code);
    if (err.pos != pos)
        fail_msg("'%.60s': pos %zu (%s), want %zu", src, err.pos, err.ev.message, pos);
    if (strcmp(err.ev.message, message))
        fail_msg("'%.60s': message\n  '%s', want\n  '%s'", src, err.ev.message, message);
    assert_string_equal(err.ev.field, "");
    assert_true(err.pos <= len);
    char at[32];
    snprintf(at, sizeof at, " at %u:%u", err.line, err.column);
    const char *tail = err.ev.message + strlen(err.ev.message) - strlen(at);
    assert_string_equal(tail, at);
}

static void err_is(const char *src, const char *code, size_t pos, const char *message) {
    err_as(src, strlen(src), false, code, pos, message);
}

/* ---- the example ---- */

static void test_example(void **state) {
    (void)state;
    static const char src[] =
        "profile.orders_count == 0 and cart.value > 50 and \"de\" in profile.markets";
    expr *e = compile_ok(src);
    assert_string_equal(expr_source(e), src);
    static const struct {
        const char *profile, *cart;
        bool want;
    } cases[] = {
        {"{\"orders_count\": 0, \"markets\": [\"de\", \"at\"]}", "{\"value\": 60}", true},
        {"{\"orders_count\": 0, \"markets\": [\"at\", \"de\"]}", "{\"value\": 50.01}", true},
        {"{\"orders_count\": 1, \"markets\": [\"de\"]}", "{\"value\": 60}", false},
        {"{\"orders_count\": 0, \"markets\": [\"de\"]}", "{\"value\": 50}", false},
        {"{\"orders_count\": 0, \"markets\": [\"fr\"]}", "{\"value\": 60}", false},
        {"{\"orders_count\": 0}", "{\"value\": 60}", false},   /* no markets */
        {"{\"markets\": [\"de\"]}", "{\"value\": 60}", false}, /* no orders_count */
        {"{\"orders_count\": \"0\", \"markets\": [\"de\"]}", "{\"value\": 60}",
         false},                                                                     /* a string */
        {"{\"orders_count\": 0.0, \"markets\": [\"de\"]}", "{\"value\": 60}", true}, /* a real */
        {"{\"orders_count\": 0, \"markets\": \"de,at\"}", "{\"value\": 60}", true},  /* substring */
        {"{\"orders_count\": 0, \"markets\": [\"de\"]}", "{\"value\": \"60\"}", false},
        {"{\"orders_count\": 0, \"markets\": [\"de\"]}", "[]", false}, /* cart not an object */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v[3] = {parse(cases[i].profile), NULL, parse(cases[i].cart)};
        expr_env env = {(const json_t *const *)v, 3, NOW, 0};
        bool got;
        expr_error err;
        assert_int_equal(expr_eval_bool(e, &env, &got, &err), 0);
        if (got != cases[i].want) fail_msg("case %zu: got %d", i, got);
        json_decref(v[0]);
        json_decref(v[2]);
    }
    expr_free(e);
}

/* ---- literals ---- */

static void test_literals(void **state) {
    (void)state;
    NUM_IS("1", 1);
    NUM_IS("1e3", 1000);
    NUM_IS("1E+2", 100);
    NUM_IS("25e-1", 2.5);
    NUM_IS("-2.5", -2.5);
    NUM_IS("0.125", 0.125);
    NUM_IS("007", 7);
    NUM_IS("1e-400", 0); /* underflow reads as 0; only overflow is refused */
    TRUE_IS("true");
    FALSE_IS("false");
    null_is("null");
    str_is("\"double\"", "double");
    str_is("'single'", "single");
    str_is("'it\\'s'", "it's");
    str_is("\"say \\\"hi\\\"\"", "say \"hi\"");
    str_is("'a\"b'", "a\"b");
    str_is("\"\\\\ \\/ \\n\\t\\r\\b\\f\"", "\\ / \n\t\r\b\f");
    str_is("\"\\u00e9\"", "\xc3\xa9");
    str_is("\"\\u20AC\"", "\xe2\x82\xac");
    str_is("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80");
    str_is("\"Stra\xc3\x9f"
           "e\"",
           "Stra\xc3\x9f"
           "e"); /* raw UTF-8 passes through */
    str_is("\"\"", "");
    NUM_IS("len(\"\\ud83d\\ude00\")", 1);
    NUM_IS("len([\"a\", \"b\", 3])", 3);
    NUM_IS("len([])", 0);
    NUM_IS("len([-1, -2.5, null, true, false, 'x'])", 6);
}

/* ---- arithmetic and precedence ---- */

static void test_arithmetic(void **state) {
    (void)state;
    NUM_IS("1 + 2 * 3", 7);
    NUM_IS("(1 + 2) * 3", 9);
    NUM_IS("10 - 2 - 3", 5);
    NUM_IS("100 / 10 / 5", 2);
    NUM_IS("7 % 3", 1);
    NUM_IS("-7 % 3", -1); /* the sign of the dividend, as C's fmod */
    NUM_IS("7.5 % 2", 1.5);
    NUM_IS("2 * -3", -6);
    NUM_IS("-(2 + 3)", -5);
    NUM_IS("- -3", 3);
    NUM_IS("-profile.age", -36);
    NUM_IS("1e3 + 0.5", 1000.5);
    NUM_IS("1 + 2 * 3 - 4 / 2 % 3", 5); /* 1 + 6 - ((4 / 2) % 3) */
    NUM_IS("profile.age + 1", 37);
    NUM_IS("profile.ratio * 4", 1);
    NUM_IS("cart.value / cart.items", 30);
    NUM_IS("event.properties.revenue - event.properties.products[0].price", 24.99 - 19.99);
    null_is("1 / 0");
    null_is("5 % 0");
    null_is("1e308 * 10"); /* overflow */
    null_is("-1e308 - 1e308");
    null_is("profile.city + 1"); /* run-time mismatch */
    null_is("profile.age * profile.city");
    null_is("-profile.city");
    null_is("profile.missing + 1");
    null_is("profile.markets + 1");
    str_is("\"ab\" + \"cd\"", "abcd");
    str_is("profile.city + \"!\"", "Berlin!");
    str_is("\"\" + \"\"", "");
    str_is("'a' + 'b' + 'c'", "abc");
}

/* ---- comparisons ---- */

static void test_comparisons(void **state) {
    (void)state;
    TRUE_IS("1 < 2");
    FALSE_IS("2 < 2");
    TRUE_IS("2 <= 2");
    TRUE_IS("3 > 2");
    FALSE_IS("2 >= 3");
    TRUE_IS("3 >= 3");
    TRUE_IS("1 == 1.0");
    TRUE_IS("1 != 2");
    FALSE_IS("1 != 1");
    TRUE_IS("\"abc\" < \"abd\"");
    TRUE_IS("\"ab\" < \"abc\"");
    TRUE_IS("\"b\" > \"abc\"");
    TRUE_IS("\"Z\" < \"a\""); /* bytes, not locale */
    TRUE_IS("\"abc\" == 'abc'");
    FALSE_IS("\"abc\" == \"abcd\"");
    TRUE_IS("true == true");
    TRUE_IS("false != true");
    TRUE_IS("null == null");
    FALSE_IS("null != null");
    TRUE_IS("profile.age == 36");
    TRUE_IS("profile.age >= 36 and profile.age < 37");
    TRUE_IS("profile.city == \"Berlin\"");
    TRUE_IS("profile.vip == true");
    TRUE_IS("profile.traits[\"first name\"] == \"Ada\"");
    TRUE_IS("event.properties.products[0].price == 19.99");
    TRUE_IS("event.properties.products[1].price < event.properties.products[0].price");
    TRUE_IS("cart.value > 50");
    TRUE_IS("cart.value == 60.0");
    TRUE_IS("profile.traits.utf == \"Stra\\u00dfe\"");
}

/* ---- and / or / not ---- */

static void test_logic(void **state) {
    (void)state;
    FALSE_IS("true and false");
    TRUE_IS("true and true");
    TRUE_IS("false or true");
    FALSE_IS("false or false");
    TRUE_IS("true && true");
    TRUE_IS("false || true");
    TRUE_IS("!false");
    FALSE_IS("not true");
    TRUE_IS("not not true");
    TRUE_IS("true or false and false"); /* and binds tighter: true or (false and false) */
    FALSE_IS("(true or false) and false");
    TRUE_IS("not true or true"); /* (not true) or true */
    TRUE_IS("not (true and false)");
    TRUE_IS("not 1 == 2"); /* not (1 == 2) */
    TRUE_IS("! 1 == 2");   /* '!' is exactly 'not' */
    TRUE_IS("1 < 2 and 2 < 3 or false");
    TRUE_IS("false and true or true");
    /* Only the bool true is true: null, strings, numbers and lists are false. */
    FALSE_IS("profile.flag_str and true");
    TRUE_IS("not profile.flag_str");
    TRUE_IS("not profile.missing");
    TRUE_IS("not profile.nothing");
    TRUE_IS("not profile.age");
    TRUE_IS("not profile.markets");
    TRUE_IS("profile.missing or true");
    FALSE_IS("profile.missing and true");
    TRUE_IS("profile.vip and true");
    TRUE_IS("profile.vip or false");
    TRUE_IS("profile.vip");
    TRUE_IS("true and profile.vip"); /* the right operand is made a bool */
    FALSE_IS("true and profile.age");
    TRUE_IS("true or false and profile.missing == 1 and false");
    FALSE_IS("false or true and profile.missing == 1 and true");

    /* Short-circuit: the right operand is never evaluated, so its cost is never paid. */
    expr_env env = env_now();
    env.cost_limit = 100;
    static const struct {
        const char *src;
        bool want;
    } sc[] = {
        {"false and -1 in profile.big", false},
        {"true or -1 in profile.big", true},
        {"profile.missing == 1 and -1 in profile.big", false},
        {"profile.vip or -1 in profile.big or -1 in profile.big", true},
    };
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) {
        expr *e = compile_ok(sc[i].src);
        bool got;
        expr_error err;
        assert_int_equal(expr_eval_bool(e, &env, &got, &err), 0);
        assert_int_equal(got, sc[i].want);
        expr_free(e);
    }
    expr *e = compile_ok("true and -1 in profile.big");
    bool got = true;
    expr_error err;
    assert_int_equal(expr_eval_bool(e, &env, &got, &err), -1);
    assert_false(got);
    assert_string_equal(err.ev.code, "cost_exceeded");
    expr_free(e);
}

/* ---- in / not in / contains ---- */

static void test_membership(void **state) {
    (void)state;
    TRUE_IS("\"de\" in profile.markets");
    FALSE_IS("\"fr\" in profile.markets");
    TRUE_IS("\"fr\" not in profile.markets");
    FALSE_IS("\"de\" not in profile.markets");
    TRUE_IS("profile.markets contains \"at\"");
    FALSE_IS("profile.markets contains \"a\""); /* elements, not substrings */
    TRUE_IS("\"ell\" in \"hello\"");
    TRUE_IS("\"hello\" contains \"ell\"");
    FALSE_IS("\"hello\" contains \"Ell\"");
    TRUE_IS("\"\" in \"abc\"");
    TRUE_IS("\"\" in \"\"");
    FALSE_IS("\"abcd\" in \"abc\"");
    TRUE_IS("3 in [1, 2, 3]");
    TRUE_IS("-2 in [1, -2]");
    FALSE_IS("4 in [1, 2, 3]");
    TRUE_IS("4 not in [1, 2, 3]");
    FALSE_IS("1 in []");
    TRUE_IS("1.5 in profile.scores");
    TRUE_IS("null in profile.scores");
    TRUE_IS("\"x\" in profile.scores");
    TRUE_IS("true in profile.scores");
    FALSE_IS("2 in profile.scores");
    FALSE_IS("false in profile.scores");
    FALSE_IS("\"de\" in profile.missing");
    TRUE_IS("\"de\" not in profile.missing");
    FALSE_IS("\"x\" in profile.tags");
    TRUE_IS("profile.age in [35, 36]");
    TRUE_IS("profile.city in \"Berlin Mitte\"");
    TRUE_IS("\"erl\" in profile.city");
    TRUE_IS("profile.city in [\"Paris\", \"Berlin\"]");
    FALSE_IS("profile.age in \"36\"");              /* a number is never in a string */
    FALSE_IS("profile.markets in profile.markets"); /* a list is never an element */
    FALSE_IS("\"de\" in profile.traits");           /* an object is neither a list nor a string */
    TRUE_IS("9000 in profile.big"); /* 9001 elements looked at: within the default cost */
    TRUE_IS("date(\"2024-05-01\") in [\"2024-05-01T00:00:00Z\", 1]"); /* time = its text */
    TRUE_IS("profile.traits.utf in [\"Strasse\", \"Stra\\u00dfe\"]");
}

/* ---- field paths ---- */

static void test_paths(void **state) {
    (void)state;
    TRUE_IS("profile.traits.in == \"kw\""); /* keywords are names after a '.' */
    TRUE_IS("profile[\"city\"] == \"Berlin\"");
    TRUE_IS("profile.traits['first name'] == 'Ada'");
    TRUE_IS("event.properties.products[1][\"sku\"] == \"B-2\"");
    TRUE_IS("event . properties . products [ 1 ] . sku == \"B-2\""); /* spaces between steps */
    TRUE_IS("event.properties.products[2].price == null");           /* past the end */
    TRUE_IS("event.properties.products[4294967295] == null");
    TRUE_IS("profile.city.x == null");    /* a step into a string */
    TRUE_IS("profile.markets.x == null"); /* a name on a list */
    TRUE_IS("profile.traits[0] == null"); /* an index on an object */
    TRUE_IS("profile.markets[1] == \"at\"");
    TRUE_IS("profile.markets[1e0] == \"at\"");
    TRUE_IS("a == null");
    TRUE_IS("a.b.c == null");
    TRUE_IS("profile != null");
    TRUE_IS("exists(profile.traits)");
    TRUE_IS("profile.nothing == null");
    FALSE_IS("profile.nothing != null");
    NUM_IS("len(profile.markets)", 2);
    NUM_IS("len(event.properties.products)", 2);
}

/* ---- time ---- */

static void test_time(void **state) {
    (void)state;
    assert_int_equal(tm("now()"), NOW);
    assert_int_equal(tm("now() - days(30)"), NOW - 30 * DAY);
    assert_int_equal(tm("now() + hours(1.5)"), NOW + 5400000);
    assert_int_equal(tm("minutes(10) + now()"), NOW + 600000);
    assert_int_equal(tm("now() + 0.4"), NOW); /* whole milliseconds, rounded */
    assert_int_equal(tm("now() + 0.5"), NOW + 1);
    assert_int_equal(tm("date(\"2024-05-01\")"), NOW - 12 * 3600000);
    assert_int_equal(tm("date(\"2024-05-01T14:00:00+02:00\")"), NOW);
    assert_int_equal(tm("date(now())"), NOW);
    assert_int_equal(tm("profile.last_order_at + days(60)"), NOW); /* a time string + number */
    assert_int_equal(tm("\"2024-05-01T12:00:00Z\" - 1000"), NOW - 1000);
    assert_int_equal(tm("coalesce(date(profile.missing), now())"), NOW);
    NUM_IS("now() - date(\"2024-04-30\")", 1.5 * DAY);
    NUM_IS("now() - profile.last_order_at", 60 * DAY);
    NUM_IS("\"2024-01-02\" - \"2024-01-01\"", DAY);
    NUM_IS("date(\"2024-01-02\") - date(\"2024-01-01\")", DAY);
    NUM_IS("days_since(profile.last_order_at)", 60);
    NUM_IS("days_since(\"2024-04-30T12:00:00.001Z\")", 0); /* truncated, not rounded */
    NUM_IS("days_since(now() + hours(23))", 0);
    NUM_IS("days_since(now() + hours(25))", -1);
    NUM_IS("days_until(\"2024-05-03T00:00:00Z\")", 1);
    NUM_IS("days_until(now() - hours(23))", 0);
    NUM_IS("days_until(profile.signup)", -122);
    TRUE_IS("profile.last_order_at > now() - days(90)");
    FALSE_IS("profile.last_order_at > now() - days(30)");
    TRUE_IS("profile.last_order_at < now()");
    TRUE_IS("now() > profile.last_order_at");
    TRUE_IS("event.timestamp > now() - hours(1)");
    TRUE_IS("\"2024-05-01\" < now()");
    TRUE_IS("date(\"2024-05-01T12:00:00Z\") == now()");
    TRUE_IS("now() == \"2024-05-01T14:00:00+02:00\""); /* the same instant, another zone */
    TRUE_IS("now() - days(60) == profile.last_order_at");
    FALSE_IS("profile.city < now()"); /* a string that is not a time: false */
    FALSE_IS("profile.age < now()");  /* numbers are not times */
    TRUE_IS("profile.city != now()");
    TRUE_IS("profile.last_order_at > \"2024\""); /* two strings compare as strings */
    null_is("date(\"garbage\")");
    null_is("date(\"2024-02-30\")");
    null_is("date(profile.age)");
    null_is("now() + 1e300"); /* past year 9999 */
    null_is("now() - 1e20");
    null_is("profile.city + days(1)"); /* not a time */
    null_is("days_since(profile.city)");
    null_is("year(profile.missing)");
    /* The calendar, in UTC. */
    NUM_IS("year(now())", 2024);
    NUM_IS("month(now())", 5);
    NUM_IS("day(now())", 1);
    NUM_IS("day_of_week(now())", 3); /* Wednesday; Monday is 1 */
    NUM_IS("hour(now())", 12);
    NUM_IS("hour(\"2024-05-01T23:59:59.999+00:00\")", 23);
    NUM_IS("day_of_week(\"2024-05-05\")", 7);
    NUM_IS("day_of_week(\"2024-05-06\")", 1);
    NUM_IS("day_of_week(date(\"1970-01-01\"))", 4);
    NUM_IS("day_of_week(\"1969-12-31\")", 3);
    NUM_IS("hour(\"1969-12-31T23:30:00Z\")", 23);
    NUM_IS("year(\"0001-01-01\")", 1);
    NUM_IS("year(\"9999-12-31T23:59:59Z\")", 9999);
    NUM_IS("month(\"2024-02-29\")", 2);
    NUM_IS("day(\"2024-02-29\")", 29);
    NUM_IS("month(profile.signup)", 12);
    NUM_IS("year(profile.last_order_at)", 2024);
    /* The clock comes only from the env. */
    expr *e = compile_ok("year(now())");
    expr_env env = {NULL, 0, 0, 0};
    expr_value v;
    assert_int_equal(expr_eval(e, &env, &v, NULL), 0);
    assert_int_equal(v.type, EXPR_NUMBER);
    assert_true(v.num == 1970);
    expr_value_free(&v);
    env.now_ms = INT64_MAX; /* a clock past 9999 makes now() null, never a wrong year */
    assert_int_equal(expr_eval(e, &env, &v, NULL), 0);
    assert_int_equal(v.type, EXPR_NULL);
    expr_value_free(&v);
    expr_free(e);
}

/* ---- the other functions ---- */

static void test_functions(void **state) {
    (void)state;
    NUM_IS("days(2)", 2 * DAY);
    NUM_IS("hours(1.5)", 5400000);
    NUM_IS("minutes(-1)", -60000);
    NUM_IS("days(1e300)", 1e300 * 86400000.0);
    null_is("days(1e304)"); /* overflow */
    null_is("days(profile.city)");
    str_is("lower(\"\xc3\x84"
           "BC dEf\")",
           "\xc3\x84"
           "bc def"); /* ASCII letters only */
    str_is("upper(\"stra\xc3\x9f"
           "e\")",
           "STRA\xc3\x9f"
           "E");
    str_is("lower(profile.city)", "berlin");
    str_is("upper(\"\")", "");
    str_is("trim(profile.name)", "Ada Lovelace");
    str_is("trim(\" \\t\\n x y \\r\\n\")", "x y");
    str_is("trim(\"   \")", "");
    str_is("trim(lower(\"  AB  \"))", "ab");
    null_is("lower(profile.age)");
    null_is("trim(profile.missing)");
    NUM_IS("len(\"Stra\xc3\x9f"
           "e\")",
           6); /* characters, not bytes */
    NUM_IS("len(\"\")", 0);
    NUM_IS("len(profile.markets)", 2);
    NUM_IS("len(profile.tags)", 0);
    NUM_IS("len(profile.name)", 15);
    null_is("len(profile.nothing)");
    null_is("len(profile.traits)");
    null_is("len(profile.age)");
    TRUE_IS("starts_with(\"hello\", \"he\")");
    TRUE_IS("starts_with(\"hello\", \"\")");
    FALSE_IS("starts_with(\"he\", \"hello\")");
    TRUE_IS("ends_with(\"hello\", \"lo\")");
    FALSE_IS("ends_with(\"hello\", \"he\")");
    FALSE_IS("ends_with(\"lo\", \"hello\")");
    TRUE_IS("starts_with(profile.city, \"Ber\")");
    null_is("starts_with(profile.age, \"3\")");
    null_is("ends_with(\"x\", profile.missing)");
    NUM_IS("abs(-2.5)", 2.5);
    NUM_IS("abs(3)", 3);
    NUM_IS("round(2.5)", 3);
    NUM_IS("round(-2.5)", -3);
    NUM_IS("round(2.49)", 2);
    NUM_IS("floor(-1.5)", -2);
    NUM_IS("floor(1.5)", 1);
    NUM_IS("ceil(1.2)", 2);
    NUM_IS("ceil(-1.2)", -1);
    NUM_IS("min(3, -1)", -1);
    NUM_IS("max(3, -1)", 3);
    NUM_IS("max(profile.age, cart.value)", 60);
    null_is("min(1, profile.city)");
    null_is("round(profile.missing)");
    TRUE_IS("exists(profile.city)");
    TRUE_IS("exists(profile.tags)"); /* present, though empty */
    TRUE_IS("exists(profile.vip)");
    FALSE_IS("exists(profile.nothing)");
    FALSE_IS("exists(profile.missing)");
    FALSE_IS("exists(a.b)");
    TRUE_IS("exists(1)");
    str_is("coalesce(profile.missing, profile.nothing, \"x\")", "x");
    str_is("coalesce(profile.city, \"x\")", "Berlin");
    NUM_IS("coalesce(profile.age, 1)", 36);
    NUM_IS("coalesce(null, null, null, null, null, null, null, 8)", 8);
    null_is("coalesce(profile.missing, null)");
    TRUE_IS("coalesce(profile.missing, 0) == 0");
}

/* ---- null and run-time mismatches (documented, SQL-like) ---- */

static void test_null_semantics(void **state) {
    (void)state;
    /* A missing field is null, never an error. */
    TRUE_IS("profile.missing == null");
    TRUE_IS("profile.missing.deeper[3] == null");
    /* Ordering with null or a mismatched type is false, both ways. */
    FALSE_IS("profile.missing > 1");
    FALSE_IS("profile.missing < 1");
    FALSE_IS("profile.missing >= 1");
    FALSE_IS("profile.missing <= 1");
    FALSE_IS("profile.city > 3");
    FALSE_IS("profile.city < 3");
    FALSE_IS("profile.vip > 1");
    /* == is false across types; != is exactly not ==, so it is true. */
    FALSE_IS("profile.missing == 1");
    TRUE_IS("profile.missing != 1");
    FALSE_IS("profile.age == \"36\"");
    TRUE_IS("profile.age != \"36\"");
    FALSE_IS("profile.vip == 1");
    FALSE_IS("profile.markets == profile.markets"); /* lists and objects never compare equal */
    FALSE_IS("profile.traits == profile.traits");
    TRUE_IS("profile.markets != profile.markets");
    /* A condition and its negation always split the audience. */
    static const char *const fields[] = {"profile.tier", "profile.nothing", "profile.age",
                                         "profile.city", "profile.markets"};
    for (size_t i = 0; i < 5; i++) {
        char a[128], b[128];
        snprintf(a, sizeof a, "%s == \"gold\"", fields[i]);
        snprintf(b, sizeof b, "not (%s == \"gold\") == (%s != \"gold\")", fields[i], fields[i]);
        FALSE_IS(a);
        TRUE_IS(b);
    }
    null_is("profile.missing + 1");
    null_is("1 - profile.missing");
}

/* ---- static type errors: exact codes, positions, messages ---- */

static void test_type_errors(void **state) {
    (void)state;
    err_is("1 == \"a\"", "type_error", 2, "cannot compare number with string at 1:3");
    err_is("\"x\" > 3", "type_error", 4, "cannot compare string with number at 1:5");
    err_is("not 5", "type_error", 4, "'not' needs true or false, found number at 1:5");
    err_is("!'x'", "type_error", 1, "'not' needs true or false, found string at 1:2");
    err_is("len(3)", "type_error", 4,
           "argument 1 of len() must be a string or a list, found number at 1:5");
    err_is("1 + true", "type_error", 2, "cannot apply '+' to number and bool at 1:3");
    err_is("now() + now()", "type_error", 6, "cannot apply '+' to time and time at 1:7");
    err_is("1 - now()", "type_error", 2, "cannot apply '-' to number and time at 1:3");
    err_is("\"a\" * 2", "type_error", 4, "cannot apply '*' to string and number at 1:5");
    err_is("\"abc\" < now()", "type_error", 6, "cannot compare string with time at 1:7");
    err_is("now() == \"abc\"", "type_error", 6, "cannot compare time with string at 1:7");
    err_is("now() > null", "type_error", 6, "cannot compare time with null at 1:7");
    err_is("[1] == [1]", "type_error", 4, "cannot compare list with list at 1:5");
    err_is("true < false", "type_error", 5, "cannot compare bool with bool at 1:6");
    err_is("-\"a\"", "type_error", 1, "'-' needs a number, found string at 1:2");
    err_is("1 and true", "type_error", 0, "'and' needs true or false, found number at 1:1");
    err_is("true or 2", "type_error", 8, "'or' needs true or false, found number at 1:9");
    err_is("true && (1 + 1)", "type_error", 8, "'and' needs true or false, found number at 1:9");
    err_is("not null", "type_error", 4, "'not' needs true or false, found null at 1:5");
    err_is("3 in \"abc\"", "type_error", 2, "cannot look for number in a string at 1:3");
    err_is("\"a\" in 5", "type_error", 4,
           "'in' needs a list or a string to look in, found number at 1:5");
    err_is("5 contains 1", "type_error", 2,
           "'contains' needs a list or a string to look in, found number at 1:3");
    err_is("\"3\" in [1, 2]", "type_error", 4,
           "cannot look for string in a list of number values at 1:5");
    err_is("[1] in [[1]]", "syntax_error", 8,
           "a list holds numbers, strings, true, false and null only; found '[' at 1:9");
    err_is("[1] in [1]", "type_error", 4, "cannot look for list in a list of number values at 1:5");
    err_is("\"x\" not in 3", "type_error", 8,
           "'in' needs a list or a string to look in, found number at 1:9");
    err_is("starts_with(\"a\", 1)", "type_error", 17,
           "argument 2 of starts_with() must be a string, found number at 1:18");
    err_is("days_since(\"abc\")", "type_error", 11,
           "argument 1 of days_since() must be a time, found string at 1:12");
    err_is("abs(now())", "type_error", 4,
           "argument 1 of abs() must be a number, found time at 1:5");
    err_is("date(1)", "type_error", 5,
           "argument 1 of date() must be a string or a time, found number at 1:6");
    err_is("len(\"a\", \"b\")", "type_error", 0, "len() takes 1 argument, not 2 at 1:1");
    err_is("coalesce(1)", "type_error", 0, "coalesce() takes 2 to 8 arguments, not 1 at 1:1");
    err_is("coalesce(1,2,3,4,5,6,7,8,9)", "type_error", 0,
           "coalesce() takes 2 to 8 arguments, not 9 at 1:1");
    err_is("now(1)", "type_error", 0, "now() takes 0 arguments, not 1 at 1:1");
    err_is("min(1)", "type_error", 0, "min() takes 2 arguments, not 1 at 1:1");
    err_is("(1 + 2) == \"a\"", "type_error", 8, "cannot compare number with string at 1:9");
    err_is("date(\"x\") > 5", "type_error", 10, "cannot compare time with number at 1:11");
    err_is("profile > 1", "type_error", 8, "cannot compare object with number at 1:9");
    err_is("len(upper(\"a\")) == \"1\"", "type_error", 16,
           "cannot compare number with string at 1:17");
    /* Conditions must be able to give a bool. */
    err_as("1 + 2", 5, true, "type_error", 0,
           "a condition must give true or false, not number at 1:1");
    err_as("now()", 5, true, "type_error", 0,
           "a condition must give true or false, not time at 1:1");
    err_as("'a' + profile.x", 15, true, "type_error", 0,
           "a condition must give true or false, not string at 1:1");
    expr_error err;
    expr *e = expr_compile_bool("profile.vip", 11, &ROOTS, &err); /* a field may be a bool */
    assert_non_null(e);
    assert_true(expr_may_give(e, EXPR_BOOL));
    assert_true(expr_may_give(e, EXPR_LIST));
    expr_free(e);
    e = expr_compile_bool("coalesce(profile.vip, false)", 28, &ROOTS, &err);
    assert_non_null(e);
    expr_free(e);
    e = compile_ok("1 + 2");
    assert_true(expr_may_give(e, EXPR_NUMBER));
    assert_true(expr_may_give(e, EXPR_NULL)); /* overflow */
    assert_false(expr_may_give(e, EXPR_BOOL));
    assert_false(expr_may_give(e, EXPR_STRING));
    expr_free(e);
    /* What compiles because data could make it work. */
    expr_free(compile_ok("profile.x == \"a\" or profile.x == 1"));
    expr_free(compile_ok("\"2024-01-01\" < now()"));
    expr_free(compile_ok("lower(profile.x) < now()"));
    expr_free(compile_ok("profile.a + profile.b"));
    expr_free(compile_ok("\"de\" in [\"de\", 1, null]"));
}

/* ---- syntax errors ---- */

static void test_syntax_errors(void **state) {
    (void)state;
    err_is("a ==", "syntax_error", 4, "expected an operand but found end of input at 1:5");
    err_is("(1", "syntax_error", 2, "expected ')' but found end of input at 1:3");
    err_is("\"unterminated", "syntax_error", 0, "unterminated string at 1:1");
    err_is("'ab\\'", "syntax_error", 0, "unterminated string at 1:1");
    err_is("\"ab\\", "syntax_error", 0, "unterminated string at 1:1");
    err_is("1 +* 2", "syntax_error", 3, "expected an operand but found '*' at 1:4");
    err_is("", "syntax_error", 0, "expected an operand but found end of input at 1:1");
    err_is("   ", "syntax_error", 3, "expected an operand but found end of input at 1:4");
    err_is("1 = 2", "syntax_error", 2, "unexpected character '=' (compare with '==') at 1:3");
    err_is("true & false", "syntax_error", 5,
           "unexpected character '&' (write 'and' or '&&') at 1:6");
    err_is("true | false", "syntax_error", 5,
           "unexpected character '|' (write 'or' or '||') at 1:6");
    err_is("1 < 2 < 3", "syntax_error", 6, "comparisons do not chain; join them with 'and' at 1:7");
    err_is("1 == 1 == true", "syntax_error", 7,
           "comparisons do not chain; join them with 'and' at 1:8");
    err_is("profile.", "syntax_error", 8,
           "expected a field name after '.' but found end of input at 1:9");
    err_is("profile.\"x\"", "syntax_error", 8,
           "expected a field name after '.' but found a string at 1:9");
    err_is("profile[-1]", "syntax_error", 8,
           "expected an index (0, 1, ...) or a quoted name but found '-' at 1:9");
    err_is("profile[1.5]", "syntax_error", 8,
           "expected an index (0, 1, ...) or a quoted name but found '1.5' at 1:9");
    err_is("profile[1e10]", "syntax_error", 8,
           "expected an index (0, 1, ...) or a quoted name but found '1e10' at 1:9");
    err_is("profile[\"a\"", "syntax_error", 11, "expected ']' but found end of input at 1:12");
    err_is("[1, profile.x]", "syntax_error", 4,
           "a list holds numbers, strings, true, false and null only; found 'profile' at 1:5");
    err_is("[1 2]", "syntax_error", 3, "expected ',' or ']' but found '2' at 1:4");
    err_is("[1,]", "syntax_error", 3,
           "a list holds numbers, strings, true, false and null only; found ']' at 1:4");
    err_is("[-'a']", "syntax_error", 2, "'-' in a list must precede a number at 1:3");
    err_is("[1", "syntax_error", 2, "expected ',' or ']' but found end of input at 1:3");
    err_is("1 2", "syntax_error", 2, "expected an operator or the end but found '2' at 1:3");
    err_is("\"a\" \"b\"", "syntax_error", 4,
           "expected an operator or the end but found a string at 1:5");
    err_is("(profile).x", "syntax_error", 9,
           "expected an operator or the end but found '.' at 1:10");
    err_is("1.", "syntax_error", 1, "a '.' in a number must be followed by digits at 1:2");
    err_is("1.e5", "syntax_error", 1, "a '.' in a number must be followed by digits at 1:2");
    err_is("1e", "syntax_error", 1, "an exponent needs digits at 1:2");
    err_is("1e+", "syntax_error", 1, "an exponent needs digits at 1:2");
    err_is("12abc", "syntax_error", 0, "invalid number at 1:1");
    err_is("1.5.2", "syntax_error", 0, "invalid number at 1:1");
    err_is(".5", "syntax_error", 0, "expected an operand but found '.' at 1:1");
    err_is("\"\\q\"", "syntax_error", 1, "invalid escape in a string at 1:2");
    err_is("\"\\u12G4\"", "syntax_error", 1, "invalid escape in a string at 1:2");
    err_is("\"\\u12\"", "syntax_error", 1, "invalid escape in a string at 1:2");
    err_is("\"\\ud800\"", "syntax_error", 1, "unpaired surrogate in a \\u escape at 1:2");
    err_is("\"\\ud800\\u0041\"", "syntax_error", 1, "unpaired surrogate in a \\u escape at 1:2");
    err_is("\"\\udc00\"", "syntax_error", 1, "unpaired surrogate in a \\u escape at 1:2");
    err_is("\"\\u0000\"", "syntax_error", 1, "\\u0000 is not allowed in a string at 1:2");
    err_is("\"a\x01\"", "syntax_error", 2, "control character in a string (write \\n, \\t) at 1:3");
    err_is("\"a\nb\"", "syntax_error", 2, "control character in a string (write \\n, \\t) at 1:3");
    err_is("\"\xff\"", "syntax_error", 1, "invalid UTF-8 in a string at 1:2");
    err_is("\"\xc0\xaf\"", "syntax_error", 1, "invalid UTF-8 in a string at 1:2"); /* overlong */
    err_is("\"\xed\xa0\x80\"", "syntax_error", 1,
           "invalid UTF-8 in a string at 1:2");                                    /* surrogate */
    err_is("\"\xe2\x82\"", "syntax_error", 1, "invalid UTF-8 in a string at 1:2"); /* cut short */
    err_is("profile.x @ 1", "syntax_error", 10, "unexpected character '@' at 1:11");
    err_is("1 +\n\xc3\xa9", "syntax_error", 4, "unexpected byte 0xc3 at 2:1");
    err_is("not", "syntax_error", 3, "expected an operand but found end of input at 1:4");
    err_is("profile.a not b", "syntax_error", 10,
           "expected an operator or the end but found 'not' at 1:11");
    err_is("profile.a not inside", "syntax_error", 10,
           "expected an operator or the end but found 'not' at 1:11");
    err_is("len('a',", "syntax_error", 8, "expected an operand but found end of input at 1:9");
    err_is("len(\"a\" \"b\")", "syntax_error", 8, "expected ',' or ')' but found a string at 1:9");
    err_is("true and", "syntax_error", 8, "expected an operand but found end of input at 1:9");
    err_is(")", "syntax_error", 0, "expected an operand but found ')' at 1:1");
    /* A NUL byte is just an unexpected byte: the source has a length, not a terminator. */
    err_as("1 \0 2", 5, false, "syntax_error", 2, "unexpected byte 0x00 at 1:3");
    /* Positions count lines and characters. */
    err_is("profile.city == \"x\"\n  and nope", "unknown_field_root", 26,
           "unknown field root 'nope' (known: profile, event, cart, a) at 2:7");
    err_is("\"\xc3\x9f\" == nope", "unknown_field_root", 8,
           "unknown field root 'nope' (known: profile, event, cart, a) at 1:8");
    err_is("1 +\r\n\t2 +", "syntax_error", 9, "expected an operand but found end of input at 2:5");
}

/* ---- unknown roots and functions ---- */

static void test_unknown_names(void **state) {
    (void)state;
    err_is("foo.x == 1", "unknown_field_root", 0,
           "unknown field root 'foo' (known: profile, event, cart, a) at 1:1");
    err_is("1 == 1 and nope.x", "unknown_field_root", 11,
           "unknown field root 'nope' (known: profile, event, cart, a) at 1:12");
    err_is("Profile.x", "unknown_field_root", 0,
           "unknown field root 'Profile' (known: profile, event, cart, a) at 1:1");
    err_is("bar(1)", "unknown_function", 0, "unknown function 'bar' at 1:1");
    err_is("true and LEN(\"x\") > 1", "unknown_function", 9, "unknown function 'LEN' at 1:10");
    err_is("matches(profile.city, \"B.*\")", "unknown_function", 0,
           "unknown function 'matches' at 1:1");
    err_is("profile(1)", "unknown_function", 0, "unknown function 'profile' at 1:1");
    /* No roots at all. */
    expr_error err;
    expr_roots none = {NULL, 0};
    assert_null(expr_compile("profile.x", 9, &none, &err));
    assert_string_equal(err.ev.code, "unknown_field_root");
    assert_string_equal(err.ev.message, "unknown field root 'profile' (known: none) at 1:1");
    expr *e = expr_compile("1 + 1", 5, NULL, &err);
    assert_non_null(e);
    expr_free(e);
    /* A root named like a function is still a root when no '(' follows. */
    const char *const odd[] = {"now"};
    expr_roots odd_roots = {odd, 1};
    e = expr_compile("now.x == now()", 14, &odd_roots, &err);
    assert_non_null(e);
    expr_free(e);
    /* err may be NULL. */
    assert_null(expr_compile("1 +", 3, &ROOTS, NULL));
}

/* ---- limits ---- */

static char *repeat(const char *unit, size_t times, const char *middle, const char *tail_unit) {
    size_t u = strlen(unit), m = strlen(middle), t = strlen(tail_unit);
    char *s = malloc(times * (u + t) + m + 1), *w = s;
    for (size_t i = 0; i < times; i++, w += u)
        memcpy(w, unit, u);
    memcpy(w, middle, m);
    w += m;
    for (size_t i = 0; i < times; i++, w += t)
        memcpy(w, tail_unit, t);
    *w = '\0';
    return s;
}

static void test_limits(void **state) {
    (void)state;
    /* Nesting: 64 levels compile, the 65th is refused at its opening token. */
    char *s = repeat("(", 64, "1", ")");
    NUM_IS(s, 1);
    free(s);
    s = repeat("(", 65, "1", ")");
    err_is(s, "too_complex", 64, "nesting deeper than 64 levels at 1:65");
    free(s);
    s = repeat("-", 64, "1", "");
    NUM_IS(s, 1);
    free(s);
    s = repeat("-", 65, "1", "");
    err_is(s, "too_complex", 64, "nesting deeper than 64 levels at 1:65");
    free(s);
    s = repeat("not ", 65, "true", "");
    err_is(s, "too_complex", 256, "nesting deeper than 64 levels at 1:257");
    free(s);
    s = repeat("abs(", 65, "1", ")");
    err_is(s, "too_complex", 259, "nesting deeper than 64 levels at 1:260");
    free(s);
    /* Hostile sizes: far past the source limit, refused before anything is parsed. */
    s = repeat("(", 100000, "", "");
    err_as(s, 100000, false, "too_complex", 4096, "expression longer than 4096 bytes at 1:4097");
    free(s);
    s = repeat("1+", 50000, "1", "");
    err_as(s, strlen(s), false, "too_complex", 4096, "expression longer than 4096 bytes at 1:4097");
    free(s);
    s = repeat(" ", 4095, "7", ""); /* exactly 4096 bytes compiles; 4097 does not */
    NUM_IS(s, 7);
    free(s);
    s = repeat(" ", 4096, "7", "");
    err_as(s, 4097, false, "too_complex", 4096, "expression longer than 4096 bytes at 1:4097");
    free(s);
    s = repeat(" ", 4096, "", "");
    err_as(s, 4096, false, "syntax_error", 4096,
           "expected an operand but found end of input at 1:4097");
    free(s);
    /* Nodes: 511 compile (256 ones and 255 '+'), 513 do not. */
    s = repeat("1+", 255, "1", "");
    NUM_IS(s, 256);
    free(s);
    s = repeat("1+", 256, "1", "");
    err_is(s, "too_complex", 512, "more than 512 operands and operators at 1:513");
    free(s);
    /* String literals: 1024 decoded bytes compile, 1025 do not (escapes count decoded). */
    s = repeat("a", 1024, "", "");
    char *q = malloc(1100);
    snprintf(q, 1100, "len('%s')", s);
    NUM_IS(q, 1024);
    snprintf(q, 1100, "len('%sa')", s);
    err_is(q, "too_complex", 4, "string literal longer than 1024 bytes at 1:5");
    free(s);
    free(q);
    s = repeat("\\n", 1024, "", "");
    q = malloc(2100);
    snprintf(q, 2100, "len(\"%s\")", s);
    NUM_IS(q, 1024);
    free(s);
    free(q);
    /* List literals: 256 elements compile, 257 do not. */
    s = repeat("1,", 255, "1", "");
    q = malloc(600);
    snprintf(q, 600, "len([%s])", s);
    NUM_IS(q, 256);
    free(s);
    s = repeat("1,", 256, "1", "");
    snprintf(q, 600, "len([%s])", s);
    err_is(q, "too_complex", 4, "list literal longer than 256 elements at 1:5");
    free(s);
    free(q);
    /* Huge and long numbers. */
    err_is("1e400", "syntax_error", 0, "number out of range at 1:1");
    err_is("-1e400 < 0", "syntax_error", 1, "number out of range at 1:2");
    err_is("[1e999]", "syntax_error", 1, "number out of range at 1:2");
    s = repeat("1", 64, "", "");
    err_is(s, "syntax_error", 0, "number longer than 63 characters at 1:1");
    free(s);
    s = repeat("1", 63, "", "");
    NUM_IS(s, strtod(s, NULL));
    free(s);
    /* Pending values: nested calls with many arguments each. 19 levels of 7 pending constants
     * need 133 slots. */
    s = repeat("coalesce(1,2,3,4,5,6,7,", 19, "8", ")");
    err_is(s, "too_complex", 427, "more than 128 values pending at once at 1:428");
    free(s);
    s = repeat("coalesce(1,2,3,4,5,6,7,", 18, "8", ")");
    NUM_IS(s, 1);
    free(s);
}

/* ---- the evaluation cost ---- */

static void test_cost(void **state) {
    (void)state;
    expr_env env = env_now();
    expr_value v;
    expr_error err;
    static const struct {
        const char *src;
        size_t pos; /* of the operation that passes the limit */
    } costly[] = {
        {"-1 in profile.big", 3}, /* 20000 elements to look at */
        {"profile.big contains -1", 12},
        {"len(lower(profile.long)) > 0", 4}, /* 20000 bytes to read and write */
        {"upper(profile.long) == ''", 0},
        {"trim(profile.long) == ''", 0},
        {"len(profile.long) > 1", 0},
        {"'b' in profile.long", 4},       /* substring search */
        {"profile.long + 'x' == ''", 13}, /* concatenation */
        {"starts_with('x', profile.long)", 0},
    };
    for (size_t i = 0; i < sizeof costly / sizeof costly[0]; i++) {
        expr *e = compile_ok(costly[i].src);
        memset(&v, 0x5a, sizeof v);
        assert_int_equal(expr_eval(e, &env, &v, &err), -1);
        assert_int_equal(v.type, EXPR_NULL);
        assert_null(v.owned_);
        assert_string_equal(err.ev.code, "cost_exceeded");
        if (err.pos != costly[i].pos)
            fail_msg("'%s': pos %zu, want %zu", costly[i].src, err.pos, costly[i].pos);
        expr_value_free(&v);
        expr_free(e);
    }
    expr *e = compile_ok("-1 in profile.big");
    assert_int_equal(expr_eval(e, &env, &v, &err), -1);
    assert_string_equal(err.ev.message, "evaluation cost passed its limit of 10000 at 1:4");
    env.cost_limit = 30000; /* a caller may raise the limit */
    assert_int_equal(expr_eval(e, &env, &v, &err), 0);
    assert_int_equal(v.type, EXPR_BOOL);
    assert_false(v.b);
    env.cost_limit = 4000000000u; /* ... but never past EXPR_MAX_COST */
    expr_free(e);
    e = compile_ok("len(profile.long + profile.long + profile.long + profile.long + profile.long"
                   " + profile.long + profile.long + profile.long + profile.long + profile.long"
                   " + profile.long + profile.long + profile.long + profile.long + profile.long)");
    /* Concatenations reread their growing left side: 2+3+...+15 times BIG_N bytes, past 10^6. */
    assert_int_equal(expr_eval(e, &env, &v, &err), -1);
    assert_string_equal(err.ev.code, "cost_exceeded");
    assert_string_equal(err.ev.message, "evaluation cost passed its limit of 1000000 at 1:138");
    expr_free(e);
    /* A small limit stops even plain operations: 3 per comparison here. */
    env.cost_limit = 5;
    e = compile_ok("1 == 1 and 2 == 2");
    bool b;
    assert_int_equal(expr_eval_bool(e, &env, &b, &err), -1);
    env.cost_limit = 7;
    assert_int_equal(expr_eval_bool(e, &env, &b, &err), 0);
    assert_true(b);
    expr_free(e);
    /* Paths cost one per step. */
    env.cost_limit = 5;
    e = compile_ok("event.properties.products[0].price");
    assert_int_equal(expr_eval(e, &env, &v, &err), 0);
    assert_true(v.num == 19.99);
    env.cost_limit = 3;
    assert_int_equal(expr_eval(e, &env, &v, &err), -1);
    expr_free(e);
}

/* ---- returned values and their ownership ---- */

static void test_values(void **state) {
    (void)state;
    expr_env env = env_now();
    expr_value v, item;
    expr_error err;
    /* A string from the data is borrowed. */
    expr *e = compile_ok("profile.city");
    assert_int_equal(expr_eval(e, &env, &v, &err), 0);
    assert_int_equal(v.type, EXPR_STRING);
    assert_int_equal(v.len, 6);
    assert_ptr_equal(v.str, json_string_value(json_object_get(world[0], "city")));
    assert_null(v.owned_);
    expr_value_free(&v);
    expr_free(e);
    /* A string the evaluation built is owned by the value, and NUL-terminated for convenience. */
    e = compile_ok("trim(lower('  AB  ')) + upper(profile.city)");
    assert_int_equal(expr_eval(e, &env, &v, &err), 0);
    assert_int_equal(v.type, EXPR_STRING);
    assert_int_equal(v.len, 8);
    assert_memory_equal(v.str, "abBERLIN", 8);
    assert_non_null(v.owned_);
    expr_value_free(&v);
    assert_null(v.owned_);
    expr_free(e);
    /* A long built string (past the inline scratch). */
    env.cost_limit = 100000;
    e = compile_ok("profile.long + profile.long");
    assert_int_equal(expr_eval(e, &env, &v, &err), 0);
    assert_int_equal(v.len, 2 * BIG_N);
    assert_true(v.str[0] == 'a' && v.str[2 * BIG_N - 1] == 'a');
    expr_value_free(&v);
    expr_free(e);
    env.cost_limit = 0;
    /* Lists: from the data, and literal. */
    e = compile_ok("profile.markets");
    assert_int_equal(expr_eval(e, &env, &v, &err), 0);
    assert_int_equal(v.type, EXPR_LIST);
    assert_int_equal(v.len, 2);
    assert_ptr_equal(v.json, json_object_get(world[0], "markets"));
    assert_int_equal(expr_value_list_get(&v, 1, &item), 0);
    assert_int_equal(item.type, EXPR_STRING);
    assert_memory_equal(item.str, "at", 2);
    assert_int_equal(expr_value_list_get(&v, 2, &item), -1);
    expr_value_free(&v);
    expr_free(e);
    e = compile_ok("[\"a\", -2, null, true]");
    assert_int_equal(expr_eval(e, &env, &v, &err), 0);
    assert_int_equal(v.type, EXPR_LIST);
    assert_int_equal(v.len, 4);
    assert_null(v.json);
    assert_int_equal(expr_value_list_get(&v, 0, &item), 0);
    assert_int_equal(item.type, EXPR_STRING);
    assert_int_equal(item.len, 1);
    assert_memory_equal(item.str, "a", 1);
    assert_int_equal(expr_value_list_get(&v, 1, &item), 0);
    assert_int_equal(item.type, EXPR_NUMBER);
    assert_true(item.num == -2);
    assert_int_equal(expr_value_list_get(&v, 2, &item), 0);
    assert_int_equal(item.type, EXPR_NULL);
    assert_int_equal(expr_value_list_get(&v, 3, &item), 0);
    assert_true(item.type == EXPR_BOOL && item.b);
    assert_int_equal(expr_value_list_get(&v, 4, &item), -1);
    expr_value_free(&v);
    expr_free(e);
    /* Objects and times. */
    e = compile_ok("profile.traits");
    assert_int_equal(expr_eval(e, &env, &v, &err), 0);
    assert_int_equal(v.type, EXPR_OBJECT);
    assert_ptr_equal(v.json, json_object_get(world[0], "traits"));
    assert_int_equal(expr_value_list_get(&v, 0, &item), -1);
    expr_value_free(&v);
    expr_free(e);
    /* expr_eval_bool: only true is true. */
    static const struct {
        const char *src;
        bool want;
    } conds[] = {{"profile.vip", true},  {"profile.flag_str", false},
                 {"profile.age", false}, {"profile.missing", false},
                 {"1 + 1", false},       {"1 < 2", true}};
    for (size_t i = 0; i < sizeof conds / sizeof conds[0]; i++) {
        e = compile_ok(conds[i].src);
        bool b = !conds[i].want;
        assert_int_equal(expr_eval_bool(e, &env, &b, &err), 0);
        assert_int_equal(b, conds[i].want);
        expr_free(e);
    }
    /* The same program evaluated many times gives the same answer, and keeps its source. */
    e = compile_ok("lower(profile.city) + '!'");
    for (int i = 0; i < 100; i++) {
        assert_int_equal(expr_eval(e, &env, &v, NULL), 0);
        assert_int_equal(v.len, 7);
        assert_memory_equal(v.str, "berlin!", 7);
        expr_value_free(&v);
    }
    assert_string_equal(expr_source(e), "lower(profile.city) + '!'");
    assert_true(expr_bytes(e) > sizeof(void *) * 4 && expr_bytes(e) < 2048);
    expr_free(e);
    expr_value_free(NULL);
}

/* ---- the env: missing roots, short arrays, no env at all ---- */

static void test_env(void **state) {
    (void)state;
    expr_value v;
    expr_error err;
    expr *e =
        compile_ok("profile.x == null and not (\"de\" in profile.markets) and cart.value == null");
    bool b = false;
    expr_env no_values = {NULL, 3, NOW, 0};
    assert_int_equal(expr_eval_bool(e, &no_values, &b, &err), 0);
    assert_true(b);
    const json_t *only_profile[1] = {world[0]}; /* n = 1: cart reads as null */
    expr_env short_env = {only_profile, 1, NOW, 0};
    expr *e2 = compile_ok("cart.value == null and profile.city == 'Berlin'");
    assert_int_equal(expr_eval_bool(e2, &short_env, &b, &err), 0);
    assert_true(b);
    expr_env full = env_now();
    assert_int_equal(expr_eval_bool(e2, &full, &b, &err), 0);
    assert_false(b);
    expr_free(e2);
    const json_t *nulls[4] = {NULL, NULL, NULL, NULL};
    expr_env null_env = {nulls, 4, NOW, 0};
    assert_int_equal(expr_eval_bool(e, &null_env, &b, &err), 0);
    assert_true(b);
    assert_int_equal(expr_eval_bool(e, NULL, &b, &err), 0);
    assert_true(b);
    expr_free(e);
    /* A root that is not an object reads as null. */
    json_t *arr = parse("[10, 20]");
    const json_t *vals[1] = {arr};
    expr_env arr_env = {vals, 1, NOW, 0};
    e = compile_ok("profile[1]");
    assert_int_equal(expr_eval(e, &arr_env, &v, &err), 0);
    assert_int_equal(v.type, EXPR_NULL);
    expr_free(e);
    e = compile_ok("profile");
    assert_int_equal(expr_eval(e, &arr_env, &v, &err), 0);
    assert_int_equal(v.type, EXPR_NULL);
    assert_false(expr_may_give(e, EXPR_LIST));
    assert_true(expr_may_give(e, EXPR_OBJECT));
    expr_free(e);
    json_decref(arr);
    /* Integers as JSON integers and reals compare the same. */
    json_t *nums = parse("{\"i\": 3, \"r\": 3.0, \"big\": 9007199254740993}");
    const json_t *nv[1] = {nums};
    expr_env nenv = {nv, 1, NOW, 0};
    e = compile_ok("profile.i == profile.r and profile.big > 9007199254740991");
    assert_int_equal(expr_eval_bool(e, &nenv, &b, &err), 0);
    assert_true(b);
    expr_free(e);
    json_decref(nums);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example),       cmocka_unit_test(test_literals),
        cmocka_unit_test(test_arithmetic),    cmocka_unit_test(test_comparisons),
        cmocka_unit_test(test_logic),         cmocka_unit_test(test_membership),
        cmocka_unit_test(test_paths),         cmocka_unit_test(test_time),
        cmocka_unit_test(test_functions),     cmocka_unit_test(test_null_semantics),
        cmocka_unit_test(test_type_errors),   cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_unknown_names), cmocka_unit_test(test_limits),
        cmocka_unit_test(test_cost),          cmocka_unit_test(test_values),
        cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests_name("expr", tests, setup, teardown);
}
