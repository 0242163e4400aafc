/* Unit tests for util/config: defaults, the config file (comments, quotes, errors naming
 * file:line), the environment over the file, flags over the environment, the arguments left for the
 * caller, and a bad value from any source being an error that names that source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include <ftw.h>
#include <unistd.h>

#include "util/config.h"

extern char **environ;

static char tmpdir[64];

/* Removes every ENGAGED_* variable, so the runner's environment cannot leak into a test. */
static void clear_engaged_env(void) {
    for (;;) {
        char name[128] = "";
        for (char **e = environ; *e; e++)
            if (strncmp(*e, "ENGAGED_", 8) == 0) {
                size_t n = strcspn(*e, "=");
                if (n >= sizeof name) n = sizeof name - 1;
                memcpy(name, *e, n);
                name[n] = '\0';
                break;
            }
        if (!*name) return;
        unsetenv(name);
    }
}

static int group_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/engaged-test-config-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    return test_rmtree(tmpdir);
}

static int test_setup(void **state) {
    (void)state;
    clear_engaged_env();
    return 0;
}

/* Writes text to a file named name in the temp dir; returns its path (static storage). */
static const char *write_file(const char *name, const char *text) {
    static char path[2][256];
    static int which;
    char *p = path[which++ & 1];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

#define MAXARGS 16

typedef struct run {
    cfg c;
    int rest[MAXARGS];
    int nrest;
    char err[512];
    int rc;
} run;

/* Runs cfg_load on a NULL-terminated argument list. */
static run *load(run *r, const char *const *args) {
    char *argv[MAXARGS + 1];
    int argc = 0;
    while (args && args[argc]) {
        assert_true(argc < MAXARGS);
        argv[argc] = (char *)args[argc];
        argc++;
    }
    argv[argc] = NULL;
    memset(r, 0x5a, sizeof *r); /* garbage, to see that cfg_load sets everything */
    r->err[0] = '\0';
    r->rc = cfg_load(&r->c, argc, argv, r->rest, &r->nrest, r->err, sizeof r->err);
    return r;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_ok(run *r) {
    if (r->rc != 0) fail_msg("cfg_load failed: %s", r->err);
}

static void expect_error(run *r, const char *message) {
    if (r->rc != -1) fail_msg("cfg_load succeeded, expected: %s", message);
    assert_string_equal(r->err, message);
}

static void test_defaults(void **state) {
    (void)state;
    run r;
    expect_ok(load(&r, NULL));
    assert_string_equal(r.c.listen, "127.0.0.1:8080");
    assert_string_equal(r.c.data, "./var");
    assert_string_equal(r.c.config, "");
    assert_int_equal(r.c.threads, 0);
    assert_int_equal(r.c.max_connections, 4096);
    assert_true(r.c.rate_limit == 0);
    assert_true(r.c.access_log);
    assert_true(r.c.dedup_hours == 24);
    assert_false(r.c.test_clock);
    assert_string_equal(r.c.write_key, "");
    assert_string_equal(r.c.admin_key, "");
    assert_string_equal(r.c.log_level, "info");
    assert_int_equal(r.nrest, 0);
}

static void test_file(void **state) {
    (void)state;
    const char *path = write_file("good.conf", "# engaged settings\n"
                                               "\n"
                                               "   # an indented comment\n"
                                               "listen = 0.0.0.0:9000\n"
                                               "data=\"/var/lib/engaged dir\"\n"
                                               "  threads   =   3  \r\n"
                                               "rate_limit = 2.5\n"
                                               "access_log = OFF\n"
                                               "dedup_hours = 48\n"
                                               "write_key = a=b#c\n"
                                               "admin_key = \"\"\n"
                                               "log_level = \"\n"
                                               "\t\n");
    run r;
    expect_ok(load(&r, ARGS("--config", path)));
    assert_string_equal(r.c.config, path);
    assert_string_equal(r.c.listen, "0.0.0.0:9000");
    assert_string_equal(r.c.data, "/var/lib/engaged dir"); /* quotes stripped, inner space kept */
    assert_int_equal(r.c.threads, 3);                      /* spaces and CR trimmed */
    assert_true(r.c.rate_limit == 2.5);
    assert_false(r.c.access_log);
    assert_true(r.c.dedup_hours == 48);
    assert_string_equal(r.c.write_key, "a=b#c"); /* split at the first '='; '#' inside a value */
    assert_string_equal(r.c.admin_key, "");
    assert_string_equal(r.c.log_level, "\"");    /* a lone quote is not a quoted string */
    assert_int_equal(r.c.max_connections, 4096); /* untouched settings keep their defaults */
    assert_int_equal(r.nrest, 0);                /* --config and its value are consumed */
}

static void test_file_sources(void **state) {
    (void)state;
    const char *a = write_file("a.conf", "listen = a:1\n");
    run r;
    char flag[300];
    snprintf(flag, sizeof flag, "--config=%s", a);
    expect_ok(load(&r, ARGS(flag)));
    assert_string_equal(r.c.listen, "a:1");
    assert_string_equal(r.c.config, a);
    assert_int_equal(r.nrest, 0);

    const char *b = write_file("b.conf", "listen = b:2\n");
    setenv("ENGAGED_CONFIG", b, 1);
    expect_ok(load(&r, NULL));
    assert_string_equal(r.c.listen, "b:2");
    assert_string_equal(r.c.config, b);
    /* The flag names the file over the environment. */
    expect_ok(load(&r, ARGS("--config", a)));
    assert_string_equal(r.c.listen, "a:1");
    assert_string_equal(r.c.config, a);
}

static void test_file_errors(void **state) {
    (void)state;
    static const struct {
        const char *text;
        const char *message; /* %s: the path */
    } cases[] = {
        {"listen = x\n\n# c\ncolour = blue\n", "%s:4: unknown setting \"colour\""},
        {"threads = many\n", "%s:1: threads must be an integer between 0 and 256, not \"many\""},
        {"\nthreads = 1.5\n", "%s:2: threads must be an integer between 0 and 256, not \"1.5\""},
        {"threads = \n", "%s:1: threads must be an integer between 0 and 256, not \"\""},
        {"max_connections = 0\n",
         "%s:1: max_connections must be an integer between 1 and 1e+06, not \"0\""},
        {"rate_limit = -1\n", "%s:1: rate_limit must be a number between 0 and 1e+09, not \"-1\""},
        {"rate_limit = nan\n",
         "%s:1: rate_limit must be a number between 0 and 1e+09, not \"nan\""},
        {"rate_limit = inf\n",
         "%s:1: rate_limit must be a number between 0 and 1e+09, not \"inf\""},
        {"dedup_hours = 0.5\n",
         "%s:1: dedup_hours must be a number between 1 and 8760, not \"0.5\""},
        {"access_log = maybe\n", "%s:1: access_log must be on or off, not \"maybe\""},
        {"listen\n", "%s:1: expected \"key = value\""},
        {"max connections = 3\n", "%s:1: unknown setting \"max connections\""},
        {"config = other.conf\n", "%s:1: unknown setting \"config\""},
        /* The first error stops the reading. */
        {"threads = x\ncolour = blue\n",
         "%s:1: threads must be an integer between 0 and 256, not \"x\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = write_file("bad.conf", cases[i].text);
        char expect[512];
        snprintf(expect, sizeof expect, cases[i].message, path);
        run r;
        expect_error(load(&r, ARGS("--config", path)), expect);
    }

    char missing[300], expect[400];
    snprintf(missing, sizeof missing, "%s/no-such.conf", tmpdir);
    snprintf(expect, sizeof expect, "config file %s: No such file or directory", missing);
    run r;
    expect_error(load(&r, ARGS("--config", missing)), expect);
    setenv("ENGAGED_CONFIG", missing, 1);
    expect_error(load(&r, NULL), expect);
}

static void test_env_over_file(void **state) {
    (void)state;
    const char *path = write_file("env.conf", "listen = file:1\nthreads = 2\naccess_log = off\n");
    setenv("ENGAGED_CONFIG", path, 1);
    setenv("ENGAGED_LISTEN", "env:2", 1);
    setenv("ENGAGED_ACCESS_LOG", "on", 1);
    setenv("ENGAGED_MAX_CONNECTIONS", "17", 1);
    setenv("ENGAGED_TEST_CLOCK", "Yes", 1);
    setenv("ENGAGED_WRITE_KEY", "wk_env", 1);
    run r;
    expect_ok(load(&r, NULL));
    assert_string_equal(r.c.listen, "env:2");
    assert_int_equal(r.c.threads, 2); /* from the file: no variable for it */
    assert_true(r.c.access_log);
    assert_int_equal(r.c.max_connections, 17);
    assert_true(r.c.test_clock);
    assert_string_equal(r.c.write_key, "wk_env");
}

static void test_flags_over_env(void **state) {
    (void)state;
    const char *path = write_file("flags.conf", "listen = file:1\nthreads = 2\n");
    setenv("ENGAGED_CONFIG", path, 1);
    setenv("ENGAGED_LISTEN", "env:2", 1);
    setenv("ENGAGED_THREADS", "4", 1);
    setenv("ENGAGED_DATA", "/env/data", 1);
    run r;
    expect_ok(load(&r, ARGS("--listen", "flag:3", "--threads=5")));
    assert_string_equal(r.c.listen, "flag:3");
    assert_int_equal(r.c.threads, 5);
    assert_string_equal(r.c.data, "/env/data");
    assert_int_equal(r.nrest, 0);

    /* Both spellings of a multi-word flag; the last occurrence wins. */
    expect_ok(
        load(&r, ARGS("--max-connections", "9", "--max_connections=10", "--rate-limit", "1e2")));
    assert_int_equal(r.c.max_connections, 10);
    assert_true(r.c.rate_limit == 100);
    expect_ok(load(&r, ARGS("--listen=a:1", "--listen", "b:2")));
    assert_string_equal(r.c.listen, "b:2");
    /* "=" in a value is part of the value. */
    expect_ok(load(&r, ARGS("--write-key=wk=x=y")));
    assert_string_equal(r.c.write_key, "wk=x=y");
}

static void test_bool_flags(void **state) {
    (void)state;
    run r;
    expect_ok(load(&r, ARGS("--test-clock")));
    assert_true(r.c.test_clock);
    assert_int_equal(r.nrest, 0);

    /* A bare boolean does not swallow a following argument that is not a boolean word. */
    expect_ok(load(&r, ARGS("--test-clock", "serve")));
    assert_true(r.c.test_clock);
    assert_int_equal(r.nrest, 1);
    assert_int_equal(r.rest[0], 1);

    expect_ok(load(&r, ARGS("--test-clock", "--listen", "x:1")));
    assert_true(r.c.test_clock);
    assert_string_equal(r.c.listen, "x:1");

    setenv("ENGAGED_TEST_CLOCK", "on", 1);
    expect_ok(load(&r, ARGS("--test-clock", "off")));
    assert_false(r.c.test_clock);
    assert_int_equal(r.nrest, 0);
    expect_ok(load(&r, ARGS("--test-clock=no")));
    assert_false(r.c.test_clock);
    expect_ok(load(&r, ARGS("--test-clock", "FALSE")));
    assert_false(r.c.test_clock);
    expect_ok(load(&r, ARGS("--test-clock", "0")));
    assert_false(r.c.test_clock);
    assert_int_equal(r.nrest, 0);

    expect_ok(load(&r, ARGS("--access-log", "off")));
    assert_false(r.c.access_log);
    assert_int_equal(r.nrest, 0);
    expect_ok(load(&r, ARGS("--access-log", "off", "--access-log")));
    assert_true(r.c.access_log);
    expect_ok(load(&r, ARGS("--access-log=true")));
    assert_true(r.c.access_log);
}

static void test_rest_in_order(void **state) {
    (void)state;
    run r;
    expect_ok(load(&r, ARGS("serve", "--listen", "x:1", "extra", "--unknown", "y", "-v", "--",
                            "--data=d", "--config-dir", "last")));
    assert_string_equal(r.c.listen, "x:1");
    assert_string_equal(r.c.data, "d");
    static const int expect[] = {0, 3, 4, 5, 6, 7, 9, 10};
    assert_int_equal(r.nrest, sizeof expect / sizeof *expect);
    for (int i = 0; i < r.nrest; i++)
        assert_int_equal(r.rest[i], expect[i]);
}

static void test_bad_values_name_source(void **state) {
    (void)state;
    run r;
    expect_error(load(&r, ARGS("--threads", "abc")),
                 "--threads: threads must be an integer between 0 and 256, not \"abc\"");
    expect_error(load(&r, ARGS("--threads=257")),
                 "--threads: threads must be an integer between 0 and 256, not \"257\"");
    expect_error(load(&r, ARGS("--threads", "-1")),
                 "--threads: threads must be an integer between 0 and 256, not \"-1\"");
    expect_error(load(&r, ARGS("--threads", "5 ")),
                 "--threads: threads must be an integer between 0 and 256, not \"5 \"");
    expect_error(load(&r, ARGS("--rate-limit", "1e10")),
                 "--rate-limit: rate_limit must be a number between 0 and 1e+09, not \"1e10\"");
    expect_error(load(&r, ARGS("--access-log=maybe")),
                 "--access-log: access_log must be on or off, not \"maybe\"");
    /* The range ends are allowed. */
    expect_ok(
        load(&r, ARGS("--threads", "256", "--dedup-hours", "8760", "--max-connections", "1")));
    assert_int_equal(r.c.threads, 256);
    assert_true(r.c.dedup_hours == 8760);
    assert_int_equal(r.c.max_connections, 1);

    setenv("ENGAGED_THREADS", "", 1);
    expect_error(load(&r, NULL),
                 "ENGAGED_THREADS: threads must be an integer between 0 and 256, not \"\"");
    unsetenv("ENGAGED_THREADS");
    setenv("ENGAGED_DEDUP_HOURS", "0", 1);
    expect_error(load(&r, NULL),
                 "ENGAGED_DEDUP_HOURS: dedup_hours must be a number between 1 and 8760, not \"0\"");
    /* A bad environment value is an error even when a flag would override it. */
    expect_error(load(&r, ARGS("--dedup-hours", "2")),
                 "ENGAGED_DEDUP_HOURS: dedup_hours must be a number between 1 and 8760, not \"0\"");
    unsetenv("ENGAGED_DEDUP_HOURS");
    setenv("ENGAGED_ACCESS_LOG", "nope", 1);
    expect_error(load(&r, NULL), "ENGAGED_ACCESS_LOG: access_log must be on or off, not \"nope\"");
}

static void test_missing_values(void **state) {
    (void)state;
    run r;
    expect_error(load(&r, ARGS("--listen")), "--listen needs a value");
    expect_error(load(&r, ARGS("serve", "--threads")), "--threads needs a value");
    /* --config without a file is a mistake too, not a silent "no config file". */
    expect_error(load(&r, ARGS("serve", "--config")), "--config needs a value");
}

static void test_string_lengths(void **state) {
    (void)state;
    char longest[128], too_long[129];
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    memset(too_long, 'a', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    run r;
    expect_ok(load(&r, ARGS("--listen", longest)));
    assert_string_equal(r.c.listen, longest);
    expect_error(load(&r, ARGS("--listen", too_long)),
                 "--listen: listen is too long (at most 127 bytes)");
    setenv("ENGAGED_LOG_LEVEL", "0123456789abcdef", 1);
    expect_error(load(&r, NULL), "ENGAGED_LOG_LEVEL: log_level is too long (at most 15 bytes)");
    unsetenv("ENGAGED_LOG_LEVEL");
    /* A config-file line longer than any value is refused, not truncated into a valid one. */
    char *line = malloc(300 + 20);
    assert_non_null(line);
    snprintf(line, 320, "write_key = %0300d\n", 7);
    const char *path = write_file("long.conf", line);
    free(line);
    char expect[512];
    snprintf(expect, sizeof expect, "%s:1: write_key is too long (at most 255 bytes)", path);
    expect_error(load(&r, ARGS("--config", path)), expect);
}

int main(void) {
#define T(f) cmocka_unit_test_setup(f, test_setup)
    const struct CMUnitTest tests[] = {
        T(test_defaults),       T(test_file),           T(test_file_sources),
        T(test_file_errors),    T(test_env_over_file),  T(test_flags_over_env),
        T(test_bool_flags),     T(test_rest_in_order),  T(test_bad_values_name_source),
        T(test_missing_values), T(test_string_lengths),
    };
    return cmocka_run_group_tests_name("config", tests, group_setup, group_teardown);
}
