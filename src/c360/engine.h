/* engine — Customer 360: the state every decision reads, applied from the log in order.
 *
 * The engine owns the identity graph (idgraph.h), one profile per customer (prof.h) with its
 * consent ledger (consent.h), the catalogue (catalog.h) and the offers (offers.h). It changes only
 * by applying log records, in log order:
 *   - customer events, after the committer made them durable (eng_apply is the commit hook), so a
 *     client that got its 200 reads a profile that already holds its event;
 *   - commands (catalogue and offer changes, consent records, unmerges, erasures): an HTTP handler
 *     asks the engine to prepare one (eng_prepare: validated against the current state, nothing
 *     changed), logs the record it returns through the same committer, and replies with the
 *     outcome the engine set on the event when it applied it.
 * At start, eng_open() replays the whole log through the same code, so the state after a crash is
 * the state every acknowledged request saw.
 *
 * Profile ids are "p_<seq>": the log position of the record that created the customer, so replay
 * gives every customer the same id. A customer merged into an older one keeps answering at its old
 * id (the reply carries the surviving id).
 *
 * Threads: one writer (the committer's syncer thread, through eng_apply) and any number of readers
 * (HTTP threads), under a readers-writer lock taken by each call here. The domain modules below do
 * no locking of their own. */
#ifndef ENGAGED_ENGINE_H
#define ENGAGED_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest/ev.h"
#include "store/store.h"
#include "util/buf.h"

typedef struct engine engine;

typedef struct eng_opts {
    const char *default_country; /* ISO 3166 alpha-2 for national phone numbers; NULL: none */
} eng_opts;

/* Builds the engine by replaying the log in s (and finishing any erasure a crash interrupted, on
 * the store's writer: call before the committer starts). NULL with a reason in err. */
engine *eng_open(store *s, const eng_opts *opts, char *err, size_t errlen);
void eng_close(engine *e);

/* The commit hook (commit_opts.apply): applies stored events and commands in log order. */
void eng_apply(void *engine, ev_event *events, size_t n);

/* ---- Reading (each takes the read lock) ---- */

/* An error from a read or a prepare: the HTTP status and the API error. */
typedef struct eng_error {
    int status;
    ev_error ev;
} eng_error;

/* The profile with id (following merges): {"id", "identities", "traits", "computed", "consent",
 * "links", "merges", "refused_links"}; NULL with err (404 not_found) when there is none. */
json_t *eng_profile(engine *e, const char *id, int64_t now_ms, eng_error *err);
/* The profile holding identifier `value` of type `type` ("user_id", "anonymous_id", "email",
 * "phone", or any identity type), normalised as events are. */
json_t *eng_profile_lookup(engine *e, const char *type, const char *value, int64_t now_ms,
                           eng_error *err);
/* Up to max seqs of the profile's events after `after`, oldest first; *n how many, *more whether
 * more follow. Returns 0 or -1 (err: 404). */
int eng_profile_seqs(engine *e, const char *id, int64_t after, int64_t *out, size_t max, size_t *n,
                     bool *more, eng_error *err);
/* Everything held on the person except the events (the caller appends those): profile, identities,
 * links, merges, consent history, offers. */
json_t *eng_profile_export(engine *e, const char *id, int64_t now_ms, eng_error *err);

/* Whether product_id may be shown to and bought by the profile (NULL: an anonymous viewer), with a
 * reason: {"product_id", "available", "reason"}. */
json_t *eng_product_available(engine *e, const char *product_id, const char *profile_id,
                              const char *market, int64_t now_ms, eng_error *err);
json_t *eng_product(engine *e, const char *product_id, eng_error *err);
json_t *eng_products(engine *e, const char *cursor, size_t limit, eng_error *err);

/* ---- Commands ---- */

/* Prepares a command from an HTTP request. op is one of the table in engine.c ("profile.erase",
 * "profile.unmerge", "profile.consent", "catalog.upsert", "catalog.patch", "offer.put", ...); args
 * holds the path parameters and body. Returns 1 with *record (to log; new reference), 0 with
 * *reply (the answer needs no change: e.g. validating a code), or -1 with *err. */
int eng_prepare(engine *e, const char *op, const json_t *args, int64_t now_ms, json_t **record,
                json_t **reply, eng_error *err);

/* GET /v1/recommendations: args holds the query parameters as strings (reco.h and
 * docs/recommendations.md list them). Appends the answer's JSON to out and returns 0, or returns -1
 * with *err (400 naming the parameter, 404 for an unknown profile or product). Read lock only;
 * cost: the strategies' candidate pools and one availability check per candidate. */
int eng_recommend(engine *e, const json_t *args, int64_t now_ms, buf *out, eng_error *err);

/* A catalogue upsert record for products (a JSON array), prepared without an engine: what
 * `engaged import --products` logs for the server to apply when it replays the log. Returns 0
 * with *record (new reference), or -1 with *err naming the product and field. */
int eng_catalog_record(const json_t *products, int64_t now_ms, json_t **record, eng_error *err);

/* ---- Figures for /metrics and the benchmarks ---- */

/* What answers of GET /v1/recommendations led to: events carrying their recommendation_id. */
enum { RECO_ATTR_CLICKS, RECO_ATTR_CARTS, RECO_ATTR_ORDERS, RECO_ATTR_N };

typedef struct eng_stats {
    size_t profiles, identities, refused_links, products, offers;
    size_t events_applied, unattributed;
    size_t graph_bytes, profile_bytes;
    /* The recommendation models (reco.h), O(1) to read. */
    size_t reco_session_bytes, reco_cooc_bytes, reco_coview_bytes, reco_pop_bytes,
        reco_history_bytes, reco_sessions;
    size_t attributed[RECO_ATTR_N];
    double attributed_revenue;
} eng_stats;
/* The counts are O(1); with_bytes also sums the memory of every profile, O(profiles) under the
 * read lock (for the benchmarks, not for every /metrics scrape). */
void eng_get_stats(engine *e, eng_stats *out, bool with_bytes);

#endif
