/* Unit tests for c360/idgraph: resolution, merges, per-type limits (the shared-device case),
 * unmerge (split, and the split customers kept apart), erasure, and determinism. Types here
 * are 0 user_id (limit 1), 1 email (limit 2), 2 anonymous_id (limit 100), in priority order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "c360/idgraph.h"

enum { U, E, A };

static idg *graph(void) {
    idg_opts o = {
        .ntypes = 3, .type_names = {"user_id", "email", "anonymous_id"}, .limits = {1, 2, 100}};
    idg *g = idg_new(&o);
    assert_non_null(g);
    return g;
}

static uint32_t resolve(idg *g, int64_t seq, idg_result *r, size_t n, ...) {
    idg_ident ids[IDG_MAX_IDENTS];
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        ids[i].type = va_arg(ap, int);
        ids[i].value = va_arg(ap, const char *);
    }
    va_end(ap);
    assert_int_equal(idg_resolve(g, ids, n, seq, seq * 1000, "track", "Test", r), 0);
    return r->slot;
}

/* An anonymous visit, then a login on the same device: one customer, the anonymous profile's id. */
static void test_anonymous_then_login(void **state) {
    (void)state;
    idg *g = graph();
    idg_result r;
    uint32_t s1 = resolve(g, 1, &r, 1, A, "anon-1");
    assert_true(r.created);
    assert_int_equal(idg_slot_id(g, s1), 1);
    uint32_t s2 = resolve(g, 2, &r, 3, U, "u1", E, "ada@shop.de", A, "anon-1");
    assert_false(r.created);
    assert_int_equal(s2, s1);
    assert_int_equal(r.nmerged, 0);
    assert_int_equal(idg_lookup(g, U, "u1"), s1);
    assert_int_equal(idg_lookup(g, E, "ada@shop.de"), s1);
    assert_int_equal(idg_live(g), 1);
    /* Links: user_id -> anon-1 (k 2) and user_id -> email (k 1), both from event 2. */
    json_t *links = idg_links_json(g, s1);
    assert_int_equal(json_array_size(links), 2);
    json_decref(links);
    idg_free(g);
}

/* Two known devices of one person merge; the older customer keeps its id and the merge is logged.
 */
static void test_merge_keeps_older_id(void **state) {
    (void)state;
    idg *g = graph();
    idg_result r;
    uint32_t a = resolve(g, 10, &r, 1, A, "phone-app");
    uint32_t b = resolve(g, 20, &r, 2, U, "u1", A, "laptop");
    assert_int_not_equal(a, b);
    uint32_t m = resolve(g, 30, &r, 2, U, "u1", A, "phone-app");
    assert_int_equal(r.nmerged, 1);
    assert_int_equal(m, a); /* slot 10 is older than 20 */
    assert_int_equal(r.merged[0].from, b);
    assert_int_equal(r.merged[0].into, a);
    assert_false(idg_slot_live(g, b));
    assert_int_equal(idg_slot_by_id(g, 20), a); /* the old id still answers */
    json_t *merges = idg_merges_json(g, a);
    assert_int_equal(json_array_size(merges), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(merges, 0), "merged_profile")), "p_20");
    json_decref(merges);
    idg_free(g);
}

/* A shared device: anon-1 belongs to u1; u2 logs in on it. Two userIds on one customer would break
 * the limit, so u2 gets its own customer and the link is refused and recorded. */
static void test_shared_device_not_merged(void **state) {
    (void)state;
    idg *g = graph();
    idg_result r;
    uint32_t p1 = resolve(g, 1, &r, 2, U, "u1", A, "anon-1");
    uint32_t p2 = resolve(g, 2, &r, 2, U, "u2", A, "anon-1");
    assert_int_not_equal(p1, p2);
    assert_true(r.created);
    assert_int_equal(r.refused, 1);
    assert_int_equal(idg_lookup(g, A, "anon-1"), p1);
    assert_int_equal(idg_refusal_count(g), 1);
    json_t *ref = idg_refusals_json(g, p2, 10);
    assert_int_equal(json_array_size(ref), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ref, 0), "reason")),
                        "limit");
    json_decref(ref);
    /* A third email beyond the limit of 2 is refused too, and the event stays with u1. */
    resolve(g, 3, &r, 2, U, "u1", E, "a@x.de");
    resolve(g, 4, &r, 2, U, "u1", E, "b@x.de");
    uint32_t s = resolve(g, 5, &r, 2, U, "u1", E, "c@x.de");
    assert_int_equal(s, p1);
    assert_int_equal(r.refused, 1);
    assert_int_equal(idg_lookup(g, E, "c@x.de"), IDG_NONE);
    idg_free(g);
}

/* Unmerge splits the side that came in through the link, blocks the pair, and refuses while
 * another path still joins the sides. */
static void test_unmerge(void **state) {
    (void)state;
    idg *g = graph();
    idg_result r;
    uint32_t p = resolve(g, 1, &r, 2, U, "u1", A, "a1"); /* link 1.1 */
    resolve(g, 2, &r, 1, A, "a2");
    resolve(g, 3, &r, 2, U, "u1", A, "a2"); /* merge: link 3.1 */
    assert_int_equal(idg_live(g), 1);
    uint32_t ns;
    assert_int_equal(idg_unmerge(g, p, 99, 1, 50, &ns), IDG_UNMERGE_NO_LINK);
    assert_int_equal(idg_unmerge(g, p, 3, 1, 50, &ns), IDG_UNMERGE_OK);
    assert_int_equal(idg_slot_id(g, ns), 50);
    assert_int_equal(idg_lookup(g, A, "a2"), ns);
    assert_int_equal(idg_lookup(g, U, "u1"), p);
    assert_int_equal(idg_live(g), 2);
    /* The same pair is not joined again. */
    uint32_t s = resolve(g, 60, &r, 2, U, "u1", A, "a2");
    assert_int_equal(s, p);
    assert_int_equal(r.refused, 1);
    assert_int_equal(idg_lookup(g, A, "a2"), ns);

    /* Any other event joining the two sides is refused too: the operator's split holds. */
    resolve(g, 61, &r, 2, E, "x@y.de", A, "a2"); /* the email joins a2's side */
    s = resolve(g, 62, &r, 2, U, "u1", E, "x@y.de");
    assert_int_equal(s, p);
    assert_int_equal(r.refused, 1);
    assert_int_equal(r.nmerged, 0);
    assert_int_equal(idg_live(g), 2);
    idg_free(g);
}

static void test_erase(void **state) {
    (void)state;
    idg *g = graph();
    idg_result r;
    uint32_t p = resolve(g, 1, &r, 2, U, "u1", E, "ada@shop.de");
    idg_erase(g, p);
    assert_int_equal(idg_lookup(g, U, "u1"), IDG_NONE);
    assert_int_equal(idg_slot_by_id(g, 1), IDG_NONE);
    assert_int_equal(idg_live(g), 0);
    /* The identity seen again starts a new customer. */
    uint32_t q = resolve(g, 9, &r, 1, E, "ada@shop.de");
    assert_true(r.created);
    assert_int_equal(idg_slot_id(g, q), 9);
    idg_free(g);
}

/* Fetching ahead only reads: every stage, for identifiers present, erased and unknown, on an empty
 * graph and a grown one, leaves every lookup as it was (and, under ASan, reads nothing it must
 * not). */
static void test_prefetch(void **state) {
    (void)state;
    idg *g = graph();
    for (int stage = 0; stage < 3; stage++)
        idg_prefetch(g, idg_hash(U, "nobody"), stage);
    idg_result r;
    char u[32];
    for (int i = 1; i <= 3000; i++) {
        snprintf(u, sizeof u, "user-%d", i);
        resolve(g, i, &r, 1, U, u);
    }
    idg_erase(g, idg_lookup(g, U, "user-7"));
    for (int i = 1; i <= 3100; i++) {
        snprintf(u, sizeof u, "user-%d", i);
        for (int stage = 0; stage < 3; stage++)
            idg_prefetch(g, idg_hash(U, u), stage);
        uint32_t slot = idg_lookup(g, U, u);
        if (i == 7 || i > 3000)
            assert_int_equal(slot, IDG_NONE);
        else
            assert_int_equal(idg_slot_id(g, slot), i);
    }
    idg_free(g);
}

/* Many customers: every lookup finds its own; the table grows past its first size. */
static void test_many(void **state) {
    (void)state;
    idg *g = graph();
    idg_result r;
    char u[32], a[32];
    for (int i = 1; i <= 5000; i++) {
        snprintf(u, sizeof u, "user-%d", i);
        snprintf(a, sizeof a, "anon-%d", i);
        resolve(g, i, &r, 2, U, u, A, a);
    }
    assert_int_equal(idg_live(g), 5000);
    /* 10,000 values fill more than one 64 KiB value chunk: every one must still be found. */
    for (int i = 1; i <= 5000; i++) {
        snprintf(u, sizeof u, "user-%d", i);
        snprintf(a, sizeof a, "anon-%d", i);
        assert_int_equal(idg_slot_id(g, idg_lookup(g, A, a)), i);
        assert_int_equal(idg_slot_id(g, idg_lookup(g, U, u)), i);
    }
    idg_free(g);
}

/* Two customers that each absorbed another merge: the survivor keeps every merge record (its own,
 * the other's, and the new one) and every identifier. */
static void test_merge_of_merged(void **state) {
    (void)state;
    idg *g = graph();
    idg_result r;
    uint32_t a = resolve(g, 10, &r, 1, A, "a1");
    resolve(g, 20, &r, 2, U, "u1", A, "a2");
    assert_int_equal(resolve(g, 30, &r, 2, U, "u1", A, "a1"), a);
    uint32_t b = resolve(g, 40, &r, 1, A, "b1");
    resolve(g, 50, &r, 2, E, "x@shop.de", A, "b2");
    assert_int_equal(resolve(g, 60, &r, 2, E, "x@shop.de", A, "b1"), b);
    assert_int_equal(resolve(g, 70, &r, 2, U, "u1", E, "x@shop.de"), a);
    assert_int_equal(r.nmerged, 1);
    assert_int_equal(idg_live(g), 1);
    json_t *merges = idg_merges_json(g, a);
    assert_int_equal(json_array_size(merges), 3);
    const char *want[] = {"p_20", "p_50", "p_40"};
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(merges, i), "merged_profile")),
            want[i]);
    json_decref(merges);
    json_t *ids = idg_identities_json(g, a);
    assert_int_equal(json_array_size(ids), 6);
    json_decref(ids);
    idg_free(g);
}

static void test_link_ids(void **state) {
    (void)state;
    char id[32];
    idg_link_id(1234, 3, id);
    assert_string_equal(id, "1234.3");
    int64_t seq;
    int k;
    assert_true(idg_link_parse(id, &seq, &k));
    assert_int_equal(seq, 1234);
    assert_int_equal(k, 3);
    assert_false(idg_link_parse("1234", &seq, &k));
    assert_false(idg_link_parse("1234.", &seq, &k));
    assert_false(idg_link_parse("x.1", &seq, &k));
    assert_false(idg_link_parse("-5.1", &seq, &k));
    assert_false(idg_link_parse("5.99", &seq, &k));
    assert_false(idg_link_parse("5.1junk", &seq, &k));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anonymous_then_login),
        cmocka_unit_test(test_prefetch),
        cmocka_unit_test(test_merge_keeps_older_id),
        cmocka_unit_test(test_shared_device_not_merged),
        cmocka_unit_test(test_unmerge),
        cmocka_unit_test(test_erase),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_merge_of_merged),
        cmocka_unit_test(test_link_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
