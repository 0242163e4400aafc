/* ratelimit — a token bucket per API key, counted in events.
 *
 * A key may send `rate` events per second on average and up to `rate` at once (one second of
 * burst). A request is admitted whenever the bucket is not in debt, and its whole event count is
 * taken even if that drives the bucket negative: so a batch larger than the burst is still
 * possible, and the debt is what the next request waits for. Retry-After is the time until the debt
 * is repaid.
 *
 * Thread-safe (a mutex per bucket; held for a few instructions). */
#ifndef ENGAGED_RATELIMIT_H
#define ENGAGED_RATELIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct rl_bucket {
    pthread_mutex_t lock;
    double rate; /* events per second; <= 0: unlimited */
    double tokens;
    int64_t last_ms;
} rl_bucket;

void rl_init(rl_bucket *b, double rate, int64_t now_ms);
void rl_destroy(rl_bucket *b);
/* Takes n events at now_ms. Returns true if admitted; otherwise false with *retry_after_s set to
 * the whole seconds (>= 1) after which a request will be admitted again. */
bool rl_take(rl_bucket *b, double n, int64_t now_ms, int *retry_after_s);

#endif
