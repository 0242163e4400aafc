/* rec — the session model: storage (items, sessions, inverted index), the scorers and the blend.
 *
 * Storage layout. Items get dense indices in order of first sight (imap maps the caller's id to
 * it). Each item keeps a ring of the ids of the most recent sessions that contain it (its
 * postings), at most once per session. Sessions get ids 0, 1, 2, ... in the order they begin;
 * session id lives in slot id mod max_sessions, so when the ring of slots wraps the oldest session
 * is overwritten and every posting that still names it is recognised as stale by comparing the
 * slot's id. Nothing else refers to a session, so forgetting one costs O(1).
 *
 * Queries never change the model: all scratch memory lives in a rec_ws. */
#include "reco/rec.h"

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "reco/rec_internal.h"
#include "util/tls.h"
#include "util/u32map.h"
#include "util/vec.h"

#define EMPTY UINT32_MAX

/* A hint to start loading an address the loop will need soon; nothing where the compiler has no
 * such builtin. */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Small helpers */
/* ---------------------------------------------------------------------------------------------- */

/* Makes room for need elements of size elem in *p (capacity *alloc), growing geometrically. */
static int grow(void **p, uint32_t *alloc, size_t need, size_t elem) {
    if (need > UINT32_MAX / 2) return REC_NOMEM;
    size_t a = *alloc;
    if (vec_reserve(p, &a, need, elem)) return REC_NOMEM;
    *alloc = (uint32_t)a;
    return REC_OK;
}

/* The smallest power of two >= n, but at most `most` (a power of two): session slots and cache
 * entries are found with a mask, not a division. */
static uint32_t pow2_at_least(uint32_t n, uint32_t most) {
    uint32_t p = 1;
    while (p < n && p < most)
        p *= 2;
    return p;
}

/* exp(-d / len) with the conventions of rec_knn_params: len INFINITY gives 1, len 0 gives 0 for d >
 * 0. */
/* For the million short arrays of a model (sessions' items): sized to use, 16-bit capacity. */
static int grow_small(void **p, uint32_t *alloc, size_t need, size_t elem) {
    if (need > UINT16_MAX || vec_reserve_small32(p, alloc, need, elem)) return REC_NOMEM;
    if (*alloc > UINT16_MAX) *alloc = UINT16_MAX;
    return REC_OK;
}

static inline float decay(float d, float len) {
    if (d <= 0) return 1.0f;
    if (!(len > 0)) return 0.0f;
    if (isinf(len)) return 1.0f;
    return expf(-d / len);
}

/* ---------------------------------------------------------------------------------------------- */
/* The model */
/* ---------------------------------------------------------------------------------------------- */

typedef struct item_rec {
    uint32_t ext;   /* the caller's id */
    uint32_t first; /* id of the first session that contained it */
    uint32_t n;     /* postings held */
    uint32_t head;  /* once the ring is full (n == max_postings), the index of the oldest posting */
    uint32_t alloc;
    uint32_t version; /* bumped when a session holding the item changes (the answer cache's key) */
    uint32_t *post;   /* session ids, oldest first modulo head */
} item_rec;

/* One cache line: the model holds up to max_sessions of them, and a query reads a hundred or so
 * scattered over the table, so a session's items live in its record while they fit (sessions are
 * short: Diginetica's average under 5 views). A neighbour then costs one cache miss, not two (its
 * record, then its items). Longer sessions move their items to the heap. */
#define SESS_INLINE 10

typedef struct sess_rec {
    int64_t t_last;
    uint32_t key;
    uint32_t id;         /* EMPTY for a slot never used */
    uint16_t len, alloc; /* len <= max_session_len < 2^16; alloc 0 while the items are inline */
    uint16_t nuniq;      /* distinct items: the session's norm in the kNN cosine */
    union {
        uint32_t in[SESS_INLINE];
        uint32_t *heap;
    } items;
} sess_rec;

_Static_assert(sizeof(sess_rec) == 64, "a session record is one cache line");

static inline uint32_t *sess_items(const sess_rec *s) {
    return s->alloc ? s->items.heap : (uint32_t *)s->items.in;
}

struct rec_model {
    rec_params p;

    item_rec *items;
    uint32_t nitems, items_alloc;
    uint32_t *imap; /* dense index by hash of the caller's id; EMPTY when free */
    uint32_t imap_cap;

    sess_rec *sess;
    uint16_t *norm; /* per slot, the session's distinct items (saturating): kept apart from sess so
                       the similarity pass over thousands of candidate sessions stays in cache */
    uint32_t sess_alloc;
    uint32_t next_id, nsess;

    uint32_t *current; /* by session key: the id of the key's current session, or EMPTY */
    size_t ncurrent;

    uint64_t events, dropped;
    size_t post_bytes, sess_bytes;

    /* rec_recommend()'s one-item answers (see answer_cached()); NULL without cache_slots. Queries
     * write it through a const model: it is apart from what they only read. */
    struct rec_cache *cache;
    uint32_t gen; /* bumped by rec_set_params(): every cached answer is void */
};

/* A cached answer: valid for item (dense index + 1; 0 = empty) while the item's version and the
 * model's gen are those it was made at, and fewer than REC_CACHE_DRIFT events have come since. busy
 * is a try-lock: queries run concurrently, and one that finds the entry taken computes without
 * it rather than wait. */
typedef struct cache_entry {
    atomic_uint busy;
    uint32_t item, version, gen, n, cap;
    uint64_t events;
    rec_item *out;
} cache_entry;

struct rec_cache {
    _Atomic size_t bytes; /* the answers' arrays, grown by concurrent queries */
    cache_entry entry[];  /* by dense item, modulo cache_slots (a power of two) */
};

static const char *const feature_names[REC_NFEAT] = {
    [REC_F_KNN0] = "knn0",
    [REC_F_KNN1] = "knn1",
    [REC_F_SR] = "sr",
    [REC_F_REPEAT] = "repeat",
    [REC_F_LAST] = "last",
    [REC_F_INSESS] = "insess",
    [REC_F_LOGKNN0] = "log_knn0",
    [REC_F_LOGKNN1] = "log_knn1",
    [REC_F_LOGSR] = "log_sr",
    [REC_F_REPLEN] = "insess_loglen",
    [REC_F_RANKKNN0] = "rank_knn0",
    [REC_F_RANKKNN1] = "rank_knn1",
    [REC_F_RANKSR] = "rank_sr",
    [REC_F_COUNT] = "log_count",
    [REC_F_RECENT] = "recent",
    [REC_F_POP] = "log_pop",
    [REC_F_KNN1LEN] = "knn1_loglen",
    [REC_F_SRLEN] = "sr_loglen",
};

const char *rec_feature_name(rec_feature f) {
    return (unsigned)f < REC_NFEAT ? feature_names[f] : NULL;
}

void rec_params_default(rec_params *p) {
    memset(p, 0, sizeof *p);
    p->max_sessions = 4000000;
    p->max_postings = 4000;
    p->max_session_len = 200;
    p->session_gap = 0;
    /* Scorer 0 in the manner of SKNN/V-SKNN: uniform votes, mild in-session position weighting, no
     * recency. Scorer 1 in the manner of STAN: every decay on, at lengths of a few positions. These
     * are the literature's typical settings, not values fitted to any data set; rtune.h learns the
     * shop's own. */
    p->knn[0] = (rec_knn_params){.neighbours = 100,
                                 .sample = 500,
                                 .pos_decay = 4.0f,
                                 .recency = INFINITY,
                                 .after = INFINITY,
                                 .before = INFINITY};
    p->knn[1] = (rec_knn_params){.neighbours = 200,
                                 .sample = 1000,
                                 .pos_decay = 2.0f,
                                 .recency = 0.25f,
                                 .after = 4.0f,
                                 .before = 2.0f};
    p->sr_sample = 1000;
    p->sr_window = 10;
    p->repeat_decay = 2.0f;
    p->candidates = 50;
    /* Neutral blend: the normalised scorers and the repeat score counted alike. */
    p->weights[REC_F_KNN0] = 1.0f;
    p->weights[REC_F_KNN1] = 1.0f;
    p->weights[REC_F_SR] = 1.0f;
    p->weights[REC_F_REPEAT] = 1.0f;
}

static bool query_params_ok(const rec_params *p) {
    if (p->sr_window < 1 || p->sr_window > 32 || p->sr_sample == 0 || p->candidates == 0)
        return false;
    for (int j = 0; j < 2; j++)
        if (p->knn[j].neighbours == 0 || p->knn[j].sample == 0) return false;
    for (int f = 0; f < REC_NFEAT; f++)
        if (!isfinite(p->weights[f])) return false;
    return true;
}

rec_model *rec_model_new(const rec_params *p) {
    if (!p || p->max_postings == 0 || p->max_session_len == 0 || p->max_session_len > UINT16_MAX ||
        !query_params_ok(p))
        return NULL;
    rec_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->p = *p;
    /* A session's slot is a mask, not a division (three per neighbour read). */
    if (m->p.max_sessions) m->p.max_sessions = pow2_at_least(m->p.max_sessions, 1u << 31);
    if (m->p.cache_slots) {
        uint32_t cap = m->p.cache_slots = pow2_at_least(m->p.cache_slots, 1u << 24);
        /* Zeroed memory is a valid table: every entry empty, every lock free. */
        if (!(m->cache = calloc(1, sizeof *m->cache + (size_t)cap * sizeof(cache_entry)))) {
            free(m);
            return NULL;
        }
    }
    return m;
}

void rec_model_free(rec_model *m) {
    if (!m) return;
    for (uint32_t i = 0; i < m->nitems; i++)
        free(m->items[i].post);
    for (uint32_t i = 0; i < m->sess_alloc; i++)
        if (m->sess[i].alloc) free(m->sess[i].items.heap);
    for (uint32_t i = 0; m->cache && i < m->p.cache_slots; i++)
        free(m->cache->entry[i].out);
    free(m->cache);
    free(m->items);
    free(m->imap);
    free(m->sess);
    free(m->norm);
    free(m->current);
    free(m);
}

void rec_get_params(const rec_model *m, rec_params *p) {
    *p = m->p;
}

int rec_set_params(rec_model *m, const rec_params *p) {
    if (!query_params_ok(p)) return REC_INVALID;
    rec_params keep = m->p;
    m->p = *p;
    m->p.max_sessions = keep.max_sessions;
    m->p.max_postings = keep.max_postings;
    m->p.max_session_len = keep.max_session_len;
    m->p.session_gap = keep.session_gap;
    m->p.cache_slots = keep.cache_slots;
    m->gen++;
    return REC_OK;
}

void rec_get_stats(const rec_model *m, rec_stats *st) {
    st->events = m->events;
    st->dropped = m->dropped;
    st->items = m->nitems;
    st->sessions = m->nsess;
    st->next_id = m->next_id;
    st->bytes = sizeof *m + (size_t)m->items_alloc * sizeof *m->items +
                (size_t)m->imap_cap * sizeof *m->imap +
                (size_t)m->sess_alloc * (sizeof *m->sess + sizeof *m->norm) +
                m->ncurrent * sizeof *m->current + m->post_bytes + m->sess_bytes +
                (m->cache ? sizeof *m->cache + (size_t)m->p.cache_slots * sizeof(cache_entry) +
                                atomic_load_explicit(&m->cache->bytes, memory_order_relaxed)
                          : 0);
}

/* --- items --- */

static uint32_t item_lookup(const rec_model *m, uint32_t ext) {
    if (!m->imap_cap) return EMPTY;
    uint32_t mask = m->imap_cap - 1, i = u32map_hash(ext) & mask;
    for (;;) {
        uint32_t d = m->imap[i];
        if (d == EMPTY) return EMPTY;
        if (m->items[d].ext == ext) return d;
        i = (i + 1) & mask;
    }
}

static int imap_rehash(rec_model *m, uint32_t cap) {
    uint32_t *t = malloc((size_t)cap * sizeof *t);
    if (!t) return REC_NOMEM;
    memset(t, 0xff, (size_t)cap * sizeof *t);
    for (uint32_t d = 0; d < m->nitems; d++) {
        uint32_t i = u32map_hash(m->items[d].ext) & (cap - 1);
        while (t[i] != EMPTY)
            i = (i + 1) & (cap - 1);
        t[i] = d;
    }
    free(m->imap);
    m->imap = t;
    m->imap_cap = cap;
    return REC_OK;
}

/* The dense index of ext, added (first seen in session first_id) when new; EMPTY when out of
 * memory. */
static uint32_t item_intern(rec_model *m, uint32_t ext, uint32_t first_id) {
    uint32_t d = item_lookup(m, ext);
    if (d != EMPTY) return d;
    if (m->nitems >= (1u << 30)) return EMPTY;
    if ((m->nitems + 1) * 2 > m->imap_cap &&
        imap_rehash(m, m->imap_cap ? m->imap_cap * 2 : 1024) != REC_OK)
        return EMPTY;
    if (grow((void **)&m->items, &m->items_alloc, m->nitems + 1, sizeof *m->items) != REC_OK)
        return EMPTY;
    d = m->nitems++;
    m->items[d] = (item_rec){.ext = ext, .first = first_id};
    uint32_t i = u32map_hash(ext) & (m->imap_cap - 1);
    while (m->imap[i] != EMPTY)
        i = (i + 1) & (m->imap_cap - 1);
    m->imap[i] = d;
    return d;
}

static int posting_add(rec_model *m, item_rec *it, uint32_t id) {
    uint32_t cap = m->p.max_postings;
    if (it->n < cap) {
        if (it->n == it->alloc) {
            uint32_t na = it->alloc ? it->alloc * 2 : 4;
            if (na > cap) na = cap;
            uint32_t *q = realloc(it->post, (size_t)na * sizeof *q);
            if (!q) return REC_NOMEM;
            m->post_bytes += (size_t)(na - it->alloc) * sizeof *q;
            it->post = q;
            it->alloc = na;
        }
        it->post[it->n++] = id;
    } else {
        it->post[it->head] = id;
        it->head = it->head + 1 == cap ? 0 : it->head + 1;
    }
    return REC_OK;
}

/* --- sessions --- */

static inline uint32_t slot_of(const rec_model *m, uint32_t id) {
    return m->p.max_sessions ? id & (m->p.max_sessions - 1) : id;
}

/* The stored session id, or NULL when it was forgotten (its slot reused) or never began. */
static inline const sess_rec *sess_get(const rec_model *m, uint32_t id) {
    uint32_t s = slot_of(m, id);
    if (s >= m->sess_alloc || m->sess[s].id != id) return NULL;
    return &m->sess[s];
}

/* The key's current session id, or EMPTY. */
static uint32_t current_of(const rec_model *m, uint32_t key) {
    return key < m->ncurrent ? m->current[key] : EMPTY;
}

/* A session holding these items changed or went: answers about them made before are void. */
static void touch_items(rec_model *m, const sess_rec *s) {
    const uint32_t *items = sess_items(s);
    for (uint32_t i = 0; i < s->len; i++)
        m->items[items[i]].version++;
}

/* Begins a new session for key (replacing any mapping of key); returns it, NULL when out of memory.
 */
static sess_rec *sess_begin(rec_model *m, uint32_t key, int64_t t) {
    /* current[] grows with the keys; a new entry is EMPTY, all bits set. */
    if (vec_reserve_filled((void **)&m->current, &m->ncurrent, (size_t)key + 1, sizeof *m->current,
                           0xff))
        return NULL;
    uint32_t id = m->next_id, s = slot_of(m, id);
    if (s >= m->sess_alloc) {
        /* Doubling, never past the ring's slots; aligned so each record is one cache line. */
        uint32_t old = m->sess_alloc, want = pow2_at_least(s < 64 ? 64 : s + 1, 1u << 31);
        if (m->p.max_sessions && want > m->p.max_sessions) want = m->p.max_sessions;
        if (want <= s) return NULL;
        sess_rec *q = aligned_alloc(64, (size_t)want * sizeof *q);
        uint16_t *nm = q ? realloc(m->norm, (size_t)want * sizeof *nm) : NULL;
        if (!nm) {
            free(q);
            return NULL;
        }
        if (old) memcpy(q, m->sess, (size_t)old * sizeof *q);
        free(m->sess);
        m->sess = q;
        m->norm = nm;
        m->sess_alloc = want;
        for (uint32_t i = old; i < m->sess_alloc; i++) {
            m->sess[i] = (sess_rec){.id = EMPTY};
            m->norm[i] = 0;
        }
    }
    sess_rec *r = &m->sess[s];
    if (r->id != EMPTY) {
        /* Forget the oldest session: its postings become stale, its key (if still its) goes. */
        if (m->current[r->key] == r->id) m->current[r->key] = EMPTY;
        m->nsess--;
        touch_items(m, r);
    }
    if (r->alloc) {
        free(r->items.heap);
        m->sess_bytes -= (size_t)r->alloc * sizeof(uint32_t);
        r->alloc = 0;
    }
    r->key = key;
    r->t_last = t;
    r->id = id;
    r->len = 0;
    r->nuniq = 0;
    m->norm[s] = 0;
    m->current[key] = id;
    m->next_id++;
    m->nsess++;
    return r;
}

int rec_observe(rec_model *m, uint32_t key, uint32_t item, int64_t t) {
    if (item == EMPTY || key == EMPTY) return REC_INVALID;
    uint32_t cur = current_of(m, key);
    sess_rec *s = NULL;
    if (cur != EMPTY) {
        s = &m->sess[slot_of(m, cur)];
        if (m->p.session_gap > 0 && t - s->t_last > m->p.session_gap) s = NULL;
    }
    if (!s && m->next_id == EMPTY) return REC_FULL;
    uint32_t d = item_intern(m, item, s ? s->id : m->next_id);
    if (d == EMPTY) return REC_NOMEM;
    if (!s && !(s = sess_begin(m, key, t))) return REC_NOMEM;
    s->t_last = t;
    if (s->len >= m->p.max_session_len) {
        m->dropped++;
        return REC_OK;
    }
    if (s->alloc ? s->len == s->alloc : s->len == SESS_INLINE) {
        /* Out of room: inline items move to the heap, heap items grow. */
        uint32_t old = s->alloc, a = old;
        uint32_t *heap = old ? s->items.heap : NULL;
        if (grow_small((void **)&heap, &a, (size_t)s->len + 1, sizeof *heap) != REC_OK)
            return REC_NOMEM;
        if (!old) memcpy(heap, s->items.in, sizeof s->items.in);
        s->items.heap = heap;
        s->alloc = (uint16_t)a;
        m->sess_bytes += (size_t)(a - old) * sizeof *heap;
    }
    uint32_t *items = sess_items(s);
    bool seen = false;
    for (uint32_t i = 0; i < s->len && !seen; i++)
        seen = items[i] == d;
    if (!seen) {
        if (posting_add(m, &m->items[d], s->id) != REC_OK) return REC_NOMEM;
        s->nuniq++;
        uint16_t *nm = &m->norm[slot_of(m, s->id)];
        if (*nm < UINT16_MAX) (*nm)++;
    }
    items[s->len++] = d;
    touch_items(m, s);
    m->events++;
    return REC_OK;
}

/* --- accessors for rtune.c --- */

uint32_t rec__next_id(const rec_model *m) {
    return m->next_id;
}

const uint32_t *rec__session(const rec_model *m, uint32_t id, uint32_t *len) {
    const sess_rec *s = sess_get(m, id);
    if (!s) return NULL;
    *len = s->len;
    return sess_items(s);
}

uint32_t rec__item_first(const rec_model *m, uint32_t item) {
    return m->items[item].first;
}

uint32_t rec__item_ext(const rec_model *m, uint32_t item) {
    return m->items[item].ext;
}

bool rec_knows(const rec_model *m, uint32_t item) {
    return item_lookup(m, item) != EMPTY;
}

uint32_t rec__item_dense(const rec_model *m, uint32_t ext) {
    return item_lookup(m, ext);
}

/* ---------------------------------------------------------------------------------------------- */
/* Scoring */
/* ---------------------------------------------------------------------------------------------- */

typedef struct nb {
    float sim;
    uint32_t id;
} nb;

struct rec_ws {
    u32map qm; /* query item -> index into qitem/qlast */
    u32map sm; /* candidate session id -> index into sacc/sid */
    u32map cm; /* candidate item -> index into cand */
    uint32_t *qitem, *qlast, nq, q_alloc, qlast_alloc;
    float *sacc;
    uint32_t *sid, ns, s_alloc, sid_alloc;
    nb *heap;
    uint32_t heap_alloc;
    rec_cand *cand;
    uint32_t nc, cand_alloc;
    /* Decay by distance from a neighbour's anchor, after it then before it, per kNN scorer: made
     * again only when the scorer's parameters or the session length change (400 expf a query). */
    struct decay_table {
        float *w; /* after: w[0..len), before: w[len..2 len) */
        uint32_t alloc, len;
        float after, before;
    } decay[2];
    uint32_t *dense; /* rec_recommend's translated query */
    uint32_t dense_alloc;
    float *score;
    uint32_t score_alloc;
    uint32_t *sort; /* rank_scorer()'s keys and indices, two copies of each: 4 per candidate */
    uint32_t sort_alloc;
    uint32_t *rankpos; /* per candidate, its rank under each of the three scorers */
    uint32_t rankpos_alloc;
    float *x; /* feature vectors of the kept candidates */
    uint32_t x_alloc;
};

rec_ws *rec__ws_new(void) {
    return calloc(1, sizeof(rec_ws));
}

void rec__ws_free(rec_ws *ws) {
    if (!ws) return;
    u32map_free(&ws->qm);
    u32map_free(&ws->sm);
    u32map_free(&ws->cm);
    free(ws->qitem);
    free(ws->qlast);
    free(ws->sacc);
    free(ws->sid);
    free(ws->heap);
    free(ws->cand);
    free(ws->decay[0].w);
    free(ws->decay[1].w);
    free(ws->dense);
    free(ws->score);
    free(ws->sort);
    free(ws->rankpos);
    free(ws->x);
    free(ws);
}

/* The candidate entry of item, created with zero scores when new; NULL when out of memory. */
static inline rec_cand *cand_of(rec_ws *ws, uint32_t item) {
    bool fresh;
    uint32_t *v = u32map_put(&ws->cm, item, &fresh);
    if (!v) return NULL;
    if (fresh) {
        if (grow((void **)&ws->cand, &ws->cand_alloc, (size_t)ws->nc + 1, sizeof *ws->cand) !=
            REC_OK)
            return NULL; /* the query is abandoned; the next one resets the table */
        *v = ws->nc;
        ws->cand[ws->nc++] = (rec_cand){.item = item};
    }
    return &ws->cand[*v];
}

/* Heap order for neighbour selection: the root is the weakest neighbour kept; among equal
 * similarities the older session is the weaker, so results do not depend on hash order. */
static inline bool nb_weaker(nb a, nb b) {
    return a.sim < b.sim || (a.sim == b.sim && a.id < b.id);
}

static void nb_sift_down(nb *h, uint32_t n, uint32_t i) {
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && nb_weaker(h[l], h[w])) w = l;
        if (r < n && nb_weaker(h[r], h[w])) w = r;
        if (w == i) return;
        nb t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Sessions are forgotten strictly oldest first, so the stored ones are exactly the ids in
 * [next_id - nsess, next_id): no need to touch the session to know. */
static inline bool posting_visible(const rec_model *m, uint32_t id, uint32_t as_of,
                                   uint32_t exclude) {
    return id < as_of && id != exclude && id >= m->next_id - m->nsess;
}

/* The id of the j-th most recent posting of it (j < it->n). */
static inline uint32_t posting_at(const item_rec *it, uint32_t j) {
    uint32_t i = it->head + it->n - 1 - j;
    if (i >= it->n) i -= it->n;
    return it->post[i];
}

static int knn_score(const rec_model *m, const rec_knn_params *kp, int comp, size_t qlen,
                     uint32_t as_of, uint32_t exclude, rec_ws *ws) {
    /* Similarity: the position-weighted overlap with each candidate session, accumulated through
     * the postings so that only sessions sharing an item are ever touched. */
    size_t expect = 0;
    for (uint32_t u = 0; u < ws->nq; u++) {
        uint32_t n = m->items[ws->qitem[u]].n;
        expect += n < kp->sample ? n : kp->sample;
    }
    if (u32map_reset(&ws->sm, expect) != REC_OK ||
        grow((void **)&ws->sacc, &ws->s_alloc, expect + 1, sizeof *ws->sacc) != REC_OK ||
        grow((void **)&ws->sid, &ws->sid_alloc, expect + 1, sizeof *ws->sid) != REC_OK)
        return REC_NOMEM;
    ws->ns = 0;
    for (uint32_t u = 0; u < ws->nq; u++) {
        const item_rec *it = &m->items[ws->qitem[u]];
        float w = decay((float)(qlen - 1 - ws->qlast[u]), kp->pos_decay);
        uint32_t taken = 0;
        for (uint32_t j = 0; j < it->n && taken < kp->sample; j++) {
            uint32_t id = posting_at(it, j);
            if (!posting_visible(m, id, as_of, exclude)) continue;
            taken++;
            bool fresh;
            uint32_t *v = u32map_put(&ws->sm, id, &fresh);
            if (!v) return REC_NOMEM;
            if (fresh) {
                *v = ws->ns;
                ws->sid[ws->ns] = id;
                ws->sacc[ws->ns++] = 0;
            }
            ws->sacc[*v] += w;
        }
    }
    if (!ws->ns) return REC_OK;

    /* Keep the k most similar (cosine of the binary session vectors, the query's weighted). */
    uint32_t k = kp->neighbours, nh = 0;
    if (grow((void **)&ws->heap, &ws->heap_alloc, k, sizeof *ws->heap) != REC_OK) return REC_NOMEM;
    uint32_t now = as_of == REC_NONE ? m->next_id : as_of;
    uint32_t oldest = m->next_id - m->nsess;
    float hist = now > oldest ? (float)(now - oldest) : 1.0f;
    float reclen = kp->recency * hist;
    bool recency = !isinf(kp->recency);
    float qnorm = (float)ws->nq;
    for (uint32_t c = 0; c < ws->ns; c++) {
        if (c + 16 < ws->ns) PREFETCH(&m->norm[slot_of(m, ws->sid[c + 16])]);
        float sim = ws->sacc[c] / sqrtf(qnorm * (float)m->norm[slot_of(m, ws->sid[c])]);
        if (recency) sim *= decay((float)(now - ws->sid[c]), reclen);
        nb e = {sim, ws->sid[c]};
        if (nh < k) {
            uint32_t i = nh++;
            ws->heap[i] = e;
            while (i > 0 && nb_weaker(ws->heap[i], ws->heap[(i - 1) / 2])) {
                nb t = ws->heap[i];
                ws->heap[i] = ws->heap[(i - 1) / 2];
                ws->heap[(i - 1) / 2] = t;
                i = (i - 1) / 2;
            }
        } else if (nb_weaker(ws->heap[0], e)) {
            ws->heap[0] = e;
            nb_sift_down(ws->heap, nh, 0);
        }
    }

    /* Votes: each neighbour gives its similarity to its items, decayed by their distance from the
     * anchor, the neighbour's item that the query session viewed most recently. */
    uint32_t maxlen = m->p.max_session_len;
    struct decay_table *dt = &ws->decay[comp - REC_C_KNN0];
    if (dt->len != maxlen || dt->after != kp->after || dt->before != kp->before) {
        if (grow((void **)&dt->w, &dt->alloc, (size_t)maxlen * 2, sizeof(float)) != REC_OK)
            return REC_NOMEM;
        for (uint32_t d = 0; d < maxlen; d++) {
            dt->w[d] = decay((float)d, kp->after);
            dt->w[maxlen + d] = decay((float)d, kp->before);
        }
        dt->len = maxlen;
        dt->after = kp->after;
        dt->before = kp->before;
    }
    const float *after = dt->w, *before = dt->w + maxlen;
    for (uint32_t h = 0; h < nh; h++) {
        /* Neighbours are scattered over the session table: each costs a cache miss (two for a
         * session too long to hold its items inline), so fetch them a few neighbours ahead. */
        if (h + 8 < nh) PREFETCH(&m->sess[slot_of(m, ws->heap[h + 8].id)]);
        const sess_rec *s = sess_get(m, ws->heap[h].id);
        float sim = ws->heap[h].sim;
        if (!(sim > 0)) continue;
        const uint32_t *items = sess_items(s);
        uint32_t anchor = 0, best = 0;
        bool found = false;
        for (uint32_t p = 0; p < s->len; p++) {
            uint32_t *v = u32map_get(&ws->qm, items[p]);
            if (v && (!found || ws->qlast[*v] >= best)) {
                found = true;
                best = ws->qlast[*v];
                anchor = p;
            }
        }
        for (uint32_t p = 0; p < s->len; p++) {
            float w = p >= anchor ? after[p - anchor] : before[anchor - p];
            if (w <= 0) continue;
            rec_cand *c = cand_of(ws, items[p]);
            if (!c) return REC_NOMEM;
            c->c[comp] += sim * w;
        }
    }
    return REC_OK;
}

static int sr_score(const rec_model *m, const rec_params *p, uint32_t last, uint32_t as_of,
                    uint32_t exclude, rec_ws *ws) {
    const item_rec *it = &m->items[last];
    uint32_t taken = 0, win = p->sr_window;
    for (uint32_t j = 0; j < it->n && taken < p->sr_sample; j++) {
        if (j + 8 < it->n) PREFETCH(&m->sess[slot_of(m, posting_at(it, j + 8))]);
        uint32_t id = posting_at(it, j);
        if (!posting_visible(m, id, as_of, exclude)) continue;
        taken++;
        const sess_rec *s = sess_get(m, id);
        const uint32_t *items = sess_items(s);
        for (uint32_t a = 0; a + 1 < s->len; a++) {
            if (items[a] != last) continue;
            for (uint32_t d = 1; d <= win && a + d < s->len; d++) {
                rec_cand *c = cand_of(ws, items[a + d]);
                if (!c) return REC_NOMEM;
                c->c[REC_C_SR] += 1.0f / (float)d;
            }
        }
    }
    return REC_OK;
}

int rec__score(const rec_model *m, const rec_params *p, const uint32_t *q, size_t n, uint32_t as_of,
               uint32_t exclude, rec_ws *ws, rec_cand **out, size_t *nout, float maxes[REC_NCOMP]) {
    *nout = 0;
    for (int c = 0; c < REC_NCOMP; c++)
        maxes[c] = 0;
    ws->nc = 0;
    ws->nq = 0;
    if (n == 0) return REC_OK;
    /* A query longer than what a session may store keeps its most recent part. */
    if (n > m->p.max_session_len) {
        q += n - m->p.max_session_len;
        n = m->p.max_session_len;
    }
    if (u32map_reset(&ws->qm, n) != REC_OK || u32map_reset(&ws->cm, 256) != REC_OK ||
        grow((void **)&ws->qitem, &ws->q_alloc, n, sizeof *ws->qitem) != REC_OK)
        return REC_NOMEM;
    if (grow((void **)&ws->qlast, &ws->qlast_alloc, n, sizeof *ws->qlast) != REC_OK)
        return REC_NOMEM;

    /* Distinct query items with their last position, and the repeat score. */
    for (size_t i = 0; i < n; i++) {
        bool fresh;
        uint32_t *v = u32map_put(&ws->qm, q[i], &fresh);
        if (!v) return REC_NOMEM;
        if (fresh) {
            *v = ws->nq;
            ws->qitem[ws->nq++] = q[i];
        }
        ws->qlast[*v] = (uint32_t)i;
        rec_cand *c = cand_of(ws, q[i]);
        if (!c) return REC_NOMEM;
        c->count++;
        c->age = (uint32_t)(n - 1 - i);
        c->c[REC_C_REPEAT] += decay((float)(n - 1 - i), p->repeat_decay);
    }
    rec_cand *lc = cand_of(ws, q[n - 1]);
    if (!lc) return REC_NOMEM;
    lc->last = 1;

    for (int j = 0; j < 2; j++)
        if (knn_score(m, &p->knn[j], REC_C_KNN0 + j, n, as_of, exclude, ws) != REC_OK)
            return REC_NOMEM;
    if (sr_score(m, p, q[n - 1], as_of, exclude, ws) != REC_OK) return REC_NOMEM;

    for (uint32_t i = 0; i < ws->nc; i++)
        for (int c = 0; c < REC_NCOMP; c++)
            if (ws->cand[i].c[c] > maxes[c]) maxes[c] = ws->cand[i].c[c];
    *out = ws->cand;
    *nout = ws->nc;
    return REC_OK;
}

/* The k-th largest of v[0..n) (1 <= k <= n), by quickselect with a three-way partition (so runs of
 * equal values cost nothing extra); reorders v. Expected O(n). */
static float kth_largest(float *v, size_t n, size_t k) {
    size_t lo = 0, hi = n - 1, want = k - 1;
    for (;;) {
        if (lo == hi) return v[lo];
        float piv = v[lo + (hi - lo) / 2];
        /* Afterwards v[lo..lt) > piv, v[lt..gt] == piv, v(gt..hi] < piv. */
        size_t lt = lo, i = lo, gt = hi;
        while (i <= gt) {
            float x = v[i];
            if (x > piv) {
                v[i++] = v[lt];
                v[lt++] = x;
            } else if (x < piv) {
                v[i] = v[gt];
                v[gt] = x;
                if (gt == 0) break;
                gt--;
            } else {
                i++;
            }
        }
        if (want < lt)
            hi = lt - 1;
        else if (want > gt)
            lo = gt + 1;
        else
            return piv;
    }
}

size_t rec__select(rec_cand *cand, size_t n, uint32_t keep, float *tmp) {
    float thr[REC_NCOMP] = {0};
    for (int c = REC_C_KNN0; c <= REC_C_SR; c++) {
        size_t nv = 0;
        for (size_t j = 0; j < n; j++)
            if (cand[j].c[c] > 0) tmp[nv++] = cand[j].c[c];
        thr[c] = nv > keep ? kth_largest(tmp, nv, keep) : 0;
    }
    size_t kept = 0;
    for (size_t j = 0; j < n; j++) {
        bool in = cand[j].count > 0;
        for (int c = REC_C_KNN0; c <= REC_C_SR && !in; c++)
            in = cand[j].c[c] > 0 && cand[j].c[c] >= thr[c];
        if (!in) continue;
        rec_cand t = cand[kept];
        cand[kept++] = cand[j];
        cand[j] = t;
    }
    return kept;
}

/* Each candidate's rank under scorer c, best first and ties to the lower index, into
 * rankpos[j * 3 + c]; n for the candidates c did not reach. qsort's comparator calls were a
 * twelfth of a query, so: positive floats order as their bit patterns do, and the keys (~bits,
 * for descending scores) are sorted by insertion when few, else by a stable radix sort a byte a
 * pass, skipping the passes where all keys share the byte. s has room for 4n. */
static void rank_scorer(const rec_cand *cand, size_t n, int c, uint32_t *s, uint32_t *rankpos) {
    uint32_t *key = s, *idx = s + n, *key2 = s + 2 * n, *idx2 = s + 3 * n;
    size_t m = 0;
    for (size_t j = 0; j < n; j++) {
        float v = cand[j].c[c];
        if (v > 0) {
            uint32_t bits;
            memcpy(&bits, &v, sizeof bits);
            key[m] = ~bits;
            idx[m++] = (uint32_t)j;
        } else {
            rankpos[j * 3 + (size_t)c] = (uint32_t)n;
        }
    }
    if (m <= 32) {
        /* Indices arrive ascending: moving past strictly greater keys only keeps ties in order. */
        for (size_t i = 1; i < m; i++) {
            uint32_t k = key[i], x = idx[i];
            size_t j = i;
            for (; j > 0 && key[j - 1] > k; j--) {
                key[j] = key[j - 1];
                idx[j] = idx[j - 1];
            }
            key[j] = k;
            idx[j] = x;
        }
    } else {
        for (unsigned shift = 0; shift < 32; shift += 8) {
            uint32_t at[257] = {0};
            for (size_t j = 0; j < m; j++)
                at[((key[j] >> shift) & 255) + 1]++;
            if (at[((key[0] >> shift) & 255) + 1] == m) continue; /* one byte value: in order */
            for (unsigned b = 0; b < 256; b++)
                at[b + 1] += at[b];
            for (size_t j = 0; j < m; j++) {
                uint32_t d = at[(key[j] >> shift) & 255]++;
                key2[d] = key[j];
                idx2[d] = idx[j];
            }
            uint32_t *t = key;
            key = key2;
            key2 = t;
            t = idx;
            idx = idx2;
            idx2 = t;
        }
    }
    for (size_t r = 0; r < m; r++)
        rankpos[(size_t)idx[r] * 3 + (size_t)c] = (uint32_t)r;
}

/* Sessions holding item among those begun before as_of: its postings minus the newer ones, which
 * are at the young end of the ring (a scan as long as the number of newer ones). */
static uint32_t popularity(const rec_model *m, uint32_t item, uint32_t as_of) {
    const item_rec *it = &m->items[item];
    if (as_of == REC_NONE) return it->n;
    uint32_t newer = 0;
    while (newer < it->n && posting_at(it, newer) >= as_of)
        newer++;
    return it->n - newer;
}

int rec__featurize(const rec_model *m, uint32_t as_of, const rec_cand *cand, size_t n,
                   const float maxes[REC_NCOMP], size_t qlen, float *x, rec_ws *ws) {
    if (n == 0) return REC_OK;
    if (grow((void **)&ws->sort, &ws->sort_alloc, n * 4, sizeof *ws->sort) != REC_OK ||
        grow((void **)&ws->rankpos, &ws->rankpos_alloc, n * 3, sizeof *ws->rankpos) != REC_OK)
        return REC_NOMEM;
    /* The popularity feature reads each candidate's item record, scattered over the item table:
     * start those loads now, and the rank passes hide them (5-7% of a query on a 1M store). */
    for (size_t j = 0; j < n; j++)
        PREFETCH(&m->items[cand[j].item]);
    /* Ranks per scorer; unreached candidates share the worst rank. */
    for (int c = REC_C_KNN0; c <= REC_C_SR; c++)
        rank_scorer(cand, n, c, ws->sort, ws->rankpos);
    const float floor = 1e-4f, loglen = logf((float)qlen);
    for (size_t j = 0; j < n; j++) {
        const rec_cand *c = &cand[j];
        float *v = x + j * REC_NFEAT;
        float k0 = maxes[REC_C_KNN0] > 0 ? c->c[REC_C_KNN0] / maxes[REC_C_KNN0] : 0;
        float k1 = maxes[REC_C_KNN1] > 0 ? c->c[REC_C_KNN1] / maxes[REC_C_KNN1] : 0;
        float sr = maxes[REC_C_SR] > 0 ? c->c[REC_C_SR] / maxes[REC_C_SR] : 0;
        float in = c->count > 0 ? 1.0f : 0.0f;
        v[REC_F_KNN0] = k0;
        v[REC_F_KNN1] = k1;
        v[REC_F_SR] = sr;
        v[REC_F_REPEAT] = c->c[REC_C_REPEAT];
        v[REC_F_LAST] = (float)c->last;
        v[REC_F_INSESS] = in;
        v[REC_F_LOGKNN0] = logf(k0 > floor ? k0 : floor);
        v[REC_F_LOGKNN1] = logf(k1 > floor ? k1 : floor);
        v[REC_F_LOGSR] = logf(sr > floor ? sr : floor);
        v[REC_F_REPLEN] = in * loglen;
        v[REC_F_RANKKNN0] = logf(1.0f + (float)ws->rankpos[j * 3 + REC_C_KNN0]);
        v[REC_F_RANKKNN1] = logf(1.0f + (float)ws->rankpos[j * 3 + REC_C_KNN1]);
        v[REC_F_RANKSR] = logf(1.0f + (float)ws->rankpos[j * 3 + REC_C_SR]);
        v[REC_F_COUNT] = logf(1.0f + (float)c->count);
        v[REC_F_RECENT] = in / (1.0f + (float)c->age);
        v[REC_F_POP] = logf(1.0f + (float)popularity(m, c->item, as_of));
        v[REC_F_KNN1LEN] = k1 * loglen;
        v[REC_F_SRLEN] = sr * loglen;
    }
    return REC_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Recommending */
/* ---------------------------------------------------------------------------------------------- */

/* Heap order for the final top k: the root is the weakest; ties go to the item seen first, so the
 * output is deterministic. */
static inline bool item_weaker(float sa, uint32_t ia, float sb, uint32_t ib) {
    return sa < sb || (sa == sb && ia > ib);
}

static size_t blend_topk(const rec_model *m, const rec_params *p, size_t qlen, rec_cand *cand,
                         size_t nc, const float maxes[REC_NCOMP], size_t k, rec_item *out,
                         rec_ws *ws) {
    if (k == 0 || nc == 0) return 0;
    if (grow((void **)&ws->x, &ws->x_alloc, nc * REC_NFEAT, sizeof *ws->x) != REC_OK ||
        rec__featurize(m, REC_NONE, cand, nc, maxes, qlen, ws->x, ws) != REC_OK)
        return 0;
    /* out doubles as the heap: item holds the candidate's dense index until the end. */
    size_t nh = 0;
    for (size_t i = 0; i < nc; i++) {
        const float *x = ws->x + i * REC_NFEAT;
        float s = 0;
        for (int f = 0; f < REC_NFEAT; f++)
            s += p->weights[f] * x[f];
        uint32_t it = cand[i].item;
        if (nh < k) {
            size_t j = nh++;
            out[j] = (rec_item){it, s};
            while (j > 0) {
                size_t up = (j - 1) / 2;
                if (!item_weaker(out[j].score, out[j].item, out[up].score, out[up].item)) break;
                rec_item t = out[j];
                out[j] = out[up];
                out[up] = t;
                j = up;
            }
        } else if (item_weaker(out[0].score, out[0].item, s, it)) {
            out[0] = (rec_item){it, s};
            size_t j = 0;
            for (;;) {
                size_t l = 2 * j + 1, r = l + 1, w = j;
                if (l < nh && item_weaker(out[l].score, out[l].item, out[w].score, out[w].item))
                    w = l;
                if (r < nh && item_weaker(out[r].score, out[r].item, out[w].score, out[w].item))
                    w = r;
                if (w == j) break;
                rec_item t = out[j];
                out[j] = out[w];
                out[w] = t;
                j = w;
            }
        }
    }
    /* Heap-sort in place: repeatedly move the weakest to the end. */
    for (size_t end = nh; end > 1; end--) {
        rec_item t = out[0];
        out[0] = out[end - 1];
        out[end - 1] = t;
        size_t j = 0, n = end - 1;
        for (;;) {
            size_t l = 2 * j + 1, r = l + 1, w = j;
            if (l < n && item_weaker(out[l].score, out[l].item, out[w].score, out[w].item)) w = l;
            if (r < n && item_weaker(out[r].score, out[r].item, out[w].score, out[w].item)) w = r;
            if (w == j) break;
            rec_item u = out[j];
            out[j] = out[w];
            out[w] = u;
            j = w;
        }
    }
    for (size_t i = 0; i < nh; i++)
        out[i].item = m->items[out[i].item].ext;
    return nh;
}

static size_t recommend_dense(const rec_model *m, rec_ws *ws, const uint32_t *q, size_t n,
                              uint32_t exclude, size_t k, rec_item *out) {
    rec_cand *cand;
    size_t nc;
    float maxes[REC_NCOMP];
    if (rec__score(m, &m->p, q, n, REC_NONE, exclude, ws, &cand, &nc, maxes) != REC_OK) return 0;
    if (grow((void **)&ws->score, &ws->score_alloc, nc + 1, sizeof *ws->score) != REC_OK) return 0;
    nc = rec__select(cand, nc, m->p.candidates, ws->score);
    size_t qlen = n > m->p.max_session_len ? m->p.max_session_len : n;
    return blend_topk(m, &m->p, qlen, cand, nc, maxes, k, out, ws);
}

/* Each thread keeps its query scratch between calls: a server answers thousands of queries a
 * second on a few threads, and building the tables afresh each time was a tenth of a query. The
 * scratch is freed when the thread exits. */
static void *ws_make(void) {
    return rec__ws_new();
}

static void ws_destroy(void *ws) {
    rec__ws_free(ws);
}

static tls_slot ws_slot = TLS_SLOT(ws_make, ws_destroy);

/* The answer to the one-item session [d], from the cache when it holds a valid one, else computed
 * (REC_CACHE_K items) and kept. A product page asks this for every visitor without a session of
 * their own, and its answer reads some 450 sessions scattered over memory: most of a request's
 * cost on a large store. */
static size_t answer_cached(const rec_model *m, rec_ws *ws, uint32_t d, size_t k, rec_item *out) {
    cache_entry *e = &m->cache->entry[d & (m->p.cache_slots - 1)];
    if (atomic_exchange_explicit(&e->busy, 1, memory_order_acquire))
        return recommend_dense(m, ws, &d, 1, REC_NONE, k, out);
    size_t got;
    if (e->item == d + 1 && e->version == m->items[d].version && e->gen == m->gen &&
        m->events - e->events < REC_CACHE_DRIFT) {
        got = e->n < k ? e->n : k;
        memcpy(out, e->out, got * sizeof *out);
    } else {
        rec_item all[REC_CACHE_K];
        size_t n = recommend_dense(m, ws, &d, 1, REC_NONE, REC_CACHE_K, all);
        e->item = 0;
        if (n > e->cap) {
            rec_item *q = realloc(e->out, n * sizeof *q);
            if (q) {
                atomic_fetch_add_explicit(&m->cache->bytes, (n - e->cap) * sizeof *q,
                                          memory_order_relaxed);
                e->out = q;
                e->cap = (uint32_t)n;
            }
        }
        if (n <= e->cap) { /* else out of memory: the entry stays empty */
            if (n) memcpy(e->out, all, n * sizeof *all);
            e->item = d + 1;
            e->version = m->items[d].version;
            e->gen = m->gen;
            e->n = (uint32_t)n;
            e->events = m->events;
        }
        got = n < k ? n : k;
        memcpy(out, all, got * sizeof *out);
    }
    atomic_store_explicit(&e->busy, 0, memory_order_release);
    return got;
}

size_t rec_recommend(const rec_model *m, const uint32_t *session_items, size_t n, size_t k,
                     rec_item *out) {
    if (!n || !k) return 0;
    rec_ws *ws = tls_get(&ws_slot);
    if (!ws) return 0;
    size_t got = 0, nd = 0;
    if (grow((void **)&ws->dense, &ws->dense_alloc, n, sizeof *ws->dense) == REC_OK) {
        for (size_t i = 0; i < n; i++) {
            uint32_t d = item_lookup(m, session_items[i]);
            if (d != EMPTY) ws->dense[nd++] = d;
        }
        if (nd == 1 && m->cache && k <= REC_CACHE_K)
            got = answer_cached(m, ws, ws->dense[0], k, out);
        else
            got = recommend_dense(m, ws, ws->dense, nd, REC_NONE, k, out);
    }
    return got;
}

size_t rec_recommend_session(const rec_model *m, uint32_t session_key, size_t k, rec_item *out) {
    uint32_t cur = current_of(m, session_key);
    if (cur == EMPTY || !k) return 0;
    const sess_rec *s = sess_get(m, cur);
    if (!s) return 0;
    rec_ws *ws = tls_get(&ws_slot);
    return ws ? recommend_dense(m, ws, sess_items(s), s->len, s->id, k, out) : 0;
}
