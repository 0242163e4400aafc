/* reco — the recommendation service: every model learned from the event stream, the strategies
 * that query them, and the blend, fallbacks, filters and diversity rules of one request.
 *
 * Models, all updated as each acknowledged event is applied (no batch job):
 *   - the session model (rec.h): sessions of product views, for "next item" (session kNN and
 *     sequential rules);
 *   - viewed together (cooc.h): per product, the products viewed in the same sessions, counted
 *     as each view arrives (a session counts a pair once);
 *   - bought together (cooc.h): products of the same order, and an order against the customer's
 *     earlier purchases;
 *   - popularity (pop.h): popular and trending overall, per category and per customer group
 *     (segment, demographic), every interaction weighted by its action;
 *   - per customer, the most recent RECO_HISTORY interactions (product, action, time): the
 *     customer's session, "for you" and what friends bought.
 *
 * Items are catalogue ordinals (catalog.h cat_ordinal), customers are the engine's profile slots,
 * groups are small dense ids the caller interns (0 is the whole shop). The caller (the engine)
 * decides what is shown: reco_query carries an accept() callback (availability, stock, what the
 * customer bought, the request's filter expression) and a boost() callback, and reco applies them
 * to every candidate of every strategy before ranking, so filtering never empties a strategy that
 * had more to give.
 *
 * Scores. Each strategy scores its candidates (exact definitions at reco_strategy) and divides by
 * its best score, so each lies in (0, 1]; the request's strategies are blended with weight
 * 1 / (1 + position in the request), so the first named counts most. Each item's reason is the
 * strategy that gave it the largest weighted share. When the blend gives fewer items than asked
 * (a newcomer, a product nobody viewed), the fallback chain fills the rest, each tier ranked below
 * everything before it: for you, then popular in the customer's groups, then popular overall, then
 * trending, then the newest products of the catalogue — so the list is empty only when nothing at
 * all may be shown.
 *
 * Threads: one writer (reco_observe, reco_order, reco_set_groups, reco_merge, reco_forget) and
 * any number of concurrent readers (reco_recommend), never both at once: the engine's
 * readers-writer lock. Errors: RECO_NOMEM leaves the models consistent (the interaction is then
 * partly learned). Memory: see reco_stats; bounded by the models' caps (docs/recommendations.md).
 */
#ifndef ENGAGED_RECO_H
#define ENGAGED_RECO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reco/pop.h"
#include "reco/rec.h"

enum { RECO_OK = 0, RECO_NOMEM = -1, RECO_INVALID = -2 };

#define RECO_NOBODY UINT32_MAX /* no customer (an unknown visitor) */
#define RECO_NONE UINT32_MAX   /* no item or group */
#define RECO_HISTORY 24        /* interactions remembered per customer */
#define RECO_GROUPS 4          /* groups remembered per customer */
#define RECO_LIMIT_MAX 100     /* items one request may ask for */
#define RECO_ANCHORS_MAX 20    /* context items (a cart's lines) one request considers */
#define RECO_FRIENDS_MAX 50
#define RECO_SESSION_GAP_MS (30 * 60 * 1000)

/* What a customer did with a product; the value is its weight in "for you" and popularity (the
 * profile's favourites use the same scale). */
typedef enum reco_action {
    RECO_VIEW = 1,
    RECO_WISH = 2,
    RECO_CART = 3,
    RECO_PURCHASE = 5,
} reco_action;

/* The strategies, in the order of reco_strategy_name(). For a candidate x, before division by
 * the strategy's best score:
 *   SESSION          rec_recommend()'s blend over the customer's current session (the views
 *                    back from now with no gap over RECO_SESSION_GAP_MS; none after an idle
 *                    gap), the anchor appended when it is not already the last view; the last
 *                    view itself is left out (it is on screen). Reason: the session's last item.
 *   VIEWED_TOGETHER  sum over the anchors a of coviewed(a, x): the sessions that viewed both
 *                    (a session counts once; per product the RECO_COVIEWS heaviest neighbours).
 *   BOUGHT_TOGETHER  sum over the anchors a of cooc_weight(a, x) in the orders.
 *   SIMILAR          VIEWED_TOGETHER's score, plus, for an anchor nobody co-viewed (a cold
 *                    item), 0.5 * popularity in the anchor's most specific category / the best.
 *   FOR_YOU          sum over the customer's distinct history items h, with weight
 *                    w(h) = sum of action * 2^(-age / 7 days) over h's interactions, of
 *                    w(h) * (coviewed(h, x) / max coviewed(h, .) + bought(h, x) / max
 *                    bought(h, .)), for the RECO_SEEDS heaviest h. Reason: the h that gave most.
 *   FRIENDS          the number of friends whose history holds a purchase of x.
 *   SEGMENT          sum over the customer's groups g of popular(g, x) / max popular(g, .).
 *   CATEGORY         the same over the anchors' categories (else the customer's favourites).
 *   TRENDING         trending(0, x). POPULAR: popular(0, x).
 *   NEW              the catalogue's newest items: 1 / (1 + rank by ordinal, newest first).
 * Anchors: the request's context items (the product shown, the cart's lines); without any, the
 * customer's last viewed item. */
typedef enum reco_strategy {
    RECO_S_SESSION,
    RECO_S_VIEWED_TOGETHER,
    RECO_S_BOUGHT_TOGETHER,
    RECO_S_SIMILAR,
    RECO_S_FOR_YOU,
    RECO_S_FRIENDS,
    RECO_S_SEGMENT,
    RECO_S_CATEGORY,
    RECO_S_TRENDING,
    RECO_S_POPULAR,
    RECO_S_NEW,
    RECO_NSTRATEGIES
} reco_strategy;

#define RECO_SEEDS 5 /* history items FOR_YOU expands */

/* "session", "viewed_together", "bought_together", "similar", "for_you", "friends_bought",
 * "popular_in_segment", "popular_in_category", "trending", "popular", "new"; NULL out of range. */
const char *reco_strategy_name(reco_strategy s);
/* The strategy named name[0..len); -1 when none. */
int reco_strategy_lookup(const char *name, size_t len);

typedef enum reco_context {
    RECO_CTX_HOME,
    RECO_CTX_PRODUCT,
    RECO_CTX_CART,
    RECO_CTX_EMAIL
} reco_context;
/* "home", "product", "cart", "email"; lookup returns -1 for anything else. */
const char *reco_context_name(reco_context c);
int reco_context_lookup(const char *name);
/* The strategies a context uses when the request names none, in blend order; returns how many. */
size_t reco_context_strategies(reco_context c, reco_strategy out[RECO_NSTRATEGIES]);

typedef struct reco_opts {
    rec_params session;     /* the session model (rec.h); session_gap is set from the above */
    uint32_t cooc_per_item; /* bought-together neighbours kept per product */
    uint32_t coviews;       /* viewed-together neighbours kept per product */
    pop_opts pop;           /* popularity */
} reco_opts;

void reco_opts_default(reco_opts *o);

typedef struct reco reco;

reco *reco_new(const reco_opts *o); /* NULL when out of memory or o is invalid */
void reco_free(reco *r);

/* ---- Learning (the writer) ---- */

/* Customer who (RECO_NOBODY: only the shop-wide models learn) did action with item at t_ms.
 * groups[0..ngroups) are the pop groups the interaction counts in besides the whole shop (the
 * item's categories); the customer's own groups (reco_set_groups) are added here. */
int reco_observe(reco *r, uint32_t who, reco_action action, uint32_t item, const uint32_t *groups,
                 size_t ngroups, int64_t t_ms);
/* Only the customer's history: for rebuilding it from the log (an unmerge), when the shop-wide
 * models have already counted the interaction. */
int reco_remember(reco *r, uint32_t who, reco_action action, uint32_t item, int64_t t_ms);
/* An order's products: pairs within the order, and each against the customer's earlier
 * purchases in the history (weight 1 and 0.5). Call before observing the order's purchases. */
int reco_order(reco *r, uint32_t who, const uint32_t *items, size_t n);
/* The customer's groups (segments, demographics), at most RECO_GROUPS; replaces the old ones. */
int reco_set_groups(reco *r, uint32_t who, const uint32_t *groups, size_t n);
/* Customer from became into (a merge): histories interleave by time, the newest kept. */
int reco_merge(reco *r, uint32_t from, uint32_t into);
/* Forgets everything kept about the customer (erasure). The shop-wide models keep their counts,
 * which name no one. */
void reco_forget(reco *r, uint32_t who);

/* ---- Recommending (readers) ---- */

typedef struct reco_query {
    uint32_t who;                    /* RECO_NOBODY for an unknown visitor */
    const reco_strategy *strategies; /* blend order; none: the context's */
    size_t nstrategies;
    reco_context context;
    const uint32_t *anchors; /* context items: the product shown, the cart */
    size_t nanchors;
    const uint32_t *friends; /* friends' customer slots */
    size_t nfriends;
    const uint32_t *categories; /* CATEGORY's groups when there are no anchors */
    size_t ncategories;
    const uint32_t *exclude; /* never shown (the anchors are always excluded) */
    size_t nexclude;
    /* The caller's decision on one candidate: shown or not. May be called for many candidates;
     * must be reentrant (several readers at once). */
    bool (*accept)(void *arg, uint32_t item);
    /* A factor (>= 0) the candidate's score is multiplied by; NULL: 1. */
    double (*boost)(void *arg, uint32_t item);
    /* For diversity: the item's category and brand as ids (RECO_NONE: none). NULL: no caps. */
    void (*facets)(void *arg, uint32_t item, uint32_t *category, uint32_t *brand);
    void *arg;
    uint32_t max_per_category, max_per_brand; /* 0: no cap */
    uint32_t catalogue_items;                 /* ordinals 0..n-1 exist, for NEW */
    size_t limit;                             /* 1..RECO_LIMIT_MAX */
    int64_t now_ms;
} reco_query;

typedef struct reco_result {
    uint32_t item;
    float score;            /* the blend; only the order is meaningful */
    reco_strategy strategy; /* the reason: the strategy that gave most */
    uint32_t because;       /* the item (or, for SEGMENT and CATEGORY, the group) it names, or
                               RECO_NONE */
    bool fallback;          /* came from the fallback chain */
} reco_result;

/* Up to q->limit items into out (room for q->limit), best first; returns how many, or RECO_NOMEM /
 * RECO_INVALID (a bad limit) as a negative value. Cost: bounded by the strategies' candidate
 * pools (about 4 * limit + 50 each) and the accept() calls on them. */
long reco_recommend(const reco *r, const reco_query *q, reco_result *out);

/* The customer's history, newest first: up to max items and actions; returns how many. */
size_t reco_history(const reco *r, uint32_t who, uint32_t *items, reco_action *actions,
                    int64_t *t_ms, size_t max);

typedef struct reco_stats {
    rec_stats session;
    size_t cooc_bytes, coview_bytes, pop_bytes, history_bytes, customers;
} reco_stats;
void reco_get_stats(const reco *r, reco_stats *st);

#endif
