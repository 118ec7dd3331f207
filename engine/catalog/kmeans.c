/* k-means with k-means++ seeding and sgemm-batched Lloyd iterations; see
 * kmeans.h for the method and the two variants. */
#include "catalog/kmeans.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "core/error.h"
#include "core/rng.h"

/* Inner product of two float vectors; vectorised by hand because -O2
 * without -ffast-math will not reassociate a float reduction. */
float oa_sdot(const float *a, const float *b, int32_t d) {
  int32_t j = 0;
  float s = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; j + 16 <= d; j += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), acc1);
  }
  for (; j + 8 <= d; j += 8)
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc0);
  acc0 = _mm256_add_ps(acc0, acc1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  s = _mm_cvtss_f32(h);
#endif
  for (; j < d; j++)
    s += a[j] * b[j];
  return s;
}

/* Rows per sgemm block: the score block (rows x k floats) stays near 4 MB so
 * it is reused from cache while the argmax runs over it. */
static int64_t block_rows(int32_t k) {
  int64_t b = ((int64_t)1 << 20) / (k > 0 ? k : 1);
  if (b < 16) b = 16;
  if (b > 4096) b = 4096;
  return b;
}

int oa_kmeans_assign(const float *x, int64_t n, int32_t dim, int64_t ld,
                     const float *centroids, int32_t k, int32_t spherical,
                     int32_t *assign_out, float *best_out, oa_error *err) {
  int64_t bs = block_rows(k);
  float *scores = malloc((size_t)bs * (size_t)k * sizeof(float));
  float *half = malloc((size_t)k * sizeof(float));
  if (!scores || !half) {
    free(scores);
    free(half);
    return oa_error_set(err, OA_ENOMEM, "kmeans: out of memory for %d centres", k);
  }
  for (int32_t c = 0; c < k; c++)
    half[c] = spherical ? 0.0f
                        : 0.5f * oa_sdot(centroids + (size_t)c * dim,
                                         centroids + (size_t)c * dim, dim);
  for (int64_t i0 = 0; i0 < n; i0 += bs) {
    int64_t rows = n - i0 < bs ? n - i0 : bs;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, k, dim, 1.0f,
                x + i0 * ld, (int)ld, centroids, dim, 0.0f, scores, k);
    for (int64_t r = 0; r < rows; r++) {
      const float *s = scores + r * k;
      int32_t arg = 0;
      float best = s[0] - half[0];
      for (int32_t c = 1; c < k; c++) {
        float v = s[c] - half[c];
        if (v > best) {
          best = v;
          arg = c;
        }
      }
      assign_out[i0 + r] = arg;
      if (best_out) {
        if (spherical) {
          best_out[i0 + r] = best;
        } else {
          const float *xr = x + (i0 + r) * ld;
          float d2 = oa_sdot(xr, xr, dim) - 2.0f * best;
          best_out[i0 + r] = d2 > 0 ? d2 : 0;
        }
      }
    }
  }
  free(scores);
  free(half);
  return 0;
}

static void normalize(float *v, int32_t d) {
  float nn = oa_sdot(v, v, d);
  if (nn > 0) {
    float inv = 1.0f / sqrtf(nn);
    for (int32_t j = 0; j < d; j++)
      v[j] *= inv;
  }
}

/* One D^2 draw: an index with probability d2[i] / total. */
static int64_t draw_d2(const double *d2, int64_t s, double total, oa_rng *rng) {
  double u = oa_rng_uniform(rng) * total, acc = 0;
  for (int64_t i = 0; i < s; i++) {
    acc += d2[i];
    if (acc > u && d2[i] > 0) return i;
  }
  for (int64_t i = s - 1; i > 0; i--) /* rounding left u past the end */
    if (d2[i] > 0) return i;
  return 0;
}

/* Greedy k-means++ on the s rows of t (contiguous, dim floats each): the
 * first centre is uniform; each next one is the best of `trials` candidates
 * drawn with probability proportional to the squared distance to the
 * nearest centre so far, "best" meaning the one that leaves the smallest
 * total squared distance. One trial is plain k-means++; several make it far
 * less likely to put two seeds in one cluster and none in another, which
 * Lloyd iterations cannot undo. d2, nd and bd hold s doubles each. */
static void seed_plusplus(const float *t, int64_t s, int32_t dim, int32_t k,
                          int32_t trials, oa_rng *rng, float *cent, double *d2,
                          double *nd, double *bd, float *norms) {
  double total = 0;
  for (int64_t i = 0; i < s; i++)
    norms[i] = oa_sdot(t + i * dim, t + i * dim, dim);
  int64_t pick = (int64_t)oa_rng_below(rng, (uint64_t)s);
  const float *cp = t + pick * dim;
  memcpy(cent, cp, (size_t)dim * sizeof(float));
  for (int64_t i = 0; i < s; i++) {
    double d = (double)norms[i] + norms[pick] - 2.0 * oa_sdot(t + i * dim, cp, dim);
    d2[i] = d > 0 ? d : 0;
    total += d2[i];
  }
  for (int32_t c = 1; c < k; c++) {
    if (total <= 0) { /* every point coincides with a centre: any pick will do */
      pick = (int64_t)oa_rng_below(rng, (uint64_t)s);
      memcpy(cent + (size_t)c * dim, t + pick * dim, (size_t)dim * sizeof(float));
      continue;
    }
    double best_total = DBL_MAX;
    int64_t best = 0;
    for (int32_t tr = 0; tr < trials; tr++) {
      int64_t cand = draw_d2(d2, s, total, rng);
      const float *cv = t + cand * dim;
      double sum = 0;
      for (int64_t i = 0; i < s; i++) {
        double d = (double)norms[i] + norms[cand] - 2.0 * oa_sdot(t + i * dim, cv, dim);
        if (d < 0) d = 0;
        nd[i] = d < d2[i] ? d : d2[i];
        sum += nd[i];
      }
      if (sum < best_total) {
        best_total = sum;
        best = cand;
        double *tmp = bd;
        bd = nd;
        nd = tmp;
      }
    }
    memcpy(cent + (size_t)c * dim, t + best * dim, (size_t)dim * sizeof(float));
    memcpy(d2, bd, (size_t)s * sizeof(double));
    total = best_total;
  }
}

/* Candidates per greedy k-means++ step: 2 + ln k (the usual choice), fewer
 * when the seeding would cost more than ~4e8 64-dim inner products (about
 * two seconds): large k on a large sample falls back towards plain
 * k-means++. */
static int32_t seed_trials(int64_t s, int32_t k, int32_t dim) {
  double want = 2.0 + floor(log((double)k));
  double budget = 4e8 * 64.0 / dim / ((double)s * k);
  if (want > budget) want = floor(budget);
  return want < 1 ? 1 : (int32_t)want;
}

/* Give every empty cluster the point worst served by its own centre, taken
 * from a cluster that keeps at least one point. */
static void repair_empty(int64_t m, int32_t k, int32_t spherical, int32_t *a, float *best,
                         int64_t *counts) {
  for (int32_t c = 0; c < k; c++) {
    if (counts[c] > 0) continue;
    int64_t worst = -1;
    for (int64_t i = 0; i < m; i++) {
      if (counts[a[i]] < 2) continue;
      if (worst < 0 || (spherical ? best[i] < best[worst] : best[i] > best[worst]))
        worst = i;
    }
    if (worst < 0) return; /* fewer distinct points than centres */
    counts[a[worst]]--;
    a[worst] = c;
    counts[c] = 1;
    best[worst] = spherical ? FLT_MAX : -FLT_MAX; /* never taken twice */
  }
}

int oa_kmeans(const float *x, int64_t n, int32_t dim, int64_t ld,
              const oa_kmeans_config *cfg, float *centroids_out, int32_t *assign_out,
              oa_error *err) {
  if (!cfg || dim < 1 || ld < dim || cfg->k < 1 || (int64_t)cfg->k > n)
    return oa_error_set(err, OA_EINVAL,
                        "kmeans: need 1 <= k <= n and dim >= 1 (k %d, n %lld)",
                        cfg ? cfg->k : 0, (long long)n);
  for (int64_t i = 0; i < n; i++)
    for (int32_t j = 0; j < dim; j++)
      if (!isfinite(x[i * ld + j]))
        return oa_error_set(err, OA_EINVAL, "kmeans: row %lld has a non-finite value",
                            (long long)i);
  int32_t k = cfg->k, iters = cfg->iters < 0 ? 10 : cfg->iters;
  int64_t per_train = cfg->max_per_train > 0 ? cfg->max_per_train : 64;
  int64_t per_seed = cfg->max_per_seed > 0 ? cfg->max_per_seed : 16;
  int64_t m = per_train * k < n ? per_train * k : n;
  int64_t s = per_seed * k < m ? per_seed * k : m;
  int rc = 0;
  int64_t *idx = malloc((size_t)n * sizeof(int64_t));
  float *t = malloc((size_t)m * dim * sizeof(float));
  int32_t *a = malloc((size_t)m * sizeof(int32_t));
  float *best = malloc((size_t)m * sizeof(float));
  double *d2 = malloc((size_t)s * 3 * sizeof(double));
  float *norms = malloc((size_t)s * sizeof(float));
  double *sums = malloc((size_t)k * dim * sizeof(double));
  int64_t *counts = malloc((size_t)k * sizeof(int64_t));
  if (!idx || !t || !a || !best || !d2 || !norms || !sums || !counts) {
    rc = oa_error_set(err, OA_ENOMEM, "kmeans: out of memory (%lld points, %d centres)",
                      (long long)m, k);
    goto done;
  }
  oa_rng rng;
  oa_rng_seed(&rng, cfg->seed);
  /* A partial Fisher-Yates shuffle: the first m indices are a uniform sample
   * in random order, so the first s of them are the seeding sample. */
  for (int64_t i = 0; i < n; i++)
    idx[i] = i;
  for (int64_t i = 0; i < m; i++) {
    int64_t j = i + (int64_t)oa_rng_below(&rng, (uint64_t)(n - i));
    int64_t tmp = idx[i];
    idx[i] = idx[j];
    idx[j] = tmp;
    memcpy(t + i * dim, x + idx[i] * ld, (size_t)dim * sizeof(float));
  }
  seed_plusplus(t, s, dim, k, seed_trials(s, k, dim), &rng, centroids_out, d2, d2 + s,
                d2 + 2 * s, norms);
  if (cfg->spherical)
    for (int32_t c = 0; c < k; c++)
      normalize(centroids_out + (size_t)c * dim, dim);
  for (int32_t it = 0; it < iters; it++) {
    rc = oa_kmeans_assign(t, m, dim, dim, centroids_out, k, cfg->spherical, a, best, err);
    if (rc) goto done;
    memset(counts, 0, (size_t)k * sizeof(int64_t));
    for (int64_t i = 0; i < m; i++)
      counts[a[i]]++;
    repair_empty(m, k, cfg->spherical, a, best, counts);
    memset(sums, 0, (size_t)k * dim * sizeof(double));
    for (int64_t i = 0; i < m; i++) {
      double *sc = sums + (size_t)a[i] * dim;
      const float *ti = t + i * dim;
      for (int32_t j = 0; j < dim; j++)
        sc[j] += ti[j];
    }
    for (int32_t c = 0; c < k; c++) {
      if (!counts[c]) continue; /* only when points < k distinct: keep the seed */
      float *cc = centroids_out + (size_t)c * dim;
      for (int32_t j = 0; j < dim; j++)
        cc[j] = (float)(sums[(size_t)c * dim + j] / counts[c]);
      if (cfg->spherical) normalize(cc, dim);
    }
  }
  if (assign_out)
    rc = oa_kmeans_assign(x, n, dim, ld, centroids_out, k, cfg->spherical, assign_out,
                          NULL, err);
done:
  free(idx);
  free(t);
  free(a);
  free(best);
  free(d2);
  free(norms);
  free(sums);
  free(counts);
  return rc;
}
