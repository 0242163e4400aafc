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
#include "util/vec.h"

/* How often the dedup set drops ids older than the window. */
#define PRUNE_INTERVAL_MS (10 * 60 * 1000)

/* The most events of a group that the committer applies itself when the applier is idle. Handing
 * a group of single events over cost more than applying it (a wakeup and two context switches):
 * applied where it was synced, the track script ran 23-28 % faster (docs/benchmarks.md). A batch's
 * group stays with the applier, which applies it while the committer syncs the next. */
#define INLINE_APPLY_MAX 64

struct commit {
    store *store;
    evlog *log;
    commit_opts opts;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    commit_req *head, *tail; /* the queue, under lock */
    bool stopping;

    /* Owned by the committer thread. */
    dedup *dedup;
    buf scratch; /* for reading stored message ids */
    int64_t last_prune_ms;
    /* The events written in the open group: to undo their ids if it fails, and to index their
     * people once it commits. */
    struct undo {
        uint64_t hash;
        int64_t seq;
        ev_event *event;
    } * undo;
    size_t nundo, undo_cap;
    /* The messageId hashes of the open group's events, in order: computed in a first pass so that
     * each event's dedup slot can be fetched some events before it is written. */
    uint64_t *hashes;
    size_t hashes_cap;
    /* The open group's ids, for the person index (index_people()). */
    pindex_entry *people;
    size_t people_cap;

    /* The applier: applies durable groups to the engine and reports them, while the committer goes
     * on writing and syncing the next group. */
    pthread_t apply_thread;
    pthread_cond_t apply_wake;
    commit_req *apply_head, *apply_tail; /* durable, awaiting the applier; under lock */
    bool apply_stop;                     /* under lock */
    bool applying; /* a group is being applied, by either thread; under lock */

    commit_stats stats;
};

/* ---- Deduplication ---- */

typedef struct id_probe {
    commit *c;
    const char *message_id;
} id_probe;

/* A dedup hash hit is confirmed against the stored messageId, or the one of an event earlier in
 * the open group (the undo list holds those, in seq order). */
static int same_message_id(int64_t seq, void *arg) {
    id_probe *p = arg;
    commit *c = p->c;
    int64_t last = evlog_last_seq(c->log);
    if (seq > last) {
        size_t i = (size_t)(seq - last - 1);
        return i < c->nundo && c->undo[i].seq == seq &&
               strcmp(c->undo[i].event->message_id, p->message_id) == 0;
    }
    evlog_rec r;
    return evlog_read(c->log, seq, &r, &c->scratch) == 1 && r.message_id &&
           strcmp(r.message_id, p->message_id) == 0;
}

static bool is_duplicate(commit *c, const char *message_id, uint64_t h) {
    id_probe p = {c, message_id};
    return dedup_find(c->dedup, h, same_message_id, &p) != 0;
}

static int remember_recent(int64_t seq, const char *message_id, void *arg) {
    return dedup_add(arg, hash64(message_id, strlen(message_id)), seq);
}

/* One scan of the store: the person index, and the dedup set for the window, sized once from the
 * window's first seq rather than doubled while loading (at 10M ids the doubling held two tables at
 * once). On failure, the reason is in store_errmsg(). */
static int load_indexes(store *s, int64_t window_ms, dedup *d) {
    evlog *log = store_log(s);
    int64_t since = clock_now_ms() - window_ms;
    int64_t first = evlog_first_since(log, since);
    if (first != INT64_MAX) dedup_reserve(d, (size_t)(evlog_last_seq(log) - first + 1));
    return store_index_load(s, since, remember_recent, d);
}

struct commit_preload {
    store *store;
    int64_t window_ms;
    pthread_t thread;
    dedup *dedup;
    int rc;
    char err[256]; /* store_errmsg() is per thread: the loader's reason is kept here */
    uint64_t ns;   /* how long the load took */
};

static void *preload_main(void *arg) {
    commit_preload *p = arg;
    pthread_setname_np(pthread_self(), "engaged-preload"); /* for top -H, perf and gdb */
    uint64_t t0 = clock_mono_ns();
    p->rc = load_indexes(p->store, p->window_ms, p->dedup);
    if (p->rc) snprintf(p->err, sizeof p->err, "%s", store_errmsg());
    p->ns = clock_mono_ns() - t0;
    return NULL;
}

static commit_preload *preload_new(store *s, int64_t window_ms) {
    commit_preload *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    *p = (commit_preload){.store = s, .window_ms = window_ms, .dedup = dedup_new()};
    if (p->dedup) return p;
    free(p);
    return NULL;
}

static void preload_free(commit_preload *p) {
    dedup_free(p->dedup);
    free(p);
}

commit_preload *commit_preload_start(store *s, int64_t dedup_window_ms) {
    commit_preload *p = preload_new(s, dedup_window_ms);
    if (p && pthread_create(&p->thread, NULL, preload_main, p)) {
        preload_free(p);
        return NULL;
    }
    return p;
}

void commit_preload_cancel(commit_preload *p) {
    if (!p) return;
    pthread_join(p->thread, NULL);
    preload_free(p);
}

/* Gives c its indexes: what c->opts.preload loaded, or a load of its own now. */
static int take_indexes(commit *c, char *err, size_t errlen) {
    commit_preload *p = c->opts.preload;
    c->opts.preload = NULL;
    uint64_t t0 = clock_mono_ns();
    if (p)
        pthread_join(p->thread, NULL);
    else if ((p = preload_new(c->store, c->opts.dedup_window_ms)))
        preload_main(p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = p->rc;
    if (rc) {
        snprintf(err, errlen, "commit: loading the indexes: %s", p->err);
    } else {
        log_info("commit: %zu people and %zu message ids in the dedup window, loaded in %.0f ms, "
                 "%.0f ms of it waited for",
                 pindex_people(store_people(c->store)), dedup_count(p->dedup), (double)p->ns / 1e6,
                 (double)(clock_mono_ns() - t0) / 1e6);
        c->dedup = p->dedup;
        p->dedup = NULL;
        c->last_prune_ms = clock_now_ms();
        atomic_store(&c->stats.dedup_ids, dedup_count(c->dedup));
    }
    preload_free(p);
    return rc;
}

static void maybe_prune(commit *c) {
    int64_t now = clock_now_ms();
    if (now - c->last_prune_ms < PRUNE_INTERVAL_MS) return;
    c->last_prune_ms = now;
    dedup_prune(c->dedup, evlog_first_since(c->log, now - c->opts.dedup_window_ms));
}

/* ---- Writing ---- */

/* How many events ahead of the one being written its dedup slot is fetched: enough to cover a
 * miss (some hundred ns) with the work of writing the events in between. */
#define PREFETCH_AHEAD 8

/* Slots of a dedup table or person index being emptied that the committer moves each time it
 * finds itself idle: some 64 KB of dedup slots (a few tens of microseconds) or 192 KB of people,
 * so a request arriving meanwhile hardly waits. */
#define IDLE_MOVE_SLOTS 4096

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

/* Writes e, whose messageId hashes to h. */
static int write_event(commit *c, ev_event *e, uint64_t h, bool *dup) {
    e->seq = 0;
    *dup = is_duplicate(c, e->message_id, h);
    if (*dup) return 0;
    /* Requests arrive on several threads and reach the committer a little out of order; the log
     * keeps its received time non-decreasing (evlog_first_since). The event's own receivedAt (in
     * its body) is the true arrival time. */
    evlog_rec r = {
        .received_ms = e->received_ms,
        .ts_ms = e->timestamp_ms,
        .type = e->command ? STORE_TYPE_COMMAND : (int)e->type,
        .kind = e->commerce ? (int)e->commerce->kind : 0,
        .user_id = e->user_id,
        .anonymous_id = e->anonymous_id,
        .message_id = *e->message_id ? e->message_id : NULL,
        .body = e->body,
        .body_len = e->body_len,
    };
    if (evlog_append(c->log, &r)) return -1;
    e->seq = r.seq;
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

/* Applies and reports a durable group, marked as being applied so that no other is meanwhile.
 * Called with the lock held, which it releases while applying. */
static void apply_locked(commit *c, commit_req *group) {
    c->applying = true;
    pthread_mutex_unlock(&c->lock);
    finish_group(c, group, 0);
    pthread_mutex_lock(&c->lock);
    c->applying = false;
}

/* The applier thread: applies each durable group in log order and reports it. */
static void *apply_main(void *arg) {
    commit *c = arg;
    pthread_setname_np(pthread_self(), "engaged-apply"); /* for top -H, perf and gdb */
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->apply_head && !c->apply_stop)
            pthread_cond_wait(&c->apply_wake, &c->lock);
        if (!c->apply_head) break;
        commit_req *group = c->apply_head;
        c->apply_head = c->apply_tail = NULL;
        pthread_cond_signal(&c->wake); /* the committer may write the next group */
        apply_locked(c, group);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* Adds the group's stored events to the person index. If memory runs out the index would be
 * incomplete, and queries by person would silently miss events: stop instead. */
static void index_people(commit *c) {
    size_t n = 0;
    if (vec_reserve((void **)&c->people, &c->people_cap, 2 * c->nundo, sizeof *c->people)) goto oom;
    for (size_t i = 0; i < c->nundo; i++) {
        const ev_event *e = c->undo[i].event;
        if (e->user_id)
            c->people[n++] =
                (pindex_entry){PINDEX_USER, e->user_id, strlen(e->user_id), c->undo[i].seq, 0};
        if (e->anonymous_id)
            c->people[n++] = (pindex_entry){PINDEX_ANON, e->anonymous_id, strlen(e->anonymous_id),
                                            c->undo[i].seq, 0};
    }
    if (!pindex_add_many(store_people(c->store), c->people, n)) return;
oom:
    log_error("commit: out of memory indexing people; stopping");
    abort();
}

/* Writes the group and makes it durable (one write, one fdatasync: evlog_commit). On failure
 * forgets its ids and marks every request failed; nothing of it is stored. */
static void commit_group(commit *c, commit_req *group) {
    uint64_t t0 = clock_mono_ns();
    c->nundo = 0;
    /* The hashes first, each event's dedup slot then fetched PREFETCH_AHEAD events before it is
     * written: the misses overlap instead of each stalling in turn. */
    size_t n = 0;
    for (commit_req *r = group; r; r = r->next)
        n += r->nevents;
    int rc = vec_reserve((void **)&c->hashes, &c->hashes_cap, n, sizeof *c->hashes);
    if (rc) log_error("commit: out of memory hashing a group's messageIds");
    n = 0;
    for (commit_req *r = group; r && !rc; r = r->next)
        for (size_t i = 0; i < r->nevents; i++) {
            const char *id = r->events[i].message_id;
            c->hashes[n] = hash64(id, strlen(id));
            if (n < PREFETCH_AHEAD) dedup_prefetch(c->dedup, c->hashes[n]);
            n++;
        }
    size_t k = 0;
    for (commit_req *r = group; r && !rc; r = r->next) {
        r->stored = r->duplicates = 0;
        for (size_t i = 0; i < r->nevents && !rc; i++, k++) {
            if (k + PREFETCH_AHEAD < n) dedup_prefetch(c->dedup, c->hashes[k + PREFETCH_AHEAD]);
            bool dup;
            rc = write_event(c, &r->events[i], c->hashes[k], &dup);
            if (dup)
                r->duplicates++;
            else
                r->stored++;
        }
        if (!rc && r->ndeletes) rc = evlog_erase(c->log, r->deletes, r->ndeletes);
    }
    if (rc)
        evlog_rollback(c->log);
    else
        rc = evlog_commit(c->log);
    if (rc) {
        log_error("commit: group failed, %zu ids undone: %s", c->nundo, evlog_errmsg());
        for (size_t i = 0; i < c->nundo; i++)
            dedup_remove(c->dedup, c->undo[i].hash, c->undo[i].seq);
        atomic_fetch_add(&c->stats.failures, 1);
    } else {
        uint64_t sync_ns = evlog_sync_ns(c->log);
        histo_observe_us(&c->stats.sync_latency, sync_ns / 1000);
        atomic_fetch_add(&c->stats.syncs, 1);
        histo_observe_us(&c->stats.latency, (clock_mono_ns() - t0 - sync_ns) / 1000);
    }
    atomic_fetch_add(&c->stats.commits, 1);
    atomic_store(&c->stats.dedup_ids, dedup_count(c->dedup));
    if (rc) {
        finish_group(c, group, -1);
        return;
    }
    index_people(c);
    pthread_mutex_lock(&c->lock);
    /* Groups are applied in log order, one at a time: the committer may apply this one only when
     * nothing is queued for the applier or being applied. */
    if (n <= INLINE_APPLY_MAX && !c->apply_head && !c->applying) {
        apply_locked(c, group);
        pthread_mutex_unlock(&c->lock);
        return;
    }
    commit_req *last = group;
    while (last->next)
        last = last->next;
    if (c->apply_tail)
        c->apply_tail->next = group;
    else
        c->apply_head = group;
    c->apply_tail = last;
    pthread_cond_signal(&c->apply_wake);
    pthread_mutex_unlock(&c->lock);
}

static void *commit_main(void *arg) {
    commit *c = arg;
    pthread_setname_np(pthread_self(), "engaged-commit"); /* for top -H, perf and gdb */
    pthread_mutex_lock(&c->lock);
    for (;;) {
        /* At most one durable group waits for the applier: while one does, requests accumulate
         * into the next group instead of going out in many small writes and syncs. */
        for (bool moving = true; (!c->head || c->apply_head) && !(c->stopping && !c->head);) {
            if (moving) {
                /* Idle: move a piece of the dedup table (dedup.h) and of the person index
                 * (pindex.h), so that a move ends soon however few ids arrive to drive it; then
                 * look at the queue again, which may have changed meanwhile, before waiting. */
                pthread_mutex_unlock(&c->lock);
                moving = pindex_step(store_people(c->store), IDLE_MOVE_SLOTS);
                moving = dedup_step(c->dedup, IDLE_MOVE_SLOTS) || moving;
                if (moving) atomic_store(&c->stats.dedup_ids, dedup_count(c->dedup));
                pthread_mutex_lock(&c->lock);
            } else {
                pthread_cond_wait(&c->wake, &c->lock);
                moving = true;
            }
        }
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
        maybe_prune(c);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- API ---- */

static void stop_applier(commit *c) {
    pthread_mutex_lock(&c->lock);
    c->apply_stop = true;
    pthread_cond_signal(&c->apply_wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->apply_thread, NULL);
}

commit *commit_start(store *s, const commit_opts *opts, char *err, size_t errlen) {
    commit *c = calloc(1, sizeof *c);
    if (!c) {
        commit_preload_cancel(opts->preload);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->store = s;
    c->log = store_log(s);
    c->opts = *opts;
    if (c->opts.max_group_events == 0) c->opts.max_group_events = 50000;
    buf_init(&c->scratch, 0);
    if (take_indexes(c, err, errlen)) goto fail;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->apply_wake, NULL);
    if (pthread_create(&c->apply_thread, NULL, apply_main, c)) {
        snprintf(err, errlen, "commit: cannot start the apply thread");
        goto fail_threads;
    }
    if (pthread_create(&c->thread, NULL, commit_main, c)) {
        snprintf(err, errlen, "commit: cannot start thread");
        stop_applier(c);
        goto fail_threads;
    }
    return c;
fail_threads:
    pthread_cond_destroy(&c->apply_wake);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
fail:
    dedup_free(c->dedup);
    buf_free(&c->scratch);
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
    stop_applier(c); /* after the committer: it applies what the committer made durable last */
    dedup_free(c->dedup);
    buf_free(&c->scratch);
    free(c->undo);
    free(c->hashes);
    free(c->people);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->apply_wake);
    free(c);
}

const commit_stats *commit_get_stats(const commit *c) {
    return &c->stats;
}
