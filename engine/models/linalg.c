/* Ridge statistics with an incrementally maintained inverse, shared by the
 * joint and the per-action ridge models (see linalg.h for the definition of
 * the statistics and of forgetting). Per update: P ← P/γ minus a
 * Sherman–Morrison rank-1 term, A and b updated in place, θ by the
 * recursive-least-squares step θ += P'φ (r - φᵀθ), all O(d²) and fused in
 * single passes. Every so often A is refactored (Cholesky) and P, θ are
 * recomputed from A and b, so rounding never accumulates. */
#include "models/linalg.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/tensor.h"

/* Values beyond this are treated as an overflow about to happen: a state
 * that large is useless, and refusing it early keeps every entry finite. */
#define RLS_HUGE 1e300

typedef double v4 __attribute__((vector_size(32)));

static inline v4 ld4(const double *p) {
  v4 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void st4(double *p, v4 v) {
  memcpy(p, &v, sizeof v);
}

static inline v4 splat(double a) {
  return (v4){a, a, a, a};
}

double oa__dot(int32_t n, const double *x, const double *y) {
  v4 s0 = splat(0), s1 = splat(0);
  int32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 += ld4(x + i) * ld4(y + i);
    s1 += ld4(x + i + 4) * ld4(y + i + 4);
  }
  for (; i + 4 <= n; i += 4)
    s0 += ld4(x + i) * ld4(y + i);
  s0 += s1;
  double s = (s0[0] + s0[1]) + (s0[2] + s0[3]);
  for (; i < n; i++)
    s += x[i] * y[i];
  return s;
}

/* y := a * y + c * x over n entries. */
static inline void axpby(int32_t n, double c, const double *x, double a, double *y) {
  v4 va = splat(a), vc = splat(c);
  int32_t i = 0;
  for (; i + 4 <= n; i += 4)
    st4(y + i, va * ld4(y + i) + vc * ld4(x + i));
  for (; i < n; i++)
    y[i] = a * y[i] + c * x[i];
}

/* One pass over the lower triangle: row i contributes P_i[0..i) · x to y_i
 * (a dot) and x_i P_i[0..i) to y[0..i) (an axpy), so each stored entry is
 * loaded once and the upper triangle is never read. */
void oa__symv(int32_t d, const double *P, const double *x, double *y) {
  memset(y, 0, (size_t)d * sizeof *y);
  for (int32_t i = 0; i < d; i++) {
    const double *Pi = P + (size_t)i * d;
    v4 acc = splat(0), xi = splat(x[i]);
    int32_t j = 0;
    for (; j + 4 <= i; j += 4) {
      v4 p = ld4(Pi + j);
      acc += p * ld4(x + j);
      st4(y + j, ld4(y + j) + xi * p);
    }
    double s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (; j < i; j++) {
      s += Pi[j] * x[j];
      y[j] += x[i] * Pi[j];
    }
    y[i] += s + Pi[i] * x[i];
  }
}

/* Plain comparisons rather than fmax, which is a libm call at -O2. A NaN
 * is never the maximum here; callers check finiteness separately. */
static double maxabs(int32_t n, const double *x) {
  double m = 0;
  for (int32_t i = 0; i < n; i++) {
    double a = fabs(x[i]);
    m = a > m ? a : m;
  }
  return m;
}

static double maxdiag(int32_t d, const double *M) {
  double m = 0;
  for (int32_t i = 0; i < d; i++) {
    double a = fabs(M[(size_t)i * d + i]);
    m = a > m ? a : m;
  }
  return m;
}

static int all_finite(size_t n, const double *x) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}

size_t oa__rls_doubles(int32_t d) {
  return 2 * (size_t)d * d + 2 * (size_t)d;
}

size_t oa__rls_work_doubles(int32_t d) {
  return 3 * (size_t)d * d + 5 * (size_t)d;
}

static void rls_bind(oa__rls *s, double *mem, int32_t d) {
  size_t dd = (size_t)d * d;
  s->mem = mem;
  s->A = mem;
  s->P = mem + dd;
  s->b = mem + 2 * dd;
  s->theta = mem + 2 * dd + d;
}

int oa__rls_init(oa__rls *s, int32_t d, double lambda, oa_error *err) {
  double *mem = oa_alloc_aligned(oa__rls_doubles(d) * sizeof(double));
  if (!mem)
    return oa_error_set(err, OA_ENOMEM, "out of memory for ridge statistics of dim %d",
                        d);
  rls_bind(s, mem, d);
  oa__rls_reset(s, d, lambda);
  return 0;
}

void oa__rls_free(oa__rls *s) {
  oa_free_aligned(s->mem);
  s->mem = s->A = s->P = s->b = s->theta = NULL;
}

void oa__rls_reset(oa__rls *s, int32_t d, double lambda) {
  memset(s->mem, 0, oa__rls_doubles(d) * sizeof(double));
  for (int32_t i = 0; i < d; i++) {
    s->A[(size_t)i * d + i] = lambda;
    s->P[(size_t)i * d + i] = 1 / lambda;
  }
  s->prior = 1;
  s->since = 0;
}

void oa__rls_copy(oa__rls *dst, const oa__rls *src, int32_t d) {
  memcpy(dst->mem, src->mem, oa__rls_doubles(d) * sizeof(double));
  dst->prior = src->prior;
  dst->since = src->since;
}

/* Row-oriented Cholesky (L[i][j] from dot products of rows i and j), so
 * every inner loop is a contiguous vectorised dot. Reads the lower triangle
 * of A (stride d); L may alias A. */
static int cholesky(int32_t d, const double *A, double *L) {
  if (L != A)
    for (int32_t i = 0; i < d; i++)
      memcpy(L + (size_t)i * d, A + (size_t)i * d, (size_t)(i + 1) * sizeof *L);
  for (int32_t j = 0; j < d; j++) {
    double *rj = L + (size_t)j * d;
    double s = rj[j] - oa__dot(j, rj, rj);
    if (!(s > 0) || !isfinite(s)) return -1;
    double l = sqrt(s), il = 1 / l;
    rj[j] = l;
    for (int32_t i = j + 1; i < d; i++) {
      double *ri = L + (size_t)i * d;
      ri[j] = (ri[j] - oa__dot(j, ri, rj)) * il;
    }
    memset(rj + j + 1, 0, (size_t)(d - j - 1) * sizeof *rj);
  }
  return 0;
}

int oa__rls_cholesky(const oa__rls *s, int32_t d, double *L, oa_error *err) {
  if (cholesky(d, s->A, L))
    return oa_error_set(err, OA_ENUMERIC, "ridge statistics are not positive definite");
  return 0;
}

/* P := A⁻¹ = L⁻ᵀ L⁻¹ from the factor, by two triangular solves on the
 * identity; the lower triangle (the only one used) gets the average of the
 * two computed halves. */
static void inverse_from_cholesky(int32_t d, const double *L, double *P) {
  memset(P, 0, (size_t)d * d * sizeof *P);
  for (int32_t i = 0; i < d; i++)
    P[(size_t)i * d + i] = 1;
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, d, d, 1.0,
              L, d, P, d);
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, d, d, 1.0,
              L, d, P, d);
  for (int32_t i = 0; i < d; i++)
    for (int32_t j = 0; j < i; j++) {
      double m = 0.5 * (P[(size_t)i * d + j] + P[(size_t)j * d + i]);
      P[(size_t)i * d + j] = m;
    }
}

int oa__rls_learn(oa__rls *s, const oa__rls_cfg *cfg, const double *x, double r,
                  double *work, oa_error *err) {
  int32_t d = cfg->d;
  double g = cfg->forget, lambda = cfg->lambda;
  double *u = work, *nb = work + d, *nt = work + 2 * (size_t)d;

  /* Everything the update writes is bounded first, so a failure leaves s
   * untouched. u = Pφ; the gain is P'φ = u / (γ + φᵀu). */
  oa__symv(d, s->P, x, u);
  double q = oa__dot(d, x, u), e = r - oa__dot(d, x, s->theta);
  double denom = g + q;
  if (!(denom > 0) || !(denom < RLS_HUGE) || !isfinite(e))
    return oa_error_set(err, OA_ENUMERIC, "ridge update would not be finite");
  double xmax = maxabs(d, x), umax = maxabs(d, u), k = e / denom;
  double abound = g * maxdiag(d, s->A) + xmax * xmax + lambda;
  double pbound = maxdiag(d, s->P) / g + (umax / g) * (umax / denom);
  for (int32_t i = 0; i < d; i++) {
    nb[i] = g * s->b[i] + r * x[i];
    nt[i] = s->theta[i] + k * u[i];
  }
  if (!(abound < RLS_HUGE) || !(pbound < RLS_HUGE) || !all_finite(2 * (size_t)d, nb))
    return oa_error_set(err, OA_ENUMERIC, "ridge update would not be finite");

  double nprior = s->prior * g;
  uint32_t nsince = s->since + 1;
  if (nsince < (uint32_t)cfg->refactor_every && nprior >= 0.5) {
    double ig = 1 / g, sc = 1 / (g * denom);
    for (int32_t i = 0; i < d; i++)
      axpby(d, -sc * u[i], u, ig, s->P + (size_t)i * d);
    for (int32_t i = 0; i < d; i++)
      axpby(i + 1, x[i], x, g, s->A + (size_t)i * d);
    memcpy(s->b, nb, 2 * (size_t)d * sizeof *nb); /* b and θ are adjacent */
    s->prior = nprior;
    s->since = nsince;
    return 0;
  }

  /* Refactor: build the new state aside, restore the prior to exactly λI,
   * and commit only if the factorisation and the results are sound. */
  oa__rls t;
  rls_bind(&t, nt + d, d);
  double *L = t.mem + oa__rls_doubles(d);
  for (int32_t i = 0; i < d; i++) {
    double *ti = t.A + (size_t)i * d;
    memcpy(ti, s->A + (size_t)i * d, (size_t)(i + 1) * sizeof *ti);
    axpby(i + 1, x[i], x, g, ti);
    ti[i] += (1 - nprior) * lambda;
  }
  if (cholesky(d, t.A, L))
    return oa_error_set(err, OA_ENUMERIC, "ridge statistics are not positive definite");
  inverse_from_cholesky(d, L, t.P);
  memcpy(t.b, nb, (size_t)d * sizeof *nb);
  memcpy(t.theta, nb, (size_t)d * sizeof *nb);
  oa_dchol_solve(L, d, t.theta);
  if (!all_finite((size_t)d * d, t.P) || !all_finite((size_t)d, t.theta))
    return oa_error_set(err, OA_ENUMERIC, "ridge refactorisation is not finite");
  /* The upper triangle of A is unused; copying the block whole is simplest. */
  memcpy(s->mem, t.mem, oa__rls_doubles(d) * sizeof(double));
  s->prior = 1;
  s->since = 0;
  return 0;
}

double oa__rls_quad(const oa__rls *s, int32_t d, const double *x, double *work) {
  oa__symv(d, s->P, x, work);
  double q = oa__dot(d, x, work);
  return q > 0 ? q : 0;
}

void oa__rls_save(const oa__rls *s, int32_t d, oa_buf *out) {
  oa_buf_put_f64(out, s->prior);
  oa_buf_put_u32(out, s->since);
  for (int32_t i = 0; i < d; i++)
    oa_buf_put(out, s->A + (size_t)i * d, (size_t)(i + 1) * sizeof(double));
  for (int32_t i = 0; i < d; i++)
    oa_buf_put(out, s->P + (size_t)i * d, (size_t)(i + 1) * sizeof(double));
  oa_buf_put(out, s->b, 2 * (size_t)d * sizeof(double));
}

int oa__rls_load(oa__rls *s, int32_t d, oa_reader *in, double *work, oa_error *err) {
  memset(s->mem, 0, oa__rls_doubles(d) * sizeof(double));
  s->prior = oa_read_f64(in);
  s->since = oa_read_u32(in);
  for (int32_t i = 0; i < d; i++)
    oa_read(in, s->A + (size_t)i * d, (size_t)(i + 1) * sizeof(double));
  for (int32_t i = 0; i < d; i++)
    oa_read(in, s->P + (size_t)i * d, (size_t)(i + 1) * sizeof(double));
  oa_read(in, s->b, 2 * (size_t)d * sizeof(double));
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "truncated ridge statistics");
  if (!(s->prior >= 0.5 && s->prior <= 1) || !all_finite(oa__rls_doubles(d), s->mem))
    return oa_error_set(err, OA_EFORMAT, "corrupt ridge statistics (non-finite values)");
  for (int32_t i = 0; i < d; i++)
    if (!(s->P[(size_t)i * d + i] > 0))
      return oa_error_set(err, OA_EFORMAT,
                          "corrupt ridge statistics (inverse not positive)");
  if (cholesky(d, s->A, work))
    return oa_error_set(err, OA_EFORMAT,
                        "corrupt ridge statistics (not positive definite)");
  return 0;
}

/* Sixteen rows of Xᵀ at once: a0..a3 hold Σ_{j<i} P_ij x_j for those rows
 * in registers, so each P_ij is loaded once per chunk and only the lower
 * triangle is read: n d²/2 multiply-adds, half of the X P product, with no
 * horizontal sums. (Written out by hand: at -O2 the compiler would keep an
 * array of accumulators on the stack.) */
static void quad_chunk16(int32_t d, const double *P, const double *XT, size_t ld,
                         double *q) {
  v4 q0 = splat(0), q1 = splat(0), q2 = splat(0), q3 = splat(0);
  for (int32_t i = 0; i < d; i++) {
    const double *Pi = P + (size_t)i * d;
    v4 a0 = splat(0), a1 = splat(0), a2 = splat(0), a3 = splat(0);
    for (int32_t j = 0; j < i; j++) {
      v4 p = splat(Pi[j]);
      const double *xj = XT + (size_t)j * ld;
      a0 += p * ld4(xj);
      a1 += p * ld4(xj + 4);
      a2 += p * ld4(xj + 8);
      a3 += p * ld4(xj + 12);
    }
    v4 pii = splat(Pi[i]);
    const double *xi = XT + (size_t)i * ld;
    v4 x0 = ld4(xi), x1 = ld4(xi + 4), x2 = ld4(xi + 8), x3 = ld4(xi + 12);
    q0 += x0 * (pii * x0 + 2 * a0);
    q1 += x1 * (pii * x1 + 2 * a1);
    q2 += x2 * (pii * x2 + 2 * a2);
    q3 += x3 * (pii * x3 + 2 * a3);
  }
  st4(q, q0);
  st4(q + 4, q1);
  st4(q + 8, q2);
  st4(q + 12, q3);
}

/* The same for four rows, with two accumulators to hide the FMA latency. */
static void quad_chunk4(int32_t d, const double *P, const double *XT, size_t ld,
                        double *q) {
  v4 q0 = splat(0);
  for (int32_t i = 0; i < d; i++) {
    const double *Pi = P + (size_t)i * d;
    v4 a0 = splat(0), a1 = splat(0);
    int32_t j = 0;
    for (; j + 2 <= i; j += 2) {
      a0 += splat(Pi[j]) * ld4(XT + (size_t)j * ld);
      a1 += splat(Pi[j + 1]) * ld4(XT + (size_t)(j + 1) * ld);
    }
    if (j < i) a0 += splat(Pi[j]) * ld4(XT + (size_t)j * ld);
    v4 x = ld4(XT + (size_t)i * ld);
    q0 += x * (splat(Pi[i]) * x + 2 * (a0 + a1));
  }
  st4(q, q0);
}

size_t oa__quad_batch_doubles(int32_t d, int32_t n) {
  size_t ld = ((size_t)n + 3) & ~(size_t)3;
  return ld * ((size_t)d + 1);
}

void oa__quad_batch(int32_t d, const double *P, int32_t n, const double *X, int64_t ldx,
                    double *work, double *q) {
  size_t ld = ((size_t)n + 3) & ~(size_t)3;
  double *XT = work, *qs = work + ld * d;
  for (int32_t j = 0; j < d; j++) {
    double *r = XT + (size_t)j * ld;
    for (int32_t k = 0; k < n; k++)
      r[k] = X[(int64_t)k * ldx + j];
    for (size_t k = (size_t)n; k < ld; k++)
      r[k] = 0;
  }
  size_t k0 = 0;
  for (; k0 + 16 <= ld; k0 += 16)
    quad_chunk16(d, P, XT + k0, ld, qs + k0);
  for (; k0 < ld; k0 += 4)
    quad_chunk4(d, P, XT + k0, ld, qs + k0);
  for (int32_t k = 0; k < n; k++)
    q[k] = qs[k] > 0 ? qs[k] : 0;
}

int oa__grow(double **buf, size_t *cap, size_t need, oa_error *err) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 64;
  while (n < need)
    n *= 2;
  double *p = oa_alloc_aligned(n * sizeof *p);
  if (!p) return oa_error_set(err, OA_ENOMEM, "out of memory for %zu scratch doubles", n);
  oa_free_aligned(*buf);
  *buf = p;
  *cap = n;
  return 0;
}
