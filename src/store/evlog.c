#include "store/evlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include <isa-l/crc.h>

#include "util/clock.h"
#include "util/dirsync.h"
#include "util/log.h"
#include "util/vec.h"

#define MIN_SEGMENT (1u << 20)
#define DEFAULT_MAX_SEGMENT (64u << 20)
/* The index: 4-byte offsets in chunks that never move, so readers need no lock to use them. */
#define CHUNK_BITS 16
#define CHUNK_SIZE (1u << CHUNK_BITS)
#define MAX_CHUNKS (1u << 16) /* 2^32 records */
#define MAX_SEGMENTS 65536
#define MAX_RECORD (1u << 30)
/* Sequential reads (recovery, scans) go through a window this large. */
#define WINDOW (1u << 20)
/* Segments are zero-filled this much at a time, pausing up to FILL_PAUSE_MAX_US between steps. */
#define FILL_STEP (256u << 10)
#define FILL_PAUSE_MAX_US 20000
/* How far the writer is through its segment (in thousandths) when the next one is asked for, and
 * when its fill must be done (fill_behind()). */
#define FILL_FROM 250
#define FILL_BY 750

/* What segments are filled with, and torn or dropped records overwritten with. Aligned for
 * O_DIRECT (prepare_segment()). */
static _Alignas(4096) const char zeros[FILL_STEP];

typedef struct segment {
    int fd;
    _Atomic int64_t first_seq; /* the seq of its first record; 0 while it has none */
    uint64_t size;             /* the file's size: zeros beyond used */
} segment;

struct evlog {
    char dir[PATH_MAX];
    size_t max_segment;
    size_t page;    /* the system's page size: commits write whole pages (write_group()) */
    bool buffered;  /* evlog_opts.buffered */
    uint32_t epoch; /* of the records this open writes */
    int lock_fd;    /* DIR/lock, flock()ed while the log is open: one writer per log */

    /* Published to readers (release) after the records they cover are durable. */
    segment *segs[MAX_SEGMENTS];
    _Atomic uint32_t nsegs;
    uint32_t *chunks[MAX_CHUNKS];
    uint32_t nchunks; /* allocated, in order; the writer's */
    _Atomic int64_t last;
    _Atomic int64_t erased;
    _Atomic int64_t hidden; /* records of evlog's own */

    /* The writer's. */
    uint32_t active; /* index of the segment written to */
    uint64_t used;   /* bytes of records in the active segment */
    int64_t last_received;
    size_t group_len;    /* the open group's bytes, in wbuf after its carry bytes */
    size_t group_n;      /* its records */
    size_t group_hidden; /* of which evlog's own */
    uint32_t *group_off; /* offsets of its records within group */
    size_t group_off_cap;
    bool *dirty;    /* segments with erasures since the last commit, by index */
    int64_t *erase; /* seqs queued by evlog_erase() */
    size_t nerase, aerase;
    int64_t last_group_first; /* the first seq of the last group committed */
    /* The active segment opened with O_DIRECT, or -1 (opts.buffered, or a file system without
     * it): commits are written through it from wbuf, which holds the segment's last partial page
     * (carry bytes, the records before used) followed by the open group, built there by
     * evlog_append() so that it is copied once (write_group()). */
    int dfd;
    char *wbuf; /* aligned to page */
    size_t wbuf_cap, carry;
    uint64_t sync_ns; /* of the last commit */

    /* The helper that zero-fills the next segment ahead of use. */
    pthread_t helper;
    bool helper_running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint32_t want, ready; /* segment numbers (1-based) asked for and prepared; under lock */
    int prepare_errno;    /* the helper's last failure; under lock */
    atomic_bool stop;
    atomic_bool urgent;   /* the writer is waiting for the segment being prepared */
    atomic_uint progress; /* how far the writer is through its segment, in thousandths */
};

static __thread char last_error[512];

const char *evlog_errmsg(void) {
    return last_error;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- The format ---- */

typedef struct header {
    uint32_t hcrc, pcrc;
    int64_t seq, received_ms, ts_ms;
    uint32_t epoch, body_len;
    uint16_t user_len, anon_len, message_len;
    uint8_t type, kind, flags, reserved[7];
} header;
_Static_assert(sizeof(header) == EVLOG_HEADER, "the record header is 56 bytes");

/* Clears the upper halves of the x86 vector registers, where the CPU has them. ISA-L's AVX-512 CRC
 * returns with them in use (it has no VZEROUPPER, and leaves that to callers: intel/isa-l#24), and
 * every SSE instruction the compiler emits after it then paid for them: with this, the committer's
 * CPU per batch request fell from 85-90 to 53-60 µs (docs/benchmarks.md). */
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx"))) static void zero_upper(void) {
    _mm256_zeroupper();
}

static void clear_upper(void) {
    if (__builtin_cpu_supports("avx")) zero_upper();
}
#else
static void clear_upper(void) {}
#endif

/* zlib's CRC-32 (the gzip polynomial, reflected), computed by ISA-L with carry-less multiplies
 * where the CPU has them: the same value as zlib's crc32(), six times faster on a 600-byte record
 * (71 against 431 ns on this machine), which was a twentieth of a batch event's instructions and
 * most of the CPU of scanning the log at open (docs/benchmarks.md). */
static uint32_t crc(const void *p, size_t n) {
    uint32_t c = crc32_gzip_refl(0, p, n);
    clear_upper();
    return c;
}

/* The type of the records evlog writes for itself (see evlog_commit), which readers never see. */
#define TYPE_INTERNAL 255

/* Every payload starts with this byte, so that no live payload is all zeros as an erased one is. */
#define PAYLOAD_MARK 0xEE

static size_t payload_len(const header *h) {
    return 1 + (h->flags & EVLOG_HAS_USER ? h->user_len + 1u : 0) +
           (h->flags & EVLOG_HAS_ANON ? h->anon_len + 1u : 0) +
           (h->flags & EVLOG_HAS_MESSAGE ? h->message_len + 1u : 0) + h->body_len + 1u;
}

static size_t padded(size_t n) {
    return (n + 7) & ~(size_t)7;
}

static bool header_ok(const header *h) {
    return h->hcrc == crc((const char *)h + 4, EVLOG_HEADER - 4) && h->body_len < MAX_RECORD;
}

static bool all_zero(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

/* Points r's strings into the payload p (already checked). */
static void decode(const header *h, const char *p, evlog_rec *r) {
    r->seq = h->seq;
    r->received_ms = h->received_ms;
    r->ts_ms = h->ts_ms;
    r->type = h->type;
    r->kind = h->kind;
    r->user_id = r->anonymous_id = r->message_id = NULL;
    p++; /* PAYLOAD_MARK */
    if (h->flags & EVLOG_HAS_USER) r->user_id = p, p += h->user_len + 1;
    if (h->flags & EVLOG_HAS_ANON) r->anonymous_id = p, p += h->anon_len + 1;
    if (h->flags & EVLOG_HAS_MESSAGE) r->message_id = p, p += h->message_len + 1;
    r->body = p;
    r->body_len = h->body_len;
}

/* ---- Files ---- */

static int pread_full(int fd, void *p, size_t n, uint64_t off) {
    for (size_t done = 0; done < n;) {
        ssize_t k = pread(fd, (char *)p + done, n - done, (off_t)(off + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return k < 0 ? -1 : (int)done; /* the count read, at end of file */
        done += (size_t)k;
    }
    return (int)n;
}

static int pwrite_full(int fd, const void *p, size_t n, uint64_t off) {
    for (size_t done = 0; done < n;) {
        ssize_t k = pwrite(fd, (const char *)p + done, n - done, (off_t)(off + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        done += (size_t)k;
    }
    return 0;
}

static size_t segment_size(const evlog *l, uint32_t number) {
    size_t size = MIN_SEGMENT;
    for (uint32_t i = 1; i < number && size < l->max_segment; i++)
        size *= 2;
    return size < l->max_segment ? size : l->max_segment;
}

static void segment_path(const evlog *l, uint32_t number, const char *suffix, char *out, size_t n) {
    snprintf(out, n, "%s/%08u.log%s", l->dir, number, suffix);
}

/* Whether the fill of a segment of size bytes, done bytes in, is behind the writer, and must not
 * pause: the writer asks for the next segment a quarter of the way through its own
 * (prepare_ahead()), and the fill keeps pace so as to be done when the writer is three quarters
 * through. A fixed pacing could not do both: four times the step's time was right for single
 * events, and fell behind a writer taking 100,000 batch events a second (60 MB/s), which then
 * waited for the rest of a 64 MiB fill (batch p99 80-480 ms; docs/benchmarks.md). */
static bool fill_behind(evlog *l, size_t done, size_t size) {
    if (atomic_load_explicit(&l->urgent, memory_order_relaxed)) return true;
    unsigned p = atomic_load_explicit(&l->progress, memory_order_relaxed);
    return p > FILL_FROM && done < (uint64_t)size * (p - FILL_FROM) / (FILL_BY - FILL_FROM);
}

/* Writes the zeros of one fill step at off, and syncs them when they went through the page cache.
 * An O_DIRECT write that the file system refuses (EINVAL: it wants a larger alignment than a page,
 * or none of it) is made buffered, as is the rest of the segment. 0, or -1 with errno. */
static int fill_step(int fd, uint64_t off) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    if (!(flags & O_DIRECT)) return pwrite_full(fd, zeros, FILL_STEP, off) || fdatasync(fd);
    /* A direct write has reached the disk when it returns, which is all the pacing needs. Syncing
     * each step as well cost a journal commit and a cache flush per step, queued beside the
     * commits' own: half the fill thread's CPU (docs/benchmarks.md). The segment is synced once,
     * whole, before it is renamed into use. */
    if (!pwrite_full(fd, zeros, FILL_STEP, off)) return 0;
    int err = errno;
    if (err != EINVAL || fcntl(fd, F_SETFL, flags & ~O_DIRECT)) {
        errno = err;
        return -1;
    }
    return pwrite_full(fd, zeros, FILL_STEP, off) || fdatasync(fd);
}

/* Creates segment number, zero-filled to its size and synced, under a temporary name renamed into
 * place: a segment file that exists is whole. Returns 0 or an errno. */
static int prepare_segment(evlog *l, uint32_t number) {
    char tmp[PATH_MAX + 32], path[PATH_MAX + 32];
    segment_path(l, number, ".tmp", tmp, sizeof tmp);
    segment_path(l, number, "", path, sizeof path);
    /* O_DIRECT: the zeros go to the disk without being copied into the page cache and written
     * back from there, which cost the fill thread about 1 µs of CPU per stored event, a sixth of
     * the server's (docs/benchmarks.md). The commits then write whole pages (evlog_commit()), so
     * the kernel never reads a page it does not have before overwriting it. File systems without
     * O_DIRECT (tmpfs) get buffered writes (here, or in fill_step()). */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0640);
    if (fd < 0 && errno == EINVAL) fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return errno;
    size_t size = segment_size(l, number);
    int err = 0;
    /* In steps, each on the disk (fill_step()) before a pause four times as long as it took,
     * unless the fill is behind the writer (fill_behind()): the fill's writes and syncs queue ahead
     * of the commits' fdatasyncs, and one burst of 64 MiB would hold them back for a tenth of a
     * second or more. (A step of 1 MiB every 20 ms still made the p99 of a concurrent 4 KiB
     * write+fdatasync 3.8 ms against 0.34 ms alone: docs/benchmarks.md.) */
    for (size_t off = 0; off < size && !err; off += FILL_STEP) {
        uint64_t t0 = clock_mono_ns();
        if (atomic_load_explicit(&l->stop, memory_order_relaxed))
            err = ECANCELED; /* closing */
        else if (fill_step(fd, off))
            err = errno ? errno : EIO;
        uint64_t took_us = (clock_mono_ns() - t0) / 1000;
        if (!err && !fill_behind(l, off + FILL_STEP, size))
            usleep((useconds_t)(took_us < FILL_PAUSE_MAX_US / 4 ? 4 * took_us : FILL_PAUSE_MAX_US));
    }
    if (!err && fdatasync(fd)) err = errno;
    close(fd);
    if (!err && rename(tmp, path)) err = errno;
    if (!err && dir_sync(l->dir)) err = errno;
    if (err) unlink(tmp);
    return err;
}

static void *helper_main(void *arg) {
    evlog *l = arg;
    pthread_setname_np(pthread_self(), "engaged-fill"); /* for top -H, perf and gdb */
    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (!l->stop && l->want <= l->ready)
            pthread_cond_wait(&l->cond, &l->lock);
        if (l->stop) break;
        uint32_t number = l->ready + 1;
        pthread_mutex_unlock(&l->lock);
        int err = prepare_segment(l, number);
        pthread_mutex_lock(&l->lock);
        if (err) {
            /* The writer learns of it when it needs the segment, and retries itself. */
            l->prepare_errno = err;
            l->want = l->ready;
        } else
            l->ready = number;
        pthread_cond_broadcast(&l->cond);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

static int add_segment(evlog *l, uint32_t number) {
    if (number > MAX_SEGMENTS)
        return fail("the log has %d segments, the most it can", MAX_SEGMENTS);
    char path[PATH_MAX + 32];
    segment_path(l, number, "", path, sizeof path);
    segment *s = calloc(1, sizeof *s);
    if (!s) return fail("out of memory");
    s->fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (s->fd < 0 || fstat(s->fd, &st)) {
        int err = errno;
        if (s->fd >= 0) close(s->fd);
        free(s);
        return fail("%s: %s", path, strerror(err));
    }
    s->size = (uint64_t)st.st_size;
    l->segs[number - 1] = s;
    atomic_store_explicit(&l->nsegs, number, memory_order_release);
    return 0;
}

/* Opens the active segment for the writer's O_DIRECT writes (write_group()). The log stays
 * buffered (dfd -1) when asked to, or when the file system refuses O_DIRECT (tmpfs before Linux
 * 6.6). */
static void open_direct(evlog *l) {
    if (l->dfd >= 0) close(l->dfd);
    l->dfd = -1;
    if (l->buffered) return;
    char path[PATH_MAX + 32];
    segment_path(l, l->active + 1, "", path, sizeof path);
    l->dfd = open(path, O_WRONLY | O_CLOEXEC | O_DIRECT);
}

/* Makes wbuf hold at least n bytes, keeping its carry bytes and the open group. */
static int reserve_wbuf(evlog *l, size_t n) {
    if (n <= l->wbuf_cap) return 0;
    size_t cap = l->wbuf_cap ? l->wbuf_cap : l->page;
    while (cap < n)
        cap *= 2;
    void *p;
    if (posix_memalign(&p, l->page, cap)) return fail("out of memory");
    if (l->carry + l->group_len) memcpy(p, l->wbuf, l->carry + l->group_len);
    free(l->wbuf);
    l->wbuf = p;
    l->wbuf_cap = cap;
    return 0;
}

/* Reads the records of the active segment's last partial page into wbuf, for the next commit to
 * write that page whole. The group must be empty. */
static int load_tail(evlog *l) {
    l->carry = 0;
    size_t carry = (size_t)(l->used % l->page);
    if (reserve_wbuf(l, l->page)) return -1;
    if (carry && pread_full(l->segs[l->active]->fd, l->wbuf, carry, l->used - carry) != (int)carry)
        return fail("reading the log: %s", strerror(errno));
    l->carry = carry;
    return 0;
}

/* Zeroes [off, off + n) of the active segment in wbuf's copy of its last partial page, if they
 * overlap: the next commit rewrites that page from the copy. */
static void erase_in_tail(evlog *l, uint64_t off, size_t n) {
    uint64_t from = l->used - l->carry, to = off + n;
    if (off < from) off = from;
    if (to > l->used) to = l->used;
    if (off < to) memset(l->wbuf + (off - from), 0, (size_t)(to - off));
}

/* Moves the writer to the next segment, waiting for the helper to have prepared it. */
static int next_segment(evlog *l) {
    uint32_t number = l->active + 2; /* the next segment's number (index + 1) */
    pthread_mutex_lock(&l->lock);
    if (l->ready < number) {
        atomic_store(&l->urgent, true);
        l->prepare_errno = 0;
        if (l->want < number) l->want = number;
        pthread_cond_signal(&l->cond);
        while (l->ready < number && !l->prepare_errno)
            pthread_cond_wait(&l->cond, &l->lock);
    }
    int err = l->ready < number ? l->prepare_errno : 0;
    pthread_mutex_unlock(&l->lock);
    if (err) return fail("preparing log segment %u: %s", number, strerror(err));
    if (atomic_load(&l->nsegs) < number && add_segment(l, number)) return -1;
    l->active = number - 1;
    l->used = 0;
    memmove(l->wbuf, l->wbuf + l->carry, l->group_len); /* the open group moves with it */
    l->carry = 0;
    open_direct(l);
    atomic_store_explicit(&l->progress, 0, memory_order_relaxed);
    return 0;
}

/* Asks the helper for the segment after the active one once a quarter of this one is used. */
static void prepare_ahead(evlog *l) {
    if (l->used < l->segs[l->active]->size * FILL_FROM / 1000) return;
    uint32_t number = l->active + 2;
    pthread_mutex_lock(&l->lock);
    if (l->want < number) {
        l->want = number;
        pthread_cond_signal(&l->cond);
    }
    pthread_mutex_unlock(&l->lock);
}

/* ---- The index ---- */

static uint32_t *offset_slot(const evlog *l, int64_t seq) {
    uint64_t i = (uint64_t)(seq - 1);
    return &l->chunks[i >> CHUNK_BITS][i & (CHUNK_SIZE - 1)];
}

static int reserve_index(evlog *l, int64_t upto) {
    uint64_t need = ((uint64_t)upto + CHUNK_SIZE - 1) >> CHUNK_BITS;
    if (need > MAX_CHUNKS) return fail("the log holds %u records, the most it can", UINT32_MAX);
    for (; l->nchunks < need; l->nchunks++)
        if (!(l->chunks[l->nchunks] = malloc(CHUNK_SIZE * sizeof(uint32_t))))
            return fail("out of memory");
    return 0;
}

/* The index of the segment holding seq: the last one whose first seq is at or below it. */
static uint32_t segment_index(const evlog *l, int64_t seq) {
    uint32_t lo = 0, hi = atomic_load_explicit(&l->nsegs, memory_order_acquire);
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        int64_t first = atomic_load_explicit(&l->segs[mid]->first_seq, memory_order_relaxed);
        if (first && first <= seq)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static segment *segment_of(const evlog *l, int64_t seq) {
    return l->segs[segment_index(l, seq)];
}

/* ---- Recovery ---- */

/* A sequential reader of one segment through a window of at least WINDOW bytes. */
typedef struct window {
    int fd;
    buf data;
    uint64_t start; /* file offset of data.data[0] */
} window;

/* Makes [off, off + n) available in w; returns a pointer to it, or NULL past the end of the file
 * or on an error (errno set then). */
static const char *window_get(window *w, uint64_t off, size_t n) {
    if (off >= w->start && off + n <= w->start + w->data.len)
        return w->data.data + (off - w->start);
    size_t want = n > WINDOW ? n : WINDOW;
    buf_reset(&w->data);
    if (buf_reserve(&w->data, want)) {
        errno = ENOMEM;
        return NULL;
    }
    errno = 0;
    int k = pread_full(w->fd, w->data.data, want, off);
    if (k < 0) return NULL;
    w->start = off;
    w->data.len = (size_t)k;
    return (size_t)k >= n ? w->data.data : NULL;
}

/* A position in the log: a segment's index and a byte offset in it. */
typedef struct pos {
    uint32_t seg;
    uint64_t off;
} pos;

typedef struct recovery {
    int64_t seq;      /* the last seq accepted */
    uint32_t epoch;   /* of the last record accepted */
    uint32_t seg;     /* the segment being read */
    uint64_t *stop;   /* by segment: where reading stopped */
    int64_t last_end; /* the last seq of the last complete group, and of the two before */
    int64_t prev_end, prev_prev_end;
    pos last_start, last_stop, prev_stop;      /* where they begin and end */
    pos group_start;                           /* the group being read */
    int64_t group_hidden, hidden, prev_hidden; /* evlog's own records: in the group being read,
                                                  up to the last complete one, and the one before */
    int64_t *suspect;                          /* seqs whose payload failed its check */
    size_t nsuspect, asuspect;
} recovery;

/* Reads one segment's records, adding them to the index. Returns 0, or -1 on an error. */
static int recover_segment(evlog *l, recovery *rc) {
    segment *s = l->segs[rc->seg];
    window w = {.fd = s->fd, .data = BUF_INIT(0)};
    int status = 0;
    uint64_t off = 0;
    for (;;) {
        const char *p = window_get(&w, off, EVLOG_HEADER);
        if (!p) {
            if (errno) status = fail("reading the log: %s", strerror(errno));
            break;
        }
        header h;
        memcpy(&h, p, sizeof h);
        if (!header_ok(&h) || h.seq != rc->seq + 1 || h.epoch < rc->epoch) break;
        size_t plen = payload_len(&h), rlen = EVLOG_HEADER + padded(plen);
        p = window_get(&w, off, rlen);
        if (!p) {
            if (errno) status = fail("reading the log: %s", strerror(errno));
            break;
        }
        if (reserve_index(l, h.seq)) {
            status = -1;
            break;
        }
        *offset_slot(l, h.seq) = (uint32_t)off;
        if (!atomic_load_explicit(&s->first_seq, memory_order_relaxed))
            atomic_store_explicit(&s->first_seq, h.seq, memory_order_relaxed);
        if (crc(p + EVLOG_HEADER, plen) != h.pcrc) {
            if (vec_reserve((void **)&rc->suspect, &rc->asuspect, rc->nsuspect + 1,
                            sizeof *rc->suspect)) {
                status = fail("out of memory");
                break;
            }
            rc->suspect[rc->nsuspect++] = h.seq;
        }
        if (h.seq == rc->last_end + 1) {
            rc->group_start = (pos){rc->seg, off};
            rc->group_hidden = 0;
        }
        if (h.type == TYPE_INTERNAL) rc->group_hidden++;
        rc->seq = h.seq;
        rc->epoch = h.epoch;
        if (h.received_ms > l->last_received) l->last_received = h.received_ms;
        off += rlen;
        if (h.flags & EVLOG_END) {
            rc->prev_prev_end = rc->prev_end;
            rc->prev_end = rc->last_end;
            rc->prev_hidden = rc->hidden;
            rc->hidden += rc->group_hidden;
            rc->prev_stop = rc->last_stop;
            rc->last_end = h.seq;
            rc->last_start = rc->group_start;
            rc->last_stop = (pos){rc->seg, off};
        }
    }
    rc->stop[rc->seg] = off;
    buf_free(&w.data);
    return status;
}

/* Zeroes [from, to) of segment index i and syncs it. */
static int zero_range(evlog *l, uint32_t i, uint64_t from, uint64_t to) {
    segment *s = l->segs[i];
    if (to > s->size) to = s->size;
    for (uint64_t off = from; off < to; off += sizeof zeros) {
        size_t n = to - off < sizeof zeros ? (size_t)(to - off) : sizeof zeros;
        if (pwrite_full(s->fd, zeros, n, off)) return fail("zeroing the log: %s", strerror(errno));
    }
    return from < to && fdatasync(s->fd) ? fail("syncing the log: %s", strerror(errno)) : 0;
}

/* Zeroes a record's payload; sets *was_live when it held anything. */
static int zero_payload(evlog *l, int64_t seq, bool *was_live, buf *scratch) {
    uint32_t i = segment_index(l, seq);
    segment *s = l->segs[i];
    uint64_t off = *offset_slot(l, seq);
    header h;
    if (pread_full(s->fd, &h, sizeof h, off) != (int)sizeof h || !header_ok(&h) || h.seq != seq)
        return fail("the log's record %lld is not where the index says", (long long)seq);
    *was_live = false;
    if (h.type == TYPE_INTERNAL) return 0;
    size_t n = padded(payload_len(&h));
    buf_reset(scratch);
    if (buf_reserve(scratch, n)) return fail("out of memory");
    char *p = scratch->data;
    if (pread_full(s->fd, p, n, off + EVLOG_HEADER) != (int)n)
        return fail("reading the log: %s", strerror(errno));
    *was_live = !all_zero(p, n);
    if (!*was_live) return 0;
    memset(p, 0, n);
    if (pwrite_full(s->fd, p, n, off + EVLOG_HEADER))
        return fail("erasing in the log: %s", strerror(errno));
    if (i == l->active) erase_in_tail(l, off + EVLOG_HEADER, n);
    l->dirty[i] = true;
    return 0;
}

/* Sets this open's epoch: above the one in DIR/epoch (raised at every open, so above any epoch a
 * torn write may have left beyond the log's end) and above the last record's, in case the file was
 * lost; and stores it before anything is written with it. */
static int bump_epoch(evlog *l, uint32_t last_record) {
    char path[PATH_MAX + 16], tmp[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/epoch", l->dir);
    snprintf(tmp, sizeof tmp, "%s/epoch.tmp", l->dir);
    unsigned long old = 0;
    FILE *f = fopen(path, "re");
    if (f) {
        if (fscanf(f, "%lu", &old) != 1) old = 0;
        fclose(f);
    }
    if (old < last_record) old = last_record;
    if (old >= UINT32_MAX) return fail("%s: the epoch is exhausted", path);
    l->epoch = (uint32_t)old + 1;
    f = fopen(tmp, "we");
    if (!f) return fail("%s: %s", tmp, strerror(errno));
    fprintf(f, "%u\n", l->epoch);
    if (fflush(f) || fdatasync(fileno(f))) {
        fclose(f);
        return fail("%s: %s", tmp, strerror(errno));
    }
    fclose(f);
    if (rename(tmp, path) || dir_sync(l->dir)) return fail("%s: %s", path, strerror(errno));
    return 0;
}

/* The segment numbers present, which must run 1..n without a gap. Removes leftover temp files. */
static int list_segments(evlog *l, uint32_t *count) {
    DIR *d = opendir(l->dir);
    if (!d) return fail("%s: %s", l->dir, strerror(errno));
    uint32_t n = 0, max = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned number;
        char rest[8] = "";
        if (sscanf(de->d_name, "%8u.log%7s", &number, rest) < 1 || number == 0) continue;
        if (strcmp(rest, ".tmp") == 0) {
            char path[PATH_MAX + 300];
            snprintf(path, sizeof path, "%s/%s", l->dir, de->d_name);
            unlink(path);
        } else if (!*rest && strlen(de->d_name) == 12) {
            n++;
            if (number > max) max = number;
        }
    }
    closedir(d);
    if (n != max)
        return fail("%s: log segments are missing (%u files, numbered up to %u)", l->dir, n, max);
    *count = n;
    return 0;
}

static int recover(evlog *l) {
    uint32_t count = 0;
    if (list_segments(l, &count)) return -1;
    if (count == 0) {
        int err = prepare_segment(l, 1);
        if (err) return fail("creating the log: %s", strerror(err));
        count = 1;
    }
    for (uint32_t i = 1; i <= count; i++)
        if (add_segment(l, i)) return -1;
    l->ready = l->want = count;
    if (!(l->dirty = calloc(MAX_SEGMENTS, sizeof *l->dirty))) return fail("out of memory");

    recovery rc = {.stop = calloc(count, sizeof *rc.stop)};
    if (!rc.stop) return fail("out of memory");
    buf scratch = BUF_INIT(0);
    int status = 0;
    uint32_t last_read = 0;
    for (rc.seg = 0; rc.seg < count && !status; rc.seg++) {
        last_read = rc.seg;
        status = recover_segment(l, &rc);
        if (rc.seq != rc.last_end) break; /* an interrupted group: nothing follows it */
    }
    /* Only the last group can have been in flight at a crash: erasures are written after the
     * group that asks for them is durable (evlog_commit). So a payload that fails its check in
     * the last complete group means its END reached the disk before one of its other pages did:
     * the group was never acknowledged, and goes like an unfinished one. Anywhere before, it is
     * an erasure, perhaps interrupted. */
    bool torn = false;
    for (size_t i = 0; i < rc.nsuspect; i++)
        if (rc.suspect[i] > rc.prev_end && rc.suspect[i] <= rc.last_end) torn = true;
    int64_t confirmed = torn ? rc.prev_end : rc.last_end;
    pos end = torn ? rc.prev_stop : rc.last_stop;
    pos drop = torn ? rc.last_start : rc.last_stop;
    if (!status) {
        if (rc.seq > confirmed)
            log_warn("evlog: dropping %lld records of a group interrupted by a crash",
                     (long long)(rc.seq - confirmed));
        /* Zero what is dropped, and the header at which reading stopped, so that no later scan
         * can take any of it for records. */
        for (uint32_t i = drop.seg; i <= last_read && !status; i++)
            status = zero_range(l, i, i == drop.seg ? drop.off : 0, rc.stop[i] + EVLOG_HEADER);
        for (uint32_t i = 0; i < count; i++) /* the dropped records' segment starts */
            if (atomic_load(&l->segs[i]->first_seq) > confirmed)
                atomic_store(&l->segs[i]->first_seq, 0);
    }
    /* The writer goes on where the last complete group ends (the first segment when none). */
    l->active = end.seg;
    l->used = end.off;
    l->last_group_first = (torn ? rc.prev_prev_end : rc.prev_end) + 1;
    atomic_store(&l->last, confirmed);
    int64_t erased = 0;
    for (size_t i = 0; i < rc.nsuspect && !status; i++) {
        if (rc.suspect[i] > confirmed) break;
        bool live;
        status = zero_payload(l, rc.suspect[i], &live, &scratch);
        if (live)
            log_warn("evlog: record %lld was half erased; erased again", (long long)rc.suspect[i]);
        erased++;
    }
    for (uint32_t i = 0; i < count && !status; i++)
        if (l->dirty[i]) {
            if (fdatasync(l->segs[i]->fd)) status = fail("syncing the log: %s", strerror(errno));
            l->dirty[i] = false;
        }
    atomic_store(&l->erased, erased);
    atomic_store(&l->hidden, torn ? rc.prev_hidden : rc.hidden);
    l->epoch = rc.epoch; /* the last record's, for bump_epoch() */
    free(rc.stop);
    free(rc.suspect);
    buf_free(&scratch);
    return status;
}

/* ---- Open and close ---- */

evlog *evlog_open(const char *dir, const evlog_opts *opts, char *err, size_t errlen) {
    evlog *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->max_segment =
        opts && opts->max_segment_bytes ? opts->max_segment_bytes : DEFAULT_MAX_SEGMENT;
    if (l->max_segment < MIN_SEGMENT) l->max_segment = MIN_SEGMENT;
    long page = sysconf(_SC_PAGESIZE);
    l->page = page > 0 ? (size_t)page : 4096;
    l->buffered = opts && opts->buffered;
    l->dfd = l->lock_fd = -1; /* closed by evlog_close() when set */
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    if (snprintf(l->dir, sizeof l->dir, "%s", dir) >= (int)sizeof l->dir) {
        fail("path too long");
        goto fail;
    }
    if (mkdir(dir, 0750) && errno != EEXIST) {
        fail("cannot create %s: %s", dir, strerror(errno));
        goto fail;
    }
    /* Recovery rewrites the end of the log, and the writer appends there: a second process with
     * the log open (a CLI command beside the server) would corrupt it. */
    char lock[PATH_MAX + 16];
    snprintf(lock, sizeof lock, "%s/lock", dir);
    l->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (l->lock_fd < 0) {
        fail("%s: %s", lock, strerror(errno));
        goto fail;
    }
    if (flock(l->lock_fd, LOCK_EX | LOCK_NB)) {
        if (errno == EWOULDBLOCK)
            fail("the event log in %s is in use by another process (a running engaged serve?)",
                 dir);
        else
            fail("locking the event log in %s: %s", dir, strerror(errno));
        goto fail;
    }
    uint64_t t0 = clock_mono_ns();
    if (recover(l) || bump_epoch(l, l->epoch) || load_tail(l)) goto fail;
    open_direct(l);
    log_info("evlog: %lld records (%lld erased) in %u segments of %s, read in %.0f ms",
             (long long)atomic_load(&l->last), (long long)atomic_load(&l->erased),
             atomic_load(&l->nsegs), dir, (double)(clock_mono_ns() - t0) / 1e6);
    if (pthread_create(&l->helper, NULL, helper_main, l)) {
        fail("cannot start the log's helper thread");
        goto fail;
    }
    l->helper_running = true;
    prepare_ahead(l);
    return l;
fail:
    snprintf(err, errlen, "%s", last_error);
    evlog_close(l);
    return NULL;
}

void evlog_close(evlog *l) {
    if (!l) return;
    if (l->helper_running) {
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->helper, NULL);
    }
    uint32_t n = atomic_load(&l->nsegs);
    for (uint32_t i = 0; i < n; i++) {
        close(l->segs[i]->fd);
        free(l->segs[i]);
    }
    for (uint32_t c = 0; c < l->nchunks; c++)
        free(l->chunks[c]);
    if (l->dfd >= 0) close(l->dfd);
    free(l->wbuf);
    if (l->lock_fd >= 0) close(l->lock_fd); /* and the lock with it */
    free(l->group_off);
    free(l->erase);
    free(l->dirty);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
    free(l);
}

/* ---- The writer ---- */

/* Record i of the open group. */
static char *group_rec(evlog *l, size_t i) {
    return l->wbuf + l->carry + l->group_off[i];
}

/* The length of id (NULL: absent) in *len, its flag in *flags; the bytes it takes with its NUL. */
static int id_size(const char *id, uint16_t *len, uint8_t *flags, uint8_t flag, size_t *bytes) {
    *bytes = 0;
    if (!id) return 0;
    size_t n = strlen(id);
    if (n > UINT16_MAX) return fail("an id of %zu bytes is too long for the log", n);
    *len = (uint16_t)n;
    *flags |= flag;
    *bytes = n + 1;
    return 0;
}

int evlog_append(evlog *l, evlog_rec *r) {
    if (r->body_len >= MAX_RECORD) return fail("a record of %zu bytes is too large", r->body_len);
    if (r->type < 0 || r->type >= TYPE_INTERNAL || r->kind < 0 || r->kind > 255)
        return fail("record type or kind out of range");
    if (vec_reserve((void **)&l->group_off, &l->group_off_cap, l->group_n + 1,
                    sizeof *l->group_off))
        return fail("out of memory");
    if (r->received_ms < l->last_received) r->received_ms = l->last_received;
    header h = {
        .seq = atomic_load_explicit(&l->last, memory_order_relaxed) + (int64_t)l->group_n + 1,
        .received_ms = r->received_ms,
        .ts_ms = r->ts_ms,
        .epoch = l->epoch,
        .body_len = (uint32_t)r->body_len,
        .type = (uint8_t)r->type,
        .kind = (uint8_t)r->kind,
    };
    size_t nu, na, nm;
    if (id_size(r->user_id, &h.user_len, &h.flags, EVLOG_HAS_USER, &nu) ||
        id_size(r->anonymous_id, &h.anon_len, &h.flags, EVLOG_HAS_ANON, &na) ||
        id_size(r->message_id, &h.message_len, &h.flags, EVLOG_HAS_MESSAGE, &nm))
        return -1; /* id_size() said why */
    /* The payload: a mark, the ids present with their NULs, the body and a NUL, then zeros to a
     * multiple of 8. It is written where the group's write will read it (write_group()). */
    size_t plen = 1 + nu + na + nm + r->body_len + 1, size = EVLOG_HEADER + padded(plen);
    if (reserve_wbuf(l, l->carry + l->group_len + size)) return -1;
    size_t start = l->group_len;
    char *rec = l->wbuf + l->carry + start, *p = rec + EVLOG_HEADER;
    *p++ = (char)PAYLOAD_MARK;
    if (nu) p = mempcpy(p, r->user_id, nu);
    if (na) p = mempcpy(p, r->anonymous_id, na);
    if (nm) p = mempcpy(p, r->message_id, nm);
    if (r->body_len) p = mempcpy(p, r->body, r->body_len);
    memset(p, 0, size - (size_t)(p - rec));
    h.pcrc = crc(rec + EVLOG_HEADER, plen);
    h.hcrc = crc((const char *)&h + 4, EVLOG_HEADER - 4);
    memcpy(rec, &h, sizeof h);
    l->group_len += size;
    l->group_off[l->group_n++] = (uint32_t)start;
    l->last_received = r->received_ms;
    r->seq = h.seq;
    return 0;
}

void evlog_rollback(evlog *l) {
    l->group_len = 0;
    l->group_n = 0;
    l->group_hidden = 0;
    l->nerase = 0; /* a failed request's erasures must not ride on a later commit */
    /* last_received may stay ahead: it only has to be non-decreasing. */
}

int evlog_erase(evlog *l, const int64_t *seqs, size_t n) {
    int64_t last = atomic_load_explicit(&l->last, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        if (seqs[i] < 1 || seqs[i] > last) continue;
        if (vec_reserve((void **)&l->erase, &l->aerase, l->nerase + 1, sizeof *l->erase))
            return fail("out of memory");
        l->erase[l->nerase++] = seqs[i];
    }
    return 0;
}

static int sync_fd(int fd) {
    if (fdatasync(fd) == 0) return 0;
    /* The kernel may have dropped the dirty pages for good, and a later fdatasync can succeed
     * without them: nothing written can be trusted, so stop without acknowledging. */
    log_error("evlog: fdatasync failed: %s; stopping", strerror(errno));
    abort();
}

/* Zeroes the payloads queued by evlog_erase() and syncs the segments they are in. */
static int erase_queued(evlog *l) {
    buf scratch = BUF_INIT(0);
    int rc = 0;
    int64_t erased = 0;
    for (size_t i = 0; i < l->nerase && !rc; i++) {
        bool live;
        rc = zero_payload(l, l->erase[i], &live, &scratch);
        erased += !rc && live;
    }
    uint32_t nsegs = atomic_load(&l->nsegs);
    for (uint32_t i = 0; i < nsegs; i++)
        if (l->dirty[i]) {
            sync_fd(l->segs[i]->fd);
            l->dirty[i] = false;
        }
    atomic_fetch_add(&l->erased, erased);
    l->nerase = 0;
    buf_free(&scratch);
    return rc;
}

/* Appends a record of evlog's own, which readers skip. */
static int append_internal(evlog *l) {
    evlog_rec r = {.received_ms = l->last_received, .body = ""}; /* its type is set below */
    if (evlog_append(l, &r)) return -1;
    header h;
    memcpy(&h, group_rec(l, l->group_n - 1), sizeof h);
    h.type = TYPE_INTERNAL;
    h.hcrc = crc((const char *)&h + 4, EVLOG_HEADER - 4);
    memcpy(group_rec(l, l->group_n - 1), &h, sizeof h);
    l->group_hidden++;
    return 0;
}

/* Writes the group at used, in whole pages: from the start of used's page (the records before it
 * come from wbuf's copy) to the end of the group's last page (zeros, as on disk already). Whole
 * pages let the write bypass the page cache (O_DIRECT): copying each commit into fresh page-cache
 * memory was a quarter of the server's CPU samples once a batch run had grown its cache for 30 s
 * (docs/benchmarks.md), and the log's pages would crowd out the cache's useful ones. Without
 * O_DIRECT, whole pages still spare the kernel reading a page before overwriting part of it. A
 * group larger than its segment grows the file. Returns 0, or -1 with errno. */
static int write_group(evlog *l, segment *s) {
    size_t end = l->carry + l->group_len, len = (end + l->page - 1) / l->page * l->page;
    if (reserve_wbuf(l, len)) {
        errno = ENOMEM;
        return -1;
    }
    memset(l->wbuf + end, 0, len - end);
    uint64_t off = l->used - l->carry;
    if (l->dfd >= 0 && pwrite_full(l->dfd, l->wbuf, len, off)) {
        if (errno != EINVAL) return -1;
        close(l->dfd); /* the file system wants another alignment: buffered from now on */
        l->dfd = -1;
    }
    if (l->dfd < 0 && pwrite_full(s->fd, l->wbuf, len, off)) return -1;
    if (off + len > s->size) s->size = off + len;
    l->carry = end % l->page;
    memmove(l->wbuf, l->wbuf + (end - l->carry), l->carry);
    return 0;
}

int evlog_commit(evlog *l) {
    int64_t last = atomic_load_explicit(&l->last, memory_order_relaxed);
    /* Only the last group may be torn by a crash, and recovery tells a torn record from an erased
     * one by that alone (see recover()). So erasing a record of the last group needs a later
     * group: when the commit has no records of its own, evlog writes one of its own. */
    for (size_t i = 0; i < l->nerase && !l->group_n; i++)
        if (l->erase[i] >= l->last_group_first && append_internal(l)) {
            l->nerase = 0;
            return -1;
        }
    size_t n = l->group_n, theirs = n - l->group_hidden;
    l->sync_ns = 0;
    if (n) {
        /* The END flag goes on the last record, whose header CRC then changes. */
        header h;
        memcpy(&h, group_rec(l, l->group_n - 1), sizeof h);
        h.flags |= EVLOG_END;
        h.hcrc = crc((const char *)&h + 4, EVLOG_HEADER - 4);
        memcpy(group_rec(l, l->group_n - 1), &h, sizeof h);
        if (reserve_index(l, last + (int64_t)n)) {
            evlog_rollback(l);
            return -1;
        }
        /* A group never spans segments; one larger than a whole segment grows it. */
        if (l->used && l->used + l->group_len > l->segs[l->active]->size && next_segment(l)) {
            evlog_rollback(l);
            return -1;
        }
        segment *s = l->segs[l->active];
        if (write_group(l, s)) {
            int err = errno;
            /* Whatever part was written must not be read as records later. */
            if (zero_range(l, l->active, l->used, l->used + l->group_len))
                log_warn("evlog: %s", last_error);
            evlog_rollback(l);
            return fail("writing the log: %s", strerror(err));
        }
        uint64_t t0 = clock_mono_ns();
        sync_fd(s->fd);
        l->sync_ns = clock_mono_ns() - t0;
        for (size_t i = 0; i < n; i++)
            *offset_slot(l, last + 1 + (int64_t)i) = (uint32_t)(l->used + l->group_off[i]);
        if (!atomic_load_explicit(&s->first_seq, memory_order_relaxed))
            atomic_store_explicit(&s->first_seq, last + 1, memory_order_relaxed);
        l->used += l->group_len;
        l->last_group_first = last + 1;
        atomic_fetch_add(&l->hidden, l->group_hidden);
        l->group_hidden = 0;
        atomic_store_explicit(&l->urgent, false, memory_order_relaxed);
        atomic_store_explicit(&l->progress,
                              l->used >= s->size ? 1000u : (unsigned)(l->used * 1000 / s->size),
                              memory_order_relaxed);
        atomic_store_explicit(&l->last, last + (int64_t)n, memory_order_release);
        l->group_len = 0;
        l->group_n = 0;
        prepare_ahead(l);
    }
    /* Erasures go to disk only once the group asking for them is durable, so that a crash can
     * only ever interrupt the last group (see recover()). If one fails (an I/O error) after the
     * caller's records are durable, the commit still stands: saying otherwise would have the
     * caller retry records that are stored. The erasure command in the log has the replay at the
     * next start erase them again. */
    if (!l->nerase || !erase_queued(l)) return 0;
    if (!theirs) return -1;
    log_error("evlog: %s; the group is committed, the erasure is finished at the next start",
              last_error);
    return 0;
}

uint64_t evlog_sync_ns(const evlog *l) {
    return l->sync_ns;
}

/* ---- Readers ---- */

int64_t evlog_last_seq(const evlog *l) {
    return atomic_load_explicit(&l->last, memory_order_acquire);
}

int64_t evlog_count(const evlog *l) {
    return evlog_last_seq(l) - atomic_load(&l->erased) - atomic_load(&l->hidden);
}

/* Reads record seq (published) into scratch. Returns 1, 0 when erased, -1 on an error. */
static int read_at(const evlog *l, int64_t seq, evlog_rec *r, buf *scratch) {
    segment *s = segment_of(l, seq);
    uint64_t off = *offset_slot(l, seq);
    size_t want = 1024;
    for (;;) {
        buf_reset(scratch);
        if (buf_reserve(scratch, want)) return fail("out of memory");
        int k = pread_full(s->fd, scratch->data, want, off);
        if (k < 0) return fail("reading the log: %s", strerror(errno));
        header h;
        if ((size_t)k < sizeof h) return fail("the log's record %lld is cut short", (long long)seq);
        memcpy(&h, scratch->data, sizeof h);
        if (!header_ok(&h) || h.seq != seq)
            return fail("the log's record %lld is damaged", (long long)seq);
        size_t plen = payload_len(&h);
        if (EVLOG_HEADER + plen > want) {
            want = EVLOG_HEADER + plen;
            continue;
        }
        if ((size_t)k < EVLOG_HEADER + plen)
            return fail("the log's record %lld is cut short", (long long)seq);
        const char *p = scratch->data + EVLOG_HEADER;
        /* A payload that fails its check is erased, or being erased right now. */
        if (crc(p, plen) != h.pcrc || h.type == TYPE_INTERNAL) return 0;
        decode(&h, p, r);
        return 1;
    }
}

int evlog_read(evlog *l, int64_t seq, evlog_rec *r, buf *scratch) {
    if (seq < 1 || seq > evlog_last_seq(l)) return 0;
    return read_at(l, seq, r, scratch);
}

int evlog_scan(evlog *l, int64_t from, int (*fn)(const evlog_rec *r, void *arg), void *arg) {
    int64_t last = evlog_last_seq(l);
    if (from < 1) from = 1;
    window w = {.fd = -1, .data = BUF_INIT(0)};
    segment *seg = NULL;
    int rc = 0;
    for (int64_t seq = from; seq <= last && !rc; seq++) {
        segment *s = segment_of(l, seq);
        if (s != seg) {
            seg = s;
            w.fd = s->fd;
            w.start = 0;
            w.data.len = 0;
        }
        uint64_t off = *offset_slot(l, seq);
        const char *p = window_get(&w, off, EVLOG_HEADER);
        header h;
        if (p) memcpy(&h, p, sizeof h);
        if (!p || !header_ok(&h) || h.seq != seq) {
            rc = fail("the log's record %lld is damaged or cut short", (long long)seq);
            break;
        }
        size_t plen = payload_len(&h);
        if (!(p = window_get(&w, off, EVLOG_HEADER + plen))) {
            rc = fail("the log's record %lld is cut short", (long long)seq);
            break;
        }
        if (h.type == TYPE_INTERNAL || crc(p + EVLOG_HEADER, plen) != h.pcrc) continue; /* erased */
        evlog_rec r;
        decode(&h, p + EVLOG_HEADER, &r);
        rc = fn(&r, arg);
    }
    buf_free(&w.data);
    return rc;
}

static int64_t received_at(const evlog *l, int64_t seq, bool *ok) {
    header h;
    segment *s = segment_of(l, seq);
    *ok = pread_full(s->fd, &h, sizeof h, *offset_slot(l, seq)) == (int)sizeof h && header_ok(&h) &&
          h.seq == seq;
    return h.received_ms;
}

int64_t evlog_first_since(evlog *l, int64_t since_ms) {
    int64_t lo = 1, hi = evlog_last_seq(l) + 1;
    /* The smallest seq received at or after since_ms; erased records keep their times. */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        bool ok;
        int64_t t = received_at(l, mid, &ok);
        if (!ok) return INT64_MAX; /* an I/O error: claim nothing */
        if (t >= since_ms)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo <= evlog_last_seq(l) ? lo : INT64_MAX;
}
