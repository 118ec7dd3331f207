/* Context-free models for tiny apps: Beta-Bernoulli Thompson sampling and
 * UCB1. Both keep a few counts per arm and ignore the row values entirely,
 * so they report dim 0 and the dispatch in model.c accepts rows of any
 * width (the policy passes its feature rows as it would to any per-arm
 * model; only the arm index matters).
 *
 * Forgetting discounts every arm's counts by `forget` before each example,
 * so an arm that has not been played for a while drifts back towards the
 * prior (TS) or towards being re-tried (UCB1).
 *
 * Updates are all-or-nothing: the counts are copied into scratch arrays,
 * updated there, checked finite, then copied back. The arrays are per arm,
 * and context-free apps have few arms, so the copy is cheap. */
#include "core/error.h"
#include "models/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BERNOULLI_TS_VERSION 1
#define UCB1_VERSION         1
/* The width UCB1 reports for an arm never tried: "infinite", but finite so
 * that the policy's finiteness checks pass; explorers treat >= 1e8 as
 * infinite. */
#define UCB1_UNTRIED_WIDTH 1e9

typedef struct oa_context_free {
  oa_model base;
  double forget;
  double alpha0, beta0; /* Bernoulli TS prior */
  double t;             /* UCB1: discounted total count */
  double *a, *b;        /* per arm: TS successes/failures, UCB1 counts/reward sums */
  double *ta, *tb;      /* scratch copies for all-or-nothing updates and loads */
} oa_context_free;

static const oa_model_ops bernoulli_ts_ops;

static int check_forget(const char *who, double forget, oa_error *err) {
  if (!(forget > 0 && forget <= 1))
    return oa_error_set(err, OA_EINVAL, "%s: forget must be in (0, 1], got %g", who,
                        forget);
  return 0;
}

static void commit(oa_context_free *c) {
  size_t bytes = sizeof(double) * (size_t)c->base.arms;
  memcpy(c->a, c->ta, bytes);
  memcpy(c->b, c->tb, bytes);
}

static void stage(oa_context_free *c) {
  size_t bytes = sizeof(double) * (size_t)c->base.arms;
  memcpy(c->ta, c->a, bytes);
  memcpy(c->tb, c->b, bytes);
}

static void discount(oa_context_free *c, double *a, double *b) {
  if (c->forget >= 1) return;
  for (int32_t k = 0; k < c->base.arms; k++) {
    a[k] *= c->forget;
    b[k] *= c->forget;
  }
}

static size_t cf_size(const oa_model *m) {
  return sizeof(oa_context_free) + 4 * sizeof(double) * (size_t)m->arms;
}

static void cf_destroy(oa_model *m) {
  oa_context_free *c = (oa_context_free *)m;
  free(c->a);
  free(c);
}

static int cf_set_param(oa_model *m, const char *name, double value, oa_error *err) {
  oa_context_free *c = (oa_context_free *)m;
  if (strcmp(name, "forget") != 0)
    return oa_error_set(err, OA_EINVAL, "%s model has no settable parameter '%s'",
                        m->ops->kind, name);
  int rc = check_forget(m->ops->kind, value, err);
  if (rc) return rc;
  c->forget = value;
  return 0;
}

static int cf_get_param(const oa_model *m, const char *name, double *value,
                        oa_error *err) {
  const oa_context_free *c = (const oa_context_free *)m;
  int ts = m->ops == &bernoulli_ts_ops;
  if (!strcmp(name, "forget"))
    *value = c->forget;
  else if (ts && !strcmp(name, "alpha0"))
    *value = c->alpha0;
  else if (ts && !strcmp(name, "beta0"))
    *value = c->beta0;
  else
    return oa_error_set(err, OA_EINVAL, "%s model has no parameter '%s'", m->ops->kind,
                        name);
  return 0;
}

static oa_context_free *cf_alloc(const oa_model_ops *ops, int32_t arms, double forget,
                                 oa_error *err) {
  if (arms < 1 || arms > (1 << 24)) {
    oa_error_set(err, OA_EINVAL, "%s: arms must be in 1..%d, got %d", ops->kind, 1 << 24,
                 (int)arms);
    return NULL;
  }
  if (check_forget(ops->kind, forget, err)) return NULL;
  oa_context_free *c = calloc(1, sizeof *c);
  double *mem = calloc(4 * (size_t)arms, sizeof(double));
  if (!c || !mem) {
    free(c);
    free(mem);
    oa_error_set(err, OA_ENOMEM, "%s: out of memory for %d arms", ops->kind, (int)arms);
    return NULL;
  }
  c->base.ops = ops;
  c->base.dim = 0;
  c->base.arms = arms;
  c->forget = forget;
  c->a = mem; /* one block; a owns it */
  c->b = mem + arms;
  c->ta = mem + 2 * (size_t)arms;
  c->tb = mem + 3 * (size_t)arms;
  return c;
}

/* ---- Beta-Bernoulli Thompson sampling: a = successes, b = failures. ---- */

static int bts_score(oa_model *m, const oa_batch *bt, double *mean, double *width,
                     oa_error *err) {
  const oa_context_free *c = (const oa_context_free *)m;
  for (int32_t i = 0; i < bt->n; i++) {
    int32_t k = bt->arm[i];
    double al = c->alpha0 + c->a[k], be = c->beta0 + c->b[k], s = al + be;
    mean[i] = al / s;
    if (width) width[i] = sqrt(al * be / (s * s * (s + 1)));
  }
  return 0;
}

static int bts_sample(oa_model *m, const oa_batch *bt, int draws, oa_rng *rng,
                      double *out, oa_error *err) {
  const oa_context_free *c = (const oa_context_free *)m;
  for (int k = 0; k < draws; k++)
    for (int32_t i = 0; i < bt->n; i++) {
      int32_t arm = bt->arm[i];
      out[(size_t)k * bt->n + i] =
          oa_rng_beta(rng, c->alpha0 + c->a[arm], c->beta0 + c->b[arm]);
    }
  return 0;
}

static int bts_update(oa_model *m, const oa_example *ex, int n, oa_error *err) {
  oa_context_free *c = (oa_context_free *)m;
  for (int i = 0; i < n; i++)
    if (!(ex[i].reward >= 0 && ex[i].reward <= 1))
      return oa_error_set(err, OA_EINVAL, "bernoulli_ts: reward %g is outside [0, 1]",
                          ex[i].reward);
  stage(c);
  for (int i = 0; i < n; i++) {
    discount(c, c->ta, c->tb);
    c->ta[ex[i].arm] += ex[i].reward;
    c->tb[ex[i].arm] += 1 - ex[i].reward;
  }
  commit(c);
  return 0;
}

static int bts_save(const oa_model *m, oa_buf *out, oa_error *err) {
  const oa_context_free *c = (const oa_context_free *)m;
  oa_buf_put_header(out, "BETS", BERNOULLI_TS_VERSION);
  oa_buf_put_f64(out, c->alpha0);
  oa_buf_put_f64(out, c->beta0);
  oa_buf_put_f64(out, c->forget);
  oa_buf_put_u32(out, (uint32_t)m->arms);
  oa_buf_put(out, c->a, sizeof(double) * (size_t)m->arms);
  oa_buf_put(out, c->b, sizeof(double) * (size_t)m->arms);
  return 0;
}

/* Reads counts into the scratch arrays, checks them, then commits. */
static int read_counts(oa_context_free *c, oa_reader *in, const char *who,
                       oa_error *err) {
  uint32_t arms = oa_read_u32(in);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "%s: truncated model data", who);
  if ((int32_t)arms != c->base.arms)
    return oa_error_set(err, OA_EDIM, "%s: saved %u arms, this model has %d", who, arms,
                        c->base.arms);
  oa_read(in, c->ta, sizeof(double) * arms);
  oa_read(in, c->tb, sizeof(double) * arms);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "%s: truncated model data", who);
  if (!oa_all_finite(c->ta, arms) || !oa_all_finite(c->tb, arms))
    return oa_error_set(err, OA_EFORMAT, "%s: saved counts are not finite", who);
  return 0;
}

static int bts_load(oa_model *m, oa_reader *in, oa_error *err) {
  oa_context_free *c = (oa_context_free *)m;
  int rc = oa_read_header(in, "BETS", BERNOULLI_TS_VERSION, NULL, err);
  if (rc) return rc;
  double alpha0 = oa_read_f64(in), beta0 = oa_read_f64(in), forget = oa_read_f64(in);
  rc = read_counts(c, in, "bernoulli_ts", err);
  if (rc) return rc;
  if (!(alpha0 > 0 && isfinite(alpha0) && beta0 > 0 && isfinite(beta0)) ||
      check_forget("bernoulli_ts", forget, NULL))
    return oa_error_set(err, OA_EFORMAT,
                        "bernoulli_ts: saved hyper-parameters are invalid");
  for (int32_t k = 0; k < m->arms; k++)
    if (c->ta[k] < 0 || c->tb[k] < 0)
      return oa_error_set(err, OA_EFORMAT, "bernoulli_ts: saved counts are negative");
  commit(c);
  c->alpha0 = alpha0;
  c->beta0 = beta0;
  c->forget = forget;
  return 0;
}

static const oa_model_ops bernoulli_ts_ops = {
    .kind = "bernoulli_ts",
    .needs_candidates = 0,
    .per_arm = 1,
    .score = bts_score,
    .sample = bts_sample,
    .update = bts_update,
    .size_bytes = cf_size,
    .save = bts_save,
    .load = bts_load,
    .set_param = cf_set_param,
    .get_param = cf_get_param,
    .destroy = cf_destroy,
};

/* alpha0, beta0 and forget left at 0 take their defaults (1, 1, 1). */
oa_model *oa_bernoulli_ts_new(int32_t arms, double alpha0, double beta0, double forget,
                              oa_error *err) {
  if (alpha0 == 0) alpha0 = 1;
  if (beta0 == 0) beta0 = 1;
  if (forget == 0) forget = 1;
  if (!(alpha0 > 0 && isfinite(alpha0) && beta0 > 0 && isfinite(beta0))) {
    oa_error_set(err, OA_EINVAL,
                 "bernoulli_ts: alpha0 and beta0 must be > 0, got %g and %g", alpha0,
                 beta0);
    return NULL;
  }
  oa_context_free *c = cf_alloc(&bernoulli_ts_ops, arms, forget, err);
  if (!c) return NULL;
  c->alpha0 = alpha0;
  c->beta0 = beta0;
  return &c->base;
}

/* ---- UCB1: a = (discounted) pulls, b = (discounted) reward sums. ---- */

static int ucb1_score(oa_model *m, const oa_batch *bt, double *mean, double *width,
                      oa_error *err) {
  const oa_context_free *c = (const oa_context_free *)m;
  double lt = log(fmax(c->t, 1.0));
  for (int32_t i = 0; i < bt->n; i++) {
    int32_t k = bt->arm[i];
    double cnt = c->a[k];
    mean[i] = cnt > 0 ? c->b[k] / cnt : 0.0;
    if (width)
      width[i] =
          cnt > 0 ? fmin(sqrt(2 * lt / cnt), UCB1_UNTRIED_WIDTH) : UCB1_UNTRIED_WIDTH;
  }
  return 0;
}

static int ucb1_update(oa_model *m, const oa_example *ex, int n, oa_error *err) {
  oa_context_free *c = (oa_context_free *)m;
  stage(c);
  double t = c->t;
  for (int i = 0; i < n; i++) {
    discount(c, c->ta, c->tb);
    t = t * c->forget + 1;
    c->ta[ex[i].arm] += 1;
    c->tb[ex[i].arm] += ex[i].reward;
  }
  if (!oa_all_finite(c->tb, m->arms))
    return oa_error_set(err, OA_ENUMERIC, "ucb1: reward sums would overflow");
  commit(c);
  c->t = t;
  return 0;
}

static int ucb1_save(const oa_model *m, oa_buf *out, oa_error *err) {
  const oa_context_free *c = (const oa_context_free *)m;
  oa_buf_put_header(out, "UCB1", UCB1_VERSION);
  oa_buf_put_f64(out, c->forget);
  oa_buf_put_f64(out, c->t);
  oa_buf_put_u32(out, (uint32_t)m->arms);
  oa_buf_put(out, c->a, sizeof(double) * (size_t)m->arms);
  oa_buf_put(out, c->b, sizeof(double) * (size_t)m->arms);
  return 0;
}

static int ucb1_load(oa_model *m, oa_reader *in, oa_error *err) {
  oa_context_free *c = (oa_context_free *)m;
  int rc = oa_read_header(in, "UCB1", UCB1_VERSION, NULL, err);
  if (rc) return rc;
  double forget = oa_read_f64(in), t = oa_read_f64(in);
  rc = read_counts(c, in, "ucb1", err);
  if (rc) return rc;
  if (check_forget("ucb1", forget, NULL) || !(t >= 0 && isfinite(t)))
    return oa_error_set(err, OA_EFORMAT, "ucb1: saved hyper-parameters are invalid");
  for (int32_t k = 0; k < m->arms; k++)
    if (c->ta[k] < 0)
      return oa_error_set(err, OA_EFORMAT, "ucb1: saved counts are negative");
  commit(c);
  c->forget = forget;
  c->t = t;
  return 0;
}

static const oa_model_ops ucb1_ops = {
    .kind = "ucb1",
    .needs_candidates = 0,
    .per_arm = 1,
    .score = ucb1_score,
    .sample = NULL, /* not a posterior: Thompson over UCB1 draws mean + width·z */
    .update = ucb1_update,
    .size_bytes = cf_size,
    .save = ucb1_save,
    .load = ucb1_load,
    .set_param = cf_set_param,
    .get_param = cf_get_param,
    .destroy = cf_destroy,
};

/* forget left at 0 takes its default (1). */
oa_model *oa_ucb1_new(int32_t arms, double forget, oa_error *err) {
  if (forget == 0) forget = 1;
  oa_context_free *c = cf_alloc(&ucb1_ops, arms, forget, err);
  return c ? &c->base : NULL;
}
