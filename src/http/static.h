/* static — the files engaged serves itself: the browser tracker (/sdk/engaged.js) and, under
 * `engaged demo` only, the demo storefront (/demo/) with the few endpoints it calls.
 *
 * The files live in web/ and are compiled into the binary: scripts/embed_web.py (run by meson)
 * writes each file's bytes, a gzip copy made once at build time (level 9, none when it would not
 * be smaller) and a strong ETag (the first 16 hex digits of its SHA-256) into a generated table,
 * web_assets.c. So a deployment stays one binary, no request touches the disk, and nothing is
 * compressed per request.
 *
 * A request for an asset gets the gzip copy when its Accept-Encoding allows gzip, 304 Not Modified
 * when its If-None-Match names the ETag of either copy, and headers per class of path (the table
 * in static.c): /sdk/ is public for a day (the URL carries no version, so a new engaged reaches
 * browsers within a day, and revalidating costs a 304); /demo/ is revalidated every time and its
 * pages carry a strict Content-Security-Policy (script-src 'self'), which the tracker and the
 * storefront must work under.
 *
 * Demo mode is the one piece of process-wide state here: `engaged demo` turns it on before the
 * server starts, and it never goes off. Without it (`engaged serve`) everything under /demo is
 * 404 not_found, because the demo endpoints read profiles and change stock without any key. */
#ifndef ENGAGED_STATIC_H
#define ENGAGED_STATIC_H

#include <stdbool.h>
#include <stddef.h>

typedef struct static_asset {
    const char *path;          /* the URL path, "/sdk/engaged.js" */
    const unsigned char *data; /* the file as written in web/ */
    size_t len;
    const unsigned char *gz; /* the gzip copy, NULL when it would not be smaller */
    size_t gz_len;
    const char *etag;    /* strong and quoted: "\"9f86d081884c7d65\"" */
    const char *etag_gz; /* the gzip copy's: "\"9f86d081884c7d65-gz\"" (NULL without one) */
} static_asset;

/* The generated table (web_assets.c), sorted by path, and its length. */
extern const static_asset static_assets[];
extern const size_t static_nassets;

/* The asset at path in table[0..n) (sorted by path: a binary search), or NULL. A path ending in
 * "/" means its index.html ("/demo/" is "/demo/index.html"). */
const static_asset *static_find(const static_asset *table, size_t n, const char *path);

/* The Content-Type for a path, by its extension (the table in static.c); text types say
 * charset=utf-8. "application/octet-stream" for an extension not in the table. */
const char *static_content_type(const char *path);

/* Whether an Accept-Encoding header value lets the reply be gzip (RFC 9110 §12.5.3): "gzip",
 * "x-gzip" or "*" with a q-value above 0, the coding's own entry winning over "*"'s. NULL, empty
 * or malformed: no. Case-insensitive; reads at most the first 1,024 bytes. */
bool static_accepts_gzip(const char *accept_encoding);

/* Whether an If-None-Match header value names etag (weak comparison, RFC 9110 §13.1.2: a "W/"
 * prefix is ignored; "*" matches anything). A list is comma-separated quoted tags; a malformed one
 * matches nothing. */
bool static_etag_match(const char *if_none_match, const char *etag);

/* What to send for an asset: status 200 with the chosen copy, or 304 with no body. */
typedef struct static_choice {
    int status;
    bool gzip;                 /* the body is the gzip copy: Content-Encoding: gzip */
    const char *etag;          /* the ETag of the copy sent (or that would have been) */
    const unsigned char *body; /* NULL for 304 */
    size_t len;
} static_choice;

/* Decides the answer from the request's Accept-Encoding and If-None-Match (either may be NULL).
 * Pure; O(header length). */
static_choice static_choose(const static_asset *a, const char *accept_encoding,
                            const char *if_none_match);

/* Turns demo mode on (before the server starts). */
void static_demo_enable(void);
bool static_demo_enabled(void);

#endif
