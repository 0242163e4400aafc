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

    /* Copy the ids last: until now they pointed into o. */
    char **owned[2] = {&out->user_id, &out->anonymous_id};
    for (size_t i = 0; i < 2; i++) {
        if (ids[i] && !(*owned[i] = strdup(ids[i]))) {
            ev_error_set(err, "internal", identity_fields[i], "out of memory");
            goto fail;
        }
    }
    out->type = t;
    /* The engine reads identities, traits and context from the parsed event, and the e-commerce
     * fields from out->commerce; properties (most of an event's allocations) are not kept alive
     * until the event is durable. */
    json_object_del(o, "properties");
    out->json = o;
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
    free(e->body);
    cm_event_free(e->commerce);
    json_decref(e->json);
    json_decref(e->result);
    memset(e, 0, sizeof *e);
}
