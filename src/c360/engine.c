#include "c360/engine.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c360/catalog.h"
#include "c360/consent.h"
#include "c360/idgraph.h"
#include "c360/idnorm.h"
#include "c360/offers.h"
#include "c360/prof.h"
#include "expr/expr.h"
#include "reco/reco.h"
#include "reco/rfeed.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/jscan.h"
#include "util/jsonw.h"
#include "util/log.h"
#include "util/strpool.h"
#include "util/timefmt.h"
#include "util/vec.h"

/* ---- RFM: where a profile ranks among every customer who ordered ----
 *
 * Scores are quintiles of the whole customer base, kept live: each of recency, frequency and
 * monetary value has a Fenwick tree of counts over buckets, updated whenever a profile's orders
 * change, so a score is two O(log buckets) prefix sums at read time, never a batch job. */

#define FEN_SIZE 65536

typedef struct fenwick {
    uint32_t t[FEN_SIZE + 1];
    uint64_t total;
} fenwick;

static void fen_add(fenwick *f, size_t i, int d) {
    f->total += (uint64_t)(int64_t)d;
    for (i++; i <= FEN_SIZE; i += i & -i)
        f->t[i] += (uint32_t)d;
}

static uint64_t fen_below(const fenwick *f, size_t i) {
    uint64_t s = 0;
    for (; i > 0; i -= i & -i)
        s += f->t[i];
    return s;
}

enum { RFM_R, RFM_F, RFM_M };

static size_t rfm_bucket(int which, prof_rfm_input in) {
    double v;
    switch (which) {
    case RFM_R:
        v = (double)(in.last_order_ms / 86400000);
        break; /* days since 1970 */
    case RFM_F:
        v = (double)in.orders;
        break;
    default:
        v = in.revenue > 0 ? log1p(in.revenue) * 2000 : 0;
        break;
    }
    if (v < 0) v = 0;
    return v >= FEN_SIZE - 1 ? FEN_SIZE - 1 : (size_t)v;
}

/* ---- State ---- */

#define ENG_CHANGES_KEPT 10000
#define ENG_AUDIT_KEPT 100000
/* Category and brand names kept for favourites; past this, new names are not tracked. */
#define ENG_NAMES_MAX_BYTES (16u * 1024 * 1024)
/* Product ids in carts and purchases: room for some ten million ids. */
#define ENG_PRODUCTS_MAX_BYTES (256u * 1024 * 1024)
/* Popularity groups ("c:<category path>", "s:<segment>", "gender:<value>"); past this, new groups
 * are not tracked. */
#define ENG_GROUPS_MAX_BYTES (16u * 1024 * 1024)
/* Products of one event the recommenders learn (an order's lines). */
#define ENG_RECO_ITEMS 100

struct engine {
    pthread_rwlock_t lock;
    store *store;
    char country[3];
    idg *graph;
    prof **profs; /* by slot; NULL for dead slots */
    size_t nprofs, aprofs;
    consent_ledger **consents; /* by slot below nprofs, like profs; NULL until a first record */
    size_t aconsents;
    consent_ledger *scratch; /* consent read from one event, before it joins a ledger */
    strpool *names;          /* category and brand names the profiles' favourites point to */
    strpool *products;       /* product ids, as the profiles' carts and purchases hold them */
    offer_state *offers;
    cat *catalog;
    reco *reco;      /* the recommendation models, learned from the same events */
    rfeed *feed;     /* every write to reco goes through it: on a thread of its own in replay */
    strpool *groups; /* reco's popularity groups by name; the id is the group */
    /* The catalogue's price and stock changes, newest last: a ring rebuilt by replay. */
    json_t *changes[ENG_CHANGES_KEPT];
    /* Who did what to whose data (export, erasure, unmerge, consent): a ring rebuilt by replay;
     * the records themselves stay in the log. */
    json_t *audit[ENG_AUDIT_KEPT];
    int64_t naudit;
    int64_t nchanges; /* ever; change i is at changes[i % ENG_CHANGES_KEPT] */
    fenwick *rfm[3];
    size_t events_applied, unattributed;
    /* Events that came back with a recommendation_id: what recommendations led to. */
    size_t attributed[RECO_ATTR_N];
    double attributed_revenue;
    int64_t *replay_deletes; /* erasures found while replaying, done before serving */
    size_t nreplay_deletes, areplay_deletes;
    bool replaying;
    js_doc scan; /* replay's token array (util/jscan.h), reused for every stored event */
    buf name;    /* replay's decoded track name, likewise */
};

/* The roots every decision expression may name (docs/expressions.md). */
static const char *const expr_root_names[] = {"profile", "cart", "product", "event", "context"};
enum { ROOT_PROFILE, ROOT_CART, ROOT_PRODUCT, ROOT_EVENT, ROOT_CONTEXT, NROOTS };
static const expr_roots decision_roots = {expr_root_names, NROOTS};

/* The profile root built on first use: a request that never meets an availability rule or an
 * expression never pays for it. One request, one thread: not shared. */
typedef struct lazy_root {
    const struct engine *e;
    uint32_t slot; /* IDG_NONE: an unknown visitor */
    bool built;
    json_t *root;
} lazy_root;

typedef struct eng_ctx {
    const json_t *roots[NROOTS];
    int64_t now_ms;
    lazy_root *lazy; /* fills roots[ROOT_PROFILE] and [ROOT_CART] when they are needed */
} eng_ctx;

static json_t *profile_root(const struct engine *e, uint32_t s, int64_t now_ms);

static void ctx_need_profile(eng_ctx *c) {
    lazy_root *l = c->lazy;
    if (!l || c->roots[ROOT_PROFILE]) return;
    if (!l->built && l->slot != UINT32_MAX) l->root = profile_root(l->e, l->slot, c->now_ms);
    l->built = true;
    c->roots[ROOT_PROFILE] = l->root;
    c->roots[ROOT_CART] = json_object_get(l->root, "cart");
}

static void *expr_cb_compile(const char *src, size_t len, ev_error *err, void *arg) {
    expr_error xe;
    expr *x = expr_compile_bool(src, len, &decision_roots, &xe);
    if (!x) *err = xe.ev;
    return x;
}

static int expr_cb_eval(const void *compiled, const void *ctx, void *arg) {
    const eng_ctx *c = ctx;
    expr_env env = {c->roots, NROOTS, c->now_ms, 0};
    bool ok;
    expr_error xe;
    if (expr_eval_bool(compiled, &env, &ok, &xe)) return -1;
    return ok;
}

static void expr_cb_free(void *compiled, void *arg) {
    expr_free(compiled);
}

/* Availability rules see the product being judged and the viewer's profile. */
static int rule_cb_eval(const void *compiled, const json_t *product, const void *viewer_ctx,
                        void *arg) {
    eng_ctx c = viewer_ctx ? *(const eng_ctx *)viewer_ctx : (eng_ctx){0};
    ctx_need_profile(&c);
    c.roots[ROOT_PRODUCT] = product;
    return expr_cb_eval(compiled, &c, arg);
}

static void error_set(eng_error *err, int status, const char *code, const char *field,
                      const char *msg) {
    if (!err) return;
    err->status = status;
    ev_error_set(&err->ev, code, field ? field : "", "%s", msg);
}

/* ---- Profiles by slot ---- */

static prof *slot_prof(engine *e, uint32_t s) {
    return s < e->nprofs ? e->profs[s] : NULL;
}

static int ensure_prof(engine *e, uint32_t s) {
    if (s >= e->nprofs) {
        if (vec_reserve((void **)&e->profs, &e->aprofs, (size_t)s + 1, sizeof *e->profs) ||
            vec_reserve((void **)&e->consents, &e->aconsents, (size_t)s + 1, sizeof *e->consents))
            return -1;
        /* Only the slots in use are touched: the rest of a doubled array costs no memory. */
        memset(e->profs + e->nprofs, 0, ((size_t)s + 1 - e->nprofs) * sizeof *e->profs);
        memset(e->consents + e->nprofs, 0, ((size_t)s + 1 - e->nprofs) * sizeof *e->consents);
        e->nprofs = (size_t)s + 1;
    }
    if (!e->profs[s] && !(e->profs[s] = prof_new())) return -1;
    return 0;
}

static void rfm_update(engine *e, const prof *p, int sign) {
    if (!p || p->orders <= 0) return;
    prof_rfm_input in = prof_rfm(p);
    for (int i = 0; i < 3; i++)
        fen_add(e->rfm[i], rfm_bucket(i, in), sign);
}

static void rfm_scores(const engine *e, const prof *p, int out[3]) {
    out[0] = out[1] = out[2] = 0;
    if (p->orders <= 0) return;
    prof_rfm_input in = prof_rfm(p);
    for (int i = 0; i < 3; i++) {
        const fenwick *f = e->rfm[i];
        size_t b = rfm_bucket(i, in);
        double below = (double)fen_below(f, b),
               at = (double)(fen_below(f, b + 1) - fen_below(f, b));
        double frac = f->total ? (below + at / 2) / (double)f->total : 0.5;
        int s = 1 + (int)(frac * 5);
        out[i] = s > 5 ? 5 : s;
    }
}

static void profile_id(const engine *e, uint32_t s, char out[32]) {
    snprintf(out, 32, "p_%" PRId64, idg_slot_id(e->graph, s));
}

/* "p_123" -> the live slot, or IDG_NONE. */
static uint32_t parse_profile(const engine *e, const char *id) {
    if (!id || strncmp(id, "p_", 2) != 0) return IDG_NONE;
    char *end;
    long long v = strtoll(id + 2, &end, 10);
    if (end == id + 2 || *end || v <= 0) return IDG_NONE;
    return idg_slot_by_id(e->graph, v);
}

/* ---- Applying events ---- */

static void fail_oom(const char *what) {
    /* A half-applied record would leave the state different from what replay builds. */
    log_error("engine: out of memory %s; stopping", what);
    abort();
}

/* An event as the engine applies it: what every event has, as text beside the engine's tree of
 * the rest (ingest/ev.h), and its typed e-commerce fields. Live, from an ev_event; in replay, from
 * a stored record and its body. */
typedef struct applied {
    int64_t seq, ts;
    ev_type type;
    const char *message_id;
    const char *user_id, *anonymous_id; /* NULL when absent */
    const char *name;                   /* a track's `event`; NULL for the other types */
    const json_t *tree;                 /* the other members the engine reads; NULL for none */
    const cm_event *cm;                 /* NULL for none */
} applied;

/* Identifiers of an event, for the graph: idn_extract_ids()'s list plus an alias's previousId,
 * which names the identity to join (a known anonymousId or userId; unknown, it is taken as an
 * anonymousId, as Segment does). */
static size_t event_idents(engine *e, const applied *a, idn_list *list, idg_ident *ids) {
    const json_t *ev = a->tree;
    ev_type type = a->type;
    idn_extract_ids(a->user_id, a->anonymous_id, ev, type == EV_GROUP, e->country, list);
    size_t n = 0;
    for (int i = 0; i < list->n; i++)
        ids[n++] = (idg_ident){list->ids[i].type, list->ids[i].value};
    const char *prev =
        type == EV_ALIAS ? json_string_value(json_object_get(ev, "previousId")) : NULL;
    if (prev && n < IDG_MAX_IDENTS) {
        int t =
            idg_lookup(e->graph, IDN_USER_ID, prev) != IDG_NONE ? IDN_USER_ID : IDN_ANONYMOUS_ID;
        char tmp[IDN_VALUE_LEN];
        if (idn_normalize(t, prev, strlen(prev), tmp, sizeof tmp, NULL, NULL) == 0) {
            bool dup = false;
            for (size_t i = 0; i < n; i++)
                dup |= ids[i].type == t && strcmp(ids[i].value, prev) == 0;
            if (!dup) {
                /* Keep priority order: insert before the first lower-priority identifier. */
                size_t at = n;
                while (at > 0 && ids[at - 1].type > t)
                    at--;
                memmove(ids + at + 1, ids + at, (n - at) * sizeof *ids);
                ids[at] = (idg_ident){t, prev};
                n++;
            }
        }
    }
    return n;
}

static void apply_offer_record(engine *e, json_t *record, int64_t ts) {
    json_t *reply = NULL;
    ev_error err;
    if (record && offer_apply(e->offers, record, ts, &reply, &err) == OFFER_NOMEM)
        fail_oom("applying an offer record");
    json_decref(reply);
    json_decref(record);
}

static void redeem_coupon(engine *e, uint32_t s, const cm_event *cm, int64_t ts) {
    char pid[32];
    snprintf(pid, sizeof pid, "p_%" PRId64, idg_slot_id(e->graph, s));
    json_t *root = profile_root(e, s, ts);
    eng_ctx ctx = {.roots = {[ROOT_PROFILE] = root, [ROOT_CART] = json_object_get(root, "cart")},
                   .now_ms = ts};
    json_t *record = NULL, *reply = NULL;
    ev_error err;
    /* A code that is unknown, expired or over its limit is the shop's business: the order stands,
     * and the refusal is only logged. */
    offer_result r = offer_redeem(e->offers, NULL, cm->coupon, pid, cm->order_id, &ctx, ts, &record,
                                  &reply, &err);
    if (r != OFFER_OK && r != OFFER_UNKNOWN_CODE)
        log_info("engine: order %s: coupon %s not redeemed: %s", cm->order_id, cm->coupon,
                 err.message);
    json_decref(reply);
    json_decref(root);
    apply_offer_record(e, record, ts);
}

static void unredeem_order(engine *e, const char *order_id, int64_t ts) {
    json_t *record = NULL, *reply = NULL;
    ev_error err;
    offer_unredeem(e->offers, order_id, &record, &reply, &err);
    json_decref(reply);
    apply_offer_record(e, record, ts);
}

/* Consent the event carries (identify traits, Segment's consent object, unsubscribe flags) joins
 * the customer's ledger; a choice repeated on every page view adds nothing. */
static void fold_consent(engine *e, uint32_t s, const json_t *ev, ev_type type,
                         const char *message_id, int64_t ts) {
    consent_ignored ig;
    if (consent_from_event(ev, type == EV_IDENTIFY, message_id, ts, e->scratch, &ig) ==
        CONSENT_ENOMEM)
        fail_oom("reading consent");
    if (consent_count(e->scratch) == 0) return;
    if (!e->consents[s] && !(e->consents[s] = consent_ledger_new())) fail_oom("a consent ledger");
    if (consent_apply(e->consents[s], e->scratch, CONSENT_SKIP_UNCHANGED) == CONSENT_ENOMEM)
        fail_oom("recording consent");
    consent_forget(e->scratch);
}

/* ---- Recommendations: learning ---- */

static bool is_reco_id(const char *id) {
    return id && strncmp(id, "rec_", 4) == 0;
}

/* Counts what an answer led to: a click (or the view it opens), a cart add, an order — the order's
 * revenue when the order names the recommendation, else its lines that do. */
static void attribute(engine *e, const cm_event *cm) {
    bool whole = is_reco_id(cm->recommendation_id), any = whole;
    double lines = 0;
    for (size_t i = 0; i < cm->nproducts; i++) {
        if (!is_reco_id(cm->products[i].recommendation_id)) continue;
        any = true;
        lines += cm->products[i].price * (double)cm->products[i].quantity;
    }
    if (!any) return;
    switch (cm->kind) {
    case CM_PRODUCT_CLICKED:
    case CM_PRODUCT_VIEWED:
        e->attributed[RECO_ATTR_CLICKS]++;
        break;
    case CM_PRODUCT_ADDED:
        e->attributed[RECO_ATTR_CARTS]++;
        break;
    case CM_ORDER_COMPLETED:
        e->attributed[RECO_ATTR_ORDERS]++;
        e->attributed_revenue += whole ? (cm->revenue > 0 ? cm->revenue : cm->total) : lines;
        break;
    default:
        break;
    }
}

/* The action an e-commerce event is for the recommenders (0: none). */
static reco_action reco_action_of(cm_kind k) {
    switch (k) {
    case CM_PRODUCT_VIEWED:
    case CM_PRODUCT_CLICKED:
        return RECO_VIEW;
    case CM_PRODUCT_ADDED_TO_WISHLIST:
        return RECO_WISH;
    case CM_PRODUCT_ADDED:
    case CM_WISHLIST_PRODUCT_ADDED_TO_CART:
        return RECO_CART;
    case CM_ORDER_COMPLETED:
        return RECO_PURCHASE;
    default:
        return 0;
    }
}

/* A popularity group's id by its name, "prefix:name": interned when intern (the writer), else
 * only looked up (readers); 0 when it has none or the name is too long. */
static uint32_t group_of(const engine *e, const char *prefix, const char *name, bool intern) {
    char key[STRPOOL_MAX_LEN + 1];
    size_t np = strlen(prefix), nn = strlen(name);
    if (np + 1 + nn >= sizeof key) return 0;
    memcpy(key, prefix, np);
    key[np] = ':';
    memcpy(key + np + 1, name, nn + 1);
    return intern ? strpool_id(e->groups, key) : strpool_find(e->groups, key);
}

static uint32_t group_id(engine *e, const char *prefix, const char *name) {
    return group_of(e, prefix, name, true);
}

/* The customer's popularity groups, from the traits after an identify: each of "segments", and
 * the demographic traits "gender" and "age" (as a decade, "age:30s"). */
static void reco_groups(engine *e, uint32_t slot, const prof *p) {
    json_t *t = prof_traits(p);
    uint32_t g[RECO_GROUPS];
    size_t n = 0;
    const json_t *segs = json_object_get(t, "segments");
    for (size_t i = 0; i < json_array_size(segs) && n < RECO_GROUPS; i++)
        if (json_is_string(json_array_get(segs, i)) &&
            (g[n] = group_id(e, "s", json_string_value(json_array_get(segs, i)))))
            n++;
    const char *gender = json_string_value(json_object_get(t, "gender"));
    if (gender && n < RECO_GROUPS && (g[n] = group_id(e, "gender", gender))) n++;
    const json_t *age = json_object_get(t, "age");
    if (json_is_number(age) && json_number_value(age) >= 0 && json_number_value(age) < 150 &&
        n < RECO_GROUPS) {
        char decade[16];
        snprintf(decade, sizeof decade, "%ds", (int)json_number_value(age) / 10 * 10);
        if ((g[n] = group_id(e, "age", decade))) n++;
    }
    json_decref(t);
    if (rfeed_set_groups(e->feed, slot, g, n)) fail_oom("recording a customer's groups");
}

/* Feeds the recommenders an e-commerce event's products (in the catalogue by now: cat_observe
 * ran). history_only: rebuilding a customer's history (unmerge), the shop-wide models already
 * counted the event. */
static void reco_learn(engine *e, uint32_t slot, const cm_event *cm, int64_t ts,
                       bool history_only) {
    reco_action a = reco_action_of(cm->kind);
    if (!a) return;
    uint32_t items[ENG_RECO_ITEMS];
    size_t n = 0;
    for (size_t i = 0; i < cm->nproducts && n < ENG_RECO_ITEMS; i++) {
        const char *id = cm->products[i].product_id;
        const cat_product *cp = id ? cat_get(e->catalog, id, strlen(id)) : NULL;
        if (cp) items[n++] = cat_ordinal(cp);
    }
    if (history_only) {
        for (size_t i = 0; i < n; i++)
            if (rfeed_remember(e->feed, slot, a, items[i], ts) == RECO_NOMEM)
                fail_oom("rebuilding a history");
        return;
    }
    if (a == RECO_PURCHASE && n > 0 && rfeed_order(e->feed, slot, items, n) == RECO_NOMEM)
        fail_oom("learning an order");
    for (size_t i = 0; i < n; i++) {
        cat_info info;
        cat_product_info(cat_at(e->catalog, items[i]), &info);
        uint32_t g[8];
        size_t ng = 0;
        for (size_t c = 0; c < info.ncategories && ng < 8; c++)
            if ((g[ng] = group_id(e, "c", info.categories[c]))) ng++;
        if (rfeed_observe(e->feed, slot, a, items[i], g, ng, ts) == RECO_NOMEM)
            fail_oom("learning an interaction");
    }
}

/* Applies the event of log record a->seq. */
static void apply_event(engine *e, const applied *a) {
    e->events_applied++;
    idn_list list;
    idg_ident ids[IDG_MAX_IDENTS];
    size_t n = event_idents(e, a, &list, ids);
    if (n == 0) {
        e->unattributed++; /* every identifier was junk: it links nobody */
        return;
    }
    int64_t seq = a->seq, ts = a->ts;
    ev_type type = a->type;
    const json_t *ev = a->tree;
    const cm_event *cm = a->cm;
    idg_result r;
    if (idg_resolve(e->graph, ids, n, seq, ts, ev_type_name(type), a->name, &r))
        fail_oom("resolving identities");
    for (size_t i = 0; i < r.nmerged; i++) {
        prof *from = slot_prof(e, r.merged[i].from);
        if (ensure_prof(e, r.merged[i].into)) fail_oom("merging");
        prof *into = e->profs[r.merged[i].into];
        if (!from) continue;
        rfm_update(e, from, -1);
        rfm_update(e, into, -1);
        if (prof_merge(into, from)) fail_oom("merging profiles");
        rfm_update(e, into, +1);
        prof_free(from);
        e->profs[r.merged[i].from] = NULL;
        consent_ledger **cf = &e->consents[r.merged[i].from], **ci = &e->consents[r.merged[i].into];
        if (*cf && !*ci) {
            *ci = *cf;
        } else if (*cf) {
            if (consent_merge(*ci, *cf) == CONSENT_ENOMEM) fail_oom("merging consent");
            consent_ledger_free(*cf);
        }
        *cf = NULL;
        /* Offers counted per customer follow the customer: the merged-away profile's
         * redemptions count against the survivor's limits. */
        char from_id[32], into_id[32];
        profile_id(e, r.merged[i].from, from_id);
        profile_id(e, r.merged[i].into, into_id);
        json_t *record = NULL;
        ev_error oerr;
        if (offer_merge_profiles(e->offers, from_id, into_id, &record, &oerr) == OFFER_NOMEM)
            fail_oom("merging offers");
        apply_offer_record(e, record, ts);
        if (rfeed_merge(e->feed, r.merged[i].from, r.merged[i].into)) fail_oom("merging histories");
    }
    if (ensure_prof(e, r.slot)) fail_oom("creating a profile");
    prof *p = e->profs[r.slot];
    rfm_update(e, p, -1);
    /* An order carrying a coupon redeems it, and a cancelled or refunded one gives it back: the
     * same rules as POST /v1/offers/{id}/redeem, judged on the profile before this order. */
    if (cm && cm->order_id && cm->kind == CM_ORDER_COMPLETED && cm->coupon)
        redeem_coupon(e, r.slot, cm, ts);
    if (cm && cm->order_id && (cm->kind == CM_ORDER_CANCELLED || cm->kind == CM_ORDER_REFUNDED))
        unredeem_order(e, cm->order_id, ts);
    prof_event pe = {seq, ts, type, cm, ev, e->names, e->products};
    if (prof_fold(p, &pe)) fail_oom("folding an event");
    rfm_update(e, p, +1);
    fold_consent(e, r.slot, ev, type, a->message_id, ts);
    /* Products named in events teach the catalogue what it lacks (never a price it has). */
    for (size_t i = 0; cm && i < cm->nproducts; i++)
        if (cat_observe(e->catalog, &cm->products[i], cm->currency[0] ? cm->currency : NULL, ts) ==
            CAT_NOMEM)
            fail_oom("learning a product");
    if (type == EV_IDENTIFY) reco_groups(e, r.slot, p);
    if (cm) reco_learn(e, r.slot, cm, ts, false);
    if (cm) attribute(e, cm);
}

/* ---- Commands ---- */

typedef struct cmd_ctx {
    engine *e;
    int64_t seq, now_ms;
    const json_t *record;
    json_t *result; /* {"status": N, "body": ...} */
} cmd_ctx;

static void cmd_reply(cmd_ctx *c, int status, json_t *body) {
    c->result = json_pack("{s:i, s:o}", "status", status, "body", body ? body : json_object());
}

static void cmd_error(cmd_ctx *c, int status, const char *code, const char *field,
                      const char *msg) {
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", msg);
    if (field && *field) json_object_set_new(err, "field", json_string(field));
    c->result = json_pack("{s:i, s:o}", "status", status, "error", err);
}

/* Adds j (taking the reference) to a ring of the last `kept` entries; *count counts every entry
 * ever added, which is what ring_page()'s cursors are. */
static void ring_push(json_t **ring, size_t kept, int64_t *count, json_t *j) {
    json_t **slot = &ring[*count % (int64_t)kept];
    json_decref(*slot);
    *slot = j;
    (*count)++;
}

/* Records a privacy-relevant action. Erasure leaves only the profile id: no personal data. */
static void audit(cmd_ctx *c, const char *action, const char *profile, json_t *detail) {
    engine *e = c->e;
    char at[TF_LEN];
    json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:O?}", "seq", (json_int_t)c->seq, "at",
                          tf_format(c->now_ms, at), "action", action, "profile", profile, "key",
                          json_object_get(c->record, "key"));
    if (!j) fail_oom("an audit entry");
    if (detail) json_object_update(j, detail);
    json_decref(detail);
    ring_push(e->audit, ENG_AUDIT_KEPT, &e->naudit, j);
}

/* Refolds profile slot from its events in the store (after an unmerge moved some away). */
typedef struct refold_arg {
    engine *e;
    uint32_t keep, moved; /* slots */
    prof *keep_p, *moved_p;
} refold_arg;

static int refold_row(const store_row *row, void *arg) {
    refold_arg *a = arg;
    json_error_t je;
    json_t *ev = json_loadb(row->body, row->body_len, 0, &je);
    if (!ev) return 0;
    cm_event *cm = NULL;
    if (row->kind) {
        json_t *props = json_object_get(ev, "properties");
        ev_error ignored;
        if (props) cm_parse(props, (cm_kind)row->kind, &cm, &ignored);
    }
    idn_list list;
    idg_ident ids[IDG_MAX_IDENTS];
    applied ap = {.type = (ev_type)row->type,
                  .user_id = row->user_id,
                  .anonymous_id = row->anonymous_id,
                  .tree = ev};
    size_t n = event_idents(a->e, &ap, &list, ids);
    /* The event goes with the side that holds its best identifier still in the graph. */
    prof *to = a->keep_p;
    for (size_t i = 0; i < n; i++) {
        uint32_t s = idg_lookup(a->e->graph, ids[i].type, ids[i].value);
        if (s == a->moved) {
            to = a->moved_p;
            break;
        }
        if (s == a->keep) break;
    }
    prof_event pe = {row->seq, row->ts_ms, (ev_type)row->type, cm, ev, a->e->names, a->e->products};
    int rc = prof_fold(to, &pe);
    if (!rc && to == a->moved_p)
        fold_consent(a->e, a->moved, ev, (ev_type)row->type, row->message_id, row->ts_ms);
    if (!rc && cm) reco_learn(a->e, to == a->moved_p ? a->moved : a->keep, cm, row->ts_ms, true);
    cm_event_free(cm);
    json_decref(ev);
    return rc;
}

static void cmd_unmerge(cmd_ctx *c) {
    engine *e = c->e;
    const char *id = json_string_value(json_object_get(c->record, "profile"));
    const char *link = json_string_value(json_object_get(c->record, "link"));
    uint32_t s = parse_profile(e, id);
    int64_t lseq;
    int lk;
    if (s == IDG_NONE) return cmd_error(c, 404, "not_found", "profile", "no such profile");
    if (!link || !idg_link_parse(link, &lseq, &lk))
        return cmd_error(c, 400, "invalid_field", "link", "link must be a link id such as 12.1");
    uint32_t ns;
    idg_unmerge_rc rc = idg_unmerge(e->graph, s, lseq, lk, c->seq, &ns);
    if (rc == IDG_UNMERGE_NO_LINK)
        return cmd_error(c, 404, "not_found", "link", "the profile has no link with that id");
    if (rc != IDG_UNMERGE_OK) fail_oom("unmerging");
    /* Both sides are rebuilt from their events: the split is exact, whatever merged since. */
    prof *old = e->profs[s];
    rfm_update(e, old, -1);
    if (ensure_prof(e, ns)) fail_oom("unmerging");
    refold_arg a = {e, s, ns, prof_new(), e->profs[ns]};
    if (!a.keep_p) fail_oom("unmerging");
    rfeed_forget(e->feed, s); /* both histories are rebuilt with the profiles */
    rfeed_forget(e->feed, ns);
    if (store_each(e->store, old->seqs, old->nseqs, refold_row, &a))
        log_error("engine: unmerge could not read every event of %s: %s", id, store_errmsg());
    /* Traits set through the API (not from events) stay with the kept side. */
    prof_free(old);
    e->profs[s] = a.keep_p;
    rfm_update(e, a.keep_p, +1);
    rfm_update(e, a.moved_p, +1);
    reco_groups(e, s, a.keep_p);
    reco_groups(e, ns, a.moved_p);
    char kept[32], moved[32];
    profile_id(e, s, kept);
    profile_id(e, ns, moved);
    audit(c, "unmerge", kept,
          json_pack("{s:s, s:O}", "split_profile", moved, "link",
                    json_object_get(c->record, "link")));
    cmd_reply(c, 200,
              json_pack("{s:s, s:s, s:I, s:I}", "profile", kept, "split_profile", moved,
                        "events_kept", (json_int_t)a.keep_p->nseqs, "events_moved",
                        (json_int_t)a.moved_p->nseqs));
}

/* Replaying an export or an erasure of a customer whose events an erasure deleted since: the
 * profile is not rebuilt, but the audit keeps the action. */
static bool audit_gone(cmd_ctx *c, const char *action, const char *id) {
    if (!c->e->replaying || !id) return false;
    audit(c, action, id, NULL);
    cmd_reply(c, 200, json_object());
    return true;
}

static void cmd_erase(cmd_ctx *c) {
    engine *e = c->e;
    const char *id = json_string_value(json_object_get(c->record, "profile"));
    uint32_t s = parse_profile(e, id);
    if (s == IDG_NONE && audit_gone(c, "erase", id)) return;
    if (s == IDG_NONE) return cmd_error(c, 404, "not_found", "profile", "no such profile");
    prof *p = e->profs[s];
    rfm_update(e, p, -1);
    char pid[32];
    profile_id(e, s, pid);
    json_t *seqs = json_array();
    for (size_t i = 0; i < p->nseqs && seqs; i++)
        json_array_append_new(seqs, json_integer(p->seqs[i]));
    if (e->replaying) {
        /* A crash may have come between this record and the erasure of its events in the log. */
        for (size_t i = 0; i < p->nseqs; i++) {
            if (vec_reserve((void **)&e->replay_deletes, &e->areplay_deletes,
                            e->nreplay_deletes + 1, sizeof *e->replay_deletes))
                fail_oom("replaying an erasure");
            e->replay_deletes[e->nreplay_deletes++] = p->seqs[i];
        }
    }
    json_t *rec = NULL, *ignored = NULL;
    ev_error oerr;
    if (offer_forget_profile(e->offers, pid, &rec, &ignored, &oerr) == OFFER_OK && rec) {
        json_decref(ignored);
        ignored = NULL;
        offer_apply(e->offers, rec, c->now_ms, &ignored, &oerr);
    }
    json_decref(rec);
    json_decref(ignored);
    idg_erase(e->graph, s);
    rfeed_forget(e->feed, s);
    prof_free(p);
    e->profs[s] = NULL;
    consent_ledger_free(e->consents[s]);
    e->consents[s] = NULL;
    /* The audit keeps that consent was recorded, not its content (a proof may be an IP). */
    int64_t first = e->naudit > ENG_AUDIT_KEPT ? e->naudit - ENG_AUDIT_KEPT : 0;
    for (int64_t i = first; i < e->naudit; i++) {
        json_t *a = e->audit[i % ENG_AUDIT_KEPT];
        if (strcmp(json_string_value(json_object_get(a, "profile")), pid) == 0)
            json_object_del(a, "body");
    }
    audit(c, "erase", pid, NULL);
    cmd_reply(c, 200,
              json_pack("{s:s, s:b, s:I, s:o}", "id", pid, "erased", 1, "events",
                        (json_int_t)json_array_size(seqs), "_seqs", seqs));
}

static void cmd_offer(cmd_ctx *c) {
    json_t *reply = NULL;
    ev_error err;
    offer_result r = offer_apply(c->e->offers, c->record, c->now_ms, &reply, &err);
    if (r == OFFER_NOMEM) fail_oom("applying an offer record");
    if (r != OFFER_OK)
        return cmd_error(c, offer_result_status(r), err.code, err.field, err.message);
    cmd_reply(c, 200, reply);
}

static void cmd_consent(cmd_ctx *c) {
    engine *e = c->e;
    const char *id = json_string_value(json_object_get(c->record, "profile"));
    uint32_t s = parse_profile(e, id);
    if (s == IDG_NONE) return cmd_error(c, 404, "not_found", "profile", "no such profile");
    consent_defaults d = {.now_ms = c->now_ms, .source = "api", .actor = "system"};
    ev_error err;
    int rc = consent_parse(json_object_get(c->record, "body"), &d, e->scratch, &err);
    if (rc < 0) {
        consent_forget(e->scratch);
        return cmd_error(c, 400, err.code, err.field, err.message);
    }
    if (!e->consents[s] && !(e->consents[s] = consent_ledger_new())) fail_oom("a consent ledger");
    rc = consent_apply(e->consents[s], e->scratch, 0);
    consent_forget(e->scratch);
    if (rc == CONSENT_ENOMEM) fail_oom("consent");
    if (rc == CONSENT_EFULL)
        return cmd_error(c, 400, "invalid_field", "purpose",
                         "the customer's ledger already holds the most purposes it may (32)");
    char pid[32];
    profile_id(e, s, pid);
    audit(c, "consent", pid, json_pack("{s:O}", "body", json_object_get(c->record, "body")));
    cmd_reply(c, 200, consent_state_json(e->consents[s]));
}

static void remember_changes(engine *e, cat_changes *ch, json_t *reply_list) {
    for (size_t i = 0; i < ch->n; i++) {
        json_t *j = cat_change_json(&ch->v[i]);
        if (!j) fail_oom("a catalogue change");
        json_object_set_new(j, "seq", json_integer(e->nchanges + 1));
        if (reply_list) json_array_append(reply_list, j);
        ring_push(e->changes, ENG_CHANGES_KEPT, &e->nchanges, j);
    }
    cat_changes_free(ch);
}

static void cmd_catalog(cmd_ctx *c) {
    engine *e = c->e;
    const char *op = json_string_value(json_object_get(c->record, "op"));
    const json_t *logged = json_object_get(c->record, "logged");
    cat_changes ch = CAT_CHANGES_INIT;
    int rc;
    if (strcmp(op, "catalog.upsert") == 0)
        rc = cat_upsert_apply(e->catalog, logged, c->now_ms, &ch);
    else if (strcmp(op, "catalog.patch") == 0)
        rc = cat_patch_apply(e->catalog, logged, c->now_ms, &ch);
    else
        rc = cat_archive_apply(e->catalog, logged, c->now_ms);
    if (rc == CAT_NOMEM) fail_oom("applying a catalogue change");
    if (rc != CAT_OK) {
        cat_changes_free(&ch);
        return cmd_error(c, 409, "conflict", NULL,
                         "the catalogue changed since the request was checked; retry");
    }
    json_t *list = json_array();
    remember_changes(e, &ch, list);
    json_t *body = json_pack("{s:o}", "changes", list);
    if (json_is_array(logged))
        json_object_set_new(body, "upserted", json_integer((json_int_t)json_array_size(logged)));
    const char *pid = json_string_value(json_object_get(logged, "id"));
    const cat_product *p = pid ? cat_get(e->catalog, pid, strlen(pid)) : NULL;
    if (p) json_object_set_new(body, "product", cat_product_json(p));
    cmd_reply(c, 200, body);
}

static void cmd_export(cmd_ctx *c) {
    const char *id = json_string_value(json_object_get(c->record, "profile"));
    uint32_t s = parse_profile(c->e, id);
    if (s == IDG_NONE && audit_gone(c, "export", id)) return;
    if (s == IDG_NONE) return cmd_error(c, 404, "not_found", "profile", "no such profile");
    char pid[32];
    profile_id(c->e, s, pid);
    audit(c, "export", pid, NULL);
    cmd_reply(c, 200, json_pack("{s:s}", "profile", pid));
}

typedef struct cmd_def {
    const char *op;
    void (*apply)(cmd_ctx *c);
    bool prefix; /* op names a family ("offer.") */
} cmd_def;

static const cmd_def commands[] = {
    {"profile.unmerge", cmd_unmerge, false}, {"profile.erase", cmd_erase, false},
    {"profile.consent", cmd_consent, false}, {"profile.export", cmd_export, false},
    {"catalog.", cmd_catalog, true},         {"offer.", cmd_offer, true},
};

static json_t *apply_command(engine *e, int64_t seq, int64_t now_ms, const json_t *record) {
    const char *op = json_string_value(json_object_get(record, "op"));
    cmd_ctx c = {e, seq, now_ms, record, NULL};
    for (size_t i = 0; op && i < sizeof commands / sizeof *commands; i++) {
        size_t n = strlen(commands[i].op);
        if (commands[i].prefix ? strncmp(op, commands[i].op, n) == 0
                               : strcmp(op, commands[i].op) == 0) {
            commands[i].apply(&c);
            return c.result;
        }
    }
    log_warn("engine: log record %" PRId64 " has unknown op %s; skipped", seq, op ? op : "(none)");
    cmd_error(&c, 500, "internal", "op", "unknown command");
    return c.result;
}

/* How many events ahead eng_apply() starts fetching an event's lookups; each level of a lookup
 * is fetched APPLY_STEP events after the one before it (idg_prefetch(), cat_prefetch()). */
#define APPLY_STEP 2
#define APPLY_AHEAD (4 * APPLY_STEP)

/* The lookups applying an event starts with: its userId's and anonymousId's in the identity graph
 * (both taken as they are: idnorm.c), its first product's in the catalogue. 0: none. */
typedef struct lookups {
    uint64_t user, anon, product;
} lookups;

/* Fetches stage of ev's lookups (l is set at stage 0). */
static void prefetch_event(const engine *e, const ev_event *ev, lookups *l, int stage) {
    if (stage == 0) {
        const cm_event *cm = ev->seq ? ev->commerce : NULL;
        const char *product = cm && cm->nproducts ? cm->products[0].product_id : NULL;
        l->user = ev->seq && ev->user_id ? idg_hash(IDN_USER_ID, ev->user_id) : 0;
        l->anon = ev->seq && ev->anonymous_id ? idg_hash(IDN_ANONYMOUS_ID, ev->anonymous_id) : 0;
        l->product = product ? cat_hash(product, strlen(product)) : 0;
    }
    if (l->user && stage < 3) idg_prefetch(e->graph, l->user, stage);
    if (l->anon && stage < 3) idg_prefetch(e->graph, l->anon, stage);
    if (l->product) cat_prefetch(e->catalog, l->product, stage);
}

void eng_apply(void *arg, ev_event *events, size_t n) {
    engine *e = arg;
    pthread_rwlock_wrlock(&e->lock);
    /* A batch's customers and products are looked up among millions: a third of the applier's
     * time was cache misses on such lookups (docs/benchmarks.md). Event i's are fetched while the
     * events before it are applied, one level of each lookup every APPLY_STEP events. */
    lookups ahead[APPLY_AHEAD];
    for (size_t i = 0; i < n + APPLY_AHEAD; i++) {
        for (int stage = 0; stage < 4; stage++) {
            size_t j = i - (size_t)stage * APPLY_STEP; /* the event at this stage */
            if (i >= (size_t)stage * APPLY_STEP && j < n)
                prefetch_event(e, &events[j], &ahead[j % APPLY_AHEAD], stage);
        }
        if (i < APPLY_AHEAD) continue;
        ev_event *ev = &events[i - APPLY_AHEAD];
        if (!ev->seq) continue; /* a duplicate: applied when first stored */
        if (ev->command)
            ev->result = apply_command(e, ev->seq, ev->received_ms, ev->json);
        else
            apply_event(e, &(applied){.seq = ev->seq,
                                      .ts = ev->timestamp_ms,
                                      .type = ev->type,
                                      .message_id = ev->message_id,
                                      .user_id = ev->user_id,
                                      .anonymous_id = ev->anonymous_id,
                                      .name = ev->event_name,
                                      .tree = ev->json,
                                      .cm = ev->commerce});
    }
    rfeed_flush(e->feed);
    pthread_rwlock_unlock(&e->lock);
}

/* ---- Replay ---- */

/* A stored event as apply_event() reads it, from the scanned body: in *tree the members the
 * engine reads (ev_engine_member(); NULL for none), in *name a track's name (decoded into
 * e->name), and in *props the token of the properties (0 when absent) for an e-commerce event's
 * typing. That is what the live path hands over too (ev.h), and it spares replay most of jansson's
 * parsing: a stored body is mostly properties. -1 when the body does not scan (the caller then
 * parses it with jansson) or memory ran out. */
static int scanned_event(engine *e, const store_row *row, json_t **tree, const char **name,
                         uint32_t *props) {
    js_doc *d = &e->scan;
    *tree = NULL;
    *name = NULL;
    *props = 0;
    if (js_parse(d, row->body, row->body_len, EV_MAX_DEPTH) || d->tok[0].kind != JS_OBJECT)
        return -1;
    for (uint32_t i = 0, k = 1; i < d->tok[0].count; i++, k = d->tok[k + 1].next) {
        const char *key = d->text + d->tok[k].start;
        size_t len = d->tok[k].len;
        if (len == 10 && memcmp(key, "properties", 10) == 0) {
            *props = k + 1;
        } else if (len == 5 && memcmp(key, "event", 5) == 0) {
            if (row->type != EV_TRACK || d->tok[k + 1].kind != JS_STRING) continue;
            buf_reset(&e->name);
            if (buf_reserve(&e->name, d->tok[k + 1].len)) goto fail;
            js_string(d, k + 1, e->name.data);
            *name = e->name.data;
        } else if (ev_engine_member(key, len) && ev_engine_put(tree, d, k)) {
            goto fail;
        }
    }
    return 0;
fail:
    json_decref(*tree);
    *tree = NULL;
    return -1;
}

/* The typed e-commerce fields of a stored event of kind k: from the tokens when the body scanned
 * (ptok: its properties, 0 when absent), else from the tree ev. NULL when the properties no longer
 * pass (a stored event always did when it was stored) or memory ran out. */
static cm_event *stored_commerce(engine *e, cm_kind k, bool scanned, uint32_t ptok, json_t *ev) {
    cm_event *cm = NULL;
    ev_error ignored;
    if (!scanned) {
        cm_parse(json_object_get(ev, "properties"), k, &cm, &ignored);
        return cm;
    }
    if (!cm_parse_tokens(&e->scan, ptok, k, &cm)) return cm;
    /* Declined: a value the rules coerce, which cm_parse() does on a tree of its own. */
    json_t *props = ptok ? js_to_json(&e->scan, ptok) : NULL;
    if (!ptok || props) cm_parse(props, k, &cm, &ignored);
    json_decref(props);
    return cm;
}

static int replay_row(const store_row *row, void *arg) {
    engine *e = arg;
    json_t *ev = NULL;
    const char *name = NULL;
    uint32_t ptok = 0;
    bool scanned =
        row->type >= 0 && row->type < EV_NTYPES && scanned_event(e, row, &ev, &name, &ptok) == 0;
    if (!scanned) {
        json_error_t je;
        if (!(ev = json_loadb(row->body, row->body_len, 0, &je))) {
            log_warn("engine: log record %" PRId64 " is not JSON (%s); skipped", row->seq, je.text);
            return 0;
        }
    }
    if (row->type == STORE_TYPE_COMMAND) {
        int64_t at = 0;
        const char *r = json_string_value(json_object_get(ev, "at"));
        if (r) tf_parse(r, strlen(r), &at);
        json_decref(apply_command(e, row->seq, at, ev));
    } else if (row->type >= 0 && row->type < EV_NTYPES) {
        cm_event *cm = row->kind ? stored_commerce(e, (cm_kind)row->kind, scanned, ptok, ev) : NULL;
        if (!scanned && row->type == EV_TRACK)
            name = json_string_value(json_object_get(ev, "event"));
        apply_event(e, &(applied){.seq = row->seq,
                                  .ts = row->ts_ms,
                                  .type = (ev_type)row->type,
                                  .message_id = row->message_id,
                                  .user_id = row->user_id,
                                  .anonymous_id = row->anonymous_id,
                                  .name = name,
                                  .tree = ev,
                                  .cm = cm});
        cm_event_free(cm);
    }
    json_decref(ev);
    return 0;
}

static int finish_erasures(engine *e) {
    if (!e->nreplay_deletes) return 0;
    if (store_erase(e->store, e->replay_deletes, e->nreplay_deletes)) return -1;
    log_info("engine: finished an interrupted erasure: %zu events erased", e->nreplay_deletes);
    return 0;
}

/* ---- Life cycle ---- */

engine *eng_open(store *s, const eng_opts *opts, char *err, size_t errlen) {
    engine *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_rwlock_init(&e->lock, NULL);
    js_init(&e->scan, 0);
    e->store = s;
    if (opts && opts->default_country && *opts->default_country) {
        if (!idn_country_known(opts->default_country)) {
            snprintf(err, errlen, "default country %s is not one engaged knows (ISO 3166 alpha-2)",
                     opts->default_country);
            goto fail;
        }
        snprintf(e->country, sizeof e->country, "%s", opts->default_country);
    }
    idg_opts go = {.ntypes = IDN_NTYPES};
    for (int t = 0; t < IDN_NTYPES; t++) {
        go.type_names[t] = idn_type_get(t)->name;
        go.limits[t] = (uint32_t)idn_type_get(t)->limit;
    }
    offer_options oo = {
        .expr = {expr_cb_compile, expr_cb_eval, expr_cb_free, e},
    };
    cat_options co = {
        .rule_compile = expr_cb_compile,
        .rule_eval = rule_cb_eval,
        .rule_free = expr_cb_free,
        .rule_arg = e,
    };
    e->graph = idg_new(&go);
    e->offers = offer_state_new(&oo);
    e->catalog = cat_new(&co);
    e->scratch = consent_ledger_new();
    e->names = strpool_new(ENG_NAMES_MAX_BYTES);
    e->products = strpool_new(ENG_PRODUCTS_MAX_BYTES);
    e->groups = strpool_new(ENG_GROUPS_MAX_BYTES);
    reco_opts ro;
    reco_opts_default(&ro);
    e->reco = reco_new(&ro);
    e->feed = e->reco ? rfeed_new(e->reco) : NULL;
    for (int i = 0; i < 3; i++)
        e->rfm[i] = calloc(1, sizeof(fenwick));
    if (!e->graph || !e->offers || !e->catalog || !e->scratch || !e->names || !e->products ||
        !e->groups || !e->reco || !e->feed || !e->rfm[0] || !e->rfm[1] || !e->rfm[2]) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    uint64_t t0 = clock_mono_ns();
    e->replaying = true;
    /* The models learn on the other core meanwhile (here, if the thread cannot start). */
    rfeed_detach(e->feed);
    int rc = store_each(s, NULL, 0, replay_row, e);
    rfeed_join(e->feed);
    if (rc || finish_erasures(e)) {
        snprintf(err, errlen, "engine: replaying the log: %s", store_errmsg());
        goto fail;
    }
    e->replaying = false;
    /* And while serving: eng_apply() hands the learning over (rfeed_flush()) and answers without
     * waiting for it; readers of the models wait for the thread (rfeed.h). Learning was 43% of
     * the applier's time (perf), which every answer waited for. If the thread cannot start, the
     * feed stays direct. */
    rfeed_detach(e->feed);
    js_free(&e->scan); /* only replay scans */
    buf_free(&e->name);
    free(e->replay_deletes);
    e->replay_deletes = NULL;
    e->nreplay_deletes = e->areplay_deletes = 0;
    log_info("engine: %zu events replayed into %zu profiles in %.0f ms", e->events_applied,
             idg_live(e->graph), (double)(clock_mono_ns() - t0) / 1e6);
    return e;
fail:
    eng_close(e);
    return NULL;
}

void eng_close(engine *e) {
    if (!e) return;
    js_free(&e->scan);
    buf_free(&e->name);
    for (size_t i = 0; i < e->nprofs; i++) {
        prof_free(e->profs[i]);
        consent_ledger_free(e->consents[i]);
    }
    free(e->profs);
    free(e->consents);
    consent_ledger_free(e->scratch);
    strpool_free(e->names);
    strpool_free(e->products);
    strpool_free(e->groups);
    rfeed_free(e->feed);
    reco_free(e->reco);
    cat_free(e->catalog);
    for (size_t i = 0; i < ENG_CHANGES_KEPT; i++)
        json_decref(e->changes[i]);
    for (size_t i = 0; i < ENG_AUDIT_KEPT; i++)
        json_decref(e->audit[i]);
    idg_free(e->graph);
    offer_state_free(e->offers);
    for (int i = 0; i < 3; i++)
        free(e->rfm[i]);
    free(e->replay_deletes);
    pthread_rwlock_destroy(&e->lock);
    free(e);
}

/* ---- Reading ---- */

/* The "profile" root of decision expressions: traits, with the computed attributes over them, and
 * the id. New reference. */
static json_t *profile_root(const engine *e, uint32_t s, int64_t now_ms) {
    const prof *p = e->profs[s];
    int rfm[3];
    rfm_scores(e, p, rfm);
    json_t *o = prof_traits(p);
    json_t *computed = prof_computed_json(p, rfm, now_ms, e->names, e->products);
    if (!o || !computed) {
        json_decref(o);
        json_decref(computed);
        return NULL;
    }
    json_object_update(o, computed);
    json_decref(computed);
    char pid[32];
    profile_id(e, s, pid);
    json_object_set_new(o, "id", json_string(pid));
    return o;
}

/* One channel of a customer: its address, and what the consent ledger allows on it. Reachable: an
 * address is known and transactional messages are not refused; marketing needs its own consent. */
static json_t *channel_json(const engine *e, uint32_t s, const char *channel, json_t *address) {
    int c = consent_channel_lookup(channel);
    const consent_ledger *l = e->consents[s];
    bool tx = c < 0 || !l ||
              consent_allows(l, (consent_channel)c, "transactional", CONSENT_POLICY_DEFAULT);
    bool mk =
        c >= 0 && l && consent_allows(l, (consent_channel)c, "marketing", CONSENT_POLICY_DEFAULT);
    json_t *o = json_pack("{s:s, s:b, s:b}", "channel", channel, "reachable", tx, "marketing", mk);
    if (o && address) json_object_set(o, "address", address);
    return o;
}

typedef struct channels_arg {
    const engine *e;
    uint32_t slot;
    json_t *list;
} channels_arg;

/* The channel an identifier type reaches the customer on, if any. */
static void add_channel(void *arg, int type, const char *value) {
    static const struct {
        int type;
        const char *channel;
    } map[] = {{IDN_EMAIL, "email"},         {IDN_PHONE, "sms"},
               {IDN_WHATSAPP, "whatsapp"},   {IDN_MESSENGER, "messenger"},
               {IDN_INSTAGRAM, "instagram"}, {IDN_X, "x"},
               {IDN_TELEGRAM, "telegram"}};
    channels_arg *a = arg;
    for (size_t k = 0; k < sizeof map / sizeof *map; k++) {
        if (map[k].type != type) continue;
        json_t *address = json_string(value);
        json_array_append_new(a->list, channel_json(a->e, a->slot, map[k].channel, address));
        json_decref(address);
    }
}

static json_t *channels_json(const engine *e, uint32_t s) {
    /* Each address the customer can be reached at (from the identity graph), and web or push
     * when the customer used the site or the app. */
    channels_arg a = {e, s, json_array()};
    if (a.list) idg_each_ident(e->graph, s, add_channel, &a);
    const prof *p = e->profs[s];
    if (a.list && (p->channels[PROF_CH_WEB] || p->channels[PROF_CH_APP]))
        json_array_append_new(
            a.list, json_pack("{s:s, s:b}", "channel",
                              p->channels[PROF_CH_APP] > p->channels[PROF_CH_WEB] ? "app" : "web",
                              "reachable", 1));
    return a.list;
}

static json_t *profile_json(const engine *e, uint32_t s, int64_t now_ms) {
    const prof *p = e->profs[s];
    int rfm[3];
    rfm_scores(e, p, rfm);
    char pid[32];
    profile_id(e, s, pid);
    json_t *computed = prof_computed_json(p, rfm, now_ms, e->names, e->products);
    if (computed) json_object_set_new(computed, "channels", channels_json(e, s));
    return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", pid, "identities",
                     idg_identities_json(e->graph, s), "traits", prof_traits(p), "computed",
                     computed ? computed : json_object(), "consent",
                     e->consents[s] ? consent_state_json(e->consents[s]) : json_object(), "links",
                     idg_links_json(e->graph, s), "merges", idg_merges_json(e->graph, s),
                     "refused_links", idg_refusals_json(e->graph, s, 20));
}

static uint32_t find_profile(engine *e, const char *id, eng_error *err) {
    uint32_t s = parse_profile(e, id);
    if (s == IDG_NONE || !slot_prof(e, s)) {
        error_set(err, 404, "not_found", "id", "no profile has this id");
        return IDG_NONE;
    }
    return s;
}

json_t *eng_profile(engine *e, const char *id, int64_t now_ms, eng_error *err) {
    pthread_rwlock_rdlock(&e->lock);
    uint32_t s = find_profile(e, id, err);
    json_t *o = s == IDG_NONE ? NULL : profile_json(e, s, now_ms);
    pthread_rwlock_unlock(&e->lock);
    return o;
}

json_t *eng_profile_lookup(engine *e, const char *type, const char *value, int64_t now_ms,
                           eng_error *err) {
    int t = idn_type_lookup(type);
    if (t < 0) {
        error_set(err, 400, "invalid_field", type, "not an identity type");
        return NULL;
    }
    char norm[IDN_VALUE_LEN];
    ev_error nerr;
    int rc = idn_normalize(t, value, strlen(value), norm, sizeof norm, e->country, &nerr);
    if (rc != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s is not a valid %s: %s", type, type,
                 rc > 0 ? "a placeholder value that never identifies anyone" : nerr.message);
        error_set(err, 400, "invalid_field", type, msg);
        return NULL;
    }
    pthread_rwlock_rdlock(&e->lock);
    uint32_t s = idg_lookup(e->graph, t, norm);
    json_t *o = NULL;
    if (s == IDG_NONE || !slot_prof(e, s))
        error_set(err, 404, "not_found", type, "no profile has this identifier");
    else
        o = profile_json(e, s, now_ms);
    pthread_rwlock_unlock(&e->lock);
    return o;
}

int eng_profile_seqs(engine *e, const char *id, int64_t after, int64_t *out, size_t max, size_t *n,
                     bool *more, eng_error *err) {
    pthread_rwlock_rdlock(&e->lock);
    uint32_t s = find_profile(e, id, err);
    int rc = -1;
    if (s != IDG_NONE) {
        const prof *p = e->profs[s];
        size_t lo = 0, hi = p->nseqs;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (p->seqs[mid] <= after)
                lo = mid + 1;
            else
                hi = mid;
        }
        *n = p->nseqs - lo < max ? p->nseqs - lo : max;
        memcpy(out, p->seqs + lo, *n * sizeof *out);
        *more = lo + *n < p->nseqs;
        rc = 0;
    }
    pthread_rwlock_unlock(&e->lock);
    return rc;
}

json_t *eng_profile_export(engine *e, const char *id, int64_t now_ms, eng_error *err) {
    pthread_rwlock_rdlock(&e->lock);
    uint32_t s = find_profile(e, id, err);
    json_t *o = NULL;
    if (s != IDG_NONE) {
        o = profile_json(e, s, now_ms);
        char pid[32];
        profile_id(e, s, pid);
        json_t *offers = NULL;
        ev_error oerr;
        if (offer_profile_json(e->offers, pid, &offers, &oerr) == OFFER_OK && offers)
            json_object_set_new(o, "offers", offers);
        json_object_set_new(o, "refused_links", idg_refusals_json(e->graph, s, IDG_MAX_REFUSALS));
        json_object_set_new(o, "consent_history", consent_history_json(e->consents[s]));
    }
    pthread_rwlock_unlock(&e->lock);
    return o;
}

/* ---- Preparing commands ---- */

typedef struct prep {
    engine *e;
    const json_t *args;
    int64_t now_ms;
    json_t *record, *reply;
    eng_error *err;
    buf *text; /* where a read that answers in text writes (recommendations) */
} prep;

static const char *arg_str(const prep *p, const char *key) {
    return json_string_value(json_object_get(p->args, key));
}

static int prep_profile(prep *p, const char *op) {
    const char *id = arg_str(p, "id");
    if (find_profile(p->e, id, p->err) == IDG_NONE) return -1;
    p->record = json_pack("{s:s, s:s}", "op", op, "profile", id);
    return 1;
}

static int prep_export(prep *p) {
    return prep_profile(p, "profile.export");
}

/* A page of one of the engine's rings (audit entries, catalogue changes): entries after the
 * cursor (a count of entries ever added), oldest first, up to limit. A ring only holds the last
 * `kept`; an older cursor starts at the oldest held. A feed (changes) always answers a cursor to
 * poll with; a list (audit) answers null on its last page. */
static int ring_page(prep *p, json_t *const *ring, size_t kept, int64_t count, const char *key,
                     bool feed) {
    const char *c = arg_str(p, "cursor");
    int64_t after = 0;
    if (c) {
        char *end;
        after = strtoll(c, &end, 10);
        if (*end || end == c || after < 0) {
            error_set(p->err, 400, "invalid_field", "cursor",
                      "cursor is not one this server gave out");
            return -1;
        }
    }
    json_int_t limit = json_integer_value(json_object_get(p->args, "limit"));
    if (!limit) limit = 100;
    int64_t first = count > (int64_t)kept ? count - (int64_t)kept : 0;
    if (after < first) after = first;
    json_t *items = json_array();
    int64_t i = after;
    for (; i < count && (json_int_t)json_array_size(items) < limit; i++)
        json_array_append(items, ring[i % (int64_t)kept]);
    char next[24];
    snprintf(next, sizeof next, "%" PRId64, i);
    p->reply = json_pack("{s:o, s:s?}", key, items, "next", feed || i < count ? next : NULL);
    return 0;
}

static int prep_audit(prep *p) {
    return ring_page(p, p->e->audit, ENG_AUDIT_KEPT, p->e->naudit, "entries", false);
}

static int prep_erase(prep *p) {
    return prep_profile(p, "profile.erase");
}

static int prep_unmerge(prep *p) {
    const json_t *body = json_object_get(p->args, "body");
    const json_t *link = json_object_get(body, "link");
    int64_t seq;
    int k;
    if (!link) {
        error_set(p->err, 400, "missing_field", "link",
                  "link is required (a link id from the profile's links)");
        return -1;
    }
    if (!json_is_string(link) || !idg_link_parse(json_string_value(link), &seq, &k)) {
        error_set(p->err, 400, "invalid_field", "link", "link must be a link id such as \"12.1\"");
        return -1;
    }
    if (prep_profile(p, "profile.unmerge") < 0) return -1;
    json_object_set(p->record, "link", (json_t *)link);
    return 1;
}

/* Offers: the module prepares its own records; eligibility reads the profile. */
static int offer_outcome(prep *p, offer_result r, ev_error *oerr, json_t *record, json_t *reply) {
    if (r != OFFER_OK) {
        p->err->status = offer_result_status(r);
        p->err->ev = *oerr;
        return -1;
    }
    p->record = record;
    p->reply = reply;
    return record ? 1 : 0;
}

static int prep_offer_put(prep *p) {
    json_t *rec = NULL;
    ev_error oerr;
    offer_result r =
        offer_put(p->e->offers, arg_str(p, "id"), json_object_get(p->args, "body"), &rec, &oerr);
    return offer_outcome(p, r, &oerr, rec, NULL);
}

static int prep_offer_patch(prep *p) {
    json_t *rec = NULL;
    ev_error oerr;
    offer_result r =
        offer_patch(p->e->offers, arg_str(p, "id"), json_object_get(p->args, "body"), &rec, &oerr);
    return offer_outcome(p, r, &oerr, rec, NULL);
}

static int prep_offer_get(prep *p) {
    json_t *reply = NULL;
    ev_error oerr;
    offer_result r = offer_get(p->e->offers, arg_str(p, "id"), &reply, &oerr);
    return offer_outcome(p, r, &oerr, NULL, reply);
}

static int prep_offer_list(prep *p) {
    json_t *reply = NULL;
    ev_error oerr;
    json_int_t limit = json_integer_value(json_object_get(p->args, "limit"));
    offer_result r = offer_list(p->e->offers, arg_str(p, "cursor"), (size_t)limit, &reply, &oerr);
    return offer_outcome(p, r, &oerr, NULL, reply);
}

static int prep_offer_codes(prep *p) {
    const json_t *body = json_object_get(p->args, "body");
    json_t *rec = NULL;
    ev_error oerr;
    offer_result r;
    if (json_object_get(body, "codes")) {
        r = offer_codes_import(p->e->offers, arg_str(p, "id"), json_object_get(body, "codes"), &rec,
                               &oerr);
    } else {
        const json_t *count = json_object_get(body, "count");
        if (!json_is_integer(count) || json_integer_value(count) < 1 ||
            json_integer_value(count) > OFFER_BATCH_MAX) {
            char msg[128];
            snprintf(msg, sizeof msg, "count must be an integer from 1 to %d (or give codes)",
                     OFFER_BATCH_MAX);
            error_set(p->err, 400, count ? "invalid_field" : "missing_field", "count", msg);
            return -1;
        }
        r = offer_codes_generate(p->e->offers, arg_str(p, "id"), (size_t)json_integer_value(count),
                                 json_string_value(json_object_get(body, "prefix")), NULL, NULL,
                                 &rec, &oerr);
    }
    return offer_outcome(p, r, &oerr, rec, NULL);
}

/* The customer of an offer call: "profile" in the body, which must exist. Builds the expression
 * context for eligibility. */
static uint32_t offer_customer(prep *p, eng_ctx *ctx, char pid[32], bool in_path) {
    const json_t *body = json_object_get(p->args, "body");
    const json_t *v = in_path ? json_object_get(p->args, "id") : json_object_get(body, "profile");
    if (!v) {
        error_set(p->err, 400, "missing_field", "profile", "profile (a profile id) is required");
        return IDG_NONE;
    }
    if (!json_is_string(v)) {
        error_set(p->err, 400, "invalid_field", "profile", "profile must be a profile id string");
        return IDG_NONE;
    }
    uint32_t s = find_profile(p->e, json_string_value(v), p->err);
    if (s == IDG_NONE) {
        p->err->status = 404;
        snprintf(p->err->ev.field, sizeof p->err->ev.field, "profile");
        return IDG_NONE;
    }
    profile_id(p->e, s, pid);
    memset(ctx, 0, sizeof *ctx);
    json_t *root = profile_root(p->e, s, p->now_ms);
    ctx->roots[ROOT_PROFILE] = root;
    ctx->roots[ROOT_CART] = json_object_get(root, "cart");
    ctx->now_ms = p->now_ms;
    return s;
}

static int prep_offer_customer(prep *p, int which) {
    eng_ctx ctx;
    char pid[32];
    if (offer_customer(p, &ctx, pid, false) == IDG_NONE) return -1;
    const json_t *body = json_object_get(p->args, "body");
    const char *code = json_string_value(json_object_get(body, "code"));
    const char *order = json_string_value(json_object_get(body, "order_id"));
    json_t *rec = NULL, *reply = NULL;
    ev_error oerr;
    offer_result r;
    const char *id = arg_str(p, "id");
    if (which == 0)
        r = offer_assign(p->e->offers, id, pid, &ctx, p->now_ms, &rec, &reply, &oerr);
    else if (which == 1)
        r = offer_validate(p->e->offers, id, code, pid, &ctx, p->now_ms, &reply, &oerr);
    else
        r = offer_redeem(p->e->offers, id, code, pid, order, &ctx, p->now_ms, &rec, &reply, &oerr);
    json_decref((json_t *)ctx.roots[ROOT_PROFILE]);
    return offer_outcome(p, r, &oerr, rec, reply);
}

static int prep_offer_assign(prep *p) {
    return prep_offer_customer(p, 0);
}
static int prep_offer_validate(prep *p) {
    return prep_offer_customer(p, 1);
}
static int prep_offer_redeem(prep *p) {
    return prep_offer_customer(p, 2);
}

static int prep_offer_eligible(prep *p) {
    eng_ctx ctx;
    char pid[32];
    if (offer_customer(p, &ctx, pid, true) == IDG_NONE) return -1;
    json_t *reply = NULL;
    ev_error oerr;
    offer_result r = offer_eligible_list(p->e->offers, pid, &ctx, arg_str(p, "channel"), p->now_ms,
                                         &reply, &oerr);
    json_decref((json_t *)ctx.roots[ROOT_PROFILE]);
    return offer_outcome(p, r, &oerr, NULL, reply);
}

static int prep_consent(prep *p) {
    const json_t *body = json_object_get(p->args, "body");
    consent_defaults d = {.now_ms = p->now_ms, .source = "api", .actor = "system"};
    consent_ledger *tmp = consent_ledger_new();
    if (!tmp) {
        error_set(p->err, 503, "unavailable", NULL, "out of memory");
        return -1;
    }
    int rc = consent_parse(body, &d, tmp, &p->err->ev);
    consent_ledger_free(tmp);
    if (rc < 0) {
        p->err->status = strcmp(p->err->ev.code, "internal") == 0 ? 500 : 400;
        return -1;
    }
    if (prep_profile(p, "profile.consent") < 0) return -1;
    json_object_set_new(p->record, "body", json_deep_copy(body));
    return 1;
}

/* ---- Catalogue ---- */

static int cat_outcome(prep *p, int rc, const char *op, json_t *logged) {
    if (rc) {
        static const struct {
            const char *code;
            int status;
        } statuses[] = {{"not_found", 404},
                        {"internal", 500},
                        {"product_too_large", 413},
                        {"too_many_products", 413}};
        p->err->status = 400;
        for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++)
            if (strcmp(p->err->ev.code, statuses[i].code) == 0) p->err->status = statuses[i].status;
        return -1;
    }
    p->record = json_pack("{s:s, s:o}", "op", op, "logged", logged);
    return 1;
}

static int prep_catalog_upsert(prep *p) {
    cat_options co = {expr_cb_compile, rule_cb_eval, expr_cb_free, p->e, 0};
    json_t *logged = NULL;
    const json_t *body = json_object_get(p->args, "body");
    /* PUT /v1/catalog/products takes the array itself; {"products":[...]} is accepted too. */
    if (json_is_object(body) && json_is_array(json_object_get(body, "products")))
        body = json_object_get(body, "products");
    int rc = cat_upsert_prepare(&co, body, &logged, &p->err->ev);
    return cat_outcome(p, rc, "catalog.upsert", logged);
}

static int prep_catalog_patch(prep *p) {
    const char *id = arg_str(p, "id");
    json_t *logged = NULL;
    int rc = cat_patch_prepare(p->e->catalog, id, json_object_get(p->args, "body"), &logged,
                               &p->err->ev);
    return cat_outcome(p, rc, "catalog.patch", logged);
}

static int prep_catalog_archive(prep *p) {
    json_t *logged = NULL;
    int rc = cat_archive_prepare(p->e->catalog, arg_str(p, "id"), &logged, &p->err->ev);
    return cat_outcome(p, rc, "catalog.archive", logged);
}

static const cat_product *find_product(prep *p) {
    const char *id = arg_str(p, "id");
    const cat_product *cp = id ? cat_get(p->e->catalog, id, strlen(id)) : NULL;
    if (!cp) error_set(p->err, 404, "not_found", "id", "no product has this id");
    return cp;
}

static int prep_catalog_get(prep *p) {
    const cat_product *cp = find_product(p);
    if (!cp) return -1;
    p->reply = cat_product_json(cp);
    return 0;
}

static int prep_catalog_list(prep *p) {
    const cat_product **page = malloc(CAT_LIST_MAX * sizeof *page);
    char next[CAT_CURSOR_MAX];
    size_t n = 0;
    json_int_t limit = json_integer_value(json_object_get(p->args, "limit"));
    if (!page) {
        error_set(p->err, 503, "unavailable", NULL, "out of memory");
        return -1;
    }
    if (cat_list(p->e->catalog, arg_str(p, "cursor"), limit ? (size_t)limit : 100, page, &n, next,
                 &p->err->ev)) {
        free(page);
        p->err->status = 400;
        return -1;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, cat_product_json(page[i]));
    free(page);
    p->reply =
        json_pack("{s:o, s:o}", "products", items, "next", *next ? json_string(next) : json_null());
    return 0;
}

/* The viewer availability judges: the request's market, else the customer's "market" trait; the
 * "price_list" trait; the "segments" trait's names (at most CAT_LIST_ITEMS_MAX, borrowed from
 * traits, written into segs). traits NULL: an anonymous viewer. */
static cat_viewer viewer_of(const prep *p, const json_t *traits,
                            const char *segs[CAT_LIST_ITEMS_MAX], const void *ctx) {
    size_t nsegs = 0;
    const json_t *sv = json_object_get(traits, "segments");
    for (size_t i = 0; i < json_array_size(sv) && nsegs < CAT_LIST_ITEMS_MAX; i++)
        if (json_is_string(json_array_get(sv, i)))
            segs[nsegs++] = json_string_value(json_array_get(sv, i));
    const char *market = arg_str(p, "market");
    return (cat_viewer){
        .market = market ? market : json_string_value(json_object_get(traits, "market")),
        .price_list = json_string_value(json_object_get(traits, "price_list")),
        .segments = segs,
        .nsegments = nsegs,
        .ctx = ctx,
    };
}

/* Whether the viewer may see and buy the product: the viewer's market (the query's, else the
 * profile's "market" trait), price list ("price_list" trait), segments ("segments" trait, a list
 * of names) and the product's rule over the profile. Without a profile, an anonymous viewer. */
static int prep_catalog_available(prep *p) {
    const cat_product *cp = find_product(p);
    if (!cp) return -1;
    eng_ctx ctx = {.now_ms = p->now_ms};
    json_t *root = NULL;
    const char *pid = arg_str(p, "profile");
    if (pid) {
        uint32_t s = find_profile(p->e, pid, p->err);
        if (s == IDG_NONE) {
            snprintf(p->err->ev.field, sizeof p->err->ev.field, "profile");
            return -1;
        }
        root = profile_root(p->e, s, p->now_ms);
        ctx.roots[ROOT_PROFILE] = root;
        ctx.roots[ROOT_CART] = json_object_get(root, "cart");
    }
    const char *segs[CAT_LIST_ITEMS_MAX];
    cat_viewer v = viewer_of(p, root, segs, &ctx);
    cat_reason why;
    bool ok = cat_product_available(p->e->catalog, cp, &v, &why);
    cat_info info;
    cat_product_info(cp, &info);
    p->reply =
        json_pack("{s:s, s:s?, s:b, s:s, s:b}", "product_id", info.id, "profile", pid, "available",
                  ok, "reason", ok ? "available" : cat_reason_name(why), "in_stock", info.in_stock);
    json_decref(root);
    return 0;
}

static int prep_catalog_changes(prep *p) {
    return ring_page(p, p->e->changes, ENG_CHANGES_KEPT, p->e->nchanges, "changes", true);
}

/* ---- Recommendations: serving ---- */

#define ENG_RECO_DEFAULT_LIMIT 10

/* A customer with up to this many purchases has them turned into catalogue ordinals once per
 * request, so each candidate's check is a scan of a few numbers rather than a lookup of its id. */
#define VIEW_BOUGHT_MAX 64

/* One request's view of the shop, behind reco's callbacks. */
typedef struct reco_view {
    engine *e;
    const prof *p; /* the customer, or NULL */
    /* p's purchases that may not be recommended again (not replenishable), as ordinals, when
     * nbought >= 0; -1: p has more than VIEW_BOUGHT_MAX, look each candidate up. */
    uint32_t bought[VIEW_BOUGHT_MAX];
    int nbought;
    cat_viewer viewer;
    eng_ctx ctx; /* for availability rules, the filter and the boost */
    expr *filter, *boost;
} reco_view;

/* The product's JSON as the filter and boost see it, evaluated with ctx. */
static int view_eval(reco_view *v, const expr *x, uint32_t item, expr_value *out) {
    json_t *pj = cat_product_json(cat_at(v->e->catalog, item));
    eng_ctx c = v->ctx;
    ctx_need_profile(&c);
    c.roots[ROOT_PRODUCT] = pj;
    expr_env env = {c.roots, NROOTS, c.now_ms, 0};
    expr_error xe;
    int rc = pj ? expr_eval(x, &env, out, &xe) : -1;
    if (!pj) *out = (expr_value){.type = EXPR_NULL};
    json_decref(pj);
    return rc;
}

/* Shown: available to this viewer (active, in stock, market, price list, segment, rule), not
 * bought before unless replenishable, and passing the request's filter. */
static bool view_accept(void *arg, uint32_t item) {
    reco_view *v = arg;
    if (!cat_available_at(v->e->catalog, item, &v->viewer, NULL)) return false;
    for (int i = 0; i < v->nbought; i++)
        if (v->bought[i] == item) return false;
    if (v->nbought < 0) {
        cat_info info;
        cat_product_info(cat_at(v->e->catalog, item), &info);
        if (!info.replenishable && prof_has_bought(v->p, v->e->products, info.id)) return false;
    }
    if (!v->filter) return true;
    expr_value r;
    bool ok = view_eval(v, v->filter, item, &r) == 0 && r.type == EXPR_BOOL && r.b;
    expr_value_free(&r);
    return ok;
}

/* Fills v->bought from v->p's purchases (see reco_view). */
static void view_bought(reco_view *v) {
    const prof *p = v->p;
    v->nbought = 0;
    if (!p || !p->nbought) return;
    if (p->nbought > VIEW_BOUGHT_MAX) {
        v->nbought = -1;
        return;
    }
    for (uint32_t i = 0; i < p->nbought; i++) {
        const char *id = strpool_at(v->e->products, p->bought[i]);
        const cat_product *cp = id ? cat_get(v->e->catalog, id, strlen(id)) : NULL;
        cat_info info;
        if (!cp) continue;
        cat_product_info(cp, &info);
        if (!info.replenishable) v->bought[v->nbought++] = cat_ordinal(cp);
    }
}

/* A number multiplies the score (clamped to 0..1000); a condition that holds doubles it. */
static double view_boost(void *arg, uint32_t item) {
    reco_view *v = arg;
    expr_value r;
    double f = 1;
    if (view_eval(v, v->boost, item, &r) == 0) {
        if (r.type == EXPR_NUMBER) f = r.num < 0 ? 0 : r.num > 1000 ? 1000 : r.num;
        if (r.type == EXPR_BOOL && r.b) f = 2;
    }
    expr_value_free(&r);
    return f;
}

static uint32_t facet_id(const char *s) {
    uint32_t h = s ? (uint32_t)hash64_stable(s, strlen(s)) : RECO_NONE;
    return h == RECO_NONE ? 0 : h;
}

/* Diversity caps count a product's top category (its first path) and its brand. */
static void view_facets(void *arg, uint32_t item, uint32_t *category, uint32_t *brand) {
    reco_view *v = arg;
    cat_info info;
    cat_product_info(cat_at(v->e->catalog, item), &info);
    *category = info.ncategories ? facet_id(info.categories[0]) : RECO_NONE;
    *brand = info.brand ? facet_id(info.brand) : RECO_NONE;
}

static uint32_t group_find(const engine *e, const char *prefix, const char *name) {
    return group_of(e, prefix, name, false);
}

/* Splits a comma list into at most max trimmed, non-empty names: the number, or -1 past max. */
static long split_list(const char *s, char *copy, size_t copylen, const char **out, size_t max) {
    size_t n = 0;
    snprintf(copy, copylen, "%s", s ? s : "");
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t len = strlen(t);
        while (len && t[len - 1] == ' ')
            t[--len] = '\0';
        if (!len) continue;
        if (n == max) return -1;
        out[n++] = t;
    }
    return (long)n;
}

/* A profile slot from exactly one of profile, user_id and anonymous_id (none: an unknown
 * visitor). An unknown user or anonymous id is a visitor the engine has not seen yet: not an
 * error, the fallbacks serve them. *slot IDG_NONE then. Returns 0, or -1 with p->err. */
static int reco_who(prep *p, uint32_t *slot) {
    static const char *const keys[] = {"profile", "user_id", "anonymous_id"};
    int given = 0, which = -1;
    for (int i = 0; i < 3; i++)
        if (arg_str(p, keys[i])) given++, which = i;
    *slot = IDG_NONE;
    if (given > 1) {
        error_set(p->err, 400, "invalid_field", keys[which],
                  "give at most one of profile, user_id and anonymous_id");
        return -1;
    }
    if (which < 0) return 0;
    const char *v = arg_str(p, keys[which]);
    if (which == 0) {
        *slot = find_profile(p->e, v, p->err);
        if (*slot == IDG_NONE) snprintf(p->err->ev.field, sizeof p->err->ev.field, "profile");
        return *slot == IDG_NONE ? -1 : 0;
    }
    int t = idn_type_lookup(keys[which]);
    char norm[IDN_VALUE_LEN];
    ev_error nerr;
    if (idn_normalize(t, v, strlen(v), norm, sizeof norm, p->e->country, &nerr) < 0) {
        error_set(p->err, 400, "invalid_field", keys[which], nerr.message);
        return -1;
    }
    uint32_t s = idg_lookup(p->e->graph, t, norm);
    if (s != IDG_NONE && slot_prof(p->e, s)) *slot = s;
    return 0;
}

/* Appends ,"key": (or {"key": for the first member). */
static void put_key(buf *b, bool *first, const char *key) {
    buf_puts(b, *first ? "{\"" : ",\"");
    *first = false;
    buf_puts(b, key);
    buf_puts(b, "\":");
}

static void put_strn(buf *b, bool *first, const char *key, const char *v, size_t len) {
    put_key(b, first, key);
    buf_putc(b, '"');
    buf_json_escape(b, v, len);
    buf_putc(b, '"');
}

static void put_str(buf *b, bool *first, const char *key, const char *v) {
    put_strn(b, first, key, v, strlen(v));
}

static void put_num(buf *b, bool *first, const char *key, double v) {
    put_key(b, first, key);
    /* Six decimals: a float's last digits are noise, and for a score only the order matters. */
    jsonw_fixed(b, v, 6);
}

/* Appends an item's "reason" member: the strategy's sentence, naming what led to the item when
 * there is one (the product viewed, the segment or category). Written straight into the answer,
 * with the name escaped, rather than printed into a buffer first: ten items an answer. */
static void put_reason(const engine *e, const reco_result *r, buf *b, bool *first) {
    const char *name = NULL, *esc = NULL; /* esc: a name already escaped, esc_len bytes */
    size_t esc_len = 0;
    const cat_product *cp;
    if (r->because != RECO_NONE) {
        if (r->strategy == RECO_S_SEGMENT || r->strategy == RECO_S_CATEGORY) {
            name = strpool_at(e->groups, r->because);
            name = name && strchr(name, ':') ? strchr(name, ':') + 1 : name;
        } else if ((cp = cat_at(e->catalog, r->because))) {
            cat_card_text card;
            cat_card(cp, &card);
            if (card.title) {
                esc = card.title;
                esc_len = card.title_len;
            } else {
                name = card.id;
            }
        }
    }
    /* The sentence with a name: the name follows the prefix. */
    static const char *const with_name[RECO_NSTRATEGIES] = {
        [RECO_S_SESSION] = "viewed next by shoppers who viewed ",
        [RECO_S_VIEWED_TOGETHER] = "viewed together with ",
        [RECO_S_BOUGHT_TOGETHER] = "bought together with ",
        [RECO_S_SIMILAR] = "similar to ",
        [RECO_S_FOR_YOU] = "picked for you because of ",
        [RECO_S_SEGMENT] = "popular in your segment ",
        [RECO_S_CATEGORY] = "popular in ",
    };
    static const char *const plain[RECO_NSTRATEGIES] = {
        [RECO_S_SESSION] = "viewed next in sessions like yours",
        [RECO_S_VIEWED_TOGETHER] = "viewed together with what you viewed",
        [RECO_S_BOUGHT_TOGETHER] = "bought together with what you chose",
        [RECO_S_SIMILAR] = "similar to what you viewed",
        [RECO_S_FOR_YOU] = "picked for you",
        [RECO_S_FRIENDS] = "bought by your friends",
        [RECO_S_SEGMENT] = "popular in your segment",
        [RECO_S_CATEGORY] = "popular in this category",
        [RECO_S_TRENDING] = "trending now",
        [RECO_S_POPULAR] = "popular in the shop",
        [RECO_S_NEW] = "new in the shop",
    };
    put_key(b, first, "reason");
    buf_putc(b, '"');
    if ((name || esc) && with_name[r->strategy]) {
        buf_puts(b, with_name[r->strategy]);
        if (esc)
            buf_append(b, esc, esc_len);
        else
            buf_json_escape(b, name, strlen(name));
    } else {
        buf_puts(b, plain[r->strategy]);
    }
    buf_putc(b, '"');
}

/* One item of the answer, with what a widget needs to show it. Written directly: building a
 * jansson tree per item was a tenth of a request. */
static void reco_item_write(const engine *e, const reco_result *r, buf *b) {
    cat_card_text card;
    cat_card(cat_at(e->catalog, r->item), &card);
    bool first = true;
    put_strn(b, &first, "product_id", card.id, card.id_len);
    put_num(b, &first, "score", (double)r->score);
    put_reason(e, r, b, &first);
    put_str(b, &first, "strategy", reco_strategy_name(r->strategy));
    buf_puts(b, r->fallback ? ",\"fallback\":true" : ",\"fallback\":false");
    /* The display fields, from the product's card: escaped once, when the product was stored. */
    buf_append(b, card.fields, card.fields_len);
    buf_putc(b, '}');
}

static int reco_refuse(prep *p, const char *field, const char *msg) {
    error_set(p->err, 400, "invalid_field", field, msg);
    return -1;
}

/* Compiles the expression in argument key (a condition when cond), if given, into *out. 0, or -1
 * with p->err naming key and the position of the fault. */
static int reco_expr_arg(prep *p, const char *key, bool cond, expr **out) {
    const char *src = arg_str(p, key);
    expr_error xe;
    if (!src) return 0;
    *out = cond ? expr_compile_bool(src, strlen(src), &decision_roots, &xe)
                : expr_compile(src, strlen(src), &decision_roots, &xe);
    if (*out) return 0;
    p->err->status = 400;
    p->err->ev = xe.ev;
    snprintf(p->err->ev.field, sizeof p->err->ev.field, "%s", key);
    return -1;
}

/* GET /v1/recommendations (docs/recommendations.md): the answer into p->text. */
static int prep_reco(prep *p) {
    engine *e = p->e;
    reco_view v = {.e = e, .ctx = {.now_ms = p->now_ms}};
    lazy_root lazy = {.e = e, .slot = IDG_NONE};
    v.ctx.lazy = &lazy;
    reco_query q = {.who = RECO_NOBODY, .now_ms = p->now_ms, .limit = ENG_RECO_DEFAULT_LIMIT};
    uint32_t anchors[RECO_ANCHORS_MAX], exclude[RECO_ANCHORS_MAX + PROF_CART_MAX],
        friends[RECO_FRIENDS_MAX], cats[CAT_LIST_ITEMS_MAX];
    reco_strategy strat[RECO_NSTRATEGIES];
    reco_result out[RECO_LIMIT_MAX];
    char copy[4096];
    const char *names[CAT_LIST_ITEMS_MAX];
    json_t *traits = NULL;
    int rc = -1;

    uint32_t slot;
    if (reco_who(p, &slot)) return -1;
    if (slot != IDG_NONE) {
        q.who = slot;
        lazy.slot = slot;
        v.p = e->profs[slot];
    }
    const char *ctx = arg_str(p, "context"), *pid = arg_str(p, "product_id");
    int c = ctx ? reco_context_lookup(ctx) : pid ? RECO_CTX_PRODUCT : RECO_CTX_HOME;
    if (c < 0) return reco_refuse(p, "context", "context must be home, product, cart or email");
    q.context = (reco_context)c;
    const struct {
        const char *key;
        int64_t max;
        void *into;
        int kind; /* 0: size_t, 1: uint32_t */
    } ints[] = {{"limit", RECO_LIMIT_MAX, &q.limit, 0},
                {"max_per_category", RECO_LIMIT_MAX, &q.max_per_category, 1},
                {"max_per_brand", RECO_LIMIT_MAX, &q.max_per_brand, 1}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        const char *s = arg_str(p, ints[i].key);
        if (!s) continue;
        char *end;
        long long x = strtoll(s, &end, 10);
        if (!*s || *end || x < (i == 0 ? 1 : 0) || x > ints[i].max) {
            char msg[128];
            snprintf(msg, sizeof msg, "%s must be an integer from %d to %" PRId64, ints[i].key,
                     i == 0 ? 1 : 0, ints[i].max);
            return reco_refuse(p, ints[i].key, msg);
        }
        if (ints[i].kind == 0)
            *(size_t *)ints[i].into = (size_t)x;
        else
            *(uint32_t *)ints[i].into = (uint32_t)x;
    }
    /* Strategies. */
    long ns = split_list(arg_str(p, "strategy"), copy, sizeof copy, names, RECO_NSTRATEGIES);
    if (ns < 0) return reco_refuse(p, "strategy", "too many strategies");
    for (long i = 0; i < ns; i++) {
        int s = reco_strategy_lookup(names[i], strlen(names[i]));
        if (s < 0) {
            char msg[512];
            snprintf(msg, sizeof msg,
                     "unknown strategy %.64s (known: session, viewed_together, bought_together, "
                     "similar, for_you, friends_bought, popular_in_segment, popular_in_category, "
                     "trending, popular, new)",
                     names[i]);
            return reco_refuse(p, "strategy", msg);
        }
        strat[q.nstrategies++] = (reco_strategy)s;
    }
    q.strategies = strat;
    /* Anchors: the product shown; in a cart, its lines too. The cart is never recommended. */
    if (pid) {
        const cat_product *cp = cat_get(e->catalog, pid, strlen(pid));
        if (!cp) {
            error_set(p->err, 404, "not_found", "product_id", "no product has this id");
            goto out;
        }
        anchors[q.nanchors++] = cat_ordinal(cp);
    }
    for (size_t i = 0; v.p && i < v.p->ncart; i++) {
        const char *id = strpool_at(e->products, v.p->cart[i].product);
        const cat_product *cp = id ? cat_get(e->catalog, id, strlen(id)) : NULL;
        if (!cp) continue;
        if (q.context == RECO_CTX_CART && q.nanchors < RECO_ANCHORS_MAX)
            anchors[q.nanchors++] = cat_ordinal(cp);
        exclude[q.nexclude++] = cat_ordinal(cp);
    }
    q.anchors = anchors;
    long nx = split_list(arg_str(p, "exclude"), copy, sizeof copy, names, RECO_ANCHORS_MAX);
    if (nx < 0) return reco_refuse(p, "exclude", "at most 20 product ids may be excluded");
    for (long i = 0; i < nx; i++) {
        const cat_product *cp = cat_get(e->catalog, names[i], strlen(names[i]));
        if (cp) exclude[q.nexclude++] = cat_ordinal(cp);
    }
    q.exclude = exclude;
    /* Parameters checked: from here on every exit goes through out. */
    view_bought(&v);
    traits = v.p ? prof_traits(v.p) : NULL;
    /* Friends: user ids in the "friends" trait. */
    const json_t *fl = json_object_get(traits, "friends");
    for (size_t i = 0; i < json_array_size(fl) && q.nfriends < RECO_FRIENDS_MAX; i++) {
        const char *f = json_string_value(json_array_get(fl, i));
        char norm[IDN_VALUE_LEN];
        ev_error ign;
        uint32_t fs;
        if (f &&
            idn_normalize(IDN_USER_ID, f, strlen(f), norm, sizeof norm, e->country, &ign) == 0 &&
            (fs = idg_lookup(e->graph, IDN_USER_ID, norm)) != IDG_NONE && fs != slot)
            friends[q.nfriends++] = fs;
    }
    q.friends = friends;
    /* Categories: the first anchor's paths (most specific last), else the customer's favourites. */
    if (q.nanchors) {
        cat_info info;
        cat_product_info(cat_at(e->catalog, anchors[0]), &info);
        for (size_t i = 0; i < info.ncategories && q.ncategories < CAT_LIST_ITEMS_MAX; i++)
            if ((cats[q.ncategories] = group_find(e, "c", info.categories[i]))) q.ncategories++;
    } else {
        for (size_t i = 0; v.p && i < PROF_FAVOURITES; i++) {
            const char *name = strpool_at(e->names, v.p->categories.name[i]);
            if (name && (cats[q.ncategories] = group_find(e, "c", name))) q.ncategories++;
        }
    }
    q.categories = cats;
    /* The viewer: market from the request or the "market" trait, price list, segments. */
    const char *segs[CAT_LIST_ITEMS_MAX];
    v.viewer = viewer_of(p, traits, segs, &v.ctx);
    /* The request's filter (a condition) and boost (a number or a condition). */
    if (reco_expr_arg(p, "filter", true, &v.filter) || reco_expr_arg(p, "boost", false, &v.boost))
        goto out;
    q.accept = view_accept;
    q.boost = v.boost ? view_boost : NULL;
    q.facets = view_facets;
    q.arg = &v;
    q.catalogue_items = (uint32_t)cat_count(e->catalog);

    long n = reco_recommend(e->reco, &q, out);
    if (n < 0) {
        error_set(p->err, 500, "internal", NULL, "out of memory recommending");
        goto out;
    }
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[12];
    char rid[4 + 2 * sizeof rnd + 1] = "rec_";
    hash_random(rnd, sizeof rnd);
    for (size_t i = 0; i < sizeof rnd; i++) {
        rid[4 + 2 * i] = hex[rnd[i] >> 4];
        rid[5 + 2 * i] = hex[rnd[i] & 15];
    }
    rid[sizeof rid - 1] = '\0';
    buf *b = p->text;
    bool first = true;
    put_str(b, &first, "recommendation_id", rid);
    if (slot != IDG_NONE) {
        char prof_id[32];
        profile_id(e, slot, prof_id);
        put_str(b, &first, "profile", prof_id);
    } else {
        buf_puts(b, ",\"profile\":null");
    }
    put_str(b, &first, "context", reco_context_name(q.context));
    buf_puts(b, ",\"strategies\":[");
    size_t nu = q.nstrategies ? q.nstrategies : reco_context_strategies(q.context, strat);
    for (size_t i = 0; i < nu; i++) {
        buf_puts(b, i ? ",\"" : "\"");
        buf_puts(b, reco_strategy_name(strat[i]));
        buf_putc(b, '"');
    }
    buf_puts(b, "],\"items\":[");
    for (long i = 0; i < n; i++) {
        if (i) buf_putc(b, ',');
        reco_item_write(e, &out[i], b);
    }
    rc = buf_puts(b, "]}") == BUF_OK ? 0 : -1;
    if (rc) error_set(p->err, 500, "internal", NULL, "out of memory writing the reply");
out:
    expr_free(v.filter);
    expr_free(v.boost);
    json_decref(lazy.root);
    json_decref(traits);
    return rc;
}

typedef struct prep_def {
    const char *op;
    int (*fn)(prep *p);
} prep_def;

static const prep_def preps[] = {
    {"profile.erase", prep_erase},
    {"profile.unmerge", prep_unmerge},
    {"profile.export", prep_export},
    {"audit.list", prep_audit},
    {"profile.consent", prep_consent},
    {"catalog.upsert", prep_catalog_upsert},
    {"catalog.patch", prep_catalog_patch},
    {"catalog.archive", prep_catalog_archive},
    {"catalog.get", prep_catalog_get},
    {"catalog.list", prep_catalog_list},
    {"catalog.available", prep_catalog_available},
    {"catalog.changes", prep_catalog_changes},
    {"offer.put", prep_offer_put},
    {"offer.patch", prep_offer_patch},
    {"offer.get", prep_offer_get},
    {"offer.list", prep_offer_list},
    {"offer.codes", prep_offer_codes},
    {"offer.assign", prep_offer_assign},
    {"offer.validate", prep_offer_validate},
    {"offer.redeem", prep_offer_redeem},
    {"offer.eligible", prep_offer_eligible},
};

int eng_prepare(engine *e, const char *op, const json_t *args, int64_t now_ms, json_t **record,
                json_t **reply, eng_error *err) {
    *record = *reply = NULL;
    memset(err, 0, sizeof *err);
    for (size_t i = 0; i < sizeof preps / sizeof *preps; i++) {
        if (strcmp(preps[i].op, op) != 0) continue;
        prep p = {e, args, now_ms, NULL, NULL, err, NULL};
        pthread_rwlock_rdlock(&e->lock);
        int rc = preps[i].fn(&p);
        pthread_rwlock_unlock(&e->lock);
        if (rc > 0) {
            /* The record carries the time it was made: replay applies it at the same time. */
            char at[TF_LEN];
            json_object_set_new(p.record, "at", json_string(tf_format(now_ms, at)));
        }
        *record = p.record;
        *reply = p.reply;
        return rc;
    }
    error_set(err, 500, "internal", "op", "unknown engine operation");
    return -1;
}

int eng_recommend(engine *e, const json_t *args, int64_t now_ms, buf *out, eng_error *err) {
    memset(err, 0, sizeof *err);
    prep p = {e, args, now_ms, NULL, NULL, err, out};
    pthread_rwlock_rdlock(&e->lock);
    rfeed_wait(e->feed); /* the models hold every event applied */
    int rc = prep_reco(&p);
    pthread_rwlock_unlock(&e->lock);
    return rc;
}

int eng_catalog_record(const json_t *products, int64_t now_ms, json_t **record, eng_error *err) {
    json_t *args = json_pack("{s:O}", "body", (json_t *)products);
    prep p = {NULL, args, now_ms, NULL, NULL, err, NULL};
    memset(err, 0, sizeof *err);
    int rc = args ? prep_catalog_upsert(&p) : -1;
    json_decref(args);
    if (rc < 0) {
        if (!args) error_set(err, 500, "internal", NULL, "out of memory");
        return -1;
    }
    char at[TF_LEN];
    json_object_set_new(p.record, "at", json_string(tf_format(now_ms, at)));
    *record = p.record;
    return 0;
}

void eng_get_stats(engine *e, eng_stats *out, bool with_bytes) {
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&e->lock);
    out->profiles = idg_live(e->graph);
    out->identities = idg_nodes(e->graph);
    out->refused_links = idg_refusal_count(e->graph);
    out->events_applied = e->events_applied;
    out->unattributed = e->unattributed;
    out->products = cat_count(e->catalog);
    for (size_t i = 0; with_bytes && i < e->nprofs; i++)
        if (e->profs[i]) out->profile_bytes += sizeof(prof) + prof_bytes(e->profs[i]);
    if (with_bytes) out->graph_bytes = idg_bytes(e->graph);
    reco_stats rs;
    rfeed_wait(e->feed);
    reco_get_stats(e->reco, &rs);
    out->reco_session_bytes = rs.session.bytes;
    out->reco_cooc_bytes = rs.cooc_bytes;
    out->reco_coview_bytes = rs.coview_bytes;
    out->reco_pop_bytes = rs.pop_bytes;
    out->reco_history_bytes = rs.history_bytes;
    out->reco_sessions = rs.session.sessions;
    memcpy(out->attributed, e->attributed, sizeof out->attributed);
    out->attributed_revenue = e->attributed_revenue;
    pthread_rwlock_unlock(&e->lock);
}
