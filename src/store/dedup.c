#include "store/dedup.h"

#include <stdint.h>
#include <stdlib.h>

#include "util/pages.h"

/* Slots with seq == EMPTY are free; seqs are >= 1, so a table is zeroed memory, which costs nothing
 * up front (below). Deletion uses backward-shift (no tombstones), so lookups stay short however
 * many ids come and go. The one exception is the table being emptied (old, below), whose moved and
 * removed slots become MOVED: it only shrinks until it is freed, and its probe runs must stay whole
 * for the entries not yet moved. */
#define EMPTY 0
#define MOVED (-1)

/* Slots of the old table moved per dedup_add(). A resize starts when the tables hold 3/4 of the
 * new table's half, so the move ends after old capacity / MOVE_PER_ADD adds, by when the new table
 * is at most (3/4 + 1/8) / 2 full: it never has to grow while the old one still empties. */
#define MOVE_PER_ADD 8

/* The moved part of the old table is given back in pieces of this size (below). */
#define RELEASE_BYTES (2u << 20)

/* Pages of the next table (below) written per this many dedup_add()s: it must be whole by the
 * time the current table is 3/4 full, an eighth of its capacity in adds after it was 5/8 full,
 * and it is twice as large: 256 bytes per add. One 4 KiB page per 8 adds is twice that. */
#define ADDS_PER_PAGE 8
#define PAGE_BYTES 4096u

typedef struct slot {
    uint64_t hash;
    int64_t seq;
} slot;

/* Growing or pruning the table used to rebuild it at once, in the committer, with every event of
 * the moment waiting: 80 ms at 1.5M ids, 300 ms at 6M (a scratch loop), and the prune did it every
 * ten minutes. Now the rebuilt table starts empty and takes the new ids at once, while the
 * previous one is emptied into it MOVE_PER_ADD slots per add, and more when the committer is idle
 * (dedup_step()), both searched meanwhile. */
struct dedup {
    slot *slots;                        /* the table ids are added to */
    size_t mask;                        /* its capacity - 1; capacity is a power of two */
    size_t count;                       /* its entries */
    slot *old;                          /* the table being emptied into slots, or NULL */
    size_t old_mask, old_count, cursor; /* old's slots below cursor have been moved */
    size_t released;                    /* old's slots below this have been given back */
    slot *next;                         /* the table the next move goes into, or NULL */
    size_t next_cap, written;           /* its capacity; its bytes below written are paged in */
    unsigned adds;                      /* dedup_add()s, for ADDS_PER_PAGE */
    int64_t floor;   /* entries below this seq are pruned: never found, never moved */
    int64_t max_seq; /* the largest seq added: the floor never passes it, or later adds would
                        be pruned as they came */
};

/* A table of cap empty slots. Zeroed memory: a large one comes from fresh pages that the kernel
 * zero-fills as they are first touched, so making a 256 MB table does not stop for writing it. */
static slot *alloc_slots(size_t cap) {
    return calloc(cap, sizeof(slot));
}

/* Why a move goes into a table made ahead of time (d->next), its pages written before its first
 * probe. A probe that reads a fresh page maps the kernel's shared zero page; the insert that then
 * writes it faults again, and replacing the mapping flushes the TLB of every core the process
 * runs on, by interprocessor interrupt. In a batch run that was a tenth of the committer's time
 * (perf: do_wp_page, then smp_call_function_many_cond; docs/benchmarks.md). A page written
 * first is mapped once, writable, with nothing to flush. So the next table is allocated when the
 * current one is 5/8 full (or a prune plans a move), and written a page per ADDS_PER_PAGE adds
 * and more when the committer is idle (dedup_step()); the move starts when the current table is
 * 3/4 full (growth) or when the next one is whole (a prune's move, which can wait). */
static void plan_next(dedup *d, size_t cap) {
    if (d->next && d->next_cap >= cap) return;
    slot *n = alloc_slots(cap);
    if (!n) return; /* the move allocates when it must */
    free(d->next);
    d->next = n;
    d->next_cap = cap;
    d->written = 0;
}

/* Writes the next table's pages up to bytes more; returns whether any were left to write. */
static bool write_next(dedup *d, size_t bytes) {
    size_t size = d->next ? d->next_cap * sizeof(slot) : 0;
    if (d->written >= size) return false;
    size_t end = bytes < size - d->written ? d->written + bytes : size;
    volatile char *p = (volatile char *)d->next;
    for (; d->written < end; d->written += PAGE_BYTES)
        p[d->written] = 0;
    if (d->written > size) d->written = size;
    return true;
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
    d->floor = INT64_MIN;
    return d;
}

void dedup_free(dedup *d) {
    if (!d) return;
    free(d->slots);
    free(d->old);
    free(d->next);
    free(d);
}

static void insert_slot(slot *slots, size_t mask, uint64_t hash, int64_t seq) {
    size_t i = hash & mask;
    while (slots[i].seq != EMPTY)
        i = (i + 1) & mask;
    slots[i].hash = hash;
    slots[i].seq = seq;
}

/* Moves up to n slots of the old table into the current one (pruned entries are dropped), and
 * frees the old table once it is empty. */
static void move_some(dedup *d, size_t n) {
    if (!d->old) return;
    size_t cap = d->old_mask + 1, end = n < cap - d->cursor ? d->cursor + n : cap;
    for (; d->cursor < end; d->cursor++) {
        slot *s = &d->old[d->cursor];
        if (s->seq <= 0) continue; /* EMPTY, MOVED */
        if (s->seq >= d->floor) {
            insert_slot(d->slots, d->mask, s->hash, s->seq);
            d->count++;
        }
        s->seq = MOVED;
        d->old_count--;
    }
    if (d->cursor == cap) {
        free(d->old);
        d->old = NULL;
        d->old_count = d->cursor = d->released = 0;
    } else if ((d->cursor - d->released) * sizeof(slot) >= RELEASE_BYTES) {
        /* The moved part's pages go back as the move goes, not all at the end: freeing a 256 MB
         * table at once took 23 ms (munmap of every page), a stop like the one the move avoids.
         * Madvised pages read as zero if touched again; only the free below touches them. */
        pages_release(d->old + d->released, d->old + d->cursor);
        d->released = d->cursor;
    }
}

/* Makes an empty table of cap slots current (the next one when it has that size), the current one
 * to be emptied into it. Any table still being emptied is emptied first. 0, or -1 (nothing
 * changed). */
static int start_move(dedup *d, size_t cap) {
    slot *n = d->next && d->next_cap == cap ? d->next : alloc_slots(cap);
    if (!n) return -1;
    if (n == d->next) d->next = NULL;
    move_some(d, SIZE_MAX);
    d->old = d->slots;
    d->old_mask = d->mask;
    d->old_count = d->count;
    d->cursor = 0;
    d->slots = n;
    d->mask = cap - 1;
    d->count = 0;
    return 0;
}

/* Starts a prune's move (a next table of the current size) once its table is whole. */
static void start_planned(dedup *d) {
    if (!d->old && d->next && d->next_cap == d->mask + 1 &&
        d->written >= d->next_cap * sizeof(slot))
        start_move(d, d->next_cap); /* cannot fail: the table is there */
}

int dedup_reserve(dedup *d, size_t n) {
    size_t cap = d->mask + 1;
    while (n * 4 > cap * 3)
        cap *= 2;
    if (cap == d->mask + 1) return 0;
    if (start_move(d, cap)) return -1;
    move_some(d, SIZE_MAX); /* at start, before serving: at once */
    return 0;
}

bool dedup_step(dedup *d, size_t n) {
    if (!d->old) {
        if (write_next(d, n * sizeof(slot))) return true;
        start_planned(d);
        if (!d->old) return false;
    }
    move_some(d, n);
    return true;
}

int dedup_add(dedup *d, uint64_t hash, int64_t seq) {
    move_some(d, MOVE_PER_ADD);
    if (++d->adds % ADDS_PER_PAGE == 0) write_next(d, PAGE_BYTES);
    size_t cap = d->mask + 1, load = d->count + d->old_count + 1;
    if (load * 4 > cap * 3) {
        if (start_move(d, cap * 2)) return -1;
    } else if (!d->old && load * 8 > cap * 5) {
        plan_next(d, cap * 2);
    } else {
        start_planned(d);
    }
    insert_slot(d->slots, d->mask, hash, seq);
    d->count++;
    if (seq > d->max_seq) d->max_seq = seq;
    return 0;
}

void dedup_prefetch(const dedup *d, uint64_t hash) {
    __builtin_prefetch(&d->slots[hash & d->mask]);
}

/* Probing the old table skips its moved part, [0, cursor): every entry there is gone, and once its
 * pages are given back they read as empty, which would cut short a run that goes on past the
 * cursor. An entry with the hash sought can only be in its home's run, so going on from the
 * cursor finds it; n bounds the walk to the slots not yet moved. */
static size_t old_skip(const dedup *d, size_t i) {
    return i < d->cursor ? d->cursor : i;
}

#define FOR_OLD_PROBE(d, hash, i)                                                                  \
    for (size_t n_ = (d)->old ? (d)->old_mask + 1 - (d)->cursor : 0,                               \
                i = old_skip((d), (hash) & (d)->old_mask);                                         \
         n_-- > 0 && (d)->old[i].seq != EMPTY; i = old_skip((d), (i + 1) & (d)->old_mask))

int dedup_find(const dedup *d, uint64_t hash, int (*match)(int64_t seq, void *arg), void *arg) {
    for (size_t i = hash & d->mask; d->slots[i].seq != EMPTY; i = (i + 1) & d->mask) {
        if (d->slots[i].hash != hash || d->slots[i].seq < d->floor) continue;
        int r = match(d->slots[i].seq, arg);
        if (r) return r;
    }
    FOR_OLD_PROBE(d, hash, i) {
        if (d->old[i].hash != hash || d->old[i].seq < d->floor) continue; /* MOVED is below */
        int r = match(d->old[i].seq, arg);
        if (r) return r;
    }
    return 0;
}

/* Empties slot i of the current table and shifts later members of its probe run back, keeping
 * every run contiguous. */
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
    FOR_OLD_PROBE(d, hash, i) {
        if (d->old[i].hash == hash && d->old[i].seq == seq) {
            d->old[i].seq = MOVED; /* the run stays whole for the others */
            d->old_count--;
            return;
        }
    }
}

void dedup_prune(dedup *d, int64_t min_seq) {
    /* "Everything" (the committer passes INT64_MAX for a window with no events) is everything
     * added so far. */
    if (min_seq > d->max_seq) min_seq = d->max_seq + 1;
    if (min_seq <= d->floor) return;
    d->floor = min_seq; /* from now on they are not found */
    /* Their slots are reclaimed by moving the table into one of the same size, which drops them.
     * Only from a table at most half full: the move ends after capacity / MOVE_PER_ADD adds, so
     * the table cannot reach 3/4 and need to grow meanwhile. A fuller one keeps them until it
     * grows, and the growing move drops them; so does a move already under way. If the memory is
     * not there, the larger set stays: pruning is an optimisation, never a correctness need. */
    if (!d->old && d->count * 2 <= d->mask + 1) plan_next(d, d->mask + 1);
}

size_t dedup_count(const dedup *d) {
    return d->count + d->old_count;
}

size_t dedup_bytes(const dedup *d) {
    return (d->mask + 1 + (d->old ? d->old_mask + 1 : 0) + (d->next ? d->next_cap : 0)) *
               sizeof(slot) +
           sizeof *d;
}
