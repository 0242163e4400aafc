/* libFuzzer target for ingest/ev (and commerce through it).
 *
 * Input: one byte choosing the endpoint type (value % (EV_NTYPES + 1); EV_NTYPES reads the body's
 * "type"), then a JSON document. Two members of the document play the batch envelope:
 * "_batch_context" becomes the batch context (whatever its JSON type) and "_batch_sent_at" the
 * batch's sentAt when it is a string.
 *
 * Invariants checked on success: the body is a JSON object of at most EV_MAX_BYTES whose type,
 * messageId, ids, timestamp and kind agree with the struct; writeKey is gone; and normalising the
 * body again gives the same body byte for byte (normalisation is idempotent). On failure: the code
 * is one of the documented ones, the message is not empty and the event is left empty.
 *
 * The fast path (ev_normalize_text() over util/jscan's tokens) runs on the same text: it must
 * decline whatever ev_normalize() refuses, and when it takes an event, give the same body byte for
 * byte and an equal tree (a messageId each made up is the one difference allowed). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ingest/ev.h"
#include "util/timefmt.h"

#define RECEIVED 1714564800000LL /* 2024-05-01T12:00:00Z */

static const char *const known_codes[] = {"missing_field", "invalid_field", "event_too_large",
                                          "too_deep"};

static void check_error(const ev_error *err, const ev_event *ev) {
    bool known = false;
    for (size_t i = 0; i < sizeof known_codes / sizeof *known_codes; i++)
        known |= err->code && strcmp(err->code, known_codes[i]) == 0;
    CHECK(known);
    CHECK(err->message[0] != '\0');
    CHECK(strlen(err->field) < sizeof err->field);
    CHECK(!ev->body && !ev->user_id && !ev->anonymous_id && !ev->event_name && !ev->commerce);
}

static void check_id(const json_t *body, const char *key, const char *id) {
    const json_t *v = json_object_get(body, key);
    if (!id) {
        CHECK(v == NULL);
        return;
    }
    CHECK(json_is_string(v) && strcmp(json_string_value(v), id) == 0);
    CHECK(strlen(id) > 0 && strlen(id) <= EV_ID_MAX);
}

static void check_event(const ev_event *ev) {
    CHECK(ev->body && ev->body_len <= EV_MAX_BYTES && strlen(ev->body) == ev->body_len);
    json_error_t jerr;
    json_t *body = json_loadb(ev->body, ev->body_len, 0, &jerr);
    CHECK(json_is_object(body));
    CHECK(strcmp(json_string_value(json_object_get(body, "type")), ev_type_name(ev->type)) == 0);
    CHECK(strcmp(json_string_value(json_object_get(body, "messageId")), ev->message_id) == 0);
    CHECK(ev->message_id[0] != '\0');
    CHECK(json_object_get(body, "writeKey") == NULL);
    CHECK(ev->user_id || ev->anonymous_id);
    check_id(body, "userId", ev->user_id);
    check_id(body, "anonymousId", ev->anonymous_id);
    /* A track's name comes beside the engine's tree, as do the ids (ev.h); the tree has none. */
    if (ev->type == EV_TRACK)
        CHECK(ev->event_name &&
              strcmp(ev->event_name, json_string_value(json_object_get(body, "event"))) == 0);
    else
        CHECK(!ev->event_name);
    CHECK(!json_object_get(ev->json, "userId") && !json_object_get(ev->json, "anonymousId") &&
          !json_object_get(ev->json, "event"));
    CHECK(!ev->json || json_object_size(ev->json) > 0);
    const char *ts = json_string_value(json_object_get(body, "timestamp"));
    int64_t ms;
    CHECK(ts && tf_parse(ts, strlen(ts), &ms) && ms == ev->timestamp_ms);
    CHECK(ev->received_ms == RECEIVED);
    const json_t *kind = json_object_get(body, "kind");
    if (ev->commerce) {
        CHECK(ev->type == EV_TRACK);
        CHECK(strcmp(json_string_value(kind), cm_kind_name(ev->commerce->kind)) == 0);
        CHECK(ev->commerce->nproducts <= CM_MAX_PRODUCTS);
        for (size_t i = 0; i < ev->commerce->nproducts; i++)
            CHECK(ev->commerce->products[i].quantity >= 0);
    } else {
        CHECK(kind == NULL);
    }
    json_decref(body);
}

/* Runs the fast path on the text ev_normalize() saw; slow is its event, or NULL when it refused. */
static bool same_text(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

static void check_fast(const char *text, size_t len, int type, const ev_envelope *env,
                       const ev_event *slow) {
    static js_doc d;
    static bool ready;
    if (!ready) js_init(&d, 1u << 20), ready = true;
    if (js_parse(&d, text, len, EV_MAX_DEPTH) || !ev_envelope_check(env)) return;
    ev_event fast;
    int rc = ev_normalize_text(&d, 0, type, env, &fast);
    CHECK(rc == 0 || rc == 1);
    if (!slow) CHECK(rc == 1);
    if (rc) {
        CHECK(!fast.body && !fast.json && !fast.user_id && !fast.anonymous_id && !fast.event_name &&
              !fast.commerce);
        return;
    }
    if (strcmp(fast.message_id, slow->message_id) != 0) {
        CHECK(strlen(fast.message_id) == 36 && strlen(slow->message_id) == 36);
        char *at = strstr(fast.body, fast.message_id);
        CHECK(at != NULL);
        memcpy(at, slow->message_id, 36); /* the engine's tree has no messageId (ev.h) */
    }
    if (strcmp(fast.body, slow->body) != 0)
        fprintf(stderr, "fast:   %s\njansson: %s\n", fast.body, slow->body);
    CHECK(strcmp(fast.body, slow->body) == 0);
    CHECK((!fast.json && !slow->json) || json_equal(fast.json, slow->json)); /* NULL: no tree */
    CHECK(same_text(fast.user_id, slow->user_id) &&
          same_text(fast.anonymous_id, slow->anonymous_id));
    CHECK(same_text(fast.event_name, slow->event_name));
    CHECK(fast.type == slow->type && fast.timestamp_ms == slow->timestamp_ms);
    CHECK(cm_event_equal(fast.commerce, slow->commerce));
    ev_event_free(&fast);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int type = data[0] % (EV_NTYPES + 1);
    json_t *raw = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
    if (!raw) return 0;

    ev_envelope env = {.received_ms = RECEIVED};
    env.context = json_object_get(raw, "_batch_context");
    const json_t *integ = json_object_get(raw, "_batch_integrations");
    env.integrations = integ;
    env.sent_at = json_string_value(json_object_get(raw, "_batch_sent_at"));

    ev_event ev;
    ev_error err;
    if (ev_normalize(raw, type, &env, &ev, &err) == 0) {
        check_event(&ev);
        check_fast((const char *)data + 1, size - 1, type, &env, &ev);
        /* Idempotence: the stored body is itself a valid event that normalises to itself. */
        json_t *again = json_loadb(ev.body, ev.body_len, 0, NULL);
        ev_envelope plain = {.received_ms = RECEIVED};
        ev_event ev2;
        ev_error err2;
        int rc = ev_normalize(again, EV_NTYPES, &plain, &ev2, &err2);
        if (rc != 0) fprintf(stderr, "re-normalising failed: %s %s\n", err2.code, err2.message);
        CHECK(rc == 0);
        if (strcmp(ev.body, ev2.body) != 0)
            fprintf(stderr, "first:  %s\nsecond: %s\n", ev.body, ev2.body);
        CHECK(strcmp(ev.body, ev2.body) == 0);
        CHECK(ev2.type == ev.type && ev2.timestamp_ms == ev.timestamp_ms);
        ev_event_free(&ev2);
        json_decref(again);
        ev_event_free(&ev);
    } else {
        check_error(&err, &ev);
        check_fast((const char *)data + 1, size - 1, type, &env, NULL);
    }
    json_decref(raw);
    return 0;
}
