#include "http/ratelimit.h"

#include <limits.h>
#include <math.h>

void rl_init(rl_bucket *b, double rate, int64_t now_ms) {
    pthread_mutex_init(&b->lock, NULL);
    b->rate = rate;
    b->tokens = rate;
    b->last_ms = now_ms;
}

void rl_destroy(rl_bucket *b) {
    pthread_mutex_destroy(&b->lock);
}

bool rl_take(rl_bucket *b, double n, int64_t now_ms, int *retry_after_s) {
    if (b->rate <= 0) return true;
    pthread_mutex_lock(&b->lock);
    if (now_ms > b->last_ms) {
        b->tokens = fmin(b->rate, b->tokens + b->rate * (double)(now_ms - b->last_ms) / 1000.0);
        b->last_ms = now_ms;
    }
    bool ok = b->tokens > 0;
    if (ok)
        b->tokens -= n;
    else /* clamped: a tiny rate and a big batch can owe more seconds than an int holds */
        *retry_after_s = (int)fmin(INT_MAX, fmax(1.0, ceil((-b->tokens + 1e-9) / b->rate)));
    pthread_mutex_unlock(&b->lock);
    return ok;
}
