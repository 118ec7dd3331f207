/* Two-stage ranking: the engine's retrieval store (kept in step with the
 * catalog through its change hook), the query for a request, exact and
 * approximate top-N with filters, the fresh share, impressions, and the
 * background jobs that rebuild the IVF index and measure its recall. See
 * retrieval.h for the rules; this file says how. */
#include "runtime/retrieval_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include "core/error.h"
#include "runtime/policy_internal.h"

const double oa_retrieval_hist_le[11] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                         0.01,   0.025,   0.05,   0.1,   0.25};

struct oa_retrieval_job {
  oa__retrieval *r;
  int jobs;
  oa_ivf_config icfg;
  oa_ivf *built;
  float *queries;
  int32_t nq, qn[RECALL_SAMPLES], nprobe;
  double recall;
  int recall_ok;
  oa_error err;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static oa_catalog *cat_of(oa_engine *e) {
  return oa_engine_catalog(e);
}

#define SWAP(T, a, b)                                                                    \
  do {                                                                                   \
    T t_ = (a);                                                                          \
    (a) = (b);                                                                           \
    (b) = t_;                                                                            \
  } while (0)

static void scan_free(oa_retrieval_scan *s);

void oa__retrieval_free(oa__retrieval *r) {
  if (!r) return;
  oa_ivf_free(r->ivf);
  oa_vecstore_free(r->vs);
  free(r->shown), free(r->added), free(r->ring_row), free(r->ring_seq);
  oa_strmap_free(&r->dirty);
  free(r->vec), free(r->q), free(r->basis), free(r->basis_mean);
  oa_buf_free(&r->idbuf);
  scan_free(r->spare);
  free(r->rows), free(r->sorted), free(r->scores), free(r->ids), free(r->lens);
  free(r->heap), free(r->samples);
  free(r);
}

/* ---- the store follows the catalog ---- */

static int grow_rows(oa__retrieval *r, int64_t row, oa_error *err) {
  if (row < r->cap) return 0;
  int64_t cap = r->cap ? r->cap : 1024;
  while (cap <= row)
    cap *= 2;
  uint32_t *s = realloc(r->shown, sizeof *s * (size_t)cap);
  if (s) r->shown = s;
  uint64_t *a = s ? realloc(r->added, sizeof *a * (size_t)cap) : NULL;
  if (!s || !a) return oa_error_set(err, OA_ENOMEM, "out of memory");
  r->added = a;
  memset(r->shown + r->cap, 0, sizeof *s * (size_t)(cap - r->cap));
  memset(r->added + r->cap, 0, sizeof *a * (size_t)(cap - r->cap));
  r->cap = cap;
  return 0;
}

/* The row an action would have: its embedding into r->vec and its
 * metadata. 1 when the action has the embedding field, 0 when it has
 * none (not retrievable), or an error. */
static int row_of(oa__retrieval *r, const char *id, size_t idlen, const oa_field *fields,
                  int32_t n, oa_meta_value *meta, oa_error *err) {
  const oa_value *emb = NULL;
  for (int32_t m = 0; m < r->cfg.n_meta; m++)
    meta[m] = (oa_meta_value){NULL, NAN};
  for (int32_t i = 0; i < n; i++) {
    const char *name = fields[i].name;
    const oa_value *v = &fields[i].value;
    if (!strcmp(name, r->field)) {
      emb = v;
      continue;
    }
    for (int32_t m = 0; m < r->cfg.n_meta; m++) {
      if (strcmp(name, r->cfg.meta[m].name)) continue;
      /* A value of another type is missing for filters (the catalog
       * accepts it; a filter on it simply does not match). */
      if (r->cfg.meta[m].kind == OA_META_CAT && v->type == OA_VAL_STR && v->len &&
          !memchr(v->str, 0, v->len) && v->str[v->len] == 0)
        meta[m].str = v->str;
      else if (r->cfg.meta[m].kind == OA_META_NUM && v->type == OA_VAL_NUM)
        meta[m].num = v->num;
    }
  }
  if (!emb || emb->type == OA_VAL_NONE) return 0;
  if (emb->type != OA_VAL_VEC)
    return oa_error_set(err, OA_EINVAL,
                        "action '%.*s': field '%s' must be a vector of %d numbers for "
                        "retrieval",
                        (int)idlen, id, r->field, r->cfg.dim);
  if (emb->count != r->cfg.dim)
    return oa_error_set(err, OA_EDIM,
                        "action '%.*s': field '%s' has %d numbers; the retrieval store "
                        "expects %d",
                        (int)idlen, id, r->field, emb->count, r->cfg.dim);
  for (int32_t j = 0; j < r->cfg.dim; j++) {
    r->vec[j] = (float)emb->vec[j];
    if (!isfinite(r->vec[j]))
      return oa_error_set(err, OA_ENUMERIC,
                          "action '%.*s': field '%s'[%d] is not a finite float",
                          (int)idlen, id, r->field, j + 1);
  }
  return 1;
}

static void store_remove(oa__retrieval *r, const char *id, size_t idlen) {
  int64_t row = oa_vecstore_find(r->vs, id, idlen);
  if (row < 0) return;
  if (r->ivf) oa_ivf_remove(r->ivf, row);
  oa_vecstore_remove(r->vs, id, idlen);
  r->added[row] = 0;
  r->shown[row] = 0;
}

/* Writes one action into the store (and index); the row was validated. */
static int store_put(oa__retrieval *r, const char *id, size_t idlen,
                     const oa_meta_value *meta, oa_error *err) {
  int64_t before = oa_vecstore_find(r->vs, id, idlen);
  int64_t row = oa_vecstore_upsert(r->vs, id, idlen, r->vec, meta, err);
  if (row < 0) return (int)row;
  if (grow_rows(r, row, err)) {
    if (before < 0) oa_vecstore_remove(r->vs, id, idlen);
    return OA_ENOMEM;
  }
  if (before < 0) {
    r->shown[row] = 0;
    r->added[row] = ++r->seq;
    int64_t at = r->ring_head;
    r->ring_row[at] = row;
    r->ring_seq[at] = r->seq;
    r->ring_head = (at + 1) % OA_RETR_RECENT;
    if (r->ring_len < OA_RETR_RECENT) r->ring_len++;
  }
  if (r->ivf && oa_ivf_add(r->ivf, r->vs, row, err)) {
    /* The index cannot follow (out of memory): drop it; the next
     * approximate request builds a fresh one. */
    oa_ivf_free(r->ivf);
    r->ivf = NULL;
  }
  return 0;
}

/* Upsert (fields) or remove (fields == NULL) in the store now. */
static int apply(oa__retrieval *r, const char *id, size_t idlen, const oa_field *fields,
                 int32_t n, oa_error *err) {
  if (!fields && n < 0) {
    store_remove(r, id, idlen);
    return 0;
  }
  oa_meta_value meta[OA_VEC_MAX_META];
  int rc = row_of(r, id, idlen, fields, n, meta, err);
  if (rc < 0) return rc;
  if (rc == 0) {
    store_remove(r, id, idlen);
    return 0;
  }
  return store_put(r, id, idlen, meta, err);
}

static int on_catalog(void *ud, const char *id, size_t idlen, const oa_field *fields,
                      int32_t n, oa_error *err) {
  oa__retrieval *r = *oa__engine_retrieval(ud);
  if (!r) return 0;
  if (r->readers) {
    /* Frozen: validate now, apply when the last job ends. */
    if (fields || n >= 0) {
      oa_meta_value meta[OA_VEC_MAX_META];
      int rc = row_of(r, id, idlen, fields, n, meta, err);
      if (rc < 0) {
        r->refused++;
        return rc;
      }
    }
    if (oa_strmap_put(&r->dirty, id, idlen, 1))
      return oa_error_set(err, OA_ENOMEM, "out of memory");
    return 0;
  }
  int rc = apply(r, id, idlen, fields, n, err);
  if (rc) r->refused++;
  return rc;
}

/* Loads every catalog action into r's (empty) store. */
int oa__retrieval_load_catalog(oa__retrieval *r, oa_catalog *cat, int strict,
                               oa_error *err) {
  int64_t skipped = 0;
  oa_error first = {0};
  for (int64_t s = oa_catalog_next(cat, -1); s >= 0; s = oa_catalog_next(cat, s)) {
    size_t len;
    const char *id = oa_catalog_id(cat, s, &len);
    int32_t nf;
    const oa_field *f = oa_catalog_fields(cat, s, &nf);
    oa_error e;
    int rc = apply(r, id, len, f, nf, &e);
    if (!rc) continue;
    if (strict) {
      if (err) *err = e;
      return rc;
    }
    if (!skipped++) first = e;
  }
  if (skipped)
    fprintf(stderr, "onearm: retrieval: %lld catalog actions left out (first: %s)\n",
            (long long)skipped, first.message);
  return 0;
}

oa__retrieval *oa__retrieval_new(const oa_retrieval_config *cfg, oa_error *err) {
  if (!cfg || !cfg->field || !cfg->field[0] || strlen(cfg->field) >= 64) {
    oa_error_set(err, OA_EINVAL, "retrieval needs the action's embedding field name");
    return NULL;
  }
  if (cfg->query_field && strlen(cfg->query_field) >= 64) {
    oa_error_set(err, OA_EINVAL, "retrieval query field name is too long");
    return NULL;
  }
  if (cfg->dim < 1 || cfg->dim > 65536) {
    oa_error_set(err, OA_EINVAL, "retrieval dim must be 1 to 65536, got %d", cfg->dim);
    return NULL;
  }
  if (cfg->n < 0 || cfg->n > OA_MAX_CANDIDATES || cfg->nprobe < 0 ||
      !(cfg->fresh_share >= 0 && cfg->fresh_share < 1) || cfg->rebuild_staleness < 0 ||
      (cfg->mode != OA_RETRIEVE_EXACT && cfg->mode != OA_RETRIEVE_APPROX)) {
    oa_error_set(err, OA_EINVAL,
                 "retrieval defaults: n 1..%d, nprobe >= 1, fresh_share in [0, 1), "
                 "mode exact or approximate",
                 OA_MAX_CANDIDATES);
    return NULL;
  }
  oa__retrieval *r = calloc(1, sizeof *r);
  if (!r) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  r->cfg = *cfg;
  snprintf(r->field, sizeof r->field, "%s", cfg->field);
  snprintf(r->query_field, sizeof r->query_field, "%s",
           cfg->query_field ? cfg->query_field : "");
  r->cfg.field = r->field;
  r->cfg.query_field = r->query_field[0] ? r->query_field : NULL;
  if (!r->cfg.n) r->cfg.n = DEFAULT_N;
  if (!r->cfg.nprobe) r->cfg.nprobe = DEFAULT_NPROBE;
  if (!r->cfg.rebuild_staleness) r->cfg.rebuild_staleness = DEFAULT_STALE;
  r->recall = -1;
  oa_strmap_init(&r->dirty);
  oa_vecstore_config vc = {.dim = cfg->dim, .format = cfg->format, .n_meta = cfg->n_meta};
  memcpy(vc.meta, cfg->meta, sizeof vc.meta);
  size_t d = (size_t)cfg->dim;
  r->vec = malloc(sizeof(float) * d);
  r->q = malloc(sizeof(float) * d);
  r->ring_row = malloc(sizeof(int64_t) * OA_RETR_RECENT);
  r->ring_seq = malloc(sizeof(uint64_t) * OA_RETR_RECENT);
  r->rows = malloc(sizeof(int64_t) * OA_MAX_CANDIDATES);
  r->sorted = malloc(sizeof(int64_t) * OA_MAX_CANDIDATES);
  r->scores = malloc(sizeof(float) * OA_MAX_CANDIDATES);
  r->ids = malloc(sizeof(char *) * OA_MAX_CANDIDATES);
  r->lens = malloc(sizeof(size_t) * OA_MAX_CANDIDATES);
  r->heap = malloc(sizeof(fresh_entry) * 4 * OA_MAX_CANDIDATES);
  r->samples = malloc(sizeof(float) * d * RECALL_SAMPLES);
  if (!r->vec || !r->q || !r->ring_row || !r->ring_seq || !r->rows || !r->sorted ||
      !r->scores || !r->ids || !r->lens || !r->heap || !r->samples) {
    oa__retrieval_free(r);
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  if (!(r->vs = oa_vecstore_new(&vc, err))) {
    oa__retrieval_free(r);
    return NULL;
  }
  return r;
}

static int maybe_build(oa__retrieval *r, oa_error *err);

int oa_engine_set_retrieval(oa_engine *e, const oa_retrieval_config *cfg, oa_error *err) {
  oa__retrieval **slot = oa__engine_retrieval(e);
  oa__retrieval *cur = *slot;
  if (cur && cfg && cfg->field && oa_retrieval_config_same_store(&cur->cfg, cfg)) {
    /* The same store (an app reload): keep rows, index and counters; take
     * the query field and the defaults. */
    oa__retrieval *probe = oa__retrieval_new(cfg, err);
    if (!probe) return err ? err->code : OA_EINVAL;
    oa_retrieval_config keep = probe->cfg;
    oa__retrieval_free(probe);
    snprintf(cur->query_field, sizeof cur->query_field, "%s",
             cfg->query_field ? cfg->query_field : "");
    keep.field = cur->field;
    keep.query_field = cur->query_field[0] ? cur->query_field : NULL;
    cur->cfg = keep;
    return 0;
  }
  if (*slot && (*slot)->readers)
    return oa_error_set(err, OA_ESTATE,
                        "a background retrieval job is running; try again when it ends");
  oa__retrieval *r = oa__retrieval_new(cfg, err);
  if (!r) return err ? err->code : OA_EINVAL;
  int rc = oa__retrieval_load_catalog(r, cat_of(e), 1, err);
  if (rc) {
    oa__retrieval_free(r);
    return oa_error_prefix(err, "retrieval");
  }
  if (r->cfg.build_at_rows > 0 && oa_vecstore_count(r->vs) >= r->cfg.build_at_rows)
    maybe_build(r, NULL);
  oa__retrieval_free(*slot);
  *slot = r;
  oa_catalog_set_hook(cat_of(e), on_catalog, e);
  return 0;
}

void oa_engine_clear_retrieval(oa_engine *e) {
  oa__retrieval **slot = oa__engine_retrieval(e);
  if (!*slot || (*slot)->readers) return; /* a running job keeps it alive */
  oa_catalog_set_hook(cat_of(e), NULL, NULL);
  oa__retrieval_free(*slot);
  *slot = NULL;
}

const oa_retrieval_config *oa_engine_retrieval_config(const oa_engine *e) {
  oa__retrieval *r = *oa__engine_retrieval((oa_engine *)e);
  return r ? &r->cfg : NULL;
}

const oa_vecstore *oa_engine_retrieval_store(const oa_engine *e) {
  oa__retrieval *r = *oa__engine_retrieval((oa_engine *)e);
  return r ? r->vs : NULL;
}

int oa_retrieval_config_same_store(const oa_retrieval_config *a,
                                   const oa_retrieval_config *b) {
  if (!a || !b) return a == b;
  if (strcmp(a->field, b->field) || a->dim != b->dim || a->format != b->format ||
      a->n_meta != b->n_meta)
    return 0;
  for (int32_t i = 0; i < a->n_meta; i++)
    if (strcmp(a->meta[i].name, b->meta[i].name) || a->meta[i].kind != b->meta[i].kind)
      return 0;
  return 1;
}

/* A new catalog (snapshot restore): rebuild the store from it. */
void oa__retrieval_catalog_replaced(oa_engine *e) {
  oa__retrieval **slot = oa__engine_retrieval(e);
  oa__retrieval *r = *slot;
  if (!r) return;
  oa_catalog_set_hook(cat_of(e), on_catalog, e);
  if (r->readers) {
    r->resync = 1;
    return;
  }
  oa_error err;
  oa__retrieval *fresh = oa__retrieval_new(&r->cfg, &err);
  if (!fresh) {
    fprintf(stderr, "onearm: retrieval: cannot rebuild the store: %s\n", err.message);
    return;
  }
  oa__retrieval_load_catalog(fresh, cat_of(e), 0, NULL);
  fresh->exact = r->exact, fresh->approx = r->approx, fresh->builds = r->builds;
  fresh->offloaded = r->offloaded;
  /* The last shortlist stays readable (a scan that ended just now made it). */
  SWAP(const char **, fresh->ids, r->ids);
  SWAP(size_t *, fresh->lens, r->lens);
  SWAP(float *, fresh->scores, r->scores);
  SWAP(oa_buf, fresh->idbuf, r->idbuf);
  oa__retrieval_free(r);
  *slot = fresh;
  if (fresh->cfg.build_at_rows > 0 &&
      oa_vecstore_count(fresh->vs) >= fresh->cfg.build_at_rows)
    maybe_build(fresh, NULL);
}

/* ---- one request ---- */

/* θ's slice for the action embedding block, by scoring the unit rows of
 * that block: for a linear model mean(e_j) = θ_j. 1 when it applies. */
static int theta_query(oa__retrieval *r, oa_policy *p, oa_error *err) {
  oa_model *m = oa_policy_model(p);
  oa_features *fs = oa_policy_features(p);
  if (strcmp(m->ops->kind, "ridge") || oa_features_layout(fs) != OA_LAYOUT_CONCAT)
    return 0;
  int32_t slot = oa_features_slot(fs, OA_SIDE_ACTION, r->field);
  if (slot < 0) return 0;
  const oa_field_spec *fsp = oa_features_field(fs, OA_SIDE_ACTION, slot);
  if (fsp->kind != OA_FK_DENSE || fsp->length != r->cfg.dim) return 0;
  int32_t off, width;
  if (oa_features_block(fs, OA_SIDE_ACTION, slot, &off, &width) || width != r->cfg.dim)
    return 0;
  int32_t d = m->dim, k = r->cfg.dim;
  size_t need = (size_t)d * (size_t)k;
  double *basis = calloc(need, sizeof *basis);
  double *mean = malloc(sizeof *mean * (size_t)k);
  if (!basis || !mean) {
    free(basis), free(mean);
    return oa_error_set(err, OA_ENOMEM, "out of memory");
  }
  for (int32_t j = 0; j < k; j++)
    basis[(size_t)j * d + off + j] = 1.0;
  oa_batch b = {basis, d, k, d, NULL};
  int rc = oa_model_score(m, &b, mean, NULL, err);
  for (int32_t j = 0; !rc && j < k; j++)
    r->q[j] = (float)mean[j];
  free(basis), free(mean);
  return rc ? rc : 1;
}

static int make_query(oa__retrieval *r, oa_policy *p, const oa_retrieve_request *rq,
                      const oa_value *ctx, const char **source, oa_error *err) {
  int32_t dim = r->cfg.dim;
  if (rq->query) {
    if (rq->query_dim != dim)
      return oa_error_set(
          err, OA_EDIM, "the retrieval query has %d numbers; the store's vectors have %d",
          rq->query_dim, dim);
    for (int32_t j = 0; j < dim; j++)
      if (!isfinite(rq->query[j]))
        return oa_error_set(err, OA_ENUMERIC, "the retrieval query[%d] is not finite",
                            j + 1);
    memcpy(r->q, rq->query, sizeof(float) * (size_t)dim);
    *source = "request";
    return 0;
  }
  oa_features *fs = oa_policy_features(p);
  if (r->cfg.query_field && ctx) {
    int32_t slot = oa_features_slot(fs, OA_SIDE_CONTEXT, r->cfg.query_field);
    const oa_value *v = slot >= 0 ? &ctx[slot] : NULL;
    if (v && v->type == OA_VAL_VEC) {
      if (v->count != dim)
        return oa_error_set(err, OA_EDIM,
                            "context field '%s' has %d numbers; the retrieval store's "
                            "vectors have %d",
                            r->cfg.query_field, v->count, dim);
      for (int32_t j = 0; j < dim; j++) {
        r->q[j] = (float)v->vec[j];
        if (!isfinite(r->q[j]))
          return oa_error_set(err, OA_ENUMERIC, "context field '%s'[%d] is not finite",
                              r->cfg.query_field, j + 1);
      }
      *source = "context";
      return 0;
    }
  }
  int rc = theta_query(r, p, err);
  if (rc < 0) return rc;
  if (rc == 1) {
    *source = "theta";
    return 0;
  }
  return oa_error_set(err, OA_EINVAL,
                      "retrieval needs a query vector: give retrieve.query, a context "
                      "field '%s', or use a ridge policy over a concat layout with "
                      "action field '%s'",
                      r->cfg.query_field ? r->cfg.query_field : "(none configured)",
                      r->field);
}

static int hist_bucket(double s) {
  int b = 0;
  while (b < N_HIST - 1 && s > oa_retrieval_hist_le[b])
    b++;
  return b;
}

static int cmp_row(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* a is "worse" than b for the fresh pool: shown more, or shown as often
 * and added earlier. */
static int worse(const fresh_entry *a, const fresh_entry *b) {
  return a->shown != b->shown ? a->shown > b->shown : a->seq < b->seq;
}

static void heap_sift_down(fresh_entry *h, int32_t n, int32_t i) {
  for (;;) {
    int32_t l = 2 * i + 1, w = i;
    if (l < n && worse(&h[l], &h[w])) w = l;
    if (l + 1 < n && worse(&h[l + 1], &h[w])) w = l + 1;
    if (w == i) return;
    fresh_entry t = h[i];
    h[i] = h[w], h[w] = t;
    i = w;
  }
}

/* The store is frozen and the catalog changed meanwhile: the store may
 * still hold actions the catalog lost. */
static int held_changes(const oa__retrieval *r) {
  return r->dirty.count > 0 || r->resync;
}

/* Picks up to m fresh rows (see retrieval.h) not among the count rows in
 * r->rows; returns how many, written to out. */
static int32_t fresh_pick(oa__retrieval *r, oa_engine *e, const oa_filter *filter,
                          int32_t count, int32_t m, uint64_t seed, int64_t *out) {
  int32_t k = 4 * m > FRESH_POOL_MIN ? 4 * m : FRESH_POOL_MIN;
  if (k > 4 * OA_MAX_CANDIDATES) k = 4 * OA_MAX_CANDIDATES;
  memcpy(r->sorted, r->rows, sizeof(int64_t) * (size_t)count);
  qsort(r->sorted, (size_t)count, sizeof(int64_t), cmp_row);
  fresh_entry *h = r->heap;
  int32_t size = 0;
  for (int64_t i = 0; i < r->ring_len; i++) {
    int64_t at = (r->ring_head - 1 - i + OA_RETR_RECENT) % OA_RETR_RECENT;
    int64_t row = r->ring_row[at];
    if (row >= r->cap || r->added[row] != r->ring_seq[at]) continue; /* gone */
    fresh_entry c = {r->shown[row], r->ring_seq[at], row};
    if (size == k && !worse(&h[0], &c)) continue; /* not better than the worst kept */
    if (!oa_vecstore_is_live(r->vs, row)) continue;
    if (filter && !oa_filter_pass(filter, r->vs, row)) continue;
    if (bsearch(&row, r->sorted, (size_t)count, sizeof(int64_t), cmp_row)) continue;
    if (held_changes(r)) {
      const char *id = oa_vecstore_id(r->vs, row);
      if (!id || oa_catalog_find(cat_of(e), id, strlen(id)) < 0) continue;
    }
    if (size < k) {
      h[size++] = c;
      for (int32_t j = size - 1; j > 0;) { /* sift up */
        int32_t p = (j - 1) / 2;
        if (!worse(&h[j], &h[p])) break;
        fresh_entry t = h[j];
        h[j] = h[p], h[p] = t;
        j = p;
      }
    } else {
      h[0] = c;
      heap_sift_down(h, size, 0);
    }
    /* Newest first: once even the worst kept was never shown, every older
     * row loses to it (shown at least as often, added earlier). */
    if (size == k && h[0].shown == 0) break;
  }
  /* Draw m of the pool uniformly without replacement. The pool's order
   * (a heap) depends only on the data, so the draw is reproducible. */
  oa_rng rng;
  oa_rng_seed(&rng, seed ^ 0x66726573685f7069ULL);
  int32_t take = m < size ? m : size;
  for (int32_t i = 0; i < take; i++) {
    int32_t j = i + (int32_t)oa_rng_below(&rng, (uint64_t)(size - i));
    fresh_entry t = h[i];
    h[i] = h[j], h[j] = t;
    out[i] = h[i].row;
  }
  return take;
}

static int maybe_build(oa__retrieval *r, oa_error *err) {
  oa_ivf_config ic = {.seed = 0x1f5eedULL, .storage = r->cfg.ivf_storage};
  oa_ivf *ivf = oa_ivf_build(r->vs, &ic, err);
  if (!ivf) return err ? err->code : OA_ENOMEM;
  oa_ivf_free(r->ivf);
  r->ivf = ivf;
  r->builds++;
  return 0;
}

int oa_engine_retrieval_build_index(oa_engine *e, oa_error *err) {
  oa__retrieval *r = *oa__engine_retrieval(e);
  if (!r) return oa_error_set(err, OA_EINVAL, "retrieval is not configured");
  if (r->readers)
    return oa_error_set(err, OA_ESTATE, "a background retrieval job is running");
  return maybe_build(r, err);
}

/* One retrieval in flight: what begin decided, what run found. */
struct oa_retrieval_scan {
  oa__retrieval *r;
  oa_filter *filter;
  float *q; /* the query (dim floats) */
  const char *source;
  int32_t n, nprobe;
  int approx;
  double share;
  uint64_t seed;
  pthread_t owner; /* the thread that began it (to count offloads) */
  int offloaded;
  oa_topn_result res; /* run's rows and scores, best first */
  double seconds;
  int rc;
  oa_error err;
};

static void scan_free(oa_retrieval_scan *s) {
  if (!s) return;
  oa_filter_free(s->filter);
  oa_topn_result_free(&s->res);
  free(s->q);
  free(s);
}

/* A scan for r: the one kept from the last request when there is one (the
 * synchronous path then allocates nothing), else a new one. */
static oa_retrieval_scan *scan_take(oa__retrieval *r, oa_error *err) {
  oa_retrieval_scan *s = r->spare;
  if (s) {
    r->spare = NULL;
  } else {
    s = calloc(1, sizeof *s);
    if (s && !(s->q = malloc(sizeof(float) * (size_t)r->cfg.dim))) {
      free(s);
      s = NULL;
    }
    if (!s) {
      oa_error_set(err, OA_ENOMEM, "out of memory");
      return NULL;
    }
    oa_topn_result_init(&s->res);
  }
  s->r = r;
  s->filter = NULL;
  s->rc = 0;
  s->offloaded = 0;
  s->seconds = 0;
  s->res.count = 0;
  s->owner = pthread_self();
  return s;
}

static void scan_release(oa__retrieval *r, oa_retrieval_scan *s) {
  oa_filter_free(s->filter);
  s->filter = NULL;
  if (r->spare)
    scan_free(s);
  else
    r->spare = s;
}

oa_retrieval_scan *oa_engine_retrieve_begin(oa_engine *e, oa_policy *p,
                                            const oa_retrieve_request *rq,
                                            const oa_value *ctx, uint64_t seed,
                                            oa_error *err) {
  oa__retrieval *r = *oa__engine_retrieval(e);
  if (!r) {
    oa_error_set(err, OA_EINVAL,
                 "retrieval is not configured for this engine (the app's "
                 "retrieve = {field = ..., dim = ...})");
    return NULL;
  }
  int32_t n = rq->n;
  if (n < 1 || n > OA_MAX_CANDIDATES) {
    oa_error_set(err, OA_EINVAL, "retrieve.n must be 1 to %d, got %d", OA_MAX_CANDIDATES,
                 n);
    return NULL;
  }
  if (rq->mode != OA_RETRIEVE_EXACT && rq->mode != OA_RETRIEVE_APPROX) {
    oa_error_set(err, OA_EINVAL, "retrieve.mode must be exact or approximate");
    return NULL;
  }
  double share = rq->fresh_share < 0 ? r->cfg.fresh_share : rq->fresh_share;
  if (!(share >= 0 && share < 1)) {
    oa_error_set(err, OA_EINVAL, "retrieve.fresh_share must be in [0, 1), got %g", share);
    return NULL;
  }
  if (rq->nprobe < 0) {
    oa_error_set(err, OA_EINVAL, "retrieve.nprobe must be >= 1, got %d", rq->nprobe);
    return NULL;
  }
  const char *source = NULL;
  if (make_query(r, p, rq, ctx, &source, err)) return NULL;
  oa_filter *filter = NULL;
  if (rq->filter && !(filter = oa_filter_compile(r->vs, rq->filter, err))) {
    oa_error_prefix(err, "retrieve filters");
    return NULL;
  }
  int approx = rq->mode == OA_RETRIEVE_APPROX;
  /* While the index is being built in the background, approximate
   * requests are answered exactly rather than block on a second build. */
  if (approx && !r->ivf && r->readers) approx = 0;
  if (approx && !r->ivf && oa_vecstore_count(r->vs) > 0 && maybe_build(r, err)) {
    oa_filter_free(filter);
    return NULL;
  }
  oa_retrieval_scan *s = scan_take(r, err);
  if (!s) {
    oa_filter_free(filter);
    return NULL;
  }
  memcpy(s->q, r->q, sizeof(float) * (size_t)r->cfg.dim);
  s->filter = filter;
  s->source = source;
  s->n = n;
  s->nprobe = rq->nprobe > 0 ? rq->nprobe : r->cfg.nprobe;
  s->approx = approx && r->ivf;
  s->share = share;
  s->seed = seed;
  r->readers++; /* frozen until _end */
  return s;
}

int oa_retrieval_scan_heavy(const oa_retrieval_scan *s) {
  if (s->approx) return 0; /* the index may be swapped by a job's end: loop thread */
  const oa_vecstore *vs = s->r->vs;
  return (double)oa_vecstore_rows(vs) * (double)oa_vecstore_stride(vs) >=
         OA_RETR_OFFLOAD_BYTES;
}

void oa_retrieval_scan_run(oa_retrieval_scan *s) {
  oa__retrieval *r = s->r;
  s->offloaded = !pthread_equal(pthread_self(), s->owner);
  double t0 = now_s();
  if (s->approx) {
    /* The IVF search writes into the result's arrays: make room. */
    if (s->res.cap < s->n) {
      oa_topn_result_free(&s->res);
      s->res.rows = malloc(sizeof(int64_t) * OA_MAX_CANDIDATES);
      s->res.scores = malloc(sizeof(float) * OA_MAX_CANDIDATES);
      if (!s->res.rows || !s->res.scores) {
        oa_topn_result_free(&s->res);
        s->rc = oa_error_set(&s->err, OA_ENOMEM, "out of memory");
        return;
      }
      s->res.cap = OA_MAX_CANDIDATES;
    }
    s->rc = oa_ivf_search(r->ivf, r->vs, s->q, s->n, s->nprobe, s->filter, s->res.rows,
                          s->res.scores, &s->res.count, &s->err);
  } else if (oa_vecstore_count(r->vs) == 0) {
    s->res.count = 0;
  } else {
    s->rc = oa_topn_exact(r->vs, s->q, s->n, s->filter, 0, &s->res, &s->err);
  }
  s->seconds = now_s() - t0;
}

void oa_retrieval_scan_run_many(oa_retrieval_scan **scans, int32_t count) {
  /* Exact scans of one store go together (one pass over the matrix);
   * anything else runs on its own. */
  int32_t k = 0;
  for (int32_t i = 0; i < count; i++)
    if (!scans[i]->approx && oa_vecstore_count(scans[i]->r->vs) > 0 &&
        scans[i]->r == scans[0]->r)
      k++;
  oa_retrieval_scan **group = k > 1 ? malloc(sizeof *group * (size_t)k) : NULL;
  const float **qs = group ? malloc(sizeof *qs * (size_t)k) : NULL;
  const oa_filter **fs = group ? malloc(sizeof *fs * (size_t)k) : NULL;
  int32_t *ns = group ? malloc(sizeof *ns * (size_t)k) : NULL;
  oa_topn_result *res = group ? malloc(sizeof *res * (size_t)k) : NULL;
  int *rcs = group ? malloc(sizeof *rcs * (size_t)k) : NULL;
  oa_error *errs = group ? malloc(sizeof *errs * (size_t)k) : NULL;
  if (!qs || !fs || !ns || !res || !rcs || !errs) k = 0; /* one by one instead */
  int32_t g = 0;
  for (int32_t i = 0; i < count; i++) {
    oa_retrieval_scan *s = scans[i];
    if (k > 1 && !s->approx && oa_vecstore_count(s->r->vs) > 0 && s->r == scans[0]->r) {
      group[g] = s, qs[g] = s->q, fs[g] = s->filter, ns[g] = s->n, res[g] = s->res;
      s->offloaded = !pthread_equal(pthread_self(), s->owner);
      g++;
    } else {
      oa_retrieval_scan_run(s);
    }
  }
  if (g > 1) {
    double t0 = now_s();
    int rc = oa_topn_exact_many(scans[0]->r->vs, g, qs, ns, fs, 0, res, rcs, errs);
    double dt = now_s() - t0;
    for (int32_t i = 0; i < g; i++) {
      oa_retrieval_scan *s = group[i];
      s->res = res[i]; /* the arrays may have grown */
      s->seconds = dt;
      s->rc = rc ? oa_error_set(&s->err, OA_ENOMEM, "out of memory for a batch scan")
                 : rcs[i];
      if (!rc && rcs[i]) s->err = errs[i];
    }
  }
  free(group), free(qs), free(fs), free(ns), free(res), free(rcs), free(errs);
}

/* The last reader is gone: apply what the catalog did meanwhile, from the
 * catalog itself (or rebuild from a replaced catalog). */
void oa__retrieval_apply_held(oa_engine *e, oa__retrieval *r) {
  if (r->readers) return;
  if (r->resync) {
    r->resync = 0;
    oa__retrieval_catalog_replaced(e);
    return;
  }
  if (!r->dirty.count) return;
  size_t pos = 0;
  const char *id;
  size_t len;
  int64_t v;
  oa_catalog *cat = cat_of(e);
  while (oa_strmap_next(&r->dirty, &pos, &id, &len, &v)) {
    int64_t s = oa_catalog_find(cat, id, len);
    int32_t nf = -1;
    const oa_field *f = s >= 0 ? oa_catalog_fields(cat, s, &nf) : NULL;
    oa_error err;
    if (apply(r, id, len, f, s >= 0 ? nf : -1, &err))
      fprintf(stderr, "onearm: retrieval: action '%.*s' left out: %s\n", (int)len, id,
              err.message);
  }
  oa_strmap_free(&r->dirty);
  oa_strmap_init(&r->dirty);
}

/* The shortlist from a finished scan, while the store is still frozen:
 * rows the catalog lost meanwhile dropped, fresh picks added, ids copied
 * (they must outlive the thaw that may free the store's copies). */
static int shortlist(oa_engine *e, oa__retrieval *r, oa_retrieval_scan *s,
                     oa_shortlist *out, oa_error *err) {
  if (s->rc) {
    if (err) *err = s->err;
    return s->rc;
  }
  int32_t count = s->res.count, n = s->n;
  if (s->approx) {
    r->approx++, r->approx_s += s->seconds, r->approx_hist[hist_bucket(s->seconds)]++;
    if (!s->filter && r->since_sample++ % RECALL_EVERY == 0) {
      int32_t at = r->n_samples < RECALL_SAMPLES ? r->n_samples++
                                                 : (int32_t)(r->approx % RECALL_SAMPLES);
      memcpy(r->samples + (size_t)at * r->cfg.dim, s->q, sizeof(float) * r->cfg.dim);
      r->sample_n[at] = n;
    }
  } else {
    r->exact++, r->exact_s += s->seconds, r->exact_hist[hist_bucket(s->seconds)]++;
  }
  if (s->offloaded) r->offloaded++;
  /* Changes held back while frozen: the store may still hold actions the
   * catalog lost. */
  int held = held_changes(r);
  int32_t k = 0;
  for (int32_t i = 0; i < count; i++) {
    if (held) {
      const char *id = oa_vecstore_id(r->vs, s->res.rows[i]);
      if (!id || oa_catalog_find(cat_of(e), id, strlen(id)) < 0) continue;
    }
    r->rows[k] = s->res.rows[i], r->scores[k++] = s->res.scores[i];
  }
  count = k;
  int32_t fresh = 0;
  int32_t m = s->share > 0 ? (int32_t)ceil(s->share * n) : 0;
  if (m > n) m = n;
  if (m > 0) {
    int64_t picks[OA_MAX_CANDIDATES];
    fresh = fresh_pick(r, e, s->filter, count, m, s->seed, picks);
    /* Fresh picks take the last slots of a full shortlist, or extend a
     * short one up to n. */
    int32_t keep = count + fresh <= n ? count : n - fresh;
    for (int32_t i = 0; i < fresh; i++) {
      r->rows[keep + i] = picks[i];
      oa_topn_score_rows(r->vs, s->q, &picks[i], 0, 1, &r->scores[keep + i], NULL);
    }
    count = keep + fresh;
    r->fresh_picks += (uint64_t)fresh;
  }
  if (count == 0)
    return oa_error_set(err, OA_ENOTFOUND, "retrieval found no eligible action%s",
                        s->filter ? " (every action was filtered out)" : "");
  r->idbuf.len = 0;
  for (int32_t i = 0; i < count; i++) {
    const char *id = oa_vecstore_id(r->vs, r->rows[i]);
    r->lens[i] = strlen(id);
    oa_buf_put(&r->idbuf, id, r->lens[i] + 1);
  }
  if (r->idbuf.failed) {
    r->idbuf.failed = 0;
    return oa_error_set(err, OA_ENOMEM, "out of memory");
  }
  for (size_t i = 0, at = 0; i < (size_t)count; at += r->lens[i++] + 1)
    r->ids[i] = (const char *)r->idbuf.data + at;
  out->n = count;
  out->fresh = fresh;
  out->ids = r->ids;
  out->lens = r->lens;
  out->scores = r->scores;
  out->query_source = s->source;
  return 0;
}

int oa_engine_retrieve_end(oa_engine *e, oa_retrieval_scan *s, oa_shortlist *out,
                           oa_error *err) {
  oa__retrieval *r = s->r;
  int rc = out ? shortlist(e, r, s, out, err) : 0;
  r->readers--;
  scan_release(r, s);
  /* The state may have been replaced while the scan ran (a reconfigured
   * store waits for readers, so r is still the engine's). */
  oa__retrieval_apply_held(e, r);
  return rc;
}

int oa_engine_retrieve(oa_engine *e, oa_policy *p, const oa_retrieve_request *rq,
                       const oa_value *ctx, uint64_t seed, oa_shortlist *out,
                       oa_error *err) {
  oa_retrieval_scan *s = oa_engine_retrieve_begin(e, p, rq, ctx, seed, err);
  if (!s) return err ? err->code : OA_EINVAL;
  oa_retrieval_scan_run(s);
  return oa_engine_retrieve_end(e, s, out, err);
}

void oa__retrieval_shown(oa_engine *e, const char *id, size_t len) {
  oa__retrieval *r = *oa__engine_retrieval(e);
  if (!r) return;
  int64_t row = oa_vecstore_find(r->vs, id, len);
  if (row >= 0 && row < r->cap && r->shown[row] < UINT32_MAX) r->shown[row]++;
}

/* ---- background jobs ---- */

int oa_engine_retrieval_jobs(const oa_engine *e) {
  oa__retrieval *r = *oa__engine_retrieval((oa_engine *)e);
  if (!r || r->readers) return 0;
  int jobs = 0;
  int64_t live = oa_vecstore_count(r->vs);
  if (r->ivf ? oa_ivf_staleness(r->ivf) > r->cfg.rebuild_staleness
             : (r->cfg.build_at_rows > 0 && live >= r->cfg.build_at_rows))
    jobs |= OA_RETR_JOB_BUILD;
  if (r->ivf && r->n_samples > 0) jobs |= OA_RETR_JOB_RECALL;
  return jobs;
}

oa_retrieval_job *oa_engine_retrieval_job_begin(oa_engine *e, int jobs) {
  oa__retrieval *r = *oa__engine_retrieval(e);
  if (!r || r->readers || !jobs) return NULL;
  if ((jobs & OA_RETR_JOB_RECALL) && (!r->ivf || !r->n_samples))
    jobs &= ~OA_RETR_JOB_RECALL;
  if ((jobs & OA_RETR_JOB_BUILD) && !oa_vecstore_count(r->vs)) jobs &= ~OA_RETR_JOB_BUILD;
  if (!jobs) return NULL;
  oa_retrieval_job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->r = r;
  j->jobs = jobs;
  j->icfg =
      (oa_ivf_config){.seed = 0x1f5eedULL + r->builds, .storage = r->cfg.ivf_storage};
  if (jobs & OA_RETR_JOB_RECALL) {
    size_t bytes = sizeof(float) * (size_t)r->cfg.dim * (size_t)r->n_samples;
    if (!(j->queries = malloc(bytes))) {
      free(j);
      return NULL;
    }
    memcpy(j->queries, r->samples, bytes);
    memcpy(j->qn, r->sample_n, sizeof j->qn);
    j->nq = r->n_samples;
    j->nprobe = r->cfg.nprobe;
    r->n_samples = 0;
  }
  r->readers++;
  return j;
}

void oa_retrieval_job_run(oa_retrieval_job *j) {
  oa__retrieval *r = j->r;
  if (j->jobs & OA_RETR_JOB_RECALL) {
    /* Against the index in use now (before a rebuild replaces it). */
    double sum = 0;
    int32_t ok = 0;
    for (int32_t i = 0; i < j->nq; i++) {
      double rec;
      if (oa_ivf_recall(r->ivf, r->vs, j->queries + (size_t)i * r->cfg.dim, 1, j->qn[i],
                        j->nprobe, NULL, NULL, &rec, &j->err) == 0)
        sum += rec, ok++;
    }
    if (ok) j->recall = sum / ok, j->recall_ok = ok;
  }
  if (j->jobs & OA_RETR_JOB_BUILD) j->built = oa_ivf_build(r->vs, &j->icfg, &j->err);
}

void oa_engine_retrieval_job_end(oa_engine *e, oa_retrieval_job *j) {
  oa__retrieval *r = j->r;
  r->readers--;
  if (j->recall_ok) {
    r->recall = j->recall;
    r->recall_queries += (uint64_t)j->recall_ok;
  }
  if (j->built) {
    oa_ivf_free(r->ivf);
    r->ivf = j->built;
    r->builds++;
  } else if (j->jobs & OA_RETR_JOB_BUILD) {
    fprintf(stderr, "onearm: retrieval: index build failed: %s\n", j->err.message);
  }
  free(j->queries);
  free(j);
  oa__retrieval_apply_held(e, r);
}

/* ---- statistics ---- */

oa_retrieval_stats oa_engine_retrieval_stats(const oa_engine *e) {
  oa_retrieval_stats s;
  memset(&s, 0, sizeof s);
  s.recall = -1;
  oa__retrieval *r = *oa__engine_retrieval((oa_engine *)e);
  if (!r) return s;
  s.configured = 1;
  s.rows = oa_vecstore_rows(r->vs);
  s.live = oa_vecstore_count(r->vs);
  s.exact = r->exact, s.approx = r->approx, s.fresh_picks = r->fresh_picks;
  s.refused = r->refused;
  s.offloaded = r->offloaded;
  s.exact_seconds = r->exact_s, s.approx_seconds = r->approx_s;
  memcpy(s.exact_hist, r->exact_hist, sizeof s.exact_hist);
  memcpy(s.approx_hist, r->approx_hist, sizeof s.approx_hist);
  s.index_built = r->ivf != NULL;
  s.nlist = r->ivf ? oa_ivf_nlist(r->ivf) : 0;
  s.staleness = r->ivf ? oa_ivf_staleness(r->ivf) : 0;
  s.builds = r->builds;
  s.recall = r->recall;
  s.recall_queries = r->recall_queries;
  s.jobs_running = r->readers;
  return s;
}

static void put(oa_buf *b, const char *s) {
  oa_buf_put(b, s, strlen(s));
}

static void putf(oa_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(oa_buf *b, const char *fmt, ...) {
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n > 0) oa_buf_put(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void put_hist(oa_buf *b, const char *mode, const uint64_t *h, uint64_t count,
                     double sum) {
  uint64_t cum = 0;
  for (int i = 0; i < N_HIST - 1; i++) {
    cum += h[i];
    putf(b, "onearm_retrieval_seconds_bucket{mode=\"%s\",le=\"%g\"} %llu\n", mode,
         oa_retrieval_hist_le[i], (unsigned long long)cum);
  }
  putf(b, "onearm_retrieval_seconds_bucket{mode=\"%s\",le=\"+Inf\"} %llu\n", mode,
       (unsigned long long)count);
  putf(b, "onearm_retrieval_seconds_sum{mode=\"%s\"} %.9g\n", mode, sum);
  putf(b, "onearm_retrieval_seconds_count{mode=\"%s\"} %llu\n", mode,
       (unsigned long long)count);
}

void oa_engine_retrieval_metrics(const oa_engine *e, oa_buf *out) {
  oa_retrieval_stats s = oa_engine_retrieval_stats(e);
  if (!s.configured) return;
  put(out, "# HELP onearm_retrieval_items Actions in the retrieval store.\n"
           "# TYPE onearm_retrieval_items gauge\n");
  putf(out, "onearm_retrieval_items %lld\n", (long long)s.live);
  put(out, "# HELP onearm_retrieval_seconds Time to retrieve a shortlist.\n"
           "# TYPE onearm_retrieval_seconds histogram\n");
  put_hist(out, "exact", s.exact_hist, s.exact, s.exact_seconds);
  put_hist(out, "approximate", s.approx_hist, s.approx, s.approx_seconds);
  put(out, "# HELP onearm_retrieval_recall Mean recall@n of approximate retrieval "
           "against exact, on sampled recent queries (-1: not measured yet).\n"
           "# TYPE onearm_retrieval_recall gauge\n");
  putf(out, "onearm_retrieval_recall %.6g\n", s.recall);
  put(out, "# HELP onearm_retrieval_recall_queries Queries the recall was measured on.\n"
           "# TYPE onearm_retrieval_recall_queries counter\n");
  putf(out, "onearm_retrieval_recall_queries %llu\n",
       (unsigned long long)s.recall_queries);
  put(out, "# HELP onearm_retrieval_index_staleness Share of rows changed since the IVF "
           "index was built.\n# TYPE onearm_retrieval_index_staleness gauge\n");
  putf(out, "onearm_retrieval_index_staleness %.6g\n", s.staleness);
  put(out, "# HELP onearm_retrieval_index_builds IVF index builds.\n"
           "# TYPE onearm_retrieval_index_builds counter\n");
  putf(out, "onearm_retrieval_index_builds %llu\n", (unsigned long long)s.builds);
  put(out, "# HELP onearm_retrieval_fresh_picks Shortlist slots given to fresh items.\n"
           "# TYPE onearm_retrieval_fresh_picks counter\n");
  putf(out, "onearm_retrieval_fresh_picks %llu\n", (unsigned long long)s.fresh_picks);
  put(out, "# HELP onearm_retrieval_offloaded Exact scans run off the event loop.\n"
           "# TYPE onearm_retrieval_offloaded counter\n");
  putf(out, "onearm_retrieval_offloaded %llu\n", (unsigned long long)s.offloaded);
}
