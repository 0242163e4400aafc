#include "store/dedup.h"

#include <stdlib.h>

/* Slots with seq == EMPTY are free. Deletion uses backward-shift (no tombstones), so lookups stay
 * short however many ids come and go. */
#define EMPTY (-1)

typedef struct slot {
    uint64_t hash;
    int64_t seq;
} slot;

struct dedup {
    slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
    size_t count;
};

static slot *alloc_slots(size_t cap) {
    slot *s = malloc(cap * sizeof *s);
    if (s)
        for (size_t i = 0; i < cap; i++)
            s[i].seq = EMPTY;
    return s;
}

dedup *dedup_new(void) {
    dedup *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->slots = alloc_slots(1024);
    if (!d->slots) {
        free(d);
        return NULL;
    }
    d->mask = 1023;
    return d;
}

void dedup_free(dedup *d) {
    if (!d) return;
    free(d->slots);
    free(d);
}

static void insert_slot(slot *slots, size_t mask, uint64_t hash, int64_t seq) {
    size_t i = hash & mask;
    while (slots[i].seq != EMPTY)
        i = (i + 1) & mask;
    slots[i].hash = hash;
    slots[i].seq = seq;
}

static int resize(dedup *d, size_t cap) {
    slot *n = alloc_slots(cap);
    if (!n) return -1;
    for (size_t i = 0; i <= d->mask; i++)
        if (d->slots[i].seq != EMPTY) insert_slot(n, cap - 1, d->slots[i].hash, d->slots[i].seq);
    free(d->slots);
    d->slots = n;
    d->mask = cap - 1;
    return 0;
}

int dedup_reserve(dedup *d, size_t n) {
    size_t cap = d->mask + 1;
    while (n * 4 > cap * 3)
        cap *= 2;
    return cap == d->mask + 1 ? 0 : resize(d, cap);
}

int dedup_add(dedup *d, uint64_t hash, int64_t seq) {
    if ((d->count + 1) * 4 > (d->mask + 1) * 3 && resize(d, (d->mask + 1) * 2)) return -1;
    insert_slot(d->slots, d->mask, hash, seq);
    d->count++;
    return 0;
}

int dedup_find(const dedup *d, uint64_t hash, int (*match)(int64_t seq, void *arg), void *arg) {
    for (size_t i = hash & d->mask; d->slots[i].seq != EMPTY; i = (i + 1) & d->mask) {
        if (d->slots[i].hash != hash) continue;
        int r = match(d->slots[i].seq, arg);
        if (r) return r;
    }
    return 0;
}

void dedup_prefetch(const dedup *d, uint64_t hash) {
    __builtin_prefetch(&d->slots[hash & d->mask]);
}

/* Empties slot i and shifts later members of its probe run back, keeping every run contiguous. */
static void delete_at(dedup *d, size_t i) {
    size_t j = i;
    for (;;) {
        d->slots[i].seq = EMPTY;
        for (;;) {
            j = (j + 1) & d->mask;
            if (d->slots[j].seq == EMPTY) {
                d->count--;
                return;
            }
            size_t home = d->slots[j].hash & d->mask;
            /* Move j back to i unless its home lies cyclically in (i, j]. */
            if (i <= j ? (i < home && home <= j) : (i < home || home <= j)) continue;
            break;
        }
        d->slots[i] = d->slots[j];
        i = j;
    }
}

void dedup_remove(dedup *d, uint64_t hash, int64_t seq) {
    for (size_t i = hash & d->mask; d->slots[i].seq != EMPTY; i = (i + 1) & d->mask) {
        if (d->slots[i].hash == hash && d->slots[i].seq == seq) {
            delete_at(d, i);
            return;
        }
    }
}

void dedup_prune(dedup *d, int64_t min_seq) {
    /* Rebuilding is simpler than deleting in place and costs the same O(capacity). */
    size_t cap = d->mask + 1;
    slot *old = d->slots;
    slot *n = alloc_slots(cap);
    if (!n) return; /* keep the larger set: pruning is an optimisation, never a correctness need */
    size_t kept = 0;
    for (size_t i = 0; i < cap; i++)
        if (old[i].seq != EMPTY && old[i].seq >= min_seq) {
            insert_slot(n, cap - 1, old[i].hash, old[i].seq);
            kept++;
        }
    free(old);
    d->slots = n;
    d->count = kept;
}

size_t dedup_count(const dedup *d) {
    return d->count;
}

size_t dedup_bytes(const dedup *d) {
    return (d->mask + 1) * sizeof(slot) + sizeof *d;
}
