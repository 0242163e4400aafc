/* pop — what is popular and what is trending, overall and per group, learned incrementally.
 *
 * Every interaction adds a weight (the caller's: view 1, cart 3, purchase 5, say) to an item in a
 * group: group 0 is the whole shop; the caller numbers the others (a category, a customer segment,
 * "gender:f") with small dense ids. Two scores are kept per (group, item), each an exponentially
 * decayed sum: POP_POPULAR with a long half-life (weeks: what sells) and POP_TRENDING with a short
 * one (hours: what is rising now). A decayed sum is stored scaled to a fixed epoch, so an update
 * touches one entry and the order of a board never changes by the mere passing of time; when the
 * scale would overflow, everything is rescaled once (rare: every few hundred half-lives).
 *
 * Each group keeps, per kind, a leaderboard of at most `board` items ordered by score: a new item
 * at a full board replaces the lowest (space-saving: it inherits that score plus its weight), so
 * memory is bounded by groups * board * kinds entries whatever the traffic, and the heavy items of
 * every group are kept exactly. Group 0 may be given its own, larger, board. A board's order is
 * score descending, ties by smaller item first; "the lowest" is the last entry in that order
 * (among equal lowest scores, the largest item). The board is kept as a min-heap in that order,
 * the lowest at its root, so that an update costs O(log board) whatever it passes; reads pay
 * instead: pop_top() selects and sorts, pop_rank() counts.
 *
 * The decay is in base 2: a stored value v stands for v * 2^-((now - epoch) / half_life), so
 * scores are exact at whole half-lives; the epoch is the time of the first pop_add() and moves
 * (one O(entries) pass over the kind's boards) when an added term's factor would pass 2^512.
 * Values that still overflow (absurd weights) saturate at DBL_MAX, never infinity; a rescale that
 * underflows old values to 0 puts the ties it creates back in item order.
 *
 * Memory: per entry 8 bytes of value, 4 of item, 2 of back pointer and 2-byte index slots at a
 * load of 1/3 to 2/3 (4-byte pointers and slots for boards over 43,690 items), plus a 48-byte
 * header per board and 16 bytes per group id up to the largest used; boards grow by doubling from
 * 4 up to their limit. Measured: 18.6 bytes per entry with full boards of 2,000 and 200.
 *
 * Cost, measured on the project's 2-core build box (AMD EPYC, shared and noisy: best of 7 runs,
 * typical in brackets, gcc -O2), default options, 10M events over a month drawn Zipf(1) from 100k
 * items, each added to group 0 and to one of 5 groups (20M pop_add): 160 ns per pop_add (190).
 * The sorted array this heap replaced took 680 ns (740): 43% of adds replace a board's lowest
 * entry, and the newcomer, lowest + w, climbed past about 250 near-equal entries per kind.
 * Replaying a store of 620k events, pop now takes about 10% of the start-up CPU, down from 21%.
 * Reads pay for it: on group 0's board of 2,000, pop_top(k = 20) 1.8 us (2.5), pop_top(k = 90)
 * 5.8 us (8), pop_rank 1.8 us; on a board of 200, pop_top(k = 20) 0.6 us; the sorted array
 * answered 0.08, 0.35, 0.01 and 0.08 us. pop_score 16 ns either way.
 *
 * Items are the caller's dense 32-bit ids (catalogue ordinals); UINT32_MAX is reserved. Time is in
 * milliseconds and should not go backwards by much (an older event simply weighs less).
 *
 * Ownership: the structure owns its memory. Threads: one writer; readers may run concurrently with
 * each other, not with a writer. */
#ifndef ENGAGED_POP_H
#define ENGAGED_POP_H

#include <stddef.h>
#include <stdint.h>

enum { POP_OK = 0, POP_NOMEM = -1, POP_INVALID = -2 };

typedef enum pop_kind { POP_POPULAR, POP_TRENDING, POP_NKINDS } pop_kind;

typedef struct pop_opts {
    double half_life_ms[POP_NKINDS]; /* > 0; INFINITY: no decay (an all-time count) */
    uint32_t board;                  /* items kept per group and kind, >= 1 */
    uint32_t board_all;              /* the same for group 0; 0: as board */
    uint32_t max_groups;             /* group ids must be < max_groups */
} pop_opts;

/* 30 days and 1 day; 200 items per group, 2,000 for the whole shop; 1<<20 groups. */
void pop_opts_default(pop_opts *o);

typedef struct pop pop;

typedef struct pop_item {
    uint32_t item;
    double score; /* the decayed sum as of the now_ms asked about */
} pop_item;

/* NULL when out of memory or o is invalid. o is copied. Memory for a group is only allocated when
 * the group first receives a weight. */
pop *pop_new(const pop_opts *o);
void pop_free(pop *p); /* NULL is fine */

/* Adds w (> 0, finite) to item in group at t_ms, in both kinds. POP_INVALID (group out of range,
 * UINT32_MAX, bad weight: nothing changed) or POP_NOMEM (nothing changed). Cost: O(1) expected to
 * find the item plus O(log board) to keep the heap (an entry only ever gains, so it only moves
 * away from the root, a level per step; a new one on a board with room moves up from a leaf);
 * plus, every few hundred half-lives, the O(entries of the kind) rescale. One exp2() per kind,
 * skipped when t_ms is the previous add's. */
int pop_add(pop *p, uint32_t group, uint32_t item, double w, int64_t t_ms);

/* Up to k items of the group's board for kind, best first (ties: smaller item first), with their
 * scores as of now_ms; returns how many (0 for a group that never received anything, a group or
 * kind out of range, or k = 0). out needs room for min(k, board) items only and is the only
 * memory used. Cost: a selection over the whole board, O(board log k) worst case, typically
 * O(board + k log k log(board / k)); measured above. */
size_t pop_top(const pop *p, uint32_t group, pop_kind kind, int64_t now_ms, size_t k,
               pop_item *out);
/* The score of one item in a group as of now_ms, 0 when it is not on the board. O(1) expected. */
double pop_score(const pop *p, uint32_t group, uint32_t item, pop_kind kind, int64_t now_ms);
/* The item's rank on the board (0 = best), or -1 when absent (or group or kind out of range).
 * O(board): it counts the entries that beat the item. */
long pop_rank(const pop *p, uint32_t group, uint32_t item, pop_kind kind);
/* Removes an item from every board (an archived product is the caller's filter; this is for
 * tests and erasure of test data). The others keep their order and scores; boards keep their
 * memory. O(groups ever used + groups that hold it * log board). */
void pop_forget(pop *p, uint32_t item);

size_t pop_groups(const pop *p); /* groups that received something (forgetting does not undo it) */
size_t pop_bytes(const pop *p);  /* heap bytes held */

#endif
