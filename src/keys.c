#include "keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* ---- The origins column ---- */

static bool has_origins_column(sqlite3 *db) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('api_keys') WHERE name = 'origins'",
                           -1, &st, NULL) != SQLITE_OK)
        return false;
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

/* Databases made before allow-lists lack the column: add it, once. The check is repeated under
 * BEGIN IMMEDIATE, so a server starting and `engaged keys create` cannot both add it. */
static int ensure_origins_column(sqlite3 *db) {
    if (has_origins_column(db)) return 0;
    if (store_exec(db, "BEGIN IMMEDIATE")) return -1;
    int rc =
        has_origins_column(db) ? 0 : store_exec(db, "ALTER TABLE api_keys ADD COLUMN origins TEXT");
    if (rc == 0) rc = store_exec(db, "COMMIT");
    if (rc) store_exec(db, "ROLLBACK");
    return rc;
}

/* ---- Origins ---- */

static bool host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

int keys_origin_normalize(const char *origin, char out[KEYS_ORIGIN_MAX + 1], ev_error *err) {
    /* The scheme, and the port a browser leaves out of Origin for it. */
    static const struct {
        const char *prefix;
        const char *default_port;
    } schemes[] = {{"http://", "80"}, {"https://", "443"}};
    size_t n = strlen(origin);
    if (n && origin[n - 1] == '/') n--; /* "https://shop.example/" is the same origin */
    if (n == 0 || n > KEYS_ORIGIN_MAX) {
        ev_error_set(err, "invalid_field", "origin", "origin \"%.80s\" must be 1 to %d characters",
                     origin, KEYS_ORIGIN_MAX);
        return -1;
    }
    char low[KEYS_ORIGIN_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)origin[i];
        if (c <= 0x20 || c >= 0x7f) {
            ev_error_set(err, "invalid_field", "origin",
                         "origin \"%.80s\" has a space, control or non-ASCII character (write an "
                         "international host name in its xn-- form)",
                         origin);
            return -1;
        }
        low[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    low[n] = '\0';
    size_t s = 0;
    while (s < 2 && strncmp(low, schemes[s].prefix, strlen(schemes[s].prefix)) != 0)
        s++;
    if (s == 2) {
        ev_error_set(err, "invalid_field", "origin",
                     "origin \"%.80s\" must start with http:// or https:// (e.g. "
                     "https://shop.example)",
                     origin);
        return -1;
    }
    const char *host = low + strlen(schemes[s].prefix);
    size_t hlen;
    if (*host == '[') { /* an IPv6 literal */
        hlen = strspn(host + 1, "0123456789abcdef:.") + 1;
        if (host[hlen] != ']' || hlen < 3) goto bad_host;
        hlen++;
    } else {
        hlen = 0;
        while (host_char(host[hlen]))
            hlen++;
        if (hlen == 0 || hlen > 253 || host[0] == '.' || host[0] == '-') goto bad_host;
    }
    const char *port = host + hlen;
    size_t plen = 0;
    if (*port == ':') {
        port++;
        plen = strspn(port, "0123456789");
        long v = plen >= 1 && plen <= 5 && port[0] != '0' ? strtol(port, NULL, 10) : 0;
        if (v < 1 || v > 65535 || port[plen] != '\0') {
            ev_error_set(err, "invalid_field", "origin",
                         "origin \"%.80s\": the port must be a number from 1 to 65535, and "
                         "nothing may follow it (an origin has no path)",
                         origin);
            return -1;
        }
        if (strcmp(port, schemes[s].default_port) == 0) plen = 0;
    } else if (*port != '\0') {
        goto bad_host;
    }
    size_t head = (size_t)(host - low) + hlen;
    memcpy(out, low, head);
    if (plen) {
        out[head] = ':';
        memcpy(out + head + 1, port, plen);
        head += plen + 1;
    }
    out[head] = '\0';
    return 0;
bad_host:
    ev_error_set(err, "invalid_field", "origin",
                 "origin \"%.80s\" must be scheme://host[:port] with a host of letters, digits, "
                 "'-' and '.' (no path, query, user or wildcard)",
                 origin);
    return -1;
}

/* Checks and normalises spec's origins into one space-separated list in out (empty for none). */
static int origins_text(const keys_spec *spec, char *out, size_t outlen, ev_error *err) {
    out[0] = '\0';
    if (spec->norigins == 0) return 0;
    if (spec->scope != KEY_WRITE) {
        ev_error_set(err, "invalid_field", "origin",
                     "only write keys have an origin allow-list; admin keys are never used from a "
                     "browser");
        return -1;
    }
    if (spec->norigins > KEYS_MAX_ORIGINS) {
        ev_error_set(err, "invalid_field", "origin", "%zu origins given; a key may list at most %d",
                     spec->norigins, KEYS_MAX_ORIGINS);
        return -1;
    }
    size_t len = 0;
    for (size_t i = 0; i < spec->norigins; i++) {
        char one[KEYS_ORIGIN_MAX + 1];
        if (keys_origin_normalize(spec->origins[i], one, err)) return -1;
        size_t ol = strlen(one);
        bool dup = false;
        for (const char *p = out; *p && !dup; p += strcspn(p, " "), p += *p == ' ')
            dup = strcspn(p, " ") == ol && memcmp(p, one, ol) == 0;
        if (dup) continue;
        if (len + ol + 2 > outlen) { /* cannot happen: out is sized for KEYS_MAX_ORIGINS */
            ev_error_set(err, "internal", "origin", "the origin list does not fit");
            return -1;
        }
        if (len) out[len++] = ' ';
        memcpy(out + len, one, ol + 1);
        len += ol;
    }
    return 0;
}

static int insert_key(sqlite3 *db, key_scope scope, const char *key, double rate, const char *label,
                      const char *origins, bool or_ignore) {
    char hex[65], prefix[12];
    digest_hex(key, strlen(key), hex);
    snprintf(prefix, sizeof prefix, "%.7s", key);
    sqlite3_stmt *st;
    const char *sql = or_ignore
                          ? "INSERT OR IGNORE INTO api_keys(scope, hash, prefix, rate, label, "
                            "created_at, origins) VALUES (?1,?2,?3,?4,?5,?6,?7)"
                          : "INSERT INTO api_keys(scope, hash, prefix, rate, label, "
                            "created_at, origins) VALUES (?1,?2,?3,?4,?5,?6,?7)";
    if (ensure_origins_column(db) || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, keys_scope_name(scope), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hex, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, rate);
    if (label) sqlite3_bind_text(st, 5, label, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, clock_now_ms());
    if (origins && *origins) sqlite3_bind_text(st, 7, origins, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) log_error("keys: %s", sqlite3_errmsg(db));
    return rc == SQLITE_DONE ? 0 : -1;
}

int keys_create(sqlite3 *db, const keys_spec *spec, char out[KEYS_TEXT_LEN], ev_error *err) {
    char origins[KEYS_MAX_ORIGINS * (KEYS_ORIGIN_MAX + 1) + 1];
    if (origins_text(spec, origins, sizeof origins, err)) return -1;
    unsigned char raw[20];
    hash_random(raw, sizeof raw);
    memcpy(out, spec->scope == KEY_ADMIN ? "ak_" : "wk_", 3);
    for (int i = 0; i < 20; i++)
        snprintf(out + 3 + 2 * i, 3, "%02x", raw[i]);
    if (insert_key(db, spec->scope, out, spec->rate, spec->label, origins, false)) {
        ev_error_set(err, "internal", "", "cannot store the key: %s", sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

int keys_provision(sqlite3 *db, key_scope scope, const char *key) {
    return insert_key(db, scope, key, 0, "provisioned from the environment", NULL, true);
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
    if (ensure_origins_column(db) ||
        sqlite3_prepare_v2(db,
                           "SELECT id, scope, prefix, rate, coalesce(label,''), created_at, "
                           "revoked_at, origins FROM api_keys ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    fprintf(out, "%-5s %-6s %-10s %-8s %-8s %-24s %s\n", "ID", "SCOPE", "PREFIX", "RATE", "STATE",
            "ORIGINS", "LABEL");
    while (sqlite3_step(st) == SQLITE_ROW) {
        char rate[32];
        double r = sqlite3_column_double(st, 3);
        if (r > 0)
            snprintf(rate, sizeof rate, "%g/s", r);
        else
            snprintf(rate, sizeof rate, "default");
        const char *scope = (const char *)sqlite3_column_text(st, 1);
        const char *origins = (const char *)sqlite3_column_text(st, 7);
        fprintf(out, "%-5lld %-6s %-10s %-8s %-8s ", (long long)sqlite3_column_int64(st, 0), scope,
                sqlite3_column_text(st, 2), rate,
                sqlite3_column_type(st, 6) == SQLITE_NULL ? "active" : "revoked");
        /* The stored list is space-separated; shown joined by commas so the column has no space. */
        int width = 0;
        if (origins)
            for (const char *p = origins; *p; p++, width++)
                fputc(*p == ' ' ? ',' : *p, out);
        else
            width = fprintf(out, "%s", strcmp(scope, "write") == 0 ? "any" : "-");
        fprintf(out, "%*s %s\n", width < 24 ? 24 - width : 0, "", sqlite3_column_text(st, 4));
    }
    sqlite3_finalize(st);
    return 0;
}

/* ---- The in-memory keyring ---- */

typedef struct key_entry {
    int64_t id;
    key_scope scope;
    char hex[65];
    char *origins; /* the allow-list, space-separated and normalised; NULL: any origin */
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
    if (sqlite3_prepare_v2(
            k->db, "SELECT id, scope, hash, rate, origins FROM api_keys WHERE revoked_at IS NULL",
            -1, &st, NULL) != SQLITE_OK)
        return -1;
    key_entry *v = NULL;
    size_t n = 0, cap = 0;
    int64_t now = mono_ms();
    bool failed = false;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            key_entry *g = realloc(v, cap * sizeof *g);
            if (!g) {
                failed = true;
                break;
            }
            v = g;
        }
        key_entry *e = &v[n];
        e->id = sqlite3_column_int64(st, 0);
        keys_scope_parse((const char *)sqlite3_column_text(st, 1), &e->scope);
        snprintf(e->hex, sizeof e->hex, "%s", (const char *)sqlite3_column_text(st, 2));
        const char *origins = (const char *)sqlite3_column_text(st, 4);
        e->origins = origins && *origins ? strdup(origins) : NULL;
        /* A key whose list cannot be copied must not become a key for any origin. */
        if (origins && *origins && !e->origins) {
            failed = true;
            break;
        }
        double rate = sqlite3_column_double(st, 3);
        rl_init(&e->bucket, rate > 0 ? rate : k->default_rate, now);
        n++;
    }
    sqlite3_finalize(st);
    if (failed) { /* out of memory: keep the keyring as it was */
        for (size_t i = 0; i < n; i++) {
            rl_destroy(&v[i].bucket);
            free(v[i].origins);
        }
        free(v);
        return -1;
    }
    pthread_rwlock_wrlock(&k->lock);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < k->n; j++)
            if (v[i].id == k->entries[j].id) {
                v[i].bucket.tokens = k->entries[j].bucket.tokens;
                v[i].bucket.last_ms = k->entries[j].bucket.last_ms;
            }
    for (size_t j = 0; j < k->n; j++) {
        rl_destroy(&k->entries[j].bucket);
        free(k->entries[j].origins);
    }
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
    if (ensure_origins_column(store_writer(s))) {
        snprintf(err, errlen, "keys: cannot add the origins column: %s", store_errmsg());
        keys_free(k);
        return NULL;
    }
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
    for (size_t j = 0; j < k->n; j++) {
        rl_destroy(&k->entries[j].bucket);
        free(k->entries[j].origins);
    }
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

/* Looks key_id up; caller holds k->lock for reading. */
static key_entry *find_id(keyring *k, int64_t key_id) {
    for (size_t i = 0; i < k->n; i++)
        if (k->entries[i].id == key_id) return &k->entries[i];
    return NULL;
}

bool keys_origin_allowed(keyring *k, int64_t key_id, const char *origin) {
    size_t olen = strlen(origin);
    pthread_rwlock_rdlock(&k->lock);
    key_entry *e = find_id(k, key_id);
    bool ok = e && !e->origins;
    for (const char *p = e ? e->origins : NULL; p && *p && !ok;) {
        size_t len = strcspn(p, " ");
        ok = len == olen && strncasecmp(p, origin, len) == 0;
        p += len;
        p += *p == ' ';
    }
    pthread_rwlock_unlock(&k->lock);
    return ok;
}

key_scope keys_scope_of(keyring *k, int64_t key_id) {
    pthread_rwlock_rdlock(&k->lock);
    key_entry *e = find_id(k, key_id);
    key_scope s = e ? e->scope : (key_scope)0;
    pthread_rwlock_unlock(&k->lock);
    return s;
}

keys_verdict keys_charge(keyring *k, int64_t key_id, double nevents, int *retry_after_s) {
    keys_verdict v = KEYS_UNKNOWN;
    pthread_rwlock_rdlock(&k->lock);
    key_entry *e = find_id(k, key_id);
    if (e) v = rl_take(&e->bucket, nevents, mono_ms(), retry_after_s) ? KEYS_OK : KEYS_RATE_LIMITED;
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
