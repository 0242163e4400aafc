/* server — libmicrohttpd glue: routing, bodies, authentication, suspend/resume, access log. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "http/http.h"

#include "c360/engine.h"
#include "util/clock.h"
#include "util/log.h"

#define KB 1024
/* How much of an oversized body is read and dropped before answering 413. */
#define HTTP_DRAIN_MAX (8 * 1024 * KB)

/* The API. Order matters only for readability; lookups try every row. */
const http_route http_routes[] = {
    /* Collection: the Segment HTTP Tracking API. */
    {"POST", "/v1/track", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/track", NULL},
    {"POST", "/v1/identify", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/identify", NULL},
    {"POST", "/v1/page", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/page", NULL},
    {"POST", "/v1/screen", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/screen", NULL},
    {"POST", "/v1/group", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/group", NULL},
    {"POST", "/v1/alias", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/alias", NULL},
    {"POST", "/v1/batch", collect_batch, KEY_WRITE, 500 * KB, "/v1/batch", NULL},
    {"POST", "/v1/import", collect_batch, KEY_WRITE, 500 * KB, "/v1/import", NULL},
    /* Browser SDKs (collect.c): analytics.js's short paths and RudderStack's beacon, and the
     * documents each fetches first. Every write-key route answers CORS (http.h). */
    {"POST", "/v1/t", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/t", NULL},
    {"POST", "/v1/i", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/i", NULL},
    {"POST", "/v1/p", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/p", NULL},
    {"POST", "/v1/s", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/s", NULL},
    {"POST", "/v1/g", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/g", NULL},
    {"POST", "/v1/a", collect_single, KEY_WRITE, EV_MAX_BYTES, "/v1/a", NULL},
    {"POST", "/v1/b", collect_batch, KEY_WRITE, 500 * KB, "/v1/b", NULL},
    {"POST", "/beacon/v1/batch", collect_batch, KEY_WRITE, 500 * KB, "/beacon/v1/batch", NULL},
    {"GET", "/v1/projects/*/settings", collect_settings, KEY_WRITE, 0,
     "/v1/projects/{key}/settings", NULL},
    {"GET", "/sourceConfig/", collect_source_config, KEY_WRITE, 0, "/sourceConfig", NULL},
    {"GET", "/sourceConfig", collect_source_config, KEY_WRITE, 0, "/sourceConfig", NULL},
    /* Reading and operating. */
    {"GET", "/v1/events", admin_events, KEY_ADMIN, 0, "/v1/events", NULL},
    {"GET", "/v1/admin/clock", admin_clock, KEY_ADMIN, 0, "/v1/admin/clock", NULL},
    {"POST", "/v1/admin/clock", admin_clock, KEY_ADMIN, 4 * KB, "/v1/admin/clock", NULL},
    {"GET", "/healthz", admin_healthz, 0, 0, "/healthz", NULL},
    /* Customer 360 (c360.c): profiles, catalogue, offers. More specific paths first. */
    {"GET", "/v1/profiles/lookup", c360_handler, KEY_ADMIN, 0, "/v1/profiles/lookup",
     "profile.lookup"},
    {"GET", "/v1/profiles/*", c360_handler, KEY_ADMIN, 0, "/v1/profiles/{id}", "profile.get"},
    {"DELETE", "/v1/profiles/*", c360_handler, KEY_ADMIN, 0, "/v1/profiles/{id}", "profile.erase"},
    {"GET", "/v1/profiles/*/events", c360_handler, KEY_ADMIN, 0, "/v1/profiles/{id}/events",
     "profile.events"},
    {"GET", "/v1/profiles/*/export", c360_handler, KEY_ADMIN, 0, "/v1/profiles/{id}/export",
     "profile.export"},
    {"POST", "/v1/profiles/*/unmerge", c360_handler, KEY_ADMIN, 4 * KB, "/v1/profiles/{id}/unmerge",
     "profile.unmerge"},
    {"POST", "/v1/profiles/*/consent", c360_handler, KEY_ADMIN, 64 * KB,
     "/v1/profiles/{id}/consent", "profile.consent"},
    {"GET", "/v1/catalog/products", c360_handler, KEY_ADMIN, 0, "/v1/catalog/products",
     "catalog.list"},
    {"PUT", "/v1/catalog/products", c360_handler, KEY_ADMIN, 16384 * KB, "/v1/catalog/products",
     "catalog.upsert"},
    {"GET", "/v1/catalog/products/*", c360_handler, KEY_ADMIN, 0, "/v1/catalog/products/{id}",
     "catalog.get"},
    {"PATCH", "/v1/catalog/products/*", c360_handler, KEY_ADMIN, 64 * KB,
     "/v1/catalog/products/{id}", "catalog.patch"},
    {"DELETE", "/v1/catalog/products/*", c360_handler, KEY_ADMIN, 0, "/v1/catalog/products/{id}",
     "catalog.archive"},
    {"GET", "/v1/catalog/products/*/available", c360_handler, KEY_ADMIN, 0,
     "/v1/catalog/products/{id}/available", "catalog.available"},
    {"GET", "/v1/audit", c360_handler, KEY_ADMIN, 0, "/v1/audit", "audit.list"},
    {"GET", "/v1/catalog/changes", c360_handler, KEY_ADMIN, 0, "/v1/catalog/changes",
     "catalog.changes"},
    {"GET", "/v1/profiles/*/offers", c360_handler, KEY_ADMIN, 0, "/v1/profiles/{id}/offers",
     "offer.eligible"},
    {"GET", "/v1/offers", c360_handler, KEY_ADMIN, 0, "/v1/offers", "offer.list"},
    {"GET", "/v1/offers/*", c360_handler, KEY_ADMIN, 0, "/v1/offers/{id}", "offer.get"},
    {"PUT", "/v1/offers/*", c360_handler, KEY_ADMIN, 64 * KB, "/v1/offers/{id}", "offer.put"},
    {"PATCH", "/v1/offers/*", c360_handler, KEY_ADMIN, 64 * KB, "/v1/offers/{id}", "offer.patch"},
    {"POST", "/v1/offers/*/codes", c360_handler, KEY_ADMIN, 4096 * KB, "/v1/offers/{id}/codes",
     "offer.codes"},
    {"POST", "/v1/offers/*/assign", c360_handler, KEY_ADMIN, 4 * KB, "/v1/offers/{id}/assign",
     "offer.assign"},
    {"POST", "/v1/offers/*/validate", c360_handler, KEY_ADMIN, 4 * KB, "/v1/offers/{id}/validate",
     "offer.validate"},
    {"POST", "/v1/offers/*/redeem", c360_handler, KEY_ADMIN, 4 * KB, "/v1/offers/{id}/redeem",
     "offer.redeem"},
    /* Recommendations (reco.c): write keys too, for the visitor holding them. */
    {"GET", "/v1/recommendations", reco_handler, KEY_WRITE, 0, "/v1/recommendations", NULL},
    /* Files engaged serves itself (static.c): the browser tracker; and under `engaged demo` only
     * (404 under `engaged serve`), the demo storefront and the endpoints its pages call. */
    {"GET", "/sdk/engaged.js", static_handler, 0, 0, "/sdk/engaged.js", NULL},
    {"GET", "/demo", static_handler, 0, 0, "/demo", NULL},
    {"GET", "/demo/", static_handler, 0, 0, "/demo/", NULL},
    {"GET", "/demo/*", static_handler, 0, 0, "/demo/{file}", NULL},
    {"GET", "/demo/api/config", static_demo_api, 0, 0, "/demo/api/config", NULL},
    {"GET", "/demo/api/sign", static_demo_api, 0, 0, "/demo/api/sign", NULL},
    {"GET", "/demo/api/profile", static_demo_api, 0, 0, "/demo/api/profile", "profile.lookup"},
    {"GET", "/demo/api/profiles/*/events", static_demo_api, 0, 0, "/demo/api/profiles/{id}/events",
     "profile.events"},
    {"GET", "/demo/api/products", static_demo_api, 0, 0, "/demo/api/products", "catalog.list"},
    {"PATCH", "/demo/api/products/*", static_demo_api, 0, 4 * KB, "/demo/api/products/{id}",
     "catalog.patch"},
    {"GET", "/metrics", metrics_handler, KEY_ADMIN, 0, "/metrics", NULL},
};
const size_t http_nroutes = sizeof http_routes / sizeof http_routes[0];

struct http_server {
    cfg cfg;
    store *store;
    commit *commit;
    struct engine *engine;
    keyring *keys;
    struct MHD_Daemon *daemon;
    int port;
    atomic_int active; /* requests between first call and completion */
    atomic_bool draining;
};

/* ---- Small accessors ---- */

store *http_store(http_req *r) {
    return r->srv->store;
}
keyring *http_keys(http_req *r) {
    return r->srv->keys;
}
const cfg *http_cfg(http_req *r) {
    return &r->srv->cfg;
}
bool http_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

struct engine *http_engine(http_req *r) {
    return r->srv->engine;
}
const commit_stats *http_commit_stats(http_req *r) {
    return commit_get_stats(r->srv->commit);
}
const char *http_header(http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}
const char *http_query(http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

typedef struct query_iter {
    int (*fn)(void *, const char *, const char *);
    void *arg;
    int result;
} query_iter;

static enum MHD_Result query_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value) {
    query_iter *it = cls;
    it->result = it->fn(it->arg, key, value ? value : "");
    return it->result ? MHD_NO : MHD_YES;
}

int http_query_each(http_req *r, int (*fn)(void *, const char *, const char *), void *arg) {
    query_iter it = {fn, arg, 0};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_cb, &it);
    return it.result;
}

typedef struct known_args {
    http_req *r;
    const char *const *known; /* NULL-terminated */
    bool once;
    json_t *into;
} known_args;

static int take_known(void *arg, const char *key, const char *value) {
    known_args *q = arg;
    for (const char *const *k = q->known; *k; k++) {
        if (strcmp(*k, key) != 0) continue;
        if (q->once && json_object_get(q->into, key)) {
            http_reply_error(q->r, "invalid_field", key, "%s is given twice", key);
            return 1;
        }
        json_object_set_new(q->into, key, json_string(value));
        return 0;
    }
    char list[400] = "";
    for (const char *const *k = q->known; *k; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k == q->known ? "" : ", ",
                 *k);
    http_reply_error(q->r, "invalid_field", key, "unknown parameter %.64s (known: %s)", key,
                     *list ? list : "none");
    return 1;
}

int http_query_args(http_req *r, const char *const *known, bool once, json_t *into) {
    known_args q = {r, known, once, into};
    return http_query_each(r, take_known, &q) ? -1 : 0;
}

/* ---- Routing ---- */

/* Matches path against pattern segment by segment; "*" captures one segment into r->params. */
static bool route_match(const char *pattern, const char *path, http_req *r) {
    int np = 0;
    char *w = r->path_copy;
    size_t room = sizeof r->path_copy;
    while (*pattern && *path) {
        if (*pattern != '/' || *path != '/') return false;
        pattern++, path++;
        size_t pl = strcspn(pattern, "/"), sl = strcspn(path, "/");
        if (pl == 1 && *pattern == '*') {
            if (sl == 0 || sl >= room || np == HTTP_MAX_PARAMS) return false;
            memcpy(w, path, sl);
            w[sl] = '\0';
            r->params[np++] = w;
            w += sl + 1;
            room -= sl + 1;
        } else if (pl != sl || memcmp(pattern, path, pl) != 0) {
            return false;
        }
        pattern += pl, path += sl;
    }
    return *pattern == '\0' && *path == '\0';
}

/* Finds the route; sets *path_known when some route has this path under another method. */
static const http_route *route_find(http_req *r, bool *path_known) {
    *path_known = false;
    for (size_t i = 0; i < http_nroutes; i++) {
        if (!route_match(http_routes[i].path, r->path, r)) continue;
        if (strcmp(http_routes[i].method, r->method) == 0) return &http_routes[i];
        *path_known = true;
    }
    return NULL;
}

/* ---- Authentication ---- */

/* Reads the key from "Basic base64(key:)" or "Bearer key" into r->auth_key. */
static void parse_authorization(http_req *r) {
    const char *h = http_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) return;
    if (strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        while (*h == ' ')
            h++;
        size_t n = strlen(h);
        if (n > KEYS_MAX_LEN)
            n = KEYS_MAX_LEN + 1; /* too long: unknown, never truncated to match */
        r->auth_key = h;
        r->auth_len = n;
    } else if (strncasecmp(h, "Basic ", 6) == 0) {
        h += 6;
        while (*h == ' ')
            h++;
        size_t n = strlen(h);
        unsigned char out[(KEYS_MAX_LEN + 2) * 3 / 4 + 8];
        if (n == 0 || n % 4 || n > (sizeof out - 8) / 3 * 4) {
            r->auth_key = "";
            r->auth_len = 0;
            return;
        }
        int len = EVP_DecodeBlock(out, (const unsigned char *)h, (int)n);
        if (len < 0) len = 0;
        while (n > 0 && h[n - 1] == '=' && len > 0)
            n--, len--; /* DecodeBlock counts padding */
        /* The key is the user part: everything before the first ':'. */
        size_t ulen = 0;
        while (ulen < (size_t)len && out[ulen] != ':')
            ulen++;
        if (ulen > KEYS_MAX_LEN) ulen = 0;
        memcpy(r->auth_buf, out, ulen);
        r->auth_buf[ulen] = '\0';
        r->auth_key = r->auth_buf;
        r->auth_len = ulen;
    } else {
        r->auth_key = "";
        r->auth_len = 0;
    }
}

int http_authorize(http_req *r, const char *body_key, double nevents) {
    const char *key = r->auth_key;
    size_t len = r->auth_len;
    if (!key && body_key) key = body_key, len = strlen(body_key);
    if (!key || !len) {
        http_reply_error(r, "unauthorized", NULL,
                         r->route->scope == KEY_ADMIN
                             ? "an admin key is required: Authorization: Bearer KEY"
                             : "a write key is required: HTTP Basic user, or writeKey in the body");
        return -1;
    }
    int retry = 0;
    /* A key already checked from the header (before the body was read) is only charged now. */
    keys_verdict v =
        r->key_id >= 0 && key == r->auth_key
            ? keys_charge(r->srv->keys, r->key_id, nevents, &retry)
            : keys_check(r->srv->keys, key, len, r->route->scope, nevents, &r->key_id, &retry);
    switch (v) {
    case KEYS_OK:
        return r->route->scope == KEY_WRITE ? http_cors_check(r) : 0;
    case KEYS_UNKNOWN:
        http_reply_error(r, "unauthorized", NULL, "the key is not valid (unknown or revoked)");
        return -1;
    case KEYS_FORBIDDEN:
        http_reply_error(r, "forbidden", NULL,
                         "this endpoint needs an admin key; a write key may only send events");
        return -1;
    case KEYS_RATE_LIMITED:
        r->retry_after = retry;
        http_reply_error(r, "rate_limited", NULL,
                         "this key is over its rate limit; retry after %d s", retry);
        return -1;
    }
    return -1;
}

/* ---- CORS (http.h) ---- */

/* Seconds a browser may cache a preflight (Chrome keeps one 2 h at most). */
#define CORS_MAX_AGE "86400"
/* The longest Access-Control-Request-Headers echoed; SDKs ask for a handful of names. */
#define CORS_MAX_REQUEST_HEADERS 512

/* The Origin header when it is one that may be echoed: at most KEYS_ORIGIN_MAX visible ASCII
 * characters. A malformed one is never echoed (and matches no allow-list). */
static const char *cors_origin(http_req *r) {
    const char *o = http_header(r, "Origin");
    if (!o) return NULL;
    size_t n = 0;
    for (; o[n]; n++)
        if (n == KEYS_ORIGIN_MAX || (unsigned char)o[n] <= 0x20 || (unsigned char)o[n] >= 0x7f)
            return NULL;
    return n ? o : NULL;
}

int http_cors_check(http_req *r) {
    const char *origin = http_header(r, "Origin");
    if (!origin || r->key_id < 0 || keys_origin_allowed(r->srv->keys, r->key_id, origin)) return 0;
    r->origin_refused = true;
    ev_error e;
    ev_error_set(&e, "origin_not_allowed", "Origin",
                 "the origin %.100s is not allowed to use this write key (its allow-list is set "
                 "with engaged keys create --origin)",
                 origin);
    http_reply_error_status(r, 403, &e);
    return -1;
}

/* Whether a write-key route has this path: a preflight for it is answered. Writes into *methods
 * (", "-joined) the methods such routes take there. */
static bool cors_path(http_req *r, char *methods, size_t len) {
    size_t used = 0;
    methods[0] = '\0';
    for (size_t i = 0; i < http_nroutes; i++) {
        const http_route *rt = &http_routes[i];
        if (rt->scope != KEY_WRITE || !route_match(rt->path, r->path, r) ||
            strstr(methods, rt->method))
            continue;
        int n = snprintf(methods + used, len - used, "%s%s", used ? ", " : "", rt->method);
        if (n < 0 || (size_t)n >= len - used) break; /* cannot happen: one or two methods */
        used += (size_t)n;
    }
    return used > 0;
}

/* Whether a preflight's Access-Control-Request-Headers may be echoed: header names (token
 * characters), commas and spaces, within a cap. */
static bool cors_header_list(const char *h) {
    size_t n = strlen(h);
    return n > 0 && n <= CORS_MAX_REQUEST_HEADERS &&
           strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                     "!#$%&'*+-.^_`|~, ") == n;
}

/* Adds the CORS headers of r's reply (nothing on admin routes or without an Origin). */
static void cors_headers(http_req *r, struct MHD_Response *resp) {
    bool browser = r->preflight || (r->route && r->route->scope == KEY_WRITE);
    if (!browser) return;
    const char *origin = cors_origin(r);
    if (r->preflight) {
        char methods[64];
        cors_path(r, methods, sizeof methods);
        MHD_add_response_header(resp, "Vary",
                                "Origin, Access-Control-Request-Method, "
                                "Access-Control-Request-Headers");
        if (!origin) return;
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", methods);
        const char *asked = http_header(r, "Access-Control-Request-Headers");
        if (asked && cors_header_list(asked))
            MHD_add_response_header(resp, "Access-Control-Allow-Headers", asked);
        MHD_add_response_header(resp, "Access-Control-Max-Age", CORS_MAX_AGE);
        return;
    }
    MHD_add_response_header(resp, "Vary", "Origin");
    if (!origin || r->origin_refused) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
    if (r->retry_after > 0)
        MHD_add_response_header(resp, "Access-Control-Expose-Headers", "Retry-After");
}

/* ---- Bodies ---- */

int http_body(http_req *r, const char **out, size_t *len) {
    if (r->body_text) {
        *out = r->body_text;
        *len = r->body_text_len;
        return 0;
    }
    const char *enc = http_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (!enc || !*enc || strcasecmp(enc, "identity") == 0) {
        *out = r->body_text = buf_str(&r->body);
        *len = r->body_text_len = r->body.len;
        return 0;
    }
    if (strcasecmp(enc, "gzip") && strcasecmp(enc, "x-gzip") && strcasecmp(enc, "deflate")) {
        http_reply_error(r, "unsupported_encoding", NULL,
                         "Content-Encoding %.40s is not supported (use gzip, deflate or none)",
                         enc);
        return -1;
    }
    z_stream z = {0};
    /* 32 + MAX_WBITS: accept gzip and zlib streams alike, whichever the client calls it. */
    if (inflateInit2(&z, 32 + MAX_WBITS) != Z_OK) {
        http_reply_error(r, "internal", NULL, "cannot start inflating");
        return -1;
    }
    buf_init(&r->inflated, r->route->max_body);
    z.next_in = (unsigned char *)r->body.data;
    z.avail_in = (uInt)r->body.len;
    int rc = Z_OK;
    char chunk[16 * KB];
    while (rc != Z_STREAM_END) {
        z.next_out = (unsigned char *)chunk;
        z.avail_out = sizeof chunk;
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) break;
        if (buf_append(&r->inflated, chunk, sizeof chunk - z.avail_out)) {
            rc = Z_MEM_ERROR;
            inflateEnd(&z);
            http_reply_error(r, "body_too_large", NULL,
                             "the inflated body is larger than %zu bytes", r->route->max_body);
            return -1;
        }
        if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
            rc = Z_DATA_ERROR; /* input ended before the stream did */
            break;
        }
    }
    bool trailing = rc == Z_STREAM_END && z.avail_in != 0;
    inflateEnd(&z);
    if (rc != Z_STREAM_END || trailing) {
        http_reply_error(r, "invalid_body", NULL, "the body is not a valid %s stream%s", enc,
                         trailing ? " (data after its end)" : "");
        return -1;
    }
    *out = r->body_text = buf_str(&r->inflated);
    *len = r->body_text_len = r->inflated.len;
    return 0;
}

json_t *http_json_value(http_req *r) {
    const char *body;
    size_t len;
    if (http_body(r, &body, &len)) return NULL;
    json_error_t je;
    /* JSON_DECODE_ANY: a scalar body is valid JSON of the wrong shape, and is told so. */
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY, &je);
    if (!root) http_reply_json_error(r, &je);
    return root;
}

json_t *http_json_object(http_req *r) {
    json_t *root = http_json_value(r);
    if (!root) return NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        http_reply_error(r, "invalid_body", NULL, "the body must be a JSON object");
        return NULL;
    }
    return root;
}

/* ---- Deferred commits ---- */

static void resume_request(commit_req *req) {
    http_req *r = req->arg;
    MHD_resume_connection(r->conn);
}

int http_commit(http_req *r, void (*on_commit)(http_req *r)) {
    return http_commit_deletes(r, NULL, 0, on_commit);
}

int http_commit_deletes(http_req *r, const int64_t *seqs, size_t n,
                        void (*on_commit)(http_req *r)) {
    r->creq = (commit_req){.events = seqs ? NULL : r->events,
                           .nevents = seqs ? 0 : r->nevents,
                           .deletes = seqs,
                           .ndeletes = n,
                           .done = resume_request,
                           .arg = r};
    r->on_commit = on_commit;
    r->suspended = true;
    MHD_suspend_connection(r->conn);
    if (commit_submit(r->srv->commit, &r->creq)) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
        r->retry_after = 1;
        http_reply_error(r, "unavailable", NULL, "the server is shutting down; retry");
        return -1;
    }
    return 0;
}

/* ---- The libmicrohttpd callbacks ---- */

int http_reply_header(http_req *r, const char *name, const char *value) {
    if (r->nresp_headers == HTTP_MAX_REPLY_HEADERS) return -1;
    r->resp_headers[2 * r->nresp_headers] = name;
    r->resp_headers[2 * r->nresp_headers++ + 1] = value;
    return 0;
}

static enum MHD_Result send_reply(http_req *r) {
    if (!r->status) http_reply_error(r, "internal", NULL, "the handler gave no reply");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->resp_len, r->resp_body, MHD_RESPMEM_MUST_FREE);
    if (!resp) return MHD_NO;
    r->resp_body = NULL; /* MHD owns it now */
    if (r->resp_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->resp_type);
    cors_headers(r, resp);
    for (size_t i = 0; i < r->nresp_headers; i++)
        MHD_add_response_header(resp, r->resp_headers[2 * i], r->resp_headers[2 * i + 1]);
    if (r->retry_after > 0) {
        char s[16];
        snprintf(s, sizeof s, "%d", r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, s);
    }
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static http_req *request_new(http_server *srv, struct MHD_Connection *conn, const char *url,
                             const char *method) {
    http_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->srv = srv;
    r->conn = conn;
    r->method = method;
    r->path = url;
    r->key_id = -1;
    r->start_ns = clock_mono_ns();
    r->received_ms = clock_now_ms();
    buf_init(&r->extra, 0);
    bool known;
    r->route = route_find(r, &known);
    buf_init(&r->body, r->route ? r->route->max_body : 0);
    char methods[64];
    if (!r->route && strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0 &&
        cors_path(r, methods, sizeof methods)) {
        r->preflight = true; /* cors_headers() adds the answer */
        http_reply_take(r, 204, NULL, NULL, 0);
    } else if (!r->route)
        http_reply_error(r, known ? "method_not_allowed" : "not_found", NULL,
                         known ? "%s is not allowed on %.200s" : "no such endpoint: %s %.200s",
                         method, url);
    atomic_fetch_add(&srv->active, 1);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    http_server *srv = cls;
    http_req *r = *con_cls;
    if (!r) {
        r = *con_cls = request_new(srv, conn, url, method);
        if (!r) return MHD_NO;
        /* A body declared over the cap is refused before it is read when the client waits for
         * "100 Continue", or when it is too big to be worth reading. Otherwise it is read and
         * dropped: closing with data unread can make the client's TCP stack discard the reply
         * (and an SDK that sees a reset instead of a 413 would retry the batch for ever). */
        const char *cl = http_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *expect = http_header(r, MHD_HTTP_HEADER_EXPECT);
        unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
        if (r->route && declared > r->route->max_body &&
            ((expect && strcasecmp(expect, "100-continue") == 0) ||
             declared > r->route->max_body + HTTP_DRAIN_MAX)) {
            r->body_too_big = true;
            http_reply_error(r, "body_too_large", NULL, "the body is larger than %zu bytes",
                             r->route->max_body);
            return send_reply(r);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        /* A body past the cap is read and dropped, up to HTTP_DRAIN_MAX, so the client still gets
         * its 413; past that the request ends now and the connection closes. */
        if (!r->body_too_big && buf_append(&r->body, upload, *upload_size)) {
            r->body_too_big = true;
            buf_free(&r->body);
        }
        if (r->body_too_big && (r->dropped += *upload_size) > HTTP_DRAIN_MAX) {
            http_reply_error(r, "body_too_large", NULL, "the body is larger than %zu bytes",
                             r->route->max_body);
            *upload_size = 0;
            return send_reply(r);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->suspended) { /* resumed by the committer */
        r->suspended = false;
        r->on_commit(r);
        if (r->suspended) return MHD_YES; /* it started another commit */
        return send_reply(r);
    }
    if (r->status) return send_reply(r);
    if (atomic_load(&srv->draining) && r->route->max_body) {
        r->retry_after = 1;
        http_reply_error(r, "unavailable", NULL, "the server is shutting down; retry");
        return send_reply(r);
    }
    if (r->body_too_big) {
        http_reply_error(r, "body_too_large", NULL, "the body is larger than %zu bytes",
                         r->route->max_body);
        return send_reply(r);
    }
    if (r->route->scope) {
        parse_authorization(r);
        /* Refuse a bad key before reading the body; the handler charges the events later. */
        if ((r->route->scope == KEY_ADMIN || r->auth_key) && http_authorize(r, NULL, 0))
            return send_reply(r);
    }
    r->route->handler(r);
    if (r->suspended) return MHD_YES;
    return send_reply(r);
}

static void log_request(http_req *r, uint64_t dur_us) {
    buf f = BUF_INIT(4096);
    buf_puts(&f, "\"method\":\"");
    buf_json_escape(&f, r->method, strlen(r->method));
    buf_puts(&f, "\",\"path\":\"");
    buf_json_escape(&f, r->path, strnlen(r->path, 256));
    buf_printf(&f, "\",\"status\":%d,\"us\":%llu,\"bytes_in\":%zu", r->status,
               (unsigned long long)dur_us, r->body.len);
    if (r->events_received) buf_printf(&f, ",\"events\":%zu", r->events_received);
    if (r->key_id >= 0) buf_printf(&f, ",\"key\":%lld", (long long)r->key_id);
    if (r->error_code) buf_printf(&f, ",\"error\":\"%s\"", r->error_code);
    log_emit(LOG_INFO, "request", buf_str(&f));
    buf_free(&f);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    http_server *srv = cls;
    http_req *r = *con_cls;
    if (!r) return;
    uint64_t dur_us = (clock_mono_ns() - r->start_ns) / 1000;
    metrics_count_request(r->route ? (int)(r->route - http_routes) : -1, r->status, dur_us);
    if (srv->cfg.access_log) log_request(r, dur_us);
    for (size_t i = 0; i < r->nevents; i++)
        ev_event_free(&r->events[i]);
    free(r->events);
    buf_free(&r->body);
    buf_free(&r->inflated);
    buf_free(&r->extra);
    free(r->resp_body);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->active, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_emit(LOG_WARN, msg, "\"source\":\"libmicrohttpd\"");
}

/* ---- Start and stop ---- */

/* "127.0.0.1:8080", "[::1]:8080", ":8080" (every IPv4 address). */
static int parse_listen(const char *s, struct sockaddr_storage *ss, bool *v6, char *err, size_t n) {
    memset(ss, 0, sizeof *ss);
    const char *colon = strrchr(s, ':');
    char host[100];
    if (!colon || colon - s >= (long)sizeof host) goto bad;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) goto bad;
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        host[hl - 1] = '\0';
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1) goto bad;
        *v6 = true;
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_ANY);
    if (hl && inet_pton(AF_INET, host, &a->sin_addr) != 1) goto bad;
    *v6 = false;
    return 0;
bad:
    snprintf(err, n, "listen: \"%s\" is not ADDR:PORT (e.g. 127.0.0.1:8080 or [::1]:8080)", s);
    return -1;
}

http_server *http_start(const cfg *c, store *s, char *err, size_t errlen) {
    struct sockaddr_storage addr;
    bool v6;
    if (parse_listen(c->listen, &addr, &v6, err, errlen)) return NULL;
    http_server *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->cfg = *c;
    srv->store = s;
    srv->keys = keys_load(s, c->rate_limit, err, errlen);
    if (!srv->keys) goto fail;
    /* The engine replays the log before the committer starts (it may finish an erasure), while
     * the committer's indexes load from the same log on another thread. */
    int64_t window_ms = (int64_t)(c->dedup_hours * 3600 * 1000);
    commit_preload *indexes = commit_preload_start(s, window_ms);
    eng_opts eo = {.default_country = c->default_country};
    srv->engine = eng_open(s, &eo, err, errlen);
    if (!srv->engine) {
        commit_preload_cancel(indexes);
        goto fail;
    }
    commit_opts co = {.dedup_window_ms = window_ms,
                      .apply = eng_apply,
                      .apply_arg = srv->engine,
                      .preload = indexes};
    srv->commit = commit_start(s, &co, err, errlen);
    if (!srv->commit) goto fail;

    unsigned threads =
        c->threads > 0 ? (unsigned)c->threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_TURBO | (v6 ? MHD_USE_IPv6 : 0);
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        srv, MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)c->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * KB), MHD_OPTION_LISTEN_BACKLOG_SIZE,
        1024u, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, errlen, "cannot listen on %s: %s", c->listen, strerror(errno));
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : 0;
    return srv;
fail:
    commit_stop(srv->commit);
    eng_close(srv->engine);
    keys_free(srv->keys);
    free(srv);
    return NULL;
}

int http_port(const http_server *srv) {
    return srv->port;
}

void http_stop(http_server *srv, int timeout_ms) {
    atomic_store(&srv->draining, true);
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon); /* stop accepting; in-flight requests go on */
    uint64_t deadline = clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (atomic_load(&srv->active) > 0 && clock_mono_ns() < deadline)
        usleep(2000);
    if (atomic_load(&srv->active) > 0)
        log_warn("stop: %d requests still in flight after %d ms", atomic_load(&srv->active),
                 timeout_ms);
    MHD_stop_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    commit_stop(srv->commit);
    eng_close(srv->engine);
    keys_free(srv->keys);
    free(srv);
}
