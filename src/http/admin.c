/* admin — reading events back, health, and the test clock. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "util/clock.h"
#include "util/timefmt.h"

#define EVENTS_DEFAULT_LIMIT 100
#define EVENTS_MAX_LIMIT 1000
/* A page is at most 1000 events of at most 32 KB each. */
#define EVENTS_MAX_REPLY (EVENTS_MAX_LIMIT * (EV_MAX_BYTES + 64) + 4096)

typedef struct events_args {
    http_req *r;
    store_query q;
} events_args;

/* The cursor is opaque to clients; today it is the seq of the last event of the previous page. */
static int events_arg(void *arg, const char *key, const char *value) {
    events_args *a = arg;
    http_req *r = a->r;
    int64_t v;
    if (strcmp(key, "user_id") == 0 || strcmp(key, "anonymous_id") == 0) {
        if (!*value || strlen(value) > EV_ID_MAX) {
            http_reply_error(r, "invalid_field", key, "%s must be 1 to %d bytes", key, EV_ID_MAX);
            return 1;
        }
        if (key[0] == 'u')
            a->q.user_id = value;
        else
            a->q.anonymous_id = value;
    } else if (strcmp(key, "type") == 0) {
        ev_type t;
        if (!ev_type_parse(value, &t)) {
            http_reply_error(r, "invalid_field", "type",
                             "type must be identify, track, page, screen, group or alias");
            return 1;
        }
        a->q.type = (int)t;
    } else if (strcmp(key, "since") == 0) {
        if (!tf_parse(value, strlen(value), &a->q.since_ms)) {
            http_reply_error(r, "invalid_field", "since",
                             "since must be an RFC 3339 time, e.g. 2024-05-01T10:00:00Z");
            return 1;
        }
    } else if (strcmp(key, "limit") == 0) {
        if (!http_parse_int64(value, 1, EVENTS_MAX_LIMIT, &v)) {
            http_reply_error(r, "invalid_field", "limit", "limit must be an integer from 1 to %d",
                             EVENTS_MAX_LIMIT);
            return 1;
        }
        a->q.limit = (int)v;
    } else if (strcmp(key, "cursor") == 0) {
        if (!http_parse_int64(value, 0, INT64_MAX, &a->q.after_seq)) {
            http_reply_error(r, "invalid_field", "cursor",
                             "cursor is not one this server gave out (use the last reply's next)");
            return 1;
        }
    } else {
        http_reply_error(r, "invalid_field", key,
                         "unknown parameter %.64s (known: user_id, anonymous_id, type, since, "
                         "limit, cursor)",
                         key);
        return 1;
    }
    return 0;
}

void admin_events(http_req *r) {
    events_args a = {
        r, {.type = -1, .since_ms = INT64_MIN, .after_seq = 0, .limit = EVENTS_DEFAULT_LIMIT}};
    if (http_query_each(r, events_arg, &a)) return;
    buf b = BUF_INIT(EVENTS_MAX_REPLY);
    int64_t next;
    buf_puts(&b, "{\"events\":");
    if (store_query_events(http_store(r), &a.q, &b, &next)) {
        buf_free(&b);
        http_reply_error(r, "internal", NULL, "reading events failed: %s", store_errmsg());
        return;
    }
    if (next >= 0)
        buf_printf(&b, ",\"next\":\"%lld\"}", (long long)next);
    else
        buf_puts(&b, ",\"next\":null}");
    http_reply_json(r, 200, &b);
}

void admin_healthz(http_req *r) {
    buf b = BUF_INIT(0);
    buf_puts(&b, "{\"status\":\"ok\"}");
    http_reply_json(r, 200, &b);
}

/* GET: the engine clock. POST {"now":"RFC 3339"} or {"advance_ms":N}: move it (test mode only). */
void admin_clock(http_req *r) {
    if (strcmp(r->method, "POST") == 0) {
        if (!clock_is_test_mode()) {
            http_reply_error(r, "conflict", NULL,
                             "the clock can only be set when the server runs with --test-clock");
            return;
        }
        json_t *root = http_json_object(r);
        if (!root) return;
        const json_t *now = json_object_get(root, "now"),
                     *adv = json_object_get(root, "advance_ms");
        int64_t ms;
        if (now && (!json_is_string(now) ||
                    !tf_parse(json_string_value(now), json_string_length(now), &ms))) {
            http_reply_error(r, "invalid_field", "now", "now must be an RFC 3339 time");
        } else if (adv && (!json_is_integer(adv) || json_integer_value(adv) < 0)) {
            http_reply_error(r, "invalid_field", "advance_ms",
                             "advance_ms must be a non-negative integer");
        } else if (!now == !adv) {
            http_reply_error(r, "missing_field", "now", "give exactly one of now and advance_ms");
        } else if (now ? !clock_set_ms(ms) : !clock_advance_ms(json_integer_value(adv))) {
            http_reply_error(r, "invalid_field", "now", "the clock never goes back");
        }
        json_decref(root);
        if (r->status) return;
    }
    char ts[TF_LEN];
    buf b = BUF_INIT(0);
    buf_printf(&b, "{\"now\":\"%s\",\"test_mode\":%s}", tf_format(clock_now_ms(), ts),
               clock_is_test_mode() ? "true" : "false");
    http_reply_json(r, 200, &b);
}
