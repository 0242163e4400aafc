/* Unit tests for store/commit, the group committer: events are stored once per messageId (within a
 * request, across requests, across a restart, and not beyond the dedup window), a failed
 * transaction stores nothing and forgets its ids, stop drains the queue, and many threads
 * submitting at once get every event stored exactly once with consistent statistics. The engine
 * clock runs in test mode, so windows are crossed by moving it, never by sleeping. */
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
#include <pthread.h>

#include "ingest/ev.h"
#include "store/commit.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/log.h"

#define T0 1700000000000LL /* 2023-11-14T22:13:20Z */
#define HOUR_MS (3600 * 1000LL)

typedef struct fixture {
    char dir[128];
    store *s;
    commit *c;
    commit_opts opts;
} fixture;

static void open_store(fixture *f) {
    char err[512] = "";
    f->s = store_open(f->dir, err, sizeof err);
    if (!f->s) fail_msg("store_open: %s", err);
}

static void start(fixture *f) {
    char err[512] = "";
    f->c = commit_start(f->s, &f->opts, err, sizeof err);
    if (!f->c) fail_msg("commit_start: %s", err);
}

/* Stops the committer and closes the store, as the server does at exit. */
static void shut(fixture *f) {
    commit_stop(f->c);
    f->c = NULL;
    store_close(f->s);
    f->s = NULL;
}

static void restart(fixture *f) {
    shut(f);
    open_store(f);
    start(f);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    /* On tmpfs when there is one: an fsync costs nothing there, so the thousands of commits below
     * measure the committer, not the disk (durability is not what these tests check). */
    snprintf(f->dir, sizeof f->dir, "/dev/shm/engaged-test-commit-XXXXXX");
    if (!mkdtemp(f->dir)) {
        snprintf(f->dir, sizeof f->dir, "/tmp/engaged-test-commit-XXXXXX");
        if (!mkdtemp(f->dir)) return -1;
    }
    clock_set_test_mode(T0);
    f->opts = (commit_opts){.dedup_window_ms = 24 * HOUR_MS, .max_group_events = 0};
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    commit_stop(f->c);
    store_close(f->s);
    int rc = test_rmtree(f->dir);
    free(f);
    return rc;
}

/* ---- events and requests ---- */

/* A track event with this messageId, received now on the engine clock. Returns 0 or -1 (usable
 * off the main thread, where cmocka's asserts are not). */
static int make_event(ev_event *out, const char *message_id) {
    json_t *raw = json_pack("{s:s, s:s, s:s, s:s}", "type", "track", "event", "Signed Up", "userId",
                            "u1", "messageId", message_id);
    if (!raw) return -1;
    ev_envelope env = {.received_ms = clock_now_ms()};
    ev_error err;
    int rc = ev_normalize(raw, EV_NTYPES, &env, out, &err);
    json_decref(raw);
    return rc == 0 && strcmp(out->message_id, message_id) == 0 ? 0 : -1;
}

typedef struct batch {
    ev_event ev[16];
    size_t n;
    commit_req req;
} batch;

static void batch_make(batch *b, const char *const *ids) {
    b->n = 0;
    for (; ids[b->n]; b->n++) {
        assert_true(b->n < 16);
        if (make_event(&b->ev[b->n], ids[b->n])) fail_msg("cannot build event %s", ids[b->n]);
    }
}

static void batch_free(batch *b) {
    for (size_t i = 0; i < b->n; i++)
        ev_event_free(&b->ev[i]);
}

/* Submits the events with these ids and waits; checks the request's outcome. */
static void submit_expect(commit *c, const char *const *ids, int status, size_t stored,
                          size_t dups) {
    batch b;
    batch_make(&b, ids);
    b.req = (commit_req){.events = b.ev, .nevents = b.n};
    int rc = commit_submit_wait(c, &b.req);
    batch_free(&b);
    if (rc != status || b.req.status != status)
        fail_msg("status %d (req %d), expected %d", rc, b.req.status, status);
    if (b.req.stored != stored || b.req.duplicates != dups)
        fail_msg("stored %zu duplicates %zu, expected %zu and %zu", b.req.stored, b.req.duplicates,
                 stored, dups);
}

#define IDS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define SUBMIT(c, status, stored, dups, ...)                                                       \
    submit_expect(c, IDS(__VA_ARGS__), status, stored, dups)

/* The stored messageIds in seq order, comma-separated. */
static const char *stored_ids(store *s, char *out, size_t n) {
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_reader(s),
                                        "SELECT coalesce(group_concat(message_id, ','), '') FROM "
                                        "(SELECT message_id FROM events ORDER BY seq)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
}

static int64_t count_sql(store *s, const char *sql) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(store_reader(s), sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(store_reader(s)));
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
}

static uint64_t stat_of(const _Atomic uint64_t *v) {
    return atomic_load(v);
}

static void expect_stats(const commit *c, uint64_t commits, uint64_t stored, uint64_t dups,
                         uint64_t failures, uint64_t dedup_ids) {
    const commit_stats *st = commit_get_stats(c);
    assert_int_equal(stat_of(&st->commits), commits);
    assert_int_equal(stat_of(&st->events_stored), stored);
    assert_int_equal(stat_of(&st->events_duplicate), dups);
    assert_int_equal(stat_of(&st->failures), failures);
    assert_int_equal(stat_of(&st->dedup_ids), dedup_ids);
    assert_int_equal(stat_of(&st->queued_events), 0);
    assert_int_equal(stat_of(&st->latency.count), commits); /* one observation per transaction */
}

/* ---- tests ---- */

static void test_stores_events(void **state) {
    fixture *f = *state;
    open_store(f);
    start(f);
    batch b;
    batch_make(&b, IDS("m-1", "m-2"));
    b.req = (commit_req){.events = b.ev, .nevents = b.n};
    assert_int_equal(commit_submit_wait(f->c, &b.req), 0);
    assert_int_equal(b.req.stored, 2);
    assert_int_equal(b.req.duplicates, 0);

    /* The row holds the normalised event as it is. */
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(store_reader(f->s),
                                        "SELECT seq, received_at, ts, type, kind, user_id, "
                                        "anonymous_id, message_id, body FROM events ORDER BY seq",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int64(st, 0), i + 1);
        assert_int_equal(sqlite3_column_int64(st, 1), b.ev[i].received_ms);
        assert_int_equal(sqlite3_column_int64(st, 2), b.ev[i].timestamp_ms);
        assert_int_equal(sqlite3_column_int(st, 3), EV_TRACK);
        assert_int_equal(sqlite3_column_int(st, 4), 0);
        assert_string_equal(sqlite3_column_text(st, 5), "u1");
        assert_int_equal(sqlite3_column_type(st, 6), SQLITE_NULL);
        assert_string_equal(sqlite3_column_text(st, 7), b.ev[i].message_id);
        assert_string_equal(sqlite3_column_text(st, 8), b.ev[i].body);
    }
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    batch_free(&b);
    expect_stats(f->c, 1, 2, 0, 0, 2);
}

static void test_duplicates_within_request(void **state) {
    fixture *f = *state;
    open_store(f);
    start(f);
    SUBMIT(f->c, 0, 3, 2, "a", "b", "a", "c", "b");
    char ids[256];
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "a,b,c");
    expect_stats(f->c, 1, 3, 2, 0, 3);
}

static void test_duplicates_across_requests(void **state) {
    fixture *f = *state;
    open_store(f);
    start(f);
    SUBMIT(f->c, 0, 2, 0, "a", "b");
    SUBMIT(f->c, 0, 1, 1, "b", "c");
    SUBMIT(f->c, 0, 0, 1, "a");
    SUBMIT(f->c, 0, 0, 3, "c", "c", "a");
    /* messageIds are compared exactly: case and near-misses are different ids. */
    SUBMIT(f->c, 0, 3, 0, "A", "a ", "ab");
    char ids[256];
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "a,b,c,A,a ,ab");
    expect_stats(f->c, 5, 6, 5, 0, 6);
}

static void test_empty_and_large_requests(void **state) {
    fixture *f = *state;
    f->opts.max_group_events = 2;
    open_store(f);
    start(f);
    commit_req empty = {.events = NULL, .nevents = 0};
    assert_int_equal(commit_submit_wait(f->c, &empty), 0);
    assert_int_equal(empty.stored, 0);
    assert_int_equal(empty.duplicates, 0);
    /* A request above the group limit is still taken whole, in one transaction. */
    SUBMIT(f->c, 0, 5, 0, "1", "2", "3", "4", "5");
    expect_stats(f->c, 2, 5, 0, 0, 5);
    assert_int_equal(store_count_events(f->s), 5);
}

static void test_dedup_survives_restart(void **state) {
    fixture *f = *state;
    open_store(f);
    start(f);
    SUBMIT(f->c, 0, 2, 0, "a", "b");
    restart(f);
    /* The window was reloaded from the store: both ids are known, and stats start afresh. */
    expect_stats(f->c, 0, 0, 0, 0, 2);
    SUBMIT(f->c, 0, 1, 2, "a", "c", "b");
    restart(f);
    expect_stats(f->c, 0, 0, 0, 0, 3);
    SUBMIT(f->c, 0, 0, 3, "c", "b", "a");
    char ids[256];
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "a,b,c");
}

static void test_window_at_restart(void **state) {
    fixture *f = *state;
    f->opts.dedup_window_ms = 60000;
    open_store(f);
    start(f);
    SUBMIT(f->c, 0, 1, 0, "old");
    clock_advance_ms(30000);
    SUBMIT(f->c, 0, 1, 0, "mid");
    clock_advance_ms(30000);
    SUBMIT(f->c, 0, 1, 0, "new");
    /* Now = T0 + 60 s: "old" was received exactly one window ago, which is still inside it. */
    restart(f);
    expect_stats(f->c, 0, 0, 0, 0, 3);
    /* One more millisecond and "old" is out of the window: not loaded, so stored again. */
    clock_advance_ms(1);
    restart(f);
    expect_stats(f->c, 0, 0, 0, 0, 2);
    SUBMIT(f->c, 0, 1, 2, "old", "mid", "new");
    assert_int_equal(count_sql(f->s, "SELECT count(*) FROM events WHERE message_id = 'old'"), 2);

    /* Far in the future nothing is loaded. */
    clock_advance_ms(HOUR_MS);
    restart(f);
    expect_stats(f->c, 0, 0, 0, 0, 0);
    SUBMIT(f->c, 0, 2, 0, "mid", "new");
    char ids[256];
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "old,mid,new,old,mid,new");
}

static void test_window_prune_while_running(void **state) {
    fixture *f = *state;
    f->opts.dedup_window_ms = 1000;
    open_store(f);
    start(f);
    SUBMIT(f->c, 0, 1, 0, "a");
    /* The committer prunes every 10 minutes (commit.c); cross that, then commit once. */
    clock_advance_ms(11 * 60 * 1000);
    SUBMIT(f->c, 0, 1, 0, "b");
    /* The prune after that commit dropped "a" (received 11 minutes ago), not "b". */
    SUBMIT(f->c, 0, 1, 1, "a", "b");
    expect_stats(f->c, 3, 3, 1, 0, 2);
    assert_int_equal(store_count_events(f->s), 3); /* a, b, a */
}

static const char poison_trigger[] =
    "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.message_id = 'poison' "
    "BEGIN SELECT RAISE(ABORT, 'poisoned'); END;";

static void test_failure_stores_nothing_and_forgets(void **state) {
    fixture *f = *state;
    open_store(f);
    assert_int_equal(store_exec(store_writer(f->s), poison_trigger), 0);
    start(f);
    SUBMIT(f->c, 0, 1, 0, "x");
    /* The poison event makes the whole transaction fail: nothing of the request is stored, and the
     * request reports neither stored nor duplicate events. */
    SUBMIT(f->c, -1, 0, 0, "a", "x", "a", "poison", "b");
    char ids[256];
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "x");
    expect_stats(f->c, 2, 1, 0, 1, 1);
    /* a and b were not remembered (x, stored before, still is). */
    SUBMIT(f->c, 0, 2, 1, "a", "b", "x");
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "x,a,b");
    expect_stats(f->c, 3, 3, 1, 1, 3);
    /* Poison first, and a failure right after another. */
    SUBMIT(f->c, -1, 0, 0, "poison", "c");
    SUBMIT(f->c, -1, 0, 0, "d", "d", "poison");
    SUBMIT(f->c, 0, 2, 1, "c", "d", "d");
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "x,a,b,c,d");
    expect_stats(f->c, 6, 5, 2, 3, 5);
    /* The seqs of rolled-back rows are reused; the dedup set must not confuse them. */
    restart(f);
    expect_stats(f->c, 0, 0, 0, 0, 5);
    SUBMIT(f->c, 0, 0, 5, "a", "b", "c", "d", "x");
}

/* ---- asynchronous submission and stop ---- */

typedef struct async_req {
    commit_req req;
    ev_event ev;
    _Atomic int *done_count;
    int calls;
} async_req;

static void on_done(commit_req *req) {
    async_req *a = req->arg;
    a->calls++;
    atomic_fetch_add(a->done_count, 1);
}

static void test_stop_drains_queue(void **state) {
    fixture *f = *state;
    open_store(f);
    start(f);
    enum { N = 200 };
    async_req *reqs = calloc(N, sizeof *reqs);
    assert_non_null(reqs);
    _Atomic int done_count = 0;
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "async-%d", i % 150); /* the last 50 repeat earlier ids */
        assert_int_equal(make_event(&reqs[i].ev, id), 0);
        reqs[i].done_count = &done_count;
        reqs[i].req =
            (commit_req){.events = &reqs[i].ev, .nevents = 1, .done = on_done, .arg = &reqs[i]};
        assert_int_equal(commit_submit(f->c, &reqs[i].req), 0);
    }
    /* Stop commits everything queued before it returns, calling each done() exactly once. */
    commit_stop(f->c);
    f->c = NULL;
    assert_int_equal(atomic_load(&done_count), N);
    size_t stored = 0, dups = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(reqs[i].calls, 1);
        assert_int_equal(reqs[i].req.status, 0);
        assert_int_equal(reqs[i].req.stored + reqs[i].req.duplicates, 1);
        /* Submission order is commit order: the first copy is the one stored. */
        assert_int_equal(reqs[i].req.stored, i < 150);
        stored += reqs[i].req.stored;
        dups += reqs[i].req.duplicates;
        ev_event_free(&reqs[i].ev);
    }
    free(reqs);
    assert_int_equal(stored, 150);
    assert_int_equal(dups, 50);
    assert_int_equal(store_count_events(f->s), 150);
}

/* ---- many threads ---- */

#define NTHREADS 4
#define REQUESTS 500

typedef struct worker {
    commit *c;
    int id;
    size_t stored, dups;
    int errors;
} worker;

/* Each request: an id only this thread sends, and an id every thread sends with the same number. */
static void *submitter(void *arg) {
    worker *w = arg;
    for (int i = 0; i < REQUESTS; i++) {
        char own[32], shared[32];
        snprintf(own, sizeof own, "t%d-%d", w->id, i);
        snprintf(shared, sizeof shared, "shared-%d", i);
        ev_event ev[2];
        if (make_event(&ev[0], own)) {
            w->errors++;
            continue;
        }
        if (make_event(&ev[1], shared)) {
            ev_event_free(&ev[0]);
            w->errors++;
            continue;
        }
        commit_req req = {.events = ev, .nevents = 2};
        if (commit_submit_wait(w->c, &req) != 0 || req.stored + req.duplicates != 2 ||
            req.stored < 1)
            w->errors++;
        w->stored += req.stored;
        w->dups += req.duplicates;
        ev_event_free(&ev[0]);
        ev_event_free(&ev[1]);
    }
    return NULL;
}

static void test_concurrent_submitters(void **state) {
    fixture *f = *state;
    open_store(f);
    start(f);
    worker w[NTHREADS];
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (worker){.c = f->c, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, submitter, &w[i]), 0);
    }
    size_t stored = 0, dups = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
        stored += w[i].stored;
        dups += w[i].dups;
    }
    const size_t unique = NTHREADS * REQUESTS + REQUESTS;
    assert_int_equal(stored, unique);
    assert_int_equal(dups, (NTHREADS - 1) * REQUESTS);

    /* Exactly once in the store. */
    assert_int_equal(store_count_events(f->s), unique);
    assert_int_equal(count_sql(f->s, "SELECT count(DISTINCT message_id) FROM events"), unique);
    assert_int_equal(
        count_sql(f->s, "SELECT count(*) FROM events WHERE message_id LIKE 'shared-%'"), REQUESTS);

    /* Statistics agree with what the requests were told. Groups formed, so there were at most as
     * many commits as requests. */
    const commit_stats *st = commit_get_stats(f->c);
    uint64_t commits = stat_of(&st->commits);
    assert_true(commits >= 1 && commits <= NTHREADS * REQUESTS);
    expect_stats(f->c, commits, unique, (NTHREADS - 1) * REQUESTS, 0, unique);
    assert_int_equal(stat_of(&st->group_wait.count), NTHREADS * REQUESTS);
}

int main(void) {
    log_set_level(LOG_ERROR);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_stores_events),
        T(test_duplicates_within_request),
        T(test_duplicates_across_requests),
        T(test_empty_and_large_requests),
        T(test_dedup_survives_restart),
        T(test_window_at_restart),
        T(test_window_prune_while_running),
        T(test_failure_stores_nothing_and_forgets),
        T(test_stop_drains_queue),
        T(test_concurrent_submitters),
    };
    return cmocka_run_group_tests_name("commit", tests, NULL, NULL);
}
