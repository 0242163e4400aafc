/* config — engaged's settings, from flags, environment and a config file.
 *
 * Each setting has one row in the table in config.c: its flag (--listen), its environment variable
 * (ENGAGED_LISTEN), its config-file key (listen) and its default. Precedence, highest first: flag,
 * environment, config file (--config FILE or ENGAGED_CONFIG; lines "key = value", '#' comments),
 * default. A bad value anywhere is an error naming where it came from, never a silent default. */
#ifndef ENGAGED_CONFIG_H
#define ENGAGED_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cfg {
    char listen[128];      /* ADDR:PORT, [v6]:PORT */
    char data[PATH_MAX];   /* data directory */
    char config[PATH_MAX]; /* the config file read, "" for none */
    int threads;           /* HTTP worker threads; 0 = one per core */
    int max_connections;
    double rate_limit;   /* events/s per key unless the key sets its own; 0 = unlimited */
    bool access_log;     /* one log line per request */
    double dedup_hours;  /* messageId memory */
    bool test_clock;     /* the engine clock stands still until the admin API moves it */
    char write_key[256]; /* provisioned at start when set */
    char admin_key[256];
    char log_level[16];
    char default_country[3];  /* ISO 3166 alpha-2 for national phone numbers; "" for none */
    char signing_secret[256]; /* HMAC-SHA256 key of signed browser requests; "" for none */
} cfg;

/* Fills c with defaults, then the config file, the environment (envp-style lookups via getenv) and
 * the flags in argv[0..argc). Flags that are not settings are left for the caller: their indexes
 * are written to rest[] (*nrest of them, in order). Returns 0, or -1 with a message in err. */
int cfg_load(cfg *c, int argc, char **argv, int *rest, int *nrest, char *err, size_t errlen);
/* Prints the settings table (flag, environment variable, default, description) for `engaged help`.
 */
void cfg_print_help(void);

#endif
