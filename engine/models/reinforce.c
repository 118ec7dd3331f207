/* A linear softmax policy trained by policy gradient ("reinforce",
 * Williams 1992) with a running-average reward baseline.
 *
 * Scores are logits θᵀφ (width 0, no posterior); the policy's explorer is
 * expected to be a softmax at the same temperature, so that the candidate
 * probabilities the engine logs are π_b ∝ exp(θᵀφ_b / T).
 *
 * Learning needs the decision's whole candidate set: the gradient of
 * log π(chosen) is (φ_chosen − Σ_b π_b φ_b) / T. π is recomputed from the
 * CURRENT θ over cand_x rather than taken from the logged probabilities,
 * because the gradient is that of the current policy. The step is
 *   θ += lr (r − baseline) ∇ log π(chosen) − lr l2 θ,
 * and the baseline moves afterwards: baseline ← decay baseline + (1−decay) r.
 * Subtracting the baseline reduces the variance without biasing the
 * gradient. The baseline starts at 0.
 *
 * On-policy: there is no importance weighting by the logged propensity.
 * That is exact when rewards come from decisions this policy sampled
 * shortly before (the usual loop); replaying logs of another policy would
 * need a 1/prob correction, which this model does not apply.
 *
 * Save/load carry θ and the baseline; lr, temperature and l2 belong to the
 * receiving model's configuration. */
#include "core/error.h"
#include "models/model.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define REINFORCE_SAVE_VERSION 1

typedef struct reinforce {
  oa_model base;
  double lr, decay, l2, temperature;
  double baseline;
  double *theta;
  /* Scratch: gradient, a copy of θ for rollback, and candidate
   * probabilities (grown to the largest candidate set seen). */
  double *grad, *backup, *pi;
  int32_t pi_cap;
} reinforce;

static int rf_score(oa_model *base, const oa_batch *b, double *mean, double *width,
                    oa_error *err) {
  reinforce *m = (reinforce *)base;
  int32_t d = base->dim;
  if (b->ldx == 0) {
    double s = cblas_ddot(d, b->x, 1, m->theta, 1);
    for (int32_t i = 0; i < b->n; i++)
      mean[i] = s;
  } else if (b->ldx < d) { /* overlapping rows: legal, but not a BLAS matrix */
    for (int32_t i = 0; i < b->n; i++)
      mean[i] = cblas_ddot(d, b->x + i * b->ldx, 1, m->theta, 1);
  } else {
    cblas_dgemv(CblasRowMajor, CblasNoTrans, b->n, d, 1.0, b->x, (int)b->ldx, m->theta, 1,
                0.0, mean, 1);
  }
  for (int32_t i = 0; i < b->n; i++) {
    if (!isfinite(mean[i]))
      return oa_error_set(err, OA_ENUMERIC, "reinforce logit of row %d is not finite", i);
    if (width) width[i] = 0;
  }
  return 0;
}

static int rf_update(oa_model *base, const oa_example *ex, int n, oa_error *err) {
  reinforce *m = (reinforce *)base;
  int32_t d = base->dim;
  int32_t most = 0;
  for (int i = 0; i < n; i++) {
    if (!oa_all_finite(ex[i].cand_x, (long)ex[i].n_cand * d))
      return oa_error_set(err, OA_ENUMERIC, "candidate features contain NaN or Inf");
    if (ex[i].n_cand > most) most = ex[i].n_cand;
  }
  if (most > m->pi_cap) {
    double *t = realloc(m->pi, sizeof(double) * most);
    if (!t) return oa_error_set(err, OA_ENOMEM, "out of memory for %d candidates", most);
    m->pi = t;
    m->pi_cap = most;
  }
  /* All-or-nothing: keep θ and the baseline to restore on a numeric failure. */
  memcpy(m->backup, m->theta, sizeof(double) * d);
  double baseline = m->baseline;
  for (int i = 0; i < n; i++) {
    const oa_example *e = &ex[i];
    int32_t nc = e->n_cand;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, nc, d, 1.0 / m->temperature, e->cand_x, d,
                m->theta, 1, 0.0, m->pi, 1);
    double top = -INFINITY, z = 0;
    for (int32_t c = 0; c < nc; c++)
      if (m->pi[c] > top) top = m->pi[c];
    for (int32_t c = 0; c < nc; c++)
      z += (m->pi[c] = exp(m->pi[c] - top));
    /* grad = (φ_chosen − Σ π_b φ_b) / T */
    memcpy(m->grad, e->cand_x + (size_t)e->chosen * d, sizeof(double) * d);
    cblas_dgemv(CblasRowMajor, CblasTrans, nc, d, -1.0 / z, e->cand_x, d, m->pi, 1, 1.0,
                m->grad, 1);
    double adv = e->reward - m->baseline;
    cblas_dscal(d, 1 - m->lr * m->l2, m->theta, 1);
    cblas_daxpy(d, m->lr * adv / m->temperature, m->grad, 1, m->theta, 1);
    m->baseline = m->decay * m->baseline + (1 - m->decay) * e->reward;
  }
  if (!oa_all_finite(m->theta, d) || !isfinite(m->baseline)) {
    memcpy(m->theta, m->backup, sizeof(double) * d);
    m->baseline = baseline;
    return oa_error_set(err, OA_ENUMERIC,
                        "reinforce update overflowed; the model is unchanged");
  }
  return 0;
}

static size_t rf_size_bytes(const oa_model *base) {
  const reinforce *m = (const reinforce *)base;
  return sizeof *m + sizeof(double) * (3 * (size_t)base->dim + m->pi_cap);
}

static int rf_set_param(oa_model *base, const char *name, double value, oa_error *err) {
  reinforce *m = (reinforce *)base;
  if (!isfinite(value)) return oa_error_set(err, OA_EINVAL, "%s must be finite", name);
  if (!strcmp(name, "lr")) {
    if (!(value > 0))
      return oa_error_set(err, OA_EINVAL, "lr must be > 0, got %g", value);
    m->lr = value;
  } else if (!strcmp(name, "temperature")) {
    if (!(value > 0))
      return oa_error_set(err, OA_EINVAL, "temperature must be > 0, got %g", value);
    m->temperature = value;
  } else if (!strcmp(name, "l2")) {
    if (value < 0) return oa_error_set(err, OA_EINVAL, "l2 must be >= 0, got %g", value);
    m->l2 = value;
  } else {
    return oa_error_set(err, OA_EINVAL, "reinforce model has no parameter '%s'", name);
  }
  return 0;
}

static int rf_get_param(const oa_model *base, const char *name, double *value,
                        oa_error *err) {
  const reinforce *m = (const reinforce *)base;
  if (!strcmp(name, "lr"))
    *value = m->lr;
  else if (!strcmp(name, "temperature"))
    *value = m->temperature;
  else if (!strcmp(name, "l2"))
    *value = m->l2;
  else if (!strcmp(name, "baseline"))
    *value = m->baseline;
  else
    return oa_error_set(err, OA_EINVAL, "reinforce model has no parameter '%s'", name);
  return 0;
}

static int rf_save(const oa_model *base, oa_buf *out, oa_error *err) {
  const reinforce *m = (const reinforce *)base;
  oa_buf_put_header(out, "RNFC", REINFORCE_SAVE_VERSION);
  oa_buf_put_u32(out, (uint32_t)base->dim);
  oa_buf_put_f64(out, m->baseline);
  oa_buf_put(out, m->theta, sizeof(double) * base->dim);
  if (out->failed)
    return oa_error_set(err, OA_ENOMEM, "out of memory while saving reinforce");
  return 0;
}

static int rf_load(oa_model *base, oa_reader *in, oa_error *err) {
  reinforce *m = (reinforce *)base;
  int rc = oa_read_header(in, "RNFC", REINFORCE_SAVE_VERSION, NULL, err);
  if (rc) return rc;
  uint32_t d = oa_read_u32(in);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "truncated reinforce data");
  if (d != (uint32_t)base->dim)
    return oa_error_set(err, OA_EDIM, "saved reinforce model has dim %u, this one %d", d,
                        base->dim);
  double baseline = oa_read_f64(in);
  /* backup is free scratch between updates: decode into it first. */
  oa_read(in, m->backup, sizeof(double) * d);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "truncated reinforce data");
  if (!isfinite(baseline) || !oa_all_finite(m->backup, d))
    return oa_error_set(err, OA_EFORMAT,
                        "saved reinforce model holds non-finite numbers");
  memcpy(m->theta, m->backup, sizeof(double) * d);
  m->baseline = baseline;
  return 0;
}

static void rf_destroy(oa_model *base) {
  reinforce *m = (reinforce *)base;
  if (!m) return;
  free(m->theta);
  free(m->grad);
  free(m->backup);
  free(m->pi);
  free(m);
}

static const oa_model_ops rf_ops = {
    .kind = "reinforce",
    .needs_candidates = 1,
    .score = rf_score,
    .update = rf_update,
    .size_bytes = rf_size_bytes,
    .save = rf_save,
    .load = rf_load,
    .set_param = rf_set_param,
    .get_param = rf_get_param,
    .destroy = rf_destroy,
};

oa_model *oa_reinforce_new(const oa_reinforce_config *cfg, oa_error *err) {
  if (!cfg) {
    oa_error_set(err, OA_EINVAL, "reinforce needs a configuration");
    return NULL;
  }
  if (cfg->dim <= 0) {
    oa_error_set(err, OA_EINVAL, "reinforce dim must be positive, got %d", cfg->dim);
    return NULL;
  }
  if (!(cfg->lr >= 0 && isfinite(cfg->lr)) || !(cfg->l2 >= 0 && isfinite(cfg->l2)) ||
      !(cfg->temperature >= 0 && isfinite(cfg->temperature)) ||
      !(cfg->baseline_decay >= 0 && cfg->baseline_decay < 1)) {
    oa_error_set(
        err, OA_EINVAL,
        "reinforce needs lr > 0, l2 >= 0, temperature > 0, baseline_decay in [0, 1)");
    return NULL;
  }
  reinforce *m = calloc(1, sizeof *m);
  if (!m) goto oom;
  m->base.ops = &rf_ops;
  m->base.dim = cfg->dim;
  m->lr = cfg->lr > 0 ? cfg->lr : 0.05;
  /* 0 means "default" like every other zero field; a baseline that tracks
   * only the last reward is not useful. */
  m->decay = cfg->baseline_decay > 0 ? cfg->baseline_decay : 0.99;
  m->l2 = cfg->l2;
  m->temperature = cfg->temperature > 0 ? cfg->temperature : 1;
  m->theta = calloc(cfg->dim, sizeof(double));
  m->grad = calloc(cfg->dim, sizeof(double));
  m->backup = calloc(cfg->dim, sizeof(double));
  if (!m->theta || !m->grad || !m->backup) goto oom;
  return &m->base;
oom:
  rf_destroy(&m->base);
  oa_error_set(err, OA_ENOMEM, "out of memory for a reinforce model of dim %d", cfg->dim);
  return NULL;
}
