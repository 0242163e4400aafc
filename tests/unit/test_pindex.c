/* pindex: per-person lists of event seqs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "store/pindex.h"

static void test_add_and_get(void **state) {
    (void)state;
    pindex *p = pindex_new();
    for (int64_t s = 1; s <= 10; s++)
        assert_int_equal(pindex_add(p, PINDEX_USER, "ada", 3, s * 10), 0);
    assert_int_equal(pindex_add(p, PINDEX_ANON, "ada", 3, 5), 0); /* same text, other kind */
    int64_t out[32];
    assert_int_equal(pindex_get(p, PINDEX_USER, "ada", 3, 0, out, 32), 10);
    assert_true(out[0] == 10 && out[9] == 100);
    /* after is exclusive; the first seq greater than it comes first */
    assert_int_equal(pindex_get(p, PINDEX_USER, "ada", 3, 30, out, 32), 7);
    assert_true(out[0] == 40);
    assert_int_equal(pindex_get(p, PINDEX_USER, "ada", 3, 35, out, 32), 7);
    assert_int_equal(pindex_get(p, PINDEX_USER, "ada", 3, 100, out, 32), 0);
    assert_int_equal(pindex_get(p, PINDEX_USER, "ada", 3, 0, out, 3), 3); /* max */
    assert_true(out[2] == 30);
    assert_int_equal(pindex_get(p, PINDEX_ANON, "ada", 3, 0, out, 32), 1);
    assert_true(out[0] == 5);
    assert_int_equal(pindex_get(p, PINDEX_USER, "ad", 2, 0, out, 32), 0);   /* a prefix */
    assert_int_equal(pindex_get(p, PINDEX_USER, "adab", 4, 0, out, 32), 0); /* longer */
    assert_int_equal(pindex_people(p), 2);
    assert_true(pindex_bytes(p) > 10 * sizeof(int64_t));
    pindex_free(p);
}

/* Ids are bytes: embedded NULs and long ids are told apart exactly. */
static void test_binary_ids(void **state) {
    (void)state;
    pindex *p = pindex_new();
    char a[300], b[300];
    memset(a, 'x', sizeof a);
    memcpy(b, a, sizeof b);
    b[299] = 'y';
    assert_int_equal(pindex_add(p, PINDEX_USER, a, sizeof a, 1), 0);
    assert_int_equal(pindex_add(p, PINDEX_USER, b, sizeof b, 2), 0);
    assert_int_equal(pindex_add(p, PINDEX_USER, "a\0b", 3, 3), 0);
    assert_int_equal(pindex_add(p, PINDEX_USER, "a\0c", 3, 4), 0);
    int64_t out[4];
    assert_int_equal(pindex_get(p, PINDEX_USER, b, sizeof b, 0, out, 4), 1);
    assert_true(out[0] == 2);
    assert_int_equal(pindex_get(p, PINDEX_USER, "a\0c", 3, 0, out, 4), 1);
    assert_true(out[0] == 4);
    pindex_free(p);
}

/* Many people: the table grows and every list stays whole and in order. */
static void test_many_people(void **state) {
    (void)state;
    pindex *p = pindex_new();
    char id[32];
    for (int64_t seq = 1; seq <= 60000; seq++) {
        snprintf(id, sizeof id, "user-%lld", (long long)(seq % 20011));
        assert_int_equal(pindex_add(p, PINDEX_USER, id, strlen(id), seq), 0);
    }
    assert_int_equal(pindex_people(p), 20011);
    int64_t out[8];
    for (int u = 0; u < 20011; u += 997) {
        snprintf(id, sizeof id, "user-%d", u);
        size_t n = pindex_get(p, PINDEX_USER, id, strlen(id), 0, out, 8);
        assert_true(n == 2 || n == 3);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(out[i] % 20011, u);
        for (size_t i = 1; i < n; i++)
            assert_true(out[i] > out[i - 1]);
    }
    pindex_free(p);
}

/* pindex_add_many() builds the same index as pindex_add() one entry at a time: batches of every
 * size from 1 to 257, people new and known, both kinds, the same person several times in one
 * batch, and the table growing in the middle of a batch (from 1,024 slots to 16,384). */
static void test_add_many(void **state) {
    (void)state;
    pindex *one = pindex_new(), *many = pindex_new();
    enum { N = 30000, PEOPLE = 9001 };
    static char ids[N][24];
    static pindex_entry v[N];
    for (int64_t seq = 1; seq <= N; seq++) {
        uint64_t x = (uint64_t)seq * 0x9e3779b97f4a7c15ull;
        int who = (int)((x >> 20) % PEOPLE);
        pindex_kind kind = who % 3 ? PINDEX_USER : PINDEX_ANON;
        snprintf(ids[seq - 1], sizeof ids[0], "p%d", who);
        v[seq - 1] = (pindex_entry){kind, ids[seq - 1], strlen(ids[seq - 1]), seq, 0};
        assert_int_equal(pindex_add(one, kind, v[seq - 1].id, v[seq - 1].len, seq), 0);
    }
    for (size_t at = 0, size = 1; at < N; at += size, size = size % 257 + 1)
        assert_int_equal(pindex_add_many(many, v + at, at + size <= N ? size : N - at), 0);
    assert_int_equal(pindex_people(many), pindex_people(one));
    assert_int_equal(pindex_bytes(many), pindex_bytes(one));
    static int64_t a[N], b[N];
    char id[24];
    for (int who = 0; who < PEOPLE; who++) {
        snprintf(id, sizeof id, "p%d", who);
        pindex_kind kind = who % 3 ? PINDEX_USER : PINDEX_ANON;
        size_t na = pindex_get(one, kind, id, strlen(id), 0, a, N);
        size_t nb = pindex_get(many, kind, id, strlen(id), 0, b, N);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
        assert_int_equal(pindex_get(many, kind == PINDEX_USER ? PINDEX_ANON : PINDEX_USER, id,
                                    strlen(id), 0, b, N),
                         0);
    }
    pindex_free(one);
    pindex_free(many);
}

typedef struct job {
    pindex *p;
    int done;
} job;

static void *reader(void *arg) {
    job *j = arg;
    int64_t out[64];
    while (!__atomic_load_n(&j->done, __ATOMIC_ACQUIRE)) {
        size_t n = pindex_get(j->p, PINDEX_ANON, "busy", 4, 0, out, 64);
        for (size_t i = 1; i < n; i++)
            if (out[i] != out[i - 1] + 1) return (void *)1;
    }
    return NULL;
}

/* Readers copying a list while the writer appends to it always see a consistent prefix. */
static void test_concurrent_readers(void **state) {
    (void)state;
    job j = {pindex_new(), 0};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, reader, &j);
    for (int64_t seq = 1; seq <= 20000; seq++)
        assert_int_equal(pindex_add(j.p, PINDEX_ANON, "busy", 4, seq), 0);
    __atomic_store_n(&j.done, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) {
        void *rv;
        pthread_join(t[i], &rv);
        assert_null(rv);
    }
    pindex_free(j.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_get),        cmocka_unit_test(test_binary_ids),
        cmocka_unit_test(test_many_people),        cmocka_unit_test(test_add_many),
        cmocka_unit_test(test_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
