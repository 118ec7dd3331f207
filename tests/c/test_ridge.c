/* Joint and per-action ridge models: the incrementally maintained inverse
 * and θ against a direct Cholesky solve of the same statistics (with and
 * without forgetting), widths against xᵀA⁻¹x, the moments of posterior
 * draws, save/load, and that bad input changes nothing. */
#include "check.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "models/model.h"

#include <string.h>

/* The statistics as linalg.h defines them, accumulated naively: the data
 * part S = Σ γ^(t-s) φφᵀ, b, and the prior weight c with its reset rule. */
typedef struct direct {
  int d, refactor_every, since;
  double lambda, forget, c;
  double *S, *b, *work, *y;
} direct;

static direct direct_new(int d, double lambda, double forget, int refactor_every) {
  direct s = {d, refactor_every, 0, lambda, forget, 1, NULL, NULL, NULL, NULL};
  s.S = calloc((size_t)d * d, sizeof(double));
  s.b = calloc((size_t)d, sizeof(double));
  s.work = calloc((size_t)d * d, sizeof(double));
  s.y = calloc((size_t)d, sizeof(double));
  return s;
}

static void direct_free(direct *s) {
  free(s->S);
  free(s->b);
  free(s->work);
  free(s->y);
}

static void direct_add(direct *s, const double *x, double r) {
  int d = s->d;
  double g = s->forget;
  for (int i = 0; i < d; i++) {
    for (int j = 0; j < d; j++)
      s->S[i * d + j] = g * s->S[i * d + j] + x[i] * x[j];
    s->b[i] = g * s->b[i] + r * x[i];
  }
  s->c *= g;
  if (++s->since >= s->refactor_every || s->c < 0.5) {
    s->c = 1;
    s->since = 0;
  }
}

/* Cholesky of A = c λ I + S into work. */
static void direct_factor(direct *s) {
  int d = s->d;
  memcpy(s->work, s->S, (size_t)d * d * sizeof(double));
  for (int i = 0; i < d; i++)
    s->work[i * d + i] += s->c * s->lambda;
  CHECK(oa_dchol(s->work, d) == 0);
}

static void direct_theta(direct *s, double *theta) {
  direct_factor(s);
  memcpy(theta, s->b, (size_t)s->d * sizeof(double));
  oa_dchol_solve(s->work, s->d, theta);
}

/* xᵀA⁻¹x (after direct_factor). */
static double direct_quad(direct *s, const double *x) {
  memcpy(s->y, x, (size_t)s->d * sizeof(double));
  oa_dchol_solve(s->work, s->d, s->y);
  double q = 0;
  for (int i = 0; i < s->d; i++)
    q += x[i] * s->y[i];
  return q;
}

static void random_vec(oa_rng *rng, double *x, int d, double scale) {
  for (int i = 0; i < d; i++)
    x[i] = scale * oa_rng_normal(rng);
}

static oa_example example(const double *x, double r, int32_t arm) {
  return (oa_example){.x = x, .arm = arm, .reward = r, .prob = 1};
}

static double max_rel_err(const double *a, const double *b, int n) {
  double m = 0, scale = 0;
  for (int i = 0; i < n; i++)
    scale = fmax(scale, fabs(b[i]));
  for (int i = 0; i < n; i++)
    m = fmax(m, fabs(a[i] - b[i]));
  return m / fmax(scale, 1e-300);
}

/* θ from the model: the means of the identity rows. */
static void model_theta(oa_model *m, int d, double *theta) {
  double *I = calloc((size_t)d * d, sizeof(double));
  for (int i = 0; i < d; i++)
    I[i * d + i] = 1;
  oa_batch b = {.x = I, .ldx = d, .n = d, .d = d};
  CHECK_OK(oa_model_score(m, &b, theta, NULL, NULL));
  free(I);
}

/* Trains a ridge and a direct accumulator on the same stream (in batches of
 * 1..4 examples, to cover both update paths), then compares θ and widths. */
static void compare_with_direct(int d, int updates, double lambda, double forget,
                                int refactor_every, double tol) {
  oa_error err = {0};
  oa_ridge_config cfg = {
      .dim = d, .lambda = lambda, .forget = forget, .refactor_every = refactor_every};
  oa_model *m = oa_ridge_new(&cfg, &err);
  CHECK(m != NULL);
  direct s = direct_new(d, lambda, forget, refactor_every);
  oa_rng rng;
  oa_rng_seed(&rng, 1000 + d);
  double *w = calloc((size_t)d, sizeof(double));
  double *xs = calloc((size_t)4 * d, sizeof(double));
  random_vec(&rng, w, d, 1);
  oa_example ex[4];
  for (int t = 0; t < updates;) {
    int k = 1 + (int)oa_rng_below(&rng, 4);
    if (k > updates - t) k = updates - t;
    for (int j = 0; j < k; j++) {
      double *x = xs + j * d;
      random_vec(&rng, x, d, 0.5);
      if (t > updates / 2) x[0] = 3; /* a shift, so forgetting matters */
      double r = 0;
      for (int i = 0; i < d; i++)
        r += w[i] * x[i];
      r += 0.1 * oa_rng_normal(&rng);
      ex[j] = example(x, r, -1);
      direct_add(&s, x, r);
    }
    CHECK_OK(oa_model_update(m, ex, k, &err));
    t += k;
  }
  CHECK(m->updates == (uint64_t)updates);
  double *theta = calloc((size_t)d, sizeof(double)),
         *want = calloc((size_t)d, sizeof(double));
  model_theta(m, d, theta);
  direct_theta(&s, want);
  double e = max_rel_err(theta, want, d);
  if (!(e < tol)) fprintf(stderr, "d=%d forget=%g: theta error %g\n", d, forget, e);
  CHECK(e < tol);

  int n = 20;
  double *X = calloc((size_t)n * d, sizeof(double)), mean[20], width[20];
  random_vec(&rng, X, n * d, 1);
  oa_batch b = {.x = X, .ldx = d, .n = n, .d = d};
  CHECK_OK(oa_model_score(m, &b, mean, width, &err));
  for (int i = 0; i < n; i++) {
    double q = direct_quad(&s, X + i * d), mu = 0;
    for (int j = 0; j < d; j++)
      mu += want[j] * X[i * d + j];
    CHECK_NEAR(width[i], sqrt(q), tol * sqrt(q));
    CHECK_NEAR(mean[i], mu, tol * (1 + fabs(mu)));
  }
  free(X);
  free(theta);
  free(want);
  free(w);
  free(xs);
  direct_free(&s);
  oa_model_free(m);
}

static void inverse_matches_direct_solve(void) {
  compare_with_direct(16, 100000, 1, 1, 997, 1e-9);
  compare_with_direct(64, 5000, 2, 1, 1000, 1e-9);
  /* Without refactoring at all, Sherman–Morrison alone stays accurate. */
  compare_with_direct(16, 20000, 1, 1, 1 << 30, 1e-7);
}

static void forgetting_matches_direct_weighted_solve(void) {
  compare_with_direct(8, 3000, 1, 0.99, 1000, 1e-9);
  compare_with_direct(8, 3000, 0.5, 0.999, 250, 1e-9);
  /* γ < 1/2 refactors at every update. */
  compare_with_direct(8, 500, 1, 0.3, 1000, 1e-9);
  compare_with_direct(64, 2000, 1, 0.995, 1000, 1e-9);
}

static void widths_handle_every_row_layout(void) {
  int d = 5;
  oa_ridge_config cfg = {.dim = d, .lambda = 2};
  oa_model *m = oa_ridge_new(&cfg, NULL);
  /* The prior: mean 0, width sqrt(xᵀx / λ). */
  double x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, mean[4], width[4], mean2[4], width2[4];
  oa_batch one = {.x = x, .ldx = 0, .n = 3, .d = d};
  CHECK_OK(oa_model_score(m, &one, mean, width, NULL));
  for (int i = 0; i < 3; i++) {
    CHECK(mean[i] == 0);
    CHECK_NEAR(width[i], sqrt(55.0 / 2), 1e-12);
  }
  oa_rng rng;
  oa_rng_seed(&rng, 5);
  double xs[5];
  for (int t = 0; t < 30; t++) {
    random_vec(&rng, xs, d, 1);
    oa_example e = example(xs, xs[0] - xs[1], -1);
    CHECK_OK(oa_model_update(m, &e, 1, NULL));
  }
  /* Overlapping rows (ldx = 1) go through the per-row path, ldx = 0 through
   * the shared-row path; both must agree with each row scored alone. */
  oa_batch overlap = {.x = x, .ldx = 1, .n = 4, .d = d};
  CHECK_OK(oa_model_score(m, &overlap, mean, width, NULL));
  for (int i = 0; i < 4; i++) {
    oa_batch single = {.x = x + i, .ldx = 0, .n = 1, .d = d};
    CHECK_OK(oa_model_score(m, &single, mean2, width2, NULL));
    CHECK_NEAR(mean[i], mean2[0], 1e-12);
    CHECK_NEAR(width[i], width2[0], 1e-12);
  }
  /* Widths can be skipped. */
  CHECK_OK(oa_model_score(m, &overlap, mean2, NULL, NULL));
  for (int i = 0; i < 4; i++)
    CHECK_NEAR(mean[i], mean2[i], 1e-12);
  oa_model_free(m);
}

/* Draws of θ̃ (the scores of the identity rows) have mean θ and covariance
 * v² A⁻¹. */
static void samples_have_the_posterior_moments(void) {
  enum { D = 4, DRAWS = 20000 };
  double v = 0.7;
  oa_ridge_config cfg = {.dim = D, .lambda = 1, .v = v};
  oa_model *m = oa_ridge_new(&cfg, NULL);
  direct s = direct_new(D, 1, 1, 1000);
  oa_rng rng;
  oa_rng_seed(&rng, 77);
  double x[D];
  for (int t = 0; t < 40; t++) {
    random_vec(&rng, x, D, 1);
    x[1] += x[0]; /* correlated features, so A⁻¹ is not diagonal */
    double r = 1 + x[0] - 2 * x[2];
    oa_example e = example(x, r, -1);
    CHECK_OK(oa_model_update(m, &e, 1, NULL));
    direct_add(&s, x, r);
  }
  double I[D * D] = {0}, theta[D];
  for (int i = 0; i < D; i++)
    I[i * D + i] = 1;
  direct_theta(&s, theta);
  double *out = malloc(sizeof(double) * DRAWS * D);
  oa_batch b = {.x = I, .ldx = D, .n = D, .d = D};
  CHECK_OK(oa_model_sample(m, &b, DRAWS, &rng, out, NULL));
  double mu[D] = {0}, cov[D][D] = {{0}};
  for (int k = 0; k < DRAWS; k++)
    for (int i = 0; i < D; i++)
      mu[i] += out[k * D + i] / DRAWS;
  for (int k = 0; k < DRAWS; k++)
    for (int i = 0; i < D; i++)
      for (int j = 0; j < D; j++)
        cov[i][j] += (out[k * D + i] - mu[i]) * (out[k * D + j] - mu[j]) / (DRAWS - 1);
  for (int i = 0; i < D; i++) {
    double ei[D] = {0};
    ei[i] = 1;
    double var_i = v * v * direct_quad(&s, ei);
    CHECK_NEAR(mu[i], theta[i], 5 * sqrt(var_i / DRAWS));
    for (int j = 0; j < D; j++) {
      double ej[D] = {0}, ij[D] = {0};
      ej[j] = 1;
      ij[i] += 1;
      ij[j] += 1;
      double var_j = v * v * direct_quad(&s, ej);
      /* Σ_ij from the quadratic form of e_i + e_j. */
      double want = i == j ? var_i : 0.5 * (v * v * direct_quad(&s, ij) - var_i - var_j);
      CHECK_NEAR(cov[i][j], want, 0.05 * sqrt(var_i * var_j));
    }
  }
  /* One shared row (ldx = 0) gives the same draws as that row repeated. */
  double row[D] = {0.5, -1, 2, 0.25}, rows[3 * D], a[3 * 8], c[3 * 8];
  for (int i = 0; i < 3; i++)
    memcpy(rows + i * D, row, sizeof row);
  oa_rng r1, r2;
  oa_rng_seed(&r1, 9);
  oa_rng_seed(&r2, 9);
  oa_batch shared = {.x = row, .ldx = 0, .n = 3, .d = D};
  oa_batch full = {.x = rows, .ldx = D, .n = 3, .d = D};
  CHECK_OK(oa_model_sample(m, &shared, 8, &r1, a, NULL));
  CHECK_OK(oa_model_sample(m, &full, 8, &r2, c, NULL));
  for (int i = 0; i < 24; i++)
    CHECK_NEAR(a[i], c[i], 1e-12);
  free(out);
  direct_free(&s);
  oa_model_free(m);
}

/* Scores of a fixed batch, to compare a model before and after something. */
static void snapshot_scores(oa_model *m, const double *X, int n, const int32_t *arm,
                            double *out) {
  oa_batch b = {.x = X, .ldx = m->dim, .n = n, .d = m->dim, .arm = arm};
  CHECK_OK(oa_model_score(m, &b, out, out + n, NULL));
}

static int same(const double *a, const double *b, int n) {
  return memcmp(a, b, (size_t)n * sizeof(double)) == 0;
}

static void train(oa_model *m, oa_rng *rng, int updates) {
  int d = m->dim;
  double *x = calloc((size_t)d, sizeof(double));
  for (int t = 0; t < updates; t++) {
    random_vec(rng, x, d, 1);
    int32_t arm = m->arms ? (int32_t)oa_rng_below(rng, (uint64_t)m->arms - 1) : -1;
    oa_example e = example(x, x[0] + 0.1 * oa_rng_normal(rng), arm);
    CHECK_OK(oa_model_update(m, &e, 1, NULL));
  }
  free(x);
}

/* Save, load into a fresh model: identical scores; every truncation and a
 * wrong shape fail and leave the target model unchanged. */
static void save_load_round_trips_and_rejects_bad_data(oa_model *m, oa_model *fresh,
                                                       oa_model *other_dim) {
  enum { N = 6 };
  int d = m->dim;
  oa_rng rng;
  oa_rng_seed(&rng, 31);
  train(m, &rng, 300);
  train(fresh, &rng, 10); /* state to be replaced by the load */
  double X[N * 16], before[2 * N], after[2 * N], orig[2 * N];
  int32_t arm[N];
  for (int i = 0; i < N; i++)
    arm[i] = m->arms ? i % m->arms : 0;
  random_vec(&rng, X, N * d, 1);
  snapshot_scores(m, X, N, m->arms ? arm : NULL, orig);

  oa_buf buf;
  oa_buf_init(&buf);
  oa_error err = {0};
  CHECK_OK(oa_model_save(m, &buf, &err));
  snapshot_scores(fresh, X, N, fresh->arms ? arm : NULL, before);
  for (size_t len = 0; len < buf.len; len += 1 + len / 7) {
    oa_reader r;
    oa_reader_init(&r, buf.data, len);
    CHECK(oa_model_load(fresh, &r, &err) != 0);
    snapshot_scores(fresh, X, N, fresh->arms ? arm : NULL, after);
    CHECK(same(before, after, 2 * N));
  }
  /* The model's own section checks its dim too, not only the envelope. */
  oa_buf raw;
  oa_buf_init(&raw);
  CHECK_OK(m->ops->save(m, &raw, &err));
  oa_reader r;
  oa_reader_init(&r, raw.data, raw.len);
  CHECK(other_dim->ops->load(other_dim, &r, &err) == OA_EDIM);
  oa_reader_init(&r, buf.data, buf.len);
  CHECK(oa_model_load(other_dim, &r, &err) == OA_EDIM);
  /* A corrupted number (NaN in the statistics) is refused. */
  double nan = NAN;
  memcpy(raw.data + raw.len - sizeof nan, &nan, sizeof nan);
  oa_reader_init(&r, raw.data, raw.len);
  CHECK(fresh->ops->load(fresh, &r, &err) == OA_EFORMAT);
  snapshot_scores(fresh, X, N, fresh->arms ? arm : NULL, after);
  CHECK(same(before, after, 2 * N));

  oa_reader_init(&r, buf.data, buf.len);
  CHECK_OK(oa_model_load(fresh, &r, &err));
  CHECK(r.pos == buf.len);
  CHECK(fresh->updates == m->updates);
  snapshot_scores(fresh, X, N, fresh->arms ? arm : NULL, after);
  CHECK(same(orig, after, 2 * N));
  /* Same state, same draws. */
  oa_rng r1, r2;
  oa_rng_seed(&r1, 4);
  oa_rng_seed(&r2, 4);
  double s1[3 * N], s2[3 * N];
  oa_batch b = {.x = X, .ldx = d, .n = N, .d = d, .arm = m->arms ? arm : NULL};
  CHECK_OK(oa_model_sample(m, &b, 3, &r1, s1, NULL));
  CHECK_OK(oa_model_sample(fresh, &b, 3, &r2, s2, NULL));
  CHECK(same(s1, s2, 3 * N));
  CHECK(oa_model_size(fresh) > (size_t)(2 * d * d) * sizeof(double));
  oa_buf_free(&buf);
  oa_buf_free(&raw);
}

static void ridge_save_load(void) {
  oa_ridge_config cfg = {.dim = 7, .lambda = 0.5, .forget = 0.999, .refactor_every = 100};
  oa_model *m = oa_ridge_new(&cfg, NULL), *fresh = oa_ridge_new(&cfg, NULL);
  cfg.dim = 8;
  oa_model *other = oa_ridge_new(&cfg, NULL);
  save_load_round_trips_and_rejects_bad_data(m, fresh, other);
  oa_model_free(m);
  oa_model_free(fresh);
  oa_model_free(other);
}

/* NaN rewards (through the dispatcher) and features large enough to
 * overflow the statistics (straight to the model) are refused, and a batch
 * with one bad example learns nothing. */
static void bad_updates_change_nothing(oa_model *m) {
  enum { N = 5 };
  int d = m->dim;
  oa_rng rng;
  oa_rng_seed(&rng, 8);
  train(m, &rng, 50);
  double X[N * 8], before[2 * N], after[2 * N];
  int32_t arm[N] = {0, 1, 0, 1, 0};
  random_vec(&rng, X, N * d, 1);
  snapshot_scores(m, X, N, m->arms ? arm : NULL, before);
  uint64_t updates = m->updates;
  oa_error err = {0};
  double x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, huge[8];
  for (int i = 0; i < 8; i++)
    huge[i] = 1e200;
  oa_example e = example(x, NAN, m->arms ? 1 : -1);
  CHECK(oa_model_update(m, &e, 1, &err) == OA_ENUMERIC);
  oa_example big = example(huge, 1, m->arms ? 1 : -1);
  CHECK(oa_model_update(m, &big, 1, &err) == OA_ENUMERIC);
  oa_example batch[3] = {example(x, 1, m->arms ? 1 : -1), example(x, 2, m->arms ? 0 : -1),
                         example(huge, 1, m->arms ? 1 : -1)};
  CHECK(oa_model_update(m, batch, 3, &err) == OA_ENUMERIC);
  CHECK(strstr(err.message, "example 2") != NULL);
  if (m->arms) {
    /* An arm first created by a failed update is released again. */
    oa_example fresh_arm[2] = {example(x, 1, 3), example(huge, 1, 3)};
    size_t size = oa_model_size(m);
    CHECK(oa_model_update(m, fresh_arm, 2, &err) == OA_ENUMERIC);
    CHECK(oa_model_update(m, &fresh_arm[1], 1, &err) == OA_ENUMERIC);
    int32_t a3[N] = {3, 3, 3, 3, 3};
    double s3[2 * N];
    snapshot_scores(m, X, N, a3, s3);
    for (int i = 0; i < N; i++)
      CHECK(s3[i] == 0);
    CHECK(oa_model_size(m) == size);
  }
  CHECK(m->updates == updates);
  snapshot_scores(m, X, N, m->arms ? arm : NULL, after);
  CHECK(same(before, after, 2 * N));
  /* λ is fixed once the model has learned. */
  CHECK(m->ops->set_param(m, "lambda", 3, &err) == OA_ESTATE);
}

static void ridge_bad_updates(void) {
  oa_ridge_config cfg = {.dim = 8};
  oa_model *m = oa_ridge_new(&cfg, NULL);
  bad_updates_change_nothing(m);
  oa_model_free(m);
}

static void parameters_are_checked(void) {
  oa_error err = {0};
  oa_ridge_config cfg = {.dim = 3};
  oa_model *m = oa_ridge_new(&cfg, &err);
  double v;
  CHECK_OK(m->ops->get_param(m, "lambda", &v, &err));
  CHECK(v == 1);
  CHECK_OK(m->ops->get_param(m, "refactor_every", &v, &err));
  CHECK(v == 1000);
  CHECK_OK(m->ops->set_param(m, "lambda", 4, &err));
  double x[3] = {2, 0, 0}, mean, width;
  oa_batch b = {.x = x, .ldx = 0, .n = 1, .d = 3};
  CHECK_OK(oa_model_score(m, &b, &mean, &width, NULL));
  CHECK_NEAR(width, 1, 1e-15);
  CHECK(m->ops->set_param(m, "forget", 0, &err) == OA_EINVAL);
  CHECK(m->ops->set_param(m, "forget", 1.5, &err) == OA_EINVAL);
  CHECK_OK(m->ops->set_param(m, "forget", 0.9, &err));
  CHECK(m->ops->set_param(m, "v", -1, &err) == OA_EINVAL);
  CHECK_OK(m->ops->set_param(m, "v", 0, &err));
  CHECK(m->ops->set_param(m, "refactor_every", 2.5, &err) == OA_EINVAL);
  CHECK_OK(m->ops->set_param(m, "refactor_every", 10, &err));
  CHECK(m->ops->set_param(m, "alpha", 1, &err) == OA_EINVAL);
  CHECK(m->ops->get_param(m, "alpha", &v, &err) == OA_EINVAL);
  CHECK_OK(m->ops->get_param(m, "forget", &v, &err));
  CHECK(v == 0.9);
  /* v = 0: every draw is θ. */
  oa_rng rng;
  oa_rng_seed(&rng, 1);
  double out[4];
  CHECK_OK(oa_model_sample(m, &b, 4, &rng, out, NULL));
  for (int k = 0; k < 4; k++)
    CHECK(out[k] == 0);
  oa_model_free(m);
  cfg.lambda = -1;
  CHECK(oa_ridge_new(&cfg, &err) == NULL && err.code == OA_EINVAL);
  cfg = (oa_ridge_config){.dim = 0};
  CHECK(oa_ridge_new(&cfg, &err) == NULL);
  cfg = (oa_ridge_config){.dim = 3};
  CHECK(oa_disjoint_ridge_new(&cfg, 0, &err) == NULL);
  m = oa_disjoint_ridge_new(&cfg, 2, &err);
  CHECK(m && !strcmp(m->ops->kind, "disjoint_ridge") && m->ops->per_arm && m->arms == 2);
  oa_model_free(m);
}

/* Each arm of a disjoint ridge is exactly a joint ridge fed that arm's
 * examples (also with forgetting, since arms forget on their own clocks),
 * whether the examples come one at a time or in batches. */
static void disjoint_arms_are_independent_ridges(void) {
  enum { D = 6, ARMS = 4, USED = 3, T = 3000 };
  oa_ridge_config cfg = {.dim = D, .lambda = 1.5, .forget = 0.995, .refactor_every = 200};
  oa_model *dj = oa_disjoint_ridge_new(&cfg, ARMS, NULL);
  oa_model *batched = oa_disjoint_ridge_new(&cfg, ARMS, NULL);
  oa_model *joint[USED];
  for (int a = 0; a < USED; a++)
    joint[a] = oa_ridge_new(&cfg, NULL);
  oa_rng rng;
  oa_rng_seed(&rng, 12);
  double xs[T][D];
  oa_example ex[T];
  for (int t = 0; t < T; t++) {
    random_vec(&rng, xs[t], D, 1);
    int32_t a = (int32_t)oa_rng_below(&rng, USED);
    ex[t] = example(xs[t], a * xs[t][0] - xs[t][a + 1] + 0.1 * oa_rng_normal(&rng), a);
    CHECK_OK(oa_model_update(dj, &ex[t], 1, NULL));
    oa_example je = ex[t];
    je.arm = -1;
    CHECK_OK(oa_model_update(joint[a], &je, 1, NULL));
  }
  for (int t = 0; t < T;) {
    int k = 1 + (int)oa_rng_below(&rng, 7);
    if (k > T - t) k = T - t;
    CHECK_OK(oa_model_update(batched, ex + t, k, NULL));
    t += k;
  }
  /* One context against every arm, one arm twice (ldx = 0). */
  double x[D], mean[5], width[5], mean_b[5], width_b[5], mean_j, width_j;
  int32_t arms[5] = {0, 1, 2, 3, 1};
  random_vec(&rng, x, D, 1);
  oa_batch b = {.x = x, .ldx = 0, .n = 5, .d = D, .arm = arms};
  CHECK_OK(oa_model_score(dj, &b, mean, width, NULL));
  CHECK_OK(oa_model_score(batched, &b, mean_b, width_b, NULL));
  for (int i = 0; i < 5; i++) {
    if (arms[i] < USED) {
      oa_batch jb = {.x = x, .ldx = 0, .n = 1, .d = D};
      CHECK_OK(oa_model_score(joint[arms[i]], &jb, &mean_j, &width_j, NULL));
      CHECK(mean[i] == mean_j && width[i] == width_j);
    } else {
      double xx = 0;
      for (int j = 0; j < D; j++)
        xx += x[j] * x[j];
      CHECK(mean[i] == 0);
      CHECK_NEAR(width[i], sqrt(xx / 1.5), 1e-12);
    }
    CHECK(mean[i] == mean_b[i] && width[i] == width_b[i]);
  }
  /* Separate rows (ldx = d), means only. */
  double X[5 * D];
  for (int i = 0; i < 5; i++)
    random_vec(&rng, X + i * D, D, 1);
  oa_batch rows = {.x = X, .ldx = D, .n = 5, .d = D, .arm = arms};
  CHECK_OK(oa_model_score(dj, &rows, mean, NULL, NULL));
  for (int i = 0; i < 5; i++) {
    if (arms[i] >= USED) {
      CHECK(mean[i] == 0);
      continue;
    }
    oa_batch jb = {.x = X + i * D, .ldx = 0, .n = 1, .d = D};
    CHECK_OK(oa_model_score(joint[arms[i]], &jb, &mean_j, NULL, NULL));
    CHECK(mean[i] == mean_j);
  }
  /* Draws of arm 1 have the moments of the joint ridge's draws; draws of
   * the unseen arm have mean 0 and variance v² xᵀx / λ. */
  enum { DRAWS = 20000 };
  double *out = malloc(sizeof(double) * DRAWS * 5),
         *jout = malloc(sizeof(double) * DRAWS);
  CHECK_OK(oa_model_sample(dj, &b, DRAWS, &rng, out, NULL));
  oa_batch jb = {.x = x, .ldx = 0, .n = 1, .d = D};
  CHECK_OK(oa_model_sample(joint[1], &jb, DRAWS, &rng, jout, NULL));
  double m1 = 0, mj = 0, m3 = 0, v1 = 0, vj = 0, v3 = 0;
  for (int k = 0; k < DRAWS; k++) {
    CHECK(out[k * 5 + 1] == out[k * 5 + 4]); /* same arm, same draw */
    m1 += out[k * 5 + 1] / DRAWS;
    mj += jout[k] / DRAWS;
    m3 += out[k * 5 + 3] / DRAWS;
  }
  for (int k = 0; k < DRAWS; k++) {
    v1 += pow(out[k * 5 + 1] - m1, 2) / DRAWS;
    vj += pow(jout[k] - mj, 2) / DRAWS;
    v3 += pow(out[k * 5 + 3] - m3, 2) / DRAWS;
  }
  CHECK_NEAR(m1, mj, 5 * sqrt(2 * vj / DRAWS));
  CHECK_NEAR(v1, vj, 0.05 * vj);
  double xx = 0;
  for (int j = 0; j < D; j++)
    xx += x[j] * x[j];
  CHECK_NEAR(m3, 0, 5 * sqrt(xx / 1.5 / DRAWS));
  CHECK_NEAR(v3, xx / 1.5, 0.05 * xx / 1.5);
  free(out);
  free(jout);
  oa_model_free(dj);
  oa_model_free(batched);
  for (int a = 0; a < USED; a++)
    oa_model_free(joint[a]);
}

static void disjoint_save_load(void) {
  oa_ridge_config cfg = {.dim = 5, .lambda = 2, .forget = 0.99};
  oa_model *m = oa_disjoint_ridge_new(&cfg, 4, NULL),
           *fresh = oa_disjoint_ridge_new(&cfg, 4, NULL);
  cfg.dim = 6;
  oa_model *other = oa_disjoint_ridge_new(&cfg, 4, NULL);
  save_load_round_trips_and_rejects_bad_data(m, fresh, other);
  oa_model_free(m);
  oa_model_free(fresh);
  oa_model_free(other);
}

static void disjoint_bad_updates(void) {
  oa_ridge_config cfg = {.dim = 8};
  oa_model *m = oa_disjoint_ridge_new(&cfg, 4, NULL);
  bad_updates_change_nothing(m);
  oa_model_free(m);
}

int main(void) {
  RUN(inverse_matches_direct_solve);
  RUN(forgetting_matches_direct_weighted_solve);
  RUN(widths_handle_every_row_layout);
  RUN(samples_have_the_posterior_moments);
  RUN(ridge_save_load);
  RUN(ridge_bad_updates);
  RUN(parameters_are_checked);
  RUN(disjoint_arms_are_independent_ridges);
  RUN(disjoint_save_load);
  RUN(disjoint_bad_updates);
  return CHECK_DONE();
}
