/* commit — group commit: the one thread that writes events to the store.
 *
 * Request threads hand over validated events (commit_submit) and are told when they are durable.
 * The committer takes everything queued since its last commit and appends it to the event log as
 * one group: one write and one fdatasync (evlog.h), so the cost of a sync is shared by every
 * request that arrived while the previous one ran: the busier the server, the larger the groups.
 * An applier thread then applies each durable group to the engine and reports it, while the
 * committer writes the next; a small group that finds the applier idle is applied and reported by
 * the committer itself, which costs less than handing it over.
 *
 * Guarantees:
 *   - a request's done() runs only after its events are on disk (req->status == 0), or after the
 *     group that held them failed (req->status < 0, nothing of it stored);
 *   - a request is never split across groups, so a crash leaves no partial batch;
 *   - an event whose messageId was stored within the dedup window is not stored again; it counts as
 *     a duplicate (the client is told it was accepted, as Segment does);
 *   - requests are applied (opts.apply) in log order, each before its done().
 *
 * Ownership: the caller owns req and its events, and must keep both alive and unchanged until
 * done() is called. done() runs on the committer or the applier thread and must not block. */
#ifndef ENGAGED_COMMIT_H
#define ENGAGED_COMMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest/ev.h"
#include "store/store.h"
#include "util/histo.h"

typedef struct commit_req commit_req;
struct commit_req {
    ev_event *events;
    size_t nevents;
    void (*done)(commit_req *req); /* may be NULL for commit_submit_wait() */
    void *arg;
    /* Records to erase in the same group (evlog_erase); the caller keeps the array alive. */
    const int64_t *deletes;
    size_t ndeletes;
    /* Results, set before done() is called: */
    int status;        /* 0: durable; -1: the store failed and nothing of this request was stored */
    size_t stored;     /* events written */
    size_t duplicates; /* events skipped as already stored */
    /* Private to the committer. */
    commit_req *next;
    uint64_t submitted_ns;
};

typedef struct commit_preload commit_preload;

typedef struct commit_opts {
    int64_t dedup_window_ms; /* how long a messageId is remembered; at least 24 h is the promise */
    size_t max_group_events; /* most events per group (a request is never split) */
    /* Called once a request's events are durable and before its done(), with the events in log
     * order (each stored one has its seq; duplicates have seq 0): the engine applies them here, so
     * the state a client reads after its 200 already holds its events. Called on the applier
     * thread, or on the committer's for a small group, never on both at once. May be NULL. */
    void (*apply)(void *arg, ev_event *events, size_t n);
    void *apply_arg;
    /* The indexes, being loaded by commit_preload_start(); NULL: commit_start() loads them. */
    commit_preload *preload;
} commit_opts;

typedef struct commit_stats {
    _Atomic uint64_t commits, events_stored, events_duplicate, failures;
    _Atomic uint64_t queued_events; /* waiting for the next commit: the queue depth */
    _Atomic uint64_t dedup_ids;
    histo latency; /* per group: its records built and written (not the sync) */
    _Atomic uint64_t syncs;
    histo sync_latency; /* one group's fdatasync */
    histo group_wait;   /* per request: submitted to applied */
} commit_stats;

typedef struct commit commit;

/* Loads the dedup window and the store's person index (one scan of the log) and starts the
 * committer thread. NULL on failure, with a reason in err. With opts->preload it waits for that
 * load instead, and takes it over whether it starts or fails. */
commit *commit_start(store *s, const commit_opts *opts, char *err, size_t errlen);

/* Starts the same load on a thread of its own and returns at once, so that it can run beside
 * other start-up work: the server runs it beside the engine's replay, which reads the same log on
 * the other core (with 10M events stored, the load takes 10-12 s, the replay 40-65). Nothing
 * else may use the store's person index until commit_start() has returned. NULL if the thread
 * cannot start (commit_start() then loads the indexes itself). */
commit_preload *commit_preload_start(store *s, int64_t dedup_window_ms);
/* Waits for p and frees it, for a caller that does not start the committer after all. NULL is
 * fine. */
void commit_preload_cancel(commit_preload *p);
/* Queues req. Returns 0, or -1 once commit_stop() has begun (done() is then never called). */
int commit_submit(commit *c, commit_req *req);
/* Queues req and waits until it is durable or failed; returns req->status (or -1 if stopped). */
int commit_submit_wait(commit *c, commit_req *req);
/* Commits everything already queued, stops the thread and frees c. Submissions racing with it get
 * -1. */
void commit_stop(commit *c);
const commit_stats *commit_get_stats(const commit *c);

#endif
