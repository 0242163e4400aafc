/* engaged eval — offline evaluation of the session recommender (reco/rec.h) on a train/test split.
 *
 * Training feeds every training session, item by item, through rec_observe(), the same path live
 * events take; then (unless --no-tune) rtune_learn() fits the blend on the newest training sessions
 * and the result is installed with rec_set_params(). Every test prefix is then asked of
 * rec_recommend(), as a server would. Progress goes to stderr; the last stdout line is JSON:
 *   {"hr@K": ..., "mrr@K": ..., "cases": ..., "train_s": ..., "eval_s": ...}
 * train_s covers feeding and tuning (not reading the file), eval_s the recommending (not reading).
 * Test sessions are never fed to the model (the SR-GNN protocol). */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/cli.h"
#include "reco/rec.h"
#include "reco/rtune.h"
#include "reco/sfile.h"
#include "util/vec.h"

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f) {
    fputs("usage: engaged eval --train FILE (--test FILE | --holdout FRACTION) [options]\n"
          "  --k N              cut-off of HR@N and MRR@N (default 20)\n"
          "  --holdout F        test on the last fraction F of the training sessions instead\n"
          "  --no-tune          keep the shipped default blend (no learning)\n"
          "  --no-search        learn the blend only, not the kNN settings (faster training)\n"
          "  --tune-sessions N  learn from the newest N training sessions (default 20000)\n"
          "  --tune-cases N     ... and at most N of their prefixes (default 15000)\n"
          "  --set NAME=VALUE   set a parameter (see --list-params); repeatable\n"
          "  --list-params      print the parameters and their defaults\n"
          "  --max-line BYTES   longer input lines are skipped (default 1 MiB)\n"
          "Files: SR-GNN text (train: one session per line; test: prefix<TAB>next) or TSV with a\n"
          "SessionId/ItemId/Time header (every prefix of a test session is a case).\n",
          f);
}

/* ---------------------------------------------------------------------------------------------- */
/* Parameters by name */
/* ---------------------------------------------------------------------------------------------- */

typedef enum { P_U32, P_F32 } pkind;
typedef struct pfield {
    const char *name;
    pkind kind;
    size_t off;
} pfield;

#define PU(n, f)                                                                                   \
    { n, P_U32, offsetof(rec_params, f) }
#define PF(n, f)                                                                                   \
    { n, P_F32, offsetof(rec_params, f) }
static const pfield pfields[] = {
    PU("max_sessions", max_sessions),
    PU("max_postings", max_postings),
    PU("max_session_len", max_session_len),
    PU("knn0.neighbours", knn[0].neighbours),
    PU("knn0.sample", knn[0].sample),
    PF("knn0.pos_decay", knn[0].pos_decay),
    PF("knn0.recency", knn[0].recency),
    PF("knn0.after", knn[0].after),
    PF("knn0.before", knn[0].before),
    PU("knn1.neighbours", knn[1].neighbours),
    PU("knn1.sample", knn[1].sample),
    PF("knn1.pos_decay", knn[1].pos_decay),
    PF("knn1.recency", knn[1].recency),
    PF("knn1.after", knn[1].after),
    PF("knn1.before", knn[1].before),
    PU("sr.sample", sr_sample),
    PU("sr.window", sr_window),
    PF("repeat_decay", repeat_decay),
    PU("candidates", candidates),
};

static void print_params(FILE *f, const rec_params *p) {
    for (size_t i = 0; i < sizeof pfields / sizeof *pfields; i++) {
        const char *base = (const char *)p + pfields[i].off;
        if (pfields[i].kind == P_U32)
            fprintf(f, "  %s=%u\n", pfields[i].name, *(const uint32_t *)(const void *)base);
        else
            fprintf(f, "  %s=%g\n", pfields[i].name, (double)*(const float *)(const void *)base);
    }
    for (int w = 0; w < REC_NFEAT; w++)
        fprintf(f, "  w.%s=%g\n", rec_feature_name((rec_feature)w), (double)p->weights[w]);
}

/* Applies "name=value"; values "inf" and "infinity" are accepted for decays. */
static int set_param(rec_params *p, const char *arg) {
    const char *eq = strchr(arg, '=');
    if (!eq) return -1;
    size_t nl = (size_t)(eq - arg);
    char *end;
    errno = 0;
    double v = strtod(eq + 1, &end);
    if (end == eq + 1 || *end || errno == ERANGE || isnan(v)) return -1;
    for (size_t i = 0; i < sizeof pfields / sizeof *pfields; i++) {
        if (strlen(pfields[i].name) != nl || strncmp(arg, pfields[i].name, nl)) continue;
        void *base = (char *)p + pfields[i].off;
        if (pfields[i].kind == P_U32) {
            if (!(v >= 0 && v <= 4294967295.0) || v != floor(v)) return -1;
            *(uint32_t *)base = (uint32_t)v;
        } else {
            *(float *)base = (float)v;
        }
        return 0;
    }
    for (int w = 0; w < REC_NFEAT; w++) {
        const char *fn = rec_feature_name((rec_feature)w);
        if (nl == strlen(fn) + 2 && !strncmp(arg, "w.", 2) && !strncmp(arg + 2, fn, nl - 2)) {
            if (!isfinite(v)) return -1;
            p->weights[w] = (float)v;
            return 0;
        }
    }
    return -1;
}

/* ---------------------------------------------------------------------------------------------- */

typedef struct evcase {
    const uint32_t *items;
    uint32_t n;
    uint32_t target;
} evcase;

typedef struct caselist {
    evcase *c;
    size_t n, alloc;
    uint32_t *pool; /* filtered copies of test sessions' items */
    size_t npool, pool_alloc;
    size_t dropped_items;
} caselist;

/* Every prefix of sessions [from, to) of d, after dropping the items the model never saw. Sizes the
 * pool once, so the case pointers into it stay valid. */
static int expand_sessions(const rec_model *m, const sfile_data *d, size_t from, size_t to,
                           caselist *cl) {
    size_t total = 0;
    for (size_t s = from; s < to; s++)
        total += d->sess_len[s];
    if (vec_reserve((void **)&cl->pool, &cl->pool_alloc, total + 1, sizeof *cl->pool)) return -1;
    for (size_t s = from; s < to; s++) {
        size_t off = cl->npool;
        uint32_t n = 0;
        for (uint32_t i = 0; i < d->sess_len[s]; i++) {
            uint32_t it = d->items[d->sess_off[s] + i];
            if (rec_knows(m, it))
                cl->pool[off + n++] = it;
            else
                cl->dropped_items++;
        }
        cl->npool += n;
        for (uint32_t j = 1; j < n; j++) {
            if (vec_reserve((void **)&cl->c, &cl->alloc, cl->n + 1, sizeof *cl->c)) return -1;
            cl->c[cl->n++] = (evcase){cl->pool + off, j, cl->pool[off + j]};
        }
    }
    return 0;
}

static void progress(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "eval: %s\n", msg);
}

int cmd_eval(int argc, char **argv) {
    const char *train = NULL, *test = NULL;
    unsigned long k = 20;
    double holdout = 0;
    size_t max_line = 0;
    int tune = 1;
    rec_params params;
    rec_params_default(&params);
    rtune_opts topt;
    rtune_opts_default(&topt);
    topt.progress = progress;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--list-params")) {
            print_params(stdout, &params);
            return 0;
        } else if (!strcmp(a, "--no-tune")) {
            tune = 0;
        } else if (!strcmp(a, "--no-search")) {
            topt.search = false;
        } else if (!v) {
            fprintf(stderr, "eval: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        } else if (!strcmp(a, "--train")) {
            train = v, i++;
        } else if (!strcmp(a, "--test")) {
            test = v, i++;
        } else if (!strcmp(a, "--k")) {
            k = strtoul(v, &end, 10), i++;
            if (*end || k == 0 || k > 1000) {
                fprintf(stderr, "eval: --k must be 1..1000\n");
                return 2;
            }
        } else if (!strcmp(a, "--holdout")) {
            holdout = strtod(v, &end), i++;
            if (*end || !(holdout > 0 && holdout < 1)) {
                fprintf(stderr, "eval: --holdout must be a fraction between 0 and 1\n");
                return 2;
            }
        } else if (!strcmp(a, "--tune-sessions") || !strcmp(a, "--tune-cases")) {
            unsigned long n = strtoul(v, &end, 10);
            i++;
            if (*end || n == 0 || n > 10000000) {
                fprintf(stderr, "eval: %s must be 1..10000000\n", a);
                return 2;
            }
            if (a[7] == 's')
                topt.sessions = (uint32_t)n;
            else
                topt.max_cases = (uint32_t)n;
        } else if (!strcmp(a, "--max-line")) {
            max_line = strtoul(v, &end, 10), i++;
            if (*end || max_line < 16) {
                fprintf(stderr, "eval: --max-line must be at least 16\n");
                return 2;
            }
        } else if (!strcmp(a, "--set")) {
            i++;
            if (set_param(&params, v)) {
                fprintf(stderr, "eval: bad --set %s (see --list-params)\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "eval: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!train || (!test && holdout == 0) || (test && holdout > 0)) {
        usage(stderr);
        return 2;
    }
    topt.k = (uint32_t)k;

    char err[256];
    sfile_data tr, te = {0};
    double t0 = mono_s();
    if (sfile_load(train, SFILE_TRAIN, max_line, &tr, err, sizeof err)) {
        fprintf(stderr, "eval: %s\n", err);
        return 1;
    }
    fprintf(stderr, "eval: %s: %s, %zu sessions, %zu events, %zu lines skipped (%zu too long)\n",
            train, tr.format == SFILE_TSV ? "TSV" : "SR-GNN text", tr.nsess, tr.nitems, tr.skipped,
            tr.too_long);
    if (test) {
        if (sfile_load(test, SFILE_TEST, max_line, &te, err, sizeof err)) {
            fprintf(stderr, "eval: %s\n", err);
            sfile_free(&tr);
            return 1;
        }
        fprintf(stderr, "eval: %s: %s, %zu lines skipped (%zu too long)\n", test,
                te.format == SFILE_TSV ? "TSV" : "SR-GNN text", te.skipped, te.too_long);
    }
    fprintf(stderr, "eval: read in %.2f s\n", mono_s() - t0);

    int rc = 1;
    rec_item *out = NULL;
    caselist cl = {0};
    rec_model *m = rec_model_new(&params);
    if (!m) {
        fprintf(stderr, "eval: invalid parameters or out of memory\n");
        goto done;
    }

    /* Train: every event through the live path. */
    size_t nfeed = holdout > 0 ? (size_t)((double)tr.nsess * (1.0 - holdout)) : tr.nsess;
    double t_train = mono_s();
    for (size_t s = 0; s < nfeed; s++) {
        for (uint32_t i = 0; i < tr.sess_len[s]; i++) {
            size_t e = tr.sess_off[s] + i;
            int orc = rec_observe(m, (uint32_t)s, tr.items[e], tr.times[e]);
            if (orc == REC_NOMEM) {
                fprintf(stderr, "eval: out of memory while training\n");
                goto done;
            }
        }
        if ((s + 1) % 50000 == 0) fprintf(stderr, "eval: fed %zu/%zu sessions\n", s + 1, nfeed);
    }
    double feed_s = mono_s() - t_train;
    rec_stats st;
    rec_get_stats(m, &st);
    fprintf(stderr,
            "eval: fed %llu events of %u sessions in %.2f s; %u items; model %.1f MB "
            "(%.1f MB per million events)\n",
            (unsigned long long)st.events, st.next_id, feed_s, st.items, (double)st.bytes / 1e6,
            st.events ? (double)st.bytes / 1e6 / ((double)st.events / 1e6) : 0.0);
    if (tune) {
        rtune_report rep;
        rec_params learned = params;
        int trc = rtune_learn(m, &topt, &learned, &rep);
        if (trc == REC_OK) {
            rec_set_params(m, &learned);
            fprintf(stderr,
                    "eval: learned from %zu prefixes (%zu with the next item among candidates) in "
                    "%.2f s: HR@%lu %.4f -> %.4f, MRR@%lu %.4f -> %.4f (in-sample)\n",
                    rep.cases, rep.covered, rep.seconds, k, rep.hr_before, rep.hr_after, k,
                    rep.mrr_before, rep.mrr_after);
        } else if (trc == REC_INVALID) {
            fprintf(stderr, "eval: nothing to learn from; keeping the defaults\n");
        } else {
            fprintf(stderr, "eval: out of memory while learning\n");
            goto done;
        }
    }
    double train_s = mono_s() - t_train;
    rec_params used;
    rec_get_params(m, &used);
    fprintf(stderr, "eval: parameters in force:\n");
    print_params(stderr, &used);

    /* The cases. */
    if (holdout > 0 || te.format == SFILE_TSV) {
        const sfile_data *src = holdout > 0 ? &tr : &te;
        size_t from = holdout > 0 ? nfeed : 0;
        if (expand_sessions(m, src, from, src->nsess, &cl)) {
            fprintf(stderr, "eval: out of memory\n");
            goto done;
        }
        fprintf(stderr, "eval: %zu test items unknown to the model dropped before expanding\n",
                cl.dropped_items);
    } else {
        if (vec_reserve((void **)&cl.c, &cl.alloc, te.ncases + 1, sizeof *cl.c)) goto done;
        for (size_t i = 0; i < te.ncases; i++)
            cl.c[cl.n++] = (evcase){te.items + te.cases[i].off, te.cases[i].n, te.cases[i].target};
    }

    out = malloc(k * sizeof *out);
    if (!out) goto done;
    double hits = 0, rr = 0;
    double t_eval = mono_s();
    for (size_t i = 0; i < cl.n; i++) {
        size_t got = rec_recommend(m, cl.c[i].items, cl.c[i].n, k, out);
        for (size_t r = 0; r < got; r++) {
            if (out[r].item == cl.c[i].target) {
                hits += 1;
                rr += 1.0 / (double)(r + 1);
                break;
            }
        }
        if ((i + 1) % 20000 == 0)
            fprintf(stderr, "eval: %zu/%zu cases, HR@%lu %.4f MRR@%lu %.4f\n", i + 1, cl.n, k,
                    hits / (double)(i + 1), k, rr / (double)(i + 1));
    }
    double eval_s = mono_s() - t_eval;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "eval: peak RSS %.1f MB\n", (double)ru.ru_maxrss / 1024.0);
    double n = cl.n ? (double)cl.n : 1;
    printf("{\"hr@%lu\": %.4f, \"mrr@%lu\": %.4f, \"cases\": %zu, \"train_s\": %.2f, "
           "\"eval_s\": %.2f}\n",
           k, hits / n, k, rr / n, cl.n, train_s, eval_s);
    fflush(stdout);
    rc = 0;
done:
    free(out);
    free(cl.c);
    free(cl.pool);
    rec_model_free(m);
    sfile_free(&tr);
    sfile_free(&te);
    return rc;
}
