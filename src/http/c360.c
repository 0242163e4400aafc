/* c360 — the Customer 360 endpoints: profiles, catalogue, offers.
 *
 * Every route here names an engine operation in the routes table (http_route.op). Reads ask the
 * engine directly. Changes go the way events do: the engine prepares a log record from the request
 * (validated against its state, nothing changed yet), the committer makes the record durable, the
 * engine applies it in log order, and the reply is the outcome of that application — so two
 * concurrent redemptions of the last code are decided by the log, and a 200 means the change
 * survives a crash. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "c360/engine.h"
#include "http/http.h"
#include "store/store.h"
#include "util/hash.h"
#include "util/jsonw.h"

#define TIMELINE_DEFAULT_LIMIT 100
#define TIMELINE_MAX_LIMIT 1000
/* A page is at most TIMELINE_MAX_LIMIT events of at most 32 KB; an export at most this much. */
#define TIMELINE_MAX_REPLY (TIMELINE_MAX_LIMIT * (EV_MAX_BYTES + 64) + 4096)
#define EXPORT_MAX_REPLY (256u * 1024 * 1024)

static void reply_json_value(http_req *r, int status, const json_t *v) {
    buf b = BUF_INIT(0);
    if (jsonw_value(&b, v)) {
        buf_free(&b);
        http_reply_error(r, "internal", NULL, "out of memory writing the reply");
        return;
    }
    http_reply_json(r, status, &b);
}

static void reply_eng_error(http_req *r, const eng_error *err) {
    http_reply_error_status(r, err->status ? err->status : 500, &err->ev);
}

static void reply_result(http_req *r, json_t *result);

/* ---- Profiles: reads ---- */

static void profile_get(http_req *r) {
    static const char *const none[] = {NULL};
    json_t *q = json_object();
    if (http_query_args(r, none, false, q)) goto out;
    eng_error err;
    json_t *p = eng_profile(http_engine(r), r->params[0], r->received_ms, &err);
    if (!p) {
        reply_eng_error(r, &err);
        goto out;
    }
    reply_json_value(r, 200, p);
    json_decref(p);
out:
    json_decref(q);
}

static void profile_lookup(http_req *r) {
    static const char *const known[] = {"user_id", "anonymous_id", "email", "phone",
                                        "type",    "value",        NULL};
    json_t *q = json_object();
    if (http_query_args(r, known, false, q)) goto out;
    const char *type = NULL, *value = NULL;
    int given = 0;
    for (size_t i = 0; i < 4; i++) {
        const char *v = json_string_value(json_object_get(q, known[i]));
        if (v) type = known[i], value = v, given++;
    }
    const char *t = json_string_value(json_object_get(q, "type"));
    const char *v = json_string_value(json_object_get(q, "value"));
    if (t || v) {
        if (!t || !v) {
            http_reply_error(
                r, "missing_field", t ? "value" : "type",
                "type and value go together (e.g. type=whatsapp&value=+4915112345678)");
            goto out;
        }
        type = t, value = v, given++;
    }
    if (given != 1) {
        http_reply_error(r, given ? "invalid_field" : "missing_field", NULL,
                         "give exactly one of user_id, anonymous_id, email, phone, or type with "
                         "value");
        goto out;
    }
    eng_error err;
    json_t *p = eng_profile_lookup(http_engine(r), type, value, r->received_ms, &err);
    if (!p) {
        reply_eng_error(r, &err);
        goto out;
    }
    reply_json_value(r, 200, p);
    json_decref(p);
out:
    json_decref(q);
}

static void profile_events(http_req *r) {
    static const char *const known[] = {"limit", "cursor", NULL};
    json_t *q = json_object();
    int64_t limit = TIMELINE_DEFAULT_LIMIT, after = 0;
    if (http_query_args(r, known, false, q)) goto out;
    const char *l = json_string_value(json_object_get(q, "limit"));
    const char *c = json_string_value(json_object_get(q, "cursor"));
    if (l && !http_parse_int64(l, 1, TIMELINE_MAX_LIMIT, &limit)) {
        http_reply_error(r, "invalid_field", "limit", "limit must be an integer from 1 to %d",
                         TIMELINE_MAX_LIMIT);
        goto out;
    }
    if (c && !http_parse_int64(c, 0, INT64_MAX, &after)) {
        http_reply_error(r, "invalid_field", "cursor",
                         "cursor is not one this server gave out (use the last reply's next)");
        goto out;
    }
    int64_t seqs[TIMELINE_MAX_LIMIT];
    size_t n;
    bool more;
    eng_error err;
    if (eng_profile_seqs(http_engine(r), r->params[0], after, seqs, (size_t)limit, &n, &more,
                         &err)) {
        reply_eng_error(r, &err);
        goto out;
    }
    buf b = BUF_INIT(TIMELINE_MAX_REPLY);
    buf_puts(&b, "{\"events\":");
    if (store_bodies(http_store(r), seqs, n, &b)) {
        buf_free(&b);
        http_reply_error(r, "internal", NULL, "reading events: %s", store_errmsg());
        goto out;
    }
    if (more && n)
        buf_printf(&b, ",\"next\":\"%" PRId64 "\"}", seqs[n - 1]);
    else
        buf_puts(&b, ",\"next\":null}");
    http_reply_json(r, 200, &b);
out:
    json_decref(q);
}

/* An export is audited first (a logged record naming the profile and the key), then built. */
static void profile_export(http_req *r) {
    json_t *result = r->events[0].result;
    if (r->creq.status || !result || json_object_get(result, "error"))
        return reply_result(r, result);
    eng_error err;
    json_t *p = eng_profile_export(http_engine(r), r->params[0], r->received_ms, &err);
    if (!p) return reply_eng_error(r, &err);
    buf b = BUF_INIT(EXPORT_MAX_REPLY);
    int rc = jsonw_value(&b, p);
    json_decref(p);
    /* Then every event, page by page, spliced in as "events". */
    if (!rc && b.len) b.len--; /* drop the closing brace */
    rc = rc || buf_puts(&b, ",\"events\":[");
    int64_t after = 0, seqs[TIMELINE_MAX_LIMIT];
    bool more = true, first = true;
    while (!rc && more) {
        size_t n;
        if (eng_profile_seqs(http_engine(r), r->params[0], after, seqs, TIMELINE_MAX_LIMIT, &n,
                             &more, &err))
            break; /* erased meanwhile: what was read is what there was */
        buf page = BUF_INIT(TIMELINE_MAX_REPLY);
        rc = store_bodies(http_store(r), seqs, n, &page);
        /* store_bodies wraps the page in brackets; splice its inside. */
        if (!rc && page.len > 2)
            rc = (!first && buf_putc(&b, ',')) || buf_append(&b, page.data + 1, page.len - 2);
        if (page.len > 2) first = false;
        buf_free(&page);
        if (n) after = seqs[n - 1];
        if (!n) break;
    }
    if (rc || buf_puts(&b, "]}")) {
        buf_free(&b);
        http_reply_error(r, "internal", NULL, "the export could not be written: %s",
                         store_errmsg());
        return;
    }
    http_reply_json(r, 200, &b);
}

/* ---- Commands ---- */

/* Replies with the outcome the engine set on the record when it applied it. */
static void reply_result(http_req *r, json_t *result) {
    if (r->creq.status || !result) {
        r->retry_after = 1;
        http_reply_error(r, "unavailable", NULL, "the change could not be stored; retry");
        return;
    }
    int status = (int)json_integer_value(json_object_get(result, "status"));
    const json_t *error = json_object_get(result, "error");
    if (error) {
        const char *code = json_string_value(json_object_get(error, "code"));
        ev_error e = {.code = code ? code : "internal"};
        snprintf(e.field, sizeof e.field, "%s",
                 json_string_value(json_object_get(error, "field"))
                     ? json_string_value(json_object_get(error, "field"))
                     : "");
        snprintf(e.message, sizeof e.message, "%s",
                 json_string_value(json_object_get(error, "message")));
        http_reply_error_status(r, status, &e);
        return;
    }
    reply_json_value(r, status, json_object_get(result, "body"));
}

static void command_applied(http_req *r) {
    reply_result(r, r->events[0].result);
}

static void erase_deleted(http_req *r) {
    if (r->creq.status) {
        /* The erasure is logged and applied; replay erases the events at the next start. */
        r->retry_after = 1;
        http_reply_error(r, "unavailable", NULL,
                         "the profile is erased but its events are not yet deleted; retry");
        return;
    }
    reply_result(r, r->events[0].result);
}

/* An erasure is two steps: the record (the profile leaves the engine), then its events. */
static void erase_applied(http_req *r) {
    json_t *result = r->events[0].result;
    json_t *body = json_object_get(result, "body");
    json_t *seqs = json_object_get(body, "_seqs");
    if (r->creq.status || !seqs) return reply_result(r, result);
    size_t n = json_array_size(seqs);
    for (size_t i = 0; i < n; i++) {
        int64_t seq = json_integer_value(json_array_get(seqs, i));
        if (buf_append(&r->extra, &seq, sizeof seq)) {
            http_reply_error(r, "internal", NULL, "out of memory");
            return;
        }
    }
    const int64_t *rows = (const int64_t *)(const void *)r->extra.data;
    json_object_del(body, "_seqs");
    if (n == 0) return reply_result(r, result);
    http_commit_deletes(r, rows, n, erase_deleted);
}

static int log_record(http_req *r, json_t *record, void (*on_commit)(http_req *)) {
    r->events = calloc(1, sizeof *r->events);
    if (!r->events) {
        json_decref(record);
        http_reply_error(r, "internal", NULL, "out of memory");
        return -1;
    }
    ev_event *e = &r->events[0];
    r->nevents = 1;
    e->command = true;
    json_object_set_new(record, "key", json_integer(r->key_id)); /* who, for the audit */
    e->json = record;
    e->received_ms = e->timestamp_ms = r->received_ms;
    char uuid[37];
    hash_uuid4(uuid);
    snprintf(e->message_id, sizeof e->message_id, "cmd-%s", uuid);
    buf b = BUF_INIT(0);
    if (jsonw_value(&b, record)) {
        buf_free(&b);
        http_reply_error(r, "internal", NULL, "out of memory");
        return -1;
    }
    e->body = buf_detach(&b, &e->body_len);
    return http_commit(r, on_commit);
}

/* The arguments an operation gets: the path's id, the body (when the route takes one) and the
 * query arguments it knows. */
static json_t *command_args(http_req *r, const char *const *query) {
    json_t *args = json_object();
    if (!args) return NULL;
    if (r->params[0]) {
        json_object_set_new(args, "id", json_string(r->params[0]));
    }
    if (query && http_query_args(r, query, false, args)) {
        json_decref(args);
        return NULL;
    }
    const char *limit = json_string_value(json_object_get(args, "limit"));
    if (limit) {
        int64_t v;
        if (!http_parse_int64(limit, 1, 1000, &v)) {
            http_reply_error(r, "invalid_field", "limit",
                             "limit must be an integer from 1 to 1000");
            json_decref(args);
            return NULL;
        }
        json_object_set_new(args, "limit", json_integer(v));
    }
    if (r->route->max_body) {
        /* The catalogue's bulk upsert is an array; every other body an object. */
        bool any = strcmp(r->route->op, "catalog.upsert") == 0;
        json_t *body = any ? http_json_value(r) : http_json_object(r);
        if (!body) {
            json_decref(args);
            return NULL;
        }
        json_object_set_new(args, "body", body);
    }
    return args;
}

static void run_command(http_req *r, const char *const *query, void (*on_commit)(http_req *)) {
    json_t *args = command_args(r, query);
    if (!args) return;
    json_t *record = NULL, *reply = NULL;
    eng_error err;
    int rc = eng_prepare(http_engine(r), r->route->op, args, r->received_ms, &record, &reply, &err);
    json_decref(args);
    if (rc < 0) return reply_eng_error(r, &err);
    if (rc == 0) {
        reply_json_value(r, 200, reply ? reply : json_object());
        json_decref(reply);
        return;
    }
    json_decref(reply);
    log_record(r, record, on_commit);
}

/* ---- Dispatch ---- */

typedef struct c360_route {
    const char *op;
    void (*read)(http_req *r);      /* a read the engine answers */
    const char *const *query;       /* for commands: the query arguments taken */
    void (*on_commit)(http_req *r); /* for commands: the reply once applied */
} c360_route;

static const char *const list_query[] = {"cursor", "limit", NULL};
static const char *const channel_query[] = {"channel", NULL};
static const char *const no_query[] = {NULL};
static const char *const available_query[] = {"profile", "market", NULL};

static const c360_route c360_routes[] = {
    {"profile.get", profile_get, NULL, NULL},
    {"profile.lookup", profile_lookup, NULL, NULL},
    {"profile.events", profile_events, NULL, NULL},
    {"profile.export", NULL, no_query, profile_export},
    {"audit.list", NULL, list_query, command_applied},
    {"profile.erase", NULL, no_query, erase_applied},
    {"profile.unmerge", NULL, no_query, command_applied},
    {"profile.consent", NULL, no_query, command_applied},
    {"catalog.list", NULL, list_query, command_applied},
    {"catalog.get", NULL, no_query, command_applied},
    {"catalog.upsert", NULL, no_query, command_applied},
    {"catalog.patch", NULL, no_query, command_applied},
    {"catalog.archive", NULL, no_query, command_applied},
    {"catalog.available", NULL, available_query, command_applied},
    {"catalog.changes", NULL, list_query, command_applied},
    {"offer.eligible", NULL, channel_query, command_applied},
    {"offer.list", NULL, list_query, command_applied},
    {"offer.get", NULL, no_query, command_applied},
    {"offer.put", NULL, no_query, command_applied},
    {"offer.patch", NULL, no_query, command_applied},
    {"offer.codes", NULL, no_query, command_applied},
    {"offer.assign", NULL, no_query, command_applied},
    {"offer.validate", NULL, no_query, command_applied},
    {"offer.redeem", NULL, no_query, command_applied},
};

void c360_handler(http_req *r) {
    for (size_t i = 0; i < sizeof c360_routes / sizeof *c360_routes; i++) {
        const c360_route *cr = &c360_routes[i];
        if (strcmp(cr->op, r->route->op) != 0) continue;
        if (cr->read)
            cr->read(r);
        else
            run_command(r, cr->query, cr->on_commit);
        return;
    }
    http_reply_error(r, "internal", NULL, "route %s has no operation", r->route->path);
}
