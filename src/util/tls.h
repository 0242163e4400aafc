/* tls — one object per thread, made on first use and freed when the thread exits.
 *
 * For scratch memory that queries reuse (hash tables and vectors that keep their size): a server
 * answers thousands of queries a second on a few threads, and building that memory afresh for
 * each query costs. Declare one slot per kind of object, with static storage:
 *
 *     static tls_slot slot = TLS_SLOT(make, destroy);
 *     thing *t = tls_get(&slot);
 *
 * tls_get() returns the calling thread's object, making it with make() the first time; destroy()
 * frees it when the thread exits. NULL only when make() returns NULL (out of memory); the next
 * call tries again. Thread-safe; after the first call per slot, one pthread_getspecific(). */
#ifndef ENGAGED_TLS_H
#define ENGAGED_TLS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef struct tls_slot {
    void *(*make)(void);
    void (*destroy)(void *);
    atomic_bool ready; /* key has been created */
    pthread_key_t key;
} tls_slot;

#define TLS_SLOT(make_fn, destroy_fn)                                                              \
    { .make = (make_fn), .destroy = (destroy_fn) }

void *tls_get(tls_slot *s);

#endif
