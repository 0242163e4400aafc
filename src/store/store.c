#include "store/store.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/pindex.h"
#include "util/log.h"

/* Bump when the schema changes; store_open() refuses a newer one and migrates older ones. */
#define STORE_SCHEMA_VERSION 2

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS events ("
    "  seq INTEGER PRIMARY KEY,"      /* arrival order, the cursor of GET /v1/events */
    "  received_at INTEGER NOT NULL," /* ms since the epoch; never decreases along seq */
    "  ts INTEGER NOT NULL,"          /* the event's own (corrected) time */
    "  type INTEGER NOT NULL,"        /* ev_type */
    "  kind INTEGER NOT NULL,"        /* cm_kind, 0 for none */
    "  user_id TEXT,"
    "  anonymous_id TEXT,"
    "  message_id TEXT NOT NULL,"
    "  body TEXT NOT NULL);"
    /* Version 1 indexed user_id, anonymous_id and received_at in SQLite; pindex.h and the
     * monotonic received_at replaced them. */
    "DROP INDEX IF EXISTS events_user;"
    "DROP INDEX IF EXISTS events_anon;"
    "DROP INDEX IF EXISTS events_received;"
    "CREATE TABLE IF NOT EXISTS api_keys ("
    "  id INTEGER PRIMARY KEY,"
    "  scope TEXT NOT NULL CHECK (scope IN ('write','admin')),"
    "  hash TEXT NOT NULL UNIQUE,"    /* hex SHA-256 of the key: keys are never stored in clear */
    "  prefix TEXT NOT NULL,"         /* the first characters, to recognise a key in listings */
    "  rate REAL NOT NULL DEFAULT 0," /* events per second; 0: the server's default */
    "  label TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  revoked_at INTEGER);"
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);";

struct store {
    char dir[PATH_MAX];
    char path[PATH_MAX];
    sqlite3 *writer;
    pthread_key_t reader_key;
    /* Every reader ever opened, so store_close() can close them whatever thread opened them. */
    pthread_mutex_t readers_lock;
    sqlite3 **readers;
    size_t nreaders;
    pindex *people; /* NULL until store_index_load() */
};

static __thread char last_error[512];

const char *store_errmsg(void) {
    return last_error;
}

static int fail(const char *what, sqlite3 *db) {
    snprintf(last_error, sizeof last_error, "%s: %s", what,
             db ? sqlite3_errmsg(db) : "out of memory");
    return -1;
}

int store_exec(sqlite3 *db, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(last_error, sizeof last_error, "%s", msg ? msg : "sqlite error");
        log_error("store: %s (in: %.80s)", last_error, sql);
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static sqlite3 *open_conn(const char *path, bool readonly) {
    sqlite3 *db = NULL;
    int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        fail("open", db);
        sqlite3_close(db);
        return NULL;
    }
    /* A CLI command (import, keys) may hold the write lock briefly while the server runs. */
    sqlite3_busy_timeout(db, 10000);
    return db;
}

static int mkdir_p(const char *dir) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    if (!*tmp) { /* the loop below would start past the NUL */
        errno = ENOENT;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0750) && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0750) && errno != EEXIST ? -1 : 0;
}

static int schema_version(sqlite3 *db) {
    sqlite3_stmt *st;
    int v = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

store *store_open(const char *dir, char *err, size_t errlen) {
    store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (snprintf(s->dir, sizeof s->dir, "%s", dir) >= (int)sizeof s->dir ||
        snprintf(s->path, sizeof s->path, "%s/engaged.db", dir) >= (int)sizeof s->path) {
        snprintf(err, errlen, "data directory path too long");
        free(s);
        return NULL;
    }
    if (mkdir_p(dir)) {
        snprintf(err, errlen, "cannot create data directory %s: %s", dir, strerror(errno));
        free(s);
        return NULL;
    }
    s->writer = open_conn(s->path, false);
    if (!s->writer) {
        snprintf(err, errlen, "%s: %s", s->path, last_error);
        free(s);
        return NULL;
    }
    /* WAL with synchronous=FULL: a committed transaction's WAL frames are fsync'd before COMMIT
     * returns, which is what lets a 200 mean "on disk". While a committer runs, it checkpoints on
     * a thread of its own (commit.c); without one, SQLite's automatic checkpoints apply. */
    static const char *const pragmas = "PRAGMA journal_mode=WAL;"
                                       "PRAGMA synchronous=FULL;"
                                       "PRAGMA cache_size=-65536;"
                                       "PRAGMA temp_store=MEMORY;";
    int v = schema_version(s->writer);
    if (store_exec(s->writer, pragmas) || v < 0) goto fail;
    if (v > STORE_SCHEMA_VERSION) {
        snprintf(last_error, sizeof last_error,
                 "the data was written by a newer engaged (schema %d > %d)", v,
                 STORE_SCHEMA_VERSION);
        goto fail;
    }
    char set_version[64];
    snprintf(set_version, sizeof set_version, "PRAGMA user_version=%d", STORE_SCHEMA_VERSION);
    if (store_exec(s->writer, "BEGIN") || store_exec(s->writer, schema_sql) ||
        store_exec(s->writer, set_version) || store_exec(s->writer, "COMMIT"))
        goto fail;
    pthread_key_create(&s->reader_key, NULL);
    pthread_mutex_init(&s->readers_lock, NULL);
    return s;
fail:
    snprintf(err, errlen, "%s: %s", s->path, last_error);
    sqlite3_close(s->writer);
    free(s);
    return NULL;
}

void store_close(store *s) {
    if (!s) return;
    pindex_free(s->people);
    for (size_t i = 0; i < s->nreaders; i++)
        sqlite3_close(s->readers[i]);
    free(s->readers);
    pthread_key_delete(s->reader_key);
    pthread_mutex_destroy(&s->readers_lock);
    /* The last connection to close checkpoints the WAL into the main file. */
    sqlite3_close(s->writer);
    free(s);
}

const char *store_dir(const store *s) {
    return s->dir;
}

sqlite3 *store_writer(store *s) {
    return s->writer;
}

sqlite3 *store_reader(store *s) {
    sqlite3 *db = pthread_getspecific(s->reader_key);
    if (db) return db;
    db = open_conn(s->path, true);
    if (!db) return NULL;
    pthread_mutex_lock(&s->readers_lock);
    sqlite3 **grown = realloc(s->readers, (s->nreaders + 1) * sizeof *grown);
    if (grown) {
        s->readers = grown;
        s->readers[s->nreaders++] = db;
    }
    pthread_mutex_unlock(&s->readers_lock);
    if (!grown) {
        sqlite3_close(db);
        return NULL;
    }
    pthread_setspecific(s->reader_key, db);
    return db;
}

/* Appends the bodies of the rows st yields (seq, body), up to q->limit, to out. */
static int append_rows(sqlite3_stmt *st, const store_query *q, buf *out, int *rows, int64_t *last,
                       int64_t *next_seq) {
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*rows == q->limit) {
            *next_seq = *last;
            return 1;
        }
        *last = sqlite3_column_int64(st, 0);
        const void *body = sqlite3_column_blob(st, 1);
        int len = sqlite3_column_bytes(st, 1);
        if ((*rows && buf_putc(out, ',')) || buf_append(out, body, (size_t)len)) {
            snprintf(last_error, sizeof last_error, "result too large");
            return -1;
        }
        (*rows)++;
    }
    return rc == SQLITE_DONE ? 0 : -1;
}

/* A person's events: their seqs from the person index, each row checked against the other filters
 * by primary key. Cost: O(log n) to find the place, then one seek per candidate. */
static int query_person(sqlite3 *db, store *s, const store_query *q, int64_t after, buf *out,
                        int *rows, int64_t *last, int64_t *next_seq) {
    bool by_user = q->user_id != NULL;
    const char *id = by_user ? q->user_id : q->anonymous_id;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT seq, body FROM events WHERE seq = ?1 AND (?2 IS NULL OR "
                           "anonymous_id = ?2) AND (?3 < 0 OR type = ?3)",
                           -1, &st, NULL) != SQLITE_OK)
        return fail("query", db);
    if (by_user && q->anonymous_id) sqlite3_bind_text(st, 2, q->anonymous_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, q->type);
    int64_t seqs[256];
    int rc = 0;
    for (;;) {
        size_t n = pindex_get(s->people, by_user ? PINDEX_USER : PINDEX_ANON, id, strlen(id), after,
                              seqs, sizeof seqs / sizeof seqs[0]);
        for (size_t i = 0; i < n && rc == 0; i++) {
            sqlite3_bind_int64(st, 1, seqs[i]);
            rc = append_rows(st, q, out, rows, last, next_seq);
            sqlite3_reset(st);
        }
        if (rc || n < sizeof seqs / sizeof seqs[0]) break;
        after = seqs[n - 1];
    }
    if (rc < 0 && !*last_error) fail("query", db);
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

int store_query_events(store *s, const store_query *q, buf *out, int64_t *next_seq) {
    sqlite3 *db = store_reader(s);
    if (!db) return -1;
    last_error[0] = '\0';
    int64_t after = q->after_seq;
    if (q->since_ms != INT64_MIN) {
        int64_t first = store_first_seq_since(db, q->since_ms);
        if (first == INT64_MAX) first = INT64_MAX - 1; /* nothing that recent: an empty page */
        if (first - 1 > after) after = first - 1;
    }
    int rows = 0;
    int64_t last = -1;
    *next_seq = -1;
    if (buf_putc(out, '[')) return -1;
    if (s->people && (q->user_id || q->anonymous_id)) {
        if (query_person(db, s, q, after, out, &rows, &last, next_seq)) return -1;
        return buf_putc(out, ']') ? -1 : 0;
    }
    /* Without the person index (CLI commands), ids are filtered by a scan. */
    char sql[512];
    int n = snprintf(sql, sizeof sql, "SELECT seq, body FROM events WHERE seq > ?1 AND type < %d",
                     STORE_TYPE_COMMAND);
    if (q->user_id) n += snprintf(sql + n, sizeof sql - (size_t)n, " AND user_id = ?2");
    if (q->anonymous_id) n += snprintf(sql + n, sizeof sql - (size_t)n, " AND anonymous_id = ?3");
    if (q->type >= 0) n += snprintf(sql + n, sizeof sql - (size_t)n, " AND type = ?4");
    snprintf(sql + n, sizeof sql - (size_t)n, " ORDER BY seq LIMIT ?6");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return fail("query", db);
    sqlite3_bind_int64(st, 1, after);
    if (q->user_id) sqlite3_bind_text(st, 2, q->user_id, -1, SQLITE_STATIC);
    if (q->anonymous_id) sqlite3_bind_text(st, 3, q->anonymous_id, -1, SQLITE_STATIC);
    if (q->type >= 0) sqlite3_bind_int(st, 4, q->type);
    sqlite3_bind_int(st, 6, q->limit + 1); /* one more tells whether a next page exists */
    int rc = append_rows(st, q, out, &rows, &last, next_seq);
    if (rc < 0 && !*last_error) fail("query", db);
    sqlite3_finalize(st);
    if (rc < 0) return -1;
    return buf_putc(out, ']') ? -1 : 0;
}

int store_index_load(store *s, int64_t recent_ms,
                     int (*recent)(int64_t seq, const char *message_id, void *arg), void *arg) {
    pindex *people = pindex_new();
    sqlite3_stmt *st;
    if (!people || sqlite3_prepare_v2(s->writer,
                                      "SELECT seq, received_at, user_id, anonymous_id, "
                                      "message_id FROM events ORDER BY seq",
                                      -1, &st, NULL) != SQLITE_OK) {
        pindex_free(people);
        return fail("index load", s->writer);
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        for (int k = 0; k < 2; k++) {
            const char *id = (const char *)sqlite3_column_text(st, 2 + k);
            if (id && pindex_add(people, k ? PINDEX_ANON : PINDEX_USER, id,
                                 (size_t)sqlite3_column_bytes(st, 2 + k), seq))
                goto nomem;
        }
        if (sqlite3_column_int64(st, 1) >= recent_ms &&
            recent(seq, (const char *)sqlite3_column_text(st, 4), arg))
            goto nomem;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        pindex_free(people);
        return fail("index load", s->writer);
    }
    pindex_free(s->people);
    s->people = people;
    return 0;
nomem:
    sqlite3_finalize(st);
    pindex_free(people);
    snprintf(last_error, sizeof last_error, "index load: out of memory");
    return -1;
}

pindex *store_people(store *s) {
    return s->people;
}

/* The first column of the first row of sql, binding arg to ?1 when sql has a parameter; none when
 * there is no row or the value is NULL. */
static int64_t query_int64(sqlite3 *db, const char *sql, int64_t arg, int64_t none) {
    sqlite3_stmt *st;
    int64_t v = none;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return none;
    if (sqlite3_bind_parameter_count(st) > 0) sqlite3_bind_int64(st, 1, arg);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int64_t store_count_events(store *s) {
    sqlite3 *db = store_reader(s);
    return db ? query_int64(db, "SELECT count(*) FROM events", 0, 0) : -1;
}

/* The first row at or after seq x: its seq and received_at, or false when there is none. */
static bool row_at_or_after(sqlite3_stmt *st, int64_t x, int64_t *seq, int64_t *received) {
    sqlite3_bind_int64(st, 1, x);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        *seq = sqlite3_column_int64(st, 0);
        *received = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return found;
}

/* received_at never decreases along seq (the committer keeps it so), so a binary search over seq
 * finds the first row received at or after since_ms: about log2(rows) primary-key seeks, and no
 * index on received_at to slow every insert. */
int64_t store_first_seq_since(sqlite3 *db, int64_t since_ms) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            db, "SELECT seq, received_at FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1", -1, &st,
            NULL) != SQLITE_OK)
        return INT64_MAX;
    int64_t lo, hi, seq, received;
    if (!row_at_or_after(st, INT64_MIN, &lo, &received)) {
        sqlite3_finalize(st);
        return INT64_MAX;
    }
    hi = query_int64(db, "SELECT max(seq) FROM events", 0, lo) + 1;
    /* Smallest x whose first row at or after it was received at or after since_ms (or has none). */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (!row_at_or_after(st, mid, &seq, &received) || received >= since_ms)
            hi = mid;
        else
            lo = seq + 1;
    }
    int64_t first = row_at_or_after(st, lo, &seq, &received) ? seq : INT64_MAX;
    sqlite3_finalize(st);
    return first;
}

int store_each(sqlite3 *db, const int64_t *seqs, size_t n,
               int (*fn)(const store_row *row, void *arg), void *arg) {
    sqlite3_stmt *st;
    const char *sql = seqs ? "SELECT seq, ts, type, kind, body FROM events WHERE seq = ?1"
                           : "SELECT seq, ts, type, kind, body FROM events ORDER BY seq";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return fail("each", db);
    int rc = 0;
    for (size_t i = 0; rc == 0 && (!seqs || i < n); i++) {
        if (seqs) {
            sqlite3_reset(st);
            sqlite3_bind_int64(st, 1, seqs[i]);
        }
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE) {
            if (!seqs) break;
            continue;
        }
        if (step != SQLITE_ROW) {
            rc = fail("each", db);
            break;
        }
        store_row row = {
            .seq = sqlite3_column_int64(st, 0),
            .ts_ms = sqlite3_column_int64(st, 1),
            .type = sqlite3_column_int(st, 2),
            .kind = sqlite3_column_int(st, 3),
            .body = (const char *)sqlite3_column_blob(st, 4),
            .body_len = (size_t)sqlite3_column_bytes(st, 4),
        };
        rc = fn(&row, arg);
    }
    sqlite3_finalize(st);
    return rc;
}

typedef struct bodies_arg {
    buf *out;
    bool first;
} bodies_arg;

static int append_body(const store_row *row, void *arg) {
    bodies_arg *a = arg;
    if ((!a->first && buf_putc(a->out, ',')) || buf_append(a->out, row->body, row->body_len)) {
        snprintf(last_error, sizeof last_error, "result too large");
        return -1;
    }
    a->first = false;
    return 0;
}

int store_bodies(store *s, const int64_t *seqs, size_t n, buf *out) {
    sqlite3 *db = store_reader(s);
    if (!db) return -1;
    bodies_arg a = {out, true};
    if (buf_putc(out, '[') || store_each(db, seqs, n, append_body, &a)) return -1;
    return buf_putc(out, ']') ? -1 : 0;
}
