/* Unit tests for ingest/commerce: kind lookup (v2 names, v1 aliases), typing and coercion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest/commerce.h"
#include "ingest/ev.h"

static json_t *parse(const char *text) {
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v) fail_msg("test JSON does not parse: %s: %s", e.text, text);
    return v;
}

/* Parses properties for kind k and expects success; returns the event, properties in *props. */
static cm_event *ok(const char *props_text, cm_kind k, json_t **props) {
    json_t *p = props_text ? parse(props_text) : NULL;
    cm_event *e = NULL;
    ev_error err = {0};
    if (cm_parse(p, k, &e, &err)) fail_msg("expected success: %s: %s", err.field, err.message);
    assert_non_null(e);
    assert_int_equal(e->kind, k);
    if (props)
        *props = p;
    else
        json_decref(p);
    return e;
}

static ev_error bad(const char *props_text, cm_kind k) {
    json_t *p = parse(props_text);
    cm_event *e = (cm_event *)1;
    ev_error err = {0};
    assert_int_equal(cm_parse(p, k, &e, &err), -1);
    assert_null(e);
    json_decref(p);
    return err;
}

/* ---- kinds ---- */

static void test_lookup_names(void **state) {
    (void)state;
    static const struct {
        const char *name;
        cm_kind kind;
    } cases[] = {
        /* v2 names */
        {"Products Searched", CM_PRODUCTS_SEARCHED},
        {"Product List Viewed", CM_PRODUCT_LIST_VIEWED},
        {"Product List Filtered", CM_PRODUCT_LIST_FILTERED},
        {"Promotion Viewed", CM_PROMOTION_VIEWED},
        {"Promotion Clicked", CM_PROMOTION_CLICKED},
        {"Product Clicked", CM_PRODUCT_CLICKED},
        {"Product Viewed", CM_PRODUCT_VIEWED},
        {"Product Added", CM_PRODUCT_ADDED},
        {"Product Removed", CM_PRODUCT_REMOVED},
        {"Cart Viewed", CM_CART_VIEWED},
        {"Checkout Started", CM_CHECKOUT_STARTED},
        {"Checkout Step Viewed", CM_CHECKOUT_STEP_VIEWED},
        {"Checkout Step Completed", CM_CHECKOUT_STEP_COMPLETED},
        {"Payment Info Entered", CM_PAYMENT_INFO_ENTERED},
        {"Order Completed", CM_ORDER_COMPLETED},
        {"Order Updated", CM_ORDER_UPDATED},
        {"Order Refunded", CM_ORDER_REFUNDED},
        {"Order Cancelled", CM_ORDER_CANCELLED},
        {"Coupon Entered", CM_COUPON_ENTERED},
        {"Coupon Applied", CM_COUPON_APPLIED},
        {"Coupon Denied", CM_COUPON_DENIED},
        {"Coupon Removed", CM_COUPON_REMOVED},
        {"Product Added to Wishlist", CM_PRODUCT_ADDED_TO_WISHLIST},
        {"Product Removed from Wishlist", CM_PRODUCT_REMOVED_FROM_WISHLIST},
        {"Wishlist Product Added to Cart", CM_WISHLIST_PRODUCT_ADDED_TO_CART},
        {"Product Shared", CM_PRODUCT_SHARED},
        {"Cart Shared", CM_CART_SHARED},
        {"Product Reviewed", CM_PRODUCT_REVIEWED},
        /* v1 names */
        {"Searched Products", CM_PRODUCTS_SEARCHED},
        {"Viewed Product Category", CM_PRODUCT_LIST_VIEWED},
        {"Viewed Promotion", CM_PROMOTION_VIEWED},
        {"Clicked Promotion", CM_PROMOTION_CLICKED},
        {"Clicked Product", CM_PRODUCT_CLICKED},
        {"Viewed Product", CM_PRODUCT_VIEWED},
        {"Viewed Product Details", CM_PRODUCT_VIEWED},
        {"Viewed Product Detail", CM_PRODUCT_VIEWED},
        {"Added Product", CM_PRODUCT_ADDED},
        {"Removed Product", CM_PRODUCT_REMOVED},
        {"Viewed Cart", CM_CART_VIEWED},
        {"Started Order", CM_CHECKOUT_STARTED},
        {"Order Started", CM_CHECKOUT_STARTED},
        {"Viewed Checkout Step", CM_CHECKOUT_STEP_VIEWED},
        {"Completed Checkout Step", CM_CHECKOUT_STEP_COMPLETED},
        {"Payment Info Added", CM_PAYMENT_INFO_ENTERED},
        {"Completed Order", CM_ORDER_COMPLETED},
        {"Updated Order", CM_ORDER_UPDATED},
        {"Refunded Order", CM_ORDER_REFUNDED},
        {"Cancelled Order", CM_ORDER_CANCELLED},
        {"Order Canceled", CM_ORDER_CANCELLED},
        {"Entered Coupon", CM_COUPON_ENTERED},
        {"Applied Coupon", CM_COUPON_APPLIED},
        {"Denied Coupon", CM_COUPON_DENIED},
        {"Removed Coupon", CM_COUPON_REMOVED},
        {"Wishlist Product Removed", CM_PRODUCT_REMOVED_FROM_WISHLIST},
        /* case, spaces and underscores do not matter */
        {"order completed", CM_ORDER_COMPLETED},
        {"ORDER COMPLETED", CM_ORDER_COMPLETED},
        {"order_completed", CM_ORDER_COMPLETED},
        {"OrderCompleted", CM_ORDER_COMPLETED},
        {" Order  Completed_", CM_ORDER_COMPLETED},
        {"product_added_to_wishlist", CM_PRODUCT_ADDED_TO_WISHLIST},
        {"viewed_product", CM_PRODUCT_VIEWED},
        /* near misses */
        {"Order Complete", CM_NONE},
        {"Order Completed!", CM_NONE},
        {"Order-Completed", CM_NONE},
        {"Completed", CM_NONE},
        {"Product", CM_NONE},
        {"Product Added to", CM_NONE},
        {"Signed Up", CM_NONE},
        {"", CM_NONE},
        {"   ", CM_NONE},
        {"Ordér Completed", CM_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cm_kind k = cm_kind_lookup(cases[i].name);
        if (k != cases[i].kind)
            fail_msg("'%s' -> %d (%s), expected %d", cases[i].name, k,
                     cm_kind_name(k) ? cm_kind_name(k) : "none", cases[i].kind);
    }
    assert_int_equal(cm_kind_lookup(NULL), CM_NONE);
    /* Longer than any name: refused without a scan, even if it would match after separators. */
    char longname[200];
    memset(longname, ' ', sizeof longname);
    strcpy(longname + 150, "Order Completed");
    assert_int_equal(cm_kind_lookup(longname), CM_NONE);
}

static void test_kind_names(void **state) {
    (void)state;
    assert_string_equal(cm_kind_name(CM_ORDER_COMPLETED), "order_completed");
    assert_string_equal(cm_kind_event_name(CM_ORDER_COMPLETED), "Order Completed");
    assert_string_equal(cm_kind_name(CM_PRODUCT_REMOVED_FROM_WISHLIST),
                        "product_removed_from_wishlist");
    assert_string_equal(cm_kind_event_name(CM_WISHLIST_PRODUCT_ADDED_TO_CART),
                        "Wishlist Product Added to Cart");
    assert_null(cm_kind_name(CM_NONE));
    assert_null(cm_kind_event_name(CM_NONE));
    assert_null(cm_kind_name(CM_NKINDS));
    assert_null(cm_kind_event_name((cm_kind)-1));
    /* Every kind has both names, and each leads back to it. */
    for (int k = CM_NONE + 1; k < CM_NKINDS; k++) {
        const char *name = cm_kind_name((cm_kind)k), *event = cm_kind_event_name((cm_kind)k);
        assert_non_null(name);
        assert_non_null(event);
        assert_int_equal(cm_kind_lookup(name), k);
        assert_int_equal(cm_kind_lookup(event), k);
        for (int j = CM_NONE + 1; j < k; j++)
            assert_string_not_equal(name, cm_kind_name(j));
    }
}

/* ---- parsing ---- */

/* The order of docs/wire-formats.md section 1. */
static void test_order_fixture(void **state) {
    (void)state;
    json_t *props;
    cm_event *e =
        ok("{\"order_id\":\"50314b8e\",\"total\":27.5,\"revenue\":25,\"shipping\":3,\"tax\":2,"
           "\"discount\":2.5,\"coupon\":\"hasbros\",\"currency\":\"USD\",\"products\":[{\"product_"
           "id\":"
           "\"507f1f77\",\"sku\":\"45790-32\",\"name\":\"Monopoly\",\"price\":19,\"quantity\":1,"
           "\"category\":\"Games\"},{\"product_id\":\"505bd767\",\"sku\":\"46493-32\",\"name\":"
           "\"Uno\","
           "\"price\":3,\"quantity\":2}]}",
           CM_ORDER_COMPLETED, &props);
    assert_string_equal(e->order_id, "50314b8e");
    assert_null(e->checkout_id);
    assert_null(e->cart_id);
    assert_string_equal(e->coupon, "hasbros");
    assert_string_equal(e->currency, "USD");
    assert_int_equal(e->has, CM_HAS_TOTAL | CM_HAS_REVENUE | CM_HAS_SHIPPING | CM_HAS_TAX |
                                 CM_HAS_DISCOUNT);
    assert_true(e->total == 27.5);
    assert_true(e->revenue == 25);
    assert_true(e->shipping == 3);
    assert_true(e->tax == 2);
    assert_true(e->discount == 2.5);
    assert_true(e->subtotal == 0);
    assert_int_equal(e->nproducts, 2);
    cm_product *p = &e->products[0];
    assert_string_equal(p->product_id, "507f1f77");
    assert_string_equal(p->sku, "45790-32");
    assert_string_equal(p->name, "Monopoly");
    assert_string_equal(p->category, "Games");
    assert_null(p->brand);
    assert_null(p->url);
    assert_true(p->price == 19);
    assert_int_equal(p->quantity, 1);
    assert_int_equal(p->has, CM_HAS_PRICE | CM_HAS_QUANTITY);
    p = &e->products[1];
    assert_string_equal(p->product_id, "505bd767");
    assert_string_equal(p->name, "Uno");
    assert_true(p->price == 3);
    assert_int_equal(p->quantity, 2);
    assert_null(p->category);
    /* Well-typed properties are left exactly as they were. */
    json_t *p1 = json_array_get(json_object_get(props, "products"), 1);
    assert_true(json_is_integer(json_object_get(p1, "price")));
    assert_true(json_is_real(json_object_get(props, "total")));
    assert_string_equal(json_string_value(json_object_get(props, "currency")), "USD");
    cm_event_free(e);
    json_decref(props);
}

static void test_coercion_in_place(void **state) {
    (void)state;
    json_t *props;
    cm_event *e = ok("{\"orderId\":5001,\"currency\":\"eur\",\"total\":\"39.98\",\"tax\":\"-1e1\","
                     "\"subtotal\":\"7.\",\"value\":\".5\",\"coupon_id\":12,\"products\":["
                     "{\"id\":77,\"sku\":123.0,\"price\":\"19.99\",\"quantity\":\"2\","
                     "\"position\":3.0},{\"product_id\":\"p2\",\"quantity\":\"4.0\",\"price\":null,"
                     "\"name\":\"\"}]}",
                     CM_ORDER_COMPLETED, &props);
    json_t *expect =
        parse("{\"orderId\":\"5001\",\"currency\":\"EUR\",\"total\":39.98,\"tax\":-10.0,"
              "\"subtotal\":7.0,\"value\":0.5,\"coupon_id\":\"12\",\"products\":["
              "{\"id\":\"77\",\"sku\":\"123\",\"price\":19.99,\"quantity\":2,"
              "\"position\":3},{\"product_id\":\"p2\",\"quantity\":4,\"price\":null,"
              "\"name\":\"\"}]}");
    if (!json_equal(props, expect)) {
        char *got = json_dumps(props, JSON_COMPACT);
        fail_msg("coerced to %s", got);
    }
    /* Integers coerced from reals or strings are JSON integers, money from strings JSON reals. */
    json_t *p0 = json_array_get(json_object_get(props, "products"), 0);
    assert_true(json_is_integer(json_object_get(p0, "quantity")));
    assert_true(json_is_integer(json_object_get(p0, "position")));
    assert_true(json_is_real(json_object_get(props, "total")));
    json_decref(expect);

    assert_string_equal(e->order_id, "5001");
    assert_string_equal(e->coupon, "12");
    assert_string_equal(e->currency, "EUR");
    assert_true(e->total == 39.98);
    assert_true(e->tax == -10);
    assert_true(e->subtotal == 7);
    assert_true(e->value == 0.5);
    assert_string_equal(e->products[0].product_id, "77");
    assert_string_equal(e->products[0].sku, "123");
    assert_true(e->products[0].price == 19.99);
    assert_int_equal(e->products[0].quantity, 2);
    assert_int_equal(e->products[0].position, 3);
    assert_int_equal(e->products[0].has, CM_HAS_PRICE | CM_HAS_QUANTITY | CM_HAS_POSITION);
    /* null is absent, "" is an absent text, and quantity "4.0" is the whole number 4. */
    assert_int_equal(e->products[1].has, CM_HAS_QUANTITY);
    assert_null(e->products[1].name);
    assert_int_equal(e->products[1].quantity, 4);
    /* Each value rewritten is counted: 7 order fields, 5 in the first product, 1 in the second. */
    assert_int_equal(e->coerced, 13);
    cm_event_free(e);
    json_decref(props);
    /* The same properties with more members than one pass over them reads (CM_SCAN_MEMBERS):
     * fields are then looked up by name, with the same result. */
    e = ok("{\"a\":1,\"b\":2,\"c\":3,\"orderId\":5001,\"currency\":\"eur\",\"total\":\"39.98\","
           "\"tax\":\"-1e1\",\"subtotal\":\"7.\",\"value\":\".5\",\"coupon_id\":12,\"products\":["
           "{\"id\":77,\"sku\":123.0,\"price\":\"19.99\",\"quantity\":\"2\",\"position\":3.0,"
           "\"p1\":0,\"p2\":0,\"p3\":0,\"p4\":0}]}",
           CM_ORDER_COMPLETED, NULL);
    assert_string_equal(e->order_id, "5001");
    assert_string_equal(e->coupon, "12");
    assert_string_equal(e->currency, "EUR");
    assert_true(e->total == 39.98);
    assert_string_equal(e->products[0].product_id, "77");
    assert_int_equal(e->products[0].quantity, 2);
    assert_int_equal(e->products[0].position, 3);
    assert_int_equal(e->coerced, 12);
    cm_event_free(e);
    /* Properties already in their types are left as sent, and say so. */
    e = ok("{\"order_id\":\"o\",\"currency\":\"EUR\",\"total\":1.5,\"products\":[{\"product_id\":"
           "\"p\",\"quantity\":2,\"price\":3}]}",
           CM_ORDER_COMPLETED, NULL);
    assert_int_equal(e->coerced, 0);
    cm_event_free(e);
}

static void test_single_product(void **state) {
    (void)state;
    json_t *props;
    cm_event *e =
        ok("{\"product_id\":5,\"cart_id\":\"c1\",\"price\":\"9.5\",\"brand\":\"Acme\","
           "\"variant\":\"red\",\"url\":\"https://x/p\",\"image_url\":\"https://x/i.png\","
           "\"coupon\":\"SALE\",\"position\":\"2\"}",
           CM_PRODUCT_ADDED, &props);
    assert_int_equal(e->nproducts, 1);
    assert_string_equal(e->cart_id, "c1");
    assert_string_equal(e->coupon, "SALE");
    cm_product *p = e->products;
    assert_string_equal(p->product_id, "5");
    assert_string_equal(p->brand, "Acme");
    assert_string_equal(p->variant, "red");
    assert_string_equal(p->url, "https://x/p");
    assert_string_equal(p->image_url, "https://x/i.png");
    assert_string_equal(p->coupon, "SALE");
    assert_true(p->price == 9.5);
    /* Quantity defaults to 1 and is not marked present. */
    assert_int_equal(p->quantity, 1);
    assert_int_equal(p->position, 2);
    assert_int_equal(p->has, CM_HAS_PRICE | CM_HAS_POSITION);
    assert_string_equal(json_string_value(json_object_get(props, "product_id")), "5");
    cm_event_free(e);
    json_decref(props);

    /* v1 Viewed Product uses "id". */
    e = ok("{\"id\":\"507f\",\"sku\":\"G-32\",\"price\":18.99}", CM_PRODUCT_VIEWED, NULL);
    assert_string_equal(e->products[0].product_id, "507f");
    assert_string_equal(e->products[0].sku, "G-32");
    cm_event_free(e);

    /* Without properties a single-product event still has its one (empty) product. */
    e = ok(NULL, CM_PRODUCT_VIEWED, NULL);
    assert_int_equal(e->nproducts, 1);
    assert_null(e->products[0].product_id);
    assert_int_equal(e->products[0].quantity, 1);
    cm_event_free(e);

    /* A single-product event ignores a products array. */
    e = ok("{\"product_id\":\"a\",\"products\":\"not looked at\"}", CM_PRODUCT_SHARED, NULL);
    assert_int_equal(e->nproducts, 1);
    cm_event_free(e);
}

static void test_shapes(void **state) {
    (void)state;
    /* Events without products leave their fields alone, even where a product field of the same name
     * would be typed: a promotion's position is a slot name. */
    cm_event *e =
        ok("{\"promotion_id\":\"p1\",\"name\":\"Summer\",\"position\":\"home_banner_top\"}",
           CM_PROMOTION_VIEWED, NULL);
    assert_int_equal(e->nproducts, 0);
    assert_null(e->products);
    cm_event_free(e);

    e = ok("{\"query\":\"blue hotpants\"}", CM_PRODUCTS_SEARCHED, NULL);
    assert_string_equal(e->query, "blue hotpants");
    cm_event_free(e);

    e = ok("{\"checkout_id\":\"c9\",\"step\":\"2\",\"shipping_method\":\"Fedex\"}",
           CM_CHECKOUT_STEP_VIEWED, NULL);
    assert_string_equal(e->checkout_id, "c9");
    assert_int_equal(e->step, 2);
    assert_int_equal(e->has, CM_HAS_STEP);
    cm_event_free(e);

    e = ok(
        "{\"coupon_id\":\"may_deals_2016\",\"coupon_name\":\"May Deals 2016\",\"discount\":23.32,"
        "\"order_id\":\"o1\"}",
        CM_COUPON_APPLIED, NULL);
    assert_string_equal(e->coupon, "may_deals_2016");
    assert_true(e->discount == 23.32);
    cm_event_free(e);

    /* "coupon" wins over "coupon_id". */
    e = ok("{\"coupon\":\"A\",\"coupon_id\":\"B\"}", CM_COUPON_ENTERED, NULL);
    assert_string_equal(e->coupon, "A");
    cm_event_free(e);

    e = ok("{\"list_id\":\"hot_deals_1\",\"category\":\"Deals\",\"products\":[]}",
           CM_PRODUCT_LIST_VIEWED, NULL);
    assert_string_equal(e->list_id, "hot_deals_1");
    assert_int_equal(e->nproducts, 0);
    cm_event_free(e);

    /* An order without products, or with products null. */
    e = ok("{\"order_id\":\"o\",\"products\":null}", CM_ORDER_REFUNDED, NULL);
    assert_int_equal(e->nproducts, 0);
    cm_event_free(e);
    e = ok(NULL, CM_ORDER_CANCELLED, NULL);
    assert_int_equal(e->nproducts, 0);
    assert_int_equal(e->has, 0);
    assert_string_equal(e->currency, "");
    cm_event_free(e);
}

static void test_product_limit(void **state) {
    (void)state;
    /* CM_MAX_PRODUCTS entries are fine, one more is not. */
    size_t n = CM_MAX_PRODUCTS;
    char *text = malloc(n * 24 + 64);
    char *p = text + sprintf(text, "{\"products\":[");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s{\"sku\":%zu}", i ? "," : "", i);
    strcpy(p, "]}");
    cm_event *e = ok(text, CM_CART_VIEWED, NULL);
    assert_int_equal(e->nproducts, CM_MAX_PRODUCTS);
    assert_string_equal(e->products[999].sku, "999");
    cm_event_free(e);
    strcpy(p, ",{}]}");
    ev_error err = bad(text, CM_CART_VIEWED);
    assert_string_equal(err.field, "properties.products");
    assert_string_equal(err.message,
                        "properties.products has 1001 entries; at most 1000 are allowed");
    free(text);
}

static void test_type_errors(void **state) {
    (void)state;
    static const struct {
        const char *props;
        cm_kind kind;
        const char *field, *message;
    } cases[] = {
        {"{\"total\":\"abc\"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"revenue\":true}", CM_ORDER_COMPLETED, "properties.revenue",
         "properties.revenue must be a number"},
        {"{\"total\":\" 19.99\"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"total\":\"19.99 \"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"total\":\"0x10\"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"total\":\"1e999\"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"total\":\"NaN\"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"total\":\"inf\"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"total\":\"1,5\"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"total\":\"+1\"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"total\":\"1e\"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"total\":\".\"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"total\":\"\"}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"total\":{}}", CM_ORDER_COMPLETED, "properties.total",
         "properties.total must be a number"},
        {"{\"currency\":\"US\"}", CM_ORDER_COMPLETED, "properties.currency",
         "properties.currency must be a 3-letter ISO 4217 currency code"},
        {"{\"currency\":\"U5D\"}", CM_ORDER_COMPLETED, "properties.currency",
         "properties.currency must be a 3-letter ISO 4217 currency code"},
        {"{\"currency\":\"USDX\"}", CM_ORDER_COMPLETED, "properties.currency",
         "properties.currency must be a 3-letter ISO 4217 currency code"},
        {"{\"currency\":840}", CM_ORDER_COMPLETED, "properties.currency",
         "properties.currency must be a 3-letter ISO 4217 currency code"},
        {"{\"order_id\":[1]}", CM_ORDER_COMPLETED, "properties.order_id",
         "properties.order_id must be a string"},
        {"{\"orderId\":1.5}", CM_ORDER_COMPLETED, "properties.orderId",
         "properties.orderId must be a string"},
        {"{\"step\":-1}", CM_CHECKOUT_STEP_VIEWED, "properties.step",
         "properties.step must be a whole number >= 0"},
        {"{\"products\":{}}", CM_ORDER_COMPLETED, "properties.products",
         "properties.products must be an array"},
        {"{\"products\":[{},{},\"p\"]}", CM_ORDER_COMPLETED, "properties.products[2]",
         "properties.products[2] must be an object"},
        {"{\"products\":[{\"price\":1},{\"quantity\":-1}]}", CM_CART_VIEWED,
         "properties.products[1].quantity",
         "properties.products[1].quantity must be a whole number >= 0"},
        {"{\"products\":[{\"quantity\":1.5}]}", CM_CART_VIEWED, "properties.products[0].quantity",
         "properties.products[0].quantity must be a whole number >= 0"},
        {"{\"products\":[{\"quantity\":\"2.5\"}]}", CM_CART_VIEWED,
         "properties.products[0].quantity",
         "properties.products[0].quantity must be a whole number >= 0"},
        {"{\"products\":[{\"quantity\":1e300}]}", CM_CART_VIEWED, "properties.products[0].quantity",
         "properties.products[0].quantity must be a whole number >= 0"},
        {"{\"products\":[{\"quantity\":true}]}", CM_CART_VIEWED, "properties.products[0].quantity",
         "properties.products[0].quantity must be a whole number >= 0"},
        {"{\"products\":[{\"price\":\"free\"}]}", CM_ORDER_UPDATED, "properties.products[0].price",
         "properties.products[0].price must be a number"},
        {"{\"products\":[{\"name\":true}]}", CM_CHECKOUT_STARTED, "properties.products[0].name",
         "properties.products[0].name must be a string"},
        {"{\"products\":[{\"id\":{}}]}", CM_CHECKOUT_STARTED, "properties.products[0].id",
         "properties.products[0].id must be a string"},
        {"{\"name\":[]}", CM_PRODUCT_VIEWED, "properties.name", "properties.name must be a string"},
        {"{\"price\":\"9,99\"}", CM_PRODUCT_VIEWED, "properties.price",
         "properties.price must be a number"},
        {"{\"quantity\":\"x\"}", CM_PRODUCT_REMOVED, "properties.quantity",
         "properties.quantity must be a whole number >= 0"},
        {"{\"query\":{}}", CM_PRODUCTS_SEARCHED, "properties.query",
         "properties.query must be a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ev_error err = bad(cases[i].props, cases[i].kind);
        if (strcmp(err.code, "invalid_field") || strcmp(err.field, cases[i].field) ||
            strcmp(err.message, cases[i].message))
            fail_msg("case %zu %s: got %s / %s / %s", i, cases[i].props, err.code, err.field,
                     err.message);
    }
}

static void test_bad_arguments(void **state) {
    (void)state;
    json_t *props = parse("{}");
    cm_event *e = NULL;
    ev_error err;
    assert_int_equal(cm_parse(props, CM_NONE, &e, &err), -1);
    assert_null(e);
    assert_int_equal(cm_parse(props, CM_NKINDS, &e, &err), -1);
    json_decref(props);
    props = parse("[1]");
    assert_int_equal(cm_parse(props, CM_ORDER_COMPLETED, &e, &err), -1);
    assert_string_equal(err.field, "properties");
    json_decref(props);
    cm_event_free(NULL);
}

/* Long numeric strings: up to 64 bytes are read, longer ones refused. */
static void test_numeric_string_length(void **state) {
    (void)state;
    char digits[80], text[128];
    memset(digits, '0', sizeof digits);
    digits[63] = '5';
    digits[64] = '\0';
    snprintf(text, sizeof text, "{\"total\":\"%s\"}", digits);
    cm_event *e = ok(text, CM_ORDER_COMPLETED, NULL);
    assert_true(e->total == 5);
    cm_event_free(e);
    digits[64] = '5';
    digits[65] = '\0';
    snprintf(text, sizeof text, "{\"total\":\"%s\"}", digits);
    ev_error err = bad(text, CM_ORDER_COMPLETED);
    assert_string_equal(err.field, "properties.total");
}

/* ---- cm_parse_tokens(): the same typing without a tree ---- */

/* Property texts of every shape the rules treat: as kept, coerced, refused. */
static const char *const token_cases[] = {
    "{}",
    "{\"product_id\":\"p1\",\"price\":19.99,\"name\":\"Tee\",\"category\":\"Shirts\","
    "\"currency\":\"USD\"}",
    "{\"product_id\":\"p1\",\"price\":20,\"quantity\":3,\"position\":0}",
    "{\"productId\":\"v1-id\",\"sku\":\"S\",\"brand\":null,\"url\":\"https://x.test/a\\/b\"}",
    "{\"product_id\":\"\",\"name\":\"\\u00e9t\\u00e9\",\"variant\":\"\\\"q\\\"\"}",
    "{\"product_id\":123}",   /* a number: coerced to text */
    "{\"price\":\"19.99\"}",  /* numeric string: coerced */
    "{\"price\":\"cheap\"}",  /* refused */
    "{\"quantity\":2.0}",     /* a whole real: coerced */
    "{\"quantity\":-1}",      /* refused */
    "{\"quantity\":1.5}",     /* refused */
    "{\"currency\":\"usd\"}", /* lower case: coerced */
    "{\"currency\":\"US\"}",  /* refused */
    "{\"currency\":\"\"}",
    "{\"currency\":\"\\u0055SD\"}", /* escaped: declined, though valid */
    "{\"order_id\":\"o1\",\"orderId\":\"old\",\"total\":30,\"revenue\":25.5,\"tax\":1e2,"
    "\"shipping\":0,\"discount\":-5,\"coupon\":\"SUMMER\",\"currency\":\"EUR\","
    "\"products\":[{\"product_id\":\"a\",\"price\":10,\"quantity\":2},{\"sku\":\"b\"}]}",
    "{\"orderId\":\"v1\",\"products\":[]}",
    "{\"order_id\":\"o2\",\"products\":null}",
    "{\"order_id\":\"o3\",\"products\":[{\"product_id\":7}]}",
    "{\"order_id\":\"o4\",\"products\":[1]}",
    "{\"order_id\":\"o5\",\"products\":{}}",
    "{\"query\":\"red "
    "shoes\",\"step\":2,\"list_id\":\"l\",\"cart_id\":\"c\",\"checkout_id\":\"k\"}",
    "{\"step\":\"2\"}",
    "{\"value\":9007199254740993,\"subtotal\":-0.0,\"recommendation_id\":\"r1\"}",
    "{\"name\":true}",
    "{\"price\":null,\"quantity\":null,\"product_id\":null}",
};

static void test_tokens_match_tree(void **state) {
    (void)state;
    js_doc d;
    js_init(&d, 0);
    size_t taken = 0, declined = 0;
    for (size_t i = 0; i < sizeof token_cases / sizeof *token_cases; i++) {
        const char *text = token_cases[i];
        /* Token 0 means no properties: they are read as a member, as an event holds them. */
        char wrapped[1024];
        int n = snprintf(wrapped, sizeof wrapped, "{\"properties\":%s}", text);
        assert_true(n > 0 && (size_t)n < sizeof wrapped);
        assert_int_equal(js_parse(&d, wrapped, (size_t)n, EV_MAX_DEPTH), 0);
        for (int k = CM_NONE + 1; k < CM_NKINDS; k++) {
            cm_event *fast = (cm_event *)1, *slow = NULL;
            int rc = cm_parse_tokens(&d, 2, (cm_kind)k, &fast);
            json_t *p = parse(text);
            ev_error err = {0};
            int src = cm_parse(p, (cm_kind)k, &slow, &err);
            json_decref(p);
            if (rc == 0) {
                /* Taken: exactly what the tree gives, and nothing the tree had to coerce. */
                if (src || slow->coerced || !cm_event_equal(fast, slow))
                    fail_msg("case %zu, kind %s: tokens took what the tree %s", i,
                             cm_kind_name((cm_kind)k), src ? "refused" : "typed otherwise");
                taken++;
            } else {
                assert_int_equal(rc, 1);
                assert_null(fast);
                /* Declined only what the tree coerces or refuses (or an escaped currency). */
                if (!src && !slow->coerced && !strstr(text, "\\u0055"))
                    fail_msg("case %zu, kind %s: tokens declined a text kept as sent", i,
                             cm_kind_name((cm_kind)k));
                declined++;
            }
            cm_event_free(fast);
            cm_event_free(slow);
        }
    }
    assert_true(taken > 0 && declined > 0);
    /* No properties at all: the same defaults as cm_parse(NULL). */
    for (int k = CM_NONE + 1; k < CM_NKINDS; k++) {
        cm_event *fast = NULL, *slow = NULL;
        ev_error err;
        assert_int_equal(cm_parse_tokens(&d, 0, (cm_kind)k, &fast), 0);
        assert_int_equal(cm_parse(NULL, (cm_kind)k, &slow, &err), 0);
        assert_true(cm_event_equal(fast, slow));
        cm_event_free(fast);
        cm_event_free(slow);
    }
    cm_event *none = (cm_event *)1;
    assert_int_equal(cm_parse_tokens(&d, 0, CM_NONE, &none), 1);
    assert_null(none);
    js_free(&d);
}

/* An event's strings share memory it owns (commerce.c): many, and longer than a block, must each
 * stay whole, by both paths. */
static void test_text_memory(void **state) {
    (void)state;
    enum { N = 40, LONG = 1500 };
    size_t cap = N * (LONG + 400) + 64;
    char *text = malloc(cap), *p = text;
    p += sprintf(p, "{\"order_id\":\"o-memory\",\"products\":[");
    for (int i = 0; i < N; i++) {
        /* Names of growing length; every 10th product id longer than a block. */
        p += sprintf(p, "%s{\"product_id\":\"", i ? "," : "");
        int idlen = i % 10 == 9 ? LONG : 6;
        for (int j = 0; j < idlen; j++)
            *p++ = (char)('a' + (i + j) % 26);
        p += sprintf(p, "\",\"name\":\"");
        for (int j = 0; j < i * 7; j++)
            *p++ = (char)('A' + (i * 3 + j) % 26);
        p += sprintf(p, "\",\"category\":\"c%d\"}", i);
    }
    strcpy(p, "]}");
    size_t len = strlen(text);
    assert_true(len < cap);

    js_doc d;
    js_init(&d, 0);
    char *wrapped = malloc(len + 32);
    int n = sprintf(wrapped, "{\"properties\":%s}", text);
    assert_int_equal(js_parse(&d, wrapped, (size_t)n, EV_MAX_DEPTH), 0);
    cm_event *fast = NULL;
    assert_int_equal(cm_parse_tokens(&d, 2, CM_ORDER_COMPLETED, &fast), 0);
    cm_event *slow = ok(text, CM_ORDER_COMPLETED, NULL);
    const cm_event *both[] = {fast, slow};
    for (int b = 0; b < 2; b++) {
        const cm_event *e = both[b];
        assert_string_equal(e->order_id, "o-memory");
        assert_int_equal(e->nproducts, N);
        for (int i = 0; i < N; i++) {
            const cm_product *pr = &e->products[i];
            int idlen = i % 10 == 9 ? LONG : 6;
            assert_int_equal(strlen(pr->product_id), idlen);
            for (int j = 0; j < idlen; j++)
                assert_int_equal(pr->product_id[j], 'a' + (i + j) % 26);
            if (i == 0) {
                assert_null(pr->name); /* "": absent */
            } else {
                assert_int_equal(strlen(pr->name), i * 7);
                for (int j = 0; j < i * 7; j++)
                    assert_int_equal(pr->name[j], 'A' + (i * 3 + j) % 26);
            }
            char cat[16];
            snprintf(cat, sizeof cat, "c%d", i);
            assert_string_equal(pr->category, cat);
        }
    }
    assert_true(cm_event_equal(fast, slow));
    cm_event_free(fast);
    cm_event_free(slow);
    js_free(&d);
    free(wrapped);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_names),      cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_order_fixture),     cmocka_unit_test(test_coercion_in_place),
        cmocka_unit_test(test_single_product),    cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_product_limit),     cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_bad_arguments),     cmocka_unit_test(test_numeric_string_length),
        cmocka_unit_test(test_tokens_match_tree), cmocka_unit_test(test_text_memory),
    };
    return cmocka_run_group_tests_name("commerce", tests, NULL, NULL);
}
