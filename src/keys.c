#include "keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "http/ratelimit.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"

#define RELOAD_EVERY_MS 250

/* Rate limits and reload throttling follow real elapsed time, not the (possibly frozen) test clock.
 */
static int64_t mono_ms(void) {
    return (int64_t)(clock_mono_ns() / 1000000);
}

static const char *const scope_names[] = {[KEY_WRITE] = "write", [KEY_ADMIN] = "admin"};

const char *keys_scope_name(key_scope s) {
    return s == KEY_WRITE || s == KEY_ADMIN ? scope_names[s] : "?";
}

bool keys_scope_parse(const char *name, key_scope *out) {
    for (key_scope s = KEY_WRITE; s <= KEY_ADMIN; s++)
        if (strcmp(name, scope_names[s]) == 0) {
            *out = s;
            return true;
        }
    return false;
}

static void digest_hex(const char *key, size_t len, char hex[65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    static const char digits[] = "0123456789abcdef";
    EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

static int insert_key(sqlite3 *db, key_scope scope, const char *key, double rate, const char *label,
                      bool or_ignore) {
    char hex[65], prefix[12];
    digest_hex(key, strlen(key), hex);
    snprintf(prefix, sizeof prefix, "%.7s", key);
    sqlite3_stmt *st;
    const char *sql = or_ignore
                          ? "INSERT OR IGNORE INTO api_keys(scope, hash, prefix, rate, label, "
                            "created_at) VALUES (?1,?2,?3,?4,?5,?6)"
                          : "INSERT INTO api_keys(scope, hash, prefix, rate, label, "
                            "created_at) VALUES (?1,?2,?3,?4,?5,?6)";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    sqlite3_bind_text(st, 1, keys_scope_name(scope), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hex, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, rate);
    if (label) sqlite3_bind_text(st, 5, label, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, clock_now_ms());
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) log_error("keys: %s", sqlite3_errmsg(db));
    return rc == SQLITE_DONE ? 0 : -1;
}

int keys_create(sqlite3 *db, key_scope scope, double rate, const char *label,
                char out[KEYS_TEXT_LEN]) {
    unsigned char raw[20];
    hash_random(raw, sizeof raw);
    memcpy(out, scope == KEY_ADMIN ? "ak_" : "wk_", 3);
    for (int i = 0; i < 20; i++)
        snprintf(out + 3 + 2 * i, 3, "%02x", raw[i]);
    return insert_key(db, scope, out, rate, label, false);
}

int keys_provision(sqlite3 *db, key_scope scope, const char *key) {
    return insert_key(db, scope, key, 0, "provisioned from the environment", true);
}

int keys_revoke(sqlite3 *db, int64_t id) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            db, "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", -1, &st,
            NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, clock_now_ms());
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return -1;
    return sqlite3_changes(db) ? 0 : 1;
}

int keys_list(sqlite3 *db, FILE *out) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, scope, prefix, rate, coalesce(label,''), created_at, "
                           "revoked_at FROM api_keys ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    fprintf(out, "%-5s %-6s %-10s %-8s %-8s %s\n", "ID", "SCOPE", "PREFIX", "RATE", "STATE",
            "LABEL");
    while (sqlite3_step(st) == SQLITE_ROW) {
        char rate[32];
        double r = sqlite3_column_double(st, 3);
        if (r > 0)
            snprintf(rate, sizeof rate, "%g/s", r);
        else
            snprintf(rate, sizeof rate, "default");
        fprintf(out, "%-5lld %-6s %-10s %-8s %-8s %s\n", (long long)sqlite3_column_int64(st, 0),
                sqlite3_column_text(st, 1), sqlite3_column_text(st, 2), rate,
                sqlite3_column_type(st, 6) == SQLITE_NULL ? "active" : "revoked",
                sqlite3_column_text(st, 4));
    }
    sqlite3_finalize(st);
    return 0;
}

/* ---- The in-memory keyring ---- */

typedef struct key_entry {
    int64_t id;
    key_scope scope;
    char hex[65];
    rl_bucket bucket;
} key_entry;

struct keyring {
    store *store;
    double default_rate;
    pthread_rwlock_t lock; /* readers: keys_check; writer: reload */
    key_entry *entries;
    size_t n;
    pthread_mutex_t reload_lock; /* serialises reloads and guards db and the fields below */
    sqlite3 *db;                 /* a private connection: data_version is per connection */
    int64_t data_version;
    _Atomic int64_t checked_ms; /* mono_ms() of the last look at data_version */
};

static int64_t data_version(sqlite3 *db) {
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Reads the active keys; keeps the rate state of keys that were already loaded. Caller holds
 * reload_lock. */
static int reload(keyring *k) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(k->db,
                           "SELECT id, scope, hash, rate FROM api_keys WHERE revoked_at IS NULL",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    key_entry *v = NULL;
    size_t n = 0, cap = 0;
    int64_t now = mono_ms();
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            key_entry *g = realloc(v, cap * sizeof *g);
            if (!g) break;
            v = g;
        }
        key_entry *e = &v[n++];
        e->id = sqlite3_column_int64(st, 0);
        keys_scope_parse((const char *)sqlite3_column_text(st, 1), &e->scope);
        snprintf(e->hex, sizeof e->hex, "%s", (const char *)sqlite3_column_text(st, 2));
        double rate = sqlite3_column_double(st, 3);
        rl_init(&e->bucket, rate > 0 ? rate : k->default_rate, now);
    }
    sqlite3_finalize(st);
    pthread_rwlock_wrlock(&k->lock);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < k->n; j++)
            if (v[i].id == k->entries[j].id) {
                v[i].bucket.tokens = k->entries[j].bucket.tokens;
                v[i].bucket.last_ms = k->entries[j].bucket.last_ms;
            }
    for (size_t j = 0; j < k->n; j++)
        rl_destroy(&k->entries[j].bucket);
    free(k->entries);
    k->entries = v;
    k->n = n;
    pthread_rwlock_unlock(&k->lock);
    k->data_version = data_version(k->db);
    return 0;
}

keyring *keys_load(store *s, double default_rate, char *err, size_t errlen) {
    keyring *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->store = s;
    k->default_rate = default_rate;
    pthread_rwlock_init(&k->lock, NULL);
    pthread_mutex_init(&k->reload_lock, NULL);
    char path[4200];
    snprintf(path, sizeof path, "%s/engaged.db", store_dir(s));
    if (sqlite3_open_v2(path, &k->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK || reload(k)) {
        snprintf(err, errlen, "keys: %s", sqlite3_errmsg(k->db));
        keys_free(k);
        return NULL;
    }
    sqlite3_busy_timeout(k->db, 5000);
    k->checked_ms = mono_ms();
    return k;
}

void keys_free(keyring *k) {
    if (!k) return;
    for (size_t j = 0; j < k->n; j++)
        rl_destroy(&k->entries[j].bucket);
    free(k->entries);
    sqlite3_close(k->db);
    pthread_rwlock_destroy(&k->lock);
    pthread_mutex_destroy(&k->reload_lock);
    free(k);
}

/* Looks hex up; caller holds k->lock for reading. A linear scan: a shop has a handful of keys. */
static key_entry *find(keyring *k, const char *hex) {
    for (size_t i = 0; i < k->n; i++)
        if (memcmp(k->entries[i].hex, hex, 64) == 0) return &k->entries[i];
    return NULL;
}

/* Reloads the keyring if the table changed, looking at most once per RELOAD_EVERY_MS: so a revoked
 * key stops working, and a new one starts, within that time. Returns true if it reloaded. */
static bool refresh(keyring *k) {
    if (mono_ms() - atomic_load(&k->checked_ms) < RELOAD_EVERY_MS) return false;
    bool reloaded = false;
    pthread_mutex_lock(&k->reload_lock);
    int64_t now = mono_ms();
    if (now - atomic_load(&k->checked_ms) >= RELOAD_EVERY_MS) {
        atomic_store(&k->checked_ms, now);
        if (data_version(k->db) != k->data_version) reloaded = reload(k) == 0;
    }
    pthread_mutex_unlock(&k->reload_lock);
    return reloaded;
}

keys_verdict keys_charge(keyring *k, int64_t key_id, double nevents, int *retry_after_s) {
    keys_verdict v = KEYS_UNKNOWN;
    pthread_rwlock_rdlock(&k->lock);
    for (size_t i = 0; i < k->n; i++)
        if (k->entries[i].id == key_id) {
            v = rl_take(&k->entries[i].bucket, nevents, mono_ms(), retry_after_s)
                    ? KEYS_OK
                    : KEYS_RATE_LIMITED;
            break;
        }
    pthread_rwlock_unlock(&k->lock);
    return v;
}

/* Each I/O thread remembers the digests of the last few keys it hashed: a shop sends with one or
 * two keys, so in steady state no request pays for SHA-256. The comparison is constant-time, so the
 * cache tells an attacker nothing about the keys in it. */
#define DIGEST_CACHE 4
static __thread struct {
    size_t len;
    char key[KEYS_MAX_LEN];
    char hex[65];
} digest_cache[DIGEST_CACHE];
static __thread unsigned digest_cache_next;

static void digest_cached(const char *key, size_t len, char hex[65]) {
    for (int i = 0; i < DIGEST_CACHE; i++)
        if (digest_cache[i].len == len && CRYPTO_memcmp(digest_cache[i].key, key, len) == 0) {
            memcpy(hex, digest_cache[i].hex, 65);
            return;
        }
    digest_hex(key, len, hex);
    unsigned slot = digest_cache_next++ % DIGEST_CACHE;
    digest_cache[slot].len = len;
    memcpy(digest_cache[slot].key, key, len);
    memcpy(digest_cache[slot].hex, hex, 65);
}

keys_verdict keys_check(keyring *k, const char *key, size_t len, key_scope need, double nevents,
                        int64_t *key_id, int *retry_after_s) {
    if (len == 0 || len > KEYS_MAX_LEN) return KEYS_UNKNOWN;
    char hex[65];
    digest_cached(key, len, hex);
    bool refreshed = refresh(k);
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_rwlock_rdlock(&k->lock);
        key_entry *e = find(k, hex);
        if (e) {
            keys_verdict v = KEYS_OK;
            *key_id = e->id;
            if (e->scope < need)
                v = KEYS_FORBIDDEN;
            else if (!rl_take(&e->bucket, nevents, mono_ms(), retry_after_s))
                v = KEYS_RATE_LIMITED;
            pthread_rwlock_unlock(&k->lock);
            return v;
        }
        pthread_rwlock_unlock(&k->lock);
        if (attempt == 0 && (refreshed || !refresh(k))) break;
    }
    return KEYS_UNKNOWN;
}
