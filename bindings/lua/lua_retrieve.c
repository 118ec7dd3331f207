/* Two-stage ranking for Lua (runtime/retrieval.h): eng:set_retrieval,
 * eng:retrieve, eng:build_index, eng:retrieval_stats, and the `retrieve`
 * option of eng:decide (parsed here by oa__lua_retrieve_request).
 *
 * A retrieve table: {n=, mode="exact"|"approximate", nprobe=, query=,
 * filters={field = value | {values} | {lo, hi} | {min=, max=}},
 * exclude={ids}, fresh_share=}. `query` is a list of numbers or a function
 * called with the request's context that returns one (the app's Lua query
 * hook). Filters read the store's declared metadata: on a categorical
 * field a string means equal and a list means one of; on a numeric field a
 * number means equal and {lo, hi} or {min=, max=} an inclusive range (a
 * missing side is open). */
#include "lua_retrieve.h"

#include <math.h>
#include <string.h>

#include "core/error.h"
#include "runtime/retrieval.h"
#include "server/catalog_file.h"

static int mode_of(lua_State *L, int idx, const char *fn, const char *key) {
  const char *s = lua_tostring(L, idx);
  if (lua_type(L, idx) != LUA_TSTRING || (strcmp(s, "exact") && strcmp(s, "approximate")))
    return luaL_error(L, "%s: '%s' must be \"exact\" or \"approximate\"", fn, key);
  return !strcmp(s, "exact") ? OA_RETRIEVE_EXACT : OA_RETRIEVE_APPROX;
}

static const char *arena_str(lua_State *L, oa_lua_arena *a, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  char *c = oa__lua_alloc(L, a, len + 1);
  memcpy(c, s, len);
  return c;
}

/* A list of numbers at idx into dim floats (arena); *n gets the length. */
static float *tofloats(lua_State *L, int idx, oa_lua_arena *a, const char *fn,
                       int32_t *n) {
  lua_Integer len = luaL_len(L, idx);
  if (len < 1 || len > 65536)
    luaL_error(L, "%s: the retrieval query must be a list of 1 to 65536 numbers", fn);
  float *q = oa__lua_alloc(L, a, sizeof(float) * (size_t)len);
  for (lua_Integer i = 1; i <= len; i++) {
    lua_geti(L, idx, i);
    int ok;
    lua_Number v = lua_tonumberx(L, -1, &ok);
    if (!ok || !isfinite(v) || !isfinite((float)v))
      luaL_error(L, "%s: query[%d] must be a finite number", fn, (int)i);
    q[i - 1] = (float)v;
    lua_pop(L, 1);
  }
  *n = (int32_t)len;
  return q;
}

static oa_filter_spec *tofilter(lua_State *L, int t, const oa_vecstore *vs,
                                oa_lua_arena *a, const char *fn) {
  oa_filter_spec *spec = oa__lua_alloc(L, a, sizeof *spec);
  if (lua_getfield(L, t, "exclude") != LUA_TNIL) {
    if (!lua_istable(L, -1)) luaL_error(L, "%s: 'exclude' must be a list of ids", fn);
    lua_Integer n = luaL_len(L, -1);
    const char **ids = oa__lua_alloc(L, a, sizeof(char *) * (size_t)(n + 1));
    for (lua_Integer i = 1; i <= n; i++) {
      lua_geti(L, -1, i);
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: exclude[%d] must be an id", fn, (int)i);
      ids[i - 1] = arena_str(L, a, -1);
      lua_pop(L, 1);
    }
    spec->exclude_ids = ids;
    spec->n_exclude = n;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, t, "filters") != LUA_TNIL) {
    if (!lua_istable(L, -1))
      luaL_error(L, "%s: 'filters' must be a table field = value", fn);
    int ft = lua_gettop(L);
    int32_t cap = 0;
    lua_pushnil(L);
    while (lua_next(L, ft)) {
      cap++;
      lua_pop(L, 1);
    }
    oa_filter_pred *preds = oa__lua_alloc(L, a, sizeof *preds * (size_t)(cap + 1));
    int32_t np = 0;
    const oa_vecstore_config *vc = oa_vecstore_config_of(vs);
    lua_pushnil(L);
    while (lua_next(L, ft)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "%s: filter keys must be field names", fn);
      const char *name = arena_str(L, a, -2);
      int32_t f = oa_vecstore_meta_field(vs, name);
      if (f < 0)
        luaL_error(L,
                   "%s: filter on '%s': not a declared retrieval field (retrieve.meta)",
                   fn, name);
      oa_filter_pred *pr = &preds[np++];
      pr->field = name;
      int vt = lua_type(L, -1);
      if (vc->meta[f].kind == OA_META_CAT) {
        if (vt == LUA_TSTRING) {
          pr->op = OA_PRED_EQ;
          pr->value = arena_str(L, a, -1);
        } else if (vt == LUA_TTABLE) {
          lua_Integer n = luaL_len(L, -1);
          const char **vals = oa__lua_alloc(L, a, sizeof(char *) * (size_t)(n + 1));
          for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, -1, i);
            if (lua_type(L, -1) != LUA_TSTRING)
              luaL_error(L, "%s: filter on '%s': values must be strings", fn, name);
            vals[i - 1] = arena_str(L, a, -1);
            lua_pop(L, 1);
          }
          pr->op = OA_PRED_IN;
          pr->values = vals;
          pr->n_values = (int32_t)n;
        } else {
          luaL_error(L, "%s: filter on '%s': a string or a list of strings", fn, name);
        }
      } else {
        pr->op = OA_PRED_RANGE;
        pr->lo = -INFINITY, pr->hi = INFINITY;
        if (vt == LUA_TNUMBER) {
          pr->lo = pr->hi = lua_tonumber(L, -1);
        } else if (vt == LUA_TTABLE) {
          const char *keys[2][2] = {{"min", NULL}, {"max", NULL}};
          double *side[2] = {&pr->lo, &pr->hi};
          for (int k = 0; k < 2; k++) {
            int ty = lua_geti(L, -1, k + 1);
            if (ty == LUA_TNIL) {
              lua_pop(L, 1);
              ty = lua_getfield(L, -1, keys[k][0]);
            }
            if (ty == LUA_TNUMBER)
              *side[k] = lua_tonumber(L, -1);
            else if (ty != LUA_TNIL)
              luaL_error(L, "%s: filter on '%s': bounds must be numbers", fn, name);
            lua_pop(L, 1);
          }
        } else {
          luaL_error(L, "%s: filter on '%s': a number, {lo, hi} or {min=, max=}", fn,
                     name);
        }
        if (isnan(pr->lo) || isnan(pr->hi))
          luaL_error(L, "%s: filter on '%s': bounds must not be NaN", fn, name);
      }
      lua_pop(L, 1);
    }
    spec->preds = preds;
    spec->n_preds = np;
  }
  lua_pop(L, 1);
  return spec;
}

oa_retrieve_request *oa__lua_retrieve_request(lua_State *L, int idx, int ctx_idx,
                                              oa_engine *e, oa_lua_arena *a,
                                              const char *fn) {
  idx = lua_absindex(L, idx);
  ctx_idx = lua_absindex(L, ctx_idx);
  const oa_retrieval_config *cfg = oa_engine_retrieval_config(e);
  if (!cfg)
    luaL_error(L,
               "%s: retrieval is not configured (eng:set_retrieval{...} or the app's "
               "retrieve = {...})",
               fn);
  if (!lua_istable(L, idx)) luaL_error(L, "%s: 'retrieve' must be a table", fn);
  static const char *const keys[] = {"n",       "mode",    "nprobe",      "query",
                                     "filters", "exclude", "fresh_share", NULL};
  oa__lua_checkkeys(L, idx, fn, keys);
  oa_retrieve_request *rq = oa__lua_alloc(L, a, sizeof *rq);
  rq->n = cfg->n;
  rq->mode = cfg->mode;
  rq->fresh_share = -1;
  if (lua_getfield(L, idx, "n") != LUA_TNIL) {
    if (!lua_isinteger(L, -1)) luaL_error(L, "%s: retrieve.n must be an integer", fn);
    lua_Integer n = lua_tointeger(L, -1);
    rq->n = n < 0 ? 0 : n > OA_MAX_CANDIDATES + 1 ? OA_MAX_CANDIDATES + 1 : (int32_t)n;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "mode") != LUA_TNIL)
    rq->mode = (oa_retrieve_mode)mode_of(L, -1, fn, "retrieve.mode");
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "nprobe") != LUA_TNIL) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1)
      luaL_error(L, "%s: retrieve.nprobe must be an integer >= 1", fn);
    rq->nprobe = (int32_t)lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "fresh_share") != LUA_TNIL) {
    if (!lua_isnumber(L, -1))
      luaL_error(L, "%s: retrieve.fresh_share must be a number", fn);
    rq->fresh_share = lua_tonumber(L, -1);
    if (!(rq->fresh_share >= 0 && rq->fresh_share < 1))
      luaL_error(L, "%s: retrieve.fresh_share must be in [0, 1)", fn);
  }
  lua_pop(L, 1);
  int qt = lua_getfield(L, idx, "query");
  if (qt == LUA_TFUNCTION) { /* the app's query hook: query(context) -> vector */
    lua_pushvalue(L, ctx_idx);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1))
      luaL_error(L, "%s: the query function must return a list of numbers", fn);
    qt = LUA_TTABLE;
  }
  if (qt == LUA_TTABLE) {
    rq->query = tofloats(L, -1, a, fn, &rq->query_dim);
  } else if (qt != LUA_TNIL) {
    luaL_error(L, "%s: retrieve.query must be a list of numbers or a function", fn);
  }
  lua_pop(L, 1);
  int has_filter = lua_getfield(L, idx, "filters") != LUA_TNIL;
  has_filter |= lua_getfield(L, idx, "exclude") != LUA_TNIL;
  lua_pop(L, 2);
  if (has_filter) rq->filter = tofilter(L, idx, oa_engine_retrieval_store(e), a, fn);
  return rq;
}

/* [-0, +0, e] eng:set_retrieval{field=, dim=, format="f32"|"f16"|"i8",
 * meta={name = "cat"|"num"}, query=<context field>, n=, mode=, nprobe=,
 * fresh_share=, build_at=<rows>, index="f32"|"i8", rebuild_staleness=} */
int oa__lua_set_retrieval(lua_State *L) {
  const char *fn = "set_retrieval";
  oa_engine *e = oa_lua_check_engine(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  static const char *const keys[] = {
      "field", "dim",    "format",      "meta",     "query", "n",
      "mode",  "nprobe", "fresh_share", "build_at", "index", "rebuild_staleness",
      NULL};
  oa__lua_checkkeys(L, 2, fn, keys);
  oa_retrieval_config cfg;
  memset(&cfg, 0, sizeof cfg);
  lua_getfield(L, 2, "field");
  cfg.field = luaL_optstring(L, -1, NULL);
  if (!cfg.field)
    return luaL_error(L, "%s: 'field' (the action embedding) is required", fn);
  lua_getfield(L, 2, "dim");
  if (!lua_isinteger(L, -1)) return luaL_error(L, "%s: 'dim' must be an integer", fn);
  cfg.dim = (int32_t)lua_tointeger(L, -1);
  if (lua_getfield(L, 2, "format") != LUA_TNIL &&
      oa_vec_format_parse(lua_tostring(L, -1), &cfg.format))
    return luaL_error(L, "%s: 'format' must be f32, f16 or i8", fn);
  if (lua_getfield(L, 2, "query") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "%s: 'query' must be a context field name", fn);
    cfg.query_field = lua_tostring(L, -1);
  }
  if (lua_getfield(L, 2, "meta") != LUA_TNIL) {
    if (!lua_istable(L, -1)) return luaL_error(L, "%s: 'meta' must be {name = kind}", fn);
    int mt = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, mt)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      if (!k || strlen(k) >= sizeof cfg.meta[0].name ||
          (strcmp(v, "cat") && strcmp(v, "num")))
        return luaL_error(L, "%s: 'meta' entries are name = \"cat\" | \"num\"", fn);
      if (cfg.n_meta >= OA_VEC_MAX_META)
        return luaL_error(L, "%s: at most %d meta fields", fn, OA_VEC_MAX_META);
      /* Sorted by name below, so the store does not depend on table order. */
      int32_t at = cfg.n_meta++;
      while (at > 0 && strcmp(cfg.meta[at - 1].name, k) > 0) {
        cfg.meta[at] = cfg.meta[at - 1];
        at--;
      }
      snprintf(cfg.meta[at].name, sizeof cfg.meta[at].name, "%s", k);
      cfg.meta[at].kind = !strcmp(v, "cat") ? OA_META_CAT : OA_META_NUM;
      lua_pop(L, 1);
    }
  }
  if (lua_getfield(L, 2, "n") != LUA_TNIL) cfg.n = (int32_t)luaL_checkinteger(L, -1);
  if (lua_getfield(L, 2, "mode") != LUA_TNIL) cfg.mode = mode_of(L, -1, fn, "mode");
  if (lua_getfield(L, 2, "nprobe") != LUA_TNIL)
    cfg.nprobe = (int32_t)luaL_checkinteger(L, -1);
  if (lua_getfield(L, 2, "fresh_share") != LUA_TNIL)
    cfg.fresh_share = luaL_checknumber(L, -1);
  if (lua_getfield(L, 2, "build_at") != LUA_TNIL)
    cfg.build_at_rows = (int64_t)luaL_checkinteger(L, -1);
  if (lua_getfield(L, 2, "rebuild_staleness") != LUA_TNIL)
    cfg.rebuild_staleness = luaL_checknumber(L, -1);
  if (lua_getfield(L, 2, "index") != LUA_TNIL) {
    const char *s = lua_tostring(L, -1);
    if (!s || (strcmp(s, "f32") && strcmp(s, "i8")))
      return luaL_error(L, "%s: 'index' must be f32 or i8", fn);
    cfg.ivf_storage = !strcmp(s, "i8") ? OA_IVF_I8 : OA_IVF_F32;
  }
  oa_error err = {0};
  if (oa_engine_set_retrieval(e, &cfg, &err)) return oa__lua_fail(L, fn, &err);
  return 0;
}

static oa_policy *policy_arg(lua_State *L, oa_engine *e, int idx, const char *fn) {
  const char *name = luaL_checkstring(L, idx);
  oa_policy *p = oa_engine_policy(e, name);
  if (!p) luaL_error(L, "%s: unknown policy '%s'", fn, name);
  return p;
}

/* [-0, +1, e] eng:retrieve(policy, context, retrieve) -> {ids=, scores=, fresh=,
 * source=}: the shortlist alone (no decision, nothing counted as shown). */
int oa__lua_retrieve(lua_State *L) {
  const char *fn = "retrieve";
  lua_settop(L, 4);
  oa_engine *e = oa_lua_check_engine(L, 1);
  oa_policy *p = policy_arg(L, e, 2, fn);
  oa_lua_arena *a = oa__lua_arena(L);
  const oa_value *ctx = oa__lua_tovalues(L, 3, oa_policy_features(p), OA_SIDE_CONTEXT, a,
                                         "retrieve: context");
  oa_retrieve_request *rq = oa__lua_retrieve_request(L, 4, 3, e, a, fn);
  oa_shortlist sl;
  oa_error err = {0};
  if (oa_engine_retrieve(e, p, rq, ctx, 0, &sl, &err)) return oa__lua_fail(L, fn, &err);
  lua_createtable(L, 0, 4);
  lua_createtable(L, sl.n, 0);
  for (int32_t i = 0; i < sl.n; i++) {
    lua_pushlstring(L, sl.ids[i], sl.lens[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "ids");
  lua_createtable(L, sl.n, 0);
  for (int32_t i = 0; i < sl.n; i++) {
    lua_pushnumber(L, sl.scores[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "scores");
  lua_pushinteger(L, sl.fresh);
  lua_setfield(L, -2, "fresh");
  lua_pushstring(L, sl.query_source);
  lua_setfield(L, -2, "source");
  return 1;
}

/* [-0, +0, e] eng:build_index(): the approximate index, now. */
int oa__lua_build_index(lua_State *L) {
  oa_engine *e = oa_lua_check_engine(L, 1);
  oa_error err = {0};
  if (oa_engine_retrieval_build_index(e, &err))
    return oa__lua_fail(L, "build_index", &err);
  return 0;
}

/* [-0, +1, e] eng:load_catalog(path) -> rows: a catalog file (CSV or a
 * vector file; server/catalog_file.h), checked whole before any change. */
int oa__lua_load_catalog(lua_State *L) {
  oa_engine *e = oa_lua_check_engine(L, 1);
  const char *path = luaL_checkstring(L, 2);
  int64_t before = oa_catalog_count(oa_engine_catalog(e));
  oa_error err = {0};
  if (oa_catalog_file_load(e, path, NULL, NULL, &err))
    return oa__lua_fail(L, "load_catalog", &err);
  lua_pushinteger(L, (lua_Integer)(oa_catalog_count(oa_engine_catalog(e)) - before));
  return 1;
}

/* [-0, +1, e] eng:retrieval_stats() -> table, or nil when retrieval is off. */
int oa__lua_retrieval_stats(lua_State *L) {
  oa_engine *e = oa_lua_check_engine(L, 1);
  oa_retrieval_stats s = oa_engine_retrieval_stats(e);
  if (!s.configured) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 12);
#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))
#define SETN(k, v) (lua_pushnumber(L, (v)), lua_setfield(L, -2, k))
  SETI("rows", s.rows);
  SETI("live", s.live);
  SETI("exact", s.exact);
  SETI("approximate", s.approx);
  SETI("fresh_picks", s.fresh_picks);
  SETI("refused", s.refused);
  SETN("exact_seconds", s.exact_seconds);
  SETN("approximate_seconds", s.approx_seconds);
  lua_pushboolean(L, s.index_built);
  lua_setfield(L, -2, "index_built");
  SETI("nlist", s.nlist);
  SETN("staleness", s.staleness);
  SETI("builds", s.builds);
  SETN("recall", s.recall);
  SETI("recall_queries", s.recall_queries);
#undef SETI
#undef SETN
  return 1;
}
