/* Unit tests for c360/prof: the fold of events into computed attributes (sessions, cart, orders,
 * favourites, channel and device), traits last-write-wins by time, and merging two profiles,
 * which must give what folding all their events into one profile gives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "c360/prof.h"

#define MIN 60000LL

/* The name and product-id pools every test shares; they live as long as the test process. */
static strpool *names(void) {
    static strpool *pool;
    if (!pool) pool = strpool_new(1 << 20);
    return pool;
}

static strpool *products(void) {
    static strpool *pool;
    if (!pool) pool = strpool_new(1 << 20);
    return pool;
}

/* Folds one event given as JSON text; e-commerce fields are parsed as the server does. */
static void fold(prof *p, int64_t seq, int64_t ts, ev_type type, const char *json) {
    json_error_t je;
    json_t *ev = json_loads(json, 0, &je);
    assert_non_null(ev);
    cm_event *cm = NULL;
    const char *name = json_string_value(json_object_get(ev, "event"));
    cm_kind k = cm_kind_lookup(name);
    if (k != CM_NONE) {
        ev_error err;
        assert_int_equal(cm_parse(json_object_get(ev, "properties"), k, &cm, &err), 0);
    }
    prof_event e = {seq, ts, type, cm, ev, names(), products()};
    assert_int_equal(prof_fold(p, &e), 0);
    cm_event_free(cm);
    json_decref(ev);
}

static double num(const json_t *o, const char *key) {
    return json_number_value(json_object_get(o, key));
}

static json_t *computed(const prof *p) {
    int rfm[3] = {0, 0, 0};
    json_t *c = prof_computed_json(p, rfm, 0, names(), products());
    assert_non_null(c);
    return c;
}

static void test_cart_and_order(void **state) {
    (void)state;
    prof *p = prof_new();
    fold(p, 1, 0, EV_TRACK,
         "{\"event\":\"Product Added\",\"properties\":{\"product_id\":\"a\",\"price\":10,"
         "\"quantity\":2,\"category\":\"Shoes\",\"brand\":\"Acme\"}}");
    fold(p, 2, 1 * MIN, EV_TRACK,
         "{\"event\":\"Product Added\",\"properties\":{\"product_id\":\"b\",\"price\":2.5}}");
    fold(p, 3, 2 * MIN, EV_TRACK,
         "{\"event\":\"Product Removed\",\"properties\":{\"product_id\":\"a\",\"quantity\":1}}");
    assert_int_equal(p->ncart, 2);
    assert_true(prof_in_cart(p, products(), "a"));
    assert_true(p->cart_value == 12.5); /* 10 x 1 + 2.5 */
    assert_int_equal(p->cart_updated_ms, 2 * MIN);
    fold(p, 4, 3 * MIN, EV_TRACK,
         "{\"event\":\"Product Removed\",\"properties\":{\"product_id\":\"b\"}}");
    assert_false(prof_in_cart(p, products(), "b"));
    /* Cart Viewed with products replaces the pieced-together cart. */
    fold(p, 5, 4 * MIN, EV_TRACK,
         "{\"event\":\"Cart Viewed\",\"properties\":{\"products\":[{\"product_id\":\"c\","
         "\"price\":7,\"quantity\":3}]}}");
    assert_int_equal(p->ncart, 1);
    assert_true(p->cart_value == 21);
    fold(p, 6, 5 * MIN, EV_TRACK,
         "{\"event\":\"Order Completed\",\"properties\":{\"order_id\":\"o1\",\"total\":21,"
         "\"currency\":\"eur\",\"products\":[{\"product_id\":\"c\",\"price\":7,\"quantity\":3,"
         "\"category\":\"Socks\"}]}}");
    assert_int_equal(p->ncart, 0);
    assert_int_equal(p->orders, 1);
    assert_true(p->revenue == 21);
    assert_string_equal(p->currency, "EUR");
    assert_true(prof_has_bought(p, products(), "c"));
    assert_false(prof_has_bought(p, products(), "a"));
    /* A refund subtracts; the average is over what was ordered. */
    fold(p, 7, 6 * MIN, EV_TRACK,
         "{\"event\":\"Order Refunded\",\"properties\":{\"order_id\":\"o1\",\"total\":6}}");
    json_t *c = computed(p);
    assert_true(num(c, "total_spend") == 15);
    assert_true(num(c, "average_order_value") == 21);
    assert_int_equal(json_integer_value(json_object_get(c, "refunds")), 1);
    assert_string_equal(json_string_value(json_object_get(c, "last_order_id")), "o1");
    /* Favourites: Shoes 3 (cart), Socks 5 (purchase) -> Socks first. */
    json_t *cats = json_object_get(c, "favourite_categories");
    assert_string_equal(json_string_value(json_array_get(cats, 0)), "Socks");
    assert_string_equal(json_string_value(json_array_get(cats, 1)), "Shoes");
    json_decref(c);
    prof_free(p);
}

static void test_sessions_channels_devices(void **state) {
    (void)state;
    prof *p = prof_new();
    const char *web =
        "{\"type\":\"page\",\"context\":{\"userAgent\":\"Mozilla/5.0 (X11; Linux)\"}}";
    const char *app = "{\"type\":\"screen\",\"context\":{\"device\":{\"type\":\"ios\"}}}";
    fold(p, 1, 0, EV_PAGE, web);
    fold(p, 2, 10 * MIN, EV_PAGE, web);
    fold(p, 3, 39 * MIN, EV_PAGE, web);   /* 29 minutes later: the same session */
    fold(p, 4, 70 * MIN, EV_SCREEN, app); /* 31 minutes later: a new one */
    fold(p, 5, 71 * MIN, EV_SCREEN, app);
    assert_int_equal(p->sessions, 2);
    assert_int_equal(p->page_views, 3);
    assert_int_equal(p->screen_views, 2);
    assert_int_equal(prof_preferred_channel(p), PROF_CH_WEB);
    assert_int_equal(p->devices[PROF_DEV_DESKTOP], 3);
    assert_int_equal(p->devices[PROF_DEV_MOBILE], 2);
    assert_int_equal(p->nseqs, 5);
    assert_int_equal(p->first_seen_ms, 0);
    assert_int_equal(p->last_seen_ms, 71 * MIN);
    prof_free(p);
}

/* The channel and device of an event, from each place they may be named, in order of trust. */
static void test_event_channel_device(void **state) {
    (void)state;
    static const struct {
        const char *event;
        ev_type type;
        prof_channel channel;
        prof_device device;
    } cases[] = {
        {"{}", EV_TRACK, PROF_CH_SERVER, PROF_DEV_OTHER},
        {"{\"channel\":\"email\",\"context\":{\"channel\":\"sms\"}}", EV_TRACK, PROF_CH_EMAIL,
         PROF_DEV_OTHER},
        {"{\"channel\":\"nonsense\",\"context\":{\"channel\":\"SMS\"}}", EV_TRACK, PROF_CH_SMS,
         PROF_DEV_OTHER},
        {"{\"context\":{\"app\":{\"name\":\"A\"},\"page\":{}}}", EV_TRACK, PROF_CH_APP,
         PROF_DEV_OTHER},
        {"{\"context\":{\"page\":{\"path\":\"/\"}}}", EV_TRACK, PROF_CH_WEB, PROF_DEV_OTHER},
        {"{}", EV_SCREEN, PROF_CH_APP, PROF_DEV_OTHER},
        {"{\"context\":{\"userAgent\":\"Mozilla (iPhone)\"}}", EV_TRACK, PROF_CH_WEB,
         PROF_DEV_MOBILE},
        {"{\"context\":{\"userAgent\":\"Mozilla (iPad)\",\"device\":{\"type\":\"desktop\"}}}",
         EV_TRACK, PROF_CH_WEB, PROF_DEV_DESKTOP},
        {"{\"context\":{\"userAgent\":\"Mozilla (iPad)\",\"device\":{\"type\":7}}}", EV_PAGE,
         PROF_CH_WEB, PROF_DEV_TABLET},
        {"{\"context\":\"not an object\"}", EV_PAGE, PROF_CH_WEB, PROF_DEV_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *ev = json_loads(cases[i].event, 0, NULL);
        assert_non_null(ev);
        if (prof_event_channel(ev, cases[i].type) != cases[i].channel ||
            prof_event_device(ev) != cases[i].device)
            fail_msg("case %zu: channel %d device %d", i, prof_event_channel(ev, cases[i].type),
                     prof_event_device(ev));
        json_decref(ev);
    }
}

static void test_traits_last_write_wins_by_time(void **state) {
    (void)state;
    prof *p = prof_new();
    fold(p, 1, 100, EV_IDENTIFY, "{\"traits\":{\"name\":\"Ada\",\"city\":\"Berlin\"}}");
    fold(p, 2, 50, EV_IDENTIFY, "{\"traits\":{\"name\":\"Old\",\"plan\":\"free\"}}");
    fold(p, 3, 200, EV_TRACK, "{\"event\":\"x\",\"context\":{\"traits\":{\"city\":null}}}");
    json_t *t = prof_traits(p);
    assert_string_equal(json_string_value(json_object_get(t, "name")), "Ada");
    assert_string_equal(json_string_value(json_object_get(t, "plan")), "free");
    assert_null(json_object_get(t, "city"));
    json_decref(t);
    /* The removal is as of its time: an older value arriving later does not bring it back. */
    fold(p, 4, 150, EV_IDENTIFY, "{\"traits\":{\"city\":\"Paris\"}}");
    t = prof_traits(p);
    assert_null(json_object_get(t, "city"));
    json_decref(t);
    /* A value sent again unchanged keeps the text as it was; a new one replaces it. */
    fold(p, 5, 300, EV_IDENTIFY, "{\"traits\":{\"name\":\"Ada\"}}");
    assert_string_equal(p->traits, "{\"name\":\"Ada\",\"plan\":\"free\"}");
    fold(p, 6, 400, EV_IDENTIFY, "{\"traits\":{\"name\":\"Ada L.\"}}");
    assert_string_equal(p->traits, "{\"name\":\"Ada L.\",\"plan\":\"free\"}");
    prof_free(p);
}

/* Folding events into two profiles and merging equals folding them all into one. */
static void test_merge_equals_fold(void **state) {
    (void)state;
    static const struct {
        int64_t ts;
        ev_type type;
        const char *json;
        int side;
    } evs[] = {
        {0, EV_PAGE, "{\"type\":\"page\"}", 0},
        {1 * MIN, EV_TRACK,
         "{\"event\":\"Product Viewed\",\"properties\":{\"product_id\":\"a\",\"category\":\"T\"}}",
         1},
        {2 * MIN, EV_IDENTIFY, "{\"traits\":{\"name\":\"B\"}}", 1},
        {3 * MIN, EV_IDENTIFY, "{\"traits\":{\"name\":\"A\"}}", 0},
        {4 * MIN, EV_TRACK,
         "{\"event\":\"Order Completed\",\"properties\":{\"order_id\":\"o\",\"revenue\":9,"
         "\"products\":[{\"product_id\":\"z\"}]}}",
         1},
        {5 * MIN, EV_TRACK,
         "{\"event\":\"Product Added\",\"properties\":{\"product_id\":\"k\",\"price\":4}}", 0},
    };
    prof *all = prof_new(), *a = prof_new(), *b = prof_new();
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++) {
        fold(all, (int64_t)i + 1, evs[i].ts, evs[i].type, evs[i].json);
        fold(evs[i].side ? b : a, (int64_t)i + 1, evs[i].ts, evs[i].type, evs[i].json);
    }
    assert_int_equal(prof_merge(a, b), 0);
    prof_free(b);
    assert_int_equal(a->nseqs, 6);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(a->seqs[i], (int64_t)i + 1);
    json_t *ca = computed(a), *call = computed(all);
    /* Sessions add across devices (two profiles, two sessions); everything else is equal. */
    json_object_del(ca, "sessions");
    json_object_del(call, "sessions");
    assert_true(json_equal(ca, call));
    json_t *ta = prof_traits(a), *tall = prof_traits(all);
    assert_true(json_equal(ta, tall));
    assert_string_equal(json_string_value(json_object_get(ta, "name")), "A");
    json_decref(ta);
    json_decref(tall);
    json_decref(ca);
    json_decref(call);
    prof_free(a);
    prof_free(all);
}

/* Hostile: traits past the cap are dropped, carts past the cap counted in no line. */
static void test_caps(void **state) {
    (void)state;
    prof *p = prof_new();
    char buf[128];
    for (int i = 0; i < PROF_TRAITS_MAX + 50; i++) {
        snprintf(buf, sizeof buf, "{\"traits\":{\"t%d\":%d}}", i, i);
        fold(p, i + 1, i, EV_IDENTIFY, buf);
    }
    json_t *t = prof_traits(p);
    assert_int_equal(json_object_size(t), PROF_TRAITS_MAX);
    json_decref(t);
    for (int i = 0; i < PROF_CART_MAX + 10; i++) {
        snprintf(buf, sizeof buf,
                 "{\"event\":\"Product Added\",\"properties\":{\"product_id\":\"p%d\"}}", i);
        fold(p, 1000 + i, 1000 + i, EV_TRACK, buf);
    }
    assert_int_equal(p->ncart, PROF_CART_MAX);
    prof_free(p);
}

/* 16-bit counters near their limit halve together: the order stands, nothing wraps. */
static void test_counters_halve(void **state) {
    (void)state;
    prof *a = prof_new(), *b = prof_new();
    a->devices[PROF_DEV_DESKTOP] = 100;
    a->devices[PROF_DEV_MOBILE] = 60000;
    b->devices[PROF_DEV_DESKTOP] = 50;
    b->devices[PROF_DEV_MOBILE] = 10000;
    assert_int_equal(prof_merge(a, b), 0);
    /* Desktop adds first (150); mobile's 70,000 would not fit: all halve, then it adds. */
    assert_int_equal(a->devices[PROF_DEV_DESKTOP], 75);
    assert_int_equal(a->devices[PROF_DEV_MOBILE], 40000);
    prof_free(b);

    /* A favourite category at the limit: a purchase (weight 5) halves both, and the order holds. */
    fold(a, 1, MIN, EV_TRACK,
         "{\"event\":\"Product Viewed\",\"properties\":{\"product_id\":\"x\","
         "\"category\":\"Shoes\"}}");
    fold(a, 2, 2 * MIN, EV_TRACK,
         "{\"event\":\"Product Viewed\",\"properties\":{\"product_id\":\"y\","
         "\"category\":\"Hats\"}}");
    size_t shoes = PROF_FAVOURITES, hats = PROF_FAVOURITES;
    for (size_t i = 0; i < PROF_FAVOURITES; i++) {
        if (a->categories.name[i] == strpool_find(names(), "Shoes")) shoes = i;
        if (a->categories.name[i] == strpool_find(names(), "Hats")) hats = i;
    }
    assert_true(shoes < PROF_FAVOURITES && hats < PROF_FAVOURITES);
    a->categories.weight[shoes] = UINT16_MAX - 1;
    a->categories.weight[hats] = 1000;
    fold(a, 3, 3 * MIN, EV_TRACK,
         "{\"event\":\"Order Completed\",\"properties\":{\"order_id\":\"o\","
         "\"products\":[{\"product_id\":\"x\",\"category\":\"Shoes\"}]}}");
    assert_int_equal(a->categories.weight[shoes], (UINT16_MAX - 1) / 2 + 5);
    assert_int_equal(a->categories.weight[hats], 500);
    json_t *c = computed(a);
    json_t *cats = json_object_get(c, "favourite_categories");
    assert_string_equal(json_string_value(json_array_get(cats, 0)), "Shoes");
    assert_string_equal(json_string_value(json_array_get(cats, 1)), "Hats");
    assert_string_equal(json_string_value(json_object_get(c, "preferred_device")), "mobile");
    json_decref(c);
    prof_free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cart_and_order),
        cmocka_unit_test(test_sessions_channels_devices),
        cmocka_unit_test(test_event_channel_device),
        cmocka_unit_test(test_traits_last_write_wins_by_time),
        cmocka_unit_test(test_merge_equals_fold),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_counters_halve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
