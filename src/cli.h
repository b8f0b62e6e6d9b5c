/*
 * cli.h - shared by the CLI's files (cli.c, cli_print.c, cli_repl.c, cli_pack.c,
 * cli_watch.c).
 */
#ifndef PACKER_CLI_H
#define PACKER_CLI_H

#include <cjson/cJSON.h>

#include "packer.h"

/* Human renderings of successful read responses (stdout). */
void cli_print_list(const cJSON *root);
void cli_print_details(const cJSON *root);
void cli_print_status(const cJSON *root);
/* Any doctor response: diagnostics and actions on stdout, by severity. */
void cli_print_doctor(const cJSON *root);
void cli_print_quarantine(const cJSON *root);

/* `packer pack ls|cat` (cli_pack.c): argv[0] is "pack"; json is the global
 * --json flag. Returns the exit code. Usage and help for the command table. */
extern const char cli_pack_usage[], cli_pack_help[];
int cli_pack(int argc, char **argv, int json);

/* `packer serve` (serve.c): argv[0] is "serve"; the current directory is
 * the workspace (or where init_workspace creates one). Returns the exit
 * code. Usage and help for the command table. */
extern const char cli_serve_usage[], cli_serve_help[];
int cli_serve(int argc, char **argv);
/* `packer watch` (cli_watch.c): argv[0] is "watch"; json is the global
 * --json flag; bus the CLI's own (for --events FILE) or NULL. Runs until
 * SIGINT/SIGTERM; returns the exit code. */
extern const char cli_watch_usage[], cli_watch_help[];
int cli_watch(int argc, char **argv, int json, packer_bus *bus);

/* Interactive Lua prompt over an open project; 0 on a clean exit. */
int cli_repl(const char *root);

#endif
