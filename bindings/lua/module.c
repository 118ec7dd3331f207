/* The `onearm.core` Lua module: creates the module table and lets each
 * type's file register its metatable and constructors into it. Also holds
 * the few helpers every file shares (error reporting, the current-thread
 * record used by Lua callbacks). */
#include "lua_onearm.h"

#include <stdio.h>
#include <string.h>

int oa__lua_fail(lua_State *L, const char *fn, const oa_error *err) {
  const char *msg =
      err && err->message[0] ? err->message : oa_strerror(err ? err->code : -1);
  return luaL_error(L, "%s: %s", fn, msg);
}

/* Callbacks into Lua (Lua models, Lua explorers) must run on the thread
 * that is calling the engine, which may be a coroutine: the bindings record
 * it here. Thread-local because a lua_State is used by one OS thread at a
 * time while separate states may run on separate threads. */
static _Thread_local lua_State *current_state;

lua_State *oa__lua_enter(lua_State *L) {
  lua_State *prev = current_state;
  current_state = L;
  return prev;
}

void oa__lua_leave(lua_State *prev) {
  current_state = prev;
}

const void *oa__lua_registry(lua_State *L) {
  lua_pushvalue(L, LUA_REGISTRYINDEX);
  const void *p = lua_topointer(L, -1);
  lua_pop(L, 1);
  return p;
}

lua_State *oa__lua_callstate(lua_State *main, const void *registry) {
  if (current_state && oa__lua_registry(current_state) == registry) return current_state;
  return main;
}

/* [-0, +1, e] require "onearm.core" */
int luaopen_onearm_core(lua_State *L) {
  luaL_checkversion(L);
  lua_newtable(L);
  oa__lua_open_values(L);
  oa__lua_open_tensor(L);
  oa__lua_open_features(L);
  oa__lua_open_model(L);
  oa__lua_open_engine(L);
  lua_pushliteral(L, ONEARM_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}

void oa__lua_checkkeys(lua_State *L, int idx, const char *fn,
                       const char *const *allowed) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int ok = 0;
    if (lua_type(L, -2) == LUA_TSTRING)
      for (const char *const *a = allowed; *a && !ok; a++)
        ok = !strcmp(*a, lua_tostring(L, -2));
    if (!ok) {
      lua_pop(L, 1);
      luaL_error(L, "%s: unknown option '%s'", fn, luaL_tolstring(L, -1, NULL));
    }
    lua_pop(L, 1);
  }
}

double oa__lua_optnumber(lua_State *L, int idx, const char *fn, const char *key,
                         double def) {
  int t = lua_getfield(L, idx, key);
  double v = def;
  if (t == LUA_TNUMBER)
    v = lua_tonumber(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "%s: '%s' must be a number, got %s", fn, key, luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

lua_Integer oa__lua_optint(lua_State *L, int idx, const char *fn, const char *key,
                           lua_Integer def, lua_Integer min, lua_Integer max) {
  int t = lua_getfield(L, idx, key);
  lua_Integer v = def;
  if (t != LUA_TNIL) {
    int isint = 0;
    v = lua_tointegerx(L, -1, &isint);
    if (t != LUA_TNUMBER || !isint)
      luaL_error(L, "%s: '%s' must be an integer, got %s", fn, key, luaL_typename(L, -1));
  }
  if (v < min || v > max)
    luaL_error(L, "%s: '%s' must be from %I to %I, got %I", fn, key, min, max, v);
  lua_pop(L, 1);
  return v;
}

int oa__lua_optbool(lua_State *L, int idx, const char *fn, const char *key, int def) {
  int t = lua_getfield(L, idx, key);
  int v = def;
  if (t == LUA_TBOOLEAN)
    v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "%s: '%s' must be a boolean, got %s", fn, key, luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}
