/* rfeed — see rfeed.h. A detached feed writes each call as a few 32-bit words into the open chunk:
 *
 *     op | action << 8 | n << 16,  who,  item (or into),  t_ms low,  t_ms high,  n ids
 *
 * and hands full chunks to its thread through a queue under one lock. Chunks are reused: the
 * thread gives each back once made, so a long replay allocates RFEED_CHUNKS of them at most, and
 * rfeed_join() frees them. */
#include "reco/rfeed.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define CHUNK_WORDS (64 * 1024)
#define OP_WORDS 5 /* the fixed part of a write */
/* rfeed_flush() hands writes over once this many words have gathered (about a hundred writes, a
 * batch request's), not for every single-event request: waking the thread tens of thousands of
 * times a second cost more than the learning it moved. */
#define FLUSH_WORDS 1024

enum { OP_OBSERVE = 1, OP_REMEMBER, OP_ORDER, OP_SET_GROUPS, OP_MERGE, OP_FORGET };

typedef struct chunk {
    struct chunk *next;
    size_t len; /* words used */
    uint32_t w[CHUNK_WORDS];
} chunk;

struct rfeed {
    reco *reco;
    bool detached;  /* the caller's own view: only the writing thread reads or changes it */
    chunk *open;    /* being filled by the writer; NULL until the first write */
    size_t nchunks; /* allocated, at most RFEED_CHUNKS; under lock */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t filled, emptied, idle;
    chunk *head, *tail; /* full, for the thread; under lock */
    chunk *spare;       /* made, for the writer; under lock */
    bool busy;          /* the thread is making a chunk; under lock */
    bool stop;          /* under lock */
};

rfeed *rfeed_new(reco *r) {
    rfeed *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->reco = r;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->filled, NULL);
    pthread_cond_init(&f->emptied, NULL);
    pthread_cond_init(&f->idle, NULL);
    return f;
}

static void free_list(chunk *c) {
    while (c) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
}

void rfeed_free(rfeed *f) {
    if (!f) return;
    rfeed_join(f);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->filled);
    pthread_cond_destroy(&f->emptied);
    pthread_cond_destroy(&f->idle);
    free(f);
}

/* ---- The feed's thread ---- */

static void fatal(const char *what) {
    log_error("rfeed: out of memory %s; stopping", what);
    abort();
}

static void make(reco *r, const uint32_t *w) {
    unsigned op = w[0] & 0xff;
    reco_action action = (reco_action)(w[0] >> 8 & 0xff);
    size_t n = w[0] >> 16;
    int64_t t_ms = (int64_t)((uint64_t)w[3] | (uint64_t)w[4] << 32);
    const uint32_t *ids = w + OP_WORDS;
    switch (op) {
    case OP_OBSERVE:
        if (reco_observe(r, w[1], action, w[2], ids, n, t_ms) == RECO_NOMEM)
            fatal("learning an interaction");
        break;
    case OP_REMEMBER:
        if (reco_remember(r, w[1], action, w[2], t_ms) == RECO_NOMEM) fatal("rebuilding a history");
        break;
    case OP_ORDER:
        if (reco_order(r, w[1], ids, n) == RECO_NOMEM) fatal("learning an order");
        break;
    case OP_SET_GROUPS:
        if (reco_set_groups(r, w[1], ids, n) == RECO_NOMEM) fatal("recording a customer's groups");
        break;
    case OP_MERGE:
        if (reco_merge(r, w[1], w[2]) == RECO_NOMEM) fatal("merging histories");
        break;
    case OP_FORGET:
        reco_forget(r, w[1]);
        break;
    }
}

static void *feed_main(void *arg) {
    rfeed *f = arg;
    pthread_setname_np(pthread_self(), "engaged-rfeed"); /* for top -H, perf and gdb */
    pthread_mutex_lock(&f->lock);
    for (;;) {
        while (!f->head && !f->stop)
            pthread_cond_wait(&f->filled, &f->lock);
        chunk *c = f->head;
        if (!c) break; /* stopped, and every chunk made */
        if (!(f->head = c->next)) f->tail = NULL;
        f->busy = true;
        pthread_mutex_unlock(&f->lock);
        for (size_t i = 0; i < c->len; i += OP_WORDS + (c->w[i] >> 16))
            make(f->reco, c->w + i);
        pthread_mutex_lock(&f->lock);
        c->next = f->spare; /* room() empties it when it takes it again */
        f->spare = c;
        f->busy = false;
        pthread_cond_signal(&f->emptied);
        if (!f->head) pthread_cond_broadcast(&f->idle);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/* ---- The writer ---- */

int rfeed_detach(rfeed *f) {
    if (f->detached) return 0;
    f->stop = false;
    if (pthread_create(&f->thread, NULL, feed_main, f)) return -1;
    f->detached = true;
    return 0;
}

/* Hands the open chunk, if any, to the thread; under lock. */
static void hand_over_locked(rfeed *f) {
    chunk *c = f->open;
    f->open = NULL;
    if (!c) return;
    if (c->len == 0) {
        c->next = f->spare;
        f->spare = c;
    } else {
        c->next = NULL;
        if (f->tail)
            f->tail->next = c;
        else
            f->head = c;
        f->tail = c;
        pthread_cond_signal(&f->filled);
    }
}

static void hand_over(rfeed *f) {
    pthread_mutex_lock(&f->lock);
    hand_over_locked(f);
    pthread_mutex_unlock(&f->lock);
}

void rfeed_flush(rfeed *f) {
    if (f->open && f->open->len >= FLUSH_WORDS) hand_over(f);
}

void rfeed_wait(rfeed *f) {
    pthread_mutex_lock(&f->lock);
    hand_over_locked(f); /* the caller's lock keeps the writer out */
    while (f->head || f->busy)
        pthread_cond_wait(&f->idle, &f->lock);
    pthread_mutex_unlock(&f->lock);
}

void rfeed_join(rfeed *f) {
    if (!f->detached) return;
    hand_over(f);
    pthread_mutex_lock(&f->lock);
    f->stop = true;
    pthread_cond_signal(&f->filled);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->thread, NULL);
    f->detached = false;
    free_list(f->spare); /* every chunk is back: made and given back */
    f->spare = NULL;
    f->nchunks = 0;
}

/* Room for a write of n ids in the open chunk: a spare one, a new one, or the next the thread
 * gives back. NULL when out of memory. */
static uint32_t *room(rfeed *f, size_t n) {
    if (f->open && f->open->len + OP_WORDS + n <= CHUNK_WORDS) return f->open->w + f->open->len;
    hand_over(f);
    pthread_mutex_lock(&f->lock);
    chunk *c = NULL;
    for (;;) {
        if ((c = f->spare)) {
            f->spare = c->next;
            break;
        }
        if (f->nchunks < RFEED_CHUNKS) {
            if ((c = malloc(sizeof *c))) f->nchunks++;
            break;
        }
        pthread_cond_wait(&f->emptied, &f->lock);
    }
    pthread_mutex_unlock(&f->lock);
    if (!c) return NULL;
    c->len = 0;
    f->open = c;
    return c->w;
}

/* Queues one write; ids may be NULL when n is 0. */
static int put(rfeed *f, unsigned op, reco_action action, uint32_t who, uint32_t item, int64_t t_ms,
               const uint32_t *ids, size_t n) {
    uint32_t *w = room(f, n);
    if (!w) return RECO_NOMEM;
    w[0] = op | (uint32_t)action << 8 | (uint32_t)n << 16;
    w[1] = who;
    w[2] = item;
    w[3] = (uint32_t)(uint64_t)t_ms;
    w[4] = (uint32_t)((uint64_t)t_ms >> 32);
    if (n) memcpy(w + OP_WORDS, ids, n * sizeof *ids);
    f->open->len += OP_WORDS + n;
    return RECO_OK;
}

int rfeed_observe(rfeed *f, uint32_t who, reco_action action, uint32_t item, const uint32_t *groups,
                  size_t ngroups, int64_t t_ms) {
    if (ngroups > RFEED_MAX_IDS) return RECO_INVALID;
    if (!f->detached) return reco_observe(f->reco, who, action, item, groups, ngroups, t_ms);
    return put(f, OP_OBSERVE, action, who, item, t_ms, groups, ngroups);
}

int rfeed_remember(rfeed *f, uint32_t who, reco_action action, uint32_t item, int64_t t_ms) {
    if (!f->detached) return reco_remember(f->reco, who, action, item, t_ms);
    return put(f, OP_REMEMBER, action, who, item, t_ms, NULL, 0);
}

int rfeed_order(rfeed *f, uint32_t who, const uint32_t *items, size_t n) {
    if (n > RFEED_MAX_IDS) return RECO_INVALID;
    if (!f->detached) return reco_order(f->reco, who, items, n);
    return put(f, OP_ORDER, 0, who, 0, 0, items, n);
}

int rfeed_set_groups(rfeed *f, uint32_t who, const uint32_t *groups, size_t n) {
    if (n > RFEED_MAX_IDS) return RECO_INVALID;
    if (!f->detached) return reco_set_groups(f->reco, who, groups, n);
    return put(f, OP_SET_GROUPS, 0, who, 0, 0, groups, n);
}

int rfeed_merge(rfeed *f, uint32_t from, uint32_t into) {
    if (!f->detached) return reco_merge(f->reco, from, into);
    return put(f, OP_MERGE, 0, from, into, 0, NULL, 0);
}

void rfeed_forget(rfeed *f, uint32_t who) {
    if (!f->detached) {
        reco_forget(f->reco, who);
        return;
    }
    /* Forgetting allocates nothing when direct; queued, a queue that cannot grow must not lose
     * an erasure. */
    if (put(f, OP_FORGET, 0, who, 0, 0, NULL, 0) != RECO_OK) {
        rfeed_join(f);
        reco_forget(f->reco, who);
    }
}
