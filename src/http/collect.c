/* collect — the Segment HTTP Tracking API: /v1/track, /v1/identify, ... and /v1/batch.
 *
 * Each request is parsed, authenticated (Basic user or body writeKey), validated event by event
 * with ev_normalize(), and its valid events handed to the committer in one piece; the reply goes
 * out once they are durable. A batch with invalid items stores the valid ones and lists each
 * rejected item with its index and reason; nothing is dropped silently. */
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

#define BATCH_MAX_EVENTS 2500

/* The writeKey member, when the body carries the key (sendBeacon and some SDKs do). */
static const char *body_write_key(const json_t *root) {
    return json_string_value(json_object_get(root, "writeKey"));
}

static void single_committed(http_req *r) {
    if (r->creq.status) {
        r->retry_after = 1;
        http_reply_error(r, "unavailable", NULL, "the event could not be stored; retry");
        return;
    }
    metrics_count_events(r->creq.stored, r->creq.duplicates, NULL, 0);
    buf b = BUF_INIT(0);
    buf_puts(&b, "{\"success\":true}");
    http_reply_json(r, 200, &b);
}

void collect_single(http_req *r) {
    ev_type type;
    const char *slash = strrchr(r->route->path, '/');
    if (!ev_type_parse(slash + 1, &type)) {
        http_reply_error(r, "internal", NULL, "route %s has no event type", r->route->path);
        return;
    }
    json_t *root = http_json_object(r);
    if (!root) return;
    r->events_received = 1;
    if (http_authorize(r, body_write_key(root), 1)) goto out;
    r->events = calloc(1, sizeof *r->events);
    if (!r->events) {
        http_reply_error(r, "internal", NULL, "out of memory");
        goto out;
    }
    ev_envelope env = {.received_ms = r->received_ms};
    ev_error err;
    if (ev_normalize(root, (int)type, &env, &r->events[0], &err)) {
        const char *code = err.code;
        metrics_count_events(0, 0, &code, 1);
        http_reply_ev_error(r, &err);
        goto out;
    }
    r->nevents = 1;
    http_commit(r, single_committed);
out:
    json_decref(root);
}

/* Adds {"index":i,"code":...,"field":...,"message":...} to the rejected list in r->extra. */
static void reject(http_req *r, size_t index, const ev_error *e) {
    buf *b = &r->extra;
    buf_printf(b, "%s{\"index\":%zu,\"code\":\"%s\"", b->len ? "," : "", index, e->code);
    if (*e->field) { /* present only when one field is at fault */
        buf_puts(b, ",\"field\":\"");
        buf_json_escape(b, e->field, strlen(e->field));
        buf_putc(b, '"');
    }
    buf_puts(b, ",\"message\":\"");
    buf_json_escape(b, e->message, strlen(e->message));
    buf_puts(b, "\"}");
}

static void batch_committed(http_req *r) {
    if (r->creq.status) {
        r->retry_after = 1;
        http_reply_error(r, "unavailable", NULL, "the batch could not be stored; retry");
        return;
    }
    metrics_count_events(r->creq.stored, r->creq.duplicates, NULL, 0);
    buf b = BUF_INIT(0);
    buf_printf(&b, "{\"success\":true,\"accepted\":%zu,\"duplicates\":%zu,\"rejected\":[%s]}",
               r->nevents, r->creq.duplicates, buf_str(&r->extra));
    http_reply_json(r, 200, &b);
}

/* Checks that the batch-level member name, if present, is an object. */
static bool envelope_object(http_req *r, const json_t *root, const char *name, const json_t **out) {
    const json_t *v = json_object_get(root, name);
    if (v && !json_is_object(v) && !json_is_null(v)) {
        http_reply_error(r, "invalid_field", name, "%s must be an object", name);
        return false;
    }
    *out = json_is_object(v) ? v : NULL;
    return true;
}

void collect_batch(http_req *r) {
    json_t *root = http_json_object(r);
    if (!root) return;
    const json_t *batch = json_object_get(root, "batch");
    const json_t *context, *integrations;
    const json_t *sent_at = json_object_get(root, "sentAt");
    size_t n = json_array_size(batch);
    r->events_received = n;
    if (!batch) {
        http_reply_error(r, "missing_field", "batch", "batch is required: an array of events");
    } else if (!json_is_array(batch)) {
        http_reply_error(r, "invalid_body", "batch", "batch must be an array of events");
    } else if (n == 0) {
        http_reply_error(r, "missing_field", "batch", "batch is empty: send at least one event");
    } else if (n > BATCH_MAX_EVENTS) {
        http_reply_error(r, "too_many_events", "batch",
                         "batch has %zu events; at most %d are allowed", n, BATCH_MAX_EVENTS);
    } else if (sent_at && !json_is_string(sent_at) && !json_is_null(sent_at)) {
        http_reply_error(r, "invalid_field", "sentAt", "sentAt must be an RFC 3339 string");
    } else if (envelope_object(r, root, "context", &context) &&
               envelope_object(r, root, "integrations", &integrations) &&
               !http_authorize(r, body_write_key(root), (double)n)) {
        goto valid;
    }
    json_decref(root);
    return;

valid:
    r->events = calloc(n, sizeof *r->events);
    if (!r->events) {
        http_reply_error(r, "internal", NULL, "out of memory");
        json_decref(root);
        return;
    }
    ev_envelope env = {.received_ms = r->received_ms,
                       .context = context,
                       .integrations = integrations,
                       .sent_at = json_string_value(sent_at)};
    const char **codes = malloc(n * sizeof *codes);
    size_t nrejected = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *item = json_array_get(batch, i);
        ev_error err;
        if (!json_is_object(item)) {
            ev_error_set(&err, "invalid_field", "", "batch[%zu] must be an event object", i);
        } else if (ev_normalize(item, EV_NTYPES, &env, &r->events[r->nevents], &err) == 0) {
            r->nevents++;
            continue;
        }
        reject(r, i, &err);
        if (codes) codes[nrejected] = err.code;
        nrejected++;
    }
    if (codes) metrics_count_events(0, 0, codes, nrejected);
    free(codes);
    json_decref(root);
    if (r->nevents == 0) {
        buf b = BUF_INIT(0);
        buf_printf(&b,
                   "{\"error\":{\"code\":\"invalid_batch\",\"message\":\"none of the %zu events "
                   "is valid; see rejected\"},\"rejected\":[%s]}",
                   n, buf_str(&r->extra));
        r->error_code = "invalid_batch";
        http_reply_json(r, 400, &b);
        return;
    }
    http_commit(r, batch_committed);
}
