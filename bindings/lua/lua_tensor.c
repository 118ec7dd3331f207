/* Tensors for Lua: the `onearm.tensor` metatable over core/tensor.h.
 *
 * A tensor userdata embeds its oa_tensor header. Owning tensors hold
 * 64-byte aligned storage that the finalizer frees; views (row, slice)
 * point into another tensor's storage and keep that tensor alive through
 * their uservalue; borrowed tensors expose C memory to a Lua callback and
 * die when the callback returns. Every access checks the storage's root is
 * still alive, so no script can read freed memory. Arithmetic goes through
 * the BLAS wrappers of core/tensor.c; indexes are 1-based. */
#include "lua_onearm.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

#define MAX_ELEMENTS ((int64_t)1 << 36)

static int alive(const oa_lua_tensor *t) {
  if (t->state == OA_LT_CLOSED || t->state == OA_LT_DEAD) return 0;
  return t->root->state == OA_LT_OWNING || t->root->state == OA_LT_BORROWED;
}

oa_lua_tensor *oa__lua_checktensor(lua_State *L, int idx) {
  oa_lua_tensor *t = luaL_checkudata(L, idx, OA_LUA_TENSOR);
  if (!alive(t)) {
    const char *why = t->root->state == OA_LT_DEAD || t->state == OA_LT_DEAD
                          ? "tensor is no longer valid (a view passed to a callback "
                            "cannot be kept after it returns)"
                          : "tensor is closed";
    luaL_argerror(L, idx, why);
  }
  return t;
}

static oa_lua_tensor *checkwritable(lua_State *L, int idx) {
  oa_lua_tensor *t = oa__lua_checktensor(L, idx);
  if (t->root->readonly)
    luaL_argerror(L, idx, "tensor is read-only (it belongs to the engine)");
  return t;
}

/* A userdata created closed: if anything below fails, the finalizer has
 * nothing to free. */
static oa_lua_tensor *newclosed(lua_State *L) {
  oa_lua_tensor *t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  t->root = t;
  luaL_setmetatable(L, OA_LUA_TENSOR);
  return t;
}

oa_lua_tensor *oa__lua_newtensor(lua_State *L, oa_dtype dtype, int64_t rows,
                                 int64_t cols) {
  if (rows < 0 || cols < 0)
    luaL_error(L, "tensor: bad shape %d x %d", (int)rows, (int)cols);
  if (cols && rows > MAX_ELEMENTS / cols)
    luaL_error(L, "tensor: %lld x %lld is too large", (long long)rows, (long long)cols);
  oa_lua_tensor *t = newclosed(L);
  void *data = oa_alloc_aligned((size_t)(rows * cols) * oa_dtype_size(dtype));
  if (!data)
    luaL_error(L, "tensor: out of memory for %lld x %lld", (long long)rows,
               (long long)cols);
  t->t = oa_tensor_wrap(dtype, data, rows, cols, cols);
  t->t.owns = 1;
  t->state = OA_LT_OWNING;
  return t;
}

oa_lua_tensor *oa__lua_borrowtensor(lua_State *L, const double *data, int64_t rows,
                                    int64_t cols, int64_t stride) {
  oa_lua_tensor *t = newclosed(L);
  t->t = oa_tensor_wrap(OA_F64, (void *)data, rows, cols, stride);
  t->readonly = 1;
  t->state = OA_LT_BORROWED;
  return t;
}

void oa__lua_kill(oa_lua_tensor *t) {
  if (t->state == OA_LT_OWNING) oa_free_aligned(t->t.data);
  t->state = OA_LT_DEAD;
  t->t.data = NULL;
}

/* [-0, +0, -] __gc and __close: frees owned storage once. */
static int t_finalize(lua_State *L) {
  oa_lua_tensor *t = luaL_checkudata(L, 1, OA_LUA_TENSOR);
  if (t->state == OA_LT_OWNING) oa_free_aligned(t->t.data);
  if (t->state != OA_LT_DEAD) t->state = OA_LT_CLOSED;
  t->t.data = NULL;
  return 0;
}

static oa_dtype checkdtype(lua_State *L, int idx) {
  const char *const names[] = {"f32", "f64", NULL};
  return luaL_checkoption(L, idx, "f64", names) == 0 ? OA_F32 : OA_F64;
}

static int64_t checkdim(lua_State *L, int idx, const char *what) {
  lua_Integer n = luaL_checkinteger(L, idx);
  if (n < 0) luaL_argerror(L, idx, lua_pushfstring(L, "%s must be >= 0", what));
  return n;
}

static double checkfield_number(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "%s: expected a number, got %s", what, luaL_typename(L, idx));
  return lua_tonumber(L, idx);
}

/* [-0, +1, m] oa.tensor(rows, cols [, dtype]) or oa.tensor{{...}, ...} [, dtype] */
static int l_tensor(lua_State *L) {
  if (lua_istable(L, 1)) {
    oa_dtype dt = checkdtype(L, 2);
    int64_t rows = (int64_t)luaL_len(L, 1), cols = -1;
    for (int64_t r = 1; r <= rows; r++) {
      if (lua_geti(L, 1, r) != LUA_TTABLE)
        luaL_argerror(L, 1, lua_pushfstring(L, "row %d is not a table", (int)r));
      int64_t c = (int64_t)luaL_len(L, -1);
      if (cols >= 0 && c != cols)
        luaL_argerror(L, 1,
                      lua_pushfstring(L, "row %d has %d columns, row 1 has %d", (int)r,
                                      (int)c, (int)cols));
      cols = c;
      lua_pop(L, 1);
    }
    if (cols < 0) cols = 0;
    oa_lua_tensor *t = oa__lua_newtensor(L, dt, rows, cols);
    for (int64_t r = 0; r < rows; r++) {
      lua_geti(L, 1, r + 1);
      for (int64_t c = 0; c < cols; c++) {
        lua_geti(L, -1, c + 1);
        char what[64];
        snprintf(what, sizeof what, "tensor: element [%d][%d]", (int)r + 1, (int)c + 1);
        oa_tensor_set(&t->t, r, c, checkfield_number(L, -1, what));
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    return 1;
  }
  int64_t rows = checkdim(L, 1, "rows"), cols = checkdim(L, 2, "cols");
  oa__lua_newtensor(L, checkdtype(L, 3), rows, cols);
  return 1;
}

/* [-0, +1, m] oa.vector{1, 2, 3} or oa.vector(n) [, dtype]: an n x 1 tensor */
static int l_vector(lua_State *L) {
  oa_dtype dt = checkdtype(L, 2);
  if (lua_istable(L, 1)) {
    int64_t n = (int64_t)luaL_len(L, 1);
    oa_lua_tensor *t = oa__lua_newtensor(L, dt, n, 1);
    for (int64_t i = 0; i < n; i++) {
      lua_geti(L, 1, i + 1);
      char what[48];
      snprintf(what, sizeof what, "vector: element %d", (int)i + 1);
      oa_tensor_set(&t->t, i, 0, checkfield_number(L, -1, what));
      lua_pop(L, 1);
    }
    return 1;
  }
  oa__lua_newtensor(L, dt, checkdim(L, 1, "length"), 1);
  return 1;
}

/* [-0, +1, m] oa.eye(n [, v]): v times the n x n identity (float64) */
static int l_eye(lua_State *L) {
  int64_t n = checkdim(L, 1, "n");
  double v = luaL_optnumber(L, 2, 1.0);
  oa_lua_tensor *t = oa__lua_newtensor(L, OA_F64, n, n);
  for (int64_t i = 0; i < n; i++)
    oa_tensor_set(&t->t, i, i, v);
  return 1;
}

static int64_t checkindex(lua_State *L, int idx, int64_t n, const char *what) {
  lua_Integer i = luaL_checkinteger(L, idx);
  if (i < 1 || i > n)
    luaL_argerror(L, idx,
                  lua_pushfstring(L, "%s %I out of 1..%I", what, i, (lua_Integer)n));
  return i - 1;
}

/* [-0, +1, -] t:get(i, j) */
static int l_get(lua_State *L) {
  oa_lua_tensor *t = oa__lua_checktensor(L, 1);
  int64_t r = checkindex(L, 2, t->t.rows, "row");
  int64_t c = checkindex(L, 3, t->t.cols, "column");
  lua_pushnumber(L, oa_tensor_get(&t->t, r, c));
  return 1;
}

/* [-0, +0, -] t:set(i, j, v) */
static int l_set(lua_State *L) {
  oa_lua_tensor *t = checkwritable(L, 1);
  int64_t r = checkindex(L, 2, t->t.rows, "row");
  int64_t c = checkindex(L, 3, t->t.cols, "column");
  oa_tensor_set(&t->t, r, c, luaL_checknumber(L, 4));
  return 0;
}

static int isvector(const oa_tensor *t) {
  return t->rows == 1 || t->cols == 1;
}

/* Element i (0-based) of a vector. */
static int64_t vec_rc(const oa_tensor *t, int64_t i, int64_t *c) {
  if (t->cols == 1) {
    *c = 0;
    return i;
  }
  *c = i;
  return 0;
}

/* [-0, +1, -] __index: methods, then rows/cols/dtype, then t[i] for vectors */
static int t_index(lua_State *L) {
  oa_lua_tensor *t = luaL_checkudata(L, 1, OA_LUA_TENSOR);
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    const char *k = lua_tostring(L, 2);
    oa__lua_checktensor(L, 1);
    if (!strcmp(k, "rows"))
      lua_pushinteger(L, t->t.rows);
    else if (!strcmp(k, "cols"))
      lua_pushinteger(L, t->t.cols);
    else if (!strcmp(k, "dtype"))
      lua_pushstring(L, t->t.dtype == OA_F32 ? "f32" : "f64");
    else
      lua_pushnil(L);
    return 1;
  }
  oa__lua_checktensor(L, 1);
  if (!lua_isinteger(L, 2))
    luaL_argerror(L, 2, "tensor index must be an integer or a method name");
  if (!isvector(&t->t)) return luaL_error(L, "t[i] needs a vector; use t:get(i, j)");
  int64_t c, i = checkindex(L, 2, oa_tensor_size(&t->t), "index");
  int64_t r = vec_rc(&t->t, i, &c);
  lua_pushnumber(L, oa_tensor_get(&t->t, r, c));
  return 1;
}

/* [-0, +0, -] __newindex: t[i] = v for vectors */
static int t_newindex(lua_State *L) {
  oa_lua_tensor *t = checkwritable(L, 1);
  if (!lua_isinteger(L, 2) || !isvector(&t->t))
    return luaL_error(L, "tensors accept only t[i] = v on vectors; use t:set(i, j, v)");
  int64_t c, i = checkindex(L, 2, oa_tensor_size(&t->t), "index");
  int64_t r = vec_rc(&t->t, i, &c);
  oa_tensor_set(&t->t, r, c, luaL_checknumber(L, 3));
  return 0;
}

/* [-0, +1, -] #t */
static int t_len(lua_State *L) {
  oa_lua_tensor *t = oa__lua_checktensor(L, 1);
  lua_pushinteger(L, oa_tensor_size(&t->t));
  return 1;
}

/* [-0, +1, m] tostring(t): the shape and, for small tensors, the values */
static int t_tostring(lua_State *L) {
  oa_lua_tensor *t = luaL_checkudata(L, 1, OA_LUA_TENSOR);
  if (!alive(t)) {
    lua_pushstring(L, t->state == OA_LT_DEAD ? "tensor (dead)" : "tensor (closed)");
    return 1;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "tensor %dx%d %s", (int)t->t.rows, (int)t->t.cols,
                  t->t.dtype == OA_F32 ? "f32" : "f64");
  luaL_addvalue(&b);
  if (oa_tensor_size(&t->t) <= 64) {
    for (int64_t r = 0; r < t->t.rows; r++) {
      luaL_addstring(&b, r ? ", {" : " {{");
      for (int64_t c = 0; c < t->t.cols; c++) {
        char num[32];
        snprintf(num, sizeof num, c ? ", %.6g" : "%.6g", oa_tensor_get(&t->t, r, c));
        luaL_addstring(&b, num);
      }
      luaL_addstring(&b, "}");
    }
    if (t->t.rows) luaL_addstring(&b, "}");
  }
  luaL_pushresult(&b);
  return 1;
}

/* [-0, +1, m] t:fill(v) -> t */
static int l_fill(lua_State *L) {
  oa_lua_tensor *t = checkwritable(L, 1);
  oa_tensor_fill(&t->t, luaL_checknumber(L, 2));
  lua_settop(L, 1);
  return 1;
}

/* [-0, +1, m] t:copy([dtype]) -> a new owning tensor with the same values */
static int l_copy(lua_State *L) {
  oa_lua_tensor *t = oa__lua_checktensor(L, 1);
  oa_dtype dt = lua_isnoneornil(L, 2) ? t->t.dtype : checkdtype(L, 2);
  oa_lua_tensor *c = oa__lua_newtensor(L, dt, t->t.rows, t->t.cols);
  oa_error err = {0};
  if (oa_tensor_copy(&c->t, &t->t, &err)) return oa__lua_fail(L, "copy", &err);
  return 1;
}

/* [-0, +1, m] t:totable(): a list of rows (a flat list for an n x 1 or 1 x n vector) */
static int l_totable(lua_State *L) {
  oa_lua_tensor *t = oa__lua_checktensor(L, 1);
  if (isvector(&t->t)) {
    int64_t n = oa_tensor_size(&t->t);
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
      int64_t c, r = vec_rc(&t->t, i, &c);
      lua_pushnumber(L, oa_tensor_get(&t->t, r, c));
      lua_rawseti(L, -2, i + 1);
    }
    return 1;
  }
  lua_createtable(L, (int)t->t.rows, 0);
  for (int64_t r = 0; r < t->t.rows; r++) {
    lua_createtable(L, (int)t->t.cols, 0);
    for (int64_t c = 0; c < t->t.cols; c++) {
      lua_pushnumber(L, oa_tensor_get(&t->t, r, c));
      lua_rawseti(L, -2, c + 1);
    }
    lua_rawseti(L, -2, r + 1);
  }
  return 1;
}

/* Push a view of the tensor at idx; the view's uservalue is that tensor. */
static void pushview(lua_State *L, int idx, const oa_tensor *view) {
  oa_lua_tensor *parent = lua_touserdata(L, idx);
  oa_lua_tensor *v = newclosed(L);
  v->t = *view;
  v->root = parent->root;
  v->state = OA_LT_VIEW;
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, 1);
}

/* [-0, +1, m] t:row(i): a 1 x cols view of row i */
static int l_row(lua_State *L) {
  oa_lua_tensor *t = oa__lua_checktensor(L, 1);
  int64_t r = checkindex(L, 2, t->t.rows, "row");
  oa_tensor view;
  oa_tensor_slice(&t->t, r, 1, 0, t->t.cols, &view, NULL);
  pushview(L, 1, &view);
  return 1;
}

/* [-0, +1, m] t:slice(r0, nr, c0, nc): a view of nr rows from r0 and nc columns from c0
 */
static int l_slice(lua_State *L) {
  oa_lua_tensor *t = oa__lua_checktensor(L, 1);
  lua_Integer r0 = luaL_checkinteger(L, 2), nr = luaL_checkinteger(L, 3);
  lua_Integer c0 = luaL_checkinteger(L, 4), nc = luaL_checkinteger(L, 5);
  oa_tensor view;
  oa_error err = {0};
  if (oa_tensor_slice(&t->t, r0 - 1, nr, c0 - 1, nc, &view, &err))
    return oa__lua_fail(L, "slice", &err);
  pushview(L, 1, &view);
  return 1;
}

static int optbool(lua_State *L, int idx) {
  return lua_toboolean(L, idx);
}

/* [-0, +1, m] A:mv(x [, trans]) -> op(A) x as a new n x 1 vector */
static int l_mv(lua_State *L) {
  oa_lua_tensor *A = oa__lua_checktensor(L, 1), *x = oa__lua_checktensor(L, 2);
  int trans = optbool(L, 3);
  oa_lua_tensor *y = oa__lua_newtensor(L, A->t.dtype, trans ? A->t.cols : A->t.rows, 1);
  oa_error err = {0};
  if (oa_gemv(1.0, &A->t, trans, &x->t, 0.0, &y->t, &err))
    return oa__lua_fail(L, "mv", &err);
  return 1;
}

/* [-0, +1, m] oa.gemv(alpha, A, x, beta, y [, trans]) -> y := alpha op(A) x + beta y */
static int l_gemv(lua_State *L) {
  double alpha = luaL_checknumber(L, 1);
  oa_lua_tensor *A = oa__lua_checktensor(L, 2), *x = oa__lua_checktensor(L, 3);
  double beta = luaL_checknumber(L, 4);
  oa_lua_tensor *y = checkwritable(L, 5);
  oa_error err = {0};
  if (oa_gemv(alpha, &A->t, optbool(L, 6), &x->t, beta, &y->t, &err))
    return oa__lua_fail(L, "gemv", &err);
  lua_settop(L, 5);
  return 1;
}

/* [-0, +1, m] A:mm(B [, transA, transB]) -> op(A) op(B), a new tensor */
static int l_mm(lua_State *L) {
  oa_lua_tensor *A = oa__lua_checktensor(L, 1), *B = oa__lua_checktensor(L, 2);
  int ta = optbool(L, 3), tb = optbool(L, 4);
  int64_t m = ta ? A->t.cols : A->t.rows, n = tb ? B->t.rows : B->t.cols;
  oa_lua_tensor *C = oa__lua_newtensor(L, A->t.dtype, m, n);
  oa_error err = {0};
  if (oa_gemm(1.0, &A->t, ta, &B->t, tb, 0.0, &C->t, &err))
    return oa__lua_fail(L, "mm", &err);
  return 1;
}

/* [-0, +1, m] oa.gemm(alpha, A, B, beta, C [, tA, tB]) -> C := alpha op(A) op(B) + beta C
 */
static int l_gemm(lua_State *L) {
  double alpha = luaL_checknumber(L, 1);
  oa_lua_tensor *A = oa__lua_checktensor(L, 2), *B = oa__lua_checktensor(L, 3);
  double beta = luaL_checknumber(L, 4);
  oa_lua_tensor *C = checkwritable(L, 5);
  oa_error err = {0};
  if (oa_gemm(alpha, &A->t, optbool(L, 6), &B->t, optbool(L, 7), beta, &C->t, &err))
    return oa__lua_fail(L, "gemm", &err);
  lua_settop(L, 5);
  return 1;
}

/* [-0, +1, -] x:dot(y) */
static int l_dot(lua_State *L) {
  oa_lua_tensor *x = oa__lua_checktensor(L, 1), *y = oa__lua_checktensor(L, 2);
  double out;
  oa_error err = {0};
  if (oa_dot(&x->t, &y->t, &out, &err)) return oa__lua_fail(L, "dot", &err);
  lua_pushnumber(L, out);
  return 1;
}

/* [-0, +1, -] y:axpy(alpha, x) -> y := alpha x + y */
static int l_axpy(lua_State *L) {
  oa_lua_tensor *y = checkwritable(L, 1);
  double alpha = luaL_checknumber(L, 2);
  oa_lua_tensor *x = oa__lua_checktensor(L, 3);
  oa_error err = {0};
  if (oa_axpy(alpha, &x->t, &y->t, &err)) return oa__lua_fail(L, "axpy", &err);
  lua_settop(L, 1);
  return 1;
}

/* [-0, +1, -] A:ger(alpha, x, y) -> A := A + alpha x y^T */
static int l_ger(lua_State *L) {
  oa_lua_tensor *A = checkwritable(L, 1);
  double alpha = luaL_checknumber(L, 2);
  oa_lua_tensor *x = oa__lua_checktensor(L, 3), *y = oa__lua_checktensor(L, 4);
  oa_error err = {0};
  if (oa_ger(alpha, &x->t, &y->t, &A->t, &err)) return oa__lua_fail(L, "ger", &err);
  lua_settop(L, 1);
  return 1;
}

/* [-0, +1, -] t:scale(a) -> t := a t */
static int l_scale(lua_State *L) {
  oa_lua_tensor *t = checkwritable(L, 1);
  oa_scal(luaL_checknumber(L, 2), &t->t);
  lua_settop(L, 1);
  return 1;
}

/* [-0, +1, m] A:cholesky() -> a new lower factor L with A = L L^T (A unchanged) */
static int l_cholesky(lua_State *L) {
  oa_lua_tensor *A = oa__lua_checktensor(L, 1);
  if (A->t.rows != A->t.cols) luaL_argerror(L, 1, "cholesky needs a square matrix");
  oa_lua_tensor *F = oa__lua_newtensor(L, OA_F64, A->t.rows, A->t.cols);
  oa_error err = {0};
  if (oa_tensor_copy(&F->t, &A->t, &err) || oa_cholesky(&F->t, &err))
    return oa__lua_fail(L, "cholesky", &err);
  return 1;
}

/* [-0, +1, m] L:cholesky_solve(B) -> X with (L L^T) X = B (B unchanged) */
static int l_cholesky_solve(lua_State *L) {
  oa_lua_tensor *F = oa__lua_checktensor(L, 1), *B = oa__lua_checktensor(L, 2);
  if (F->t.dtype != OA_F64 || F->t.stride != F->t.cols)
    luaL_argerror(L, 1, "the factor must be a contiguous float64 matrix (from cholesky)");
  oa_lua_tensor *X = oa__lua_newtensor(L, OA_F64, B->t.rows, B->t.cols);
  oa_error err = {0};
  if (oa_tensor_copy(&X->t, &B->t, &err) || oa_cholesky_solve(&F->t, &X->t, &err))
    return oa__lua_fail(L, "cholesky_solve", &err);
  return 1;
}

void oa__lua_tonumbers(lua_State *L, int idx, int64_t n, double *out, const char *what) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TTABLE) {
    int64_t len = (int64_t)luaL_len(L, idx);
    if (len != n)
      luaL_error(L, "%s: expected %d numbers, got %d", what, (int)n, (int)len);
    for (int64_t i = 0; i < n; i++) {
      if (lua_geti(L, idx, i + 1) != LUA_TNUMBER)
        luaL_error(L, "%s: element %d is %s, not a number", what, (int)i + 1,
                   luaL_typename(L, -1));
      out[i] = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
    return;
  }
  oa_lua_tensor *t = luaL_testudata(L, idx, OA_LUA_TENSOR);
  if (!t)
    luaL_error(L, "%s: expected a tensor or a table of numbers, got %s", what,
               luaL_typename(L, idx));
  if (!alive(t)) luaL_error(L, "%s: the tensor is closed or no longer valid", what);
  if (oa_tensor_size(&t->t) != n)
    luaL_error(L, "%s: expected %d numbers, got a %d x %d tensor", what, (int)n,
               (int)t->t.rows, (int)t->t.cols);
  int64_t i = 0;
  for (int64_t r = 0; r < t->t.rows; r++)
    for (int64_t c = 0; c < t->t.cols; c++)
      out[i++] = oa_tensor_get(&t->t, r, c);
}

static const luaL_Reg tensor_methods[] = {{"get", l_get},
                                          {"set", l_set},
                                          {"fill", l_fill},
                                          {"copy", l_copy},
                                          {"totable", l_totable},
                                          {"row", l_row},
                                          {"slice", l_slice},
                                          {"mv", l_mv},
                                          {"mm", l_mm},
                                          {"dot", l_dot},
                                          {"axpy", l_axpy},
                                          {"ger", l_ger},
                                          {"scale", l_scale},
                                          {"cholesky", l_cholesky},
                                          {"cholesky_solve", l_cholesky_solve},
                                          {"close", t_finalize},
                                          {NULL, NULL}};

static const luaL_Reg tensor_meta[] = {{"__index", NULL},    {"__newindex", t_newindex},
                                       {"__len", t_len},     {"__tostring", t_tostring},
                                       {"__gc", t_finalize}, {"__close", t_finalize},
                                       {NULL, NULL}};

static const luaL_Reg tensor_functions[] = {{"tensor", l_tensor}, {"vector", l_vector},
                                            {"eye", l_eye},       {"gemv", l_gemv},
                                            {"gemm", l_gemm},     {NULL, NULL}};

void oa__lua_open_tensor(lua_State *L) {
  luaL_newmetatable(L, OA_LUA_TENSOR);
  luaL_setfuncs(L, tensor_meta, 0);
  luaL_newlib(L, tensor_methods);
  lua_pushcclosure(L, t_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "onearm.tensor");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  luaL_setfuncs(L, tensor_functions, 0);
}
