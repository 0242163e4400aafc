/* metrics — counters for /metrics, in the Prometheus text exposition format.
 *
 * Counters are atomics in fixed tables (route x status class), so counting costs one relaxed atomic
 * add on the request path and nothing is allocated. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "c360/engine.h"
#include "http/http.h"
#include "util/histo.h"

#define MAX_ROUTES 128

/* 0 is a request that got no answer: the client went away first. */
static const int statuses[] = {200, 201, 204, 400, 401, 403, 404, 405,
                               409, 413, 415, 429, 500, 503, 0};
#define NSTATUS (sizeof statuses / sizeof statuses[0])

/* The last row counts requests that matched no route; the last column, any other status. */
static _Atomic uint64_t requests[MAX_ROUTES + 1][NSTATUS + 1];
static histo durations[MAX_ROUTES + 1];

static const char *const reject_codes[] = {"missing_field", "invalid_field", "event_too_large",
                                           "too_deep", "other"};
#define NREJECT (sizeof reject_codes / sizeof reject_codes[0])
static _Atomic uint64_t events_accepted, events_duplicate, events_rejected[NREJECT];

void metrics_count_request(int route_index, int status, uint64_t duration_us) {
    size_t row = route_index >= 0 && route_index < MAX_ROUTES ? (size_t)route_index : MAX_ROUTES;
    size_t col = 0;
    while (col < NSTATUS && statuses[col] != status)
        col++;
    atomic_fetch_add_explicit(&requests[row][col], 1, memory_order_relaxed);
    histo_observe_us(&durations[row], duration_us);
}

void metrics_count_events(size_t accepted, size_t duplicates, const char *const *codes,
                          size_t nrejected) {
    if (accepted) atomic_fetch_add_explicit(&events_accepted, accepted, memory_order_relaxed);
    if (duplicates) atomic_fetch_add_explicit(&events_duplicate, duplicates, memory_order_relaxed);
    for (size_t i = 0; i < nrejected; i++) {
        size_t k = 0;
        while (k < NREJECT - 1 && strcmp(reject_codes[k], codes[i]) != 0)
            k++;
        atomic_fetch_add_explicit(&events_rejected[k], 1, memory_order_relaxed);
    }
}

static const char *route_label(size_t row) {
    return row < http_nroutes ? http_routes[row].name : "unmatched";
}

void metrics_handler(http_req *r) {
    buf b = BUF_INIT(0);
    buf_puts(&b, "# HELP engaged_http_requests_total HTTP requests by route and status.\n"
                 "# TYPE engaged_http_requests_total counter\n");
    for (size_t row = 0; row <= MAX_ROUTES; row++) {
        if (row >= http_nroutes && row != MAX_ROUTES) continue;
        for (size_t col = 0; col <= NSTATUS; col++) {
            uint64_t v = atomic_load_explicit(&requests[row][col], memory_order_relaxed);
            if (!v) continue;
            char status[16];
            if (col == NSTATUS)
                snprintf(status, sizeof status, "other");
            else if (statuses[col] == 0)
                snprintf(status, sizeof status, "unanswered");
            else
                snprintf(status, sizeof status, "%d", statuses[col]);
            buf_printf(&b, "engaged_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                       route_label(row), status, (unsigned long long)v);
        }
    }
    buf_puts(&b, "# HELP engaged_http_request_duration_seconds Time from request headers to "
                 "completion.\n# TYPE engaged_http_request_duration_seconds histogram\n");
    for (size_t row = 0; row <= MAX_ROUTES; row++) {
        if ((row >= http_nroutes && row != MAX_ROUTES) || !atomic_load(&durations[row].count))
            continue;
        char labels[96];
        snprintf(labels, sizeof labels, "route=\"%s\"", route_label(row));
        histo_render(&durations[row], "engaged_http_request_duration_seconds", labels, &b);
    }
    buf_printf(&b,
               "# HELP engaged_events_accepted_total Events stored.\n"
               "# TYPE engaged_events_accepted_total counter\n"
               "engaged_events_accepted_total %llu\n"
               "# HELP engaged_events_duplicate_total Events acknowledged but not stored again "
               "(messageId already stored).\n"
               "# TYPE engaged_events_duplicate_total counter\n"
               "engaged_events_duplicate_total %llu\n"
               "# HELP engaged_events_rejected_total Events refused, by reason.\n"
               "# TYPE engaged_events_rejected_total counter\n",
               (unsigned long long)atomic_load(&events_accepted),
               (unsigned long long)atomic_load(&events_duplicate));
    for (size_t k = 0; k < NREJECT; k++)
        buf_printf(&b, "engaged_events_rejected_total{code=\"%s\"} %llu\n", reject_codes[k],
                   (unsigned long long)atomic_load(&events_rejected[k]));

    const commit_stats *cs = http_commit_stats(r);
    buf_printf(&b,
               "# HELP engaged_commit_queue_events Events waiting for the next commit.\n"
               "# TYPE engaged_commit_queue_events gauge\n"
               "engaged_commit_queue_events %llu\n"
               "# HELP engaged_commits_total Groups of events committed to the log.\n"
               "# TYPE engaged_commits_total counter\n"
               "engaged_commits_total %llu\n"
               "# HELP engaged_commit_failures_total Groups that failed, nothing of them stored.\n"
               "# TYPE engaged_commit_failures_total counter\n"
               "engaged_commit_failures_total %llu\n"
               "# HELP engaged_dedup_ids messageIds remembered for deduplication.\n"
               "# TYPE engaged_dedup_ids gauge\n"
               "engaged_dedup_ids %llu\n",
               (unsigned long long)atomic_load(&cs->queued_events),
               (unsigned long long)atomic_load(&cs->commits),
               (unsigned long long)atomic_load(&cs->failures),
               (unsigned long long)atomic_load(&cs->dedup_ids));
    buf_printf(&b,
               "# HELP engaged_syncs_total fdatasyncs of the event log (one per group).\n"
               "# TYPE engaged_syncs_total counter\nengaged_syncs_total %llu\n",
               (unsigned long long)atomic_load(&cs->syncs));
    eng_stats es;
    eng_get_stats(http_engine(r), &es, false);
    const struct {
        const char *name, *type, *help;
        size_t value;
    } engine_figures[] = {
        {"engaged_profiles", "gauge", "Customers (live profiles).", es.profiles},
        {"engaged_identities", "gauge", "Identifiers in the identity graph.", es.identities},
        {"engaged_refused_links_total", "counter",
         "Links refused by a per-type limit or an unmerge.", es.refused_links},
        {"engaged_events_applied_total", "counter", "Events applied to profiles.",
         es.events_applied},
        {"engaged_events_unattributed_total", "counter",
         "Events whose identifiers were all placeholders (no profile).", es.unattributed},
        {"engaged_products", "gauge", "Products in the catalogue.", es.products},
        {"engaged_reco_sessions", "gauge", "Browsing sessions the session model holds.",
         es.reco_sessions},
        {"engaged_reco_session_model_bytes", "gauge",
         "Heap bytes of the session model (sessions, inverted index).", es.reco_session_bytes},
        {"engaged_reco_bought_together_bytes", "gauge", "Heap bytes of the bought-together model.",
         es.reco_cooc_bytes},
        {"engaged_reco_viewed_together_bytes", "gauge", "Heap bytes of the viewed-together model.",
         es.reco_coview_bytes},
        {"engaged_reco_popularity_bytes", "gauge", "Heap bytes of the popularity leaderboards.",
         es.reco_pop_bytes},
        {"engaged_reco_history_bytes", "gauge",
         "Heap bytes of the per-customer interaction histories.", es.reco_history_bytes},
        {"engaged_reco_attributed_clicks_total", "counter",
         "Product clicks and views carrying a recommendation_id.", es.attributed[RECO_ATTR_CLICKS]},
        {"engaged_reco_attributed_carts_total", "counter",
         "Cart additions carrying a recommendation_id.", es.attributed[RECO_ATTR_CARTS]},
        {"engaged_reco_attributed_orders_total", "counter",
         "Orders naming a recommendation_id (on the order or a line).",
         es.attributed[RECO_ATTR_ORDERS]},
    };
    for (size_t i = 0; i < sizeof engine_figures / sizeof *engine_figures; i++)
        buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %zu\n", engine_figures[i].name,
                   engine_figures[i].help, engine_figures[i].name, engine_figures[i].type,
                   engine_figures[i].name, engine_figures[i].value);
    buf_printf(&b,
               "# HELP engaged_reco_attributed_revenue_total Revenue of orders attributed to "
               "recommendations (the order's, or its attributed lines').\n"
               "# TYPE engaged_reco_attributed_revenue_total counter\n"
               "engaged_reco_attributed_revenue_total %.2f\n",
               es.attributed_revenue);
    const struct {
        const char *name, *help;
        const histo *h;
    } histos[] = {
        {"engaged_sync_duration_seconds", "One group's fdatasync of the event log.",
         &cs->sync_latency},
        {"engaged_commit_duration_seconds",
         "One group's records built and written (before its sync).", &cs->latency},
        {"engaged_commit_wait_seconds", "A request's wait from submission to durable and applied.",
         &cs->group_wait},
    };
    for (size_t i = 0; i < sizeof histos / sizeof histos[0]; i++) {
        buf_printf(&b, "# HELP %s %s\n# TYPE %s histogram\n", histos[i].name, histos[i].help,
                   histos[i].name);
        histo_render(histos[i].h, histos[i].name, "", &b);
    }
    size_t len;
    char *p = buf_detach(&b, &len);
    http_reply_take(r, 200, "text/plain; version=0.0.4", p, len);
}
