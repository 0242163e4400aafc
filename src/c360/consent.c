/* consent — the consent ledger; the rules are in consent.h. Policy lives in four tables: the
 * channels, the statuses, the purposes with their default policy, and the mapping of consent
 * categories (cookie banners) to purposes. */
#include "c360/consent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/timefmt.h"
#include "util/utf8.h"
#include "util/vec.h"

/* ---------------------------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------------------------- */

static const char *const channel_names[CONSENT_NCHANNELS] = {
    [CONSENT_EMAIL] = "email",         [CONSENT_SMS] = "sms",   [CONSENT_WHATSAPP] = "whatsapp",
    [CONSENT_MESSENGER] = "messenger", [CONSENT_PUSH] = "push", [CONSENT_WEB] = "web",
    [CONSENT_PHONE] = "phone",         [CONSENT_POST] = "post", [CONSENT_ALL] = "all",
};

static const char *const status_names[CONSENT_NSTATUS] = {
    [CONSENT_GRANTED] = "granted",
    [CONSENT_DENIED] = "denied",
    [CONSENT_WITHDRAWN] = "withdrawn",
};

/* The built-in purposes and what a send may do when the customer has said nothing. Every other
 * purpose is opt-in: asking first is the side of the law that never needs a lawyer. */
static const struct {
    const char *name;
    consent_policy policy;
} purposes[] = {
    {"transactional", CONSENT_OPT_OUT},
    {"marketing", CONSENT_OPT_IN},
    {"profiling", CONSENT_OPT_IN},
};

/* The (channel, purpose) pairs a cookie banner's categories speak for. */
enum { PAIR_WEB_MARKETING, PAIR_WEB_PROFILING, PAIR_ALL_DATA_SHARING, NPAIRS, PAIR_NONE = -1 };
static const struct {
    consent_channel channel;
    const char *purpose;
} pairs[NPAIRS] = {
    [PAIR_WEB_MARKETING] = {CONSENT_WEB, "marketing"},
    [PAIR_WEB_PROFILING] = {CONSENT_WEB, "profiling"},
    [PAIR_ALL_DATA_SHARING] = {CONSENT_ALL, "data_sharing"},
};

/* Consent categories (Segment's categoryPreferences keys; OneTrust's group ids, which its Segment
 * wrapper sends when categories are not renamed), compared ignoring case, spaces, '_' and '-'.
 * The strictly necessary and functional categories gate nothing engaged does (PAIR_NONE). */
static const struct {
    const char *category;
    int pair;
} categories[] = {
    {"advertising", PAIR_WEB_MARKETING},
    {"marketing", PAIR_WEB_MARKETING},
    {"targeting", PAIR_WEB_MARKETING},
    {"c0004", PAIR_WEB_MARKETING}, /* OneTrust: targeting cookies */
    {"analytics", PAIR_WEB_PROFILING},
    {"performance", PAIR_WEB_PROFILING},
    {"personalization", PAIR_WEB_PROFILING},
    {"personalisation", PAIR_WEB_PROFILING},
    {"c0002", PAIR_WEB_PROFILING}, /* OneTrust: performance cookies */
    {"datasharing", PAIR_ALL_DATA_SHARING},
    {"functional", PAIR_NONE},
    {"necessary", PAIR_NONE},
    {"strictlynecessary", PAIR_NONE},
    {"c0001", PAIR_NONE}, /* OneTrust: strictly necessary */
    {"c0003", PAIR_NONE}, /* OneTrust: functional */
};

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* The range tf_format() writes as a four-digit year. */
#define AT_MIN (-62135596800000LL) /* 0001-01-01T00:00:00.000Z */
#define AT_MAX (253402300799999LL) /* 9999-12-31T23:59:59.999Z */

/* ---------------------------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------------------------- */

int consent_channel_lookup(const char *name) {
    for (int i = 0; name && i < CONSENT_NCHANNELS; i++)
        if (strcmp(name, channel_names[i]) == 0) return i;
    return -1;
}

const char *consent_channel_name(int channel) {
    return channel >= 0 && channel < CONSENT_NCHANNELS ? channel_names[channel] : NULL;
}

int consent_status_lookup(const char *name) {
    for (int i = 0; name && i < CONSENT_NSTATUS; i++)
        if (strcmp(name, status_names[i]) == 0) return i;
    return -1;
}

const char *consent_status_name(int status) {
    return status >= 0 && status < CONSENT_NSTATUS ? status_names[status] : NULL;
}

bool consent_name_valid(const char *name) {
    if (!name) return false;
    size_t i = 0;
    for (; name[i]; i++) {
        char c = name[i];
        if (i == CONSENT_NAME_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return i > 0;
}

consent_policy consent_purpose_policy(const char *purpose) {
    for (size_t i = 0; purpose && i < NELEMS(purposes); i++)
        if (strcmp(purpose, purposes[i].name) == 0) return purposes[i].policy;
    return CONSENT_OPT_IN;
}

static bool agent_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '@' || c == '-';
}

static bool actor_valid(const char *a) {
    if (strcmp(a, "customer") == 0 || strcmp(a, "system") == 0) return true;
    if (strncmp(a, "agent:", 6) != 0) return false;
    size_t i = 6;
    for (; a[i]; i++)
        if (i - 6 == CONSENT_AGENT_ID_MAX || !agent_char(a[i])) return false;
    return i > 6;
}

/* Whether s is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF),
 * as every string written into JSON must be. JSON input already is; records built in C may not. */
static bool utf8_valid(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = utf8_seq((const unsigned char *)s + i, n - i))) return false;
    return true;
}

/* Writes the path of field inside the record at prefix ("records[2]" or "" for a lone record). */
static void field_path(char out[128], const char *prefix, const char *field) {
    snprintf(out, 128, "%s%s%s", prefix, prefix[0] ? "." : "", field);
}

static int check_fields(const consent_record *r, const char *prefix, ev_error *err) {
    char p[128];
    if ((unsigned)r->channel >= CONSENT_NCHANNELS) {
        field_path(p, prefix, "channel");
        ev_error_set(err, "invalid_field", p,
                     "%s must be one of email, sms, whatsapp, messenger, push, web, phone, post, "
                     "all",
                     p);
        return -1;
    }
    if (!consent_name_valid(r->purpose)) {
        field_path(p, prefix, "purpose");
        ev_error_set(err, "invalid_field", p, "%s must be 1 to 32 characters of a-z, 0-9 and _", p);
        return -1;
    }
    if ((unsigned)r->status >= CONSENT_NSTATUS) {
        field_path(p, prefix, "status");
        ev_error_set(err, "invalid_field", p, "%s must be granted, denied or withdrawn", p);
        return -1;
    }
    if (r->at_ms < AT_MIN || r->at_ms > AT_MAX) {
        field_path(p, prefix, "at");
        ev_error_set(err, "invalid_field", p, "%s must lie in the years 1 to 9999", p);
        return -1;
    }
    if (!consent_name_valid(r->source)) {
        field_path(p, prefix, "source");
        ev_error_set(err, "invalid_field", p, "%s must be 1 to 32 characters of a-z, 0-9 and _", p);
        return -1;
    }
    if (!actor_valid(r->actor)) {
        field_path(p, prefix, "actor");
        ev_error_set(err, "invalid_field", p,
                     "%s must be customer, system or agent:<id> (an id of up to 64 letters, "
                     "digits, _ . @ -)",
                     p);
        return -1;
    }
    if (r->proof && strlen(r->proof) > CONSENT_PROOF_MAX) {
        field_path(p, prefix, "proof");
        ev_error_set(err, "invalid_field", p, "%s is longer than %d bytes", p, CONSENT_PROOF_MAX);
        return -1;
    }
    if (r->proof && !utf8_valid(r->proof)) {
        field_path(p, prefix, "proof");
        ev_error_set(err, "invalid_field", p, "%s is not UTF-8 text", p);
        return -1;
    }
    return 0;
}

int consent_record_check(const consent_record *r, ev_error *err) {
    return check_fields(r, "", err);
}

/* ---------------------------------------------------------------------------------------------
 * The ledger
 * ------------------------------------------------------------------------------------------- */

struct consent_ledger {
    consent_record *recs; /* in ledger order; each proof is malloc'd or NULL */
    size_t n, alloc;
};

consent_ledger *consent_ledger_new(void) {
    return calloc(1, sizeof(consent_ledger));
}

static void free_records(consent_record *recs, size_t n) {
    for (size_t i = 0; i < n; i++)
        free((char *)recs[i].proof);
    free(recs);
}

void consent_ledger_free(consent_ledger *l) {
    if (!l) return;
    free_records(l->recs, l->n);
    free(l);
}

size_t consent_count(const consent_ledger *l) {
    return l ? l->n : 0;
}

const consent_record *consent_get(const consent_ledger *l, size_t i) {
    return l && i < l->n ? &l->recs[i] : NULL;
}

void consent_forget(consent_ledger *l) {
    if (!l) return;
    free_records(l->recs, l->n);
    l->recs = NULL;
    l->n = l->alloc = 0;
}

/* Record a (at index ia) is later than record b (at ib): by `at`, then by ledger position. */
static bool later(const consent_record *a, size_t ia, const consent_record *b, size_t ib) {
    return a->at_ms != b->at_ms ? a->at_ms > b->at_ms : ia > ib;
}

static const consent_record *latest(const consent_ledger *l, consent_channel a, consent_channel b,
                                    const char *purpose) {
    const consent_record *best = NULL;
    size_t bi = 0;
    for (size_t i = 0; l && i < l->n; i++) {
        const consent_record *r = &l->recs[i];
        if ((r->channel == a || r->channel == b) && strcmp(r->purpose, purpose) == 0 &&
            (!best || later(r, i, best, bi)))
            best = r, bi = i;
    }
    return best;
}

const consent_record *consent_current(const consent_ledger *l, consent_channel channel,
                                      const char *purpose) {
    return purpose ? latest(l, channel, channel, purpose) : NULL;
}

const consent_record *consent_effective(const consent_ledger *l, consent_channel channel,
                                        const char *purpose) {
    return purpose ? latest(l, channel, CONSENT_ALL, purpose) : NULL;
}

bool consent_allows(const consent_ledger *l, consent_channel channel, const char *purpose,
                    consent_policy policy) {
    if ((unsigned)channel >= CONSENT_NCHANNELS || !consent_name_valid(purpose)) return false;
    const consent_record *r = consent_effective(l, channel, purpose);
    if (r) return r->status == CONSENT_GRANTED;
    if (policy == CONSENT_POLICY_DEFAULT) policy = consent_purpose_policy(purpose);
    return policy == CONSENT_OPT_OUT;
}

static bool has_purpose(const consent_record *recs, size_t n, const char *purpose) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(recs[i].purpose, purpose) == 0) return true;
    return false;
}

static size_t count_purposes(const consent_record *recs, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!has_purpose(recs, i, recs[i].purpose)) k++;
    return k;
}

/* A record and its position, for sorting without a comparison context. */
typedef struct ref {
    const consent_record *r;
    size_t i;
} ref;

/* By pair (channel, then purpose), then by time, then by position: the last of a pair's run is
 * its current record. */
static int cmp_pair_time(const void *pa, const void *pb) {
    const ref *a = pa, *b = pb;
    if (a->r->channel != b->r->channel) return a->r->channel < b->r->channel ? -1 : 1;
    int c = strcmp(a->r->purpose, b->r->purpose);
    if (c) return c;
    if (a->r->at_ms != b->r->at_ms) return a->r->at_ms < b->r->at_ms ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* By time, then by position: oldest first. */
static int cmp_time(const void *pa, const void *pb) {
    const ref *a = pa, *b = pb;
    if (a->r->at_ms != b->r->at_ms) return a->r->at_ms < b->r->at_ms ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* refs[0..n) of recs sorted by cmp_pair_time; NULL when memory runs out (or n is 0). */
static ref *sorted_by_pair(const consent_record *recs, size_t n) {
    ref *refs = n ? malloc(n * sizeof *refs) : NULL;
    if (!refs) return NULL;
    for (size_t i = 0; i < n; i++)
        refs[i] = (ref){&recs[i], i};
    qsort(refs, n, sizeof *refs, cmp_pair_time);
    return refs;
}

static bool same_pair(const consent_record *a, const consent_record *b) {
    return a->channel == b->channel && strcmp(a->purpose, b->purpose) == 0;
}

/* Drops the oldest superseded records of recs[0..*n) until at most CONSENT_MAX_RECORDS remain
 * (or no superseded record is left), keeping the others in order. Dropping a superseded record
 * never changes which records are current, so one pass decides them all. Returns 0 or -1 (memory;
 * nothing changed). */
static int trim(consent_record *recs, size_t *n) {
    if (*n <= CONSENT_MAX_RECORDS) return 0;
    ref *refs = sorted_by_pair(recs, *n);
    if (!refs) return -1;
    size_t ns = 0; /* superseded refs, gathered at the front of refs */
    for (size_t k = 0; k < *n; k++)
        if (k + 1 < *n && same_pair(refs[k].r, refs[k + 1].r)) refs[ns++] = refs[k];
    qsort(refs, ns, sizeof *refs, cmp_time);
    size_t drop = *n - CONSENT_MAX_RECORDS < ns ? *n - CONSENT_MAX_RECORDS : ns;
    bool *gone = calloc(*n, sizeof *gone);
    if (!gone) {
        free(refs);
        return -1;
    }
    for (size_t k = 0; k < drop; k++)
        gone[refs[k].i] = true;
    size_t w = 0;
    for (size_t i = 0; i < *n; i++) {
        if (gone[i])
            free((char *)recs[i].proof);
        else
            recs[w++] = recs[i];
    }
    *n = w;
    free(gone);
    free(refs);
    return 0;
}

static char *dup_proof(const char *p, bool *fail) {
    if (!p) return NULL;
    char *q = strdup(p);
    if (!q) *fail = true;
    return q;
}

/* Whether r would leave its pair's state as it is (CONSENT_SKIP_UNCHANGED). */
static bool unchanged(const consent_ledger *l, const consent_record *r) {
    const consent_record *c = consent_current(l, r->channel, r->purpose);
    return c && c->status == r->status && c->at_ms <= r->at_ms;
}

int consent_append(consent_ledger *l, const consent_record *r, unsigned flags) {
    if (check_fields(r, "", NULL) != 0) return CONSENT_EINVAL;
    if ((flags & CONSENT_SKIP_UNCHANGED) && unchanged(l, r)) return CONSENT_UNCHANGED;
    if (!has_purpose(l->recs, l->n, r->purpose) &&
        count_purposes(l->recs, l->n) >= CONSENT_MAX_PURPOSES)
        return CONSENT_EFULL;
    if (vec_reserve((void **)&l->recs, &l->alloc, l->n + 1, sizeof *l->recs)) return CONSENT_ENOMEM;
    bool fail = false;
    consent_record c = *r;
    c.proof = dup_proof(r->proof, &fail);
    if (fail) return CONSENT_ENOMEM;
    l->recs[l->n++] = c;
    if (trim(l->recs, &l->n) != 0) {
        free((char *)l->recs[--l->n].proof);
        return CONSENT_ENOMEM;
    }
    return 1;
}

/* A deep copy of l's records into a new ledger (the caller's scratch), or NULL. */
static consent_ledger *copy_ledger(const consent_ledger *l) {
    consent_ledger *c = consent_ledger_new();
    if (!c) return NULL;
    if (l->n && vec_reserve((void **)&c->recs, &c->alloc, l->n, sizeof *c->recs)) {
        free(c);
        return NULL;
    }
    bool fail = false;
    for (size_t i = 0; i < l->n; i++) {
        c->recs[i] = l->recs[i];
        c->recs[i].proof = dup_proof(l->recs[i].proof, &fail);
        c->n = i + 1;
    }
    if (fail) {
        consent_ledger_free(c);
        return NULL;
    }
    return c;
}

/* Moves src's records into dst, freeing dst's old ones and src itself. */
static void replace(consent_ledger *dst, consent_ledger *src) {
    free_records(dst->recs, dst->n);
    *dst = *src;
    free(src);
}

int consent_apply(consent_ledger *dst, const consent_ledger *src, unsigned flags) {
    consent_ledger *work = copy_ledger(dst);
    if (!work) return CONSENT_ENOMEM;
    int appended = 0;
    for (size_t i = 0; i < src->n; i++) {
        int rc = consent_append(work, &src->recs[i], flags);
        if (rc < 0) {
            consent_ledger_free(work);
            return rc;
        }
        appended += rc;
    }
    replace(dst, work);
    return appended;
}

static bool same_record(const consent_record *a, const consent_record *b) {
    return a->channel == b->channel && a->status == b->status && a->at_ms == b->at_ms &&
           strcmp(a->purpose, b->purpose) == 0 && strcmp(a->source, b->source) == 0 &&
           strcmp(a->actor, b->actor) == 0 &&
           (a->proof && b->proof ? strcmp(a->proof, b->proof) == 0 : a->proof == b->proof);
}

int consent_merge(consent_ledger *dst, const consent_ledger *src) {
    size_t total = dst->n + src->n;
    if (total == 0) return 0;
    ref *refs = malloc(total * sizeof *refs);
    consent_record *recs = malloc(total * sizeof *recs);
    bool *ours = malloc(total * sizeof *ours); /* kept record k came from dst */
    if (!refs || !recs || !ours) {
        free(refs);
        free(recs);
        free(ours);
        return CONSENT_ENOMEM;
    }
    /* Positions run through dst and then src, so sorting by (at, position) is the stable merge. */
    for (size_t i = 0; i < dst->n; i++)
        refs[i] = (ref){&dst->recs[i], i};
    for (size_t i = 0; i < src->n; i++)
        refs[dst->n + i] = (ref){&src->recs[i], dst->n + i};
    qsort(refs, total, sizeof *refs, cmp_time);
    size_t n = 0;
    bool fail = false;
    for (size_t k = 0; k < total; k++) {
        const consent_record *r = refs[k].r;
        bool from_dst = refs[k].i < dst->n, dup = false;
        /* A src record equal to a dst record is that record again (a replayed or repeated merge):
         * it keeps dst's place. Equal records have equal times, so a twin sits in the run of kept
         * records just before. Duplicates within one ledger are separate appends and stay: dropping
         * one could change which record wins a tie. */
        for (size_t j = n; !from_dst && !dup && j-- > 0 && recs[j].at_ms == r->at_ms;)
            dup = ours[j] && same_record(&recs[j], r);
        if (dup) continue;
        recs[n] = *r;
        recs[n].proof = dup_proof(r->proof, &fail);
        ours[n] = from_dst;
        n++;
    }
    free(refs);
    free(ours);
    if (fail || trim(recs, &n) != 0) {
        free_records(recs, n);
        return CONSENT_ENOMEM;
    }
    free_records(dst->recs, dst->n);
    dst->recs = recs;
    dst->n = dst->alloc = n;
    if (n < total) {
        /* Give back what duplicates and the cap left unused; failing to shrink is harmless. */
        consent_record *shrunk = realloc(recs, (n ? n : 1) * sizeof *recs);
        if (shrunk) dst->recs = shrunk;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * JSON out
 * ------------------------------------------------------------------------------------------- */

/* Adds value to obj under key, taking the reference; false when either is missing. */
static bool put(json_t *obj, const char *key, json_t *value) {
    return value && json_object_set_new(obj, key, value) == 0;
}

/* The record as JSON; with_pair adds channel and purpose (the history shape). */
static json_t *record_json(const consent_record *r, bool with_pair) {
    json_t *o = json_object();
    char at[TF_LEN];
    bool ok = o != NULL;
    if (ok && with_pair)
        ok = put(o, "channel", json_string(channel_names[r->channel])) &&
             put(o, "purpose", json_string(r->purpose));
    ok = ok && put(o, "status", json_string(status_names[r->status])) &&
         put(o, "at", json_string(tf_format(r->at_ms, at))) &&
         put(o, "source", json_string(r->source)) && put(o, "actor", json_string(r->actor)) &&
         (!r->proof || put(o, "proof", json_string(r->proof)));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *consent_state_json(const consent_ledger *l) {
    json_t *state = json_object();
    if (!state || !l || l->n == 0) return state;
    ref *refs = sorted_by_pair(l->recs, l->n);
    if (!refs) {
        json_decref(state);
        return NULL;
    }
    bool ok = true;
    json_t *chan = NULL;
    int cur = -1; /* the channel chan is for */
    for (size_t k = 0; k < l->n && ok; k++) {
        const consent_record *r = refs[k].r;
        if (k + 1 < l->n && same_pair(r, refs[k + 1].r)) continue; /* superseded */
        if ((int)r->channel != cur) {
            cur = (int)r->channel;
            chan = json_object();
            ok = put(state, channel_names[r->channel], chan);
        }
        ok = ok && put(chan, r->purpose, record_json(r, false));
    }
    free(refs);
    if (!ok) {
        json_decref(state);
        return NULL;
    }
    return state;
}

json_t *consent_history_json(const consent_ledger *l) {
    json_t *arr = json_array();
    json_t *out = json_object();
    bool ok = arr && out;
    for (size_t i = 0; ok && l && i < l->n; i++) {
        json_t *r = record_json(&l->recs[i], true);
        ok = r && json_array_append_new(arr, r) == 0;
    }
    if (!ok || json_object_set_new(out, "records", arr) != 0) {
        if (!ok) json_decref(arr);
        json_decref(out);
        return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------------------------------------
 * JSON in: the endpoint body
 * ------------------------------------------------------------------------------------------- */

static const char *const record_fields[] = {"channel", "source", "purpose", "status",
                                            "at",      "proof",  "actor"};

/* The string at key of o, NULL-terminated: *s is NULL when the field is absent or null. Returns
 * -1 (err filled) when it is something else or holds a NUL byte. */
static int get_string(const json_t *o, const char *key, const char *prefix, const char **s,
                      ev_error *err) {
    const json_t *v = json_object_get(o, key);
    *s = NULL;
    if (!v || json_is_null(v)) return 0;
    char p[128];
    field_path(p, prefix, key);
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        ev_error_set(err, "invalid_field", p, "%s must be a string", p);
        return -1;
    }
    *s = json_string_value(v);
    return 0;
}

static int require(const char *s, const char *prefix, const char *key, ev_error *err) {
    if (s && s[0]) return 0;
    char p[128];
    field_path(p, prefix, key);
    ev_error_set(err, "missing_field", p, "%s is required", p);
    return -1;
}

/* Copies s into a name field, or marks the field invalid (too long) for check_fields(). */
static void set_name(char *dst, size_t cap, const char *s) {
    if (strlen(s) >= cap)
        snprintf(dst, cap, "%s", "!");
    else
        memcpy(dst, s, strlen(s) + 1);
}

/* Reads one record. Its proof points into the JSON. */
static int parse_record(const json_t *v, const char *prefix, const consent_defaults *d,
                        consent_record *r, ev_error *err) {
    char p[128];
    if (!json_is_object(v)) {
        ev_error_set(err, "invalid_field", prefix, "%s must be an object", prefix);
        return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        bool known = false;
        for (size_t i = 0; i < NELEMS(record_fields) && !known; i++)
            known = strcmp(key, record_fields[i]) == 0;
        if (!known) {
            field_path(p, prefix, key);
            ev_error_set(err, "invalid_field", p,
                         "%s is not a field of a consent record (channel, purpose, status, at, "
                         "source, proof, actor)",
                         p);
            return -1;
        }
    }
    const char *channel, *purpose, *status, *at, *source, *proof, *actor;
    if (get_string(v, "channel", prefix, &channel, err) ||
        require(channel, prefix, "channel", err) ||
        get_string(v, "purpose", prefix, &purpose, err) ||
        require(purpose, prefix, "purpose", err) || get_string(v, "status", prefix, &status, err) ||
        require(status, prefix, "status", err) || get_string(v, "at", prefix, &at, err) ||
        get_string(v, "source", prefix, &source, err) ||
        get_string(v, "proof", prefix, &proof, err) || get_string(v, "actor", prefix, &actor, err))
        return -1;
    memset(r, 0, sizeof *r);
    int ch = consent_channel_lookup(channel), st = consent_status_lookup(status);
    r->channel = ch < 0 ? CONSENT_NCHANNELS : (consent_channel)ch;
    r->status = st < 0 ? CONSENT_NSTATUS : (consent_status)st;
    set_name(r->purpose, sizeof r->purpose, purpose);
    set_name(r->source, sizeof r->source, source ? source : d->source ? d->source : "api");
    set_name(r->actor, sizeof r->actor, actor ? actor : d->actor ? d->actor : "system");
    r->proof = proof;
    r->at_ms = d->now_ms;
    if (at) {
        field_path(p, prefix, "at");
        if (!tf_parse(at, strlen(at), &r->at_ms)) {
            ev_error_set(err, "invalid_field", p, "%s must be an RFC 3339 time", p);
            return -1;
        }
        if (r->at_ms > d->now_ms + CONSENT_FUTURE_MS) {
            ev_error_set(err, "invalid_field", p, "%s is more than a day in the future", p);
            return -1;
        }
    }
    return check_fields(r, prefix, err);
}

int consent_parse(const json_t *body, const consent_defaults *d, consent_ledger *out,
                  ev_error *err) {
    if (!json_is_object(body)) {
        ev_error_set(err, "invalid_body", "", "the body must be a JSON object");
        return -1;
    }
    size_t max = d->max_records ? d->max_records : CONSENT_BATCH_MAX;
    const json_t *list = json_object_get(body, "records");
    consent_record one;
    consent_record *recs = &one;
    size_t n = 1;
    if (list) {
        if (json_object_size(body) != 1) {
            const char *key;
            json_t *val;
            json_object_foreach((json_t *)body, key, val) {
                if (strcmp(key, "records") == 0) continue;
                ev_error_set(err, "invalid_field", key,
                             "%s is not allowed beside records: send {\"records\":[...]} or one "
                             "record",
                             key);
                return -1;
            }
        }
        if (!json_is_array(list)) {
            ev_error_set(err, "invalid_field", "records", "records must be an array");
            return -1;
        }
        n = json_array_size(list);
        if (n == 0) {
            ev_error_set(err, "invalid_field", "records", "records must not be empty");
            return -1;
        }
        if (n > max) {
            ev_error_set(err, "invalid_field", "records",
                         "records has %zu entries; at most %zu are allowed", n, max);
            return -1;
        }
        recs = malloc(n * sizeof *recs);
        if (!recs) {
            ev_error_set(err, "internal", "", "out of memory reading %zu consent records", n);
            return -1;
        }
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char prefix[32] = "";
        if (list) snprintf(prefix, sizeof prefix, "records[%zu]", i);
        rc = parse_record(list ? json_array_get(list, i) : body, prefix, d, &recs[i], err);
    }
    if (rc != 0) {
        if (recs != &one) free(recs);
        return -1;
    }
    /* Every record is valid: append them to a scratch ledger, then all at once to out. */
    consent_ledger *tmp = consent_ledger_new();
    rc = tmp ? 0 : CONSENT_ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = consent_append(tmp, &recs[i], 0);
        if (rc == CONSENT_EFULL) {
            char p[128];
            snprintf(p, sizeof p, "records[%zu].purpose", i);
            ev_error_set(err, "invalid_field", p, "%s brings the records past %d distinct purposes",
                         p, CONSENT_MAX_PURPOSES);
        }
        if (rc > 0) rc = 0;
    }
    if (rc == 0) {
        rc = consent_apply(out, tmp, 0);
        if (rc == CONSENT_EFULL)
            ev_error_set(err, "invalid_field", list ? "records" : "purpose",
                         "the records would bring the profile past %d distinct purposes",
                         CONSENT_MAX_PURPOSES);
    }
    if (rc < 0 && rc != CONSENT_EFULL)
        ev_error_set(err, "internal", "", "could not store the consent records (%d)", rc);
    if (rc < 0) rc = -1;
    consent_ledger_free(tmp);
    if (recs != &one) free(recs);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Consent stated in events
 * ------------------------------------------------------------------------------------------- */

typedef struct reader {
    consent_ledger *tmp;
    consent_ignored *ig;
    int64_t at_ms;
    const char *proof;
    const char *source;
    int taken;
    bool nomem;
} reader;

static void ignore(reader *rd, const char *path, const char *why) {
    if (rd->ig->n++ == 0) ev_error_set(&rd->ig->first, "invalid_field", path, "%s %s", path, why);
}

/* Adds one record, or counts it ignored past CONSENT_EVENT_MAX. */
static void emit(reader *rd, consent_channel ch, const char *purpose, consent_status st,
                 const char *path) {
    if (rd->taken == CONSENT_EVENT_MAX) {
        ignore(rd, path, "is past the 64 consent values read from one event");
        return;
    }
    consent_record r = {.channel = ch, .status = st, .at_ms = rd->at_ms, .proof = rd->proof};
    snprintf(r.purpose, sizeof r.purpose, "%s", purpose);
    snprintf(r.source, sizeof r.source, "%s", rd->source);
    snprintf(r.actor, sizeof r.actor, "%s", "customer");
    int rc = consent_append(rd->tmp, &r, 0);
    if (rc == CONSENT_ENOMEM)
        rd->nomem = true;
    else if (rc < 0)
        ignore(rd, path, "names one purpose too many");
    else
        rd->taken++;
}

/* true -> granted, false -> denied, or a status name; -1 for anything else. */
static int status_of(const json_t *v) {
    if (json_is_boolean(v)) return json_is_true(v) ? CONSENT_GRANTED : CONSENT_DENIED;
    if (json_is_string(v)) return consent_status_lookup(json_string_value(v));
    return -1;
}

/* A category name folded for the table: lower-case, without spaces, '_' and '-'. */
static void fold(const char *s, char *out, size_t cap) {
    size_t w = 0;
    for (; *s && w + 1 < cap; s++) {
        char c = *s;
        if (c == ' ' || c == '_' || c == '-') continue;
        out[w++] = c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
    }
    out[w] = '\0';
}

static void read_categories(reader *rd, const json_t *prefs) {
    if (!json_is_object(prefs)) return;
    int state[NPAIRS] = {0}; /* 0: not named; 1: granted; 2: denied by at least one category */
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)prefs, key, val) {
        char path[128], name[40];
        snprintf(path, sizeof path, "context.consent.categoryPreferences.%s", key);
        fold(key, name, sizeof name);
        int pair = PAIR_NONE;
        bool known = false;
        for (size_t i = 0; i < NELEMS(categories) && !known; i++)
            if (strcmp(name, categories[i].category) == 0) known = true, pair = categories[i].pair;
        if (!known) {
            ignore(rd, path, "is not a consent category engaged maps to a purpose");
            continue;
        }
        if (!json_is_boolean(val)) {
            ignore(rd, path, "must be true or false");
            continue;
        }
        if (pair == PAIR_NONE) continue;
        if (json_is_false(val))
            state[pair] = 2;
        else if (state[pair] == 0)
            state[pair] = 1;
    }
    for (int p = 0; p < NPAIRS; p++)
        if (state[p])
            emit(rd, pairs[p].channel, pairs[p].purpose,
                 state[p] == 1 ? CONSENT_GRANTED : CONSENT_DENIED,
                 "context.consent.categoryPreferences");
}

static void read_consent_trait(reader *rd, const json_t *consent) {
    if (!consent || json_is_null(consent)) return;
    if (!json_is_object(consent)) {
        ignore(rd, "traits.consent", "must be an object");
        return;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)consent, key, val) {
        char path[128];
        snprintf(path, sizeof path, "traits.consent.%s", key);
        int ch = consent_channel_lookup(key);
        if (ch < 0) {
            /* {"<purpose>": true}: a purpose for every channel. */
            int st = status_of(val);
            if (!consent_name_valid(key))
                ignore(rd, path, "is neither a channel nor a purpose name");
            else if (st < 0)
                ignore(rd, path, "must be true, false, granted, denied or withdrawn");
            else
                emit(rd, CONSENT_ALL, key, (consent_status)st, path);
            continue;
        }
        if (!json_is_object(val)) {
            ignore(rd, path, "must be an object of purposes");
            continue;
        }
        const char *purpose;
        json_t *v;
        json_object_foreach(val, purpose, v) {
            char ppath[128];
            snprintf(ppath, sizeof ppath, "%.64s.%.48s", path, purpose);
            int st = status_of(v);
            if (!consent_name_valid(purpose))
                ignore(rd, ppath, "is not a purpose name (1 to 32 of a-z, 0-9, _)");
            else if (st < 0)
                ignore(rd, ppath, "must be true, false, granted, denied or withdrawn");
            else
                emit(rd, (consent_channel)ch, purpose, (consent_status)st, ppath);
        }
    }
}

static void read_traits(reader *rd, const json_t *traits) {
    if (!json_is_object(traits)) return;
    read_consent_trait(rd, json_object_get(traits, "consent"));
    for (int ch = 0; ch < CONSENT_NCHANNELS; ch++) {
        if (ch == CONSENT_ALL) continue;
        char key[32], path[48];
        snprintf(key, sizeof key, "%s_opt_in", channel_names[ch]);
        snprintf(path, sizeof path, "traits.%s", key);
        const json_t *v = json_object_get(traits, key);
        if (!v || json_is_null(v)) continue;
        if (!json_is_boolean(v))
            ignore(rd, path, "must be true or false");
        else
            emit(rd, (consent_channel)ch, "marketing",
                 json_is_true(v) ? CONSENT_GRANTED : CONSENT_DENIED, path);
    }
    const json_t *u = json_object_get(traits, "unsubscribed");
    if (json_is_true(u))
        emit(rd, CONSENT_EMAIL, "marketing", CONSENT_WITHDRAWN, "traits.unsubscribed");
    else if (u && !json_is_null(u) && !json_is_boolean(u))
        ignore(rd, "traits.unsubscribed", "must be true or false");
}

int consent_from_event(const json_t *event, bool identify, const char *message_id, int64_t at_ms,
                       consent_ledger *out, consent_ignored *ig) {
    consent_ignored scratch;
    if (!ig) ig = &scratch;
    memset(ig, 0, sizeof *ig);
    if (!json_is_object(event)) return 0;
    if (at_ms < AT_MIN || at_ms > AT_MAX) {
        ignore(&(reader){.ig = ig}, "timestamp", "lies outside the years 1 to 9999");
        return 0;
    }
    /* Only a CMP's categories and an identify's traits speak of consent: most events have
     * neither, and need no scratch ledger. */
    const json_t *ctx = json_object_get(event, "context");
    const json_t *prefs = json_object_get(json_object_get(ctx, "consent"), "categoryPreferences");
    if (!prefs && !identify) return 0;
    reader rd = {.ig = ig, .at_ms = at_ms, .tmp = consent_ledger_new()};
    if (!rd.tmp) return CONSENT_ENOMEM;
    if (message_id && *message_id && strlen(message_id) <= CONSENT_PROOF_MAX) rd.proof = message_id;

    rd.source = "cmp";
    read_categories(&rd, prefs);
    if (identify) {
        const json_t *traits = json_object_get(event, "traits");
        if (!json_is_object(traits)) traits = json_object_get(ctx, "traits");
        rd.source = "identify";
        read_traits(&rd, traits);
    }
    int rc = rd.nomem ? CONSENT_ENOMEM : consent_apply(out, rd.tmp, 0);
    consent_ledger_free(rd.tmp);
    return rc == CONSENT_EFULL ? (ignore(&rd, "traits.consent", "names too many purposes"), 0) : rc;
}
