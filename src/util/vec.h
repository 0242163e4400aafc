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

#endif
