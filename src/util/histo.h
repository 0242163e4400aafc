/* histo — a latency histogram with fixed buckets, safe to update from many threads.
 *
 * Buckets are the Prometheus "le" bounds in HISTO_BOUNDS_US (microseconds, roughly x2.5 apart from
 * 50 us to 10 s), which covers an fsync, a request and a slow disk alike. Updates are lock-free
 * atomic increments; readers see each counter atomically (not a consistent snapshot of all of them,
 * which Prometheus does not need). The percentile estimate is for benchmarks and logs. */
#ifndef ENGAGED_HISTO_H
#define ENGAGED_HISTO_H

#include <stdatomic.h>
#include <stdint.h>

#include "util/buf.h"

#define HISTO_NBUCKETS 16

typedef struct histo {
    _Atomic uint64_t buckets[HISTO_NBUCKETS + 1]; /* the last one is +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
} histo;

extern const uint64_t HISTO_BOUNDS_US[HISTO_NBUCKETS];

void histo_observe_us(histo *h, uint64_t us);
/* Appends the Prometheus text lines of h (name_bucket{le=...}, name_sum in seconds, name_count).
 * labels is "" or 'route="/v1/track"' without braces. */
void histo_render(const histo *h, const char *name, const char *labels, buf *out);
/* The upper bound, in microseconds, of the bucket holding quantile q (0 < q <= 1); 0 when empty. */
uint64_t histo_quantile_us(const histo *h, double q);

#endif
