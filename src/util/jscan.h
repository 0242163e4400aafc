/* jscan — a validating JSON scanner that reads a document into a flat array of tokens (a "tape").
 *
 * Why: the event-collection path validates each event and writes it back out, and jansson's
 * json_loadb() costs some 130 instructions per byte plus a malloc per value. js_parse() reads the
 * text in one pass into a reusable array of tokens, with no allocation per value, and js_write()
 * writes a value back exactly as jsonw_value() would write jansson's reading of it.
 *
 * It is a fast path with a fallback: js_parse() never accepts a text that jansson's
 * json_loadb(text, len, JSON_DECODE_ANY, &err) refuses, and every value it accepts means exactly
 * what jansson reads (the same integers, the same doubles, the same decoded strings, members in the
 * same order). It refuses some texts jansson accepts, and the caller then hands them to jansson:
 *   - nesting deeper than max_depth (the root container is depth 1);
 *   - more than max_tokens tokens (object keys count as tokens);
 *   - an object key with a backslash escape (so keys compare as raw bytes);
 *   - an object with two equal keys (jansson keeps the first key's position and the last value);
 *   - a NUL byte directly after a number or a literal: jansson skips one there (its lexer puts
 *     back the byte that ends a token, and a NUL put back reads as "buffer empty"), so it reads
 *     "[1\0]" as [1];
 *   - a text of more than UINT32_MAX - 1 bytes (offsets are 32 bits); memory running out.
 * Reals are read as jansson reads them, with strtod() after turning '.' into the locale's decimal
 * point; except that when the digits form an integer of at most 2^53 and the power of ten is within
 * 10^-22..10^22, one multiplication or division of two exact doubles (Clinger's fast path) gives
 * the same correctly rounded double without the call.
 *
 * Ownership: a js_doc owns its token array (and a small scratch table for duplicate keys), both
 * reused by the next js_parse() and released by js_free(). It never owns the text, which must
 * outlive every use of the tokens. Tokens are valid until the next js_parse() or js_free().
 *
 * Cost: js_parse() is one pass over the text, strings scanned 16 bytes at a time with SSE2 (some
 * 11-12 instructions a byte on a 280-byte track event, against jansson's 130 and its mallocs).
 * Duplicate keys cost a 64-bit filter per object, then, only when two keys fall on the same bit,
 * a pairwise comparison up to 16 members and a hash table above. Stack use is fixed (some 4 KB
 * for JS_MAX_DEPTH levels). js_write() copies every value whose text is already what it writes
 * (js_tok.verbatim), so a compact event is written in one copy; it and js_to_json() are bounded by
 * the parse depth. */
#ifndef ENGAGED_JSCAN_H
#define ENGAGED_JSCAN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* struct buf is util/buf.h's buf. Declared, not included: headers that include this one (ev.h)
 * reach files that name a local variable buf, which the typedef would shadow under -Wshadow. */
struct buf;

/* The most max_depth js_parse() takes: the container stack lives on the C stack. */
#define JS_MAX_DEPTH 256

typedef enum js_kind {
    JS_NULL,
    JS_FALSE,
    JS_TRUE,
    JS_INT,
    JS_REAL,
    JS_STRING,
    JS_ARRAY,
    JS_OBJECT
} js_kind;

typedef struct js_tok {
    uint8_t kind;    /* js_kind */
    uint8_t escaped; /* JS_STRING: the raw text has backslash escapes (js_string() decodes them) */
    /* The value's text is already what js_write() writes for it (no whitespace inside, strings
     * escaped as buf_json_escape() escapes, numbers as jsonw writes them), so js_write() copies
     * it: a compact event is written back in one copy. (It sits in padding: a token stays 32
     * bytes.) */
    uint8_t verbatim;
    /* Offset in the text: a string's first byte after its opening quote; a container's '[' or '{';
     * a number's or literal's first byte. */
    uint32_t start;
    /* A string: raw bytes between the quotes; a container: bytes from its bracket to its closing
     * bracket included; a number or literal: its bytes. */
    uint32_t len;
    uint32_t next;  /* index of the first token after this value, its contents included */
    uint32_t count; /* JS_OBJECT: members; JS_ARRAY: elements; else 0 */
    union {
        int64_t i; /* JS_INT */
        double d;  /* JS_REAL */
    } num;
} js_tok;
/* Layout: token 0 is the root value. A container's contents follow it directly: an object's
 * members each as a key token (JS_STRING) followed by the value's tokens; an array's elements in
 * order. So a container's first child is at index + 1, each next sibling at the previous one's
 * next (a member's value at key + 1), and the container ends at its own next. */

typedef struct js_doc {
    const char *text; /* the text of the last js_parse(), not owned */
    size_t len;
    js_tok *tok; /* tokens, owned; the array is reused by the next js_parse() */
    uint32_t n;  /* tokens of the last successful js_parse(); 0 after a refusal */
    uint32_t cap;
    uint32_t max_tokens; /* 0: bounded only by the text's length (a token takes a byte at least) */
    /* Private: the duplicate-key table for objects of more than 16 members, owned and reused. */
    uint32_t *seen;
    size_t seen_cap;
} js_doc;

/* An empty document; allocates nothing until the first js_parse(). */
void js_init(js_doc *d, uint32_t max_tokens);
/* Releases what d owns; d can be js_init()ed again. */
void js_free(js_doc *d);

/* Reads text into d. Returns 0 and fills d, or -1 when not accepted: invalid JSON (which jansson
 * refuses too), or one of the refusals listed at the top (which jansson may accept), or max_depth
 * outside 0..JS_MAX_DEPTH. After -1, d->n is 0 and d holds no value. */
int js_parse(js_doc *d, const char *text, size_t len, int max_depth);

/* The value token of key in object token obj, or 0 when absent or obj is not an object (0 is the
 * root, never a member). Compares raw bytes, which is exact because js_parse() refuses keys with
 * escapes. Linear in the object's members. */
uint32_t js_get(const js_doc *d, uint32_t obj, const char *key, size_t keylen);

/* Decodes string token t into out, which has room for d->tok[t].len + 1 bytes (decoding never
 * lengthens a string); NUL-terminates; returns the decoded length. The result is valid UTF-8
 * without NUL bytes. */
size_t js_string(const js_doc *d, uint32_t t, char *out);

/* Appends value t exactly as jsonw_value() writes jansson's reading of the same text: compact,
 * members in order, strings escaped by buf_json_escape(), integers in decimal, reals by
 * jsonw_real(). Returns BUF_OK or the buf's error (b then holds a partial value the caller
 * discards). Iterative, with a stack of JS_MAX_DEPTH entries. */
int js_write(struct buf *b, const js_doc *d, uint32_t t);

/* A new jansson value (the caller owns the reference) json_equal() to jansson's reading of value
 * t, with members in the same order; NULL when memory runs out. Recursion is bounded by the parse
 * depth. */
json_t *js_to_json(const js_doc *d, uint32_t t);

#endif
