/* fuzz — shared by the libFuzzer targets: an invariant that fails aborts, which libFuzzer reports
 * as a crash with the input that caused it. */
#ifndef ENGAGED_FUZZ_H
#define ENGAGED_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
