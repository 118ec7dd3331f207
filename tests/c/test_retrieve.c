/* Two-stage ranking in the engine (runtime/retrieval.h): the retrieval
 * store follows the catalog; decide with retrieve ranks exactly the exact
 * top-N (with filters and excluded ids); the fresh share; bad input is
 * refused and changes nothing; a snapshot round trip rebuilds the store;
 * the approximate index follows updates and a background job (index
 * rebuild, recall) runs on another thread while the loop thread keeps
 * upserting, removing and deciding. Small catalogs: fast under ctest. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/pool.h"
#include "catalog/topn.h"
#include "check.h"
#include "core/error.h"
#include "core/rng.h"
#include "runtime/retrieval.h"
#include "runtime/snapshot.h"

#define DIM 8

static const char *const TOPICS[] = {"music", "news", "sports", "comedy"};

/* Deterministic embedding of item i. */
static void item_vec(int i, double *v) {
  oa_rng r;
  oa_rng_seed(&r, 1000 + (uint64_t)i);
  for (int j = 0; j < DIM; j++)
    v[j] = oa_rng_normal(&r);
}

static int64_t upsert_item(oa_engine *e, int i, oa_error *err) {
  char id[32];
  snprintf(id, sizeof id, "v%d", i);
  double v[DIM];
  item_vec(i, v);
  oa_field f[3] = {
      {"emb", {.type = OA_VAL_VEC, .count = DIM, .vec = v}},
      {"topic", {.type = OA_VAL_STR, .str = TOPICS[i % 4], .len = strlen(TOPICS[i % 4])}},
      {"age", {.type = OA_VAL_NUM, .num = i % 30}},
  };
  return oa_catalog_upsert(oa_engine_catalog(e), id, strlen(id), f, 3, err);
}

static oa_retrieval_config config(void) {
  oa_retrieval_config c;
  memset(&c, 0, sizeof c);
  c.field = "emb";
  c.dim = DIM;
  c.query_field = "user";
  c.n_meta = 2;
  snprintf(c.meta[0].name, sizeof c.meta[0].name, "age");
  c.meta[0].kind = OA_META_NUM;
  snprintf(c.meta[1].name, sizeof c.meta[1].name, "topic");
  c.meta[1].kind = OA_META_CAT;
  return c;
}

/* An engine with policy "p": ridge over a concat space with a context
 * embedding "user" and the action embedding "emb". */
static oa_engine *make_engine(int items) {
  oa_error err;
  oa_engine *e = oa_engine_new(7, &err);
  oa_field_spec fields[3] = {
      {.name = "user", .side = OA_SIDE_CONTEXT, .kind = OA_FK_DENSE, .length = DIM},
      {.name = "emb", .side = OA_SIDE_ACTION, .kind = OA_FK_DENSE, .length = DIM},
      {.name = "topic", .side = OA_SIDE_ACTION, .kind = OA_FK_CAT},
  };
  oa_features_spec fsp = {
      .layout = OA_LAYOUT_CONCAT, .bias = 1, .fields = fields, .n_fields = 3};
  oa_features *fs = oa_features_new(&fsp, &err);
  CHECK(fs != NULL);
  oa_ridge_config rc = {.dim = oa_features_dim(fs)};
  oa_model *m = oa_ridge_new(&rc, &err);
  oa_policy_spec spec = {
      .name = "p",
      .features = fs,
      .model = m,
      .explore = OA_EXPLORE_EGREEDY,
      .params = {
          .epsilon = 0.1, .temperature = 1, .alpha = 1, .gamma = 100, .draws = 16}};
  CHECK_OK(oa_engine_add_policy(e, &spec, &err));
  oa_features_release(fs);
  for (int i = 0; i < items; i++)
    CHECK(upsert_item(e, i, &err) >= 0);
  return e;
}

/* make_engine(items) with retrieval configured; *p gets policy "p". */
static oa_engine *retrieving_engine(int items, oa_policy **p) {
  oa_error err;
  oa_engine *e = make_engine(items);
  oa_retrieval_config c = config();
  CHECK_OK(oa_engine_set_retrieval(e, &c, &err));
  if (p) *p = oa_engine_policy(e, "p");
  return e;
}

static oa_value user_value(const double *u) {
  return (oa_value){.type = OA_VAL_VEC, .count = DIM, .vec = u};
}

/* Brute force: ids of the top n items by <u, v_i> among live items that
 * pass keep(i). */
typedef int (*keep_fn)(int i);
static int all_items(int i) {
  (void)i;
  return 1;
}
static int music_young(int i) {
  return i % 4 == 0 && i % 30 <= 10;
}
static int brute_top(const double *u, int items, const int *removed, keep_fn keep, int n,
                     int *out) {
  float uf[DIM];
  for (int j = 0; j < DIM; j++)
    uf[j] = (float)u[j];
  int cnt = 0;
  double *score = malloc(sizeof(double) * (size_t)items);
  for (int i = 0; i < items; i++) {
    double v[DIM], s = 0;
    item_vec(i, v);
    for (int j = 0; j < DIM; j++)
      s += (double)((float)v[j] * uf[j]);
    score[i] = s;
  }
  for (int k = 0; k < n; k++) {
    int best = -1;
    for (int i = 0; i < items; i++) {
      if ((removed && removed[i]) || !keep(i) || score[i] == -INFINITY) continue;
      if (best < 0 || score[i] > score[best] + 1e-9) best = i;
    }
    if (best < 0) break;
    out[cnt++] = best;
    score[best] = -INFINITY;
  }
  free(score);
  return cnt;
}

static int id_num(const char *id) {
  return atoi(id + 1);
}

static void test_store_follows_catalog(void) {
  oa_error err;
  oa_engine *e = make_engine(20);
  oa_retrieval_config c = config();
  CHECK_OK(oa_engine_set_retrieval(e, &c, &err));
  const oa_vecstore *vs = oa_engine_retrieval_store(e);
  CHECK(oa_vecstore_count(vs) == 20);
  for (int i = 20; i < 30; i++)
    CHECK(upsert_item(e, i, &err) >= 0);
  CHECK(oa_vecstore_count(vs) == 30);
  CHECK_OK(oa_catalog_remove(oa_engine_catalog(e), "v3", 2));
  CHECK(oa_vecstore_find(vs, "v3", 2) < 0);
  CHECK(oa_vecstore_count(vs) == 29);
  /* An action without the embedding is in the catalog, not retrievable. */
  oa_field plain = {"topic", {.type = OA_VAL_STR, .str = "music", .len = 5}};
  CHECK(oa_catalog_upsert(oa_engine_catalog(e), "v4", 2, &plain, 1, &err) >= 0);
  CHECK(oa_vecstore_find(vs, "v4", 2) < 0);
  CHECK(oa_catalog_find(oa_engine_catalog(e), "v4", 2) >= 0);
  /* Wrong dimension: refused, nothing changes (v5 keeps its old vector). */
  double short_v[3] = {1, 2, 3};
  oa_field bad = {"emb", {.type = OA_VAL_VEC, .count = 3, .vec = short_v}};
  uint64_t ver = oa_catalog_version(oa_engine_catalog(e),
                                    oa_catalog_find(oa_engine_catalog(e), "v5", 2));
  CHECK(oa_catalog_upsert(oa_engine_catalog(e), "v5", 2, &bad, 1, &err) == OA_EDIM);
  CHECK(strstr(err.message, "expects 8") != NULL);
  CHECK(oa_catalog_version(oa_engine_catalog(e),
                           oa_catalog_find(oa_engine_catalog(e), "v5", 2)) == ver);
  CHECK(oa_catalog_upsert(oa_engine_catalog(e), "new", 3, &bad, 1, &err) == OA_EDIM);
  CHECK(oa_catalog_find(oa_engine_catalog(e), "new", 3) < 0);
  /* NaN in a vector: refused by the catalog itself. */
  double nan_v[DIM] = {0, NAN};
  oa_field nanf = {"emb", {.type = OA_VAL_VEC, .count = DIM, .vec = nan_v}};
  CHECK(oa_catalog_upsert(oa_engine_catalog(e), "v6", 2, &nanf, 1, &err) == OA_ENUMERIC);
  CHECK(oa_vecstore_find(vs, "v6", 2) >= 0);
  /* A vector too large for a float. */
  double big[DIM] = {1e300};
  oa_field bigf = {"emb", {.type = OA_VAL_VEC, .count = DIM, .vec = big}};
  CHECK(oa_catalog_upsert(oa_engine_catalog(e), "v7", 2, &bigf, 1, &err) == OA_ENUMERIC);
  /* Setting retrieval over a catalog with a bad action fails, changes nothing. */
  CHECK(oa_catalog_upsert(oa_engine_catalog(e), "x", 1, NULL, 0, &err) >= 0);
  oa_retrieval_config c2 = config();
  c2.dim = 4;
  CHECK(oa_engine_set_retrieval(e, &c2, &err) == OA_EDIM);
  CHECK(oa_engine_retrieval_config(e)->dim == DIM);
  CHECK(oa_engine_retrieval_store(e) == vs);
  oa_engine_free(e);
}

static void test_decide_is_exact_top_n(void) {
  oa_error err;
  int items = 300;
  oa_policy *p;
  oa_engine *e = retrieving_engine(items, &p);
  double u[DIM];
  item_vec(9999, u);
  oa_value ctx[1] = {user_value(u)};
  oa_retrieve_request rq = {.n = 20, .mode = OA_RETRIEVE_EXACT, .fresh_share = -1};
  oa_decide_request req = {.context = ctx, .keep_event = 1, .retrieve = &rq};
  oa_decision d;
  CHECK_OK(oa_policy_decide(p, &req, &d, &err));
  int want[20];
  CHECK(brute_top(u, items, NULL, all_items, 20, want) == 20);
  CHECK(d.n == 20 && d.fresh == 0);
  for (int i = 0; i < 20 && i < d.n; i++)
    CHECK(id_num(d.ids[i]) == want[i]);
  double sum = 0;
  for (int i = 0; i < d.n; i++)
    sum += d.prob[i];
  CHECK_NEAR(sum, 1, 1e-9);
  CHECK(oa_engine_pending_events(e) == 1);

  /* Filters (topic = music, 0 <= age <= 10) and excluded ids. */
  const char *topic_vals[1] = {"music"};
  oa_filter_pred preds[2] = {
      {.field = "topic", .op = OA_PRED_IN, .values = topic_vals, .n_values = 1},
      {.field = "age", .op = OA_PRED_RANGE, .lo = 0, .hi = 10},
  };
  int top[10];
  brute_top(u, items, NULL, music_young, 10, top);
  char ex0[16], ex1[16];
  snprintf(ex0, sizeof ex0, "v%d", top[0]);
  snprintf(ex1, sizeof ex1, "v%d", top[3]);
  const char *excl[3] = {ex0, ex1, "no-such-id"};
  oa_filter_spec fsp = {
      .exclude_ids = excl, .n_exclude = 3, .preds = preds, .n_preds = 2};
  rq.filter = &fsp;
  rq.n = 5;
  CHECK_OK(oa_policy_decide(p, &req, &d, &err));
  int removed[300] = {0};
  removed[top[0]] = removed[top[3]] = 1;
  int want2[5];
  int cnt = brute_top(u, items, removed, music_young, 5, want2);
  CHECK(d.n == cnt);
  for (int i = 0; i < cnt && i < d.n; i++)
    CHECK(id_num(d.ids[i]) == want2[i]);

  /* The query from θ: a ridge model that learned "coordinate 0 is good". */
  rq.filter = NULL;
  rq.n = 10;
  oa_value noctx[1] = {{.type = OA_VAL_NONE}};
  for (int k = 0; k < 200; k++) {
    double v[DIM];
    item_vec(k, v);
    char id[16];
    snprintf(id, sizeof id, "v%d", k);
    CHECK_OK(oa_policy_learn(p, noctx, id, NULL, v[0], 1.0, &err));
  }
  oa_shortlist sl;
  CHECK_OK(oa_engine_retrieve(e, p, &rq, noctx, 1, &sl, &err));
  CHECK(!strcmp(sl.query_source, "theta"));
  /* The best items by θ are those with a large first coordinate. */
  double v[DIM];
  item_vec(id_num(sl.ids[0]), v);
  CHECK(v[0] > 1.5);
  /* An explicit query beats the context. */
  float q[DIM] = {0};
  q[1] = 1;
  rq.query = q;
  rq.query_dim = DIM;
  CHECK_OK(oa_engine_retrieve(e, p, &rq, ctx, 1, &sl, &err));
  CHECK(!strcmp(sl.query_source, "request"));
  item_vec(id_num(sl.ids[0]), v);
  CHECK(v[1] > 1.5);
  oa_engine_free(e);
}

static void test_fresh_share(void) {
  oa_error err;
  int items = 200;
  oa_policy *p;
  oa_engine *e = retrieving_engine(items, &p);
  double u[DIM];
  item_vec(4242, u);
  oa_value ctx[1] = {user_value(u)};
  oa_retrieve_request rq = {.n = 20, .mode = OA_RETRIEVE_EXACT, .fresh_share = 0.1};
  oa_shortlist sl;
  CHECK_OK(oa_engine_retrieve(e, p, &rq, ctx, 99, &sl, &err));
  CHECK(sl.n == 20 && sl.fresh == 2);
  int want[20];
  brute_top(u, items, NULL, all_items, 20, want);
  for (int i = 0; i < 18; i++)
    CHECK(id_num(sl.ids[i]) == want[i]);
  /* The fresh picks: not among the top 20, and among the 16 newest items
   * (nothing was shown yet, so recency decides the pool). */
  for (int i = 18; i < 20; i++) {
    int k = id_num(sl.ids[i]);
    for (int j = 0; j < 20; j++)
      CHECK(k != want[j]);
    CHECK(k >= items - 16 - 20);
  }
  /* Same seed, same picks; another seed may differ. */
  char a[2][16];
  snprintf(a[0], 16, "%s", sl.ids[18]);
  snprintf(a[1], 16, "%s", sl.ids[19]);
  CHECK_OK(oa_engine_retrieve(e, p, &rq, ctx, 99, &sl, &err));
  CHECK(!strcmp(a[0], sl.ids[18]) && !strcmp(a[1], sl.ids[19]));
  /* Shown items leave the pool: show the 40 newest items once each; the
   * pool then holds older, never-shown ones. */
  for (int i = items - 40; i < items; i++) {
    char id[16];
    snprintf(id, sizeof id, "v%d", i);
    oa__retrieval_shown(e, id, strlen(id));
  }
  CHECK_OK(oa_engine_retrieve(e, p, &rq, ctx, 5, &sl, &err));
  for (int i = 18; i < 20; i++)
    CHECK(id_num(sl.ids[i]) < items - 40);
  oa_retrieval_stats st = oa_engine_retrieval_stats(e);
  CHECK(st.fresh_picks == 6);
  /* A share so small it rounds up to one slot. */
  rq.fresh_share = 0.001;
  CHECK_OK(oa_engine_retrieve(e, p, &rq, ctx, 5, &sl, &err));
  CHECK(sl.fresh == 1);
  oa_engine_free(e);
}

static void test_errors_change_nothing(void) {
  oa_error err;
  oa_engine *e = make_engine(50);
  oa_policy *p = oa_engine_policy(e, "p");
  double u[DIM] = {1};
  oa_value ctx[1] = {user_value(u)};
  oa_retrieve_request rq = {.n = 10, .fresh_share = -1};
  oa_decide_request req = {.context = ctx, .keep_event = 1, .retrieve = &rq};
  oa_decision d;
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "not configured") != NULL);
  oa_retrieval_config c = config();
  CHECK_OK(oa_engine_set_retrieval(e, &c, &err));
  int bad_n[3] = {0, -3, OA_MAX_CANDIDATES + 1};
  for (int k = 0; k < 3; k++) {
    rq.n = bad_n[k];
    CHECK(oa_policy_decide(p, &req, &d, &err) == OA_EINVAL);
    CHECK(strstr(err.message, "retrieve.n") != NULL);
  }
  rq.n = 10;
  float q[DIM + 1] = {0};
  rq.query = q;
  rq.query_dim = DIM + 1;
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_EDIM);
  rq.query_dim = DIM;
  q[2] = NAN;
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_ENUMERIC);
  rq.query = NULL;
  double u3[3] = {1, 2, 3};
  oa_value ctx3[1] = {{.type = OA_VAL_VEC, .count = 3, .vec = u3}};
  req.context = ctx3;
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_EDIM);
  req.context = ctx;
  oa_filter_pred pr = {.field = "nope", .op = OA_PRED_EQ, .value = "x"};
  oa_filter_spec fsp = {.preds = &pr, .n_preds = 1};
  rq.filter = &fsp;
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_EINVAL);
  pr = (oa_filter_pred){.field = "topic", .op = OA_PRED_EQ, .value = "never-seen"};
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_ENOTFOUND);
  rq.filter = NULL;
  rq.mode = (oa_retrieve_mode)7;
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_EINVAL);
  rq.mode = OA_RETRIEVE_EXACT;
  rq.fresh_share = 1.5;
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_EINVAL);
  CHECK(oa_engine_pending_events(e) == 0);
  CHECK(oa_policy_get_stats(p).decisions == 0);
  oa_retrieval_stats st = oa_engine_retrieval_stats(e);
  CHECK(st.exact == 1 &&
        st.approx == 0); /* only the filter that matched nothing scanned */
  oa_engine_free(e);
}

static void test_snapshot_round_trip(void) {
  oa_error err;
  char dir[] = "/tmp/onearm-retrieve-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  oa_engine *a = make_engine(120);
  oa_retrieval_config c = config();
  CHECK_OK(oa_engine_set_retrieval(a, &c, &err));
  CHECK_OK(oa_catalog_remove(oa_engine_catalog(a), "v10", 3));
  CHECK_OK(oa_snapshot_save(a, dir, "t", &err));

  oa_engine *b = make_engine(0);
  CHECK_OK(oa_engine_set_retrieval(b, &c, &err));
  oa_snapshot_report rep;
  CHECK_OK(oa_snapshot_restore(b, dir, &rep, &err));
  CHECK(oa_vecstore_count(oa_engine_retrieval_store(b)) == 119);
  double u[DIM];
  item_vec(77, u);
  oa_value ctx[1] = {user_value(u)};
  oa_retrieve_request rq = {.n = 15, .fresh_share = -1};
  oa_shortlist sa, sb;
  char ids[15][16];
  CHECK_OK(oa_engine_retrieve(a, oa_engine_policy(a, "p"), &rq, ctx, 1, &sa, &err));
  for (int i = 0; i < sa.n; i++)
    snprintf(ids[i], 16, "%s", sa.ids[i]);
  CHECK_OK(oa_engine_retrieve(b, oa_engine_policy(b, "p"), &rq, ctx, 1, &sb, &err));
  CHECK(sa.n == sb.n);
  for (int i = 0; i < sb.n; i++)
    CHECK(!strcmp(ids[i], sb.ids[i]));
  /* The restored catalog keeps feeding the store. */
  CHECK(upsert_item(b, 500, &err) >= 0);
  CHECK(oa_vecstore_find(oa_engine_retrieval_store(b), "v500", 4) >= 0);
  oa_engine_free(a);
  oa_engine_free(b);
  char path[256];
  snprintf(path, sizeof path, "%s/state.oas", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/state.prev.oas", dir);
  unlink(path);
  rmdir(dir);
}

static void *run_job(void *job) {
  oa_retrieval_job_run(job);
  return NULL;
}

static void test_approximate_and_background_jobs(void) {
  oa_error err;
  int items = 3000;
  oa_policy *p;
  oa_engine *e = retrieving_engine(items, &p);
  /* Recall of approximate against exact, probing every list: exact. */
  oa_retrieve_request ex = {.n = 20, .mode = OA_RETRIEVE_EXACT, .fresh_share = -1};
  oa_retrieve_request ap = {
      .n = 20, .mode = OA_RETRIEVE_APPROX, .nprobe = 1000, .fresh_share = -1};
  double hits = 0, total = 0;
  for (int k = 0; k < 10; k++) {
    double u[DIM];
    item_vec(50000 + k, u);
    oa_value ctx[1] = {user_value(u)};
    oa_shortlist s1, s2;
    char want[20][16];
    CHECK_OK(oa_engine_retrieve(e, p, &ex, ctx, 1, &s1, &err));
    for (int i = 0; i < s1.n; i++)
      snprintf(want[i], 16, "%s", s1.ids[i]);
    CHECK_OK(oa_engine_retrieve(e, p, &ap, ctx, 1, &s2, &err));
    for (int i = 0; i < s2.n; i++)
      for (int j = 0; j < s1.n; j++)
        hits += !strcmp(s2.ids[i], want[j]);
    total += s1.n;
  }
  CHECK(hits / total > 0.99);
  oa_retrieval_stats st = oa_engine_retrieval_stats(e);
  CHECK(st.index_built && st.builds == 1 && st.approx == 10);

  /* New items are found by the index without a rebuild. */
  CHECK(upsert_item(e, 7000, &err) >= 0);
  double u7[DIM];
  item_vec(7000, u7);
  float q[DIM];
  for (int j = 0; j < DIM; j++)
    q[j] = (float)u7[j];
  ap.query = q;
  ap.query_dim = DIM;
  oa_shortlist sl;
  CHECK_OK(oa_engine_retrieve(e, p, &ap, NULL, 1, &sl, &err));
  int found = 0;
  for (int i = 0; i < sl.n; i++)
    found |= !strcmp(sl.ids[i], "v7000");
  CHECK(found);
  ap.query = NULL;

  /* A background job (rebuild + recall) on another thread while this one
   * upserts, removes and decides. */
  CHECK(oa_engine_retrieval_jobs(e) & OA_RETR_JOB_RECALL);
  oa_retrieval_job *job =
      oa_engine_retrieval_job_begin(e, OA_RETR_JOB_BUILD | OA_RETR_JOB_RECALL);
  CHECK(job != NULL);
  pthread_t th;
  pthread_create(&th, NULL, run_job, job);
  int decisions = 0;
  for (int k = 0; k < 200; k++) {
    CHECK(upsert_item(e, 8000 + k, &err) >= 0);
    char id[16];
    snprintf(id, sizeof id, "v%d", k);
    CHECK_OK(oa_catalog_remove(oa_engine_catalog(e), id, strlen(id)));
    double u[DIM];
    item_vec(60000 + k, u);
    oa_value ctx[1] = {user_value(u)};
    oa_retrieve_request rq = {.n = 10,
                              .mode = k % 2 ? OA_RETRIEVE_APPROX : OA_RETRIEVE_EXACT,
                              .fresh_share = 0.2};
    oa_decide_request req = {.context = ctx, .keep_event = 0, .retrieve = &rq};
    oa_decision d;
    CHECK_OK(oa_policy_decide(p, &req, &d, &err));
    for (int i = 0; i < d.n; i++) /* never a removed item */
      CHECK(oa_catalog_find(oa_engine_catalog(e), d.ids[i], strlen(d.ids[i])) >= 0);
    decisions++;
    /* Bad input is still refused while frozen. */
    double s3[3] = {0};
    oa_field bad = {"emb", {.type = OA_VAL_VEC, .count = 3, .vec = s3}};
    CHECK(oa_catalog_upsert(oa_engine_catalog(e), "bad", 3, &bad, 1, &err) == OA_EDIM);
  }
  CHECK(oa_engine_retrieval_job_begin(e, OA_RETR_JOB_BUILD) == NULL); /* one at a time */
  pthread_join(th, NULL);
  oa_engine_retrieval_job_end(e, job);
  st = oa_engine_retrieval_stats(e);
  CHECK(decisions == 200);
  CHECK(st.builds == 2);
  CHECK(st.recall > 0.9 && st.recall <= 1.0);
  CHECK(st.live == items + 1);
  const oa_vecstore *vs = oa_engine_retrieval_store(e);
  CHECK(oa_vecstore_find(vs, "v8199", 5) >= 0);
  CHECK(oa_vecstore_find(vs, "v5", 2) < 0);
  /* After the job, the new index agrees with the exact scan, items added
   * during the job included. */
  double u[DIM];
  item_vec(8150, u);
  for (int j = 0; j < DIM; j++)
    q[j] = (float)u[j];
  ap.query = ex.query = q;
  ex.query_dim = DIM;
  char want[20][16];
  CHECK_OK(oa_engine_retrieve(e, p, &ex, NULL, 1, &sl, &err));
  for (int i = 0; i < sl.n; i++)
    snprintf(want[i], 16, "%s", sl.ids[i]);
  CHECK_OK(oa_engine_retrieve(e, p, &ap, NULL, 1, &sl, &err));
  for (int i = 0; i < sl.n; i++)
    CHECK(!strcmp(sl.ids[i], want[i]));
  oa_buf m;
  oa_buf_init(&m);
  oa_engine_retrieval_metrics(e, &m);
  oa_buf_put(&m, "", 1);
  CHECK(strstr((const char *)m.data, "onearm_retrieval_recall ") != NULL);
  CHECK(strstr((const char *)m.data, "mode=\"approximate\",le=\"+Inf\"") != NULL);
  oa_buf_free(&m);
  oa_engine_free(e);
}

static void *run_scan(void *scan) {
  oa_retrieval_scan_run(scan);
  return NULL;
}

/* Exact scans run on other threads (as the server runs large ones) while
 * this thread removes the best items, adds better ones and keeps deciding:
 * the shortlists never hold an id the catalog lost, and once the scans end
 * the store holds every change and agrees with brute force. */
static void test_scans_off_thread_with_concurrent_changes(void) {
  oa_error err;
  int items = 3000;
  oa_policy *p;
  oa_engine *e = retrieving_engine(items, &p);
  double u[DIM];
  item_vec(42, u); /* item 42 is the best match for its own vector */
  float q[DIM];
  for (int j = 0; j < DIM; j++)
    q[j] = (float)u[j];
  oa_retrieve_request rq = {.n = 20,
                            .mode = OA_RETRIEVE_EXACT,
                            .fresh_share = -1,
                            .query = q,
                            .query_dim = DIM};
  int removed[3000] = {0};
  int top[20];
  CHECK(brute_top(u, items, NULL, all_items, 20, top) == 20);

  oa_retrieval_scan *s1 = oa_engine_retrieve_begin(e, p, &rq, NULL, 1, &err);
  oa_retrieval_scan *s2 = oa_engine_retrieve_begin(e, p, &rq, NULL, 2, &err);
  CHECK(s1 && s2);
  CHECK(!oa_retrieval_scan_heavy(s1)); /* 3000 x 8 floats: inline is cheaper */
  pthread_t t1, t2;
  pthread_create(&t1, NULL, run_scan, s1);
  pthread_create(&t2, NULL, run_scan, s2);
  /* Meanwhile: drop the current top 10 (all the store's best), add a row
   * pointing along the query, and decide (frozen store, inline scans). */
  for (int k = 0; k < 10; k++) {
    char id[16];
    snprintf(id, sizeof id, "v%d", top[k]);
    CHECK_OK(oa_catalog_remove(oa_engine_catalog(e), id, strlen(id)));
    removed[top[k]] = 1;
  }
  double strong[DIM];
  for (int j = 0; j < DIM; j++)
    strong[j] = 10 * u[j];
  oa_field f = {"emb", {.type = OA_VAL_VEC, .count = DIM, .vec = strong}};
  CHECK(oa_catalog_upsert(oa_engine_catalog(e), "strong", 6, &f, 1, &err) >= 0);
  for (int k = 0; k < 50; k++) {
    oa_decide_request req = {.keep_event = 0, .retrieve = &rq};
    oa_decision d;
    CHECK_OK(oa_policy_decide(p, &req, &d, &err));
    for (int i = 0; i < d.n; i++)
      CHECK(oa_catalog_find(oa_engine_catalog(e), d.ids[i], strlen(d.ids[i])) >= 0);
  }
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  /* End in the other order; the first end still sees a frozen store. */
  oa_shortlist sl;
  CHECK_OK(oa_engine_retrieve_end(e, s2, &sl, &err));
  CHECK(sl.n == 10); /* the 20 it found, less the 10 removed meanwhile */
  for (int i = 0; i < sl.n; i++) {
    CHECK(strcmp(sl.ids[i], "strong") != 0); /* added after the scan began */
    CHECK(!removed[id_num(sl.ids[i])]);
    CHECK(id_num(sl.ids[i]) == top[10 + i]);
  }
  CHECK(oa_vecstore_find(oa_engine_retrieval_store(e), "strong", 6) <
        0); /* still frozen */
  CHECK_OK(oa_engine_retrieve_end(e, s1, &sl, &err));
  CHECK(sl.n == 10);
  /* Thawed: the store holds every change; a new scan agrees with brute
   * force plus the strong row first. */
  const oa_vecstore *vs = oa_engine_retrieval_store(e);
  CHECK(oa_vecstore_find(vs, "strong", 6) >= 0);
  CHECK(oa_vecstore_count(vs) == items - 10 + 1);
  CHECK_OK(oa_engine_retrieve(e, p, &rq, NULL, 3, &sl, &err));
  CHECK(!strcmp(sl.ids[0], "strong"));
  int want[19];
  CHECK(brute_top(u, items, removed, all_items, 19, want) == 19);
  for (int i = 1; i < sl.n; i++)
    CHECK(id_num(sl.ids[i]) == want[i - 1]);
  oa_retrieval_stats st = oa_engine_retrieval_stats(e);
  CHECK(st.offloaded == 2);
  CHECK(st.exact == 2 + 50 + 1);
  CHECK(st.jobs_running == 0);
  /* An abandoned scan (out NULL) also thaws the store. */
  oa_retrieval_scan *s3 = oa_engine_retrieve_begin(e, p, &rq, NULL, 4, &err);
  CHECK(s3 != NULL);
  CHECK_OK(oa_catalog_remove(oa_engine_catalog(e), "strong", 6));
  CHECK(oa_vecstore_find(vs, "strong", 6) >= 0);
  CHECK_OK(oa_engine_retrieve_end(e, s3, NULL, &err));
  CHECK(oa_vecstore_find(oa_engine_retrieval_store(e), "strong", 6) < 0);
  /* Bad requests are refused at begin and freeze nothing. */
  rq.n = 0;
  CHECK(oa_engine_retrieve_begin(e, p, &rq, NULL, 5, &err) == NULL &&
        err.code == OA_EINVAL);
  CHECK(oa_engine_retrieval_stats(e).jobs_running == 0);
  oa_engine_free(e);
}

/* Scans batched into one pass give each request exactly its own
 * shortlist; an approximate scan in the batch runs on its own. */
static void test_batched_scans(void) {
  oa_error err;
  oa_policy *p;
  oa_engine *e = retrieving_engine(3000, &p);
  enum { K = 4 };
  float q[K][DIM];
  oa_retrieve_request rq[K];
  for (int k = 0; k < K; k++) {
    double u[DIM];
    item_vec(90000 + k, u);
    for (int j = 0; j < DIM; j++)
      q[k][j] = (float)u[j];
    rq[k] = (oa_retrieve_request){.n = 5 + 10 * k,
                                  .mode = k == 3 ? OA_RETRIEVE_APPROX : OA_RETRIEVE_EXACT,
                                  .nprobe = 1000,
                                  .fresh_share = -1,
                                  .query = q[k],
                                  .query_dim = DIM};
  }
  char want[K][40][16];
  int32_t want_n[K];
  for (int k = 0; k < K; k++) {
    oa_shortlist sl;
    CHECK_OK(oa_engine_retrieve(e, p, &rq[k], NULL, 1, &sl, &err));
    want_n[k] = sl.n;
    for (int i = 0; i < sl.n; i++)
      snprintf(want[k][i], 16, "%s", sl.ids[i]);
  }
  oa_retrieval_scan *scans[K];
  for (int k = 0; k < K; k++)
    CHECK((scans[k] = oa_engine_retrieve_begin(e, p, &rq[k], NULL, 1, &err)) != NULL);
  oa_retrieval_scan_run_many(scans, K);
  for (int k = 0; k < K; k++) {
    oa_shortlist sl;
    CHECK_OK(oa_engine_retrieve_end(e, scans[k], &sl, &err));
    CHECK(sl.n == want_n[k] && sl.n == rq[k].n);
    for (int i = 0; i < sl.n; i++)
      CHECK(!strcmp(sl.ids[i], want[k][i]));
  }
  oa_engine_free(e);
}

int main(void) {
  RUN(test_store_follows_catalog);
  RUN(test_decide_is_exact_top_n);
  RUN(test_fresh_share);
  RUN(test_errors_change_nothing);
  RUN(test_snapshot_round_trip);
  RUN(test_approximate_and_background_jobs);
  RUN(test_scans_off_thread_with_concurrent_changes);
  RUN(test_batched_scans);
  oa_pool_shared_shutdown();
  return CHECK_DONE();
}
