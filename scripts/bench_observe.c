/*
 * bench_observe.c - observation benchmarks through the public C API (a
 * benchmark, not a test: it asserts nothing about timing).
 *
 *   bench_observe WORKSPACE [--writes N] [--idle S] [--reconciles K]
 *                 [--packer BIN]
 *
 * WORKSPACE must already hold registered assets whose roots hold data.bin
 * (scripts/gen-workspace.lua, scripts/bench.sh). With the observer on:
 *   1. latency from a file write to its asset_changed event: N writes, one
 *      at a time, each to the data.bin of another asset, each timed from
 *      just before write(2) to the delivery of the asset_changed naming
 *      that asset to a bus subscriber; median, p99, max (the observer
 *      waits for OBS_QUIET of quiet before reporting: that is the floor);
 *   2. idle cost: process CPU time (getrusage, every thread) over S
 *      seconds at rest with the observer on;
 *   3. reconcile after another process's commit: K times `BIN exclude` /
 *      `BIN include` of one asset in a child process; timed from the
 *      child's exit to the runtime being healthy again (detection,
 *      debounce and reconcile), and the reconcile alone (reconciling ->
 *      healthy events).
 * Also the time packer_project_observe(p, 1) takes (the baseline walk and
 * the watches). Output: key=value lines for scripts/bench.sh.
 *
 * Threads: main, packer's lane, bus dispatcher and observer.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "packer.h"

extern char **environ;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char want[64]; /* asset id whose asset_changed is awaited */
    double got;    /* when it arrived, 0 until then */
    double reconciling, healthy;
} waiter;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool names(const cJSON *ev, const char *id)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(ev, "affected_assets"))
    {
        if (cJSON_IsString(a) && strcmp(a->valuestring, id) == 0)
            return true;
    }
    return false;
}

static void on_event(const packer_event *ev, void *ud)
{
    waiter *w = ud;
    double t = now_s();
    packer_event_kind k = packer_event_get_kind(ev);
    if (k != PACKER_EV_ASSET_CHANGED && k != PACKER_EV_RUNTIME_STATE_CHANGED)
        return;
    char *line = packer_event_json(ev);
    cJSON *j = line ? cJSON_Parse(line) : NULL;
    packer_free(line);
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(j, "runtime_state"));
    pthread_mutex_lock(&w->mu);
    if (k == PACKER_EV_ASSET_CHANGED && w->want[0] && names(j, w->want) && !w->got)
        w->got = t;
    if (st && strcmp(st, "reconciling") == 0)
        w->reconciling = t;
    if (st && (strcmp(st, "healthy") == 0 || strcmp(st, "stale") == 0))
        w->healthy = t; /* back in service (stale: edits of the latency phase) */
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    cJSON_Delete(j);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* Up to max registered assets: ids and roots (strdup'd). */
static size_t sample(packer_project *p, char **ids, char **roots, size_t max)
{
    packer_response *r = NULL;
    size_t n = 0;
    if (packer_list_assets(p, &r) != 0)
        return 0;
    cJSON *j = cJSON_Parse(packer_response_json(r, 0)), *a;
    cJSON *assets = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "assets");
    int total = cJSON_GetArraySize(assets), step = total / (int)max + 1, i = 0;
    cJSON_ArrayForEach(a, assets)
    {
        if (i++ % step || n == max)
            continue;
        ids[n] = strdup(cJSON_GetStringValue(cJSON_GetObjectItem(a, "asset_id")));
        roots[n] = strdup(cJSON_GetStringValue(cJSON_GetObjectItem(a, "root")));
        n++;
    }
    cJSON_Delete(j);
    packer_response_free(r);
    return n;
}

static void bench_latency(packer_project *p, waiter *w, const char *root, int writes)
{
    char **ids = calloc((size_t)writes, sizeof *ids),
         **roots = calloc((size_t)writes, sizeof *roots);
    size_t n = sample(p, ids, roots, (size_t)writes);
    double *lat = calloc(n ? n : 1, sizeof *lat);
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096], bytes[64];
        snprintf(path, sizeof path, "%s/%s/data.bin", root, roots[i]);
        snprintf(bytes, sizeof bytes, "edit %zu\n", i);
        pthread_mutex_lock(&w->mu);
        snprintf(w->want, sizeof w->want, "%s", ids[i]);
        w->got = 0;
        pthread_mutex_unlock(&w->mu);
        double t0 = now_s();
        int fd = open(path, O_WRONLY | O_TRUNC);
        if (fd < 0 || write(fd, bytes, strlen(bytes)) < 0) {
            perror(path);
            exit(1);
        }
        close(fd);
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 30;
        pthread_mutex_lock(&w->mu);
        while (!w->got && pthread_cond_timedwait(&w->cv, &w->mu, &dl) == 0) {
        }
        if (w->got)
            lat[got++] = (w->got - t0) * 1000;
        pthread_mutex_unlock(&w->mu);
        free(ids[i]);
        free(roots[i]);
    }
    qsort(lat, got, sizeof *lat, cmp_double);
    printf("write_to_event_count=%zu\n", got);
    if (got)
        printf("write_to_event_median_ms=%.1f\nwrite_to_event_p99_ms=%.1f\n"
               "write_to_event_max_ms=%.1f\n",
               pct(lat, got, 0.5), pct(lat, got, 0.99), lat[got - 1]);
    free(lat);
    free(ids);
    free(roots);
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void bench_idle(int secs)
{
    double c0 = cpu_s(), t0 = now_s();
    sleep((unsigned)secs);
    double cpu = cpu_s() - c0, wall = now_s() - t0;
    printf("idle_seconds=%.0f\nidle_cpu_ms=%.1f\nidle_cpu_percent=%.4f\n", wall, cpu * 1000,
           100 * cpu / wall);
}

static int run(const char *bin, const char *root, const char *cmd, const char *asset)
{
    char *argv[] = {(char *)bin, "-C", (char *)root, (char *)cmd, (char *)asset, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int st = -1;
    if (posix_spawn(&pid, bin, &fa, NULL, argv, environ) == 0)
        waitpid(pid, &st, 0);
    posix_spawn_file_actions_destroy(&fa);
    return st;
}

static void bench_reconcile(packer_project *p, waiter *w, const char *root, const char *bin, int k)
{
    char *id = NULL, *rt = NULL;
    if (!sample(p, &id, &rt, 1))
        return;
    double *total = calloc((size_t)k, sizeof *total), *alone = calloc((size_t)k, sizeof *alone);
    int done = 0;
    for (int i = 0; i < k; i++) {
        pthread_mutex_lock(&w->mu);
        w->reconciling = w->healthy = 0;
        pthread_mutex_unlock(&w->mu);
        if (run(bin, root, i % 2 ? "include" : "exclude", id) != 0)
            break;
        double t0 = now_s();
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 120;
        pthread_mutex_lock(&w->mu);
        while (!(w->reconciling && w->healthy > w->reconciling) &&
               pthread_cond_timedwait(&w->cv, &w->mu, &dl) == 0) {
        }
        if (w->reconciling && w->healthy > w->reconciling) {
            total[done] = (w->healthy - t0) * 1000;
            alone[done++] = (w->healthy - w->reconciling) * 1000;
        }
        pthread_mutex_unlock(&w->mu);
    }
    qsort(total, (size_t)done, sizeof *total, cmp_double);
    qsort(alone, (size_t)done, sizeof *alone, cmp_double);
    printf("reconcile_count=%d\n", done);
    if (done)
        printf("reconcile_median_ms=%.1f\ncommit_to_healthy_median_ms=%.1f\n",
               pct(alone, (size_t)done, 0.5), pct(total, (size_t)done, 0.5));
    free(total);
    free(alone);
    free(id);
    free(rt);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_observe WORKSPACE [--writes N] [--idle S] "
                        "[--reconciles K] [--packer BIN]\n");
        return 2;
    }
    int writes = 200, idle = 60, reconciles = 0;
    const char *bin = "build/packer";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--writes") == 0)
            writes = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--idle") == 0)
            idle = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--reconciles") == 0)
            reconciles = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--packer") == 0)
            bin = argv[i + 1];
    }
    waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    packer_bus *bus = NULL;
    packer_project *p = NULL;
    if (packer_bus_new(&bus) != 0 || packer_bus_subscribe(bus, on_event, &w, NULL) != 0 ||
        packer_project_open(argv[1], bus, &p) != 0) {
        fprintf(stderr, "bench_observe: %s\n", packer_last_error());
        return 1;
    }
    double t0 = now_s();
    if (packer_project_observe(p, 1) != 0) {
        fprintf(stderr, "bench_observe: %s\n", packer_last_error());
        return 1;
    }
    printf("observe_start_ms=%.0f\n", (now_s() - t0) * 1000);
    fflush(stdout);
    if (writes > 0)
        bench_latency(p, &w, packer_project_root(p), writes);
    fflush(stdout);
    if (idle > 0) {
        usleep(500000); /* let the last batch settle */
        bench_idle(idle);
    }
    if (reconciles > 0)
        bench_reconcile(p, &w, packer_project_root(p), bin, reconciles);
    packer_project_close(p);
    packer_bus_free(bus);
    return 0;
}
