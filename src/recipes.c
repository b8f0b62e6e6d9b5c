/*
 * recipes.c - build recipes: which Lua script turns an asset of a kind
 * into bytes, and running it in the sandbox.
 *
 * Built-in recipes are lua/recipes/<kind>.lua, embedded into libpacker at
 * build time (scripts/embed-lua.lua) so a host never depends on where the
 * Lua files were installed. A workspace adds or overrides kinds with
 * recipes/<kind>.lua. A recipe file returns {version = ..., build =
 * function(ctx) ... end}; its identity, used in every cache key of its
 * kind, is the XXH3-128 of kind, version and source, so changing either
 * invalidates exactly the assets of that kind.
 *
 * The ctx a recipe sees (the whole API, documented in README):
 *   ctx.asset_id, ctx.address, ctx.root, ctx.kind, ctx.inputs (names as
 *   declared), ctx.options (a copy)
 *   ctx:read(i)           bytes of declared input i (index or name)
 *   ctx:file(i)           "stream input i as is" (no bytes in the sandbox)
 *   ctx:json_canonical(i) input i parsed and re-written canonical, minified
 * Nothing else reaches the file system.
 *
 * Threads: a recipe_set is immutable after recipes_load and shared by the
 * build's workers; each worker owns one recipe_runner (one sandbox).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

extern const struct {
    const char *name;
    const char *text;
    size_t len;
} packer_builtin_recipes[];

#define RECIPE_MEM_CAP (256u << 20)
#define RECIPE_BUDGET 200000000L
#define CTX_MT "packer.recipe_ctx"

typedef struct {
    char *kind;
    char *source;
    size_t len;
    char *origin; /* "builtin" or recipes/<kind>.lua */
    char id[HASH_HEX_LEN + 1];
    char *version;
    char *bytecode; /* compiled once by describe(), loaded fresh per run */
    size_t bclen;
    char *error; /* the file does not load or has the wrong shape */
} recipe;

struct recipe_set {
    recipe *v;
    size_t n;
};

struct recipe_runner {
    const recipe_set *set;
    sandbox *sb;
    const build_item *item; /* during a run */
    const char *root;
};

/* ---- loading ------------------------------------------------------------ */

static recipe *find(const recipe_set *rs, const char *kind)
{
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->v[i].kind, kind) == 0)
            return &rs->v[i];
    return NULL;
}

static int add(recipe_set *rs, const char *kind, const char *src, size_t len, const char *origin)
{
    recipe *r = find(rs, kind);
    if (!r) {
        recipe *v = pk_realloc(rs->v, (rs->n + 1) * sizeof *v);
        if (!v)
            return pk_err(PACKER_ENOMEM, "out of memory");
        rs->v = v;
        r = &rs->v[rs->n++];
        memset(r, 0, sizeof *r);
        r->kind = pk_strdup(kind);
    } else { /* a workspace recipe overrides the built-in */
        pk_free(r->source);
        pk_free(r->origin);
    }
    r->source = pk_strndup(src, len);
    r->len = len;
    r->origin = pk_strdup(origin);
    if (!r->kind || !r->source || !r->origin)
        return pk_err(PACKER_ENOMEM, "out of memory");
    return 0;
}

/* Evaluate the file once to learn its version and check its shape. */
static void describe(recipe *r, sandbox *sb)
{
    lua_State *L = sandbox_state(sb);
    char err[512], chunk[300];
    snprintf(chunk, sizeof chunk, "@%s", r->origin);
    int rc = sandbox_load(sb, r->source, r->len, chunk, err, sizeof err);
    if (rc == 0 && sandbox_dump(sb, &r->bytecode, &r->bclen) != 0)
        snprintf(err, sizeof err, "%s", packer_last_error()), rc = PACKER_ENOMEM;
    if (rc == 0)
        rc = sandbox_call(sb, 0, 1, RECIPE_BUDGET, err, sizeof err);
    if (rc == 0) {
        if (!lua_istable(L, -1))
            snprintf(err, sizeof err, "%s: must return a table {version = ..., build = ...}",
                     r->origin),
                rc = PACKER_EPARSE;
        else if (lua_getfield(L, -1, "build") != LUA_TFUNCTION)
            snprintf(err, sizeof err, "%s: \"build\" must be a function", r->origin),
                rc = PACKER_EPARSE;
        else if (lua_getfield(L, -2, "version"), !lua_isstring(L, -1))
            snprintf(err, sizeof err, "%s: \"version\" must be a string or number", r->origin),
                rc = PACKER_EPARSE;
        else
            r->version = pk_strdup(lua_tostring(L, -1));
    }
    lua_settop(L, 0);
    if (rc) {
        r->error = pk_strdup(err);
        return;
    }
    size_t n = strlen(r->kind) + strlen(r->version) + r->len + 3;
    char *buf = pk_malloc(n);
    if (buf) {
        int k = snprintf(buf, n, "%s%c%s%c", r->kind, 0, r->version, 0);
        memcpy(buf + k, r->source, r->len);
        hash_hex(buf, (size_t)k + r->len, r->id);
    }
    pk_free(buf);
}

static int load_workspace_recipes(recipe_set *rs, const char *root)
{
    char *dir = io_join(root, "recipes");
    DIR *d = dir ? opendir(dir) : NULL;
    int rc = dir ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
    struct dirent *e;
    while (rc == 0 && d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n <= 4 || strcmp(e->d_name + n - 4, ".lua") != 0 || e->d_name[0] == '.')
            continue;
        char *path = io_join(dir, e->d_name), *text = NULL;
        char *kind = pk_strndup(e->d_name, n - 4), *origin = pk_asprintf("recipes/%s", e->d_name);
        size_t len = 0;
        rc = path && kind && origin ? io_read_file(path, &text, &len)
                                    : pk_err(PACKER_ENOMEM, "out of memory");
        if (rc == 0)
            rc = add(rs, kind, text, len, origin);
        pk_free(path);
        pk_free(text);
        pk_free(kind);
        pk_free(origin);
    }
    if (d)
        closedir(d);
    pk_free(dir);
    return rc;
}

int recipes_load(const char *root, recipe_set **out)
{
    recipe_set *rs = pk_calloc(1, sizeof *rs);
    sandbox *sb = NULL;
    *out = NULL;
    int rc = rs ? 0 : pk_err(PACKER_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && packer_builtin_recipes[i].name; i++) {
        char origin[128];
        snprintf(origin, sizeof origin, "lua/recipes/%s.lua", packer_builtin_recipes[i].name);
        rc = add(rs, packer_builtin_recipes[i].name, packer_builtin_recipes[i].text,
                 packer_builtin_recipes[i].len, origin);
    }
    if (rc == 0)
        rc = load_workspace_recipes(rs, root);
    if (rc == 0)
        rc = sandbox_new(RECIPE_MEM_CAP, &sb);
    for (size_t i = 0; rc == 0 && i < rs->n; i++)
        describe(&rs->v[i], sb);
    sandbox_free(sb);
    if (rc) {
        recipes_free(rs);
        return rc;
    }
    *out = rs;
    return 0;
}

void recipes_free(recipe_set *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->n; i++) {
        pk_free(rs->v[i].kind);
        pk_free(rs->v[i].source);
        pk_free(rs->v[i].origin);
        pk_free(rs->v[i].version);
        pk_free(rs->v[i].bytecode);
        pk_free(rs->v[i].error);
    }
    pk_free(rs->v);
    pk_free(rs);
}

const char *recipes_id(const recipe_set *rs, const char *kind, const char **error)
{
    const recipe *r = find(rs, kind);
    *error = r ? r->error : NULL;
    return r && !r->error ? r->id : NULL;
}

/* ---- the ctx object --------------------------------------------------- */

/* ctx methods get their runner as upvalue 1; ctx itself is argument 1. */
static recipe_runner *runner_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* Index of input argument 2 (1-based number or declared name). */
static const build_input *input_arg(lua_State *L, const build_item *it)
{
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Integer i = luaL_checkinteger(L, 2);
        luaL_argcheck(L, i >= 1 && (size_t)i <= it->ninputs, 2, "no such input");
        return &it->inputs[i - 1];
    }
    const char *name = luaL_checkstring(L, 2);
    for (size_t i = 0; i < it->ninputs; i++)
        if (strcmp(it->inputs[i].name, name) == 0)
            return &it->inputs[i];
    luaL_argerror(L, 2, "not a declared input");
    return NULL;
}

static int ctx_read(lua_State *L)
{
    recipe_runner *rr = runner_of(L);
    const build_input *in = input_arg(L, rr->item);
    char *text = NULL, *abs = io_join(rr->root, in->path);
    size_t len = 0;
    int rc = abs ? io_read_file(abs, &text, &len) : PACKER_ENOMEM;
    pk_free(abs);
    if (rc)
        return luaL_error(L, "%s: cannot read input", in->path);
    lua_pushlstring(L, text, len);
    pk_free(text);
    return 1;
}

static int ctx_file(lua_State *L)
{
    recipe_runner *rr = runner_of(L);
    const build_input *in = input_arg(L, rr->item);
    lua_createtable(L, 0, 1);
    lua_pushinteger(L, (lua_Integer)(in - rr->item->inputs) + 1);
    lua_setfield(L, -2, "__packer_stream_input");
    return 1;
}

static int ctx_json(lua_State *L)
{
    recipe_runner *rr = runner_of(L);
    const build_input *in = input_arg(L, rr->item);
    char *abs = io_join(rr->root, in->path);
    cJSON *j = NULL;
    int rc = abs ? json_load_file(abs, in->path, &j) : PACKER_ENOMEM;
    pk_free(abs);
    char *text = rc == 0 ? json_canonical(j, false) : NULL;
    cJSON_Delete(j);
    if (!text)
        return luaL_error(L, "%s", rc ? packer_last_error() : "out of memory");
    lua_pushstring(L, text);
    pk_free(text);
    return 1;
}

static void set_str(lua_State *L, const char *key, const char *val)
{
    lua_pushstring(L, val);
    lua_setfield(L, -2, key);
}

static void push_ctx(lua_State *L, recipe_runner *rr)
{
    static const luaL_Reg methods[] = {
        {"read", ctx_read}, {"file", ctx_file}, {"json_canonical", ctx_json}, {NULL, NULL}};
    const build_item *it = rr->item;
    lua_createtable(L, 0, 10);
    set_str(L, "asset_id", it->asset_id);
    set_str(L, "address", it->address);
    set_str(L, "root", it->root);
    set_str(L, "kind", it->kind);
    lua_createtable(L, (int)it->ninputs, 0);
    for (size_t i = 0; i < it->ninputs; i++) {
        lua_pushstring(L, it->inputs[i].name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "inputs");
    sandbox_push_json(L, it->options);
    lua_setfield(L, -2, "options");
    lua_pushlightuserdata(L, rr);
    luaL_setfuncs(L, methods, 1);
}

/* ---- running ------------------------------------------------------------ */

int runner_new(const recipe_set *rs, const char *root, recipe_runner **out)
{
    recipe_runner *rr = pk_calloc(1, sizeof *rr);
    *out = NULL;
    if (!rr)
        return pk_err(PACKER_ENOMEM, "out of memory");
    rr->set = rs;
    rr->root = root;
    int rc = sandbox_new(RECIPE_MEM_CAP, &rr->sb);
    if (rc) {
        pk_free(rr);
        return rc;
    }
    *out = rr;
    return 0;
}

void runner_free(recipe_runner *rr)
{
    if (!rr)
        return;
    sandbox_free(rr->sb);
    pk_free(rr);
}

/* The recipe's build function on the stack (its chunk loaded fresh per
 * run, from the bytecode describe() kept, with fresh globals: one asset's
 * run cannot leave state behind for the next). */
static int push_build_fn(recipe_runner *rr, const recipe *r, char *err, size_t errlen)
{
    lua_State *L = sandbox_state(rr->sb);
    char chunk[300];
    snprintf(chunk, sizeof chunk, "@%s", r->origin);
    int rc = sandbox_load_dump(rr->sb, r->bytecode, r->bclen, chunk);
    if (rc)
        snprintf(err, errlen, "%s", packer_last_error());
    if (rc == 0)
        rc = sandbox_call(rr->sb, 0, 1, RECIPE_BUDGET, err, errlen);
    if (rc == 0 && (!lua_istable(L, -1) || lua_getfield(L, -1, "build") != LUA_TFUNCTION)) {
        snprintf(err, errlen, "%s: \"build\" must be a function", r->origin);
        rc = PACKER_EPARSE;
    }
    if (rc == 0)
        lua_remove(L, -2);
    return rc;
}

int runner_run(recipe_runner *rr, const build_item *it, recipe_output *out, char *err,
               size_t errlen)
{
    lua_State *L = sandbox_state(rr->sb);
    const recipe *r = find(rr->set, it->kind);
    memset(out, 0, sizeof *out);
    err[0] = '\0';
    if (!r || r->error) {
        snprintf(err, errlen, "%s", r ? r->error : "no recipe for this kind");
        return PACKER_EREFUSED;
    }
    rr->item = it;
    lua_settop(L, 0);
    int rc = push_build_fn(rr, r, err, errlen);
    if (rc == 0) {
        push_ctx(L, rr);
        rc = sandbox_call(rr->sb, 1, 1, RECIPE_BUDGET, err, errlen);
    }
    if (rc == 0 && lua_istable(L, -1)) {
        lua_getfield(L, -1, "__packer_stream_input");
        lua_Integer i = lua_tointeger(L, -1);
        if (i >= 1 && (size_t)i <= it->ninputs)
            out->stream_input = (int)i;
        else
            rc = PACKER_EREFUSED;
    } else if (rc == 0 && lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (!(out->bytes = pk_malloc(len ? len : 1)))
            rc = pk_err(PACKER_ENOMEM, "out of memory");
        else
            memcpy(out->bytes, s, len), out->len = len;
    } else if (rc == 0) {
        rc = PACKER_EREFUSED;
    }
    if (rc == PACKER_EREFUSED && !*err)
        snprintf(err, errlen, "%s: build must return a string or ctx:file(i)", r->origin);
    lua_settop(L, 0);
    rr->item = NULL;
    return rc;
}
