/*
 * bench_serve.c - `packer serve` round trips beside the same calls made in
 * process (a benchmark, never a test: nothing here passes or fails).
 *
 *   bench_serve WORKSPACE PACKER_BIN [--seconds S]
 *
 * For list_assets (the whole registry) and get_asset_details (one asset),
 * for S seconds each (default 3):
 *   - in process: packer_call() and packer_response_json() - what serve
 *     does for each request - on the calling thread, no bus;
 *   - over serve: one client sending a request and waiting for its whole
 *     response before the next (sequential round trips over two pipes;
 *     the client reads the frame but does not parse the JSON), the server
 *     started with -C WORKSPACE serve.
 * Prints key=value lines: calls per second, median and p99 latency (us),
 * the response size. Runs on a workspace that bench.sh generated and
 * registered.
 *
 * Threads: main only; the server is a child process.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "packer.h"

#define MAX_SAMPLES 2000000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double *samples;

static void report(const char *prefix, size_t n, double secs, size_t bytes)
{
    qsort(samples, n, sizeof *samples, cmp_double);
    printf("%s_per_s=%.0f\n", prefix, (double)n / secs);
    printf("%s_p50_us=%.1f\n", prefix, n ? samples[n / 2] * 1e6 : 0);
    printf("%s_p99_us=%.1f\n", prefix, n ? samples[(size_t)((double)n * 0.99)] * 1e6 : 0);
    printf("%s_bytes=%zu\n", prefix, bytes);
}

/* ---- in process ---------------------------------------------------------- */

static void inproc(packer_project *p, const char *prefix, const char *svc, const char *params,
                   double secs)
{
    size_t n = 0, bytes = 0;
    double t0 = now_s(), end = t0 + secs, t;
    do {
        double a = now_s();
        packer_response *r = NULL;
        if (packer_call(p, svc, params, &r) != 0) {
            fprintf(stderr, "bench_serve: %s: %s\n", svc, packer_last_error());
            exit(1);
        }
        const char *text = packer_response_json(r, 0);
        bytes = text ? strlen(text) : 0;
        packer_response_free(r);
        t = now_s();
        if (n < MAX_SAMPLES)
            samples[n++] = t - a;
    } while (t < end);
    report(prefix, n, t - t0, bytes);
}

/* ---- over serve ------------------------------------------------------------ */

typedef struct {
    pid_t pid;
    int to, from;
    char *buf;
    size_t cap, len;
} conn;

static void start(conn *c, const char *bin, const char *ws)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
        exit(1);
    c->pid = fork();
    if (c->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execl(bin, bin, "-C", ws, "serve", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    c->to = in[1];
    c->from = out[0];
    c->cap = 1 << 20;
    c->buf = malloc(c->cap);
}

static void put(conn *c, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(c->to, s, n);
        if (w <= 0)
            exit(1);
        s += w;
        n -= (size_t)w;
    }
}

/* Read until buf holds one whole frame; return its size (header + body)
 * and drop it; *body_len gets the body's size. */
static size_t frame(conn *c, size_t *body_len)
{
    for (;;) {
        char *end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t head = (size_t)(end - c->buf) + 4;
            size_t body = strtoul(c->buf + 15, NULL, 10); /* "Content-Length:" */
            if (c->len >= head + body) {
                memmove(c->buf, c->buf + head + body, c->len - head - body);
                c->len -= head + body;
                *body_len = body;
                return head + body;
            }
            if (head + body > c->cap) {
                c->cap = (head + body) * 2;
                c->buf = realloc(c->buf, c->cap);
            }
        }
        if (c->len == c->cap)
            c->buf = realloc(c->buf, c->cap *= 2);
        ssize_t r = read(c->from, c->buf + c->len, c->cap - c->len);
        if (r <= 0) {
            fprintf(stderr, "bench_serve: the server closed its output\n");
            exit(1);
        }
        c->len += (size_t)r;
    }
}

static void over_serve(conn *c, const char *prefix, const char *method, const char *params,
                       double secs)
{
    size_t n = 0, bytes = 0;
    double t0 = now_s(), end = t0 + secs, t;
    char msg[1024], head[64];
    int id = 0;
    do {
        int len = snprintf(msg, sizeof msg,
                           "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"%s\",\"params\":%s}", ++id,
                           method, params);
        int hl = snprintf(head, sizeof head, "Content-Length: %d\r\n\r\n", len);
        double a = now_s();
        put(c, head, (size_t)hl);
        put(c, msg, (size_t)len);
        frame(c, &bytes); /* reads send no events: the next frame is the answer */
        t = now_s();
        if (n < MAX_SAMPLES)
            samples[n++] = t - a;
    } while (t < end);
    report(prefix, n, t - t0, bytes);
}

static void stop(conn *c)
{
    const char *bye[] = {"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"shutdown\"}",
                         "{\"jsonrpc\":\"2.0\",\"method\":\"exit\"}"};
    char head[64];
    for (int i = 0; i < 2; i++) {
        int hl = snprintf(head, sizeof head, "Content-Length: %zu\r\n\r\n", strlen(bye[i]));
        put(c, head, (size_t)hl);
        put(c, bye[i], strlen(bye[i]));
    }
    size_t ignored;
    frame(c, &ignored);
    close(c->to);
    close(c->from);
    int st;
    waitpid(c->pid, &st, 0);
    free(c->buf);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_serve WORKSPACE PACKER_BIN [--seconds S]\n");
        return 2;
    }
    double secs = argc > 4 && strcmp(argv[3], "--seconds") == 0 ? atof(argv[4]) : 3;
    signal(SIGPIPE, SIG_IGN);
    samples = malloc(MAX_SAMPLES * sizeof *samples);
    packer_project *p = NULL;
    packer_response *r = NULL;
    if (!samples || packer_project_open(argv[1], NULL, &p) != 0 ||
        packer_call(p, "list_assets", "{\"limit\": 1}", &r) != 0) {
        fprintf(stderr, "bench_serve: %s\n", packer_last_error());
        return 1;
    }
    cJSON *j = cJSON_Parse(packer_response_json(r, 0));
    cJSON *data = cJSON_GetObjectItem(j, "data");
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(data, "assets"), 0), "asset_id"));
    char details[128];
    snprintf(details, sizeof details, "{\"asset\":\"%s\"}", id ? id : "?");
    printf("assets=%d\n", (int)cJSON_GetNumberValue(cJSON_GetObjectItem(data, "total")));
    cJSON_Delete(j);
    packer_response_free(r);

    inproc(p, "inproc_list", "list_assets", NULL, secs);
    inproc(p, "inproc_details", "get_asset_details", details, secs);
    packer_project_close(p);

    conn c = {0};
    start(&c, argv[2], argv[1]);
    over_serve(&c, "serve_list", "list_assets", "{}", secs);
    over_serve(&c, "serve_details", "get_asset_details", details, secs);
    stop(&c);
    free(samples);
    return 0;
}
