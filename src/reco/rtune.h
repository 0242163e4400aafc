/* rtune — learns the blend (and optionally the kNN settings) from the shop's own recent sessions.
 *
 * Why: how sequential and how repetitive sessions are differs from shop to shop, and weights
 * hand-set on one data set lose ground on another. So the model's own most recent sessions are the
 * validation set. No data is held back from the model for this: each prefix of a recent session X
 * is scored "as of" X (sessions X and later are invisible, see rec__score), which is what the model
 * said, or would have said, while X was under way; items first seen in X or later are left out of
 * X's prefixes, as in the SR-GNN test protocol. The model can therefore keep learning from every
 * event and be re-tuned at any time.
 *
 * The fit: each case keeps exactly the candidates rec_recommend() would rank (rec_params.candidates
 * of every scorer plus the session's own items), so what is learned holds where it is used; a case
 * whose next item is not among them cannot be helped by weights and is left out. The weights are
 * the maximum-likelihood conditional logit ("which of these candidates comes next?", a softmax over
 * the case's candidates, ridge-penalised), found by Newton's method. That is convex, so the result
 * does not depend on a starting point or a step size. The softmax log-likelihood is a smooth
 * stand-in for MRR; the reports give HR@k and MRR@k on the same cases before and after.
 *
 * With search on (the default), three settings are chosen from a few values each: both kNN
 * scorers' session recency and scorer 1's decay after the anchor (the ones that moved results on
 * validation; the rest stay at rec_params_default()). Coordinate-wise, a change is kept only if
 * the refitted blend's HR@k + MRR@k on search_cases cases improves; then the weights are refitted
 * on all cases.
 *
 * Ownership: reads the model, never changes it; the caller installs the result with
 * rec_set_params() (the single writer). Cost: one scoring pass per case (about the cost of
 * rec_recommend) for the weights, plus one pass over the search subset per setting tried (10
 * settings); memory ~6 KB per case (measured: 15,000 cases add ~87 MiB to peak RSS). */
#ifndef ENGAGED_RTUNE_H
#define ENGAGED_RTUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reco/rec.h"

typedef struct rtune_opts {
    uint32_t sessions;     /* learn from the prefixes of at most this many of the newest sessions */
    uint32_t max_cases;    /* and at most this many prefixes */
    uint32_t k;            /* the cut-off of HR@k / MRR@k */
    double l2;             /* ridge penalty per case on the weights */
    bool search;           /* also choose the kNN settings */
    uint32_t search_cases; /* cases used to compare settings */
    /* Called now and then with a line of progress (no newline); may be NULL. */
    void (*progress)(void *ctx, const char *msg);
    void *ctx;
} rtune_opts;

typedef struct rtune_report {
    size_t cases;   /* prefixes learned from */
    size_t covered; /* of which the true next item was among the kept candidates */
    size_t settings_tried;
    double hr_before, mrr_before; /* the parameters given, on the learning cases */
    double hr_after, mrr_after;   /* the parameters learned, on the same cases (in-sample) */
    double seconds;
} rtune_report;

void rtune_opts_default(rtune_opts *o);

/* Learns from m's newest sessions, starting from *p (whose query-time fields are the starting
 * point, and whose weights are the "before" of the report); on success *p holds the learned
 * parameters. Returns REC_OK; REC_INVALID when the model has no session with two events to learn
 * from (p is then unchanged); REC_NOMEM. */
int rtune_learn(const rec_model *m, const rtune_opts *o, rec_params *p, rtune_report *rep);

#endif
