/* cat — the product catalogue: products, their stock and prices, and who may see them.
 *
 * The catalogue is part of the engine state that is rebuilt from the durable log, so every change
 * goes through three steps that the caller strings together under its writer lock:
 *   1. prepare: validate the client's JSON and return the normalised form to log (aliases
 *      resolved, numbers-as-ids made strings, category paths expanded). Upsert validation is pure;
 *      patch and archive validation read the current product.
 *   2. the caller writes that JSON to the log;
 *   3. apply: install the logged JSON, with the logged time. Apply re-reads the JSON with the same
 *      code that prepared it (normalising twice changes nothing), so replaying the log at start
 *      goes through exactly the same functions and rebuilds exactly the same catalogue. Apply
 *      depends only on (state, logged JSON, now_ms).
 * Events feed the catalogue too: cat_observe() learns products from the product objects of
 * e-commerce events, filling only what the catalogue lacks; it is called again on replay, in the
 * events' log order relative to the catalogue's records.
 * ../docs/catalog.md describes the product JSON and every rule below from the client's side.
 *
 * The product (normalised names, Segment's where the e-commerce spec has one):
 *   id (required; "product_id" on input; a whole number becomes its decimal string; <= 255
 *   bytes), sku, title ("name" on input), url, image_url ("image"), brand, categories (a "category"
 *   string is added to them; "Shoes > Running" is stored as its ancestor paths "Shoes", "Shoes >
 *   Running"), price and sale_price (>= 0, sale_price <= price), currency (ISO 4217), stock
 *   ({"location": count}; a bare count is location "default"), tags, attributes (any JSON object,
 *   depth <= CAT_ATTR_MAX_DEPTH), variants, replenishable, status (active | archived | draft) and
 *   availability {markets, price_lists, segments, rule}. Unknown fields are refused; the
 *   read-only fields cat_product_json() adds (in_stock, source, from_events, created_at,
 *   updated_at) are ignored on input so a product read can be written back.
 *
 * Errors: every refusal is an ev_error (ingest/ev.h) naming the field with the product's index,
 * "[12].price", "[0].variants[3].stock.berlin" (no index for a patch: "variants[3].price"). Codes:
 * invalid_body (not an array / object), missing_field, invalid_field, too_deep (nesting past
 * EV_MAX_DEPTH), product_too_large (a product over CAT_PRODUCT_MAX_BYTES), too_many_products (a
 * bulk over CAT_BULK_MAX), not_found (patch or archive of an unknown id). Apply functions return
 * CAT_OK, CAT_NOMEM (out of memory, or more than CAT_MAX_PRODUCTS products: the catalogue is left
 * exactly as it was) or CAT_INVALID (the logged JSON does not validate: a corrupt log, or state
 * that changed between prepare and apply; nothing is changed).
 *
 * Ownership: the catalogue owns every product; a `const cat_product *` (and every pointer a
 * cat_info holds) is valid until the next apply or observe call. JSON that a function returns is a
 * new reference the caller json_decref()s. Change lists are owned by the caller
 * (cat_changes_free).
 *
 * Threads: no locks inside. Apply and observe functions are writers; everything taking a
 * `const cat *` is a reader, and readers may run concurrently with each other (so rule_eval must
 * be reentrant and must only read the product JSON it is given).
 *
 * Memory, measured with mallinfo2 over 100,000 products: about 1,000 bytes per typical product
 * (394 bytes of JSON: 8 text fields, 2 categories, 3 tags, 2 stock locations, 2 attributes, no
 * variants), so 100,000 take 99 MB; each variant adds about 310 bytes. A product with an
 * availability rule also keeps its JSON as a jansson tree for rule_eval: about 5.2 KB more (6.2 KB
 * for the typical product), so rules suit the few products with special conditions; markets,
 * price lists and segments cost nothing extra. The index adds 21 to 29 bytes per product (an
 * array slot, 2 to 4 hash slots, a sorted-order entry and a gate byte); all of it is in the
 * figures above. */
#ifndef ENGAGED_CATALOG_H
#define ENGAGED_CATALOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest/ev.h"

#define CAT_ID_MAX 255                    /* bytes in a product or variant id */
#define CAT_PRODUCT_MAX_BYTES (32 * 1024) /* one product's JSON as sent (compact) */
#define CAT_BULK_MAX 10000                /* products in one upsert */
#define CAT_VARIANTS_MAX 100
#define CAT_LOCATIONS_MAX 100      /* stock locations, per product and per variant */
#define CAT_LIST_ITEMS_MAX 64      /* tags, categories (after expansion), markets, ... */
#define CAT_STOCK_MAX 1000000000LL /* units at one location */
#define CAT_PRICE_MAX 1e12
#define CAT_ATTR_MAX_DEPTH 8 /* attributes {..} is depth 1 */
#define CAT_RULE_MAX 4096    /* bytes of an availability rule */
#define CAT_LIST_MAX 1000    /* products per cat_list() page */
#define CAT_MAX_PRODUCTS 16000000
#define CAT_CURSOR_MAX (2 * CAT_ID_MAX + 1) /* with the NUL */

enum { CAT_OK = 0, CAT_NOMEM = -1, CAT_INVALID = -2 };

typedef struct cat cat;
typedef struct cat_product cat_product;

/* What the catalogue needs from the expression language (written elsewhere; the catalogue does
 * not link it). All three callbacks or none: without them a product with a rule is refused at
 * validation ("rules are not enabled"). rule_compile returns NULL and fills err (its message is
 * kept, its field replaced by "[i].availability.rule") for a bad rule. rule_eval returns 1 (true),
 * 0 (false) or -1 (error, counted as false); it may run in several reader threads at once. */
typedef struct cat_options {
    void *(*rule_compile)(const char *src, size_t len, ev_error *err, void *arg);
    int (*rule_eval)(const void *compiled, const json_t *product, const void *viewer_ctx,
                     void *arg);
    void (*rule_free)(void *compiled, void *arg);
    void *rule_arg;
    /* The most products cat_observe() may create (products from the catalogue feed are not
     * counted): a stream of events naming random product ids must not grow the catalogue without
     * bound. 0 means CAT_OBSERVED_DEFAULT. */
    size_t max_observed;
} cat_options;

#define CAT_OBSERVED_DEFAULT 200000

/* Copies *opt (NULL: no rules, default limits). Returns NULL when memory runs out. Setting some
 * but not all of the rule callbacks is a programming error and aborts. */
cat *cat_new(const cat_options *opt);
void cat_free(cat *c); /* NULL is fine */

/* ---- changes ----
 * Apply functions append what changed to a caller's list, for the caller to log or emit as
 * events, in a fixed order: products in request order; for each, the product's price_changed then
 * stock_changed, then each variant (in the new product's order) likewise. Only products and
 * variants that existed before and after are compared; creation and archiving report nothing.
 *   price_changed: the effective price (sale_price when set, else price) differs, or its currency
 *     does; both old and new must exist. CAT_PRICE_DROP when new < old in the same currency.
 *   stock_changed: the stock total (-1 for "no stock information") or in-stock state differs.
 *     CAT_BACK_IN_STOCK when the item went from out of stock to in stock, CAT_SOLD_OUT the reverse.
 */
typedef enum cat_change_kind { CAT_PRICE_CHANGED, CAT_STOCK_CHANGED } cat_change_kind;
enum { CAT_PRICE_DROP = 1u << 0, CAT_BACK_IN_STOCK = 1u << 1, CAT_SOLD_OUT = 1u << 2 };

typedef struct cat_change {
    cat_change_kind kind;
    char *product_id;
    char *variant_id; /* NULL for the product itself */
    double old_price, new_price;
    char old_currency[4], new_currency[4]; /* "" when none */
    int64_t old_stock, new_stock;          /* -1: no stock information */
    bool old_in_stock, new_in_stock;
    unsigned flags; /* CAT_PRICE_DROP | CAT_BACK_IN_STOCK | CAT_SOLD_OUT */
} cat_change;

typedef struct cat_changes {
    cat_change *v;
    size_t n, alloc;
} cat_changes;

#define CAT_CHANGES_INIT                                                                           \
    { NULL, 0, 0 }

void cat_changes_free(cat_changes *ch); /* frees the entries; leaves the list empty */
/* {"type":"price_changed","product_id":"p1","variant_id":"v1","old_price":10.0,"new_price":8.0,
 *  "currency":"EUR","price_drop":true} (old_currency added when it differs) or
 * {"type":"stock_changed","product_id":"p1","old_stock":0,"new_stock":5,"in_stock":true,
 *  "back_in_stock":true,"sold_out":false} (a stock of -1 is written null). NULL when out of
 * memory. */
json_t *cat_change_json(const cat_change *ch);

/* ---- bulk upsert ----
 * body: a JSON array of at most CAT_BULK_MAX products. All or nothing: the first invalid product
 * (in array order) refuses the request, as does an id given twice. Returns 0 and, when logged is
 * not NULL, sets *logged to the normalised array to log; or -1 with *err filled. Cost: one pass
 * over the JSON, plus a rule compilation per product that has one. */
int cat_upsert_prepare(const cat_options *opt, const json_t *body, json_t **logged, ev_error *err);
/* Installs a logged upsert. A product already present is replaced whole, except for the fields it
 * learned from events (cat_observe) that the upsert lacks: those are kept (price, sale_price and
 * currency count as one: a price, sale_price or currency in the upsert drops the learned price and
 * currency). changes may be NULL. Cost: O(products in the request) plus, every 1024 new products,
 * one O(catalogue) merge of the sorted index. */
int cat_upsert_apply(cat *c, const json_t *logged, int64_t now_ms, cat_changes *changes);

/* ---- patch (RFC 7396 merge-patch of one product) ----
 * patch must be an object. Its members are merged into the product's JSON (null deletes, objects
 * merge member by member — stock and attributes included — and anything else replaces), and the
 * result must validate as a product. Aliases work as in an upsert; "id" may only repeat the id.
 * One extension: "variants" may be an object keyed by variant id, each value merged into that
 * variant (null removes it; an unknown id adds a variant), instead of a whole new array. Fields the
 * patch names stop counting as learned from events. Returns 0 (and *logged = {"id":..,
 * "patch":{..}} when logged is not NULL) or -1 with *err filled (not_found for an unknown id). */
int cat_patch_prepare(const cat *c, const char *id, const json_t *patch, json_t **logged,
                      ev_error *err);
int cat_patch_apply(cat *c, const json_t *logged, int64_t now_ms, cat_changes *changes);

/* ---- archive ("delete") ----
 * Sets status to "archived"; the product stays (it can come back with an upsert or a patch).
 * Returns 0 and *logged = {"id":..}, or -1 with not_found. Archiving an archived product changes
 * nothing, not even updated_at. */
int cat_archive_prepare(const cat *c, const char *id, json_t **logged, ev_error *err);
int cat_archive_apply(cat *c, const json_t *logged, int64_t now_ms);

/* ---- learning from events ----
 * p is one product of an e-commerce event (ingest/commerce.h), currency the event's (or NULL).
 * An unknown product_id creates a product with "source":"events" (active, no stock information,
 * so it counts as in stock), unless max_observed such products exist. A known product gets only
 * the fields it lacks: sku, title (from name), brand, categories (from category), url,
 * image_url, currency, and price only when it has neither price nor sale_price — a price seen in
 * an event never changes a catalogue price, and the first value seen is kept. variant, coupon,
 * quantity and position are not catalogue facts and are ignored; so are values the catalogue
 * would refuse (a 300-byte sku, a negative price). No change events. Returns 1 when the catalogue
 * changed, 0 when not (no product_id, nothing new, the cap), CAT_NOMEM (nothing changed). */
int cat_observe(cat *c, const cm_product *p, const char *currency, int64_t now_ms);
/* The same from a Segment product object {product_id (or id), sku, name, brand, category, price,
 * currency, url, image_url, variant}; fields of the wrong type are ignored. */
int cat_observe_json(cat *c, const json_t *product, int64_t now_ms);

/* ---- reading ---- */

/* The product with this id, or NULL. O(1): one hash and, on average, one comparison. */
const cat_product *cat_get(const cat *c, const char *id, size_t len);
/* Fetching ahead, as idg_prefetch() does for identities: cat_hash() is the id's hash, and
 * cat_prefetch() fetches one level of its lookup per stage (0: the slot, 1: the product's place
 * among the ordinals, 2: the product, 3: its id). Each stage reads what the one before fetched;
 * only reads, and a stale fetch is wasted, never wrong. */
uint64_t cat_hash(const char *id, size_t len);
void cat_prefetch(const cat *c, uint64_t hash, int stage);
/* Products ever created (archived ones included: they are never removed). */
size_t cat_count(const cat *c);
/* Products are numbered densely from 0 in creation order, and the number never changes: a dense
 * key for arrays kept beside the catalogue (reco models use 32-bit items). NULL when out of
 * range. */
const cat_product *cat_at(const cat *c, uint32_t ordinal);
uint32_t cat_ordinal(const cat_product *p);

/* A page of products in id order (bytewise), after the position cursor names (NULL or "" for the
 * first page). Writes up to limit (0 or more than CAT_LIST_MAX: CAT_LIST_MAX) products into out and
 * their number into *n; next gets the cursor of the following page, or "" on the last. The order is
 * stable across writes: a product created meanwhile appears on a later page if its id sorts after
 * the cursor. Returns 0, or -1 with *err (invalid_field "cursor" for a cursor this function did not
 * make). Cost: O(log n + limit + products created since the last index merge, <= 1024). */
int cat_list(const cat *c, const char *cursor, size_t limit, const cat_product **out, size_t *n,
             char next[CAT_CURSOR_MAX], ev_error *err);

typedef enum cat_status { CAT_ACTIVE, CAT_ARCHIVED, CAT_DRAFT } cat_status;

/* A product's main facts, without allocation; strings are NULL when absent and point into the
 * product. */
typedef struct cat_info {
    const char *id, *sku, *title, *url, *image_url, *brand;
    const char *currency; /* "EUR", or NULL */
    double price, sale_price;
    bool has_price, has_sale_price;
    double effective_price; /* sale_price if set, else price; meaningful when has_effective */
    bool has_effective;
    int64_t stock_total; /* over the product's and its variants' locations; -1: none given */
    bool in_stock, replenishable, from_events;
    cat_status status;
    size_t nvariants;
    /* The category paths, ancestors first as stored ("Shoes", "Shoes > Running"). */
    const char *const *categories;
    size_t ncategories;
    int64_t created_ms, updated_ms;
} cat_info;

void cat_product_info(const cat_product *p, cat_info *out);
/* What an answer shows of a product, ready to copy (a recommendation's items, ten an answer):
 * fields holds its display fields as JSON members, each after a comma, in this order and only those
 * it has: ,"title":…,"url":…,"image_url":…,"brand":…,"currency":…,"price":…,"sale_price":… (prices
 * with six decimals, as jsonw_fixed() writes them); title points at the title inside it, escaped
 * for a JSON string (NULL when the product has none); id is the product's id as stored (not
 * escaped). Kept with the product and rebuilt when those fields change: valid while the catalogue
 * is not written. O(1). */
typedef struct cat_card_text {
    const char *id, *fields, *title;
    size_t id_len, fields_len, title_len;
} cat_card_text;

void cat_card(const cat_product *p, cat_card_text *out);

/* The product as JSON: its fields in the order of docs/catalog.md, then the read-only in_stock,
 * source ("catalog" or "events"), from_events (the fields learned from events, when any),
 * created_at and updated_at. Variants carry their own fields only, plus in_stock. NULL when out
 * of memory. */
json_t *cat_product_json(const cat_product *p);
/* Variant i (< nvariants) with what it inherits filled in: sku, title, url and image_url from the
 * product when it has none; price and sale_price as a pair (a variant with its own price does not
 * inherit the product's sale_price); the product's currency; attributes merged (the variant's
 * keys win); its own stock and its in_stock. NULL when out of range or out of memory. */
json_t *cat_variant_json(const cat_product *p, size_t i);

/* ---- availability ---- */

typedef struct cat_viewer {
    const char *market;          /* "de"; compared ignoring ASCII case; NULL: unknown */
    const char *price_list;      /* "retail"; exact; NULL: unknown */
    const char *const *segments; /* the viewer's segment names (exact) */
    size_t nsegments;
    const void *ctx; /* handed to rule_eval as viewer_ctx */
} cat_viewer;

typedef enum cat_reason {
    CAT_AVAILABLE = 0,
    CAT_R_UNKNOWN,       /* no such product */
    CAT_R_INACTIVE,      /* status archived or draft */
    CAT_R_OUT_OF_STOCK,  /* see cat_info.in_stock */
    CAT_R_NOT_IN_MARKET, /* markets given and the viewer's market (or none) not among them */
    CAT_R_PRICE_LIST,    /* likewise for price_lists */
    CAT_R_SEGMENT,       /* segments given and the viewer in none of them */
    CAT_R_RULE,          /* the rule is false, or failed to evaluate */
    CAT_NREASONS
} cat_reason;

/* "available", "unknown", "inactive", "out_of_stock", "not_in_market", "price_list", "segment",
 * "rule"; NULL out of range. */
const char *cat_reason_name(cat_reason r);

/* Whether the viewer (NULL: a viewer with no market, price list or segment) may be offered the
 * product. The conditions are checked cheapest first, in the order of cat_reason, and *why (when
 * not NULL) gets the first that failed. Cost without a rule: no allocation, O(m + s*t) string
 * comparisons for m markets and price lists and the viewer's s segments against the product's t;
 * with a rule, one rule_eval. */
bool cat_product_available(const cat *c, const cat_product *p, const cat_viewer *viewer,
                           cat_reason *why);
/* The same by id (a NUL-terminated string; unknown ids give CAT_R_UNKNOWN). */
bool cat_available(const cat *c, const char *product_id, const cat_viewer *viewer, cat_reason *why);
/* Active and in stock: the viewer-independent part. */
bool cat_product_sellable(const cat_product *p);
/* The same two by ordinal (cat_at), for loops over many candidates: the catalogue keeps one byte
 * per product saying whether it is sellable and whether it has viewer conditions, so a sellable
 * product without markets, price lists, segments or rule is answered from that byte alone (a few
 * ns), and only the others are read. An ordinal out of range is CAT_R_UNKNOWN. */
bool cat_available_at(const cat *c, uint32_t ordinal, const cat_viewer *viewer, cat_reason *why);
bool cat_sellable_at(const cat *c, uint32_t ordinal);

#endif
