/*
 * build.c - the build service: registered, included assets -> a pack file
 * and the compile surface (addressables.json) in the output directory.
 *
 * One build is one lane job holding the workspace lock, so builds and
 * registry writes never interleave. Its phases:
 *   1. scan, on `jobs` workers: each included asset's cache key. While an
 *      asset's manifest, inputs and recipe have the stats and identity its
 *      last build recorded (the cache's assets-index), the key is known
 *      from stats alone; otherwise validate the asset (structural errors
 *      block the build and leave the output directory exactly as it was),
 *      hash its inputs (stat index first) and compute the key;
 *   2. if every key is cached and the outputs were written from exactly
 *      these keys and are untouched since, stop: nothing to do;
 *   3. verify cached blobs (a damaged one is rebuilt, never packed), and
 *      run the recipes of the misses in the sandbox, on `jobs` workers;
 *   4. write the outputs into a staging directory and swap it with the
 *      output directory in one rename (RENAME_EXCHANGE): readers and
 *      crashes see the previous complete output or the new one.
 * Events are published only by the lane thread, in address order, so they
 * stay in causal order. A cancellation token (cancel.c) stops the build
 * between assets and at the latest just before phase 4; never during it.
 *
 * This file holds the phases and the service; build_out.c the output side
 * (writing and publishing the outputs, the up-to-date stamps, the --verify
 * comparison), pool.c the workers. build.h is the state they share.
 *
 * Output bytes depend only on (address, asset_id, blob) of the included
 * assets: incremental equals clean, on any path.
 *
 * Threads: lane only (plus the workers it starts and joins).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "build.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- phase 1: scan ------------------------------------------------------ */

/* A structural error of the item's asset, reported by the lane later. */
static bool structural(result *r, const char *code, const char *path, const char *msg)
{
    r->code = code;
    r->path = path ? pk_strdup(path) : NULL;
    r->error = pk_strdup(msg);
    return false;
}

static int cmp_address(const void *x, const void *y)
{
    return strcmp((*(const asset_rec *const *)x)->address, (*(const asset_rec *const *)y)->address);
}

static void item_clear(build_item *it)
{
    for (size_t k = 0; k < it->ninputs; k++) {
        pk_free(it->inputs[k].name);
        pk_free(it->inputs[k].path);
    }
    pk_free(it->inputs);
    pk_free((char *)it->kind);
    pk_free(it->manifest_text);
    cJSON_Delete(it->options);
    it->inputs = NULL;
    it->ninputs = 0;
    it->kind = NULL;
    it->manifest_text = NULL;
    it->options = NULL;
}

static bool item_inputs(build_ctx *b, const manifest *m, build_item *it, result *r)
{
    it->inputs = pk_calloc(m->ninputs + 1, sizeof *it->inputs);
    if (!it->inputs)
        return structural(r, "io_error", NULL, "out of memory");
    for (size_t k = 0; k < m->ninputs; k++) {
        build_input *in = &it->inputs[it->ninputs];
        char msg[700];
        if (ws_confine_under(b->root, it->root, m->inputs[k], &in->path) != 0)
            return structural(r, "input_escapes_workspace", it->root, packer_last_error());
        in->name = pk_strdup(m->inputs[k]);
        it->ninputs++;
        struct stat st;
        if (fstatat(b->rootfd, in->path, &st, 0) != 0 || !S_ISREG(st.st_mode)) {
            snprintf(msg, sizeof msg, "%s: input of %s not found", in->path, it->asset_id);
            return structural(r, "input_missing", in->path, msg);
        }
    }
    return true;
}

static char *manifest_path(const build_item *it)
{
    return io_join(it->root, "asset.json");
}

/* Fill it from its manifest; false after noting a structural error. */
static bool collect_one(build_ctx *b, build_item *it, result *r)
{
    char msg[700];
    manifest *m = NULL;
    struct stat st;
    if (fstatat(b->rootfd, it->root, &st, 0) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(msg, sizeof msg, "%s: asset root of %s is missing", it->root, it->asset_id);
        return structural(r, "root_missing", it->root, msg);
    }
    char *mpath = manifest_path(it);
    r->manifest_ok = mpath && fstatat(b->rootfd, mpath, &st, 0) == 0;
    pk_free(mpath);
    if (r->manifest_ok) {
        cache_stat_of(&st, &r->manifest);
        r->manifest_ok = !cache_stat_racy(&r->manifest);
    }
    if (manifest_load(b->root, it->root, &m) != 0)
        return structural(r, "manifest_invalid", it->root, packer_last_error());
    bool ok = true;
    const char *why = NULL;
    const char *kind = m->kind; /* the manifest is the truth for kind */
    if (!recipes_id(b->rs, kind, &why)) {
        snprintf(msg, sizeof msg, "%s: kind \"%s\" has %s", it->root, kind,
                 why ? why : "no recipe (add recipes/<kind>.lua)");
        ok = structural(r, why ? "recipe_invalid" : "unknown_kind", it->root, msg);
    }
    if (ok)
        ok = item_inputs(b, m, it, r);
    if (ok) {
        cJSON *mj = cJSON_CreateObject();
        if (mj) {
            json_add_str(mj, "kind", kind);
            cJSON_AddItemToObject(mj, "inputs",
                                  json_str_array((const char *const *)m->inputs, m->ninputs));
            cJSON_AddItemToObject(mj, "options", cJSON_Duplicate(m->options, 1));
        }
        it->manifest_text = mj ? json_canonical(mj, false) : NULL;
        it->options = cJSON_Duplicate(m->options, 1);
        cJSON_Delete(mj);
        it->kind = pk_strdup(kind);
        ok = it->manifest_text && it->options && it->kind;
        if (!ok)
            structural(r, "io_error", NULL, "out of memory");
    }
    manifest_free(m);
    return ok;
}

static void key_add(XXH3_state_t *st, const char *s)
{
    XXH3_128bits_update(st, s, strlen(s) + 1); /* with the NUL: unambiguous */
}

/* The cache key of it, built by the recipe with identity recipe_id. */
static int compute_key(const char *recipe_id, const build_item *it, result *r)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return pk_err(PACKER_ENOMEM, "out of memory");
    XXH3_128bits_reset(st);
    key_add(st, "packer-build-1");
    key_add(st, recipe_id);
    key_add(st, it->asset_id);
    key_add(st, it->address);
    key_add(st, it->manifest_text);
    for (size_t k = 0; k < it->ninputs; k++) {
        key_add(st, it->inputs[k].name);
        key_add(st, it->inputs[k].hash);
    }
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    hash_to_hex(c.digest, r->key);
    return 0;
}

/* Look the key up. An 'R' object counts only while its input still has
 * the recorded hash; a 'B' object's bytes are checked later (verify_one),
 * and only when the outputs are to be written. */
static void lookup(build_ctx *b, build_item *it, result *r)
{
    int rc = cache_get(b->cache, r->key, &r->obj);
    if (rc == PACKER_ENOTFOUND)
        return;
    if (rc == 0 && r->obj.type == 'R') {
        const build_input *in = NULL;
        for (size_t k = 0; k < it->ninputs; k++)
            if (strcmp(it->inputs[k].path, r->obj.ref_path) == 0)
                in = &it->inputs[k];
        unsigned char h[16];
        if (!in || !hash_from_hex(in->hash, h) || memcmp(h, r->obj.hash, 16) != 0)
            rc = PACKER_EPARSE;
    }
    if (rc == 0) {
        r->hit = true;
        return;
    }
    r->corrupt = true;
    cache_obj_clear(&r->obj);
}

/* The key from the asset's memo, if everything it depended on has the
 * stat it had; the inputs are filled from the memo and the stat index. */
static bool memo_key(build_ctx *b, build_item *it, result *r)
{
    const cache_memo *m = cache_memo_get(b->cache, it->asset_id);
    const char *why;
    const char *rid = m && m->kind ? recipes_id(b->rs, m->kind, &why) : NULL;
    if (!rid || strcmp(m->address, it->address) != 0 || strcmp(m->root, it->root) != 0 ||
        strcmp(rid, m->recipe_id) != 0)
        return false;
    char *mpath = manifest_path(it);
    struct stat st;
    cache_stat cs;
    bool same = mpath && fstatat(b->rootfd, mpath, &st, 0) == 0;
    pk_free(mpath);
    if (!same || (cache_stat_of(&st, &cs), !cache_stat_same(&cs, &m->manifest)))
        return false;
    it->inputs = pk_calloc(m->ninputs + 1, sizeof *it->inputs);
    if (!it->inputs)
        return false;
    for (size_t k = 0; k < m->ninputs; k++) {
        build_input *in = &it->inputs[it->ninputs];
        if (fstatat(b->rootfd, m->inputs[k], &st, 0) != 0)
            return false;
        cache_stat_of(&st, &cs);
        if (!cache_input_known(b->cache, m->inputs[k], &cs, in->hash) ||
            !(in->path = pk_strdup(m->inputs[k])))
            return false;
        in->size = cs.size;
        it->ninputs++;
    }
    it->kind = pk_strdup(m->kind);
    memcpy(r->key, m->key, sizeof r->key);
    return it->kind != NULL;
}

/* Validate, hash and key one asset from its manifest (no memo). */
static void scan_full(build_ctx *b, build_item *it, result *r)
{
    item_clear(it);
    r->memo = false;
    if (!collect_one(b, it, r))
        return;
    for (size_t k = 0; k < it->ninputs; k++) {
        build_input *in = &it->inputs[k];
        if (cache_hash_input(b->cache, b->rootfd, in->path, in->hash, &in->size) != 0) {
            r->failed = true;
            r->error = pk_strdup(packer_last_error());
            return;
        }
    }
    const char *why;
    compute_key(recipes_id(b->rs, it->kind, &why), it, r);
    if (!b->clean)
        lookup(b, it, r);
}

bool build_root_proves(const char *root, int rootfd, recipe_set *rs, cache *c, const char *asset_id,
                       const char *cand)
{
    const cache_memo *m = cache_memo_get(c, asset_id);
    if (!m || !m->kind)
        return false;
    build_ctx b = {.root = root, .rootfd = rootfd, .rs = rs, .cache = c, .clean = true};
    build_item it = {.asset_id = asset_id, .address = m->address, .root = cand};
    result r = {0};
    scan_full(&b, &it, &r);
    bool same = !r.code && !r.failed && it.ninputs == m->ninputs &&
                compute_key(m->recipe_id, &it, &r) == 0 && strcmp(r.key, m->key) == 0;
    item_clear(&it);
    pk_free(r.path);
    pk_free(r.error);
    return same;
}

static int scan_one(void *ctx, size_t i, void *worker)
{
    build_ctx *b = ctx;
    (void)worker;
    build_item *it = &b->items[i];
    result *r = &b->res[i];
    double t0 = now_ms();
    if (!b->clean && memo_key(b, it, r)) {
        lookup(b, it, r);
        r->memo = r->hit;
    }
    if (!r->memo)
        scan_full(b, it, r);
    r->ms = now_ms() - t0;
    return 0;
}

static int cmp_pair_root(const void *x, const void *y)
{
    const asset_rec *const *a = x, *const *b = y;
    return strcmp(a[0]->root, b[0]->root);
}

/* Roots registered twice where either is included: found among the
 * neighbours of each root shard, reported in root order. */
static bool report_duplicate_roots(build_ctx *b)
{
    const asset_rec *(*dup)[2] = NULL;
    size_t ndup = 0, cap = 0;
    for (int s = 0; s < SNAP_SHARDS; s++) {
        size_t n;
        const asset_rec *const *v = snap_root_shard_items(b->cur, s, &n);
        for (size_t i = 1; i < n; i++) {
            if (strcmp(v[i - 1]->root, v[i]->root) != 0 || !(v[i - 1]->included || v[i]->included))
                continue;
            if (ndup == cap) {
                void *grown = pk_realloc(dup, (cap = cap ? 2 * cap : 8) * sizeof *dup);
                if (!grown)
                    break; /* out of memory: the ones found so far */
                dup = grown;
            }
            dup[ndup][0] = v[i - 1];
            dup[ndup++][1] = v[i];
        }
    }
    if (ndup > 1)
        qsort(dup, ndup, sizeof *dup, cmp_pair_root);
    for (size_t i = 0; i < ndup; i++) {
        char msg[700];
        snprintf(msg, sizeof msg, "%s: registered twice, as %s and %s", dup[i][1]->root,
                 dup[i][0]->id, dup[i][1]->id);
        resp_diag(b->o->r, "error", "duplicate_root", dup[i][1]->id, dup[i][1]->root, msg);
        resp_blocker(b->o->r, "duplicate_root", msg);
    }
    pk_free(dup);
    return ndup == 0;
}

/* Report the scan's structural errors in address order; false if any. */
static bool report_structural(build_ctx *b)
{
    bool ok = true;
    for (size_t i = 0; i < b->n; i++) {
        result *r = &b->res[i];
        if (!r->code)
            continue;
        resp_diag(b->o->r, "error", r->code, b->items[i].asset_id, r->path, r->error);
        resp_blocker(b->o->r, r->code, r->error);
        ok = false;
    }
    ok = report_duplicate_roots(b) && ok;
    for (size_t i = 1; i < b->n; i++)
        if (strcmp(b->items[i - 1].address, b->items[i].address) == 0) {
            char msg[700];
            snprintf(msg, sizeof msg, "address \"%s\" is used by included assets %s and %s",
                     b->items[i].address, b->items[i - 1].asset_id, b->items[i].asset_id);
            resp_diag(b->o->r, "error", "duplicate_address", NULL, NULL, msg);
            resp_blocker(b->o->r, "duplicate_address", msg);
            ok = false;
        }
    return ok;
}

static void items_free(build_ctx *b)
{
    for (size_t i = 0; b->items && i < b->n; i++) {
        item_clear(&b->items[i]);
        if (b->res) {
            cache_obj_clear(&b->res[i].obj);
            pk_free(b->res[i].path);
            pk_free(b->res[i].error);
        }
    }
    pk_free(b->items);
    pk_free(b->res);
}

/* The included assets, in address order, with room for their results. */
static bool collect(build_ctx *b)
{
    size_t n = 0, total = snap_included_count(b->cur);
    const asset_rec **inc = pk_malloc((total + 1) * sizeof *inc);
    b->items = pk_calloc(total + 1, sizeof *b->items);
    b->res = pk_calloc(total + 1, sizeof *b->res);
    if (!inc || !b->items || !b->res) {
        pk_free(inc);
        return false;
    }
    for (int s = 0; s < SNAP_SHARDS; s++) {
        size_t k;
        const asset_rec *const *v = snap_shard_items(b->cur, s, &k);
        for (size_t i = 0; i < k; i++)
            if (v[i]->included)
                inc[n++] = v[i];
    }
    qsort(inc, n, sizeof *inc, cmp_address); /* pointers: cheaper to move than items */
    for (b->n = 0; b->n < n; b->n++) {
        build_item *it = &b->items[b->n];
        it->asset_id = inc[b->n]->id;
        it->address = inc[b->n]->address;
        it->root = inc[b->n]->root;
    }
    pk_free(inc);
    return true;
}

/* A cached blob about to be packed must still hash to its record. */
static int verify_one(void *ctx, size_t i, void *worker)
{
    build_ctx *b = ctx;
    (void)worker;
    result *r = &b->res[i];
    if (!r->hit || r->obj.type != 'B')
        return 0;
    int rc = cache_verify(&r->obj);
    if (rc == 0)
        return 0;
    if (r->memo) /* a recipe will run: it needs the whole item */
        scan_full(b, &b->items[i], r);
    r->hit = false;
    r->corrupt = rc != PACKER_ENOTFOUND;
    cache_obj_clear(&r->obj);
    return 0;
}

/* ---- phase 3: run recipes ----------------------------------------------- */

static void *runner_make(void *ctx)
{
    build_ctx *b = ctx;
    recipe_runner *rr = NULL;
    runner_new(b->rs, b->root, &rr);
    return rr;
}

static void runner_drop(void *w)
{
    runner_free(w);
}

static int store_output(build_ctx *b, build_item *it, result *r, recipe_output *out)
{
    unsigned char h[16];
    if (out->stream_input) {
        const build_input *in = &it->inputs[out->stream_input - 1];
        hash_from_hex(in->hash, h);
        return cache_put(b->cache, r->key, 'R', in->path, strlen(in->path), in->size, h, &r->obj);
    }
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(out->bytes, out->len));
    return cache_put(b->cache, r->key, 'B', out->bytes, out->len, out->len, c.digest, &r->obj);
}

static int build_one(void *ctx, size_t i, void *worker)
{
    build_ctx *b = ctx;
    build_item *it = &b->items[i];
    result *r = &b->res[i];
    if (r->hit || r->failed || r->code)
        return 0;
    double t0 = now_ms();
    char err[1024];
    recipe_output out = {0};
    int rc = worker ? runner_run(worker, it, &out, err, sizeof err)
                    : pk_err(PACKER_ENOMEM, "cannot create a recipe sandbox");
    if (!worker)
        snprintf(err, sizeof err, "%s", packer_last_error());
    if (rc == 0 && store_output(b, it, r, &out) != 0) {
        rc = PACKER_EIO;
        snprintf(err, sizeof err, "%s", packer_last_error());
    }
    pk_free(out.bytes);
    if (rc) {
        r->failed = true;
        r->error = pk_strdup(err);
    }
    r->ms += now_ms() - t0;
    return rc;
}

/* ---- up to date? --------------------------------------------------------- */

/* What the outputs are made of: the cache keys, in address order. Equal
 * keys give equal bytes (recipes are deterministic and their identity is
 * in the key), so equal digests mean equal outputs. */
static void digest_of(build_ctx *b, char out[HASH_HEX_LEN + 1])
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) {
        out[0] = '\0';
        return;
    }
    XXH3_128bits_reset(st);
    key_add(st, b->out_dir);
    for (size_t i = 0; i < b->n; i++) {
        key_add(st, b->items[i].address);
        key_add(st, b->items[i].asset_id);
        key_add(st, b->res[i].key);
    }
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    hash_to_hex(c.digest, out);
}

/* ---- the report ----------------------------------------------------------- */

#define PUT(t, lit) strbuf_put(t, lit, sizeof lit - 1)

/* The report file in canonical form (pretty, keys sorted), written
 * directly: at 10,000 assets a cJSON tree plus the canonical writer cost
 * a third of a no-op build. spec/build_spec.lua holds it equal to the
 * response's data, which report_data builds from the same fields. */
typedef struct {
    const build_ctx *b;
    size_t from, to; /* the assets of this part */
    strbuf t;
} report_part;

static void *report_assets(void *arg)
{
    report_part *p = arg;
    strbuf *t = &p->t;
    for (size_t i = p->from; i < p->to; i++) {
        const result *r = &p->b->res[i];
        if (i)
            PUT(t, ",");
        PUT(t, "\n    {\n      \"address\": ");
        json_put_str(t, p->b->items[i].address);
        PUT(t, ",\n      \"asset_id\": ");
        json_put_str(t, p->b->items[i].asset_id);
        PUT(t, ",\n      \"cache\": ");
        json_put_str(t, r->failed ? "failed" : r->hit ? "hit" : "miss");
        if (!r->failed) {
            char hex[HASH_HEX_LEN + 1];
            hash_to_hex(r->obj.hash, hex);
            PUT(t, ",\n      \"hash\": ");
            json_put_str(t, hex);
        }
        PUT(t, ",\n      \"ms\": ");
        json_put_num(t, (double)(long)(r->ms * 1000) / 1000);
        if (!r->failed) {
            PUT(t, ",\n      \"size\": ");
            json_put_num(t, (double)r->obj.size);
        }
        PUT(t, "\n    }");
    }
    return NULL;
}

/* What follows the assets. */
static void report_tail(const build_ctx *b, double ms, strbuf *t)
{
    if (b->n)
        PUT(t, "\n  ");
    PUT(t, "],\n  \"out\": ");
    json_put_str(t, b->out_dir);
    PUT(t, ",\n  \"totals\": {\n    \"assets\": ");
    json_put_num(t, (double)b->n);
    PUT(t, ",\n    \"bytes\": ");
    json_put_num(t, (double)b->bytes);
    PUT(t, ",\n    \"failed\": ");
    json_put_num(t, (double)b->failures);
    PUT(t, ",\n    \"hits\": ");
    json_put_num(t, (double)b->hits);
    PUT(t, ",\n    \"misses\": ");
    json_put_num(t, (double)b->misses);
    PUT(t, ",\n    \"ms\": ");
    json_put_num(t, (double)(long)(ms * 1000) / 1000);
    if (b->up_to_date)
        PUT(t, "\n  },\n  \"up_to_date\": true\n}\n");
    else
        PUT(t, "\n  },\n  \"up_to_date\": false\n}\n");
}

/* The report as the response's data; without the per-asset list when the
 * caller said it does not want it (the CLI without --json). */
static void report_data(build_ctx *b, double ms)
{
    cJSON *r = resp_data(b->o->r), *assets = b->brief ? NULL : cJSON_CreateArray();
    cJSON *tot = cJSON_CreateObject();
    if (!r || (!b->brief && !assets) || !tot) {
        cJSON_Delete(assets);
        cJSON_Delete(tot);
        resp_oom(b->o->r);
        return;
    }
    for (size_t i = 0; assets && i < b->n; i++) {
        cJSON *a = cJSON_CreateObject();
        char hex[HASH_HEX_LEN + 1];
        hash_to_hex(b->res[i].obj.hash, hex);
        json_add_str(a, "address", b->items[i].address);
        json_add_str(a, "asset_id", b->items[i].asset_id);
        json_add_str(a, "cache", b->res[i].failed ? "failed" : b->res[i].hit ? "hit" : "miss");
        if (!b->res[i].failed)
            json_add_str(a, "hash", hex);
        cJSON_AddNumberToObject(a, "ms", (double)(long)(b->res[i].ms * 1000) / 1000);
        if (!b->res[i].failed)
            cJSON_AddNumberToObject(a, "size", (double)b->res[i].obj.size);
        cJSON_AddItemToArray(assets, a);
    }
    /* keys added in sorted order: the canonical form then has nothing to sort */
    cJSON_AddNumberToObject(tot, "assets", (double)b->n);
    cJSON_AddNumberToObject(tot, "bytes", (double)b->bytes);
    cJSON_AddNumberToObject(tot, "failed", (double)b->failures);
    cJSON_AddNumberToObject(tot, "hits", (double)b->hits);
    cJSON_AddNumberToObject(tot, "misses", (double)b->misses);
    cJSON_AddNumberToObject(tot, "ms", (double)(long)(ms * 1000) / 1000);
    if (assets)
        cJSON_AddItemToObject(r, "assets", assets);
    json_add_str(r, "out", b->out_dir);
    cJSON_AddItemToObject(r, "totals", tot);
    cJSON_AddBoolToObject(r, "up_to_date", b->up_to_date);
}

/* ---- the service ------------------------------------------------------------ */

static void finish(build_ctx *b, const char *outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(build_ctx *b, const char *outcome, const char *fmt, ...)
{
    char sum[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sum, sizeof sum, fmt, ap);
    va_end(ap);
    resp_summary(b->o->r, "%s", sum);
    cJSON *extra = cJSON_CreateObject();
    json_add_str(extra, "outcome", outcome);
    op_emit(b->o, PACKER_EV_BUILD_FINISHED, sum, NULL, extra);
}

static void announce_cache(build_ctx *b)
{
    bool events = !b->quiet && op_observed(b->o);
    for (size_t i = 0; i < b->n; i++) {
        result *r = &b->res[i];
        const char *ids[1] = {b->items[i].asset_id};
        char sum[600];
        if (r->corrupt && !b->quiet) {
            snprintf(sum, sizeof sum, "cache entry %s of %s failed its hash check; rebuilt", r->key,
                     b->items[i].address);
            resp_diag(b->o->r, "warning", "cache_corrupt", b->items[i].asset_id, NULL, sum);
        }
        if (r->failed)
            continue;
        r->hit ? b->hits++ : b->misses++;
        b->bytes += r->obj.size;
        if (!events)
            continue;
        snprintf(sum, sizeof sum, "%s %s", r->hit ? "cache hit" : "cache miss",
                 b->items[i].address);
        op_emit(b->o, r->hit ? PACKER_EV_CACHE_HIT : PACKER_EV_CACHE_MISS, sum,
                json_str_array(ids, 1), NULL);
    }
}

static bool report_failures(build_ctx *b)
{
    for (size_t i = 0; i < b->n; i++) {
        result *r = &b->res[i];
        if (!r->failed)
            continue;
        const char *ids[1] = {b->items[i].asset_id};
        char sum[1400];
        snprintf(sum, sizeof sum, "%s: %s", b->items[i].address, r->error ? r->error : "failed");
        resp_diag(b->o->r, "error", "recipe_failed", b->items[i].asset_id, b->items[i].root, sum);
        resp_blocker(b->o->r, "recipe_failed", sum);
        op_emit(b->o, PACKER_EV_ACTION_FAILED, sum, json_str_array(ids, 1), NULL);
        b->failures++;
    }
    return b->failures == 0;
}

/* Phase 1; false when a structural error blocks the build. */
static bool scan(build_ctx *b)
{
    pool_run(b->o, b->n, b->jobs, b->n, "scanning assets", scan_one, NULL, NULL, b);
    return !op_cancelled(b->o) && report_structural(b); /* cancelled: items were skipped */
}

static size_t count_misses(const build_ctx *b, bool blobs_only)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        n += blobs_only ? b->res[i].hit && b->res[i].obj.type == 'B'
                        : !b->res[i].hit && !b->res[i].failed;
    return n;
}

/* Phase 3: every asset's output in the cache; false when some failed. */
static bool produce(build_ctx *b)
{
    size_t blobs = count_misses(b, true);
    if (blobs)
        pool_run(b->o, b->n, b->jobs, blobs, "checking cached outputs", verify_one, NULL, NULL, b);
    size_t misses = count_misses(b, false);
    if (misses)
        pool_run(b->o, b->n, b->jobs, misses, "running recipes", build_one, runner_make,
                 runner_drop, b);
    if (op_cancelled(b->o))
        return false;
    announce_cache(b);
    return report_failures(b);
}

/* Remember what each freshly scanned asset depended on (lane). */
static void remember_assets(build_ctx *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const build_item *it = &b->items[i];
        const result *r = &b->res[i];
        const char *why, *rid = it->kind ? recipes_id(b->rs, it->kind, &why) : NULL;
        if (r->memo || !r->manifest_ok || r->failed || r->code || !r->obj.type || !rid)
            continue;
        char *paths[CACHE_MEMO_MAX_INPUTS];
        if (it->ninputs > CACHE_MEMO_MAX_INPUTS)
            continue;
        for (size_t k = 0; k < it->ninputs; k++)
            paths[k] = it->inputs[k].path;
        cache_memo m = {.address = (char *)it->address,
                        .root = (char *)it->root,
                        .kind = (char *)it->kind,
                        .manifest = r->manifest,
                        .inputs = paths,
                        .ninputs = it->ninputs};
        memcpy(m.recipe_id, rid, sizeof m.recipe_id);
        memcpy(m.key, r->key, sizeof m.key);
        cache_memo_put(b->cache, it->asset_id, &m); /* on failure: no memo, no harm */
    }
}

/* --verify: rebuild everything from scratch into a temporary directory
 * and compare byte for byte with what the build published. */
static void verify(build_ctx *b)
{
    build_ctx v = *b;
    v.items = NULL;
    v.res = NULL;
    v.n = v.hits = v.misses = v.failures = v.bytes = 0;
    v.clean = v.quiet = true;
    char *tmp = pk_asprintf("%s.verify-%ld", b->out_dir, (long)getpid());
    if (tmp)
        out_rm_tree(tmp); /* litter of an earlier crash */
    bool built = tmp && cache_open(b->root, true, &v.cache) == 0 && collect(&v) && scan(&v) &&
                 produce(&v) && mkdir(tmp, 0755) == 0 && out_write(&v, tmp) == 0;
    bool ok = built && out_same(b, tmp);
    if (!built && op_cancelled(b->o)) /* the outputs are published: only the check stopped */
        resp_diag(b->o->r, "warning", "verify_cancelled", NULL, NULL,
                  "cancelled during the --verify rebuild; the published outputs were not compared");
    else if (!built)
        resp_diag(b->o->r, "error", "verify_failed", NULL, NULL,
                  "the clean rebuild for --verify did not complete");
    if (!ok && !(!built && op_cancelled(b->o)))
        resp_status(b->o->r, PACKER_STATUS_BLOCKED);
    if (tmp)
        out_rm_tree(tmp);
    pk_free(tmp);
    items_free(&v);
    cache_close(v.cache);
}

/* The cache's indexes load on a thread of their own while the lane loads
 * the recipes and collects the items. */
typedef struct {
    const char *root;
    bool fresh, started;
    pthread_t thread;
    cache *cache;
    int rc;
    char *err; /* packer_last_error is per thread: carried to the lane */
} cache_loader;

static void *load_cache(void *arg)
{
    cache_loader *l = arg;
    if ((l->rc = cache_open(l->root, l->fresh, &l->cache)) != 0)
        l->err = pk_strdup(packer_last_error());
    return NULL;
}

/* Wait for l; the cache into *out. rc is the lane's own result so far: a
 * failure there is the one reported, else the loader's. */
static int cache_loaded(cache_loader *l, cache **out, int rc)
{
    if (l->started)
        pthread_join(l->thread, NULL);
    *out = l->cache;
    if (rc == 0 && l->rc)
        rc = pk_err(l->rc, "%s", l->err ? l->err : "out of memory");
    pk_free(l->err);
    return rc;
}

static bool parse_params(build_ctx *b)
{
    const cJSON *p = b->o->params;
    const char *out = json_get_str(p, "out");
    const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(p, "jobs");
    b->clean = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "clean"));
    b->verify = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "verify"));
    b->brief = cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(p, "details"));
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    b->jobs = cJSON_IsNumber(jobs) ? jobs->valueint : cpus > 0 ? (int)cpus : 1;
    if ((jobs && !cJSON_IsNumber(jobs)) || b->jobs < 1 || b->jobs > 64 || (out && !*out)) {
        resp_status(b->o->r, PACKER_STATUS_REFUSED);
        resp_blocker(b->o->r, "invalid_params",
                     "\"jobs\" must be 1..64 and \"out\" a non-empty directory path");
        resp_summary(b->o->r, "invalid build parameters");
        return false;
    }
    out = out ? out : "build";
    b->out_dir = out[0] == '/' ? pk_strdup(out) : io_join(b->root, out);
    return b->out_dir != NULL;
}

/* A report that cannot be written costs nothing but the report. */
static void save_report(build_ctx *b, double ms)
{
    static const char head[] = "{\n  \"assets\": [";
    /* two halves of the assets on two threads: a big build's report is
     * megabytes of text */
    report_part part[3] = {{b, 0, b->n / 2, {0}}, {b, b->n / 2, b->n, {0}}, {b, 0, 0, {0}}};
    pthread_t helper;
    bool two = b->n >= 4096 && pthread_create(&helper, NULL, report_assets, &part[1]) == 0;
    report_assets(&part[0]);
    if (two)
        pthread_join(helper, NULL);
    else
        report_assets(&part[1]);
    report_tail(b, ms, &part[2].t);
    char *path = io_join(b->root, ".packer/build-report.json");
    io_out *o = NULL;
    int rc = path && !part[0].t.oom && !part[1].t.oom && !part[2].t.oom ? io_out_begin(path, &o)
                                                                        : PACKER_ENOMEM;
    if (rc == 0)
        rc = io_out_write(o, head, sizeof head - 1);
    for (int k = 0; k < 3; k++) {
        if (rc == 0 && part[k].t.len)
            rc = io_out_write(o, part[k].t.s, part[k].t.len);
        pk_free(part[k].t.s);
    }
    if (rc == 0)
        io_out_commit(o);
    else
        io_out_abort(o);
    pk_free(path);
}

/* Stopped by its cancellation token before the outputs were published:
 * the output directory and the registry are as they were. The cache is not
 * saved (its index would forget what the skipped assets last depended on);
 * objects written meanwhile are found by key next time. */
static void cancelled(build_ctx *b)
{
    op_cancel_response(b->o, true);
    finish(b, "cancelled", "build cancelled; outputs left as they were");
}

static void run_build(build_ctx *b)
{
    double t0 = now_ms();
    char sum[200], digest[HASH_HEX_LEN + 1];
    snprintf(sum, sizeof sum, "build of %zu included assets", snap_included_count(b->cur));
    op_emit(b->o, PACKER_EV_BUILD_STARTED, sum, NULL, NULL);
    cache_loader cl = {.root = b->root, .fresh = b->clean};
    if (!(cl.started = pthread_create(&cl.thread, NULL, load_cache, &cl) == 0))
        load_cache(&cl);
    b->rootfd = open(b->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = b->rootfd < 0 ? pk_err_errno("cannot open", b->root) : recipes_load(b->root, &b->rs);
    if (rc == 0 && !collect(b))
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    rc = cache_loaded(&cl, &b->cache, rc);
    if (rc) {
        resp_status(b->o->r, PACKER_STATUS_FAILED);
        resp_diag(b->o->r, "error", "io_error", NULL, NULL, packer_last_error());
        finish(b, "failed", "build failed: %s", packer_last_error());
        return;
    }
    if (!scan(b)) {
        if (op_cancelled(b->o)) {
            cancelled(b);
            return;
        }
        resp_status(b->o->r, PACKER_STATUS_BLOCKED);
        finish(b, "blocked", "build blocked by structural errors; outputs left as they were");
        return;
    }
    digest_of(b, digest);
    b->up_to_date = !b->clean && count_misses(b, false) == 0 && out_current(b, digest);
    bool ok = true;
    if (b->up_to_date)
        announce_cache(b); /* nothing is read, nothing is written */
    else
        ok = produce(b);
    if (op_cancelled(b->o)) { /* the last point before the commit */
        cancelled(b);
        return;
    }
    remember_assets(b);
    cache_save(b->cache); /* a cache that cannot be saved only costs work */
    if (!ok) {
        resp_status(b->o->r, PACKER_STATUS_BLOCKED);
        finish(b, "failed", "build failed: %zu asset%s failed; outputs left as they were",
               b->failures, b->failures == 1 ? "" : "s");
        save_report(b, now_ms() - t0);
        return;
    }
    /* the cache may have been deleted under outputs that are still right */
    if (!b->up_to_date && !b->clean && out_current(b, digest))
        b->up_to_date = true;
    rc = b->up_to_date ? 0 : out_publish(b);
    if (rc == 0 && !b->up_to_date)
        rc = out_save_state(b, digest);
    if (rc) {
        resp_status(b->o->r, PACKER_STATUS_FAILED);
        resp_diag(b->o->r, "error", "io_error", NULL, b->out_dir, packer_last_error());
        finish(b, "failed", "build failed: %s", packer_last_error());
        return;
    }
    if (b->verify)
        verify(b);
    double ms = now_ms() - t0;
    save_report(b, ms);
    report_data(b, ms); /* the report is the response's data */
    if (resp_get_status(b->o->r) != PACKER_STATUS_OK) {
        finish(b, "failed", "build --verify found differences");
        return;
    }
    for (size_t i = 0; i < b->n; i++)
        resp_affected(b->o->r, b->items[i].asset_id);
    finish(b, b->up_to_date ? "up_to_date" : "ok", "built %zu assets (%zu cached, %zu rebuilt)%s",
           b->n, b->hits, b->misses, b->up_to_date ? "; outputs already up to date" : "");
}

void svc_build(op *o)
{
    build_ctx b = {.o = o, .root = project_root_dir(o->p), .rootfd = -1};
    if (!parse_params(&b)) {
        pk_free(b.out_dir);
        return;
    }
    uint64_t marks = fresh_seq(project_fresh(o->p)); /* changes after this stay stale */
    int rc = project_begin_write(o->p, o, &b.cur);
    if (rc) {
        resp_status(o->r, PACKER_STATUS_FAILED);
        resp_diag(o->r, "error", "io_error", NULL, NULL, packer_last_error());
        resp_summary(o->r, "%s", packer_last_error());
        pk_free(b.out_dir);
        return;
    }
    run_build(&b);
    if (resp_get_status(o->r) == PACKER_STATUS_OK && fresh_count(project_fresh(o->p))) {
        cJSON *built = cJSON_CreateArray();
        fresh_built(project_fresh(o->p), b.cur, marks, built);
        project_refresh_state(o->p, o, built);
    }
    items_free(&b);
    recipes_free(b.rs);
    cache_close(b.cache);
    if (b.rootfd >= 0)
        close(b.rootfd);
    snap_unref(b.cur);
    pk_free(b.out_dir);
    project_end_write(o->p);
}
