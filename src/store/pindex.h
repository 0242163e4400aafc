/* pindex — the person index: for each userId and each anonymousId, the seqs of its events.
 *
 * It answers GET /v1/events?user_id= / anonymous_id= (and, later, a profile's timeline) without an
 * index in SQLite: an SQLite index on ids is a B-tree keyed by random strings, so every group
 * commit dirtied one index page per event and wrote it to the WAL (and again at checkpoint) —
 * measured at about 5.8 KB written per 300-byte event, and a third of the collect path's throughput
 * (docs/benchmarks.md). Here an event costs one append to an in-memory array.
 *
 * The index is rebuilt from the store at start (store_index_load, one scan) and then grows with
 * every committed event. Growing never stops to rebuild the table: a grown table takes new people
 * at once while the previous one is moved into it a few slots per add (pindex_step()). Memory:
 * about 8 bytes per event per id plus some 80 bytes per person.
 *
 * Thread-safety: one writer (the committer) and any number of readers; a readers-writer lock,
 * held for the length of one append or one copy. */
#ifndef ENGAGED_PINDEX_H
#define ENGAGED_PINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pindex_kind { PINDEX_USER = 0, PINDEX_ANON = 1 } pindex_kind;

typedef struct pindex pindex;

pindex *pindex_new(void);
void pindex_free(pindex *p);

/* Records that the event seq carries id (len bytes). seqs must be added in increasing order per id.
 * Returns 0, or -1 when memory runs out (the index is then incomplete: the caller stops using it).
 */
int pindex_add(pindex *p, pindex_kind kind, const char *id, size_t len, int64_t seq);
/* One id of one event, for pindex_add_many(). */
typedef struct pindex_entry {
    pindex_kind kind;
    const char *id;
    size_t len;
    int64_t seq;
    uint64_t hash; /* set by pindex_add_many() */
} pindex_entry;
/* pindex_add() of each entry in order, under one hold of the lock. Each entry's slot and then its
 * person's id and seqs are fetched some entries ahead, so that the cache misses of a large index
 * overlap instead of each stalling in turn: the committer's group of a batch. Returns 0, or -1 when
 * memory runs out (entries from the failed one on are not added). */
int pindex_add_many(pindex *p, pindex_entry *v, size_t n);
/* Copies into out (room for max) the seqs of id greater than after, in increasing order; returns
 * how many. O(log n + returned) for a person with n events. */
size_t pindex_get(pindex *p, pindex_kind kind, const char *id, size_t len, int64_t after,
                  int64_t *out, size_t max);
/* Moves up to n slots of a table being emptied after a growth (pindex.c); returns whether there
 * was one. For idle time: at a few people a second a move driven by adds alone would last long,
 * both tables held and searched all the while, so the committer calls this whenever it waits. */
bool pindex_step(pindex *p, size_t n);
/* People indexed and bytes held, for metrics and the benchmarks. */
size_t pindex_people(pindex *p);
size_t pindex_bytes(pindex *p);

#endif
