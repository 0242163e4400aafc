/* Unit tests for c360/offers: definitions, unique codes, assign / validate / redeem / unredeem,
 * erasure, and the two-step protocol. Every change goes the way the engine sends it: the prepare
 * call's record is written as JSON text (util/jsonw, like the log), read back, and applied; the
 * texts are kept so that the replay test can rebuild a second state from them and compare.
 *
 * The expression language is a stand-in: "true", "false" and "error" evaluate to 1, 0 and -1; any
 * other word is true when it appears in the profile context (a string of tags such as "vip new");
 * "bad" does not compile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stdbool.h>

#include "c360/offers.h"
#include "util/buf.h"
#include "util/jsonw.h"

#define T0 1717200000000LL      /* 2024-06-01T00:00:00.000Z */
#define T_JUN15 1718409600000LL /* 2024-06-15T00:00:00.000Z */
#define T_SEP1 1725148800000LL  /* 2024-09-01T00:00:00.000Z */

/* ---- The stand-in expression language ---- */

static int live_exprs;

static void *fx_compile(const char *src, size_t len, ev_error *err, void *arg) {
    (void)arg;
    if (len == 3 && memcmp(src, "bad", 3) == 0) {
        ev_error_set(err, "invalid_expression", "", "unexpected end of expression at byte 3");
        return NULL;
    }
    char *c = strndup(src, len);
    if (c) live_exprs++;
    return c;
}

static int fx_eval(const void *compiled, const void *ctx, void *arg) {
    (void)arg;
    const char *e = compiled, *tags = ctx ? ctx : "";
    if (strcmp(e, "true") == 0) return 1;
    if (strcmp(e, "false") == 0) return 0;
    if (strcmp(e, "error") == 0) return -1;
    return strstr(tags, e) ? 1 : 0;
}

static void fx_free(void *compiled, void *arg) {
    (void)arg;
    live_exprs--;
    free(compiled);
}

static const offer_options fx_options = {{fx_compile, fx_eval, fx_free, NULL}, 0, 0, 0};

/* ---- A counter as the random source: bytes n, n+1, ... ---- */

typedef struct counter {
    unsigned next;
} counter;

static void counter_rng(void *out, size_t n, void *arg) {
    counter *c = arg;
    unsigned char *p = out;
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(c->next++ & 0xff);
}

static void zero_rng(void *out, size_t n, void *arg) {
    (void)arg;
    memset(out, 0, n);
}

/* xorshift64*, for big batches. */
static void xs_rng(void *out, size_t n, void *arg) {
    uint64_t *s = arg;
    unsigned char *p = out;
    for (size_t i = 0; i < n; i++) {
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        p[i] = (unsigned char)((*s * 2685821657736338717ull) >> 56);
    }
}

/* ---- The log ---- */

typedef struct logrec {
    char *text;
    int64_t now;
} logrec;

typedef struct world {
    offer_state *st;
    logrec *log;
    size_t n, a;
} world;

static world *world_new(const offer_options *opt) {
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->st = offer_state_new(opt);
    assert_non_null(w->st);
    return w;
}

static void world_free(world *w) {
    offer_state_free(w->st);
    for (size_t i = 0; i < w->n; i++)
        free(w->log[i].text);
    free(w->log);
    free(w);
}

static char *to_text(const json_t *j) {
    buf b = BUF_INIT(0);
    assert_int_equal(jsonw_value(&b, j), BUF_OK);
    return buf_detach(&b, NULL);
}

static json_t *J(const char *text) {
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!j) fail_msg("bad test JSON (%s): %s", e.text, text);
    return j;
}

static void assert_json(const json_t *j, const char *want) {
    assert_non_null(j);
    char *got = to_text(j);
    if (strcmp(got, want) != 0) fail_msg("JSON differs\n got: %s\nwant: %s", got, want);
    free(got);
}

/* Writes the record to the log as text, reads it back, applies it: what the engine does. */
static offer_result commit(world *w, json_t *rec, int64_t now, json_t **reply, ev_error *err) {
    char *text = to_text(rec);
    json_decref(rec);
    if (w->n == w->a) {
        w->a = w->a ? w->a * 2 : 64;
        w->log = realloc(w->log, w->a * sizeof *w->log);
        assert_non_null(w->log);
    }
    w->log[w->n++] = (logrec){text, now};
    json_t *back = J(text);
    offer_result r = offer_apply(w->st, back, now, reply, err);
    json_decref(back);
    if (r == OFFER_OK)
        assert_non_null(*reply);
    else
        assert_null(*reply);
    return r;
}

/* Completes a prepare call: a refusal has neither record nor reply; an answer without a change
 * has only a reply; a change goes through the log. */
static offer_result finish(world *w, offer_result r, json_t *rec, json_t **reply, int64_t now,
                           ev_error *err) {
    if (r != OFFER_OK) {
        assert_null(rec);
        assert_null(*reply);
        assert_string_equal(err->code, r == OFFER_INVALID ? err->code : offer_result_code(r));
        assert_true(err->message[0] != '\0');
        return r;
    }
    if (!rec) {
        assert_non_null(*reply);
        return r;
    }
    assert_null(*reply);
    return commit(w, rec, now, reply, err);
}

static json_t *put_text(world *w, const char *text, int64_t now) {
    json_t *body = J(text), *rec = NULL, *reply = NULL;
    ev_error err = {0};
    offer_result r = offer_put(w->st, NULL, body, &rec, &err);
    json_decref(body);
    if (r) fail_msg("put refused: %s %s: %s", err.code, err.field, err.message);
    assert_non_null(rec);
    r = commit(w, rec, now, &reply, &err);
    if (r) fail_msg("put apply refused: %s %s: %s", err.code, err.field, err.message);
    return reply;
}

static void put(world *w, const char *text, int64_t now) {
    json_decref(put_text(w, text, now));
}

static offer_result patch(world *w, const char *id, const char *text, int64_t now, ev_error *err) {
    json_t *p = J(text), *rec = NULL, *reply = NULL;
    offer_result r = offer_patch(w->st, id, p, &rec, err);
    json_decref(p);
    r = finish(w, r, rec, &reply, now, err);
    json_decref(reply);
    return r;
}

static offer_result assign(world *w, const char *offer, const char *pid, const char *ctx,
                           int64_t now, json_t **reply, ev_error *err) {
    json_t *rec = NULL, *out = NULL;
    offer_result r = offer_assign(w->st, offer, pid, ctx, now, &rec, &out, err);
    r = finish(w, r, rec, &out, now, err);
    if (reply)
        *reply = out;
    else
        json_decref(out);
    return r;
}

/* The code an assignment hands out (asserting it succeeds); the caller frees it. */
static char *assign_code(world *w, const char *offer, const char *pid, const char *ctx,
                         int64_t now) {
    json_t *reply;
    ev_error err = {0};
    offer_result r = assign(w, offer, pid, ctx, now, &reply, &err);
    if (r) fail_msg("assign refused: %s: %s", err.code, err.message);
    char *code = strdup(json_string_value(json_object_get(reply, "code")));
    json_decref(reply);
    return code;
}

static offer_result validate(world *w, const char *offer, const char *code, const char *pid,
                             const char *ctx, int64_t now, ev_error *err) {
    json_t *reply = NULL;
    offer_result r = offer_validate(w->st, offer, code, pid, ctx, now, &reply, err);
    if (r == OFFER_OK)
        assert_non_null(reply);
    else
        assert_null(reply);
    json_decref(reply);
    return r;
}

static offer_result redeem(world *w, const char *offer, const char *code, const char *pid,
                           const char *order, const char *ctx, int64_t now, json_t **reply,
                           ev_error *err) {
    json_t *rec = NULL, *out = NULL;
    offer_result r = offer_redeem(w->st, offer, code, pid, order, ctx, now, &rec, &out, err);
    r = finish(w, r, rec, &out, now, err);
    if (reply)
        *reply = out;
    else
        json_decref(out);
    return r;
}

static offer_result unredeem(world *w, const char *order, int64_t now, json_t **reply,
                             ev_error *err) {
    json_t *rec = NULL, *out = NULL;
    offer_result r = offer_unredeem(w->st, order, &rec, &out, err);
    r = finish(w, r, rec, &out, now, err);
    if (reply)
        *reply = out;
    else
        json_decref(out);
    return r;
}

static offer_result generate(world *w, const char *offer, size_t count, const char *prefix,
                             offer_rng rng, void *arg, int64_t now, json_t **reply, ev_error *err) {
    json_t *rec = NULL, *out = NULL;
    offer_result r = offer_codes_generate(w->st, offer, count, prefix, rng, arg, &rec, err);
    if (r == OFFER_OK) assert_non_null(rec);
    r = finish(w, r, rec, &out, now, err);
    if (reply)
        *reply = out;
    else
        json_decref(out);
    return r;
}

static offer_result import(world *w, const char *offer, const char *codes, int64_t now,
                           ev_error *err) {
    json_t *c = J(codes), *rec = NULL, *out = NULL;
    offer_result r = offer_codes_import(w->st, offer, c, &rec, err);
    json_decref(c);
    r = finish(w, r, rec, &out, now, err);
    json_decref(out);
    return r;
}

/* Merges from into into through the log when there is something to move. */
static offer_result merge(world *w, const char *from, const char *into, int64_t now, json_t **reply,
                          ev_error *err) {
    json_t *rec = NULL, *out = NULL;
    offer_result r = offer_merge_profiles(w->st, from, into, &rec, err);
    if (r != OFFER_OK) {
        assert_null(rec);
        return r;
    }
    if (rec) r = commit(w, rec, now, &out, err);
    if (reply)
        *reply = out;
    else
        json_decref(out);
    return r;
}

static void assert_profile(world *w, const char *pid, const char *want) {
    json_t *reply = NULL;
    ev_error err = {0};
    assert_int_equal(offer_profile_json(w->st, pid, &reply, &err), OFFER_OK);
    assert_json(reply, want);
    json_decref(reply);
}

static void assert_get(world *w, const char *id, const char *want) {
    json_t *reply = NULL;
    ev_error err = {0};
    assert_int_equal(offer_get(w->st, id, &reply, &err), OFFER_OK);
    assert_json(reply, want);
    json_decref(reply);
}

/* One stat of an offer. */
static json_int_t stat(world *w, const char *id, const char *name) {
    json_t *reply = NULL;
    ev_error err = {0};
    assert_int_equal(offer_get(w->st, id, &reply, &err), OFFER_OK);
    json_int_t v = json_integer_value(json_object_get(json_object_get(reply, "stats"), name));
    json_decref(reply);
    return v;
}

/* OFFER_INVALID carries the API's validation code, never "invalid": returns it if it is one. */
static const char *invalid_code(const char *code) {
    static const char *const codes[] = {"missing_field", "invalid_field", "invalid_body",
                                        "too_deep", "invalid_expression"};
    for (size_t i = 0; code && i < sizeof codes / sizeof *codes; i++)
        if (strcmp(code, codes[i]) == 0) return code;
    return "(a validation code)";
}

#define EXPECT_REFUSAL(call, want_r, want_field)                                                   \
    do {                                                                                           \
        ev_error e_ = {0};                                                                         \
        offer_result r_ = (call);                                                                  \
        if (r_ != (want_r))                                                                        \
            fail_msg("%s: got %s (%s: %s), want %s", #call, offer_result_code(r_),                 \
                     e_.code ? e_.code : "-", e_.message, offer_result_code(want_r));              \
        assert_string_equal(e_.code, (want_r) == OFFER_INVALID ? invalid_code(e_.code)             \
                                                               : offer_result_code(want_r));       \
        assert_string_equal(e_.field, (want_field));                                               \
    } while (0)

/* Shared offers used by several tests. */
static const char *summer =
    "{\"id\":\"summer\",\"name\":\"Summer sale\",\"discount\":{\"type\":\"percent\",\"value\":10},"
    "\"code_type\":\"shared\",\"code\":\"summer24\"}";
static const char *unique =
    "{\"id\":\"welcome\",\"name\":\"Welcome\",\"discount\":{\"type\":\"amount\",\"value\":5.25,"
    "\"currency\":\"eur\"},\"code_type\":\"unique\"}";

/* ---- Results ---- */

static void test_result_table(void **state) {
    (void)state;
    static const struct {
        offer_result r;
        const char *code;
        int status;
    } want[] = {
        {OFFER_OK, "ok", 200},
        {OFFER_INVALID, "invalid", 400},
        {OFFER_UNKNOWN_OFFER, "unknown_offer", 404},
        {OFFER_UNKNOWN_CODE, "unknown_code", 404},
        {OFFER_ARCHIVED, "archived", 409},
        {OFFER_PAUSED, "paused", 409},
        {OFFER_NOT_STARTED, "not_started", 409},
        {OFFER_EXPIRED, "expired", 409},
        {OFFER_ALREADY_REDEEMED, "already_redeemed", 409},
        {OFFER_ASSIGNED_TO_OTHER, "assigned_to_other", 409},
        {OFFER_NOT_ELIGIBLE, "not_eligible", 409},
        {OFFER_LIMIT_REACHED, "limit_reached", 409},
        {OFFER_CUSTOMER_LIMIT_REACHED, "customer_limit_reached", 409},
        {OFFER_NO_CODES_LEFT, "no_codes_left", 409},
        {OFFER_CODE_TAKEN, "code_taken", 409},
        {OFFER_CONFLICT, "conflict", 409},
        {OFFER_TOO_MANY_OFFERS, "too_many_offers", 409},
        {OFFER_TOO_MANY_CODES, "too_many_codes", 409},
        {OFFER_NOMEM, "unavailable", 503},
    };
    assert_int_equal(sizeof want / sizeof *want, OFFER_NRESULTS);
    for (size_t i = 0; i < OFFER_NRESULTS; i++) {
        assert_int_equal(want[i].r, (offer_result)i);
        assert_string_equal(offer_result_code(want[i].r), want[i].code);
        assert_int_equal(offer_result_status(want[i].r), want[i].status);
    }
    assert_null(offer_result_code(OFFER_NRESULTS));
    assert_null(offer_result_code((offer_result)-1));
    assert_int_equal(offer_result_status(OFFER_NRESULTS), 500);
    assert_true(offer_channel_known("whatsapp"));
    assert_false(offer_channel_known("server"));
    assert_false(offer_channel_known("WEB"));
    assert_false(offer_channel_known(NULL));
    /* Options past the ceiling of 50 million codes are refused. */
    offer_options big = {.max_codes = 50000001};
    assert_null(offer_state_new(&big));
}

/* ---- Definitions ---- */

static void test_put_get_canonical(void **state) {
    (void)state;
    world *w = world_new(&fx_options);
    json_t *body = J(summer), *rec = NULL, *reply = NULL;
    ev_error err = {0};
    assert_int_equal(offer_put(w->st, NULL, body, &rec, &err), OFFER_OK);
    json_decref(body);
    static const char *def =
        "{\"id\":\"summer\",\"name\":\"Summer sale\",\"description\":null,\"discount\":{\"type\":"
        "\"percent\",\"value\":10},\"code_type\":\"shared\",\"code\":\"SUMMER24\",\"starts_at\":"
        "null,\"ends_at\":null,\"eligibility\":null,\"limits\":{\"per_customer\":1,\"total\":"
        "null},\"channels\":null,\"status\":\"active\"";
    char want[2048];
    snprintf(want, sizeof want, "{\"op\":\"offer.put\",\"offer\":%s}}", def);
    assert_json(rec, want);
    /* Preparing changed nothing. */
    EXPECT_REFUSAL(offer_get(w->st, "summer", &reply, &e_), OFFER_UNKNOWN_OFFER, "id");
    assert_int_equal(commit(w, rec, T0, &reply, &err), OFFER_OK);
    snprintf(want, sizeof want,
             "%s,\"created_at\":\"2024-06-01T00:00:00.000Z\",\"updated_at\":\"2024-06-01T00:00:"
             "00.000Z\",\"stats\":{\"redemptions\":0,\"codes\":0,\"codes_free\":0,\"codes_"
             "assigned\":0,\"codes_redeemed\":0}}",
             def);
    assert_json(reply, want);
    json_decref(reply);
    assert_get(w, "summer", want);
    EXPECT_REFUSAL(offer_get(w->st, "winter", &reply, &e_), OFFER_UNKNOWN_OFFER, "id");
    assert_null(reply);
    world_free(w);
}

static void test_put_normalizes(void **state) {
    (void)state;
    world *w = world_new(&fx_options);
    /* Lower-case code and currency, zoned times, channels out of table order, empty strings,
     * explicit nulls, and the read-only fields of a reply (ignored). */
    json_t *reply = put_text(
        w,
        "{\"id\":\"Spring.2024-a\",\"name\":\"\",\"description\":\"Ten off\",\"discount\":{"
        "\"type\":\"amount\",\"value\":10,\"currency\":\"usd\"},\"code_type\":\"shared\",\"code\""
        ":\"spring_24-x\",\"starts_at\":\"2024-06-01T02:00:00+02:00\",\"ends_at\":\"2024-09-01\","
        "\"eligibility\":\"vip\",\"limits\":{\"per_customer\":3,\"total\":1000},\"channels\":[\""
        "pos\",\"email\",\"web\"],\"status\":null,\"created_at\":\"1999-01-01\",\"stats\":{\"x\":"
        "1},\"updated_at\":7}",
        T0);
    assert_json(reply,
                "{\"id\":\"Spring.2024-a\",\"name\":null,\"description\":\"Ten off\",\"discount\":"
                "{\"type\":\"amount\",\"value\":10,\"currency\":\"USD\"},\"code_type\":\"shared\""
                ",\"code\":\"SPRING_24-X\",\"starts_at\":\"2024-06-01T00:00:00.000Z\",\"ends_at\""
                ":\"2024-09-01T00:00:00.000Z\",\"eligibility\":\"vip\",\"limits\":{\"per_"
                "customer\":3,\"total\":1000},\"channels\":[\"web\",\"email\",\"pos\"],\"status\""
                ":\"active\",\"created_at\":\"2024-06-01T00:00:00.000Z\",\"updated_at\":\"2024-"
                "06-01T00:00:00.000Z\",\"stats\":{\"redemptions\":0,\"codes\":0,\"codes_free\":0,"
                "\"codes_assigned\":0,\"codes_redeemed\":0}}");
    assert_int_equal(live_exprs, 1);

    /* A reply PUT back gives the same definition: the canonical form is a fixed point. */
    json_t *rec = NULL;
    ev_error err = {0};
    assert_int_equal(offer_put(w->st, "Spring.2024-a", reply, &rec, &err), OFFER_OK);
    json_t *again = J("{}");
    json_object_update(again, reply);
    json_object_del(again, "created_at");
    json_object_del(again, "updated_at");
    json_object_del(again, "stats");
    assert_true(json_equal(json_object_get(rec, "offer"), again));
    json_decref(again);
    json_decref(rec);
    json_decref(reply);

    /* An empty channel list stays empty (promoted nowhere), unlike null (everywhere). */
    reply = put_text(w,
                     "{\"id\":\"quiet\",\"discount\":{\"type\":\"free_shipping\"},\"code_type\":"
                     "\"none\",\"channels\":[],\"discount\":{\"type\":\"free_shipping\",\"value\":"
                     "null,\"currency\":null}}",
                     T0);
    assert_json(json_object_get(reply, "channels"), "[]");
    assert_json(json_object_get(reply, "discount"), "{\"type\":\"free_shipping\"}");
    json_decref(reply);
    world_free(w);
    assert_int_equal(live_exprs, 0);
}

static void test_put_replace(void **state) {
    (void)state;
    world *w = world_new(&fx_options);
    put(w, summer, T0);
    put(w, unique, T0);
    ev_error err = {0};
    /* Replace summer with another code, later: created_at stays, updated_at moves. */
    json_t *reply = put_text(w,
                             "{\"id\":\"summer\",\"discount\":{\"type\":\"percent\",\"value\":"
                             "12.5},\"code_type\":\"shared\",\"code\":\"SUN\"}",
                             T_JUN15);
    assert_json(json_object_get(reply, "created_at"), "\"2024-06-01T00:00:00.000Z\"");
    assert_json(json_object_get(reply, "updated_at"), "\"2024-06-15T00:00:00.000Z\"");
    assert_json(json_object_get(reply, "discount"), "{\"type\":\"percent\",\"value\":12.5}");
    json_decref(reply);
    /* The old code is gone, the new one works, and the old one is free for another offer. */
    EXPECT_REFUSAL(validate(w, NULL, "SUMMER24", "p1", NULL, T_JUN15, &e_), OFFER_UNKNOWN_CODE,
                   "code");
    assert_int_equal(validate(w, NULL, "sun", "p1", NULL, T_JUN15, &err), OFFER_OK);
    put(w,
        "{\"id\":\"other\",\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":"
        "\"shared\",\"code\":\"summer24\"}",
        T_JUN15);
    /* A code another offer uses is taken, whatever its case. */
    json_t *body = J("{\"id\":\"third\",\"discount\":{\"type\":\"percent\",\"value\":5},"
                     "\"code_type\":\"shared\",\"code\":\"Sun\"}"),
           *rec = NULL;
    EXPECT_REFUSAL(offer_put(w->st, NULL, body, &rec, &e_), OFFER_CODE_TAKEN, "code");
    assert_null(rec);
    json_decref(body);
    /* Re-putting an offer with its own code is fine. */
    put(w,
        "{\"id\":\"summer\",\"discount\":{\"type\":\"percent\",\"value\":15},\"code_type\":"
        "\"shared\",\"code\":\"sun\"}",
        T_JUN15);
    assert_int_equal(validate(w, "summer", "SUN", "p1", NULL, T_JUN15, &err), OFFER_OK);

    /* code_type may leave unique only while the offer has no codes. */
    put(w,
        "{\"id\":\"welcome\",\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":"
        "\"none\"}",
        T0);
    put(w, unique, T0);
    counter c = {0};
    assert_int_equal(generate(w, "welcome", 2, "w", counter_rng, &c, T0, NULL, &err), OFFER_OK);
    body = J("{\"id\":\"welcome\",\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":"
             "\"shared\",\"code\":\"WELCOME\"}");
    EXPECT_REFUSAL(offer_put(w->st, NULL, body, &rec, &e_), OFFER_CONFLICT, "code_type");
    json_decref(body);
    EXPECT_REFUSAL(patch(w, "welcome", "{\"code_type\":\"none\"}", T0, &e_), OFFER_CONFLICT,
                   "code_type");
    /* Shared to none drops the code. */
    assert_int_equal(patch(w, "summer", "{\"code_type\":\"none\",\"code\":null}", T0, &err),
                     OFFER_OK);
    EXPECT_REFUSAL(validate(w, NULL, "SUN", "p1", NULL, T0, &e_), OFFER_UNKNOWN_CODE, "code");
    /* The URL's id may be left out of the body but not contradicted. */
    body = J("{\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":\"none\"}");
    assert_int_equal(offer_put(w->st, "from-url", body, &rec, &err), OFFER_OK);
    assert_json(json_object_get(json_object_get(rec, "offer"), "id"), "\"from-url\"");
    json_decref(rec);
    json_decref(body);
    body = J(summer);
    EXPECT_REFUSAL(offer_put(w->st, "elsewhere", body, &rec, &e_), OFFER_INVALID, "id");
    json_decref(body);
    world_free(w);
}

/* One hostile definition: the body, the URL id, and what must be said about it. */
typedef struct bad_def {
    const char *body;
    const char *code;
    const char *field;
} bad_def;

#define D "\"discount\":{\"type\":\"percent\",\"value\":10}"
#define S "\"code_type\":\"shared\",\"code\":\"ABC\""
#define OK_REST D "," S

static void test_hostile_definitions(void **state) {
    (void)state;
    static const bad_def cases[] = {
        /* shape */
        {"[]", "invalid_body", ""},
        {"\"offer\"", "invalid_body", ""},
        {"null", "invalid_body", ""},
        {"{\"id\":\"a\"," OK_REST ",\"colour\":\"red\"}", "invalid_field", "colour"},
        {"{\"id\":\"a\"," OK_REST ",\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]"
         "]]]]]]]]]]]]]]]]]]]]]]]}",
         "invalid_field", "x"},
        /* id */
        {"{" OK_REST "}", "missing_field", "id"},
        {"{\"id\":\"\"," OK_REST "}", "missing_field", "id"},
        {"{\"id\":7," OK_REST "}", "invalid_field", "id"},
        {"{\"id\":[\"a\"]," OK_REST "}", "invalid_field", "id"},
        {"{\"id\":\"a b\"," OK_REST "}", "invalid_field", "id"},
        {"{\"id\":\"a/b\"," OK_REST "}", "invalid_field", "id"},
        {"{\"id\":\"..\"," OK_REST "}", "invalid_field", "id"},
        {"{\"id\":\"-a\"," OK_REST "}", "invalid_field", "id"},
        {"{\"id\":\"caf\\u00e9\"," OK_REST "}", "invalid_field", "id"},
        {"{\"id\":\"a\\u0000b\"," OK_REST "}", "invalid_field", "id"},
        /* name, description, eligibility */
        {"{\"id\":\"a\",\"name\":1," OK_REST "}", "invalid_field", "name"},
        {"{\"id\":\"a\",\"name\":{}," OK_REST "}", "invalid_field", "name"},
        {"{\"id\":\"a\",\"name\":\"x\\u0000y\"," OK_REST "}", "invalid_field", "name"},
        {"{\"id\":\"a\",\"description\":true," OK_REST "}", "invalid_field", "description"},
        {"{\"id\":\"a\",\"eligibility\":5," OK_REST "}", "invalid_field", "eligibility"},
        {"{\"id\":\"a\",\"eligibility\":\"bad\"," OK_REST "}", "invalid_expression", "eligibility"},
        /* discount */
        {"{\"id\":\"a\"," S "}", "missing_field", "discount"},
        {"{\"id\":\"a\"," S ",\"discount\":null}", "missing_field", "discount"},
        {"{\"id\":\"a\"," S ",\"discount\":\"10%\"}", "invalid_field", "discount"},
        {"{\"id\":\"a\"," S ",\"discount\":{}}", "missing_field", "discount.type"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"bogo\"}}", "invalid_field", "discount.type"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":1}}", "invalid_field", "discount.type"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"percent\"}}", "missing_field",
         "discount.value"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"percent\",\"value\":\"10\"}}",
         "invalid_field", "discount.value"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"percent\",\"value\":0}}", "invalid_field",
         "discount.value"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"percent\",\"value\":-5}}", "invalid_field",
         "discount.value"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"percent\",\"value\":100.5}}",
         "invalid_field", "discount.value"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"percent\",\"value\":10,\"currency\":"
         "\"EUR\"}}",
         "invalid_field", "discount.currency"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"amount\",\"value\":10}}", "missing_field",
         "discount.currency"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"amount\",\"value\":1e10,\"currency\":"
         "\"EUR\"}}",
         "invalid_field", "discount.value"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"amount\",\"value\":5,\"currency\":"
         "\"EURO\"}}",
         "invalid_field", "discount.currency"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"amount\",\"value\":5,\"currency\":"
         "\"E1R\"}}",
         "invalid_field", "discount.currency"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"amount\",\"value\":5,\"currency\":978}}",
         "invalid_field", "discount.currency"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"free_shipping\",\"value\":5}}",
         "invalid_field", "discount.value"},
        {"{\"id\":\"a\"," S ",\"discount\":{\"type\":\"percent\",\"value\":5,\"max\":3}}",
         "invalid_field", "discount.max"},
        /* code_type, code */
        {"{\"id\":\"a\"," D "}", "missing_field", "code_type"},
        {"{\"id\":\"a\"," D ",\"code_type\":\"single\"}", "invalid_field", "code_type"},
        {"{\"id\":\"a\"," D ",\"code_type\":true}", "invalid_field", "code_type"},
        {"{\"id\":\"a\"," D ",\"code_type\":\"shared\"}", "missing_field", "code"},
        {"{\"id\":\"a\"," D ",\"code_type\":\"shared\",\"code\":\"AB\"}", "invalid_field", "code"},
        {"{\"id\":\"a\"," D ",\"code_type\":\"shared\",\"code\":\"A B C\"}", "invalid_field",
         "code"},
        {"{\"id\":\"a\"," D ",\"code_type\":\"shared\",\"code\":\"ÄBC\"}", "invalid_field", "code"},
        {"{\"id\":\"a\"," D ",\"code_type\":\"shared\",\"code\":123}", "invalid_field", "code"},
        {"{\"id\":\"a\"," D ",\"code_type\":\"shared\",\"code\":\"A23456789012345678901234567890"
         "12345678901234567890123456789012345\"}",
         "invalid_field", "code"},
        {"{\"id\":\"a\"," D ",\"code_type\":\"unique\",\"code\":\"ABC\"}", "invalid_field", "code"},
        {"{\"id\":\"a\"," D ",\"code_type\":\"none\",\"code\":\"ABC\"}", "invalid_field", "code"},
        /* dates */
        {"{\"id\":\"a\"," OK_REST ",\"starts_at\":\"yesterday\"}", "invalid_field", "starts_at"},
        {"{\"id\":\"a\"," OK_REST ",\"starts_at\":1717200000}", "invalid_field", "starts_at"},
        {"{\"id\":\"a\"," OK_REST ",\"ends_at\":\"2024-02-30T00:00:00Z\"}", "invalid_field",
         "ends_at"},
        {"{\"id\":\"a\"," OK_REST ",\"ends_at\":\"2024-06-01T00:00:00Zjunk\"}", "invalid_field",
         "ends_at"},
        {"{\"id\":\"a\"," OK_REST ",\"starts_at\":\"2024-06-02\",\"ends_at\":\"2024-06-01\"}",
         "invalid_field", "ends_at"},
        {"{\"id\":\"a\"," OK_REST ",\"starts_at\":\"2024-06-01T02:00:00+02:00\",\"ends_at\":\""
         "2024-06-01\"}",
         "invalid_field", "ends_at"},
        /* limits */
        {"{\"id\":\"a\"," OK_REST ",\"limits\":5}", "invalid_field", "limits"},
        {"{\"id\":\"a\"," OK_REST ",\"limits\":{\"per_customer\":0}}", "invalid_field",
         "limits.per_customer"},
        {"{\"id\":\"a\"," OK_REST ",\"limits\":{\"per_customer\":1.5}}", "invalid_field",
         "limits.per_customer"},
        {"{\"id\":\"a\"," OK_REST ",\"limits\":{\"per_customer\":\"2\"}}", "invalid_field",
         "limits.per_customer"},
        {"{\"id\":\"a\"," OK_REST ",\"limits\":{\"per_customer\":1000001}}", "invalid_field",
         "limits.per_customer"},
        {"{\"id\":\"a\"," OK_REST ",\"limits\":{\"total\":0}}", "invalid_field", "limits.total"},
        {"{\"id\":\"a\"," OK_REST ",\"limits\":{\"total\":-1}}", "invalid_field", "limits.total"},
        {"{\"id\":\"a\"," OK_REST ",\"limits\":{\"total\":100.0}}", "invalid_field",
         "limits.total"},
        {"{\"id\":\"a\"," OK_REST ",\"limits\":{\"total\":9223372036854775807}}", "invalid_field",
         "limits.total"},
        {"{\"id\":\"a\"," OK_REST ",\"limits\":{\"weekly\":3}}", "invalid_field", "limits.weekly"},
        /* channels */
        {"{\"id\":\"a\"," OK_REST ",\"channels\":\"web\"}", "invalid_field", "channels"},
        {"{\"id\":\"a\"," OK_REST ",\"channels\":[\"web\",\"fax\"]}", "invalid_field",
         "channels[1]"},
        {"{\"id\":\"a\"," OK_REST ",\"channels\":[\"web\",\"server\"]}", "invalid_field",
         "channels[1]"},
        {"{\"id\":\"a\"," OK_REST ",\"channels\":[\"sms\",\"web\",\"sms\"]}", "invalid_field",
         "channels[2]"},
        {"{\"id\":\"a\"," OK_REST ",\"channels\":[[\"web\"]]}", "invalid_field", "channels[0]"},
        {"{\"id\":\"a\"," OK_REST ",\"channels\":[\"web\\u0000x\"]}", "invalid_field",
         "channels[0]"},
        /* status */
        {"{\"id\":\"a\"," OK_REST ",\"status\":\"deleted\"}", "invalid_field", "status"},
        {"{\"id\":\"a\"," OK_REST ",\"status\":0}", "invalid_field", "status"},
        {"{\"id\":\"a\"," OK_REST ",\"status\":\"Active\"}", "invalid_field", "status"},
    };
    world *w = world_new(&fx_options);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *body = J(cases[i].body), *rec = (json_t *)1;
        ev_error err = {0};
        offer_result r = offer_put(w->st, NULL, body, &rec, &err);
        json_decref(body);
        if (r != OFFER_INVALID || strcmp(err.code, cases[i].code) != 0 ||
            strcmp(err.field, cases[i].field) != 0)
            fail_msg("case %zu %s: got %s %s/%s (%s), want %s/%s", i, cases[i].body,
                     offer_result_code(r), err.code ? err.code : "-", err.field, err.message,
                     cases[i].code, cases[i].field);
        assert_null(rec);
        /* The message names the field. */
        if (cases[i].field[0] && !strstr(err.message, cases[i].field) &&
            strcmp(cases[i].code, "invalid_expression") != 0)
            fail_msg("case %zu: message \"%s\" does not name %s", i, err.message, cases[i].field);
    }
    assert_int_equal(live_exprs, 0);

    /* An id of OFFER_ID_MAX bytes is fine, one more is not. */
    for (size_t len = OFFER_ID_MAX; len <= OFFER_ID_MAX + 1; len++) {
        char id[OFFER_ID_MAX + 2];
        memset(id, 'i', len);
        id[len] = '\0';
        json_t *body = J("{" OK_REST "}"), *rec = NULL;
        json_object_set_new(body, "id", json_string(id));
        ev_error err = {0};
        assert_int_equal(offer_put(w->st, NULL, body, &rec, &err),
                         len == OFFER_ID_MAX ? OFFER_OK : OFFER_INVALID);
        json_decref(rec);
        json_decref(body);
    }

    /* Huge strings: just over each cap, and 10 MB. */
    static const struct {
        const char *key;
        size_t cap;
    } caps[] = {{"name", OFFER_NAME_MAX},
                {"description", OFFER_DESCRIPTION_MAX},
                {"eligibility", OFFER_ELIGIBILITY_MAX}};
    for (size_t i = 0; i < 3; i++) {
        size_t sizes[] = {caps[i].cap, caps[i].cap + 1, 10u << 20};
        for (size_t k = 0; k < 3; k++) {
            char *s = malloc(sizes[k] + 1);
            memset(s, 'x', sizes[k]);
            s[sizes[k]] = '\0';
            json_t *body = J("{\"id\":\"a\"," OK_REST "}"), *rec = NULL;
            json_object_set_new(body, caps[i].key, json_string(s));
            ev_error err = {0};
            offer_result r = offer_put(w->st, NULL, body, &rec, &err);
            if (k == 0) {
                assert_int_equal(r, OFFER_OK);
                json_decref(rec);
            } else {
                assert_int_equal(r, OFFER_INVALID);
                assert_string_equal(err.field, caps[i].key);
            }
            json_decref(body);
            free(s);
        }
    }
    assert_int_equal(live_exprs, 0);
    world_free(w);

    /* Without an expression language, an expression is refused; without one, all is well. */
    w = world_new(NULL);
    json_t *body = J("{\"id\":\"a\"," OK_REST ",\"eligibility\":\"vip\"}"), *rec = NULL;
    EXPECT_REFUSAL(offer_put(w->st, NULL, body, &rec, &e_), OFFER_INVALID, "eligibility");
    json_object_set_new(body, "eligibility", json_string(""));
    assert_int_equal(offer_put(w->st, NULL, body, &rec, &(ev_error){0}), OFFER_OK);
    json_decref(rec);
    json_decref(body);
    world_free(w);
}

static void test_patch(void **state) {
    (void)state;
    world *w = world_new(&fx_options);
    put(w, summer, T0);
    ev_error err = {0};
    assert_int_equal(patch(w, "summer",
                           "{\"status\":\"paused\",\"limits\":{\"total\":5},\"ends_at\":\"2024-09-"
                           "01\",\"stats\":{\"redemptions\":99}}",
                           T_JUN15, &err),
                     OFFER_OK);
    assert_get(w, "summer",
               "{\"id\":\"summer\",\"name\":\"Summer sale\",\"description\":null,\"discount\":{"
               "\"type\":\"percent\",\"value\":10},\"code_type\":\"shared\",\"code\":"
               "\"SUMMER24\",\"starts_at\":null,\"ends_at\":\"2024-09-01T00:00:00.000Z\","
               "\"eligibility\":null,\"limits\":{\"per_customer\":1,\"total\":5},\"channels\":"
               "null,\"status\":\"paused\",\"created_at\":\"2024-06-01T00:00:00.000Z\","
               "\"updated_at\":\"2024-06-15T00:00:00.000Z\",\"stats\":{\"redemptions\":0,"
               "\"codes\":0,\"codes_free\":0,\"codes_assigned\":0,\"codes_redeemed\":0}}");
    EXPECT_REFUSAL(validate(w, NULL, "summer24", "p", NULL, T_JUN15, &e_), OFFER_PAUSED, "offer");
    /* null returns a field to its default; merge into nested objects keeps siblings. */
    assert_int_equal(
        patch(w, "summer",
              "{\"status\":null,\"limits\":{\"per_customer\":4},\"name\":null,\"ends_at\":null}",
              T_JUN15, &err),
        OFFER_OK);
    json_t *reply = NULL;
    offer_get(w->st, "summer", &reply, &err);
    assert_json(json_object_get(reply, "limits"), "{\"per_customer\":4,\"total\":5}");
    assert_json(json_object_get(reply, "status"), "\"active\"");
    assert_json(json_object_get(reply, "name"), "null");
    assert_json(json_object_get(reply, "ends_at"), "null");
    json_decref(reply);
    assert_int_equal(patch(w, "summer", "{\"limits\":null}", T_JUN15, &err), OFFER_OK);
    assert_int_equal(stat(w, "summer", "redemptions"), 0);
    offer_get(w->st, "summer", &reply, &err);
    assert_json(json_object_get(reply, "limits"), "{\"per_customer\":1,\"total\":null}");
    json_decref(reply);

    /* Refusals. */
    EXPECT_REFUSAL(patch(w, "nope", "{}", T0, &e_), OFFER_UNKNOWN_OFFER, "id");
    EXPECT_REFUSAL(patch(w, "summer", "[]", T0, &e_), OFFER_INVALID, "");
    EXPECT_REFUSAL(patch(w, "summer", "{\"discount\":{\"value\":-1}}", T0, &e_), OFFER_INVALID,
                   "discount.value");
    EXPECT_REFUSAL(patch(w, "summer", "{\"discount\":null}", T0, &e_), OFFER_INVALID, "discount");
    EXPECT_REFUSAL(patch(w, "summer", "{\"id\":\"winter\"}", T0, &e_), OFFER_INVALID, "id");
    EXPECT_REFUSAL(patch(w, "summer", "{\"discount\":{\"extra\":{\"deep\":1}}}", T0, &e_),
                   OFFER_INVALID, "discount.extra");
    EXPECT_REFUSAL(
        patch(w, "summer", "{\"starts_at\":\"2030-01-01\",\"ends_at\":\"2029-01-01\"}", T0, &e_),
        OFFER_INVALID, "ends_at");
    /* Too deep: refused before any merging. */
    char deep[200] = "{\"a\":";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    ev_error e = {0};
    assert_int_equal(patch(w, "summer", deep, T0, &e), OFFER_INVALID);
    assert_string_equal(e.code, "too_deep");

    /* Two patches prepared against the same state both take effect: the record carries the patch,
     * which is merged at apply time. */
    json_t *p1 = J("{\"status\":\"paused\"}"), *p2 = J("{\"limits\":{\"total\":7}}");
    json_t *r1 = NULL, *r2 = NULL, *out = NULL;
    assert_int_equal(offer_patch(w->st, "summer", p1, &r1, &err), OFFER_OK);
    assert_int_equal(offer_patch(w->st, "summer", p2, &r2, &err), OFFER_OK);
    assert_int_equal(commit(w, r1, T0, &out, &err), OFFER_OK);
    json_decref(out);
    assert_int_equal(commit(w, r2, T0, &out, &err), OFFER_OK);
    assert_json(json_object_get(out, "status"), "\"paused\"");
    assert_json(json_object_get(out, "limits"), "{\"per_customer\":1,\"total\":7}");
    json_decref(out);
    json_decref(p1);
    json_decref(p2);
    world_free(w);
}

static void test_list_cursor(void **state) {
    (void)state;
    world *w = world_new(NULL);
    const char *ids[] = {"delta", "alpha", "echo", "charlie", "bravo"};
    for (int i = 0; i < 5; i++) {
        char body[200];
        snprintf(body, sizeof body,
                 "{\"id\":\"%s\",\"discount\":{\"type\":\"free_shipping\"},\"code_type\":"
                 "\"none\"}",
                 ids[i]);
        put(w, body, T0);
    }
    json_t *reply = NULL;
    ev_error err = {0};
    const char *pages[][3] = {{"alpha", "bravo", NULL}, {"charlie", "delta", NULL}, {"echo"}};
    const char *cursor = NULL;
    char cur[80];
    for (int p = 0; p < 3; p++) {
        assert_int_equal(offer_list(w->st, cursor, 2, &reply, &err), OFFER_OK);
        json_t *offers = json_object_get(reply, "offers");
        size_t n = 0;
        while (n < 2 && pages[p][n])
            n++;
        assert_int_equal(json_array_size(offers), n);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(json_string_value(json_object_get(json_array_get(offers, i), "id")),
                                pages[p][i]);
        json_t *next = json_object_get(reply, "next");
        if (p < 2) {
            snprintf(cur, sizeof cur, "%s", json_string_value(next));
            cursor = cur;
        } else {
            assert_true(json_is_null(next));
        }
        json_decref(reply);
    }
    /* A page that ends exactly at the last offer says so. */
    assert_int_equal(offer_list(w->st, "charlie", 2, &reply, &err), OFFER_OK);
    assert_true(json_is_null(json_object_get(reply, "next")));
    assert_int_equal(json_array_size(json_object_get(reply, "offers")), 2);
    json_decref(reply);
    /* Default page size; past the end; bad input. */
    assert_int_equal(offer_list(w->st, NULL, 0, &reply, &err), OFFER_OK);
    assert_int_equal(json_array_size(json_object_get(reply, "offers")), 5);
    json_decref(reply);
    assert_int_equal(offer_list(w->st, "zulu", 10, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"offers\":[],\"next\":null}");
    json_decref(reply);
    EXPECT_REFUSAL(offer_list(w->st, NULL, 1001, &reply, &e_), OFFER_INVALID, "limit");
    EXPECT_REFUSAL(offer_list(w->st, "a b", 10, &reply, &e_), OFFER_INVALID, "cursor");
    assert_null(reply);
    world_free(w);
}

/* ---- Codes ---- */

static void test_codes_generate(void **state) {
    (void)state;
    world *w = world_new(NULL);
    put(w, unique, T0);
    put(w, summer, T0);
    counter c = {0};
    json_t *reply = NULL;
    ev_error err = {0};
    /* The counter's first 256 bytes are 0..255, drawn from the end: 255..248 are thrown away
     * (>= 8 * 31), 247 % 31 = 30 -> 'Z', 246 -> 'Y', ... 232 % 31 = 15 -> 'H'. */
    assert_int_equal(generate(w, "welcome", 2, "summer", counter_rng, &c, T0, &reply, &err),
                     OFFER_OK);
    assert_json(reply, "{\"offer\":\"welcome\",\"added\":2,\"codes\":[\"SUMMER-ZYXW-VUTS\","
                       "\"SUMMER-RQPN-MKJH\"]}");
    json_decref(reply);
    /* A code already in the state is skipped: put the next draw into another offer first. */
    put(w,
        "{\"id\":\"other\",\"discount\":{\"type\":\"percent\",\"value\":1},\"code_type\":"
        "\"unique\"}",
        T0);
    assert_int_equal(import(w, "other", "[\"G-ZYXW-VUTS\"]", T0, &err), OFFER_OK);
    /* Each call fills a fresh pool, so this one starts from the same bytes: its first draw is
     * taken and the second (239..232) is used. */
    assert_int_equal(generate(w, "welcome", 1, "G", counter_rng, &c, T0, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"offer\":\"welcome\",\"added\":1,\"codes\":[\"G-RQPN-MKJH\"]}");
    json_decref(reply);
    assert_int_equal(stat(w, "welcome", "codes"), 3);
    assert_int_equal(stat(w, "welcome", "codes_free"), 3);

    /* No prefix: XXXX-XXXX. A source that repeats cannot fill a batch of two. */
    assert_int_equal(generate(w, "other", 1, NULL, zero_rng, NULL, T0, &reply, &err), OFFER_OK);
    assert_json(json_object_get(reply, "codes"), "[\"2222-2222\"]");
    json_decref(reply);
    EXPECT_REFUSAL(generate(w, "other", 1, "", zero_rng, NULL, T0, NULL, &e_), OFFER_CODE_TAKEN,
                   "count");

    /* Refusals. */
    EXPECT_REFUSAL(generate(w, "welcome", 0, NULL, NULL, NULL, T0, NULL, &e_), OFFER_INVALID,
                   "count");
    EXPECT_REFUSAL(generate(w, "welcome", 100001, NULL, NULL, NULL, T0, NULL, &e_), OFFER_INVALID,
                   "count");
    EXPECT_REFUSAL(generate(w, "welcome", 1, "ABCDEFGHIJKLMNOPQRSTU", NULL, NULL, T0, NULL, &e_),
                   OFFER_INVALID, "prefix");
    EXPECT_REFUSAL(generate(w, "welcome", 1, "sum mer", NULL, NULL, T0, NULL, &e_), OFFER_INVALID,
                   "prefix");
    EXPECT_REFUSAL(generate(w, "nope", 1, NULL, NULL, NULL, T0, NULL, &e_), OFFER_UNKNOWN_OFFER,
                   "id");
    EXPECT_REFUSAL(generate(w, "summer", 1, NULL, NULL, NULL, T0, NULL, &e_), OFFER_CONFLICT,
                   "code_type");

    /* The real random source: 20,000 codes, all of the expected shape and alphabet. */
    assert_int_equal(generate(w, "welcome", 20000, "x_1", NULL, NULL, T0, &reply, &err), OFFER_OK);
    json_t *codes = json_object_get(reply, "codes");
    assert_int_equal(json_array_size(codes), 20000);
    for (size_t i = 0; i < 20000; i++) {
        const char *s = json_string_value(json_array_get(codes, i));
        assert_int_equal(strlen(s), 13);
        assert_memory_equal(s, "X_1-", 4);
        assert_int_equal(s[8], '-');
        for (int k = 4; k < 13; k++)
            if (k != 8 && !strchr("23456789ABCDEFGHJKMNPQRSTUVWXYZ", s[k]))
                fail_msg("code %s has a look-alike symbol", s);
    }
    json_decref(reply);
    assert_int_equal(stat(w, "welcome", "codes"), 20003);
    world_free(w);
}

static void test_codes_import(void **state) {
    (void)state;
    world *w = world_new(NULL);
    put(w, unique, T0);
    put(w, summer, T0);
    ev_error err = {0};
    assert_int_equal(import(w, "welcome", "[\"abc-1\",\"ABC_2\"]", T0, &err), OFFER_OK);
    assert_int_equal(validate(w, NULL, "ABC-1", "p", NULL, T0, &err), OFFER_OK);
    EXPECT_REFUSAL(import(w, "welcome", "[\"new-1\",\"x\"]", T0, &e_), OFFER_INVALID, "codes[1]");
    EXPECT_REFUSAL(import(w, "welcome", "[\"new-1\",7]", T0, &e_), OFFER_INVALID, "codes[1]");
    EXPECT_REFUSAL(import(w, "welcome", "[\"new-1\",\"new-2\",\"NEW-1\"]", T0, &e_),
                   OFFER_CODE_TAKEN, "codes[2]");
    EXPECT_REFUSAL(import(w, "welcome", "[\"new-1\",\"summer24\"]", T0, &e_), OFFER_CODE_TAKEN,
                   "codes[1]");
    EXPECT_REFUSAL(import(w, "welcome", "[\"abc-1\"]", T0, &e_), OFFER_CODE_TAKEN, "codes[0]");
    EXPECT_REFUSAL(import(w, "welcome", "[]", T0, &e_), OFFER_INVALID, "codes");
    EXPECT_REFUSAL(import(w, "welcome", "{\"a\":1}", T0, &e_), OFFER_INVALID, "codes");
    EXPECT_REFUSAL(import(w, "summer", "[\"new-1\"]", T0, &e_), OFFER_CONFLICT, "code_type");
    assert_int_equal(stat(w, "welcome", "codes"), 2);

    /* Two batches prepared against the same state with a common code: the second to be applied
     * is refused whole, and the first stays intact. */
    json_t *a = J("[\"R-1\",\"R-2\"]"), *b = J("[\"R-3\",\"R-2\",\"R-4\"]");
    json_t *ra = NULL, *rb = NULL, *out = NULL;
    assert_int_equal(offer_codes_import(w->st, "welcome", a, &ra, &err), OFFER_OK);
    assert_int_equal(offer_codes_import(w->st, "welcome", b, &rb, &err), OFFER_OK);
    assert_int_equal(commit(w, ra, T0, &out, &err), OFFER_OK);
    json_decref(out);
    json_t *before = offer_state_json(w->st);
    EXPECT_REFUSAL(commit(w, rb, T0, &out, &e_), OFFER_CODE_TAKEN, "codes");
    json_t *after = offer_state_json(w->st);
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    assert_int_equal(stat(w, "welcome", "codes"), 4);
    assert_int_equal(validate(w, NULL, "R-2", "p", NULL, T0, &err), OFFER_OK);
    EXPECT_REFUSAL(validate(w, NULL, "R-3", "p", NULL, T0, &e_), OFFER_UNKNOWN_CODE, "code");
    /* A batch that repeats a code within itself, written straight to the log, is refused too. */
    json_t *rec = J("{\"op\":\"offer.codes_add\",\"id\":\"welcome\",\"codes\":[\"R-5\",\"R-5\"]}");
    EXPECT_REFUSAL(commit(w, rec, T0, &out, &e_), OFFER_CODE_TAKEN, "codes");
    EXPECT_REFUSAL(validate(w, NULL, "R-5", "p", NULL, T0, &e_), OFFER_UNKNOWN_CODE, "code");
    json_decref(a);
    json_decref(b);
    world_free(w);
}

static void test_codes_list(void **state) {
    (void)state;
    world *w = world_new(NULL);
    put(w, unique, T0);
    ev_error err = {0};
    assert_int_equal(import(w, "welcome", "[\"C-1\",\"C-2\",\"C-3\"]", T0, &err), OFFER_OK);
    free(assign_code(w, "welcome", "ann", NULL, T0));
    assert_int_equal(redeem(w, NULL, "C-3", "bob", "o1", NULL, T0, NULL, &err), OFFER_OK);
    json_t *reply = NULL;
    assert_int_equal(offer_codes_list(w->st, "welcome", NULL, 2, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"codes\":[{\"code\":\"C-1\",\"state\":\"assigned\",\"profile\":\"ann\"}"
                       ",{\"code\":\"C-2\",\"state\":\"free\",\"profile\":null}],\"next\":\"2\"}");
    json_decref(reply);
    assert_int_equal(offer_codes_list(w->st, "welcome", "2", 2, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"codes\":[{\"code\":\"C-3\",\"state\":\"redeemed\",\"profile\":\"bob\"}"
                       "],\"next\":null}");
    json_decref(reply);
    assert_int_equal(offer_codes_list(w->st, "welcome", "3", 2, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"codes\":[],\"next\":null}");
    json_decref(reply);
    EXPECT_REFUSAL(offer_codes_list(w->st, "welcome", "4", 2, &reply, &e_), OFFER_INVALID,
                   "cursor");
    EXPECT_REFUSAL(offer_codes_list(w->st, "welcome", "-1", 2, &reply, &e_), OFFER_INVALID,
                   "cursor");
    EXPECT_REFUSAL(offer_codes_list(w->st, "welcome", "99999999999", 2, &reply, &e_), OFFER_INVALID,
                   "cursor");
    EXPECT_REFUSAL(offer_codes_list(w->st, "nope", NULL, 2, &reply, &e_), OFFER_UNKNOWN_OFFER,
                   "id");
    world_free(w);
}

/* ---- Assign ---- */

static void test_assign_unique(void **state) {
    (void)state;
    world *w = world_new(NULL);
    put(w, unique, T0);
    ev_error err = {0};
    assert_int_equal(import(w, "welcome", "[\"U-1\",\"U-2\",\"U-3\"]", T0, &err), OFFER_OK);
    json_t *reply = NULL, *rec = NULL;
    /* A new customer needs a record; applying it hands out the first free code. */
    assert_int_equal(offer_assign(w->st, "welcome", "ann", NULL, T0, &rec, &reply, &err), OFFER_OK);
    assert_null(reply);
    assert_json(rec, "{\"op\":\"offer.assign\",\"id\":\"welcome\",\"profile\":\"ann\"}");
    assert_int_equal(commit(w, rec, T0, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"offer\":\"welcome\",\"code\":\"U-1\",\"code_type\":\"unique\","
                       "\"discount\":{\"type\":\"amount\",\"value\":5.25,\"currency\":\"EUR\"},"
                       "\"ends_at\":null,\"assigned_at\":\"2024-06-01T00:00:00.000Z\"}");
    json_decref(reply);
    /* Again, later: the same code and time, with no record. */
    assert_int_equal(offer_assign(w->st, "welcome", "ann", NULL, T_JUN15, &rec, &reply, &err),
                     OFFER_OK);
    assert_null(rec);
    assert_json(json_object_get(reply, "code"), "\"U-1\"");
    assert_json(json_object_get(reply, "assigned_at"), "\"2024-06-01T00:00:00.000Z\"");
    json_decref(reply);
    /* A code redeemed directly (never assigned) is skipped by the cursor. */
    assert_int_equal(redeem(w, NULL, "u-2", "zed", "o-z", NULL, T0, NULL, &err), OFFER_OK);
    char *c = assign_code(w, "welcome", "bob", NULL, T0);
    assert_string_equal(c, "U-3");
    free(c);
    EXPECT_REFUSAL(assign(w, "welcome", "cat", NULL, T0, NULL, &e_), OFFER_NO_CODES_LEFT, "offer");
    /* The same record applied twice assigns once. */
    rec = J("{\"op\":\"offer.assign\",\"id\":\"welcome\",\"profile\":\"bob\"}");
    assert_int_equal(commit(w, rec, T0, &reply, &err), OFFER_OK);
    assert_json(json_object_get(reply, "code"), "\"U-3\"");
    json_decref(reply);

    /* Two customers prepared against one free code: the first applied wins, the second is
     * refused at apply time. */
    assert_int_equal(import(w, "welcome", "[\"U-4\"]", T0, &err), OFFER_OK);
    json_t *r1 = NULL, *r2 = NULL;
    assert_int_equal(offer_assign(w->st, "welcome", "dan", NULL, T0, &r1, &reply, &err), OFFER_OK);
    assert_int_equal(offer_assign(w->st, "welcome", "eve", NULL, T0, &r2, &reply, &err), OFFER_OK);
    assert_int_equal(commit(w, r1, T0, &reply, &err), OFFER_OK);
    assert_json(json_object_get(reply, "code"), "\"U-4\"");
    json_decref(reply);
    EXPECT_REFUSAL(commit(w, r2, T0, &reply, &e_), OFFER_NO_CODES_LEFT, "offer");
    assert_int_equal(stat(w, "welcome", "codes_assigned"), 3);
    assert_int_equal(stat(w, "welcome", "codes_redeemed"), 1);
    assert_int_equal(stat(w, "welcome", "codes_free"), 0);
    world_free(w);
}

static void test_assign_shared_and_none(void **state) {
    (void)state;
    world *w = world_new(NULL);
    put(w, summer, T0);
    put(w,
        "{\"id\":\"auto\",\"discount\":{\"type\":\"free_shipping\"},\"code_type\":\"none\","
        "\"ends_at\":\"2024-09-01\"}",
        T0);
    json_t *reply = NULL, *rec = NULL;
    ev_error err = {0};
    assert_int_equal(offer_assign(w->st, "summer", "ann", NULL, T0, &rec, &reply, &err), OFFER_OK);
    assert_null(rec);
    assert_json(reply, "{\"offer\":\"summer\",\"code\":\"SUMMER24\",\"code_type\":\"shared\","
                       "\"discount\":{\"type\":\"percent\",\"value\":10},\"ends_at\":null,"
                       "\"assigned_at\":null}");
    json_decref(reply);
    assert_int_equal(offer_assign(w->st, "auto", "ann", NULL, T0, &rec, &reply, &err), OFFER_OK);
    assert_null(rec);
    assert_json(reply, "{\"offer\":\"auto\",\"code\":null,\"code_type\":\"none\",\"discount\":{"
                       "\"type\":\"free_shipping\"},\"ends_at\":\"2024-09-01T00:00:00.000Z\","
                       "\"assigned_at\":null}");
    json_decref(reply);
    /* Nothing was stored about ann. */
    assert_int_equal(offer_profile_json(w->st, "ann", &reply, &err), OFFER_OK);
    assert_json(reply, "{\"assignments\":[],\"redemptions\":[]}");
    json_decref(reply);
    world_free(w);
}

static void test_assign_refusals(void **state) {
    (void)state;
    world *w = world_new(&fx_options);
    put(w,
        "{\"id\":\"w\",\"discount\":{\"type\":\"percent\",\"value\":10},\"code_type\":\"unique\","
        "\"starts_at\":\"2024-06-15\",\"ends_at\":\"2024-09-01\",\"eligibility\":\"vip\","
        "\"limits\":{\"total\":2}}",
        T0);
    ev_error err = {0};
    assert_int_equal(import(w, "w", "[\"W-1\",\"W-2\",\"W-3\",\"W-4\"]", T0, &err), OFFER_OK);
    EXPECT_REFUSAL(assign(w, "nope", "ann", "vip", T_JUN15, NULL, &e_), OFFER_UNKNOWN_OFFER,
                   "offer");
    EXPECT_REFUSAL(assign(w, NULL, "ann", "vip", T_JUN15, NULL, &e_), OFFER_UNKNOWN_OFFER, "offer");
    EXPECT_REFUSAL(assign(w, "w", "", "vip", T_JUN15, NULL, &e_), OFFER_INVALID, "profile_id");
    EXPECT_REFUSAL(assign(w, "w", NULL, "vip", T_JUN15, NULL, &e_), OFFER_INVALID, "profile_id");
    EXPECT_REFUSAL(assign(w, "w", "bad\xff", "vip", T_JUN15, NULL, &e_), OFFER_INVALID,
                   "profile_id");
    EXPECT_REFUSAL(assign(w, "w", "ann", "vip", T_JUN15 - 1, NULL, &e_), OFFER_NOT_STARTED,
                   "offer");
    EXPECT_REFUSAL(assign(w, "w", "ann", "vip", T_SEP1, NULL, &e_), OFFER_EXPIRED, "offer");
    EXPECT_REFUSAL(assign(w, "w", "ann", "new", T_JUN15, NULL, &e_), OFFER_NOT_ELIGIBLE,
                   "profile_id");
    EXPECT_REFUSAL(assign(w, "w", "ann", NULL, T_JUN15, NULL, &e_), OFFER_NOT_ELIGIBLE,
                   "profile_id");
    /* The window is [starts_at, ends_at). */
    char *c = assign_code(w, "w", "ann", "vip", T_SEP1 - 1);
    assert_string_equal(c, "W-1");
    free(c);
    /* Eligibility only at assign: ann's record needed no context to apply. Now the limits. */
    assert_int_equal(redeem(w, NULL, "W-1", "ann", "o1", "vip", T_JUN15, NULL, &err), OFFER_OK);
    EXPECT_REFUSAL(assign(w, "w", "ann", "vip", T_JUN15, NULL, &e_), OFFER_CUSTOMER_LIMIT_REACHED,
                   "profile_id");
    assert_int_equal(redeem(w, NULL, "W-2", "bob", "o2", "vip", T_JUN15, NULL, &err), OFFER_OK);
    EXPECT_REFUSAL(assign(w, "w", "cat", "vip", T_JUN15, NULL, &e_), OFFER_LIMIT_REACHED, "offer");
    /* Paused and archived come before the window. */
    assert_int_equal(patch(w, "w", "{\"status\":\"paused\"}", T0, &err), OFFER_OK);
    EXPECT_REFUSAL(assign(w, "w", "cat", "vip", T0, NULL, &e_), OFFER_PAUSED, "offer");
    assert_int_equal(patch(w, "w", "{\"status\":\"archived\"}", T0, &err), OFFER_OK);
    EXPECT_REFUSAL(assign(w, "w", "cat", "vip", T0, NULL, &e_), OFFER_ARCHIVED, "offer");
    /* no_codes_left comes last, after the limits. */
    put(w,
        "{\"id\":\"empty\",\"discount\":{\"type\":\"percent\",\"value\":10},\"code_type\":"
        "\"unique\",\"eligibility\":\"error\"}",
        T0);
    EXPECT_REFUSAL(assign(w, "empty", "cat", "vip", T0, NULL, &e_), OFFER_NOT_ELIGIBLE,
                   "profile_id");
    assert_int_equal(patch(w, "empty", "{\"eligibility\":null}", T0, &err), OFFER_OK);
    EXPECT_REFUSAL(assign(w, "empty", "cat", NULL, T0, NULL, &e_), OFFER_NO_CODES_LEFT, "offer");
    world_free(w);
}

/* ---- Validate and redeem ---- */

static void test_validate(void **state) {
    (void)state;
    world *w = world_new(&fx_options);
    put(w,
        "{\"id\":\"summer\",\"name\":\"Summer\",\"description\":\"10% off\",\"discount\":{"
        "\"type\":\"percent\",\"value\":10},\"code_type\":\"shared\",\"code\":\"SUMMER24\","
        "\"ends_at\":\"2024-09-01\"}",
        T0);
    put(w, unique, T0);
    put(w, "{\"id\":\"auto\",\"discount\":{\"type\":\"free_shipping\"},\"code_type\":\"none\"}",
        T0);
    ev_error err = {0};
    assert_int_equal(import(w, "welcome", "[\"V-1\",\"V-2\"]", T0, &err), OFFER_OK);
    json_t *reply = NULL;
    /* Blanks around, any case. */
    assert_int_equal(offer_validate(w->st, NULL, " \tsummer24\r\n", "ann", NULL, T0, &reply, &err),
                     OFFER_OK);
    assert_json(reply, "{\"ok\":true,\"offer\":{\"id\":\"summer\",\"name\":\"Summer\","
                       "\"description\":\"10% off\"},\"code\":\"SUMMER24\",\"discount\":{\"type\""
                       ":\"percent\",\"value\":10},\"ends_at\":\"2024-09-01T00:00:00.000Z\"}");
    json_decref(reply);
    /* An automatic offer by its id. */
    assert_int_equal(offer_validate(w->st, "auto", NULL, "ann", NULL, T0, &reply, &err), OFFER_OK);
    assert_json(json_object_get(reply, "code"), "null");
    json_decref(reply);
    /* A code with the offer it must belong to. */
    assert_int_equal(validate(w, "summer", "SUMMER24", "ann", NULL, T0, &err), OFFER_OK);
    EXPECT_REFUSAL(validate(w, "welcome", "SUMMER24", "ann", NULL, T0, &e_), OFFER_UNKNOWN_CODE,
                   "code");
    EXPECT_REFUSAL(validate(w, NULL, "WINTER", "ann", NULL, T0, &e_), OFFER_UNKNOWN_CODE, "code");
    EXPECT_REFUSAL(validate(w, NULL, "S", "ann", NULL, T0, &e_), OFFER_UNKNOWN_CODE, "code");
    EXPECT_REFUSAL(validate(w, NULL, "SUMMER 24", "ann", NULL, T0, &e_), OFFER_UNKNOWN_CODE,
                   "code");
    EXPECT_REFUSAL(validate(w, NULL, "", "ann", NULL, T0, &e_), OFFER_UNKNOWN_CODE, "code");
    EXPECT_REFUSAL(validate(w, "nope", NULL, "ann", NULL, T0, &e_), OFFER_UNKNOWN_OFFER, "offer");
    EXPECT_REFUSAL(validate(w, "summer", NULL, "ann", NULL, T0, &e_), OFFER_INVALID, "code");
    EXPECT_REFUSAL(validate(w, NULL, NULL, "ann", NULL, T0, &e_), OFFER_INVALID, "code");
    EXPECT_REFUSAL(validate(w, NULL, "SUMMER24", "", NULL, T0, &e_), OFFER_INVALID, "profile_id");
    /* The window. */
    EXPECT_REFUSAL(validate(w, NULL, "SUMMER24", "ann", NULL, T_SEP1, &e_), OFFER_EXPIRED, "offer");
    assert_int_equal(patch(w, "summer", "{\"starts_at\":\"2024-06-15\"}", T0, &err), OFFER_OK);
    EXPECT_REFUSAL(validate(w, NULL, "SUMMER24", "ann", NULL, T0, &e_), OFFER_NOT_STARTED, "offer");
    /* Unique codes: assigned to another, already used. */
    char *c = assign_code(w, "welcome", "ann", NULL, T0);
    assert_string_equal(c, "V-1");
    assert_int_equal(validate(w, NULL, "v-1", "ann", NULL, T0, &err), OFFER_OK);
    EXPECT_REFUSAL(validate(w, NULL, "v-1", "bob", NULL, T0, &e_), OFFER_ASSIGNED_TO_OTHER, "code");
    assert_int_equal(validate(w, NULL, "v-2", "bob", NULL, T0, &err), OFFER_OK);
    assert_int_equal(redeem(w, NULL, c, "ann", "o1", NULL, T0, NULL, &err), OFFER_OK);
    EXPECT_REFUSAL(validate(w, NULL, "v-1", "ann", NULL, T0, &e_), OFFER_ALREADY_REDEEMED, "code");
    EXPECT_REFUSAL(validate(w, NULL, "v-1", "bob", NULL, T0, &e_), OFFER_ALREADY_REDEEMED, "code");
    free(c);
    /* Eligibility, then the limits. */
    assert_int_equal(
        patch(w, "welcome", "{\"eligibility\":\"vip\",\"limits\":{\"total\":2}}", T0, &err),
        OFFER_OK);
    EXPECT_REFUSAL(validate(w, NULL, "v-2", "bob", "new", T0, &e_), OFFER_NOT_ELIGIBLE,
                   "profile_id");
    assert_int_equal(validate(w, NULL, "v-2", "bob", "vip", T0, &err), OFFER_OK);
    assert_int_equal(import(w, "welcome", "[\"V-3\"]", T0, &err), OFFER_OK);
    EXPECT_REFUSAL(validate(w, NULL, "v-3", "ann", "vip", T0, &e_), OFFER_CUSTOMER_LIMIT_REACHED,
                   "profile_id");
    assert_int_equal(redeem(w, NULL, "v-2", "bob", "o2", "vip", T0, NULL, &err), OFFER_OK);
    EXPECT_REFUSAL(validate(w, NULL, "v-3", "cat", "vip", T0, &e_), OFFER_LIMIT_REACHED, "offer");
    /* The order of checks: code state before eligibility before limits. */
    EXPECT_REFUSAL(validate(w, NULL, "v-2", "cat", "new", T0, &e_), OFFER_ALREADY_REDEEMED, "code");
    EXPECT_REFUSAL(validate(w, NULL, "v-3", "cat", "new", T0, &e_), OFFER_NOT_ELIGIBLE,
                   "profile_id");
    /* Status before the window, archived before paused. */
    assert_int_equal(patch(w, "summer", "{\"status\":\"paused\"}", T0, &err), OFFER_OK);
    EXPECT_REFUSAL(validate(w, NULL, "SUMMER24", "ann", NULL, T_SEP1, &e_), OFFER_PAUSED, "offer");
    assert_int_equal(patch(w, "summer", "{\"status\":\"archived\"}", T0, &err), OFFER_OK);
    EXPECT_REFUSAL(validate(w, NULL, "SUMMER24", "ann", NULL, T_SEP1, &e_), OFFER_ARCHIVED,
                   "offer");
    world_free(w);
}

/* What people read: a few refusals word for word. */
static void test_messages(void **state) {
    (void)state;
    world *w = world_new(NULL);
    put(w,
        "{\"id\":\"summer\",\"discount\":{\"type\":\"percent\",\"value\":10},\"code_type\":"
        "\"shared\",\"code\":\"SUMMER24\",\"starts_at\":\"2024-06-15\",\"ends_at\":\"2024-09-"
        "01\",\"limits\":{\"per_customer\":2,\"total\":3}}",
        T0);
    ev_error e = {0};
    assert_int_equal(validate(w, NULL, "summer24", "ann", NULL, T_SEP1, &e), OFFER_EXPIRED);
    assert_string_equal(e.message, "offer summer ended at 2024-09-01T00:00:00.000Z");
    assert_int_equal(validate(w, NULL, "summer24", "ann", NULL, T0, &e), OFFER_NOT_STARTED);
    assert_string_equal(e.message, "offer summer starts at 2024-06-15T00:00:00.000Z");
    assert_int_equal(redeem(w, NULL, "summer24", "ann", "o1", NULL, T_JUN15, NULL, &e), OFFER_OK);
    assert_int_equal(redeem(w, NULL, "summer24", "ann", "o2", NULL, T_JUN15, NULL, &e), OFFER_OK);
    assert_int_equal(validate(w, NULL, "summer24", "ann", NULL, T_JUN15, &e),
                     OFFER_CUSTOMER_LIMIT_REACHED);
    assert_string_equal(e.message, "the customer has used offer summer 2 times, the most allowed");
    assert_int_equal(redeem(w, NULL, "summer24", "bob", "o3", NULL, T_JUN15, NULL, &e), OFFER_OK);
    assert_int_equal(validate(w, NULL, "summer24", "cat", NULL, T_JUN15, &e), OFFER_LIMIT_REACHED);
    assert_string_equal(e.message, "offer summer reached its limit of 3 redemptions");
    json_t *body = J("{\"id\":\"x\",\"discount\":{\"type\":\"percent\",\"value\":1},"
                     "\"code_type\":\"shared\",\"code\":\"summer24\"}"),
           *rec = NULL;
    assert_int_equal(offer_put(w->st, NULL, body, &rec, &e), OFFER_CODE_TAKEN);
    assert_string_equal(e.message, "code SUMMER24 is already used by offer summer");
    json_decref(body);
    body = J("{\"id\":\"x\",\"discount\":{\"type\":\"percent\",\"value\":1},\"code_type\":"
             "\"sharde\"}");
    assert_int_equal(offer_put(w->st, NULL, body, &rec, &e), OFFER_INVALID);
    assert_string_equal(e.message, "code_type must be \"shared\", \"unique\" or \"none\"");
    json_decref(body);
    world_free(w);
}

static void test_redeem_idempotent(void **state) {
    (void)state;
    world *w = world_new(NULL);
    put(w, summer, T0);
    put(w, unique, T0);
    ev_error err = {0};
    json_t *reply = NULL, *rec = NULL;
    assert_int_equal(
        offer_redeem(w->st, NULL, "summer24", "ann", "order-1", NULL, T0, &rec, &reply, &err),
        OFFER_OK);
    assert_json(rec, "{\"op\":\"offer.redeem\",\"offer\":\"summer\",\"code\":\"SUMMER24\","
                     "\"profile\":\"ann\",\"order\":\"order-1\"}");
    /* Apply the same record twice: one redemption, the same reply. */
    json_t *copy = json_deep_copy(rec);
    assert_int_equal(commit(w, rec, T0, &reply, &err), OFFER_OK);
    const char *want =
        "{\"offer\":\"summer\",\"code\":\"SUMMER24\",\"profile\":\"ann\",\"order\":\"order-1\","
        "\"discount\":{\"type\":\"percent\",\"value\":10},\"redeemed_at\":\"2024-06-01T00:00:"
        "00.000Z\"}";
    assert_json(reply, want);
    json_decref(reply);
    assert_int_equal(commit(w, copy, T_JUN15, &reply, &err), OFFER_OK);
    assert_json(reply, want);
    json_decref(reply);
    assert_int_equal(stat(w, "summer", "redemptions"), 1);
    /* Preparing again for the same order answers at once, even after the offer changed and
     * expired: the discount is the one redeemed. */
    assert_int_equal(
        patch(w, "summer", "{\"discount\":{\"value\":20},\"ends_at\":\"2024-06-02\"}", T0, &err),
        OFFER_OK);
    assert_int_equal(offer_redeem(w->st, "summer", "SUMMER24", "ann", "order-1", NULL, T_JUN15,
                                  &rec, &reply, &err),
                     OFFER_OK);
    assert_null(rec);
    assert_json(reply, want);
    json_decref(reply);
    /* The same order may redeem another offer; a second code of the same offer is the first
     * result. */
    assert_int_equal(import(w, "welcome", "[\"K-1\",\"K-2\"]", T0, &err), OFFER_OK);
    assert_int_equal(redeem(w, NULL, "K-1", "ann", "order-1", NULL, T0, &reply, &err), OFFER_OK);
    assert_json(json_object_get(reply, "code"), "\"K-1\"");
    json_decref(reply);
    assert_int_equal(redeem(w, NULL, "K-2", "ann", "order-1", NULL, T0, &reply, &err), OFFER_OK);
    assert_json(json_object_get(reply, "code"), "\"K-1\"");
    json_decref(reply);
    assert_int_equal(stat(w, "welcome", "codes_redeemed"), 1);
    /* A refused attempt is not remembered: after the limit is raised, a retry succeeds. */
    assert_int_equal(redeem(w, NULL, "K-2", "ann", "order-2", NULL, T0, NULL, &err),
                     OFFER_CUSTOMER_LIMIT_REACHED);
    assert_int_equal(patch(w, "welcome", "{\"limits\":{\"per_customer\":2}}", T0, &err), OFFER_OK);
    assert_int_equal(redeem(w, NULL, "K-2", "ann", "order-2", NULL, T0, NULL, &err), OFFER_OK);
    /* Bad ids. */
    EXPECT_REFUSAL(redeem(w, NULL, "K-2", "ann", "", NULL, T0, NULL, &e_), OFFER_INVALID,
                   "order_id");
    char longid[300];
    memset(longid, 'o', 256);
    longid[256] = '\0';
    EXPECT_REFUSAL(redeem(w, NULL, "K-2", "ann", longid, NULL, T0, NULL, &e_), OFFER_INVALID,
                   "order_id");
    world_free(w);
}

static void test_limits_exact(void **state) {
    (void)state;
    world *w = world_new(NULL);
    put(w,
        "{\"id\":\"hundred\",\"discount\":{\"type\":\"percent\",\"value\":50},\"code_type\":"
        "\"shared\",\"code\":\"HALF\",\"limits\":{\"total\":100}}",
        T0);
    /* 1,000 customers prepare against the same state (all pass), then the log orders them. */
    json_t *recs[1000];
    ev_error err = {0};
    for (int i = 0; i < 1000; i++) {
        char pid[16], order[16];
        snprintf(pid, sizeof pid, "p%d", i);
        snprintf(order, sizeof order, "o%d", i);
        json_t *reply = NULL;
        recs[i] = NULL;
        assert_int_equal(
            offer_redeem(w->st, NULL, "HALF", pid, order, NULL, T0, &recs[i], &reply, &err),
            OFFER_OK);
        assert_non_null(recs[i]);
    }
    int ok = 0, refused = 0;
    for (int i = 0; i < 1000; i++) {
        json_t *reply = NULL;
        ev_error e = {0};
        offer_result r = commit(w, recs[i], T0, &reply, &e);
        if (r == OFFER_OK) {
            ok++;
            if (i >= 100) fail_msg("redemption %d succeeded past the limit", i);
        } else {
            assert_int_equal(r, OFFER_LIMIT_REACHED);
            refused++;
        }
        json_decref(reply);
    }
    assert_int_equal(ok, 100);
    assert_int_equal(refused, 900);
    assert_int_equal(stat(w, "hundred", "redemptions"), 100);

    /* Per customer: one customer, limit 3, ten orders prepared at once. */
    put(w,
        "{\"id\":\"three\",\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":"
        "\"shared\",\"code\":\"THREE\",\"limits\":{\"per_customer\":3}}",
        T0);
    for (int i = 0; i < 10; i++) {
        char order[16];
        snprintf(order, sizeof order, "x%d", i);
        json_t *reply = NULL;
        recs[i] = NULL;
        assert_int_equal(
            offer_redeem(w->st, NULL, "THREE", "ann", order, NULL, T0, &recs[i], &reply, &err),
            OFFER_OK);
    }
    ok = 0;
    for (int i = 0; i < 10; i++) {
        json_t *reply = NULL;
        ev_error e = {0};
        offer_result r = commit(w, recs[i], T0, &reply, &e);
        if (r == OFFER_OK)
            ok++;
        else
            assert_int_equal(r, OFFER_CUSTOMER_LIMIT_REACHED);
        json_decref(reply);
    }
    assert_int_equal(ok, 3);
    assert_int_equal(stat(w, "three", "redemptions"), 3);
    /* Another customer is not affected. */
    assert_int_equal(redeem(w, NULL, "THREE", "bob", "y1", NULL, T0, NULL, &err), OFFER_OK);

    /* Unique codes: two customers prepared against the same free code; the second apply finds it
     * used. */
    put(w, unique, T0);
    assert_int_equal(import(w, "welcome", "[\"Q-1\"]", T0, &err), OFFER_OK);
    json_t *ra = NULL, *rb = NULL, *reply = NULL;
    assert_int_equal(offer_redeem(w->st, NULL, "Q-1", "ann", "q1", NULL, T0, &ra, &reply, &err),
                     OFFER_OK);
    assert_int_equal(offer_redeem(w->st, NULL, "Q-1", "bob", "q2", NULL, T0, &rb, &reply, &err),
                     OFFER_OK);
    assert_int_equal(commit(w, ra, T0, &reply, &err), OFFER_OK);
    json_decref(reply);
    EXPECT_REFUSAL(commit(w, rb, T0, &reply, &e_), OFFER_ALREADY_REDEEMED, "code");
    world_free(w);
}

static void test_unredeem(void **state) {
    (void)state;
    world *w = world_new(NULL);
    put(w,
        "{\"id\":\"two\",\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":\"shared\","
        "\"code\":\"TWO\",\"limits\":{\"total\":2}}",
        T0);
    put(w, unique, T0);
    ev_error err = {0};
    assert_int_equal(redeem(w, NULL, "TWO", "ann", "o1", NULL, T0, NULL, &err), OFFER_OK);
    assert_int_equal(redeem(w, NULL, "TWO", "bob", "o2", NULL, T0, NULL, &err), OFFER_OK);
    EXPECT_REFUSAL(redeem(w, NULL, "TWO", "cat", "o3", NULL, T0, NULL, &e_), OFFER_LIMIT_REACHED,
                   "offer");
    /* Refunding o1 releases both ann's count and the total. */
    json_t *reply = NULL;
    assert_int_equal(unredeem(w, "o1", T0, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"order\":\"o1\",\"released\":1}");
    json_decref(reply);
    assert_int_equal(stat(w, "two", "redemptions"), 1);
    assert_int_equal(redeem(w, NULL, "TWO", "cat", "o3", NULL, T0, NULL, &err), OFFER_OK);
    assert_int_equal(unredeem(w, "o3", T0, NULL, &err), OFFER_OK);
    assert_int_equal(redeem(w, NULL, "TWO", "ann", "o4", NULL, T0, NULL, &err), OFFER_OK);
    /* Unknown and repeated: released 0 and no record. */
    size_t logged = w->n;
    assert_int_equal(unredeem(w, "o1", T0, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"order\":\"o1\",\"released\":0}");
    json_decref(reply);
    assert_int_equal(w->n, logged);
    EXPECT_REFUSAL(unredeem(w, "", T0, NULL, &e_), OFFER_INVALID, "order_id");

    /* A unique code goes back to its holder: usable by them, not by others. One order that
     * redeemed two offers releases both. */
    assert_int_equal(import(w, "welcome", "[\"Z-1\",\"Z-2\"]", T0, &err), OFFER_OK);
    assert_int_equal(redeem(w, NULL, "Z-1", "dan", "o9", NULL, T0, NULL, &err), OFFER_OK);
    assert_int_equal(unredeem(w, "o4", T0, NULL, &err), OFFER_OK);
    assert_int_equal(redeem(w, NULL, "TWO", "dan", "o9", NULL, T0, NULL, &err), OFFER_OK);
    assert_int_equal(unredeem(w, "o9", T0, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"order\":\"o9\",\"released\":2}");
    json_decref(reply);
    EXPECT_REFUSAL(validate(w, NULL, "Z-1", "eve", NULL, T0, &e_), OFFER_ASSIGNED_TO_OTHER, "code");
    assert_int_equal(validate(w, NULL, "Z-1", "dan", NULL, T0, &err), OFFER_OK);
    /* Assign gives dan that code back rather than a new one. */
    char *c = assign_code(w, "welcome", "dan", NULL, T0);
    assert_string_equal(c, "Z-1");
    free(c);
    assert_int_equal(stat(w, "welcome", "codes_assigned"), 1);
    assert_int_equal(stat(w, "welcome", "codes_free"), 1);
    assert_int_equal(stat(w, "welcome", "redemptions"), 0);
    assert_int_equal(offer_profile_json(w->st, "dan", &reply, &err), OFFER_OK);
    assert_json(reply, "{\"assignments\":[{\"offer\":\"welcome\",\"code\":\"Z-1\",\"assigned_"
                       "at\":\"2024-06-01T00:00:00.000Z\"}],\"redemptions\":[]}");
    json_decref(reply);
    /* The order can redeem again afterwards. */
    assert_int_equal(redeem(w, NULL, "Z-1", "dan", "o9", NULL, T_JUN15, &reply, &err), OFFER_OK);
    assert_json(json_object_get(reply, "redeemed_at"), "\"2024-06-15T00:00:00.000Z\"");
    json_decref(reply);
    world_free(w);
}

static void test_forget_profile(void **state) {
    (void)state;
    world *w = world_new(NULL);
    put(w, summer, T0);
    put(w, unique, T0);
    ev_error err = {0};
    assert_int_equal(import(w, "welcome", "[\"F-1\",\"F-2\",\"F-3\",\"F-4\"]", T0, &err), OFFER_OK);
    free(assign_code(w, "welcome", "ann", NULL, T0)); /* F-1, then redeemed */
    assert_int_equal(redeem(w, NULL, "F-1", "ann", "a1", NULL, T0, NULL, &err), OFFER_OK);
    assert_int_equal(patch(w, "welcome", "{\"limits\":{\"per_customer\":2}}", T0, &err), OFFER_OK);
    free(assign_code(w, "welcome", "ann", NULL, T0)); /* F-2, kept */
    assert_int_equal(redeem(w, NULL, "summer24", "ann", "a2", NULL, T0, NULL, &err), OFFER_OK);
    free(assign_code(w, "welcome", "bob", NULL, T0)); /* F-3 */
    json_t *reply = NULL;
    assert_int_equal(offer_profile_json(w->st, "ann", &reply, &err), OFFER_OK);
    assert_json(reply,
                "{\"assignments\":[{\"offer\":\"welcome\",\"code\":\"F-2\",\"assigned_at\":\"2024-"
                "06-01T00:00:00.000Z\"}],\"redemptions\":[{\"offer\":\"welcome\",\"code\":\"F-1\","
                "\"order\":\"a1\",\"redeemed_at\":\"2024-06-01T00:00:00.000Z\"},{\"offer\":"
                "\"summer\",\"code\":\"SUMMER24\",\"order\":\"a2\",\"redeemed_at\":\"2024-06-01T00"
                ":00:00.000Z\"}]}");
    json_decref(reply);

    json_t *rec = NULL;
    assert_int_equal(offer_forget_profile(w->st, "ann", &rec, &reply, &err), OFFER_OK);
    assert_json(rec, "{\"op\":\"offer.forget\",\"profile\":\"ann\"}");
    assert_int_equal(commit(w, rec, T0, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"profile\":\"ann\",\"assignments\":1,\"redemptions\":2}");
    json_decref(reply);
    /* Nothing links to ann any more; the counts stay. */
    assert_int_equal(offer_profile_json(w->st, "ann", &reply, &err), OFFER_OK);
    assert_json(reply, "{\"assignments\":[],\"redemptions\":[]}");
    json_decref(reply);
    json_t *dump = offer_state_json(w->st);
    char *text = to_text(dump);
    assert_null(strstr(text, "\"ann\""));
    free(text);
    json_decref(dump);
    assert_int_equal(stat(w, "welcome", "redemptions"), 1);
    assert_int_equal(stat(w, "summer", "redemptions"), 1);
    assert_int_equal(stat(w, "welcome", "codes_assigned"), 2);
    assert_int_equal(offer_codes_list(w->st, "welcome", NULL, 2, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"codes\":[{\"code\":\"F-1\",\"state\":\"redeemed\",\"profile\":null},"
                       "{\"code\":\"F-2\",\"state\":\"assigned\",\"profile\":null}],\"next\":"
                       "\"2\"}");
    json_decref(reply);
    /* The orphaned F-2 is never handed to anyone else... */
    char *c = assign_code(w, "welcome", "cat", NULL, T0);
    assert_string_equal(c, "F-4");
    free(c);
    /* ...but whoever holds it may use it. */
    assert_int_equal(validate(w, NULL, "F-2", "dan", NULL, T0, &err), OFFER_OK);
    /* A refund after the erasure still releases the total, and the code goes to nobody. */
    assert_int_equal(unredeem(w, "a1", T0, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"order\":\"a1\",\"released\":1}");
    json_decref(reply);
    assert_int_equal(stat(w, "welcome", "redemptions"), 0);
    assert_int_equal(offer_codes_list(w->st, "welcome", NULL, 1, &reply, &err), OFFER_OK);
    assert_json(json_object_get(reply, "codes"),
                "[{\"code\":\"F-1\",\"state\":\"assigned\",\"profile\":null}]");
    json_decref(reply);
    /* The same id starts afresh. */
    assert_int_equal(redeem(w, NULL, "summer24", "ann", "a3", NULL, T0, NULL, &err), OFFER_OK);
    /* Unknown profiles: no record. */
    size_t logged = w->n;
    assert_int_equal(offer_forget_profile(w->st, "nobody", &rec, &reply, &err), OFFER_OK);
    assert_null(rec);
    assert_json(reply, "{\"profile\":\"nobody\",\"assignments\":0,\"redemptions\":0}");
    json_decref(reply);
    assert_int_equal(w->n, logged);
    EXPECT_REFUSAL(offer_forget_profile(w->st, "", &rec, &reply, &e_), OFFER_INVALID, "profile_id");
    world_free(w);
}

static void test_forget_many(void **state) {
    (void)state;
    /* Thousands of profiles and orders, half forgotten and refunded: every table removal
     * (backward shifts across long runs) must leave the rest findable. */
    world *w = world_new(NULL);
    put(w,
        "{\"id\":\"s\",\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":\"shared\","
        "\"code\":\"SSS\"}",
        T0);
    ev_error err = {0};
    enum { N = 3000 };
    for (int i = 0; i < N; i++) {
        char pid[16], order[16];
        snprintf(pid, sizeof pid, "p%d", i);
        snprintf(order, sizeof order, "o%d", i);
        assert_int_equal(redeem(w, NULL, "SSS", pid, order, NULL, T0, NULL, &err), OFFER_OK);
    }
    for (int i = 0; i < N; i += 2) {
        char pid[16], order[16];
        snprintf(pid, sizeof pid, "p%d", i);
        snprintf(order, sizeof order, "o%d", (i + 1) % N);
        json_t *rec = NULL, *reply = NULL;
        assert_int_equal(offer_forget_profile(w->st, pid, &rec, &reply, &err), OFFER_OK);
        assert_int_equal(commit(w, rec, T0, &reply, &err), OFFER_OK);
        json_decref(reply);
        assert_int_equal(unredeem(w, order, T0, NULL, &err), OFFER_OK);
    }
    offer_stats s;
    offer_get_stats(w->st, &s);
    assert_int_equal(s.profiles, N / 2);
    assert_int_equal(s.redemptions, N / 2);
    for (int i = 0; i < N; i++) {
        char pid[16];
        snprintf(pid, sizeof pid, "p%d", i);
        json_t *reply = NULL;
        assert_int_equal(offer_profile_json(w->st, pid, &reply, &err), OFFER_OK);
        /* Odd profiles keep nothing either: their orders (o1, o3, ...) were refunded. Even ones
         * were forgotten. Both see no redemption; odd ones are still known (counts at 0). */
        assert_int_equal(json_array_size(json_object_get(reply, "redemptions")), 0);
        json_decref(reply);
        /* Whoever was forgotten may redeem again; whoever was refunded too. */
    }
    for (int i = 0; i < N; i += 2) {
        char order[16];
        snprintf(order, sizeof order, "o%d", i);
        json_t *reply = NULL;
        /* Even orders stand (their profiles are gone) and still answer idempotently. */
        assert_int_equal(redeem(w, NULL, "SSS", "someone", order, NULL, T0, &reply, &err),
                         OFFER_OK);
        assert_json(json_object_get(reply, "profile"), "null");
        json_decref(reply);
    }
    assert_int_equal(stat(w, "s", "redemptions"), N / 2);
    world_free(w);
}

/* ---- Lookups ---- */

static void test_eligible_list(void **state) {
    (void)state;
    world *w = world_new(&fx_options);
    put(w, summer, T0); /* everywhere, everyone */
    put(w,
        "{\"id\":\"app-only\",\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":"
        "\"none\",\"channels\":[\"app\"]}",
        T0);
    put(w,
        "{\"id\":\"vip\",\"discount\":{\"type\":\"percent\",\"value\":20},\"code_type\":\"none\","
        "\"eligibility\":\"vip\"}",
        T0);
    put(w,
        "{\"id\":\"later\",\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":"
        "\"none\",\"starts_at\":\"2024-06-15\"}",
        T0);
    put(w,
        "{\"id\":\"paused\",\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":"
        "\"none\",\"status\":\"paused\"}",
        T0);
    put(w, unique, T0); /* no codes yet: not shown */
    put(w,
        "{\"id\":\"nowhere\",\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":"
        "\"none\",\"channels\":[]}",
        T0);
    json_t *reply = NULL;
    ev_error err = {0};
    assert_int_equal(offer_eligible_list(w->st, "ann", "new", "web", T0, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"offers\":[{\"id\":\"summer\",\"name\":\"Summer sale\",\"description\""
                       ":null,\"discount\":{\"type\":\"percent\",\"value\":10},\"code_type\":"
                       "\"shared\",\"code\":\"SUMMER24\",\"ends_at\":null}]}");
    json_decref(reply);
    /* On the app, as a VIP, after the start, with a code assigned: everything but paused and
     * nowhere. */
    assert_int_equal(import(w, "welcome", "[\"E-1\"]", T0, &err), OFFER_OK);
    free(assign_code(w, "welcome", "ann", NULL, T0));
    assert_int_equal(offer_eligible_list(w->st, "ann", "vip", "app", T_JUN15, &reply, &err),
                     OFFER_OK);
    json_t *offers = json_object_get(reply, "offers");
    const char *want[] = {"app-only", "later", "summer", "vip", "welcome"};
    assert_int_equal(json_array_size(offers), 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(offers, i), "id")),
                            want[i]);
    assert_json(json_object_get(json_array_get(offers, 4), "code"), "\"E-1\"");
    json_decref(reply);
    /* Another customer: the only code is ann's, so welcome is not for them. Any channel. */
    assert_int_equal(offer_eligible_list(w->st, "bob", NULL, NULL, T_JUN15, &reply, &err),
                     OFFER_OK);
    offers = json_object_get(reply, "offers");
    assert_int_equal(json_array_size(offers), 4); /* app-only, later, nowhere, summer */
    assert_string_equal(json_string_value(json_object_get(json_array_get(offers, 2), "id")),
                        "nowhere");
    json_decref(reply);
    /* Once ann used summer (per customer 1) it is no longer shown to her. */
    assert_int_equal(redeem(w, NULL, "summer24", "ann", "o1", NULL, T0, NULL, &err), OFFER_OK);
    assert_int_equal(offer_eligible_list(w->st, "ann", "new", "web", T0, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"offers\":[{\"id\":\"welcome\",\"name\":\"Welcome\",\"description\":"
                       "null,\"discount\":{\"type\":\"amount\",\"value\":5.25,\"currency\":\"EUR\""
                       "},\"code_type\":\"unique\",\"code\":\"E-1\",\"ends_at\":null}]}");
    json_decref(reply);
    EXPECT_REFUSAL(offer_eligible_list(w->st, "ann", NULL, "fax", T0, &reply, &e_), OFFER_INVALID,
                   "channel");
    EXPECT_REFUSAL(offer_eligible_list(w->st, "", NULL, NULL, T0, &reply, &e_), OFFER_INVALID,
                   "profile_id");
    world_free(w);
}

/* ---- Records ---- */

static void test_hostile_records(void **state) {
    (void)state;
    world *w = world_new(&fx_options);
    put(w, summer, T0);
    put(w, unique, T0);
    ev_error err = {0};
    assert_int_equal(import(w, "welcome", "[\"H-1\"]", T0, &err), OFFER_OK);
    static const char *bad[] = {
        "null",
        "[]",
        "\"offer.put\"",
        "{}",
        "{\"op\":\"offer.delete\",\"id\":\"summer\"}",
        "{\"op\":7}",
        "{\"op\":\"offer.put\"}",
        "{\"op\":\"offer.put\",\"offer\":{\"id\":\"x\"}}",
        "{\"op\":\"offer.put\",\"offer\":[]}",
        "{\"op\":\"offer.patch\",\"id\":\"summer\"}",
        "{\"op\":\"offer.patch\",\"id\":\"summer\",\"patch\":{\"status\":\"gone\"}}",
        "{\"op\":\"offer.patch\",\"id\":\"../x\",\"patch\":{}}",
        "{\"op\":\"offer.codes_add\",\"id\":\"welcome\"}",
        "{\"op\":\"offer.codes_add\",\"id\":\"welcome\",\"codes\":[]}",
        "{\"op\":\"offer.codes_add\",\"id\":\"welcome\",\"codes\":[\"lower-1\"]}",
        "{\"op\":\"offer.codes_add\",\"id\":\"welcome\",\"codes\":[\"OK-1\",5]}",
        "{\"op\":\"offer.codes_add\",\"id\":\"welcome\",\"codes\":\"OK-1\"}",
        "{\"op\":\"offer.codes_add\",\"id\":7,\"codes\":[\"OK-1\"]}",
        "{\"op\":\"offer.assign\",\"id\":\"welcome\"}",
        "{\"op\":\"offer.assign\",\"id\":\"welcome\",\"profile\":\"\"}",
        "{\"op\":\"offer.assign\",\"id\":\"welcome\",\"profile\":[\"ann\"]}",
        "{\"op\":\"offer.assign\",\"id\":\"welcome\",\"profile\":\"a\\u0000b\"}",
        "{\"op\":\"offer.redeem\",\"offer\":\"summer\",\"code\":\"SUMMER24\",\"profile\":\"a\"}",
        "{\"op\":\"offer.redeem\",\"offer\":\"summer\",\"code\":\"summer24\",\"profile\":\"a\","
        "\"order\":\"o\"}",
        "{\"op\":\"offer.redeem\",\"offer\":\"summer\",\"code\":5,\"profile\":\"a\",\"order\":"
        "\"o\"}",
        "{\"op\":\"offer.unredeem\"}",
        "{\"op\":\"offer.unredeem\",\"order\":{}}",
        "{\"op\":\"offer.forget\"}",
        "{\"op\":\"offer.forget\",\"profile\":1}",
        "{\"op\":\"offer.merge_profiles\"}",
        "{\"op\":\"offer.merge_profiles\",\"from\":\"a\"}",
        "{\"op\":\"offer.merge_profiles\",\"from\":1,\"into\":\"b\"}",
        "{\"op\":\"offer.merge_profiles\",\"from\":\"a\",\"into\":\"\"}",
        "{\"op\":\"offer.merge_profiles\",\"from\":\"a\",\"into\":\"a\"}",
    };
    json_t *before = offer_state_json(w->st);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *rec = J(bad[i]), *reply = (json_t *)1;
        ev_error e = {0};
        offer_result r = offer_apply(w->st, rec, T0, &reply, &e);
        if (r != OFFER_INVALID) fail_msg("record %zu %s: %s", i, bad[i], offer_result_code(r));
        assert_null(reply);
        assert_non_null(e.code);
        json_decref(rec);
    }
    /* Records that are well formed but name what does not exist are refused by the state. */
    static const struct {
        const char *rec;
        offer_result r;
    } refused[] = {
        {"{\"op\":\"offer.patch\",\"id\":\"nope\",\"patch\":{}}", OFFER_UNKNOWN_OFFER},
        {"{\"op\":\"offer.codes_add\",\"id\":\"nope\",\"codes\":[\"OK-1\"]}", OFFER_UNKNOWN_OFFER},
        {"{\"op\":\"offer.codes_add\",\"id\":\"summer\",\"codes\":[\"OK-1\"]}", OFFER_CONFLICT},
        {"{\"op\":\"offer.codes_add\",\"id\":\"welcome\",\"codes\":[\"SUMMER24\"]}",
         OFFER_CODE_TAKEN},
        {"{\"op\":\"offer.assign\",\"id\":\"nope\",\"profile\":\"a\"}", OFFER_UNKNOWN_OFFER},
        {"{\"op\":\"offer.redeem\",\"offer\":\"welcome\",\"code\":\"SUMMER24\",\"profile\":\"a\","
         "\"order\":\"o\"}",
         OFFER_UNKNOWN_CODE},
        {"{\"op\":\"offer.redeem\",\"offer\":\"summer\",\"profile\":\"a\",\"order\":\"o\"}",
         OFFER_INVALID},
        {"{\"op\":\"offer.put\",\"offer\":{\"id\":\"x\",\"discount\":{\"type\":\"percent\","
         "\"value\":1},\"code_type\":\"shared\",\"code\":\"SUMMER24\"}}",
         OFFER_CODE_TAKEN},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        json_t *rec = J(refused[i].rec), *reply = NULL;
        ev_error e = {0};
        offer_result r = offer_apply(w->st, rec, T0, &reply, &e);
        if (r != refused[i].r)
            fail_msg("record %zu: got %s, want %s", i, offer_result_code(r),
                     offer_result_code(refused[i].r));
        assert_null(reply);
        json_decref(rec);
    }
    /* A batch over the cap, straight to apply. */
    json_t *rec = J("{\"op\":\"offer.codes_add\",\"id\":\"welcome\"}"), *arr = json_array();
    for (int i = 0; i <= OFFER_BATCH_MAX; i++) {
        char c[16];
        snprintf(c, sizeof c, "B-%d", i);
        json_array_append_new(arr, json_string(c));
    }
    json_object_set_new(rec, "codes", arr);
    json_t *reply = NULL;
    assert_int_equal(offer_apply(w->st, rec, T0, &reply, &err), OFFER_INVALID);
    json_decref(rec);
    json_t *after = offer_state_json(w->st);
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    world_free(w);
    assert_int_equal(live_exprs, 0);
}

static void test_replay_determinism(void **state) {
    (void)state;
    world *w = world_new(&fx_options);
    ev_error err = {0};
    put(w, summer, T0);
    put(w, unique, T0);
    put(w,
        "{\"id\":\"vip\",\"discount\":{\"type\":\"amount\",\"value\":7.5,\"currency\":\"EUR\"},"
        "\"code_type\":\"unique\",\"eligibility\":\"vip\",\"limits\":{\"total\":40,\"per_"
        "customer\":2}}",
        T0);
    uint64_t seed = 42;
    assert_int_equal(generate(w, "welcome", 300, "w", xs_rng, &seed, T0, NULL, &err), OFFER_OK);
    assert_int_equal(generate(w, "vip", 300, NULL, xs_rng, &seed, T0, NULL, &err), OFFER_OK);
    /* A scripted mix: assignments, redemptions (some refused), refunds, patches, erasures. */
    uint64_t r = 7;
    int merged = 0;
    for (int step = 0; step < 3000; step++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        unsigned kind = (unsigned)(r >> 60) % 8, who = (unsigned)(r >> 40) % 60;
        int64_t now = T0 + step * 60000LL;
        char pid[16], order[24];
        snprintf(pid, sizeof pid, "p%u", who);
        snprintf(order, sizeof order, "o%u", (unsigned)(r >> 20) % 400);
        const char *offer = kind % 2 ? "vip" : "welcome";
        json_t *reply = NULL;
        switch (kind) {
        case 0:
        case 1: {
            json_t *rec = NULL;
            if (offer_assign(w->st, offer, pid, "vip", now, &rec, &reply, &err) == OFFER_OK &&
                !reply)
                commit(w, rec, now, &reply, &err);
            json_decref(reply);
            break;
        }
        case 2:
        case 3: {
            json_t *a = NULL;
            if (assign(w, offer, pid, "vip", now, &a, &err) == OFFER_OK) {
                char code[80];
                snprintf(code, sizeof code, "%s", json_string_value(json_object_get(a, "code")));
                redeem(w, NULL, code, pid, order, "vip", now, NULL, &err);
            }
            json_decref(a);
            break;
        }
        case 4:
            redeem(w, NULL, "summer24", pid, order, NULL, now, NULL, &err);
            break;
        case 5:
            unredeem(w, order, now, NULL, &err);
            break;
        case 6: {
            char body[120];
            snprintf(body, sizeof body, "{\"limits\":{\"per_customer\":%u}}", 1 + who % 3);
            patch(w, "summer", body, now, &err);
            break;
        }
        default:
            if (who % 5 == 0) {
                json_t *rec = NULL;
                if (offer_forget_profile(w->st, pid, &rec, &reply, &err) == OFFER_OK && rec)
                    commit(w, rec, now, &reply, &err);
                json_decref(reply);
            } else if (who % 5 == 1) {
                char into[16];
                snprintf(into, sizeof into, "p%u", (who + 7) % 60);
                merge(w, pid, into, now, NULL, &err);
                merged++;
            }
        }
    }
    assert_true(w->n > 1000);
    assert_true(merged > 10);
    json_t *a = offer_state_json(w->st);
    offer_stats sa;
    offer_get_stats(w->st, &sa);
    assert_true(sa.redemptions > 100);
    /* Replay the log texts, at their logged times, into two fresh states: both identical to
     * the state that produced the log, byte for byte. */
    char *ta = to_text(a);
    for (int copy = 0; copy < 2; copy++) {
        offer_state *b = offer_state_new(&fx_options);
        for (size_t i = 0; i < w->n; i++) {
            json_t *rec = J(w->log[i].text), *reply = NULL;
            ev_error e = {0};
            offer_apply(b, rec, w->log[i].now, &reply, &e);
            json_decref(reply);
            json_decref(rec);
        }
        json_t *bj = offer_state_json(b);
        char *tb = to_text(bj);
        assert_string_equal(ta, tb);
        free(tb);
        json_decref(bj);
        offer_state_free(b);
    }
    free(ta);
    json_decref(a);
    world_free(w);
    assert_int_equal(live_exprs, 0);
}

/* Identity resolution: "p_40" turns out to be "p_12". */
static void test_merge_profiles(void **state) {
    (void)state;
    world *w = world_new(NULL);
    put(w, summer, T0); /* per_customer 1 */
    put(w, unique, T0);
    put(w,
        "{\"id\":\"two\",\"discount\":{\"type\":\"percent\",\"value\":5},\"code_type\":\"shared\","
        "\"code\":\"TWO\",\"limits\":{\"per_customer\":2}}",
        T0);
    ev_error err = {0};
    assert_int_equal(import(w, "welcome", "[\"M-1\",\"M-2\",\"M-3\",\"M-4\",\"M-5\"]", T0, &err),
                     OFFER_OK);
    assert_int_equal(redeem(w, NULL, "summer24", "p_40", "o40", NULL, T0, NULL, &err), OFFER_OK);
    free(assign_code(w, "welcome", "p_12", NULL, T0));      /* M-1 */
    free(assign_code(w, "welcome", "p_40", NULL, T_JUN15)); /* M-2 */
    assert_int_equal(validate(w, NULL, "summer24", "p_12", NULL, T0, &err), OFFER_OK);

    /* The record, then what applying it says it moved. */
    json_t *rec = NULL, *reply = NULL;
    assert_int_equal(offer_merge_profiles(w->st, "p_40", "p_12", &rec, &err), OFFER_OK);
    assert_json(rec, "{\"op\":\"offer.merge_profiles\",\"from\":\"p_40\",\"into\":\"p_12\"}");
    char *text = to_text(rec);
    assert_int_equal(commit(w, rec, T_JUN15, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"from\":\"p_40\",\"into\":\"p_12\",\"assignments\":1,\"redemptions\":1}");
    json_decref(reply);

    /* p_40's redemption counts against p_12's limit of 1. */
    EXPECT_REFUSAL(validate(w, NULL, "summer24", "p_12", NULL, T_JUN15, &e_),
                   OFFER_CUSTOMER_LIMIT_REACHED, "profile_id");
    EXPECT_REFUSAL(redeem(w, NULL, "summer24", "p_12", "o12", NULL, T_JUN15, NULL, &e_),
                   OFFER_CUSTOMER_LIMIT_REACHED, "profile_id");
    /* Both held a welcome code: assign still returns p_12's own, and p_40's stays p_12's. */
    char *c = assign_code(w, "welcome", "p_12", NULL, T_SEP1);
    assert_string_equal(c, "M-1");
    free(c);
    assert_int_equal(validate(w, NULL, "M-2", "p_12", NULL, T_JUN15, &err), OFFER_OK);
    EXPECT_REFUSAL(validate(w, NULL, "M-2", "p_40", NULL, T_JUN15, &e_), OFFER_ASSIGNED_TO_OTHER,
                   "code");
    assert_int_equal(stat(w, "welcome", "codes_assigned"), 2);
    assert_int_equal(stat(w, "summer", "redemptions"), 1);
    assert_profile(w, "p_12",
                   "{\"assignments\":[{\"offer\":\"welcome\",\"code\":\"M-1\",\"assigned_at\":"
                   "\"2024-06-01T00:00:00.000Z\"},{\"offer\":\"welcome\",\"code\":\"M-2\","
                   "\"assigned_at\":\"2024-06-15T00:00:00.000Z\"}],\"redemptions\":[{\"offer\":"
                   "\"summer\",\"code\":\"SUMMER24\",\"order\":\"o40\",\"redeemed_at\":\"2024-06-"
                   "01T00:00:00.000Z\"}]}");
    assert_profile(w, "p_40", "{\"assignments\":[],\"redemptions\":[]}");
    /* The order's redemption now names p_12. */
    assert_int_equal(redeem(w, NULL, "summer24", "p_40", "o40", NULL, T_SEP1, &reply, &err),
                     OFFER_OK);
    assert_json(json_object_get(reply, "profile"), "\"p_12\"");
    json_decref(reply);

    /* The same record again changes nothing; a new prepare call has no record. */
    json_t *before = offer_state_json(w->st);
    rec = J(text);
    free(text);
    assert_int_equal(commit(w, rec, T_SEP1, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"from\":\"p_40\",\"into\":\"p_12\",\"assignments\":0,\"redemptions\":0}");
    json_decref(reply);
    json_t *after = offer_state_json(w->st);
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    size_t logged = w->n;
    rec = (json_t *)1;
    assert_int_equal(offer_merge_profiles(w->st, "p_40", "p_12", &rec, &err), OFFER_OK);
    assert_null(rec);
    rec = (json_t *)1;
    assert_int_equal(offer_merge_profiles(w->st, "nobody", "p_12", &rec, &err), OFFER_OK);
    assert_null(rec);
    assert_int_equal(w->n, logged);

    /* Into a profile that has nothing yet: a redeemed unique code follows, and a refund gives it
     * back to the new holder. */
    assert_int_equal(redeem(w, NULL, "summer24", "p_7", "o7", NULL, T0, NULL, &err), OFFER_OK);
    assert_int_equal(redeem(w, NULL, "M-3", "p_7", "o7w", NULL, T0, NULL, &err), OFFER_OK);
    assert_int_equal(merge(w, "p_7", "p_99", T0, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"from\":\"p_7\",\"into\":\"p_99\",\"assignments\":0,\"redemptions\":2}");
    json_decref(reply);
    EXPECT_REFUSAL(validate(w, NULL, "summer24", "p_99", NULL, T0, &e_),
                   OFFER_CUSTOMER_LIMIT_REACHED, "profile_id");
    assert_int_equal(unredeem(w, "o7w", T0, NULL, &err), OFFER_OK);
    c = assign_code(w, "welcome", "p_99", NULL, T0);
    assert_string_equal(c, "M-3");
    free(c);
    assert_profile(w, "p_7", "{\"assignments\":[],\"redemptions\":[]}");

    /* Counts add past the limit: nothing is undone, further redemptions are refused until
     * refunds bring the sum under it. Redemptions merge oldest first. */
    assert_int_equal(redeem(w, NULL, "TWO", "p_1", "o1a", NULL, T0, NULL, &err), OFFER_OK);
    assert_int_equal(redeem(w, NULL, "TWO", "p_1", "o1b", NULL, T_SEP1, NULL, &err), OFFER_OK);
    assert_int_equal(redeem(w, NULL, "TWO", "p_2", "o2a", NULL, T_JUN15, NULL, &err), OFFER_OK);
    assert_int_equal(redeem(w, NULL, "M-4", "p_2", "o2w", NULL, T_JUN15, NULL, &err), OFFER_OK);
    assert_int_equal(merge(w, "p_2", "p_1", T_SEP1, &reply, &err), OFFER_OK);
    assert_json(reply, "{\"from\":\"p_2\",\"into\":\"p_1\",\"assignments\":0,\"redemptions\":2}");
    json_decref(reply);
    assert_int_equal(stat(w, "two", "redemptions"), 3);
    assert_profile(w, "p_1",
                   "{\"assignments\":[],\"redemptions\":[{\"offer\":\"two\",\"code\":\"TWO\","
                   "\"order\":\"o1a\",\"redeemed_at\":\"2024-06-01T00:00:00.000Z\"},{\"offer\":"
                   "\"two\",\"code\":\"TWO\",\"order\":\"o2a\",\"redeemed_at\":\"2024-06-15T00:00:"
                   "00.000Z\"},{\"offer\":\"welcome\",\"code\":\"M-4\",\"order\":\"o2w\","
                   "\"redeemed_at\":\"2024-06-15T00:00:00.000Z\"},{\"offer\":\"two\",\"code\":"
                   "\"TWO\",\"order\":\"o1b\",\"redeemed_at\":\"2024-09-01T00:00:00.000Z\"}]}");
    EXPECT_REFUSAL(redeem(w, NULL, "TWO", "p_1", "o1c", NULL, T_SEP1, NULL, &e_),
                   OFFER_CUSTOMER_LIMIT_REACHED, "profile_id");
    assert_int_equal(unredeem(w, "o1a", T_SEP1, NULL, &err), OFFER_OK); /* 3 -> 2: still full */
    EXPECT_REFUSAL(validate(w, NULL, "TWO", "p_1", NULL, T_SEP1, &e_), OFFER_CUSTOMER_LIMIT_REACHED,
                   "profile_id");
    assert_int_equal(unredeem(w, "o2a", T_SEP1, NULL, &err), OFFER_OK); /* 2 -> 1 */
    assert_int_equal(redeem(w, NULL, "TWO", "p_1", "o1c", NULL, T_SEP1, NULL, &err), OFFER_OK);
    /* p_2's redeemed code, refunded, returns to p_1. */
    assert_int_equal(unredeem(w, "o2w", T_SEP1, NULL, &err), OFFER_OK);
    c = assign_code(w, "welcome", "p_1", NULL, T_SEP1);
    assert_string_equal(c, "M-4");
    free(c);

    /* Malformed ids. */
    char longid[OFFER_PROFILE_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    EXPECT_REFUSAL(offer_merge_profiles(w->st, "", "p_1", &rec, &e_), OFFER_INVALID, "from");
    EXPECT_REFUSAL(offer_merge_profiles(w->st, NULL, "p_1", &rec, &e_), OFFER_INVALID, "from");
    EXPECT_REFUSAL(offer_merge_profiles(w->st, longid, "p_1", &rec, &e_), OFFER_INVALID, "from");
    EXPECT_REFUSAL(offer_merge_profiles(w->st, "p_1", "", &rec, &e_), OFFER_INVALID, "into");
    EXPECT_REFUSAL(offer_merge_profiles(w->st, "p_1", "\xff", &rec, &e_), OFFER_INVALID, "into");
    EXPECT_REFUSAL(offer_merge_profiles(w->st, "p_1", "p_1", &rec, &e_), OFFER_INVALID, "into");
    assert_null(rec);
    world_free(w);
}

/* ---- Caps ---- */

static void test_offer_cap(void **state) {
    (void)state;
    world *w = world_new(NULL);
    char body[200];
    for (int i = 0; i < OFFER_MAX_OFFERS; i++) {
        snprintf(body, sizeof body,
                 "{\"id\":\"o%05d\",\"discount\":{\"type\":\"percent\",\"value\":1},\"code_type\""
                 ":\"shared\",\"code\":\"C%05d\"}",
                 (i * 7919) % OFFER_MAX_OFFERS, i);
        put(w, body, T0);
    }
    json_t *b = J("{\"id\":\"one-more\",\"discount\":{\"type\":\"percent\",\"value\":1},"
                  "\"code_type\":\"none\"}"),
           *rec = NULL;
    EXPECT_REFUSAL(offer_put(w->st, NULL, b, &rec, &e_), OFFER_TOO_MANY_OFFERS, "id");
    json_decref(b);
    /* Replacing one still works, and the ids are in order. */
    put(w,
        "{\"id\":\"o00000\",\"discount\":{\"type\":\"percent\",\"value\":2},\"code_type\":"
        "\"none\"}",
        T0);
    json_t *reply = NULL;
    ev_error err = {0};
    assert_int_equal(offer_list(w->st, "o04998", 5, &reply, &err), OFFER_OK);
    assert_json(json_object_get(json_array_get(json_object_get(reply, "offers"), 0), "id"),
                "\"o04999\"");
    json_decref(reply);
    world_free(w);
}

static void test_code_caps(void **state) {
    (void)state;
    /* Small caps first: per offer 3, server-wide 5. */
    offer_options small = {.max_codes_per_offer = 3, .max_codes = 5};
    world *w = world_new(&small);
    put(w, unique, T0);
    put(w,
        "{\"id\":\"u2\",\"discount\":{\"type\":\"percent\",\"value\":1},\"code_type\":\"unique\"}",
        T0);
    ev_error err = {0};
    assert_int_equal(import(w, "welcome", "[\"A-1\",\"A-2\"]", T0, &err), OFFER_OK);
    EXPECT_REFUSAL(import(w, "welcome", "[\"A-3\",\"A-4\"]", T0, &e_), OFFER_TOO_MANY_CODES,
                   "codes");
    assert_int_equal(import(w, "welcome", "[\"A-3\"]", T0, &err), OFFER_OK);
    assert_int_equal(import(w, "u2", "[\"B-1\",\"B-2\"]", T0, &err), OFFER_OK);
    EXPECT_REFUSAL(import(w, "u2", "[\"B-3\"]", T0, &e_), OFFER_TOO_MANY_CODES, "codes");
    world_free(w);

    /* The real cap: 1,000,000 codes in ten batches of 100,000; one more is refused. */
    w = world_new(NULL);
    put(w, unique, T0);
    uint64_t seed = 1;
    for (int i = 0; i < 10; i++)
        assert_int_equal(
            generate(w, "welcome", OFFER_BATCH_MAX, "SUMMER", xs_rng, &seed, T0, NULL, &err),
            OFFER_OK);
    EXPECT_REFUSAL(generate(w, "welcome", 1, "SUMMER", xs_rng, &seed, T0, NULL, &e_),
                   OFFER_TOO_MANY_CODES, "count");
    json_t *rec = J("{\"op\":\"offer.codes_add\",\"id\":\"welcome\",\"codes\":[\"LAST-ONE\"]}"),
           *reply = NULL;
    EXPECT_REFUSAL(offer_apply(w->st, rec, T0, &reply, &e_), OFFER_TOO_MANY_CODES, "codes");
    json_decref(rec);
    offer_stats s;
    offer_get_stats(w->st, &s);
    assert_int_equal(s.codes, 1000000);
    assert_int_equal(stat(w, "welcome", "codes_free"), 1000000);
    print_message("memory: %zu bytes for 1,000,000 codes of 16 characters: %.1f bytes per code\n",
                  s.bytes, (double)s.bytes / 1e6);
    assert_true(s.bytes / 1000000 < 64);
    /* The last code drawn is found in O(1) and assignment still walks in order. */
    char *c = assign_code(w, "welcome", "ann", NULL, T0);
    assert_int_equal(strlen(c), 16);
    assert_int_equal(validate(w, NULL, c, "ann", NULL, T0, &err), OFFER_OK);
    free(c);
    world_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_table),
        cmocka_unit_test(test_put_get_canonical),
        cmocka_unit_test(test_put_normalizes),
        cmocka_unit_test(test_put_replace),
        cmocka_unit_test(test_hostile_definitions),
        cmocka_unit_test(test_patch),
        cmocka_unit_test(test_list_cursor),
        cmocka_unit_test(test_codes_generate),
        cmocka_unit_test(test_codes_import),
        cmocka_unit_test(test_codes_list),
        cmocka_unit_test(test_assign_unique),
        cmocka_unit_test(test_assign_shared_and_none),
        cmocka_unit_test(test_assign_refusals),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_redeem_idempotent),
        cmocka_unit_test(test_limits_exact),
        cmocka_unit_test(test_unredeem),
        cmocka_unit_test(test_forget_profile),
        cmocka_unit_test(test_forget_many),
        cmocka_unit_test(test_merge_profiles),
        cmocka_unit_test(test_eligible_list),
        cmocka_unit_test(test_hostile_records),
        cmocka_unit_test(test_replay_determinism),
        cmocka_unit_test(test_offer_cap),
        cmocka_unit_test(test_code_caps),
    };
    return cmocka_run_group_tests_name("offers", tests, NULL, NULL);
}
