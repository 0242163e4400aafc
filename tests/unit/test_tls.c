/* Unit tests for util/tls: one object per thread, the same on every call in that thread, freed
 * when the thread exits; a failed make() is tried again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "util/tls.h"

static atomic_int made, destroyed;
static atomic_bool fail_next;

static void *make(void) {
    if (atomic_exchange(&fail_next, false)) return NULL;
    atomic_fetch_add(&made, 1);
    return malloc(16);
}

static void destroy(void *p) {
    atomic_fetch_add(&destroyed, 1);
    free(p);
}

static tls_slot slot = TLS_SLOT(make, destroy);

typedef struct calls {
    void *first, *second;
} calls;

static void *in_thread(void *arg) {
    calls *c = arg;
    c->first = tls_get(&slot);
    c->second = tls_get(&slot);
    return NULL;
}

/* Everything runs in threads of the test's own, so that every object is freed by its thread's
 * exit (the main thread's would outlive the leak check). */
static void test_per_thread(void **state) {
    (void)state;
    atomic_store(&fail_next, true);
    pthread_t t[3];
    calls c[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, in_thread, &c[i]), 0);
    int failed = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_non_null(c[i].second);
        if (!c[i].first)
            failed++; /* its make() failed; the second call made one */
        else
            assert_ptr_equal(c[i].first, c[i].second);
    }
    assert_int_equal(failed, 1);
    assert_int_equal(atomic_load(&made), 3);
    assert_int_equal(atomic_load(&destroyed), 3); /* each thread's object, at its exit */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
