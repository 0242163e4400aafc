/* http — engaged's HTTP API: the server, its routes table, and what handlers share.
 *
 * Threads: libmicrohttpd runs a pool of I/O threads (epoll, one per core by default). A handler
 * runs on one of them, parses and validates, and either answers at once or hands events to the
 * committer and suspends the connection; the committer resumes it when the events are durable, and
 * the reply is sent then. So no I/O thread ever waits for an fsync.
 *
 * Conventions (docs/api.md): JSON bodies; errors are {"error":{"code","message","field"?}} with a
 * machine-readable code from the table in reply.c; times are RFC 3339 UTC; lists page with an
 * opaque cursor. Every request has a body cap (the route's) and a time limit (the connection
 * timeout). */
#ifndef ENGAGED_HTTP_H
#define ENGAGED_HTTP_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest/ev.h"
#include "keys.h"
#include "store/commit.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/config.h"

typedef struct http_server http_server;
typedef struct http_req http_req;
typedef void (*http_handler)(http_req *r);

/* One row per endpoint. A path segment "*" matches any one segment (captured in http_req.params).
 */
typedef struct http_route {
    const char *method;
    const char *path;
    http_handler handler;
    key_scope scope;  /* 0: no key needed */
    size_t max_body;  /* bytes, after inflating; 0: no body allowed */
    const char *name; /* the metrics label */
    const char *op;   /* the engine operation the route runs (c360.c), or NULL */
} http_route;

#define HTTP_MAX_PARAMS 4
#define HTTP_MAX_REPLY_HEADERS 8

struct http_req {
    http_server *srv;
    struct MHD_Connection *conn;
    const http_route *route;
    const char *method, *path;
    const char *params[HTTP_MAX_PARAMS]; /* "*" segments of the path, NUL-terminated copies */
    char path_copy[512];
    buf body;              /* the raw (maybe compressed) request body, capped */
    buf inflated;          /* the body after Content-Encoding, when there was one */
    const char *body_text; /* what http_body() gave, once it has: it inflates only once */
    size_t body_text_len;
    bool body_too_big;
    size_t dropped;       /* bytes of an oversized body read and thrown away */
    const char *auth_key; /* from Authorization (Basic user or Bearer), NULL if absent */
    size_t auth_len;
    char auth_buf[KEYS_MAX_LEN + 1];
    uint64_t start_ns;
    int64_t received_ms; /* the engine clock when the request arrived */
    int64_t key_id;      /* the authenticated key, -1 for none */

    /* The reply, set once by http_reply*(); sent when the handler returns (or on resume). */
    int status;
    char *resp_body;
    size_t resp_len;
    const char *resp_type;
    int retry_after;        /* seconds, for 429/503; 0: no header */
    const char *error_code; /* for logs and metrics */

    /* Deferred work: a handler that started a commit (http_commit) is resumed with the result. */
    bool suspended;
    commit_req creq;
    ev_event *events;
    size_t nevents;
    void (*on_commit)(http_req *r); /* builds the reply once creq has its result */
    buf extra;                      /* handler scratch that outlives the first call (rejections) */
    size_t events_received;         /* for the access log */

    /* CORS (server.c): set for the reply's headers. */
    bool preflight;      /* an OPTIONS preflight on a browser path, answered 204 */
    bool origin_refused; /* the key's allow-list refused the Origin: no allow headers */

    /* More reply headers (static.c: caching, Content-Encoding, CSP), as name/value pairs. */
    const char *resp_headers[2 * HTTP_MAX_REPLY_HEADERS];
    size_t nresp_headers;
};

/* ---- The server (cmd_serve) ---- */

/* Starts listening per c, using s for storage. Returns NULL with a reason in err. */
http_server *http_start(const cfg *c, store *s, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
int http_port(const http_server *srv);
/* Stops accepting, waits (at most timeout_ms) for requests in flight, commits what is queued and
 * frees everything but the store. */
void http_stop(http_server *srv, int timeout_ms);

/* ---- For handlers ---- */

store *http_store(http_req *r);
keyring *http_keys(http_req *r);
const cfg *http_cfg(http_req *r);
const commit_stats *http_commit_stats(http_req *r);
const char *http_header(http_req *r, const char *name);
const char *http_query(http_req *r, const char *name);
/* A decimal integer query value within [min, max] (limits, cursors): true and *out set, or false
 * for NULL, "", anything not wholly a number, or out of range. */
bool http_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);
/* Reads the query arguments into `into` as strings. An argument not in known (NULL-terminated)
 * is refused with 400 invalid_field naming it and listing the known ones; with once, so is one
 * given twice (else the last wins). Returns 0, or -1 after replying. */
int http_query_args(http_req *r, const char *const *known, bool once, json_t *into);
/* Calls fn for each query argument; fn returns nonzero to stop, which is then returned. */
int http_query_each(http_req *r, int (*fn)(void *arg, const char *key, const char *value),
                    void *arg);

/* Sets the reply. body: takes ownership of a malloc'd buffer. */
void http_reply_take(http_req *r, int status, const char *content_type, char *body, size_t len);
/* Adds a header to the reply. name and value are not copied: they must outlive the request
 * (literals, the asset table). Returns 0, or -1 when HTTP_MAX_REPLY_HEADERS are set already. */
int http_reply_header(http_req *r, const char *name, const char *value);
/* Replies with b's contents as JSON (b is emptied). */
void http_reply_json(http_req *r, int status, buf *b);
/* Replies {"error":{"code":code,"message":...,"field":field}} with the status that code maps to in
 * reply.c. field may be NULL. */
void http_reply_error(http_req *r, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* invalid_json, with the byte position, line and column jansson reported. */
void http_reply_json_error(http_req *r, const json_error_t *je);
/* An error whose status the caller decides (the engine's domain refusals: 409 "expired", ...). */
void http_reply_error_status(http_req *r, int status, const ev_error *e);
/* The same, from an ev_error. */
void http_reply_ev_error(http_req *r, const ev_error *e);
/* The HTTP status for an error code (400 for an unknown one). */
int http_error_status(const char *code);
/* The body, inflated if Content-Encoding says so, capped at the route's max_body. Returns 0 and
 * sets *out (owned by r; valid until the request ends), or replies with the error and returns -1.
 * A second call returns what the first gave, without inflating again. */
int http_body(http_req *r, const char **out, size_t *len);

/* Checks the request's key: the Authorization header's, else body_key (a body's writeKey; may be
 * NULL), for the route's scope, taking nevents from the key's rate; on a browser route, also the
 * request's Origin against the key's allow-list (http_cors_check). Returns 0, or replies 401, 403
 * or 429 and returns -1. */
int http_authorize(http_req *r, const char *body_key, double nevents);

/* CORS. Browser routes are the routes a write key may call (scope KEY_WRITE): their replies carry
 * Access-Control-Allow-Origin with the request's Origin (and Vary: Origin), except a refusal of
 * that origin; admin routes never carry it, so no page can read what an admin key gets. An OPTIONS
 * preflight on a browser path is answered 204 whatever the origin (it carries no key); the key's
 * allow-list is enforced on the request itself, here. No reply allows credentials: no SDK sends
 * cookies to its collection host.
 *
 * Checks the request's Origin, if any, against the allow-list of r->key_id (http_authorize() calls
 * this on browser routes). Returns 0; or replies 403 origin_not_allowed naming the origin, and
 * returns -1. */
int http_cors_check(http_req *r);

/* The body (inflated as http_body() does) parsed as a JSON object, which the caller decrefs; or
 * NULL after replying invalid_json (with the position) or invalid_body (valid JSON of another
 * shape). Every endpoint that takes a JSON object reads its body through this. */
json_t *http_json_object(http_req *r);
/* The same for a body of any JSON shape (a bulk upsert is an array). */
json_t *http_json_value(http_req *r);

/* Hands r->events[0..nevents) (owned by r) to the committer and suspends the request; on_commit is
 * called when r->creq has its result, and must reply — or start another commit, which suspends the
 * request again. Returns 0, or replies 503 and returns -1. */
int http_commit(http_req *r, void (*on_commit)(http_req *r));
/* The same for deleting rows (seqs, kept alive by the caller until on_commit) and no events. */
int http_commit_deletes(http_req *r, const int64_t *seqs, size_t n, void (*on_commit)(http_req *r));
/* The engine (Customer 360 state). */
struct engine *http_engine(http_req *r);

/* ---- The route handlers (collect.c, admin.c, metrics.c) ---- */

void collect_single(http_req *r);
void collect_batch(http_req *r);
void collect_settings(http_req *r);      /* analytics.js's settings document */
void collect_source_config(http_req *r); /* RudderStack's source config */
void admin_events(http_req *r);
void admin_healthz(http_req *r);
void admin_clock(http_req *r);
void metrics_handler(http_req *r);
void c360_handler(http_req *r); /* every route with an op */
void reco_handler(http_req *r); /* GET /v1/recommendations */

/* The signature a write key's request for user_id must carry (reco.c): hex HMAC-SHA256 of the
 * user id under the signing secret, lower case, into hex. 0, or -1 if the digest failed. */
#define HTTP_SIGNATURE_LEN 64
int http_sign_user(const char *secret, const char *user_id, char hex[HTTP_SIGNATURE_LEN + 1]);
/* static.c: GET /sdk/engaged.js; in demo mode only, /demo/ and the storefront's endpoints. */
void static_handler(http_req *r);
void static_demo_api(http_req *r);
/* Counts a finished request for /metrics. route_index: into the routes table, -1 for unmatched. */
void metrics_count_request(int route_index, int status, uint64_t duration_us);
void metrics_count_events(size_t accepted, size_t duplicates, const char *const *rejected_codes,
                          size_t nrejected);

extern const http_route http_routes[];
extern const size_t http_nroutes;

#endif
