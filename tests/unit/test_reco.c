/* Unit tests of the recommendation service (reco/reco.c): each strategy on a few interactions whose
 * scores are worked out by hand, the blend's weights, the fallback chain, the caller's filter and
 * boost, diversity caps, and what merges and erasure do to a customer's history. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reco/reco.h"

#define EPS 1e-5
#define T0 1700000000000LL /* an event time in ms; queries ask "now" = T0 unless said */

static reco *fresh(void) {
    reco_opts o;
    reco_opts_default(&o);
    reco *r = reco_new(&o);
    assert_non_null(r);
    return r;
}

static void view(reco *r, uint32_t who, uint32_t item, int64_t t) {
    assert_int_equal(reco_observe(r, who, RECO_VIEW, item, NULL, 0, t), RECO_OK);
}

static void buy(reco *r, uint32_t who, const uint32_t *items, size_t n, int64_t t) {
    assert_int_equal(reco_order(r, who, items, n), RECO_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(reco_observe(r, who, RECO_PURCHASE, items[i], NULL, 0, t), RECO_OK);
}

/* A query by an unknown visitor at T0; anchor may be NULL (none). */
static reco_query query(const reco_strategy *s, size_t ns, const uint32_t *anchor, size_t limit) {
    return (reco_query){.who = RECO_NOBODY,
                        .strategies = s,
                        .nstrategies = ns,
                        .anchors = anchor,
                        .nanchors = anchor ? 1 : 0,
                        .limit = limit,
                        .now_ms = T0};
}

/* Sessions {10,11,12}, {10,11}, {10,13}: 11 was viewed with 10 twice, 12 and 13 once each. */
static void co_views(reco *r) {
    const uint32_t s[][3] = {{10, 11, 12}, {10, 11, 0}, {10, 13, 0}};
    for (uint32_t who = 0; who < 3; who++)
        for (int i = 0; i < 3 && s[who][i]; i++)
            view(r, who + 1, s[who][i], T0 + i * 1000);
}

static void test_viewed_together(void **state) {
    (void)state;
    reco *r = fresh();
    co_views(r);
    reco_strategy s = RECO_S_VIEWED_TOGETHER;
    uint32_t anchor = 10;
    reco_query q = query(&s, 1, &anchor, 3);
    reco_result out[3];
    assert_int_equal(reco_recommend(r, &q, out), 3);
    assert_int_equal(out[0].item, 11);
    assert_float_equal(out[0].score, 1.0, EPS); /* 2 / 2 */
    assert_int_equal(out[0].strategy, RECO_S_VIEWED_TOGETHER);
    assert_int_equal(out[0].because, 10);
    assert_false(out[0].fallback);
    assert_int_equal(out[1].item, 12); /* 1 / 2, tied with 13: the smaller id first */
    assert_float_equal(out[1].score, 0.5, EPS);
    assert_int_equal(out[2].item, 13);
    reco_free(r);
}

/* A session counts a pair once, however often either was viewed; a new session counts again.
 * Customer 1: 10, 11, 10, 11 (one session), then 10, 11 two hours later: 10-11 twice. Customer 2:
 * 10, 12: once. So 11 scores 2/2 and 12 1/2 (a repeat counted each time would push 12 lower). */
static void test_coviews_once_per_session(void **state) {
    (void)state;
    reco *r = fresh();
    const uint32_t first[] = {10, 11, 10, 11};
    for (int i = 0; i < 4; i++)
        view(r, 1, first[i], T0 + i * 1000);
    view(r, 1, 10, T0 + 2 * 3600 * 1000), view(r, 1, 11, T0 + 2 * 3600 * 1000 + 1000);
    view(r, 2, 10, T0), view(r, 2, 12, T0 + 1000);
    reco_strategy s = RECO_S_VIEWED_TOGETHER;
    uint32_t anchor = 10;
    reco_query q = query(&s, 1, &anchor, 2);
    reco_result out[2];
    assert_int_equal(reco_recommend(r, &q, out), 2);
    assert_int_equal(out[0].item, 11);
    assert_float_equal(out[0].score, 1.0, EPS);
    assert_int_equal(out[1].item, 12);
    assert_float_equal(out[1].score, 0.5, EPS);
    reco_free(r);
}

/* Without an anchor, the customer's last view anchors: customer 1 last viewed 12, which was only
 * ever viewed with 10 and 11. */
static void test_anchor_is_last_view(void **state) {
    (void)state;
    reco *r = fresh();
    co_views(r);
    reco_strategy s = RECO_S_VIEWED_TOGETHER;
    reco_query q = query(&s, 1, NULL, 2);
    q.who = 1;
    reco_result out[2];
    assert_int_equal(reco_recommend(r, &q, out), 2);
    assert_int_equal(out[0].item, 10);
    assert_int_equal(out[1].item, 11);
    assert_int_equal(out[0].because, 12);
    reco_free(r);
}

/* Orders {1,2} then {3} by the same customer: 1-2 weigh 1; 3 against the earlier 1 and 2, 0.5. */
static void test_bought_together(void **state) {
    (void)state;
    reco *r = fresh();
    const uint32_t o1[] = {1, 2}, o2[] = {3};
    buy(r, 5, o1, 2, T0);
    buy(r, 5, o2, 1, T0);
    reco_strategy s = RECO_S_BOUGHT_TOGETHER;
    uint32_t anchor = 1;
    reco_query q = query(&s, 1, &anchor, 2);
    reco_result out[2];
    assert_int_equal(reco_recommend(r, &q, out), 2);
    assert_int_equal(out[0].item, 2);
    assert_float_equal(out[0].score, 1.0, EPS);
    assert_int_equal(out[1].item, 3);
    assert_float_equal(out[1].score, 0.5, EPS);
    assert_int_equal(out[1].because, 1);
    reco_free(r);
}

/* Two strategies blend with weights 1 and 1/2. Anchor 1: viewed together with 3 (twice) and 2
 * (once); bought together with 2 only. 3: 1 * 2/2 = 1. 2: 1 * 1/2 + 0.5 * 1/1 = 1, a tie that the
 * smaller id wins; its reason is the larger share, 0.5 each: the first strategy keeps it. Then
 * with the order swapped, 2: 1 * 1 + 0.5 * 0.5 = 1.25, 3: 0.5 * 1 = 0.5. */
static void test_blend_weights(void **state) {
    (void)state;
    reco *r = fresh();
    view(r, 1, 1, T0), view(r, 1, 3, T0 + 1);
    view(r, 2, 1, T0), view(r, 2, 3, T0 + 1);
    view(r, 3, 1, T0), view(r, 3, 2, T0 + 1);
    const uint32_t order[] = {1, 2};
    buy(r, 4, order, 2, T0);
    uint32_t anchor = 1;
    reco_strategy s[] = {RECO_S_VIEWED_TOGETHER, RECO_S_BOUGHT_TOGETHER};
    reco_query q = query(s, 2, &anchor, 2);
    reco_result out[2];
    assert_int_equal(reco_recommend(r, &q, out), 2);
    assert_int_equal(out[0].item, 2);
    assert_float_equal(out[0].score, 1.0, EPS);
    assert_int_equal(out[0].strategy, RECO_S_VIEWED_TOGETHER);
    assert_int_equal(out[1].item, 3);
    assert_float_equal(out[1].score, 1.0, EPS);
    reco_strategy swapped[] = {RECO_S_BOUGHT_TOGETHER, RECO_S_VIEWED_TOGETHER};
    q.strategies = swapped;
    assert_int_equal(reco_recommend(r, &q, out), 2);
    assert_int_equal(out[0].item, 2);
    assert_float_equal(out[0].score, 1.25, EPS);
    assert_int_equal(out[0].strategy, RECO_S_BOUGHT_TOGETHER);
    assert_int_equal(out[1].item, 3);
    assert_float_equal(out[1].score, 0.5, EPS);
    reco_free(r);
}

static bool hide_11(void *arg, uint32_t item) {
    (*(int *)arg)++;
    return item != 11;
}

/* The caller's verdict drops an item before normalisation, and is asked once per item. */
static void test_accept(void **state) {
    (void)state;
    reco *r = fresh();
    co_views(r);
    reco_strategy s = RECO_S_VIEWED_TOGETHER;
    uint32_t anchor = 10;
    int calls = 0;
    reco_query q = query(&s, 1, &anchor, 2);
    q.accept = hide_11;
    q.arg = &calls;
    reco_result out[2];
    assert_int_equal(reco_recommend(r, &q, out), 2);
    assert_int_equal(out[0].item, 12);
    assert_float_equal(out[0].score, 1.0, EPS); /* 1 / 1: the best shown */
    assert_int_equal(out[1].item, 13);
    assert_int_equal(calls, 3); /* 11, 12, 13 */
    reco_free(r);
}

/* Exclusions and anchors never appear, whatever strategy or fallback finds them. */
static void test_exclude(void **state) {
    (void)state;
    reco *r = fresh();
    co_views(r);
    reco_strategy s = RECO_S_POPULAR;
    uint32_t ex[] = {10, 11};
    reco_query q = query(&s, 1, NULL, 10);
    q.exclude = ex;
    q.nexclude = 2;
    q.catalogue_items = 14;
    reco_result out[10];
    long n = reco_recommend(r, &q, out);
    assert_int_equal(n, 10);
    for (long i = 0; i < n; i++)
        assert_true(out[i].item != 10 && out[i].item != 11);
    reco_free(r);
}

/* Fewer than asked: the fallback chain fills in, each tier below the last. Nobody is known, so
 * for you and segment give nothing; popular has 10 (anchor), 11, 12, 13 — all taken or hidden —
 * and the newest products (ordinals 14, 9, 8, ... as 13..10 are taken) come last, 14 at half the
 * lowest blended score and the next at that times its rank ratio (1/6 : 1/1). */
static void test_fallbacks(void **state) {
    (void)state;
    reco *r = fresh();
    co_views(r);
    reco_strategy s = RECO_S_VIEWED_TOGETHER;
    uint32_t anchor = 10;
    reco_query q = query(&s, 1, &anchor, 5);
    q.catalogue_items = 15;
    reco_result out[5];
    assert_int_equal(reco_recommend(r, &q, out), 5);
    assert_int_equal(out[2].item, 13);
    assert_float_equal(out[2].score, 0.5, EPS);
    assert_int_equal(out[3].item, 14);
    assert_true(out[3].fallback);
    assert_int_equal(out[3].strategy, RECO_S_NEW);
    assert_float_equal(out[3].score, 0.25, EPS);
    assert_int_equal(out[4].item, 9);
    assert_float_equal(out[4].score, 0.25 / 6, EPS);
    reco_free(r);
}

/* A shop with no events at all: only the catalogue's newest, never an empty list. */
static void test_cold_start(void **state) {
    (void)state;
    reco *r = fresh();
    reco_query q = query(NULL, 0, NULL, 3);
    q.context = RECO_CTX_HOME;
    q.who = 42;
    q.catalogue_items = 2;
    reco_result out[3];
    assert_int_equal(reco_recommend(r, &q, out), 2);
    assert_int_equal(out[0].item, 1);
    assert_int_equal(out[1].item, 0);
    assert_int_equal(out[0].strategy, RECO_S_NEW);
    q.catalogue_items = 0;
    assert_int_equal(reco_recommend(r, &q, out), 0);
    reco_free(r);
}

static void parity(void *arg, uint32_t item, uint32_t *category, uint32_t *brand) {
    (void)arg;
    *category = item % 2;
    *brand = RECO_NONE;
}

/* One item per category: 11 (odd) first, then 12 (even); 13 (odd) is over its cap, and the
 * fallback's items obey the same cap, so nothing else fits. */
static void test_diversity(void **state) {
    (void)state;
    reco *r = fresh();
    co_views(r);
    reco_strategy s = RECO_S_VIEWED_TOGETHER;
    uint32_t anchor = 10;
    reco_query q = query(&s, 1, &anchor, 5);
    q.facets = parity;
    q.max_per_category = 1;
    q.catalogue_items = 15;
    reco_result out[5];
    assert_int_equal(reco_recommend(r, &q, out), 2);
    assert_int_equal(out[0].item, 11);
    assert_int_equal(out[1].item, 12);
    reco_free(r);
}

static double boost_13(void *arg, uint32_t item) {
    (void)arg;
    return item == 13 ? 3.0 : 1.0;
}

static void test_boost(void **state) {
    (void)state;
    reco *r = fresh();
    co_views(r);
    reco_strategy s = RECO_S_VIEWED_TOGETHER;
    uint32_t anchor = 10;
    reco_query q = query(&s, 1, &anchor, 3);
    q.boost = boost_13;
    reco_result out[3];
    assert_int_equal(reco_recommend(r, &q, out), 3);
    assert_int_equal(out[0].item, 13);
    assert_float_equal(out[0].score, 1.5, EPS);
    assert_int_equal(out[1].item, 11);
    reco_free(r);
}

/* Friends 7 and 8 bought 41; 7 also 40 (twice: a friend counts once per item). */
static void test_friends(void **state) {
    (void)state;
    reco *r = fresh();
    const uint32_t a[] = {40, 41}, b[] = {41}, c[] = {40};
    buy(r, 7, a, 2, T0);
    buy(r, 7, c, 1, T0);
    buy(r, 8, b, 1, T0);
    reco_strategy s = RECO_S_FRIENDS;
    uint32_t friends[] = {7, 8};
    reco_query q = query(&s, 1, NULL, 2);
    q.who = 9;
    q.friends = friends;
    q.nfriends = 2;
    reco_result out[2];
    assert_int_equal(reco_recommend(r, &q, out), 2);
    assert_int_equal(out[0].item, 41);
    assert_float_equal(out[0].score, 1.0, EPS);
    assert_int_equal(out[1].item, 40);
    assert_float_equal(out[1].score, 0.5, EPS);
    reco_free(r);
}

/* Group 5's members viewed 200 twice and 201 once (purchases weigh 5: 202 once = 5). A member
 * asking gets 202 (5/5), 200 (2/5), 201 (1/5); the reason names the group. */
static void test_segment(void **state) {
    (void)state;
    reco *r = fresh();
    uint32_t g = 5;
    assert_int_equal(reco_set_groups(r, 30, &g, 1), RECO_OK);
    assert_int_equal(reco_set_groups(r, 31, &g, 1), RECO_OK);
    view(r, 30, 200, T0), view(r, 30, 200, T0), view(r, 30, 201, T0);
    const uint32_t o[] = {202};
    buy(r, 30, o, 1, T0);
    view(r, 32, 203, T0); /* not a member */
    reco_strategy s = RECO_S_SEGMENT;
    reco_query q = query(&s, 1, NULL, 3);
    q.who = 31;
    reco_result out[3];
    assert_int_equal(reco_recommend(r, &q, out), 3);
    assert_int_equal(out[0].item, 202);
    assert_float_equal(out[0].score, 1.0, EPS);
    assert_int_equal(out[0].because, 5);
    assert_int_equal(out[1].item, 200);
    assert_float_equal(out[1].score, 0.4, EPS);
    assert_int_equal(out[2].item, 201);
    assert_float_equal(out[2].score, 0.2, EPS);
    reco_free(r);
}

/* For you: customer 40 viewed 1 and bought 2, just now: seeds 2 (weight 5) and 1 (weight 1).
 * 2 was bought with 4 by someone else; 1 was viewed with 3. 4: 5 * 1/1 = 5, 3: 1 * 1/1 = 1,
 * normalised 1 and 0.2. A week later the weights halve, the order stays. */
static void test_for_you(void **state) {
    (void)state;
    reco *r = fresh();
    view(r, 40, 1, T0);
    const uint32_t mine[] = {2}, theirs[] = {2, 4};
    buy(r, 40, mine, 1, T0);
    buy(r, 42, theirs, 2, T0);
    view(r, 41, 1, T0), view(r, 41, 3, T0 + 1000);
    reco_strategy s = RECO_S_FOR_YOU;
    reco_query q = query(&s, 1, NULL, 2);
    q.who = 40;
    reco_result out[2];
    assert_int_equal(reco_recommend(r, &q, out), 2);
    assert_int_equal(out[0].item, 4);
    assert_float_equal(out[0].score, 1.0, EPS);
    assert_int_equal(out[0].because, 2);
    assert_int_equal(out[1].item, 3);
    assert_float_equal(out[1].score, 0.2, EPS);
    assert_int_equal(out[1].because, 1);
    q.now_ms = T0 + 7LL * 86400 * 1000;
    assert_int_equal(reco_recommend(r, &q, out), 2);
    assert_float_equal(out[1].score, 0.2, EPS);
    reco_free(r);
}

/* The session: the customer's views no more than 30 minutes apart; the next view changes it. */
static void test_session_follows_views(void **state) {
    (void)state;
    reco *r = fresh();
    /* Others: after 1 comes 2; after 5 comes 6. */
    for (uint32_t who = 100; who < 110; who++) {
        view(r, who, 1, T0), view(r, who, 2, T0 + 1000);
        view(r, who + 100, 5, T0), view(r, who + 100, 6, T0 + 1000);
    }
    reco_strategy s = RECO_S_SESSION;
    reco_query q = query(&s, 1, NULL, 1);
    q.who = 7;
    reco_result out[1];
    view(r, 7, 1, T0);
    assert_int_equal(reco_recommend(r, &q, out), 1);
    assert_int_equal(out[0].item, 2);
    assert_int_equal(out[0].because, 1);
    view(r, 7, 5, T0 + 60 * 1000);
    assert_int_equal(reco_recommend(r, &q, out), 1);
    assert_int_equal(out[0].item, 6);
    /* Two hours later a new session begins: only the new view counts. */
    view(r, 7, 1, T0 + 2 * 3600 * 1000);
    assert_int_equal(reco_recommend(r, &q, out), 1);
    assert_int_equal(out[0].item, 2);
    reco_free(r);
}

static void test_merge_and_forget(void **state) {
    (void)state;
    reco *r = fresh();
    view(r, 20, 100, 1000 * 1000);
    view(r, 21, 101, 500 * 1000);
    uint32_t g = 9;
    assert_int_equal(reco_set_groups(r, 21, &g, 1), RECO_OK);
    assert_int_equal(reco_merge(r, 21, 20), RECO_OK);
    uint32_t items[4];
    reco_action act[4];
    int64_t t[4];
    assert_int_equal(reco_history(r, 20, items, act, t, 4), 2);
    assert_int_equal(items[0], 100); /* newest first */
    assert_int_equal(items[1], 101);
    assert_int_equal(act[1], RECO_VIEW);
    assert_int_equal(t[1], 500 * 1000);
    assert_int_equal(reco_history(r, 21, items, act, t, 4), 0);
    /* The survivor took the merged customer's group: its views now count in group 9. */
    view(r, 20, 102, 2000 * 1000);
    reco_strategy s = RECO_S_SEGMENT;
    reco_query q = query(&s, 1, NULL, 1);
    q.who = 20;
    q.now_ms = 2000 * 1000;
    reco_result out[1];
    assert_int_equal(reco_recommend(r, &q, out), 1);
    assert_int_equal(out[0].item, 102);
    reco_forget(r, 20);
    assert_int_equal(reco_history(r, 20, items, act, t, 4), 0);
    reco_stats st;
    reco_get_stats(r, &st);
    assert_int_equal(st.customers, 0);
    reco_free(r);
}

/* The history keeps the newest RECO_HISTORY interactions. */
static void test_history_ring(void **state) {
    (void)state;
    reco *r = fresh();
    for (uint32_t i = 0; i < RECO_HISTORY + 5; i++)
        view(r, 3, i, T0 + i * 1000);
    uint32_t items[RECO_HISTORY + 5];
    assert_int_equal(reco_history(r, 3, items, NULL, NULL, RECO_HISTORY + 5), RECO_HISTORY);
    assert_int_equal(items[0], RECO_HISTORY + 4);
    assert_int_equal(items[RECO_HISTORY - 1], 5);
    reco_free(r);
}

static void test_invalid(void **state) {
    (void)state;
    reco *r = fresh();
    reco_result out[1];
    reco_query q = query(NULL, 0, NULL, 0);
    assert_int_equal(reco_recommend(r, &q, out), RECO_INVALID);
    q.limit = RECO_LIMIT_MAX + 1;
    assert_int_equal(reco_recommend(r, &q, out), RECO_INVALID);
    reco_strategy bad = RECO_NSTRATEGIES;
    q = query(&bad, 1, NULL, 1);
    assert_int_equal(reco_recommend(r, &q, out), RECO_INVALID);
    assert_int_equal(reco_observe(r, 1, RECO_VIEW, RECO_NONE, NULL, 0, T0), RECO_INVALID);
    assert_int_equal(reco_set_groups(r, RECO_NOBODY, NULL, 0), RECO_INVALID);
    reco_free(r);
}

static void test_names(void **state) {
    (void)state;
    for (int s = 0; s < RECO_NSTRATEGIES; s++) {
        const char *n = reco_strategy_name((reco_strategy)s);
        assert_non_null(n);
        assert_int_equal(reco_strategy_lookup(n, strlen(n)), s);
    }
    assert_int_equal(reco_strategy_lookup("popularx", 8), -1);
    assert_int_equal(reco_strategy_lookup("popular", 6), -1);
    assert_null(reco_strategy_name(RECO_NSTRATEGIES));
    assert_int_equal(reco_context_lookup("cart"), RECO_CTX_CART);
    assert_int_equal(reco_context_lookup("Cart"), -1);
    assert_int_equal(reco_context_lookup(NULL), -1);
    reco_strategy s[RECO_NSTRATEGIES];
    assert_int_equal(reco_context_strategies(RECO_CTX_CART, s), 4);
    assert_int_equal(s[0], RECO_S_BOUGHT_TOGETHER);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_viewed_together),
        cmocka_unit_test(test_coviews_once_per_session),
        cmocka_unit_test(test_anchor_is_last_view),
        cmocka_unit_test(test_bought_together),
        cmocka_unit_test(test_blend_weights),
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_exclude),
        cmocka_unit_test(test_fallbacks),
        cmocka_unit_test(test_cold_start),
        cmocka_unit_test(test_diversity),
        cmocka_unit_test(test_boost),
        cmocka_unit_test(test_friends),
        cmocka_unit_test(test_segment),
        cmocka_unit_test(test_for_you),
        cmocka_unit_test(test_session_follows_views),
        cmocka_unit_test(test_merge_and_forget),
        cmocka_unit_test(test_history_ring),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
