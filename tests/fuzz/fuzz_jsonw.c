/* jsonw: whatever jansson reads, jsonw writes back as JSON that reads as an equal value (strings
 * byte for byte, integers exactly, every real as the same double). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "util/jsonw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_error_t je;
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v) return 0;
    buf b = BUF_INIT(0);
    CHECK(jsonw_value(&b, v) == BUF_OK);
    json_t *back = json_loadb(buf_str(&b), b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    CHECK(back != NULL);
    CHECK(json_equal(v, back));
    /* Compact: writing the value read back gives the same bytes. */
    buf again = BUF_INIT(0);
    CHECK(jsonw_value(&again, back) == BUF_OK);
    CHECK(again.len == b.len && memcmp(again.data, b.data, b.len) == 0);
    buf_free(&again);
    json_decref(back);
    buf_free(&b);
    json_decref(v);
    return 0;
}
