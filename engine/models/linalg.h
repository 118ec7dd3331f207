/* Private dense kernels shared by the joint ridge (models/ridge.c) and the
 * per-action ridge (models/disjoint_ridge.c): one set of ridge statistics
 * ("rls", recursive least squares) with its incrementally maintained
 * inverse, plus the small vector loops both hot paths need. Nothing outside
 * engine/models and tests/c may include this header.
 *
 * The statistics of one rls state after t examples (φ_s, r_s) are
 *
 *   A_t = c_t λ I + Σ_s γ^(t-s) φ_s φ_sᵀ,   b_t = Σ_s γ^(t-s) r_s φ_s,
 *   θ_t = A_t⁻¹ b_t,                       P_t ≈ A_t⁻¹,
 *
 * with γ = forget. The prior weight c_t starts at 1, decays with the data
 * (c ← γ c at every update, which is what makes P ← P/γ exact) and is reset
 * to exactly 1 (A += (1 - c) λ I) at every refactorisation. A refactor
 * happens after `refactor_every` updates, and also as soon as c would drop
 * below 1/2, so the prior precision always stays within [λ/2, λ]: the
 * definition is exact (a direct solve with the same c_t gives the same θ)
 * and costs O(d²) per update plus one O(d³) refactor every
 * min(refactor_every, ~ln 2 / (1 - γ)) updates. With forget = 1, c is
 * always 1 and A is the textbook λI + Σ φφᵀ. */
#ifndef ONEARM_MODELS_LINALG_H
#define ONEARM_MODELS_LINALG_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "onearm.h"

typedef struct oa__rls_cfg {
  int32_t d;
  double lambda, forget;
  int32_t refactor_every;
} oa__rls_cfg;

/* One set of statistics. All four arrays live in one 64-byte aligned block
 * `mem` of oa__rls_doubles(d) doubles (so a snapshot is one memcpy). */
typedef struct oa__rls {
  double *mem;
  double *A;      /* d x d; only the lower triangle (with the diagonal) is kept */
  double *P;      /* d x d, full and symmetric, A⁻¹ up to rounding */
  double *b;      /* d */
  double *theta;  /* d, θ = A⁻¹ b */
  double prior;   /* c: the prior precision in A is c λ I, c in [1/2, 1] */
  uint32_t since; /* updates since the last refactorisation */
} oa__rls;

size_t oa__rls_doubles(int32_t d);
/* Doubles of scratch that oa__rls_learn needs (one buffer per model). */
size_t oa__rls_work_doubles(int32_t d);
/* Allocates s->mem and sets the prior state (A = λI, P = I/λ, b = θ = 0).
 * 0 or OA_ENOMEM. */
int oa__rls_init(oa__rls *s, int32_t d, double lambda, oa_error *err);
void oa__rls_free(oa__rls *s);
/* Back to the prior state with the given λ (memory kept). */
void oa__rls_reset(oa__rls *s, int32_t d, double lambda);
/* dst := src (both initialised with the same d). */
void oa__rls_copy(oa__rls *dst, const oa__rls *src, int32_t d);

/* Learns one example. Atomic: on error (OA_ENUMERIC: the result would not
 * be finite, or A stopped being positive definite) s is unchanged. `work`
 * holds oa__rls_work_doubles(d) doubles. */
int oa__rls_learn(oa__rls *s, const oa__rls_cfg *cfg, const double *x, double r,
                  double *work, oa_error *err);

/* Cholesky factor of A: L (d x d, lower, strict upper zeroed) with
 * A = L Lᵀ. 0, or OA_ENUMERIC when A is not positive definite. O(d³/3). */
int oa__rls_cholesky(const oa__rls *s, int32_t d, double *L, oa_error *err);

/* xᵀ P x, clamped at 0 (the squared width). */
double oa__rls_quad(const oa__rls *s, int32_t d, const double *x, double *work);

/* Save/load of one state (prior, since, lower A, P, b, θ). The loader
 * writes into an initialised temporary s and validates it: finite numbers,
 * c in [1/2, 1], A positive definite (checked with `work` of d² doubles). */
void oa__rls_save(const oa__rls *s, int32_t d, oa_buf *out);
int oa__rls_load(oa__rls *s, int32_t d, oa_reader *in, double *work, oa_error *err);

/* q[k] := x_kᵀ P x_k (clamped at 0) for n rows x_k = X + k ldx, reading
 * only the lower triangle of P; `work` holds oa__quad_batch_doubles(d, n)
 * doubles. Half the flops of forming X P, and much faster than a BLAS
 * dgemm at the small sizes of a decision (20 rows of 64). */
size_t oa__quad_batch_doubles(int32_t d, int32_t n);
void oa__quad_batch(int32_t d, const double *P, int32_t n, const double *X, int64_t ldx,
                    double *work, double *q);

/* Small vector loops (GCC/Clang vector extensions, so they vectorise at -O2
 * where the compiler's cheap cost model would leave them scalar). */
double oa__dot(int32_t n, const double *x, const double *y);
/* y := P x for a symmetric d x d P stored in its lower triangle. */
void oa__symv(int32_t d, const double *P, const double *x, double *y);

/* Fills the defaults of a ridge configuration (a zero field means
 * "default": lambda 1, forget 1, v 1, refactor_every 1000) and checks the
 * ranges; defined in ridge.c, shared with disjoint_ridge.c. */
struct oa_ridge_config;
int oa__ridge_check_config(const struct oa_ridge_config *cfg, oa__rls_cfg *out, double *v,
                           oa_error *err);

/* The hyper-parameters both ridge models share, by name: "lambda" (only
 * while `fresh`: A holds it), "forget", "v", "refactor_every". set returns
 * 0, an OA_E* error naming `model`, or 1 when `name` is none of them; get
 * likewise. Defined in ridge.c. */
int oa__ridge_set_param(oa__rls_cfg *cfg, double *v, int fresh, const char *model,
                        const char *name, double value, oa_error *err);
int oa__ridge_get_param(const oa__rls_cfg *cfg, double v, const char *name,
                        double *value);

/* Grows a scratch buffer to at least `need` doubles (contents not kept).
 * 0 or OA_ENOMEM. */
int oa__grow(double **buf, size_t *cap, size_t need, oa_error *err);

#endif
