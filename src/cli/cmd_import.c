/* engaged import FILE — bulk-load events (JSONL, or CSV with a header) through the same validation
 * and the same committer as the HTTP API: duplicates by messageId are skipped, every accepted event
 * is durable when the command ends, and each rejected line is reported.
 *
 *   engaged import FILE [--format auto|jsonl|csv] [--data DIR]
 * Progress goes to stderr once a second; the summary is the last line. Exit 0 when every line was
 * accepted, 1 when some were rejected, 2 when the file or the store could not be used.
 *
 * Run it while the server is stopped, or send the events to the running server instead: a running
 * server's deduplication does not see ids imported behind its back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ingest/import.h"
#include "store/commit.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/config.h"

#define IMPORT_GROUP 2000 /* events per commit request */
#define IMPORT_SHOW_REJECTED 20

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

int cmd_import(int argc, char **argv) {
    cfg c;
    int rest[64], nrest;
    if (argc > 64 || cli_load_cfg(&c, argc - 1, argv + 1, rest, &nrest)) return 2;
    char **args = argv + 1;
    const char *path = NULL;
    imp_format fmt = IMP_AUTO;
    for (int i = 0; i < nrest; i++) {
        const char *a = args[rest[i]];
        if (strcmp(a, "--format") == 0 && i + 1 < nrest) {
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
        fprintf(stderr, "usage: engaged import FILE [--format auto|jsonl|csv] [--data DIR]\n");
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
    json_t *ev;
    long line;
    int rc;
    while ((rc = imp_next(rd, &ev, &line, &err)) != 0 && !st->store_failed) {
        st->lines++;
        if (rc < 0) {
            report_rejected(st, line, &err);
            continue;
        }
        ev_envelope env = {.received_ms = clock_now_ms()};
        if (ev_normalize(ev, EV_NTYPES, &env, &st->events[st->n], &err))
            report_rejected(st, line, &err);
        else if (++st->n == IMPORT_GROUP)
            flush(st);
        json_decref(ev);
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
