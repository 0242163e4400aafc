#include "c360/prof.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/buf.h"
#include "util/hash.h"
#include "util/jpick.h"
#include "util/jsonw.h"
#include "util/timefmt.h"
#include "util/vec.h"

_Static_assert(sizeof(void *) != 8 || sizeof(prof) == 280, "prof.h gives the profile's size");
_Static_assert(sizeof(prof_line) == 16, "a cart line is 16 bytes");

/* Favourite weights by what the customer did with the product. */
#define W_VIEW 1
#define W_WISHLIST 2
#define W_CART 3
#define W_PURCHASE 5

static const char *const channel_names[PROF_NCHANNELS] = {
    "web", "app", "email", "sms", "whatsapp", "messenger", "pos", "server",
};
static const char *const device_names[PROF_NDEVICES] = {"desktop", "mobile", "tablet", "other"};

const char *prof_channel_name(prof_channel c) {
    return (unsigned)c < PROF_NCHANNELS ? channel_names[c] : NULL;
}
const char *prof_device_name(prof_device d) {
    return (unsigned)d < PROF_NDEVICES ? device_names[d] : NULL;
}

prof *prof_new(void) {
    return calloc(1, sizeof(prof));
}

/* Empties the cart and gives its memory back: most carts end in an order or are abandoned, and
 * a million empty carts holding their arrays would cost 100 MB. */
static void clear_cart(prof *p) {
    free(p->cart);
    p->cart = NULL;
    p->ncart = p->acart = 0;
    p->cart_value = 0;
}

void prof_free(prof *p) {
    if (!p) return;
    clear_cart(p);
    free(p->bought);
    free(p->traits);
    free(p->trait_times);
    free(p->seqs);
    free(p->last_order_id);
    free(p);
}

/* ---- Where an event came from ---- */

typedef struct name_map {
    const char *name;
    int value;
} name_map;

static int map_lookup(const name_map *m, size_t n, const char *s) {
    if (!s) return -1;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(m[i].name, s) == 0) return m[i].value;
    return -1;
}

/* Segment's top-level `channel` ("browser", "server", "mobile") and the channel names engaged's
 * own sources use. */
static const name_map channel_map[] = {
    {"browser", PROF_CH_WEB}, {"web", PROF_CH_WEB},           {"mobile", PROF_CH_APP},
    {"app", PROF_CH_APP},     {"server", PROF_CH_SERVER},     {"email", PROF_CH_EMAIL},
    {"sms", PROF_CH_SMS},     {"whatsapp", PROF_CH_WHATSAPP}, {"messenger", PROF_CH_MESSENGER},
    {"pos", PROF_CH_POS},
};

/* What prof_fold() reads of an event: its channel and device hints, and its traits (jpick(): a
 * pass over the event's few members, and over its context's, instead of a hashed lookup per
 * name). */
typedef struct event_facts {
    const char *channel, *ctx_channel, *user_agent, *device_type;
    bool app, page;
    const json_t *traits, *ctx_traits;
} event_facts;

static event_facts read_facts(const json_t *event) {
    enum { CHANNEL, CONTEXT, TRAITS, NTOP };
    static const char *const top[NTOP] = {"channel", "context", "traits"};
    enum { C_CHANNEL, C_APP, C_AGENT, C_PAGE, C_DEVICE, C_TRAITS, NCTX };
    static const char *const ctx[NCTX] = {"channel", "app",    "userAgent",
                                          "page",    "device", "traits"};
    const json_t *t[NTOP], *c[NCTX];
    jpick(event, top, NTOP, t);
    jpick(t[CONTEXT], ctx, NCTX, c);
    return (event_facts){.channel = json_string_value(t[CHANNEL]),
                         .ctx_channel = json_string_value(c[C_CHANNEL]),
                         .user_agent = json_string_value(c[C_AGENT]),
                         .device_type = json_string_value(json_object_get(c[C_DEVICE], "type")),
                         .app = c[C_APP] != NULL,
                         .page = c[C_PAGE] != NULL,
                         .traits = t[TRAITS],
                         .ctx_traits = c[C_TRAITS]};
}

static prof_channel event_channel(ev_type type, const event_facts *f) {
    const char *names[] = {f->channel, f->ctx_channel};
    for (size_t i = 0; i < 2; i++) {
        int c = map_lookup(channel_map, sizeof channel_map / sizeof *channel_map, names[i]);
        if (c >= 0) return (prof_channel)c;
    }
    if (type == EV_SCREEN || f->app) return PROF_CH_APP;
    if (type == EV_PAGE || f->user_agent || f->page) return PROF_CH_WEB;
    return PROF_CH_SERVER;
}

prof_channel prof_event_channel(const json_t *event, ev_type type) {
    event_facts f = read_facts(event);
    return event_channel(type, &f);
}

static const name_map device_map[] = {
    {"mobile", PROF_DEV_MOBILE},   {"phone", PROF_DEV_MOBILE},     {"ios", PROF_DEV_MOBILE},
    {"android", PROF_DEV_MOBILE},  {"tablet", PROF_DEV_TABLET},    {"ipad", PROF_DEV_TABLET},
    {"desktop", PROF_DEV_DESKTOP}, {"computer", PROF_DEV_DESKTOP},
};

static prof_device event_device(const event_facts *f) {
    int d = map_lookup(device_map, sizeof device_map / sizeof *device_map, f->device_type);
    if (d >= 0) return (prof_device)d;
    const char *ua = f->user_agent;
    if (!ua) return PROF_DEV_OTHER;
    if (strstr(ua, "iPad") || strstr(ua, "Tablet")) return PROF_DEV_TABLET;
    if (strstr(ua, "Mobi") || strstr(ua, "iPhone") || strstr(ua, "Android")) return PROF_DEV_MOBILE;
    return PROF_DEV_DESKTOP;
}

prof_device prof_event_device(const json_t *event) {
    event_facts f = read_facts(event);
    return event_device(&f);
}

/* ---- Traits ---- */

static prof_trait_time *trait_time(prof *p, uint64_t h) {
    for (size_t i = 0; i < p->ntrait_times; i++)
        if (p->trait_times[i].key_hash == h) return &p->trait_times[i];
    return NULL;
}

/* The hash of a value's compact JSON: to tell a trait sent again unchanged (context.traits rides on
 * every event of some SDKs) without reading the stored traits. */
static uint64_t value_hash(const json_t *v) {
    buf b = BUF_INIT(PROF_TRAIT_VALUE_HASH_MAX);
    uint64_t h = jsonw_value(&b, v) ? 0 : hash64_stable(b.data, b.len);
    buf_free(&b);
    return h;
}

json_t *prof_traits(const prof *p) {
    if (!p->traits) return json_object();
    return json_loadb(p->traits, p->traits_len, 0, NULL);
}

/* Applies traits as of ts_ms to *cur (parsed on first need), key by key, unless a newer value
 * is held; sets *changed when a stored value changes. `times`, when given, holds each key's own
 * time (merging: the other profile's). */
static int apply_traits(prof *p, const json_t *traits, int64_t ts_ms, const prof *times,
                        json_t **cur, bool *changed) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)traits, key, v) {
        uint64_t kh = hash64_stable(key, strlen(key)), vh = value_hash(v);
        int64_t ts = ts_ms;
        if (times) {
            const prof_trait_time *ot = trait_time((prof *)times, kh);
            ts = ot ? ot->ts_ms : 0;
        }
        prof_trait_time *t = trait_time(p, kh);
        if (t && t->ts_ms > ts) continue;
        if (!t) {
            if (p->ntrait_times >= PROF_TRAITS_MAX) continue;
            if (vec_reserve_small32((void **)&p->trait_times, &p->atrait_times, p->ntrait_times + 1,
                                    sizeof *p->trait_times))
                return -1;
            t = &p->trait_times[p->ntrait_times++];
            *t = (prof_trait_time){kh, INT64_MIN, 0};
        }
        bool same = t->ts_ms != INT64_MIN && t->value_hash == vh;
        t->ts_ms = ts;
        t->value_hash = vh;
        if (same) continue;
        if (!*cur && !(*cur = prof_traits(p))) return -1;
        if (json_is_null(v))
            json_object_del(*cur, key);
        else if (json_object_set(*cur, key, v))
            return -1;
        *changed = true;
    }
    return 0;
}

/* Stores cur as the profile's traits text, in a block of its own size. */
static int store_traits(prof *p, const json_t *cur) {
    buf b = BUF_INIT(0);
    if (jsonw_value(&b, cur) || b.len >= UINT32_MAX) {
        buf_free(&b);
        return -1;
    }
    char *text = realloc(b.data, b.len + 1);
    if (!text) {
        buf_free(&b);
        return -1;
    }
    free(p->traits);
    p->traits = text;
    p->traits_len = (uint32_t)b.len;
    return 0;
}

static int set_traits(prof *p, const json_t *traits, int64_t ts_ms, const prof *times) {
    json_t *cur = NULL;
    bool changed = false;
    int rc = apply_traits(p, traits, ts_ms, times, &cur, &changed);
    if (!rc && changed) rc = store_traits(p, cur);
    json_decref(cur);
    return rc;
}

int prof_set_traits(prof *p, const json_t *traits, int64_t ts_ms) {
    return set_traits(p, traits, ts_ms, NULL);
}

/* ---- Favourites: the space-saving summary, PROF_FAVOURITES counters ---- */

/* Adds w to the 16-bit counter *c of an array of n, halving all n first while it would overflow. */
static void add_count(uint16_t *counts, size_t n, uint16_t *c, uint32_t w) {
    while (*c + w > UINT16_MAX)
        for (size_t i = 0; i < n; i++)
            counts[i] /= 2;
    *c = (uint16_t)(*c + w);
}

/* name is an interned id, so names compare as numbers. */
static void add_fav(prof_favs *f, uint32_t name, uint32_t w) {
    if (!name) return;
    if (w > UINT16_MAX) w = UINT16_MAX;
    size_t min = 0;
    for (size_t i = 0; i < PROF_FAVOURITES; i++) {
        if (f->name[i] == name) {
            add_count(f->weight, PROF_FAVOURITES, &f->weight[i], w);
            return;
        }
        if (!f->name[i] || (f->name[min] && f->weight[i] < f->weight[min])) min = i;
    }
    /* Not tracked: take an empty counter, or the lightest, inheriting its weight (the summary's
     * overestimate bound), so a newly frequent name can climb past an old one. */
    if (!f->name[min]) f->weight[min] = 0;
    f->name[min] = name;
    add_count(f->weight, PROF_FAVOURITES, &f->weight[min], w);
}

static void fav_products(prof *p, const cm_event *cm, uint32_t w, strpool *names) {
    if (!names) return;
    for (size_t i = 0; i < cm->nproducts; i++) {
        const cm_product *pr = &cm->products[i];
        if (pr->category && *pr->category)
            add_fav(&p->categories, strpool_id(names, pr->category), w);
        if (pr->brand && *pr->brand) add_fav(&p->brands, strpool_id(names, pr->brand), w);
    }
}

/* ---- Cart ---- */

static prof_line *cart_line(const prof *p, uint32_t product) {
    for (size_t i = 0; i < p->ncart; i++)
        if (p->cart[i].product == product) return &p->cart[i];
    return NULL;
}

static void cart_total(prof *p) {
    double v = 0;
    for (size_t i = 0; i < p->ncart; i++)
        v += p->cart[i].price * (double)p->cart[i].quantity;
    p->cart_value = v;
}

static const char *product_key(const cm_product *pr) {
    return pr->product_id ? pr->product_id : pr->sku;
}

/* The interned id of the product's key, 0 when it has none or the pool is full. */
static uint32_t product_ref(const cm_product *pr, strpool *products) {
    const char *id = product_key(pr);
    return id && products ? strpool_id(products, id) : 0;
}

/* Adds delta of the product (negative: removes), dropping a line that reaches zero. */
static int cart_add(prof *p, const cm_product *pr, int64_t delta, strpool *products) {
    uint32_t id = product_ref(pr, products);
    if (!id) return 0;
    prof_line *l = cart_line(p, id);
    if (!l) {
        if (delta <= 0 || p->ncart >= PROF_CART_MAX) return 0;
        if (vec_reserve_small32((void **)&p->cart, &p->acart, p->ncart + 1, sizeof *p->cart))
            return -1;
        l = &p->cart[p->ncart++];
        *l = (prof_line){id, 0, 0};
    }
    int64_t q = (int64_t)l->quantity + delta;
    l->quantity = q > INT32_MAX ? INT32_MAX : q < INT32_MIN ? INT32_MIN : (int32_t)q;
    if (pr->has & CM_HAS_PRICE) l->price = pr->price;
    if (l->quantity <= 0) *l = p->cart[--p->ncart];
    return 0;
}

/* ---- Bought products: a sorted array of interned ids ---- */

static size_t bought_pos(const prof *p, uint32_t id, bool *found) {
    size_t lo = 0, hi = p->nbought;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->bought[mid] == id) {
            *found = true;
            return mid;
        }
        if (p->bought[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static int add_bought(prof *p, uint32_t id) {
    if (!id) return 0;
    bool found;
    size_t at = bought_pos(p, id, &found);
    if (found || p->nbought >= PROF_BOUGHT_MAX) return 0;
    if (vec_reserve_small32((void **)&p->bought, &p->abought, p->nbought + 1, sizeof *p->bought))
        return -1;
    memmove(p->bought + at + 1, p->bought + at, (p->nbought - at) * sizeof *p->bought);
    p->bought[at] = id;
    p->nbought++;
    return 0;
}

bool prof_has_bought(const prof *p, const strpool *products, const char *product_id) {
    uint32_t id = p->nbought && products ? strpool_find(products, product_id) : 0;
    bool found = false;
    if (id) bought_pos(p, id, &found);
    return found;
}

bool prof_in_cart(const prof *p, const strpool *products, const char *product_id) {
    uint32_t id = p->ncart && products ? strpool_find(products, product_id) : 0;
    return id && cart_line(p, id);
}

/* ---- Orders ---- */

/* An order's value: revenue, else total, else subtotal, else the sum of its lines, as the
 * e-commerce spec lets shops send any of them. */
static double order_value(const cm_event *cm) {
    if (cm->has & CM_HAS_REVENUE) return cm->revenue;
    if (cm->has & CM_HAS_TOTAL) return cm->total;
    if (cm->has & CM_HAS_SUBTOTAL) return cm->subtotal;
    double v = 0;
    for (size_t i = 0; i < cm->nproducts; i++)
        v += cm->products[i].price * (double)cm->products[i].quantity;
    return v;
}

static int fold_commerce(prof *p, const cm_event *cm, int64_t ts, strpool *names,
                         strpool *products) {
    switch (cm->kind) {
    case CM_PRODUCT_VIEWED:
        p->product_views++;
        fav_products(p, cm, W_VIEW, names);
        return 0;
    case CM_PRODUCTS_SEARCHED:
        p->searches++;
        return 0;
    case CM_PRODUCT_ADDED:
    case CM_WISHLIST_PRODUCT_ADDED_TO_CART:
    case CM_PRODUCT_REMOVED: {
        bool add = cm->kind != CM_PRODUCT_REMOVED;
        for (size_t i = 0; i < cm->nproducts; i++)
            if (cart_add(p, &cm->products[i],
                         add ? cm->products[i].quantity : -cm->products[i].quantity, products))
                return -1;
        cart_total(p);
        p->cart_updated_ms = ts;
        if (add) fav_products(p, cm, W_CART, names);
        return 0;
    }
    case CM_CART_VIEWED:
    case CM_CHECKOUT_STARTED:
        /* These carry the whole cart: it replaces what the profile pieced together. */
        if (cm->nproducts == 0) return 0;
        clear_cart(p);
        for (size_t i = 0; i < cm->nproducts; i++)
            if (cart_add(p, &cm->products[i], cm->products[i].quantity, products)) return -1;
        cart_total(p);
        p->cart_updated_ms = ts;
        return 0;
    case CM_PRODUCT_ADDED_TO_WISHLIST:
        fav_products(p, cm, W_WISHLIST, names);
        return 0;
    case CM_ORDER_COMPLETED: {
        p->orders++;
        p->revenue += order_value(cm);
        if (!p->first_order_ms || ts < p->first_order_ms) p->first_order_ms = ts;
        if (ts >= p->last_order_ms) {
            p->last_order_ms = ts;
            free(p->last_order_id);
            p->last_order_id = cm->order_id ? strdup(cm->order_id) : NULL;
        }
        if (!p->currency[0] && cm->currency[0]) memcpy(p->currency, cm->currency, 4);
        for (size_t i = 0; i < cm->nproducts; i++)
            if (add_bought(p, product_ref(&cm->products[i], products))) return -1;
        /* The order consumed the cart. */
        clear_cart(p);
        p->cart_updated_ms = ts;
        fav_products(p, cm, W_PURCHASE, names);
        return 0;
    }
    case CM_ORDER_REFUNDED:
    case CM_ORDER_CANCELLED: {
        double v = order_value(cm);
        p->refunds++;
        p->refunded += v;
        p->revenue -= v;
        return 0;
    }
    default:
        return 0;
    }
}

int prof_fold(prof *p, const prof_event *e) {
    if (vec_reserve_small32((void **)&p->seqs, &p->aseqs, p->nseqs + 1, sizeof *p->seqs)) return -1;
    p->seqs[p->nseqs++] = e->seq;
    int64_t ts = e->ts_ms;
    if (p->events == 0 || ts - p->last_seen_ms >= PROF_SESSION_GAP_MS) p->sessions++;
    if (p->events == 0 || ts < p->first_seen_ms) p->first_seen_ms = ts;
    if (p->events == 0 || ts > p->last_seen_ms) p->last_seen_ms = ts;
    p->events++;
    event_facts f = read_facts(e->json);
    add_count(p->channels, PROF_NCHANNELS, &p->channels[event_channel(e->type, &f)], 1);
    add_count(p->devices, PROF_NDEVICES, &p->devices[event_device(&f)], 1);
    if (e->type == EV_PAGE) p->page_views++;
    if (e->type == EV_SCREEN) p->screen_views++;
    if (json_is_object(f.ctx_traits) && prof_set_traits(p, f.ctx_traits, ts)) return -1;
    if (e->type == EV_IDENTIFY && json_is_object(f.traits) && prof_set_traits(p, f.traits, ts))
        return -1;
    return e->cm ? fold_commerce(p, e->cm, ts, e->names, e->products) : 0;
}

/* ---- Merging ---- */

static int merge_seqs(prof *into, prof *from) {
    size_t n = (size_t)into->nseqs + from->nseqs;
    if (n > UINT32_MAX) return -1;
    int64_t *m = malloc((n ? n : 1) * sizeof *m);
    if (!m) return -1;
    size_t i = 0, j = 0, k = 0;
    while (i < into->nseqs && j < from->nseqs)
        m[k++] = into->seqs[i] < from->seqs[j] ? into->seqs[i++] : from->seqs[j++];
    while (i < into->nseqs)
        m[k++] = into->seqs[i++];
    while (j < from->nseqs)
        m[k++] = from->seqs[j++];
    free(into->seqs);
    into->seqs = m;
    into->nseqs = into->aseqs = (uint32_t)n;
    free(from->seqs);
    from->seqs = NULL;
    from->nseqs = from->aseqs = 0;
    return 0;
}

static int merge_traits(prof *into, prof *from) {
    if (!from->traits) return 0;
    /* Each of from's keys competes with into's by its own time. A key removed (null) on one
     * side has no value to carry, and its time still wins if newer. */
    json_t *theirs = prof_traits(from);
    if (!theirs) return -1;
    int rc = set_traits(into, theirs, 0, from);
    json_decref(theirs);
    return rc;
}

int prof_merge(prof *into, prof *from) {
    if (from->events) {
        if (!into->events || from->first_seen_ms < into->first_seen_ms)
            into->first_seen_ms = from->first_seen_ms;
        if (!into->events || from->last_seen_ms > into->last_seen_ms)
            into->last_seen_ms = from->last_seen_ms;
    }
    into->events += from->events;
    into->sessions += from->sessions;
    into->page_views += from->page_views;
    into->screen_views += from->screen_views;
    into->product_views += from->product_views;
    into->searches += from->searches;
    into->orders += from->orders;
    into->refunds += from->refunds;
    into->revenue += from->revenue;
    into->refunded += from->refunded;
    if (from->first_order_ms &&
        (!into->first_order_ms || from->first_order_ms < into->first_order_ms))
        into->first_order_ms = from->first_order_ms;
    if (from->last_order_ms > into->last_order_ms) {
        into->last_order_ms = from->last_order_ms;
        free(into->last_order_id);
        into->last_order_id = from->last_order_id;
        from->last_order_id = NULL;
    }
    if (!into->currency[0]) memcpy(into->currency, from->currency, 4);
    for (size_t i = 0; i < PROF_NCHANNELS; i++)
        add_count(into->channels, PROF_NCHANNELS, &into->channels[i], from->channels[i]);
    for (size_t i = 0; i < PROF_NDEVICES; i++)
        add_count(into->devices, PROF_NDEVICES, &into->devices[i], from->devices[i]);
    for (size_t i = 0; i < PROF_FAVOURITES; i++) {
        add_fav(&into->categories, from->categories.name[i], from->categories.weight[i]);
        add_fav(&into->brands, from->brands.name[i], from->brands.weight[i]);
    }
    if (from->cart_updated_ms > into->cart_updated_ms) {
        clear_cart(into);
        into->cart = from->cart;
        into->ncart = from->ncart;
        into->acart = from->acart;
        into->cart_value = from->cart_value;
        into->cart_updated_ms = from->cart_updated_ms;
        from->cart = NULL;
        from->ncart = from->acart = 0;
    }
    for (size_t i = 0; i < from->nbought; i++)
        if (add_bought(into, from->bought[i])) return -1;
    if (merge_traits(into, from)) return -1;
    return merge_seqs(into, from);
}

prof_rfm_input prof_rfm(const prof *p) {
    return (prof_rfm_input){p->orders, p->revenue, p->last_order_ms};
}

int prof_preferred_channel(const prof *p) {
    int best = -1;
    for (int i = 0; i < PROF_NCHANNELS; i++)
        if (p->channels[i] && (best < 0 || p->channels[i] > p->channels[best])) best = i;
    return best;
}

static int preferred_device(const prof *p) {
    int best = -1;
    for (int i = 0; i < PROF_NDEVICES; i++)
        if (p->devices[i] && (best < 0 || p->devices[i] > p->devices[best])) best = i;
    return best;
}

/* ---- JSON ---- */

static json_t *time_or_null(int64_t ms, bool have) {
    char t[TF_LEN];
    return have ? json_string(tf_format(ms, t)) : json_null();
}

/* Money is rounded to the cent: sums of doubles drift (0.1 + 0.2), and clients compare values. */
static json_t *money(double v) {
    return json_real(round(v * 100) / 100);
}

typedef struct fav {
    uint32_t name, weight;
} fav;

static int fav_cmp(const void *a, const void *b) {
    const fav *x = a, *y = b;
    if (!x->name || !y->name) return !x->name - !y->name;
    if (x->weight != y->weight) return x->weight < y->weight ? 1 : -1;
    return x->name < y->name ? -1 : x->name > y->name;
}

static json_t *top_favs(const prof_favs *f, const strpool *names) {
    fav sorted[PROF_FAVOURITES];
    for (size_t i = 0; i < PROF_FAVOURITES; i++)
        sorted[i] = (fav){f->name[i], f->weight[i]};
    qsort(sorted, PROF_FAVOURITES, sizeof *sorted, fav_cmp);
    json_t *a = json_array();
    for (size_t i = 0; i < 3 && a && names; i++) {
        const char *name = strpool_at(names, sorted[i].name);
        if (name) json_array_append_new(a, json_string(name));
    }
    return a;
}

static json_t *cart_json(const prof *p, const strpool *products) {
    json_t *items = json_array();
    for (size_t i = 0; i < p->ncart && items; i++)
        json_array_append_new(items, json_pack("{s:s?, s:I, s:o}", "product_id",
                                               strpool_at(products, p->cart[i].product), "quantity",
                                               (json_int_t)p->cart[i].quantity, "price",
                                               money(p->cart[i].price)));
    return json_pack("{s:o, s:o, s:I, s:o}", "items", items ? items : json_array(), "value",
                     money(p->cart_value), "count", (json_int_t)p->ncart, "updated_at",
                     time_or_null(p->cart_updated_ms, p->cart_updated_ms != 0));
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The products bought, by id in byte order. */
static json_t *bought_json(const prof *p, const strpool *products) {
    const char **ids = malloc((p->nbought ? p->nbought : 1) * sizeof *ids);
    json_t *a = json_array();
    if (!ids || !a) {
        free(ids);
        json_decref(a);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < p->nbought; i++)
        if ((ids[n] = strpool_at(products, p->bought[i]))) n++;
    qsort(ids, n, sizeof *ids, str_cmp);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(ids[i]));
    free(ids);
    return a;
}

json_t *prof_computed_json(const prof *p, const int rfm[3], int64_t now_ms, const strpool *names,
                           const strpool *products) {
    int ch = prof_preferred_channel(p), dev = preferred_device(p);
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "first_seen", time_or_null(p->first_seen_ms, p->events > 0));
    json_object_set_new(o, "last_seen", time_or_null(p->last_seen_ms, p->events > 0));
    json_object_set_new(o, "events", json_integer(p->events));
    json_object_set_new(o, "sessions", json_integer(p->sessions));
    json_object_set_new(o, "page_views", json_integer(p->page_views));
    json_object_set_new(o, "screen_views", json_integer(p->screen_views));
    json_object_set_new(o, "product_views", json_integer(p->product_views));
    json_object_set_new(o, "searches", json_integer(p->searches));
    json_object_set_new(o, "cart", cart_json(p, products));
    json_object_set_new(o, "orders_count", json_integer(p->orders));
    json_object_set_new(o, "total_spend", money(p->revenue));
    json_object_set_new(o, "average_order_value",
                        money(p->orders ? (p->revenue + p->refunded) / (double)p->orders : 0));
    json_object_set_new(o, "refunds", json_integer(p->refunds));
    json_object_set_new(o, "lifetime_value", money(p->revenue));
    json_object_set_new(o, "currency", p->currency[0] ? json_string(p->currency) : json_null());
    json_object_set_new(o, "first_order_at", time_or_null(p->first_order_ms, p->orders > 0));
    json_object_set_new(o, "last_order_at", time_or_null(p->last_order_ms, p->orders > 0));
    json_object_set_new(o, "last_order_id",
                        p->last_order_id ? json_string(p->last_order_id) : json_null());
    json_object_set_new(o, "days_since_last_order",
                        p->orders > 0 ? json_integer((now_ms - p->last_order_ms) / 86400000)
                                      : json_null());
    json_object_set_new(o, "favourite_categories", top_favs(&p->categories, names));
    json_object_set_new(o, "favourite_brands", top_favs(&p->brands, names));
    json_object_set_new(o, "preferred_channel",
                        ch >= 0 ? json_string(channel_names[ch]) : json_null());
    json_object_set_new(o, "preferred_device",
                        dev >= 0 ? json_string(device_names[dev]) : json_null());
    json_t *bought = bought_json(p, products);
    json_object_set_new(o, "products_bought", bought ? bought : json_array());
    char score[4] = {(char)('0' + rfm[0]), (char)('0' + rfm[1]), (char)('0' + rfm[2]), 0};
    json_object_set_new(o, "rfm",
                        p->orders > 0
                            ? json_pack("{s:i, s:i, s:i, s:s}", "recency", rfm[0], "frequency",
                                        rfm[1], "monetary", rfm[2], "score", score)
                            : json_null());
    return o;
}

size_t prof_bytes(const prof *p) {
    return p->acart * sizeof *p->cart + p->abought * sizeof *p->bought +
           p->atrait_times * sizeof *p->trait_times + (p->traits ? p->traits_len + 1 : 0) +
           (p->last_order_id ? strlen(p->last_order_id) + 1 : 0);
}
