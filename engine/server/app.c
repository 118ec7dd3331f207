/* Loading a Lua app for the server: a lua_State with the standard
 * libraries, `onearm.core` preloaded from this binary, package.path on the
 * scripts directory, then `require("onearm").load_app(path)` (the sandbox
 * and validation are the Lua library's). The app table is kept in the
 * registry; its `.engine` userdata owns the engine the API serves.
 *
 * Per request, Lua runs only for raw reward signals (the app's reward
 * composition); ranking never enters Lua unless a policy itself is written
 * in Lua. */
#include "server/app.h"

#include <json-c/json.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int luaopen_onearm_core(lua_State *L);

/* The engine behind an `onearm.engine` userdata. The bindings own that
 * type; this is the accessor the server needs from them (to be declared in
 * bindings/lua/lua_onearm.h). Weak so that the library links before it
 * exists; load fails with a clear message in that case. */
oa_engine *oa_lua_check_engine(lua_State *L, int idx) __attribute__((weak));

struct oa_server_app {
  lua_State *L;
  int app_ref; /* registry ref of the app table */
  oa_engine *engine;
  char version[64];
  char default_policy[OA_MAX_NAME];
};

oa_engine *oa_server_app_engine(oa_server_app *a) {
  return a->engine;
}
const char *oa_server_app_version(const oa_server_app *a) {
  return a->version;
}
const char *oa_server_app_default_policy(const oa_server_app *a) {
  return a->default_policy[0] ? a->default_policy : NULL;
}

/* Message handler: the message plus a traceback. [-1, +1, m] */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = luaL_typename(L, 1);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Runs load_app(path), takes the engine, version and first policy name
 * from the app into a, and leaves the app table on the stack. Protected:
 * every Lua error becomes the load error. [-3, +1, e] */
static int load_body(lua_State *L) {
  oa_server_app *a = lua_touserdata(L, 1);
  const char *path = lua_touserdata(L, 2);
  const char *scripts = lua_touserdata(L, 3);
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_onearm_core);
  lua_setfield(L, -2, "onearm.core");
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", scripts, scripts);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, "");
  lua_setfield(L, -2, "cpath"); /* the only C module is the one linked in */
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushstring(L, "onearm");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "load_app");
  lua_pushstring(L, path);
  lua_call(L, 1, 1);
  int t = lua_gettop(L);
  if (!lua_istable(L, t))
    return luaL_error(L, "%s: load_app did not return an app", path);
  if (!oa_lua_check_engine)
    return luaL_error(L, "this build of the Lua bindings has no oa_lua_check_engine");
  lua_getfield(L, t, "engine");
  a->engine = oa_lua_check_engine(L, lua_gettop(L));
  lua_getfield(L, t, "version");
  snprintf(a->version, sizeof a->version, "%s",
           lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
  lua_getfield(L, t, "policies");
  if (lua_istable(L, -1) && lua_geti(L, -1, 1) == LUA_TSTRING)
    snprintf(a->default_policy, sizeof a->default_policy, "%s", lua_tostring(L, -1));
  lua_settop(L, t);
  return 1;
}

static double get_number(lua_State *L, int t, const char *key, double dflt) {
  lua_getfield(L, t, key);
  double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

/* The app's event settings, as app.lua normalised them, onto the engine. */
static int apply_event_config(oa_server_app *a, int t, oa_error *err) {
  lua_State *L = a->L;
  oa_event_config cfg = oa_event_config_defaults();
  cfg.reward_wait = get_number(L, t, "reward_wait", cfg.reward_wait);
  cfg.default_reward = get_number(L, t, "default_reward", cfg.default_reward);
  lua_getfield(L, t, "combine");
  if (lua_type(L, -1) == LUA_TSTRING) {
    int c = oa_combine_from_name(lua_tostring(L, -1));
    if (c >= 0) cfg.combine = (oa_combine)c;
  } else if (!lua_isnil(L, -1)) {
    fprintf(stderr, "onearm: a combine function is not supported by the server yet; "
                    "rewards are summed\n");
  }
  lua_pop(L, 1);
  lua_getfield(L, t, "close");
  const char *close = lua_tostring(L, -1);
  /* "deadline": wait reward_wait for every report; "first" and
   * "activation": the first reward closes the event. */
  cfg.close_on_reward = !(close && !strcmp(close, "deadline"));
  lua_pop(L, 1);
  return oa_engine_set_event_config(a->engine, &cfg, err);
}

oa_server_app *oa_server_app_load(const char *path, const char *scripts_dir,
                                  oa_error *err) {
  if (!scripts_dir) {
    const char *env = getenv("ONEARM_SCRIPTS");
    scripts_dir = env && *env ? env : ONEARM_SCRIPTS_DIR;
  }
  oa_server_app *a = calloc(1, sizeof *a);
  if (!a || !(a->L = luaL_newstate())) {
    free(a);
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  a->app_ref = LUA_NOREF;
  lua_State *L = a->L;
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, load_body);
  lua_pushlightuserdata(L, a);
  lua_pushlightuserdata(L, (void *)path);
  lua_pushlightuserdata(L, (void *)scripts_dir);
  if (lua_pcall(L, 3, 1, 1) != LUA_OK) {
    oa_error_set(err, OA_ESCRIPT, "%s", lua_tostring(L, -1));
    goto fail;
  }
  int t = lua_gettop(L);
  if (!a->engine) {
    oa_error_set(err, OA_ESCRIPT, "%s: the app has no engine", path);
    goto fail;
  }
  if (apply_event_config(a, t, err)) goto fail;
  a->app_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the app table */
  lua_settop(L, 0);
  return a;
fail:
  oa_server_app_free(a);
  return NULL;
}

void oa_server_app_free(oa_server_app *a) {
  if (!a) return;
  if (a->L) lua_close(a->L); /* collects the engine userdata, freeing the engine */
  free(a);
}

/* ---- reward hook ---- */

/* A JSON value as a Lua value (objects and arrays as tables, null as nil).
 * [-0, +1, m] */
static void push_json(lua_State *L, json_object *v, int depth) {
  luaL_checkstack(L, 4, "signals nested too deeply");
  switch (json_object_get_type(v)) {
  case json_type_null:
    lua_pushnil(L);
    break;
  case json_type_boolean:
    lua_pushboolean(L, json_object_get_boolean(v));
    break;
  case json_type_int:
    lua_pushinteger(L, (lua_Integer)json_object_get_int64(v));
    break;
  case json_type_double:
    lua_pushnumber(L, json_object_get_double(v));
    break;
  case json_type_string:
    lua_pushlstring(L, json_object_get_string(v), (size_t)json_object_get_string_len(v));
    break;
  case json_type_array: {
    size_t n = json_object_array_length(v);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      push_json(L, json_object_array_get_idx(v, i), depth + 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  }
  case json_type_object: {
    lua_createtable(L, 0, json_object_object_length(v));
    json_object_object_foreach(v, key, item) {
      push_json(L, item, depth + 1);
      lua_setfield(L, -2, key);
    }
    break;
  }
  }
}

/* app:compose(signals) -> number. [-0, +1, e] */
static int reward_body(lua_State *L) {
  json_object *signals = lua_touserdata(L, 1);
  int ref = (int)lua_tointeger(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_getfield(L, -1, "compose");
  lua_insert(L, -2);
  push_json(L, signals, 0);
  lua_call(L, 2, 1);
  return 1;
}

int oa_server_app_reward(void *ud, json_object *signals, double *reward, oa_error *err) {
  oa_server_app *a = ud;
  lua_State *L = a->L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, reward_body);
  lua_pushlightuserdata(L, signals);
  lua_pushinteger(L, a->app_ref);
  int rc = lua_pcall(L, 2, 1, top + 1);
  if (rc != LUA_OK) {
    oa_error_set(err, OA_ESCRIPT, "%s", lua_tostring(L, -1));
  } else if (!lua_isnumber(L, -1) || !isfinite(lua_tonumber(L, -1))) {
    rc = -1;
    oa_error_set(err, OA_ESCRIPT, "reward hook: expected a finite number");
  } else {
    *reward = lua_tonumber(L, -1);
  }
  lua_settop(L, top);
  return rc == LUA_OK ? 0 : OA_ESCRIPT;
}

void oa_server_app_describe(oa_server_app *a, oa_api_app *out) {
  memset(out, 0, sizeof *out);
  out->engine = a->engine;
  out->default_policy = oa_server_app_default_policy(a);
  out->version = a->version;
  out->reward = oa_server_app_reward;
  out->reward_ud = a;
}
