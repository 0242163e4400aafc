/* libFuzzer target for c360/offers: the offer definition validator, merge patches, code imports
 * and offer_apply() on arbitrary JSON.
 *
 * Each input is parsed as JSON (anything else is skipped) and used, against a fresh state holding
 * a shared offer "base" (code BASE1) and a unique offer "uniq" with two codes, as:
 *   1. an offer body for offer_put() (with no URL id, then with URL id "base");
 *   2. a merge patch for offer_patch() on "base";
 *   3. a code list for offer_codes_import() on "uniq";
 *   4. a record for offer_apply();
 *   5. (when it is a string) a typed code for offer_validate() and offer_redeem().
 * Invariants: a refusal has a known code, a message and no record; an accepted definition applies
 * (prepare and apply agree on the same state), reads back as its canonical form, and that form
 * PUT again gives the same record (canonicalisation is idempotent); the record survives the trip
 * through jsonw and back; a patched offer is itself a valid definition; and the state can always
 * be dumped, with the offer count within bounds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c360/offers.h"
#include "fuzz.h"
#include "util/buf.h"
#include "util/jsonw.h"

#define NOW 1717200000000LL /* 2024-06-01T00:00:00Z */

/* A stand-in expression language: anything without '!' compiles; everything is eligible. */
static void *fx_compile(const char *src, size_t len, ev_error *err, void *arg) {
    (void)arg;
    if (memchr(src, '!', len)) {
        ev_error_set(err, "invalid_expression", "", "'!' is not an operator");
        return NULL;
    }
    return malloc(1);
}

static int fx_eval(const void *compiled, const void *ctx, void *arg) {
    (void)compiled, (void)ctx, (void)arg;
    return 1;
}

static void fx_free(void *compiled, void *arg) {
    (void)arg;
    free(compiled);
}

static const offer_options options = {{fx_compile, fx_eval, fx_free, NULL}, 0, 0, 0};

static const char *const validation_codes[] = {"missing_field", "invalid_field", "invalid_body",
                                               "too_deep", "invalid_expression"};

static void check_refusal(offer_result r, const ev_error *err, const json_t *record) {
    CHECK(r > OFFER_OK && r < OFFER_NRESULTS);
    CHECK(record == NULL);
    CHECK(err->code && err->message[0] != '\0');
    CHECK(strlen(err->field) < sizeof err->field);
    if (r == OFFER_INVALID) {
        bool known = false;
        for (size_t i = 0; i < sizeof validation_codes / sizeof *validation_codes; i++)
            known |= strcmp(err->code, validation_codes[i]) == 0;
        CHECK(known);
    } else {
        CHECK(strcmp(err->code, offer_result_code(r)) == 0);
    }
}

/* The record as the log holds it: written with jsonw, read back equal. */
static json_t *through_log(const json_t *record) {
    buf b = BUF_INIT(0);
    CHECK(jsonw_value(&b, record) == BUF_OK);
    json_error_t e;
    json_t *back = json_loadb(buf_str(&b), b.len, JSON_ALLOW_NUL, &e);
    CHECK(back && json_equal(back, record));
    buf_free(&b);
    return back;
}

/* Applies a record that the same state just accepted: it must apply. */
static json_t *apply_accepted(offer_state *st, const json_t *record) {
    json_t *back = through_log(record), *reply = NULL;
    ev_error err = {0};
    offer_result r = offer_apply(st, back, NOW, &reply, &err);
    CHECK(r == OFFER_OK && reply != NULL);
    json_decref(back);
    return reply;
}

static void drop_readonly(json_t *offer) {
    json_object_del(offer, "created_at");
    json_object_del(offer, "updated_at");
    json_object_del(offer, "stats");
}

/* After an accepted put or patch of id: the stored offer is its canonical form, and PUT again it
 * gives the same definition. */
static void check_stored(offer_state *st, const char *id, const json_t *def) {
    json_t *reply = NULL, *rec = NULL;
    ev_error err = {0};
    CHECK(offer_get(st, id, &reply, &err) == OFFER_OK);
    drop_readonly(reply);
    if (def) CHECK(json_equal(reply, def));
    CHECK(offer_put(st, id, reply, &rec, &err) == OFFER_OK);
    CHECK(json_equal(json_object_get(rec, "offer"), reply));
    json_decref(rec);
    json_decref(reply);
}

static offer_state *fresh(void) {
    offer_state *st = offer_state_new(&options);
    CHECK(st != NULL);
    static const char *const setup[] = {
        "{\"op\":\"offer.put\",\"offer\":{\"id\":\"base\",\"discount\":{\"type\":\"percent\","
        "\"value\":10},\"code_type\":\"shared\",\"code\":\"BASE1\"}}",
        "{\"op\":\"offer.put\",\"offer\":{\"id\":\"uniq\",\"discount\":{\"type\":\"amount\","
        "\"value\":5,\"currency\":\"EUR\"},\"code_type\":\"unique\"}}",
        "{\"op\":\"offer.codes_add\",\"id\":\"uniq\",\"codes\":[\"U-1\",\"U-2\"]}",
    };
    for (size_t i = 0; i < sizeof setup / sizeof *setup; i++) {
        json_t *rec = json_loads(setup[i], 0, NULL), *reply = NULL;
        ev_error err = {0};
        CHECK(offer_apply(st, rec, NOW, &reply, &err) == OFFER_OK);
        json_decref(reply);
        json_decref(rec);
    }
    return st;
}

static void check_state(const offer_state *st) {
    json_t *dump = offer_state_json(st);
    CHECK(dump != NULL);
    offer_stats s;
    offer_get_stats(st, &s);
    CHECK(s.offers >= 2 && s.offers <= 3);
    CHECK(json_array_size(json_object_get(dump, "offers")) == s.offers);
    json_decref(dump);
}

static void as_definition(const json_t *v, const char *url_id) {
    offer_state *st = fresh();
    json_t *rec = NULL;
    ev_error err = {0};
    offer_result r = offer_put(st, url_id, v, &rec, &err);
    if (r != OFFER_OK) {
        check_refusal(r, &err, rec);
    } else {
        CHECK(rec && strcmp(json_string_value(json_object_get(rec, "op")), "offer.put") == 0);
        const json_t *def = json_object_get(rec, "offer");
        const char *id = json_string_value(json_object_get(def, "id"));
        CHECK(id && strlen(id) >= 1 && strlen(id) <= OFFER_ID_MAX);
        if (url_id) CHECK(strcmp(id, url_id) == 0);
        json_t *reply = apply_accepted(st, rec);
        json_decref(reply);
        check_stored(st, id, def);
        json_decref(rec);
    }
    check_state(st);
    offer_state_free(st);
}

static void as_patch(const json_t *v) {
    offer_state *st = fresh();
    json_t *rec = NULL;
    ev_error err = {0};
    offer_result r = offer_patch(st, "base", v, &rec, &err);
    if (r != OFFER_OK) {
        check_refusal(r, &err, rec);
    } else {
        json_decref(apply_accepted(st, rec));
        check_stored(st, "base", NULL);
        json_decref(rec);
    }
    check_state(st);
    offer_state_free(st);
}

static void as_codes(const json_t *v) {
    offer_state *st = fresh();
    json_t *rec = NULL;
    ev_error err = {0};
    offer_result r = offer_codes_import(st, "uniq", v, &rec, &err);
    if (r != OFFER_OK) {
        check_refusal(r, &err, rec);
    } else {
        json_t *reply = apply_accepted(st, rec);
        CHECK((size_t)json_integer_value(json_object_get(reply, "added")) == json_array_size(v));
        json_decref(reply);
        json_decref(rec);
    }
    check_state(st);
    offer_state_free(st);
}

static void as_record(const json_t *v) {
    offer_state *st = fresh();
    json_t *before = offer_state_json(st), *reply = NULL;
    ev_error err = {0};
    offer_result r = offer_apply(st, v, NOW, &reply, &err);
    if (r != OFFER_OK) {
        check_refusal(r, &err, reply);
        /* A refused record changes nothing. */
        json_t *after = offer_state_json(st);
        CHECK(json_equal(before, after));
        json_decref(after);
    } else {
        CHECK(reply != NULL);
    }
    json_decref(reply);
    json_decref(before);
    check_state(st);
    offer_state_free(st);
}

static void as_code(const char *code) {
    offer_state *st = fresh();
    json_t *reply = NULL, *rec = NULL;
    ev_error err = {0};
    offer_result r = offer_validate(st, NULL, code, "p", NULL, NOW, &reply, &err);
    CHECK(r == OFFER_OK || r == OFFER_UNKNOWN_CODE);
    CHECK((r == OFFER_OK) == (reply != NULL));
    json_decref(reply);
    reply = NULL;
    r = offer_redeem(st, NULL, code, "p", "o", NULL, NOW, &rec, &reply, &err);
    CHECK(r == OFFER_OK || r == OFFER_UNKNOWN_CODE);
    if (r == OFFER_OK) {
        CHECK(rec != NULL && reply == NULL);
        json_t *out = apply_accepted(st, rec);
        json_decref(out);
        json_decref(rec);
    }
    check_state(st);
    offer_state_free(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_error_t e;
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!v) return 0;
    as_definition(v, NULL);
    as_definition(v, "base");
    as_patch(v);
    as_codes(v);
    as_record(v);
    if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v))
        as_code(json_string_value(v));
    json_decref(v);
    return 0;
}
