/* engaged keys — create, list and revoke API keys in the data directory.
 *
 *   engaged keys create --scope write|admin [--rate EVENTS_PER_S] [--label TEXT]
 *                       [--origin URL]...   (write keys: the browser origins allowed; none: any)
 *   engaged keys list
 *   engaged keys revoke ID
 * A running server picks changes up within 250 ms (keys.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "keys.h"
#include "store/store.h"
#include "util/config.h"

static int usage(void) {
    fprintf(stderr, "usage: engaged keys create --scope write|admin [--rate N] [--label TEXT]\n"
                    "                           [--origin URL]... [--data DIR]\n"
                    "       engaged keys list [--data DIR]\n"
                    "       engaged keys revoke ID [--data DIR]\n");
    return 2;
}

int cmd_keys(int argc, char **argv) {
    cfg c;
    /* Room for every --origin a key may have, its value, and the other flags. */
    enum { MAX_ARGS = 2 * KEYS_MAX_ORIGINS + 16 };
    int rest[MAX_ARGS], nrest;
    if (argc > MAX_ARGS) {
        fprintf(stderr, "engaged keys: too many arguments (at most %d)\n", MAX_ARGS);
        return 2;
    }
    if (cli_load_cfg(&c, argc - 1, argv + 1, rest, &nrest)) return 2;
    if (nrest < 1) return usage();
    char **args = argv + 1;
    const char *verb = args[rest[0]];
    const char *scope_name = NULL, *label = NULL, *id_text = NULL;
    const char *origins[KEYS_MAX_ORIGINS];
    size_t norigins = 0;
    double rate = 0;
    for (int i = 1; i < nrest; i++) {
        const char *a = args[rest[i]];
        const char *v = i + 1 < nrest ? args[rest[i + 1]] : NULL;
        if (strcmp(a, "--scope") == 0 && v)
            scope_name = v, i++;
        else if (strcmp(a, "--label") == 0 && v)
            label = v, i++;
        else if (strcmp(a, "--origin") == 0 && v) {
            if (norigins == KEYS_MAX_ORIGINS) {
                fprintf(stderr, "engaged keys create: at most %d --origin per key\n",
                        KEYS_MAX_ORIGINS);
                return 2;
            }
            origins[norigins++] = v, i++;
        } else if (strcmp(a, "--rate") == 0 && v) {
            char *end;
            errno = 0;
            rate = strtod(v, &end);
            if (errno || *end || rate < 0) {
                fprintf(stderr,
                        "engaged keys: --rate must be a number of events per second >= 0\n");
                return 2;
            }
            i++;
        } else if (!id_text && a[0] != '-')
            id_text = a;
        else
            return usage();
    }
    char err[512];
    store *s = store_open_db(c.data, err, sizeof err); /* beside a running server, too */
    if (!s) {
        fprintf(stderr, "engaged keys: %s\n", err);
        return 2;
    }
    int rc = 2;
    if (strcmp(verb, "create") == 0) {
        key_scope scope;
        if (!scope_name || !keys_scope_parse(scope_name, &scope)) {
            fprintf(stderr, "engaged keys create: --scope must be write or admin\n");
        } else {
            char key[KEYS_TEXT_LEN];
            keys_spec spec = {scope, rate, label, origins, norigins};
            ev_error e;
            if (keys_create(store_writer(s), &spec, key, &e) == 0) {
                printf("%s\n", key);
                fprintf(stderr, "created a %s key; it is shown only now, store it safely\n",
                        scope_name);
                rc = 0;
            } else {
                fprintf(stderr, "engaged keys create: %s\n", e.message);
            }
        }
    } else if (strcmp(verb, "list") == 0) {
        rc = keys_list(store_writer(s), stdout) ? 2 : 0;
    } else if (strcmp(verb, "revoke") == 0 && id_text) {
        char *end;
        long long id = strtoll(id_text, &end, 10);
        int r = *end ? -1 : keys_revoke(store_writer(s), id);
        if (r == 0)
            fprintf(stderr, "revoked key %lld\n", id), rc = 0;
        else if (r == 1)
            fprintf(stderr, "engaged keys revoke: no active key %s\n", id_text), rc = 1;
        else
            fprintf(stderr, "engaged keys revoke: \"%s\" is not a key id\n", id_text);
    } else {
        rc = usage();
    }
    store_close(s);
    return rc;
}
