/* reco_bench — the cost of one GET /v1/recommendations answer, in process, without HTTP.
 *
 *   build/bench_reco DATA_DIR [REQUESTS] [USERS] [PRODUCTS]   (defaults 20000, 1000000, 100000)
 *
 * Opens a store (one that bench/run.sh reco, or `engaged import` of bench/gen_reco.awk and
 * gen_products.awk, built), replays it into the engine as the server does, then asks
 * eng_recommend() for REQUESTS product pages: user-N on sku-M, N uniform, M with the generator's
 * heavy head, limit 10 — the same requests bench/reco.lua sends. Each call is timed with the
 * thread's CPU clock, so other jobs on the machine move the figures far less than they move a
 * throughput. Prints one JSON line: CPU µs per answer (mean, p50, p99) and the answer's mean size.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_rand.h"
#include "c360/engine.h"
#include "util/buf.h"
#include "util/log.h"

static double uniform(void) {
    return (double)(next_rand() >> 11) / 9007199254740992.0;
}

static int64_t thread_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR [REQUESTS] [USERS] [PRODUCTS]\n", argv[0]);
        return 2;
    }
    long n = argc > 2 ? atol(argv[2]) : 20000;
    long users = argc > 3 ? atol(argv[3]) : 1000000;
    long products = argc > 4 ? atol(argv[4]) : 100000;
    if (n <= 0 || users <= 0 || products <= 0) return 2;
    log_set_level(LOG_WARN);
    char err[256];
    store *s = store_open(argv[1], err, sizeof err);
    engine *e = s ? eng_open(s, &(eng_opts){0}, err, sizeof err) : NULL;
    if (!e) {
        fprintf(stderr, "bench_reco: %s\n", err);
        return 1;
    }
    int64_t *ns = malloc((size_t)n * sizeof *ns);
    if (!ns) return 1;
    buf b = BUF_INIT(0);
    size_t bytes = 0;
    int64_t now = (int64_t)time(NULL) * 1000;
    for (long i = 0; i < n; i++) {
        char user[32], product[32];
        snprintf(user, sizeof user, "user-%" PRIu64, next_rand() % (uint64_t)users);
        snprintf(product, sizeof product, "sku-%06ld", (long)(products * pow(uniform(), 3)));
        json_t *args =
            json_pack("{s:s, s:s, s:s}", "user_id", user, "product_id", product, "limit", "10");
        eng_error ee;
        buf_reset(&b);
        int64_t t0 = thread_ns();
        int rc = eng_recommend(e, args, now, &b, &ee);
        ns[i] = thread_ns() - t0;
        json_decref(args);
        if (rc) {
            fprintf(stderr, "bench_reco: %s %s: %s\n", user, product, ee.ev.message);
            return 1;
        }
        bytes += b.len;
    }
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += (double)ns[i];
    qsort(ns, (size_t)n, sizeof *ns, cmp_i64);
    printf("{\"requests\":%ld,\"cpu_us_mean\":%.1f,\"cpu_us_p50\":%.1f,\"cpu_us_p99\":%.1f,"
           "\"answer_bytes_mean\":%.0f}\n",
           n, sum / (double)n / 1000, (double)ns[n / 2] / 1000, (double)ns[n * 99 / 100] / 1000,
           (double)bytes / (double)n);
    buf_free(&b);
    free(ns);
    eng_close(e);
    store_close(s);
    return 0;
}
