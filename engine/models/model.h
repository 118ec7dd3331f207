/* The model interface. A model scores rows of features and learns from
 * (features, reward, propensity) examples. Each family lives in its own
 * file (models/<family>.c) and exposes one constructor, `oa_<family>_new`,
 * returning an oa_model whose first member is the embedded base struct.
 *
 * Rows: a batch is n rows of d doubles. For joint models (shared across
 * actions) a row is φ(x, a). For per-action (disjoint) models and the
 * context-free ones, a row is the context part only and `arm` says which
 * action's parameters to use; the policy maps action ids to arm indexes.
 * `ldx == 0` means every row is the same vector (one context scored
 * against many arms without copying it).
 *
 * Ownership: the caller owns every array passed in; models copy what they
 * keep. A model is freed by oa_model_free, once.
 *
 * Numbers: callers guarantee finite inputs (the policy layer rejects NaN and
 * Inf at the boundary); models must keep their state finite too, and
 * return OA_ENUMERIC rather than store a non-finite value. */
#ifndef ONEARM_MODELS_MODEL_H
#define ONEARM_MODELS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/rng.h"
#include "onearm.h"

typedef struct oa_batch {
  const double *x;    /* row i starts at x + i * ldx */
  int64_t ldx;        /* 0: every row is x */
  int32_t n, d;       /* rows, features per row (must equal the model's dim) */
  const int32_t *arm; /* per row arm index for per-action models; NULL otherwise */
} oa_batch;

/* One learning example. The candidate set fields are filled only for models
 * whose ops set needs_candidates (policy-gradient learners). */
typedef struct oa_example {
  const double *x; /* features of the chosen row (d) */
  int32_t arm;     /* arm of the chosen action for per-action models, else -1 */
  double reward;
  double prob;     /* propensity with which the chosen action was picked, in (0, 1] */
  int32_t n_cand;  /* candidate set of the decision (or 0) */
  const double *cand_x; /* n_cand rows of d */
  const int32_t *cand_arm;
  const double *cand_prob; /* n_cand probabilities of the decision */
  int32_t chosen;          /* index of the chosen row in the candidate set */
} oa_example;

typedef struct oa_model oa_model;

typedef struct oa_model_ops {
  const char *kind;     /* "ridge", "linucb", "lints", "disjoint_ridge", "logistic", ... */
  int needs_candidates; /* 1: update needs the decision's whole candidate set */
  int per_arm;          /* 1: rows carry an arm index (disjoint, context-free) */
  /* mean[i] := predicted reward of row i. width[i] (when width != NULL) :=
   * the standard deviation of that prediction under the model's posterior or
   * confidence set, >= 0 (0 for models without uncertainty). */
  int (*score)(oa_model *m, const oa_batch *b, double *mean, double *width, oa_error *err);
  /* Optional (NULL when the model has no posterior): out[k * n + i] := score
   * of row i under the k-th of `draws` independent posterior draws. */
  int (*sample)(oa_model *m, const oa_batch *b, int draws, oa_rng *rng, double *out,
                oa_error *err);
  /* Learn from n examples in order. All-or-nothing: on error the model is
   * unchanged. */
  int (*update)(oa_model *m, const oa_example *ex, int n, oa_error *err);
  /* Bytes of heap memory the model holds. */
  size_t (*size_bytes)(const oa_model *m);
  /* Append the learned state to out (with a header tag and version). */
  int (*save)(const oa_model *m, oa_buf *out, oa_error *err);
  /* Replace the state from bytes written by save of a model of the same
   * kind and shape; on error (shape mismatch, truncation) m is unchanged. */
  int (*load)(oa_model *m, oa_reader *in, oa_error *err);
  /* Set a named hyper-parameter (e.g. "forget", "lambda", "lr", "v");
   * OA_EINVAL for an unknown name or a bad value. Optional. */
  int (*set_param)(oa_model *m, const char *name, double value, oa_error *err);
  /* Read a named hyper-parameter into *value; OA_EINVAL when unknown. Optional. */
  int (*get_param)(const oa_model *m, const char *name, double *value, oa_error *err);
  void (*destroy)(oa_model *m);
} oa_model_ops;

struct oa_model {
  const oa_model_ops *ops;
  int32_t dim;      /* features per row */
  int32_t arms;     /* capacity in arms for per-action models, else 0 */
  uint64_t updates; /* examples learned so far */
};

/* Dispatch helpers: check the batch shape, then call the op. */
int oa_model_score(oa_model *m, const oa_batch *b, double *mean, double *width, oa_error *err);
int oa_model_sample(oa_model *m, const oa_batch *b, int draws, oa_rng *rng, double *out,
                    oa_error *err);
int oa_model_update(oa_model *m, const oa_example *ex, int n, oa_error *err);
/* save/load wrap the model's own section in a common envelope that records
 * kind, dim and arms, so loading into a model of another shape fails with a
 * clear message before the model's own loader runs. */
int oa_model_save(const oa_model *m, oa_buf *out, oa_error *err);
int oa_model_load(oa_model *m, oa_reader *in, oa_error *err);
size_t oa_model_size(const oa_model *m);
void oa_model_free(oa_model *m);

/* ---- Constructors, one per family (each in models/<family>.c). ---- */

/* Ridge regression on joint features φ(x, a): A = λI + Σ w φφᵀ, b = Σ w r φ,
 * θ = A⁻¹b, kept in double. `forget` in (0, 1] discounts old statistics at
 * every update (1 = no forgetting). `v` scales the posterior for sampling
 * (linear Thompson sampling: θ̃ ~ N(θ, v² A⁻¹)); width = sqrt(φᵀA⁻¹φ).
 * The inverse is maintained by Sherman–Morrison and recomputed from A by a
 * Cholesky factorisation every `refactor_every` updates. */
typedef struct oa_ridge_config {
  int32_t dim;
  double lambda;          /* prior precision, > 0 (default 1) */
  double forget;          /* (0, 1], default 1 */
  double v;               /* posterior scale for sample(), default 1 */
  int32_t refactor_every; /* default 1000 */
} oa_ridge_config;
oa_model *oa_ridge_new(const oa_ridge_config *cfg, oa_error *err);

/* Per-action (disjoint) ridge: one (A_k, b_k) per arm over context rows.
 * Arms are created on first use up to `arms` (memory arms * dim² doubles). */
oa_model *oa_disjoint_ridge_new(const oa_ridge_config *cfg, int32_t arms, oa_error *err);

/* Online logistic regression for rewards in [0, 1] (binary or fractional):
 * Newton-like per-coordinate updates with a diagonal Gaussian posterior
 * (Chapelle & Li 2011); width from the diagonal posterior variance. */
typedef struct oa_logistic_config {
  int32_t dim;
  double lambda; /* prior precision, default 1 */
  double forget; /* default 1 */
  double lr;     /* default 0.1 */
} oa_logistic_config;
oa_model *oa_logistic_new(const oa_logistic_config *cfg, oa_error *err);

/* An MLP on concat(x, a) rows, in float32: `hidden` layer sizes, ReLU,
 * output sigmoid (loss BCE) or linear (loss squared), Adam, minibatches
 * from a bounded replay buffer, `train_every` updates per training step.
 * neural_linear != 0 adds Bayesian linear regression on the last hidden
 * layer (Riquelme et al. 2018): width and sample come from it. */
typedef struct oa_mlp_config {
  int32_t dim;
  int32_t n_hidden;
  int32_t hidden[8];
  int sigmoid_output; /* 1: sigmoid + BCE, 0: linear + squared loss */
  double lr;          /* Adam step, default 1e-3 */
  int32_t batch;      /* minibatch size, default 32 */
  int32_t replay;     /* replay buffer capacity, default 10000 */
  int32_t train_every;
  int32_t steps_per_train;
  double l2;
  double forget;       /* for the neural-linear head */
  int neural_linear;
  double lambda, v;    /* neural-linear prior precision and posterior scale */
  uint64_t seed;       /* weight initialisation and minibatch sampling */
} oa_mlp_config;
oa_model *oa_mlp_new(const oa_mlp_config *cfg, oa_error *err);

/* A linear softmax policy trained by REINFORCE with a running-average
 * baseline: score = logits θᵀφ; the policy's explorer must be softmax with
 * the same temperature. Needs the decision's candidate set to learn. */
typedef struct oa_reinforce_config {
  int32_t dim;
  double lr;          /* default 0.05 */
  double baseline_decay; /* running baseline, default 0.99 */
  double l2;
  double temperature; /* default 1 */
} oa_reinforce_config;
oa_model *oa_reinforce_new(const oa_reinforce_config *cfg, oa_error *err);

/* Context-free Beta-Bernoulli Thompson sampling: Beta(α0 + s, β0 + f) per
 * arm, rewards in [0, 1] counted fractionally; forget discounts counts. */
oa_model *oa_bernoulli_ts_new(int32_t arms, double alpha0, double beta0, double forget,
                              oa_error *err);
/* Context-free UCB1: mean reward per arm; width = sqrt(2 ln t / n_a) (infinite
 * for an arm never tried, reported as 1e9 so that it is tried first). */
oa_model *oa_ucb1_new(int32_t arms, double forget, oa_error *err);

#endif
