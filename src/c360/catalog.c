/* cat — the product catalogue. catalog.h is the contract; this file is organised as:
 *   - values: numbers, text, lists, stock and category paths as the client may write them;
 *   - the field tables: one row per JSON field (name, input alias, kind, where it lives), one
 *     parse and one emit function per kind, shared by products, variants and availability;
 *   - products: parse (= validate), emit, derived facts (stock totals, in-stock);
 *   - the catalogue: hash table by id, ordinals, the sorted index, and commit(), the one place
 *     that installs products (all allocation first, then pointer swaps that cannot fail);
 *   - the operations: upsert, patch, archive, observe, reading, availability, changes. */
#include "c360/catalog.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/hash.h"
#include "util/jmerge.h"
#include "util/jsonw.h"
#include "util/timefmt.h"
#include "util/vec.h"

/* Which fields a product or variant has. */
enum {
    F_ID = 1u << 0,
    F_SKU = 1u << 1,
    F_TITLE = 1u << 2,
    F_URL = 1u << 3,
    F_IMAGE = 1u << 4,
    F_BRAND = 1u << 5,
    F_CATEGORIES = 1u << 6,
    F_PRICE = 1u << 7,
    F_SALE = 1u << 8,
    F_CURRENCY = 1u << 9,
    F_STOCK = 1u << 10,
    F_TAGS = 1u << 11,
    F_ATTRS = 1u << 12,
    F_VARIANTS = 1u << 13,
    F_REPLEN = 1u << 14,
    F_STATUS = 1u << 15,
    F_AVAIL = 1u << 16,
    /* availability members, in their own bit set */
    A_MARKETS = 1u << 0,
    A_PRICE_LISTS = 1u << 1,
    A_SEGMENTS = 1u << 2,
    A_RULE = 1u << 3,
};
/* What cat_observe() may fill in. */
#define F_LEARNABLE                                                                                \
    (F_SKU | F_TITLE | F_URL | F_IMAGE | F_BRAND | F_CATEGORIES | F_PRICE | F_CURRENCY)
/* Price, sale price and currency only make sense together: an upsert giving any of them drops a
 * learned price and currency. */
#define F_MONEY (F_PRICE | F_SALE | F_CURRENCY)

#define TEXT_MAX 255
#define TITLE_MAX 1024
#define URL_MAX 2048
/* Products created since the last merge of the sorted index; cat_list() sorts them on the fly. */
#define TAIL_MAX 1024

/* Parse results: 0, or one of these with the ev_error filled. */
enum { PE_INVALID = -1, PE_NOMEM = -2 };

typedef struct strs {
    char **v;
    uint32_t n, alloc;
} strs;

typedef struct loc {
    char *name;
    int64_t qty;
} loc;

typedef struct stock {
    loc *v;
    uint32_t n;
    int64_t total;
} stock;

/* What products and variants share, so one set of field rows serves both. */
typedef struct common {
    char *id, *sku, *title, *url, *image_url;
    char *attrs; /* compact JSON object: smaller than a jansson tree, parsed back on output */
    double price, sale_price;
    stock stock;
    unsigned has; /* F_* */
} common;

typedef struct variant {
    common c;
    bool in_stock;
} variant;

struct cat_product {
    /* What find() and the availability check read come first, to share a cache line or two. */
    uint64_t hash;
    uint32_t id_len, ord;
    cat_status status;
    bool in_stock, replenishable, from_events;
    void *compiled; /* rule_compile()'s result */
    json_t *json;   /* prod_json(p, true), kept only for products with a rule (rule_eval's input) */
    strs markets, price_lists, segments;
    common c;
    char *brand;
    strs categories, tags;
    char currency[4];
    uint32_t nvariants;
    variant *variants;
    char *rule;
    char *card; /* see cat_card(); built by prod_card() whenever a field it shows changes */
    uint32_t card_len, card_title, card_title_len;
    unsigned learned;    /* F_* bits whose values came from cat_observe() */
    int64_t stock_total; /* -1: no stock information anywhere */
    int64_t created_ms, updated_ms;
};

struct cat {
    cat_options opt;
    cat_product **prods; /* by ordinal */
    size_t n, alloc;
    uint32_t *slots; /* open addressing, ordinal + 1, 0 = empty; load <= 1/2 */
    size_t nslots;
    uint32_t *sorted; /* ordinals 0 .. nsorted-1 in id order; newer ones are the "tail" */
    size_t nsorted, sorted_alloc;
    size_t n_observed; /* products whose source is events */
    /* By ordinal, GATE_* bits: the availability answer for most products without touching them
     * (one byte each, so a loop over candidates stays in cache). */
    uint8_t *gate;
    size_t gate_alloc;
};

enum { GATE_SELLABLE = 1, GATE_OPEN = 2 };

static uint8_t gate_of(const cat_product *p) {
    bool open = !p->markets.n && !p->price_lists.n && !p->segments.n && !p->compiled;
    return (uint8_t)((p->status == CAT_ACTIVE && p->in_stock ? GATE_SELLABLE : 0) |
                     (open ? GATE_OPEN : 0));
}

/* ---- errors and paths ---- */

typedef struct pctx {
    const cat_options *opt;
    ev_error *err;
    char path[128];
    size_t plen;
} pctx;

static void pctx_init(pctx *x, const cat_options *opt, ev_error *err) {
    x->opt = opt;
    x->err = err;
    x->path[0] = '\0';
    x->plen = 0;
}

/* Appends n bytes of s to the path (truncating at its size); returns the length before. */
static size_t path_add(pctx *x, size_t old, const char *s, size_t n) {
    size_t room = sizeof x->path - 1 - x->plen;
    if (n > room) n = room;
    memcpy(x->path + x->plen, s, n);
    x->plen += n;
    x->path[x->plen] = '\0';
    return old;
}

static size_t path_key(pctx *x, const char *key) {
    size_t old = x->plen;
    if (old) path_add(x, old, ".", 1);
    return path_add(x, old, key, strlen(key));
}

static size_t path_index(pctx *x, size_t i) {
    char digits[24], *d = digits + sizeof digits;
    *--d = ']';
    do
        *--d = (char)('0' + i % 10);
    while (i /= 10);
    *--d = '[';
    return path_add(x, x->plen, d, (size_t)(digits + sizeof digits - d));
}

static void path_pop(pctx *x, size_t old) {
    x->plen = old;
    x->path[old] = '\0';
}

/* Fills the error for the field at the current path: "<path> <what>". */
__attribute__((format(printf, 3, 4))) static int bad(pctx *x, const char *code, const char *fmt,
                                                     ...) {
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    ev_error_set(x->err, code, x->path, "%s %s", x->plen ? x->path : "the product", what);
    return PE_INVALID;
}

static int nomem(pctx *x) {
    ev_error_set(x->err, "internal", "", "out of memory");
    return PE_NOMEM;
}

/* ---- values ---- */

/* A JSON number, or a string holding one. */
static bool number_of(const json_t *v, double *out) {
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    if (json_is_string(v))
        return cm_parse_decimal(json_string_value(v), json_string_length(v), out);
    return false;
}

static bool money_ok(double d) {
    return d >= 0 && d <= CAT_PRICE_MAX;
}

static int get_money(const json_t *v, pctx *x, double *out) {
    double d;
    if (!number_of(v, &d) || !money_ok(d))
        return bad(x, "invalid_field", "must be a number from 0 to %.0f", CAT_PRICE_MAX);
    *out = d == 0 ? 0 : d; /* -0 is 0 */
    return 0;
}

static int get_count(const json_t *v, pctx *x, int64_t *out) {
    double d;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i >= 0 && i <= CAT_STOCK_MAX) {
            *out = i;
            return 0;
        }
    } else if (number_of(v, &d) && d >= 0 && d <= (double)CAT_STOCK_MAX && d == floor(d)) {
        *out = (int64_t)d;
        return 0;
    }
    return bad(x, "invalid_field", "must be a whole number from 0 to %lld", CAT_STOCK_MAX);
}

/* The text of a string, or of a whole number (ids are often numbers in shop databases). *s
 * points into v or into digits. */
static int text_of(const json_t *v, pctx *x, size_t cap, char digits[EV_NUMBER_TEXT_LEN],
                   const char **s, size_t *n) {
    *s = "";
    *n = 0;
    if (json_is_string(v)) {
        *s = json_string_value(v);
        *n = json_string_length(v);
        if (strlen(*s) != *n) return bad(x, "invalid_field", "must not contain NUL characters");
    } else if (json_is_number(v) && ev_number_text(v, digits)) {
        *s = digits;
        *n = strlen(digits);
    } else {
        return bad(x, "invalid_field", "must be a string");
    }
    if (*n > cap) return bad(x, "invalid_field", "must be at most %zu bytes", cap);
    return 0;
}

/* Text copied into *out; "" leaves *out NULL (absent). */
static int get_text(const json_t *v, pctx *x, size_t cap, char **out) {
    char digits[EV_NUMBER_TEXT_LEN];
    const char *s;
    size_t n;
    int rc = text_of(v, x, cap, digits, &s, &n);
    if (rc) return rc;
    *out = NULL;
    if (n == 0) return 0;
    if (!(*out = strndup(s, n))) return nomem(x);
    return 0;
}

static void strs_free(strs *l) {
    for (uint32_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static bool strs_has(const strs *l, const char *s, size_t n) {
    for (uint32_t i = 0; i < l->n; i++)
        if (strlen(l->v[i]) == n && memcmp(l->v[i], s, n) == 0) return true;
    return false;
}

/* Adds a copy of s[0..n) unless present. Returns 0, 1 (full: CAT_LIST_ITEMS_MAX already) or
 * PE_NOMEM. */
static int strs_add(strs *l, const char *s, size_t n) {
    if (strs_has(l, s, n)) return 0;
    if (l->n >= CAT_LIST_ITEMS_MAX) return 1;
    if (l->n == l->alloc) {
        uint32_t alloc = l->alloc ? 2 * l->alloc : 4;
        char **v = realloc(l->v, alloc * sizeof *v);
        if (!v) return PE_NOMEM;
        l->v = v;
        l->alloc = alloc;
    }
    if (!(l->v[l->n] = strndup(s, n))) return PE_NOMEM;
    l->n++;
    return 0;
}

static int strs_copy(strs *dst, const strs *src) {
    memset(dst, 0, sizeof *dst);
    for (uint32_t i = 0; i < src->n; i++)
        if (strs_add(dst, src->v[i], strlen(src->v[i])) < 0) {
            strs_free(dst);
            return PE_NOMEM;
        }
    return 0;
}

static bool is_space(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Adds the category s[0..n) to l: a path "Shoes > Running" adds each ancestor path, "Shoes" and
 * "Shoes > Running", with the separators rewritten as " > " and each name trimmed. Returns 0,
 * PE_NOMEM, or PE_INVALID with *why set. */
static int category_add(strs *l, const char *s, size_t n, const char **why) {
    char path[TEXT_MAX + 1];
    size_t plen = 0, i = 0;
    for (;;) {
        size_t j = i;
        while (j < n && s[j] != '>')
            j++;
        size_t a = i, b = j;
        while (a < b && is_space(s[a]))
            a++;
        while (b > a && is_space(s[b - 1]))
            b--;
        if (a == b) {
            *why = "has an empty name in its path";
            return PE_INVALID;
        }
        size_t need = plen + (plen ? 3 : 0) + (b - a);
        if (need > TEXT_MAX) {
            *why = "is longer than 255 bytes";
            return PE_INVALID;
        }
        if (plen) {
            memcpy(path + plen, " > ", 3);
            plen += 3;
        }
        memcpy(path + plen, s + a, b - a);
        plen += b - a;
        int rc = strs_add(l, path, plen);
        if (rc == PE_NOMEM) return rc;
        if (rc == 1) {
            *why = "makes more than 64 categories (a path counts each level)";
            return PE_INVALID;
        }
        if (j == n) return 0;
        i = j + 1;
    }
}

static void stock_free(stock *s) {
    for (uint32_t i = 0; i < s->n; i++)
        free(s->v[i].name);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static void common_free(common *c) {
    free(c->id);
    free(c->sku);
    free(c->title);
    free(c->url);
    free(c->image_url);
    free(c->attrs);
    stock_free(&c->stock);
}

static void prod_free(cat_product *p, const cat_options *opt) {
    if (!p) return;
    common_free(&p->c);
    free(p->brand);
    strs_free(&p->categories);
    strs_free(&p->tags);
    for (uint32_t i = 0; i < p->nvariants; i++)
        common_free(&p->variants[i].c);
    free(p->variants);
    strs_free(&p->markets);
    strs_free(&p->price_lists);
    strs_free(&p->segments);
    free(p->rule);
    if (p->compiled) opt->rule_free(p->compiled, opt->rule_arg);
    json_decref(p->json);
    free(p->card);
    free(p);
}

/* (Re)builds p's card (cat_card()) from its fields. 0, or -1 when out of memory (p unchanged). */
static int prod_card(cat_product *p) {
    buf b = BUF_INIT(0);
    const struct {
        const char *member; /* with its quotes, colon and opening quote */
        const char *v;
    } text[] = {{",\"title\":\"", p->c.title},
                {",\"url\":\"", p->c.url},
                {",\"image_url\":\"", p->c.image_url},
                {",\"brand\":\"", p->brand},
                {",\"currency\":\"", (p->c.has & F_CURRENCY) ? p->currency : NULL}};
    size_t title = 0, title_len = 0;
    for (size_t i = 0; i < sizeof text / sizeof *text; i++) {
        if (!text[i].v) continue;
        buf_puts(&b, text[i].member);
        size_t at = b.len;
        buf_json_escape(&b, text[i].v, strlen(text[i].v));
        if (i == 0) {
            title = at;
            title_len = b.len - at;
        }
        buf_putc(&b, '"');
    }
    if (p->c.has & F_PRICE) {
        buf_puts(&b, ",\"price\":");
        jsonw_fixed(&b, p->c.price, 6);
    }
    if (p->c.has & F_SALE) {
        buf_puts(&b, ",\"sale_price\":");
        jsonw_fixed(&b, p->c.sale_price, 6);
    }
    if (buf_putc(&b, '\0') != BUF_OK || b.len > UINT32_MAX) {
        buf_free(&b);
        return -1;
    }
    free(p->card);
    p->card_len = (uint32_t)b.len - 1;
    p->card_title = (uint32_t)title;
    p->card_title_len = (uint32_t)title_len;
    p->card = buf_detach(&b, NULL);
    return 0;
}

/* Deeper than `left` levels of arrays and objects? Recursion stops at left + 1. Adds to *size
 * (when not NULL) an upper bound of v's compact JSON size: strings as if every byte needed a
 * six-byte escape, numbers at their longest (jsonw writes at most 24 characters). */
static bool too_deep(const json_t *v, int left, size_t *size) {
    const char *key;
    json_t *m;
    size_t i, sz = 0;
    bool deep = false;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        if (left == 0) return true;
        sz = 2;
        json_object_foreach((json_t *)v, key, m) {
            sz += 6 * strlen(key) + 4; /* quotes, colon, comma */
            if ((deep = too_deep(m, left - 1, size ? &sz : NULL))) break;
        }
        break;
    case JSON_ARRAY:
        if (left == 0) return true;
        sz = 2;
        json_array_foreach(v, i, m) {
            sz += 1;
            if ((deep = too_deep(m, left - 1, size ? &sz : NULL))) break;
        }
        break;
    case JSON_STRING:
        sz = 6 * json_string_length(v) + 2;
        break;
    default:
        sz = 24;
    }
    if (size) *size += sz;
    return deep;
}

/* Depth and size of one product or patch as sent. The size is exact (compact JSON, as jsonw
 * writes it) but only computed when the cheap upper bound is over the limit. */
static int check_bounds(const json_t *v, pctx *x) {
    size_t bound = 0;
    if (too_deep(v, EV_MAX_DEPTH, &bound))
        return bad(x, "too_deep", "nests deeper than %d levels", EV_MAX_DEPTH);
    if (bound <= CAT_PRODUCT_MAX_BYTES) return 0;
    buf b = BUF_INIT(CAT_PRODUCT_MAX_BYTES);
    int rc = jsonw_value(&b, v);
    buf_free(&b);
    if (rc == BUF_TOOBIG)
        return bad(x, "product_too_large", "is over %d bytes", CAT_PRODUCT_MAX_BYTES);
    if (rc) return nomem(x);
    return 0;
}

/* ---- the field tables ---- */

typedef enum kind {
    K_ID,
    K_TEXT,
    K_MONEY,
    K_CURRENCY,
    K_CATEGORIES,
    K_CATEGORY,
    K_NAMES,
    K_STOCK,
    K_ATTRS,
    K_VARIANTS,
    K_BOOL,
    K_STATUS,
    K_AVAIL,
    K_RULE,
    K_READONLY,
    NKINDS
} kind;

enum { FL_LOWER = 1, FL_NONEMPTY = 2 };

typedef struct fdef {
    const char *name;
    const char *alias; /* another name accepted on input, or NULL */
    kind kind;
    unsigned bit;
    size_t off; /* of the member in the struct the table describes */
    unsigned cap, flags;
} fdef;

typedef struct kdef {
    int (*parse)(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x);
    json_t *(*emit)(const fdef *f, const void *obj, bool meta); /* NULL: input only */
    /* Same value in a and b (both have the field)? Emitting both and comparing the JSON would do,
     * at about fifty times the cost, for every product of a catalogue feed sent again. */
    bool (*eq)(const fdef *f, const void *a, const void *b);
} kdef;

#define MEMBER(obj, f, type) ((type *)(void *)((char *)(obj) + (f)->off))
#define CMEMBER(obj, f, type) ((const type *)(const void *)((const char *)(obj) + (f)->off))

static int parse_fields(const fdef *t, size_t nt, const json_t *obj, void *base, unsigned *has,
                        pctx *x);
static json_t *emit_fields(const fdef *t, size_t nt, const void *base, unsigned has, bool meta);

#define P(m) offsetof(cat_product, m)
#define V(m) offsetof(variant, m)

/* The product's fields in output order. */
static const fdef product_fields[] = {
    {"id", "product_id", K_ID, F_ID, P(c.id), CAT_ID_MAX, 0},
    {"sku", NULL, K_TEXT, F_SKU, P(c.sku), TEXT_MAX, 0},
    {"title", "name", K_TEXT, F_TITLE, P(c.title), TITLE_MAX, 0},
    {"url", NULL, K_TEXT, F_URL, P(c.url), URL_MAX, 0},
    {"image_url", "image", K_TEXT, F_IMAGE, P(c.image_url), URL_MAX, 0},
    {"brand", NULL, K_TEXT, F_BRAND, P(brand), TEXT_MAX, 0},
    {"categories", NULL, K_CATEGORIES, F_CATEGORIES, P(categories), 0, 0},
    {"category", NULL, K_CATEGORY, F_CATEGORIES, P(categories), 0, 0},
    {"price", NULL, K_MONEY, F_PRICE, P(c.price), 0, 0},
    {"sale_price", NULL, K_MONEY, F_SALE, P(c.sale_price), 0, 0},
    {"currency", NULL, K_CURRENCY, F_CURRENCY, P(currency), 0, 0},
    {"stock", NULL, K_STOCK, F_STOCK, P(c.stock), 0, 0},
    {"tags", NULL, K_NAMES, F_TAGS, P(tags), 0, 0},
    {"attributes", NULL, K_ATTRS, F_ATTRS, P(c.attrs), 0, 0},
    {"variants", NULL, K_VARIANTS, F_VARIANTS, 0, 0, 0},
    {"replenishable", NULL, K_BOOL, F_REPLEN, P(replenishable), 0, 0},
    {"status", NULL, K_STATUS, F_STATUS, P(status), 0, 0},
    {"availability", NULL, K_AVAIL, F_AVAIL, 0, 0, 0},
    {"in_stock", NULL, K_READONLY, 0, 0, 0, 0},
    {"source", NULL, K_READONLY, 0, 0, 0, 0},
    {"from_events", NULL, K_READONLY, 0, 0, 0, 0},
    {"created_at", NULL, K_READONLY, 0, 0, 0, 0},
    {"updated_at", NULL, K_READONLY, 0, 0, 0, 0},
};
static const size_t n_product_fields = sizeof product_fields / sizeof *product_fields;

static const fdef variant_fields[] = {
    {"id", NULL, K_ID, F_ID, V(c.id), CAT_ID_MAX, 0},
    {"sku", NULL, K_TEXT, F_SKU, V(c.sku), TEXT_MAX, 0},
    {"title", "name", K_TEXT, F_TITLE, V(c.title), TITLE_MAX, 0},
    {"url", NULL, K_TEXT, F_URL, V(c.url), URL_MAX, 0},
    {"image_url", "image", K_TEXT, F_IMAGE, V(c.image_url), URL_MAX, 0},
    {"price", NULL, K_MONEY, F_PRICE, V(c.price), 0, 0},
    {"sale_price", NULL, K_MONEY, F_SALE, V(c.sale_price), 0, 0},
    {"stock", NULL, K_STOCK, F_STOCK, V(c.stock), 0, 0},
    {"attributes", NULL, K_ATTRS, F_ATTRS, V(c.attrs), 0, 0},
    {"in_stock", NULL, K_READONLY, 0, 0, 0, 0},
};
static const size_t n_variant_fields = sizeof variant_fields / sizeof *variant_fields;

static const fdef avail_fields[] = {
    {"markets", NULL, K_NAMES, A_MARKETS, P(markets), 0, FL_LOWER | FL_NONEMPTY},
    {"price_lists", NULL, K_NAMES, A_PRICE_LISTS, P(price_lists), 0, FL_NONEMPTY},
    {"segments", NULL, K_NAMES, A_SEGMENTS, P(segments), 0, FL_NONEMPTY},
    {"rule", NULL, K_RULE, A_RULE, P(rule), CAT_RULE_MAX, 0},
};
static const size_t n_avail_fields = sizeof avail_fields / sizeof *avail_fields;

#undef P
#undef V

static int parse_id(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    char **dst = MEMBER(obj, f, char *);
    int rc = get_text(v, x, f->cap, dst);
    if (rc) return rc;
    if (!*dst) return bad(x, "missing_field", "must not be empty");
    *has |= f->bit;
    return 0;
}

static int parse_text(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    char **dst = MEMBER(obj, f, char *);
    int rc = get_text(v, x, f->cap, dst);
    if (!rc && *dst) *has |= f->bit;
    return rc;
}

static json_t *emit_text(const fdef *f, const void *obj, bool meta) {
    (void)meta;
    return json_string(*CMEMBER(obj, f, char *));
}

static int parse_money(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    int rc = get_money(v, x, MEMBER(obj, f, double));
    if (!rc) *has |= f->bit;
    return rc;
}

static json_t *emit_money(const fdef *f, const void *obj, bool meta) {
    (void)meta;
    return json_real(*CMEMBER(obj, f, double));
}

static bool currency_of(const char *s, size_t n, char out[4]) {
    if (n != 3) return false;
    for (size_t i = 0; i < 3; i++) {
        if (!isalpha((unsigned char)s[i]) || (unsigned char)s[i] > 127) return false;
        out[i] = (char)toupper((unsigned char)s[i]);
    }
    out[3] = '\0';
    return true;
}

static int parse_currency(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    if (!json_is_string(v) ||
        !currency_of(json_string_value(v), json_string_length(v), MEMBER(obj, f, char)))
        return bad(x, "invalid_field", "must be an ISO 4217 code of three letters, like \"EUR\"");
    *has |= f->bit;
    return 0;
}

static json_t *emit_currency(const fdef *f, const void *obj, bool meta) {
    (void)meta;
    return json_string(CMEMBER(obj, f, char));
}

static int add_category(const json_t *v, strs *l, pctx *x, bool empty_ok) {
    char digits[EV_NUMBER_TEXT_LEN];
    const char *s, *why = NULL;
    size_t n;
    /* A path may be longer than one name; category_add() checks each path it makes. */
    int rc = text_of(v, x, 4 * TEXT_MAX, digits, &s, &n);
    if (rc) return rc;
    if (n == 0) return empty_ok ? 0 : bad(x, "invalid_field", "must not be empty");
    rc = category_add(l, s, n, &why);
    if (rc == PE_NOMEM) return nomem(x);
    if (rc) return bad(x, "invalid_field", "%s", why);
    return 0;
}

static int parse_categories(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    strs *l = MEMBER(obj, f, strs);
    if (!json_is_array(v)) return bad(x, "invalid_field", "must be an array of strings");
    if (json_array_size(v) > CAT_LIST_ITEMS_MAX)
        return bad(x, "invalid_field", "must have at most %d entries", CAT_LIST_ITEMS_MAX);
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        size_t old = path_index(x, i);
        int rc = add_category(m, l, x, false);
        path_pop(x, old);
        if (rc) return rc;
    }
    if (l->n) *has |= f->bit;
    return 0;
}

static int parse_category(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    strs *l = MEMBER(obj, f, strs);
    int rc = add_category(v, l, x, true);
    if (!rc && l->n) *has |= f->bit;
    return rc;
}

static json_t *emit_strs(const fdef *f, const void *obj, bool meta) {
    (void)meta;
    const strs *l = CMEMBER(obj, f, strs);
    json_t *a = json_array();
    for (uint32_t i = 0; a && i < l->n; i++)
        if (json_array_append_new(a, json_string(l->v[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* A list of names (tags, markets, price lists, segments): strings or whole numbers, 1..255 bytes
 * each, duplicates dropped. */
static int parse_names(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    strs *l = MEMBER(obj, f, strs);
    if (!json_is_array(v)) return bad(x, "invalid_field", "must be an array of strings");
    if (json_array_size(v) > CAT_LIST_ITEMS_MAX)
        return bad(x, "invalid_field", "must have at most %d entries", CAT_LIST_ITEMS_MAX);
    if (json_array_size(v) == 0 && (f->flags & FL_NONEMPTY))
        return bad(x, "invalid_field", "must not be empty (leave it out to allow all)");
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        char digits[EV_NUMBER_TEXT_LEN], low[TEXT_MAX];
        const char *s;
        size_t n, old = path_index(x, i);
        int rc = text_of(m, x, TEXT_MAX, digits, &s, &n);
        if (!rc && n == 0) rc = bad(x, "invalid_field", "must not be empty");
        path_pop(x, old);
        if (rc) return rc;
        if (f->flags & FL_LOWER) {
            for (size_t k = 0; k < n; k++)
                low[k] = (char)tolower((unsigned char)s[k]);
            s = low;
        }
        if (strs_add(l, s, n) < 0) return nomem(x);
    }
    if (l->n) *has |= f->bit;
    return 0;
}

static int parse_stock(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    stock *st = MEMBER(obj, f, stock);
    int64_t q;
    if (!json_is_object(v)) {
        if (!json_is_number(v) && !json_is_string(v))
            return bad(x, "invalid_field", "must be an object of location: count, or a count");
        int rc = get_count(v, x, &q);
        if (rc) return rc;
        if (!(st->v = malloc(sizeof *st->v)) || !(st->v[0].name = strdup("default"))) {
            free(st->v);
            st->v = NULL;
            return nomem(x);
        }
        st->v[0].qty = st->total = q;
        st->n = 1;
        *has |= f->bit;
        return 0;
    }
    if (json_object_size(v) > CAT_LOCATIONS_MAX)
        return bad(x, "invalid_field", "must have at most %d locations", CAT_LOCATIONS_MAX);
    if (json_object_size(v) && !(st->v = calloc(json_object_size(v), sizeof *st->v)))
        return nomem(x);
    const char *key;
    json_t *m;
    json_object_foreach((json_t *)v, key, m) {
        if (json_is_null(m)) continue;
        size_t old = path_key(x, key), kn = strlen(key);
        int rc = 0;
        if (kn == 0 || kn > TEXT_MAX)
            rc = bad(x, "invalid_field", "is not a location name (1 to 255 bytes)");
        if (!rc) rc = get_count(m, x, &q);
        path_pop(x, old);
        if (rc) return rc;
        if (!(st->v[st->n].name = strdup(key))) return nomem(x);
        st->v[st->n++].qty = q;
        st->total += q;
    }
    /* {} is information too: stock is tracked and there is none. */
    *has |= f->bit;
    return 0;
}

static json_t *emit_stock(const fdef *f, const void *obj, bool meta) {
    (void)meta;
    const stock *st = CMEMBER(obj, f, stock);
    json_t *o = json_object();
    for (uint32_t i = 0; o && i < st->n; i++)
        if (json_object_set_new(o, st->v[i].name, json_integer(st->v[i].qty))) {
            json_decref(o);
            return NULL;
        }
    return o;
}

static int parse_attrs(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    if (!json_is_object(v)) return bad(x, "invalid_field", "must be an object");
    if (too_deep(v, CAT_ATTR_MAX_DEPTH, NULL))
        return bad(x, "invalid_field", "nests deeper than %d levels", CAT_ATTR_MAX_DEPTH);
    if (json_object_size(v) == 0) return 0;
    buf b = BUF_INIT(CAT_PRODUCT_MAX_BYTES);
    int rc = jsonw_value(&b, v);
    if (rc == BUF_TOOBIG) {
        buf_free(&b);
        return bad(x, "product_too_large", "is over %d bytes", CAT_PRODUCT_MAX_BYTES);
    }
    if (rc) {
        buf_free(&b);
        return nomem(x);
    }
    *MEMBER(obj, f, char *) = buf_detach(&b, NULL);
    *has |= f->bit;
    return 0;
}

static json_t *emit_attrs(const fdef *f, const void *obj, bool meta) {
    (void)meta;
    return json_loads(*CMEMBER(obj, f, char *), 0, NULL);
}

static int parse_variants(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    cat_product *p = obj;
    (void)f;
    if (!json_is_array(v)) return bad(x, "invalid_field", "must be an array of objects");
    size_t n = json_array_size(v);
    if (n > CAT_VARIANTS_MAX)
        return bad(x, "invalid_field", "must have at most %d variants", CAT_VARIANTS_MAX);
    if (n == 0) return 0;
    if (!(p->variants = calloc(n, sizeof *p->variants))) return nomem(x);
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(v, i);
        variant *va = &p->variants[i];
        size_t old = path_index(x, i);
        p->nvariants++; /* counted before parsing so prod_free() releases a half-parsed one */
        int rc = json_is_object(m) ? 0 : bad(x, "invalid_field", "must be an object");
        if (!rc) rc = parse_fields(variant_fields, n_variant_fields, m, va, &va->c.has, x);
        if (!rc && !(va->c.has & F_ID)) {
            size_t o2 = path_key(x, "id");
            rc = bad(x, "missing_field", "is required");
            path_pop(x, o2);
        }
        for (size_t j = 0; !rc && j < i; j++)
            if (strcmp(p->variants[j].c.id, va->c.id) == 0) {
                size_t o2 = path_key(x, "id");
                rc = bad(x, "invalid_field", "repeats the id of variants[%zu]", j);
                path_pop(x, o2);
            }
        path_pop(x, old);
        if (rc) return rc;
    }
    *has |= F_VARIANTS;
    return 0;
}

static json_t *emit_variants(const fdef *f, const void *obj, bool meta) {
    const cat_product *p = obj;
    (void)f;
    json_t *a = json_array();
    for (uint32_t i = 0; a && i < p->nvariants; i++) {
        const variant *va = &p->variants[i];
        json_t *o = emit_fields(variant_fields, n_variant_fields, va, va->c.has, meta);
        if (o && meta && json_object_set_new(o, "in_stock", json_boolean(va->in_stock))) {
            json_decref(o);
            o = NULL;
        }
        if (json_array_append_new(a, o)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static int parse_bool(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    if (!json_is_boolean(v)) return bad(x, "invalid_field", "must be true or false");
    *MEMBER(obj, f, bool) = json_is_true(v);
    *has |= f->bit;
    return 0;
}

static json_t *emit_bool(const fdef *f, const void *obj, bool meta) {
    (void)meta;
    return json_boolean(*CMEMBER(obj, f, bool));
}

static const char *const status_names[] = {
    [CAT_ACTIVE] = "active", [CAT_ARCHIVED] = "archived", [CAT_DRAFT] = "draft"};

static int parse_status(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    const char *s = json_string_value(v);
    for (size_t i = 0; s && i < sizeof status_names / sizeof *status_names; i++)
        if (strcmp(s, status_names[i]) == 0 && strlen(s) == json_string_length(v)) {
            *MEMBER(obj, f, cat_status) = (cat_status)i;
            *has |= f->bit;
            return 0;
        }
    return bad(x, "invalid_field", "must be \"active\", \"archived\" or \"draft\"");
}

static json_t *emit_status(const fdef *f, const void *obj, bool meta) {
    (void)meta;
    return json_string(status_names[*CMEMBER(obj, f, cat_status)]);
}

static unsigned avail_has(const cat_product *p) {
    return (p->markets.n ? A_MARKETS : 0) | (p->price_lists.n ? A_PRICE_LISTS : 0) |
           (p->segments.n ? A_SEGMENTS : 0) | (p->rule ? A_RULE : 0);
}

static int parse_avail(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    if (!json_is_object(v)) return bad(x, "invalid_field", "must be an object");
    unsigned ahas = 0;
    int rc = parse_fields(avail_fields, n_avail_fields, v, obj, &ahas, x);
    if (!rc && ahas) *has |= f->bit;
    return rc;
}

static json_t *emit_avail(const fdef *f, const void *obj, bool meta) {
    (void)f;
    return emit_fields(avail_fields, n_avail_fields, obj, avail_has(obj), meta);
}

static bool rules_enabled(const cat_options *opt) {
    return opt && opt->rule_compile && opt->rule_eval && opt->rule_free;
}

static int parse_rule(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    cat_product *p = obj;
    char *src;
    int rc = get_text(v, x, f->cap, &src);
    if (rc || !src) return rc;
    if (!rules_enabled(x->opt)) {
        free(src);
        return bad(x, "invalid_field", "cannot be used: rules are not enabled");
    }
    ev_error cerr = {0};
    p->compiled = x->opt->rule_compile(src, strlen(src), &cerr, x->opt->rule_arg);
    if (!p->compiled) {
        free(src);
        return bad(x, "invalid_field", "is not a valid rule: %s", cerr.message);
    }
    p->rule = src;
    *has |= f->bit;
    return 0;
}

static int parse_readonly(const fdef *f, const json_t *v, void *obj, unsigned *has, pctx *x) {
    (void)f, (void)v, (void)obj, (void)has, (void)x;
    return 0;
}

static bool eq_text(const fdef *f, const void *a, const void *b) {
    return strcmp(*CMEMBER(a, f, char *), *CMEMBER(b, f, char *)) == 0;
}

static bool eq_money(const fdef *f, const void *a, const void *b) {
    return *CMEMBER(a, f, double) == *CMEMBER(b, f, double);
}

static bool eq_currency(const fdef *f, const void *a, const void *b) {
    return strcmp(CMEMBER(a, f, char), CMEMBER(b, f, char)) == 0;
}

static bool eq_strs(const fdef *f, const void *a, const void *b) {
    const strs *x = CMEMBER(a, f, strs), *y = CMEMBER(b, f, strs);
    if (x->n != y->n) return false;
    for (uint32_t i = 0; i < x->n; i++)
        if (strcmp(x->v[i], y->v[i]) != 0) return false;
    return true;
}

static bool eq_stock(const fdef *f, const void *a, const void *b) {
    const stock *x = CMEMBER(a, f, stock), *y = CMEMBER(b, f, stock);
    if (x->n != y->n) return false;
    for (uint32_t i = 0; i < x->n; i++)
        if (x->v[i].qty != y->v[i].qty || strcmp(x->v[i].name, y->v[i].name) != 0) return false;
    return true;
}

static bool eq_fields(const fdef *t, size_t nt, const void *a, unsigned ha, const void *b,
                      unsigned hb);

static bool eq_variants(const fdef *f, const void *a, const void *b) {
    const cat_product *x = a, *y = b;
    (void)f;
    if (x->nvariants != y->nvariants) return false;
    for (uint32_t i = 0; i < x->nvariants; i++) {
        const variant *va = &x->variants[i], *vb = &y->variants[i];
        if (!eq_fields(variant_fields, n_variant_fields, va, va->c.has, vb, vb->c.has))
            return false;
    }
    return true;
}

static bool eq_bool(const fdef *f, const void *a, const void *b) {
    return *CMEMBER(a, f, bool) == *CMEMBER(b, f, bool);
}

static bool eq_status(const fdef *f, const void *a, const void *b) {
    return *CMEMBER(a, f, cat_status) == *CMEMBER(b, f, cat_status);
}

static unsigned avail_has(const cat_product *p);

static bool eq_avail(const fdef *f, const void *a, const void *b) {
    (void)f;
    return eq_fields(avail_fields, n_avail_fields, a, avail_has(a), b, avail_has(b));
}

static const kdef kinds[NKINDS] = {
    [K_ID] = {parse_id, emit_text, eq_text},
    [K_TEXT] = {parse_text, emit_text, eq_text},
    [K_MONEY] = {parse_money, emit_money, eq_money},
    [K_CURRENCY] = {parse_currency, emit_currency, eq_currency},
    [K_CATEGORIES] = {parse_categories, emit_strs, eq_strs},
    [K_CATEGORY] = {parse_category, NULL, NULL},
    [K_NAMES] = {parse_names, emit_strs, eq_strs},
    [K_STOCK] = {parse_stock, emit_stock, eq_stock},
    [K_ATTRS] = {parse_attrs, emit_attrs, eq_text}, /* the same compact text for the same JSON */
    [K_VARIANTS] = {parse_variants, emit_variants, eq_variants},
    [K_BOOL] = {parse_bool, emit_bool, eq_bool},
    [K_STATUS] = {parse_status, emit_status, eq_status},
    [K_AVAIL] = {parse_avail, emit_avail, eq_avail},
    [K_RULE] = {parse_rule, emit_text, eq_text},
    [K_READONLY] = {parse_readonly, NULL, NULL},
};

static const fdef *field_find(const fdef *t, size_t nt, const char *key, bool *alias) {
    *alias = false;
    for (size_t i = 0; i < nt; i++) {
        if (strcmp(t[i].name, key) == 0) {
            *alias = false;
            return &t[i];
        }
        if (t[i].alias && strcmp(t[i].alias, key) == 0) {
            *alias = true;
            return &t[i];
        }
    }
    return NULL;
}

/* Parses every member of obj through the table, in the object's order, so the first bad member
 * as sent is the one reported. null is absent. A name and its alias may both be given only with
 * equal values. */
static int parse_fields(const fdef *t, size_t nt, const json_t *obj, void *base, unsigned *has,
                        pctx *x) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        bool alias;
        const fdef *f = field_find(t, nt, key, &alias);
        size_t old = path_key(x, key);
        int rc = 0;
        if (!f) {
            rc = bad(x, "invalid_field",
                     t == product_fields ? "is not a product field (custom data goes in "
                                           "attributes)"
                                         : "is not a known field");
        } else if (alias && json_object_get(obj, f->name)) {
            if (!json_equal(v, json_object_get(obj, f->name)))
                rc = bad(x, "invalid_field", "and %s are the same field with different values",
                         f->name);
        } else if (!json_is_null(v)) {
            rc = kinds[f->kind].parse(f, v, base, has, x);
        }
        path_pop(x, old);
        if (rc) return rc;
    }
    return 0;
}

static json_t *emit_fields(const fdef *t, size_t nt, const void *base, unsigned has, bool meta) {
    json_t *o = json_object();
    for (size_t i = 0; o && i < nt; i++) {
        const fdef *f = &t[i];
        if (!kinds[f->kind].emit || !(has & f->bit)) continue;
        if (json_object_set_new(o, f->name, kinds[f->kind].emit(f, base, meta))) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* Same fields with the same values (what emit_fields() would show)? */
static bool eq_fields(const fdef *t, size_t nt, const void *a, unsigned ha, const void *b,
                      unsigned hb) {
    for (size_t i = 0; i < nt; i++) {
        const fdef *f = &t[i];
        if (!kinds[f->kind].eq) continue;
        if ((ha & f->bit) != (hb & f->bit)) return false;
        if ((ha & f->bit) && !kinds[f->kind].eq(f, a, b)) return false;
    }
    return true;
}

/* ---- products ---- */

/* The price pair a variant sells at: its own price with its own sale price, or the product's
 * price with the variant's sale price if it has one, else the product's. */
static void variant_pair(const cat_product *p, const variant *va, double *price, bool *hp,
                         double *sale, bool *hs) {
    if (va->c.has & F_PRICE) {
        *price = va->c.price;
        *hp = true;
        *sale = va->c.sale_price;
        *hs = va->c.has & F_SALE;
        return;
    }
    *price = p->c.price;
    *hp = p->c.has & F_PRICE;
    if (va->c.has & F_SALE) {
        *sale = va->c.sale_price;
        *hs = true;
    } else {
        *sale = p->c.sale_price;
        *hs = p->c.has & F_SALE;
    }
}

static bool effective(double price, bool hp, double sale, bool hs, double *out) {
    if (hs)
        *out = sale;
    else if (hp)
        *out = price;
    return hs || hp;
}

static bool product_effective(const cat_product *p, double *out) {
    return effective(p->c.price, p->c.has & F_PRICE, p->c.sale_price, p->c.has & F_SALE, out);
}

static bool variant_effective(const cat_product *p, const variant *va, double *out) {
    double price, sale;
    bool hp, hs;
    variant_pair(p, va, &price, &hp, &sale, &hs);
    return effective(price, hp, sale, hs, out);
}

/* Stock facts that follow from the fields. Stock is tracked once the product or any variant gives
 * some; the total counts the product's own locations and every variant's. A variant without stock
 * of its own follows the product's own stock if it has one, else the product as a whole. */
static void prod_derive(cat_product *p) {
    bool info = p->c.has & F_STOCK;
    int64_t total = info ? p->c.stock.total : 0;
    for (uint32_t i = 0; i < p->nvariants; i++)
        if (p->variants[i].c.has & F_STOCK) {
            info = true;
            total += p->variants[i].c.stock.total;
        }
    p->stock_total = info ? total : -1;
    p->in_stock = !info || total > 0;
    for (uint32_t i = 0; i < p->nvariants; i++) {
        variant *va = &p->variants[i];
        if (va->c.has & F_STOCK)
            va->in_stock = va->c.stock.total > 0;
        else if (p->c.has & F_STOCK)
            va->in_stock = p->c.stock.total > 0;
        else
            va->in_stock = p->in_stock;
    }
}

/* Checks that need the whole product: sale prices within prices, the variants' pairs included. */
static int prod_check(const cat_product *p, pctx *x) {
    if ((p->c.has & F_SALE) && (p->c.has & F_PRICE) && p->c.sale_price > p->c.price) {
        size_t old = path_key(x, "sale_price");
        bad(x, "invalid_field", "must not exceed price");
        path_pop(x, old);
        return PE_INVALID;
    }
    for (uint32_t i = 0; i < p->nvariants; i++) {
        double price, sale;
        bool hp, hs;
        variant_pair(p, &p->variants[i], &price, &hp, &sale, &hs);
        if (hp && hs && sale > price) {
            size_t old = path_key(x, "variants");
            path_index(x, i);
            path_key(x, "sale_price");
            bad(x, "invalid_field", "must not exceed the variant's price");
            path_pop(x, old);
            return PE_INVALID;
        }
    }
    return 0;
}

/* Validates one product object (at x's path) into a new product. */
static int prod_parse(const json_t *obj, pctx *x, cat_product **out) {
    *out = NULL;
    if (!json_is_object(obj)) return bad(x, "invalid_field", "must be an object");
    cat_product *p = calloc(1, sizeof *p);
    if (!p) return nomem(x);
    int rc = parse_fields(product_fields, n_product_fields, obj, p, &p->c.has, x);
    if (!rc && !(p->c.has & F_ID)) {
        size_t old = path_key(x, "id");
        rc = bad(x, "missing_field", "is required");
        path_pop(x, old);
    }
    if (!rc) rc = prod_check(p, x);
    if (rc) {
        prod_free(p, x->opt);
        return rc;
    }
    p->c.has |= F_STATUS;
    p->id_len = (uint32_t)strlen(p->c.id);
    p->hash = hash64(p->c.id, p->id_len);
    p->stock_total = -1;
    prod_derive(p);
    *out = p;
    return 0;
}

static json_t *strs_json_bits(unsigned bits) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n_product_fields; i++) {
        const fdef *f = &product_fields[i];
        if (!kinds[f->kind].emit || !(bits & f->bit)) continue;
        if (json_array_append_new(a, json_string(f->name))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* The product's JSON; meta adds the read-only fields. */
static json_t *prod_json(const cat_product *p, bool meta) {
    json_t *o = emit_fields(product_fields, n_product_fields, p, p->c.has, meta);
    if (!o || !meta) return o;
    char t1[TF_LEN], t2[TF_LEN];
    int rc = json_object_set_new(o, "in_stock", json_boolean(p->in_stock));
    rc |= json_object_set_new(o, "source", json_string(p->from_events ? "events" : "catalog"));
    if (p->learned) rc |= json_object_set_new(o, "from_events", strs_json_bits(p->learned));
    rc |= json_object_set_new(o, "created_at", json_string(tf_format(p->created_ms, t1)));
    rc |= json_object_set_new(o, "updated_at", json_string(tf_format(p->updated_ms, t2)));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Same catalogue content (fields and status; not where they came from)? */
static bool prod_same(const cat_product *a, const cat_product *b) {
    return eq_fields(product_fields, n_product_fields, a, a->c.has, b, b->c.has);
}

/* ---- the catalogue's index ---- */

uint64_t cat_hash(const char *id, size_t len) {
    return hash64(id, len);
}

void cat_prefetch(const cat *c, uint64_t hash, int stage) {
    if (!c->nslots) return;
    const uint32_t *slot = &c->slots[hash & (c->nslots - 1)];
    if (stage == 0) {
        __builtin_prefetch(slot);
        return;
    }
    if (!*slot) return;
    cat_product *const *p = &c->prods[*slot - 1];
    if (stage == 1)
        __builtin_prefetch(p);
    else if (stage == 2)
        __builtin_prefetch(*p);
    else if ((*p)->hash == hash)
        __builtin_prefetch((*p)->c.id);
}

static cat_product *find(const cat *c, const char *id, size_t len) {
    if (!c->nslots) return NULL;
    uint64_t h = hash64(id, len);
    size_t mask = c->nslots - 1;
    for (size_t i = (size_t)h & mask; c->slots[i]; i = (i + 1) & mask) {
        cat_product *p = c->prods[c->slots[i] - 1];
        if (p->hash == h && p->id_len == len && memcmp(p->c.id, id, len) == 0) return p;
    }
    return NULL;
}

static void slot_put(uint32_t *slots, size_t nslots, const cat_product *p) {
    size_t mask = nslots - 1, i = (size_t)p->hash & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = p->ord + 1;
}

static int id_cmp(const cat_product *a, const cat_product *b) {
    size_t n = a->id_len < b->id_len ? a->id_len : b->id_len;
    int r = memcmp(a->c.id, b->c.id, n);
    if (r) return r;
    return (a->id_len > b->id_len) - (a->id_len < b->id_len);
}

static int id_cmp_ptr(const void *a, const void *b) {
    return id_cmp(*(cat_product *const *)a, *(cat_product *const *)b);
}

/* Merges the tail (ordinals nsorted .. n-1) into the sorted index. tmp has room for the tail and
 * sorted for n entries, so nothing here can fail. */
static void fold_tail(cat *c, cat_product **tmp) {
    size_t t = c->n - c->nsorted;
    for (size_t i = 0; i < t; i++)
        tmp[i] = c->prods[c->nsorted + i];
    qsort(tmp, t, sizeof *tmp, id_cmp_ptr);
    /* Merge from the back so the sorted prefix can stay where it is. */
    size_t i = c->nsorted, j = t, k = c->n;
    while (j > 0) {
        if (i > 0 && id_cmp(c->prods[c->sorted[i - 1]], tmp[j - 1]) > 0)
            c->sorted[--k] = c->sorted[--i];
        else
            c->sorted[--k] = tmp[--j]->ord;
    }
    c->nsorted = c->n;
}

/* ---- changes ---- */

static void change_free(cat_change *ch) {
    free(ch->product_id);
    free(ch->variant_id);
}

void cat_changes_free(cat_changes *ch) {
    if (!ch) return;
    for (size_t i = 0; i < ch->n; i++)
        change_free(&ch->v[i]);
    free(ch->v);
    memset(ch, 0, sizeof *ch);
}

static int change_add(cat_changes *l, cat_change *ch, const char *pid, const char *vid) {
    ch->product_id = strdup(pid);
    ch->variant_id = vid ? strdup(vid) : NULL;
    if (!ch->product_id || (vid && !ch->variant_id) ||
        vec_reserve((void **)&l->v, &l->alloc, l->n + 1, sizeof *l->v)) {
        change_free(ch);
        return -1;
    }
    l->v[l->n++] = *ch;
    return 0;
}

static int price_change(cat_changes *l, const char *pid, const char *vid, bool ho, double o,
                        const char *oc, bool hn, double nw, const char *nc) {
    if (!ho || !hn || (o == nw && strcmp(oc, nc) == 0)) return 0;
    cat_change ch = {.kind = CAT_PRICE_CHANGED, .old_price = o, .new_price = nw};
    snprintf(ch.old_currency, sizeof ch.old_currency, "%s", oc);
    snprintf(ch.new_currency, sizeof ch.new_currency, "%s", nc);
    if (nw < o && strcmp(oc, nc) == 0) ch.flags |= CAT_PRICE_DROP;
    return change_add(l, &ch, pid, vid);
}

static int stock_change(cat_changes *l, const char *pid, const char *vid, int64_t o, bool oin,
                        int64_t nw, bool nin) {
    if (o == nw && oin == nin) return 0;
    cat_change ch = {.kind = CAT_STOCK_CHANGED,
                     .old_stock = o,
                     .new_stock = nw,
                     .old_in_stock = oin,
                     .new_in_stock = nin};
    if (!oin && nin) ch.flags |= CAT_BACK_IN_STOCK;
    if (oin && !nin) ch.flags |= CAT_SOLD_OUT;
    return change_add(l, &ch, pid, vid);
}

static const char *currency_or_empty(const cat_product *p) {
    return (p->c.has & F_CURRENCY) ? p->currency : "";
}

static const variant *variant_find(const cat_product *p, const char *id, uint32_t hint) {
    if (hint < p->nvariants && strcmp(p->variants[hint].c.id, id) == 0) return &p->variants[hint];
    for (uint32_t i = 0; i < p->nvariants; i++)
        if (strcmp(p->variants[i].c.id, id) == 0) return &p->variants[i];
    return NULL;
}

static int diff(cat_changes *l, const cat_product *o, const cat_product *n) {
    const char *pid = n->c.id, *oc = currency_or_empty(o), *nc = currency_or_empty(n);
    double op = 0, np = 0;
    bool ho = product_effective(o, &op), hn = product_effective(n, &np);
    if (price_change(l, pid, NULL, ho, op, oc, hn, np, nc)) return -1;
    if (stock_change(l, pid, NULL, o->stock_total, o->in_stock, n->stock_total, n->in_stock))
        return -1;
    for (uint32_t i = 0; i < n->nvariants; i++) {
        const variant *nv = &n->variants[i], *ov = variant_find(o, nv->c.id, i);
        if (!ov) continue;
        ho = variant_effective(o, ov, &op);
        hn = variant_effective(n, nv, &np);
        if (price_change(l, pid, nv->c.id, ho, op, oc, hn, np, nc)) return -1;
        int64_t os = (ov->c.has & F_STOCK) ? ov->c.stock.total : -1;
        int64_t ns = (nv->c.has & F_STOCK) ? nv->c.stock.total : -1;
        if (stock_change(l, pid, nv->c.id, os, ov->in_stock, ns, nv->in_stock)) return -1;
    }
    return 0;
}

/* ---- commit: the one way products enter the catalogue ----
 * np[0..m) are new products with distinct ids, their metadata (learned, from_events) set by the
 * caller; each replaces the product with its id or is added. Everything that can fail is done
 * first; then pointers are swapped. On failure nothing has changed and np is still the caller's.
 * On success np's products belong to the catalogue. */
static int commit(cat *c, cat_product **np, size_t m, int64_t now_ms, cat_changes *out) {
    cat_product **olds = calloc(m ? m : 1, sizeof *olds);
    cat_changes tmp = CAT_CHANGES_INIT;
    uint32_t *slots = NULL;
    cat_product **fold = NULL;
    size_t k = 0, nslots = c->nslots;
    if (!olds) return CAT_NOMEM;
    for (size_t i = 0; i < m; i++) {
        olds[i] = find(c, np[i]->c.id, np[i]->id_len);
        if (!olds[i]) k++;
    }
    if (c->n + k > CAT_MAX_PRODUCTS) goto fail;
    for (size_t i = 0; i < m; i++) {
        cat_product *o = olds[i], *p = np[i];
        if (o) {
            bool same = prod_same(o, p);
            p->created_ms = o->created_ms;
            /* Provenance counts as content for updated_at: from_events shows it. */
            p->updated_ms = same && o->learned == p->learned && o->from_events == p->from_events
                                ? o->updated_ms
                                : now_ms;
            if (out && diff(&tmp, o, p)) goto fail;
        } else {
            p->created_ms = p->updated_ms = now_ms;
        }
        if (p->compiled) {
            json_decref(p->json);
            if (!(p->json = prod_json(p, true))) goto fail;
        }
        if (prod_card(p)) goto fail;
    }
    if (out && vec_reserve((void **)&out->v, &out->alloc, out->n + tmp.n, sizeof *out->v))
        goto fail;
    if (vec_reserve((void **)&c->prods, &c->alloc, c->n + k, sizeof *c->prods) ||
        vec_reserve((void **)&c->gate, &c->gate_alloc, c->n + k, 1))
        goto fail;
    if ((c->n + k) * 2 > nslots) {
        while ((c->n + k) * 2 > nslots)
            nslots = nslots ? nslots * 2 : 64;
        if (!(slots = calloc(nslots, sizeof *slots))) goto fail;
    }
    bool folding = c->n + k - c->nsorted > TAIL_MAX;
    if (folding) {
        if (vec_reserve((void **)&c->sorted, &c->sorted_alloc, c->n + k, sizeof *c->sorted) ||
            !(fold = malloc((c->n + k - c->nsorted) * sizeof *fold)))
            goto fail;
    }

    /* Nothing below allocates. */
    for (size_t i = 0; i < m; i++) {
        cat_product *o = olds[i], *p = np[i];
        if (o) {
            p->ord = o->ord;
            c->n_observed -= o->from_events;
        } else {
            p->ord = (uint32_t)c->n++;
            if (!slots) slot_put(c->slots, c->nslots, p);
        }
        c->n_observed += p->from_events;
        c->prods[p->ord] = p;
        c->gate[p->ord] = gate_of(p);
    }
    if (slots) {
        for (size_t i = 0; i < c->n; i++)
            slot_put(slots, nslots, c->prods[i]);
        free(c->slots);
        c->slots = slots;
        c->nslots = nslots;
    }
    if (folding) fold_tail(c, fold);
    if (out && tmp.n) {
        memcpy(out->v + out->n, tmp.v, tmp.n * sizeof *tmp.v);
        out->n += tmp.n;
        free(tmp.v);
    }
    for (size_t i = 0; i < m; i++)
        prod_free(olds[i], &c->opt);
    free(olds);
    free(fold);
    return CAT_OK;

fail:
    for (size_t i = 0; i < m; i++) {
        json_decref(np[i]->json);
        np[i]->json = NULL;
    }
    cat_changes_free(&tmp);
    free(slots);
    free(fold);
    free(olds);
    return CAT_NOMEM;
}

/* ---- the catalogue ---- */

static void check_options(const cat_options *opt) {
    if (!opt) return;
    int given = !!opt->rule_compile + !!opt->rule_eval + !!opt->rule_free;
    if (given != 0 && given != 3) {
        fprintf(stderr, "catalog: rule_compile, rule_eval and rule_free go together\n");
        abort();
    }
}

cat *cat_new(const cat_options *opt) {
    check_options(opt);
    cat *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (opt) c->opt = *opt;
    if (!c->opt.max_observed) c->opt.max_observed = CAT_OBSERVED_DEFAULT;
    return c;
}

void cat_free(cat *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++)
        prod_free(c->prods[i], &c->opt);
    free(c->prods);
    free(c->slots);
    free(c->sorted);
    free(c->gate);
    free(c);
}

/* ---- upsert ---- */

static void prods_free(cat_product **v, size_t n, const cat_options *opt) {
    for (size_t i = 0; v && i < n; i++)
        prod_free(v[i], opt);
    free(v);
}

/* Validates a bulk into products (owned by the caller on success). */
static int parse_bulk(const cat_options *opt, const json_t *body, cat_product ***out, size_t *nout,
                      ev_error *err) {
    pctx x;
    pctx_init(&x, opt, err);
    *out = NULL;
    *nout = 0;
    if (!json_is_array(body)) {
        ev_error_set(err, "invalid_body", "", "the body must be a JSON array of products");
        return PE_INVALID;
    }
    size_t n = json_array_size(body), nslots = 16;
    if (n > CAT_BULK_MAX) {
        ev_error_set(err, "too_many_products", "",
                     "an upsert takes at most %d products; this one has %zu", CAT_BULK_MAX, n);
        return PE_INVALID;
    }
    while (nslots < 2 * n)
        nslots *= 2;
    cat_product **v = calloc(n ? n : 1, sizeof *v);
    uint32_t *seen = calloc(nslots, sizeof *seen); /* index + 1 by id hash: repeated ids */
    if (!v || !seen) {
        free(v);
        free(seen);
        return nomem(&x);
    }
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const json_t *item = json_array_get(body, i);
        path_index(&x, i);
        rc = json_is_object(item) ? check_bounds(item, &x)
                                  : bad(&x, "invalid_field", "must be an object");
        if (!rc) rc = prod_parse(item, &x, &v[i]);
        for (size_t s = rc ? 0 : v[i]->hash & (nslots - 1); !rc && seen[s];
             s = (s + 1) & (nslots - 1)) {
            const cat_product *q = v[seen[s] - 1];
            if (q->hash == v[i]->hash && strcmp(q->c.id, v[i]->c.id) == 0) {
                path_key(&x, "id");
                rc = bad(&x, "invalid_field", "repeats the id of [%u]", seen[s] - 1);
            }
        }
        if (!rc) {
            size_t s = v[i]->hash & (nslots - 1);
            while (seen[s])
                s = (s + 1) & (nslots - 1);
            seen[s] = (uint32_t)i + 1;
        }
        path_pop(&x, 0);
    }
    free(seen);
    if (rc) {
        prods_free(v, n, opt);
        return rc;
    }
    *out = v;
    *nout = n;
    return 0;
}

int cat_upsert_prepare(const cat_options *opt, const json_t *body, json_t **logged, ev_error *err) {
    check_options(opt);
    cat_product **v;
    size_t n;
    if (logged) *logged = NULL;
    if (parse_bulk(opt, body, &v, &n, err)) return -1;
    json_t *a = logged ? json_array() : NULL;
    int rc = logged && !a;
    for (size_t i = 0; logged && !rc && i < n; i++)
        rc = json_array_append_new(a, prod_json(v[i], false));
    prods_free(v, n, opt);
    if (rc) {
        json_decref(a);
        ev_error_set(err, "internal", "", "out of memory");
        return -1;
    }
    if (logged) *logged = a;
    return 0;
}

static int dup_text(char **dst, const char *src) {
    return src && !(*dst = strdup(src)) ? -1 : 0;
}

/* Copies into p the fields old learned from events that p lacks (see cat_upsert_apply). */
static int carry_learned(cat_product *p, const cat_product *old) {
    unsigned keep = old->learned & ~p->c.has;
    if (p->c.has & F_MONEY) keep &= ~F_MONEY;
    int rc = 0;
    if (keep & F_SKU) rc |= dup_text(&p->c.sku, old->c.sku);
    if (keep & F_TITLE) rc |= dup_text(&p->c.title, old->c.title);
    if (keep & F_URL) rc |= dup_text(&p->c.url, old->c.url);
    if (keep & F_IMAGE) rc |= dup_text(&p->c.image_url, old->c.image_url);
    if (keep & F_BRAND) rc |= dup_text(&p->brand, old->brand);
    if (keep & F_CATEGORIES) rc |= strs_copy(&p->categories, &old->categories);
    if (keep & F_PRICE) p->c.price = old->c.price;
    if (keep & F_CURRENCY) memcpy(p->currency, old->currency, sizeof p->currency);
    /* Set the bits even on failure, so prod_free() releases what was copied. */
    p->c.has |= keep;
    p->learned = keep;
    return rc ? -1 : 0;
}

static int status_of(int rc) {
    return rc == PE_NOMEM ? CAT_NOMEM : CAT_INVALID;
}

int cat_upsert_apply(cat *c, const json_t *logged, int64_t now_ms, cat_changes *changes) {
    cat_product **v;
    size_t n;
    ev_error err;
    int rc = parse_bulk(&c->opt, logged, &v, &n, &err);
    if (rc) return status_of(rc);
    for (size_t i = 0; i < n && !rc; i++) {
        const cat_product *old = find(c, v[i]->c.id, v[i]->id_len);
        if (old && carry_learned(v[i], old)) rc = CAT_NOMEM;
    }
    if (!rc) rc = commit(c, v, n, now_ms, changes);
    if (rc) {
        prods_free(v, n, &c->opt);
        return rc;
    }
    free(v);
    return CAT_OK;
}

/* ---- patch ---- */

/* Renames aliases in one object of a patch (product or variant level) into out, drops read-only
 * members, and checks that "id" (or an alias) only repeats id. */
static int patch_names(const json_t *patch, const fdef *t, size_t nt, const char *id, json_t *out,
                       pctx *x) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)patch, key, v) {
        bool alias;
        const fdef *f = field_find(t, nt, key, &alias);
        size_t old = path_key(x, key);
        int rc = 0;
        if (f && f->kind == K_READONLY) {
            path_pop(x, old);
            continue;
        }
        if (f && f->kind == K_ID) {
            char digits[EV_NUMBER_TEXT_LEN];
            const char *s = NULL;
            size_t n = 0;
            if (!json_is_null(v)) rc = text_of(v, x, CAT_ID_MAX, digits, &s, &n);
            if (!rc && (!s || strlen(id) != n || memcmp(s, id, n) != 0))
                rc = bad(x, "invalid_field", "cannot be changed (this is \"%s\")", id);
            path_pop(x, old);
            if (rc) return rc;
            continue;
        }
        const char *name = f ? f->name : key;
        json_t *val = NULL;
        if (f && f->kind == K_CATEGORY) {
            name = "categories";
            if (json_object_get(patch, "categories"))
                rc = bad(x, "invalid_field", "and categories cannot both be in a patch");
            else
                val = json_is_null(v) ? json_null() : json_pack("[O]", v);
        } else if (alias && json_object_get(patch, name)) {
            /* The canonical member carries the value; the alias may only repeat it. */
            if (!json_equal(v, json_object_get(patch, name)))
                rc = bad(x, "invalid_field", "and %s are the same field with different values",
                         name);
            path_pop(x, old);
            if (rc) return rc;
            continue;
        } else {
            val = json_incref(v);
        }
        /* json_object_set_new() takes val even when it fails. */
        if (!rc && (!val || json_object_set_new(out, name, val))) rc = nomem(x);
        path_pop(x, old);
        if (rc) return rc;
    }
    return 0;
}

/* The patch with names canonical, and "variants" given as an object (keyed by variant id)
 * resolved against the product's current variants into the whole new array. */
static int patch_translate(const cat_product *p, const json_t *patch, json_t **out, pctx *x) {
    json_t *t = json_object();
    *out = NULL;
    if (!t) return nomem(x);
    int rc = patch_names(patch, product_fields, n_product_fields, p->c.id, t, x);
    json_t *vp = json_object_get(t, "variants");
    if (!rc && json_is_object(vp)) {
        json_t *cur = emit_variants(NULL, p, false);
        const char *vid;
        json_t *m;
        size_t old = path_key(x, "variants");
        if (!cur) rc = nomem(x);
        json_object_foreach(vp, vid, m) {
            if (rc) break;
            size_t o2 = path_key(x, vid), at = SIZE_MAX, i;
            json_t *e;
            json_array_foreach(cur, i, e) {
                if (strcmp(json_string_value(json_object_get(e, "id")), vid) == 0) at = i;
            }
            if (json_is_null(m)) {
                if (at != SIZE_MAX) json_array_remove(cur, at);
            } else if (!json_is_object(m)) {
                rc = bad(x, "invalid_field", "must be an object or null");
            } else {
                json_t *named = json_object();
                if (!named) rc = nomem(x);
                if (!rc) rc = patch_names(m, variant_fields, n_variant_fields, vid, named, x);
                if (!rc && at == SIZE_MAX) {
                    json_t *fresh = json_pack("{ss}", "id", vid);
                    if (!fresh || json_array_append_new(cur, fresh)) rc = nomem(x);
                    at = json_array_size(cur) - 1;
                }
                if (!rc && jmerge_patch(json_array_get(cur, at), named)) rc = nomem(x);
                json_decref(named);
            }
            path_pop(x, o2);
        }
        path_pop(x, old);
        if (!rc && json_object_set_new(t, "variants", cur))
            rc = nomem(x);
        else if (rc)
            json_decref(cur);
    }
    if (rc) {
        json_decref(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* The bits of the product fields a translated patch names. */
static unsigned patch_bits(const json_t *t) {
    unsigned bits = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)t, key, v) {
        bool alias;
        const fdef *f = field_find(product_fields, n_product_fields, key, &alias);
        if (f) bits |= f->bit;
    }
    return bits;
}

/* Translates patch, merges it into p and validates the result into *out. */
static int patch_build(const cat *c, const cat_product *p, const json_t *patch, pctx *x,
                       json_t **translated, cat_product **out) {
    *out = NULL;
    *translated = NULL;
    if (!json_is_object(patch)) {
        ev_error_set(x->err, "invalid_body", "", "a patch must be a JSON object");
        return PE_INVALID;
    }
    int rc = check_bounds(patch, x);
    json_t *t = NULL, *merged = NULL;
    if (!rc) rc = patch_translate(p, patch, &t, x);
    if (!rc && (!(merged = prod_json(p, false)) || jmerge_patch(merged, t))) rc = nomem(x);
    if (!rc) rc = check_bounds(merged, x);
    if (!rc) rc = prod_parse(merged, x, out);
    json_decref(merged);
    if (rc) {
        json_decref(t);
        return rc;
    }
    (*out)->learned = p->learned & ~patch_bits(t) & (*out)->c.has;
    *translated = t;
    (void)c;
    return 0;
}

int cat_patch_prepare(const cat *c, const char *id, const json_t *patch, json_t **logged,
                      ev_error *err) {
    pctx x;
    pctx_init(&x, &c->opt, err);
    if (logged) *logged = NULL;
    const cat_product *p = id ? find(c, id, strlen(id)) : NULL;
    if (!p) {
        ev_error_set(err, "not_found", "id", "no product has the id \"%.200s\"", id ? id : "");
        return -1;
    }
    json_t *t;
    cat_product *q;
    if (patch_build(c, p, patch, &x, &t, &q)) return -1;
    prod_free(q, &c->opt);
    if (logged && !(*logged = json_pack("{ssso}", "id", p->c.id, "patch", t))) {
        ev_error_set(err, "internal", "", "out of memory");
        return -1;
    }
    if (!logged) json_decref(t);
    return 0;
}

int cat_patch_apply(cat *c, const json_t *logged, int64_t now_ms, cat_changes *changes) {
    const char *id = json_string_value(json_object_get(logged, "id"));
    const cat_product *p = id ? find(c, id, strlen(id)) : NULL;
    if (!p) return CAT_INVALID;
    ev_error err;
    pctx x;
    pctx_init(&x, &c->opt, &err);
    json_t *t;
    cat_product *q;
    int rc = patch_build(c, p, json_object_get(logged, "patch"), &x, &t, &q);
    if (rc) return status_of(rc);
    json_decref(t);
    rc = commit(c, &q, 1, now_ms, changes);
    if (rc) prod_free(q, &c->opt);
    return rc;
}

/* ---- archive ---- */

int cat_archive_prepare(const cat *c, const char *id, json_t **logged, ev_error *err) {
    if (logged) *logged = NULL;
    const cat_product *p = id ? find(c, id, strlen(id)) : NULL;
    if (!p) {
        ev_error_set(err, "not_found", "id", "no product has the id \"%.200s\"", id ? id : "");
        return -1;
    }
    if (logged && !(*logged = json_pack("{ss}", "id", p->c.id))) {
        ev_error_set(err, "internal", "", "out of memory");
        return -1;
    }
    return 0;
}

int cat_archive_apply(cat *c, const json_t *logged, int64_t now_ms) {
    const char *id = json_string_value(json_object_get(logged, "id"));
    cat_product *p = id ? find(c, id, strlen(id)) : NULL;
    if (!p) return CAT_INVALID;
    if (p->status == CAT_ARCHIVED) return CAT_OK;
    cat_status was = p->status;
    int64_t was_ms = p->updated_ms;
    p->status = CAT_ARCHIVED;
    p->updated_ms = now_ms;
    if (p->compiled) {
        json_t *j = prod_json(p, true);
        if (!j) {
            p->status = was;
            p->updated_ms = was_ms;
            return CAT_NOMEM;
        }
        json_decref(p->json);
        p->json = j;
    }
    c->gate[p->ord] = gate_of(p);
    return CAT_OK;
}

/* ---- observe ---- */

typedef struct seen {
    const char *id, *sku, *name, *brand, *category, *url, *image_url, *currency;
    double price;
    bool has_price;
} seen;

/* A copy of s when the catalogue would take it as a text field; NULL otherwise. */
static int seen_text(const char *s, size_t cap, char **out) {
    *out = NULL;
    if (!s || !*s || strlen(s) > cap) return 0;
    return (*out = strdup(s)) ? 0 : -1;
}

/* The fields of s the catalogue would accept, as a product (id unset). */
static int seen_product(const seen *s, cat_product *t) {
    int rc = seen_text(s->sku, TEXT_MAX, &t->c.sku) | seen_text(s->name, TITLE_MAX, &t->c.title) |
             seen_text(s->url, URL_MAX, &t->c.url) |
             seen_text(s->image_url, URL_MAX, &t->c.image_url) |
             seen_text(s->brand, TEXT_MAX, &t->brand);
    t->c.has |= (t->c.sku ? F_SKU : 0) | (t->c.title ? F_TITLE : 0) | (t->c.url ? F_URL : 0) |
                (t->c.image_url ? F_IMAGE : 0) | (t->brand ? F_BRAND : 0);
    const char *why;
    if (s->category && *s->category && strlen(s->category) <= 4 * TEXT_MAX) {
        int r = category_add(&t->categories, s->category, strlen(s->category), &why);
        if (r == PE_NOMEM)
            rc = -1;
        else if (r)
            strs_free(&t->categories);
    }
    if (t->categories.n) t->c.has |= F_CATEGORIES;
    if (s->has_price && money_ok(s->price)) {
        t->c.price = s->price == 0 ? 0 : s->price;
        t->c.has |= F_PRICE;
    }
    if (s->currency && currency_of(s->currency, strlen(s->currency), t->currency))
        t->c.has |= F_CURRENCY;
    return rc ? -1 : 0;
}

/* Moves the fields in bits from src to dst (either way: used to undo too). */
static void move_fields(cat_product *dst, cat_product *src, unsigned bits) {
#define MOVE(bit, member)                                                                          \
    if (bits & (bit)) {                                                                            \
        char *tmp_ = dst->member;                                                                  \
        dst->member = src->member;                                                                 \
        src->member = tmp_;                                                                        \
    }
    MOVE(F_SKU, c.sku)
    MOVE(F_TITLE, c.title)
    MOVE(F_URL, c.url)
    MOVE(F_IMAGE, c.image_url)
    MOVE(F_BRAND, brand)
#undef MOVE
    if (bits & F_CATEGORIES) {
        strs tmp = dst->categories;
        dst->categories = src->categories;
        src->categories = tmp;
    }
    if (bits & F_PRICE) dst->c.price = src->c.price;
    if (bits & F_CURRENCY) memcpy(dst->currency, src->currency, sizeof dst->currency);
    dst->c.has = (dst->c.has & ~bits) | (src->c.has & bits);
    src->c.has &= ~bits;
}

/* The fields s could fill in p, judged by presence alone (seen_product() may still refuse one):
 * a superset of what observe() fills, so none means nothing to do. Most events name a product the
 * catalogue knows in full, and building the candidate only to free it was most of their cost. */
static unsigned could_fill(const seen *s, const cat_product *p) {
    unsigned has = (s->sku ? F_SKU : 0) | (s->name ? F_TITLE : 0) | (s->url ? F_URL : 0) |
                   (s->image_url ? F_IMAGE : 0) | (s->brand ? F_BRAND : 0) |
                   (s->category ? F_CATEGORIES : 0) | (s->has_price ? F_PRICE : 0) |
                   (s->currency ? F_CURRENCY : 0);
    unsigned fill = has & ~p->c.has & F_LEARNABLE;
    if (p->c.has & (F_PRICE | F_SALE)) fill &= ~F_PRICE;
    return fill;
}

static int observe(cat *c, const seen *s, int64_t now_ms) {
    if (!s->id || !*s->id || strlen(s->id) > CAT_ID_MAX) return 0;
    cat_product *p = find(c, s->id, strlen(s->id));
    if (!p && c->n_observed >= c->opt.max_observed) return 0;
    if (p && !could_fill(s, p)) return 0;
    cat_product *t = calloc(1, sizeof *t);
    if (!t) return CAT_NOMEM;
    if (seen_product(s, t)) {
        prod_free(t, &c->opt);
        return CAT_NOMEM;
    }
    if (!p) {
        if (!(t->c.id = strdup(s->id))) {
            prod_free(t, &c->opt);
            return CAT_NOMEM;
        }
        t->learned = t->c.has & F_LEARNABLE;
        t->c.has |= F_ID | F_STATUS;
        t->from_events = true;
        t->id_len = (uint32_t)strlen(t->c.id);
        t->hash = hash64(t->c.id, t->id_len);
        prod_derive(t);
        int rc = commit(c, &t, 1, now_ms, NULL);
        if (rc) prod_free(t, &c->opt);
        return rc ? rc : 1;
    }
    unsigned fill = t->c.has & ~p->c.has & F_LEARNABLE;
    /* A price only where the catalogue has none at all: an event's price is what one customer
     * paid, never a correction of the catalogue's. */
    if (p->c.has & (F_PRICE | F_SALE)) fill &= ~F_PRICE;
    if (!fill) {
        prod_free(t, &c->opt);
        return 0;
    }
    int64_t was_ms = p->updated_ms;
    move_fields(p, t, fill);
    p->learned |= fill;
    p->updated_ms = now_ms;
    json_t *j = NULL;
    if ((p->compiled && !(j = prod_json(p, true))) || prod_card(p)) {
        json_decref(j);
        move_fields(t, p, fill);
        p->learned &= ~fill;
        p->updated_ms = was_ms;
        prod_free(t, &c->opt);
        return CAT_NOMEM;
    }
    if (p->compiled) {
        json_decref(p->json);
        p->json = j;
    }
    prod_free(t, &c->opt);
    return 1;
}

int cat_observe(cat *c, const cm_product *p, const char *currency, int64_t now_ms) {
    if (!p) return 0;
    seen s = {p->product_id, p->sku,       p->name,  p->brand, p->category,
              p->url,        p->image_url, currency, p->price, (p->has & CM_HAS_PRICE) != 0};
    return observe(c, &s, now_ms);
}

/* A Segment text field: a string, or a whole number as its digits (into digits). */
static const char *json_text(const json_t *v, char digits[EV_NUMBER_TEXT_LEN]) {
    if (json_is_string(v))
        return strlen(json_string_value(v)) == json_string_length(v) ? json_string_value(v) : NULL;
    return json_is_number(v) && ev_number_text(v, digits) ? digits : NULL;
}

int cat_observe_json(cat *c, const json_t *o, int64_t now_ms) {
    if (!json_is_object(o)) return 0;
    char d[7][EV_NUMBER_TEXT_LEN];
    const json_t *id = json_object_get(o, "product_id");
    if (!id || json_is_null(id)) id = json_object_get(o, "id");
    seen s = {0};
    s.id = json_text(id, d[0]);
    s.sku = json_text(json_object_get(o, "sku"), d[1]);
    s.name = json_text(json_object_get(o, "name"), d[2]);
    s.brand = json_text(json_object_get(o, "brand"), d[3]);
    s.category = json_text(json_object_get(o, "category"), d[4]);
    s.url = json_text(json_object_get(o, "url"), d[5]);
    s.image_url = json_text(json_object_get(o, "image_url"), d[6]);
    s.currency = json_string_value(json_object_get(o, "currency"));
    s.has_price = number_of(json_object_get(o, "price"), &s.price);
    return observe(c, &s, now_ms);
}

/* ---- reading ---- */

const cat_product *cat_get(const cat *c, const char *id, size_t len) {
    return id ? find(c, id, len) : NULL;
}

size_t cat_count(const cat *c) {
    return c->n;
}

const cat_product *cat_at(const cat *c, uint32_t ordinal) {
    return ordinal < c->n ? c->prods[ordinal] : NULL;
}

uint32_t cat_ordinal(const cat_product *p) {
    return p->ord;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

int cat_list(const cat *c, const char *cursor, size_t limit, const cat_product **out, size_t *n,
             char next[CAT_CURSOR_MAX], ev_error *err) {
    *n = 0;
    next[0] = '\0';
    /* The cursor is the last id returned, in hex: opaque to clients, exact for any bytes. */
    cat_product after = {0};
    char id[CAT_ID_MAX + 1];
    bool has_after = cursor && *cursor;
    if (has_after) {
        size_t len = strlen(cursor);
        if (len % 2 || len / 2 > CAT_ID_MAX) goto bad_cursor;
        for (size_t i = 0; i < len; i += 2) {
            int hi = hexval(cursor[i]), lo = hexval(cursor[i + 1]);
            if (hi < 0 || lo < 0) goto bad_cursor;
            id[i / 2] = (char)(hi * 16 + lo);
        }
        after.c.id = id;
        after.id_len = (uint32_t)(len / 2);
    }
    if (limit == 0 || limit > CAT_LIST_MAX) limit = CAT_LIST_MAX;
    /* The sorted prefix from the first id after the cursor (binary search)... */
    size_t lo = 0, hi = c->nsorted;
    while (has_after && lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (id_cmp(c->prods[c->sorted[mid]], &after) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* ...merged with the tail's products after the cursor, sorted here. */
    const cat_product *tail[TAIL_MAX];
    size_t nt = 0, ti = 0;
    for (size_t i = c->nsorted; i < c->n; i++)
        if (!has_after || id_cmp(c->prods[i], &after) > 0) tail[nt++] = c->prods[i];
    qsort(tail, nt, sizeof *tail, id_cmp_ptr);
    size_t got = 0;
    while (got < limit && (lo < c->nsorted || ti < nt)) {
        const cat_product *a = lo < c->nsorted ? c->prods[c->sorted[lo]] : NULL;
        if (a && (ti == nt || id_cmp(a, tail[ti]) < 0)) {
            out[got++] = a;
            lo++;
        } else {
            out[got++] = tail[ti++];
        }
    }
    *n = got;
    if (got && (lo < c->nsorted || ti < nt)) {
        const cat_product *last = out[got - 1];
        for (uint32_t i = 0; i < last->id_len; i++)
            snprintf(next + 2 * i, 3, "%02x", (unsigned char)last->c.id[i]);
    }
    return 0;
bad_cursor:
    ev_error_set(err, "invalid_field", "cursor", "cursor is not one this server returned");
    return -1;
}

void cat_card(const cat_product *p, cat_card_text *out) {
    out->id = p->c.id;
    out->id_len = p->id_len;
    out->fields = p->card;
    out->fields_len = p->card_len;
    out->title = p->c.title ? p->card + p->card_title : NULL;
    out->title_len = p->card_title_len;
}

void cat_product_info(const cat_product *p, cat_info *o) {
    memset(o, 0, sizeof *o);
    o->id = p->c.id;
    o->sku = p->c.sku;
    o->title = p->c.title;
    o->url = p->c.url;
    o->image_url = p->c.image_url;
    o->brand = p->brand;
    o->currency = (p->c.has & F_CURRENCY) ? p->currency : NULL;
    o->price = p->c.price;
    o->sale_price = p->c.sale_price;
    o->has_price = p->c.has & F_PRICE;
    o->has_sale_price = p->c.has & F_SALE;
    o->has_effective = product_effective(p, &o->effective_price);
    o->stock_total = p->stock_total;
    o->in_stock = p->in_stock;
    o->replenishable = p->replenishable;
    o->from_events = p->from_events;
    o->status = p->status;
    o->nvariants = p->nvariants;
    o->categories = (const char *const *)p->categories.v;
    o->ncategories = p->categories.n;
    o->created_ms = p->created_ms;
    o->updated_ms = p->updated_ms;
}

json_t *cat_product_json(const cat_product *p) {
    return p ? prod_json(p, true) : NULL;
}

json_t *cat_variant_json(const cat_product *p, size_t i) {
    if (!p || i >= p->nvariants) return NULL;
    const variant *va = &p->variants[i];
    variant e = {.c = va->c};
    unsigned inherit = ~va->c.has & (F_SKU | F_TITLE | F_URL | F_IMAGE);
    if (inherit & F_SKU) e.c.sku = p->c.sku;
    if (inherit & F_TITLE) e.c.title = p->c.title;
    if (inherit & F_URL) e.c.url = p->c.url;
    if (inherit & F_IMAGE) e.c.image_url = p->c.image_url;
    e.c.has |= inherit & p->c.has;
    bool hp, hs;
    variant_pair(p, va, &e.c.price, &hp, &e.c.sale_price, &hs);
    e.c.has = (e.c.has & ~(F_PRICE | F_SALE | F_ATTRS)) | (hp ? F_PRICE : 0) | (hs ? F_SALE : 0);
    json_t *o = emit_fields(variant_fields, n_variant_fields, &e, e.c.has, true);
    json_t *attrs = p->c.attrs ? json_loads(p->c.attrs, 0, NULL) : json_object();
    json_t *own = va->c.attrs ? json_loads(va->c.attrs, 0, NULL) : NULL;
    int rc = !o || !attrs || (va->c.attrs && !own) || (own && json_object_update(attrs, own));
    json_decref(own);
    if (!rc && (p->c.has & F_CURRENCY))
        rc = json_object_set_new(o, "currency", json_string(p->currency));
    if (!rc && json_object_size(attrs)) rc = json_object_set(o, "attributes", attrs);
    if (!rc) rc = json_object_set_new(o, "in_stock", json_boolean(va->in_stock));
    json_decref(attrs);
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- availability ---- */

static const char *const reason_names[CAT_NREASONS] = {
    [CAT_AVAILABLE] = "available",
    [CAT_R_UNKNOWN] = "unknown",
    [CAT_R_INACTIVE] = "inactive",
    [CAT_R_OUT_OF_STOCK] = "out_of_stock",
    [CAT_R_NOT_IN_MARKET] = "not_in_market",
    [CAT_R_PRICE_LIST] = "price_list",
    [CAT_R_SEGMENT] = "segment",
    [CAT_R_RULE] = "rule",
};

const char *cat_reason_name(cat_reason r) {
    return (unsigned)r < CAT_NREASONS ? reason_names[r] : NULL;
}

static bool in_strs(const strs *l, const char *s, bool fold_case) {
    if (!s) return false;
    for (uint32_t i = 0; i < l->n; i++)
        if (fold_case ? strcasecmp(l->v[i], s) == 0 : strcmp(l->v[i], s) == 0) return true;
    return false;
}

bool cat_product_sellable(const cat_product *p) {
    return p && p->status == CAT_ACTIVE && p->in_stock;
}

bool cat_product_available(const cat *c, const cat_product *p, const cat_viewer *viewer,
                           cat_reason *why) {
    static const cat_viewer nobody = {0};
    const cat_viewer *v = viewer ? viewer : &nobody;
    cat_reason r = CAT_AVAILABLE;
    if (!p)
        r = CAT_R_UNKNOWN;
    else if (p->status != CAT_ACTIVE)
        r = CAT_R_INACTIVE;
    else if (!p->in_stock)
        r = CAT_R_OUT_OF_STOCK;
    else if (p->markets.n && !in_strs(&p->markets, v->market, true))
        r = CAT_R_NOT_IN_MARKET;
    else if (p->price_lists.n && !in_strs(&p->price_lists, v->price_list, false))
        r = CAT_R_PRICE_LIST;
    else if (p->segments.n) {
        bool any = false;
        for (size_t i = 0; !any && v->segments && i < v->nsegments; i++)
            any = in_strs(&p->segments, v->segments[i], false);
        if (!any) r = CAT_R_SEGMENT;
    }
    if (r == CAT_AVAILABLE && p->compiled &&
        c->opt.rule_eval(p->compiled, p->json, v->ctx, c->opt.rule_arg) != 1)
        r = CAT_R_RULE;
    if (why) *why = r;
    return r == CAT_AVAILABLE;
}

bool cat_available_at(const cat *c, uint32_t ordinal, const cat_viewer *viewer, cat_reason *why) {
    if (ordinal < c->n && c->gate[ordinal] == (GATE_SELLABLE | GATE_OPEN)) {
        if (why) *why = CAT_AVAILABLE;
        return true;
    }
    return cat_product_available(c, cat_at(c, ordinal), viewer, why);
}

bool cat_sellable_at(const cat *c, uint32_t ordinal) {
    return ordinal < c->n && (c->gate[ordinal] & GATE_SELLABLE);
}

bool cat_available(const cat *c, const char *product_id, const cat_viewer *viewer,
                   cat_reason *why) {
    const cat_product *p = product_id ? find(c, product_id, strlen(product_id)) : NULL;
    return cat_product_available(c, p, viewer, why);
}

/* ---- change events as JSON ---- */

json_t *cat_change_json(const cat_change *ch) {
    json_t *o = json_object();
    if (!o) return NULL;
    bool price = ch->kind == CAT_PRICE_CHANGED;
    int rc = json_object_set_new(o, "type", json_string(price ? "price_changed" : "stock_changed"));
    rc |= json_object_set_new(o, "product_id", json_string(ch->product_id));
    if (ch->variant_id) rc |= json_object_set_new(o, "variant_id", json_string(ch->variant_id));
    if (price) {
        rc |= json_object_set_new(o, "old_price", json_real(ch->old_price));
        rc |= json_object_set_new(o, "new_price", json_real(ch->new_price));
        if (strcmp(ch->old_currency, ch->new_currency) != 0 && ch->old_currency[0])
            rc |= json_object_set_new(o, "old_currency", json_string(ch->old_currency));
        if (ch->new_currency[0])
            rc |= json_object_set_new(o, "currency", json_string(ch->new_currency));
        rc |= json_object_set_new(o, "price_drop", json_boolean(ch->flags & CAT_PRICE_DROP));
    } else {
        rc |= json_object_set_new(o, "old_stock",
                                  ch->old_stock < 0 ? json_null() : json_integer(ch->old_stock));
        rc |= json_object_set_new(o, "new_stock",
                                  ch->new_stock < 0 ? json_null() : json_integer(ch->new_stock));
        rc |= json_object_set_new(o, "in_stock", json_boolean(ch->new_in_stock));
        rc |= json_object_set_new(o, "back_in_stock", json_boolean(ch->flags & CAT_BACK_IN_STOCK));
        rc |= json_object_set_new(o, "sold_out", json_boolean(ch->flags & CAT_SOLD_OUT));
    }
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}
