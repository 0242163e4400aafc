/* keys — API keys, their scopes, and the rate limit of each.
 *
 * Two scopes: a write key may only send events (it sits in web pages, so it is no secret); an admin
 * key may do everything. A key is shown once, when created, and stored only as its SHA-256 digest:
 * keys are 160 random bits, so a fast hash is enough, and a stolen database yields no key. Keys
 * given in ENGAGED_WRITE_KEY / ENGAGED_ADMIN_KEY are provisioned (stored hashed) at start.
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

#include "store/store.h"

typedef enum key_scope { KEY_WRITE = 1, KEY_ADMIN = 2 } key_scope;

/* "wk_" or "ak_" and 40 hex digits, and the NUL. */
#define KEYS_TEXT_LEN 44
/* The longest key accepted anywhere (provisioned keys may be longer than generated ones). */
#define KEYS_MAX_LEN 256

const char *keys_scope_name(key_scope s);
bool keys_scope_parse(const char *name, key_scope *out);

/* Creates a key in db and writes its text to out. rate: events per second, 0 for the server's
 * default. label may be NULL. Returns 0 or -1 (store_errmsg() says why). */
int keys_create(sqlite3 *db, key_scope scope, double rate, const char *label,
                char out[KEYS_TEXT_LEN]);
/* Stores key (given by the operator) with scope unless it is already there. 0 or -1. */
int keys_provision(sqlite3 *db, key_scope scope, const char *key);
/* Marks key id revoked. Returns 0, 1 when no such key, or -1. */
int keys_revoke(sqlite3 *db, int64_t id);
/* Prints one line per key (id, scope, prefix, rate, label, created, revoked). */
int keys_list(sqlite3 *db, FILE *out);

typedef struct keyring keyring;

typedef enum keys_verdict {
    KEYS_OK,           /* a known key with the needed scope, within its rate */
    KEYS_UNKNOWN,      /* no key, or not one we know (or revoked): 401 */
    KEYS_FORBIDDEN,    /* a known key without the needed scope: 403 */
    KEYS_RATE_LIMITED, /* over its rate: 429, retry_after set */
} keys_verdict;

/* Loads the keys of s; default_rate applies to keys created with rate 0. NULL on failure. */
keyring *keys_load(store *s, double default_rate, char *err, size_t errlen);
void keys_free(keyring *k);
/* Checks key (len bytes, need not be NUL-terminated) for scope `need` (an admin key satisfies
 * KEY_WRITE) and takes nevents from its rate bucket. *key_id is set for a known key. Thread-safe.
 */
keys_verdict keys_check(keyring *k, const char *key, size_t len, key_scope need, double nevents,
                        int64_t *key_id, int *retry_after_s);

/* Takes nevents from the bucket of a key keys_check() already accepted: KEYS_OK, KEYS_RATE_LIMITED,
 * or KEYS_UNKNOWN if it was revoked in between. Thread-safe; no hashing. */
keys_verdict keys_charge(keyring *k, int64_t key_id, double nevents, int *retry_after_s);

#endif
