/* strpool — interned strings: one copy of each distinct string, alive as long as the pool.
 *
 * For names that millions of records repeat from a small vocabulary (a profile's favourite
 * categories and brands): each record holds a pointer instead of its own copy, which saves the
 * copy and its allocation header (some 25 bytes a name at a million profiles). Strings live in
 * chunks that are never moved or freed before the pool, so a returned pointer stays valid and may
 * be read by any thread. Interning is not thread-safe, and strpool_at() reads a table interning
 * may move: callers serialise the two (the engine's readers-writer lock).
 *
 * A pool has a byte cap: a stream of random names (a hostile client) must not grow it without
 * bound. Past the cap, strpool_intern() returns NULL and the caller goes without. Cost: one hash
 * and, for a new string, one copy; O(1) expected. */
#ifndef ENGAGED_STRPOOL_H
#define ENGAGED_STRPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct strpool strpool;

/* A pool holding at most max_bytes of strings (their NULs included). NULL when memory runs out. */
strpool *strpool_new(size_t max_bytes);
void strpool_free(strpool *p);
/* The pool's copy of s (NUL-terminated), or NULL when s is longer than STRPOOL_MAX_LEN, the pool
 * is full or memory runs out. */
const char *strpool_intern(strpool *p, const char *s);
/* The same as a small number: 1 + the string's index in order of interning (0 when interning
 * fails), for records that keep 4 bytes instead of a pointer; strpool_at() gives the string back
 * (NULL for 0 or an unknown id). */
uint32_t strpool_id(strpool *p, const char *s);
const char *strpool_at(const strpool *p, uint32_t id);
/* The id of s if it was interned, else 0; never interns, so readers may call it (under the lock
 * that keeps interning out). */
uint32_t strpool_find(const strpool *p, const char *s);
size_t strpool_count(const strpool *p);
size_t strpool_bytes(const strpool *p); /* held, including the table */

#define STRPOOL_MAX_LEN 255

#endif
