/* offers — offers and coupon codes: definitions, unique codes, assignment, redemption, limits.
 *
 * An offer is a discount (percent, amount, free shipping) that customers use with a code: one
 * shared code everybody types ("SUMMER24"), a unique code per customer ("SUMMER-7KQ4-M2XD"), or no
 * code at all (an automatic offer, addressed by its id). It has a validity window, an eligibility
 * expression in the shared expression language, a per-customer and a total limit of redemptions,
 * the channels where it may be promoted, and a status. ../../docs/offers.md has the JSON and every
 * rule from the client's side.
 *
 * State changes in two steps, like every engine domain: a *prepare* call (offer_put, offer_patch,
 * offer_codes_generate, offer_codes_import, offer_assign, offer_redeem, offer_unredeem,
 * offer_forget_profile, offer_merge_profiles) checks the request against the state, only reading
 * it, and returns a *record*: a JSON object the caller writes to the durable log and then hands to
 * offer_apply(), which changes the state. offer_apply() depends only on the state, the record and
 * the logged now_ms, so replaying the log rebuilds the same state; it re-checks everything the
 * state decides (limits, code states, dates, status) and may refuse — the same way on every replay.
 * Eligibility depends on the profile, which the record does not carry: it is judged by the prepare
 * call only. Random codes are drawn by offer_codes_generate() and travel in the record. A prepare
 * call that needs no change (validating a code, assigning a shared code, a code already assigned,
 * an order already redeemed) returns the reply at once and no record.
 *
 * Every record has "op": "offer.put", "offer.patch", "offer.codes_add", "offer.assign",
 * "offer.redeem", "offer.unredeem", "offer.forget" or "offer.merge_profiles"; the engine routes
 * "offer.*" records here.
 *
 * Results: every call returns an offer_result. OFFER_OK, or a refusal whose machine code
 * (offer_result_code(), e.g. "expired"), HTTP status (offer_result_status()) and sentence are in
 * *err (an ev_error: code, field path, message), ready for the API's error body. OFFER_INVALID
 * carries the validation code the API uses for that mistake ("missing_field", "invalid_field",
 * "invalid_body", "too_deep", or the expression compiler's own code) in err->code. OFFER_NOMEM:
 * out of memory; the state is unchanged. err must not be NULL.
 *
 * Ownership: *record and *reply are new JSON references owned by the caller (json_decref), NULL
 * when the call refused. Arguments are only read; offer_apply() keeps nothing of the record (it
 * copies what it stores). The state owns every offer, code, assignment and redemption.
 *
 * Threads: none of this locks. The engine serialises calls (a rwlock: prepare calls and lookups
 * under the read lock, offer_apply() under the write lock), so concurrent redemptions are ordered
 * by the log and the limits hold exactly. The expression callbacks are called under whichever lock
 * the caller holds.
 *
 * Cost: looking up a code is O(1) (a hash table over every code of every offer); an offer by id
 * O(log offers). Per customer operations add O(the customer's offers) to find their counters.
 * offer_eligible_list() evaluates every offer's expression: O(offers). Memory: 54.5 bytes per
 * unique code of 16 characters, measured with 1,000,000 codes (test_code_caps): 16 for the code
 * record, 16-17 for its text, 16 for the hash table slots, 4 for the offer's list, all including
 * the slack of doubling arrays. */
#ifndef ENGAGED_OFFERS_H
#define ENGAGED_OFFERS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest/ev.h"

#define OFFER_ID_MAX 64          /* bytes of an offer id: [A-Za-z0-9_.-], first alphanumeric */
#define OFFER_CODE_MIN 3         /* a code is OFFER_CODE_MIN..OFFER_CODE_MAX of [A-Z0-9_-] */
#define OFFER_CODE_MAX 64        /*   (input is upper-cased first: codes are case-insensitive) */
#define OFFER_PREFIX_MAX 20      /* bytes of a generated code's prefix */
#define OFFER_PROFILE_ID_MAX 255 /* profile and order ids: 1..255 bytes of UTF-8 */
#define OFFER_NAME_MAX 200       /* bytes */
#define OFFER_DESCRIPTION_MAX 2000
#define OFFER_ELIGIBILITY_MAX 4000
#define OFFER_MAX_OFFERS 10000 /* defaults of offer_options */
#define OFFER_MAX_CODES_PER_OFFER 1000000
#define OFFER_MAX_CODES 20000000 /* unique codes over all offers */
#define OFFER_BATCH_MAX 100000   /* codes per offer_codes_generate / offer_codes_import call */
#define OFFER_LIST_MAX 1000      /* page size of the lists; 0 asks for OFFER_LIST_DEFAULT */
#define OFFER_LIST_DEFAULT 100

typedef enum offer_result {
    OFFER_OK = 0,
    OFFER_INVALID,                /* 400: the request is malformed; err->code says how */
    OFFER_UNKNOWN_OFFER,          /* 404 */
    OFFER_UNKNOWN_CODE,           /* 404: no offer has this code (or the offer has no codes) */
    OFFER_ARCHIVED,               /* 409: status archived */
    OFFER_PAUSED,                 /* 409: status paused */
    OFFER_NOT_STARTED,            /* 409: now < starts_at */
    OFFER_EXPIRED,                /* 409: now >= ends_at */
    OFFER_ALREADY_REDEEMED,       /* 409: a unique code is single-use and was used */
    OFFER_ASSIGNED_TO_OTHER,      /* 409: a unique code assigned to another profile */
    OFFER_NOT_ELIGIBLE,           /* 409: the eligibility expression is not true (or failed) */
    OFFER_LIMIT_REACHED,          /* 409: limits.total redemptions reached */
    OFFER_CUSTOMER_LIMIT_REACHED, /* 409: limits.per_customer redemptions reached */
    OFFER_NO_CODES_LEFT,          /* 409: every unique code is assigned or redeemed */
    OFFER_CODE_TAKEN,             /* 409: another offer (or this batch) already has the code */
    OFFER_CONFLICT,               /* 409: contradicts the offer's state (code_type change, ...) */
    OFFER_TOO_MANY_OFFERS,        /* 409: max_offers reached */
    OFFER_TOO_MANY_CODES,         /* 409: max_codes_per_offer or max_codes reached */
    OFFER_NOMEM,                  /* 503: out of memory; nothing changed */
    OFFER_NRESULTS
} offer_result;

/* "ok", "invalid", "unknown_offer", ..., the code of the API's error body ("invalid" is never
 * sent: OFFER_INVALID's err->code is). NULL out of range. */
const char *offer_result_code(offer_result r);
/* The HTTP status for r (200, 400, 404, 409, 503); 500 out of range. */
int offer_result_status(offer_result r);

/* The shared expression language (written elsewhere), through callbacks so this module does not
 * depend on it. compile returns an opaque compiled form, or NULL and fills *err (its code and
 * message are kept, its field becomes "eligibility"); it must be deterministic, as offer_apply()
 * compiles again on replay. eval returns 1 (eligible), 0 (not) or -1 (error, taken as not).
 * profile_ctx is whatever the caller passes to the customer calls, typically the profile. */
typedef struct offer_expr {
    void *(*compile)(const char *src, size_t len, ev_error *err, void *arg);
    int (*eval)(const void *compiled, const void *profile_ctx, void *arg);
    void (*free)(void *compiled, void *arg);
    void *arg;
} offer_expr;

typedef struct offer_options {
    offer_expr expr;            /* all NULL: an offer with an eligibility expression is refused */
    size_t max_offers;          /* 0: OFFER_MAX_OFFERS */
    size_t max_codes_per_offer; /* 0: OFFER_MAX_CODES_PER_OFFER */
    size_t max_codes;           /* 0: OFFER_MAX_CODES (at most 50,000,000) */
} offer_options;

/* Fills n bytes with randomness for offer_codes_generate(); NULL there means util/hash.h's
 * hash_random() (the kernel's CSPRNG). Tests pass a seeded one. */
typedef void (*offer_rng)(void *out, size_t n, void *arg);

typedef struct offer_state offer_state;

/* A new, empty state with a copy of *opt (NULL: defaults, no expressions), or NULL out of memory
 * or when opt->max_codes is over 50,000,000. */
offer_state *offer_state_new(const offer_options *opt);
void offer_state_free(offer_state *st);

/* ---- Applying records ---- */

/* Applies a record from a prepare call (or read back from the log) at the logged time now_ms.
 * Returns OFFER_OK and the reply, or the refusal the state now makes (the same on every replay).
 * A record that is not one this module writes is OFFER_INVALID and changes nothing. Atomic: a
 * refused record, or one that ran out of memory (OFFER_NOMEM), changes nothing. The reply is
 * built after the change: if memory runs out then, the result is still OFFER_OK (the change is
 * made, as the log says) with *reply NULL. */
offer_result offer_apply(offer_state *st, const json_t *record, int64_t now_ms, json_t **reply,
                         ev_error *err);

/* ---- Definitions ---- */

/* Create or replace an offer from its JSON (docs/offers.md). id, when not NULL, is the id from the
 * URL: the body may then omit "id" but not contradict it. The read-only fields of a reply
 * (created_at, updated_at, stats) are ignored, so a GET body can be edited and PUT back; any
 * other unknown field is refused. Replacing keeps the offer's codes, assignments and redemptions;
 * code_type may not change away from "unique" once codes exist. Reply (from offer_apply): the
 * offer as offer_get() shows it. Cost: O(size of the body) plus compiling the expression. */
offer_result offer_put(const offer_state *st, const char *id, const json_t *body, json_t **record,
                       ev_error *err);
/* JSON merge patch (RFC 7396) of an existing offer: keys set to null return to their defaults;
 * the result must be a valid offer. The record carries the patch, and offer_apply() merges it into
 * the offer as it is then, so two patches in flight both take effect. */
offer_result offer_patch(const offer_state *st, const char *id, const json_t *patch,
                         json_t **record, ev_error *err);
/* The offer's JSON: its definition plus created_at, updated_at and
 * stats {redemptions, codes, codes_free, codes_assigned, codes_redeemed}. */
offer_result offer_get(const offer_state *st, const char *id, json_t **reply, ev_error *err);
/* A page of offers in id order, after cursor (NULL for the first page): {"offers":[...],
 * "next": cursor or null}. limit 0 means OFFER_LIST_DEFAULT; above OFFER_LIST_MAX is refused. */
offer_result offer_list(const offer_state *st, const char *cursor, size_t limit, json_t **reply,
                        ev_error *err);

/* ---- Unique codes ---- */

/* Draws count (1..OFFER_BATCH_MAX) new codes for a "unique" offer: PREFIX-XXXX-XXXX, or XXXX-XXXX
 * when prefix is NULL or "", the X from the 31 symbols 2-9 and A-Z without I, L, O (no look-alikes;
 * 31^8 = 8.5e11 codes per prefix). prefix: 0..OFFER_PREFIX_MAX of [A-Za-z0-9_-], upper-cased.
 * Codes are unique within the batch and against every code of every offer in the state.
 * Record: {"op":"offer.codes_add","id":...,"codes":[...]}; the reply of offer_apply() is
 * {"offer":id,"added":n,"codes":[...]}. Cost: O(count): about 70 ms for 100,000 under the read
 * lock, and as much again to apply (measured -O2). A code that is already taken is drawn again;
 * a random source that keeps repeating itself ends in OFFER_CODE_TAKEN. */
offer_result offer_codes_generate(const offer_state *st, const char *id, size_t count,
                                  const char *prefix, offer_rng rng, void *rng_arg, json_t **record,
                                  ev_error *err);
/* The same with the shop's own codes (an array of 1..OFFER_BATCH_MAX strings, each a valid code
 * once upper-cased). */
offer_result offer_codes_import(const offer_state *st, const char *id, const json_t *codes,
                                json_t **record, ev_error *err);
/* A page of an offer's unique codes in the order they were added: {"codes":[{"code","state",
 * "profile"}], "next"}; state is "free", "assigned" or "redeemed"; profile is null when free or
 * after the holder was forgotten. */
offer_result offer_codes_list(const offer_state *st, const char *id, const char *cursor,
                              size_t limit, json_t **reply, ev_error *err);

/* ---- Customers ----
 *
 * profile_id is the customer's resolved profile id (1..OFFER_PROFILE_ID_MAX bytes of UTF-8);
 * profile_ctx goes to the eligibility callback as it is. */

/* The code this customer should use: the shared code; for unique codes, the unredeemed code
 * already assigned to this profile (idempotent: no record), or a record that assigns the next free
 * one; for an automatic offer, no code (null). Refusals, checked in this order: unknown_offer,
 * archived, paused, not_started, expired, not_eligible, limit_reached, customer_limit_reached,
 * no_codes_left. Reply: {"offer","code","code_type","discount","ends_at","assigned_at"}. */
offer_result offer_assign(const offer_state *st, const char *offer_id, const char *profile_id,
                          const void *profile_ctx, int64_t now_ms, json_t **record, json_t **reply,
                          ev_error *err);
/* Whether a code is usable by this customer now. The code is what the customer typed (surrounding
 * blanks ignored, case-insensitive); offer_id may be NULL, or names the offer the code must belong
 * to; an automatic offer is addressed by offer_id with code NULL. Refusals, in this order:
 * unknown_code (unknown_offer when addressed by offer_id alone), archived, paused, not_started,
 * expired, already_redeemed, assigned_to_other, not_eligible, limit_reached,
 * customer_limit_reached. Reply: {"ok":true,"offer":{id,name,description},"code","discount",
 * "ends_at"}. Never a record. */
offer_result offer_validate(const offer_state *st, const char *offer_id, const char *code,
                            const char *profile_id, const void *profile_ctx, int64_t now_ms,
                            json_t **reply, ev_error *err);
/* The checks of offer_validate(), then a record that redeems the code for order_id (1..255 bytes).
 * Idempotent by (order, offer): when this order already redeemed this offer, the first result is
 * the reply and there is no record (offer_apply() does the same for a record that arrives twice).
 * A refused attempt records nothing. Reply: {"offer","code","profile","order","discount",
 * "redeemed_at"} (the discount as it was when redeemed). */
offer_result offer_redeem(const offer_state *st, const char *offer_id, const char *code,
                          const char *profile_id, const char *order_id, const void *profile_ctx,
                          int64_t now_ms, json_t **record, json_t **reply, ev_error *err);
/* Undoes every redemption of order_id (a cancelled or refunded order): the limits are released
 * (the total and the customer's counts go down) and a unique code returns to its holder, usable
 * again. Reply: {"order", "released": n}; an order with no redemptions gives released 0 and no
 * record, so a retry is harmless. */
offer_result offer_unredeem(const offer_state *st, const char *order_id, json_t **record,
                            json_t **reply, ev_error *err);

/* ---- What the rest of the engine asks ---- */

/* The offers this profile may be shown now on channel: active, inside their window, eligible,
 * under both limits, and (unique codes) with the customer's code or a free one. An offer with a
 * channel list is shown only on those channels (an empty list: on none), yet it is *redeemable*
 * everywhere. channel NULL ignores the channel lists (an agent's or an admin's view).
 * Reply: {"offers":[{"id","name","description","discount","code_type","code","ends_at"}]} in id
 * order; "code" is the shared code, the customer's assigned unique code, or null. Unknown channel:
 * OFFER_INVALID. Cost: O(offers) evaluations. */
offer_result offer_eligible_list(const offer_state *st, const char *profile_id,
                                 const void *profile_ctx, const char *channel, int64_t now_ms,
                                 json_t **reply, ev_error *err);
/* For the profile export: {"assignments":[{"offer","code","assigned_at"}], "redemptions":
 * [{"offer","code","order","redeemed_at"}]}, oldest first; both empty for an unknown profile. */
offer_result offer_profile_json(const offer_state *st, const char *profile_id, json_t **reply,
                                ev_error *err);
/* GDPR erasure: a record that removes the person's link to their codes and redemptions. The
 * offers' counts stay (totals remain right); their codes stay assigned or redeemed but to nobody
 * (an orphaned assigned code is never handed to anyone else, and whoever holds it may redeem it);
 * their redemptions keep the order id and lose the profile, so a refund still releases the total.
 * The per-customer counts go: if the same id comes back it starts afresh. Reply: {"profile",
 * "assignments": n, "redemptions": n} (what was unlinked); an unknown profile gives zeros and no
 * record. The log still holds the old records: compacting it is the store's part of erasure. */
offer_result offer_forget_profile(const offer_state *st, const char *profile_id, json_t **record,
                                  json_t **reply, ev_error *err);
/* A profile merged into another (identity resolution): everything the offers state holds for
 * `from` becomes `into`'s — assignments, redemptions, per-customer counts (added) — as if the
 * customer had always been `into`. Returns a record {"op":"offer.merge_profiles","from":..,
 * "into":..} to apply, or no record (OFFER_OK, *record NULL) when `from` has nothing. from and
 * into are profile ids (OFFER_INVALID, field "from"/"into", when malformed or equal).
 * offer_apply() then moves it all and drops `from`; reply {"from","into","assignments": n,
 * "redemptions": n} (what moved). A record whose `from` has nothing (already merged, or forgotten
 * since) changes nothing and replies zeros, so applying it twice is harmless.
 * Counts add even past limits.per_customer: nothing is undone (those redemptions happened), but
 * `into` is refused customer_limit_reached until refunds bring its count under the limit. When
 * both hold an unredeemed code of the same unique offer, into's stays the one offer_assign()
 * returns and from's stays assigned to into too (its holder may still redeem it; offer_assign()
 * returns it once into's own is used). into's assignments come before from's in
 * offer_profile_json(); redemptions merge oldest first.
 * Cost: O(from's items x into's offers) to add the counts. */
offer_result offer_merge_profiles(const offer_state *st, const char *from, const char *into,
                                  json_t **record, ev_error *err);

/* The whole state as JSON (offers in id order with every code, profiles, redemptions): for tests
 * and debugging; two states built from the same records give equal dumps. NULL out of memory. */
json_t *offer_state_json(const offer_state *st);

typedef struct offer_stats {
    size_t offers, codes, profiles, redemptions;
    size_t bytes; /* heap held by the state's own tables, code texts and records (not jansson's) */
} offer_stats;
void offer_get_stats(const offer_state *st, offer_stats *out);

/* The channels an offer can be promoted on: "web", "app", "email", "sms", "whatsapp",
 * "messenger", "pos" (the profile's channels less "server"). Whether name is one of them. */
bool offer_channel_known(const char *name);

#endif
