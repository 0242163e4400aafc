/* Unit tests for ingest/import: format detection, JSONL lines, RFC 4180 CSV, header mapping, the
 * reader's framing, line numbers and limits on hostile files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest/import.h"

static json_t *parse(const char *text) {
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v) fail_msg("test JSON does not parse: %s: %s", e.text, text);
    return v;
}

static void assert_json(const json_t *got, const char *expect_text) {
    json_t *expect = parse(expect_text);
    if (!json_equal(got, expect)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        fail_msg("got %s, expected %s", g ? g : "(null)", expect_text);
    }
    json_decref(expect);
}

/* ---- detection and JSONL ---- */

static void test_detect(void **state) {
    (void)state;
    static const struct {
        const char *data;
        size_t n;
        imp_format fmt;
    } cases[] = {
        {"{\"a\":1}", 7, IMP_JSONL},
        {"\n\r\n  \t{", 7, IMP_JSONL},
        {"\xEF\xBB\xBF{}", 5, IMP_JSONL},
        {"type,event", 10, IMP_CSV},
        {"\xEF\xBB\xBFtype", 7, IMP_CSV},
        {"\"type\",event", 12, IMP_CSV},
        {"[{}]", 4, IMP_CSV},
        {"", 0, IMP_AUTO},
        {" \n\t", 3, IMP_AUTO},
        {"\xEF\xBB\xBF", 3, IMP_AUTO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_int_equal(imp_detect(cases[i].data, cases[i].n), cases[i].fmt);
}

static void test_jsonl_line(void **state) {
    (void)state;
    json_t *v;
    ev_error err;
    const char *line = "{\"type\":\"identify\",\"userId\":\"u\"}";
    assert_int_equal(imp_parse_jsonl(line, strlen(line), &v, &err), 1);
    assert_json(v, line);
    json_decref(v);

    /* A record with an event but no type is a track event; one with neither is left alone. */
    line = "{\"event\":\"Order Completed\",\"userId\":\"u\"}";
    assert_int_equal(imp_parse_jsonl(line, strlen(line), &v, &err), 1);
    assert_json(v, "{\"event\":\"Order Completed\",\"userId\":\"u\",\"type\":\"track\"}");
    json_decref(v);
    line = "{\"userId\":\"u\",\"event\":\"\"}";
    assert_int_equal(imp_parse_jsonl(line, strlen(line), &v, &err), 1);
    assert_null(json_object_get(v, "type"));
    json_decref(v);
    line = "{\"type\":\"page\",\"event\":\"x\"}";
    assert_int_equal(imp_parse_jsonl(line, strlen(line), &v, &err), 1);
    assert_string_equal(json_string_value(json_object_get(v, "type")), "page");
    json_decref(v);

    /* Blank lines. */
    assert_int_equal(imp_parse_jsonl("", 0, &v, &err), 0);
    assert_null(v);
    assert_int_equal(imp_parse_jsonl(" \t\r", 3, &v, &err), 0);

    /* Bad lines. */
    static const struct {
        const char *line;
        const char *message;
    } bad[] = {
        {"[1,2]", "each line must be a JSON object"},
        {"{\"a\":", "invalid JSON at column 5: unexpected token near end of file"},
        {"{\"a\":1}}", "invalid JSON at column 8: end of file expected near '}'"},
        {"42", "invalid JSON at column 2: '[' or '{' expected near '42'"},
        {"{\"a\":\"\\u0000\"}", NULL},
        {"{\"a\":\"\xff\"}", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(imp_parse_jsonl(bad[i].line, strlen(bad[i].line), &v, &err), -1);
        assert_null(v);
        assert_string_equal(err.code, "invalid_json");
        if (bad[i].message) assert_string_equal(err.message, bad[i].message);
        /* Whatever jansson quotes from the input, the message is printable ASCII. */
        for (const char *c = err.message; *c; c++)
            assert_true(*c >= 0x20 && *c < 0x7f);
    }
    /* The cap applies to the pure function too. */
    assert_int_equal(imp_parse_jsonl("{}", IMP_MAX_RECORD + 1, &v, &err), -1);
    assert_string_equal(err.code, "record_too_large");
}

/* ---- CSV records ---- */

/* Splits rec and compares with the expected fields (a NULL-terminated list). */
static void expect_split(const char *rec, size_t n, const char *const *fields) {
    imp_fields f;
    imp_fields_init(&f);
    ev_error err;
    if (imp_csv_split(rec, n, &f, &err)) fail_msg("split failed: %s", err.message);
    size_t count = 0;
    while (fields[count])
        count++;
    assert_int_equal(f.n, count);
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(f.len[i], strlen(fields[i]));
        assert_memory_equal(imp_field(&f, i), fields[i], f.len[i]);
        assert_int_equal(imp_field(&f, i)[f.len[i]], '\0');
    }
    imp_fields_free(&f);
}

#define SPLIT(rec, ...)                                                                            \
    do {                                                                                           \
        static const char *const expect_[] = {__VA_ARGS__, NULL};                                  \
        expect_split(rec, strlen(rec), expect_);                                                   \
    } while (0)

static void test_csv_split(void **state) {
    (void)state;
    SPLIT("a,b,c", "a", "b", "c");
    SPLIT("", "");
    SPLIT(",", "", "");
    SPLIT("a,,", "a", "", "");
    SPLIT("\"a,b\",c", "a,b", "c");
    SPLIT("\"he said \"\"hi\"\"\",x", "he said \"hi\"", "x");
    SPLIT("\"\"", "");
    SPLIT("\"\",\"\"", "", "");
    SPLIT("\"\"\"\"", "\"");
    SPLIT("\"line1\nline2\",z", "line1\nline2", "z");
    SPLIT("\"crlf\r\ninside\"", "crlf\r\ninside");
    SPLIT("ab\"c,d", "ab\"c", "d");     /* a quote inside an unquoted field is literal */
    SPLIT(" \"a\" ,b", " \"a\" ", "b"); /* not quoted: the quote is not at the start */
    SPLIT("caf\xc3\xa9,\xe2\x82\xac", "caf\xc3\xa9", "\xe2\x82\xac");

    /* Fields may hold NUL bytes; lengths say where they end. */
    imp_fields f;
    imp_fields_init(&f);
    ev_error err;
    assert_int_equal(imp_csv_split("a\0b,c", 5, &f, &err), 0);
    assert_int_equal(f.n, 2);
    assert_int_equal(f.len[0], 3);

    /* Errors. */
    static const struct {
        const char *rec, *message;
    } bad[] = {
        {"\"abc", "field 1 has an opening quote but no closing one"},
        {"a,\"b", "field 2 has an opening quote but no closing one"},
        {"\"abc\"x,1", "field 1 has text after its closing quote"},
        {"1,\"b\" ,c", "field 2 has text after its closing quote"},
        {"\"a\"\"", "field 1 has an opening quote but no closing one"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(imp_csv_split(bad[i].rec, strlen(bad[i].rec), &f, &err), -1);
        assert_string_equal(err.code, "invalid_csv");
        assert_string_equal(err.message, bad[i].message);
    }

    /* IMP_MAX_COLUMNS fields are fine, one more is not. */
    char commas[IMP_MAX_COLUMNS + 1];
    memset(commas, ',', IMP_MAX_COLUMNS);
    assert_int_equal(imp_csv_split(commas, IMP_MAX_COLUMNS - 1, &f, &err), 0);
    assert_int_equal(f.n, IMP_MAX_COLUMNS);
    assert_int_equal(imp_csv_split(commas, IMP_MAX_COLUMNS, &f, &err), -1);
    assert_string_equal(err.code, "invalid_csv");
    assert_string_equal(err.message, "a record has more than 1024 fields");
    imp_fields_free(&f);
}

/* ---- CSV header and events ---- */

static imp_columns *header(const char *rec, ev_error *err) {
    imp_fields f;
    imp_fields_init(&f);
    if (imp_csv_split(rec, strlen(rec), &f, err)) fail_msg("split: %s", err->message);
    imp_columns *c = imp_columns_new(&f, err);
    imp_fields_free(&f);
    return c;
}

/* Builds the event of one row under a header; returns imp_csv_event's result. */
static int row_event(const imp_columns *c, const char *rec, json_t **out, ev_error *err) {
    imp_fields f;
    imp_fields_init(&f);
    if (imp_csv_split(rec, strlen(rec), &f, err)) fail_msg("split: %s", err->message);
    int rc = imp_csv_event(c, &f, out, err);
    imp_fields_free(&f);
    return rc;
}

static void test_csv_header_errors(void **state) {
    (void)state;
    static const struct {
        const char *header, *message;
    } cases[] = {
        {"userId,email",
         "unknown header column 'email': use a top-level field (type, event, userId, ...) or "
         "properties.NAME, traits.NAME, context.NAME, integrations.NAME"},
        {"properties",
         "unknown header column 'properties': use a top-level field (type, event, userId, ...) or "
         "properties.NAME, traits.NAME, context.NAME, integrations.NAME"},
        {"foo.bar",
         "header column 'foo.bar' must start with properties., traits., context. or integrations."},
        {"properties.", "header column 'properties.' has an empty segment"},
        {"properties..x", "header column 'properties..x' has an empty segment"},
        {".x",
         "header column '.x' must start with properties., traits., context. or integrations."},
        {"properties.a.b.c.d.e.f.g.h", "header column 'properties.a.b.c.d.e.f.g.h' has more than 8 "
                                       "segments"},
        {"userId,,event", "header column 2 has no name"},
        {"userId, ", "header column 2 has no name"},
        {"userId,userid", "header columns 'userId' and 'userid' overlap"},
        {"traits.address,userId,traits.address.city",
         "header columns 'traits.address' and 'traits.address.city' overlap"},
        {"Traits.a,traits.a", "header columns 'Traits.a' and 'traits.a' overlap"},
        {"user\xffId", "header column 1 is not valid UTF-8 text"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ev_error err = {0};
        imp_columns *c = header(cases[i].header, &err);
        if (c) fail_msg("header %s accepted", cases[i].header);
        assert_string_equal(err.code, "invalid_csv");
        if (strcmp(err.message, cases[i].message))
            fail_msg("header %s: %s", cases[i].header, err.message);
    }
    /* Eight segments are fine, and so are root names in any case and spaces around names. */
    ev_error err;
    imp_columns *c = header(" USERID ,Properties.a.b.c.d.e.f.g,\tcontext.ip", &err);
    assert_non_null(c);
    json_t *v;
    assert_int_equal(row_event(c, "u1,5,1.2.3.4", &v, &err), 1);
    assert_json(v, "{\"userId\":\"u1\",\"properties\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{"
                   "\"g\":5}}}}}}},\"context\":{\"ip\":\"1.2.3.4\"}}");
    json_decref(v);
    imp_columns_free(c);
    imp_columns_free(NULL);
}

static void test_csv_event_mapping(void **state) {
    (void)state;
    ev_error err;
    imp_columns *c = header("type,event,userId,anonymousId,messageId,timestamp,name,previousId,"
                            "groupId,properties.price,properties.quantity,properties.zip,"
                            "properties.note,traits.vip,traits.score,context.ip,context.n,"
                            "integrations.All,properties.big,properties.huge,context.page.url,"
                            "context.page.title",
                            &err);
    assert_non_null(c);
    json_t *v;
    assert_int_equal(row_event(c,
                               "track,Order Completed,00123,,m1,2024-05-01T10:00:00Z,,,,19.99,2,"
                               "007,\" 5\",true,-1e3,1.2.3.4,5,false,99999999999999999999,1e999,"
                               "https://x/y,\"Shop, \"\"best\"\"\"",
                               &v, &err),
                     1);
    /* Ids stay strings, empty cells are left out, only properties and traits are typed; numbers
     * jansson cannot hold (too big an integer, an overflowing real) stay strings. */
    assert_json(v, "{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"00123\","
                   "\"messageId\":\"m1\",\"timestamp\":\"2024-05-01T10:00:00Z\",\"properties\":{"
                   "\"price\":19.99,\"quantity\":2,\"zip\":\"007\",\"note\":\" 5\","
                   "\"big\":\"99999999999999999999\",\"huge\":\"1e999\"},\"traits\":{\"vip\":true,"
                   "\"score\":-1000.0},\"context\":{\"ip\":\"1.2.3.4\",\"n\":\"5\",\"page\":{"
                   "\"url\":\"https://x/y\",\"title\":\"Shop, \\\"best\\\"\"}},\"integrations\":{"
                   "\"All\":\"false\"}}");
    assert_true(json_is_integer(json_object_get(json_object_get(v, "properties"), "quantity")));
    json_decref(v);

    /* A row of empty cells is nothing; the wrong number of fields is an error. */
    assert_int_equal(row_event(c, ",,,,,,,,,,,,,,,,,,,,,", &v, &err), 0);
    assert_null(v);
    assert_int_equal(row_event(c, "a,b", &v, &err), -1);
    assert_string_equal(err.code, "invalid_csv");
    assert_string_equal(err.message, "the record has 2 fields; the header has 22");
    imp_columns_free(c);

    /* Without a type column, a row with an event is a track event. */
    c = header("event,userId,properties.ok", &err);
    assert_int_equal(row_event(c, "Signed Up,u", &v, &err), -1); /* field count */
    assert_int_equal(row_event(c, "Signed Up,u,false", &v, &err), 1);
    assert_json(v, "{\"event\":\"Signed Up\",\"userId\":\"u\",\"type\":\"track\",\"properties\":{"
                   "\"ok\":false}}");
    json_decref(v);
    assert_int_equal(row_event(c, ",u,", &v, &err), 1);
    assert_json(v, "{\"userId\":\"u\"}");
    json_decref(v);

    /* A cell that is not UTF-8, or holds a NUL, is refused with its column. */
    assert_int_equal(row_event(c, "Caf\xe9,u,", &v, &err), -1);
    assert_string_equal(err.code, "invalid_field");
    assert_string_equal(err.field, "event");
    assert_string_equal(err.message,
                        "column 'event' is not valid UTF-8 text (or holds a NUL byte)");
    imp_fields f;
    imp_fields_init(&f);
    assert_int_equal(imp_csv_split("a,u\0v,", 6, &f, &err), 0);
    assert_int_equal(imp_csv_event(c, &f, &v, &err), -1);
    assert_string_equal(err.field, "userId");
    imp_fields_free(&f);
    imp_columns_free(c);
}

/* ---- the reader ---- */

typedef struct reader_case {
    FILE *f;
    imp_reader *r;
} reader_case;

static imp_reader *open_mem(reader_case *rc, const char *data, size_t n, imp_format fmt,
                            ev_error *err) {
    /* fmemopen() refuses a zero size on some libcs; an empty file is a temporary file. */
    rc->f = n ? fmemopen((void *)data, n, "r") : tmpfile();
    assert_non_null(rc->f);
    rc->r = imp_open(rc->f, fmt, err);
    return rc->r;
}

static void close_mem(reader_case *rc) {
    imp_close(rc->r);
    fclose(rc->f);
}

/* Reads the next record and checks its result and line; returns the event (or NULL). */
static json_t *next(imp_reader *r, int expect_rc, long expect_line, ev_error *err) {
    json_t *v = (json_t *)1;
    long line = -1;
    int rc = imp_next(r, &v, &line, err);
    if (rc != expect_rc)
        fail_msg("imp_next returned %d (expected %d) at line %ld: %s", rc, expect_rc, line,
                 rc < 0 ? err->message : "");
    if (expect_line > 0) assert_int_equal(line, expect_line);
    if (rc != 1) assert_null(v);
    return rc == 1 ? v : NULL;
}

static void test_reader_jsonl(void **state) {
    (void)state;
    const char *data = "{\"type\":\"page\",\"userId\":\"u1\"}\r\n"
                       "\n"
                       "{\"type\": oops}\n"
                       "   \r\n"
                       "{\"event\":\"E\",\"userId\":\"u2\"}"; /* no final newline */
    reader_case rc;
    ev_error err;
    assert_non_null(open_mem(&rc, data, strlen(data), IMP_AUTO, &err));
    assert_int_equal(imp_reader_format(rc.r), IMP_JSONL);
    json_t *v = next(rc.r, 1, 1, &err);
    assert_json(v, "{\"type\":\"page\",\"userId\":\"u1\"}");
    json_decref(v);
    next(rc.r, -1, 3, &err);
    assert_string_equal(err.code, "invalid_json");
    assert_string_equal(err.message,
                        "line 3: invalid JSON at column 13: invalid token near 'oops'");
    v = next(rc.r, 1, 5, &err);
    assert_json(v, "{\"event\":\"E\",\"userId\":\"u2\",\"type\":\"track\"}");
    json_decref(v);
    next(rc.r, 0, 0, &err);
    next(rc.r, 0, 0, &err); /* and it stays at the end */
    close_mem(&rc);

    /* An empty file is an empty JSONL file. */
    assert_non_null(open_mem(&rc, "", 0, IMP_AUTO, &err));
    assert_int_equal(imp_reader_format(rc.r), IMP_JSONL);
    next(rc.r, 0, 0, &err);
    close_mem(&rc);

    /* Forcing JSONL on a CSV file makes each line a bad record. */
    data = "type,userId\ntrack,u\n";
    assert_non_null(open_mem(&rc, data, strlen(data), IMP_JSONL, &err));
    next(rc.r, -1, 1, &err);
    next(rc.r, -1, 2, &err);
    next(rc.r, 0, 0, &err);
    close_mem(&rc);
}

static void test_reader_csv(void **state) {
    (void)state;
    const char *data = "\xEF\xBB\xBF"
                       "type,userId,properties.note\r\n"
                       "track,u1,\"two\r\nlines\"\r\n"
                       "\r\n"
                       ",,\n"
                       "identify,u2,\"say \"\"hi\"\"\"\n"
                       "page,u3\n"
                       "page,\"u4\"x,\n"
                       "screen,u5,\"a,b\"";
    reader_case rc;
    ev_error err;
    assert_non_null(open_mem(&rc, data, strlen(data), IMP_AUTO, &err));
    assert_int_equal(imp_reader_format(rc.r), IMP_CSV);
    json_t *v = next(rc.r, 1, 2, &err);
    /* A line break inside quotes is data, kept byte for byte. */
    assert_json(
        v, "{\"type\":\"track\",\"userId\":\"u1\",\"properties\":{\"note\":\"two\\r\\nlines\"}}");
    json_decref(v);
    /* The blank line 4 and the empty row on line 5 are skipped. */
    v = next(rc.r, 1, 6, &err);
    assert_json(
        v,
        "{\"type\":\"identify\",\"userId\":\"u2\",\"properties\":{\"note\":\"say \\\"hi\\\"\"}}");
    json_decref(v);
    next(rc.r, -1, 7, &err);
    assert_string_equal(err.message, "line 7: the record has 2 fields; the header has 3");
    next(rc.r, -1, 8, &err);
    assert_string_equal(err.message, "line 8: field 2 has text after its closing quote");
    v = next(rc.r, 1, 9, &err);
    assert_json(v, "{\"type\":\"screen\",\"userId\":\"u5\",\"properties\":{\"note\":\"a,b\"}}");
    json_decref(v);
    next(rc.r, 0, 0, &err);
    close_mem(&rc);

    /* An unclosed quote at the end of the file. */
    data = "userId,event\nu1,\"never closed\nstill,inside\n";
    assert_non_null(open_mem(&rc, data, strlen(data), IMP_CSV, &err));
    next(rc.r, -1, 2, &err);
    assert_string_equal(err.code, "invalid_csv");
    assert_string_equal(err.message,
                        "line 2: a quoted field is not closed before the end of the file");
    next(rc.r, 0, 0, &err);
    close_mem(&rc);
}

static void test_reader_open_errors(void **state) {
    (void)state;
    reader_case rc;
    ev_error err;
    const char *data = "\n\nuserId,email\nu,a@b.c\n";
    assert_null(open_mem(&rc, data, strlen(data), IMP_AUTO, &err));
    assert_string_equal(err.code, "invalid_csv");
    assert_int_equal(strncmp(err.message, "line 3: unknown header column 'email'", 37), 0);
    fclose(rc.f);

    assert_null(open_mem(&rc, "", 0, IMP_CSV, &err));
    assert_string_equal(err.code, "invalid_csv");
    assert_string_equal(err.message, "the CSV file has no header row");
    fclose(rc.f);

    data = "\"userId,event\n";
    assert_null(open_mem(&rc, data, strlen(data), IMP_CSV, &err));
    assert_string_equal(err.message,
                        "line 1: a quoted field is not closed before the end of the file");
    fclose(rc.f);
}

/* A line past the cap is one bad record; reading goes on with the next line. */
static void test_reader_long_jsonl_line(void **state) {
    (void)state;
    size_t big = IMP_MAX_RECORD + 10;
    const char *tail = "\n{\"type\":\"page\",\"userId\":\"after\"}\n";
    char *data = malloc(big + strlen(tail) + 1);
    data[0] = '{';
    memset(data + 1, ' ', big - 2);
    data[big - 1] = '}';
    strcpy(data + big, tail);
    reader_case rc;
    ev_error err;
    assert_non_null(open_mem(&rc, data, strlen(data), IMP_AUTO, &err));
    next(rc.r, -1, 1, &err);
    assert_string_equal(err.code, "record_too_large");
    assert_string_equal(err.message, "line 1: the record is longer than 1048576 bytes");
    json_t *v = next(rc.r, 1, 2, &err);
    assert_string_equal(json_string_value(json_object_get(v, "userId")), "after");
    json_decref(v);
    next(rc.r, 0, 0, &err);
    close_mem(&rc);

    /* Exactly at the cap is still read. */
    memset(data, ' ', IMP_MAX_RECORD);
    memcpy(data, "{\"type\":\"page\",\"userId\":\"x\"}", 28);
    data[IMP_MAX_RECORD] = '\0';
    assert_non_null(open_mem(&rc, data, IMP_MAX_RECORD, IMP_JSONL, &err));
    v = next(rc.r, 1, 1, &err);
    json_decref(v);
    next(rc.r, 0, 0, &err);
    close_mem(&rc);
    free(data);
}

/* A stray quote cannot swallow the rest of a CSV file: past the cap, the record ends at the next
 * physical line break. */
static void test_reader_long_csv_record(void **state) {
    (void)state;
    const char *head = "event,userId\n\"runaway,";
    const char *tail = "\nSigned Up,u2\n";
    size_t body = IMP_MAX_RECORD + 100;
    char *data = malloc(strlen(head) + body + strlen(tail) + 1);
    strcpy(data, head);
    char *p = data + strlen(head);
    /* Lines of 99 bytes each, all inside the unclosed quote. */
    for (size_t i = 0; i < body; i++)
        p[i] = (i % 100 == 99) ? '\n' : 'a';
    strcpy(p + body, tail);
    reader_case rc;
    ev_error err;
    assert_non_null(open_mem(&rc, data, strlen(data), IMP_AUTO, &err));
    next(rc.r, -1, 2, &err);
    assert_string_equal(err.code, "record_too_large");
    /* The skipped lines inside the quote are still counted: after the cap the scan resumes at the
     * next line break, so every following line is its own (bad) record until the good one. */
    json_t *v = NULL;
    long line = 0;
    int r;
    int bad_records = 0;
    while ((r = imp_next(rc.r, &v, &line, &err)) == -1)
        bad_records++;
    assert_int_equal(r, 1);
    assert_string_equal(json_string_value(json_object_get(v, "userId")), "u2");
    assert_string_equal(json_string_value(json_object_get(v, "type")), "track");
    /* 22 + (IMP_MAX_RECORD + 100) bytes of which every 100th is a line break, then the tail. */
    long expect_line = 2 + (long)(body / 100) + 1;
    assert_int_equal(line, expect_line);
    assert_true(bad_records > 0);
    json_decref(v);
    assert_int_equal(imp_next(rc.r, &v, &line, &err), 0);
    close_mem(&rc);
    free(data);
}

/* imp_next_event() gives what imp_next() and ev_normalize() give, record by record, whether the
 * scanned-text path takes the record or jansson does: the same events byte for byte, the same
 * errors with the same lines. */
static void test_reader_events(void **state) {
    (void)state;
    const char *files[] = {
        /* JSONL: typed and untyped records, a blank line, bad JSON, an invalid event, a numeric id
         * and a duplicate key (both left to jansson), an e-commerce event, no final newline. */
        "{\"type\":\"page\",\"userId\":\"u1\",\"messageId\":\"m1\",\"name\":\"Home\"}\r\n"
        "\n"
        "{\"event\":\"Signed Up\",\"userId\":\"u2\",\"messageId\":\"m2\"}\n"
        "{\"type\": oops}\n"
        "{\"type\":\"track\",\"messageId\":\"m3\"}\n"
        "{\"type\":\"identify\",\"userId\":42,\"messageId\":\"m4\",\"traits\":{\"a\":1}}\n"
        "{\"event\":\"E\",\"userId\":\"u5\",\"messageId\":\"m5\",\"x\":1,\"x\":2}\n"
        "{\"event\":\"\",\"userId\":\"u6\",\"messageId\":\"m6\"}\n"
        "{\"event\":\"Order Completed\",\"userId\":\"u7\",\"messageId\":\"m7\",\"timestamp\":"
        "\"2026-03-02T10:00:00Z\",\"properties\":{\"order_id\":\"o7\",\"total\":\"9.5\"}}",
        /* CSV goes the jansson way. */
        "type,event,userId,messageId,properties.price\ntrack,Viewed,u1,c1,19.99\n,,,c2,\n",
    };
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        reader_case a, b;
        ev_error ea, eb;
        assert_non_null(open_mem(&a, files[f], strlen(files[f]), IMP_AUTO, &ea));
        assert_non_null(open_mem(&b, files[f], strlen(files[f]), IMP_AUTO, &eb));
        ev_envelope env = {.received_ms = 1772445600000LL}; /* 2026-03-02T10:00:00Z */
        size_t records = 0, events = 0;
        for (;;) {
            json_t *v = (json_t *)1;
            long la = -1, lb = -1;
            ev_event ev;
            int ra = imp_next(a.r, &v, &la, &ea);
            int rb = imp_next_event(b.r, &env, &ev, &lb, &eb);
            assert_int_equal(la, lb);
            if (ra == 0) {
                assert_int_equal(rb, 0);
                break;
            }
            records++;
            ev_event want;
            if (ra == 1) {
                bool invalid = ev_normalize(v, EV_NTYPES, &env, &want, &ea) != 0;
                json_decref(v);
                if (invalid) ra = -1;
            }
            assert_int_equal(rb, ra);
            if (ra < 0) {
                assert_string_equal(eb.code, ea.code);
                assert_string_equal(eb.message, ea.message);
                continue;
            }
            events++;
            assert_string_equal(ev.body, want.body);
            assert_true((!ev.json && !want.json) || json_equal(ev.json, want.json));
            assert_true(
                ev.event_name == want.event_name ||
                (ev.event_name && want.event_name && strcmp(ev.event_name, want.event_name) == 0));
            ev_event_free(&want);
            ev_event_free(&ev);
        }
        assert_int_equal(records, f == 0 ? 8 : 2);
        assert_int_equal(events, f == 0 ? 5 : 1);
        close_mem(&a);
        close_mem(&b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_jsonl_line),
        cmocka_unit_test(test_csv_split),
        cmocka_unit_test(test_csv_header_errors),
        cmocka_unit_test(test_csv_event_mapping),
        cmocka_unit_test(test_reader_jsonl),
        cmocka_unit_test(test_reader_csv),
        cmocka_unit_test(test_reader_open_errors),
        cmocka_unit_test(test_reader_long_jsonl_line),
        cmocka_unit_test(test_reader_long_csv_record),
        cmocka_unit_test(test_reader_events),
    };
    return cmocka_run_group_tests_name("import", tests, NULL, NULL);
}
