/* reco — the models behind recommendations, and one request's strategies, blend and fallbacks.
 *
 * A request works on a pool per strategy: the strategy's raw candidates (item, raw score, the item
 * its reason names), each asked of accept() once per request (the answer is cached in the
 * request's table), the rejected dropped, the rest divided by the best raw score. The pools then
 * add into one table, which is boosted, sorted and cut with the diversity caps; fallback tiers
 * append below. */
#include "reco/reco.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reco/cooc.h"
#include "util/tls.h"
#include "util/u32map.h"
#include "util/vec.h"

/* ---------------------------------------------------------------------------------------------- */
/* Names */
/* ---------------------------------------------------------------------------------------------- */

static const char *const strategy_names[RECO_NSTRATEGIES] = {
    [RECO_S_SESSION] = "session",
    [RECO_S_VIEWED_TOGETHER] = "viewed_together",
    [RECO_S_BOUGHT_TOGETHER] = "bought_together",
    [RECO_S_SIMILAR] = "similar",
    [RECO_S_FOR_YOU] = "for_you",
    [RECO_S_FRIENDS] = "friends_bought",
    [RECO_S_SEGMENT] = "popular_in_segment",
    [RECO_S_CATEGORY] = "popular_in_category",
    [RECO_S_TRENDING] = "trending",
    [RECO_S_POPULAR] = "popular",
    [RECO_S_NEW] = "new",
};

const char *reco_strategy_name(reco_strategy s) {
    return (unsigned)s < RECO_NSTRATEGIES ? strategy_names[s] : NULL;
}

int reco_strategy_lookup(const char *name, size_t len) {
    for (int i = 0; i < RECO_NSTRATEGIES; i++)
        if (strlen(strategy_names[i]) == len && memcmp(strategy_names[i], name, len) == 0) return i;
    return -1;
}

static const char *const context_names[] = {"home", "product", "cart", "email"};

const char *reco_context_name(reco_context c) {
    return (unsigned)c < sizeof context_names / sizeof *context_names ? context_names[c] : NULL;
}

int reco_context_lookup(const char *name) {
    for (size_t i = 0; name && i < sizeof context_names / sizeof *context_names; i++)
        if (strcmp(context_names[i], name) == 0) return (int)i;
    return -1;
}

/* What each page asks for when the request names no strategy: a product page cross-sells from the
 * product, a cart from its lines, home and email from the customer. */
static const reco_strategy context_strategies[][5] = {
    [RECO_CTX_HOME] = {RECO_S_SESSION, RECO_S_FOR_YOU, RECO_S_SEGMENT, RECO_S_TRENDING},
    [RECO_CTX_PRODUCT] = {RECO_S_SESSION, RECO_S_VIEWED_TOGETHER, RECO_S_BOUGHT_TOGETHER,
                          RECO_S_SIMILAR},
    [RECO_CTX_CART] = {RECO_S_BOUGHT_TOGETHER, RECO_S_SESSION, RECO_S_VIEWED_TOGETHER,
                       RECO_S_FOR_YOU},
    [RECO_CTX_EMAIL] = {RECO_S_FOR_YOU, RECO_S_SEGMENT, RECO_S_POPULAR},
};
static const size_t context_nstrategies[] = {4, 4, 4, 3};

size_t reco_context_strategies(reco_context c, reco_strategy out[RECO_NSTRATEGIES]) {
    if ((unsigned)c > RECO_CTX_EMAIL) return 0;
    memcpy(out, context_strategies[c], context_nstrategies[c] * sizeof *out);
    return context_nstrategies[c];
}

/* ---------------------------------------------------------------------------------------------- */
/* State */
/* ---------------------------------------------------------------------------------------------- */

/* One remembered interaction: 9 bytes, packed, as a million customers hold up to RECO_HISTORY
 * each (time in seconds lasts until 2106). */
typedef struct __attribute__((packed)) hentry {
    uint32_t item;
    uint32_t t_s;
    uint8_t action;
} hentry;

/* 32 bytes, held in one array by customer slot (no allocation and pointer of its own). */
typedef struct cust {
    hentry *h; /* sized to use, up to RECO_HISTORY; a ring once full: h[head] is the oldest */
    uint8_t n, alloc, head, ngroups;
    bool used; /* the customer has a history or groups */
    uint32_t groups[RECO_GROUPS];
} cust;

_Static_assert(sizeof(hentry) == 9, "history entries are packed");
_Static_assert(sizeof(void *) != 8 || sizeof(cust) == 32, "a customer record is 32 bytes");

struct reco {
    reco_opts o;
    rec_model *session;
    cooc *bought, *coview;
    pop *pop;
    cust *custs; /* by customer slot */
    size_t ncusts;
    size_t customers, history_bytes;
};

void reco_opts_default(reco_opts *o) {
    memset(o, 0, sizeof *o);
    rec_params_default(&o->session);
    o->session.session_gap = RECO_SESSION_GAP_MS;
    /* A server's model forgets its oldest sessions past this: 1M sessions of ~5 views is some
     * 40 MB (docs/recommendations.md). */
    o->session.max_sessions = 1000000;
    /* Fewer neighbour sessions read per query than the offline defaults: a third of the cost, and
     * no loss on Diginetica's validation split (docs/recommendations.md). */
    o->session.knn[0].sample = 150;
    o->session.knn[1].sample = 300;
    o->session.knn[0].neighbours = 50;
    o->session.knn[1].neighbours = 100;
    o->session.sr_sample = 300;
    /* A product page's answer for visitors without a session of their own, per product: 64k
     * entries of 40 bytes, plus each answer (about 45 items of 8 bytes on the bench store). */
    o->session.cache_slots = 65536;
    o->cooc_per_item = 64;
    o->coviews = 64;
    pop_opts_default(&o->pop);
}

reco *reco_new(const reco_opts *o) {
    reco *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->o = *o;
    r->session = rec_model_new(&o->session);
    r->bought = cooc_new(o->cooc_per_item);
    r->coview = cooc_new(o->coviews);
    r->pop = pop_new(&o->pop);
    if (!r->session || !r->bought || !r->coview || !r->pop) {
        reco_free(r);
        return NULL;
    }
    return r;
}

void reco_free(reco *r) {
    if (!r) return;
    rec_model_free(r->session);
    cooc_free(r->bought);
    cooc_free(r->coview);
    pop_free(r->pop);
    for (size_t i = 0; i < r->ncusts; i++)
        free(r->custs[i].h);
    free(r->custs);
    free(r);
}

/* The customer's record, NULL when they have none. Valid until the next cust_make(). */
static const cust *cust_get(const reco *r, uint32_t who) {
    return who < r->ncusts && r->custs[who].used ? &r->custs[who] : NULL;
}

static cust *cust_make(reco *r, uint32_t who) {
    if (vec_reserve_filled((void **)&r->custs, &r->ncusts, (size_t)who + 1, sizeof *r->custs, 0))
        return NULL;
    cust *c = &r->custs[who];
    if (!c->used) {
        c->used = true;
        r->customers++;
    }
    return c;
}

/* The i-th entry, oldest first. */
static const hentry *hist_at(const cust *c, size_t i) {
    size_t j = (size_t)c->head + i;
    return &c->h[j >= RECO_HISTORY ? j - RECO_HISTORY : j];
}

static int hist_push(reco *r, cust *c, hentry e) {
    if (c->n < RECO_HISTORY) {
        if (c->n == c->alloc) {
            /* A quarter more each time, as vec_reserve_small() grows: most customers never
             * fill the ring. */
            uint8_t a = (uint8_t)(c->alloc + (c->alloc >= 4 ? c->alloc / 4 : 1));
            if (a > RECO_HISTORY) a = RECO_HISTORY;
            hentry *h = realloc(c->h, a * sizeof *h);
            if (!h) return RECO_NOMEM;
            r->history_bytes += (size_t)(a - c->alloc) * sizeof *h;
            c->h = h;
            c->alloc = a;
        }
        c->h[c->n++] = e;
        return RECO_OK;
    }
    c->h[c->head] = e;
    c->head = (uint8_t)((c->head + 1) % RECO_HISTORY);
    return RECO_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Learning */
/* ---------------------------------------------------------------------------------------------- */

static int pop_rc(int rc) {
    return rc == POP_NOMEM ? RECO_NOMEM : RECO_OK;
}

/* The views of the customer's current session as of t_ms, newest first: back from t_ms while no
 * two are more than RECO_SESSION_GAP_MS apart (none after an idle gap), at most RECO_HISTORY;
 * each item once when distinct. The one definition of "the session" that learning and the
 * session strategy share. */
static size_t current_session(const cust *c, int64_t t_ms, bool distinct,
                              uint32_t out[RECO_HISTORY]) {
    size_t n = 0;
    long long prev = t_ms / 1000;
    for (size_t i = c ? c->n : 0; i > 0; i--) {
        const hentry *e = hist_at(c, i - 1);
        if (e->action != RECO_VIEW) continue;
        if ((prev - (long long)e->t_s) * 1000 > RECO_SESSION_GAP_MS) break;
        prev = e->t_s;
        size_t j = 0;
        while (distinct && j < n && out[j] != e->item)
            j++;
        if (!distinct || j == n) out[n++] = e->item;
    }
    return n;
}

/* A view of an item new to the session pairs it with each item the session viewed before: so a
 * session counts each pair once, however often either was viewed. */
static int coview_learn(reco *r, const cust *c, uint32_t item, int64_t t_ms) {
    uint32_t s[RECO_HISTORY];
    size_t n = current_session(c, t_ms, true, s);
    for (size_t i = 0; i < n; i++)
        if (s[i] == item) return RECO_OK;
    return n && cooc_add_cross(r->coview, &item, 1, s, n, 1.0f) == COOC_NOMEM ? RECO_NOMEM
                                                                              : RECO_OK;
}

int reco_observe(reco *r, uint32_t who, reco_action action, uint32_t item, const uint32_t *groups,
                 size_t ngroups, int64_t t_ms) {
    if (item == RECO_NONE) return RECO_INVALID;
    int rc = RECO_OK;
    /* Only views make sessions: "next item" and "viewed together" are about browsing. */
    if (action == RECO_VIEW && who != RECO_NOBODY &&
        rec_observe(r->session, who, item, t_ms) == REC_NOMEM)
        rc = RECO_NOMEM;
    double w = (double)action;
    if (pop_add(r->pop, 0, item, w, t_ms) == POP_NOMEM) rc = RECO_NOMEM;
    for (size_t i = 0; i < ngroups; i++)
        if (groups[i] && groups[i] < r->o.pop.max_groups &&
            pop_rc(pop_add(r->pop, groups[i], item, w, t_ms)))
            rc = RECO_NOMEM;
    if (who == RECO_NOBODY) return rc;
    const cust *c = cust_get(r, who);
    if (action == RECO_VIEW && c && coview_learn(r, c, item, t_ms)) rc = RECO_NOMEM;
    for (size_t i = 0; c && i < c->ngroups; i++)
        if (pop_rc(pop_add(r->pop, c->groups[i], item, w, t_ms))) rc = RECO_NOMEM;
    if (reco_remember(r, who, action, item, t_ms)) rc = RECO_NOMEM;
    return rc;
}

int reco_remember(reco *r, uint32_t who, reco_action action, uint32_t item, int64_t t_ms) {
    if (who == RECO_NOBODY || item == RECO_NONE) return RECO_INVALID;
    cust *c = cust_make(r, who);
    if (!c) return RECO_NOMEM;
    int64_t t_s = t_ms > 0 ? t_ms / 1000 : 0;
    hentry e = {item, t_s > UINT32_MAX ? UINT32_MAX : (uint32_t)t_s, (uint8_t)action};
    return hist_push(r, c, e);
}

int reco_order(reco *r, uint32_t who, const uint32_t *items, size_t n) {
    int rc = cooc_add_group(r->bought, items, n, 1.0f);
    if (rc == COOC_INVALID) return RECO_INVALID;
    const cust *c = cust_get(r, who);
    uint32_t earlier[RECO_HISTORY];
    size_t ne = 0;
    for (size_t i = 0; c && i < c->n; i++)
        if (hist_at(c, i)->action == RECO_PURCHASE) earlier[ne++] = hist_at(c, i)->item;
    if (ne && cooc_add_cross(r->bought, items, n, earlier, ne, 0.5f) == COOC_NOMEM) rc = COOC_NOMEM;
    return rc == COOC_NOMEM ? RECO_NOMEM : RECO_OK;
}

int reco_set_groups(reco *r, uint32_t who, const uint32_t *groups, size_t n) {
    if (who == RECO_NOBODY) return RECO_INVALID;
    const cust *old = cust_get(r, who);
    if (!old && !n) return RECO_OK;
    cust *c = cust_make(r, who);
    if (!c) return RECO_NOMEM;
    c->ngroups = 0;
    for (size_t i = 0; i < n && c->ngroups < RECO_GROUPS; i++)
        if (groups[i] && groups[i] < r->o.pop.max_groups) c->groups[c->ngroups++] = groups[i];
    return RECO_OK;
}

static int hentry_by_time(const void *pa, const void *pb) {
    const hentry *a = pa, *b = pb;
    return (a->t_s > b->t_s) - (a->t_s < b->t_s);
}

int reco_merge(reco *r, uint32_t from, uint32_t into) {
    if (!cust_get(r, from) || from == into) return RECO_OK;
    cust *c = cust_make(r, into);
    if (!c) return RECO_NOMEM;
    const cust *f = cust_get(r, from); /* after cust_make(), which may move the records */
    hentry all[2 * RECO_HISTORY];
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        all[n++] = *hist_at(c, i);
    for (size_t i = 0; i < f->n; i++)
        all[n++] = *hist_at(f, i);
    /* A stable order: qsort is not, so ties keep the survivor's entries first by index. */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && hentry_by_time(&all[j - 1], &all[j]) > 0; j--) {
            hentry t = all[j];
            all[j] = all[j - 1];
            all[j - 1] = t;
        }
    size_t keep = n > RECO_HISTORY ? RECO_HISTORY : n;
    c->n = c->head = 0;
    for (size_t i = n - keep; i < n; i++)
        if (hist_push(r, c, all[i])) return RECO_NOMEM;
    for (size_t i = 0; i < f->ngroups; i++) {
        bool have = false;
        for (size_t j = 0; j < c->ngroups; j++)
            have |= c->groups[j] == f->groups[i];
        if (!have && c->ngroups < RECO_GROUPS) c->groups[c->ngroups++] = f->groups[i];
    }
    reco_forget(r, from);
    return RECO_OK;
}

void reco_forget(reco *r, uint32_t who) {
    if (!cust_get(r, who)) return;
    cust *c = &r->custs[who];
    r->history_bytes -= (size_t)c->alloc * sizeof(hentry);
    r->customers--;
    free(c->h);
    memset(c, 0, sizeof *c);
}

size_t reco_history(const reco *r, uint32_t who, uint32_t *items, reco_action *actions,
                    int64_t *t_ms, size_t max) {
    const cust *c = cust_get(r, who);
    size_t n = 0;
    for (size_t i = c ? c->n : 0; i > 0 && n < max; i--, n++) {
        const hentry *e = hist_at(c, i - 1);
        if (items) items[n] = e->item;
        if (actions) actions[n] = (reco_action)e->action;
        if (t_ms) t_ms[n] = (int64_t)e->t_s * 1000;
    }
    return n;
}

void reco_get_stats(const reco *r, reco_stats *st) {
    memset(st, 0, sizeof *st);
    rec_get_stats(r->session, &st->session);
    st->cooc_bytes = cooc_bytes(r->bought);
    st->coview_bytes = cooc_bytes(r->coview);
    st->pop_bytes = pop_bytes(r->pop);
    st->history_bytes = r->history_bytes + r->ncusts * sizeof *r->custs;
    st->customers = r->customers;
}

/* ---------------------------------------------------------------------------------------------- */
/* A request */
/* ---------------------------------------------------------------------------------------------- */

/* One strategy's candidates before normalisation. */
typedef struct cand {
    uint32_t item, because;
    double raw, best; /* best: the largest single contribution, whose source is `because` */
} cand;

typedef struct pool {
    cand *v;
    size_t n, alloc;
    u32map at; /* item -> index */
} pool;

/* One item of the blend. */
typedef struct entry {
    uint32_t item, because;
    double score, share; /* share: the largest weighted contribution, from `strategy` */
    reco_strategy strategy;
    bool fallback;
} entry;

enum { VERDICT_UNKNOWN, VERDICT_SHOWN, VERDICT_HIDDEN, VERDICT_CHOSEN };

typedef struct req {
    const reco *r;
    const reco_query *q;
    const cust *c;
    size_t want;    /* candidates each strategy gathers */
    u32map verdict; /* item -> VERDICT_*: accept() asked once per item */
    pool p;
    entry *e;
    size_t ne, ae;
    u32map at; /* item -> index into e */
    rec_item *tmp;
    pop_item *ptmp;
    cooc_item *ctmp;
} req;

/* Most candidates one strategy gathers: 4 * limit + 50 at the largest limit. */
#define RECO_WANT_MAX (4 * RECO_LIMIT_MAX + 50)

/* What requests reuse, one per thread: the tables and vectors keep their size between requests,
 * so a server allocates nothing per request once warm. Freed when the thread exits. */
typedef struct scratch {
    u32map verdict, at;
    pool p;
    entry *e;
    size_t ae;
    rec_item tmp[RECO_WANT_MAX];
    pop_item ptmp[RECO_WANT_MAX];
    cooc_item ctmp[RECO_WANT_MAX];
} scratch;

static void *scratch_new(void) {
    return calloc(1, sizeof(scratch));
}

static void scratch_free(void *arg) {
    scratch *x = arg;
    u32map_free(&x->verdict);
    u32map_free(&x->at);
    u32map_free(&x->p.at);
    free(x->p.v);
    free(x->e);
    free(x);
}

static tls_slot scratch_slot = TLS_SLOT(scratch_new, scratch_free);

static int pool_reset(pool *p) {
    p->n = 0;
    return u32map_reset(&p->at, 64) ? RECO_NOMEM : RECO_OK;
}

static int pool_add(pool *p, uint32_t item, double value, uint32_t because) {
    if (!(value > 0)) return RECO_OK;
    bool fresh;
    uint32_t *slot = u32map_put(&p->at, item, &fresh);
    if (!slot) return RECO_NOMEM;
    if (fresh) {
        if (vec_reserve((void **)&p->v, &p->alloc, p->n + 1, sizeof *p->v)) return RECO_NOMEM;
        *slot = (uint32_t)p->n;
        p->v[p->n++] = (cand){item, because, 0, 0};
    }
    cand *c = &p->v[*slot];
    c->raw += value;
    if (value > c->best) {
        c->best = value;
        c->because = because;
    }
    return RECO_OK;
}

/* Whether the item may be shown: excluded ids and anchors first, then the caller, once. */
static bool shown(req *rq, uint32_t item) {
    bool fresh;
    uint32_t *v = u32map_put(&rq->verdict, item, &fresh);
    if (!v) return false;
    if (fresh)
        *v = rq->q->accept && !rq->q->accept(rq->q->arg, item) ? VERDICT_HIDDEN : VERDICT_SHOWN;
    return *v == VERDICT_SHOWN;
}

static uint32_t last_view(const req *rq) {
    for (size_t i = rq->c ? rq->c->n : 0; i > 0; i--)
        if (hist_at(rq->c, i - 1)->action == RECO_VIEW) return hist_at(rq->c, i - 1)->item;
    return RECO_NONE;
}

/* The anchors: the request's context items, else the customer's last view. */
static size_t anchors(const req *rq, uint32_t out[RECO_ANCHORS_MAX]) {
    size_t n = 0;
    for (size_t i = 0; i < rq->q->nanchors && n < RECO_ANCHORS_MAX; i++)
        out[n++] = rq->q->anchors[i];
    if (!n && (out[0] = last_view(rq)) != RECO_NONE) n = 1;
    return n;
}

static int gen_session(req *rq) {
    uint32_t s[RECO_HISTORY + 1];
    /* The current session, repeats included (they matter to the model): a returning customer's
     * old sessions are "for you"'s business. */
    size_t n = current_session(rq->c, rq->q->now_ms, false, s);
    for (size_t i = 0; i < n / 2; i++) { /* oldest first */
        uint32_t t = s[i];
        s[i] = s[n - 1 - i];
        s[n - 1 - i] = t;
    }
    if (rq->q->nanchors && rq->q->context == RECO_CTX_PRODUCT &&
        (!n || s[n - 1] != rq->q->anchors[0]))
        s[n++] = rq->q->anchors[0];
    if (!n) return RECO_OK;
    size_t got = rec_recommend(rq->r->session, s, n, rq->want, rq->tmp);
    /* The model rightly predicts repeat views, but the product on screen is not a suggestion. */
    for (size_t i = 0; i < got; i++)
        if (rq->tmp[i].item != s[n - 1] &&
            pool_add(&rq->p, rq->tmp[i].item, rq->tmp[i].score, s[n - 1]))
            return RECO_NOMEM;
    return RECO_OK;
}

/* a's neighbours in a co-occurrence model, each scale × its weight (÷ the heaviest's, by_max),
 * naming a. A row holds at most per_item neighbours, usually fewer than a request wants: then it
 * is read as it lies, unsorted, since the pool sums and ranks by score, not by arrival. */
static int add_cooc(req *rq, const cooc *model, uint32_t a, double scale, bool by_max) {
    size_t n;
    const cooc_item *row = cooc_row(model, a, &n);
    if (n > rq->want) {
        n = cooc_top(model, a, rq->want, rq->ctmp);
        row = rq->ctmp;
    }
    double div = 1;
    if (by_max && n > 0) {
        div = row[0].weight;
        for (size_t i = 1; i < n; i++)
            if (row[i].weight > div) div = row[i].weight;
    }
    for (size_t i = 0; i < n; i++)
        if (pool_add(&rq->p, row[i].item, scale * row[i].weight / div, a)) return RECO_NOMEM;
    return RECO_OK;
}

/* popular(g, .) / its best, times scale, naming `because`. */
static int add_popular(req *rq, uint32_t g, pop_kind kind, double scale, uint32_t because) {
    size_t got = pop_top(rq->r->pop, g, kind, rq->q->now_ms, rq->want, rq->ptmp);
    for (size_t i = 0; i < got; i++)
        if (pool_add(&rq->p, rq->ptmp[i].item, scale * rq->ptmp[i].score / rq->ptmp[0].score,
                     because))
            return RECO_NOMEM;
    return RECO_OK;
}

/* Each anchor's neighbours in one co-occurrence model. */
static int gen_cooc(req *rq, const cooc *model) {
    uint32_t a[RECO_ANCHORS_MAX];
    size_t n = anchors(rq, a);
    for (size_t i = 0; i < n; i++)
        if (add_cooc(rq, model, a[i], 1, false)) return RECO_NOMEM;
    return RECO_OK;
}

static int gen_viewed(req *rq) {
    return gen_cooc(rq, rq->r->coview);
}

static int gen_bought(req *rq) {
    return gen_cooc(rq, rq->r->bought);
}

/* Categories are groups the caller names through the query: CATEGORY and SIMILAR take the
 * anchors' categories from q->categories (the caller resolves them), so reco needs no catalogue. */
static int gen_similar(req *rq) {
    uint32_t a[RECO_ANCHORS_MAX];
    size_t n = anchors(rq, a);
    for (size_t i = 0; i < n; i++) {
        size_t before = rq->p.n;
        if (add_cooc(rq, rq->r->coview, a[i], 1, false)) return RECO_NOMEM;
        if (rq->p.n > before) continue;
        /* A cold anchor: what is popular in its most specific category stands in. */
        if (rq->q->ncategories &&
            add_popular(rq, rq->q->categories[rq->q->ncategories - 1], POP_POPULAR, 0.5, a[i]))
            return RECO_NOMEM;
    }
    return RECO_OK;
}

static int gen_for_you(req *rq) {
    const cust *c = rq->c;
    if (!c) return RECO_OK;
    struct seed {
        uint32_t item;
        double w;
    } seeds[RECO_HISTORY];
    size_t ns = 0;
    for (size_t i = 0; i < c->n; i++) {
        const hentry *e = hist_at(c, i);
        double age_days = ((double)rq->q->now_ms / 1000.0 - (double)e->t_s) / 86400.0;
        double w = (double)e->action * exp2(-(age_days > 0 ? age_days : 0) / 7.0);
        size_t j = 0;
        while (j < ns && seeds[j].item != e->item)
            j++;
        if (j == ns) seeds[ns++] = (struct seed){e->item, 0};
        seeds[j].w += w;
    }
    /* The RECO_SEEDS heaviest (ties: the smaller id), by selection: ns <= 24. */
    for (size_t k = 0; k < ns && k < RECO_SEEDS; k++) {
        size_t best = k;
        for (size_t j = k + 1; j < ns; j++)
            if (seeds[j].w > seeds[best].w ||
                (seeds[j].w == seeds[best].w && seeds[j].item < seeds[best].item))
                best = j;
        struct seed t = seeds[k];
        seeds[k] = seeds[best];
        seeds[best] = t;
        if (add_cooc(rq, rq->r->coview, seeds[k].item, seeds[k].w, true) ||
            add_cooc(rq, rq->r->bought, seeds[k].item, seeds[k].w, true))
            return RECO_NOMEM;
    }
    return RECO_OK;
}

static int gen_friends(req *rq) {
    for (size_t f = 0; f < rq->q->nfriends && f < RECO_FRIENDS_MAX; f++) {
        const cust *c = cust_get(rq->r, rq->q->friends[f]);
        uint32_t seen[RECO_HISTORY];
        size_t ns = 0;
        for (size_t i = 0; c && i < c->n; i++) {
            const hentry *e = hist_at(c, i);
            if (e->action != RECO_PURCHASE) continue;
            size_t j = 0;
            while (j < ns && seen[j] != e->item)
                j++;
            if (j < ns) continue; /* a friend counts once per item */
            seen[ns++] = e->item;
            if (pool_add(&rq->p, e->item, 1, RECO_NONE)) return RECO_NOMEM;
        }
    }
    return RECO_OK;
}

static int gen_segment(req *rq) {
    for (size_t i = 0; rq->c && i < rq->c->ngroups; i++)
        if (add_popular(rq, rq->c->groups[i], POP_POPULAR, 1, rq->c->groups[i])) return RECO_NOMEM;
    return RECO_OK;
}

static int gen_category(req *rq) {
    for (size_t i = 0; i < rq->q->ncategories; i++)
        if (add_popular(rq, rq->q->categories[i], POP_POPULAR, 1, rq->q->categories[i]))
            return RECO_NOMEM;
    return RECO_OK;
}

static int gen_trending(req *rq) {
    return add_popular(rq, 0, POP_TRENDING, 1, RECO_NONE);
}

static int gen_popular(req *rq) {
    return add_popular(rq, 0, POP_POPULAR, 1, RECO_NONE);
}

/* The newest products, skipping the hidden ones as it goes: in a young shop this tier is what
 * keeps a list from being empty, and it must reach past a sold-out run. */
static int gen_new(req *rq) {
    size_t rank = 0, found = 0;
    for (uint32_t i = rq->q->catalogue_items; i > 0 && found < rq->want && rank < 100000; i--) {
        uint32_t item = i - 1;
        rank++;
        if (!shown(rq, item)) continue;
        found++;
        if (pool_add(&rq->p, item, 1.0 / (double)rank, RECO_NONE)) return RECO_NOMEM;
    }
    return RECO_OK;
}

static int (*const generators[RECO_NSTRATEGIES])(req *rq) = {
    [RECO_S_SESSION] = gen_session,
    [RECO_S_VIEWED_TOGETHER] = gen_viewed,
    [RECO_S_BOUGHT_TOGETHER] = gen_bought,
    [RECO_S_SIMILAR] = gen_similar,
    [RECO_S_FOR_YOU] = gen_for_you,
    [RECO_S_FRIENDS] = gen_friends,
    [RECO_S_SEGMENT] = gen_segment,
    [RECO_S_CATEGORY] = gen_category,
    [RECO_S_TRENDING] = gen_trending,
    [RECO_S_POPULAR] = gen_popular,
    [RECO_S_NEW] = gen_new,
};

/* Runs strategy s into the request's pool and drops what may not be shown. Returns the best raw
 * score left (0: nothing), or -1 when out of memory. */
static double run_strategy(req *rq, reco_strategy s) {
    if (pool_reset(&rq->p) || generators[s](rq)) return -1;
    double best = 0;
    size_t k = 0;
    for (size_t i = 0; i < rq->p.n; i++) {
        if (!shown(rq, rq->p.v[i].item)) continue;
        rq->p.v[k++] = rq->p.v[i];
        if (rq->p.v[i].raw > best) best = rq->p.v[i].raw;
    }
    rq->p.n = k;
    return best;
}

static entry *entry_of(req *rq, uint32_t item) {
    bool fresh;
    uint32_t *slot = u32map_put(&rq->at, item, &fresh);
    if (!slot) return NULL;
    if (fresh) {
        if (vec_reserve((void **)&rq->e, &rq->ae, rq->ne + 1, sizeof *rq->e)) return NULL;
        *slot = (uint32_t)rq->ne;
        rq->e[rq->ne++] = (entry){.item = item, .because = RECO_NONE};
    }
    return &rq->e[*slot];
}

/* The answer's order: by score, ties to the lower item. */
static inline bool ranks_before(const entry *a, const entry *b) {
    return a->score > b->score || (a->score == b->score && a->item < b->item);
}

/* Restores the heap (the best entry at the root) below i in v[0..n). */
static void entry_sift(entry *v, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < n && ranks_before(&v[l], &v[best])) best = l;
        if (r < n && ranks_before(&v[r], &v[best])) best = r;
        if (best == i) return;
        entry t = v[i];
        v[i] = v[best];
        v[best] = t;
        i = best;
    }
}

static int by_raw(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->raw != b->raw) return a->raw > b->raw ? -1 : 1;
    return a->item < b->item ? -1 : a->item > b->item;
}

typedef struct facet_count {
    uint32_t id, n;
} facet_count;

/* Whether one more item of this category and brand fits the caps; counts it when it does. */
static bool diversity_ok(const reco_query *q, uint32_t item, facet_count *cats, size_t *ncats,
                         facet_count *brands, size_t *nbrands) {
    if (!q->facets || (!q->max_per_category && !q->max_per_brand)) return true;
    uint32_t cat, brand;
    q->facets(q->arg, item, &cat, &brand);
    struct {
        uint32_t id, cap;
        facet_count *v;
        size_t *n;
    } f[2] = {{cat, q->max_per_category, cats, ncats}, {brand, q->max_per_brand, brands, nbrands}};
    size_t at[2];
    for (int k = 0; k < 2; k++) {
        at[k] = SIZE_MAX;
        if (f[k].id == RECO_NONE || !f[k].cap) continue;
        for (size_t i = 0; i < *f[k].n; i++)
            if (f[k].v[i].id == f[k].id) at[k] = i;
        if (at[k] != SIZE_MAX && f[k].v[at[k]].n >= f[k].cap) return false;
    }
    for (int k = 0; k < 2; k++) {
        if (f[k].id == RECO_NONE || !f[k].cap) continue;
        if (at[k] == SIZE_MAX)
            f[k].v[(*f[k].n)++] = (facet_count){f[k].id, 1};
        else
            f[k].v[at[k]].n++;
    }
    return true;
}

/* Every item reaching the answer was asked of shown(), so its verdict is in the table. */
static void mark_chosen(req *rq, uint32_t item) {
    uint32_t *v = u32map_get(&rq->verdict, item);
    if (v) *v = VERDICT_CHOSEN;
}

/* The fallback tiers, in order (the customer's own first, the catalogue's last). */
static const reco_strategy fallbacks[] = {RECO_S_FOR_YOU, RECO_S_SEGMENT, RECO_S_POPULAR,
                                          RECO_S_TRENDING, RECO_S_NEW};

long reco_recommend(const reco *r, const reco_query *q, reco_result *out) {
    if (!q->limit || q->limit > RECO_LIMIT_MAX || q->nstrategies > RECO_NSTRATEGIES)
        return RECO_INVALID;
    for (size_t i = 0; i < q->nstrategies; i++)
        if ((unsigned)q->strategies[i] >= RECO_NSTRATEGIES) return RECO_INVALID;
    reco_strategy ctx[RECO_NSTRATEGIES];
    const reco_strategy *strat = q->strategies;
    size_t nstrat = q->nstrategies;
    if (!nstrat) {
        nstrat = reco_context_strategies(q->context, ctx);
        strat = ctx;
    }
    scratch *x = tls_get(&scratch_slot);
    if (!x) return RECO_NOMEM;
    /* The request borrows the thread's scratch and gives back what it grew. */
    req rq = {.r = r,
              .q = q,
              .c = cust_get(r, q->who),
              .want = 4 * q->limit + 50,
              .verdict = x->verdict,
              .p = x->p,
              .e = x->e,
              .ae = x->ae,
              .at = x->at,
              .tmp = x->tmp,
              .ptmp = x->ptmp,
              .ctmp = x->ctmp};
    long rc = RECO_NOMEM;
    if (u32map_reset(&rq.verdict, 256) || u32map_reset(&rq.at, 256)) goto done;
    bool fresh;
    for (size_t i = 0; i < q->nanchors; i++) {
        uint32_t *v = u32map_put(&rq.verdict, q->anchors[i], &fresh);
        if (!v) goto done;
        *v = VERDICT_HIDDEN;
    }
    for (size_t i = 0; i < q->nexclude; i++) {
        uint32_t *v = u32map_put(&rq.verdict, q->exclude[i], &fresh);
        if (!v) goto done;
        *v = VERDICT_HIDDEN;
    }

    /* The blend. */
    bool used[RECO_NSTRATEGIES] = {false};
    for (size_t s = 0; s < nstrat; s++) {
        if (used[strat[s]]) continue;
        used[strat[s]] = true;
        double best = run_strategy(&rq, strat[s]);
        if (best < 0) goto done;
        double w = 1.0 / (double)(1 + s);
        for (size_t i = 0; i < rq.p.n; i++) {
            const cand *c = &rq.p.v[i];
            entry *e = entry_of(&rq, c->item);
            if (!e) goto done;
            double share = w * c->raw / best;
            e->score += share;
            if (share > e->share) {
                e->share = share;
                e->strategy = strat[s];
                e->because = c->because;
            }
        }
    }
    for (size_t i = 0; q->boost && i < rq.ne; i++) {
        double b = q->boost(q->arg, rq.e[i].item);
        rq.e[i].score *= isfinite(b) && b > 0 ? b : 0;
    }
    /* The best entries in order, taken from a heap: an answer needs `limit` of the couple of
     * hundred merged (a few more when the caps skip some), and sorting them all cost more. */
    for (size_t i = rq.ne / 2; i-- > 0;)
        entry_sift(rq.e, rq.ne, i);
    facet_count cats[RECO_LIMIT_MAX], brands[RECO_LIMIT_MAX];
    size_t ncats = 0, nbrands = 0, n = 0;
    for (size_t left = rq.ne; left && n < q->limit;) {
        entry top = rq.e[0];
        rq.e[0] = rq.e[--left];
        entry_sift(rq.e, left, 0);
        if (!(top.score > 0)) continue; /* boosted to nothing */
        if (!diversity_ok(q, top.item, cats, &ncats, brands, &nbrands)) continue;
        out[n++] = (reco_result){top.item, (float)top.score, top.strategy, top.because, false};
        mark_chosen(&rq, top.item);
    }

    /* Fallbacks: each tier ranks below everything chosen before it. */
    double floor = n ? out[n - 1].score : 1.0;
    for (size_t t = 0; t < sizeof fallbacks / sizeof *fallbacks && n < q->limit; t++) {
        if (used[fallbacks[t]]) continue;
        used[fallbacks[t]] = true;
        double best = run_strategy(&rq, fallbacks[t]);
        if (best < 0) goto done;
        if (rq.p.n) qsort(rq.p.v, rq.p.n, sizeof *rq.p.v, by_raw);
        double top = floor * 0.5;
        for (size_t i = 0; i < rq.p.n && n < q->limit; i++) {
            const cand *c = &rq.p.v[i];
            if (!diversity_ok(q, c->item, cats, &ncats, brands, &nbrands)) continue;
            float score = (float)(top * c->raw / best);
            out[n++] = (reco_result){c->item, score, fallbacks[t], c->because, true};
            floor = score;
            mark_chosen(&rq, c->item);
        }
    }
    rc = (long)n;
done:
    x->verdict = rq.verdict;
    x->p = rq.p;
    x->e = rq.e;
    x->ae = rq.ae;
    x->at = rq.at;
    return rc;
}
