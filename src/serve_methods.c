/*
 * serve_methods.c - what each message to `packer serve` means: the JSON-RPC
 * envelope checks, the protocol methods (initialize, shutdown, exit,
 * $/cancelRequest) and the services, each run through
 * packer_call_cancellable() with its request's token. The protocol is
 * docs/serve-protocol.md.
 *
 * Invariants: every request gets exactly one answer and notifications
 * none; a service's events are all written before its answer (the bus is
 * flushed first); a request is cancelled through its own token only.
 *
 * Threads: serve_handle_body on the reading thread only (it owns the
 * shutdown and exit flags); serve_run on the workers.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "serve.h"

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
        serve_send_error(s, q->id, E_INTERNAL, "out of memory", NULL);
    else if (packer_cancel_triggered(q->tok) && has_blocker(root, "cancelled"))
        serve_send_error(s, q->id, E_CANCELLED, "request cancelled", text);
    else if (has_blocker(root, "invalid_params"))
        serve_send_error(s, q->id, E_PARAMS, packer_response_summary(r), text);
    else
        serve_send_raw(s, q->id, "result", text);
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
        serve_send_error(s, q->id, E_PARAMS, packer_last_error(), NULL);
    else if (rc == PACKER_EUNKNOWN)
        serve_send_error(s, q->id, E_METHOD, packer_last_error(), NULL);
    else if (rc)
        serve_send_error(s, q->id, E_INTERNAL, packer_last_error(), NULL);
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
    serve_send_raw(s, q->id, "result", "null");
}

void serve_run(server *s, req *q)
{
    if (strcmp(q->method, "shutdown") == 0)
        run_shutdown(s, q);
    else
        run_request(s, q);
}

static bool is_service(const char *m)
{
    const char *name;
    for (size_t i = 0; (name = project_service_name(i)) != NULL; i++)
        if (strcmp(name, m) == 0)
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
    const char *name;
    for (size_t i = 0; (name = project_service_name(i)) != NULL; i++)
        cJSON_AddItemToArray(methods, cJSON_CreateString(name));
    cJSON *caps = cJSON_AddObjectToObject(res, "capabilities");
    cJSON_AddBoolToObject(caps, "batch", 0);
    cJSON_AddBoolToObject(caps, "cancel", 1);
    cJSON_AddBoolToObject(caps, "events", 1);
    cJSON_AddBoolToObject(caps, "events_before_response", 1);
    char *text = cJSON_PrintUnformatted(res);
    cJSON_Delete(res);
    if (text)
        serve_send_raw(s, id, "result", text);
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
        serve_send_error(s, NULL, E_INVALID_REQUEST, "\"id\" must be a string or an integer", NULL);
    } else if (!version || strcmp(version, "2.0") != 0 || !m) {
        serve_send_error(s, id, E_INVALID_REQUEST,
                         "a request needs \"jsonrpc\": \"2.0\" and a string \"method\"", NULL);
    } else if (strcmp(m, "exit") == 0) {
        s->exit_seen = true;
    } else if (strcmp(m, "$/cancelRequest") == 0) {
        do_cancel(s, params);
        if (id)
            serve_send_raw(s, id, "result", "null");
    } else if (!id) {
        /* other notifications ("initialized", ...): nothing to answer */
    } else if (strcmp(m, "initialize") == 0) {
        do_initialize(s, id);
    } else if ((code = refuse(s, m, params, &why)) != 0) {
        char buf[200];
        snprintf(buf, sizeof buf, "%.100s: %s", m, why);
        serve_send_error(s, id, code, buf, NULL);
    } else {
        if (strcmp(m, "shutdown") == 0)
            s->shutdown = true;
        serve_enqueue(s, id, m, params);
    }
}

void serve_handle_body(server *s, const char *body, size_t len)
{
    const char *end = NULL;
    cJSON *msg = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!msg) {
        char why[96];
        snprintf(why, sizeof why, "parse error: invalid JSON at byte %ld",
                 end ? (long)(end - body) : 0L);
        serve_send_error(s, NULL, E_PARSE, why, NULL);
    } else if (cJSON_IsArray(msg)) {
        serve_send_error(s, NULL, E_INVALID_REQUEST, "batch requests are not supported", NULL);
    } else if (!cJSON_IsObject(msg)) {
        serve_send_error(s, NULL, E_INVALID_REQUEST, "a request must be a JSON object", NULL);
    } else {
        handle(s, msg);
    }
    cJSON_Delete(msg);
}
