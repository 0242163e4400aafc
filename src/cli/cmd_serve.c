/* engaged serve — run the server until SIGTERM or SIGINT, then drain and exit 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "http/http.h"
#include "keys.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/config.h"
#include "util/log.h"

int cli_load_cfg(cfg *c, int argc, char **argv, int *rest, int *nrest) {
    char err[512];
    if (cfg_load(c, argc, argv, rest, nrest, err, sizeof err)) {
        fprintf(stderr, "engaged %s: %s\n", argv[0], err);
        return -1;
    }
    static const struct {
        const char *name;
        log_level level;
    } levels[] = {
        {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN}, {"error", LOG_ERROR}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcmp(c->log_level, levels[i].name) == 0) {
            log_set_level(levels[i].level);
            return 0;
        }
    fprintf(stderr, "engaged %s: log_level must be debug, info, warn or error\n", argv[0]);
    return -1;
}

/* Stores the keys given in the settings, so automation needs no `keys create` step. */
static int provision_keys(const cfg *c, store *s) {
    if (*c->write_key && keys_provision(store_writer(s), KEY_WRITE, c->write_key)) return -1;
    if (*c->admin_key && keys_provision(store_writer(s), KEY_ADMIN, c->admin_key)) return -1;
    return 0;
}

int cli_serve(const cfg *c, void (*on_ready)(const cfg *c, int port)) {
    /* Block the signals before any thread starts, so every thread inherits the mask and only
     * sigwait() below sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (c->test_clock) clock_set_test_mode(0);

    char err[512];
    store *s = store_open(c->data, err, sizeof err);
    if (!s) {
        log_error("serve: %s", err);
        return 2;
    }
    if (provision_keys(c, s)) {
        log_error("serve: cannot store the provisioned keys: %s", store_errmsg());
        store_close(s);
        return 2;
    }
    http_server *srv = http_start(c, s, err, sizeof err);
    if (!srv) {
        log_error("serve: %s", err);
        store_close(s);
        return 2;
    }
    log_info("engaged %s listening on %s (port %d), data in %s", ENGAGED_VERSION, c->listen,
             http_port(srv), c->data);
    if (on_ready) on_ready(c, http_port(srv));

    int sig = 0;
    sigwait(&set, &sig);
    log_info("received %s: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    http_stop(srv, 10000);
    store_close(s);
    log_info("stopped cleanly");
    return 0;
}

int cmd_serve(int argc, char **argv) {
    cfg c;
    int rest[64], nrest;
    if (argc > 64 || cli_load_cfg(&c, argc - 1, argv + 1, rest, &nrest)) return 2;
    if (nrest) {
        fprintf(stderr, "engaged serve: unknown argument \"%s\" (see engaged help)\n",
                argv[1 + rest[0]]);
        return 2;
    }
    return cli_serve(&c, NULL);
}
