/* Tensors: row-major float32/float64 vectors and matrices.
 *
 * An owning tensor (oa_tensor_new) allocates 64-byte aligned, zeroed
 * storage and frees it in oa_tensor_free. A view (oa_tensor_view,
 * oa_tensor_row, oa_tensor_slice) borrows another tensor's storage: it has
 * owner == NULL semantics (`owns` is 0), must not outlive the tensor it
 * came from, and freeing it never frees the storage. A vector is a tensor
 * with rows == 1 (a row vector); `stride` is the distance in elements
 * between consecutive rows (>= cols).
 *
 * The arithmetic goes through OpenBLAS (cblas_*). The engine calls
 * oa_blas_threads(1) at start-up: the request path is single-threaded and
 * the engine parallelises large work itself. */
#ifndef ONEARM_CORE_TENSOR_H
#define ONEARM_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "onearm.h"

typedef enum oa_dtype { OA_F32 = 0, OA_F64 = 1 } oa_dtype;

typedef struct oa_tensor {
  oa_dtype dtype;
  int64_t rows, cols, stride;
  void *data;
  int owns; /* 1: data is ours to free */
} oa_tensor;

/* Aligned zeroed allocation (64 bytes); free with oa_free_aligned. */
void *oa_alloc_aligned(size_t bytes);
void oa_free_aligned(void *p);

/* New owning rows x cols tensor, zero-filled; NULL + err on bad shape or OOM. */
oa_tensor *oa_tensor_new(oa_dtype dtype, int64_t rows, int64_t cols, oa_error *err);
/* Frees an owning tensor's storage and the struct; views only the struct.
 * NULL is fine. */
void oa_tensor_free(oa_tensor *t);
/* A borrowed view of rows [r0, r0+nr) and columns [c0, c0+nc) of t,
 * returned by value; 0 or OA_EDIM when out of range. */
int oa_tensor_slice(const oa_tensor *t, int64_t r0, int64_t nr, int64_t c0, int64_t nc,
                    oa_tensor *view, oa_error *err);
/* A view over caller memory (no copy). */
oa_tensor oa_tensor_wrap(oa_dtype dtype, void *data, int64_t rows, int64_t cols,
                         int64_t stride);

double oa_tensor_get(const oa_tensor *t, int64_t r, int64_t c);
void oa_tensor_set(oa_tensor *t, int64_t r, int64_t c, double v);
int64_t oa_tensor_size(const oa_tensor *t); /* rows * cols */
size_t oa_dtype_size(oa_dtype dtype);
void oa_tensor_fill(oa_tensor *t, double v);
/* dst := src (same shape and dtype, or converted between dtypes). */
int oa_tensor_copy(oa_tensor *dst, const oa_tensor *src, oa_error *err);
/* 1 when every element is finite. */
int oa_tensor_finite(const oa_tensor *t);

/* BLAS-backed operations. All check shapes and dtypes (both operands must
 * have the same dtype) and return 0 or OA_EDIM/OA_EINVAL with a message.
 * Vectors may be 1 x n or n x 1 tensors. */

/* y := alpha * op(A) x + beta * y, op = transpose when trans != 0. */
int oa_gemv(double alpha, const oa_tensor *A, int trans, const oa_tensor *x, double beta,
            oa_tensor *y, oa_error *err);
/* C := alpha * op(A) op(B) + beta * C. */
int oa_gemm(double alpha, const oa_tensor *A, int transA, const oa_tensor *B, int transB,
            double beta, oa_tensor *C, oa_error *err);
int oa_dot(const oa_tensor *x, const oa_tensor *y, double *out, oa_error *err);
/* y := alpha x + y. */
int oa_axpy(double alpha, const oa_tensor *x, oa_tensor *y, oa_error *err);
/* A := A + alpha x y^T (rank-1 update). */
int oa_ger(double alpha, const oa_tensor *x, const oa_tensor *y, oa_tensor *A, oa_error *err);
int oa_scal(double alpha, oa_tensor *x);

/* In-place Cholesky factorisation of a symmetric positive definite n x n
 * matrix (float64): on success the lower triangle holds L with A = L L^T
 * and the strict upper triangle is zeroed. OA_ENUMERIC when A is not
 * positive definite (A is then unspecified: factor a copy if you need it). */
int oa_cholesky(oa_tensor *A, oa_error *err);
/* Solve (L L^T) X = B in place for B (n x k, float64) given the factor L. */
int oa_cholesky_solve(const oa_tensor *L, oa_tensor *B, oa_error *err);

/* Raw double-precision kernels on plain arrays, used by the models. */
void oa_dchol_solve(const double *L, int n, double *b); /* (L L^T) x = b, in place */
int oa_dchol(double *A, int n);                         /* 0, or -1 if not SPD */

/* The engine decides OpenBLAS's thread count (1 on the request path). */
void oa_blas_threads(int n);

#endif
