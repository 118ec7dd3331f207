/* The engine for Lua: the `onearm.engine` metatable over runtime/engine.h
 * (policies, decide/learn, the catalog, statistics), the Lua explorer
 * adapter (an oa_custom_explore_fn calling a Lua function) and
 * `oa.explore`, the raw explorer for tests and custom policies.
 *
 * The engine userdata's uservalue is a table, policy name -> {model =
 * <model userdata>, explorer = <explorer userdata>}: it keeps the Lua side
 * of every policy alive exactly as long as the policy, and lets
 * remove_policy and close mark model handles GONE so they never dangle.
 * Every call that can reach Lua callbacks records its thread with
 * oa__lua_enter, and raises only after oa__lua_leave.
 *
 * An engine userdata either owns its engine (oa.engine{}) or borrows one
 * that C owns (oa_lua_push_engine with owned = 0, see onearm_lua.h): the
 * finalizer of a borrowed one detaches the Lua side and frees nothing. */
#include "lua_onearm.h"
#include "lua_retrieve.h"
#include "onearm_lua.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "explore/explore.h"
#include "runtime/engine.h"

typedef struct oa_lua_engine {
  oa_engine *e; /* NULL once closed */
  int owned;    /* 1: freed with the userdata; 0: borrowed from C */
} oa_lua_engine;

static oa_lua_engine *checkengine(lua_State *L, int idx) {
  oa_lua_engine *e = luaL_checkudata(L, idx, OA_LUA_ENGINE);
  if (!e->e) luaL_argerror(L, idx, "engine is closed");
  return e;
}

/* Mark the model handle of every entry in the policy table at idx GONE. */
static void detach_model(lua_State *L, int entry) {
  if (lua_getfield(L, entry, "model") == LUA_TUSERDATA) {
    oa_lua_model *m = luaL_testudata(L, -1, OA_LUA_MODEL);
    if (m) {
      m->m = NULL;
      m->state = OA_LM_GONE;
    }
  }
  lua_pop(L, 1);
}

/* [-0, +0, -] __gc and __close: frees the engine (and every policy) once. */
static int e_finalize(lua_State *L) {
  oa_lua_engine *e = luaL_checkudata(L, 1, OA_LUA_ENGINE);
  if (!e->e) return 0;
  if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_istable(L, -1)) detach_model(L, lua_gettop(L));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  oa_engine *eng = e->e;
  e->e = NULL;
  if (!e->owned) return 0;            /* borrowed: C keeps the engine and its policies */
  lua_State *prev = oa__lua_enter(L); /* Lua models unref their tables */
  oa_engine_free(eng);
  oa__lua_leave(prev);
  return 0;
}

/* [-0, +1, e] oa.engine{seed = 0, event_capacity = 100000} */
static int l_engine(lua_State *L) {
  const char *fn = "engine";
  static const char *const keys[] = {"seed", "event_capacity", NULL};
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  oa__lua_checkkeys(L, 1, fn, keys);
  lua_Integer seed = oa__lua_optint(L, 1, fn, "seed", 0, LUA_MININTEGER, LUA_MAXINTEGER);
  lua_Integer cap = oa__lua_optint(L, 1, fn, "event_capacity", 100000, 1, 1 << 26);
  oa_lua_engine *e = lua_newuserdatauv(L, sizeof *e, 1);
  e->e = NULL;
  e->owned = 1;
  luaL_setmetatable(L, OA_LUA_ENGINE);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  oa_error err = {0};
  e->e = oa_engine_new((uint64_t)seed, &err);
  if (!e->e) return oa__lua_fail(L, fn, &err);
  if (oa_engine_set_event_capacity(e->e, (int32_t)cap, &err))
    return oa__lua_fail(L, fn, &err);
  return 1;
}

static oa_policy *checkpolicy(lua_State *L, oa_lua_engine *e, int idx, const char *fn) {
  const char *name = luaL_checkstring(L, idx);
  oa_policy *p = oa_engine_policy(e->e, name);
  if (!p) luaL_error(L, "%s: unknown policy '%s'", fn, name);
  return p;
}

/* ---- explorer parameters ---- */

static const char *const param_keys[] = {"epsilon", "temperature", "alpha",
                                         "gamma",   "draws",       NULL};

/* Overwrite p with the parameters present in the table at idx. */
static void readparams(lua_State *L, int idx, const char *fn, oa_explore_params *p) {
  p->epsilon = oa__lua_optnumber(L, idx, fn, "epsilon", p->epsilon);
  p->temperature = oa__lua_optnumber(L, idx, fn, "temperature", p->temperature);
  p->alpha = oa__lua_optnumber(L, idx, fn, "alpha", p->alpha);
  p->gamma = oa__lua_optnumber(L, idx, fn, "gamma", p->gamma);
  p->draws = (int32_t)oa__lua_optint(L, idx, fn, "draws", p->draws, INT32_MIN, INT32_MAX);
}

void oa_lua_push_params(lua_State *L, const oa_explore_params *p) {
  lua_createtable(L, 0, 5);
  lua_pushnumber(L, p->epsilon);
  lua_setfield(L, -2, "epsilon");
  lua_pushnumber(L, p->temperature);
  lua_setfield(L, -2, "temperature");
  lua_pushnumber(L, p->alpha);
  lua_setfield(L, -2, "alpha");
  lua_pushnumber(L, p->gamma);
  lua_setfield(L, -2, "gamma");
  lua_pushinteger(L, p->draws);
  lua_setfield(L, -2, "draws");
}

static oa_explore_kind checkkind(lua_State *L, const char *fn, const char *name) {
  int k = oa_explore_kind_from_name(name);
  if (k < 0 || k == OA_EXPLORE_CUSTOM)
    luaL_error(L,
               "%s: unknown explorer '%s' (greedy, egreedy, softmax, ucb, thompson, "
               "squarecb, or a function)",
               fn, name);
  return (oa_explore_kind)k;
}

/* ---- the Lua explorer adapter ---- */

/* The explorer's function is kept in the registry under the address of
 * this userdata, which the engine's policy table anchors. */
typedef struct lua_explorer {
  lua_State *main;
  const void *registry;
  int live;
} lua_explorer;

static int x_finalize(lua_State *L) {
  lua_explorer *x = luaL_checkudata(L, 1, OA_LUA_EXPLORER);
  if (x->live) {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, x);
    x->live = 0;
  }
  return 0;
}

typedef struct explore_call {
  lua_explorer *x;
  oa_policy *p;
  const oa_explore_input *in;
  const oa_value *context;
  uint64_t step;
  double *prob;
} explore_call;

static void pusharray(lua_State *L, const double *v, int32_t n) {
  lua_createtable(L, n, 0);
  for (int32_t i = 0; i < n; i++) {
    lua_pushnumber(L, v ? v[i] : 0.0);
    lua_rawseti(L, -2, i + 1);
  }
}

/* [-0, +0, e] run under lua_pcall: fn(scores, widths, context, step) -> probs */
static int explore_body(lua_State *L) {
  explore_call *c = lua_touserdata(L, 1);
  lua_settop(L, 0);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, c->x) != LUA_TFUNCTION)
    luaL_error(L, "lua explorer: the function is gone");
  pusharray(L, c->in->mean, c->in->n);
  pusharray(L, c->in->width, c->in->n);
  oa__lua_pushvalues(L, oa_policy_features(c->p), OA_SIDE_CONTEXT, c->context);
  lua_pushinteger(L, (lua_Integer)c->step);
  lua_call(L, 4, 1);
  oa__lua_tonumbers(L, 1, c->in->n, c->prob, "lua explorer result");
  return 0;
}

static int explore_cb(void *ud, oa_policy *p, const oa_explore_input *in,
                      const oa_value *context, uint64_t step, double *prob,
                      oa_error *err) {
  lua_explorer *x = ud;
  lua_State *L = oa__lua_callstate(x->main, x->registry);
  if (!lua_checkstack(L, 8))
    return oa_error_set(err, OA_ENOMEM, "lua explorer: stack overflow");
  int top = lua_gettop(L);
  explore_call c = {x, p, in, context, step, prob};
  lua_pushcfunction(L, explore_body);
  lua_pushlightuserdata(L, &c);
  int rc = lua_pcall(L, 1, 0, 0);
  if (rc != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    oa_error_set(err, OA_ESCRIPT, "%s",
                 msg ? msg : "lua explorer: error object is not a string");
  }
  lua_settop(L, top);
  return rc == LUA_OK ? 0 : OA_ESCRIPT;
}

/* [-0, +1, m] a new explorer userdata for the function at fidx. */
static lua_explorer *newexplorer(lua_State *L, int fidx) {
  fidx = lua_absindex(L, fidx);
  lua_explorer *x = lua_newuserdatauv(L, sizeof *x, 0);
  x->live = 0;
  luaL_setmetatable(L, OA_LUA_EXPLORER);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  x->main = lua_tothread(L, -1);
  lua_pop(L, 1);
  x->registry = oa__lua_registry(L);
  lua_pushvalue(L, fidx);
  lua_rawsetp(L, LUA_REGISTRYINDEX, x);
  x->live = 1;
  return x;
}

/* ---- policies ---- */

/* [-0, +0, e] eng:add_policy(name, {features=, model=, explore="ucb"|fn, epsilon=, ...})
 */
static int l_add_policy(lua_State *L) {
  const char *fn = "add_policy";
  oa_lua_engine *e = checkengine(L, 1);
  const char *name = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  static const char *const keys[] = {"features", "model",       "explore",
                                     "epsilon",  "temperature", "alpha",
                                     "gamma",    "draws",       NULL};
  oa__lua_checkkeys(L, 3, fn, keys);
  if (oa_engine_policy(e->e, name))
    return luaL_error(L, "%s: policy '%s' already exists", fn, name);
  lua_getfield(L, 3, "features"); /* 4 */
  if (!luaL_testudata(L, 4, OA_LUA_FEATURES))
    return luaL_error(L, "%s: 'features' must be a feature space (oa.features)", fn);
  oa_lua_features *fs = oa__lua_checkfeatures(L, 4);
  lua_getfield(L, 3, "model"); /* 5 */
  if (!luaL_testudata(L, 5, OA_LUA_MODEL))
    return luaL_error(L, "%s: 'model' must be a model (oa.model.*)", fn);
  oa_lua_model *m = oa__lua_checkmodel(L, 5);
  if (m->state != OA_LM_OWNED)
    return luaL_error(L, "%s: the model already belongs to a policy", fn);

  oa_policy_spec spec = {.name = name, .features = fs->fs, .model = m->m};
  spec.params = oa_explore_defaults();
  readparams(L, 3, fn, &spec.params);
  int t = lua_getfield(L, 3, "explore"); /* 6 */
  lua_explorer *x = NULL;
  if (t == LUA_TFUNCTION) {
    spec.explore = OA_EXPLORE_CUSTOM;
    x = newexplorer(L, 6); /* 7 */
    spec.custom_explore = explore_cb;
    spec.custom_ud = x;
  } else if (t == LUA_TSTRING) {
    spec.explore = checkkind(L, fn, lua_tostring(L, 6));
  } else if (t == LUA_TNIL) {
    spec.explore = OA_EXPLORE_GREEDY;
  } else {
    return luaL_error(L, "%s: 'explore' must be an explorer name or a function", fn);
  }
  /* The policy's entry goes into the engine's table before the engine takes
   * the model: once ownership has moved nothing may fail (setting an
   * existing key to nil, the only step after, never allocates). */
  lua_getiuservalue(L, 1, 1); /* policies */
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, 5);
  lua_setfield(L, -2, "model");
  if (x) {
    lua_pushvalue(L, 7);
    lua_setfield(L, -2, "explorer");
  }
  lua_setfield(L, -2, name);
  oa_error err = {0};
  if (oa_engine_add_policy(e->e, &spec, &err)) {
    lua_pushnil(L);
    lua_setfield(L, -2, name);
    return oa__lua_fail(L, fn, &err);
  }
  m->state = OA_LM_POLICY;
  m->m = oa_policy_model(oa_engine_policy(e->e, name));
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 5, 1);
  return 0;
}

/* [-0, +0, e] eng:remove_policy(name) */
static int l_remove_policy(lua_State *L) {
  oa_lua_engine *e = checkengine(L, 1);
  const char *name = luaL_checkstring(L, 2);
  lua_getiuservalue(L, 1, 1); /* 3 */
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = oa_engine_remove_policy(e->e, name, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, "remove_policy", &err);
  if (lua_getfield(L, 3, name) == LUA_TTABLE) detach_model(L, 4);
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setfield(L, 3, name);
  return 0;
}

/* [-0, +0, e] eng:set_explorer(name, explore [, params]): explore is an
 * explorer name, a Lua function or nil (greedy); params a table of explorer
 * parameters (missing ones: the defaults), or nil to keep the current ones.
 * The model and its learned state stay: this is what a reload changes in a
 * policy it keeps. The Lua function is anchored in this userdata's policy
 * table, so the state that made this call must outlive the explorer. */
static int l_set_explorer(lua_State *L) {
  const char *fn = "set_explorer";
  lua_settop(L, 4);
  oa_lua_engine *e = checkengine(L, 1);
  oa_policy *p = checkpolicy(L, e, 2, fn);
  const char *name = oa_policy_name(p);
  oa_explore_params params = oa_policy_params(p);
  if (!lua_isnil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    oa__lua_checkkeys(L, 4, fn, param_keys);
    params = oa_explore_defaults();
    readparams(L, 4, fn, &params);
  }
  oa_explore_kind kind = OA_EXPLORE_GREEDY;
  lua_explorer *x = NULL;
  int t = lua_type(L, 3);
  if (t == LUA_TFUNCTION)
    x = newexplorer(L, 3); /* 5 */
  else if (t == LUA_TSTRING)
    kind = checkkind(L, fn, lua_tostring(L, 3));
  else if (t != LUA_TNIL)
    return luaL_error(L, "%s: 'explore' must be an explorer name or a function", fn);
  lua_getiuservalue(L, 1, 1); /* policies */
  int entries = lua_gettop(L);
  if (lua_getfield(L, entries, name) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, -1);
    lua_setfield(L, entries, name);
  }
  int entry = lua_gettop(L);
  lua_getfield(L, entry, "explorer"); /* the previous one stays alive until replaced */
  oa_error err = {0};
  int rc = x ? oa_policy_set_explorer(p, OA_EXPLORE_CUSTOM, &params, explore_cb, x, &err)
             : oa_policy_set_explorer(p, kind, &params, NULL, NULL, &err);
  if (rc) return oa__lua_fail(L, fn, &err);
  if (x)
    lua_pushvalue(L, 5);
  else
    lua_pushnil(L);
  lua_setfield(L, entry, "explorer");
  return 0;
}

/* [-0, +1, m] eng:policies() -> list of names in creation order */
static int l_policies(lua_State *L) {
  oa_lua_engine *e = checkengine(L, 1);
  int32_t n = oa_engine_policy_count(e->e);
  lua_createtable(L, n, 0);
  for (int32_t i = 0; i < n; i++) {
    lua_pushstring(L, oa_policy_name(oa_engine_policy_at(e->e, i)));
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* ---- decide and learn ---- */

/* An action argument: an id (string or number) or {id=, features={...}}.
 * Fills *id and *len (copied) and *values (NULL for a catalog lookup). */
static void checkaction(lua_State *L, int idx, oa_policy *p, oa_lua_arena *a,
                        const char *what, const char **id, size_t *len,
                        const oa_value **values) {
  idx = lua_absindex(L, idx);
  *values = NULL;
  int t = lua_type(L, idx);
  if (t == LUA_TTABLE) {
    lua_getfield(L, idx, "id");
    if (!lua_isstring(L, -1)) luaL_error(L, "%s needs an 'id' (string)", what);
    const char *s = lua_tolstring(L, -1, len);
    char *copy = oa__lua_alloc(L, a, *len + 1);
    memcpy(copy, s, *len);
    *id = copy;
    lua_pop(L, 1);
    lua_getfield(L, idx, "features");
    char buf[96];
    snprintf(buf, sizeof buf, "%s '%s'", what, copy);
    if (!lua_isnil(L, -1))
      *values = oa__lua_tovalues(L, -1, oa_policy_features(p), OA_SIDE_ACTION, a, buf);
    lua_pop(L, 1);
    return;
  }
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    luaL_error(L, "%s must be an id or {id=, features=}, got %s", what,
               luaL_typename(L, idx));
  lua_pushvalue(L, idx);
  const char *s = lua_tolstring(L, -1, len);
  char *copy = oa__lua_alloc(L, a, *len + 1);
  memcpy(copy, s, *len);
  *id = copy;
  lua_pop(L, 1);
}

/* [-0, +1, e] eng:decide(name, context, candidates [, opts]) -> decision table */
static int l_decide(lua_State *L) {
  lua_settop(L, 5); /* the arena goes above every optional argument */
  const char *fn = "decide";
  oa_lua_engine *e = checkengine(L, 1);
  oa_policy *p = checkpolicy(L, e, 2, fn);
  const char *pname = oa_policy_name(p);
  oa_lua_arena *a = oa__lua_arena(L);
  char what[96];
  snprintf(what, sizeof what, "%s: policy '%s': context", fn, pname);
  const oa_value *ctx =
      oa__lua_tovalues(L, 3, oa_policy_features(p), OA_SIDE_CONTEXT, a, what);
  /* Two-stage: eng:decide(name, ctx, {retrieve = {...}}) or the retrieve
   * option; the candidates are then the retrieved shortlist. */
  if (lua_istable(L, 4) && lua_rawlen(L, 4) == 0) {
    int has = lua_getfield(L, 4, "retrieve") != LUA_TNIL;
    lua_pop(L, 1);
    if (has) {
      if (!lua_isnil(L, 5))
        return luaL_error(L, "%s: give options once (third argument or fourth)", fn);
      lua_copy(L, 4, 5);
      lua_pushnil(L);
      lua_replace(L, 4);
    }
  }
  oa_retrieve_request *retrieve = NULL;
  if (lua_istable(L, 5)) {
    if (lua_getfield(L, 5, "retrieve") != LUA_TNIL)
      retrieve = oa__lua_retrieve_request(L, -1, 3, e->e, a, fn);
    lua_pop(L, 1);
  }
  lua_Integer n = 0;
  const char **ids = NULL;
  size_t *lens = NULL;
  const oa_value **actions = NULL;
  int any_inline = 0;
  if (retrieve) {
    if (!lua_isnil(L, 4))
      return luaL_error(L, "%s: give either candidates or retrieve, not both", fn);
    goto request;
  }
  if (!lua_istable(L, 4))
    return luaL_error(L,
                      "%s: candidates must be a list of ids or {id=, features=}, got %s",
                      fn, luaL_typename(L, 4));
  n = luaL_len(L, 4);
  if (n < 1 || n > OA_MAX_CANDIDATES)
    return luaL_error(L, "%s: policy '%s': a decision needs 1 to %d candidates, got %d",
                      fn, pname, OA_MAX_CANDIDATES, (int)n);
  ids = oa__lua_alloc(L, a, sizeof *ids * (size_t)n);
  lens = oa__lua_alloc(L, a, sizeof *lens * (size_t)n);
  actions = oa__lua_alloc(L, a, sizeof *actions * (size_t)n);
  for (lua_Integer i = 0; i < n; i++) {
    lua_geti(L, 4, i + 1);
    snprintf(what, sizeof what, "%s: policy '%s': candidate %d", fn, pname, (int)i + 1);
    checkaction(L, -1, p, a, what, &ids[i], &lens[i], &actions[i]);
    any_inline |= actions[i] != NULL;
    lua_pop(L, 1);
  }
request:;
  oa_decide_request req = {.context = ctx,
                           .n = (int32_t)n,
                           .ids = ids,
                           .id_lens = lens,
                           .actions = any_inline ? actions : NULL,
                           .keep_event = 1,
                           .retrieve = retrieve};
  oa_explore_params params = oa_policy_params(p);
  if (!lua_isnoneornil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    static const char *const keys[] = {"event_id", "keep",  "epsilon", "temperature",
                                       "alpha",    "gamma", "draws",   "retrieve",
                                       NULL};
    oa__lua_checkkeys(L, 5, fn, keys);
    if (lua_getfield(L, 5, "event_id") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "%s: 'event_id' must be a string", fn);
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      if (strlen(s) != len)
        return luaL_error(L, "%s: 'event_id' contains a zero byte", fn);
      char *copy = oa__lua_alloc(L, a, len + 1);
      memcpy(copy, s, len);
      req.event_id = copy;
    }
    lua_pop(L, 1);
    req.keep_event = oa__lua_optbool(L, 5, fn, "keep", 1);
    readparams(L, 5, fn, &params);
    req.params = &params;
  }
  oa_decision d;
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = oa_policy_decide(p, &req, &d, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, fn, &err);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, d.event_id);
  lua_setfield(L, -2, "event_id");
  lua_pushinteger(L, d.chosen + 1);
  lua_setfield(L, -2, "chosen");
  lua_pushlstring(L, d.ids[d.chosen],
                  d.id_lens ? d.id_lens[d.chosen] : strlen(d.ids[d.chosen]));
  lua_setfield(L, -2, "action");
  if (retrieve) { /* the shortlist: the decision's candidates, in order */
    lua_createtable(L, d.n, 0);
    for (int32_t i = 0; i < d.n; i++) {
      lua_pushlstring(L, d.ids[i], d.id_lens[i]);
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "ids");
    lua_pushinteger(L, d.fresh);
    lua_setfield(L, -2, "fresh");
  }
  pusharray(L, d.prob, d.n);
  lua_setfield(L, -2, "probs");
  pusharray(L, d.mean, d.n);
  lua_setfield(L, -2, "scores");
  pusharray(L, d.width, d.n);
  lua_setfield(L, -2, "widths");
  lua_pushnumber(L, d.prob[d.chosen]);
  lua_setfield(L, -2, "prob");
  lua_pushboolean(L, d.estimated);
  lua_setfield(L, -2, "estimated");
  return 1;
}

static double checkfinite_arg(lua_State *L, int idx, const char *fn, const char *what) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "%s: %s must be a number, got %s", fn, what, luaL_typename(L, idx));
  double v = lua_tonumber(L, idx);
  if (!isfinite(v)) luaL_error(L, "%s: %s is not a finite number", fn, what);
  return v;
}

/* [-0, +0, e] eng:learn(event_id, reward): close a pending event */
static int l_learn(lua_State *L) {
  oa_lua_engine *e = checkengine(L, 1);
  const char *id = luaL_checkstring(L, 2);
  double r = checkfinite_arg(L, 3, "learn", "reward");
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = oa_engine_learn(e->e, id, r, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, "learn", &err);
  return 0;
}

/* [-0, +0, e] eng:learn_example(name, context, action, reward [, prob = 1]) */
static int l_learn_example(lua_State *L) {
  lua_settop(L, 6);
  const char *fn = "learn_example";
  oa_lua_engine *e = checkengine(L, 1);
  oa_policy *p = checkpolicy(L, e, 2, fn);
  double r = checkfinite_arg(L, 5, fn, "reward");
  double prob = lua_isnoneornil(L, 6) ? 1.0 : checkfinite_arg(L, 6, fn, "prob");
  if (!(prob > 0 && prob <= 1))
    return luaL_error(L, "%s: prob %f is outside (0, 1]", fn, prob);
  oa_lua_arena *a = oa__lua_arena(L);
  char what[96];
  snprintf(what, sizeof what, "%s: policy '%s': context", fn, oa_policy_name(p));
  const oa_value *ctx =
      oa__lua_tovalues(L, 3, oa_policy_features(p), OA_SIDE_CONTEXT, a, what);
  snprintf(what, sizeof what, "%s: policy '%s': action", fn, oa_policy_name(p));
  const char *id;
  size_t len;
  const oa_value *act;
  checkaction(L, 4, p, a, what, &id, &len, &act);
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = oa_policy_learn(p, ctx, id, act, r, prob, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, fn, &err);
  return 0;
}

/* ---- catalog ---- */

/* [-0, +1, e] eng:upsert(id, features) -> slot (0-based, for diagnostics) */
static int l_upsert(lua_State *L) {
  lua_settop(L, 3);
  oa_lua_engine *e = checkengine(L, 1);
  size_t len;
  const char *id = luaL_checklstring(L, 2, &len);
  oa_lua_arena *a = oa__lua_arena(L);
  char what[96];
  snprintf(what, sizeof what, "upsert: action '%.40s'", id);
  int32_t n;
  oa_field *fields = oa__lua_tofields(L, 3, a, what, &n);
  oa_error err = {0};
  int64_t slot = oa_catalog_upsert(oa_engine_catalog(e->e), id, len, fields, n, &err);
  if (slot < 0) return oa__lua_fail(L, "upsert", &err);
  lua_pushinteger(L, slot);
  return 1;
}

/* [-0, +1, e] eng:remove(id) -> true, or false when the id is unknown */
static int l_remove(lua_State *L) {
  oa_lua_engine *e = checkengine(L, 1);
  size_t len;
  const char *id = luaL_checklstring(L, 2, &len);
  lua_pushboolean(L, oa_catalog_remove(oa_engine_catalog(e->e), id, len) == 0);
  return 1;
}

/* [-0, +1, -] eng:catalog_count() */
static int l_catalog_count(lua_State *L) {
  lua_pushinteger(L, oa_catalog_count(oa_engine_catalog(checkengine(L, 1)->e)));
  return 1;
}

/* ---- statistics and parameters ---- */

/* [-0, +1, m] eng:stats(name) */
static int l_stats(lua_State *L) {
  oa_lua_engine *e = checkengine(L, 1);
  oa_policy *p = checkpolicy(L, e, 2, "stats");
  oa_policy_stats s = oa_policy_get_stats(p);
  oa_model *m = oa_policy_model(p);
  oa_explore_params params = oa_policy_params(p);
  lua_createtable(L, 0, 10);
  lua_pushinteger(L, (lua_Integer)s.decisions);
  lua_setfield(L, -2, "decisions");
  lua_pushinteger(L, (lua_Integer)s.rewards);
  lua_setfield(L, -2, "rewards");
  lua_pushnumber(L, s.reward_sum);
  lua_setfield(L, -2, "reward_sum");
  lua_pushnumber(L, s.rewards ? s.reward_sum / (double)s.rewards : 0.0);
  lua_setfield(L, -2, "avg_reward");
  lua_pushstring(L, m->ops->kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, oa_explore_name(oa_policy_explore_kind(p)));
  lua_setfield(L, -2, "explore");
  oa_lua_push_params(L, &params);
  lua_setfield(L, -2, "params");
  lua_pushinteger(L, oa_features_dim(oa_policy_features(p)));
  lua_setfield(L, -2, "dim");
  lua_pushinteger(L, (lua_Integer)oa_model_size(m));
  lua_setfield(L, -2, "model_bytes");
  lua_pushinteger(L, (lua_Integer)m->updates);
  lua_setfield(L, -2, "updates");
  return 1;
}

/* [-0, +0, e] eng:set_params(name, {epsilon=, alpha=, ...}): only the given ones change
 */
static int l_set_params(lua_State *L) {
  const char *fn = "set_params";
  oa_lua_engine *e = checkengine(L, 1);
  oa_policy *p = checkpolicy(L, e, 2, fn);
  luaL_checktype(L, 3, LUA_TTABLE);
  oa__lua_checkkeys(L, 3, fn, param_keys);
  oa_explore_params params = oa_policy_params(p);
  readparams(L, 3, fn, &params);
  oa_error err = {0};
  if (oa_policy_set_params(p, &params, &err)) return oa__lua_fail(L, fn, &err);
  return 0;
}

static int buf_finalize(lua_State *L) {
  oa_buf_free(luaL_checkudata(L, 1, "onearm.ebuf"));
  return 0;
}

/* [-0, +1, e] eng:save_policy(name) -> string (the model's state) */
static int l_save_policy(lua_State *L) {
  oa_lua_engine *e = checkengine(L, 1);
  oa_policy *p = checkpolicy(L, e, 2, "save_policy");
  oa_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
  oa_buf_init(b);
  luaL_setmetatable(L, "onearm.ebuf");
  lua_toclose(L, -1);
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = oa_model_save(oa_policy_model(p), b, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, "save_policy", &err);
  lua_pushlstring(L, (const char *)b->data, b->len);
  return 1;
}

/* [-0, +0, e] eng:load_policy(name, s) */
static int l_load_policy(lua_State *L) {
  oa_lua_engine *e = checkengine(L, 1);
  oa_policy *p = checkpolicy(L, e, 2, "load_policy");
  size_t len;
  const char *s = luaL_checklstring(L, 3, &len);
  oa_reader r;
  oa_reader_init(&r, s, len);
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = oa_model_load(oa_policy_model(p), &r, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, "load_policy", &err);
  return 0;
}

/* [-0, +1, -] eng:pending() */
static int l_pending(lua_State *L) {
  lua_pushinteger(L, oa_engine_pending_events(checkengine(L, 1)->e));
  return 1;
}

/* [-0, +1, m] tostring(eng) */
static int e_tostring(lua_State *L) {
  oa_lua_engine *e = luaL_checkudata(L, 1, OA_LUA_ENGINE);
  if (!e->e)
    lua_pushliteral(L, "engine (closed)");
  else
    lua_pushfstring(L, "engine (%d policies)", (int)oa_engine_policy_count(e->e));
  return 1;
}

/* ---- the raw explorer ---- */

/* [-0, +3, e] oa.explore(name, means, widths, params, seed) -> probs, chosen, estimated
 */
static int l_explore(lua_State *L) {
  lua_settop(L, 5);
  const char *fn = "explore";
  oa_explore_kind kind = checkkind(L, fn, luaL_checkstring(L, 1));
  oa_lua_arena *a = oa__lua_arena(L);
  int64_t n;
  if (lua_istable(L, 2))
    n = (int64_t)luaL_len(L, 2);
  else
    n = oa_tensor_size(&oa__lua_checktensor(L, 2)->t);
  if (n < 1 || n > OA_MAX_CANDIDATES)
    return luaL_error(L, "%s: needs 1 to %d means, got %d", fn, OA_MAX_CANDIDATES,
                      (int)n);
  double *mean = oa__lua_alloc(L, a, sizeof(double) * (size_t)n);
  double *width = oa__lua_alloc(L, a, sizeof(double) * (size_t)n);
  double *prob = oa__lua_alloc(L, a, sizeof(double) * (size_t)n);
  oa__lua_tonumbers(L, 2, n, mean, "explore: means");
  if (!lua_isnoneornil(L, 3)) oa__lua_tonumbers(L, 3, n, width, "explore: widths");
  if (!oa_all_finite(mean, (long)n) || !oa_all_finite(width, (long)n))
    return luaL_error(L, "%s: means and widths must be finite", fn);
  oa_explore_params params = oa_explore_defaults();
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    oa__lua_checkkeys(L, 4, fn, param_keys);
    readparams(L, 4, fn, &params);
  }
  lua_Integer seed = luaL_optinteger(L, 5, 0);
  oa_rng rng;
  oa_rng_seed(&rng, (uint64_t)seed);
  oa_explore_input in = {(int32_t)n, mean, width, NULL, 0};
  int32_t chosen;
  int estimated;
  oa_error err = {0};
  if (oa_explore(kind, &params, &in, &rng, prob, &chosen, &estimated, &err))
    return oa__lua_fail(L, fn, &err);
  pusharray(L, prob, (int32_t)n);
  lua_pushinteger(L, chosen + 1);
  lua_pushboolean(L, estimated);
  return 3;
}

static const luaL_Reg engine_methods[] = {{"add_policy", l_add_policy},
                                          {"remove_policy", l_remove_policy},
                                          {"set_explorer", l_set_explorer},
                                          {"policies", l_policies},
                                          {"decide", l_decide},
                                          {"learn", l_learn},
                                          {"learn_example", l_learn_example},
                                          {"upsert", l_upsert},
                                          {"remove", l_remove},
                                          {"catalog_count", l_catalog_count},
                                          {"stats", l_stats},
                                          {"set_params", l_set_params},
                                          {"save_policy", l_save_policy},
                                          {"load_policy", l_load_policy},
                                          {"pending", l_pending},
                                          {"set_retrieval", oa__lua_set_retrieval},
                                          {"retrieve", oa__lua_retrieve},
                                          {"build_index", oa__lua_build_index},
                                          {"load_catalog", oa__lua_load_catalog},
                                          {"retrieval_stats", oa__lua_retrieval_stats},
                                          {"close", e_finalize},
                                          {NULL, NULL}};

static const luaL_Reg engine_meta[] = {{"__index", NULL},
                                       {"__tostring", e_tostring},
                                       {"__gc", e_finalize},
                                       {"__close", e_finalize},
                                       {NULL, NULL}};

void oa__lua_open_engine(lua_State *L) {
  luaL_newmetatable(L, OA_LUA_ENGINE);
  luaL_setfuncs(L, engine_meta, 0);
  luaL_newlib(L, engine_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, OA_LUA_EXPLORER);
  lua_pushcfunction(L, x_finalize);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, x_finalize);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  luaL_newmetatable(L, "onearm.ebuf");
  lua_pushcfunction(L, buf_finalize);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, buf_finalize);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_engine);
  lua_setfield(L, -2, "engine");
  lua_pushcfunction(L, l_explore);
  lua_setfield(L, -2, "explore");
}

/* ---- engines owned by C ---- */

void oa_lua_push_engine(lua_State *L, oa_engine *eng, int owned) {
  if (luaL_getmetatable(L, OA_LUA_ENGINE) == LUA_TNIL) {
    luaL_requiref(L, "onearm.core", luaopen_onearm_core, 0);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  oa_lua_engine *e = lua_newuserdatauv(L, sizeof *e, 1);
  e->e = eng;
  e->owned = owned != 0;
  luaL_setmetatable(L, OA_LUA_ENGINE);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
}

oa_engine *oa_lua_check_engine(lua_State *L, int idx) {
  return checkengine(L, idx)->e;
}
