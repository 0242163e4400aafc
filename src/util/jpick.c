#include "util/jpick.h"

#include <string.h>

void jpick(const json_t *obj, const char *const *names, size_t n, const json_t **out) {
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        for (size_t i = 0; i < n; i++)
            if (names[i][0] == key[0] && strcmp(names[i], key) == 0) {
                out[i] = v;
                break;
            }
    }
}
