/* prof — one customer's live profile: traits, computed attributes and timeline.
 *
 * A profile is a fold over its events in log order: prof_fold() takes one event and updates every
 * computed attribute in O(size of the event), so a profile is always current the moment an event
 * is applied (no batch job). Two profiles that turn out to be one person combine with prof_merge()
 * without re-reading their events: every attribute is kept in a form that merges exactly (counts
 * and sums add, first/last take min/max, traits keep a time per key so last-write-wins still holds,
 * the cart is the one changed last) — except the session count, which adds (two devices' sessions
 * are different sessions) and the favourites, whose weights add.
 *
 * What is computed (docs/profiles.md lists the JSON):
 *   first/last seen, events, sessions (a gap of PROF_SESSION_GAP_MS or more starts one), page and
 *   screen views, product views, searches, the current cart (items, value, currency, last change),
 *   orders (count, revenue net of refunds, average, first/last order and its id), favourite
 *   categories and brands (weights: view 1, cart 3, wishlist 2, purchase 5), preferred channel and
 *   device (the most frequent), and the products bought (for "never recommend what they own").
 *
 * Traits: identify's traits (and context.traits) are kept per key with the event's timestamp; a
 * later log record with an older timestamp does not overwrite a newer value (last write wins by
 * time, not by arrival). A trait set to null is removed, as of its timestamp.
 *
 * Ownership: a prof owns all its memory; prof_free() releases it. The event passed to prof_fold()
 * is only read. No locking: the engine serialises access. */
#ifndef ENGAGED_PROF_H
#define ENGAGED_PROF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest/commerce.h"
#include "ingest/ev.h"
#include "util/strpool.h"

#define PROF_SESSION_GAP_MS (30 * 60 * 1000)
#define PROF_FAVOURITES 6    /* categories (and brands) tracked per profile; the top 3 are shown */
#define PROF_CART_MAX 200    /* distinct cart lines kept; more are counted in the value only */
#define PROF_BOUGHT_MAX 1000 /* distinct products remembered as bought */
#define PROF_TRAITS_MAX 256  /* trait keys kept; more are refused (and counted) */

/* The channels an event can arrive on, and the devices; index into prof counters. */
typedef enum prof_channel {
    PROF_CH_WEB,
    PROF_CH_APP,
    PROF_CH_EMAIL,
    PROF_CH_SMS,
    PROF_CH_WHATSAPP,
    PROF_CH_MESSENGER,
    PROF_CH_POS,
    PROF_CH_SERVER,
    PROF_NCHANNELS
} prof_channel;

typedef enum prof_device {
    PROF_DEV_DESKTOP,
    PROF_DEV_MOBILE,
    PROF_DEV_TABLET,
    PROF_DEV_OTHER,
    PROF_NDEVICES
} prof_device;

const char *prof_channel_name(prof_channel c);
const char *prof_device_name(prof_device d);

/* One event as the profile sees it. */
typedef struct prof_event {
    int64_t seq;
    int64_t ts_ms; /* the event's (skew-corrected) time */
    ev_type type;
    const cm_event *cm; /* typed e-commerce fields, or NULL */
    const json_t *json; /* the normalised event */
    strpool *names;     /* where category and brand names are interned; NULL: not tracked */
    strpool *products;  /* where product ids are interned (cart, bought); NULL: not tracked */
} prof_event;

/* A cart line: 16 bytes, the product id interned in prof_event.products. */
typedef struct prof_line {
    uint32_t product; /* strpool_id() */
    int32_t quantity; /* clamped to the int32 range */
    double price;
} prof_line;

/* Favourite names (categories, or brands): the space-saving summary's PROF_FAVOURITES counters, as
 * two arrays so that the 16-bit weights pack (36 bytes). When a weight would pass UINT16_MAX, all
 * of them halve: the order stands, and older interest fades. */
typedef struct prof_favs {
    uint32_t name[PROF_FAVOURITES]; /* strpool_id() in prof_event.names; 0 for an empty counter */
    uint16_t weight[PROF_FAVOURITES];
} prof_favs;

typedef struct prof_trait_time {
    uint64_t key_hash;
    int64_t ts_ms;
    uint64_t value_hash; /* of the value's compact JSON; 0 for one too large to hash */
} prof_trait_time;

#define PROF_TRAIT_VALUE_HASH_MAX (4 * 1024)

/* The figures RFM scoring ranks a profile by (the engine keeps their distribution). */
typedef struct prof_rfm_input {
    int64_t orders;
    double revenue;
    int64_t last_order_ms; /* 0: never ordered */
} prof_rfm_input;

/* There is one per customer, so the struct is laid out for size (280 bytes): 32-bit counts, product
 * ids as interned numbers, and arrays sized to their use (vec_reserve_small). */
typedef struct prof {
    int64_t first_seen_ms, last_seen_ms;
    int64_t first_order_ms, last_order_ms, cart_updated_ms;
    double revenue, refunded, cart_value;
    uint32_t events, sessions, page_views, screen_views, product_views, searches;
    uint32_t orders, refunds;
    /* Events by channel and device, for the preferred one: halved together near UINT16_MAX. */
    uint16_t channels[PROF_NCHANNELS], devices[PROF_NDEVICES];
    prof_favs categories, brands;
    char currency[4];

    uint32_t ncart, acart;
    uint32_t nbought, abought;
    uint32_t ntrait_times, atrait_times, traits_len;
    uint32_t nseqs, aseqs;
    char *last_order_id;
    prof_line *cart;
    uint32_t *bought; /* interned product ids (prof_event.products), ascending */
    /* Traits are kept as compact JSON text, parsed when read or changed: a jansson object costs
     * some 150 bytes a key, which at a million profiles was most of a profile's memory. */
    char *traits; /* NULL until the first trait */
    prof_trait_time *trait_times;
    int64_t *seqs; /* the timeline: every event's seq, increasing */
} prof;

prof *prof_new(void);
void prof_free(prof *p);

/* Applies one event. Returns 0, or -1 when memory runs out (the profile is then still consistent,
 * missing part of this event). Events must come in log order (increasing seq). */
int prof_fold(prof *p, const prof_event *e);
/* Moves everything of from into into (the timeline merges in seq order); from is left empty, for
 * prof_free(). Returns 0 or -1 (out of memory; into keeps what merged). */
int prof_merge(prof *into, prof *from);
/* Sets traits from a JSON object as of ts_ms (an identify's traits). */
int prof_set_traits(prof *p, const json_t *traits, int64_t ts_ms);
/* The traits as a new JSON object (empty when none); NULL when memory runs out. */
json_t *prof_traits(const prof *p);

/* Whether the profile bought product_id (binary search); products is prof_event.products. */
bool prof_has_bought(const prof *p, const strpool *products, const char *product_id);
/* Whether product_id is in the current cart. */
bool prof_in_cart(const prof *p, const strpool *products, const char *product_id);
prof_rfm_input prof_rfm(const prof *p);

/* The computed attributes as a new JSON object ("computed" in the API), with rfm scores from the
 * caller (1..5 each, 0 when the profile never ordered); names and products are the pools the
 * events were folded with. */
json_t *prof_computed_json(const prof *p, const int rfm[3], int64_t now_ms, const strpool *names,
                           const strpool *products);
/* The preferred channel: the most frequent, or -1 with no events. */
int prof_preferred_channel(const prof *p);
/* Approximate bytes held, beyond the struct itself and the timeline. */
size_t prof_bytes(const prof *p);

/* Which channel and device an event came from, read from its context (channel, library, app,
 * device.type, userAgent) and type. */
prof_channel prof_event_channel(const json_t *event, ev_type type);
prof_device prof_event_device(const json_t *event);

#endif
