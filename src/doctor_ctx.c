/*
 * doctor_ctx.c - the ctx object doctor rules receive: read-only views of
 * the registered world and of the workspace, and ctx:report.
 *
 * The whole API (README "Writing a doctor rule" documents it):
 *   ctx.mode                  "registered" or "workspace"
 *   ctx:assets()              {asset_id, root, address, kind, included}...
 *   ctx:manifest(id)          manifest table | nil, code, message
 *   ctx:manifest_canonical(id) whether asset.json is in canonical form
 *   ctx:inputs(id)            {name, path, exists, size, escapes, message}...
 *                             | nil, code, message
 *   ctx:recipe(kind)          true | nil, code, message
 *   ctx:config()              packer.json as a table
 *   ctx:stat(path)            {type, size} | nil, message
 *   ctx:read(path [, max])    at most max bytes (default 1 MiB, cap 16 MiB)
 *   ctx:hash(path)            XXH3-128 hex, size
 *   ctx:list(dir)             sorted entry names
 *   ctx:canonical_json(path)  the JSON file re-written canonically (pretty)
 *   ctx:files(), ctx:roots(), ctx:duplicates(), ctx:cache(),
 *   ctx:quarantine()          the workspace views (doctor_ws.c)
 *   ctx:report{code, message, severity?, asset_id?, path?}
 *
 * Invariants: every path is confined to the workspace with ws_confine
 * (symlinks resolved) and packer-owned .packer/ is not readable through
 * ctx:read/ctx:list; every answer is a fresh table, so a rule cannot
 * change what the next call or the next rule sees. Manifests are parsed
 * once per run (doctor_asset) whatever the number of rules asking.
 *
 * Threads: lane only (rules run there).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define READ_DEFAULT (1u << 20)
#define READ_CAP (16u << 20)

doc_run *doctor_run_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

void doctor_set_str(lua_State *L, const char *key, const char *val)
{
    if (!val)
        return;
    lua_pushstring(L, val);
    lua_setfield(L, -2, key);
}

void doctor_set_int(lua_State *L, const char *key, long long v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, key);
}

void doctor_set_bool(lua_State *L, const char *key, bool v)
{
    lua_pushboolean(L, v);
    lua_setfield(L, -2, key);
}

static int fail3(lua_State *L, const char *code, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, code);
    lua_pushstring(L, msg);
    return 3;
}

/* ---- the registered world ------------------------------------------------ */

long doctor_index(doc_run *d, const char *id)
{
    const asset_rec *a = snap_by_id(d->cur, id);
    if (!a)
        return -1;
    size_t lo = 0, hi = d->nall;
    while (lo < hi) { /* d->all is sorted by root */
        size_t mid = (lo + hi) / 2;
        int c = strcmp(d->all[mid]->root, a->root);
        if (c == 0) {
            for (size_t i = mid; i < d->nall && strcmp(d->all[i]->root, a->root) == 0; i++)
                if (d->all[i] == a)
                    return (long)i;
            for (size_t i = mid; i-- > 0 && strcmp(d->all[i]->root, a->root) == 0;)
                if (d->all[i] == a)
                    return (long)i;
            return -1;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static bool root_ok(doc_run *d, const asset_rec *a)
{
    char *abs = io_join(d->root, a->root);
    bool ok = abs && io_is_dir(abs);
    pk_free(abs);
    return ok;
}

doc_asset *doctor_asset(doc_run *d, size_t i)
{
    doc_asset *m = &d->memo[i];
    if (m->loaded)
        return m;
    m->loaded = true;
    const asset_rec *a = d->all[i];
    if (!root_ok(d, a)) {
        m->rc = PACKER_ENOTFOUND;
        m->error = pk_asprintf("%s: asset root of %s is missing", a->root, a->id);
        return m;
    }
    /* read the text once: rules that check its form need it too */
    char *path = pk_asprintf("%s/%s/asset.json", d->root, a->root);
    char *display = pk_asprintf("%s/asset.json", a->root);
    m->rc = path && display ? io_read_file(path, &m->text, &m->len) : PACKER_ENOMEM;
    if (m->rc == 0)
        m->rc = manifest_parse(m->text, m->len, display, &m->m);
    else /* missing or unreadable: manifest_load words it as build does */
        m->rc = manifest_load(d->root, a->root, &m->m);
    if (m->rc) {
        m->error = pk_strdup(packer_last_error());
        pk_free(m->text);
        m->text = NULL;
    }
    m->canonical = -1;
    pk_free(path);
    pk_free(display);
    return m;
}

/* The asset at argument 2 (an id), with its manifest, or a 3-value failure. */
static doc_asset *asset_arg(lua_State *L, doc_run *d, const asset_rec **a, const char **code)
{
    const char *id = luaL_checkstring(L, 2);
    long i = doctor_index(d, id);
    if (i < 0)
        luaL_argerror(L, 2, "not a registered asset id");
    *a = d->all[i];
    doc_asset *m = doctor_asset(d, (size_t)i);
    *code = !m->rc                                         ? NULL
            : m->rc == PACKER_ENOTFOUND && !root_ok(d, *a) ? "root_missing"
            : m->rc == PACKER_ENOTFOUND                    ? "manifest_missing"
                                                           : "manifest_invalid";
    return m;
}

static int ctx_assets(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    lua_createtable(L, (int)d->nall, 0);
    for (size_t i = 0; i < d->nall; i++) {
        const asset_rec *a = d->all[i];
        lua_createtable(L, 0, 5);
        doctor_set_str(L, "asset_id", a->id);
        doctor_set_str(L, "root", a->root);
        doctor_set_str(L, "address", a->address);
        doctor_set_str(L, "kind", a->kind);
        doctor_set_bool(L, "included", a->included);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int ctx_manifest(lua_State *L)
{
    const asset_rec *a;
    const char *code;
    doc_asset *m = asset_arg(L, doctor_run_of(L), &a, &code);
    if (code)
        return fail3(L, code, m->error ? m->error : "cannot load the manifest");
    lua_createtable(L, 0, 4);
    doctor_set_str(L, "kind", m->m->kind);
    doctor_set_str(L, "address", m->m->address);
    lua_createtable(L, (int)m->m->ninputs, 0);
    for (size_t k = 0; k < m->m->ninputs; k++) {
        lua_pushstring(L, m->m->inputs[k]);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    lua_setfield(L, -2, "inputs");
    sandbox_push_json(L, m->m->options);
    lua_setfield(L, -2, "options");
    return 1;
}

/* Confine and stat every declared input of asset i once. */
static bool inputs_of(doc_run *d, size_t i, doc_asset *m)
{
    if (m->inputs_done)
        return true;
    const asset_rec *a = d->all[i];
    if (!(m->inputs = pk_calloc(m->m->ninputs + 1, sizeof *m->inputs)))
        return false;
    for (size_t k = 0; k < m->m->ninputs; k++) {
        doc_input *in = &m->inputs[k];
        if (ws_confine_under(d->root, a->root, m->m->inputs[k], &in->path) != 0) {
            in->message = pk_strdup(packer_last_error());
            continue;
        }
        char *abs = io_join(d->root, in->path);
        struct stat st;
        in->exists = abs && stat(abs, &st) == 0 && S_ISREG(st.st_mode);
        if (in->exists)
            in->size = (uint64_t)st.st_size;
        else
            in->message = pk_asprintf("%s: input of %s not found", in->path, a->id);
        pk_free(abs);
    }
    m->inputs_done = true;
    return true;
}

static void push_input(lua_State *L, const char *name, const doc_input *in)
{
    lua_createtable(L, 0, 6);
    doctor_set_str(L, "name", name);
    doctor_set_str(L, "path", in->path);
    doctor_set_bool(L, "escapes", in->path == NULL);
    doctor_set_bool(L, "exists", in->exists);
    if (in->exists)
        doctor_set_int(L, "size", (lua_Integer)in->size);
    doctor_set_str(L, "message", in->message);
}

static int ctx_inputs(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    const asset_rec *a;
    const char *code;
    doc_asset *m = asset_arg(L, d, &a, &code);
    if (code)
        return fail3(L, code, m->error ? m->error : "cannot load the manifest");
    if (!inputs_of(d, (size_t)(m - d->memo), m))
        return luaL_error(L, "out of memory");
    lua_createtable(L, (int)m->m->ninputs, 0);
    for (size_t k = 0; k < m->m->ninputs; k++) {
        push_input(L, m->m->inputs[k], &m->inputs[k]);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    return 1;
}

static int ctx_manifest_canonical(lua_State *L)
{
    const asset_rec *a;
    const char *code;
    doc_asset *m = asset_arg(L, doctor_run_of(L), &a, &code);
    if (code)
        return fail3(L, code, m->error ? m->error : "cannot load the manifest");
    if (m->canonical < 0) {
        cJSON *j = NULL;
        char *text =
            json_parse_text(m->text, m->len, a->root, &j) == 0 ? json_canonical(j, true) : NULL;
        cJSON_Delete(j);
        if (!text)
            return luaL_error(L, "out of memory");
        m->canonical = strlen(text) == m->len && memcmp(text, m->text, m->len) == 0;
        pk_free(text);
    }
    lua_pushboolean(L, m->canonical);
    return 1;
}

static int ctx_recipe(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    const char *kind = luaL_checkstring(L, 2), *why = NULL;
    if (recipes_id(d->rs, kind, &why)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (why)
        return fail3(L, "recipe_invalid", why);
    lua_pushfstring(L, "kind \"%s\" has no recipe (add recipes/%s.lua)", kind, kind);
    return fail3(L, "unknown_kind", lua_tostring(L, -1));
}

static int ctx_config(lua_State *L)
{
    sandbox_push_json(L, doctor_run_of(L)->config);
    return 1;
}

/* ---- files ---------------------------------------------------------------- */

/* Argument 2 confined to the workspace; raises on escape. Caller frees. */
static char *path_arg(lua_State *L, doc_run *d, bool allow_owned)
{
    const char *given = luaL_checkstring(L, 2);
    char *rel = NULL;
    if (ws_confine(d->root, given, &rel) != 0) {
        lua_pushstring(L, packer_last_error());
        lua_error(L);
    }
    if (!allow_owned && ws_is_owned(rel)) {
        pk_free(rel);
        luaL_error(L, "%s: .packer/ is packer-owned; use the ctx functions", given);
    }
    return rel;
}

static char *abs_of(lua_State *L, doc_run *d, char *rel)
{
    char *abs = io_join(d->root, rel);
    pk_free(rel);
    if (!abs)
        luaL_error(L, "out of memory");
    return abs;
}

static int ctx_stat(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    char *abs = abs_of(L, d, path_arg(L, d, true));
    struct stat st;
    int rc = lstat(abs, &st);
    pk_free(abs);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: not found", lua_tostring(L, 2));
        return 2;
    }
    lua_createtable(L, 0, 2);
    doctor_set_str(L, "type",
                   S_ISDIR(st.st_mode)   ? "directory"
                   : S_ISLNK(st.st_mode) ? "link"
                   : S_ISREG(st.st_mode) ? "file"
                                         : "other");
    doctor_set_int(L, "size", (lua_Integer)st.st_size);
    return 1;
}

static int ctx_read(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    lua_Integer max = luaL_optinteger(L, 3, READ_DEFAULT);
    luaL_argcheck(L, max >= 0 && max <= READ_CAP, 3, "at most 16 MiB per read");
    char *abs = abs_of(L, d, path_arg(L, d, false));
    int fd = open(abs, O_RDONLY | O_CLOEXEC);
    pk_free(abs);
    if (fd < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: cannot read", lua_tostring(L, 2));
        return 2;
    }
    struct stat st; /* size the buffer by the file, not the cap: reads are mostly small */
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < max)
        max = st.st_size;
    luaL_Buffer b;
    char *buf = luaL_buffinitsize(L, &b, (size_t)max);
    size_t got = 0;
    ssize_t n;
    while (got < (size_t)max && (n = read(fd, buf + got, (size_t)max - got)) > 0)
        got += (size_t)n;
    close(fd);
    luaL_pushresultsize(&b, got);
    return 1;
}

static int ctx_hash(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    char *abs = abs_of(L, d, path_arg(L, d, false)), hex[HASH_HEX_LEN + 1];
    uint64_t size = 0;
    int rc = hash_file(abs, hex, &size);
    pk_free(abs);
    if (rc) {
        lua_pushnil(L);
        lua_pushstring(L, packer_last_error());
        return 2;
    }
    lua_pushstring(L, hex);
    lua_pushinteger(L, (lua_Integer)size);
    return 2;
}

static int ctx_canonical(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    const char *given = luaL_checkstring(L, 2);
    char *abs = abs_of(L, d, path_arg(L, d, false)), *text = NULL;
    cJSON *j = NULL;
    int rc = json_load_file(abs, given, &j);
    pk_free(abs);
    if (rc == 0 && !(text = json_canonical(j, true)))
        rc = pk_err(PACKER_ENOMEM, "out of memory");
    cJSON_Delete(j);
    if (rc) {
        lua_pushnil(L);
        lua_pushstring(L, packer_last_error());
        return 2;
    }
    lua_pushstring(L, text);
    pk_free(text);
    return 1;
}

static int ctx_list(lua_State *L)
{
    doc_run *d = doctor_run_of(L);
    char *abs = abs_of(L, d, path_arg(L, d, false));
    DIR *dir = opendir(abs);
    pk_free(abs);
    if (!dir) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: not a directory", lua_tostring(L, 2));
        return 2;
    }
    lua_newtable(L);
    lua_Integer n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            lua_pushstring(L, e->d_name);
            lua_rawseti(L, -2, ++n);
        }
    closedir(dir);
    /* sort in Lua's own table.sort would cost budget; names are few */
    char **v = pk_calloc((size_t)n + 1, sizeof *v);
    for (lua_Integer i = 1; v && i <= n; i++) {
        lua_rawgeti(L, -1, i);
        v[i - 1] = (char *)lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    if (v) {
        if (n > 1)
            qsort(v, (size_t)n, sizeof *v, str_ptr_cmp);
        lua_createtable(L, (int)n, 0);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_pushstring(L, v[i - 1]);
            lua_rawseti(L, -2, i);
        }
        pk_free(v);
    }
    return 1;
}

static int ctx_report(lua_State *L)
{
    doc_run *d = lua_touserdata(L, lua_upvalueindex(1));
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "code");
    lua_getfield(L, 2, "message");
    lua_getfield(L, 2, "severity");
    lua_getfield(L, 2, "asset_id");
    lua_getfield(L, 2, "path");
    const char *code = lua_tostring(L, -5), *msg = lua_tostring(L, -4);
    const char *sev = lua_isnil(L, -3) ? d->rule_severity : lua_tostring(L, -3);
    if (!code || !*code)
        return luaL_error(L, "ctx:report: \"code\" must be a non-empty string");
    if (!msg)
        return luaL_error(L, "ctx:report: \"message\" must be a string");
    if (!doctor_severity_ok(sev))
        return luaL_error(L, "ctx:report: \"severity\" must be error, warning or info");
    if (d->ndiags >= 1000000)
        return luaL_error(L, "ctx:report: too many diagnostics");
    doctor_diag(d, sev, code, d->rule_class, d->rule_id, lua_tostring(L, -2), lua_tostring(L, -1),
                msg);
    return 0;
}

void doctor_push_ctx(lua_State *L, doc_run *d)
{
    static const luaL_Reg methods[] = {{"assets", ctx_assets},
                                       {"manifest", ctx_manifest},
                                       {"inputs", ctx_inputs},
                                       {"recipe", ctx_recipe},
                                       {"config", ctx_config},
                                       {"stat", ctx_stat},
                                       {"read", ctx_read},
                                       {"hash", ctx_hash},
                                       {"list", ctx_list},
                                       {"canonical_json", ctx_canonical},
                                       {"manifest_canonical", ctx_manifest_canonical},
                                       {"report", ctx_report},
                                       {NULL, NULL}};
    lua_createtable(L, 0, 18);
    doctor_set_str(L, "mode", d->workspace ? "workspace" : "registered");
    lua_pushlightuserdata(L, d);
    luaL_setfuncs(L, methods, 1);
    doctor_ws_methods(L, d);
}
