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

/* A board: its items sorted by (v descending, item ascending), and an open-addressing index from
 * item to position. A slot stores position + 1 (0: empty) and the key is read from item[]; back[]
 * holds, per position, the slot that points at it, so an entry that shifts by one rewrites its
 * slot directly instead of probing for it (a climb past the near-equal entries at the bottom of a
 * space-saving board can be hundreds of shifts). Slots and back pointers are 16 bits when every
 * board limit is at most NARROW_MAX, else 32. Linear probing at a load of at most 2/3,
 * backward-shift deletion (no tombstones). Everything lives in one allocation: this header, then
 * v[cap], item[cap], back[cap], the slots. */
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
    bool started;             /* an epoch has been set */
    bool wide;                /* 32-bit slots and back pointers */
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

/* Ranking order: higher stored value first, then smaller item. */
static bool beats(double v, uint32_t item, double v2, uint32_t item2) {
    return v > v2 || (v == v2 && item < item2);
}

/* Points the slots of positions [lo, hi) at those positions again after the entries moved there
 * (their back pointers moved with them). The hot loop of a climb, hence one per slot width. */
static void repoint(const pop *p, board *b, uint32_t lo, uint32_t hi) {
    if (p->wide) {
        const uint32_t *back = b->back;
        uint32_t *slot = b->slot;
        for (uint32_t j = lo; j < hi; j++)
            slot[back[j]] = j + 1;
    } else {
        const uint16_t *back = b->back;
        uint16_t *slot = b->slot;
        for (uint32_t j = lo; j < hi; j++)
            slot[back[j]] = (uint16_t)(j + 1);
    }
}

/* The entry at pos has just gained value: moves it up past those it now beats. A binary search
 * finds its place (entries before pos are sorted and it beats a suffix of them), three memmoves
 * shift the others down by one, and repoint() fixes their slots. */
static void move_up(const pop *p, board *b, uint32_t pos) {
    double v = b->v[pos];
    uint32_t item = b->item[pos];
    if (pos == 0 || !beats(v, item, b->v[pos - 1], b->item[pos - 1])) return;
    uint32_t lo = 0, hi = pos - 1; /* the target is in [lo, hi] */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (beats(v, item, b->v[mid], b->item[mid]))
            hi = mid;
        else
            lo = mid + 1;
    }
    size_t w = p->wide ? sizeof(uint32_t) : sizeof(uint16_t), m = pos - lo;
    uint32_t mine = bget(p, b, pos);
    memmove(b->v + lo + 1, b->v + lo, m * sizeof *b->v);
    memmove(b->item + lo + 1, b->item + lo, m * sizeof *b->item);
    memmove((char *)b->back + (lo + 1) * w, (char *)b->back + lo * w, m * w);
    repoint(p, b, lo + 1, pos + 1);
    b->v[lo] = v;
    b->item[lo] = item;
    bset(p, b, lo, mine);
    sset(p, b, mine, lo + 1);
}

/* Adds the scaled term to item on b, whose position is at (-1: absent); board_room() has run. */
static void board_add(const pop *p, board *b, long at, uint32_t item, double term) {
    uint32_t pos;
    if (at >= 0) {
        pos = (uint32_t)at;
        b->v[pos] = fmin(b->v[pos] + term, DBL_MAX);
    } else if (b->n < b->cap) {
        pos = b->n++;
        b->v[pos] = fmin(term, DBL_MAX);
        b->item[pos] = item;
        index_insert(p, b, item, pos);
    } else {
        /* Full: the last entry is the lowest (the largest item among equal lowest values). The
         * newcomer takes its place and its value. */
        pos = b->n - 1;
        index_delete(p, b, bget(p, b, pos));
        b->v[pos] = fmin(b->v[pos] + term, DBL_MAX);
        b->item[pos] = item;
        index_insert(p, b, item, pos);
    }
    move_up(p, b, pos);
}

static void swap_entries(board *b, uint32_t i, uint32_t j) {
    double v = b->v[i];
    uint32_t it = b->item[i];
    b->v[i] = b->v[j];
    b->item[i] = b->item[j];
    b->v[j] = v;
    b->item[j] = it;
}

/* Restores the max-heap (by item) property below r in the heap of n entries at lo. */
static void sift(board *b, uint32_t lo, uint32_t r, uint32_t n) {
    for (;;) {
        uint32_t c = 2 * r + 1;
        if (c >= n) return;
        if (c + 1 < n && b->item[lo + c + 1] > b->item[lo + c]) c++;
        if (b->item[lo + r] >= b->item[lo + c]) return;
        swap_entries(b, lo + r, lo + c);
        r = c;
    }
}

/* Sorts entries [lo, hi) by item ascending in place: heap sort, O(m log m) and no memory. */
static void sort_items(board *b, uint32_t lo, uint32_t hi) {
    uint32_t m = hi - lo;
    for (uint32_t r = m / 2; r-- > 0;)
        sift(b, lo, r, m);
    for (uint32_t end = m; end > 1; end--) {
        swap_entries(b, lo, lo + end - 1);
        sift(b, lo, 0, end - 1);
    }
}

/* Multiplies every value of the kind by 2^-((t - epoch) / half-life) and makes t the epoch. The
 * order by value survives (rounding is monotonic), but values may become equal (underflow to 0):
 * such runs are put back in item order and the board reindexed. */
static void rescale(pop *p, pop_kind kind, double t) {
    double f = exp2(-(t - p->epoch[kind]) / p->o.half_life_ms[kind]);
    p->epoch[kind] = t;
    for (size_t g = (size_t)kind; g < p->nb; g += POP_NKINDS) {
        board *b = p->b[g];
        if (!b) continue;
        for (uint32_t i = 0; i < b->n; i++)
            b->v[i] *= f;
        bool moved = false;
        for (uint32_t lo = 0; lo < b->n;) {
            uint32_t hi = lo + 1;
            bool sorted = true;
            while (hi < b->n && b->v[hi] == b->v[lo]) {
                if (b->item[hi] < b->item[hi - 1]) sorted = false;
                hi++;
            }
            if (!sorted) {
                sort_items(b, lo, hi);
                moved = true;
            }
            lo = hi;
        }
        if (moved) index_rebuild(p, b);
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
        double x = (t - p->epoch[k]) / p->o.half_life_ms[k];
        if (x > RESCALE_EXP) {
            rescale(p, (pop_kind)k, t);
            x = 0;
        }
        board_add(p, p->b[base + k], at[k], item, fmin(w * exp2(x), DBL_MAX));
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
    return fmin(v * f, DBL_MAX);
}

size_t pop_top(const pop *p, uint32_t group, pop_kind kind, int64_t now_ms, size_t k,
               pop_item *out) {
    const board *b = get_board(p, group, kind);
    if (!b) return 0;
    size_t n = k < b->n ? k : b->n;
    double f = decay(p, kind, now_ms);
    for (size_t i = 0; i < n; i++)
        out[i] = (pop_item){b->item[i], score_of(b->v[i], f)};
    return n;
}

double pop_score(const pop *p, uint32_t group, uint32_t item, pop_kind kind, int64_t now_ms) {
    const board *b = get_board(p, group, kind);
    long at = b ? find(p, b, item) : -1;
    return at < 0 ? 0 : score_of(b->v[at], decay(p, kind, now_ms));
}

long pop_rank(const pop *p, uint32_t group, uint32_t item, pop_kind kind) {
    const board *b = get_board(p, group, kind);
    return b ? find(p, b, item) : -1;
}

/* Removes the entry at pos and closes the gap, keeping the order. */
static void board_remove(const pop *p, board *b, uint32_t pos) {
    index_delete(p, b, bget(p, b, pos));
    size_t w = p->wide ? sizeof(uint32_t) : sizeof(uint16_t), m = b->n - pos - 1;
    memmove(b->v + pos, b->v + pos + 1, m * sizeof *b->v);
    memmove(b->item + pos, b->item + pos + 1, m * sizeof *b->item);
    memmove((char *)b->back + pos * w, (char *)b->back + (pos + 1) * w, m * w);
    b->n--;
    repoint(p, b, pos, b->n);
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
