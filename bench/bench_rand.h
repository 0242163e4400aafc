/* bench_rand — the in-process benchmarks' generator: xorshift64 from one fixed seed, so that every
 * run draws the same shoppers, products and requests. One sequence per program (static state). */
#ifndef ENGAGED_BENCH_RAND_H
#define ENGAGED_BENCH_RAND_H

#include <stdint.h>

static uint64_t bench_rng = 0x9E3779B97F4A7C15ull;

static inline uint64_t next_rand(void) {
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return bench_rng;
}

#endif
