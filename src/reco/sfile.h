/* sfile — reading session data sets for `engaged eval`: SR-GNN text and session-rec TSV.
 *
 * Formats, told apart by the first line (a TSV header naming SessionId, ItemId and Time in any
 * order and case, or else SR-GNN text):
 *
 * - SR-GNN train: one session per line, item ids separated by spaces, lines in time order.
 * - SR-GNN test: "prefix items<TAB>next item", one case per line.
 * - TSV: a header, then one event per row; other columns are ignored. Sessions are ordered by their
 *   first event's time, events by time (file order among equal times). The role does not matter:
 *   a TSV test file yields sessions, and the caller turns every prefix into a case (after dropping
 *   the items its model never saw, as the SR-GNN protocol does).
 *
 * Item ids are decimal integers 0..4294967294. Session ids (TSV) are any text without tabs. Time is
 * a decimal number (seconds, fractions allowed), kept in milliseconds.
 *
 * Hostile input: a line longer than max_line bytes, a token that is not a number in range, a row
 * with too few columns, an empty session: the line is skipped and counted, and reading goes on.
 * Only an unreadable file or running out of memory fails the load. CR before LF is accepted.
 *
 * Ownership: sfile_load() fills an sfile_data that the caller releases with sfile_free(). Cost: one
 * pass over the file, plus a sort of the rows for TSV. */
#ifndef ENGAGED_SFILE_H
#define ENGAGED_SFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SFILE_MAX_LINE (1u << 20) /* default line cap: 1 MiB */

typedef enum sfile_role { SFILE_TRAIN, SFILE_TEST } sfile_role;
typedef enum sfile_format { SFILE_SRGNN, SFILE_TSV } sfile_format;

/* One prediction: the items[off .. off+n) prefix is followed by target. */
typedef struct sfile_case {
    size_t off;
    uint32_t n;
    uint32_t target;
} sfile_case;

typedef struct sfile_data {
    sfile_format format;
    uint32_t *items; /* all sessions' items, concatenated in session order */
    int64_t *times;  /* per item, ms (TSV); for SR-GNN the session's line number */
    size_t nitems;
    size_t *sess_off; /* session i is items[sess_off[i] .. sess_off[i] + sess_len[i]) */
    uint32_t *sess_len;
    uint64_t *sess_key; /* the session's id as a key: line number (SR-GNN) or a hash of the text */
    size_t nsess;
    sfile_case *cases; /* SR-GNN test files only */
    size_t ncases;
    size_t lines;   /* lines read, header included */
    size_t skipped; /* lines skipped as malformed or too long */
    size_t too_long;
} sfile_data;

/* Reads path as role. Returns 0, or -1 with a sentence in err (errlen bytes) when the file cannot
 * be read or memory runs out; *out then needs no freeing. max_line 0 means SFILE_MAX_LINE. */
int sfile_load(const char *path, sfile_role role, size_t max_line, sfile_data *out, char *err,
               size_t errlen);
/* The same from an open stream (not closed here); name is used in messages. */
int sfile_read(FILE *f, const char *name, sfile_role role, size_t max_line, sfile_data *out,
               char *err, size_t errlen);
void sfile_free(sfile_data *d);

/* Parses s[0..n) as an item id: decimal digits only, at most 4294967294. */
bool sfile_parse_item(const char *s, size_t n, uint32_t *out);

#endif
