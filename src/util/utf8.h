/* utf8 — checking and writing UTF-8 by the rules JSON holds strings to (jansson's, RFC 3629): no
 * overlong forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF, nothing cut short.
 *
 * Header-only, as the JSON scanner (jscan) checks every non-ASCII byte of every event with it; the
 * expression language and the consent ledger use the same rules. No allocation; thread-safe. */
#ifndef ENGAGED_UTF8_H
#define ENGAGED_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The length (1 to 4) of the valid sequence that starts s[0..n), n >= 1; 0 when it is invalid or
 * cut short. An ASCII byte (NUL included) is a sequence of 1. */
static inline size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xc2 || c > 0xf4)
        return 0; /* a continuation byte, an overlong 2-byte lead, too large */
    if (c < 0xe0) return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    /* The second byte's range rules out overlong forms (e0, f0), surrogates (ed) and code points
     * above U+10FFFF (f4). */
    unsigned char lo = 0x80, hi = 0xbf;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
    if (n < 2 || s[1] < lo || s[1] > hi) return 0;
    if (c < 0xf0) return n >= 3 && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    return n >= 4 && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
}

/* Writes code point cp (at most U+10FFFF, not a surrogate) into out; returns the bytes written. */
static inline size_t utf8_put(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

#endif
