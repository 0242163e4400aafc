/* Unit tests for reco/cooc: bounded co-occurrence rows. The sums are hand-computed with weights
 * that are exact in binary (halves, quarters), so floats compare exactly. The hard parts are the
 * space-saving eviction at a full row (which entry goes, what the newcomer inherits, where it goes
 * in the row), the cut of a group to its first COOC_GROUP_MAX distinct items, an overlap between
 * the two sides of a cross, and forgetting once rows have become asymmetric. A randomized test
 * with a fixed seed checks thousands of operations against a dense matrix for rows that never
 * fill. */
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

#include "reco/cooc.h"

/* The memory layout the header documents: 8 bytes per entry, an 8-byte header per non-empty row,
 * and 8 bytes per item id in the row index, which doubles from 4 ids. */
#define ENTRY 8
#define ROWHDR 8
#define IDXSLOT 8

static void expect_row(const cooc *c, uint32_t item, const cooc_item *want, size_t n) {
    size_t got = 0;
    const cooc_item *r = cooc_row(c, item, &got);
    if (got != n) fail_msg("row %u has %zu entries, want %zu", item, got, n);
    for (size_t i = 0; i < n; i++)
        if (r[i].item != want[i].item || r[i].weight != want[i].weight)
            fail_msg("row %u entry %zu is (%u, %g), want (%u, %g)", item, i, r[i].item,
                     (double)r[i].weight, want[i].item, (double)want[i].weight);
}

static void expect_top(const cooc *c, uint32_t item, size_t k, const cooc_item *want, size_t n) {
    cooc_item out[64];
    assert_true(k <= 64);
    memset(out, 0xee, sizeof out);
    size_t got = cooc_top(c, item, k, out);
    if (got != n) fail_msg("top %zu of %u: %zu entries, want %zu", k, item, got, n);
    for (size_t i = 0; i < n; i++)
        if (out[i].item != want[i].item || out[i].weight != want[i].weight)
            fail_msg("top %zu of %u, entry %zu is (%u, %g), want (%u, %g)", k, item, i, out[i].item,
                     (double)out[i].weight, want[i].item, (double)want[i].weight);
    /* Nothing written past what was returned. */
    for (size_t i = got; i < 64; i++)
        if (out[i].item != 0xeeeeeeeeu) fail_msg("top wrote past its result at %zu", i);
}

/* ---- tests ---- */

static void test_new_free(void **state) {
    (void)state;
    assert_null(cooc_new(0));
    cooc *c = cooc_new(1);
    assert_non_null(c);
    size_t b0 = cooc_bytes(c);
    assert_true(b0 > 0 && b0 < 256);
    cooc_item out[4];
    assert_int_equal(cooc_top(c, 0, 4, out), 0);
    assert_true(cooc_weight(c, 0, 1) == 0);
    size_t n = 99;
    assert_null(cooc_row(c, 0, &n));
    assert_int_equal(n, 0);
    cooc_forget(c, 0);
    cooc_forget(c, UINT32_MAX);
    assert_int_equal(cooc_bytes(c), b0);
    cooc_free(c);
    cooc_free(NULL);
}

static void test_pair_sums(void **state) {
    (void)state;
    cooc *c = cooc_new(10);
    assert_int_equal(cooc_add_pair(c, 1, 2, 1.5f), COOC_OK);
    assert_int_equal(cooc_add_pair(c, 2, 1, 2.25f), COOC_OK); /* the same pair, other way round */
    assert_int_equal(cooc_add_pair(c, 1, 3, 0.5f), COOC_OK);
    assert_true(cooc_weight(c, 1, 2) == 3.75f);
    assert_true(cooc_weight(c, 2, 1) == 3.75f);
    assert_true(cooc_weight(c, 1, 3) == 0.5f);
    assert_true(cooc_weight(c, 3, 1) == 0.5f);
    assert_true(cooc_weight(c, 2, 3) == 0);
    assert_true(cooc_weight(c, 1, 4) == 0);
    assert_true(cooc_weight(c, 1000000, 1) == 0);
    expect_row(c, 1, (cooc_item[]){{2, 3.75f}, {3, 0.5f}}, 2);
    expect_row(c, 2, (cooc_item[]){{1, 3.75f}}, 1);

    /* An item with itself changes nothing, not even the row index. */
    size_t bytes = cooc_bytes(c);
    assert_int_equal(cooc_add_pair(c, 5, 5, 1), COOC_OK);
    assert_int_equal(cooc_add_pair(c, 4000, 4000, 1), COOC_OK);
    assert_int_equal(cooc_bytes(c), bytes);
    assert_true(cooc_weight(c, 5, 5) == 0);
    expect_top(c, 5, 4, NULL, 0);

    /* Ids far apart and the largest valid one. */
    assert_int_equal(cooc_add_pair(c, 0, 70000, 1), COOC_OK);
    assert_true(cooc_weight(c, 70000, 0) == 1);
    assert_true(cooc_weight(c, 0, 70000) == 1);
    cooc_free(c);
}

static void test_group_duplicates(void **state) {
    (void)state;
    cooc *c = cooc_new(10);
    assert_int_equal(cooc_add_group(c, (uint32_t[]){7, 3, 7, 9, 3}, 5, 2), COOC_OK);
    assert_true(cooc_weight(c, 7, 3) == 2);
    assert_true(cooc_weight(c, 3, 7) == 2);
    assert_true(cooc_weight(c, 7, 9) == 2);
    assert_true(cooc_weight(c, 9, 3) == 2);
    assert_true(cooc_weight(c, 7, 7) == 0);
    /* Rows in the order of the pairs: (7,3), (7,9), (3,9). */
    expect_row(c, 7, (cooc_item[]){{3, 2}, {9, 2}}, 2);
    expect_row(c, 3, (cooc_item[]){{7, 2}, {9, 2}}, 2);
    expect_row(c, 9, (cooc_item[]){{7, 2}, {3, 2}}, 2);

    /* A second group overlapping the first adds to the shared pair only. */
    assert_int_equal(cooc_add_group(c, (uint32_t[]){9, 3, 4}, 3, 0.5f), COOC_OK);
    assert_true(cooc_weight(c, 3, 9) == 2.5f);
    assert_true(cooc_weight(c, 4, 9) == 0.5f);
    assert_true(cooc_weight(c, 3, 4) == 0.5f);
    assert_true(cooc_weight(c, 7, 4) == 0);

    /* One distinct item, or none: nothing to pair. */
    size_t bytes = cooc_bytes(c);
    assert_int_equal(cooc_add_group(c, (uint32_t[]){8, 8, 8}, 3, 1), COOC_OK);
    assert_int_equal(cooc_add_group(c, NULL, 0, 1), COOC_OK);
    assert_int_equal(cooc_add_group(c, (uint32_t[]){8}, 1, 1), COOC_OK);
    assert_int_equal(cooc_bytes(c), bytes);
    expect_top(c, 8, 4, NULL, 0);

    /* A huge group of one item repeated: linear, and nothing added. */
    enum { HUGE = 1000000 };
    uint32_t *many = malloc(HUGE * sizeof *many);
    assert_non_null(many);
    for (size_t i = 0; i < HUGE; i++)
        many[i] = 11;
    assert_int_equal(cooc_add_group(c, many, HUGE, 1), COOC_OK);
    assert_int_equal(cooc_bytes(c), bytes);
    free(many);
    cooc_free(c);
}

static void test_group_max_cut(void **state) {
    (void)state;
    assert_int_equal(COOC_GROUP_MAX, 50);
    cooc *c = cooc_new(100);
    /* 60 distinct items: 100..159; only 100..149 are paired. */
    uint32_t g[60];
    for (uint32_t i = 0; i < 60; i++)
        g[i] = 100 + i;
    assert_int_equal(cooc_add_group(c, g, 60, 1), COOC_OK);
    size_t n;
    assert_non_null(cooc_row(c, 100, &n));
    assert_int_equal(n, 49);
    assert_non_null(cooc_row(c, 149, &n));
    assert_int_equal(n, 49);
    assert_null(cooc_row(c, 150, &n));
    assert_null(cooc_row(c, 159, &n));
    assert_true(cooc_weight(c, 100, 149) == 1);
    assert_true(cooc_weight(c, 100, 150) == 0);

    /* The cut counts distinct items, not lines: each item twice, then a 51st distinct item. */
    cooc *d = cooc_new(100);
    uint32_t h[101];
    for (uint32_t i = 0; i < 100; i++)
        h[i] = i / 2;
    h[100] = 50;
    assert_int_equal(cooc_add_group(d, h, 101, 1), COOC_OK);
    assert_non_null(cooc_row(d, 0, &n));
    assert_int_equal(n, 49);
    assert_true(cooc_weight(d, 0, 49) == 1); /* each pair once despite the duplicates */
    assert_null(cooc_row(d, 50, &n));

    /* An invalid id past the cut still refuses the whole group. */
    size_t bytes = cooc_bytes(d);
    uint32_t bad[60];
    for (uint32_t i = 0; i < 60; i++)
        bad[i] = 200 + i;
    bad[55] = UINT32_MAX;
    assert_int_equal(cooc_add_group(d, bad, 60, 1), COOC_INVALID);
    assert_int_equal(cooc_bytes(d), bytes);
    assert_null(cooc_row(d, 200, &n));
    cooc_free(d);

    /* The cross has the same cut on each side. */
    uint32_t a[1] = {1000};
    assert_int_equal(cooc_add_cross(c, a, 1, g, 60, 1), COOC_OK);
    assert_non_null(cooc_row(c, 1000, &n));
    assert_int_equal(n, 50);
    assert_true(cooc_weight(c, 1000, 149) == 1);
    assert_true(cooc_weight(c, 1000, 150) == 0);
    cooc_free(c);
}

static void test_cross_overlap(void **state) {
    (void)state;
    cooc *c = cooc_new(10);
    /* a = {1,2,3}, b = {2,3,4}: 2-2 and 3-3 are skipped; 2-3 is met as (2,3) and (3,2) but is one
     * pair and gains w once. */
    assert_int_equal(cooc_add_cross(c, (uint32_t[]){1, 2, 3}, 3, (uint32_t[]){2, 3, 4}, 3, 1),
                     COOC_OK);
    static const uint32_t pairs[][2] = {{1, 2}, {1, 3}, {1, 4}, {2, 3}, {2, 4}, {3, 4}};
    for (size_t i = 0; i < 6; i++) {
        assert_true(cooc_weight(c, pairs[i][0], pairs[i][1]) == 1);
        assert_true(cooc_weight(c, pairs[i][1], pairs[i][0]) == 1);
    }
    assert_true(cooc_weight(c, 2, 2) == 0);
    /* Order of addition: (1,2) (1,3) (1,4) (2,3) (2,4) (3,4). */
    expect_row(c, 2, (cooc_item[]){{1, 1}, {3, 1}, {4, 1}}, 3);
    expect_row(c, 3, (cooc_item[]){{1, 1}, {2, 1}, {4, 1}}, 3);

    /* Duplicates on a side count once; an item only on one side pairs with the other side only. */
    assert_int_equal(cooc_add_cross(c, (uint32_t[]){5, 5, 5}, 3, (uint32_t[]){6, 6}, 2, 0.5f),
                     COOC_OK);
    assert_true(cooc_weight(c, 5, 6) == 0.5f);
    assert_true(cooc_weight(c, 6, 5) == 0.5f);

    /* The same set on both sides is the group of that set. */
    assert_int_equal(cooc_add_cross(c, (uint32_t[]){1, 2}, 2, (uint32_t[]){2, 1}, 2, 1), COOC_OK);
    assert_true(cooc_weight(c, 1, 2) == 2);
    assert_true(cooc_weight(c, 2, 1) == 2);

    /* Empty sides. */
    size_t bytes = cooc_bytes(c);
    assert_int_equal(cooc_add_cross(c, NULL, 0, (uint32_t[]){1}, 1, 1), COOC_OK);
    assert_int_equal(cooc_add_cross(c, (uint32_t[]){1}, 1, NULL, 0, 1), COOC_OK);
    assert_int_equal(cooc_add_cross(c, (uint32_t[]){7}, 1, (uint32_t[]){7}, 1, 1), COOC_OK);
    assert_int_equal(cooc_bytes(c), bytes);
    cooc_free(c);
}

static void test_eviction(void **state) {
    (void)state;
    cooc *c = cooc_new(3);
    assert_int_equal(cooc_add_pair(c, 1, 10, 5), COOC_OK);
    assert_int_equal(cooc_add_pair(c, 1, 11, 2), COOC_OK);
    assert_int_equal(cooc_add_pair(c, 1, 12, 2), COOC_OK);
    expect_row(c, 1, (cooc_item[]){{10, 5}, {11, 2}, {12, 2}}, 3);

    /* 13 arrives at a full row: the minimum is 2, shared by 11 and 12; 11 is older and goes. 13
     * inherits 2 + 1 and is now the youngest. Row 13 was empty, so it holds the plain 1. */
    assert_int_equal(cooc_add_pair(c, 1, 13, 1), COOC_OK);
    expect_row(c, 1, (cooc_item[]){{10, 5}, {12, 2}, {13, 3}}, 3);
    assert_true(cooc_weight(c, 1, 11) == 0);
    assert_true(cooc_weight(c, 1, 13) == 3);
    assert_true(cooc_weight(c, 13, 1) == 1);
    assert_true(cooc_weight(c, 11, 1) == 2); /* 11's own row still holds the pair */

    /* An existing entry is updated in place, never evicted, even when it is the minimum. */
    assert_int_equal(cooc_add_pair(c, 1, 12, 0.5f), COOC_OK);
    expect_row(c, 1, (cooc_item[]){{10, 5}, {12, 2.5f}, {13, 3}}, 3);

    /* 14: the minimum is 12 (2.5), alone. */
    assert_int_equal(cooc_add_pair(c, 1, 14, 0.5f), COOC_OK);
    expect_row(c, 1, (cooc_item[]){{10, 5}, {13, 3}, {14, 3}}, 3);

    /* 13 and 14 tie at 3; 13 entered first, so 15 replaces it and gets 3 + 1 = 4. */
    assert_int_equal(cooc_add_pair(c, 15, 1, 1), COOC_OK);
    expect_row(c, 1, (cooc_item[]){{10, 5}, {14, 3}, {15, 4}}, 3);
    expect_top(c, 1, 3, (cooc_item[]){{10, 5}, {15, 4}, {14, 3}}, 3);

    /* Both rows full: each evicts on its own. Fill row 20 with 21, 22, 23 (1 each), then 1-20. */
    assert_int_equal(cooc_add_group(c, (uint32_t[]){20, 21}, 2, 1), COOC_OK);
    assert_int_equal(cooc_add_group(c, (uint32_t[]){20, 22}, 2, 1), COOC_OK);
    assert_int_equal(cooc_add_group(c, (uint32_t[]){20, 23}, 2, 1), COOC_OK);
    assert_int_equal(cooc_add_pair(c, 1, 20, 0.25f), COOC_OK);
    expect_row(c, 1, (cooc_item[]){{10, 5}, {15, 4}, {20, 3.25f}}, 3);
    expect_row(c, 20, (cooc_item[]){{22, 1}, {23, 1}, {1, 1.25f}}, 3);
    cooc_free(c);

    /* per_item 1: every new neighbour replaces the only one. */
    c = cooc_new(1);
    assert_int_equal(cooc_add_pair(c, 0, 1, 1), COOC_OK);
    assert_int_equal(cooc_add_pair(c, 0, 2, 1), COOC_OK);
    expect_row(c, 0, (cooc_item[]){{2, 2}}, 1);
    expect_row(c, 1, (cooc_item[]){{0, 1}}, 1);
    expect_row(c, 2, (cooc_item[]){{0, 1}}, 1);
    cooc_free(c);
}

static void test_top_order(void **state) {
    (void)state;
    cooc *c = cooc_new(16);
    static const cooc_item in[] = {{5, 2}, {3, 2}, {9, 1}, {1, 4}, {7, 2}, {8, 0.5f}, {2, 2}};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(cooc_add_pair(c, 100, in[i].item, in[i].weight), COOC_OK);
    static const cooc_item want[] = {{1, 4}, {2, 2}, {3, 2}, {5, 2}, {7, 2}, {9, 1}, {8, 0.5f}};
    for (size_t k = 1; k <= 7; k++)
        expect_top(c, 100, k, want, k);
    expect_top(c, 100, 64, want, 7);
    expect_top(c, 100, 0, NULL, 0);
    /* Unknown items: never seen, past the index, reserved. */
    expect_top(c, 4, 10, NULL, 0);
    expect_top(c, 5000000, 10, NULL, 0);
    expect_top(c, UINT32_MAX, 10, NULL, 0);
    /* A neighbour's view of the same pairs. */
    expect_top(c, 5, 10, (cooc_item[]){{100, 2}}, 1);
    cooc_free(c);
}

static void test_invalid(void **state) {
    (void)state;
    cooc *c = cooc_new(4);
    assert_int_equal(cooc_add_pair(c, 1, 2, 1), COOC_OK);
    size_t bytes = cooc_bytes(c);
    static const float bad_w[] = {0, -0.0f, -1, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad_w / sizeof *bad_w; i++) {
        assert_int_equal(cooc_add_pair(c, 1, 2, bad_w[i]), COOC_INVALID);
        assert_int_equal(cooc_add_pair(c, 1, 1, bad_w[i]), COOC_INVALID);
        assert_int_equal(cooc_add_group(c, (uint32_t[]){1, 2}, 2, bad_w[i]), COOC_INVALID);
        assert_int_equal(cooc_add_cross(c, (uint32_t[]){1}, 1, (uint32_t[]){3}, 1, bad_w[i]),
                         COOC_INVALID);
    }
    assert_int_equal(cooc_add_pair(c, UINT32_MAX, 2, 1), COOC_INVALID);
    assert_int_equal(cooc_add_pair(c, 2, UINT32_MAX, 1), COOC_INVALID);
    assert_int_equal(cooc_add_pair(c, UINT32_MAX, UINT32_MAX, 1), COOC_INVALID);
    assert_int_equal(cooc_add_group(c, (uint32_t[]){1, 2, UINT32_MAX}, 3, 1), COOC_INVALID);
    assert_int_equal(cooc_add_group(c, NULL, 3, 1), COOC_INVALID);
    assert_int_equal(cooc_add_cross(c, (uint32_t[]){1}, 1, (uint32_t[]){UINT32_MAX}, 1, 1),
                     COOC_INVALID);
    assert_int_equal(cooc_add_cross(c, (uint32_t[]){UINT32_MAX, 1}, 2, (uint32_t[]){3}, 1, 1),
                     COOC_INVALID);
    assert_int_equal(cooc_add_cross(c, NULL, 2, (uint32_t[]){3}, 1, 1), COOC_INVALID);
    assert_int_equal(cooc_add_cross(c, (uint32_t[]){3}, 1, NULL, 2, 1), COOC_INVALID);
    /* Nothing changed. */
    assert_int_equal(cooc_bytes(c), bytes);
    assert_true(cooc_weight(c, 1, 2) == 1);
    assert_true(cooc_weight(c, 1, 3) == 0);
    /* The smallest positive float is a valid weight. */
    assert_int_equal(cooc_add_pair(c, 1, 3, 0x1p-149f), COOC_OK);
    assert_true(cooc_weight(c, 3, 1) == 0x1p-149f);
    cooc_free(c);
}

static void test_forget(void **state) {
    (void)state;
    /* Symmetric rows (nothing evicted). */
    cooc *c = cooc_new(8);
    assert_int_equal(cooc_add_group(c, (uint32_t[]){1, 2, 3, 4}, 4, 1), COOC_OK);
    size_t before = cooc_bytes(c);
    cooc_forget(c, 2);
    assert_int_equal(cooc_bytes(c), before - (ROWHDR + 4 * ENTRY)); /* row 2 had 3 of 4 slots */
    assert_true(cooc_weight(c, 1, 2) == 0);
    assert_true(cooc_weight(c, 2, 1) == 0);
    size_t n;
    assert_null(cooc_row(c, 2, &n));
    expect_row(c, 1, (cooc_item[]){{3, 1}, {4, 1}}, 2); /* order kept */
    expect_row(c, 3, (cooc_item[]){{1, 1}, {4, 1}}, 2);
    expect_row(c, 4, (cooc_item[]){{1, 1}, {3, 1}}, 2);
    cooc_forget(c, 2); /* twice */
    cooc_forget(c, 99999999);
    cooc_forget(c, UINT32_MAX);
    expect_row(c, 1, (cooc_item[]){{3, 1}, {4, 1}}, 2);
    /* Usable again. */
    assert_int_equal(cooc_add_pair(c, 2, 1, 3), COOC_OK);
    expect_row(c, 1, (cooc_item[]){{3, 1}, {4, 1}, {2, 3}}, 3);
    cooc_free(c);

    /* Asymmetric after an eviction: row 1 drops 2, but row 2 still holds 1. Forgetting 1 must
     * reach row 2 although 1's own row does not name it. */
    c = cooc_new(2);
    assert_int_equal(cooc_add_pair(c, 1, 2, 1), COOC_OK);
    assert_int_equal(cooc_add_pair(c, 1, 3, 1), COOC_OK);
    assert_int_equal(cooc_add_pair(c, 1, 4, 5), COOC_OK);
    expect_row(c, 1, (cooc_item[]){{3, 1}, {4, 6}}, 2);
    expect_row(c, 2, (cooc_item[]){{1, 1}}, 1);
    assert_int_equal(cooc_add_pair(c, 2, 9, 2), COOC_OK);
    cooc_forget(c, 1);
    expect_row(c, 2, (cooc_item[]){{9, 2}}, 1);
    expect_row(c, 3, NULL, 0);
    expect_row(c, 4, NULL, 0);
    expect_row(c, 1, NULL, 0);
    assert_true(cooc_weight(c, 9, 2) == 2);
    cooc_free(c);
}

static void test_bytes_bounded(void **state) {
    (void)state;
    cooc *c = cooc_new(8);
    size_t b0 = cooc_bytes(c);
    /* One pair: an index of 4 ids, two rows of 4 slots. */
    assert_int_equal(cooc_add_pair(c, 0, 1, 1), COOC_OK);
    assert_int_equal(cooc_bytes(c), b0 + 4 * IDXSLOT + 2 * (ROWHDR + 4 * ENTRY));
    /* A fifth neighbour doubles row 0 to 8 slots, the cap. */
    for (uint32_t i = 2; i <= 5; i++)
        assert_int_equal(cooc_add_pair(c, 0, i, 1), COOC_OK);
    assert_int_equal(cooc_bytes(c),
                     b0 + 8 * IDXSLOT + (ROWHDR + 8 * ENTRY) + 5 * (ROWHDR + 4 * ENTRY));

    /* 100 items, every pair many times: each row is at its cap of 8 and stays there. */
    for (int round = 0; round < 3; round++)
        for (uint32_t a = 0; a < 100; a++)
            for (uint32_t b = a + 1; b < 100; b++)
                assert_int_equal(cooc_add_pair(c, a, b, (float)((a * 7 + b) % 5 + 1)), COOC_OK);
    size_t full = b0 + 128 * IDXSLOT + 100 * (ROWHDR + 8 * ENTRY);
    assert_int_equal(cooc_bytes(c), full);
    for (uint32_t a = 0; a < 100; a++) {
        size_t n;
        cooc_row(c, a, &n);
        assert_int_equal(n, 8);
    }
    for (int i = 0; i < 10000; i++)
        assert_int_equal(
            cooc_add_group(c, (uint32_t[]){(uint32_t)i % 100, (uint32_t)i % 37, (uint32_t)i % 91},
                           3, 1),
            COOC_OK);
    assert_int_equal(cooc_bytes(c), full);
    cooc_forget(c, 5);
    assert_int_equal(cooc_bytes(c), full - (ROWHDR + 8 * ENTRY));
    cooc_free(c);

    /* Rows double (4, 8, 16) and stop at per_item even when that is not a power of two. */
    c = cooc_new(100);
    b0 = cooc_bytes(c);
    for (uint32_t i = 1; i <= 9; i++)
        assert_int_equal(cooc_add_pair(c, 0, i, 1), COOC_OK);
    assert_int_equal(cooc_bytes(c),
                     b0 + 16 * IDXSLOT + (ROWHDR + 16 * ENTRY) + 9 * (ROWHDR + 4 * ENTRY));
    cooc_free(c);
    c = cooc_new(6);
    b0 = cooc_bytes(c);
    for (uint32_t i = 1; i <= 9; i++)
        assert_int_equal(cooc_add_pair(c, 0, i, 1), COOC_OK);
    assert_int_equal(cooc_bytes(c),
                     b0 + 16 * IDXSLOT + (ROWHDR + 6 * ENTRY) + 9 * (ROWHDR + 4 * ENTRY));
    cooc_free(c);
}

/* ---- randomized, against a dense matrix ---- */

static uint64_t rng = 0x853c49e6748fea9bull;

static uint64_t next_rand(void) {
    /* xorshift64*: fixed seed, so a failure reproduces. */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

enum { NI = 40 };

static int cmp_want(const void *x, const void *y) {
    const cooc_item *a = x, *b = y;
    if (a->weight != b->weight) return a->weight > b->weight ? -1 : 1;
    return (a->item > b->item) - (a->item < b->item);
}

static void check_all(const cooc *c, double ref[NI][NI], int op) {
    for (uint32_t a = 0; a < NI; a++) {
        cooc_item want[NI];
        size_t n = 0;
        for (uint32_t b = 0; b < NI; b++) {
            if ((double)cooc_weight(c, a, b) != ref[a][b])
                fail_msg("op %d: weight(%u, %u) = %g, reference %g", op, a, b,
                         (double)cooc_weight(c, a, b), ref[a][b]);
            if (ref[a][b] > 0) want[n++] = (cooc_item){b, (float)ref[a][b]};
        }
        qsort(want, n, sizeof *want, cmp_want);
        size_t len;
        cooc_row(c, a, &len);
        if (len != n) fail_msg("op %d: row %u has %zu, reference %zu", op, a, len, n);
        size_t k = (size_t)(next_rand() % (NI + 2));
        cooc_item got[NI + 2];
        size_t m = cooc_top(c, a, k, got);
        if (m != (k < n ? k : n)) fail_msg("op %d: top %zu of %u gave %zu", op, k, a, m);
        for (size_t i = 0; i < m; i++)
            if (got[i].item != want[i].item || got[i].weight != want[i].weight)
                fail_msg("op %d: top of %u, entry %zu: (%u, %g) want (%u, %g)", op, a, i,
                         got[i].item, (double)got[i].weight, want[i].item, (double)want[i].weight);
    }
}

static void test_randomized(void **state) {
    (void)state;
    /* per_item 64 > NI - 1: rows never fill, so the model is exact. Weights are quarters and the
     * sums stay far below 2^22, so float sums are exact too. */
    cooc *c = cooc_new(64);
    static double ref[NI][NI];
    memset(ref, 0, sizeof ref);
    int groups = 0, crosses = 0, forgets = 0;
    for (int op = 0; op < 6000; op++) {
        float w = (float)(next_rand() % 8 + 1) / 4;
        unsigned kind = (unsigned)(next_rand() % 100);
        if (kind < 30) {
            uint32_t a = (uint32_t)(next_rand() % NI), b = (uint32_t)(next_rand() % NI);
            assert_int_equal(cooc_add_pair(c, a, b, w), COOC_OK);
            if (a != b) ref[a][b] += w, ref[b][a] += w;
        } else if (kind < 65) {
            uint32_t g[12];
            size_t n = (size_t)(next_rand() % 12);
            for (size_t i = 0; i < n; i++)
                g[i] = (uint32_t)(next_rand() % NI);
            assert_int_equal(cooc_add_group(c, g, n, w), COOC_OK);
            bool in[NI] = {false};
            for (size_t i = 0; i < n; i++)
                in[g[i]] = true;
            for (uint32_t a = 0; a < NI; a++)
                for (uint32_t b = 0; b < NI; b++)
                    if (a != b && in[a] && in[b]) ref[a][b] += w;
            groups++;
        } else if (kind < 97) {
            uint32_t x[6], y[6];
            size_t nx = (size_t)(next_rand() % 6), ny = (size_t)(next_rand() % 6);
            bool inx[NI] = {false}, iny[NI] = {false};
            for (size_t i = 0; i < nx; i++)
                inx[x[i] = (uint32_t)(next_rand() % NI)] = true;
            for (size_t i = 0; i < ny; i++)
                iny[y[i] = (uint32_t)(next_rand() % NI)] = true;
            assert_int_equal(cooc_add_cross(c, x, nx, y, ny, w), COOC_OK);
            /* The unordered pairs {a, b}, a != b, with one in x and the other in y, once each. */
            for (uint32_t a = 0; a < NI; a++)
                for (uint32_t b = 0; b < NI; b++)
                    if (a != b && ((inx[a] && iny[b]) || (inx[b] && iny[a]))) ref[a][b] += w;
            crosses++;
        } else {
            uint32_t f = (uint32_t)(next_rand() % NI);
            cooc_forget(c, f);
            for (uint32_t a = 0; a < NI; a++)
                ref[a][f] = ref[f][a] = 0;
            forgets++;
        }
        if (op % 50 == 0) check_all(c, ref, op);
    }
    check_all(c, ref, -1);
    assert_true(groups > 1500 && crosses > 1500 && forgets > 100);
    cooc_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_free),         cmocka_unit_test(test_pair_sums),
        cmocka_unit_test(test_group_duplicates), cmocka_unit_test(test_group_max_cut),
        cmocka_unit_test(test_cross_overlap),    cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_top_order),        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_forget),           cmocka_unit_test(test_bytes_bounded),
        cmocka_unit_test(test_randomized),
    };
    return cmocka_run_group_tests_name("cooc", tests, NULL, NULL);
}
