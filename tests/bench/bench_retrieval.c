/* Exact top-N retrieval against the memory-bandwidth floor, measured in
 * the same run.
 *
 * Two synthetic catalogs of --rows x 64 rows (default 1,000,000),
 * L2-normalised: "tight" (1,000 well-separated clusters, small noise) and
 * "loose" (the same number of clusters with noise as large as the centres,
 * so they overlap). Queries are drawn like items. Each format's store is
 * built from the catalog's seed row by row, so the process holds one store
 * at a time and its RSS is the store's. For each format (f32, f16, i8) and
 * thread count it prints:
 *   - floor: one pass over the same bytes on the same number of pool
 *     threads with a vectorised loop and no selection: for f32 the
 *     dot-product loop (8 FMAs a row against the query), for f16/i8 a
 *     plain load-and-add pass over the compact matrix (what bandwidth
 *     allows for those bytes). A floor pass runs right before every query,
 *     so floor and scan see the same load on a shared machine;
 *   - exact: oa_topn_exact for top-100 over the queries;
 *   - medians and fastest of both, p50 / floor p50, best / floor best, and
 *     p50 / the f32 floor p50 (how much a compact format saves against the
 *     full-size matrix);
 *   - recall@100 of the compact formats' exact top-100 against f32's (when
 *     f32 is among the formats);
 *   - memory per million items (oa_vecstore_size_bytes: matrix, ids, map,
 *     metadata arrays), the matrix alone and the process RSS (VmRSS) with
 *     the store built.
 * The approximate index (IVF) has its own program (bench_ann).
 *
 * usage: bench_retrieval [--rows N] [--queries N] [--formats f32,f16,i8]
 *                        [--catalogs tight,loose] [--threads 1,2]
 * e.g. 10M rows: bench_retrieval --rows 10000000 --catalogs tight --threads 2
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

/* One timed pass of the floor over vs's matrix on `threads` threads. */
static double floor_pass_ms(oa_pool *pool, const oa_vecstore *vs, int threads,
                            const float *q) {
  floor_ctx c = {.mat = oa_vecstore_matrix(vs),
                 .bytes = (size_t)oa_vecstore_rows(vs) * oa_vecstore_stride(vs),
                 .f32 = oa_vecstore_config_of(vs)->format == OA_VEC_F32,
                 .q = q};
  c.part = ((c.bytes / (size_t)threads) + 255) & ~(size_t)255;
  double t = now();
  oa_pool_run(pool, threads, threads, floor_task, &c);
  return (now() - t) * 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

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

/* A field of /proc/self/status in MB (VmRSS, VmHWM), -1 when unknown. */
static double status_mb(const char *field) {
  char line[256];
  double kb = -1;
  size_t n = strlen(field);
  FILE *fp = fopen("/proc/self/status", "r");
  if (!fp) return -1;
  while (fgets(line, sizeof line, fp))
    if (!strncmp(line, field, n) && line[n] == ':') {
      kb = atof(line + n + 1);
      break;
    }
  fclose(fp);
  return kb < 0 ? -1 : kb / 1024;
}

typedef struct opts {
  int64_t rows;
  int queries;
  unsigned formats, catalogs; /* bit sets */
  int threads[8], nthreads;
  int batch; /* queries per batched pass (0: no batch figure) */
} opts;

/* Parses a comma-separated list against names into a bit set (0: bad). */
static unsigned parse_set(const char *s, const char *const *names, int n) {
  unsigned set = 0;
  char buf[128];
  snprintf(buf, sizeof buf, "%s", s);
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    int i = 0;
    while (i < n && strcmp(tok, names[i]))
      i++;
    if (i == n) return 0;
    set |= 1u << i;
  }
  return set;
}

static const char *const FORMATS[3] = {"f32", "f16", "i8"};
static const char *const CATALOGS[2] = {"tight", "loose"};

static int parse_opts(int argc, char **argv, opts *o) {
  *o = (opts){.rows = 1000000,
              .queries = 50,
              .formats = 7,
              .catalogs = 3,
              .threads = {1, 2},
              .nthreads = 2,
              .batch = 8};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return -1;
    i++;
    if (!strcmp(a, "--rows"))
      o->rows = atoll(v);
    else if (!strcmp(a, "--queries"))
      o->queries = atoi(v);
    else if (!strcmp(a, "--batch"))
      o->batch = atoi(v);
    else if (!strcmp(a, "--formats"))
      o->formats = parse_set(v, FORMATS, 3);
    else if (!strcmp(a, "--catalogs"))
      o->catalogs = parse_set(v, CATALOGS, 2);
    else if (!strcmp(a, "--threads")) {
      o->nthreads = 0;
      for (const char *p = v; *p && o->nthreads < 8; p += strcspn(p, ","), p += !!*p)
        o->threads[o->nthreads++] = atoi(p);
    } else
      return -1;
  }
  for (int t = 0; t < o->nthreads; t++)
    if (o->threads[t] < 1) return -1;
  return o->rows >= 1000 && o->queries >= 1 && o->formats && o->catalogs && o->nthreads
             ? 0
             : -1;
}

/* A store of the catalog's rows in format f, drawn from the catalog's seed
 * one row at a time (no second copy of the data), then the queries. */
static oa_vecstore *build_store(int cat, oa_vec_format f, const opts *o, float *centres,
                                float *qs) {
  static const double noise[2] = {0.15, 1.0};
  oa_rng rng;
  oa_rng_seed(&rng, 1000 + (uint64_t)cat);
  for (int i = 0; i < CLUSTERS * DIM; i++)
    centres[i] = (float)oa_rng_normal(&rng);
  for (int k = 0; k < CLUSTERS; k++)
    normalise(centres + k * DIM);
  oa_vecstore_config cfg = {.dim = DIM, .format = f};
  oa_error err = {0};
  oa_vecstore *vs = oa_vecstore_new(&cfg, &err);
  if (!vs || oa_vecstore_reserve(vs, o->rows, &err)) goto fail;
  char id[32];
  float v[DIM];
  for (int64_t r = 0; r < o->rows; r++) {
    draw(&rng, centres, noise[cat], v);
    int n = snprintf(id, sizeof id, "video-%lld", (long long)r);
    if (oa_vecstore_upsert(vs, id, (size_t)n, v, NULL, &err) < 0) goto fail;
  }
  for (int k = 0; k < o->queries; k++)
    draw(&rng, centres, noise[cat], qs + k * DIM);
  return vs;
fail:
  fprintf(stderr, "bench_retrieval: %s\n", err.message);
  exit(1);
}

/* Concurrent requests batched into one pass (oa_topn_exact_many) against
 * the same queries scanned one by one, alternating so that both see the
 * same load: the best of 5 of each, in ms for the whole batch. */
static void measure_batch(const oa_vecstore *vs, int threads, const float *qs, int batch,
                          double *many_ms, double *singles_ms) {
  const float **qp = malloc(sizeof *qp * (size_t)batch);
  int32_t *ns = malloc(sizeof *ns * (size_t)batch);
  int *rcs = malloc(sizeof *rcs * (size_t)batch);
  oa_topn_result *res = malloc(sizeof *res * (size_t)batch);
  if (!qp || !ns || !rcs || !res) exit(1);
  for (int k = 0; k < batch; k++) {
    qp[k] = qs + k * DIM;
    ns[k] = TOPN;
    oa_topn_result_init(&res[k]);
  }
  *many_ms = *singles_ms = 1e30;
  for (int rep = 0; rep < 5; rep++) {
    double t = now();
    for (int k = 0; k < batch; k++)
      oa_topn_exact(vs, qp[k], TOPN, NULL, threads, &res[k], NULL);
    double single = (now() - t) * 1e3;
    t = now();
    if (oa_topn_exact_many(vs, batch, qp, ns, NULL, threads, res, rcs, NULL)) exit(1);
    double many = (now() - t) * 1e3;
    if (single < *singles_ms) *singles_ms = single;
    if (many < *many_ms) *many_ms = many;
  }
  for (int k = 0; k < batch; k++)
    oa_topn_result_free(&res[k]);
  free(qp), free(ns), free(rcs), free(res);
}

typedef struct run_stats {
  double floor_p50, floor_best, exact_p50, exact_best, recall;
} run_stats;

/* queries exact top-N scans on `threads` threads, each right after one
 * floor pass so that both see the same load; ref holds f32's results (set
 * when fmt is F32, compared against otherwise). */
static run_stats measure(oa_pool *pool, const oa_vecstore *vs, int threads,
                         const float *qs, int queries, int64_t *ref, double *ft,
                         double *et) {
  oa_topn_result res;
  oa_topn_result_init(&res);
  oa_error err = {0};
  int f32 = oa_vecstore_config_of(vs)->format == OA_VEC_F32;
  double hits = 0;
  floor_pass_ms(pool, vs, threads, qs);
  oa_topn_exact(vs, qs, TOPN, NULL, threads, &res, NULL); /* warm */
  for (int k = 0; k < queries; k++) {
    ft[k] = floor_pass_ms(pool, vs, threads, qs + k * DIM);
    double t = now();
    if (oa_topn_exact(vs, qs + k * DIM, TOPN, NULL, threads, &res, &err)) {
      fprintf(stderr, "bench_retrieval: %s\n", err.message);
      exit(1);
    }
    et[k] = (now() - t) * 1e3;
    int64_t *want = ref + (size_t)k * TOPN;
    if (f32) memcpy(want, res.rows, TOPN * sizeof *want);
    for (int i = 0; i < res.count; i++)
      for (int j = 0; j < TOPN; j++)
        if (res.rows[i] == want[j]) {
          hits++;
          break;
        }
  }
  oa_topn_result_free(&res);
  qsort(ft, (size_t)queries, sizeof *ft, cmp_double);
  qsort(et, (size_t)queries, sizeof *et, cmp_double);
  return (run_stats){ft[queries / 2], ft[0], et[queries / 2], et[0],
                     hits / ((double)queries * TOPN)};
}

int main(int argc, char **argv) {
  opts o;
  if (parse_opts(argc, argv, &o)) {
    fprintf(stderr, "usage: bench_retrieval [--rows N (>= 1000, default 1000000)] "
                    "[--queries N (50)]\n  [--formats f32,f16,i8] [--catalogs "
                    "tight,loose] [--threads 1,2] [--batch K (8; 0: none)]\n");
    return 2;
  }
  oa_blas_threads(1); /* the engine parallelises the scan itself */
  oa_pool *pool = oa_pool_shared();

  float *centres = malloc((size_t)CLUSTERS * DIM * sizeof *centres);
  float *qs = aligned_alloc(32, (size_t)o.queries * DIM * sizeof *qs);
  double *ft = malloc((size_t)o.queries * sizeof *ft);
  double *et = malloc((size_t)o.queries * sizeof *et);
  int64_t *ref = calloc((size_t)o.queries * TOPN, sizeof *ref);
  if (!centres || !qs || !ft || !et || !ref) return 1;

  printf("# exact top-%d, %lld x %d, %d queries, %d CPU(s) in the pool, load average "
         "%.2f\n\n",
         TOPN, (long long)o.rows, DIM, o.queries, oa_pool_threads(pool), loadavg());
  printf("| catalog | format | matrix MB | MB per 1M items | RSS MB | threads | floor "
         "p50 ms | floor best ms | exact p50 ms | exact best ms | p50 / floor p50 | "
         "best / floor best | exact p50 / f32 floor p50 | recall@%d vs f32 |\n",
         TOPN);
  printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int cat = 0; cat < 2; cat++) {
    if (!(o.catalogs >> cat & 1)) continue;
    double f32_floor[8] = {0};
    for (int f = 0; f < 3; f++) {
      if (!(o.formats >> f & 1)) continue;
      oa_vecstore *vs = build_store(cat, (oa_vec_format)f, &o, centres, qs);
      double matrix_mb = (double)o.rows * oa_vecstore_stride(vs) / 1e6;
      double per_million =
          (double)oa_vecstore_size_bytes(vs) / 1e6 * (1e6 / (double)o.rows);
      double rss = status_mb("VmRSS");
      for (int t = 0; t < o.nthreads; t++) {
        run_stats st = measure(pool, vs, o.threads[t], qs, o.queries, ref, ft, et);
        if (f == OA_VEC_F32) f32_floor[t] = st.floor_p50;
        printf("| %s | %s | %.0f | %.1f | %.0f | %d | %.2f | %.2f | %.2f | %.2f | %.2f | "
               "%.2f | ",
               CATALOGS[cat], FORMATS[f], matrix_mb, per_million, rss, o.threads[t],
               st.floor_p50, st.floor_best, st.exact_p50, st.exact_best,
               st.exact_p50 / st.floor_p50, st.exact_best / st.floor_best);
        if (f32_floor[t] > 0)
          printf("%.2f | ", st.exact_p50 / f32_floor[t]);
        else
          printf("- | ");
        if (o.formats & 1)
          printf("%.3f |\n", st.recall);
        else
          printf("- |\n");
        fflush(stdout);
      }
      if (o.batch > 1 && o.batch <= o.queries) {
        int t = o.threads[o.nthreads - 1];
        double many, singles;
        measure_batch(vs, t, qs, o.batch, &many, &singles);
        printf(
            "| %s | %s | batch of %d queries, %d threads: %.2f ms in one pass vs %.2f ms "
            "one by one (%.2fx the time of one scan, %.2fx faster per query) |\n",
            CATALOGS[cat], FORMATS[f], o.batch, t, many, singles,
            many / (singles / o.batch), singles / many);
      }
      oa_vecstore_free(vs);
    }
  }
  printf("\nfloor: one pass over the same matrix on the same threads (f32: dot-product "
         "loop; f16/i8: load-and-add over the compact bytes), timed right before each "
         "query. Peak RSS %.0f MB. Approximate retrieval: bench_ann.\n",
         status_mb("VmHWM"));
  free(centres);
  free(qs);
  free(ft);
  free(et);
  free(ref);
  oa_pool_shared_shutdown();
  return 0;
}
