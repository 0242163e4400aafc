/* Unit tests for store/commit, the group committer: events are stored once per messageId (within a
 * request, across requests, across a restart, and not beyond the dedup window), a failed group
 * stores nothing and forgets its ids while the groups around it are unaffected, erasures sent with
 * a request are durable, stop drains the queue, and many threads submitting at once get every
 * event stored exactly once with consistent statistics. The engine clock runs in test mode, so
 * windows are crossed by moving it, never by sleeping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include <dirent.h>
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
    bool preload; /* start() as the server does: the indexes load on a thread of their own */
} fixture;

static void open_store(fixture *f) {
    char err[512] = "";
    f->s = store_open(f->dir, err, sizeof err);
    if (!f->s) fail_msg("store_open: %s", err);
}

static void start(fixture *f) {
    char err[512] = "";
    if (f->preload) {
        f->opts.preload = commit_preload_start(f->s, f->opts.dedup_window_ms);
        assert_non_null(f->opts.preload);
    }
    f->c = commit_start(f->s, &f->opts, err, sizeof err);
    f->opts.preload = NULL; /* taken over */
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

/* Makes e fail its group: the log refuses a record of 1 GiB or more (evlog_append checks the length
 * before it reads the body, so the body stays the event's own small one). */
static void poison(ev_event *e) {
    e->body_len = 1u << 30;
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
        if (strcmp(ids[b->n], "poison") == 0) poison(&b->ev[b->n]);
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

/* The stored messageIds in seq order, comma-separated (a record without one as "-"). */
typedef struct id_list {
    buf b;
    size_t n;
} id_list;

static int add_id(const evlog_rec *r, void *arg) {
    id_list *l = arg;
    if ((l->n++ && buf_putc(&l->b, ',')) || buf_puts(&l->b, r->message_id ? r->message_id : "-"))
        return -1;
    return 0;
}

static const char *stored_ids(store *s, char *out, size_t n) {
    id_list l = {BUF_INIT(0), 0};
    assert_int_equal(evlog_scan(store_log(s), 1, add_id, &l), 0);
    snprintf(out, n, "%s", buf_str(&l.b));
    buf_free(&l.b);
    return out;
}

/* The stored records whose messageId is id (prefix false) or starts with it (prefix true). */
typedef struct id_match {
    const char *id;
    bool prefix;
    int64_t n;
} id_match;

static int match_id(const evlog_rec *r, void *arg) {
    id_match *m = arg;
    if (r->message_id && (m->prefix ? strncmp(r->message_id, m->id, strlen(m->id)) == 0
                                    : strcmp(r->message_id, m->id) == 0))
        m->n++;
    return 0;
}

static int64_t count_id(store *s, const char *id, bool prefix) {
    id_match m = {id, prefix, 0};
    assert_int_equal(evlog_scan(store_log(s), 1, match_id, &m), 0);
    return m.n;
}

/* The number of distinct messageIds stored. */
typedef struct id_set {
    char **ids;
    size_t n, cap;
} id_set;

static int collect_id(const evlog_rec *r, void *arg) {
    id_set *set = arg;
    if (!r->message_id) return 0;
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 256;
        char **p = realloc(set->ids, cap * sizeof *p);
        if (!p) return -1;
        set->ids = p;
        set->cap = cap;
    }
    if (!(set->ids[set->n] = strdup(r->message_id))) return -1;
    set->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int64_t count_distinct_ids(store *s) {
    id_set set = {0};
    assert_int_equal(evlog_scan(store_log(s), 1, collect_id, &set), 0);
    qsort(set.ids, set.n, sizeof *set.ids, cmp_str);
    int64_t distinct = 0;
    for (size_t i = 0; i < set.n; i++)
        distinct += i == 0 || strcmp(set.ids[i], set.ids[i - 1]) != 0;
    for (size_t i = 0; i < set.n; i++)
        free(set.ids[i]);
    free(set.ids);
    return distinct;
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
    /* One write and one sync, each observed once, per group made durable; a failed group has
     * neither. */
    assert_int_equal(stat_of(&st->latency.count), commits - failures);
    assert_int_equal(stat_of(&st->syncs), commits - failures);
    assert_int_equal(stat_of(&st->sync_latency.count), commits - failures);
}

/* store_each() hands over the rows of ev[0..] in order. */
typedef struct rows_seen {
    const ev_event *ev;
    size_t n;
} rows_seen;

static int check_row(const store_row *row, void *arg) {
    rows_seen *s = arg;
    const ev_event *e = &s->ev[s->n++];
    assert_int_equal(row->seq, s->n);
    assert_int_equal(row->ts_ms, e->timestamp_ms);
    assert_int_equal(row->type, EV_TRACK);
    assert_int_equal(row->kind, 0);
    assert_non_null(row->user_id);
    assert_string_equal(row->user_id, "u1");
    assert_null(row->anonymous_id);
    assert_int_equal(row->body_len, e->body_len);
    assert_memory_equal(row->body, e->body, row->body_len);
    return 0;
}

/* The seqs store_each() hands over. */
typedef struct seq_list {
    int64_t seq[8];
    size_t n;
} seq_list;

static int note_seq(const store_row *row, void *arg) {
    seq_list *l = arg;
    if (l->n == 8) return -1;
    l->seq[l->n++] = row->seq;
    return 0;
}

/* Whether any file of the store's log holds these bytes. */
static bool log_files_contain(fixture *f, const char *text) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/events", f->dir);
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        buf b = BUF_INIT(0);
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
            assert_int_equal(buf_append(&b, chunk, n), 0);
        fclose(fp);
        found = b.len && memmem(b.data, b.len, text, strlen(text)) != NULL;
        buf_free(&b);
    }
    closedir(d);
    return found;
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

    /* The record holds the normalised event as it is, read back both from the log and through the
     * store. */
    evlog *l = store_log(f->s);
    assert_int_equal(evlog_last_seq(l), 2);
    assert_int_equal(evlog_count(l), 2);
    buf scratch = BUF_INIT(0);
    evlog_rec r;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(b.ev[i].seq, i + 1);
        assert_int_equal(evlog_read(l, i + 1, &r, &scratch), 1);
        assert_int_equal(r.seq, i + 1);
        assert_int_equal(r.received_ms, b.ev[i].received_ms);
        assert_int_equal(r.ts_ms, b.ev[i].timestamp_ms);
        assert_int_equal(r.type, EV_TRACK);
        assert_int_equal(r.kind, 0);
        assert_non_null(r.user_id);
        assert_string_equal(r.user_id, "u1");
        assert_null(r.anonymous_id);
        assert_non_null(r.message_id);
        assert_string_equal(r.message_id, b.ev[i].message_id);
        assert_int_equal(r.body_len, b.ev[i].body_len);
        assert_memory_equal(r.body, b.ev[i].body, r.body_len);
    }
    assert_int_equal(evlog_read(l, 3, &r, &scratch), 0);
    buf_free(&scratch);
    rows_seen seen = {.ev = b.ev};
    assert_int_equal(store_each(f->s, NULL, 0, check_row, &seen), 0);
    assert_int_equal(seen.n, 2);
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
    assert_int_equal(count_id(f->s, "old", false), 2);

    /* Far in the future nothing is loaded. */
    clock_advance_ms(HOUR_MS);
    restart(f);
    expect_stats(f->c, 0, 0, 0, 0, 0);
    SUBMIT(f->c, 0, 2, 0, "mid", "new");
    char ids[256];
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "old,mid,new,old,mid,new");
}

/* The same two, with the indexes loaded the server's way. */
static void test_dedup_survives_restart_preloaded(void **state) {
    ((fixture *)*state)->preload = true;
    test_dedup_survives_restart(state);
}

static void test_window_at_restart_preloaded(void **state) {
    ((fixture *)*state)->preload = true;
    test_window_at_restart(state);
}

/* A start-up that fails after the load began (the engine's replay, say) cancels it. */
static void test_preload_cancelled(void **state) {
    fixture *f = *state;
    open_store(f);
    start(f);
    SUBMIT(f->c, 0, 2, 0, "a", "b");
    shut(f);
    open_store(f);
    commit_preload_cancel(commit_preload_start(f->s, f->opts.dedup_window_ms));
    commit_preload_cancel(NULL);
    start(f);
    expect_stats(f->c, 0, 0, 0, 0, 2);
    SUBMIT(f->c, 0, 1, 1, "a", "c");
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
    /* The old "a" counts among the ids held until the table's compaction has passed it
     * (dedup.h), which the committer finishes while idle: soon, with no more requests. */
    const commit_stats *st = commit_get_stats(f->c);
    for (int i = 0; i < 2000 && atomic_load(&st->dedup_ids) != 2; i++)
        usleep(1000);
    expect_stats(f->c, 3, 3, 1, 0, 2);
    assert_int_equal(store_count_events(f->s), 3); /* a, b, a */
}

typedef struct counted_req {
    commit_req req;
    _Atomic int *done_count;
} counted_req;

static void count_done(commit_req *req) {
    counted_req *r = req->arg;
    atomic_fetch_add(r->done_count, 1);
}

static void test_failure_stores_nothing_and_forgets(void **state) {
    fixture *f = *state;
    /* Every request a group of its own, even when several are queued (below). */
    f->opts.max_group_events = 1;
    open_store(f);
    start(f);
    SUBMIT(f->c, 0, 1, 0, "x");
    /* The poison event makes the whole group fail: nothing of the request is stored, and the
     * request reports neither stored nor duplicate events. */
    SUBMIT(f->c, -1, 0, 0, "a", "x", "a", "poison", "b");
    char ids[256];
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "x");
    assert_int_equal(evlog_last_seq(store_log(f->s)), 1);
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

    /* A failing request queued between two others, each in a group of its own: only it fails. */
    batch b[3];
    batch_make(&b[0], IDS("e"));
    batch_make(&b[1], IDS("f", "poison"));
    batch_make(&b[2], IDS("g", "f"));
    _Atomic int done_count = 0;
    counted_req cr[2];
    for (int i = 0; i < 2; i++) {
        cr[i] = (counted_req){.done_count = &done_count};
        cr[i].req =
            (commit_req){.events = b[i].ev, .nevents = b[i].n, .done = count_done, .arg = &cr[i]};
        assert_int_equal(commit_submit(f->c, &cr[i].req), 0);
    }
    b[2].req = (commit_req){.events = b[2].ev, .nevents = b[2].n};
    assert_int_equal(commit_submit_wait(f->c, &b[2].req), 0);
    /* Groups are reported in order: the first two are done by now. */
    assert_int_equal(atomic_load(&done_count), 2);
    assert_int_equal(cr[0].req.status, 0);
    assert_int_equal(cr[0].req.stored, 1);
    assert_int_equal(cr[1].req.status, -1);
    assert_int_equal(cr[1].req.stored + cr[1].req.duplicates, 0);
    assert_int_equal(b[2].req.stored, 2); /* f was forgotten with its group */
    assert_int_equal(b[2].req.duplicates, 0);
    for (int i = 0; i < 3; i++)
        batch_free(&b[i]);
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "x,a,b,c,d,e,g,f");
    expect_stats(f->c, 9, 8, 2, 4, 8);

    /* The seqs of failed groups are reused; the dedup set must not confuse them. */
    restart(f);
    expect_stats(f->c, 0, 0, 0, 0, 8);
    SUBMIT(f->c, 0, 0, 8, "a", "b", "c", "d", "x", "e", "f", "g");
    assert_int_equal(store_count_events(f->s), 8);
}

/* The records of the given seqs are gone: from the log, from the store's readers and from the disk;
 * the others are all there. */
static void expect_erased(fixture *f) {
    char ids[256];
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "keep-1,keep-2,after");
    assert_int_equal(store_count_events(f->s), 3);
    evlog *l = store_log(f->s);
    assert_int_equal(evlog_last_seq(l), 5);
    buf scratch = BUF_INIT(0);
    evlog_rec r;
    for (int64_t seq = 1; seq <= 5; seq++)
        assert_int_equal(evlog_read(l, seq, &r, &scratch), seq == 2 || seq == 3 ? 0 : 1);
    buf_free(&scratch);
    seq_list seen = {0};
    assert_int_equal(store_each(f->s, NULL, 0, note_seq, &seen), 0);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.seq[0], 1);
    assert_int_equal(seen.seq[1], 4);
    assert_int_equal(seen.seq[2], 5);
    seen.n = 0;
    assert_int_equal(store_each(f->s, (const int64_t[]){1, 2, 3, 4, 5}, 5, note_seq, &seen), 0);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.seq[1], 4);
    /* Their bytes are no longer in the log's files (and the search does find what is kept). */
    assert_false(log_files_contain(f, "erase-me-"));
    assert_true(log_files_contain(f, "keep-2"));
}

static void test_deletes_erase_records(void **state) {
    fixture *f = *state;
    open_store(f);
    start(f);
    SUBMIT(f->c, 0, 4, 0, "keep-1", "erase-me-1", "erase-me-2", "keep-2");
    assert_int_equal(store_count_events(f->s), 4);
    /* Two erasures and an event in one request: once it is durable, the count has dropped by 2
     * and grown by 1. */
    batch b;
    batch_make(&b, IDS("after"));
    const int64_t deletes[] = {2, 3};
    b.req = (commit_req){.events = b.ev, .nevents = b.n, .deletes = deletes, .ndeletes = 2};
    assert_int_equal(commit_submit_wait(f->c, &b.req), 0);
    assert_int_equal(b.req.stored, 1);
    assert_int_equal(b.ev[0].seq, 5);
    batch_free(&b);
    expect_erased(f);
    const commit_stats *st = commit_get_stats(f->c);
    assert_int_equal(stat_of(&st->commits), 2);
    assert_int_equal(stat_of(&st->events_stored), 5);
    assert_int_equal(stat_of(&st->failures), 0);
    /* Still gone after closing and reopening the store; the erased ids are not reloaded. */
    restart(f);
    expect_erased(f);
    expect_stats(f->c, 0, 0, 0, 0, 3);
}

/* Submits a request that only erases (as the server's erasure does: http_commit_deletes) and waits;
 * returns its status. */
static int submit_deletes(commit *c, const int64_t *seqs, size_t n) {
    commit_req req = {.deletes = seqs, .ndeletes = n};
    int rc = commit_submit_wait(c, &req);
    assert_int_equal(rc, req.status);
    assert_int_equal(req.stored + req.duplicates, 0);
    return rc;
}

/* A request with erasures and no events, as the server's erasure sends (http_commit_deletes): the
 * records go, durably, and the request stores nothing. */
static void test_deletes_alone(void **state) {
    fixture *f = *state;
    open_store(f);
    start(f);
    SUBMIT(f->c, 0, 3, 0, "d-1", "d-2", "d-3");
    SUBMIT(f->c, 0, 1, 0, "d-4");
    assert_int_equal(submit_deletes(f->c, (const int64_t[]){1}, 1), 0);
    char ids[256];
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "d-2,d-3,d-4");
    assert_int_equal(store_count_events(f->s), 3);
    /* Missing seqs and seqs already erased are skipped. */
    assert_int_equal(submit_deletes(f->c, (const int64_t[]){1, 3, 99}, 3), 0);
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "d-2,d-4");
    assert_int_equal(store_count_events(f->s), 2);
    const commit_stats *st = commit_get_stats(f->c);
    assert_int_equal(stat_of(&st->commits), 4);
    assert_int_equal(stat_of(&st->events_stored), 4);
    assert_int_equal(stat_of(&st->failures), 0);
    assert_int_equal(stat_of(&st->syncs), 4);
    assert_false(log_files_contain(f, "\"d-1\""));
    assert_false(log_files_contain(f, "\"d-3\""));
    assert_true(log_files_contain(f, "\"d-2\""));
    restart(f);
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "d-2,d-4");
    assert_int_equal(store_count_events(f->s), 2);
    assert_int_equal(evlog_last_seq(store_log(f->s)), 4);
    /* Seq 4 is in the log's last group: the erasure gets a record of the log's own after it (a
     * crash could otherwise not tell the erased record from a torn one), invisible to readers. */
    assert_int_equal(submit_deletes(f->c, (const int64_t[]){4}, 1), 0);
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "d-2");
    assert_int_equal(store_count_events(f->s), 1);
    assert_int_equal(evlog_last_seq(store_log(f->s)), 5);
    assert_false(log_files_contain(f, "\"d-4\""));
    restart(f);
    assert_string_equal(stored_ids(f->s, ids, sizeof ids), "d-2");
    assert_int_equal(store_count_events(f->s), 1);
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

/* ---- applying ---- */

/* What the apply callback saw: the seqs it was given must rise, and each request's done() must come
 * after its events were applied. Which thread applied is counted by name. */
typedef struct applied {
    pthread_mutex_t lock;
    int64_t last_seq;
    size_t events, out_of_order, done_early, on_committer, on_applier;
} applied;

static void record_apply(void *arg, ev_event *events, size_t n) {
    applied *a = arg;
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    /* A batch takes a while to apply: long enough for the committer to sync the next group, which
     * must then wait for it rather than be applied beside it. */
    if (n > 1) usleep(5000);
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < n; i++) {
        if (!events[i].seq) continue; /* a duplicate */
        a->out_of_order += events[i].seq <= a->last_seq;
        a->last_seq = events[i].seq;
        a->events++;
    }
    a->on_committer += strcmp(name, "engaged-commit") == 0;
    a->on_applier += strcmp(name, "engaged-apply") == 0;
    pthread_mutex_unlock(&a->lock);
}

typedef struct sized_req {
    commit_req req;
    ev_event *ev;
    applied *log;
} sized_req;

static void check_applied(commit_req *req) {
    sized_req *r = req->arg;
    pthread_mutex_lock(&r->log->lock);
    for (size_t i = 0; i < req->nevents; i++)
        r->log->done_early += r->ev[i].seq > r->log->last_seq;
    pthread_mutex_unlock(&r->log->lock);
}

/* Small groups that find the applier idle are applied by the committer, a batch's by the applier;
 * mixed, they are still applied once each, in log order, before their done(). */
static void test_apply_in_order(void **state) {
    fixture *f = *state;
    applied a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    f->opts.apply = record_apply;
    f->opts.apply_arg = &a;
    open_store(f);
    start(f);
    enum { N = 120, BIG = 100 };
    sized_req *reqs = calloc(N, sizeof *reqs);
    assert_non_null(reqs);
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        size_t n = i % 3 == 2 ? BIG : 1;
        reqs[i].ev = calloc(n, sizeof *reqs[i].ev);
        assert_non_null(reqs[i].ev);
        for (size_t j = 0; j < n; j++) {
            char id[48];
            snprintf(id, sizeof id, "apply-%d-%zu", i, j);
            assert_int_equal(make_event(&reqs[i].ev[j], id), 0);
        }
        reqs[i].log = &a;
        reqs[i].req = (commit_req){
            .events = reqs[i].ev, .nevents = n, .done = check_applied, .arg = &reqs[i]};
        total += n;
        /* The first twenty one by one, so that the applier is idle for them (the wait takes over
         * done(): the check is made here); the rest queued at once, so that small and large
         * groups interleave. */
        if (i < 20) {
            assert_int_equal(commit_submit_wait(f->c, &reqs[i].req), 0);
            check_applied(&(commit_req){.events = reqs[i].ev, .nevents = n, .arg = &reqs[i]});
        } else {
            assert_int_equal(commit_submit(f->c, &reqs[i].req), 0);
        }
    }
    commit_stop(f->c);
    f->c = NULL;
    assert_int_equal(a.events, total);
    assert_int_equal(a.out_of_order, 0);
    assert_int_equal(a.done_early, 0);
    assert_true(a.on_committer > 0);
    assert_true(a.on_applier > 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(reqs[i].req.status, 0);
        for (size_t j = 0; j < reqs[i].req.nevents; j++)
            ev_event_free(&reqs[i].ev[j]);
        free(reqs[i].ev);
    }
    free(reqs);
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
    assert_int_equal(count_distinct_ids(f->s), unique);
    assert_int_equal(count_id(f->s, "shared-", true), REQUESTS);

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
        T(test_dedup_survives_restart_preloaded),
        T(test_window_at_restart_preloaded),
        T(test_preload_cancelled),
        T(test_window_prune_while_running),
        T(test_failure_stores_nothing_and_forgets),
        T(test_deletes_erase_records),
        T(test_deletes_alone),
        T(test_stop_drains_queue),
        T(test_apply_in_order),
        T(test_concurrent_submitters),
    };
    return cmocka_run_group_tests_name("commit", tests, NULL, NULL);
}
