/* Joint ridge regression (kind "ridge"): one set of statistics over joint
 * features φ(x, a), so a never-seen action is still scored from its
 * features. LinUCB is this model plus the UCB explorer (width), linear
 * Thompson sampling is this model plus `sample`.
 *
 * The statistics and the forgetting rule are defined in linalg.h: with
 * γ = forget, A = c λI + Σ γ^(t-s) φφᵀ and b = Σ γ^(t-s) r φ, where the
 * prior weight c decays with the data and is reset to 1 at every
 * refactorisation (which happens at least every refactor_every updates and
 * whenever c would fall below 1/2), so the prior precision stays in
 * [λ/2, λ] and P = A⁻¹ stays exact under Sherman–Morrison. With forget = 1
 * the model is the textbook λI + Σ φφᵀ.
 *
 * Costs: score is one dgemv for the means and, only when widths are asked
 * for, one pass over the lower triangle of P for all rows at once
 * (oa__quad_batch: n d²/2 multiply-adds, faster than a dgemm at decision
 * sizes); update is O(d²) (a refactor, O(d³), every min(refactor_every,
 * ~ln 2 / (1 - γ)) updates); sample needs the Cholesky factor of A,
 * computed lazily (O(d³/3)) and cached until the next update, then one
 * triangular solve and one dgemm for all draws. Thompson sampling that
 * alternates decide and learn therefore pays O(d³/3) per decision.
 *
 * Scratch buffers live in the model and grow as needed, so the hot path
 * never allocates once warm. A model is single-threaded: concurrent calls
 * on one model (even two scores) are not allowed. */
#include "models/model.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/tensor.h"
#include "models/linalg.h"

#define RIDGE_VERSION 1
#define RIDGE_MAX_DIM 16384

typedef struct ridge {
  oa_model base;
  oa__rls_cfg cfg;
  double v;
  oa__rls st;
  oa__rls snap; /* copy of st during a multi-example update (allocated on first use) */
  int fresh;    /* nothing learned or loaded yet: lambda may still change */
  double *work; /* oa__rls_work_doubles(d), for learning and load checks */
  double *L;    /* Cholesky factor of A for sample(), valid when L_ok */
  int L_ok;
  double *scratch; /* Z for widths, posterior draws for sample */
  size_t scratch_cap;
} ridge;

static const double *row(const oa_batch *b, int32_t i) {
  return b->x + (int64_t)i * b->ldx;
}

/* BLAS takes the batch only when its rows are laid out as a matrix. */
static int blas_rows(const oa_batch *b) {
  return b->ldx >= b->d && b->ldx <= INT_MAX;
}

static int ridge_score(oa_model *m, const oa_batch *b, double *mean, double *width,
                       oa_error *err) {
  ridge *r = (ridge *)m;
  int32_t d = m->dim, n = b->n;
  if (b->ldx == 0) {
    double mu = oa__dot(d, b->x, r->st.theta);
    double w = width ? sqrt(oa__rls_quad(&r->st, d, b->x, r->work)) : 0;
    for (int32_t i = 0; i < n; i++)
      mean[i] = mu;
    if (width)
      for (int32_t i = 0; i < n; i++)
        width[i] = w;
    return 0;
  }
  if (!blas_rows(b)) {
    for (int32_t i = 0; i < n; i++) {
      mean[i] = oa__dot(d, row(b, i), r->st.theta);
      if (width) width[i] = sqrt(oa__rls_quad(&r->st, d, row(b, i), r->work));
    }
    return 0;
  }
  cblas_dgemv(CblasRowMajor, CblasNoTrans, n, d, 1.0, b->x, (int)b->ldx, r->st.theta, 1,
              0.0, mean, 1);
  if (!width) return 0;
  if (n <= 2) {
    for (int32_t i = 0; i < n; i++)
      width[i] = sqrt(oa__rls_quad(&r->st, d, row(b, i), r->work));
    return 0;
  }
  int rc = oa__grow(&r->scratch, &r->scratch_cap, oa__quad_batch_doubles(d, n), err);
  if (rc) return rc;
  oa__quad_batch(d, r->st.P, n, b->x, b->ldx, r->scratch, width);
  for (int32_t i = 0; i < n; i++)
    width[i] = sqrt(width[i]);
  return 0;
}

/* θ̃ = θ + v L⁻ᵀ z has covariance v² (L Lᵀ)⁻¹ = v² A⁻¹. All draws at once:
 * W L = v Z (one trsm), then the scores W Xᵀ (one dgemm). */
static int ridge_sample(oa_model *m, const oa_batch *b, int draws, oa_rng *rng,
                        double *out, oa_error *err) {
  ridge *r = (ridge *)m;
  int32_t d = m->dim, n = b->n;
  if (!r->L) {
    r->L = oa_alloc_aligned((size_t)d * d * sizeof(double));
    if (!r->L)
      return oa_error_set(err, OA_ENOMEM, "out of memory for a ridge posterior factor");
  }
  if (!r->L_ok) {
    int rc = oa__rls_cholesky(&r->st, d, r->L, err);
    if (rc) return rc;
    r->L_ok = 1;
  }
  int rc = oa__grow(&r->scratch, &r->scratch_cap, (size_t)draws * d, err);
  if (rc) return rc;
  double *W = r->scratch;
  for (size_t i = 0; i < (size_t)draws * d; i++)
    W[i] = oa_rng_normal(rng);
  cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, draws, d,
              r->v, r->L, d, W, d);
  for (int k = 0; k < draws; k++)
    for (int32_t j = 0; j < d; j++)
      W[(size_t)k * d + j] += r->st.theta[j];
  if (b->ldx == 0) {
    for (int k = 0; k < draws; k++) {
      double s = oa__dot(d, W + (size_t)k * d, b->x);
      for (int32_t i = 0; i < n; i++)
        out[(size_t)k * n + i] = s;
    }
  } else if (blas_rows(b)) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, draws, n, d, 1.0, W, d, b->x,
                (int)b->ldx, 0.0, out, n);
  } else {
    for (int k = 0; k < draws; k++)
      for (int32_t i = 0; i < n; i++)
        out[(size_t)k * n + i] = oa__dot(d, W + (size_t)k * d, row(b, i));
  }
  return 0;
}

/* A single example is learned atomically by oa__rls_learn; a batch is made
 * all-or-nothing by a snapshot of the statistics taken before it. */
static int ridge_update(oa_model *m, const oa_example *ex, int n, oa_error *err) {
  ridge *r = (ridge *)m;
  int32_t d = m->dim;
  if (n <= 0) return 0;
  if (n > 1) {
    if (!r->snap.mem) {
      int rc = oa__rls_init(&r->snap, d, r->cfg.lambda, err);
      if (rc) return rc;
    }
    oa__rls_copy(&r->snap, &r->st, d);
  }
  r->L_ok = 0;
  for (int i = 0; i < n; i++) {
    int rc = oa__rls_learn(&r->st, &r->cfg, ex[i].x, ex[i].reward, r->work, err);
    if (rc) {
      if (i > 0) oa__rls_copy(&r->st, &r->snap, d);
      if (n > 1) oa_error_prefix(err, "example %d of %d: ", i, n);
      return rc;
    }
  }
  r->fresh = 0;
  return 0;
}

static size_t ridge_size(const oa_model *m) {
  const ridge *r = (const ridge *)m;
  size_t d = (size_t)m->dim, s = sizeof *r;
  s += oa__rls_doubles(m->dim) * sizeof(double) * (r->snap.mem ? 2 : 1);
  s += oa__rls_work_doubles(m->dim) * sizeof(double);
  if (r->L) s += d * d * sizeof(double);
  return s + r->scratch_cap * sizeof(double);
}

static int ridge_save(const oa_model *m, oa_buf *out, oa_error *err) {
  const ridge *r = (const ridge *)m;
  oa_buf_put_header(out, "RIDG", RIDGE_VERSION);
  oa_buf_put_u32(out, (uint32_t)m->dim);
  oa_buf_put_f64(out, r->cfg.lambda);
  oa__rls_save(&r->st, m->dim, out);
  if (out->failed)
    return oa_error_set(err, OA_ENOMEM, "out of memory while saving a ridge");
  return 0;
}

/* λ is part of the learned state (A contains it) and comes from the data;
 * forget, v and refactor_every stay as configured. */
static int ridge_load(oa_model *m, oa_reader *in, oa_error *err) {
  ridge *r = (ridge *)m;
  int32_t d = m->dim;
  int rc = oa_read_header(in, "RIDG", RIDGE_VERSION, NULL, err);
  if (rc) return rc;
  uint32_t dim = oa_read_u32(in);
  double lambda = oa_read_f64(in);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "truncated ridge data");
  if (dim != (uint32_t)d)
    return oa_error_set(err, OA_EDIM, "saved ridge has dim %u, this one %d", dim, d);
  if (!(lambda > 0) || !isfinite(lambda))
    return oa_error_set(err, OA_EFORMAT, "corrupt ridge data (lambda %g)", lambda);
  oa__rls t;
  rc = oa__rls_init(&t, d, lambda, err);
  if (rc) return rc;
  rc = oa__rls_load(&t, d, in, r->work, err);
  if (rc) {
    oa__rls_free(&t);
    return rc;
  }
  oa__rls_free(&r->st);
  r->st = t;
  r->cfg.lambda = lambda;
  r->fresh = 0;
  r->L_ok = 0;
  return 0;
}

int oa__ridge_set_param(oa__rls_cfg *cfg, double *v, int fresh, const char *model,
                        const char *name, double value, oa_error *err) {
  if (!strcmp(name, "lambda")) {
    if (!(value > 0) || !isfinite(value))
      return oa_error_set(err, OA_EINVAL, "lambda must be a positive number, got %g",
                          value);
    if (!fresh)
      return oa_error_set(err, OA_ESTATE, "lambda can only change before the %s learns",
                          model);
    cfg->lambda = value;
  } else if (!strcmp(name, "forget")) {
    if (!(value > 0 && value <= 1))
      return oa_error_set(err, OA_EINVAL, "forget must be in (0, 1], got %g", value);
    cfg->forget = value;
  } else if (!strcmp(name, "v")) {
    if (!(value >= 0) || !isfinite(value))
      return oa_error_set(err, OA_EINVAL, "v must be a finite number >= 0, got %g",
                          value);
    *v = value;
  } else if (!strcmp(name, "refactor_every")) {
    if (!(value >= 1 && value <= INT32_MAX) || value != floor(value))
      return oa_error_set(err, OA_EINVAL,
                          "refactor_every must be a positive integer, got %g", value);
    cfg->refactor_every = (int32_t)value;
  } else {
    return 1;
  }
  return 0;
}

int oa__ridge_get_param(const oa__rls_cfg *cfg, double v, const char *name,
                        double *value) {
  if (!strcmp(name, "lambda"))
    *value = cfg->lambda;
  else if (!strcmp(name, "forget"))
    *value = cfg->forget;
  else if (!strcmp(name, "v"))
    *value = v;
  else if (!strcmp(name, "refactor_every"))
    *value = cfg->refactor_every;
  else
    return 1;
  return 0;
}

static int ridge_set_param(oa_model *m, const char *name, double value, oa_error *err) {
  ridge *r = (ridge *)m;
  int rc = oa__ridge_set_param(&r->cfg, &r->v, r->fresh, "ridge", name, value, err);
  if (rc == 1) return oa_error_set(err, OA_EINVAL, "ridge has no parameter '%s'", name);
  if (rc == 0 && !strcmp(name, "lambda")) { /* the prior lives in A */
    oa__rls_reset(&r->st, m->dim, value);
    r->L_ok = 0;
  }
  return rc;
}

static int ridge_get_param(const oa_model *m, const char *name, double *value,
                           oa_error *err) {
  const ridge *r = (const ridge *)m;
  if (oa__ridge_get_param(&r->cfg, r->v, name, value))
    return oa_error_set(err, OA_EINVAL, "ridge has no parameter '%s'", name);
  return 0;
}

static void ridge_destroy(oa_model *m) {
  ridge *r = (ridge *)m;
  oa__rls_free(&r->st);
  oa__rls_free(&r->snap);
  oa_free_aligned(r->work);
  oa_free_aligned(r->L);
  oa_free_aligned(r->scratch);
  free(r);
}

static const oa_model_ops ridge_ops = {
    .kind = "ridge",
    .needs_candidates = 0,
    .per_arm = 0,
    .score = ridge_score,
    .sample = ridge_sample,
    .update = ridge_update,
    .size_bytes = ridge_size,
    .save = ridge_save,
    .load = ridge_load,
    .set_param = ridge_set_param,
    .get_param = ridge_get_param,
    .destroy = ridge_destroy,
};

/* Declared in linalg.h; zero fields mean "default". */
int oa__ridge_check_config(const oa_ridge_config *cfg, oa__rls_cfg *out, double *v,
                           oa_error *err) {
  if (!cfg) return oa_error_set(err, OA_EINVAL, "ridge needs a configuration");
  if (cfg->dim < 1)
    return oa_error_set(err, OA_EINVAL, "ridge dim must be >= 1, got %d", cfg->dim);
  if (cfg->dim > RIDGE_MAX_DIM)
    return oa_error_set(err, OA_ELIMIT, "ridge dim %d is above the limit of %d", cfg->dim,
                        RIDGE_MAX_DIM);
  out->d = cfg->dim;
  out->lambda = cfg->lambda == 0 ? 1 : cfg->lambda;
  out->forget = cfg->forget == 0 ? 1 : cfg->forget;
  out->refactor_every = cfg->refactor_every == 0 ? 1000 : cfg->refactor_every;
  *v = cfg->v == 0 ? 1 : cfg->v;
  if (!(out->lambda > 0) || !isfinite(out->lambda))
    return oa_error_set(err, OA_EINVAL, "ridge lambda must be positive, got %g",
                        cfg->lambda);
  if (!(out->forget > 0 && out->forget <= 1))
    return oa_error_set(err, OA_EINVAL, "ridge forget must be in (0, 1], got %g",
                        cfg->forget);
  if (!(*v >= 0) || !isfinite(*v))
    return oa_error_set(err, OA_EINVAL, "ridge v must be >= 0, got %g", cfg->v);
  if (out->refactor_every < 1)
    return oa_error_set(err, OA_EINVAL, "ridge refactor_every must be >= 1, got %d",
                        cfg->refactor_every);
  return 0;
}

oa_model *oa_ridge_new(const oa_ridge_config *cfg, oa_error *err) {
  oa__rls_cfg c;
  double v;
  if (oa__ridge_check_config(cfg, &c, &v, err)) return NULL;
  ridge *r = calloc(1, sizeof *r);
  if (!r) {
    oa_error_set(err, OA_ENOMEM, "out of memory for a ridge model");
    return NULL;
  }
  r->base = (oa_model){.ops = &ridge_ops, .dim = c.d, .arms = 0, .updates = 0};
  r->cfg = c;
  r->v = v;
  r->fresh = 1;
  r->work = oa_alloc_aligned(oa__rls_work_doubles(c.d) * sizeof(double));
  if (!r->work || oa__rls_init(&r->st, c.d, c.lambda, err)) {
    if (!r->work) oa_error_set(err, OA_ENOMEM, "out of memory for a ridge model");
    ridge_destroy(&r->base);
    return NULL;
  }
  return &r->base;
}
