#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/timefmt.h"

static log_level min_level = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level min) {
    min_level = min;
}

void log_emit(log_level level, const char *msg, const char *fields) {
    if (level < min_level) return;
    char ts[TF_LEN];
    buf b = BUF_INIT(64 * 1024);
    buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", tf_format(clock_now_ms(), ts),
               level_names[level]);
    buf_json_escape(&b, msg, strlen(msg));
    buf_putc(&b, '"');
    if (fields && *fields) {
        buf_putc(&b, ',');
        buf_puts(&b, fields);
    }
    buf_puts(&b, "}\n");
    /* One write per line: stderr is unbuffered and shared by every thread. */
    ssize_t rc = write(STDERR_FILENO, buf_str(&b), b.len);
    (void)rc;
    buf_free(&b);
}

void log_msg(log_level level, const char *fmt, ...) {
    if (level < min_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_emit(level, msg, NULL);
}
