/* Exact top-N: equals a brute-force reference (sorted by score, then row)
 * on random catalogs of several sizes and every format, with ties,
 * filters, holes, N beyond the catalog; bad arguments; thread counts and
 * concurrent callers give identical results. */
#include "catalog/filter.h"
#include "catalog/pool.h"
#include "catalog/topn.h"
#include "check.h"
#include "core/rng.h"

#include <pthread.h>
#include <string.h>

typedef struct ref_item {
  double score;
  int64_t row;
} ref_item;

static int ref_cmp(const void *a, const void *b) {
  const ref_item *x = a, *y = b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  return (x->row > y->row) - (x->row < y->row);
}

typedef int (*row_pred)(const oa_vecstore *vs, int64_t row, void *ud);

/* Reference: score every live row that passes pred over the decoded
 * vector, in double, and sort. Returns the number of eligible rows. */
static int64_t brute_force(const oa_vecstore *vs, const float *q, row_pred pred, void *ud,
                           ref_item *out) {
  int32_t d = oa_vecstore_config_of(vs)->dim;
  float v[256];
  int64_t n = 0;
  for (int64_t r = 0; r < oa_vecstore_rows(vs); r++) {
    if (oa_vecstore_get(vs, r, v)) continue;
    if (pred && !pred(vs, r, ud)) continue;
    double s = 0;
    for (int i = 0; i < d; i++)
      s += (double)v[i] * q[i];
    out[n++] = (ref_item){s, r};
  }
  qsort(out, (size_t)n, sizeof *out, ref_cmp);
  return n;
}

static oa_vecstore *make_store(int32_t dim, oa_vec_format fmt) {
  oa_vecstore_config cfg = {.dim = dim, .format = fmt, .n_meta = 2};
  strcpy(cfg.meta[0].name, "topic");
  cfg.meta[0].kind = OA_META_CAT;
  strcpy(cfg.meta[1].name, "age");
  cfg.meta[1].kind = OA_META_NUM;
  return oa_vecstore_new(&cfg, NULL);
}

static const char *topics[] = {"sports", "music", "news", "games"};

/* Rows with small integer values (exact float sums, many ties) or
 * normal floats; every 4th row has no topic, every 5th no age. */
static void fill(oa_vecstore *vs, oa_rng *rng, int64_t n, int integers) {
  int32_t d = oa_vecstore_config_of(vs)->dim;
  float v[256];
  char id[32];
  for (int64_t i = 0; i < n; i++) {
    for (int k = 0; k < d; k++)
      v[k] =
          integers ? (float)((int)oa_rng_below(rng, 7) - 3) : (float)oa_rng_normal(rng);
    snprintf(id, sizeof id, "a%lld", (long long)i);
    oa_meta_value m[2] = {{i % 4 == 3 ? NULL : topics[oa_rng_below(rng, 4)], 0},
                          {NULL, i % 5 == 4 ? NAN : (double)oa_rng_below(rng, 100)}};
    oa_vecstore_upsert(vs, id, strlen(id), v, m, NULL);
  }
}

static void random_query(oa_rng *rng, float *q, int d, int integers) {
  for (int k = 0; k < d; k++)
    q[k] = integers ? (float)((int)oa_rng_below(rng, 7) - 3) : (float)oa_rng_normal(rng);
}

/* Compare a result with the reference: exact (rows and scores) when the
 * arithmetic is exact, else scores within tol and every returned row a
 * legitimate member (its own reference score matches, no duplicates). */
static int matches(const oa_topn_result *res, const ref_item *ref, int64_t eligible,
                   int32_t n, int exact, double tol) {
  int64_t want = eligible < n ? eligible : n;
  if (res->count != want) {
    fprintf(stderr, "count %d, want %lld\n", res->count, (long long)want);
    return 0;
  }
  for (int32_t i = 0; i < res->count; i++) {
    if (exact) {
      if (res->rows[i] != ref[i].row || res->scores[i] != ref[i].score) {
        fprintf(stderr, "at %d: row %lld score %g, want row %lld score %g\n", i,
                (long long)res->rows[i], res->scores[i], (long long)ref[i].row,
                ref[i].score);
        return 0;
      }
      continue;
    }
    if (fabs(res->scores[i] - ref[i].score) > tol) return 0;
    if (i && res->scores[i] > res->scores[i - 1]) return 0;
    int found = 0;
    for (int64_t k = 0; k < eligible && !found; k++)
      if (ref[k].row == res->rows[i]) found = fabs(ref[k].score - res->scores[i]) <= tol;
    if (!found) return 0;
    for (int32_t j = 0; j < i; j++)
      if (res->rows[j] == res->rows[i]) return 0;
  }
  return 1;
}

static void exact_equals_brute_force(void) {
  oa_rng rng;
  oa_rng_seed(&rng, 1);
  int64_t sizes[] = {0, 1, 7, 8, 9, 100, 4095, 4097, 9000};
  /* 32, 64 and 128 take the scan's fixed-length loops, the others the
   * general one; 32 in I8 has rows shorter than the 64-byte stride. */
  int32_t dims[] = {1, 8, 13, 32, 64, 128};
  int32_t ns[] = {1, 5, 100, 20000};
  ref_item *ref = malloc(9000 * sizeof *ref);
  oa_topn_result res;
  oa_topn_result_init(&res);
  float q[128];
  int failures = 0;
  for (int f = 0; f < 3; f++)
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
      for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        int integers = f != OA_VEC_I8;
        oa_vecstore *vs = make_store(dims[di], (oa_vec_format)f);
        fill(vs, &rng, sizes[si], integers);
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
          random_query(&rng, q, dims[di], integers);
          int64_t el = brute_force(vs, q, NULL, NULL, ref);
          oa_error err = {0};
          int rc = oa_topn_exact(vs, q, ns[ni], NULL, 1, &res, &err);
          CHECK_OK(rc);
          if (!matches(&res, ref, el, ns[ni], integers, 1e-4 * dims[di])) {
            fprintf(stderr, "format %d size %lld dim %d n %d\n", f, (long long)sizes[si],
                    dims[di], ns[ni]);
            failures++;
          }
        }
        oa_vecstore_free(vs);
      }
  CHECK(failures == 0);
  oa_topn_result_free(&res);
  free(ref);
}

static void ties_break_by_row(void) {
  oa_vecstore *vs = make_store(4, OA_VEC_F32);
  float v[4] = {1, 1, 0, 0}, w[4] = {2, 0, 0, 0}, u[4] = {0, 0, 0, 1};
  char id[16];
  for (int i = 0; i < 50; i++) {
    snprintf(id, sizeof id, "t%d", i);
    oa_vecstore_upsert(vs, id, strlen(id),
                       i % 3 == 0   ? w
                       : i % 3 == 1 ? v
                                    : u,
                       NULL, NULL);
  }
  float q[4] = {1, 1, 0, 0};
  oa_topn_result res;
  oa_topn_result_init(&res);
  CHECK_OK(oa_topn_exact(vs, q, 20, NULL, 1, &res, NULL));
  /* Rows 0,1,3,4,6,7,... score 2; in row order. */
  int64_t expect = 0;
  for (int i = 0; i < 20; i++) {
    if (expect % 3 == 2) expect++;
    CHECK(res.rows[i] == expect && res.scores[i] == 2);
    expect++;
  }
  oa_topn_result_free(&res);
  oa_vecstore_free(vs);
}

typedef struct pred_case {
  int32_t topic_eq, topic_ne; /* codes, -9 = unused */
  uint8_t in[4];
  int use_in;
  double lo, hi;
  int use_range;
  int64_t *excluded;
  int n_excluded;
} pred_case;

static int ref_pred(const oa_vecstore *vs, int64_t row, void *ud) {
  const pred_case *p = ud;
  int32_t code = oa_vecstore_meta_code(vs, row, 0);
  float age = oa_vecstore_meta_num(vs, row, 1);
  if (p->topic_eq != -9 && code != p->topic_eq) return 0;
  if (p->topic_ne != -9 && code == p->topic_ne) return 0;
  if (p->use_in && (code < 0 || !p->in[code])) return 0;
  if (p->use_range && !(age >= p->lo && age <= p->hi)) return 0;
  for (int i = 0; i < p->n_excluded; i++)
    if (p->excluded[i] == row) return 0;
  return 1;
}

static void filters_and_holes(void) {
  oa_rng rng;
  oa_rng_seed(&rng, 5);
  ref_item *ref = malloc(12000 * sizeof *ref);
  oa_topn_result res;
  oa_topn_result_init(&res);
  float q[16];
  char id[32];
  int failures = 0;
  for (int f = 0; f < 3; f++) {
    oa_vecstore *vs = make_store(16, (oa_vec_format)f);
    fill(vs, &rng, 12000, f != OA_VEC_I8);
    /* Holes: remove a third, then reinsert a few into them. */
    for (int i = 0; i < 12000; i += 3) {
      snprintf(id, sizeof id, "a%d", i);
      oa_vecstore_remove(vs, id, strlen(id));
    }
    float v[16];
    for (int i = 0; i < 200; i++) {
      random_query(&rng, v, 16, f != OA_VEC_I8);
      snprintf(id, sizeof id, "new%d", i);
      oa_vecstore_upsert(vs, id, strlen(id), v, NULL, NULL);
    }
    CHECK(oa_vecstore_rows(vs) == 12000);
    for (int t = 0; t < 12; t++) {
      random_query(&rng, q, 16, f != OA_VEC_I8);
      pred_case pc = {.topic_eq = -9, .topic_ne = -9};
      oa_filter_pred preds[3];
      int np = 0;
      const char *in_vals[3] = {"music", "nonexistent", "games"};
      if (t % 4 == 0) {
        preds[np++] =
            (oa_filter_pred){.field = "topic", .op = OA_PRED_EQ, .value = "news"};
        pc.topic_eq = oa_vecstore_meta_lookup(vs, 0, "news");
      }
      if (t % 4 == 1) {
        preds[np++] =
            (oa_filter_pred){.field = "topic", .op = OA_PRED_NE, .value = "sports"};
        pc.topic_ne = oa_vecstore_meta_lookup(vs, 0, "sports");
      }
      if (t % 4 == 2) {
        preds[np++] = (oa_filter_pred){
            .field = "topic", .op = OA_PRED_IN, .values = in_vals, .n_values = 3};
        pc.use_in = 1;
        pc.in[oa_vecstore_meta_lookup(vs, 0, "music")] = 1;
        pc.in[oa_vecstore_meta_lookup(vs, 0, "games")] = 1;
      }
      if (t % 3 == 0) {
        preds[np++] =
            (oa_filter_pred){.field = "age", .op = OA_PRED_RANGE, .lo = 10, .hi = 30};
        pc.use_range = 1;
        pc.lo = 10;
        pc.hi = 30;
      }
      /* Exclude the unfiltered best rows, ids never seen, removed ids. */
      const char *ex[40];
      char exbuf[40][32];
      int64_t exrows[40];
      int nex = 0;
      if (t % 2 == 0) {
        oa_topn_exact(vs, q, 30, NULL, 1, &res, NULL);
        for (int i = 0; i < res.count; i += 2) {
          strcpy(exbuf[nex], oa_vecstore_id(vs, res.rows[i]));
          exrows[pc.n_excluded++] = res.rows[i];
          ex[nex] = exbuf[nex];
          nex++;
        }
        ex[nex++] = "never-seen";
        ex[nex++] = "a0"; /* removed */
      }
      pc.excluded = exrows;
      oa_filter_spec spec = {
          .exclude_ids = ex, .n_exclude = nex, .preds = preds, .n_preds = np};
      oa_error err = {0};
      oa_filter *flt = oa_filter_compile(vs, &spec, &err);
      CHECK(flt != NULL);
      if (!flt) {
        fprintf(stderr, "%s\n", err.message);
        continue;
      }
      CHECK(oa_filter_excluded(flt) == pc.n_excluded);
      int64_t el = brute_force(vs, q, ref_pred, &pc, ref);
      for (int threads = 1; threads <= 2; threads++) {
        CHECK_OK(oa_topn_exact(vs, q, 50, flt, threads, &res, &err));
        if (!matches(&res, ref, el, 50, f != OA_VEC_I8, 2e-3)) {
          fprintf(stderr, "filter case %d format %d threads %d\n", t, f, threads);
          failures++;
        }
      }
      oa_filter_free(flt);
    }
    oa_vecstore_free(vs);
  }
  CHECK(failures == 0);
  free(ref);
  oa_topn_result_free(&res);
}

static void bad_arguments_are_rejected(void) {
  oa_rng rng;
  oa_rng_seed(&rng, 9);
  oa_vecstore *vs = make_store(8, OA_VEC_F32);
  fill(vs, &rng, 100, 0);
  oa_topn_result res;
  oa_topn_result_init(&res);
  float q[8] = {1, 0, 0, 0, 0, 0, 0, 0};
  CHECK_OK(oa_topn_exact(vs, q, 3, NULL, 1, &res, NULL));
  int64_t first = res.rows[0];
  oa_error err = {0};
  CHECK(oa_topn_exact(vs, q, 0, NULL, 1, &res, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "N >= 1") != NULL);
  CHECK(oa_topn_exact(vs, q, -5, NULL, 1, &res, &err) == OA_EINVAL);
  q[3] = NAN;
  CHECK(oa_topn_exact(vs, q, 3, NULL, 1, &res, &err) == OA_ENUMERIC);
  CHECK(oa_topn_exact(vs, NULL, 3, NULL, 1, &res, &err) == OA_EINVAL);
  q[3] = 0;
  /* out is unchanged by a refused call. */
  CHECK(res.count == 3 && res.rows[0] == first);
  /* A filter from before a change is refused. */
  oa_filter *flt = oa_filter_compile(vs, NULL, NULL);
  oa_vecstore_remove(vs, "a1", 2);
  CHECK(oa_topn_exact(vs, q, 3, flt, 1, &res, &err) == OA_ESTATE);
  oa_filter_free(flt);
  /* Bad filter specs. */
  oa_filter_pred p = {.field = "nope", .op = OA_PRED_EQ, .value = "x"};
  oa_filter_spec spec = {.preds = &p, .n_preds = 1};
  CHECK(oa_filter_compile(vs, &spec, &err) == NULL && strstr(err.message, "nope"));
  p = (oa_filter_pred){.field = "age", .op = OA_PRED_EQ, .value = "x"};
  CHECK(oa_filter_compile(vs, &spec, &err) == NULL && strstr(err.message, "numeric"));
  p = (oa_filter_pred){.field = "age", .op = OA_PRED_RANGE, .lo = 5, .hi = 1};
  CHECK(oa_filter_compile(vs, &spec, &err) == NULL && strstr(err.message, "range"));
  p = (oa_filter_pred){.field = "topic", .op = OA_PRED_EQ};
  CHECK(oa_filter_compile(vs, &spec, &err) == NULL);
  /* A value never seen: EQ matches nothing, NE everything. */
  p = (oa_filter_pred){.field = "topic", .op = OA_PRED_EQ, .value = "unheard-of"};
  flt = oa_filter_compile(vs, &spec, &err);
  CHECK_OK(oa_topn_exact(vs, q, 10, flt, 1, &res, &err));
  CHECK(res.count == 0);
  oa_filter_free(flt);
  p.op = OA_PRED_NE;
  flt = oa_filter_compile(vs, &spec, &err);
  CHECK_OK(oa_topn_exact(vs, q, 1000, flt, 1, &res, &err));
  CHECK(res.count == 99);
  oa_filter_free(flt);
  oa_topn_result_free(&res);
  oa_vecstore_free(vs);
}

static void threads_give_identical_results(void) {
  oa_rng rng;
  oa_rng_seed(&rng, 21);
  float q[64];
  oa_topn_result a, b;
  oa_topn_result_init(&a);
  oa_topn_result_init(&b);
  /* Every format with a dim of the general loop (48) and of a fixed one. */
  for (int fd = 0; fd < 6; fd++) {
    int f = fd % 3, dim = fd < 3 ? 48 : 64;
    oa_vecstore *vs = make_store(dim, (oa_vec_format)f);
    fill(vs, &rng, 60000, 0);
    for (int i = 0; i < 60000; i += 7) {
      char id[32];
      snprintf(id, sizeof id, "a%d", i);
      oa_vecstore_remove(vs, id, strlen(id));
    }
    for (int t = 0; t < 3; t++) {
      random_query(&rng, q, dim, 0);
      CHECK_OK(oa_topn_exact(vs, q, 100, NULL, 1, &a, NULL));
      for (int threads = 0; threads <= 4; threads++) {
        CHECK_OK(oa_topn_exact(vs, q, 100, NULL, threads, &b, NULL));
        CHECK(a.count == 100 && b.count == a.count);
        CHECK(!memcmp(a.rows, b.rows, (size_t)a.count * sizeof *a.rows));
        CHECK(!memcmp(a.scores, b.scores, (size_t)a.count * sizeof *a.scores));
      }
    }
    /* The scoring helper agrees with the scan, by range and by row list. */
    float *s = malloc(60000 * sizeof *s);
    CHECK_OK(oa_topn_score_rows(vs, q, NULL, 0, 60000, s, NULL));
    for (int i = 0; i < a.count; i++)
      CHECK(s[a.rows[i]] == a.scores[i]);
    CHECK_OK(oa_topn_score_rows(vs, q, a.rows, 0, a.count, s, NULL));
    CHECK(!memcmp(s, a.scores, (size_t)a.count * sizeof *s));
    CHECK(oa_topn_score_rows(vs, q, NULL, 59999, 2, s, NULL) == OA_EINVAL);
    /* The heap selects the same from scores fed in reverse order. */
    CHECK_OK(oa_topn_score_rows(vs, q, NULL, 0, 60000, s, NULL));
    oa_topn_heap h;
    CHECK_OK(oa_topn_heap_init(&h, 100));
    for (int64_t r = 59999; r >= 0; r--)
      if (oa_vecstore_is_live(vs, r)) oa_topn_heap_push(&h, s[r], r);
    CHECK_OK(oa_topn_heap_finish(&h, &b, NULL));
    CHECK(!memcmp(a.rows, b.rows, (size_t)a.count * sizeof *a.rows));
    oa_topn_heap_free(&h);
    free(s);
    oa_vecstore_free(vs);
  }
  oa_topn_result_free(&a);
  oa_topn_result_free(&b);
}

typedef struct caller {
  const oa_vecstore *vs;
  const float *q;
  const oa_topn_result *want;
  int bad;
} caller;

static void *caller_main(void *arg) {
  caller *c = arg;
  oa_topn_result r;
  oa_topn_result_init(&r);
  for (int i = 0; i < 20; i++) {
    if (oa_topn_exact(c->vs, c->q, 100, NULL, 2, &r, NULL) || r.count != c->want->count ||
        memcmp(r.rows, c->want->rows, (size_t)r.count * sizeof *r.rows))
      c->bad++;
  }
  oa_topn_result_free(&r);
  return NULL;
}

static void count_task(void *ud, int task) {
  ((int *)ud)[task]++;
}

/* libuv's thread pool calls the scan from several threads at once. */
static void concurrent_callers_share_the_pool(void) {
  oa_rng rng;
  oa_rng_seed(&rng, 33);
  oa_vecstore *vs = make_store(32, OA_VEC_F16);
  fill(vs, &rng, 40000, 0);
  float q[32];
  random_query(&rng, q, 32, 0);
  oa_topn_result want;
  oa_topn_result_init(&want);
  CHECK_OK(oa_topn_exact(vs, q, 100, NULL, 1, &want, NULL));
  pthread_t th[4];
  caller c[4];
  for (int i = 0; i < 4; i++) {
    c[i] = (caller){vs, q, &want, 0};
    pthread_create(&th[i], NULL, caller_main, &c[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    CHECK(c[i].bad == 0);
  }
  oa_topn_result_free(&want);
  oa_vecstore_free(vs);
  /* A private pool runs every task exactly once. */
  oa_pool *p = oa_pool_new(3, NULL);
  CHECK(oa_pool_threads(p) == 3);
  int hits[1000] = {0};
  oa_pool_run(p, 1000, 0, count_task, hits);
  int once = 1;
  for (int i = 0; i < 1000; i++)
    once &= hits[i] == 1;
  CHECK(once);
  oa_pool_free(p);
  oa_pool_shared_shutdown();
}

/* Many queries in one pass give each query exactly its single scan, for
 * every format, thread count, n and filter; a bad query fails alone. */
static void many_queries_match_single_scans(void) {
  oa_rng rng;
  oa_rng_seed(&rng, 33);
  enum { NQ = 6 };
  float qs[NQ][64];
  const float *qp[NQ];
  int32_t n[NQ] = {100, 1, 37, 100, 250, 10};
  oa_topn_result res[NQ], one;
  oa_topn_result_init(&one);
  for (int i = 0; i < NQ; i++)
    oa_topn_result_init(&res[i]);
  for (int f = 0; f < 3; f++) {
    oa_vecstore *vs = make_store(64, (oa_vec_format)f);
    fill(vs, &rng, 50000, 0);
    for (int i = 0; i < 50000; i += 11) {
      char id[32];
      snprintf(id, sizeof id, "a%d", i);
      oa_vecstore_remove(vs, id, strlen(id));
    }
    const char *music = "music";
    oa_filter_pred p = {.field = "topic", .op = OA_PRED_EQ, .value = music};
    oa_filter_spec spec = {.preds = &p, .n_preds = 1};
    oa_filter *flt = oa_filter_compile(vs, &spec, NULL);
    CHECK(flt != NULL);
    const oa_filter *filters[NQ] = {NULL, NULL, flt, NULL, flt, NULL};
    for (int i = 0; i < NQ; i++) {
      random_query(&rng, qs[i], 64, 0);
      qp[i] = qs[i];
    }
    qs[5][3] = NAN; /* fails alone */
    for (int threads = 1; threads <= 3; threads++) {
      int rcs[NQ];
      oa_error errs[NQ];
      CHECK_OK(oa_topn_exact_many(vs, NQ, qp, n, filters, threads, res, rcs, errs));
      for (int i = 0; i < NQ; i++) {
        if (i == 5) {
          CHECK(rcs[i] == OA_ENUMERIC && strstr(errs[i].message, "not finite"));
          continue;
        }
        CHECK(rcs[i] == 0);
        CHECK_OK(oa_topn_exact(vs, qp[i], n[i], filters[i], 1, &one, NULL));
        CHECK(res[i].count == one.count && one.count == n[i]);
        CHECK(!memcmp(res[i].rows, one.rows, (size_t)one.count * sizeof *one.rows));
        CHECK(!memcmp(res[i].scores, one.scores, (size_t)one.count * sizeof *one.scores));
      }
    }
    oa_filter_free(flt);
    oa_vecstore_free(vs);
  }
  for (int i = 0; i < NQ; i++)
    oa_topn_result_free(&res[i]);
  oa_topn_result_free(&one);
}

int main(void) {
  RUN(exact_equals_brute_force);
  RUN(ties_break_by_row);
  RUN(filters_and_holes);
  RUN(bad_arguments_are_rejected);
  RUN(threads_give_identical_results);
  RUN(many_queries_match_single_scans);
  RUN(concurrent_callers_share_the_pool);
  return CHECK_DONE();
}
