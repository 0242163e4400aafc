#include "store/commit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/dedup.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"

/* How often the dedup set drops ids older than the window. */
#define PRUNE_INTERVAL_MS (10 * 60 * 1000)
/* WAL pages after which the checkpointer copies the WAL into the database. */
#define CHECKPOINT_PAGES 2000

struct commit {
    store *store;
    commit_opts opts;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    commit_req *head, *tail; /* the queue, under lock */
    bool stopping;

    /* Owned by the committer thread. */
    dedup *dedup;
    sqlite3_stmt *insert, *get_message_id, *begin, *end, *rollback, *delete;
    int64_t last_prune_ms;
    int64_t last_received_ms; /* the greatest received_at stored */
    /* The events written in the open transaction: to undo their ids if it fails, and to index
     * their people once it commits. */
    struct undo {
        uint64_t hash;
        int64_t seq;
        ev_event *event;
    } * undo;
    size_t nundo, undo_cap;

    /* The syncer: makes written transactions durable with one fdatasync of the WAL, while the
     * committer goes on writing the next group. */
    pthread_t sync_thread;
    pthread_cond_t sync_wake;
    commit_req *sync_head, *sync_tail; /* written, awaiting fdatasync; under lock */
    bool sync_stop;                    /* under lock */
    int wal_fd;                        /* the WAL, opened after the first commit; -1 before */

    /* The checkpointer: copies the WAL into the database file on its own connection, so the
     * committer never stalls on a checkpoint (SQLite would otherwise run one inside a COMMIT). */
    pthread_t ckpt_thread;
    sqlite3 *ckpt_db;
    bool ckpt_wanted, ckpt_stop; /* under lock */
    int ckpt_asked_at;           /* WAL pages when a checkpoint was last asked for (committer's) */
    atomic_bool ckpt_finish;     /* the checkpointer caught up: the committer finishes the job */
    pthread_cond_t ckpt_wake;

    commit_stats stats;
};

static void finish_checkpoint(commit *c);

/* ---- Deduplication ---- */

typedef struct id_probe {
    commit *c;
    const char *message_id;
} id_probe;

/* A dedup hash hit is confirmed against the stored messageId. */
static int same_message_id(int64_t seq, void *arg) {
    id_probe *p = arg;
    sqlite3_stmt *st = p->c->get_message_id;
    sqlite3_bind_int64(st, 1, seq);
    int same = sqlite3_step(st) == SQLITE_ROW &&
               strcmp((const char *)sqlite3_column_text(st, 0), p->message_id) == 0;
    sqlite3_reset(st);
    return same;
}

static bool is_duplicate(commit *c, const char *message_id, uint64_t h) {
    id_probe p = {c, message_id};
    return dedup_find(c->dedup, h, same_message_id, &p) != 0;
}

static int remember_recent(int64_t seq, const char *message_id, void *arg) {
    commit *c = arg;
    return dedup_add(c->dedup, hash64(message_id, strlen(message_id)), seq);
}

/* One scan of the store: the person index, and the dedup set for the window. */
static int load_indexes(commit *c) {
    int64_t since = clock_now_ms() - c->opts.dedup_window_ms;
    sqlite3 *db = store_writer(c->store);
    /* The last row gives both the greatest received_at (the column stays non-decreasing from it)
     * and the greatest seq, from which the dedup set is sized once rather than doubled while
     * loading (at 10M ids the doubling held two tables at once). */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT seq, received_at FROM events ORDER BY seq DESC LIMIT 1", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        int64_t first = store_first_seq_since(db, since);
        if (first != INT64_MAX) /* an upper bound on the window's ids: seqs are rowids */
            dedup_reserve(c->dedup, (size_t)(sqlite3_column_int64(st, 0) - first + 1));
        c->last_received_ms = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (store_index_load(c->store, since, remember_recent, c)) return -1;
    c->last_prune_ms = clock_now_ms();
    return 0;
}

static void maybe_prune(commit *c) {
    int64_t now = clock_now_ms();
    if (now - c->last_prune_ms < PRUNE_INTERVAL_MS) return;
    c->last_prune_ms = now;
    int64_t min_seq = store_first_seq_since(store_writer(c->store), now - c->opts.dedup_window_ms);
    dedup_prune(c->dedup, min_seq);
}

/* ---- Writing ---- */

static int remember(commit *c, uint64_t h, int64_t seq, ev_event *e) {
    if (c->nundo == c->undo_cap) {
        size_t cap = c->undo_cap ? c->undo_cap * 2 : 1024;
        struct undo *u = realloc(c->undo, cap * sizeof *u);
        if (!u) return -1;
        c->undo = u;
        c->undo_cap = cap;
    }
    if (dedup_add(c->dedup, h, seq)) return -1;
    c->undo[c->nundo++] = (struct undo){h, seq, e};
    return 0;
}

static int step_done(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int write_event(commit *c, ev_event *e, bool *dup) {
    uint64_t h = hash64(e->message_id, strlen(e->message_id));
    e->seq = 0;
    *dup = is_duplicate(c, e->message_id, h);
    if (*dup) return 0;
    sqlite3_stmt *st = c->insert;
    /* Requests arrive on several threads and reach the committer a little out of order; the
     * column stays non-decreasing so that store_first_seq_since() can binary-search it. The
     * event's own receivedAt (in its body) is the true arrival time. */
    if (e->received_ms > c->last_received_ms) c->last_received_ms = e->received_ms;
    sqlite3_bind_int64(st, 1, c->last_received_ms);
    sqlite3_bind_int64(st, 2, e->timestamp_ms);
    sqlite3_bind_int(st, 3, e->command ? STORE_TYPE_COMMAND : (int)e->type);
    sqlite3_bind_int(st, 4, e->commerce ? (int)e->commerce->kind : 0);
    if (e->user_id)
        sqlite3_bind_text(st, 5, e->user_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 5);
    if (e->anonymous_id)
        sqlite3_bind_text(st, 6, e->anonymous_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_text(st, 7, e->message_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, e->body, (int)e->body_len, SQLITE_STATIC);
    int rc = step_done(st);
    sqlite3_clear_bindings(st);
    if (rc) return -1;
    e->seq = sqlite3_last_insert_rowid(store_writer(c->store));
    return remember(c, h, e->seq, e);
}

/* Reports the outcome to every request of a group (a list linked by next). */
static void finish_group(commit *c, commit_req *group, int status) {
    uint64_t now = clock_mono_ns();
    for (commit_req *r = group, *next; r; r = next) {
        next = r->next; /* done() may free r */
        r->status = status;
        if (status) r->stored = r->duplicates = 0;
        atomic_fetch_add(&c->stats.events_stored, r->stored);
        atomic_fetch_add(&c->stats.events_duplicate, r->duplicates);
        atomic_fetch_sub(&c->stats.queued_events, r->nevents);
        histo_observe_us(&c->stats.group_wait, (now - r->submitted_ns) / 1000);
        if (!status && c->opts.apply) c->opts.apply(c->opts.apply_arg, r->events, r->nevents);
        r->done(r);
    }
}

static int open_wal(commit *c) {
    char path[4200];
    snprintf(path, sizeof path, "%s/engaged.db-wal", store_dir(c->store));
    c->wal_fd = open(path, O_RDONLY | O_CLOEXEC);
    return c->wal_fd < 0 ? -1 : 0;
}

/* The syncer thread. fdatasync(2) flushes every write made to the file before it was called,
 * whichever descriptor made it, so one call makes every transaction written so far durable. A
 * failed fdatasync may have dropped dirty pages for good (a later one can succeed without them), so
 * it is fatal: the process stops without acknowledging, and the clients retry. */
static void *sync_main(void *arg) {
    commit *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->sync_head && !c->sync_stop)
            pthread_cond_wait(&c->sync_wake, &c->lock);
        if (!c->sync_head) break;
        commit_req *group = c->sync_head;
        c->sync_head = c->sync_tail = NULL;
        pthread_cond_signal(&c->wake); /* the committer may write the next group */
        pthread_mutex_unlock(&c->lock);
        uint64_t t0 = clock_mono_ns();
        if (fdatasync(c->wal_fd)) {
            log_error("commit: fdatasync of the WAL failed: %s; stopping", strerror(errno));
            abort();
        }
        histo_observe_us(&c->stats.sync_latency, (clock_mono_ns() - t0) / 1000);
        atomic_fetch_add(&c->stats.syncs, 1);
        finish_group(c, group, 0);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* Adds the group's stored events to the person index. If memory runs out the index would be
 * incomplete, and queries by person would silently miss events: stop instead. */
static void index_people(commit *c) {
    pindex *people = store_people(c->store);
    for (size_t i = 0; i < c->nundo; i++) {
        const ev_event *e = c->undo[i].event;
        if ((e->user_id &&
             pindex_add(people, PINDEX_USER, e->user_id, strlen(e->user_id), c->undo[i].seq)) ||
            (e->anonymous_id && pindex_add(people, PINDEX_ANON, e->anonymous_id,
                                           strlen(e->anonymous_id), c->undo[i].seq))) {
            log_error("commit: out of memory indexing people; stopping");
            abort();
        }
    }
}

/* Writes the group in one transaction. On failure rolls it back, forgets its ids and marks every
 * request failed. */
static void commit_group(commit *c, commit_req *group) {
    uint64_t t0 = clock_mono_ns();
    sqlite3 *db = store_writer(c->store);
    c->nundo = 0;
    int rc = step_done(c->begin);
    for (commit_req *r = group; r && !rc; r = r->next) {
        r->stored = r->duplicates = 0;
        for (size_t i = 0; i < r->nevents && !rc; i++) {
            bool dup;
            rc = write_event(c, &r->events[i], &dup);
            if (dup)
                r->duplicates++;
            else
                r->stored++;
        }
        for (size_t i = 0; i < r->ndeletes && !rc; i++) {
            sqlite3_bind_int64(c->delete, 1, r->deletes[i]);
            rc = step_done(c->delete);
        }
    }
    if (!rc) rc = step_done(c->end);
    if (rc) {
        log_error("commit: transaction failed, %zu ids undone: %s", c->nundo, sqlite3_errmsg(db));
        step_done(c->rollback);
        for (size_t i = 0; i < c->nundo; i++)
            dedup_remove(c->dedup, c->undo[i].hash, c->undo[i].seq);
        atomic_fetch_add(&c->stats.failures, 1);
    }
    histo_observe_us(&c->stats.latency, (clock_mono_ns() - t0) / 1000);
    atomic_fetch_add(&c->stats.commits, 1);
    atomic_store(&c->stats.dedup_ids, dedup_count(c->dedup));
    if (rc) {
        finish_group(c, group, -1);
        return;
    }
    index_people(c);
    if (c->wal_fd < 0 && open_wal(c)) {
        /* Without the WAL's descriptor nothing can be made durable: stop rather than lie. */
        log_error("commit: cannot open the WAL to sync it: %s", strerror(errno));
        abort();
    }
    pthread_mutex_lock(&c->lock);
    commit_req *last = group;
    while (last->next)
        last = last->next;
    if (c->sync_tail)
        c->sync_tail->next = group;
    else
        c->sync_head = group;
    c->sync_tail = last;
    pthread_cond_signal(&c->sync_wake);
    pthread_mutex_unlock(&c->lock);
}

static void *commit_main(void *arg) {
    commit *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        /* At most one written group waits for the syncer: while one does, requests accumulate
         * into the next group instead of going out in many small transactions (each writes whole
         * pages to the WAL, so small groups multiply the bytes written and checkpointed). */
        while ((!c->head || c->sync_head) && !(c->stopping && !c->head))
            pthread_cond_wait(&c->wake, &c->lock);
        if (!c->head) break; /* stopping, and nothing left */
        /* Take whole requests up to the group limit; the first is always taken. */
        commit_req *group = c->head, *last = c->head;
        size_t n = last->nevents;
        while (last->next && n + last->next->nevents <= c->opts.max_group_events) {
            last = last->next;
            n += last->nevents;
        }
        c->head = last->next;
        if (!c->head) c->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&c->lock);
        commit_group(c, group);
        finish_checkpoint(c);
        maybe_prune(c);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- Checkpoints ---- */

/* A checkpoint on another connection never catches up with a busy writer (frames keep arriving
 * while it copies), and the WAL restarts from its beginning only once every frame is back in the
 * database. So after the checkpointer has done the bulk of the copying, the committer copies the
 * few frames added since, on its own connection, between two commits: a short pause instead of a
 * long one, and the WAL stays bounded. */
static void finish_checkpoint(commit *c) {
    if (!atomic_exchange(&c->ckpt_finish, false)) return;
    uint64_t t0 = clock_mono_ns();
    int log = 0, done = 0;
    sqlite3_wal_checkpoint_v2(store_writer(c->store), NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    histo_observe_us(&c->stats.checkpoint_latency, (clock_mono_ns() - t0) / 1000);
    log_msg(LOG_DEBUG, "checkpoint finished by the committer: %d of %d WAL pages", done, log);
}

/* Runs on the committer thread after each commit (sqlite3_wal_hook), with the WAL's size. Asks for
 * a checkpoint each time the WAL has grown by CHECKPOINT_PAGES: asking after every commit would
 * keep a checkpoint running all the time, and the WAL can only restart from its beginning (which
 * keeps it small and its fsyncs cheap) between two checkpoints. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages) {
    commit *c = arg;
    if (pages < c->ckpt_asked_at) c->ckpt_asked_at = 0; /* the WAL restarted */
    if (pages >= c->ckpt_asked_at + CHECKPOINT_PAGES) {
        c->ckpt_asked_at = pages;
        pthread_mutex_lock(&c->lock);
        c->ckpt_wanted = true;
        pthread_cond_signal(&c->ckpt_wake);
        pthread_mutex_unlock(&c->lock);
    }
    return SQLITE_OK;
}

static void *checkpoint_main(void *arg) {
    commit *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->ckpt_stop) {
        if (!c->ckpt_wanted) {
            pthread_cond_wait(&c->ckpt_wake, &c->lock);
            continue;
        }
        c->ckpt_wanted = false;
        pthread_mutex_unlock(&c->lock);
        /* PASSIVE never blocks the writer; the WAL restarts from its beginning once a checkpoint
         * has caught up, so it stays small without any fsync in the commit path. */
        int log = 0, done = 0;
        uint64_t t0 = clock_mono_ns();
        int rc =
            sqlite3_wal_checkpoint_v2(c->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        atomic_fetch_add(&c->stats.checkpoints, 1);
        histo_observe_us(&c->stats.checkpoint_latency, (clock_mono_ns() - t0) / 1000);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("checkpoint: %s", sqlite3_errmsg(c->ckpt_db));
        else
            atomic_store(&c->ckpt_finish, true);
        log_msg(LOG_DEBUG, "checkpoint: rc %d, %d of %d WAL pages copied", rc, done, log);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- API ---- */

static void stop_syncer(commit *c) {
    pthread_mutex_lock(&c->lock);
    c->sync_stop = true;
    pthread_cond_signal(&c->sync_wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->sync_thread, NULL);
}

static void stop_checkpointer(commit *c) {
    pthread_mutex_lock(&c->lock);
    c->ckpt_stop = true;
    pthread_cond_signal(&c->ckpt_wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->ckpt_thread, NULL);
}

commit *commit_start(store *s, const commit_opts *opts, char *err, size_t errlen) {
    commit *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->store = s;
    c->opts = *opts;
    if (c->opts.max_group_events == 0) c->opts.max_group_events = 50000;
    sqlite3 *db = store_writer(s);
    c->dedup = dedup_new();
    if (!c->dedup ||
        sqlite3_prepare_v3(db, STORE_SQL_INSERT_EVENT, -1, SQLITE_PREPARE_PERSISTENT, &c->insert,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT message_id FROM events WHERE seq = ?1", -1,
                           &c->get_message_id, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &c->begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &c->end, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "ROLLBACK", -1, &c->rollback, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "DELETE FROM events WHERE seq = ?1", -1, &c->delete, NULL) !=
            SQLITE_OK) {
        snprintf(err, errlen, "commit: %s", sqlite3_errmsg(db));
        goto fail;
    }
    uint64_t t0 = clock_mono_ns();
    if (load_indexes(c)) {
        snprintf(err, errlen, "commit: loading the indexes: %s", store_errmsg());
        goto fail;
    }
    atomic_store(&c->stats.dedup_ids, dedup_count(c->dedup));
    log_info("commit: %zu people and %zu message ids in the dedup window, loaded in %.0f ms",
             pindex_people(store_people(s)), dedup_count(c->dedup),
             (double)(clock_mono_ns() - t0) / 1e6);
    char path[4200];
    snprintf(path, sizeof path, "%s/engaged.db", store_dir(s));
    if (sqlite3_open_v2(path, &c->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "commit: checkpoint connection: %s", sqlite3_errmsg(c->ckpt_db));
        goto fail;
    }
    sqlite3_busy_timeout(c->ckpt_db, 1000);
    /* A connection learns that the database is in WAL mode on first use; before that a checkpoint
     * does nothing. */
    if (store_exec(c->ckpt_db, "PRAGMA journal_mode=WAL")) {
        snprintf(err, errlen, "commit: checkpoint connection: %s", store_errmsg());
        goto fail;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->ckpt_wake, NULL);
    pthread_cond_init(&c->sync_wake, NULL);
    c->wal_fd = -1;
    /* COMMIT writes the WAL without syncing it; the syncer thread syncs (see sync_main). */
    if (store_exec(db, "PRAGMA synchronous=NORMAL")) {
        snprintf(err, errlen, "commit: %s", store_errmsg());
        goto fail_sync;
    }
    sqlite3_wal_hook(db, on_wal_commit, c); /* replaces SQLite's automatic checkpoints */
    if (pthread_create(&c->ckpt_thread, NULL, checkpoint_main, c)) {
        snprintf(err, errlen, "commit: cannot start the checkpoint thread");
        goto fail_sync;
    }
    if (pthread_create(&c->sync_thread, NULL, sync_main, c)) {
        snprintf(err, errlen, "commit: cannot start the sync thread");
        stop_checkpointer(c);
        goto fail_sync;
    }
    if (pthread_create(&c->thread, NULL, commit_main, c)) {
        snprintf(err, errlen, "commit: cannot start thread");
        stop_syncer(c);
        stop_checkpointer(c);
        goto fail_sync;
    }
    return c;
fail_sync:
    sqlite3_wal_hook(db, NULL, NULL);
    store_exec(db, "PRAGMA synchronous=FULL");
    pthread_cond_destroy(&c->sync_wake);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->ckpt_wake);
fail:
    sqlite3_close(c->ckpt_db);
    sqlite3_finalize(c->insert);
    sqlite3_finalize(c->get_message_id);
    sqlite3_finalize(c->begin);
    sqlite3_finalize(c->end);
    sqlite3_finalize(c->rollback);
    sqlite3_finalize(c->delete);
    dedup_free(c->dedup);
    free(c);
    return NULL;
}

int commit_submit(commit *c, commit_req *req) {
    req->next = NULL;
    req->submitted_ns = clock_mono_ns();
    req->status = 0;
    req->stored = req->duplicates = 0;
    pthread_mutex_lock(&c->lock);
    if (c->stopping) {
        pthread_mutex_unlock(&c->lock);
        return -1;
    }
    if (c->tail)
        c->tail->next = req;
    else
        c->head = req;
    c->tail = req;
    atomic_fetch_add(&c->stats.queued_events, req->nevents);
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} waiter;

static void wake_waiter(commit_req *req) {
    waiter *w = req->arg;
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int commit_submit_wait(commit *c, commit_req *req) {
    waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    req->done = wake_waiter;
    req->arg = &w;
    if (commit_submit(c, req)) return -1;
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    return req->status;
}

void commit_stop(commit *c) {
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    stop_syncer(c); /* after the committer: it syncs what the committer wrote last */
    stop_checkpointer(c);
    sqlite3_wal_hook(store_writer(c->store), NULL, NULL);
    store_exec(store_writer(c->store), "PRAGMA synchronous=FULL");
    if (c->wal_fd >= 0) close(c->wal_fd);
    sqlite3_close(c->ckpt_db);
    sqlite3_finalize(c->insert);
    sqlite3_finalize(c->get_message_id);
    sqlite3_finalize(c->begin);
    sqlite3_finalize(c->end);
    sqlite3_finalize(c->rollback);
    sqlite3_finalize(c->delete);
    dedup_free(c->dedup);
    free(c->undo);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->ckpt_wake);
    pthread_cond_destroy(&c->sync_wake);
    free(c);
}

const commit_stats *commit_get_stats(const commit *c) {
    return &c->stats;
}
