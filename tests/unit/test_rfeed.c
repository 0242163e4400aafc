/* Unit tests of the feed of reco's writes (reco/rfeed.c): a detached feed must leave the models
 * exactly as the same writes made directly do — every customer's history, every strategy's
 * answer, the models' sizes — over a long random stream of every kind of write, crossing many
 * chunks and making the writer wait for the thread. */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "reco/rfeed.h"

#define T0 1700000000000LL
#define CUSTOMERS 300
#define ITEMS 400
#define GROUPS 20

static reco *fresh(void) {
    reco_opts o;
    reco_opts_default(&o);
    reco *r = reco_new(&o);
    assert_non_null(r);
    return r;
}

/* A deterministic generator, so both models see the same stream. */
static uint32_t next(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*s >> 33);
}

static const reco_action actions[] = {RECO_VIEW, RECO_WISH, RECO_CART, RECO_PURCHASE};

/* n writes of every kind, drawn from seed, through f. */
static void stream(rfeed *f, uint64_t seed, int n) {
    uint64_t s = seed;
    int64_t t = T0;
    for (int i = 0; i < n; i++) {
        t += next(&s) % 120000;
        uint32_t who = next(&s) % CUSTOMERS, ids[8];
        unsigned kind = next(&s) % 100;
        size_t m = 1 + next(&s) % 8;
        for (size_t j = 0; j < m; j++)
            ids[j] = next(&s) % (kind < 90 ? ITEMS : GROUPS);
        if (kind < 80) {
            reco_action a = actions[next(&s) % 4];
            assert_int_equal(rfeed_observe(f, who, a, next(&s) % ITEMS, ids, m % 3, t), RECO_OK);
        } else if (kind < 85) {
            assert_int_equal(rfeed_remember(f, who, RECO_VIEW, ids[0], t), RECO_OK);
        } else if (kind < 90) {
            assert_int_equal(rfeed_order(f, who, ids, m), RECO_OK);
        } else if (kind < 95) {
            assert_int_equal(rfeed_set_groups(f, who, ids, m % (RECO_GROUPS + 1)), RECO_OK);
        } else if (kind < 98) {
            uint32_t into = next(&s) % CUSTOMERS;
            if (into != who) assert_int_equal(rfeed_merge(f, who, into), RECO_OK);
        } else {
            rfeed_forget(f, who);
        }
    }
}

/* Every customer's history and every strategy's answer for them, and the sizes, are the same. */
static void assert_same(const reco *a, const reco *b) {
    for (uint32_t who = 0; who < CUSTOMERS; who++) {
        uint32_t ia[RECO_HISTORY], ib[RECO_HISTORY];
        reco_action aa[RECO_HISTORY], ab[RECO_HISTORY];
        int64_t ta[RECO_HISTORY], tb[RECO_HISTORY];
        size_t na = reco_history(a, who, ia, aa, ta, RECO_HISTORY);
        assert_int_equal(na, reco_history(b, who, ib, ab, tb, RECO_HISTORY));
        assert_memory_equal(ia, ib, na * sizeof *ia);
        assert_memory_equal(aa, ab, na * sizeof *aa);
        assert_memory_equal(ta, tb, na * sizeof *ta);
        for (int s = 0; s < RECO_NSTRATEGIES; s++) {
            reco_strategy st = (reco_strategy)s;
            uint32_t anchor = who % ITEMS;
            reco_query q = {.who = who,
                            .strategies = &st,
                            .nstrategies = 1,
                            .anchors = &anchor,
                            .nanchors = 1,
                            .catalogue_items = ITEMS,
                            .limit = 20,
                            .now_ms = T0 + 86400000LL * 30};
            reco_result ra[20], rb[20];
            long n = reco_recommend(a, &q, ra);
            assert_true(n >= 0);
            assert_int_equal(n, reco_recommend(b, &q, rb));
            for (long i = 0; i < n; i++) {
                assert_int_equal(ra[i].item, rb[i].item);
                assert_true(ra[i].score == rb[i].score);
                assert_int_equal(ra[i].strategy, rb[i].strategy);
                assert_int_equal(ra[i].because, rb[i].because);
            }
        }
    }
    reco_stats sa, sb;
    reco_get_stats(a, &sa);
    reco_get_stats(b, &sb);
    assert_int_equal(sa.customers, sb.customers);
    assert_int_equal(sa.cooc_bytes, sb.cooc_bytes);
    assert_int_equal(sa.coview_bytes, sb.coview_bytes);
    assert_int_equal(sa.pop_bytes, sb.pop_bytes);
    assert_int_equal(sa.history_bytes, sb.history_bytes);
}

static void test_detached_equals_direct(void **state) {
    (void)state;
    reco *direct = fresh(), *queued = fresh();
    rfeed *fd = rfeed_new(direct), *fq = rfeed_new(queued);
    assert_non_null(fd);
    assert_non_null(fq);
    /* 400,000 writes of up to 13 words: about 40 chunks, five times RFEED_CHUNKS, so the writer
     * waits for chunks the thread gives back. */
    stream(fd, 42, 400000);
    assert_int_equal(rfeed_detach(fq), 0);
    stream(fq, 42, 400000);
    rfeed_join(fq);
    assert_same(direct, queued);
    /* Joined, the feed is direct again, and may be detached again. */
    stream(fd, 7, 1000);
    stream(fq, 7, 1000);
    assert_int_equal(rfeed_detach(fq), 0);
    stream(fd, 8, 20000);
    stream(fq, 8, 20000);
    rfeed_free(fq); /* joins */
    rfeed_free(fd);
    assert_same(direct, queued);
    reco_free(direct);
    reco_free(queued);
}

/* Order matters: a forget or a merge applies to what came before it, not after. */
static void test_order_kept(void **state) {
    (void)state;
    reco *r = fresh();
    rfeed *f = rfeed_new(r);
    assert_int_equal(rfeed_detach(f), 0);
    uint32_t none[1] = {0};
    assert_int_equal(rfeed_observe(f, 1, RECO_VIEW, 10, none, 0, T0), RECO_OK);
    rfeed_forget(f, 1);
    assert_int_equal(rfeed_observe(f, 1, RECO_VIEW, 11, none, 0, T0 + 1000), RECO_OK);
    assert_int_equal(rfeed_observe(f, 2, RECO_CART, 12, none, 0, T0 + 2000), RECO_OK);
    assert_int_equal(rfeed_merge(f, 2, 1), RECO_OK);
    rfeed_join(f);
    uint32_t items[RECO_HISTORY];
    reco_action acts[RECO_HISTORY];
    int64_t ts[RECO_HISTORY];
    assert_int_equal(reco_history(r, 1, items, acts, ts, RECO_HISTORY), 2);
    assert_int_equal(items[0], 12); /* newest first */
    assert_int_equal(acts[0], RECO_CART);
    assert_int_equal(items[1], 11);
    assert_int_equal(reco_history(r, 2, items, acts, ts, RECO_HISTORY), 0);
    rfeed_free(f);
    reco_free(r);
}

/* Lists longer than RFEED_MAX_IDS are refused the same way direct and detached. */
static void test_too_many_ids(void **state) {
    (void)state;
    reco *r = fresh();
    rfeed *f = rfeed_new(r);
    uint32_t *ids = calloc(RFEED_MAX_IDS + 1, sizeof *ids);
    assert_non_null(ids);
    for (int detached = 0; detached < 2; detached++) {
        if (detached) assert_int_equal(rfeed_detach(f), 0);
        assert_int_equal(rfeed_order(f, 1, ids, RFEED_MAX_IDS + 1), RECO_INVALID);
        assert_int_equal(rfeed_set_groups(f, 1, ids, RFEED_MAX_IDS + 1), RECO_INVALID);
        assert_int_equal(rfeed_observe(f, 1, RECO_VIEW, 3, ids, RFEED_MAX_IDS + 1, T0),
                         RECO_INVALID);
    }
    rfeed_join(f);
    uint32_t items[RECO_HISTORY];
    reco_action acts[RECO_HISTORY];
    int64_t ts[RECO_HISTORY];
    assert_int_equal(reco_history(r, 1, items, acts, ts, RECO_HISTORY), 0);
    free(ids);
    rfeed_free(f);
    reco_free(r);
}

/* Serving (rfeed.h): a batch's writes are handed over when flushed, a few writes are not; a wait
 * hands over what is left and returns once the models hold every write made. */
static void test_flush_wait(void **state) {
    (void)state;
    reco *r = fresh();
    rfeed *f = rfeed_new(r);
    assert_int_equal(rfeed_detach(f), 0);
    uint32_t none[1] = {0}, items[RECO_HISTORY];
    reco_action acts[RECO_HISTORY];
    int64_t ts[RECO_HISTORY];
    rfeed_wait(f); /* nothing written: at once */
    /* A single event's writes stay with the writer when flushed: the thread is not woken for
     * them, and so does not touch the models (which this thread may then read). */
    for (uint32_t j = 0; j < 3; j++)
        assert_int_equal(rfeed_observe(f, 3, RECO_VIEW, j, none, 0, T0 + j), RECO_OK);
    rfeed_flush(f);
    usleep(20000);
    assert_int_equal(reco_history(r, 3, items, acts, ts, RECO_HISTORY), 0);
    rfeed_wait(f); /* hands them over */
    assert_int_equal(reco_history(r, 3, items, acts, ts, RECO_HISTORY), 3);
    enum { VIEWS = 250 }; /* a batch's writes: enough to be handed over when flushed */
    uint32_t last2 = UINT32_MAX;
    for (uint32_t i = 0; i < 300; i++) {
        for (uint32_t j = 0; j < VIEWS; j++) /* a request: customer 1 views items */
            assert_int_equal(rfeed_observe(f, 1, RECO_VIEW, (VIEWS * i + j) % ITEMS, none, 0,
                                           T0 + (VIEWS * i + j) * 1000),
                             RECO_OK);
        rfeed_flush(f);
        if (i % 2 == 0) { /* the next request has begun: one write, not handed over */
            assert_int_equal(rfeed_observe(f, 2, RECO_CART, i % ITEMS, none, 0, T0 + i * 1000),
                             RECO_OK);
            last2 = i % ITEMS;
        }
        /* The thread has likely taken the chunk, and is making it: with nothing left to hand
         * over (odd i), the wait must still wait for it. */
        usleep(20);
        rfeed_wait(f);
        assert_true(reco_history(r, 1, items, acts, ts, RECO_HISTORY) > 0);
        assert_int_equal(items[0], (VIEWS * i + VIEWS - 1) % ITEMS); /* newest first */
        assert_true(reco_history(r, 2, items, acts, ts, RECO_HISTORY) > 0);
        assert_int_equal(items[0], last2);
    }
    rfeed_free(f);
    reco_free(r);
}

/* The engine's pattern across threads (run under TSan by make test): the writer writes and flushes
 * under a lock (three writes: not handed over); readers take the lock, hand over and wait, and
 * read. Each reader sees customer 1's history only ever grow, and whole requests of it. */
typedef struct shared {
    pthread_mutex_t lock;
    rfeed *f;
    reco *r;
    atomic_bool done;
    atomic_int bad;
} shared;

static void *reader(void *arg) {
    shared *sh = arg;
    int64_t last = 0;
    while (!atomic_load(&sh->done)) {
        pthread_mutex_lock(&sh->lock);
        rfeed_wait(sh->f);
        uint32_t items[RECO_HISTORY];
        reco_action acts[RECO_HISTORY];
        int64_t ts[RECO_HISTORY];
        size_t n = reco_history(sh->r, 1, items, acts, ts, RECO_HISTORY);
        /* Requests write three views at times 3k, 3k+1, 3k+2 seconds: a whole one ends at 3k+2. */
        if (n && (ts[0] < last || (ts[0] - T0) / 1000 % 3 != 2)) atomic_fetch_add(&sh->bad, 1);
        if (n) last = ts[0];
        pthread_mutex_unlock(&sh->lock);
    }
    return NULL;
}

static void test_readers_wait(void **state) {
    (void)state;
    shared sh = {.r = fresh()};
    pthread_mutex_init(&sh.lock, NULL);
    sh.f = rfeed_new(sh.r);
    assert_int_equal(rfeed_detach(sh.f), 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reader, &sh), 0);
    uint32_t none[1] = {0};
    for (uint32_t i = 0; i < 2000; i++) {
        pthread_mutex_lock(&sh.lock);
        for (uint32_t j = 0; j < 3; j++)
            assert_int_equal(rfeed_observe(sh.f, 1, RECO_VIEW, (3 * i + j) % ITEMS, none, 0,
                                           T0 + (3 * i + j) * 1000),
                             RECO_OK);
        rfeed_flush(sh.f);
        pthread_mutex_unlock(&sh.lock);
    }
    atomic_store(&sh.done, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&sh.bad), 0);
    rfeed_free(sh.f);
    reco_free(sh.r);
    pthread_mutex_destroy(&sh.lock);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detached_equals_direct), cmocka_unit_test(test_order_kept),
        cmocka_unit_test(test_too_many_ids),           cmocka_unit_test(test_flush_wait),
        cmocka_unit_test(test_readers_wait),
    };
    return cmocka_run_group_tests_name("rfeed", tests, NULL, NULL);
}
