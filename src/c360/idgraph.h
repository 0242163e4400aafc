/* idgraph — the identity graph: identifiers as nodes, links as edges, customers as components.
 *
 * Every identifier an event carries (anonymousId, userId, email, phone, a WhatsApp number, a
 * Messenger PSID, an external id) is a node, typed and normalised by the caller (c360/idnorm.h).
 * An event that carries several links them: its highest-priority identifier (the anchor) gets an
 * edge to each of the others. A connected component is one customer, held in a slot; the engine
 * keeps the profile of slot i at index i.
 *
 * Resolution (idg_resolve), for identifiers given in priority order:
 *   1. The anchor's slot if the anchor is known; else the slot of the first other known identifier
 *      that may take the anchor (its per-type limit allows one more); else a new slot.
 *   2. Every other identifier joins that slot: a new one is added if the slot's limit for its type
 *      allows; a known one in another slot merges the two slots if their identifiers together stay
 *      within every limit and the pair was not split apart by an unmerge. The older slot (lower
 *      id) survives, so a customer's profile id never changes by growing.
 *   3. A link that would break a limit (two userIds on one profile: a shared device) or re-join
 *      customers an unmerge split is refused and recorded (idg_refusals_json), never applied.
 * Every merge is recorded with its cause (the event's seq and the link) in the surviving slot.
 *
 * Links form a tree over a customer's identifiers: an identifier is linked once, by the event that
 * first tied it in (later events between identifiers already together add nothing, so memory does
 * not grow with traffic). Unmerge (idg_unmerge) cuts one link, which always splits the customer in
 * two: the side without the oldest identifier moves to a new slot, and the two customers are kept
 * apart from then on — a later event that would join them is refused and recorded ("unmerged"),
 * as the operator's decision outranks the evidence that led to the wrong merge.
 *
 * Determinism: the graph is rebuilt at start by replaying the log, so every decision depends only
 * on the graph and the arguments (slot ids are seqs from the log, never counters or clocks).
 *
 * Ownership: the graph owns every node and slot; strings passed in are copied. No locking: the
 * engine serialises access. Cost: resolution is O(identifiers x slot size) with hash lookups; a
 * merge moves the newer slot's nodes and links into the older (O(their number)). Memory: 16 bytes
 * a node plus 4 of hash table and its value (kept in shared chunks), 16 a link, 56 a slot, and
 * 80 a merge record. */
#ifndef ENGAGED_IDGRAPH_H
#define ENGAGED_IDGRAPH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDG_NONE UINT32_MAX
#define IDG_MAX_TYPES 32
#define IDG_MAX_IDENTS 16      /* identifiers per event considered */
#define IDG_MAX_REFUSALS 10000 /* refusals remembered (the oldest are dropped) */

typedef struct idg idg;

typedef struct idg_opts {
    size_t ntypes;
    const char
        *type_names[IDG_MAX_TYPES]; /* for JSON; index = type; lower index = higher priority */
    uint32_t limits[IDG_MAX_TYPES]; /* most identifiers of each type in one slot */
} idg_opts;

typedef struct idg_ident {
    int type;
    const char *value;
} idg_ident;

typedef struct idg_merge_pair {
    uint32_t from, into;
} idg_merge_pair;

typedef struct idg_result {
    uint32_t slot;                         /* the event's customer */
    bool created;                          /* slot is new */
    idg_merge_pair merged[IDG_MAX_IDENTS]; /* in order; `from` is dead afterwards */
    size_t nmerged;
    size_t refused; /* links refused (recorded in idg_refusals) */
} idg_result;

idg *idg_new(const idg_opts *opts);
void idg_free(idg *g);

/* Resolves an event's identifiers (n >= 1, distinct, in priority order) at log position seq, with
 * cause and detail naming the event (the type, and a track's name or NULL: "identify",
 * "track:Order Completed" in the log; only formatted when a merge happens) and ts_ms its time, for
 * the merge log. Returns 0 and fills *out, or -1 when memory runs out (the graph then holds what
 * was done so far: consistent, maybe missing links). */
int idg_resolve(idg *g, const idg_ident *ids, size_t n, int64_t seq, int64_t ts_ms,
                const char *cause, const char *detail, idg_result *out);

/* The live slot holding an identifier, or IDG_NONE. */
uint32_t idg_lookup(const idg *g, int type, const char *value);
/* Fetching ahead: a caller about to resolve many identifiers (the engine, a request's events) can
 * have each one's lookup fetched into the cache some identifiers early, one level at a time, so
 * that the misses of a large graph overlap instead of each stalling in turn. idg_hash() is the
 * identifier's hash; idg_prefetch() with stage 0 fetches its bucket, 1 (later, once the bucket is
 * in) the first node of the chain, 2 that node's value. Only reads the graph; any stage may be
 * skipped or the graph changed in between: the fetch is then wasted, never wrong. */
uint64_t idg_hash(int type, const char *value);
void idg_prefetch(const idg *g, uint64_t hash, int stage);
/* The live slot for a profile id (a slot's id_seq), following merges; IDG_NONE if unknown or
 * erased. */
uint32_t idg_slot_by_id(const idg *g, int64_t id);
int64_t idg_slot_id(const idg *g, uint32_t slot);
bool idg_slot_live(const idg *g, uint32_t slot);
size_t idg_slots(const idg *g); /* slots ever made (live or not) */
size_t idg_live(const idg *g);  /* live slots: customers */

/* Unmerge results. */
typedef enum idg_unmerge_rc {
    IDG_UNMERGE_OK = 0,
    IDG_UNMERGE_NO_LINK = 1, /* the slot has no link with that id; nothing changed */
    IDG_UNMERGE_NOMEM = -1,
} idg_unmerge_rc;

/* Cuts link (link_seq, link_k) of slot; on IDG_UNMERGE_OK *new_slot is the split-off side (its id
 * is seq). Cost: O(nodes x links) of the slot. */
idg_unmerge_rc idg_unmerge(idg *g, uint32_t slot, int64_t link_seq, int link_k, int64_t seq,
                           uint32_t *new_slot);

/* Forgets a slot and all its identifiers (erasure): an identifier seen again starts afresh. */
void idg_erase(idg *g, uint32_t slot);

/* Calls fn for each identifier of slot, in the order they joined. */
void idg_each_ident(const idg *g, uint32_t slot, void (*fn)(void *arg, int type, const char *value),
                    void *arg);
/* The slot's identifiers, links and merge history as JSON arrays (new references). */
json_t *idg_identities_json(const idg *g, uint32_t slot);
json_t *idg_links_json(const idg *g, uint32_t slot);
json_t *idg_merges_json(const idg *g, uint32_t slot);
/* Refused links, newest last; only those touching slot unless slot is IDG_NONE. */
json_t *idg_refusals_json(const idg *g, uint32_t slot, size_t max);
size_t idg_refusal_count(const idg *g);
size_t idg_nodes(const idg *g);
size_t idg_bytes(const idg *g);

/* Formats a link id "<seq>.<k>" / parses one; parse returns false for anything else. */
void idg_link_id(int64_t seq, int k, char out[32]);
bool idg_link_parse(const char *s, int64_t *seq, int *k);

#endif
