/*
 * registry.c - the registry mutation services: register_asset,
 * include_asset_in_build, exclude_asset_from_build, remove_asset.
 *
 * Each runs as one lane job: it validates against the current snapshot,
 * builds the next snapshot with a copy-on-write edit, turns the touched
 * shards into one transaction, and commits it (project_commit). Nothing is
 * published or announced before the commit is durable; a refused or failed
 * request changes nothing on disk or in memory. A batch (register with
 * many paths) is all or nothing.
 *
 * Threads: lane only.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Queue the touched shards and the bumped generation, then commit. */
int registry_commit_edit(op *o, snap_edit *e, txn *t, uint64_t gen)
{
    const snap *view = snap_edit_view(e);
    int rc = 0;
    for (int i = 0; rc == 0 && i < SNAP_SHARDS; i++) {
        if (!snap_edit_dirty(e, i))
            continue;
        char *text, path[40];
        size_t len;
        snprintf(path, sizeof path, ".packer/registry/%02x.json", i);
        rc = store_shard_text(view, i, &text, &len);
        if (rc == 0)
            rc = txn_add(t, path, text, len);
        pk_free(text);
    }
    char genbuf[32];
    snprintf(genbuf, sizeof genbuf, "%llu\n", (unsigned long long)(gen + 1));
    if (rc == 0)
        rc = txn_add(t, ".packer/generation", genbuf, strlen(genbuf));
    if (rc) {
        snap_edit_abort(e);
        return rc;
    }
    return project_commit(o->p, o, t, snap_edit_finish(e, gen + 1));
}

static void fail_io(op *o, int rc)
{
    resp_status(o->r, rc == PACKER_EPARSE || rc == PACKER_EIO || rc == PACKER_ENOMEM
                          ? PACKER_STATUS_FAILED
                          : PACKER_STATUS_REFUSED);
    resp_diag(o->r, "error", rc == PACKER_EPARSE ? "parse_error" : "io_error", NULL, NULL,
              packer_last_error());
    resp_summary(o->r, "%s", packer_last_error());
}

static cJSON *target_action(const char *id, const char *kind, const char *safety, const char *desc,
                            const char *target)
{
    cJSON *a = resp_action(id, kind, safety, desc);
    cJSON *t = a ? cJSON_GetObjectItem(a, "targets") : NULL;
    if (t && target)
        cJSON_AddItemToArray(t, cJSON_CreateString(target));
    return a;
}

static void announce(op *o, packer_event_kind kind, const char *summary, const char *id)
{
    const char *ids[1] = {id};
    op_emit(o, kind, summary, json_str_array(ids, 1), NULL);
}

/* ---- register_asset ---------------------------------------------------- */

typedef struct {
    op *o;
    const char *root;
    snap_edit *e;
    txn t;
    const char *address, *kind;
    bool exclude;
    packer_status worst; /* OK unless some path was refused or failed */
    size_t added, skipped;
    cJSON *discovered; /* asset ids, announced after commit */
    cJSON *manifests;  /* manifest paths written */
} reg_ctx;

static void reg_problem(reg_ctx *c, packer_status st, const char *code, const char *path,
                        const char *msg)
{
    resp_diag(c->o->r, "error", code, NULL, path, msg);
    if (st > c->worst)
        c->worst = st;
}

static int new_id(const snap *view, char out[17])
{
    for (int tries = 0; tries < 64; tries++) {
        hash_random_hex(out, 8);
        if (!snap_by_id(view, out))
            return 0;
    }
    return pk_err(PACKER_EIO, "cannot allocate a unique asset id");
}

/* The manifest of rel, writing a minimal one when --kind allows it. */
static int reg_manifest(reg_ctx *c, const char *rel, manifest **m)
{
    int rc = manifest_load(c->root, rel, m);
    if (rc != PACKER_ENOTFOUND || !c->kind)
        return rc;
    char *abs = io_join(c->root, rel), *text = NULL;
    char *mpath = io_join(rel, "asset.json");
    rc = abs && mpath ? manifest_minimal(abs, c->kind, &text) : PACKER_ENOMEM;
    if (rc == 0)
        rc = txn_add(&c->t, mpath, text, strlen(text));
    if (rc == 0)
        rc = manifest_parse(text, strlen(text), mpath, m);
    if (rc == 0 && !cJSON_AddItemToArray(c->manifests, cJSON_CreateString(mpath)))
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    pk_free(abs);
    pk_free(mpath);
    pk_free(text);
    return rc;
}

/* Inputs must stay in the workspace; missing ones are only a warning. */
static bool reg_inputs(reg_ctx *c, const char *rel, const manifest *m)
{
    for (size_t i = 0; i < m->ninputs; i++) {
        char *path = NULL;
        int rc = ws_confine_under(c->root, rel, m->inputs[i], &path);
        if (rc) {
            reg_problem(c, PACKER_STATUS_REFUSED, "input_escapes_workspace", rel,
                        packer_last_error());
            return false;
        }
        char *abs = io_join(c->root, path);
        if (abs && !io_is_file(abs)) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s: input not found", path);
            resp_diag(c->o->r, "warning", "input_missing", NULL, path, msg);
        }
        pk_free(abs);
        pk_free(path);
    }
    return true;
}

static void reg_one(reg_ctx *c, const char *given)
{
    char *rel = NULL, *abs = NULL, msg[1024];
    manifest *m = NULL;
    int rc = ws_confine(c->root, given, &rel);
    if (rc) {
        reg_problem(c, PACKER_STATUS_REFUSED, "path_outside_workspace", given, packer_last_error());
        goto out;
    }
    if (strcmp(rel, ".") == 0 || ws_is_owned(rel)) {
        snprintf(msg, sizeof msg, "%s: cannot register the workspace root or .packer/", given);
        reg_problem(c, PACKER_STATUS_REFUSED, "invalid_root", given, msg);
        goto out;
    }
    abs = io_join(c->root, rel);
    if (!abs || !io_is_dir(abs)) {
        snprintf(msg, sizeof msg, "%s: not a directory", rel);
        reg_problem(c, PACKER_STATUS_REFUSED, "root_missing", rel, msg);
        goto out;
    }
    const asset_rec *existing = snap_by_root(snap_edit_view(c->e), rel);
    if (existing) {
        snprintf(msg, sizeof msg, "%s: already registered as %s", rel, existing->id);
        resp_diag(c->o->r, "info", "already_registered", existing->id, rel, msg);
        c->skipped++;
        goto out;
    }
    rc = reg_manifest(c, rel, &m);
    if (rc == PACKER_ENOTFOUND) {
        snprintf(msg, sizeof msg,
                 "%s: no asset.json in this directory (pass --kind KIND to write a minimal one)",
                 rel);
        reg_problem(c, PACKER_STATUS_REFUSED, "manifest_missing", rel, msg);
        goto out;
    }
    if (rc) {
        reg_problem(c, PACKER_STATUS_FAILED, rc == PACKER_EPARSE ? "manifest_invalid" : "io_error",
                    rel, packer_last_error());
        goto out;
    }
    if (!reg_inputs(c, rel, m))
        goto out;
    const char *address = c->address ? c->address : m->address ? m->address : rel;
    if (!manifest_address_ok(address)) {
        snprintf(msg, sizeof msg, "%s: invalid address \"%s\"", rel, address);
        reg_problem(c, PACKER_STATUS_REFUSED, "invalid_address", rel, msg);
        goto out;
    }
    const asset_rec *clash =
        c->exclude ? NULL : snap_included_by_address(snap_edit_view(c->e), address);
    if (clash) {
        snprintf(msg, sizeof msg, "address \"%s\" is already used by included asset %s (%s)",
                 address, clash->id, clash->root);
        resp_blocker(c->o->r, "address_in_use", msg);
        reg_problem(c, PACKER_STATUS_REFUSED, "address_in_use", rel, msg);
        goto out;
    }
    char id[17];
    asset_rec *r = NULL;
    if ((rc = new_id(snap_edit_view(c->e), id)) == 0 &&
        !(r = rec_new(id, rel, address, m->kind, !c->exclude)))
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0)
        rc = snap_edit_put(c->e, r);
    if (rc) {
        reg_problem(c, PACKER_STATUS_FAILED, "io_error", rel, packer_last_error());
        goto out;
    }
    cJSON_AddItemToArray(c->discovered, cJSON_CreateString(id));
    c->added++;
out:
    manifest_free(m);
    pk_free(rel);
    pk_free(abs);
}

static void reg_announce(reg_ctx *c)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, c->manifests)
    {
        cJSON *a = target_action("write_manifest", "write_manifest", "safe",
                                 "write a minimal asset.json", m->valuestring);
        resp_applied(c->o->r, a);
        char s[600];
        snprintf(s, sizeof s, "wrote %s", m->valuestring);
        op_emit(c->o, PACKER_EV_ACTION_APPLIED, s, NULL, NULL);
    }
    const cJSON *id;
    cJSON *assets = cJSON_AddArrayToObject(resp_data(c->o->r), "assets");
    snap *s = project_snapshot(c->o->p);
    cJSON_ArrayForEach(id, c->discovered)
    {
        resp_affected(c->o->r, id->valuestring);
        const asset_rec *a = snap_by_id(s, id->valuestring);
        if (assets && a)
            cJSON_AddItemToArray(assets, svc_asset_json(a));
        char sum[600];
        snprintf(sum, sizeof sum, "registered %s at %s", id->valuestring, a ? a->root : "?");
        announce(c->o, PACKER_EV_ASSET_DISCOVERED, sum, id->valuestring);
    }
    snap_unref(s);
}

void svc_register_asset(op *o)
{
    reg_ctx c = {.o = o, .root = project_root_dir(o->p)};
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(o->params, "paths");
    c.address = json_get_str(o->params, "address");
    c.kind = json_get_str(o->params, "kind");
    c.exclude = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o->params, "exclude"));
    int n = cJSON_GetArraySize(paths);
    if (!cJSON_IsArray(paths) || n == 0) {
        resp_status(o->r, PACKER_STATUS_REFUSED);
        resp_blocker(o->r, "invalid_params", "\"paths\" must be a non-empty array of strings");
        resp_summary(o->r, "nothing to register");
        return;
    }
    if (c.address && n != 1) {
        resp_status(o->r, PACKER_STATUS_REFUSED);
        resp_blocker(o->r, "invalid_params", "\"address\" is only valid with exactly one path");
        resp_summary(o->r, "--address needs exactly one path");
        return;
    }
    if (c.kind)
        resp_set_op_class(o->r, PACKER_OP_WORKSPACE_MUTATION);
    snap *cur = NULL;
    int rc = project_begin_write(o->p, o, &cur);
    if (rc) {
        fail_io(o, rc);
        return;
    }
    c.e = snap_edit_begin(cur);
    c.discovered = cJSON_CreateArray();
    c.manifests = cJSON_CreateArray();
    if (!c.e || !c.discovered || !c.manifests) {
        fail_io(o, pk_err(PACKER_ENOMEM, "out of memory"));
        goto out;
    }
    int i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, paths)
    {
        if (cJSON_IsString(p))
            reg_one(&c, p->valuestring);
        else
            reg_problem(&c, PACKER_STATUS_REFUSED, "invalid_params", NULL,
                        "\"paths\" must hold strings");
        if (++i % 1000 == 0)
            op_progress(o, (uint64_t)i, (uint64_t)n, "validating asset roots");
    }
    if (c.worst != PACKER_STATUS_OK) {
        resp_status(o->r, c.worst);
        resp_summary(o->r, "nothing registered: %s",
                     c.worst == PACKER_STATUS_FAILED ? "a manifest could not be read"
                                                     : "a path was refused");
        goto out;
    }
    if (c.added == 0) {
        resp_summary(o->r, "nothing to do: %zu already registered", c.skipped);
        goto out;
    }
    rc = registry_commit_edit(o, c.e, &c.t, snap_generation(cur));
    c.e = NULL;
    if (rc) {
        fail_io(o, rc);
        goto out;
    }
    reg_announce(&c);
    if (c.manifests && cJSON_GetArraySize(c.manifests) == 0)
        resp_set_op_class(o->r, PACKER_OP_REGISTRY_MUTATION);
    resp_summary(o->r, "registered %zu asset%s%s", c.added, c.added == 1 ? "" : "s",
                 c.skipped ? " (some were already registered)" : "");
out:
    snap_edit_abort(c.e);
    txn_clear(&c.t);
    cJSON_Delete(c.discovered);
    cJSON_Delete(c.manifests);
    snap_unref(cur);
    project_end_write(o->p);
}

/* ---- include / exclude ------------------------------------------------- */

/* Shared start of the single-asset services: lock, look up. */
static const asset_rec *begin_single(op *o, snap **cur)
{
    if (!json_get_str(o->params, "asset"))
        return svc_lookup(o, *cur); /* refuses: nothing to look up */
    int rc = project_begin_write(o->p, o, cur);
    if (rc) {
        fail_io(o, rc);
        return NULL;
    }
    return svc_lookup(o, *cur);
}

static void set_included(op *o, bool include)
{
    snap *cur = NULL;
    const asset_rec *a = begin_single(o, &cur);
    txn t = {0};
    if (!a)
        goto out;
    resp_affected(o->r, a->id);
    json_add_item(resp_data(o->r), "asset", svc_asset_json(a));
    if (a->included == include) {
        resp_summary(o->r, "%s is already %s", a->id, include ? "included" : "excluded");
        goto out;
    }
    const asset_rec *clash = include ? snap_included_by_address(cur, a->address) : NULL;
    if (clash) {
        char msg[600];
        snprintf(msg, sizeof msg, "address \"%s\" is already used by included asset %s (%s)",
                 a->address, clash->id, clash->root);
        resp_status(o->r, PACKER_STATUS_REFUSED);
        resp_blocker(o->r, "address_in_use", msg);
        resp_summary(o->r, "cannot include %s: %s", a->id, msg);
        goto out;
    }
    asset_rec *r = rec_new(a->id, a->root, a->address, a->kind, include);
    snap_edit *e = snap_edit_begin(cur);
    int rc = r && e ? snap_edit_put(e, r) : (rec_unref(r), pk_err(PACKER_ENOMEM, "out of memory"));
    if (rc == 0)
        rc = registry_commit_edit(o, e, &t, snap_generation(cur));
    else
        snap_edit_abort(e);
    if (rc) {
        fail_io(o, rc);
        goto out;
    }
    char sum[600];
    snprintf(sum, sizeof sum, "%s %s (%s)", include ? "included" : "excluded", a->id, a->address);
    resp_applied(o->r,
                 target_action(include ? "include" : "exclude",
                               include ? "include_asset_in_build" : "exclude_asset_from_build",
                               "safe", sum, a->id));
    announce(o, PACKER_EV_ACTION_APPLIED, sum, a->id);
    resp_summary(o->r, "%s", sum);
out:
    txn_clear(&t);
    snap_unref(cur);
    if (cur)
        project_end_write(o->p);
}

void svc_include(op *o)
{
    set_included(o, true);
}

void svc_exclude(op *o)
{
    set_included(o, false);
}

/* ---- remove_asset ------------------------------------------------------- */

static bool add_str(cJSON *arr, const char *s)
{
    cJSON *item = cJSON_CreateString(s);
    if (item && cJSON_AddItemToArray(arr, item))
        return true;
    cJSON_Delete(item);
    return false;
}

/* Files delete_files would remove: the manifest and the declared inputs
 * that exist and stay inside the workspace. NULL when out of memory: a
 * partial list would delete less than the response announces. */
static cJSON *files_of(op *o, const asset_rec *a)
{
    const char *root = project_root_dir(o->p);
    cJSON *files = cJSON_CreateArray();
    manifest *m = NULL;
    char *mpath = io_join(a->root, "asset.json");
    char *mabs = mpath ? io_join(root, mpath) : NULL;
    bool ok = files && mabs && (!io_is_file(mabs) || add_str(files, mpath));
    int rc = ok ? manifest_load(root, a->root, &m) : 0;
    ok = ok && rc != PACKER_ENOMEM;
    for (size_t i = 0; ok && m && i < m->ninputs; i++) {
        char *p = NULL, *abs = NULL;
        rc = ws_confine_under(root, a->root, m->inputs[i], &p);
        if (rc == 0)
            ok = (abs = io_join(root, p)) && (!io_is_file(abs) || add_str(files, p));
        else
            ok = rc != PACKER_ENOMEM;
        pk_free(p);
        pk_free(abs);
    }
    manifest_free(m);
    pk_free(mpath);
    pk_free(mabs);
    if (!ok) {
        cJSON_Delete(files);
        return NULL;
    }
    return files;
}

void svc_remove_asset(op *o)
{
    bool del = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o->params, "delete_files"));
    bool consent = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o->params, "consent"));
    snap *cur = NULL;
    txn t = {0};
    cJSON *files = NULL;
    char sum[700];
    if (del)
        resp_set_op_class(o->r, PACKER_OP_WORKSPACE_MUTATION);
    const asset_rec *a = begin_single(o, &cur);
    if (!a)
        goto out;
    resp_affected(o->r, a->id);
    snprintf(sum, sizeof sum, "unregister %s (%s); files stay on disk", a->id, a->root);
    cJSON *unreg = target_action("unregister", "remove_asset", "safe", sum, a->id);
    cJSON *delete_act = NULL;
    if (del) {
        if (!(files = files_of(o, a))) {
            cJSON_Delete(unreg);
            fail_io(o, pk_err(PACKER_ENOMEM, "out of memory"));
            goto out;
        }
        snprintf(sum, sizeof sum, "delete %d file%s of %s (%s)", cJSON_GetArraySize(files),
                 cJSON_GetArraySize(files) == 1 ? "" : "s", a->id, a->root);
        delete_act = resp_action("delete_files", "delete_files", "destructive", sum);
        cJSON *targets = delete_act ? cJSON_Duplicate(files, 1) : NULL;
        if (targets && !cJSON_ReplaceItemInObject(delete_act, "targets", targets))
            cJSON_Delete(targets);
    }
    if (del && !consent) {
        resp_proposed(o->r, unreg);
        resp_proposed(o->r, delete_act);
        resp_status(o->r, PACKER_STATUS_PREVIEW);
        resp_blocker(o->r, "consent_required",
                     "deleting files is destructive: confirm with consent (--yes)");
        resp_summary(o->r, "preview: remove %s and delete %d file(s); nothing changed", a->id,
                     cJSON_GetArraySize(files));
        op_emit(o, PACKER_EV_PREVIEW_READY, "remove_asset preview ready", NULL, NULL);
        goto out;
    }
    const cJSON *f;
    int rc = 0;
    cJSON_ArrayForEach(f, files) if (rc == 0) rc = txn_add(&t, f->valuestring, NULL, 0);
    snap_edit *e = rc == 0 ? snap_edit_begin(cur) : NULL;
    if (rc == 0)
        rc = e ? snap_edit_del(e, a->id) : pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0)
        rc = registry_commit_edit(o, e, &t, snap_generation(cur));
    else
        snap_edit_abort(e);
    if (rc) {
        cJSON_Delete(unreg);
        cJSON_Delete(delete_act);
        fail_io(o, rc);
        goto out;
    }
    if (del) { /* best effort: the root directory goes only if now empty */
        char *abs = io_join(project_root_dir(o->p), a->root);
        if (abs)
            rmdir(abs);
        pk_free(abs);
    }
    resp_applied(o->r, unreg);
    announce(o, PACKER_EV_ACTION_APPLIED, "asset unregistered", a->id);
    if (delete_act) {
        resp_applied(o->r, delete_act);
        announce(o, PACKER_EV_ACTION_APPLIED, "asset files deleted", a->id);
    }
    resp_summary(o->r, "removed %s (%s)%s", a->id, a->root,
                 del ? " and deleted its files" : "; files left on disk");
out:
    cJSON_Delete(files);
    txn_clear(&t);
    snap_unref(cur);
    if (cur)
        project_end_write(o->p);
}
