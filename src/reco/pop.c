#include "reco/pop.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/vec.h"

/* A stored value v of kind k stands for the score v * 2^-((now - epoch[k]) / half_life[k]), so
 * adding w at t adds w * 2^((t - epoch[k]) / half_life[k]). Base 2 rather than e keeps a score
 * exact at whole half-lives. When an added term's factor would pass 2^RESCALE_EXP, every board of
 * the kind is multiplied down and the epoch moved to t: that leaves 2^(1023 - RESCALE_EXP) of
 * headroom for the sums themselves. A sum that still overflows (absurd weights) saturates at
 * DBL_MAX rather than becoming infinite. */
#define RESCALE_EXP 512.0

/* The largest board limit with 16-bit slots and back pointers: its index has at most 65536 slots
 * (the smallest power of two >= 1.5 * 43690 = 65535), so slot numbers and positions + 1 fit. */
#define NARROW_MAX 43690u

/* A board: a binary min-heap of its entries under the ranking order (the root is the weakest: the
 * lowest value, and among equal lowest values the largest item, which is the one a newcomer
 * replaces), and an open-addressing index from item to heap position. A slot stores position + 1
 * (0: empty) and the key is read from item[]; back[] holds, per position, the slot that points at
 * it, so an entry that moves one level rewrites its slot directly instead of probing for it. Slots
 * and back pointers are 16 bits when every board limit is at most NARROW_MAX, else 32. Linear
 * probing at a load of at most 2/3, backward-shift deletion (no tombstones). Everything lives in
 * one allocation: this header, then v[cap], item[cap], back[cap], the slots.
 *
 * Why a heap and not a sorted array: with values scaled to a fixed epoch a fresh event outweighs
 * most old entries, so a newcomer (the lowest + w) used to climb past hundreds of near-equal
 * entries at the bottom, each a memmove share and a slot rewrite. In the heap an update only ever
 * makes an entry stronger, so it sinks towards the leaves: at most log2(n) levels. Reads pay
 * instead: pop_top() selects and sorts, pop_rank() counts. */
typedef struct board {
    uint32_t n;   /* entries in use */
    uint32_t cap; /* room in v, item and back; <= the board limit */
    size_t mask;  /* index slots - 1, a power of two minus one */
    double *v;
    uint32_t *item;
    void *back;
    void *slot;
} board;

struct pop {
    pop_opts o;
    board **b;     /* [group * POP_NKINDS + kind]; NULL until the group receives a weight */
    size_t nb;     /* slots in b */
    size_t groups; /* groups with boards */
    size_t bytes;
    double epoch[POP_NKINDS]; /* ms; set by the first pop_add() */
    /* The last factor 2^((t - epoch) / half-life) pop_add() computed, and its t (NaN: none): the
     * caller adds one event to several groups in a row, so most adds skip the exp2(). The epoch
     * only moves when a new t is seen, just before the memo is rewritten. */
    double memo_t[POP_NKINDS], memo_f[POP_NKINDS];
    bool started; /* an epoch has been set */
    bool wide;    /* 32-bit slots and back pointers */
};

void pop_opts_default(pop_opts *o) {
    o->half_life_ms[POP_POPULAR] = 30.0 * 86400000.0;
    o->half_life_ms[POP_TRENDING] = 86400000.0;
    o->board = 200;
    o->board_all = 2000;
    o->max_groups = 1u << 20;
}

pop *pop_new(const pop_opts *o) {
    if (!o || o->board == 0 || o->max_groups == 0) return NULL;
    for (int k = 0; k < POP_NKINDS; k++)
        if (!(o->half_life_ms[k] > 0)) return NULL; /* NaN too */
    pop *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->o = *o;
    if (p->o.board_all == 0) p->o.board_all = p->o.board;
    p->wide = p->o.board > NARROW_MAX || p->o.board_all > NARROW_MAX;
    p->memo_t[POP_POPULAR] = p->memo_t[POP_TRENDING] = NAN;
    p->bytes = sizeof *p;
    return p;
}

static size_t board_alloc_bytes(const pop *p, uint32_t cap, size_t mask) {
    size_t w = p->wide ? sizeof(uint32_t) : sizeof(uint16_t);
    return sizeof(board) + (size_t)cap * (sizeof(double) + sizeof(uint32_t) + w) + (mask + 1) * w;
}

void pop_free(pop *p) {
    if (!p) return;
    for (size_t i = 0; i < p->nb; i++)
        free(p->b[i]);
    free(p->b);
    free(p);
}

/* ---- the index ---- */

static size_t home(const board *b, uint32_t item) {
    return (size_t)(((uint64_t)item * 0x9e3779b97f4a7c15ull) >> 32) & b->mask;
}

static uint32_t sget(const pop *p, const board *b, size_t i) {
    return p->wide ? ((const uint32_t *)b->slot)[i] : ((const uint16_t *)b->slot)[i];
}

static void sset(const pop *p, board *b, size_t i, uint32_t v) {
    if (p->wide)
        ((uint32_t *)b->slot)[i] = v;
    else
        ((uint16_t *)b->slot)[i] = (uint16_t)v;
}

/* The slot that points at position pos. */
static uint32_t bget(const pop *p, const board *b, uint32_t pos) {
    return p->wide ? ((const uint32_t *)b->back)[pos] : ((const uint16_t *)b->back)[pos];
}

static void bset(const pop *p, board *b, uint32_t pos, size_t slot) {
    if (p->wide)
        ((uint32_t *)b->back)[pos] = (uint32_t)slot;
    else
        ((uint16_t *)b->back)[pos] = (uint16_t)slot;
}

/* The position of item, or -1. */
static long find(const pop *p, const board *b, uint32_t item) {
    for (size_t i = home(b, item);; i = (i + 1) & b->mask) {
        uint32_t s = sget(p, b, i);
        if (s == 0) return -1;
        if (b->item[s - 1] == item) return (long)s - 1;
    }
}

static void index_insert(const pop *p, board *b, uint32_t item, uint32_t pos) {
    size_t i = home(b, item);
    while (sget(p, b, i) != 0)
        i = (i + 1) & b->mask;
    sset(p, b, i, pos + 1);
    bset(p, b, pos, i);
}

/* Empties slot i and moves later members of its probe run back so that every run stays
 * contiguous. item[] must still match the slots. */
static void index_delete(const pop *p, board *b, size_t i) {
    size_t j = i;
    for (;;) {
        sset(p, b, i, 0);
        for (;;) {
            j = (j + 1) & b->mask;
            uint32_t s = sget(p, b, j);
            if (s == 0) return;
            size_t h = home(b, b->item[s - 1]);
            /* Move j back to i unless its home lies cyclically in (i, j]. */
            if (i <= j ? (i < h && h <= j) : (i < h || h <= j)) continue;
            break;
        }
        uint32_t s = sget(p, b, j);
        sset(p, b, i, s);
        bset(p, b, s - 1, i);
        i = j;
    }
}

static void index_rebuild(const pop *p, board *b) {
    memset(b->slot, 0, (b->mask + 1) * (p->wide ? sizeof(uint32_t) : sizeof(uint16_t)));
    for (uint32_t i = 0; i < b->n; i++)
        index_insert(p, b, b->item[i], i);
}

/* ---- boards ---- */

static uint32_t limit(const pop *p, uint32_t group) {
    return group == 0 ? p->o.board_all : p->o.board;
}

/* A board with room for cap entries holding the entries of old (may be NULL), or NULL when out of
 * memory (old is untouched). */
static board *board_make(pop *p, const board *old, uint32_t cap) {
    size_t slots = 8;
    while (slots < (size_t)cap + cap / 2)
        slots *= 2;
    size_t bytes = board_alloc_bytes(p, cap, slots - 1);
    board *b = malloc(bytes);
    if (!b) return NULL;
    b->n = old ? old->n : 0;
    b->cap = cap;
    b->mask = slots - 1;
    b->v = (double *)(b + 1);
    b->item = (uint32_t *)(b->v + cap);
    b->back = b->item + cap;
    b->slot = (char *)b->back + (size_t)cap * (p->wide ? sizeof(uint32_t) : sizeof(uint16_t));
    if (old) {
        memcpy(b->v, old->v, old->n * sizeof *b->v);
        memcpy(b->item, old->item, old->n * sizeof *b->item);
    }
    index_rebuild(p, b);
    p->bytes += bytes;
    return b;
}

/* Makes room for one more entry on the board at *slot unless it is full at its limit (an entry
 * will then be replaced). 0, or -1 with the board unchanged. */
static int board_room(pop *p, board **slot, uint32_t lim) {
    board *b = *slot;
    if (b->n < b->cap || b->cap == lim) return 0;
    uint32_t cap = b->cap > UINT32_MAX / 2 ? UINT32_MAX : b->cap * 2;
    if (cap > lim) cap = lim;
    board *nb = board_make(p, b, cap);
    if (!nb) return -1;
    p->bytes -= board_alloc_bytes(p, b->cap, b->mask);
    free(b);
    *slot = nb;
    return 0;
}

/* x, or DBL_MAX for an overflow to infinity (x is never NaN): fmin() without the libm call. */
static double sat(double x) {
    return x < DBL_MAX ? x : DBL_MAX;
}

/* Ranking order: higher stored value first, then smaller item. Items on a board are distinct, so
 * this is a strict total order and "weaker" is its converse. */
static bool beats(double v, uint32_t item, double v2, uint32_t item2) {
    return v > v2 || (v == v2 && item < item2);
}

static bool weaker(double v, uint32_t item, double v2, uint32_t item2) {
    return v < v2 || (v == v2 && item > item2);
}

/* Puts the entry (v, item, whose index slot is s) at pos and points the slot there. */
static void place(const pop *p, board *b, uint32_t pos, double v, uint32_t item, uint32_t s) {
    b->v[pos] = v;
    b->item[pos] = item;
    bset(p, b, pos, s);
    sset(p, b, s, pos + 1);
}

/* The entry at pos may be stronger than a child (it has just gained value, or replaced the root):
 * moves it down, the weaker child up, until both children are stronger. O(log n). The weaker
 * child is chosen without a branch: a newcomer, the lowest + w, sinks through near-equal values,
 * where which child is weaker is a coin toss the branch predictor loses half the time. Measured
 * (a scratch loop, each event added to group 0 and one other, medians of 7 runs): 384 → 267 ns
 * per event for 5,000 items viewed in turn (as bench/run.sh's batch does), 308 → 245 ns for
 * Zipf(1) over 100,000 items. A 4-ary heap, with or without branches, did no better. */
static void sift_down(const pop *p, board *b, uint32_t pos) {
    double v = b->v[pos];
    uint32_t item = b->item[pos], s = bget(p, b, pos);
    for (;;) {
        size_t c = 2 * (size_t)pos + 1;
        if (c >= b->n) break;
        if (c + 1 < b->n) {
            double v0 = b->v[c], v1 = b->v[c + 1];
            c += (size_t)((v1 < v0) | ((v1 == v0) & (b->item[c + 1] > b->item[c])));
        }
        if (!weaker(b->v[c], b->item[c], v, item)) break;
        place(p, b, pos, b->v[c], b->item[c], bget(p, b, (uint32_t)c));
        pos = (uint32_t)c;
    }
    place(p, b, pos, v, item, s);
}

/* The entry at pos may be weaker than its parent (it is new, or filled a hole): moves it up. */
static void sift_up(const pop *p, board *b, uint32_t pos) {
    double v = b->v[pos];
    uint32_t item = b->item[pos], s = bget(p, b, pos);
    while (pos > 0) {
        uint32_t up = (pos - 1) / 2;
        if (!weaker(v, item, b->v[up], b->item[up])) break;
        place(p, b, pos, b->v[up], b->item[up], bget(p, b, up));
        pos = up;
    }
    place(p, b, pos, v, item, s);
}

/* Adds the scaled term to item on b, whose position is at (-1: absent); board_room() has run.
 * Every case only strengthens the entry at its position, except a new entry on a board with
 * room, which starts as a leaf and may be weaker than its parent. A replaced root keeps or raises
 * the value; if rounding leaves it equal, the newcomer is either a larger item (weaker still: it
 * stays the root) or a smaller one (stronger: it sinks), so sifting down is enough. */
static void board_add(const pop *p, board *b, long at, uint32_t item, double term) {
    uint32_t pos;
    if (at >= 0) {
        pos = (uint32_t)at;
        b->v[pos] = sat(b->v[pos] + term);
    } else if (b->n < b->cap) {
        pos = b->n++;
        b->v[pos] = sat(term);
        b->item[pos] = item;
        index_insert(p, b, item, pos);
        sift_up(p, b, pos);
        return;
    } else {
        /* Full: the root is the lowest (the largest item among equal lowest values). The
         * newcomer takes its place and its value. */
        pos = 0;
        index_delete(p, b, bget(p, b, pos));
        b->v[pos] = sat(b->v[pos] + term);
        b->item[pos] = item;
        index_insert(p, b, item, pos);
    }
    sift_down(p, b, pos);
}

/* Removes the entry at pos: the last entry fills the hole and moves up or down from there. */
static void board_remove(const pop *p, board *b, uint32_t pos) {
    index_delete(p, b, bget(p, b, pos));
    uint32_t last = --b->n;
    if (pos == last) return;
    place(p, b, pos, b->v[last], b->item[last], bget(p, b, last));
    if (pos > 0 && weaker(b->v[pos], b->item[pos], b->v[(pos - 1) / 2], b->item[(pos - 1) / 2]))
        sift_up(p, b, pos);
    else
        sift_down(p, b, pos);
}

/* Multiplies every value of the kind by 2^-((t - epoch) / half-life) and makes t the epoch.
 * Rounding is monotonic, so no parent becomes larger than its child, but values may become equal
 * (underflow to 0) with the parent the smaller item, hence the O(n) bottom-up heap rebuild. */
static void rescale(pop *p, pop_kind kind, double t) {
    double f = exp2(-(t - p->epoch[kind]) / p->o.half_life_ms[kind]);
    p->epoch[kind] = t;
    for (size_t g = (size_t)kind; g < p->nb; g += POP_NKINDS) {
        board *b = p->b[g];
        if (!b) continue;
        for (uint32_t i = 0; i < b->n; i++)
            b->v[i] *= f;
        for (uint32_t i = b->n / 2; i-- > 0;)
            sift_down(p, b, i);
    }
}

/* ---- API ---- */

int pop_add(pop *p, uint32_t group, uint32_t item, double w, int64_t t_ms) {
    if (group >= p->o.max_groups || item == UINT32_MAX || !isfinite(w) || !(w > 0))
        return POP_INVALID;
    size_t base = (size_t)group * POP_NKINDS, old = p->nb;
    if (vec_reserve((void **)&p->b, &p->nb, base + POP_NKINDS, sizeof *p->b)) return POP_NOMEM;
    if (p->nb > old) {
        memset(p->b + old, 0, (p->nb - old) * sizeof *p->b);
        p->bytes += (p->nb - old) * sizeof *p->b;
    }
    /* Every allocation before any write, so NOMEM leaves the scores as they were. A new group's
     * boards come together or not at all. */
    uint32_t lim = limit(p, group);
    if (!p->b[base]) {
        board *b0 = board_make(p, NULL, lim < 4 ? lim : 4);
        board *b1 = b0 ? board_make(p, NULL, lim < 4 ? lim : 4) : NULL;
        if (!b1) {
            if (b0) p->bytes -= board_alloc_bytes(p, b0->cap, b0->mask);
            free(b0);
            return POP_NOMEM;
        }
        p->b[base] = b0;
        p->b[base + 1] = b1;
        p->groups++;
    }
    long at[POP_NKINDS];
    for (int k = 0; k < POP_NKINDS; k++) {
        at[k] = find(p, p->b[base + k], item);
        if (at[k] < 0 && board_room(p, &p->b[base + k], lim)) return POP_NOMEM;
    }
    double t = (double)t_ms;
    if (!p->started) {
        p->epoch[POP_POPULAR] = p->epoch[POP_TRENDING] = t;
        p->started = true;
    }
    for (int k = 0; k < POP_NKINDS; k++) {
        if (t != p->memo_t[k]) {
            double x = (t - p->epoch[k]) / p->o.half_life_ms[k];
            if (x > RESCALE_EXP) {
                rescale(p, (pop_kind)k, t);
                x = 0;
            }
            p->memo_t[k] = t;
            p->memo_f[k] = exp2(x);
        }
        board_add(p, p->b[base + k], at[k], item, sat(w * p->memo_f[k]));
    }
    return POP_OK;
}

static const board *get_board(const pop *p, uint32_t group, pop_kind kind) {
    if ((unsigned)kind >= POP_NKINDS) return NULL;
    size_t i = (size_t)group * POP_NKINDS + (size_t)kind;
    return i < p->nb ? p->b[i] : NULL;
}

/* What a stored value of kind is multiplied by to give its score at now_ms. */
static double decay(const pop *p, pop_kind kind, int64_t now_ms) {
    return exp2(-((double)now_ms - p->epoch[kind]) / p->o.half_life_ms[kind]);
}

static double score_of(double v, double f) {
    if (v == 0) return 0; /* not 0 * inf far before the epoch */
    return sat(v * f);
}

/* The selection heap of pop_top(): out[0, m) as a min-heap under the ranking order, each score
 * still the stored value. Puts (v, item) at pos (a hole) and sifts it down. */
static void sel_down(pop_item *out, size_t m, size_t pos, double v, uint32_t item) {
    for (;;) {
        size_t c = 2 * pos + 1;
        if (c >= m) break;
        if (c + 1 < m && weaker(out[c + 1].score, out[c + 1].item, out[c].score, out[c].item)) c++;
        if (!weaker(out[c].score, out[c].item, v, item)) break;
        out[pos] = out[c];
        pos = c;
    }
    out[pos] = (pop_item){item, v};
}

static void sel_up(pop_item *out, size_t pos, double v, uint32_t item) {
    while (pos > 0) {
        size_t up = (pos - 1) / 2;
        if (!weaker(v, item, out[up].score, out[up].item)) break;
        out[pos] = out[up];
        pos = up;
    }
    out[pos] = (pop_item){item, v};
}

/* Selects in out itself, so it needs no memory: a min-heap of the best m <= k entries seen, whose
 * root is the one to beat. The scan runs from the board's leaves back to its root: the board's
 * strong entries sit mostly in its second half, so the threshold rises early and most of the rest
 * is rejected by one comparison. Then a heap sort puts the weakest last. */
size_t pop_top(const pop *p, uint32_t group, pop_kind kind, int64_t now_ms, size_t k,
               pop_item *out) {
    const board *b = get_board(p, group, kind);
    if (!b || k == 0) return 0;
    size_t m = 0;
    uint32_t i = b->n;
    while (m < k && i > 0) {
        i--;
        sel_up(out, m++, b->v[i], b->item[i]);
    }
    /* Blocks of 8 whose largest value is under the one to beat are skipped whole, after a max
     * tree without branches: once the threshold has risen that is most blocks, and the scan costs
     * about a third of testing every entry. */
    for (; i >= 8; i -= 8) {
        const double *v = b->v + i - 8;
        double m01 = v[0] > v[1] ? v[0] : v[1], m23 = v[2] > v[3] ? v[2] : v[3];
        double m45 = v[4] > v[5] ? v[4] : v[5], m67 = v[6] > v[7] ? v[6] : v[7];
        double m03 = m01 > m23 ? m01 : m23, m47 = m45 > m67 ? m45 : m67;
        if ((m03 > m47 ? m03 : m47) < out[0].score) continue;
        for (uint32_t j = i; j-- > i - 8;)
            if (beats(b->v[j], b->item[j], out[0].score, out[0].item))
                sel_down(out, m, 0, b->v[j], b->item[j]);
    }
    while (i-- > 0)
        if (beats(b->v[i], b->item[i], out[0].score, out[0].item))
            sel_down(out, m, 0, b->v[i], b->item[i]);
    for (size_t end = m; end > 1; end--) {
        pop_item weakest = out[0];
        sel_down(out, end - 1, 0, out[end - 1].score, out[end - 1].item);
        out[end - 1] = weakest;
    }
    double f = decay(p, kind, now_ms);
    for (size_t r = 0; r < m; r++)
        out[r].score = score_of(out[r].score, f);
    return m;
}

double pop_score(const pop *p, uint32_t group, uint32_t item, pop_kind kind, int64_t now_ms) {
    const board *b = get_board(p, group, kind);
    long at = b ? find(p, b, item) : -1;
    return at < 0 ? 0 : score_of(b->v[at], decay(p, kind, now_ms));
}

long pop_rank(const pop *p, uint32_t group, uint32_t item, pop_kind kind) {
    const board *b = get_board(p, group, kind);
    long at = b ? find(p, b, item) : -1;
    if (at < 0) return -1;
    double v = b->v[at];
    long rank = 0;
    for (uint32_t i = 0; i < b->n; i++)
        rank += beats(b->v[i], b->item[i], v, item);
    return rank;
}

void pop_forget(pop *p, uint32_t item) {
    for (size_t i = 0; i < p->nb; i++) {
        board *b = p->b[i];
        long at = b ? find(p, b, item) : -1;
        if (at >= 0) board_remove(p, b, (uint32_t)at);
    }
}

size_t pop_groups(const pop *p) {
    return p->groups;
}

size_t pop_bytes(const pop *p) {
    return p->bytes;
}
