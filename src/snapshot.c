/*
 * snapshot.c - immutable, reference-counted views of the registry.
 *
 * A snapshot is what every read sees: published once by the write lane,
 * never modified afterwards, freed when its last reader lets go. To keep a
 * mutation's cost independent of the number of assets, a snapshot is three
 * tables of 256 shards (by asset id, by address, by root path); shards and
 * asset records are themselves reference-counted and shared between
 * snapshots, and an edit copies only the shards it touches.
 *
 * Threads: snapshots may be read and ref'd/unref'd from any thread. A
 * snap_edit belongs to the one thread (the lane) that began it.
 */
#define _GNU_SOURCE /* qsort_r */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { T_ID, T_ADDR, T_ROOT, T_COUNT };

struct shard {
    atomic_int refs;
    size_t n, cap;
    asset_rec **v;
};

struct snap {
    atomic_int refs;
    uint64_t generation;
    size_t count, included;
    shard *t[T_COUNT][SNAP_SHARDS];
    /* all records sorted by root, computed on first use by any reader and
     * published with a compare-and-swap; the snapshot stays immutable */
    _Atomic(const asset_rec **) by_root;
};

struct snap_edit {
    snap *s;
    bool owned[T_COUNT][SNAP_SHARDS];
    bool dirty_id[SNAP_SHARDS];
};

/* ---- records ---------------------------------------------------------- */

/* One allocation per record, its strings after the struct: a registry of
 * 100,000 assets is loaded and freed by every CLI command. */
asset_rec *rec_new(const char *id, const char *root, const char *address, const char *kind,
                   bool included)
{
    kind = kind ? kind : "";
    size_t ni = strlen(id) + 1, nr = strlen(root) + 1, na = strlen(address) + 1;
    size_t nk = strlen(kind) + 1;
    asset_rec *r = pk_malloc(sizeof *r + ni + nr + na + nk);
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    char *at = (char *)(r + 1);
    r->id = memcpy(at, id, ni);
    r->root = memcpy(at += ni, root, nr);
    r->address = memcpy(at += nr, address, na);
    r->kind = memcpy(at + na, kind, nk);
    r->included = included;
    return r;
}

asset_rec *rec_ref(asset_rec *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

void rec_unref(asset_rec *r)
{
    if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    pk_free(r); /* its strings with it */
}

/* ---- keys ------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int snap_id_shard(const char *id)
{
    int hi = hexval(id[0]), lo = hi >= 0 ? hexval(id[1]) : -1;
    return lo >= 0 ? hi * 16 + lo : (int)(hash64(id) & 255);
}

static const char *key_of(int t, const asset_rec *r)
{
    return t == T_ID ? r->id : t == T_ADDR ? r->address : r->root;
}

static int shard_of(int t, const char *key)
{
    return t == T_ID ? snap_id_shard(key) : (int)(hash64(key) & 255);
}

/* Order within a shard: by key, then by id (addresses and roots repeat). */
static int rec_cmp(int t, const asset_rec *a, const char *key, const char *id)
{
    int c = strcmp(key_of(t, a), key);
    return c || t == T_ID || !id ? c : strcmp(a->id, id);
}

/* Index of the first element >= (key, id). */
static size_t lower_bound(const shard *sh, int t, const char *key, const char *id)
{
    size_t lo = 0, hi = sh ? sh->n : 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (rec_cmp(t, sh->v[mid], key, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- shards ----------------------------------------------------------- */

static void shard_unref(shard *sh)
{
    if (!sh || atomic_fetch_sub_explicit(&sh->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < sh->n; i++)
        rec_unref(sh->v[i]);
    pk_free(sh->v);
    pk_free(sh);
}

static shard *shard_clone(const shard *src, size_t extra)
{
    shard *sh = pk_calloc(1, sizeof *sh);
    if (!sh)
        return NULL;
    atomic_init(&sh->refs, 1);
    sh->cap = (src ? src->n : 0) + extra;
    sh->v = pk_malloc(sh->cap * sizeof *sh->v);
    if (!sh->v) {
        pk_free(sh);
        return NULL;
    }
    for (size_t i = 0; src && i < src->n; i++)
        sh->v[sh->n++] = rec_ref(src->v[i]);
    return sh;
}

/* ---- snapshots -------------------------------------------------------- */

snap *snap_empty(void)
{
    snap *s = pk_calloc(1, sizeof *s);
    if (s)
        atomic_init(&s->refs, 1);
    return s;
}

snap *snap_ref(snap *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void snap_unref(snap *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int t = 0; t < T_COUNT; t++)
        for (int i = 0; i < SNAP_SHARDS; i++)
            shard_unref(s->t[t][i]);
    pk_free((void *)atomic_load(&s->by_root));
    pk_free(s);
}

uint64_t snap_generation(const snap *s)
{
    return s->generation;
}

size_t snap_count(const snap *s)
{
    return s->count;
}

size_t snap_included_count(const snap *s)
{
    return s->included;
}

const asset_rec *snap_by_id(const snap *s, const char *id)
{
    const shard *sh = s->t[T_ID][shard_of(T_ID, id)];
    size_t i = lower_bound(sh, T_ID, id, NULL);
    return sh && i < sh->n && strcmp(sh->v[i]->id, id) == 0 ? sh->v[i] : NULL;
}

static const asset_rec *first_with(const snap *s, int t, const char *key, bool included_only)
{
    const shard *sh = s->t[t][shard_of(t, key)];
    for (size_t i = lower_bound(sh, t, key, ""); sh && i < sh->n; i++) {
        if (strcmp(key_of(t, sh->v[i]), key) != 0)
            break;
        if (!included_only || sh->v[i]->included)
            return sh->v[i];
    }
    return NULL;
}

const asset_rec *snap_by_root(const snap *s, const char *root)
{
    return first_with(s, T_ROOT, root, false);
}

const asset_rec *snap_included_by_address(const snap *s, const char *addr)
{
    return first_with(s, T_ADDR, addr, true);
}

const asset_rec *snap_by_address(const snap *s, const char *addr)
{
    return first_with(s, T_ADDR, addr, false);
}

static int cmp_root(const void *a, const void *b)
{
    const asset_rec *x = *(const asset_rec *const *)a, *y = *(const asset_rec *const *)b;
    int c = strcmp(x->root, y->root);
    return c ? c : strcmp(x->id, y->id);
}

const asset_rec *const *snap_all(const snap *s, size_t *n)
{
    snap *m = (snap *)s;
    *n = s->count;
    const asset_rec **v = atomic_load_explicit(&m->by_root, memory_order_acquire);
    if (v)
        return v;
    v = pk_malloc((s->count ? s->count : 1) * sizeof *v);
    if (!v)
        return NULL;
    size_t k = 0;
    for (int i = 0; i < SNAP_SHARDS; i++)
        for (size_t j = 0; s->t[T_ID][i] && j < s->t[T_ID][i]->n; j++)
            v[k++] = s->t[T_ID][i]->v[j];
    qsort(v, k, sizeof *v, cmp_root);
    const asset_rec **expected = NULL;
    if (!atomic_compare_exchange_strong_explicit(&m->by_root, &expected, v, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        pk_free(v); /* another reader won the race: use its array */
        v = expected;
    }
    return v;
}

static const asset_rec *const *table_shard(const snap *s, int t, int i, size_t *n)
{
    const shard *sh = s->t[t][i];
    *n = sh ? sh->n : 0;
    return sh ? (const asset_rec *const *)sh->v : NULL;
}

const asset_rec *const *snap_shard_items(const snap *s, int i, size_t *n)
{
    return table_shard(s, T_ID, i, n);
}

const asset_rec *const *snap_root_shard_items(const snap *s, int i, size_t *n)
{
    return table_shard(s, T_ROOT, i, n);
}

/* ---- editing ---------------------------------------------------------- */

snap_edit *snap_edit_begin(const snap *base)
{
    snap_edit *e = pk_calloc(1, sizeof *e);
    snap *s = snap_empty();
    if (!e || !s) {
        pk_free(e);
        pk_free(s);
        return NULL;
    }
    s->generation = base->generation;
    s->count = base->count;
    s->included = base->included;
    for (int t = 0; t < T_COUNT; t++)
        for (int i = 0; i < SNAP_SHARDS; i++)
            if ((s->t[t][i] = base->t[t][i]))
                atomic_fetch_add_explicit(&s->t[t][i]->refs, 1, memory_order_relaxed);
    e->s = s;
    return e;
}

/* Make shard (t, i) private to the edit with room for `more` entries,
 * growing it geometrically; its entries stay as they were. */
static int own_room(snap_edit *e, int t, int i, size_t more)
{
    shard *sh = e->s->t[t][i];
    size_t n = sh ? sh->n : 0, cap = n + more > 2 * n + 4 ? n + more : 2 * n + 4;
    if (e->owned[t][i] && sh->cap - sh->n >= more)
        return 0;
    if (e->owned[t][i]) { /* private already: grow in place, no reference churn */
        asset_rec **v = pk_realloc(sh->v, cap * sizeof *v);
        if (!v)
            return PACKER_ENOMEM;
        sh->v = v;
        sh->cap = cap;
        return 0;
    }
    shard *copy = shard_clone(sh, cap - n);
    if (!copy)
        return PACKER_ENOMEM;
    shard_unref(sh);
    e->s->t[t][i] = copy;
    e->owned[t][i] = true;
    return 0;
}

/* Shard (t, i) made private to the edit, with room for one more entry. */
static shard *own(snap_edit *e, int t, int i)
{
    return own_room(e, t, i, 1) == 0 ? e->s->t[t][i] : NULL;
}

static int index_del(snap_edit *e, int t, const asset_rec *r)
{
    int i = shard_of(t, key_of(t, r));
    shard *sh = own(e, t, i);
    if (!sh)
        return PACKER_ENOMEM;
    size_t k = lower_bound(sh, t, key_of(t, r), r->id);
    if (k < sh->n && sh->v[k] == r) {
        rec_unref(sh->v[k]);
        memmove(sh->v + k, sh->v + k + 1, (sh->n - k - 1) * sizeof *sh->v);
        sh->n--;
    }
    return 0;
}

static int index_put(snap_edit *e, int t, asset_rec *r)
{
    int i = shard_of(t, key_of(t, r));
    shard *sh = own(e, t, i);
    if (!sh)
        return PACKER_ENOMEM;
    size_t k = lower_bound(sh, t, key_of(t, r), r->id);
    memmove(sh->v + k + 1, sh->v + k, (sh->n - k) * sizeof *sh->v);
    sh->v[k] = rec_ref(r);
    sh->n++;
    return 0;
}

/* Reserve room in all three shards first so that a failure leaves the
 * edit unchanged. */
static int reserve(snap_edit *e, const asset_rec *r)
{
    for (int t = 0; t < T_COUNT; t++)
        if (!own(e, t, shard_of(t, key_of(t, r))))
            return pk_err(PACKER_ENOMEM, "out of memory");
    return 0;
}

int snap_edit_del(snap_edit *e, const char *id)
{
    asset_rec *old = (asset_rec *)snap_by_id(e->s, id);
    if (!old)
        return PACKER_ENOTFOUND;
    int rc = reserve(e, old);
    if (rc)
        return rc;
    rec_ref(old);
    for (int t = 0; t < T_COUNT; t++)
        index_del(e, t, old);
    e->s->count--;
    e->s->included -= old->included;
    e->dirty_id[snap_id_shard(id)] = true;
    rec_unref(old);
    return 0;
}

int snap_edit_put(snap_edit *e, asset_rec *r)
{
    int rc = reserve(e, r);
    asset_rec *old = rc == 0 ? (asset_rec *)snap_by_id(e->s, r->id) : NULL;
    if (rc == 0 && old)
        rc = reserve(e, old);
    if (rc == 0 && old)
        snap_edit_del(e, r->id);
    for (int t = 0; rc == 0 && t < T_COUNT; t++)
        index_put(e, t, r); /* cannot fail: room reserved */
    if (rc == 0) {
        e->s->count++;
        e->s->included += r->included;
        e->dirty_id[snap_id_shard(r->id)] = true;
    }
    rec_unref(r);
    return rc;
}

/* qsort_r order of table *t: the order lower_bound searches (rec_cmp). */
static int cmp_in_table(const void *a, const void *b, void *t)
{
    const asset_rec *y = *(asset_rec *const *)b;
    int table = *(const int *)t;
    return rec_cmp(table, *(asset_rec *const *)a, key_of(table, y), y->id);
}

int snap_edit_put_all(snap_edit *e, asset_rec **v, size_t n, const char **dup)
{
    *dup = NULL;
    size_t(*more)[SNAP_SHARDS] = pk_calloc(T_COUNT, sizeof *more);
    unsigned char(*at)[T_COUNT] = pk_malloc((n + 1) * sizeof *at); /* each record's shards */
    int rc = more && at ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
    for (size_t k = 0; rc == 0 && k < n; k++)
        for (int t = 0; t < T_COUNT; t++)
            more[t][at[k][t] = (unsigned char)shard_of(t, key_of(t, v[k]))]++;
    for (int t = 0; t < T_COUNT; t++)
        for (int i = 0; rc == 0 && i < SNAP_SHARDS; i++)
            if (more[t][i] && own_room(e, t, i, more[t][i]) != 0)
                rc = pk_err(PACKER_ENOMEM, "out of memory");
    for (size_t k = 0; rc == 0 && k < n; k++) {
        for (int t = 0; t < T_COUNT; t++) {
            shard *sh = e->s->t[t][at[k][t]];
            sh->v[sh->n++] = rec_ref(v[k]);
        }
        e->s->count++;
        e->s->included += v[k]->included;
        e->dirty_id[at[k][T_ID]] = true;
    }
    for (int t = 0; t < T_COUNT; t++)
        for (int i = 0; rc == 0 && i < SNAP_SHARDS; i++) {
            shard *sh = e->s->t[t][i];
            if (!more[t][i] || sh->n < 2)
                continue;
            qsort_r(sh->v, sh->n, sizeof *sh->v, cmp_in_table, &t);
            for (size_t k = 1; t == T_ID && k < sh->n; k++)
                if (strcmp(sh->v[k - 1]->id, sh->v[k]->id) == 0) {
                    *dup = sh->v[k]->id;
                    rc = PACKER_EEXIST;
                    break;
                }
        }
    for (size_t k = 0; k < n; k++)
        rec_unref(v[k]);
    pk_free(more);
    pk_free(at);
    return rc;
}

const snap *snap_edit_view(const snap_edit *e)
{
    return e->s;
}

bool snap_edit_dirty(const snap_edit *e, int i)
{
    return e->dirty_id[i];
}

snap *snap_edit_finish(snap_edit *e, uint64_t generation)
{
    snap *s = e->s;
    s->generation = generation;
    pk_free(e);
    return s;
}

void snap_edit_abort(snap_edit *e)
{
    if (!e)
        return;
    snap_unref(e->s);
    pk_free(e);
}

/* ---- differences ---------------------------------------------------------- */

static bool rec_same(const asset_rec *a, const asset_rec *b)
{
    return a == b || (strcmp(a->root, b->root) == 0 && strcmp(a->address, b->address) == 0 &&
                      strcmp(a->kind, b->kind) == 0 && a->included == b->included);
}

static int diff_cmp(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

cJSON *snap_diff_ids(const snap *a, const snap *b)
{
    size_t cap = 64, n = 0;
    const char **ids = pk_malloc(cap * sizeof *ids);
    for (int s = 0; ids && s < SNAP_SHARDS; s++) {
        size_t na, nb, i = 0, j = 0;
        const asset_rec *const *va = snap_shard_items(a, s, &na);
        const asset_rec *const *vb = snap_shard_items(b, s, &nb);
        if (va == vb && na == nb)
            continue; /* shared shard: copy-on-write left it untouched */
        while (ids && (i < na || j < nb)) {
            int c = i == na ? 1 : j == nb ? -1 : strcmp(va[i]->id, vb[j]->id);
            const char *id = c < 0 ? va[i]->id : vb[j]->id;
            bool differs = c != 0 || !rec_same(va[i], vb[j]);
            i += c <= 0;
            j += c >= 0;
            if (!differs)
                continue;
            if (n == cap) {
                const char **v = pk_realloc(ids, (cap *= 2) * sizeof *ids);
                if (!v)
                    pk_free(ids);
                ids = v;
            }
            if (ids)
                ids[n++] = id;
        }
    }
    if (!ids)
        return NULL;
    qsort(ids, n, sizeof *ids, diff_cmp);
    cJSON *out = json_str_array(ids, n);
    pk_free(ids);
    return out;
}
