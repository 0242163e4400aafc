#include "store/pindex.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/vec.h"

typedef struct person {
    uint64_t hash; /* of kind and id; 0 marks a free slot */
    char *id;      /* kind byte, then the id, NUL-terminated */
    size_t len;    /* of the id */
    int64_t *seqs;
    size_t n, alloc;
} person;

struct pindex {
    pthread_rwlock_t lock;
    person *slots;
    size_t mask; /* capacity - 1, a power of two */
    size_t count;
    size_t bytes;
};

pindex *pindex_new(void) {
    pindex *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->slots = calloc(1024, sizeof *p->slots);
    if (!p->slots) {
        free(p);
        return NULL;
    }
    p->mask = 1023;
    p->bytes = 1024 * sizeof *p->slots;
    pthread_rwlock_init(&p->lock, NULL);
    return p;
}

void pindex_free(pindex *p) {
    if (!p) return;
    for (size_t i = 0; i <= p->mask; i++) {
        free(p->slots[i].id);
        free(p->slots[i].seqs);
    }
    free(p->slots);
    pthread_rwlock_destroy(&p->lock);
    free(p);
}

static uint64_t key_hash(pindex_kind kind, const char *id, size_t len) {
    uint64_t h = hash64(id, len) ^ (kind == PINDEX_ANON ? 0x9e3779b97f4a7c15ull : 0);
    return h ? h : 1; /* 0 means free */
}

static person *find(const pindex *p, uint64_t h, pindex_kind kind, const char *id, size_t len) {
    for (size_t i = h & p->mask; p->slots[i].hash; i = (i + 1) & p->mask) {
        person *e = &p->slots[i];
        if (e->hash == h && e->len == len && e->id[0] == (char)kind &&
            memcmp(e->id + 1, id, len) == 0)
            return e;
    }
    return NULL;
}

static int grow_table(pindex *p) {
    size_t cap = (p->mask + 1) * 2;
    person *n = calloc(cap, sizeof *n);
    if (!n) return -1;
    for (size_t i = 0; i <= p->mask; i++) {
        if (!p->slots[i].hash) continue;
        size_t j = p->slots[i].hash & (cap - 1);
        while (n[j].hash)
            j = (j + 1) & (cap - 1);
        n[j] = p->slots[i];
    }
    free(p->slots);
    p->bytes += (cap - (p->mask + 1)) * sizeof *n;
    p->slots = n;
    p->mask = cap - 1;
    return 0;
}

/* pindex_add() with the hash computed and the lock held. */
static int add_locked(pindex *p, uint64_t h, pindex_kind kind, const char *id, size_t len,
                      int64_t seq) {
    int rc = -1;
    person *e = find(p, h, kind, id, len);
    if (!e) {
        if ((p->count + 1) * 4 > (p->mask + 1) * 3 && grow_table(p)) goto out;
        size_t i = h & p->mask;
        while (p->slots[i].hash)
            i = (i + 1) & p->mask;
        e = &p->slots[i];
        char *copy = malloc(len + 2);
        if (!copy) goto out;
        copy[0] = (char)kind;
        memcpy(copy + 1, id, len);
        copy[len + 1] = '\0';
        *e = (person){.hash = h, .id = copy, .len = len};
        p->count++;
        p->bytes += len + 2;
    }
    size_t before = e->alloc;
    if (vec_reserve((void **)&e->seqs, &e->alloc, e->n + 1, sizeof *e->seqs)) goto out;
    p->bytes += (e->alloc - before) * sizeof *e->seqs;
    e->seqs[e->n++] = seq;
    rc = 0;
out:
    return rc;
}

int pindex_add(pindex *p, pindex_kind kind, const char *id, size_t len, int64_t seq) {
    uint64_t h = key_hash(kind, id, len);
    pthread_rwlock_wrlock(&p->lock);
    int rc = add_locked(p, h, kind, id, len, seq);
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

/* How many entries ahead pindex_add_many() fetches a slot; its person's id and seqs are fetched
 * half as far ahead, once the slot has arrived. */
#define FETCH_AHEAD 8

/* Fetches the id and the next seq's place of the person in h's home slot, if it is that person's
 * (it usually is: the table is at most 3/4 full). Reads the slot, fetched earlier. */
static void fetch_person(const pindex *p, uint64_t h) {
    const person *e = &p->slots[h & p->mask];
    if (e->hash != h) return;
    __builtin_prefetch(e->id);
    if (e->n < e->alloc) __builtin_prefetch(e->seqs + e->n, 1);
}

int pindex_add_many(pindex *p, pindex_entry *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        v[i].hash = key_hash(v[i].kind, v[i].id, v[i].len);
    pthread_rwlock_wrlock(&p->lock);
    for (size_t i = 0; i < n && i < FETCH_AHEAD; i++)
        __builtin_prefetch(&p->slots[v[i].hash & p->mask]);
    for (size_t i = 0; i < n && i < FETCH_AHEAD / 2; i++)
        fetch_person(p, v[i].hash);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (i + FETCH_AHEAD < n) __builtin_prefetch(&p->slots[v[i + FETCH_AHEAD].hash & p->mask]);
        if (i + FETCH_AHEAD / 2 < n) fetch_person(p, v[i + FETCH_AHEAD / 2].hash);
        rc = add_locked(p, v[i].hash, v[i].kind, v[i].id, v[i].len, v[i].seq);
    }
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

size_t pindex_get(pindex *p, pindex_kind kind, const char *id, size_t len, int64_t after,
                  int64_t *out, size_t max) {
    size_t got = 0;
    pthread_rwlock_rdlock(&p->lock);
    const person *e = find(p, key_hash(kind, id, len), kind, id, len);
    if (e) {
        size_t lo = 0, hi = e->n; /* the first seq greater than after */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (e->seqs[mid] <= after)
                lo = mid + 1;
            else
                hi = mid;
        }
        got = e->n - lo < max ? e->n - lo : max;
        memcpy(out, e->seqs + lo, got * sizeof *out);
    }
    pthread_rwlock_unlock(&p->lock);
    return got;
}

size_t pindex_people(pindex *p) {
    pthread_rwlock_rdlock(&p->lock);
    size_t n = p->count;
    pthread_rwlock_unlock(&p->lock);
    return n;
}

size_t pindex_bytes(pindex *p) {
    pthread_rwlock_rdlock(&p->lock);
    size_t n = p->bytes + sizeof *p;
    pthread_rwlock_unlock(&p->lock);
    return n;
}
