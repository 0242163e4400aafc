/* evlog — the event log: append-only, checksummed segment files, indexed in memory.
 *
 * Every stored event (and every engine command) is one record in arrival order, numbered by a dense
 * seq starting at 1. A group of records is written with one pwrite(2) and made durable with one
 * fdatasync(2); nothing is ever copied again (no checkpoints), which is what keeps a commit's cost
 * flat. Segment files are zero-filled ahead of use by a helper thread (O_DIRECT, past the page
 * cache), so a commit overwrites blocks the file system already has and fdatasync flushes data
 * only, not a journal of new extents (measured on this machine's ext4: p50 145 µs against 349 µs
 * for appending; docs/architecture.md). Commits write whole pages, with O_DIRECT too where the
 * file system has it: records do not pass through the page cache, and readers read them from the
 * disk the first time.
 *
 * On disk: DIR/NNNNNNNN.log, numbered from 1, each a run of records followed by zeros. A record is
 * a 56-byte header and a payload, padded with zeros to a multiple of 8 bytes. Header fields, in the
 * host's (little-endian) order:
 *     0 u32 hcrc       CRC-32 (zlib's crc32(), gzip's polynomial) of header bytes 4..55
 *     4 u32 pcrc       crc32 of the payload's unpadded bytes
 *     8 i64 seq       16 i64 received_ms   24 i64 ts_ms
 *    32 u32 epoch     36 u32 body_len      40 u16 user id length   42 u16 anonymous id length
 *    44 u16 message id length              46 u8 type   47 u8 kind
 *    48 u8 flags: EVLOG_END (the group's last record), and which ids are present; 49..55 zero
 * The payload is a byte 0xEE (so that no live payload is all zeros), the ids present (user,
 * anonymous, message), then the body, each followed by a NUL. At open, the log is scanned:
 *   - records after the last END are an interrupted group: they are dropped and their bytes zeroed,
 *     so a crash leaves no partial group;
 *   - a record is accepted only if its header checks, its seq is the previous one's + 1, and its
 *     epoch is not below the previous one's. The epoch (DIR/epoch) grows at every open, so bytes a
 *     torn write left behind can never be taken for a continuation of the log;
 *   - only the last group can have been in flight at a crash, since a commit syncs before the next
 *     one writes, and erasures are written after their own group is durable. So a payload that
 *     fails its check in the last complete group means the group's END reached the disk before
 *     another of its pages: that group is dropped as well. Anywhere before, the record was erased
 *     (or was being erased: its payload is zeroed again).
 *
 * Erasure zeroes a record's payload in place (evlog_erase) and keeps its header, so seqs stay dense
 * and the space is not reclaimed: the customer's data is gone from the disk once the commit that
 * carries the erasure returns.
 *
 * Threads: one writer (evlog_append, evlog_erase, evlog_commit), any number of readers. Readers see
 * the records of completed commits only (published with release ordering after the fdatasync).
 * Processes: one at a time; evlog_open() holds an exclusive flock on DIR/lock until evlog_close().
 *
 * Errors: functions returning int give 0 on success and -1 on failure, with a message for the
 * calling thread in evlog_errmsg(). */
#ifndef ENGAGED_EVLOG_H
#define ENGAGED_EVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define EVLOG_HEADER 56
enum { EVLOG_END = 1, EVLOG_HAS_USER = 2, EVLOG_HAS_ANON = 4, EVLOG_HAS_MESSAGE = 8 };

typedef struct evlog evlog;

/* One record. The writer fills everything but seq; readers get pointers into their scratch buffer,
 * valid until its next use. Absent ids are NULL (message_id too: commands have none). */
typedef struct evlog_rec {
    int64_t seq;
    int64_t received_ms; /* the writer keeps it non-decreasing along seq (evlog_first_since) */
    int64_t ts_ms;
    int type, kind; /* 0..255 each */
    const char *user_id, *anonymous_id, *message_id;
    const char *body;
    size_t body_len;
} evlog_rec;

typedef struct evlog_opts {
    size_t max_segment_bytes; /* 0: 64 MiB. Segments start at 1 MiB and double up to this. */
    bool buffered; /* write commits through the page cache even where O_DIRECT is available */
} evlog_opts;

/* Opens (creating dir when absent) and recovers the log. opts may be NULL. Returns NULL with a
 * reason in err on failure. Cost: one sequential read of the log; memory 4 bytes per record. */
evlog *evlog_open(const char *dir, const evlog_opts *opts, char *err, size_t errlen);
/* Stops the helper thread and closes the files. Everything committed is already durable. */
void evlog_close(evlog *l);
const char *evlog_errmsg(void);

/* ---- The writer ---- */

/* Adds r to the open group and sets r->seq. The log keeps received times non-decreasing along seq:
 * a received_ms below the previous record's is raised to it, in *r too. The group is written by
 * evlog_commit(). Fails for lack of memory, a body of 1 GiB or more, an id over 65,535 bytes, a
 * type outside 0..254 (255 is evlog's own) or a kind outside 0..255; the open group is then as it
 * was. */
int evlog_append(evlog *l, evlog_rec *r);
/* Queues the payloads of the given committed seqs for zeroing (missing or already erased ones are
 * skipped). The next evlog_commit() writes its group, syncs it, then zeroes these and syncs the
 * segments they are in. Recovery may only ever find the last group torn, so when a commit with no
 * records of its own erases records of the last group, evlog adds a record of its own (type 255,
 * which readers never see and evlog_count() leaves out) to be that later group. */
int evlog_erase(evlog *l, const int64_t *seqs, size_t n);
/* Writes the open group (one pwrite), fdatasyncs it, publishes it to readers, then carries out the
 * queued erasures. On a write failure the group and its erasures are dropped (its seqs are reused)
 * and -1 returned. An erasure that fails once the group is durable is logged and the commit stands,
 * unless the commit held no records of the caller's (then -1). A failed fdatasync may have lost
 * pages for good, so it stops the process. */
int evlog_commit(evlog *l);
/* Drops the open group and the erasures queued with it. */
void evlog_rollback(evlog *l);
/* Nanoseconds the last evlog_commit() spent in fdatasync (for metrics). The writer's only. */
uint64_t evlog_sync_ns(const evlog *l);

/* ---- Readers (any thread) ---- */

/* The last published seq (0 when empty), and the number of published records readers see (not
 * erased, not evlog's own). */
int64_t evlog_last_seq(const evlog *l);
int64_t evlog_count(const evlog *l);
/* Reads record seq into *r, with its strings in scratch. Returns 1, 0 when there is no such seq or
 * it was erased, -1 on an I/O error. Cost: one pread, and a CRC of the payload. */
int evlog_read(evlog *l, int64_t seq, evlog_rec *r, buf *scratch);
/* Calls fn for every live record with seq ≥ from, in order, up to the last seq published when
 * the call began; stops when fn returns nonzero and returns that. Reads in large sequential
 * blocks. Returns 0 when done, -1 on an I/O error. */
int evlog_scan(evlog *l, int64_t from, int (*fn)(const evlog_rec *r, void *arg), void *arg);
/* The first seq received at or after since_ms, or INT64_MAX when none. Cost: a binary search of
 * about log2(n) header reads. */
int64_t evlog_first_since(evlog *l, int64_t since_ms);

#endif
