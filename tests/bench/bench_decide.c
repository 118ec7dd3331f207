/* In-process decide + learn throughput through the runtime (engine.h), the
 * path a host embedding the engine takes: features from a context and
 * catalog actions, batched scoring, exploration, a pending event, and the
 * model update when the reward arrives.
 *
 * For each model (LinUCB = joint ridge + UCB, linear TS = joint ridge +
 * Thompson, an MLP + ε-greedy), feature dimension d and candidate count n
 * it prints decisions/s (one decide + one learn each) and, for the scoring
 * step alone (oa_model_score on the same rows), the GFLOP/s reached as a
 * fraction of this machine's BLAS peak, measured in the same run with a
 * large cblas_dgemm (float64 models) or cblas_sgemm (the float32 MLP). A
 * ratio measured in one process says more than an absolute rate, which
 * depends on the machine and its load.
 *
 * usage: bench_decide [seconds per case (default 0.5)] [target]
 * Built only with -DONEARM_BENCH=ON; never part of ctest. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/features.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "runtime/engine.h"

#define CATALOG   1000
#define VEC_LEN   8
#define MAX_CANDS 100

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, const oa_error *err) {
  fprintf(stderr, "bench_decide: %s: %s\n", what, err->message);
  exit(1);
}

/* Best GFLOP/s of a square matrix product, single-threaded: the peak the
 * scoring step is compared with. */
static double gemm_peak(int f32, double budget) {
  const int n = 512;
  double best = 0;
  void *a = oa_alloc_aligned((size_t)n * n * 8), *b = oa_alloc_aligned((size_t)n * n * 8),
       *c = oa_alloc_aligned((size_t)n * n * 8);
  for (int i = 0; i < n * n; i++) {
    if (f32) {
      ((float *)a)[i] = (float)(i % 7) * 0.1f;
      ((float *)b)[i] = (float)(i % 5) * 0.1f;
    } else {
      ((double *)a)[i] = (i % 7) * 0.1;
      ((double *)b)[i] = (i % 5) * 0.1;
    }
  }
  double end = now() + budget;
  do {
    double t0 = now();
    if (f32)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n,
                  0.0f, c, n);
    else
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n,
                  0.0, c, n);
    double g = 2.0 * n * n * n / (now() - t0) * 1e-9;
    if (g > best) best = g;
  } while (now() < end);
  oa_free_aligned(a);
  oa_free_aligned(b);
  oa_free_aligned(c);
  return best;
}

enum { LINUCB, LINTS, MLP };
static const char *const model_names[] = {"LinUCB (ridge+UCB)", "linear TS (ridge+TS)",
                                          "MLP 64-32 + egreedy"};

static oa_model *make_model(int kind, int32_t d, oa_error *err) {
  if (kind == MLP) {
    oa_mlp_config c = {.dim = d,
                       .n_hidden = 2,
                       .hidden = {64, 32},
                       .sigmoid_output = 1,
                       .lr = 1e-3,
                       .batch = 32,
                       .replay = 10000,
                       .train_every = 1,
                       .steps_per_train = 1,
                       .forget = 1,
                       .lambda = 1,
                       .v = 1,
                       .seed = 1};
    return oa_mlp_new(&c, err);
  }
  oa_ridge_config c = {
      .dim = d, .lambda = 1, .forget = 1, .v = 0.5, .refactor_every = 1000};
  return oa_ridge_new(&c, err);
}

/* Nominal FLOPs of one oa_model_score call on n rows as the policy makes
 * it (an implementation that uses P's symmetry does fewer, and can then
 * show more than 100% of the dense peak):
 * ridge with widths (mean 2d, P x 2d², xᵀ(P x) 2d per row), or the MLP's
 * forward pass (2 flops per weight per row). */
static double score_flops(int kind, int32_t d, int32_t n) {
  if (kind == MLP) return 2.0 * n * ((double)d * 64 + 64 * 32 + 32);
  return (double)n * (2.0 * d * d + 4.0 * d);
}

typedef struct result {
  double decisions_per_s, score_gflops;
} result;

static result run_case(int kind, int32_t d, int32_t n, double budget) {
  oa_error err = {0};
  oa_field_spec fields[2] = {0};
  snprintf(fields[0].name, sizeof fields[0].name, "u");
  fields[0].side = OA_SIDE_CONTEXT;
  fields[0].kind = OA_FK_DENSE;
  fields[0].length = VEC_LEN;
  snprintf(fields[1].name, sizeof fields[1].name, "v");
  fields[1].side = OA_SIDE_ACTION;
  fields[1].kind = OA_FK_DENSE;
  fields[1].length = VEC_LEN;
  /* u × v: 64 interaction features, so φ fills even d = 256 in part. */
  oa_cross_spec cross = {.context_field = 0, .action_field = 1};
  oa_features_spec fspec = {.layout = OA_LAYOUT_HASHED,
                            .dim = d,
                            .bias = 1,
                            .n_fields = 2,
                            .fields = fields,
                            .n_cross = 1,
                            .cross = &cross,
                            .seed = 7};
  oa_features *fs = oa_features_new(&fspec, &err);
  if (!fs) die("features", &err);
  oa_engine *e = oa_engine_new(1, &err);
  if (!e) die("engine", &err);

  oa_rng rng;
  oa_rng_seed(&rng, 99);
  static double item_vec[CATALOG][VEC_LEN];
  static char item_id[CATALOG][16];
  static const char *ids[CATALOG];
  for (int i = 0; i < CATALOG; i++) {
    for (int j = 0; j < VEC_LEN; j++)
      item_vec[i][j] = oa_rng_normal(&rng) / sqrt(VEC_LEN);
    snprintf(item_id[i], sizeof item_id[i], "a%d", i);
    ids[i] = item_id[i];
    oa_field f = {.name = "v",
                  .value = {.type = OA_VAL_VEC, .count = VEC_LEN, .vec = item_vec[i]}};
    if (oa_catalog_upsert(oa_engine_catalog(e), item_id[i], strlen(item_id[i]), &f, 1,
                          &err) < 0)
      die("catalog", &err);
  }

  oa_model *m = make_model(kind, d, &err);
  if (!m) die("model", &err);
  oa_policy_spec ps = {.name = "bench", .features = fs, .model = m};
  ps.params = oa_explore_defaults();
  ps.explore = kind == LINUCB  ? OA_EXPLORE_UCB
               : kind == LINTS ? OA_EXPLORE_THOMPSON
                               : OA_EXPLORE_EGREEDY;
  ps.params.alpha = 1;
  ps.params.draws = 16; /* the propensity estimate's resamples */
  if (oa_engine_add_policy(e, &ps, &err)) die("policy", &err);
  oa_policy *p = oa_engine_policy(e, "bench");

  double u[VEC_LEN];
  oa_value ctx = {.type = OA_VAL_VEC, .count = VEC_LEN, .vec = u};
  oa_decide_request req = {.context = &ctx, .n = n, .keep_event = 1};
  oa_decision dec;
  double truth[VEC_LEN];
  for (int j = 0; j < VEC_LEN; j++)
    truth[j] = oa_rng_normal(&rng);

  /* Warm up (allocations, first refactor), then time whole seconds. */
  int64_t done = 0;
  double t0 = 0, end = now() + budget * 0.2;
  for (int phase = 0; phase < 2; phase++) {
    if (phase == 1) {
      done = 0;
      t0 = now();
      end = t0 + budget;
    }
    do {
      for (int k = 0; k < 256; k++) {
        for (int j = 0; j < VEC_LEN; j++)
          u[j] = oa_rng_normal(&rng);
        req.ids = ids + oa_rng_below(&rng, CATALOG - n + 1);
        if (oa_policy_decide(p, &req, &dec, &err)) die("decide", &err);
        /* A reward with some structure: the item agrees with the user. */
        const double *v = item_vec[(req.ids - ids) + dec.chosen];
        double s = 0;
        for (int j = 0; j < VEC_LEN; j++)
          s += u[j] * v[j] * truth[j];
        double r = oa_rng_uniform(&rng) < 1 / (1 + exp(-s)) ? 1.0 : 0.0;
        if (oa_engine_learn(e, dec.event_id, r, &err)) die("learn", &err);
        done++;
      }
    } while (now() < end);
  }
  result res = {.decisions_per_s = done / (now() - t0)};

  /* The scoring step alone, on rows the feature space produced. */
  double *rows = oa_alloc_aligned(sizeof(double) * (size_t)n * d);
  double mean[MAX_CANDS], width[MAX_CANDS];
  oa_fpart *cp = oa_fpart_new(), *ap = oa_fpart_new();
  oa_features_compile(fs, OA_SIDE_CONTEXT, &ctx, cp, &err);
  for (int32_t i = 0; i < n; i++) {
    oa_value av = {.type = OA_VAL_VEC, .count = VEC_LEN, .vec = item_vec[i]};
    oa_features_compile(fs, OA_SIDE_ACTION, &av, ap, &err);
    oa_features_join(fs, cp, ap, rows + (size_t)i * d);
  }
  oa_batch b = {.x = rows, .ldx = d, .n = n, .d = d};
  oa_model *pm = oa_policy_model(p);
  int64_t calls = 0;
  double s0 = now(), send = s0 + budget * 0.5;
  do {
    for (int k = 0; k < 64; k++)
      if (oa_model_score(pm, &b, mean, kind == MLP ? NULL : width, &err))
        die("score", &err);
    calls += 64;
  } while (now() < send);
  res.score_gflops = score_flops(kind, d, n) * calls / (now() - s0) * 1e-9;
  oa_fpart_free(cp);
  oa_fpart_free(ap);
  oa_free_aligned(rows);
  oa_engine_free(e);
  oa_features_release(fs);
  return res;
}

int main(int argc, char **argv) {
  double budget = argc > 1 ? atof(argv[1]) : 0.5;
  if (!(budget > 0)) budget = 0.5;
  oa_blas_threads(1);
  /* "target": only the LinUCB d=64, 20-candidate case (for a profiler). */
  int only_target = argc > 2 && !strcmp(argv[2], "target");
  double dpeak = gemm_peak(0, 0.5), speak = gemm_peak(1, 0.5);
  printf("BLAS peak, one thread, same run: dgemm %.1f GFLOP/s, sgemm %.1f GFLOP/s\n\n",
         dpeak, speak);
  printf("| model | d | candidates | decide+learn/s | scoring GFLOP/s (nominal) | of "
         "BLAS peak |\n");
  printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
  static const int32_t dims[] = {16, 64, 256};
  if (only_target) goto target;
  static const int32_t cands[] = {10, 100};
  for (int kind = LINUCB; kind <= MLP; kind++)
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
      for (size_t j = 0; j < sizeof cands / sizeof cands[0]; j++) {
        result r = run_case(kind, dims[i], cands[j], budget);
        double peak = kind == MLP ? speak : dpeak;
        printf("| %s | %d | %d | %.0f | %.2f | %.1f%% |\n", model_names[kind], dims[i],
               cands[j], r.decisions_per_s, r.score_gflops, 100 * r.score_gflops / peak);
        fflush(stdout);
      }
target:;
  result r = run_case(LINUCB, 64, 20, budget);
  printf(
      "\nLinUCB d=64, 20 candidates: %.0f decide+learn/s (target >= 200000 on one core), "
      "scoring at %.1f%% of the dgemm peak\n",
      r.decisions_per_s, 100 * r.score_gflops / dpeak);
  return 0;
}
