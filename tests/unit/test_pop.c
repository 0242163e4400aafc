/* Unit tests for reco/pop: decayed popularity boards. Scores are hand-computed; with a 1000 ms
 * half-life and events at whole half-lives they are exact powers of two, elsewhere they are
 * checked to 1e-9 relative. The hard parts are the board order (ties: smaller item first) after
 * every kind of update, the space-saving replacement at a full board, the rescale that moves the
 * epoch when values would overflow (including ties it creates by underflow), and the position
 * index kept right through moves, replacements and forgetting. A board is a min-heap with the
 * lowest at its root, so hand-built cases make forgetting refill a hole upwards and downwards, a
 * rescale reorder ties, and pop_top() cut its selection inside a run of ties. Three randomized
 * tests with fixed seeds check boards that never fill against a naive sum over all events, full
 * boards against the space-saving invariants, and full boards of several sizes, with forgetting,
 * against a naive space-saving board entry for entry (every eviction, order, rank and score). */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stdbool.h>

#include "reco/pop.h"

static pop_opts opts(double hl_popular, double hl_trending, uint32_t board, uint32_t board_all,
                     uint32_t max_groups) {
    pop_opts o;
    o.half_life_ms[POP_POPULAR] = hl_popular;
    o.half_life_ms[POP_TRENDING] = hl_trending;
    o.board = board;
    o.board_all = board_all;
    o.max_groups = max_groups;
    return o;
}

static pop *make(double hl_popular, double hl_trending, uint32_t board, uint32_t board_all,
                 uint32_t max_groups) {
    pop_opts o = opts(hl_popular, hl_trending, board, board_all, max_groups);
    pop *p = pop_new(&o);
    assert_non_null(p);
    return p;
}

static bool near(double got, double want) {
    return fabs(got - want) <= 1e-9 * fmax(fabs(got), fabs(want)) + 1e-300;
}

/* The board exactly as want (items and scores), and every item's rank and score agreeing. */
static void expect_board(const pop *p, uint32_t group, pop_kind kind, int64_t now,
                         const pop_item *want, size_t n) {
    pop_item out[64];
    memset(out, 0xee, sizeof out);
    size_t got = pop_top(p, group, kind, now, 64, out);
    if (got != n) fail_msg("group %u kind %d: %zu items, want %zu", group, kind, got, n);
    for (size_t i = 0; i < n; i++) {
        if (out[i].item != want[i].item || out[i].score != want[i].score)
            fail_msg("group %u kind %d, rank %zu: (%u, %.17g), want (%u, %.17g)", group, kind, i,
                     out[i].item, out[i].score, want[i].item, want[i].score);
        if (pop_rank(p, group, want[i].item, kind) != (long)i)
            fail_msg("group %u kind %d: rank of %u is %ld, want %zu", group, kind, want[i].item,
                     pop_rank(p, group, want[i].item, kind), i);
        if (pop_score(p, group, want[i].item, kind, now) != want[i].score)
            fail_msg("group %u kind %d: score of %u differs from the board", group, kind,
                     want[i].item);
    }
    /* Nothing written past what was returned; k limits the copy. */
    if (out[n].item != 0xeeeeeeeeu) fail_msg("pop_top wrote past its result");
    if (n > 1) {
        memset(out, 0xee, sizeof out);
        assert_int_equal(pop_top(p, group, kind, now, n - 1, out), n - 1);
        assert_int_equal(out[n - 1].item, 0xeeeeeeeeu);
    }
}

#define BOARD(...) (pop_item[]){__VA_ARGS__}, sizeof((pop_item[]){__VA_ARGS__}) / sizeof(pop_item)

/* ---- tests ---- */

static void test_opts_new(void **state) {
    (void)state;
    pop_opts o;
    pop_opts_default(&o);
    assert_true(o.half_life_ms[POP_POPULAR] == 2592000000.0);
    assert_true(o.half_life_ms[POP_TRENDING] == 86400000.0);
    assert_int_equal(o.board, 200);
    assert_int_equal(o.board_all, 2000);
    assert_int_equal(o.max_groups, 1u << 20);
    pop *p = pop_new(&o);
    assert_non_null(p);
    assert_int_equal(pop_groups(p), 0);
    assert_true(pop_bytes(p) > 0 && pop_bytes(p) < 1024); /* nothing allocated per group yet */
    pop_item out[2];
    assert_int_equal(pop_top(p, 0, POP_POPULAR, 0, 2, out), 0);
    assert_true(pop_score(p, 0, 1, POP_TRENDING, 0) == 0);
    assert_int_equal(pop_rank(p, 0, 1, POP_POPULAR), -1);
    pop_forget(p, 1);
    pop_free(p);
    pop_free(NULL);

    assert_null(pop_new(NULL));
    static const double bad_hl[] = {0, -0.0, -5, NAN, -INFINITY};
    for (size_t i = 0; i < sizeof bad_hl / sizeof *bad_hl; i++)
        for (int k = 0; k < POP_NKINDS; k++) {
            pop_opts b = o;
            b.half_life_ms[k] = bad_hl[i];
            assert_null(pop_new(&b));
        }
    pop_opts b = o;
    b.board = 0;
    assert_null(pop_new(&b));
    b = o;
    b.max_groups = 0;
    assert_null(pop_new(&b));
    b = opts(INFINITY, 1e-300, 1, 0, 1);
    p = pop_new(&b);
    assert_non_null(p);
    pop_free(p);
}

static void test_infinite_sums(void **state) {
    (void)state;
    pop *p = make(INFINITY, INFINITY, 10, 0, 4);
    assert_int_equal(pop_add(p, 0, 5, 1, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 5, 2.5, 1000000000), POP_OK);
    assert_int_equal(pop_add(p, 0, 7, 3, 5), POP_OK);
    /* No decay: the same at any time, and in both kinds. */
    static const int64_t nows[] = {INT64_MIN, -1000000000000, 0, 5, 1000000000000000, INT64_MAX};
    for (size_t i = 0; i < sizeof nows / sizeof *nows; i++)
        for (int k = 0; k < POP_NKINDS; k++)
            expect_board(p, 0, (pop_kind)k, nows[i], BOARD({5, 3.5}, {7, 3}));
    /* Events at the ends of time are still plain additions. */
    assert_int_equal(pop_add(p, 0, 9, 0.5, INT64_MIN), POP_OK);
    assert_int_equal(pop_add(p, 0, 9, 0.25, INT64_MAX), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0, BOARD({5, 3.5}, {7, 3}, {9, 0.75}));
    assert_int_equal(pop_groups(p), 1);
    pop_free(p);
}

static void test_decay_exact(void **state) {
    (void)state;
    pop *p = make(INFINITY, 1000, 10, 0, 4);
    assert_int_equal(pop_add(p, 0, 1, 8, 0), POP_OK);
    assert_true(pop_score(p, 0, 1, POP_TRENDING, 0) == 8);
    assert_true(pop_score(p, 0, 1, POP_TRENDING, 1000) == 4);
    assert_true(pop_score(p, 0, 1, POP_TRENDING, 3000) == 1);
    assert_true(pop_score(p, 0, 1, POP_TRENDING, -1000) == 16);
    assert_true(near(pop_score(p, 0, 1, POP_TRENDING, 500), 5.6568542494923802));
    assert_true(near(pop_score(p, 0, 1, POP_TRENDING, 1), 8 * 0.99930709299208835));
    assert_true(pop_score(p, 0, 1, POP_POPULAR, 3000) == 8);

    /* 4 more at 1000: 4 + 4 then. */
    assert_int_equal(pop_add(p, 0, 1, 4, 1000), POP_OK);
    assert_true(pop_score(p, 0, 1, POP_TRENDING, 1000) == 8);
    assert_true(pop_score(p, 0, 1, POP_TRENDING, 2000) == 4);
    /* An event from the past weighs less: 1 at -1000 is worth 1/4 at 1000. */
    assert_int_equal(pop_add(p, 0, 1, 1, -1000), POP_OK);
    assert_true(pop_score(p, 0, 1, POP_TRENDING, 1000) == 8.25);
    assert_true(pop_score(p, 0, 1, POP_POPULAR, 1000) == 13);

    /* A second item: 10 at 2500 outranks item 1's 8.25 * 2^-1.5 on the trending board only. */
    assert_int_equal(pop_add(p, 0, 2, 10, 2500), POP_OK);
    pop_item out[2];
    assert_int_equal(pop_top(p, 0, POP_TRENDING, 2500, 2, out), 2);
    assert_int_equal(out[0].item, 2);
    assert_true(near(out[0].score, 10)); /* 10 * 2^2.5 * 2^-2.5: not exact */
    assert_int_equal(out[1].item, 1);
    assert_true(near(out[1].score, 8.25 / 2.8284271247461901));
    expect_board(p, 0, POP_POPULAR, 0, BOARD({1, 13}, {2, 10}));
    assert_int_equal(pop_rank(p, 0, 1, POP_TRENDING), 1);

    /* The score halves every 1000 ms, wherever one looks. */
    for (int64_t t = -7777; t < 50000; t += 777) {
        double a = pop_score(p, 0, 2, POP_TRENDING, t),
               b = pop_score(p, 0, 2, POP_TRENDING, t + 1000);
        if (!near(b, a / 2)) fail_msg("at %lld: %.17g then %.17g", (long long)t, a, b);
        double want = 10 * exp2(-(double)(t - 2500) / 1000);
        if (!near(a, want)) fail_msg("at %lld: %.17g, want %.17g", (long long)t, a, want);
    }
    pop_free(p);
}

static void test_board_order_ties(void **state) {
    (void)state;
    pop *p = make(INFINITY, INFINITY, 4, 0, 2);
    assert_int_equal(pop_add(p, 0, 9, 2, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 3, 2, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 5, 1, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 1, 2, 0), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0, BOARD({1, 2}, {3, 2}, {9, 2}, {5, 1}));
    /* 5 catches up: among four equal scores the order is by item. */
    assert_int_equal(pop_add(p, 0, 5, 1, 0), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0, BOARD({1, 2}, {3, 2}, {5, 2}, {9, 2}));
    /* 9, last, climbs to the top. */
    assert_int_equal(pop_add(p, 0, 9, 0.5, 0), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0, BOARD({9, 2.5}, {1, 2}, {3, 2}, {5, 2}));
    /* 5 ties with 9 and, being smaller, passes it. */
    assert_int_equal(pop_add(p, 0, 5, 0.5, 0), POP_OK);
    expect_board(p, 0, POP_TRENDING, 0, BOARD({5, 2.5}, {9, 2.5}, {1, 2}, {3, 2}));
    /* 3 joins the tie at 2.5 and, the smallest item in it, leads. */
    assert_int_equal(pop_add(p, 0, 3, 0.5, 0), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0, BOARD({3, 2.5}, {5, 2.5}, {9, 2.5}, {1, 2}));
    pop_free(p);
}

static void test_eviction(void **state) {
    (void)state;
    pop *p = make(INFINITY, 1000, 3, 0, 4);
    assert_int_equal(pop_add(p, 0, 1, 5, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 2, 3, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 3, 1, 0), POP_OK);
    /* 4 replaces the lowest, 3, and inherits its 1. */
    assert_int_equal(pop_add(p, 0, 4, 0.5, 0), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0, BOARD({1, 5}, {2, 3}, {4, 1.5}));
    assert_true(pop_score(p, 0, 3, POP_POPULAR, 0) == 0);
    assert_int_equal(pop_rank(p, 0, 3, POP_POPULAR), -1);
    /* 5 replaces 4 (1.5) and, at 3.5, passes 2. */
    assert_int_equal(pop_add(p, 0, 5, 2, 0), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0, BOARD({1, 5}, {5, 3.5}, {2, 3}));
    /* 3 comes back, replaces 2 and inherits 3, not its own old 1. */
    assert_int_equal(pop_add(p, 0, 3, 0.25, 0), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0, BOARD({1, 5}, {5, 3.5}, {3, 3.25}));

    /* Equal lowest scores: the last on the board (the largest item) is replaced. */
    assert_int_equal(pop_add(p, 1, 10, 2, 0), POP_OK);
    assert_int_equal(pop_add(p, 1, 30, 2, 0), POP_OK);
    assert_int_equal(pop_add(p, 1, 20, 2, 0), POP_OK);
    expect_board(p, 1, POP_POPULAR, 0, BOARD({10, 2}, {20, 2}, {30, 2}));
    assert_int_equal(pop_add(p, 1, 40, 1, 0), POP_OK);
    expect_board(p, 1, POP_POPULAR, 0, BOARD({40, 3}, {10, 2}, {20, 2}));
    assert_int_equal(pop_rank(p, 1, 30, POP_POPULAR), -1);

    /* Decayed: the newcomer inherits the lowest score as of its own time. Item 3's 1 at 0 is 0.5
     * at 1000; 4 arrives then with 1 and stands at 1.5, above 2's 1 (2 at 0). */
    assert_int_equal(pop_add(p, 2, 1, 4, 0), POP_OK);
    assert_int_equal(pop_add(p, 2, 2, 2, 0), POP_OK);
    assert_int_equal(pop_add(p, 2, 3, 1, 0), POP_OK);
    assert_int_equal(pop_add(p, 2, 4, 1, 1000), POP_OK);
    expect_board(p, 2, POP_TRENDING, 1000, BOARD({1, 2}, {4, 1.5}, {2, 1}));
    expect_board(p, 2, POP_POPULAR, 1000, BOARD({1, 4}, {2, 2}, {4, 2}));
    pop_free(p);

    /* A board of one. */
    p = make(INFINITY, INFINITY, 1, 0, 1);
    assert_int_equal(pop_add(p, 0, 7, 1, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 8, 1, 0), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0, BOARD({8, 2}));
    assert_int_equal(pop_add(p, 0, 8, 1, 0), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0, BOARD({8, 3}));
    pop_free(p);
}

static void test_group0_board_all(void **state) {
    (void)state;
    pop *p = make(INFINITY, INFINITY, 2, 4, 3);
    for (uint32_t i = 1; i <= 5; i++)
        assert_int_equal(pop_add(p, 0, i, i, 0), POP_OK);
    /* Group 0 keeps 4: 5 replaced 1 (1) and holds 6. */
    expect_board(p, 0, POP_POPULAR, 0, BOARD({5, 6}, {4, 4}, {3, 3}, {2, 2}));
    for (uint32_t i = 1; i <= 3; i++)
        assert_int_equal(pop_add(p, 1, i, i, 0), POP_OK);
    /* The others keep 2: 3 replaced 1 and holds 4. */
    expect_board(p, 1, POP_POPULAR, 0, BOARD({3, 4}, {2, 2}));
    expect_board(p, 2, POP_POPULAR, 0, NULL, 0);
    assert_int_equal(pop_groups(p), 2);
    assert_int_equal(pop_add(p, 3, 1, 1, 0), POP_INVALID);
    assert_int_equal(pop_add(p, 2, 1, 1, 0), POP_OK);
    assert_int_equal(pop_groups(p), 3);
    pop_free(p);

    /* board_all 0: group 0 gets board's size. */
    p = make(INFINITY, INFINITY, 2, 0, 1);
    for (uint32_t i = 1; i <= 3; i++)
        assert_int_equal(pop_add(p, 0, i, i, 0), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0, BOARD({3, 4}, {2, 2}));
    pop_free(p);
}

static void test_group_isolation(void **state) {
    (void)state;
    pop *p = make(INFINITY, 1000, 8, 0, 100);
    assert_int_equal(pop_add(p, 1, 7, 1, 0), POP_OK);
    assert_int_equal(pop_add(p, 2, 7, 5, 0), POP_OK);
    assert_int_equal(pop_add(p, 2, 8, 2, 1000), POP_OK);
    assert_int_equal(pop_add(p, 99, 8, 3, 0), POP_OK);
    expect_board(p, 1, POP_POPULAR, 0, BOARD({7, 1}));
    expect_board(p, 2, POP_POPULAR, 0, BOARD({7, 5}, {8, 2}));
    expect_board(p, 2, POP_TRENDING, 1000, BOARD({7, 2.5}, {8, 2}));
    expect_board(p, 99, POP_TRENDING, 2000, BOARD({8, 0.75}));
    assert_true(pop_score(p, 1, 8, POP_POPULAR, 0) == 0);
    assert_int_equal(pop_rank(p, 1, 8, POP_POPULAR), -1);
    expect_board(p, 0, POP_POPULAR, 0, NULL, 0);
    expect_board(p, 50, POP_POPULAR, 0, NULL, 0);
    assert_int_equal(pop_groups(p), 3);
    pop_free(p);
}

static void test_rank_forget(void **state) {
    (void)state;
    pop *p = make(INFINITY, INFINITY, 16, 0, 2);
    for (uint32_t g = 0; g < 2; g++)
        for (uint32_t i = 1; i <= 10; i++)
            assert_int_equal(pop_add(p, g, i, i, 0), POP_OK);
    size_t bytes = pop_bytes(p);
    pop_forget(p, 6);
    for (uint32_t g = 0; g < 2; g++)
        for (int k = 0; k < POP_NKINDS; k++)
            expect_board(
                p, g, (pop_kind)k, 0,
                BOARD({10, 10}, {9, 9}, {8, 8}, {7, 7}, {5, 5}, {4, 4}, {3, 3}, {2, 2}, {1, 1}));
    assert_int_equal(pop_rank(p, 0, 6, POP_POPULAR), -1);
    assert_true(pop_score(p, 1, 6, POP_TRENDING, 0) == 0);
    pop_forget(p, 6);
    pop_forget(p, 12345);
    pop_forget(p, UINT32_MAX);
    assert_int_equal(pop_bytes(p), bytes); /* boards keep their room */
    /* The first and the last. */
    pop_forget(p, 10);
    pop_forget(p, 1);
    expect_board(p, 0, POP_POPULAR, 0,
                 BOARD({9, 9}, {8, 8}, {7, 7}, {5, 5}, {4, 4}, {3, 3}, {2, 2}));
    /* Forgotten items start again from nothing. */
    assert_int_equal(pop_add(p, 0, 6, 7, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 10, 0.5, 0), POP_OK);
    expect_board(p, 0, POP_POPULAR, 0,
                 BOARD({9, 9}, {8, 8}, {6, 7}, {7, 7}, {5, 5}, {4, 4}, {3, 3}, {2, 2}, {10, 0.5}));
    pop_free(p);

    /* A larger board: forget every third item, then check every rank. */
    p = make(INFINITY, INFINITY, 200, 0, 1);
    for (uint32_t i = 0; i < 150; i++)
        assert_int_equal(pop_add(p, 0, i * 7919, (double)(i % 13 + 1), 0), POP_OK);
    for (uint32_t i = 0; i < 150; i += 3)
        pop_forget(p, i * 7919);
    pop_item out[200];
    size_t n = pop_top(p, 0, POP_POPULAR, 0, 200, out);
    assert_int_equal(n, 100);
    for (size_t r = 0; r < n; r++) {
        assert_int_equal(pop_rank(p, 0, out[r].item, POP_POPULAR), (long)r);
        if (r > 0)
            assert_true(out[r - 1].score > out[r].score ||
                        (out[r - 1].score == out[r].score && out[r - 1].item < out[r].item));
        uint32_t i = out[r].item / 7919;
        assert_int_not_equal(i % 3, 0);
        assert_true(out[r].score == (double)(i % 13 + 1));
    }
    for (uint32_t i = 0; i < 150; i += 3)
        assert_int_equal(pop_rank(p, 0, i * 7919, POP_POPULAR), -1);
    pop_free(p);
}

static void test_rescale(void **state) {
    (void)state;
    pop *p = make(INFINITY, 1000, 8, 0, 1);
    assert_int_equal(pop_add(p, 0, 5, 3, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 2, 1, 0), POP_OK);
    size_t bytes = pop_bytes(p);
    /* 2000 half-lives later the term's factor would be 2^2000: everything is rescaled. The old
     * scores underflow to 0 and tie, so 2 now ranks before 5. */
    assert_int_equal(pop_add(p, 0, 9, 1, 2000000), POP_OK);
    expect_board(p, 0, POP_TRENDING, 2000000, BOARD({9, 1}, {2, 0}, {5, 0}));
    expect_board(p, 0, POP_POPULAR, 2000000, BOARD({5, 3}, {2, 1}, {9, 1}));
    assert_int_equal(pop_bytes(p), bytes);
    assert_int_equal(pop_add(p, 0, 5, 1, 2000000), POP_OK);
    expect_board(p, 0, POP_TRENDING, 2000000, BOARD({5, 1}, {9, 1}, {2, 0}));
    assert_true(pop_score(p, 0, 5, POP_TRENDING, 2001000) == 0.5);
    /* An event older than the new epoch. */
    assert_int_equal(pop_add(p, 0, 7, 4, 1999000), POP_OK);
    expect_board(p, 0, POP_TRENDING, 2000000, BOARD({7, 2}, {5, 1}, {9, 1}, {2, 0}));
    pop_free(p);

    /* Steps of 300 half-lives: a rescale every other add. Scores against a naive sum. */
    p = make(1000, 1000, 8, 0, 1);
    struct {
        uint32_t item;
        double w;
        int64_t t;
    } ev[12];
    for (int k = 0; k < 12; k++) {
        ev[k].item = (uint32_t)(k % 3);
        ev[k].w = k + 1;
        ev[k].t = (int64_t)k * 300000 + (k % 2) * 137;
        assert_int_equal(pop_add(p, 0, ev[k].item, ev[k].w, ev[k].t), POP_OK);
        for (int64_t now = ev[k].t; now < ev[k].t + 5000; now += 1234)
            for (uint32_t item = 0; item < 3; item++) {
                double want = 0;
                for (int j = 0; j <= k; j++)
                    if (ev[j].item == item) want += ev[j].w * exp2(-(double)(now - ev[j].t) / 1000);
                for (int kind = 0; kind < POP_NKINDS; kind++) {
                    double got = pop_score(p, 0, item, (pop_kind)kind, now);
                    if (!near(got, want))
                        fail_msg("after %d adds, item %u at %lld: %.17g, want %.17g", k + 1, item,
                                 (long long)now, got, want);
                }
            }
    }
    /* Item 2's last event (w 12, at 3,300,137) leads; item 0's (w 10 at 2,700,137) is 600
     * half-lives older, still a normal number. */
    pop_item out[3];
    assert_int_equal(pop_top(p, 0, POP_TRENDING, 3300137, 3, out), 3);
    assert_int_equal(out[0].item, 2);
    assert_true(near(out[0].score, 12));
    assert_true(out[2].score > 0);
    pop_free(p);
}

static void test_invalid(void **state) {
    (void)state;
    pop *p = make(INFINITY, 1000, 4, 0, 4);
    assert_int_equal(pop_add(p, 1, 1, 1, 0), POP_OK);
    size_t bytes = pop_bytes(p);
    assert_int_equal(pop_add(p, 4, 1, 1, 0), POP_INVALID);
    assert_int_equal(pop_add(p, UINT32_MAX, 1, 1, 0), POP_INVALID);
    assert_int_equal(pop_add(p, 1, UINT32_MAX, 1, 0), POP_INVALID);
    static const double bad_w[] = {0, -0.0, -1, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad_w / sizeof *bad_w; i++) {
        assert_int_equal(pop_add(p, 1, 1, bad_w[i], 0), POP_INVALID);
        assert_int_equal(pop_add(p, 2, 1, bad_w[i], 0), POP_INVALID);
    }
    assert_int_equal(pop_bytes(p), bytes);
    assert_int_equal(pop_groups(p), 1);
    expect_board(p, 1, POP_POPULAR, 0, BOARD({1, 1}));
    expect_board(p, 2, POP_POPULAR, 0, NULL, 0);

    /* Queries out of range answer "nothing". */
    pop_item out[2];
    assert_int_equal(pop_top(p, 1, POP_NKINDS, 0, 2, out), 0);
    assert_int_equal(pop_top(p, 1, (pop_kind)77, 0, 2, out), 0);
    assert_int_equal(pop_top(p, 1, POP_POPULAR, 0, 0, out), 0);
    assert_int_equal(pop_top(p, UINT32_MAX, POP_POPULAR, 0, 2, out), 0);
    assert_true(pop_score(p, 1, 1, POP_NKINDS, 0) == 0);
    assert_true(pop_score(p, 1000000, 1, POP_POPULAR, 0) == 0);
    assert_int_equal(pop_rank(p, 1, 1, POP_NKINDS), -1);
    assert_int_equal(pop_rank(p, UINT32_MAX, 1, POP_POPULAR), -1);

    /* Absurd weights saturate instead of becoming infinite; tiny ones are kept. */
    assert_int_equal(pop_add(p, 3, 1, DBL_MAX, 0), POP_OK);
    assert_int_equal(pop_add(p, 3, 1, DBL_MAX, 500), POP_OK);
    assert_true(pop_score(p, 3, 1, POP_POPULAR, 0) == DBL_MAX);
    assert_true(isfinite(pop_score(p, 3, 1, POP_TRENDING, -100000)));
    assert_true(pop_score(p, 3, 1, POP_TRENDING, 5000000) == 0);
    assert_int_equal(pop_add(p, 3, 2, DBL_MIN, 0), POP_OK);
    assert_true(pop_score(p, 3, 2, POP_POPULAR, 0) == DBL_MIN);
    pop_free(p);
}

/* Fills a board of n items and checks that every item is found (by the index) with its score, and
 * at its place in the order. Boards of 43690 items are the largest with 16-bit slots (their index
 * has 65536 slots, so slot numbers reach 65535); larger ones must switch to 32 bits even while
 * positions would still fit 16. pop_rank() is O(board), so the order is read from pop_top() and
 * only a few ranks are asked. */
static void fill_board(uint32_t n) {
    pop *p = make(INFINITY, INFINITY, n, 0, 1);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(pop_add(p, 0, i * 3, (double)(n - i), 0), POP_OK);
    assert_int_equal(pop_add(p, 0, (n - 1) * 3, 1e9, 0), POP_OK); /* the last climbs to the top */
    assert_int_equal(pop_rank(p, 0, (n - 1) * 3, POP_POPULAR), 0);
    pop_item *out = malloc(((size_t)n + 1) * sizeof *out);
    assert_non_null(out);
    assert_int_equal(pop_top(p, 0, POP_POPULAR, 0, (size_t)n + 1, out), n);
    assert_true(out[0].item == (n - 1) * 3 && out[0].score == 1e9 + 1);
    for (uint32_t i = 0; i < n - 1; i++) {
        if (out[i + 1].item != i * 3 || out[i + 1].score != (double)(n - i))
            fail_msg("board %u: rank %u holds (%u, %g), want (%u, %u)", n, i + 1, out[i + 1].item,
                     out[i + 1].score, i * 3, n - i);
        if (pop_score(p, 0, i * 3, POP_POPULAR, 0) != (double)(n - i))
            fail_msg("board %u: item %u not found by the index", n, i * 3);
    }
    free(out);
    assert_int_equal(pop_rank(p, 0, 0, POP_POPULAR), 1);
    assert_int_equal(pop_rank(p, 0, (n / 2) * 3, POP_POPULAR), n / 2 + 1);
    assert_int_equal(pop_rank(p, 0, (n - 2) * 3, POP_POPULAR), n - 1);
    /* Full: a newcomer replaces the last (item 3 * (n - 2), at 2) and holds 4: it passes the 3
     * of item 3 * (n - 3) and, smaller, the 4 of item 3 * (n - 4). */
    assert_int_equal(pop_add(p, 0, 1, 2, 0), POP_OK);
    assert_int_equal(pop_rank(p, 0, (n - 2) * 3, POP_POPULAR), -1);
    assert_int_equal(pop_rank(p, 0, 1, POP_POPULAR), n - 3);
    assert_int_equal(pop_rank(p, 0, (n - 4) * 3, POP_POPULAR), n - 2);
    assert_int_equal(pop_rank(p, 0, (n - 3) * 3, POP_POPULAR), n - 1);
    assert_true(pop_score(p, 0, 1, POP_POPULAR, 0) == 4);
    pop_free(p);
}

static void test_narrow_limit(void **state) {
    (void)state;
    fill_board(43690);
    fill_board(43691);
    fill_board(50000);
}

/* Boards over 43690 items use 32 bits: positions and ranks past 65535 must survive. */
static void test_wide_board(void **state) {
    (void)state;
    enum { N = 70000 };
    pop *p = make(INFINITY, INFINITY, N + 10, 8, 2);
    /* Descending weights: each newcomer is the lowest so far (it rises to the heap's root). */
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(pop_add(p, 1, i, (double)(N - i), 0), POP_OK);
    for (uint32_t i = 0; i < N; i++) /* every heap position, found through the index */
        if (pop_score(p, 1, i, POP_TRENDING, 0) != (double)(N - i)) fail_msg("item %u lost", i);
    assert_int_equal(pop_rank(p, 1, 0, POP_POPULAR), 0);
    assert_int_equal(pop_rank(p, 1, N - 1, POP_POPULAR), N - 1);
    assert_int_equal(pop_rank(p, 1, 65536, POP_TRENDING), 65536);
    /* The last climbs to the top past all 69999 others. */
    assert_int_equal(pop_add(p, 1, N - 1, 1e9, 0), POP_OK);
    assert_int_equal(pop_rank(p, 1, N - 1, POP_POPULAR), 0);
    assert_int_equal(pop_rank(p, 1, 0, POP_POPULAR), 1);
    assert_int_equal(pop_rank(p, 1, N - 2, POP_POPULAR), N - 1);
    assert_int_equal(pop_rank(p, 1, 65535, POP_POPULAR), 65536);
    /* Forgetting near the top moves every later rank up by one. */
    pop_forget(p, 3);
    assert_int_equal(pop_rank(p, 1, 3, POP_POPULAR), -1);
    assert_int_equal(pop_rank(p, 1, 4, POP_POPULAR), 4);
    assert_int_equal(pop_rank(p, 1, 65535, POP_POPULAR), 65535);
    assert_int_equal(pop_rank(p, 1, N - 2, POP_POPULAR), N - 2);
    assert_true(pop_score(p, 1, 65535, POP_POPULAR, 0) == (double)(N - 65535));
    /* Group 0 keeps its own small board in the same mode. */
    for (uint32_t i = 0; i < 20; i++)
        assert_int_equal(pop_add(p, 0, i, (double)i + 1, 0), POP_OK);
    pop_item out[8];
    assert_int_equal(pop_top(p, 0, POP_POPULAR, 0, 8, out), 8);
    assert_int_equal(out[0].item, 19);
    pop_free(p);
}

/* Forgetting fills the hole with the board's last entry, which must then move up or down. The
 * boards are built so that both directions are needed (each item's weight is given once, in this
 * order, on a board of 7: 1:1, 2:10, 3:2, 4:11, 5:12, 6:3, 7:4), and the evictions that follow
 * show whether the weakest entry is still the one replaced: newcomers of 1000 each replace the
 * entries in order of weakness (lowest score first), inheriting their scores. */
static void test_forget_refills(void **state) {
    (void)state;
    static const double w[] = {0, 1, 10, 2, 11, 12, 3, 4};
    for (int c = 0; c < 2; c++) {
        pop *p = make(INFINITY, INFINITY, 7, 0, 1);
        for (uint32_t i = 1; i <= 7; i++)
            assert_int_equal(pop_add(p, 0, i, w[i], 0), POP_OK);
        if (c == 0) {
            /* 4 (11) goes; left: 1:1, 3:2, 6:3, 7:4, 2:10, 5:12. 99 (0.5) takes the free place,
             * then 100..104 replace 99, 1, 3, 6 and 7. */
            pop_forget(p, 4);
            assert_int_equal(pop_add(p, 0, 99, 0.5, 0), POP_OK);
            expect_board(p, 0, POP_POPULAR, 0,
                         BOARD({5, 12}, {2, 10}, {7, 4}, {6, 3}, {3, 2}, {1, 1}, {99, 0.5}));
            for (uint32_t i = 100; i <= 104; i++)
                assert_int_equal(pop_add(p, 0, i, 1000, 0), POP_OK);
            expect_board(p, 0, POP_POPULAR, 0,
                         BOARD({104, 1004}, {103, 1003}, {102, 1002}, {101, 1001}, {100, 1000.5},
                               {5, 12}, {2, 10}));
        } else {
            /* 1 (the lowest) goes; left: 3:2, 6:3, 7:4, 2:10, 4:11, 5:12. 99 (20) takes the
             * free place, then 100..103 replace 3, 6, 7 and 2. */
            pop_forget(p, 1);
            assert_int_equal(pop_add(p, 0, 99, 20, 0), POP_OK);
            for (uint32_t i = 100; i <= 103; i++)
                assert_int_equal(pop_add(p, 0, i, 1000, 0), POP_OK);
            expect_board(p, 0, POP_POPULAR, 0,
                         BOARD({103, 1010}, {102, 1004}, {101, 1003}, {100, 1002}, {99, 20},
                               {5, 12}, {4, 11}));
        }
        pop_free(p);
    }
}

/* A rescale that underflows old values to 0 can leave a smaller item above a larger one with the
 * same value; the board must be reordered so that the largest of them is the one replaced. Items
 * 2, 5, 8 come in that order with 1, 2, 3 (2, the weakest, first); 2000 half-lives later all three
 * are 0 on the trending board, where the newcomer 9 must replace 8, not 2. On the all-time board
 * it replaces 2 (1) and holds 2, after 5 (2, smaller). */
static void test_rescale_reorders(void **state) {
    (void)state;
    pop *p = make(INFINITY, 1000, 3, 0, 1);
    assert_int_equal(pop_add(p, 0, 2, 1, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 5, 2, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 8, 3, 0), POP_OK);
    assert_int_equal(pop_add(p, 0, 9, 1, 2000000), POP_OK);
    expect_board(p, 0, POP_TRENDING, 2000000, BOARD({9, 1}, {2, 0}, {5, 0}));
    expect_board(p, 0, POP_POPULAR, 2000000, BOARD({8, 3}, {5, 2}, {9, 2}));
    /* The next newcomer replaces 5, the larger of the two at 0, then 2. */
    assert_int_equal(pop_add(p, 0, 1, 0.5, 2000000), POP_OK);
    expect_board(p, 0, POP_TRENDING, 2000000, BOARD({9, 1}, {1, 0.5}, {2, 0}));
    assert_int_equal(pop_add(p, 0, 3, 0.25, 2000000), POP_OK);
    expect_board(p, 0, POP_TRENDING, 2000000, BOARD({9, 1}, {1, 0.5}, {3, 0.25}));
    pop_free(p);
}

/* pop_top() selects: every k from 0 past the board's size gives exactly the first k of the
 * order, ties at the cut included, and writes nothing past what it returns. Items 0..29 score
 * i % 5 + 1, given one unit at a time in a scrambled order (many increments of entries already
 * on the board): the order is 4, 9, .., 29 (5 each), then 3, 8, .., 28 (4), and so on to
 * 0, 5, .., 25 (1). */
static void test_top_selects(void **state) {
    (void)state;
    enum { N = 30 };
    pop *p = make(INFINITY, INFINITY, 40, 0, 1);
    for (uint32_t round = 0; round < 5; round++)
        for (uint32_t j = 0; j < N; j++) {
            uint32_t i = j * 7 % N;
            if (i % 5 >= round) assert_int_equal(pop_add(p, 0, i, 1, 0), POP_OK);
        }
    pop_item want[N];
    size_t n = 0;
    for (uint32_t s = 5; s >= 1; s--)
        for (uint32_t i = s - 1; i < N; i += 5)
            want[n++] = (pop_item){i, (double)s};
    assert_int_equal(n, N);
    pop_item out[N + 2];
    static const size_t ks[] = {N, N + 1, N + 2, SIZE_MAX};
    for (size_t k = 0; k < N + sizeof ks / sizeof *ks; k++) {
        size_t kk = k < N ? k : ks[k - N];
        memset(out, 0xee, sizeof out);
        size_t got = pop_top(p, 0, POP_TRENDING, 0, kk, out);
        assert_int_equal(got, kk < N ? kk : N);
        for (size_t r = 0; r < got; r++)
            if (out[r].item != want[r].item || out[r].score != want[r].score)
                fail_msg("k %zu rank %zu: (%u, %g), want (%u, %g)", kk, r, out[r].item,
                         out[r].score, want[r].item, want[r].score);
        assert_int_equal(out[got].item, 0xeeeeeeeeu);
    }
    for (size_t r = 0; r < N; r++)
        assert_int_equal(pop_rank(p, 0, want[r].item, POP_POPULAR), (long)r);
    pop_free(p);
}

/* ---- randomized ---- */

static uint64_t rng = 0x853c49e6748fea9bull;

static uint64_t next_rand(void) {
    /* xorshift64*: fixed seed, so a failure reproduces. */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

enum { NG = 4, NITEMS = 50 };

typedef struct event {
    uint32_t group, item;
    double w;
    int64_t t;
    bool forgotten;
} event;

typedef struct want_item {
    uint32_t item;
    double score;
    bool seen;
} want_item;

static int cmp_want(const void *x, const void *y) {
    const want_item *a = x, *b = y;
    if (a->seen != b->seen) return a->seen ? -1 : 1;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->item > b->item) - (a->item < b->item);
}

static void check_naive(const pop *p, const event *ev, size_t nev, int64_t now, double hl_tr,
                        int op) {
    for (uint32_t g = 0; g < NG; g++) {
        want_item w[POP_NKINDS][NITEMS];
        for (int k = 0; k < POP_NKINDS; k++)
            for (uint32_t i = 0; i < NITEMS; i++)
                w[k][i] = (want_item){i, 0, false};
        for (size_t e = 0; e < nev; e++) {
            if (ev[e].group != g || ev[e].forgotten) continue;
            w[POP_POPULAR][ev[e].item].score += ev[e].w;
            w[POP_TRENDING][ev[e].item].score += ev[e].w * exp2(-(double)(now - ev[e].t) / hl_tr);
            w[POP_POPULAR][ev[e].item].seen = w[POP_TRENDING][ev[e].item].seen = true;
        }
        for (int k = 0; k < POP_NKINDS; k++) {
            pop_item out[64];
            size_t n = pop_top(p, g, (pop_kind)k, now, 64, out);
            size_t seen = 0;
            for (uint32_t i = 0; i < NITEMS; i++) {
                seen += w[k][i].seen;
                double got = pop_score(p, g, i, (pop_kind)k, now);
                if (!near(got, w[k][i].score))
                    fail_msg("op %d group %u kind %d item %u: %.17g, want %.17g", op, g, k, i, got,
                             w[k][i].score);
                if ((pop_rank(p, g, i, (pop_kind)k) >= 0) != w[k][i].seen)
                    fail_msg("op %d group %u kind %d item %u: on the board is wrong", op, g, k, i);
            }
            if (n != seen)
                fail_msg("op %d group %u kind %d: %zu on board, want %zu", op, g, k, n, seen);
            for (size_t r = 0; r < n; r++) {
                if (pop_rank(p, g, out[r].item, (pop_kind)k) != (long)r)
                    fail_msg("op %d: rank of %u is not %zu", op, out[r].item, r);
                if (r > 0 && out[r - 1].score < out[r].score)
                    fail_msg("op %d group %u kind %d: board not sorted at %zu", op, g, k, r);
            }
            /* The all-time sums are exact integers: the whole order must match, ties included. */
            if (k == POP_POPULAR) {
                qsort(w[k], NITEMS, sizeof w[k][0], cmp_want);
                for (size_t r = 0; r < n; r++)
                    if (out[r].item != w[k][r].item || out[r].score != w[k][r].score)
                        fail_msg("op %d group %u rank %zu: (%u, %g), want (%u, %g)", op, g, r,
                                 out[r].item, out[r].score, w[k][r].item, w[k][r].score);
            }
        }
    }
}

static void test_randomized_naive(void **state) {
    (void)state;
    /* 50 items on boards of 64: nothing is ever replaced, so the boards must equal the naive sums.
     * Time mostly moves forward (sometimes back), over about 4000 half-lives of the trending kind:
     * several rescales. */
    enum { OPS = 12000 };
    const double hl = 1000;
    pop *p = make(INFINITY, hl, 64, 0, NG);
    event *ev = malloc(OPS * sizeof *ev);
    assert_non_null(ev);
    size_t nev = 0;
    int64_t t = 1700000000000;
    int forgets = 0;
    for (int op = 0; op < OPS; op++) {
        uint64_t r = next_rand() % 1000;
        t += r < 950 ? (int64_t)(next_rand() % 700) : -(int64_t)(next_rand() % 3000);
        if (r % 50 == 7) {
            uint32_t item = (uint32_t)(next_rand() % NITEMS);
            pop_forget(p, item);
            for (size_t e = 0; e < nev; e++)
                if (ev[e].item == item) ev[e].forgotten = true;
            forgets++;
        } else {
            event e = {(uint32_t)(next_rand() % NG), (uint32_t)(next_rand() % NITEMS),
                       (double)(next_rand() % 5 + 1), t, false};
            assert_int_equal(pop_add(p, e.group, e.item, e.w, e.t), POP_OK);
            ev[nev++] = e;
        }
        if (op % 300 == 0) check_naive(p, ev, nev, t + (int64_t)(next_rand() % 2000), hl, op);
    }
    check_naive(p, ev, nev, t, hl, OPS);
    assert_true(forgets > 100);
    assert_int_equal(pop_groups(p), NG);
    free(ev);
    pop_free(p);
}

static void test_randomized_full(void **state) {
    (void)state;
    /* Boards of 8 (group 0: 16) over 300 items with a skewed popularity: boards fill and replace
     * constantly. Without forgetting, space-saving keeps two invariants exactly for all-time
     * sums: the board's scores add up to the group's total weight, and no item on the board is
     * under-counted. And the board order and the index stay right. */
    enum { ITEMS = 300, OPS = 40000, G = 3 };
    pop *p = make(INFINITY, 5000, 8, 16, G);
    double total[G] = {0};
    static double truth[G][ITEMS];
    memset(truth, 0, sizeof truth);
    size_t bytes_full = 0;
    for (int op = 0; op < OPS; op++) {
        uint32_t g = (uint32_t)(next_rand() % G);
        /* Skewed: u^4 for a uniform u picks item 0 a quarter of the time (u < 300^-1/4), more
         * than 1/8 of the weight, so space-saving must keep it on every board. */
        double u = (double)(next_rand() % 1000000) / 1000000;
        uint32_t item = (uint32_t)(u * u * u * u * ITEMS);
        double w = (double)(next_rand() % 3 + 1);
        assert_int_equal(pop_add(p, g, item, w, op * 10), POP_OK);
        total[g] += w;
        truth[g][item] += w;
        if (op == OPS / 2) bytes_full = pop_bytes(p);
        if (op < 2000 || (op % 97 != 0 && op != OPS - 1)) continue;
        for (uint32_t gg = 0; gg < G; gg++) {
            pop_item out[16];
            size_t n = pop_top(p, gg, POP_POPULAR, 0, 16, out);
            assert_int_equal(n, gg == 0 ? 16 : 8);
            double sum = 0;
            for (size_t r = 0; r < n; r++) {
                sum += out[r].score;
                if (out[r].score < truth[gg][out[r].item])
                    fail_msg("op %d: item %u under-counted", op, out[r].item);
                assert_int_equal(pop_rank(p, gg, out[r].item, POP_POPULAR), (long)r);
                if (r > 0 && !(out[r - 1].score > out[r].score ||
                               (out[r - 1].score == out[r].score && out[r - 1].item < out[r].item)))
                    fail_msg("op %d group %u: order broken at %zu", op, gg, r);
            }
            if (sum != total[gg])
                fail_msg("op %d group %u: board sums to %g, total %g", op, gg, sum, total[gg]);
            n = pop_top(p, gg, POP_TRENDING, op * 10, 16, out);
            for (size_t r = 0; r < n; r++)
                assert_int_equal(pop_rank(p, gg, out[r].item, POP_TRENDING), (long)r);
        }
    }
    /* Full boards stop growing. */
    assert_int_equal(pop_bytes(p), bytes_full);
    /* The heaviest item of each group (id 0 by construction) is on its board. */
    for (uint32_t g = 0; g < G; g++)
        assert_true(pop_rank(p, g, 0, POP_POPULAR) >= 0);
    pop_free(p);
}

/* A naive space-saving board, the reference for test_randomized_reference(): a plain list, the
 * entry replaced found by a linear search for the lowest score (the largest item among equal
 * lowest). It adds the same doubles in the same order as pop does, so its scores are bitwise
 * those pop must hold. */
enum { REF_CAP = 48 };

typedef struct ref_board {
    uint32_t n;
    uint32_t item[REF_CAP];
    double v[REF_CAP];
} ref_board;

static void ref_add(ref_board *r, uint32_t cap, uint32_t item, double term) {
    for (uint32_t i = 0; i < r->n; i++)
        if (r->item[i] == item) {
            r->v[i] += term;
            return;
        }
    if (r->n < cap) {
        r->item[r->n] = item;
        r->v[r->n++] = term;
        return;
    }
    uint32_t low = 0;
    for (uint32_t i = 1; i < r->n; i++)
        if (r->v[i] < r->v[low] || (r->v[i] == r->v[low] && r->item[i] > r->item[low])) low = i;
    r->item[low] = item;
    r->v[low] += term;
}

static void ref_forget(ref_board *r, uint32_t item) {
    for (uint32_t i = 0; i < r->n; i++)
        if (r->item[i] == item) {
            r->item[i] = r->item[--r->n];
            r->v[i] = r->v[r->n];
            return;
        }
}

static int cmp_rank(const void *x, const void *y) {
    const pop_item *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->item > b->item) - (a->item < b->item);
}

/* pop's board for (g, kind) against the reference, as of the epoch (where every score is the
 * stored value, exactly): the whole order, every rank, the first k for a few k, and the score
 * of every item. */
static void check_ref(const pop *p, const ref_board *r, uint32_t g, pop_kind kind, int64_t epoch,
                      uint32_t items, const char *what, int op) {
    pop_item want[REF_CAP], out[REF_CAP + 1];
    for (uint32_t i = 0; i < r->n; i++)
        want[i] = (pop_item){r->item[i], r->v[i]};
    qsort(want, r->n, sizeof *want, cmp_rank);
    size_t n = pop_top(p, g, kind, epoch, REF_CAP + 1, out);
    if (n != r->n)
        fail_msg("%s op %d group %u kind %d: %zu entries, want %u", what, op, g, kind, n, r->n);
    for (size_t i = 0; i < n; i++) {
        if (out[i].item != want[i].item || out[i].score != want[i].score)
            fail_msg("%s op %d group %u kind %d rank %zu: (%u, %.17g), want (%u, %.17g)", what, op,
                     g, kind, i, out[i].item, out[i].score, want[i].item, want[i].score);
        if (pop_rank(p, g, want[i].item, kind) != (long)i)
            fail_msg("%s op %d group %u kind %d: rank of %u is %ld, want %zu", what, op, g, kind,
                     want[i].item, pop_rank(p, g, want[i].item, kind), i);
    }
    size_t ks[] = {1, n / 2, n > 0 ? n - 1 : 0};
    for (size_t j = 0; j < 3; j++) {
        if (ks[j] == 0 || ks[j] > n) continue;
        assert_int_equal(pop_top(p, g, kind, epoch, ks[j], out), ks[j]);
        for (size_t i = 0; i < ks[j]; i++)
            if (out[i].item != want[i].item)
                fail_msg("%s op %d: pop_top(k = %zu) differs at %zu", what, op, ks[j], i);
    }
    for (uint32_t item = 0; item < items; item++) {
        double v = 0;
        for (uint32_t i = 0; i < r->n; i++)
            if (r->item[i] == item) v = r->v[i];
        if (pop_score(p, g, item, kind, epoch) != v)
            fail_msg("%s op %d group %u kind %d: score of %u is %.17g, want %.17g", what, op, g,
                     kind, item, pop_score(p, g, item, kind, epoch), v);
        if (v == 0 && pop_rank(p, g, item, kind) != -1)
            fail_msg("%s op %d: %u ranked but not on the board", what, op, item);
    }
}

static void test_randomized_reference(void **state) {
    (void)state;
    /* Full boards of several sizes, replaced constantly, with forgetting: every eviction must pick
     * the entry the naive board picks, and every order, rank and score must agree. All-time sums
     * of small integers tie often (the tie rules); the trending kind (half-life 1000 ms, times
     * spread over 150 half-lives, sometimes back) has real, mostly distinct values. */
    static const struct {
        uint32_t board, board_all;
    } cfg[] = {{1, 1}, {1, 3}, {2, 2}, {3, 8}, {7, 16}, {16, REF_CAP}};
    enum { G = 3, OPS = 5000 };
    const double hl = 1000;
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        uint32_t items = 2 * cfg[c].board_all + 12;
        pop *p = make(INFINITY, hl, cfg[c].board, cfg[c].board_all, G);
        static ref_board ref[G][POP_NKINDS];
        memset(ref, 0, sizeof ref);
        int64_t t = 1700000000000, epoch = INT64_MIN; /* pop's: the time of the first add */
        char what[32];
        snprintf(what, sizeof what, "board %u/%u", cfg[c].board, cfg[c].board_all);
        for (int op = 0; op < OPS; op++) {
            uint64_t r = next_rand() % 1000;
            t += r < 900 ? (int64_t)(next_rand() % 60) : -(int64_t)(next_rand() % 200);
            if (r < 10) {
                uint32_t item = (uint32_t)(next_rand() % items);
                pop_forget(p, item);
                for (uint32_t g = 0; g < G; g++)
                    for (int k = 0; k < POP_NKINDS; k++)
                        ref_forget(&ref[g][k], item);
            } else {
                uint32_t g = (uint32_t)(next_rand() % G);
                double u = (double)(next_rand() % 1000000) / 1000000;
                uint32_t item = (uint32_t)(u * u * items);
                double w = (double)(next_rand() % 4 + 1);
                assert_int_equal(pop_add(p, g, item, w, t), POP_OK);
                if (epoch == INT64_MIN) epoch = t;
                ref_add(&ref[g][POP_POPULAR], g ? cfg[c].board : cfg[c].board_all, item, w);
                double term = w * exp2(((double)t - (double)epoch) / hl);
                ref_add(&ref[g][POP_TRENDING], g ? cfg[c].board : cfg[c].board_all, item, term);
                for (int k = 0; k < POP_NKINDS; k++)
                    check_ref(p, &ref[g][k], g, (pop_kind)k, epoch, items, what, op);
            }
            if (op % 500 == 0)
                for (uint32_t g = 0; g < G; g++)
                    for (int k = 0; k < POP_NKINDS; k++)
                        check_ref(p, &ref[g][k], g, (pop_kind)k, epoch, items, what, op);
        }
        pop_free(p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opts_new),         cmocka_unit_test(test_infinite_sums),
        cmocka_unit_test(test_decay_exact),      cmocka_unit_test(test_board_order_ties),
        cmocka_unit_test(test_eviction),         cmocka_unit_test(test_group0_board_all),
        cmocka_unit_test(test_group_isolation),  cmocka_unit_test(test_rank_forget),
        cmocka_unit_test(test_rescale),          cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_narrow_limit),     cmocka_unit_test(test_wide_board),
        cmocka_unit_test(test_randomized_naive), cmocka_unit_test(test_randomized_full),
        cmocka_unit_test(test_forget_refills),   cmocka_unit_test(test_rescale_reorders),
        cmocka_unit_test(test_top_selects),      cmocka_unit_test(test_randomized_reference),
    };
    return cmocka_run_group_tests_name("pop", tests, NULL, NULL);
}
