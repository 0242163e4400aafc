/* import — reading bulk files of events for `engaged import FILE`.
 *
 * A reader turns a file into one JSON object per event, to be fed to ev_normalize() with type
 * EV_NTYPES (each record names its own type). Two formats are read:
 *
 * JSONL: one JSON object per line ('\n' or "\r\n"); lines holding only spaces, tabs or '\r' are
 *   skipped. Any other line that is not a JSON object is a bad record.
 *
 * CSV (RFC 4180) with a header row: fields separated by ',', records by '\n' or "\r\n"; a field
 *   may be quoted with '"', and then holds commas, line breaks and doubled quotes ("" for one ").
 *   Bytes after a closing quote other than ',' or the end of the record make the record bad; a '"'
 *   inside an unquoted field is taken literally. Every record must have as many fields as the
 *   header. Records that are empty, or whose cells are all empty, are skipped. The header names the
 *   event fields:
 *     - type, event, userId, anonymousId, messageId, timestamp, originalTimestamp, sentAt, name,
 *       previousId, groupId: top-level fields (matched ignoring ASCII case, written as here);
 *     - properties.K, traits.K, context.K, integrations.K, with K a dotted path (context.page.url):
 *       nested objects, built as needed; at most IMP_MAX_PATH segments in all;
 *     - anything else, a duplicate, or two columns where one is inside the other ("traits.address"
 *       and "traits.address.city") makes the whole file unreadable: imp_open() fails, naming it.
 *   Spaces around header names are ignored. Empty cells are omitted, never written as "". Cells are
 *   strings, except under properties. and traits., where a cell that is a JSON number ("12",
 *   "19.99", "-1e3"; not "007", " 5" or "1,5") becomes that number and "true" / "false" become
 *   booleans. So ids stay strings (userId 00123 keeps its zeros) while prices and counts are typed.
 *
 * In both formats, a record without a type but with a non-empty event is a track event: "type":
 * "track" is added. Other records without a type are passed on as they are, for ev_normalize() to
 * refuse.
 *
 * Format detection (IMP_AUTO): after an optional UTF-8 byte order mark and blank space, a '{' means
 * JSONL and anything else CSV; a file whose first 64 KiB are blank is read as JSONL.
 *
 * Hostile files: no record may be longer than IMP_MAX_RECORD bytes. A longer one is a bad record
 * and reading resumes after the next line break (for CSV, the next physical one, quoted or not, so
 * that a stray quote cannot swallow the rest of the file). Headers have at most IMP_MAX_COLUMNS
 * columns.
 *
 * Errors: imp_open() fails only on what makes the whole file unreadable (a bad CSV header, a read
 * error). imp_next() reports a bad record as -1 with err->message starting "line N: ", and the next
 * call goes on with the following record. Codes: "invalid_json", "invalid_csv" (syntax, field
 * count, header), "record_too_large", "invalid_field" (a cell that is not UTF-8 or holds a NUL
 * byte), "io_error", and "internal" when memory runs out.
 *
 * Ownership: the reader never closes the FILE it was given. Each event from imp_next() belongs to
 * the caller (json_decref()). Cost: one pass over the file with a 64 KiB read buffer; memory is one
 * record plus the parsed event. A reader is used by one thread at a time. */
#ifndef ENGAGED_IMPORT_H
#define ENGAGED_IMPORT_H

#include <jansson.h>
#include <stdio.h>

#include "ingest/ev.h"
#include "util/buf.h"

#define IMP_MAX_RECORD (1024 * 1024)
#define IMP_MAX_COLUMNS 1024
#define IMP_MAX_PATH 8

typedef enum imp_format { IMP_AUTO, IMP_JSONL, IMP_CSV } imp_format;

typedef struct imp_reader imp_reader;

/* Starts reading f in format fmt (IMP_AUTO: detect it). For CSV, reads the header. Returns NULL
 * with *err filled when the file cannot be read in that format. */
imp_reader *imp_open(FILE *f, imp_format fmt, ev_error *err);
/* The format being read (never IMP_AUTO). */
imp_format imp_reader_format(const imp_reader *r);
/* Reads the next event. Returns 1 and sets *out (the caller's), 0 at the end of the file, or -1 for
 * a bad record (*err says why; call again for the next one). *line_no, when line_no is not NULL, is
 * the line on which the record starts (1-based; CSV header is line 1). */
int imp_next(imp_reader *r, json_t **out, long *line_no, ev_error *err);
/* Reads the next record and normalises it as an event (ev.h, with the record's own type): what
 * imp_next() and ev_normalize() do, and the same result, but a JSONL record the fast path takes
 * (ev_normalize_text()) is never parsed into a tree. Returns 1 with *out filled (the caller frees
 * it with ev_event_free()), 0 at the end of the file, or -1 for a bad record or an invalid event
 * (*err says why, a bad record's message led by its line as imp_next() words it; call again for
 * the next one). env is the envelope every event gets (its received_ms, at least). */
int imp_next_event(imp_reader *r, const ev_envelope *env, ev_event *out, long *line_no,
                   ev_error *err);
void imp_close(imp_reader *r); /* NULL is fine */

/* The pieces a reader is made of, callable on their own (tests, fuzzing). */

/* IMP_JSONL or IMP_CSV by the rule above, or IMP_AUTO when data[0..n) is blank. */
imp_format imp_detect(const char *data, size_t n);

/* Parses one JSONL line (without its '\n'). Returns 1 and sets *out, 0 for a blank line, -1 with
 * *err filled. */
int imp_parse_jsonl(const char *line, size_t n, json_t **out, ev_error *err);

/* The fields of one CSV record, unquoted. */
typedef struct imp_fields {
    buf text;      /* every field's bytes, each followed by a NUL */
    size_t *start; /* where field i starts in text.data */
    size_t *len;   /* its length (it may itself hold NUL bytes) */
    size_t n, alloc;
} imp_fields;

void imp_fields_init(imp_fields *f);
void imp_fields_free(imp_fields *f);
static inline const char *imp_field(const imp_fields *f, size_t i) {
    return f->text.data + f->start[i];
}

/* Splits one CSV record rec[0..n) (without its line break) into f, replacing what f held. An empty
 * record is one empty field. Returns 0, or -1 with *err filled (code "invalid_csv", or
 * "record_too_large" when n > IMP_MAX_RECORD); at most IMP_MAX_COLUMNS fields. */
int imp_csv_split(const char *rec, size_t n, imp_fields *f, ev_error *err);

/* A compiled CSV header. */
typedef struct imp_columns imp_columns;

/* Compiles a header row by the rules above; NULL with *err filled when it breaks one. */
imp_columns *imp_columns_new(const imp_fields *header, ev_error *err);
void imp_columns_free(imp_columns *c); /* NULL is fine */
/* Builds the event of one CSV record. Returns 1 and sets *out, 0 when every cell is empty, or -1
 * with *err filled. */
int imp_csv_event(const imp_columns *c, const imp_fields *row, json_t **out, ev_error *err);

#endif
