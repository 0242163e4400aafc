/* Unit tests for http/ratelimit: the token bucket with explicit times. Every expected Retry-After
 * is worked out by hand from the header's rules: the bucket holds at most `rate` tokens, refills at
 * `rate` per second, admits a request whenever it is not in debt (tokens > 0) and then takes the
 * whole count, and Retry-After is the whole seconds until the debt is repaid and one more request
 * fits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <limits.h>

#include "http/ratelimit.h"

/* Takes n at now and asserts refusal with exactly `retry` seconds. */
static void expect_refused(rl_bucket *b, double n, int64_t now, int retry) {
    int r = -12345;
    if (rl_take(b, n, now, &r))
        fail_msg("admitted %g at %lld ms, expected a refusal", n, (long long)now);
    if (r != retry) fail_msg("at %lld ms: Retry-After %d, expected %d", (long long)now, r, retry);
}

static void expect_admitted(rl_bucket *b, double n, int64_t now) {
    int r = -12345;
    if (!rl_take(b, n, now, &r))
        fail_msg("refused %g at %lld ms (Retry-After %d)", n, (long long)now, r);
    assert_int_equal(r, -12345); /* untouched on admission */
}

static void test_burst_equals_rate(void **state) {
    (void)state;
    rl_bucket b;
    rl_init(&b, 10, 1000);
    for (int i = 0; i < 10; i++)
        expect_admitted(&b, 1, 1000);
    /* The bucket is at exactly 0: not in debt, but empty, so refused; 0.1 s refills one token. */
    expect_refused(&b, 1, 1000, 1);
    expect_refused(&b, 1, 1000, 1); /* a refusal takes nothing */
    expect_admitted(&b, 1, 1100);
    expect_refused(&b, 1, 1100, 1);
    rl_destroy(&b);
}

static void test_debt_and_retry_after(void **state) {
    (void)state;
    rl_bucket b;
    rl_init(&b, 10, 0);
    /* A batch larger than the burst is admitted and leaves 25 tokens of debt. */
    expect_admitted(&b, 35, 0);
    /* 25 tokens at 10/s: 2.5 s, rounded up to 3. */
    expect_refused(&b, 1, 0, 3);
    expect_refused(&b, 1, 2000, 1); /* -25 + 20 = -5: 0.5 s -> 1 */
    expect_refused(&b, 1, 1000, 1); /* time going back refills nothing and does not break */
    /* At 2.5 s the debt is repaid exactly: tokens == 0 is still refused. */
    expect_refused(&b, 1, 2500, 1);
    expect_admitted(&b, 1, 2501);
    rl_destroy(&b);

    /* After a Retry-After of N seconds, a request is admitted. */
    rl_init(&b, 3, 0);
    expect_admitted(&b, 100, 0); /* debt 97: 32.33 s */
    int r = 0;
    assert_false(rl_take(&b, 1, 0, &r));
    assert_int_equal(r, 33);
    assert_false(rl_take(&b, 1, (int64_t)(r - 1) * 1000, &r)); /* one second earlier: not yet */
    assert_true(rl_take(&b, 1, 33000, &r));
    rl_destroy(&b);
}

static void test_retry_after_integer_debt(void **state) {
    (void)state;
    /* A debt of exactly k seconds needs a little more than k seconds (tokens must become > 0), so
     * the answer is k + 1, never k. */
    rl_bucket b;
    rl_init(&b, 1, 0);
    expect_admitted(&b, 100, 0); /* -99 */
    expect_refused(&b, 1, 0, 100);
    expect_refused(&b, 1, 99000, 1); /* exactly repaid: 0 tokens */
    expect_admitted(&b, 1, 99001);
    rl_destroy(&b);
}

static void test_refill_caps_at_burst(void **state) {
    (void)state;
    rl_bucket b;
    rl_init(&b, 5, 0);
    expect_admitted(&b, 5, 0);
    /* An hour idle refills only up to the burst (5), not 18000 tokens. */
    expect_admitted(&b, 5, 3600000);
    expect_refused(&b, 1, 3600000, 1);
    /* Half a second refills 2.5. */
    expect_admitted(&b, 4, 3600500); /* 2.5 - 4 = -1.5 */
    expect_refused(&b, 1, 3600500, 1);
    expect_refused(&b, 1, 3600700, 1); /* -0.5 */
    expect_refused(&b, 1, 3600800, 1); /* -1.5 + 0.3 * 5 = 0: still refused */
    expect_admitted(&b, 1, 3600801);
    rl_destroy(&b);
}

static void test_fractional_rate(void **state) {
    (void)state;
    rl_bucket b;
    rl_init(&b, 0.5, 0);            /* one event every 2 s, burst 0.5 */
    expect_admitted(&b, 1, 0);      /* 0.5 > 0: admitted, -0.5 */
    expect_refused(&b, 1, 0, 2);    /* 0.5 tokens at 0.5/s = 1 s, plus "more than": 2 */
    expect_refused(&b, 1, 1000, 1); /* repaid exactly at 1 s: 0 tokens */
    expect_admitted(&b, 1, 1001);
    rl_destroy(&b);
}

static void test_unlimited(void **state) {
    (void)state;
    for (int k = 0; k < 2; k++) {
        rl_bucket b;
        rl_init(&b, k ? -3 : 0, 0);
        for (int i = 0; i < 1000; i++)
            expect_admitted(&b, 1e6, 0);
        expect_admitted(&b, 1e12, -5000);
        rl_destroy(&b);
    }
}

static void test_zero_events(void **state) {
    (void)state;
    rl_bucket b;
    rl_init(&b, 2, 0);
    expect_admitted(&b, 0, 0);
    expect_admitted(&b, 2, 0);
    expect_refused(&b, 0, 0, 1); /* an empty bucket refuses even an empty request */
    rl_destroy(&b);
}

static void test_retry_after_huge_debt(void **state) {
    (void)state;
    /* A very low per-key rate (keys create --rate accepts any value >= 0) and a large batch: the
     * debt lasts longer than an int can count seconds. Retry-After must stay a positive number. */
    rl_bucket b;
    rl_init(&b, 1e-6, 0);
    expect_admitted(&b, 5000, 0); /* 5000 / 1e-6 = 5e9 s */
    int r = 0;
    assert_false(rl_take(&b, 1, 0, &r));
    assert_int_equal(r, INT_MAX);
    rl_destroy(&b);
}

#define NTHREADS 4
#define TRIES 500

typedef struct race {
    rl_bucket *b;
    int admitted;
} race;

static void *taker(void *arg) {
    race *r = arg;
    int retry;
    for (int i = 0; i < TRIES; i++)
        r->admitted += rl_take(r->b, 1, 7000, &retry);
    return NULL;
}

static void test_concurrent_takes(void **state) {
    (void)state;
    /* All at the same instant: exactly `rate` single-event requests fit, whichever threads win. */
    rl_bucket b;
    rl_init(&b, 1000, 7000);
    pthread_t t[NTHREADS];
    race r[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        r[i] = (race){&b, 0};
        assert_int_equal(pthread_create(&t[i], NULL, taker, &r[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(t[i], NULL);
        total += r[i].admitted;
    }
    assert_int_equal(total, 1000);
    expect_refused(&b, 1, 7000, 1);
    rl_destroy(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_equals_rate),
        cmocka_unit_test(test_debt_and_retry_after),
        cmocka_unit_test(test_retry_after_integer_debt),
        cmocka_unit_test(test_refill_caps_at_burst),
        cmocka_unit_test(test_fractional_rate),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_zero_events),
        cmocka_unit_test(test_retry_after_huge_debt),
        cmocka_unit_test(test_concurrent_takes),
    };
    return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
