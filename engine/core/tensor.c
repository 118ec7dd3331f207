#include "core/tensor.h"
#include "core/error.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void *oa_alloc_aligned(size_t bytes) {
  void *p = NULL;
  if (bytes == 0) bytes = 64;
  bytes = (bytes + 63) & ~(size_t)63;
  if (posix_memalign(&p, 64, bytes)) return NULL;
  memset(p, 0, bytes);
  return p;
}

void oa_free_aligned(void *p) { free(p); }

size_t oa_dtype_size(oa_dtype dtype) { return dtype == OA_F32 ? 4 : 8; }

oa_tensor *oa_tensor_new(oa_dtype dtype, int64_t rows, int64_t cols, oa_error *err) {
  if (rows < 0 || cols < 0 || (dtype != OA_F32 && dtype != OA_F64)) {
    oa_error_set(err, OA_EINVAL, "bad tensor shape %lld x %lld", (long long)rows,
                 (long long)cols);
    return NULL;
  }
  if (cols && rows > (int64_t)(((uint64_t)1 << 40) / (uint64_t)cols)) {
    oa_error_set(err, OA_ELIMIT, "tensor of %lld x %lld is too large", (long long)rows,
                 (long long)cols);
    return NULL;
  }
  oa_tensor *t = calloc(1, sizeof *t);
  void *data = oa_alloc_aligned((size_t)(rows * cols) * oa_dtype_size(dtype));
  if (!t || !data) {
    free(t);
    oa_free_aligned(data);
    oa_error_set(err, OA_ENOMEM, "out of memory for a %lld x %lld tensor", (long long)rows,
                 (long long)cols);
    return NULL;
  }
  *t = (oa_tensor){dtype, rows, cols, cols, data, 1};
  return t;
}

void oa_tensor_free(oa_tensor *t) {
  if (!t) return;
  if (t->owns) oa_free_aligned(t->data);
  free(t);
}

oa_tensor oa_tensor_wrap(oa_dtype dtype, void *data, int64_t rows, int64_t cols,
                         int64_t stride) {
  return (oa_tensor){dtype, rows, cols, stride, data, 0};
}

int oa_tensor_slice(const oa_tensor *t, int64_t r0, int64_t nr, int64_t c0, int64_t nc,
                    oa_tensor *view, oa_error *err) {
  if (r0 < 0 || nr < 0 || c0 < 0 || nc < 0 || r0 + nr > t->rows || c0 + nc > t->cols)
    return oa_error_set(err, OA_EDIM,
                        "slice rows %lld..%lld, cols %lld..%lld out of a %lld x %lld tensor",
                        (long long)r0, (long long)(r0 + nr), (long long)c0,
                        (long long)(c0 + nc), (long long)t->rows, (long long)t->cols);
  char *base = (char *)t->data + (size_t)(r0 * t->stride + c0) * oa_dtype_size(t->dtype);
  *view = (oa_tensor){t->dtype, nr, nc, t->stride, base, 0};
  return 0;
}

static inline size_t offset(const oa_tensor *t, int64_t r, int64_t c) {
  return (size_t)(r * t->stride + c);
}

double oa_tensor_get(const oa_tensor *t, int64_t r, int64_t c) {
  return t->dtype == OA_F32 ? ((float *)t->data)[offset(t, r, c)]
                            : ((double *)t->data)[offset(t, r, c)];
}

void oa_tensor_set(oa_tensor *t, int64_t r, int64_t c, double v) {
  if (t->dtype == OA_F32)
    ((float *)t->data)[offset(t, r, c)] = (float)v;
  else
    ((double *)t->data)[offset(t, r, c)] = v;
}

int64_t oa_tensor_size(const oa_tensor *t) { return t->rows * t->cols; }

void oa_tensor_fill(oa_tensor *t, double v) {
  for (int64_t r = 0; r < t->rows; r++)
    for (int64_t c = 0; c < t->cols; c++) oa_tensor_set(t, r, c, v);
}

int oa_tensor_copy(oa_tensor *dst, const oa_tensor *src, oa_error *err) {
  if (dst->rows != src->rows || dst->cols != src->cols)
    return oa_error_set(err, OA_EDIM, "copy of a %lld x %lld tensor into a %lld x %lld one",
                        (long long)src->rows, (long long)src->cols, (long long)dst->rows,
                        (long long)dst->cols);
  for (int64_t r = 0; r < src->rows; r++)
    for (int64_t c = 0; c < src->cols; c++) oa_tensor_set(dst, r, c, oa_tensor_get(src, r, c));
  return 0;
}

int oa_tensor_finite(const oa_tensor *t) {
  for (int64_t r = 0; r < t->rows; r++)
    for (int64_t c = 0; c < t->cols; c++)
      if (!isfinite(oa_tensor_get(t, r, c))) return 0;
  return 1;
}

/* A vector is 1 x n or n x 1; its BLAS increment is 1 or the stride. */
static int as_vector(const oa_tensor *t, int64_t *n, int64_t *inc) {
  if (t->rows == 1) {
    *n = t->cols;
    *inc = 1;
    return 1;
  }
  if (t->cols == 1) {
    *n = t->rows;
    *inc = t->stride;
    return 1;
  }
  return 0;
}

static int same_dtype(const oa_tensor *a, const oa_tensor *b, oa_error *err) {
  if (a->dtype != b->dtype)
    return oa_error_set(err, OA_EINVAL, "mixed float32/float64 operands");
  return 0;
}

int oa_gemv(double alpha, const oa_tensor *A, int trans, const oa_tensor *x, double beta,
            oa_tensor *y, oa_error *err) {
  int64_t nx, incx, ny, incy;
  if (same_dtype(A, x, err) || same_dtype(A, y, err)) return OA_EINVAL;
  if (!as_vector(x, &nx, &incx) || !as_vector(y, &ny, &incy))
    return oa_error_set(err, OA_EDIM, "gemv needs vector operands");
  int64_t in = trans ? A->rows : A->cols, out = trans ? A->cols : A->rows;
  if (nx != in || ny != out)
    return oa_error_set(err, OA_EDIM,
                        "gemv: %s of a %lld x %lld matrix times a vector of %lld into %lld",
                        trans ? "transpose" : "product", (long long)A->rows,
                        (long long)A->cols, (long long)nx, (long long)ny);
  if (A->rows == 0 || A->cols == 0) {
    if (out) oa_scal(beta, y);
    return 0;
  }
  enum CBLAS_TRANSPOSE t = trans ? CblasTrans : CblasNoTrans;
  if (A->dtype == OA_F64)
    cblas_dgemv(CblasRowMajor, t, A->rows, A->cols, alpha, A->data, A->stride, x->data, incx,
                beta, y->data, incy);
  else
    cblas_sgemv(CblasRowMajor, t, A->rows, A->cols, (float)alpha, A->data, A->stride,
                x->data, incx, (float)beta, y->data, incy);
  return 0;
}

int oa_gemm(double alpha, const oa_tensor *A, int transA, const oa_tensor *B, int transB,
            double beta, oa_tensor *C, oa_error *err) {
  if (same_dtype(A, B, err) || same_dtype(A, C, err)) return OA_EINVAL;
  int64_t m = transA ? A->cols : A->rows, k = transA ? A->rows : A->cols;
  int64_t kb = transB ? B->cols : B->rows, n = transB ? B->rows : B->cols;
  if (k != kb || C->rows != m || C->cols != n)
    return oa_error_set(err, OA_EDIM, "gemm: (%lld x %lld) (%lld x %lld) into %lld x %lld",
                        (long long)m, (long long)k, (long long)kb, (long long)n,
                        (long long)C->rows, (long long)C->cols);
  if (m == 0 || n == 0) return 0;
  if (k == 0) return oa_scal(beta, C);
  enum CBLAS_TRANSPOSE ta = transA ? CblasTrans : CblasNoTrans;
  enum CBLAS_TRANSPOSE tb = transB ? CblasTrans : CblasNoTrans;
  if (A->dtype == OA_F64)
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A->data, A->stride, B->data, B->stride,
                beta, C->data, C->stride);
  else
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, (float)alpha, A->data, A->stride, B->data,
                B->stride, (float)beta, C->data, C->stride);
  return 0;
}

int oa_dot(const oa_tensor *x, const oa_tensor *y, double *out, oa_error *err) {
  int64_t nx, incx, ny, incy;
  if (same_dtype(x, y, err)) return OA_EINVAL;
  if (!as_vector(x, &nx, &incx) || !as_vector(y, &ny, &incy) || nx != ny)
    return oa_error_set(err, OA_EDIM, "dot needs two vectors of the same length");
  *out = x->dtype == OA_F64 ? cblas_ddot(nx, x->data, incx, y->data, incy)
                            : cblas_sdot(nx, x->data, incx, y->data, incy);
  return 0;
}

int oa_axpy(double alpha, const oa_tensor *x, oa_tensor *y, oa_error *err) {
  if (same_dtype(x, y, err)) return OA_EINVAL;
  if (x->rows != y->rows || x->cols != y->cols)
    return oa_error_set(err, OA_EDIM, "axpy needs two tensors of the same shape");
  for (int64_t r = 0; r < x->rows; r++) {
    size_t es = oa_dtype_size(x->dtype);
    void *xr = (char *)x->data + (size_t)(r * x->stride) * es;
    void *yr = (char *)y->data + (size_t)(r * y->stride) * es;
    if (x->dtype == OA_F64)
      cblas_daxpy(x->cols, alpha, xr, 1, yr, 1);
    else
      cblas_saxpy(x->cols, (float)alpha, xr, 1, yr, 1);
  }
  return 0;
}

int oa_ger(double alpha, const oa_tensor *x, const oa_tensor *y, oa_tensor *A, oa_error *err) {
  int64_t nx, incx, ny, incy;
  if (same_dtype(x, A, err) || same_dtype(y, A, err)) return OA_EINVAL;
  if (!as_vector(x, &nx, &incx) || !as_vector(y, &ny, &incy) || nx != A->rows ||
      ny != A->cols)
    return oa_error_set(err, OA_EDIM, "ger: vectors of %lld and %lld for a %lld x %lld matrix",
                        (long long)x->rows * x->cols, (long long)y->rows * y->cols,
                        (long long)A->rows, (long long)A->cols);
  if (A->dtype == OA_F64)
    cblas_dger(CblasRowMajor, A->rows, A->cols, alpha, x->data, incx, y->data, incy, A->data,
               A->stride);
  else
    cblas_sger(CblasRowMajor, A->rows, A->cols, (float)alpha, x->data, incx, y->data, incy,
               A->data, A->stride);
  return 0;
}

int oa_scal(double alpha, oa_tensor *x) {
  for (int64_t r = 0; r < x->rows; r++) {
    size_t es = oa_dtype_size(x->dtype);
    void *xr = (char *)x->data + (size_t)(r * x->stride) * es;
    if (x->dtype == OA_F64)
      cblas_dscal(x->cols, alpha, xr, 1);
    else
      cblas_sscal(x->cols, (float)alpha, xr, 1);
  }
  return 0;
}

int oa_dchol(double *A, int n) {
  for (int j = 0; j < n; j++) {
    double *rj = A + (size_t)j * n;
    double s = rj[j];
    for (int k = 0; k < j; k++) s -= rj[k] * rj[k];
    if (!(s > 0) || !isfinite(s)) return -1;
    double l = sqrt(s);
    rj[j] = l;
    for (int i = j + 1; i < n; i++) {
      double *ri = A + (size_t)i * n;
      double t = ri[j];
      for (int k = 0; k < j; k++) t -= ri[k] * rj[k];
      ri[j] = t / l;
    }
    for (int k = j + 1; k < n; k++) rj[k] = 0;
  }
  return 0;
}

void oa_dchol_solve(const double *L, int n, double *b) {
  for (int i = 0; i < n; i++) { /* L y = b */
    const double *ri = L + (size_t)i * n;
    double s = b[i];
    for (int k = 0; k < i; k++) s -= ri[k] * b[k];
    b[i] = s / ri[i];
  }
  for (int i = n - 1; i >= 0; i--) { /* L^T x = y */
    double s = b[i];
    for (int k = i + 1; k < n; k++) s -= L[(size_t)k * n + i] * b[k];
    b[i] = s / L[(size_t)i * n + i];
  }
}

int oa_cholesky(oa_tensor *A, oa_error *err) {
  if (A->dtype != OA_F64 || A->rows != A->cols || A->stride != A->cols)
    return oa_error_set(err, OA_EINVAL, "cholesky needs a contiguous square float64 matrix");
  if (oa_dchol(A->data, (int)A->rows))
    return oa_error_set(err, OA_ENUMERIC, "cholesky: matrix is not positive definite");
  return 0;
}

int oa_cholesky_solve(const oa_tensor *L, oa_tensor *B, oa_error *err) {
  if (L->dtype != OA_F64 || B->dtype != OA_F64 || L->rows != L->cols ||
      L->stride != L->cols || B->rows != L->rows)
    return oa_error_set(err, OA_EDIM, "cholesky_solve: factor %lld x %lld, right side %lld x %lld",
                        (long long)L->rows, (long long)L->cols, (long long)B->rows,
                        (long long)B->cols);
  int n = (int)L->rows;
  double *col = malloc(sizeof(double) * (n ? n : 1));
  if (!col) return oa_error_set(err, OA_ENOMEM, "out of memory");
  double *b = B->data;
  for (int64_t c = 0; c < B->cols; c++) {
    for (int i = 0; i < n; i++) col[i] = b[i * B->stride + c];
    oa_dchol_solve(L->data, n, col);
    for (int i = 0; i < n; i++) b[i * B->stride + c] = col[i];
  }
  free(col);
  return 0;
}

void oa_blas_threads(int n) { openblas_set_num_threads(n); }
