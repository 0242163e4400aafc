#include "util/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_UNCAPPED (SIZE_MAX / 2)

void buf_init(buf *b, size_t cap) {
    b->data = NULL;
    b->len = b->alloc = 0;
    b->cap = cap;
}

void buf_free(buf *b) {
    free(b->data);
    buf_init(b, b->cap);
}

void buf_reset(buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

int buf_reserve(buf *b, size_t n) {
    size_t cap = b->cap ? b->cap : BUF_UNCAPPED;
    if (n > cap || b->len > cap - n) return BUF_TOOBIG;
    size_t need = b->len + n + 1;
    if (need <= b->alloc) return BUF_OK;
    size_t a = b->alloc ? b->alloc : 64;
    while (a < need)
        a = a < SIZE_MAX / 2 ? a * 2 : need;
    /* Never allocate much beyond what the cap allows. */
    if (a > cap + 1) a = cap + 1;
    char *p = realloc(b->data, a);
    if (!p) return BUF_NOMEM;
    b->data = p;
    b->alloc = a;
    return BUF_OK;
}

int buf_append_grow(buf *b, const void *p, size_t n) {
    int rc = buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return BUF_OK;
}

int buf_vprintf(buf *b, const char *fmt, va_list ap) {
    char small[256];
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(small, sizeof small, fmt, cp);
    va_end(cp);
    if (n < 0) return BUF_NOMEM;
    if ((size_t)n < sizeof small) return buf_append(b, small, (size_t)n);
    int rc = buf_reserve(b, (size_t)n);
    if (rc) return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return BUF_OK;
}

int buf_printf(buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int buf_json_escape(buf *b, const char *s, size_t n) {
    size_t start_len = b->len;
    size_t run = 0; /* bytes copied verbatim, flushed in one append */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (i > run && buf_append(b, s + run, i - run)) goto fail;
        run = i + 1;
        char esc[8];
        switch (c) {
        case '"':
            memcpy(esc, "\\\"", 3);
            break;
        case '\\':
            memcpy(esc, "\\\\", 3);
            break;
        case '\n':
            memcpy(esc, "\\n", 3);
            break;
        case '\r':
            memcpy(esc, "\\r", 3);
            break;
        case '\t':
            memcpy(esc, "\\t", 3);
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            break;
        }
        if (buf_puts(b, esc)) goto fail;
    }
    if (n > run && buf_append(b, s + run, n - run)) goto fail;
    return BUF_OK;
fail:
    b->len = start_len;
    if (b->data) b->data[b->len] = '\0';
    return BUF_TOOBIG;
}

char *buf_detach(buf *b, size_t *len) {
    char *p = b->data;
    if (!p) p = calloc(1, 1);
    if (len) *len = b->len;
    buf_init(b, b->cap);
    return p;
}
