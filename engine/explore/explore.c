/* Explorers: scores → a full probability vector plus a sampled choice.
 *
 * Every explorer here writes a distribution that sums to 1 within 1e-9 (we
 * renormalise at the end so rounding never leaks into logged propensities)
 * and picks a chosen index whose probability is > 0, because a logged
 * propensity of 0 would make every off-policy estimator divide by zero.
 *
 * Ties: two scores are tied when they are equal within 1e-12 relative.
 * Whatever mass an explorer gives to "the best" is split uniformly among the
 * tied best candidates, so the distribution does not depend on the order in
 * which candidates arrive.
 *
 * Memory: nothing here allocates. THOMPSON without caller-supplied draws
 * samples one row of n values at a time into a stack buffer of
 * OA_EXPLORE_MAX_SELF_DRAW_N doubles (32 KiB); the policy layer bounds n to
 * 4096 candidates and draws to 4096, so that is enough. */
#include "explore/explore.h"
#include "core/error.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* Largest candidate count THOMPSON can draw its own samples for. */
#define OA_EXPLORE_MAX_SELF_DRAW_N 4096
#define OA_EXPLORE_MAX_DRAWS       4096
/* A width at or above this means "never tried" (context-free UCB1 reports
 * 1e9): such a candidate's upper bound is infinite. */
#define OA_EXPLORE_INF_WIDTH 1e8
#define OA_EXPLORE_TIE_REL   1e-12

static const char *const kind_names[] = {"greedy",   "egreedy",  "softmax", "ucb",
                                         "thompson", "squarecb", "custom"};
#define KIND_COUNT ((int)(sizeof kind_names / sizeof kind_names[0]))

oa_explore_params oa_explore_defaults(void) {
  oa_explore_params p;
  p.epsilon = 0.05;
  p.temperature = 1.0;
  p.alpha = 1.0;
  p.gamma = 100.0;
  p.draws = 64;
  return p;
}

const char *oa_explore_name(oa_explore_kind kind) {
  if ((int)kind < 0 || (int)kind >= KIND_COUNT) return "unknown";
  return kind_names[kind];
}

int oa_explore_kind_from_name(const char *name) {
  if (!name) return -1;
  for (int k = 0; k < KIND_COUNT; k++)
    if (strcmp(name, kind_names[k]) == 0) return k;
  /* Spellings people use for the same thing. */
  if (!strcmp(name, "epsilon_greedy") || !strcmp(name, "epsilon-greedy"))
    return OA_EXPLORE_EGREEDY;
  if (!strcmp(name, "ts")) return OA_EXPLORE_THOMPSON;
  return -1;
}

int oa_explore_check(oa_explore_kind kind, const oa_explore_params *p, oa_error *err) {
  if (!p) return oa_error_set(err, OA_EINVAL, "explorer parameters are missing");
  /* Written as !(in range) so that NaN fails every check. */
  switch (kind) {
  case OA_EXPLORE_GREEDY:
  case OA_EXPLORE_CUSTOM:
    return 0;
  case OA_EXPLORE_EGREEDY:
    if (!(p->epsilon >= 0 && p->epsilon <= 1))
      return oa_error_set(err, OA_EINVAL, "epsilon must be in [0, 1], got %g",
                          p->epsilon);
    return 0;
  case OA_EXPLORE_SOFTMAX:
    if (!(p->temperature > 0 && isfinite(p->temperature)))
      return oa_error_set(err, OA_EINVAL, "temperature must be a positive number, got %g",
                          p->temperature);
    return 0;
  case OA_EXPLORE_UCB:
    if (!(p->alpha >= 0 && isfinite(p->alpha)))
      return oa_error_set(err, OA_EINVAL, "alpha must be a number >= 0, got %g",
                          p->alpha);
    return 0;
  case OA_EXPLORE_THOMPSON:
    if (p->draws < 1 || p->draws > OA_EXPLORE_MAX_DRAWS)
      return oa_error_set(err, OA_EINVAL, "draws must be in 1..%d, got %d",
                          OA_EXPLORE_MAX_DRAWS, (int)p->draws);
    return 0;
  case OA_EXPLORE_SQUARECB:
    if (!(p->gamma >= 0 && isfinite(p->gamma)))
      return oa_error_set(err, OA_EINVAL, "gamma must be a number >= 0, got %g",
                          p->gamma);
    return 0;
  }
  return oa_error_set(err, OA_EINVAL, "unknown explorer kind %d", (int)kind);
}

static int tied(double a, double b) {
  return fabs(a - b) <= OA_EXPLORE_TIE_REL * fmax(fabs(a), fabs(b));
}

/* The value an explorer ranks by: the mean, or the UCB upper bound. */
static double ucb_value(const oa_explore_input *in, double alpha, int32_t i) {
  return in->mean[i] + (in->width ? alpha * in->width[i] : 0.0);
}

/* Adds `mass` split uniformly over the best candidates by mean (alpha < 0)
 * or by mean + alpha * width (alpha >= 0); returns how many share it. For
 * UCB, candidates with a "never tried" width beat every finite bound and
 * tie among themselves whatever their means. */
static int32_t add_to_best(const oa_explore_input *in, double alpha, double mass,
                           double *prob) {
  int32_t n = in->n, count = 0;
  int inf_mode = 0;
  if (alpha > 0 && in->width)
    for (int32_t i = 0; i < n && !inf_mode; i++)
      inf_mode = in->width[i] >= OA_EXPLORE_INF_WIDTH;
  double best = -INFINITY;
  for (int32_t i = 0; i < n && !inf_mode; i++) {
    double v = alpha >= 0 ? ucb_value(in, alpha, i) : in->mean[i];
    if (v > best) best = v;
  }
  /* Two identical passes (count, then fill) instead of a scratch array. */
  for (int pass = 0; pass < 2; pass++) {
    double share = pass ? mass / count : 0.0;
    for (int32_t i = 0; i < n; i++) {
      int b = inf_mode ? in->width[i] >= OA_EXPLORE_INF_WIDTH
                       : tied(alpha >= 0 ? ucb_value(in, alpha, i) : in->mean[i], best);
      if (!b) continue;
      if (pass)
        prob[i] += share;
      else
        count++;
    }
  }
  return count;
}

static void renormalise(double *prob, int32_t n) {
  double s = 0;
  for (int32_t i = 0; i < n; i++)
    s += prob[i];
  for (int32_t i = 0; i < n; i++)
    prob[i] /= s;
}

/* Adds the argmax set of one draw row to prob (1/|ties| each) and returns
 * one member of the set: the first, or one picked uniformly with rng when
 * pick_rng != NULL. */
static int32_t thompson_row(const double *row, int32_t n, double weight, double *prob,
                            oa_rng *pick_rng) {
  double best = row[0];
  for (int32_t i = 1; i < n; i++)
    if (row[i] > best) best = row[i];
  int32_t count = 0;
  for (int32_t i = 0; i < n; i++)
    count += tied(row[i], best);
  int32_t pick = pick_rng ? (int32_t)oa_rng_below(pick_rng, (uint64_t)count) : 0;
  int32_t chosen = -1, seen = 0;
  double share = weight / count;
  for (int32_t i = 0; i < n; i++)
    if (tied(row[i], best)) {
      prob[i] += share;
      if (seen++ == pick) chosen = i;
    }
  return chosen;
}

static int explore_thompson(const oa_explore_params *p, const oa_explore_input *in,
                            oa_rng *rng, double *prob, int32_t *chosen, oa_error *err) {
  int32_t n = in->n;
  if (in->draws) {
    if (in->ndraws < 1)
      return oa_error_set(err, OA_EINVAL,
                          "thompson: ndraws must be >= 1 with draws given");
    if (!oa_all_finite(in->draws, (long)in->ndraws * n))
      return oa_error_set(err, OA_ENUMERIC,
                          "thompson: posterior draws contain NaN or Inf");
    double w = 1.0 / in->ndraws;
    *chosen = thompson_row(in->draws, n, w, prob, rng);
    for (int32_t k = 1; k < in->ndraws; k++)
      thompson_row(in->draws + (size_t)k * n, n, w, prob, NULL);
    return 0;
  }
  if (n > OA_EXPLORE_MAX_SELF_DRAW_N)
    return oa_error_set(err, OA_ELIMIT,
                        "thompson: at most %d candidates without model draws",
                        OA_EXPLORE_MAX_SELF_DRAW_N);
  /* Gaussian draws mean + width * z, one row at a time. */
  double row[OA_EXPLORE_MAX_SELF_DRAW_N];
  double w = 1.0 / p->draws;
  for (int32_t k = 0; k < p->draws; k++) {
    for (int32_t i = 0; i < n; i++)
      row[i] = in->mean[i] + (in->width ? in->width[i] * oa_rng_normal(rng) : 0.0);
    int32_t c = thompson_row(row, n, w, prob, k == 0 ? rng : NULL);
    if (k == 0) *chosen = c;
  }
  return 0;
}

int oa_explore(oa_explore_kind kind, const oa_explore_params *p,
               const oa_explore_input *in, oa_rng *rng, double *prob, int32_t *chosen,
               int *estimated, oa_error *err) {
  if (!in || !rng || !prob || !chosen)
    return oa_error_set(err, OA_EINVAL, "explore: missing input, rng or output");
  int rc = oa_explore_check(kind, p, err);
  if (rc) return rc;
  if (kind == OA_EXPLORE_CUSTOM)
    return oa_error_set(err, OA_EINVAL,
                        "a custom explorer's probabilities come from its function");
  int32_t n = in->n;
  if (n < 1)
    return oa_error_set(err, OA_EINVAL, "explore needs at least 1 candidate, got %d", n);
  if (!in->mean) return oa_error_set(err, OA_EINVAL, "explore: scores are missing");
  if (!oa_all_finite(in->mean, n))
    return oa_error_set(err, OA_ENUMERIC, "explore: scores contain NaN or Inf");
  if (in->width) {
    if (!oa_all_finite(in->width, n))
      return oa_error_set(err, OA_ENUMERIC, "explore: widths contain NaN or Inf");
    for (int32_t i = 0; i < n; i++)
      if (in->width[i] < 0)
        return oa_error_set(err, OA_EINVAL,
                            "explore: width %g of candidate %d is negative", in->width[i],
                            i);
  }

  for (int32_t i = 0; i < n; i++)
    prob[i] = 0.0;
  int est = 0;
  switch (kind) {
  case OA_EXPLORE_GREEDY:
    add_to_best(in, -1, 1.0, prob);
    break;
  case OA_EXPLORE_EGREEDY:
    for (int32_t i = 0; i < n; i++)
      prob[i] = p->epsilon / n;
    add_to_best(in, -1, 1.0 - p->epsilon, prob);
    break;
  case OA_EXPLORE_SOFTMAX: {
    /* Shift by the max so the largest exponent is 0: no overflow, and at
     * least one term is exactly 1 so the sum never underflows to 0. */
    double mx = in->mean[0];
    for (int32_t i = 1; i < n; i++)
      if (in->mean[i] > mx) mx = in->mean[i];
    for (int32_t i = 0; i < n; i++)
      prob[i] = exp((in->mean[i] - mx) / p->temperature);
    break;
  }
  case OA_EXPLORE_UCB:
    add_to_best(in, p->alpha, 1.0, prob);
    break;
  case OA_EXPLORE_SQUARECB: {
    /* Non-best candidates get 1 / (n + gamma * gap), each < 1/n, so the
     * best set always keeps a positive remainder. Two passes keep this
     * allocation-free: find the best set's value, then fill. */
    double best = in->mean[0];
    for (int32_t i = 1; i < n; i++)
      if (in->mean[i] > best) best = in->mean[i];
    double rest = 1.0;
    for (int32_t i = 0; i < n; i++)
      if (!tied(in->mean[i], best)) {
        prob[i] = 1.0 / (n + p->gamma * (best - in->mean[i]));
        rest -= prob[i];
      }
    add_to_best(in, -1, rest, prob);
    break;
  }
  case OA_EXPLORE_THOMPSON:
    rc = explore_thompson(p, in, rng, prob, chosen, err);
    if (rc) return rc;
    est = 1;
    break;
  default:
    return oa_error_set(err, OA_EINVAL, "unknown explorer kind %d", (int)kind);
  }
  renormalise(prob, n);
  if (kind != OA_EXPLORE_THOMPSON) *chosen = oa_probs_sample(prob, n, rng);
  if (estimated) *estimated = est;
  return 0;
}

int oa_probs_validate(double *prob, int32_t n, oa_error *err) {
  if (!prob || n < 1)
    return oa_error_set(err, OA_EINVAL, "a distribution needs at least 1 probability");
  double s = 0;
  for (int32_t i = 0; i < n; i++) {
    if (!isfinite(prob[i]))
      return oa_error_set(err, OA_EINVAL, "probability %d is not a finite number", i + 1);
    if (prob[i] < 0)
      return oa_error_set(err, OA_EINVAL, "probability %d is negative (%g)", i + 1,
                          prob[i]);
    s += prob[i];
  }
  if (!(fabs(s - 1.0) <= 1e-6))
    return oa_error_set(err, OA_EINVAL, "probabilities sum to %.9g, not 1", s);
  for (int32_t i = 0; i < n; i++)
    prob[i] /= s;
  return 0;
}

int32_t oa_probs_sample(const double *prob, int32_t n, oa_rng *rng) {
  if (n < 1) return -1;
  double total = 0;
  for (int32_t i = 0; i < n; i++)
    total += prob[i];
  double u = oa_rng_uniform(rng) * total, acc = 0;
  int32_t last = -1;
  for (int32_t i = 0; i < n; i++) {
    if (prob[i] <= 0) continue;
    acc += prob[i];
    last = i;
    if (u < acc) return i;
  }
  /* Rounding left u at or past the end: the last candidate with mass. */
  return last >= 0 ? last : 0;
}
