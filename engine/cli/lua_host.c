/* The CLI's Lua host: runs a command written in Lua (scripts/onearm/)
 * inside the `onearm` binary. It creates a lua_State with the standard
 * libraries, makes `require "onearm.core"` load the C module linked into
 * this binary, points package.path at the scripts directory and calls the
 * named module's main(args) under a traceback message handler.
 *
 * The scripts directory is ONEARM_SCRIPTS when set in the environment, else
 * the one compiled in (the source tree's scripts/). A small `onearm.host`
 * module gives the Lua side what the standard library lacks: isatty, mkdir
 * and a monotonic clock. */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <limits.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "runtime/scripts_dir.h"

int luaopen_onearm_core(lua_State *L);

/* host.isatty(fd) -> boolean. [-1, +1, -] */
static int host_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* host.clock() -> seconds on a monotonic clock, for rates. [-0, +1, -] */
static int host_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
  return 1;
}

/* host.mkdir(path) -> true | nil, message: creates path and its missing
 * parents (mkdir -p); an existing directory is fine. [-1, +1|2, m] */
static int host_mkdir(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  char p[PATH_MAX];
  if (len == 0 || len >= sizeof p) return luaL_error(L, "mkdir: bad path length");
  memcpy(p, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (p[i] != '/' && p[i] != '\0') continue;
    char saved = p[i];
    p[i] = '\0';
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", p, strerror(errno));
      return 2;
    }
    p[i] = saved;
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: not a directory", path);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int luaopen_onearm_host(lua_State *L) {
  static const luaL_Reg fns[] = {{"isatty", host_isatty},
                                 {"clock", host_clock},
                                 {"mkdir", host_mkdir},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}

/* Message handler: the error message followed by a traceback; a non-string
 * error object is described by its __tostring or its type. [-1, +1, m] */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Set package.path to DIR/?.lua;DIR/?/init.lua and register the preloads. */
static void setup(lua_State *L, const char *scripts) {
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", scripts, scripts);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_onearm_core);
  lua_setfield(L, -2, "onearm.core");
  lua_pushcfunction(L, luaopen_onearm_host);
  lua_setfield(L, -2, "onearm.host");
  lua_pop(L, 2);
}

/* Protected part of oa_lua_host_run: require(module).main(args). The exit
 * code is main's integer result (0 when it returns nothing). [-0, +1, e] */
static int run_main(lua_State *L) {
  const char *module = lua_tostring(L, 1);
  int argc = (int)lua_tointeger(L, 2);
  char **argv = (char **)lua_touserdata(L, 3);
  lua_getglobal(L, "require");
  lua_pushstring(L, module);
  lua_call(L, 1, 1);
  if (lua_getfield(L, -1, "main") != LUA_TFUNCTION)
    return luaL_error(L, "module '%s' has no main function", module);
  lua_createtable(L, argc, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_call(L, 1, 1);
  if (lua_isnil(L, -1)) {
    lua_pushinteger(L, 0);
  } else if (!lua_isinteger(L, -1)) {
    return luaL_error(L, "%s.main returned %s, expected an exit code", module,
                      luaL_typename(L, -1));
  }
  return 1;
}

static const char *scripts_dir(void) { return oa_scripts_dir(); }

int oa_lua_host_run(const char *module, int argc, char **argv) {
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "onearm: cannot create a Lua state (out of memory)\n");
    return 1;
  }
  setup(L, scripts_dir());
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, run_main);
  lua_pushstring(L, module);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int code;
  if (lua_pcall(L, 3, 1, 1) != LUA_OK) {
    fflush(stdout);
    fprintf(stderr, "onearm: %s\n", lua_tostring(L, -1));
    code = 1;
  } else {
    code = (int)lua_tointeger(L, -1);
  }
  lua_close(L);
  return code;
}
