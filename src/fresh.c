/*
 * fresh.c - per-asset freshness: the set of registered assets whose
 * manifest or files changed on disk since the snapshot (or their last
 * build) was taken.
 *
 * The observer marks assets stale; a successful build clears the assets
 * it built, but only those not marked again after the build started (each
 * mark carries a sequence number, and the build passes the one it saw at
 * its start), so a change made while a build runs is never forgotten. A
 * reconcile drops ids the new snapshot no longer has. The runtime state
 * turns healthy <-> stale with the set (project.c: project_refresh_state).
 *
 * Invariants: ids are sorted and unique; `count` mirrors n for lock-free
 * "is anything stale" checks.
 *
 * Threads: any; one mutex, held for memory operations only, never across
 * I/O or callbacks. Lock order: project.c's state mutex before this one.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct {
    char *id;
    uint64_t seq; /* mark number of the last change */
} stale_ent;

struct fresh {
    pthread_mutex_t mu;
    stale_ent *v;
    size_t n, cap;
    uint64_t seq;
    atomic_size_t count;
};

fresh *fresh_new(void)
{
    fresh *f = pk_calloc(1, sizeof *f);
    if (f)
        pthread_mutex_init(&f->mu, NULL);
    return f;
}

void fresh_free(fresh *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        pk_free(f->v[i].id);
    pk_free(f->v);
    pthread_mutex_destroy(&f->mu);
    pk_free(f);
}

static int cmp_ent(const void *key, const void *ent)
{
    return strcmp(key, ((const stale_ent *)ent)->id);
}

/* Merge the sorted unique ids into the set; newly stale ids are appended
 * to `added` (may be NULL). Under mu. */
static int merge(fresh *f, char **ids, size_t n, cJSON *added)
{
    if (f->n + n > f->cap) {
        size_t cap = (f->n + n) * 2;
        stale_ent *v = pk_realloc(f->v, cap * sizeof *v);
        if (!v)
            return pk_err(PACKER_ENOMEM, "out of memory");
        f->v = v;
        f->cap = cap;
    }
    uint64_t seq = ++f->seq;
    /* merge from the back, in place: v[0..n) and ids[0..n) into v[0..n+k) */
    size_t fresh_ids = 0;
    for (size_t j = 0; j < n; j++)
        fresh_ids += !bsearch(ids[j], f->v, f->n, sizeof *f->v, cmp_ent);
    size_t i = f->n, j = n, out = f->n + fresh_ids;
    while (j > 0) {
        int c = i > 0 ? strcmp(f->v[i - 1].id, ids[j - 1]) : -1;
        if (c > 0) {
            f->v[--out] = f->v[--i];
        } else if (c == 0) {
            f->v[--i].seq = seq;
            f->v[--out] = f->v[i];
            pk_free(ids[--j]);
        } else {
            f->v[--out] = (stale_ent){ids[--j], seq};
            if (added)
                cJSON_AddItemToArray(added, cJSON_CreateString(ids[j]));
        }
    }
    f->n += fresh_ids;
    atomic_store(&f->count, f->n);
    return 0;
}

int fresh_mark(fresh *f, const char *const *ids, size_t n, cJSON *added)
{
    char **v = pk_calloc(n ? n : 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; v && i < n; i++)
        if (!(v[k++] = pk_strdup(ids[i])))
            break;
    if (!v || k < n) {
        for (size_t i = 0; v && i < k; i++)
            pk_free(v[i]);
        pk_free(v);
        return pk_err(PACKER_ENOMEM, "out of memory");
    }
    qsort(v, n, sizeof *v, str_ptr_cmp);
    size_t u = 0; /* dedupe */
    for (size_t i = 0; i < n; i++) {
        if (u > 0 && strcmp(v[u - 1], v[i]) == 0)
            pk_free(v[i]);
        else
            v[u++] = v[i];
    }
    pthread_mutex_lock(&f->mu);
    int rc = merge(f, v, u, added);
    pthread_mutex_unlock(&f->mu);
    if (rc)
        for (size_t i = 0; i < u; i++)
            pk_free(v[i]);
    pk_free(v);
    return rc;
}

uint64_t fresh_seq(fresh *f)
{
    pthread_mutex_lock(&f->mu);
    uint64_t s = f->seq;
    pthread_mutex_unlock(&f->mu);
    return s;
}

size_t fresh_count(const fresh *f)
{
    return f ? atomic_load(&((fresh *)f)->count) : 0;
}

bool fresh_is_stale(fresh *f, const char *id)
{
    if (!fresh_count(f))
        return false;
    pthread_mutex_lock(&f->mu);
    bool out = bsearch(id, f->v, f->n, sizeof *f->v, cmp_ent) != NULL;
    pthread_mutex_unlock(&f->mu);
    return out;
}

/* Drop every id for which drop(ctx, id, seq) says so; dropped ids go to
 * `removed` (may be NULL). */
static void fresh_filter(fresh *f, bool (*drop)(void *, const char *, uint64_t), void *ctx,
                         cJSON *removed)
{
    pthread_mutex_lock(&f->mu);
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (drop(ctx, f->v[i].id, f->v[i].seq)) {
            if (removed)
                cJSON_AddItemToArray(removed, cJSON_CreateString(f->v[i].id));
            pk_free(f->v[i].id);
        } else {
            f->v[k++] = f->v[i];
        }
    }
    f->n = k;
    atomic_store(&f->count, k);
    pthread_mutex_unlock(&f->mu);
}

typedef struct {
    const snap *s;
    uint64_t upto;
} built_ctx;

static bool drop_built(void *ctx, const char *id, uint64_t seq)
{
    built_ctx *b = ctx;
    const asset_rec *a = snap_by_id(b->s, id);
    return !a || (a->included && seq <= b->upto);
}

static bool drop_unregistered(void *ctx, const char *id, uint64_t seq)
{
    (void)seq;
    return snap_by_id(ctx, id) == NULL;
}

void fresh_built(fresh *f, const snap *s, uint64_t upto, cJSON *removed)
{
    built_ctx b = {s, upto};
    if (fresh_count(f))
        fresh_filter(f, drop_built, &b, removed);
}

void fresh_prune(fresh *f, const snap *s, cJSON *removed)
{
    if (fresh_count(f))
        fresh_filter(f, drop_unregistered, (void *)s, removed);
}

cJSON *fresh_list(fresh *f)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr || !fresh_count(f))
        return arr;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(f->v[i].id));
    pthread_mutex_unlock(&f->mu);
    return arr;
}
