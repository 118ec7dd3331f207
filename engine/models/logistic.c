/* Online Bayesian logistic regression with a diagonal Gaussian posterior
 * (the idea of Chapelle & Li 2011, "An empirical evaluation of Thompson
 * sampling", Algorithm 3), for rewards in [0, 1] (binary or fractional).
 *
 * State: the posterior mode w and the per-coordinate precision q, so the
 * posterior is N(w, diag(1/q)). One example (x, r) is learned by
 *   1. forgetting: q ← γq + (1−γ)λ (old evidence fades back to the prior);
 *   2. the new mode: w ← argmin ½ Σ q_i (w_i − m_i)² + BCE(r, σ(wᵀx)) with
 *      m the old mode. The gradient condition makes w − m parallel to x/q,
 *      so the minimiser is found exactly by a safeguarded 1-D Newton solve
 *      on s = wᵀx (a few iterations), not by a fixed number of gradient
 *      steps that might under- or overshoot;
 *   3. the precision: q_i += p(1−p) x_i² with p = σ(wᵀx) at the new mode.
 *
 * `lr` caps the prior precision used in step 2 at 1/lr: without it the step
 * size 1/q_i shrinks towards 0 as evidence piles up and a drifting
 * preference is learned ever more slowly; with it the mode keeps moving at
 * least like SGD with step lr. The posterior variance (widths, samples)
 * still uses the true q.
 *
 * Scores: mean = σ(wᵀx); width = p(1−p)·sqrt(Σ x_i²/q_i), the delta-method
 * std of the probability; sample: w̃ ~ N(w, v² diag(1/q)), then σ(w̃ᵀx). */
#include "core/error.h"
#include "models/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOGISTIC_VERSION 1

typedef struct oa_logistic {
  oa_model base;
  double lambda, forget, lr, v;
  double *w, *q;         /* posterior mode and diagonal precision (dim each) */
  double *tw, *tq, *tmp; /* scratch: working copies for all-or-nothing updates, a draw */
} oa_logistic;

static double sigmoid(double s) {
  if (s >= 0) return 1.0 / (1.0 + exp(-s));
  double e = exp(s);
  return e / (1.0 + e);
}

static int check_param(const char *name, double value, oa_error *err) {
  if (!strcmp(name, "lambda")) {
    if (!(value > 0 && isfinite(value)))
      return oa_error_set(err, OA_EINVAL, "logistic: lambda must be > 0, got %g", value);
  } else if (!strcmp(name, "forget")) {
    if (!(value > 0 && value <= 1))
      return oa_error_set(err, OA_EINVAL, "logistic: forget must be in (0, 1], got %g",
                          value);
  } else if (!strcmp(name, "lr")) {
    if (!(value > 0 && isfinite(value)))
      return oa_error_set(err, OA_EINVAL, "logistic: lr must be > 0, got %g", value);
  } else if (!strcmp(name, "v")) {
    if (!(value >= 0 && isfinite(value)))
      return oa_error_set(err, OA_EINVAL, "logistic: v must be >= 0, got %g", value);
  } else {
    return oa_error_set(err, OA_EINVAL, "logistic model has no parameter '%s'", name);
  }
  return 0;
}

static double dot_row(const double *w, const double *x, int32_t d) {
  double s = 0;
  for (int32_t j = 0; j < d; j++)
    s += w[j] * x[j];
  return s;
}

static int logistic_score(oa_model *m, const oa_batch *b, double *mean, double *width,
                          oa_error *err) {
  const oa_logistic *L = (const oa_logistic *)m;
  int32_t d = m->dim;
  for (int32_t i = 0; i < b->n; i++) {
    const double *x = b->x + (size_t)i * b->ldx;
    double p = sigmoid(dot_row(L->w, x, d));
    mean[i] = p;
    if (width) {
      double v = 0;
      for (int32_t j = 0; j < d; j++)
        v += x[j] * x[j] / L->q[j];
      width[i] = p * (1 - p) * sqrt(v);
    }
  }
  return 0;
}

static int logistic_sample(oa_model *m, const oa_batch *b, int draws, oa_rng *rng,
                           double *out, oa_error *err) {
  oa_logistic *L = (oa_logistic *)m;
  int32_t d = m->dim;
  for (int k = 0; k < draws; k++) {
    for (int32_t j = 0; j < d; j++)
      L->tmp[j] = L->w[j] + L->v * oa_rng_normal(rng) / sqrt(L->q[j]);
    for (int32_t i = 0; i < b->n; i++)
      out[(size_t)k * b->n + i] = sigmoid(dot_row(L->tmp, b->x + (size_t)i * b->ldx, d));
  }
  return 0;
}

/* Solves s − s0 + V (σ(s) − r) = 0 for s. The left side increases strictly
 * (derivative 1 + V σ(1−σ) >= 1) and σ − r lies in [−r, 1−r], so the root is
 * bracketed by [s0 − V(1−r), s0 + V r]; Newton steps that leave the
 * bracket fall back to bisection. */
static double solve_mode(double s0, double V, double r) {
  double lo = s0 - V * (1 - r), hi = s0 + V * r, s = s0;
  for (int it = 0; it < 100; it++) {
    double p = sigmoid(s);
    double g = s - s0 + V * (p - r);
    if (g > 0)
      hi = s;
    else
      lo = s;
    double next = s - g / (1 + V * p * (1 - p));
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
    if (fabs(next - s) <= 1e-12 * (1 + fabs(s))) return next;
    s = next;
  }
  return s;
}

static int logistic_update(oa_model *m, const oa_example *ex, int n, oa_error *err) {
  oa_logistic *L = (oa_logistic *)m;
  int32_t d = m->dim;
  for (int k = 0; k < n; k++)
    if (!(ex[k].reward >= 0 && ex[k].reward <= 1))
      return oa_error_set(err, OA_EINVAL, "logistic: reward %g is outside [0, 1]",
                          ex[k].reward);
  memcpy(L->tw, L->w, sizeof(double) * (size_t)d);
  memcpy(L->tq, L->q, sizeof(double) * (size_t)d);
  double qcap = 1.0 / L->lr;
  for (int k = 0; k < n; k++) {
    const double *x = ex[k].x;
    double r = ex[k].reward;
    if (L->forget < 1)
      for (int32_t j = 0; j < d; j++)
        L->tq[j] = L->forget * L->tq[j] + (1 - L->forget) * L->lambda;
    double s0 = dot_row(L->tw, x, d), V = 0;
    for (int32_t j = 0; j < d; j++)
      V += x[j] * x[j] / fmin(L->tq[j], qcap);
    double s = solve_mode(s0, V, r);
    double c = sigmoid(s) - r;
    for (int32_t j = 0; j < d; j++)
      L->tw[j] -= c * x[j] / fmin(L->tq[j], qcap);
    double p = sigmoid(dot_row(L->tw, x, d));
    for (int32_t j = 0; j < d; j++)
      L->tq[j] += p * (1 - p) * x[j] * x[j];
  }
  if (!oa_all_finite(L->tw, d) || !oa_all_finite(L->tq, d))
    return oa_error_set(err, OA_ENUMERIC,
                        "logistic: update would make the weights non-finite");
  memcpy(L->w, L->tw, sizeof(double) * (size_t)d);
  memcpy(L->q, L->tq, sizeof(double) * (size_t)d);
  return 0;
}

static size_t logistic_size(const oa_model *m) {
  return sizeof(oa_logistic) + 5 * sizeof(double) * (size_t)m->dim;
}

static int logistic_save(const oa_model *m, oa_buf *out, oa_error *err) {
  const oa_logistic *L = (const oa_logistic *)m;
  oa_buf_put_header(out, "LOGR", LOGISTIC_VERSION);
  oa_buf_put_f64(out, L->lambda);
  oa_buf_put_f64(out, L->forget);
  oa_buf_put_f64(out, L->lr);
  oa_buf_put_f64(out, L->v);
  oa_buf_put_u32(out, (uint32_t)m->dim);
  oa_buf_put(out, L->w, sizeof(double) * (size_t)m->dim);
  oa_buf_put(out, L->q, sizeof(double) * (size_t)m->dim);
  return 0;
}

/* Reads into the scratch arrays and validates everything before touching
 * the live state, so a bad input leaves the model as it was. */
static int logistic_load(oa_model *m, oa_reader *in, oa_error *err) {
  oa_logistic *L = (oa_logistic *)m;
  int rc = oa_read_header(in, "LOGR", LOGISTIC_VERSION, NULL, err);
  if (rc) return rc;
  double lambda = oa_read_f64(in), forget = oa_read_f64(in), lr = oa_read_f64(in),
         v = oa_read_f64(in);
  uint32_t d = oa_read_u32(in);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "logistic: truncated model data");
  if ((int32_t)d != m->dim)
    return oa_error_set(err, OA_EDIM, "logistic: saved dim %u, this model has %d", d,
                        m->dim);
  oa_read(in, L->tw, sizeof(double) * d);
  oa_read(in, L->tq, sizeof(double) * d);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "logistic: truncated model data");
  if (check_param("lambda", lambda, NULL) || check_param("forget", forget, NULL) ||
      check_param("lr", lr, NULL) || check_param("v", v, NULL))
    return oa_error_set(err, OA_EFORMAT, "logistic: saved hyper-parameters are invalid");
  if (!oa_all_finite(L->tw, d) || !oa_all_finite(L->tq, d))
    return oa_error_set(err, OA_EFORMAT, "logistic: saved weights are not finite");
  for (uint32_t j = 0; j < d; j++)
    if (!(L->tq[j] > 0))
      return oa_error_set(err, OA_EFORMAT, "logistic: saved precision is not positive");
  memcpy(L->w, L->tw, sizeof(double) * d);
  memcpy(L->q, L->tq, sizeof(double) * d);
  L->lambda = lambda;
  L->forget = forget;
  L->lr = lr;
  L->v = v;
  return 0;
}

static int logistic_set_param(oa_model *m, const char *name, double value,
                              oa_error *err) {
  oa_logistic *L = (oa_logistic *)m;
  int rc = check_param(name, value, err);
  if (rc) return rc;
  if (!strcmp(name, "lambda")) {
    /* The prior can only be chosen before evidence is mixed into q. */
    if (m->updates > 0)
      return oa_error_set(err, OA_ESTATE,
                          "logistic: lambda can only change before learning");
    L->lambda = value;
    for (int32_t j = 0; j < m->dim; j++)
      L->q[j] = value;
  } else if (!strcmp(name, "forget")) {
    L->forget = value;
  } else if (!strcmp(name, "lr")) {
    L->lr = value;
  } else {
    L->v = value;
  }
  return 0;
}

static int logistic_get_param(const oa_model *m, const char *name, double *value,
                              oa_error *err) {
  const oa_logistic *L = (const oa_logistic *)m;
  if (!strcmp(name, "lambda"))
    *value = L->lambda;
  else if (!strcmp(name, "forget"))
    *value = L->forget;
  else if (!strcmp(name, "lr"))
    *value = L->lr;
  else if (!strcmp(name, "v"))
    *value = L->v;
  else
    return oa_error_set(err, OA_EINVAL, "logistic model has no parameter '%s'", name);
  return 0;
}

static void logistic_destroy(oa_model *m) {
  oa_logistic *L = (oa_logistic *)m;
  free(L->w);
  free(L);
}

static const oa_model_ops logistic_ops = {
    .kind = "logistic",
    .needs_candidates = 0,
    .per_arm = 0,
    .score = logistic_score,
    .sample = logistic_sample,
    .update = logistic_update,
    .size_bytes = logistic_size,
    .save = logistic_save,
    .load = logistic_load,
    .set_param = logistic_set_param,
    .get_param = logistic_get_param,
    .destroy = logistic_destroy,
};

/* Config fields left at 0 take their defaults (lambda 1, forget 1, lr 0.1);
 * v starts at 1 and is set with set_param("v"). The caller frees the model
 * with oa_model_free. */
oa_model *oa_logistic_new(const oa_logistic_config *cfg, oa_error *err) {
  if (!cfg) {
    oa_error_set(err, OA_EINVAL, "logistic: missing config");
    return NULL;
  }
  if (cfg->dim < 1 || cfg->dim > (1 << 24)) {
    oa_error_set(err, OA_EINVAL, "logistic: dim must be in 1..%d, got %d", 1 << 24,
                 (int)cfg->dim);
    return NULL;
  }
  double lambda = cfg->lambda == 0 ? 1.0 : cfg->lambda;
  double forget = cfg->forget == 0 ? 1.0 : cfg->forget;
  double lr = cfg->lr == 0 ? 0.1 : cfg->lr;
  if (check_param("lambda", lambda, err) || check_param("forget", forget, err) ||
      check_param("lr", lr, err))
    return NULL;
  oa_logistic *L = calloc(1, sizeof *L);
  double *mem = calloc(5 * (size_t)cfg->dim, sizeof(double));
  if (!L || !mem) {
    free(L);
    free(mem);
    oa_error_set(err, OA_ENOMEM, "logistic: out of memory for dim %d", (int)cfg->dim);
    return NULL;
  }
  size_t d = (size_t)cfg->dim;
  L->base.ops = &logistic_ops;
  L->base.dim = cfg->dim;
  L->w = mem; /* one block; w owns it */
  L->q = mem + d;
  L->tw = mem + 2 * d;
  L->tq = mem + 3 * d;
  L->tmp = mem + 4 * d;
  L->lambda = lambda;
  L->forget = forget;
  L->lr = lr;
  L->v = 1.0;
  for (size_t j = 0; j < d; j++)
    L->q[j] = lambda;
  return &L->base;
}
