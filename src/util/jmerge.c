#include "util/jmerge.h"

int jmerge_patch(json_t *target, const json_t *patch) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)patch, key, v) {
        if (json_is_null(v)) {
            json_object_del(target, key);
        } else if (json_is_object(v)) {
            json_t *t = json_object_get(target, key);
            if (!json_is_object(t)) {
                if (!(t = json_object()) || json_object_set_new(target, key, t)) return -1;
            }
            if (jmerge_patch(t, v)) return -1;
        } else {
            json_t *copy = json_deep_copy(v);
            if (!copy || json_object_set_new(target, key, copy)) return -1;
        }
    }
    return 0;
}
