/* Unit tests for store/evlog, written against its header: the on-disk format byte by byte; an empty
 * log; appending, committing and reading back every shape of record; what readers see of an open
 * group; rollback; reopening and the epoch; recovery from a torn last group and from an interrupted
 * erasure, checked on the segment files' bytes; stale bytes of an older epoch or past a gap in seq,
 * crafted with crc32 from the header's format; erasure down to the disk; first_since; segment
 * rollover; reader threads racing the writer; hostile input. Each test works in a temp dir of its
 * own, removed afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "store/evlog.h"

typedef struct fixture {
    char dir[128]; /* the temp dir */
    char log[192]; /* the log's dir inside it, which evlog_open creates */
    evlog *l;
    buf scratch;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/engaged-test-evlog-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->log, sizeof f->log, "%s/log", f->dir);
    buf_init(&f->scratch, 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    if (f->l) evlog_close(f->l);
    buf_free(&f->scratch);
    int rc = test_rmtree(f->dir);
    free(f);
    return rc;
}

static void shut(fixture *f) {
    if (f->l) evlog_close(f->l);
    f->l = NULL;
}

/* Whether this run of the suite writes through the page cache (evlog_opts.buffered): main() runs
 * every test both ways. */
static bool buffered_run;

/* (Re)opens the fixture's log. */
static void reopen(fixture *f, const evlog_opts *opts) {
    char err[512] = "";
    shut(f);
    evlog_opts o = opts ? *opts : (evlog_opts){0};
    o.buffered = buffered_run;
    f->l = evlog_open(f->log, &o, err, sizeof err);
    if (!f->l) fail_msg("evlog_open(%s): %s", f->log, err);
}

/* Moves the fixture to another log dir, for tests that need several fresh logs. */
static void use_log(fixture *f, const char *name) {
    shut(f);
    snprintf(f->log, sizeof f->log, "%s/%s", f->dir, name);
}

/* ---- records ---- */

static evlog_rec rec(int64_t received, const char *user, const char *anon, const char *mid,
                     const char *body) {
    return (evlog_rec){.received_ms = received,
                       .ts_ms = received - 7,
                       .type = 1,
                       .kind = 2,
                       .user_id = user,
                       .anonymous_id = anon,
                       .message_id = mid,
                       .body = body,
                       .body_len = strlen(body)};
}

/* A record whose every field follows from its seq, so that any reader can check one alone: which
 * ids are present cycles with seq, and the body repeats "<seq>;" to a length that varies by seq. */
typedef struct seqrec {
    char user[24], anon[24], mid[24], body[1200];
    evlog_rec r;
} seqrec;

static void seq_rec(seqrec *s, int64_t seq, size_t extra) {
    char tag[24];
    int tl = snprintf(tag, sizeof tag, "%lld;", (long long)seq);
    size_t len = extra + (size_t)(seq * 13 % 200);
    if (len > sizeof s->body) len = sizeof s->body;
    for (size_t i = 0; i < len; i++)
        s->body[i] = tag[i % (size_t)tl];
    snprintf(s->user, sizeof s->user, "user-%lld", (long long)seq);
    snprintf(s->anon, sizeof s->anon, "anon-%lld", (long long)seq);
    snprintf(s->mid, sizeof s->mid, "msg-%lld", (long long)seq);
    s->r = (evlog_rec){.seq = seq,
                       .received_ms = 1000 + seq,
                       .ts_ms = 900 + seq,
                       .type = (int)(seq % 255), /* 255 is evlog's own */
                       .kind = (int)(seq * 7 % 256),
                       .user_id = seq % 4 != 1 ? s->user : NULL,
                       .anonymous_id = seq % 4 != 0 ? s->anon : NULL,
                       .message_id = seq % 4 != 3 ? s->mid : NULL,
                       .body = s->body,
                       .body_len = len};
}

static int str_same(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Returns 0 when got is want, field by field; otherwise -1 with the difference in why. */
static int rec_diff(const evlog_rec *got, const evlog_rec *want, char *why, size_t n) {
    const char *field = NULL;
    if (got->seq != want->seq)
        field = "seq";
    else if (got->received_ms != want->received_ms)
        field = "received_ms";
    else if (got->ts_ms != want->ts_ms)
        field = "ts_ms";
    else if (got->type != want->type || got->kind != want->kind)
        field = "type/kind";
    else if (!str_same(got->user_id, want->user_id))
        field = "user_id";
    else if (!str_same(got->anonymous_id, want->anonymous_id))
        field = "anonymous_id";
    else if (!str_same(got->message_id, want->message_id))
        field = "message_id";
    else if (got->body_len != want->body_len ||
             (want->body_len && (!got->body || memcmp(got->body, want->body, want->body_len))))
        field = "body";
    if (!field) return 0;
    snprintf(why, n,
             "seq %lld: %s differs (got seq %lld received %lld user %s anon %s mid %s len %zu)",
             (long long)want->seq, field, (long long)got->seq, (long long)got->received_ms,
             got->user_id ? got->user_id : "NULL", got->anonymous_id ? got->anonymous_id : "NULL",
             got->message_id ? got->message_id : "NULL", got->body_len);
    return -1;
}

static int seq_diff(const evlog_rec *got, size_t extra, char *why, size_t n) {
    seqrec s;
    seq_rec(&s, got->seq, extra);
    return rec_diff(got, &s.r, why, n);
}

/* Appends r and checks the seq it was given. evlog_append copies the record: the header leaves
 * the caller no duty to keep it, so the tests reuse their buffers at once. */
static void append(fixture *f, evlog_rec *r, int64_t want_seq) {
    if (evlog_append(f->l, r)) fail_msg("evlog_append: %s", evlog_errmsg());
    assert_int_equal(r->seq, want_seq);
}

static void commit(fixture *f) {
    if (evlog_commit(f->l)) fail_msg("evlog_commit: %s", evlog_errmsg());
}

/* Appends seqs first..last as one group and commits it. */
static void append_group(fixture *f, int64_t first, int64_t last, size_t extra) {
    seqrec s;
    for (int64_t q = first; q <= last; q++) {
        seq_rec(&s, q, extra);
        append(f, &s.r, q);
    }
    commit(f);
}

static void expect_read(fixture *f, const evlog_rec *want) {
    evlog_rec got;
    memset(&got, 0, sizeof got);
    int rc = evlog_read(f->l, want->seq, &got, &f->scratch);
    if (rc != 1) fail_msg("evlog_read(%lld) = %d, expected 1", (long long)want->seq, rc);
    char why[256];
    if (rec_diff(&got, want, why, sizeof why)) fail_msg("%s", why);
}

static void expect_seq(fixture *f, int64_t seq, size_t extra) {
    seqrec s;
    seq_rec(&s, seq, extra);
    expect_read(f, &s.r);
}

/* Records 1..n read back as seq_rec() made them. */
static void expect_seqs(fixture *f, int64_t n) {
    for (int64_t seq = 1; seq <= n; seq++)
        expect_seq(f, seq, 0);
}

static void expect_none(fixture *f, int64_t seq) {
    evlog_rec got;
    int rc = evlog_read(f->l, seq, &got, &f->scratch);
    if (rc != 0) fail_msg("evlog_read(%lld) = %d, expected 0", (long long)seq, rc);
}

/* What a scan saw: its seqs in order, each checked against want[seq] or against seq_rec(). */
typedef struct scan_ctx {
    const evlog_rec *want; /* indexed by seq, or NULL */
    int64_t nwant;
    int seqcheck; /* check against seq_rec(seq, extra) */
    size_t extra;
    int stop_at, stop_rc; /* when stop_at: return stop_rc from that call */
    int64_t seqs[16];     /* the first ones seen */
    int64_t n, last;
    char why[256]; /* the first problem, or "" */
} scan_ctx;

static int on_rec(const evlog_rec *r, void *arg) {
    scan_ctx *c = arg;
    if (!c->why[0] && r->seq <= c->last)
        snprintf(c->why, sizeof c->why, "seq %lld after %lld", (long long)r->seq,
                 (long long)c->last);
    if (!c->why[0] && c->want) {
        if (r->seq < 1 || r->seq >= c->nwant)
            snprintf(c->why, sizeof c->why, "unexpected seq %lld", (long long)r->seq);
        else
            rec_diff(r, &c->want[r->seq], c->why, sizeof c->why);
    }
    if (!c->why[0] && c->seqcheck) seq_diff(r, c->extra, c->why, sizeof c->why);
    if (c->n < 16) c->seqs[c->n] = r->seq;
    c->n++;
    c->last = r->seq;
    return c->stop_at && c->n == c->stop_at ? c->stop_rc : 0;
}

static scan_ctx scan(fixture *f, int64_t from, scan_ctx c) {
    int rc = evlog_scan(f->l, from, on_rec, &c);
    if (rc != 0) fail_msg("evlog_scan(%lld) = %d: %s", (long long)from, rc, evlog_errmsg());
    if (c.why[0]) fail_msg("scan from %lld: %s", (long long)from, c.why);
    return c;
}

/* Checks that a scan from `from` sees exactly seqs, in order. */
static void expect_scan(fixture *f, int64_t from, scan_ctx c, const int64_t *seqs, int64_t n) {
    c = scan(f, from, c);
    assert_int_equal(c.n, n);
    for (int64_t i = 0; i < n && i < 16; i++)
        assert_int_equal(c.seqs[i], seqs[i]);
}

/* ---- the bytes on disk ---- */

static uint16_t get16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint32_t get32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static int64_t get64(const unsigned char *p) {
    int64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static void put32(unsigned char *p, uint32_t v) {
    memcpy(p, &v, sizeof v);
}

static void put64(unsigned char *p, int64_t v) {
    memcpy(p, &v, sizeof v);
}

static uint32_t crc(const void *p, size_t n) {
    return (uint32_t)crc32(0L, (const Bytef *)p, (uInt)n);
}

static size_t pad8(size_t n) {
    return (n + 7) & ~(size_t)7;
}

/* The unpadded payload length a header announces: the 0xEE mark, the ids present and the body,
 * each with a NUL. */
static size_t payload_len(const unsigned char *h) {
    unsigned flags = h[48];
    return 1 + get32(h + 36) + 1 + (flags & EVLOG_HAS_USER ? get16(h + 40) + 1u : 0) +
           (flags & EVLOG_HAS_ANON ? get16(h + 42) + 1u : 0) +
           (flags & EVLOG_HAS_MESSAGE ? get16(h + 44) + 1u : 0);
}

static size_t rec_size(const evlog_rec *r) {
    size_t p = 1 + r->body_len + 1;
    if (r->user_id) p += strlen(r->user_id) + 1;
    if (r->anonymous_id) p += strlen(r->anonymous_id) + 1;
    if (r->message_id) p += strlen(r->message_id) + 1;
    return EVLOG_HEADER + pad8(p);
}

/* Recomputes a header's hcrc after a test edits it. */
static void reseal(unsigned char *h) {
    put32(h, crc(h + 4, EVLOG_HEADER - 4));
}

/* Walks a segment's records from its start as far as their headers check, filling off[] with up
 * to max offsets. Returns the number of records; *end gets the offset after the last. */
static int walk(const unsigned char *d, size_t len, size_t *off, int max, size_t *end) {
    size_t at = 0;
    int n = 0;
    while (at + EVLOG_HEADER <= len && get32(d + at) == crc(d + at + 4, EVLOG_HEADER - 4)) {
        if (n < max) off[n] = at;
        n++;
        at += EVLOG_HEADER + pad8(payload_len(d + at));
    }
    *end = at;
    return n;
}

static void seg_path(const fixture *f, int n, char *out, size_t size) {
    snprintf(out, size, "%s/%08d.log", f->log, n);
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s", path);
    struct stat st;
    fstat(fileno(fp), &st);
    unsigned char *d = malloc((size_t)st.st_size + 1);
    assert_non_null(d);
    *len = fread(d, 1, (size_t)st.st_size, fp);
    fclose(fp);
    assert_int_equal(*len, (size_t)st.st_size);
    return d;
}

enum { SEG_RECS = 1200 }; /* more than a 1 MiB segment holds of the 1 KB records of the tests */

/* A segment file's bytes as read at one moment, and the records walk() finds in them: what a test
 * keeps of a segment to patch it, or to compare it with the file after recovery or erasure. */
typedef struct segment {
    char path[512];
    unsigned char *d;
    size_t len;
    size_t off[SEG_RECS]; /* the first records' offsets */
    size_t end;           /* the offset after the last record */
    int n;                /* the records walked, which may be more than off[] holds */
} segment;

/* Reads segment k of f's log into s and walks it; returns the number of records. */
static int seg_read(const fixture *f, int k, segment *s) {
    seg_path(f, k, s->path, sizeof s->path);
    s->d = slurp(s->path, &s->len);
    s->n = walk(s->d, s->len, s->off, SEG_RECS, &s->end);
    return s->n;
}

static void seg_free(segment *s) {
    free(s->d);
    s->d = NULL;
}

static void patch(const char *path, size_t off, const void *p, size_t n) {
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, n, (off_t)off), (ssize_t)n);
    close(fd);
}

/* Fails naming the first byte of d[from, to) that is not zero. */
static void expect_zeros(const unsigned char *d, size_t from, size_t to, const char *what) {
    for (size_t i = from; i < to; i++)
        if (d[i])
            fail_msg("%s: byte %zu is 0x%02x, expected zeros in [%zu, %zu)", what, i, d[i], from,
                     to);
}

/* The segment file now differs from before (its bytes up to before's end) only in record i's
 * payload, which is zeros: the header and every other record are as they were. Frees before. */
static void expect_payload_zeroed(segment *before, int i) {
    const size_t *off = before->off;
    size_t len;
    unsigned char *after = slurp(before->path, &len);
    size_t p = off[i] + EVLOG_HEADER;
    assert_memory_equal(after, before->d, p);
    expect_zeros(after, p, off[i + 1], "the erased payload");
    assert_memory_equal(after + off[i + 1], before->d + off[i + 1], before->end - off[i + 1]);
    seg_free(before);
    free(after);
}

/* The number of the .log files in dir whose bytes contain needle. */
static int count_in_logs(const char *dir, const void *needle, size_t n) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int hits = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), len;
        if (l < 4 || strcmp(e->d_name + l - 4, ".log") != 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unsigned char *data = slurp(path, &len);
        hits += memmem(data, len, needle, n) != NULL;
        free(data);
    }
    closedir(d);
    return hits;
}

/* Counts DIR's segment files, checking that they are named NNNNNNNN.log, numbered from 1 without
 * a gap, and no larger than max bytes each. */
static int count_segments(const char *dir, size_t max) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    long n = 0, top = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 4, ".log") != 0) continue;
        char *end, path[512];
        long k = strtol(e->d_name, &end, 10);
        if (l != 12 || strcmp(end, ".log") != 0 || k < 1) fail_msg("stray file %s", e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        if ((size_t)st.st_size > max)
            fail_msg("%s has %lld bytes, over the %zu maximum", e->d_name, (long long)st.st_size,
                     max);
        n++;
        top = k > top ? k : top;
    }
    closedir(d);
    assert_int_equal(n, top);
    return (int)n;
}

/* ---- tests ---- */

/* Every header field at its offset, the payload's order and NULs, the padding, and the END flag
 * on the group's last record only. */
static void test_disk_format(void **state) {
    fixture *f = *state;
    reopen(f, NULL);
    evlog_rec a = rec(1234, "ada", "anon-1", "m-77", "{\"x\":1}");
    a.type = 200, a.kind = 255;
    evlog_rec b = rec(1240, NULL, "anon-2", NULL, "0123456");
    append(f, &a, 1);
    append(f, &b, 2);
    commit(f);
    shut(f);
    segment seg;
    assert_int_equal(seg_read(f, 1, &seg), 2);
    const unsigned char *h = seg.d;
    static const char pa[] = "\xee"
                             "ada\0anon-1\0m-77\0{\"x\":1}"; /* and the final NUL */
    assert_int_equal(get32(h + 4), crc(pa, sizeof pa));
    assert_int_equal(get64(h + 8), 1);
    assert_int_equal(get64(h + 16), 1234);
    assert_int_equal(get64(h + 24), 1227);
    uint32_t epoch = get32(h + 32);
    assert_int_equal(get32(h + 36), 7);
    assert_int_equal(get16(h + 40), 3);
    assert_int_equal(get16(h + 42), 6);
    assert_int_equal(get16(h + 44), 4);
    assert_int_equal(h[46], 200);
    assert_int_equal(h[47], 255);
    assert_int_equal(h[48], EVLOG_HAS_USER | EVLOG_HAS_ANON | EVLOG_HAS_MESSAGE);
    expect_zeros(h, 49, 56, "header bytes 49..55");
    assert_memory_equal(h + 56, pa, sizeof pa);
    expect_zeros(h, 56 + sizeof pa, 56 + pad8(sizeof pa), "padding");
    assert_int_equal(seg.off[1], 56 + pad8(sizeof pa));

    h = seg.d + seg.off[1];
    static const char pb[] = "\xee"
                             "anon-2\0000123456";
    assert_int_equal(get32(h + 4), crc(pb, sizeof pb));
    assert_int_equal(get64(h + 8), 2);
    assert_int_equal(get32(h + 32), epoch);
    assert_int_equal(get32(h + 36), 7);
    assert_int_equal(get16(h + 40), 0);
    assert_int_equal(get16(h + 42), 6);
    assert_int_equal(get16(h + 44), 0);
    assert_int_equal(h[48], EVLOG_END | EVLOG_HAS_ANON);
    assert_memory_equal(h + 56, pb, sizeof pb);
    assert_int_equal(seg.end, seg.off[1] + 56 + pad8(sizeof pb));
    expect_zeros(seg.d, seg.end, seg.len, "after the last record");
    seg_free(&seg);
}

static void test_empty(void **state) {
    fixture *f = *state;
    for (int round = 0; round < 2; round++) { /* fresh, then reopened */
        reopen(f, NULL);
        assert_int_equal(evlog_last_seq(f->l), 0);
        assert_int_equal(evlog_count(f->l), 0);
        expect_scan(f, 1, (scan_ctx){0}, NULL, 0);
        expect_scan(f, 0, (scan_ctx){0}, NULL, 0);
        expect_none(f, 1);
        expect_none(f, 0);
        expect_none(f, -1);
        assert_true(evlog_first_since(f->l, 0) == INT64_MAX);
        assert_true(evlog_first_since(f->l, INT64_MIN) == INT64_MAX);
        commit(f); /* an empty group publishes nothing */
        assert_int_equal(evlog_last_seq(f->l), 0);
    }
}

/* Records of every shape come back field for field; an open group is invisible; rollback. */
static void test_append_commit_read(void **state) {
    fixture *f = *state;
    reopen(f, NULL);
    unsigned char bin[300]; /* every byte value, NULs included, from the first byte on */
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)(i % 256);
    evlog_rec want[8] = {{0}}; /* by seq */
    want[1] = rec(1000, "u-ada", NULL, "m-1", "{\"e\":1}");
    want[2] = rec(1000, NULL, "a-xyz", "m-2", "{\"e\":2}");
    want[3] = rec(1001, "u-bob", "a-bob", "m-3", "{}");
    want[4] = rec(1002, "u-cmd", NULL, NULL, "merge"); /* a command: no message id */
    want[4].type = 254, want[4].kind = 0, want[4].ts_ms = -5;
    want[5] = rec(1003, NULL, "a-bin", "m-5", "");
    want[5].body = (const char *)bin, want[5].body_len = sizeof bin;
    for (int64_t s = 1; s <= 3; s++)
        append(f, &want[s], s);
    commit(f);
    for (int64_t s = 4; s <= 5; s++)
        append(f, &want[s], s);
    evlog_rec own = rec(1004, NULL, NULL, NULL, "x"); /* type 255 is evlog's own */
    own.type = 255;
    assert_int_equal(evlog_append(f->l, &own), -1);
    assert_non_null(strstr(evlog_errmsg(), "type"));
    static char long_id[70000]; /* over the header's 16-bit length: refused, the group as it was */
    memset(long_id, 'i', sizeof long_id - 1);
    evlog_rec too_long = rec(1004, NULL, long_id, "m-x", "x");
    assert_int_equal(evlog_append(f->l, &too_long), -1);
    assert_non_null(strstr(evlog_errmsg(), "too long"));
    /* group 4..5 is open: readers see 1..3 only */
    assert_int_equal(evlog_last_seq(f->l), 3);
    assert_int_equal(evlog_count(f->l), 3);
    expect_none(f, 4);
    expect_scan(f, 1, (scan_ctx){.want = want, .nwant = 8}, (int64_t[]){1, 2, 3}, 3);
    commit(f);
    assert_int_equal(evlog_last_seq(f->l), 5);
    assert_int_equal(evlog_count(f->l), 5);
    for (int64_t s = 1; s <= 5; s++)
        expect_read(f, &want[s]);
    scan_ctx c = {.want = want, .nwant = 8};
    expect_scan(f, 1, c, (int64_t[]){1, 2, 3, 4, 5}, 5);
    expect_scan(f, 3, c, (int64_t[]){3, 4, 5}, 3);
    expect_scan(f, 5, c, (int64_t[]){5}, 1);
    expect_scan(f, 6, c, NULL, 0);

    /* an open group, then rolled back: its seq is given again */
    evlog_rec dropped = rec(1004, "u-dropped", NULL, "m-x", "gone");
    append(f, &dropped, 6);
    append(f, &dropped, 7);
    assert_int_equal(evlog_last_seq(f->l), 5);
    assert_int_equal(evlog_count(f->l), 5);
    expect_none(f, 6);
    expect_scan(f, 1, c, (int64_t[]){1, 2, 3, 4, 5}, 5);
    evlog_rollback(f->l);
    want[6] = rec(1004, "u-kept", NULL, "m-6", "kept");
    append(f, &want[6], 6);
    commit(f);
    assert_int_equal(evlog_last_seq(f->l), 6);
    assert_int_equal(evlog_count(f->l), 6);
    expect_read(f, &want[6]);
    expect_none(f, 7);
    append(f, &dropped, 7); /* closing with a group open drops it */
    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 6);
    for (int64_t s = 1; s <= 6; s++)
        expect_read(f, &want[s]);
    expect_none(f, 7);
    want[7] = rec(1005, NULL, "a-7", "m-7", "seven");
    append(f, &want[7], 7);
    commit(f);
    expect_read(f, &want[7]);
}

/* Records written after the epoch file was lost or reset still outrank the ones before them: the
 * epoch also starts above the last record's, else the next recovery would refuse everything written
 * since as stale bytes. */
static void test_epoch_file_lost(void **state) {
    fixture *f = *state;
    for (int i = 0; i < 3; i++) /* the records get epoch 3 */
        reopen(f, NULL);
    append_group(f, 1, 2, 0);
    shut(f);
    char path[512];
    snprintf(path, sizeof path, "%s/epoch", f->log);
    assert_int_equal(unlink(path), 0);
    reopen(f, NULL);
    append_group(f, 3, 3, 0);
    shut(f);
    static const char zero[] = "0\n";
    patch(path, 0, zero, 2);
    reopen(f, NULL);
    append_group(f, 4, 4, 0);
    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 4);
    expect_seqs(f, 4);
}

/* A rollback drops the erasures queued with the group: a failed request's deletes must not be
 * carried out by the next commit. */
static void test_rollback_drops_erasures(void **state) {
    fixture *f = *state;
    reopen(f, NULL);
    append_group(f, 1, 2, 0);
    append_group(f, 3, 3, 0);
    seqrec s;
    seq_rec(&s, 4, 0);
    append(f, &s.r, 4);
    assert_int_equal(evlog_erase(f->l, (int64_t[]){1}, 1), 0);
    evlog_rollback(f->l);
    append_group(f, 4, 4, 0);
    expect_seqs(f, 4);
    assert_int_equal(evlog_count(f->l), 4);
}

/* One writer per log: a second open fails, naming the reason, while the first is open, and
 * succeeds once it is closed. */
static void test_one_writer(void **state) {
    fixture *f = *state;
    reopen(f, NULL);
    append_group(f, 1, 1, 0);
    char err[512] = "";
    evlog *second = evlog_open(f->log, NULL, err, sizeof err);
    assert_null(second);
    assert_non_null(strstr(err, "in use by another process"));
    expect_seq(f, 1, 0); /* the first is untouched */
    shut(f);
    second = evlog_open(f->log, NULL, err, sizeof err);
    assert_non_null(second);
    assert_int_equal(evlog_last_seq(second), 1);
    evlog_close(second);
}

/* Reopening restores every record and continues the seqs; the epoch grows at every open. */
static void test_reopen(void **state) {
    fixture *f = *state;
    reopen(f, NULL);
    append_group(f, 1, 4, 0);
    append_group(f, 5, 9, 0);
    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 9);
    assert_int_equal(evlog_count(f->l), 9);
    expect_seqs(f, 9);
    scan_ctx c = scan(f, 1, (scan_ctx){.seqcheck = 1});
    assert_int_equal(c.n, 9);
    append_group(f, 10, 10, 0);
    reopen(f, NULL);
    append_group(f, 11, 12, 0);
    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 12);
    expect_seqs(f, 12);
    assert_int_equal(scan(f, 1, (scan_ctx){.seqcheck = 1}).n, 12);
    shut(f);

    segment seg;
    assert_int_equal(seg_read(f, 1, &seg), 12);
    uint32_t e1 = get32(seg.d + seg.off[0] + 32), e10 = get32(seg.d + seg.off[9] + 32),
             e11 = get32(seg.d + seg.off[10] + 32);
    if (!(e1 < e10 && e10 < e11))
        fail_msg("epochs %u, %u, %u of three opens do not grow", e1, e10, e11);
    assert_int_equal(get32(seg.d + seg.off[8] + 32), e1);
    seg_free(&seg);
}

/* Writes groups 1..a and a+1..b to a fresh log, closes it, and reads its segment into seg. */
static void two_groups(fixture *f, int64_t a, int64_t b, segment *seg) {
    reopen(f, NULL);
    append_group(f, 1, a, 0);
    append_group(f, a + 1, b, 0);
    shut(f);
    assert_int_equal(seg_read(f, 1, seg), b);
}

enum torn { TORN_ZEROED, TORN_FLIPPED, TORN_NO_END };

/* Group A (seqs 1..3) and group B (4..7) are committed; then B's last record is damaged the way a
 * crash in the middle of writing B would leave it. Recovery keeps exactly A, zeroes the records of
 * B it read, and the log goes on at seq 4. */
static void check_torn(fixture *f, enum torn how) {
    segment orig;
    two_groups(f, 3, 7, &orig);
    const size_t *off = orig.off;
    assert_int_equal(orig.d[off[2] + 48] & EVLOG_END, EVLOG_END);
    assert_int_equal(orig.d[off[5] + 48] & EVLOG_END, 0);
    assert_int_equal(orig.d[off[6] + 48] & EVLOG_END, EVLOG_END);
    unsigned char h[EVLOG_HEADER];
    memcpy(h, orig.d + off[6], EVLOG_HEADER);
    if (how == TORN_ZEROED) memset(h, 0, sizeof h);
    if (how == TORN_FLIPPED) h[8] ^= 0x40; /* its seq: hcrc no longer checks */
    if (how == TORN_NO_END) {
        h[48] &= (unsigned char)~EVLOG_END;
        reseal(h);
    }
    patch(orig.path, off[6], h, sizeof h);

    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 3);
    assert_int_equal(evlog_count(f->l), 3);
    expect_seqs(f, 3);
    for (int64_t s = 4; s <= 8; s++)
        expect_none(f, s);
    assert_int_equal(scan(f, 1, (scan_ctx){.seqcheck = 1}).n, 3);
    assert_true(evlog_first_since(f->l, 1004) == INT64_MAX);
    shut(f);

    size_t len;
    unsigned char *d = slurp(orig.path, &len);
    assert_memory_equal(d, orig.d, off[3]); /* A is untouched */
    /* Records 4..6 were read and dropped. Where B's last record does not check (zeroed or
     * flipped), the scan stops before it and the header promises nothing about its bytes: the
     * epoch is what keeps such leftovers out. Without END it is a dropped record like the rest. */
    expect_zeros(d, off[3], how == TORN_NO_END ? orig.end : off[6], "B's dropped records");
    free(d);
    seg_free(&orig);

    /* the log goes on at seq 4, with a record unlike the lost one */
    reopen(f, NULL);
    append_group(f, 4, 4, 40);
    assert_int_equal(evlog_last_seq(f->l), 4);
    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 4);
    assert_int_equal(evlog_count(f->l), 4);
    expect_seqs(f, 3);
    expect_seq(f, 4, 40);
    expect_none(f, 5);
    append_group(f, 5, 6, 40);
    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 6);
    expect_seq(f, 6, 40);
}

static void test_torn_end_zeroed(void **state) {
    check_torn(*state, TORN_ZEROED);
}

static void test_torn_end_flipped(void **state) {
    check_torn(*state, TORN_FLIPPED);
}

static void test_torn_no_end(void **state) {
    check_torn(*state, TORN_NO_END);
}

/* Writes, right after the last record of a log whose records are seqs 1..3, a record with both
 * checksums right: no ids, the given body, seq, epoch and END flag. */
static void craft_after(fixture *f, int64_t seq, int epoch_delta, const char *body) {
    segment seg;
    assert_int_equal(seg_read(f, 1, &seg), 3);
    uint32_t epoch = get32(seg.d + seg.off[2] + 32);
    assert_true(epoch > 0); /* the log was opened twice before writing */
    seg_free(&seg);
    unsigned char r[EVLOG_HEADER + 64] = {0};
    size_t blen = strlen(body);
    assert_true(blen < 64);
    put64(r + 8, seq);
    put64(r + 16, 2000);
    put64(r + 24, 1993);
    put32(r + 32, (uint32_t)((int64_t)epoch + epoch_delta));
    put32(r + 36, (uint32_t)blen);
    r[46] = 1, r[47] = 2, r[48] = EVLOG_END;
    r[EVLOG_HEADER] = 0xee;
    memcpy(r + EVLOG_HEADER + 1, body, blen);
    put32(r + 4, crc(r + EVLOG_HEADER, blen + 2));
    reseal(r);
    patch(seg.path, seg.end, r, EVLOG_HEADER + pad8(blen + 2));
}

/* A log of seqs 1..3 written in its second open, closed, with a crafted record after them. */
static void stale_case(fixture *f, const char *name, int64_t seq, int epoch_delta) {
    use_log(f, name);
    reopen(f, NULL);
    reopen(f, NULL);
    append_group(f, 1, 3, 0);
    shut(f);
    craft_after(f, seq, epoch_delta, "crafted");
    reopen(f, NULL);
}

/* The crafted record is a true continuation when its seq and epoch fit (which shows the crafting
 * right), and is refused with an older epoch or a gap in seq; the log then goes on at seq 4. */
static void test_stale_bytes(void **state) {
    fixture *f = *state;
    stale_case(f, "fits", 4, 0);
    assert_int_equal(evlog_last_seq(f->l), 4);
    evlog_rec want = rec(2000, NULL, NULL, NULL, "crafted");
    want.seq = 4;
    expect_read(f, &want);
    append_group(f, 5, 5, 0);
    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 5);

    stale_case(f, "old-epoch", 4, -1);
    assert_int_equal(evlog_last_seq(f->l), 3);
    assert_int_equal(evlog_count(f->l), 3);
    expect_none(f, 4);
    assert_int_equal(scan(f, 1, (scan_ctx){.seqcheck = 1}).n, 3);
    append_group(f, 4, 4, 0);
    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 4);
    expect_seq(f, 4, 0);

    stale_case(f, "gap", 5, 0);
    assert_int_equal(evlog_last_seq(f->l), 3);
    assert_int_equal(evlog_count(f->l), 3);
    expect_none(f, 4);
    expect_none(f, 5);
    append_group(f, 4, 4, 0);
    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 4);
    expect_seq(f, 4, 0);
    expect_none(f, 5);
}

/* Erasure hides a record from readers, keeps its header and seq, and leaves none of its bytes in
 * any segment; erasing a missing or already erased seq is no error. */
static void test_erase(void **state) {
    fixture *f = *state;
    reopen(f, NULL);
    static const char secret_body[] = "{\"card\":\"SECRET-BODY-7f3a\"}",
                      secret_user[] = "secret-user-91";
    evlog_rec want[8] = {{0}};
    want[1] = rec(1000, "u1", NULL, "m1", "{\"n\":1}");
    want[2] = rec(1001, NULL, "a2", "m2", "{\"n\":2}");
    want[3] = rec(1002, secret_user, "a3", "m3", secret_body);
    want[4] = rec(1003, "u4", NULL, "m4", "{\"n\":4}");
    want[5] = rec(1004, "u5", NULL, "m5", "{\"n\":5}");
    for (int64_t s = 1; s <= 5; s++)
        append(f, &want[s], s);
    commit(f);
    assert_int_equal(count_in_logs(f->log, "SECRET-BODY-7f3a", 16), 1); /* the check can see it */
    assert_int_equal(count_in_logs(f->log, secret_user, strlen(secret_user)), 1);
    shut(f);
    segment before;
    assert_int_equal(seg_read(f, 1, &before), 5);

    reopen(f, NULL);
    /* Seq 3 is in the log's last group: a commit of no records of its own erases it with a record
     * of evlog's own after it, which readers never see. */
    assert_int_equal(evlog_erase(f->l, (int64_t[]){3}, 1), 0);
    commit(f);
    expect_none(f, 3);
    assert_int_equal(evlog_last_seq(f->l), 6);
    assert_int_equal(evlog_count(f->l), 4);
    expect_none(f, 6);
    /* evlog's own record is not erased (it is in the last group, so another follows it) */
    assert_int_equal(evlog_erase(f->l, (int64_t[]){6}, 1), 0);
    commit(f);
    assert_int_equal(evlog_last_seq(f->l), 7);
    assert_int_equal(evlog_count(f->l), 4);
    reopen(f, NULL);
    assert_int_equal(evlog_count(f->l), 4);
    expect_scan(f, 1, (scan_ctx){.want = want, .nwant = 8}, (int64_t[]){1, 2, 4, 5}, 4);
    shut(f);
    segment mid;
    assert_int_equal(seg_read(f, 1, &mid), 7);
    assert_int_equal(mid.d[mid.off[5] + 46], 255);
    assert_int_equal(mid.d[mid.off[6] + 46], 255);
    seg_free(&mid);
    patch(before.path, 0, before.d, before.len); /* back to seqs 1..5, for the rest of the test */
    reopen(f, NULL);
    /* With the record that asks for it (as the erasure command does), it goes. */
    want[6] = rec(1005, "u6", NULL, "m6", "{\"n\":6}");
    append(f, &want[6], 6);
    assert_int_equal(evlog_erase(f->l, (int64_t[]){3, 99, 3}, 3), 0);
    commit(f);
    scan_ctx c = {.want = want, .nwant = 8};
    for (int round = 0; round < 2; round++) { /* then after reopening */
        expect_none(f, 3);
        assert_int_equal(evlog_last_seq(f->l), 6);
        assert_int_equal(evlog_count(f->l), 5);
        expect_scan(f, 1, c, (int64_t[]){1, 2, 4, 5, 6}, 5);
        expect_scan(f, 3, c, (int64_t[]){4, 5, 6}, 3);
        for (int64_t s = 1; s <= 6; s++)
            if (s != 3) expect_read(f, &want[s]);
        assert_int_equal(count_in_logs(f->log, "SECRET-BODY-7f3a", 16), 0);
        assert_int_equal(count_in_logs(f->log, secret_user, strlen(secret_user)), 0);
        reopen(f, NULL);
    }
    /* again, with missing seqs, while a group is open; an erase-only commit of records before the
     * last group is allowed */
    want[7] = rec(1006, "u7", NULL, "m7", "{\"n\":7}");
    append(f, &want[7], 7);
    assert_int_equal(evlog_erase(f->l, (int64_t[]){3, 0, -1, 8, INT64_MAX}, 5), 0);
    assert_int_equal(evlog_erase(f->l, NULL, 0), 0);
    commit(f);
    assert_int_equal(evlog_count(f->l), 6);
    assert_int_equal(evlog_last_seq(f->l), 7);
    expect_read(f, &want[7]);
    assert_int_equal(evlog_erase(f->l, (int64_t[]){6}, 1), 0);
    commit(f);
    expect_none(f, 6);
    assert_int_equal(evlog_count(f->l), 5);
    shut(f);

    /* on disk: the header is kept, the payload is zeros, every other byte is as it was */
    expect_payload_zeroed(&before, 2);
}

/* A record whose payload is all zero bytes (no ids or empty ones, a body of NULs or none) is
 * erased like any other: the header promises read returns 0 for an erased seq and count leaves it
 * out, whatever the record held. */
static void test_erase_zero_payload(void **state) {
    fixture *f = *state;
    reopen(f, NULL);
    evlog_rec want[4] = {{0}};
    want[1] = rec(1, NULL, NULL, NULL, ""); /* a payload of one NUL */
    want[2] = rec(2, "", NULL, NULL, "");
    want[2].body = "\0\0\0", want[2].body_len = 3;
    want[3] = rec(3, "u", NULL, NULL, "x");
    for (int64_t s = 1; s <= 3; s++)
        append(f, &want[s], s);
    commit(f);
    append_group(f, 4, 4, 0); /* the erasure is committed after the group it names */
    assert_int_equal(evlog_erase(f->l, (int64_t[]){1, 2}, 2), 0);
    commit(f);
    for (int round = 0; round < 2; round++) { /* then after reopening */
        expect_none(f, 1);
        expect_none(f, 2);
        expect_read(f, &want[3]);
        assert_int_equal(evlog_count(f->l), 2);
        scan_ctx c = scan(f, 1, (scan_ctx){0});
        assert_int_equal(c.n, 2);
        assert_int_equal(c.seqs[0], 3);
        assert_int_equal(c.seqs[1], 4);
        reopen(f, NULL);
    }
}

/* The last group's END reached the disk but one of its other pages did not (a middle payload
 * reads as zeros): the group was never acknowledged, so it goes whole, and its bytes are zeroed;
 * the log goes on at the seq after the group before. */
static void test_torn_last_group_payload(void **state) {
    fixture *f = *state;
    segment before;
    two_groups(f, 2, 5, &before);
    size_t p = before.off[3] + EVLOG_HEADER; /* seq 4's payload, in the middle of the last group */
    static const unsigned char zeros[16];
    patch(before.path, p, zeros, sizeof zeros);

    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 2);
    assert_int_equal(evlog_count(f->l), 2);
    expect_none(f, 3);
    expect_scan(f, 1, (scan_ctx){.seqcheck = 1}, (int64_t[]){1, 2}, 2);
    shut(f);
    size_t len;
    unsigned char *after = slurp(before.path, &len);
    assert_memory_equal(after, before.d, before.off[2]);
    expect_zeros(after, before.off[2], before.end, "the dropped group");
    free(after);
    seg_free(&before);
    reopen(f, NULL);
    append_group(f, 3, 3, 0);
    reopen(f, NULL);
    assert_int_equal(evlog_last_seq(f->l), 3);
    expect_seq(f, 3, 0);
}

/* A payload that fails its check inside a complete group is an erasure the crash interrupted: it
 * reads as erased, the others are intact, and recovery zeroes it again. */
static void test_interrupted_erase(void **state) {
    fixture *f = *state;
    reopen(f, NULL);
    append_group(f, 1, 2, 0);
    append_group(f, 3, 5, 0);
    append_group(f, 6, 6, 0);
    shut(f);
    segment before;
    assert_int_equal(seg_read(f, 1, &before), 6);
    size_t p = before.off[3] + EVLOG_HEADER; /* seq 4's payload, in the middle of group 3..5 */
    unsigned char x = before.d[p + 3] ^ 0x5a;
    patch(before.path, p + 3, &x, 1);

    for (int round = 0; round < 2; round++) {
        reopen(f, NULL);
        assert_int_equal(evlog_last_seq(f->l), 6);
        assert_int_equal(evlog_count(f->l), 5);
        expect_none(f, 4);
        for (int64_t s = 1; s <= 6; s++)
            if (s != 4) expect_seq(f, s, 0);
        expect_scan(f, 1, (scan_ctx){.seqcheck = 1}, (int64_t[]){1, 2, 3, 5, 6}, 5);
    }
    append_group(f, 7, 7, 0);
    shut(f);
    expect_payload_zeroed(&before, 3);
}

/* first_since is the first seq received at or after a time. It needs received_ms non-decreasing
 * along seq, which the header gives to "the writer", the role it names evlog_append, evlog_erase
 * and evlog_commit: so a smaller received_ms is raised to the one before, and stored so. */
static void test_first_since(void **state) {
    fixture *f = *state;
    reopen(f, NULL);
    static const int64_t received[] = {1000, 1000, 2000, 3000, 3000, 5000};
    for (int64_t i = 0; i < 6; i++) {
        evlog_rec r = rec(received[i], "u", NULL, "m", "{}");
        append(f, &r, i + 1);
        if (i == 2) commit(f);
    }
    assert_true(evlog_first_since(f->l, 2500) == INT64_MAX); /* the open group is unpublished */
    commit(f);
    static const int64_t since[][2] = {
        {INT64_MIN, 1}, {0, 1},    {1000, 1}, {1001, 3}, {2000, 3},         {2999, 4},
        {3000, 4},      {3001, 6}, {4000, 6}, {5000, 6}, {5001, INT64_MAX}, {INT64_MAX, INT64_MAX},
    };
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof since / sizeof since[0]; i++) {
            int64_t got = evlog_first_since(f->l, since[i][0]);
            if (got != since[i][1])
                fail_msg("first_since(%lld) = %lld, expected %lld", (long long)since[i][0],
                         (long long)got, (long long)since[i][1]);
        }
        reopen(f, NULL);
    }
    for (int round = 0; round < 2; round++) { /* then after reopening */
        evlog_rec back = rec(4000, "u", NULL, "m", "late");
        append(f, &back, 7 + round);
        commit(f);
        back.received_ms = 5000, back.ts_ms = 3993; /* the ts_ms given is kept */
        expect_read(f, &back);
        assert_true(evlog_first_since(f->l, 5000) == 6);
        assert_true(evlog_first_since(f->l, 5001) == INT64_MAX);
        reopen(f, NULL);
    }
}

/* With 1 MiB segments, 5,000 records of about 1 KB fill several files, numbered from 1; every
 * record reads back, before and after reopening, and the files hold them in seq order. */
static void test_segments(void **state) {
    fixture *f = *state;
    const size_t max = 1 << 20, extra = 900;
    evlog_opts o = {.max_segment_bytes = max};
    reopen(f, &o);
    size_t total = 0;
    seqrec s;
    for (int64_t g = 0; g < 100; g++) {
        append_group(f, g * 50 + 1, g * 50 + 50, extra);
        for (int64_t q = g * 50 + 1; q <= g * 50 + 50; q++) {
            seq_rec(&s, q, extra);
            total += rec_size(&s.r);
        }
    }
    for (int round = 0; round < 2; round++) {
        assert_int_equal(evlog_last_seq(f->l), 5000);
        assert_int_equal(evlog_count(f->l), 5000);
        for (int64_t q = 1; q <= 5000; q++)
            expect_seq(f, q, extra);
        scan_ctx c = scan(f, 1, (scan_ctx){.seqcheck = 1, .extra = extra});
        assert_int_equal(c.n, 5000);
        c = scan(f, 2500, (scan_ctx){.seqcheck = 1, .extra = extra});
        assert_int_equal(c.n, 2501);
        assert_int_equal(c.seqs[0], 2500);
        reopen(f, &o);
    }
    int nseg = count_segments(f->log, max);
    if ((size_t)nseg < (total + max - 1) / max)
        fail_msg("%d segments for %zu bytes of records", nseg, total);
    /* walk every file: the records run on across them, seq after seq */
    int64_t next = 1;
    for (int k = 1; k <= nseg; k++) {
        segment seg;
        int n = seg_read(f, k, &seg);
        assert_true(n <= SEG_RECS); /* every record's offset is in seg.off */
        for (int i = 0; i < n; i++, next++)
            if (get64(seg.d + seg.off[i] + 8) != next)
                fail_msg("%s record %d has seq %lld, expected %lld", seg.path, i,
                         (long long)get64(seg.d + seg.off[i] + 8), (long long)next);
        expect_zeros(seg.d, seg.end, seg.len, seg.path);
        seg_free(&seg);
    }
    assert_int_equal(next, 5001);
    append_group(f, 5001, 5001, extra);
    reopen(f, &o);
    expect_seq(f, 5001, extra);
    expect_seq(f, 1, extra);
}

/* A torn group that went to a new segment: recovery keeps the groups before it in the previous
 * segment, zeroes it in the new one, and later groups fill both segments in seq order. */
static void test_torn_across_segments(void **state) {
    fixture *f = *state;
    const size_t extra = 900;
    evlog_opts o = {.max_segment_bytes = 1 << 20};
    reopen(f, &o);
    char seg2[512];
    seg_path(f, 2, seg2, sizeof seg2);
    int64_t seq = 0, before = 0;
    segment torn;                   /* segment 2 once the group to tear has landed in it */
    for (int g = 0; g < 200; g++) { /* groups of 20 until one lands in segment 2 */
        before = seq;
        append_group(f, seq + 1, seq + 20, extra);
        seq += 20;
        if (access(seg2, F_OK) != 0) continue;
        int n = seg_read(f, 2, &torn);
        seg_free(&torn);
        if (n == 0) continue;
        assert_int_equal(n, 20); /* a group never spans segments */
        break;
    }
    assert_true(before > 0 && seq == before + 20);
    shut(f);
    unsigned char h[EVLOG_HEADER];
    size_t len;
    unsigned char *d = slurp(seg2, &len);
    memcpy(h, d + torn.off[19], sizeof h);
    free(d);
    h[48] &= (unsigned char)~EVLOG_END;
    reseal(h);
    patch(seg2, torn.off[19], h, sizeof h);

    reopen(f, &o);
    assert_int_equal(evlog_last_seq(f->l), before);
    expect_none(f, before + 1);
    expect_seq(f, before, extra);
    shut(f);
    d = slurp(seg2, &len);
    expect_zeros(d, 0, torn.end, "the torn group in segment 2");
    free(d);
    reopen(f, &o);
    seq = before;
    for (int g = 0; g < 60; g++, seq += 20)
        append_group(f, seq + 1, seq + 20, extra);
    reopen(f, &o);
    assert_int_equal(evlog_last_seq(f->l), seq);
    assert_int_equal(evlog_count(f->l), seq);
    for (int64_t q = 1; q <= seq; q++)
        expect_seq(f, q, extra);
    assert_int_equal(scan(f, 1, (scan_ctx){.seqcheck = 1, .extra = extra}).n, seq);
    assert_true(count_segments(f->log, 1 << 20) >= 2);
}

/* One reader thread's view of the race: the log, the writer's "done" flag, what it did. */
typedef struct race {
    evlog *l;
    const int *done;
    size_t extra; /* of the records' bodies (seq_rec) */
    long reads, scans, bad;
    char why[256]; /* the first failure */
} race;

/* One reader round: last_seq never goes back, the last record and a random earlier one read
 * right, and (every few rounds) a scan of the tail sees every seq up to at least last_seq. */
static int race_round(race *r, buf *scratch, unsigned *seed, int64_t *prev, char *why, size_t n) {
    int64_t last = evlog_last_seq(r->l);
    if (last < *prev) {
        snprintf(why, n, "last_seq went back from %lld to %lld", (long long)*prev, (long long)last);
        return -1;
    }
    *prev = last;
    if (last == 0) return 0;
    int64_t seqs[2] = {last, 1 + rand_r(seed) % last};
    for (int i = 0; i < 2; i++) {
        evlog_rec got;
        memset(&got, 0, sizeof got);
        int rc = evlog_read(r->l, seqs[i], &got, scratch);
        if (rc != 1) {
            snprintf(why, n, "read(%lld) = %d with last_seq %lld", (long long)seqs[i], rc,
                     (long long)last);
            return -1;
        }
        seqrec want;
        seq_rec(&want, seqs[i], r->extra);
        if (rec_diff(&got, &want.r, why, n)) return -1;
        r->reads++;
    }
    if (r->reads % 16) return 0;
    int64_t from = last > 40 ? last - 40 : 1;
    scan_ctx c = {.seqcheck = 1, .extra = r->extra};
    int rc = evlog_scan(r->l, from, on_rec, &c);
    if (rc != 0 || c.why[0] || c.n == 0 || c.seqs[0] != from || c.last < last ||
        c.n != c.last - from + 1) {
        snprintf(why, n, "scan from %lld (last %lld): rc %d, %lld records up to %lld; %.120s",
                 (long long)from, (long long)last, rc, (long long)c.n, (long long)c.last, c.why);
        return -1;
    }
    r->scans++;
    return 0;
}

static void *race_reader(void *arg) {
    race *r = arg;
    buf scratch = BUF_INIT(0);
    unsigned seed = 7;
    int64_t prev = 0;
    char why[256];
    for (int done = 0; !done;) {
        done = __atomic_load_n(r->done, __ATOMIC_ACQUIRE);
        if (race_round(r, &scratch, &seed, &prev, why, sizeof why) && r->bad++ == 0)
            memcpy(r->why, why, sizeof why);
    }
    buf_free(&scratch);
    return NULL;
}

/* Readers racing the writer never see a published record they cannot read, or read it wrong. */
static void test_concurrent_readers(void **state) {
    fixture *f = *state;
    evlog_opts o = {.max_segment_bytes = 1 << 20};
    reopen(f, &o);
    int done = 0;
    const size_t extra = 600; /* with 1 MiB segments, the readers cross several */
    race r[2] = {{.l = f->l, .done = &done, .extra = extra},
                 {.l = f->l, .done = &done, .extra = extra}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race_reader, &r[i]), 0);
    int64_t seq = 0;
    const char *failed = NULL; /* no asserts until the readers are joined */
    seqrec s;
    for (int g = 0; g < 2000 && !failed; g++) {
        for (int i = 0; i <= g % 4 && !failed; i++) {
            seq_rec(&s, ++seq, extra);
            if (evlog_append(f->l, &s.r) || s.r.seq != seq) failed = "append";
        }
        if (!failed && evlog_commit(f->l)) failed = "commit";
    }
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    if (failed) fail_msg("%s of seq %lld failed: %s", failed, (long long)seq, evlog_errmsg());
    for (int i = 0; i < 2; i++) {
        if (r[i].bad) fail_msg("reader %d: %ld failures; the first: %s", i, r[i].bad, r[i].why);
        assert_true(r[i].reads > 0 && r[i].scans > 0);
    }
    assert_int_equal(evlog_last_seq(f->l), seq);
    assert_true(count_segments(f->log, 1 << 20) >= 4);
}

/* Opening where a file is in the way; empty and binary bodies; empty ids; a scan stopped. */
static void test_edges(void **state) {
    fixture *f = *state;
    char path[512], err[256] = "";
    snprintf(path, sizeof path, "%s/plain", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("not a log\n", fp);
    fclose(fp);
    assert_null(evlog_open(path, NULL, err, sizeof err));
    assert_true(err[0] != '\0');
    err[0] = '\0';
    strcat(path, "/sub");
    assert_null(evlog_open(path, NULL, err, sizeof err));
    assert_true(err[0] != '\0');

    reopen(f, NULL);
    evlog_rec want[6] = {{0}};
    want[1] = rec(1, "u", NULL, "m", ""); /* an empty body */
    want[2] = rec(2, NULL, "a", "m", "");
    want[2].body = "a\0b\0\0c", want[2].body_len = 6;
    want[3] = rec(3, "", "", "", "{}"); /* ids present but empty are not absent */
    want[4] = rec(4, NULL, NULL, NULL, "x");
    for (int64_t s = 1; s <= 4; s++)
        append(f, &want[s], s);
    commit(f);
    for (int round = 0; round < 2; round++) {
        for (int64_t s = 1; s <= 4; s++)
            expect_read(f, &want[s]);
        expect_none(f, 0);
        expect_none(f, 5);
        expect_none(f, INT64_MAX);
        expect_none(f, INT64_MIN);
        reopen(f, NULL);
    }
    scan_ctx c = {.want = want, .nwant = 6, .stop_at = 3, .stop_rc = 7};
    assert_int_equal(evlog_scan(f->l, 1, on_rec, &c), 7);
    assert_int_equal(c.n, 3);
    c = (scan_ctx){.stop_at = 1, .stop_rc = 42};
    assert_int_equal(evlog_scan(f->l, 2, on_rec, &c), 42);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.seqs[0], 2);
}

/* A record larger than the largest segment is still stored (the header lets append fail only
 * for memory or over 1 GiB), and one over 1 GiB is refused without taking a seq. */
static void test_big_records(void **state) {
    fixture *f = *state;
    evlog_opts o = {.max_segment_bytes = 1 << 20};
    reopen(f, &o);
    size_t big = 3 << 20;
    char *body = malloc(big);
    assert_non_null(body);
    for (size_t i = 0; i < big; i++)
        body[i] = (char)('a' + i % 23);
    evlog_rec want[4] = {{0}};
    want[1] = rec(1, "u", NULL, "m1", "small");
    want[2] = rec(2, "u", NULL, "m2", "");
    want[2].body = body, want[2].body_len = big;
    want[3] = rec(3, "u", NULL, "m3", "after");
    append(f, &want[1], 1);
    commit(f);
    append(f, &want[2], 2);
    commit(f);
    append(f, &want[3], 3);
    commit(f);
    for (int round = 0; round < 2; round++) {
        for (int64_t s = 1; s <= 3; s++)
            expect_read(f, &want[s]);
        assert_int_equal(scan(f, 1, (scan_ctx){.want = want, .nwant = 4}).n, 3);
        reopen(f, &o);
    }

    size_t huge = ((size_t)1 << 30) + 1; /* zero pages: mapped, never touched unless copied */
    void *m = mmap(NULL, huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    assert_true(m != MAP_FAILED);
    evlog_rec r = rec(4, "u", NULL, "m4", "");
    r.body = m, r.body_len = huge;
    int rc = evlog_append(f->l, &r);
    if (rc != -1) evlog_rollback(f->l);
    munmap(m, huge);
    assert_int_equal(rc, -1);
    assert_true(evlog_errmsg() && evlog_errmsg()[0]);
    evlog_rec next = rec(4, "u", NULL, "m4", "fits");
    append(f, &next, 4);
    commit(f);
    expect_read(f, &next);
    free(body);
}

/* Commits bypass the page cache where the file system has O_DIRECT (evlog_commit()), and go
 * through it when the log is buffered: mincore(2) counts the segment's pages cached. */
static void test_page_cache(void **state) {
    fixture *f = *state;
    reopen(f, NULL);
    char path[512];
    seg_path(f, 1, path, sizeof path);
    int probe = open(path, O_RDONLY | O_DIRECT);
    if (probe < 0 && errno == EINVAL) skip(); /* tmpfs before Linux 6.6: always buffered */
    assert_true(probe >= 0);
    close(probe);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    /* Recovery read the empty segment: its cached zeros are not the commits'. */
    assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    for (int64_t q = 1; q <= 400; q += 40)
        append_group(f, q, q + 39, 900); /* about 400 KiB in 10 commits */
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(map != MAP_FAILED);
    long page = sysconf(_SC_PAGESIZE);
    size_t npages = ((size_t)st.st_size + (size_t)page - 1) / (size_t)page, cached = 0;
    unsigned char *vec = malloc(npages);
    assert_non_null(vec);
    assert_int_equal(mincore(map, (size_t)st.st_size, vec), 0);
    for (size_t i = 0; i < npages; i++)
        cached += vec[i] & 1;
    free(vec);
    munmap(map, (size_t)st.st_size);
    close(fd);
    if (buffered_run)
        assert_true(cached >= 400 * 900 / (size_t)page); /* every page written */
    else
        assert_int_equal(cached, 0);
}

static int set_buffered(void **state) {
    (void)state;
    buffered_run = true;
    return 0;
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_disk_format),
        T(test_empty),
        T(test_append_commit_read),
        T(test_reopen),
        T(test_epoch_file_lost),
        T(test_one_writer),
        T(test_rollback_drops_erasures),
        T(test_torn_end_zeroed),
        T(test_torn_end_flipped),
        T(test_torn_no_end),
        T(test_stale_bytes),
        T(test_erase),
        T(test_erase_zero_payload),
        T(test_interrupted_erase),
        T(test_torn_last_group_payload),
        T(test_first_since),
        T(test_segments),
        T(test_torn_across_segments),
        T(test_concurrent_readers),
        T(test_edges),
        T(test_big_records),
        T(test_page_cache),
    };
    int failed = cmocka_run_group_tests_name("evlog, O_DIRECT", tests, NULL, NULL);
    return failed + cmocka_run_group_tests_name("evlog, buffered", tests, set_buffered, NULL);
}
