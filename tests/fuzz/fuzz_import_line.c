/* libFuzzer target for ingest/import: the CSV splitter, the JSONL line parser and a whole reader.
 *
 * The input is used three ways: as one CSV record, as one JSONL line, and as a whole file read with
 * format detection (each event read is also fed to ev_normalize, as `engaged import` does).
 *
 * Invariants: a split record re-encoded (every field quoted, quotes doubled) splits back into the
 * same fields; the fields hold no more bytes than the record; a JSONL line that parses is an
 * object; the reader makes progress (never more results than bytes + 2) and every event it returns
 * is a JSON object that serialises; error messages are non-empty. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ingest/import.h"

static void fuzz_split(const char *data, size_t size) {
    imp_fields f, g;
    imp_fields_init(&f);
    imp_fields_init(&g);
    ev_error err;
    if (imp_csv_split(data, size, &f, &err) == 0) {
        CHECK(f.n >= 1 && f.n <= IMP_MAX_COLUMNS);
        size_t total = 0;
        for (size_t i = 0; i < f.n; i++)
            total += f.len[i];
        CHECK(total <= size);
        /* Re-encode: "field","field",... with every quote doubled. */
        buf enc = BUF_INIT(0);
        for (size_t i = 0; i < f.n; i++) {
            if (i) buf_putc(&enc, ',');
            buf_putc(&enc, '"');
            const char *s = imp_field(&f, i);
            for (size_t k = 0; k < f.len[i]; k++) {
                if (s[k] == '"') buf_putc(&enc, '"');
                buf_putc(&enc, s[k]);
            }
            buf_putc(&enc, '"');
        }
        int rc = imp_csv_split(buf_str(&enc), enc.len, &g, &err);
        /* Quoting may push a record of short fields past the cap; otherwise it must split back. */
        if (enc.len <= IMP_MAX_RECORD) {
            CHECK(rc == 0);
            CHECK(g.n == f.n);
            for (size_t i = 0; i < f.n; i++) {
                CHECK(g.len[i] == f.len[i]);
                CHECK(memcmp(imp_field(&g, i), imp_field(&f, i), f.len[i]) == 0);
            }
        }
        buf_free(&enc);
    } else {
        CHECK(err.message[0] != '\0');
    }
    imp_fields_free(&f);
    imp_fields_free(&g);
}

static void fuzz_jsonl(const char *data, size_t size) {
    json_t *v;
    ev_error err;
    int rc = imp_parse_jsonl(data, size, &v, &err);
    CHECK(rc >= -1 && rc <= 1);
    if (rc == 1) {
        CHECK(json_is_object(v));
        json_decref(v);
    } else {
        CHECK(v == NULL);
        if (rc < 0) CHECK(err.message[0] != '\0');
    }
}

static void fuzz_reader(const uint8_t *data, size_t size) {
    FILE *f = fmemopen((void *)data, size, "r");
    if (!f) return;
    ev_error err;
    imp_reader *r = imp_open(f, IMP_AUTO, &err);
    if (!r) {
        CHECK(err.message[0] != '\0');
        fclose(f);
        return;
    }
    size_t results = 0;
    long last_line = 0;
    for (;;) {
        json_t *v;
        long line = 0;
        int rc = imp_next(r, &v, &line, &err);
        CHECK(++results <= size + 2);
        if (rc == 0) break;
        CHECK(line >= 1 && line >= last_line);
        last_line = line;
        if (rc < 0) {
            CHECK(v == NULL);
            CHECK(strncmp(err.message, "line ", 5) == 0);
            continue;
        }
        CHECK(rc == 1 && json_is_object(v));
        char *text = json_dumps(v, JSON_COMPACT);
        CHECK(text != NULL);
        free(text);
        ev_envelope env = {.received_ms = 1714564800000LL};
        ev_event ev;
        if (ev_normalize(v, EV_NTYPES, &env, &ev, &err) == 0) ev_event_free(&ev);
        json_decref(v);
    }
    imp_close(r);
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    fuzz_split((const char *)data, size);
    fuzz_jsonl((const char *)data, size);
    fuzz_reader(data, size);
    return 0;
}
