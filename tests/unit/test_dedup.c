/* Unit tests for store/dedup: the open-addressing (hash, seq) set. Besides the plain operations,
 * the hard parts are probe runs: many entries whose hashes share a home slot (or the whole hash),
 * runs that wrap past the end of the table, and backward-shift deletion from the middle of a run. A
 * randomized test with a fixed seed checks thousands of mixed operations against a plain array. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stdbool.h>

#include "store/dedup.h"

/* The table starts with 1024 slots (dedup.c); the tests that build runs at chosen slots rely on
 * staying below its 3/4 load (768 entries), and check that they do. */
#define CAP0 1024

/* ---- match callbacks ---- */

typedef struct want {
    int64_t seq;
    int calls;
} want;

/* Matches one seq; returns 7 so the test sees the callback's own value come back. */
static int match_seq(int64_t seq, void *arg) {
    want *w = arg;
    w->calls++;
    return seq == w->seq ? 7 : 0;
}

static bool has(const dedup *d, uint64_t hash, int64_t seq) {
    want w = {seq, 0};
    int r = dedup_find(d, hash, match_seq, &w);
    if (r != 0 && r != 7) fail_msg("dedup_find returned %d", r);
    return r == 7;
}

typedef struct collect {
    int64_t seqs[4096];
    int n;
    int stop_after; /* return nonzero on this call (1-based); 0: never */
} collect;

static int collect_all(int64_t seq, void *arg) {
    collect *c = arg;
    if (c->n < 4096) c->seqs[c->n] = seq;
    c->n++;
    return c->stop_after && c->n == c->stop_after ? -3 : 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int never_called(int64_t seq, void *arg) {
    (void)seq, (void)arg;
    fail_msg("match called on a hash that is not in the set");
    return 0;
}

/* ---- tests ---- */

static void test_empty(void **state) {
    (void)state;
    dedup *d = dedup_new();
    assert_non_null(d);
    assert_int_equal(dedup_count(d), 0);
    assert_true(dedup_bytes(d) >= CAP0 * 16);
    assert_int_equal(dedup_find(d, 0, never_called, NULL), 0);
    assert_int_equal(dedup_find(d, UINT64_MAX, never_called, NULL), 0);
    dedup_remove(d, 42, 1);
    dedup_prune(d, 100);
    assert_int_equal(dedup_count(d), 0);
    dedup_free(d);
    dedup_free(NULL);
}

static void test_add_find_remove(void **state) {
    (void)state;
    dedup *d = dedup_new();
    assert_int_equal(dedup_add(d, 0, 1), 0);
    assert_int_equal(dedup_add(d, UINT64_MAX, 2), 0);
    assert_int_equal(dedup_add(d, 0x123456789abcdef0ull, 3), 0);
    assert_int_equal(dedup_count(d), 3);
    assert_true(has(d, 0, 1));
    assert_true(has(d, UINT64_MAX, 2));
    assert_true(has(d, 0x123456789abcdef0ull, 3));
    /* Only the hash selects candidates: the right seq under another hash is not found. */
    assert_false(has(d, 1, 1));
    assert_false(has(d, 0, 2));
    /* Hashes with the same low bits (the same home slot) but different high bits are different. */
    assert_false(has(d, (uint64_t)CAP0, 1));
    assert_int_equal(dedup_find(d, (uint64_t)CAP0 << 20, never_called, NULL), 0);

    /* Removing an absent pair (right hash, wrong seq; wrong hash) changes nothing. */
    dedup_remove(d, 0, 99);
    dedup_remove(d, 77, 1);
    assert_int_equal(dedup_count(d), 3);
    dedup_remove(d, UINT64_MAX, 2);
    assert_int_equal(dedup_count(d), 2);
    assert_false(has(d, UINT64_MAX, 2));
    assert_true(has(d, 0, 1));
    assert_true(has(d, 0x123456789abcdef0ull, 3));
    dedup_remove(d, UINT64_MAX, 2); /* twice */
    assert_int_equal(dedup_count(d), 2);
    dedup_free(d);
}

static void test_find_callback_protocol(void **state) {
    (void)state;
    dedup *d = dedup_new();
    for (int64_t s = 1; s <= 5; s++)
        assert_int_equal(dedup_add(d, 99, s * 10), 0);
    assert_int_equal(dedup_add(d, 100, 1000), 0); /* a neighbour with another hash */

    /* Every candidate with the hash is offered, and only those. */
    collect c = {.n = 0};
    assert_int_equal(dedup_find(d, 99, collect_all, &c), 0);
    assert_int_equal(c.n, 5);
    qsort(c.seqs, 5, sizeof c.seqs[0], cmp_i64);
    for (int i = 0; i < 5; i++)
        assert_int_equal(c.seqs[i], (i + 1) * 10);

    /* The first nonzero return stops the search and is returned as it is. */
    collect stop = {.n = 0, .stop_after = 2};
    assert_int_equal(dedup_find(d, 99, collect_all, &stop), -3);
    assert_int_equal(stop.n, 2);
    dedup_free(d);
}

static void test_same_hash_many_seqs(void **state) {
    (void)state;
    /* 3000 entries with one hash: one long run that also forces two resizes. */
    dedup *d = dedup_new();
    const uint64_t h = 0xfeedfacecafebeefull;
    for (int64_t s = 1; s <= 3000; s++)
        assert_int_equal(dedup_add(d, h, s), 0);
    assert_int_equal(dedup_add(d, h + 1, 5000), 0);
    assert_int_equal(dedup_count(d), 3001);
    collect c = {.n = 0};
    assert_int_equal(dedup_find(d, h, collect_all, &c), 0);
    assert_int_equal(c.n, 3000);
    qsort(c.seqs, 3000, sizeof c.seqs[0], cmp_i64);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(c.seqs[i], i + 1);
    assert_true(has(d, h + 1, 5000));

    /* Remove every third from the middle of the run; the rest stay findable. */
    for (int64_t s = 3; s <= 3000; s += 3)
        dedup_remove(d, h, s);
    assert_int_equal(dedup_count(d), 2001);
    c.n = 0;
    assert_int_equal(dedup_find(d, h, collect_all, &c), 0);
    assert_int_equal(c.n, 2000);
    for (int64_t s = 1; s <= 3000; s++)
        assert_true(has(d, h, s) == (s % 3 != 0));
    assert_true(has(d, h + 1, 5000));
    dedup_free(d);
}

/* Hash whose home slot in the initial table is `home`, made distinct by high bits. */
static uint64_t at(size_t home, uint64_t tag) {
    return (tag << 32) | home;
}

static void test_backward_shift_runs(void **state) {
    (void)state;
    /* A run at slots 10..16 built from several homes:
     *   slot 10: A(home 10)  11: B(10)  12: C(11)  13: D(10)  14: E(12)  15: F(15)  16: G(13)
     * Deleting B must move C, D, E back but may not move F before its home; G is behind F. */
    static const struct {
        size_t home;
        int64_t seq;
    } run[] = {{10, 1}, {10, 2}, {11, 3}, {10, 4}, {12, 5}, {15, 6}, {13, 7}};
    enum { N = sizeof run / sizeof *run };
    for (int victim = 0; victim < N; victim++) {
        dedup *d = dedup_new();
        for (int i = 0; i < N; i++)
            assert_int_equal(dedup_add(d, at(run[i].home, (uint64_t)i + 1), run[i].seq), 0);
        dedup_remove(d, at(run[victim].home, (uint64_t)victim + 1), run[victim].seq);
        assert_int_equal(dedup_count(d), N - 1);
        for (int i = 0; i < N; i++)
            if (has(d, at(run[i].home, (uint64_t)i + 1), run[i].seq) != (i != victim))
                fail_msg("after removing entry %d, entry %d is %s", victim, i,
                         i == victim ? "still there" : "lost");
        /* Then remove the rest one by one, in an order that differs per round. */
        for (int k = 1; k < N; k++) {
            int i = (victim + k * 3) % N;
            if (i == victim) continue;
            dedup_remove(d, at(run[i].home, (uint64_t)i + 1), run[i].seq);
        }
        /* (victim + 3k) mod 7 for k = 1..6 visits every other index exactly once. */
        assert_int_equal(dedup_count(d), 0);
        dedup_free(d);
    }
}

static void test_wraparound_run(void **state) {
    (void)state;
    /* Entries homed at the last slots spill over to slots 0, 1, ...; entries homed at 0 and 1 then
     * sit behind them. Removing near the end must shift across the wrap correctly. */
    static const struct {
        size_t home;
        int64_t seq;
    } run[] = {{CAP0 - 2, 1}, {CAP0 - 1, 2}, {CAP0 - 2, 3}, {0, 4},
               {CAP0 - 1, 5}, {1, 6},        {0, 7},        {2, 8}};
    enum { N = sizeof run / sizeof *run };
    for (int victim = 0; victim < N; victim++) {
        for (int second = 0; second < N; second++) {
            if (second == victim) continue;
            dedup *d = dedup_new();
            for (int i = 0; i < N; i++)
                assert_int_equal(dedup_add(d, at(run[i].home, (uint64_t)i + 1), run[i].seq), 0);
            dedup_remove(d, at(run[victim].home, (uint64_t)victim + 1), run[victim].seq);
            dedup_remove(d, at(run[second].home, (uint64_t)second + 1), run[second].seq);
            assert_int_equal(dedup_count(d), N - 2);
            for (int i = 0; i < N; i++) {
                bool present = i != victim && i != second;
                if (has(d, at(run[i].home, (uint64_t)i + 1), run[i].seq) != present)
                    fail_msg("removing %d then %d: entry %d is %s", victim, second, i,
                             present ? "lost" : "still there");
            }
            dedup_free(d);
        }
    }
}

/* dedup_reserve sizes the table once: adding that many ids afterwards never grows it. */
static void test_reserve(void **state) {
    (void)state;
    dedup *d = dedup_new();
    assert_int_equal(dedup_reserve(d, 10000), 0);
    size_t bytes = dedup_bytes(d);
    assert_true(bytes >= 16384 * 16 && bytes < 16384 * 16 + 1024); /* 10000 / (3/4) -> 2^14 slots */
    for (int64_t i = 1; i <= 10000; i++)
        assert_int_equal(dedup_add(d, (uint64_t)i * 0x9e3779b97f4a7c15ull, i), 0);
    assert_int_equal(dedup_bytes(d), bytes);
    assert_int_equal(dedup_count(d), 10000);
    assert_int_equal(dedup_reserve(d, 100), 0); /* never shrinks */
    assert_int_equal(dedup_bytes(d), bytes);
    dedup_free(d);
}

static void test_growth(void **state) {
    (void)state;
    dedup *d = dedup_new();
    size_t b0 = dedup_bytes(d);
    /* 768 entries fit in 1024 slots at load 3/4; the 769th doubles the table. */
    for (int64_t s = 1; s <= 768; s++)
        assert_int_equal(dedup_add(d, (uint64_t)s * 0x9e3779b97f4a7c15ull, s), 0);
    assert_int_equal(dedup_bytes(d), b0);
    assert_int_equal(dedup_add(d, 769 * 0x9e3779b97f4a7c15ull, 769), 0);
    assert_int_equal(dedup_bytes(d), b0 + CAP0 * 16);
    /* Far past several doublings, everything is still there. */
    for (int64_t s = 770; s <= 20000; s++)
        assert_int_equal(dedup_add(d, (uint64_t)s * 0x9e3779b97f4a7c15ull, s), 0);
    assert_int_equal(dedup_count(d), 20000);
    /* 20000 / 0.75 = 26667 slots needed: 32768. */
    assert_int_equal(dedup_bytes(d), b0 + (32768 - CAP0) * 16);
    for (int64_t s = 1; s <= 20000; s++)
        assert_true(has(d, (uint64_t)s * 0x9e3779b97f4a7c15ull, s));
    assert_false(has(d, 20001 * 0x9e3779b97f4a7c15ull, 20001));
    dedup_free(d);
}

static void test_prune(void **state) {
    (void)state;
    dedup *d = dedup_new();
    /* Shared hashes, so pruning has to rebuild runs, not just drop entries. */
    for (int64_t s = 1; s <= 1000; s++)
        assert_int_equal(dedup_add(d, (uint64_t)(s % 37), s), 0);
    size_t bytes = dedup_bytes(d);
    dedup_prune(d, INT64_MIN);
    assert_int_equal(dedup_count(d), 1000);
    dedup_prune(d, 1);
    assert_int_equal(dedup_count(d), 1000);
    dedup_prune(d, 500);
    assert_int_equal(dedup_count(d), 501); /* 500..1000: min_seq itself is kept */
    for (int64_t s = 1; s <= 1000; s++)
        if (has(d, (uint64_t)(s % 37), s) != (s >= 500))
            fail_msg("seq %lld after prune(500)", (long long)s);
    assert_int_equal(dedup_bytes(d), bytes); /* pruning never shrinks the table */
    /* Still a working set afterwards. */
    assert_int_equal(dedup_add(d, 5, 2000), 0);
    assert_true(has(d, 5, 2000));
    dedup_remove(d, (uint64_t)(700 % 37), 700);
    assert_false(has(d, (uint64_t)(700 % 37), 700));
    assert_int_equal(dedup_count(d), 501);
    dedup_prune(d, INT64_MAX);
    assert_int_equal(dedup_count(d), 0);
    assert_false(has(d, 5, 2000));
    assert_int_equal(dedup_add(d, 5, 3000), 0);
    assert_int_equal(dedup_count(d), 1);
    dedup_free(d);
}

/* ---- randomized, against a reference array ---- */

static uint64_t rng = 0x853c49e6748fea9bull;

static uint64_t next_rand(void) {
    /* xorshift64*: fixed seed, so a failure reproduces. */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

typedef struct entry {
    uint64_t hash;
    int64_t seq;
} entry;

static void check_all(const dedup *d, const entry *ref, size_t n, int op) {
    if (dedup_count(d) != n) fail_msg("op %d: count %zu, reference has %zu", op, dedup_count(d), n);
    for (size_t i = 0; i < n; i++)
        if (!has(d, ref[i].hash, ref[i].seq))
            fail_msg("op %d: (%llx, %lld) lost", op, (unsigned long long)ref[i].hash,
                     (long long)ref[i].seq);
}

static void test_randomized(void **state) {
    (void)state;
    enum { OPS = 30000, MAXREF = 4000 };
    entry *ref = malloc(MAXREF * sizeof *ref);
    assert_non_null(ref);
    size_t n = 0, most = 0;
    int64_t next_seq = 1, min_seq = 1;
    dedup *d = dedup_new();
    int adds = 0, removes = 0, prunes = 0;
    for (int op = 0; op < OPS; op++) {
        /* The live size drifts towards 600, then 1000 (past the first resize), then 200. */
        size_t target = op < 10000 ? 600 : op < 20000 ? 1000 : 200;
        unsigned add_pct = n < target ? 65 : 35;
        unsigned kind = (unsigned)(next_rand() % 100);
        /* Few distinct home slots and a few high-bit variants of each: long, overlapping runs of
         * different hashes with the same home, which is what backward shifting must get right. */
        uint64_t h = ((next_rand() % 4) << 40) | (next_rand() % 1500);
        if (n == 0 || (kind < add_pct && n < MAXREF)) {
            assert_int_equal(dedup_add(d, h, next_seq), 0);
            ref[n++] = (entry){h, next_seq++};
            adds++;
        } else if (kind < 96) {
            size_t i = (size_t)(next_rand() % n);
            entry e = ref[i];
            dedup_remove(d, e.hash, e.seq);
            ref[i] = ref[--n];
            removes++;
            if (has(d, e.hash, e.seq)) fail_msg("op %d: removed entry still found", op);
        } else if (kind < 99) {
            /* Remove something absent: a seq never used, or a live seq under another hash. */
            dedup_remove(d, h, next_seq + 1000000);
            entry e = ref[next_rand() % n];
            dedup_remove(d, e.hash ^ (1ull << 50), e.seq);
            if (dedup_count(d) != n)
                fail_msg("op %d: removing an absent entry changed the count", op);
        } else {
            /* Prune a random slice of the oldest. */
            min_seq += (int64_t)(next_rand() % (uint64_t)(next_seq - min_seq + 1) / 8);
            dedup_prune(d, min_seq);
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (ref[i].seq >= min_seq) ref[k++] = ref[i];
            n = k;
            prunes++;
        }
        if (n > most) most = n;
        if (op % 97 == 0) check_all(d, ref, n, op);
    }
    check_all(d, ref, n, OPS);
    /* The mix really exercised all paths, with the table well filled and grown at least once. */
    assert_true(adds > 10000 && removes > 10000 && prunes > 100);
    assert_true(most > 800);
    assert_true(dedup_bytes(d) >= 2048 * 16);
    dedup_free(d);
    free(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_add_find_remove),
        cmocka_unit_test(test_find_callback_protocol),
        cmocka_unit_test(test_same_hash_many_seqs),
        cmocka_unit_test(test_backward_shift_runs),
        cmocka_unit_test(test_wraparound_run),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_randomized),
    };
    return cmocka_run_group_tests_name("dedup", tests, NULL, NULL);
}
