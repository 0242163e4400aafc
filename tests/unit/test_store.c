/* Unit tests for store/store: opening (directory and schema creation, refusing a newer schema, the
 * reasons given on failure), the event queries (every filter, the cursor and paging, hostile
 * filter values, the size cap), counts, and reader connections on other threads. Each test works in
 * a temp dir of its own, removed afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "store/store.h"
#include "util/log.h"

typedef struct fixture {
    char dir[128];
    store *s;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/engaged-test-store-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    store_close(f->s);
    int rc = test_rmtree(f->dir);
    free(f);
    return rc;
}

/* Opens the store in the fixture's dir (or a subdirectory of it). */
static store *open_in(fixture *f, const char *sub) {
    char dir[256], err[512] = "";
    snprintf(dir, sizeof dir, "%s%s", f->dir, sub ? sub : "");
    store *s = store_open(dir, err, sizeof err);
    if (!s) fail_msg("store_open(%s): %s", dir, err);
    return s;
}

static void insert(store *s, int64_t received, int type, const char *user, const char *anon,
                   const char *mid, const char *body) {
    sqlite3 *db = store_writer(s);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, STORE_SQL_INSERT_EVENT, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, received);
    sqlite3_bind_int64(st, 2, received - 5);
    sqlite3_bind_int(st, 3, type);
    sqlite3_bind_int(st, 4, 0);
    if (user) sqlite3_bind_text(st, 5, user, -1, SQLITE_STATIC);
    if (anon) sqlite3_bind_text(st, 6, anon, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, mid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, body, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) fail_msg("insert: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
}

static int64_t int_query(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -999;
    sqlite3_finalize(st);
    return v;
}

static char *text_query(sqlite3 *db, const char *sql, char *out, size_t n) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    snprintf(out, n, "%s",
             sqlite3_step(st) == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : "(none)");
    sqlite3_finalize(st);
    return out;
}

static store_query any(int limit) {
    return (store_query){NULL, NULL, -1, INT64_MIN, 0, limit};
}

/* Runs q and compares the JSON array text and the cursor. */
static void expect_query(store *s, store_query q, const char *json, int64_t next) {
    buf out = BUF_INIT(0);
    int64_t next_seq = 12345;
    if (store_query_events(s, &q, &out, &next_seq)) fail_msg("query failed: %s", store_errmsg());
    if (strcmp(buf_str(&out), json) != 0) fail_msg("got %s, expected %s", buf_str(&out), json);
    if (next_seq != next)
        fail_msg("next_seq %lld, expected %lld (result %s)", (long long)next_seq, (long long)next,
                 json);
    buf_free(&out);
}

/* ---- opening ---- */

static void test_open_creates_dir_and_schema(void **state) {
    fixture *f = *state;
    f->s = open_in(f, "/a/b/c");
    char path[256], text[64];
    snprintf(path, sizeof path, "%s/a/b/c", f->dir);
    assert_string_equal(store_dir(f->s), path);
    struct stat st;
    strcat(path, "/engaged.db");
    assert_int_equal(stat(path, &st), 0);
    sqlite3 *db = store_writer(f->s);
    assert_non_null(db);
    assert_int_equal(int_query(db, "PRAGMA user_version"), 2);
    assert_string_equal(text_query(db, "PRAGMA journal_mode", text, sizeof text), "wal");
    assert_int_equal(int_query(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                                   "name IN ('events', 'api_keys', 'meta')"),
                     3);
    assert_int_equal(store_count_events(f->s), 0);
    insert(f->s, 1000, 1, "u", NULL, "m1", "{\"n\":1}");

    /* Reopening keeps the data and the schema version; a trailing slash names the same dir. */
    store_close(f->s);
    f->s = open_in(f, "/a/b/c/");
    assert_int_equal(store_count_events(f->s), 1);
    assert_int_equal(int_query(store_writer(f->s), "PRAGMA user_version"), 2);
}

static void test_open_migrates_unversioned(void **state) {
    fixture *f = *state;
    /* A database with no version yet (0) gets the schema and the current version. */
    char path[256];
    snprintf(path, sizeof path, "%s/engaged.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE other(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    f->s = open_in(f, NULL);
    assert_int_equal(int_query(store_writer(f->s), "PRAGMA user_version"), 2);
    assert_int_equal(int_query(store_writer(f->s), "SELECT count(*) FROM sqlite_master WHERE "
                                                   "name IN ('events', 'other')"),
                     2);
}

static void test_open_refuses_newer_schema(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    insert(f->s, 1000, 1, "u", NULL, "m1", "{}");
    assert_int_equal(store_exec(store_writer(f->s), "PRAGMA user_version=99"), 0);
    store_close(f->s);
    f->s = NULL;

    char err[512] = "", expect[512];
    assert_null(store_open(f->dir, err, sizeof err));
    snprintf(expect, sizeof expect,
             "%s/engaged.db: the data was written by a newer engaged (schema 99 > 2)", f->dir);
    assert_string_equal(err, expect);
    /* Refusing leaves the version (and the data) as they were. */
    char path[256];
    snprintf(path, sizeof path, "%s/engaged.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(int_query(db, "PRAGMA user_version"), 99);
    assert_int_equal(int_query(db, "SELECT count(*) FROM events"), 1);
    sqlite3_close(db);
}

static void test_open_errors(void **state) {
    fixture *f = *state;
    char dir[PATH_MAX + 64], err[512], expect[PATH_MAX + 200];

    /* A data directory below a regular file cannot be created. */
    snprintf(dir, sizeof dir, "%s/file", f->dir);
    FILE *fp = fopen(dir, "w");
    assert_non_null(fp);
    fclose(fp);
    strcat(dir, "/sub");
    err[0] = '\0';
    assert_null(store_open(dir, err, sizeof err));
    snprintf(expect, sizeof expect, "cannot create data directory %s: Not a directory", dir);
    assert_string_equal(err, expect);

    /* An empty path is no directory. */
    err[0] = '\0';
    assert_null(store_open("", err, sizeof err));
    assert_string_equal(err, "cannot create data directory : No such file or directory");

    /* A path that leaves no room for the file name. */
    memset(dir, 'x', PATH_MAX - 5);
    dir[0] = '/';
    dir[PATH_MAX - 5] = '\0';
    err[0] = '\0';
    assert_null(store_open(dir, err, sizeof err));
    assert_string_equal(err, "data directory path too long");

    /* A file that is not a database. */
    snprintf(dir, sizeof dir, "%s/junk", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    char path[PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/engaged.db", dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 200; i++)
        fputs("this is not an SQLite database\n", fp);
    fclose(fp);
    err[0] = '\0';
    assert_null(store_open(dir, err, sizeof err));
    snprintf(expect, sizeof expect, "%s: file is not a database", path);
    assert_string_equal(err, expect);
}

static void test_exec_errors(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    assert_int_equal(store_exec(store_writer(f->s), "CREATE TABLE t(x); INSERT INTO t VALUES (1)"),
                     0);
    assert_int_equal(store_exec(store_writer(f->s), "SELECT * FROM no_such_table"), -1);
    assert_string_equal(store_errmsg(), "no such table: no_such_table");
}

/* ---- queries ---- */

/* Ten events with seqs 1..10:
 *   seq received type user  anon
 *   1   1000     1    alice -
 *   2   1000     0    -     anon1
 *   3   2000     1    bob   anon1
 *   4   2000     2    alice anon2
 *   5   3000     1    alice -
 *   6   3000     1    bob   -
 *   7   4000     0    alice anon1
 *   8   5000     1    carol -
 *   9   5000     1    alice -
 *   10  6000     2    -     anon2 */
static void fill(store *s) {
    static const struct {
        int64_t received;
        int type;
        const char *user, *anon;
    } rows[] = {
        {1000, 1, "alice", NULL},    {1000, 0, NULL, "anon1"}, {2000, 1, "bob", "anon1"},
        {2000, 2, "alice", "anon2"}, {3000, 1, "alice", NULL}, {3000, 1, "bob", NULL},
        {4000, 0, "alice", "anon1"}, {5000, 1, "carol", NULL}, {5000, 1, "alice", NULL},
        {6000, 2, NULL, "anon2"},
    };
    for (size_t i = 0; i < 10; i++) {
        char mid[16], body[32];
        snprintf(mid, sizeof mid, "m%zu", i + 1);
        snprintf(body, sizeof body, "{\"n\":%zu}", i + 1);
        insert(s, rows[i].received, rows[i].type, rows[i].user, rows[i].anon, mid, body);
    }
}

static void test_query_filters(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    expect_query(f->s, any(10), "[]", -1); /* empty store */
    fill(f->s);
    assert_int_equal(store_count_events(f->s), 10);

    expect_query(f->s, any(100),
                 "[{\"n\":1},{\"n\":2},{\"n\":3},{\"n\":4},{\"n\":5},{\"n\":6},{\"n\":7},{\"n\":8},"
                 "{\"n\":9},{\"n\":10}]",
                 -1);
    store_query q = any(100);
    q.user_id = "alice";
    expect_query(f->s, q, "[{\"n\":1},{\"n\":4},{\"n\":5},{\"n\":7},{\"n\":9}]", -1);
    q = any(100);
    q.anonymous_id = "anon1";
    expect_query(f->s, q, "[{\"n\":2},{\"n\":3},{\"n\":7}]", -1);
    q.user_id = "alice"; /* both: AND */
    expect_query(f->s, q, "[{\"n\":7}]", -1);
    q = any(100);
    q.type = 0;
    expect_query(f->s, q, "[{\"n\":2},{\"n\":7}]", -1);
    q.type = 2;
    expect_query(f->s, q, "[{\"n\":4},{\"n\":10}]", -1);
    q.type = 5;
    expect_query(f->s, q, "[]", -1);
    q = any(100);
    q.since_ms = 5000; /* inclusive */
    expect_query(f->s, q, "[{\"n\":8},{\"n\":9},{\"n\":10}]", -1);
    q.since_ms = 6001;
    expect_query(f->s, q, "[]", -1);
    q.since_ms = INT64_MIN + 1; /* any real bound below every event */
    q.limit = 2;
    expect_query(f->s, q, "[{\"n\":1},{\"n\":2}]", 2);
    q = any(100);
    q.after_seq = 7;
    expect_query(f->s, q, "[{\"n\":8},{\"n\":9},{\"n\":10}]", -1);
    q.after_seq = 10;
    expect_query(f->s, q, "[]", -1);
    q.after_seq = -5;
    q.limit = 1;
    expect_query(f->s, q, "[{\"n\":1}]", 1);

    /* Everything at once. */
    q = (store_query){"alice", NULL, 1, 2000, 1, 100};
    expect_query(f->s, q, "[{\"n\":5},{\"n\":9}]", -1);
    q = (store_query){"alice", NULL, 1, 2000, 5, 100};
    expect_query(f->s, q, "[{\"n\":9}]", -1);
}

static void test_query_paging(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    fill(f->s);
    /* Pages of 3: the cursor of each page is the seq of its last event; the last page says -1. */
    store_query q = any(3);
    expect_query(f->s, q, "[{\"n\":1},{\"n\":2},{\"n\":3}]", 3);
    q.after_seq = 3;
    expect_query(f->s, q, "[{\"n\":4},{\"n\":5},{\"n\":6}]", 6);
    q.after_seq = 6;
    expect_query(f->s, q, "[{\"n\":7},{\"n\":8},{\"n\":9}]", 9);
    q.after_seq = 9;
    expect_query(f->s, q, "[{\"n\":10}]", -1);

    /* A page that ends exactly with the last event has no next page. */
    q = any(5);
    q.after_seq = 5;
    expect_query(f->s, q, "[{\"n\":6},{\"n\":7},{\"n\":8},{\"n\":9},{\"n\":10}]", -1);
    q = any(10);
    expect_query(f->s, q,
                 "[{\"n\":1},{\"n\":2},{\"n\":3},{\"n\":4},{\"n\":5},{\"n\":6},{\"n\":7},{\"n\":8},"
                 "{\"n\":9},{\"n\":10}]",
                 -1);

    /* Filtered paging: the cursor is the seq of the last matching event. */
    q = any(2);
    q.user_id = "alice";
    expect_query(f->s, q, "[{\"n\":1},{\"n\":4}]", 4);
    q.after_seq = 4;
    expect_query(f->s, q, "[{\"n\":5},{\"n\":7}]", 7);
    q.after_seq = 7;
    expect_query(f->s, q, "[{\"n\":9}]", -1);
    q = any(2);
    q.user_id = "alice";
    q.after_seq = 5;
    expect_query(f->s, q, "[{\"n\":7},{\"n\":9}]", -1);

    /* The largest page. */
    q = any(1000);
    q.after_seq = 8;
    expect_query(f->s, q, "[{\"n\":9},{\"n\":10}]", -1);
}

static void test_query_hostile_values(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    fill(f->s);
    insert(f->s, 7000, 1, "x' OR '1'='1", "%", "m11", "{\"n\":11}");
    insert(f->s, 7000, 1, "\xe2\x82\xac\"\\", "a_b", "m12", "{\"n\":12}");
    store_query q = any(100);
    q.user_id = "' OR 1=1 --";
    expect_query(f->s, q, "[]", -1);
    q.user_id = "x' OR '1'='1"; /* values are bound, never pasted into SQL */
    expect_query(f->s, q, "[{\"n\":11}]", -1);
    q = any(100);
    q.anonymous_id = "%"; /* equality, not LIKE */
    expect_query(f->s, q, "[{\"n\":11}]", -1);
    q.anonymous_id = "a%";
    expect_query(f->s, q, "[]", -1);
    q.anonymous_id = "a_b";
    expect_query(f->s, q, "[{\"n\":12}]", -1);
    q = any(100);
    q.user_id = "\xe2\x82\xac\"\\";
    expect_query(f->s, q, "[{\"n\":12}]", -1);
    q.user_id = "ALICE"; /* case matters */
    expect_query(f->s, q, "[]", -1);
    q.user_id = "";
    expect_query(f->s, q, "[]", -1);
}

static void test_query_size_cap(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    fill(f->s);
    /* "[" + 9 bodies of 7 bytes + 8 commas = 72 bytes; the cap is hit in the middle. */
    buf out = BUF_INIT(40);
    store_query q = any(100);
    int64_t next = 0;
    assert_int_equal(store_query_events(f->s, &q, &out, &next), -1);
    assert_string_equal(store_errmsg(), "result too large");
    assert_true(out.len <= 40);
    buf_free(&out);
    /* Exactly enough room for the whole answer succeeds. */
    const char *all = "[{\"n\":1},{\"n\":2},{\"n\":3}]";
    buf exact = BUF_INIT(strlen(all));
    q.limit = 3;
    assert_int_equal(store_query_events(f->s, &q, &exact, &next), 0);
    assert_string_equal(buf_str(&exact), all);
    assert_int_equal(next, 3);
    buf_free(&exact);
}

static void test_counts_and_first_seq(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    sqlite3 *w = store_writer(f->s);
    assert_int_equal(store_count_events(f->s), 0);
    assert_true(store_first_seq_since(w, INT64_MIN) == INT64_MAX);
    fill(f->s);
    assert_int_equal(store_count_events(f->s), 10);
    assert_int_equal(store_first_seq_since(w, INT64_MIN), 1);
    assert_int_equal(store_first_seq_since(w, 1000), 1);
    assert_int_equal(store_first_seq_since(w, 1001), 3);
    assert_int_equal(store_first_seq_since(w, 3000), 5);
    assert_int_equal(store_first_seq_since(w, 4500), 8);
    assert_int_equal(store_first_seq_since(w, 6000), 10);
    assert_true(store_first_seq_since(w, 6001) == INT64_MAX);
    /* The reader connection works too. */
    assert_int_equal(store_first_seq_since(store_reader(f->s), 2500), 5);
}

/* The binary search agrees with a linear scan over a log with runs of equal times and holes in
 * seq (rows deleted), for every bound around every stored time. */
static void test_first_seq_since_with_gaps(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    sqlite3 *w = store_writer(f->s);
    int64_t times[300];
    uint32_t x = 12345;
    int64_t t = 1000;
    for (int i = 0; i < 300; i++) {
        x = x * 1103515245u + 12345u;
        t += (x >> 16) % 3; /* steps of 0, 1 or 2 ms: many equal times */
        times[i] = t;
        char mid[16];
        snprintf(mid, sizeof mid, "m%d", i);
        insert(f->s, t, 1, "u", NULL, mid, "{}");
    }
    assert_int_equal(store_exec(w,
                                "DELETE FROM events WHERE seq % 7 = 0 OR seq BETWEEN 100 AND 140 "
                                "OR seq = 1 OR seq = 300"),
                     0);
    for (int64_t since = 990; since <= t + 2; since++) {
        int64_t want = INT64_MAX;
        for (int i = 0; i < 300; i++) {
            int64_t seq = i + 1;
            bool deleted = seq % 7 == 0 || (seq >= 100 && seq <= 140) || seq == 1 || seq == 300;
            if (!deleted && times[i] >= since) {
                want = seq;
                break;
            }
        }
        assert_true(store_first_seq_since(w, since) == want);
    }
}

/* A version-1 store (ids indexed in SQLite) loses those indexes on open: the person index in
 * memory replaced them. */
static void test_open_migrates_v1(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    sqlite3 *w = store_writer(f->s);
    assert_int_equal(store_exec(w, "CREATE INDEX events_user ON events(user_id);"
                                   "CREATE INDEX events_received ON events(received_at);"
                                   "PRAGMA user_version=1"),
                     0);
    insert(f->s, 1000, 1, "u", NULL, "m1", "{\"n\":1}");
    store_close(f->s);
    f->s = open_in(f, NULL);
    assert_int_equal(int_query(store_writer(f->s), "PRAGMA user_version"), 2);
    assert_int_equal(int_query(store_writer(f->s),
                               "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                               "name LIKE 'events_%'"),
                     0);
    assert_int_equal(store_count_events(f->s), 1);
}

static int note_recent(int64_t seq, const char *message_id, void *arg) {
    buf *b = arg;
    buf_printf(b, "%lld=%s;", (long long)seq, message_id);
    return 0;
}

/* With the person index loaded, queries by id give what the scan gives, with every filter, and
 * across more than one batch of candidates (256). */
static void test_query_through_person_index(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    sqlite3_exec(store_writer(f->s), "BEGIN", NULL, NULL, NULL);
    for (int i = 0; i < 700; i++) {
        char mid[16], body[32], user[8], anon[8];
        snprintf(mid, sizeof mid, "m%d", i);
        snprintf(body, sizeof body, "{\"n\":%d}", i);
        snprintf(user, sizeof user, "u%d", i % 3);
        snprintf(anon, sizeof anon, "a%d", i % 5);
        insert(f->s, 1000 + i, i % 2, i % 7 ? user : NULL, anon, mid, body);
    }
    sqlite3_exec(store_writer(f->s), "COMMIT", NULL, NULL, NULL);
    store_query q = {.type = -1, .since_ms = INT64_MIN, .limit = 1000};
    const char *users[] = {"u0", "u1", "u2", "u9"};
    const char *anons[] = {NULL, "a1", "a4"};
    buf scan[4 * 3 * 2], *out = scan;
    int64_t next[4 * 3 * 2];
    /* First by scan (no index loaded), then through the index: the same bytes. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            buf recent = BUF_INIT(0);
            assert_int_equal(store_index_load(f->s, 1000 + 698, note_recent, &recent), 0);
            assert_string_equal(buf_str(&recent), "699=m698;700=m699;");
            buf_free(&recent);
            assert_non_null(store_people(f->s));
            assert_int_equal(pindex_people(store_people(f->s)), 3 + 5);
        }
        int k = 0;
        for (int u = 0; u < 4; u++)
            for (int a = 0; a < 3; a++)
                for (int t = -1; t <= 0; t++, k++) {
                    q.user_id = users[u];
                    q.anonymous_id = anons[a];
                    q.type = t;
                    q.limit = 50;
                    q.after_seq = 300;
                    buf b = BUF_INIT(0);
                    int64_t nx;
                    assert_int_equal(store_query_events(f->s, &q, &b, &nx), 0);
                    if (pass == 0) {
                        out[k] = b;
                        next[k] = nx;
                    } else {
                        assert_string_equal(buf_str(&b), buf_str(&out[k]));
                        assert_true(nx == next[k]);
                        buf_free(&b);
                        buf_free(&out[k]);
                    }
                }
    }
    /* By anonymous id alone, paging past 256 candidates. */
    q.user_id = NULL;
    q.anonymous_id = "a2";
    q.type = -1;
    q.after_seq = 0;
    q.limit = 1000;
    buf b = BUF_INIT(0);
    int64_t nx;
    assert_int_equal(store_query_events(f->s, &q, &b, &nx), 0);
    json_t *arr = json_loads(buf_str(&b), 0, NULL);
    assert_int_equal(json_array_size(arr), 140);
    assert_true(nx == -1);
    json_decref(arr);
    buf_free(&b);
}

typedef struct reader_job {
    store *s;
    int64_t count;
    char json[64];
    sqlite3 *db, *again;
} reader_job;

static void *reader_thread(void *arg) {
    reader_job *j = arg;
    j->db = store_reader(j->s);
    j->again = store_reader(j->s); /* no cmocka asserts off the main thread */
    j->count = store_count_events(j->s);
    buf out = BUF_INIT(0);
    store_query q = any(2);
    int64_t next;
    if (store_query_events(j->s, &q, &out, &next) == 0)
        snprintf(j->json, sizeof j->json, "%s", buf_str(&out));
    buf_free(&out);
    return NULL;
}

static void test_readers(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    sqlite3 *mine = store_reader(f->s);
    assert_non_null(mine);
    assert_ptr_not_equal(mine, store_writer(f->s));
    assert_int_equal(store_count_events(f->s), 0);
    /* The reader is read-only. */
    assert_int_equal(sqlite3_exec(mine, "DELETE FROM events", NULL, NULL, NULL), SQLITE_READONLY);
    fill(f->s);
    /* A reader used before a write sees the write afterwards. */
    assert_int_equal(store_count_events(f->s), 10);

    /* Readers opened on other threads, which end before store_close(): closed by it (a leak would
     * show under ASan). */
    reader_job jobs[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (reader_job){.s = f->s};
        assert_int_equal(pthread_create(&t[i], NULL, reader_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].count, 10);
        assert_string_equal(jobs[i].json, "[{\"n\":1},{\"n\":2}]");
        assert_non_null(jobs[i].db);
        assert_ptr_equal(jobs[i].again, jobs[i].db); /* one per thread, reused */
        assert_ptr_not_equal(jobs[i].db, mine);
    }
    assert_ptr_not_equal(jobs[0].db, jobs[1].db);
    assert_ptr_equal(store_reader(f->s), mine);
}

int main(void) {
    log_set_level(LOG_ERROR);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_open_creates_dir_and_schema),
        T(test_open_migrates_unversioned),
        T(test_open_refuses_newer_schema),
        T(test_open_errors),
        T(test_exec_errors),
        T(test_query_filters),
        T(test_query_paging),
        T(test_query_hostile_values),
        T(test_query_size_cap),
        T(test_counts_and_first_seq),
        T(test_first_seq_since_with_gaps),
        T(test_open_migrates_v1),
        T(test_query_through_person_index),
        T(test_readers),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
