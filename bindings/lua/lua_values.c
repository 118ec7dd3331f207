/* Lua records -> oa_value arrays, by slot of a feature space side.
 *
 * Contexts and actions arrive as Lua tables ({age = 31, interests =
 * {"cats", "cars"}, ...}). The engine wants one oa_value per declared
 * field, in slot order. Conversion rules, by the Lua type of the value:
 *   number -> NUM, boolean -> NUM 0/1, string -> STR,
 *   array of strings -> LIST, map string -> number -> weighted LIST,
 *   array of numbers -> VEC, nil -> NONE (missing).
 * Whether the value fits the field's kind is the feature space's call
 * (oa_features_compile names the field when it does not).
 *
 * Strings and arrays are copied into a per-call arena, a to-be-closed
 * userdata: a script cannot free or mutate them under the engine (a Lua
 * explorer runs in the middle of a decision), and a Lua error anywhere in
 * the call closes the arena, so nothing leaks. */
#include "lua_onearm.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  alignas(max_align_t) unsigned char data[];
} chunk;

struct oa_lua_arena {
  chunk *head;
};

/* [-0, +0, -] __gc and __close: frees every chunk, once. */
static int arena_finalize(lua_State *L) {
  oa_lua_arena *a = luaL_checkudata(L, 1, OA_LUA_ARENA);
  while (a->head) {
    chunk *next = a->head->next;
    free(a->head);
    a->head = next;
  }
  return 0;
}

oa_lua_arena *oa__lua_arena(lua_State *L) {
  oa_lua_arena *a = lua_newuserdatauv(L, sizeof *a, 0);
  a->head = NULL;
  luaL_setmetatable(L, OA_LUA_ARENA);
  lua_toclose(L, -1);
  return a;
}

void *oa__lua_alloc(lua_State *L, oa_lua_arena *a, size_t bytes) {
  bytes = (bytes + 15) & ~(size_t)15;
  if (bytes == 0) bytes = 16;
  chunk *c = a->head;
  if (!c || c->cap - c->used < bytes) {
    size_t cap = bytes > 4096 ? bytes : 4096;
    c = malloc(sizeof *c + cap);
    if (!c) {
      luaL_error(L, "out of memory");
      return NULL;
    }
    c->used = 0;
    c->cap = cap;
    c->next = a->head;
    a->head = c;
  }
  void *p = c->data + c->used;
  c->used += bytes;
  memset(p, 0, bytes);
  return p;
}

static const char *copystr(lua_State *L, oa_lua_arena *a, int idx, size_t *len) {
  const char *s = lua_tolstring(L, idx, len);
  char *d = oa__lua_alloc(L, a, *len + 1);
  memcpy(d, s, *len);
  return d;
}

static int field_error(lua_State *L, const char *what, const char *name,
                       const char *msg) {
  return luaL_error(L, "%s field '%s': %s", what, name, msg);
}

/* An array (t[1] ~= nil): strings -> LIST, numbers -> VEC. */
static void convert_array(lua_State *L, int idx, const char *name, oa_value *v,
                          oa_lua_arena *a, const char *what, lua_Unsigned n) {
  int first = lua_rawgeti(L, idx, 1);
  lua_pop(L, 1);
  if (first == LUA_TSTRING) {
    const char **strs = oa__lua_alloc(L, a, sizeof *strs * n);
    size_t *lens = oa__lua_alloc(L, a, sizeof *lens * n);
    for (lua_Unsigned i = 0; i < n; i++) {
      if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TSTRING)
        field_error(L, what, name,
                    lua_pushfstring(L, "item %d is a %s; a list holds only strings",
                                    (int)i + 1, luaL_typename(L, -1)));
      strs[i] = copystr(L, a, -1, &lens[i]);
      lua_pop(L, 1);
    }
    v->type = OA_VAL_LIST;
    v->count = (int32_t)n;
    v->strs = strs;
    v->lens = lens;
  } else if (first == LUA_TNUMBER) {
    double *vec = oa__lua_alloc(L, a, sizeof *vec * n);
    for (lua_Unsigned i = 0; i < n; i++) {
      if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TNUMBER)
        field_error(L, what, name,
                    lua_pushfstring(L, "item %d is a %s; a vector holds only numbers",
                                    (int)i + 1, luaL_typename(L, -1)));
      vec[i] = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
    v->type = OA_VAL_VEC;
    v->count = (int32_t)n;
    v->vec = vec;
  } else {
    field_error(L, what, name,
                "an array must hold strings (a set) or numbers (a dense vector)");
  }
}

/* A map string -> weight: a weighted LIST. */
static void convert_map(lua_State *L, int idx, const char *name, int dense, oa_value *v,
                        oa_lua_arena *a, const char *what) {
  int32_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TNUMBER)
      field_error(L, what, name,
                  "a table must be an array, or a map from strings to numeric weights");
    n++;
    lua_pop(L, 1);
  }
  const char **strs = oa__lua_alloc(L, a, sizeof *strs * (size_t)n);
  size_t *lens = oa__lua_alloc(L, a, sizeof *lens * (size_t)n);
  double *w = oa__lua_alloc(L, a, sizeof *w * (size_t)n);
  int32_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) { /* same table, same n: no Lua code ran in between */
    strs[i] = copystr(L, a, -2, &lens[i]);
    w[i] = lua_tonumber(L, -1);
    i++;
    lua_pop(L, 1);
  }
  if (dense && n == 0) {
    v->type = OA_VAL_VEC;
    v->count = 0;
    return;
  }
  v->type = OA_VAL_LIST;
  v->count = n;
  v->strs = strs;
  v->lens = lens;
  v->weights = w;
}

/* `dense`: the field is a dense vector, so an empty table is an empty
 * vector rather than an empty set. */
static void convert(lua_State *L, int idx, const char *name, int dense, oa_value *v,
                    oa_lua_arena *a, const char *what) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    v->type = OA_VAL_NONE;
    return;
  case LUA_TNUMBER:
    v->type = OA_VAL_NUM;
    v->num = lua_tonumber(L, idx);
    return;
  case LUA_TBOOLEAN:
    v->type = OA_VAL_NUM;
    v->num = lua_toboolean(L, idx) ? 1.0 : 0.0;
    return;
  case LUA_TSTRING:
    v->type = OA_VAL_STR;
    v->str = copystr(L, a, idx, &v->len);
    return;
  case LUA_TTABLE: {
    lua_Unsigned n = lua_rawlen(L, idx);
    if (n > (lua_Unsigned)INT32_MAX / 8) field_error(L, what, name, "too many items");
    if (n > 0)
      convert_array(L, idx, name, v, a, what, n);
    else
      convert_map(L, idx, name, dense, v, a, what);
    return;
  }
  default:
    field_error(L, what, name,
                lua_pushfstring(L, "expected a number, string, boolean or table, got %s",
                                luaL_typename(L, idx)));
  }
}

oa_value *oa__lua_tovalues(lua_State *L, int idx, const oa_features *fs, oa_side side,
                           oa_lua_arena *a, const char *what) {
  idx = lua_absindex(L, idx);
  int32_t n = oa_features_nfields(fs, side);
  oa_value *values = oa__lua_alloc(L, a, sizeof *values * (size_t)(n + 1));
  if (lua_isnoneornil(L, idx)) return values;
  if (!lua_istable(L, idx))
    luaL_error(L, "%s must be a table of fields, got %s", what, luaL_typename(L, idx));
  luaL_checkstack(L, 8, "record conversion");
  for (int32_t s = 0; s < n; s++) {
    const oa_field_spec *f = oa_features_field(fs, side, s);
    lua_getfield(L, idx, f->name);
    convert(L, -1, f->name, f->kind == OA_FK_DENSE, &values[s], a, what);
    lua_pop(L, 1);
  }
  return values;
}

oa_field *oa__lua_tofields(lua_State *L, int idx, oa_lua_arena *a, const char *what,
                           int32_t *n) {
  idx = lua_absindex(L, idx);
  *n = 0;
  if (lua_isnoneornil(L, idx)) return oa__lua_alloc(L, a, sizeof(oa_field));
  if (!lua_istable(L, idx))
    luaL_error(L, "%s must be a table of fields, got %s", what, luaL_typename(L, idx));
  int32_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: field names must be strings, got %s", what,
                 luaL_typename(L, -1));
    count++;
  }
  oa_field *fields = oa__lua_alloc(L, a, sizeof *fields * (size_t)(count + 1));
  luaL_checkstack(L, 8, "record conversion");
  lua_pushnil(L);
  while (lua_next(L, idx)) { /* same table, same keys: nothing ran in between */
    size_t len;
    const char *name = lua_tolstring(L, -2, &len);
    char *copy = oa__lua_alloc(L, a, len + 1);
    memcpy(copy, name, len);
    fields[*n].name = copy;
    convert(L, -1, copy, 0, &fields[*n].value, a, what);
    (*n)++;
    lua_pop(L, 1);
  }
  return fields;
}

static void pushvalue(lua_State *L, const oa_value *v) {
  switch (v->type) {
  case OA_VAL_NUM:
    lua_pushnumber(L, v->num);
    break;
  case OA_VAL_STR:
    lua_pushlstring(L, v->str, v->len);
    break;
  case OA_VAL_LIST:
    lua_createtable(L, v->weights ? 0 : v->count, v->weights ? v->count : 0);
    for (int32_t i = 0; i < v->count; i++) {
      lua_pushlstring(L, v->strs[i], v->lens ? v->lens[i] : strlen(v->strs[i]));
      if (v->weights) {
        lua_pushnumber(L, v->weights[i]);
        lua_rawset(L, -3);
      } else {
        lua_rawseti(L, -2, i + 1);
      }
    }
    break;
  case OA_VAL_VEC:
    lua_createtable(L, v->count, 0);
    for (int32_t i = 0; i < v->count; i++) {
      lua_pushnumber(L, v->vec[i]);
      lua_rawseti(L, -2, i + 1);
    }
    break;
  default:
    lua_pushnil(L);
  }
}

void oa__lua_pushvalues(lua_State *L, const oa_features *fs, oa_side side,
                        const oa_value *values) {
  int32_t n = oa_features_nfields(fs, side);
  lua_createtable(L, 0, n);
  if (!values) return;
  for (int32_t s = 0; s < n; s++) {
    if (values[s].type == OA_VAL_NONE) continue;
    pushvalue(L, &values[s]);
    lua_setfield(L, -2, oa_features_field(fs, side, s)->name);
  }
}

static const luaL_Reg arena_meta[] = {
    {"__gc", arena_finalize}, {"__close", arena_finalize}, {NULL, NULL}};

void oa__lua_open_values(lua_State *L) {
  luaL_newmetatable(L, OA_LUA_ARENA);
  luaL_setfuncs(L, arena_meta, 0);
  lua_pop(L, 1);
}
