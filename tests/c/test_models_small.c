/* Small models: online Bayesian logistic regression, Beta-Bernoulli
 * Thompson sampling and UCB1. They learn what they should, their
 * uncertainty behaves, save/load round-trips exactly, and bad input
 * (truncated data, NaN rewards) changes nothing. */
#include "check.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/rng.h"
#include "models/model.h"

#include <string.h>

#define D 6

static oa_example example(const double *x, int32_t arm, double r) {
  oa_example e;
  memset(&e, 0, sizeof e);
  e.x = x;
  e.arm = arm;
  e.reward = r;
  e.prob = 1;
  return e;
}

/* A separable problem: label = [wᵀx > 0] for a fixed w, with a bias feature. */
static void separable_row(oa_rng *rng, double *x, double *label) {
  static const double w[D] = {0.5, 2, -1.5, 1, 0, -0.7};
  x[0] = 1;
  for (int j = 1; j < D; j++)
    x[j] = oa_rng_normal(rng);
  double s = 0;
  for (int j = 0; j < D; j++)
    s += w[j] * x[j];
  *label = s > 0;
}

static double score1(oa_model *m, const double *x, double *width) {
  oa_batch b = {x, 0, 1, m->dim, NULL};
  double mean = NAN;
  CHECK_OK(oa_model_score(m, &b, &mean, width, NULL));
  return mean;
}

static void logistic_learns_a_separable_problem(void) {
  oa_error err = {0};
  oa_logistic_config cfg = {.dim = D};
  oa_model *m = oa_logistic_new(&cfg, &err);
  CHECK(m != NULL);
  if (!m) return;
  CHECK(!strcmp(m->ops->kind, "logistic"));
  oa_rng rng;
  oa_rng_seed(&rng, 11);
  double probe[D] = {1, 0.3, -0.2, 0.5, 0.1, 0.4}, w0, w1, w2;
  score1(m, probe, &w0);
  double x[D], y;
  for (int t = 0; t < 2000; t++) {
    separable_row(&rng, x, &y);
    oa_example e = example(x, -1, y);
    CHECK_OK(oa_model_update(m, &e, 1, &err));
    if (t == 99) score1(m, probe, &w1);
  }
  score1(m, probe, &w2);
  CHECK(w1 < w0 && w2 < w1); /* the posterior tightens with data */
  int correct = 0;
  for (int t = 0; t < 1000; t++) {
    separable_row(&rng, x, &y);
    correct += (score1(m, x, NULL) > 0.5) == (y > 0.5);
  }
  CHECK(correct > 900);
  CHECK(m->updates == 2000);

  /* Thompson draws average near the mean (v = 1, small posterior). */
  double xs[2 * D] = {1, 0.5, 0.5, 0, 0, 0, 1, -0.5, 0.2, 0.3, 0, 0};
  oa_batch b = {xs, D, 2, D, NULL};
  double mean[2], width[2], out[2 * 4000];
  CHECK_OK(oa_model_score(m, &b, mean, width, NULL));
  CHECK_OK(oa_model_sample(m, &b, 4000, &rng, out, NULL));
  for (int i = 0; i < 2; i++) {
    double s = 0;
    for (int k = 0; k < 4000; k++)
      s += out[k * 2 + i];
    CHECK_NEAR(s / 4000, mean[i], 3 * width[i] + 0.01);
  }

  /* Parameters: readable, settable, validated; lambda only before learning. */
  double v;
  CHECK_OK(m->ops->get_param(m, "lr", &v, NULL));
  CHECK(v == 0.1);
  CHECK(m->ops->set_param(m, "lambda", 2, &err) != 0);
  CHECK(m->ops->set_param(m, "forget", 1.5, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "forget") != NULL);
  CHECK(m->ops->set_param(m, "nope", 1, &err) == OA_EINVAL);
  CHECK_OK(m->ops->set_param(m, "v", 0.5, &err));
  CHECK_OK(m->ops->get_param(m, "v", &v, &err));
  CHECK(v == 0.5);
  CHECK(oa_model_size(m) >= 2 * D * sizeof(double));
  oa_model_free(m);
}

/* Fractional rewards and forgetting: the model follows a preference that flips. */
static void logistic_forgets_and_follows_drift(void) {
  oa_logistic_config cfg = {.dim = 2, .forget = 0.98};
  oa_model *m = oa_logistic_new(&cfg, NULL);
  double x[2] = {1, 1};
  for (int t = 0; t < 300; t++) {
    oa_example e = example(x, -1, 0.9);
    CHECK_OK(oa_model_update(m, &e, 1, NULL));
  }
  CHECK_NEAR(score1(m, x, NULL), 0.9, 0.05);
  for (int t = 0; t < 300; t++) {
    oa_example e = example(x, -1, 0.1);
    CHECK_OK(oa_model_update(m, &e, 1, NULL));
  }
  CHECK_NEAR(score1(m, x, NULL), 0.1, 0.05);
  oa_example bad = example(x, -1, 1.5);
  CHECK(oa_model_update(m, &bad, 1, NULL) == OA_EINVAL);
  oa_model_free(m);
}

static void bernoulli_ts_posterior_moments(void) {
  oa_error err = {0};
  oa_model *m = oa_bernoulli_ts_new(3, 2, 3, 1, &err);
  CHECK(m != NULL);
  if (!m) return;
  CHECK(m->dim == 0 && m->arms == 3);
  double row[5] = {0}; /* context rows of any width are accepted and ignored */
  /* arm 1: 4 successes, 1 failure, and one 0.5 reward (half of each). */
  double rs[6] = {1, 1, 0, 1, 1, 0.5};
  for (int i = 0; i < 6; i++) {
    oa_example e = example(row, 1, rs[i]);
    CHECK_OK(oa_model_update(m, &e, 1, &err));
  }
  int32_t arms[2] = {0, 1};
  oa_batch b = {row, 0, 2, 5, arms};
  double mean[2], width[2];
  CHECK_OK(oa_model_score(m, &b, mean, width, &err));
  /* Prior Beta(2, 3); arm 1 posterior Beta(6.5, 4.5). */
  CHECK_NEAR(mean[0], 0.4, 1e-12);
  CHECK_NEAR(width[0], sqrt(2.0 * 3 / (25 * 6)), 1e-12);
  CHECK_NEAR(mean[1], 6.5 / 11, 1e-12);
  CHECK_NEAR(width[1], sqrt(6.5 * 4.5 / (121 * 12)), 1e-12);

  enum { K = 20000 };
  static double out[2 * K];
  oa_rng rng;
  oa_rng_seed(&rng, 5);
  CHECK_OK(oa_model_sample(m, &b, K, &rng, out, &err));
  for (int i = 0; i < 2; i++) {
    double s = 0, s2 = 0;
    for (int k = 0; k < K; k++) {
      double v = out[k * 2 + i];
      CHECK(v >= 0 && v <= 1);
      s += v;
      s2 += v * v;
    }
    double mu = s / K, sd = sqrt(s2 / K - mu * mu);
    CHECK_NEAR(mu, mean[i], 0.005);
    CHECK_NEAR(sd, width[i], 0.005);
  }

  oa_example bad = example(row, 7, 1);
  CHECK(oa_model_update(m, &bad, 1, &err) == OA_ELIMIT);
  bad = example(row, 0, 2);
  CHECK(oa_model_update(m, &bad, 1, &err) == OA_EINVAL);
  CHECK(oa_bernoulli_ts_new(0, 1, 1, 1, &err) == NULL);
  CHECK(oa_bernoulli_ts_new(2, -1, 1, 1, &err) == NULL);
  oa_model_free(m);
}

static void ucb1_tries_every_arm_then_prefers_the_best(void) {
  oa_model *m = oa_ucb1_new(4, 1, NULL);
  CHECK(m != NULL);
  if (!m) return;
  const double p_arm[4] = {0.2, 0.8, 0.4, 0.5};
  int32_t arms[4] = {0, 1, 2, 3};
  double row[1] = {0};
  oa_batch b = {row, 0, 4, 1, arms};
  oa_rng rng;
  oa_rng_seed(&rng, 3);
  int pulls[4] = {0};
  for (int t = 0; t < 2000; t++) {
    double mean[4], width[4];
    CHECK_OK(oa_model_score(m, &b, mean, width, NULL));
    int best = 0;
    for (int k = 1; k < 4; k++)
      if (mean[k] + width[k] > mean[best] + width[best]) best = k;
    if (t < 4) {
      /* Untried arms report the huge width: each is tried once first. */
      CHECK(pulls[best] == 0);
      CHECK(width[best] == 1e9);
    }
    pulls[best]++;
    oa_example e = example(row, best, oa_rng_uniform(&rng) < p_arm[best]);
    CHECK_OK(oa_model_update(m, &e, 1, NULL));
  }
  for (int k = 0; k < 4; k++)
    CHECK(pulls[k] >= 1);
  CHECK(pulls[1] > 1000);
  double v;
  CHECK_OK(m->ops->get_param(m, "forget", &v, NULL));
  CHECK(v == 1);
  oa_model_free(m);
}

/* Saves, loads into a fresh model of the same shape, and compares scores;
 * then checks that every truncation fails and leaves the model unchanged. */
static void round_trip(oa_model *m, oa_model *fresh, const oa_batch *b) {
  oa_error err = {0};
  oa_buf buf;
  oa_buf_init(&buf);
  CHECK_OK(oa_model_save(m, &buf, &err));
  oa_reader r;
  oa_reader_init(&r, buf.data, buf.len);
  CHECK_OK(oa_model_load(fresh, &r, &err));
  double m1[4], w1[4], m2[4], w2[4];
  CHECK_OK(oa_model_score(m, b, m1, w1, &err));
  CHECK_OK(oa_model_score(fresh, b, m2, w2, &err));
  CHECK(memcmp(m1, m2, sizeof(double) * b->n) == 0);
  CHECK(memcmp(w1, w2, sizeof(double) * b->n) == 0);
  CHECK(fresh->updates == m->updates);

  for (size_t cut = 0; cut < buf.len; cut += 3) {
    oa_reader_init(&r, buf.data, cut);
    CHECK(oa_model_load(m, &r, &err) != 0);
  }
  CHECK_OK(oa_model_score(m, b, m2, w2, &err));
  CHECK(memcmp(m1, m2, sizeof(double) * b->n) == 0);
  CHECK(memcmp(w1, w2, sizeof(double) * b->n) == 0);
  oa_buf_free(&buf);
}

static void save_load_round_trips_and_truncation_changes_nothing(void) {
  oa_rng rng;
  oa_rng_seed(&rng, 21);
  double x[D], y;

  oa_logistic_config cfg = {.dim = D, .lambda = 2, .forget = 0.999};
  oa_model *a = oa_logistic_new(&cfg, NULL), *a2 = oa_logistic_new(&cfg, NULL);
  for (int t = 0; t < 200; t++) {
    separable_row(&rng, x, &y);
    oa_example e = example(x, -1, y);
    CHECK_OK(oa_model_update(a, &e, 1, NULL));
  }
  double rows[4 * D];
  for (int i = 0; i < 4; i++)
    separable_row(&rng, rows + i * D, &y);
  oa_batch b = {rows, D, 4, D, NULL};
  round_trip(a, a2, &b);

  int32_t arms[4] = {0, 1, 2, 3};
  double row[3] = {0};
  oa_batch cb = {row, 0, 4, 3, arms};
  oa_model *ts = oa_bernoulli_ts_new(4, 1, 1, 0.99, NULL),
           *ts2 = oa_bernoulli_ts_new(4, 1, 1, 0.99, NULL);
  oa_model *u = oa_ucb1_new(4, 0.995, NULL), *u2 = oa_ucb1_new(4, 0.995, NULL);
  for (int t = 0; t < 100; t++) {
    oa_example e = example(row, t % 3, oa_rng_uniform(&rng));
    CHECK_OK(oa_model_update(ts, &e, 1, NULL));
    CHECK_OK(oa_model_update(u, &e, 1, NULL));
  }
  round_trip(ts, ts2, &cb);
  round_trip(u, u2, &cb);

  /* A model of another kind or shape refuses the bytes. */
  oa_buf buf;
  oa_buf_init(&buf);
  CHECK_OK(oa_model_save(ts, &buf, NULL));
  oa_reader r;
  oa_reader_init(&r, buf.data, buf.len);
  CHECK(oa_model_load(u, &r, NULL) == OA_EFORMAT);
  oa_model *ts3 = oa_bernoulli_ts_new(5, 1, 1, 1, NULL);
  oa_reader_init(&r, buf.data, buf.len);
  CHECK(oa_model_load(ts3, &r, NULL) == OA_EDIM);
  oa_buf_free(&buf);

  oa_model_free(a);
  oa_model_free(a2);
  oa_model_free(ts);
  oa_model_free(ts2);
  oa_model_free(ts3);
  oa_model_free(u);
  oa_model_free(u2);
}

static void nan_reward_is_rejected_and_changes_nothing(void) {
  oa_logistic_config cfg = {.dim = 2};
  oa_model *ms[3] = {oa_logistic_new(&cfg, NULL), oa_bernoulli_ts_new(2, 1, 1, 1, NULL),
                     oa_ucb1_new(2, 1, NULL)};
  double x[2] = {1, 0.5};
  int32_t arm[1] = {1};
  for (int k = 0; k < 3; k++) {
    oa_model *m = ms[k];
    int per_arm = m->ops->per_arm;
    oa_batch b = {x, 0, 1, 2, per_arm ? arm : NULL};
    oa_example good = example(x, per_arm ? 1 : -1, 1);
    CHECK_OK(oa_model_update(m, &good, 1, NULL));
    double before, after;
    CHECK_OK(oa_model_score(m, &b, &before, NULL, NULL));
    /* A batch whose second example is bad is refused as a whole. */
    oa_example two[2] = {good, example(x, per_arm ? 1 : -1, NAN)};
    oa_error err = {0};
    CHECK(oa_model_update(m, two, 2, &err) == OA_ENUMERIC);
    CHECK(strstr(err.message, "reward") != NULL);
    CHECK_OK(oa_model_score(m, &b, &after, NULL, NULL));
    CHECK(before == after);
    CHECK(m->updates == 1);
    oa_model_free(m);
  }
}

int main(void) {
  RUN(logistic_learns_a_separable_problem);
  RUN(logistic_forgets_and_follows_drift);
  RUN(bernoulli_ts_posterior_moments);
  RUN(ucb1_tries_every_arm_then_prefers_the_best);
  RUN(save_load_round_trips_and_truncation_changes_nothing);
  RUN(nan_reward_is_rejected_and_changes_nothing);
  return CHECK_DONE();
}
