/* libFuzzer target for c360/idnorm.
 *
 * The first byte picks the identifier type, the second a default country (NULL, "", an unknown
 * code and countries with unusual prefixes among them); the rest is the value, arbitrary bytes.
 * Invariants: idn_normalize() returns 0, IDN_JUNK or -1 with the matching error code, and writes
 * out only on 0; a normalised value has its type's shape (a phone number is "+" and 7..15 digits,
 * an email one '@' and no upper-case letter, a handle [a-z0-9._], an id the input itself) and is
 * stable: normalising it again gives 0 and the same bytes, and a phone number needs no country
 * any more. An input that starts with '{' is also read as a JSON event for idn_extract(): at most
 * IDN_EVENT_MAX identifiers, in priority order, no duplicates, each one stable; and, when its ids
 * are ones ingestion takes (strings without NUL, whole numbers), idn_extract_ids() with them as
 * text beside the rest of the event finds the same list. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c360/idnorm.h"
#include "fuzz.h"

static const char *const countries[] = {NULL, "",   "DE", "US", "GB", "IT", "RU", "HU",
                                        "JP", "AU", "MX", "CO", "KE", "XX", "de"};
#define NCOUNTRIES (sizeof countries / sizeof countries[0])

static bool all_digits(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

static void check_shape(int type, const char *in, size_t len, const char *out) {
    size_t n = strlen(out);
    CHECK(n <= IDN_VALUE_MAX);
    switch (idn_type_get(type)->norm) {
    case IDN_NORM_EXACT:
        CHECK(n == len && memcmp(in, out, len) == 0);
        break;
    case IDN_NORM_EMAIL: {
        CHECK(n >= 3 && n <= 254);
        const char *at = strchr(out, '@');
        CHECK(at && at != out && !strchr(at + 1, '@') && at[1]);
        for (size_t i = 0; i < n; i++)
            CHECK(!(out[i] >= 'A' && out[i] <= 'Z') && (unsigned char)out[i] > ' ');
        break;
    }
    case IDN_NORM_PHONE:
    case IDN_NORM_WHATSAPP:
        CHECK(out[0] == '+' && n >= 8 && n <= 16 && out[1] != '0' && all_digits(out + 1, n - 1));
        break;
    case IDN_NORM_DIGITS:
        CHECK(n >= 1 && n <= 32 && all_digits(out, n));
        break;
    case IDN_NORM_HANDLE:
        CHECK(n >= 1 && n <= 64);
        for (size_t i = 0; i < n; i++)
            CHECK((out[i] >= 'a' && out[i] <= 'z') || (out[i] >= '0' && out[i] <= '9') ||
                  out[i] == '.' || out[i] == '_');
        break;
    case IDN_NORM_EXTERNAL: {
        const char *colon = strchr(out, ':');
        CHECK(colon && colon > out && colon - out <= IDN_EXTERNAL_TYPE_MAX);
        for (const char *p = out; p < colon; p++)
            CHECK(!(*p >= 'A' && *p <= 'Z'));
        break;
    }
    }
}

/* out normalises to itself (under cc, and for phone numbers under no country at all). */
static void check_stable(int type, const char *out, const char *cc) {
    char again[IDN_VALUE_LEN];
    ev_error err = {0};
    int rc = idn_normalize(type, out, strlen(out), again, sizeof again, cc, &err);
    if (rc != 0)
        fprintf(stderr, "unstable: %s \"%s\": %s\n", idn_type_get(type)->name, out, err.message);
    CHECK(rc == 0);
    CHECK(strcmp(again, out) == 0);
    int norm = idn_type_get(type)->norm;
    if (norm == IDN_NORM_PHONE || norm == IDN_NORM_WHATSAPP) {
        CHECK(idn_normalize(type, out, strlen(out), again, sizeof again, NULL, &err) == 0);
        CHECK(strcmp(again, out) == 0);
    }
}

static void check_extract(const uint8_t *data, size_t size, const char *cc) {
    json_t *ev = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
    if (!ev) return;
    idn_list l;
    idn_extract(ev, size % 2 == 0, cc, &l); /* a group call or not, by the length */
    CHECK(l.n >= 0 && l.n <= IDN_EVENT_MAX && l.dropped >= 0 && l.junk >= 0 && l.invalid >= 0);
    if (l.invalid) CHECK(l.first_invalid.code != NULL);
    for (int i = 0; i < l.n; i++) {
        CHECK(l.ids[i].type >= 0 && l.ids[i].type < IDN_NTYPES);
        if (i)
            CHECK(idn_type_get(l.ids[i - 1].type)->priority <=
                  idn_type_get(l.ids[i].type)->priority);
        for (int j = 0; j < i; j++)
            CHECK(l.ids[j].type != l.ids[i].type || strcmp(l.ids[j].value, l.ids[i].value) != 0);
        check_stable(l.ids[i].type, l.ids[i].value, cc);
    }
    /* The same with the ids beside the tree, as the engine hands an event over. */
    static const char *const keys[2] = {"userId", "anonymousId"};
    char texts[2][EV_NUMBER_TEXT_LEN];
    const char *ids[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        const json_t *v = json_object_get(ev, keys[k]);
        if (!v || json_is_null(v)) continue;
        if (json_is_string(v)) {
            if (memchr(json_string_value(v), '\0', json_string_length(v))) goto done;
            ids[k] = json_string_value(v);
        } else if (ev_number_text(v, texts[k])) {
            ids[k] = texts[k];
        } else {
            goto done; /* ingestion refuses it */
        }
    }
    json_t *rest = json_copy(ev);
    if (!rest) goto done;
    json_object_del(rest, keys[0]);
    json_object_del(rest, keys[1]);
    idn_list b;
    idn_extract_ids(ids[0], ids[1], rest, size % 2 == 0, cc, &b);
    CHECK(b.n == l.n && b.dropped == l.dropped && b.junk == l.junk && b.invalid == l.invalid);
    for (int i = 0; i < l.n; i++)
        CHECK(b.ids[i].type == l.ids[i].type && strcmp(b.ids[i].value, l.ids[i].value) == 0);
    json_decref(rest);
done:
    json_decref(ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int type = data[0] % IDN_NTYPES;
    const char *cc = countries[data[1] % NCOUNTRIES];
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    char out[IDN_VALUE_LEN];
    memset(out, 0x5a, sizeof out);
    ev_error err = {0};
    int rc = idn_normalize(type, in, len, out, sizeof out, cc, &err);
    CHECK(rc == 0 || rc == IDN_JUNK || rc == -1);
    if (rc == 0) {
        CHECK(memchr(out, '\0', sizeof out) != NULL);
        check_shape(type, in, len, out);
        check_stable(type, out, cc);
    } else {
        CHECK(out[0] == 0x5a); /* untouched */
        CHECK(err.code != NULL);
        CHECK(strcmp(err.code, rc == IDN_JUNK ? IDN_JUNK_CODE : "invalid_field") == 0);
        CHECK(strcmp(err.field, idn_type_get(type)->name) == 0);
    }
    if (data[0] == '{') check_extract(data, size, cc);
    return 0;
}
