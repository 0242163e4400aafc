/* buf — a growable byte buffer with a hard size cap.
 *
 * Every buffer that the network can grow is a buf with a cap (curl's dynbuf idea): appending past
 * the cap fails with BUF_TOOBIG and leaves the contents as they were, so a caller can answer 413
 * instead of growing without bound. The data is always NUL-terminated (the NUL is not counted in
 * len), so text can be handed to parsers that want C strings.
 *
 * Ownership: a buf owns its memory. buf_free() releases it; buf_detach() hands it to the caller,
 * who frees it with free(), and leaves the buf empty and reusable. */
#ifndef ENGAGED_BUF_H
#define ENGAGED_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { BUF_OK = 0, BUF_TOOBIG = -1, BUF_NOMEM = -2 };

typedef struct buf {
    char *data; /* NULL until the first append; otherwise NUL-terminated */
    size_t len;
    size_t alloc;
    size_t cap; /* the most len may ever be; 0 means SIZE_MAX/2 */
} buf;

#define BUF_INIT(capacity)                                                                         \
    { NULL, 0, 0, (capacity) }

void buf_init(buf *b, size_t cap);
void buf_free(buf *b);
void buf_reset(buf *b); /* len = 0, keeps the allocation */
/* Makes room for n more bytes (and the NUL) without appending, for callers that fill data + len
 * themselves, such as read(2). Returns BUF_OK, BUF_TOOBIG or BUF_NOMEM. */
int buf_reserve(buf *b, size_t n);

/* buf_append()'s out-of-line part: growing the buffer, and the cap. */
int buf_append_grow(buf *b, const void *p, size_t n);

/* Append n bytes. Returns BUF_OK, BUF_TOOBIG (cap would be passed) or BUF_NOMEM; on error b is
 * unchanged. Inline, with buf_puts() and buf_putc(), because writers of JSON answers call them a
 * few hundred times an answer: the common case, room already there, is a copy, and the length of
 * a literal is known at compile time. (The room check needs no cap check: a buffer never holds
 * more than cap + 1 bytes.) */
static inline int buf_append(buf *b, const void *p, size_t n) {
    /* (n > PTRDIFF_MAX cannot fit either; saying so lets the compiler see memcpy's bound.) */
    if (n >= b->alloc - b->len || n > PTRDIFF_MAX) return buf_append_grow(b, p, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return BUF_OK;
}

static inline int buf_puts(buf *b, const char *s) {
    return buf_append(b, s, strlen(s));
}

static inline int buf_putc(buf *b, char c) {
    return buf_append(b, &c, 1);
}

int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf *b, const char *fmt, va_list ap);
/* Append s as the inside of a JSON string (quotes not included), escaping what JSON requires. */
int buf_json_escape(buf *b, const char *s, size_t n);

/* Give the data to the caller (free() it); b is left empty. Never returns NULL: an empty buf yields
 * "". */
char *buf_detach(buf *b, size_t *len);

/* A pointer to the contents: "" for a buf that never grew. Valid until the next append or free. */
static inline const char *buf_str(const buf *b) {
    return b->data ? b->data : "";
}

#endif
