/* cli — the `engaged` subcommands. Each takes the arguments after its name (argv[0] is the command
 * name) and returns the process exit status: 0 success, 1 the work was done but something was
 * refused (e.g. rejected import lines), 2 usage or environment errors. */
#ifndef ENGAGED_CLI_H
#define ENGAGED_CLI_H

int cmd_serve(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_eval(int argc, char **argv);

/* Shared by serve and demo: serves with the settings already loaded until SIGTERM/SIGINT. */
struct cfg;
int cli_serve(const struct cfg *c, void (*on_ready)(const struct cfg *c, int port));
/* Loads settings for a command that takes no positional arguments beyond those it names: prints
 * the error and returns -1 on a bad setting. rest/nrest as in cfg_load(). */
int cli_load_cfg(struct cfg *c, int argc, char **argv, int *rest, int *nrest);

#endif
