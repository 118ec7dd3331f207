/* A Lua app for the server: one Lua state at a time programs an engine
 * that C owns, and a reload swaps in a new state between requests.
 *
 * Each state is built the same way: a custom allocator enforcing the memory
 * cap, a count hook enforcing the instruction budget, the standard
 * libraries trimmed (no C module loading, no binary chunks, no process
 * control; scripts/onearm/app.lua then runs the app itself in a narrower
 * sandbox), `onearm.core` preloaded from this binary, package.path on the
 * scripts directory. `load_app(path, staging)` builds every policy in a
 * throw-away staging engine, each policy makes a canary decision there, and
 * only then is the live engine reconciled (see app.h), through a borrowed
 * engine userdata so that Lua explorers and models belong to the new state.
 *
 * Why a staging engine: everything that can fail for a reason in the app
 * (syntax, a bad spec, a model constructor, an explorer that throws) fails
 * there, before the live engine changes at all. What is left for the commit
 * step is building the models again into the live engine, which fails only
 * when memory runs out.
 *
 * Budget: the count hook fires every HOOK_EVERY instructions and takes them
 * off what is left; once the budget is spent it fires on every instruction,
 * so a script that catches the error with pcall cannot keep running. C
 * resets the budget before each hook call (and the API before the engine
 * calls of a request, which may run Lua explorers and models). */
#include "server/app.h"

#include <json-c/json.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "runtime/retrieval.h"
#include "runtime/scripts_dir.h"
#include "onearm_lua.h"

#define DEFAULT_MEMORY       ((size_t)256 << 20)
#define DEFAULT_INSTRUCTIONS 10000000
#define HOOK_EVERY           1000
#define MAX_ENTER            16
#define CANARY_CANDIDATES    3

/* One Lua state and what C keeps about it. */
typedef struct app_state {
  lua_State *L;
  oa_server_app *app;
  size_t bytes, cap;    /* allocator accounting */
  int64_t budget, left; /* instructions per hook call, and what is left */
  int exhausted;        /* the budget is spent: every instruction raises */
  int hit_budget, hit_memory;
  int depth;             /* our protected calls in progress on this state */
  int app_ref, live_ref; /* registry refs: the app table, the live engine */
  int has_context, has_schedule, combine_fn;
  oa_event_config cfg;
  char version[64];
  char default_policy[OA_MAX_NAME];
  char **files;
  int32_t nfiles;
  char trace[2048]; /* traceback of the last error (for the log) */
  char where[256];  /* file:line where the budget ran out */
  struct app_state *next;
} app_state;

struct oa_server_app {
  oa_engine *engine; /* borrowed */
  char *path;
  char scripts[4096];
  size_t memory_cap;
  int64_t budget;
  app_state *cur;
  app_state *retired; /* old states waiting for their last call to return */
  app_state *pinned;  /* states live policies may still use (a failed commit) */
  app_state *entered[MAX_ENTER];
  int nenter;
  oa_app_stats stats;
  char last_error[512];
  oa_api_hooks hooks;
};

/* ---- limits ---- */

static void *state_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  app_state *s = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    s->bytes -= old;
    return NULL;
  }
  if (nsize > old && s->bytes - old + nsize > s->cap) {
    s->hit_memory = 1;
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (p) s->bytes = s->bytes - old + nsize;
  return p;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  void *ud;
  lua_getallocf(L, &ud);
  app_state *s = ud;
  if (!s->exhausted) {
    /* A coroutine can still run with the per-instruction count of an
     * earlier exhausted call: put it back to the normal rate. */
    int every = lua_gethookcount(L);
    s->left -= every;
    if (every != HOOK_EVERY) lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
    if (s->left > 0) return;
    s->exhausted = 1;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    if (L != s->L) lua_sethook(s->L, count_hook, LUA_MASKCOUNT, 1);
    /* Where the budget ran out (the running function, level 0): every
     * later error of this call repeats it, even after a pcall caught the
     * first one. */
    lua_Debug d;
    s->where[0] = 0;
    if (lua_getstack(L, 0, &d) && lua_getinfo(L, "Sl", &d) && d.currentline > 0)
      snprintf(s->where, sizeof s->where, "%s:%d: ", d.short_src, d.currentline);
  }
  s->hit_budget = 1;
  lua_pushfstring(L, "%sinstruction budget exceeded (%I instructions per hook call)",
                  s->where, (lua_Integer)s->budget);
  lua_error(L);
}

static void budget_reset(app_state *s) {
  s->left = s->budget;
  s->exhausted = 0;
  s->hit_budget = s->hit_memory = 0;
  lua_sethook(s->L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

/* ---- state lifetime ---- */

static void state_close(app_state *s) {
  if (!s) return;
  if (s->L) {
    budget_reset(s); /* finalizers written in Lua get a budget too */
    lua_close(s->L);
  }
  for (int32_t i = 0; i < s->nfiles; i++)
    free(s->files[i]);
  free(s->files);
  free(s);
}

/* Closes retired states nobody is using any more. */
static void collect_retired(oa_server_app *a) {
  app_state **pp = &a->retired;
  while (*pp) {
    app_state *s = *pp;
    if (s->depth == 0) {
      *pp = s->next;
      state_close(s);
    } else {
      pp = &s->next;
    }
  }
}

/* Message handler: keeps the traceback for the log and returns the plain
 * message (it already says file:line for errors raised in a script). */
static int msgh(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  app_state *s = ud;
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    lua_replace(L, 1);
  }
  luaL_traceback(L, L, msg, 1);
  snprintf(s->trace, sizeof s->trace, "%s", lua_tostring(L, -1));
  lua_settop(L, 1);
  return 1;
}

/* Calls the function below the top nargs values, protected and with a fresh
 * budget. 0 with nres results pushed, or OA_ESCRIPT (the message in err,
 * nothing left on the stack). */
static int state_call(app_state *s, int nargs, int nres, oa_error *err) {
  lua_State *L = s->L;
  int base = lua_gettop(L) - nargs; /* the function */
  lua_pushcfunction(L, msgh);
  lua_insert(L, base);
  budget_reset(s);
  s->trace[0] = 0;
  s->depth++;
  int rc = lua_pcall(L, nargs, nres, base);
  s->depth--;
  if (rc == LUA_OK) {
    lua_remove(L, base);
    return 0;
  }
  oa_server_app *a = s->app;
  if (s->hit_memory || rc == LUA_ERRMEM) {
    oa_error_set(err, OA_ESCRIPT,
                 "memory limit exceeded: the app's Lua state may hold %zu MiB (%s)",
                 s->cap >> 20, lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    if (a) a->stats.memory_errors++;
  } else {
    oa_error_set(err, OA_ESCRIPT, "%s",
                 lua_isstring(L, -1) ? lua_tostring(L, -1) : "script error");
    if (s->hit_budget && a) a->stats.budget_errors++;
  }
  if (!s->trace[0]) snprintf(s->trace, sizeof s->trace, "%s", err ? err->message : "");
  lua_settop(L, base - 1);
  budget_reset(s); /* leave the state usable (finalizers, the next call) */
  return OA_ESCRIPT;
}

/* The hardening applied to every state before the onearm library loads:
 * the host side of the state (the library, not the app) keeps only what it
 * needs. The app's own sandbox is in scripts/onearm/app.lua. */
static const char *const harden_lua =
    "local load, type = load, type\n"
    "_G.load = function(chunk, name, mode, env)\n"
    "  return load(chunk, name, 't', env)\n"
    "end\n"
    "dofile, loadfile = nil, nil\n"
    "string.dump = nil\n"
    "for _, k in ipairs { 'execute', 'exit', 'remove', 'rename', 'getenv', 'tmpname',\n"
    "                     'setlocale' } do os[k] = nil end\n"
    "local open = io.open\n"
    "io = { open = function(path, mode)\n"
    "  if mode ~= nil and mode ~= 'r' and mode ~= 'rb' then\n"
    "    error('io.open: files are read-only here', 2)\n"
    "  end\n"
    "  return open(path, mode)\n"
    "end }\n"
    "package.loadlib = nil\n"
    "package.cpath = ''\n"
    "package.searchers[3], package.searchers[4] = nil, nil\n"
    "debug = { getinfo = debug.getinfo, traceback = debug.traceback }\n";

/* [-1, +0, e] The standard libraries, onearm.core preloaded, the module
 * path and the hardening, inside a protected call. */
static int setup_body(lua_State *L) {
  const char *scripts = lua_touserdata(L, 1);
  lua_settop(L, 0);
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_onearm_core);
  lua_setfield(L, -2, "onearm.core");
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", scripts, scripts);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, harden_lua, strlen(harden_lua), "=harden")) lua_error(L);
  lua_call(L, 0, 0);
  return 0;
}

static app_state *state_new(oa_server_app *a, oa_error *err) {
  app_state *s = calloc(1, sizeof *s);
  if (!s) goto oom;
  s->app = a;
  s->cap = a->memory_cap;
  s->budget = a->budget;
  s->app_ref = s->live_ref = LUA_NOREF;
  s->L = lua_newstate(state_alloc, s);
  if (!s->L) goto oom;
  budget_reset(s);
  lua_pushcfunction(s->L, setup_body);
  lua_pushlightuserdata(s->L, a->scripts);
  if (state_call(s, 1, 0, err)) {
    state_close(s);
    return NULL;
  }
  return s;
oom:
  free(s);
  oa_error_set(err, OA_ENOMEM, "out of memory creating a Lua state");
  return NULL;
}

/* ---- accessors ---- */

oa_engine *oa_server_app_engine(oa_server_app *a) {
  return a->engine;
}
const char *oa_server_app_path(const oa_server_app *a) {
  return a->path;
}
const char *oa_server_app_version(const oa_server_app *a) {
  return a->cur->version;
}
const char *oa_server_app_default_policy(const oa_server_app *a) {
  return a->cur->default_policy[0] ? a->cur->default_policy : NULL;
}
int32_t oa_server_app_file_count(const oa_server_app *a) {
  return a->cur->nfiles;
}
const char *oa_server_app_file(const oa_server_app *a, int32_t i) {
  return i >= 0 && i < a->cur->nfiles ? a->cur->files[i] : NULL;
}
oa_app_stats oa_server_app_stats(const oa_server_app *a) {
  return a->stats;
}
uint64_t oa_server_app_lua_bytes(const oa_server_app *a) {
  return a->cur ? a->cur->bytes : 0;
}
const char *oa_server_app_last_reload_error(const oa_server_app *a) {
  return a->last_error;
}
void oa_server_app_budget_reset(oa_server_app *a) {
  if (a->cur) budget_reset(a->cur);
}

/* ---- loading ---- */

static double get_number(lua_State *L, int t, const char *key, double dflt) {
  lua_getfield(L, t, key);
  double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

/* 1 when the list t[key] (a table of strings) holds name. */
static int listed(lua_State *L, int t, const char *key, const char *name) {
  int found = 0;
  if (lua_getfield(L, t, key) == LUA_TTABLE) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n && !found; i++) {
      if (lua_rawgeti(L, -1, i) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), name))
        found = 1;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return found;
}

/* What the app table says, into s (the event settings, hooks, version,
 * default policy, files). Reads only: cannot raise for a normalised app. */
static int read_app(app_state *s, int t, oa_error *err) {
  lua_State *L = s->L;
  oa_event_config cfg = oa_event_config_defaults();
  cfg.reward_wait = get_number(L, t, "reward_wait", cfg.reward_wait);
  cfg.default_reward = get_number(L, t, "default_reward", cfg.default_reward);
  int ct = lua_getfield(L, t, "combine");
  if (ct == LUA_TSTRING) {
    int c = oa_combine_from_name(lua_tostring(L, -1));
    if (c >= 0) cfg.combine = (oa_combine)c;
  } else if (ct != LUA_TNIL) {
    /* A function: the host feeds the engine fn(values so far) for every
     * report and the engine keeps the last one. */
    s->combine_fn = 1;
    cfg.combine = OA_COMBINE_LAST;
  }
  lua_pop(L, 1);
  lua_getfield(L, t, "close");
  const char *close = lua_tostring(L, -1);
  /* "deadline": wait reward_wait for every report; "first" and
   * "activation": the first reward closes the event. */
  cfg.close_on_reward = !(close && !strcmp(close, "deadline"));
  lua_pop(L, 1);
  s->cfg = cfg;
  s->has_context = lua_getfield(L, t, "context") != LUA_TNIL;
  lua_pop(L, 1);
  /* a schedule may be the app's or any policy's */
  s->has_schedule = lua_getfield(L, t, "schedule") != LUA_TNIL;
  lua_pop(L, 1);
  if (lua_getfield(L, t, "policy_specs") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_istable(L, -1)) {
        if (lua_getfield(L, -1, "schedule") != LUA_TNIL) s->has_schedule = 1;
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_getfield(L, t, "version");
  snprintf(s->version, sizeof s->version, "%s",
           lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "");
  lua_pop(L, 1);
  if (lua_getfield(L, t, "policies") == LUA_TTABLE &&
      lua_rawgeti(L, -1, 1) == LUA_TSTRING)
    snprintf(s->default_policy, sizeof s->default_policy, "%s", lua_tostring(L, -1));
  lua_settop(L, t);
  if (lua_getfield(L, t, "files") == LUA_TTABLE) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    s->files = calloc((size_t)(n ? n : 1), sizeof *s->files);
    if (!s->files) return oa_error_set(err, OA_ENOMEM, "out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_rawgeti(L, -1, i) == LUA_TSTRING) {
        s->files[s->nfiles] = strdup(lua_tostring(L, -1));
        if (!s->files[s->nfiles]) {
          lua_settop(L, t);
          return oa_error_set(err, OA_ENOMEM, "out of memory");
        }
        s->nfiles++;
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, t);
  return 0;
}

/* One decision through every policy of the staging engine: a context with
 * every field missing over a few inline candidates with no fields. The
 * decision is not kept. Raises the failure. [-0, +0, e] */
static void canary(lua_State *L, app_state *s, oa_engine *staging, const char *path) {
  int32_t n = oa_engine_policy_count(staging);
  for (int32_t i = 0; i < n; i++) {
    oa_policy *p = oa_engine_policy_at(staging, i);
    oa_model *m = oa_policy_model(p);
    int32_t k = CANARY_CANDIDATES;
    if (m->ops->per_arm && m->arms > 0 && m->arms < k) k = m->arms;
    int32_t nf = oa_features_nfields(oa_policy_features(p), OA_SIDE_ACTION);
    oa_value *none = lua_newuserdatauv(L, sizeof *none * (size_t)(nf > 0 ? nf : 1), 0);
    memset(none, 0, sizeof *none * (size_t)(nf > 0 ? nf : 1)); /* all OA_VAL_NONE */
    const char *ids[CANARY_CANDIDATES] = {"canary-1", "canary-2", "canary-3"};
    const oa_value *acts[CANARY_CANDIDATES] = {none, none, none};
    oa_decide_request rq = {.event_id = "canary",
                            .context = NULL,
                            .n = k,
                            .ids = ids,
                            .actions = acts,
                            .keep_event = 0};
    oa_decision d;
    oa_error e = {0};
    budget_reset(s);
    if (oa_policy_decide(p, &rq, &d, &e))
      luaL_error(L, "%s: policy '%s': the canary decision failed: %s", path,
                 oa_policy_name(p), e.message);
    lua_pop(L, 1);
  }
}

static int is_lua_model(oa_policy *p) {
  return !strcmp(oa_policy_model(p)->ops->kind, "lua");
}

/* Why staging policy sp cannot take over live policy lp's state. */
static void shape_change(oa_policy *lp, oa_policy *sp, char *out, size_t cap) {
  oa_model *a = oa_policy_model(lp), *b = oa_policy_model(sp);
  int32_t da = oa_features_dim(oa_policy_features(lp)),
          db = oa_features_dim(oa_policy_features(sp));
  if (strcmp(a->ops->kind, b->ops->kind))
    snprintf(out, cap, "model %s \xe2\x86\x92 %s", a->ops->kind, b->ops->kind);
  else if (da != db || a->dim != b->dim)
    snprintf(out, cap, "dim %d \xe2\x86\x92 %d", (int)(da != db ? da : a->dim),
             (int)(da != db ? db : b->dim));
  else if (a->arms != b->arms)
    snprintf(out, cap, "arms %d \xe2\x86\x92 %d", (int)a->arms, (int)b->arms);
  else
    snprintf(out, cap, "feature space changed");
}

/* The commit step, in the new state: builds added and reset policies with
 * scripts/onearm's policy builder, gives kept ones the new explorer and
 * parameters (their model and learned state stay), removes the ones the
 * app removes. [-4, +0, e] */
static const char *const commit_lua =
    "local live, app, plans, params = ...\n"
    "local core = require 'onearm.core'\n"
    "local policy = require 'onearm.policy'\n"
    "for _, name in ipairs(app.policies) do\n"
    "  local plan, d = plans[name], app.policy_specs[name]\n"
    "  if plan == 'keep' then\n"
    "    live:set_explorer(name, d.explore, params[name])\n"
    "  else\n"
    "    if plan ~= 'add' then live:remove_policy(name) end\n"
    "    policy.instantiate(core, live, name, d)\n"
    "  end\n"
    "end\n"
    "for _, name in ipairs(app.remove or {}) do\n"
    "  if plans[name] == 'remove' then live:remove_policy(name) end\n"
    "end\n";

#define MAX_RELUA 64

/* What the protected build step shares with its caller. */
typedef struct build_ctx {
  oa_server_app *a;
  app_state *s;
  int partial; /* 1: the live engine started changing */
  oa_buf saved[MAX_RELUA];
  char relua[MAX_RELUA][OA_MAX_NAME];
  int nsaved;
} build_ctx;

/* Load, validate, plan, commit; everything that talks to Lua runs here,
 * protected (a memory error anywhere is an ordinary failure). [-1, +0, e] */
static int build_body(lua_State *L) {
  build_ctx *c = lua_touserdata(L, 1);
  oa_server_app *a = c->a;
  app_state *s = c->s;
  lua_settop(L, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "onearm");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "load_app"); /* 2 */
  lua_pushstring(L, a->path);
  oa_error e = {0};
  oa_engine *staging = oa_engine_new(0, &e);
  if (!staging) return luaL_error(L, "%s", e.message);
  oa_lua_push_engine(L, staging, 1); /* the state owns it from here on */
  lua_pushvalue(L, -1);
  lua_insert(L, 1); /* 1: staging userdata, 3: load_app */
  lua_call(L, 2, 1);
  int t = lua_gettop(L);
  if (!lua_istable(L, t))
    return luaL_error(L, "%s: load_app did not return an app", a->path);
  if (read_app(s, t, &e)) return luaL_error(L, "%s", e.message);
  canary(L, s, staging, a->path);

  /* Plan: nothing in the live engine changes until every check passed. */
  lua_newtable(L); /* plans, t + 1 */
  lua_newtable(L); /* params of kept policies, t + 2 */
  int32_t n = oa_engine_policy_count(staging);
  for (int32_t i = 0; i < n; i++) {
    oa_policy *sp = oa_engine_policy_at(staging, i);
    const char *name = oa_policy_name(sp);
    oa_policy *lp = oa_engine_policy(a->engine, name);
    const char *plan = "add";
    if (lp) {
      oa_policy_spec spec = {
          .name = name, .features = oa_policy_features(sp), .model = oa_policy_model(sp)};
      if (!oa_policy_same_shape(lp, &spec)) {
        if (!listed(L, t, "reset", name)) {
          char why[128];
          shape_change(lp, sp, why, sizeof why);
          return luaL_error(L,
                            "%s: policy '%s' changed shape (%s); declare reset = {'%s'} "
                            "to start it fresh",
                            a->path, name, why, name);
        }
        plan = "reset";
      } else if (is_lua_model(lp)) {
        plan = "relua";
      } else {
        plan = "keep";
        oa_explore_params ep = oa_policy_params(sp);
        oa_lua_push_params(L, &ep);
        lua_setfield(L, t + 2, name);
      }
    }
    lua_pushstring(L, plan);
    lua_setfield(L, t + 1, name);
  }
  int32_t nl = oa_engine_policy_count(a->engine);
  for (int32_t i = 0; i < nl; i++) {
    oa_policy *lp = oa_engine_policy_at(a->engine, i);
    const char *name = oa_policy_name(lp);
    if (oa_engine_policy(staging, name)) continue;
    if (listed(L, t, "remove", name)) {
      lua_pushliteral(L, "remove");
      lua_setfield(L, t + 1, name);
    } else if (is_lua_model(lp) || oa_policy_explore_kind(lp) == OA_EXPLORE_CUSTOM) {
      return luaL_error(L,
                        "%s: policy '%s' is no longer declared but runs Lua code of the "
                        "previous version; list it in remove = {'%s'} to drop it",
                        a->path, name, name);
    }
  }
  oa_lua_push_engine(L, a->engine, 0); /* t + 3: the live engine, borrowed */
  lua_pushvalue(L, -1);
  s->live_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (luaL_loadbuffer(L, commit_lua, strlen(commit_lua), "=reload")) lua_error(L);
  int commit = lua_gettop(L);

  /* Commit. From here on the live engine changes. A Lua model lives in the
   * old state: its learned state crosses over through its own save/load
   * (it starts fresh when it has none). */
  c->partial = 1;
  for (int32_t i = 0; i < n && c->nsaved < MAX_RELUA; i++) {
    const char *name = oa_policy_name(oa_engine_policy_at(staging, i));
    lua_getfield(L, t + 1, name);
    int is_relua = !strcmp(lua_tostring(L, -1), "relua");
    lua_pop(L, 1);
    if (!is_relua) continue;
    oa_buf *b = &c->saved[c->nsaved];
    oa_buf_init(b);
    snprintf(c->relua[c->nsaved], OA_MAX_NAME, "%s", name);
    c->nsaved++;
    if (a->cur) budget_reset(a->cur);
    if (oa_model_save(oa_policy_model(oa_engine_policy(a->engine, name)), b, &e)) {
      fprintf(stderr, "onearm: reload: policy '%s' starts fresh: %s\n", name, e.message);
      b->len = 0;
    }
  }
  lua_pushvalue(L, commit);
  lua_pushvalue(L, t + 3);
  lua_pushvalue(L, t);
  lua_pushvalue(L, t + 1);
  lua_pushvalue(L, t + 2);
  budget_reset(s);
  lua_call(L, 4, 0);
  for (int k = 0; k < c->nsaved; k++) {
    oa_policy *p = oa_engine_policy(a->engine, c->relua[k]);
    if (!c->saved[k].len || !p) continue;
    oa_reader r;
    oa_reader_init(&r, c->saved[k].data, c->saved[k].len);
    budget_reset(s);
    if (oa_model_load(oa_policy_model(p), &r, &e))
      fprintf(stderr, "onearm: reload: policy '%s' starts fresh: %s\n", c->relua[k],
              e.message);
  }
  for (int32_t i = 0; i < n; i++) {
    const char *name = oa_policy_name(oa_engine_policy_at(staging, i));
    oa_policy *lp = oa_engine_policy(a->engine, name);
    if (lp) oa_policy_set_reset(lp, listed(L, t, "reset", name));
  }
  if (oa_engine_set_event_config(a->engine, &s->cfg, &e)) luaL_error(L, "%s", e.message);
  /* The app's retrieval settings (retrieve = {...}) were made on the
   * staging engine: the live one takes them (the same store is kept). */
  const oa_retrieval_config *rcfg = oa_engine_retrieval_config(staging);
  if (rcfg && oa_engine_set_retrieval(a->engine, rcfg, &e))
    luaL_error(L, "%s: retrieve: %s", a->path, e.message);
  /* The staging engine goes now (its models were only for validation);
   * the app's `engine` field becomes the live one. */
  lua_getfield(L, 1, "close");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 0);
  lua_pushvalue(L, t + 3);
  lua_setfield(L, t, "engine");
  lua_pushvalue(L, t);
  s->app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* Builds a new state with the app loaded, validated and reconciled into
 * the live engine. On failure before the commit step nothing changed; a
 * failure during it (out of memory) is reported with *partial = 1. */
static app_state *build(oa_server_app *a, int *partial, oa_error *err) {
  *partial = 0;
  app_state *s = state_new(a, err);
  if (!s) return NULL;
  build_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    state_close(s);
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  c->a = a;
  c->s = s;
  lua_pushcfunction(s->L, build_body);
  lua_pushlightuserdata(s->L, c);
  int rc = state_call(s, 1, 0, err);
  *partial = c->partial;
  for (int k = 0; k < c->nsaved; k++)
    oa_buf_free(&c->saved[k]);
  free(c);
  if (rc == 0) {
    lua_settop(s->L, 0);
    return s;
  }
  if (s->trace[0]) fprintf(stderr, "onearm: loading %s: %s\n", a->path, s->trace);
  if (*partial) {
    /* Live policies may point into this state now: keep it for good. */
    s->next = a->pinned;
    a->pinned = s;
  } else {
    state_close(s); /* the staging engine goes with it */
  }
  return NULL;
}

static void apply_schedules(oa_server_app *a);

/* The reload: build aside, then swap. */
static int swap_in(oa_server_app *a, oa_error *err) {
  int partial;
  app_state *s = build(a, &partial, err);
  if (!s) return err->code ? err->code : OA_ESCRIPT;
  app_state *old = a->cur;
  a->cur = s;
  apply_schedules(a);
  if (old) {
    old->next = a->retired;
    a->retired = old;
    collect_retired(a);
  }
  return 0;
}

static void resolve_scripts(oa_server_app *a, const char *dir) {
  if (!dir) dir = oa_scripts_dir();
  snprintf(a->scripts, sizeof a->scripts, "%s", dir);
}

static void init_hooks(oa_server_app *a);

oa_server_app *oa_server_app_load(oa_engine *engine, const char *path,
                                  const oa_app_limits *limits, oa_error *err) {
  if (!engine || !path) {
    oa_error_set(err, OA_EINVAL, "oa_server_app_load needs an engine and a path");
    return NULL;
  }
  oa_server_app *a = calloc(1, sizeof *a);
  if (!a || !(a->path = strdup(path))) {
    free(a);
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  a->engine = engine;
  a->memory_cap = limits && limits->memory_bytes ? limits->memory_bytes : DEFAULT_MEMORY;
  a->budget =
      limits && limits->instructions > 0 ? limits->instructions : DEFAULT_INSTRUCTIONS;
  resolve_scripts(a, limits ? limits->scripts_dir : NULL);
  init_hooks(a);
  if (swap_in(a, err)) {
    oa_server_app_free(a);
    return NULL;
  }
  return a;
}

void oa_server_app_free(oa_server_app *a) {
  if (!a) return;
  /* Explorers and Lua models of live policies point into these states: the
   * engine outlives the app, so they go first (a Lua model's policy is
   * removed, a Lua explorer falls back to greedy). */
  for (int32_t i = oa_engine_policy_count(a->engine) - 1; i >= 0; i--) {
    oa_policy *p = oa_engine_policy_at(a->engine, i);
    oa_explore_params ep = oa_policy_params(p);
    if (is_lua_model(p))
      oa_engine_remove_policy(a->engine, oa_policy_name(p), NULL);
    else if (oa_policy_explore_kind(p) == OA_EXPLORE_CUSTOM)
      oa_policy_set_explorer(p, OA_EXPLORE_GREEDY, &ep, NULL, NULL, NULL);
  }
  state_close(a->cur);
  while (a->retired) {
    app_state *s = a->retired;
    a->retired = s->next;
    state_close(s);
  }
  while (a->pinned) {
    app_state *s = a->pinned;
    a->pinned = s->next;
    state_close(s);
  }
  free(a->path);
  free(a);
}

int oa_server_app_reload(oa_server_app *a, oa_error *err) {
  oa_error local = {0};
  if (!err) err = &local;
  err->code = 0;
  err->message[0] = 0;
  int rc = swap_in(a, err);
  if (rc) {
    a->stats.reload_failures++;
    snprintf(a->last_error, sizeof a->last_error, "%s", err->message);
    fprintf(stderr,
            "onearm: reload of %s failed, the previous version keeps serving: %s\n",
            a->path, err->message);
    return rc;
  }
  a->stats.reloads++;
  a->last_error[0] = 0;
  fprintf(stderr, "onearm: reloaded %s (version %s)\n", a->path, a->cur->version);
  return 0;
}

/* ---- JSON <-> Lua ---- */

/* A JSON value as a Lua value (objects and arrays as tables, null as nil).
 * [-0, +1, m] */
static void push_json(lua_State *L, json_object *v, int depth) {
  luaL_checkstack(L, 4, "JSON nested too deeply");
  if (depth > 64) luaL_error(L, "JSON nested too deeply");
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

/* The Lua value at idx as JSON, without raising (runs outside a protected
 * call): tables with a sequence part become arrays, others objects with
 * their string keys; functions and other values are dropped (NULL). */
static json_object *to_json(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN:
    return json_object_new_boolean(lua_toboolean(L, idx));
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) return json_object_new_int64(lua_tointeger(L, idx));
    return isfinite(lua_tonumber(L, idx)) ? json_object_new_double(lua_tonumber(L, idx))
                                          : NULL;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return json_object_new_string_len(s, (int)len);
  }
  case LUA_TTABLE: {
    if (depth > 32 || !lua_checkstack(L, 4)) return NULL;
    size_t n = lua_rawlen(L, idx);
    if (n > 0) {
      json_object *arr = json_object_new_array_ext((int)n);
      for (size_t i = 1; arr && i <= n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        json_object *item = to_json(L, -1, depth + 1);
        lua_pop(L, 1);
        json_object_array_add(arr, item ? item : NULL);
      }
      return arr;
    }
    json_object *obj = json_object_new_object();
    if (!obj) return NULL;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        json_object *item = to_json(L, -1, depth + 1);
        if (item) json_object_object_add(obj, lua_tostring(L, -2), item);
      }
      lua_pop(L, 1);
    }
    return obj;
  }
  default:
    return NULL;
  }
}

/* ---- hooks ---- */

/* One hook call: the app method to call and its arguments, converted
 * inside the protected call (a conversion can run out of memory). */
enum { H_COMPOSE, H_PARAMS, H_PREPARE, H_COMBINE };

typedef struct hook_call {
  int op;
  int app_ref;
  json_object *json;
  const char *str;
  lua_Integer t;
  double r, now, ttl;
  oa_explore_params params; /* H_PARAMS: in and out */
  int has_params;
} hook_call;

/* Reads the schedule's params table at -1 into h->params. [-0, +0, e] */
static void read_params(lua_State *L, hook_call *h) {
  if (lua_isnil(L, -1)) return;
  if (!lua_istable(L, -1))
    luaL_error(L, "schedule: expected a params table, got %s", luaL_typename(L, -1));
  static const char *const keys[] = {"epsilon", "temperature", "alpha", "gamma", "draws"};
  double *dst[] = {&h->params.epsilon, &h->params.temperature, &h->params.alpha,
                   &h->params.gamma, NULL};
  for (int k = 0; k < 5; k++) {
    int t = lua_getfield(L, -1, keys[k]);
    if (t == LUA_TNUMBER) {
      double v = lua_tonumber(L, -1);
      if (!isfinite(v)) luaL_error(L, "schedule: '%s' must be finite", keys[k]);
      if (dst[k])
        *dst[k] = v;
      else
        h->params.draws = (int32_t)v;
      h->has_params = 1;
    } else if (t != LUA_TNIL) {
      luaL_error(L, "schedule: '%s' must be a number, got %s", keys[k],
                 luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
}

/* [-1, +1, e] app:<method>(args...) as h says. */
static int hook_body(lua_State *L) {
  static const char *const methods[] = {"compose", "params_at", "prepare",
                                        "combine_reward"};
  hook_call *h = lua_touserdata(L, 1);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->app_ref);
  lua_getfield(L, 1, methods[h->op]);
  lua_pushvalue(L, 1);
  int nargs = 1;
  switch (h->op) {
  case H_COMPOSE:
    push_json(L, h->json, 0);
    nargs = 2;
    break;
  case H_PARAMS:
    lua_pushstring(L, h->str);
    lua_pushinteger(L, h->t);
    nargs = 3;
    break;
  case H_PREPARE:
    if (h->json)
      push_json(L, h->json, 0);
    else
      lua_newtable(L);
    nargs = 2;
    break;
  case H_COMBINE:
    lua_pushstring(L, h->str);
    lua_pushnumber(L, h->r);
    lua_pushnumber(L, h->now);
    lua_pushnumber(L, h->ttl);
    nargs = 5;
    break;
  }
  lua_call(L, nargs, 1);
  if (h->op == H_PARAMS) read_params(L, h);
  return 1;
}

/* Runs h on the current state; 0 with the result on the stack (pop it). */
static int run_hook(oa_server_app *a, hook_call *h, oa_error *err) {
  app_state *s = a->cur;
  if (!lua_checkstack(s->L, 8)) return oa_error_set(err, OA_ENOMEM, "out of memory");
  h->app_ref = s->app_ref;
  lua_pushcfunction(s->L, hook_body);
  lua_pushlightuserdata(s->L, h);
  if (state_call(s, 1, 1, err)) {
    a->stats.script_errors++;
    return OA_ESCRIPT;
  }
  return 0;
}

static int hook_failed(oa_server_app *a, oa_error *err, const char *msg) {
  a->stats.script_errors++;
  return oa_error_set(err, OA_ESCRIPT, "%s", msg);
}

int oa_server_app_reward(void *ud, json_object *signals, double *reward, oa_error *err) {
  oa_server_app *a = ud;
  lua_State *L = a->cur->L;
  hook_call h = {.op = H_COMPOSE, .json = signals};
  if (run_hook(a, &h, err)) return OA_ESCRIPT;
  int ok = lua_type(L, -1) == LUA_TNUMBER && isfinite(lua_tonumber(L, -1));
  if (ok) *reward = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return ok ? 0 : hook_failed(a, err, "reward hook: expected a finite number");
}

/* The schedule for policy p: t is the number of decisions the policy made
 * (exploration follows experience). It runs before every decision of a
 * policy's first SCHEDULE_EVERY_AFTER decisions, then before every
 * SCHEDULE_EVERY-th: schedules are slow functions of t, and a Lua call per
 * request is ~5% of a rank's cost at high rates. */
#define SCHEDULE_EVERY_AFTER 4096
#define SCHEDULE_EVERY       16

static int schedule_due(oa_policy *p) {
  uint64_t t = oa_policy_get_stats(p).decisions;
  return t < SCHEDULE_EVERY_AFTER || t % SCHEDULE_EVERY == 0;
}

static int hook_rank_params(oa_server_app *a, oa_policy *p, oa_error *err) {
  hook_call h = {.op = H_PARAMS,
                 .str = oa_policy_name(p),
                 .t = (lua_Integer)oa_policy_get_stats(p).decisions,
                 .params = oa_policy_params(p)};
  if (run_hook(a, &h, err)) return OA_ESCRIPT;
  lua_pop(a->cur->L, 1);
  if (h.has_params && oa_policy_set_params(p, &h.params, err)) {
    oa_error_prefix(err, "schedule");
    a->stats.script_errors++;
    err->code = OA_ESCRIPT;
    return OA_ESCRIPT;
  }
  return 0;
}

/* The schedule and the context hook, once per rank request. */
static int hook_rank(void *ud, oa_policy *p, json_object *ctx, json_object **ctx_out,
                     oa_error *err) {
  oa_server_app *a = ud;
  app_state *s = a->cur;
  lua_State *L = s->L;
  *ctx_out = NULL;
  if (s->has_schedule && schedule_due(p) && hook_rank_params(a, p, err))
    return OA_ESCRIPT;
  if (s->has_context) {
    hook_call h = {.op = H_PREPARE, .json = ctx};
    if (run_hook(a, &h, err)) return OA_ESCRIPT;
    *ctx_out = to_json(L, -1, 0);
    lua_pop(L, 1);
    if (!*ctx_out) return oa_error_set(err, OA_ENOMEM, "out of memory");
  }
  return 0;
}

/* A reload gives kept policies the parameters of the new app's presets:
 * the schedule puts its own back at once, rather than at each policy's
 * next decision. A failing schedule is reported by that decision. */
static void apply_schedules(oa_server_app *a) {
  if (!a->cur->has_schedule) return;
  int32_t n = oa_engine_policy_count(a->engine);
  for (int32_t i = 0; i < n; i++) {
    oa_policy *p = oa_engine_policy_at(a->engine, i);
    oa_error err = {0};
    if (hook_rank_params(a, p, &err)) a->stats.script_errors--; /* not a request's */
  }
}

static double monotonic_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A combine function: every report r of an event is remembered by the app
 * (App:combine_reward in scripts/onearm/app.lua) and the engine gets the
 * function of all the reports so far; the engine keeps the last one. Only
 * with close = "deadline": otherwise the first report closes the event. */
static int hook_combine(void *ud, const char *event_id, double r, double *out,
                        oa_error *err) {
  oa_server_app *a = ud;
  app_state *s = a->cur;
  *out = r;
  if (!s->combine_fn || s->cfg.close_on_reward) return 0;
  hook_call h = {.op = H_COMBINE,
                 .str = event_id,
                 .r = r,
                 .now = monotonic_seconds(),
                 .ttl = s->cfg.reward_wait + 5};
  if (run_hook(a, &h, err)) return OA_ESCRIPT;
  int ok = lua_type(s->L, -1) == LUA_TNUMBER && isfinite(lua_tonumber(s->L, -1));
  if (ok) *out = lua_tonumber(s->L, -1);
  lua_pop(s->L, 1);
  return ok ? 0 : hook_failed(a, err, "combine: expected a finite number");
}

/* Engine calls of one request may run Lua explorers and models: they get a
 * fresh budget, and the state they run on is not closed under them. */
static void hook_enter(void *ud) {
  oa_server_app *a = ud;
  budget_reset(a->cur);
  a->cur->depth++;
  if (a->nenter < MAX_ENTER) a->entered[a->nenter] = a->cur;
  a->nenter++;
}

static void hook_leave(void *ud) {
  oa_server_app *a = ud;
  if (a->nenter <= 0) return;
  a->nenter--;
  if (a->nenter < MAX_ENTER) a->entered[a->nenter]->depth--;
  if (a->retired) collect_retired(a);
}

static int hook_reload(void *ud, oa_error *err) {
  return oa_server_app_reload(ud, err);
}

static const char *hook_version(void *ud) {
  return oa_server_app_version(ud);
}

static const char *hook_default_policy(void *ud) {
  return oa_server_app_default_policy(ud);
}

static void put_metric(oa_buf *b, const char *name, const char *type, const char *help,
                       const char *labels, double v) {
  char line[512];
  int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s%s %.17g\n", name,
                   help, name, type, name, labels, v);
  if (n > 0) oa_buf_put(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void hook_metrics(void *ud, oa_buf *b) {
  oa_server_app *a = ud;
  char labels[128];
  snprintf(labels, sizeof labels, "{version=\"%s\"}", a->cur->version);
  put_metric(b, "onearm_app_info", "gauge",
             "The app version serving (a hash of its sources).", labels, 1);
  put_metric(b, "onearm_app_reloads_total", "counter", "Successful app reloads.", "",
             (double)a->stats.reloads);
  put_metric(b, "onearm_app_reload_failures_total", "counter",
             "App reloads refused or failed (the previous version kept serving).", "",
             (double)a->stats.reload_failures);
  put_metric(b, "onearm_app_script_errors_total", "counter",
             "App hook calls that failed.", "", (double)a->stats.script_errors);
  put_metric(b, "onearm_app_budget_errors_total", "counter",
             "Hook calls stopped by the instruction budget.", "",
             (double)a->stats.budget_errors);
  put_metric(b, "onearm_app_memory_errors_total", "counter",
             "Hook calls stopped by the memory cap.", "", (double)a->stats.memory_errors);
  put_metric(b, "onearm_app_lua_bytes", "gauge", "Bytes held by the app's Lua state.", "",
             (double)oa_server_app_lua_bytes(a));
}

static void init_hooks(oa_server_app *a) {
  a->hooks = (oa_api_hooks){.rank = hook_rank,
                            .combine = hook_combine,
                            .enter = hook_enter,
                            .leave = hook_leave,
                            .reload = hook_reload,
                            .version = hook_version,
                            .default_policy = hook_default_policy,
                            .metrics = hook_metrics};
}

void oa_server_app_describe(oa_server_app *a, oa_api_app *out) {
  memset(out, 0, sizeof *out);
  out->engine = a->engine;
  out->default_policy = oa_server_app_default_policy(a);
  out->version = a->cur->version;
  out->reward = oa_server_app_reward;
  out->reward_ud = a;
  out->hooks = &a->hooks;
  out->hooks_ud = a;
}
