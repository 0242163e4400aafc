/* commerce — the e-commerce spec's events, and the typing of their fields; the rules are in
 * commerce.h. Everything the spec says lives in three tables: the kinds (with their names and v1
 * aliases), the event-level fields and the product fields. */
#include "ingest/commerce.h"

#include <ctype.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ev.h"

/* ---------------------------------------------------------------------------------------------
 * Kinds
 * ------------------------------------------------------------------------------------------- */

/* Where an event's products are. */
typedef enum cm_shape {
    SHAPE_NONE,   /* no products: searches, promotions, checkout steps, coupons */
    SHAPE_SINGLE, /* one product, whose fields are the properties themselves */
    SHAPE_LIST,   /* properties.products[] */
} cm_shape;

#define CM_MAX_ALIASES 3

typedef struct cm_kind_def {
    const char *name;  /* the kind's own name, as stored in "kind" */
    const char *event; /* the v2 event name */
    cm_shape shape;
    /* Older names for the same event: Segment's v1 spec ("Viewed Product", "Completed Order", ...),
     * the names its analytics-events matcher recognised for v1 destinations ("Viewed Product
     * Details", "Order Started", "Payment Info Added", "Wishlist Product Removed"), and the US
     * spelling of "cancelled", which shops send often enough to be worth recognising. */
    const char *aliases[CM_MAX_ALIASES];
} cm_kind_def;

/* One kind per entry: [kind] = {kind name, v2 event name, shape, {v1 names}}. */
/* clang-format off */
static const cm_kind_def kinds[CM_NKINDS] = {
    [CM_PRODUCTS_SEARCHED] =
        {"products_searched", "Products Searched", SHAPE_NONE, {"Searched Products"}},
    [CM_PRODUCT_LIST_VIEWED] =
        {"product_list_viewed", "Product List Viewed", SHAPE_LIST, {"Viewed Product Category"}},
    [CM_PRODUCT_LIST_FILTERED] =
        {"product_list_filtered", "Product List Filtered", SHAPE_LIST, {NULL}},
    [CM_PROMOTION_VIEWED] =
        {"promotion_viewed", "Promotion Viewed", SHAPE_NONE, {"Viewed Promotion"}},
    [CM_PROMOTION_CLICKED] =
        {"promotion_clicked", "Promotion Clicked", SHAPE_NONE, {"Clicked Promotion"}},
    [CM_PRODUCT_CLICKED] =
        {"product_clicked", "Product Clicked", SHAPE_SINGLE, {"Clicked Product"}},
    [CM_PRODUCT_VIEWED] =
        {"product_viewed", "Product Viewed", SHAPE_SINGLE,
         {"Viewed Product", "Viewed Product Details", "Viewed Product Detail"}},
    [CM_PRODUCT_ADDED] =
        {"product_added", "Product Added", SHAPE_SINGLE, {"Added Product"}},
    [CM_PRODUCT_REMOVED] =
        {"product_removed", "Product Removed", SHAPE_SINGLE, {"Removed Product"}},
    [CM_CART_VIEWED] =
        {"cart_viewed", "Cart Viewed", SHAPE_LIST, {"Viewed Cart"}},
    [CM_CHECKOUT_STARTED] =
        {"checkout_started", "Checkout Started", SHAPE_LIST, {"Started Order", "Order Started"}},
    [CM_CHECKOUT_STEP_VIEWED] =
        {"checkout_step_viewed", "Checkout Step Viewed", SHAPE_NONE, {"Viewed Checkout Step"}},
    [CM_CHECKOUT_STEP_COMPLETED] =
        {"checkout_step_completed", "Checkout Step Completed", SHAPE_NONE,
         {"Completed Checkout Step"}},
    [CM_PAYMENT_INFO_ENTERED] =
        {"payment_info_entered", "Payment Info Entered", SHAPE_NONE, {"Payment Info Added"}},
    [CM_ORDER_COMPLETED] =
        {"order_completed", "Order Completed", SHAPE_LIST, {"Completed Order"}},
    [CM_ORDER_UPDATED] =
        {"order_updated", "Order Updated", SHAPE_LIST, {"Updated Order"}},
    [CM_ORDER_REFUNDED] =
        {"order_refunded", "Order Refunded", SHAPE_LIST, {"Refunded Order"}},
    [CM_ORDER_CANCELLED] =
        {"order_cancelled", "Order Cancelled", SHAPE_LIST,
         {"Cancelled Order", "Order Canceled", "Canceled Order"}},
    [CM_COUPON_ENTERED] =
        {"coupon_entered", "Coupon Entered", SHAPE_NONE, {"Entered Coupon"}},
    [CM_COUPON_APPLIED] =
        {"coupon_applied", "Coupon Applied", SHAPE_NONE, {"Applied Coupon"}},
    [CM_COUPON_DENIED] =
        {"coupon_denied", "Coupon Denied", SHAPE_NONE, {"Denied Coupon"}},
    [CM_COUPON_REMOVED] =
        {"coupon_removed", "Coupon Removed", SHAPE_NONE, {"Removed Coupon"}},
    [CM_PRODUCT_ADDED_TO_WISHLIST] =
        {"product_added_to_wishlist", "Product Added to Wishlist", SHAPE_SINGLE, {NULL}},
    [CM_PRODUCT_REMOVED_FROM_WISHLIST] =
        {"product_removed_from_wishlist", "Product Removed from Wishlist", SHAPE_SINGLE,
         {"Wishlist Product Removed"}},
    [CM_WISHLIST_PRODUCT_ADDED_TO_CART] =
        {"wishlist_product_added_to_cart", "Wishlist Product Added to Cart", SHAPE_SINGLE, {NULL}},
    [CM_PRODUCT_SHARED] =
        {"product_shared", "Product Shared", SHAPE_SINGLE, {NULL}},
    [CM_CART_SHARED] =
        {"cart_shared", "Cart Shared", SHAPE_LIST, {NULL}},
    [CM_PRODUCT_REVIEWED] =
        {"product_reviewed", "Product Reviewed", SHAPE_SINGLE, {NULL}},
};
/* clang-format on */

/* No name in the table is longer than this, so a longer input needs no scan. */
#define CM_NAME_MAX 64

/* Names are compared ignoring ASCII case, spaces and underscores: each is folded to that form (its
 * key) and looked up in a small open-addressing table of every table name's key, built once. */
#define KIND_SLOTS 512
_Static_assert(CM_NKINDS *(2 + CM_MAX_ALIASES) <= KIND_SLOTS / 2,
               "the kind index is over half full");

static struct {
    char key[CM_NAME_MAX + 1];
    uint8_t kind; /* CM_NONE: an empty slot */
} kind_index[KIND_SLOTS];
static pthread_once_t kind_index_once = PTHREAD_ONCE_INIT;

/* Folds name into key (CM_NAME_MAX + 1 bytes); returns the key's length. name has at most
 * CM_NAME_MAX bytes. */
static size_t kind_key(const char *name, char *key) {
    size_t n = 0;
    for (; *name; name++) {
        unsigned char c = (unsigned char)*name;
        if (c == ' ' || c == '_') continue;
        key[n++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    key[n] = '\0';
    return n;
}

static size_t kind_slot(const char *key, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)key[i]) * 16777619u;
    return h & (KIND_SLOTS - 1);
}

/* Every kind's names, in table order; a key seen before keeps its first kind, as a scan would. */
static void kind_index_init(void) {
    for (int k = CM_NONE + 1; k < CM_NKINDS; k++) {
        const cm_kind_def *d = &kinds[k];
        const char *names[2 + CM_MAX_ALIASES] = {d->event, d->name};
        for (int a = 0; a < CM_MAX_ALIASES; a++)
            names[2 + a] = d->aliases[a];
        for (size_t i = 0; i < sizeof names / sizeof *names && names[i]; i++) {
            char key[CM_NAME_MAX + 1];
            size_t n = kind_key(names[i], key);
            size_t at = kind_slot(key, n);
            while (kind_index[at].kind != CM_NONE && strcmp(kind_index[at].key, key) != 0)
                at = (at + 1) & (KIND_SLOTS - 1);
            if (kind_index[at].kind != CM_NONE) continue;
            memcpy(kind_index[at].key, key, n + 1);
            kind_index[at].kind = (uint8_t)k;
        }
    }
}

cm_kind cm_kind_lookup(const char *event_name) {
    if (!event_name || strnlen(event_name, CM_NAME_MAX + 1) > CM_NAME_MAX) return CM_NONE;
    pthread_once(&kind_index_once, kind_index_init);
    char key[CM_NAME_MAX + 1];
    size_t n = kind_key(event_name, key);
    for (size_t at = kind_slot(key, n); kind_index[at].kind != CM_NONE;
         at = (at + 1) & (KIND_SLOTS - 1))
        if (strcmp(kind_index[at].key, key) == 0) return (cm_kind)kind_index[at].kind;
    return CM_NONE;
}

const char *cm_kind_name(cm_kind k) {
    return k > CM_NONE && k < CM_NKINDS ? kinds[k].name : NULL;
}

const char *cm_kind_event_name(cm_kind k) {
    return k > CM_NONE && k < CM_NKINDS ? kinds[k].event : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Fields
 * ------------------------------------------------------------------------------------------- */

typedef enum cm_coerce {
    CO_TEXT,     /* char *: a string, or a whole number turned into one */
    CO_MONEY,    /* double: a number, or a numeric string turned into one */
    CO_COUNT,    /* int64_t: a whole number >= 0, or a string holding one */
    CO_CURRENCY, /* char[4]: three letters, upper-cased */
} cm_coerce;

/* One typed field: where it is in the properties and where it goes in the struct. */
typedef struct cm_field {
    const char *key;
    const char *alt; /* read when key is absent: a v1 name, or NULL */
    cm_coerce how;
    size_t off; /* offset of the member in cm_event or cm_product */
    unsigned has;
} cm_field;

/* clang-format off */
#define EVF(key, alt, how, member, has) {key, alt, how, offsetof(cm_event, member), has}
static const cm_field event_fields[] = {
    EVF("query", NULL, CO_TEXT, query, 0),
    EVF("order_id", "orderId", CO_TEXT, order_id, 0),
    EVF("checkout_id", NULL, CO_TEXT, checkout_id, 0),
    EVF("cart_id", NULL, CO_TEXT, cart_id, 0),
    EVF("list_id", NULL, CO_TEXT, list_id, 0),
    EVF("coupon", "coupon_id", CO_TEXT, coupon, 0),
    EVF("recommendation_id", NULL, CO_TEXT, recommendation_id, 0),
    EVF("currency", NULL, CO_CURRENCY, currency, 0),
    EVF("total", NULL, CO_MONEY, total, CM_HAS_TOTAL),
    EVF("revenue", NULL, CO_MONEY, revenue, CM_HAS_REVENUE),
    EVF("subtotal", NULL, CO_MONEY, subtotal, CM_HAS_SUBTOTAL),
    EVF("value", NULL, CO_MONEY, value, CM_HAS_VALUE),
    EVF("shipping", NULL, CO_MONEY, shipping, CM_HAS_SHIPPING),
    EVF("tax", NULL, CO_MONEY, tax, CM_HAS_TAX),
    EVF("discount", NULL, CO_MONEY, discount, CM_HAS_DISCOUNT),
    EVF("step", NULL, CO_COUNT, step, CM_HAS_STEP),
};
#undef EVF

#define PRF(key, alt, how, member, has) {key, alt, how, offsetof(cm_product, member), has}
static const cm_field product_fields[] = {
    PRF("product_id", "id", CO_TEXT, product_id, 0),
    PRF("sku", NULL, CO_TEXT, sku, 0),
    PRF("name", NULL, CO_TEXT, name, 0),
    PRF("brand", NULL, CO_TEXT, brand, 0),
    PRF("category", NULL, CO_TEXT, category, 0),
    PRF("variant", NULL, CO_TEXT, variant, 0),
    PRF("coupon", NULL, CO_TEXT, coupon, 0),
    PRF("url", NULL, CO_TEXT, url, 0),
    PRF("image_url", NULL, CO_TEXT, image_url, 0),
    PRF("recommendation_id", NULL, CO_TEXT, recommendation_id, 0),
    PRF("price", NULL, CO_MONEY, price, CM_HAS_PRICE),
    PRF("quantity", NULL, CO_COUNT, quantity, CM_HAS_QUANTITY),
    PRF("position", NULL, CO_COUNT, position, CM_HAS_POSITION),
};
#undef PRF
/* clang-format on */

#define NFIELDS(t) (sizeof(t) / sizeof *(t))

/* Numeric strings longer than this are refused: no price needs more digits, and the bound keeps the
 * parse on the stack. */
#define CM_NUMERIC_MAX 64

/* strtod() follows LC_NUMERIC; clients write '.', whatever locale engaged runs in. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void) {
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!c_locale) {
        fprintf(stderr, "commerce: cannot create the C locale\n");
        abort();
    }
}

bool cm_parse_decimal(const char *s, size_t n, double *out) {
    if (n == 0 || n > CM_NUMERIC_MAX) return false;
    size_t i = 0, digits = 0;
    if (s[i] == '-') i++;
    for (; i < n && isdigit((unsigned char)s[i]); i++)
        digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && isdigit((unsigned char)s[i]); i++)
            digits++;
    if (digits == 0) return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        size_t exp_digits = 0;
        for (; i < n && isdigit((unsigned char)s[i]); i++)
            exp_digits++;
        if (exp_digits == 0) return false;
    }
    if (i != n) return false;
    char text[CM_NUMERIC_MAX + 1];
    memcpy(text, s, n);
    text[n] = '\0';
    pthread_once(&c_locale_once, c_locale_init);
    double d = strtod_l(text, NULL, c_locale);
    /* "1e999" parses as infinity, which JSON cannot hold. */
    if (!isfinite(d)) return false;
    *out = d;
    return true;
}

/* A count is a whole number from 0 to 2^53 (beyond that a double, and so JSON in most clients, no
 * longer counts exactly). */
static bool count_value(double d, int64_t *out) {
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return false;
    *out = (int64_t)d;
    return true;
}

static void field_path(char out[128], const char *prefix, const char *key) {
    snprintf(out, 128, "%s.%s", prefix, key);
}

/* ---- An event's memory ----
 *
 * An event, its single product (most kinds have one) and its first strings are one allocation;
 * strings that do not fit go into further blocks the event chains. Typing a Product Viewed with an
 * id, a name and a category used to take five allocations, all freed on another thread (the
 * applier's) once the event was applied: a quarter of the allocator's calls per event. */
#define CM_FIRST_ROOM 256 /* a typical event's strings fit: ids, a name, a category */
#define CM_BLOCK_ROOM 1024

typedef struct cm_block {
    struct cm_block *next;
    char s[];
} cm_block;

typedef struct cm_mem {
    cm_event e; /* first, so that a cm_event * is its cm_mem * */
    cm_product one;
    cm_block *blocks; /* further blocks, newest first */
    char *at;         /* where the block strings now go into has room */
    size_t room;      /* bytes left there */
    char first[CM_FIRST_ROOM];
} cm_mem;

static cm_event *event_new(cm_kind k) {
    cm_mem *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->e.kind = k;
    m->at = m->first;
    m->room = sizeof m->first;
    return &m->e;
}

/* Room for n bytes of text owned by e, or NULL when memory runs out. */
static char *text_room(cm_event *e, size_t n) {
    cm_mem *m = (cm_mem *)e;
    if (n > m->room) {
        size_t room = n > CM_BLOCK_ROOM ? n : CM_BLOCK_ROOM;
        cm_block *b = malloc(sizeof *b + room);
        if (!b) return NULL;
        b->next = m->blocks;
        m->blocks = b;
        m->at = b->s;
        m->room = room;
    }
    char *p = m->at;
    m->at += n;
    m->room -= n;
    return p;
}

/* Room for e's single product (cm_event.products of a SHAPE_SINGLE kind). */
static cm_product *single_product(cm_event *e) {
    cm_mem *m = (cm_mem *)e;
    e->products = &m->one;
    e->nproducts = 1;
    return &m->one;
}

void cm_event_free(cm_event *e) {
    if (!e) return;
    cm_mem *m = (cm_mem *)e;
    if (e->products != &m->one) free(e->products);
    for (cm_block *b = m->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(m);
}

/* Copies the text of a JSON string into *dst, in memory e owns; empty strings stay NULL
 * (absent). */
static int take_text(cm_event *e, const json_t *v, char **dst) {
    size_t n = json_string_length(v);
    if (n == 0) return 0;
    if (!(*dst = text_room(e, n + 1))) return -1;
    memcpy(*dst, json_string_value(v), n + 1);
    return 0;
}

/* Checks, coerces (in obj, counted in e->coerced) and stores one field into the struct at base (e
 * or one of its products, whose text e owns): the value at[0] of its name, or at[1] of its v1 name
 * when the first is absent or null. Returns 0, or -1 with *err filled. */
static int coerce_field(cm_event *e, json_t *obj, const cm_field *f, json_t *const at[2],
                        void *base, unsigned *has, const char *prefix, ev_error *err) {
    const char *key = f->key;
    json_t *v = at[0];
    if ((!v || json_is_null(v)) && f->alt) {
        key = f->alt;
        v = at[1];
    }
    if (!v || json_is_null(v)) return 0;

    char path[128]; /* written only for an error: most fields are fine */
    char *member = (char *)base + f->off;

    switch (f->how) {
    case CO_TEXT: {
        if (json_is_number(v)) {
            char digits[EV_NUMBER_TEXT_LEN];
            if (!ev_number_text(v, digits)) break;
            json_t *s = json_string(digits);
            if (!s || json_object_set_new(obj, key, s)) goto nomem;
            v = s;
            ++e->coerced;
        }
        if (!json_is_string(v)) break;
        if (take_text(e, v, (char **)(void *)member)) goto nomem;
        return 0;
    }
    case CO_MONEY: {
        double d;
        if (json_is_number(v)) {
            d = json_number_value(v);
        } else if (json_is_string(v) &&
                   cm_parse_decimal(json_string_value(v), json_string_length(v), &d)) {
            json_t *r = json_real(d);
            if (!r || json_object_set_new(obj, key, r)) goto nomem;
            ++e->coerced;
        } else {
            break;
        }
        memcpy(member, &d, sizeof d);
        *has |= f->has;
        return 0;
    }
    case CO_COUNT: {
        int64_t c;
        if (json_is_integer(v)) {
            if (json_integer_value(v) < 0) break;
            c = json_integer_value(v);
        } else {
            double d;
            if (json_is_real(v)) {
                d = json_real_value(v);
            } else if (!json_is_string(v) ||
                       !cm_parse_decimal(json_string_value(v), json_string_length(v), &d)) {
                break;
            }
            if (!count_value(d, &c)) break;
            json_t *i = json_integer(c);
            if (!i || json_object_set_new(obj, key, i)) goto nomem;
            ++e->coerced;
        }
        memcpy(member, &c, sizeof c);
        *has |= f->has;
        return 0;
    }
    case CO_CURRENCY: {
        if (!json_is_string(v)) break;
        size_t n = json_string_length(v);
        if (n == 0) return 0;
        const char *s = json_string_value(v);
        if (n != 3) break;
        char code[4];
        for (size_t i = 0; i < 3; i++) {
            unsigned char c = (unsigned char)s[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) goto bad;
            code[i] = (char)toupper(c);
        }
        code[3] = '\0';
        if (memcmp(code, s, 3) != 0) {
            if (json_string_set(v, code)) goto nomem;
            ++e->coerced;
        }
        memcpy(member, code, sizeof code);
        return 0;
    }
    }
bad:;
    static const char *const expects[] = {
        [CO_TEXT] = "a string",
        [CO_MONEY] = "a number",
        [CO_COUNT] = "a whole number >= 0",
        [CO_CURRENCY] = "a 3-letter ISO 4217 currency code",
    };
    field_path(path, prefix, key);
    ev_error_set(err, "invalid_field", path, "%s must be %s", path, expects[f->how]);
    return -1;
nomem:
    field_path(path, prefix, key);
    ev_error_set(err, "internal", path, "out of memory coercing %s", path);
    return -1;
}

/* The most fields a table has (event_fields, product_fields). */
#define CM_FIELDS_MAX 24
/* Up to this many members, an object's fields are found in one pass over its members, comparing
 * names with the table's; above, by a hash lookup per name (and v1 name) of the table. A typical
 * event's properties have a handful of members and the tables some 30 names: the pass costs a
 * sixth of the lookups (callgrind). */
#define CM_SCAN_MEMBERS 8
_Static_assert(NFIELDS(event_fields) <= CM_FIELDS_MAX && NFIELDS(product_fields) <= CM_FIELDS_MAX,
               "a field table outgrew CM_FIELDS_MAX");

static int coerce_all(cm_event *e, json_t *obj, const cm_field *fields, size_t n, void *base,
                      unsigned *has, const char *prefix, ev_error *err) {
    json_t *at[CM_FIELDS_MAX][2] = {{NULL}};
    if (json_object_size(obj) <= CM_SCAN_MEMBERS) {
        const char *k;
        json_t *v;
        json_object_foreach(obj, k, v) {
            /* Most names differ in their first byte: compared before the call. */
            for (size_t i = 0; i < n; i++) {
                const char *alt = fields[i].alt;
                if (fields[i].key[0] == k[0] && strcmp(k, fields[i].key) == 0)
                    at[i][0] = v;
                else if (alt && alt[0] == k[0] && strcmp(k, alt) == 0)
                    at[i][1] = v;
            }
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            at[i][0] = json_object_get(obj, fields[i].key);
            if (fields[i].alt) at[i][1] = json_object_get(obj, fields[i].alt);
        }
    }
    /* Coercing replaces values in obj, but only the one of the field at hand. */
    for (size_t i = 0; i < n; i++)
        if (coerce_field(e, obj, &fields[i], at[i], base, has, prefix, err)) return -1;
    return 0;
}

static int parse_product(cm_event *e, json_t *obj, cm_product *p, const char *prefix,
                         ev_error *err) {
    if (obj && coerce_all(e, obj, product_fields, NFIELDS(product_fields), p, &p->has, prefix, err))
        return -1;
    if (!(p->has & CM_HAS_QUANTITY)) p->quantity = 1;
    return 0;
}

static int parse_product_list(json_t *props, cm_event *e, ev_error *err) {
    json_t *list = json_object_get(props, "products");
    if (!list || json_is_null(list)) return 0;
    if (!json_is_array(list)) {
        ev_error_set(err, "invalid_field", "properties.products",
                     "properties.products must be an array");
        return -1;
    }
    size_t n = json_array_size(list);
    if (n > CM_MAX_PRODUCTS) {
        ev_error_set(err, "invalid_field", "properties.products",
                     "properties.products has %zu entries; at most %d are allowed", n,
                     CM_MAX_PRODUCTS);
        return -1;
    }
    if (n == 0) return 0;
    e->products = calloc(n, sizeof *e->products);
    if (!e->products) {
        ev_error_set(err, "internal", "properties.products", "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char prefix[128];
        snprintf(prefix, sizeof prefix, "properties.products[%zu]", i);
        json_t *item = json_array_get(list, i);
        if (!json_is_object(item)) {
            ev_error_set(err, "invalid_field", prefix, "%s must be an object", prefix);
            return -1;
        }
        e->nproducts = i + 1;
        if (parse_product(e, item, &e->products[i], prefix, err)) return -1;
    }
    return 0;
}

int cm_parse(json_t *properties, cm_kind k, cm_event **out, ev_error *err) {
    *out = NULL;
    if (k <= CM_NONE || k >= CM_NKINDS) {
        ev_error_set(err, "invalid_field", "event", "not an e-commerce event");
        return -1;
    }
    if (properties && !json_is_object(properties)) {
        ev_error_set(err, "invalid_field", "properties", "properties must be an object");
        return -1;
    }
    cm_event *e = event_new(k);
    if (!e) {
        ev_error_set(err, "internal", "properties", "out of memory");
        return -1;
    }
    if (properties && coerce_all(e, properties, event_fields, NFIELDS(event_fields), e, &e->has,
                                 "properties", err))
        goto fail;
    switch (kinds[k].shape) {
    case SHAPE_NONE:
        break;
    case SHAPE_SINGLE:
        if (parse_product(e, properties, single_product(e), "properties", err)) goto fail;
        break;
    case SHAPE_LIST:
        if (properties && parse_product_list(properties, e, err)) goto fail;
        break;
    }
    *out = e;
    return 0;
fail:
    cm_event_free(e);
    return -1;
}

/* ---- The same typing over scanned tokens ----
 *
 * cm_parse_tokens() stores what cm_parse() stores, for properties whose values need no coercing;
 * everything else (a value to coerce, a refusal, memory running out) declines, and the caller
 * builds the tree for cm_parse(), which coerces or words the error. So the two agree by
 * construction: the rules live in coerce_field(), and this path only recognises the values that
 * rule keeps as they are. */

/* One field from its value tokens at[0] (its name) and at[1] (its v1 name), 0 when absent. Returns
 * 0 when stored (or absent), 1 to decline. */
static int tok_field(cm_event *e, const js_doc *d, const cm_field *f, const uint32_t at[2],
                     void *base, unsigned *has) {
    uint32_t v = at[0];
    if ((!v || d->tok[v].kind == JS_NULL) && f->alt) v = at[1];
    if (!v || d->tok[v].kind == JS_NULL) return 0;
    const js_tok *t = &d->tok[v];
    char *member = (char *)base + f->off;
    switch (f->how) {
    case CO_TEXT: {
        if (t->kind != JS_STRING) return 1; /* a number becomes text: coerced */
        if (t->len == 0) return 0;
        char *text = text_room(e, t->len + 1); /* decoding never lengthens */
        if (!text) return 1;
        if (js_string(d, v, text) == 0) return 0; /* "" with escapes: absent, as take_text() */
        memcpy(member, &text, sizeof text);
        return 0;
    }
    case CO_MONEY: {
        if (t->kind != JS_INT && t->kind != JS_REAL) return 1;
        double x = t->kind == JS_INT ? (double)t->num.i : t->num.d;
        memcpy(member, &x, sizeof x);
        *has |= f->has;
        return 0;
    }
    case CO_COUNT: {
        if (t->kind != JS_INT || t->num.i < 0) return 1;
        memcpy(member, &t->num.i, sizeof t->num.i);
        *has |= f->has;
        return 0;
    }
    case CO_CURRENCY: {
        if (t->kind != JS_STRING || t->escaped) return 1;
        if (t->len == 0) return 0;
        const char *code = d->text + t->start;
        if (t->len != 3) return 1;
        for (size_t i = 0; i < 3; i++)
            if (code[i] < 'A' || code[i] > 'Z') return 1; /* lower case is coerced */
        memcpy(member, code, 3);
        member[3] = '\0';
        return 0;
    }
    }
    return 1;
}

/* Every name of both field tables, found with one probe per member of the properties, not a
 * comparison per field (which cost most of the typing: callgrind). A slot says where a name is in
 * each table: its field's index, and whether it is that field's v1 name; -1 when absent. */
#define NAME_SLOTS 128 /* a power of two, well above the tables' 33 names */
typedef struct name_slot {
    const char *name; /* NULL: empty slot */
    uint8_t len;
    int8_t field[2]; /* [0]: in event_fields, [1]: in product_fields */
    bool alt[2];
} name_slot;
static name_slot names[NAME_SLOTS];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

/* Reads the first, middle and last bytes: the tables' names differ there or in length. */
static unsigned name_hash(const char *s, size_t n) {
    return ((unsigned)n * 31u + (unsigned char)s[0] * 7u + (unsigned char)s[n / 2] * 3u +
            (unsigned char)s[n - 1]) &
           (NAME_SLOTS - 1);
}

static name_slot *name_find(const char *s, size_t n, bool add) {
    if (n == 0 || n > UINT8_MAX) return NULL;
    for (unsigned h = name_hash(s, n);; h = (h + 1) & (NAME_SLOTS - 1)) {
        name_slot *slot = &names[h];
        if (!slot->name) {
            if (!add) return NULL;
            *slot = (name_slot){s, (uint8_t)n, {-1, -1}, {false, false}};
            return slot;
        }
        if (slot->len == n && memcmp(slot->name, s, n) == 0) return slot;
    }
}

static void names_init(void) {
    const cm_field *tables[2] = {event_fields, product_fields};
    size_t sizes[2] = {NFIELDS(event_fields), NFIELDS(product_fields)};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizes[t]; i++)
            for (int a = 0; a < 2; a++) {
                const char *name = a ? tables[t][i].alt : tables[t][i].key;
                if (!name) continue;
                name_slot *slot = name_find(name, strlen(name), true);
                slot->field[t] = (int8_t)i;
                slot->alt[t] = a;
            }
}

/* Every field of table t (0: event_fields, 1: product_fields) from object token obj. */
static int tok_fields(cm_event *e, const js_doc *d, uint32_t obj, int t, void *base,
                      unsigned *has) {
    const cm_field *fields = t ? product_fields : event_fields;
    size_t n = t ? NFIELDS(product_fields) : NFIELDS(event_fields);
    uint32_t at[CM_FIELDS_MAX][2] = {{0}};
    pthread_once(&names_once, names_init);
    for (uint32_t i = 0, k = obj + 1; i < d->tok[obj].count; i++, k = d->tok[k + 1].next) {
        const name_slot *slot = name_find(d->text + d->tok[k].start, d->tok[k].len, false);
        if (slot && slot->field[t] >= 0) at[slot->field[t]][slot->alt[t]] = k + 1;
    }
    for (size_t j = 0; j < n; j++)
        if (tok_field(e, d, &fields[j], at[j], base, has)) return 1;
    return 0;
}

static int tok_product(cm_event *e, const js_doc *d, uint32_t obj, cm_product *p) {
    if (obj && tok_fields(e, d, obj, 1, p, &p->has)) return 1;
    if (!(p->has & CM_HAS_QUANTITY)) p->quantity = 1;
    return 0;
}

int cm_parse_tokens(const js_doc *d, uint32_t obj, cm_kind k, cm_event **out) {
    *out = NULL;
    if (k <= CM_NONE || k >= CM_NKINDS) return 1;
    if (obj && d->tok[obj].kind != JS_OBJECT) return 1;
    cm_event *e = event_new(k);
    if (!e) return 1;
    if (obj && tok_fields(e, d, obj, 0, e, &e->has)) goto decline;
    switch (kinds[k].shape) {
    case SHAPE_NONE:
        break;
    case SHAPE_SINGLE:
        if (tok_product(e, d, obj, single_product(e))) goto decline;
        break;
    case SHAPE_LIST: {
        uint32_t list = obj ? js_get(d, obj, "products", 8) : 0;
        if (!list || d->tok[list].kind == JS_NULL) break;
        if (d->tok[list].kind != JS_ARRAY || d->tok[list].count > CM_MAX_PRODUCTS) goto decline;
        size_t n = d->tok[list].count;
        if (n == 0) break;
        if (!(e->products = calloc(n, sizeof *e->products))) goto decline;
        for (uint32_t i = 0, item = list + 1; i < n; i++, item = d->tok[item].next) {
            if (d->tok[item].kind != JS_OBJECT) goto decline;
            e->nproducts = i + 1;
            if (tok_product(e, d, item, &e->products[i])) goto decline;
        }
        break;
    }
    }
    *out = e;
    return 0;
decline:
    cm_event_free(e);
    return 1;
}

static bool text_equal(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Every field of a table, compared where base a and base b keep it. */
static bool fields_equal(const cm_field *fields, size_t n, const void *a, const void *b) {
    for (size_t i = 0; i < n; i++) {
        const char *pa = (const char *)a + fields[i].off, *pb = (const char *)b + fields[i].off;
        if (fields[i].how == CO_TEXT) {
            const char *sa, *sb;
            memcpy(&sa, pa, sizeof sa);
            memcpy(&sb, pb, sizeof sb);
            if (!text_equal(sa, sb)) return false;
        } else if (fields[i].how == CO_CURRENCY) {
            if (strcmp(pa, pb) != 0) return false;
        } else if (memcmp(pa, pb, fields[i].how == CO_MONEY ? sizeof(double) : sizeof(int64_t))) {
            return false;
        }
    }
    return true;
}

bool cm_event_equal(const cm_event *a, const cm_event *b) {
    if (!a || !b) return a == b;
    if (a->kind != b->kind || a->has != b->has || a->nproducts != b->nproducts ||
        !fields_equal(event_fields, NFIELDS(event_fields), a, b))
        return false;
    for (size_t i = 0; i < a->nproducts; i++)
        if (a->products[i].has != b->products[i].has ||
            !fields_equal(product_fields, NFIELDS(product_fields), &a->products[i],
                          &b->products[i]))
            return false;
    return true;
}
