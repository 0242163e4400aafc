/* collect — the Segment HTTP Tracking API: /v1/track, /v1/identify, ... and /v1/batch, with the
 * browser SDKs' forms of it: analytics.js's short paths (/v1/t, ... /v1/b), RudderStack's beacon
 * (/beacon/v1/batch), and the settings documents both SDKs fetch before they send anything.
 *
 * Each request is parsed, authenticated (Basic user, or the writeKey of the body or query),
 * validated event by event with ev_normalize(), and its valid events handed to the committer in
 * one piece; the reply goes out once they are durable. A batch with invalid items stores the valid
 * ones and lists each rejected item with its index and reason; nothing is dropped silently. The
 * Content-Type is never looked at: sendBeacon and analytics.js send JSON as text/plain. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"
#include "util/tls.h"

#define BATCH_MAX_EVENTS 2500

/* ---- The fast path ----
 *
 * A body is first scanned into a token array (util/jscan.h) and its events normalised from the
 * tokens (ev_normalize_text()), which costs a fraction of building a jansson tree, copying it and
 * printing it again. Whatever the scanner or the fast normaliser declines (invalid JSON, a
 * duplicate key, an invalid event, the rarer shapes) takes the jansson path below it, which words
 * every error; both paths store the same bytes (tests/unit/test_ev.c, tests/fuzz). */

/* Tokens a body may scan into: a 500 KB batch of the smallest values. */
#define SCAN_MAX_TOKENS (256 * 1024)
/* A thread keeps a token array this large between requests; a larger one (a big batch) is freed. */
#define SCAN_KEEP_TOKENS (16 * 1024)

static void *doc_make(void) {
    js_doc *d = malloc(sizeof *d);
    if (d) js_init(d, SCAN_MAX_TOKENS);
    return d;
}

static void doc_destroy(void *d) {
    js_free(d);
    free(d);
}

static tls_slot doc_slot = TLS_SLOT(doc_make, doc_destroy);

/* The request's body scanned into this thread's token array, its root an object; or NULL: the
 * jansson path takes the request (or http_body() has replied, which r->status shows). */
static js_doc *scan_body(http_req *r, int max_depth) {
    js_doc *d = tls_get(&doc_slot);
    const char *body;
    size_t len;
    if (!d || http_body(r, &body, &len)) return NULL;
    if (d->cap > SCAN_KEEP_TOKENS) {
        js_free(d);
        js_init(d, SCAN_MAX_TOKENS);
    }
    if (js_parse(d, body, len, max_depth) || d->tok[0].kind != JS_OBJECT) return NULL;
    return d;
}

/* The key request_write_key() would read: the body's writeKey, decoded into key, else the query's.
 * false for a writeKey longer than any key, which the jansson path refuses in its own words. */
static bool scanned_write_key(http_req *r, const js_doc *d, char key[KEYS_MAX_LEN + 2],
                              const char **out) {
    uint32_t v = js_get(d, 0, "writeKey", 8);
    *out = http_query(r, "writeKey");
    if (!v || d->tok[v].kind != JS_STRING) return true;
    if (d->tok[v].len > KEYS_MAX_LEN) return false;
    js_string(d, v, key);
    *out = key;
    return true;
}

/* The key of a request that has no Authorization header (sendBeacon cannot set one): writeKey in
 * the body, else the writeKey query argument (RudderStack's beacon sends it there). */
static const char *request_write_key(http_req *r, const json_t *root) {
    const char *key = json_string_value(json_object_get(root, "writeKey"));
    return key ? key : http_query(r, "writeKey");
}

/* The event type each single-event path ends with: Segment's names, and the one-letter forms
 * analytics.js posts to (/v1/t, /v1/p, ...). */
static const struct {
    const char *segment;
    ev_type type;
} single_paths[] = {
    {"track", EV_TRACK}, {"identify", EV_IDENTIFY}, {"page", EV_PAGE}, {"screen", EV_SCREEN},
    {"group", EV_GROUP}, {"alias", EV_ALIAS},       {"t", EV_TRACK},   {"i", EV_IDENTIFY},
    {"p", EV_PAGE},      {"s", EV_SCREEN},          {"g", EV_GROUP},   {"a", EV_ALIAS},
};

static void single_committed(http_req *r) {
    if (r->creq.status) {
        r->retry_after = 1;
        http_reply_error(r, "unavailable", NULL, "the event could not be stored; retry");
        return;
    }
    metrics_count_events(r->creq.stored, r->creq.duplicates, NULL, 0);
    buf b = BUF_INIT(0);
    buf_puts(&b, "{\"success\":true}");
    http_reply_json(r, 200, &b);
}

void collect_single(http_req *r) {
    const char *last = strrchr(r->route->path, '/') + 1;
    size_t t = 0;
    while (t < sizeof single_paths / sizeof *single_paths && strcmp(single_paths[t].segment, last))
        t++;
    if (t == sizeof single_paths / sizeof *single_paths) {
        http_reply_error(r, "internal", NULL, "route %s has no event type", r->route->path);
        return;
    }
    ev_type type = single_paths[t].type;
    ev_envelope env = {.received_ms = r->received_ms};
    json_t *root = NULL;
    js_doc *d = scan_body(r, EV_MAX_DEPTH);
    if (r->status) return;
    char key[KEYS_MAX_LEN + 2];
    const char *write_key;
    if (d && !scanned_write_key(r, d, key, &write_key)) d = NULL;
    if (d) {
        r->events_received = 1;
        if (http_authorize(r, write_key, 1)) return;
        if (!(r->events = calloc(1, sizeof *r->events))) {
            http_reply_error(r, "internal", NULL, "out of memory");
            return;
        }
        if (ev_normalize_text(d, 0, (int)type, &env, &r->events[0]) == 0) {
            r->nevents = 1;
            http_commit(r, single_committed);
            return;
        }
        /* Declined: the jansson path decides, from the same tokens. */
        if (!(root = js_to_json(d, 0))) {
            http_reply_error(r, "internal", NULL, "out of memory");
            return;
        }
    } else {
        if (!(root = http_json_object(r))) return;
        r->events_received = 1;
        if (http_authorize(r, request_write_key(r, root), 1)) goto out;
        r->events = calloc(1, sizeof *r->events);
        if (!r->events) {
            http_reply_error(r, "internal", NULL, "out of memory");
            goto out;
        }
    }
    ev_error err;
    if (ev_normalize(root, (int)type, &env, &r->events[0], &err)) {
        const char *code = err.code;
        metrics_count_events(0, 0, &code, 1);
        http_reply_ev_error(r, &err);
        goto out;
    }
    r->nevents = 1;
    http_commit(r, single_committed);
out:
    json_decref(root);
}

/* Adds {"index":i,"code":...,"field":...,"message":...} to the rejected list in r->extra. */
static void reject(http_req *r, size_t index, const ev_error *e) {
    buf *b = &r->extra;
    buf_printf(b, "%s{\"index\":%zu,\"code\":\"%s\"", b->len ? "," : "", index, e->code);
    if (*e->field) { /* present only when one field is at fault */
        buf_puts(b, ",\"field\":\"");
        buf_json_escape(b, e->field, strlen(e->field));
        buf_putc(b, '"');
    }
    buf_puts(b, ",\"message\":\"");
    buf_json_escape(b, e->message, strlen(e->message));
    buf_puts(b, "\"}");
}

static void batch_committed(http_req *r) {
    if (r->creq.status) {
        r->retry_after = 1;
        http_reply_error(r, "unavailable", NULL, "the batch could not be stored; retry");
        return;
    }
    metrics_count_events(r->creq.stored, r->creq.duplicates, NULL, 0);
    buf b = BUF_INIT(0);
    buf_printf(&b, "{\"success\":true,\"accepted\":%zu,\"duplicates\":%zu,\"rejected\":[%s]}",
               r->nevents, r->creq.duplicates, buf_str(&r->extra));
    http_reply_json(r, 200, &b);
}

/* Checks that the batch-level member name, if present, is an object. */
static bool envelope_object(http_req *r, const json_t *root, const char *name, const json_t **out) {
    const json_t *v = json_object_get(root, name);
    if (v && !json_is_object(v) && !json_is_null(v)) {
        http_reply_error(r, "invalid_field", name, "%s must be an object", name);
        return false;
    }
    *out = json_is_object(v) ? v : NULL;
    return true;
}

/* A batch's items, read from the scanned body or from jansson's tree of it, and its envelope. */
typedef struct batch_items {
    const js_doc *d; /* the scanned body, or NULL */
    uint32_t next;   /* d: the token of the next item */
    const json_t *array;
    size_t n;
    ev_envelope env;
} batch_items;

/* Normalises item i into *out; 0, or -1 with *err filled. */
static int batch_item(batch_items *b, size_t i, ev_event *out, ev_error *err) {
    const json_t *item = NULL;
    json_t *own = NULL;
    if (b->d) {
        uint32_t t = b->next;
        b->next = b->d->tok[t].next;
        if (b->d->tok[t].kind == JS_OBJECT &&
            ev_normalize_text(b->d, t, EV_NTYPES, &b->env, out) == 0)
            return 0;
        item = own = js_to_json(b->d, t);
        if (!own) {
            ev_error_set(err, "internal", "", "out of memory");
            return -1;
        }
    } else {
        item = json_array_get(b->array, i);
    }
    int rc = -1;
    if (!json_is_object(item))
        ev_error_set(err, "invalid_field", "", "batch[%zu] must be an event object", i);
    else
        rc = ev_normalize(item, EV_NTYPES, &b->env, out, err);
    json_decref(own);
    return rc;
}

/* Normalises every item, stores the valid ones and lists the rest; replies or commits. */
static void batch_run(http_req *r, batch_items *b) {
    /* Not calloc(): a batch's events are some 20 KB, and jemalloc zeroes a block that large by
     * handing its pages back to the kernel (madvise), which refaults them as they are written and
     * flushes the other core's TLB by interrupt on every request: 11% of the request threads'
     * samples (perf). memset() costs a microsecond. */
    r->events = malloc(b->n * sizeof *r->events);
    if (!r->events) {
        http_reply_error(r, "internal", NULL, "out of memory");
        return;
    }
    memset(r->events, 0, b->n * sizeof *r->events);
    const char **codes = malloc(b->n * sizeof *codes);
    size_t nrejected = 0;
    for (size_t i = 0; i < b->n; i++) {
        ev_error err;
        if (batch_item(b, i, &r->events[r->nevents], &err) == 0) {
            r->nevents++;
            continue;
        }
        reject(r, i, &err);
        if (codes) codes[nrejected] = err.code;
        nrejected++;
    }
    if (codes) metrics_count_events(0, 0, codes, nrejected);
    free(codes);
    if (r->nevents == 0) {
        buf out = BUF_INIT(0);
        buf_printf(&out,
                   "{\"error\":{\"code\":\"invalid_batch\",\"message\":\"none of the %zu events "
                   "is valid; see rejected\"},\"rejected\":[%s]}",
                   b->n, buf_str(&r->extra));
        r->error_code = "invalid_batch";
        http_reply_json(r, 400, &out);
        return;
    }
    http_commit(r, batch_committed);
}

/* The batch from its scanned body: true when it replied or committed, false to leave it to the
 * jansson path (any envelope the checks there would refuse, or that needs them to word it). */
static bool batch_scanned(http_req *r, const js_doc *d) {
    uint32_t batch = js_get(d, 0, "batch", 5);
    uint32_t sent = js_get(d, 0, "sentAt", 6);
    uint32_t ctx = js_get(d, 0, "context", 7), integ = js_get(d, 0, "integrations", 12);
    if (!batch || d->tok[batch].kind != JS_ARRAY || d->tok[batch].count == 0 ||
        d->tok[batch].count > BATCH_MAX_EVENTS)
        return false;
    if (sent && d->tok[sent].kind != JS_STRING && d->tok[sent].kind != JS_NULL) return false;
    for (uint32_t v = ctx, i = 0; i < 2; v = integ, i++)
        if (v && d->tok[v].kind != JS_OBJECT && d->tok[v].kind != JS_NULL) return false;
    char key[KEYS_MAX_LEN + 2];
    const char *write_key;
    if (!scanned_write_key(r, d, key, &write_key)) return false;

    batch_items b = {.d = d, .next = batch + 1, .n = d->tok[batch].count};
    json_t *context = ctx && d->tok[ctx].kind == JS_OBJECT ? js_to_json(d, ctx) : NULL;
    json_t *integrations = integ && d->tok[integ].kind == JS_OBJECT ? js_to_json(d, integ) : NULL;
    char *sent_at = sent && d->tok[sent].kind == JS_STRING ? malloc(d->tok[sent].len + 1) : NULL;
    if (sent_at) js_string(d, sent, sent_at);
    b.env = (ev_envelope){.received_ms = r->received_ms,
                          .context = context,
                          .integrations = integrations,
                          .sent_at = sent_at};
    bool taken = false;
    if ((!ctx || d->tok[ctx].kind != JS_OBJECT || context) &&
        (!integ || d->tok[integ].kind != JS_OBJECT || integrations) &&
        (!sent || d->tok[sent].kind != JS_STRING || sent_at) && ev_envelope_check(&b.env)) {
        taken = true;
        r->events_received = b.n;
        if (!http_authorize(r, write_key, (double)b.n)) batch_run(r, &b);
    }
    json_decref(context);
    json_decref(integrations);
    free(sent_at);
    return taken;
}

void collect_batch(http_req *r) {
    js_doc *d = scan_body(r, EV_MAX_DEPTH + 2); /* the body, its batch array, then the events */
    if (r->status || (d && batch_scanned(r, d))) return;
    json_t *root = http_json_object(r);
    if (!root) return;
    const json_t *batch = json_object_get(root, "batch");
    const json_t *context, *integrations;
    const json_t *sent_at = json_object_get(root, "sentAt");
    size_t n = json_array_size(batch);
    r->events_received = n;
    if (!batch) {
        http_reply_error(r, "missing_field", "batch", "batch is required: an array of events");
    } else if (!json_is_array(batch)) {
        http_reply_error(r, "invalid_body", "batch", "batch must be an array of events");
    } else if (n == 0) {
        http_reply_error(r, "missing_field", "batch", "batch is empty: send at least one event");
    } else if (n > BATCH_MAX_EVENTS) {
        http_reply_error(r, "too_many_events", "batch",
                         "batch has %zu events; at most %d are allowed", n, BATCH_MAX_EVENTS);
    } else if (sent_at && !json_is_string(sent_at) && !json_is_null(sent_at)) {
        http_reply_error(r, "invalid_field", "sentAt", "sentAt must be an RFC 3339 string");
    } else if (envelope_object(r, root, "context", &context) &&
               envelope_object(r, root, "integrations", &integrations) &&
               !http_authorize(r, request_write_key(r, root), (double)n)) {
        batch_items b = {.array = batch,
                         .n = n,
                         .env = {.received_ms = r->received_ms,
                                 .context = context,
                                 .integrations = integrations,
                                 .sent_at = json_string_value(sent_at)}};
        batch_run(r, &b);
    }
    json_decref(root);
}

/* ---- Browser SDKs: the documents they fetch before sending ----
 *
 * analytics.js asks GET {cdn}/v1/projects/{writeKey}/settings and sends to the apiHost it finds
 * in integrations["Segment.io"], with that document's apiKey as its Basic user; RudderStack's SDK
 * asks GET {configUrl}/sourceConfig/?writeKey=... (Basic auth with the key) and needs source.id,
 * source.config, source.enabled and source.destinations. engaged answers both itself, pointing the
 * SDK back at the address it was reached at, with nothing for the SDK to load from elsewhere: no
 * destinations, no plan (a tracking plan makes analytics.js fetch a schema-filter bundle), remote
 * metrics off. */

/* Accepts key for a document: a known write key whose allow-list admits the request's Origin.
 * Otherwise replies (404 for an unknown, revoked or admin key; 403 for a refused origin) and
 * returns -1. */
static int document_key(http_req *r, const char *key, size_t len) {
    int64_t id = -1;
    int retry = 0;
    keys_verdict v = keys_check(http_keys(r), key, len, KEY_WRITE, 0, &id, &retry);
    /* A key over its rate still gets its document: fetching it sends no event. */
    if ((v != KEYS_OK && v != KEYS_RATE_LIMITED) || keys_scope_of(http_keys(r), id) != KEY_WRITE) {
        http_reply_error(r, "not_found", NULL, "there is no write key \"%.*s...\"",
                         len < 7 ? (int)len : 7, key);
        return -1;
    }
    r->key_id = id;
    return http_cors_check(r);
}

/* The first member of a comma-separated header value, trimmed, in out; false if it is empty or
 * does not fit. */
static bool first_member(const char *v, char *out, size_t outlen) {
    v += strspn(v, " \t");
    size_t n = strcspn(v, ",");
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= outlen) return false;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

/* Where the client reached engaged: "http" or "https", and host[:port]. A reverse proxy says so in
 * X-Forwarded-Proto and X-Forwarded-Host (it may rewrite Host); else the scheme is http (engaged
 * itself speaks no TLS) and the host is the Host header. A client can only mislead itself here:
 * the document it gets points its own SDK somewhere. */
static int public_address(http_req *r, const char **scheme, char host[256]) {
    const char *proto = http_header(r, "X-Forwarded-Proto");
    char p[8];
    *scheme =
        proto && first_member(proto, p, sizeof p) && strcasecmp(p, "https") == 0 ? "https" : "http";
    const char *fh = http_header(r, "X-Forwarded-Host");
    const char *h = fh ? fh : http_header(r, MHD_HTTP_HEADER_HOST);
    const char *field = fh ? "X-Forwarded-Host" : "Host";
    if (!h) {
        http_reply_error(r, "missing_field", "Host",
                         "a Host header is needed to say where the SDK should send events");
        return -1;
    }
    bool ok = first_member(h, host, 256);
    for (const char *c = host; ok && *c; c++)
        ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
             strchr("-._:[]", *c);
    if (!ok) {
        http_reply_error(r, "invalid_field", field,
                         "the %s header must be a host name or address with an optional port",
                         field);
        return -1;
    }
    return 0;
}

void collect_settings(http_req *r) {
    const char *key = r->params[0];
    const char *scheme;
    char host[256];
    if (document_key(r, key, strlen(key)) || public_address(r, &scheme, host)) return;
    buf b = BUF_INIT(0);
    buf_puts(&b, "{\"integrations\":{\"Segment.io\":{\"apiKey\":\"");
    buf_json_escape(&b, key, strlen(key));
    buf_puts(&b, "\",\"apiHost\":\"");
    buf_json_escape(&b, host, strlen(host));
    buf_printf(&b,
               "/v1\",\"protocol\":\"%s\",\"unbundledIntegrations\":[],"
               "\"addBundledMetadata\":true,\"maybeBundledConfigIds\":{},"
               "\"versionSettings\":{\"componentTypes\":[]}}},"
               "\"plan\":{},\"edgeFunction\":{},\"analyticsNextEnabled\":true,"
               "\"middlewareSettings\":{},\"enabledMiddleware\":{},\"metrics\":{\"sampleRate\":0},"
               "\"legacyVideoPluginsEnabled\":false,\"remotePlugins\":[]}",
               scheme);
    http_reply_json(r, 200, &b);
}

void collect_source_config(http_req *r) {
    /* The SDK sends the key both as its Basic user and in the query; either will do. */
    const char *key = r->auth_key;
    size_t len = r->auth_len;
    if (!key) {
        key = http_query(r, "writeKey");
        len = key ? strlen(key) : 0;
    }
    if (!key || !len) {
        http_reply_error(
            r, "unauthorized", NULL,
            "a write key is required: HTTP Basic user, or the writeKey query argument");
        return;
    }
    if (document_key(r, key, len)) return;
    buf b = BUF_INIT(0);
    buf_printf(&b,
               "{\"isHosted\":false,\"source\":{\"id\":\"engaged-%lld\",\"name\":\"engaged\","
               "\"writeKey\":\"",
               (long long)r->key_id);
    buf_json_escape(&b, key, len);
    buf_puts(&b, "\",\"config\":{},\"enabled\":true,\"workspaceId\":\"engaged\","
                 "\"destinations\":[]}}");
    http_reply_json(r, 200, &b);
}
