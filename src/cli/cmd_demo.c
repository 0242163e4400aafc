/* engaged demo — load a small demo shop into the data directory (the first time), then serve it
 * with its storefront.
 *
 * The shop is a catalogue of 24 products with stock, and shoppers who are simulated: anonymous
 * visitors browse it, some add to cart, some sign up and order, over the last 14 days, from a fixed
 * seed so every run tells the same story. The catalogue is logged first, as `engaged import
 * --products` would log it, and the events go through ev_normalize() and the committer like any
 * others. Then the server runs in demo mode (http/static.h): it serves the storefront at /demo/,
 * which browses this catalogue through /sdk/engaged.js like a real shop's pages would. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c360/engine.h"
#include "cli/cli.h"
#include "http/static.h"
#include "store/commit.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/config.h"
#include "util/hash.h"
#include "util/jsonw.h"
#include "util/timefmt.h"

#define DEMO_SHOPPERS 300
#define DEMO_DAY_MS (24 * 3600 * 1000LL)
/* What `engaged demo` uses when no key or secret is given: a demo is for trying, on loopback. */
#define DEMO_WRITE_KEY "wk_demo"
#define DEMO_SIGNING_SECRET "demo-signing-secret"

/* The catalogue. Images are the storefront's own drawings, one per kind of product (web/demo/); the
 * Packable Windbreaker starts sold out, so it is never recommended. */
static const struct demo_product {
    const char *id, *name, *category, *brand, *image;
    double price;
    int stock;
} catalogue[] = {
    {"p-1001", "Trail Runner 2", "Shoes", "Nordpeak", "shoes", 119.00, 24},
    {"p-1002", "City Sneaker", "Shoes", "Urbanist", "shoes", 89.00, 31},
    {"p-1003", "Merino Running Socks", "Accessories", "Nordpeak", "socks", 14.50, 120},
    {"p-1004", "Rain Shell Jacket", "Jackets", "Nordpeak", "jacket", 179.00, 12},
    {"p-1005", "Down Parka", "Jackets", "Polarline", "jacket", 259.00, 7},
    {"p-1006", "Fleece Midlayer", "Jackets", "Polarline", "jacket", 69.00, 40},
    {"p-1007", "Trail Backpack 22L", "Bags", "Nordpeak", "bag", 95.00, 15},
    {"p-1008", "Commuter Tote", "Bags", "Urbanist", "bag", 59.00, 22},
    {"p-1009", "Water Bottle 750ml", "Accessories", "Hydra", "bottle", 19.00, 80},
    {"p-1010", "Running Cap", "Accessories", "Urbanist", "cap", 24.00, 35},
    {"p-1011", "Hiking Boot Pro", "Shoes", "Polarline", "shoes", 189.00, 9},
    {"p-1012", "Base Layer Top", "Apparel", "Nordpeak", "shirt", 49.00, 44},
    {"p-1013", "Trail Shorts", "Apparel", "Nordpeak", "shirt", 39.00, 38},
    {"p-1014", "Yoga Leggings", "Apparel", "Urbanist", "shirt", 54.00, 27},
    {"p-1015", "Headlamp 400", "Accessories", "Lumen", "lamp", 34.90, 50},
    {"p-1016", "Insulated Gloves", "Accessories", "Polarline", "cap", 29.00, 33},
    {"p-1017", "Trail Runner GTX", "Shoes", "Nordpeak", "shoes", 149.00, 11},
    {"p-1018", "Approach Shoe", "Shoes", "Polarline", "shoes", 139.00, 8},
    {"p-1019", "Softshell Jacket", "Jackets", "Urbanist", "jacket", 129.00, 14},
    {"p-1020", "Hip Pack", "Bags", "Hydra", "bag", 29.00, 60},
    {"p-1021", "Rolltop Daypack 18L", "Bags", "Urbanist", "bag", 79.00, 18},
    {"p-1022", "Wool Beanie", "Accessories", "Polarline", "cap", 22.00, 45},
    {"p-1023", "Running Tights", "Apparel", "Nordpeak", "shirt", 59.00, 26},
    {"p-1024", "Packable Windbreaker", "Jackets", "Nordpeak", "jacket", 89.00, 0},
};
#define NPRODUCTS (sizeof catalogue / sizeof catalogue[0])

/* xorshift64*: a fixed, portable sequence. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 33) % n;
}

static json_t *product_json(const struct demo_product *p, int quantity) {
    return json_pack("{s:s, s:s, s:s, s:s, s:f, s:i, s:s}", "product_id", p->id, "name", p->name,
                     "category", p->category, "brand", p->brand, "price", p->price, "quantity",
                     quantity, "currency", "EUR");
}

typedef struct demo_sink {
    commit *commit;
    ev_event *events;
    size_t n, cap, failed;
    int64_t now;
} demo_sink;

/* Normalises ev (taking it) and queues it. */
static void emit(demo_sink *s, json_t *ev, int64_t ts) {
    char t[TF_LEN];
    json_object_set_new(ev, "timestamp", json_string(tf_format(ts, t)));
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        ev_event *grown = realloc(s->events, cap * sizeof *s->events);
        if (!grown) {
            s->failed++;
            json_decref(ev);
            return;
        }
        s->events = grown;
        s->cap = cap;
    }
    ev_envelope env = {.received_ms = s->now};
    ev_error err;
    if (ev_normalize(ev, EV_NTYPES, &env, &s->events[s->n], &err) == 0)
        s->n++;
    else
        s->failed++;
    json_decref(ev);
}

static void simulate_shopper(demo_sink *s, int i) {
    char anon[40], user[40], email[64];
    snprintf(anon, sizeof anon, "demo-anon-%04d", i);
    snprintf(user, sizeof user, "demo-user-%04d", i);
    snprintf(email, sizeof email, "shopper%04d@example.com", i);
    int64_t t = s->now - (int64_t)rnd(14) * DEMO_DAY_MS - (int64_t)rnd(86400) * 1000;
    const struct demo_product *seen[8];
    int nseen = 0;
    emit(s,
         json_pack("{s:s, s:s, s:s, s:{s:s}}", "type", "page", "anonymousId", anon, "name", "Home",
                   "properties", "path", "/"),
         t);
    int views = 1 + (int)rnd(6);
    const struct demo_product *first = &catalogue[rnd(NPRODUCTS)];
    for (int v = 0; v < views && nseen < 8; v++) {
        /* Shoppers browse within a category more often than across. */
        const struct demo_product *p = &catalogue[rnd(NPRODUCTS)];
        if (rnd(3) && strcmp(p->category, first->category)) {
            size_t start = rnd(NPRODUCTS);
            for (size_t k = 0; k < NPRODUCTS; k++) {
                const struct demo_product *q = &catalogue[(start + k) % NPRODUCTS];
                if (!strcmp(q->category, first->category)) {
                    p = q;
                    break;
                }
            }
        }
        t += 20000 + rnd(90000);
        emit(s,
             json_pack("{s:s, s:s, s:s, s:o}", "type", "track", "anonymousId", anon, "event",
                       "Product Viewed", "properties", product_json(p, 1)),
             t);
        seen[nseen++] = p;
    }
    if (rnd(100) >= 45) return; /* most visits end without a cart */
    const struct demo_product *p = seen[rnd((uint32_t)nseen)];
    t += 30000;
    emit(s,
         json_pack("{s:s, s:s, s:s, s:o}", "type", "track", "anonymousId", anon, "event",
                   "Product Added", "properties", product_json(p, 1)),
         t);
    if (rnd(100) >= 55) return; /* an abandoned cart: what later journeys act on */
    t += 60000;
    emit(s,
         json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s}}", "type", "identify", "anonymousId", anon,
                   "userId", user, "traits", "email", email, "first_name", "Demo", "country",
                   rnd(2) ? "DE" : "NL"),
         t);
    t += 120000;
    char order[32];
    snprintf(order, sizeof order, "demo-order-%04d", i);
    json_t *products = json_array();
    json_array_append_new(products, product_json(p, 1));
    emit(s,
         json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:f, s:f, s:s, s:o}}", "type", "track",
                   "anonymousId", anon, "userId", user, "event", "Order Completed", "properties",
                   "order_id", order, "total", p->price + 4.95, "revenue", p->price, "currency",
                   "EUR", "products", products),
         t);
}

/* The catalogue as the feed would send it (docs/catalog.md). */
static json_t *catalogue_json(void) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < NPRODUCTS; i++) {
        const struct demo_product *p = &catalogue[i];
        char url[64], image[64];
        snprintf(url, sizeof url, "/demo/product.html?id=%s", p->id);
        snprintf(image, sizeof image, "/demo/img-%s.svg", p->image);
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:[s], s:f, s:s, s:i}", "id",
                                           p->id, "title", p->name, "url", url, "image_url", image,
                                           "brand", p->brand, "categories", p->category, "price",
                                           p->price, "currency", "EUR", "stock", p->stock));
    }
    return a;
}

/* Logs the catalogue as one upsert record (what `engaged import --products` logs). */
static int log_catalogue(commit *cm) {
    json_t *products = catalogue_json(), *record = NULL;
    eng_error err;
    int64_t now = clock_now_ms();
    if (!products || eng_catalog_record(products, now, &record, &err)) {
        fprintf(stderr, "engaged demo: the catalogue was refused: %s\n",
                products ? err.ev.message : "out of memory");
        json_decref(products);
        return -1;
    }
    json_decref(products);
    ev_event e = {.command = true, .json = record, .received_ms = now, .timestamp_ms = now};
    char uuid[37];
    hash_uuid4(uuid);
    snprintf(e.message_id, sizeof e.message_id, "cmd-%s", uuid);
    buf b = BUF_INIT(0);
    if (jsonw_value(&b, record)) {
        buf_free(&b);
        ev_event_free(&e);
        return -1;
    }
    e.body = buf_detach(&b, &e.body_len);
    commit_req req = {.events = &e, .nevents = 1};
    int rc = commit_submit_wait(cm, &req);
    ev_event_free(&e);
    if (!rc) fprintf(stderr, "demo: a catalogue of %zu products with stock stored\n", NPRODUCTS);
    return rc;
}

/* What an earlier demo left in the store: a catalogue upsert, and its first shopper's events. */
typedef struct seeded {
    bool catalogue, shoppers;
} seeded;

static int note_seeded(const store_row *row, void *arg) {
    static const char upsert[] = "\"op\":\"catalog.upsert\"";
    seeded *d = arg;
    if (row->type == STORE_TYPE_COMMAND &&
        memmem(row->body, row->body_len, upsert, sizeof upsert - 1))
        d->catalogue = true;
    if (row->anonymous_id && strcmp(row->anonymous_id, "demo-anon-0000") == 0) d->shoppers = true;
    return d->catalogue && d->shoppers;
}

/* A fresh data directory gets the catalogue and the shoppers. One that holds the shoppers from
 * before the catalogue existed gets the catalogue. Anything else (a second start, or a real shop's
 * store) is served as it is. */
static int seed(store *s, const cfg *c) {
    bool fresh = store_count_events(s) == 0;
    seeded d = {false, false};
    if (!fresh && store_each(s, NULL, 0, note_seeded, &d) < 0) return -1;
    bool add_catalogue = fresh || (!d.catalogue && d.shoppers);
    if (!add_catalogue && !fresh) return 0;
    char err[512];
    commit_opts co = {.dedup_window_ms = (int64_t)(c->dedup_hours * 3600 * 1000)};
    demo_sink sink = {.now = clock_now_ms()};
    sink.commit = commit_start(s, &co, err, sizeof err);
    if (!sink.commit) {
        fprintf(stderr, "engaged demo: %s\n", err);
        return -1;
    }
    /* The catalogue goes first, so the replay knows the products before the events name them. */
    int rc = add_catalogue ? log_catalogue(sink.commit) : 0;
    if (!rc && fresh) {
        for (int i = 0; i < DEMO_SHOPPERS; i++)
            simulate_shopper(&sink, i);
        commit_req req = {.events = sink.events, .nevents = sink.n};
        rc = commit_submit_wait(sink.commit, &req);
        fprintf(stderr, "demo: %zu events from %d simulated shoppers stored (%zu refused)\n",
                req.stored, DEMO_SHOPPERS, sink.failed);
    }
    commit_stop(sink.commit);
    for (size_t i = 0; i < sink.n; i++)
        ev_event_free(&sink.events[i]);
    free(sink.events);
    return rc;
}

static void print_welcome(const cfg *c, int port) {
    const char *wk = *c->write_key ? c->write_key : "YOUR_WRITE_KEY";
    const char *ak = *c->admin_key ? c->admin_key : "YOUR_ADMIN_KEY";
    printf(
        "\nengaged is running on http://127.0.0.1:%d with a demo shop (data in %s).\n\n"
        "Open the demo shop in a browser: http://127.0.0.1:%d/demo/\n"
        "  Browse as a newcomer, add to cart, log in and order: the recommendations follow you,\n"
        "  \"Your profile\" shows what engaged knows, and \"Shop admin\" sells a product out.\n"
        "  The same with the admin API:\n"
        "  curl -X PATCH -H 'Authorization: Bearer %s' -d '{\"stock\":0}' \\\n"
        "       http://127.0.0.1:%d/v1/catalog/products/p-1001\n\n"
        "Send an event (write key %s):\n"
        "  curl -u %s: -H 'Content-Type: application/json' http://127.0.0.1:%d/v1/track \\\n"
        "       -d '{\"userId\":\"u1\",\"event\":\"Product "
        "Viewed\",\"properties\":{\"product_id\":\"p-1001\",\"price\":119}}'\n"
        "Read the events back (admin key %s):\n"
        "  curl -H 'Authorization: Bearer %s' 'http://127.0.0.1:%d/v1/events?user_id=u1'\n"
        "  curl -H 'Authorization: Bearer %s' 'http://127.0.0.1:%d/v1/events?type=track&limit=5'\n"
        "Look a shopper up (one live profile from the first anonymous visit to the order):\n"
        "  curl -H 'Authorization: Bearer %s' "
        "'http://127.0.0.1:%d/v1/profiles/lookup?anonymous_id=demo-anon-0001'\n"
        "Recommendations for that shopper on a product page, each with its reason:\n"
        "  curl -H 'Authorization: Bearer %s' "
        "'http://127.0.0.1:%d/v1/recommendations?anonymous_id=demo-anon-0001&product_id=p-1001'\n"
        "Metrics: curl -H 'Authorization: Bearer %s' http://127.0.0.1:%d/metrics\n"
        "Stop with Ctrl-C.\n\n",
        port, c->data, port, ak, port, wk, wk, port, ak, ak, port, ak, port, ak, port, ak, port, ak,
        port);
    fflush(stdout);
}

int cmd_demo(int argc, char **argv) {
    cfg c;
    int rest[64], nrest;
    if (argc > 64 || cli_load_cfg(&c, argc - 1, argv + 1, rest, &nrest)) return 2;
    if (nrest) {
        fprintf(stderr, "engaged demo: unknown argument \"%s\"\n", argv[1 + rest[0]]);
        return 2;
    }
    /* The storefront's pages need a write key, and its login a secret to sign user ids with. */
    if (!*c.write_key) snprintf(c.write_key, sizeof c.write_key, "%s", DEMO_WRITE_KEY);
    if (!*c.signing_secret)
        snprintf(c.signing_secret, sizeof c.signing_secret, "%s", DEMO_SIGNING_SECRET);
    char err[512];
    store *s = store_open(c.data, err, sizeof err);
    if (!s) {
        fprintf(stderr, "engaged demo: %s\n", err);
        return 2;
    }
    int rc = seed(s, &c);
    store_close(s);
    if (rc) return 2;
    static_demo_enable();
    return cli_serve(&c, print_welcome);
}
