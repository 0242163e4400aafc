/* vec — growing a malloc'd array geometrically.
 *
 * vec_reserve(&p, &alloc, need, sizeof *p) makes room for at least `need` elements in the array p
 * (whose capacity, in elements, is alloc), doubling from 4: small first, because some arrays (a
 * person's events in the person index) number in the millions and most stay short. Returns 0, or
 * -1 when memory runs out or need * elem would overflow; p and alloc are then unchanged. Amortised
 * O(1) per element. */
#ifndef ENGAGED_VEC_H
#define ENGAGED_VEC_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline int vec_reserve(void **p, size_t *alloc, size_t need, size_t elem) {
    if (need <= *alloc) return 0;
    size_t n = *alloc ? *alloc : 4;
    while (n < need) {
        if (n > SIZE_MAX / 2) return -1;
        n *= 2;
    }
    if (elem && n > SIZE_MAX / elem) return -1;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *alloc = n;
    return 0;
}

/* vec_reserve_small(): the same for the many short arrays a customer holds (a cart, the traits'
 * times, the identifiers of one person): room for exactly `need` at first, then a quarter more
 * each time, so a person with two traits pays for two, not four, and a long array wastes a tenth on
 * average, not a quarter. There are millions of such arrays and most stay short; the growth is
 * still geometric, so a long one stays amortised O(1). */
static inline int vec_reserve_small(void **p, size_t *alloc, size_t need, size_t elem) {
    if (need <= *alloc) return 0;
    size_t n = *alloc + *alloc / 4;
    if (n < need) n = need;
    if (elem && n > SIZE_MAX / elem) return -1;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *alloc = n;
    return 0;
}

/* vec_reserve_filled(): for an array indexed by a dense key (a customer's slot) whose every entry
 * must hold a value before it is read: vec_reserve_small()'s growth, and the new entries' bytes
 * set to fill (0, or 0xff for UINT32_MAX). Growth by a quarter matters here, as every entry is
 * written and so costs memory. */
static inline int vec_reserve_filled(void **p, size_t *alloc, size_t need, size_t elem, int fill) {
    size_t was = *alloc;
    if (vec_reserve_small(p, alloc, need, elem)) return -1;
    memset((char *)*p + was * elem, fill, (*alloc - was) * elem);
    return 0;
}

/* vec_reserve_small() for an array whose count and capacity are 32-bit, as records kept by the
 * million hold them. */
static inline int vec_reserve_small32(void **p, uint32_t *alloc, size_t need, size_t elem) {
    size_t a = *alloc;
    if (need > UINT32_MAX || vec_reserve_small(p, &a, need, elem)) return -1;
    *alloc = a > UINT32_MAX ? UINT32_MAX : (uint32_t)a;
    return 0;
}

#endif
