/*
 * obs_batch.c - what one coalesced batch of changed paths means.
 *
 * The observer (observe.c) collects paths; here each is checked against
 * the baseline stat it last knew (no difference, or a file that came and
 * went, is no change) and against packer's own writes, the baseline is
 * brought up to date, and the changes are mapped to assets through the
 * published snapshot: a path in a registered asset root makes that asset
 * stale, an asset.json outside every registered root is a discovered
 * root. One batch gives at most one asset_changed and one
 * asset_discovered event, whatever the number of files; the stale state
 * is announced before asset_changed, so a subscriber that sees the change
 * can already read it in runtime_state.
 *
 * Invariants: nothing here writes to the workspace; the snapshot used is
 * a reference taken once per batch.
 *
 * Threads: the observer thread of the project.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

typedef struct {
    obs_batch *b;
    const snap *s;
    const char **ids; /* borrowed from s */
    size_t nids, capids;
    cJSON *paths, *found;
    size_t changed;
} classify_ctx;

/* The registered asset whose root holds path (nearest enclosing root). */
static const asset_rec *owner_of(const snap *s, const char *path)
{
    char *dir = pk_strdup(path);
    const asset_rec *a = NULL;
    for (char *slash; !a && dir && (slash = strrchr(dir, '/'));) {
        *slash = '\0';
        a = snap_by_root(s, dir);
    }
    pk_free(dir);
    return a;
}

static void add_id(classify_ctx *c, const char *id)
{
    if (c->nids == c->capids) {
        size_t cap = c->capids ? c->capids * 2 : 64;
        const char **v = pk_realloc(c->ids, cap * sizeof *v);
        if (!v)
            return;
        c->ids = v;
        c->capids = cap;
    }
    c->ids[c->nids++] = id;
}

/* A new asset.json outside every registered root names a discovered root. */
static void maybe_discovered(classify_ctx *c, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || strcmp(slash + 1, "asset.json") != 0)
        return;
    char *dir = pk_strndup(path, (size_t)(slash - path));
    if (dir && !snap_by_root(c->s, dir))
        cJSON_AddItemToArray(c->found, cJSON_CreateString(dir));
    pk_free(dir);
}

static void classify_one(ptab_ent *pe, void *ctx)
{
    classify_ctx *c = ctx;
    obs_batch *b = c->b;
    char *abs = pk_asprintf("%s/%s", b->root, pe->key);
    struct stat st;
    cache_stat cur = {0};
    bool present = abs && lstat(abs, &st) == 0;
    pk_free(abs);
    if (present)
        cache_stat_of(&st, &cur);
    ptab_ent *base = ptab_get(b->base, pe->key);
    bool known = base && base->present;
    if (!present && !known)
        return; /* came and went (an editor's temp file): nothing changed */
    if (present && known && cache_stat_same(&base->st, &cur))
        return;
    if (present && (base || (base = ptab_put(b->base, pe->key)))) {
        base->st = cur;
        base->present = true;
    } else if (!present) {
        ptab_del(b->base, pe->key);
    }
    if (b->own(b->own_ctx, pe->key, present, &cur))
        return;
    c->changed++;
    if (cJSON_GetArraySize(c->paths) < OBS_SAMPLE)
        cJSON_AddItemToArray(c->paths, cJSON_CreateString(pe->key));
    const asset_rec *a = owner_of(c->s, pe->key);
    if (a)
        add_id(c, a->id);
    else if (present)
        maybe_discovered(c, pe->key);
}

static cJSON *extra_paths(cJSON *paths, size_t count, bool rescan)
{
    cJSON *extra = cJSON_CreateObject();
    if (!extra) {
        cJSON_Delete(paths);
        return NULL;
    }
    json_add_item(extra, "paths", paths);
    cJSON_AddNumberToObject(extra, "path_count", (double)count);
    if (rescan)
        cJSON_AddTrueToObject(extra, "rescan");
    return extra;
}

void obs_batch_run(obs_batch *b)
{
    snap *s = project_snapshot(b->p);
    classify_ctx c = {.b = b, .s = s};
    c.paths = cJSON_CreateArray();
    c.found = cJSON_CreateArray();
    ptab_each(b->pending, classify_one, &c);
    /* unique ids, sorted */
    if (c.nids) /* qsort wants an array, even for nothing */
        qsort(c.ids, c.nids, sizeof *c.ids, str_ptr_cmp);
    size_t u = 0;
    for (size_t i = 0; i < c.nids; i++)
        if (u == 0 || strcmp(c.ids[u - 1], c.ids[i]) != 0)
            c.ids[u++] = c.ids[i];
    c.nids = u;
    b->changed_assets = u;
    if (u) {
        cJSON *added = cJSON_CreateArray();
        if (fresh_mark(project_fresh(b->p), c.ids, u, added) == 0)
            project_refresh_state(b->p, b->o, added);
        else
            cJSON_Delete(added);
        char summary[128];
        snprintf(summary, sizeof summary, "%zu asset%s changed on disk (%zu path%s)", u,
                 u == 1 ? "" : "s", c.changed, c.changed == 1 ? "" : "s");
        op_emit(b->o, PACKER_EV_ASSET_CHANGED, summary, json_str_array(c.ids, u),
                extra_paths(c.paths, c.changed, b->rescan));
        c.paths = NULL;
    }
    int nfound = cJSON_GetArraySize(c.found);
    if (nfound) {
        char summary[128];
        snprintf(summary, sizeof summary, "%d unregistered asset root%s discovered", nfound,
                 nfound == 1 ? "" : "s");
        op_emit(b->o, PACKER_EV_ASSET_DISCOVERED, summary, NULL,
                extra_paths(c.found, (size_t)nfound, b->rescan));
        c.found = NULL;
    }
    cJSON_Delete(c.paths);
    cJSON_Delete(c.found);
    pk_free(c.ids);
    snap_unref(s);
}
