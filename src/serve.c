/*
 * serve.c - `packer serve`: one project kept open behind JSON-RPC 2.0 on
 * stdin/stdout, Content-Length framed (rpc.c), for hosts that are not C.
 * The protocol is docs/serve-protocol.md.
 *
 * Every service is a method of its name; params are packer_call's params
 * object and the result is the structured response. Events are "event"
 * notifications whose params are the envelope. Protocol methods:
 * initialize, shutdown, exit, $/cancelRequest.
 *
 * Invariants:
 *   - Only the writer (send, under out_mu) writes the protocol stream; fd 1
 *     itself is pointed at stderr, so a stray print cannot corrupt it.
 *   - All events an operation published are written before its response
 *     (the worker flushes the bus before answering).
 *   - Once the client is gone (stdin at EOF, EPIPE on stdout, a signal)
 *     nothing more is written, every request in flight is cancelled, and
 *     the project is closed before the process exits: the workspace lock
 *     is never left held.
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
#include <unistd.h>

#include "cli.h"
#include "internal.h"
#include "rpc.h"

#define SERVE_WORKERS 4
#define MAX_WORKERS 16

/* JSON-RPC and LSP error codes. */
enum {
    E_PARSE = -32700,
    E_INVALID_REQUEST = -32600,
    E_METHOD = -32601,
    E_PARAMS = -32602,
    E_INTERNAL = -32603,
    E_NO_WORKSPACE = -32002,
    E_SHUTTING_DOWN = -32003,
    E_CANCELLED = -32800
};

enum { EXIT_CLEAN = 0, EXIT_UNCLEAN = 1, EXIT_USAGE = 2, EXIT_IO = 3 };

static const char *const SERVICES[] = {"init_workspace",
                                       "register_asset",
                                       "include_asset_in_build",
                                       "exclude_asset_from_build",
                                       "remove_asset",
                                       "list_assets",
                                       "get_asset_details",
                                       "status",
                                       "doctor",
                                       "build",
                                       "quarantine",
                                       "quarantine_list",
                                       "restore"};

const char cli_serve_usage[] = "serve [--workers N]";
const char cli_serve_help[] =
    "Keep the project open and speak JSON-RPC 2.0 on stdin/stdout with\n"
    "Content-Length framing (docs/serve-protocol.md). Every service is a\n"
    "method; events arrive as \"event\" notifications. Background observation\n"
    "is on. In a directory that is not a workspace yet, only initialize and\n"
    "init_workspace work until the latter creates one. Logs go to stderr.\n"
    "  --workers N  requests run on N threads (default 4, at most 16)\n"
    "Exit codes: 0 after shutdown and exit; 1 when the client went away\n"
    "(stdin closed, stdout broken, SIGINT/SIGTERM) or sent exit without\n"
    "shutdown; 2 usage error; 3 the workspace could not be opened.";

typedef struct req {
    cJSON *id; /* the request's id, as sent */
    char *method;
    char *params; /* JSON text, NULL for none */
    packer_cancel *tok;
    struct req *next;      /* the queue */
    struct req *live_next; /* accepted and not answered yet */
} req;

typedef struct {
    int out_fd, in_fd;
    int wake[2]; /* a byte here ends the input: the client is gone */
    pthread_mutex_t out_mu;
    atomic_bool gone;  /* the client cannot be written to any more */
    atomic_bool quiet; /* closing: events are no longer sent */
    packer_bus *bus;
    _Atomic(packer_project *) p;
    pthread_mutex_t open_mu; /* lazy open by init_workspace */
    pthread_mutex_t mu;      /* queue, live list, counters */
    pthread_cond_t cv;
    req *head, *tail, *live;
    size_t nlive;
    bool stopping, shutdown;
    bool exit_seen;
    int nworkers;
    pthread_t workers[MAX_WORKERS];
} server;

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
static void send_raw(server *s, const cJSON *id, const char *key, const char *raw)
{
    char *idt = id ? cJSON_PrintUnformatted(id) : NULL;
    strbuf b = {0};
    strbuf_printf(&b, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"%s\":%s}", idt ? idt : "null", key, raw);
    if (!b.oom)
        send_text(s, b.s, b.len);
    pk_free(b.s);
    cJSON_free(idt);
}

static void send_error(server *s, const cJSON *id, int code, const char *msg, const char *data)
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
            send_raw(s, id, "error", b.s);
        pk_free(b.s);
    } else if (et) {
        send_raw(s, id, "error", et);
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

static bool has_blocker(const cJSON *root, const char *code)
{
    const cJSON *b;
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(root, "blockers"))
    {
        const char *c = json_get_str(b, "code");
        if (c && strcmp(c, code) == 0)
            return true;
    }
    return false;
}

/* The answer to a service call: the result, or an error carrying it. */
static void answer(server *s, req *q, packer_response *r)
{
    const char *text = packer_response_json(r, 0);
    const cJSON *root = response_root(r);
    if (!text)
        send_error(s, q->id, E_INTERNAL, "out of memory", NULL);
    else if (packer_cancel_triggered(q->tok) && has_blocker(root, "cancelled"))
        send_error(s, q->id, E_CANCELLED, "request cancelled", text);
    else if (has_blocker(root, "invalid_params"))
        send_error(s, q->id, E_PARAMS, packer_response_summary(r), text);
    else
        send_raw(s, q->id, "result", text);
}

static int lazy_init(server *s, req *q, packer_response **r)
{
    pthread_mutex_lock(&s->open_mu);
    packer_project *p = atomic_load(&s->p);
    int rc;
    if (p) {
        rc = packer_call(p, "init_workspace", q->params, r);
    } else {
        cJSON *params = q->params ? cJSON_Parse(q->params) : NULL;
        const char *name = json_get_str(params, "name");
        rc = packer_init_workspace(".", name, s->bus, r);
        cJSON_Delete(params);
        if (rc == 0 && packer_response_status(*r) == PACKER_STATUS_OK &&
            packer_project_open(".", s->bus, &p) == 0) {
            if (packer_project_observe(p, 1) != 0)
                fprintf(stderr, "packer serve: observation is off: %s\n", packer_last_error());
            atomic_store(&s->p, p);
        }
    }
    pthread_mutex_unlock(&s->open_mu);
    return rc;
}

static void run_request(server *s, req *q)
{
    packer_project *p = atomic_load(&s->p);
    packer_response *r = NULL;
    int rc;
    if (strcmp(q->method, "init_workspace") == 0)
        rc = lazy_init(s, q, &r);
    else
        rc = packer_call_cancellable(p, q->method, q->params, q->tok, &r);
    packer_bus_flush(s->bus); /* the operation's events go out before its answer */
    if (rc == PACKER_EINVAL)
        send_error(s, q->id, E_PARAMS, packer_last_error(), NULL);
    else if (rc == PACKER_EUNKNOWN)
        send_error(s, q->id, E_METHOD, packer_last_error(), NULL);
    else if (rc)
        send_error(s, q->id, E_INTERNAL, packer_last_error(), NULL);
    else
        answer(s, q, r);
    packer_response_free(r);
}

/* shutdown: answered once every other accepted request is. */
static void run_shutdown(server *s, req *q)
{
    pthread_mutex_lock(&s->mu);
    while (s->nlive > 1)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    send_raw(s, q->id, "result", "null");
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
        else if (strcmp(q->method, "shutdown") == 0)
            run_shutdown(s, q);
        else
            run_request(s, q);
        live_remove(s, q);
        req_free(q);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- the reader ---------------------------------------------------------- */

static bool is_service(const char *m)
{
    for (size_t i = 0; i < sizeof SERVICES / sizeof *SERVICES; i++)
        if (strcmp(SERVICES[i], m) == 0)
            return true;
    return false;
}

static void do_initialize(server *s, const cJSON *id)
{
    packer_project *p = atomic_load(&s->p);
    cJSON *res = cJSON_CreateObject(), *srv = cJSON_AddObjectToObject(res, "server");
    cJSON_AddStringToObject(srv, "name", "packer");
    cJSON_AddStringToObject(srv, "version", PACKER_VERSION);
    cJSON_AddNumberToObject(res, "protocol_version", 1);
    if (p) {
        cJSON *ws = cJSON_AddObjectToObject(res, "workspace");
        cJSON_AddStringToObject(ws, "root", packer_project_root(p));
        cJSON_AddStringToObject(ws, "project_id", packer_project_id(p));
        cJSON_AddStringToObject(ws, "runtime_state", packer_state_name(packer_project_state(p)));
    } else {
        cJSON_AddNullToObject(res, "workspace");
    }
    cJSON *methods = cJSON_AddArrayToObject(res, "methods");
    static const char *const PROTO[] = {"initialize", "shutdown", "exit", "$/cancelRequest"};
    for (size_t i = 0; i < 4; i++)
        cJSON_AddItemToArray(methods, cJSON_CreateString(PROTO[i]));
    for (size_t i = 0; i < sizeof SERVICES / sizeof *SERVICES; i++)
        cJSON_AddItemToArray(methods, cJSON_CreateString(SERVICES[i]));
    cJSON *caps = cJSON_AddObjectToObject(res, "capabilities");
    cJSON_AddBoolToObject(caps, "batch", 0);
    cJSON_AddBoolToObject(caps, "cancel", 1);
    cJSON_AddBoolToObject(caps, "events", 1);
    cJSON_AddBoolToObject(caps, "events_before_response", 1);
    char *text = cJSON_PrintUnformatted(res);
    cJSON_Delete(res);
    if (text)
        send_raw(s, id, "result", text);
    cJSON_free(text);
}

/* $/cancelRequest {"id": N}: trigger the token of that request if it is
 * queued or running; unknown ids are ignored (it may have just finished). */
static void do_cancel(server *s, const cJSON *params)
{
    const cJSON *target = cJSON_GetObjectItemCaseSensitive(params, "id");
    if (!target)
        return;
    pthread_mutex_lock(&s->mu);
    for (req *q = s->live; q; q = q->live_next)
        if (cJSON_Compare(q->id, target, 1))
            packer_cancel_trigger(q->tok);
    pthread_mutex_unlock(&s->mu);
}

static void enqueue(server *s, const cJSON *id, const char *method, const cJSON *params)
{
    req *q = pk_calloc(1, sizeof *q);
    if (!q || !(q->id = cJSON_Duplicate(id, 1)) || !(q->method = pk_strdup(method)) ||
        packer_cancel_new(&q->tok) != 0 ||
        (params && !cJSON_IsNull(params) && !(q->params = cJSON_PrintUnformatted(params)))) {
        req_free(q);
        send_error(s, id, E_INTERNAL, "out of memory", NULL);
        return;
    }
    pthread_mutex_lock(&s->mu);
    q->live_next = s->live;
    s->live = q;
    s->nlive++;
    if (s->tail)
        s->tail->next = q;
    else
        s->head = q;
    s->tail = q;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static bool valid_id(const cJSON *id)
{
    return cJSON_IsString(id) || cJSON_IsNull(id) ||
           (cJSON_IsNumber(id) && id->valuedouble == (double)(long long)id->valuedouble);
}

/* Why a request cannot be queued (code and message), or 0. */
static int refuse(server *s, const char *m, const cJSON *params, const char **why)
{
    if (params && !cJSON_IsObject(params) && !cJSON_IsNull(params))
        return *why = "params must be an object", E_PARAMS;
    if (strcmp(m, "shutdown") != 0 && !is_service(m))
        return *why = "no such method", E_METHOD;
    if (s->shutdown)
        return *why = "the server is shutting down", E_SHUTTING_DOWN;
    if (!atomic_load(&s->p) && strcmp(m, "init_workspace") != 0 && strcmp(m, "shutdown") != 0)
        return *why = "no workspace here: call init_workspace first", E_NO_WORKSPACE;
    return 0;
}

/* One parsed message. */
static void handle(server *s, const cJSON *msg)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    const char *version = json_get_str(msg, "jsonrpc"), *why = NULL;
    const char *m = cJSON_IsString(method) ? method->valuestring : NULL;
    int code;
    if (id && !valid_id(id)) {
        send_error(s, NULL, E_INVALID_REQUEST, "\"id\" must be a string or an integer", NULL);
    } else if (!version || strcmp(version, "2.0") != 0 || !m) {
        send_error(s, id, E_INVALID_REQUEST,
                   "a request needs \"jsonrpc\": \"2.0\" and a string \"method\"", NULL);
    } else if (strcmp(m, "exit") == 0) {
        s->exit_seen = true;
    } else if (strcmp(m, "$/cancelRequest") == 0) {
        do_cancel(s, params);
        if (id)
            send_raw(s, id, "result", "null");
    } else if (!id) {
        /* other notifications ("initialized", ...): nothing to answer */
    } else if (strcmp(m, "initialize") == 0) {
        do_initialize(s, id);
    } else if ((code = refuse(s, m, params, &why)) != 0) {
        char buf[200];
        snprintf(buf, sizeof buf, "%.100s: %s", m, why);
        send_error(s, id, code, buf, NULL);
    } else {
        if (strcmp(m, "shutdown") == 0)
            s->shutdown = true;
        enqueue(s, id, m, params);
    }
}

static void handle_body(server *s, const char *body, size_t len)
{
    const char *end = NULL;
    cJSON *msg = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!msg) {
        char why[96];
        snprintf(why, sizeof why, "parse error: invalid JSON at byte %ld",
                 end ? (long)(end - body) : 0L);
        send_error(s, NULL, E_PARSE, why, NULL);
    } else if (cJSON_IsArray(msg)) {
        send_error(s, NULL, E_INVALID_REQUEST, "batch requests are not supported", NULL);
    } else if (!cJSON_IsObject(msg)) {
        send_error(s, NULL, E_INVALID_REQUEST, "a request must be a JSON object", NULL);
    } else {
        handle(s, msg);
    }
    cJSON_Delete(msg);
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
            send_error(s, NULL, E_PARSE, msg, NULL);
            continue;
        }
        if (rc != RPC_FRAME)
            break;
        handle_body(s, body, len);
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
