/*
 * cli_watch.c - `packer watch [--build] [--json]`: keep the project open
 * with the observer on and print what happens to it as it happens.
 *
 * One line per state transition, change set, discovery and build outcome
 * (--json: every event envelope as one JSON line, nothing else on
 * stdout). With --build an incremental build runs after each coalesced
 * change set, through packer_call("build") like any other host, so it is
 * serialized in the write lane. Watch itself never deletes, moves,
 * quarantines or applies a fix: the spec's "watch does not authorize
 * silent dangerous mutation".
 *
 * SIGINT and SIGTERM end it cleanly: whichever thread the signal lands on
 * (the CLI may have started a bus thread before this command ran), the
 * handler only writes a byte to a pipe; the main thread, waiting in poll()
 * on it, then stops the observer, closes the project (releasing the
 * cross-process lock if a build held it) and exits 0.
 *
 * Threads: main (signals, builds), the bus dispatcher (printing), any
 * thread for the signal handler (async-signal-safe: write(2) only).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "internal.h"

const char cli_watch_usage[] = "watch [--build] [--json]";
const char cli_watch_help[] =
    "Keep the project open and print state transitions and changes as they\n"
    "happen (stale, diverged, reconciling, ...). Never deletes, moves or fixes\n"
    "anything. Ctrl-C (or SIGTERM) stops it; exit 0.\n"
    "  --build  run an incremental build after each coalesced change set\n"
    "  --json   print every event envelope as one JSON line on stdout\n"
    "(the global --events FILE appends every envelope to FILE as well)";

typedef struct {
    bool json;
    pthread_mutex_t mu;
    bool build_wanted; /* an asset_changed arrived since the last build */
} watcher;

static const char *affected_count(const cJSON *ev, char *buf, size_t cap)
{
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(ev, "affected_assets"));
    if (n > 0)
        snprintf(buf, cap, " (%d asset%s)", n, n == 1 ? "" : "s");
    else
        buf[0] = '\0';
    return buf;
}

static void print_paths(const cJSON *ev)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(ev, "paths")) printf("    %s\n", p->valuestring);
}

static void human(const cJSON *ev, packer_event_kind k)
{
    char n[48];
    const char *summary = json_get_str(ev, "summary");
    switch (k) {
    case PACKER_EV_RUNTIME_STATE_CHANGED:
        printf("state: %s -> %s%s\n", json_get_str(ev, "previous_state"),
               json_get_str(ev, "runtime_state"), affected_count(ev, n, sizeof n));
        if (json_get_str(ev, "message"))
            printf("    %s\n", json_get_str(ev, "message"));
        break;
    case PACKER_EV_ASSET_CHANGED:
    case PACKER_EV_ASSET_DISCOVERED:
        printf("%s: %s\n", k == PACKER_EV_ASSET_CHANGED ? "changed" : "discovered", summary);
        print_paths(ev);
        break;
    case PACKER_EV_BUILD_FINISHED:
    case PACKER_EV_ACTION_FAILED:
        printf("%s: %s\n", packer_event_kind_name(k), summary);
        break;
    default:
        break; /* progress, cache and per-action events: --json has them */
    }
}

static void on_event(const packer_event *ev, void *ud)
{
    watcher *w = ud;
    packer_event_kind k = packer_event_get_kind(ev);
    char *line = packer_event_json(ev);
    if (!line)
        return;
    cJSON *j = w->json ? NULL : cJSON_Parse(line);
    if (w->json)
        printf("%s\n", line);
    else if (j)
        human(j, k);
    fflush(stdout);
    cJSON_Delete(j);
    packer_free(line);
    /* a change set seen by the observer (not the build's own events) */
    const char *op = packer_event_operation_id(ev);
    if (k == PACKER_EV_ASSET_CHANGED && op && strstr(op, "-obs")) {
        pthread_mutex_lock(&w->mu);
        w->build_wanted = true;
        pthread_mutex_unlock(&w->mu);
    }
}

static void run_build(watcher *w, packer_project *p)
{
    packer_response *r = NULL;
    if (packer_call(p, "build", NULL, &r) != 0) {
        fprintf(stderr, "packer: watch: build: %s\n", packer_last_error());
        return;
    }
    if (!w->json) {
        printf("build: %s: %s\n", packer_status_name(packer_response_status(r)),
               packer_response_summary(r));
        fflush(stdout);
    }
    packer_response_free(r);
}

static int stop_pipe[2] = {-1, -1};

static void on_stop_signal(int sig)
{
    int saved = errno;
    char c = (char)sig;
    if (write(stop_pipe[1], &c, 1) < 0) {
        /* the pipe is full: a stop is already pending */
    }
    errno = saved;
}

static int catch_stop_signals(void)
{
    if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    return sigaction(SIGINT, &sa, NULL) == 0 && sigaction(SIGTERM, &sa, NULL) == 0 ? 0 : -1;
}

/* Wait for SIGINT/SIGTERM, building when a change set asks for it. */
static void watch_loop(watcher *w, packer_project *p, bool build)
{
    struct pollfd pfd = {stop_pipe[0], POLLIN, 0};
    for (;;) {
        if (poll(&pfd, 1, 200) > 0 && (pfd.revents & POLLIN))
            return;
        pthread_mutex_lock(&w->mu);
        bool go = build && w->build_wanted;
        w->build_wanted = false;
        pthread_mutex_unlock(&w->mu);
        if (go)
            run_build(w, p);
    }
}

int cli_watch(int argc, char **argv, int json, packer_bus *cli_bus)
{
    static const struct option opts[] = {
        {"build", no_argument, 0, 'b'}, {"json", no_argument, 0, 'j'}, {0, 0, 0, 0}};
    bool build = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (ch == 'b')
            build = true;
        else if (ch == 'j')
            json = 1;
        else {
            fprintf(stderr, "packer: watch: unknown option\nTry 'packer watch --help'.\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "packer: watch: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    /* (this also undoes a background shell's SIG_IGN for SIGINT) */
    if (catch_stop_signals() != 0) {
        perror("packer: watch: signals");
        return 3;
    }

    watcher w = {.json = json};
    pthread_mutex_init(&w.mu, NULL);
    packer_bus *bus = cli_bus; /* the CLI's, when --events gave it one: those get written too */
    packer_project *p = NULL;
    uint64_t sub = 0;
    int code = 0;
    if ((!bus && packer_bus_new(&bus) != 0) || packer_bus_subscribe(bus, on_event, &w, &sub) != 0 ||
        packer_project_open(".", bus, &p) != 0 || packer_project_observe(p, 1) != 0) {
        fprintf(stderr, "packer: %s\n", packer_last_error());
        code = 3;
    } else {
        fprintf(stderr, "watching %s (runtime %s)%s; Ctrl-C to stop\n", packer_project_root(p),
                packer_state_name(packer_project_state(p)), build ? ", building on change" : "");
        if (build)
            run_build(&w, p); /* start from a build that matches the workspace */
        watch_loop(&w, p, build);
        fprintf(stderr, "watch: stopped\n");
    }
    packer_project_close(p);
    if (bus != cli_bus)
        packer_bus_free(bus);
    else if (bus && sub)
        packer_bus_unsubscribe(bus, sub); /* the CLI frees it; w dies with this frame */
    pthread_mutex_destroy(&w.mu);
    return code;
}
