#include "util/histo.h"

const uint64_t HISTO_BOUNDS_US[HISTO_NBUCKETS] = {50,     100,     250,     500,     1000,   2500,
                                                  5000,   10000,   25000,   50000,   100000, 250000,
                                                  500000, 1000000, 2500000, 10000000};

void histo_observe_us(histo *h, uint64_t us) {
    int i = 0;
    while (i < HISTO_NBUCKETS && us > HISTO_BOUNDS_US[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

void histo_render(const histo *h, const char *name, const char *labels, buf *out) {
    const char *sep = *labels ? "," : "";
    uint64_t cum = 0;
    for (int i = 0; i < HISTO_NBUCKETS; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                   (double)HISTO_BOUNDS_US[i] / 1e6, (unsigned long long)cum);
    }
    cum += atomic_load_explicit(&h->buckets[HISTO_NBUCKETS], memory_order_relaxed);
    buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
               (unsigned long long)cum);
    const char *open = *labels ? "{" : "", *close = *labels ? "}" : "";
    buf_printf(out, "%s_sum%s%s%s %.6f\n", name, open, labels, close,
               (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6);
    buf_printf(out, "%s_count%s%s%s %llu\n", name, open, labels, close, (unsigned long long)cum);
}

uint64_t histo_quantile_us(const histo *h, double q) {
    uint64_t total = 0;
    for (int i = 0; i <= HISTO_NBUCKETS; i++)
        total += atomic_load(&h->buckets[i]);
    if (!total) return 0;
    uint64_t want = (uint64_t)(q * (double)total + 0.5), cum = 0;
    if (want == 0) want = 1;
    for (int i = 0; i < HISTO_NBUCKETS; i++) {
        cum += atomic_load(&h->buckets[i]);
        if (cum >= want) return HISTO_BOUNDS_US[i];
    }
    return UINT64_MAX;
}
