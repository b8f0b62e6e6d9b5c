/*
 * doctor_ws.c - the workspace side of the ctx doctor rules receive:
 * ctx:files(), ctx:roots(), ctx:duplicates(), ctx:cache(), ctx:quarantine(),
 * ctx:moved_root() (where a missing root went, proven by content), and the
 * prefetch that walks the workspace and looks for duplicate
 * content on another core while the registered-world rules run.
 *
 * Invariants: the walk and the duplicate search happen at most once per
 * doctor run, under the workspace lock the run holds, so every rule sees
 * the same workspace; the prefetch thread touches only its own doc_prefetch
 * until doctor_prefetch_end joins it and hands the results to the run.
 * Cache entries are judged by cache.c's own reading of them (cache_get,
 * cache_verify); only the key column of its objects-index is read here.
 *
 * Threads: the lane (rules), plus the one prefetch thread.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

typedef struct doc_prefetch {
    pthread_t thread;
    const char *root;
    scan_index *sc;
    dup_group *dups;
    size_t ndups;
    int scan_rc, dup_rc;
    char scan_err[512], dup_err[512];
} doc_prefetch;

static void *prefetch_main(void *arg)
{
    doc_prefetch *f = arg;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    f->scan_rc = scan_workspace(f->root, &f->sc);
    if (f->scan_rc) {
        snprintf(f->scan_err, sizeof f->scan_err, "%s", packer_last_error());
        return NULL;
    }
    f->dup_rc = scan_duplicates(f->sc, f->root, cpus > 1 ? (int)cpus : 1, &f->dups, &f->ndups);
    if (f->dup_rc)
        snprintf(f->dup_err, sizeof f->dup_err, "%s", packer_last_error());
    return NULL;
}

void doctor_prefetch(doc_run *d)
{
    doc_prefetch *f = pk_calloc(1, sizeof *f);
    if (!f)
        return; /* the walk then happens on first use */
    f->root = d->root;
    if (pthread_create(&f->thread, NULL, prefetch_main, f) != 0) {
        pk_free(f);
        return;
    }
    d->prefetch = f;
}

void doctor_prefetch_end(doc_run *d)
{
    doc_prefetch *f = d->prefetch;
    if (!f)
        return;
    d->prefetch = NULL;
    pthread_join(f->thread, NULL);
    if (f->scan_rc == 0) {
        d->sc = f->sc;
        if (f->dup_rc == 0) {
            d->dups = f->dups;
            d->ndups = f->ndups;
            d->dups_done = true;
        }
    }
    pk_free(f); /* a failed prefetch is redone on use, where its error is reported */
}

int doctor_scan(doc_run *d)
{
    doctor_prefetch_end(d);
    return d->sc ? 0 : scan_workspace(d->root, &d->sc);
}

static void need_scan(lua_State *L, doc_run *d)
{
    if (doctor_scan(d) != 0)
        luaL_error(L, "workspace scan failed: %s", packer_last_error());
}

static int ctx_files(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    need_scan(L, d);
    lua_createtable(L, (int)d->sc->nfiles, 0);
    for (size_t i = 0; i < d->sc->nfiles; i++) {
        const scan_file *f = &d->sc->files[i];
        lua_createtable(L, 0, 4);
        doctor_set_str(L, "path", f->path);
        doctor_set_int(L, "size", (lua_Integer)f->size);
        if (f->root >= 0)
            doctor_set_str(L, "root", d->sc->roots[f->root]);
        doctor_set_bool(L, "link", f->link);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int ctx_roots(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    need_scan(L, d);
    lua_createtable(L, (int)d->sc->nroots, 0);
    for (size_t i = 0; i < d->sc->nroots; i++) {
        const asset_rec *a = snap_by_root(d->cur, d->sc->roots[i]);
        lua_createtable(L, 0, 2);
        doctor_set_str(L, "root", d->sc->roots[i]);
        if (a)
            doctor_set_str(L, "asset_id", a->id);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* Proving a move hashes the candidate's inputs, so each asset is looked at
 * once per run, and only once its root is found missing. */
const char *doctor_moved_root(doc_run *d, const char *asset_id, int *rc)
{
    *rc = 0;
    long i = doctor_index(d, asset_id);
    doc_asset *m = i >= 0 ? &d->memo[i] : NULL;
    if (!m || m->moved_done)
        return m ? m->moved : NULL;
    struct stat st;
    const asset_rec *a = d->all[i];
    if (d->rootfd < 0)
        d->rootfd = open(d->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->rootfd < 0 || fstatat(d->rootfd, a->root, &st, AT_SYMLINK_NOFOLLOW) == 0 ||
        errno != ENOENT)
        return NULL; /* there is no move to prove while the old root is there */
    if ((*rc = doctor_scan(d)) != 0 || (!d->cache && (*rc = cache_open(d->root, false, &d->cache))))
        return NULL;
    m->moved_done = true;
    for (size_t k = 0; k < d->sc->nroots && !m->moved; k++) {
        const char *cand = d->sc->roots[k];
        if (!snap_by_root(d->cur, cand) &&
            build_root_proves(d->root, d->rootfd, d->rs, d->cache, asset_id, cand) &&
            !(m->moved = pk_strdup(cand)))
            *rc = pk_err(PACKER_ENOMEM, "out of memory");
    }
    return m->moved;
}

/* ctx:moved_root(asset_id): where the missing root of asset_id went, by
 * content, or nil. */
static int ctx_moved_root(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    const char *id = luaL_checkstring(L, 2);
    if (doctor_index(d, id) < 0)
        luaL_argerror(L, 2, "not a registered asset id");
    int rc;
    const char *to = doctor_moved_root(d, id, &rc);
    if (rc)
        return luaL_error(L, "looking for the moved root of %s: %s", id, packer_last_error());
    lua_pushstring(L, to);
    return 1;
}

static int ctx_duplicates(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    need_scan(L, d);
    if (!d->dups_done) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        if (scan_duplicates(d->sc, d->root, cpus > 0 ? (int)cpus : 1, &d->dups, &d->ndups) != 0)
            return luaL_error(L, "duplicate scan failed: %s", packer_last_error());
        d->dups_done = true;
    }
    lua_createtable(L, (int)d->ndups, 0);
    for (size_t i = 0; i < d->ndups; i++) {
        const dup_group *g = &d->dups[i];
        lua_createtable(L, 0, 3);
        doctor_set_int(L, "size", (lua_Integer)g->size);
        doctor_set_str(L, "hash", g->hash);
        lua_createtable(L, (int)g->n, 0);
        for (size_t k = 0; k < g->n; k++) {
            lua_pushstring(L, d->sc->files[g->files[k]].path);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, -2, "paths");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* The keys the cache's objects-index names (the first field of each line,
 * see cache.c), sorted; the text they point into is *buf. */
static char **indexed_keys(const char *root, char **buf, size_t *n)
{
    char *path = pk_asprintf("%s/.packer/cache/objects-index", root);
    size_t len = 0, cap = 0;
    char **keys = NULL;
    *n = 0;
    *buf = NULL;
    if (!path || io_read_file(path, buf, &len) != 0) {
        pk_free(path);
        return NULL;
    }
    pk_free(path);
    for (char *line = *buf, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *sp = strchr(line, ' ');
        if (sp)
            *sp = '\0';
        if (*n == cap) {
            cap = cap ? cap * 2 : 256;
            char **v = pk_realloc(keys, cap * sizeof *v);
            if (!v)
                break;
            keys = v;
        }
        keys[(*n)++] = line;
    }
    if (*n > 1)
        qsort(keys, *n, sizeof *keys, str_ptr_cmp);
    return keys;
}

/* One object file of the cache: stale when the index no longer names it
 * (a build drops the entries it did not use from the index, not their
 * files), or when its bytes fail their recorded hash. */
static const char *object_problem(cache *c, char **keys, size_t nkeys, const char *key)
{
    if (!nkeys || !bsearch(&key, keys, nkeys, sizeof *keys, str_ptr_cmp))
        return "not in the cache index: left over from an earlier build";
    cache_obj o = {0};
    int rc = cache_get(c, key, &o);
    const char *why = NULL;
    if (rc == PACKER_EPARSE || (rc == 0 && o.type == 'B' && cache_verify(&o) != 0))
        why = "damaged (fails its hash check)";
    cache_obj_clear(&o);
    return why;
}

static void cache_problems(lua_State *L, doc_run *d, cache *c)
{
    char *objs = pk_asprintf("%s/.packer/cache/objects", d->root), *buf = NULL;
    size_t nkeys = 0;
    char **keys = indexed_keys(d->root, &buf, &nkeys);
    DIR *top = objs ? opendir(objs) : NULL;
    lua_Integer n = 0;
    struct dirent *e;
    while (top && (e = readdir(top))) {
        if (e->d_name[0] == '.')
            continue;
        char *sub = io_join(objs, e->d_name);
        DIR *dir = sub ? opendir(sub) : NULL;
        struct dirent *f;
        while (dir && (f = readdir(dir))) {
            if (f->d_name[0] == '.')
                continue;
            bool tmp = strlen(f->d_name) != HASH_HEX_LEN || strstr(f->d_name, ".tmp") != NULL;
            const char *why = tmp ? "temporary file left by an interrupted write"
                                  : object_problem(c, keys, nkeys, f->d_name);
            if (!why)
                continue;
            lua_createtable(L, 0, 2);
            lua_pushfstring(L, ".packer/cache/objects/%s/%s", e->d_name, f->d_name);
            lua_setfield(L, -2, "path");
            doctor_set_str(L, "reason", why);
            lua_rawseti(L, -2, ++n);
        }
        if (dir)
            closedir(dir);
        pk_free(sub);
    }
    if (top)
        closedir(top);
    pk_free(objs);
    pk_free(keys);
    pk_free(buf);
}

static int ctx_cache(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    cache *c = NULL;
    lua_newtable(L);
    char *dir = pk_asprintf("%s/.packer/cache", d->root);
    bool have = dir && io_is_dir(dir);
    pk_free(dir);
    if (have && cache_open(d->root, false, &c) == 0)
        cache_problems(L, d, c);
    cache_close(c);
    return 1;
}

static int ctx_quarantine(lua_State *L)
{
    cJSON *recs = NULL;
    if (quar_list(doctor_run_of(L)->root, &recs) != 0)
        return luaL_error(L, "cannot read the quarantine: %s", packer_last_error());
    sandbox_push_json(L, recs);
    cJSON_Delete(recs);
    return 1;
}

/* ctx:report{code = ..., message = ..., severity?, asset_id?, path?} */
void doctor_ws_methods(lua_State *L, doc_run *d)
{
    static const luaL_Reg methods[] = {
        {"files", ctx_files}, {"roots", ctx_roots},           {"duplicates", ctx_duplicates},
        {"cache", ctx_cache}, {"quarantine", ctx_quarantine}, {"moved_root", ctx_moved_root},
        {NULL, NULL}};
    lua_pushlightuserdata(L, d);
    luaL_setfuncs(L, methods, 1);
}
