/*
 * serve.h - shared by `packer serve`'s files: serve.c (the transport: frames
 * in and out, worker threads, the process's life) and serve_methods.c (what
 * each message means). Not installed.
 */
#ifndef PACKER_SERVE_H
#define PACKER_SERVE_H

#include <pthread.h>

#include "internal.h"

#define SERVE_WORKERS 4
#define MAX_WORKERS 16
#define SERVE_MAX_LIVE 1024 /* requests accepted and not yet answered */

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

/* serve.c: write a response {"jsonrpc":"2.0","id":ID,<key>:<raw JSON>}, or an
 * error (data: raw JSON for error.data, or NULL). Any thread. */
void serve_send_raw(server *s, const cJSON *id, const char *key, const char *raw);
void serve_send_error(server *s, const cJSON *id, int code, const char *msg, const char *data);
/* Queue a request for the workers (answers -32603 itself when out of memory). */
void serve_enqueue(server *s, const cJSON *id, const char *method, const cJSON *params);

/* serve_methods.c: one frame's body, on the reading thread: answered at
 * once, or queued. */
void serve_handle_body(server *s, const char *body, size_t len);
/* Run one queued request and answer it, on a worker. */
void serve_run(server *s, req *q);

#endif
