/* IVF index: spherical k-means coarse clusters, per-list contiguous copies
 * of the vectors (float or int8 codes), nprobe search with exact
 * re-ranking of int8 candidates. See ivf.h for the design.
 *
 * Serialized form (oa_ivf_save), little-endian:
 *   header "IVFX" version 1
 *   u32 dim, u32 nlist, u32 storage, u32 rerank, u32 stride
 *   u64 rows at build, u64 changes since build
 *   nlist * dim f32 centroids
 *   per list: u32 n, then n * stride code bytes (int8) or n * stride f32,
 *             n f32 scales (I8 only), n i32 rows
 * The row -> list map is rebuilt on load. */
#include "catalog/ivf.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define IVF_AVX2 1
#endif

#include "catalog/filter.h"
#include "catalog/kmeans.h"
#include "core/error.h"
#include "core/tensor.h"

/* One inverted list. Capacity is a multiple of 8 and the tail beyond n is
 * zero, so the scan kernels always run whole blocks of 8 rows. */
typedef struct ivf_list {
  int32_t n, cap;
  void *codes;   /* cap * stride int8 (I8) or float (F32), 64-byte aligned */
  float *scales; /* I8: cap scales */
  int32_t *rows; /* cap row ids */
} ivf_list;

struct oa_ivf {
  int32_t dim, nlist, stride, rerank;
  oa_ivf_storage storage;
  float *centroids; /* nlist * dim, unit norm */
  ivf_list *lists;
  int32_t *where; /* row -> list, -1 when not indexed */
  int64_t where_cap, count, built_count, changes;
};

/* ---- kernels ------------------------------------------------------------ */

/* Scores of 8 consecutive rows of a list into out[0..7]. F32: codes are
 * floats with stride a multiple of 8. I8: codes are int8 with stride a
 * multiple of 32; qabs holds |q| and qsgn the quantised query q, so that
 * sign(c, q) * |q| = c * q fits the unsigned x signed byte product
 * (maddubs) without saturation (|c|, |q| <= 127). */
static void scan8_f32(const float *codes, int32_t stride, const float *q, float *out) {
#ifdef IVF_AVX2
  __m256 acc[8];
  for (int v = 0; v < 8; v++)
    acc[v] = _mm256_setzero_ps();
  for (int32_t j = 0; j < stride; j += 8) {
    __m256 qj = _mm256_load_ps(q + j);
    for (int v = 0; v < 8; v++)
      acc[v] =
          _mm256_fmadd_ps(_mm256_load_ps(codes + (size_t)v * stride + j), qj, acc[v]);
  }
  __m256 t0 = _mm256_hadd_ps(acc[0], acc[1]), t1 = _mm256_hadd_ps(acc[2], acc[3]);
  __m256 t2 = _mm256_hadd_ps(acc[4], acc[5]), t3 = _mm256_hadd_ps(acc[6], acc[7]);
  __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  __m256 r = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                           _mm256_permute2f128_ps(u0, u1, 0x31));
  _mm256_storeu_ps(out, r);
#else
  for (int v = 0; v < 8; v++)
    out[v] = oa_sdot(codes + (size_t)v * stride, q, stride);
#endif
}

static void scan8_i8(const int8_t *codes, const float *scales, int32_t stride,
                     const int8_t *qabs, const int8_t *qsgn, float qscale, float *out) {
#ifdef IVF_AVX2
  __m256i acc[8];
  const __m256i ones = _mm256_set1_epi16(1);
  for (int v = 0; v < 8; v++)
    acc[v] = _mm256_setzero_si256();
  for (int32_t j = 0; j < stride; j += 32) {
    __m256i qa = _mm256_load_si256((const __m256i *)(qabs + j));
    __m256i qs = _mm256_load_si256((const __m256i *)(qsgn + j));
    for (int v = 0; v < 8; v++) {
      __m256i c = _mm256_load_si256((const __m256i *)(codes + (size_t)v * stride + j));
      __m256i p = _mm256_maddubs_epi16(qa, _mm256_sign_epi8(c, qs));
      acc[v] = _mm256_add_epi32(acc[v], _mm256_madd_epi16(p, ones));
    }
  }
  __m256i t0 = _mm256_hadd_epi32(acc[0], acc[1]), t1 = _mm256_hadd_epi32(acc[2], acc[3]);
  __m256i t2 = _mm256_hadd_epi32(acc[4], acc[5]), t3 = _mm256_hadd_epi32(acc[6], acc[7]);
  __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
  __m256i r = _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                               _mm256_permute2x128_si256(u0, u1, 0x31));
  __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(r), _mm256_loadu_ps(scales));
  _mm256_storeu_ps(out, _mm256_mul_ps(f, _mm256_set1_ps(qscale)));
#else
  (void)qabs;
  for (int v = 0; v < 8; v++) {
    int32_t s = 0;
    for (int32_t j = 0; j < stride; j++)
      s += (int32_t)codes[(size_t)v * stride + j] * qsgn[j];
    out[v] = (float)s * scales[v] * qscale;
  }
#endif
}

/* int8 codes of v (dim floats) into out (stride bytes, zero padded);
 * returns the scale. */
static float quantize(const float *v, int32_t dim, int32_t stride, int8_t *out) {
  float mx = 0;
  for (int32_t j = 0; j < dim; j++)
    mx = fmaxf(mx, fabsf(v[j]));
  memset(out, 0, (size_t)stride);
  if (mx == 0) return 0;
  float scale = mx / 127.0f, inv = 127.0f / mx;
  for (int32_t j = 0; j < dim; j++) {
    long q = lrintf(v[j] * inv);
    out[j] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
  }
  return scale;
}

/* ---- lists -------------------------------------------------------------- */

static size_t code_bytes(const oa_ivf *ivf) {
  return ivf->storage == OA_IVF_I8 ? (size_t)ivf->stride
                                   : (size_t)ivf->stride * sizeof(float);
}

static void list_free(ivf_list *l) {
  oa_free_aligned(l->codes);
  oa_free_aligned(l->scales);
  oa_free_aligned(l->rows);
  memset(l, 0, sizeof *l);
}

/* Grow l to hold at least need rows (capacity rounded up to 8, zero tail). */
static int list_reserve(const oa_ivf *ivf, ivf_list *l, int32_t need) {
  if (need <= l->cap) return 0;
  int32_t cap = l->cap ? l->cap + l->cap / 2 : 8;
  if (cap < need) cap = need;
  cap = (cap + 7) & ~7;
  size_t cb = code_bytes(ivf);
  void *codes = oa_alloc_aligned((size_t)cap * cb);
  float *scales =
      ivf->storage == OA_IVF_I8 ? oa_alloc_aligned((size_t)cap * sizeof(float)) : NULL;
  int32_t *rows = oa_alloc_aligned((size_t)cap * sizeof(int32_t));
  if (!codes || !rows || (ivf->storage == OA_IVF_I8 && !scales)) {
    oa_free_aligned(codes);
    oa_free_aligned(scales);
    oa_free_aligned(rows);
    return OA_ENOMEM;
  }
  if (l->n) {
    memcpy(codes, l->codes, (size_t)l->n * cb);
    if (scales) memcpy(scales, l->scales, (size_t)l->n * sizeof(float));
    memcpy(rows, l->rows, (size_t)l->n * sizeof(int32_t));
  }
  oa_free_aligned(l->codes);
  oa_free_aligned(l->scales);
  oa_free_aligned(l->rows);
  l->codes = codes;
  l->scales = scales;
  l->rows = rows;
  l->cap = cap;
  return 0;
}

/* Write vector v of row into slot i of l. */
static void list_put(const oa_ivf *ivf, ivf_list *l, int32_t i, int64_t row,
                     const float *v) {
  if (ivf->storage == OA_IVF_I8) {
    int8_t *c = (int8_t *)l->codes + (size_t)i * ivf->stride;
    l->scales[i] = quantize(v, ivf->dim, ivf->stride, c);
  } else {
    float *c = (float *)l->codes + (size_t)i * ivf->stride;
    memset(c, 0, (size_t)ivf->stride * sizeof(float));
    memcpy(c, v, (size_t)ivf->dim * sizeof(float));
  }
  l->rows[i] = (int32_t)row;
}

static int where_reserve(oa_ivf *ivf, int64_t rows) {
  if (rows <= ivf->where_cap) return 0;
  int64_t cap = ivf->where_cap ? ivf->where_cap * 2 : 1024;
  if (cap < rows) cap = rows;
  int32_t *w = realloc(ivf->where, (size_t)cap * sizeof(int32_t));
  if (!w) return OA_ENOMEM;
  for (int64_t i = ivf->where_cap; i < cap; i++)
    w[i] = -1;
  ivf->where = w;
  ivf->where_cap = cap;
  return 0;
}

static int32_t nearest_list(const oa_ivf *ivf, const float *v) {
  int32_t best = 0;
  float bs = -FLT_MAX;
  for (int32_t c = 0; c < ivf->nlist; c++) {
    float s = oa_sdot(v, ivf->centroids + (size_t)c * ivf->dim, ivf->dim);
    if (s > bs) {
      bs = s;
      best = c;
    }
  }
  return best;
}

static oa_ivf *ivf_alloc(int32_t dim, int32_t nlist, oa_ivf_storage storage,
                         int32_t rerank) {
  oa_ivf *ivf = calloc(1, sizeof *ivf);
  if (!ivf) return NULL;
  ivf->dim = dim;
  ivf->nlist = nlist;
  ivf->storage = storage;
  ivf->rerank = rerank;
  ivf->stride = storage == OA_IVF_I8 ? (dim + 31) & ~31 : (dim + 7) & ~7;
  ivf->centroids = malloc((size_t)nlist * dim * sizeof(float));
  ivf->lists = calloc((size_t)nlist, sizeof(ivf_list));
  if (!ivf->centroids || !ivf->lists) {
    free(ivf->centroids);
    free(ivf->lists);
    free(ivf);
    return NULL;
  }
  return ivf;
}

void oa_ivf_free(oa_ivf *ivf) {
  if (!ivf) return;
  for (int32_t c = 0; c < ivf->nlist; c++)
    list_free(&ivf->lists[c]);
  free(ivf->lists);
  free(ivf->centroids);
  free(ivf->where);
  free(ivf);
}

/* ---- build -------------------------------------------------------------- */

oa_ivf *oa_ivf_build(const oa_vecstore *vs, const oa_ivf_config *cfg, oa_error *err) {
  if (!vs || !cfg) {
    oa_error_set(err, OA_EINVAL, "ivf: missing store or config");
    return NULL;
  }
  int32_t dim = oa_vecstore_config_of(vs)->dim;
  int64_t total = oa_vecstore_rows(vs), live = oa_vecstore_count(vs);
  if (cfg->storage != OA_IVF_F32 && cfg->storage != OA_IVF_I8) {
    oa_error_set(err, OA_EINVAL, "ivf: unknown storage %d", (int)cfg->storage);
    return NULL;
  }
  if (live < 1 || total > INT32_MAX) {
    oa_error_set(err, OA_EINVAL,
                 "ivf: need 1 to 2^31-1 rows (store has %lld live of %lld)",
                 (long long)live, (long long)total);
    return NULL;
  }
  if (cfg->nlist < 0 || cfg->rerank < 0) {
    oa_error_set(err, OA_EINVAL, "ivf: nlist and rerank must be >= 0");
    return NULL;
  }
  int32_t nlist = cfg->nlist ? cfg->nlist : (int32_t)lrint(4.0 * sqrt((double)live));
  if (nlist < 1) nlist = 1;
  if (nlist > live) nlist = (int32_t)live;
  oa_ivf *ivf = ivf_alloc(dim, nlist, cfg->storage, cfg->rerank ? cfg->rerank : 4);
  float *x = malloc((size_t)live * dim * sizeof(float));
  int32_t *rowof = malloc((size_t)live * sizeof(int32_t));
  int32_t *assign = malloc((size_t)live * sizeof(int32_t));
  if (!ivf || !x || !rowof || !assign || where_reserve(ivf, total)) goto nomem;
  /* Gather the live rows into one matrix: k-means and the final assignment
   * run over it with sgemm whatever the store's format. */
  int64_t m = 0;
  for (int64_t r = 0; r < total && m < live; r++) {
    if (!oa_vecstore_is_live(vs, r)) continue;
    if (oa_vecstore_get(vs, r, x + m * dim) != 0) continue;
    rowof[m++] = (int32_t)r;
  }
  oa_kmeans_config kc = {.k = nlist,
                         .iters = cfg->train_iters > 0 ? cfg->train_iters : 10,
                         .seed = cfg->seed,
                         .spherical = 1,
                         .max_per_train = cfg->max_per_train};
  if (m < nlist) kc.k = (int32_t)m;
  int rc = oa_kmeans(x, m, dim, dim, &kc, ivf->centroids, assign, err);
  if (rc) goto fail;
  ivf->nlist = kc.k;
  int32_t *sizes = calloc((size_t)ivf->nlist, sizeof(int32_t));
  if (!sizes) goto nomem;
  for (int64_t i = 0; i < m; i++)
    sizes[assign[i]]++;
  for (int32_t c = 0; c < ivf->nlist; c++)
    if (list_reserve(ivf, &ivf->lists[c], sizes[c])) {
      free(sizes);
      goto nomem;
    }
  free(sizes);
  for (int64_t i = 0; i < m; i++) {
    ivf_list *l = &ivf->lists[assign[i]];
    list_put(ivf, l, l->n++, rowof[i], x + i * dim);
    ivf->where[rowof[i]] = assign[i];
  }
  ivf->count = ivf->built_count = m;
  free(x);
  free(rowof);
  free(assign);
  return ivf;
nomem:
  oa_error_set(err, OA_ENOMEM, "ivf: out of memory building over %lld rows",
               (long long)live);
fail:
  free(x);
  free(rowof);
  free(assign);
  oa_ivf_free(ivf);
  return NULL;
}

/* ---- search ------------------------------------------------------------- */

typedef struct cand {
  float score;
  int32_t row;
} cand;

/* Min-heap on score (ties: larger row first out, so smaller rows stay). */
static int cand_less(cand a, cand b) {
  return a.score < b.score || (a.score == b.score && a.row > b.row);
}

static void heap_sift_down(cand *h, int32_t n, int32_t i) {
  for (;;) {
    int32_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && cand_less(h[l], h[m])) m = l;
    if (r < n && cand_less(h[r], h[m])) m = r;
    if (m == i) return;
    cand t = h[i];
    h[i] = h[m];
    h[m] = t;
    i = m;
  }
}

static void heap_push(cand *h, int32_t *n, int32_t cap, cand c) {
  if (*n < cap) {
    int32_t i = (*n)++;
    h[i] = c;
    while (i > 0) {
      int32_t p = (i - 1) / 2;
      if (!cand_less(h[i], h[p])) break;
      cand t = h[i];
      h[i] = h[p];
      h[p] = t;
      i = p;
    }
  } else if (cand_less(h[0], c)) {
    h[0] = c;
    heap_sift_down(h, *n, 0);
  }
}

static void prefetch_row(const void *p, size_t bytes) {
  for (size_t off = 0; off < bytes; off += 64)
    __builtin_prefetch((const char *)p + off);
}

static int cand_desc(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  return (x->row > y->row) - (x->row < y->row);
}

/* Better-first order on candidates: higher score, then smaller row (the
 * order of the final results). */
static int cand_better(cand a, cand b) {
  return a.score > b.score || (a.score == b.score && a.row < b.row);
}

static void cand_swap(cand *a, cand *b) {
  cand t = *a;
  *a = *b;
  *b = t;
}

/* Reorders a[0..n) so that a[0..k) are the k best, a[k - 1] the k-th
 * best (quickselect, median-of-three pivots: deterministic). */
static void select_best(cand *a, int32_t n, int32_t k) {
  int32_t lo = 0, hi = n - 1, t = k - 1;
  while (lo < hi) {
    int32_t mid = lo + (hi - lo) / 2;
    if (cand_better(a[mid], a[lo])) cand_swap(&a[mid], &a[lo]);
    if (cand_better(a[hi], a[lo])) cand_swap(&a[hi], &a[lo]);
    if (cand_better(a[hi], a[mid])) cand_swap(&a[hi], &a[mid]);
    cand pivot = a[mid]; /* the median of the three */
    int32_t i = lo, j = hi;
    while (i <= j) {
      while (cand_better(a[i], pivot))
        i++;
      while (cand_better(pivot, a[j]))
        j--;
      if (i <= j) cand_swap(&a[i++], &a[j--]);
    }
    if (t <= j)
      hi = j;
    else if (t >= i)
      lo = i;
    else
      break;
  }
}

/* The best cap candidates of a search, gathered without a heap: rows that
 * reach the threshold are appended to a buffer of 2 * cap; when it fills,
 * quickselect keeps the cap best and the threshold rises to the worst of
 * them. Cheaper than a heap when many rows qualify (loose catalogs, int8
 * lists with re-ranking). */
typedef struct collector {
  cand *buf; /* 2 * cap */
  int32_t n, cap;
  float thr;
} collector;

static void collect_trim(collector *c) {
  if (c->n <= c->cap) return;
  select_best(c->buf, c->n, c->cap);
  c->n = c->cap;
  c->thr = c->buf[c->cap - 1].score;
}

static void collect(collector *c, float score, int32_t row) {
  c->buf[c->n++] = (cand){score, row};
  if (c->n == 2 * c->cap) collect_trim(c);
}

typedef struct accept_ctx {
  oa_ivf_accept_fn fn;
  void *ud;
  const oa_vecstore *vs;
} accept_ctx;

/* Scan list l into the collector: rows whose score reaches the current
 * threshold pass the filter check and are collected. */
static void scan_list(const oa_ivf *ivf, const ivf_list *l, const float *qf,
                      const int8_t *qabs, const int8_t *qsgn, float qscale,
                      collector *col, const accept_ctx *acc) {
  float sc[8];
  for (int32_t i0 = 0; i0 < l->n; i0 += 8) {
    float thr = col->thr;
    if (ivf->storage == OA_IVF_I8)
      scan8_i8((const int8_t *)l->codes + (size_t)i0 * ivf->stride, l->scales + i0,
               ivf->stride, qabs, qsgn, qscale, sc);
    else
      scan8_f32((const float *)l->codes + (size_t)i0 * ivf->stride, ivf->stride, qf, sc);
    int32_t lim = l->n - i0 < 8 ? l->n - i0 : 8;
#ifdef IVF_AVX2
    int mask = _mm256_movemask_ps(
        _mm256_cmp_ps(_mm256_loadu_ps(sc), _mm256_set1_ps(thr), _CMP_GE_OQ));
    mask &= (1 << lim) - 1;
    while (mask) {
      int v = __builtin_ctz(mask);
      mask &= mask - 1;
#else
    for (int v = 0; v < lim; v++) {
      if (!(sc[v] >= thr)) continue;
#endif
      int32_t row = l->rows[i0 + v];
      if (acc->fn && !acc->fn(acc->ud, acc->vs, row)) continue;
      collect(col, sc[v], row);
    }
  }
}

int oa_ivf_search_fn(const oa_ivf *ivf, const oa_vecstore *vs, const float *query,
                     int32_t n, int32_t nprobe, oa_ivf_accept_fn accept, void *ud,
                     int64_t *rows_out, float *scores_out, int32_t *count,
                     oa_error *err) {
  if (count) *count = 0;
  if (!ivf || !vs || !query || !rows_out || !count)
    return oa_error_set(err, OA_EINVAL, "ivf search: missing argument");
  if (n < 1 || nprobe < 1)
    return oa_error_set(err, OA_EINVAL,
                        "ivf search: need n >= 1 and nprobe >= 1 (n %d, nprobe %d)", n,
                        nprobe);
  int32_t dim = ivf->dim;
  if (oa_vecstore_config_of(vs)->dim != dim)
    return oa_error_set(err, OA_EDIM, "ivf search: store has dim %d, index %d",
                        oa_vecstore_config_of(vs)->dim, dim);
  for (int32_t j = 0; j < dim; j++)
    if (!isfinite(query[j]))
      return oa_error_set(err, OA_EINVAL, "ivf search: query value %d is not finite", j);
  if (nprobe > ivf->nlist) nprobe = ivf->nlist;
  int i8 = ivf->storage == OA_IVF_I8;
  /* Candidate count: n, or rerank * n for int8 lists, never above the
   * indexed rows (a search for more rows than exist keeps them all). */
  int64_t cap64 = i8 ? (int64_t)n * ivf->rerank : n;
  if (cap64 > ivf->count) cap64 = ivf->count > n ? ivf->count : n;
  int32_t cap = (int32_t)cap64;
  /* One scratch block: centroid scores, probe heap, candidate heap, padded
   * query (float and int8 forms), a row buffer for re-ranking. */
  size_t need = (size_t)ivf->nlist * sizeof(float) + (size_t)nprobe * sizeof(cand) +
                2 * (size_t)cap * sizeof(cand) +
                (size_t)ivf->stride * (sizeof(float) + 2) + (size_t)dim * sizeof(float) +
                (size_t)n * sizeof(cand) + 256;
  uint8_t *scratch = oa_alloc_aligned(need);
  if (!scratch) return oa_error_set(err, OA_ENOMEM, "ivf search: out of memory");
  uint8_t *p = scratch;
  float *qf = (float *)p;
  p += ((size_t)ivf->stride * sizeof(float) + 63) & ~(size_t)63;
  int8_t *qabs = (int8_t *)p;
  p += ((size_t)ivf->stride + 63) & ~(size_t)63;
  int8_t *qsgn = (int8_t *)p;
  p += ((size_t)ivf->stride + 63) & ~(size_t)63;
  float *cs = (float *)p;
  p += (size_t)ivf->nlist * sizeof(float);
  cand *probes = (cand *)p;
  p += (size_t)nprobe * sizeof(cand);
  cand *heap = (cand *)p;
  p += 2 * (size_t)cap * sizeof(cand);
  float *vbuf = (float *)p;

  memcpy(qf, query, (size_t)dim * sizeof(float));
  float qscale = 0;
  if (i8) {
    qscale = quantize(query, dim, ivf->stride, qsgn);
    for (int32_t j = 0; j < ivf->stride; j++)
      qabs[j] = (int8_t)(qsgn[j] < 0 ? -qsgn[j] : qsgn[j]);
  }
  /* The nprobe lists of largest centroid score, best first. */
  int32_t np = 0;
  for (int32_t c = 0; c < ivf->nlist; c++) {
    cs[c] = oa_sdot(qf, ivf->centroids + (size_t)c * dim, dim);
    heap_push(probes, &np, nprobe, (cand){cs[c], c});
  }
  qsort(probes, (size_t)np, sizeof(cand), cand_desc);
  accept_ctx acc = {accept, ud, vs};
  collector col = {heap, 0, cap, -FLT_MAX};
  for (int32_t i = 0; i < np; i++)
    scan_list(ivf, &ivf->lists[probes[i].row], qf, qabs, qsgn, qscale, &col, &acc);
  collect_trim(&col);
  int32_t hn = col.n;
  /* Exact scores from the store for int8 candidates; drop rows the store
   * no longer holds (an index not yet told of a remove). The candidates'
   * rows are scattered over the store, so the loads are prefetched a few
   * candidates ahead to overlap the cache misses, which are most of the
   * re-ranking cost. The n best then come out of a second heap, popped from
   * the back into decreasing order (cheaper than sorting every candidate). */
  const oa_vecstore_config *vc = oa_vecstore_config_of(vs);
  int direct = i8 && vc->format == OA_VEC_F32;
  const int ahead = 8;
  for (int32_t i = 0; direct && i < ahead && i < hn; i++)
    prefetch_row(oa_vecstore_row_ptr(vs, heap[i].row), (size_t)dim * sizeof(float));
  cand *best = (cand *)(vbuf + dim);
  int32_t bn = 0;
  for (int32_t i = 0; i < hn; i++) {
    int64_t row = heap[i].row;
    if (direct && i + ahead < hn)
      prefetch_row(oa_vecstore_row_ptr(vs, heap[i + ahead].row),
                   (size_t)dim * sizeof(float));
    if (!oa_vecstore_is_live(vs, row)) continue;
    cand c = heap[i];
    if (direct) {
      c.score = oa_sdot(qf, oa_vecstore_row_ptr(vs, row), dim);
    } else if (i8) {
      if (oa_vecstore_get(vs, row, vbuf) != 0) continue;
      c.score = oa_sdot(qf, vbuf, dim);
    }
    heap_push(best, &bn, n, c);
  }
  int32_t kept = bn;
  while (bn > 0) {
    cand top = best[0];
    best[0] = best[--bn];
    heap_sift_down(best, bn, 0);
    rows_out[bn] = top.row;
    if (scores_out) scores_out[bn] = top.score;
  }
  *count = kept;
  oa_free_aligned(scratch);
  return 0;
}

static int filter_accept(void *ud, const oa_vecstore *vs, int64_t row) {
  return oa_filter_pass((const oa_filter *)ud, vs, row);
}

int oa_ivf_search(const oa_ivf *ivf, const oa_vecstore *vs, const float *query, int32_t n,
                  int32_t nprobe, const oa_filter *filter, int64_t *rows_out,
                  float *scores_out, int32_t *count, oa_error *err) {
  if (!filter)
    return oa_ivf_search_fn(ivf, vs, query, n, nprobe, NULL, NULL, rows_out, scores_out,
                            count, err);
  if (vs && oa_filter_generation(filter) != oa_vecstore_generation(vs)) {
    if (count) *count = 0;
    return oa_error_set(err, OA_ESTATE,
                        "ivf search: the filter was compiled before the store "
                        "last changed");
  }
  return oa_ivf_search_fn(ivf, vs, query, n, nprobe, filter_accept, (void *)filter,
                          rows_out, scores_out, count, err);
}

/* ---- incremental updates ------------------------------------------------ */

int oa_ivf_remove(oa_ivf *ivf, int64_t row) {
  if (!ivf || row < 0 || row >= ivf->where_cap || ivf->where[row] < 0)
    return OA_ENOTFOUND;
  ivf_list *l = &ivf->lists[ivf->where[row]];
  size_t cb = code_bytes(ivf);
  for (int32_t i = 0; i < l->n; i++) {
    if (l->rows[i] != row) continue;
    int32_t last = --l->n; /* the last row moves into the hole; the tail is zeroed */
    if (i != last) {
      memcpy((uint8_t *)l->codes + (size_t)i * cb,
             (uint8_t *)l->codes + (size_t)last * cb, cb);
      if (l->scales) l->scales[i] = l->scales[last];
      l->rows[i] = l->rows[last];
    }
    memset((uint8_t *)l->codes + (size_t)last * cb, 0, cb);
    if (l->scales) l->scales[last] = 0;
    break;
  }
  ivf->where[row] = -1;
  ivf->count--;
  ivf->changes++;
  return 0;
}

int oa_ivf_add(oa_ivf *ivf, const oa_vecstore *vs, int64_t row, oa_error *err) {
  if (!ivf || !vs) return oa_error_set(err, OA_EINVAL, "ivf add: missing argument");
  if (oa_vecstore_config_of(vs)->dim != ivf->dim)
    return oa_error_set(err, OA_EDIM, "ivf add: store has dim %d, index %d",
                        oa_vecstore_config_of(vs)->dim, ivf->dim);
  if (row < 0 || row > INT32_MAX)
    return oa_error_set(err, OA_EINVAL, "ivf add: row %lld out of range", (long long)row);
  float *v = malloc((size_t)ivf->dim * sizeof(float));
  if (!v) return oa_error_set(err, OA_ENOMEM, "ivf add: out of memory");
  if (!oa_vecstore_is_live(vs, row) || oa_vecstore_get(vs, row, v) != 0) {
    free(v);
    return oa_error_set(err, OA_ENOTFOUND, "ivf add: row %lld is not in the store",
                        (long long)row);
  }
  int32_t c = nearest_list(ivf, v);
  ivf_list *l = &ivf->lists[c];
  if (where_reserve(ivf, row + 1) || list_reserve(ivf, l, l->n + 1)) {
    free(v);
    return oa_error_set(err, OA_ENOMEM, "ivf add: out of memory");
  }
  if (ivf->where[row] >= 0) {
    oa_ivf_remove(ivf, row); /* a moved vector: counts as one change, not two */
    ivf->changes--;
  }
  list_put(ivf, l, l->n++, row, v);
  ivf->where[row] = c;
  ivf->count++;
  ivf->changes++;
  free(v);
  return 0;
}

double oa_ivf_staleness(const oa_ivf *ivf) {
  return (double)ivf->changes / (double)(ivf->built_count > 0 ? ivf->built_count : 1);
}
int64_t oa_ivf_count(const oa_ivf *ivf) {
  return ivf->count;
}
int32_t oa_ivf_nlist(const oa_ivf *ivf) {
  return ivf->nlist;
}
int32_t oa_ivf_dim(const oa_ivf *ivf) {
  return ivf->dim;
}

size_t oa_ivf_size_bytes(const oa_ivf *ivf) {
  size_t s = sizeof *ivf +
             (size_t)ivf->nlist * (ivf->dim * sizeof(float) + sizeof(ivf_list)) +
             (size_t)ivf->where_cap * sizeof(int32_t);
  size_t per =
      code_bytes(ivf) + sizeof(int32_t) + (ivf->storage == OA_IVF_I8 ? sizeof(float) : 0);
  for (int32_t c = 0; c < ivf->nlist; c++)
    s += (size_t)ivf->lists[c].cap * per;
  return s;
}

/* ---- recall ------------------------------------------------------------- */

int oa_ivf_exact_scan(void *ud, const oa_vecstore *vs, const float *query, int32_t n,
                      int64_t *rows_out, float *scores_out, int32_t *count,
                      oa_error *err) {
  (void)ud;
  *count = 0;
  if (n < 1) return oa_error_set(err, OA_EINVAL, "exact scan: need n >= 1");
  int32_t dim = oa_vecstore_config_of(vs)->dim;
  cand *heap = malloc((size_t)n * sizeof(cand));
  float *v = malloc((size_t)dim * sizeof(float));
  if (!heap || !v) {
    free(heap);
    free(v);
    return oa_error_set(err, OA_ENOMEM, "exact scan: out of memory");
  }
  int32_t hn = 0;
  int64_t rows = oa_vecstore_rows(vs);
  for (int64_t r = 0; r < rows; r++) {
    if (!oa_vecstore_is_live(vs, r) || oa_vecstore_get(vs, r, v) != 0) continue;
    heap_push(heap, &hn, n, (cand){oa_sdot(query, v, dim), (int32_t)r});
  }
  qsort(heap, (size_t)hn, sizeof(cand), cand_desc);
  for (int32_t i = 0; i < hn; i++) {
    rows_out[i] = heap[i].row;
    if (scores_out) scores_out[i] = heap[i].score;
  }
  *count = hn;
  free(heap);
  free(v);
  return 0;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

int oa_ivf_recall(const oa_ivf *ivf, const oa_vecstore *vs, const float *queries,
                  int32_t nq, int32_t n, int32_t nprobe, oa_ivf_exact_fn exact,
                  void *exact_ud, double *recall_out, oa_error *err) {
  if (nq < 1 || n < 1)
    return oa_error_set(err, OA_EINVAL, "ivf recall: need nq >= 1, n >= 1");
  if (!exact) exact = oa_ivf_exact_scan;
  int64_t *a = malloc((size_t)n * sizeof(int64_t)),
          *b = malloc((size_t)n * sizeof(int64_t));
  if (!a || !b) {
    free(a);
    free(b);
    return oa_error_set(err, OA_ENOMEM, "ivf recall: out of memory");
  }
  double total = 0;
  int rc = 0, used = 0;
  for (int32_t q = 0; q < nq && !rc; q++) {
    const float *qv = queries + (size_t)q * ivf->dim;
    int32_t na = 0, nb = 0;
    rc = exact(exact_ud, vs, qv, n, a, NULL, &na, err);
    if (!rc) rc = oa_ivf_search_fn(ivf, vs, qv, n, nprobe, NULL, NULL, b, NULL, &nb, err);
    if (rc || na == 0) continue;
    qsort(a, (size_t)na, sizeof(int64_t), cmp_i64);
    qsort(b, (size_t)nb, sizeof(int64_t), cmp_i64);
    int32_t hit = 0;
    for (int32_t i = 0, j = 0; i < na && j < nb;) {
      if (a[i] == b[j]) {
        hit++;
        i++;
        j++;
      } else if (a[i] < b[j]) {
        i++;
      } else {
        j++;
      }
    }
    total += (double)hit / na;
    used++;
  }
  free(a);
  free(b);
  if (!rc && recall_out) *recall_out = used ? total / used : 1.0;
  return rc;
}

/* ---- persistence -------------------------------------------------------- */

int oa_ivf_save(const oa_ivf *ivf, oa_buf *out) {
  oa_buf_put_header(out, "IVFX", 1);
  oa_buf_put_u32(out, (uint32_t)ivf->dim);
  oa_buf_put_u32(out, (uint32_t)ivf->nlist);
  oa_buf_put_u32(out, (uint32_t)ivf->storage);
  oa_buf_put_u32(out, (uint32_t)ivf->rerank);
  oa_buf_put_u32(out, (uint32_t)ivf->stride);
  oa_buf_put_u64(out, (uint64_t)ivf->built_count);
  oa_buf_put_u64(out, (uint64_t)ivf->changes);
  oa_buf_put(out, ivf->centroids, (size_t)ivf->nlist * ivf->dim * sizeof(float));
  size_t cb = code_bytes(ivf);
  for (int32_t c = 0; c < ivf->nlist; c++) {
    const ivf_list *l = &ivf->lists[c];
    oa_buf_put_u32(out, (uint32_t)l->n);
    oa_buf_put(out, l->codes, (size_t)l->n * cb);
    if (ivf->storage == OA_IVF_I8)
      oa_buf_put(out, l->scales, (size_t)l->n * sizeof(float));
    oa_buf_put(out, l->rows, (size_t)l->n * sizeof(int32_t));
  }
  return out->failed ? OA_ENOMEM : 0;
}

oa_ivf *oa_ivf_load(oa_reader *in, oa_error *err) {
  if (oa_read_header(in, "IVFX", 1, NULL, err)) return NULL;
  uint32_t dim = oa_read_u32(in), nlist = oa_read_u32(in), storage = oa_read_u32(in);
  uint32_t rerank = oa_read_u32(in), stride = oa_read_u32(in);
  uint64_t built = oa_read_u64(in), changes = oa_read_u64(in);
  if (in->failed || dim < 1 || dim > (1u << 20) || nlist < 1 || nlist > (1u << 26) ||
      storage > OA_IVF_I8 || rerank < 1 || rerank > 1024 ||
      (size_t)nlist * dim * sizeof(float) > in->len - in->pos) {
    oa_error_set(err, OA_EFORMAT, "ivf load: bad header");
    return NULL;
  }
  oa_ivf *ivf =
      ivf_alloc((int32_t)dim, (int32_t)nlist, (oa_ivf_storage)storage, (int32_t)rerank);
  if (!ivf) {
    oa_error_set(err, OA_ENOMEM, "ivf load: out of memory");
    return NULL;
  }
  if ((uint32_t)ivf->stride != stride) goto bad;
  ivf->built_count = (int64_t)built;
  ivf->changes = (int64_t)changes;
  oa_read(in, ivf->centroids, (size_t)nlist * dim * sizeof(float));
  size_t cb = code_bytes(ivf);
  for (uint32_t c = 0; c < nlist; c++) {
    ivf_list *l = &ivf->lists[c];
    uint32_t n = oa_read_u32(in);
    size_t per = cb + sizeof(int32_t) + (storage == OA_IVF_I8 ? sizeof(float) : 0);
    if (in->failed || n > INT32_MAX || (size_t)n * per > in->len - in->pos) goto bad;
    if (list_reserve(ivf, l, (int32_t)n)) goto nomem;
    oa_read(in, l->codes, (size_t)n * cb);
    if (storage == OA_IVF_I8) oa_read(in, l->scales, (size_t)n * sizeof(float));
    oa_read(in, l->rows, (size_t)n * sizeof(int32_t));
    l->n = (int32_t)n;
    for (uint32_t i = 0; i < n; i++) {
      int32_t r = l->rows[i];
      if (r < 0) goto bad;
      if (where_reserve(ivf, (int64_t)r + 1)) goto nomem;
      if (ivf->where[r] >= 0) goto bad; /* a row in two places */
      ivf->where[r] = (int32_t)c;
    }
    ivf->count += n;
  }
  if (in->failed) goto bad;
  return ivf;
bad:
  oa_error_set(err, OA_EFORMAT, "ivf load: corrupt or truncated data");
  oa_ivf_free(ivf);
  return NULL;
nomem:
  oa_error_set(err, OA_ENOMEM, "ivf load: out of memory");
  oa_ivf_free(ivf);
  return NULL;
}
