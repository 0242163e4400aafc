/* engaged — a customer engagement engine for online shops. This file only dispatches to the
 * subcommands in src/cli/. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "util/config.h"

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"serve", cmd_serve, "run the server (HTTP API, durable store)"},
    {"demo", cmd_demo, "load a demo shop into the data directory (once) and serve it"},
    {"import", cmd_import, "bulk-load events from a JSONL or CSV file: import FILE"},
    {"eval", cmd_eval,
     "measure the session recommender offline: eval --train FILE --test FILE [--k 20]"},
    {"keys", cmd_keys,
     "manage API keys: keys create --scope write|admin [--origin URL] | keys list | keys revoke "
     "ID"},
    {"version", cmd_version, "print the version"},
    {"help", cmd_help, "this help"},
};

static int cmd_version(int argc, char **argv) {
    printf("engaged %s\n", ENGAGED_VERSION);
    return 0;
}

static int cmd_help(int argc, char **argv) {
    printf("usage: engaged COMMAND [options]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-8s %s\n", commands[i].name, commands[i].summary);
    printf("\n");
    cfg_print_help();
    printf(
        "\nDocumentation: docs/ in the source tree (api.md, configuration.md, operations.md).\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        cmd_help(0, NULL);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) name = "help";
    if (strcmp(name, "--version") == 0) name = "version";
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "engaged: unknown command \"%s\" (try: engaged help)\n", name);
    return 2;
}
