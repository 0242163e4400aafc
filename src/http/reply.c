/* reply — building responses, and the one table of error codes and their HTTP statuses. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

/* Every machine-readable error code the API returns (docs/api.md lists them for clients). */
static const struct {
    const char *code;
    int status;
} error_codes[] = {
    {"invalid_json", 400},       {"invalid_body", 400},
    {"missing_field", 400},      {"invalid_field", 400},
    {"invalid_batch", 400},      {"too_deep", 400},
    {"unauthorized", 401},       {"forbidden", 403},
    {"origin_not_allowed", 403}, {"not_found", 404},
    {"method_not_allowed", 405}, {"conflict", 409},
    {"event_too_large", 413},    {"body_too_large", 413},
    {"too_many_events", 413},    {"unsupported_encoding", 415},
    {"product_too_large", 413},  {"too_many_products", 413},
    {"rate_limited", 429},       {"internal", 500},
    {"unavailable", 503},
};

int http_error_status(const char *code) {
    for (size_t i = 0; i < sizeof error_codes / sizeof error_codes[0]; i++)
        if (strcmp(error_codes[i].code, code) == 0) return error_codes[i].status;
    return 400;
}

void http_reply_take(http_req *r, int status, const char *content_type, char *body, size_t len) {
    free(r->resp_body);
    r->status = status;
    r->resp_type = content_type;
    r->resp_body = body;
    r->resp_len = len;
}

void http_reply_json(http_req *r, int status, buf *b) {
    size_t len;
    char *p = buf_detach(b, &len);
    http_reply_take(r, status, "application/json", p, len);
}

static void reply_error_status(http_req *r, int status, const char *code, const char *field,
                               const char *msg) {
    buf b = BUF_INIT(0);
    buf_puts(&b, "{\"error\":{\"code\":\"");
    buf_puts(&b, code);
    buf_puts(&b, "\",\"message\":\"");
    buf_json_escape(&b, msg, strlen(msg));
    buf_putc(&b, '"');
    if (field && *field) {
        buf_puts(&b, ",\"field\":\"");
        buf_json_escape(&b, field, strlen(field));
        buf_putc(&b, '"');
    }
    buf_puts(&b, "}}");
    r->error_code = code;
    http_reply_json(r, status, &b);
}

static void reply_error_msg(http_req *r, const char *code, const char *field, const char *msg) {
    reply_error_status(r, http_error_status(code), code, field, msg);
}

void http_reply_error_status(http_req *r, int status, const ev_error *e) {
    reply_error_status(r, status, e->code, e->field[0] ? e->field : NULL, e->message);
}

void http_reply_error(http_req *r, const char *code, const char *field, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reply_error_msg(r, code, field, msg);
}

void http_reply_ev_error(http_req *r, const ev_error *e) {
    reply_error_msg(r, e->code, e->field, e->message);
}

void http_reply_json_error(http_req *r, const json_error_t *je) {
    buf b = BUF_INIT(0);
    char msg[300];
    snprintf(msg, sizeof msg, "the body is not valid JSON: %s (line %d, column %d)", je->text,
             je->line, je->column);
    buf_puts(&b, "{\"error\":{\"code\":\"invalid_json\",\"message\":\"");
    buf_json_escape(&b, msg, strlen(msg));
    buf_printf(&b, "\",\"position\":%d,\"line\":%d,\"column\":%d}}", je->position, je->line,
               je->column);
    r->error_code = "invalid_json";
    http_reply_json(r, 400, &b);
}
