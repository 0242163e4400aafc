/* dedup — the set of recently stored messageIds, for exactly-once storage of retried events.
 *
 * Clients retry when they miss an answer, so the same messageId can arrive twice; Segment keeps at
 * least 24 hours of ids and so does engaged (the window is a setting). The set lives in memory and
 * is rebuilt from the store at start, so it survives restarts without an index on message_id
 * slowing every insert.
 *
 * It stores, per id, a 64-bit hash and the seq of the stored event: 16 bytes in an open-addressing
 * table kept at most 3/4 full (about 21-43 bytes per id). A hash match is only a candidate: the
 * committer confirms it against the stored message_id, so a hash collision can never drop an event.
 *
 * Not thread-safe: the committer thread owns it. */
#ifndef ENGAGED_DEDUP_H
#define ENGAGED_DEDUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct dedup dedup;

dedup *dedup_new(void);
void dedup_free(dedup *d);

/* Adds (hash, seq); seq >= 0 (store seqs are rowids, >= 1). Returns 0, or -1 when memory runs out
 * (the set is unchanged). O(1) amortised.
 */
int dedup_add(dedup *d, uint64_t hash, int64_t seq);
/* Makes room for n ids in all without growing (used before loading a known number). 0 or -1. */
int dedup_reserve(dedup *d, size_t n);
/* Calls match(seq, arg) for each entry with this hash until it returns nonzero; returns that value,
 * or 0 when none matched. O(1) expected. */
int dedup_find(const dedup *d, uint64_t hash, int (*match)(int64_t seq, void *arg), void *arg);
/* Starts loading the slot where the probe for hash begins, so that a dedup_find() or
 * dedup_add() of it soon after need not wait for memory: the table is tens of megabytes at a day's
 * ids, and each event's probe is a miss (perf: the committer's largest single cost). The committer
 * issues it some events ahead of writing them. O(1); the set is unchanged. */
void dedup_prefetch(const dedup *d, uint64_t hash);
/* Removes the entry (hash, seq), if present; used to undo adds of a transaction that failed. */
void dedup_remove(dedup *d, uint64_t hash, int64_t seq);
/* Drops every entry whose seq is below min_seq (those older than the window). O(capacity). */
void dedup_prune(dedup *d, int64_t min_seq);
size_t dedup_count(const dedup *d);
/* Bytes of memory the table holds. */
size_t dedup_bytes(const dedup *d);

#endif
