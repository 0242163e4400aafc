#include "util/jscan.h"

#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "util/buf.h"
#include "util/hash.h"
#include "util/jsonw.h"
#include "util/utf8.h"

/* Up to this many members an object's keys are compared pairwise (at most 120 comparisons, most
 * decided by length and first byte); above, through the doc's hash table. */
#define JS_PAIRWISE_MAX 16
/* The tape's first size: a 300-byte event has some 30 tokens, so it never grows after the first. */
#define JS_FIRST_CAP 64

/* ---------------------------------------------------------------------------------------------
 * Scanning */

/* Skips whitespace; clears *compact when there was some (the enclosing container's text is then
 * not what js_write() writes). */
static inline const char *skip_ws(const char *p, const char *end, uint8_t *compact) {
    /* Compact text has no whitespace: one test decides the common case. */
    if (p < end && (unsigned char)*p > ' ') return p;
    const char *from = p;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    if (p != from) *compact = 0;
    return p;
}

/* The first byte at or after p that a string body cannot hold verbatim ('"', '\\', a control byte,
 * a byte of a multi-byte UTF-8 sequence), or end. */
static inline const char *skip_plain(const char *p, const char *end) {
#if defined(__SSE2__)
    /* Signed, bytes 0x80..0xff are negative: one comparison finds them and the control bytes. */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                  space = _mm_set1_epi8(' ');
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i hit =
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                         _mm_cmplt_epi8(v, space));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask) return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c - 0x20u >= 0x60u || c == '"' || c == '\\') break;
        p++;
    }
    return p;
}

/* c - '0' as unsigned: below 10 for a digit, large for anything else. */
static inline unsigned digit(char c) {
    return (unsigned)(unsigned char)c - '0';
}

static inline int hexval(char c) {
    unsigned u = digit(c), l = (unsigned)((unsigned char)c | 0x20) - 'a';
    if (u < 10) return (int)u;
    if (l < 6) return (int)l + 10;
    return -1;
}

/* The value of the 4 hex digits at p (which has 4 bytes), or -1. */
static inline int32_t hex4(const char *p) {
    int a = hexval(p[0]), b = hexval(p[1]), c = hexval(p[2]), d = hexval(p[3]);
    if ((a | b | c | d) < 0) return -1;
    return (a << 12) | (b << 8) | (c << 4) | d;
}

/* Validates the escape at p (a backslash) as jansson does; returns the byte after it or NULL.
 * \u0000 is refused (jansson refuses a NUL in a decoded string); a high surrogate must be followed
 * directly by an escaped low one; a lone low surrogate is refused. */
static const char *scan_escape(const char *p, const char *end) {
    if (end - p < 2) return NULL;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        return p + 2;
    case 'u':
        break;
    default:
        return NULL;
    }
    if (end - p < 6) return NULL;
    int32_t u = hex4(p + 2);
    if (u <= 0 || (u >= 0xdc00 && u <= 0xdfff)) return NULL;
    if (u < 0xd800 || u > 0xdbff) return p + 6;
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u') return NULL;
    int32_t lo = hex4(p + 8);
    if (lo < 0xdc00 || lo > 0xdfff) return NULL;
    return p + 12;
}

/* Scans a string body from p (after the opening quote); returns the closing quote or NULL. Sets
 * *escaped when the body has an escape. */
static inline __attribute__((always_inline)) const char *scan_string(const char *p, const char *end,
                                                                     uint8_t *escaped) {
    for (;;) {
        p = skip_plain(p, end);
        if (p == end) return NULL;
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p;
        if (c == '\\') {
            *escaped = 1;
            p = scan_escape(p, end);
        } else if (c < 0x20) {
            return NULL;
        } else { /* a byte >= 0x80: a multi-byte sequence, checked as jansson checks it */
            size_t k = utf8_seq((const unsigned char *)p, (size_t)(end - p));
            p = k ? p + k : NULL;
        }
        if (!p) return NULL;
    }
}

/* Whether every escape in a string's raw text (n bytes) is the one buf_json_escape() writes for
 * its character: \" \\ \n \r \t, and \u00xx in lower case for the other control bytes. Then
 * the text is what js_write() writes. */
static bool escapes_canonical(const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const char *e = s + n;
    while ((s = memchr(s, '\\', (size_t)(e - s)))) {
        char c = s[1];
        if (c == '"' || c == '\\' || c == 'n' || c == 'r' || c == 't') {
            s += 2;
            continue;
        }
        if (c != 'u') return false;
        int32_t v = hex4(s + 2);
        if (v >= 0x20 || v == '\n' || v == '\r' || v == '\t') return false;
        if (s[2] != '0' || s[3] != '0' || s[4] != hex[v >> 4] || s[5] != hex[v & 15]) return false;
        s += 6;
    }
    return true;
}

/* strtod() as jansson calls it: on a NUL-terminated copy whose '.' is the locale's decimal point;
 * overflow (±HUGE_VAL with ERANGE) refused, underflow accepted. Returns 0 or -1. */
static int read_real_slow(const char *s, size_t n, double *out) {
    char small[64], *copy = n < sizeof small ? small : malloc(n + 1);
    if (!copy) return -1;
    memcpy(copy, s, n);
    copy[n] = '\0';
    const char *point = localeconv()->decimal_point;
    if (*point != '.') {
        char *dot = memchr(copy, '.', n);
        if (dot) *dot = *point;
    }
    char *stop;
    errno = 0;
    double v = strtod(copy, &stop);
    bool ok = stop == copy + n && !((v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE);
    if (copy != small) free(copy);
    if (!ok) return -1;
    *out = v;
    return 0;
}

/* Whether jsonw_real() writes the double read from s (a real's n bytes of text) as s itself: no
 * exponent, a fraction that does not end in 0, at most 15 significant digits (DBL_DIG: the double
 * nearest such a decimal prints back as that decimal with "%.15g", which jsonw_real() tries first)
 * and a magnitude for which "%g" chooses fixed notation (first significant digit at 10^-4 to
 * 10^14). Saves the printf and strtod round trip for prices like 19.99. */
static bool real_is_canonical(const char *s, size_t n) {
    size_t i = s[0] == '-', dot = 0;
    if (s[n - 1] == '0') return false;
    for (size_t j = i; j < n; j++) {
        if (s[j] == '.') dot = j;
        if (s[j] == 'e' || s[j] == 'E') return false;
    }
    if (!dot) return false;
    size_t sig = n - i - 1; /* digits, the point excluded */
    if (s[i] == '0') {
        size_t zeros = 1; /* the integer part's 0, then the fraction's leading zeros */
        while (s[dot + zeros] == '0')
            zeros++;
        if (zeros > 4) return false; /* below 10^-4 "%g" uses an exponent */
        sig -= zeros;
    }
    return sig <= 15;
}

/* Powers of ten that are exact doubles. */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Scans the number at p (a '-' or a digit) into t; returns the byte after it or NULL. jansson's
 * grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; without fraction and exponent an
 * integer, refused outside int64 (strtoll's ERANGE); otherwise a real. */
static const char *scan_number(const char *p, const char *end, js_tok *t) {
    const char *s = p;
    bool neg = *p == '-';
    if (neg && ++p == end) return NULL;
    uint64_t m = 0;    /* the first 19 significant digits */
    int nd = 0;        /* how many digits m holds, from the first nonzero one */
    bool more = false; /* digits beyond those 19 */
    int64_t e10 = 0;   /* the value is m * 10^e10 when !more */
    unsigned d = digit(*p);
    if (d == 0) {
        p++;
    } else if (d < 10) {
        do {
            if (nd < 19)
                m = m * 10 + d, nd++;
            else
                more = true, e10++;
            p++;
        } while (p < end && (d = digit(*p)) < 10);
    } else {
        return NULL;
    }
    if (p == end || (*p != '.' && *p != 'e' && *p != 'E')) {
        /* "01" is two tokens for jansson, and a digit cannot follow a value: refused. */
        if (p < end && digit(*p) < 10) return NULL;
        if (more || m > (uint64_t)INT64_MAX + neg) return NULL;
        t->kind = JS_INT;
        t->num.i = neg ? (int64_t)(0 - m) : (int64_t)m;
        t->len = (uint32_t)(p - s);
        t->verbatim = !(neg && m == 0); /* the grammar leaves the text canonical, but for "-0" */
        return p;
    }
    if (*p == '.') {
        p++;
        if (p == end || (d = digit(*p)) >= 10) return NULL;
        do {
            if (nd < 19) {
                m = m * 10 + d, e10--;
                if (m) nd++;
            } else {
                more = true;
            }
            p++;
        } while (p < end && (d = digit(*p)) < 10);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        if (p == end || (d = digit(*p)) >= 10) return NULL;
        int64_t x = 0;
        do {
            if (x < 1000000) x = x * 10 + d; /* beyond this, only strtod's answer matters */
            p++;
        } while (p < end && (d = digit(*p)) < 10);
        e10 += eneg ? -x : x;
    }
    double v;
    if (m == 0) { /* every digit 0 (m holds the first 19 significant ones, so more is false) */
        v = neg ? -0.0 : 0.0;
    } else if (!more && m <= (1ull << 53) && e10 >= -22 && e10 <= 22 && FLT_EVAL_METHOD == 0) {
        /* Clinger's fast path: m and 10^|e10| are exact doubles, so one correctly rounded
         * operation gives the double nearest the text, which is what strtod() returns. (With
         * excess precision, FLT_EVAL_METHOD != 0, it would round twice.) */
        v = (double)m;
        v = e10 < 0 ? v / pow10_exact[-e10] : v * pow10_exact[e10];
        if (neg) v = -v;
    } else if (read_real_slow(s, (size_t)(p - s), &v)) {
        return NULL;
    }
    t->kind = JS_REAL;
    t->num.d = v;
    t->len = (uint32_t)(p - s);
    t->verbatim = real_is_canonical(s, t->len);
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * The tape */

void js_init(js_doc *d, uint32_t max_tokens) {
    memset(d, 0, sizeof *d);
    d->max_tokens = max_tokens;
}

void js_free(js_doc *d) {
    free(d->tok);
    free(d->seen);
    memset(d, 0, sizeof *d);
}

/* Doubles the tape for token n, up to limit tokens. Returns the tokens there is now room for
 * (more than n), or 0: the limit is reached or memory ran out. */
static uint32_t grow(js_doc *d, uint32_t n, uint32_t limit) {
    if (n >= limit) return 0;
    uint32_t cap = d->cap < JS_FIRST_CAP ? JS_FIRST_CAP : d->cap > limit / 2 ? limit : d->cap * 2;
    if (cap > limit) cap = limit;
#if SIZE_MAX / 32 < UINT32_MAX
    if (cap > SIZE_MAX / sizeof(js_tok)) return 0;
#endif
    js_tok *tok = realloc(d->tok, cap * sizeof *tok);
    if (!tok) return 0;
    d->tok = tok;
    d->cap = cap;
    return cap;
}

static inline bool key_eq(const js_doc *d, uint32_t a, uint32_t b) {
    const js_tok *x = &d->tok[a], *y = &d->tok[b];
    return x->len == y->len && memcmp(d->text + x->start, d->text + y->start, x->len) == 0;
}

/* Whether object obj has two equal keys (or the table for them could not be allocated). */
static bool dup_keys(js_doc *d, uint32_t obj) {
    const js_tok *tok = d->tok;
    uint32_t count = tok[obj].count, k = obj + 1;
    if (count <= JS_PAIRWISE_MAX) {
        /* A key's length and first byte (the closing quote when empty) decide most comparisons
         * without a memcmp. */
        uint32_t keys[JS_PAIRWISE_MAX], sig[JS_PAIRWISE_MAX];
        for (uint32_t i = 0; i < count; i++, k = tok[k + 1].next) {
            uint32_t x = tok[k].len << 8 | (unsigned char)d->text[tok[k].start];
            for (uint32_t j = 0; j < i; j++)
                if (sig[j] == x && key_eq(d, keys[j], k)) return true;
            keys[i] = k;
            sig[i] = x;
        }
        return false;
    }
    /* Open addressing at most half full; a slot holds a key's token index + 1. hash64() is seeded
     * per process, so a sender cannot choose keys that collide. */
    size_t size = 64;
    while (size < 2 * (size_t)count)
        size *= 2;
    if (size > d->seen_cap) {
        free(d->seen);
        d->seen_cap = 0;
        d->seen = malloc(size * sizeof *d->seen);
        if (!d->seen) return true;
        d->seen_cap = size;
    }
    memset(d->seen, 0, size * sizeof *d->seen);
    for (uint32_t i = 0; i < count; i++, k = tok[k + 1].next) {
        size_t h = (size_t)hash64(d->text + tok[k].start, tok[k].len) & (size - 1);
        for (; d->seen[h]; h = (h + 1) & (size - 1))
            if (key_eq(d, d->seen[h] - 1, k)) return true;
        d->seen[h] = k + 1;
    }
    return false;
}

/* One pass, a state machine: "value" reads a value, "next" what follows one (a ',' or closing
 * brackets), "key" an object key and its ':'. The open containers are on a stack of token indexes;
 * each is completed (len, next, verbatim; duplicate keys) when it closes. */
int js_parse(js_doc *d, const char *text, size_t len, int max_depth) {
    d->text = text;
    d->len = len;
    d->n = 0;
    if (len > UINT32_MAX - 1 || max_depth < 0 || max_depth > JS_MAX_DEPTH) return -1;
    /* Every token takes a byte of text at least, so the text's length bounds the tape too. */
    uint32_t limit = d->max_tokens && d->max_tokens < len ? d->max_tokens : (uint32_t)len;
    uint32_t stack[JS_MAX_DEPTH]; /* the open containers' token indexes, outermost first */
    /* compact[k]: the open container at depth k has had only verbatim text so far (compact[0]
     * stands for the top level, where nothing reads it). */
    uint8_t compact[JS_MAX_DEPTH + 1];
    /* keys[k]: one bit per key of the open object at depth k, at a hash of the key's length and
     * some of its bytes; maybe_dup[k]: a key found its bit already set. Only then is the object
     * searched for a duplicate when it closes, which most objects are not. */
    uint64_t keys[JS_MAX_DEPTH + 1];
    uint8_t maybe_dup[JS_MAX_DEPTH + 1];
    int depth = 0;
    /* The tape, kept in locals: token stores could otherwise alias d. room = min(cap, limit). */
    js_tok *tok = d->tok, *t, *open;
    uint32_t n = 0, room = d->cap < limit ? d->cap : limit;
    const char *p = text, *const end = text + len, *q;
    uint8_t escaped;
    char c;
    compact[0] = 1;

value: /* A value starts at p, after whitespace maybe. */
    p = skip_ws(p, end, &compact[depth]);
    if (p == end) goto refuse;
    if (n == room) {
        if (!(room = grow(d, n, limit))) goto refuse;
        tok = d->tok;
    }
    t = &tok[n];
    t->escaped = 0;
    t->verbatim = 1;
    t->start = (uint32_t)(p - text);
    t->next = ++n;
    t->count = 0;
    t->num.i = 0;
    c = *p;
    if (c == '"') {
        if (!(q = scan_string(p + 1, end, &t->escaped))) goto refuse;
        t->kind = JS_STRING;
        t->start++;
        t->len = (uint32_t)(q - p - 1);
        if (t->escaped) t->verbatim = escapes_canonical(p + 1, t->len);
        p = q + 1;
    } else if (c == '{' || c == '[') {
        if (depth == max_depth) goto refuse;
        t->kind = c == '{' ? JS_OBJECT : JS_ARRAY;
        stack[depth++] = n - 1;
        compact[depth] = 1;
        keys[depth] = 0;
        maybe_dup[depth] = 0;
        p = skip_ws(p + 1, end, &compact[depth]);
        if (p == end) goto refuse;
        if (*p != c + 2) { /* '}' is '{' + 2, ']' is '[' + 2 */
            t->count = 1;
            if (c == '{') goto key;
            goto value;
        }
        t->len = (uint32_t)(p - text) - t->start + 1;
        t->verbatim = compact[depth--];
        p++;
    } else if (c == '-' || digit(c) < 10) {
        if (!(p = scan_number(p, end, t))) goto refuse;
    } else if (c == 't' && end - p >= 4 && memcmp(p, "true", 4) == 0) {
        t->kind = JS_TRUE, t->len = 4, p += 4;
    } else if (c == 'f' && end - p >= 5 && memcmp(p, "false", 5) == 0) {
        t->kind = JS_FALSE, t->len = 5, p += 5;
    } else if (c == 'n' && end - p >= 4 && memcmp(p, "null", 4) == 0) {
        t->kind = JS_NULL, t->len = 4, p += 4;
    } else {
        goto refuse;
    }
    if (!t->verbatim) compact[depth] = 0;

next: /* A value ended at p: a ',' calls for the next one, or the container closes. */
    if (depth == 0) goto done;
    p = skip_ws(p, end, &compact[depth]);
    if (p == end) goto refuse;
    open = &tok[stack[depth - 1]];
    if (*p == ',') {
        open->count++;
        p++;
        if (open->kind == JS_OBJECT) goto key;
        goto value;
    }
    if (*p != (open->kind == JS_OBJECT ? '}' : ']')) goto refuse;
    open->len = (uint32_t)(p - text) - open->start + 1;
    open->next = n;
    open->verbatim = compact[depth];
    if (maybe_dup[depth] && dup_keys(d, stack[depth - 1])) goto refuse;
    depth--;
    if (!open->verbatim) compact[depth] = 0;
    p++;
    goto next;

key: /* An object key starts at p, after whitespace maybe; then a ':' and the value. */
    p = skip_ws(p, end, &compact[depth]);
    if (p == end || *p != '"') goto refuse;
    if (n == room) {
        if (!(room = grow(d, n, limit))) goto refuse;
        tok = d->tok;
    }
    t = &tok[n];
    escaped = 0;
    if (!(q = scan_string(p + 1, end, &escaped)) || escaped) goto refuse;
    {
        /* Equal keys have the same length and first, middle and last bytes (quotes when
         * empty); distinct keys seldom do. */
        size_t kl = (size_t)(q - p - 1);
        uint32_t h = (uint32_t)kl ^ (uint32_t)(unsigned char)p[1] << 8 ^
                     (uint32_t)(unsigned char)p[1 + kl / 2] << 16 ^
                     (uint32_t)(unsigned char)q[-1] << 24;
        uint64_t bit = 1ull << (h * 0x9e3779b1u >> 26);
        maybe_dup[depth] |= (keys[depth] & bit) != 0;
        keys[depth] |= bit;
    }
    t->kind = JS_STRING;
    t->escaped = 0;
    t->verbatim = 1;
    t->start = (uint32_t)(p + 1 - text);
    t->len = (uint32_t)(q - p - 1);
    t->next = ++n;
    t->count = 0;
    t->num.i = 0;
    p = skip_ws(q + 1, end, &compact[depth]);
    if (p == end || *p != ':') goto refuse;
    p++;
    goto value;

done:
    if (skip_ws(p, end, &compact[0]) != end) goto refuse;
    d->n = n;
    return 0;
refuse:
    d->n = 0;
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Reading values */

uint32_t js_get(const js_doc *d, uint32_t obj, const char *key, size_t keylen) {
    const js_tok *tok = d->tok;
    if (obj >= d->n || tok[obj].kind != JS_OBJECT) return 0;
    uint32_t k = obj + 1;
    for (uint32_t i = 0; i < tok[obj].count; i++, k = tok[k + 1].next)
        if (tok[k].len == keylen && memcmp(d->text + tok[k].start, key, keylen) == 0) return k + 1;
    return 0;
}

/* Decodes the escape at *sp (a backslash of an escape js_parse() validated) into out (1 to 4
 * bytes of UTF-8); returns how many and moves *sp past the escape. */
static size_t decode_escape(const char **sp, char *out) {
    const char *s = *sp;
    *sp = s + 2;
    switch (s[1]) {
    case 'b':
        *out = '\b';
        return 1;
    case 'f':
        *out = '\f';
        return 1;
    case 'n':
        *out = '\n';
        return 1;
    case 'r':
        *out = '\r';
        return 1;
    case 't':
        *out = '\t';
        return 1;
    case 'u':
        break;
    default: /* '"', '\\', '/' */
        *out = s[1];
        return 1;
    }
    uint32_t u = (uint32_t)hex4(s + 2);
    *sp = s + 6;
    if (u >= 0xd800 && u <= 0xdbff) {
        u = 0x10000 + ((u - 0xd800) << 10) + ((uint32_t)hex4(s + 8) - 0xdc00);
        *sp = s + 12;
    }
    return utf8_put(u, out);
}

size_t js_string(const js_doc *d, uint32_t t, char *out) {
    const js_tok *k = &d->tok[t];
    const char *s = d->text + k->start, *e = s + k->len;
    if (!k->escaped) {
        memcpy(out, s, k->len);
        out[k->len] = '\0';
        return k->len;
    }
    char *o = out;
    while (s < e) {
        const char *bs = memchr(s, '\\', (size_t)(e - s));
        if (!bs) bs = e;
        memcpy(o, s, (size_t)(bs - s));
        o += bs - s;
        s = bs;
        if (s < e) o += decode_escape(&s, o);
    }
    *o = '\0';
    return (size_t)(o - out);
}

/* ---------------------------------------------------------------------------------------------
 * Writing */

/* A string that is not verbatim: it has escapes that buf_json_escape() writes differently. */
static int write_string(buf *b, const js_doc *d, const js_tok *t) {
    const char *s = d->text + t->start, *e = s + t->len;
    /* Raw runs between escapes hold no '"', '\\' or control byte, which is all buf_json_escape()
     * changes, so they are copied; each decoded escape goes through buf_json_escape(), which maps
     * byte by byte, so the whole is what it makes of the decoded string. */
    int rc = buf_putc(b, '"');
    while (!rc && s < e) {
        const char *bs = memchr(s, '\\', (size_t)(e - s));
        if (!bs) bs = e;
        if (bs > s) rc = buf_append(b, s, (size_t)(bs - s));
        s = bs;
        if (!rc && s < e) {
            char u[4];
            size_t n = decode_escape(&s, u);
            rc = buf_json_escape(b, u, n);
        }
    }
    return rc ? rc : buf_putc(b, '"');
}

int js_write(buf *b, const js_doc *d, uint32_t t) {
    const js_tok *tok = d->tok;
    uint32_t open[JS_MAX_DEPTH]; /* the containers being written; none is deeper than the parse */
    int sp = 0, rc;
    uint32_t i = t;
    do {
        if (sp) {
            if (i != open[sp - 1] + 1 && (rc = buf_putc(b, ','))) return rc;
            if (tok[open[sp - 1]].kind == JS_OBJECT) {
                /* Keys have no escapes: the quoted text is the answer. */
                const js_tok *k = &tok[i++];
                if ((rc = buf_append(b, d->text + k->start - 1, k->len + 2)) ||
                    (rc = buf_putc(b, ':')))
                    return rc;
            }
        }
        const js_tok *v = &tok[i];
        if (v->verbatim) {
            bool quoted = v->kind == JS_STRING;
            rc = buf_append(b, d->text + v->start - quoted, v->len + 2 * quoted);
            i = v->next;
        } else {
            switch (v->kind) {
            case JS_ARRAY:
            case JS_OBJECT: /* an empty one ("[ ]") is closed by the loop below */
                rc = buf_putc(b, v->kind == JS_ARRAY ? '[' : '{');
                open[sp++] = i;
                break;
            case JS_STRING:
                rc = write_string(b, d, v);
                break;
            case JS_INT: /* "-0" */
                rc = buf_putc(b, '0');
                break;
            default: /* JS_REAL: literals are always verbatim */
                rc = jsonw_real(b, v->num.d);
                break;
            }
            i++;
        }
        if (rc) return rc;
        while (sp && i == tok[open[sp - 1]].next) {
            if ((rc = buf_putc(b, tok[open[sp - 1]].kind == JS_ARRAY ? ']' : '}'))) return rc;
            sp--;
        }
    } while (sp);
    return BUF_OK;
}

json_t *js_to_json(const js_doc *d, uint32_t t) {
    const js_tok *v = &d->tok[t];
    switch (v->kind) {
    case JS_NULL:
        return json_null();
    case JS_FALSE:
        return json_false();
    case JS_TRUE:
        return json_true();
    case JS_INT:
        return json_integer(v->num.i);
    case JS_REAL:
        return json_real(v->num.d);
    case JS_STRING: {
        char small[256], *s = v->len < sizeof small ? small : malloc((size_t)v->len + 1);
        if (!s) return NULL;
        size_t n = js_string(d, t, s);
        json_t *j = json_stringn_nocheck(s, n);
        if (s != small) free(s);
        return j;
    }
    case JS_ARRAY: {
        json_t *a = json_array();
        if (!a) return NULL;
        uint32_t k = t + 1;
        for (uint32_t i = 0; i < v->count; i++, k = d->tok[k].next) {
            if (json_array_append_new(a, js_to_json(d, k))) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case JS_OBJECT: {
        json_t *o = json_object();
        if (!o) return NULL;
        uint32_t k = t + 1;
        for (uint32_t i = 0; i < v->count; i++, k = d->tok[k + 1].next) {
            const js_tok *key = &d->tok[k];
            if (json_object_setn_new_nocheck(o, d->text + key->start, key->len,
                                             js_to_json(d, k + 1))) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    }
    return NULL;
}
