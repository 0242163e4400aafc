/* Unit tests for ingest/ev: validation, normalisation, skew correction, batch merge, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest/ev.h"
#include "util/timefmt.h"

/* 2024-05-01T12:00:00Z, the server's clock in every test. */
#define RECEIVED 1714564800000LL
/* 2024-05-01T10:00:00Z */
#define T10 1714557600000LL

static json_t *parse(const char *text) {
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!v) fail_msg("test JSON does not parse: %s: %s", e.text, text);
    return v;
}

static ev_envelope env_at(int64_t received) {
    ev_envelope env = {.received_ms = received};
    return env;
}

/* The fast path (ev_normalize_text) against the jansson path: every text ok() and bad() see goes
 * through both, so each case below is also a case of the two agreeing. */
static size_t fast_taken, fast_declined;

static bool same_str(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Runs the fast path on text: -1 when the scanner or the envelope check leaves it to the jansson
 * path, else ev_normalize_text()'s result (*fast filled on 0). */
static int run_fast(const char *text, int type, const ev_envelope *env, ev_event *fast) {
    js_doc d;
    js_init(&d, 1u << 20);
    int rc = -1;
    if (js_parse(&d, text, strlen(text), EV_MAX_DEPTH) == 0 && ev_envelope_check(env)) {
        memset(fast, 0xAB, sizeof *fast);
        rc = ev_normalize_text(&d, 0, type, env, fast);
        if (rc) {
            /* Declining leaves the event empty. */
            assert_int_equal(rc, 1);
            assert_null(fast->body);
            assert_null(fast->json);
            assert_null(fast->user_id);
            assert_null(fast->anonymous_id);
            assert_null(fast->event_name);
            assert_null(fast->commerce);
        }
    }
    js_free(&d);
    return rc;
}

/* The fast path's result must be the jansson path's, byte for byte; a messageId each made up is
 * the one difference allowed. */
static void same_as_fast(const char *text, int type, const ev_envelope *env, const ev_event *slow) {
    ev_event fast;
    int rc = run_fast(text, type, env, &fast);
    if (rc) {
        fast_declined++;
        return;
    }
    fast_taken++;
    assert_int_equal(fast.type, slow->type);
    assert_int_equal(fast.timestamp_ms, slow->timestamp_ms);
    assert_int_equal(fast.received_ms, slow->received_ms);
    assert_true(same_str(fast.user_id, slow->user_id));
    assert_true(same_str(fast.anonymous_id, slow->anonymous_id));
    assert_true(same_str(fast.event_name, slow->event_name));
    assert_true(cm_event_equal(fast.commerce, slow->commerce));
    if (strcmp(fast.message_id, slow->message_id) != 0) {
        /* Both made one: put the slow path's into the fast path's body (the tree has none). */
        assert_int_equal(strlen(fast.message_id), 36);
        assert_int_equal(strlen(slow->message_id), 36);
        char *at = strstr(fast.body, fast.message_id);
        assert_non_null(at);
        memcpy(at, slow->message_id, 36);
    }
    if (strcmp(fast.body, slow->body) != 0)
        fail_msg("the fast path wrote\n%s\nthe jansson path\n%s\nfor %s", fast.body, slow->body,
                 text);
    assert_int_equal(fast.body_len, slow->body_len);
    if ((fast.json || slow->json) && !json_equal(fast.json, slow->json)) {
        char *a = json_dumps(fast.json, JSON_SORT_KEYS),
             *b = json_dumps(slow->json, JSON_SORT_KEYS);
        fail_msg("engine trees differ:\n%s\n%s", a, b);
    }
    ev_event_free(&fast);
}

/* Normalises text and expects success; the caller frees *ev. */
static void ok(const char *text, int type, const ev_envelope *env, ev_event *ev) {
    json_t *raw = parse(text);
    ev_error err = {0};
    int rc = ev_normalize(raw, type, env, ev, &err);
    json_decref(raw);
    if (rc != 0) fail_msg("expected success, got %s (%s): %s", err.code, err.field, err.message);
    assert_non_null(ev->body);
    assert_int_equal(strlen(ev->body), ev->body_len);
    same_as_fast(text, type, env, ev);
}

/* Normalises text and expects an error. */
static ev_error bad(const char *text, int type, const ev_envelope *env) {
    json_t *raw = parse(text);
    ev_error err = {0};
    ev_event ev;
    memset(&ev, 0xAB, sizeof ev);
    int rc = ev_normalize(raw, type, env, &ev, &err);
    json_decref(raw);
    assert_int_equal(rc, -1);
    /* On error the event is left empty, needing no freeing. */
    assert_null(ev.body);
    assert_null(ev.user_id);
    assert_null(ev.anonymous_id);
    assert_null(ev.event_name);
    assert_null(ev.commerce);
    assert_non_null(err.code);
    /* What the jansson path refuses, the fast path declines (so the error is worded there). */
    ev_event fast;
    assert_true(run_fast(text, type, env, &fast) != 0);
    return err;
}

/* The body as a JSON object, for field-by-field checks. */
static json_t *body_of(const ev_event *ev) {
    json_t *b = parse(ev->body);
    assert_true(json_is_object(b));
    return b;
}

static const char *str_at(json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

/* --------------------------------------------------------------------------------------------- */

static void test_type_names(void **state) {
    (void)state;
    assert_string_equal(ev_type_name(EV_IDENTIFY), "identify");
    assert_string_equal(ev_type_name(EV_TRACK), "track");
    assert_string_equal(ev_type_name(EV_PAGE), "page");
    assert_string_equal(ev_type_name(EV_SCREEN), "screen");
    assert_string_equal(ev_type_name(EV_GROUP), "group");
    assert_string_equal(ev_type_name(EV_ALIAS), "alias");
    assert_null(ev_type_name(EV_NTYPES));
    assert_null(ev_type_name((ev_type)-1));
    ev_type t = EV_TRACK;
    assert_true(ev_type_parse("alias", &t));
    assert_int_equal(t, EV_ALIAS);
    assert_false(ev_type_parse("Track", &t));
    assert_false(ev_type_parse("", &t));
    assert_false(ev_type_parse(NULL, &t));
    assert_int_equal(t, EV_ALIAS);
}

static void test_error_set(void **state) {
    (void)state;
    ev_error err;
    ev_error_set(&err, "invalid_field", "userId", "%s must be %d", "userId", 7);
    assert_string_equal(err.code, "invalid_field");
    assert_string_equal(err.field, "userId");
    assert_string_equal(err.message, "userId must be 7");
    ev_error_set(&err, "x", NULL, "m");
    assert_string_equal(err.field, "");
    char longfield[400];
    memset(longfield, 'f', sizeof longfield - 1);
    longfield[sizeof longfield - 1] = '\0';
    ev_error_set(&err, "x", longfield, "%s", longfield);
    assert_int_equal(strlen(err.field), sizeof err.field - 1);
    assert_int_equal(strlen(err.message), sizeof err.message - 1);
    ev_error_set(NULL, "x", "y", "z"); /* allowed, does nothing */
}

static void test_number_text(void **state) {
    (void)state;
    char out[EV_NUMBER_TEXT_LEN];
    static const struct {
        const char *json;
        const char *text; /* NULL: refused */
    } cases[] = {
        {"42", "42"},
        {"-7", "-7"},
        {"0", "0"},
        {"-9223372036854775808", "-9223372036854775808"},
        {"42.0", "42"},
        {"-0.0", "0"},
        {"9007199254740992.0", "9007199254740992"},
        {"9007199254740994.0", NULL},
        {"1.5", NULL},
        {"1e300", NULL},
        {"\"42\"", NULL},
        {"true", NULL},
        {"null", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *v = parse(cases[i].json);
        bool r = ev_number_text(v, out);
        json_decref(v);
        if (cases[i].text) {
            assert_true(r);
            assert_string_equal(out, cases[i].text);
        } else {
            assert_false(r);
        }
    }
}

/* The exact body of a plain event: key order kept, writeKey gone, times formatted, receivedAt
 * added. */
static void test_track_body_exact(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    ev_event ev;
    ok("{\"type\":\"track\",\"userId\":\"u1\",\"messageId\":\"m-1\",\"timestamp\":"
       "\"2024-05-01T10:00:00Z\",\"event\":\"Signed Up\",\"writeKey\":\"s3cret\","
       "\"properties\":{\"plan\":\"pro\",\"seats\":3,\"price\":19.99}}",
       EV_NTYPES, &env, &ev);
    assert_string_equal(ev.body,
                        "{\"type\":\"track\",\"userId\":\"u1\",\"messageId\":\"m-1\",\"timestamp\":"
                        "\"2024-05-01T10:00:00.000Z\",\"event\":\"Signed Up\",\"properties\":{"
                        "\"plan\":\"pro\",\"seats\":3,\"price\":19.99},\"receivedAt\":"
                        "\"2024-05-01T12:00:00.000Z\"}");
    assert_int_equal(ev.type, EV_TRACK);
    assert_int_equal(ev.timestamp_ms, T10);
    assert_int_equal(ev.received_ms, RECEIVED);
    assert_string_equal(ev.message_id, "m-1");
    assert_string_equal(ev.user_id, "u1");
    assert_null(ev.anonymous_id);
    assert_null(ev.commerce);
    assert_null(strstr(ev.body, "writeKey"));
    assert_null(strstr(ev.body, "s3cret"));
    ev_event_free(&ev);
    /* Freeing twice is harmless: the event is zeroed. */
    ev_event_free(&ev);
    assert_null(ev.body);
}

static void test_every_type(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    static const struct {
        int type;
        const char *json;
        ev_type expect;
    } cases[] = {
        {EV_IDENTIFY, "{\"userId\":\"u\",\"traits\":{\"email\":\"a@b.c\"}}", EV_IDENTIFY},
        {EV_TRACK, "{\"anonymousId\":\"a\",\"event\":\"x\"}", EV_TRACK},
        {EV_PAGE, "{\"userId\":\"u\",\"name\":\"Home\"}", EV_PAGE},
        {EV_SCREEN, "{\"userId\":\"u\"}", EV_SCREEN},
        {EV_GROUP, "{\"userId\":\"u\",\"groupId\":\"g\"}", EV_GROUP},
        {EV_ALIAS, "{\"userId\":\"u\",\"previousId\":\"p\"}", EV_ALIAS},
        {EV_NTYPES, "{\"type\":\"page\",\"userId\":\"u\"}", EV_PAGE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ev_event ev;
        ok(cases[i].json, cases[i].type, &env, &ev);
        assert_int_equal(ev.type, cases[i].expect);
        json_t *b = body_of(&ev);
        assert_string_equal(str_at(b, "type"), ev_type_name(cases[i].expect));
        /* With no client time at all, the event time is receivedAt. */
        assert_int_equal(ev.timestamp_ms, RECEIVED);
        assert_string_equal(str_at(b, "timestamp"), "2024-05-01T12:00:00.000Z");
        assert_string_equal(str_at(b, "receivedAt"), "2024-05-01T12:00:00.000Z");
        json_decref(b);
        ev_event_free(&ev);
    }
}

/* The endpoint's type wins over the one in the body, as Segment does. */
static void test_endpoint_type_wins(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    ev_event ev;
    ok("{\"type\":\"identify\",\"userId\":\"u\",\"event\":\"E\"}", EV_TRACK, &env, &ev);
    assert_int_equal(ev.type, EV_TRACK);
    assert_non_null(strstr(ev.body, "\"type\":\"track\""));
    assert_null(strstr(ev.body, "identify"));
    ev_event_free(&ev);
    /* The body's type may even be junk when the endpoint names the type. */
    ok("{\"type\":42,\"userId\":\"u\"}", EV_PAGE, &env, &ev);
    assert_int_equal(ev.type, EV_PAGE);
    ev_event_free(&ev);
    /* ...and the endpoint's rules apply: track needs an event even if the body says identify. */
    ev_error err = bad("{\"type\":\"identify\",\"userId\":\"u\"}", EV_TRACK, &env);
    assert_string_equal(err.code, "missing_field");
    assert_string_equal(err.field, "event");
}

static void test_message_id(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    const char *absent[] = {"{\"userId\":\"u\"}", "{\"userId\":\"u\",\"messageId\":null}",
                            "{\"userId\":\"u\",\"messageId\":\"\"}"};
    char seen[3][EV_MESSAGE_ID_MAX + 1];
    for (size_t i = 0; i < 3; i++) {
        ev_event ev;
        ok(absent[i], EV_PAGE, &env, &ev);
        /* A v4 UUID: 8-4-4-4-12 hex digits, version 4, variant 10xx. */
        assert_int_equal(strlen(ev.message_id), 36);
        assert_int_equal(ev.message_id[8], '-');
        assert_int_equal(ev.message_id[14], '4');
        assert_non_null(strchr("89ab", ev.message_id[19]));
        json_t *b = body_of(&ev);
        assert_string_equal(str_at(b, "messageId"), ev.message_id);
        json_decref(b);
        strcpy(seen[i], ev.message_id);
        ev_event_free(&ev);
    }
    assert_string_not_equal(seen[0], seen[1]);
    assert_string_not_equal(seen[1], seen[2]);

    char text[300];
    char id[EV_MESSAGE_ID_MAX + 2];
    memset(id, 'm', sizeof id);
    id[EV_MESSAGE_ID_MAX] = '\0'; /* exactly the limit */
    snprintf(text, sizeof text, "{\"userId\":\"u\",\"messageId\":\"%s\"}", id);
    ev_event ev;
    ok(text, EV_PAGE, &env, &ev);
    assert_string_equal(ev.message_id, id);
    ev_event_free(&ev);
    id[EV_MESSAGE_ID_MAX] = 'm';
    id[EV_MESSAGE_ID_MAX + 1] = '\0'; /* one byte over */
    snprintf(text, sizeof text, "{\"userId\":\"u\",\"messageId\":\"%s\"}", id);
    ev_error err = bad(text, EV_PAGE, &env);
    assert_string_equal(err.code, "invalid_field");
    assert_string_equal(err.field, "messageId");
    assert_string_equal(err.message, "messageId must be a string of at most 100 bytes");
    err = bad("{\"userId\":\"u\",\"messageId\":12}", EV_PAGE, &env);
    assert_string_equal(err.field, "messageId");
}

static void test_ids(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    static const struct {
        const char *json;
        const char *user_id, *anonymous_id; /* expected; NULL = absent */
    } cases[] = {
        {"{\"userId\":42}", "42", NULL},
        {"{\"userId\":-7}", "-7", NULL},
        {"{\"userId\":42.0}", "42", NULL},
        {"{\"userId\":12345678901234}", "12345678901234", NULL},
        {"{\"anonymousId\":99}", NULL, "99"},
        {"{\"userId\":null,\"anonymousId\":\"a\"}", NULL, "a"},
        {"{\"userId\":\"\",\"anonymousId\":\"a\"}", NULL, "a"},
        {"{\"userId\":\"u\",\"anonymousId\":\"a\"}", "u", "a"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ev_event ev;
        ok(cases[i].json, EV_SCREEN, &env, &ev);
        json_t *b = body_of(&ev);
        if (cases[i].user_id) {
            assert_string_equal(ev.user_id, cases[i].user_id);
            assert_string_equal(str_at(b, "userId"), cases[i].user_id);
        } else {
            assert_null(ev.user_id);
            assert_null(json_object_get(b, "userId")); /* null and "" are dropped */
        }
        if (cases[i].anonymous_id) {
            assert_string_equal(ev.anonymous_id, cases[i].anonymous_id);
            assert_string_equal(str_at(b, "anonymousId"), cases[i].anonymous_id);
        } else {
            assert_null(ev.anonymous_id);
            assert_null(json_object_get(b, "anonymousId"));
        }
        json_decref(b);
        ev_event_free(&ev);
    }

    /* Exactly EV_ID_MAX bytes is fine, one more is not. */
    char id[EV_ID_MAX + 2], text[EV_ID_MAX + 64];
    memset(id, 'u', sizeof id);
    id[EV_ID_MAX] = '\0';
    snprintf(text, sizeof text, "{\"userId\":\"%s\"}", id);
    ev_event ev;
    ok(text, EV_PAGE, &env, &ev);
    assert_int_equal(strlen(ev.user_id), EV_ID_MAX);
    ev_event_free(&ev);
    id[EV_ID_MAX] = 'u';
    id[EV_ID_MAX + 1] = '\0';
    snprintf(text, sizeof text, "{\"anonymousId\":\"%s\"}", id);
    ev_error err = bad(text, EV_PAGE, &env);
    assert_string_equal(err.code, "invalid_field");
    assert_string_equal(err.field, "anonymousId");
    assert_string_equal(err.message, "anonymousId must be at most 255 bytes");
}

/* One row per client mistake: the code, the field and the exact message. */
static void test_errors(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    static const struct {
        const char *json;
        int type;
        const char *code, *field, *message;
    } cases[] = {
        {"[]", EV_TRACK, "invalid_field", "", "an event must be a JSON object"},
        {"\"x\"", EV_NTYPES, "invalid_field", "", "an event must be a JSON object"},
        {"{\"userId\":\"u\"}", EV_NTYPES, "missing_field", "type", "type is required"},
        {"{\"type\":\"\",\"userId\":\"u\"}", EV_NTYPES, "missing_field", "type",
         "type is required"},
        {"{\"type\":\"purchase\",\"userId\":\"u\"}", EV_NTYPES, "invalid_field", "type",
         "type must be one of identify, track, page, screen, group, alias"},
        {"{\"type\":3,\"userId\":\"u\"}", EV_NTYPES, "invalid_field", "type",
         "type must be one of identify, track, page, screen, group, alias"},
        {"{\"event\":\"x\"}", EV_TRACK, "missing_field", "userId",
         "userId or anonymousId is required"},
        {"{\"userId\":\"\",\"anonymousId\":null}", EV_PAGE, "missing_field", "userId",
         "userId or anonymousId is required"},
        {"{\"userId\":true}", EV_PAGE, "invalid_field", "userId", "userId must be a string"},
        {"{\"userId\":\"a\\u0000b\"}", EV_PAGE, "invalid_field", "userId",
         "userId must not contain a NUL character"},
        {"{\"anonymousId\":\"\\u0000\"}", EV_PAGE, "invalid_field", "anonymousId",
         "anonymousId must not contain a NUL character"},
        {"{\"userId\":\"u\",\"previousId\":\"p\\u0000\"}", EV_ALIAS, "invalid_field", "previousId",
         "previousId must not contain a NUL character"},
        {"{\"userId\":{\"id\":1}}", EV_PAGE, "invalid_field", "userId", "userId must be a string"},
        {"{\"userId\":1.5}", EV_PAGE, "invalid_field", "userId",
         "userId must be a string or a whole number"},
        {"{\"userId\":\"u\",\"anonymousId\":[1]}", EV_PAGE, "invalid_field", "anonymousId",
         "anonymousId must be a string"},
        {"{\"userId\":\"u\"}", EV_TRACK, "missing_field", "event",
         "event is required for track events"},
        {"{\"userId\":\"u\",\"event\":\"\"}", EV_TRACK, "missing_field", "event",
         "event is required for track events"},
        {"{\"userId\":\"u\",\"event\":5}", EV_TRACK, "invalid_field", "event",
         "event must be a string"},
        {"{\"userId\":\"u\"}", EV_ALIAS, "missing_field", "previousId",
         "previousId is required for alias events"},
        {"{\"userId\":\"u\",\"previousId\":false}", EV_ALIAS, "invalid_field", "previousId",
         "previousId must be a string"},
        {"{\"userId\":\"u\"}", EV_GROUP, "missing_field", "groupId",
         "groupId is required for group events"},
        {"{\"userId\":\"u\",\"properties\":[]}", EV_PAGE, "invalid_field", "properties",
         "properties must be an object"},
        {"{\"userId\":\"u\",\"traits\":\"vip\"}", EV_IDENTIFY, "invalid_field", "traits",
         "traits must be an object"},
        {"{\"userId\":\"u\",\"context\":1}", EV_PAGE, "invalid_field", "context",
         "context must be an object"},
        {"{\"userId\":\"u\",\"integrations\":true}", EV_PAGE, "invalid_field", "integrations",
         "integrations must be an object"},
        {"{\"userId\":\"u\",\"timestamp\":\"yesterday\"}", EV_PAGE, "invalid_field", "timestamp",
         "timestamp must be an RFC 3339 date-time"},
        {"{\"userId\":\"u\",\"timestamp\":1714557600000}", EV_PAGE, "invalid_field", "timestamp",
         "timestamp must be an RFC 3339 date-time"},
        {"{\"userId\":\"u\",\"timestamp\":\"2024-02-30T10:00:00Z\"}", EV_PAGE, "invalid_field",
         "timestamp", "timestamp must be an RFC 3339 date-time"},
        {"{\"userId\":\"u\",\"timestamp\":\"2024-05-01T10:00:00\"}", EV_PAGE, "invalid_field",
         "timestamp", "timestamp must be an RFC 3339 date-time"},
        {"{\"userId\":\"u\",\"originalTimestamp\":\"2024-05-01T25:00:00Z\"}", EV_PAGE,
         "invalid_field", "originalTimestamp", "originalTimestamp must be an RFC 3339 date-time"},
        {"{\"userId\":\"u\",\"sentAt\":{}}", EV_PAGE, "invalid_field", "sentAt",
         "sentAt must be an RFC 3339 date-time"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ev_error err = bad(cases[i].json, cases[i].type, &env);
        if (strcmp(err.code, cases[i].code) || strcmp(err.field, cases[i].field) ||
            strcmp(err.message, cases[i].message))
            fail_msg("case %zu %s: got %s / %s / %s", i, cases[i].json, err.code, err.field,
                     err.message);
    }
}

static void test_nulls_dropped(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    ev_event ev;
    ok("{\"userId\":\"u\",\"properties\":null,\"context\":null,\"timestamp\":null,\"sentAt\":\"\"}",
       EV_PAGE, &env, &ev);
    json_t *b = body_of(&ev);
    assert_null(json_object_get(b, "properties"));
    assert_null(json_object_get(b, "context"));
    assert_null(json_object_get(b, "sentAt"));
    assert_string_equal(str_at(b, "timestamp"), "2024-05-01T12:00:00.000Z");
    json_decref(b);
    ev_event_free(&ev);
}

/* ---- time ---- */

static void expect_time(const char *json, const char *batch_sent_at, int64_t received,
                        const char *timestamp) {
    ev_envelope env = env_at(received);
    env.sent_at = batch_sent_at;
    ev_event ev;
    ok(json, EV_PAGE, &env, &ev);
    json_t *b = body_of(&ev);
    if (strcmp(str_at(b, "timestamp"), timestamp))
        fail_msg("%s: timestamp %s, expected %s", json, str_at(b, "timestamp"), timestamp);
    int64_t ms;
    assert_true(tf_parse(timestamp, strlen(timestamp), &ms));
    assert_int_equal(ev.timestamp_ms, ms);
    assert_int_equal(ev.received_ms, received);
    json_decref(b);
    ev_event_free(&ev);
}

static void test_skew_correction(void **state) {
    (void)state;
    /* The device clock is two hours slow: it stamped the event at 10:00:00 and sent it 30 s later
     * by its clock; the server got it at 12:00:00, so the event happened at 11:59:30. */
    expect_time("{\"userId\":\"u\",\"originalTimestamp\":\"2024-05-01T10:00:00Z\","
                "\"sentAt\":\"2024-05-01T10:00:30Z\"}",
                NULL, RECEIVED, "2024-05-01T11:59:30.000Z");
    /* Same instant written with offsets and fractions. */
    expect_time("{\"userId\":\"u\",\"originalTimestamp\":\"2024-05-01T12:00:00.250+02:00\","
                "\"sentAt\":\"2024-05-01T05:00:30.750-05:00\"}",
                NULL, RECEIVED, "2024-05-01T11:59:29.500Z");
    /* A device clock that runs fast: sentAt after receivedAt. */
    expect_time("{\"userId\":\"u\",\"originalTimestamp\":\"2024-05-01T14:00:00Z\","
                "\"sentAt\":\"2024-05-01T14:00:05Z\"}",
                NULL, RECEIVED, "2024-05-01T11:59:55.000Z");
    /* The batch's sentAt stands in for the event's. */
    expect_time("{\"userId\":\"u\",\"originalTimestamp\":\"2024-05-01T10:00:00Z\"}",
                "2024-05-01T10:01:00Z", RECEIVED, "2024-05-01T11:59:00.000Z");
    /* ...but the event's own sentAt wins over the batch's. */
    expect_time("{\"userId\":\"u\",\"originalTimestamp\":\"2024-05-01T10:00:00Z\","
                "\"sentAt\":\"2024-05-01T10:00:10Z\"}",
                "2024-05-01T10:01:00Z", RECEIVED, "2024-05-01T11:59:50.000Z");
    /* originalTimestamp without sentAt is taken as it is. */
    expect_time("{\"userId\":\"u\",\"originalTimestamp\":\"2024-05-01T10:00:00.5Z\"}", NULL,
                RECEIVED, "2024-05-01T10:00:00.500Z");
    /* An explicit timestamp is never corrected. */
    expect_time(
        "{\"userId\":\"u\",\"timestamp\":\"2020-01-01T00:00:00Z\","
        "\"originalTimestamp\":\"2024-05-01T10:00:00Z\",\"sentAt\":\"2024-05-01T10:00:30Z\"}",
        NULL, RECEIVED, "2020-01-01T00:00:00.000Z");
    /* sentAt alone says nothing about the event's time. */
    expect_time("{\"userId\":\"u\",\"sentAt\":\"2024-05-01T10:00:30Z\"}", NULL, RECEIVED,
                "2024-05-01T12:00:00.000Z");
    /* A correction that would leave the years 1..9999 falls back to receivedAt. */
    expect_time("{\"userId\":\"u\",\"originalTimestamp\":\"0001-01-01T00:00:00Z\","
                "\"sentAt\":\"9999-12-31T00:00:00Z\"}",
                NULL, RECEIVED, "2024-05-01T12:00:00.000Z");
}

static void test_times_reformatted(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    env.sent_at = "2024-05-01T12:00:01+02:00";
    ev_event ev;
    ok("{\"userId\":\"u\",\"originalTimestamp\":\"2024-05-01 10:00:00.123456z\"}", EV_PAGE, &env,
       &ev);
    json_t *b = body_of(&ev);
    assert_string_equal(str_at(b, "originalTimestamp"), "2024-05-01T10:00:00.123Z");
    /* The batch's sentAt is copied into the event, in UTC. */
    assert_string_equal(str_at(b, "sentAt"), "2024-05-01T10:00:01.000Z");
    assert_string_equal(str_at(b, "receivedAt"), "2024-05-01T12:00:00.000Z");
    json_decref(b);
    ev_event_free(&ev);

    env.sent_at = "soon";
    ev_error err = bad("{\"userId\":\"u\"}", EV_PAGE, &env);
    assert_string_equal(err.code, "invalid_field");
    assert_string_equal(err.field, "sentAt");
    assert_string_equal(err.message, "the batch's sentAt must be an RFC 3339 date-time");
}

/* ---- batch envelope ---- */

static void test_batch_merge(void **state) {
    (void)state;
    json_t *ctx = parse("{\"ip\":\"1.2.3.4\",\"library\":{\"name\":\"batch\"},\"locale\":\"de\"}");
    json_t *integ = parse("{\"All\":false}");
    ev_envelope env = {.received_ms = RECEIVED, .context = ctx, .integrations = integ};

    json_t *raw = parse("{\"userId\":\"u\",\"context\":{\"library\":{\"name\":\"ev\"},"
                        "\"locale\":null}}");
    ev_event ev;
    ev_error err;
    assert_int_equal(ev_normalize(raw, EV_PAGE, &env, &ev, &err), 0);
    json_t *b = body_of(&ev);
    /* The event's keys win, even when null; the batch fills the gaps; nothing is merged deeper. */
    json_t *expect = parse("{\"library\":{\"name\":\"ev\"},\"locale\":null,\"ip\":\"1.2.3.4\"}");
    assert_true(json_equal(json_object_get(b, "context"), expect));
    json_decref(expect);
    expect = parse("{\"All\":false}");
    assert_true(json_equal(json_object_get(b, "integrations"), expect));
    json_decref(expect);
    json_decref(b);
    ev_event_free(&ev);
    /* Neither the raw event nor the batch objects were changed. */
    assert_int_equal(json_object_size(json_object_get(raw, "context")), 2);
    assert_int_equal(json_object_size(ctx), 3);
    json_decref(raw);

    /* An event with no context takes the batch's whole. */
    raw = parse("{\"userId\":\"u\"}");
    assert_int_equal(ev_normalize(raw, EV_PAGE, &env, &ev, &err), 0);
    b = body_of(&ev);
    assert_true(json_equal(json_object_get(b, "context"), ctx));
    json_decref(b);
    ev_event_free(&ev);
    json_decref(raw);
    json_decref(ctx);
    json_decref(integ);

    /* A batch context that is not an object is refused. */
    json_t *notobj = parse("[1]");
    env.context = notobj;
    env.integrations = NULL;
    err = bad("{\"userId\":\"u\"}", EV_PAGE, &env);
    assert_string_equal(err.code, "invalid_field");
    assert_string_equal(err.field, "context");
    assert_string_equal(err.message, "the batch's context must be an object");
    json_decref(notobj);
}

/* ---- limits ---- */

/* {"userId":"u","properties": + levels nested objects {"a":...} + } */
static char *nested(const char *open, const char *close, int levels) {
    size_t lo = strlen(open), lc = strlen(close);
    char *s = malloc(64 + (size_t)levels * (lo + lc));
    strcpy(s, "{\"userId\":\"u\",\"properties\":");
    char *p = s + strlen(s);
    for (int i = 0; i < levels; i++, p += lo)
        memcpy(p, open, lo);
    memcpy(p, "1", 1);
    p++;
    for (int i = 0; i < levels; i++, p += lc)
        memcpy(p, close, lc);
    strcpy(p, "}");
    return s;
}

static void test_depth(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    /* The event is depth 1, so properties and 30 objects under it reach exactly EV_MAX_DEPTH. */
    char *s = nested("{\"a\":", "}", EV_MAX_DEPTH - 1);
    ev_event ev;
    ok(s, EV_PAGE, &env, &ev);
    ev_event_free(&ev);
    free(s);
    s = nested("{\"a\":", "}", EV_MAX_DEPTH);
    ev_error err = bad(s, EV_PAGE, &env);
    free(s);
    assert_string_equal(err.code, "too_deep");
    /* The k-th nested object is "properties" followed by k-1 times ".a", at depth k+1: the 32nd is
     * the first too deep. */
    char path[256] = "properties";
    for (int i = 0; i < EV_MAX_DEPTH - 1; i++)
        strcat(path, ".a");
    assert_string_equal(err.field, path);
    assert_non_null(strstr(err.message, "nests deeper than 32 levels"));

    /* Arrays count the same, and their paths use [i]. */
    s = nested("[", "]", EV_MAX_DEPTH);
    err = bad(s, EV_PAGE, &env);
    free(s);
    assert_string_equal(err.code, "too_deep");
    assert_int_equal(strncmp(err.field, "properties[0][0]", 16), 0);

    /* Far deeper than the limit (jansson parses up to 2048 levels): refused at the first container
     * too deep, without recursing further. */
    s = nested("[", "]", 2000);
    err = bad(s, EV_PAGE, &env);
    free(s);
    assert_string_equal(err.code, "too_deep");
    strcpy(path, "properties");
    for (int i = 0; i < EV_MAX_DEPTH - 1; i++)
        strcat(path, "[0]");
    assert_string_equal(err.field, path);

    /* A path longer than the error's field is cut to fit it. */
    s = nested("{\"a_rather_long_key_name\":", "}", EV_MAX_DEPTH);
    err = bad(s, EV_PAGE, &env);
    free(s);
    assert_string_equal(err.code, "too_deep");
    assert_int_equal(strlen(err.field), sizeof err.field - 1);
    assert_int_equal(strncmp(err.field, "properties.a_rather_long_key_name.a_rather", 42), 0);

    /* A batch context counts as the event's context (depth 2). */
    char *ctx_text = nested("{\"a\":", "}", EV_MAX_DEPTH);
    json_t *ctx_event = parse(ctx_text);
    free(ctx_text);
    env.context = json_object_get(ctx_event, "properties");
    err = bad("{\"userId\":\"u\"}", EV_PAGE, &env);
    assert_string_equal(err.code, "too_deep");
    assert_int_equal(strncmp(err.field, "context.a.a", 11), 0);
    json_decref(ctx_event);
}

/* A body of exactly EV_MAX_BYTES is accepted and one byte more is not. */
static void test_size_limit(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    const char *fmt = "{\"userId\":\"u\",\"messageId\":\"m\",\"properties\":{\"pad\":\"%s\"}}";
    ev_event ev;
    ok("{\"userId\":\"u\",\"messageId\":\"m\",\"properties\":{\"pad\":\"\"}}", EV_PAGE, &env, &ev);
    size_t overhead = ev.body_len;
    ev_event_free(&ev);

    size_t pad = EV_MAX_BYTES - overhead;
    char *padding = malloc(pad + 2);
    memset(padding, 'x', pad + 1);
    padding[pad] = '\0';
    char *text = malloc(pad + 128);
    snprintf(text, pad + 128, fmt, padding);
    ok(text, EV_PAGE, &env, &ev);
    assert_int_equal(ev.body_len, EV_MAX_BYTES);
    ev_event_free(&ev);

    padding[pad] = 'x';
    padding[pad + 1] = '\0';
    snprintf(text, pad + 128, fmt, padding);
    ev_error err = bad(text, EV_PAGE, &env);
    assert_string_equal(err.code, "event_too_large");
    assert_string_equal(err.field, "");
    assert_string_equal(err.message, "the event is larger than 32768 bytes");
    free(text);
    free(padding);

    /* A megabyte-sized userId is an id error, and a megabyte property a size error. */
    size_t big = 1024 * 1024;
    char *huge = malloc(big + 64);
    memcpy(huge, "{\"userId\":\"", 11);
    memset(huge + 11, 'u', big);
    memcpy(huge + 11 + big, "\"}", 3);
    err = bad(huge, EV_PAGE, &env);
    assert_string_equal(err.field, "userId");
    memcpy(huge, "{\"userId\":\"u\",\"name\":\"", 22);
    memset(huge + 22, 'n', big);
    memcpy(huge + 22 + big, "\"}", 3);
    err = bad(huge, EV_PAGE, &env);
    assert_string_equal(err.code, "event_too_large");
    free(huge);

    /* Escaping counts: the limit is on the serialised bytes. */
    char *quotes = malloc(20000 * 2 + 64);
    strcpy(quotes, "{\"userId\":\"u\",\"name\":\"");
    char *p = quotes + strlen(quotes);
    for (int i = 0; i < 20000; i++, p += 2)
        memcpy(p, "\\\"", 2);
    strcpy(p, "\"}");
    err = bad(quotes, EV_PAGE, &env);
    assert_string_equal(err.code, "event_too_large");
    free(quotes);
}

/* ---- e-commerce ---- */

static void test_commerce_event(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    const char *fixture =
        "{\"type\":\"track\",\"userId\":\"u1\",\"messageId\":\"m-1\",\"timestamp\":"
        "\"2024-05-01T10:00:00Z\",\"event\":\"Order Completed\",\"properties\":{\"order_id\":"
        "\"50314b8e\",\"total\":27.5,\"revenue\":25,\"shipping\":3,\"tax\":2,\"discount\":2.5,"
        "\"coupon\":\"hasbros\",\"currency\":\"USD\",\"products\":[{\"product_id\":\"507f1f77\","
        "\"sku\":\"45790-32\",\"name\":\"Monopoly\",\"price\":19,\"quantity\":1,\"category\":"
        "\"Games\"},{\"product_id\":\"505bd767\",\"sku\":\"46493-32\",\"name\":\"Uno\",\"price\":3,"
        "\"quantity\":2}]}}";
    ev_event ev;
    ok(fixture, EV_NTYPES, &env, &ev);
    json_t *b = body_of(&ev);
    assert_string_equal(str_at(b, "kind"), "order_completed");
    assert_non_null(ev.commerce);
    assert_int_equal(ev.commerce->kind, CM_ORDER_COMPLETED);
    assert_string_equal(ev.commerce->order_id, "50314b8e");
    assert_int_equal(ev.commerce->nproducts, 2);
    assert_int_equal(ev.commerce->products[1].quantity, 2);
    /* The properties were already well-typed, so they are stored as sent. */
    json_t *raw = parse(fixture);
    assert_true(json_equal(json_object_get(b, "properties"), json_object_get(raw, "properties")));
    json_decref(raw);
    json_decref(b);
    ev_event_free(&ev);
}

static void test_commerce_coercion(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    const char *text = "{\"userId\":\"u\",\"event\":\"Completed Order\",\"properties\":{"
                       "\"orderId\":5001,\"currency\":\"eur\",\"total\":\"39.98\",\"products\":["
                       "{\"id\":77,\"price\":\"19.99\",\"quantity\":\"2\"}]}}";
    json_t *raw = parse(text);
    char *before = json_dumps(raw, JSON_COMPACT | JSON_SORT_KEYS);
    ev_event ev;
    ev_error err;
    assert_int_equal(ev_normalize(raw, EV_TRACK, &env, &ev, &err), 0);
    json_t *b = body_of(&ev);
    assert_string_equal(str_at(b, "kind"), "order_completed");
    json_t *expect = parse("{\"orderId\":\"5001\",\"currency\":\"EUR\",\"total\":39.98,"
                           "\"products\":[{\"id\":\"77\",\"price\":19.99,\"quantity\":2}]}");
    assert_true(json_equal(json_object_get(b, "properties"), expect));
    json_decref(expect);
    /* Reals come back as the client wrote them. */
    assert_non_null(strstr(ev.body, "\"price\":19.99,"));
    assert_string_equal(ev.commerce->order_id, "5001");
    assert_string_equal(ev.commerce->currency, "EUR");
    assert_string_equal(ev.commerce->products[0].product_id, "77");
    json_decref(b);
    ev_event_free(&ev);
    /* The caller's event is untouched. */
    char *after = json_dumps(raw, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(before, after);
    free(before);
    free(after);
    json_decref(raw);

    /* A commerce type error is reported with its full path. */
    err = bad("{\"userId\":\"u\",\"event\":\"Order Completed\",\"properties\":{\"products\":["
              "{\"quantity\":1},{\"quantity\":\"two\"}]}}",
              EV_TRACK, &env);
    assert_string_equal(err.code, "invalid_field");
    assert_string_equal(err.field, "properties.products[1].quantity");
    assert_string_equal(err.message, "properties.products[1].quantity must be a whole number >= 0");
    err =
        bad("{\"userId\":\"u\",\"event\":\"Product Viewed\",\"properties\":{\"price\":\"cheap\"}}",
            EV_TRACK, &env);
    assert_string_equal(err.field, "properties.price");
    assert_string_equal(err.message, "properties.price must be a number");
}

/* "kind" is engaged's: a client's is dropped, and only commerce track events get one. */
static void test_kind_reserved(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    ev_event ev;
    ok("{\"userId\":\"u\",\"event\":\"Signed Up\",\"kind\":\"order_completed\"}", EV_TRACK, &env,
       &ev);
    assert_null(strstr(ev.body, "kind"));
    assert_null(ev.commerce);
    ev_event_free(&ev);
    /* A page named like a commerce event is not one. */
    ok("{\"userId\":\"u\",\"event\":\"Order Completed\",\"properties\":{\"total\":\"x\"}}", EV_PAGE,
       &env, &ev);
    assert_null(strstr(ev.body, "kind"));
    assert_null(ev.commerce);
    ev_event_free(&ev);
    /* A commerce event without properties still gets its kind. */
    ok("{\"userId\":\"u\",\"event\":\"cart viewed\"}", EV_TRACK, &env, &ev);
    json_t *b = body_of(&ev);
    assert_string_equal(str_at(b, "kind"), "cart_viewed");
    assert_null(json_object_get(b, "properties"));
    assert_int_equal(ev.commerce->nproducts, 0);
    json_decref(b);
    ev_event_free(&ev);
}

static void test_reals_precision(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    ev_event ev;
    ok("{\"userId\":\"u\",\"properties\":{\"a\":0.1,\"b\":19.99,\"c\":1e-7,\"d\":20.0,"
       "\"e\":123456789012.5}}",
       EV_PAGE, &env, &ev);
    assert_non_null(
        strstr(ev.body, "{\"a\":0.1,\"b\":19.99,\"c\":1e-7,\"d\":20.0,\"e\":123456789012.5}"));
    ev_event_free(&ev);
}

/* Every finite double is written with the fewest digits that read back as the same double. */
static void test_real_range(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    ev_event ev;
    ok("{\"userId\":\"u\",\"properties\":{\"x\":1.7976931348623157e308,\"y\":-1e308,"
       "\"z\":4.9e-324,\"w\":0.30000000000000004}}",
       EV_PAGE, &env, &ev);
    json_t *b = body_of(&ev);
    json_t *p = json_object_get(b, "properties");
    assert_true(json_real_value(json_object_get(p, "x")) == 1.7976931348623157e308);
    assert_true(json_real_value(json_object_get(p, "y")) == -1e308);
    assert_true(json_real_value(json_object_get(p, "z")) == 4.9e-324);
    assert_true(json_real_value(json_object_get(p, "w")) == 0.1 + 0.2);
    assert_non_null(strstr(ev.body, "\"w\":0.30000000000000004"));
    assert_non_null(strstr(ev.body, "\"y\":-1e308"));
    json_decref(b);
    ev_event_free(&ev);
    /* A numeric string that overflows a double is not a price. */
    ev_error err = bad("{\"userId\":\"u\",\"event\":\"Order Completed\",\"properties\":{\"total\":"
                       "\"1e999\"}}",
                       EV_TRACK, &env);
    assert_string_equal(err.code, "invalid_field");
    assert_string_equal(err.field, "properties.total");
}

/* The fast path takes the shapes clients send every day, with the same result (ok() compares). */
static void taken(const char *text, int type, const ev_envelope *env) {
    ev_event ev, fast;
    ok(text, type, env, &ev);
    ev_event_free(&ev);
    if (run_fast(text, type, env, &fast) != 0) fail_msg("the fast path declined %s", text);
    ev_event_free(&fast);
}

static void declined(const char *text, int type, const ev_envelope *env) {
    ev_event ev, fast;
    ok(text, type, env, &ev);
    ev_event_free(&ev);
    if (run_fast(text, type, env, &fast) == 0) fail_msg("the fast path took %s", text);
}

static void test_fast_path(void **state) {
    (void)state;
    ev_envelope env = env_at(RECEIVED);
    /* bench/events.lua's event. */
    taken("{\"userId\":\"user-1\",\"event\":\"Product Viewed\",\"properties\":{\"product_id\":"
          "\"sku-1\",\"price\":19.99,\"name\":\"Thing\",\"category\":\"Cat\",\"currency\":\"usd\"},"
          "\"context\":{\"library\":{\"name\":\"analytics.js\",\"version\":\"2.11.1\"},\"ip\":"
          "\"1.2.3.4\"},\"messageId\":\"m-1\",\"timestamp\":\"2024-05-01T10:00:00Z\"}",
          EV_TRACK, &env);
    /* analytics-node's batch item, with the batch's sentAt and context merged in. */
    json_t *ctx = parse("{\"ip\":\"9.9.9.9\",\"library\":{\"name\":\"x\"},\"locale\":\"fr\"}");
    ev_envelope benv = {.received_ms = RECEIVED,
                        .context = ctx,
                        .integrations = NULL,
                        .sent_at = "2024-05-01T11:59:59.000Z"};
    taken(
        "{\"type\":\"track\",\"event\":\"Signed Up\",\"userId\":\"u1\",\"properties\":"
        "{\"plan\":\"pro\",\"seats\":3,\"trial\":false,\"tags\":[\"a\",1,null,2.50]},\"context\":"
        "{\"library\":{\"name\":\"@segment/analytics-node\",\"version\":\"2.1.0\"}},\"messageId\":"
        "\"node-next-1\",\"_metadata\":{\"nodeVersion\":\"20.1.0\"},\"originalTimestamp\":"
        "\"2024-05-01T11:59:58.500Z\",\"integrations\":{}}",
        EV_NTYPES, &benv);
    /* No context of its own: the batch's is appended, after receivedAt. */
    taken("{\"type\":\"page\",\"anonymousId\":\"a1\",\"userId\":null,\"name\":\"Home\"}", EV_NTYPES,
          &benv);
    json_decref(ctx);
    /* RudderStack's identify: null userId, traits twice, its own sentAt, receivedAt overwritten. */
    taken(
        "{\"type\":\"identify\",\"anonymousId\":\"a-1\",\"userId\":\"\",\"traits\":{\"email\":"
        "\"X@Y.z\",\"name\":\"Zo\u00e9 \\\"Z\\\"\"},\"context\":{\"traits\":{\"email\":\"X@Y.z\"}},"
        "\"receivedAt\":\"1999-01-01T00:00:00Z\",\"sentAt\":\"2024-05-01T11:00:00+01:00\","
        "\"originalTimestamp\":\"2024-05-01T10:59:00Z\",\"messageId\":null,\"timestamp\":null}",
        EV_NTYPES, &env);
    /* An order: string prices and counts coerced in the properties, kind appended. */
    taken("{\"userId\":\"u2\",\"event\":\"Order Completed\",\"properties\":{\"order_id\":\"o1\","
          "\"total\":\"30.5\",\"currency\":\"eur\",\"products\":[{\"product_id\":\"p1\",\"price\":"
          "\"10.25\",\"quantity\":\"2\"},{\"product_id\":\"p2\",\"price\":10}]},\"kind\":\"junk\","
          "\"writeKey\":\"wk\"}",
          EV_TRACK, &env);
    /* Properties already typed are copied as sent; "usd" above was rewritten in the tree. */
    taken("{\"userId\":\"u3\",\"event\":\"product_added\",\"properties\":{\"product_id\":\"p9\","
          "\"price\":1e2,\"quantity\":3,\"currency\":\"USD\",\"note\":\"tab\\there\"}}",
          EV_TRACK, &env);
    /* Group and alias need their ids. */
    taken("{\"userId\":\"u\",\"groupId\":\"g1\",\"traits\":{\"plan\":\"x\"}}", EV_GROUP, &env);
    taken("{\"userId\":\"u\",\"previousId\":\"a9\"}", EV_ALIAS, &env);
    /* Rare shapes go the jansson way, with the same result. */
    declined("{\"userId\":42,\"event\":\"x\"}", EV_TRACK, &env);
    declined("{\"userId\":\"u\",\"event\":\"x\",\"p\":1,\"p\":2}", EV_TRACK, &env);
    declined("{\"userId\":\"u\",\"groupId\":7}", EV_GROUP, &env);
    declined("{\"userId\":\"u\",\"event\":\"x\",\"caf\\u00e9\":1}", EV_TRACK, &env);
}

/* The engine's tree holds what the engine reads, and no more: the same from both paths (ok()
 * compares them), from the event's own context, a batch's, and the two merged. The type, the
 * messageId, the ids and a track's name are not in it: they come beside it (ev_event.type,
 * .message_id, .user_id, .anonymous_id, .event_name), and an event with nothing else the engine
 * reads has no tree at all. */
static void test_engine_tree(void **state) {
    (void)state;
    json_t *bctx = parse("{\"device\":{\"type\":\"mobile\"},\"os\":{\"name\":\"iOS\"},"
                         "\"traits\":{\"email\":\"batch@x.test\"}}");
    ev_envelope env = env_at(RECEIVED), benv = env_at(RECEIVED);
    benv.context = bctx;
    const char *text =
        "{\"userId\":\"u1\",\"event\":\"Signed Up\",\"channel\":\"email\",\"properties\":{\"a\":1},"
        "\"integrations\":{\"All\":true},\"context\":{\"library\":{\"name\":\"analytics.js\"},"
        "\"ip\":\"1.2.3.4\",\"locale\":\"fr\",\"page\":{\"path\":\"/\"},\"userAgent\":\"Mozilla\","
        "\"traits\":{\"email\":\"own@x.test\"},\"consent\":{\"categoryPreferences\":{\"ads\":true}}"
        ","
        "\"externalIds\":[],\"app\":{\"name\":\"A\"}}}";
    const ev_envelope *envs[] = {&env, &benv};
    const char *want[] = {
        "{\"channel\":\"email\","
        "\"context\":{\"page\":{\"path\":\"/\"},\"userAgent\":\"Mozilla\",\"traits\":{\"email\":"
        "\"own@x.test\"},\"consent\":{\"categoryPreferences\":{\"ads\":true}},\"externalIds\":[],"
        "\"app\":{\"name\":\"A\"}}}",
        /* Merged: the event's traits win; the batch adds device, not os. */
        "{\"channel\":\"email\","
        "\"context\":{\"page\":{\"path\":\"/\"},\"userAgent\":\"Mozilla\",\"traits\":{\"email\":"
        "\"own@x.test\"},\"consent\":{\"categoryPreferences\":{\"ads\":true}},\"externalIds\":[],"
        "\"app\":{\"name\":\"A\"},\"device\":{\"type\":\"mobile\"}}}",
    };
    for (size_t i = 0; i < 2; i++) {
        ev_event ev;
        ok(text, EV_TRACK, envs[i], &ev);
        assert_int_equal(ev.type, EV_TRACK);
        assert_int_equal(strlen(ev.message_id), 36); /* made up */
        assert_string_equal(ev.user_id, "u1");
        assert_null(ev.anonymous_id);
        assert_string_equal(ev.event_name, "Signed Up");
        json_t *w = parse(want[i]);
        if (!json_equal(ev.json, w)) {
            char *got = json_dumps(ev.json, JSON_SORT_KEYS);
            fail_msg("engine tree %zu: %s", i, got);
        }
        json_decref(w);
        /* The body keeps everything. */
        assert_non_null(strstr(ev.body, "\"library\":{\"name\":\"analytics.js\"}"));
        assert_non_null(strstr(ev.body, "\"integrations\":{\"All\":true}"));
        ev_event_free(&ev);
    }
    /* Only the batch's context: its members the engine reads. */
    ev_event ev;
    ok("{\"userId\":\"u2\",\"event\":\"x\"}", EV_TRACK, &benv, &ev);
    json_t *w = parse("{\"device\":{\"type\":\"mobile\"},\"traits\":{\"email\":\"batch@x.test\"}}");
    assert_true(json_equal(json_object_get(ev.json, "context"), w));
    json_decref(w);
    assert_non_null(strstr(ev.body, "\"os\":{\"name\":\"iOS\"}"));
    ev_event_free(&ev);
    /* A context with nothing the engine reads (a server-side SDK's) is left out of the tree, on
     * its own and merged with such a batch context; the body keeps it. */
    json_t *lib = parse("{\"library\":{\"name\":\"analytics-node\"},\"os\":{\"name\":\"x\"}}");
    ev_envelope lenv = env_at(RECEIVED);
    lenv.context = lib;
    const ev_envelope *plain[] = {&env, &lenv};
    for (size_t i = 0; i < 2; i++) {
        ok("{\"userId\":\"u3\",\"event\":\"x\",\"context\":{\"library\":{\"name\":\"n\"},"
           "\"ip\":\"1.2.3.4\"}}",
           EV_TRACK, plain[i], &ev);
        assert_null(ev.json); /* nothing else the engine reads: no tree */
        assert_non_null(strstr(ev.body, "\"ip\":\"1.2.3.4\""));
        ev_event_free(&ev);
    }
    ok("{\"userId\":\"u3\",\"event\":\"x\"}", EV_TRACK, &lenv, &ev);
    assert_null(ev.json);
    assert_string_equal(ev.event_name, "x");
    ev_event_free(&ev);
    /* The name is a track's only, decoded; the ids as text, a number's as its digits. */
    const struct {
        const char *json;
        int type;
        const char *user, *anon, *name;
    } beside[] = {
        {"{\"userId\":\"u\\u00e9\",\"event\":\"Caf\\u00e9 \\\"Visited\\\"\"}", EV_TRACK,
         "u\xc3\xa9", NULL, "Caf\xc3\xa9 \"Visited\""},
        {"{\"userId\":42,\"anonymousId\":\"a1\",\"event\":\"x\"}", EV_TRACK, "42", "a1", "x"},
        {"{\"anonymousId\":\"a2\",\"event\":\"ignored\"}", EV_PAGE, NULL, "a2", NULL},
        {"{\"userId\":\"u\",\"previousId\":\"old\"}", EV_ALIAS, "u", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof beside / sizeof *beside; i++) {
        ok(beside[i].json, beside[i].type, &env, &ev);
        assert_true(same_str(ev.user_id, beside[i].user));
        assert_true(same_str(ev.anonymous_id, beside[i].anon));
        assert_true(same_str(ev.event_name, beside[i].name));
        assert_null(json_object_get(ev.json, "userId"));
        assert_null(json_object_get(ev.json, "anonymousId"));
        assert_null(json_object_get(ev.json, "event"));
        ev_event_free(&ev);
    }
    /* previousId stays in the tree: the engine reads it from there. */
    ok("{\"userId\":\"u\",\"previousId\":\"old\"}", EV_ALIAS, &env, &ev);
    assert_string_equal(json_string_value(json_object_get(ev.json, "previousId")), "old");
    ev_event_free(&ev);
    json_decref(lib);
    json_decref(bctx);
}

/* Runs last: the cases above went through the fast path in numbers, not only the few named. */
static void test_fast_path_coverage(void **state) {
    (void)state;
    print_message("fast path: took %zu events, declined %zu\n", fast_taken, fast_declined);
    assert_true(fast_taken >= 40);
    assert_true(fast_declined >= 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_error_set),
        cmocka_unit_test(test_number_text),
        cmocka_unit_test(test_track_body_exact),
        cmocka_unit_test(test_every_type),
        cmocka_unit_test(test_endpoint_type_wins),
        cmocka_unit_test(test_message_id),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nulls_dropped),
        cmocka_unit_test(test_skew_correction),
        cmocka_unit_test(test_times_reformatted),
        cmocka_unit_test(test_batch_merge),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_commerce_event),
        cmocka_unit_test(test_commerce_coercion),
        cmocka_unit_test(test_kind_reserved),
        cmocka_unit_test(test_reals_precision),
        cmocka_unit_test(test_real_range),
        cmocka_unit_test(test_fast_path),
        cmocka_unit_test(test_engine_tree),
        cmocka_unit_test(test_fast_path_coverage),
    };
    return cmocka_run_group_tests_name("ev", tests, NULL, NULL);
}
