/* libFuzzer target for http/static's header parsers: Accept-Encoding, If-None-Match, paths. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/static.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    (void)static_accepts_gzip(s);
    (void)static_content_type(s);
    const static_asset *a = static_find(static_assets, static_nassets, s);
    CHECK(!a || strcmp(a->path, s) == 0 || s[strlen(s) - 1] == '/');
    bool m = static_etag_match(s, "\"0123456789abcdef\"");
    /* A list that names the tag always matches it. */
    if (size < 900 && !memchr(s, '"', size) && !memchr(s, '\0', size)) {
        char both[1024];
        snprintf(both, sizeof both, "\"%s\", \"0123456789abcdef\"", s);
        CHECK(static_etag_match(both, "\"0123456789abcdef\""));
    }
    (void)m;
    if (static_nassets) {
        static_choice c = static_choose(&static_assets[0], s, s);
        CHECK(c.status == 200 || c.status == 304);
        CHECK(c.status == 304 ? c.body == NULL : c.body != NULL);
    }
    free(s);
    return 0;
}
