/* offers — see offers.h for the contract and docs/offers.md for the rules as clients see them.
 *
 * Layout of the state. Offers live in an array in creation order (an offer's index never changes:
 * offers are archived, never deleted) plus an index array sorted by id. Every code — each unique
 * code and each offer's shared code — is an `ocode` in one array, its text in one arena, and one
 * hash table maps a code's text to its index: that is the O(1) code lookup. An offer lists its
 * unique codes' indices and keeps a cursor at the first that may still be free, so handing out
 * codes is amortised O(1) (codes never become free again: an unredeemed code returns to its
 * holder). Profiles that hold codes or redeemed something are records in a slot array (slots of
 * forgotten profiles are reused) found through a second table; redemptions likewise, found by
 * order id through a third, several redemptions of one order chained.
 *
 * Invariant that makes erasure complete: a code whose holder is profile P is either ASSIGNED and
 * in P's `held` list, or REDEEMED by one of P's redemptions. Every transition below keeps it.
 *
 * Every apply function checks and reserves all the memory it needs before it changes anything,
 * so a refusal or an allocation failure leaves the state as it was. */
#include "c360/offers.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/jmerge.h"
#include "util/timefmt.h"
#include "util/vec.h"

#define MAX_CODES_CEILING 50000000u /* keeps every text offset within 32 bits */
#define PER_CUSTOMER_MAX 1000000
#define TOTAL_MAX 1000000000000LL
#define AMOUNT_MAX 1e9
#define PATCH_DEPTH_MAX EV_MAX_DEPTH
#define GEN_GROUP 4 /* a generated code is PREFIX-XXXX-XXXX */
#define GEN_SYMBOLS (2 * GEN_GROUP)
#define GEN_ATTEMPTS 64 /* draws per code before the random source is judged broken */

/* ---- Results ---- */

static const struct {
    const char *code;
    int status;
} results[OFFER_NRESULTS] = {
    [OFFER_OK] = {"ok", 200},
    [OFFER_INVALID] = {"invalid", 400},
    [OFFER_UNKNOWN_OFFER] = {"unknown_offer", 404},
    [OFFER_UNKNOWN_CODE] = {"unknown_code", 404},
    [OFFER_ARCHIVED] = {"archived", 409},
    [OFFER_PAUSED] = {"paused", 409},
    [OFFER_NOT_STARTED] = {"not_started", 409},
    [OFFER_EXPIRED] = {"expired", 409},
    [OFFER_ALREADY_REDEEMED] = {"already_redeemed", 409},
    [OFFER_ASSIGNED_TO_OTHER] = {"assigned_to_other", 409},
    [OFFER_NOT_ELIGIBLE] = {"not_eligible", 409},
    [OFFER_LIMIT_REACHED] = {"limit_reached", 409},
    [OFFER_CUSTOMER_LIMIT_REACHED] = {"customer_limit_reached", 409},
    [OFFER_NO_CODES_LEFT] = {"no_codes_left", 409},
    [OFFER_CODE_TAKEN] = {"code_taken", 409},
    [OFFER_CONFLICT] = {"conflict", 409},
    [OFFER_TOO_MANY_OFFERS] = {"too_many_offers", 409},
    [OFFER_TOO_MANY_CODES] = {"too_many_codes", 409},
    [OFFER_NOMEM] = {"unavailable", 503},
};

const char *offer_result_code(offer_result r) {
    return (unsigned)r < OFFER_NRESULTS ? results[r].code : NULL;
}

int offer_result_status(offer_result r) {
    return (unsigned)r < OFFER_NRESULTS ? results[r].status : 500;
}

/* Fills *err for result r (whose API code is code) and returns r. */
__attribute__((format(printf, 5, 6))) static offer_result
fail(ev_error *err, offer_result r, const char *code, const char *field, const char *fmt, ...) {
    char msg[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ev_error_set(err, code ? code : results[r].code, field, "%s", msg);
    return r;
}

#define REFUSE(err, r, field, ...) fail(err, r, NULL, field, __VA_ARGS__)
#define INVALID(err, code, field, ...) fail(err, OFFER_INVALID, code, field, __VA_ARGS__)
#define NOMEM(err) fail(err, OFFER_NOMEM, NULL, "", "out of memory")

/* ---- Names ---- */

enum { DISC_PERCENT, DISC_AMOUNT, DISC_FREE_SHIPPING, NDISC };
enum { CT_SHARED, CT_UNIQUE, CT_NONE, NCT };
enum { ST_ACTIVE, ST_PAUSED, ST_ARCHIVED, NST };

static const char *const disc_names[NDISC] = {"percent", "amount", "free_shipping"};
static const char *const ctype_names[NCT] = {"shared", "unique", "none"};
static const char *const status_names[NST] = {"active", "paused", "archived"};
static const char *const channel_names[] = {"web",      "app",       "email", "sms",
                                            "whatsapp", "messenger", "pos"};
#define NCHANNELS (sizeof channel_names / sizeof *channel_names)
#define ALL_CHANNELS ((1u << NCHANNELS) - 1)

/* What each discount type takes: a value in (0, max] or none; a currency or none. */
static const struct {
    bool value;
    double max;
    bool currency;
} disc_rules[NDISC] = {
    [DISC_PERCENT] = {true, 100, false},
    [DISC_AMOUNT] = {true, AMOUNT_MAX, true},
    [DISC_FREE_SHIPPING] = {false, 0, false},
};

static int name_index(const char *const *names, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0) return (int)i;
    return -1;
}

bool offer_channel_known(const char *name) {
    return name && name_index(channel_names, NCHANNELS, name) >= 0;
}

/* ---- Open-addressing table: text -> 32-bit reference ----
 *
 * Linear probing, at most 3/4 full, backward-shift deletion (no tombstones). A slot is 8 bytes: a
 * 32-bit tag folded from hash64() of the key (the home slot is tag & mask) and the reference
 * (index + 1; 0 marks an empty slot). A tag match is confirmed by comparing the key, which the
 * table does not store: key() fetches it from wherever the referenced record keeps it. hash64()
 * is seeded per process, so the table's order is never shown to anyone. */

typedef struct oslot {
    uint32_t tag, ref;
} oslot;

typedef struct otab {
    oslot *s;
    size_t cap, n; /* cap: 0 or a power of two */
} otab;

typedef struct okey {
    const char *p;
    size_t n;
} okey;

typedef okey (*okey_fn)(const void *ctx, uint32_t ref);

static uint32_t tag_of(const char *p, size_t n) {
    uint64_t h = hash64(p, n);
    return (uint32_t)h ^ (uint32_t)(h >> 32);
}

static uint32_t otab_find(const otab *t, uint32_t tag, const char *p, size_t n, okey_fn key,
                          const void *ctx) {
    if (!t->cap) return 0;
    size_t mask = t->cap - 1;
    for (size_t i = tag & mask;; i = (i + 1) & mask) {
        const oslot *s = &t->s[i];
        if (!s->ref) return 0;
        if (s->tag != tag) continue;
        okey k = key(ctx, s->ref);
        if (k.n == n && memcmp(k.p, p, n) == 0) return s->ref;
    }
}

static void otab_put(oslot *s, size_t cap, uint32_t tag, uint32_t ref) {
    size_t mask = cap - 1, i = tag & mask;
    while (s[i].ref)
        i = (i + 1) & mask;
    s[i] = (oslot){tag, ref};
}

/* Room for `more` insertions without failing. 0 or -1 (the table unchanged). */
static int otab_reserve(otab *t, size_t more) {
    if (more > SIZE_MAX / 8 - t->n) return -1;
    size_t need = t->n + more, cap = t->cap ? t->cap : 16;
    while (need > cap / 4 * 3) {
        if (cap > (size_t)UINT32_MAX) return -1; /* tags are 32 bits: homes must fit */
        cap *= 2;
    }
    if (cap == t->cap) return 0;
    oslot *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->s[i].ref) otab_put(s, cap, t->s[i].tag, t->s[i].ref);
    free(t->s);
    t->s = s;
    t->cap = cap;
    return 0;
}

/* Inserts a key known to be absent; room must have been reserved. */
static void otab_insert(otab *t, uint32_t tag, uint32_t ref) {
    otab_put(t->s, t->cap, tag, ref);
    t->n++;
}

static void otab_remove(otab *t, uint32_t tag, uint32_t ref) {
    if (!t->cap) return;
    size_t mask = t->cap - 1, i = tag & mask;
    for (;; i = (i + 1) & mask) {
        if (!t->s[i].ref) return;
        if (t->s[i].ref == ref) break;
    }
    /* Shift later members of the run back over the hole, unless that would put one before its
     * home slot. */
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (!t->s[j].ref) break;
        size_t home = t->s[j].tag & mask;
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays) continue;
        t->s[i] = t->s[j];
        i = j;
    }
    t->s[i] = (oslot){0, 0};
    t->n--;
}

/* ---- The state ---- */

enum { CS_FREE, CS_ASSIGNED, CS_REDEEMED, CS_SHARED, CS_DEAD };
static const char *const code_state_names[] = {"free", "assigned", "redeemed", "shared", "dead"};

/* 16 bytes per code, plus its text in the arena and 8 bytes per table slot. */
typedef struct ocode {
    uint32_t text;   /* offset in the arena */
    uint32_t offer;  /* offer index */
    uint32_t holder; /* profile slot + 1; 0: none (free, shared, or the holder was forgotten) */
    uint8_t len;
    uint8_t state;
} ocode;

typedef struct offer {
    char id[OFFER_ID_MAX + 1];
    uint32_t idx;     /* in offer_state.offers */
    json_t *def;      /* the canonical definition (offer_put's record) */
    json_t *discount; /* borrowed from def */
    uint8_t ctype, status;
    int64_t starts_at, ends_at;  /* INT64_MIN / INT64_MAX when open */
    int64_t per_customer, total; /* total 0: unlimited */
    unsigned channels;           /* bit per channel_names entry */
    void *elig;                  /* compiled eligibility, NULL: everybody */
    uint32_t shared;             /* code index + 1 of the shared code, or 0 */
    uint32_t *codes;             /* unique codes, in the order added */
    size_t ncodes, acodes;
    size_t next_free; /* codes[0..next_free) are not free */
    size_t nfree, nassigned, nredeemed;
    int64_t redemptions; /* current (not undone) redemptions, all code types */
    int64_t created_at, updated_at;
} offer;

typedef struct pcount {
    uint32_t offer, redeemed;
} pcount;

typedef struct held {
    uint32_t code; /* index */
    int64_t at;
} held;

typedef struct oprof {
    char *id; /* NULL: a free slot */
    size_t idlen;
    pcount *cnt;
    size_t ncnt, acnt;
    held *held;
    size_t nheld, aheld;
    uint32_t *red; /* redemption indices, oldest first */
    size_t nred, ared;
} oprof;

typedef struct ored {
    char *order; /* NULL: a free slot */
    size_t orderlen;
    uint32_t offer;
    uint32_t code;    /* index + 1, 0 for an automatic offer */
    uint32_t profile; /* slot + 1, 0 once forgotten */
    uint32_t next;    /* the order's next redemption, index + 1 */
    int64_t at;
    json_t *discount; /* the offer's discount when redeemed (a shared reference) */
} ored;

struct offer_state {
    offer_options opt;
    offer **offers; /* creation order */
    size_t noffers, aoffers;
    uint32_t *sorted; /* offer indices by id */
    size_t asorted;

    ocode *codes;
    size_t ncodes, acodes;
    size_t unique_codes;
    char *text;
    size_t ntext, atext;
    otab code_tab;

    oprof *profs;
    size_t nprofs, aprofs, live_profs;
    uint32_t *pfree;
    size_t npfree, apfree;
    otab prof_tab;

    ored *reds;
    size_t nreds, areds, live_reds;
    uint32_t *rfree;
    size_t nrfree, arfree;
    otab order_tab;
};

static okey code_key(const void *ctx, uint32_t ref) {
    const offer_state *st = ctx;
    const ocode *c = &st->codes[ref - 1];
    return (okey){st->text + c->text, c->len};
}

static okey prof_key(const void *ctx, uint32_t ref) {
    const offer_state *st = ctx;
    return (okey){st->profs[ref - 1].id, st->profs[ref - 1].idlen};
}

static okey order_key(const void *ctx, uint32_t ref) {
    const offer_state *st = ctx;
    return (okey){st->reds[ref - 1].order, st->reds[ref - 1].orderlen};
}

offer_state *offer_state_new(const offer_options *opt) {
    offer_state *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    if (opt) st->opt = *opt;
    if (!st->opt.max_offers) st->opt.max_offers = OFFER_MAX_OFFERS;
    if (!st->opt.max_codes_per_offer) st->opt.max_codes_per_offer = OFFER_MAX_CODES_PER_OFFER;
    if (!st->opt.max_codes) st->opt.max_codes = OFFER_MAX_CODES;
    if (st->opt.max_codes > MAX_CODES_CEILING || st->opt.max_offers > UINT32_MAX / 2) {
        free(st);
        return NULL;
    }
    return st;
}

static void elig_free(const offer_state *st, void *compiled) {
    if (compiled && st->opt.expr.free) st->opt.expr.free(compiled, st->opt.expr.arg);
}

void offer_state_free(offer_state *st) {
    if (!st) return;
    for (size_t i = 0; i < st->noffers; i++) {
        offer *o = st->offers[i];
        json_decref(o->def);
        elig_free(st, o->elig);
        free(o->codes);
        free(o);
    }
    free(st->offers);
    free(st->sorted);
    free(st->codes);
    free(st->text);
    free(st->code_tab.s);
    for (size_t i = 0; i < st->nprofs; i++) {
        free(st->profs[i].id);
        free(st->profs[i].cnt);
        free(st->profs[i].held);
        free(st->profs[i].red);
    }
    free(st->profs);
    free(st->pfree);
    free(st->prof_tab.s);
    for (size_t i = 0; i < st->nreds; i++) {
        free(st->reds[i].order);
        json_decref(st->reds[i].discount);
    }
    free(st->reds);
    free(st->rfree);
    free(st->order_tab.s);
    free(st);
}

/* ---- Small checks ---- */

static bool is_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool valid_id(const char *s, size_t n) {
    if (n == 0 || n > OFFER_ID_MAX || !is_alnum(s[0])) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-') return false;
    return true;
}

static bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char upper(char c) {
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* Upper-cases s[0..n) into out (room for OFFER_CODE_MAX + 1) and checks it is a code. */
static bool normalize_code(const char *s, size_t n, char *out) {
    if (n < OFFER_CODE_MIN || n > OFFER_CODE_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = upper(s[i]);
        if (!is_alnum(c) && c != '_' && c != '-') return false;
        out[i] = c;
    }
    out[n] = '\0';
    return true;
}

/* A code as stored: already upper-case. */
static bool canonical_code(const char *s, size_t n) {
    char tmp[OFFER_CODE_MAX + 1];
    return normalize_code(s, n, tmp) && memcmp(tmp, s, n) == 0;
}

static bool utf8_ok(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len;
        unsigned min;
        if (c == 0) return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0)
            len = 2, min = 0x80, c &= 0x1f;
        else if ((c & 0xf0) == 0xe0)
            len = 3, min = 0x800, c &= 0x0f;
        else if ((c & 0xf8) == 0xf0)
            len = 4, min = 0x10000, c &= 0x07;
        else
            return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            c = (c << 6) | (p[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

/* A profile or order id: 1..OFFER_PROFILE_ID_MAX bytes of UTF-8 without NUL. */
static offer_result check_ext_id(const char *s, const char *field, ev_error *err) {
    if (!s || !*s) return INVALID(err, "missing_field", field, "%s is required", field);
    size_t n = strlen(s);
    if (n > OFFER_PROFILE_ID_MAX)
        return INVALID(err, "invalid_field", field, "%s is longer than %d bytes", field,
                       OFFER_PROFILE_ID_MAX);
    if (!utf8_ok(s, n)) return INVALID(err, "invalid_field", field, "%s is not UTF-8", field);
    return OFFER_OK;
}

static json_t *time_json(int64_t ms) {
    if (ms == INT64_MIN || ms == INT64_MAX) return json_null();
    char t[TF_LEN];
    return json_string(tf_format(ms, t));
}

static json_t *str_or_null(const char *s, size_t n) {
    return s ? json_stringn(s, n) : json_null();
}

/* Sets key to v (a new reference, stolen); a NULL v or a failed set clears *ok. */
static void set(json_t *obj, const char *key, json_t *v, bool *ok) {
    if (!v || json_object_set_new(obj, key, v)) *ok = false;
}

static void append(json_t *arr, json_t *v, bool *ok) {
    if (!v || json_array_append_new(arr, v)) *ok = false;
}

/* ---- Lookups ---- */

static int cmp_id(const offer_state *st, uint32_t idx, const char *id) {
    return strcmp(st->offers[idx]->id, id);
}

/* The position in sorted of the first offer whose id is >= id (or > id when after). */
static size_t sorted_lower(const offer_state *st, const char *id, bool after) {
    size_t lo = 0, hi = st->noffers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_id(st, st->sorted[mid], id);
        if (c < 0 || (after && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static offer *find_offer(const offer_state *st, const char *id) {
    if (!id) return NULL;
    size_t i = sorted_lower(st, id, false);
    if (i < st->noffers && cmp_id(st, st->sorted[i], id) == 0) return st->offers[st->sorted[i]];
    return NULL;
}

static uint32_t find_code(const offer_state *st, const char *s, size_t n) {
    return otab_find(&st->code_tab, tag_of(s, n), s, n, code_key, st);
}

static uint32_t find_prof(const offer_state *st, const char *id) {
    size_t n = strlen(id);
    return otab_find(&st->prof_tab, tag_of(id, n), id, n, prof_key, st);
}

static uint32_t find_order(const offer_state *st, const char *id) {
    size_t n = strlen(id);
    return otab_find(&st->order_tab, tag_of(id, n), id, n, order_key, st);
}

static const char *code_text(const offer_state *st, uint32_t idx, size_t *n) {
    *n = st->codes[idx].len;
    return st->text + st->codes[idx].text;
}

static json_t *code_json(const offer_state *st, uint32_t ref) {
    if (!ref) return json_null();
    size_t n;
    const char *s = code_text(st, ref - 1, &n);
    return json_stringn(s, n);
}

static json_t *prof_json(const offer_state *st, uint32_t ref) {
    return ref ? json_stringn(st->profs[ref - 1].id, st->profs[ref - 1].idlen) : json_null();
}

/* The customer's redemptions of offer oi (0 for an unknown profile). */
static int64_t prof_count(const offer_state *st, uint32_t pref, uint32_t oi) {
    if (!pref) return 0;
    const oprof *p = &st->profs[pref - 1];
    for (size_t i = 0; i < p->ncnt; i++)
        if (p->cnt[i].offer == oi) return p->cnt[i].redeemed;
    return 0;
}

/* The unredeemed code of offer oi the customer holds: its position in held, or -1. */
static ptrdiff_t prof_held(const offer_state *st, uint32_t pref, uint32_t oi) {
    if (!pref) return -1;
    const oprof *p = &st->profs[pref - 1];
    for (size_t i = 0; i < p->nheld; i++)
        if (st->codes[p->held[i].code].offer == oi) return (ptrdiff_t)i;
    return -1;
}

/* ---- Offer definitions ---- */

typedef struct def {
    json_t *json; /* canonical */
    char id[OFFER_ID_MAX + 1];
    uint8_t disc, ctype, status;
    int64_t starts_at, ends_at, per_customer, total;
    unsigned channels;
    char code[OFFER_CODE_MAX + 1];
    size_t codelen;
    void *elig;
} def;

static void def_free(const offer_state *st, def *d) {
    json_decref(d->json);
    elig_free(st, d->elig);
    d->json = NULL;
    d->elig = NULL;
}

static const char *const def_fields[] = {"id",          "name",   "description", "discount",
                                         "code_type",   "code",   "starts_at",   "ends_at",
                                         "eligibility", "limits", "channels",    "status"};
/* Fields of offer_get()'s reply that a PUT or PATCH ignores. */
static const char *const readonly_fields[] = {"created_at", "updated_at", "stats"};
static const char *const discount_fields[] = {"type", "value", "currency"};
static const char *const limit_fields[] = {"per_customer", "total"};

#define NAMES(a) (a), (sizeof(a) / sizeof *(a))

/* Refuses a member of obj not in names (nor in also). path prefixes the field. */
static offer_result only_fields(const json_t *obj, const char *const *names, size_t n,
                                const char *const *also, size_t nalso, const char *path,
                                ev_error *err) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        if (name_index(names, n, key) >= 0 || (also && name_index(also, nalso, key) >= 0)) continue;
        char field[128];
        snprintf(field, sizeof field, "%s%s%.100s", path, *path ? "." : "", key);
        return INVALID(err, "invalid_field", field, "%s is not a field of %s", field,
                       *path ? path : "an offer");
    }
    return OFFER_OK;
}

/* An optional text field: 0 when absent, null or "", 1 with *s and *n set, or an error. */
static int opt_text(const json_t *obj, const char *key, size_t max, const char **s, size_t *n,
                    ev_error *err, offer_result *r) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        *r = INVALID(err, "invalid_field", key, "%s must be a string", key);
        return -1;
    }
    *s = json_string_value(v);
    *n = json_string_length(v);
    if (*n == 0) return 0;
    if (*n > max) {
        *r = INVALID(err, "invalid_field", key, "%s is longer than %zu bytes", key, max);
        return -1;
    }
    if (memchr(*s, '\0', *n)) {
        *r = INVALID(err, "invalid_field", key, "%s must not contain a NUL character", key);
        return -1;
    }
    return 1;
}

/* A required or optional member naming one of names: its index, -1 when absent or null (and
 * not required), -2 after an error. */
static int enum_field(const json_t *obj, const char *key, const char *path,
                      const char *const *names, size_t n, bool required, ev_error *err,
                      offer_result *r) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) {
        if (!required) return -1;
        *r = INVALID(err, "missing_field", path, "%s is required", path);
        return -2;
    }
    int i = json_is_string(v) ? name_index(names, n, json_string_value(v)) : -1;
    if (i < 0 || strlen(json_string_value(v)) != json_string_length(v)) {
        char expect[160] = "";
        for (size_t k = 0; k < n; k++)
            snprintf(expect + strlen(expect), sizeof expect - strlen(expect), "%s\"%s\"",
                     k == 0       ? ""
                     : k + 1 == n ? " or "
                                  : ", ",
                     names[k]);
        *r = INVALID(err, "invalid_field", path, "%s must be %s", path, expect);
        return -2;
    }
    return i;
}

static offer_result parse_discount(const json_t *body, def *d, json_t **out, ev_error *err) {
    json_t *disc = json_object_get(body, "discount");
    if (!disc || json_is_null(disc))
        return INVALID(err, "missing_field", "discount", "discount is required");
    if (!json_is_object(disc))
        return INVALID(err, "invalid_field", "discount", "discount must be an object");
    offer_result r = only_fields(disc, NAMES(discount_fields), NULL, 0, "discount", err);
    if (r) return r;
    int t = enum_field(disc, "type", "discount.type", NAMES(disc_names), true, err, &r);
    if (t < 0) return r;
    d->disc = (uint8_t)t;

    json_t *value = json_object_get(disc, "value"), *nvalue = NULL;
    if (json_is_null(value)) value = NULL;
    if (disc_rules[t].value) {
        if (!value)
            return INVALID(err, "missing_field", "discount.value",
                           "discount.value is required for a %s discount", disc_names[t]);
        if (!json_is_number(value))
            return INVALID(err, "invalid_field", "discount.value",
                           "discount.value must be a number");
        double x = json_number_value(value);
        if (!(x > 0 && x <= disc_rules[t].max))
            return INVALID(err, "invalid_field", "discount.value",
                           "discount.value must be above 0 and at most %g for a %s discount",
                           disc_rules[t].max, disc_names[t]);
        nvalue = json_is_integer(value) ? json_integer(json_integer_value(value)) : json_real(x);
        if (!nvalue) return NOMEM(err);
    } else if (value) {
        return INVALID(err, "invalid_field", "discount.value",
                       "discount.value is not taken by a %s discount", disc_names[t]);
    }

    json_t *cur = json_object_get(disc, "currency");
    char currency[4] = "";
    if (json_is_null(cur)) cur = NULL;
    if (disc_rules[t].currency) {
        if (!cur) {
            json_decref(nvalue);
            return INVALID(err, "missing_field", "discount.currency",
                           "discount.currency is required for an amount");
        }
        const char *c = json_is_string(cur) ? json_string_value(cur) : "";
        bool ok = json_is_string(cur) && json_string_length(cur) == 3;
        for (int i = 0; ok && i < 3; i++) {
            currency[i] = upper(c[i]);
            ok = currency[i] >= 'A' && currency[i] <= 'Z';
        }
        if (!ok) {
            json_decref(nvalue);
            return INVALID(err, "invalid_field", "discount.currency",
                           "discount.currency must be a three-letter ISO 4217 code");
        }
    } else if (cur) {
        json_decref(nvalue);
        return INVALID(err, "invalid_field", "discount.currency",
                       "discount.currency is not taken by a %s discount", disc_names[t]);
    }

    bool ok = true;
    json_t *o = json_object();
    if (!o)
        ok = false;
    else {
        set(o, "type", json_string(disc_names[t]), &ok);
        if (nvalue) set(o, "value", nvalue, &ok);
        nvalue = NULL;
        if (currency[0]) set(o, "currency", json_string(currency), &ok);
    }
    json_decref(nvalue);
    if (!ok) {
        json_decref(o);
        return NOMEM(err);
    }
    *out = o;
    return OFFER_OK;
}

static offer_result parse_time(const json_t *body, const char *key, int64_t *ms, int64_t dflt,
                               ev_error *err) {
    json_t *v = json_object_get(body, key);
    *ms = dflt;
    if (!v || json_is_null(v)) return OFFER_OK;
    if (!json_is_string(v) || !tf_parse(json_string_value(v), json_string_length(v), ms))
        return INVALID(err, "invalid_field", key,
                       "%s must be an RFC 3339 time such as 2024-05-01T10:00:00Z", key);
    return OFFER_OK;
}

/* An integer member in [min, max]; absent or null gives dflt. */
static offer_result parse_int(const json_t *obj, const char *key, const char *path, int64_t min,
                              int64_t max, int64_t dflt, int64_t *out, ev_error *err) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    *out = dflt;
    if (!v || json_is_null(v)) return OFFER_OK;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return INVALID(err, "invalid_field", path, "%s must be a whole number from %lld to %lld",
                       path, (long long)min, (long long)max);
    *out = json_integer_value(v);
    return OFFER_OK;
}

static offer_result parse_limits(const json_t *body, def *d, ev_error *err) {
    json_t *lim = json_object_get(body, "limits");
    if (json_is_null(lim)) lim = NULL;
    if (lim && !json_is_object(lim))
        return INVALID(err, "invalid_field", "limits", "limits must be an object");
    offer_result r = lim ? only_fields(lim, NAMES(limit_fields), NULL, 0, "limits", err) : 0;
    if (!r)
        r = parse_int(lim, "per_customer", "limits.per_customer", 1, PER_CUSTOMER_MAX, 1,
                      &d->per_customer, err);
    if (!r) r = parse_int(lim, "total", "limits.total", 1, TOTAL_MAX, 0, &d->total, err);
    return r;
}

static offer_result parse_channels(const json_t *body, def *d, ev_error *err) {
    json_t *ch = json_object_get(body, "channels");
    d->channels = ALL_CHANNELS;
    if (!ch || json_is_null(ch)) return OFFER_OK;
    if (!json_is_array(ch))
        return INVALID(err, "invalid_field", "channels", "channels must be an array of names");
    d->channels = 0;
    size_t i;
    json_t *v;
    json_array_foreach(ch, i, v) {
        char field[32];
        snprintf(field, sizeof field, "channels[%zu]", i);
        int c = json_is_string(v) ? name_index(channel_names, NCHANNELS, json_string_value(v)) : -1;
        if (c < 0 || strlen(json_string_value(v)) != json_string_length(v))
            return INVALID(err, "invalid_field", field,
                           "%s must be one of web, app, email, sms, whatsapp, messenger, pos",
                           field);
        if (d->channels & (1u << c))
            return INVALID(err, "invalid_field", field, "%s repeats %s", field, channel_names[c]);
        d->channels |= 1u << c;
    }
    return OFFER_OK;
}

/* Validates an offer definition and builds its canonical JSON (and compiles its expression).
 * url_id, when not NULL, is the id the caller addresses. On success *d owns what it holds. */
static offer_result parse_def(const offer_state *st, const json_t *body, const char *url_id, def *d,
                              ev_error *err) {
    memset(d, 0, sizeof *d);
    if (!json_is_object(body))
        return INVALID(err, "invalid_body", "", "an offer must be a JSON object");
    offer_result r = only_fields(body, NAMES(def_fields), NAMES(readonly_fields), "", err);
    if (r) return r;

    /* id */
    json_t *idv = json_object_get(body, "id");
    if (json_is_null(idv)) idv = NULL;
    if (idv && !json_is_string(idv))
        return INVALID(err, "invalid_field", "id", "id must be a string");
    const char *id = idv ? json_string_value(idv) : url_id;
    size_t idlen = idv ? json_string_length(idv) : url_id ? strlen(url_id) : 0;
    if (!id || idlen == 0) return INVALID(err, "missing_field", "id", "id is required");
    if (!valid_id(id, idlen))
        return INVALID(err, "invalid_field", "id",
                       "id must be 1 to %d letters, digits, '_', '.' or '-', starting with a "
                       "letter or digit",
                       OFFER_ID_MAX);
    if (url_id && strcmp(id, url_id) != 0)
        return INVALID(err, "invalid_field", "id", "id %s does not match the offer addressed (%s)",
                       id, url_id);
    memcpy(d->id, id, idlen);
    d->id[idlen] = '\0';

    /* name, description, eligibility */
    const char *name = NULL, *descr = NULL, *elig = NULL;
    size_t nname = 0, ndescr = 0, nelig = 0;
    if (opt_text(body, "name", OFFER_NAME_MAX, &name, &nname, err, &r) < 0 ||
        opt_text(body, "description", OFFER_DESCRIPTION_MAX, &descr, &ndescr, err, &r) < 0 ||
        opt_text(body, "eligibility", OFFER_ELIGIBILITY_MAX, &elig, &nelig, err, &r) < 0)
        return r;
    if (!nname) name = NULL;
    if (!ndescr) descr = NULL;
    if (!nelig) elig = NULL;

    /* code_type and code */
    int ct = enum_field(body, "code_type", "code_type", NAMES(ctype_names), true, err, &r);
    if (ct < 0) return r;
    d->ctype = (uint8_t)ct;
    json_t *code = json_object_get(body, "code");
    if (json_is_null(code)) code = NULL;
    if (ct == CT_SHARED) {
        if (!code)
            return INVALID(err, "missing_field", "code", "code is required for code_type shared");
        if (!json_is_string(code) ||
            !normalize_code(json_string_value(code), json_string_length(code), d->code))
            return INVALID(err, "invalid_field", "code",
                           "code must be %d to %d letters, digits, '_' or '-'", OFFER_CODE_MIN,
                           OFFER_CODE_MAX);
        d->codelen = json_string_length(code);
    } else if (code) {
        return INVALID(err, "invalid_field", "code",
                       "code is only for code_type shared (this offer is %s)", ctype_names[ct]);
    }

    /* dates */
    if ((r = parse_time(body, "starts_at", &d->starts_at, INT64_MIN, err)) ||
        (r = parse_time(body, "ends_at", &d->ends_at, INT64_MAX, err)))
        return r;
    if (d->ends_at <= d->starts_at)
        return INVALID(err, "invalid_field", "ends_at", "ends_at must be after starts_at");

    if ((r = parse_limits(body, d, err)) || (r = parse_channels(body, d, err))) return r;
    int status = enum_field(body, "status", "status", NAMES(status_names), false, err, &r);
    if (status == -2) return r;
    d->status = status < 0 ? ST_ACTIVE : (uint8_t)status;

    json_t *disc = NULL;
    if ((r = parse_discount(body, d, &disc, err))) return r;

    /* The canonical form: every field, in one order, nulls for what is absent. */
    bool ok = true;
    json_t *j = json_object(), *lim = json_object(), *chans = NULL;
    if (!j || !lim) ok = false;
    if (d->channels != ALL_CHANNELS || json_is_array(json_object_get(body, "channels"))) {
        if (!(chans = json_array())) ok = false;
        for (size_t c = 0; ok && c < NCHANNELS; c++)
            if (d->channels & (1u << c)) append(chans, json_string(channel_names[c]), &ok);
    }
    if (ok) {
        set(j, "id", json_string(d->id), &ok);
        set(j, "name", str_or_null(name, nname), &ok);
        set(j, "description", str_or_null(descr, ndescr), &ok);
        set(j, "discount", disc, &ok);
        disc = NULL;
        set(j, "code_type", json_string(ctype_names[ct]), &ok);
        set(j, "code", ct == CT_SHARED ? json_stringn(d->code, d->codelen) : json_null(), &ok);
        set(j, "starts_at", time_json(d->starts_at), &ok);
        set(j, "ends_at", time_json(d->ends_at), &ok);
        set(j, "eligibility", str_or_null(elig, nelig), &ok);
        set(lim, "per_customer", json_integer(d->per_customer), &ok);
        set(lim, "total", d->total ? json_integer(d->total) : json_null(), &ok);
        set(j, "limits", lim, &ok);
        lim = NULL;
        set(j, "channels", chans ? chans : json_null(), &ok);
        chans = NULL;
        set(j, "status", json_string(status_names[d->status]), &ok);
    }
    json_decref(disc);
    json_decref(lim);
    json_decref(chans);
    if (!ok) {
        json_decref(j);
        return NOMEM(err);
    }
    d->json = j;

    if (elig) {
        if (!st->opt.expr.compile) {
            def_free(st, d);
            return INVALID(err, "invalid_field", "eligibility",
                           "eligibility expressions are not available on this server");
        }
        ev_error cerr = {.code = "invalid_field"};
        d->elig = st->opt.expr.compile(elig, nelig, &cerr, st->opt.expr.arg);
        if (!d->elig) {
            def_free(st, d);
            ev_error_set(err, cerr.code ? cerr.code : "invalid_field", "eligibility", "%s",
                         cerr.message[0] ? cerr.message : "eligibility does not compile");
            return OFFER_INVALID;
        }
    }
    return OFFER_OK;
}

/* What the state says about installing d over existing (NULL: a new offer). */
static offer_result check_def(const offer_state *st, const def *d, const offer *existing,
                              ev_error *err) {
    if (!existing && st->noffers >= st->opt.max_offers)
        return REFUSE(err, OFFER_TOO_MANY_OFFERS, "id", "there are already %zu offers, the most",
                      st->noffers);
    if (existing && existing->ctype == CT_UNIQUE && d->ctype != CT_UNIQUE && existing->ncodes)
        return REFUSE(err, OFFER_CONFLICT, "code_type",
                      "offer %s has %zu unique codes, so its code_type stays unique", d->id,
                      existing->ncodes);
    if (d->ctype == CT_SHARED) {
        uint32_t c = find_code(st, d->code, d->codelen);
        if (c && !(existing && existing->shared == c)) {
            const char *owner = st->offers[st->codes[c - 1].offer]->id;
            return REFUSE(err, OFFER_CODE_TAKEN, "code", "code %s is already used by offer %s",
                          d->code, owner);
        }
    }
    return OFFER_OK;
}

/* ---- JSON of offers ---- */

static json_t *offer_json(const offer *o) {
    json_t *j = json_deep_copy(o->def), *stats = json_object();
    bool ok = j && stats;
    if (ok) {
        set(j, "created_at", time_json(o->created_at), &ok);
        set(j, "updated_at", time_json(o->updated_at), &ok);
        set(stats, "redemptions", json_integer(o->redemptions), &ok);
        set(stats, "codes", json_integer((json_int_t)o->ncodes), &ok);
        set(stats, "codes_free", json_integer((json_int_t)o->nfree), &ok);
        set(stats, "codes_assigned", json_integer((json_int_t)o->nassigned), &ok);
        set(stats, "codes_redeemed", json_integer((json_int_t)o->nredeemed), &ok);
        set(j, "stats", stats, &ok);
        stats = NULL;
    }
    json_decref(stats);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static json_t *def_get(const offer *o, const char *key) {
    return json_object_get(o->def, key);
}

/* ---- Checks shared by assign, validate and redeem ---- */

static offer_result check_open(const offer *o, int64_t now, ev_error *err) {
    char t[TF_LEN];
    if (o->status == ST_ARCHIVED)
        return REFUSE(err, OFFER_ARCHIVED, "offer", "offer %s is archived", o->id);
    if (o->status == ST_PAUSED)
        return REFUSE(err, OFFER_PAUSED, "offer", "offer %s is paused", o->id);
    if (now < o->starts_at)
        return REFUSE(err, OFFER_NOT_STARTED, "offer", "offer %s starts at %s", o->id,
                      tf_format(o->starts_at, t));
    if (now >= o->ends_at)
        return REFUSE(err, OFFER_EXPIRED, "offer", "offer %s ended at %s", o->id,
                      tf_format(o->ends_at, t));
    return OFFER_OK;
}

static offer_result check_code_state(const offer_state *st, uint32_t cref, uint32_t pref,
                                     ev_error *err) {
    if (!cref) return OFFER_OK;
    const ocode *c = &st->codes[cref - 1];
    size_t n;
    const char *s = code_text(st, cref - 1, &n);
    if (c->state == CS_REDEEMED)
        return REFUSE(err, OFFER_ALREADY_REDEEMED, "code", "code %.*s was already used", (int)n, s);
    if (c->state == CS_ASSIGNED && c->holder && c->holder != pref)
        return REFUSE(err, OFFER_ASSIGNED_TO_OTHER, "code", "code %.*s belongs to another customer",
                      (int)n, s);
    return OFFER_OK;
}

static offer_result check_eligible(const offer_state *st, const offer *o, const void *ctx,
                                   ev_error *err) {
    if (!o->elig) return OFFER_OK;
    int e = st->opt.expr.eval ? st->opt.expr.eval(o->elig, ctx, st->opt.expr.arg) : -1;
    if (e != 1)
        return REFUSE(err, OFFER_NOT_ELIGIBLE, "profile_id",
                      "the customer is not eligible for offer %s", o->id);
    return OFFER_OK;
}

static offer_result check_limits(const offer_state *st, const offer *o, uint32_t oi, uint32_t pref,
                                 ev_error *err) {
    if (o->total && o->redemptions >= o->total)
        return REFUSE(err, OFFER_LIMIT_REACHED, "offer",
                      "offer %s reached its limit of %lld redemptions", o->id, (long long)o->total);
    if (prof_count(st, pref, oi) >= o->per_customer)
        return REFUSE(err, OFFER_CUSTOMER_LIMIT_REACHED, "profile_id",
                      "the customer has used offer %s %lld time%s, the most allowed", o->id,
                      (long long)o->per_customer, o->per_customer == 1 ? "" : "s");
    return OFFER_OK;
}

/* Finds the offer and code a customer names: a code (with offer_id, the offer it must belong
 * to), or an automatic offer's id alone. *cref is the unique code's index + 1, 0 otherwise. */
static offer_result resolve(const offer_state *st, const char *offer_id, const char *code,
                            offer **po, uint32_t *cref, uint32_t *used, ev_error *err) {
    *cref = *used = 0;
    if (!code) {
        if (!offer_id)
            return INVALID(err, "missing_field", "code",
                           "code (or an automatic offer's id) is "
                           "required");
        offer *o = find_offer(st, offer_id);
        if (!o) return REFUSE(err, OFFER_UNKNOWN_OFFER, "offer", "no offer has this id");
        if (o->ctype != CT_NONE)
            return INVALID(err, "missing_field", "code", "offer %s is used with a code", o->id);
        *po = o;
        return OFFER_OK;
    }
    size_t n = strlen(code);
    while (n && is_blank(code[n - 1]))
        n--;
    while (n && is_blank(*code))
        code++, n--;
    char norm[OFFER_CODE_MAX + 1];
    uint32_t c = normalize_code(code, n, norm) ? find_code(st, norm, n) : 0;
    offer *o = c ? st->offers[st->codes[c - 1].offer] : NULL;
    if (!o || (offer_id && strcmp(o->id, offer_id) != 0))
        return REFUSE(err, OFFER_UNKNOWN_CODE, "code", "no offer has this code");
    *po = o;
    *used = c;
    if (st->codes[c - 1].state != CS_SHARED) *cref = c;
    return OFFER_OK;
}

/* ---- Records ---- */

/* The string member key of a record, checked by ok (NULL: any id of 1..255 bytes of UTF-8). */
static const char *rec_str(const json_t *rec, const char *key, bool (*ok)(const char *, size_t),
                           ev_error *err) {
    json_t *v = json_object_get(rec, key);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (!s || n == 0 || strlen(s) != n ||
        (ok ? !ok(s, n) : (n > OFFER_PROFILE_ID_MAX || !utf8_ok(s, n)))) {
        INVALID(err, "invalid_field", key, "the record's %s is missing or malformed", key);
        return NULL;
    }
    return s;
}

static json_t *record_new(const char *op) {
    json_t *r = json_object();
    if (r && json_object_set_new(r, "op", json_string(op))) {
        json_decref(r);
        return NULL;
    }
    return r;
}

/* ---- Definitions: prepare ---- */

offer_result offer_put(const offer_state *st, const char *id, const json_t *body, json_t **record,
                       ev_error *err) {
    *record = NULL;
    def d;
    offer_result r = parse_def(st, body, id, &d, err);
    if (r) return r;
    if (!(r = check_def(st, &d, find_offer(st, d.id), err))) {
        bool ok = true;
        json_t *rec = record_new("offer.put");
        if (!rec)
            ok = false;
        else
            set(rec, "offer", json_incref(d.json), &ok);
        if (ok)
            *record = rec;
        else {
            json_decref(rec);
            r = NOMEM(err);
        }
    }
    def_free(st, &d);
    return r;
}

static offer_result check_depth(const json_t *v, int depth, ev_error *err) {
    if (depth > PATCH_DEPTH_MAX)
        return INVALID(err, "too_deep", "", "the patch nests deeper than %d levels",
                       PATCH_DEPTH_MAX);
    const char *key;
    size_t i;
    json_t *child;
    offer_result r = OFFER_OK;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, child) {
            if ((r = check_depth(child, depth + 1, err))) return r;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, child) {
            if ((r = check_depth(child, depth + 1, err))) return r;
        }
    }
    return r;
}

/* The definition of o with patch merged in, validated. */
static offer_result patched_def(const offer_state *st, const offer *o, const json_t *patch, def *d,
                                ev_error *err) {
    if (!json_is_object(patch))
        return INVALID(err, "invalid_body", "", "a patch must be a JSON object");
    offer_result r = check_depth(patch, 1, err);
    if (r) return r;
    json_t *merged = json_deep_copy(o->def);
    if (!merged || jmerge_patch(merged, patch)) {
        json_decref(merged);
        return NOMEM(err);
    }
    r = parse_def(st, merged, o->id, d, err);
    json_decref(merged);
    return r;
}

offer_result offer_patch(const offer_state *st, const char *id, const json_t *patch,
                         json_t **record, ev_error *err) {
    *record = NULL;
    offer *o = find_offer(st, id);
    if (!o) return REFUSE(err, OFFER_UNKNOWN_OFFER, "id", "no offer has this id");
    def d;
    offer_result r = patched_def(st, o, patch, &d, err);
    if (r) return r;
    if (!(r = check_def(st, &d, o, err))) {
        bool ok = true;
        json_t *rec = record_new("offer.patch");
        if (!rec)
            ok = false;
        else {
            set(rec, "id", json_string(o->id), &ok);
            set(rec, "patch", json_deep_copy(patch), &ok);
        }
        if (ok)
            *record = rec;
        else {
            json_decref(rec);
            r = NOMEM(err);
        }
    }
    def_free(st, &d);
    return r;
}

offer_result offer_get(const offer_state *st, const char *id, json_t **reply, ev_error *err) {
    *reply = NULL;
    offer *o = find_offer(st, id);
    if (!o) return REFUSE(err, OFFER_UNKNOWN_OFFER, "id", "no offer has this id");
    if (!(*reply = offer_json(o))) return NOMEM(err);
    return OFFER_OK;
}

static offer_result page_limit(size_t *limit, ev_error *err) {
    if (*limit == 0) *limit = OFFER_LIST_DEFAULT;
    if (*limit > OFFER_LIST_MAX)
        return INVALID(err, "invalid_field", "limit", "limit must be from 1 to %d", OFFER_LIST_MAX);
    return OFFER_OK;
}

offer_result offer_list(const offer_state *st, const char *cursor, size_t limit, json_t **reply,
                        ev_error *err) {
    *reply = NULL;
    offer_result r = page_limit(&limit, err);
    if (r) return r;
    if (cursor && !valid_id(cursor, strlen(cursor)))
        return INVALID(err, "invalid_field", "cursor", "cursor is not one this server gave");
    size_t i = cursor ? sorted_lower(st, cursor, true) : 0, end = i + limit;
    if (end > st->noffers) end = st->noffers;
    bool ok = true;
    json_t *j = json_object(), *arr = json_array();
    if (!j || !arr) ok = false;
    for (size_t k = i; ok && k < end; k++)
        append(arr, offer_json(st->offers[st->sorted[k]]), &ok);
    if (ok) {
        set(j, "offers", arr, &ok);
        arr = NULL;
        set(j, "next",
            end < st->noffers && end > i ? json_string(st->offers[st->sorted[end - 1]]->id)
                                         : json_null(),
            &ok);
    }
    json_decref(arr);
    if (!ok) {
        json_decref(j);
        return NOMEM(err);
    }
    *reply = j;
    return OFFER_OK;
}

/* ---- Definitions: apply ---- */

/* Room for one more code entry of n bytes of text. */
static int reserve_codes(offer_state *st, size_t count, size_t text) {
    if (text > UINT32_MAX - st->ntext) return -1;
    if (vec_reserve((void **)&st->codes, &st->acodes, st->ncodes + count, sizeof *st->codes) ||
        vec_reserve((void **)&st->text, &st->atext, st->ntext + text, 1) ||
        otab_reserve(&st->code_tab, count))
        return -1;
    return 0;
}

/* Appends a code; room must have been reserved. Returns its index. */
static uint32_t code_append(offer_state *st, const char *s, size_t n, uint32_t oi, uint8_t state) {
    uint32_t idx = (uint32_t)st->ncodes++;
    memcpy(st->text + st->ntext, s, n);
    st->codes[idx] = (ocode){(uint32_t)st->ntext, oi, 0, (uint8_t)n, state};
    st->ntext += n;
    otab_insert(&st->code_tab, tag_of(s, n), idx + 1);
    return idx;
}

static void code_kill(offer_state *st, uint32_t idx) {
    size_t n;
    const char *s = code_text(st, idx, &n);
    otab_remove(&st->code_tab, tag_of(s, n), idx + 1);
    st->codes[idx].state = CS_DEAD;
}

/* Installs d (whose contents it takes) as a new offer or over o. */
static offer_result install_def(offer_state *st, offer *o, def *d, int64_t now, json_t **reply,
                                ev_error *err) {
    offer_result r = check_def(st, d, o, err);
    if (r) return r;
    bool new_code = d->ctype == CT_SHARED && !(o && o->shared);
    if (o && o->shared && d->ctype == CT_SHARED) {
        size_t n;
        const char *s = code_text(st, o->shared - 1, &n);
        new_code = n != d->codelen || memcmp(s, d->code, n) != 0;
    }
    offer *fresh = NULL;
    if (!o) {
        if (!(fresh = calloc(1, sizeof *fresh)) ||
            vec_reserve((void **)&st->offers, &st->aoffers, st->noffers + 1, sizeof *st->offers) ||
            vec_reserve((void **)&st->sorted, &st->asorted, st->noffers + 1, sizeof *st->sorted)) {
            free(fresh);
            return NOMEM(err);
        }
    }
    if (new_code && reserve_codes(st, 1, d->codelen)) {
        free(fresh);
        return NOMEM(err);
    }

    /* Nothing below fails. */
    if (fresh) {
        o = fresh;
        uint32_t oi = (uint32_t)st->noffers;
        size_t pos = sorted_lower(st, d->id, false);
        memmove(st->sorted + pos + 1, st->sorted + pos, (st->noffers - pos) * sizeof *st->sorted);
        st->sorted[pos] = oi;
        o->idx = oi;
        st->offers[st->noffers++] = o;
        memcpy(o->id, d->id, sizeof o->id);
        o->created_at = now;
    }
    uint32_t oi = o->idx;
    if (o->shared && (new_code || d->ctype != CT_SHARED)) {
        code_kill(st, o->shared - 1);
        o->shared = 0;
    }
    if (new_code) o->shared = code_append(st, d->code, d->codelen, oi, CS_SHARED) + 1;
    json_decref(o->def);
    elig_free(st, o->elig);
    o->def = d->json;
    o->discount = json_object_get(o->def, "discount");
    o->elig = d->elig;
    d->json = NULL;
    d->elig = NULL;
    o->ctype = d->ctype;
    o->status = d->status;
    o->starts_at = d->starts_at;
    o->ends_at = d->ends_at;
    o->per_customer = d->per_customer;
    o->total = d->total;
    o->channels = d->channels;
    o->updated_at = now;
    *reply = offer_json(o);
    return OFFER_OK;
}

static offer_result apply_put(offer_state *st, const json_t *rec, int64_t now, json_t **reply,
                              ev_error *err) {
    def d;
    offer_result r = parse_def(st, json_object_get(rec, "offer"), NULL, &d, err);
    if (r) return r;
    r = install_def(st, find_offer(st, d.id), &d, now, reply, err);
    def_free(st, &d);
    return r;
}

static offer_result apply_patch(offer_state *st, const json_t *rec, int64_t now, json_t **reply,
                                ev_error *err) {
    const char *id = rec_str(rec, "id", valid_id, err);
    if (!id) return OFFER_INVALID;
    offer *o = find_offer(st, id);
    if (!o) return REFUSE(err, OFFER_UNKNOWN_OFFER, "id", "no offer has this id");
    def d;
    offer_result r = patched_def(st, o, json_object_get(rec, "patch"), &d, err);
    if (r) return r;
    r = install_def(st, o, &d, now, reply, err);
    def_free(st, &d);
    return r;
}

/* ---- Unique codes ---- */

/* Codes of a batch being prepared, for finding repeats within it. */
typedef struct batch {
    const char **s;
    const size_t *n;
} batch;

static okey batch_key(const void *ctx, uint32_t ref) {
    const batch *b = ctx;
    return (okey){b->s[ref - 1], b->n[ref - 1]};
}

/* The offer codes are added to; field names the request's count ("count" or "codes"). */
static offer_result codes_target(const offer_state *st, const char *id, size_t count,
                                 const char *field, offer **po, ev_error *err) {
    offer *o = find_offer(st, id);
    if (!o) return REFUSE(err, OFFER_UNKNOWN_OFFER, "id", "no offer has this id");
    if (o->ctype != CT_UNIQUE)
        return REFUSE(err, OFFER_CONFLICT, "code_type",
                      "offer %s has code_type %s; only unique offers take codes", o->id,
                      ctype_names[o->ctype]);
    if (count > st->opt.max_codes_per_offer - o->ncodes)
        return REFUSE(err, OFFER_TOO_MANY_CODES, field,
                      "offer %s has %zu codes; %zu more would pass its limit of %zu", o->id,
                      o->ncodes, count, st->opt.max_codes_per_offer);
    if (count > st->opt.max_codes - st->unique_codes)
        return REFUSE(err, OFFER_TOO_MANY_CODES, field,
                      "the server holds %zu codes; %zu more would pass its limit of %zu",
                      st->unique_codes, count, st->opt.max_codes);
    *po = o;
    return OFFER_OK;
}

static json_t *codes_record(const char *id, const char *const *s, const size_t *n, size_t count) {
    bool ok = true;
    json_t *rec = record_new("offer.codes_add"), *arr = json_array();
    if (!rec || !arr) ok = false;
    for (size_t i = 0; ok && i < count; i++)
        append(arr, json_stringn(s[i], n[i]), &ok);
    if (ok) {
        set(rec, "id", json_string(id), &ok);
        set(rec, "codes", arr, &ok);
        arr = NULL;
    }
    json_decref(arr);
    if (!ok) {
        json_decref(rec);
        return NULL;
    }
    return rec;
}

/* Checks a batch of canonical codes against itself and the state. *at: the first bad one. */
static offer_result batch_check(const offer_state *st, const char *const *s, const size_t *n,
                                size_t count, size_t *at, ev_error *err) {
    otab seen = {0};
    if (otab_reserve(&seen, count)) return NOMEM(err);
    batch b = {(const char **)s, n};
    offer_result r = OFFER_OK;
    for (size_t i = 0; i < count && !r; i++) {
        uint32_t tag = tag_of(s[i], n[i]);
        uint32_t c = find_code(st, s[i], n[i]);
        if (c) {
            *at = i;
            r = REFUSE(err, OFFER_CODE_TAKEN, "codes", "code %.*s is already used by offer %s",
                       (int)n[i], s[i], st->offers[st->codes[c - 1].offer]->id);
        } else if (otab_find(&seen, tag, s[i], n[i], batch_key, &b)) {
            *at = i;
            r = REFUSE(err, OFFER_CODE_TAKEN, "codes", "code %.*s appears twice", (int)n[i], s[i]);
        } else {
            otab_insert(&seen, tag, (uint32_t)i + 1);
        }
    }
    free(seen.s);
    return r;
}

static const char gen_alphabet[] = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"; /* 31: no 0 O 1 I L */
#define GEN_BASE (sizeof gen_alphabet - 1)

static void rng_default(void *out, size_t n, void *arg) {
    (void)arg;
    hash_random(out, n);
}

/* Draws one symbol without modulo bias: bytes from 248 (= 8 * 31) up are thrown away. */
typedef struct drawer {
    offer_rng rng;
    void *arg;
    unsigned char pool[256];
    size_t left;
} drawer;

static char draw_symbol(drawer *d) {
    for (;;) {
        if (!d->left) {
            d->rng(d->pool, sizeof d->pool, d->arg);
            d->left = sizeof d->pool;
        }
        unsigned char b = d->pool[--d->left];
        if (b < 256 / GEN_BASE * GEN_BASE) return gen_alphabet[b % GEN_BASE];
    }
}

offer_result offer_codes_generate(const offer_state *st, const char *id, size_t count,
                                  const char *prefix, offer_rng rng, void *rng_arg, json_t **record,
                                  ev_error *err) {
    *record = NULL;
    if (count == 0 || count > OFFER_BATCH_MAX)
        return INVALID(err, "invalid_field", "count", "count must be from 1 to %d",
                       OFFER_BATCH_MAX);
    size_t plen = prefix ? strlen(prefix) : 0;
    char pre[OFFER_PREFIX_MAX + 1];
    bool pok = plen <= OFFER_PREFIX_MAX;
    for (size_t i = 0; pok && i < plen; i++) {
        pre[i] = upper(prefix[i]);
        pok = is_alnum(pre[i]) || pre[i] == '_' || pre[i] == '-';
    }
    if (!pok)
        return INVALID(err, "invalid_field", "prefix",
                       "prefix must be at most %d letters, digits, '_' or '-'", OFFER_PREFIX_MAX);
    offer *o;
    offer_result r = codes_target(st, id, count, "count", &o, err);
    if (r) return r;

    /* Each code is PREFIX-XXXX-XXXX: a fixed stride in one buffer. */
    size_t len = plen + (plen ? 1 : 0) + GEN_SYMBOLS + 1, stride = len + 1;
    char *text = malloc(count * stride);
    const char **s = malloc(count * sizeof *s);
    size_t *n = malloc(count * sizeof *n);
    otab seen = {0};
    if (!text || !s || !n || otab_reserve(&seen, count)) {
        r = NOMEM(err);
        goto done;
    }
    drawer dr = {rng ? rng : rng_default, rng_arg, {0}, 0};
    batch b = {s, n};
    for (size_t i = 0; i < count; i++) {
        char *c = text + i * stride;
        s[i] = c;
        n[i] = len;
        memcpy(c, pre, plen);
        if (plen) c[plen] = '-';
        char *x = c + plen + (plen ? 1 : 0);
        x[GEN_GROUP] = '-';
        c[len] = '\0';
        int attempt = 0;
        uint32_t tag;
        do {
            if (++attempt > GEN_ATTEMPTS) {
                r = REFUSE(err, OFFER_CODE_TAKEN, "count",
                           "could not draw %zu distinct codes: the random source repeats", count);
                goto done;
            }
            for (int k = 0; k < GEN_SYMBOLS; k++)
                x[k < GEN_GROUP ? k : k + 1] = draw_symbol(&dr);
            tag = tag_of(c, len);
        } while (find_code(st, c, len) || otab_find(&seen, tag, c, len, batch_key, &b));
        otab_insert(&seen, tag, (uint32_t)i + 1);
    }
    if (!(*record = codes_record(o->id, s, n, count))) r = NOMEM(err);
done:
    free(seen.s);
    free(text);
    free(s);
    free(n);
    return r;
}

offer_result offer_codes_import(const offer_state *st, const char *id, const json_t *codes,
                                json_t **record, ev_error *err) {
    *record = NULL;
    if (!json_is_array(codes) || json_array_size(codes) == 0 ||
        json_array_size(codes) > OFFER_BATCH_MAX)
        return INVALID(err, "invalid_field", "codes", "codes must be an array of 1 to %d strings",
                       OFFER_BATCH_MAX);
    size_t count = json_array_size(codes);
    offer *o;
    offer_result r = codes_target(st, id, count, "codes", &o, err);
    if (r) return r;
    char *text = malloc(count * (OFFER_CODE_MAX + 1));
    const char **s = malloc(count * sizeof *s);
    size_t *n = malloc(count * sizeof *n);
    if (!text || !s || !n) {
        r = NOMEM(err);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *v = json_array_get(codes, i);
        char *c = text + i * (OFFER_CODE_MAX + 1);
        s[i] = c;
        n[i] = json_string_length(v);
        if (!json_is_string(v) || !normalize_code(json_string_value(v), n[i], c)) {
            char field[32];
            snprintf(field, sizeof field, "codes[%zu]", i);
            r = INVALID(err, "invalid_field", field,
                        "%s must be %d to %d letters, digits, '_' or '-'", field, OFFER_CODE_MIN,
                        OFFER_CODE_MAX);
            goto done;
        }
    }
    size_t at = 0;
    if ((r = batch_check(st, s, n, count, &at, err))) {
        if (r == OFFER_CODE_TAKEN && err) snprintf(err->field, sizeof err->field, "codes[%zu]", at);
        goto done;
    }
    if (!(*record = codes_record(o->id, s, n, count))) r = NOMEM(err);
done:
    free(text);
    free(s);
    free(n);
    return r;
}

static offer_result apply_codes_add(offer_state *st, const json_t *rec, int64_t now, json_t **reply,
                                    ev_error *err) {
    (void)now;
    const char *id = rec_str(rec, "id", valid_id, err);
    json_t *codes = json_object_get(rec, "codes");
    if (!id) return OFFER_INVALID;
    if (!json_is_array(codes) || json_array_size(codes) == 0 ||
        json_array_size(codes) > OFFER_BATCH_MAX)
        return INVALID(err, "invalid_field", "codes", "the record's codes are malformed");
    size_t count = json_array_size(codes), text = 0;
    for (size_t i = 0; i < count; i++) {
        json_t *v = json_array_get(codes, i);
        if (!json_is_string(v) || !canonical_code(json_string_value(v), json_string_length(v)))
            return INVALID(err, "invalid_field", "codes", "the record's codes are malformed");
        text += json_string_length(v);
    }
    offer *o;
    offer_result r = codes_target(st, id, count, "codes", &o, err);
    if (r) return r;
    if (reserve_codes(st, count, text) ||
        vec_reserve((void **)&o->codes, &o->acodes, o->ncodes + count, sizeof *o->codes))
        return NOMEM(err);
    /* Insert one by one; a code already present (in the state, or earlier in this batch, which
     * is in the state by then) undoes the batch. */
    uint32_t oi = o->idx;
    size_t first = st->ncodes, text0 = st->ntext;
    for (size_t i = 0; i < count; i++) {
        json_t *v = json_array_get(codes, i);
        const char *c = json_string_value(v);
        size_t n = json_string_length(v);
        uint32_t dup = find_code(st, c, n);
        if (dup) {
            r = REFUSE(err, OFFER_CODE_TAKEN, "codes", "code %.*s is already used by offer %s",
                       (int)n, c,
                       dup - 1 >= first ? o->id : st->offers[st->codes[dup - 1].offer]->id);
            while (st->ncodes > first)
                code_kill(st, (uint32_t)--st->ncodes);
            st->ntext = text0;
            return r;
        }
        code_append(st, c, n, oi, CS_FREE);
    }
    for (size_t i = first; i < st->ncodes; i++)
        o->codes[o->ncodes++] = (uint32_t)i;
    o->nfree += count;
    st->unique_codes += count;

    bool ok = true;
    json_t *j = json_object();
    if (!j)
        ok = false;
    else {
        set(j, "offer", json_string(o->id), &ok);
        set(j, "added", json_integer((json_int_t)count), &ok);
        set(j, "codes", json_deep_copy(codes), &ok);
    }
    if (!ok) json_decref(j);
    *reply = ok ? j : NULL;
    return OFFER_OK;
}

/* A position in a list, as a cursor: decimal digits, at most max. */
static bool parse_pos(const char *s, size_t max, size_t *out) {
    size_t v = 0, n = strlen(s);
    if (n == 0 || n > 10) return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    if (v > max) return false;
    *out = v;
    return true;
}

static json_t *code_state_json(const offer_state *st, uint32_t idx) {
    const ocode *c = &st->codes[idx];
    json_t *j = json_object();
    bool ok = j != NULL;
    if (ok) {
        set(j, "code", code_json(st, idx + 1), &ok);
        set(j, "state", json_string(code_state_names[c->state]), &ok);
        set(j, "profile", prof_json(st, c->holder), &ok);
    }
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

offer_result offer_codes_list(const offer_state *st, const char *id, const char *cursor,
                              size_t limit, json_t **reply, ev_error *err) {
    *reply = NULL;
    offer_result r = page_limit(&limit, err);
    if (r) return r;
    offer *o = find_offer(st, id);
    if (!o) return REFUSE(err, OFFER_UNKNOWN_OFFER, "id", "no offer has this id");
    size_t i = 0;
    if (cursor && !parse_pos(cursor, o->ncodes, &i))
        return INVALID(err, "invalid_field", "cursor", "cursor is not one this server gave");
    size_t end = o->ncodes - i > limit ? i + limit : o->ncodes;
    bool ok = true;
    json_t *j = json_object(), *arr = json_array();
    if (!j || !arr) ok = false;
    for (size_t k = i; ok && k < end; k++)
        append(arr, code_state_json(st, o->codes[k]), &ok);
    if (ok) {
        set(j, "codes", arr, &ok);
        arr = NULL;
        char next[24];
        snprintf(next, sizeof next, "%zu", end);
        set(j, "next", end < o->ncodes ? json_string(next) : json_null(), &ok);
    }
    json_decref(arr);
    if (!ok) {
        json_decref(j);
        return NOMEM(err);
    }
    *reply = j;
    return OFFER_OK;
}

/* ---- Profiles and redemptions: storage ---- */

/* The profile's slot + 1, created if new, with room for one more held code, counter and
 * redemption; 0 when memory runs out (then no profile was created: only an existing one's
 * capacity may have grown, which nothing can see). */
static uint32_t prof_ready(offer_state *st, const char *id) {
    uint32_t ref = find_prof(st, id);
    oprof fresh = {0}, *p = ref ? &st->profs[ref - 1] : &fresh;
    if (!ref) {
        fresh.idlen = strlen(id);
        if (!(fresh.id = malloc(fresh.idlen + 1)) ||
            (!st->npfree &&
             vec_reserve((void **)&st->profs, &st->aprofs, st->nprofs + 1, sizeof *st->profs)) ||
            otab_reserve(&st->prof_tab, 1))
            goto fail;
        memcpy(fresh.id, id, fresh.idlen + 1);
    }
    if (vec_reserve((void **)&p->held, &p->aheld, p->nheld + 1, sizeof *p->held) ||
        vec_reserve((void **)&p->cnt, &p->acnt, p->ncnt + 1, sizeof *p->cnt) ||
        vec_reserve((void **)&p->red, &p->ared, p->nred + 1, sizeof *p->red))
        goto fail;
    if (ref) return ref;
    uint32_t slot = st->npfree ? st->pfree[--st->npfree] : (uint32_t)st->nprofs++;
    st->profs[slot] = fresh;
    otab_insert(&st->prof_tab, tag_of(fresh.id, fresh.idlen), slot + 1);
    st->live_profs++;
    return slot + 1;
fail:
    if (!ref) {
        free(fresh.id);
        free(fresh.held);
        free(fresh.cnt);
        free(fresh.red);
    }
    return 0;
}

static void code_set(offer_state *st, uint32_t idx, uint8_t state, uint32_t holder) {
    ocode *c = &st->codes[idx];
    offer *o = st->offers[c->offer];
    size_t *count[] = {&o->nfree, &o->nassigned, &o->nredeemed};
    if (c->state <= CS_REDEEMED) --*count[c->state];
    if (state <= CS_REDEEMED) ++*count[state];
    c->state = state;
    c->holder = holder;
}

static void held_remove(oprof *p, uint32_t code) {
    for (size_t i = 0; i < p->nheld; i++)
        if (p->held[i].code == code) {
            memmove(p->held + i, p->held + i + 1, (p->nheld - i - 1) * sizeof *p->held);
            p->nheld--;
            return;
        }
}

/* ---- Customers: assign ---- */

static json_t *assign_reply(const offer_state *st, const offer *o, uint32_t cref, int64_t at) {
    json_t *j = json_object();
    bool ok = j != NULL;
    if (ok) {
        set(j, "offer", json_string(o->id), &ok);
        set(j, "code", code_json(st, cref), &ok);
        set(j, "code_type", json_string(ctype_names[o->ctype]), &ok);
        set(j, "discount", json_deep_copy(o->discount), &ok);
        set(j, "ends_at", time_json(o->ends_at), &ok);
        set(j, "assigned_at", o->ctype == CT_UNIQUE ? time_json(at) : json_null(), &ok);
    }
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* The checks of an assignment; *pos is the customer's held code (-1: none). eligibility is
 * judged only when ctx_given. */
static offer_result assign_checks(const offer_state *st, const offer *o, uint32_t pref,
                                  const void *ctx, bool judge, int64_t now, ptrdiff_t *pos,
                                  ev_error *err) {
    uint32_t oi = o->idx;
    offer_result r = check_open(o, now, err);
    if (!r && judge) r = check_eligible(st, o, ctx, err);
    if (!r) r = check_limits(st, o, oi, pref, err);
    if (r) return r;
    *pos = o->ctype == CT_UNIQUE ? prof_held(st, pref, oi) : -1;
    if (o->ctype == CT_UNIQUE && *pos < 0 && o->nfree == 0)
        return REFUSE(err, OFFER_NO_CODES_LEFT, "offer", "offer %s has no codes left", o->id);
    return OFFER_OK;
}

/* The reply when the customer needs no new code, or NULL (with *need set) when they do. */
static offer_result assign_existing(const offer_state *st, const offer *o, uint32_t pref,
                                    ptrdiff_t pos, json_t **reply, bool *need, ev_error *err) {
    *need = false;
    if (o->ctype == CT_UNIQUE && pos < 0) {
        *need = true;
        return OFFER_OK;
    }
    const held *h = pos >= 0 ? &st->profs[pref - 1].held[pos] : NULL;
    *reply = assign_reply(st, o,
                          o->ctype == CT_SHARED ? o->shared
                          : h                   ? h->code + 1
                                                : 0,
                          h ? h->at : INT64_MIN);
    return *reply ? OFFER_OK : NOMEM(err);
}

offer_result offer_assign(const offer_state *st, const char *offer_id, const char *profile_id,
                          const void *profile_ctx, int64_t now_ms, json_t **record, json_t **reply,
                          ev_error *err) {
    *record = *reply = NULL;
    offer_result r = check_ext_id(profile_id, "profile_id", err);
    if (r) return r;
    offer *o = find_offer(st, offer_id);
    if (!o) return REFUSE(err, OFFER_UNKNOWN_OFFER, "offer", "no offer has this id");
    uint32_t pref = find_prof(st, profile_id);
    ptrdiff_t pos;
    bool need;
    if ((r = assign_checks(st, o, pref, profile_ctx, true, now_ms, &pos, err)) ||
        (r = assign_existing(st, o, pref, pos, reply, &need, err)) || !need)
        return r;
    bool ok = true;
    json_t *rec = record_new("offer.assign");
    if (!rec)
        ok = false;
    else {
        set(rec, "id", json_string(o->id), &ok);
        set(rec, "profile", json_string(profile_id), &ok);
    }
    if (!ok) {
        json_decref(rec);
        return NOMEM(err);
    }
    *record = rec;
    return OFFER_OK;
}

static offer_result apply_assign(offer_state *st, const json_t *rec, int64_t now, json_t **reply,
                                 ev_error *err) {
    const char *id = rec_str(rec, "id", valid_id, err), *pid = NULL;
    if (!id || !(pid = rec_str(rec, "profile", NULL, err))) return OFFER_INVALID;
    offer *o = find_offer(st, id);
    if (!o) return REFUSE(err, OFFER_UNKNOWN_OFFER, "offer", "no offer has this id");
    uint32_t pref = find_prof(st, pid);
    ptrdiff_t pos;
    bool need;
    offer_result r;
    if ((r = assign_checks(st, o, pref, NULL, false, now, &pos, err)) ||
        (r = assign_existing(st, o, pref, pos, reply, &need, err)) || !need)
        return r;
    if (!(pref = prof_ready(st, pid))) return NOMEM(err);
    oprof *p = &st->profs[pref - 1];
    while (st->codes[o->codes[o->next_free]].state != CS_FREE)
        o->next_free++;
    uint32_t c = o->codes[o->next_free++];
    code_set(st, c, CS_ASSIGNED, pref);
    p->held[p->nheld++] = (held){c, now};
    *reply = assign_reply(st, o, c + 1, now);
    return OFFER_OK;
}

/* ---- Customers: validate, redeem, unredeem ---- */

static json_t *validate_reply(const offer_state *st, const offer *o, uint32_t used) {
    json_t *j = json_object(), *oj = json_object();
    bool ok = j && oj;
    if (ok) {
        set(oj, "id", json_string(o->id), &ok);
        set(oj, "name", json_deep_copy(def_get(o, "name")), &ok);
        set(oj, "description", json_deep_copy(def_get(o, "description")), &ok);
        set(j, "ok", json_true(), &ok);
        set(j, "offer", oj, &ok);
        oj = NULL;
        set(j, "code", code_json(st, used), &ok);
        set(j, "discount", json_deep_copy(o->discount), &ok);
        set(j, "ends_at", time_json(o->ends_at), &ok);
    }
    json_decref(oj);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* The checks of validate and redeem after resolving; eligibility only when judge. */
static offer_result use_checks(const offer_state *st, const offer *o, uint32_t cref, uint32_t pref,
                               const void *ctx, bool judge, int64_t now, ev_error *err) {
    offer_result r = check_open(o, now, err);
    if (!r) r = check_code_state(st, cref, pref, err);
    if (!r && judge) r = check_eligible(st, o, ctx, err);
    if (!r) r = check_limits(st, o, o->idx, pref, err);
    return r;
}

offer_result offer_validate(const offer_state *st, const char *offer_id, const char *code,
                            const char *profile_id, const void *profile_ctx, int64_t now_ms,
                            json_t **reply, ev_error *err) {
    *reply = NULL;
    offer_result r = check_ext_id(profile_id, "profile_id", err);
    offer *o;
    uint32_t cref, used;
    if (r || (r = resolve(st, offer_id, code, &o, &cref, &used, err))) return r;
    uint32_t pref = find_prof(st, profile_id);
    if ((r = use_checks(st, o, cref, pref, profile_ctx, true, now_ms, err))) return r;
    if (!(*reply = validate_reply(st, o, used))) return NOMEM(err);
    return OFFER_OK;
}

/* The redemption of offer oi by order, index + 1, or 0. */
static uint32_t order_red(const offer_state *st, const char *order, uint32_t oi) {
    for (uint32_t r = find_order(st, order); r; r = st->reds[r - 1].next)
        if (st->reds[r - 1].offer == oi) return r;
    return 0;
}

static json_t *redeem_reply(const offer_state *st, uint32_t ref) {
    const ored *rd = &st->reds[ref - 1];
    json_t *j = json_object();
    bool ok = j != NULL;
    char t[TF_LEN];
    if (ok) {
        set(j, "offer", json_string(st->offers[rd->offer]->id), &ok);
        set(j, "code", code_json(st, rd->code), &ok);
        set(j, "profile", prof_json(st, rd->profile), &ok);
        set(j, "order", json_stringn(rd->order, rd->orderlen), &ok);
        set(j, "discount", json_deep_copy(rd->discount), &ok);
        set(j, "redeemed_at", json_string(tf_format(rd->at, t)), &ok);
    }
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

offer_result offer_redeem(const offer_state *st, const char *offer_id, const char *code,
                          const char *profile_id, const char *order_id, const void *profile_ctx,
                          int64_t now_ms, json_t **record, json_t **reply, ev_error *err) {
    *record = *reply = NULL;
    offer_result r = check_ext_id(profile_id, "profile_id", err);
    if (!r) r = check_ext_id(order_id, "order_id", err);
    offer *o;
    uint32_t cref, used;
    if (r || (r = resolve(st, offer_id, code, &o, &cref, &used, err))) return r;
    uint32_t done = order_red(st, order_id, o->idx);
    if (done) {
        *reply = redeem_reply(st, done);
        return *reply ? OFFER_OK : NOMEM(err);
    }
    uint32_t pref = find_prof(st, profile_id);
    if ((r = use_checks(st, o, cref, pref, profile_ctx, true, now_ms, err))) return r;
    bool ok = true;
    json_t *rec = record_new("offer.redeem");
    if (!rec)
        ok = false;
    else {
        set(rec, "offer", json_string(o->id), &ok);
        set(rec, "code", code_json(st, used), &ok);
        set(rec, "profile", json_string(profile_id), &ok);
        set(rec, "order", json_string(order_id), &ok);
    }
    if (!ok) {
        json_decref(rec);
        return NOMEM(err);
    }
    *record = rec;
    return OFFER_OK;
}

static offer_result apply_redeem(offer_state *st, const json_t *rec, int64_t now, json_t **reply,
                                 ev_error *err) {
    const char *id = rec_str(rec, "offer", valid_id, err), *pid = NULL, *order = NULL;
    if (!id || !(pid = rec_str(rec, "profile", NULL, err)) ||
        !(order = rec_str(rec, "order", NULL, err)))
        return OFFER_INVALID;
    json_t *cv = json_object_get(rec, "code");
    const char *code = NULL;
    if (cv && !json_is_null(cv) && !(code = rec_str(rec, "code", canonical_code, err)))
        return OFFER_INVALID;
    offer *o;
    uint32_t cref, used;
    offer_result r = resolve(st, id, code, &o, &cref, &used, err);
    if (r) return r;
    uint32_t oi = o->idx;
    uint32_t done = order_red(st, order, oi);
    if (done) {
        *reply = redeem_reply(st, done);
        return OFFER_OK;
    }
    uint32_t pref = find_prof(st, pid);
    if ((r = use_checks(st, o, cref, pref, NULL, false, now, err))) return r;

    /* Reserve everything: profile, its counters and redemption list, a redemption slot, the
     * order's table entry, the order id's copy. */
    size_t olen = strlen(order);
    uint32_t head = find_order(st, order);
    char *ocopy = malloc(olen + 1);
    if (!ocopy ||
        (!st->nrfree &&
         vec_reserve((void **)&st->reds, &st->areds, st->nreds + 1, sizeof *st->reds)) ||
        (!head && otab_reserve(&st->order_tab, 1)) || !(pref = prof_ready(st, pid))) {
        free(ocopy);
        return NOMEM(err);
    }
    memcpy(ocopy, order, olen + 1);
    oprof *p = &st->profs[pref - 1];

    uint32_t slot = st->nrfree ? st->rfree[--st->nrfree] : (uint32_t)st->nreds++;
    st->reds[slot] = (ored){.order = ocopy,
                            .orderlen = olen,
                            .offer = oi,
                            .code = used,
                            .profile = pref,
                            .at = now,
                            .discount = json_incref(o->discount)};
    if (head) {
        uint32_t last = head;
        while (st->reds[last - 1].next)
            last = st->reds[last - 1].next;
        st->reds[last - 1].next = slot + 1;
    } else {
        otab_insert(&st->order_tab, tag_of(order, olen), slot + 1);
    }
    st->live_reds++;
    p->red[p->nred++] = slot;
    pcount *pc = NULL;
    for (size_t i = 0; i < p->ncnt && !pc; i++)
        if (p->cnt[i].offer == oi) pc = &p->cnt[i];
    if (!pc) {
        pc = &p->cnt[p->ncnt++];
        *pc = (pcount){oi, 0};
    }
    pc->redeemed++;
    o->redemptions++;
    if (cref) {
        if (st->codes[cref - 1].state == CS_ASSIGNED && st->codes[cref - 1].holder == pref)
            held_remove(p, cref - 1);
        code_set(st, cref - 1, CS_REDEEMED, pref);
    }
    *reply = redeem_reply(st, slot + 1);
    return OFFER_OK;
}

offer_result offer_unredeem(const offer_state *st, const char *order_id, json_t **record,
                            json_t **reply, ev_error *err) {
    *record = *reply = NULL;
    offer_result r = check_ext_id(order_id, "order_id", err);
    if (r) return r;
    bool ok = true;
    json_t *j;
    if (find_order(st, order_id)) {
        j = record_new("offer.unredeem");
        if (j) set(j, "order", json_string(order_id), &ok);
    } else {
        j = json_object();
        if (j) {
            set(j, "order", json_string(order_id), &ok);
            set(j, "released", json_integer(0), &ok);
        }
    }
    if (!j || !ok) {
        json_decref(j);
        return NOMEM(err);
    }
    *(json_object_get(j, "op") ? record : reply) = j;
    return OFFER_OK;
}

static offer_result apply_unredeem(offer_state *st, const json_t *rec, int64_t now, json_t **reply,
                                   ev_error *err) {
    (void)now;
    const char *order = rec_str(rec, "order", NULL, err);
    if (!order) return OFFER_INVALID;
    uint32_t head = find_order(st, order);
    size_t chain = 0;
    for (uint32_t r = head; r; r = st->reds[r - 1].next)
        chain++;
    /* Reserve: the free list, and each holder's held list for the codes coming back. */
    if (vec_reserve((void **)&st->rfree, &st->arfree, st->nrfree + chain, sizeof *st->rfree))
        return NOMEM(err);
    for (uint32_t r = head; r; r = st->reds[r - 1].next) {
        const ored *rd = &st->reds[r - 1];
        oprof *p = rd->profile ? &st->profs[rd->profile - 1] : NULL;
        if (p && rd->code &&
            vec_reserve((void **)&p->held, &p->aheld, p->nheld + chain, sizeof *p->held))
            return NOMEM(err);
    }
    json_t *out = json_object();
    bool ok = out != NULL;
    if (ok) set(out, "order", json_string(order), &ok);
    if (head) otab_remove(&st->order_tab, tag_of(order, strlen(order)), head);
    for (uint32_t r = head, next; r; r = next) {
        ored *rd = &st->reds[r - 1];
        next = rd->next;
        offer *o = st->offers[rd->offer];
        o->redemptions--;
        if (rd->profile) {
            oprof *p = &st->profs[rd->profile - 1];
            for (size_t i = 0; i < p->ncnt; i++)
                if (p->cnt[i].offer == rd->offer) p->cnt[i].redeemed--;
            for (size_t i = 0; i < p->nred; i++)
                if (p->red[i] == r - 1) {
                    memmove(p->red + i, p->red + i + 1, (p->nred - i - 1) * sizeof *p->red);
                    p->nred--;
                    break;
                }
        }
        if (rd->code && st->codes[rd->code - 1].state == CS_REDEEMED) {
            code_set(st, rd->code - 1, CS_ASSIGNED, rd->profile);
            if (rd->profile) {
                oprof *p = &st->profs[rd->profile - 1];
                p->held[p->nheld++] = (held){rd->code - 1, rd->at};
            }
        }
        free(rd->order);
        json_decref(rd->discount);
        *rd = (ored){0};
        st->rfree[st->nrfree++] = r - 1;
        st->live_reds--;
    }
    if (ok) set(out, "released", json_integer((json_int_t)chain), &ok);
    if (!ok) {
        json_decref(out);
        out = NULL;
    }
    *reply = out;
    return OFFER_OK;
}

/* ---- Erasure ---- */

/* Frees profile slot pref and drops its id from the table; st->pfree must have room for one. */
static void prof_drop(offer_state *st, uint32_t pref) {
    oprof *p = &st->profs[pref - 1];
    otab_remove(&st->prof_tab, tag_of(p->id, p->idlen), pref);
    free(p->id);
    free(p->cnt);
    free(p->held);
    free(p->red);
    *p = (oprof){0};
    st->pfree[st->npfree++] = pref - 1;
    st->live_profs--;
}

static json_t *forget_reply(const char *pid, size_t assignments, size_t redemptions) {
    json_t *j = json_object();
    bool ok = j != NULL;
    if (ok) {
        set(j, "profile", json_string(pid), &ok);
        set(j, "assignments", json_integer((json_int_t)assignments), &ok);
        set(j, "redemptions", json_integer((json_int_t)redemptions), &ok);
    }
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

offer_result offer_forget_profile(const offer_state *st, const char *profile_id, json_t **record,
                                  json_t **reply, ev_error *err) {
    *record = *reply = NULL;
    offer_result r = check_ext_id(profile_id, "profile_id", err);
    if (r) return r;
    if (!find_prof(st, profile_id)) {
        *reply = forget_reply(profile_id, 0, 0);
        return *reply ? OFFER_OK : NOMEM(err);
    }
    bool ok = true;
    json_t *rec = record_new("offer.forget");
    if (!rec)
        ok = false;
    else
        set(rec, "profile", json_string(profile_id), &ok);
    if (!ok) {
        json_decref(rec);
        return NOMEM(err);
    }
    *record = rec;
    return OFFER_OK;
}

static offer_result apply_forget(offer_state *st, const json_t *rec, int64_t now, json_t **reply,
                                 ev_error *err) {
    (void)now;
    const char *pid = rec_str(rec, "profile", NULL, err);
    if (!pid) return OFFER_INVALID;
    uint32_t pref = find_prof(st, pid);
    if (!pref) {
        *reply = forget_reply(pid, 0, 0);
        return OFFER_OK;
    }
    if (vec_reserve((void **)&st->pfree, &st->apfree, st->npfree + 1, sizeof *st->pfree))
        return NOMEM(err);
    oprof *p = &st->profs[pref - 1];
    for (size_t i = 0; i < p->nheld; i++)
        st->codes[p->held[i].code].holder = 0;
    for (size_t i = 0; i < p->nred; i++) {
        ored *rd = &st->reds[p->red[i]];
        rd->profile = 0;
        if (rd->code && st->codes[rd->code - 1].holder == pref) st->codes[rd->code - 1].holder = 0;
    }
    *reply = forget_reply(pid, p->nheld, p->nred);
    prof_drop(st, pref);
    return OFFER_OK;
}

/* ---- Identity resolution ---- */

static json_t *merge_reply(const char *from, const char *into, size_t assignments,
                           size_t redemptions) {
    json_t *j = json_object();
    bool ok = j != NULL;
    if (ok) {
        set(j, "from", json_string(from), &ok);
        set(j, "into", json_string(into), &ok);
        set(j, "assignments", json_integer((json_int_t)assignments), &ok);
        set(j, "redemptions", json_integer((json_int_t)redemptions), &ok);
    }
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

offer_result offer_merge_profiles(const offer_state *st, const char *from, const char *into,
                                  json_t **record, ev_error *err) {
    *record = NULL;
    offer_result r = check_ext_id(from, "from", err);
    if (!r) r = check_ext_id(into, "into", err);
    if (r) return r;
    if (strcmp(from, into) == 0)
        return INVALID(err, "invalid_field", "into", "into must name another profile than from");
    if (!find_prof(st, from)) return OFFER_OK;
    bool ok = true;
    json_t *rec = record_new("offer.merge_profiles");
    if (!rec)
        ok = false;
    else {
        set(rec, "from", json_string(from), &ok);
        set(rec, "into", json_string(into), &ok);
    }
    if (!ok) {
        json_decref(rec);
        return NOMEM(err);
    }
    *record = rec;
    return OFFER_OK;
}

/* Moves everything of profile slot fref to slot iref (both live, room reserved), then drops
 * fref. into's held codes stay ahead of from's, so prof_held() — what offer_assign() returns —
 * still finds into's own code of an offer first; from's stays assigned to into behind it. The
 * redemption lists merge by time (into's first on a tie), keeping "oldest first". */
static void prof_merge(offer_state *st, uint32_t fref, uint32_t iref) {
    oprof *f = &st->profs[fref - 1], *p = &st->profs[iref - 1];
    for (size_t i = 0; i < f->nheld; i++) {
        st->codes[f->held[i].code].holder = iref;
        p->held[p->nheld++] = f->held[i];
    }
    for (size_t i = 0; i < f->nred; i++) {
        ored *rd = &st->reds[f->red[i]];
        rd->profile = iref;
        if (rd->code && st->codes[rd->code - 1].holder == fref)
            st->codes[rd->code - 1].holder = iref;
    }
    size_t a = p->nred, b = f->nred, k = a + b;
    while (b) {
        if (a && st->reds[p->red[a - 1]].at > st->reds[f->red[b - 1]].at)
            p->red[--k] = p->red[--a];
        else
            p->red[--k] = f->red[--b];
    }
    p->nred += f->nred;
    for (size_t i = 0; i < f->ncnt; i++) {
        pcount *pc = NULL;
        for (size_t c = 0; c < p->ncnt && !pc; c++)
            if (p->cnt[c].offer == f->cnt[i].offer) pc = &p->cnt[c];
        if (pc)
            pc->redeemed += f->cnt[i].redeemed;
        else
            p->cnt[p->ncnt++] = f->cnt[i];
    }
    prof_drop(st, fref);
}

static offer_result apply_merge(offer_state *st, const json_t *rec, int64_t now, json_t **reply,
                                ev_error *err) {
    (void)now;
    const char *from = rec_str(rec, "from", NULL, err), *into = NULL;
    if (!from || !(into = rec_str(rec, "into", NULL, err))) return OFFER_INVALID;
    if (strcmp(from, into) == 0)
        return INVALID(err, "invalid_field", "into", "the record merges a profile into itself");
    uint32_t fref = find_prof(st, from), iref = find_prof(st, into);
    if (!fref) { /* nothing to move, or already moved: applying twice is harmless */
        *reply = merge_reply(from, into, 0, 0);
        return OFFER_OK;
    }
    oprof *f = &st->profs[fref - 1];
    size_t nheld = f->nheld, nred = f->nred;
    if (!iref) {
        /* into has nothing yet: from's slot takes into's name, and every code and redemption
         * pointing at the slot follows. */
        size_t n = strlen(into);
        char *id = malloc(n + 1);
        if (!id) return NOMEM(err);
        memcpy(id, into, n + 1);
        otab_remove(&st->prof_tab, tag_of(f->id, f->idlen), fref);
        free(f->id);
        f->id = id;
        f->idlen = n;
        otab_insert(&st->prof_tab, tag_of(id, n), fref); /* the removal left room */
    } else {
        oprof *p = &st->profs[iref - 1];
        if (vec_reserve((void **)&p->held, &p->aheld, p->nheld + f->nheld, sizeof *p->held) ||
            vec_reserve((void **)&p->cnt, &p->acnt, p->ncnt + f->ncnt, sizeof *p->cnt) ||
            vec_reserve((void **)&p->red, &p->ared, p->nred + f->nred, sizeof *p->red) ||
            vec_reserve((void **)&st->pfree, &st->apfree, st->npfree + 1, sizeof *st->pfree))
            return NOMEM(err);
        prof_merge(st, fref, iref);
    }
    *reply = merge_reply(from, into, nheld, nred);
    return OFFER_OK;
}

/* ---- Applying ---- */

typedef offer_result (*apply_fn)(offer_state *st, const json_t *rec, int64_t now, json_t **reply,
                                 ev_error *err);

static const struct {
    const char *op;
    apply_fn fn;
} apply_ops[] = {
    {"offer.put", apply_put},
    {"offer.patch", apply_patch},
    {"offer.codes_add", apply_codes_add},
    {"offer.assign", apply_assign},
    {"offer.redeem", apply_redeem},
    {"offer.unredeem", apply_unredeem},
    {"offer.forget", apply_forget},
    {"offer.merge_profiles", apply_merge},
};

offer_result offer_apply(offer_state *st, const json_t *record, int64_t now_ms, json_t **reply,
                         ev_error *err) {
    *reply = NULL;
    const char *op = json_string_value(json_object_get(record, "op"));
    for (size_t i = 0; op && i < sizeof apply_ops / sizeof *apply_ops; i++)
        if (strcmp(op, apply_ops[i].op) == 0)
            return apply_ops[i].fn(st, record, now_ms, reply, err);
    return INVALID(err, "invalid_field", "op", "not an offer record");
}

/* ---- Lookups for the engine ---- */

offer_result offer_eligible_list(const offer_state *st, const char *profile_id,
                                 const void *profile_ctx, const char *channel, int64_t now_ms,
                                 json_t **reply, ev_error *err) {
    *reply = NULL;
    offer_result r = check_ext_id(profile_id, "profile_id", err);
    if (r) return r;
    int ch = channel ? name_index(channel_names, NCHANNELS, channel) : -1;
    if (channel && ch < 0)
        return INVALID(err, "invalid_field", "channel",
                       "channel must be one of web, app, email, sms, whatsapp, messenger, pos");
    uint32_t pref = find_prof(st, profile_id);
    bool ok = true;
    json_t *j = json_object(), *arr = json_array();
    if (!j || !arr) ok = false;
    for (size_t k = 0; ok && k < st->noffers; k++) {
        uint32_t oi = st->sorted[k];
        const offer *o = st->offers[oi];
        ev_error ignored;
        ptrdiff_t pos;
        if ((ch >= 0 && !(o->channels & (1u << ch))) ||
            assign_checks(st, o, pref, profile_ctx, true, now_ms, &pos, &ignored))
            continue;
        json_t *e = json_object();
        if (!e)
            ok = false;
        else {
            uint32_t code = o->ctype == CT_SHARED ? o->shared
                            : pos >= 0            ? st->profs[pref - 1].held[pos].code + 1
                                                  : 0;
            set(e, "id", json_string(o->id), &ok);
            set(e, "name", json_deep_copy(def_get(o, "name")), &ok);
            set(e, "description", json_deep_copy(def_get(o, "description")), &ok);
            set(e, "discount", json_deep_copy(o->discount), &ok);
            set(e, "code_type", json_string(ctype_names[o->ctype]), &ok);
            set(e, "code", code_json(st, code), &ok);
            set(e, "ends_at", time_json(o->ends_at), &ok);
        }
        append(arr, e, &ok);
    }
    if (ok) {
        set(j, "offers", arr, &ok);
        arr = NULL;
    }
    json_decref(arr);
    if (!ok) {
        json_decref(j);
        return NOMEM(err);
    }
    *reply = j;
    return OFFER_OK;
}

static json_t *held_json(const offer_state *st, const held *h) {
    json_t *e = json_object();
    bool ok = e != NULL;
    if (ok) {
        set(e, "offer", json_string(st->offers[st->codes[h->code].offer]->id), &ok);
        set(e, "code", code_json(st, h->code + 1), &ok);
        set(e, "assigned_at", time_json(h->at), &ok);
    }
    if (!ok) {
        json_decref(e);
        return NULL;
    }
    return e;
}

static json_t *red_json(const offer_state *st, uint32_t idx, bool full) {
    const ored *rd = &st->reds[idx];
    json_t *e = json_object();
    bool ok = e != NULL;
    if (ok) {
        set(e, "offer", json_string(st->offers[rd->offer]->id), &ok);
        set(e, "code", code_json(st, rd->code), &ok);
        set(e, "order", json_stringn(rd->order, rd->orderlen), &ok);
        set(e, "redeemed_at", time_json(rd->at), &ok);
        if (full) {
            set(e, "profile", prof_json(st, rd->profile), &ok);
            set(e, "discount", json_deep_copy(rd->discount), &ok);
        }
    }
    if (!ok) {
        json_decref(e);
        return NULL;
    }
    return e;
}

/* {"assignments":[...], "redemptions":[...]} of one profile slot (pref 0: both empty). */
static json_t *prof_lists(const offer_state *st, uint32_t pref) {
    json_t *j = json_object(), *as = json_array(), *rs = json_array();
    bool ok = j && as && rs;
    const oprof *p = pref ? &st->profs[pref - 1] : NULL;
    for (size_t i = 0; ok && p && i < p->nheld; i++)
        append(as, held_json(st, &p->held[i]), &ok);
    for (size_t i = 0; ok && p && i < p->nred; i++)
        append(rs, red_json(st, p->red[i], false), &ok);
    if (ok) {
        set(j, "assignments", as, &ok);
        as = NULL;
        set(j, "redemptions", rs, &ok);
        rs = NULL;
    }
    json_decref(as);
    json_decref(rs);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

offer_result offer_profile_json(const offer_state *st, const char *profile_id, json_t **reply,
                                ev_error *err) {
    *reply = NULL;
    offer_result r = check_ext_id(profile_id, "profile_id", err);
    if (r) return r;
    if (!(*reply = prof_lists(st, find_prof(st, profile_id)))) return NOMEM(err);
    return OFFER_OK;
}

json_t *offer_state_json(const offer_state *st) {
    bool ok = true;
    json_t *j = json_object(), *offers = json_array(), *profs = json_array(), *reds = json_array();
    if (!j || !offers || !profs || !reds) ok = false;
    for (size_t k = 0; ok && k < st->noffers; k++) {
        const offer *o = st->offers[st->sorted[k]];
        json_t *oj = offer_json(o), *codes = json_array();
        if (!oj || !codes) ok = false;
        for (size_t i = 0; ok && i < o->ncodes; i++)
            append(codes, code_state_json(st, o->codes[i]), &ok);
        if (ok) {
            set(oj, "codes", codes, &ok);
            codes = NULL;
            set(oj, "next_free", json_integer((json_int_t)o->next_free), &ok);
        }
        json_decref(codes);
        append(offers, oj, &ok);
    }
    for (size_t i = 0; ok && i < st->nprofs; i++) {
        const oprof *p = &st->profs[i];
        if (!p->id) continue;
        json_t *pj = prof_lists(st, (uint32_t)i + 1), *cnt = json_array();
        if (!pj || !cnt) ok = false;
        for (size_t c = 0; ok && c < p->ncnt; c++) {
            json_t *e = json_object();
            if (!e)
                ok = false;
            else {
                set(e, "offer", json_string(st->offers[p->cnt[c].offer]->id), &ok);
                set(e, "redeemed", json_integer(p->cnt[c].redeemed), &ok);
            }
            append(cnt, e, &ok);
        }
        if (ok) {
            set(pj, "id", json_stringn(p->id, p->idlen), &ok);
            set(pj, "counts", cnt, &ok);
            cnt = NULL;
        }
        json_decref(cnt);
        append(profs, pj, &ok);
    }
    for (size_t i = 0; ok && i < st->nreds; i++)
        if (st->reds[i].order) append(reds, red_json(st, (uint32_t)i, true), &ok);
    if (ok) {
        set(j, "offers", offers, &ok);
        offers = NULL;
        set(j, "profiles", profs, &ok);
        profs = NULL;
        set(j, "redemptions", reds, &ok);
        reds = NULL;
    }
    json_decref(offers);
    json_decref(profs);
    json_decref(reds);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

void offer_get_stats(const offer_state *st, offer_stats *out) {
    size_t b = sizeof *st + st->aoffers * sizeof *st->offers + st->asorted * sizeof *st->sorted +
               st->acodes * sizeof *st->codes + st->atext +
               (st->code_tab.cap + st->prof_tab.cap + st->order_tab.cap) * sizeof(oslot) +
               st->aprofs * sizeof *st->profs + st->apfree * sizeof *st->pfree +
               st->areds * sizeof *st->reds + st->arfree * sizeof *st->rfree;
    for (size_t i = 0; i < st->noffers; i++)
        b += sizeof(offer) + st->offers[i]->acodes * sizeof(uint32_t);
    for (size_t i = 0; i < st->nprofs; i++) {
        const oprof *p = &st->profs[i];
        if (p->id)
            b += p->idlen + 1 + p->acnt * sizeof *p->cnt + p->aheld * sizeof *p->held +
                 p->ared * sizeof *p->red;
    }
    for (size_t i = 0; i < st->nreds; i++)
        if (st->reds[i].order) b += st->reds[i].orderlen + 1;
    *out = (offer_stats){st->noffers, st->unique_codes, st->live_profs, st->live_reds, b};
}
