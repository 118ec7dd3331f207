/* Approximate top-N retrieval (catalog/ivf.h) on two synthetic catalogs of
 * unit vectors, side by side with exact search, in one run:
 *
 *   tight  1000 well-separated clusters: centres uniform on the sphere,
 *          items = normalise(centre + noise of norm 0.3). A query's top 100
 *          sit in its own cluster, so an index looks very good here.
 *   loose  1000 clusters that overlap: the same construction with noise of
 *          norm LOOSE_SIGMA (default 1.3, a little more than the centre's
 *          unit norm), so a query's top 100 mix its own cluster with many
 *          others and spread over many lists, as with real embeddings. (At
 *          1.0 the clusters barely overlap in 64 dimensions: 2 lists of
 *          1024 reach recall 0.95 on 200k items.)
 *
 * Queries are drawn like the items (fresh draws, not in the catalog). Both
 * catalogs, the queries and the exact top-100 (by sgemm) are written as
 * .npy files to OUT_DIR (default /tmp/onearm_ann) for faiss_compare.py,
 * which runs FAISS on exactly the same data.
 *
 * For each catalog and list format (f32, int8 + exact re-rank) it builds
 * the index, sweeps nprobe upwards and reports the first nprobe whose mean
 * recall@100 over the queries reaches TARGET (0.95), with the p50/p99
 * latency of single queries on one thread, the build time and the index
 * memory per million items. One markdown table row per measurement on
 * stdout; the sweep goes to stderr.
 *
 * usage: bench_ann [items (1000000)] [queries (1000)]
 *   env: OUT_DIR, LOOSE_SIGMA, NLIST_TIGHT (1024), NLIST_LOOSE (4096),
 *        CATALOGS ("tight loose"), TARGET, RERANK (int8 re-rank factor, 4)
 * Built only with -DONEARM_BENCH=ON; never part of ctest. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "catalog/ivf.h"
#include "catalog/vectors.h"
#include "core/rng.h"

#define DIM      64
#define TOPN     100
#define CLUSTERS 1000

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, const char *msg) {
  fprintf(stderr, "bench_ann: %s: %s\n", what, msg);
  exit(1);
}

static double env_num(const char *name, double dflt) {
  const char *s = getenv(name);
  return s && *s ? atof(s) : dflt;
}

static void normalize(float *v) {
  double s = 0;
  for (int j = 0; j < DIM; j++)
    s += (double)v[j] * v[j];
  float inv = (float)(1.0 / sqrt(s));
  for (int j = 0; j < DIM; j++)
    v[j] *= inv;
}

/* n items then nq queries, all drawn the same way from seeded streams. */
static float *make_catalog(int64_t n, int nq, double sigma, uint64_t seed) {
  oa_rng r;
  oa_rng_seed(&r, seed);
  float *c = malloc((size_t)CLUSTERS * DIM * sizeof(float));
  float *x = malloc((size_t)(n + nq) * DIM * sizeof(float));
  if (!c || !x) die("generate", "out of memory");
  for (int k = 0; k < CLUSTERS; k++) {
    for (int j = 0; j < DIM; j++)
      c[k * DIM + j] = (float)oa_rng_normal(&r);
    normalize(c + k * DIM);
  }
  double s = sigma / sqrt((double)DIM);
  for (int64_t i = 0; i < n + nq; i++) {
    const float *ck = c + oa_rng_below(&r, CLUSTERS) * DIM;
    float *xi = x + i * DIM;
    for (int j = 0; j < DIM; j++)
      xi[j] = ck[j] + (float)(s * oa_rng_normal(&r));
    normalize(xi);
  }
  free(c);
  return x;
}

/* A .npy file (format 1.0) holding a C-order float32 or int32 matrix. */
static void write_npy(const char *path, const void *data, const char *descr, int64_t rows,
                      int cols) {
  char hdr[128];
  int len = snprintf(hdr, sizeof hdr,
                     "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %d), }",
                     descr, (long long)rows, cols);
  int total = 10 + len + 1, pad = (64 - total % 64) % 64;
  FILE *f = fopen(path, "wb");
  if (!f) die(path, strerror(errno));
  uint16_t hl = (uint16_t)(len + pad + 1);
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  fwrite(&hl, 2, 1, f);
  fwrite(hdr, 1, (size_t)len, f);
  for (int i = 0; i < pad; i++)
    fputc(' ', f);
  fputc('\n', f);
  fwrite(data, 4, (size_t)rows * cols, f);
  if (fclose(f)) die(path, strerror(errno));
}

/* Keeps the TOPN best (score, row) pairs: a min-heap. */
typedef struct topk {
  float s[TOPN];
  int32_t r[TOPN];
  int n;
} topk;

static void topk_push(topk *t, float s, int32_t r) {
  int i;
  if (t->n < TOPN) {
    i = t->n++;
    while (i > 0 && t->s[(i - 1) / 2] > s) {
      t->s[i] = t->s[(i - 1) / 2];
      t->r[i] = t->r[(i - 1) / 2];
      i = (i - 1) / 2;
    }
  } else {
    if (s <= t->s[0]) return;
    i = 0;
    for (;;) {
      int l = 2 * i + 1, m = l;
      if (l >= TOPN) break;
      if (l + 1 < TOPN && t->s[l + 1] < t->s[l]) m = l + 1;
      if (t->s[m] >= s) break;
      t->s[i] = t->s[m];
      t->r[i] = t->r[m];
      i = m;
    }
  }
  t->s[i] = s;
  t->r[i] = r;
}

/* Exact top-100 of every query by blocked sgemm (nq x block scores). */
static int32_t *ground_truth(const float *x, int64_t n, const float *q, int nq) {
  const int64_t block = 8192;
  float *sc = malloc((size_t)nq * block * sizeof(float));
  topk *tk = calloc((size_t)nq, sizeof(topk));
  int32_t *gt = malloc((size_t)nq * TOPN * sizeof(int32_t));
  if (!sc || !tk || !gt) die("ground truth", "out of memory");
  for (int64_t b = 0; b < n; b += block) {
    int64_t m = n - b < block ? n - b : block;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, (int)m, DIM, 1.0f, q, DIM,
                x + b * DIM, DIM, 0.0f, sc, (int)m);
    for (int i = 0; i < nq; i++)
      for (int64_t j = 0; j < m; j++)
        topk_push(&tk[i], sc[(size_t)i * m + j], (int32_t)(b + j));
  }
  for (int i = 0; i < nq; i++)
    for (int k = 0; k < TOPN; k++)
      gt[(size_t)i * TOPN + k] = tk[i].r[k];
  free(sc);
  free(tk);
  return gt;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double pct(double *v, int n, double p) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  int i = (int)ceil(p * n) - 1;
  return v[i < 0 ? 0 : i];
}

static double recall_of(const int64_t *rows, int cnt, const int32_t *gt) {
  int hit = 0; /* TOPN x TOPN compares: cheap next to a search */
  for (int i = 0; i < cnt; i++)
    for (int k = 0; k < TOPN; k++)
      if (gt[k] == rows[i]) {
        hit++;
        break;
      }
  return (double)hit / TOPN;
}

/* Exact search as a service would do it: one sgemv over the catalog and a
 * top-100 selection, timed on the first queries (the scan is slow). */
static void bench_exact(const char *cat, const float *x, int64_t n, const float *q,
                        int nq) {
  int m = nq < 100 ? nq : 100;
  float *sc = malloc((size_t)n * sizeof(float));
  double *lat = malloc((size_t)m * sizeof(double));
  for (int i = 0; i < m; i++) {
    double t0 = now();
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, DIM, 1.0f, x, DIM,
                q + (size_t)i * DIM, 1, 0.0f, sc, 1);
    topk tk = {.n = 0};
    for (int64_t j = 0; j < n; j++)
      if (tk.n < TOPN || sc[j] > tk.s[0]) topk_push(&tk, sc[j], (int32_t)j);
    lat[i] = now() - t0;
  }
  double p50 = pct(lat, m, 0.5), p99 = pct(lat, m, 0.99);
  printf("| %s | onearm exact (sgemv + top-100) | - | 1.000 | %.3f | %.3f | 0 | %.0f |\n",
         cat, p50 * 1e3, p99 * 1e3, (double)n * DIM * 4 / 1e6 * (1e6 / n));
  free(sc);
  free(lat);
}

static void bench_ivf(const char *cat, oa_vecstore *vs, int64_t n, const float *q, int nq,
                      const int32_t *gt, int32_t nlist, oa_ivf_storage storage,
                      double target) {
  oa_error err = {0};
  oa_ivf_config cfg = {.nlist = nlist,
                       .seed = 42,
                       .storage = storage,
                       .rerank = (int32_t)env_num("RERANK", 0)};
  double t0 = now();
  oa_ivf *ivf = oa_ivf_build(vs, &cfg, &err);
  double build = now() - t0;
  if (!ivf) die("ivf build", err.message);
  char fmt[64];
  if (storage == OA_IVF_I8)
    snprintf(fmt, sizeof fmt, "int8 + re-rank %dn", cfg.rerank ? cfg.rerank : 4);
  else
    snprintf(fmt, sizeof fmt, "f32");
  fprintf(stderr, "%s ivf %s nlist %d: build %.1f s\n", cat, fmt, nlist, build);
  static const int probes[] = {1,   2,   3,   4,   6,    8,    12,  16,  24,
                               32,  48,  64,  96,  128,  160,  192, 256, 320,
                               384, 512, 640, 768, 1024, 1536, 2048};
  double *lat = malloc((size_t)nq * sizeof(double));
  int64_t rows[TOPN];
  float scores[TOPN];
  int reached = 0;
  for (size_t pi = 0; pi < sizeof probes / sizeof probes[0] && probes[pi] <= nlist;
       pi++) {
    int np = probes[pi];
    double rec = 0;
    for (int i = 0; i < nq; i++) {
      int32_t cnt = 0;
      double s0 = now();
      if (oa_ivf_search(ivf, vs, q + (size_t)i * DIM, TOPN, np, NULL, rows, scores, &cnt,
                        &err))
        die("ivf search", err.message);
      lat[i] = now() - s0;
      rec += recall_of(rows, cnt, gt + (size_t)i * TOPN);
    }
    rec /= nq;
    double p50 = pct(lat, nq, 0.5), p99 = pct(lat, nq, 0.99);
    fprintf(stderr, "  nprobe %4d  recall@100 %.4f  p50 %.3f ms  p99 %.3f ms\n", np, rec,
            p50 * 1e3, p99 * 1e3);
    if (rec >= target) {
      printf("| %s | onearm IVF %s | nlist %d, nprobe %d | %.3f | %.3f | %.3f | %.1f | "
             "%.1f |\n",
             cat, fmt, nlist, np, rec, p50 * 1e3, p99 * 1e3, build,
             (double)oa_ivf_size_bytes(ivf) / 1e6 * (1e6 / (double)n));
      reached = 1;
      break;
    }
  }
  if (!reached)
    printf("| %s | onearm IVF %s | nlist %d | < %.2f | - | - | %.1f | %.1f |\n", cat, fmt,
           nlist, target, build,
           (double)oa_ivf_size_bytes(ivf) / 1e6 * (1e6 / (double)n));
  fflush(stdout);
  free(lat);
  oa_ivf_free(ivf);
}

static void run_catalog(const char *cat, int64_t n, int nq, const char *out_dir) {
  int tight = !strcmp(cat, "tight");
  double sigma = tight ? 0.3 : env_num("LOOSE_SIGMA", 1.3);
  int32_t nlist =
      (int32_t)(tight ? env_num("NLIST_TIGHT", 1024) : env_num("NLIST_LOOSE", 4096));
  double target = env_num("TARGET", 0.95);
  double t0 = now();
  float *x = make_catalog(n, nq, sigma, tight ? 1001 : 2002);
  const float *q = x + n * DIM;
  int32_t *gt = ground_truth(x, n, q, nq);
  fprintf(stderr,
          "%s: %lld x %d (noise %.2f), %d queries, generated + exact top-%d in %.1f s\n",
          cat, (long long)n, DIM, sigma, nq, TOPN, now() - t0);
  char path[512];
  snprintf(path, sizeof path, "%s/%s_base.npy", out_dir, cat);
  write_npy(path, x, "<f4", n, DIM);
  snprintf(path, sizeof path, "%s/%s_query.npy", out_dir, cat);
  write_npy(path, q, "<f4", nq, DIM);
  snprintf(path, sizeof path, "%s/%s_gt.npy", out_dir, cat);
  write_npy(path, gt, "<i4", nq, TOPN);

  oa_vecstore_config vc = {.dim = DIM, .format = OA_VEC_F32};
  oa_error err = {0};
  oa_vecstore *vs = oa_vecstore_new(&vc, &err);
  if (!vs) die("store", err.message);
  char id[32];
  for (int64_t i = 0; i < n; i++) {
    int len = snprintf(id, sizeof id, "item%lld", (long long)i);
    if (oa_vecstore_upsert(vs, id, (size_t)len, x + i * DIM, NULL, &err) != i)
      die("upsert", err.message);
  }
  bench_exact(cat, x, n, q, nq);
  bench_ivf(cat, vs, n, q, nq, gt, nlist, OA_IVF_F32, target);
  bench_ivf(cat, vs, n, q, nq, gt, nlist, OA_IVF_I8, target);
  oa_vecstore_free(vs);
  free(gt);
  free(x);
}

int main(int argc, char **argv) {
  int64_t n = argc > 1 ? atoll(argv[1]) : 1000000;
  int nq = argc > 2 ? atoi(argv[2]) : 1000;
  const char *out_dir = getenv("OUT_DIR") ? getenv("OUT_DIR") : "/tmp/onearm_ann";
  const char *cats = getenv("CATALOGS") ? getenv("CATALOGS") : "tight loose";
  if (n < 1000 || nq < 1) die("usage", "bench_ann [items >= 1000] [queries >= 1]");
  mkdir(out_dir, 0755);
  printf(
      "| catalog | method | parameters | recall@100 | p50 ms | p99 ms | build s | MB per "
      "million |\n");
  printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
  if (strstr(cats, "tight")) run_catalog("tight", n, nq, out_dir);
  if (strstr(cats, "loose")) run_catalog("loose", n, nq, out_dir);
  return 0;
}
