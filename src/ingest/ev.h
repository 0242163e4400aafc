/* ev — validation and normalisation of one Segment-shaped event.
 *
 * The HTTP layer, `engaged import` and the SDK endpoints all turn client JSON into store-ready
 * events here, so every entry point applies the same rules (../docs/api.md has them from the
 * client's side):
 *   - type is one of identify, track, page, screen, group, alias;
 *   - userId or anonymousId (string, or a number taken as its decimal string; non-empty, <= 255
 * bytes, no NUL character);
 *   - track needs a non-empty `event`; alias needs `previousId`; group needs `groupId`;
 *   - properties / traits / context / integrations, when present, are objects;
 *   - messageId, when present, a non-empty string of at most EV_MESSAGE_ID_MAX bytes; absent, one
 * is made;
 *   - timestamp / originalTimestamp / sentAt, when present, RFC 3339 strings (util/timefmt.h);
 *   - the serialised event is at most EV_MAX_BYTES, and no value nests deeper than EV_MAX_DEPTH;
 *   - e-commerce events (ingest/commerce.h) have their typed fields checked and coerced.
 * Anything else in the event is kept as sent, except `writeKey`, which is never stored, and a
 * top-level `kind`, which engaged reserves for the e-commerce kind it sets itself.
 *
 * Details the list above leaves open:
 *   - JSON null counts as absent for every field named above, and so does an empty string for
 *     type, event, the ids, messageId and the timestamps; such a field is dropped from the event;
 *   - previousId and groupId follow the same rules as userId (a number becomes its decimal string);
 *   - userId, anonymousId, previousId, groupId and messageId are written back as strings;
 *     timestamp, receivedAt, and originalTimestamp / sentAt when given, as RFC 3339 UTC with
 *     milliseconds; a batch-level sentAt is copied into events that have none;
 *   - context and integrations are merged shallowly: a batch-level key is added only where the
 *     event's object lacks that key; nested objects are never merged key by key;
 *   - an e-commerce track event gets "kind" (cm_kind_name(), e.g. "order_completed") and its
 *     properties coerced (commerce.h);
 *   - numbers that are not integers are written with the fewest digits that read back as the same
 *     double (util/jsonw.h): 19.99 stays 19.99, never 19.989999999999998.
 *
 * Timestamps follow Segment: receivedAt is the server's clock; an explicit `timestamp` is kept as
 * the event time; otherwise the time is corrected for the device's clock skew as timestamp =
 * receivedAt - (sentAt - originalTimestamp) (sentAt from the event, else from the batch envelope),
 * or originalTimestamp when there is no sentAt, or receivedAt when there is neither.
 *
 * Ownership: ev_normalize() never takes or changes `raw`; everything in an ev_event is owned by it
 * and released by ev_event_free(). Cost: one pass over the event plus one serialisation.
 * Thread-safe. */
#ifndef ENGAGED_EV_H
#define ENGAGED_EV_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest/commerce.h"
#include "util/jscan.h"

#define EV_MAX_BYTES (32 * 1024)
#define EV_MAX_DEPTH 32
#define EV_MESSAGE_ID_MAX 100
#define EV_ID_MAX 255

typedef enum ev_type {
    EV_IDENTIFY,
    EV_TRACK,
    EV_PAGE,
    EV_SCREEN,
    EV_GROUP,
    EV_ALIAS,
    EV_NTYPES
} ev_type;

/* "identify", "track", ...; NULL for an out-of-range value. */
const char *ev_type_name(ev_type t);
/* Looks a type name up; returns false for an unknown one. */
bool ev_type_parse(const char *name, ev_type *out);

/* A mistake in the client's input. code is one of the machine-readable codes of docs/api.md
 * ("missing_field", "invalid_field", "event_too_large", ...); field is a path into the event
 * ("userId", "properties.products[2].price"), empty when no single field is at fault; message is a
 * sentence for people that names the field. */
typedef struct ev_error {
    const char *code; /* a static string */
    char field[128];
    char message[256];
} ev_error;

/* What a request adds to each of its events. */
typedef struct ev_envelope {
    int64_t received_ms; /* the engine clock when the request arrived */
    const json_t *
        context; /* batch-level context, merged into each event's (the event's keys win); or NULL */
    const json_t *integrations; /* likewise */
    const char *sent_at;        /* batch-level sentAt as sent, or NULL */
} ev_envelope;

/* A normalised event, ready to be stored. */
typedef struct ev_event {
    ev_type type;
    int64_t timestamp_ms; /* the event's time, skew-corrected */
    int64_t received_ms;
    char message_id[EV_MESSAGE_ID_MAX + 1];
    char *user_id;      /* NULL when absent */
    char *anonymous_id; /* NULL when absent */
    char *event_name;   /* a track's `event`, decoded; NULL for the other types */
    cm_event *commerce; /* typed e-commerce fields; NULL unless a track event of a known kind */
    char *body;         /* the normalised event as compact JSON, NUL-terminated */
    size_t body_len;
    json_t *json; /* the other members of the body the engine reads (ev_engine_member()), parsed;
                     NULL when the event has none (most track events); it reads the e-commerce
                     fields from commerce */
    /* Set by the log: */
    int64_t seq;    /* the event's place in the log once stored; 0 for a duplicate */
    bool command;   /* a log record that is an engine command (body {"op":...}), not an event */
    json_t *result; /* a command's outcome, set by the engine when it applied it */
} ev_event;

/* Whether the engine reads member key (len bytes) of a stored event in its tree: previousId,
 * channel, traits and context; and of context, only the members ev_engine_context_member()
 * names. Only these are kept in ev_event.json, and replay builds only these: a tree is the
 * costliest part of handing an event over (making and freeing it), and the rest (properties,
 * integrations, times, SDK metadata such as context.library) is read from the stored body by
 * whoever needs it. What every event has is handed over beside the tree, as text: the type, the
 * messageId, the ids and a track's name (ev_event.type, .message_id, .user_id, .anonymous_id,
 * .event_name; a stored record's type, message id and ids, and the name from its body). As
 * members they cost three allocations each, and a track event of a server-side SDK has no other:
 * it then needs no tree at all. */
bool ev_engine_member(const char *key, size_t len);
/* Whether the engine reads member key of an event's context: traits, externalIds, consent,
 * channel, app, userAgent, page, device. */
bool ev_engine_context_member(const char *key, size_t len);
/* Sets member key (len bytes) of the engine's tree *tree to v, taking the reference in every case
 * (v NULL: making it ran out of memory); the tree is made with its first member (*tree NULL). A
 * context left empty (none of the members the engine reads) is left out instead: the engine reads
 * an absent one the same, and server-side SDKs send only context.library, so an empty one would be
 * three allocations for nothing. 0, or -1 when memory runs out. */
int ev_engine_set(json_t **tree, const char *key, size_t len, json_t *v);
/* The same for member key (a key token of d, whose member ev_engine_member() names) with its
 * value as jansson reads it, a context keeping only the members the engine reads; a context with
 * none of them is left out without making anything. 0, or -1 when memory runs out (*tree as it
 * was, or newly made and empty). */
int ev_engine_put(json_t **tree, const js_doc *d, uint32_t key);

/* Validates and normalises raw. type is the endpoint's type, or EV_NTYPES to read it from raw's
 * "type" field (as in a batch). Returns 0 and fills *out, or -1 and fills *err (then *out needs no
 * freeing). */
int ev_normalize(const json_t *raw, int type, const ev_envelope *env, ev_event *out, ev_error *err);
void ev_event_free(ev_event *e);

/* The same normalisation over an event already scanned by js_parse(): the object at token tok of
 * d, read without building a tree of it. Returns 0 and fills *out exactly as ev_normalize() would
 * from jansson's reading of the same text (the body byte for byte; json equal); or 1, declining,
 * with *out empty: then the caller runs ev_normalize() on js_to_json(d, tok). It declines every
 * event that ev_normalize() would refuse, and the rarer shapes of valid ones (numeric ids, an
 * escaped type name, a commerce event whose properties need a fix-up it cannot make), so errors
 * are always ev_normalize()'s own. The envelope's objects are depth-checked by the caller (once
 * per batch, not per event). Cost: one pass over the event's members and one write of its text;
 * the engine's tree (out->json) is built from the tokens, and only an e-commerce event's
 * properties become a jansson tree. env's objects must have passed ev_envelope_check(). */
int ev_normalize_text(const js_doc *d, uint32_t tok, int type, const ev_envelope *env,
                      ev_event *out);
/* Whether env's context and integrations pass the depth rule that ev_normalize() applies to them
 * with each event: a batch checks its envelope once, then normalises its events with
 * ev_normalize_text(). false: leave the batch to ev_normalize(), which reports the error. */
bool ev_envelope_check(const ev_envelope *env);

/* The decimal string of a JSON number used as an id: writes it into out and returns true for an
 * integer, or a real with no fractional part and a magnitude of at most 2^53 (so the digits are
 * exact); returns false for anything else. Shared with commerce.c, which applies the same rule to
 * product ids. */
#define EV_NUMBER_TEXT_LEN 24
bool ev_number_text(const json_t *v, char out[EV_NUMBER_TEXT_LEN]);

/* Formats an error into *err; used by every layer that reports one the same way. */
void ev_error_set(ev_error *err, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
