/* expr — compiler and evaluator of the expression language (expr.h is the contract,
 * docs/expressions.md the language).
 *
 * Shape. The compiler is a recursive-descent parser that type-checks and emits code as it goes:
 * each parse function leaves the code for its operand on the program and returns the operand's
 * static type (a mask of the types it may have at run time). The program is postfix code for a
 * stack machine, so evaluation is one loop over a flat array with no recursion; `and` / `or`
 * compile to conditional jumps, which is how they short-circuit. The parser's own recursion is
 * bounded by EXPR_MAX_DEPTH: only parentheses, call arguments and unary operators recurse, and each
 * counts.
 *
 * Static types. A field may hold anything, so its mask has every bit; a literal has exactly one;
 * a function has the result its table row declares. An operator is a compile error only when no
 * pair of types its operands may have is in its row of the typing table (`rules`; the null that
 * fields, arithmetic and functions may give at run time does not count, see known()), so an
 * expression that compiles can work for some data, and one that cannot is refused with a position.
 * TM_TSTR marks a string that may read as an RFC 3339 time: a literal that parses as one, or any
 * string from data; it is what lets `"2024-01-01" < now()` compile and `"abc" < now()` fail.
 *
 * Memory. Compilation works in one heap parser (fixed-size arrays at the limits) and then copies
 * the exact program into one allocation. Evaluation keeps its stack on the C stack
 * (EXPR_MAX_PENDING values) and builds strings, when it must, in a scratch arena that is charged to
 * the cost budget byte by byte before it grows, so it can never hold more than the cost limit. */
#include "expr/expr.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/timefmt.h"
#include "util/utf8.h"

/* ---- Values and program ---- */

/* Static type masks. */
enum {
    TM_NULL = 1 << 0,
    TM_BOOL = 1 << 1,
    TM_NUM = 1 << 2,
    TM_STR = 1 << 3,
    TM_TSTR = 1 << 4, /* always together with TM_STR: a string that may read as a time */
    TM_TIME = 1 << 5,
    TM_LIST = 1 << 6,
    TM_OBJ = 1 << 7,
    TM_ANY = 0xff,
};

/* A run-time value: 24 bytes, copied by value on the evaluation stack. Strings and lists point
 * into the env's JSON, the compiled program, or the evaluation's scratch arena (tmp set). */
typedef struct val {
    uint8_t t;     /* expr_type */
    uint8_t jlist; /* EXPR_LIST: 1 when u.l.p is a JSON array, 0 when it points at literal vals */
    uint8_t tmp;   /* EXPR_STRING: the bytes live in the scratch arena */
    union {
        bool b;
        double n;
        int64_t ms;
        struct {
            const char *p;
            size_t len;
        } s;
        struct {
            const void *p;
            size_t len;
        } l;
        const json_t *obj;
    } u;
} val;

enum op {
    OP_CONST,  /* push consts[a] */
    OP_PATH,   /* push the value at paths[a] */
    OP_NOT,    /* replace top with !truthy(top) */
    OP_TOBOOL, /* replace top with truthy(top) */
    OP_NEG,    /* replace top with -top */
    OP_AND,    /* pop; if not truthy push false and jump to a */
    OP_OR,     /* pop; if truthy push true and jump to a */
    OP_EQ,     /* the binary operators pop two and push one */
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_CONTAINS,
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_MOD,
    OP_CALL, /* pop nargs arguments, push fns[a](arguments) */
};

typedef struct ins {
    uint8_t op;
    uint8_t nargs;
    uint32_t pos; /* source offset, for cost errors */
    uint32_t a;
} ins;

/* One step of a field path: an object key (NUL-terminated, in the pool) or an array index. */
typedef struct step {
    const char *key; /* NULL for an index */
    uint32_t index;
    uint32_t klen; /* bytes of key */
} step;

typedef struct path {
    uint16_t root;
    uint16_t nsteps;
    uint32_t first; /* into steps */
} path;

struct expr {
    size_t bytes;
    const ins *code;
    const val *consts;
    const path *paths;
    const step *steps;
    const char *src;
    size_t srclen;
    uint32_t ncode;
    uint32_t static_cost; /* instructions plus path steps past the first */
    uint16_t result_mask;
};

#define DAY_MS 86400000.0
#define T_MIN (-62135596800000LL) /* 0001-01-01T00:00:00.000Z */
#define T_MAX (253402300799999LL) /* 9999-12-31T23:59:59.999Z */
/* The longest RFC 3339 text tf_parse() accepts is 35 bytes (nine fractional digits and an offset);
 * a longer string is not a time, and is refused before it is scanned. */
#define TIME_TEXT_MAX 40

static val vnull(void) {
    val v = {.t = EXPR_NULL};
    return v;
}

static val vbool(bool b) {
    val v = {.t = EXPR_BOOL, .u.b = b};
    return v;
}

/* Numbers are always finite: arithmetic that overflows gives null instead. */
static val vnum(double n) {
    if (!isfinite(n)) return vnull();
    val v = {.t = EXPR_NUMBER, .u.n = n};
    return v;
}

/* Times are whole milliseconds within the years timefmt handles; anything else is null. */
static val vtime(double ms) {
    if (!(ms >= (double)T_MIN && ms <= (double)T_MAX)) return vnull();
    val v = {.t = EXPR_TIME, .u.ms = (int64_t)floor(ms + 0.5)};
    return v;
}

static val vstr(const char *p, size_t len, bool tmp) {
    val v = {.t = EXPR_STRING, .tmp = tmp, .u.s = {p, len}};
    return v;
}

/* Only the bool true is true. */
static bool truthy(const val *v) {
    return v->t == EXPR_BOOL && v->u.b;
}

static void set_bool(val *v, bool b) {
    v->t = EXPR_BOOL;
    v->u.b = b;
}

/* The value of a JSON value (NULL: null), written into *v field by field. */
static void from_json(const json_t *j, val *v) {
    if (!j) {
        v->t = EXPR_NULL;
        return;
    }
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        v->t = EXPR_OBJECT;
        v->u.obj = j;
        break;
    case JSON_ARRAY:
        v->t = EXPR_LIST;
        v->jlist = 1;
        v->u.l.p = j;
        v->u.l.len = json_array_size(j);
        break;
    case JSON_STRING:
        v->t = EXPR_STRING;
        v->tmp = 0;
        v->u.s.p = json_string_value(j);
        v->u.s.len = json_string_length(j);
        break;
    case JSON_INTEGER:
        v->t = EXPR_NUMBER;
        v->u.n = (double)json_integer_value(j);
        break;
    case JSON_REAL:
        v->t = EXPR_NUMBER; /* jansson never holds a non-finite real */
        v->u.n = json_real_value(j);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        set_bool(v, json_is_true(j));
        break;
    case JSON_NULL:
        v->t = EXPR_NULL;
        break;
    }
}

static void list_item(const val *list, size_t i, val *out) {
    if (list->jlist)
        from_json(json_array_get((const json_t *)list->u.l.p, i), out);
    else
        *out = ((const val *)list->u.l.p)[i];
}

/* A time, or a string that reads as one. */
static bool as_time(const val *v, int64_t *ms) {
    if (v->t == EXPR_TIME) {
        *ms = v->u.ms;
        return true;
    }
    return v->t == EXPR_STRING && v->u.s.len <= TIME_TEXT_MAX && tf_parse(v->u.s.p, v->u.s.len, ms);
}

/* Civil date from days since 1970-01-01 (Howard Hinnant's algorithm; timefmt keeps its copy
 * private). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int64_t days_of(int64_t ms) {
    int64_t z = ms / 86400000;
    return ms % 86400000 < 0 ? z - 1 : z;
}

/* ---- Evaluation context: cost and scratch ---- */

typedef struct blk {
    struct blk *next;
    size_t used, cap;
    char data[];
} blk;

typedef struct ectx {
    const expr *e;
    int64_t now_ms;
    uint64_t cost, limit;
    uint32_t pos; /* of the instruction being run */
    expr_error *err;
    blk *blocks;
    size_t inl_used;
    char inl[512];
} ectx;

static void set_error(expr_error *err, const char *code, const char *src, size_t pos,
                      const char *msg);

static int cost_error(ectx *c) {
    char msg[96];
    snprintf(msg, sizeof msg, "evaluation cost passed its limit of %llu",
             (unsigned long long)c->limit);
    set_error(c->err, "cost_exceeded", c->e->src, c->pos, msg);
    return -1;
}

static int charge(ectx *c, size_t units) {
    c->cost += units;
    return c->cost > c->limit ? cost_error(c) : 0;
}

/* n bytes of scratch that stay put until the evaluation ends. The caller has charged n already,
 * which is what bounds the arena. */
static char *scratch(ectx *c, size_t n) {
    if (n <= sizeof c->inl - c->inl_used) {
        char *p = c->inl + c->inl_used;
        c->inl_used += n;
        return p;
    }
    blk *b = c->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        b = malloc(sizeof *b + cap);
        if (!b) {
            set_error(c->err, "out_of_memory", c->e->src, c->pos, "out of memory");
            return NULL;
        }
        b->next = c->blocks;
        b->used = 0;
        b->cap = cap;
        c->blocks = b;
    }
    char *p = b->data + b->used;
    b->used += n;
    return p;
}

static void scratch_free(ectx *c) {
    for (blk *b = c->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    c->blocks = NULL;
}

/* ---- Functions ---- */

/* What a function wants of an argument. An argument that is not what it wants at run time makes
 * the call null without calling the implementation (W_TIME also takes a string that reads as a
 * time, and hands the implementation the time). */
enum want {
    W_ANY,
    W_NUM,
    W_STR,
    W_TIME,
    W_DATE /* string or time */,
    W_SIZED /* string or list */
};

static const uint16_t want_mask[] = {
    [W_ANY] = TM_ANY,
    [W_NUM] = TM_NUM,
    [W_STR] = TM_STR,
    [W_TIME] = TM_TIME | TM_TSTR,
    [W_DATE] = TM_STR | TM_TIME,
    [W_SIZED] = TM_STR | TM_LIST,
};

static const char *const want_name[] = {
    [W_ANY] = "anything",
    [W_NUM] = "a number",
    [W_STR] = "a string",
    [W_TIME] = "a time",
    [W_DATE] = "a string or a time",
    [W_SIZED] = "a string or a list",
};

typedef int (*fn_impl)(ectx *c, const val *a, size_t n, val *out);

typedef struct fn_def {
    const char *name;
    uint8_t min, max;
    uint8_t want[2]; /* want of argument 1 and 2; later arguments reuse the last */
    uint16_t result; /* static mask; 0: the union of the arguments' masks (coalesce) */
    fn_impl impl;
} fn_def;

static int fn_now(ectx *c, const val *a, size_t n, val *out) {
    *out = vtime((double)c->now_ms);
    return 0;
}

static int fn_days(ectx *c, const val *a, size_t n, val *out) {
    *out = vnum(a[0].u.n * DAY_MS);
    return 0;
}

static int fn_hours(ectx *c, const val *a, size_t n, val *out) {
    *out = vnum(a[0].u.n * 3600000.0);
    return 0;
}

static int fn_minutes(ectx *c, const val *a, size_t n, val *out) {
    *out = vnum(a[0].u.n * 60000.0);
    return 0;
}

/* Whole days, truncated toward zero: both are 0 within 24 hours either side of now (+ 0.0 turns
 * the -0 that trunc() gives just below zero into 0). */
static int fn_days_since(ectx *c, const val *a, size_t n, val *out) {
    *out = vnum(trunc(((double)c->now_ms - (double)a[0].u.ms) / DAY_MS) + 0.0);
    return 0;
}

static int fn_days_until(ectx *c, const val *a, size_t n, val *out) {
    *out = vnum(trunc(((double)a[0].u.ms - (double)c->now_ms) / DAY_MS) + 0.0);
    return 0;
}

static int fn_date(ectx *c, const val *a, size_t n, val *out) {
    int64_t ms;
    *out = as_time(&a[0], &ms) ? vtime((double)ms) : vnull();
    return 0;
}

static int fn_year(ectx *c, const val *a, size_t n, val *out) {
    int64_t y;
    unsigned m, d;
    civil_from_days(days_of(a[0].u.ms), &y, &m, &d);
    *out = vnum((double)y);
    return 0;
}

static int fn_month(ectx *c, const val *a, size_t n, val *out) {
    int64_t y;
    unsigned m, d;
    civil_from_days(days_of(a[0].u.ms), &y, &m, &d);
    *out = vnum(m);
    return 0;
}

static int fn_day(ectx *c, const val *a, size_t n, val *out) {
    int64_t y;
    unsigned m, d;
    civil_from_days(days_of(a[0].u.ms), &y, &m, &d);
    *out = vnum(d);
    return 0;
}

/* ISO 8601: Monday 1 .. Sunday 7; 1970-01-01 was a Thursday. */
static int fn_day_of_week(ectx *c, const val *a, size_t n, val *out) {
    int64_t z = days_of(a[0].u.ms);
    *out = vnum((double)(((z % 7) + 7 + 3) % 7 + 1));
    return 0;
}

static int fn_hour(ectx *c, const val *a, size_t n, val *out) {
    int64_t in_day = a[0].u.ms - days_of(a[0].u.ms) * 86400000;
    *out = vnum((double)(in_day / 3600000));
    return 0;
}

/* ASCII case mapping only: bytes of multi-byte UTF-8 sequences are never in A-Z / a-z, so the
 * result stays valid UTF-8. */
static int map_case(ectx *c, const val *a, val *out, int from, int to) {
    size_t len = a[0].u.s.len;
    if (charge(c, len)) return -1;
    char *p = scratch(c, len ? len : 1);
    if (!p) return -1;
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)a[0].u.s.p[i];
        p[i] = (char)(ch >= from && ch < from + 26 ? ch - from + to : ch);
    }
    *out = vstr(p, len, true);
    return 0;
}

static int fn_lower(ectx *c, const val *a, size_t n, val *out) {
    return map_case(c, a, out, 'A', 'a');
}

static int fn_upper(ectx *c, const val *a, size_t n, val *out) {
    return map_case(c, a, out, 'a', 'A');
}

static bool is_space(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static int fn_trim(ectx *c, const val *a, size_t n, val *out) {
    const char *p = a[0].u.s.p;
    size_t len = a[0].u.s.len;
    if (charge(c, len)) return -1;
    while (len && is_space(*p))
        p++, len--;
    while (len && is_space(p[len - 1]))
        len--;
    *out = vstr(p, len, a[0].tmp);
    return 0;
}

/* Characters, not bytes: a string's length is its count of UTF-8 sequences. */
static int fn_len(ectx *c, const val *a, size_t n, val *out) {
    if (a[0].t == EXPR_LIST) {
        *out = vnum((double)a[0].u.l.len);
        return 0;
    }
    if (charge(c, a[0].u.s.len)) return -1;
    size_t chars = 0;
    for (size_t i = 0; i < a[0].u.s.len; i++)
        chars += ((unsigned char)a[0].u.s.p[i] & 0xC0) != 0x80;
    *out = vnum((double)chars);
    return 0;
}

static int fn_starts_with(ectx *c, const val *a, size_t n, val *out) {
    size_t k = a[1].u.s.len;
    if (charge(c, k)) return -1;
    *out = vbool(k <= a[0].u.s.len && memcmp(a[0].u.s.p, a[1].u.s.p, k) == 0);
    return 0;
}

static int fn_ends_with(ectx *c, const val *a, size_t n, val *out) {
    size_t k = a[1].u.s.len;
    if (charge(c, k)) return -1;
    *out = vbool(k <= a[0].u.s.len && memcmp(a[0].u.s.p + a[0].u.s.len - k, a[1].u.s.p, k) == 0);
    return 0;
}

static int fn_abs(ectx *c, const val *a, size_t n, val *out) {
    *out = vnum(fabs(a[0].u.n));
    return 0;
}

/* Half away from zero: round(2.5) is 3, round(-2.5) is -3. */
static int fn_round(ectx *c, const val *a, size_t n, val *out) {
    *out = vnum(round(a[0].u.n));
    return 0;
}

static int fn_floor(ectx *c, const val *a, size_t n, val *out) {
    *out = vnum(floor(a[0].u.n));
    return 0;
}

static int fn_ceil(ectx *c, const val *a, size_t n, val *out) {
    *out = vnum(ceil(a[0].u.n));
    return 0;
}

static int fn_min(ectx *c, const val *a, size_t n, val *out) {
    *out = vnum(a[1].u.n < a[0].u.n ? a[1].u.n : a[0].u.n);
    return 0;
}

static int fn_max(ectx *c, const val *a, size_t n, val *out) {
    *out = vnum(a[1].u.n > a[0].u.n ? a[1].u.n : a[0].u.n);
    return 0;
}

static int fn_exists(ectx *c, const val *a, size_t n, val *out) {
    *out = vbool(a[0].t != EXPR_NULL);
    return 0;
}

static int fn_coalesce(ectx *c, const val *a, size_t n, val *out) {
    for (size_t i = 0; i < n; i++)
        if (a[i].t != EXPR_NULL) {
            *out = a[i];
            return 0;
        }
    *out = vnull();
    return 0;
}

#define N0 (TM_NUM | TM_NULL)
static const fn_def fns[] = {
    {"now", 0, 0, {W_ANY, W_ANY}, TM_TIME | TM_NULL, fn_now}, /* null: a clock past 9999 */
    {"days", 1, 1, {W_NUM, W_NUM}, N0, fn_days},
    {"hours", 1, 1, {W_NUM, W_NUM}, N0, fn_hours},
    {"minutes", 1, 1, {W_NUM, W_NUM}, N0, fn_minutes},
    {"days_since", 1, 1, {W_TIME, W_TIME}, N0, fn_days_since},
    {"days_until", 1, 1, {W_TIME, W_TIME}, N0, fn_days_until},
    {"date", 1, 1, {W_DATE, W_DATE}, TM_TIME | TM_NULL, fn_date},
    {"year", 1, 1, {W_TIME, W_TIME}, N0, fn_year},
    {"month", 1, 1, {W_TIME, W_TIME}, N0, fn_month},
    {"day", 1, 1, {W_TIME, W_TIME}, N0, fn_day},
    {"day_of_week", 1, 1, {W_TIME, W_TIME}, N0, fn_day_of_week},
    {"hour", 1, 1, {W_TIME, W_TIME}, N0, fn_hour},
    {"lower", 1, 1, {W_STR, W_STR}, TM_STR | TM_TSTR | TM_NULL, fn_lower},
    {"upper", 1, 1, {W_STR, W_STR}, TM_STR | TM_TSTR | TM_NULL, fn_upper},
    {"trim", 1, 1, {W_STR, W_STR}, TM_STR | TM_TSTR | TM_NULL, fn_trim},
    {"len", 1, 1, {W_SIZED, W_SIZED}, N0, fn_len},
    {"starts_with", 2, 2, {W_STR, W_STR}, TM_BOOL | TM_NULL, fn_starts_with},
    {"ends_with", 2, 2, {W_STR, W_STR}, TM_BOOL | TM_NULL, fn_ends_with},
    {"abs", 1, 1, {W_NUM, W_NUM}, N0, fn_abs},
    {"round", 1, 1, {W_NUM, W_NUM}, N0, fn_round},
    {"floor", 1, 1, {W_NUM, W_NUM}, N0, fn_floor},
    {"ceil", 1, 1, {W_NUM, W_NUM}, N0, fn_ceil},
    {"min", 2, 2, {W_NUM, W_NUM}, N0, fn_min},
    {"max", 2, 2, {W_NUM, W_NUM}, N0, fn_max},
    {"exists", 1, 1, {W_ANY, W_ANY}, TM_BOOL, fn_exists},
    {"coalesce", 2, 8, {W_ANY, W_ANY}, 0, fn_coalesce},
};
#undef N0
#define NFNS (sizeof fns / sizeof fns[0])

/* Calls f on the n values at a (which it may rewrite: a time string becomes a time). */
static int call(ectx *c, const fn_def *f, val *a, size_t n, val *out) {
    for (size_t i = 0; i < n; i++) {
        enum want w = f->want[i < 2 ? i : 1];
        bool ok;
        switch (w) {
        case W_ANY:
            ok = true;
            break;
        case W_NUM:
            ok = a[i].t == EXPR_NUMBER;
            break;
        case W_STR:
            ok = a[i].t == EXPR_STRING;
            break;
        case W_DATE:
            ok = a[i].t == EXPR_STRING || a[i].t == EXPR_TIME;
            break;
        case W_SIZED:
            ok = a[i].t == EXPR_STRING || a[i].t == EXPR_LIST;
            break;
        case W_TIME: {
            int64_t ms;
            ok = as_time(&a[i], &ms);
            if (ok) a[i] = vtime((double)ms);
            ok = ok && a[i].t == EXPR_TIME;
            break;
        }
        default:
            ok = false;
        }
        if (!ok) {
            *out = vnull();
            return 0;
        }
    }
    *out = vnull();
    return f->impl(c, a, n, out);
}

/* ---- Operators at run time ---- */

/* The first byte settles most unequal strings without a call to memcmp(). */
static bool same_bytes(const char *a, size_t alen, const char *b, size_t blen) {
    return alen == blen && (alen == 0 || (a[0] == b[0] && memcmp(a, b, alen) == 0));
}

static bool equal(const val *a, const val *b) {
    if (a->t == b->t) {
        switch ((expr_type)a->t) {
        case EXPR_NULL:
            return true;
        case EXPR_BOOL:
            return a->u.b == b->u.b;
        case EXPR_NUMBER:
            return a->u.n == b->u.n;
        case EXPR_STRING:
            return same_bytes(a->u.s.p, a->u.s.len, b->u.s.p, b->u.s.len);
        case EXPR_TIME:
            return a->u.ms == b->u.ms;
        case EXPR_LIST:
        case EXPR_OBJECT:
            return false; /* lists and objects are not comparable (docs/expressions.md) */
        }
        return false;
    }
    int64_t x, y;
    if ((a->t == EXPR_TIME || b->t == EXPR_TIME) && as_time(a, &x) && as_time(b, &y)) return x == y;
    return false;
}

/* Orders a against b into *r (<0, 0, >0); false when they cannot be ordered. */
static bool order(const val *a, const val *b, int *r) {
    if (a->t == EXPR_NUMBER && b->t == EXPR_NUMBER) {
        *r = (a->u.n > b->u.n) - (a->u.n < b->u.n);
        return true;
    }
    if (a->t == EXPR_STRING && b->t == EXPR_STRING) {
        size_t n = a->u.s.len < b->u.s.len ? a->u.s.len : b->u.s.len;
        int m = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
        *r = m ? m : (a->u.s.len > b->u.s.len) - (a->u.s.len < b->u.s.len);
        return true;
    }
    int64_t x, y;
    if ((a->t == EXPR_TIME || b->t == EXPR_TIME) && as_time(a, &x) && as_time(b, &y)) {
        *r = (x > y) - (x < y);
        return true;
    }
    return false;
}

/* needle in hay: an element of a list, or a substring of a string. */
static int member(ectx *c, const val *needle, const val *hay, bool *found) {
    *found = false;
    if (hay->t == EXPR_STRING) {
        if (needle->t != EXPR_STRING) return 0;
        if (charge(c, hay->u.s.len + needle->u.s.len)) return -1;
        *found = needle->u.s.len == 0 ||
                 memmem(hay->u.s.p, hay->u.s.len, needle->u.s.p, needle->u.s.len) != NULL;
        return 0;
    }
    if (hay->t != EXPR_LIST) return 0;
    if (hay->jlist && needle->t == EXPR_STRING) {
        /* The common case, a string in a JSON list (markets, tags, segments), compared in
         * place. */
        const json_t *arr = hay->u.l.p;
        for (size_t i = 0; i < hay->u.l.len; i++) {
            if (charge(c, 1)) return -1;
            const json_t *x = json_array_get(arr, i);
            if (json_is_string(x) && same_bytes(needle->u.s.p, needle->u.s.len,
                                                json_string_value(x), json_string_length(x))) {
                *found = true;
                return 0;
            }
        }
        return 0;
    }
    for (size_t i = 0; i < hay->u.l.len; i++) {
        if (charge(c, 1)) return -1;
        val item;
        list_item(hay, i, &item);
        if (equal(needle, &item)) {
            *found = true;
            return 0;
        }
    }
    return 0;
}

static int concat(ectx *c, const val *a, const val *b, val *out) {
    size_t n = a->u.s.len + b->u.s.len;
    if (charge(c, n)) return -1;
    char *p = scratch(c, n ? n : 1);
    if (!p) return -1;
    if (a->u.s.len) memcpy(p, a->u.s.p, a->u.s.len);
    if (b->u.s.len) memcpy(p + a->u.s.len, b->u.s.p, b->u.s.len);
    *out = vstr(p, n, true);
    return 0;
}

/* The arithmetic operators. Any combination not listed in docs/expressions.md gives null. */
static int arith(ectx *c, enum op op, const val *a, const val *b, val *out) {
    *out = vnull();
    bool nums = a->t == EXPR_NUMBER && b->t == EXPR_NUMBER;
    int64_t x, y;
    switch (op) {
    case OP_ADD:
        if (nums)
            *out = vnum(a->u.n + b->u.n);
        else if (a->t == EXPR_STRING && b->t == EXPR_STRING)
            return concat(c, a, b, out);
        else if (b->t == EXPR_NUMBER && as_time(a, &x))
            *out = vtime((double)x + b->u.n);
        else if (a->t == EXPR_NUMBER && as_time(b, &y))
            *out = vtime((double)y + a->u.n);
        break;
    case OP_SUB:
        if (nums)
            *out = vnum(a->u.n - b->u.n);
        else if (b->t == EXPR_NUMBER && as_time(a, &x))
            *out = vtime((double)x - b->u.n);
        else if (as_time(a, &x) && as_time(b, &y))
            *out = vnum((double)x - (double)y);
        break;
    case OP_MUL:
        if (nums) *out = vnum(a->u.n * b->u.n);
        break;
    case OP_DIV:
        if (nums && b->u.n != 0) *out = vnum(a->u.n / b->u.n);
        break;
    case OP_MOD:
        if (nums && b->u.n != 0) *out = vnum(fmod(a->u.n, b->u.n));
        break;
    default:
        break;
    }
    return 0;
}

/* jansson 2.14 can look a key up by length, which saves a strlen() per step. */
static const json_t *object_get(const json_t *o, const step *s) {
#if JANSSON_VERSION_HEX >= 0x020e00
    return json_object_getn(o, s->key, s->klen);
#else
    return json_object_get(o, s->key);
#endif
}

static void load_path(const expr *e, const expr_env *env, const path *pa, val *out) {
    const json_t *v = env && env->values && pa->root < env->n ? env->values[pa->root] : NULL;
    if (v && !json_is_object(v)) v = NULL; /* roots are objects; anything else reads as null */
    const step *s = e->steps + pa->first;
    for (uint16_t i = 0; i < pa->nsteps && v; i++, s++) {
        if (s->key)
            v = json_is_object(v) ? object_get(v, s) : NULL;
        else
            v = json_is_array(v) ? json_array_get(v, s->index) : NULL;
    }
    from_json(v, out);
}

/* Runs the program. The compiler has checked that the stack never holds more than
 * EXPR_MAX_PENDING values and that every jump lands inside the program and forward, so the loop
 * runs each instruction at most once. That is also why the instructions (and path steps) are
 * charged all at once up front, short-circuited or not: only string and list work is charged as
 * it happens. Results are written field by field into the stack slot rather than built as
 * temporaries and copied, which measured about twice as fast (no store-forwarding stalls). */
static int run(ectx *c, const expr_env *env, val *res) {
    const expr *e = c->e;
    c->cost = e->static_cost;
    if (c->cost > c->limit) {
        c->pos = 0;
        return cost_error(c);
    }
    val st[EXPR_MAX_PENDING];
    val *sp = st; /* the next free slot; sp[-1] is the top */
    bool found;
    int ord;
    const ins *code = e->code, *end = code + e->ncode;
    for (const ins *in = code; in < end; in++) {
        switch ((enum op)in->op) {
        case OP_CONST:
            *sp++ = e->consts[in->a];
            break;
        case OP_PATH:
            load_path(e, env, &e->paths[in->a], sp++);
            break;
        case OP_NOT:
            set_bool(sp - 1, !truthy(sp - 1));
            break;
        case OP_TOBOOL:
            set_bool(sp - 1, truthy(sp - 1));
            break;
        case OP_NEG:
            if (sp[-1].t == EXPR_NUMBER)
                sp[-1].u.n = -sp[-1].u.n;
            else
                sp[-1].t = EXPR_NULL;
            break;
        case OP_AND:
        case OP_OR: {
            bool t = truthy(--sp);
            if (t == (in->op == OP_OR)) {
                set_bool(sp++, t);
                in = code + in->a - 1;
            }
            break;
        }
        case OP_EQ:
        case OP_NE:
            if (sp[-2].t == EXPR_NUMBER && sp[-1].t == EXPR_NUMBER)
                found = sp[-2].u.n == sp[-1].u.n;
            else
                found = equal(sp - 2, sp - 1);
            set_bool(--sp - 1, found == (in->op == OP_EQ));
            break;
        case OP_LT:
        case OP_LE:
        case OP_GT:
        case OP_GE:
            if (sp[-2].t == EXPR_NUMBER && sp[-1].t == EXPR_NUMBER) {
                double x = sp[-2].u.n, y = sp[-1].u.n;
                ord = (x > y) - (x < y);
                found = true;
            } else {
                found = order(sp - 2, sp - 1, &ord);
            }
            found = found && (in->op == OP_LT   ? ord < 0
                              : in->op == OP_LE ? ord <= 0
                              : in->op == OP_GT ? ord > 0
                                                : ord >= 0);
            set_bool(--sp - 1, found);
            break;
        case OP_IN:
        case OP_CONTAINS:
            c->pos = in->pos;
            if (in->op == OP_IN ? member(c, sp - 2, sp - 1, &found)
                                : member(c, sp - 1, sp - 2, &found))
                return -1;
            set_bool(--sp - 1, found);
            break;
        case OP_ADD:
        case OP_SUB:
        case OP_MUL:
        case OP_DIV:
        case OP_MOD: {
            val r;
            c->pos = in->pos;
            if (arith(c, (enum op)in->op, sp - 2, sp - 1, &r)) return -1;
            sp--;
            sp[-1] = r;
            break;
        }
        case OP_CALL: {
            val r;
            c->pos = in->pos;
            sp -= in->nargs;
            if (call(c, &fns[in->a], sp, in->nargs, &r)) return -1;
            *sp++ = r;
            break;
        }
        }
    }
    *res = st[0];
    return 0;
}

/* ---- Errors ---- */

static void set_error(expr_error *err, const char *code, const char *src, size_t pos,
                      const char *msg) {
    if (!err) return;
    unsigned line = 1, col = 1;
    for (size_t i = 0; i < pos; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch == '\n')
            line++, col = 1;
        else if ((ch & 0xC0) != 0x80)
            col++;
    }
    err->pos = pos;
    err->line = line;
    err->column = col;
    ev_error_set(&err->ev, code, "", "%s at %u:%u", msg, line, col);
}

/* ---- Lexer ---- */

enum tk {
    TK_EOF,
    TK_NUM,
    TK_STR,
    TK_IDENT,
    TK_LPAREN,
    TK_RPAREN,
    TK_LBRACK,
    TK_RBRACK,
    TK_COMMA,
    TK_DOT,
    TK_EQ,
    TK_NE,
    TK_LT,
    TK_LE,
    TK_GT,
    TK_GE,
    TK_PLUS,
    TK_MINUS,
    TK_STAR,
    TK_SLASH,
    TK_PERCENT,
    /* words; TK_AND is the first */
    TK_AND,
    TK_OR,
    TK_NOT,
    TK_IN,
    TK_CONTAINS,
    TK_TRUE,
    TK_FALSE,
    TK_NULL,
};

/* Longest first, so "<=" wins over "<". */
static const struct {
    const char *text;
    uint8_t len, kind;
} puncts[] = {
    {"==", 2, TK_EQ},    {"!=", 2, TK_NE},    {"<=", 2, TK_LE},     {">=", 2, TK_GE},
    {"&&", 2, TK_AND},   {"||", 2, TK_OR},    {"(", 1, TK_LPAREN},  {")", 1, TK_RPAREN},
    {"[", 1, TK_LBRACK}, {"]", 1, TK_RBRACK}, {",", 1, TK_COMMA},   {".", 1, TK_DOT},
    {"<", 1, TK_LT},     {">", 1, TK_GT},     {"+", 1, TK_PLUS},    {"-", 1, TK_MINUS},
    {"*", 1, TK_STAR},   {"/", 1, TK_SLASH},  {"%", 1, TK_PERCENT}, {"!", 1, TK_NOT},
};

static const struct {
    const char *word;
    uint8_t kind;
} words[] = {
    {"and", TK_AND},           {"or", TK_OR},     {"not", TK_NOT},     {"in", TK_IN},
    {"contains", TK_CONTAINS}, {"true", TK_TRUE}, {"false", TK_FALSE}, {"null", TK_NULL},
};

/* Bytes that look like an operator from another language, and what to write instead. */
static const struct {
    char ch;
    const char *hint;
} stray_hints[] = {
    {'=', " (compare with '==')"},
    {'&', " (write 'and' or '&&')"},
    {'|', " (write 'or' or '||')"},
};

typedef struct tok {
    int kind;
    size_t start, end;
    double num;      /* TK_NUM */
    const char *str; /* TK_STR: decoded, NUL-terminated, in the pool */
    size_t slen;
} tok;

#define MAX_CODE (2 * EXPR_MAX_NODES + 8)

typedef struct parser {
    const char *src;
    size_t len, at;
    tok t;
    const expr_roots *roots;
    expr_error *err;
    unsigned depth, nodes, pending, max_pending;
    size_t bare_roots; /* paths with no steps */
    char *pool;
    size_t pool_used, pool_cap;
    size_t ncode, nconsts, npaths, nsteps;
    ins code[MAX_CODE];
    val consts[EXPR_MAX_NODES + 1];
    path paths[EXPR_MAX_NODES];
    step steps[EXPR_MAX_NODES];
} parser;

static int fail(parser *p, const char *code, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(parser *p, const char *code, size_t pos, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    set_error(p->err, code, p->src, pos, msg);
    return -1;
}

static bool ident_start(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static bool ident_char(char ch) {
    return ident_start(ch) || (ch >= '0' && ch <= '9');
}

static bool is_digit(char ch) {
    return ch >= '0' && ch <= '9';
}

/* "end of input", "'foo'" or "a string", for "expected X but found Y". */
static const char *describe_tok(const parser *p, char out[40]) {
    if (p->t.kind == TK_EOF) return "end of input";
    if (p->t.kind == TK_STR) return "a string";
    size_t n = p->t.end - p->t.start;
    if (n > 24) n = 24;
    snprintf(out, 40, "'%.*s'", (int)n, p->src + p->t.start);
    return out;
}

static bool hex4(const char *s, size_t n, size_t at, uint32_t *out) {
    if (at + 4 > n) return false;
    uint32_t v = 0;
    for (size_t i = at; i < at + 4; i++) {
        char ch = s[i];
        int d = is_digit(ch)               ? ch - '0'
                : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10
                                           : -1;
        if (d < 0) return false;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return true;
}

/* Room in the pool. A decoded string or name is never longer than the source bytes it came from
 * plus the quote or dot before it, so the pool (as long as the source, plus one) cannot run out;
 * the check is for the invariant, not for input. */
static char *pool_room(parser *p, size_t n) {
    if (n > p->pool_cap - p->pool_used) abort();
    return p->pool + p->pool_used;
}

static const char escapes[][2] = {{'n', '\n'}, {'t', '\t'},  {'r', '\r'},  {'b', '\b'}, {'f', '\f'},
                                  {'"', '"'},  {'\'', '\''}, {'\\', '\\'}, {'/', '/'}};

static int lex_string(parser *p) {
    const char *s = p->src;
    size_t n = p->len, start = p->at, i = p->at + 1;
    char q = s[start];
    /* Decoded bytes never outnumber source bytes, so decoding straight into the pool is safe. */
    char *out = pool_room(p, n - start);
    size_t o = 0;
    for (;;) {
        if (i >= n) return fail(p, "syntax_error", start, "unterminated string");
        if (o > EXPR_MAX_STRING)
            return fail(p, "too_complex", start, "string literal longer than %d bytes",
                        EXPR_MAX_STRING);
        unsigned char ch = (unsigned char)s[i];
        if (ch == (unsigned char)q) break;
        if (ch < 0x20)
            return fail(p, "syntax_error", i, "control character in a string (write \\n, \\t)");
        if (ch != '\\') {
            size_t k = utf8_seq((const unsigned char *)s + i, n - i);
            if (!k) return fail(p, "syntax_error", i, "invalid UTF-8 in a string");
            memcpy(out + o, s + i, k);
            o += k, i += k;
            continue;
        }
        if (i + 1 >= n) return fail(p, "syntax_error", start, "unterminated string");
        char e = s[i + 1];
        size_t k;
        for (k = 0; k < sizeof escapes / sizeof escapes[0]; k++)
            if (escapes[k][0] == e) break;
        if (k < sizeof escapes / sizeof escapes[0]) {
            out[o++] = escapes[k][1];
            i += 2;
            continue;
        }
        uint32_t cp, lo;
        if (e != 'u' || !hex4(s, n, i + 2, &cp))
            return fail(p, "syntax_error", i, "invalid escape in a string");
        size_t used = 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (i + 8 > n || s[i + 6] != '\\' || s[i + 7] != 'u' || !hex4(s, n, i + 8, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return fail(p, "syntax_error", i, "unpaired surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            used = 12;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return fail(p, "syntax_error", i, "unpaired surrogate in a \\u escape");
        } else if (cp == 0) {
            return fail(p, "syntax_error", i, "\\u0000 is not allowed in a string");
        }
        o += utf8_put(cp, out + o);
        i += used;
    }
    if (o > EXPR_MAX_STRING)
        return fail(p, "too_complex", start, "string literal longer than %d bytes",
                    EXPR_MAX_STRING);
    out[o] = '\0';
    p->pool_used += o + 1;
    p->t.kind = TK_STR;
    p->t.str = out;
    p->t.slen = o;
    p->at = i + 1;
    return 0;
}

static int lex_number(parser *p) {
    const char *s = p->src;
    size_t n = p->len, start = p->at, i = p->at;
    while (i < n && is_digit(s[i]))
        i++;
    if (i < n && s[i] == '.') {
        if (i + 1 >= n || !is_digit(s[i + 1]))
            return fail(p, "syntax_error", i, "a '.' in a number must be followed by digits");
        i++;
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-')) j++;
        if (j >= n || !is_digit(s[j]))
            return fail(p, "syntax_error", i, "an exponent needs digits");
        i = j;
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (ident_char(s[i]) || s[i] == '.'))
        return fail(p, "syntax_error", start, "invalid number");
    char text[64];
    if (i - start >= sizeof text)
        return fail(p, "syntax_error", start, "number longer than %zu characters", sizeof text - 1);
    memcpy(text, s + start, i - start);
    text[i - start] = '\0';
    /* The text is digits, '.', 'e' and signs only, which strtod reads the same in every locale
     * engaged runs in (it never calls setlocale). */
    double v = strtod(text, NULL);
    if (!isfinite(v)) return fail(p, "syntax_error", start, "number out of range");
    p->t.kind = TK_NUM;
    p->t.num = v;
    p->at = i;
    return 0;
}

/* Reads the next token into p->t. */
static int lex(parser *p) {
    const char *s = p->src;
    size_t n = p->len;
    while (p->at < n &&
           (s[p->at] == ' ' || s[p->at] == '\t' || s[p->at] == '\n' || s[p->at] == '\r'))
        p->at++;
    p->t.start = p->at;
    int r = 0;
    if (p->at >= n) {
        p->t.kind = TK_EOF;
    } else if (s[p->at] == '"' || s[p->at] == '\'') {
        r = lex_string(p);
    } else if (is_digit(s[p->at])) {
        r = lex_number(p);
    } else if (ident_start(s[p->at])) {
        size_t i = p->at;
        while (i < n && ident_char(s[i]))
            i++;
        p->t.kind = TK_IDENT;
        for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
            if (strlen(words[k].word) == i - p->at && !memcmp(words[k].word, s + p->at, i - p->at))
                p->t.kind = words[k].kind;
        p->at = i;
    } else {
        size_t k;
        for (k = 0; k < sizeof puncts / sizeof puncts[0]; k++)
            if (puncts[k].len <= n - p->at && !memcmp(puncts[k].text, s + p->at, puncts[k].len))
                break;
        if (k == sizeof puncts / sizeof puncts[0]) {
            unsigned char ch = (unsigned char)s[p->at];
            const char *hint = "";
            for (size_t h = 0; h < sizeof stray_hints / sizeof stray_hints[0]; h++)
                if (stray_hints[h].ch == (char)ch) hint = stray_hints[h].hint;
            if (ch > 0x20 && ch < 0x7f)
                return fail(p, "syntax_error", p->at, "unexpected character '%c'%s", ch, hint);
            return fail(p, "syntax_error", p->at, "unexpected byte 0x%02x", ch);
        }
        p->t.kind = puncts[k].kind;
        p->at += puncts[k].len;
    }
    p->t.end = p->at;
    return r;
}

/* ---- Static typing ---- */

/* The name of a mask in messages: "number", "string or list", ... (null is named only when it is
 * all the mask has). */
static const char *describe_mask(uint16_t m, char out[64]) {
    static const struct {
        uint16_t bit;
        const char *name;
    } names[] = {{TM_BOOL, "bool"}, {TM_NUM, "number"}, {TM_STR, "string"},
                 {TM_TIME, "time"}, {TM_LIST, "list"},  {TM_OBJ, "object"}};
    if ((m & ~TM_NULL) == 0) return "null";
    if ((m | TM_NULL) == TM_ANY) return "any type";
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(m & names[i].bit)) continue;
        if (out[0]) strcat(out, " or ");
        strcat(out, names[i].name);
    }
    return out;
}

enum rule { R_EQ, R_ORD, R_ADD, R_SUB, R_MUL };

/* The typing table: a binary operator of a rule accepts a left type in l with a right type in r,
 * and then gives a type in res. Arithmetic also gives null at run time (mismatched data,
 * overflow, division by zero); that is added where the table is read. */
static const struct {
    uint8_t rule;
    uint16_t l, r, res;
} rules[] = {
    {R_EQ, TM_NULL, TM_ANY, TM_BOOL},
    {R_EQ, TM_ANY, TM_NULL, TM_BOOL},
    {R_EQ, TM_BOOL, TM_BOOL, TM_BOOL},
    {R_EQ, TM_NUM, TM_NUM, TM_BOOL},
    {R_EQ, TM_STR, TM_STR, TM_BOOL},
    {R_EQ, TM_TIME, TM_TIME | TM_TSTR, TM_BOOL},
    {R_EQ, TM_TSTR, TM_TIME, TM_BOOL},
    {R_ORD, TM_NUM, TM_NUM, TM_BOOL},
    {R_ORD, TM_STR, TM_STR, TM_BOOL},
    {R_ORD, TM_TIME, TM_TIME | TM_TSTR, TM_BOOL},
    {R_ORD, TM_TSTR, TM_TIME, TM_BOOL},
    {R_ADD, TM_NUM, TM_NUM, TM_NUM},
    {R_ADD, TM_STR, TM_STR, TM_STR | TM_TSTR},
    {R_ADD, TM_TIME | TM_TSTR, TM_NUM, TM_TIME},
    {R_ADD, TM_NUM, TM_TIME | TM_TSTR, TM_TIME},
    {R_SUB, TM_NUM, TM_NUM, TM_NUM},
    {R_SUB, TM_TIME | TM_TSTR, TM_NUM, TM_TIME},
    {R_SUB, TM_TIME | TM_TSTR, TM_TIME | TM_TSTR, TM_NUM},
    {R_MUL, TM_NUM, TM_NUM, TM_NUM},
};

/* The types an operand is known to have, for checking: the null that any field, arithmetic or
 * function may give at run time does not count, or `(1 + 2) == "a"` would pass as a comparison
 * with null; only an operand that can be nothing but null (the literal) is checked as null. */
static uint16_t known(uint16_t m) {
    return m & ~TM_NULL ? (uint16_t)(m & ~TM_NULL) : m;
}

/* The result mask of rule over l and r, or 0 when no pair of their types is accepted. */
static uint16_t rule_result(enum rule rule, uint16_t l, uint16_t r) {
    uint16_t res = 0;
    l = known(l);
    r = known(r);
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (rules[i].rule == rule && (l & rules[i].l) && (r & rules[i].r)) res |= rules[i].res;
    if (res && rule >= R_ADD) res |= TM_NULL;
    return res;
}

/* The binary operators, by precedence level (the comparison level is not associative). */
enum level { L_CMP, L_ADD, L_MUL };

static const struct {
    uint8_t tk, level, op, rule;
    const char *text;
} binops[] = {
    {TK_EQ, L_CMP, OP_EQ, R_EQ, "=="},       {TK_NE, L_CMP, OP_NE, R_EQ, "!="},
    {TK_LT, L_CMP, OP_LT, R_ORD, "<"},       {TK_LE, L_CMP, OP_LE, R_ORD, "<="},
    {TK_GT, L_CMP, OP_GT, R_ORD, ">"},       {TK_GE, L_CMP, OP_GE, R_ORD, ">="},
    {TK_IN, L_CMP, OP_IN, R_EQ, "in"},       {TK_CONTAINS, L_CMP, OP_CONTAINS, R_EQ, "contains"},
    {TK_PLUS, L_ADD, OP_ADD, R_ADD, "+"},    {TK_MINUS, L_ADD, OP_SUB, R_SUB, "-"},
    {TK_STAR, L_MUL, OP_MUL, R_MUL, "*"},    {TK_SLASH, L_MUL, OP_DIV, R_MUL, "/"},
    {TK_PERCENT, L_MUL, OP_MOD, R_MUL, "%"},
};

/* The static type of an operand: where it starts, the types it may have, and for a list the types
 * its elements may have. lit: the operand is the number constant just emitted (for folding a
 * unary minus into it). */
typedef struct ty {
    uint16_t mask, elem;
    uint32_t pos;
    bool lit;
} ty;

/* ---- Parser and code generation ---- */

static int node(parser *p, size_t pos) {
    if (++p->nodes > EXPR_MAX_NODES)
        return fail(p, "too_complex", pos, "more than %d operands and operators", EXPR_MAX_NODES);
    return 0;
}

static int deeper(parser *p) {
    if (++p->depth > EXPR_MAX_DEPTH)
        return fail(p, "too_complex", p->t.start, "nesting deeper than %d levels", EXPR_MAX_DEPTH);
    return 0;
}

/* Appends an instruction and tracks how many values are pending on the evaluation stack. */
static int emit(parser *p, enum op op, uint32_t a, uint8_t nargs, size_t pos) {
    if (p->ncode >= MAX_CODE) abort(); /* MAX_CODE is twice the node limit: cannot happen */
    int delta;
    switch (op) {
    case OP_CONST:
    case OP_PATH:
        delta = 1;
        break;
    case OP_NOT:
    case OP_TOBOOL:
    case OP_NEG:
        delta = 0;
        break;
    case OP_CALL:
        delta = 1 - (int)nargs;
        break;
    default:
        delta = -1; /* binary operators; and / or pop one, and the right operand pushes it back */
    }
    p->pending = (unsigned)((int)p->pending + delta);
    if (p->pending > EXPR_MAX_PENDING)
        return fail(p, "too_complex", pos, "more than %d values pending at once", EXPR_MAX_PENDING);
    if (p->pending > p->max_pending) p->max_pending = p->pending;
    p->code[p->ncode++] = (ins){.op = (uint8_t)op, .nargs = nargs, .pos = (uint32_t)pos, .a = a};
    return 0;
}

static int emit_const(parser *p, val v, size_t pos) {
    p->consts[p->nconsts] = v;
    return emit(p, OP_CONST, (uint32_t)p->nconsts++, 0, pos);
}

static int expect(parser *p, int kind, const char *what) {
    if (p->t.kind == kind) return lex(p);
    char buf[40];
    return fail(p, "syntax_error", p->t.start, "expected %s but found %s", what,
                describe_tok(p, buf));
}

static uint16_t string_mask(const char *s, size_t n) {
    int64_t ms;
    return TM_STR | (n <= TIME_TEXT_MAX && tf_parse(s, n, &ms) ? TM_TSTR : 0);
}

static int parse_logic(parser *p, int kind, ty *out);

static int need_bool(parser *p, const ty *o, const char *opname) {
    if (o->mask & TM_BOOL) return 0;
    char buf[64];
    return fail(p, "type_error", o->pos, "'%s' needs true or false, found %s", opname,
                describe_mask(o->mask, buf));
}

/* A list literal: constants only, so evaluation never builds a list. */
static int parse_list(parser *p, ty *out) {
    size_t pos = p->t.start, first = p->nconsts;
    uint16_t elem = 0;
    if (node(p, pos) || lex(p)) return -1;
    size_t n = 0;
    while (p->t.kind != TK_RBRACK) {
        if (n && expect(p, TK_COMMA, "',' or ']'")) return -1;
        if (++n > EXPR_MAX_LIST)
            return fail(p, "too_complex", pos, "list literal longer than %d elements",
                        EXPR_MAX_LIST);
        if (node(p, p->t.start)) return -1;
        bool neg = p->t.kind == TK_MINUS;
        if (neg && lex(p)) return -1;
        val v;
        switch (p->t.kind) {
        case TK_NUM:
            v = vnum(neg ? -p->t.num : p->t.num);
            elem |= TM_NUM;
            break;
        case TK_STR:
            v = vstr(p->t.str, p->t.slen, false);
            elem |= string_mask(p->t.str, p->t.slen);
            break;
        case TK_TRUE:
        case TK_FALSE:
            v = vbool(p->t.kind == TK_TRUE);
            elem |= TM_BOOL;
            break;
        case TK_NULL:
            v = vnull();
            elem |= TM_NULL;
            break;
        default: {
            char buf[40];
            return fail(p, "syntax_error", p->t.start,
                        "a list holds numbers, strings, true, false and null only; found %s",
                        describe_tok(p, buf));
        }
        }
        if (neg && p->t.kind != TK_NUM)
            return fail(p, "syntax_error", p->t.start, "'-' in a list must precede a number");
        p->consts[p->nconsts++] = v;
        if (lex(p)) return -1;
    }
    if (lex(p)) return -1;
    val list = {.t = EXPR_LIST, .u.l = {p->consts + first, n}};
    if (emit_const(p, list, pos)) return -1;
    *out = (ty){TM_LIST, n ? elem : TM_ANY, (uint32_t)pos, false};
    return 0;
}

static int parse_call(parser *p, const fn_def *f, size_t pos, ty *out) {
    if (deeper(p) || lex(p)) return -1; /* the '(' */
    size_t n = 0;
    uint16_t any_of = 0;
    while (p->t.kind != TK_RPAREN) {
        if (n && expect(p, TK_COMMA, "',' or ')'")) return -1;
        ty a;
        if (parse_logic(p, TK_OR, &a)) return -1;
        if (n < f->max) {
            enum want w = f->want[n < 2 ? n : 1];
            if (!(a.mask & want_mask[w])) {
                char buf[64];
                return fail(p, "type_error", a.pos, "argument %zu of %s() must be %s, found %s",
                            n + 1, f->name, want_name[w], describe_mask(a.mask, buf));
            }
        }
        any_of |= a.mask;
        if (++n > 255) return fail(p, "too_complex", pos, "too many arguments");
    }
    if (n < f->min || n > f->max) {
        if (f->min == f->max)
            return fail(p, "type_error", pos, "%s() takes %d argument%s, not %zu", f->name, f->min,
                        f->min == 1 ? "" : "s", n);
        return fail(p, "type_error", pos, "%s() takes %d to %d arguments, not %zu", f->name, f->min,
                    f->max, n);
    }
    p->depth--;
    if (lex(p)) return -1; /* the ')' */
    if (emit(p, OP_CALL, (uint32_t)(f - fns), (uint8_t)n, pos)) return -1;
    *out = (ty){f->result ? f->result : any_of, TM_ANY, (uint32_t)pos, false};
    return 0;
}

/* root ('.' name | '[' index ']' | '[' string ']')* */
static int parse_path(parser *p, size_t root, size_t pos, ty *out) {
    path *pa = &p->paths[p->npaths];
    pa->root = (uint16_t)root;
    pa->first = (uint32_t)p->nsteps;
    pa->nsteps = 0;
    while (p->t.kind == TK_DOT || p->t.kind == TK_LBRACK) {
        step *s = &p->steps[p->nsteps];
        if (node(p, p->t.start)) return -1;
        if (p->t.kind == TK_DOT) {
            if (lex(p)) return -1;
            if (p->t.kind != TK_IDENT && p->t.kind < TK_AND) {
                char buf[40];
                return fail(p, "syntax_error", p->t.start,
                            "expected a field name after '.' but found %s", describe_tok(p, buf));
            }
            size_t n = p->t.end - p->t.start;
            char *key = pool_room(p, n + 1);
            memcpy(key, p->src + p->t.start, n);
            key[n] = '\0';
            p->pool_used += n + 1;
            *s = (step){key, 0, (uint32_t)n};
        } else {
            if (lex(p)) return -1;
            if (p->t.kind == TK_STR) {
                *s = (step){p->t.str, 0, (uint32_t)p->t.slen};
            } else if (p->t.kind == TK_NUM && p->t.num == floor(p->t.num) &&
                       p->t.num <= 4294967295.0) {
                *s = (step){NULL, (uint32_t)p->t.num, 0};
            } else {
                char buf[40];
                return fail(p, "syntax_error", p->t.start,
                            "expected an index (0, 1, ...) or a quoted name but found %s",
                            describe_tok(p, buf));
            }
            if (lex(p) || expect(p, TK_RBRACK, "']'")) return -1;
            p->nsteps++, pa->nsteps++;
            continue;
        }
        p->nsteps++, pa->nsteps++;
        if (lex(p)) return -1;
    }
    p->bare_roots += pa->nsteps == 0;
    if (emit(p, OP_PATH, (uint32_t)p->npaths++, 0, pos)) return -1;
    /* A root is an object or null; a field inside it may be anything. */
    *out = (ty){pa->nsteps ? TM_ANY : TM_OBJ | TM_NULL, TM_ANY, (uint32_t)pos, false};
    return 0;
}

static int parse_primary(parser *p, ty *out) {
    size_t pos = p->t.start;
    char buf[40];
    switch (p->t.kind) {
    case TK_NUM:
        if (node(p, pos) || emit_const(p, vnum(p->t.num), pos)) return -1;
        *out = (ty){TM_NUM, 0, (uint32_t)pos, true};
        return lex(p);
    case TK_STR:
        if (node(p, pos) || emit_const(p, vstr(p->t.str, p->t.slen, false), pos)) return -1;
        *out = (ty){string_mask(p->t.str, p->t.slen), 0, (uint32_t)pos, false};
        return lex(p);
    case TK_TRUE:
    case TK_FALSE:
        if (node(p, pos) || emit_const(p, vbool(p->t.kind == TK_TRUE), pos)) return -1;
        *out = (ty){TM_BOOL, 0, (uint32_t)pos, false};
        return lex(p);
    case TK_NULL:
        if (node(p, pos) || emit_const(p, vnull(), pos)) return -1;
        *out = (ty){TM_NULL, 0, (uint32_t)pos, false};
        return lex(p);
    case TK_LPAREN:
        if (deeper(p) || lex(p) || parse_logic(p, TK_OR, out)) return -1;
        p->depth--;
        out->pos = (uint32_t)pos;
        return expect(p, TK_RPAREN, "')'");
    case TK_LBRACK:
        return parse_list(p, out);
    case TK_IDENT: {
        const char *name = p->src + pos;
        size_t n = p->t.end - pos;
        if (node(p, pos) || lex(p)) return -1;
        if (p->t.kind == TK_LPAREN) {
            for (size_t i = 0; i < NFNS; i++)
                if (strlen(fns[i].name) == n && !memcmp(fns[i].name, name, n))
                    return parse_call(p, &fns[i], pos, out);
            return fail(p, "unknown_function", pos, "unknown function '%.*s'", n > 64 ? 64 : (int)n,
                        name);
        }
        for (size_t i = 0; i < p->roots->n; i++)
            if (strlen(p->roots->names[i]) == n && !memcmp(p->roots->names[i], name, n))
                return parse_path(p, i, pos, out);
        char known[120] = "";
        for (size_t i = 0; i < p->roots->n && strlen(known) < 80; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     p->roots->names[i]);
        return fail(p, "unknown_field_root", pos, "unknown field root '%.*s' (known: %s)",
                    n > 64 ? 64 : (int)n, name, p->roots->n ? known : "none");
    }
    default:
        return fail(p, "syntax_error", pos, "expected an operand but found %s",
                    describe_tok(p, buf));
    }
}

/* '-' unary | primary. A minus before a number literal folds into the constant. */
static int parse_unary(parser *p, ty *out) {
    if (p->t.kind != TK_MINUS) return parse_primary(p, out);
    size_t pos = p->t.start;
    if (node(p, pos) || deeper(p) || lex(p)) return -1;
    ty o;
    if (parse_unary(p, &o)) return -1;
    p->depth--;
    if (!(o.mask & TM_NUM)) {
        char buf[64];
        return fail(p, "type_error", o.pos, "'-' needs a number, found %s",
                    describe_mask(o.mask, buf));
    }
    if (o.lit && o.mask == TM_NUM) {
        val *c = &p->consts[p->code[p->ncode - 1].a];
        c->u.n = -c->u.n;
        *out = (ty){TM_NUM, 0, (uint32_t)pos, true};
        return 0;
    }
    *out = (ty){TM_NUM | TM_NULL, 0, (uint32_t)pos, false};
    return emit(p, OP_NEG, 0, 0, pos);
}

static int binop_at(const parser *p, enum level level) {
    for (size_t i = 0; i < sizeof binops / sizeof binops[0]; i++)
        if (binops[i].tk == p->t.kind && binops[i].level == level) return (int)i;
    return -1;
}

static int check_binary(parser *p, int b, size_t pos, const ty *l, const ty *r, ty *out) {
    char lb[64], rb[64];
    uint8_t op = binops[b].op;
    if (op == OP_IN || op == OP_CONTAINS) {
        const ty *needle = op == OP_IN ? l : r, *hay = op == OP_IN ? r : l;
        bool ok = ((hay->mask & TM_STR) && (needle->mask & TM_STR)) ||
                  ((hay->mask & TM_LIST) && rule_result(R_EQ, needle->mask, hay->elem));
        if (!ok) {
            if (!(hay->mask & (TM_STR | TM_LIST)))
                return fail(p, "type_error", pos,
                            "'%s' needs a list or a string to look in, found %s", binops[b].text,
                            describe_mask(hay->mask, lb));
            if (hay->mask & TM_LIST)
                return fail(p, "type_error", pos, "cannot look for %s in a list of %s values",
                            describe_mask(needle->mask, lb), describe_mask(hay->elem, rb));
            return fail(p, "type_error", pos, "cannot look for %s in a string",
                        describe_mask(needle->mask, lb));
        }
        *out = (ty){TM_BOOL, 0, l->pos, false};
        return 0;
    }
    uint16_t res = rule_result((enum rule)binops[b].rule, l->mask, r->mask);
    if (!res) {
        if (binops[b].rule <= R_ORD)
            return fail(p, "type_error", pos, "cannot compare %s with %s",
                        describe_mask(l->mask, lb), describe_mask(r->mask, rb));
        return fail(p, "type_error", pos, "cannot apply '%s' to %s and %s", binops[b].text,
                    describe_mask(l->mask, lb), describe_mask(r->mask, rb));
    }
    *out = (ty){res, TM_ANY, l->pos, false};
    return 0;
}

/* A loop over one left-associative level of binary operators. */
static int parse_binary(parser *p, enum level level, ty *out);

/* An operand of a binary operator of the given level: an expression of the next level up. */
static int parse_operand(parser *p, enum level level, ty *out) {
    return level == L_MUL ? parse_unary(p, out) : parse_binary(p, (enum level)(level + 1), out);
}

static int parse_binary(parser *p, enum level level, ty *out) {
    ty l;
    if (parse_operand(p, level, &l)) return -1;
    for (;;) {
        int b = binop_at(p, level);
        bool not_in = false;
        /* "not in": a 'not' here can only start it. */
        if (b < 0 && level == L_CMP && p->t.kind == TK_NOT) {
            size_t i = p->t.end;
            while (i < p->len && (p->src[i] == ' ' || p->src[i] == '\t' || p->src[i] == '\n' ||
                                  p->src[i] == '\r'))
                i++;
            if (i + 2 <= p->len && !memcmp(p->src + i, "in", 2) &&
                (i + 2 == p->len || !ident_char(p->src[i + 2]))) {
                not_in = true;
                if (lex(p)) return -1;
                b = binop_at(p, level);
            }
        }
        if (b < 0) break;
        size_t pos = p->t.start;
        if (node(p, pos) || lex(p)) return -1;
        ty r;
        if (parse_operand(p, level, &r)) return -1;
        if (check_binary(p, b, pos, &l, &r, &l)) return -1;
        if (emit(p, (enum op)binops[b].op, 0, 0, pos)) return -1;
        if (not_in && emit(p, OP_NOT, 0, 0, pos)) return -1;
        if (level == L_CMP) {
            if (binop_at(p, L_CMP) >= 0)
                return fail(p, "syntax_error", p->t.start,
                            "comparisons do not chain; join them with 'and'");
            break;
        }
    }
    *out = l;
    return 0;
}

/* ('not' | '!') not_expr | comparison */
static int parse_not(parser *p, ty *out) {
    if (p->t.kind != TK_NOT) return parse_binary(p, L_CMP, out);
    size_t pos = p->t.start;
    if (node(p, pos) || deeper(p) || lex(p)) return -1;
    ty o;
    if (parse_not(p, &o)) return -1;
    p->depth--;
    if (need_bool(p, &o, "not")) return -1;
    *out = (ty){TM_BOOL, 0, (uint32_t)pos, false};
    return emit(p, OP_NOT, 0, 0, pos);
}

/* One level of and / or: operands, each followed by a conditional jump past the rest. */
static int parse_logic(parser *p, int kind, ty *out) {
    const char *name = kind == TK_OR ? "or" : "and";
    ty l;
    if (kind == TK_OR ? parse_logic(p, TK_AND, &l) : parse_not(p, &l)) return -1;
    while (p->t.kind == kind) {
        size_t pos = p->t.start;
        if (need_bool(p, &l, name) || node(p, pos) || lex(p)) return -1;
        size_t jump = p->ncode;
        if (emit(p, kind == TK_OR ? OP_OR : OP_AND, 0, 0, pos)) return -1;
        ty r;
        if (kind == TK_OR ? parse_logic(p, TK_AND, &r) : parse_not(p, &r)) return -1;
        if (need_bool(p, &r, name)) return -1;
        if (r.mask != TM_BOOL && emit(p, OP_TOBOOL, 0, 0, pos)) return -1;
        p->code[jump].a = (uint32_t)p->ncode;
        l = (ty){TM_BOOL, 0, l.pos, false};
    }
    *out = l;
    return 0;
}

/* ---- Finishing: the program in one allocation ---- */

static size_t align_up(size_t n) {
    size_t a = _Alignof(max_align_t);
    return (n + a - 1) / a * a;
}

static expr *finish(parser *p, uint16_t mask) {
    size_t o_consts = align_up(sizeof(expr));
    size_t o_steps = align_up(o_consts + p->nconsts * sizeof(val));
    size_t o_code = align_up(o_steps + p->nsteps * sizeof(step));
    size_t o_paths = align_up(o_code + p->ncode * sizeof(ins));
    size_t o_pool = o_paths + p->npaths * sizeof(path);
    size_t o_src = o_pool + p->pool_used;
    size_t total = o_src + p->len + 1;
    char *base = malloc(total);
    if (!base) {
        set_error(p->err, "out_of_memory", p->src, 0, "out of memory");
        return NULL;
    }
    expr *e = (expr *)base;
    val *consts = (val *)(base + o_consts);
    step *steps = (step *)(base + o_steps);
    ins *code = (ins *)(base + o_code);
    path *paths = (path *)(base + o_paths);
    char *pool = base + o_pool, *src = base + o_src;
    if (p->nconsts) memcpy(consts, p->consts, p->nconsts * sizeof(val));
    if (p->nsteps) memcpy(steps, p->steps, p->nsteps * sizeof(step));
    if (p->ncode) memcpy(code, p->code, p->ncode * sizeof(ins));
    if (p->npaths) memcpy(paths, p->paths, p->npaths * sizeof(path));
    if (p->pool_used) memcpy(pool, p->pool, p->pool_used);
    memcpy(src, p->src, p->len);
    src[p->len] = '\0';
    /* Rebase the pointers that pointed into the parser. */
    for (size_t i = 0; i < p->nconsts; i++) {
        val *v = &consts[i];
        if (v->t == EXPR_STRING) v->u.s.p = pool + (v->u.s.p - p->pool);
        if (v->t == EXPR_LIST) v->u.l.p = consts + ((const val *)v->u.l.p - p->consts);
    }
    for (size_t i = 0; i < p->nsteps; i++)
        if (steps[i].key) steps[i].key = pool + (steps[i].key - p->pool);
    *e = (expr){.bytes = total,
                .code = code,
                .consts = consts,
                .paths = paths,
                .steps = steps,
                .src = src,
                .srclen = p->len,
                .ncode = (uint32_t)p->ncode,
                .static_cost = (uint32_t)(p->ncode + p->nsteps - p->npaths + p->bare_roots),
                .result_mask = mask};
    return e;
}

/* ---- API ---- */

static expr *compile(const char *src, size_t len, const expr_roots *roots, expr_error *err,
                     bool want_bool) {
    expr_error scratch_err;
    if (!err) err = &scratch_err;
    static const expr_roots no_roots = {NULL, 0};
    if (!roots) roots = &no_roots;
    if (!src) src = "", len = 0;
    if (len > EXPR_MAX_SOURCE) {
        char msg[64];
        snprintf(msg, sizeof msg, "expression longer than %d bytes", EXPR_MAX_SOURCE);
        set_error(err, "too_complex", src, EXPR_MAX_SOURCE, msg);
        return NULL;
    }
    if (roots->n > EXPR_MAX_ROOTS) abort(); /* the caller's table, not input */
    parser *p = malloc(sizeof *p);
    char *pool = malloc(len + 1);
    if (!p || !pool) {
        free(p);
        free(pool);
        set_error(err, "out_of_memory", src, 0, "out of memory");
        return NULL;
    }
    memset(p, 0, offsetof(parser, code));
    p->src = src;
    p->len = len;
    p->roots = roots;
    p->err = err;
    p->pool = pool;
    p->pool_cap = len + 1;
    expr *e = NULL;
    ty t;
    char buf[64];
    if (lex(p) || parse_logic(p, TK_OR, &t)) goto done;
    if (p->t.kind != TK_EOF) {
        fail(p, "syntax_error", p->t.start, "expected an operator or the end but found %s",
             describe_tok(p, buf));
        goto done;
    }
    if (want_bool && !(t.mask & TM_BOOL)) {
        fail(p, "type_error", 0, "a condition must give true or false, not %s",
             describe_mask(t.mask, buf));
        goto done;
    }
    e = finish(p, t.mask);
done:
    free(pool);
    free(p);
    return e;
}

expr *expr_compile(const char *src, size_t len, const expr_roots *roots, expr_error *err) {
    return compile(src, len, roots, err, false);
}

expr *expr_compile_bool(const char *src, size_t len, const expr_roots *roots, expr_error *err) {
    return compile(src, len, roots, err, true);
}

void expr_free(expr *e) {
    free(e);
}

const char *expr_source(const expr *e) {
    return e->src;
}

size_t expr_bytes(const expr *e) {
    return e->bytes;
}

static const uint16_t type_bit[] = {
    [EXPR_NULL] = TM_NULL, [EXPR_BOOL] = TM_BOOL, [EXPR_NUMBER] = TM_NUM, [EXPR_STRING] = TM_STR,
    [EXPR_TIME] = TM_TIME, [EXPR_LIST] = TM_LIST, [EXPR_OBJECT] = TM_OBJ,
};

bool expr_may_give(const expr *e, expr_type t) {
    return (unsigned)t <= EXPR_OBJECT && (e->result_mask & type_bit[t]);
}

static void to_public(const val *v, expr_value *out) {
    memset(out, 0, sizeof *out);
    out->type = (expr_type)v->t;
    switch ((expr_type)v->t) {
    case EXPR_NULL:
        break;
    case EXPR_BOOL:
        out->b = v->u.b;
        break;
    case EXPR_NUMBER:
        out->num = v->u.n;
        break;
    case EXPR_STRING:
        out->str = v->u.s.p;
        out->len = v->u.s.len;
        break;
    case EXPR_TIME:
        out->time_ms = v->u.ms;
        break;
    case EXPR_LIST:
        out->len = v->u.l.len;
        if (v->jlist)
            out->json = v->u.l.p;
        else
            out->items_ = v->u.l.p;
        break;
    case EXPR_OBJECT:
        out->json = v->u.obj;
        break;
    }
}

static int evaluate(const expr *e, const expr_env *env, val *res, ectx *c, expr_error *err) {
    c->e = e;
    c->now_ms = env ? env->now_ms : 0;
    uint32_t limit = env && env->cost_limit ? env->cost_limit : EXPR_DEFAULT_COST;
    c->limit = limit > EXPR_MAX_COST ? EXPR_MAX_COST : limit;
    c->cost = 0;
    c->err = err;
    c->blocks = NULL;
    c->inl_used = 0;
    return run(c, env, res);
}

int expr_eval(const expr *e, const expr_env *env, expr_value *out, expr_error *err) {
    ectx c;
    val res;
    memset(out, 0, sizeof *out);
    if (evaluate(e, env, &res, &c, err)) {
        scratch_free(&c);
        return -1;
    }
    to_public(&res, out);
    if (res.t == EXPR_STRING && res.tmp) {
        out->owned_ = malloc(res.u.s.len + 1);
        if (!out->owned_) {
            scratch_free(&c);
            memset(out, 0, sizeof *out);
            set_error(err, "out_of_memory", e->src, 0, "out of memory");
            return -1;
        }
        memcpy(out->owned_, res.u.s.p, res.u.s.len);
        out->owned_[res.u.s.len] = '\0';
        out->str = out->owned_;
    }
    scratch_free(&c);
    return 0;
}

int expr_eval_bool(const expr *e, const expr_env *env, bool *out, expr_error *err) {
    ectx c;
    val res;
    int r = evaluate(e, env, &res, &c, err);
    *out = r == 0 && truthy(&res);
    scratch_free(&c);
    return r;
}

void expr_value_free(expr_value *v) {
    if (!v) return;
    free(v->owned_);
    memset(v, 0, sizeof *v);
}

int expr_value_list_get(const expr_value *v, size_t i, expr_value *item) {
    if (v->type != EXPR_LIST || i >= v->len) return -1;
    val x;
    if (v->json)
        from_json(json_array_get(v->json, i), &x);
    else
        x = ((const val *)v->items_)[i];
    to_public(&x, item);
    return 0;
}
