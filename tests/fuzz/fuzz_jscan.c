/* jscan against jansson. Whatever js_parse() accepts jansson accepts, and jscan writes it byte for
 * byte as jsonw writes jansson's value, js_to_json() is json_equal to that value, and the tape is
 * consistent (next, count, offsets). Whatever jansson refuses js_parse() refuses. And jscan refuses
 * only for its listed reasons: a text with no backslash and no NUL byte, no duplicate keys and
 * no nesting past JS_MAX_DEPTH is accepted, and so is jsonw's writing of any value whose keys need
 * no escape; the depth and token limits hold exactly. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "util/buf.h"
#include "util/jscan.h"
#include "util/jsonw.h"

/* The tighter limits the second parse runs under. */
#define SMALL_DEPTH 6
#define SMALL_TOKENS 64

/* Reused across inputs, as the collection path reuses its doc. */
static js_doc doc;
static bool doc_ready;

/* Checks the tape below token i (at nesting depth: its containers), returns the index after it
 * and raises *max_depth to the deepest container. */
static uint32_t check_tokens(const js_doc *d, uint32_t i, int depth, int *max_depth) {
    CHECK(i < d->n);
    const js_tok *t = &d->tok[i];
    CHECK((size_t)t->start + t->len <= d->len);
    const char *s = d->text + t->start;
    switch (t->kind) {
    case JS_ARRAY:
    case JS_OBJECT: {
        bool object = t->kind == JS_OBJECT;
        if (depth + 1 > *max_depth) *max_depth = depth + 1;
        CHECK(t->len >= 2 && s[0] == (object ? '{' : '['));
        CHECK(s[t->len - 1] == (object ? '}' : ']'));
        uint32_t j = i + 1;
        for (uint32_t c = 0; c < t->count; c++) {
            if (object) {
                const js_tok *k = &d->tok[j];
                CHECK(j < d->n && k->kind == JS_STRING && !k->escaped);
                /* Keys are unique, so the lookup finds this member. */
                CHECK(js_get(d, i, d->text + k->start, k->len) == j + 1);
                j++;
            }
            uint32_t value = j;
            j = check_tokens(d, j, depth + 1, max_depth);
            CHECK(d->tok[value].start > t->start && d->tok[value].start < t->start + t->len);
        }
        CHECK(j == t->next);
        return j;
    }
    case JS_STRING:
        CHECK(t->start > 0 && s[-1] == '"' && s[t->len] == '"');
        CHECK((t->escaped != 0) == (memchr(s, '\\', t->len) != NULL));
        break;
    case JS_INT:
    case JS_REAL:
        CHECK(t->len > 0 && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')));
        break;
    default:
        CHECK(t->len == (t->kind == JS_FALSE ? 5u : 4u));
        break;
    }
    CHECK(t->count == 0 && t->next == i + 1);
    return i + 1;
}

/* The nesting depth of a jansson value, and whether any object key needs an escape in JSON. */
static int json_depth(const json_t *v, bool *escaped_key) {
    int deepest = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            int dd = json_depth(e, escaped_key);
            if (dd > deepest) deepest = dd;
        }
        return deepest + 1;
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *e;
        json_object_foreach((json_t *)v, key, e) {
            for (const char *k = key; *k; k++)
                if ((unsigned char)*k < 0x20 || *k == '"' || *k == '\\') *escaped_key = true;
            int dd = json_depth(e, escaped_key);
            if (dd > deepest) deepest = dd;
        }
        return deepest + 1;
    }
    return 0;
}

/* The accepted doc against jansson's value v: the writing, the value, the tape. Returns the tape's
 * nesting depth. */
static int check_accepted(const js_doc *d, const json_t *v) {
    CHECK(v != NULL);
    buf mine = BUF_INIT(0), theirs = BUF_INIT(0);
    CHECK(js_write(&mine, d, 0) == BUF_OK);
    CHECK(jsonw_value(&theirs, v) == BUF_OK);
    CHECK(mine.len == theirs.len && memcmp(buf_str(&mine), buf_str(&theirs), mine.len) == 0);
    buf_free(&mine);
    buf_free(&theirs);
    json_t *j = js_to_json(d, 0);
    CHECK(j != NULL);
    CHECK(json_equal(j, v));
    json_decref(j);
    int depth = 0;
    CHECK(check_tokens(d, 0, 0, &depth) == d->n);
    return depth;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!doc_ready) js_init(&doc, 0), doc_ready = true;
    const char *text = (const char *)data;
    json_error_t je;
    json_t *v = json_loadb(text, size, JSON_DECODE_ANY, &je);

    doc.max_tokens = 0;
    int r = js_parse(&doc, text, size, JS_MAX_DEPTH);
    if (r == 0) {
        int depth = check_accepted(&doc, v);
        uint32_t n = doc.n;
        /* The limits: accepted under tighter ones exactly when within them. */
        doc.max_tokens = SMALL_TOKENS;
        int small = js_parse(&doc, text, size, SMALL_DEPTH);
        CHECK((small == 0) == (depth <= SMALL_DEPTH && n <= SMALL_TOKENS));
        if (small == 0) CHECK(doc.n == n);
    } else {
        CHECK(doc.n == 0);
    }
    if (!v) {
        CHECK(r != 0);
        return 0;
    }

    bool escaped_key = false;
    int depth = json_depth(v, &escaped_key);
    if (r != 0 && depth <= JS_MAX_DEPTH && !memchr(text, '\\', size) && !memchr(text, '\0', size)) {
        /* No escape and no NUL: the refusal must be a duplicate key, which jansson can tell. */
        json_t *strict = json_loadb(text, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        CHECK(strict == NULL);
    }

    /* jsonw's writing of v has no duplicate, and escapes in keys only where a key needs them. */
    buf w = BUF_INIT(0);
    CHECK(jsonw_value(&w, v) == BUF_OK);
    doc.max_tokens = 0;
    int rw = js_parse(&doc, buf_str(&w), w.len, JS_MAX_DEPTH);
    if (depth <= JS_MAX_DEPTH && !escaped_key) CHECK(rw == 0);
    if (rw == 0) {
        check_accepted(&doc, v);
        buf again = BUF_INIT(0);
        CHECK(js_write(&again, &doc, 0) == BUF_OK);
        CHECK(again.len == w.len && memcmp(again.data, w.data, w.len) == 0);
        buf_free(&again);
    }
    buf_free(&w);
    json_decref(v);
    return 0;
}
