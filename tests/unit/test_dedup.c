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
    /* The 641st entry fills 1024 slots past 5/8: the next table, twice the size, is made then,
     * and its pages written as ids keep coming (one per 8 adds), so that none is first read. */
    for (int64_t s = 1; s <= 640; s++)
        assert_int_equal(dedup_add(d, (uint64_t)s * 0x9e3779b97f4a7c15ull, s), 0);
    assert_int_equal(dedup_bytes(d), b0);
    assert_int_equal(dedup_add(d, 641 * 0x9e3779b97f4a7c15ull, 641), 0);
    assert_int_equal(dedup_bytes(d), b0 + 2 * CAP0 * 16);
    for (int64_t s = 642; s <= 768; s++)
        assert_int_equal(dedup_add(d, (uint64_t)s * 0x9e3779b97f4a7c15ull, s), 0);
    assert_false(dedup_step(d, 1)); /* it is whole: nothing left to write, no move yet */
    /* 768 entries fit at load 3/4; the 769th starts the move into the next table, 8 slots per
     * add: both are held until then, and every entry is found all along. */
    assert_int_equal(dedup_add(d, 769 * 0x9e3779b97f4a7c15ull, 769), 0);
    assert_int_equal(dedup_bytes(d), b0 + 2 * CAP0 * 16);
    for (int64_t s = 770; s <= 769 + CAP0 / 8; s++) {
        for (int64_t t = 1; t < s; t += 37)
            assert_true(has(d, (uint64_t)t * 0x9e3779b97f4a7c15ull, t));
        assert_int_equal(dedup_count(d), (size_t)s - 1);
        assert_int_equal(dedup_add(d, (uint64_t)s * 0x9e3779b97f4a7c15ull, s), 0);
    }
    assert_int_equal(dedup_bytes(d), b0 + CAP0 * 16); /* the first table is gone */
    /* Far past several doublings, everything is still there. */
    for (int64_t s = 770 + CAP0 / 8; s <= 20000; s++)
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
    /* Shared hashes, so pruning has to rebuild runs, not just drop entries. 1000 entries grow the
     * table to 2048 slots (and the move into it is over long before the last add). */
    for (int64_t s = 1; s <= 1000; s++)
        assert_int_equal(dedup_add(d, (uint64_t)(s % 37), s), 0);
    size_t bytes = dedup_bytes(d);
    assert_true(bytes >= 2048 * 16 && bytes < 2048 * 16 + 1024); /* one table */
    dedup_prune(d, INT64_MIN);
    assert_int_equal(dedup_count(d), 1000);
    assert_int_equal(dedup_bytes(d), bytes); /* nothing below INT64_MIN: no move */
    dedup_prune(d, 500);
    /* Pruned entries are not found from now on (500..1000 are: min_seq itself is kept)... */
    for (int64_t s = 1; s <= 1000; s++)
        if (has(d, (uint64_t)(s % 37), s) != (s >= 500))
            fail_msg("seq %lld after prune(500)", (long long)s);
    /* ...and leave the count as the table is moved into one of the same size, 8 slots per add,
     * once that table's pages are written (here in one idle step). */
    assert_int_equal(dedup_count(d), 1000);
    assert_int_equal(dedup_bytes(d), 2 * bytes - (bytes - 2048 * 16));
    assert_true(dedup_step(d, 2048));
    assert_int_equal(dedup_count(d), 1000);
    for (int64_t s = 1001; s <= 1000 + 2048 / 8 + 1; s++) {
        assert_int_equal(dedup_add(d, (uint64_t)(s % 37), s), 0);
        assert_true(has(d, (uint64_t)(s % 37), s));
        assert_true(has(d, (uint64_t)(750 % 37), 750));
        assert_false(has(d, (uint64_t)(250 % 37), 250));
    }
    assert_int_equal(dedup_count(d), 501 + 257);
    assert_int_equal(dedup_bytes(d), bytes); /* pruning never shrinks the table */
    /* Still a working set afterwards. */
    dedup_remove(d, (uint64_t)(700 % 37), 700);
    assert_false(has(d, (uint64_t)(700 % 37), 700));
    assert_int_equal(dedup_count(d), 500 + 257);
    /* A lower bound than before changes nothing; the last one prunes everything. */
    dedup_prune(d, 400);
    assert_true(has(d, (uint64_t)(600 % 37), 600));
    dedup_prune(d, 2000);
    for (int64_t s = 1; s <= 1257; s++)
        assert_false(has(d, (uint64_t)(s % 37), s));
    for (int64_t s = 2000; s < 2000 + 2048 / 8; s++)
        assert_int_equal(dedup_add(d, 5, s), 0);
    assert_int_equal(dedup_count(d), 256);
    dedup_free(d);
}

/* A table more than half full is not moved by a prune (the move could not end before the table
 * had to grow); its pruned entries are dropped by the move that grows it. */
static void test_prune_full_table(void **state) {
    (void)state;
    dedup *d = dedup_new();
    for (int64_t s = 1; s <= 700; s++) /* 700 of 1024 slots */
        assert_int_equal(dedup_add(d, (uint64_t)s * 0x9e3779b97f4a7c15ull, s), 0);
    size_t bytes = dedup_bytes(d);
    dedup_prune(d, 401);
    assert_int_equal(dedup_bytes(d), bytes); /* no move */
    assert_int_equal(dedup_count(d), 700);   /* held until the table grows */
    for (int64_t s = 1; s <= 700; s++)
        assert_true(has(d, (uint64_t)s * 0x9e3779b97f4a7c15ull, s) == (s >= 401));
    /* 69 more reach 3/4 and grow the table; the move drops the 400 pruned. */
    for (int64_t s = 701; s <= 769 + 2048 / 8; s++)
        assert_int_equal(dedup_add(d, (uint64_t)s * 0x9e3779b97f4a7c15ull, s), 0);
    assert_int_equal(dedup_count(d), 769 + 2048 / 8 - 400);
    for (int64_t s = 1; s <= 769 + 2048 / 8; s++)
        assert_true(has(d, (uint64_t)s * 0x9e3779b97f4a7c15ull, s) == (s >= 401));
    dedup_free(d);
}

/* Pruning everything (the committer passes INT64_MAX when no event is in the window) drops what is
 * there, not the ids added afterwards. */
static void test_prune_everything(void **state) {
    (void)state;
    dedup *d = dedup_new();
    for (int64_t s = 1; s <= 10; s++)
        assert_int_equal(dedup_add(d, (uint64_t)s, s), 0);
    dedup_prune(d, INT64_MAX);
    for (int64_t s = 1; s <= 10; s++)
        assert_false(has(d, (uint64_t)s, s));
    for (int64_t s = 11; s <= 20; s++) {
        assert_int_equal(dedup_add(d, (uint64_t)s, s), 0);
        assert_true(has(d, (uint64_t)s, s));
    }
    dedup_prune(d, INT64_MAX);
    assert_false(has(d, 20, 20));
    assert_int_equal(dedup_add(d, 21, 21), 0);
    assert_true(has(d, 21, 21));
    while (dedup_step(d, 100))
        ;
    /* One move, planned by the first prune and started once its table was written, dropped both
     * prunes' ids; 21 came after them. */
    assert_int_equal(dedup_count(d), 1);
    dedup_prune(d, INT64_MAX); /* now up to 21 */
    assert_false(has(d, 21, 21));
    while (dedup_step(d, 100))
        ;
    assert_int_equal(dedup_count(d), 0);
    assert_false(dedup_step(d, 100)); /* nothing left to move */
    dedup_free(d);
}

/* A table large enough that the move gives its moved part's pages back (2 MB at a time, dedup.c):
 * runs that cross the move's cursor must still be found, and removed, in the part not yet moved.
 * 8 entries share each hash, so runs are long; and 900 share one whose home is 600 slots (more
 * than two pages) before the half of the 262,144-slot table, so one run surely spans released
 * pages and the cursor when the move is half done, wherever the allocator put the table. */
#define LONG_HASH ((uint64_t)(131072 - 600))
static uint64_t large_hash(int64_t s) {
    return s <= 900 ? LONG_HASH : (uint64_t)(s % 24576) * 0x9e3779b97f4a7c15ull;
}

static void test_large_move(void **state) {
    (void)state;
    enum { N = 262144 };
    dedup *d = dedup_new();
    /* Add until the 262,144-slot table is 3/4 full and its move begins: two tables held. */
    int64_t s = 1;
    for (; s <= N / 4 * 3 + 1; s++)
        assert_int_equal(dedup_add(d, large_hash(s), s), 0);
    s--;
    size_t two = dedup_bytes(d);
    assert_true(two >= (size_t)3 * N * 16 && two < (size_t)3 * N * 16 + 1024);
    /* Half the move (N / 2 slots at 8 per add), past the first 2 MB given back. */
    int64_t half = s + N / 16;
    for (s++; s <= half; s++)
        assert_int_equal(dedup_add(d, large_hash(s), s), 0);
    for (int64_t t = 1; t < s; t++)
        if (!has(d, large_hash(t), t))
            fail_msg("seq %lld lost half way through the move", (long long)t);
    /* Remove every 7th entry, wherever it is now, and check each one once more. */
    int64_t removed_below = s;
    for (int64_t t = 1; t < s; t += 7)
        dedup_remove(d, large_hash(t), t);
    for (int64_t t = 1; t < s; t++)
        if (has(d, large_hash(t), t) != ((t - 1) % 7 != 0))
            fail_msg("seq %lld after removing every 7th", (long long)t);
    /* The rest of the move; then one table, and the same answers. */
    for (; s <= half + N / 16; s++)
        assert_int_equal(dedup_add(d, large_hash(s), s), 0);
    assert_true(dedup_bytes(d) < two && dedup_bytes(d) >= (size_t)2 * N * 16);
    for (int64_t t = 1; t < s; t++)
        if (has(d, large_hash(t), t) != (t >= removed_below || (t - 1) % 7 != 0))
            fail_msg("seq %lld after the move", (long long)t);
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

/* Every live entry is found. The count may still hold pruned entries not yet dropped by a move
 * (dedup.h), never fewer than the live ones. */
static void check_all(const dedup *d, const entry *ref, size_t n, int op) {
    if (dedup_count(d) < n) fail_msg("op %d: count %zu, reference has %zu", op, dedup_count(d), n);
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
            size_t before = dedup_count(d);
            dedup_remove(d, h, next_seq + 1000000);
            entry e = ref[next_rand() % n];
            dedup_remove(d, e.hash ^ (1ull << 50), e.seq);
            if (dedup_count(d) != before)
                fail_msg("op %d: removing an absent entry changed the count", op);
        } else {
            /* Prune a random slice of the oldest. */
            min_seq += (int64_t)(next_rand() % (uint64_t)(next_seq - min_seq + 1) / 8);
            dedup_prune(d, min_seq);
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                if (ref[i].seq >= min_seq)
                    ref[k++] = ref[i];
                else if (has(d, ref[i].hash, ref[i].seq))
                    fail_msg("op %d: a pruned entry is still found", op);
            }
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
        cmocka_unit_test(test_prune_full_table),
        cmocka_unit_test(test_prune_everything),
        cmocka_unit_test(test_large_move),
        cmocka_unit_test(test_randomized),
    };
    return cmocka_run_group_tests_name("dedup", tests, NULL, NULL);
}
