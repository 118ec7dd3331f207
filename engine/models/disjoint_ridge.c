/* Per-action (disjoint) ridge regression (kind "disjoint_ridge"): one set
 * of ridge statistics (A_k, P_k = A_k⁻¹, b_k, θ_k) per arm over the
 * context only, as in the disjoint LinUCB of Li et al. (2010). Meant for
 * small fixed action sets; the joint model (ridge.c) is the one that
 * generalises to new actions.
 *
 * Arms are allocated on their first update, up to the configured capacity;
 * an arm never updated scores like the prior: mean 0, width sqrt(xᵀx/λ).
 * Each arm's statistics follow linalg.h (forgetting with the prior weight
 * kept in [λ/2, λ]), and each arm forgets on its own clock: an update of
 * arm k decays arm k only, so a rarely played arm keeps what it learned.
 * Every arm is therefore exactly an independent joint ridge fed with that
 * arm's examples.
 *
 * The common call is one context scored against every arm (ldx == 0, one
 * arm per row): the context is never copied, means cost one d-dot per row,
 * and widths (only when asked for) one P_k x per distinct arm. A model is
 * single-threaded: scratch buffers live in it. */
#include "models/model.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/tensor.h"
#include "models/linalg.h"

#define DRIDGE_VERSION  1
#define DRIDGE_MAX_ARMS (1 << 24)

typedef struct arm_state {
  oa__rls st; /* st.mem == NULL: never updated */
  double *L;  /* Cholesky factor of A_k for sample(), valid when L_ok */
  int L_ok;
} arm_state;

typedef struct dridge {
  oa_model base;
  oa__rls_cfg cfg;
  double v;
  int fresh; /* nothing learned or loaded yet: lambda may still change */
  arm_state *arm;
  double *work; /* oa__rls_work_doubles(d) */
  /* Per-call bookkeeping over arms: stamp[k] == epoch marks arm k as seen
   * in the current call, slot[k] is its position in `order`. */
  uint32_t *stamp;
  uint32_t epoch;
  int32_t *slot, *order;
  double *cmean, *cwidth; /* per-arm results cached within one score call */
  oa__rls *snap;          /* snapshots for multi-example updates */
  int32_t nsnap;
  double *scratch; /* posterior draws for sample */
  size_t scratch_cap;
} dridge;

static const double *row(const oa_batch *b, int32_t i) {
  return b->x + (int64_t)i * b->ldx;
}

/* A new epoch for the per-call marks; on wrap-around the marks are cleared
 * so an old stamp can never look current. */
static void next_epoch(dridge *r) {
  if (++r->epoch == 0) {
    memset(r->stamp, 0, (size_t)r->base.arms * sizeof *r->stamp);
    r->epoch = 1;
  }
}

static void arm_score(dridge *r, int32_t k, const double *x, double *mean,
                      double *width) {
  int32_t d = r->base.dim;
  const oa__rls *s = &r->arm[k].st;
  if (!s->mem) {
    *mean = 0;
    if (width) *width = sqrt(oa__dot(d, x, x) / r->cfg.lambda);
    return;
  }
  *mean = oa__dot(d, x, s->theta);
  if (width) *width = sqrt(oa__rls_quad(s, d, x, r->work));
}

static int dridge_score(oa_model *m, const oa_batch *b, double *mean, double *width,
                        oa_error *err) {
  dridge *r = (dridge *)m;
  int32_t n = b->n;
  if (!width || b->ldx != 0) {
    for (int32_t i = 0; i < n; i++)
      arm_score(r, b->arm[i], row(b, i), &mean[i], width ? &width[i] : NULL);
    return 0;
  }
  /* One context, several rows: P_k x once per distinct arm. */
  next_epoch(r);
  for (int32_t i = 0; i < n; i++) {
    int32_t k = b->arm[i];
    if (r->stamp[k] != r->epoch) {
      r->stamp[k] = r->epoch;
      arm_score(r, k, b->x, &r->cmean[k], &r->cwidth[k]);
    }
    mean[i] = r->cmean[k];
    width[i] = r->cwidth[k];
  }
  return 0;
}

/* Draws for every distinct arm of the batch (in order of first appearance,
 * so a seed gives the same scores), `draws` x d per arm: θ̃ = θ_k + v L_k⁻ᵀ z
 * with A_k = L_k L_kᵀ (for an unseen arm A = λI, so v z / sqrt(λ)). Rows
 * with the same arm share that arm's draws. */
static int dridge_sample(oa_model *m, const oa_batch *b, int draws, oa_rng *rng,
                         double *out, oa_error *err) {
  dridge *r = (dridge *)m;
  int32_t d = m->dim, n = b->n, narms = 0;
  next_epoch(r);
  for (int32_t i = 0; i < n; i++) {
    int32_t k = b->arm[i];
    if (r->stamp[k] != r->epoch) {
      r->stamp[k] = r->epoch;
      r->slot[k] = narms;
      r->order[narms++] = k;
    }
  }
  size_t per = (size_t)draws * d;
  int rc = oa__grow(&r->scratch, &r->scratch_cap, per * narms, err);
  if (rc) return rc;
  for (int32_t a = 0; a < narms; a++) {
    arm_state *as = &r->arm[r->order[a]];
    if (as->st.mem && !as->L_ok) {
      if (!as->L) {
        as->L = oa_alloc_aligned((size_t)d * d * sizeof(double));
        if (!as->L)
          return oa_error_set(err, OA_ENOMEM,
                              "out of memory for a ridge posterior factor");
      }
      rc = oa__rls_cholesky(&as->st, d, as->L, err);
      if (rc) return rc;
      as->L_ok = 1;
    }
  }
  for (int32_t a = 0; a < narms; a++) {
    arm_state *as = &r->arm[r->order[a]];
    double *W = r->scratch + per * a;
    for (size_t i = 0; i < per; i++)
      W[i] = oa_rng_normal(rng);
    if (!as->st.mem) {
      double s = r->v / sqrt(r->cfg.lambda);
      for (size_t i = 0; i < per; i++)
        W[i] *= s;
      continue;
    }
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, draws,
                d, r->v, as->L, d, W, d);
    for (int k = 0; k < draws; k++)
      for (int32_t j = 0; j < d; j++)
        W[(size_t)k * d + j] += as->st.theta[j];
  }
  for (int32_t i = 0; i < n; i++) {
    const double *W = r->scratch + per * r->slot[b->arm[i]], *x = row(b, i);
    for (int k = 0; k < draws; k++)
      out[(size_t)k * n + i] = oa__dot(d, W + (size_t)k * d, x);
  }
  return 0;
}

static int arm_alloc(dridge *r, int32_t k, oa_error *err) {
  return oa__rls_init(&r->arm[k].st, r->base.dim, r->cfg.lambda, err);
}

/* Forget arms allocated by a failed update, so the model is as before. */
static void arm_release(dridge *r, int32_t k) {
  oa__rls_free(&r->arm[k].st);
  r->arm[k].L_ok = 0;
}

static int learn_one(dridge *r, const oa_example *e, oa_error *err) {
  arm_state *as = &r->arm[e->arm];
  as->L_ok = 0;
  return oa__rls_learn(&as->st, &r->cfg, e->x, e->reward, r->work, err);
}

/* One example: oa__rls_learn is atomic, and an arm created for it is
 * released again on failure. Several: the touched arms are snapshotted
 * first and restored on failure. */
static int dridge_update(oa_model *m, const oa_example *ex, int n, oa_error *err) {
  dridge *r = (dridge *)m;
  int32_t d = m->dim;
  int rc = 0;
  if (n <= 0) return 0;
  if (n == 1) {
    int created = !r->arm[ex[0].arm].st.mem;
    if (created && (rc = arm_alloc(r, ex[0].arm, err))) return rc;
    rc = learn_one(r, &ex[0], err);
    if (rc) {
      if (created) arm_release(r, ex[0].arm);
      return rc;
    }
    r->fresh = 0;
    return 0;
  }

  /* order[0..ntouched) lists distinct arms; slot[k] < 0 marks an arm that
   * this call created, else its snapshot index. */
  int32_t ntouched = 0, nold = 0;
  next_epoch(r);
  for (int i = 0; i < n; i++) {
    int32_t k = ex[i].arm;
    if (r->stamp[k] == r->epoch) continue;
    r->stamp[k] = r->epoch;
    r->order[ntouched++] = k;
    r->slot[k] = r->arm[k].st.mem ? nold++ : -1;
  }
  if (nold > r->nsnap) {
    oa__rls *s = realloc(r->snap, (size_t)nold * sizeof *s);
    if (!s) return oa_error_set(err, OA_ENOMEM, "out of memory for an update snapshot");
    r->snap = s;
    for (; r->nsnap < nold; r->nsnap++) {
      memset(&r->snap[r->nsnap], 0, sizeof *s);
      if ((rc = oa__rls_init(&r->snap[r->nsnap], d, r->cfg.lambda, err))) return rc;
    }
  }
  int32_t made = 0;
  for (; made < ntouched; made++) {
    int32_t k = r->order[made];
    if (r->slot[k] >= 0)
      oa__rls_copy(&r->snap[r->slot[k]], &r->arm[k].st, d);
    else if ((rc = arm_alloc(r, k, err)))
      break;
  }
  for (int i = 0; !rc && i < n; i++)
    if ((rc = learn_one(r, &ex[i], err)))
      oa_error_prefix(err, "example %d of %d: ", i, n);
  if (rc) {
    for (int32_t a = 0; a < made; a++) {
      int32_t k = r->order[a];
      if (r->slot[k] >= 0)
        oa__rls_copy(&r->arm[k].st, &r->snap[r->slot[k]], d);
      else
        arm_release(r, k);
    }
    return rc;
  }
  r->fresh = 0;
  return 0;
}

static size_t dridge_size(const oa_model *m) {
  const dridge *r = (const dridge *)m;
  size_t d = (size_t)m->dim, arms = (size_t)m->arms, s = sizeof *r;
  size_t state = oa__rls_doubles(m->dim) * sizeof(double);
  s += arms *
       (sizeof *r->arm + sizeof *r->stamp + 2 * sizeof *r->slot + 2 * sizeof(double));
  for (size_t k = 0; k < arms; k++) {
    if (r->arm[k].st.mem) s += state;
    if (r->arm[k].L) s += d * d * sizeof(double);
  }
  s += (size_t)r->nsnap * (sizeof *r->snap + state);
  s += oa__rls_work_doubles(m->dim) * sizeof(double);
  return s + r->scratch_cap * sizeof(double);
}

static int dridge_save(const oa_model *m, oa_buf *out, oa_error *err) {
  const dridge *r = (const dridge *)m;
  oa_buf_put_header(out, "DRDG", DRIDGE_VERSION);
  oa_buf_put_u32(out, (uint32_t)m->dim);
  oa_buf_put_u32(out, (uint32_t)m->arms);
  oa_buf_put_f64(out, r->cfg.lambda);
  for (int32_t k = 0; k < m->arms; k++) {
    oa_buf_put_u32(out, r->arm[k].st.mem ? 1 : 0);
    if (r->arm[k].st.mem) oa__rls_save(&r->arm[k].st, m->dim, out);
  }
  if (out->failed)
    return oa_error_set(err, OA_ENOMEM, "out of memory while saving a disjoint ridge");
  return 0;
}

static void free_arms(arm_state *arm, int32_t arms) {
  if (!arm) return;
  for (int32_t k = 0; k < arms; k++) {
    oa__rls_free(&arm[k].st);
    oa_free_aligned(arm[k].L);
  }
  free(arm);
}

/* Decodes every arm into a new array first; the model switches to it only
 * when all of it is valid. λ comes from the data (it is inside every A_k). */
static int dridge_load(oa_model *m, oa_reader *in, oa_error *err) {
  dridge *r = (dridge *)m;
  int32_t d = m->dim, arms = m->arms;
  int rc = oa_read_header(in, "DRDG", DRIDGE_VERSION, NULL, err);
  if (rc) return rc;
  uint32_t dim = oa_read_u32(in), narms = oa_read_u32(in);
  double lambda = oa_read_f64(in);
  if (in->failed) return oa_error_set(err, OA_EFORMAT, "truncated disjoint ridge data");
  if (dim != (uint32_t)d || narms != (uint32_t)arms)
    return oa_error_set(
        err, OA_EDIM,
        "saved disjoint ridge has dim %u and %u arms, this one dim %d and %d "
        "arms",
        dim, narms, d, arms);
  if (!(lambda > 0) || !isfinite(lambda))
    return oa_error_set(err, OA_EFORMAT, "corrupt disjoint ridge data (lambda %g)",
                        lambda);
  arm_state *t = calloc((size_t)arms, sizeof *t);
  if (!t)
    return oa_error_set(err, OA_ENOMEM, "out of memory while loading a disjoint ridge");
  for (int32_t k = 0; k < arms && !rc; k++) {
    uint32_t present = oa_read_u32(in);
    if (in->failed)
      rc = oa_error_set(err, OA_EFORMAT, "truncated disjoint ridge data");
    else if (present > 1)
      rc = oa_error_set(err, OA_EFORMAT, "corrupt disjoint ridge data");
    else if (present && !(rc = oa__rls_init(&t[k].st, d, lambda, err)))
      rc = oa__rls_load(&t[k].st, d, in, r->work, err);
    if (rc) oa_error_prefix(err, "arm %d: ", k);
  }
  if (rc) {
    free_arms(t, arms);
    return rc;
  }
  free_arms(r->arm, arms);
  r->arm = t;
  r->cfg.lambda = lambda;
  r->fresh = 0;
  return 0;
}

static int dridge_set_param(oa_model *m, const char *name, double value, oa_error *err) {
  dridge *r = (dridge *)m;
  int rc =
      oa__ridge_set_param(&r->cfg, &r->v, r->fresh, "disjoint ridge", name, value, err);
  if (rc == 1)
    return oa_error_set(err, OA_EINVAL, "disjoint ridge has no parameter '%s'", name);
  return rc;
}

static int dridge_get_param(const oa_model *m, const char *name, double *value,
                            oa_error *err) {
  const dridge *r = (const dridge *)m;
  if (oa__ridge_get_param(&r->cfg, r->v, name, value))
    return oa_error_set(err, OA_EINVAL, "disjoint ridge has no parameter '%s'", name);
  return 0;
}

static void dridge_destroy(oa_model *m) {
  dridge *r = (dridge *)m;
  free_arms(r->arm, m->arms);
  for (int32_t i = 0; i < r->nsnap; i++)
    oa__rls_free(&r->snap[i]);
  free(r->snap);
  oa_free_aligned(r->work);
  free(r->stamp);
  free(r->slot);
  free(r->order);
  free(r->cmean);
  free(r->cwidth);
  oa_free_aligned(r->scratch);
  free(r);
}

static const oa_model_ops dridge_ops = {
    .kind = "disjoint_ridge",
    .needs_candidates = 0,
    .per_arm = 1,
    .score = dridge_score,
    .sample = dridge_sample,
    .update = dridge_update,
    .size_bytes = dridge_size,
    .save = dridge_save,
    .load = dridge_load,
    .set_param = dridge_set_param,
    .get_param = dridge_get_param,
    .destroy = dridge_destroy,
};

oa_model *oa_disjoint_ridge_new(const oa_ridge_config *cfg, int32_t arms, oa_error *err) {
  oa__rls_cfg c;
  double v;
  if (oa__ridge_check_config(cfg, &c, &v, err)) return NULL;
  if (arms < 1 || arms > DRIDGE_MAX_ARMS) {
    oa_error_set(err, arms < 1 ? OA_EINVAL : OA_ELIMIT,
                 "disjoint ridge arms must be in [1, %d], got %d", DRIDGE_MAX_ARMS, arms);
    return NULL;
  }
  dridge *r = calloc(1, sizeof *r);
  if (!r) {
    oa_error_set(err, OA_ENOMEM, "out of memory for a disjoint ridge model");
    return NULL;
  }
  r->base = (oa_model){.ops = &dridge_ops, .dim = c.d, .arms = arms, .updates = 0};
  r->cfg = c;
  r->v = v;
  r->fresh = 1;
  size_t na = (size_t)arms;
  r->arm = calloc(na, sizeof *r->arm);
  r->work = oa_alloc_aligned(oa__rls_work_doubles(c.d) * sizeof(double));
  r->stamp = calloc(na, sizeof *r->stamp);
  r->slot = calloc(na, sizeof *r->slot);
  r->order = calloc(na, sizeof *r->order);
  r->cmean = calloc(na, sizeof *r->cmean);
  r->cwidth = calloc(na, sizeof *r->cwidth);
  if (!r->arm || !r->work || !r->stamp || !r->slot || !r->order || !r->cmean ||
      !r->cwidth) {
    oa_error_set(err, OA_ENOMEM, "out of memory for a disjoint ridge with %d arms", arms);
    dridge_destroy(&r->base);
    return NULL;
  }
  return &r->base;
}
