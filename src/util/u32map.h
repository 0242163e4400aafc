/* u32map — a uint32 -> uint32 open-addressing table for scratch work (per query, per request).
 *
 * Keys are any uint32 but UINT32_MAX (the empty mark). Linear probing at load <= 1/2; reset()
 * empties the table for reuse without freeing, so a thread that runs many queries allocates once.
 * No deletion: scratch tables are emptied whole. Returns 0 / -1 (out of memory; the table is then
 * unchanged, or, for reset, empty and still usable after a later successful reset). */
#ifndef ENGAGED_U32MAP_H
#define ENGAGED_U32MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define U32MAP_EMPTY UINT32_MAX

typedef struct u32map {
    uint32_t *keys, *vals;
    uint32_t cap; /* a power of two */
    uint32_t n;
    uint32_t alloc;
} u32map;

/* A fixed mixer (xor-shift-multiply rounds), so results are reproducible run to run. */
static inline uint32_t u32map_hash(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* Empties h and sizes it for about `expect` keys. */
static inline int u32map_reset(u32map *h, size_t expect) {
    size_t cap = 16;
    while (cap < expect * 2)
        cap *= 2;
    if (cap > (1u << 30)) return -1;
    if (cap > h->alloc) {
        uint32_t *k = realloc(h->keys, cap * sizeof *k);
        if (!k) return -1;
        h->keys = k;
        uint32_t *v = realloc(h->vals, cap * sizeof *v);
        if (!v) return -1;
        h->vals = v;
        h->alloc = (uint32_t)cap;
    }
    h->cap = (uint32_t)cap;
    h->n = 0;
    memset(h->keys, 0xff, cap * sizeof *h->keys);
    return 0;
}

/* The value slot of key, or NULL when absent. */
static inline uint32_t *u32map_get(const u32map *h, uint32_t key) {
    if (!h->cap) return NULL;
    uint32_t mask = h->cap - 1, i = u32map_hash(key) & mask;
    for (;;) {
        if (h->keys[i] == key) return &h->vals[i];
        if (h->keys[i] == U32MAP_EMPTY) return NULL;
        i = (i + 1) & mask;
    }
}

static inline int u32map_grow_(u32map *h) {
    uint32_t oldcap = h->cap;
    uint32_t *ok = h->keys, *ov = h->vals;
    u32map nh = {0};
    if (u32map_reset(&nh, oldcap ? oldcap : 8) != 0) {
        free(nh.keys);
        free(nh.vals);
        return -1;
    }
    for (uint32_t i = 0; i < oldcap; i++) {
        if (ok[i] == U32MAP_EMPTY) continue;
        uint32_t j = u32map_hash(ok[i]) & (nh.cap - 1);
        while (nh.keys[j] != U32MAP_EMPTY)
            j = (j + 1) & (nh.cap - 1);
        nh.keys[j] = ok[i];
        nh.vals[j] = ov[i];
    }
    nh.n = h->n;
    free(ok);
    free(ov);
    *h = nh;
    return 0;
}

/* The value slot of key, inserted (with *fresh set) when absent; NULL when out of memory. */
static inline uint32_t *u32map_put(u32map *h, uint32_t key, bool *fresh) {
    if ((h->n + 1) * 2 > h->cap && u32map_grow_(h) != 0) return NULL;
    uint32_t mask = h->cap - 1, i = u32map_hash(key) & mask;
    for (;;) {
        if (h->keys[i] == key) {
            *fresh = false;
            return &h->vals[i];
        }
        if (h->keys[i] == U32MAP_EMPTY) {
            h->keys[i] = key;
            h->n++;
            *fresh = true;
            return &h->vals[i];
        }
        i = (i + 1) & mask;
    }
}

static inline void u32map_free(u32map *h) {
    free(h->keys);
    free(h->vals);
    memset(h, 0, sizeof *h);
}

#endif
