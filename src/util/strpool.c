#include "util/strpool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"

#define CHUNK (64 * 1024)

typedef struct chunk {
    struct chunk *next;
    size_t used;
    char data[CHUNK];
} chunk;

struct strpool {
    const char **slots; /* open addressing; NULL is empty */
    const char **byid;  /* in order of interning */
    size_t abyid;
    size_t cap, count;
    size_t bytes, max_bytes;
    chunk *chunks;
};

strpool *strpool_new(size_t max_bytes) {
    strpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->max_bytes = max_bytes;
    return p;
}

void strpool_free(strpool *p) {
    if (!p) return;
    for (chunk *c = p->chunks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(p->slots);
    free(p->byid);
    free(p);
}

static int grow(strpool *p) {
    size_t cap = p->cap ? p->cap * 2 : 256;
    const char **s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < p->cap; i++) {
        if (!p->slots[i]) continue;
        size_t h = hash64(p->slots[i], strlen(p->slots[i])) & (cap - 1);
        while (s[h])
            h = (h + 1) & (cap - 1);
        s[h] = p->slots[i];
    }
    free(p->slots);
    p->slots = s;
    p->cap = cap;
    return 0;
}

/* Copies s (n bytes with its NUL) into a chunk, after its 4-byte id. */
static char *store(strpool *p, const char *s, size_t n, uint32_t id) {
    size_t need = n + sizeof id;
    if (!p->chunks || p->chunks->used + need > CHUNK) {
        chunk *c = malloc(sizeof *c);
        if (!c) return NULL;
        c->next = p->chunks;
        c->used = 0;
        p->chunks = c;
    }
    char *at = p->chunks->data + p->chunks->used;
    memcpy(at, &id, sizeof id);
    memcpy(at + sizeof id, s, n);
    p->chunks->used += need;
    return at + sizeof id;
}

static const char *intern(strpool *p, const char *s, uint32_t *id);

const char *strpool_intern(strpool *p, const char *s) {
    uint32_t id;
    return intern(p, s, &id);
}

uint32_t strpool_id(strpool *p, const char *s) {
    uint32_t id = 0;
    intern(p, s, &id);
    return id;
}

uint32_t strpool_find(const strpool *p, const char *s) {
    size_t len = strlen(s);
    if (len > STRPOOL_MAX_LEN || !p->cap) return 0;
    for (size_t h = hash64(s, len) & (p->cap - 1); p->slots[h]; h = (h + 1) & (p->cap - 1)) {
        if (strcmp(p->slots[h], s) != 0) continue;
        uint32_t id;
        memcpy(&id, p->slots[h] - sizeof id, sizeof id);
        return id;
    }
    return 0;
}

const char *strpool_at(const strpool *p, uint32_t id) {
    return id && id <= p->count ? p->byid[id - 1] : NULL;
}

/* The slot of s's copy, with its id; NULL when it cannot be interned. */
static const char *intern(strpool *p, const char *s, uint32_t *id) {
    size_t len = strlen(s);
    if (len > STRPOOL_MAX_LEN) return NULL;
    if ((p->count + 1) * 4 > p->cap * 3 && grow(p)) return NULL;
    size_t h = hash64(s, len) & (p->cap - 1);
    for (; p->slots[h]; h = (h + 1) & (p->cap - 1)) {
        if (strcmp(p->slots[h], s) != 0) continue;
        memcpy(id, p->slots[h] - sizeof *id, sizeof *id); /* each copy is preceded by its id */
        return p->slots[h];
    }
    if (p->bytes + len + 1 + sizeof *id > p->max_bytes || p->count >= UINT32_MAX - 1) return NULL;
    if (p->count == p->abyid) {
        size_t n = p->abyid ? p->abyid * 2 : 256;
        const char **b = realloc(p->byid, n * sizeof *b);
        if (!b) return NULL;
        p->byid = b;
        p->abyid = n;
    }
    uint32_t nid = (uint32_t)p->count + 1;
    char *copy = store(p, s, len + 1, nid);
    if (!copy) return NULL;
    p->slots[h] = copy;
    p->byid[p->count++] = copy;
    p->bytes += len + 1 + sizeof nid;
    *id = nid;
    return copy;
}

size_t strpool_count(const strpool *p) {
    return p->count;
}

size_t strpool_bytes(const strpool *p) {
    size_t n = p->cap * sizeof *p->slots + p->abyid * sizeof *p->byid;
    for (const chunk *c = p->chunks; c; c = c->next)
        n += sizeof *c;
    return n;
}
