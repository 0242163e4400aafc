/* pages — giving memory back to the kernel without freeing it.
 *
 * The dedup table and the person index move a large table into a new one a few slots at a time
 * (store/dedup.c, store/pindex.c). Freeing the old table only at the end would unmap hundreds of
 * megabytes at once, itself a stop of tens of milliseconds; so its moved part is given back as the
 * move goes, here.
 *
 * pages_release() gives back the whole pages within [from, to) of private anonymous memory (what
 * malloc() hands out for large blocks) with madvise(MADV_DONTNEED). The memory stays allocated and
 * is freed as usual; a released page reads as zeros if touched again. The partial pages at either
 * end are kept, with their contents. Cost: one madvise(2) over the range. */
#ifndef ENGAGED_PAGES_H
#define ENGAGED_PAGES_H

void pages_release(const void *from, const void *to);

#endif
