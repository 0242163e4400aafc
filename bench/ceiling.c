/* ceiling — the least a server can do that answers 200 only once a request's body is on disk: the
 * reference that bench/run.sh's track section measures beside engaged and nginx, to tell what the
 * durability promise itself costs on this machine from what engaged adds to it.
 *
 *   build/bench_ceiling PORT DIR
 *
 * It listens on 127.0.0.1:PORT and, for every HTTP/1.1 request with a Content-Length body, appends
 * the body to a log in DIR and answers 200 {"success":true} once the log is synced: group commit as
 * engaged does it (one pwrite and one fdatasync for everything that arrived during the previous
 * sync), into a file zero-filled beforehand (so a sync flushes data, not the journal), with the
 * answer sent by the syncing thread itself, which then re-arms the connection (EPOLLONESHOT: an
 * I/O thread never touches a connection whose request is being committed). Nothing else: no
 * parsing of the body, no validation, no deduplication, no index, no engine, no headers but the
 * status line, Content-Type and Content-Length. Two I/O threads and one syncing thread.
 *
 * A benchmark tool, not a server: it assumes each client waits for an answer before it sends the
 * next request on a connection (wrk does), takes requests of at most 16 KiB, and stops on any
 * error. SIGTERM or SIGINT ends it. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOG_BYTES (256u << 20) /* written round and round */
#define REQUEST_MAX (16u << 10)

typedef struct conn {
    int fd, ep; /* ep: the epoll instance that watches it */
    size_t len, body_at, body_len;
    struct conn *next; /* in the syncer's queue */
    char buf[REQUEST_MAX];
} conn;

static int listen_fd, log_fd;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static conn *queue, **queue_tail = &queue;
static int syncer_waiting;

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Content-Length: 16\r\n\r\n{\"success\":true}";

static void die(const char *what) {
    fprintf(stderr, "bench_ceiling: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* Writes every queued body with one pwrite, syncs, answers each. */
static void *syncer(void *arg) {
    (void)arg;
    size_t off = 0, cap = 1 << 20;
    char *group = malloc(cap);
    if (!group) die("malloc");
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!queue) {
            syncer_waiting = 1;
            pthread_cond_wait(&wake, &lock);
            syncer_waiting = 0;
        }
        conn *list = queue;
        queue = NULL;
        queue_tail = &queue;
        pthread_mutex_unlock(&lock);
        size_t n = 0;
        for (conn *c = list; c; c = c->next) {
            if (n + c->body_len > cap && !(group = realloc(group, cap = 2 * (n + c->body_len))))
                die("realloc");
            memcpy(group + n, c->buf + c->body_at, c->body_len);
            n += c->body_len;
        }
        if (off + n > LOG_BYTES) off = 0;
        if (pwrite(log_fd, group, n, (off_t)off) != (ssize_t)n || fdatasync(log_fd)) die("log");
        off += n;
        for (conn *c = list, *next; c; c = next) {
            next = c->next;
            c->len = 0;
            if (send(c->fd, reply, sizeof reply - 1, MSG_NOSIGNAL) < 0 && errno != EPIPE &&
                errno != ECONNRESET)
                die("send");
            struct epoll_event ce = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
            if (epoll_ctl(c->ep, EPOLL_CTL_MOD, c->fd, &ce)) die("epoll_ctl");
        }
    }
    return NULL;
}

/* Whether c holds a whole request; sets its body's place. */
static int complete(conn *c) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return 0;
    c->body_at = (size_t)(end + 4 - c->buf);
    c->body_len = 0;
    for (char *h = c->buf; h < end; h = strstr(h, "\r\n") + 2)
        if (strncasecmp(h, "Content-Length:", 15) == 0) c->body_len = strtoul(h + 15, NULL, 10);
    return c->len >= c->body_at + c->body_len;
}

static void submit(conn *c) {
    pthread_mutex_lock(&lock);
    c->next = NULL;
    *queue_tail = c;
    queue_tail = &c->next;
    if (syncer_waiting) pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
}

static void *io(void *arg) {
    (void)arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL}, evs[64];
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev)) die("epoll");
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) {
                int fd, one = 1;
                while ((fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *nc = calloc(1, sizeof *nc);
                    if (!nc) die("calloc");
                    nc->fd = fd;
                    nc->ep = ep;
                    struct epoll_event ce = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = nc};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce)) die("epoll_ctl");
                }
                continue;
            }
            /* Disarmed until re-armed below, or by the syncer once the request is answered. */
            ssize_t r = 0;
            while (c->len < sizeof c->buf &&
                   (r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0)) > 0)
                c->len += (size_t)r;
            if (c->len && complete(c)) {
                submit(c);
            } else if (r < 0 && errno == EAGAIN) {
                struct epoll_event ce = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
                if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ce)) die("epoll_ctl");
            } else { /* closed, failed, or a request over 16 KiB */
                close(c->fd);
                free(c);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: bench_ceiling PORT DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/ceiling.log", argv[2]);
    log_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0) die(path);
    static const char zeros[1 << 20];
    for (size_t off = 0; off < LOG_BYTES; off += sizeof zeros)
        if (pwrite(log_fd, zeros, sizeof zeros, (off_t)off) != sizeof zeros) die("zero-fill");
    if (fdatasync(log_fd)) die("fdatasync");

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) || listen(listen_fd, 1024))
        die("listen");

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* the threads inherit it; main waits for it */
    pthread_t t;
    if (pthread_create(&t, NULL, syncer, NULL) || pthread_create(&t, NULL, io, NULL) ||
        pthread_create(&t, NULL, io, NULL))
        die("pthread_create");
    fprintf(stderr, "bench_ceiling: listening on 127.0.0.1:%s\n", argv[1]);
    int sig;
    sigwait(&stop, &sig);
    unlink(path);
    return 0;
}
