/*
 * host.c - a minimal C host of libpacker, written the way Studio embeds it.
 *
 * It shows the bootstrap rule of packer.h: the host owns the event bus,
 * hands it to every project it opens, and frees it after closing them. Then
 * two threads call services on the same project at once: a writer
 * registers two asset roots and toggles one of them out of and back into
 * the build (each a durable registry commit on the project's write lane),
 * while a reader lists assets and asks for details. Reads never wait for
 * the writer; they see one published snapshot or the next.
 *
 *   usage: host WORKSPACE_DIR
 *
 * The directory is created when missing and initialized when it is not a
 * workspace yet. The host writes its own asset roots host/alpha and
 * host/beta (asset.json + one input) when they do not exist, so it works
 * on an empty directory as well as on build/demo.
 *
 * Only packer.h is used. Threads: main, one writer, one reader, and the
 * bus dispatcher running on_event; stdout is shared under out_mu.
 */
#include <packer.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define TOGGLES 5

/* Service parameters are JSON objects (packer.h, packer_call). */
static const char REGISTER[] = "{\"paths\": [\"host/alpha\", \"host/beta\"]}";
static const char ALPHA[] = "{\"asset\": \"host/alpha\"}";
static const char BETA[] = "{\"asset\": \"host/beta\"}";

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static packer_project *project;
static atomic_bool stop_reading;
static atomic_int failures; /* calls that errored or did not answer ok */

/* printf for every thread: one line at a time, never interleaved. */
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&out_mu);
    vprintf(fmt, ap);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    va_end(ap);
}

/* Bus subscriber: runs on the dispatcher thread, the event is borrowed. */
static void on_event(const packer_event *ev, void *userdata)
{
    (void)userdata;
    char *line = packer_event_json(ev);
    if (line)
        say("event  %s\n", line);
    packer_free(line);
}

/* Call a service, print its one-line outcome, free the response. */
static void call(const char *who, const char *service, const char *params)
{
    packer_response *r = NULL;
    int rc = packer_call(project, service, params, &r);
    if (rc)
        say("%-6s %s: error %s: %s\n", who, service, packer_strerror(rc), packer_last_error());
    else
        say("%-6s %s: %s: %s\n", who, service, packer_status_name(packer_response_status(r)),
            packer_response_summary(r));
    if (rc || packer_response_status(r) != PACKER_STATUS_OK)
        atomic_fetch_add(&failures, 1);
    packer_response_free(r);
}

/* ---- the workspace ------------------------------------------------------ */

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wx"); /* never overwrite the user's files */
    if (!fp)
        return errno == EEXIST ? 0 : -1;
    fputs(text, fp);
    return fclose(fp);
}

/* An asset root: a directory with asset.json and the input it names. */
static int seed_asset(const char *ws, const char *name)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/host", ws);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/host/%s", ws, name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -1;
    if (write_file(dir, "data.txt", name) != 0)
        return -1;
    return write_file(dir, "asset.json", "{\"kind\": \"raw\", \"inputs\": [\"data.txt\"]}\n");
}

/* Open the workspace at dir with the host's bus, initializing it first
 * when dir has no packer.json. */
static int bootstrap(const char *dir, packer_bus *bus)
{
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/packer.json", dir);
    if (stat(path, &sb) != 0) {
        packer_response *r = NULL;
        int rc = packer_init_workspace(dir, NULL, bus, &r);
        if (rc == 0)
            say("init   %s\n", packer_response_summary(r));
        else
            say("init   error %s: %s\n", packer_strerror(rc), packer_last_error());
        packer_response_free(r);
        if (rc)
            return rc;
    }
    int rc = packer_project_open(dir, bus, &project);
    if (rc)
        say("open   error %s: %s\n", packer_strerror(rc), packer_last_error());
    return rc;
}

/* ---- the two threads ---------------------------------------------------- */

static void *writer(void *arg)
{
    (void)arg;
    call("writer", "register_asset", REGISTER);
    for (int i = 0; i < TOGGLES; i++) {
        call("writer", "exclude_asset_from_build", ALPHA);
        call("writer", "include_asset_in_build", ALPHA);
    }
    return NULL;
}

/* Reads in a loop until the writer is done; responses are not printed. */
static void *reader(void *arg)
{
    long *calls = arg;
    packer_response *r = NULL;
    while (!atomic_load(&stop_reading)) {
        if (packer_call(project, "list_assets", NULL, &r) == 0)
            (*calls)++;
        packer_response_free(r);
        if (packer_call(project, "get_asset_details", BETA, &r) == 0)
            (*calls)++;
        packer_response_free(r);
    }
    call("reader", "list_assets", NULL);
    call("reader", "get_asset_details", BETA);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: host WORKSPACE_DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || seed_asset(dir, "alpha") != 0 ||
        seed_asset(dir, "beta") != 0) {
        fprintf(stderr, "host: cannot prepare %s: %s\n", dir, strerror(errno));
        return 1;
    }
    packer_bus *bus = NULL;
    if (packer_bus_new(&bus) != 0 || packer_bus_subscribe(bus, on_event, NULL, NULL) != 0) {
        fprintf(stderr, "host: %s\n", packer_last_error());
        packer_bus_free(bus);
        return 1;
    }
    if (bootstrap(dir, bus) != 0) {
        packer_bus_free(bus);
        return 1;
    }
    say("host   opened %s (project %s)\n", packer_project_root(project),
        packer_project_id(project));

    pthread_t w, rd;
    long reads = 0;
    if (pthread_create(&rd, NULL, reader, &reads) == 0) {
        if (pthread_create(&w, NULL, writer, NULL) == 0)
            pthread_join(w, NULL);
        atomic_store(&stop_reading, 1);
        pthread_join(rd, NULL);
    }

    packer_bus_flush(bus); /* every event of the run is printed above */
    say("host   writer: 1 register + %d toggles; reader: %ld reads meanwhile; runtime %s\n",
        2 * TOGGLES, reads, packer_state_name(packer_project_state(project)));
    packer_project_close(project);
    packer_bus_free(bus);
    return atomic_load(&failures) ? 1 : 0;
}
