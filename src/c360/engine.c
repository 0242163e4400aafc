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
#include "util/clock.h"
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

struct engine {
    pthread_rwlock_t lock;
    store *store;
    char country[3];
    idg *graph;
    prof **profs; /* by slot; NULL for dead slots */
    size_t nprofs, aprofs;
    consent_ledger **consents; /* by slot, like profs; NULL until a first record */
    size_t aconsents;
    consent_ledger *scratch; /* consent read from one event, before it joins a ledger */
    strpool *names;          /* category and brand names the profiles' favourites point to */
    offer_state *offers;
    cat *catalog;
    /* The catalogue's price and stock changes, newest last: a ring rebuilt by replay. */
    json_t *changes[ENG_CHANGES_KEPT];
    /* Who did what to whose data (export, erasure, unmerge, consent): a ring rebuilt by replay;
     * the records themselves stay in the log. */
    json_t *audit[ENG_AUDIT_KEPT];
    int64_t naudit;
    int64_t nchanges; /* ever; change i is at changes[i % ENG_CHANGES_KEPT] */
    fenwick *rfm[3];
    size_t events_applied, unattributed;
    int64_t *replay_deletes; /* erasures found while replaying, done before serving */
    size_t nreplay_deletes, areplay_deletes;
    bool replaying;
};

/* The roots every decision expression may name (docs/expressions.md). */
static const char *const expr_root_names[] = {"profile", "cart", "product", "event", "context"};
enum { ROOT_PROFILE, ROOT_CART, ROOT_PRODUCT, ROOT_EVENT, ROOT_CONTEXT, NROOTS };
static const expr_roots decision_roots = {expr_root_names, NROOTS};

typedef struct eng_ctx {
    const json_t *roots[NROOTS];
    int64_t now_ms;
} eng_ctx;

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
        size_t was = e->aconsents;
        if (vec_reserve((void **)&e->profs, &e->aprofs, (size_t)s + 1, sizeof *e->profs) ||
            vec_reserve((void **)&e->consents, &e->aconsents, (size_t)s + 1, sizeof *e->consents))
            return -1;
        memset(e->profs + e->nprofs, 0, ((size_t)s + 1 - e->nprofs) * sizeof *e->profs);
        memset(e->consents + was, 0, (e->aconsents - was) * sizeof *e->consents);
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

/* Identifiers of an event, for the graph: idn_extract()'s list plus an alias's previousId, which
 * names the identity to join (a known anonymousId or userId; unknown, it is taken as an
 * anonymousId, as Segment does). */
static size_t event_idents(engine *e, const json_t *ev, ev_type type, idn_list *list,
                           idg_ident *ids) {
    idn_extract(ev, e->country, list);
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

static json_t *profile_root(const engine *e, uint32_t s, int64_t now_ms);

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
static void fold_consent(engine *e, uint32_t s, const json_t *ev, int64_t ts) {
    consent_ignored ig;
    if (consent_from_event(ev, ts, e->scratch, &ig) == CONSENT_ENOMEM) fail_oom("reading consent");
    if (consent_count(e->scratch) == 0) return;
    if (!e->consents[s] && !(e->consents[s] = consent_ledger_new())) fail_oom("a consent ledger");
    if (consent_apply(e->consents[s], e->scratch, CONSENT_SKIP_UNCHANGED) == CONSENT_ENOMEM)
        fail_oom("recording consent");
    consent_forget(e->scratch);
}

static void apply_event(engine *e, int64_t seq, ev_type type, int64_t ts, const json_t *ev,
                        const cm_event *cm) {
    e->events_applied++;
    idn_list list;
    idg_ident ids[IDG_MAX_IDENTS];
    size_t n = event_idents(e, ev, type, &list, ids);
    if (n == 0) {
        e->unattributed++; /* every identifier was junk: it links nobody */
        return;
    }
    const char *name = json_string_value(json_object_get(ev, "event"));
    idg_result r;
    if (idg_resolve(e->graph, ids, n, seq, ts, ev_type_name(type), name, &r))
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
    prof_event pe = {seq, ts, type, cm, ev, e->names};
    if (prof_fold(p, &pe)) fail_oom("folding an event");
    rfm_update(e, p, +1);
    fold_consent(e, r.slot, ev, ts);
    /* Products named in events teach the catalogue what it lacks (never a price it has). */
    for (size_t i = 0; cm && i < cm->nproducts; i++)
        if (cat_observe(e->catalog, &cm->products[i], cm->currency[0] ? cm->currency : NULL, ts) ==
            CAT_NOMEM)
            fail_oom("learning a product");
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
    size_t n = event_idents(a->e, ev, (ev_type)row->type, &list, ids);
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
    prof_event pe = {row->seq, row->ts_ms, (ev_type)row->type, cm, ev, a->e->names};
    int rc = prof_fold(to, &pe);
    if (!rc && to == a->moved_p) fold_consent(a->e, a->moved, ev, row->ts_ms);
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
    sqlite3 *db = e->replaying ? store_writer(e->store) : store_reader(e->store);
    if (!db || store_each(db, old->seqs, old->nseqs, refold_row, &a))
        log_error("engine: unmerge could not read every event of %s: %s", id, store_errmsg());
    /* Traits set through the API (not from events) stay with the kept side. */
    prof_free(old);
    e->profs[s] = a.keep_p;
    rfm_update(e, a.keep_p, +1);
    rfm_update(e, a.moved_p, +1);
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
        /* A crash may have come between this record and the deletion of the rows. */
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

void eng_apply(void *arg, ev_event *events, size_t n) {
    engine *e = arg;
    pthread_rwlock_wrlock(&e->lock);
    for (size_t i = 0; i < n; i++) {
        ev_event *ev = &events[i];
        if (!ev->seq) continue; /* a duplicate: applied when first stored */
        if (ev->command)
            ev->result = apply_command(e, ev->seq, ev->received_ms, ev->json);
        else
            apply_event(e, ev->seq, ev->type, ev->timestamp_ms, ev->json, ev->commerce);
    }
    pthread_rwlock_unlock(&e->lock);
}

/* ---- Replay ---- */

static int replay_row(const store_row *row, void *arg) {
    engine *e = arg;
    json_error_t je;
    json_t *ev = json_loadb(row->body, row->body_len, 0, &je);
    if (!ev) {
        log_warn("engine: log record %" PRId64 " is not JSON (%s); skipped", row->seq, je.text);
        return 0;
    }
    if (row->type == STORE_TYPE_COMMAND) {
        int64_t at = 0;
        const char *r = json_string_value(json_object_get(ev, "at"));
        if (r) tf_parse(r, strlen(r), &at);
        json_decref(apply_command(e, row->seq, at, ev));
    } else if (row->type >= 0 && row->type < EV_NTYPES) {
        cm_event *cm = NULL;
        if (row->kind) {
            ev_error ignored;
            json_t *props = json_object_get(ev, "properties");
            cm_parse(props, (cm_kind)row->kind, &cm, &ignored);
        }
        apply_event(e, row->seq, (ev_type)row->type, row->ts_ms, ev, cm);
        cm_event_free(cm);
    }
    json_decref(ev);
    return 0;
}

static int finish_erasures(engine *e) {
    if (!e->nreplay_deletes) return 0;
    sqlite3 *db = store_writer(e->store);
    sqlite3_stmt *st;
    if (store_exec(db, "BEGIN IMMEDIATE") ||
        sqlite3_prepare_v2(db, "DELETE FROM events WHERE seq = ?1", -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < e->nreplay_deletes && !rc; i++) {
        sqlite3_bind_int64(st, 1, e->replay_deletes[i]);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (rc || store_exec(db, "COMMIT")) {
        store_exec(db, "ROLLBACK");
        return -1;
    }
    log_info("engine: finished an interrupted erasure: %zu events deleted", e->nreplay_deletes);
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
    for (int i = 0; i < 3; i++)
        e->rfm[i] = calloc(1, sizeof(fenwick));
    if (!e->graph || !e->offers || !e->catalog || !e->scratch || !e->names || !e->rfm[0] ||
        !e->rfm[1] || !e->rfm[2]) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    uint64_t t0 = clock_mono_ns();
    e->replaying = true;
    if (store_each(store_writer(s), NULL, 0, replay_row, e) || finish_erasures(e)) {
        snprintf(err, errlen, "engine: replaying the log: %s", store_errmsg());
        goto fail;
    }
    e->replaying = false;
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
    for (size_t i = 0; i < e->nprofs; i++) {
        prof_free(e->profs[i]);
        consent_ledger_free(e->consents[i]);
    }
    free(e->profs);
    free(e->consents);
    consent_ledger_free(e->scratch);
    strpool_free(e->names);
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
    json_t *computed = prof_computed_json(p, rfm, now_ms, e->names);
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
    json_t *computed = prof_computed_json(p, rfm, now_ms, e->names);
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
    size_t nsegs = 0;
    const json_t *sv = json_object_get(root, "segments");
    for (size_t i = 0; i < json_array_size(sv) && nsegs < CAT_LIST_ITEMS_MAX; i++)
        if (json_is_string(json_array_get(sv, i)))
            segs[nsegs++] = json_string_value(json_array_get(sv, i));
    cat_viewer v = {
        .market = arg_str(p, "market") ? arg_str(p, "market")
                                       : json_string_value(json_object_get(root, "market")),
        .price_list = json_string_value(json_object_get(root, "price_list")),
        .segments = segs,
        .nsegments = nsegs,
        .ctx = &ctx,
    };
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
        prep p = {e, args, now_ms, NULL, NULL, err};
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

int eng_catalog_record(const json_t *products, int64_t now_ms, json_t **record, eng_error *err) {
    json_t *args = json_pack("{s:O}", "body", (json_t *)products);
    prep p = {NULL, args, now_ms, NULL, NULL, err};
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
    pthread_rwlock_unlock(&e->lock);
}
