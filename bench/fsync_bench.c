/* fsync_bench — what a commit's fdatasync costs on this disk, by how the log file's space was made
 * and with a zero-filler writing beside it: the measurements behind the event log's design
 * (src/store/evlog.h, docs/benchmarks.md "The event log").
 *
 *   build/bench_fsync DIR [WRITES]
 *
 * Each case writes WRITES (default 3000) 4 KiB records one after another into a fresh 64 MiB file
 * in DIR, each followed by fdatasync, with a 200 µs pause between them, and prints the latency's
 * p50, p99, p99.9 and maximum:
 *   - append:     the file grows with every write (its size changes: the journal commits);
 *   - fallocate:  into space from posix_fallocate (unwritten extents: converted at each write);
 *   - prefilled:  into space written with zeros and synced beforehand (data only);
 *   - prefilled while a second thread zero-fills another file: in one burst of 64 MiB then one
 *     sync, as 1 MiB steps each synced, and as 256 KiB steps each followed by a pause four times
 *     as long as the step took: buffered and each synced (evlog's helper until 2026-11-27), then
 *     with O_DIRECT, each synced and not (what evlog's helper does now: one sync at the end). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/clock.h"

#define FILE_BYTES (64u << 20)
#define RECORD 4096

enum space { APPEND, FALLOCATE, PREFILLED };
typedef struct filler {
    const char *dir;
    size_t step; /* 0: no filler */
    bool sync_each, pause, direct;
    atomic_bool stop;
} filler;

static void die(const char *what) {
    fprintf(stderr, "bench_fsync: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void write_zeros(int fd, size_t bytes, size_t step, bool sync_each, bool pause,
                        atomic_bool *stop) {
    static _Alignas(4096) char zeros[FILE_BYTES / 16]; /* aligned for O_DIRECT */
    for (size_t off = 0; off < bytes && !(stop && atomic_load(stop)); off += step) {
        uint64_t t0 = clock_mono_ns();
        if (pwrite(fd, zeros, step, (off_t)off) != (ssize_t)step) die("pwrite");
        if (sync_each && fdatasync(fd)) die("fdatasync");
        if (pause) usleep((useconds_t)((clock_mono_ns() - t0) / 1000 * 4));
    }
    if (fdatasync(fd)) die("fdatasync");
}

/* Files the filler cycles through. Each fill makes a new file, as evlog's helper does: truncating
 * a filled 64 MiB file to refill it frees its blocks, and that stalled the other file's syncs for
 * 15-20 ms (an earlier version of this program did so). */
#define FILL_FILES 16

static void *fill_main(void *arg) {
    filler *f = arg;
    char path[4200];
    int made = 0;
    for (int i = 0; !atomic_load(&f->stop); i = (i + 1) % FILL_FILES) {
        snprintf(path, sizeof path, "%s/bench_fsync.fill.%d", f->dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | (f->direct ? O_DIRECT : 0), 0600);
        if (fd < 0) die(path);
        if (made < FILL_FILES) made++;
        write_zeros(fd, FILE_BYTES, f->step, f->sync_each, f->pause, &f->stop);
        close(fd);
    }
    for (int i = 0; i < made; i++) {
        snprintf(path, sizeof path, "%s/bench_fsync.fill.%d", f->dir, i);
        unlink(path);
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void run(const char *dir, const char *name, enum space space, filler *fill, int n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/bench_fsync.log", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) die(path);
    if (space == FALLOCATE && (errno = posix_fallocate(fd, 0, FILE_BYTES))) die("posix_fallocate");
    if (space == PREFILLED) write_zeros(fd, FILE_BYTES, FILE_BYTES / 16, false, false, NULL);
    if (fsync(fd)) die("fsync");
    pthread_t t;
    if (fill->step && pthread_create(&t, NULL, fill_main, fill)) die("pthread_create");
    static char record[RECORD];
    memset(record, 'x', sizeof record);
    uint64_t *us = malloc((size_t)n * sizeof *us);
    if (!us) die("malloc");
    for (int i = 0; i < n; i++) {
        uint64_t t0 = clock_mono_ns();
        if (pwrite(fd, record, sizeof record, (off_t)i * RECORD) != RECORD) die("pwrite");
        if (fdatasync(fd)) die("fdatasync");
        us[i] = (clock_mono_ns() - t0) / 1000;
        usleep(200);
    }
    if (fill->step) {
        atomic_store(&fill->stop, true);
        pthread_join(t, NULL);
    }
    close(fd);
    unlink(path);
    qsort(us, (size_t)n, sizeof *us, cmp);
    printf("| %s | %llu | %llu | %llu | %llu |\n", name, (unsigned long long)us[n / 2],
           (unsigned long long)us[n * 99 / 100], (unsigned long long)us[n * 999 / 1000],
           (unsigned long long)us[n - 1]);
    free(us);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_fsync DIR [WRITES]\n");
        return 2;
    }
    const char *dir = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 3000;
    if (n < 100 || n > (int)(FILE_BYTES / RECORD)) {
        fprintf(stderr, "bench_fsync: WRITES must be 100..%u\n", FILE_BYTES / RECORD);
        return 2;
    }
    printf("4 KiB write + fdatasync, %d times, µs:\n\n", n);
    printf("| case | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|\n");
    filler none = {.dir = dir};
    run(dir, "append", APPEND, &none, n);
    run(dir, "fallocate", FALLOCATE, &none, n);
    run(dir, "prefilled", PREFILLED, &none, n);
    filler burst = {.dir = dir, .step = FILE_BYTES / 16};
    run(dir, "prefilled, filler: 64 MiB then one sync", PREFILLED, &burst, n);
    filler steps = {.dir = dir, .step = 1u << 20, .sync_each = true};
    run(dir, "prefilled, filler: 1 MiB steps, each synced", PREFILLED, &steps, n);
    filler paced = {.dir = dir, .step = 256u << 10, .sync_each = true, .pause = true};
    run(dir, "prefilled, filler: 256 KiB steps, synced, paced", PREFILLED, &paced, n);
    filler direct = {
        .dir = dir, .step = 256u << 10, .sync_each = true, .pause = true, .direct = true};
    run(dir, "prefilled, filler: 256 KiB O_DIRECT steps, synced, paced", PREFILLED, &direct, n);
    filler unsynced = {.dir = dir, .step = 256u << 10, .pause = true, .direct = true};
    run(dir, "prefilled, filler: 256 KiB O_DIRECT steps, paced, one sync at the end (evlog)",
        PREFILLED, &unsynced, n);
    return 0;
}
