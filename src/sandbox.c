/*
 * sandbox.c - the Lua sandbox that user scripts (build recipes, doctor
 * rules) run in, under an instruction budget and a memory cap.
 *
 * Redis does the same for EVAL: a fresh state per script owner, a curated
 * set of libraries, a count hook that stops runaway loops. Here:
 *   - Libraries: base (without dofile, loadfile, require, collectgarbage,
 *     print), string, table, math (without random), utf8. No io, os,
 *     debug, package. `load` accepts text chunks only and runs them in the
 *     loading chunk's environment.
 *   - Isolation: every chunk loaded gets a fresh globals table that reads
 *     through to the libraries, and the library tables are read-only
 *     proxies (rawset refuses them, their metatables are hidden). One
 *     state serves many runs, so without this a script could change
 *     `string.format` for every later script on the same worker, and the
 *     output would depend on how work was spread over threads.
 *   - Memory: the state's allocator refuses to grow past the cap, so a
 *     script that allocates without bound gets a memory error (a script
 *     may catch it and go on, still under the cap).
 *   - Time: a count hook raises an error once the budget is spent, and
 *     then at every later instruction, so a script cannot pcall its way
 *     past the limit. (A single long C call, such as a pathological
 *     string pattern, runs to its end: hooks fire between instructions.) sandbox_call reports
 * "instruction budget exceeded" or "memory cap exceeded" whatever the script did with the error.
 *
 * Threads: a sandbox belongs to one thread at a time.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define HOOK_EVERY 1000

struct sandbox {
    lua_State *L;
    size_t used, cap;
    long budget, spent; /* in hook periods */
    bool over_budget, over_memory;
};

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sandbox *sb = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        pk_free(ptr);
        sb->used -= old;
        return NULL;
    }
    if (nsize > old && sb->used - old + nsize > sb->cap) {
        sb->over_memory = true;
        return NULL;
    }
    void *p = pk_realloc(ptr, nsize);
    if (p)
        sb->used = sb->used - old + nsize;
    return p;
}

static sandbox *sandbox_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    sandbox *sb = sandbox_of(L);
    if (++sb->spent > sb->budget) {
        /* from now on, every instruction fails: a pcall that caught the
         * error returns into code that fails at once, so each level of
         * protection unwinds in turn and the error reaches sandbox_call */
        if (!sb->over_budget)
            lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
        sb->over_budget = true;
        luaL_error(L, "instruction budget exceeded");
    }
}

#define FROZEN_MT "packer.frozen"
#define ENV_MT "packer.env"
#define CURRENT_ENV "packer.current_env"

static int frozen_newindex(lua_State *L)
{
    return luaL_error(L, "the sandbox's libraries are read-only (assigning to \"%s\")",
                      luaL_tolstring(L, 2, NULL));
}

static int frozen_pairs(lua_State *L)
{
    lua_getglobal(L, "next");
    luaL_getmetafield(L, 1, "__index");
    lua_pushnil(L);
    return 3;
}

/* Replace the table on top of the stack by a read-only proxy of it. */
static void freeze_top(lua_State *L)
{
    lua_newtable(L);
    lua_createtable(L, 0, 5);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, frozen_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, frozen_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, FROZEN_MT);
    lua_setmetatable(L, -2);
    lua_remove(L, -2);
}

static bool is_frozen(lua_State *L, int idx)
{
    bool frozen = false;
    if (lua_getmetatable(L, idx)) {
        frozen = lua_getfield(L, -1, FROZEN_MT) != LUA_TNIL;
        lua_pop(L, 2);
    }
    return frozen;
}

static int safe_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    if (is_frozen(L, 1))
        return luaL_error(L, "the sandbox's libraries are read-only");
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

/* Push a fresh globals table reading through to the libraries, and make
 * it the one `load` gives chunks that name no environment. */
static void push_fresh_env(lua_State *L)
{
    lua_newtable(L);
    luaL_getmetatable(L, ENV_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, CURRENT_ENV);
}

/* Give the function on top of the stack a fresh environment. */
static void set_fresh_env(lua_State *L)
{
    push_fresh_env(L);
    if (!lua_setupvalue(L, -2, 1))
        lua_pop(L, 1);
}

/* load(chunk [, name [, mode [, env]]]) restricted to text chunks. */
static int safe_load(lua_State *L)
{
    size_t len;
    const char *src = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "=(load)");
    if (len > 0 && src[0] == LUA_SIGNATURE[0])
        return luaL_error(L, "binary chunks are not allowed in the sandbox");
    int has_env = !lua_isnone(L, 4);
    if (luaL_loadbufferx(L, src, len, name, "t") != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (has_env)
        lua_pushvalue(L, 4);
    else
        lua_getfield(L, LUA_REGISTRYINDEX, CURRENT_ENV);
    if (!lua_setupvalue(L, -2, 1))
        lua_pop(L, 1);
    return 1;
}

static void open_lib(lua_State *L, const char *name, lua_CFunction fn)
{
    luaL_requiref(L, name, fn, 1);
    lua_pop(L, 1);
}

static void remove_fields(lua_State *L, const char *table, const char *const *names)
{
    if (table)
        lua_getglobal(L, table);
    else
        lua_pushglobaltable(L);
    for (; *names; names++) {
        lua_pushnil(L);
        lua_setfield(L, -2, *names);
    }
    lua_pop(L, 1);
}

int sandbox_new(size_t mem_cap, sandbox **out)
{
    static const char *const base_drop[] = {"dofile",         "loadfile", "require",
                                            "collectgarbage", "print",    NULL};
    static const char *const math_drop[] = {"random", "randomseed", NULL};
    *out = NULL;
    sandbox *sb = pk_calloc(1, sizeof *sb);
    if (!sb)
        return pk_err(PACKER_ENOMEM, "out of memory");
    sb->cap = mem_cap;
    sb->L = lua_newstate(sb_alloc, sb);
    if (!sb->L) {
        pk_free(sb);
        return pk_err(PACKER_ENOMEM, "cannot create a Lua state");
    }
    lua_State *L = sb->L;
    open_lib(L, LUA_GNAME, luaopen_base);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);
    static const char *const libs[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                       LUA_UTF8LIBNAME, NULL};
    remove_fields(L, NULL, base_drop);
    remove_fields(L, LUA_MATHLIBNAME, math_drop);
    lua_pushcfunction(L, safe_load);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, safe_rawset);
    lua_setglobal(L, "rawset");
    lua_pushnil(L);
    lua_setglobal(L, "_G"); /* each chunk's env names itself _G */
    for (const char *const *lib = libs; *lib; lib++) {
        lua_getglobal(L, *lib);
        freeze_top(L);
        lua_setglobal(L, *lib);
    }
    lua_pushliteral(L, ""); /* hide the string metatable ("":rep still works) */
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    luaL_newmetatable(L, ENV_MT);
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    *out = sb;
    return 0;
}

void sandbox_free(sandbox *sb)
{
    if (!sb)
        return;
    lua_close(sb->L);
    pk_free(sb);
}

lua_State *sandbox_state(sandbox *sb)
{
    return sb->L;
}

int sandbox_load(sandbox *sb, const char *src, size_t len, const char *chunkname, char *err,
                 size_t errlen)
{
    if (luaL_loadbufferx(sb->L, src, len, chunkname, "t") == LUA_OK) {
        set_fresh_env(sb->L);
        return 0;
    }
    snprintf(err, errlen, "%s", lua_tostring(sb->L, -1));
    lua_pop(sb->L, 1);
    return PACKER_EPARSE;
}

typedef struct {
    char *buf;
    size_t len, cap;
} dump_buf;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    dump_buf *d = ud;
    if (d->len + sz > d->cap) {
        size_t cap = (d->len + sz) * 2;
        char *nb = pk_realloc(d->buf, cap);
        if (!nb)
            return 1;
        d->buf = nb;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, p, sz);
    d->len += sz;
    return 0;
}

int sandbox_dump(sandbox *sb, char **out, size_t *len)
{
    dump_buf d = {0};
    *out = NULL;
    if (lua_dump(sb->L, dump_writer, &d, 0) != 0 || !d.buf) {
        pk_free(d.buf);
        return pk_err(PACKER_ENOMEM, "out of memory");
    }
    *out = d.buf;
    *len = d.len;
    return 0;
}

int sandbox_load_dump(sandbox *sb, const char *bc, size_t len, const char *chunkname)
{
    if (luaL_loadbufferx(sb->L, bc, len, chunkname, "b") != LUA_OK) {
        int rc = pk_err(PACKER_EPARSE, "%s: %s", chunkname, lua_tostring(sb->L, -1));
        lua_pop(sb->L, 1);
        return rc;
    }
    set_fresh_env(sb->L);
    return 0;
}

int sandbox_call(sandbox *sb, int nargs, int nresults, long instructions, char *err, size_t errlen)
{
    lua_State *L = sb->L;
    sb->budget = instructions / HOOK_EVERY + 1;
    sb->spent = 0;
    sb->over_budget = sb->over_memory = false;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
    int rc = lua_pcall(L, nargs, nresults, 0);
    lua_sethook(L, NULL, 0, 0);
    /* the allocator may refuse and Lua recover with a collection: only a
     * memory error that reached the top counts against the script */
    if (rc == LUA_OK && !sb->over_budget)
        return 0;
    if (sb->over_budget)
        snprintf(err, errlen, "instruction budget exceeded (%ld instructions)", instructions);
    else if (rc == LUA_ERRMEM || sb->over_memory)
        snprintf(err, errlen, "memory cap exceeded (%zu bytes)", sb->cap);
    else
        snprintf(err, errlen, "%s",
                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                : "error object is not a string");
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
    return PACKER_EREFUSED;
}

/* A JSON value as Lua values (JSON null: nil; null object members are
 * left out). Shared by the sandbox's ctx objects and the Lua module. */
void sandbox_push_json(lua_State *L, const cJSON *j)
{
    luaL_checkstack(L, 4, "JSON nesting too deep");
    if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring);
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == (double)(lua_Integer)d)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsBool(j)) {
        lua_pushboolean(L, cJSON_IsTrue(j));
    } else if (cJSON_IsArray(j)) {
        lua_createtable(L, cJSON_GetArraySize(j), 0);
        lua_Integer i = 1;
        for (const cJSON *c = j->child; c; c = c->next) {
            sandbox_push_json(L, c);
            lua_rawseti(L, -2, i++);
        }
    } else if (cJSON_IsObject(j)) {
        lua_createtable(L, 0, 8);
        for (const cJSON *c = j->child; c; c = c->next) {
            if (cJSON_IsNull(c))
                continue;
            sandbox_push_json(L, c);
            lua_setfield(L, -2, c->string);
        }
    } else {
        lua_pushnil(L);
    }
}
