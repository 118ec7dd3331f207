/* Supervised-to-bandit evaluation ("cbify", Bietti, Agarwal & Langford, A
 * Contextual Bandit Bake-off, JMLR 2021): a multiclass data set becomes a
 * bandit problem with one action per class. For every row, in a shuffled
 * order, the learner sees the features, picks a class, and learns only the
 * reward of its own pick (1 for the true label, 0 otherwise). The score is
 * the progressive (online) average reward over the pass.
 *
 * This file holds the reusable parts: a CSV(.gz) loader, the learner
 * presets (a model + an explorer + how a class becomes a model row) and the
 * evaluation loop. The `onearm cbify` command (cli/cbify.c) is a thin
 * wrapper; tests and benchmarks call these directly. */
#ifndef ONEARM_RUNTIME_CBIFY_H
#define ONEARM_RUNTIME_CBIFY_H

#include <stdint.h>

#include "core/rng.h"
#include "explore/explore.h"
#include "models/model.h"
#include "onearm.h"

/* A loaded data set. Row i of x is [1, f_1, ..., f_{d-1}]: the CSV's
 * feature columns after a constant bias feature at index 0. */
typedef struct oa_cbify_data {
  int64_t n;      /* rows */
  int32_t d;      /* features per row, bias included (CSV columns) */
  int32_t k;      /* classes (actions) = largest label + 1 */
  double *x;      /* n x d, row-major; owned, free with oa_cbify_data_free */
  int32_t *label; /* n labels in [0, k) */
} oa_cbify_data;

/* Reads a CSV file, plain or gzip-compressed (zlib detects which). The
 * first line is a header whose first column is `label`; every other line
 * holds an integer label >= 0 and one finite number per other header
 * column. Blank lines are skipped; a header-only file is an error. On
 * error (OA_EIO for a file that cannot be read, OA_EFORMAT for malformed
 * content, with the path, line and column in the message) *out is left
 * empty. The caller frees *out with oa_cbify_data_free. */
int oa_cbify_load(const char *path, oa_cbify_data *out, oa_error *err);
/* The same from bytes in memory (`name` only labels error messages). */
int oa_cbify_parse(const char *text, size_t len, const char *name, oa_cbify_data *out,
                   oa_error *err);
/* Frees the arrays and zeroes *data; safe on a zeroed struct. */
void oa_cbify_data_free(oa_cbify_data *data);

/* How a (context, class) pair becomes a model row. */
typedef enum oa_cbify_rows {
  OA_CBIFY_ROWS_CONTEXT = 0, /* per-action model: the context row, arm = class */
  OA_CBIFY_ROWS_BLOCK,       /* joint model over k blocks of d: x in the class's block,
                                i.e. one independent head per class (one-vs-rest) */
  OA_CBIFY_ROWS_ONEHOT,      /* joint model on concat(x, one-hot(class)), d + k wide */
  OA_CBIFY_ROWS_NONE         /* context-free model: rows are empty, arm = class */
} oa_cbify_rows;

/* Hyper-parameters of a preset; oa_cbify_preset_defaults fills the tuned
 * values and callers override what they like. Fields a preset does not use
 * are ignored. */
typedef struct oa_cbify_params {
  double lambda;  /* ridge prior precision (linucb, lints, egreedy, squarecb) */
  double alpha;   /* UCB bonus scale (linucb, logistic) */
  double v;       /* posterior scale of Thompson sampling (lints) */
  double epsilon; /* ε-greedy exploration rate (egreedy, neural) */
  double gamma;   /* SquareCB: γ_t = gamma · sqrt(t) when gamma_sqrt, else constant */
  int gamma_sqrt; /* 1: grow γ with the square root of the step (default) */
  int32_t draws;  /* Thompson resamples per decision (propensity estimate only) */
  double lr;      /* learning rate (logistic, neural) */
  int32_t hidden; /* neural: width of the single hidden layer */
} oa_cbify_params;

/* A learner: a model, an explorer and the row layout. */
typedef struct oa_cbify_learner {
  char preset[32];
  oa_model *model; /* owned; freed by oa_cbify_learner_free */
  oa_cbify_rows rows;
  oa_explore_kind explore;
  oa_explore_params params; /* explorer parameters (gamma is gamma0 when gamma_sqrt) */
  int gamma_sqrt;
  int32_t d, k; /* data shape the learner was built for */
} oa_cbify_learner;

/* Names of the presets this build provides, NULL-terminated, best first
 * (the first is the default of `onearm cbify`). */
extern const char *const oa_cbify_preset_names[];
/* One line describing a preset (model + explorer), or NULL when unknown. */
const char *oa_cbify_preset_help(const char *preset);
/* Tuned defaults of a preset; OA_ENOTFOUND for an unknown name. */
int oa_cbify_preset_defaults(const char *preset, oa_cbify_params *out, oa_error *err);
/* Builds a learner for data with d features (bias included) and k
 * classes. seed initialises models with random state (the network). On
 * error nothing is allocated. */
int oa_cbify_learner_init(oa_cbify_learner *l, const char *preset,
                          const oa_cbify_params *params, int32_t d, int32_t k,
                          uint64_t seed, oa_error *err);
void oa_cbify_learner_free(oa_cbify_learner *l);

typedef struct oa_cbify_result {
  int64_t examples; /* decisions made (rows × passes) */
  int32_t actions;  /* classes */
  double reward;    /* progressive average reward */
  double seconds;   /* wall time of the learning loop only */
} oa_cbify_result;

/* One shuffled online pass per `passes` (each pass reshuffles) over data
 * with learner l. `seed` drives the shuffle (Fisher–Yates) and, through a
 * derived stream, the explorer: the same seed gives the same result. The
 * learner keeps what it learned, so calling again continues training. */
int oa_cbify_run(const oa_cbify_data *data, oa_cbify_learner *l, uint64_t seed,
                 int passes, oa_cbify_result *res, oa_error *err);

/* The shuffled order alone: perm[0..n) := a permutation of 0..n-1 drawn
 * with Fisher–Yates from rng. */
void oa_cbify_shuffle(int64_t *perm, int64_t n, oa_rng *rng);

/* The same loop through a policy of an engine (an app's policy, built-in or
 * written in Lua): see cbify_policy.c for the feature-space convention
 * (context "x" = "dense:<columns - 1>", action "class"). */
struct oa_engine;
struct oa_policy;
int oa_cbify_run_policy(const oa_cbify_data *data, struct oa_engine *e, struct oa_policy *p,
                        uint64_t seed, int passes, oa_cbify_result *res, oa_error *err);

#endif
