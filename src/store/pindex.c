#include "store/pindex.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/pages.h"
#include "util/vec.h"

typedef struct person {
    uint64_t hash; /* of kind and id; 0 marks a free slot */
    char *id;      /* kind byte, then the id, NUL-terminated */
    size_t len;    /* of the id */
    int64_t *seqs;
    size_t n, alloc;
} person;

/* Slots of the old table moved per add. Growth starts when the tables hold 3/4 of the current
 * table, into one twice its size, and ends after old capacity / MOVE_PER_ADD adds, by when the
 * new table is at most (3/4 + 1/8) / 2 full: it never has to grow while the old one still empties.
 */
#define MOVE_PER_ADD 8

/* The moved part of the old table is given back in pieces of this size. */
#define RELEASE_BYTES (2u << 20)

/* Growing rebuilt the table at once, in the committer, with every request waiting on it: 13-23 ms
 * at 100,000 people (docs/benchmarks.md), and it grows with the index. As in dedup.c, a grown
 * table now takes new people at once while the previous one is moved into it MOVE_PER_ADD slots
 * per add (and more when the committer is idle: pindex_step()), both searched meanwhile. */
struct pindex {
    pthread_rwlock_t lock;
    person *slots;
    size_t mask; /* capacity - 1, a power of two */
    size_t count;
    person *old;                        /* the table being emptied into slots, or NULL */
    size_t old_mask, old_count, cursor; /* old's slots below cursor have been moved */
    size_t released;                    /* old's slots below this have been given back */
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
    for (size_t i = p->cursor; p->old && i <= p->old_mask; i++) {
        free(p->old[i].id);
        free(p->old[i].seqs);
    }
    free(p->old);
    pthread_rwlock_destroy(&p->lock);
    free(p);
}

static uint64_t key_hash(pindex_kind kind, const char *id, size_t len) {
    uint64_t h = hash64(id, len) ^ (kind == PINDEX_ANON ? 0x9e3779b97f4a7c15ull : 0);
    return h ? h : 1; /* 0 means free */
}

static bool same(const person *e, uint64_t h, pindex_kind kind, const char *id, size_t len) {
    return e->hash == h && e->len == len && e->id[0] == (char)kind &&
           memcmp(e->id + 1, id, len) == 0;
}

/* Probing the old table starts at the cursor when its home is below it: every slot there has
 * moved (and is never read again: its person is found in the current table), and once given back
 * reads as free, which would cut a run short. A person not yet moved is in its home's run at or
 * after the cursor, so it is found from there; n bounds the walk to the slots not yet moved. (As
 * dedup.c does.) */
static size_t old_skip(const pindex *p, size_t i) {
    return i < p->cursor ? p->cursor : i;
}

static person *find(const pindex *p, uint64_t h, pindex_kind kind, const char *id, size_t len) {
    for (size_t i = h & p->mask; p->slots[i].hash; i = (i + 1) & p->mask)
        if (same(&p->slots[i], h, kind, id, len)) return &p->slots[i];
    if (!p->old) return NULL;
    for (size_t n = p->old_mask + 1 - p->cursor, i = old_skip(p, h & p->old_mask);
         n-- > 0 && p->old[i].hash; i = old_skip(p, (i + 1) & p->old_mask))
        if (same(&p->old[i], h, kind, id, len)) return &p->old[i];
    return NULL;
}

static void insert_slot(person *slots, size_t mask, const person *e) {
    size_t i = e->hash & mask;
    while (slots[i].hash)
        i = (i + 1) & mask;
    slots[i] = *e;
}

/* Moves up to n slots of the old table into the current one, and frees the old table once it is
 * empty; its moved part's pages are given back as the move goes (freeing a table of hundreds of
 * megabytes at once is itself a stop). */
static void move_some(pindex *p, size_t n) {
    if (!p->old) return;
    size_t cap = p->old_mask + 1, end = n < cap - p->cursor ? p->cursor + n : cap;
    for (; p->cursor < end; p->cursor++) {
        person *e = &p->old[p->cursor];
        if (!e->hash) continue;
        insert_slot(p->slots, p->mask, e);
        p->count++;
        p->old_count--;
    }
    if (p->cursor == cap) {
        free(p->old);
        p->bytes -= cap * sizeof *p->old;
        p->old = NULL;
        p->old_count = p->cursor = p->released = 0;
    } else if ((p->cursor - p->released) * sizeof *p->old >= RELEASE_BYTES) {
        pages_release(p->old + p->released, p->old + p->cursor);
        p->released = p->cursor;
    }
}

/* Makes an empty table of twice the current one's size current, the current one to be emptied
 * into it. */
static int grow_table(pindex *p) {
    size_t cap = (p->mask + 1) * 2;
    person *n = calloc(cap, sizeof *n); /* zeroed pages: nothing is written up front */
    if (!n) return -1;
    move_some(p, SIZE_MAX); /* a move under way ends first: never the case (MOVE_PER_ADD) */
    p->old = p->slots;
    p->old_mask = p->mask;
    p->old_count = p->count;
    p->cursor = p->released = 0;
    p->slots = n;
    p->mask = cap - 1;
    p->count = 0;
    p->bytes += cap * sizeof *n;
    return 0;
}

/* pindex_add() with the hash computed and the lock held. */
static int add_locked(pindex *p, uint64_t h, pindex_kind kind, const char *id, size_t len,
                      int64_t seq) {
    int rc = -1;
    move_some(p, MOVE_PER_ADD);
    person *e = find(p, h, kind, id, len);
    if (!e) {
        if ((p->count + p->old_count + 1) * 4 > (p->mask + 1) * 3 && grow_table(p)) goto out;
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
    /* Entry i's slot is fetched at step i, its person at step i + FETCH_AHEAD / 2, and it is added
     * at step i + FETCH_AHEAD. */
    int rc = 0;
    for (size_t i = 0; i < n + FETCH_AHEAD && !rc; i++) {
        if (i < n) __builtin_prefetch(&p->slots[v[i].hash & p->mask]);
        size_t j = i - FETCH_AHEAD / 2, k = i - FETCH_AHEAD;
        if (i >= FETCH_AHEAD / 2 && j < n) fetch_person(p, v[j].hash);
        if (i >= FETCH_AHEAD && k < n)
            rc = add_locked(p, v[k].hash, v[k].kind, v[k].id, v[k].len, v[k].seq);
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

bool pindex_step(pindex *p, size_t n) {
    pthread_rwlock_wrlock(&p->lock);
    bool moving = p->old != NULL;
    move_some(p, n);
    pthread_rwlock_unlock(&p->lock);
    return moving;
}

size_t pindex_people(pindex *p) {
    pthread_rwlock_rdlock(&p->lock);
    size_t n = p->count + p->old_count;
    pthread_rwlock_unlock(&p->lock);
    return n;
}

size_t pindex_bytes(pindex *p) {
    pthread_rwlock_rdlock(&p->lock);
    size_t n = p->bytes + sizeof *p;
    pthread_rwlock_unlock(&p->lock);
    return n;
}
