/* Throughput of the ridge models on the hot path: one decide (score the
 * candidates) plus one learn (update with the chosen row), single thread.
 * Cases: joint LinUCB (d = 64, 20 candidates, means and widths), joint
 * linear Thompson (one draw per decision, so the lazy Cholesky of A is paid
 * at every decision), and the cbify-style disjoint model (d = 36, 6 arms,
 * one shared context, means only and with widths). Each line also prints
 * the ratio to a bare BLAS baseline measured in the same run, never an
 * absolute pass/fail.
 *
 * Not built by default. Build against a build tree, e.g.:
 *   cc -O2 -march=x86-64-v3 -Iengine/include -Iengine tests/bench/bench_ridge.c \
 *      build/libonearm.a -lopenblas -lm -o /tmp/bench_ridge
 *   OPENBLAS_NUM_THREADS=1 /tmp/bench_ridge */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/rng.h"
#include "models/model.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Best chosen by the upper bound; reward from a hidden linear model. */
static double joint(int d, int n, int iters, int thompson) {
  oa_ridge_config cfg = {.dim = d};
  oa_model *m = oa_ridge_new(&cfg, NULL);
  oa_rng rng;
  oa_rng_seed(&rng, 1);
  double *X = malloc(sizeof(double) * n * d), *w = malloc(sizeof(double) * d);
  double *mean = malloc(sizeof(double) * n), *width = malloc(sizeof(double) * n);
  for (int j = 0; j < d; j++)
    w[j] = oa_rng_normal(&rng) / d;
  for (int i = 0; i < n * d; i++)
    X[i] = oa_rng_normal(&rng);
  double t0 = now();
  for (int t = 0; t < iters; t++) {
    for (int j = 0; j < d; j++)
      X[(t % n) * d + j] = oa_rng_normal(&rng); /* drift */
    oa_batch b = {.x = X, .ldx = d, .n = n, .d = d};
    int best = 0;
    if (thompson) {
      oa_model_sample(m, &b, 1, &rng, mean, NULL);
      for (int i = 1; i < n; i++)
        if (mean[i] > mean[best]) best = i;
    } else {
      oa_model_score(m, &b, mean, width, NULL);
      for (int i = 1; i < n; i++)
        if (mean[i] + width[i] > mean[best] + width[best]) best = i;
    }
    double r = 0;
    for (int j = 0; j < d; j++)
      r += w[j] * X[best * d + j];
    oa_example e = {.x = X + best * d, .arm = -1, .reward = r, .prob = 1};
    oa_model_update(m, &e, 1, NULL);
  }
  double dt = now() - t0;
  oa_model_free(m);
  free(X);
  free(w);
  free(mean);
  free(width);
  return iters / dt;
}

static double disjoint(int d, int arms, int iters, int widths) {
  oa_ridge_config cfg = {.dim = d};
  oa_model *m = oa_disjoint_ridge_new(&cfg, arms, NULL);
  oa_rng rng;
  oa_rng_seed(&rng, 2);
  double *x = malloc(sizeof(double) * d), mean[64], width[64];
  int32_t arm[64];
  for (int a = 0; a < arms; a++)
    arm[a] = a;
  for (int j = 0; j < d; j++)
    x[j] = oa_rng_normal(&rng);
  double t0 = now();
  for (int t = 0; t < iters; t++) {
    x[t % d] = oa_rng_uniform(&rng);
    oa_batch b = {.x = x, .ldx = 0, .n = arms, .d = d, .arm = arm};
    oa_model_score(m, &b, mean, widths ? width : NULL, NULL);
    int best = 0;
    for (int a = 1; a < arms; a++)
      if (mean[a] + (widths ? width[a] - width[best] : 0) > mean[best]) best = a;
    if (oa_rng_uniform(&rng) < 0.05) best = (int)oa_rng_below(&rng, arms);
    oa_example e = {.x = x, .arm = best, .reward = best == (t % arms) ? 1 : 0, .prob = 1};
    oa_model_update(m, &e, 1, NULL);
  }
  double dt = now() - t0;
  oa_model_free(m);
  free(x);
  return iters / dt;
}

/* Baseline: the width's dgemm alone (n x d times d x d). */
static double gemm_rate(int d, int n, int iters) {
  double *X = calloc(n * d, sizeof(double)), *P = calloc(d * d, sizeof(double));
  double *Z = calloc(n * d, sizeof(double));
  for (int i = 0; i < n * d; i++)
    X[i] = 1.0 / (i + 1);
  double t0 = now();
  for (int t = 0; t < iters; t++)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, d, 1, X, d, P, d, 0, Z,
                d);
  double dt = now() - t0;
  free(X);
  free(P);
  free(Z);
  return iters / dt;
}

int main(void) {
  double g = gemm_rate(64, 20, 200000);
  double lu = joint(64, 20, 200000, 0);
  printf("linucb  d=64 n=20: %9.0f decide+learn/s  (%.2f of the bare width dgemm rate "
         "%.0f/s)\n",
         lu, lu / g, g);
  double ts = joint(64, 20, 50000, 1);
  printf(
      "lin-ts  d=64 n=20: %9.0f decide+learn/s  (1 draw, lazy Cholesky per decision)\n",
      ts);
  double dm = disjoint(36, 6, 2000000, 0), dw = disjoint(36, 6, 1000000, 1);
  printf("disjoint d=36 6 arms, means only: %9.0f decide+learn/s\n", dm);
  printf("disjoint d=36 6 arms, with width: %9.0f decide+learn/s  (%.2f of means only)\n",
         dw, dw / dm);
  return 0;
}
