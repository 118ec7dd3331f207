/* A small neural network on concat(x, a) rows ("mlp"), and its neural-linear
 * variant ("neural_linear", Riquelme, Tucker & Snoek 2018).
 *
 * Network: dim -> hidden[0] -> ... -> hidden[n_hidden-1] -> 1, ReLU on the
 * hidden layers, and either a sigmoid output trained with binary cross
 * entropy (rewards must lie in [0, 1]) or a linear output trained with
 * squared loss. Parameters are float32; forward and backward passes run
 * over a whole batch of rows with cblas_sgemm, so scoring 1000 candidates
 * is a handful of matrix products, not 1000 small ones.
 *
 * Learning is off-line in miniature: update() appends (x, reward) to a
 * bounded replay ring (oldest overwritten first); every `train_every`
 * updates, `steps_per_train` Adam steps run on minibatches of `batch` rows
 * drawn uniformly (with replacement) from the ring with the model's own
 * seeded PRNG. Rows in the ring are stored as float32, like the network.
 *
 * Neural-linear mode keeps a Bayesian linear regression on the last hidden
 * layer's activations h (plus a constant 1): A = lambda I + sum h h^T and
 * b = sum r h in double, theta = A^-1 b through a Cholesky factor. Because
 * h changes as the network trains, A and b are rebuilt from the replay ring
 * with the current network every MLP_REFIT_EVERY (500) updates, as in the
 * paper; between rebuilds each new example is added with the h of the
 * network at that moment. In this mode the model describes one posterior:
 * mean = h^T theta (not the network's own output, which only trains the
 * representation), width = sqrt(h^T A^-1 h), and sample() scores h under
 * theta~ ~ N(theta, v^2 A^-1). Forgetting discounts the data part of A and
 * b at every update and keeps the prior lambda I whole, so the matrix stays
 * well conditioned however long the model runs; a rebuild weights the ring's
 * examples by forget^age to match.
 *
 * Failure policy: update() validates every example first (finite, fits a
 * float, in [0, 1] for a sigmoid output) and then cannot fail: a training
 * step whose gradient is not finite is skipped, and counted (get_param
 * "skipped_steps"), so the weights never hold NaN or Inf.
 *
 * Save/load carry the learned state: weights, Adam moments and step,
 * replay contents (oldest first; a smaller ring on load keeps the newest),
 * the regression statistics, counters and the PRNG. Hyper-parameters (lr,
 * l2, v, forget, batch, ...) belong to the receiving model's configuration,
 * which the app and its schedule own; a different lambda is re-applied
 * exactly, since the prior is kept apart from the data in A.
 *
 * Not thread-safe: scoring uses scratch buffers inside the model. */
#include "models/mlp_internal.h"
#include "core/error.h"
#include "core/tensor.h"
#include "models/model.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MLP_MAX_LAYERS   9 /* n_hidden (<= 8) + the output layer */
#define MLP_CHUNK        256
#define MLP_REFIT_EVERY  500
#define MLP_MAX_WIDTH    65536
#define MLP_SAVE_VERSION 1

typedef struct mlp {
  oa_model base;
  int sigmoid, nl;
  int32_t n_layers;                 /* weight layers: n_hidden + 1 */
  int32_t size[MLP_MAX_LAYERS + 1]; /* size[0] = dim, size[n_layers] = 1 */
  size_t woff[MLP_MAX_LAYERS], boff[MLP_MAX_LAYERS];
  size_t n_params;
  float *w, *g, *m1, *m2; /* parameters, gradient, Adam first and second moments */
  uint64_t adam_t;

  double lr, l2, forget, lambda, v;
  int32_t batch, train_every, steps_per_train;
  oa_rng rng;

  /* Replay ring: row k at rx + k * dim; head is the next slot written. */
  int32_t cap, count, head;
  float *rx, *ry;
  uint64_t since_train, since_refit, skipped;

  /* Scratch: act[l] holds rows x size[l] activations (act[0] = input). */
  int32_t rows_cap;
  float *act[MLP_MAX_LAYERS + 1];
  float *d0, *d1, *ybuf;

  /* Neural-linear head, p = last hidden size + 1. */
  int32_t p;
  double *A, *bv, *L, *theta;
  double *hd;       /* rows_cap x p features in double */
  double *At, *bt;  /* rebuild temporaries */
  double *draws;    /* grown on demand: draws x p sampled thetas */
  size_t draws_cap; /* in doubles */
} mlp;

static const oa_model_ops mlp_ops, nl_ops;

/* ---- Network passes ---- */

/* act[0] := rows of the batch [i0, i0 + rows) as float32. Values beyond
 * float range would become Inf inside the network: refused. */
static int load_rows(mlp *m, const oa_batch *b, int32_t i0, int32_t rows, oa_error *err) {
  int32_t d = m->base.dim;
  float *dst = m->act[0];
  for (int32_t i = 0; i < rows; i++) {
    const double *x = b->x + (int64_t)(i0 + i) * b->ldx;
    for (int32_t k = 0; k < d; k++) {
      if (fabs(x[k]) > FLT_MAX)
        return oa_error_set(err, OA_ENUMERIC,
                            "feature %d = %g does not fit a float32 network", k, x[k]);
      dst[(size_t)i * d + k] = (float)x[k];
    }
  }
  return 0;
}

/* Forward pass over `rows` rows already in act[0]; act[n_layers] receives
 * the output before the sigmoid. */
static void forward(mlp *m, int32_t rows) {
  for (int32_t l = 0; l < m->n_layers; l++) {
    int32_t in = m->size[l], out = m->size[l + 1];
    const float *W = m->w + m->woff[l], *bias = m->w + m->boff[l];
    float *z = m->act[l + 1];
    for (int32_t i = 0; i < rows; i++)
      memcpy(z + (size_t)i * out, bias, sizeof(float) * out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, m->act[l],
                in, W, in, 1.0f, z, out);
    if (l < m->n_layers - 1)
      for (size_t k = 0; k < (size_t)rows * out; k++)
        if (!(z[k] > 0)) z[k] = 0;
  }
}

static double sigmoid(double z) {
  return z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
}

/* Loss and gradient (into m->g) on `rows` rows in act[0] with targets ybuf. */
static double loss_grad(mlp *m, int32_t rows) {
  forward(m, rows);
  int32_t L = m->n_layers;
  const float *out = m->act[L];
  float *d = m->d0, *dn = m->d1;
  double loss = 0;
  for (int32_t i = 0; i < rows; i++) {
    double f = out[i], y = m->ybuf[i], r;
    if (m->sigmoid) {
      /* BCE on logits: log(1 + e^f) - y f, computed without overflow. */
      loss += (f > 0 ? f + log1p(exp(-f)) : log1p(exp(f))) - y * f;
      r = sigmoid(f) - y;
    } else {
      loss += 0.5 * (f - y) * (f - y);
      r = f - y;
    }
    d[i] = (float)(r / rows);
  }
  loss /= rows;
  for (int32_t l = L - 1; l >= 0; l--) {
    int32_t in = m->size[l], out_n = m->size[l + 1];
    const float *W = m->w + m->woff[l];
    float *gW = m->g + m->woff[l], *gb = m->g + m->boff[l];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_n, in, rows, 1.0f, d, out_n,
                m->act[l], in, 0.0f, gW, in);
    for (int32_t j = 0; j < out_n; j++)
      gb[j] = 0;
    for (int32_t i = 0; i < rows; i++)
      for (int32_t j = 0; j < out_n; j++)
        gb[j] += d[(size_t)i * out_n + j];
    if (m->l2 > 0) {
      double s = 0;
      for (size_t k = 0; k < (size_t)out_n * in; k++) {
        s += (double)W[k] * W[k];
        gW[k] += (float)m->l2 * W[k];
      }
      loss += 0.5 * m->l2 * s;
    }
    if (l == 0) break;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, in, out_n, 1.0f, d,
                out_n, W, in, 0.0f, dn, in);
    const float *a = m->act[l]; /* ReLU output: its derivative is 1 where a > 0 */
    for (size_t k = 0; k < (size_t)rows * in; k++)
      if (!(a[k] > 0)) dn[k] = 0;
    float *t = d;
    d = dn;
    dn = t;
  }
  return loss;
}

static void adam_step(mlp *m) {
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  m->adam_t++;
  double c1 = 1 - pow(b1, (double)m->adam_t), c2 = 1 - pow(b2, (double)m->adam_t);
  float step = (float)(m->lr / c1), sc2 = (float)(1 / sqrt(c2));
  for (size_t k = 0; k < m->n_params; k++) {
    float g = m->g[k];
    m->m1[k] = (float)b1 * m->m1[k] + (float)(1 - b1) * g;
    m->m2[k] = (float)b2 * m->m2[k] + (float)(1 - b2) * g * g;
    m->w[k] -= step * m->m1[k] / (sqrtf(m->m2[k]) * sc2 + (float)eps);
  }
}

static int all_finite_f(const float *x, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (!isfinite(x[k])) return 0;
  return 1;
}

/* One Adam step on a minibatch drawn uniformly from the ring. */
static void train_step(mlp *m) {
  int32_t d = m->base.dim, n = m->batch;
  /* Indexes count from the oldest row, so a reloaded ring (laid out from
   * slot 0) draws the same examples as the original. */
  int32_t oldest = (m->head - m->count + m->cap) % m->cap;
  for (int32_t i = 0; i < n; i++) {
    int32_t k = (int32_t)((oldest + oa_rng_below(&m->rng, (uint64_t)m->count)) % m->cap);
    memcpy(m->act[0] + (size_t)i * d, m->rx + (size_t)k * d, sizeof(float) * d);
    m->ybuf[i] = m->ry[k];
  }
  double loss = loss_grad(m, n);
  if (!isfinite(loss) || !all_finite_f(m->g, m->n_params)) {
    m->skipped++;
    return;
  }
  adam_step(m);
}

/* ---- Neural-linear head ---- */

/* hd := [h, 1] for the rows whose last hidden activations are in act. */
static void hidden_to_hd(mlp *m, int32_t rows) {
  int32_t H = m->p - 1;
  const float *h = m->act[m->n_layers - 1];
  for (int32_t i = 0; i < rows; i++) {
    double *o = m->hd + (size_t)i * m->p;
    for (int32_t k = 0; k < H; k++)
      o[k] = h[(size_t)i * H + k];
    o[H] = 1;
  }
}

/* L := chol(A), theta := A^-1 b. Keeps the old factor if A is not SPD
 * (which the lambda I prior rules out short of overflow). */
static void refactor(mlp *m) {
  size_t pp = (size_t)m->p * m->p;
  memcpy(m->At, m->A, sizeof(double) * pp);
  if (oa_dchol(m->At, m->p) != 0) {
    m->skipped++;
    return;
  }
  memcpy(m->L, m->At, sizeof(double) * pp);
  memcpy(m->theta, m->bv, sizeof(double) * m->p);
  oa_dchol_solve(m->L, m->p, m->theta);
}

/* Rebuild A and b from the ring with the current network, weighting the
 * example of age a (0 = newest) by forget^a. */
static void refit(mlp *m) {
  int32_t p = m->p, d = m->base.dim;
  memset(m->At, 0, sizeof(double) * p * p);
  memset(m->bt, 0, sizeof(double) * p);
  int32_t oldest = (m->head - m->count + m->cap) % m->cap;
  for (int32_t c0 = 0; c0 < m->count; c0 += m->rows_cap) {
    int32_t rows = m->count - c0 < m->rows_cap ? m->count - c0 : m->rows_cap;
    for (int32_t i = 0; i < rows; i++) {
      int32_t k = (oldest + c0 + i) % m->cap;
      memcpy(m->act[0] + (size_t)i * d, m->rx + (size_t)k * d, sizeof(float) * d);
    }
    forward(m, rows);
    hidden_to_hd(m, rows);
    for (int32_t i = 0; i < rows; i++) {
      int32_t age = m->count - 1 - (c0 + i);
      double sw = m->forget < 1 ? sqrt(pow(m->forget, age)) : 1;
      double *h = m->hd + (size_t)i * p;
      double r = m->ry[(oldest + c0 + i) % m->cap];
      for (int32_t j = 0; j < p; j++) {
        m->bt[j] += sw * sw * r * h[j];
        h[j] *= sw;
      }
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p, p, rows, 1.0, m->hd, p, m->hd,
                p, 1.0, m->At, p);
  }
  for (int32_t j = 0; j < p; j++)
    m->At[(size_t)j * p + j] += m->lambda;
  if (!oa_all_finite(m->At, (long)p * p) || !oa_all_finite(m->bt, p)) {
    m->skipped++;
    return;
  }
  memcpy(m->A, m->At, sizeof(double) * p * p);
  memcpy(m->bv, m->bt, sizeof(double) * p);
}

/* Add one example with features hd[0..p) to A and b, discounting the data
 * part of both by forget first. */
static void blr_add(mlp *m, double r) {
  int32_t p = m->p;
  const double *h = m->hd;
  if (!oa_all_finite(h, p)) {
    m->skipped++;
    return;
  }
  if (m->forget < 1) {
    for (size_t k = 0; k < (size_t)p * p; k++)
      m->A[k] *= m->forget;
    for (int32_t j = 0; j < p; j++) {
      m->A[(size_t)j * p + j] += (1 - m->forget) * m->lambda;
      m->bv[j] *= m->forget;
    }
  }
  for (int32_t i = 0; i < p; i++) {
    for (int32_t j = 0; j < p; j++)
      m->A[(size_t)i * p + j] += h[i] * h[j];
    m->bv[i] += r * h[i];
  }
}

/* ---- Model ops ---- */

static int mlp_score(oa_model *base, const oa_batch *b, double *mean, double *width,
                     oa_error *err) {
  mlp *m = (mlp *)base;
  int32_t L = m->n_layers, p = m->p;
  for (int32_t i0 = 0; i0 < b->n; i0 += m->rows_cap) {
    /* Identical rows (ldx == 0) need one pass only. */
    int32_t rows = b->ldx == 0 ? 1 : (b->n - i0 < m->rows_cap ? b->n - i0 : m->rows_cap);
    int rc = load_rows(m, b, i0, rows, err);
    if (rc) return rc;
    forward(m, rows);
    if (!m->nl) {
      for (int32_t i = 0; i < rows; i++) {
        double f = m->act[L][i];
        mean[i0 + i] = m->sigmoid ? sigmoid(f) : f;
        if (width) width[i0 + i] = 0;
      }
    } else {
      hidden_to_hd(m, rows);
      cblas_dgemv(CblasRowMajor, CblasNoTrans, rows, p, 1.0, m->hd, p, m->theta, 1, 0.0,
                  mean + i0, 1);
      if (width) {
        /* Rows of hd L^-T: their squared norms are h^T A^-1 h. */
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, rows,
                    p, 1.0, m->L, p, m->hd, p);
        for (int32_t i = 0; i < rows; i++) {
          const double *y = m->hd + (size_t)i * p;
          width[i0 + i] = sqrt(cblas_ddot(p, y, 1, y, 1));
        }
      }
    }
    for (int32_t i = 0; i < rows; i++)
      if (!isfinite(mean[i0 + i]) || (width && !isfinite(width[i0 + i])))
        return oa_error_set(err, OA_ENUMERIC, "%s score of row %d is not finite",
                            base->ops->kind, i0 + i);
    if (b->ldx == 0) {
      for (int32_t i = 1; i < b->n; i++) {
        mean[i] = mean[0];
        if (width) width[i] = width[0];
      }
      break;
    }
  }
  return 0;
}

static int nl_sample(oa_model *base, const oa_batch *b, int draws, oa_rng *rng,
                     double *out, oa_error *err) {
  mlp *m = (mlp *)base;
  int32_t p = m->p;
  size_t need = (size_t)draws * p;
  if (need > m->draws_cap) {
    double *t = realloc(m->draws, sizeof(double) * need);
    if (!t)
      return oa_error_set(err, OA_ENOMEM, "out of memory for %d posterior draws", draws);
    m->draws = t;
    m->draws_cap = need;
  }
  /* theta~ = theta + v L^-T z has covariance v^2 (L L^T)^-1 = v^2 A^-1. */
  for (int k = 0; k < draws; k++) {
    double *t = m->draws + (size_t)k * p;
    for (int32_t j = 0; j < p; j++)
      t[j] = oa_rng_normal(rng);
    cblas_dtrsv(CblasRowMajor, CblasLower, CblasTrans, CblasNonUnit, p, m->L, p, t, 1);
    for (int32_t j = 0; j < p; j++)
      t[j] = m->theta[j] + m->v * t[j];
  }
  for (int32_t i0 = 0; i0 < b->n; i0 += m->rows_cap) {
    int32_t rows = b->n - i0 < m->rows_cap ? b->n - i0 : m->rows_cap;
    int rc = load_rows(m, b, i0, rows, err);
    if (rc) return rc;
    forward(m, rows);
    hidden_to_hd(m, rows);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, draws, rows, p, 1.0, m->draws, p,
                m->hd, p, 0.0, out + i0, b->n);
  }
  for (size_t k = 0; k < (size_t)draws * b->n; k++)
    if (!isfinite(out[k]))
      return oa_error_set(err, OA_ENUMERIC, "neural_linear sample is not finite");
  return 0;
}

static int mlp_update(oa_model *base, const oa_example *ex, int n, oa_error *err) {
  mlp *m = (mlp *)base;
  int32_t d = base->dim;
  /* Validate everything first: past this loop, update cannot fail. */
  for (int i = 0; i < n; i++) {
    if (!isfinite(ex[i].reward))
      return oa_error_set(err, OA_ENUMERIC, "reward is not a finite number");
    if (m->sigmoid && (ex[i].reward < 0 || ex[i].reward > 1))
      return oa_error_set(err, OA_EINVAL,
                          "reward %g is outside [0, 1], which a sigmoid output needs",
                          ex[i].reward);
    if (fabs(ex[i].reward) > FLT_MAX)
      return oa_error_set(err, OA_ENUMERIC, "reward %g does not fit a float32 network",
                          ex[i].reward);
    for (int32_t k = 0; k < d; k++)
      if (!(fabs(ex[i].x[k]) <= FLT_MAX))
        return oa_error_set(
            err, OA_ENUMERIC,
            "feature %d = %g is not finite or does not fit a float32 network", k,
            ex[i].x[k]);
  }
  for (int i = 0; i < n; i++) {
    float *row = m->rx + (size_t)m->head * d;
    for (int32_t k = 0; k < d; k++)
      row[k] = (float)ex[i].x[k];
    m->ry[m->head] = (float)ex[i].reward;
    m->head = (m->head + 1) % m->cap;
    if (m->count < m->cap) m->count++;
    if (++m->since_train >= (uint64_t)m->train_every) {
      m->since_train = 0;
      for (int32_t s = 0; s < m->steps_per_train; s++)
        train_step(m);
    }
    if (m->nl) {
      if (++m->since_refit >= MLP_REFIT_EVERY) {
        m->since_refit = 0;
        refit(m);
      } else {
        memcpy(m->act[0], row, sizeof(float) * d);
        forward(m, 1);
        hidden_to_hd(m, 1);
        blr_add(m, ex[i].reward);
      }
    }
  }
  if (m->nl) refactor(m);
  return 0;
}

static size_t mlp_size_bytes(const oa_model *base) {
  const mlp *m = (const mlp *)base;
  size_t s = sizeof *m + 4 * m->n_params * sizeof(float);
  s += (size_t)m->cap * (base->dim + 1) * sizeof(float);
  for (int32_t l = 0; l <= m->n_layers; l++)
    s += (size_t)m->rows_cap * m->size[l] * sizeof(float);
  int32_t wmax = 1;
  for (int32_t l = 0; l <= m->n_layers; l++)
    if (m->size[l] > wmax) wmax = m->size[l];
  s += (2 * (size_t)m->rows_cap * wmax + m->rows_cap) * sizeof(float);
  if (m->nl) {
    size_t p = (size_t)m->p;
    s += (3 * p * p + 3 * p + (size_t)m->rows_cap * p + m->draws_cap) * sizeof(double);
  }
  return s;
}

static int mlp_set_param(oa_model *base, const char *name, double value, oa_error *err) {
  mlp *m = (mlp *)base;
  if (!isfinite(value)) return oa_error_set(err, OA_EINVAL, "%s must be finite", name);
  if (!strcmp(name, "lr")) {
    if (!(value > 0))
      return oa_error_set(err, OA_EINVAL, "lr must be > 0, got %g", value);
    m->lr = value;
  } else if (!strcmp(name, "l2")) {
    if (value < 0) return oa_error_set(err, OA_EINVAL, "l2 must be >= 0, got %g", value);
    m->l2 = value;
  } else if (!strcmp(name, "v") || !strcmp(name, "forget")) {
    if (!m->nl)
      return oa_error_set(err, OA_EINVAL,
                          "%s applies to the neural-linear head; this mlp has none",
                          name);
    if (name[0] == 'v') {
      if (value < 0) return oa_error_set(err, OA_EINVAL, "v must be >= 0, got %g", value);
      m->v = value;
    } else {
      if (!(value > 0 && value <= 1))
        return oa_error_set(err, OA_EINVAL, "forget must be in (0, 1], got %g", value);
      m->forget = value;
    }
  } else {
    return oa_error_set(err, OA_EINVAL, "%s model has no parameter '%s'", base->ops->kind,
                        name);
  }
  return 0;
}

static int mlp_get_param(const oa_model *base, const char *name, double *value,
                         oa_error *err) {
  const mlp *m = (const mlp *)base;
  if (!strcmp(name, "lr"))
    *value = m->lr;
  else if (!strcmp(name, "l2"))
    *value = m->l2;
  else if (m->nl && !strcmp(name, "v"))
    *value = m->v;
  else if (m->nl && !strcmp(name, "forget"))
    *value = m->forget;
  else if (m->nl && !strcmp(name, "lambda"))
    *value = m->lambda;
  else if (!strcmp(name, "skipped_steps"))
    *value = (double)m->skipped;
  else
    return oa_error_set(err, OA_EINVAL, "%s model has no parameter '%s'", base->ops->kind,
                        name);
  return 0;
}

/* ---- Save / load ---- */

static int mlp_save(const oa_model *base, oa_buf *out, oa_error *err) {
  const mlp *m = (const mlp *)base;
  oa_buf_put_header(out, "MLP ", MLP_SAVE_VERSION);
  oa_buf_put_u32(out, (uint32_t)m->n_layers);
  for (int32_t l = 0; l <= m->n_layers; l++)
    oa_buf_put_u32(out, (uint32_t)m->size[l]);
  oa_buf_put_u32(out, (uint32_t)m->sigmoid);
  oa_buf_put_u32(out, (uint32_t)m->nl);
  oa_buf_put(out, m->w, m->n_params * sizeof(float));
  oa_buf_put(out, m->m1, m->n_params * sizeof(float));
  oa_buf_put(out, m->m2, m->n_params * sizeof(float));
  oa_buf_put_u64(out, m->adam_t);
  for (int k = 0; k < 4; k++)
    oa_buf_put_u64(out, m->rng.s[k]);
  oa_buf_put_f64(out, m->rng.spare_normal);
  oa_buf_put_u32(out, (uint32_t)m->rng.has_spare);
  oa_buf_put_u64(out, m->since_train);
  oa_buf_put_u64(out, m->since_refit);
  oa_buf_put_u64(out, m->skipped);
  /* Replay, oldest first, so a smaller ring on load keeps the newest. */
  oa_buf_put_u32(out, (uint32_t)m->count);
  int32_t d = base->dim, oldest = (m->head - m->count + m->cap) % m->cap;
  for (int32_t i = 0; i < m->count; i++) {
    int32_t k = (oldest + i) % m->cap;
    oa_buf_put(out, m->rx + (size_t)k * d, sizeof(float) * d);
    oa_buf_put(out, m->ry + k, sizeof(float));
  }
  if (m->nl) {
    oa_buf_put_f64(out, m->lambda);
    oa_buf_put(out, m->A, sizeof(double) * m->p * m->p);
    oa_buf_put(out, m->bv, sizeof(double) * m->p);
  }
  if (out->failed)
    return oa_error_set(err, OA_ENOMEM, "out of memory while saving an mlp");
  return 0;
}

static int mlp_load(oa_model *base, oa_reader *in, oa_error *err) {
  mlp *m = (mlp *)base;
  int rc = oa_read_header(in, "MLP ", MLP_SAVE_VERSION, NULL, err);
  if (rc) return rc;
  uint32_t nl_layers = oa_read_u32(in);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "truncated mlp data");
  if (nl_layers != (uint32_t)m->n_layers)
    return oa_error_set(err, OA_EDIM, "saved mlp has %u weight layers, this one %d",
                        nl_layers, m->n_layers);
  for (int32_t l = 0; l <= m->n_layers; l++) {
    uint32_t s = oa_read_u32(in);
    if (!in->failed && s != (uint32_t)m->size[l])
      return oa_error_set(err, OA_EDIM, "saved mlp layer %d has %u units, this one %d", l,
                          s, m->size[l]);
  }
  uint32_t sig = oa_read_u32(in), nl = oa_read_u32(in);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "truncated mlp data");
  if (sig != (uint32_t)m->sigmoid)
    return oa_error_set(err, OA_EDIM, "saved mlp has a %s output, this one a %s output",
                        sig ? "sigmoid" : "linear", m->sigmoid ? "sigmoid" : "linear");
  if (nl != (uint32_t)m->nl)
    return oa_error_set(err, OA_EFORMAT,
                        "saved mlp and this one differ in neural-linear mode");

  /* Decode into temporaries; the model changes only once all is read. */
  size_t np = m->n_params, pp = (size_t)m->p * m->p;
  int32_t d = base->dim;
  float *w = malloc(sizeof(float) * np), *m1 = malloc(sizeof(float) * np),
        *m2 = malloc(sizeof(float) * np);
  float *rx = oa_alloc_aligned(sizeof(float) * (size_t)m->cap * d);
  float *ry = oa_alloc_aligned(sizeof(float) * (size_t)m->cap);
  double *A = NULL, *bv = NULL;
  if (m->nl) {
    A = malloc(sizeof(double) * pp);
    bv = malloc(sizeof(double) * m->p);
  }
  if (!w || !m1 || !m2 || !rx || !ry || (m->nl && (!A || !bv))) {
    rc = oa_error_set(err, OA_ENOMEM, "out of memory while loading an mlp");
    goto done;
  }
  oa_read(in, w, sizeof(float) * np);
  oa_read(in, m1, sizeof(float) * np);
  oa_read(in, m2, sizeof(float) * np);
  uint64_t adam_t = oa_read_u64(in);
  oa_rng rng;
  for (int k = 0; k < 4; k++)
    rng.s[k] = oa_read_u64(in);
  rng.spare_normal = oa_read_f64(in);
  rng.has_spare = (int)oa_read_u32(in);
  uint64_t since_train = oa_read_u64(in), since_refit = oa_read_u64(in);
  uint64_t skipped = oa_read_u64(in);
  uint32_t count = oa_read_u32(in);
  if (in->failed) {
    rc = oa_error_set(err, OA_EFORMAT, "truncated mlp data");
    goto done;
  }
  size_t row_bytes = sizeof(float) * ((size_t)d + 1);
  if ((size_t)count > (in->len - in->pos) / row_bytes) {
    rc = oa_error_set(err, OA_EFORMAT, "mlp replay holds %u rows but the data is shorter",
                      count);
    goto done;
  }
  /* Skip the oldest rows that do not fit this model's ring. */
  uint32_t keep = count < (uint32_t)m->cap ? count : (uint32_t)m->cap;
  in->pos += (size_t)(count - keep) * row_bytes;
  for (uint32_t i = 0; i < keep; i++) {
    oa_read(in, rx + (size_t)i * d, sizeof(float) * d);
    oa_read(in, ry + i, sizeof(float));
  }
  double lambda = m->lambda;
  if (m->nl) {
    double saved_lambda = oa_read_f64(in);
    oa_read(in, A, sizeof(double) * pp);
    oa_read(in, bv, sizeof(double) * m->p);
    /* The prior is kept apart from the data, so swapping it is exact. */
    if (!in->failed)
      for (int32_t j = 0; j < m->p; j++)
        A[(size_t)j * m->p + j] += lambda - saved_lambda;
  }
  if (in->failed) {
    rc = oa_error_set(err, OA_EFORMAT, "truncated mlp data");
    goto done;
  }
  if (!all_finite_f(w, np) || !all_finite_f(m1, np) || !all_finite_f(m2, np) ||
      !all_finite_f(rx, (size_t)keep * d) || !all_finite_f(ry, keep) ||
      (m->nl && (!oa_all_finite(A, (long)pp) || !oa_all_finite(bv, m->p)))) {
    rc = oa_error_set(err, OA_EFORMAT, "saved mlp holds non-finite numbers");
    goto done;
  }
  if (m->nl) {
    memcpy(m->At, A, sizeof(double) * pp);
    if (oa_dchol(m->At, m->p) != 0) {
      rc = oa_error_set(err, OA_EFORMAT,
                        "saved neural-linear matrix is not positive definite");
      goto done;
    }
  }
  /* Commit. */
  float *t;
  t = m->w, m->w = w, w = t;
  t = m->m1, m->m1 = m1, m1 = t;
  t = m->m2, m->m2 = m2, m2 = t;
  t = m->rx, m->rx = rx, rx = t;
  t = m->ry, m->ry = ry, ry = t;
  m->adam_t = adam_t;
  m->rng = rng;
  m->since_train = since_train % (uint64_t)m->train_every;
  m->since_refit = since_refit % MLP_REFIT_EVERY;
  m->skipped = skipped;
  m->count = (int32_t)keep;
  m->head = (int32_t)(keep % (uint32_t)m->cap);
  if (m->nl) {
    memcpy(m->A, A, sizeof(double) * pp);
    memcpy(m->bv, bv, sizeof(double) * m->p);
    refactor(m);
  }
  rc = 0;
done:
  free(w);
  free(m1);
  free(m2);
  oa_free_aligned(rx);
  oa_free_aligned(ry);
  free(A);
  free(bv);
  return rc;
}

/* ---- Construction ---- */

static void mlp_destroy(oa_model *base) {
  mlp *m = (mlp *)base;
  if (!m) return;
  oa_free_aligned(m->w);
  oa_free_aligned(m->g);
  oa_free_aligned(m->m1);
  oa_free_aligned(m->m2);
  oa_free_aligned(m->rx);
  oa_free_aligned(m->ry);
  for (int32_t l = 0; l <= MLP_MAX_LAYERS; l++)
    oa_free_aligned(m->act[l]);
  oa_free_aligned(m->d0);
  oa_free_aligned(m->d1);
  oa_free_aligned(m->ybuf);
  free(m->A);
  free(m->bv);
  free(m->L);
  free(m->theta);
  free(m->hd);
  free(m->At);
  free(m->bt);
  free(m->draws);
  free(m);
}

static const oa_model_ops mlp_ops = {
    .kind = "mlp",
    .score = mlp_score,
    .update = mlp_update,
    .size_bytes = mlp_size_bytes,
    .save = mlp_save,
    .load = mlp_load,
    .set_param = mlp_set_param,
    .get_param = mlp_get_param,
    .destroy = mlp_destroy,
};

/* A distinct kind, so that save/load refuses to mix the two modes. */
static const oa_model_ops nl_ops = {
    .kind = "neural_linear",
    .score = mlp_score,
    .sample = nl_sample,
    .update = mlp_update,
    .size_bytes = mlp_size_bytes,
    .save = mlp_save,
    .load = mlp_load,
    .set_param = mlp_set_param,
    .get_param = mlp_get_param,
    .destroy = mlp_destroy,
};

static int check_config(const oa_mlp_config *c, oa_error *err) {
  if (c->dim <= 0 || c->dim > 1 << 24)
    return oa_error_set(err, OA_EINVAL, "mlp dim must be in [1, 2^24], got %d", c->dim);
  if (c->n_hidden < 0 || c->n_hidden > 8)
    return oa_error_set(err, OA_EINVAL, "mlp n_hidden must be in [0, 8], got %d",
                        c->n_hidden);
  if (c->neural_linear && c->n_hidden < 1)
    return oa_error_set(err, OA_EINVAL, "neural_linear needs at least one hidden layer");
  for (int32_t l = 0; l < c->n_hidden; l++)
    if (c->hidden[l] < 1 || c->hidden[l] > MLP_MAX_WIDTH)
      return oa_error_set(err, OA_EINVAL,
                          "mlp hidden layer %d size must be in [1, %d], got %d", l,
                          MLP_MAX_WIDTH, c->hidden[l]);
  if (!(c->lr >= 0 && isfinite(c->lr)))
    return oa_error_set(err, OA_EINVAL, "mlp lr must be > 0, got %g", c->lr);
  if (c->batch < 0 || c->batch > 65536)
    return oa_error_set(err, OA_EINVAL, "mlp batch must be in [1, 65536], got %d",
                        c->batch);
  if (c->replay < 0 || c->replay > 100000000)
    return oa_error_set(err, OA_EINVAL, "mlp replay must be in [1, 1e8], got %d",
                        c->replay);
  if (c->train_every < 0 || c->steps_per_train < 0 || c->steps_per_train > 10000)
    return oa_error_set(err, OA_EINVAL,
                        "mlp train_every and steps_per_train must be positive");
  if (!(c->l2 >= 0 && isfinite(c->l2)))
    return oa_error_set(err, OA_EINVAL, "mlp l2 must be >= 0, got %g", c->l2);
  if (!(c->forget >= 0 && c->forget <= 1))
    return oa_error_set(err, OA_EINVAL, "mlp forget must be in (0, 1], got %g",
                        c->forget);
  if (!(c->lambda >= 0 && isfinite(c->lambda)))
    return oa_error_set(err, OA_EINVAL, "mlp lambda must be > 0, got %g", c->lambda);
  if (!(c->v >= 0 && isfinite(c->v)))
    return oa_error_set(err, OA_EINVAL, "mlp v must be >= 0, got %g", c->v);
  return 0;
}

/* He initialisation (N(0, 2/fan_in)) for the ReLU layers, Glorot
 * (N(0, 2/(fan_in + fan_out))) for the output layer, zero biases. */
static void init_weights(mlp *m) {
  for (int32_t l = 0; l < m->n_layers; l++) {
    int32_t in = m->size[l], out = m->size[l + 1];
    double sd = l < m->n_layers - 1 ? sqrt(2.0 / in) : sqrt(2.0 / (in + out));
    float *W = m->w + m->woff[l];
    for (size_t k = 0; k < (size_t)in * out; k++)
      W[k] = (float)(sd * oa_rng_normal(&m->rng));
  }
}

oa_model *oa_mlp_new(const oa_mlp_config *cfg, oa_error *err) {
  if (!cfg) {
    oa_error_set(err, OA_EINVAL, "mlp needs a configuration");
    return NULL;
  }
  if (check_config(cfg, err)) return NULL;
  mlp *m = calloc(1, sizeof *m);
  if (!m) goto oom;
  m->nl = cfg->neural_linear != 0;
  m->base.ops = m->nl ? &nl_ops : &mlp_ops;
  m->base.dim = cfg->dim;
  m->sigmoid = cfg->sigmoid_output != 0;
  m->lr = cfg->lr > 0 ? cfg->lr : 1e-3;
  m->l2 = cfg->l2;
  m->forget = cfg->forget > 0 ? cfg->forget : 1;
  m->lambda = cfg->lambda > 0 ? cfg->lambda : 1;
  m->v = cfg->v > 0 ? cfg->v : 1;
  m->batch = cfg->batch > 0 ? cfg->batch : 32;
  m->cap = cfg->replay > 0 ? cfg->replay : 10000;
  m->train_every = cfg->train_every > 0 ? cfg->train_every : 1;
  m->steps_per_train = cfg->steps_per_train > 0 ? cfg->steps_per_train : 1;
  oa_rng_seed(&m->rng, cfg->seed);

  m->n_layers = cfg->n_hidden + 1;
  m->size[0] = cfg->dim;
  for (int32_t l = 0; l < cfg->n_hidden; l++)
    m->size[l + 1] = cfg->hidden[l];
  m->size[m->n_layers] = 1;
  size_t off = 0;
  int32_t wmax = 1;
  for (int32_t l = 0; l < m->n_layers; l++) {
    m->woff[l] = off;
    off += (size_t)m->size[l] * m->size[l + 1];
    m->boff[l] = off;
    off += (size_t)m->size[l + 1];
  }
  for (int32_t l = 0; l <= m->n_layers; l++)
    if (m->size[l] > wmax) wmax = m->size[l];
  m->n_params = off;
  m->rows_cap = m->batch > MLP_CHUNK ? m->batch : MLP_CHUNK;

  m->w = oa_alloc_aligned(sizeof(float) * off);
  m->g = oa_alloc_aligned(sizeof(float) * off);
  m->m1 = oa_alloc_aligned(sizeof(float) * off);
  m->m2 = oa_alloc_aligned(sizeof(float) * off);
  m->rx = oa_alloc_aligned(sizeof(float) * (size_t)m->cap * cfg->dim);
  m->ry = oa_alloc_aligned(sizeof(float) * (size_t)m->cap);
  if (!m->w || !m->g || !m->m1 || !m->m2 || !m->rx || !m->ry) goto oom;
  for (int32_t l = 0; l <= m->n_layers; l++)
    if (!(m->act[l] = oa_alloc_aligned(sizeof(float) * (size_t)m->rows_cap * m->size[l])))
      goto oom;
  m->d0 = oa_alloc_aligned(sizeof(float) * (size_t)m->rows_cap * wmax);
  m->d1 = oa_alloc_aligned(sizeof(float) * (size_t)m->rows_cap * wmax);
  m->ybuf = oa_alloc_aligned(sizeof(float) * (size_t)m->rows_cap);
  if (!m->d0 || !m->d1 || !m->ybuf) goto oom;
  if (m->nl) {
    int32_t p = m->p = cfg->hidden[cfg->n_hidden - 1] + 1;
    size_t pp = (size_t)p * p;
    m->A = calloc(pp, sizeof(double));
    m->L = calloc(pp, sizeof(double));
    m->At = calloc(pp, sizeof(double));
    m->bv = calloc(p, sizeof(double));
    m->theta = calloc(p, sizeof(double));
    m->bt = calloc(p, sizeof(double));
    m->hd = calloc((size_t)m->rows_cap * p, sizeof(double));
    if (!m->A || !m->L || !m->At || !m->bv || !m->theta || !m->bt || !m->hd) goto oom;
    for (int32_t j = 0; j < p; j++)
      m->A[(size_t)j * p + j] = m->lambda;
    refactor(m);
  }
  init_weights(m);
  return &m->base;
oom:
  mlp_destroy(&m->base);
  oa_error_set(err, OA_ENOMEM, "out of memory for an mlp of %d rows", cfg->dim);
  return NULL;
}

/* ---- Test hooks (mlp_internal.h) ---- */

int oa__mlp_loss_grad(oa_model *base, const double *x, const double *y, int n,
                      double *loss, float *grad, oa_error *err) {
  mlp *m = (mlp *)base;
  if (n <= 0 || n > m->rows_cap)
    return oa_error_set(err, OA_ELIMIT, "loss_grad takes 1 to %d rows, got %d",
                        m->rows_cap, n);
  oa_batch b = {.x = x, .ldx = base->dim, .n = n, .d = base->dim};
  int rc = load_rows(m, &b, 0, n, err);
  if (rc) return rc;
  for (int i = 0; i < n; i++)
    m->ybuf[i] = (float)y[i];
  *loss = loss_grad(m, n);
  if (grad) memcpy(grad, m->g, sizeof(float) * m->n_params);
  return 0;
}

float *oa__mlp_params(oa_model *base, size_t *n) {
  mlp *m = (mlp *)base;
  *n = m->n_params;
  return m->w;
}
