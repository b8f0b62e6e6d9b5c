/*
 * serve.c - `packer serve`: one project kept open behind JSON-RPC 2.0 on
 * stdin/stdout, Content-Length framed (rpc.c), for hosts that are not C.
 * The protocol is docs/serve-protocol.md. This file is the transport and
 * the process's life: reading frames, the request queue and its workers,
 * writing responses and event notifications, client death, startup and
 * teardown. What each message means is serve_methods.c.
 *
 * Invariants:
 *   - Only the writer (send_text, under out_mu) writes the protocol stream;
 *     fd 1 itself is pointed at stderr, so a stray print cannot corrupt it.
 *   - Once the client is gone (stdin at EOF, EPIPE on stdout, a signal)
 *     nothing more is written, every request in flight or queued is
 *     cancelled, and the project is closed before the process exits: the
 *     workspace lock is never left held.
 *
 * Threads: main reads frames and answers what needs no project work
 * inline; SERVE_WORKERS worker threads run requests (reads concurrently,
 * writes serialized by the project's lane), so a read or a cancel is never
 * stuck behind a long build; the bus dispatcher writes event
 * notifications. Lock order: out_mu before mu (a failed write cancels
 * everything in flight); nothing is written while mu is held.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "rpc.h"
#include "serve.h"

enum { EXIT_CLEAN = 0, EXIT_UNCLEAN = 1, EXIT_USAGE = 2, EXIT_IO = 3 };

const char cli_serve_usage[] = "serve [--workers N]";
const char cli_serve_help[] =
    "Keep the project open and speak JSON-RPC 2.0 on stdin/stdout with\n"
    "Content-Length framing (docs/serve-protocol.md). Every service is a\n"
    "method; events arrive as \"event\" notifications. Background observation\n"
    "is on. In a directory that is not a workspace yet, only initialize and\n"
    "init_workspace work until the latter creates one. Logs go to stderr.\n"
    "  --workers N  requests run on N threads (default 4, at most 16)\n"
    "The global --json and --events do not apply: stdout is the protocol and\n"
    "events are notifications.\n"
    "Exit codes: 0 after shutdown and exit; 1 when the client went away\n"
    "(stdin closed, stdout broken, SIGINT/SIGTERM) or sent exit without\n"
    "shutdown; 2 usage error; 3 the workspace could not be opened.";

static volatile sig_atomic_t got_signal;
static int signal_fd = -1; /* the wake pipe's write end, for on_signal */

static void on_signal(int sig)
{
    got_signal = sig;
    if (signal_fd >= 0) {
        char c = 1;
        ssize_t n = write(signal_fd, &c, 1); /* async-signal-safe */
        (void)n;
    }
}

/* ---- writing ---------------------------------------------------------- */

static void cancel_all(server *s)
{
    pthread_mutex_lock(&s->mu);
    for (req *q = s->live; q; q = q->live_next)
        packer_cancel_trigger(q->tok);
    pthread_cond_broadcast(&s->cv); /* a reader waiting for room stops waiting */
    pthread_mutex_unlock(&s->mu);
}

static void client_gone(server *s, const char *why)
{
    if (!atomic_exchange(&s->gone, true)) {
        fprintf(stderr, "packer serve: %s; cancelling what is in flight\n", why);
        char c = 1;
        ssize_t n = write(s->wake[1], &c, 1); /* the reader stops too */
        (void)n;
    }
    cancel_all(s);
}

static void send_text(server *s, const char *text, size_t len)
{
    pthread_mutex_lock(&s->out_mu);
    int rc = atomic_load(&s->gone) ? 0 : rpc_write_frame(s->out_fd, text, len, &s->gone);
    pthread_mutex_unlock(&s->out_mu);
    if (rc && rc != -ECANCELED)
        client_gone(s, rc == -EPIPE ? "stdout closed by the client" : "cannot write stdout");
}

/* {"jsonrpc":"2.0","id":ID,<key>:<raw>} */
void serve_send_raw(server *s, const cJSON *id, const char *key, const char *raw)
{
    char *idt = id ? cJSON_PrintUnformatted(id) : NULL;
    strbuf b = {0};
    strbuf_printf(&b, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"%s\":%s}", idt ? idt : "null", key, raw);
    if (!b.oom)
        send_text(s, b.s, b.len);
    pk_free(b.s);
    cJSON_free(idt);
}

void serve_send_error(server *s, const cJSON *id, int code, const char *msg, const char *data)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    char *et = cJSON_PrintUnformatted(e);
    cJSON_Delete(e);
    if (et && data) { /* splice the response in as error.data, unparsed */
        strbuf b = {0};
        strbuf_put(&b, et, strlen(et) - 1);
        strbuf_printf(&b, ",\"data\":%s}", data);
        if (!b.oom)
            serve_send_raw(s, id, "error", b.s);
        pk_free(b.s);
    } else if (et) {
        serve_send_raw(s, id, "error", et);
    }
    cJSON_free(et);
}

static void on_event(const packer_event *ev, void *ud)
{
    server *s = ud;
    if (atomic_load(&s->quiet) || atomic_load(&s->gone))
        return;
    char *env = packer_event_json(ev);
    strbuf b = {0};
    if (env)
        strbuf_printf(&b, "{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":%s}", env);
    if (env && !b.oom)
        send_text(s, b.s, b.len);
    pk_free(b.s);
    packer_free(env);
}

/* ---- requests ---------------------------------------------------------- */

static void req_free(req *q)
{
    if (!q)
        return;
    cJSON_Delete(q->id);
    pk_free(q->method);
    pk_free(q->params);
    packer_cancel_free(q->tok);
    pk_free(q);
}

static void live_remove(server *s, req *q)
{
    pthread_mutex_lock(&s->mu);
    for (req **pp = &s->live; *pp; pp = &(*pp)->live_next)
        if (*pp == q) {
            *pp = q->live_next;
            s->nlive--;
            break;
        }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void *worker_main(void *arg)
{
    server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->head)
            break;
        req *q = s->head;
        s->head = q->next;
        if (!s->head)
            s->tail = NULL;
        pthread_mutex_unlock(&s->mu);
        if (atomic_load(&s->gone))
            ; /* nobody to answer: drop it */
        else
            serve_run(s, q);
        live_remove(s, q);
        req_free(q);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

void serve_enqueue(server *s, const cJSON *id, const char *method, const cJSON *params)
{
    req *q = pk_calloc(1, sizeof *q);
    if (!q || !(q->id = cJSON_Duplicate(id, 1)) || !(q->method = pk_strdup(method)) ||
        packer_cancel_new(&q->tok) != 0 ||
        (params && !cJSON_IsNull(params) && !(q->params = cJSON_PrintUnformatted(params)))) {
        req_free(q);
        serve_send_error(s, id, E_INTERNAL, "out of memory", NULL);
        return;
    }
    pthread_mutex_lock(&s->mu);
    /* backpressure: a client that sends without reading stops being read
     * (its writes block) instead of growing the queue without bound */
    while (s->nlive >= SERVE_MAX_LIVE && !atomic_load(&s->gone) && !got_signal) {
        struct timespec ts; /* a signal cannot signal cv: look every 100 ms */
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    q->live_next = s->live;
    s->live = q;
    s->nlive++;
    if (s->tail)
        s->tail->next = q;
    else
        s->head = q;
    s->tail = q;
    pthread_cond_broadcast(&s->cv); /* the workers and shutdown share cv */
    pthread_mutex_unlock(&s->mu);
}

/* read(2) on stdin; a signal or a client found gone while writing ends
 * the input like EOF. */
static ssize_t read_in(void *ctx, void *buf, size_t n)
{
    server *s = ctx;
    for (;;) {
        struct pollfd pfd[2] = {{.fd = s->in_fd, .events = POLLIN},
                                {.fd = s->wake[0], .events = POLLIN}};
        if (got_signal || atomic_load(&s->gone))
            return 0;
        int k = poll(pfd, 2, -1);
        if (k < 0 && errno != EINTR)
            return -1;
        if (k <= 0 || pfd[1].revents)
            continue; /* checked at the top */
        ssize_t r = read(s->in_fd, buf, n);
        if (r >= 0 || errno != EINTR)
            return r;
    }
}

static void read_loop(server *s)
{
    rpc_reader *rd = rpc_reader_new(read_in, s);
    if (!rd)
        return;
    while (!s->exit_seen) {
        char *body, err[160];
        size_t len;
        int rc = rpc_next(rd, &body, &len, err, sizeof err);
        if (rc == RPC_BAD) {
            char msg[200];
            snprintf(msg, sizeof msg, "invalid frame: %s", err);
            serve_send_error(s, NULL, E_PARSE, msg, NULL);
            continue;
        }
        if (rc != RPC_FRAME)
            break;
        serve_handle_body(s, body, len);
        pk_free(body);
    }
    rpc_reader_free(rd);
}

/* ---- setup and teardown ---------------------------------------------------- */

static int parse_args(int argc, char **argv, int *workers)
{
    static const struct option opts[] = {{"workers", required_argument, 0, 'w'}, {0, 0, 0, 0}};
    int ch;
    *workers = SERVE_WORKERS;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        long n = ch == 'w' ? strtol(optarg, &end, 10) : 0;
        if (ch != 'w' || *end || n < 1 || n > MAX_WORKERS) {
            fprintf(stderr, "packer: serve: --workers takes 1..%d\nTry 'packer serve --help'.\n",
                    MAX_WORKERS);
            return -1;
        }
        *workers = (int)n;
    }
    if (optind < argc) {
        fprintf(stderr, "packer: serve: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* The protocol gets a private copy of stdout; fd 1 becomes stderr. */
static int claim_stdout(server *s)
{
    s->in_fd = STDIN_FILENO;
    fflush(stdout);
    s->out_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (s->out_fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
        return -1;
    return 0;
}

static int open_here(server *s)
{
    char *root = NULL;
    int rc = packer_find_workspace(".", &root);
    if (rc == PACKER_ENOWORKSPACE) {
        fprintf(stderr, "packer serve: no workspace here yet; waiting for init_workspace\n");
        return 0;
    }
    packer_free(root);
    packer_project *p = NULL;
    if (rc == 0)
        rc = packer_project_open(".", s->bus, &p);
    if (rc) {
        fprintf(stderr, "packer serve: %s\n", packer_last_error());
        return rc;
    }
    if (packer_project_observe(p, 1) != 0)
        fprintf(stderr, "packer serve: observation is off: %s\n", packer_last_error());
    atomic_store(&s->p, p);
    return 0;
}

static void stop_workers(server *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
}

int cli_serve(int argc, char **argv)
{
    server s = {.out_fd = -1};
    int workers;
    if (parse_args(argc, argv, &workers) != 0)
        return EXIT_USAGE;
    if (pipe2(s.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        fprintf(stderr, "packer serve: pipe: %s\n", strerror(errno));
        return EXIT_IO;
    }
    signal_fd = s.wake[1];
    /* SIGINT/SIGTERM end the input (through the wake pipe) like EOF */
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&s.out_mu, NULL);
    pthread_mutex_init(&s.open_mu, NULL);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    int code = EXIT_IO;
    if (claim_stdout(&s) != 0) {
        fprintf(stderr, "packer serve: cannot set up stdout: %s\n", strerror(errno));
        goto out;
    }
    if (packer_bus_new(&s.bus) != 0 || packer_bus_subscribe(s.bus, on_event, &s, NULL) != 0 ||
        open_here(&s) != 0)
        goto out;
    for (; s.nworkers < workers; s.nworkers++)
        if (pthread_create(&s.workers[s.nworkers], NULL, worker_main, &s) != 0)
            break;
    if (s.nworkers == 0) {
        fprintf(stderr, "packer serve: cannot start worker threads\n");
        goto out;
    }
    read_loop(&s);
    if (!s.exit_seen)
        client_gone(&s, got_signal ? "signalled" : "stdin closed");
    code = s.exit_seen && s.shutdown ? EXIT_CLEAN : EXIT_UNCLEAN;
out:
    stop_workers(&s);
    atomic_store(&s.quiet, true);
    packer_project_close(atomic_load(&s.p)); /* stops the observer, drops the lock */
    packer_bus_free(s.bus);
    if (s.out_fd >= 0)
        close(s.out_fd);
    signal_fd = -1;
    close(s.wake[0]);
    close(s.wake[1]);
    for (req *q = s.head, *n; q; q = n) { /* queued when the client went away */
        n = q->next;
        req_free(q);
    }
    pthread_mutex_destroy(&s.out_mu);
    pthread_mutex_destroy(&s.open_mu);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    return code;
}
