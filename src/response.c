/*
 * response.c - the structured response every service returns.
 *
 * A resp is built by one operation on one thread; resp_finish() freezes it
 * into a packer_response: immutable, readable from any thread. Its keys are
 * sorted once at finish; each JSON form is rendered on first request, under
 * the response's own mutex, so a caller that wants one form (or none, like
 * the Lua module) does not pay for both.
 * Allocation failures while building are remembered and reported by
 * resp_finish() returning NULL, so service code can stay linear.
 *
 * Threads: a resp belongs to its builder; a packer_response to anyone.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

struct resp {
    cJSON *root;
    cJSON *affected, *diags, *proposed, *applied, *blockers, *data;
    packer_status status;
    packer_op_class cls;
    char summary[512];
    bool oom;
};

struct packer_response {
    cJSON *root;
    pthread_mutex_t mu; /* guards the lazy rendering of pretty/compact */
    char *pretty, *compact;
    packer_status status;
    packer_op_class cls;
    packer_state state;
    const char *summary, *op_id;
};

static const char *const CLASS_NAMES[] = {"read", "registry_mutation", "workspace_mutation"};
static const char *const STATE_NAMES[] = {"healthy",    "stale",       "diverged",
                                          "committing", "reconciling", "failed"};
static const char *const STATUS_NAMES[] = {"ok", "preview", "refused", "blocked", "failed"};

const char *packer_op_class_name(packer_op_class c)
{
    return (unsigned)c < 3 ? CLASS_NAMES[c] : "unknown";
}

const char *packer_state_name(packer_state s)
{
    return (unsigned)s < 6 ? STATE_NAMES[s] : "unknown";
}

const char *packer_status_name(packer_status s)
{
    return (unsigned)s < 5 ? STATUS_NAMES[s] : "unknown";
}

static cJSON *add_array(resp *r, const char *key)
{
    cJSON *a = cJSON_AddArrayToObject(r->root, key);
    if (!a)
        r->oom = true;
    return a;
}

resp *resp_new(packer_op_class cls, const char *op_id)
{
    resp *r = pk_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->cls = cls;
    r->root = cJSON_CreateObject();
    if (!r->root || !json_add_str(r->root, "operation_id", op_id)) {
        cJSON_Delete(r->root);
        pk_free(r);
        return NULL;
    }
    r->affected = add_array(r, "affected_assets");
    r->diags = add_array(r, "diagnostics");
    r->proposed = add_array(r, "proposed_actions");
    r->applied = add_array(r, "applied_actions");
    r->blockers = add_array(r, "blockers");
    return r;
}

void resp_free(resp *r)
{
    if (!r)
        return;
    cJSON_Delete(r->root);
    pk_free(r);
}

void resp_status(resp *r, packer_status st)
{
    r->status = st;
}

packer_status resp_get_status(const resp *r)
{
    return r->status;
}

void resp_oom(resp *r)
{
    r->oom = true;
}

void resp_set_op_class(resp *r, packer_op_class cls)
{
    r->cls = cls;
}

void resp_summary(resp *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->summary, sizeof r->summary, fmt, ap);
    va_end(ap);
}

static void push(resp *r, cJSON *arr, cJSON *item)
{
    if (!item || !arr || !cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        r->oom = true;
    }
}

void resp_affected(resp *r, const char *asset_id)
{
    push(r, r->affected, cJSON_CreateString(asset_id));
}

static void put_opt(resp *r, cJSON *o, const char *key, const char *val)
{
    if (val && !json_add_str(o, key, val))
        r->oom = true;
}

void resp_diag(resp *r, const char *severity, const char *code, const char *asset_id,
               const char *path, const char *message)
{
    cJSON *d = cJSON_CreateObject();
    if (d) {
        put_opt(r, d, "severity", severity);
        put_opt(r, d, "code", code);
        put_opt(r, d, "asset_id", asset_id);
        put_opt(r, d, "path", path);
        put_opt(r, d, "message", message);
    }
    push(r, r->diags, d);
}

void resp_diag_json(resp *r, cJSON *diag)
{
    push(r, r->diags, diag);
}

void resp_blocker(resp *r, const char *code, const char *message)
{
    cJSON *b = cJSON_CreateObject();
    if (b) {
        put_opt(r, b, "code", code);
        put_opt(r, b, "message", message);
    }
    push(r, r->blockers, b);
}

cJSON *resp_action(const char *id, const char *kind, const char *safety, const char *desc)
{
    cJSON *a = cJSON_CreateObject();
    if (a && (!json_add_str(a, "id", id) || !json_add_str(a, "kind", kind) ||
              !json_add_str(a, "safety", safety) || !json_add_str(a, "description", desc) ||
              !cJSON_AddArrayToObject(a, "targets"))) {
        cJSON_Delete(a);
        return NULL;
    }
    return a;
}

void resp_proposed(resp *r, cJSON *action)
{
    push(r, r->proposed, action);
}

void resp_applied(resp *r, cJSON *action)
{
    push(r, r->applied, action);
}

cJSON *resp_data(resp *r)
{
    if (!r->data && !(r->data = cJSON_AddObjectToObject(r->root, "data")))
        r->oom = true;
    return r->data;
}

packer_response *resp_finish(resp *r, packer_state state)
{
    packer_response *out = pk_calloc(1, sizeof *out);
    if (!out || r->oom || !json_add_str(r->root, "status", packer_status_name(r->status)) ||
        !json_add_str(r->root, "summary", r->summary) ||
        !json_add_str(r->root, "runtime_state", packer_state_name(state)) ||
        !json_add_str(r->root, "operation_class", packer_op_class_name(r->cls)) ||
        (!r->data && !cJSON_AddNullToObject(r->root, "data"))) {
        pk_free(out);
        return NULL;
    }
    out->root = r->root;
    r->root = NULL;
    out->status = r->status;
    out->cls = r->cls;
    out->state = state;
    pthread_mutex_init(&out->mu, NULL);
    if (!json_sort_keys(out->root)) {
        packer_response_free(out);
        return NULL;
    }
    out->summary = json_get_str(out->root, "summary");
    out->op_id = json_get_str(out->root, "operation_id");
    return out;
}

void packer_response_free(packer_response *r)
{
    if (!r)
        return;
    cJSON_Delete(r->root);
    pk_free(r->pretty);
    pk_free(r->compact);
    pthread_mutex_destroy(&r->mu);
    pk_free(r);
}

packer_status packer_response_status(const packer_response *r)
{
    return r->status;
}

packer_op_class packer_response_op_class(const packer_response *r)
{
    return r->cls;
}

packer_state packer_response_state(const packer_response *r)
{
    return r->state;
}

const char *packer_response_summary(const packer_response *r)
{
    return r->summary;
}

const char *packer_response_operation_id(const packer_response *r)
{
    return r->op_id;
}

const char *packer_response_json(const packer_response *r, int pretty)
{
    packer_response *m = (packer_response *)r; /* rendering is a cache */
    pthread_mutex_lock(&m->mu);
    char **slot = pretty ? &m->pretty : &m->compact;
    if (!*slot)
        *slot = json_canonical(m->root, pretty);
    const char *out = *slot;
    pthread_mutex_unlock(&m->mu);
    return out;
}

const cJSON *response_root(const packer_response *r)
{
    return r->root;
}
