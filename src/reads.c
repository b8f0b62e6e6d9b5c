/*
 * reads.c - the read services: list_assets, get_asset_details, status.
 *
 * Reads run on the caller's thread against one snapshot reference taken at
 * their start, so they are never blocked by the lane and never see a torn
 * write. get_asset_details also reads the manifest and inputs from disk,
 * since hashes and sizes are facts about files, not about the registry.
 *
 * Threads: any.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

const asset_rec *svc_find_asset(const snap *s, const char *key)
{
    const asset_rec *a = snap_by_id(s, key);
    if (!a)
        a = snap_included_by_address(s, key);
    if (!a)
        a = snap_by_address(s, key);
    return a;
}

const asset_rec *svc_lookup(op *o, const snap *s)
{
    const char *key = json_get_str(o->params, "asset");
    const asset_rec *a = key ? svc_find_asset(s, key) : NULL;
    char msg[600];
    if (!key)
        snprintf(msg, sizeof msg, "\"asset\" (an asset id or address) is required");
    else if (!a)
        snprintf(msg, sizeof msg, "%s: no registered asset with this id or address", key);
    if (!a) {
        resp_status(o->r, PACKER_STATUS_REFUSED);
        resp_blocker(o->r, key ? "unknown_asset" : "invalid_params", msg);
        resp_summary(o->r, "%s", msg);
    }
    return a;
}

cJSON *svc_asset_json(const asset_rec *a)
{
    cJSON *j = cJSON_CreateObject();
    /* keys in canonical order, so that rendering has nothing to sort */
    if (j && (!json_add_str(j, "address", a->address) || !json_add_str(j, "asset_id", a->id) ||
              !cJSON_AddBoolToObject(j, "included", a->included) ||
              !json_add_str(j, "kind", a->kind) || !json_add_str(j, "root", a->root))) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* a's JSON with "freshness": "stale" when its files changed on disk since
 * the snapshot or its last build (fresh.c), else "fresh"; kept in key
 * order (after asset_id) so that rendering has nothing to sort. */
static cJSON *asset_json_fresh(const asset_rec *a, fresh *f)
{
    cJSON *j = svc_asset_json(a);
    cJSON *v =
        j ? cJSON_AddStringToObject(j, "freshness", fresh_is_stale(f, a->id) ? "stale" : "fresh")
          : NULL;
    cJSON *id = v ? cJSON_GetObjectItemCaseSensitive(j, "asset_id") : NULL;
    if (id && id->next != v) { /* move it after asset_id (cJSON has no insert-after) */
        cJSON_DetachItemViaPointer(j, v);
        v->prev = id;
        v->next = id->next;
        id->next->prev = v;
        id->next = v;
    }
    return j;
}

static void push(cJSON *arr, cJSON *item)
{
    if (!arr || !item || !cJSON_AddItemToArray(arr, item))
        cJSON_Delete(item);
}

/* Optional non-negative integer parameter; -1 when absent, -2 when bad. */
static double count_param(op *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o->params, key);
    if (!v)
        return -1;
    return cJSON_IsNumber(v) && v->valuedouble >= 0 ? v->valuedouble : -2;
}

void svc_list_assets(op *o)
{
    const char *filter = json_get_str(o->params, "filter");
    int want = !filter || strcmp(filter, "all") == 0 ? -1
               : strcmp(filter, "included") == 0     ? 1
               : strcmp(filter, "excluded") == 0     ? 0
                                                     : -2;
    double offset = count_param(o, "offset"), limit = count_param(o, "limit");
    if (want == -2 || offset == -2 || limit == -2) {
        resp_status(o->r, PACKER_STATUS_REFUSED);
        resp_blocker(o->r, "invalid_params",
                     "\"filter\" must be all, included or excluded; "
                     "\"offset\" and \"limit\" non-negative numbers");
        resp_summary(o->r, "invalid list parameters");
        return;
    }
    size_t skip = offset < 0 ? 0 : (size_t)offset, room = limit < 0 ? SIZE_MAX : (size_t)limit;
    snap *s = project_snapshot(o->p);
    size_t n = 0, matched = 0, shown = 0;
    const asset_rec *const *v = snap_all(s, &n);
    cJSON *data = resp_data(o->r);
    cJSON *arr = data ? cJSON_AddArrayToObject(data, "assets") : NULL;
    for (size_t i = 0; v && i < n; i++) {
        if (want >= 0 && v[i]->included != (bool)want)
            continue;
        if (matched++ >= skip && shown < room) {
            push(arr, asset_json_fresh(v[i], project_fresh(o->p)));
            shown++;
        }
    }
    if (data) {
        cJSON_AddNumberToObject(data, "count", (double)shown);
        cJSON_AddNumberToObject(data, "total", (double)matched);
    }
    resp_summary(o->r, "%zu asset%s (%zu registered, %zu included)", shown, shown == 1 ? "" : "s",
                 snap_count(s), snap_included_count(s));
    snap_unref(s);
}

/* One input: where it resolves, whether it exists, its size and hash. */
static cJSON *input_json(op *o, const asset_rec *a, const char *input)
{
    const char *root = project_root_dir(o->p);
    cJSON *j = cJSON_CreateObject();
    char *path = NULL, *abs = NULL, hex[HASH_HEX_LEN + 1];
    uint64_t size = 0;
    if (!j)
        return NULL;
    json_add_str(j, "input", input);
    if (ws_confine_under(root, a->root, input, &path) != 0) {
        cJSON_AddFalseToObject(j, "exists");
        resp_diag(o->r, "error", "input_escapes_workspace", a->id, input, packer_last_error());
        return j;
    }
    json_add_str(j, "path", path);
    abs = io_join(root, path);
    if (abs && io_is_file(abs) && hash_file(abs, hex, &size) == 0) {
        cJSON_AddTrueToObject(j, "exists");
        cJSON_AddNumberToObject(j, "size", (double)size);
        json_add_str(j, "hash", hex);
    } else {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: input not found", path);
        cJSON_AddFalseToObject(j, "exists");
        resp_diag(o->r, "warning", "input_missing", a->id, path, msg);
    }
    pk_free(path);
    pk_free(abs);
    return j;
}

void svc_get_asset_details(op *o)
{
    snap *s = project_snapshot(o->p);
    const asset_rec *a = svc_lookup(o, s);
    if (!a) {
        snap_unref(s);
        return;
    }
    resp_affected(o->r, a->id);
    cJSON *asset =
        json_add_item(resp_data(o->r), "asset", asset_json_fresh(a, project_fresh(o->p)));
    manifest *m = NULL;
    const char *root = project_root_dir(o->p);
    char *rootabs = io_join(root, a->root);
    if (asset)
        cJSON_AddBoolToObject(asset, "root_exists", rootabs && io_is_dir(rootabs));
    pk_free(rootabs);
    cJSON *inputs = asset ? cJSON_AddArrayToObject(asset, "inputs") : NULL;
    if (manifest_load(root, a->root, &m) == 0) {
        cJSON *mj = cJSON_CreateObject();
        if (mj) {
            json_add_str(mj, "kind", m->kind);
            json_add_str(mj, "address", m->address);
            json_add_item(mj, "inputs", json_str_array((const char *const *)m->inputs, m->ninputs));
            json_add_item(mj, "options", cJSON_Duplicate(m->options, 1));
            json_add_item(asset, "manifest", mj);
        }
        for (size_t i = 0; i < m->ninputs; i++)
            push(inputs, input_json(o, a, m->inputs[i]));
        if (strcmp(m->kind, a->kind) != 0) {
            char msg[300];
            snprintf(msg, sizeof msg, "manifest kind \"%s\" differs from registered kind \"%s\"",
                     m->kind, a->kind);
            resp_diag(o->r, "info", "kind_changed", a->id, a->root, msg);
        }
    } else {
        cJSON_AddNullToObject(asset, "manifest");
        resp_diag(o->r, "error", "manifest_invalid", a->id, a->root, packer_last_error());
    }
    manifest_free(m);
    resp_summary(o->r, "%s %s (%s, %s)", a->id, a->address, a->kind,
                 a->included ? "included" : "excluded");
    snap_unref(s);
}

void svc_status(op *o)
{
    snap *s = project_snapshot(o->p);
    cJSON *data = resp_data(o->r);
    json_add_str(data, "root", project_root_dir(o->p));
    json_add_str(data, "project_id", packer_project_id(o->p));
    json_add_str(data, "name", project_name(o->p));
    bool changed = project_check_disk(o->p, o);
    cJSON_AddBoolToObject(data, "disk_changed", changed);
    if (changed)
        resp_diag(o->r, "warning", "registry_diverged", NULL, ".packer/registry",
                  "the registry on disk was changed by another process; the next write is "
                  "refused while the runtime reconciles");
    cJSON_AddNumberToObject(data, "generation", (double)snap_generation(s));
    cJSON *assets = cJSON_AddObjectToObject(data, "assets");
    if (assets) {
        cJSON_AddNumberToObject(assets, "registered", (double)snap_count(s));
        cJSON_AddNumberToObject(assets, "included", (double)snap_included_count(s));
        cJSON_AddNumberToObject(assets, "excluded",
                                (double)(snap_count(s) - snap_included_count(s)));
    }
    json_add_item(data, "stale_assets", fresh_list(project_fresh(o->p)));
    packer_state st = packer_project_state(o->p);
    char *failure = st == PACKER_STATE_FAILED ? project_failure(o->p) : NULL;
    if (failure)
        resp_diag(o->r, "error", "reconcile_failed", NULL, NULL, failure);
    pk_free(failure);
    resp_summary(o->r, "%zu assets registered, %zu included; runtime %s", snap_count(s),
                 snap_included_count(s), packer_state_name(st));
    snap_unref(s);
}
