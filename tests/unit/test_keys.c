/* Unit tests for keys: the key format, storage as SHA-256 digests only (the clear key appears in no
 * column and in no byte of the database files), provisioning, revocation, and the keyring's
 * verdicts: unknown, scope, rate limits, and keys added or revoked while it runs (seen after the
 * 250 ms reload interval, so those tests sleep 300 ms). Origin allow-lists: the normal form of an
 * origin and what is refused, storage, the keyring's answers, and the column added to a database
 * made before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include <ctype.h>
#include <ftw.h>
#include <pthread.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <time.h>

#include "keys.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"

typedef struct fixture {
    char dir[128];
    store *s;
    keyring *k;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/engaged-test-keys-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    char err[512];
    f->s = store_open(f->dir, err, sizeof err);
    if (!f->s) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    keys_free(f->k);
    store_close(f->s);
    int rc = test_rmtree(f->dir);
    free(f);
    return rc;
}

static void load(fixture *f, double default_rate) {
    char err[512] = "";
    keys_free(f->k);
    f->k = keys_load(f->s, default_rate, err, sizeof err);
    if (!f->k) fail_msg("keys_load: %s", err);
}

/* Past the keyring's 250 ms reload interval. */
static void wait_reload(void) {
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static void sha256_hex(const char *key, size_t len, char hex[65]) {
    unsigned char md[32];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(key, len, md, &n, EVP_sha256(), NULL), 1);
    assert_int_equal(n, 32);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static int64_t int_query(sqlite3 *db, const char *sql, const char *arg) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    if (arg) sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
}

static int64_t id_of(fixture *f, const char *key) {
    char hex[65];
    sha256_hex(key, strlen(key), hex);
    return int_query(store_writer(f->s), "SELECT id FROM api_keys WHERE hash = ?1", hex);
}

static keys_verdict check(fixture *f, const char *key, key_scope need, double n, int64_t *id,
                          int *retry) {
    int64_t dummy_id = -7;
    int dummy_retry = -7;
    return keys_check(f->k, key, strlen(key), need, n, id ? id : &dummy_id,
                      retry ? retry : &dummy_retry);
}

static void create(fixture *f, key_scope scope, double rate, const char *label,
                   char out[KEYS_TEXT_LEN]) {
    keys_spec spec = {scope, rate, label, NULL, 0};
    ev_error e;
    if (keys_create(store_writer(f->s), &spec, out, &e)) fail_msg("keys_create: %s", e.message);
}

static void create_for(fixture *f, const char *const *origins, size_t n, char out[KEYS_TEXT_LEN]) {
    keys_spec spec = {KEY_WRITE, 0, NULL, origins, n};
    ev_error e;
    if (keys_create(store_writer(f->s), &spec, out, &e)) fail_msg("keys_create: %s", e.message);
}

/* The origins column of key's row; "(null)" when NULL. */
static void origins_of(fixture *f, const char *key, char *out, size_t len) {
    char hex[65];
    sha256_hex(key, strlen(key), hex);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_writer(f->s),
                                        "SELECT origins FROM api_keys WHERE hash = ?1", -1, &st,
                                        NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const char *v = (const char *)sqlite3_column_text(st, 0);
    snprintf(out, len, "%s", v ? v : "(null)");
    sqlite3_finalize(st);
}

/* ---- the table ---- */

static void test_scope_names(void **state) {
    (void)state;
    assert_string_equal(keys_scope_name(KEY_WRITE), "write");
    assert_string_equal(keys_scope_name(KEY_ADMIN), "admin");
    assert_string_equal(keys_scope_name((key_scope)0), "?");
    assert_string_equal(keys_scope_name((key_scope)3), "?");
    key_scope s = (key_scope)0;
    assert_true(keys_scope_parse("write", &s));
    assert_int_equal(s, KEY_WRITE);
    assert_true(keys_scope_parse("admin", &s));
    assert_int_equal(s, KEY_ADMIN);
    assert_false(keys_scope_parse("Admin", &s));
    assert_false(keys_scope_parse("", &s));
    assert_false(keys_scope_parse("?", &s));
    assert_int_equal(s, KEY_ADMIN); /* untouched on failure */
}

static void test_create_format(void **state) {
    fixture *f = *state;
    char w[KEYS_TEXT_LEN], a[KEYS_TEXT_LEN], w2[KEYS_TEXT_LEN];
    create(f, KEY_WRITE, 0, "site", w);
    create(f, KEY_ADMIN, 12.5, NULL, a);
    create(f, KEY_WRITE, 0, "site", w2);
    const char *keys[] = {w, a, w2};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(strlen(keys[i]), KEYS_TEXT_LEN - 1);
        assert_memory_equal(keys[i], i == 1 ? "ak_" : "wk_", 3);
        for (int j = 3; j < 43; j++)
            if (!isxdigit((unsigned char)keys[i][j]) || isupper((unsigned char)keys[i][j]))
                fail_msg("key %s: character %d is not lower-case hex", keys[i], j);
    }
    assert_string_not_equal(w, w2); /* random, not derived from scope or label */

    sqlite3 *db = store_writer(f->s);
    assert_int_equal(int_query(db, "SELECT count(*) FROM api_keys", NULL), 3);
    /* Each row: the digest, the 7-character prefix, scope, rate, label; nothing revoked. */
    for (int i = 0; i < 3; i++) {
        char hex[65];
        sha256_hex(keys[i], strlen(keys[i]), hex);
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(db,
                                            "SELECT scope, prefix, rate, label, revoked_at, "
                                            "created_at FROM api_keys WHERE hash = ?1",
                                            -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal(sqlite3_column_text(st, 0), i == 1 ? "admin" : "write");
        assert_int_equal(sqlite3_column_bytes(st, 1), 7);
        assert_memory_equal(sqlite3_column_text(st, 1), keys[i], 7);
        assert_true(sqlite3_column_double(st, 2) == (i == 1 ? 12.5 : 0));
        if (i == 1)
            assert_int_equal(sqlite3_column_type(st, 3), SQLITE_NULL);
        else
            assert_string_equal(sqlite3_column_text(st, 3), "site");
        assert_int_equal(sqlite3_column_type(st, 4), SQLITE_NULL);
        assert_true(sqlite3_column_int64(st, 5) > 0);
        sqlite3_finalize(st);
    }
}

/* True if needle occurs in the file's bytes. */
static bool file_contains(const char *path, const char *needle) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return false;
    size_t cap = 1 << 20, n = 0;
    char *data = malloc(cap);
    assert_non_null(data);
    size_t r;
    while ((r = fread(data + n, 1, cap - n, fp)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            data = realloc(data, cap);
            assert_non_null(data);
        }
    }
    fclose(fp);
    bool found = memmem(data, n, needle, strlen(needle)) != NULL;
    free(data);
    return found;
}

static void test_never_stored_in_clear(void **state) {
    fixture *f = *state;
    char keys[3][KEYS_TEXT_LEN];
    create(f, KEY_WRITE, 0, "a label", keys[0]);
    create(f, KEY_ADMIN, 0, NULL, keys[1]);
    assert_int_equal(keys_provision(store_writer(f->s), KEY_WRITE, "wk_operator_given_secret_123"),
                     0);
    snprintf(keys[2], sizeof keys[2], "wk_operator_given_secret_123");

    /* No column of any row holds the key, or its random part. */
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_writer(f->s),
                                        "SELECT scope, hash, prefix, rate, label, created_at, "
                                        "revoked_at FROM api_keys",
                                        -1, &st, NULL),
                     SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        rows++;
        for (int col = 0; col < 7; col++) {
            const char *v = (const char *)sqlite3_column_text(st, col);
            if (!v) continue;
            for (int k = 0; k < 3; k++)
                if (strstr(v, keys[k]) || strstr(v, keys[k] + 3))
                    fail_msg("column %d holds key %s: %s", col, keys[k], v);
        }
    }
    sqlite3_finalize(st);
    assert_int_equal(rows, 3);

    /* Nor does any byte on disk (database and WAL). */
    const char *files[] = {"engaged.db", "engaged.db-wal"};
    for (int i = 0; i < 2; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", f->dir, files[i]);
        for (int k = 0; k < 3; k++)
            if (file_contains(path, keys[k] + 3)) fail_msg("%s contains key %s", files[i], keys[k]);
    }
}

static void test_provision_idempotent(void **state) {
    fixture *f = *state;
    sqlite3 *db = store_writer(f->s);
    assert_int_equal(keys_provision(db, KEY_ADMIN, "ak_from_env"), 0);
    assert_int_equal(keys_provision(db, KEY_ADMIN, "ak_from_env"), 0);
    assert_int_equal(keys_provision(db, KEY_WRITE, "wk_from_env"), 0);
    assert_int_equal(keys_provision(db, KEY_WRITE, "wk_from_env"), 0);
    assert_int_equal(int_query(db, "SELECT count(*) FROM api_keys", NULL), 2);
    char hex[65];
    sha256_hex("ak_from_env", 11, hex);
    assert_int_equal(
        int_query(db, "SELECT count(*) FROM api_keys WHERE hash = ?1 AND scope = 'admin'", hex), 1);
    load(f, 0);
    assert_int_equal(check(f, "ak_from_env", KEY_ADMIN, 1, NULL, NULL), KEYS_OK);
    assert_int_equal(check(f, "wk_from_env", KEY_WRITE, 1, NULL, NULL), KEYS_OK);
    assert_int_equal(check(f, "wk_from_env", KEY_ADMIN, 1, NULL, NULL), KEYS_FORBIDDEN);
}

static void test_revoke_and_list(void **state) {
    fixture *f = *state;
    char w[KEYS_TEXT_LEN], a[KEYS_TEXT_LEN];
    create(f, KEY_WRITE, 0, "web", w);
    create(f, KEY_ADMIN, 3, "ops", a);
    sqlite3 *db = store_writer(f->s);
    int64_t wid = id_of(f, w);
    assert_int_equal(keys_revoke(db, wid), 0);
    assert_int_equal(keys_revoke(db, wid), 1); /* already revoked */
    assert_int_equal(keys_revoke(db, 999), 1);
    assert_int_equal(
        int_query(db, "SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL", NULL), 1);

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(keys_list(db, out), 0);
    fclose(out);
    char expect[1024];
    snprintf(expect, sizeof expect,
             "ID    SCOPE  PREFIX     RATE     STATE    ORIGINS                  LABEL\n"
             "%-5lld write  %-10.7s default  revoked  any                      web\n"
             "%-5lld admin  %-10.7s 3/s      active   -                        ops\n",
             (long long)wid, w, (long long)id_of(f, a), a);
    assert_string_equal(text, expect);
    assert_null(strstr(text, w + 7)); /* only the prefix is shown */
    free(text);

    /* A write key with an allow-list shows it joined by commas; a long list pushes the label. */
    char s1[KEYS_TEXT_LEN], s2[KEYS_TEXT_LEN];
    const char *one[] = {"https://shop.example"};
    const char *two[] = {"https://shop.example", "http://127.0.0.1:8080"};
    create_for(f, one, 1, s1);
    create_for(f, two, 2, s2);
    text = NULL;
    out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(keys_list(db, out), 0);
    fclose(out);
    char tail[512];
    snprintf(tail, sizeof tail,
             "%-5lld write  %-10.7s default  active   https://shop.example     \n"
             "%-5lld write  %-10.7s default  active   "
             "https://shop.example,http://127.0.0.1:8080 \n",
             (long long)id_of(f, s1), s1, (long long)id_of(f, s2), s2);
    assert_non_null(strstr(text, tail));
    assert_string_equal(strstr(text, tail), tail); /* the last lines */
    free(text);
}

/* ---- origins ---- */

static void test_origin_normalize(void **state) {
    (void)state;
    static const struct {
        const char *in, *out;
    } good[] = {
        {"https://shop.example", "https://shop.example"},
        {"HTTPS://Shop.Example", "https://shop.example"},
        {"https://shop.example/", "https://shop.example"},
        {"https://shop.example:443", "https://shop.example"},
        {"http://shop.example:80", "http://shop.example"},
        {"http://shop.example:443", "http://shop.example:443"},
        {"https://shop.example:80", "https://shop.example:80"},
        {"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
        {"http://localhost:3000/", "http://localhost:3000"},
        {"http://[::1]:8080", "http://[::1]:8080"},
        {"https://[2001:DB8::1]", "https://[2001:db8::1]"},
        {"https://xn--bcher-kva.example", "https://xn--bcher-kva.example"},
        {"https://a_b.shop.example:65535", "https://a_b.shop.example:65535"},
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char out[KEYS_ORIGIN_MAX + 1];
        ev_error e = {0};
        if (keys_origin_normalize(good[i].in, out, &e))
            fail_msg("%s refused: %s", good[i].in, e.message);
        assert_string_equal(out, good[i].out);
    }
    static const struct {
        const char *in, *says;
    } bad[] = {
        {"", "1 to 270 characters"},
        {"/", "1 to 270 characters"},
        {"shop.example", "must start with http:// or https://"},
        {"ftp://shop.example", "must start with http:// or https://"},
        {"*", "must start with http:// or https://"},
        {"null", "must start with http:// or https://"},
        {"https://", "must start with http:// or https://"}, /* "https:/" once its "/" is cut */
        {"https:///", "scheme://host[:port]"},
        {"https://*.shop.example", "scheme://host[:port]"},
        {"https://shop.example/path", "scheme://host[:port]"},
        {"https://shop.example?q=1", "scheme://host[:port]"},
        {"https://user@shop.example", "scheme://host[:port]"},
        {"https://shop.example//", "scheme://host[:port]"},
        {"https://.shop.example", "scheme://host[:port]"},
        {"https://[::1", "scheme://host[:port]"},
        {"https://[]", "scheme://host[:port]"},
        {"https://shop.example:", "the port must be a number from 1 to 65535"},
        {"https://shop.example:0", "the port must be a number from 1 to 65535"},
        {"https://shop.example:08080", "the port must be a number from 1 to 65535"},
        {"https://shop.example:65536", "the port must be a number from 1 to 65535"},
        {"https://shop.example:123456", "the port must be a number from 1 to 65535"},
        {"https://shop.example:8080/x", "the port must be a number from 1 to 65535"},
        {"https://shop example", "space, control or non-ASCII"},
        {"https://shop.example\n", "space, control or non-ASCII"},
        {"https://b\xc3\xbc"
         "cher.example",
         "space, control or non-ASCII"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char out[KEYS_ORIGIN_MAX + 1];
        ev_error e = {0};
        if (keys_origin_normalize(bad[i].in, out, &e) == 0)
            fail_msg("\"%s\" accepted as %s", bad[i].in, out);
        assert_string_equal(e.code, "invalid_field");
        assert_string_equal(e.field, "origin");
        if (!strstr(e.message, bad[i].says))
            fail_msg("\"%s\": message \"%s\" lacks \"%s\"", bad[i].in, e.message, bad[i].says);
    }
    /* The message quotes the value (cut at 80 characters). */
    ev_error e;
    char out[KEYS_ORIGIN_MAX + 1];
    assert_int_equal(keys_origin_normalize("ftp://x", out, &e), -1);
    assert_string_equal(e.message, "origin \"ftp://x\" must start with http:// or https:// (e.g. "
                                   "https://shop.example)");

    /* Length: a 253-byte host with a port fits; one more byte over KEYS_ORIGIN_MAX does not. */
    char in[400];
    memset(in, 'a', sizeof in);
    memcpy(in, "https://", 8);
    memcpy(in + 8 + 253, ":65535", 7);
    assert_int_equal(keys_origin_normalize(in, out, &e), 0);
    assert_int_equal(strlen(out), 8 + 253 + 6);
    in[8 + 253] = 'a'; /* a 254-byte host */
    memcpy(in + 8 + 254, ":65535", 7);
    assert_int_equal(keys_origin_normalize(in, out, &e), -1);
    assert_non_null(strstr(e.message, "scheme://host[:port]"));
    memset(in + 8, 'a', sizeof in - 9);
    in[sizeof in - 1] = '\0';
    assert_int_equal(keys_origin_normalize(in, out, &e), -1);
    assert_non_null(strstr(e.message, "1 to 270 characters"));
}

static void test_create_with_origins(void **state) {
    fixture *f = *state;
    sqlite3 *db = store_writer(f->s);
    char k[KEYS_TEXT_LEN], plain[KEYS_TEXT_LEN];
    const char *list[] = {"https://Shop.Example/", "http://127.0.0.1:8080",
                          "https://shop.example:443", "HTTP://127.0.0.1:8080"};
    create_for(f, list, 4, k);
    char got[1024];
    origins_of(f, k, got, sizeof got);
    assert_string_equal(got, "https://shop.example http://127.0.0.1:8080"); /* normal, each once */
    create(f, KEY_WRITE, 0, NULL, plain);
    origins_of(f, plain, got, sizeof got);
    assert_string_equal(got, "(null)");

    /* Refusals store nothing. */
    int64_t rows = int_query(db, "SELECT count(*) FROM api_keys", NULL);
    ev_error e;
    char out[KEYS_TEXT_LEN];
    const char *bad[] = {"https://shop.example", "https://shop.example/checkout"};
    keys_spec spec = {KEY_WRITE, 0, "x", bad, 2};
    assert_int_equal(keys_create(db, &spec, out, &e), -1);
    assert_string_equal(e.code, "invalid_field");
    assert_string_equal(e.field, "origin");
    assert_non_null(strstr(e.message, "https://shop.example/checkout"));

    spec = (keys_spec){KEY_ADMIN, 0, NULL, list, 1};
    assert_int_equal(keys_create(db, &spec, out, &e), -1);
    assert_string_equal(e.message, "only write keys have an origin allow-list; admin keys are "
                                   "never used from a browser");

    const char *many[KEYS_MAX_ORIGINS + 1];
    char names[KEYS_MAX_ORIGINS + 1][40];
    for (int i = 0; i <= KEYS_MAX_ORIGINS; i++) {
        snprintf(names[i], sizeof names[i], "https://s%d.shop.example", i);
        many[i] = names[i];
    }
    spec = (keys_spec){KEY_WRITE, 0, NULL, many, KEYS_MAX_ORIGINS + 1};
    assert_int_equal(keys_create(db, &spec, out, &e), -1);
    assert_string_equal(e.message, "33 origins given; a key may list at most 32");
    assert_int_equal(int_query(db, "SELECT count(*) FROM api_keys", NULL), rows);

    /* The most a key may list, at the longest, is stored whole. */
    static char longest[KEYS_MAX_ORIGINS][KEYS_ORIGIN_MAX + 1];
    for (int i = 0; i < KEYS_MAX_ORIGINS; i++) {
        memset(longest[i], 'a', sizeof longest[i]);
        memcpy(longest[i], "https://", 8);
        longest[i][8 + 253 - 2] = (char)('0' + i / 10);
        longest[i][8 + 253 - 1] = (char)('0' + i % 10);
        memcpy(longest[i] + 8 + 253, ":65535", 7);
        many[i] = longest[i];
    }
    spec = (keys_spec){KEY_WRITE, 0, NULL, many, KEYS_MAX_ORIGINS};
    assert_int_equal(keys_create(db, &spec, out, &e), 0);
    static char all[KEYS_MAX_ORIGINS * (KEYS_ORIGIN_MAX + 1)];
    origins_of(f, out, all, sizeof all);
    assert_int_equal(strlen(all), KEYS_MAX_ORIGINS * (8 + 253 + 6) + KEYS_MAX_ORIGINS - 1);
    assert_string_equal(all + strlen(all) - 9, "a31:65535");
}

static void test_origin_allowed(void **state) {
    fixture *f = *state;
    char listed[KEYS_TEXT_LEN], any[KEYS_TEXT_LEN], admin[KEYS_TEXT_LEN];
    const char *list[] = {"https://shop.example", "http://127.0.0.1:8080"};
    create_for(f, list, 2, listed);
    create(f, KEY_WRITE, 0, NULL, any);
    create(f, KEY_ADMIN, 0, NULL, admin);
    load(f, 0);
    int64_t lid = id_of(f, listed), aid = id_of(f, any), did = id_of(f, admin);

    assert_true(keys_origin_allowed(f->k, lid, "https://shop.example"));
    assert_true(keys_origin_allowed(f->k, lid, "http://127.0.0.1:8080"));
    assert_true(keys_origin_allowed(f->k, lid, "HTTPS://SHOP.EXAMPLE")); /* case-insensitive */
    static const char *const refused[] = {
        "https://shop.example.evil",
        "https://shop.exampl",
        "http://shop.example",
        "https://evil.example",
        "http://127.0.0.1:8081",
        "http://127.0.0.1",
        "null",
        "",
        "https://shop.example http://127.0.0.1:8080",
        "https://shop.example/",
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (keys_origin_allowed(f->k, lid, refused[i])) fail_msg("\"%s\" allowed", refused[i]);

    /* No list: any origin, even odd ones. Unknown ids: none. */
    assert_true(keys_origin_allowed(f->k, aid, "https://evil.example"));
    assert_true(keys_origin_allowed(f->k, aid, "null"));
    assert_true(keys_origin_allowed(f->k, did, "https://evil.example"));
    assert_false(keys_origin_allowed(f->k, 424242, "https://shop.example"));

    assert_int_equal(keys_scope_of(f->k, lid), KEY_WRITE);
    assert_int_equal(keys_scope_of(f->k, did), KEY_ADMIN);
    assert_int_equal(keys_scope_of(f->k, 424242), 0);

    /* Revoked: no longer allowed anywhere once the keyring has reloaded. */
    assert_int_equal(keys_revoke(store_writer(f->s), lid), 0);
    wait_reload();
    int64_t id;
    assert_int_equal(check(f, any, KEY_WRITE, 1, &id, NULL), KEYS_OK); /* a look that reloads */
    assert_false(keys_origin_allowed(f->k, lid, "https://shop.example"));
    assert_int_equal(keys_scope_of(f->k, lid), 0);
}

/* A database made before allow-lists: the column is added when the keys are loaded (or created or
 * listed), its keys have no list, and it can be done again without harm. */
static void test_origins_column_migrated(void **state) {
    fixture *f = *state;
    sqlite3 *db = store_writer(f->s);
    const char *has = "SELECT count(*) FROM pragma_table_info('api_keys') WHERE name = 'origins'";
    if (int_query(db, has, NULL) == 1) /* a store that already creates it: make it old */
        assert_int_equal(store_exec(db, "ALTER TABLE api_keys DROP COLUMN origins"), 0);
    assert_int_equal(int_query(db, has, NULL), 0);
    char hex[65];
    sha256_hex("wk_made_before_origins", 22, hex);
    char sql[300];
    snprintf(sql, sizeof sql,
             "INSERT INTO api_keys(scope, hash, prefix, rate, created_at) "
             "VALUES ('write', '%s', 'wk_made', 0, 1)",
             hex);
    assert_int_equal(store_exec(db, sql), 0);

    load(f, 0);
    assert_int_equal(int_query(db, has, NULL), 1);
    int64_t id = -1;
    assert_int_equal(check(f, "wk_made_before_origins", KEY_WRITE, 1, &id, NULL), KEYS_OK);
    assert_true(keys_origin_allowed(f->k, id, "https://anywhere.example"));
    load(f, 0); /* again: nothing to add */
    assert_int_equal(int_query(db, has, NULL), 1);

    /* keys list and keys create on an old database add it too. */
    assert_int_equal(store_exec(db, "ALTER TABLE api_keys DROP COLUMN origins"), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(keys_list(db, out), 0);
    fclose(out);
    assert_non_null(strstr(text, "write  wk_made    default  active   any"));
    free(text);
    assert_int_equal(store_exec(db, "ALTER TABLE api_keys DROP COLUMN origins"), 0);
    char k[KEYS_TEXT_LEN];
    const char *list[] = {"https://shop.example"};
    create_for(f, list, 1, k);
    char got[64];
    origins_of(f, k, got, sizeof got);
    assert_string_equal(got, "https://shop.example");
}

/* ---- the keyring ---- */

static void test_check_verdicts(void **state) {
    fixture *f = *state;
    char w[KEYS_TEXT_LEN], a[KEYS_TEXT_LEN];
    create(f, KEY_WRITE, 0, NULL, w);
    create(f, KEY_ADMIN, 0, NULL, a);
    load(f, 0);
    int64_t id = -1;
    int retry = -1;
    assert_int_equal(check(f, w, KEY_WRITE, 1, &id, &retry), KEYS_OK);
    assert_int_equal(id, id_of(f, w));
    assert_int_equal(check(f, a, KEY_WRITE, 1, &id, NULL), KEYS_OK); /* admin satisfies write */
    assert_int_equal(id, id_of(f, a));
    assert_int_equal(check(f, a, KEY_ADMIN, 1, &id, NULL), KEYS_OK);
    id = -1;
    assert_int_equal(check(f, w, KEY_ADMIN, 1, &id, NULL), KEYS_FORBIDDEN);
    assert_int_equal(id, id_of(f, w)); /* known, just not allowed */
    assert_int_equal(retry, -1);       /* untouched unless rate limited */

    /* Unknown keys: made-up, near misses, empty, and too long. */
    char near[KEYS_TEXT_LEN];
    snprintf(near, sizeof near, "%s", w);
    near[42] = near[42] == '0' ? '1' : '0';
    assert_int_equal(check(f, near, KEY_WRITE, 1, NULL, NULL), KEYS_UNKNOWN);
    assert_int_equal(
        check(f, "wk_0000000000000000000000000000000000000000", KEY_WRITE, 1, NULL, NULL),
        KEYS_UNKNOWN);
    assert_int_equal(keys_check(f->k, w, 42, KEY_WRITE, 1, &id, &retry),
                     KEYS_UNKNOWN); /* a prefix */
    assert_int_equal(keys_check(f->k, w, 0, KEY_WRITE, 1, &id, &retry), KEYS_UNKNOWN);
    char upper[KEYS_TEXT_LEN];
    for (int i = 0; i < KEYS_TEXT_LEN; i++)
        upper[i] = (char)toupper((unsigned char)w[i]);
    assert_int_equal(check(f, upper, KEY_WRITE, 1, NULL, NULL), KEYS_UNKNOWN);

    /* The key is (pointer, length): bytes after it do not matter. */
    char padded[80];
    snprintf(padded, sizeof padded, "%s, trailing junk", w);
    assert_int_equal(keys_check(f->k, padded, strlen(w), KEY_WRITE, 1, &id, &retry), KEYS_OK);
    assert_int_equal(keys_check(f->k, padded, strlen(w) + 1, KEY_WRITE, 1, &id, &retry),
                     KEYS_UNKNOWN);
}

static void test_long_keys(void **state) {
    fixture *f = *state;
    /* Provisioned keys may be longer than generated ones, up to KEYS_MAX_LEN. */
    char longest[KEYS_MAX_LEN + 1], too_long[KEYS_MAX_LEN + 2];
    memset(longest, 'k', KEYS_MAX_LEN);
    longest[KEYS_MAX_LEN] = '\0';
    memset(too_long, 'k', KEYS_MAX_LEN + 1);
    too_long[KEYS_MAX_LEN + 1] = '\0';
    assert_int_equal(keys_provision(store_writer(f->s), KEY_WRITE, longest), 0);
    assert_int_equal(keys_provision(store_writer(f->s), KEY_WRITE, too_long), 0);
    load(f, 0);
    assert_int_equal(check(f, longest, KEY_WRITE, 1, NULL, NULL), KEYS_OK);
    /* Over the limit, a key is unknown even if it is in the table: never hashed at all. */
    assert_int_equal(check(f, too_long, KEY_WRITE, 1, NULL, NULL), KEYS_UNKNOWN);
    char *huge = malloc(1 << 20);
    assert_non_null(huge);
    memset(huge, 'k', 1 << 20);
    int64_t id;
    int retry;
    assert_int_equal(keys_check(f->k, huge, 1 << 20, KEY_WRITE, 1, &id, &retry), KEYS_UNKNOWN);
    free(huge);
}

static void test_rate_limits(void **state) {
    fixture *f = *state;
    char own[KEYS_TEXT_LEN], dflt[KEYS_TEXT_LEN], other[KEYS_TEXT_LEN];
    create(f, KEY_WRITE, 1, NULL, own);   /* its own rate: 1/s */
    create(f, KEY_WRITE, 0, NULL, dflt);  /* the default rate */
    create(f, KEY_WRITE, 0, NULL, other); /* the default too, with a bucket of its own */
    load(f, 2);

    int retry = -1;
    int64_t id;
    /* A batch bigger than the burst is admitted once and leaves 99 events of debt at 1/s. */
    assert_int_equal(check(f, own, KEY_WRITE, 100, NULL, &retry), KEYS_OK);
    assert_int_equal(check(f, own, KEY_WRITE, 1, &id, &retry), KEYS_RATE_LIMITED);
    assert_int_equal(id, id_of(f, own));
    /* 99 s of debt, less the few ms that passed (real time): 99, or 100 if none passed. */
    assert_in_range(retry, 99, 100);

    /* The default rate (2/s) for keys created with rate 0: 2 - 50 = 48 of debt: 24 s. */
    assert_int_equal(check(f, dflt, KEY_WRITE, 50, NULL, NULL), KEYS_OK);
    assert_int_equal(check(f, dflt, KEY_WRITE, 1, NULL, &retry), KEYS_RATE_LIMITED);
    assert_in_range(retry, 24, 25);
    /* Another key's bucket is its own. */
    assert_int_equal(check(f, other, KEY_WRITE, 1, NULL, NULL), KEYS_OK);

    /* keys_charge takes from the same bucket, by id. */
    int64_t other_id = id_of(f, other);
    assert_int_equal(keys_charge(f->k, other_id, 10, &retry), KEYS_OK); /* 1 left: admitted, -9 */
    retry = -1;
    assert_int_equal(keys_charge(f->k, other_id, 1, &retry), KEYS_RATE_LIMITED);
    assert_in_range(retry, 4, 5);
    assert_int_equal(check(f, other, KEY_WRITE, 1, NULL, NULL), KEYS_RATE_LIMITED);
    assert_int_equal(keys_charge(f->k, 424242, 1, &retry), KEYS_UNKNOWN);

    /* A refused write key asking for admin scope is FORBIDDEN, not rate limited: scope first. */
    assert_int_equal(check(f, own, KEY_ADMIN, 1, NULL, NULL), KEYS_FORBIDDEN);
}

static void test_unlimited_default(void **state) {
    fixture *f = *state;
    char w[KEYS_TEXT_LEN];
    create(f, KEY_WRITE, 0, NULL, w);
    load(f, 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(check(f, w, KEY_WRITE, 1e6, NULL, NULL), KEYS_OK);
}

static void test_changes_while_loaded(void **state) {
    fixture *f = *state;
    char w[KEYS_TEXT_LEN], limited[KEYS_TEXT_LEN];
    create(f, KEY_WRITE, 0, NULL, w);
    create(f, KEY_WRITE, 1, NULL, limited);
    load(f, 0);
    assert_int_equal(check(f, w, KEY_WRITE, 1, NULL, NULL), KEYS_OK);
    assert_int_equal(check(f, limited, KEY_WRITE, 100, NULL, NULL), KEYS_OK); /* into debt */

    /* A key created after loading works once the interval has passed. */
    char later[KEYS_TEXT_LEN];
    create(f, KEY_ADMIN, 0, NULL, later);
    wait_reload();
    assert_int_equal(check(f, later, KEY_ADMIN, 1, NULL, NULL), KEYS_OK);
    /* The reload kept the rate state of keys already loaded: still in debt. */
    int retry = -1;
    assert_int_equal(check(f, limited, KEY_WRITE, 1, NULL, &retry), KEYS_RATE_LIMITED);
    assert_in_range(retry, 98, 100);

    /* A revoked key stops working once the interval has passed. */
    int64_t wid = id_of(f, w);
    assert_int_equal(keys_revoke(store_writer(f->s), wid), 0);
    wait_reload();
    int64_t id = -1;
    assert_int_equal(check(f, w, KEY_WRITE, 1, &id, NULL), KEYS_UNKNOWN);
    assert_int_equal(keys_charge(f->k, wid, 1, &retry), KEYS_UNKNOWN);
    assert_int_equal(check(f, later, KEY_ADMIN, 1, NULL, NULL), KEYS_OK);

    /* A fresh load agrees. */
    load(f, 0);
    assert_int_equal(check(f, w, KEY_WRITE, 1, NULL, NULL), KEYS_UNKNOWN);
    assert_int_equal(check(f, later, KEY_WRITE, 1, NULL, NULL), KEYS_OK);
}

static void test_unknown_flood_is_cheap(void **state) {
    fixture *f = *state;
    char w[KEYS_TEXT_LEN];
    create(f, KEY_WRITE, 0, NULL, w);
    load(f, 0);
    /* Many misses in a row do not break anything, and a real key still works among them. */
    for (int i = 0; i < 2000; i++) {
        char bad[32];
        snprintf(bad, sizeof bad, "wk_bad_%d", i);
        assert_int_equal(check(f, bad, KEY_WRITE, 1, NULL, NULL), KEYS_UNKNOWN);
    }
    assert_int_equal(check(f, w, KEY_WRITE, 1, NULL, NULL), KEYS_OK);
}

/* ---- threads ---- */

typedef struct checker {
    keyring *k;
    const char *scarce, *free_key;
    int ok, limited, other, free_ok, free_bad;
} checker;

/* Checks for 400 ms, long enough for the keyring to reload under the checks. */
static void *check_loop(void *arg) {
    checker *c = arg;
    uint64_t end = clock_mono_ns() + 400 * 1000000ull;
    int64_t id;
    int retry;
    while (clock_mono_ns() < end) {
        keys_verdict v = keys_check(c->k, c->scarce, strlen(c->scarce), KEY_WRITE, 1, &id, &retry);
        if (v == KEYS_OK)
            c->ok++;
        else if (v == KEYS_RATE_LIMITED && retry >= 1)
            c->limited++;
        else
            c->other++;
        v = keys_check(c->k, c->free_key, strlen(c->free_key), KEY_WRITE, 1, &id, &retry);
        if (v == KEYS_OK)
            c->free_ok++;
        else
            c->free_bad++;
    }
    return NULL;
}

static void test_concurrent_checks(void **state) {
    fixture *f = *state;
    char scarce[KEYS_TEXT_LEN], free_key[KEYS_TEXT_LEN];
    /* A burst of 0.001 events and a refill of 0.001/s: one request fits, then none for 1000 s. */
    create(f, KEY_WRITE, 0.001, NULL, scarce);
    create(f, KEY_WRITE, 0, NULL, free_key);
    load(f, 0);
    checker c[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (checker){.k = f->k, .scarce = scarce, .free_key = free_key};
        assert_int_equal(pthread_create(&t[i], NULL, check_loop, &c[i]), 0);
    }
    /* Changes to the table while they run: each reload swaps the keyring under the checks. */
    struct timespec ts = {0, 100 * 1000 * 1000};
    for (int i = 0; i < 3; i++) {
        nanosleep(&ts, NULL);
        char extra[KEYS_TEXT_LEN];
        create(f, KEY_WRITE, 0, NULL, extra);
    }
    int ok = 0, limited = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].other, 0);
        assert_int_equal(c[i].free_bad, 0);
        assert_true(c[i].free_ok > 0);
        ok += c[i].ok;
        limited += c[i].limited;
    }
    /* Exactly one admission, across threads and reloads (which keep the bucket's state). */
    assert_int_equal(ok, 1);
    assert_true(limited > 100);
}

int main(void) {
    log_set_level(LOG_ERROR);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scope_names),
        T(test_create_format),
        T(test_never_stored_in_clear),
        T(test_provision_idempotent),
        T(test_revoke_and_list),
        cmocka_unit_test(test_origin_normalize),
        T(test_create_with_origins),
        T(test_origin_allowed),
        T(test_origins_column_migrated),
        T(test_check_verdicts),
        T(test_long_keys),
        T(test_rate_limits),
        T(test_unlimited_default),
        T(test_changes_while_loaded),
        T(test_unknown_flood_is_cheap),
        T(test_concurrent_checks),
    };
    return cmocka_run_group_tests_name("keys", tests, NULL, NULL);
}
