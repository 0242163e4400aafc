#include "util/clock.h"

#include <stdatomic.h>
#include <time.h>

static atomic_bool test_mode;
static _Atomic int64_t test_now_ms;

static int64_t real_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void clock_set_test_mode(int64_t start_ms) {
    atomic_store(&test_now_ms, start_ms ? start_ms : real_now_ms());
    atomic_store(&test_mode, true);
}

bool clock_is_test_mode(void) {
    return atomic_load(&test_mode);
}

int64_t clock_now_ms(void) {
    return atomic_load(&test_mode) ? atomic_load(&test_now_ms) : real_now_ms();
}

bool clock_set_ms(int64_t ms) {
    if (!atomic_load(&test_mode)) return false;
    int64_t cur = atomic_load(&test_now_ms);
    do {
        if (ms < cur) return false;
    } while (!atomic_compare_exchange_weak(&test_now_ms, &cur, ms));
    return true;
}

bool clock_advance_ms(int64_t delta_ms) {
    if (!atomic_load(&test_mode) || delta_ms < 0) return false;
    atomic_fetch_add(&test_now_ms, delta_ms);
    return true;
}

uint64_t clock_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
