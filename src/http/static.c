/* static — serving the embedded web/ files, and the demo storefront's endpoints (static.h). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"
#include "http/static.h"

/* Header values are read up to this many bytes; browsers send a few dozen. */
#define STATIC_HEADER_MAX 1024

/* ---- The asset table ---- */

const static_asset *static_find(const static_asset *table, size_t n, const char *path) {
    char index[256];
    size_t len = strlen(path);
    if (len && path[len - 1] == '/') {
        if (len + sizeof "index.html" > sizeof index) return NULL;
        memcpy(index, path, len);
        memcpy(index + len, "index.html", sizeof "index.html");
        path = index;
    }
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(path, table[mid].path);
        if (c == 0) return &table[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static const struct {
    const char *ext, *type;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
};

const char *static_content_type(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    for (size_t i = 0; dot && i < sizeof content_types / sizeof *content_types; i++)
        if (strcasecmp(dot, content_types[i].ext) == 0) return content_types[i].type;
    return "application/octet-stream";
}

/* ---- Content negotiation ---- */

static bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

/* A qvalue ("0", "0.5", "1.000") in thousandths, or -1 when s[0..n) is not one. */
static int parse_qvalue(const char *s, size_t n) {
    if (n == 0 || (s[0] != '0' && s[0] != '1')) return -1;
    int q = (s[0] - '0') * 1000;
    if (n == 1) return q;
    if (s[1] != '.' || n > 5) return -1;
    int scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9') return -1;
        q += (s[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

/* The q of one Accept-Encoding element e[0..n) ("gzip;q=0.5"), 1000 without one, -1 if
 * malformed; its coding name is written to name (lower case, "" when too long). */
static int coding_q(const char *e, size_t n, char *name, size_t room) {
    size_t i = 0, nl = 0;
    while (i < n && e[i] != ';' && !is_ows(e[i])) {
        if (nl + 1 < room) name[nl++] = (char)(e[i] >= 'A' && e[i] <= 'Z' ? e[i] + 32 : e[i]);
        i++;
    }
    name[nl] = '\0';
    if (i - nl > 0) name[0] = '\0'; /* longer than any coding we look for */
    int q = 1000;
    while (i < n) { /* parameters: OWS ";" OWS name "=" value */
        while (i < n && is_ows(e[i]))
            i++;
        if (i == n) break;
        if (e[i++] != ';') return -1;
        while (i < n && is_ows(e[i]))
            i++;
        size_t start = i;
        while (i < n && e[i] != ';' && !is_ows(e[i]))
            i++;
        const char *eq = memchr(e + start, '=', i - start);
        if (!eq || eq == e + start) return -1; /* a parameter is name=value */
        if (eq == e + start + 1 && (e[start] == 'q' || e[start] == 'Q'))
            q = parse_qvalue(eq + 1, (size_t)(e + i - eq - 1));
        if (q < 0) return -1;
    }
    return q;
}

bool static_accepts_gzip(const char *ae) {
    if (!ae) return false;
    size_t len = strnlen(ae, STATIC_HEADER_MAX);
    int gzip = -1, star = -1;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && ae[end] != ',')
            end++;
        size_t a = i, b = end;
        while (a < b && is_ows(ae[a]))
            a++;
        while (b > a && is_ows(ae[b - 1]))
            b--;
        char name[8];
        int q = a < b ? coding_q(ae + a, b - a, name, sizeof name) : -1;
        if (q >= 0 && (strcmp(name, "gzip") == 0 || strcmp(name, "x-gzip") == 0))
            gzip = q > gzip ? q : gzip;
        else if (q >= 0 && strcmp(name, "*") == 0)
            star = q;
        i = end + 1;
    }
    return (gzip >= 0 ? gzip : star) > 0;
}

bool static_etag_match(const char *inm, const char *etag) {
    if (!inm || !etag) return false;
    size_t len = strnlen(inm, STATIC_HEADER_MAX), elen = strlen(etag), i = 0;
    while (i < len && is_ows(inm[i]))
        i++;
    if (inm[i] == '*') {
        size_t j = i + 1;
        while (j < len && is_ows(inm[j]))
            j++;
        return j == len;
    }
    while (i < len) {
        while (i < len && (is_ows(inm[i]) || inm[i] == ','))
            i++;
        if (i == len) break;
        if (len - i >= 2 && inm[i] == 'W' && inm[i + 1] == '/') i += 2;
        if (i == len || inm[i] != '"') return false;
        size_t start = i++;
        while (i < len && inm[i] != '"')
            i++;
        if (i == len) return false; /* unterminated */
        i++;
        if (i - start == elen && memcmp(inm + start, etag, elen) == 0) return true;
        while (i < len && is_ows(inm[i]))
            i++;
        if (i < len && inm[i] != ',') return false;
    }
    return false;
}

static_choice static_choose(const static_asset *a, const char *accept_encoding,
                            const char *if_none_match) {
    static_choice c = {200, false, a->etag, a->data, a->len};
    if (a->gz && static_accepts_gzip(accept_encoding))
        c = (static_choice){200, true, a->etag_gz, a->gz, a->gz_len};
    if (static_etag_match(if_none_match, a->etag) ||
        (a->etag_gz && static_etag_match(if_none_match, a->etag_gz))) {
        c.status = 304;
        c.body = NULL;
        c.len = 0;
    }
    return c;
}

/* ---- Demo mode ---- */

static atomic_bool demo_mode;

void static_demo_enable(void) {
    atomic_store(&demo_mode, true);
}

bool static_demo_enabled(void) {
    return atomic_load(&demo_mode);
}

/* ---- Serving assets ---- */

/* Pages of the demo: everything from engaged itself, nothing inline, no framing. */
#define DEMO_CSP                                                                                   \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "            \
    "object-src 'none'"

/* How each class of path is served. */
static const struct static_class {
    const char *prefix;
    const char *cache_control;
    bool demo_only;
    const char *csp; /* on HTML pages, or NULL */
} classes[] = {
    {"/sdk/", "public, max-age=86400", false, NULL},
    {"/demo/", "no-cache", true, DEMO_CSP},
};

static const struct static_class *class_of(const char *path) {
    for (size_t i = 0; i < sizeof classes / sizeof *classes; i++)
        if (strncmp(path, classes[i].prefix, strlen(classes[i].prefix)) == 0) return &classes[i];
    return NULL;
}

static void not_found(http_req *r) {
    /* The router's own words, so `engaged serve` shows no trace of the demo. */
    http_reply_error(r, "not_found", NULL, "no such endpoint: %s %.200s", r->method, r->path);
}

void static_handler(http_req *r) {
    if (strcmp(r->path, "/demo") == 0) {
        if (!static_demo_enabled()) {
            not_found(r);
            return;
        }
        http_reply_header(r, "Location", "/demo/");
        http_reply_take(r, 301, NULL, NULL, 0);
        return;
    }
    const struct static_class *cls = class_of(r->path);
    const static_asset *a = cls ? static_find(static_assets, static_nassets, r->path) : NULL;
    if (!a || (cls->demo_only && !static_demo_enabled())) {
        not_found(r);
        return;
    }
    static_choice c =
        static_choose(a, http_header(r, "Accept-Encoding"), http_header(r, "If-None-Match"));
    const char *type = static_content_type(a->path);
    http_reply_header(r, "ETag", c.etag);
    http_reply_header(r, "Cache-Control", cls->cache_control);
    http_reply_header(r, "Vary", "Accept-Encoding");
    http_reply_header(r, "X-Content-Type-Options", "nosniff");
    if (cls->csp && strncmp(type, "text/html", 9) == 0)
        http_reply_header(r, "Content-Security-Policy", cls->csp);
    if (c.status == 304) {
        http_reply_take(r, 304, NULL, NULL, 0);
        return;
    }
    if (c.gzip) http_reply_header(r, "Content-Encoding", "gzip");
    /* The reply owns its body (send_reply frees it): a copy of a few KB. */
    char *body = malloc(c.len ? c.len : 1);
    if (!body) {
        http_reply_error(r, "internal", NULL, "out of memory");
        return;
    }
    memcpy(body, c.body, c.len);
    http_reply_take(r, 200, type, body, c.len);
}

/* ---- The demo storefront's endpoints (demo mode only) ----
 *
 * What a shop's own server would do for its pages: tell them the write key, sign the user id at
 * login, and (in the demo's "shop admin" and "your profile" pages) change stock and show the
 * visitor's profile as an admin sees it. The reads and the stock change are the admin API's own
 * operations (c360.c), run through the same handler. */

/* Refuses a query parameter not in known (NULL-terminated). */
typedef struct param_check {
    http_req *r;
    const char *const *known;
} param_check;

static int check_param(void *arg, const char *key, const char *value) {
    param_check *pc = arg;
    for (const char *const *k = pc->known; *k; k++)
        if (strcmp(*k, key) == 0) return 0;
    http_reply_error(pc->r, "invalid_field", key, "unknown parameter %.64s", key);
    return 1;
}

static int only_params(http_req *r, const char *const *known) {
    param_check pc = {r, known};
    return http_query_each(r, check_param, &pc) ? -1 : 0;
}

static void demo_config(http_req *r) {
    static const char *const none[] = {NULL};
    if (only_params(r, none)) return;
    const cfg *c = http_cfg(r);
    buf b = BUF_INIT(0);
    buf_puts(&b, "{\"writeKey\":\"");
    buf_json_escape(&b, c->write_key, strlen(c->write_key));
    buf_printf(&b, "\",\"signing\":%s,\"version\":\"%s\"}", *c->signing_secret ? "true" : "false",
               ENGAGED_VERSION);
    http_reply_json(r, 200, &b);
}

/* GET /demo/api/sign?user_id=U → {"user_id","signature"}: hex HMAC-SHA256(signing_secret, U), what
 * the shop's server renders into its pages after login (docs/recommendations.md). */
static void demo_sign(http_req *r) {
    static const char *const known[] = {"user_id", NULL};
    if (only_params(r, known)) return;
    const char *user = http_query(r, "user_id");
    const char *secret = http_cfg(r)->signing_secret;
    if (!user || !*user) {
        http_reply_error(r, "missing_field", "user_id", "user_id is required");
        return;
    }
    if (strlen(user) > 255) {
        http_reply_error(r, "invalid_field", "user_id", "user_id is longer than 255 bytes");
        return;
    }
    if (!*secret) {
        http_reply_error(r, "conflict", NULL,
                         "no signing_secret is set (--signing-secret), so nothing can be signed");
        return;
    }
    char sig[HTTP_SIGNATURE_LEN + 1];
    if (http_sign_user(secret, user, sig)) {
        http_reply_error(r, "internal", NULL, "HMAC failed");
        return;
    }
    buf b = BUF_INIT(0);
    buf_puts(&b, "{\"user_id\":\"");
    buf_json_escape(&b, user, strlen(user));
    buf_puts(&b, "\",\"signature\":\"");
    buf_puts(&b, sig);
    buf_puts(&b, "\"}");
    http_reply_json(r, 200, &b);
}

/* GET /demo/api/profile?anonymous_id=|user_id=: the admin API's profile lookup. */
static void demo_profile(http_req *r) {
    static const char *const known[] = {"anonymous_id", "user_id", NULL};
    if (only_params(r, known)) return;
    c360_handler(r);
}

/* PATCH /demo/api/products/{id} {"stock": N}: the shop admin's one control, the admin API's
 * catalogue patch limited to stock. */
static void demo_stock(http_req *r) {
    const char *enc = http_header(r, "Content-Encoding");
    if (enc && *enc && strcasecmp(enc, "identity") != 0) {
        http_reply_error(r, "unsupported_encoding", NULL, "send the body uncompressed");
        return;
    }
    json_t *body = http_json_object(r);
    if (!body) return;
    const char *key;
    json_t *v;
    ev_error e = {0};
    json_object_foreach(body, key, v) {
        if (strcmp(key, "stock") != 0) {
            ev_error_set(&e, "invalid_field", key,
                         "%.64s cannot be changed here: the demo's shop admin sets stock only",
                         key);
            break;
        }
    }
    json_t *stock = json_object_get(body, "stock");
    if (!e.code && !stock)
        ev_error_set(&e, "missing_field", "stock", "stock is required, e.g. {\"stock\":0}");
    else if (!e.code && (!json_is_integer(stock) || json_integer_value(stock) < 0 ||
                         json_integer_value(stock) > 1000000000))
        ev_error_set(&e, "invalid_field", "stock",
                     "stock must be a whole number from 0 to 1000000000");
    json_decref(body);
    if (e.code) {
        http_reply_ev_error(r, &e);
        return;
    }
    c360_handler(r); /* reads the (identity-encoded) body again */
}

static const struct demo_route {
    const char *name; /* the route's name in the routes table (server.c) */
    void (*run)(http_req *r);
} demo_routes[] = {
    {"/demo/api/config", demo_config},    {"/demo/api/sign", demo_sign},
    {"/demo/api/profile", demo_profile},  {"/demo/api/profiles/{id}/events", c360_handler},
    {"/demo/api/products", c360_handler}, {"/demo/api/products/{id}", demo_stock},
};

void static_demo_api(http_req *r) {
    if (!static_demo_enabled()) {
        not_found(r);
        return;
    }
    for (size_t i = 0; i < sizeof demo_routes / sizeof *demo_routes; i++) {
        if (strcmp(demo_routes[i].name, r->route->name) == 0) {
            demo_routes[i].run(r);
            return;
        }
    }
    http_reply_error(r, "internal", NULL, "route %s has no demo handler", r->route->path);
}
