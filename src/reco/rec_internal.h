/* rec_internal — what the learner (rtune.c) and the unit tests need from rec.c: scoring a query as
 * the model stood when an earlier session began, the raw component scores behind the blend, and
 * read access to stored sessions. Not an API for other modules: it may change with rec.c.
 *
 * Items here are dense indices (0..items-1 in order of first sight), not the caller's ids. */
#ifndef ENGAGED_REC_INTERNAL_H
#define ENGAGED_REC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reco/rec.h"

/* The raw scorers; rec__featurize() turns their output into the blend's rec_feature vector. */
enum { REC_C_KNN0, REC_C_KNN1, REC_C_SR, REC_C_REPEAT, REC_NCOMP };

#define REC_NONE UINT32_MAX /* "no session" for as_of / exclude */

typedef struct rec_cand {
    uint32_t item;      /* dense index */
    uint32_t count;     /* views of the item in the query session */
    uint32_t last;      /* 1 when it is the query's last item */
    uint32_t age;       /* when count > 0: positions between its last view and the query's end */
    float c[REC_NCOMP]; /* raw component scores, 0 when a scorer did not reach the item */
} rec_cand;

/* Scratch memory for queries: reused across calls by one thread. */
typedef struct rec_ws rec_ws;
rec_ws *rec__ws_new(void);
void rec__ws_free(rec_ws *ws);

/* Scores a query of n dense items (event order) with the query-time fields of p. Sessions whose id
 * is
 * >= as_of, and the session exclude, are invisible, so with as_of = the id of a stored session the
 * result is what the model would have said when that session began (as long as the per-item caps
 * have not pushed older postings out). REC_NONE for either means no restriction. Fills *out with
 * the candidates (valid until the next call with ws), *nout with their number and maxes[] with each
 * component's maximum. Returns REC_OK or REC_NOMEM. */
int rec__score(const rec_model *m, const rec_params *p, const uint32_t *q, size_t n, uint32_t as_of,
               uint32_t exclude, rec_ws *ws, rec_cand **out, size_t *nout, float maxes[REC_NCOMP]);

/* Keeps the candidates the blend ranks: each kNN/rule scorer's top `keep` (ties at the cut kept
 * too) and the query's own items. Reorders cand[0..n) so the kept ones come first; returns their
 * number. tmp must have room for n floats. O(n). */
size_t rec__select(rec_cand *cand, size_t n, uint32_t keep, float *tmp);

/* The blend's feature vectors of cand[0..n) (the kept candidates of a query of qlen items, scored
 * as of as_of): F = REC_NFEAT floats per candidate into x. Uses ws for scratch. REC_OK or
 * REC_NOMEM. */
int rec__featurize(const rec_model *m, uint32_t as_of, const rec_cand *cand, size_t n,
                   const float maxes[REC_NCOMP], size_t qlen, float *x, rec_ws *ws);

/* The id the next new session will get (= sessions begun so far). */
uint32_t rec__next_id(const rec_model *m);
/* The stored items (dense) of session id and their number, or NULL when the session was forgotten
 * or never existed. Valid until the next rec_observe(). */
const uint32_t *rec__session(const rec_model *m, uint32_t id, uint32_t *len);
/* The id of the first session in which the dense item was seen. */
uint32_t rec__item_first(const rec_model *m, uint32_t item);
/* The caller's id of a dense item, and back (REC_NONE when unknown). */
uint32_t rec__item_ext(const rec_model *m, uint32_t item);
uint32_t rec__item_dense(const rec_model *m, uint32_t ext);

#endif
