/* c360_bench — the Customer 360 engine at scale, in process: identity resolution and profile
 * folding throughput, memory per profile, and profile lookup latency.
 *
 *   build/bench_c360 [PROFILES] [EVENTS_PER_PROFILE]      (defaults 1000000 and 10)
 *
 * Synthetic shoppers, generated here (fixed seed), over a catalogue of 1,000 products learned from
 * the events (so the catalogue's memory stays out of the per-profile figure): each has an
 * anonymousId, browses (page, Product
 * Viewed), adds to the cart, signs up once with a userId and an email (identify), 30% order, and a
 * fifth of them come back on a second device (a second anonymousId that merges at login). Events
 * are interleaved across shoppers as live traffic is. They go through eng_apply() — the same call
 * the committer makes after each fsync — in groups of 1,000, so the figures are the engine's own
 * cost, without HTTP or the store (docs/benchmarks.md has both).
 *
 * Prints one JSON line: events/s applied, RSS per profile beyond the timeline (8 bytes an event,
 * which belongs to the events), lookup latency percentiles over 100,000 random lookups by
 * user_id, email and anonymous_id (each answering the whole profile as JSON), and the engine's own
 * accounting per profile: identity graph, profile, recommendation history and models. */
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_rand.h"
#include "c360/engine.h"
#include "util/clock.h"
#include "util/log.h"

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The k-th event of shopper i. */
static void make_event(ev_event *e, int64_t i, int k, int per, int64_t ts) {
    char anon[32], user[32], email[48], prod[32];
    snprintf(anon, sizeof anon, "anon-%" PRId64 "%s", i, k > per / 2 && i % 5 == 0 ? "-b" : "");
    snprintf(user, sizeof user, "user-%" PRId64, i);
    snprintf(email, sizeof email, "shopper%" PRId64 "@example.org", i);
    snprintf(prod, sizeof prod, "p-%" PRIu64, next_rand() % 1000);
    memset(e, 0, sizeof *e);
    e->timestamp_ms = e->received_ms = ts;
    const char *name = NULL;
    if (k == 0) {
        e->type = EV_PAGE;
        e->json = json_pack("{s:s, s:s, s:{s:s}}", "type", "page", "anonymousId", anon, "context",
                            "userAgent", "Mozilla/5.0 (iPhone) Mobile");
    } else if (k == per / 2 || k == per - 2) {
        /* Sign-up, and a second login later (from the second device for some). */
        e->type = EV_IDENTIFY;
        e->json = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "type", "identify", "anonymousId",
                            anon, "userId", user, "traits", "email", email, "name", "Shopper");
    } else if (k == per - 1 && i % 10 < 3) {
        e->type = EV_TRACK;
        name = "Order Completed";
        e->json = json_pack("{s:s, s:s, s:s, s:{s:s, s:f, s:s, s:[{s:s, s:f, s:i}]}}", "type",
                            "track", "userId", user, "event", name, "properties", "order_id", anon,
                            "revenue", 49.5, "currency", "EUR", "products", "product_id", prod,
                            "price", 49.5, "quantity", 1);
    } else {
        e->type = EV_TRACK;
        name = k % 3 == 0 ? "Product Added" : "Product Viewed";
        e->json =
            json_pack("{s:s, s:s, s:s, s:{s:s, s:f, s:s, s:s}}", "type", "track", "anonymousId",
                      anon, "event", name, "properties", "product_id", prod, "price", 19.99,
                      "category", k % 2 ? "Shoes" : "Shirts", "brand", "Acme");
    }
    if (name) {
        ev_error err;
        cm_parse(json_object_get(e->json, "properties"), cm_kind_lookup(name), &e->commerce, &err);
    }
}

int main(int argc, char **argv) {
    int64_t profiles = argc > 1 ? atoll(argv[1]) : 1000000;
    int per = argc > 2 ? atoi(argv[2]) : 10;
    if (profiles < 1 || per < 4) {
        fprintf(stderr, "usage: bench_c360 [PROFILES >= 1] [EVENTS_PER_PROFILE >= 4]\n");
        return 2;
    }
    log_set_level(LOG_WARN);
    char dir[] = "/tmp/engaged-c360-bench-XXXXXX", err[256];
    if (!mkdtemp(dir)) return 1;
    store *s = store_open(dir, err, sizeof err);
    engine *e = s ? eng_open(s, &(eng_opts){0}, err, sizeof err) : NULL;
    if (!e) {
        fprintf(stderr, "bench_c360: %s\n", err);
        return 1;
    }
    long rss0 = rss_kb();

    /* Live traffic interleaves shoppers: shoppers arrive in waves of 10,000, each wave's events
     * going round robin. */
    enum { GROUP = 1000, WAVE = 10000 };
    ev_event *batch = calloc(GROUP, sizeof *batch);
    int64_t seq = 0, ts = 1767225600000; /* 2026-01-01 */
    uint64_t apply_ns = 0;
    size_t nb = 0;
    for (int64_t w0 = 0; w0 < profiles; w0 += WAVE) {
        int64_t w1 = w0 + WAVE < profiles ? w0 + WAVE : profiles;
        for (int k = 0; k < per; k++) {
            for (int64_t i = w0; i < w1; i++) {
                make_event(&batch[nb], i, k, per, ts += 7);
                batch[nb].seq = ++seq;
                if (++nb == GROUP) {
                    uint64_t t0 = clock_mono_ns();
                    eng_apply(e, batch, nb);
                    apply_ns += clock_mono_ns() - t0;
                    for (size_t j = 0; j < nb; j++)
                        ev_event_free(&batch[j]);
                    nb = 0;
                }
            }
        }
    }
    if (nb) {
        uint64_t t0 = clock_mono_ns();
        eng_apply(e, batch, nb);
        apply_ns += clock_mono_ns() - t0;
        for (size_t j = 0; j < nb; j++)
            ev_event_free(&batch[j]);
    }
    free(batch);
    /* The events' own JSON was freed as it went; with glibc's malloc (-Dallocator=system), give
     * those pages back so RSS is the state's. jemalloc returns them by itself over its decay time:
     * what it still holds is counted, so the figure errs high. */
    malloc_trim(0);
    long rss1 = rss_kb();
    eng_stats st;
    eng_get_stats(e, &st, true);

    /* Lookups: random shoppers, by each kind of identifier. */
    enum { LOOKUPS = 100000 };
    uint64_t *lat = malloc(LOOKUPS * sizeof *lat);
    static const char *const kinds[] = {"user_id", "email", "anonymous_id"};
    size_t found = 0;
    for (int n = 0; n < LOOKUPS; n++) {
        int64_t i = (int64_t)(next_rand() % (uint64_t)profiles);
        char v[64];
        int kind = n % 3;
        if (kind == 0) snprintf(v, sizeof v, "user-%" PRId64, i);
        if (kind == 1) snprintf(v, sizeof v, "shopper%" PRId64 "@example.org", i);
        if (kind == 2) snprintf(v, sizeof v, "anon-%" PRId64, i);
        eng_error le;
        uint64_t t0 = clock_mono_ns();
        json_t *p = eng_profile_lookup(e, kinds[kind], v, ts, &le);
        char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
        lat[n] = clock_mono_ns() - t0;
        found += p != NULL;
        free(text);
        json_decref(p);
    }
    qsort(lat, LOOKUPS, sizeof *lat, cmp_u64);
    double events = (double)seq;
    double per_profile = ((double)(rss1 - rss0) * 1024 - events * 8) / (double)st.profiles;
    printf("{\"shoppers\":%" PRId64 ",\"profiles\":%zu,\"events\":%" PRId64
           ",\"identities\":%zu,\"refused_links\":%zu,\"apply_events_per_s\":%.0f,"
           "\"rss_mib\":%.1f,\"rss_per_profile_beyond_timeline_bytes\":%.0f,"
           "\"lookup_found\":%zu,\"lookup_p50_us\":%.1f,\"lookup_p99_us\":%.1f,"
           "\"lookup_p999_us\":%.1f,\"graph_bytes_per_profile\":%.0f,"
           "\"profile_bytes_per_profile\":%.0f,\"reco_history_bytes_per_profile\":%.0f,"
           "\"reco_models_bytes_per_profile\":%.0f}\n",
           profiles, st.profiles, seq, st.identities, st.refused_links,
           events / ((double)apply_ns / 1e9), (double)(rss1 - rss0) / 1024, per_profile, found,
           (double)lat[LOOKUPS / 2] / 1e3, (double)lat[LOOKUPS * 99 / 100] / 1e3,
           (double)lat[LOOKUPS * 999 / 1000] / 1e3, (double)st.graph_bytes / (double)st.profiles,
           (double)st.profile_bytes / (double)st.profiles,
           (double)st.reco_history_bytes / (double)st.profiles,
           (double)(st.reco_session_bytes + st.reco_cooc_bytes + st.reco_coview_bytes +
                    st.reco_pop_bytes) /
               (double)st.profiles);
    free(lat);
    eng_close(e);
    store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
