/* libFuzzer target for store/evlog's recovery, the one parser of bytes read back from disk.
 *
 * The input drives a log: first some groups of records (sizes and ids from the input), then
 * damage to the segment file (bytes overwritten at offsets from the input, as a torn write or a
 * bad disk would leave them), then a reopen. Whatever the damage, recovery must not crash, and
 * every record it still gives must be exactly one that was written with that seq: damage may cost
 * records, never change one. The log must then take a new record and give it back after another
 * reopen. Runs in /dev/shm when it exists, where fdatasync costs nothing. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "store/evlog.h"

#define MAX_RECORDS 64

typedef struct input {
    const uint8_t *p;
    size_t n;
} input;

static unsigned take(input *in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}

typedef struct written {
    char body[300];
    size_t body_len;
    char user[8];
    bool has_user;
} written;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static evlog *open_log(const char *dir) {
    char err[512];
    evlog *l = evlog_open(dir, NULL, err, sizeof err);
    CHECK(l != NULL);
    return l;
}

/* Every record the log gives is the one written with its seq. */
static void check_records(evlog *l, const written *w, int64_t nwritten) {
    CHECK(evlog_last_seq(l) <= nwritten);
    buf scratch = BUF_INIT(0);
    for (int64_t seq = 1; seq <= evlog_last_seq(l); seq++) {
        evlog_rec r;
        int got = evlog_read(l, seq, &r, &scratch);
        if (got != 1) continue;
        const written *x = &w[seq - 1];
        CHECK(r.body_len == x->body_len && memcmp(r.body, x->body, x->body_len) == 0);
        CHECK((r.user_id != NULL) == x->has_user);
        CHECK(!r.user_id || strcmp(r.user_id, x->user) == 0);
    }
    buf_free(&scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char base[64];
    if (!*base)
        snprintf(base, sizeof base, "%s", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    char dir[128];
    snprintf(dir, sizeof dir, "%s/fuzz-evlog-%d", base, (int)getpid());
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    input in = {data, size};
    written w[MAX_RECORDS + 3]; /* and evlog's own record, and the one after the damage */
    int64_t n = 0;

    evlog *l = open_log(dir);
    unsigned groups = take(&in) % 8;
    for (unsigned g = 0; g < groups && n < MAX_RECORDS; g++) {
        unsigned k = 1 + take(&in) % 8;
        for (unsigned i = 0; i < k && n < MAX_RECORDS; i++) {
            written *x = &w[n];
            x->body_len = take(&in) % sizeof x->body;
            for (size_t j = 0; j < x->body_len; j++)
                x->body[j] = (char)('a' + (n + (int64_t)j) % 26);
            x->has_user = take(&in) & 1;
            snprintf(x->user, sizeof x->user, "u%d", (int)n);
            evlog_rec r = {.received_ms = 1000 + n,
                           .type = 1,
                           .user_id = x->has_user ? x->user : NULL,
                           .body = x->body,
                           .body_len = x->body_len};
            CHECK(evlog_append(l, &r) == 0 && r.seq == n + 1);
            n++;
        }
        CHECK(evlog_commit(l) == 0);
    }
    if (take(&in) & 1 && n) { /* an erasure, with a record after it */
        int64_t seq = 1 + take(&in) % n;
        CHECK(evlog_erase(l, &seq, 1) == 0);
        CHECK(evlog_commit(l) == 0);
        w[seq - 1].body_len = (size_t)-1;  /* never read back */
        for (; n < evlog_last_seq(l); n++) /* evlog's own record, when seq was in the last group */
            w[n].body_len = (size_t)-1;
    }
    evlog_close(l);

    /* Damage: (offset, length, byte) triples over the first 24 KiB of the first segment. */
    char path[160];
    snprintf(path, sizeof path, "%s/00000001.log", dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    while (in.n >= 4) {
        long off = (long)((take(&in) << 8 | take(&in)) % (24 * 1024));
        unsigned len = 1 + take(&in) % 64;
        int byte = (int)take(&in);
        fseek(f, off, SEEK_SET);
        for (unsigned i = 0; i < len; i++)
            fputc(byte, f);
    }
    fclose(f);

    l = open_log(dir);
    check_records(l, w, n);
    int64_t last = evlog_last_seq(l);
    written *x = &w[last];
    x->body_len = 5;
    memcpy(x->body, "after", 5);
    x->has_user = false;
    evlog_rec r = {.received_ms = 5000, .type = 2, .body = x->body, .body_len = 5};
    CHECK(evlog_append(l, &r) == 0 && r.seq == last + 1);
    CHECK(evlog_commit(l) == 0);
    evlog_close(l);
    l = open_log(dir);
    CHECK(evlog_last_seq(l) == last + 1);
    check_records(l, w, last + 1);
    evlog_close(l);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
