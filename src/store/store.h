/* store — the embedded, durable store under the data directory: the event log (evlog.h, in
 * DIR/events) and one SQLite database in WAL mode (DIR/engaged.db) for the small tables: keys and
 * settings.
 *
 * What is on disk is the truth; everything in memory is rebuilt from it at start. The log has one
 * writer, the committer (store/commit.h), which makes each group of events durable with one write
 * and one fdatasync. Readers (HTTP threads answering queries, CLI commands) read the log from any
 * thread, and the database through a connection of their own from store_reader().
 *
 * A data directory written by an engaged that kept events in SQLite (schema 2) is migrated at open:
 * the rows are copied into a new log under a temporary name, which is renamed into place once it is
 * complete and synced; only then is the table dropped. An interrupted migration starts again.
 *
 * Errors: functions returning int give 0 on success and -1 on failure, with a message in the
 * store's last-error slot for the calling thread (store_errmsg()). */
#ifndef ENGAGED_STORE_H
#define ENGAGED_STORE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/evlog.h"
#include "store/pindex.h"
#include "util/buf.h"

typedef struct store store;

/* Opens (creating dir and schema when absent) the store in dir. Returns NULL and writes a reason to
 * err on failure, also when another process has the event log open (one writer per log: the log
 * is locked while open). The caller owns the store and closes it with store_close() after every
 * thread that used it has stopped. */
store *store_open(const char *dir, char *err, size_t errlen);
/* The database alone, without the event log: for commands that change keys while a server runs
 * (SQLite arbitrates between the processes). The event functions below must not be called on it. */
store *store_open_db(const char *dir, char *err, size_t errlen);
void store_close(store *s);
const char *store_dir(const store *s);

/* The database's writing connection, for the small tables (keys, settings). */
sqlite3 *store_writer(store *s);
/* A read-only connection for the calling thread, opened on first use and closed by store_close().
 * Returns NULL if it cannot be opened. */
sqlite3 *store_reader(store *s);
/* A message for the last failure on this thread. */
const char *store_errmsg(void);

/* Runs sql (no results) on db; logs and returns -1 on failure. */
int store_exec(sqlite3 *db, const char *sql);

/* ---- Events ---- */

/* The log holds customer events (type is their ev_type) and, interleaved in the same order, the
 * engine's commands (catalogue and offer changes, unmerges, erasures: type STORE_TYPE_COMMAND, body
 * {"op":...}), so that replaying it rebuilds exactly the state the running server had. Commands
 * have no ids and are never returned as events. */
#define STORE_TYPE_COMMAND 64

/* The event log, for its one writer (the committer, or a command that runs none). */
evlog *store_log(store *s);

typedef struct store_query {
    const char *user_id;      /* NULL: any */
    const char *anonymous_id; /* NULL: any */
    int type;                 /* an ev_type, or -1 for any */
    int64_t since_ms;         /* received at or after since_ms; INT64_MIN for any */
    int64_t after_seq;        /* the cursor: only events with seq > after_seq */
    int limit;                /* 1..1000 */
} store_query;

/* Appends the matching events, as a JSON array of their stored bodies, to out, and sets *next_seq
 * to the cursor for the next page or -1 when this page is the last. Cost: with user_id or
 * anonymous_id, one read per event of that person after the cursor (found in the person index;
 * without a loaded index, a scan); otherwise a scan in arrival order from the cursor. */
int store_query_events(store *s, const store_query *q, buf *out, int64_t *next_seq);

/* Builds the person index (pindex.h) from every stored event, in one scan, and calls recent(seq,
 * message_id, arg) for each event received at or after recent_ms (the committer's dedup window),
 * stopping with -1 if it returns nonzero. The server calls it once at start; until then queries by
 * id scan. Returns 0 or -1. */
int store_index_load(store *s, int64_t recent_ms,
                     int (*recent)(int64_t seq, const char *message_id, void *arg), void *arg);
/* The person index, or NULL before store_index_load(). The committer adds to it. */
pindex *store_people(store *s);

/* One log record, as store_each() hands it over; body is valid during the call only. */
typedef struct store_row {
    int64_t seq, ts_ms;
    int type, kind;
    const char *user_id, *anonymous_id; /* NULL when absent */
    const char *message_id;             /* NULL when absent (an engine command) */
    const char *body;
    size_t body_len;
} store_row;

/* Calls fn for every record in seq order (seqs == NULL), or for the records with the given seqs
 * (increasing; missing and erased ones skipped); stops when fn returns nonzero and returns that.
 * Returns 0 when done, -1 on a store error. Any thread. */
int store_each(store *s, const int64_t *seqs, size_t n, int (*fn)(const store_row *row, void *arg),
               void *arg);
/* Appends the bodies of the given seqs (missing ones skipped) as a JSON array to out. Returns 0,
 * or -1 (a store error, or out's cap). */
int store_bodies(store *s, const int64_t *seqs, size_t n, buf *out);
/* Erases the given records now and durably (evlog_erase + evlog_commit): for the engine finishing
 * an interrupted erasure at start, while no committer runs. */
int store_erase(store *s, const int64_t *seqs, size_t n);

/* The number of stored records (events and commands, erased ones not counted); and the first seq
 * received at or after since_ms (INT64_MAX when none): the log keeps the arrival time
 * non-decreasing along seq, so `since` finds its place by binary search. */
int64_t store_count_events(store *s);
int64_t store_first_seq_since(store *s, int64_t since_ms);

#endif
