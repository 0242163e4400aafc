/* rec — session-based "next item" recommendation that learns as events arrive.
 *
 * The model keeps the raw sessions it was fed and, per item, the most recent sessions that contain
 * it (an inverted index). Nothing is precomputed: every score is derived at query time from those
 * two structures, so rec_observe() is a few appends and the next query already sees the event. The
 * scores blended at query time (docs/recommendations.md has the method and the numbers):
 *   - two session-kNN scorers (the SKNN / V-SKNN / STAN / VSTAN family, one parameter set each):
 *     the sessions most similar to the current one vote for their items, with decays for an
 *     item's position in the current session, the neighbour session's age, and a voted item's
 *     distance from the neighbour's item that the current session viewed last;
 *   - sequential rules: items that followed the session's last item within a window in recent
 *     sessions, weighted 1/distance;
 *   - repeats: items already in the session, weighted by how recently they were viewed.
 * Each component is normalised by its maximum in the query and the blend is linear in a small
 * feature vector (rec_feature), over a candidate set made of each scorer's best items and the
 * session's own items. The weights ship as a neutral default; rtune.h learns them, and the
 * kNN settings, from the most recent sessions the model holds.
 *
 * One exception: with cache_slots set, rec_recommend() keeps its answers to one-item sessions (a
 * product page's visitor with no session of their own asks exactly that), each used until a
 * session holding the item changes, the parameters change, or REC_CACHE_DRIFT more events arrive.
 *
 * Items are the caller's 32-bit ids (UINT32_MAX is reserved); sessions are the caller's 64-bit
 * keys. Time is only used to split a key's events into sessions (session_gap); recency is measured
 * in sessions begun since, which needs no clock and means the same thing for a small and a large
 * shop.
 *
 * Ownership: the model owns everything it stores; rec_model_free() releases it. Nothing returned
 * points into the model. Errors: allocation failure returns REC_NOMEM; the model stays consistent
 * and the event is not recorded (its item or a new session may already be registered).
 *
 * Threads: one writer. rec_observe() and rec_set_params() must not run concurrently with anything
 * else on the same model; any number of rec_recommend*() calls may run concurrently with each other
 * (they only read the model and allocate their own scratch memory).
 *
 * Memory: per session a 64-byte record holding up to 10 items (a longer session's items move to
 * the heap, 4 bytes each) and 2 bytes of norm; the first time an item appears in a session, a
 * 4-byte posting; per item ~40 bytes; with cache_slots, 40 bytes an entry plus 8 per cached answer
 * item. Measured on Diginetica (4.9 events per session, no cache): 28.5 MB of model per million
 * events. Bounded by max_sessions (the oldest sessions are forgotten once that many are stored),
 * max_postings per item and cache_slots. */
#ifndef ENGAGED_REC_H
#define ENGAGED_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { REC_OK = 0, REC_NOMEM = -1, REC_INVALID = -2, REC_FULL = -3 };

/* The features the blend weighs, per candidate item. The kNN and rule scores are divided by their
 * maximum over the query's candidates, so each lies in [0, 1]. */
typedef enum rec_feature {
    /* The scorers, each divided by its maximum over the query's candidates. */
    REC_F_KNN0,
    REC_F_KNN1,
    REC_F_SR,
    /* Sum over the item's views in the session of exp(-age / repeat_decay). */
    REC_F_REPEAT,
    /* 1 when the item is the session's last item. */
    REC_F_LAST,
    /* 1 when the item is anywhere in the session. */
    REC_F_INSESS,
    /* Logs of the first three (floored at 1e-4): lets a linear blend act multiplicatively. */
    REC_F_LOGKNN0,
    REC_F_LOGKNN1,
    REC_F_LOGSR,
    /* REC_F_INSESS * log(session length): repeats matter differently in long sessions. */
    REC_F_REPLEN,
    /* log(1 + rank) under each scorer among the candidates (the worst rank when the scorer did not
     * reach the item): robust to how peaked the scores are. */
    REC_F_RANKKNN0,
    REC_F_RANKKNN1,
    REC_F_RANKSR,
    /* log(1 + views of the item in the session). */
    REC_F_COUNT,
    /* REC_F_INSESS / (1 + positions since the last view): a heavier-tailed recency shape. */
    REC_F_RECENT,
    /* log(1 + sessions holding the item in the index): popularity. */
    REC_F_POP,
    /* The scorers times log(session length): rules weaken as sessions get longer. */
    REC_F_KNN1LEN,
    REC_F_SRLEN,
    REC_NFEAT
} rec_feature;

/* One session-kNN scorer. Decay lengths are in positions or sessions; INFINITY switches a decay off
 * (weight 1), and for after/before 0 ignores that side of the anchor entirely. */
typedef struct rec_knn_params {
    uint32_t neighbours; /* k: how many of the most similar sessions vote */
    uint32_t sample; /* per item of the current session, how many of its most recent sessions are
                        compared (query cost is linear in this) */
    float pos_decay; /* an item viewed a positions before the session's end weighs exp(-a/pos_decay)
                      */
    float recency; /* a neighbour begun d sessions before the query weighs exp(-d / (recency * H)),
                      H the number of sessions stored: a fraction of the history, so the same
                      value means the same for a small and a large shop */
    float after;   /* in a neighbour, an item d positions after its anchor gets exp(-d/after) */
    float before;  /* ... and d positions before it, exp(-d/before) */
} rec_knn_params;

typedef struct rec_params {
    /* Storage; fixed by rec_model_new() (rec_set_params() ignores changes to them). */
    uint32_t max_sessions;    /* sessions kept, rounded up to a power of two; the oldest are
                                 forgotten beyond it; 0 = no limit */
    uint32_t max_postings;    /* most recent sessions kept per item in the inverted index */
    uint32_t max_session_len; /* events stored per session; later ones are counted and dropped */
    int64_t session_gap;  /* a key idle for longer than this (in the caller's time unit) starts a
                             new session; 0 = a key is one session for ever */
    uint32_t cache_slots; /* single-item answers cached (see rec_recommend), rounded up to a power
                             of two; 0 = no cache */
    /* Query time; rec_set_params() changes them for the next query. */
    rec_knn_params knn[2];
    uint32_t sr_sample;       /* most recent sessions of the last item scanned for rules */
    uint32_t sr_window;       /* rules reach this many positions ahead (1..32) */
    float repeat_decay;       /* in positions, for REC_F_REPEAT */
    uint32_t candidates;      /* the blend ranks only each scorer's top `candidates` items plus the
                                 session's own items (the learner sees exactly the same set) */
    float weights[REC_NFEAT]; /* the blend */
} rec_params;

typedef struct rec_model rec_model;

typedef struct rec_item {
    uint32_t item;
    float score; /* the blend's score: only the order is meaningful */
} rec_item;

typedef struct rec_stats {
    uint64_t events;   /* events accepted by rec_observe() */
    uint64_t dropped;  /* events past max_session_len */
    uint32_t items;    /* distinct items seen */
    uint32_t sessions; /* sessions currently stored */
    uint32_t next_id;  /* sessions begun so far */
    size_t bytes; /* heap memory held by the model (allocations, not counting malloc's overhead) */
} rec_stats;

/* Fills p with the shipped defaults: neutral values, not tuned to any one shop's data. */
void rec_params_default(rec_params *p);

/* A new, empty model, or NULL when out of memory or p is invalid (max_postings or max_session_len
 * 0, max_session_len above 65,535, sr_window outside 1..32). p is copied. */
rec_model *rec_model_new(const rec_params *p);
void rec_model_free(rec_model *m);

/* Feeds one event: session_key viewed item at time t (any unit, non-decreasing per key for
 * session_gap to mean anything). Keys are small dense numbers (a customer's slot, a dataset's
 * session index): the model holds 4 bytes for every key up to the largest seen. O(1) amortised
 * plus O(session length) to check whether the item is new to the session. Returns REC_OK;
 * REC_INVALID for item or key UINT32_MAX; REC_FULL once 2^32-1 sessions have begun; REC_NOMEM. An
 * event past max_session_len returns REC_OK and is only counted. */
int rec_observe(rec_model *m, uint32_t session_key, uint32_t item, int64_t t);

/* The k best next items for a session given as its items in event order (unknown items are
 * ignored). Writes up to k items into out, best first, and returns how many: fewer than k when the
 * session's items have few neighbours, 0 when none of them is known. Candidates include items
 * already in the session: a repeat view is a legitimate next event, filter them out if you must.
 * Cost: O(n log n + sum over the knn scorers of (distinct items * sample + neighbours * their
 * length)
 * + sr_sample * sr_window + candidates * log k), about 0.1-0.3 ms for a typical session. Scratch
 * memory (tens of KB) is kept per thread between calls and freed when the thread exits, so it is
 * safe to call from several threads and allocates nothing in the steady state. With cache_slots,
 * a session of one known item and k <= REC_CACHE_K is answered from the cache when it can (a copy
 * of k items); the answer is the one the model gives, up to the drift described above. */
size_t rec_recommend(const rec_model *m, const uint32_t *session_items, size_t n, size_t k,
                     rec_item *out);

/* How many events a cached one-item answer may outlive, when none of them touched a session holding
 * the item: others move the answer only through the global normalisations (neighbours' ages
 * measured against the whole history, candidates' popularity), and this bounds how far. */
#define REC_CACHE_DRIFT 1024
/* The longest cached answer: a longer k is computed afresh each time. */
#define REC_CACHE_K 128

/* The same for a session the model was fed under session_key: its stored items are the query, and
 * the session itself is not used as its own neighbour. Returns 0 for an unknown key. */
size_t rec_recommend_session(const rec_model *m, uint32_t session_key, size_t k, rec_item *out);

/* Whether the model has seen item. O(1). */
bool rec_knows(const rec_model *m, uint32_t item);

/* The parameters in force (a copy). */
void rec_get_params(const rec_model *m, rec_params *p);
/* Replaces the query-time parameters; the storage fields of p are ignored. Returns REC_INVALID and
 * changes nothing when sr_window is outside 1..32, candidates is 0, or a kNN scorer has neighbours
 * or sample 0. */
int rec_set_params(rec_model *m, const rec_params *p);

void rec_get_stats(const rec_model *m, rec_stats *st);

/* The name of a feature ("knn0", "sr", ...), for reports; NULL out of range. */
const char *rec_feature_name(rec_feature f);

#endif
