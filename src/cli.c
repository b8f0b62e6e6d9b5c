/*
 * cli.c - the packer command-line tool: argument parsing, human and --json
 * output, exit codes. A host like any other: it makes its own event bus,
 * opens the project with it, and calls services through packer_call().
 *
 *   packer [-C DIR] [--json] [--events FILE] COMMAND [ARGS]
 *
 * Exit codes: 0 done, 1 refused or blocked (or a preview awaiting
 * consent), 2 usage error, 3 workspace or I/O failure.
 *
 * Threads: main thread; event output runs on the bus dispatcher and
 * touches only the events file and the progress line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "internal.h"

enum { EXIT_DONE = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_FAILURE_IO = 3 };

typedef struct {
    const char *dir;
    bool json;
    const char *events;
    FILE *events_fp;
    bool progress;   /* stderr is a TTY and not --json */
    char phase[128]; /* progress bar: the current phase and its start */
    double phase_start;
    packer_bus *bus;
    packer_project *p;
} cli;

typedef struct {
    const char *name;
    const char *usage;
    const char *help;
    int (*run)(cli *c, int argc, char **argv);
} command;

static const command *find_command(const char *name);

/* ---- output ------------------------------------------------------------ */

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("packer: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'packer %s--help'.\n", cmd ? cmd : "");
    return EXIT_USAGE;
}

static int exit_code_of(const cJSON *root)
{
    const char *st = json_get_str(root, "status");
    if (!st || strcmp(st, "failed") == 0)
        return EXIT_FAILURE_IO;
    if (strcmp(st, "refused") == 0 || strcmp(st, "blocked") == 0)
        return EXIT_REFUSED;
    return cJSON_GetArraySize(cJSON_GetObjectItem(root, "blockers")) > 0 ? EXIT_REFUSED : EXIT_DONE;
}

static void print_json(const packer_response *r)
{
    const char *text = packer_response_json(r, 1);
    fputs(text ? text : "{\"status\": \"failed\", \"summary\": \"out of memory\"}\n", stdout);
}

/* A failure before any service ran (no workspace, unreadable packer.json):
 * in --json mode still one response object on stdout. */
static int fail_early(cli *c, int rc)
{
    int code = rc == PACKER_EINVAL ? EXIT_USAGE : EXIT_FAILURE_IO;
    if (c->json) {
        resp *r = resp_new(PACKER_OP_READ, "none");
        if (r) {
            resp_status(r, PACKER_STATUS_FAILED);
            resp_summary(r, "%s", packer_last_error());
            resp_diag(r, "error", rc == PACKER_EPARSE ? "parse_error" : "workspace_error", NULL,
                      NULL, packer_last_error());
            packer_response *out = resp_finish(r, PACKER_STATE_FAILED);
            if (out)
                print_json(out);
            packer_response_free(out);
            resp_free(r);
        }
    }
    fprintf(stderr, "packer: %s\n", packer_last_error());
    return code;
}

static void print_list_field(const cJSON *root, const char *key, const char *label, FILE *fp)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(root, key))
    {
        const char *sev = json_get_str(it, "severity");
        const char *msg = json_get_str(it, "message");
        const char *desc = json_get_str(it, "description");
        const char *safety = json_get_str(it, "safety");
        fprintf(fp, "  %s: %s%s%s%s\n", sev ? sev : label,
                msg    ? msg
                : desc ? desc
                       : "",
                safety ? " [" : "", safety ? safety : "", safety ? "]" : "");
        if (desc) {
            const cJSON *t;
            cJSON_ArrayForEach(t, cJSON_GetObjectItem(it, "targets"))
                fprintf(fp, "      %s\n", cJSON_GetStringValue(t));
        }
    }
}

static void print_human(const cJSON *root)
{
    const char *summary = json_get_str(root, "summary");
    printf("%s\n", summary ? summary : "");
    print_list_field(root, "proposed_actions", "would", stdout);
    print_list_field(root, "applied_actions", "done", stdout);
    print_list_field(root, "diagnostics", "note", stderr);
    print_list_field(root, "blockers", "blocked", stderr);
    const char *state = json_get_str(root, "runtime_state");
    if (state && strcmp(state, "healthy") != 0)
        printf("runtime state: %s\n", state);
}

typedef void (*printer)(const cJSON *root);

/* How a command shows a response: `print` renders an ok response (other
 * statuses get print_human) or any response with any_status; exit_of
 * gives the exit code. */
typedef struct {
    printer print;
    bool any_status;
    int (*exit_of)(const cJSON *root);
} rendering;

/* Run a service and report its response; returns the exit code. */
static int call_as(cli *c, const char *service, cJSON *params, const rendering *how)
{
    char *text = params ? json_canonical(params, false) : NULL;
    cJSON_Delete(params);
    packer_response *r = NULL;
    int rc = packer_call(c->p, service, text, &r);
    pk_free(text);
    if (rc)
        return fail_early(c, rc);
    packer_bus_flush(c->bus);
    if (c->progress)
        fputs("\r\033[K", stderr);
    const cJSON *root = response_root(r);
    bool ok = strcmp(json_get_str(root, "status"), "ok") == 0;
    if (c->json)
        print_json(r);
    else
        (how->print && (ok || how->any_status) ? how->print : print_human)(root);
    int code = how->exit_of(root);
    packer_response_free(r);
    return code;
}

static int call(cli *c, const char *service, cJSON *params, printer print)
{
    const rendering how = {print, false, exit_code_of};
    return call_as(c, service, params, &how);
}

/* ---- events ------------------------------------------------------------ */

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* "[#######.............] 1234/10000 hashing inputs  850/s  ETA 12s" on
 * stderr, redrawn in place; a new phase (summary) restarts the clock. */
static void progress_bar(cli *c, const packer_event *ev)
{
    char *line = packer_event_json(ev);
    cJSON *j = line ? cJSON_Parse(line) : NULL;
    const cJSON *pr = cJSON_GetObjectItem(j, "progress");
    const char *what = packer_event_summary(ev);
    if (pr && what) {
        double done = cJSON_GetNumberValue(cJSON_GetObjectItem(pr, "done"));
        double total = cJSON_GetNumberValue(cJSON_GetObjectItem(pr, "total"));
        if (strcmp(c->phase, what) != 0) {
            snprintf(c->phase, sizeof c->phase, "%s", what);
            c->phase_start = mono_s();
        }
        double secs = mono_s() - c->phase_start, rate = secs > 0 ? done / secs : 0;
        int width = 24, fill = total > 0 ? (int)(width * done / total) : width;
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r\033[K[%s] %.0f/%.0f %s  %.0f/s", bar, done, total, what, rate);
        if (rate > 0 && done < total)
            fprintf(stderr, "  ETA %.0fs", (total - done) / rate);
    }
    cJSON_Delete(j);
    packer_free(line);
}

static void on_event(const packer_event *ev, void *ud)
{
    cli *c = ud;
    if (c->events_fp) {
        char *line = packer_event_json(ev);
        if (line) {
            fprintf(c->events_fp, "%s\n", line);
            fflush(c->events_fp);
        }
        packer_free(line);
    }
    if (c->progress && packer_event_get_kind(ev) == PACKER_EV_PROGRESS_UPDATED)
        progress_bar(c, ev);
}

static int open_project(cli *c)
{
    int rc = packer_project_open(".", c->bus, &c->p);
    return rc ? fail_early(c, rc) : 0;
}

/* ---- commands ---------------------------------------------------------- */

static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

static int cmd_init(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"name", required_argument, 0, 'n'}, {0, 0, 0, 0}};
    const char *name = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (ch != 'n')
            return usage_error("init ", "init: unknown option");
        name = optarg;
    }
    if (optind != argc)
        return usage_error("init ", "init: unexpected argument '%s'", argv[optind]);
    packer_response *r = NULL;
    if (packer_init_workspace(".", name, c->bus, &r) != 0)
        return fail_early(c, PACKER_ENOMEM);
    packer_bus_flush(c->bus);
    const cJSON *root = response_root(r);
    if (c->json)
        print_json(r);
    else
        print_human(root);
    int code = exit_code_of(root);
    packer_response_free(r);
    return code;
}

/* PATH on the command line (relative to the cwd) -> workspace-relative. */
static char *workspace_relative(const char *root, const char *arg)
{
    char *cwd = getcwd(NULL, 0);
    char *abs = arg[0] == '/' ? pk_strdup(arg) : pk_asprintf("%s/%s", cwd ? cwd : ".", arg);
    free(cwd);
    if (!abs)
        return NULL;
    size_t n = strlen(root);
    char *out;
    if (strncmp(abs, root, n) == 0 && (abs[n] == '/' || abs[n] == '\0'))
        out = pk_strdup(abs[n] ? abs + n + 1 : ".");
    else
        out = pk_strdup(arg); /* outside: let the service refuse it by name */
    pk_free(abs);
    return out;
}

static int cmd_register(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"address", required_argument, 0, 'a'},
                                         {"kind", required_argument, 0, 'k'},
                                         {"exclude", no_argument, 0, 'x'},
                                         {0, 0, 0, 0}};
    const char *address = NULL, *kind = NULL;
    bool exclude = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'a')
            address = optarg;
        else if (ch == 'k')
            kind = optarg;
        else if (ch == 'x')
            exclude = true;
        else
            return usage_error("register ", "register: unknown option");
    }
    if (optind == argc)
        return usage_error("register ", "register: at least one PATH is required");
    if (address && argc - optind != 1)
        return usage_error("register ", "register: --address is only valid with one PATH");
    int rc = open_project(c);
    if (rc)
        return rc;
    cJSON *params = cJSON_CreateObject(), *paths = cJSON_AddArrayToObject(params, "paths");
    for (int i = optind; i < argc; i++) {
        char *rel = workspace_relative(packer_project_root(c->p), argv[i]);
        cJSON_AddItemToArray(paths, cJSON_CreateString(rel ? rel : argv[i]));
        pk_free(rel);
    }
    if (address)
        json_add_str(params, "address", address);
    if (kind)
        json_add_str(params, "kind", kind);
    if (exclude)
        cJSON_AddTrueToObject(params, "exclude");
    return call(c, "register_asset", params, NULL);
}

static int one_asset(cli *c, int argc, char **argv, const char *service, printer print)
{
    static const struct option opts[] = {{0, 0, 0, 0}};
    if (getopt_long(argc, argv, "", opts, NULL) != -1)
        return usage_error(argv[0], "%s: unknown option", argv[0]);
    if (argc - optind != 1)
        return usage_error(argv[0], "%s: exactly one ASSET (id or address) is required", argv[0]);
    int rc = open_project(c);
    if (rc)
        return rc;
    cJSON *params = cJSON_CreateObject();
    json_add_str(params, "asset", argv[optind]);
    return call(c, service, params, print);
}

static int cmd_include(cli *c, int argc, char **argv)
{
    return one_asset(c, argc, argv, "include_asset_in_build", NULL);
}

static int cmd_exclude(cli *c, int argc, char **argv)
{
    return one_asset(c, argc, argv, "exclude_asset_from_build", NULL);
}

static int cmd_show(cli *c, int argc, char **argv)
{
    return one_asset(c, argc, argv, "get_asset_details", cli_print_details);
}

static int cmd_remove(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"delete-files", no_argument, 0, 'd'}, {"yes", no_argument, 0, 'y'}, {0, 0, 0, 0}};
    bool del = false, yes = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "y", opts, NULL)) != -1) {
        if (ch == 'd')
            del = true;
        else if (ch == 'y')
            yes = true;
        else
            return usage_error("remove ", "remove: unknown option");
    }
    if (argc - optind != 1)
        return usage_error("remove ", "remove: exactly one ASSET is required");
    if (yes && !del)
        return usage_error("remove ", "remove: --yes only confirms --delete-files");
    int rc = open_project(c);
    if (rc)
        return rc;
    cJSON *params = cJSON_CreateObject();
    json_add_str(params, "asset", argv[optind]);
    if (del)
        cJSON_AddTrueToObject(params, "delete_files");
    if (yes)
        cJSON_AddTrueToObject(params, "consent");
    return call(c, "remove_asset", params, NULL);
}

static int cmd_list(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"included", no_argument, 0, 'i'}, {"excluded", no_argument, 0, 'e'}, {0, 0, 0, 0}};
    const char *filter = "all";
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'i' || ch == 'e') {
            if (strcmp(filter, "all") != 0)
                return usage_error("list ", "list: --included and --excluded exclude each other");
            filter = ch == 'i' ? "included" : "excluded";
        } else {
            return usage_error("list ", "list: unknown option");
        }
    }
    if (optind != argc)
        return usage_error("list ", "list: unexpected argument '%s'", argv[optind]);
    int rc = open_project(c);
    if (rc)
        return rc;
    cJSON *params = cJSON_CreateObject();
    json_add_str(params, "filter", filter);
    return call(c, "list_assets", params, cli_print_list);
}

static int no_args(cli *c, int argc, char **argv, const char *service, printer print)
{
    static const struct option opts[] = {{0, 0, 0, 0}};
    if (getopt_long(argc, argv, "", opts, NULL) != -1 || optind != argc)
        return usage_error(argv[0], "%s takes no arguments", argv[0]);
    int rc = open_project(c);
    return rc ? rc : call(c, service, NULL, print);
}

static int cmd_build(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                         {"clean", no_argument, 0, 'c'},
                                         {"jobs", required_argument, 0, 'j'},
                                         {"verify", no_argument, 0, 'v'},
                                         {0, 0, 0, 0}};
    const char *out = NULL;
    long jobs = 0;
    bool clean = false, verify = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "j:", opts, NULL)) != -1) {
        char *end = NULL;
        if (ch == 'o')
            out = optarg;
        else if (ch == 'c')
            clean = true;
        else if (ch == 'v')
            verify = true;
        else if (ch == 'j' && (jobs = strtol(optarg, &end, 10)) >= 1 && jobs <= 64 && !*end)
            continue;
        else
            return usage_error("build ", "build: bad option (--jobs takes 1..64)");
    }
    if (optind != argc)
        return usage_error("build ", "build: unexpected argument '%s'", argv[optind]);
    char *abs_out = NULL;
    if (out) { /* relative to where the user stands, like every PATH */
        char *cwd = getcwd(NULL, 0);
        abs_out = out[0] == '/' ? pk_strdup(out) : pk_asprintf("%s/%s", cwd ? cwd : ".", out);
        free(cwd);
    }
    int rc = open_project(c);
    if (rc) {
        pk_free(abs_out);
        return rc;
    }
    cJSON *params = cJSON_CreateObject();
    if (abs_out)
        json_add_str(params, "out", abs_out);
    if (jobs)
        cJSON_AddNumberToObject(params, "jobs", (double)jobs);
    if (clean)
        cJSON_AddTrueToObject(params, "clean");
    if (verify)
        cJSON_AddTrueToObject(params, "verify");
    if (!c->json) /* only the summary is printed: spare the per-asset list */
        cJSON_AddFalseToObject(params, "details");
    pk_free(abs_out);
    return call(c, "build", params, NULL);
}

/* Read a rule file given on the command line for `doctor --rule FILE`. */
static int add_rule_file(cJSON *params, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    int rc = io_read_file(path, &text, &len);
    if (rc == 0 && strlen(text) != len)
        rc = pk_err(PACKER_EPARSE, "%s: binary rule files are not allowed", path);
    if (rc == 0) {
        json_add_str(params, "rule_source", text);
        json_add_str(params, "rule_name", path);
    }
    pk_free(text);
    return rc;
}

static int doctor_exit(const cJSON *root)
{
    int code = exit_code_of(root);
    const cJSON *counts = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "data"), "counts");
    if (code == EXIT_DONE &&
        cJSON_GetNumberValue(cJSON_GetObjectItem(counts, "structural_errors")) > 0)
        code = EXIT_REFUSED;
    return code;
}

static int cmd_doctor(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{"workspace", no_argument, 0, 'w'},
                                         {"fix", no_argument, 0, 'f'},
                                         {"apply", no_argument, 0, 'a'},
                                         {"yes", no_argument, 0, 'y'},
                                         {"plan", required_argument, 0, 'p'},
                                         {"rule", required_argument, 0, 'r'},
                                         {0, 0, 0, 0}};
    bool workspace = false, fix = false, apply = false, yes = false;
    const char *plan = NULL, *rule = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "y", opts, NULL)) != -1) {
        if (ch == 'w')
            workspace = true;
        else if (ch == 'f')
            fix = true;
        else if (ch == 'a')
            apply = true;
        else if (ch == 'y')
            yes = true;
        else if (ch == 'p')
            plan = optarg;
        else if (ch == 'r')
            rule = optarg;
        else
            return usage_error("doctor ", "doctor: unknown option");
    }
    if (optind != argc)
        return usage_error("doctor ", "doctor: unexpected argument '%s'", argv[optind]);
    if ((apply || plan) && !fix)
        return usage_error("doctor ", "doctor: --apply and --plan go with --fix");
    if (yes && !apply)
        return usage_error("doctor ", "doctor: --yes only confirms --fix --apply");
    cJSON *params = cJSON_CreateObject();
    if (rule && add_rule_file(params, rule) != 0) {
        cJSON_Delete(params);
        return fail_early(c, PACKER_EPARSE);
    }
    int rc = open_project(c);
    if (rc) {
        cJSON_Delete(params);
        return rc;
    }
    if (workspace)
        cJSON_AddTrueToObject(params, "workspace");
    if (fix)
        cJSON_AddTrueToObject(params, "fix");
    if (apply)
        cJSON_AddTrueToObject(params, "apply");
    if (yes)
        cJSON_AddTrueToObject(params, "consent");
    if (plan)
        json_add_str(params, "plan_id", plan);
    const rendering how = {cli_print_doctor, true, doctor_exit};
    return call_as(c, "doctor", params, &how);
}

static int cmd_quarantine(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"yes", no_argument, 0, 'y'}, {"reason", required_argument, 0, 'r'}, {0, 0, 0, 0}};
    bool yes = false;
    const char *reason = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "y", opts, NULL)) != -1) {
        if (ch == 'y')
            yes = true;
        else if (ch == 'r')
            reason = optarg;
        else
            return usage_error("quarantine ", "quarantine: unknown option");
    }
    if (optind == argc)
        return usage_error("quarantine ", "quarantine: PATH... or 'list' is required");
    bool list = strcmp(argv[optind], "list") == 0;
    if (list && (argc - optind != 1 || yes || reason))
        return usage_error("quarantine ", "quarantine list takes no arguments");
    int rc = open_project(c);
    if (rc)
        return rc;
    if (list)
        return call(c, "quarantine_list", NULL, cli_print_quarantine);
    cJSON *params = cJSON_CreateObject(), *paths = cJSON_AddArrayToObject(params, "paths");
    for (int i = optind; i < argc; i++) {
        char *rel = workspace_relative(packer_project_root(c->p), argv[i]);
        cJSON_AddItemToArray(paths, cJSON_CreateString(rel ? rel : argv[i]));
        pk_free(rel);
    }
    if (yes)
        cJSON_AddTrueToObject(params, "consent");
    if (reason)
        json_add_str(params, "reason", reason);
    return call(c, "quarantine", params, NULL);
}

static int cmd_restore(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {{0, 0, 0, 0}};
    if (getopt_long(argc, argv, "", opts, NULL) != -1)
        return usage_error("restore ", "restore: unknown option");
    if (argc - optind != 1)
        return usage_error("restore ", "restore: exactly one quarantine ID is required");
    int rc = open_project(c);
    if (rc)
        return rc;
    cJSON *params = cJSON_CreateObject();
    json_add_str(params, "id", argv[optind]);
    return call(c, "restore", params, NULL);
}

static int cmd_status(cli *c, int argc, char **argv)
{
    return no_args(c, argc, argv, "status", cli_print_status);
}

static int cmd_repl(cli *c, int argc, char **argv)
{
    if (argc > 1)
        return usage_error("repl ", "repl: unexpected argument '%s'", argv[1]);
    char *root = NULL;
    int rc = packer_find_workspace(".", &root);
    if (rc)
        return fail_early(c, rc);
    rc = cli_repl(root);
    packer_free(root);
    return rc == 0 ? EXIT_DONE : EXIT_FAILURE_IO;
}

static int cmd_pack(cli *c, int argc, char **argv)
{
    return cli_pack(argc, argv, c->json);
}

static int cmd_serve(cli *c, int argc, char **argv)
{
    (void)c; /* serve makes its own bus and writes only the protocol to stdout */
    return cli_serve(argc, argv);
}

static int cmd_watch(cli *c, int argc, char **argv)
{
    return cli_watch(argc, argv, c->json, c->bus);
}

static int cmd_help(cli *c, int argc, char **argv);

static const command COMMANDS[] = {
    {"init", "init [--name NAME]",
     "Create packer.json and .packer/ in the current directory "
     "(or -C DIR).",
     cmd_init},
    {"register", "register PATH... [--address ADDR] [--kind KIND] [--exclude]",
     "Register asset roots (directories holding asset.json), all in one commit.\n"
     "  --address ADDR  address of the asset (only with one PATH)\n"
     "  --kind KIND     write a minimal asset.json of this kind where none exists\n"
     "  --exclude       register without including in the build",
     cmd_register},
    {"include", "include ASSET", "Include an asset (id or address) in the build.", cmd_include},
    {"exclude", "exclude ASSET", "Exclude an asset from the build; it stays registered.",
     cmd_exclude},
    {"show", "show ASSET",
     "Show an asset: registry entry, manifest, inputs with sizes and "
     "hashes.",
     cmd_show},
    {"remove", "remove ASSET [--delete-files [--yes]]",
     "Unregister an asset; its files stay on disk.\n"
     "  --delete-files  also delete its manifest and inputs: previews without --yes\n"
     "  --yes           consent to the deletion",
     cmd_remove},
    {"list", "list [--included | --excluded]", "List registered assets.", cmd_list},
    {"build", "build [--out DIR] [--clean] [--jobs N] [--verify]",
     "Build the included assets into DIR/assets.pack and DIR/addressables.json.\n"
     "  --out DIR   output directory, packer-owned (default: build/ in the workspace)\n"
     "  --clean     ignore the cache and the stat index; rebuild everything\n"
     "  --jobs N    worker threads for hashing and recipes (default: CPUs)\n"
     "  --verify    also rebuild clean into a temporary directory and compare",
     cmd_build},
    {"doctor", "doctor [--workspace] [--fix [--apply [--yes]] [--plan ID]] [--rule FILE]",
     "Check the registered world (structural errors block the build; exit 1).\n"
     "  --workspace  also scan the whole workspace for hygiene findings\n"
     "  --fix        preview a plan of fixes (nothing changes)\n"
     "  --apply      apply the plan's safe fixes\n"
     "  --yes        consent to destructive and relocational fixes too\n"
     "  --plan ID    apply only if the plan is still the one previewed as ID\n"
     "  --rule FILE  run only this rule file",
     cmd_doctor},
    {"quarantine", "quarantine PATH... [--yes] [--reason TEXT] | quarantine list",
     "Move files or asset roots into .packer/quarantine/ (reversible), or list\n"
     "the quarantine. Previews without --yes. A quarantined asset root is\n"
     "excluded from the build.\n"
     "  --yes          consent to the move\n"
     "  --reason TEXT  why, kept in the record",
     cmd_quarantine},
    {"restore", "restore ID",
     "Put quarantined content back where it was, byte for byte; refuses when\n"
     "something now occupies that path.",
     cmd_restore},
    {"status", "status", "Show the workspace, the asset counts and the runtime state.", cmd_status},
    {"pack", cli_pack_usage, cli_pack_help, cmd_pack},
    {"serve", cli_serve_usage, cli_serve_help, cmd_serve},
    {"watch", cli_watch_usage, cli_watch_help, cmd_watch},
    {"repl", "repl", "A Lua 5.4 prompt with the open project bound to `project`.", cmd_repl},
    {"help", "help [COMMAND]", "Show help for packer or for one command.", cmd_help},
};

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (strcmp(COMMANDS[i].name, name) == 0)
            return &COMMANDS[i];
    return NULL;
}

static void main_help(FILE *fp)
{
    fprintf(fp,
            "usage: packer [-C DIR] [--json] [--events FILE] COMMAND [ARGS]\n\n"
            "packer %s: a filesystem-first asset packer.\n\ncommands:\n",
            PACKER_VERSION);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(fp, "  %-60s\n", COMMANDS[i].usage);
    fprintf(fp, "\noptions:\n"
                "  -C DIR          run as if started in DIR\n"
                "  --json          print the structured response as JSON on stdout\n"
                "  --events FILE   append every event envelope to FILE, one JSON line each\n"
                "  -h, --help      show help (also: packer COMMAND --help)\n"
                "  --version       print the version\n\n"
                "ASSET is an asset id or an address. Exit codes: 0 done, 1 refused or blocked,\n"
                "2 usage error, 3 workspace or I/O failure.\n");
}

static int cmd_help(cli *c, int argc, char **argv)
{
    (void)c;
    const command *cmd = argc > 1 ? find_command(argv[1]) : NULL;
    if (argc > 1 && !cmd)
        return usage_error(NULL, "help: no command '%s'", argv[1]);
    if (cmd)
        printf("usage: packer %s\n\n%s\n", cmd->usage, cmd->help);
    else
        main_help(stdout);
    return EXIT_DONE;
}

/* ---- main ---------------------------------------------------------------- */

/* `packer build --json` reads as naturally as `packer --json build`: take
 * --json and --events FILE from the command's own arguments too (up to a
 * "--"), removing them so the command's parser never sees them. False when
 * --events lacks its FILE. */
static bool take_global_opts(cli *c, int *argc, char **argv)
{
    int out = 1, i = 1;
    for (; i < *argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            c->json = true;
        } else if (strncmp(argv[i], "--events=", 9) == 0) {
            c->events = argv[i] + 9;
        } else if (strcmp(argv[i], "--events") == 0) {
            if (++i == *argc)
                return false;
            c->events = argv[i];
        } else {
            argv[out++] = argv[i];
        }
    }
    while (i < *argc)
        argv[out++] = argv[i++];
    argv[out] = NULL;
    *argc = out;
    return true;
}

int main(int argc, char **argv)
{
    cli c = {0};
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"events", required_argument, 0, 'e'},
                                         {"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {0, 0, 0, 0}};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+C:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'C':
            c.dir = optarg;
            break;
        case 'j':
            c.json = true;
            break;
        case 'e':
            c.events = optarg;
            break;
        case 'h':
            main_help(stdout);
            return EXIT_DONE;
        case 'V':
            printf("packer %s\n", PACKER_VERSION);
            return EXIT_DONE;
        default:
            return usage_error(NULL, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind == argc) {
        main_help(stderr);
        return EXIT_USAGE;
    }
    const command *cmd = find_command(argv[optind]);
    if (!cmd)
        return usage_error(NULL, "'%s' is not a packer command", argv[optind]);
    int cargc = argc - optind;
    char **cargv = argv + optind;
    if (!take_global_opts(&c, &cargc, cargv))
        return usage_error(NULL, "%s: --events needs a FILE", cmd->name);
    if (wants_help(cargc, cargv)) {
        printf("usage: packer %s\n\n%s\n", cmd->usage, cmd->help);
        return EXIT_DONE;
    }
    if (c.dir && chdir(c.dir) != 0) {
        fprintf(stderr, "packer: -C %s: %s\n", c.dir, strerror(errno));
        return EXIT_FAILURE_IO;
    }
    if (c.events && !(c.events_fp = fopen(c.events, "a"))) {
        fprintf(stderr, "packer: --events %s: %s\n", c.events, strerror(errno));
        return EXIT_FAILURE_IO;
    }
    c.progress = !c.json && isatty(STDERR_FILENO);
    /* no one to show events to: no bus, and the runtime composes none */
    if ((c.events_fp || c.progress) &&
        (packer_bus_new(&c.bus) != 0 || packer_bus_subscribe(c.bus, on_event, &c, NULL) != 0)) {
        fprintf(stderr, "packer: %s\n", packer_last_error());
        return EXIT_FAILURE_IO;
    }
    optind = 0; /* reinitialize getopt: commands parse their own argv */
    int code = cmd->run(&c, cargc, cargv);
    packer_project_close(c.p);
    packer_bus_free(c.bus);
    if (c.events_fp)
        fclose(c.events_fp);
    return code;
}
