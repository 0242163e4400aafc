/* rfeed — the recommendation models' writes, made at once or handed to a thread of their own.
 *
 * The engine makes every write to the models (reco.h's learning calls) through a feed. A feed
 * starts direct: each call is the reco call of the same name, made now, with its result. Between
 * rfeed_detach() and rfeed_join() the calls are queued instead, and a thread of the feed's own
 * makes them in the order given, while the caller goes on. The engine detaches its feed while it
 * replays the log at start: learning is about a third of the replay's work and needs nothing the
 * rest of the replay computes after handing it over, so the two cores share the replay
 * (docs/benchmarks.md, "Restart on two cores"). It stays detached while serving: the applier
 * answers each request without waiting for its writes, which it hands over in batches
 * (rfeed_flush()); a reader of the models first hands over what is left and waits for the thread
 * to have made it all (rfeed_wait()), so it sees the events of every 200 already given.
 *
 * Threads: while detached, one thread (the writer) calls the rfeed_ writes and rfeed_flush().
 * The models may be read only by a thread that has called rfeed_wait() and holds a lock the
 * writer must take to write or flush (the engine's); nothing else may touch them until
 * rfeed_join() returns. While direct, the reco.h rules hold.
 *
 * Errors: a write returns RECO_OK, or RECO_NOMEM (direct: the models ran out of memory; detached:
 * the queue could not grow, and the write was not queued). A detached write that finds the models
 * out of memory on the feed's thread cannot be reported to its caller, which has moved on: the
 * feed logs it and aborts, as the engine does when its own writes fail (a model silently missing
 * part of the log would recommend from it for ever). A write reco refuses as invalid is dropped,
 * as the engine drops it when direct.
 *
 * Memory: a detached feed queues writes in chunks of 256 KiB, at most RFEED_CHUNKS of them; when
 * the thread is that far behind, the writer waits for it. Cost per queued write: a few words
 * copied; the thread is woken once per chunk (about ten thousand writes). */
#ifndef ENGAGED_RFEED_H
#define ENGAGED_RFEED_H

#include <stddef.h>
#include <stdint.h>

#include "reco/reco.h"

#define RFEED_CHUNKS 8

typedef struct rfeed rfeed;

/* A direct feed for r (not owned). NULL when out of memory. */
rfeed *rfeed_new(reco *r);
/* Joins f if detached, then frees it. NULL is fine. */
void rfeed_free(rfeed *f);

/* Starts the feed's thread: from now on the writes are queued. -1 if the thread cannot start (the
 * feed stays direct, which is always correct). */
int rfeed_detach(rfeed *f);
/* Waits until the thread has made every queued write, stops it, and makes the feed direct again. */
void rfeed_join(rfeed *f);
/* The writer's: hands the writes made so far to the thread if about a hundred have gathered,
 * rather than when their chunk is full; the rest wait for a later flush or rfeed_wait(). A no-op
 * when direct. Cost: a lock and a wake-up when it hands over. */
void rfeed_flush(rfeed *f);
/* For a thread holding a lock that keeps the writer out (see Threads): hands over the writes not
 * yet handed over, and waits until the thread has made them all. At once when direct, or when
 * there are none. */
void rfeed_wait(rfeed *f);

/* reco.h's writes, same arguments and meaning; a list of more than RFEED_MAX_IDS groups or items
 * is RECO_INVALID, nothing written (the engine's lists are at most 100 long). */
#define RFEED_MAX_IDS 1024
int rfeed_observe(rfeed *f, uint32_t who, reco_action action, uint32_t item, const uint32_t *groups,
                  size_t ngroups, int64_t t_ms);
int rfeed_remember(rfeed *f, uint32_t who, reco_action action, uint32_t item, int64_t t_ms);
int rfeed_order(rfeed *f, uint32_t who, const uint32_t *items, size_t n);
int rfeed_set_groups(rfeed *f, uint32_t who, const uint32_t *groups, size_t n);
int rfeed_merge(rfeed *f, uint32_t from, uint32_t into);
void rfeed_forget(rfeed *f, uint32_t who);

#endif
