/* engaged demo — load a small demo shop into the data directory (the first time), then serve it.
 *
 * The shoppers are simulated: anonymous visitors browse a fixed catalogue, some add to cart, some
 * sign up and order, over the last 14 days, from a fixed seed so every run tells the same story.
 * The events go through ev_normalize() and the committer like any others. Later subsystems
 * (profiles, recommendations, journeys) grow this command: it is how a newcomer sees engaged work.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "store/commit.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/config.h"
#include "util/timefmt.h"

#define DEMO_SHOPPERS 300
#define DEMO_DAY_MS (24 * 3600 * 1000LL)

static const struct demo_product {
    const char *id, *name, *category, *brand;
    double price;
} catalogue[] = {
    {"p-1001", "Trail Runner 2", "Shoes", "Nordpeak", 119.00},
    {"p-1002", "City Sneaker", "Shoes", "Urbanist", 89.00},
    {"p-1003", "Merino Running Socks", "Accessories", "Nordpeak", 14.50},
    {"p-1004", "Rain Shell Jacket", "Jackets", "Nordpeak", 179.00},
    {"p-1005", "Down Parka", "Jackets", "Polarline", 259.00},
    {"p-1006", "Fleece Midlayer", "Jackets", "Polarline", 69.00},
    {"p-1007", "Trail Backpack 22L", "Bags", "Nordpeak", 95.00},
    {"p-1008", "Commuter Tote", "Bags", "Urbanist", 59.00},
    {"p-1009", "Water Bottle 750ml", "Accessories", "Hydra", 19.00},
    {"p-1010", "Running Cap", "Accessories", "Urbanist", 24.00},
    {"p-1011", "Hiking Boot Pro", "Shoes", "Polarline", 189.00},
    {"p-1012", "Base Layer Top", "Apparel", "Nordpeak", 49.00},
    {"p-1013", "Trail Shorts", "Apparel", "Nordpeak", 39.00},
    {"p-1014", "Yoga Leggings", "Apparel", "Urbanist", 54.00},
    {"p-1015", "Headlamp 400", "Accessories", "Lumen", 34.90},
    {"p-1016", "Insulated Gloves", "Accessories", "Polarline", 29.00},
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
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->events = realloc(s->events, s->cap * sizeof *s->events);
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

static int seed(store *s, const cfg *c) {
    if (store_count_events(s) > 0) return 0; /* seeded before: keep what is there */
    char err[512];
    commit_opts co = {.dedup_window_ms = (int64_t)(c->dedup_hours * 3600 * 1000)};
    demo_sink sink = {.now = clock_now_ms()};
    sink.commit = commit_start(s, &co, err, sizeof err);
    if (!sink.commit) {
        fprintf(stderr, "engaged demo: %s\n", err);
        return -1;
    }
    for (int i = 0; i < DEMO_SHOPPERS; i++)
        simulate_shopper(&sink, i);
    commit_req req = {.events = sink.events, .nevents = sink.n};
    int rc = commit_submit_wait(sink.commit, &req);
    commit_stop(sink.commit);
    fprintf(stderr, "demo: %zu events from %d simulated shoppers stored (%zu refused)\n",
            req.stored, DEMO_SHOPPERS, sink.failed);
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
        "Metrics: curl -H 'Authorization: Bearer %s' http://127.0.0.1:%d/metrics\n"
        "Stop with Ctrl-C.\n\n",
        port, c->data, wk, wk, port, ak, ak, port, ak, port, ak, port, ak, port);
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
    char err[512];
    store *s = store_open(c.data, err, sizeof err);
    if (!s) {
        fprintf(stderr, "engaged demo: %s\n", err);
        return 2;
    }
    int rc = seed(s, &c);
    store_close(s);
    if (rc) return 2;
    return cli_serve(&c, print_welcome);
}
