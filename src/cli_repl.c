/*
 * cli_repl.c - `packer repl`: a Lua 5.4 prompt with the project open.
 *
 * C supplies what only C can: a Lua state with the packer module
 * preloaded, and GNU readline (line editing, history in ~/.packer_history)
 * exposed as two functions. The loop itself - incomplete-chunk detection,
 * "=expr" shortcuts, pretty printing of tables - is lua/packer/repl.lua.
 *
 * The lua/ directory is found through $PACKER_LUA_DIR, then
 * <bindir>/../share/packer/lua (installed), then the source tree.
 *
 * Threads: main thread only.
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "cli.h"
#include "internal.h"

#ifndef PACKER_SRC_LUA_DIR
#define PACKER_SRC_LUA_DIR "lua"
#endif

int luaopen_packer(lua_State *L);

static int l_readline(lua_State *L)
{
    char *line = readline(luaL_optstring(L, 1, "> "));
    if (!line)
        return 0;
    lua_pushstring(L, line);
    free(line);
    return 1;
}

static int l_add_history(lua_State *L)
{
    add_history(luaL_checkstring(L, 1));
    return 0;
}

static char *lua_dir(void)
{
    const char *env = getenv("PACKER_LUA_DIR");
    if (env && *env)
        return pk_strdup(env);
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char *installed = pk_asprintf("%s/../share/packer/lua", exe);
            char *probe = installed ? io_join(installed, "packer/repl.lua") : NULL;
            bool ok = probe && io_is_file(probe);
            pk_free(probe);
            if (ok)
                return installed;
            pk_free(installed);
        }
    }
    return pk_strdup(PACKER_SRC_LUA_DIR);
}

static char *history_path(void)
{
    const char *home = getenv("HOME");
    return home && *home ? pk_asprintf("%s/.packer_history", home) : NULL;
}

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

int cli_repl(const char *root)
{
    lua_State *L = luaL_newstate();
    if (!L)
        return -1;
    luaL_openlibs(L);
    luaL_requiref(L, "packer", luaopen_packer, 0);
    lua_pop(L, 1);
    char *dir = lua_dir();
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir ? dir : "lua", dir ? dir : "lua");
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    pk_free(dir);

    char *hist = history_path();
    using_history();
    if (hist)
        read_history(hist);

    lua_pushcfunction(L, traceback);
    int msgh = lua_gettop(L);
    int rc = luaL_loadstring(L, "local root, rl, hist = ...\n"
                                "return require('packer.repl').run{root = root, "
                                "readline = rl, add_history = hist}");
    if (rc == LUA_OK) {
        lua_pushstring(L, root);
        lua_pushcfunction(L, l_readline);
        lua_pushcfunction(L, l_add_history);
        rc = lua_pcall(L, 3, 0, msgh);
    }
    if (rc != LUA_OK)
        fprintf(stderr, "packer repl: %s\n", lua_tostring(L, -1));
    if (hist) {
        write_history(hist);
        history_truncate_file(hist, 1000);
    }
    pk_free(hist);
    lua_close(L);
    return rc == LUA_OK ? 0 : -1;
}
