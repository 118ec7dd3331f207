/* Explorers: turn a model's scores for n candidates into a probability for
 * every candidate and a sampled choice, so every decision carries an exact
 * propensity (estimated, and flagged so, for Thompson sampling).
 *
 *   GREEDY    all mass on the best mean; ties share it uniformly
 *   EGREEDY   epsilon/n to every candidate + (1-epsilon) on the greedy set
 *   SOFTMAX   p ∝ exp(mean / temperature)
 *   UCB       greedy on mean + alpha * width (ties uniform)
 *   THOMPSON  choice = argmax of one posterior draw; probabilities are the
 *             argmax frequencies over `draws` draws (the choice's own draw
 *             included), marked estimated
 *   SQUARECB  Foster & Rakhlin 2020 inverse-gap weighting for rewards:
 *             p_a = 1 / (n + gamma (mean_best - mean_a)) for a != best,
 *             the best gets the rest
 *
 * Probabilities sum to 1 within 1e-9. Parameters can change at every call
 * (that is what exploration schedules do). */
#ifndef ONEARM_EXPLORE_EXPLORE_H
#define ONEARM_EXPLORE_EXPLORE_H

#include <stdint.h>

#include "core/rng.h"
#include "onearm.h"

typedef enum oa_explore_kind {
  OA_EXPLORE_GREEDY = 0,
  OA_EXPLORE_EGREEDY,
  OA_EXPLORE_SOFTMAX,
  OA_EXPLORE_UCB,
  OA_EXPLORE_THOMPSON,
  OA_EXPLORE_SQUARECB,
  OA_EXPLORE_CUSTOM /* the policy supplies the probabilities (a Lua function) */
} oa_explore_kind;

typedef struct oa_explore_params {
  double epsilon;     /* EGREEDY, in [0, 1] */
  double temperature; /* SOFTMAX, > 0 */
  double alpha;       /* UCB bonus scale, >= 0 */
  double gamma;       /* SQUARECB learning rate, >= 0 */
  int32_t draws;      /* THOMPSON resamples for the propensity estimate, 1..4096 */
} oa_explore_params;

/* Defaults: epsilon 0.05, temperature 1, alpha 1, gamma 100, draws 64. */
oa_explore_params oa_explore_defaults(void);
const char *oa_explore_name(oa_explore_kind kind);
/* Kind by name ("greedy", "egreedy", ...); -1 when unknown. */
int oa_explore_kind_from_name(const char *name);
/* OA_EINVAL with a message naming the parameter when a value is out of range. */
int oa_explore_check(oa_explore_kind kind, const oa_explore_params *p, oa_error *err);

typedef struct oa_explore_input {
  int32_t n;
  const double *mean;  /* n */
  const double *width; /* n, or NULL (treated as 0) */
  const double *draws; /* THOMPSON: ndraws * n posterior draws, draw-major */
  int32_t ndraws;
} oa_explore_input;

/* prob[0..n) := the distribution, *chosen := the sampled index (drawn with
 * rng from prob, except THOMPSON whose choice is the argmax of draw 0),
 * *estimated := 1 when prob is a Monte-Carlo estimate. n >= 1. */
int oa_explore(oa_explore_kind kind, const oa_explore_params *p, const oa_explore_input *in,
               oa_rng *rng, double *prob, int32_t *chosen, int *estimated, oa_error *err);

/* Validate a caller-supplied distribution (a custom explorer's output):
 * finite, non-negative, summing to 1 within 1e-6; it is then renormalised
 * exactly. OA_EINVAL with a message otherwise. */
int oa_probs_validate(double *prob, int32_t n, oa_error *err);
/* Sample an index from a valid distribution. */
int32_t oa_probs_sample(const double *prob, int32_t n, oa_rng *rng);

#endif
