/* ev — validation and normalisation of one Segment-shaped event; the rules are in ev.h.
 *
 * The normalised event is a new JSON object that starts as a shallow copy of the client's: values
 * the rules do not touch are shared with `raw` by reference count, never modified, and released
 * with the copy. Only the properties of an e-commerce event are deep-copied, because cm_parse()
 * coerces them in place. Nothing is recursed into before the depth check has passed, so a hostile
 * nesting cannot exhaust the stack here. */
#include "ingest/ev.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/jsonw.h"
#include "util/timefmt.h"

/* Reals are written with DBL_DIG significant digits; see the note in ev.h. */

/* The range tf_format() writes as a four-digit year: 0001-01-01T00:00:00.000Z to
 * 9999-12-31T23:59:59.999Z. A skew-corrected time outside it falls back to receivedAt. */
#define EV_TIME_MIN (-62135596800000LL)
#define EV_TIME_MAX (253402300799999LL)

static const char *const type_names[EV_NTYPES] = {
    [EV_IDENTIFY] = "identify", [EV_TRACK] = "track", [EV_PAGE] = "page",
    [EV_SCREEN] = "screen",     [EV_GROUP] = "group", [EV_ALIAS] = "alias",
};

/* The field each type needs besides userId/anonymousId, and whether it is an id (a string, or a
 * number taken as its decimal string, of at most EV_ID_MAX bytes) or a free text such as
 * `event`. */
static const struct {
    const char *field;
    bool is_id;
} type_needs[EV_NTYPES] = {
    [EV_TRACK] = {"event", false},
    [EV_GROUP] = {"groupId", true},
    [EV_ALIAS] = {"previousId", true},
};

/* Fields that must be objects when present, whatever the type. */
static const char *const object_fields[] = {"properties", "traits", "context", "integrations"};

/* Fields that must be strings when present: the page or screen name and category. */
static const char *const text_fields[] = {"name", "category"};

/* The ids every type may carry; at least one of them is required. */
static const char *const identity_fields[] = {"userId", "anonymousId"};

/* Client timestamps, in the order of the indexes used below. */
enum { TS_TIMESTAMP, TS_ORIGINAL, TS_SENT_AT, TS_N };
static const char *const time_fields[TS_N] = {"timestamp", "originalTimestamp", "sentAt"};

const char *ev_type_name(ev_type t) {
    return (unsigned)t < EV_NTYPES ? type_names[t] : NULL;
}

bool ev_type_parse(const char *name, ev_type *out) {
    if (!name) return false;
    for (int t = 0; t < EV_NTYPES; t++) {
        if (strcmp(name, type_names[t]) == 0) {
            *out = (ev_type)t;
            return true;
        }
    }
    return false;
}

void ev_error_set(ev_error *err, const char *code, const char *field, const char *fmt, ...) {
    if (!err) return;
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

bool ev_number_text(const json_t *v, char out[EV_NUMBER_TEXT_LEN]) {
    if (json_is_integer(v)) {
        snprintf(out, EV_NUMBER_TEXT_LEN, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* 2^53: beyond it a double no longer holds every integer, so its digits would be a
         * guess. */
        if (!(fabs(d) <= 9007199254740992.0) || d != floor(d)) return false;
        snprintf(out, EV_NUMBER_TEXT_LEN, "%.0f", d);
        /* "-0" would be a different id from "0" for no reason the client meant. */
        if (strcmp(out, "-0") == 0) strcpy(out, "0");
        return true;
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Depth check
 * ------------------------------------------------------------------------------------------- */

/* A path into the event for error messages, grown and shrunk as the walk descends and returns.
 * Paths longer than the error's field are cut short; the message still says what is wrong. */
typedef struct ev_path {
    char s[sizeof(((ev_error *)0)->field)];
    size_t len;
} ev_path;

static size_t path_push_key(ev_path *p, const char *key) {
    size_t old = p->len;
    int n = snprintf(p->s + old, sizeof p->s - old, "%s%s", old ? "." : "", key);
    p->len = n < 0 ? old : old + (size_t)n >= sizeof p->s ? sizeof p->s - 1 : old + (size_t)n;
    return old;
}

static size_t path_push_index(ev_path *p, size_t i) {
    size_t old = p->len;
    int n = snprintf(p->s + old, sizeof p->s - old, "[%zu]", i);
    p->len = n < 0 ? old : old + (size_t)n >= sizeof p->s ? sizeof p->s - 1 : old + (size_t)n;
    return old;
}

static void path_pop(ev_path *p, size_t old) {
    p->len = old;
    p->s[old] = '\0';
}

static bool is_container(const json_t *v) {
    return json_is_object(v) || json_is_array(v);
}

/* Checks what applies to every value of the event: no object or array deeper than EV_MAX_DEPTH,
 * counting the event itself as depth 1. The recursion stops at the first container too deep, so it
 * is at most EV_MAX_DEPTH + 1 calls deep whatever the input. Cost: one visit per value. */
static bool depth_ok(const json_t *v, int depth, ev_path *p, ev_error *err) {
    if (!is_container(v)) return true;
    if (depth > EV_MAX_DEPTH) {
        ev_error_set(err, "too_deep", p->s, "%s nests deeper than %d levels",
                     p->len ? p->s : "the event", EV_MAX_DEPTH);
        return false;
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *child;
        json_object_foreach((json_t *)v, key, child) {
            if (!is_container(child) && !json_is_real(child)) continue;
            size_t old = path_push_key(p, key);
            bool ok = depth_ok(child, depth + 1, p, err);
            path_pop(p, old);
            if (!ok) return false;
        }
    } else {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) {
            if (!is_container(child) && !json_is_real(child)) continue;
            size_t old = path_push_index(p, i);
            bool ok = depth_ok(child, depth + 1, p, err);
            path_pop(p, old);
            if (!ok) return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Field rules
 * ------------------------------------------------------------------------------------------- */

/* True when a field is absent in the sense of ev.h: missing, null, or (for strings that name
 * something) empty. */
static bool is_blank(const json_t *v) {
    return !v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
}

/* Applies the id rule to o[key]: drops a blank one, turns a number into its decimal string, checks
 * the length. Sets *text to the id inside o (valid while o lives), or NULL when absent. */
static int normalize_id(json_t *o, const char *key, const char **text, ev_error *err) {
    json_t *v = json_object_get(o, key);
    *text = NULL;
    if (is_blank(v)) {
        json_object_del(o, key);
        return 0;
    }
    if (json_is_number(v)) {
        char digits[EV_NUMBER_TEXT_LEN];
        if (!ev_number_text(v, digits)) {
            ev_error_set(err, "invalid_field", key, "%s must be a string or a whole number", key);
            return -1;
        }
        json_object_set_new(o, key, json_string(digits));
        v = json_object_get(o, key);
    }
    if (!json_is_string(v)) {
        ev_error_set(err, "invalid_field", key, "%s must be a string", key);
        return -1;
    }
    if (json_string_length(v) > EV_ID_MAX) {
        ev_error_set(err, "invalid_field", key, "%s must be at most %d bytes", key, EV_ID_MAX);
        return -1;
    }
    /* Ids travel as C strings (the store, the engine): a NUL would cut one short. */
    if (memchr(json_string_value(v), '\0', json_string_length(v))) {
        ev_error_set(err, "invalid_field", key, "%s must not contain a NUL character", key);
        return -1;
    }
    *text = json_string_value(v);
    return 0;
}

/* Reads o[key] as an RFC 3339 time. Returns 1 and sets *ms when present, 0 when blank (and drops
 * it), -1 on a bad value. */
static int read_time(json_t *o, const char *key, int64_t *ms, ev_error *err) {
    json_t *v = json_object_get(o, key);
    if (is_blank(v)) {
        json_object_del(o, key);
        return 0;
    }
    if (!json_is_string(v) || !tf_parse(json_string_value(v), json_string_length(v), ms)) {
        ev_error_set(err, "invalid_field", key, "%s must be an RFC 3339 date-time", key);
        return -1;
    }
    return 1;
}

static void set_time(json_t *o, const char *key, int64_t ms) {
    char text[TF_LEN];
    json_object_set_new(o, key, json_string(tf_format(ms, text)));
}

/* Segment's skew correction; see ev.h. have[] says which client times were given. */
static int64_t event_time(const int64_t t[TS_N], const bool have[TS_N], int64_t received_ms) {
    if (have[TS_TIMESTAMP]) return t[TS_TIMESTAMP];
    if (!have[TS_ORIGINAL]) return received_ms;
    if (!have[TS_SENT_AT]) return t[TS_ORIGINAL];
    /* Both client times are within years 1..9999, so their difference cannot overflow; the
     * server's clock is not checked here, so its subtraction is. */
    int64_t skew = t[TS_SENT_AT] - t[TS_ORIGINAL], corrected;
    if (__builtin_sub_overflow(received_ms, skew, &corrected) || corrected < EV_TIME_MIN ||
        corrected > EV_TIME_MAX)
        return received_ms;
    return corrected;
}

/* Merges a batch-level object into o[key]: the event's keys win, the batch's fill the gaps. The
 * event's object may be shared with the caller's raw event, so it is copied (shallowly) first. */
static int merge_batch(json_t *o, const char *key, const json_t *batch, ev_error *err) {
    if (!batch || json_is_null(batch)) return 0;
    if (!json_is_object(batch)) {
        ev_error_set(err, "invalid_field", key, "the batch's %s must be an object", key);
        return -1;
    }
    if (json_object_size(batch) == 0) return 0;
    json_t *own = json_object_get(o, key);
    json_t *merged = own ? json_copy(own) : json_object();
    if (!merged) goto nomem;
    const char *k;
    json_t *v;
    /* The batch object is only read: json_object_set() takes a reference, which touches the
     * reference count (atomic in jansson >= 2.11) but not the value. */
    json_object_foreach((json_t *)batch, k, v) {
        if (!json_object_get(merged, k) && json_object_set(merged, k, v)) {
            json_decref(merged);
            goto nomem;
        }
    }
    if (json_object_set_new(o, key, merged)) goto nomem;
    return 0;
nomem:
    ev_error_set(err, "internal", key, "out of memory merging %s", key);
    return -1;
}

/* Types the properties of an e-commerce track event. Works on a deep copy, so that a failure leaves
 * nothing half-coerced and raw is never touched. */
static int apply_commerce(json_t *o, ev_event *out, ev_error *err) {
    json_t *name = json_object_get(o, "event");
    cm_kind kind = cm_kind_lookup(json_string_value(name));
    if (kind == CM_NONE) return 0;
    json_t *props = json_object_get(o, "properties");
    json_t *copy = NULL;
    if (props) {
        copy = json_deep_copy(props);
        if (!copy) {
            ev_error_set(err, "internal", "properties", "out of memory copying properties");
            return -1;
        }
    }
    if (cm_parse(copy, kind, &out->commerce, err)) {
        json_decref(copy);
        return -1;
    }
    if (copy) json_object_set_new(o, "properties", copy);
    json_object_set_new(o, "kind", json_string(cm_kind_name(kind)));
    return 0;
}

/* Reads the event's type: the endpoint's, or the one the event names (batch items). */
static int resolve_type(const json_t *raw, int type, ev_type *t, ev_error *err) {
    if (type != EV_NTYPES) {
        *t = (ev_type)type;
        return 0;
    }
    json_t *v = json_object_get(raw, "type");
    if (is_blank(v)) {
        ev_error_set(err, "missing_field", "type", "type is required");
        return -1;
    }
    if (!json_is_string(v) || !ev_type_parse(json_string_value(v), t)) {
        ev_error_set(err, "invalid_field", "type",
                     "type must be one of identify, track, page, screen, group, alias");
        return -1;
    }
    return 0;
}

/* Serialises o into out->body, refusing more than EV_MAX_BYTES: the buf's cap stops the writer at
 * the limit, so an oversized event costs no large allocation. */
static int serialise(const json_t *o, ev_event *out, ev_error *err) {
    buf b = BUF_INIT(EV_MAX_BYTES);
    int rc = jsonw_value(&b, o);
    if (rc == BUF_TOOBIG) {
        buf_free(&b);
        ev_error_set(err, "event_too_large", "", "the event is larger than %d bytes", EV_MAX_BYTES);
        return -1;
    }
    if (rc) {
        buf_free(&b);
        goto nomem;
    }
    out->body = buf_detach(&b, &out->body_len);
    return 0;
nomem:
    ev_error_set(err, "internal", "", "out of memory serialising the event");
    return -1;
}

/* The members of context the engine reads (c360/prof.c, idnorm.c, consent.c). */
static const struct {
    const char *name;
    uint8_t len;
} context_keys[] = {
    {"traits", 6}, {"externalIds", 11}, {"consent", 7}, {"channel", 7},
    {"app", 3},    {"userAgent", 9},    {"page", 4},    {"device", 6},
};

bool ev_engine_context_member(const char *key, size_t len) {
    for (size_t i = 0; i < sizeof context_keys / sizeof *context_keys; i++)
        if (context_keys[i].len == len && memcmp(context_keys[i].name, key, len) == 0) return true;
    return false;
}

/* The engine's context: the members of ctx it reads, shared with ctx (not copied). */
static json_t *engine_context(const json_t *ctx) {
    json_t *o = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)ctx, key, v) {
        if (o && ev_engine_context_member(key, strlen(key)) && json_object_set(o, key, v)) {
            json_decref(o);
            o = NULL;
        }
    }
    return o;
}

/* The same from object token obj of d: 0 with *out the tree, or NULL when obj has none of the
 * members (then nothing is made: the context of server-side SDKs has none, and an object made only
 * to be dropped was two allocations and two frees per event); -1 when memory runs out. */
static int engine_context_tok(const js_doc *d, uint32_t obj, json_t **out) {
    *out = NULL;
    for (uint32_t i = 0, k = obj + 1; i < d->tok[obj].count; i++, k = d->tok[k + 1].next) {
        const char *key = d->text + d->tok[k].start;
        size_t len = d->tok[k].len;
        if (!ev_engine_context_member(key, len)) continue;
        json_t *v = js_to_json(d, k + 1);
        if ((!*out && !(*out = json_object())) || !v ||
            json_object_setn_new_nocheck(*out, key, len, v)) {
            if (v && !*out) json_decref(v);
            json_decref(*out);
            *out = NULL;
            return -1;
        }
    }
    return 0;
}

int ev_engine_put(json_t **tree, const js_doc *d, uint32_t key) {
    const char *k = d->text + d->tok[key].start;
    size_t len = d->tok[key].len;
    if (len == 7 && memcmp(k, "context", 7) == 0 && d->tok[key + 1].kind == JS_OBJECT) {
        json_t *ctx;
        if (engine_context_tok(d, key + 1, &ctx)) return -1;
        return ctx ? ev_engine_set(tree, k, len, ctx) : 0;
    }
    return ev_engine_set(tree, k, len, js_to_json(d, key + 1));
}

int ev_engine_set(json_t **tree, const char *key, size_t len, json_t *v) {
    if (!v) return -1;
    if (json_is_object(v) && json_object_size(v) == 0 && len == 7 &&
        memcmp(key, "context", 7) == 0) {
        json_decref(v);
        return 0;
    }
    if (!*tree && !(*tree = json_object())) {
        json_decref(v);
        return -1;
    }
    return json_object_setn_new_nocheck(*tree, key, len, v) ? -1 : 0;
}

int ev_normalize(const json_t *raw, int type, const ev_envelope *env, ev_event *out,
                 ev_error *err) {
    memset(out, 0, sizeof *out);
    if (type < 0 || type > EV_NTYPES) {
        /* A caller passing a made-up type is a bug in engaged, not a client mistake. */
        fprintf(stderr, "ev_normalize: type %d is out of range\n", type);
        abort();
    }
    if (!json_is_object(raw)) {
        ev_error_set(err, "invalid_field", "", "an event must be a JSON object");
        return -1;
    }

    ev_path path = {.len = 0};
    path.s[0] = '\0';
    if (!depth_ok(raw, 1, &path, err)) return -1;
    static const char *const batch_keys[] = {"context", "integrations"};
    const json_t *batch_objs[] = {env ? env->context : NULL, env ? env->integrations : NULL};
    for (size_t i = 0; i < 2; i++) {
        if (!batch_objs[i]) continue;
        path_push_key(&path, batch_keys[i]);
        bool ok = depth_ok(batch_objs[i], 2, &path, err);
        path_pop(&path, 0);
        if (!ok) return -1;
    }

    ev_type t;
    if (resolve_type(raw, type, &t, err)) return -1;

    json_t *o = json_object();
    if (!o || json_object_set_new(o, "type", json_string(type_names[t])) ||
        json_object_update(o, (json_t *)raw)) {
        ev_error_set(err, "internal", "", "out of memory copying the event");
        goto fail;
    }
    json_object_set_new(o, "type", json_string(type_names[t]));
    json_object_del(o, "writeKey");
    json_object_del(o, "kind");

    /* Identity. */
    const char *ids[2];
    for (size_t i = 0; i < 2; i++)
        if (normalize_id(o, identity_fields[i], &ids[i], err)) goto fail;
    if (!ids[0] && !ids[1]) {
        ev_error_set(err, "missing_field", "userId", "userId or anonymousId is required");
        goto fail;
    }

    /* The field this type needs. */
    const char *need = type_needs[t].field;
    if (need) {
        const char *text = NULL;
        if (type_needs[t].is_id) {
            if (normalize_id(o, need, &text, err)) goto fail;
        } else {
            json_t *v = json_object_get(o, need);
            if (!is_blank(v) && !json_is_string(v)) {
                ev_error_set(err, "invalid_field", need, "%s must be a string", need);
                goto fail;
            }
            text = json_string_value(v);
            if (!text || !*text) json_object_del(o, need);
        }
        if (!text || !*text) {
            ev_error_set(err, "missing_field", need, "%s is required for %s events", need,
                         type_names[t]);
            goto fail;
        }
    }

    for (size_t i = 0; i < sizeof object_fields / sizeof *object_fields; i++) {
        const char *key = object_fields[i];
        json_t *v = json_object_get(o, key);
        if (v && json_is_null(v)) {
            json_object_del(o, key);
        } else if (v && !json_is_object(v)) {
            ev_error_set(err, "invalid_field", key, "%s must be an object", key);
            goto fail;
        }
    }

    for (size_t i = 0; i < sizeof text_fields / sizeof *text_fields; i++) {
        const char *key = text_fields[i];
        json_t *v = json_object_get(o, key);
        if (v && json_is_null(v)) {
            json_object_del(o, key);
        } else if (v && !json_is_string(v)) {
            ev_error_set(err, "invalid_field", key, "%s must be a string", key);
            goto fail;
        }
    }

    /* messageId: the client's, or a fresh one. */
    json_t *mid = json_object_get(o, "messageId");
    if (is_blank(mid)) {
        char uuid[37];
        hash_uuid4(uuid);
        json_object_set_new(o, "messageId", json_string(uuid));
        mid = json_object_get(o, "messageId");
    } else if (!json_is_string(mid) || json_string_length(mid) > EV_MESSAGE_ID_MAX) {
        ev_error_set(err, "invalid_field", "messageId",
                     "messageId must be a string of at most %d bytes", EV_MESSAGE_ID_MAX);
        goto fail;
    }
    snprintf(out->message_id, sizeof out->message_id, "%s", json_string_value(mid));

    /* Time. */
    int64_t times[TS_N] = {0};
    bool have[TS_N];
    for (int i = 0; i < TS_N; i++) {
        int rc = read_time(o, time_fields[i], &times[i], err);
        if (rc < 0) goto fail;
        have[i] = rc == 1;
    }
    const char *batch_sent = env ? env->sent_at : NULL;
    if (!have[TS_SENT_AT] && batch_sent && *batch_sent) {
        if (!tf_parse(batch_sent, strlen(batch_sent), &times[TS_SENT_AT])) {
            ev_error_set(err, "invalid_field", "sentAt",
                         "the batch's sentAt must be an RFC 3339 date-time");
            goto fail;
        }
        have[TS_SENT_AT] = true;
    }
    out->received_ms = env ? env->received_ms : 0;
    out->timestamp_ms = event_time(times, have, out->received_ms);
    for (int i = TS_ORIGINAL; i < TS_N; i++)
        if (have[i]) set_time(o, time_fields[i], times[i]);
    set_time(o, "timestamp", out->timestamp_ms);
    set_time(o, "receivedAt", out->received_ms);

    for (size_t i = 0; i < 2; i++)
        if (merge_batch(o, batch_keys[i], batch_objs[i], err)) goto fail;

    if (t == EV_TRACK && apply_commerce(o, out, err)) goto fail;

    if (serialise(o, out, err)) goto fail;

    /* Copy the ids and the name last: until now they pointed into o. */
    const char *texts[3] = {ids[0], ids[1],
                            t == EV_TRACK ? json_string_value(json_object_get(o, "event")) : NULL};
    char **owned[3] = {&out->user_id, &out->anonymous_id, &out->event_name};
    static const char *const text_names[3] = {"userId", "anonymousId", "event"};
    for (size_t i = 0; i < 3; i++) {
        if (texts[i] && !(*owned[i] = strdup(texts[i]))) {
            ev_error_set(err, "internal", text_names[i], "out of memory");
            goto fail;
        }
    }
    out->type = t;
    /* The engine reads only some members; the rest (properties first, most of an event's
     * allocations) are not kept alive until the event is durable. */
    const char *key;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(o, tmp, key, v) {
        if (!ev_engine_member(key, strlen(key))) json_object_del(o, key);
    }
    json_t *ctx = json_object_get(o, "context");
    if (json_is_object(ctx)) {
        json_t *kept = engine_context(ctx); /* before the delete: it shares ctx's members */
        json_object_del(o, "context");
        if (ev_engine_set(&o, "context", 7, kept)) {
            ev_error_set(err, "internal", "context", "out of memory");
            goto fail;
        }
    }
    if (json_object_size(o) > 0) {
        out->json = o;
    } else {
        json_decref(o); /* nothing the engine reads beyond what comes beside the tree */
    }
    return 0;

fail:
    json_decref(o);
    ev_event_free(out);
    return -1;
}

void ev_event_free(ev_event *e) {
    if (!e) return;
    free(e->user_id);
    free(e->anonymous_id);
    free(e->event_name);
    free(e->body);
    cm_event_free(e->commerce);
    json_decref(e->json);
    json_decref(e->result);
    memset(e, 0, sizeof *e);
}

/* ---------------------------------------------------------------------------------------------
 * The fast path: normalising an event from its scanned text (ev_normalize_text)
 *
 * The same rules as above, read off the token array and written straight into the body, member by
 * member in the order ev_normalize() leaves them in its object: "type" first, then the client's
 * members where they were (rewritten ones in place, dropped ones gone), then what it appends, in
 * the order it appends it (a made messageId, a batch's sentAt, timestamp, receivedAt, a batch's
 * context and integrations, kind). Anything out of the ordinary declines, so that ev_normalize()
 * keeps the only copy of each error and of each rare coercion. tests/unit/test_ev.c and
 * tests/fuzz/fuzz_ev_text.c hold the two paths to the same output.
 * ------------------------------------------------------------------------------------------- */

/* The members the rules name, and the engine reads. */
enum {
    FK_OTHER,
    FK_TYPE,
    FK_WRITE_KEY, /* never stored */
    FK_KIND,      /* reserved: set by engaged */
    FK_USER,
    FK_ANON,
    FK_EVENT,
    FK_GROUP,
    FK_PREVIOUS,
    FK_PROPERTIES,
    FK_TRAITS,
    FK_CONTEXT,
    FK_INTEGRATIONS,
    FK_NAME,
    FK_CATEGORY,
    FK_MESSAGE_ID,
    FK_TIMESTAMP,
    FK_ORIGINAL,
    FK_SENT_AT,
    FK_RECEIVED_AT,
    FK_CHANNEL,
    FK_N
};

/* Each named member's name, and whether the engine reads it (ev_engine_member()). */
static const struct {
    const char *name;
    uint8_t len;
    bool engine;
} fast_keys[FK_N] = {
    [FK_TYPE] = {"type", 4, false},
    [FK_WRITE_KEY] = {"writeKey", 8, false},
    [FK_KIND] = {"kind", 4, false},
    [FK_USER] = {"userId", 6, false},
    [FK_ANON] = {"anonymousId", 11, false},
    [FK_EVENT] = {"event", 5, false},
    [FK_GROUP] = {"groupId", 7, false},
    [FK_PREVIOUS] = {"previousId", 10, true},
    [FK_PROPERTIES] = {"properties", 10, false},
    [FK_TRAITS] = {"traits", 6, true},
    [FK_CONTEXT] = {"context", 7, true},
    [FK_INTEGRATIONS] = {"integrations", 12, false},
    [FK_NAME] = {"name", 4, false},
    [FK_CATEGORY] = {"category", 8, false},
    [FK_MESSAGE_ID] = {"messageId", 9, false},
    [FK_TIMESTAMP] = {"timestamp", 9, false},
    [FK_ORIGINAL] = {"originalTimestamp", 17, false},
    [FK_SENT_AT] = {"sentAt", 6, false},
    [FK_RECEIVED_AT] = {"receivedAt", 10, false},
    [FK_CHANNEL] = {"channel", 7, true},
};

/* The class of member name key (len bytes): FK_OTHER for one the rules do not name. */
static int key_class(const char *key, size_t len) {
    /* Length and first byte first: most members are told apart without a call (two passes over
     * every member of every event made this a tenth of normalising: callgrind). */
    for (int k = FK_OTHER + 1; k < FK_N; k++)
        if (fast_keys[k].len == len && fast_keys[k].name[0] == key[0] &&
            memcmp(fast_keys[k].name, key, len) == 0)
            return k;
    return FK_OTHER;
}

bool ev_engine_member(const char *key, size_t len) {
    return fast_keys[key_class(key, len)].engine;
}

/* The strings the fast path reads decoded (ids, names, times) are at most this long as sent; a
 * longer one is a rare shape, or an error, and declines. */
#define FAST_TEXT_MAX 1024

/* Members of an event whose class pass 1 keeps for pass 2 (an event has about ten). */
#define CLASSES_KEPT 32

/* About what normalising adds to an event: its type, messageId, times and kind. */
#define EV_ADDED_BYTES 256

static int fast_key(const js_doc *d, uint32_t k) {
    return key_class(d->text + d->tok[k].start, d->tok[k].len);
}

static bool tok_is(const js_doc *d, uint32_t v, js_kind k) {
    return v && d->tok[v].kind == k;
}

/* Decodes string token v into out (FAST_TEXT_MAX + 1 bytes); false when it is longer as sent. */
static bool fast_text(const js_doc *d, uint32_t v, char *out, size_t *n) {
    if (d->tok[v].len > FAST_TEXT_MAX) return false;
    *n = js_string(d, v, out);
    return true;
}

/* The body and the engine's tree, written member by member. rc: the first error (BUF_TOOBIG when
 * the event outgrows EV_MAX_BYTES, or out of memory); every later call is then a no-op. */
typedef struct fast_out {
    buf b;
    json_t *o; /* NULL until a member the engine reads is put */
    int rc;
    bool first;
} fast_out;

static void put_key(fast_out *f, const char *key, size_t len) {
    if (f->rc) return;
    if (!f->first) f->rc = buf_putc(&f->b, ',');
    f->first = false;
    /* Member names reaching here have no escapes (js_parse() refuses escaped keys; the rest are
     * literals), so they are written as they are. */
    if (!f->rc) f->rc = buf_putc(&f->b, '"');
    if (!f->rc) f->rc = buf_append(&f->b, key, len);
    if (!f->rc) f->rc = buf_append(&f->b, "\":", 2);
}

/* Adds v (a new reference, taken in every case; NULL when making it ran out of memory) to the
 * engine's tree. */
static void put_tree(fast_out *f, const char *key, size_t len, json_t *v) {
    if (f->rc) {
        json_decref(v);
        return;
    }
    if (ev_engine_set(&f->o, key, len, v)) f->rc = BUF_NOMEM;
}

/* Member m (a key token, of class k) copied from the text, and kept in the tree if the engine
 * reads it. */
static void put_tok(fast_out *f, const js_doc *d, uint32_t m, int k) {
    const char *key = d->text + d->tok[m].start;
    size_t len = d->tok[m].len;
    put_key(f, key, len);
    if (!f->rc) f->rc = js_write(&f->b, d, m + 1);
    if (fast_keys[k].engine && !f->rc && ev_engine_put(&f->o, d, m)) f->rc = BUF_NOMEM;
}

/* Member k with the string s[0..n) as its value. s is text engaged made (a time, a type or kind
 * name, a made-up messageId), which needs no escaping: it is copied as it is. None of these is in
 * the engine's tree: the type and messageId travel beside it (ev.h). */
static void put_text(fast_out *f, int k, const char *s, size_t n) {
    put_key(f, fast_keys[k].name, fast_keys[k].len);
    if (!f->rc) f->rc = buf_putc(&f->b, '"');
    if (!f->rc) f->rc = buf_append(&f->b, s, n);
    if (!f->rc) f->rc = buf_putc(&f->b, '"');
}

static void put_time(fast_out *f, int k, int64_t ms) {
    char text[TF_LEN];
    tf_format(ms, text);
    put_text(f, k, text, TF_TEXT_LEN);
}

/* Member k with a jansson value (borrowed) as its value; the tree keeps a shallow copy, as
 * ev_normalize() keeps a batch's object, whose values the events of the batch share. */
static void put_json(fast_out *f, int k, const json_t *v) {
    put_key(f, fast_keys[k].name, fast_keys[k].len);
    if (!f->rc) f->rc = jsonw_value(&f->b, v);
    if (fast_keys[k].engine)
        put_tree(f, fast_keys[k].name, fast_keys[k].len,
                 f->rc             ? NULL
                 : k == FK_CONTEXT ? engine_context(v)
                                   : json_copy((json_t *)v));
}

/* The event's own context or integrations (member m, of class k) with a batch's object merged in:
 * its members as sent, then the batch's members it lacks, in the batch's order. */
static void put_merged(fast_out *f, const js_doc *d, uint32_t m, int k, const json_t *batch) {
    uint32_t obj = m + 1;
    const char *key = fast_keys[k].name;
    size_t len = fast_keys[k].len;
    put_key(f, key, len);
    bool keep = fast_keys[k].engine; /* context is; integrations is not */
    /* The batch's members may add what the event's own context lacks, so the tree is made here
     * even when it stays empty; ev_engine_set() leaves an empty one out. */
    json_t *tree = NULL;
    if (keep && !engine_context_tok(d, obj, &tree) && !tree) tree = json_object();
    if (keep && !tree && !f->rc) f->rc = BUF_NOMEM;
    if (!f->rc) f->rc = buf_putc(&f->b, '{');
    bool first = true;
    for (uint32_t i = 0, mk = obj + 1; i < d->tok[obj].count && !f->rc; i++) {
        if (!first) f->rc = buf_putc(&f->b, ',');
        first = false;
        if (!f->rc) f->rc = js_write(&f->b, d, mk);
        if (!f->rc) f->rc = buf_putc(&f->b, ':');
        if (!f->rc) f->rc = js_write(&f->b, d, mk + 1);
        mk = d->tok[mk + 1].next;
    }
    const char *bk;
    json_t *bv;
    json_object_foreach((json_t *)batch, bk, bv) {
        if (f->rc) break;
        if (js_get(d, obj, bk, strlen(bk))) continue;
        if (!first) f->rc = buf_putc(&f->b, ',');
        first = false;
        if (!f->rc) f->rc = buf_putc(&f->b, '"');
        if (!f->rc) f->rc = buf_json_escape(&f->b, bk, strlen(bk));
        if (!f->rc) f->rc = buf_append(&f->b, "\":", 2);
        if (!f->rc) f->rc = jsonw_value(&f->b, bv);
        if (!f->rc && tree && ev_engine_context_member(bk, strlen(bk)) &&
            json_object_set(tree, bk, bv))
            f->rc = BUF_NOMEM;
    }
    if (!f->rc) f->rc = buf_putc(&f->b, '}');
    if (f->rc || !keep) {
        json_decref(tree);
        return;
    }
    put_tree(f, key, len, tree);
}

static bool batch_object(const json_t *v) {
    return v && json_is_object(v) && json_object_size(v) > 0;
}

bool ev_envelope_check(const ev_envelope *env) {
    if (!env) return true;
    const json_t *objs[] = {env->context, env->integrations};
    for (size_t i = 0; i < 2; i++) {
        ev_path path = {.len = 0};
        path.s[0] = '\0';
        ev_error err;
        if (objs[i] && !depth_ok(objs[i], 2, &path, &err)) return false;
    }
    return true;
}

int ev_normalize_text(const js_doc *d, uint32_t tok, int type, const ev_envelope *env,
                      ev_event *out) {
    memset(out, 0, sizeof *out);
    if (type < 0 || type > EV_NTYPES) {
        fprintf(stderr, "ev_normalize_text: type %d is out of range\n", type);
        abort();
    }
    if (tok >= d->n || d->tok[tok].kind != JS_OBJECT) return 1;
    const json_t *batch_ctx = env ? env->context : NULL,
                 *batch_int = env ? env->integrations : NULL;
    if ((batch_ctx && !json_is_object(batch_ctx)) || (batch_int && !json_is_object(batch_int)))
        return 1;

    /* Pass 1: where each named member is, and whether the event is one this path takes. The
     * first members' classes are kept for pass 2. */
    uint32_t at[FK_N] = {0};
    uint8_t cls[CLASSES_KEPT];
    uint32_t m = tok + 1;
    for (uint32_t i = 0; i < d->tok[tok].count; i++) {
        int k = fast_key(d, m);
        if (i < CLASSES_KEPT) cls[i] = (uint8_t)k;
        if (k != FK_OTHER) at[k] = m;
        m = d->tok[m + 1].next;
    }
#define VAL(k) (at[k] ? at[k] + 1 : 0)
#define IS(k, kind) tok_is(d, VAL(k), kind)
    ev_type t;
    char text[FAST_TEXT_MAX + 1];
    size_t n;
    if (type != EV_NTYPES) {
        t = (ev_type)type;
    } else if (!IS(FK_TYPE, JS_STRING) || !fast_text(d, VAL(FK_TYPE), text, &n) ||
               !ev_type_parse(text, &t)) {
        return 1;
    }

    /* Ids: strings of 1..EV_ID_MAX bytes, or null / "" (dropped); numbers decline. */
    char *ids[2] = {NULL, NULL};
    bool drop[FK_N] = {false};
    static const int id_keys[2] = {FK_USER, FK_ANON};
    for (int i = 0; i < 2; i++) {
        uint32_t v = VAL(id_keys[i]);
        if (!v) continue;
        if (d->tok[v].kind == JS_NULL || (d->tok[v].kind == JS_STRING && d->tok[v].len == 0)) {
            drop[id_keys[i]] = true;
            continue;
        }
        if (d->tok[v].kind != JS_STRING || !fast_text(d, v, text, &n) || n > EV_ID_MAX ||
            memchr(text, '\0', n))
            goto decline;
        if (n == 0) {
            drop[id_keys[i]] = true;
            continue;
        }
        if (!(ids[i] = malloc(n + 1))) goto decline;
        memcpy(ids[i], text, n + 1);
    }
    if (!ids[0] && !ids[1]) goto decline;

    /* The field the type needs: a non-empty string. */
    static const int need_key[EV_NTYPES] = {
        [EV_TRACK] = FK_EVENT, [EV_GROUP] = FK_GROUP, [EV_ALIAS] = FK_PREVIOUS};
    cm_kind kind = CM_NONE;
    if (need_key[t]) {
        uint32_t v = VAL(need_key[t]);
        if (!tok_is(d, v, JS_STRING) || !fast_text(d, v, text, &n) || n == 0) goto decline;
        if (type_needs[t].is_id && (n > EV_ID_MAX || memchr(text, '\0', n))) goto decline;
        if (t == EV_TRACK) {
            kind = cm_kind_lookup(text);
            if (!(out->event_name = malloc(n + 1))) goto decline;
            memcpy(out->event_name, text, n + 1);
        }
    }

    static const int object_keys[] = {FK_PROPERTIES, FK_TRAITS, FK_CONTEXT, FK_INTEGRATIONS};
    for (size_t i = 0; i < sizeof object_keys / sizeof *object_keys; i++) {
        uint32_t v = VAL(object_keys[i]);
        if (!v || d->tok[v].kind == JS_OBJECT) continue;
        if (d->tok[v].kind != JS_NULL) goto decline;
        drop[object_keys[i]] = true;
    }
    static const int text_keys[] = {FK_NAME, FK_CATEGORY};
    for (size_t i = 0; i < 2; i++) {
        uint32_t v = VAL(text_keys[i]);
        if (!v || d->tok[v].kind == JS_STRING) continue;
        if (d->tok[v].kind != JS_NULL) goto decline;
        drop[text_keys[i]] = true;
    }

    /* messageId: kept when 1..EV_MESSAGE_ID_MAX bytes; made when absent, null or "". */
    uint32_t mid = VAL(FK_MESSAGE_ID);
    bool made_id = !mid || d->tok[mid].kind == JS_NULL ||
                   (d->tok[mid].kind == JS_STRING && d->tok[mid].len == 0);
    if (made_id) {
        hash_uuid4(out->message_id);
    } else {
        if (d->tok[mid].kind != JS_STRING || !fast_text(d, mid, text, &n) || n == 0 ||
            n > EV_MESSAGE_ID_MAX)
            goto decline;
        memcpy(out->message_id, text, n + 1);
    }

    /* Times. */
    static const int time_keys[TS_N] = {FK_TIMESTAMP, FK_ORIGINAL, FK_SENT_AT};
    int64_t times[TS_N] = {0};
    bool have[TS_N] = {false};
    for (int i = 0; i < TS_N; i++) {
        uint32_t v = VAL(time_keys[i]);
        if (!v) continue;
        if (d->tok[v].kind == JS_NULL || (d->tok[v].kind == JS_STRING && d->tok[v].len == 0)) {
            drop[time_keys[i]] = true;
            continue;
        }
        if (d->tok[v].kind != JS_STRING || !fast_text(d, v, text, &n) ||
            !tf_parse(text, n, &times[i]))
            goto decline;
        have[i] = true;
    }
    bool batch_sent = false;
    const char *bs = env ? env->sent_at : NULL;
    if (!have[TS_SENT_AT] && bs && *bs) {
        if (!tf_parse(bs, strlen(bs), &times[TS_SENT_AT])) goto decline;
        have[TS_SENT_AT] = batch_sent = true;
    }
    out->received_ms = env ? env->received_ms : 0;
    out->timestamp_ms = event_time(times, have, out->received_ms);

    /* An e-commerce event's properties are typed from the tokens when no value needs coercing;
     * otherwise on a tree of their own, written back as coerced. A refusal declines
     * (ev_normalize() words the error). */
    json_t *props = NULL;
    if (kind != CM_NONE) {
        uint32_t v = drop[FK_PROPERTIES] ? 0 : VAL(FK_PROPERTIES);
        if (cm_parse_tokens(d, v, kind, &out->commerce)) {
            if (v && !(props = js_to_json(d, v))) goto decline;
            ev_error err;
            if (cm_parse(props, kind, &out->commerce, &err)) {
                json_decref(props);
                goto decline;
            }
        }
    }

    /* Pass 2: the body and the engine's tree. */
    fast_out f = {.b = BUF_INIT(EV_MAX_BYTES), .first = true}; /* f.o: made when needed */
    /* Room for the event as sent and the members added to it, so the body is not regrown as it is
     * written (the regrowing cost more than the writing: callgrind). */
    size_t room = d->tok[tok].len + EV_ADDED_BYTES;
    if (!f.rc) f.rc = buf_reserve(&f.b, room < EV_MAX_BYTES ? room : EV_MAX_BYTES);
    if (!f.rc) f.rc = buf_putc(&f.b, '{');
    put_text(&f, FK_TYPE, type_names[t], strlen(type_names[t]));
    m = tok + 1;
    for (uint32_t i = 0; i < d->tok[tok].count && !f.rc; i++) {
        int k = i < CLASSES_KEPT ? cls[i] : fast_key(d, m);
        uint32_t v = m + 1;
        if (k == FK_TYPE || k == FK_WRITE_KEY || k == FK_KIND || drop[k]) {
            /* gone */
        } else if (k == FK_MESSAGE_ID && made_id) {
            put_text(&f, FK_MESSAGE_ID, out->message_id, strlen(out->message_id));
        } else if (k == FK_TIMESTAMP) {
            put_time(&f, FK_TIMESTAMP, out->timestamp_ms);
        } else if (k == FK_ORIGINAL || k == FK_SENT_AT) {
            put_time(&f, k, times[k == FK_ORIGINAL ? TS_ORIGINAL : TS_SENT_AT]);
        } else if (k == FK_RECEIVED_AT) {
            put_time(&f, FK_RECEIVED_AT, out->received_ms);
        } else if (k == FK_CONTEXT && batch_object(batch_ctx)) {
            put_merged(&f, d, m, k, batch_ctx);
        } else if (k == FK_INTEGRATIONS && batch_object(batch_int)) {
            put_merged(&f, d, m, k, batch_int);
        } else if (k == FK_PROPERTIES && props && out->commerce->coerced) {
            put_json(&f, FK_PROPERTIES, props); /* as coerced; else as sent, below */
        } else {
            put_tok(&f, d, m, k);
        }
        m = d->tok[v].next;
    }
    if (!mid) put_text(&f, FK_MESSAGE_ID, out->message_id, strlen(out->message_id));
    if (batch_sent) put_time(&f, FK_SENT_AT, times[TS_SENT_AT]);
    if (!have[TS_TIMESTAMP]) put_time(&f, FK_TIMESTAMP, out->timestamp_ms);
    if (!at[FK_RECEIVED_AT]) put_time(&f, FK_RECEIVED_AT, out->received_ms);
    if ((!at[FK_CONTEXT] || drop[FK_CONTEXT]) && batch_object(batch_ctx))
        put_json(&f, FK_CONTEXT, batch_ctx);
    if ((!at[FK_INTEGRATIONS] || drop[FK_INTEGRATIONS]) && batch_object(batch_int))
        put_json(&f, FK_INTEGRATIONS, batch_int);
    if (kind != CM_NONE) put_text(&f, FK_KIND, cm_kind_name(kind), strlen(cm_kind_name(kind)));
    if (!f.rc) f.rc = buf_putc(&f.b, '}');
    json_decref(props);
    if (f.rc) {
        buf_free(&f.b);
        json_decref(f.o);
        goto decline;
    }
    out->body = buf_detach(&f.b, &out->body_len);
    out->json = f.o;
    out->type = t;
    out->user_id = ids[0];
    out->anonymous_id = ids[1];
    return 0;
#undef VAL
#undef IS

decline:
    free(ids[0]);
    free(ids[1]);
    ev_event_free(out);
    return 1;
}
