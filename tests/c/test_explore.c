/* Explorers: every distribution sums to 1 and matches its formula on cases
 * worked out by hand; the sampled choice follows the distribution; Thompson
 * sampling's estimate is close to the exact probability; bad parameters,
 * NaN scores and bad custom distributions are rejected. */
#include "check.h"
#include "core/error.h"
#include "core/rng.h"
#include "explore/explore.h"

#include <string.h>

static double sum(const double *p, int n) {
  double s = 0;
  for (int i = 0; i < n; i++)
    s += p[i];
  return s;
}

/* Runs one explorer and checks the invariants every explorer keeps. */
static int run(oa_explore_kind kind, const oa_explore_params *p, const double *mean,
               const double *width, int n, uint64_t seed, double *prob, int32_t *chosen,
               int *estimated) {
  oa_explore_input in = {n, mean, width, NULL, 0};
  oa_rng rng;
  oa_rng_seed(&rng, seed);
  oa_error err = {0};
  int est = -1;
  int rc = oa_explore(kind, p, &in, &rng, prob, chosen, &est, &err);
  if (rc) return rc;
  CHECK_NEAR(sum(prob, n), 1.0, 1e-9);
  CHECK(*chosen >= 0 && *chosen < n);
  CHECK(prob[*chosen] > 0);
  for (int i = 0; i < n; i++)
    CHECK(prob[i] >= 0);
  if (estimated) *estimated = est;
  return 0;
}

static void greedy_splits_ties_uniformly(void) {
  oa_explore_params p = oa_explore_defaults();
  double mean[4] = {0.2, 0.7, 0.7 * (1 + 1e-14), 0.1}, prob[4];
  int32_t c;
  int est;
  CHECK_OK(run(OA_EXPLORE_GREEDY, &p, mean, NULL, 4, 1, prob, &c, &est));
  CHECK(est == 0);
  CHECK_NEAR(prob[0], 0, 0);
  CHECK_NEAR(prob[1], 0.5, 1e-12);
  CHECK_NEAR(prob[2], 0.5, 1e-12);
  CHECK(c == 1 || c == 2);
  /* Outside the tie tolerance the larger one wins alone. */
  mean[2] = 0.7 + 1e-9;
  CHECK_OK(run(OA_EXPLORE_GREEDY, &p, mean, NULL, 4, 1, prob, &c, NULL));
  CHECK_NEAR(prob[2], 1, 1e-12);
  CHECK(c == 2);
}

static void egreedy_gives_epsilon_over_n_and_splits_the_rest(void) {
  oa_explore_params p = oa_explore_defaults();
  p.epsilon = 0.2;
  double mean[5] = {1, 3, 2, 3, 0}, prob[5];
  int32_t c;
  CHECK_OK(run(OA_EXPLORE_EGREEDY, &p, mean, NULL, 5, 2, prob, &c, NULL));
  /* 0.2/5 = 0.04 each, plus 0.8/2 = 0.4 on each of the two tied best. */
  double want[5] = {0.04, 0.44, 0.04, 0.44, 0.04};
  for (int i = 0; i < 5; i++)
    CHECK_NEAR(prob[i], want[i], 1e-12);
  p.epsilon = 1;
  CHECK_OK(run(OA_EXPLORE_EGREEDY, &p, mean, NULL, 5, 2, prob, &c, NULL));
  for (int i = 0; i < 5; i++)
    CHECK_NEAR(prob[i], 0.2, 1e-12);
}

static void softmax_matches_exp_and_never_overflows(void) {
  oa_explore_params p = oa_explore_defaults();
  p.temperature = 0.5;
  double mean[3] = {0, 1, 2}, prob[3];
  int32_t c;
  CHECK_OK(run(OA_EXPLORE_SOFTMAX, &p, mean, NULL, 3, 3, prob, &c, NULL));
  double z = 1 + exp(2) + exp(4);
  CHECK_NEAR(prob[0], 1 / z, 1e-12);
  CHECK_NEAR(prob[1], exp(2) / z, 1e-12);
  CHECK_NEAR(prob[2], exp(4) / z, 1e-12);
  /* Scores that would overflow exp() without the max shift. */
  double big[3] = {1000, 1001, 1001}, pb[3];
  p.temperature = 1;
  CHECK_OK(run(OA_EXPLORE_SOFTMAX, &p, big, NULL, 3, 3, pb, &c, NULL));
  double zb = exp(-1) + 2;
  CHECK_NEAR(pb[0], exp(-1) / zb, 1e-12);
  CHECK_NEAR(pb[1], 1 / zb, 1e-12);
  /* A tiny temperature underflows the others to 0: the choice is still the max. */
  p.temperature = 1e-6;
  double far[2] = {0, 1}, pf[2];
  for (uint64_t s = 0; s < 50; s++) {
    CHECK_OK(run(OA_EXPLORE_SOFTMAX, &p, far, NULL, 2, s, pf, &c, NULL));
    CHECK(c == 1);
  }
}

static void ucb_picks_the_highest_upper_bound(void) {
  oa_explore_params p = oa_explore_defaults();
  p.alpha = 2;
  double mean[3] = {0.5, 0.4, 0.1}, width[3] = {0.0, 0.1, 0.3}, prob[3];
  int32_t c;
  /* Bounds 0.5, 0.6, 0.7. */
  CHECK_OK(run(OA_EXPLORE_UCB, &p, mean, width, 3, 4, prob, &c, NULL));
  CHECK_NEAR(prob[2], 1, 1e-12);
  CHECK(c == 2);
  p.alpha = 0; /* plain greedy on the mean */
  CHECK_OK(run(OA_EXPLORE_UCB, &p, mean, width, 3, 4, prob, &c, NULL));
  CHECK(c == 0 && prob[0] == 1);
  /* Never-tried arms (UCB1 reports width 1e9) tie whatever their means. */
  p.alpha = 1;
  double m2[4] = {0.9, 0.0, 0.3, 0.0}, w2[4] = {0.5, 1e9, 0.2, 1e9}, p2[4];
  CHECK_OK(run(OA_EXPLORE_UCB, &p, m2, w2, 4, 5, p2, &c, NULL));
  CHECK_NEAR(p2[1], 0.5, 1e-12);
  CHECK_NEAR(p2[3], 0.5, 1e-12);
  CHECK(c == 1 || c == 3);
  m2[1] = 0.4; /* still a tie: an infinite bound is infinite */
  CHECK_OK(run(OA_EXPLORE_UCB, &p, m2, w2, 4, 5, p2, &c, NULL));
  CHECK_NEAR(p2[1], 0.5, 1e-12);
}

static void squarecb_follows_inverse_gap_weighting(void) {
  oa_explore_params p = oa_explore_defaults();
  p.gamma = 10;
  double mean[4] = {0.9, 0.5, 0.9, 0.1}, prob[4];
  int32_t c;
  CHECK_OK(run(OA_EXPLORE_SQUARECB, &p, mean, NULL, 4, 6, prob, &c, NULL));
  double p1 = 1 / (4 + 10 * 0.4), p3 = 1 / (4 + 10 * 0.8);
  CHECK_NEAR(prob[1], p1, 1e-12);
  CHECK_NEAR(prob[3], p3, 1e-12);
  CHECK_NEAR(prob[0], (1 - p1 - p3) / 2, 1e-12);
  CHECK_NEAR(prob[2], (1 - p1 - p3) / 2, 1e-12);
  p.gamma = 0; /* no confidence in the scores: uniform */
  CHECK_OK(run(OA_EXPLORE_SQUARECB, &p, mean, NULL, 4, 6, prob, &c, NULL));
  for (int i = 0; i < 4; i++)
    CHECK_NEAR(prob[i], 0.25, 1e-12);
}

/* Chi-square of the chosen indexes' counts against the distribution. With 4
 * cells (3 degrees of freedom), 25 is far beyond the 99.99% quantile (21.1),
 * and the seeds are fixed, so this never flakes. */
static void choice_frequency_matches_probability(void) {
  oa_explore_params p = oa_explore_defaults();
  p.temperature = 0.7;
  p.epsilon = 0.3;
  p.gamma = 5;
  double mean[4] = {0.1, 0.5, 0.3, 0.45}, prob[4];
  oa_explore_kind kinds[3] = {OA_EXPLORE_SOFTMAX, OA_EXPLORE_EGREEDY,
                              OA_EXPLORE_SQUARECB};
  for (int k = 0; k < 3; k++) {
    int counts[4] = {0}, trials = 40000;
    int32_t c;
    for (int t = 0; t < trials; t++) {
      CHECK_OK(run(kinds[k], &p, mean, NULL, 4, 1000 + (uint64_t)t, prob, &c, NULL));
      counts[c]++;
    }
    double chi2 = 0;
    for (int i = 0; i < 4; i++) {
      double e = trials * prob[i];
      chi2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    if (!(chi2 < 25)) fprintf(stderr, "%s: chi2 = %g\n", oa_explore_name(kinds[k]), chi2);
    CHECK(chi2 < 25);
  }
}

/* P(X1 > X2) for independent normals. */
static double p_greater(double m1, double s1, double m2, double s2) {
  return 0.5 * erfc(-(m1 - m2) / sqrt(2 * (s1 * s1 + s2 * s2)));
}

static void thompson_estimates_the_argmax_probability(void) {
  oa_explore_params p = oa_explore_defaults();
  p.draws = 4096;
  double mean[2] = {0.3, 0.0}, width[2] = {0.5, 0.4}, prob[2];
  int32_t c;
  int est = 0;
  double exact = p_greater(0.3, 0.5, 0.0, 0.4);
  CHECK_OK(run(OA_EXPLORE_THOMPSON, &p, mean, width, 2, 7, prob, &c, &est));
  CHECK(est == 1);
  /* Standard error sqrt(p(1-p)/4096) ≈ 0.007; allow 5 of them. */
  CHECK_NEAR(prob[0], exact, 0.035);

  /* With caller-supplied draws the probability is the argmax frequency. */
  double draws[8] = {1, 2, /* draw 0: arm 1 */ 3, 0, 5, 5, /* tie */ 0, 1};
  oa_explore_input in = {2, mean, width, draws, 4};
  oa_rng rng;
  oa_rng_seed(&rng, 1);
  CHECK_OK(oa_explore(OA_EXPLORE_THOMPSON, &p, &in, &rng, prob, &c, &est, NULL));
  CHECK(c == 1 && est == 1);
  CHECK_NEAR(prob[0], 1.5 / 4, 1e-12);
  CHECK_NEAR(prob[1], 2.5 / 4, 1e-12);

  /* A tie in draw 0 is broken with the rng, both ways over seeds. */
  double tie[2] = {4, 4};
  oa_explore_input tin = {2, mean, NULL, tie, 1};
  int seen[2] = {0};
  for (uint64_t s = 0; s < 64; s++) {
    oa_rng_seed(&rng, s);
    CHECK_OK(oa_explore(OA_EXPLORE_THOMPSON, &p, &tin, &rng, prob, &c, &est, NULL));
    seen[c]++;
    CHECK_NEAR(prob[0], 0.5, 1e-12);
  }
  CHECK(seen[0] > 0 && seen[1] > 0);
}

static void same_seed_same_choice(void) {
  oa_explore_params p = oa_explore_defaults();
  double mean[6] = {0.1, 0.2, 0.3, 0.2, 0.1, 0.25}, width[6] = {1, 1, 1, 1, 1, 1};
  double a[6], b[6];
  oa_explore_kind kinds[6] = {OA_EXPLORE_GREEDY,   OA_EXPLORE_EGREEDY,
                              OA_EXPLORE_SOFTMAX,  OA_EXPLORE_UCB,
                              OA_EXPLORE_THOMPSON, OA_EXPLORE_SQUARECB};
  for (int k = 0; k < 6; k++)
    for (uint64_t s = 0; s < 20; s++) {
      int32_t ca, cb;
      CHECK_OK(run(kinds[k], &p, mean, width, 6, s, a, &ca, NULL));
      CHECK_OK(run(kinds[k], &p, mean, width, 6, s, b, &cb, NULL));
      CHECK(ca == cb);
      CHECK(memcmp(a, b, sizeof a) == 0);
    }
}

static void bad_parameters_and_nan_are_rejected(void) {
  oa_error err = {0};
  oa_explore_params p = oa_explore_defaults();
  CHECK_OK(oa_explore_check(OA_EXPLORE_THOMPSON, &p, &err));
  p.epsilon = 1.5;
  CHECK(oa_explore_check(OA_EXPLORE_EGREEDY, &p, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "epsilon") != NULL);
  CHECK_OK(oa_explore_check(OA_EXPLORE_GREEDY, &p, &err)); /* epsilon unused there */
  p = oa_explore_defaults();
  p.temperature = 0;
  CHECK(oa_explore_check(OA_EXPLORE_SOFTMAX, &p, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "temperature") != NULL);
  p = oa_explore_defaults();
  p.alpha = NAN;
  CHECK(oa_explore_check(OA_EXPLORE_UCB, &p, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "alpha") != NULL);
  p = oa_explore_defaults();
  p.gamma = -1;
  CHECK(oa_explore_check(OA_EXPLORE_SQUARECB, &p, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "gamma") != NULL);
  p = oa_explore_defaults();
  p.draws = 0;
  CHECK(oa_explore_check(OA_EXPLORE_THOMPSON, &p, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "draws") != NULL);
  p.draws = 5000;
  CHECK(oa_explore_check(OA_EXPLORE_THOMPSON, &p, &err) == OA_EINVAL);

  p = oa_explore_defaults();
  double prob[3];
  int32_t c;
  double mean[3] = {0.1, NAN, 0.3}, width[3] = {0, NAN, 0};
  CHECK(run(OA_EXPLORE_GREEDY, &p, mean, NULL, 3, 1, prob, &c, NULL) == OA_ENUMERIC);
  mean[1] = 0.2;
  CHECK(run(OA_EXPLORE_UCB, &p, mean, width, 3, 1, prob, &c, NULL) == OA_ENUMERIC);
  CHECK(run(OA_EXPLORE_GREEDY, &p, mean, NULL, 0, 1, prob, &c, NULL) == OA_EINVAL);
  p.epsilon = -0.1;
  CHECK(run(OA_EXPLORE_EGREEDY, &p, mean, NULL, 3, 1, prob, &c, NULL) == OA_EINVAL);

  CHECK(oa_explore_kind_from_name("squarecb") == OA_EXPLORE_SQUARECB);
  CHECK(oa_explore_kind_from_name("nope") == -1);
  CHECK(!strcmp(oa_explore_name(OA_EXPLORE_THOMPSON), "thompson"));
}

static void custom_distributions_are_validated(void) {
  oa_error err = {0};
  double ok[3] = {0.2, 0.3, 0.5000004};
  CHECK_OK(oa_probs_validate(ok, 3, &err));
  CHECK_NEAR(sum(ok, 3), 1, 1e-12);
  double neg[3] = {-0.1, 0.6, 0.5};
  CHECK(oa_probs_validate(neg, 3, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "negative") != NULL);
  double nan[2] = {NAN, 1};
  CHECK(oa_probs_validate(nan, 2, &err) == OA_EINVAL);
  double bad[2] = {0.5, 0.6};
  CHECK(oa_probs_validate(bad, 2, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "sum") != NULL);
  CHECK(oa_probs_validate(bad, 0, &err) == OA_EINVAL);

  /* Sampling never returns a zero-probability index. */
  double z[4] = {0, 0.5, 0, 0.5};
  oa_rng rng;
  oa_rng_seed(&rng, 9);
  for (int i = 0; i < 1000; i++) {
    int32_t k = oa_probs_sample(z, 4, &rng);
    CHECK(k == 1 || k == 3);
  }
}

int main(void) {
  RUN(greedy_splits_ties_uniformly);
  RUN(egreedy_gives_epsilon_over_n_and_splits_the_rest);
  RUN(softmax_matches_exp_and_never_overflows);
  RUN(ucb_picks_the_highest_upper_bound);
  RUN(squarecb_follows_inverse_gap_weighting);
  RUN(choice_frequency_matches_probability);
  RUN(thompson_estimates_the_argmax_probability);
  RUN(same_seed_same_choice);
  RUN(bad_parameters_and_nan_are_rejected);
  RUN(custom_distributions_are_validated);
  return CHECK_DONE();
}
