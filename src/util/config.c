#include "util/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { T_STR, T_INT, T_DOUBLE, T_BOOL } opt_type;

typedef struct opt {
    const char *key; /* config-file key; the flag is --key with '_' as '-', the env ENGAGED_KEY */
    opt_type type;
    size_t offset;
    size_t size; /* for strings: the field's size */
    const char *def;
    double min, max; /* for numbers */
    const char *help;
} opt;

#define STR(f) T_STR, offsetof(cfg, f), sizeof(((cfg *)0)->f)
#define NUM(t, f) t, offsetof(cfg, f), 0

static const opt options[] = {
    {"listen", STR(listen), "127.0.0.1:8080", 0, 0, "address and port to serve HTTP on"},
    {"data", STR(data), "./var", 0, 0, "data directory (the embedded store)"},
    {"threads", NUM(T_INT, threads), "0", 0, 256, "HTTP worker threads, 0 = one per core"},
    {"max_connections", NUM(T_INT, max_connections), "4096", 1, 1000000,
     "most client connections at once"},
    {"rate_limit", NUM(T_DOUBLE, rate_limit), "0", 0, 1e9,
     "events per second per key (a key may set its own), 0 = unlimited"},
    {"access_log", NUM(T_BOOL, access_log), "on", 0, 0, "one log line per request (on|off)"},
    {"dedup_hours", NUM(T_DOUBLE, dedup_hours), "24", 1, 24 * 365,
     "how long a messageId is remembered for deduplication"},
    {"test_clock", NUM(T_BOOL, test_clock), "off", 0, 0,
     "freeze the engine clock; tests move it with POST /v1/admin/clock"},
    {"write_key", STR(write_key), "", 0, 0, "a write key to provision at start"},
    {"admin_key", STR(admin_key), "", 0, 0, "an admin key to provision at start"},
    {"log_level", STR(log_level), "info", 0, 0, "debug, info, warn or error"},
    {"default_country", STR(default_country), "", 0, 0,
     "country (ISO 3166 alpha-2, e.g. DE) of phone numbers written without a country code"},
    {"signing_secret", STR(signing_secret), "", 0, 0,
     "secret the shop's server signs user ids with, so browsers may read that user's "
     "recommendations with a write key"},
};
#define NOPTIONS (sizeof options / sizeof options[0])

static const char *const yes_words[] = {"on", "true", "1", "yes"};
static const char *const no_words[] = {"off", "false", "0", "no"};

static bool is_bool_word(const char *v) {
    for (int i = 0; i < 4; i++)
        if (strcasecmp(v, yes_words[i]) == 0 || strcasecmp(v, no_words[i]) == 0) return true;
    return false;
}

static int set_value(cfg *c, const opt *o, const char *v, const char *where, char *err, size_t n) {
    void *field = (char *)c + o->offset;
    char *end;
    switch (o->type) {
    case T_STR:
        if (strlen(v) >= o->size) {
            snprintf(err, n, "%s: %s is too long (at most %zu bytes)", where, o->key, o->size - 1);
            return -1;
        }
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case T_INT:
    case T_DOUBLE: {
        errno = 0;
        double d = strtod(v, &end);
        if (errno || end == v || isspace((unsigned char)*v) || *end || !isfinite(d) || d < o->min ||
            d > o->max || (o->type == T_INT && d != floor(d))) {
            snprintf(err, n, "%s: %s must be %s between %g and %g, not \"%s\"", where, o->key,
                     o->type == T_INT ? "an integer" : "a number", o->min, o->max, v);
            return -1;
        }
        if (o->type == T_INT)
            *(int *)field = (int)d;
        else
            *(double *)field = d;
        return 0;
    }
    case T_BOOL: {
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(v, yes_words[i]) == 0) return *(bool *)field = true, 0;
            if (strcasecmp(v, no_words[i]) == 0) return *(bool *)field = false, 0;
        }
        snprintf(err, n, "%s: %s must be on or off, not \"%s\"", where, o->key, v);
        return -1;
    }
    }
    return -1;
}

static const opt *find_key(const char *key, size_t len) {
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(options[i].key) == len && strncmp(options[i].key, key, len) == 0)
            return &options[i];
    return NULL;
}

/* "--rate-limit" -> the rate_limit option. */
static const opt *find_flag(const char *flag, size_t len) {
    char key[64];
    if (len >= sizeof key) return NULL;
    for (size_t i = 0; i < len; i++)
        key[i] = flag[i] == '-' ? '_' : flag[i];
    return find_key(key, len);
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int load_file(cfg *c, const char *path, char *err, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, n, "config file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '='), where[PATH_MAX + 32];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if (!eq) {
            snprintf(err, n, "%s: expected \"key = value\"", where);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') val[vl - 1] = '\0', val++;
        const opt *o = find_key(key, strlen(key));
        if (!o) {
            snprintf(err, n, "%s: unknown setting \"%s\"", where, key);
            rc = -1;
        } else {
            rc = set_value(c, o, val, where, err, n);
        }
    }
    fclose(f);
    return rc;
}

int cfg_load(cfg *c, int argc, char **argv, int *rest, int *nrest, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NOPTIONS; i++)
        if (set_value(c, &options[i], options[i].def, "default", err, errlen)) return -1;

    /* The config file is named by a flag or the environment, so find it before the rest. */
    const char *file = getenv("ENGAGED_CONFIG");
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            file = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
    }
    if (file && *file) {
        snprintf(c->config, sizeof c->config, "%s", file);
        if (load_file(c, file, err, errlen)) return -1;
    }
    for (size_t i = 0; i < NOPTIONS; i++) {
        char env[64];
        size_t k = (size_t)snprintf(env, sizeof env, "ENGAGED_");
        for (const char *p = options[i].key; *p && k < sizeof env - 1; p++)
            env[k++] = (char)toupper((unsigned char)*p);
        env[k] = '\0';
        const char *v = getenv(env);
        if (v && set_value(c, &options[i], v, env, err, errlen)) return -1;
    }
    *nrest = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            rest[(*nrest)++] = i;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (len == 6 && strncmp(name, "config", 6) == 0) {
            if (!eq && ++i >= argc) {
                snprintf(err, errlen, "--config needs a value");
                return -1;
            }
            continue;
        }
        const opt *o = find_flag(name, len);
        if (!o) {
            rest[(*nrest)++] = i;
            continue;
        }
        const char *v;
        char where[80];
        snprintf(where, sizeof where, "--%.*s", (int)len, name);
        if (eq)
            v = eq + 1;
        else if (o->type == T_BOOL && (i + 1 >= argc || !is_bool_word(argv[i + 1])))
            v = "on"; /* a bare boolean flag: --test-clock */
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            snprintf(err, errlen, "%s needs a value", where);
            return -1;
        }
        if (set_value(c, o, v, where, err, errlen)) return -1;
    }
    return 0;
}

void cfg_print_help(void) {
    printf("Settings (flag, environment variable, config-file key; flag wins over environment over "
           "file):\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        char flag[64], env[64];
        size_t k = 0;
        for (const char *p = options[i].key; *p; p++)
            flag[k++] = *p == '_' ? '-' : *p;
        flag[k] = '\0';
        k = (size_t)snprintf(env, sizeof env, "ENGAGED_");
        for (const char *p = options[i].key; *p; p++)
            env[k++] = (char)toupper((unsigned char)*p);
        env[k] = '\0';
        printf("  --%-17s %-24s %s%s%s%s\n", flag, env, options[i].help,
               *options[i].def ? " (default: " : "", options[i].def, *options[i].def ? ")" : "");
    }
    printf(
        "  --config FILE        ENGAGED_CONFIG           read settings from FILE (key = value)\n");
}
