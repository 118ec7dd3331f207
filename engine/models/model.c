#include "models/model.h"
#include "core/error.h"

#include <math.h>
#include <string.h>

/* A model with dim 0 (the context-free ones) ignores row values, so it
 * accepts rows of any width: the policy passes its feature rows as is. */
static int check_batch(const oa_model *m, const oa_batch *b, oa_error *err) {
  if (m->dim != 0 && b->d != m->dim)
    return oa_error_set(err, OA_EDIM, "%s model has %d features per row, got %d",
                        m->ops->kind, m->dim, b->d);
  if (b->n < 0) return oa_error_set(err, OA_EINVAL, "negative row count");
  if (m->ops->per_arm) {
    if (!b->arm)
      return oa_error_set(err, OA_EINVAL, "%s model needs an arm index per row", m->ops->kind);
    for (int32_t i = 0; i < b->n; i++)
      if (b->arm[i] < 0 || b->arm[i] >= m->arms)
        return oa_error_set(err, OA_ELIMIT, "arm %d is outside the %s model's %d arms",
                            b->arm[i], m->ops->kind, m->arms);
  }
  return 0;
}

int oa_model_score(oa_model *m, const oa_batch *b, double *mean, double *width, oa_error *err) {
  int rc = check_batch(m, b, err);
  if (rc) return rc;
  if (b->n == 0) return 0;
  return m->ops->score(m, b, mean, width, err);
}

int oa_model_sample(oa_model *m, const oa_batch *b, int draws, oa_rng *rng, double *out,
                    oa_error *err) {
  int rc = check_batch(m, b, err);
  if (rc) return rc;
  if (!m->ops->sample)
    return oa_error_set(err, OA_EINVAL, "%s model has no posterior to sample", m->ops->kind);
  if (draws <= 0) return oa_error_set(err, OA_EINVAL, "draws must be positive");
  if (b->n == 0) return 0;
  return m->ops->sample(m, b, draws, rng, out, err);
}

int oa_model_update(oa_model *m, const oa_example *ex, int n, oa_error *err) {
  for (int i = 0; i < n; i++) {
    const oa_example *e = &ex[i];
    if (!isfinite(e->reward))
      return oa_error_set(err, OA_ENUMERIC, "reward is not a finite number");
    if (!(e->prob > 0 && e->prob <= 1))
      return oa_error_set(err, OA_EINVAL, "propensity %g is outside (0, 1]", e->prob);
    if (m->dim != 0 && !oa_all_finite(e->x, m->dim))
      return oa_error_set(err, OA_ENUMERIC, "features contain NaN or Inf");
    if (m->ops->per_arm && (e->arm < 0 || e->arm >= m->arms))
      return oa_error_set(err, OA_ELIMIT, "arm %d is outside the %s model's %d arms", e->arm,
                          m->ops->kind, m->arms);
    if (m->ops->needs_candidates && (e->n_cand <= 0 || !e->cand_x || !e->cand_prob ||
                                     e->chosen < 0 || e->chosen >= e->n_cand))
      return oa_error_set(err, OA_EINVAL, "%s model learns from the whole candidate set",
                          m->ops->kind);
  }
  int rc = m->ops->update(m, ex, n, err);
  if (rc == 0) m->updates += (uint64_t)n;
  return rc;
}

#define MODEL_ENVELOPE_VERSION 1

int oa_model_save(const oa_model *m, oa_buf *out, oa_error *err) {
  oa_buf_put_header(out, "MODL", MODEL_ENVELOPE_VERSION);
  oa_buf_put_str(out, m->ops->kind);
  oa_buf_put_u32(out, (uint32_t)m->dim);
  oa_buf_put_u32(out, (uint32_t)m->arms);
  oa_buf_put_u64(out, m->updates);
  int rc = m->ops->save(m, out, err);
  if (rc) return rc;
  if (out->failed) return oa_error_set(err, OA_ENOMEM, "out of memory while saving a model");
  return 0;
}

int oa_model_load(oa_model *m, oa_reader *in, oa_error *err) {
  char kind[64];
  int rc = oa_read_header(in, "MODL", MODEL_ENVELOPE_VERSION, NULL, err);
  if (rc) return rc;
  oa_read_str(in, kind, sizeof kind);
  uint32_t dim = oa_read_u32(in), arms = oa_read_u32(in);
  uint64_t updates = oa_read_u64(in);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "truncated model data");
  if (strcmp(kind, m->ops->kind) != 0)
    return oa_error_set(err, OA_EFORMAT, "saved model is a %s, not a %s", kind, m->ops->kind);
  if ((int32_t)dim != m->dim || (int32_t)arms != m->arms)
    return oa_error_set(err, OA_EDIM,
                        "saved %s model has dim %u and %u arms, this one dim %d and %d arms",
                        kind, dim, arms, m->dim, m->arms);
  rc = m->ops->load(m, in, err);
  if (rc) return rc;
  m->updates = updates;
  return 0;
}

size_t oa_model_size(const oa_model *m) { return m->ops->size_bytes(m); }

void oa_model_free(oa_model *m) {
  if (m) m->ops->destroy(m);
}
