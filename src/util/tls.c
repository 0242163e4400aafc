#include "util/tls.h"

#include <stdlib.h>

/* Serialises the creation of keys: each slot's once, without a pthread_once per slot. */
static pthread_mutex_t key_lock = PTHREAD_MUTEX_INITIALIZER;

void *tls_get(tls_slot *s) {
    if (!atomic_load_explicit(&s->ready, memory_order_acquire)) {
        pthread_mutex_lock(&key_lock);
        if (!atomic_load_explicit(&s->ready, memory_order_relaxed)) {
            /* Keys are few (PTHREAD_KEYS_MAX is 1,024 on Linux) and made once per slot. */
            if (pthread_key_create(&s->key, s->destroy)) abort();
            atomic_store_explicit(&s->ready, true, memory_order_release);
        }
        pthread_mutex_unlock(&key_lock);
    }
    void *x = pthread_getspecific(s->key);
    if (!x && (x = s->make()) && pthread_setspecific(s->key, x)) {
        s->destroy(x);
        x = NULL;
    }
    return x;
}
