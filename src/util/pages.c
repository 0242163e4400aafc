#include "util/pages.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

void pages_release(const void *from, const void *to) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)from + page - 1) & ~(page - 1), b = (uintptr_t)to & ~(page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}
