/* commerce — the Segment e-commerce spec (v2, and the v1 names that map onto it) as typed events.
 *
 * A track event whose name is one of the spec's events gets a kind (cm_kind) and a cm_event holding
 * the fields engaged acts on: order and cart totals, currency, coupon and the products involved.
 * cm_parse() checks those fields' types and coerces them in place in the event's properties, so the
 * stored JSON and the typed struct always agree:
 *   - money (price, total, revenue, subtotal, value, shipping, tax, discount): a JSON number, or a
 *     numeric string ("19.99"; a finite double) which is replaced by the number (a real);
 *   - counts (quantity, position, step): a whole number >= 0, or a string holding one; a real with
 *     no fraction or a numeric string becomes an integer;
 *   - text (ids, sku, name, brand, category, variant, coupon, url, image_url, query): a string, or
 *     a whole number which becomes its decimal string (ids are often numbers in shop databases);
 *   - currency: three ASCII letters, upper-cased in place ("usd" -> "USD");
 *   - products: an array of at most CM_MAX_PRODUCTS objects.
 * A field that is absent or JSON null is simply absent: Segment is lenient about which fields an
 * event carries, so engaged is too, and a product without product_id or sku is kept (its ids are
 * NULL). An empty string is an absent text or currency in the struct, though the JSON keeps it. It
 * is strict about types: a value of the wrong type is an invalid_field error naming its path
 * ("properties.products[1].quantity"), never silently dropped. The order-level fields are read for
 * every kind; the product fields only where the kind has products (see cm_event).
 *
 * v1 field names are read as fallbacks: a product's `id` when it has no `product_id`, and `orderId`
 * when there is no `order_id`; `coupon_id` stands in for `coupon` on events that only carry that.
 *
 * Ownership: a cm_event owns all its memory (strings are copies), released by cm_event_free(); it
 * keeps no reference to the JSON it was parsed from. Only cm_parse() and cm_parse_tokens() make
 * one: its strings and single product live in memory of its own, not an allocation each, so none
 * of its pointers may be freed or replaced on their own. Thread-safe: the tables are read-only. */
#ifndef ENGAGED_COMMERCE_H
#define ENGAGED_COMMERCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/jscan.h"

struct ev_error; /* ingest/ev.h, which includes this header */

/* The most entries properties.products may have; more is an invalid_field error. An event is at
 * most 32 KB anyway, so this only bounds the work done for a hostile event. */
#define CM_MAX_PRODUCTS 1000

typedef enum cm_kind {
    CM_NONE = 0, /* not an e-commerce event */
    CM_PRODUCTS_SEARCHED,
    CM_PRODUCT_LIST_VIEWED,
    CM_PRODUCT_LIST_FILTERED,
    CM_PROMOTION_VIEWED,
    CM_PROMOTION_CLICKED,
    CM_PRODUCT_CLICKED,
    CM_PRODUCT_VIEWED,
    CM_PRODUCT_ADDED,
    CM_PRODUCT_REMOVED,
    CM_CART_VIEWED,
    CM_CHECKOUT_STARTED,
    CM_CHECKOUT_STEP_VIEWED,
    CM_CHECKOUT_STEP_COMPLETED,
    CM_PAYMENT_INFO_ENTERED,
    CM_ORDER_COMPLETED,
    CM_ORDER_UPDATED,
    CM_ORDER_REFUNDED,
    CM_ORDER_CANCELLED,
    CM_COUPON_ENTERED,
    CM_COUPON_APPLIED,
    CM_COUPON_DENIED,
    CM_COUPON_REMOVED,
    CM_PRODUCT_ADDED_TO_WISHLIST,
    CM_PRODUCT_REMOVED_FROM_WISHLIST,
    CM_WISHLIST_PRODUCT_ADDED_TO_CART,
    CM_PRODUCT_SHARED,
    CM_CART_SHARED,
    CM_PRODUCT_REVIEWED,
    CM_NKINDS
} cm_kind;

/* Finds the kind of a track event's name: the v2 name ("Order Completed"), a v1 alias ("Completed
 * Order") or the kind's own name ("order_completed"). Matching ignores ASCII case, spaces and
 * underscores, as Segment's destinations do ("ORDER_COMPLETED", "OrderCompleted" match too).
 * Returns CM_NONE for anything else, including NULL. Cost: a scan of about 60 names, most
 * comparisons ending at the first byte; names longer than 64 bytes are refused before the scan. No
 * allocation. */
cm_kind cm_kind_lookup(const char *event_name);
/* "order_completed"; NULL for CM_NONE or an out-of-range value. */
const char *cm_kind_name(cm_kind k);
/* The v2 event name, "Order Completed"; NULL for CM_NONE or an out-of-range value. */
const char *cm_kind_event_name(cm_kind k);

/* Which of a cm_event's numbers were present. */
enum {
    CM_HAS_TOTAL = 1u << 0,
    CM_HAS_REVENUE = 1u << 1,
    CM_HAS_SUBTOTAL = 1u << 2,
    CM_HAS_VALUE = 1u << 3,
    CM_HAS_SHIPPING = 1u << 4,
    CM_HAS_TAX = 1u << 5,
    CM_HAS_DISCOUNT = 1u << 6,
    CM_HAS_STEP = 1u << 7,
};

/* Which of a cm_product's numbers were present (quantity is always set: 1 when absent). */
enum {
    CM_HAS_PRICE = 1u << 0,
    CM_HAS_QUANTITY = 1u << 1,
    CM_HAS_POSITION = 1u << 2,
};

typedef struct cm_product {
    char *product_id; /* each string NULL when absent */
    char *sku;
    char *name;
    char *brand;
    char *category;
    char *variant;
    char *coupon;
    char *url;
    char *image_url;
    char *recommendation_id; /* the answer of GET /v1/recommendations that led here */
    double price;            /* 0 unless CM_HAS_PRICE */
    int64_t quantity;        /* as sent, or 1 when absent */
    int64_t position;        /* 0 unless CM_HAS_POSITION */
    unsigned has;            /* CM_HAS_PRICE | ... */
} cm_product;

typedef struct cm_event {
    cm_kind kind;
    char *query; /* each string NULL when absent */
    char *order_id;
    char *checkout_id;
    char *cart_id;
    char *list_id;
    char *coupon;
    char *recommendation_id; /* the answer of GET /v1/recommendations that led here */
    char currency[4];        /* upper-case ISO 4217 code, or "" when absent */
    double total, revenue, subtotal, value, shipping, tax, discount; /* 0 unless in `has` */
    int64_t step;
    unsigned has; /* CM_HAS_TOTAL | ... */
    /* Single-product events (Product Viewed, Added, Removed, Clicked, Shared, Reviewed and the
     * wishlist ones) have exactly one product, read from the properties themselves. Events about a
     * list, a cart or an order have one per entry of properties.products (possibly none). The
     * others (search, promotions, checkout steps, coupons) have none. */
    cm_product *products;
    size_t nproducts;
    unsigned coerced; /* values cm_parse() rewrote in the properties: 0 when they are as sent */
} cm_event;

/* Checks and coerces the e-commerce fields of `properties` (an object, or NULL for an event without
 * properties) for an event of kind k (not CM_NONE), as described at the top of this file. Returns 0
 * and sets *out (free it with cm_event_free), or -1 with *err filled (code "invalid_field", field
 * the path from "properties") and *out NULL. On error, properties may be partly coerced; callers
 * parse a copy they can throw away. Cost: one pass over the fields named above; one allocation per
 * string. */
int cm_parse(json_t *properties, cm_kind k, cm_event **out, struct ev_error *err);
void cm_event_free(cm_event *e); /* NULL is fine */

/* The same over properties already scanned by js_parse(): object token obj of d, or 0 for an event
 * without properties. Returns 0 and sets *out to what cm_parse() would give for jansson's reading
 * of the same text, with coerced 0, when every value is as the rules keep it; or 1, declining,
 * with *out NULL, when a value would be coerced or refused (or memory ran out): the caller then
 * runs cm_parse() on js_to_json(d, obj), which coerces, or words the error. Spares the tree an
 * event's properties would otherwise need. Cost: one pass over obj's members against the field
 * tables; one allocation per string kept. */
int cm_parse_tokens(const js_doc *d, uint32_t obj, cm_kind k, cm_event **out);

/* Whether a and b hold the same kind, fields and products (bitwise for numbers, so -0.0 and 0.0
 * differ); `coerced` is not compared. Both NULL is equal. For tests and fuzz targets. */
bool cm_event_equal(const cm_event *a, const cm_event *b);

/* A decimal number written as text, the rule money fields follow ("19.99"): an optional '-',
 * digits with at most one '.', at least one digit, an optional exponent; nothing else, not even
 * spaces; at most 64 bytes; finite. Read in the C locale whatever engaged runs in. Returns false
 * for anything else. Shared with the catalogue, which takes prices the same way. */
bool cm_parse_decimal(const char *s, size_t n, double *out);

#endif
