/*
 * bench_registry.c - registry benchmarks through the public C API (a
 * benchmark, not a test: it asserts nothing about timing).
 *
 *   bench_registry WORKSPACE [--toggles N] [--seconds S] [--readers R]
 *
 * WORKSPACE must already hold registered assets (scripts/bench.sh makes
 * them). Measured, like a host would see it (packer_call, a host bus with
 * one subscriber):
 *   1. mutation latency: N include/exclude toggles of one asset, each a
 *      full durable commit on the lane; median, p95, mean, max;
 *   2. read throughput: R reader threads calling list_assets, then
 *      get_asset_details on a sample of assets, for S seconds each, while
 *      one writer thread toggles an asset continuously.
 * Output is one key=value line per figure, for scripts/bench.sh to
 * tabulate. The toggled asset ends in the state it started in.
 *
 * Threads: main, the writer and the readers of phase 2, packer's lane and
 * bus dispatcher. Shared counters are atomics.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "packer.h"

#define SAMPLE 256
#define MAX_READERS 64

typedef struct {
    packer_project *p;
    char toggle_id[64];
    bool toggle_included; /* current state of the toggled asset */
    bool start_included;  /* its state before the benchmark */
    char *sample[SAMPLE]; /* asset ids for get_asset_details */
    size_t nsample, nassets;
    atomic_bool stop;
    atomic_long commits, reads;
} bench;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_registry: %s: %s: %s\n", what, packer_strerror(rc), packer_last_error());
    exit(1);
}

static void on_event(const packer_event *ev, void *ud)
{
    (void)ev;
    atomic_fetch_add((atomic_long *)ud, 1);
}

/* One service call that must answer ok; returns nothing, dies otherwise. */
static void call_ok(bench *b, const char *service, const char *params)
{
    packer_response *r = NULL;
    int rc = packer_call(b->p, service, params, &r);
    if (rc)
        die(service, rc);
    if (packer_response_status(r) != PACKER_STATUS_OK) {
        fprintf(stderr, "bench_registry: %s: %s\n", service, packer_response_summary(r));
        exit(1);
    }
    packer_response_free(r);
}

/* ---- setup: pick the assets from one list_assets ----------------------- */

/* The asset objects of a list_assets response, in its order (by root). */
static const cJSON **asset_items(const cJSON *root, size_t *n)
{
    const cJSON *assets = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "data"), "assets"), *a;
    const cJSON **v = malloc(((size_t)cJSON_GetArraySize(assets) + 1) * sizeof *v);
    *n = 0;
    cJSON_ArrayForEach(a, assets) v[(*n)++] = a;
    return v;
}

static void pick_assets(bench *b)
{
    packer_response *r = NULL;
    int rc = packer_call(b->p, "list_assets", NULL, &r);
    if (rc)
        die("list_assets", rc);
    cJSON *root = cJSON_Parse(packer_response_json(r, 0));
    size_t n;
    const cJSON **v = asset_items(root, &n);
    if (n == 0) {
        fprintf(stderr, "bench_registry: no registered assets\n");
        exit(1);
    }
    snprintf(b->toggle_id, sizeof b->toggle_id, "%s",
             cJSON_GetStringValue(cJSON_GetObjectItem(v[n / 2], "asset_id")));
    b->toggle_included = cJSON_IsTrue(cJSON_GetObjectItem(v[n / 2], "included"));
    b->start_included = b->toggle_included;
    uint64_t x = 12345; /* the sample is deterministic: same workspace, same ids */
    for (b->nsample = 0; b->nsample < SAMPLE && b->nsample < n; b->nsample++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        const cJSON *id = cJSON_GetObjectItem(v[(x >> 33) % n], "asset_id");
        b->sample[b->nsample] = strdup(cJSON_GetStringValue(id));
    }
    b->nassets = n;
    free(v);
    cJSON_Delete(root);
    packer_response_free(r);
}

/* Flip the toggled asset: one durable registry commit. */
static void toggle(bench *b)
{
    char params[128];
    snprintf(params, sizeof params, "{\"asset\": \"%s\"}", b->toggle_id);
    call_ok(b, b->toggle_included ? "exclude_asset_from_build" : "include_asset_in_build", params);
    b->toggle_included = !b->toggle_included;
}

/* ---- 1. mutation latency ---------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_toggles(bench *b, int n)
{
    double *ms = malloc((size_t)n * sizeof *ms), sum = 0;
    for (int i = 0; i < 10; i++) /* warm up: caches, first-write allocations */
        toggle(b);
    for (int i = 0; i < n; i++) {
        double t0 = now_s();
        toggle(b);
        ms[i] = (now_s() - t0) * 1e3;
        sum += ms[i];
    }
    if (b->toggle_included != b->start_included) /* odd n: put the asset back */
        toggle(b);
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    printf("toggles=%d\n", n);
    printf("toggle_median_ms=%.3f\n", ms[n / 2]);
    printf("toggle_p95_ms=%.3f\n", ms[(size_t)(0.95 * (n - 1))]);
    printf("toggle_mean_ms=%.3f\n", sum / n);
    printf("toggle_max_ms=%.3f\n", ms[n - 1]);
    free(ms);
}

/* ---- 2. reads while the lane commits ---------------------------------- */

static void *writer_main(void *arg)
{
    bench *b = arg;
    while (!atomic_load(&b->stop)) {
        toggle(b);
        atomic_fetch_add(&b->commits, 1);
    }
    if (b->toggle_included != b->start_included)
        toggle(b);
    return NULL;
}

typedef struct {
    bench *b;
    const char *service;
    unsigned seed;
} reader_arg;

static void *reader_main(void *arg)
{
    reader_arg *ra = arg;
    bench *b = ra->b;
    char params[128];
    for (unsigned i = ra->seed; !atomic_load(&b->stop); i++) {
        const char *p = NULL;
        if (strcmp(ra->service, "get_asset_details") == 0) {
            snprintf(params, sizeof params, "{\"asset\": \"%s\"}", b->sample[i % b->nsample]);
            p = params;
        }
        call_ok(b, ra->service, p);
        atomic_fetch_add(&b->reads, 1);
    }
    return NULL;
}

/* R readers of one service for `seconds`, with the writer running. */
static void bench_reads(bench *b, const char *service, const char *key, int readers, double seconds)
{
    pthread_t w, rt[MAX_READERS];
    reader_arg ra[MAX_READERS];
    atomic_store(&b->stop, false);
    atomic_store(&b->commits, 0);
    atomic_store(&b->reads, 0);
    pthread_create(&w, NULL, writer_main, b);
    double t0 = now_s();
    for (int i = 0; i < readers; i++) {
        ra[i] = (reader_arg){b, service, (unsigned)i * 97u};
        pthread_create(&rt[i], NULL, reader_main, &ra[i]);
    }
    struct timespec d = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&d, NULL);
    atomic_store(&b->stop, true);
    for (int i = 0; i < readers; i++)
        pthread_join(rt[i], NULL);
    double dt = now_s() - t0;
    long reads = atomic_load(&b->reads), commits = atomic_load(&b->commits);
    pthread_join(w, NULL);
    printf("%s_calls_per_s=%.1f\n", key, (double)reads / dt);
    printf("%s_mean_ms=%.3f\n", key, reads ? dt * 1e3 * readers / (double)reads : 0.0);
    printf("%s_writer_commits_per_s=%.1f\n", key, (double)commits / dt);
}

/* ---- main ------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_registry WORKSPACE [--toggles N] [--seconds S] "
                    "[--readers R]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int toggles = 200, readers = 2;
    double seconds = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--toggles") == 0 && i + 1 < argc)
            toggles = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--readers") == 0 && i + 1 < argc)
            readers = atoi(argv[++i]);
        else if (argv[i][0] == '-' || dir)
            usage();
        else
            dir = argv[i];
    }
    if (!dir || toggles < 1 || readers < 1 || readers > MAX_READERS || seconds <= 0)
        usage();

    static bench b;
    atomic_long events = 0;
    packer_bus *bus = NULL;
    int rc = packer_bus_new(&bus);
    if (rc == 0)
        rc = packer_bus_subscribe(bus, on_event, &events, NULL);
    if (rc == 0)
        rc = packer_project_open(dir, bus, &b.p);
    if (rc)
        die(dir, rc);
    pick_assets(&b);
    printf("assets=%zu\n", b.nassets);
    printf("readers=%d\n", readers);
    printf("seconds=%.1f\n", seconds);
    fflush(stdout);
    bench_toggles(&b, toggles);
    bench_reads(&b, "list_assets", "list", readers, seconds);
    bench_reads(&b, "get_asset_details", "details", readers, seconds);
    packer_project_close(b.p);
    packer_bus_free(bus);
    printf("events=%ld\n", atomic_load(&events));
    for (size_t i = 0; i < b.nsample; i++)
        free(b.sample[i]);
    return 0;
}
