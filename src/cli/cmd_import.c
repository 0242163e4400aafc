/* engaged import FILE — bulk-load events (JSONL, or CSV with a header) through the same validation
 * and the same committer as the HTTP API: duplicates by messageId are skipped, every accepted event
 * is durable when the command ends, and each rejected line is reported.
 *
 *   engaged import FILE [--format auto|jsonl|csv] [--data DIR]
 *   engaged import --products FILE [--data DIR]
 * Progress goes to stderr once a second; the summary is the last line. Exit 0 when every line was
 * accepted, 1 when some were rejected, 2 when the file or the store could not be used.
 *
 * --products reads catalogue products, one JSON object a line (docs/catalog.md), checks each as
 * PUT /v1/catalog/products does, and logs them as catalogue upserts of up to IMPORT_PRODUCTS a
 * record; the server applies them when it starts (the log is replayed), exactly as if they had
 * come through the API.
 *
 * Run it while the server is stopped, or send the events to the running server instead: a running
 * server's deduplication does not see ids imported behind its back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c360/engine.h"
#include "cli/cli.h"
#include "ingest/import.h"
#include "store/commit.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/config.h"
#include "util/hash.h"
#include "util/timefmt.h"

#define IMPORT_GROUP 2000 /* events per commit request */
#define IMPORT_SHOW_REJECTED 20
#define IMPORT_PRODUCTS 1000 /* products per logged upsert record */

typedef struct import_state {
    commit *commit;
    ev_event events[IMPORT_GROUP];
    size_t n;
    size_t stored, duplicates, rejected, lines;
    bool store_failed;
} import_state;

static void flush(import_state *st) {
    if (!st->n) return;
    commit_req req = {.events = st->events, .nevents = st->n};
    if (commit_submit_wait(st->commit, &req)) st->store_failed = true;
    st->stored += req.stored;
    st->duplicates += req.duplicates;
    for (size_t i = 0; i < st->n; i++)
        ev_event_free(&st->events[i]);
    st->n = 0;
}

static void report_rejected(import_state *st, long line, const ev_error *e) {
    st->rejected++;
    if (st->rejected <= IMPORT_SHOW_REJECTED) {
        /* Reader errors already start "line N: "; validation errors do not. */
        if (strncmp(e->message, "line ", 5) == 0)
            fprintf(stderr, "  rejected %s (%s)\n", e->message, e->code);
        else
            fprintf(stderr, "  rejected line %ld: %s (%s)\n", line, e->message, e->code);
    }
}

/* ---- Products ---- */

/* Logs the batch of normalised products as one catalogue upsert record. */
static void flush_products(import_state *st, json_t *batch, json_t *ids) {
    if (!json_array_size(batch)) return;
    json_t *record =
        json_pack("{s:s, s:O, s:s}", "op", "catalog.upsert", "logged", batch, "at", "");
    char at[32];
    json_object_set_new(record, "at", json_string(tf_format(clock_now_ms(), at)));
    ev_event *e = &st->events[0];
    memset(e, 0, sizeof *e);
    e->command = true;
    e->json = record;
    e->received_ms = e->timestamp_ms = clock_now_ms();
    char uuid[37];
    hash_uuid4(uuid);
    snprintf(e->message_id, sizeof e->message_id, "cmd-%s", uuid);
    e->body = json_dumps(record, JSON_COMPACT);
    e->body_len = e->body ? strlen(e->body) : 0;
    size_t n = json_array_size(batch);
    st->n = 1;
    flush(st);
    if (!st->store_failed) st->stored += n - 1; /* flush() counted the record once */
    json_array_clear(batch);
    json_object_clear(ids);
}

static void import_products(import_state *st, imp_reader *rd) {
    json_t *batch = json_array(), *ids = json_object(), *p;
    long line;
    int rc;
    ev_error err;
    uint64_t t0 = clock_mono_ns(), last_report = t0;
    while ((rc = imp_next(rd, &p, &line, &err)) != 0 && !st->store_failed) {
        st->lines++;
        if (rc < 0) {
            report_rejected(st, line, &err);
            continue;
        }
        /* Each product is checked on its own, so a bad line is reported and the rest go in. */
        json_t *one = json_pack("[O]", p), *record = NULL;
        eng_error ee;
        if (eng_catalog_record(one, clock_now_ms(), &record, &ee)) {
            /* The product was checked as element [0] of an array: the line says which. */
            if (strncmp(ee.ev.message, "[0].", 4) == 0)
                memmove(ee.ev.message, ee.ev.message + 4, strlen(ee.ev.message + 4) + 1);
            report_rejected(st, line, &ee.ev);
        } else {
            json_t *norm = json_array_get(json_object_get(record, "logged"), 0);
            const char *id = json_string_value(json_object_get(norm, "id"));
            /* An id twice in one record would be refused: the earlier batch goes first. */
            if (id && json_object_get(ids, id)) flush_products(st, batch, ids);
            json_array_append(batch, norm);
            if (id) json_object_set_new(ids, id, json_true());
            if (json_array_size(batch) == IMPORT_PRODUCTS) flush_products(st, batch, ids);
        }
        json_decref(record);
        json_decref(one);
        json_decref(p);
        uint64_t now = clock_mono_ns();
        if (now - last_report > 1000000000u) {
            last_report = now;
            fprintf(stderr, "import: %zu products read, %zu stored, %zu rejected\n", st->lines,
                    st->stored, st->rejected);
        }
    }
    flush_products(st, batch, ids);
    json_decref(batch);
    json_decref(ids);
}

int cmd_import(int argc, char **argv) {
    cfg c;
    int rest[64], nrest;
    if (argc > 64 || cli_load_cfg(&c, argc - 1, argv + 1, rest, &nrest)) return 2;
    char **args = argv + 1;
    const char *path = NULL;
    imp_format fmt = IMP_AUTO;
    bool products = false;
    for (int i = 0; i < nrest; i++) {
        const char *a = args[rest[i]];
        if (strcmp(a, "--products") == 0) {
            products = true;
            fmt = IMP_JSONL;
        } else if (strcmp(a, "--format") == 0 && i + 1 < nrest) {
            const char *v = args[rest[++i]];
            if (strcmp(v, "jsonl") == 0)
                fmt = IMP_JSONL;
            else if (strcmp(v, "csv") == 0)
                fmt = IMP_CSV;
            else if (strcmp(v, "auto") != 0)
                path = NULL, i = nrest;
        } else if (!path && (a[0] != '-' || strcmp(a, "-") == 0)) { /* "-": standard input */
            path = a;
        } else {
            path = NULL;
            break;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: engaged import FILE [--format auto|jsonl|csv] [--data DIR]\n"
                        "       engaged import --products FILE [--data DIR]\n");
        return 2;
    }
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        perror(path);
        return 2;
    }
    ev_error err;
    imp_reader *rd = imp_open(f, fmt, &err);
    if (!rd) {
        fprintf(stderr, "engaged import: %s: %s\n", path, err.message);
        if (f != stdin) fclose(f);
        return 2;
    }
    char serr[512];
    store *s = store_open(c.data, serr, sizeof serr);
    commit_opts co = {.dedup_window_ms = (int64_t)(c.dedup_hours * 3600 * 1000)};
    import_state *st = calloc(1, sizeof *st);
    if (s && st) st->commit = commit_start(s, &co, serr, sizeof serr);
    if (!s || !st || !st->commit) {
        fprintf(stderr, "engaged import: %s\n", st ? serr : "out of memory");
        imp_close(rd);
        if (f != stdin) fclose(f);
        free(st);
        store_close(s);
        return 2;
    }

    uint64_t t0 = clock_mono_ns(), last_report = t0;
    long line;
    int rc;
    if (products) import_products(st, rd);
    while (!products && !st->store_failed) {
        ev_envelope env = {.received_ms = clock_now_ms()};
        if ((rc = imp_next_event(rd, &env, &st->events[st->n], &line, &err)) == 0) break;
        st->lines++;
        if (rc < 0)
            report_rejected(st, line, &err);
        else if (++st->n == IMPORT_GROUP)
            flush(st);
        uint64_t now = clock_mono_ns();
        if (now - last_report > 1000000000u) {
            last_report = now;
            fprintf(stderr, "import: %zu records read, %zu stored, %zu rejected (%.0f/s)\n",
                    st->lines, st->stored, st->rejected,
                    (double)st->lines / ((double)(now - t0) / 1e9));
        }
    }
    flush(st);
    double secs = (double)(clock_mono_ns() - t0) / 1e9;
    imp_close(rd);
    if (f != stdin) fclose(f);
    commit_stop(st->commit);
    store_close(s);
    if (st->rejected > IMPORT_SHOW_REJECTED)
        fprintf(stderr, "  ... and %zu more rejected\n", st->rejected - IMPORT_SHOW_REJECTED);
    fprintf(stderr,
            "import: %zu records in %.1f s: %zu stored, %zu duplicates skipped, %zu rejected%s\n",
            st->lines, secs, st->stored, st->duplicates, st->rejected,
            st->store_failed ? "; STOPPED: the store failed" : "");
    int status = st->store_failed ? 2 : st->rejected ? 1 : 0;
    free(st);
    return status;
}
