/* Models for Lua: the `onearm.model` metatable, the constructors under
 * `oa.model` (one per family of models/model.h) and `oa.model.lua`, an
 * oa_model whose ops call Lua functions.
 *
 * Ownership: a model userdata owns its oa_model until eng:add_policy takes
 * it. From then on the userdata points at the policy's model and holds the
 * engine userdata in its uservalue, so the engine (and the model) outlive
 * every handle; eng:remove_policy and closing the engine mark the handle
 * GONE, so it errors instead of dangling.
 *
 * The Lua adapter keeps its `self` table (the table given to oa.model.lua)
 * in the registry of the state that created it and calls back on the thread
 * that is calling the engine (see oa__lua_enter). Every callback runs under
 * lua_pcall, so a script error becomes OA_ESCRIPT with the Lua message and
 * never unwinds through the engine's C frames. */
#include "lua_onearm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* ---- the model userdata ---- */

oa_lua_model *oa__lua_checkmodel(lua_State *L, int idx) {
  oa_lua_model *m = luaL_checkudata(L, idx, OA_LUA_MODEL);
  if (m->state == OA_LM_GONE)
    luaL_argerror(L, idx, "model's policy was removed or its engine was closed");
  if (m->state != OA_LM_OWNED && m->state != OA_LM_POLICY)
    luaL_argerror(L, idx, "model is closed");
  return m;
}

/* [-0, +0, -] __gc and __close: frees an owned model once; a policy's model
 * belongs to the engine. */
static int m_finalize(lua_State *L) {
  oa_lua_model *m = luaL_checkudata(L, 1, OA_LUA_MODEL);
  if (m->state == OA_LM_OWNED) oa_model_free(m->m);
  if (m->state != OA_LM_GONE) m->state = OA_LM_CLOSED;
  m->m = NULL;
  return 0;
}

/* [-0, +1, m] a closed model userdata, to be filled by a constructor. */
static oa_lua_model *newmodel(lua_State *L) {
  oa_lua_model *m = lua_newuserdatauv(L, sizeof *m, 1);
  m->m = NULL;
  m->state = OA_LM_CLOSED;
  luaL_setmetatable(L, OA_LUA_MODEL);
  return m;
}

/* Fill the userdata at the top with a constructor's result or raise. */
static int finish(lua_State *L, oa_lua_model *u, oa_model *m, const char *fn,
                  const oa_error *err) {
  if (!m) return oa__lua_fail(L, fn, err);
  u->m = m;
  u->state = OA_LM_OWNED;
  return 1;
}

static const char *const ridge_keys[] = {
    "dim", "lambda", "forget", "v", "refactor_every", "arms", NULL};

static oa_ridge_config ridge_config(lua_State *L, const char *fn) {
  oa_ridge_config c = {0};
  c.dim = (int32_t)oa__lua_optint(L, 1, fn, "dim", -1, 1, 1 << 20);
  c.lambda = oa__lua_optnumber(L, 1, fn, "lambda", 1);
  c.forget = oa__lua_optnumber(L, 1, fn, "forget", 1);
  c.v = oa__lua_optnumber(L, 1, fn, "v", 1);
  c.refactor_every =
      (int32_t)oa__lua_optint(L, 1, fn, "refactor_every", 1000, 1, INT32_MAX);
  return c;
}

/* [-0, +1, e] oa.model.ridge{dim=, lambda=1, forget=1, v=1, refactor_every=1000} */
static int l_ridge(lua_State *L) {
  const char *fn = "model.ridge";
  luaL_checktype(L, 1, LUA_TTABLE);
  oa__lua_checkkeys(L, 1, fn, ridge_keys);
  if (lua_getfield(L, 1, "arms") != LUA_TNIL)
    luaL_error(L, "%s: 'arms' belongs to model.disjoint_ridge", fn);
  lua_pop(L, 1);
  oa_ridge_config c = ridge_config(L, fn);
  oa_lua_model *u = newmodel(L);
  oa_error err = {0};
  return finish(L, u, oa_ridge_new(&c, &err), fn, &err);
}

/* [-0, +1, e] oa.model.disjoint_ridge{dim=, arms=, lambda=, forget=, v=} */
static int l_disjoint_ridge(lua_State *L) {
  const char *fn = "model.disjoint_ridge";
  luaL_checktype(L, 1, LUA_TTABLE);
  oa__lua_checkkeys(L, 1, fn, ridge_keys);
  oa_ridge_config c = ridge_config(L, fn);
  int32_t arms = (int32_t)oa__lua_optint(L, 1, fn, "arms", -1, 1, 1 << 24);
  oa_lua_model *u = newmodel(L);
  oa_error err = {0};
  return finish(L, u, oa_disjoint_ridge_new(&c, arms, &err), fn, &err);
}

/* [-0, +1, e] oa.model.logistic{dim=, lambda=1, forget=1, lr=0.1} */
static int l_logistic(lua_State *L) {
  const char *fn = "model.logistic";
  static const char *const keys[] = {"dim", "lambda", "forget", "lr", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  oa__lua_checkkeys(L, 1, fn, keys);
  oa_logistic_config c = {0};
  c.dim = (int32_t)oa__lua_optint(L, 1, fn, "dim", -1, 1, 1 << 24);
  c.lambda = oa__lua_optnumber(L, 1, fn, "lambda", 1);
  c.forget = oa__lua_optnumber(L, 1, fn, "forget", 1);
  c.lr = oa__lua_optnumber(L, 1, fn, "lr", 0.1);
  oa_lua_model *u = newmodel(L);
  oa_error err = {0};
  return finish(L, u, oa_logistic_new(&c, &err), fn, &err);
}

/* [-0, +1, e] oa.model.mlp{dim=, hidden={64,32}, output="sigmoid", lr=1e-3, ...} */
static int l_mlp(lua_State *L) {
  const char *fn = "model.mlp";
  static const char *const keys[] = {
      "dim", "hidden",        "output", "lr", "batch",  "replay", "train_every", "steps",
      "l2",  "neural_linear", "lambda", "v",  "forget", "seed",   NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  oa__lua_checkkeys(L, 1, fn, keys);
  oa_mlp_config c = {0};
  c.dim = (int32_t)oa__lua_optint(L, 1, fn, "dim", -1, 1, 1 << 24);
  int t = lua_getfield(L, 1, "hidden");
  if (t == LUA_TNIL) {
    c.n_hidden = 2, c.hidden[0] = 64, c.hidden[1] = 32;
  } else if (t == LUA_TTABLE) {
    lua_Integer n = luaL_len(L, -1);
    if (n < 1 || n > 8) luaL_error(L, "%s: 'hidden' must list 1 to 8 layer sizes", fn);
    c.n_hidden = (int32_t)n;
    for (lua_Integer i = 1; i <= n; i++) {
      lua_geti(L, -1, i);
      int isint = 0;
      lua_Integer h = lua_tointegerx(L, -1, &isint);
      if (!isint || h < 1 || h > 1 << 16)
        luaL_error(L, "%s: hidden layer %d must be an integer from 1 to 65536", fn,
                   (int)i);
      c.hidden[i - 1] = (int32_t)h;
      lua_pop(L, 1);
    }
  } else {
    luaL_error(L, "%s: 'hidden' must be a list of layer sizes", fn);
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "output");
  const char *out = luaL_optstring(L, -1, "sigmoid");
  if (strcmp(out, "sigmoid") && strcmp(out, "linear"))
    luaL_error(L, "%s: 'output' must be \"sigmoid\" or \"linear\", got '%s'", fn, out);
  c.sigmoid_output = !strcmp(out, "sigmoid");
  lua_pop(L, 1);
  c.lr = oa__lua_optnumber(L, 1, fn, "lr", 1e-3);
  c.batch = (int32_t)oa__lua_optint(L, 1, fn, "batch", 32, 1, 1 << 16);
  c.replay = (int32_t)oa__lua_optint(L, 1, fn, "replay", 10000, 1, 1 << 26);
  c.train_every = (int32_t)oa__lua_optint(L, 1, fn, "train_every", 1, 1, 1 << 20);
  c.steps_per_train = (int32_t)oa__lua_optint(L, 1, fn, "steps", 1, 1, 1 << 10);
  c.l2 = oa__lua_optnumber(L, 1, fn, "l2", 0);
  c.neural_linear = oa__lua_optbool(L, 1, fn, "neural_linear", 0);
  c.lambda = oa__lua_optnumber(L, 1, fn, "lambda", 1);
  c.v = oa__lua_optnumber(L, 1, fn, "v", 1);
  c.forget = oa__lua_optnumber(L, 1, fn, "forget", 1);
  c.seed = (uint64_t)oa__lua_optint(L, 1, fn, "seed", 0, LUA_MININTEGER, LUA_MAXINTEGER);
  oa_lua_model *u = newmodel(L);
  oa_error err = {0};
  return finish(L, u, oa_mlp_new(&c, &err), fn, &err);
}

/* [-0, +1, e] oa.model.reinforce{dim=, lr=0.05, baseline_decay=0.99, l2=0, temperature=1}
 */
static int l_reinforce(lua_State *L) {
  const char *fn = "model.reinforce";
  static const char *const keys[] = {"dim", "lr",          "baseline_decay",
                                     "l2",  "temperature", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  oa__lua_checkkeys(L, 1, fn, keys);
  oa_reinforce_config c = {0};
  c.dim = (int32_t)oa__lua_optint(L, 1, fn, "dim", -1, 1, 1 << 24);
  c.lr = oa__lua_optnumber(L, 1, fn, "lr", 0.05);
  c.baseline_decay = oa__lua_optnumber(L, 1, fn, "baseline_decay", 0.99);
  c.l2 = oa__lua_optnumber(L, 1, fn, "l2", 0);
  c.temperature = oa__lua_optnumber(L, 1, fn, "temperature", 1);
  oa_lua_model *u = newmodel(L);
  oa_error err = {0};
  return finish(L, u, oa_reinforce_new(&c, &err), fn, &err);
}

/* [-0, +1, e] oa.model.bernoulli_ts{arms=, alpha=1, beta=1, forget=1} */
static int l_bernoulli_ts(lua_State *L) {
  const char *fn = "model.bernoulli_ts";
  static const char *const keys[] = {"arms", "alpha", "beta", "forget", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  oa__lua_checkkeys(L, 1, fn, keys);
  int32_t arms = (int32_t)oa__lua_optint(L, 1, fn, "arms", -1, 1, 1 << 24);
  double a = oa__lua_optnumber(L, 1, fn, "alpha", 1),
         b = oa__lua_optnumber(L, 1, fn, "beta", 1);
  double forget = oa__lua_optnumber(L, 1, fn, "forget", 1);
  oa_lua_model *u = newmodel(L);
  oa_error err = {0};
  return finish(L, u, oa_bernoulli_ts_new(arms, a, b, forget, &err), fn, &err);
}

/* [-0, +1, e] oa.model.ucb1{arms=, forget=1} */
static int l_ucb1(lua_State *L) {
  const char *fn = "model.ucb1";
  static const char *const keys[] = {"arms", "forget", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  oa__lua_checkkeys(L, 1, fn, keys);
  int32_t arms = (int32_t)oa__lua_optint(L, 1, fn, "arms", -1, 1, 1 << 24);
  double forget = oa__lua_optnumber(L, 1, fn, "forget", 1);
  oa_lua_model *u = newmodel(L);
  oa_error err = {0};
  return finish(L, u, oa_ucb1_new(arms, forget, &err), fn, &err);
}

/* ---- the Lua-written model adapter ---- */

typedef struct lua_model {
  oa_model base; /* first: the engine sees an oa_model */
  oa_model_ops ops;
  lua_State *main;      /* main thread of the creating state */
  const void *registry; /* identifies that state's universe */
  int ref;              /* registry ref to `self` */
} lua_model;

enum { OP_SCORE, OP_SAMPLE, OP_UPDATE, OP_SAVE, OP_LOAD, OP_SET, OP_GET };

/* Everything a callback needs, passed to the protected body as a light
 * userdata. `views` collects the tensors handed to Lua so that they are
 * killed after the call, whether it succeeded or not. */
typedef struct call {
  int op;
  lua_model *lm;
  const oa_batch *b;
  double *mean, *width, *out;
  int draws;
  const oa_example *ex;
  int nex;
  oa_buf *buf;
  const char *data;
  size_t len;
  const char *name;
  double value;
  oa_lua_tensor *views[2];
  int nviews;
} call;

/* [-1, +0, e] push self.<name>; raise if it is not a function */
static void pushmethod(lua_State *L, call *c, const char *name) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->lm->ref); /* self */
  if (lua_getfield(L, -1, name) != LUA_TFUNCTION)
    luaL_error(L, "lua model: '%s' is not a function", name);
  lua_insert(L, -2); /* fn, self */
}

/* [-0, +1, m] the batch's rows as an n x d tensor valid during the call. */
static void pushrows(lua_State *L, call *c) {
  const oa_batch *b = c->b;
  oa_lua_tensor *t;
  if (b->ldx == 0 && b->n > 1) { /* one shared row: give Lua n real rows */
    t = oa__lua_newtensor(L, OA_F64, b->n, b->d);
    for (int32_t i = 0; i < b->n; i++)
      memcpy((double *)t->t.data + (size_t)i * b->d, b->x, sizeof(double) * (size_t)b->d);
    t->readonly = 1;
  } else {
    t = oa__lua_borrowtensor(L, b->x, b->n, b->d, b->ldx ? b->ldx : b->d);
  }
  c->views[c->nviews++] = t;
}

static void pusharms(lua_State *L, const int32_t *arm, int32_t n) {
  if (!arm) {
    lua_pushnil(L);
    return;
  }
  lua_createtable(L, n, 0);
  for (int32_t i = 0; i < n; i++) {
    lua_pushinteger(L, arm[i] + 1);
    lua_rawseti(L, -2, i + 1);
  }
}

static void checkfinite(lua_State *L, const double *x, int64_t n, const char *what,
                        int nonneg) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i]) || (nonneg && x[i] < 0))
      luaL_error(L, "lua model: %s %d is %f (must be finite%s)", what, (int)i + 1, x[i],
                 nonneg ? " and >= 0" : "");
}

/* [-0, +0, e] the body of every callback, run under lua_pcall */
static int call_body(lua_State *L) {
  call *c = lua_touserdata(L, 1);
  lua_settop(L, 0);
  switch (c->op) {
  case OP_SCORE: {
    pushmethod(L, c, "score");
    pushrows(L, c);
    pusharms(L, c->b->arm, c->b->n);
    lua_call(L, 3, 2);
    oa__lua_tonumbers(L, 1, c->b->n, c->mean, "lua model score: means");
    checkfinite(L, c->mean, c->b->n, "mean", 0);
    if (c->width) {
      if (lua_isnil(L, 2))
        memset(c->width, 0, sizeof(double) * (size_t)c->b->n);
      else
        oa__lua_tonumbers(L, 2, c->b->n, c->width, "lua model score: widths");
      checkfinite(L, c->width, c->b->n, "width", 1);
    }
    break;
  }
  case OP_SAMPLE: {
    int64_t n = c->b->n, total = n * c->draws;
    pushmethod(L, c, "sample");
    pushrows(L, c);
    lua_pushinteger(L, c->draws);
    pusharms(L, c->b->arm, c->b->n);
    lua_call(L, 4, 1);
    if (lua_istable(L, 1) && lua_rawgeti(L, 1, 1) == LUA_TTABLE) { /* {{...}, ...} */
      lua_pop(L, 1);
      if ((int64_t)luaL_len(L, 1) != c->draws)
        luaL_error(L, "lua model sample: expected %d draws", c->draws);
      for (int k = 0; k < c->draws; k++) {
        lua_geti(L, 1, k + 1);
        oa__lua_tonumbers(L, -1, n, c->out + (size_t)k * n, "lua model sample: draw");
        lua_pop(L, 1);
      }
    } else {
      lua_settop(L, 1);
      oa__lua_tonumbers(L, 1, total, c->out, "lua model sample: draws");
    }
    checkfinite(L, c->out, total, "draw", 0);
    break;
  }
  case OP_UPDATE:
    for (int i = 0; i < c->nex; i++) {
      const oa_example *e = &c->ex[i];
      pushmethod(L, c, "update");
      oa_lua_tensor *x =
          oa__lua_borrowtensor(L, e->x, 1, c->lm->base.dim, c->lm->base.dim);
      c->views[0] = x;
      c->nviews = 1;
      lua_pushnumber(L, e->reward);
      lua_pushnumber(L, e->prob);
      if (e->arm >= 0)
        lua_pushinteger(L, e->arm + 1);
      else
        lua_pushnil(L);
      lua_call(L, 5, 0);
      oa__lua_kill(x);
      c->nviews = 0;
    }
    break;
  case OP_SAVE: {
    pushmethod(L, c, "save");
    lua_call(L, 1, 1);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (!s || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "lua model save: must return a string");
    oa_buf_put_u64(c->buf, len);
    oa_buf_put(c->buf, s, len);
    break;
  }
  case OP_LOAD:
    pushmethod(L, c, "load");
    lua_pushlstring(L, c->data, c->len);
    lua_call(L, 2, 0);
    break;
  case OP_SET:
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->lm->ref);
    lua_pushnumber(L, c->value);
    lua_setfield(L, -2, c->name);
    break;
  case OP_GET:
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->lm->ref);
    if (lua_getfield(L, -1, c->name) != LUA_TNUMBER)
      luaL_error(L, "lua model has no numeric parameter '%s'", c->name);
    c->value = lua_tonumber(L, -1);
    break;
  }
  return 0;
}

/* Run one callback protected; a Lua error becomes OA_ESCRIPT. */
static int run(call *c, oa_error *err) {
  lua_State *L = oa__lua_callstate(c->lm->main, c->lm->registry);
  if (!lua_checkstack(L, 8))
    return oa_error_set(err, OA_ENOMEM, "lua model: stack overflow");
  int top = lua_gettop(L);
  lua_pushcfunction(L, call_body);
  lua_pushlightuserdata(L, c);
  int rc = lua_pcall(L, 1, 0, 0);
  for (int i = 0; i < c->nviews; i++)
    oa__lua_kill(c->views[i]);
  if (rc != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    oa_error_set(err, OA_ESCRIPT, "%s",
                 msg ? msg : "lua model: error object is not a string");
    lua_settop(L, top);
    return OA_ESCRIPT;
  }
  lua_settop(L, top);
  return 0;
}

static int lm_score(oa_model *m, const oa_batch *b, double *mean, double *width,
                    oa_error *err) {
  call c = {.op = OP_SCORE, .lm = (lua_model *)m, .b = b, .mean = mean, .width = width};
  return run(&c, err);
}

static int lm_sample(oa_model *m, const oa_batch *b, int draws, oa_rng *rng, double *out,
                     oa_error *err) {
  call c = {.op = OP_SAMPLE, .lm = (lua_model *)m, .b = b, .draws = draws, .out = out};
  return run(&c, err);
}

static int lm_update(oa_model *m, const oa_example *ex, int n, oa_error *err) {
  call c = {.op = OP_UPDATE, .lm = (lua_model *)m, .ex = ex, .nex = n};
  return run(&c, err);
}

static size_t lm_size(const oa_model *m) {
  return sizeof(lua_model);
}

static int lm_save(const oa_model *m, oa_buf *out, oa_error *err) {
  call c = {.op = OP_SAVE, .lm = (lua_model *)m, .buf = out};
  return run(&c, err);
}

static int lm_load(oa_model *m, oa_reader *in, oa_error *err) {
  uint64_t len = oa_read_u64(in);
  if (in->failed || len > in->len - in->pos)
    return oa_error_set(err, OA_EFORMAT, "truncated lua model data");
  call c = {.op = OP_LOAD,
            .lm = (lua_model *)m,
            .data = (const char *)in->data + in->pos,
            .len = (size_t)len};
  int rc = run(&c, err);
  if (!rc) in->pos += (size_t)len;
  return rc;
}

static int lm_set(oa_model *m, const char *name, double value, oa_error *err) {
  call c = {.op = OP_SET, .lm = (lua_model *)m, .name = name, .value = value};
  return run(&c, err);
}

static int lm_get(const oa_model *m, const char *name, double *value, oa_error *err) {
  call c = {.op = OP_GET, .lm = (lua_model *)m, .name = name};
  int rc = run(&c, err);
  if (!rc) *value = c.value;
  return rc;
}

static void lm_destroy(oa_model *m) {
  lua_model *lm = (lua_model *)m;
  lua_State *L = oa__lua_callstate(lm->main, lm->registry);
  luaL_unref(L, LUA_REGISTRYINDEX, lm->ref);
  free(lm);
}

/* [-0, +1, e] oa.model.lua{dim=, arms=0, score=fn, update=fn [, sample=, save=, load=]}:
 * the table itself is `self` for every callback, so it can hold the state. */
static int l_lua_model(lua_State *L) {
  const char *fn = "model.lua";
  luaL_checktype(L, 1, LUA_TTABLE);
  int32_t dim = (int32_t)oa__lua_optint(L, 1, fn, "dim", -1, 1, 1 << 24);
  int32_t arms = (int32_t)oa__lua_optint(L, 1, fn, "arms", 0, 0, 1 << 24);
  const char *required[] = {"score", "update"};
  for (int i = 0; i < 2; i++) {
    if (lua_getfield(L, 1, required[i]) != LUA_TFUNCTION)
      luaL_error(L, "%s: '%s' must be a function", fn, required[i]);
    lua_pop(L, 1);
  }
  const char *optional[] = {"sample", "save", "load"};
  int has[3];
  for (int i = 0; i < 3; i++) {
    int t = lua_getfield(L, 1, optional[i]);
    if (t != LUA_TNIL && t != LUA_TFUNCTION)
      luaL_error(L, "%s: '%s' must be a function", fn, optional[i]);
    has[i] = t == LUA_TFUNCTION;
    lua_pop(L, 1);
  }
  if (has[1] != has[2]) luaL_error(L, "%s: 'save' and 'load' go together", fn);
  oa_lua_model *u = newmodel(L);
  lua_model *lm = calloc(1, sizeof *lm);
  if (!lm) return luaL_error(L, "%s: out of memory", fn);
  lm->ops = (oa_model_ops){.kind = "lua",
                           .per_arm = arms > 0,
                           .score = lm_score,
                           .sample = has[0] ? lm_sample : NULL,
                           .update = lm_update,
                           .size_bytes = lm_size,
                           .save = lm_save,
                           .load = lm_load,
                           .set_param = lm_set,
                           .get_param = lm_get,
                           .destroy = lm_destroy};
  lm->base.ops = &lm->ops;
  lm->base.dim = dim;
  lm->base.arms = arms;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lm->main = lua_tothread(L, -1);
  lua_pop(L, 1);
  lm->registry = oa__lua_registry(L);
  lua_pushvalue(L, 1);
  lm->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  u->m = &lm->base;
  u->state = OA_LM_OWNED;
  return 1;
}

/* ---- methods ---- */

/* [-0, +1, -] m:kind() */
static int l_kind(lua_State *L) {
  lua_pushstring(L, oa__lua_checkmodel(L, 1)->m->ops->kind);
  return 1;
}

/* [-0, +1, -] m:dim() */
static int l_dim(lua_State *L) {
  lua_pushinteger(L, oa__lua_checkmodel(L, 1)->m->dim);
  return 1;
}

/* [-0, +1, -] m:arms() (0 for joint models) */
static int l_arms(lua_State *L) {
  lua_pushinteger(L, oa__lua_checkmodel(L, 1)->m->arms);
  return 1;
}

/* [-0, +1, -] m:updates() */
static int l_updates(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)oa__lua_checkmodel(L, 1)->m->updates);
  return 1;
}

/* [-0, +1, -] m:size() -> bytes of memory the model holds */
static int l_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)oa_model_size(oa__lua_checkmodel(L, 1)->m));
  return 1;
}

/* The rows of X (arg idx) as a float64 batch: n x dim, or a single dim x 1
 * vector as one row. Float32 tensors are converted into the arena. */
static void checkrows(lua_State *L, int idx, const oa_model *m, oa_lua_arena *a,
                      oa_batch *b, const char *fn) {
  oa_lua_tensor *X = oa__lua_checktensor(L, idx);
  int64_t n, stride;
  int one_row = X->t.cols != m->dim && X->t.cols == 1 && X->t.rows == m->dim;
  if (X->t.cols != m->dim && !one_row)
    luaL_error(L, "%s: X has %d columns, the %s model expects %d features per row", fn,
               (int)X->t.cols, m->ops->kind, (int)m->dim);
  n = one_row ? 1 : X->t.rows;
  if (n > INT32_MAX / 2) luaL_error(L, "%s: too many rows", fn);
  const double *x;
  if (X->t.dtype == OA_F64 && !one_row) {
    x = X->t.data;
    stride = X->t.stride;
  } else {
    double *copy = oa__lua_alloc(L, a, sizeof(double) * (size_t)(n * m->dim + 1));
    for (int64_t i = 0; i < n * m->dim; i++)
      copy[i] = one_row ? oa_tensor_get(&X->t, i, 0)
                        : oa_tensor_get(&X->t, i / m->dim, i % m->dim);
    x = copy;
    stride = m->dim;
  }
  for (int64_t i = 0; i < n; i++)
    if (!oa_all_finite(x + i * stride, m->dim))
      luaL_error(L, "%s: row %d of X contains NaN or Inf", fn, (int)i + 1);
  *b = (oa_batch){x, stride, (int32_t)n, m->dim, NULL};
}

/* Arm indexes (1-based in Lua) for n rows: a number for all, or a list. */
static int32_t *checkarms(lua_State *L, int idx, const oa_model *m, int32_t n,
                          oa_lua_arena *a, const char *fn) {
  if (!m->ops->per_arm) {
    if (!lua_isnoneornil(L, idx))
      luaL_error(L, "%s: the %s model takes no arms (it scores joint features)", fn,
                 m->ops->kind);
    return NULL;
  }
  if (lua_isnoneornil(L, idx))
    luaL_error(L, "%s: the %s model needs an arm per row", fn, m->ops->kind);
  int32_t *arm = oa__lua_alloc(L, a, sizeof *arm * (size_t)(n + 1));
  for (int32_t i = 0; i < n; i++) {
    lua_Integer k;
    int isint = 0;
    if (lua_istable(L, idx)) {
      lua_geti(L, idx, i + 1);
      k = lua_tointegerx(L, -1, &isint);
      lua_pop(L, 1);
    } else {
      k = lua_tointegerx(L, idx, &isint);
    }
    if (!isint || k < 1 || k > m->arms)
      luaL_error(L, "%s: arm for row %d must be an integer from 1 to %d", fn, (int)i + 1,
                 (int)m->arms);
    arm[i] = (int32_t)(k - 1);
  }
  return arm;
}

/* [-0, +2, e] m:score(X [, arms]) -> means, widths (n x 1 tensors) */
static int l_score(lua_State *L) {
  lua_settop(L, 3); /* the arena goes above every optional argument */
  oa_model *m = oa__lua_checkmodel(L, 1)->m;
  oa_lua_arena *a = oa__lua_arena(L);
  oa_batch b;
  checkrows(L, 2, m, a, &b, "score");
  b.arm = checkarms(L, 3, m, b.n, a, "score");
  oa_lua_tensor *mean = oa__lua_newtensor(L, OA_F64, b.n, 1);
  oa_lua_tensor *width = oa__lua_newtensor(L, OA_F64, b.n, 1);
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = oa_model_score(m, &b, mean->t.data, width->t.data, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, "score", &err);
  return 2;
}

/* n numbers at idx: a number (n == 1, or repeated when `repeat`), a table
 * or a tensor. */
static double *checkcolumn(lua_State *L, int idx, int32_t n, oa_lua_arena *a,
                           const char *what, double def) {
  double *v = oa__lua_alloc(L, a, sizeof(double) * (size_t)(n + 1));
  if (lua_isnoneornil(L, idx) || lua_type(L, idx) == LUA_TNUMBER) {
    if (lua_isnoneornil(L, idx) && isnan(def)) luaL_error(L, "update: %s missing", what);
    double x = lua_isnoneornil(L, idx) ? def : lua_tonumber(L, idx);
    for (int32_t i = 0; i < n; i++)
      v[i] = x;
  } else {
    char buf[64];
    snprintf(buf, sizeof buf, "update: %s", what);
    oa__lua_tonumbers(L, idx, n, v, buf);
  }
  return v;
}

/* [-0, +0, e] m:update(X, rewards, probs [, arms]): learn from n rows at once
 * (probs default to 1). Rejected as a whole, with the model unchanged, on
 * NaN/Inf or a bad shape. */
static int l_update(lua_State *L) {
  lua_settop(L, 5);
  oa_model *m = oa__lua_checkmodel(L, 1)->m;
  oa_lua_arena *a = oa__lua_arena(L);
  oa_batch b;
  checkrows(L, 2, m, a, &b, "update");
  double *r = checkcolumn(L, 3, b.n, a, "rewards", NAN);
  double *p = checkcolumn(L, 4, b.n, a, "probs", 1.0);
  int32_t *arm = checkarms(L, 5, m, b.n, a, "update");
  for (int32_t i = 0; i < b.n; i++) {
    if (!isfinite(r[i]))
      luaL_error(L, "update: reward %d is not a finite number", (int)i + 1);
    if (!(p[i] > 0 && p[i] <= 1))
      luaL_error(L, "update: prob %d is %f, outside (0, 1]", (int)i + 1, p[i]);
  }
  oa_example *ex = oa__lua_alloc(L, a, sizeof *ex * (size_t)(b.n + 1));
  double *one = oa__lua_alloc(L, a, sizeof(double));
  *one = 1.0;
  for (int32_t i = 0; i < b.n; i++) {
    ex[i] = (oa_example){.x = b.x + (size_t)i * b.ldx,
                         .arm = arm ? arm[i] : -1,
                         .reward = r[i],
                         .prob = p[i]};
    if (m->ops->needs_candidates) { /* a lone example is its own candidate set */
      ex[i].n_cand = 1, ex[i].cand_x = ex[i].x, ex[i].cand_prob = one, ex[i].chosen = 0;
      ex[i].cand_arm = arm ? arm + i : NULL;
    }
  }
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = oa_model_update(m, ex, b.n, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, "update", &err);
  return 0;
}

/* Saved bytes owned by a to-be-closed userdata, so a Lua error cannot leak them. */
static int buf_finalize(lua_State *L) {
  oa_buf_free(luaL_checkudata(L, 1, "onearm.buf"));
  return 0;
}

static oa_buf *newbuf(lua_State *L) {
  oa_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
  oa_buf_init(b);
  if (luaL_newmetatable(L, "onearm.buf")) {
    lua_pushcfunction(L, buf_finalize);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, buf_finalize);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  return b;
}

/* [-0, +1, e] m:save() -> string */
static int l_save(lua_State *L) {
  oa_model *m = oa__lua_checkmodel(L, 1)->m;
  if (!m->ops->save)
    return luaL_error(L, "save: this %s model has no save function", m->ops->kind);
  oa_buf *b = newbuf(L);
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = oa_model_save(m, b, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, "save", &err);
  lua_pushlstring(L, (const char *)b->data, b->len);
  return 1;
}

/* [-0, +0, e] m:load(s): replace the state from m:save() output of a model of the same
 * kind and shape */
static int l_load(lua_State *L) {
  oa_model *m = oa__lua_checkmodel(L, 1)->m;
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  if (!m->ops->load)
    return luaL_error(L, "load: this %s model has no load function", m->ops->kind);
  oa_reader r;
  oa_reader_init(&r, s, len);
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = oa_model_load(m, &r, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, "load", &err);
  return 0;
}

/* [-0, +0, e] m:set(name, v) */
static int l_set(lua_State *L) {
  oa_model *m = oa__lua_checkmodel(L, 1)->m;
  const char *name = luaL_checkstring(L, 2);
  double v = luaL_checknumber(L, 3);
  if (!isfinite(v)) luaL_argerror(L, 3, "must be a finite number");
  if (!m->ops->set_param)
    return luaL_error(L, "set: the %s model has no settable parameters", m->ops->kind);
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = m->ops->set_param(m, name, v, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, "set", &err);
  return 0;
}

/* [-0, +1, e] m:get(name) */
static int l_get(lua_State *L) {
  oa_model *m = oa__lua_checkmodel(L, 1)->m;
  const char *name = luaL_checkstring(L, 2);
  if (!m->ops->get_param)
    return luaL_error(L, "get: the %s model has no readable parameters", m->ops->kind);
  double v;
  oa_error err = {0};
  lua_State *prev = oa__lua_enter(L);
  int rc = m->ops->get_param(m, name, &v, &err);
  oa__lua_leave(prev);
  if (rc) return oa__lua_fail(L, "get", &err);
  lua_pushnumber(L, v);
  return 1;
}

/* [-0, +1, m] tostring(m) */
static int m_tostring(lua_State *L) {
  oa_lua_model *m = luaL_checkudata(L, 1, OA_LUA_MODEL);
  if (m->state == OA_LM_OWNED || m->state == OA_LM_POLICY)
    lua_pushfstring(L, "model %s dim=%d%s", m->m->ops->kind, (int)m->m->dim,
                    m->state == OA_LM_POLICY ? " (in a policy)" : "");
  else
    lua_pushstring(L, m->state == OA_LM_GONE ? "model (gone)" : "model (closed)");
  return 1;
}

static const luaL_Reg model_methods[] = {
    {"kind", l_kind}, {"dim", l_dim},     {"arms", l_arms},     {"updates", l_updates},
    {"size", l_size}, {"score", l_score}, {"update", l_update}, {"save", l_save},
    {"load", l_load}, {"set", l_set},     {"get", l_get},       {"close", m_finalize},
    {NULL, NULL}};

static const luaL_Reg model_meta[] = {{"__index", NULL},
                                      {"__tostring", m_tostring},
                                      {"__gc", m_finalize},
                                      {"__close", m_finalize},
                                      {NULL, NULL}};

static const luaL_Reg model_constructors[] = {{"ridge", l_ridge},
                                              {"disjoint_ridge", l_disjoint_ridge},
                                              {"logistic", l_logistic},
                                              {"mlp", l_mlp},
                                              {"reinforce", l_reinforce},
                                              {"bernoulli_ts", l_bernoulli_ts},
                                              {"ucb1", l_ucb1},
                                              {"lua", l_lua_model},
                                              {NULL, NULL}};

void oa__lua_open_model(lua_State *L) {
  luaL_newmetatable(L, OA_LUA_MODEL);
  luaL_setfuncs(L, model_meta, 0);
  luaL_newlib(L, model_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, model_constructors);
  lua_setfield(L, -2, "model");
}
