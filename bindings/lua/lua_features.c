/* Feature spaces for Lua: `oa.features{...}` compiles a declarative table
 * into an oa_features (core/features.h) held by an `onearm.features`
 * userdata. Lua tables have no order, so fields are sorted by name within
 * each side: the same declaration always compiles to the same space (and
 * the same digest). Unknown keys are errors, so a typo in a declaration
 * fails loudly instead of silently dropping a feature. */
#include "lua_onearm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

oa_lua_features *oa__lua_checkfeatures(lua_State *L, int idx) {
  oa_lua_features *f = luaL_checkudata(L, idx, OA_LUA_FEATURES);
  if (!f->fs) luaL_argerror(L, idx, "feature space is closed");
  return f;
}

/* [-0, +0, -] __gc and __close: release once. */
static int f_finalize(lua_State *L) {
  oa_lua_features *f = luaL_checkudata(L, 1, OA_LUA_FEATURES);
  oa_features_release(f->fs);
  f->fs = NULL;
  return 0;
}

/* "num", "log", "cat", "set", "bag", "dense:N", "cyclic:P" into f. */
static void parse_kind(lua_State *L, const char *where, const char *s, oa_field_spec *f) {
  char *end;
  if (!strcmp(s, "num"))
    f->kind = OA_FK_NUM;
  else if (!strcmp(s, "log"))
    f->kind = OA_FK_NUM, f->log = 1;
  else if (!strcmp(s, "cat"))
    f->kind = OA_FK_CAT;
  else if (!strcmp(s, "set"))
    f->kind = OA_FK_SET;
  else if (!strcmp(s, "bag"))
    f->kind = OA_FK_SET, f->normalize = 1;
  else if (!strcmp(s, "dense"))
    f->kind = OA_FK_DENSE;
  else if (!strcmp(s, "cyclic"))
    f->kind = OA_FK_CYCLIC;
  else if (!strncmp(s, "dense:", 6)) {
    f->kind = OA_FK_DENSE;
    long n = strtol(s + 6, &end, 10);
    if (*end || n <= 0 || n > 1 << 20)
      luaL_error(L, "features: %s: bad length in '%s'", where, s);
    f->length = (int32_t)n;
  } else if (!strncmp(s, "cyclic:", 7)) {
    f->kind = OA_FK_CYCLIC;
    f->period = strtod(s + 7, &end);
    if (*end || !(f->period > 0))
      luaL_error(L, "features: %s: bad period in '%s'", where, s);
  } else {
    luaL_error(L,
               "features: %s: unknown kind '%s' (num, log, cat, set, bag, dense:N, "
               "cyclic:P)",
               where, s);
  }
}

static double optnum(lua_State *L, int idx, const char *key, const char *where,
                     double def) {
  int t = lua_getfield(L, idx, key);
  double v = def;
  if (t == LUA_TNUMBER)
    v = lua_tonumber(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "features: %s: '%s' must be a number, got %s", where, key,
               luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

static int optflag(lua_State *L, int idx, const char *key, int def) {
  int t = lua_getfield(L, idx, key);
  int v = t == LUA_TNIL ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static void check_keys(lua_State *L, int idx, const char *where,
                       const char *const *allowed) {
  char fn[128];
  snprintf(fn, sizeof fn, "features: %s", where);
  oa__lua_checkkeys(L, idx, fn, allowed);
}

/* One field declaration (string or table) at idx. */
static void parse_field(lua_State *L, int idx, const char *name, oa_side side,
                        oa_field_spec *f) {
  char where[96];
  snprintf(where, sizeof where, "%s field '%s'",
           side == OA_SIDE_CONTEXT ? "context" : "action", name);
  memset(f, 0, sizeof *f);
  if (strlen(name) >= sizeof f->name)
    luaL_error(L, "features: %s: names have at most %d bytes", where,
               (int)sizeof f->name - 1);
  strcpy(f->name, name);
  f->side = side;
  f->weight = 1;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    parse_kind(L, where, lua_tostring(L, idx), f);
    return;
  }
  if (!lua_istable(L, idx))
    luaL_error(L, "features: %s: expected a kind string or an options table, got %s",
               where, luaL_typename(L, idx));
  static const char *const allowed[] = {"kind",   "log",    "clip",    "mean",
                                        "std",    "weight", "buckets", "normalize",
                                        "length", "period", NULL};
  check_keys(L, idx, where, allowed);
  if (lua_getfield(L, idx, "kind") != LUA_TSTRING)
    luaL_error(L, "features: %s: 'kind' must be a string", where);
  parse_kind(L, where, lua_tostring(L, -1), f);
  lua_pop(L, 1);
  f->log = optflag(L, idx, "log", f->log);
  f->mean = optnum(L, idx, "mean", where, 0);
  f->std = optnum(L, idx, "std", where, 0);
  f->weight = optnum(L, idx, "weight", where, 1);
  f->buckets = (int32_t)optnum(L, idx, "buckets", where, 0);
  f->normalize = optflag(L, idx, "normalize", f->normalize);
  f->length = (int32_t)optnum(L, idx, "length", where, f->length);
  f->period = optnum(L, idx, "period", where, f->period);
  int t = lua_getfield(L, idx, "clip");
  if (t == LUA_TTABLE) {
    lua_geti(L, -1, 1);
    lua_geti(L, -2, 2);
    if (!lua_isnumber(L, -2) || !lua_isnumber(L, -1) ||
        lua_tonumber(L, -2) > lua_tonumber(L, -1))
      luaL_error(L, "features: %s: 'clip' must be {lo, hi} with lo <= hi", where);
    f->clip = 1;
    f->clip_lo = lua_tonumber(L, -2);
    f->clip_hi = lua_tonumber(L, -1);
    lua_pop(L, 2);
  } else if (t != LUA_TNIL) {
    luaL_error(L, "features: %s: 'clip' must be {lo, hi}", where);
  }
  lua_pop(L, 1);
  if (f->kind == OA_FK_DENSE && f->length <= 0)
    luaL_error(L, "features: %s: a dense field needs a length (\"dense:16\")", where);
  if (f->kind == OA_FK_CYCLIC && !(f->period > 0))
    luaL_error(L, "features: %s: a cyclic field needs a period (\"cyclic:24\")", where);
}

static int cmpname(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Parse one side's table at idx into fields[*n...], sorted by name. The
 * names are collected on the stack top as a Lua table (so that an error
 * cannot leak them) and sorted in C. */
static void parse_side(lua_State *L, int idx, oa_side side, oa_field_spec *fields,
                       int32_t cap, int32_t *n) {
  const char *sname = side == OA_SIDE_CONTEXT ? "context" : "action";
  int t = lua_getfield(L, idx, sname);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (t != LUA_TTABLE) luaL_error(L, "features: '%s' must be a table of fields", sname);
  int side_idx = lua_gettop(L);
  const char *names[256];
  int32_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, side_idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "features: '%s' keys must be field names (strings)", sname);
    if (count >= 256 || *n + count >= cap)
      luaL_error(L, "features: at most %d fields per space", cap);
    names[count++] = lua_tostring(L, -1); /* anchored by the side table */
  }
  qsort(names, (size_t)count, sizeof *names, cmpname);
  for (int32_t i = 0; i < count; i++) {
    lua_getfield(L, side_idx, names[i]);
    parse_field(L, -1, names[i], side, &fields[(*n)++]);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int32_t find_field(const oa_field_spec *fields, int32_t n, const char *name,
                          oa_side side) {
  for (int32_t i = 0; i < n; i++)
    if (fields[i].side == side && !strcmp(fields[i].name, name)) return i;
  return -1;
}

#define MAX_FIELDS 256
#define MAX_CROSS  256

/* A userdata that owns the scratch spec while it is parsed: Lua errors in
 * the middle of a declaration leave nothing to free (it is plain memory in
 * a userdata). */
typedef struct spec_scratch {
  oa_field_spec fields[MAX_FIELDS];
  oa_cross_spec cross[MAX_CROSS];
} spec_scratch;

/* [-0, +1, e] oa.features{dim=, layout=, bias=, seed=, context=, action=, cross=} */
static int l_features(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  static const char *const allowed[] = {"dim",     "layout", "bias",  "seed",
                                        "context", "action", "cross", NULL};
  check_keys(L, 1, "declaration", allowed);
  spec_scratch *sc = lua_newuserdatauv(L, sizeof *sc, 0);
  oa_features_spec spec = {0};
  spec.fields = sc->fields;
  spec.cross = sc->cross;
  lua_getfield(L, 1, "layout");
  const char *layout = luaL_optstring(L, -1, "hashed");
  if (!strcmp(layout, "hashed"))
    spec.layout = OA_LAYOUT_HASHED;
  else if (!strcmp(layout, "concat"))
    spec.layout = OA_LAYOUT_CONCAT;
  else
    luaL_error(L, "features: layout must be \"hashed\" or \"concat\", got '%s'", layout);
  lua_pop(L, 1);
  double dim = optnum(L, 1, "dim", "declaration", 0);
  if (spec.layout == OA_LAYOUT_HASHED &&
      !(dim >= 1 && dim <= (1 << 26) && dim == (int32_t)dim))
    luaL_error(L, "features: 'dim' must be an integer from 1 to %d for a hashed space",
               1 << 26);
  spec.dim = (int32_t)dim;
  spec.bias = optflag(L, 1, "bias", 1);
  lua_getfield(L, 1, "seed");
  if (!lua_isnil(L, -1) && !lua_isinteger(L, -1))
    luaL_error(L, "features: 'seed' must be an integer");
  spec.seed = (uint64_t)lua_tointeger(L, -1);
  lua_pop(L, 1);

  int32_t n = 0;
  parse_side(L, 1, OA_SIDE_CONTEXT, sc->fields, MAX_FIELDS, &n);
  parse_side(L, 1, OA_SIDE_ACTION, sc->fields, MAX_FIELDS, &n);
  spec.n_fields = n;

  int t = lua_getfield(L, 1, "cross");
  if (t == LUA_TTABLE) {
    lua_Integer nc = luaL_len(L, -1);
    if (nc > MAX_CROSS) luaL_error(L, "features: at most %d crosses", MAX_CROSS);
    for (lua_Integer i = 1; i <= nc; i++) {
      if (lua_geti(L, -1, i) != LUA_TTABLE)
        luaL_error(L, "features: cross %d must be {context_field, action_field}", (int)i);
      lua_geti(L, -1, 1);
      lua_geti(L, -2, 2);
      const char *cn = lua_tostring(L, -2), *an = lua_tostring(L, -1);
      if (!cn || !an)
        luaL_error(L, "features: cross %d must be {context_field, action_field}", (int)i);
      int32_t ci = find_field(sc->fields, n, cn, OA_SIDE_CONTEXT);
      int32_t ai = find_field(sc->fields, n, an, OA_SIDE_ACTION);
      if (ci < 0)
        luaL_error(L, "features: cross %d: '%s' is not a context field", (int)i, cn);
      if (ai < 0)
        luaL_error(L, "features: cross %d: '%s' is not an action field", (int)i, an);
      sc->cross[i - 1].context_field = ci;
      sc->cross[i - 1].action_field = ai;
      sc->cross[i - 1].buckets = (int32_t)optnum(L, -3, "buckets", "cross", 0);
      lua_pop(L, 3);
    }
    spec.n_cross = (int32_t)nc;
  } else if (t != LUA_TNIL) {
    luaL_error(L, "features: 'cross' must be a list of {context_field, action_field}");
  }
  lua_pop(L, 1);

  oa_lua_features *f = lua_newuserdatauv(L, sizeof *f, 0);
  f->fs = NULL;
  luaL_setmetatable(L, OA_LUA_FEATURES);
  oa_error err = {0};
  f->fs = oa_features_new(&spec, &err);
  if (!f->fs) return oa__lua_fail(L, "features", &err);
  return 1;
}

/* [-0, +1, -] fs:dim() */
static int l_dim(lua_State *L) {
  lua_pushinteger(L, oa_features_dim(oa__lua_checkfeatures(L, 1)->fs));
  return 1;
}

static oa_side checkside(lua_State *L, int idx) {
  static const char *const sides[] = {"context", "action", NULL};
  return luaL_checkoption(L, idx, NULL, sides) == 0 ? OA_SIDE_CONTEXT : OA_SIDE_ACTION;
}

/* [-0, +1, m] fs:fields(side) -> list of {name=, kind= [, length=, period=]} in slot
 * order */
static int l_fields(lua_State *L) {
  oa_features *fs = oa__lua_checkfeatures(L, 1)->fs;
  oa_side side = checkside(L, 2);
  int32_t n = oa_features_nfields(fs, side);
  lua_createtable(L, n, 0);
  for (int32_t i = 0; i < n; i++) {
    const oa_field_spec *f = oa_features_field(fs, side, i);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, f->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, oa_field_kind_name(f->kind));
    lua_setfield(L, -2, "kind");
    if (f->kind == OA_FK_DENSE) {
      lua_pushinteger(L, f->length);
      lua_setfield(L, -2, "length");
    } else if (f->kind == OA_FK_CYCLIC) {
      lua_pushnumber(L, f->period);
      lua_setfield(L, -2, "period");
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* [-0, +1, e] fs:encode(context [, action]) -> 1 x dim tensor φ(x, a) */
static int l_encode(lua_State *L) {
  lua_settop(L, 3); /* the arena goes above every optional argument */
  oa_features *fs = oa__lua_checkfeatures(L, 1)->fs;
  oa_lua_arena *a = oa__lua_arena(L);
  oa_value *cv = oa__lua_tovalues(L, 2, fs, OA_SIDE_CONTEXT, a, "encode: context");
  oa_value *av = lua_isnoneornil(L, 3)
                     ? NULL
                     : oa__lua_tovalues(L, 3, fs, OA_SIDE_ACTION, a, "encode: action");
  oa_lua_tensor *t = oa__lua_newtensor(L, OA_F64, 1, oa_features_dim(fs));
  oa_fpart *cp = oa_fpart_new(), *ap = av ? oa_fpart_new() : NULL;
  oa_error err = {0};
  int rc = 0;
  if (!cp || (av && !ap)) rc = oa_error_set(&err, OA_ENOMEM, "out of memory");
  if (!rc) {
    rc = oa_features_compile(fs, OA_SIDE_CONTEXT, cv, cp, &err);
    if (rc) oa_error_prefix(&err, "context");
  }
  if (!rc && av) {
    rc = oa_features_compile(fs, OA_SIDE_ACTION, av, ap, &err);
    if (rc) oa_error_prefix(&err, "action");
  }
  if (!rc) oa_features_join(fs, cp, ap, t->t.data);
  oa_fpart_free(cp);
  oa_fpart_free(ap);
  if (rc) return oa__lua_fail(L, "encode", &err);
  return 1;
}

/* [-0, +1, m] fs:digest() -> 16 hex digits */
static int l_digest(lua_State *L) {
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx",
           (unsigned long long)oa_features_digest(oa__lua_checkfeatures(L, 1)->fs));
  lua_pushstring(L, hex);
  return 1;
}

/* [-0, +1, m] tostring(fs) */
static int f_tostring(lua_State *L) {
  oa_lua_features *f = luaL_checkudata(L, 1, OA_LUA_FEATURES);
  if (!f->fs)
    lua_pushliteral(L, "features (closed)");
  else
    lua_pushfstring(L, "features dim=%d (%d context, %d action fields)",
                    (int)oa_features_dim(f->fs),
                    (int)oa_features_nfields(f->fs, OA_SIDE_CONTEXT),
                    (int)oa_features_nfields(f->fs, OA_SIDE_ACTION));
  return 1;
}

static const luaL_Reg features_methods[] = {{"dim", l_dim},        {"fields", l_fields},
                                            {"encode", l_encode},  {"digest", l_digest},
                                            {"close", f_finalize}, {NULL, NULL}};

static const luaL_Reg features_meta[] = {{"__index", NULL},
                                         {"__tostring", f_tostring},
                                         {"__gc", f_finalize},
                                         {"__close", f_finalize},
                                         {NULL, NULL}};

void oa__lua_open_features(lua_State *L) {
  luaL_newmetatable(L, OA_LUA_FEATURES);
  luaL_setfuncs(L, features_meta, 0);
  luaL_newlib(L, features_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_features);
  lua_setfield(L, -2, "features");
}
