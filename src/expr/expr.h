/* expr — the one small typed expression language everything that decides is written in.
 *
 * Segments, journey conditions, offer eligibility, catalogue availability rules and recommendation
 * filters and boosts are all expressions such as
 *     profile.orders_count == 0 and cart.value > 50 and "de" in profile.markets
 * The language itself (grammar, types, operators, functions, limits, errors) is documented for
 * users in ../../docs/expressions.md; this header is the contract for the code that uses it.
 *
 * Compile once, evaluate many. expr_compile() parses, type-checks and turns the source into a flat
 * program (one allocation, a few hundred bytes for a typical condition); expr_eval() runs it
 * against an environment of JSON roots without recursion and, unless the result is a string the
 * expression built, without allocating. A compiled expr is immutable: any number of threads may
 * evaluate it at once. There is no global mutable state.
 *
 * Sources come from HTTP bodies, so every dimension is capped (the EXPR_MAX_* limits below; passing
 * one is a compile error with code "too_complex"), compilation never recurses deeper than
 * EXPR_MAX_DEPTH levels of nesting, and every evaluation is charged a cost and stops with
 * "cost_exceeded" when it passes its limit, so it always ends after a bounded amount of work and
 * memory. The cost is one unit per operation and per path step after the first (charged up front,
 * whether or not `and` / `or` skip them), plus one per byte a string function, substring search or
 * concatenation reads or writes, plus one per list element `in` / `contains` looks at.
 *
 * Errors. Every failure fills an expr_error: err->ev is an ev_error (ingest/ev.h) with a code, a
 * message for people that ends with the position ("expected ')' but found end of input at 1:3"),
 * and an empty field: the caller, who knows where the expression came from, names it there (for
 * example "segments[2].condition") and can hand err->ev on as is. The codes are:
 *   syntax_error        the source does not follow the grammar
 *   type_error          operands or arguments whose types can never work together (`1 == "a"`),
 *                       or a call with the wrong number of arguments
 *   unknown_field_root  a name that is not one of the roots given to the compiler
 *   unknown_function    a call to a function the language does not have
 *   too_complex         a compile-time limit was passed (size, nesting, nodes, strings, lists)
 *   cost_exceeded       an evaluation passed its cost limit
 *   out_of_memory       malloc failed
 * Positions are 0-based byte offsets into the source; line and column are 1-based, the column
 * counting characters (UTF-8 sequences), not bytes. */
#ifndef ENGAGED_EXPR_H
#define ENGAGED_EXPR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest/ev.h"

#define EXPR_MAX_SOURCE 4096 /* bytes of source */
#define EXPR_MAX_DEPTH 64    /* nesting of parentheses, calls and unary operators */
#define EXPR_MAX_NODES 512   /* operands, operators, calls, path steps and list elements */
#define EXPR_MAX_STRING 1024 /* bytes of one string literal once its escapes are decoded */
#define EXPR_MAX_LIST 256    /* elements of one list literal */
#define EXPR_MAX_ROOTS 32    /* names an expression may start a field path from */
#define EXPR_MAX_PENDING 128 /* values waiting for an operator at once during evaluation */
#define EXPR_DEFAULT_COST 10000
#define EXPR_MAX_COST 1000000 /* a larger expr_env.cost_limit is lowered to this */

typedef struct expr expr;

/* The names field paths may start from ("profile", "event", ...), fixed when compiling. The names
 * are only read during expr_compile(). At most EXPR_MAX_ROOTS. */
typedef struct expr_roots {
    const char *const *names;
    size_t n;
} expr_roots;

typedef struct expr_error {
    ev_error ev;   /* code (one of the list above), message; field left "" for the caller */
    size_t pos;    /* where the fault is, 0-based byte offset, never more than the source length */
    unsigned line; /* 1-based */
    unsigned column; /* 1-based, in characters */
} expr_error;

/* What one evaluation sees. values[i] is the JSON value of root i (in the order the roots were
 * given to expr_compile); NULL, or an i >= n, reads as null. The values are only read, and must
 * not change during the evaluation. now_ms is the engine's clock: the language never reads the
 * wall clock, so the same env always gives the same result. cost_limit 0 means EXPR_DEFAULT_COST.
 */
typedef struct expr_env {
    const json_t *const *values;
    size_t n;
    int64_t now_ms;
    uint32_t cost_limit;
} expr_env;

typedef enum expr_type {
    EXPR_NULL,
    EXPR_BOOL,
    EXPR_NUMBER,
    EXPR_STRING,
    EXPR_TIME,
    EXPR_LIST,
    EXPR_OBJECT /* only ever read from a field: the language has no object literals */
} expr_type;

/* A result. Ownership: a value may borrow from the env's JSON and from the compiled expr, so it is
 * valid while both live unchanged; a string the evaluation built (lower(), a + b, ...) is owned by
 * the value. Always release a value that expr_eval() filled with expr_value_free(). */
typedef struct expr_value {
    expr_type type;
    bool b;             /* EXPR_BOOL */
    double num;         /* EXPR_NUMBER; always finite */
    int64_t time_ms;    /* EXPR_TIME: ms since the epoch, UTC, within years 1..9999 */
    const char *str;    /* EXPR_STRING: len bytes of UTF-8, not NUL-terminated */
    size_t len;         /* EXPR_STRING: bytes; EXPR_LIST: elements */
    const json_t *json; /* EXPR_LIST read from a field, and EXPR_OBJECT; NULL for a list literal */
    const void *items_; /* private: the elements of a list literal */
    char *owned_;       /* private: freed by expr_value_free() */
} expr_value;

/* Compiles src[0..len) (need not be NUL-terminated). Returns the program, or NULL with *err filled
 * (err may be NULL). roots may be NULL (no roots). Cost: linear in len; about 40 KB of temporary
 * heap, one allocation kept for the result, and about 1.6 KB of stack per level of nesting (some
 * 100 KB at EXPR_MAX_DEPTH), so call it on a thread with an ordinary stack, not a tiny one. */
expr *expr_compile(const char *src, size_t len, const expr_roots *roots, expr_error *err);
/* The same, and also refuses, with a type_error at position 0, an expression that can never give
 * a bool ("the expression gives a number; a condition must give true or false"): what segments,
 * journey conditions, eligibility and availability rules use. */
expr *expr_compile_bool(const char *src, size_t len, const expr_roots *roots, expr_error *err);
void expr_free(expr *e);

/* Evaluates e. Returns 0 with *out filled, or -1 with *err filled (cost_exceeded, out_of_memory)
 * and *out set to null. Either way *out must be released with expr_value_free(). Run-time type
 * mismatches are not errors (docs/expressions.md: comparisons give false, arithmetic null). env may
 * be NULL (every field null, the clock at 0). Uses about 3.5 KB of stack. */
int expr_eval(const expr *e, const expr_env *env, expr_value *out, expr_error *err);
/* Evaluates e as a condition: *out is true only when the result is the bool true (null and every
 * other value count as false). Returns 0, or -1 with *err filled and *out false. Allocates only if
 * the expression builds strings. */
int expr_eval_bool(const expr *e, const expr_env *env, bool *out, expr_error *err);

void expr_value_free(expr_value *v);
/* Element i of a list value: fills *item (borrowed from the list; nothing to free) and returns 0,
 * or returns -1 when v is not a list or i is out of range. */
int expr_value_list_get(const expr_value *v, size_t i, expr_value *item);

/* The source as compiled, NUL-terminated. */
const char *expr_source(const expr *e);
/* The bytes e holds, for memory accounting. */
size_t expr_bytes(const expr *e);
/* Whether e may give a value of type t, as far as compile-time typing knows (a field may hold
 * anything, so an expression that is a field may give every type). */
bool expr_may_give(const expr *e, expr_type t);

#endif
