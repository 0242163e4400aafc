/* Unit tests for c360/consent: the default policies, latest-wins with out-of-order times and ties,
 * the "all" channel, merge, the caps, the state and history JSON, the endpoint body with every
 * error it names, consent read from events, and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "c360/consent.h"

/* 2024-05-01T10:00:00Z and steps from it. */
#define T0 1714557600000LL
#define MIN 60000LL
#define HOUR 3600000LL

static consent_record rec(consent_channel ch, const char *purpose, consent_status st, int64_t at) {
    consent_record r = {.channel = ch, .status = st, .at_ms = at};
    snprintf(r.purpose, sizeof r.purpose, "%s", purpose);
    snprintf(r.source, sizeof r.source, "%s", "api");
    snprintf(r.actor, sizeof r.actor, "%s", "customer");
    return r;
}

static void add(consent_ledger *l, consent_channel ch, const char *purpose, consent_status st,
                int64_t at) {
    consent_record r = rec(ch, purpose, st, at);
    assert_int_equal(consent_append(l, &r, 0), 1);
}

static json_t *parse(const char *text) {
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!v) fail_msg("test JSON does not parse: %s: %s", e.text, text);
    return v;
}

static char *dump(const json_t *v) {
    char *s = json_dumps(v, JSON_COMPACT);
    assert_non_null(s);
    return s;
}

static void assert_json(const json_t *v, const char *want) {
    char *s = dump(v);
    if (strcmp(s, want) != 0) fail_msg("got  %s\nwant %s", s, want);
    free(s);
}

/* ---- names and defaults ---- */

static void test_names(void **state) {
    (void)state;
    static const char *const ch[] = {"email", "sms",   "whatsapp", "messenger", "push",
                                     "web",   "phone", "post",     "all"};
    for (int i = 0; i < CONSENT_NCHANNELS; i++) {
        assert_string_equal(consent_channel_name(i), ch[i]);
        assert_int_equal(consent_channel_lookup(ch[i]), i);
    }
    assert_null(consent_channel_name(CONSENT_NCHANNELS));
    assert_null(consent_channel_name(-1));
    assert_int_equal(consent_channel_lookup("Email"), -1);
    assert_int_equal(consent_channel_lookup("fax"), -1);
    assert_int_equal(consent_channel_lookup(NULL), -1);
    assert_int_equal(consent_status_lookup("granted"), CONSENT_GRANTED);
    assert_int_equal(consent_status_lookup("denied"), CONSENT_DENIED);
    assert_int_equal(consent_status_lookup("withdrawn"), CONSENT_WITHDRAWN);
    assert_int_equal(consent_status_lookup("yes"), -1);
    assert_null(consent_status_name(CONSENT_NSTATUS));
    assert_true(consent_name_valid("marketing"));
    assert_true(consent_name_valid("a_1"));
    assert_true(consent_name_valid("abcdefghijklmnopqrstuvwxyz012345"));   /* 32 */
    assert_false(consent_name_valid("abcdefghijklmnopqrstuvwxyz0123456")); /* 33 */
    assert_false(consent_name_valid(""));
    assert_false(consent_name_valid("Marketing"));
    assert_false(consent_name_valid("news-letter"));
    assert_false(consent_name_valid(NULL));
}

static void test_defaults(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    assert_int_equal(consent_purpose_policy("transactional"), CONSENT_OPT_OUT);
    assert_int_equal(consent_purpose_policy("marketing"), CONSENT_OPT_IN);
    assert_int_equal(consent_purpose_policy("profiling"), CONSENT_OPT_IN);
    assert_int_equal(consent_purpose_policy("newsletter"), CONSENT_OPT_IN);
    for (int ch = 0; ch < CONSENT_NCHANNELS; ch++) {
        assert_true(consent_allows(l, ch, "transactional", CONSENT_POLICY_DEFAULT));
        assert_false(consent_allows(l, ch, "marketing", CONSENT_POLICY_DEFAULT));
        assert_false(consent_allows(l, ch, "profiling", CONSENT_POLICY_DEFAULT));
        assert_false(consent_allows(l, ch, "newsletter", CONSENT_POLICY_DEFAULT));
    }
    /* The caller's policy replaces the default when nothing was recorded. */
    assert_true(consent_allows(l, CONSENT_EMAIL, "newsletter", CONSENT_OPT_OUT));
    assert_false(consent_allows(l, CONSENT_EMAIL, "transactional", CONSENT_OPT_IN));
    /* Invalid names are never allowed, even opt-out. */
    assert_false(consent_allows(l, CONSENT_EMAIL, "Transactional", CONSENT_POLICY_DEFAULT));
    assert_false(consent_allows(l, CONSENT_EMAIL, NULL, CONSENT_OPT_OUT));
    assert_false(consent_allows(l, CONSENT_NCHANNELS, "transactional", CONSENT_OPT_OUT));
    /* A record decides whatever the policy. */
    add(l, CONSENT_EMAIL, "transactional", CONSENT_DENIED, T0);
    assert_false(consent_allows(l, CONSENT_EMAIL, "transactional", CONSENT_OPT_OUT));
    assert_true(consent_allows(l, CONSENT_SMS, "transactional", CONSENT_POLICY_DEFAULT));
    add(l, CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0);
    assert_true(consent_allows(l, CONSENT_EMAIL, "marketing", CONSENT_OPT_IN));
    assert_false(consent_allows(l, CONSENT_SMS, "marketing", CONSENT_POLICY_DEFAULT));
    consent_ledger_free(l);
}

/* ---- latest wins ---- */

static void test_latest_wins(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    /* Recorded out of order: the later `at` decides, not the later append. */
    add(l, CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0 + 2 * HOUR);
    add(l, CONSENT_EMAIL, "marketing", CONSENT_DENIED, T0 + 1 * HOUR);
    assert_int_equal(consent_count(l), 2);
    const consent_record *c = consent_current(l, CONSENT_EMAIL, "marketing");
    assert_non_null(c);
    assert_int_equal(c->status, CONSENT_GRANTED);
    assert_int_equal(c->at_ms, T0 + 2 * HOUR);
    assert_true(consent_allows(l, CONSENT_EMAIL, "marketing", CONSENT_POLICY_DEFAULT));
    /* The same `at`: the later in the ledger wins. */
    add(l, CONSENT_EMAIL, "marketing", CONSENT_WITHDRAWN, T0 + 2 * HOUR);
    c = consent_current(l, CONSENT_EMAIL, "marketing");
    assert_int_equal(c->status, CONSENT_WITHDRAWN);
    assert_ptr_equal(c, consent_get(l, 2));
    assert_false(consent_allows(l, CONSENT_EMAIL, "marketing", CONSENT_POLICY_DEFAULT));
    /* Pairs are independent. */
    assert_null(consent_current(l, CONSENT_EMAIL, "profiling"));
    assert_null(consent_current(l, CONSENT_SMS, "marketing"));
    assert_null(consent_current(l, CONSENT_EMAIL, NULL));
    assert_null(consent_get(l, 3));
    consent_ledger_free(l);
}

/* ---- the "all" channel ---- */

static void test_all_channel(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    add(l, CONSENT_ALL, "marketing", CONSENT_GRANTED, T0);
    for (int ch = 0; ch < CONSENT_NCHANNELS; ch++)
        assert_true(consent_allows(l, ch, "marketing", CONSENT_POLICY_DEFAULT));
    /* A later specific record overrides "all" for its channel only. */
    add(l, CONSENT_EMAIL, "marketing", CONSENT_DENIED, T0 + MIN);
    assert_false(consent_allows(l, CONSENT_EMAIL, "marketing", CONSENT_POLICY_DEFAULT));
    assert_true(consent_allows(l, CONSENT_SMS, "marketing", CONSENT_POLICY_DEFAULT));
    assert_true(consent_allows(l, CONSENT_ALL, "marketing", CONSENT_POLICY_DEFAULT));
    /* An older specific record does not. */
    add(l, CONSENT_SMS, "marketing", CONSENT_DENIED, T0 - MIN);
    assert_true(consent_allows(l, CONSENT_SMS, "marketing", CONSENT_POLICY_DEFAULT));
    /* A later "all" record overrides every specific one. */
    add(l, CONSENT_ALL, "marketing", CONSENT_WITHDRAWN, T0 + 2 * MIN);
    for (int ch = 0; ch < CONSENT_NCHANNELS; ch++)
        assert_false(consent_allows(l, ch, "marketing", CONSENT_POLICY_DEFAULT));
    add(l, CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0 + 3 * MIN);
    assert_true(consent_allows(l, CONSENT_EMAIL, "marketing", CONSENT_POLICY_DEFAULT));
    assert_false(consent_allows(l, CONSENT_PUSH, "marketing", CONSENT_POLICY_DEFAULT));
    const consent_record *e = consent_effective(l, CONSENT_EMAIL, "marketing");
    assert_int_equal(e->channel, CONSENT_EMAIL);
    assert_int_equal(e->at_ms, T0 + 3 * MIN);
    e = consent_effective(l, CONSENT_PUSH, "marketing");
    assert_int_equal(e->channel, CONSENT_ALL);
    assert_int_equal(e->status, CONSENT_WITHDRAWN);
    /* For "all" itself only the "all" records count. */
    assert_false(consent_allows(l, CONSENT_ALL, "marketing", CONSENT_POLICY_DEFAULT));
    /* A tie between "all" and a specific record: the later in the ledger wins. */
    add(l, CONSENT_ALL, "transactional", CONSENT_DENIED, T0);
    add(l, CONSENT_SMS, "transactional", CONSENT_GRANTED, T0);
    assert_true(consent_allows(l, CONSENT_SMS, "transactional", CONSENT_POLICY_DEFAULT));
    assert_false(consent_allows(l, CONSENT_EMAIL, "transactional", CONSENT_POLICY_DEFAULT));
    consent_ledger_free(l);
}

/* ---- skipping unchanged records ---- */

static void test_skip_unchanged(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    consent_record r = rec(CONSENT_WEB, "marketing", CONSENT_GRANTED, T0);
    assert_int_equal(consent_append(l, &r, CONSENT_SKIP_UNCHANGED), 1);
    r.at_ms = T0 + HOUR;
    assert_int_equal(consent_append(l, &r, CONSENT_SKIP_UNCHANGED), CONSENT_UNCHANGED);
    assert_int_equal(consent_count(l), 1);
    r.status = CONSENT_DENIED;
    assert_int_equal(consent_append(l, &r, CONSENT_SKIP_UNCHANGED), 1);
    /* An older record with another status is history: kept, and not in force. */
    r = rec(CONSENT_WEB, "marketing", CONSENT_GRANTED, T0 - HOUR);
    assert_int_equal(consent_append(l, &r, CONSENT_SKIP_UNCHANGED), 1);
    assert_int_equal(consent_count(l), 3);
    assert_int_equal(consent_current(l, CONSENT_WEB, "marketing")->status, CONSENT_DENIED);
    /* Without the flag the same record is appended. */
    r = rec(CONSENT_WEB, "marketing", CONSENT_DENIED, T0 + 2 * HOUR);
    assert_int_equal(consent_append(l, &r, 0), 1);
    assert_int_equal(consent_count(l), 4);
    consent_ledger_free(l);
}

/* ---- merge ---- */

static void test_merge(void **state) {
    (void)state;
    consent_ledger *a = consent_ledger_new(), *b = consent_ledger_new();
    consent_record r = rec(CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0);
    snprintf(r.source, sizeof r.source, "web_form");
    r.proof = "form:nl-footer ip:203.0.113.7";
    assert_int_equal(consent_append(a, &r, 0), 1);
    add(a, CONSENT_EMAIL, "marketing", CONSENT_WITHDRAWN, T0 + 3 * HOUR);
    add(b, CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0 + 2 * HOUR);
    add(b, CONSENT_SMS, "marketing", CONSENT_GRANTED, T0);
    assert_int_equal(consent_append(b, &r, 0), 1); /* the same record as a's first: kept once */
    assert_int_equal(consent_merge(a, b), 0);
    assert_int_equal(consent_count(a), 4);
    assert_int_equal(consent_count(b), 3); /* src is only read */
    /* Sorted by at; at T0, a's record before b's. */
    assert_int_equal(consent_get(a, 0)->channel, CONSENT_EMAIL);
    assert_string_equal(consent_get(a, 0)->proof, "form:nl-footer ip:203.0.113.7");
    assert_string_equal(consent_get(a, 0)->source, "web_form");
    assert_int_equal(consent_get(a, 1)->channel, CONSENT_SMS);
    assert_int_equal(consent_get(a, 2)->at_ms, T0 + 2 * HOUR);
    assert_int_equal(consent_get(a, 3)->status, CONSENT_WITHDRAWN);
    assert_int_equal(consent_current(a, CONSENT_EMAIL, "marketing")->status, CONSENT_WITHDRAWN);
    assert_true(consent_allows(a, CONSENT_SMS, "marketing", CONSENT_POLICY_DEFAULT));
    /* The proof is a copy: b going away leaves a intact. */
    consent_ledger_free(b);
    assert_string_equal(consent_get(a, 0)->proof, "form:nl-footer ip:203.0.113.7");
    /* Merging with itself and with an empty ledger changes nothing. */
    assert_int_equal(consent_merge(a, a), 0);
    assert_int_equal(consent_count(a), 4);
    consent_ledger *empty = consent_ledger_new();
    assert_int_equal(consent_merge(a, empty), 0);
    assert_int_equal(consent_count(a), 4);
    assert_int_equal(consent_merge(empty, empty), 0);
    assert_int_equal(consent_merge(empty, a), 0);
    assert_int_equal(consent_count(empty), 4);
    consent_ledger_free(empty);
    consent_ledger_free(a);

    /* Ties between the two ledgers: src's record comes later, so it wins. */
    consent_ledger *x = consent_ledger_new(), *y = consent_ledger_new();
    add(x, CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0);
    add(y, CONSENT_EMAIL, "marketing", CONSENT_DENIED, T0);
    assert_int_equal(consent_merge(x, y), 0);
    assert_int_equal(consent_current(x, CONSENT_EMAIL, "marketing")->status, CONSENT_DENIED);
    assert_int_equal(consent_merge(y, x), 0); /* y: denied, then x's granted, then denied (dup) */
    assert_int_equal(consent_count(y), 2);
    assert_int_equal(consent_current(y, CONSENT_EMAIL, "marketing")->status, CONSENT_GRANTED);
    consent_ledger_free(x);
    consent_ledger_free(y);

    /* Duplicates within one ledger are separate appends: a merge keeps them, so the tie they
     * decide stays decided (granted, withdrawn, granted again: granted). */
    consent_ledger *z = consent_ledger_new();
    add(z, CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0);
    add(z, CONSENT_EMAIL, "marketing", CONSENT_WITHDRAWN, T0);
    add(z, CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0);
    assert_int_equal(consent_merge(z, z), 0);
    assert_int_equal(consent_count(z), 3);
    assert_int_equal(consent_current(z, CONSENT_EMAIL, "marketing")->status, CONSENT_GRANTED);
    consent_ledger_free(z);
}

/* ---- caps ---- */

static void test_record_cap(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    /* The oldest record of all is current for its pair: it must survive. */
    add(l, CONSENT_SMS, "marketing", CONSENT_GRANTED, T0 - 1000 * HOUR);
    for (int i = 0; i < 1200; i++)
        add(l, CONSENT_EMAIL, "marketing", i % 2 ? CONSENT_DENIED : CONSENT_GRANTED, T0 + i * MIN);
    assert_int_equal(consent_count(l), CONSENT_MAX_RECORDS);
    assert_int_equal(consent_get(l, 0)->channel, CONSENT_SMS);
    /* The email records kept are the newest 999, in order. */
    assert_int_equal(consent_get(l, 1)->at_ms, T0 + 201 * MIN);
    assert_int_equal(consent_get(l, 999)->at_ms, T0 + 1199 * MIN);
    assert_int_equal(consent_current(l, CONSENT_EMAIL, "marketing")->status, CONSENT_DENIED);
    assert_true(consent_allows(l, CONSENT_SMS, "marketing", CONSENT_POLICY_DEFAULT));
    /* A record older than its pair's current one is itself the oldest superseded: dropped. */
    consent_record old = rec(CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0);
    assert_int_equal(consent_append(l, &old, 0), 1);
    assert_int_equal(consent_count(l), CONSENT_MAX_RECORDS);
    for (size_t i = 0; i < consent_count(l); i++)
        assert_true(consent_get(l, i)->at_ms != T0);
    consent_ledger_free(l);
}

static void test_purpose_cap(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    char p[16];
    for (int i = 0; i < CONSENT_MAX_PURPOSES; i++) {
        snprintf(p, sizeof p, "p%d", i);
        add(l, CONSENT_EMAIL, p, CONSENT_GRANTED, T0);
    }
    consent_record r = rec(CONSENT_EMAIL, "one_more", CONSENT_GRANTED, T0);
    assert_int_equal(consent_append(l, &r, 0), CONSENT_EFULL);
    assert_int_equal(consent_count(l), CONSENT_MAX_PURPOSES);
    /* Known purposes on other channels still go in. */
    add(l, CONSENT_SMS, "p3", CONSENT_GRANTED, T0);
    /* apply is all or nothing. */
    consent_ledger *src = consent_ledger_new();
    add(src, CONSENT_SMS, "p4", CONSENT_DENIED, T0);
    add(src, CONSENT_SMS, "p99", CONSENT_DENIED, T0);
    assert_int_equal(consent_apply(l, src, 0), CONSENT_EFULL);
    assert_int_equal(consent_count(l), CONSENT_MAX_PURPOSES + 1);
    assert_null(consent_current(l, CONSENT_SMS, "p4"));
    consent_ledger_free(src);
    consent_ledger_free(l);
}

static void test_record_check(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    ev_error err;
    consent_record r = rec(CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0);
    assert_int_equal(consent_record_check(&r, &err), 0);
    r.proof = "\xff\xfe";
    assert_int_equal(consent_record_check(&r, &err), -1);
    assert_string_equal(err.field, "proof");
    assert_string_equal(err.message, "proof is not UTF-8 text");
    assert_int_equal(consent_append(l, &r, 0), CONSENT_EINVAL);
    r.proof = "\xed\xa0\x80"; /* a UTF-16 surrogate */
    assert_int_equal(consent_record_check(&r, &err), -1);
    r.proof = "caf\xc3\xa9 \xf0\x9f\x8d\xb0";
    assert_int_equal(consent_record_check(&r, &err), 0);
    r = rec(CONSENT_NCHANNELS, "marketing", CONSENT_GRANTED, T0);
    assert_int_equal(consent_record_check(&r, &err), -1);
    assert_string_equal(err.field, "channel");
    r = rec(CONSENT_EMAIL, "marketing", CONSENT_NSTATUS, T0);
    assert_int_equal(consent_record_check(&r, &err), -1);
    assert_string_equal(err.field, "status");
    r = rec(CONSENT_EMAIL, "marketing", CONSENT_GRANTED, 253402300800000LL); /* year 10000 */
    assert_int_equal(consent_record_check(&r, &err), -1);
    assert_string_equal(err.field, "at");
    r = rec(CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0);
    snprintf(r.actor, sizeof r.actor, "agent:");
    assert_int_equal(consent_record_check(&r, &err), -1);
    assert_string_equal(err.field, "actor");
    snprintf(r.actor, sizeof r.actor, "agent:maria.k@shop");
    assert_int_equal(consent_record_check(&r, &err), 0);
    r.source[0] = '\0';
    assert_int_equal(consent_record_check(&r, &err), -1);
    assert_string_equal(err.field, "source");
    assert_int_equal(consent_count(l), 0);
    consent_ledger_free(l);
}

/* ---- JSON out ---- */

static consent_ledger *sample(void) {
    consent_ledger *l = consent_ledger_new();
    consent_record r = rec(CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0);
    snprintf(r.source, sizeof r.source, "double_opt_in");
    r.proof = "msg-1";
    assert_int_equal(consent_append(l, &r, 0), 1);
    add(l, CONSENT_ALL, "profiling", CONSENT_DENIED, T0 + MIN);
    r = rec(CONSENT_EMAIL, "marketing", CONSENT_WITHDRAWN, T0 + HOUR);
    snprintf(r.source, sizeof r.source, "unsubscribe_link");
    r.proof = "msg-9 \"quoted\"";
    assert_int_equal(consent_append(l, &r, 0), 1);
    r = rec(CONSENT_SMS, "marketing", CONSENT_GRANTED, T0);
    snprintf(r.actor, sizeof r.actor, "agent:7");
    assert_int_equal(consent_append(l, &r, 0), 1);
    add(l, CONSENT_EMAIL, "newsletter", CONSENT_GRANTED, T0);
    return l;
}

static void test_state_json(void **state) {
    (void)state;
    consent_ledger *l = sample();
    json_t *s = consent_state_json(l);
    assert_json(s, "{\"email\":{"
                   "\"marketing\":{\"status\":\"withdrawn\",\"at\":\"2024-05-01T11:00:00.000Z\","
                   "\"source\":\"unsubscribe_link\",\"actor\":\"customer\","
                   "\"proof\":\"msg-9 \\\"quoted\\\"\"},"
                   "\"newsletter\":{\"status\":\"granted\",\"at\":\"2024-05-01T10:00:00.000Z\","
                   "\"source\":\"api\",\"actor\":\"customer\"}},"
                   "\"sms\":{\"marketing\":{\"status\":\"granted\",\"at\":"
                   "\"2024-05-01T10:00:00.000Z\",\"source\":\"api\",\"actor\":\"agent:7\"}},"
                   "\"all\":{\"profiling\":{\"status\":\"denied\",\"at\":"
                   "\"2024-05-01T10:01:00.000Z\",\"source\":\"api\",\"actor\":\"customer\"}}}");
    json_decref(s);
    consent_ledger *e = consent_ledger_new();
    s = consent_state_json(e);
    assert_json(s, "{}");
    json_decref(s);
    consent_ledger_free(e);
    consent_ledger_free(l);
}

/* The history is every record in ledger order, and reads back through consent_parse(). */
static void test_history_round_trip(void **state) {
    (void)state;
    consent_ledger *l = sample();
    json_t *h = consent_history_json(l);
    char *text = dump(h);
    const char *head = "{\"records\":[{\"channel\":\"email\",\"purpose\":\"marketing\","
                       "\"status\":\"granted\",\"at\":\"2024-05-01T10:00:00.000Z\",\"source\":"
                       "\"double_opt_in\",\"actor\":\"customer\",\"proof\":\"msg-1\"},{";
    if (strncmp(text, head, strlen(head)) != 0) fail_msg("history starts %.200s", text);
    assert_int_equal(json_array_size(json_object_get(h, "records")), 5);
    consent_ledger *back = consent_ledger_new();
    consent_defaults d = {.now_ms = T0};
    ev_error err = {0};
    int n = consent_parse(h, &d, back, &err);
    if (n < 0) fail_msg("%s: %s", err.field, err.message);
    assert_int_equal(n, 5);
    json_t *h2 = consent_history_json(back);
    char *text2 = dump(h2);
    assert_string_equal(text, text2);
    free(text);
    free(text2);
    json_decref(h);
    json_decref(h2);
    consent_ledger_free(back);
    consent_ledger_free(l);
}

static void test_forget(void **state) {
    (void)state;
    consent_ledger *l = sample();
    assert_true(consent_allows(l, CONSENT_SMS, "marketing", CONSENT_POLICY_DEFAULT));
    consent_forget(l);
    assert_int_equal(consent_count(l), 0);
    assert_false(consent_allows(l, CONSENT_SMS, "marketing", CONSENT_POLICY_DEFAULT));
    json_t *h = consent_history_json(l);
    assert_json(h, "{\"records\":[]}");
    json_decref(h);
    add(l, CONSENT_SMS, "marketing", CONSENT_GRANTED, T0);
    assert_int_equal(consent_count(l), 1);
    consent_ledger_free(l);
    consent_ledger_free(NULL);
    /* NULL reads as an empty ledger. */
    assert_int_equal(consent_count(NULL), 0);
    assert_null(consent_get(NULL, 0));
    assert_null(consent_effective(NULL, CONSENT_EMAIL, "marketing"));
    assert_true(consent_allows(NULL, CONSENT_EMAIL, "transactional", CONSENT_POLICY_DEFAULT));
    assert_false(consent_allows(NULL, CONSENT_EMAIL, "marketing", CONSENT_POLICY_DEFAULT));
    json_t *s = consent_state_json(NULL);
    assert_json(s, "{}");
    json_decref(s);
    h = consent_history_json(NULL);
    assert_json(h, "{\"records\":[]}");
    json_decref(h);
    consent_forget(NULL);
}

/* ---- the endpoint body ---- */

static const consent_defaults defaults = {.now_ms = T0, .source = "api", .actor = "system"};

static void test_parse_ok(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    ev_error err = {0};
    /* One record, with defaults filled in. */
    json_t *b = parse("{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\","
                      "\"at\":null,\"proof\":null}");
    assert_int_equal(consent_parse(b, &defaults, l, &err), 1);
    json_decref(b);
    const consent_record *r = consent_get(l, 0);
    assert_int_equal(r->channel, CONSENT_EMAIL);
    assert_int_equal(r->status, CONSENT_GRANTED);
    assert_int_equal(r->at_ms, T0);
    assert_string_equal(r->source, "api");
    assert_string_equal(r->actor, "system");
    assert_null(r->proof);
    /* A list, every field given; `at` in another zone; an hour in the future is fine. */
    b = parse("{\"records\":["
              "{\"channel\":\"sms\",\"purpose\":\"reviews\",\"status\":\"denied\","
              "\"at\":\"2024-05-01T12:30:00+02:00\",\"source\":\"web_form\","
              "\"proof\":\"ip:198.51.100.4\",\"actor\":\"agent:42\"},"
              "{\"channel\":\"all\",\"purpose\":\"profiling\",\"status\":\"withdrawn\","
              "\"at\":\"2024-05-01T11:00:00Z\"}]}");
    assert_int_equal(consent_parse(b, &defaults, l, &err), 2);
    json_decref(b);
    assert_int_equal(consent_count(l), 3);
    r = consent_get(l, 1);
    assert_int_equal(r->at_ms, T0 + 30 * MIN);
    assert_string_equal(r->purpose, "reviews");
    assert_string_equal(r->source, "web_form");
    assert_string_equal(r->actor, "agent:42");
    assert_string_equal(r->proof, "ip:198.51.100.4");
    assert_int_equal(consent_get(l, 2)->at_ms, T0 + HOUR);
    /* Defaults NULL: "api" and "system". */
    consent_defaults bare = {.now_ms = T0};
    b = parse("{\"channel\":\"post\",\"purpose\":\"marketing\",\"status\":\"granted\"}");
    assert_int_equal(consent_parse(b, &bare, l, &err), 1);
    json_decref(b);
    assert_string_equal(consent_get(l, 3)->source, "api");
    assert_string_equal(consent_get(l, 3)->actor, "system");
    consent_ledger_free(l);
}

typedef struct pcase {
    const char *body;
    const char *code;
    const char *field;
    const char *message;
} pcase;

/* clang-format off */
static const pcase bad_bodies[] = {
    {"[]", "invalid_body", "", "the body must be a JSON object"},
    {"\"x\"", "invalid_body", "", "the body must be a JSON object"},
    {"{\"records\":{}}", "invalid_field", "records", "records must be an array"},
    {"{\"records\":[]}", "invalid_field", "records", "records must not be empty"},
    {"{\"records\":[{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\"}],"
     "\"extra\":1}", "invalid_field", "extra",
     "extra is not allowed beside records: send {\"records\":[...]} or one record"},
    {"{\"records\":[{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\"},7]}",
     "invalid_field", "records[1]", "records[1] must be an object"},
    {"{\"records\":[{\"channel\":\"email\",\"purpse\":\"marketing\",\"status\":\"granted\"}]}",
     "invalid_field", "records[0].purpse",
     "records[0].purpse is not a field of a consent record (channel, purpose, status, at, "
     "source, proof, actor)"},
    {"{\"purpose\":\"marketing\",\"status\":\"granted\"}", "missing_field", "channel",
     "channel is required"},
    {"{\"channel\":\"\",\"purpose\":\"marketing\",\"status\":\"granted\"}", "missing_field",
     "channel", "channel is required"},
    {"{\"channel\":\"email\",\"status\":\"granted\"}", "missing_field", "purpose",
     "purpose is required"},
    {"{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":null}", "missing_field",
     "status", "status is required"},
    {"{\"channel\":7,\"purpose\":\"marketing\",\"status\":\"granted\"}", "invalid_field",
     "channel", "channel must be a string"},
    {"{\"channel\":\"fax\",\"purpose\":\"marketing\",\"status\":\"granted\"}", "invalid_field",
     "channel", "channel must be one of email, sms, whatsapp, messenger, push, web, phone, post, all"},
    {"{\"channel\":\"email\",\"purpose\":\"Marketing\",\"status\":\"granted\"}", "invalid_field",
     "purpose", "purpose must be 1 to 32 characters of a-z, 0-9 and _"},
    {"{\"channel\":\"email\",\"purpose\":\"abcdefghijklmnopqrstuvwxyz0123456\",\"status\":"
     "\"granted\"}", "invalid_field", "purpose",
     "purpose must be 1 to 32 characters of a-z, 0-9 and _"},
    {"{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":true}", "invalid_field",
     "status", "status must be a string"},
    {"{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"yes\"}", "invalid_field",
     "status", "status must be granted, denied or withdrawn"},
    {"{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\",\"at\":\"yesterday\"}",
     "invalid_field", "at", "at must be an RFC 3339 time"},
    {"{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\",\"at\":1714557600000}",
     "invalid_field", "at", "at must be a string"},
    {"{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\","
     "\"at\":\"2024-05-02T10:00:00.001Z\"}", "invalid_field", "at",
     "at is more than a day in the future"},
    {"{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\",\"source\":\"Web\"}",
     "invalid_field", "source", "source must be 1 to 32 characters of a-z, 0-9 and _"},
    {"{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\",\"actor\":\"boss\"}",
     "invalid_field", "actor",
     "actor must be customer, system or agent:<id> (an id of up to 64 letters, digits, _ . @ -)"},
    {"{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\","
     "\"actor\":\"agent:a b\"}", "invalid_field", "actor",
     "actor must be customer, system or agent:<id> (an id of up to 64 letters, digits, _ . @ -)"},
    {"{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\",\"proof\":{\"ip\":1}}",
     "invalid_field", "proof", "proof must be a string"},
    {"{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\",\"proof\":\"a\\u0000b\"}",
     "invalid_field", "proof", "proof must be a string"},
    {"{\"records\":[{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"granted\"},"
     "{\"channel\":\"email\",\"purpose\":\"marketing\",\"status\":\"maybe\"}]}",
     "invalid_field", "records[1].status", "records[1].status must be granted, denied or withdrawn"},
};
/* clang-format on */

static void test_parse_errors(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    add(l, CONSENT_EMAIL, "marketing", CONSENT_GRANTED, T0 - HOUR);
    for (size_t i = 0; i < sizeof bad_bodies / sizeof bad_bodies[0]; i++) {
        const pcase *c = &bad_bodies[i];
        json_t *b = parse(c->body);
        ev_error err = {0};
        int rc = consent_parse(b, &defaults, l, &err);
        json_decref(b);
        if (rc != -1) fail_msg("accepted: %s", c->body);
        if (strcmp(err.code, c->code) || strcmp(err.field, c->field) ||
            strcmp(err.message, c->message))
            fail_msg("%s\n got  %s %s \"%s\"\n want %s %s \"%s\"", c->body, err.code, err.field,
                     err.message, c->code, c->field, c->message);
        /* A refused body stores nothing. */
        assert_int_equal(consent_count(l), 1);
    }
    consent_ledger_free(l);
}

/* Limits on the number of records and on the proof. */
static void test_parse_limits(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    ev_error err = {0};
    json_t *list = json_array();
    for (int i = 0; i < CONSENT_BATCH_MAX + 1; i++)
        json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "channel", "email", "purpose",
                                              "marketing", "status", "granted"));
    json_t *b = json_pack("{s:o}", "records", list);
    assert_int_equal(consent_parse(b, &defaults, l, &err), -1);
    assert_string_equal(err.field, "records");
    assert_string_equal(err.message, "records has 101 entries; at most 100 are allowed");
    json_array_remove(list, 0);
    assert_int_equal(consent_parse(b, &defaults, l, &err), 100);
    json_decref(b);
    /* The limit is the caller's to raise. */
    consent_defaults big = defaults;
    big.max_records = 2;
    b = parse(
        "{\"records\":[{\"channel\":\"sms\",\"purpose\":\"marketing\",\"status\":\"granted\"},"
        "{\"channel\":\"sms\",\"purpose\":\"marketing\",\"status\":\"denied\"},"
        "{\"channel\":\"sms\",\"purpose\":\"marketing\",\"status\":\"granted\"}]}");
    assert_int_equal(consent_parse(b, &big, l, &err), -1);
    assert_string_equal(err.message, "records has 3 entries; at most 2 are allowed");
    json_decref(b);
    /* proof: 512 bytes fine, 513 refused. */
    char proof[514];
    memset(proof, 'p', 513);
    proof[513] = '\0';
    b = json_pack("{s:s,s:s,s:s,s:s}", "channel", "email", "purpose", "marketing", "status",
                  "granted", "proof", proof);
    assert_int_equal(consent_parse(b, &defaults, l, &err), -1);
    assert_string_equal(err.field, "proof");
    assert_string_equal(err.message, "proof is longer than 512 bytes");
    json_decref(b);
    proof[512] = '\0';
    b = json_pack("{s:s,s:s,s:s,s:s}", "channel", "email", "purpose", "marketing", "status",
                  "granted", "proof", proof);
    size_t before = consent_count(l);
    assert_int_equal(consent_parse(b, &defaults, l, &err), 1);
    assert_int_equal(strlen(consent_get(l, before)->proof), 512);
    json_decref(b);
    /* 33 distinct purposes in one body. */
    list = json_array();
    for (int i = 0; i < 33; i++) {
        char p[16];
        snprintf(p, sizeof p, "p%d", i);
        json_array_append_new(
            list, json_pack("{s:s,s:s,s:s}", "channel", "web", "purpose", p, "status", "granted"));
    }
    b = json_pack("{s:o}", "records", list);
    before = consent_count(l);
    assert_int_equal(consent_parse(b, &defaults, l, &err), -1);
    assert_string_equal(err.field, "records[32].purpose");
    assert_string_equal(err.message, "records[32].purpose brings the records past 32 distinct "
                                     "purposes");
    assert_int_equal(consent_count(l), before);
    json_decref(b);
    consent_ledger_free(l);
}

/* Hostile bodies: deep nesting inside a field, huge strings, a huge unknown key. */
static void test_parse_hostile(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    ev_error err = {0};
    json_t *deep = json_string("x");
    for (int i = 0; i < 500; i++)
        deep = json_pack("[o]", deep);
    json_t *b =
        json_pack("{s:s,s:s,s:o}", "channel", "email", "purpose", "marketing", "status", deep);
    assert_int_equal(consent_parse(b, &defaults, l, &err), -1);
    assert_string_equal(err.message, "status must be a string");
    json_decref(b);
    char *huge = malloc(1 << 20);
    memset(huge, 'k', (1 << 20) - 1);
    huge[(1 << 20) - 1] = '\0';
    b = json_pack("{s:s,s:s,s:s,s:i}", "channel", huge, "purpose", "marketing", "status", "granted",
                  huge, 1);
    assert_int_equal(consent_parse(b, &defaults, l, &err), -1);
    assert_string_equal(err.code, "invalid_field");
    assert_true(strlen(err.field) < sizeof err.field);
    json_decref(b);
    b = json_pack("{s:s,s:s,s:s}", "channel", "email", "purpose", huge, "status", "granted");
    assert_int_equal(consent_parse(b, &defaults, l, &err), -1);
    assert_string_equal(err.field, "purpose");
    json_decref(b);
    free(huge);
    assert_int_equal(consent_count(l), 0);
    consent_ledger_free(l);
}

/* ---- consent stated in events ---- */

static void expect_record(const consent_record *r, consent_channel ch, const char *purpose,
                          consent_status st, const char *source) {
    assert_non_null(r);
    assert_int_equal(r->channel, ch);
    assert_string_equal(r->purpose, purpose);
    assert_int_equal(r->status, st);
    assert_string_equal(r->source, source);
    assert_string_equal(r->actor, "customer");
}

/* consent_from_event() as the engine calls it, with the event's type and messageId beside it:
 * here read from the test's event itself. */
static int from_event(const json_t *ev, int64_t at, consent_ledger *l, consent_ignored *ig) {
    const char *type = json_string_value(json_object_get(ev, "type"));
    return consent_from_event(ev, type && strcmp(type, "identify") == 0,
                              json_string_value(json_object_get(ev, "messageId")), at, l, ig);
}

/* What decides is the type and messageId given, not members of the event (the engine's tree of an
 * event has neither). */
static void test_event_type_given(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    json_t *ev = parse("{\"type\":\"track\",\"messageId\":\"in-body\","
                       "\"traits\":{\"sms_opt_in\":true}}");
    assert_int_equal(consent_from_event(ev, true, "given", T0, l, NULL), 1);
    assert_string_equal(consent_get(l, 0)->proof, "given");
    assert_int_equal(consent_from_event(ev, false, "given", T0, l, NULL), 0);
    json_decref(ev);
    ev = parse("{\"type\":\"identify\",\"traits\":{\"sms_opt_in\":false}}");
    assert_int_equal(consent_from_event(ev, false, NULL, T0, l, NULL), 0);
    /* No proof: none given, an empty one, or one too long to keep. */
    char *huge = malloc(CONSENT_PROOF_MAX + 2);
    memset(huge, 'm', CONSENT_PROOF_MAX + 1);
    huge[CONSENT_PROOF_MAX + 1] = '\0';
    const char *proofs[] = {NULL, "", huge};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(consent_from_event(ev, true, proofs[i], T0 + (int64_t)i, l, NULL), 1);
        assert_null(consent_get(l, consent_count(l) - 1)->proof);
    }
    free(huge);
    json_decref(ev);
    consent_ledger_free(l);
}

static void test_event_traits(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    consent_ignored ig;
    json_t *ev = parse("{\"type\":\"identify\",\"userId\":\"u1\",\"messageId\":\"m-7\","
                       "\"traits\":{\"consent\":{"
                       "\"email\":{\"marketing\":true,\"newsletter\":\"withdrawn\"},"
                       "\"sms\":{\"marketing\":false},"
                       "\"profiling\":true,"
                       "\"fax\":{\"x\":true},"
                       "\"whatsapp\":[true],"
                       "\"push\":{\"Bad-Name\":true,\"marketing\":1}},"
                       "\"email_opt_in\":false,\"sms_opt_in\":\"yes\",\"unsubscribed\":true}}");
    assert_int_equal(from_event(ev, T0, l, &ig), 6);
    json_decref(ev);
    expect_record(consent_get(l, 0), CONSENT_EMAIL, "marketing", CONSENT_GRANTED, "identify");
    assert_string_equal(consent_get(l, 0)->proof, "m-7");
    assert_int_equal(consent_get(l, 0)->at_ms, T0);
    expect_record(consent_get(l, 1), CONSENT_EMAIL, "newsletter", CONSENT_WITHDRAWN, "identify");
    expect_record(consent_get(l, 2), CONSENT_SMS, "marketing", CONSENT_DENIED, "identify");
    expect_record(consent_get(l, 3), CONSENT_ALL, "profiling", CONSENT_GRANTED, "identify");
    expect_record(consent_get(l, 4), CONSENT_EMAIL, "marketing", CONSENT_DENIED, "identify");
    expect_record(consent_get(l, 5), CONSENT_EMAIL, "marketing", CONSENT_WITHDRAWN, "identify");
    /* The unsubscribe came last, so it is in force. */
    assert_int_equal(consent_current(l, CONSENT_EMAIL, "marketing")->status, CONSENT_WITHDRAWN);
    /* fax (an object), whatsapp (an array), push.Bad-Name, push.marketing (1), sms_opt_in. */
    assert_int_equal(ig.n, 5);
    assert_string_equal(ig.first.field, "traits.consent.fax");
    assert_string_equal(ig.first.message,
                        "traits.consent.fax must be true, false, granted, denied or withdrawn");
    consent_ledger_free(l);
}

/* RudderStack's browser SDK sends identify traits only in context.traits; other event types'
 * traits say nothing about consent. */
static void test_event_context_traits(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    json_t *ev = parse("{\"type\":\"identify\",\"anonymousId\":\"a\","
                       "\"context\":{\"traits\":{\"sms_opt_in\":true}}}");
    assert_int_equal(from_event(ev, T0, l, NULL), 1);
    json_decref(ev);
    expect_record(consent_get(l, 0), CONSENT_SMS, "marketing", CONSENT_GRANTED, "identify");
    assert_null(consent_get(l, 0)->proof);
    ev = parse(
        "{\"type\":\"track\",\"event\":\"x\",\"userId\":\"u\","
        "\"traits\":{\"unsubscribed\":true},\"context\":{\"traits\":{\"email_opt_in\":true}}}");
    assert_int_equal(from_event(ev, T0, l, NULL), 0);
    json_decref(ev);
    /* unsubscribed: false says nothing. */
    ev = parse("{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{\"unsubscribed\":false}}");
    assert_int_equal(from_event(ev, T0, l, NULL), 0);
    json_decref(ev);
    assert_int_equal(consent_count(l), 1);
    consent_ledger_free(l);
}

static void test_event_categories(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    consent_ignored ig;
    json_t *ev =
        parse("{\"type\":\"page\",\"anonymousId\":\"a\",\"messageId\":\"m-1\","
              "\"context\":{\"consent\":{\"categoryPreferences\":{\"Advertising\":true,"
              "\"Analytics\":false,\"Functional\":true,\"Targeting\":false,\"SocialMedia\":true,"
              "\"Data_Sharing\":true,\"C0002\":\"yes\"}}}}");
    assert_int_equal(from_event(ev, T0, l, &ig), 3);
    json_decref(ev);
    /* Advertising true but Targeting false: one record for (web, marketing), denied. */
    expect_record(consent_get(l, 0), CONSENT_WEB, "marketing", CONSENT_DENIED, "cmp");
    expect_record(consent_get(l, 1), CONSENT_WEB, "profiling", CONSENT_DENIED, "cmp");
    expect_record(consent_get(l, 2), CONSENT_ALL, "data_sharing", CONSENT_GRANTED, "cmp");
    assert_string_equal(consent_get(l, 2)->proof, "m-1");
    assert_int_equal(ig.n, 2); /* SocialMedia unknown, C0002 not a boolean */
    assert_string_equal(ig.first.field, "context.consent.categoryPreferences.SocialMedia");
    /* A cookie banner never grants email marketing. */
    assert_false(consent_allows(l, CONSENT_EMAIL, "marketing", CONSENT_POLICY_DEFAULT));
    consent_ledger_free(l);
}

/* Every page view repeats the banner's choice: applied with CONSENT_SKIP_UNCHANGED it is
 * recorded once. */
static void test_event_repeated(void **state) {
    (void)state;
    consent_ledger *profile = consent_ledger_new();
    const char *text =
        "{\"type\":\"page\",\"anonymousId\":\"a\","
        "\"context\":{\"consent\":{\"categoryPreferences\":{\"Advertising\":true}}}}";
    json_t *ev = parse(text);
    for (int i = 0; i < 5; i++) {
        consent_ledger *tmp = consent_ledger_new();
        assert_int_equal(from_event(ev, T0 + i * MIN, tmp, NULL), 1);
        assert_int_equal(consent_apply(profile, tmp, CONSENT_SKIP_UNCHANGED), i == 0 ? 1 : 0);
        consent_ledger_free(tmp);
    }
    json_decref(ev);
    assert_int_equal(consent_count(profile), 1);
    assert_int_equal(consent_get(profile, 0)->at_ms, T0);
    consent_ledger_free(profile);
}

static void test_event_hostile(void **state) {
    (void)state;
    consent_ledger *l = consent_ledger_new();
    consent_ignored ig;
    /* 40 purposes on one channel: 32 fit a ledger, the rest are counted. */
    json_t *purposes = json_object();
    for (int i = 0; i < 40; i++) {
        char p[16];
        snprintf(p, sizeof p, "p%d", i);
        json_object_set_new(purposes, p, json_true());
    }
    json_t *ev = json_pack("{s:s,s:s,s:{s:{s:o}}}", "type", "identify", "userId", "u", "traits",
                           "consent", "email", purposes);
    assert_int_equal(from_event(ev, T0, l, &ig), 32);
    assert_int_equal(ig.n, 8);
    json_decref(ev);
    /* 100 records over 9 channels and 12 purposes: CONSENT_EVENT_MAX are taken. */
    consent_ledger *m = consent_ledger_new();
    json_t *consent = json_object();
    static const char *const ch[] = {"email", "sms",   "whatsapp", "messenger", "push",
                                     "web",   "phone", "post",     "all"};
    for (int c = 0; c < 9; c++) {
        json_t *o = json_object();
        for (int i = 0; i < 12; i++) {
            char p[16];
            snprintf(p, sizeof p, "q%d", i);
            json_object_set_new(o, p, json_false());
        }
        json_object_set_new(consent, ch[c], o);
    }
    ev = json_pack("{s:s,s:s,s:{s:o}}", "type", "identify", "userId", "u", "traits", "consent",
                   consent);
    assert_int_equal(from_event(ev, T0, m, &ig), CONSENT_EVENT_MAX);
    assert_int_equal(ig.n, 9 * 12 - CONSENT_EVENT_MAX);
    json_decref(ev);
    /* Wrong shapes everywhere: nothing taken, nothing crashes. */
    static const char *const odd[] = {
        "[]",
        "{}",
        "{\"type\":\"identify\",\"traits\":{\"consent\":\"yes\"}}",
        "{\"type\":\"identify\",\"traits\":[]}",
        "{\"type\":7,\"context\":{\"consent\":[]}}",
        "{\"type\":\"identify\",\"context\":{\"consent\":{\"categoryPreferences\":[true]}}}",
        "{\"type\":\"identify\",\"traits\":{\"unsubscribed\":\"true\",\"email_opt_in\":null}}",
        "{\"messageId\":7,\"context\":{\"consent\":{\"categoryPreferences\":{}}}}",
    };
    size_t before = consent_count(m);
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        json_t *v = parse(odd[i]);
        assert_int_equal(from_event(v, T0, m, &ig), 0);
        json_decref(v);
    }
    assert_int_equal(consent_count(m), before);
    assert_int_equal(from_event(NULL, T0, m, &ig), 0);
    /* A time outside the years 1..9999 is not a time a record can carry. */
    json_t *v = parse("{\"type\":\"identify\",\"traits\":{\"unsubscribed\":true}}");
    assert_int_equal(from_event(v, INT64_MAX, m, &ig), 0);
    assert_int_equal(ig.n, 1);
    json_decref(v);
    consent_ledger_free(m);
    consent_ledger_free(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_latest_wins),
        cmocka_unit_test(test_all_channel),
        cmocka_unit_test(test_skip_unchanged),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_record_cap),
        cmocka_unit_test(test_purpose_cap),
        cmocka_unit_test(test_record_check),
        cmocka_unit_test(test_state_json),
        cmocka_unit_test(test_history_round_trip),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_parse_hostile),
        cmocka_unit_test(test_event_type_given),
        cmocka_unit_test(test_event_traits),
        cmocka_unit_test(test_event_context_traits),
        cmocka_unit_test(test_event_categories),
        cmocka_unit_test(test_event_repeated),
        cmocka_unit_test(test_event_hostile),
    };
    return cmocka_run_group_tests_name("consent", tests, NULL, NULL);
}
