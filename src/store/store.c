#include "store/store.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/pindex.h"
#include "util/dirsync.h"
#include "util/log.h"

/* Bump when the schema changes; store_open() refuses a newer one and migrates older ones. Version 3
 * moved the events into the log (evlog.h). */
#define STORE_SCHEMA_VERSION 3

static const char *const schema_sql =
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

/* Rows copied per group when migrating the events table of schema 2 into the log. */
#define MIGRATE_GROUP 10000

struct store {
    char dir[PATH_MAX];
    char path[PATH_MAX];
    sqlite3 *writer;
    pthread_key_t reader_key;
    /* Every reader ever opened, so store_close() can close them whatever thread opened them. */
    pthread_mutex_t readers_lock;
    sqlite3 **readers;
    size_t nreaders;
    evlog *log;
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

/* Sets this thread's last error; returns -1. */
static int errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
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

static bool table_exists(sqlite3 *db, const char *name) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    bool yes = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return yes;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Copies the events table of schema 2 into a log at tmp, in seq order (seqs renumbered densely:
 * rows deleted by erasures leave no gaps; nothing stored refers to a seq). */
static int copy_events(sqlite3 *db, const char *tmp) {
    char err[512];
    evlog *l = evlog_open(tmp, NULL, err, sizeof err);
    if (!l) {
        errorf("migrating the events: %s", err);
        return -1;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT received_at, ts, type, kind, user_id, anonymous_id, message_id, "
                           "body FROM events ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK) {
        evlog_close(l);
        return fail("migrating the events", db);
    }
    int rc = SQLITE_DONE, status = 0;
    size_t n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *mid = (const char *)sqlite3_column_text(st, 6);
        evlog_rec r = {
            .received_ms = sqlite3_column_int64(st, 0),
            .ts_ms = sqlite3_column_int64(st, 1),
            .type = sqlite3_column_int(st, 2),
            .kind = sqlite3_column_int(st, 3),
            .user_id = (const char *)sqlite3_column_text(st, 4),
            .anonymous_id = (const char *)sqlite3_column_text(st, 5),
            .message_id = mid && *mid ? mid : NULL,
            .body = (const char *)sqlite3_column_blob(st, 7),
            .body_len = (size_t)sqlite3_column_bytes(st, 7),
        };
        if (evlog_append(l, &r) || (++n % MIGRATE_GROUP == 0 && evlog_commit(l))) {
            status = errorf("migrating the events: %s", evlog_errmsg());
            break;
        }
    }
    if (!status && rc != SQLITE_DONE) status = fail("migrating the events", db);
    sqlite3_finalize(st);
    if (!status && evlog_commit(l)) status = errorf("migrating the events: %s", evlog_errmsg());
    if (!status) log_info("store: %zu events moved from the database into the log", n);
    evlog_close(l);
    return status;
}

/* Opens the log in DIR/events, first moving the events of a schema-2 database into it. */
static int open_log(store *s) {
    char path[PATH_MAX + 16], tmp[PATH_MAX + 32], err[512];
    snprintf(path, sizeof path, "%s/events", s->dir);
    snprintf(tmp, sizeof tmp, "%s/events.migrating", s->dir);
    struct stat st;
    if (table_exists(s->writer, "events")) {
        if (stat(path, &st) != 0) {
            nftw(tmp, rm_entry, 8, FTW_DEPTH | FTW_PHYS); /* an interrupted migration */
            if (copy_events(s->writer, tmp)) return -1;
            if (rename(tmp, path)) {
                errorf("%s: %s", path, strerror(errno));
                return -1;
            }
        }
        if (dir_sync(s->dir)) {
            errorf("%s: %s", s->dir, strerror(errno));
            return -1;
        }
        /* Debian builds SQLite with secure_delete on, which would write every page of the table
         * again (a 5 GB table took 70 s and a 2.7 GB WAL); VACUUM then gives the space back. The
         * erased events' rows were zeroed when they were deleted. */
        if (store_exec(s->writer, "PRAGMA secure_delete=OFF") ||
            store_exec(s->writer, "DROP TABLE events") ||
            store_exec(s->writer, "PRAGMA secure_delete=ON") || store_exec(s->writer, "VACUUM"))
            return -1;
    }
    s->log = evlog_open(path, NULL, err, sizeof err);
    if (!s->log) {
        errorf("%s", err);
        return -1;
    }
    return 0;
}

static store *open_store(const char *dir, bool with_log, char *err, size_t errlen) {
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
        store_exec(s->writer, set_version) || store_exec(s->writer, "COMMIT") ||
        (with_log && open_log(s)))
        goto fail;
    pthread_key_create(&s->reader_key, NULL);
    pthread_mutex_init(&s->readers_lock, NULL);
    return s;
fail:
    snprintf(err, errlen, "%s: %s", s->path, last_error);
    evlog_close(s->log);
    sqlite3_close(s->writer);
    free(s);
    return NULL;
}

store *store_open(const char *dir, char *err, size_t errlen) {
    return open_store(dir, true, err, errlen);
}

store *store_open_db(const char *dir, char *err, size_t errlen) {
    return open_store(dir, false, err, errlen);
}

void store_close(store *s) {
    if (!s) return;
    pindex_free(s->people);
    evlog_close(s->log);
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

evlog *store_log(store *s) {
    return s->log;
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

/* A page being filled: the bodies of matching records, up to q->limit, and the cursor. */
typedef struct page {
    const store_query *q;
    buf *out;
    int rows;
    int64_t last, *next_seq;
} page;

static bool matches(const store_query *q, const evlog_rec *r) {
    return r->type < STORE_TYPE_COMMAND && (q->type < 0 || r->type == q->type) &&
           (!q->user_id || (r->user_id && strcmp(r->user_id, q->user_id) == 0)) &&
           (!q->anonymous_id || (r->anonymous_id && strcmp(r->anonymous_id, q->anonymous_id) == 0));
}

/* Adds r to the page if it matches. Returns 0 to go on, 1 when the page is full and another
 * match exists (the cursor is set), -1 when out is full. */
static int page_add(const evlog_rec *r, void *arg) {
    page *pg = arg;
    if (!matches(pg->q, r)) return 0;
    if (pg->rows == pg->q->limit) {
        *pg->next_seq = pg->last;
        return 1;
    }
    if ((pg->rows && buf_putc(pg->out, ',')) || buf_append(pg->out, r->body, r->body_len)) {
        errorf("result too large");
        return -1;
    }
    pg->last = r->seq;
    pg->rows++;
    return 0;
}

/* Calls fn for each of the given seqs' records that is there (not erased); stops when fn returns
 * nonzero and returns that, or -1 on a log error. */
static int each_seq(store *s, const int64_t *seqs, size_t n,
                    int (*fn)(const evlog_rec *r, void *arg), void *arg) {
    buf scratch = BUF_INIT(0);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        evlog_rec r;
        int got = evlog_read(s->log, seqs[i], &r, &scratch);
        if (got < 0) {
            errorf("%s", evlog_errmsg());
            rc = -1;
        } else if (got)
            rc = fn(&r, arg);
    }
    buf_free(&scratch);
    return rc;
}

/* A person's events: their seqs from the person index, each record read and checked against the
 * other filters. Cost: O(log n) to find the place, then one read per candidate. */
static int query_person(store *s, page *pg, int64_t after) {
    const store_query *q = pg->q;
    bool by_user = q->user_id != NULL;
    const char *id = by_user ? q->user_id : q->anonymous_id;
    int64_t seqs[256];
    int rc = 0;
    while (!rc) {
        size_t n = pindex_get(s->people, by_user ? PINDEX_USER : PINDEX_ANON, id, strlen(id), after,
                              seqs, sizeof seqs / sizeof seqs[0]);
        rc = each_seq(s, seqs, n, page_add, pg);
        if (n < sizeof seqs / sizeof seqs[0]) break;
        after = seqs[n - 1];
    }
    return rc < 0 ? -1 : 0;
}

int store_query_events(store *s, const store_query *q, buf *out, int64_t *next_seq) {
    last_error[0] = '\0';
    int64_t after = q->after_seq;
    if (q->since_ms != INT64_MIN) {
        int64_t first = evlog_first_since(s->log, q->since_ms);
        if (first == INT64_MAX) first = INT64_MAX - 1; /* nothing that recent: an empty page */
        if (first - 1 > after) after = first - 1;
    }
    page pg = {.q = q, .out = out, .last = -1, .next_seq = next_seq};
    *next_seq = -1;
    if (buf_putc(out, '[')) return -1;
    int rc;
    if (s->people && (q->user_id || q->anonymous_id))
        rc = query_person(s, &pg, after);
    else if (after < INT64_MAX - 1) /* a scan: no ids asked, or no person index (CLI commands) */
        rc = evlog_scan(s->log, after + 1, page_add, &pg) < 0 ? -1 : 0;
    else
        rc = 0;
    if (rc && !*last_error) errorf("%s", evlog_errmsg());
    return rc || buf_putc(out, ']') ? -1 : 0;
}

typedef struct index_load {
    pindex *people;
    int64_t recent_ms;
    int (*recent)(int64_t seq, const char *message_id, void *arg);
    void *arg;
} index_load;

static int index_record(const evlog_rec *r, void *arg) {
    index_load *a = arg;
    if (r->user_id && pindex_add(a->people, PINDEX_USER, r->user_id, strlen(r->user_id), r->seq))
        return -2;
    if (r->anonymous_id &&
        pindex_add(a->people, PINDEX_ANON, r->anonymous_id, strlen(r->anonymous_id), r->seq))
        return -2;
    if (r->message_id && r->received_ms >= a->recent_ms && a->recent(r->seq, r->message_id, a->arg))
        return -2;
    return 0;
}

int store_index_load(store *s, int64_t recent_ms,
                     int (*recent)(int64_t seq, const char *message_id, void *arg), void *arg) {
    index_load a = {pindex_new(), recent_ms, recent, arg};
    if (!a.people) {
        errorf("index load: out of memory");
        return -1;
    }
    int rc = evlog_scan(s->log, 1, index_record, &a);
    if (rc) {
        pindex_free(a.people);
        errorf("index load: %s", rc == -2 ? "out of memory" : evlog_errmsg());
        return -1;
    }
    pindex_free(s->people);
    s->people = a.people;
    return 0;
}

pindex *store_people(store *s) {
    return s->people;
}

int64_t store_count_events(store *s) {
    return evlog_count(s->log);
}

int64_t store_first_seq_since(store *s, int64_t since_ms) {
    return evlog_first_since(s->log, since_ms);
}

typedef struct each_arg {
    int (*fn)(const store_row *row, void *arg);
    void *arg;
} each_arg;

static int each_record(const evlog_rec *r, void *arg) {
    each_arg *a = arg;
    store_row row = {
        .seq = r->seq,
        .ts_ms = r->ts_ms,
        .type = r->type,
        .kind = r->kind,
        .user_id = r->user_id,
        .anonymous_id = r->anonymous_id,
        .message_id = r->message_id,
        .body = r->body,
        .body_len = r->body_len,
    };
    return a->fn(&row, a->arg);
}

int store_each(store *s, const int64_t *seqs, size_t n, int (*fn)(const store_row *row, void *arg),
               void *arg) {
    each_arg a = {fn, arg};
    last_error[0] = '\0';
    if (!seqs) {
        int rc = evlog_scan(s->log, 1, each_record, &a);
        if (rc < 0 && !*last_error) errorf("%s", evlog_errmsg());
        return rc;
    }
    return each_seq(s, seqs, n, each_record, &a);
}

typedef struct bodies_arg {
    buf *out;
    bool first;
} bodies_arg;

static int append_body(const store_row *row, void *arg) {
    bodies_arg *a = arg;
    if ((!a->first && buf_putc(a->out, ',')) || buf_append(a->out, row->body, row->body_len)) {
        errorf("result too large");
        return -1;
    }
    a->first = false;
    return 0;
}

int store_bodies(store *s, const int64_t *seqs, size_t n, buf *out) {
    bodies_arg a = {out, true};
    if (buf_putc(out, '[') || store_each(s, seqs, n, append_body, &a)) return -1;
    return buf_putc(out, ']') ? -1 : 0;
}

int store_erase(store *s, const int64_t *seqs, size_t n) {
    if (evlog_erase(s->log, seqs, n) || evlog_commit(s->log)) {
        errorf("%s", evlog_errmsg());
        return -1;
    }
    return 0;
}
