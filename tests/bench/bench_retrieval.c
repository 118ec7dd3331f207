/* Exact top-N retrieval against the memory-bandwidth floor, measured in
 * the same run.
 *
 * Two synthetic catalogs of 1,000,000 x 64 rows, L2-normalised: "tight"
 * (1,000 well-separated clusters, small noise) and "loose" (the same
 * number of clusters with noise as large as the centres, so they
 * overlap). Queries are drawn like items. For each format (f32, f16, i8)
 * and 1 and 2 threads it prints:
 *   - floor: the fastest of several single passes over the same bytes with
 *     a vectorised loop and no selection: for f32 the dot-product loop
 *     (8 FMAs a row against the query), for f16/i8 a plain load-and-add
 *     pass over the compact matrix (what bandwidth allows for those bytes);
 *   - exact: the median time of oa_topn_exact for top-100 over 50 queries;
 *   - the fastest query too (on a shared machine the median carries the
 *     other processes' load; the floor is a best-of);
 *   - p50 / floor, and p50 / the f32 floor (how much a compact
 *     format saves against the full-size matrix);
 *   - recall@100 of the compact formats' exact top-100 against f32's;
 *   - memory per million items (oa_vecstore_size_bytes: matrix, ids, map,
 *     metadata arrays) and the matrix alone.
 * The approximate index (IVF) has its own program (bench_ann).
 *
 * usage: bench_retrieval [rows (default 1000000)] [queries (default 50)]
 * Built only with -DONEARM_BENCH=ON; never part of ctest. */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog/pool.h"
#include "catalog/topn.h"
#include "catalog/vectors.h"
#include "core/rng.h"
#include "core/tensor.h"

#define DIM      64
#define CLUSTERS 1000
#define TOPN     100

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void normalise(float *v) {
  double s = 0;
  for (int i = 0; i < DIM; i++)
    s += (double)v[i] * v[i];
  float inv = (float)(1 / sqrt(s));
  for (int i = 0; i < DIM; i++)
    v[i] *= inv;
}

/* One item (or query): a random centre plus isotropic noise of the given
 * expected norm, normalised. */
static void draw(oa_rng *rng, const float *centres, double noise, float *out) {
  const float *c = centres + oa_rng_below(rng, CLUSTERS) * DIM;
  double sd = noise / sqrt(DIM);
  for (int i = 0; i < DIM; i++)
    out[i] = c[i] + (float)(sd * oa_rng_normal(rng));
  normalise(out);
}

/* ---- the floor: one pass over the bytes, split over threads ---- */

typedef struct floor_ctx {
  const uint8_t *mat;
  size_t bytes, part;
  int f32;
  const float *q;
  float sink[64];
} floor_ctx;

static void floor_task(void *ud, int task) {
  floor_ctx *c = ud;
  size_t lo = (size_t)task * c->part, hi = lo + c->part;
  if (hi > c->bytes) hi = c->bytes;
  if (c->f32) {
    /* 64 floats a row: 8 independent FMA chains against the query. */
    __m256 a[8];
    for (int j = 0; j < 8; j++)
      a[j] = _mm256_setzero_ps();
    for (size_t off = lo; off < hi; off += 256) {
      const float *r = (const float *)(c->mat + off);
      for (int j = 0; j < 8; j++)
        a[j] = _mm256_fmadd_ps(_mm256_load_ps(r + 8 * j), _mm256_load_ps(c->q + 8 * j),
                               a[j]);
    }
    for (int j = 1; j < 8; j++)
      a[0] = _mm256_add_ps(a[0], a[j]);
    _mm256_storeu_ps(c->sink + 8 * (task & 7), a[0]);
  } else {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0;
    for (size_t off = lo; off < hi; off += 64) {
      a0 = _mm256_add_epi32(a0, _mm256_load_si256((const __m256i *)(c->mat + off)));
      a1 = _mm256_add_epi32(a1, _mm256_load_si256((const __m256i *)(c->mat + off + 32)));
    }
    _mm256_storeu_si256((__m256i *)(c->sink + 8 * (task & 7)), _mm256_add_epi32(a0, a1));
  }
}

static double floor_ms(oa_pool *pool, const oa_vecstore *vs, int threads,
                       const float *q) {
  floor_ctx c = {.mat = oa_vecstore_matrix(vs),
                 .bytes = (size_t)oa_vecstore_rows(vs) * oa_vecstore_stride(vs),
                 .f32 = oa_vecstore_config_of(vs)->format == OA_VEC_F32,
                 .q = q};
  c.part = ((c.bytes / (size_t)threads) + 255) & ~(size_t)255;
  double best = 1e9;
  for (int rep = 0; rep < 7; rep++) {
    double t = now();
    oa_pool_run(pool, threads, threads, floor_task, &c);
    t = now() - t;
    if (t < best) best = t;
  }
  return best * 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct row_stats {
  double floor, exact, best, recall;
} row_stats;

/* The 1-minute load average: timings on a shared machine need it. */
static double loadavg(void) {
  double l = -1;
  FILE *fp = fopen("/proc/loadavg", "r");
  if (fp) {
    if (fscanf(fp, "%lf", &l) != 1) l = -1;
    fclose(fp);
  }
  return l;
}

int main(int argc, char **argv) {
  int64_t rows = argc > 1 ? atoll(argv[1]) : 1000000;
  int queries = argc > 2 ? atoi(argv[2]) : 50;
  if (rows < 1000 || queries < 1) {
    fprintf(stderr, "usage: bench_retrieval [rows >= 1000] [queries >= 1]\n");
    return 2;
  }
  oa_blas_threads(1); /* the engine parallelises the scan itself */
  oa_pool *pool = oa_pool_shared();
  int maxthreads = oa_pool_threads(pool) < 2 ? oa_pool_threads(pool) : 2;

  const char *names[2] = {"tight", "loose"};
  const double noise[2] = {0.15, 1.0};
  float *centres = malloc((size_t)CLUSTERS * DIM * sizeof *centres);
  float *data = malloc((size_t)rows * DIM * sizeof *data);
  float *qs = aligned_alloc(32, (size_t)queries * DIM * sizeof *qs);
  double *times = malloc((size_t)queries * sizeof *times);
  int64_t *ref = malloc((size_t)queries * TOPN * sizeof *ref);
  if (!centres || !data || !qs || !times || !ref) return 1;

  printf("# exact top-%d, %lld x %d, %d queries, %d CPU(s) in the pool, load average "
         "%.2f\n\n",
         TOPN, (long long)rows, DIM, queries, oa_pool_threads(pool), loadavg());
  printf(
      "| catalog | format | matrix MB | MB per 1M items | threads | floor ms | exact p50 "
      "ms | exact best ms | p50 / floor | exact / f32 floor | recall@%d vs f32 |\n",
      TOPN);
  printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int cat = 0; cat < 2; cat++) {
    oa_rng rng;
    oa_rng_seed(&rng, 1000 + (uint64_t)cat);
    for (int i = 0; i < CLUSTERS * DIM; i++)
      centres[i] = (float)oa_rng_normal(&rng);
    for (int k = 0; k < CLUSTERS; k++)
      normalise(centres + k * DIM);
    for (int64_t r = 0; r < rows; r++)
      draw(&rng, centres, noise[cat], data + r * DIM);
    for (int k = 0; k < queries; k++)
      draw(&rng, centres, noise[cat], qs + k * DIM);
    double f32_floor[3] = {0};
    for (int f = 0; f < 3; f++) {
      oa_vecstore_config cfg = {.dim = DIM, .format = (oa_vec_format)f};
      oa_error err = {0};
      oa_vecstore *vs = oa_vecstore_new(&cfg, &err);
      if (!vs || oa_vecstore_reserve(vs, rows, &err)) {
        fprintf(stderr, "bench_retrieval: %s\n", err.message);
        return 1;
      }
      char id[32];
      for (int64_t r = 0; r < rows; r++) {
        int n = snprintf(id, sizeof id, "video-%lld", (long long)r);
        if (oa_vecstore_upsert(vs, id, (size_t)n, data + r * DIM, NULL, &err) < 0) {
          fprintf(stderr, "bench_retrieval: %s\n", err.message);
          return 1;
        }
      }
      double matrix_mb = (double)rows * oa_vecstore_stride(vs) / 1e6;
      double per_million =
          (double)oa_vecstore_size_bytes(vs) / 1e6 * (1e6 / (double)rows);
      oa_topn_result res;
      oa_topn_result_init(&res);
      for (int threads = 1; threads <= maxthreads; threads++) {
        row_stats st = {0};
        st.floor = floor_ms(pool, vs, threads, qs);
        if (f == OA_VEC_F32) f32_floor[threads] = st.floor;
        oa_topn_exact(vs, qs, TOPN, NULL, threads, &res, NULL); /* warm */
        double hits = 0;
        for (int k = 0; k < queries; k++) {
          double t = now();
          if (oa_topn_exact(vs, qs + k * DIM, TOPN, NULL, threads, &res, &err)) {
            fprintf(stderr, "bench_retrieval: %s\n", err.message);
            return 1;
          }
          times[k] = (now() - t) * 1e3;
          int64_t *want = ref + (size_t)k * TOPN;
          if (f == OA_VEC_F32) memcpy(want, res.rows, TOPN * sizeof *want);
          for (int i = 0; i < res.count; i++)
            for (int j = 0; j < TOPN; j++)
              if (res.rows[i] == want[j]) {
                hits++;
                break;
              }
        }
        qsort(times, (size_t)queries, sizeof *times, cmp_double);
        st.exact = times[queries / 2];
        st.best = times[0];
        st.recall = hits / ((double)queries * TOPN);
        printf(
            "| %s | %s | %.0f | %.1f | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.3f |\n",
            names[cat], oa_vec_format_name((oa_vec_format)f), matrix_mb, per_million,
            threads, st.floor, st.exact, st.best, st.exact / st.floor,
            st.exact / f32_floor[threads], st.recall);
        fflush(stdout);
      }
      oa_topn_result_free(&res);
      oa_vecstore_free(vs);
    }
  }
  printf("\nfloor: best of 7 passes over the same matrix (f32: dot-product loop; f16/i8: "
         "load-and-add over the compact bytes). Approximate retrieval: bench_ann.\n");
  free(centres);
  free(data);
  free(qs);
  free(times);
  free(ref);
  oa_pool_shared_shutdown();
  return 0;
}
