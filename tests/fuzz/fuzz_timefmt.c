/* libFuzzer target for util/timefmt.
 *
 * The input is parsed as a timestamp. Invariants: a parsed time lies within the years 1..9999 give
 * or take the largest zone offset and a leap second; inside that range it formats to 24 bytes that
 * parse back to the same millisecond, and formatting is stable (format(parse(format(t))) ==
 * format(t)). The first 8 bytes are also formatted as a millisecond count within +-2^62 (well past
 * year 9999 on both sides, where tf_format clamps) and the result must read back as what it
 * printed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "util/timefmt.h"

#define T_MIN (-62135596800000LL) /* 0001-01-01T00:00:00.000Z */
#define T_MAX (253402300799999LL) /* 9999-12-31T23:59:59.999Z */
#define DAY_MS 86400000LL

static void check_format(int64_t ms) {
    char out[TF_LEN], again[TF_LEN];
    tf_format(ms, out);
    CHECK(strlen(out) == 24);
    int64_t back;
    if (ms >= T_MIN && ms <= T_MAX) {
        CHECK(tf_parse(out, strlen(out), &back));
        CHECK(back == ms);
        tf_format(back, again);
        CHECK(strcmp(out, again) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t ms;
    if (tf_parse((const char *)data, size, &ms)) {
        CHECK(ms >= T_MIN - DAY_MS && ms <= T_MAX + DAY_MS);
        check_format(ms);
        /* Anything after a complete timestamp is refused. */
        char *longer = malloc(size + 1);
        memcpy(longer, data, size);
        longer[size] = 'x';
        int64_t ignored;
        CHECK(!tf_parse(longer, size + 1, &ignored));
        free(longer);
    }
    if (size >= 8) {
        uint64_t raw;
        memcpy(&raw, data, 8);
        int64_t v = (int64_t)(raw % (1ull << 63)) - (int64_t)(1ull << 62);
        check_format(v);
    }
    return 0;
}
