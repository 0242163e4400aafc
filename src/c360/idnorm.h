/* idn — the identifiers the identity graph links profiles by, and how each is normalised.
 *
 * Every identifier an event carries (userId, anonymousId, an email address, a phone number, a
 * WhatsApp number, a Messenger PSID, a social handle, any context.externalIds[] entry) becomes a
 * (type, value) pair here. Two events belong to the same person when they share a pair, so the
 * value must be written one way only ("Ada@Shop.DE " and "ada@shop.de" are one address, "0171
 * 1234567" under Germany and "+49 171 1234567" one number), and values that people and SDKs put in
 * when they have nothing ("null", "test@test.com", "+1234567890") must never link anyone: a
 * placeholder shared by thousands of visitors would merge them all into one profile.
 *
 * The types, in anchor-priority order (the best identifier a profile has names it):
 *
 *   type          normaliser                                  per-profile limit  junk beyond common
 *   user_id       exact string, 1..255 bytes                                  1  -
 *   email         trimmed, lower-cased, local@domain                          5  placeholder
 * addresses phone         E.164 "+<digits>", national under a default country         5  same
 * digit, runs whatsapp      as phone; a bare wa_id ("16505551234") is international    10  as phone
 *   messenger     Messenger page-scoped id: decimal digits                   10  -
 *   instagram     handle: trimmed, one leading '@' dropped, lower-cased      10  -
 *   x             likewise (alias "twitter")                                 10  -
 *   tiktok        likewise                                                   10  -
 *   telegram      likewise                                                   10  -
 *   external      "<type>:<id>", type lower-cased, id exact                  10  common, on the id
 *   anonymous_id  exact string, 1..255 bytes                               1000  -
 *
 * Junk (idn_normalize() returns 1) is decided on the value with surrounding ASCII whitespace
 * removed, ignoring ASCII case, for every type: "", "null", "undefined", "none", "nil",
 * "anonymous", "unknown", "n/a", "na", "0", "-1", "1", "test", "guest", "user", "[object object]",
 * "nan", "false", "true", "(null)", "<nil>", and the all-zero UUID (what iOS returns for the
 * advertising id when tracking is limited). Emails add placeholder addresses (test@test.com,
 * example@example.com, a@a.com, ...), no-reply mailboxes (noreply@, no-reply@, donotreply@,
 * mailer-daemon@, ...) and the domains reserved for testing (test.com, and the .test, .example,
 * .invalid and .localhost top-level domains). Phone numbers add: every digit of the national number
 * the same
 * ("+15555555555"), the national number or the whole number a run of 7 or more ascending or
 * descending digits ("+1234567890", "+49 123456789"), and the North American fictional range
 * 555-0100..555-0199. idnorm.c holds these tables; docs/consent.md does not repeat them.
 *
 * Why the email rules are what they are: the domain is case-insensitive (DNS), and although RFC
 * 5321 lets a mail server treat the local part's case as significant, no mainstream provider does,
 * and people type "Ada.Lovelace@" and "ada.lovelace@" for the same box; so the whole address is
 * lower-cased. "+tags" and Gmail's ignored dots are NOT removed: they are rules of one provider
 * (applied elsewhere, "a.b" and "ab" are two people), and a wrong merge shows one customer
 * another's orders, which is far worse than a missed merge. Quoted local parts, IP-literal domains
 * and non-ASCII domains (send the "xn--" form) are refused.
 *
 * Phone numbers: spaces, tabs, '.', '-', '/', parentheses and a "tel:" prefix are removed. Then,
 * with digits only:
 *   1. "+", "00", or the default country's own exit code (011 in North America, 010 in Japan, 0011
 *      in Australia, 810 in Russia, ...) start an international number;
 *   2. otherwise, a number starting with the default country's trunk prefix ("0" in most of Europe,
 *      "1" in North America, "8" in Russia, "06" in Hungary) is national: the prefix is dropped and
 *      the country code put in front;
 *   3. otherwise, a number with a valid national length for the default country is national
 *      without its trunk prefix (spreadsheets drop a leading 0); one that is too long for that but
 *      starts with the country's calling code, followed by a valid national length, is
 *      international with its "+" lost (spreadsheets drop that too). For whatsapp, every bare
 *      number not starting with 0 is international: that is how the WhatsApp API writes wa_id, and
 *      no country code starts with 0.
 * The national part must have one of the country's lengths (the table in idnorm.c has 54
 * countries); an international number must have 7..15 digits, not start with 0, and, when its
 * calling code is one of the table's, a valid national length for that country. Where a country's
 * trunk prefix is "0", one 0 right after the calling code is dropped ("+44 (0)20 ...", "+49 0171
 * ..."); in Italy, whose numbers keep their 0, it stays. Numbers are never
 * rewritten beyond this (Mexico's old mobile "1" after +52 is kept, as WhatsApp keeps it).
 *
 * Handles: Instagram, X, TikTok and Telegram names are case-insensitive, so they are lower-cased;
 * they (and the numeric ids those platforms' messaging APIs give) are 1..64 bytes of [a-z0-9._].
 *
 * Ownership and cost: everything is a pure function of its arguments over read-only tables; no
 * allocation, no locale, thread-safe. idn_normalize() is linear in the input (a phone number also
 * scans the 50-entry country table); idn_extract() reads a fixed list of places in the event. */
#ifndef ENGAGED_IDNORM_H
#define ENGAGED_IDNORM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "ingest/ev.h"

/* The longest normalised value, in bytes (EV_ID_MAX: the same bound as an event's userId). An
 * email is at most 254 (RFC 5321), a phone number 16 ("+" and 15 digits), an external id's
 * "type:id" 255 in all. Buffers for values are IDN_VALUE_LEN bytes, NUL included. */
#define IDN_VALUE_MAX 255
#define IDN_VALUE_LEN (IDN_VALUE_MAX + 1)
/* The most identifiers idn_extract() keeps from one event. */
#define IDN_EVENT_MAX 16
/* The longest external id type name ("ga_client_id", "ios.idfa"). */
#define IDN_EXTERNAL_TYPE_MAX 32

/* The types, in anchor-priority order: a lower value is the better anchor. */
typedef enum idn_type_id {
    IDN_USER_ID,
    IDN_EMAIL,
    IDN_PHONE,
    IDN_WHATSAPP,
    IDN_MESSENGER,
    IDN_INSTAGRAM,
    IDN_X,
    IDN_TIKTOK,
    IDN_TELEGRAM,
    IDN_EXTERNAL,
    IDN_ANONYMOUS_ID,
    IDN_NTYPES
} idn_type_id;

/* How a type's values are normalised (the table above). */
typedef enum idn_norm {
    IDN_NORM_EXACT,    /* ids: kept byte for byte */
    IDN_NORM_EMAIL,    /* trimmed, lower-cased, checked */
    IDN_NORM_PHONE,    /* E.164; national numbers under the default country */
    IDN_NORM_WHATSAPP, /* E.164; a bare number is international */
    IDN_NORM_DIGITS,   /* trimmed decimal digits (Messenger PSID) */
    IDN_NORM_HANDLE,   /* trimmed, '@' dropped, lower-cased [a-z0-9._] */
    IDN_NORM_EXTERNAL, /* "<type>:<id>" */
} idn_norm;

typedef struct idn_type {
    const char *name;       /* "email": the name stored in the graph and in externalIds[].type */
    const char *aliases[3]; /* other names idn_type_lookup() accepts ("userId", "twitter") */
    idn_norm norm;
    int limit;    /* default: the most values of this type one profile may hold */
    int priority; /* 0 is the best anchor; equal to the type's idn_type_id */
} idn_type;

/* What idn_normalize() returns besides 0 (normalised) and -1 (invalid). */
#define IDN_JUNK 1
/* The ev_error code that comes with IDN_JUNK. It never reaches a client: junk is ignored. */
#define IDN_JUNK_CODE "junk_identifier"

/* Finds a type by name or alias, ignoring ASCII case ("Email", "userId", "wa_id"). Returns its
 * idn_type_id, or -1 for NULL or an unknown name. */
int idn_type_lookup(const char *name);
/* The type's row; NULL when type is out of range. */
const idn_type *idn_type_get(int type);

/* Whether cc (ISO 3166 alpha-2, either case) is a country the phone normaliser knows. For checking
 * a default-country setting when it is loaded. */
bool idn_country_known(const char *cc);

/* Normalises in[0..len) as a value of the given type (bytes, not necessarily NUL-terminated; a NUL
 * inside is invalid). default_country (ISO 3166 alpha-2, or NULL / "" for none) is only read for
 * national phone numbers, which are invalid without one.
 * Returns 0 with the value in out (NUL-terminated; out must hold it, IDN_VALUE_LEN always does);
 * IDN_JUNK when the value is a placeholder, with err->code IDN_JUNK_CODE and err->message naming
 * the rule; or -1 with err->code "invalid_field" and a message saying why. err->field is the type's
 * name (callers that know the path, such as "traits.email", overwrite it). err may be NULL. out is
 * only written on 0. */
int idn_normalize(int type, const char *in, size_t len, char *out, size_t outlen,
                  const char *default_country, ev_error *err);

/* One identifier of an event. */
typedef struct idn_ident {
    int type; /* idn_type_id */
    char value[IDN_VALUE_LEN];
} idn_ident;

/* Every identifier of one event, deduplicated, in priority order (ties: the order read). */
typedef struct idn_list {
    idn_ident ids[IDN_EVENT_MAX];
    int n;
    int dropped; /* valid identifiers left out because IDN_EVENT_MAX better ones were kept */
    int junk;    /* placeholder values ignored */
    int invalid; /* values ignored because they are not valid identifiers of their type */
    ev_error first_invalid; /* the first of those, err->field being its path in the event */
} idn_list;

/* Reads the identifiers of a (normalised) Segment event, in this order:
 *   1. userId, anonymousId (strings; a whole number is taken as its decimal string);
 *   2. email, phone and the handle types, each from traits.<name> and then context.traits.<name>,
 *      where <name> is the type's name or, for x, "twitter" as well: "traits.email",
 *      "context.traits.whatsapp". traits is skipped when group is true, for a group call (they are
 *      the group's traits: a company's email is not the person's); context.traits is the person's
 *      on every event;
 *   3. context.externalIds[]: each {"id", "type", "collection", "encoding"}; type is looked up with
 *      idn_type_lookup() ("email", "phone", "user_id", ...), and any other type becomes an external
 *      id "<type>:<id>". Entries whose collection is other than "users" (Segment's "accounts" are
 *      groups) or whose encoding is other than "none" (a hash cannot be normalised or compared
 *      with anything else) are ignored, as is everything past the first 64 entries.
 * properties is never read: an email there is the event's subject (a gift's recipient, a friend
 * invited), not necessarily the person's. Neither is alias's previousId: it names another profile
 * to merge with, which the identity graph handles as an instruction. A field that is absent or
 * null is skipped; one of the wrong type counts as invalid. Never fails: out always describes what
 * was found (out->n may be 0). The event's type is the caller's to give (group), not read from
 * event: the engine's tree of an event does not keep it (ev.h). */
void idn_extract(const json_t *event, bool group, const char *default_country, idn_list *out);
/* The same with userId and anonymousId given beside the event, as text (as ev_event and a stored
 * record hold them: a number as its decimal string; NULL when absent), as the engine hands an
 * event over (ingest/ev.h: its tree leaves them out). event may be NULL (nothing else to read);
 * its own userId and anonymousId, if any, are not read. */
void idn_extract_ids(const char *user_id, const char *anonymous_id, const json_t *event, bool group,
                     const char *default_country, idn_list *out);

#endif
