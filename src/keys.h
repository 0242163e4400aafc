/* keys — API keys, their scopes, and the rate limit of each.
 *
 * Two scopes: a write key may only send events (it sits in web pages, so it is no secret); an admin
 * key may do everything. A key is shown once, when created, and stored only as its SHA-256 digest:
 * keys are 160 random bits, so a fast hash is enough, and a stolen database yields no key. Keys
 * given in ENGAGED_WRITE_KEY / ENGAGED_ADMIN_KEY are provisioned (stored hashed) at start.
 *
 * A write key may carry an allow-list of browser origins (`engaged keys create --origin URL`): a
 * request that sends an Origin header is then refused unless its origin is listed, and the HTTP
 * layer answers CORS for listed origins only. A write key without a list may be used from any
 * origin (so keys made before lists existed keep working); admin keys have none and are never
 * answered with CORS headers. The list is the `origins` column, added to older databases the first
 * time this module opens them.
 *
 * The server holds the keyring in memory. `engaged keys create` may add a key while the server
 * runs: a lookup that misses re-reads the table when SQLite says it changed (at most every 250 ms),
 * so a flood of bad keys costs one cheap check per 250 ms, not a query each. */
#ifndef ENGAGED_KEYS_H
#define ENGAGED_KEYS_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ingest/ev.h"
#include "store/store.h"

typedef enum key_scope { KEY_WRITE = 1, KEY_ADMIN = 2 } key_scope;

/* "wk_" or "ak_" and 40 hex digits, and the NUL. */
#define KEYS_TEXT_LEN 44
/* The longest key accepted anywhere (provisioned keys may be longer than generated ones). */
#define KEYS_MAX_LEN 256

const char *keys_scope_name(key_scope s);
bool keys_scope_parse(const char *name, key_scope *out);

/* The longest origin an allow-list holds ("https://" + a 253-byte host + ":65535" fits). */
#define KEYS_ORIGIN_MAX 270
/* The most origins one key may list. */
#define KEYS_MAX_ORIGINS 32

/* What a new key is. */
typedef struct keys_spec {
    key_scope scope;
    double rate;                /* events per second; 0: the server's default */
    const char *label;          /* NULL for none */
    const char *const *origins; /* write keys only: the browser origins allowed; none: any */
    size_t norigins;
} keys_spec;

/* Writes the normal form of a browser origin to out: "scheme://host[:port]" with scheme http or
 * https, in lower case, without the scheme's default port (:80, :443) or a trailing "/" — the form
 * browsers send in Origin. Refuses anything else (a path, query, fragment or userinfo, a wildcard,
 * another scheme, an empty or non-ASCII host, a bad port, more than KEYS_ORIGIN_MAX bytes): returns
 * -1 with err set (invalid_field, field "origin", the message quoting the value). */
int keys_origin_normalize(const char *origin, char out[KEYS_ORIGIN_MAX + 1], ev_error *err);

/* Creates a key in db as spec says and writes its text to out. Origins are stored normalised,
 * each once. Returns 0; or -1 with err set: invalid_field (field "origin") for a bad origin, more
 * than KEYS_MAX_ORIGINS, or origins on an admin key; internal when the database fails (the message
 * has SQLite's). */
int keys_create(sqlite3 *db, const keys_spec *spec, char out[KEYS_TEXT_LEN], ev_error *err);
/* Stores key (given by the operator) with scope unless it is already there. 0 or -1. */
int keys_provision(sqlite3 *db, key_scope scope, const char *key);
/* Marks key id revoked. Returns 0, 1 when no such key, or -1. */
int keys_revoke(sqlite3 *db, int64_t id);
/* Prints a header and one line per key: id, scope, prefix, rate, state, origins ("any" for a write
 * key without a list, "-" for an admin key, else the list joined by commas), label. */
int keys_list(sqlite3 *db, FILE *out);

typedef struct keyring keyring;

typedef enum keys_verdict {
    KEYS_OK,           /* a known key with the needed scope, within its rate */
    KEYS_UNKNOWN,      /* no key, or not one we know (or revoked): 401 */
    KEYS_FORBIDDEN,    /* a known key without the needed scope: 403 */
    KEYS_RATE_LIMITED, /* over its rate: 429, retry_after set */
} keys_verdict;

/* Loads the keys of s; default_rate applies to keys created with rate 0. Adds the origins column to
 * an older database through s's writer, so call it before the writer is handed to another thread.
 * NULL on failure. */
keyring *keys_load(store *s, double default_rate, char *err, size_t errlen);
void keys_free(keyring *k);
/* Checks key (len bytes, need not be NUL-terminated) for scope `need` (an admin key satisfies
 * KEY_WRITE) and takes nevents from its rate bucket. *key_id is set for a known key. Thread-safe.
 */
keys_verdict keys_check(keyring *k, const char *key, size_t len, key_scope need, double nevents,
                        int64_t *key_id, int *retry_after_s);

/* Whether a page at origin (an Origin header as sent; need not be normal) may use key_id: true
 * when the key has no allow-list or lists origin (compared case-insensitively), false when it
 * does not, or when key_id is unknown (revoked since it was checked). Thread-safe; costs one scan
 * of the key's list. */
bool keys_origin_allowed(keyring *k, int64_t key_id, const char *origin);
/* The scope of key_id, or 0 when it is unknown. Thread-safe. */
key_scope keys_scope_of(keyring *k, int64_t key_id);

/* Takes nevents from the bucket of a key keys_check() already accepted: KEYS_OK, KEYS_RATE_LIMITED,
 * or KEYS_UNKNOWN if it was revoked in between. Thread-safe; no hashing. */
keys_verdict keys_charge(keyring *k, int64_t key_id, double nevents, int *retry_after_s);

#endif
