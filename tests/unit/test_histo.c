/* Unit tests for util/histo: which bucket an observation lands in (the bounds are inclusive, as
 * Prometheus "le" means), the exact Prometheus text with and without labels, the quantile estimate,
 * and exact counts under concurrent updates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "util/histo.h"

static uint64_t bucket(const histo *h, int i) {
    return atomic_load(&h->buckets[i]);
}

/* The index of the only non-empty bucket, or -1 if there is not exactly one. */
static int only_bucket(const histo *h) {
    int found = -1;
    for (int i = 0; i <= HISTO_NBUCKETS; i++) {
        if (!bucket(h, i)) continue;
        if (found >= 0) return -1;
        found = i;
    }
    return found;
}

static void test_bounds_table(void **state) {
    (void)state;
    /* The bounds must increase strictly, or an observation could fit two buckets. */
    for (int i = 1; i < HISTO_NBUCKETS; i++)
        assert_true(HISTO_BOUNDS_US[i] > HISTO_BOUNDS_US[i - 1]);
    assert_int_equal(HISTO_BOUNDS_US[0], 50);
    assert_int_equal(HISTO_BOUNDS_US[HISTO_NBUCKETS - 1], 10000000);
}

static void test_bucket_placement(void **state) {
    (void)state;
    /* At each bound, on it, just above it: a value equal to a bound belongs to that bound's bucket.
     */
    for (int i = 0; i < HISTO_NBUCKETS; i++) {
        uint64_t b = HISTO_BOUNDS_US[i];
        histo h = {0};
        histo_observe_us(&h, b);
        assert_int_equal(only_bucket(&h), i);

        histo above = {0};
        histo_observe_us(&above, b + 1);
        assert_int_equal(only_bucket(&above), i + 1); /* i + 1 == HISTO_NBUCKETS is +Inf */

        histo below = {0};
        histo_observe_us(&below, b - 1);
        assert_int_equal(only_bucket(&below), i); /* the bounds are far more than 1 us apart */
    }
    histo h = {0};
    histo_observe_us(&h, 0);
    assert_int_equal(only_bucket(&h), 0);
    histo top = {0};
    histo_observe_us(&top, UINT64_MAX / 2);
    assert_int_equal(only_bucket(&top), HISTO_NBUCKETS);
    assert_int_equal(atomic_load(&top.count), 1);
    assert_int_equal(atomic_load(&top.sum_us), UINT64_MAX / 2);
}

static void test_count_and_sum(void **state) {
    (void)state;
    histo h = {0};
    uint64_t sum = 0;
    for (uint64_t us = 0; us < 3000; us += 7) {
        histo_observe_us(&h, us);
        sum += us;
    }
    uint64_t total = 0;
    for (int i = 0; i <= HISTO_NBUCKETS; i++)
        total += bucket(&h, i);
    assert_int_equal(atomic_load(&h.count), 429); /* 0, 7, ..., 2996 */
    assert_int_equal(total, 429);
    assert_int_equal(atomic_load(&h.sum_us), sum);
    /* 0..49 step 7: 0,7,...,49 is 8 values (49 <= 50). */
    assert_int_equal(bucket(&h, 0), 8);
    /* 56..98: 56,63,70,77,84,91,98 */
    assert_int_equal(bucket(&h, 1), 7);
}

static const char render_plain[] = "lat_bucket{le=\"5e-05\"} 2\n"
                                   "lat_bucket{le=\"0.0001\"} 3\n"
                                   "lat_bucket{le=\"0.00025\"} 3\n"
                                   "lat_bucket{le=\"0.0005\"} 3\n"
                                   "lat_bucket{le=\"0.001\"} 3\n"
                                   "lat_bucket{le=\"0.0025\"} 3\n"
                                   "lat_bucket{le=\"0.005\"} 3\n"
                                   "lat_bucket{le=\"0.01\"} 3\n"
                                   "lat_bucket{le=\"0.025\"} 3\n"
                                   "lat_bucket{le=\"0.05\"} 3\n"
                                   "lat_bucket{le=\"0.1\"} 3\n"
                                   "lat_bucket{le=\"0.25\"} 3\n"
                                   "lat_bucket{le=\"0.5\"} 3\n"
                                   "lat_bucket{le=\"1\"} 3\n"
                                   "lat_bucket{le=\"2.5\"} 3\n"
                                   "lat_bucket{le=\"10\"} 4\n"
                                   "lat_bucket{le=\"+Inf\"} 5\n"
                                   "lat_sum 20.000102\n"
                                   "lat_count 5\n";

static void observe_render_set(histo *h) {
    histo_observe_us(h, 50);       /* le 5e-05 */
    histo_observe_us(h, 0);        /* le 5e-05 */
    histo_observe_us(h, 51);       /* le 0.0001 */
    histo_observe_us(h, 10000000); /* le 10 */
    histo_observe_us(h, 10000001); /* +Inf */
}

static void test_render_plain(void **state) {
    (void)state;
    histo h = {0};
    observe_render_set(&h);
    buf out = BUF_INIT(0);
    histo_render(&h, "lat", "", &out);
    assert_string_equal(buf_str(&out), render_plain);
    buf_free(&out);
}

static void test_render_labels_appends(void **state) {
    (void)state;
    histo h = {0};
    observe_render_set(&h);
    buf out = BUF_INIT(0);
    buf_puts(&out, "# before\n");
    histo_render(&h, "http_seconds", "route=\"/v1/track\"", &out);
    const char *s = buf_str(&out);
    /* Rendering appends: what was there stays. */
    assert_memory_equal(s, "# before\n", 9);
    s += 9;
    /* Same numbers as the plain rendering, with the labels before le and in braces on sum/count. */
    const char *expect_lines[] = {
        "http_seconds_bucket{route=\"/v1/track\",le=\"5e-05\"} 2\n",
        "http_seconds_bucket{route=\"/v1/track\",le=\"0.0001\"} 3\n",
    };
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(expect_lines[i]);
        assert_memory_equal(s, expect_lines[i], n);
        s += n;
    }
    const char *tail = "http_seconds_bucket{route=\"/v1/track\",le=\"10\"} 4\n"
                       "http_seconds_bucket{route=\"/v1/track\",le=\"+Inf\"} 5\n"
                       "http_seconds_sum{route=\"/v1/track\"} 20.000102\n"
                       "http_seconds_count{route=\"/v1/track\"} 5\n";
    size_t len = strlen(buf_str(&out)), tl = strlen(tail);
    assert_true(len > tl);
    assert_string_equal(buf_str(&out) + len - tl, tail);
    /* 9 + 17 bucket lines + sum + count. */
    size_t lines = 0;
    for (const char *p = buf_str(&out); *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1 + 17 + 2);
    buf_free(&out);
}

static void test_render_empty(void **state) {
    (void)state;
    histo h = {0};
    buf out = BUF_INIT(0);
    histo_render(&h, "e", "", &out);
    const char *s = buf_str(&out);
    assert_non_null(strstr(s, "e_bucket{le=\"5e-05\"} 0\n"));
    assert_non_null(strstr(s, "e_bucket{le=\"+Inf\"} 0\n"));
    size_t len = strlen(s);
    const char *tail = "e_sum 0.000000\ne_count 0\n";
    assert_string_equal(s + len - strlen(tail), tail);
    buf_free(&out);
}

static void test_render_cumulative_monotonic(void **state) {
    (void)state;
    histo h = {0};
    /* One observation per bucket, so cumulative counts are 1, 2, ..., 17. */
    histo_observe_us(&h, 1);
    for (int i = 1; i < HISTO_NBUCKETS; i++)
        histo_observe_us(&h, HISTO_BOUNDS_US[i]);
    histo_observe_us(&h, HISTO_BOUNDS_US[HISTO_NBUCKETS - 1] + 1);
    buf out = BUF_INIT(0);
    histo_render(&h, "m", "", &out);
    const char *p = buf_str(&out);
    for (unsigned long want = 1; want <= HISTO_NBUCKETS + 1; want++) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        const char *sp = nl;
        while (sp > p && sp[-1] != ' ')
            sp--;
        assert_int_equal(strtoul(sp, NULL, 10), want);
        p = nl + 1;
    }
    assert_memory_equal(p, "m_sum ", 6);
    buf_free(&out);
}

static void test_quantile(void **state) {
    (void)state;
    histo h = {0};
    assert_int_equal(histo_quantile_us(&h, 0.5), 0); /* empty */
    assert_int_equal(histo_quantile_us(&h, 1.0), 0);

    for (int i = 0; i < 50; i++)
        histo_observe_us(&h, 40); /* le 50 */
    for (int i = 0; i < 40; i++)
        histo_observe_us(&h, 800); /* le 1000 */
    for (int i = 0; i < 10; i++)
        histo_observe_us(&h, 20000000);                 /* +Inf */
    assert_int_equal(histo_quantile_us(&h, 0.001), 50); /* rounds to rank 0, taken as rank 1 */
    assert_int_equal(histo_quantile_us(&h, 0.5), 50);
    assert_int_equal(histo_quantile_us(&h, 0.51), 1000);
    assert_int_equal(histo_quantile_us(&h, 0.9), 1000);
    assert_int_equal(histo_quantile_us(&h, 0.91), UINT64_MAX); /* in +Inf: no upper bound */
    assert_int_equal(histo_quantile_us(&h, 0.99), UINT64_MAX);
    assert_int_equal(histo_quantile_us(&h, 1.0), UINT64_MAX);

    histo one = {0};
    histo_observe_us(&one, 3000);
    assert_int_equal(histo_quantile_us(&one, 0.01), 5000);
    assert_int_equal(histo_quantile_us(&one, 1.0), 5000);
}

#define NTHREADS 4
#define PER_THREAD 20000

static void *observer(void *arg) {
    histo *h = arg;
    for (int i = 0; i < PER_THREAD; i++)
        histo_observe_us(h, (uint64_t)(i % 3) * 100);
    return NULL;
}

static void test_concurrent_updates(void **state) {
    (void)state;
    histo h = {0};
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, observer, &h), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    /* Per thread: 6667 zeros (le 50), 6667 x 100 us (le 100), 6666 x 200 us (le 250). */
    assert_int_equal(atomic_load(&h.count), NTHREADS * PER_THREAD);
    assert_int_equal(bucket(&h, 0), NTHREADS * 6667);
    assert_int_equal(bucket(&h, 1), NTHREADS * 6667);
    assert_int_equal(bucket(&h, 2), NTHREADS * 6666);
    assert_int_equal(atomic_load(&h.sum_us), NTHREADS * (6667 * 100 + 6666 * 200));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_table),
        cmocka_unit_test(test_bucket_placement),
        cmocka_unit_test(test_count_and_sum),
        cmocka_unit_test(test_render_plain),
        cmocka_unit_test(test_render_labels_appends),
        cmocka_unit_test(test_render_empty),
        cmocka_unit_test(test_render_cumulative_monotonic),
        cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_concurrent_updates),
    };
    return cmocka_run_group_tests_name("histo", tests, NULL, NULL);
}
