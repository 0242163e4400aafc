/* Unit tests for store/store: opening (directory, schema and log creation, refusing a newer schema,
 * the reasons given on failure), moving the events table of an older database into the log (and
 * recovering from a migration interrupted at each step), the event queries (every filter, the
 * cursor and paging, hostile filter values, the size cap), counts and the first seq since a time
 * (over erased records too), and reader connections on other threads. Each test works in a temp
 * dir of its own, removed afterwards. */
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

/* Appends one event to the open group of s's log (its ts 5 ms before its arrival, kind 0); the
 * group is written by commit_log(). Returns its seq. */
static int64_t append(store *s, int64_t received, int type, const char *user, const char *anon,
                      const char *mid, const char *body) {
    evlog_rec r = {
        .received_ms = received,
        .ts_ms = received - 5,
        .type = type,
        .user_id = user,
        .anonymous_id = anon,
        .message_id = mid,
        .body = body,
        .body_len = strlen(body),
    };
    if (evlog_append(store_log(s), &r)) fail_msg("append: %s", evlog_errmsg());
    return r.seq;
}

static void commit_log(store *s) {
    if (evlog_commit(store_log(s))) fail_msg("commit: %s", evlog_errmsg());
}

/* One event, written and durable on its own. */
static int64_t insert(store *s, int64_t received, int type, const char *user, const char *anon,
                      const char *mid, const char *body) {
    int64_t seq = append(s, received, type, user, anon, mid, body);
    commit_log(s);
    return seq;
}

/* NULL-safe string equality for record fields (absent ids are NULL). */
static void expect_str(const char *got, const char *want) {
    if (!want) {
        if (got) fail_msg("got \"%s\", expected NULL", got);
        return;
    }
    if (!got) fail_msg("got NULL, expected \"%s\"", want);
    assert_string_equal(got, want);
}

/* The record of the given seq, as it should be. */
typedef struct want_rec {
    int64_t seq, received_ms, ts_ms;
    int type, kind;
    const char *user, *anon, *mid, *body;
} want_rec;

static void expect_rec(const evlog_rec *r, const want_rec *w) {
    assert_int_equal(r->seq, w->seq);
    assert_int_equal(r->received_ms, w->received_ms);
    assert_int_equal(r->ts_ms, w->ts_ms);
    assert_int_equal(r->type, w->type);
    assert_int_equal(r->kind, w->kind);
    expect_str(r->user_id, w->user);
    expect_str(r->anonymous_id, w->anon);
    expect_str(r->message_id, w->mid);
    assert_int_equal(r->body_len, strlen(w->body));
    assert_memory_equal(r->body, w->body, r->body_len);
    assert_int_equal(r->body[r->body_len], '\0');
}

/* A scan that checks every live record against want[0..n) in order. */
typedef struct scan_check {
    const want_rec *want;
    size_t n, seen;
} scan_check;

static int check_next(const evlog_rec *r, void *arg) {
    scan_check *c = arg;
    if (c->seen == c->n) fail_msg("an extra record, seq %lld", (long long)r->seq);
    expect_rec(r, &c->want[c->seen++]);
    return 0;
}

/* The log holds exactly want[0..n), by scan and by reading each seq, and nothing after the last. */
static void expect_log(evlog *l, const want_rec *want, size_t n) {
    scan_check c = {want, n, 0};
    assert_int_equal(evlog_scan(l, 1, check_next, &c), 0);
    assert_int_equal(c.seen, n);
    assert_int_equal(evlog_count(l), n);
    buf scratch = BUF_INIT(0);
    for (size_t i = 0; i < n; i++) {
        evlog_rec r;
        assert_int_equal(evlog_read(l, want[i].seq, &r, &scratch), 1);
        expect_rec(&r, &want[i]);
    }
    int64_t last = n ? want[n - 1].seq : 0;
    assert_int_equal(evlog_last_seq(l), last);
    evlog_rec r;
    assert_int_equal(evlog_read(l, last + 1, &r, &scratch), 0);
    buf_free(&scratch);
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
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
    char file[300];
    snprintf(file, sizeof file, "%s/engaged.db", path);
    assert_true(exists(file));
    snprintf(file, sizeof file, "%s/events", path);
    assert_true(is_dir(file)); /* the log */
    snprintf(file, sizeof file, "%s/events/00000001.log", path);
    assert_true(exists(file));
    sqlite3 *db = store_writer(f->s);
    assert_non_null(db);
    assert_int_equal(int_query(db, "PRAGMA user_version"), 3);
    assert_string_equal(text_query(db, "PRAGMA journal_mode", text, sizeof text), "wal");
    assert_int_equal(int_query(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                                   "name IN ('api_keys', 'meta')"),
                     2);
    /* Events are no longer kept in the database. */
    assert_int_equal(int_query(db, "SELECT count(*) FROM sqlite_master WHERE name = 'events'"), 0);
    assert_ptr_not_equal(store_log(f->s), NULL);
    assert_int_equal(store_count_events(f->s), 0);
    assert_int_equal(insert(f->s, 1000, 1, "u", NULL, "m1", "{\"n\":1}"), 1);

    /* Reopening keeps the data and the schema version; a trailing slash names the same dir. */
    store_close(f->s);
    f->s = open_in(f, "/a/b/c/");
    assert_int_equal(store_count_events(f->s), 1);
    assert_int_equal(int_query(store_writer(f->s), "PRAGMA user_version"), 3);
    const want_rec want = {1, 1000, 995, 1, 0, "u", NULL, "m1", "{\"n\":1}"};
    expect_log(store_log(f->s), &want, 1);
}

/* ---- migrating the events table of schemas 0 to 2 into the log ---- */

/* The rows of an old events table, in seq order; the deleted ones were erased (schema 2 deleted
 * rows, leaving gaps in seq). Row 4 is an engine command: no ids, message_id ''. */
static const struct old_row {
    int64_t seq, received, ts;
    int type, kind;
    const char *user, *anon, *mid, *body;
    bool deleted;
} old_rows[] = {
    {1, 1000, 995, 1, 0, "u1", NULL, "m1", "{\"n\":1}", false},
    {2, 1000, 990, 0, 0, NULL, "a1", "m2", "{\"n\":2}", false},
    {3, 1500, 1500, 1, 0, "gone", NULL, "m3", "{\"n\":3}", true},
    {4, 2000, 1800, STORE_TYPE_COMMAND, 0, NULL, NULL, "", "{\"op\":\"catalog\"}", false},
    {5, 3000, 2999, 1, 3, "u2", "a2", "m5", "{\"n\":5,\"s\":\"\xc3\xa9 \\\"q\\\"\"}", false},
    {6, 3000, 3000, 1, 0, "gone", "gone", "m6", "{\"n\":6}", true},
    {7, 3000, 3001, 2, 0, "u1", "a1", "m7", "{\"n\":7}", false},
};
#define OLD_ROWS (sizeof old_rows / sizeof old_rows[0])
#define OLD_LIVE 5

/* What the log holds after the migration: the live rows in order, numbered densely from 1, an
 * empty message id absent. */
static size_t migrated(want_rec *out) {
    size_t n = 0;
    for (size_t i = 0; i < OLD_ROWS; i++) {
        const struct old_row *o = &old_rows[i];
        if (o->deleted) continue;
        out[n] = (want_rec){
            .seq = (int64_t)n + 1,
            .received_ms = o->received,
            .ts_ms = o->ts,
            .type = o->type,
            .kind = o->kind,
            .user = o->user,
            .anon = o->anon,
            .mid = *o->mid ? o->mid : NULL,
            .body = o->body,
        };
        n++;
    }
    return n;
}

static void exec_ok(sqlite3 *db, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
}

/* Writes, with SQLite alone, the database of an older engaged in dir: the events table of schemas
 * 0 to 2 holding old_rows (the deleted ones removed), with version 1's indexes on it when asked,
 * a meta setting, and PRAGMA user_version = version. */
static void make_old_db(const char *dir, int version, bool v1_indexes) {
    char path[256];
    snprintf(path, sizeof path, "%s/engaged.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode=WAL;"
                "CREATE TABLE events ("
                "  seq INTEGER PRIMARY KEY,"
                "  received_at INTEGER NOT NULL,"
                "  ts INTEGER NOT NULL,"
                "  type INTEGER NOT NULL,"
                "  kind INTEGER NOT NULL,"
                "  user_id TEXT,"
                "  anonymous_id TEXT,"
                "  message_id TEXT NOT NULL,"
                "  body TEXT NOT NULL);"
                "CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
                "INSERT INTO meta VALUES ('kept', 'yes');");
    if (v1_indexes)
        exec_ok(db, "CREATE INDEX events_user ON events(user_id) WHERE user_id IS NOT NULL;"
                    "CREATE INDEX events_anon ON events(anonymous_id) WHERE anonymous_id IS NOT "
                    "NULL;"
                    "CREATE INDEX events_received ON events(received_at);");
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO events(seq, received_at, ts, type, kind, "
                                        "user_id, anonymous_id, message_id, body) "
                                        "VALUES (?,?,?,?,?,?,?,?,?)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (size_t i = 0; i < OLD_ROWS; i++) {
        const struct old_row *o = &old_rows[i];
        sqlite3_bind_int64(st, 1, o->seq);
        sqlite3_bind_int64(st, 2, o->received);
        sqlite3_bind_int64(st, 3, o->ts);
        sqlite3_bind_int(st, 4, o->type);
        sqlite3_bind_int(st, 5, o->kind);
        if (o->user)
            sqlite3_bind_text(st, 6, o->user, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 6);
        if (o->anon)
            sqlite3_bind_text(st, 7, o->anon, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 7);
        sqlite3_bind_text(st, 8, o->mid, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 9, o->body, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) fail_msg("insert: %s", sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < OLD_ROWS; i++) {
        char sql[64];
        if (!old_rows[i].deleted) continue;
        snprintf(sql, sizeof sql, "DELETE FROM events WHERE seq = %lld",
                 (long long)old_rows[i].seq);
        exec_ok(db, sql);
    }
    assert_int_equal(int_query(db, "SELECT count(*) FROM events"), OLD_LIVE);
    char set_version[64];
    snprintf(set_version, sizeof set_version, "PRAGMA user_version=%d", version);
    exec_ok(db, set_version);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The store holds the migrated rows and nothing else; the table and its indexes are gone, the log
 * is in place and no temporary log is left. */
static void expect_migrated(fixture *f) {
    sqlite3 *db = store_writer(f->s);
    assert_int_equal(int_query(db, "PRAGMA user_version"), 3);
    assert_int_equal(int_query(db, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'events%'"),
                     0);
    char text[64];
    assert_string_equal(text_query(db, "SELECT v FROM meta WHERE k = 'kept'", text, sizeof text),
                        "yes");
    char path[256];
    snprintf(path, sizeof path, "%s/events", f->dir);
    assert_true(is_dir(path));
    snprintf(path, sizeof path, "%s/events.migrating", f->dir);
    assert_false(exists(path));
    want_rec want[OLD_ROWS];
    size_t n = migrated(want);
    assert_int_equal(n, OLD_LIVE);
    expect_log(store_log(f->s), want, n);
    assert_int_equal(store_count_events(f->s), OLD_LIVE);
    /* Queries see the events, not the command. */
    expect_query(f->s, any(100),
                 "[{\"n\":1},{\"n\":2},{\"n\":5,\"s\":\"\xc3\xa9 \\\"q\\\"\"},{\"n\":7}]", -1);
}

/* Migrates, then reopens: nothing is copied twice, and the log goes on after the moved records. */
static void expect_migrated_and_reopen(fixture *f) {
    expect_migrated(f);
    store_close(f->s);
    f->s = open_in(f, NULL);
    expect_migrated(f);
    assert_int_equal(insert(f->s, 4000, 1, "u3", NULL, "m8", "{\"n\":8}"), OLD_LIVE + 1);
    assert_int_equal(store_count_events(f->s), OLD_LIVE + 1);
}

static void test_open_migrates_v2(void **state) {
    fixture *f = *state;
    make_old_db(f->dir, 2, false);
    f->s = open_in(f, NULL);
    expect_migrated_and_reopen(f);
}

static void test_open_migrates_unversioned(void **state) {
    fixture *f = *state;
    /* A database with no version yet (0) gets the schema and the current version; a table of its
     * own is left alone, and its events are moved into the log. */
    make_old_db(f->dir, 0, false);
    char path[256];
    snprintf(path, sizeof path, "%s/engaged.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE other(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    f->s = open_in(f, NULL);
    assert_int_equal(int_query(store_writer(f->s), "SELECT count(*) FROM sqlite_master WHERE "
                                                   "type = 'table' AND name IN ('other', "
                                                   "'api_keys', 'meta')"),
                     3);
    expect_migrated_and_reopen(f);
    assert_int_equal(
        int_query(store_writer(f->s), "SELECT count(*) FROM sqlite_master WHERE name = 'other'"),
        1);
}

/* A version-1 store (ids indexed in SQLite): the indexes go with the table; the person index in
 * memory replaced them. */
static void test_open_migrates_v1(void **state) {
    fixture *f = *state;
    make_old_db(f->dir, 1, true);
    f->s = open_in(f, NULL);
    assert_int_equal(int_query(store_writer(f->s),
                               "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                               "name LIKE 'events_%'"),
                     0);
    expect_migrated_and_reopen(f);
}

/* A migration interrupted by a crash left the table and a partial log under the temporary name
 * (the version was already set: it is written before the log is opened). The next open throws the
 * partial log away and starts again. */
static void test_open_redoes_interrupted_migration(void **state) {
    fixture *f = *state;
    make_old_db(f->dir, 3, false);
    char tmp[256], err[512] = "";
    snprintf(tmp, sizeof tmp, "%s/events.migrating", f->dir);
    evlog *l = evlog_open(tmp, NULL, err, sizeof err);
    if (!l) fail_msg("evlog_open: %s", err);
    for (int i = 0; i < 2; i++) { /* the first rows, copied and committed before the crash */
        evlog_rec r = {.received_ms = 1000,
                       .ts_ms = 995,
                       .type = 1,
                       .message_id = "m1",
                       .body = "{\"n\":1}",
                       .body_len = 7};
        assert_int_equal(evlog_append(l, &r), 0);
    }
    assert_int_equal(evlog_commit(l), 0);
    evlog_rec r = {.received_ms = 1000, .type = 1, .body = "{}", .body_len = 2};
    assert_int_equal(evlog_append(l, &r), 0); /* and an open group */
    evlog_close(l);
    /* And junk besides: a stray file and a directory. */
    char path[300];
    snprintf(path, sizeof path, "%s/junk", tmp);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("not a log\n", fp);
    fclose(fp);
    snprintf(path, sizeof path, "%s/sub", tmp);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/sub/00000002.log", tmp);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("garbage", fp);
    fclose(fp);

    f->s = open_in(f, NULL);
    expect_migrated_and_reopen(f);
}

/* A crash after the complete log was renamed into place and before the table was dropped: the log
 * is the truth; the table is dropped and nothing of it copied again. (The log's records differ
 * from the table's here, to tell which one survived.) */
static void test_open_finishes_migration_after_rename(void **state) {
    fixture *f = *state;
    make_old_db(f->dir, 3, false);
    char dir[256], err[512] = "";
    snprintf(dir, sizeof dir, "%s/events", f->dir);
    evlog *l = evlog_open(dir, NULL, err, sizeof err);
    if (!l) fail_msg("evlog_open: %s", err);
    const want_rec want[] = {
        {1, 500, 490, 1, 0, "x", NULL, "x1", "{\"log\":1}"},
        {2, 600, 590, STORE_TYPE_COMMAND, 0, NULL, NULL, NULL, "{\"op\":\"x\"}"},
        {3, 700, 690, 2, 4, "x", "y", "x3", "{\"log\":3}"},
    };
    for (size_t i = 0; i < 3; i++) {
        evlog_rec r = {.received_ms = want[i].received_ms,
                       .ts_ms = want[i].ts_ms,
                       .type = want[i].type,
                       .kind = want[i].kind,
                       .user_id = want[i].user,
                       .anonymous_id = want[i].anon,
                       .message_id = want[i].mid,
                       .body = want[i].body,
                       .body_len = strlen(want[i].body)};
        assert_int_equal(evlog_append(l, &r), 0);
    }
    assert_int_equal(evlog_commit(l), 0);
    evlog_close(l);

    for (int pass = 0; pass < 2; pass++) { /* and again after reopening */
        f->s = open_in(f, NULL);
        assert_int_equal(int_query(store_writer(f->s),
                                   "SELECT count(*) FROM sqlite_master WHERE name LIKE 'events%'"),
                         0);
        assert_int_equal(int_query(store_writer(f->s), "PRAGMA user_version"), 3);
        expect_log(store_log(f->s), want, 3);
        assert_int_equal(store_count_events(f->s), 3);
        store_close(f->s);
        f->s = NULL;
    }
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
             "%s/engaged.db: the data was written by a newer engaged (schema 99 > 3)", f->dir);
    assert_string_equal(err, expect);
    /* Refusing leaves the version (and the data) as they were. */
    char path[256];
    snprintf(path, sizeof path, "%s/engaged.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(int_query(db, "PRAGMA user_version"), 99);
    sqlite3_close(db);
    snprintf(path, sizeof path, "%s/events", f->dir);
    evlog *l = evlog_open(path, NULL, err, sizeof err);
    if (!l) fail_msg("evlog_open: %s", err);
    const want_rec want = {1, 1000, 995, 1, 0, "u", NULL, "m1", "{}"};
    expect_log(l, &want, 1);
    evlog_close(l);
}

/* The event log has one writer: a second store_open() of the same directory fails while the first
 * is open; store_open_db(), for the keys command beside a running server, opens the database alone
 * and sees what the first writes. */
static void test_one_writer(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    char err[512] = "";
    store *second = store_open(f->dir, err, sizeof err);
    assert_null(second);
    assert_non_null(strstr(err, "in use by another process"));
    store *db = store_open_db(f->dir, err, sizeof err);
    if (!db) fail_msg("store_open_db: %s", err);
    assert_null(store_log(db));
    assert_int_equal(store_exec(store_writer(db), "INSERT INTO meta(k, v) VALUES ('who', 'db')"),
                     0);
    assert_int_equal(int_query(store_writer(f->s), "SELECT count(*) FROM meta WHERE k = 'who'"), 1);
    store_close(db);
    store_close(f->s);
    f->s = open_in(f, NULL); /* the lock went with the first */
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

    /* A log that cannot be opened: DIR/events is a regular file. The reason names it. */
    snprintf(dir, sizeof dir, "%s/nolog", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/events", dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    err[0] = '\0';
    assert_null(store_open(dir, err, sizeof err));
    snprintf(expect, sizeof expect, "%s/engaged.db: %s/", dir, path);
    if (strncmp(err, expect, strlen(expect)) != 0 || !strstr(err, "Not a directory"))
        fail_msg("unexpected reason: %s", err);
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
        assert_int_equal(
            append(s, rows[i].received, rows[i].type, rows[i].user, rows[i].anon, mid, body),
            i + 1);
    }
    commit_log(s);
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
    q.user_id = "x' OR '1'='1"; /* values are compared as they are, never interpreted */
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
    assert_int_equal(store_count_events(f->s), 0);
    assert_true(store_first_seq_since(f->s, INT64_MIN) == INT64_MAX);
    fill(f->s);
    assert_int_equal(store_count_events(f->s), 10);
    assert_int_equal(store_first_seq_since(f->s, INT64_MIN), 1);
    assert_int_equal(store_first_seq_since(f->s, 1000), 1);
    assert_int_equal(store_first_seq_since(f->s, 1001), 3);
    assert_int_equal(store_first_seq_since(f->s, 3000), 5);
    assert_int_equal(store_first_seq_since(f->s, 4500), 8);
    assert_int_equal(store_first_seq_since(f->s, 6000), 10);
    assert_true(store_first_seq_since(f->s, 6001) == INT64_MAX);
    /* Commands count as records; erased records do not, but keep their place in time. */
    assert_int_equal(insert(f->s, 7000, STORE_TYPE_COMMAND, NULL, NULL, NULL, "{\"op\":\"x\"}"),
                     11);
    assert_int_equal(store_count_events(f->s), 11);
    assert_int_equal(store_first_seq_since(f->s, 6001), 11);
    assert_int_equal(store_erase(f->s, (const int64_t[]){3, 4, 4, 99}, 4), 0);
    assert_int_equal(store_count_events(f->s), 9);
    assert_int_equal(store_first_seq_since(f->s, 1001), 3);
    assert_int_equal(store_first_seq_since(f->s, 2000), 3);
}

/* The binary search agrees with a linear scan over a log with runs of equal times and erased
 * records (the old store had holes in seq; the log keeps an erased record's header, and with it
 * its place and its arrival time), for every bound around every stored time; and still after a
 * reopen, which recovers the erased records. 300 events, then the command that erased some of
 * them, written with the erasure as the committer does. */
#define GAP_EVENTS 300

static bool gap_erased(int64_t seq) {
    return seq <= GAP_EVENTS &&
           (seq % 7 == 0 || (seq >= 100 && seq <= 140) || seq == 1 || seq == GAP_EVENTS);
}

static void expect_first_seqs(store *s, const int64_t *times, int64_t n) {
    int nerased = 0;
    for (int64_t seq = 1; seq <= n; seq++)
        nerased += gap_erased(seq);
    assert_int_equal(nerased, 79); /* 42 multiples of 7, 35 more in 100..140, 1 and 300 */
    assert_int_equal(store_count_events(s), n - nerased);
    assert_int_equal(evlog_last_seq(store_log(s)), n);
    buf scratch = BUF_INIT(0);
    for (int64_t seq = 1; seq <= n; seq++) {
        evlog_rec r;
        assert_int_equal(evlog_read(store_log(s), seq, &r, &scratch), gap_erased(seq) ? 0 : 1);
    }
    buf_free(&scratch);
    int erased_answers = 0, none = 0;
    for (int64_t since = times[0] - 10; since <= times[n - 1] + 2; since++) {
        int64_t want = INT64_MAX;
        for (int64_t i = 0; i < n; i++)
            if (times[i] >= since) {
                want = i + 1;
                break;
            }
        int64_t got = store_first_seq_since(s, since);
        if (got != want)
            fail_msg("since %lld: %lld, expected %lld", (long long)since, (long long)got,
                     (long long)want);
        erased_answers += want != INT64_MAX && gap_erased(want);
        none += want == INT64_MAX;
    }
    assert_true(erased_answers > 10); /* the answer is often an erased record */
    assert_int_equal(none, 2);
}

static void test_first_seq_since_with_gaps(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    int64_t times[GAP_EVENTS + 1];
    uint32_t x = 12345;
    int64_t t = 1000;
    for (int i = 0; i < GAP_EVENTS; i++) {
        x = x * 1103515245u + 12345u;
        t += (x >> 16) % 3; /* steps of 0, 1 or 2 ms: many equal times */
        times[i] = t;
        char mid[16];
        snprintf(mid, sizeof mid, "m%d", i);
        append(f->s, t, 1, "u", NULL, mid, "{}");
    }
    commit_log(f->s);
    int64_t erase[GAP_EVENTS];
    size_t n = 0;
    for (int64_t seq = 1; seq <= GAP_EVENTS; seq++)
        if (gap_erased(seq)) erase[n++] = seq;
    assert_int_equal(evlog_erase(store_log(f->s), erase, n), 0);
    times[GAP_EVENTS] = t + 3;
    assert_int_equal(
        insert(f->s, t + 3, STORE_TYPE_COMMAND, NULL, NULL, NULL, "{\"op\":\"erase\"}"),
        GAP_EVENTS + 1);
    expect_first_seqs(f->s, times, GAP_EVENTS + 1);
    store_close(f->s);
    f->s = open_in(f, NULL);
    expect_first_seqs(f->s, times, GAP_EVENTS + 1);
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
    for (int i = 0; i < 700; i++) {
        char mid[16], body[32], user[8], anon[8];
        snprintf(mid, sizeof mid, "m%d", i);
        snprintf(body, sizeof body, "{\"n\":%d}", i);
        snprintf(user, sizeof user, "u%d", i % 3);
        snprintf(anon, sizeof anon, "a%d", i % 5);
        append(f->s, 1000 + i, i % 2, i % 7 ? user : NULL, anon, mid, body);
    }
    commit_log(f->s);
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
    char json[64], meta[16];
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
    sqlite3_stmt *st;
    if (j->db &&
        sqlite3_prepare_v2(j->db, "SELECT v FROM meta WHERE k = 'k'", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(j->meta, sizeof j->meta, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    return NULL;
}

static void test_readers(void **state) {
    fixture *f = *state;
    f->s = open_in(f, NULL);
    sqlite3 *mine = store_reader(f->s);
    assert_non_null(mine);
    assert_ptr_not_equal(mine, store_writer(f->s));
    assert_int_equal(int_query(mine, "SELECT count(*) FROM meta"), 0);
    /* The reader is read-only. */
    assert_int_equal(sqlite3_exec(mine, "DELETE FROM meta", NULL, NULL, NULL), SQLITE_READONLY);
    assert_int_equal(store_exec(store_writer(f->s), "INSERT INTO meta VALUES ('k', 'v1')"), 0);
    /* A reader used before a write sees the write afterwards. */
    char text[16];
    assert_string_equal(text_query(mine, "SELECT v FROM meta WHERE k = 'k'", text, sizeof text),
                        "v1");
    assert_int_equal(store_count_events(f->s), 0);
    fill(f->s);
    assert_int_equal(store_count_events(f->s), 10);

    /* Readers opened on other threads, which end before store_close(): closed by it (a leak would
     * show under ASan). The log is read from those threads too. */
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
        assert_string_equal(jobs[i].meta, "v1");
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
        T(test_open_migrates_v2),
        T(test_open_migrates_unversioned),
        T(test_open_migrates_v1),
        T(test_open_redoes_interrupted_migration),
        T(test_open_finishes_migration_after_rename),
        T(test_open_refuses_newer_schema),
        T(test_open_errors),
        T(test_one_writer),
        T(test_exec_errors),
        T(test_query_filters),
        T(test_query_paging),
        T(test_query_hostile_values),
        T(test_query_size_cap),
        T(test_counts_and_first_seq),
        T(test_first_seq_since_with_gaps),
        T(test_query_through_person_index),
        T(test_readers),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
