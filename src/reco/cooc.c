#include "reco/cooc.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/vec.h"

/* A row is one allocation: its header and its entries in insertion order (the order in which each
 * neighbour entered the row; a weight update does not move an entry). That order is what makes
 * eviction deterministic without a per-entry counter: the first entry of minimum weight met by a
 * scan from the front is the oldest of them. */
typedef struct row {
    uint32_t n;   /* entries in use */
    uint32_t cap; /* room in e[], <= per_item */
    cooc_item e[];
} row;

struct cooc {
    row **rows;   /* indexed by item id; NULL: no neighbours */
    size_t nrows; /* slots in rows, all initialised */
    size_t bytes; /* heap bytes held, kept up to date by every allocation */
    uint32_t per_item;
    /* True once any row has evicted an entry. Until then a lies in b's row exactly when b lies in
     * a's, so cooc_forget() need only visit the forgotten item's neighbours. */
    bool evicted;
};

static size_t row_bytes(uint32_t cap) {
    return sizeof(row) + (size_t)cap * sizeof(cooc_item);
}

cooc *cooc_new(uint32_t per_item) {
    if (per_item == 0) return NULL;
    cooc *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->per_item = per_item;
    c->bytes = sizeof *c;
    return c;
}

void cooc_free(cooc *c) {
    if (!c) return;
    for (size_t i = 0; i < c->nrows; i++)
        free(c->rows[i]);
    free(c->rows);
    free(c);
}

static bool valid_weight(float w) {
    return isfinite(w) && w > 0;
}

/* Makes rows[] cover ids 0..item (vec_reserve's doubling); new slots are NULL. 0 or -1 (nothing
 * changed). */
static int rows_cover(cooc *c, uint32_t item) {
    size_t old = c->nrows;
    if ((size_t)item < old) return 0;
    if (vec_reserve((void **)&c->rows, &c->nrows, (size_t)item + 1, sizeof *c->rows)) return -1;
    memset(c->rows + old, 0, (c->nrows - old) * sizeof *c->rows);
    c->bytes += (c->nrows - old) * sizeof *c->rows;
    return 0;
}

static long row_find(const row *r, uint32_t item) {
    if (!r) return -1;
    for (uint32_t i = 0; i < r->n; i++)
        if (r->e[i].item == item) return (long)i;
    return -1;
}

/* Makes room for one more entry in the row of item unless it is full at per_item (then an entry
 * will be evicted instead). 0 or -1 (the row is unchanged). */
static int row_room(cooc *c, uint32_t item) {
    row *r = c->rows[item];
    uint32_t n = r ? r->n : 0, cap = r ? r->cap : 0;
    if (n < cap || cap == c->per_item) return 0;
    uint32_t ncap = cap ? (cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2) : 4;
    if (ncap > c->per_item) ncap = c->per_item;
    row *q = realloc(r, row_bytes(ncap));
    if (!q) return -1;
    if (!r) q->n = 0;
    q->cap = ncap;
    c->rows[item] = q;
    c->bytes += row_bytes(ncap) - (r ? row_bytes(cap) : 0);
    return 0;
}

/* Adds w to the entry of nb in the row of item, found at index at (or -1). row_room() has made
 * sure that a missing entry either fits or finds a full row to evict from. */
static void row_add(cooc *c, uint32_t item, long at, uint32_t nb, float w) {
    row *r = c->rows[item];
    if (at >= 0) {
        r->e[at].weight += w;
        return;
    }
    if (r->n < r->cap) {
        r->e[r->n++] = (cooc_item){nb, w};
        return;
    }
    /* Full: the first minimum is the oldest one. The newcomer inherits its weight and goes to the
     * back, the youngest position. */
    uint32_t m = 0;
    for (uint32_t i = 1; i < r->n; i++)
        if (r->e[i].weight < r->e[m].weight) m = i;
    float inherited = r->e[m].weight;
    memmove(&r->e[m], &r->e[m + 1], (r->n - m - 1) * sizeof r->e[0]);
    r->e[r->n - 1] = (cooc_item){nb, inherited + w};
    c->evicted = true;
}

/* cooc_add_pair() without the argument checks; a != b. */
static int add_pair(cooc *c, uint32_t a, uint32_t b, float w) {
    if (rows_cover(c, a > b ? a : b)) return COOC_NOMEM;
    long ia = row_find(c->rows[a], b), ib = row_find(c->rows[b], a);
    /* Both allocations before either write: a failure leaves both rows as they were (at most one
     * has gained unused capacity). */
    if (ia < 0 && row_room(c, a)) return COOC_NOMEM;
    if (ib < 0 && row_room(c, b)) return COOC_NOMEM;
    row_add(c, a, ia, b, w);
    row_add(c, b, ib, a, w);
    return COOC_OK;
}

int cooc_add_pair(cooc *c, uint32_t a, uint32_t b, float w) {
    if (a == UINT32_MAX || b == UINT32_MAX || !valid_weight(w)) return COOC_INVALID;
    if (a == b) return COOC_OK;
    return add_pair(c, a, b, w);
}

/* The first COOC_GROUP_MAX distinct items of items[0..n) into out, in order of first appearance;
 * returns their number, or -1 when an item is UINT32_MAX (all n are checked, so an invalid group
 * is refused whatever its length). O(n * COOC_GROUP_MAX). */
static int distinct(const uint32_t *items, size_t n, uint32_t out[COOC_GROUP_MAX]) {
    if (n && !items) return -1;
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i] == UINT32_MAX) return -1;
        if (m == COOC_GROUP_MAX) continue;
        int j = 0;
        while (j < m && out[j] != items[i])
            j++;
        if (j == m) out[m++] = items[i];
    }
    return m;
}

int cooc_add_group(cooc *c, const uint32_t *items, size_t n, float w) {
    uint32_t d[COOC_GROUP_MAX];
    int m = distinct(items, n, d);
    if (m < 0 || !valid_weight(w)) return COOC_INVALID;
    /* Pairs in the order (0,1), (0,2) .. (1,2) ..: with full rows the order decides evictions. */
    for (int i = 0; i < m; i++)
        for (int j = i + 1; j < m; j++)
            if (add_pair(c, d[i], d[j], w)) return COOC_NOMEM;
    return COOC_OK;
}

static bool contains(const uint32_t *set, int n, uint32_t item) {
    for (int i = 0; i < n; i++)
        if (set[i] == item) return true;
    return false;
}

int cooc_add_cross(cooc *c, const uint32_t *a, size_t na, const uint32_t *b, size_t nb, float w) {
    uint32_t da[COOC_GROUP_MAX], db[COOC_GROUP_MAX];
    int ma = distinct(a, na, da), mb = distinct(b, nb, db);
    if (ma < 0 || mb < 0 || !valid_weight(w)) return COOC_INVALID;
    bool a_in_b[COOC_GROUP_MAX], b_in_a[COOC_GROUP_MAX];
    for (int i = 0; i < ma; i++)
        a_in_b[i] = contains(db, mb, da[i]);
    for (int j = 0; j < mb; j++)
        b_in_a[j] = contains(da, ma, db[j]);
    for (int i = 0; i < ma; i++)
        for (int j = 0; j < mb; j++) {
            uint32_t x = da[i], y = db[j];
            if (x == y) continue;
            /* x and y both in the overlap: the pair is met twice, as (x, y) and as (y, x); it is
             * one pair and counts once, at the meeting whose a-side item is the smaller. */
            if (a_in_b[i] && b_in_a[j] && x > y) continue;
            if (add_pair(c, x, y, w)) return COOC_NOMEM;
        }
    return COOC_OK;
}

/* Ranking order: heavier first, then smaller item. */
static bool better(cooc_item x, cooc_item y) {
    return x.weight > y.weight || (x.weight == y.weight && x.item < y.item);
}

/* Restores the heap property below i in a heap whose root is its worst element. */
static void sift_down(cooc_item *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(h[w], h[l])) w = l;
        if (r < n && better(h[w], h[r])) w = r;
        if (w == i) return;
        cooc_item t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

size_t cooc_top(const cooc *c, uint32_t item, size_t k, cooc_item *out) {
    if (item >= c->nrows || !c->rows[item] || k == 0) return 0;
    const row *r = c->rows[item];
    /* out[0..n) is a heap of the best n seen so far with the worst at the root. */
    size_t n = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        if (n < k) {
            size_t j = n++;
            out[j] = r->e[i];
            while (j > 0 && better(out[(j - 1) / 2], out[j])) {
                cooc_item t = out[j];
                out[j] = out[(j - 1) / 2];
                out[(j - 1) / 2] = t;
                j = (j - 1) / 2;
            }
        } else if (better(r->e[i], out[0])) {
            out[0] = r->e[i];
            sift_down(out, n, 0);
        }
    }
    /* Heap sort: the worst goes to the back each time, leaving the best first. */
    for (size_t m = n; m > 1; m--) {
        cooc_item t = out[0];
        out[0] = out[m - 1];
        out[m - 1] = t;
        sift_down(out, m - 1, 0);
    }
    return n;
}

float cooc_weight(const cooc *c, uint32_t a, uint32_t b) {
    if (a >= c->nrows) return 0;
    long i = row_find(c->rows[a], b);
    return i < 0 ? 0 : c->rows[a]->e[i].weight;
}

const cooc_item *cooc_row(const cooc *c, uint32_t item, size_t *n) {
    if (item >= c->nrows || !c->rows[item]) {
        *n = 0;
        return NULL;
    }
    *n = c->rows[item]->n;
    return c->rows[item]->e;
}

/* Removes item from the row of owner, keeping the others in insertion order. */
static void row_remove(cooc *c, uint32_t owner, uint32_t item) {
    row *r = c->rows[owner];
    long i = row_find(r, item);
    if (i < 0) return;
    memmove(&r->e[i], &r->e[i + 1], (r->n - (size_t)i - 1) * sizeof r->e[0]);
    r->n--;
}

void cooc_forget(cooc *c, uint32_t item) {
    if (item >= c->nrows) return;
    row *own = c->rows[item];
    if (!c->evicted) {
        for (uint32_t i = 0; own && i < own->n; i++)
            row_remove(c, own->e[i].item, item);
    } else {
        for (size_t o = 0; o < c->nrows; o++)
            if (o != item && c->rows[o]) row_remove(c, (uint32_t)o, item);
    }
    if (own) {
        c->bytes -= row_bytes(own->cap);
        free(own);
        c->rows[item] = NULL;
    }
}

size_t cooc_bytes(const cooc *c) {
    return c->bytes;
}
