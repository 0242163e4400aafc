/* dedup — the set of recently stored messageIds, for exactly-once storage of retried events.
 *
 * Clients retry when they miss an answer, so the same messageId can arrive twice; Segment keeps at
 * least 24 hours of ids and so does engaged (the window is a setting). The set lives in memory and
 * is rebuilt from the store at start, so it survives restarts without an index on message_id
 * slowing every insert.
 *
 * It stores, per id, a 64-bit hash and the seq of the stored event: 16 bytes in an open-addressing
 * table kept at most 3/4 full (about 21-43 bytes per id; up to 77 while a second table is held,
 * below). A hash match is only a candidate: the committer confirms it against the stored
 * message_id, so a hash collision can never drop an event.
 *
 * No call stops to rebuild the table. Growing and pruning make a new table that takes the new ids
 * at once, and the previous one is moved into it 8 slots per dedup_add() and more whenever the
 * committer is idle (dedup_step()), both searched meanwhile: rebuilding at once held the committer,
 * and every event waiting on it, for 300 ms at 6M ids. The new table is made ahead of its move
 * (from 5/8 full, or at a prune) and its pages written before any is read, a page per 8 adds and
 * more when idle: a fresh page read first and written later costs a second fault and a TLB flush
 * on every core (dedup.c). While a move lasts, or its table is being made, both tables are held.
 *
 * Not thread-safe: the committer thread owns it. */
#ifndef ENGAGED_DEDUP_H
#define ENGAGED_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dedup dedup;

dedup *dedup_new(void);
void dedup_free(dedup *d);

/* Adds (hash, seq); seq >= 1 (store seqs start at 1), and not below a pruned bound. Returns 0,
 * or -1 when memory runs out (the set is unchanged). O(1): a probe, plus moving at most 8 slots. */
int dedup_add(dedup *d, uint64_t hash, int64_t seq);
/* Makes room for n ids in all without growing (used before loading a known number, at start). It
 * rebuilds at once: O(capacity). 0 or -1. */
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
/* Moves up to n slots of a table being emptied (above), or else writes the pages of n slots of the
 * table made for the next move, starting a prune's move once that table is whole; returns whether
 * there was such work. For idle time: at a few ids a second a move driven by adds alone would last
 * hours, both tables held and searched all the while, so the committer calls this whenever it
 * waits for requests. */
bool dedup_step(dedup *d, size_t n);
/* Drops every entry whose seq is below min_seq (those older than the window): from now on they are
 * not found. Ids added later are not affected, whatever min_seq (INT64_MAX: drop all so far). Their
 * slots are reclaimed by a move into a table of the same size when the table is at most half full
 * (once that table's pages are written), else by the move that grows it. O(1). */
void dedup_prune(dedup *d, int64_t min_seq);
/* The ids held: pruned ones still count until a move has dropped them. */
size_t dedup_count(const dedup *d);
/* Bytes of memory the tables hold, the one being made for the next move included. */
size_t dedup_bytes(const dedup *d);

#endif
