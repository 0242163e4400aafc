#include "reco/sfile.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/hash.h"
#include "util/vec.h"

/* ---------------------------------------------------------------------------------------------- */
/* A line reader whose buffer never grows past the cap                                            */
/* ---------------------------------------------------------------------------------------------- */

typedef struct lreader {
    FILE *f;
    char *buf;
    size_t cap;        /* buffer size: max_line + 1 */
    size_t start, end; /* unread bytes */
    bool eof;
    size_t too_long;
} lreader;

/* The next line without its terminator (and without a CR before LF). Returns 1, or 0 at the end.
 * Lines longer than the cap are skipped whole and counted in too_long. */
static int lr_next(lreader *r, const char **line, size_t *len) {
    bool skipping = false;
    for (;;) {
        char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (nl) {
            size_t s = r->start, n = (size_t)(nl - (r->buf + s));
            r->start = s + n + 1;
            if (skipping) {
                skipping = false;
                continue;
            }
            if (n && r->buf[s + n - 1] == '\r') n--;
            *line = r->buf + s;
            *len = n;
            return 1;
        }
        if (skipping) r->start = r->end; /* still inside the overlong line: drop what we have */
        if (r->eof) {
            if (r->start == r->end || skipping) return 0;
            size_t s = r->start, n = r->end - s;
            r->start = r->end;
            if (n && r->buf[s + n - 1] == '\r') n--;
            *line = r->buf + s;
            *len = n;
            return 1;
        }
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        if (r->end == r->cap) {
            /* A full buffer without a newline: the line is over the cap. */
            r->too_long++;
            skipping = true;
            r->start = r->end = 0;
        }
        size_t got = fread(r->buf + r->end, 1, r->cap - r->end, r->f);
        r->end += got;
        if (got == 0) r->eof = true;
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Growable arrays and parsing */
/* ---------------------------------------------------------------------------------------------- */

bool sfile_parse_item(const char *s, size_t n, uint32_t *out) {
    if (n == 0 || n > 10) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v >= UINT32_MAX) return false;
    *out = (uint32_t)v;
    return true;
}

/* A time in seconds, as milliseconds. Accepts what strtod does, bounded to +-1e12 s. */
static bool parse_time(const char *s, size_t n, int64_t *ms) {
    char tmp[64];
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end != tmp + n || errno || !isfinite(v) || fabs(v) > 1e12) return false;
    *ms = (int64_t)llround(v * 1000.0);
    return true;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

typedef struct acc {
    sfile_data *d;
    size_t items_alloc, times_alloc, sess_alloc, keys_alloc, lens_alloc, cases_alloc;
} acc;

static bool push_item(acc *a, uint32_t item, int64_t t) {
    sfile_data *d = a->d;
    if (vec_reserve((void **)&d->items, &a->items_alloc, d->nitems + 1, sizeof *d->items) ||
        vec_reserve((void **)&d->times, &a->times_alloc, d->nitems + 1, sizeof *d->times))
        return false;
    d->items[d->nitems] = item;
    d->times[d->nitems++] = t;
    return true;
}

static bool push_session(acc *a, size_t off, uint32_t len, uint64_t key) {
    sfile_data *d = a->d;
    if (vec_reserve((void **)&d->sess_off, &a->sess_alloc, d->nsess + 1, sizeof *d->sess_off) ||
        vec_reserve((void **)&d->sess_len, &a->lens_alloc, d->nsess + 1, sizeof *d->sess_len) ||
        vec_reserve((void **)&d->sess_key, &a->keys_alloc, d->nsess + 1, sizeof *d->sess_key))
        return false;
    d->sess_off[d->nsess] = off;
    d->sess_len[d->nsess] = len;
    d->sess_key[d->nsess++] = key;
    return true;
}

static bool push_case(acc *a, size_t off, uint32_t n, uint32_t target) {
    sfile_data *d = a->d;
    if (vec_reserve((void **)&d->cases, &a->cases_alloc, d->ncases + 1, sizeof *d->cases))
        return false;
    d->cases[d->ncases++] = (sfile_case){off, n, target};
    return true;
}

/* Parses the space-separated item ids of s[0..n) onto the item array. Returns the count, or -1 for
 * a malformed token (the items pushed so far are then taken back by the caller). */
static long parse_items(acc *a, const char *s, size_t n, int64_t t, bool *nomem) {
    long count = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == n) break;
        size_t j = i;
        while (j < n && s[j] != ' ' && s[j] != '\t')
            j++;
        uint32_t v;
        if (!sfile_parse_item(s + i, j - i, &v)) return -1;
        if (!push_item(a, v, t)) {
            *nomem = true;
            return -1;
        }
        count++;
        i = j;
    }
    return count;
}

/* ---------------------------------------------------------------------------------------------- */
/* SR-GNN text */
/* ---------------------------------------------------------------------------------------------- */

static int srgnn_line(acc *a, sfile_role role, const char *s, size_t n) {
    sfile_data *d = a->d;
    size_t mark = d->nitems;
    bool nomem = false;
    int64_t t = (int64_t)d->lines;
    if (role == SFILE_TRAIN) {
        if (memchr(s, '\t', n)) goto bad;
        long c = parse_items(a, s, n, t, &nomem);
        if (c <= 0) goto bad;
        if (!push_session(a, mark, (uint32_t)c, (uint64_t)d->lines)) return -1;
        return 0;
    }
    const char *tab = memchr(s, '\t', n);
    if (!tab) goto bad;
    size_t pn = (size_t)(tab - s);
    uint32_t target;
    size_t tn = n - pn - 1;
    /* Tolerate spaces around the target; nothing else. */
    const char *ts = tab + 1;
    while (tn && *ts == ' ')
        ts++, tn--;
    while (tn && ts[tn - 1] == ' ')
        tn--;
    if (!sfile_parse_item(ts, tn, &target)) goto bad;
    long c = parse_items(a, s, pn, t, &nomem);
    if (c <= 0) goto bad;
    if (!push_session(a, mark, (uint32_t)c, (uint64_t)d->lines) ||
        !push_case(a, mark, (uint32_t)c, target))
        return -1;
    return 0;
bad:
    if (nomem) return -1;
    d->nitems = mark;
    d->skipped++;
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* session-rec TSV */
/* ---------------------------------------------------------------------------------------------- */

typedef struct row {
    uint64_t key;
    int64_t t;
    uint32_t item;
    uint32_t seq; /* row number: keeps file order among equal times */
} row;

static int cmp_row(const void *pa, const void *pb) {
    const row *a = pa, *b = pb;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    if (a->t != b->t) return a->t < b->t ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

typedef struct sspan {
    size_t first; /* index of the session's first row after sorting */
    uint32_t len;
} sspan;

static const row *g_rows; /* qsort has no context argument; the sort below is single-threaded */

static int cmp_span(const void *pa, const void *pb) {
    const sspan *a = pa, *b = pb;
    const row *ra = &g_rows[a->first], *rb = &g_rows[b->first];
    if (ra->t != rb->t) return ra->t < rb->t ? -1 : 1;
    return ra->seq < rb->seq ? -1 : ra->seq > rb->seq;
}

/* Splits s[0..n) at tabs into at most max fields; returns the number found. */
static int split_tabs(const char *s, size_t n, const char **f, size_t *fl, int max) {
    int k = 0;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < n && s[j] != '\t')
            j++;
        if (k < max) {
            f[k] = s + i;
            fl[k] = j - i;
        }
        k++;
        if (j >= n) break;
        i = j + 1;
    }
    return k;
}

#define TSV_MAX_COLS 64

static bool is_header(const char *s, size_t n, int col[3]) {
    const char *f[TSV_MAX_COLS];
    size_t fl[TSV_MAX_COLS];
    int k = split_tabs(s, n, f, fl, TSV_MAX_COLS);
    if (k > TSV_MAX_COLS) return false;
    static const char *const names[3] = {"SessionId", "ItemId", "Time"};
    col[0] = col[1] = col[2] = -1;
    for (int i = 0; i < k; i++)
        for (int c = 0; c < 3; c++)
            if (fl[i] == strlen(names[c]) && !strncasecmp(f[i], names[c], fl[i])) col[c] = i;
    return col[0] >= 0 && col[1] >= 0 && col[2] >= 0;
}

static int tsv_finish(acc *a, row *rows, size_t nrows, char *err, size_t errlen) {
    sfile_data *d = a->d;
    qsort(rows, nrows, sizeof *rows, cmp_row);
    sspan *sp = NULL;
    size_t nsp = 0, sp_alloc = 0;
    for (size_t i = 0; i < nrows;) {
        size_t j = i;
        while (j < nrows && rows[j].key == rows[i].key)
            j++;
        if (vec_reserve((void **)&sp, &sp_alloc, nsp + 1, sizeof *sp)) goto nomem;
        size_t len = j - i;
        sp[nsp++] = (sspan){i, len > UINT32_MAX ? UINT32_MAX : (uint32_t)len};
        i = j;
    }
    g_rows = rows;
    qsort(sp, nsp, sizeof *sp, cmp_span);
    g_rows = NULL;
    for (size_t s = 0; s < nsp; s++) {
        size_t off = d->nitems;
        for (uint32_t e = 0; e < sp[s].len; e++) {
            const row *r = &rows[sp[s].first + e];
            if (!push_item(a, r->item, r->t)) goto nomem;
        }
        if (!push_session(a, off, sp[s].len, rows[sp[s].first].key)) goto nomem;
    }
    free(sp);
    return 0;
nomem:
    free(sp);
    set_err(err, errlen, "out of memory");
    return -1;
}

/* ---------------------------------------------------------------------------------------------- */

void sfile_free(sfile_data *d) {
    free(d->items);
    free(d->times);
    free(d->sess_off);
    free(d->sess_len);
    free(d->sess_key);
    free(d->cases);
    memset(d, 0, sizeof *d);
}

int sfile_read(FILE *f, const char *name, sfile_role role, size_t max_line, sfile_data *out,
               char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!max_line) max_line = SFILE_MAX_LINE;
    lreader r = {.f = f, .cap = max_line + 1};
    r.buf = malloc(r.cap);
    acc a = {.d = out};
    row *rows = NULL;
    size_t nrows = 0, rows_alloc = 0;
    int col[3] = {-1, -1, -1}, maxcol = 0;
    if (!r.buf) goto nomem;

    const char *line;
    size_t len;
    bool first = true;
    while (lr_next(&r, &line, &len)) {
        out->lines++;
        if (first) {
            first = false;
            if (is_header(line, len, col)) {
                out->format = SFILE_TSV;
                for (int c = 0; c < 3; c++)
                    if (col[c] > maxcol) maxcol = col[c];
                continue;
            }
            out->format = SFILE_SRGNN;
        }
        if (out->format == SFILE_SRGNN) {
            if (srgnn_line(&a, role, line, len) < 0) goto nomem;
            continue;
        }
        const char *fv[TSV_MAX_COLS];
        size_t fl[TSV_MAX_COLS];
        int k = split_tabs(line, len, fv, fl, TSV_MAX_COLS);
        row rw;
        if (k <= maxcol || fl[col[0]] == 0 || !sfile_parse_item(fv[col[1]], fl[col[1]], &rw.item) ||
            !parse_time(fv[col[2]], fl[col[2]], &rw.t) || out->lines > UINT32_MAX) {
            out->skipped++;
            continue;
        }
        rw.key = hash64_stable(fv[col[0]], fl[col[0]]);
        rw.seq = (uint32_t)out->lines;
        if (vec_reserve((void **)&rows, &rows_alloc, nrows + 1, sizeof *rows)) goto nomem;
        rows[nrows++] = rw;
    }
    if (ferror(f)) {
        set_err(err, errlen, "%s: read error", name);
        goto fail;
    }
    out->too_long = r.too_long;
    out->skipped += r.too_long;
    if (out->format == SFILE_TSV && tsv_finish(&a, rows, nrows, err, errlen) < 0) goto fail;
    free(rows);
    free(r.buf);
    return 0;
nomem:
    set_err(err, errlen, "%s: out of memory", name);
fail:
    free(rows);
    free(r.buf);
    sfile_free(out);
    return -1;
}

int sfile_load(const char *path, sfile_role role, size_t max_line, sfile_data *out, char *err,
               size_t errlen) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = sfile_read(f, path, role, max_line, out, err, errlen);
    fclose(f);
    return rc;
}
