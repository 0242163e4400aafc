/* import — JSONL and CSV readers for bulk event files; the rules are in import.h.
 *
 * A reader has two layers: record framing (where one record ends, which for CSV depends on quoting)
 * over a fixed read buffer, and record parsing (imp_parse_jsonl, imp_csv_split + imp_csv_event),
 * which are pure functions of one record's bytes. The framing scanner and the CSV splitter follow
 * the same quoting states, so they always agree on where a record ends. */
#include "ingest/import.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IMP_CHUNK (64 * 1024)

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

static bool is_blank_byte(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Error text may quote the input (jansson's "near '...'"), which may be any bytes; messages end up
 * in JSON and terminals, so anything but printable ASCII becomes '?'. */
static void sanitize(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) *s = '?';
}

/* A record without a type that names an event is a track event (import.h). */
static void default_type(json_t *o) {
    if (json_object_get(o, "type")) return;
    const json_t *ev = json_object_get(o, "event");
    if (json_is_string(ev) && json_string_length(ev) > 0)
        json_object_set_new(o, "type", json_string("track"));
}

imp_format imp_detect(const char *data, size_t n) {
    size_t i = 0;
    if (n >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) i = 3;
    while (i < n && is_blank_byte((unsigned char)data[i]))
        i++;
    if (i == n) return IMP_AUTO;
    return data[i] == '{' ? IMP_JSONL : IMP_CSV;
}

/* ---------------------------------------------------------------------------------------------
 * JSONL
 * ------------------------------------------------------------------------------------------- */

int imp_parse_jsonl(const char *line, size_t n, json_t **out, ev_error *err) {
    *out = NULL;
    if (n > IMP_MAX_RECORD) {
        ev_error_set(err, "record_too_large", "", "the line is longer than %d bytes",
                     IMP_MAX_RECORD);
        return -1;
    }
    size_t i = 0;
    while (i < n && is_blank_byte((unsigned char)line[i]))
        i++;
    if (i == n) return 0;
    json_error_t jerr;
    /* Without JSON_DECODE_ANY jansson wants an object or an array; JSON_ALLOW_NUL stays off, so no
     * string in an event can hide a NUL byte. */
    json_t *v = json_loadb(line, n, 0, &jerr);
    if (!v) {
        sanitize(jerr.text);
        ev_error_set(err, "invalid_json", "", "invalid JSON at column %d: %s", jerr.column,
                     jerr.text);
        return -1;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        ev_error_set(err, "invalid_json", "", "each line must be a JSON object");
        return -1;
    }
    default_type(v);
    *out = v;
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * CSV records
 * ------------------------------------------------------------------------------------------- */

/* Quoting states shared by the framing scanner and the splitter. */
typedef enum csv_state {
    CSV_FIELD_START, /* at the start of a field */
    CSV_UNQUOTED,    /* inside an unquoted field */
    CSV_QUOTED,      /* inside a quoted field */
    CSV_QUOTE_END,   /* just after a '"' in a quoted field: its end, or the first of a "" pair */
} csv_state;

/* The state after byte c; a record ends at '\n' in any state but CSV_QUOTED. */
static csv_state csv_step(csv_state s, unsigned char c) {
    switch (s) {
    case CSV_FIELD_START:
        return c == '"' ? CSV_QUOTED : c == ',' ? CSV_FIELD_START : CSV_UNQUOTED;
    case CSV_UNQUOTED:
        return c == ',' ? CSV_FIELD_START : CSV_UNQUOTED;
    case CSV_QUOTED:
        return c == '"' ? CSV_QUOTE_END : CSV_QUOTED;
    case CSV_QUOTE_END:
        return c == '"' ? CSV_QUOTED : c == ',' ? CSV_FIELD_START : CSV_UNQUOTED;
    }
    return s;
}

void imp_fields_init(imp_fields *f) {
    memset(f, 0, sizeof *f);
    /* Unquoted text is never longer than the record; each field adds one NUL. */
    buf_init(&f->text, IMP_MAX_RECORD + IMP_MAX_COLUMNS + 1);
}

void imp_fields_free(imp_fields *f) {
    buf_free(&f->text);
    free(f->start);
    free(f->len);
    memset(f, 0, sizeof *f);
}

static int fields_push(imp_fields *f, size_t start, size_t len) {
    if (f->n == f->alloc) {
        size_t a = f->alloc ? f->alloc * 2 : 16;
        size_t *s = realloc(f->start, a * sizeof *s);
        if (!s) return -1;
        f->start = s;
        size_t *l = realloc(f->len, a * sizeof *l);
        if (!l) return -1;
        f->len = l;
        f->alloc = a;
    }
    f->start[f->n] = start;
    f->len[f->n] = len;
    f->n++;
    return 0;
}

int imp_csv_split(const char *rec, size_t n, imp_fields *f, ev_error *err) {
    buf_reset(&f->text);
    f->n = 0;
    if (n > IMP_MAX_RECORD) {
        ev_error_set(err, "record_too_large", "", "the record is longer than %d bytes",
                     IMP_MAX_RECORD);
        return -1;
    }
    size_t i = 0;
    for (;;) {
        if (f->n == IMP_MAX_COLUMNS) {
            ev_error_set(err, "invalid_csv", "", "a record has more than %d fields",
                         IMP_MAX_COLUMNS);
            return -1;
        }
        size_t start = f->text.len;
        if (i < n && rec[i] == '"') {
            /* Quoted: copy runs between quotes, turning "" into ". */
            i++;
            for (;;) {
                const char *q = i < n ? memchr(rec + i, '"', n - i) : NULL;
                if (!q) {
                    ev_error_set(err, "invalid_csv", "",
                                 "field %zu has an opening quote but no closing one", f->n + 1);
                    return -1;
                }
                size_t run = (size_t)(q - rec) - i;
                if (buf_append(&f->text, rec + i, run)) goto nomem;
                i += run + 1;
                if (i < n && rec[i] == '"') {
                    if (buf_putc(&f->text, '"')) goto nomem;
                    i++;
                    continue;
                }
                break;
            }
            if (i < n && rec[i] != ',') {
                ev_error_set(err, "invalid_csv", "", "field %zu has text after its closing quote",
                             f->n + 1);
                return -1;
            }
        } else {
            const char *comma = i < n ? memchr(rec + i, ',', n - i) : NULL;
            size_t end = comma ? (size_t)(comma - rec) : n;
            if (buf_append(&f->text, rec + i, end - i)) goto nomem;
            i = end;
        }
        size_t len = f->text.len - start;
        if (buf_putc(&f->text, '\0') || fields_push(f, start, len)) goto nomem;
        if (i >= n) return 0;
        i++; /* the comma */
    }
nomem:
    ev_error_set(err, "internal", "", "out of memory splitting a record");
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * CSV header and events
 * ------------------------------------------------------------------------------------------- */

/* Top-level fields a column may name directly, spelled as they are written. */
static const char *const top_fields[] = {
    "type",   "event", "userId",     "anonymousId", "messageId", "timestamp", "originalTimestamp",
    "sentAt", "name",  "previousId", "groupId",
};

/* Objects a dotted column may write into, and whether their cells are typed (numbers, booleans). */
static const struct {
    const char *name;
    bool typed;
} roots[] = {
    {"properties", true},
    {"traits", true},
    {"context", false},
    {"integrations", false},
};

typedef struct imp_column {
    char *name; /* the header name as written (trimmed), for messages */
    char **seg; /* the path: one segment for a top-level field */
    size_t nseg;
    bool typed;
} imp_column;

struct imp_columns {
    imp_column *col;
    size_t n;
};

void imp_columns_free(imp_columns *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        for (size_t s = 0; s < c->col[i].nseg; s++)
            free(c->col[i].seg[s]);
        free(c->col[i].seg);
        free(c->col[i].name);
    }
    free(c->col);
    free(c);
}

static bool valid_text(const char *s, size_t n) {
    if (memchr(s, '\0', n)) return false;
    json_t *probe = json_stringn(s, n); /* jansson's UTF-8 check */
    if (!probe) return false;
    json_decref(probe);
    return true;
}

/* Fills col from one trimmed header name. */
static int column_parse(imp_column *col, const char *name, size_t n, size_t index, ev_error *err) {
    if (n == 0) {
        ev_error_set(err, "invalid_csv", "", "header column %zu has no name", index + 1);
        return -1;
    }
    if (!valid_text(name, n)) {
        ev_error_set(err, "invalid_csv", "", "header column %zu is not valid UTF-8 text",
                     index + 1);
        return -1;
    }
    col->name = strndup(name, n);
    if (!col->name) goto nomem;
    const char *dot = memchr(name, '.', n);
    if (!dot) {
        for (size_t i = 0; i < sizeof top_fields / sizeof *top_fields; i++) {
            if (strlen(top_fields[i]) == n && strncasecmp(top_fields[i], name, n) == 0) {
                col->seg = calloc(1, sizeof *col->seg);
                if (!col->seg || !(col->seg[0] = strdup(top_fields[i]))) goto nomem;
                col->nseg = 1;
                return 0;
            }
        }
        ev_error_set(err, "invalid_csv", "",
                     "unknown header column '%.60s': use a top-level field (type, event, userId, "
                     "...) or properties.NAME, traits.NAME, context.NAME, integrations.NAME",
                     col->name);
        return -1;
    }
    size_t rootlen = (size_t)(dot - name);
    size_t r = 0, nroots = sizeof roots / sizeof *roots;
    while (r < nroots &&
           !(strlen(roots[r].name) == rootlen && strncasecmp(roots[r].name, name, rootlen) == 0))
        r++;
    if (r == nroots) {
        ev_error_set(err, "invalid_csv", "",
                     "header column '%.60s' must start with properties., traits., context. or "
                     "integrations.",
                     col->name);
        return -1;
    }
    col->typed = roots[r].typed;
    col->seg = calloc(IMP_MAX_PATH, sizeof *col->seg);
    if (!col->seg) goto nomem;
    const char *p = name, *end = name + n;
    while (p <= end) {
        const char *d = memchr(p, '.', (size_t)(end - p));
        const char *seg_end = d ? d : end;
        if (seg_end == p) {
            ev_error_set(err, "invalid_csv", "", "header column '%.60s' has an empty segment",
                         col->name);
            return -1;
        }
        if (col->nseg == IMP_MAX_PATH) {
            ev_error_set(err, "invalid_csv", "", "header column '%.60s' has more than %d segments",
                         col->name, IMP_MAX_PATH);
            return -1;
        }
        const char *text = col->nseg == 0 ? roots[r].name : p;
        size_t len = col->nseg == 0 ? strlen(roots[r].name) : (size_t)(seg_end - p);
        if (!(col->seg[col->nseg] = strndup(text, len))) goto nomem;
        col->nseg++;
        p = seg_end + 1;
    }
    return 0;
nomem:
    ev_error_set(err, "internal", "", "out of memory reading the header");
    return -1;
}

/* True when a's path is b's or lies inside it, or the other way round. */
static bool columns_overlap(const imp_column *a, const imp_column *b) {
    size_t n = a->nseg < b->nseg ? a->nseg : b->nseg;
    for (size_t i = 0; i < n; i++)
        if (strcmp(a->seg[i], b->seg[i]) != 0) return false;
    return true;
}

imp_columns *imp_columns_new(const imp_fields *header, ev_error *err) {
    imp_columns *c = calloc(1, sizeof *c);
    if (!c || !(c->col = calloc(header->n ? header->n : 1, sizeof *c->col))) {
        free(c);
        ev_error_set(err, "internal", "", "out of memory reading the header");
        return NULL;
    }
    if (header->n > IMP_MAX_COLUMNS) {
        ev_error_set(err, "invalid_csv", "", "the header has more than %d columns",
                     IMP_MAX_COLUMNS);
        goto fail;
    }
    for (size_t i = 0; i < header->n; i++) {
        const char *s = imp_field(header, i);
        size_t n = header->len[i];
        for (; n && (*s == ' ' || *s == '\t'); n--)
            s++;
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        c->n = i + 1; /* counted first, so that imp_columns_free() releases a half-made column */
        if (column_parse(&c->col[i], s, n, i, err)) goto fail;
    }
    /* Quadratic, but over at most IMP_MAX_COLUMNS columns once per file. */
    for (size_t i = 0; i < c->n; i++) {
        for (size_t j = i + 1; j < c->n; j++) {
            if (!columns_overlap(&c->col[i], &c->col[j])) continue;
            ev_error_set(err, "invalid_csv", "", "header columns '%.50s' and '%.50s' overlap",
                         c->col[i].name, c->col[j].name);
            goto fail;
        }
    }
    return c;
fail:
    imp_columns_free(c);
    return NULL;
}

/* The JSON value of a cell: under properties/traits a JSON number or true/false is typed, anything
 * else (and everything elsewhere) is a string. NULL when the text is not valid UTF-8. */
static json_t *cell_value(const char *s, size_t n, bool typed) {
    if (typed) {
        if (n == 4 && memcmp(s, "true", 4) == 0) return json_true();
        if (n == 5 && memcmp(s, "false", 5) == 0) return json_false();
        /* jansson decides what a JSON number is (and reads it without regard to the locale); the
         * first and last bytes are checked first so that it never skips blank space around one. */
        if ((s[0] == '-' || isdigit((unsigned char)s[0])) && isdigit((unsigned char)s[n - 1])) {
            json_t *v = json_loadb(s, n, JSON_DECODE_ANY, NULL);
            if (json_is_number(v)) return v;
            json_decref(v);
        }
    }
    return json_stringn(s, n);
}

int imp_csv_event(const imp_columns *c, const imp_fields *row, json_t **out, ev_error *err) {
    *out = NULL;
    if (row->n != c->n) {
        ev_error_set(err, "invalid_csv", "", "the record has %zu fields; the header has %zu",
                     row->n, c->n);
        return -1;
    }
    json_t *o = json_object();
    if (!o) goto nomem;
    for (size_t i = 0; i < c->n; i++) {
        const imp_column *col = &c->col[i];
        size_t n = row->len[i];
        if (n == 0) continue;
        const char *s = imp_field(row, i);
        json_t *v = memchr(s, '\0', n) ? NULL : cell_value(s, n, col->typed);
        if (!v) {
            ev_error_set(err, "invalid_field", col->name,
                         "column '%.60s' is not valid UTF-8 text (or holds a NUL byte)", col->name);
            json_decref(o);
            return -1;
        }
        /* The header check guarantees that every inner segment is an object here. */
        json_t *parent = o;
        for (size_t k = 0; k + 1 < col->nseg; k++) {
            json_t *child = json_object_get(parent, col->seg[k]);
            if (!child) {
                child = json_object();
                if (!child || json_object_set_new(parent, col->seg[k], child)) {
                    json_decref(v);
                    json_decref(o);
                    goto nomem;
                }
            }
            parent = child;
        }
        if (json_object_set_new(parent, col->seg[col->nseg - 1], v)) {
            json_decref(o);
            goto nomem;
        }
    }
    if (json_object_size(o) == 0) {
        json_decref(o);
        return 0;
    }
    default_type(o);
    *out = o;
    return 1;
nomem:
    ev_error_set(err, "internal", "", "out of memory building an event");
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * The reader
 * ------------------------------------------------------------------------------------------- */

struct imp_reader {
    FILE *f;
    imp_format fmt;
    bool eof;    /* f has nothing more to give */
    bool failed; /* a read error was reported; the reader is at its end */
    long line;   /* the line number of the next unread byte */
    size_t in_pos, in_len;
    buf rec; /* the current record */
    imp_fields fields;
    imp_columns *cols;
    js_doc scan; /* imp_next_event()'s token array for JSONL records */
    unsigned char in[IMP_CHUNK];
};

/* Refills the read buffer; false at the end of the file or on a read error (r->failed). */
static bool fill(imp_reader *r) {
    if (r->in_pos < r->in_len) return true;
    if (r->eof) return false;
    r->in_pos = 0;
    r->in_len = fread(r->in, 1, sizeof r->in, r->f);
    if (r->in_len == 0) {
        r->eof = true;
        if (ferror(r->f)) r->failed = true;
        return false;
    }
    return true;
}

/* Appends a span to the record; on passing the cap, drops what the record held and marks it too
 * large. */
static void rec_append(imp_reader *r, const unsigned char *p, size_t n, bool *toobig) {
    if (*toobig) return;
    if (buf_append(&r->rec, p, n)) {
        buf_reset(&r->rec);
        *toobig = true;
    }
}

/* Frames the next record into r->rec, without its line break. Returns 1 for a record, 0 at the end,
 * -1 with *err for a record that is too long, an unclosed quote at the end of the file, or a read
 * error. *start is the line the record starts on. */
static int read_record(imp_reader *r, long *start, ev_error *err) {
    buf_reset(&r->rec);
    *start = r->line;
    bool toobig = false, any = false, ended = false;
    csv_state st = CSV_FIELD_START;
    while (!ended && fill(r)) {
        any = true;
        const unsigned char *p = r->in + r->in_pos;
        size_t avail = r->in_len - r->in_pos, used;
        if (r->fmt == IMP_JSONL || toobig) {
            /* Line framing; also how an oversized CSV record is skipped (import.h). */
            const unsigned char *nl = memchr(p, '\n', avail);
            used = nl ? (size_t)(nl - p) : avail;
            ended = nl != NULL;
        } else {
            /* Scan no further than one byte past the cap, so that an oversized record is detected
             * at the byte that passes it and skipped from there by line framing. */
            size_t room = IMP_MAX_RECORD - r->rec.len;
            size_t limit = avail < room + 1 ? avail : room + 1;
            used = 0;
            while (used < limit) {
                unsigned char c = p[used];
                if (c == '\n') {
                    if (st != CSV_QUOTED) {
                        ended = true;
                        break;
                    }
                    r->line++; /* a line break inside a quoted field */
                }
                st = csv_step(st, c);
                used++;
            }
        }
        rec_append(r, p, used, &toobig);
        r->in_pos += used;
        if (ended) {
            r->in_pos++; /* the '\n' */
            r->line++;
        }
    }
    if (r->failed) {
        ev_error_set(err, "io_error", "", "reading the file failed");
        return -1;
    }
    if (!any) return 0;
    if (toobig) {
        ev_error_set(err, "record_too_large", "", "the record is longer than %d bytes",
                     IMP_MAX_RECORD);
        return -1;
    }
    if (r->fmt == IMP_CSV && st == CSV_QUOTED) {
        ev_error_set(err, "invalid_csv", "",
                     "a quoted field is not closed before the end of the file");
        return -1;
    }
    /* "\r\n" line breaks: the '\r' belongs to the break, unless it is inside a quoted field (and a
     * record that ended outside quotes cannot end inside one). */
    if (r->rec.len && r->rec.data[r->rec.len - 1] == '\r') r->rec.data[--r->rec.len] = '\0';
    return 1;
}

/* Prefixes err's message with the record's line. */
static void at_line(ev_error *err, long line) {
    if (!err) return;
    char msg[sizeof err->message];
    /* A message cut short at the end still leads with its line, which matters more. */
    if (snprintf(msg, sizeof msg, "line %ld: %s", line, err->message) >= (int)sizeof msg)
        msg[sizeof msg - 1] = '\0';
    memcpy(err->message, msg, sizeof msg);
}

imp_format imp_reader_format(const imp_reader *r) {
    return r->fmt;
}

void imp_close(imp_reader *r) {
    if (!r) return;
    js_free(&r->scan);
    buf_free(&r->rec);
    imp_fields_free(&r->fields);
    imp_columns_free(r->cols);
    free(r);
}

imp_reader *imp_open(FILE *f, imp_format fmt, ev_error *err) {
    imp_reader *r = calloc(1, sizeof *r);
    if (!r) {
        ev_error_set(err, "internal", "", "out of memory opening the file");
        return NULL;
    }
    r->f = f;
    r->line = 1;
    js_init(&r->scan, 0);
    buf_init(&r->rec, IMP_MAX_RECORD);
    imp_fields_init(&r->fields);

    fill(r);
    if (r->failed) {
        ev_error_set(err, "io_error", "", "reading the file failed");
        goto fail;
    }
    if (r->in_len - r->in_pos >= 3 && memcmp(r->in + r->in_pos, "\xEF\xBB\xBF", 3) == 0)
        r->in_pos += 3;
    if (fmt == IMP_AUTO) {
        fmt = imp_detect((const char *)r->in + r->in_pos, r->in_len - r->in_pos);
        if (fmt == IMP_AUTO) fmt = IMP_JSONL;
    }
    r->fmt = fmt;
    if (fmt != IMP_CSV) return r;

    /* The header: the first record that is not empty. */
    long line = r->line;
    int rc;
    do
        rc = read_record(r, &line, err);
    while (rc == 1 && r->rec.len == 0);
    if (rc == 0) {
        ev_error_set(err, "invalid_csv", "", "the CSV file has no header row");
        goto fail;
    }
    if (rc < 0 || imp_csv_split(r->rec.data, r->rec.len, &r->fields, err) ||
        !(r->cols = imp_columns_new(&r->fields, err))) {
        at_line(err, line);
        goto fail;
    }
    return r;
fail:
    imp_close(r);
    return NULL;
}

/* A JSONL record normalised from its scanned text, when the fast path takes it: the type rule of
 * default_type() applied to the tokens (a record without a type that names an event is a track
 * event), then ev_normalize_text(). false leaves the record to jansson. */
static bool scanned_event(imp_reader *r, const char *s, size_t n, const ev_envelope *env,
                          ev_event *out) {
    js_doc *d = &r->scan;
    if (n > IMP_MAX_RECORD || js_parse(d, s, n, EV_MAX_DEPTH) || d->tok[0].kind != JS_OBJECT)
        return false;
    int type = EV_NTYPES;
    if (!js_get(d, 0, "type", 4)) {
        uint32_t e = js_get(d, 0, "event", 5);
        if (e && d->tok[e].kind == JS_STRING && d->tok[e].len > 0) type = EV_TRACK;
    }
    return ev_normalize_text(d, 0, type, env, out) == 0;
}

/* The record loop of imp_next() and imp_next_event(): the next record that is not blank, as a JSON
 * object in *out (returns 1); or, given env, a JSONL record the fast path takes, normalised into
 * *ev instead (returns 2). 0 at the end, -1 for a bad record. */
static int next_record(imp_reader *r, const ev_envelope *env, ev_event *ev, json_t **out,
                       long *line_no, ev_error *err) {
    *out = NULL;
    for (;;) {
        long line = r->line;
        int rc = r->failed ? 0 : read_record(r, &line, err);
        if (line_no) *line_no = rc ? line : r->line;
        if (rc == 0) return 0;
        if (rc < 0) {
            at_line(err, line);
            return -1;
        }
        const char *s = buf_str(&r->rec);
        size_t n = r->rec.len;
        if (r->fmt == IMP_JSONL) {
            if (env && scanned_event(r, s, n, env, ev)) return 2;
            rc = imp_parse_jsonl(s, n, out, err);
        } else if (n == 0) {
            rc = 0;
        } else if (imp_csv_split(s, n, &r->fields, err)) {
            rc = -1;
        } else {
            rc = imp_csv_event(r->cols, &r->fields, out, err);
        }
        if (rc < 0) at_line(err, line);
        if (rc != 0) return rc;
    }
}

int imp_next(imp_reader *r, json_t **out, long *line_no, ev_error *err) {
    return next_record(r, NULL, NULL, out, line_no, err);
}

int imp_next_event(imp_reader *r, const ev_envelope *env, ev_event *out, long *line_no,
                   ev_error *err) {
    memset(out, 0, sizeof *out);
    json_t *v;
    int rc = next_record(r, env, out, &v, line_no, err);
    if (rc != 1) return rc == 2 ? 1 : rc;
    rc = ev_normalize(v, EV_NTYPES, env, out, err);
    json_decref(v);
    return rc ? -1 : 1;
}
