/* Approximate retrieval: k-means (kmeans.h) and the IVF index (ivf.h) on
 * small seeded synthetic catalogs: centres recovered, recall at least the
 * target, the index following upserts and removes, filters, argument
 * errors, and save/load giving identical answers. */
#include "check.h"
#include "catalog/filter.h"
#include "catalog/ivf.h"
#include "catalog/kmeans.h"
#include "catalog/vectors.h"
#include "core/buf.h"
#include "core/rng.h"

#include <stdio.h>
#include <string.h>

static void normalize(float *v, int d) {
  double s = 0;
  for (int j = 0; j < d; j++)
    s += (double)v[j] * v[j];
  float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0;
  for (int j = 0; j < d; j++)
    v[j] *= inv;
}

/* n unit vectors around nc random unit centres with noise of norm ~sigma. */
static float *clustered(oa_rng *r, int n, int d, int nc, double sigma,
                        float **centres_out) {
  float *c = malloc((size_t)nc * d * sizeof(float)),
        *x = malloc((size_t)n * d * sizeof(float));
  for (int k = 0; k < nc; k++) {
    for (int j = 0; j < d; j++)
      c[k * d + j] = (float)oa_rng_normal(r);
    normalize(c + k * d, d);
  }
  for (int i = 0; i < n; i++) {
    int k = (int)oa_rng_below(r, (uint64_t)nc);
    for (int j = 0; j < d; j++)
      x[i * d + j] = c[k * d + j] + (float)(sigma / sqrt(d) * oa_rng_normal(r));
    normalize(x + i * d, d);
  }
  if (centres_out)
    *centres_out = c;
  else
    free(c);
  return x;
}

static oa_vecstore *store_of(const float *x, int n, int d) {
  oa_vecstore_config cfg = {.dim = d, .format = OA_VEC_F32};
  oa_error err = {0};
  oa_vecstore *vs = oa_vecstore_new(&cfg, &err);
  CHECK(vs != NULL);
  char id[32];
  for (int i = 0; i < n; i++) {
    int len = snprintf(id, sizeof id, "a%d", i);
    CHECK(oa_vecstore_upsert(vs, id, (size_t)len, x + (size_t)i * d, NULL, &err) == i);
  }
  return vs;
}

static void kmeans_recovers_well_separated_centres(void) {
  oa_rng r;
  oa_rng_seed(&r, 7);
  const int n = 4000, d = 16, k = 8;
  for (int spherical = 0; spherical < 2; spherical++) {
    float *truth;
    float *x = clustered(&r, n, d, k, 0.2, &truth);
    float cent[8 * 16];
    int32_t *assign = malloc(n * sizeof(int32_t));
    oa_kmeans_config cfg = {.k = k, .iters = 20, .seed = 3, .spherical = spherical};
    oa_error err = {0};
    CHECK_OK(oa_kmeans(x, n, d, d, &cfg, cent, assign, &err));
    /* Every true centre has a learned centre close by (the noise mean of
     * ~500 points is small), and the match is one-to-one. */
    int used[8] = {0};
    for (int t = 0; t < k; t++) {
      int best = -1;
      double bd = 1e9;
      for (int c = 0; c < k; c++) {
        double s = 0;
        for (int j = 0; j < d; j++) {
          double e = cent[c * d + j] - truth[t * d + j];
          s += e * e;
        }
        if (s < bd) {
          bd = s;
          best = c;
        }
      }
      CHECK(bd < 0.01);
      used[best]++;
    }
    for (int c = 0; c < k; c++)
      CHECK(used[c] == 1);
    /* Points assigned to a learned centre all share one true cluster: the
     * assignment agrees with the centre nearest to the truth. */
    int counts[8] = {0};
    for (int i = 0; i < n; i++)
      counts[assign[i]]++;
    for (int c = 0; c < k; c++)
      CHECK(counts[c] > n / k / 2);
    free(assign);
    free(x);
    free(truth);
  }
  /* Duplicated points force empty clusters: every centre still ends with
   * a point (the repair) and the call succeeds. */
  float dup[64 * 4];
  for (int i = 0; i < 64; i++)
    for (int j = 0; j < 4; j++)
      dup[i * 4 + j] = (float)((i % 5) == j);
  float c5[5 * 4];
  int32_t a5[64];
  oa_kmeans_config cfg = {.k = 5, .iters = 5, .seed = 1};
  CHECK_OK(oa_kmeans(dup, 64, 4, 4, &cfg, c5, a5, NULL));
  int seen[5] = {0};
  for (int i = 0; i < 64; i++)
    seen[a5[i]] = 1;
  for (int c = 0; c < 5; c++)
    CHECK(seen[c]);
  cfg.k = 65;
  CHECK(oa_kmeans(dup, 64, 4, 4, &cfg, c5, a5, NULL) == OA_EINVAL);
}

/* The catalog of the recall tests: 20k x 64 around 200 centres. */
#define N  20000
#define D  64
#define NQ 50

static void ivf_recall_reaches_target(void) {
  oa_rng r;
  oa_rng_seed(&r, 11);
  float *x = clustered(&r, N + NQ, D, 200, 1.2, NULL);
  const float *queries = x + (size_t)N * D; /* drawn like the items, not in the store */
  oa_vecstore *vs = store_of(x, N, D);
  const double target = 0.95;
  for (int storage = OA_IVF_F32; storage <= OA_IVF_I8; storage++) {
    oa_ivf_config cfg = {.nlist = 128, .seed = 5, .storage = storage};
    oa_error err = {0};
    oa_ivf *ivf = oa_ivf_build(vs, &cfg, &err);
    CHECK(ivf != NULL);
    if (!ivf) continue;
    CHECK(oa_ivf_count(ivf) == N && oa_ivf_nlist(ivf) == 128 &&
          oa_ivf_staleness(ivf) == 0);
    double rec1 = 0, rec = 0, all = 0;
    CHECK_OK(oa_ivf_recall(ivf, vs, queries, NQ, 10, 1, NULL, NULL, &rec1, &err));
    CHECK_OK(oa_ivf_recall(ivf, vs, queries, NQ, 10, 16, NULL, NULL, &rec, &err));
    CHECK_OK(oa_ivf_recall(ivf, vs, queries, NQ, 10, 128, NULL, NULL, &all, &err));
    printf("  %s: recall@10 %.3f (nprobe 1), %.3f (16), %.3f (all), %.1f B/row\n",
           storage == OA_IVF_I8 ? "i8" : "f32", rec1, rec, all,
           (double)oa_ivf_size_bytes(ivf) / N);
    CHECK(rec >= target);
    CHECK(rec1 < rec);   /* probing more lists finds more */
    CHECK(all >= 0.999); /* every list: exact (int8 re-ranked with 4n candidates) */
    if (storage == OA_IVF_I8) CHECK(oa_ivf_size_bytes(ivf) < (size_t)N * 80);
    /* Scores are exact inner products with the stored vectors, in order. */
    int64_t rows[10];
    float sc[10];
    int32_t cnt = 0;
    CHECK_OK(oa_ivf_search(ivf, vs, queries, 10, 16, NULL, rows, sc, &cnt, &err));
    CHECK(cnt == 10);
    for (int i = 0; i < cnt; i++) {
      float v[D], s = 0;
      oa_vecstore_get(vs, rows[i], v);
      for (int j = 0; j < D; j++)
        s += v[j] * queries[j];
      CHECK_NEAR(sc[i], s, 1e-4);
      if (i) CHECK(sc[i] <= sc[i - 1]);
    }
    oa_ivf_free(ivf);
  }
  oa_vecstore_free(vs);
  free(x);
}

static int only_multiples_of_3(void *ud, const oa_vecstore *vs, int64_t row) {
  (void)vs;
  (*(int *)ud)++;
  return row % 3 == 0;
}

static int only_green(void *ud, const oa_vecstore *vs, int64_t row) {
  (*(int *)ud)++;
  return oa_vecstore_meta_code(vs, row, 0) == oa_vecstore_meta_lookup(vs, 0, "green");
}

static int exact_multiples_of_3(void *ud, const oa_vecstore *vs, const float *q,
                                int32_t n, int64_t *rows, float *scores, int32_t *count,
                                oa_error *err) {
  (void)ud;
  int64_t tmp[3 * 64];
  float ts[3 * 64];
  int32_t c = 0;
  CHECK(n <= 64);
  /* Over-fetch from the plain scan is not enough in general; scan all. */
  int32_t k = 0;
  int rc = oa_ivf_exact_scan(
      NULL, vs, q,
      (int32_t)oa_vecstore_count(vs) < 3 * 64 ? (int32_t)oa_vecstore_count(vs) : 3 * 64,
      tmp, ts, &c, err);
  for (int32_t i = 0; i < c && k < n; i++)
    if (tmp[i] % 3 == 0) {
      rows[k] = tmp[i];
      if (scores) scores[k] = ts[i];
      k++;
    }
  *count = k;
  return rc;
}

static void ivf_filters_and_updates(void) {
  oa_rng r;
  oa_rng_seed(&r, 12);
  int n = 3000, d = 32;
  float *x = clustered(&r, n + 200, d, 30, 0.5, NULL);
  oa_vecstore *vs = store_of(x, n, d);
  oa_ivf_config cfg = {.nlist = 16, .seed = 1, .storage = OA_IVF_I8};
  oa_error err = {0};
  oa_ivf *ivf = oa_ivf_build(vs, &cfg, &err);
  CHECK(ivf != NULL);
  /* Filtered search with every list probed returns exactly the filtered
   * exact top-n, and the filter ran on few rows (only those that would
   * enter the candidate heap). */
  int64_t rows[20], want[20];
  float sc[20], wsc[20];
  int32_t cnt = 0, wcnt = 0;
  int calls = 0;
  const float *q = x + (size_t)n * d;
  CHECK_OK(oa_ivf_search_fn(ivf, vs, q, 20, 16, only_multiples_of_3, &calls, rows, sc,
                            &cnt, &err));
  CHECK_OK(exact_multiples_of_3(NULL, vs, q, 20, want, wsc, &wcnt, &err));
  CHECK(cnt == 20 && wcnt == 20);
  for (int i = 0; i < cnt; i++)
    CHECK(rows[i] % 3 == 0 && rows[i] == want[i]);
  CHECK(calls < n / 2);
  /* Remove a third of the rows from the store and the index: none of them
   * comes back, and the staleness counts the changes. */
  char id[32];
  for (int i = 0; i < n; i += 3) {
    int len = snprintf(id, sizeof id, "a%d", i);
    CHECK_OK(oa_vecstore_remove(vs, id, (size_t)len));
    CHECK_OK(oa_ivf_remove(ivf, i));
  }
  CHECK(oa_ivf_remove(ivf, 0) == OA_ENOTFOUND);
  CHECK(oa_ivf_count(ivf) == n - 1000);
  CHECK_NEAR(oa_ivf_staleness(ivf), 1000.0 / n, 1e-12);
  for (int t = 0; t < 20; t++) {
    CHECK_OK(oa_ivf_search(ivf, vs, x + (size_t)(n + t) * d, 20, 16, NULL, rows, sc, &cnt,
                           &err));
    CHECK(cnt == 20);
    for (int i = 0; i < cnt; i++)
      CHECK(rows[i] % 3 != 0);
  }
  /* New actions (the store may reuse the holes) are found: each is its own
   * best match. An upsert that moves a row is followed by add again. */
  for (int t = 0; t < 100; t++) {
    int len = snprintf(id, sizeof id, "new%d", t);
    const float *v = x + (size_t)(n + 100 + t) * d;
    int64_t row = oa_vecstore_upsert(vs, id, (size_t)len, v, NULL, &err);
    CHECK(row >= 0);
    CHECK_OK(oa_ivf_add(ivf, vs, row, &err));
    CHECK_OK(oa_ivf_search(ivf, vs, v, 1, 2, NULL, rows, sc, &cnt, &err));
    CHECK(cnt == 1 && rows[0] == row);
  }
  CHECK(oa_ivf_count(ivf) == n - 1000 + 100);
  int len = snprintf(id, sizeof id, "a%d", 1);
  CHECK(oa_vecstore_upsert(vs, id, (size_t)len, x + (size_t)(n + 7) * d, NULL, &err) ==
        1);
  CHECK_OK(oa_ivf_add(ivf, vs, 1, &err));
  CHECK(oa_ivf_count(ivf) == n - 1000 + 100);
  CHECK_OK(
      oa_ivf_search(ivf, vs, x + (size_t)(n + 7) * d, 1, 2, NULL, rows, sc, &cnt, &err));
  CHECK(cnt == 1 && rows[0] == 1);
  CHECK_NEAR(oa_ivf_staleness(ivf), 1101.0 / n, 1e-12);
  for (int64_t h = 0; h < n; h += 3)
    if (!oa_vecstore_is_live(vs, h)) { /* a hole the store did not reuse */
      CHECK(oa_ivf_add(ivf, vs, h, &err) == OA_ENOTFOUND);
      break;
    }
  oa_ivf_free(ivf);
  oa_vecstore_free(vs);
  free(x);
}

/* A compiled filter (filter.h) on a categorical field: every row returned
 * passes, and the answer equals the exact filtered answer when every list
 * is probed; a filter compiled before a store change is refused. */
static void ivf_compiled_filters(void) {
  oa_rng r;
  oa_rng_seed(&r, 15);
  int n = 2000, d = 16;
  float *x = clustered(&r, n + 10, d, 20, 0.8, NULL);
  oa_vecstore_config vc = {.dim = d, .format = OA_VEC_F32, .n_meta = 1};
  strcpy(vc.meta[0].name, "color");
  vc.meta[0].kind = OA_META_CAT;
  oa_error err = {0};
  oa_vecstore *vs = oa_vecstore_new(&vc, &err);
  static const char *colors[] = {"red", "green", "blue"};
  char id[32];
  for (int i = 0; i < n; i++) {
    int len = snprintf(id, sizeof id, "a%d", i);
    oa_meta_value mv = {.str = colors[i % 3]};
    CHECK(oa_vecstore_upsert(vs, id, (size_t)len, x + (size_t)i * d, &mv, &err) == i);
  }
  oa_ivf_config cfg = {.nlist = 8, .seed = 2, .storage = OA_IVF_I8};
  oa_ivf *ivf = oa_ivf_build(vs, &cfg, &err);
  oa_filter_pred pred = {.field = "color", .op = OA_PRED_EQ, .value = "green"};
  oa_filter_spec spec = {.preds = &pred, .n_preds = 1};
  oa_filter *f = oa_filter_compile(vs, &spec, &err);
  CHECK(ivf && f);
  int64_t rows[10], want[10];
  float sc[10], wsc[10];
  int32_t cnt = 0, wcnt = 0;
  for (int t = 0; t < 10; t++) {
    const float *q = x + (size_t)(n + t) * d;
    CHECK_OK(oa_ivf_search(ivf, vs, q, 10, 8, f, rows, sc, &cnt, &err));
    int calls = 0;
    CHECK_OK(
        oa_ivf_search_fn(ivf, vs, q, 10, 8, only_green, &calls, want, wsc, &wcnt, &err));
    CHECK(cnt == 10 && wcnt == 10);
    for (int i = 0; i < cnt; i++)
      CHECK(rows[i] % 3 == 1 && rows[i] == want[i]);
  }
  CHECK(oa_vecstore_upsert(vs, "late", 4, x, NULL, &err) >= 0);
  CHECK(oa_ivf_search(ivf, vs, x, 10, 8, f, rows, sc, &cnt, &err) == OA_ESTATE);
  oa_filter_free(f);
  oa_ivf_free(ivf);
  oa_vecstore_free(vs);
  free(x);
}

static void ivf_rejects_bad_arguments(void) {
  oa_rng r;
  oa_rng_seed(&r, 13);
  float *x = clustered(&r, 500, 16, 5, 0.5, NULL);
  oa_vecstore *vs = store_of(x, 500, 16);
  oa_error err = {0};
  oa_ivf_config cfg = {.nlist = 8, .seed = 1};
  oa_ivf *ivf = oa_ivf_build(vs, &cfg, &err);
  CHECK(ivf != NULL);
  int64_t rows[4];
  float sc[4];
  int32_t cnt = 7;
  CHECK(oa_ivf_search(ivf, vs, x, 0, 2, NULL, rows, sc, &cnt, &err) == OA_EINVAL);
  CHECK(cnt == 0);
  CHECK(oa_ivf_search(ivf, vs, x, -3, 2, NULL, rows, sc, &cnt, &err) == OA_EINVAL);
  CHECK(oa_ivf_search(ivf, vs, x, 4, 0, NULL, rows, sc, &cnt, &err) == OA_EINVAL);
  float bad[16];
  memcpy(bad, x, sizeof bad);
  bad[3] = NAN;
  CHECK(oa_ivf_search(ivf, vs, bad, 4, 2, NULL, rows, sc, &cnt, &err) == OA_EINVAL);
  /* A store of another dimension. */
  oa_vecstore *vs8 = store_of(x, 10, 8);
  CHECK(oa_ivf_search(ivf, vs8, x, 4, 2, NULL, rows, sc, &cnt, &err) == OA_EDIM);
  CHECK(oa_ivf_add(ivf, vs8, 0, &err) == OA_EDIM);
  /* nprobe beyond nlist is clamped; n beyond the rows returns them all. */
  CHECK_OK(oa_ivf_search(ivf, vs, x, 4, 1000, NULL, rows, sc, &cnt, &err));
  CHECK(cnt == 4 && rows[0] == 0);
  cfg.nlist = -1;
  CHECK(oa_ivf_build(vs, &cfg, &err) == NULL && err.code == OA_EINVAL);
  cfg.nlist = 4;
  cfg.storage = (oa_ivf_storage)9;
  CHECK(oa_ivf_build(vs, &cfg, &err) == NULL && err.code == OA_EINVAL);
  oa_vecstore_config ec = {.dim = 16};
  oa_vecstore *empty = oa_vecstore_new(&ec, &err);
  cfg.storage = OA_IVF_F32;
  CHECK(oa_ivf_build(empty, &cfg, &err) == NULL && err.code == OA_EINVAL);
  oa_vecstore_free(empty);
  oa_vecstore_free(vs8);
  oa_ivf_free(ivf);
  oa_vecstore_free(vs);
  free(x);
}

static void ivf_save_load_round_trip(void) {
  oa_rng r;
  oa_rng_seed(&r, 14);
  int n = 4000, d = 48; /* not a multiple of 32: padded codes */
  float *x = clustered(&r, n + 20, d, 40, 0.6, NULL);
  oa_vecstore *vs = store_of(x, n, d);
  for (int storage = OA_IVF_F32; storage <= OA_IVF_I8; storage++) {
    oa_error err = {0};
    oa_ivf_config cfg = {.nlist = 32, .seed = 9, .storage = storage};
    oa_ivf *a = oa_ivf_build(vs, &cfg, &err);
    CHECK(a != NULL);
    CHECK_OK(oa_ivf_remove(a, 5)); /* state after an update survives too */
    oa_buf b;
    oa_buf_init(&b);
    CHECK_OK(oa_ivf_save(a, &b));
    oa_reader rd;
    oa_reader_init(&rd, b.data, b.len);
    oa_ivf *c = oa_ivf_load(&rd, &err);
    CHECK(c != NULL);
    if (c) {
      CHECK(oa_ivf_count(c) == oa_ivf_count(a) &&
            oa_ivf_staleness(c) == oa_ivf_staleness(a));
      CHECK(oa_ivf_size_bytes(c) <= oa_ivf_size_bytes(a) + 64 * 1024);
      for (int t = 0; t < 20; t++) {
        int64_t ra[10], rc[10];
        float sa[10], sc[10];
        int32_t na = 0, nc = 0;
        const float *q = x + (size_t)(n + t) * d;
        CHECK_OK(oa_ivf_search(a, vs, q, 10, 4, NULL, ra, sa, &na, &err));
        CHECK_OK(oa_ivf_search(c, vs, q, 10, 4, NULL, rc, sc, &nc, &err));
        CHECK(na == nc && !memcmp(ra, rc, sizeof(int64_t) * na) &&
              !memcmp(sa, sc, sizeof(float) * na));
      }
    }
    /* Truncated or corrupted data is refused, never half-loaded. */
    oa_reader_init(&rd, b.data, b.len / 2);
    CHECK(oa_ivf_load(&rd, &err) == NULL && err.code == OA_EFORMAT);
    oa_reader_init(&rd, b.data, 10);
    CHECK(oa_ivf_load(&rd, &err) == NULL && err.code == OA_EFORMAT);
    oa_buf_free(&b);
    oa_ivf_free(a);
    oa_ivf_free(c);
  }
  oa_vecstore_free(vs);
  free(x);
}

int main(void) {
  RUN(kmeans_recovers_well_separated_centres);
  RUN(ivf_recall_reaches_target);
  RUN(ivf_filters_and_updates);
  RUN(ivf_compiled_filters);
  RUN(ivf_rejects_bad_arguments);
  RUN(ivf_save_load_round_trip);
  return CHECK_DONE();
}
