/* consent — the consent ledger: what one customer agreed to, on which channel, for which purpose,
 * when, on whose word and with what proof.
 *
 * A ledger is an append-only history of records {channel, purpose, status, at, source, proof,
 * actor}. Nothing is ever edited: a customer who unsubscribes adds a "withdrawn" record after the
 * "granted" one, so the history answers a regulator's "show me when and how this person agreed".
 * The state of a (channel, purpose) pair is its latest record by `at`; between records with the
 * same `at`, the later one in the ledger wins. The caller keys ledgers by profile; docs/consent.md
 * describes the whole thing from the API's side.
 *
 * Channels: email, sms, whatsapp, messenger, push, web, phone, post, and "all", whose records
 * speak for every channel: the decision for (email, marketing) is the latest of the records for
 * (email, marketing) and (all, marketing), so a later specific record overrides an "all" record
 * and a later "all" record overrides the specific ones.
 *
 * Purposes: marketing, transactional and profiling, and any other name of 1..32 bytes of
 * [a-z0-9_] ("newsletter", "reviews"). Whether a send may go when a customer has said nothing is
 * the purpose's default policy (GDPR art. 6 and 7: marketing and profiling need a prior opt-in;
 * transactional messages, such as an order confirmation, are part of the contract):
 *
 *   purpose        with no record                 allowed when the deciding record is
 *   transactional  allowed (opt-out)              granted (denied and withdrawn stop it)
 *   marketing      not allowed (opt-in)           granted
 *   profiling      not allowed (opt-in)           granted
 *   any other      not allowed (opt-in)           granted
 *
 * A caller may override the default per query (CONSENT_OPT_IN, CONSENT_OPT_OUT), e.g. for a
 * shop's own purpose that its terms make opt-out.
 *
 * Caps: a ledger holds at most CONSENT_MAX_RECORDS records. Past that, the oldest superseded
 * records (those no longer the state of their pair; oldest by `at`, then by position) are dropped
 * first; the current ones never are. A ledger holds at most CONSENT_MAX_PURPOSES distinct
 * purposes: appending a record for one more fails with CONSENT_EFULL, so its current records (at
 * most 9 channels x 32 purposes = 288) always fit. consent_merge() never fails for that reason: a
 * merged ledger may hold up to twice the purposes, and it keeps every current record even in the
 * (practically impossible) case that they alone pass the cap.
 *
 * Ownership: a ledger owns its records and their proof strings; consent_get() and the query
 * functions return pointers into it, valid until the ledger next changes. The read functions
 * (count, get, current, effective, allows, the JSON) and consent_forget() take NULL as an empty
 * ledger, so a profile without one needs no special case. Not thread-safe: a
 * ledger belongs to the engine thread that owns its profile. Costs are in the number of records
 * n: append O(1) amortised, O(n log n) when the cap is reached; queries O(n); merge
 * O((n + m) log(n + m)). */
#ifndef ENGAGED_CONSENT_H
#define ENGAGED_CONSENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest/ev.h"

#define CONSENT_MAX_RECORDS 1000
#define CONSENT_MAX_PURPOSES 32
/* A purpose or source name: 1..32 bytes of [a-z0-9_]. */
#define CONSENT_NAME_MAX 32
#define CONSENT_PROOF_MAX 512
/* An actor is "customer", "system" or "agent:<id>", the id 1..64 bytes of [A-Za-z0-9_.@-]. */
#define CONSENT_AGENT_ID_MAX 64
#define CONSENT_ACTOR_MAX (6 + CONSENT_AGENT_ID_MAX)
/* The most records one request body may carry unless consent_defaults says otherwise. */
#define CONSENT_BATCH_MAX 100
/* The most records consent_from_event() takes from one event. */
#define CONSENT_EVENT_MAX 64
/* How far in the future a record's `at` may be (clock skew between a shop and engaged): a record
 * dated far ahead would decide its pair until then, whatever the customer said in between. */
#define CONSENT_FUTURE_MS (24 * 3600 * 1000LL)

typedef enum consent_channel {
    CONSENT_EMAIL,
    CONSENT_SMS,
    CONSENT_WHATSAPP,
    CONSENT_MESSENGER,
    CONSENT_PUSH,
    CONSENT_WEB,
    CONSENT_PHONE,
    CONSENT_POST,
    CONSENT_ALL,
    CONSENT_NCHANNELS
} consent_channel;

typedef enum consent_status {
    CONSENT_GRANTED,
    CONSENT_DENIED,    /* asked, and said no */
    CONSENT_WITHDRAWN, /* said yes before, and took it back (an unsubscribe) */
    CONSENT_NSTATUS
} consent_status;

typedef enum consent_policy {
    CONSENT_POLICY_DEFAULT, /* the purpose's row of the table above */
    CONSENT_OPT_IN,         /* not allowed unless granted */
    CONSENT_OPT_OUT,        /* allowed unless denied or withdrawn */
} consent_policy;

typedef struct consent_record {
    consent_channel channel;
    consent_status status;
    int64_t at_ms; /* when the customer decided, ms since the epoch (years 1..9999) */
    char purpose[CONSENT_NAME_MAX + 1];
    char source[CONSENT_NAME_MAX + 1]; /* how it was recorded: "api", "identify", "web_form" */
    char actor[CONSENT_ACTOR_MAX + 1]; /* who recorded it */
    const char *proof; /* an IP, a form id, a message id; NULL for none; a ledger owns its copy */
} consent_record;

/* Names, for the channels ("email", ..., "all") and statuses ("granted", ...). Lookups are exact
 * (lower-case) and return -1 for NULL or an unknown name; the name functions return NULL for an
 * out-of-range value. */
int consent_channel_lookup(const char *name);
const char *consent_channel_name(int channel);
int consent_status_lookup(const char *name);
const char *consent_status_name(int status);
/* 1..32 bytes of [a-z0-9_]: valid as a purpose and as a source. */
bool consent_name_valid(const char *name);
/* CONSENT_OPT_OUT or CONSENT_OPT_IN: the default of the table above for this purpose. */
consent_policy consent_purpose_policy(const char *purpose);

/* Checks a record built in C against the rules the JSON parser applies (field names as in the
 * JSON). Returns 0, or -1 with *err filled. */
int consent_record_check(const consent_record *r, ev_error *err);

typedef struct consent_ledger consent_ledger;

/* A new empty ledger, or NULL when memory runs out. */
consent_ledger *consent_ledger_new(void);
void consent_ledger_free(consent_ledger *l); /* NULL is fine */
size_t consent_count(const consent_ledger *l);
/* Record i in ledger order (0 is the oldest appended), or NULL past the end. */
const consent_record *consent_get(const consent_ledger *l, size_t i);

/* consent_append() results besides 1 (appended). */
enum {
    CONSENT_UNCHANGED = 0, /* skipped under CONSENT_SKIP_UNCHANGED */
    CONSENT_ENOMEM = -1,
    CONSENT_EFULL = -2,  /* the record would bring a purpose past CONSENT_MAX_PURPOSES */
    CONSENT_EINVAL = -3, /* the record fails consent_record_check() */
};
/* Flags for consent_append() and consent_apply(). */
enum {
    /* Skip a record that would not change its pair's state: the pair's current record has the
     * same status and an `at` no later. For consent read from events (every page view may carry
     * the same cookie-banner choice): the first record, with its proof, stays the one in force. */
    CONSENT_SKIP_UNCHANGED = 1u << 0,
};

/* Appends a copy of r (the proof is copied). Returns 1, or one of the values above; on any
 * result but 1 the ledger is unchanged. When the ledger passes the cap, the oldest superseded
 * record is dropped, which may be r itself if it is older than its pair's current record. */
int consent_append(consent_ledger *l, const consent_record *r, unsigned flags);
/* Appends every record of src, in order, as consent_append() would. All or nothing: returns the
 * number appended, or a negative value with dst unchanged. */
int consent_apply(consent_ledger *dst, const consent_ledger *src, unsigned flags);
/* Profile merge: dst becomes the union of both histories sorted by `at`; among equal `at`, dst's
 * records come first, then src's, each in its own order (so src wins ties). A src record equal in
 * every field to one of dst's is the same record seen again (merging twice, or a ledger with a
 * copy of itself) and is left out; duplicates within one ledger stay. The cap then drops the
 * oldest superseded records. Returns 0, or CONSENT_ENOMEM with dst unchanged. src is only read. */
int consent_merge(consent_ledger *dst, const consent_ledger *src);
/* Erasure (GDPR art. 17): drops every record. The ledger stays usable. A shop that must keep
 * honouring an opt-out after erasing the profile keeps a suppression entry elsewhere. */
void consent_forget(consent_ledger *l);

/* The current record of exactly (channel, purpose), "all" not considered; NULL when none. */
const consent_record *consent_current(const consent_ledger *l, consent_channel channel,
                                      const char *purpose);
/* The record that decides a send on channel for purpose: the latest of the records for (channel,
 * purpose) and (all, purpose); for CONSENT_ALL itself, of (all, purpose). NULL when none. */
const consent_record *consent_effective(const consent_ledger *l, consent_channel channel,
                                        const char *purpose);
/* Whether a send on channel for purpose may go: the deciding record's status when there is one
 * (granted: yes; denied, withdrawn: no), else the policy (CONSENT_POLICY_DEFAULT: the purpose's
 * default). An invalid channel or purpose name is never allowed. */
bool consent_allows(const consent_ledger *l, consent_channel channel, const char *purpose,
                    consent_policy policy);

/* The state: {"email":{"marketing":{"status":"granted","at":"2024-05-01T10:00:00.000Z",
 * "source":"web_form","actor":"customer","proof":"..."}},"all":{...}}: every pair's current
 * record, channels in table order, purposes by name, "proof" only when there is one; {} for an
 * empty ledger. A new reference, or NULL when memory runs out. */
json_t *consent_state_json(const consent_ledger *l);
/* The history for a GDPR export: {"records":[...]}, every record in ledger order, in the shape
 * consent_parse() reads. A new reference, or NULL when memory runs out. */
json_t *consent_history_json(const consent_ledger *l);

/* What consent_parse() fills in for fields a record leaves out, and its limits. */
typedef struct consent_defaults {
    int64_t now_ms;     /* `at` when absent; `at` may be at most CONSENT_FUTURE_MS past it */
    const char *source; /* source when absent; NULL: "api" */
    const char *actor;  /* actor when absent; NULL: "system" */
    size_t max_records; /* the most records a body may carry; 0: CONSENT_BATCH_MAX */
} consent_defaults;

/* Validates the body of POST /v1/profiles/{id}/consent: {"records":[RECORD, ...]} (1 to
 * max_records records) or one RECORD, where RECORD is
 *   {"channel": "email", "purpose": "marketing", "status": "granted"|"denied"|"withdrawn",
 *    "at": RFC 3339 (optional), "source": name (optional), "proof": string (optional),
 *    "actor": "customer"|"system"|"agent:<id>" (optional)}.
 * channel, purpose and status are required; null counts as absent; unknown fields are refused
 * (a misspelt "purpose" must not silently become a default). Appends the records, in order, to
 * out (consent_apply() then moves them into the profile's ledger). Returns the number appended, or
 * -1 with *err naming the field ("records[2].status", or "status" for a single record) and out
 * unchanged; err->code "internal" when memory ran out. Cost: one pass over the body. */
int consent_parse(const json_t *body, const consent_defaults *d, consent_ledger *out,
                  ev_error *err);

/* What consent_from_event() could not use. */
typedef struct consent_ignored {
    int n;          /* values ignored: wrong type, unknown channel, bad purpose, over the cap */
    ev_error first; /* the first of them, with its path ("traits.consent.email.marketing") */
} consent_ignored;

/* Reads the consent an event states, as records dated at_ms (the event's time), with message_id
 * (the event's messageId; NULL or "": none) as proof and "customer" as actor, appended to out in
 * this order:
 *   1. context.consent.categoryPreferences (any event type; source "cmp"): Segment's consent
 *      object, {"Advertising": true, "Analytics": false}, mapped to purposes by the table in
 *      consent.c (docs/consent.md lists it); the cookie banner speaks for the website, so the
 *      records are for channel "web", except DataSharing (all, data_sharing). Several categories
 *      for one pair give one record, denied if any of them is false;
 *   2. on identify events only (identify), from traits (or context.traits when traits is absent;
 *      source "identify"):
 *      a. traits.consent = {"<channel>": {"<purpose>": true|false|"granted"|"denied"|
 *         "withdrawn"}}, or {"<purpose>": ...} for channel "all" (true is granted, false denied);
 *      b. traits.<channel>_opt_in = true|false ("email_opt_in", "sms_opt_in", ...): marketing on
 *         that channel granted or denied;
 *      c. traits.unsubscribed = true: email marketing withdrawn (false says nothing: not having
 *         unsubscribed is not an opt-in).
 * Later records win ties, so an unsubscribe beats an opt-in in the same event. Values of the
 * wrong type and unknown names are skipped and counted in *ig (may be NULL). Returns the number of
 * records appended, or CONSENT_ENOMEM with out unchanged. The type and the messageId are the
 * caller's to give, not read from event: the engine's tree of an event keeps neither (ev.h). */
int consent_from_event(const json_t *event, bool identify, const char *message_id, int64_t at_ms,
                       consent_ledger *out, consent_ignored *ig);

#endif
