#include "reco/rtune.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reco/rec_internal.h"
#include "util/vec.h"

#define F REC_NFEAT

void rtune_opts_default(rtune_opts *o) {
    memset(o, 0, sizeof *o);
    o->sessions = 20000;
    o->max_cases = 15000;
    o->k = 20;
    o->l2 = 1e-3;
    o->search = true;
    o->search_cases = 1500;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void say(const rtune_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const rtune_opts *o, const char *fmt, ...) {
    if (!o->progress) return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o->progress(o->ctx, msg);
}

/* ---------------------------------------------------------------------------------------------- */
/* Cases */
/* ---------------------------------------------------------------------------------------------- */

typedef struct tcase {
    uint32_t as_of;  /* the session the prefix belongs to */
    uint32_t off, n; /* prefix: pool[off .. off+n) */
    uint32_t target; /* dense */
} tcase;

typedef struct caseset {
    uint32_t *pool;
    size_t npool, pool_alloc;
    tcase *c;
    size_t n, alloc;
} caseset;

/* The prefixes of the newest sessions, newest session first. */
static int collect_cases(const rec_model *m, const rtune_opts *o, caseset *cs) {
    uint32_t next = rec__next_id(m), taken = 0;
    for (uint32_t id = next; id-- > 0 && taken < o->sessions && cs->n < o->max_cases;) {
        uint32_t len;
        const uint32_t *it = rec__session(m, id, &len);
        if (!it) break; /* forgotten: so is everything older */
        taken++;
        if (vec_reserve((void **)&cs->pool, &cs->pool_alloc, cs->npool + len, sizeof *cs->pool) < 0)
            return REC_NOMEM;
        uint32_t off = (uint32_t)cs->npool, n = 0;
        for (uint32_t i = 0; i < len; i++)
            if (rec__item_first(m, it[i]) < id) cs->pool[off + n++] = it[i];
        cs->npool += n;
        for (uint32_t j = 1; j < n && cs->n < o->max_cases; j++) {
            if (vec_reserve((void **)&cs->c, &cs->alloc, cs->n + 1, sizeof *cs->c) < 0)
                return REC_NOMEM;
            cs->c[cs->n++] = (tcase){id, off, j, cs->pool[off + j]};
        }
    }
    return REC_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Features of the kept candidates */
/* ---------------------------------------------------------------------------------------------- */

typedef struct fset {
    float *x; /* F floats per kept candidate */
    size_t nx, x_alloc;
    size_t *start; /* case i's candidates are [start[i], start[i+1]) */
    int32_t *tgt;  /* index (relative to start) of the true next item, -1 when not kept */
    size_t ncases;
    float *tmp;
    size_t tmp_alloc;
} fset;

static int featurize(const rec_model *m, const rec_params *p, const caseset *cs, size_t ncases,
                     rec_ws *ws, fset *fs) {
    fs->nx = 0;
    fs->ncases = ncases;
    free(fs->start);
    free(fs->tgt);
    fs->start = malloc((ncases + 1) * sizeof *fs->start);
    fs->tgt = malloc((ncases + 1) * sizeof *fs->tgt);
    if (!fs->start || !fs->tgt) return REC_NOMEM;
    for (size_t i = 0; i < ncases; i++) {
        const tcase *tc = &cs->c[i];
        rec_cand *cand;
        size_t nc;
        float maxes[REC_NCOMP];
        if (rec__score(m, p, cs->pool + tc->off, tc->n, tc->as_of, REC_NONE, ws, &cand, &nc,
                       maxes) != REC_OK)
            return REC_NOMEM;
        if (vec_reserve((void **)&fs->tmp, &fs->tmp_alloc, nc + 1, sizeof *fs->tmp) < 0)
            return REC_NOMEM;
        nc = rec__select(cand, nc, p->candidates, fs->tmp);
        fs->start[i] = fs->nx;
        fs->tgt[i] = -1;
        if (vec_reserve((void **)&fs->x, &fs->x_alloc, (fs->nx + nc) * F, sizeof *fs->x) < 0 ||
            rec__featurize(m, tc->as_of, cand, nc, maxes, tc->n, fs->x + fs->nx * F, ws) != REC_OK)
            return REC_NOMEM;
        for (size_t j = 0; j < nc; j++)
            if (cand[j].item == tc->target) fs->tgt[i] = (int32_t)j;
        fs->nx += nc;
    }
    fs->start[ncases] = fs->nx;
    return REC_OK;
}

static void fset_free(fset *fs) {
    free(fs->x);
    free(fs->start);
    free(fs->tgt);
    free(fs->tmp);
}

/* HR@k and MRR@k of weights w; ties with the target count against it. */
static void metrics(const fset *fs, const float *w, uint32_t k, double *hr, double *mrr) {
    double h = 0, r = 0;
    for (size_t i = 0; i < fs->ncases; i++) {
        if (fs->tgt[i] < 0) continue;
        const float *x = fs->x + fs->start[i] * F;
        size_t n = fs->start[i + 1] - fs->start[i];
        float st = 0;
        for (int f = 0; f < F; f++)
            st += w[f] * x[(size_t)fs->tgt[i] * F + f];
        size_t ahead = 0;
        for (size_t j = 0; j < n && ahead < k; j++) {
            if ((int32_t)j == fs->tgt[i]) continue;
            float s = 0;
            for (int f = 0; f < F; f++)
                s += w[f] * x[j * F + f];
            if (s >= st) ahead++;
        }
        if (ahead < k) {
            h += 1;
            r += 1.0 / (double)(ahead + 1);
        }
    }
    *hr = fs->ncases ? h / (double)fs->ncases : 0;
    *mrr = fs->ncases ? r / (double)fs->ncases : 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The conditional-logit fit */
/* ---------------------------------------------------------------------------------------------- */

/* Negative log-likelihood (+ ridge) of w; with g and H non-NULL also its gradient and Hessian. */
static double nll(const fset *fs, const double *w, double l2, double *g, double *H) {
    double loss = 0, n_used = 0;
    if (g) memset(g, 0, F * sizeof *g);
    if (H) memset(H, 0, F * F * sizeof *H);
    double *s = NULL;
    size_t s_alloc = 0;
    for (size_t i = 0; i < fs->ncases; i++) {
        if (fs->tgt[i] < 0) continue;
        const float *x = fs->x + fs->start[i] * F;
        size_t n = fs->start[i + 1] - fs->start[i];
        if (vec_reserve((void **)&s, &s_alloc, n, sizeof *s) < 0) {
            free(s);
            return INFINITY;
        }
        double mx = -INFINITY;
        for (size_t j = 0; j < n; j++) {
            double v = 0;
            for (int f = 0; f < F; f++)
                v += w[f] * x[j * F + f];
            s[j] = v;
            if (v > mx) mx = v;
        }
        double z = 0;
        for (size_t j = 0; j < n; j++)
            z += (s[j] = exp(s[j] - mx));
        loss += log(z) - log(s[fs->tgt[i]]);
        n_used++;
        if (!g) continue;
        double mean[F] = {0};
        for (size_t j = 0; j < n; j++) {
            double pj = s[j] / z;
            const float *xj = x + j * F;
            for (int a = 0; a < F; a++) {
                mean[a] += pj * xj[a];
                if (H)
                    for (int b = 0; b <= a; b++)
                        H[a * F + b] += pj * xj[a] * xj[b];
            }
        }
        const float *xt = x + (size_t)fs->tgt[i] * F;
        for (int a = 0; a < F; a++) {
            g[a] += mean[a] - xt[a];
            if (H)
                for (int b = 0; b <= a; b++)
                    H[a * F + b] -= mean[a] * mean[b];
        }
    }
    free(s);
    double lam = l2 * (n_used > 0 ? n_used : 1);
    for (int a = 0; a < F; a++) {
        loss += 0.5 * lam * w[a] * w[a];
        if (g) g[a] += lam * w[a];
        if (H) {
            H[a * F + a] += lam;
            for (int b = 0; b < a; b++)
                H[b * F + a] = H[a * F + b];
        }
    }
    return loss;
}

/* Solves A x = b for symmetric positive definite A (F x F) by Cholesky; false if A is not. */
static bool cholesky_solve(const double *A, const double *b, double *x) {
    double L[F * F] = {0};
    for (int i = 0; i < F; i++) {
        for (int j = 0; j <= i; j++) {
            double s = A[i * F + j];
            for (int k = 0; k < j; k++)
                s -= L[i * F + k] * L[j * F + k];
            if (i == j) {
                if (!(s > 0)) return false;
                L[i * F + i] = sqrt(s);
            } else {
                L[i * F + j] = s / L[j * F + j];
            }
        }
    }
    double y[F];
    for (int i = 0; i < F; i++) {
        double s = b[i];
        for (int k = 0; k < i; k++)
            s -= L[i * F + k] * y[k];
        y[i] = s / L[i * F + i];
    }
    for (int i = F - 1; i >= 0; i--) {
        double s = y[i];
        for (int k = i + 1; k < F; k++)
            s -= L[k * F + i] * x[k];
        x[i] = s / L[i * F + i];
    }
    return true;
}

/* Fits the weights by damped Newton from w0; writes them to w. */
static void fit(const fset *fs, double l2, const float *w0, float *w) {
    double cur[F], g[F], H[F * F], step[F], next[F];
    for (int f = 0; f < F; f++)
        cur[f] = w0[f];
    double loss = nll(fs, cur, l2, g, H);
    for (int it = 0; it < 20 && isfinite(loss); it++) {
        double ng[F];
        for (int f = 0; f < F; f++)
            ng[f] = -g[f];
        if (!cholesky_solve(H, ng, step)) break;
        double t = 1, nl = INFINITY;
        for (int half = 0; half < 30; half++, t *= 0.5) {
            for (int f = 0; f < F; f++)
                next[f] = cur[f] + t * step[f];
            nl = nll(fs, next, l2, NULL, NULL);
            if (nl < loss) break;
        }
        if (!(nl < loss)) break;
        double gain = loss - nl;
        memcpy(cur, next, sizeof cur);
        loss = nll(fs, cur, l2, g, H);
        /* Newton converges quadratically near the optimum; a per-case gain this small no longer
         * moves any rank. */
        if (gain < 1e-5 * (double)fs->ncases) break;
    }
    for (int f = 0; f < F; f++)
        w[f] = (float)cur[f];
}

/* ---------------------------------------------------------------------------------------------- */
/* Search over kNN settings */
/* ---------------------------------------------------------------------------------------------- */

typedef struct knob {
    int scorer; /* 0, 1; -1 for the non-kNN knobs */
    int field;  /* which field */
    float vals[6];
    int nvals;
} knob;

enum { K_NEIGH, K_POS, K_REC, K_AFTER, K_BEFORE, K_SRWIN, K_REPDEC };

/* The knob's field in p, as a float (the counts are stored as integers). */
static float knob_get(const rec_params *p, const knob *kb) {
    const rec_knn_params *kp = kb->scorer >= 0 ? &p->knn[kb->scorer] : NULL;
    switch (kb->field) {
    case K_NEIGH:
        return (float)kp->neighbours;
    case K_POS:
        return kp->pos_decay;
    case K_REC:
        return kp->recency;
    case K_AFTER:
        return kp->after;
    case K_BEFORE:
        return kp->before;
    case K_SRWIN:
        return (float)p->sr_window;
    default:
        return p->repeat_decay;
    }
}

static void knob_set(rec_params *p, const knob *kb, float v) {
    rec_knn_params *kp = kb->scorer >= 0 ? &p->knn[kb->scorer] : NULL;
    switch (kb->field) {
    case K_NEIGH:
        kp->neighbours = (uint32_t)v;
        break;
    case K_POS:
        kp->pos_decay = v;
        break;
    case K_REC:
        kp->recency = v;
        break;
    case K_AFTER:
        kp->after = v;
        break;
    case K_BEFORE:
        kp->before = v;
        break;
    case K_SRWIN:
        p->sr_window = (uint32_t)v;
        break;
    default:
        p->repeat_decay = v;
        break;
    }
}

static int search(const rec_model *m, const rtune_opts *o, const caseset *cs, rec_params *p,
                  rec_ws *ws, rtune_report *rep) {
    size_t nsub = cs->n < o->search_cases ? cs->n : o->search_cases;
    /* Every other case from the newest backwards would favour long sessions; taking a stride over
     * all cases keeps the mix of session lengths. */
    caseset sub = {.pool = cs->pool};
    sub.c = malloc(nsub * sizeof *sub.c);
    if (!sub.c) return REC_NOMEM;
    for (size_t i = 0; i < nsub; i++)
        sub.c[i] = cs->c[i * cs->n / nsub];
    sub.n = nsub;

    /* The knobs that matter most for their cost: how fast old neighbours fade (the scale differs
     * most between shops), and how far from the anchor a neighbour's items still count. */
    const knob knobs[] = {
        {0, K_REC, {INFINITY, 0.5f, 0.125f, 0.03125f}, 4},
        {1, K_REC, {INFINITY, 0.5f, 0.125f, 0.03125f}, 4},
        {1, K_AFTER, {1, 2, 4, 8, INFINITY}, 5},
    };
    fset fs = {0};
    float w[F];
    double hr, mrr;
    int rc = featurize(m, p, &sub, sub.n, ws, &fs);
    if (rc) goto out;
    fit(&fs, o->l2, p->weights, w);
    float w_start[F]; /* every candidate setting's fit starts here: near its optimum, and fair */
    memcpy(w_start, w, sizeof w_start);
    metrics(&fs, w, o->k, &hr, &mrr);
    double best = hr + mrr;
    say(o, "search: start HR@%u %.4f MRR@%u %.4f on %zu cases", o->k, hr, o->k, mrr, sub.n);
    for (size_t kb = 0; kb < sizeof knobs / sizeof *knobs; kb++) {
        float cur = knob_get(p, &knobs[kb]);
        float bestv = cur;
        for (int v = 0; v < knobs[kb].nvals; v++) {
            float val = knobs[kb].vals[v];
            if (val == cur) continue;
            rec_params t = *p;
            knob_set(&t, &knobs[kb], val);
            if ((rc = featurize(m, &t, &sub, sub.n, ws, &fs))) goto out;
            fit(&fs, o->l2, w_start, w);
            metrics(&fs, w, o->k, &hr, &mrr);
            rep->settings_tried++;
            if (hr + mrr > best + 1e-4) {
                best = hr + mrr;
                bestv = val;
            }
        }
        knob_set(p, &knobs[kb], bestv);
        say(o, "search: knob %zu -> %g (HR+MRR %.4f)", kb, (double)bestv, best);
    }
out:
    fset_free(&fs);
    free(sub.c);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */

int rtune_learn(const rec_model *m, const rtune_opts *o, rec_params *p, rtune_report *rep) {
    double t0 = now_s();
    memset(rep, 0, sizeof *rep);
    caseset cs = {0};
    fset fs = {0};
    rec_ws *ws = rec__ws_new();
    rec_params work = *p;
    int rc = ws ? collect_cases(m, o, &cs) : REC_NOMEM;
    if (rc) goto out;
    if (!cs.n) {
        rc = REC_INVALID;
        goto out;
    }
    say(o, "tune: %zu cases from the newest sessions", cs.n);
    rep->cases = cs.n;
    if ((rc = featurize(m, p, &cs, cs.n, ws, &fs))) goto out;
    metrics(&fs, p->weights, o->k, &rep->hr_before, &rep->mrr_before);
    if (o->search) {
        if ((rc = search(m, o, &cs, &work, ws, rep))) goto out;
        if ((rc = featurize(m, &work, &cs, cs.n, ws, &fs))) goto out;
    }
    for (size_t i = 0; i < fs.ncases; i++)
        rep->covered += fs.tgt[i] >= 0;
    fit(&fs, o->l2, work.weights, work.weights);
    metrics(&fs, work.weights, o->k, &rep->hr_after, &rep->mrr_after);
    *p = work;
out:
    rep->seconds = now_s() - t0;
    fset_free(&fs);
    free(cs.pool);
    free(cs.c);
    rec__ws_free(ws);
    return rc;
}
