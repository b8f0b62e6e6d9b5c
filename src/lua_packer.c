/*
 * lua_packer.c - the Lua 5.4 module: require "packer".
 *
 *   local packer = require "packer"
 *   local resp = packer.init(dir, {name = "demo"})
 *   local p = assert(packer.open(dir))        -- or packer.open(dir, {bus = b})
 *   p:on(function(ev) print(ev.kind) end)
 *   p:observe(true)                           -- watch the workspace (off by default)
 *   p:poll(5)                                 -- wait up to 5 s for events, deliver them
 *   local r = p:register_asset({"assets/hero"}, {kind = "raw"})
 *   for _, a in ipairs(p:list_assets().data.assets) do print(a.address) end
 *   p:close()                                 -- or let __gc / __close do it
 *
 * Responses come back as plain tables (the JSON response, JSON null as
 * nil). Events: a Lua script is single-threaded, so the bus's dispatcher
 * thread only queues each envelope; they are handed to Lua callbacks on
 * the script's own thread by bus:poll(), which every service method calls
 * before returning. Expected failures are values (nil, message, code);
 * misuse raises.
 *
 * Threads: one lua_State per thread, as Lua requires; the C handles inside
 * are thread-safe (packer.h).
 */
#include <lauxlib.h>
#include <lua.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define BUS_MT "packer.bus"
#define PROJECT_MT "packer.project"

int luaopen_packer(lua_State *L);

/* ---- JSON <-> Lua ------------------------------------------------------ */

static cJSON *to_json(lua_State *L, int idx, int depth)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TBOOLEAN:
        return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        return cJSON_CreateNumber(lua_tonumber(L, idx));
    case LUA_TTABLE:
        break;
    default:
        return cJSON_CreateNull();
    }
    if (depth > 32)
        luaL_error(L, "parameters nested too deeply");
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    cJSON *out = n > 0 ? cJSON_CreateArray() : cJSON_CreateObject();
    if (!out)
        luaL_error(L, "out of memory");
    if (n > 0) {
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            cJSON_AddItemToArray(out, to_json(L, -1, depth + 1));
            lua_pop(L, 1);
        }
        return out;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) == LUA_TSTRING)
            cJSON_AddItemToObject(out, lua_tostring(L, -2), to_json(L, -1, depth + 1));
        lua_pop(L, 1);
    }
    return out;
}

/* ---- bus --------------------------------------------------------------- */

typedef struct lbus {
    packer_bus *bus;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* an event was queued */
    char **queue;      /* event JSON lines from the dispatcher thread */
    size_t n, cap;
    uint64_t sub;
    int handlers; /* registry ref of the Lua handler list */
    int users;    /* open projects publishing to this bus */
    bool dead;    /* collected while projects still used it */
} lbus;

static void lbus_on_event(const packer_event *ev, void *ud)
{
    lbus *b = ud;
    char *json = packer_event_json(ev);
    if (!json)
        return;
    pthread_mutex_lock(&b->mu);
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        char **q = pk_realloc(b->queue, cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&b->mu);
            pk_free(json);
            return;
        }
        b->queue = q;
        b->cap = cap;
    }
    b->queue[b->n++] = json;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static lbus *check_bus(lua_State *L, int idx)
{
    lbus *b = luaL_checkudata(L, idx, BUS_MT);
    luaL_argcheck(L, b->bus != NULL && !b->dead, idx, "bus is closed");
    return b;
}

static int l_bus_new(lua_State *L)
{
    lbus *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    b->handlers = LUA_NOREF;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    luaL_setmetatable(L, BUS_MT);
    if (packer_bus_new(&b->bus) != 0 ||
        packer_bus_subscribe(b->bus, lbus_on_event, b, &b->sub) != 0)
        return luaL_error(L, "%s", packer_last_error());
    lua_newtable(L);
    b->handlers = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static int l_bus_on(lua_State *L)
{
    lbus *b = check_bus(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->handlers);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

/* Deliver queued events to the Lua handlers; returns them as a list too. */
static int bus_poll(lua_State *L, lbus *b)
{
    packer_bus_flush(b->bus);
    pthread_mutex_lock(&b->mu);
    char **q = b->queue;
    size_t n = b->n;
    b->queue = NULL;
    b->n = b->cap = 0;
    pthread_mutex_unlock(&b->mu);
    lua_createtable(L, (int)n, 0);
    int list = lua_gettop(L);
    for (size_t i = 0; i < n; i++) {
        cJSON *j = cJSON_Parse(q[i]);
        pk_free(q[i]);
        sandbox_push_json(L, j);
        cJSON_Delete(j);
        lua_rawseti(L, list, (lua_Integer)i + 1);
    }
    pk_free(q);
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->handlers);
    int handlers = lua_gettop(L);
    for (size_t i = 1; i <= n; i++) {
        for (lua_Integer h = 1; h <= (lua_Integer)lua_rawlen(L, handlers); h++) {
            lua_rawgeti(L, handlers, h);
            lua_rawgeti(L, list, (lua_Integer)i);
            lua_call(L, 1, 0);
        }
    }
    lua_settop(L, list);
    return 1;
}

/* Wait up to `timeout` seconds (optional argument at idx) for a first
 * event, so that a script can wait for the observer without spinning. */
static void bus_wait(lua_State *L, lbus *b, int idx)
{
    double timeout = luaL_optnumber(L, idx, 0);
    if (timeout <= 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double ns = (double)ts.tv_nsec + (timeout - (double)(long)timeout) * 1e9;
    ts.tv_sec += (time_t)timeout + (time_t)(ns / 1e9);
    ts.tv_nsec = (long)ns % 1000000000L;
    pthread_mutex_lock(&b->mu);
    while (b->n == 0 && pthread_cond_timedwait(&b->cv, &b->mu, &ts) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&b->mu);
}

static int l_bus_poll(lua_State *L)
{
    lbus *b = check_bus(L, 1);
    bus_wait(L, b, 2);
    return bus_poll(L, b);
}

/* Finalizers may run bus-first (lua_close runs them in reverse order of
 * creation); a bus still used by an open project is released by the last
 * project's close instead. The userdata's memory outlives both finalizers. */
static void bus_release(lua_State *L, lbus *b)
{
    if (!b->bus)
        return;
    packer_bus_unsubscribe(b->bus, b->sub);
    packer_bus_free(b->bus);
    b->bus = NULL;
    for (size_t i = 0; i < b->n; i++)
        pk_free(b->queue[i]);
    pk_free(b->queue);
    b->queue = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, b->handlers);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

static int l_bus_gc(lua_State *L)
{
    lbus *b = luaL_checkudata(L, 1, BUS_MT);
    b->dead = true;
    if (b->users == 0)
        bus_release(L, b);
    return 0;
}

/* ---- project ----------------------------------------------------------- */

typedef struct {
    packer_project *p;
} lproject;

/* uservalue 1 of a project: its bus userdata */
static lproject *check_project(lua_State *L, int idx)
{
    lproject *lp = luaL_checkudata(L, idx, PROJECT_MT);
    luaL_argcheck(L, lp->p != NULL, idx, "project is closed");
    return lp;
}

static int push_response(lua_State *L, packer_response *r)
{
    sandbox_push_json(L, response_root(r));
    packer_response_free(r);
    return 1;
}

static int l_open(lua_State *L)
{
    const char *dir = luaL_optstring(L, 1, ".");
    int has_opts = lua_istable(L, 2);
    lproject *lp = lua_newuserdatauv(L, sizeof *lp, 1);
    lp->p = NULL;
    luaL_setmetatable(L, PROJECT_MT);
    int ud = lua_gettop(L);
    if (has_opts)
        lua_getfield(L, 2, "bus");
    if (!has_opts || lua_isnil(L, -1)) {
        if (has_opts)
            lua_pop(L, 1);
        l_bus_new(L); /* the script is the host: its bus for this project */
    }
    lbus *b = check_bus(L, -1);
    lua_setiuservalue(L, ud, 1);
    if (packer_project_open(dir, b->bus, &lp->p) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, packer_last_error());
        return 2;
    }
    b->users++;
    lua_settop(L, ud);
    return 1;
}

static lbus *project_bus_of(lua_State *L, int idx)
{
    lua_getiuservalue(L, idx, 1);
    lbus *b = luaL_checkudata(L, -1, BUS_MT);
    lua_pop(L, 1);
    return b;
}

/* Call a service with the params table at stack index pidx (0: none). */
static int call_service(lua_State *L, const char *name, int pidx)
{
    lproject *lp = check_project(L, 1);
    char *params = NULL;
    if (pidx) {
        cJSON *j = to_json(L, pidx, 0);
        params = json_canonical(j, false);
        cJSON_Delete(j);
    }
    packer_response *r = NULL;
    int rc = packer_call(lp->p, name, params, &r);
    pk_free(params);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, packer_last_error());
        lua_pushstring(L, packer_strerror(rc));
        return 3;
    }
    lbus *b = project_bus_of(L, 1);
    if (b->bus) {
        bus_poll(L, b);
        lua_pop(L, 1);
    }
    return push_response(L, r);
}

static int l_call(lua_State *L)
{
    const char *name = luaL_checkstring(L, 2);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    return call_service(L, name, lua_isnil(L, 3) ? 0 : 3);
}

/* Push at index 4 a fresh params table holding a copy of the options
 * table at index 3 (if any), so that callers' tables are never modified. */
static void params_from_opts(lua_State *L)
{
    lua_settop(L, 3);
    lua_newtable(L);
    if (!lua_istable(L, 3))
        return;
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, 4);
    }
}

/* Builds {key = arg2} merged with the optional options table at arg3. */
static int call_with_asset(lua_State *L, const char *name)
{
    const char *asset = luaL_checkstring(L, 2);
    params_from_opts(L);
    lua_pushstring(L, asset);
    lua_setfield(L, 4, "asset");
    return call_service(L, name, 4);
}

static int l_register(lua_State *L)
{
    luaL_argcheck(L, lua_isstring(L, 2) || lua_istable(L, 2), 2, "path or list of paths");
    params_from_opts(L);
    if (lua_isstring(L, 2)) {
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, 2);
        lua_rawseti(L, -2, 1);
    } else {
        lua_pushvalue(L, 2);
    }
    lua_setfield(L, 4, "paths");
    return call_service(L, "register_asset", 4);
}

/* Methods that take (asset [, opts]) or ([opts]): the service name is the
 * closure's upvalue (see luaopen_packer). */
static int l_asset_method(lua_State *L)
{
    return call_with_asset(L, lua_tostring(L, lua_upvalueindex(1)));
}

static int l_opts_method(lua_State *L)
{
    lua_settop(L, 2);
    if (!lua_isnil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    return call_service(L, lua_tostring(L, lua_upvalueindex(1)), lua_isnil(L, 2) ? 0 : 2);
}

static int l_on(lua_State *L)
{
    check_project(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_getiuservalue(L, 1, 1);
    lua_replace(L, 1);
    return l_bus_on(L);
}

static int l_poll(lua_State *L)
{
    check_project(L, 1);
    lbus *b = project_bus_of(L, 1);
    bus_wait(L, b, 2);
    return bus_poll(L, b);
}

/* p:observe(on): background observation (packer_project_observe). */
static int l_observe(lua_State *L)
{
    lproject *lp = check_project(L, 1);
    luaL_checkany(L, 2);
    if (packer_project_observe(lp->p, lua_toboolean(L, 2)) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, packer_last_error());
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_state(lua_State *L)
{
    lua_pushstring(L, packer_state_name(packer_project_state(check_project(L, 1)->p)));
    return 1;
}

static int l_close(lua_State *L)
{
    lproject *lp = luaL_checkudata(L, 1, PROJECT_MT);
    if (!lp->p)
        return 0;
    packer_project_close(lp->p);
    lp->p = NULL;
    lbus *b = project_bus_of(L, 1);
    if (--b->users == 0 && b->dead)
        bus_release(L, b);
    return 0;
}

static int l_index(lua_State *L)
{
    lproject *lp = luaL_checkudata(L, 1, PROJECT_MT);
    const char *k = luaL_checkstring(L, 2);
    if (lp->p && strcmp(k, "root") == 0) {
        lua_pushstring(L, packer_project_root(lp->p));
        return 1;
    }
    if (lp->p && strcmp(k, "project_id") == 0) {
        lua_pushstring(L, packer_project_id(lp->p));
        return 1;
    }
    if (strcmp(k, "bus") == 0) {
        lua_getiuservalue(L, 1, 1);
        return 1;
    }
    luaL_getmetatable(L, PROJECT_MT);
    lua_getfield(L, -1, "__methods");
    lua_getfield(L, -1, k);
    return 1;
}

static int l_tostring(lua_State *L)
{
    lproject *lp = luaL_checkudata(L, 1, PROJECT_MT);
    if (lp->p)
        lua_pushfstring(L, "packer.project(%s)", packer_project_root(lp->p));
    else
        lua_pushliteral(L, "packer.project(closed)");
    return 1;
}

/* ---- module functions ------------------------------------------------ */

static int l_init(lua_State *L)
{
    const char *dir = luaL_optstring(L, 1, ".");
    const char *name = NULL;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "name");
        name = lua_tostring(L, -1);
    }
    packer_response *r = NULL;
    if (packer_init_workspace(dir, name, NULL, &r) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, packer_last_error());
        return 2;
    }
    return push_response(L, r);
}

static int l_find(lua_State *L)
{
    char *root = NULL;
    if (packer_find_workspace(luaL_optstring(L, 1, "."), &root) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, packer_last_error());
        return 2;
    }
    lua_pushstring(L, root);
    packer_free(root);
    return 1;
}

static const char *const ASSET_METHODS[] = {"include_asset_in_build", "exclude_asset_from_build",
                                            "remove_asset", "get_asset_details", NULL};
static const char *const OPTS_METHODS[] = {"list_assets", "status",          "doctor",  "build",
                                           "quarantine",  "quarantine_list", "restore", NULL};

static void add_service_methods(lua_State *L, const char *const *names, lua_CFunction fn)
{
    for (; *names; names++) {
        lua_pushstring(L, *names);
        lua_pushcclosure(L, fn, 1);
        lua_setfield(L, -2, *names);
    }
}

static const luaL_Reg project_methods[] = {
    {"register_asset", l_register}, {"call", l_call},   {"on", l_on},       {"poll", l_poll},
    {"observe", l_observe},         {"state", l_state}, {"close", l_close}, {NULL, NULL},
};

static const luaL_Reg bus_methods[] = {
    {"on", l_bus_on},
    {"poll", l_bus_poll},
    {"close", l_bus_gc},
    {NULL, NULL},
};

/* packer.hash(bytes) -> XXH3-128 as 32 hex digits, as in get_asset_details */
static int l_hash(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char hex[HASH_HEX_LEN + 1];
    hash_hex(s, len, hex);
    lua_pushstring(L, hex);
    return 1;
}

static const luaL_Reg module_fns[] = {
    {"hash", l_hash},   {"open", l_open},           {"init", l_init},
    {"bus", l_bus_new}, {"find_workspace", l_find}, {NULL, NULL},
};

/* Both __gc and __close release the handle: `local p <close>` works. */
static void set_finalizers(lua_State *L, lua_CFunction fn)
{
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, "__close");
}

int luaopen_packer(lua_State *L)
{
    luaL_newmetatable(L, BUS_MT);
    luaL_newlib(L, bus_methods);
    lua_setfield(L, -2, "__index");
    set_finalizers(L, l_bus_gc);
    lua_pop(L, 1);

    luaL_newmetatable(L, PROJECT_MT);
    luaL_newlib(L, project_methods);
    add_service_methods(L, ASSET_METHODS, l_asset_method);
    add_service_methods(L, OPTS_METHODS, l_opts_method);
    lua_setfield(L, -2, "__methods");
    lua_pushcfunction(L, l_index);
    lua_setfield(L, -2, "__index");
    set_finalizers(L, l_close);
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newlib(L, module_fns);
    lua_pushliteral(L, PACKER_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
