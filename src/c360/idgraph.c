#include "c360/idgraph.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/timefmt.h"
#include "util/vec.h"

/* Identifier values live in chunks of VALUE_CHUNK bytes, not one malloc each (an allocation's
 * header was a third of a value's cost), and a node names its value by a 32-bit reference,
 * chunk << VALUE_CHUNK_BITS | offset, instead of a pointer: 65,536 chunks hold 4 GiB of values. */
#define VALUE_CHUNK_BITS 16
#define VALUE_CHUNK (1u << VALUE_CHUNK_BITS)
#define VALUE_NONE UINT32_MAX

/* A node: 16 bytes. Erased nodes keep their index (merge records refer to nodes by index) with
 * value VALUE_NONE. Nodes are only ever appended, in log order, so a lower index is an older
 * identifier. */
typedef struct node {
    uint32_t value; /* a reference into the value chunks, or VALUE_NONE when erased */
    uint32_t slot;
    uint32_t next; /* hash chain */
    uint8_t type;
} node;

/* 16 bytes: the link's id (the event's seq, and k, the identifier's place in the event, below
 * IDG_MAX_IDENTS) packed in one word. */
typedef struct edge {
    uint32_t a, b; /* a: the event's anchor */
    int64_t seqk;  /* seq << 4 | k */
} edge;

static int64_t edge_seq(const edge *e) {
    return e->seqk >> 4;
}
static uint32_t edge_k(const edge *e) {
    return (uint32_t)(e->seqk & 15);
}

typedef struct merge_rec {
    int64_t seq, ts_ms;
    int64_t from_id;
    uint32_t a, b;
    char cause[48];
} merge_rec;

typedef struct refusal {
    int64_t seq;
    int64_t slot_id, other_id; /* other_id 0: a new identifier */
    uint8_t type, other_type;
    char *value, *other_value;
    const char *reason; /* static */
} refusal;

/* What few customers have: the merges recorded into them and the customers split from them. Kept
 * apart from the slot, which every customer has. */
typedef struct slot_past {
    merge_rec *merges;
    uint32_t nmerges, amerges;
    int64_t *never; /* ids of customers split from this one: never merged again */
    uint32_t nnever, anever;
} slot_past;

enum { SLOT_LIVE, SLOT_MERGED, SLOT_ERASED };

/* 56 bytes: there is one per customer ever seen, so counts are 32-bit. */
typedef struct slot {
    int64_t id;
    uint32_t *nodes;
    uint32_t nnodes, anodes;
    edge *edges;
    uint32_t nedges, aedges;
    struct slot_past *past; /* NULL until the first merge into it or split from it */
    uint32_t merged_into;
    uint8_t state;
} slot;

_Static_assert(sizeof(node) == 16, "a node is 16 bytes: there are several per customer");
_Static_assert(sizeof(void *) != 8 || sizeof(slot) == 56, "a slot is 56 bytes on 64-bit machines");

struct idg {
    idg_opts opts;
    node *nodes;
    size_t nnodes, anodes;
    uint32_t *buckets; /* chain heads, IDG_NONE for empty */
    size_t nbuckets;
    slot *slots;
    size_t nslots, aslots, live;
    /* slot ids -> slot: open addressing on id */
    uint32_t *ids;
    size_t nids_cap, nids;
    refusal refusals[IDG_MAX_REFUSALS];
    size_t nrefusals; /* total ever; the ring holds the last IDG_MAX_REFUSALS */
    size_t value_bytes;
    char **chunks; /* VALUE_CHUNK bytes each; an erased value is wiped in place */
    uint32_t nchunks, achunks, chunk_used;
};

/* A node's value, NULL when erased. */
static char *node_value(const idg *g, const node *n) {
    if (n->value == VALUE_NONE) return NULL;
    return g->chunks[n->value >> VALUE_CHUNK_BITS] + (n->value & (VALUE_CHUNK - 1));
}

/* ---- Hashing nodes ---- */

static uint64_t node_hash(int type, const char *value) {
    uint64_t h = hash64(value, strlen(value));
    return h ^ ((uint64_t)type * 0x9E3779B97F4A7C15ull);
}

uint64_t idg_hash(int type, const char *value) {
    return node_hash(type, value);
}

void idg_prefetch(const idg *g, uint64_t hash, int stage) {
    if (!g->nbuckets) return;
    const uint32_t *b = &g->buckets[hash & (g->nbuckets - 1)];
    if (stage == 0) {
        __builtin_prefetch(b);
        return;
    }
    if (*b == IDG_NONE) return;
    const node *n = &g->nodes[*b];
    if (stage == 1)
        __builtin_prefetch(n);
    else if (n->value != VALUE_NONE)
        __builtin_prefetch(node_value(g, n));
}

static uint32_t find_node(const idg *g, int type, const char *value) {
    if (!g->nbuckets) return IDG_NONE;
    uint32_t i = g->buckets[node_hash(type, value) & (g->nbuckets - 1)];
    while (i != IDG_NONE) {
        const node *n = &g->nodes[i];
        const char *v = node_value(g, n);
        if (n->type == type && v && strcmp(v, value) == 0) return i;
        i = n->next;
    }
    return IDG_NONE;
}

static int grow_buckets(idg *g) {
    size_t nb = g->nbuckets ? g->nbuckets * 2 : 1024;
    uint32_t *b = malloc(nb * sizeof *b);
    if (!b) return -1;
    memset(b, 0xff, nb * sizeof *b);
    for (size_t i = 0; i < g->nnodes; i++) {
        node *n = &g->nodes[i];
        const char *v = node_value(g, n);
        if (!v) continue;
        size_t h = node_hash(n->type, v) & (nb - 1);
        n->next = b[h];
        b[h] = (uint32_t)i;
    }
    free(g->buckets);
    g->buckets = b;
    g->nbuckets = nb;
    return 0;
}

/* Copies value into the chunks; returns its reference, or VALUE_NONE when memory runs out. */
static uint32_t copy_value(idg *g, const char *value) {
    size_t n = strlen(value) + 1;
    if (n >= VALUE_CHUNK) return VALUE_NONE;
    /* A value never takes a chunk's last byte, so no reference equals VALUE_NONE. */
    if (!g->nchunks || g->chunk_used + n >= VALUE_CHUNK) {
        if (g->nchunks == 1u << (32 - VALUE_CHUNK_BITS)) return VALUE_NONE;
        if (vec_reserve_small32((void **)&g->chunks, &g->achunks, g->nchunks + 1,
                                sizeof *g->chunks))
            return VALUE_NONE;
        if (!(g->chunks[g->nchunks] = malloc(VALUE_CHUNK))) return VALUE_NONE;
        g->nchunks++;
        g->chunk_used = 0;
    }
    uint32_t ref = (g->nchunks - 1) << VALUE_CHUNK_BITS | g->chunk_used;
    memcpy(g->chunks[g->nchunks - 1] + g->chunk_used, value, n);
    g->chunk_used += (uint32_t)n;
    return ref;
}

static uint32_t add_node(idg *g, int type, const char *value, uint32_t s) {
    if (g->nnodes + 1 > g->nbuckets && grow_buckets(g)) return IDG_NONE;
    if (g->nnodes >= UINT32_MAX - 1 ||
        vec_reserve((void **)&g->nodes, &g->anodes, g->nnodes + 1, sizeof *g->nodes))
        return IDG_NONE;
    slot *sl = &g->slots[s];
    if (vec_reserve_small32((void **)&sl->nodes, &sl->anodes, sl->nnodes + 1, sizeof *sl->nodes))
        return IDG_NONE;
    uint32_t copy = copy_value(g, value);
    if (copy == VALUE_NONE) return IDG_NONE;
    uint32_t i = (uint32_t)g->nnodes++;
    size_t h = node_hash(type, value) & (g->nbuckets - 1);
    g->nodes[i] = (node){copy, s, g->buckets[h], (uint8_t)type};
    g->buckets[h] = i;
    sl->nodes[sl->nnodes++] = i;
    g->value_bytes += strlen(value) + 1;
    return i;
}

/* ---- Slot ids ---- */

static uint64_t id_hash(int64_t id) {
    return (uint64_t)id * 0x9E3779B97F4A7C15ull;
}

static int put_id(idg *g, int64_t id, uint32_t s) {
    if ((g->nids + 1) * 4 > g->nids_cap * 3) {
        size_t cap = g->nids_cap ? g->nids_cap * 2 : 1024;
        uint32_t *t = malloc(cap * sizeof *t);
        if (!t) return -1;
        memset(t, 0xff, cap * sizeof *t);
        for (size_t i = 0; i < g->nids_cap; i++) {
            uint32_t v = g->ids[i];
            if (v == IDG_NONE) continue;
            size_t h = id_hash(g->slots[v].id) & (cap - 1);
            while (t[h] != IDG_NONE)
                h = (h + 1) & (cap - 1);
            t[h] = v;
        }
        free(g->ids);
        g->ids = t;
        g->nids_cap = cap;
    }
    size_t h = id_hash(id) & (g->nids_cap - 1);
    while (g->ids[h] != IDG_NONE)
        h = (h + 1) & (g->nids_cap - 1);
    g->ids[h] = s;
    g->nids++;
    return 0;
}

static uint32_t new_slot(idg *g, int64_t id) {
    if (g->nslots >= UINT32_MAX - 1 ||
        vec_reserve((void **)&g->slots, &g->aslots, g->nslots + 1, sizeof *g->slots))
        return IDG_NONE;
    uint32_t s = (uint32_t)g->nslots;
    g->slots[s] = (slot){.id = id, .merged_into = IDG_NONE, .state = SLOT_LIVE};
    if (put_id(g, id, s)) return IDG_NONE;
    g->nslots++;
    g->live++;
    return s;
}

uint32_t idg_slot_by_id(const idg *g, int64_t id) {
    if (!g->nids_cap) return IDG_NONE;
    size_t h = id_hash(id) & (g->nids_cap - 1);
    for (uint32_t v; (v = g->ids[h]) != IDG_NONE; h = (h + 1) & (g->nids_cap - 1)) {
        if (g->slots[v].id != id) continue;
        while (g->slots[v].state == SLOT_MERGED)
            v = g->slots[v].merged_into;
        return g->slots[v].state == SLOT_LIVE ? v : IDG_NONE;
    }
    return IDG_NONE;
}

int64_t idg_slot_id(const idg *g, uint32_t s) {
    return g->slots[s].id;
}
bool idg_slot_live(const idg *g, uint32_t s) {
    return s < g->nslots && g->slots[s].state == SLOT_LIVE;
}
size_t idg_slots(const idg *g) {
    return g->nslots;
}
size_t idg_live(const idg *g) {
    return g->live;
}
size_t idg_nodes(const idg *g) {
    return g->nnodes;
}

/* ---- Customers kept apart by an unmerge ---- */

static slot_past *past_make(slot *s) {
    if (!s->past) s->past = calloc(1, sizeof *s->past);
    return s->past;
}

static void past_free(slot_past *p) {
    if (!p) return;
    free(p->merges);
    free(p->never);
    free(p);
}

static bool kept_apart(const idg *g, uint32_t a, uint32_t b) {
    const slot_past *x = g->slots[a].past;
    for (size_t i = 0; x && i < x->nnever; i++)
        if (idg_slot_by_id(g, x->never[i]) == b) return true;
    return false;
}

static int add_never(slot *s, int64_t id) {
    slot_past *p = past_make(s);
    if (!p || vec_reserve_small32((void **)&p->never, &p->anever, p->nnever + 1, sizeof *p->never))
        return -1;
    p->never[p->nnever++] = id;
    return 0;
}

/* Appends b's past to a's and frees it. */
static int past_move(slot *a, slot *b) {
    slot_past *x = b->past, *y = a->past;
    if (!x) return 0;
    if (!y) {
        a->past = x;
        b->past = NULL;
        return 0;
    }
    if (vec_reserve_small32((void **)&y->merges, &y->amerges, y->nmerges + x->nmerges,
                            sizeof *y->merges) ||
        vec_reserve_small32((void **)&y->never, &y->anever, y->nnever + x->nnever,
                            sizeof *y->never))
        return -1;
    if (x->nmerges) memcpy(y->merges + y->nmerges, x->merges, x->nmerges * sizeof *x->merges);
    y->nmerges += x->nmerges;
    if (x->nnever) memcpy(y->never + y->nnever, x->never, x->nnever * sizeof *x->never);
    y->nnever += x->nnever;
    past_free(x);
    b->past = NULL;
    return 0;
}

/* ---- Limits ---- */

static void count_types(const idg *g, const slot *s, uint32_t counts[IDG_MAX_TYPES]) {
    for (size_t i = 0; i < s->nnodes; i++)
        counts[g->nodes[s->nodes[i]].type]++;
}

static bool can_add(const idg *g, uint32_t s, int type) {
    uint32_t counts[IDG_MAX_TYPES] = {0};
    count_types(g, &g->slots[s], counts);
    return counts[type] + 1 <= g->opts.limits[type];
}

/* The first type over its limit if a and b became one, or -1 when they may. */
static int merge_violation(const idg *g, uint32_t a, uint32_t b) {
    uint32_t counts[IDG_MAX_TYPES] = {0};
    count_types(g, &g->slots[a], counts);
    count_types(g, &g->slots[b], counts);
    for (size_t t = 0; t < g->opts.ntypes; t++)
        if (counts[t] > g->opts.limits[t]) return (int)t;
    return -1;
}

static void refuse(idg *g, int64_t seq, uint32_t s, uint32_t other_slot, const idg_ident *x,
                   uint32_t anchor, const char *reason) {
    refusal *r = &g->refusals[g->nrefusals % IDG_MAX_REFUSALS];
    if (g->nrefusals >= IDG_MAX_REFUSALS) {
        free(r->value);
        free(r->other_value);
    }
    const node *an = &g->nodes[anchor];
    *r = (refusal){
        .seq = seq,
        .slot_id = g->slots[s].id,
        .other_id = other_slot == IDG_NONE ? 0 : g->slots[other_slot].id,
        .type = an->type,
        .other_type = (uint8_t)x->type,
        .value = node_value(g, an) ? strdup(node_value(g, an)) : NULL,
        .other_value = strdup(x->value),
        .reason = reason,
    };
    g->nrefusals++;
}

/* ---- Resolution ---- */

static int add_edge(idg *g, uint32_t s, uint32_t a, uint32_t b, int64_t seq, uint32_t k) {
    slot *sl = &g->slots[s];
    if (vec_reserve_small32((void **)&sl->edges, &sl->aedges, sl->nedges + 1, sizeof *sl->edges))
        return -1;
    sl->edges[sl->nedges++] = (edge){a, b, seq << 4 | (int64_t)k};
    return 0;
}

/* Moves everything of slot from into slot into. */
static int merge_slots(idg *g, uint32_t into, uint32_t from) {
    slot *a = &g->slots[into], *b = &g->slots[from];
    if (vec_reserve_small32((void **)&a->nodes, &a->anodes, a->nnodes + b->nnodes,
                            sizeof *a->nodes) ||
        vec_reserve_small32((void **)&a->edges, &a->aedges, a->nedges + b->nedges,
                            sizeof *a->edges) ||
        past_move(a, b))
        return -1;
    for (size_t i = 0; i < b->nnodes; i++) {
        g->nodes[b->nodes[i]].slot = into;
        a->nodes[a->nnodes++] = b->nodes[i];
    }
    if (b->nedges) memcpy(a->edges + a->nedges, b->edges, b->nedges * sizeof *b->edges);
    a->nedges += b->nedges;
    free(b->nodes);
    free(b->edges);
    *b = (slot){.id = b->id, .merged_into = into, .state = SLOT_MERGED};
    g->live--;
    return 0;
}

static int record_merge(idg *g, uint32_t into, int64_t from_id, uint32_t a, uint32_t b, int64_t seq,
                        int64_t ts, const char *cause, const char *detail) {
    slot_past *p = past_make(&g->slots[into]);
    if (!p ||
        vec_reserve_small32((void **)&p->merges, &p->amerges, p->nmerges + 1, sizeof *p->merges))
        return -1;
    merge_rec *m = &p->merges[p->nmerges++];
    *m = (merge_rec){.seq = seq, .ts_ms = ts, .from_id = from_id, .a = a, .b = b};
    snprintf(m->cause, sizeof m->cause, "%s%s%.32s", cause ? cause : "", detail ? ":" : "",
             detail ? detail : "");
    return 0;
}

int idg_resolve(idg *g, const idg_ident *ids, size_t n, int64_t seq, int64_t ts_ms,
                const char *cause, const char *detail, idg_result *out) {
    memset(out, 0, sizeof *out);
    out->slot = IDG_NONE;
    if (n == 0) return 0;
    if (n > IDG_MAX_IDENTS) n = IDG_MAX_IDENTS;
    uint32_t nodes[IDG_MAX_IDENTS];
    for (size_t i = 0; i < n; i++)
        nodes[i] = find_node(g, ids[i].type, ids[i].value);

    uint32_t t = IDG_NONE;
    uint32_t anchor = nodes[0];
    if (anchor != IDG_NONE) {
        t = g->nodes[anchor].slot;
    } else {
        size_t via = 0;
        for (size_t i = 1; i < n && t == IDG_NONE; i++)
            if (nodes[i] != IDG_NONE && can_add(g, g->nodes[nodes[i]].slot, ids[0].type)) {
                t = g->nodes[nodes[i]].slot;
                via = i;
            }
        if (t == IDG_NONE) {
            if ((t = new_slot(g, seq)) == IDG_NONE) return -1;
            out->created = true;
        }
        if ((anchor = add_node(g, ids[0].type, ids[0].value, t)) == IDG_NONE) return -1;
        if (via && add_edge(g, t, anchor, nodes[via], seq, (uint32_t)via)) return -1;
    }

    for (size_t i = 1; i < n; i++) {
        uint32_t x = nodes[i];
        if (x == IDG_NONE) {
            if (!can_add(g, t, ids[i].type)) {
                refuse(g, seq, t, IDG_NONE, &ids[i], anchor, "limit");
                out->refused++;
                continue;
            }
            if ((x = add_node(g, ids[i].type, ids[i].value, t)) == IDG_NONE ||
                add_edge(g, t, anchor, x, seq, (uint32_t)i))
                return -1;
            continue;
        }
        uint32_t q = g->nodes[x].slot;
        if (q == t) continue;
        if (kept_apart(g, t, q)) {
            refuse(g, seq, t, q, &ids[i], anchor, "unmerged");
            out->refused++;
            continue;
        }
        if (merge_violation(g, t, q) >= 0) {
            refuse(g, seq, t, q, &ids[i], anchor, "limit");
            out->refused++;
            continue;
        }
        /* The older customer keeps its id. */
        uint32_t into = g->slots[t].id < g->slots[q].id ? t : q, from = into == t ? q : t;
        int64_t from_id = g->slots[from].id;
        if (merge_slots(g, into, from) || add_edge(g, into, anchor, x, seq, (uint32_t)i) ||
            record_merge(g, into, from_id, anchor, x, seq, ts_ms, cause, detail))
            return -1;
        if (out->nmerged < IDG_MAX_IDENTS)
            out->merged[out->nmerged++] = (idg_merge_pair){from, into};
        t = into;
    }
    out->slot = t;
    return 0;
}

uint32_t idg_lookup(const idg *g, int type, const char *value) {
    uint32_t n = find_node(g, type, value);
    return n == IDG_NONE ? IDG_NONE : g->nodes[n].slot;
}

/* ---- Unmerge ---- */

/* Links form a tree over a customer's identifiers (an identifier is linked once, by the event that
 * first tied it in; later events between identifiers already together add nothing), so cutting a
 * link always splits the customer in two. side[i] is set for the nodes (by position in the slot's
 * list) reachable from start without crossing the cut edge. */
static void reach(const slot *s, size_t start, size_t cut, uint8_t *side, size_t *queue) {
    size_t head = 0, tail = 0;
    side[start] = 1;
    queue[tail++] = start;
    while (head < tail) {
        uint32_t v = s->nodes[queue[head++]];
        for (size_t e = 0; e < s->nedges; e++) {
            const edge *ed = &s->edges[e];
            if (e == cut) continue;
            uint32_t w = ed->a == v ? ed->b : ed->b == v ? ed->a : IDG_NONE;
            if (w == IDG_NONE) continue;
            for (size_t j = 0; j < s->nnodes; j++) {
                if (s->nodes[j] != w || side[j]) continue;
                side[j] = 1;
                queue[tail++] = j;
            }
        }
    }
}

static size_t node_pos(const slot *s, uint32_t v) {
    for (size_t i = 0; i < s->nnodes; i++)
        if (s->nodes[i] == v) return i;
    return 0;
}

idg_unmerge_rc idg_unmerge(idg *g, uint32_t sidx, int64_t link_seq, int link_k, int64_t seq,
                           uint32_t *new_slot_out) {
    slot *s = &g->slots[sidx];
    size_t cut = SIZE_MAX;
    for (size_t e = 0; e < s->nedges; e++)
        if (edge_seq(&s->edges[e]) == link_seq && edge_k(&s->edges[e]) == (uint32_t)link_k) cut = e;
    if (cut == SIZE_MAX) return IDG_UNMERGE_NO_LINK;
    size_t n = s->nnodes;
    uint8_t *side = calloc(n, 1);
    size_t *queue = malloc(n * sizeof *queue);
    idg_unmerge_rc rc = IDG_UNMERGE_NOMEM;
    if (!side || !queue) goto out;
    reach(s, node_pos(s, s->edges[cut].a), cut, side, queue);
    /* The side holding the oldest identifier keeps the slot. */
    size_t oldest = 0;
    for (size_t i = 1; i < n; i++)
        if (s->nodes[i] < s->nodes[oldest]) oldest = i;
    uint8_t keep = side[oldest];
    uint32_t ns = new_slot(g, seq);
    if (ns == IDG_NONE) goto out;
    s = &g->slots[sidx]; /* new_slot may have moved the array */
    slot *t = &g->slots[ns];
    if (add_never(s, t->id) || add_never(t, s->id)) goto out;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = s->nodes[i];
        if (side[i] == keep) {
            s->nodes[kept++] = v;
            continue;
        }
        if (vec_reserve_small32((void **)&t->nodes, &t->anodes, t->nnodes + 1, sizeof *t->nodes))
            goto out;
        t->nodes[t->nnodes++] = v;
        g->nodes[v].slot = ns;
    }
    s->nnodes = kept;
    size_t ke = 0;
    for (size_t e = 0; e < s->nedges; e++) {
        edge ed = s->edges[e];
        if (e == cut) continue;
        if (g->nodes[ed.a].slot == sidx) {
            s->edges[ke++] = ed;
            continue;
        }
        if (vec_reserve_small32((void **)&t->edges, &t->aedges, t->nedges + 1, sizeof *t->edges))
            goto out;
        t->edges[t->nedges++] = ed;
    }
    s->nedges = ke;
    *new_slot_out = ns;
    rc = IDG_UNMERGE_OK;
out:
    free(side);
    free(queue);
    return rc;
}

/* ---- Erasure ---- */

static void unlink_node(idg *g, uint32_t v) {
    node *n = &g->nodes[v];
    char *value = node_value(g, n);
    uint32_t *at = &g->buckets[node_hash(n->type, value) & (g->nbuckets - 1)];
    while (*at != v)
        at = &g->nodes[*at].next;
    *at = n->next;
    size_t len = strlen(value);
    g->value_bytes -= len + 1;
    memset(value, 0, len); /* erased: not even in memory */
    n->value = VALUE_NONE;
}

void idg_erase(idg *g, uint32_t sidx) {
    slot *s = &g->slots[sidx];
    if (s->state != SLOT_LIVE) return;
    for (size_t i = 0; i < s->nnodes; i++)
        unlink_node(g, s->nodes[i]);
    free(s->nodes);
    free(s->edges);
    past_free(s->past);
    *s = (slot){.id = s->id, .merged_into = IDG_NONE, .state = SLOT_ERASED};
    g->live--;
    /* Refusals name identifiers: the erased customer's go too. */
    size_t n = g->nrefusals < IDG_MAX_REFUSALS ? g->nrefusals : IDG_MAX_REFUSALS;
    for (size_t i = 0; i < n; i++) {
        refusal *r = &g->refusals[i];
        if (r->slot_id != s->id && r->other_id != s->id) continue;
        free(r->value);
        free(r->other_value);
        r->value = r->other_value = NULL;
        r->reason = "erased";
    }
}

/* ---- JSON ---- */

void idg_each_ident(const idg *g, uint32_t sidx, void (*fn)(void *, int, const char *), void *arg) {
    const slot *s = &g->slots[sidx];
    for (size_t i = 0; i < s->nnodes; i++) {
        const node *n = &g->nodes[s->nodes[i]];
        const char *value = node_value(g, n);
        if (value) fn(arg, n->type, value);
    }
}

static const char *type_name(const idg *g, int t) {
    return (size_t)t < g->opts.ntypes && g->opts.type_names[t] ? g->opts.type_names[t] : "unknown";
}

static json_t *node_json(const idg *g, uint32_t v) {
    const node *n = &g->nodes[v];
    return json_pack("{s:s, s:s?}", "type", type_name(g, n->type), "value", node_value(g, n));
}

json_t *idg_identities_json(const idg *g, uint32_t sidx) {
    const slot *s = &g->slots[sidx];
    json_t *a = json_array();
    for (size_t i = 0; i < s->nnodes && a; i++)
        json_array_append_new(a, node_json(g, s->nodes[i]));
    return a;
}

json_t *idg_links_json(const idg *g, uint32_t sidx) {
    const slot *s = &g->slots[sidx];
    json_t *a = json_array();
    for (size_t i = 0; i < s->nedges && a; i++) {
        char id[32];
        idg_link_id(edge_seq(&s->edges[i]), (int)edge_k(&s->edges[i]), id);
        json_array_append_new(a, json_pack("{s:s, s:o, s:o, s:I}", "id", id, "from",
                                           node_json(g, s->edges[i].a), "to",
                                           node_json(g, s->edges[i].b), "seq",
                                           (json_int_t)edge_seq(&s->edges[i])));
    }
    return a;
}

json_t *idg_merges_json(const idg *g, uint32_t sidx) {
    const slot_past *p = g->slots[sidx].past;
    json_t *a = json_array();
    for (size_t i = 0; p && i < p->nmerges && a; i++) {
        const merge_rec *m = &p->merges[i];
        char at[TF_LEN], pid[32];
        snprintf(pid, sizeof pid, "p_%" PRId64, m->from_id);
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:I, s:o, s:o}", "merged_profile", pid,
                                           "at", tf_format(m->ts_ms, at), "cause", m->cause, "seq",
                                           (json_int_t)m->seq, "from", node_json(g, m->a), "to",
                                           node_json(g, m->b)));
    }
    return a;
}

json_t *idg_refusals_json(const idg *g, uint32_t sidx, size_t max) {
    json_t *a = json_array();
    size_t n = g->nrefusals < IDG_MAX_REFUSALS ? g->nrefusals : IDG_MAX_REFUSALS;
    int64_t want = sidx == IDG_NONE ? 0 : g->slots[sidx].id;
    for (size_t k = 0; k < n && a && json_array_size(a) < max; k++) {
        /* Newest first while collecting, reversed below. */
        const refusal *r = &g->refusals[(g->nrefusals - 1 - k) % IDG_MAX_REFUSALS];
        if (want && r->slot_id != want && r->other_id != want) continue;
        char p1[32], p2[32];
        snprintf(p1, sizeof p1, "p_%" PRId64, r->slot_id);
        snprintf(p2, sizeof p2, "p_%" PRId64, r->other_id);
        json_array_insert_new(
            a, 0,
            json_pack("{s:I, s:s, s:s?, s:{s:s, s:s?}, s:{s:s, s:s?}, s:s}", "seq",
                      (json_int_t)r->seq, "profile", p1, "other_profile", r->other_id ? p2 : NULL,
                      "from", "type", type_name(g, r->type), "value", r->value, "to", "type",
                      type_name(g, r->other_type), "value", r->other_value, "reason", r->reason));
    }
    return a;
}

size_t idg_refusal_count(const idg *g) {
    return g->nrefusals;
}

size_t idg_bytes(const idg *g) {
    size_t n = sizeof *g + g->anodes * sizeof(node) + g->nbuckets * sizeof(uint32_t) +
               g->aslots * sizeof(slot) + g->nids_cap * sizeof(uint32_t) + g->value_bytes;
    for (size_t i = 0; i < g->nslots; i++) {
        const slot *s = &g->slots[i];
        n += s->anodes * sizeof(uint32_t) + s->aedges * sizeof(edge);
        if (s->past)
            n += sizeof *s->past + s->past->amerges * sizeof(merge_rec) +
                 s->past->anever * sizeof(int64_t);
    }
    return n;
}

void idg_link_id(int64_t seq, int k, char out[32]) {
    snprintf(out, 32, "%" PRId64 ".%d", seq, k);
}

bool idg_link_parse(const char *s, int64_t *seq, int *k) {
    char *end;
    long long a = strtoll(s, &end, 10);
    if (end == s || *end != '.' || a <= 0) return false;
    const char *p = end + 1;
    long b = strtol(p, &end, 10);
    if (end == p || *end || b < 0 || b >= IDG_MAX_IDENTS) return false;
    *seq = a;
    *k = (int)b;
    return true;
}

/* ---- Life cycle ---- */

idg *idg_new(const idg_opts *opts) {
    idg *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->opts = *opts;
    return g;
}

void idg_free(idg *g) {
    if (!g) return;
    for (uint32_t i = 0; i < g->nchunks; i++)
        free(g->chunks[i]);
    free(g->chunks);
    for (size_t i = 0; i < g->nslots; i++) {
        free(g->slots[i].nodes);
        free(g->slots[i].edges);
        past_free(g->slots[i].past);
    }
    size_t n = g->nrefusals < IDG_MAX_REFUSALS ? g->nrefusals : IDG_MAX_REFUSALS;
    for (size_t i = 0; i < n; i++) {
        free(g->refusals[i].value);
        free(g->refusals[i].other_value);
    }
    free(g->nodes);
    free(g->buckets);
    free(g->slots);
    free(g->ids);
    free(g);
}
