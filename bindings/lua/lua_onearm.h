/* Private interface between the files of the `onearm.core` Lua module.
 *
 * The module is split by type (tensor, features, model, engine, values);
 * each file registers its metatable from module.c and exposes here only
 * what another file needs: the userdata layouts, "check" helpers that
 * validate a receiver, and the per-call scratch arena used to convert Lua
 * tables into oa_value records without leaking on a Lua error. */
#ifndef ONEARM_LUA_ONEARM_H
#define ONEARM_LUA_ONEARM_H

#include <lauxlib.h>
#include <lua.h>

#include "core/features.h"
#include "core/tensor.h"
#include "models/model.h"
#include "onearm.h"

#define OA_LUA_TENSOR   "onearm.tensor"
#define OA_LUA_FEATURES "onearm.features"
#define OA_LUA_MODEL    "onearm.model"
#define OA_LUA_ENGINE   "onearm.engine"
#define OA_LUA_ARENA    "onearm.arena"
#define OA_LUA_EXPLORER "onearm.explorer"

/* ---- module registration (one per file) ---- */
void oa__lua_open_tensor(lua_State *L);   /* [-0, +0, e] fills the module table at -1 */
void oa__lua_open_features(lua_State *L); /* [-0, +0, e] */
void oa__lua_open_model(lua_State *L);    /* [-0, +0, e] */
void oa__lua_open_engine(lua_State *L);   /* [-0, +0, e] */
void oa__lua_open_values(lua_State *L);   /* [-0, +0, e] */

/* Options tables ({dim = 8, lambda = 1}): `fn` names the calling function
 * in errors. checkkeys rejects a key not in `allowed` (NULL-terminated) so
 * a typo fails loudly; the getters raise on a value of the wrong type. */
void oa__lua_checkkeys(lua_State *L, int idx, const char *fn, const char *const *allowed);
double oa__lua_optnumber(lua_State *L, int idx, const char *fn, const char *key,
                         double def);
lua_Integer oa__lua_optint(lua_State *L, int idx, const char *fn, const char *key,
                           lua_Integer def, lua_Integer min, lua_Integer max);
int oa__lua_optbool(lua_State *L, int idx, const char *fn, const char *key, int def);

/* Raise a Lua error from an oa_error, prefixed with the calling function's
 * name ("decide: policy 'x': ..."). Never returns. */
int oa__lua_fail(lua_State *L, const char *fn, const oa_error *err);

/* ---- tensors ---- */

/* States of a tensor userdata. A tensor is created CLOSED (no storage) and
 * then filled; the finalizer (__gc and __close) returns it to CLOSED. A
 * BORROWED tensor views memory owned by C (a model's input rows during a
 * Lua callback); it is marked DEAD when the callback returns so that a
 * reference kept by the script errors instead of reading freed memory. */
enum { OA_LT_CLOSED = 0, OA_LT_OWNING, OA_LT_VIEW, OA_LT_BORROWED, OA_LT_DEAD };

typedef struct oa_lua_tensor {
  oa_tensor t; /* header; t.data is owned only in OWNING state */
  int state;
  int readonly;               /* 1: the storage belongs to C and must not change */
  struct oa_lua_tensor *root; /* the tensor owning (or borrowing) the storage; a
                                 view keeps its root alive through its uservalue */
} oa_lua_tensor;

/* [-0, +0, v] the tensor at idx, checked alive (its root not closed/dead). */
oa_lua_tensor *oa__lua_checktensor(lua_State *L, int idx);
/* [-0, +1, m] a new owning rows x cols tensor (zeroed). */
oa_lua_tensor *oa__lua_newtensor(lua_State *L, oa_dtype dtype, int64_t rows,
                                 int64_t cols);
/* [-0, +1, m] a read-only tensor over C memory, valid until oa__lua_kill. */
oa_lua_tensor *oa__lua_borrowtensor(lua_State *L, const double *data, int64_t rows,
                                    int64_t cols, int64_t stride);
/* Mark a tensor handed to a callback dead (its views die with it); owned
 * storage, if any, is freed now. */
void oa__lua_kill(oa_lua_tensor *t);
/* [-0, +0, v] n numbers from a tensor (any shape with n elements) or a
 * table of n numbers at idx into out; raises an error naming `what`. */
void oa__lua_tonumbers(lua_State *L, int idx, int64_t n, double *out, const char *what);

/* ---- feature spaces ---- */

typedef struct oa_lua_features {
  oa_features *fs; /* retained; NULL once closed */
} oa_lua_features;

oa_lua_features *oa__lua_checkfeatures(lua_State *L, int idx); /* [-0, +0, v] */

/* ---- scratch arena: per-call memory that a Lua error cannot leak ---- */

typedef struct oa_lua_arena oa_lua_arena;
/* [-0, +1, m] pushes a new arena userdata marked to-be-closed: it is freed
 * when the calling C function returns or when an error unwinds its frame. */
oa_lua_arena *oa__lua_arena(lua_State *L);
/* Zeroed memory from the arena; raises a memory error on failure. */
void *oa__lua_alloc(lua_State *L, oa_lua_arena *a, size_t bytes);

/* [-0, +0, e] Convert the record (a table, or nil for an empty record) at
 * idx into values by slot of one side of fs; strings and arrays are copied
 * into the arena. `what` names the record in errors ("context"). */
oa_value *oa__lua_tovalues(lua_State *L, int idx, const oa_features *fs, oa_side side,
                           oa_lua_arena *a, const char *what);
/* [-0, +0, e] The same rules for a record with no feature space (a
 * catalog action): every string key becomes a field. */
oa_field *oa__lua_tofields(lua_State *L, int idx, oa_lua_arena *a, const char *what,
                           int32_t *n);
/* [-0, +1, m] a table of the named fields of values (the inverse, for
 * Lua explorers). */
void oa__lua_pushvalues(lua_State *L, const oa_features *fs, oa_side side,
                        const oa_value *values);

/* ---- models ---- */

enum { OA_LM_CLOSED = 0, OA_LM_OWNED, OA_LM_POLICY, OA_LM_GONE };

typedef struct oa_lua_model {
  oa_model *m; /* owned in OWNED state, the policy's in POLICY state */
  int state;
} oa_lua_model;

/* [-0, +0, v] a model userdata usable now (OWNED or POLICY). */
oa_lua_model *oa__lua_checkmodel(lua_State *L, int idx);

/* Lua callbacks run on the thread that called into the engine: every
 * binding that can reach a Lua model or explorer records its lua_State
 * here for the duration of the call. */
lua_State *oa__lua_enter(lua_State *L); /* returns the previous state */
void oa__lua_leave(lua_State *prev);
/* The state a callback should run on: the current one if it belongs to the
 * same Lua universe as `main`, else `main`. */
lua_State *oa__lua_callstate(lua_State *main, const void *registry);
const void *oa__lua_registry(lua_State *L);

#endif
