/* Exact top-N by inner product (topn.h).
 *
 * The scan is bandwidth bound: 1M x 64 float32 rows are 256 MB that must
 * stream from memory once per query, and it runs at the speed of a plain
 * vectorised pass over the same bytes (bench_retrieval) when: the group's
 * lines are prefetched a few KB ahead; each of the 8 rows of a group is
 * scored in address order (8 independent FMA chains, one per row, that
 * out-of-order execution overlaps); the common row lengths get loops with
 * constant lengths and offsets; and nothing per row happens outside the
 * vector registers: the 8 accumulators reduce with one transpose-and-add
 * tree into a vector of 8 scores, compared against the floor with one
 * vector compare ANDed with the live bits of the 8 rows, so only rows
 * that would enter the top-N reach the heap and the filter.
 *
 * Each row's score comes from its own accumulator lane sums and the same
 * reduction tree whatever its neighbours are (I8: an exact integer dot
 * product), so a score is bit-identical whichever thread, range or group
 * computed it; with an exact (score, row) order in every heap the merged
 * result does not depend on the split. */
#include "catalog/topn.h"
#include "catalog/pool.h"
#include "core/error.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define TOPN_AVX2 1
#include <immintrin.h>
#endif

/* ---- heap: root = worst (lowest score, then highest row) ---- */

static inline int worse(float sa, int64_t ra, float sb, int64_t rb) {
  return sa < sb || (sa == sb && ra > rb);
}

int oa_topn_heap_init(oa_topn_heap *h, int32_t cap) {
  memset(h, 0, sizeof *h);
  if (cap <= 0) return 0;
  h->scores = malloc((size_t)cap * sizeof *h->scores);
  h->rows = malloc((size_t)cap * sizeof *h->rows);
  if (!h->scores || !h->rows) {
    oa_topn_heap_free(h);
    return OA_ENOMEM;
  }
  h->cap = cap;
  return 0;
}

void oa_topn_heap_free(oa_topn_heap *h) {
  free(h->scores);
  free(h->rows);
  memset(h, 0, sizeof *h);
}

static void sift_down(oa_topn_heap *h, int32_t i) {
  float s = h->scores[i];
  int64_t r = h->rows[i];
  for (;;) {
    int32_t c = 2 * i + 1;
    if (c >= h->size) break;
    if (c + 1 < h->size &&
        worse(h->scores[c + 1], h->rows[c + 1], h->scores[c], h->rows[c]))
      c++;
    if (!worse(h->scores[c], h->rows[c], s, r)) break;
    h->scores[i] = h->scores[c];
    h->rows[i] = h->rows[c];
    i = c;
  }
  h->scores[i] = s;
  h->rows[i] = r;
}

void oa_topn_heap_push(oa_topn_heap *h, float score, int64_t row) {
  if (score != score || h->cap == 0) return; /* NaN never ranks */
  if (h->size < h->cap) {
    int32_t i = h->size++;
    while (i > 0) {
      int32_t p = (i - 1) / 2;
      if (!worse(score, row, h->scores[p], h->rows[p])) break;
      h->scores[i] = h->scores[p];
      h->rows[i] = h->rows[p];
      i = p;
    }
    h->scores[i] = score;
    h->rows[i] = row;
    return;
  }
  if (!worse(h->scores[0], h->rows[0], score, row)) return;
  h->scores[0] = score;
  h->rows[0] = row;
  sift_down(h, 0);
}

/* The score a new row must reach (>=) to be considered (-inf while the
 * heap has room; a heap of cap 0 takes nothing anyway). */
static inline float heap_floor(const oa_topn_heap *h) {
  return h->size && h->size == h->cap ? h->scores[0] : -INFINITY;
}

void oa_topn_result_init(oa_topn_result *r) {
  memset(r, 0, sizeof *r);
}

void oa_topn_result_free(oa_topn_result *r) {
  free(r->rows);
  free(r->scores);
  memset(r, 0, sizeof *r);
}

static int result_reserve(oa_topn_result *out, int32_t n) {
  if (n <= out->cap) return 0;
  int64_t *rows = realloc(out->rows, (size_t)n * sizeof *rows);
  if (!rows) return OA_ENOMEM;
  out->rows = rows;
  float *scores = realloc(out->scores, (size_t)n * sizeof *scores);
  if (!scores) return OA_ENOMEM;
  out->scores = scores;
  out->cap = n;
  return 0;
}

int oa_topn_heap_finish(oa_topn_heap *h, oa_topn_result *out, oa_error *err) {
  if (result_reserve(out, h->size))
    return oa_error_set(err, OA_ENOMEM, "out of memory for %d results", h->size);
  /* Pop the worst into the back: the array ends up best first. */
  int32_t n = h->size;
  while (h->size > 0) {
    int32_t last = --h->size;
    out->scores[last] = h->scores[0];
    out->rows[last] = h->rows[0];
    h->scores[0] = h->scores[last];
    h->rows[0] = h->rows[last];
    if (h->size) sift_down(h, 0);
  }
  out->count = n;
  return 0;
}

/* ---- kernels: 8 rows -> 8 scores ---- */

/* The scan's kernel: per format, and for I8 whether the query is int16
 * (exact integer dot products: with AVX2 alone, or with AVX-VNNI when the
 * CPU has it; both give the same integers) or float (dims past
 * I8_INT_MAX_DIM). The I8 kinds are last. */
typedef enum scan_kind { K_F32 = 0, K_F16, K_I8Q, K_I8V, K_I8F } scan_kind;

typedef struct scan_ctx {
  const oa_vecstore *vs;
  const float *q; /* padded to a multiple of 8 (zeros), 32-byte aligned */
  int32_t nv;     /* 8-float vectors per row */
  /* I8 with dim <= I8_INT_MAX_DIM: the query quantised to int16 (padded
   * to 32 values, zeros) so rows are scored in exact integer arithmetic;
   * score = int dot * row scale * qscale. Stored per 32 values: the 16 at
   * even positions, then the 16 at odd positions (see i8q_row). */
  const int16_t *q16;
  float qscale;
  /* K_I8V: the int16 query as two signed bytes per value, q = 256 hi + lo,
   * per 32 values the 32 hi bytes then the 32 lo bytes; qcorr = 128 * the
   * sum of the query (see i8v_row). */
  const int8_t *q8;
  int32_t qcorr;
  oa_vec_format fmt;
  scan_kind kind;
  const uint8_t *mat;
  size_t stride;
  const float *scales;
  const uint8_t *live; /* live bitmap as bytes: row r is bit r & 7 of byte r >> 3 */
  const oa_filter *filter;
  int64_t rows;
  int64_t per_task; /* rows per task, a multiple of OA_TOPN_BLOCK */
  oa_topn_heap *heaps;
  /* The highest floor of the tasks' full heaps: a full heap holds n rows
   * scoring at least its floor, so a row scoring below it is not in the
   * global top n and no task needs to look at it. Tasks that start later
   * skip at once what earlier ones already beat, and the heaps see few
   * pushes; the merged result is the same whatever the timing. */
  _Atomic float *shared_floor;
  int32_t cap; /* the global n (a heap of a short range may hold fewer) */
} scan_ctx;

/* Where query value i sits in scan_ctx.q16. */
static inline int32_t q16_slot(int32_t i) {
  return (i & ~31) + (i & 1) * 16 + (i & 31) / 2;
}

#ifdef TOPN_AVX2
/* The kernels must inline into each scan loop (the rows' pointers then
 * stay in registers); GCC's size estimate alone does not always do it. */
#define KERNEL static inline __attribute__((always_inline))

/* Sum each of 8 accumulators into one lane of the result. */
static inline __m256 reduce8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4,
                             __m256 a5, __m256 a6, __m256 a7) {
  __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
  __m256 t2 = _mm256_hadd_ps(a4, a5), t3 = _mm256_hadd_ps(a6, a7);
  __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                       _mm256_permute2f128_ps(u0, u1, 0x31));
}

#define LOAD_F32(p, k) _mm256_load_ps((const float *)(p) + 8 * (k))
#define LOAD_F16(p, k)                                                                   \
  _mm256_cvtph_ps(_mm_load_si128((const __m128i *)((const uint16_t *)(p) + 8 * (k))))
#define LOAD_I8(p, k)                                                                    \
  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(                                               \
      _mm_loadl_epi64((const __m128i *)((const int8_t *)(p) + 8 * (k)))))

/* A row's 8 lane sums, one FMA chain over its vectors. The kernels score
 * 8 rows one after the other, so the loads are issued in address order
 * (the way the matrix lies), which keeps the prefetchers streaming;
 * interleaving the 8 rows vector by vector measured ~1.5x slower. The 8
 * chains are independent and out-of-order execution overlaps them. */
#define DEFINE_KERNEL(name, LOAD)                                                        \
  KERNEL __m256 name##_row(const uint8_t *r, const float *q, int32_t nv) {               \
    __m256 a = _mm256_setzero_ps();                                                      \
    for (int32_t k = 0; k < nv; k++)                                                     \
      a = _mm256_fmadd_ps(LOAD(r, k), _mm256_load_ps(q + 8 * k), a);                     \
    return a;                                                                            \
  }                                                                                      \
  KERNEL __m256 name(const uint8_t *const *r, const float *q, int32_t nv) {              \
    __m256 a0 = name##_row(r[0], q, nv), a1 = name##_row(r[1], q, nv);                   \
    __m256 a2 = name##_row(r[2], q, nv), a3 = name##_row(r[3], q, nv);                   \
    __m256 a4 = name##_row(r[4], q, nv), a5 = name##_row(r[5], q, nv);                   \
    __m256 a6 = name##_row(r[6], q, nv), a7 = name##_row(r[7], q, nv);                   \
    return reduce8(a0, a1, a2, a3, a4, a5, a6, a7);                                      \
  }

/* I8 rows against the int16 query, exact, so the sum order is free: 32
 * bytes per step, read as 16 int16 words; an arithmetic shift right by 8
 * gives the odd bytes sign-extended, a shift left then right the even
 * ones, and each half is multiplied-added in pairs with the query's
 * matching half into int32 (vpmaddwd). Shifts instead of vpmovsxbw keep
 * the shuffle unit free for the reduction: ~1.5x the rows per cycle. */
KERNEL __m256i i8q_row(const uint8_t *r, const int16_t *q, int32_t n32) {
  __m256i a = _mm256_setzero_si256();
  for (int32_t k = 0; k < n32; k++) {
    __m256i w = _mm256_load_si256((const __m256i *)(r + 32 * k));
    __m256i even = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8);
    __m256i odd = _mm256_srai_epi16(w, 8);
    a = _mm256_add_epi32(
        a, _mm256_add_epi32(
               _mm256_madd_epi16(even, _mm256_load_si256((const __m256i *)(q + 32 * k))),
               _mm256_madd_epi16(odd,
                                 _mm256_load_si256((const __m256i *)(q + 32 * k + 16)))));
  }
  return a;
}

/* Sum each of 8 int32 accumulators into one lane of the result. */
static inline __m256i reduce8i(__m256i a0, __m256i a1, __m256i a2, __m256i a3, __m256i a4,
                               __m256i a5, __m256i a6, __m256i a7) {
  __m256i t0 = _mm256_hadd_epi32(a0, a1), t1 = _mm256_hadd_epi32(a2, a3);
  __m256i t2 = _mm256_hadd_epi32(a4, a5), t3 = _mm256_hadd_epi32(a6, a7);
  __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
  return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                          _mm256_permute2x128_si256(u0, u1, 0x31));
}

/* AVX-VNNI's vpdpbusd (acc += 4 unsigned bytes of u times the 4 signed
 * bytes of s, per int32 lane), in assembly so that the file still builds
 * for plain AVX2; only run when the CPU has it (prepare_query). */
KERNEL __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
  __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(u), "x"(s));
  return acc;
}

/* I8 rows with AVX-VNNI: a row byte x read as the unsigned u = x + 128
 * (flip the top bit), so the dot product is sum(u q) - 128 sum(q), and
 * sum(u q) = 256 sum(u hi) + sum(u lo): two vpdpbusd per 32 bytes instead
 * of three shifts, two vpmaddwd and two adds. int32 arithmetic wraps, and
 * the final sum(x q) fits, so the result is the exact integer of
 * i8q_row. */
KERNEL __m256i i8v_row(const uint8_t *r, const int8_t *q, int32_t n32) {
  const __m256i flip = _mm256_set1_epi8((char)0x80);
  __m256i hi = _mm256_setzero_si256(), lo = hi;
  for (int32_t k = 0; k < n32; k++) {
    __m256i u = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(r + 32 * k)), flip);
    hi = dpbusd(hi, u, _mm256_load_si256((const __m256i *)(q + 64 * k)));
    lo = dpbusd(lo, u, _mm256_load_si256((const __m256i *)(q + 64 * k + 32)));
  }
  return _mm256_add_epi32(_mm256_slli_epi32(hi, 8), lo);
}

#define DEFINE_KERNEL_INT(name, ROW, QT)                                                 \
  KERNEL __m256i name(const uint8_t *const *r, const QT *q, int32_t n32) {               \
    __m256i a0 = ROW(r[0], q, n32), a1 = ROW(r[1], q, n32);                              \
    __m256i a2 = ROW(r[2], q, n32), a3 = ROW(r[3], q, n32);                              \
    __m256i a4 = ROW(r[4], q, n32), a5 = ROW(r[5], q, n32);                              \
    __m256i a6 = ROW(r[6], q, n32), a7 = ROW(r[7], q, n32);                              \
    return reduce8i(a0, a1, a2, a3, a4, a5, a6, a7);                                     \
  }
DEFINE_KERNEL_INT(kernel_i8q, i8q_row, int16_t)
DEFINE_KERNEL_INT(kernel_i8v, i8v_row, int8_t)

DEFINE_KERNEL(kernel_f32, LOAD_F32)
DEFINE_KERNEL(kernel_f16, LOAD_F16)
DEFINE_KERNEL(kernel_i8, LOAD_I8)

/* Scores of the 8 rows at r[]; scales of I8 rows in sc[8]. Always inlined
 * so that each per-format scan below has its own loop. */
typedef __m256 score8_t;

/* I8 scores from the integer dot products: dot * row scale * qscale. */
static inline __m256 i8_scores(const scan_ctx *c, __m256i dots, const float *sc) {
  return _mm256_mul_ps(_mm256_cvtepi32_ps(dots),
                       _mm256_mul_ps(_mm256_loadu_ps(sc), _mm256_set1_ps(c->qscale)));
}

static inline __attribute__((always_inline)) score8_t score8(const scan_ctx *c,
                                                             scan_kind k, int32_t nv,
                                                             const uint8_t *const *r,
                                                             const float *sc) {
  switch (k) {
  case K_F32:
    return kernel_f32(r, c->q, nv);
  case K_F16:
    return kernel_f16(r, c->q, nv);
  case K_I8Q:
    return i8_scores(c, kernel_i8q(r, c->q16, (nv + 3) / 4), sc);
  case K_I8V:
    return i8_scores(
        c,
        _mm256_sub_epi32(kernel_i8v(r, c->q8, (nv + 3) / 4), _mm256_set1_epi32(c->qcorr)),
        sc);
  default:
    return _mm256_mul_ps(kernel_i8(r, c->q, nv), _mm256_loadu_ps(sc));
  }
}

static inline void score8_store(float *out, score8_t s) {
  _mm256_storeu_ps(out, s);
}

/* Bit j set when score j >= thr (NaN never is): one compare for 8 rows. */
static inline unsigned score8_reach(score8_t s, float thr) {
  return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(s, _mm256_set1_ps(thr), _CMP_GE_OQ));
}

/* Software prefetch of the group PREFETCH_AHEAD bytes ahead of p: with it
 * the scan keeps enough cache misses in flight to run at the bandwidth of
 * a plain pass. A macro, not a function: GCC takes a function whose only
 * effect is a prefetch for a const function and deletes its calls. A
 * prefetch past the matrix never faults. */
#define PREFETCH_AHEAD 4096
#define PREFETCH_GROUP(p, bytes)                                                         \
  for (size_t o_ = 0; o_ < (bytes); o_ += 64)                                            \
  _mm_prefetch((const char *)(p) + PREFETCH_AHEAD + o_, _MM_HINT_T0)
#else
/* Portable fallback: same arithmetic without vector intrinsics. */
typedef struct score8_t {
  float v[8];
} score8_t;

static inline score8_t score8(const scan_ctx *c, scan_kind k, int32_t nv,
                              const uint8_t *const *r, const float *sc) {
  score8_t out;
  for (int j = 0; j < 8; j++) {
    if (k == K_I8Q || k == K_I8V) {
      int32_t acc = 0;
      for (int32_t i = 0; i < nv * 8; i++)
        acc += ((const int8_t *)r[j])[i] * c->q16[q16_slot(i)];
      out.v[j] = (float)acc * (sc[j] * c->qscale);
      continue;
    }
    float lanes[8] = {0};
    for (int32_t i = 0; i < nv * 8; i++) {
      float v = k == K_F32   ? ((const float *)r[j])[i]
                : k == K_F16 ? oa_f16_to_f32(((const uint16_t *)r[j])[i])
                             : (float)((const int8_t *)r[j])[i];
      lanes[i & 7] = fmaf(v, c->q[i], lanes[i & 7]);
    }
    float s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
              ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    out.v[j] = k == K_I8F ? s * sc[j] : s;
  }
  return out;
}

static inline void score8_store(float *out, score8_t s) {
  memcpy(out, s.v, sizeof s.v);
}

static inline unsigned score8_reach(score8_t s, float thr) {
  unsigned m = 0;
  for (int j = 0; j < 8; j++)
    m |= (unsigned)(s.v[j] >= thr) << j;
  return m;
}
#define PREFETCH_GROUP(p, bytes) ((void)(p), (void)(bytes))
#endif

/* ---- the scan ---- */

/* The score a row must reach in this task: its heap's floor, raised to
 * the shared floor of the other tasks. */
static inline float scan_floor(const scan_ctx *c, const oa_topn_heap *heap) {
  float own = heap_floor(heap);
  if (!c->shared_floor) return own;
  float other = atomic_load_explicit(c->shared_floor, memory_order_relaxed);
  return other > own ? other : own;
}

/* The rows of mask (bits of the group at row g) that reach the heap,
 * pass the filter, into the heap; publishes the heap's floor and returns
 * the new scan floor. Rare once the heap is full, so kept out of the scan
 * loop. */
static __attribute__((noinline)) float
offer(const scan_ctx *c, score8_t s8, unsigned mask, int64_t g, oa_topn_heap *heap) {
  float s[8];
  score8_store(s, s8);
  while (mask) {
    int j = __builtin_ctz(mask);
    mask &= mask - 1;
    if (!(s[j] >= heap_floor(heap))) continue;
    if (c->filter && !oa_filter_pass(c->filter, c->vs, g + j)) continue;
    oa_topn_heap_push(heap, s[j], g + j);
  }
  float own = heap_floor(heap);
  if (c->shared_floor && heap->size == c->cap) {
    float cur = atomic_load_explicit(c->shared_floor, memory_order_relaxed);
    while (own > cur && !atomic_compare_exchange_weak_explicit(c->shared_floor, &cur, own,
                                                               memory_order_relaxed,
                                                               memory_order_relaxed)) {
    }
  }
  return scan_floor(c, heap);
}

/* Rows [lo, hi) into heap; lo is a multiple of 8. The loop over whole
 * groups of 8 rows carries no per-row work: the live byte of the group
 * (skip 8 holes at once), the prefetch, the kernel, and one vector compare
 * against the heap floor; a final partial group repeats its first row in
 * the missing slots and masks them off. */
static inline __attribute__((always_inline)) void
scan_range_kind(const scan_ctx *c, scan_kind k, int32_t nv, size_t stride, int64_t lo,
                int64_t hi, oa_topn_heap *heap) {
  const size_t group_bytes = 8 * stride;
  const uint8_t *p = c->mat + (size_t)lo * stride;
  const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  float thr = scan_floor(c, heap);
  int64_t g = lo, whole = lo + ((hi - lo) & ~(int64_t)7);
  for (; g < whole; g += 8, p += group_bytes) {
    PREFETCH_GROUP(p, group_bytes);
    if (!(g & 511)) thr = scan_floor(c, heap); /* what other tasks found */
    unsigned mask = c->live[g >> 3];
    if (!mask) continue;
    const uint8_t *rp[8] = {p,
                            p + stride,
                            p + 2 * stride,
                            p + 3 * stride,
                            p + 4 * stride,
                            p + 5 * stride,
                            p + 6 * stride,
                            p + 7 * stride};
    score8_t s = score8(c, k, nv, rp, k >= K_I8Q ? c->scales + g : ones);
    mask &= score8_reach(s, thr);
    if (mask) thr = offer(c, s, mask, g, heap);
  }
  if (g < hi) {
    int n = (int)(hi - g);
    unsigned mask = c->live[g >> 3] & ((1u << n) - 1);
    const uint8_t *rp[8];
    float sc[8];
    for (int j = 0; j < 8; j++) {
      int64_t r = g + (j < n ? j : 0);
      rp[j] = c->mat + (size_t)r * stride;
      sc[j] = k >= K_I8Q ? c->scales[r] : 1;
    }
    score8_t s = score8(c, k, nv, rp, sc);
    mask &= score8_reach(s, thr);
    if (mask) offer(c, s, mask, g, heap);
  }
}

/* The matrix stride of rows of nv 8-value vectors for kernel k (rows are
 * padded to 64 bytes; every dim that needs nv vectors has this stride). */
static inline size_t stride_of(scan_kind k, int32_t nv) {
  size_t bytes = k == K_F32 ? 4 : k == K_F16 ? 2 : 1;
  return ((size_t)nv * 8 * bytes + 63) & ~(size_t)63;
}

/* One loop per kernel and, for the common dims (up to 32, 64, 128), per
 * row length: with the row length and stride constant the compiler
 * unrolls each row's chain and the group's prefetches into straight code
 * with fixed offsets. Other dims take the loop with variable lengths. */
#define SCAN_FIXED(k, n)                                                                 \
  if (c->nv == (n) && c->stride == stride_of(k, n)) {                                    \
    scan_range_kind(c, k, n, stride_of(k, n), lo, hi, heap);                             \
    return;                                                                              \
  }

static inline __attribute__((always_inline)) void
scan_dims(const scan_ctx *c, scan_kind k, int64_t lo, int64_t hi, oa_topn_heap *heap) {
  SCAN_FIXED(k, 4)
  SCAN_FIXED(k, 8)
  SCAN_FIXED(k, 16)
  scan_range_kind(c, k, c->nv, c->stride, lo, hi, heap);
}

static void scan_range(const scan_ctx *c, int64_t lo, int64_t hi, oa_topn_heap *heap) {
  switch (c->kind) {
  case K_F32:
    scan_dims(c, K_F32, lo, hi, heap);
    break;
  case K_F16:
    scan_dims(c, K_F16, lo, hi, heap);
    break;
  case K_I8Q:
    scan_dims(c, K_I8Q, lo, hi, heap);
    break;
  case K_I8V:
    scan_dims(c, K_I8V, lo, hi, heap);
    break;
  default: /* rare (dim > I8_INT_MAX_DIM): the generic loop only */
    scan_range_kind(c, K_I8F, c->nv, c->stride, lo, hi, heap);
    break;
  }
}

/* Several queries in one pass: each task walks its rows in sub-blocks
 * small enough to stay in the core's cache while every query scores them,
 * so the matrix leaves memory once whatever the number of queries. */
#define MULTI_SUB_BYTES (128 * 1024)

typedef struct scan_job {
  scan_ctx *ctx; /* one per query; the first gives rows and per_task */
  int32_t nq;
} scan_job;

static void scan_task(void *ud, int task) {
  const scan_job *j = ud;
  const scan_ctx *c0 = &j->ctx[0];
  int64_t lo = (int64_t)task * c0->per_task, hi = lo + c0->per_task;
  if (hi > c0->rows) hi = c0->rows;
  if (lo >= hi) return;
  if (j->nq == 1) {
    scan_range(c0, lo, hi, &c0->heaps[task]);
    return;
  }
  int64_t sub = (int64_t)(MULTI_SUB_BYTES / c0->stride) & ~(int64_t)7;
  if (sub < 8) sub = 8;
  for (int64_t b = lo; b < hi; b += sub) {
    int64_t e = b + sub < hi ? b + sub : hi;
    for (int32_t q = 0; q < j->nq; q++)
      scan_range(&j->ctx[q], b, e, &j->ctx[q].heaps[task]);
  }
}

/* The query padded with zeros to whole 8-float vectors, 32-byte aligned:
 * the matrix rows are zero past dim, so padded lanes add exact zeros. For
 * I8 also the int16 query, scaled to +-I8_QMAX (int32 sums cannot overflow
 * up to this dim: 127 * 32639 * 512 < 2^31; 32639 rather than 32767 so
 * that every value splits into two signed bytes for K_I8V). */
#define I8_INT_MAX_DIM 512
#define I8_QMAX        32639
static int prepare_query(scan_ctx *c, const float *query) {
  int32_t d = oa_vecstore_config_of(c->vs)->dim;
  c->nv = (d + 7) / 8;
  float *q = aligned_alloc(32, (size_t)c->nv * 32);
  if (!q) return OA_ENOMEM;
  memcpy(q, query, (size_t)d * sizeof *q);
  memset(q + d, 0, (size_t)(c->nv * 8 - d) * sizeof *q);
  c->q = q;
  c->kind = c->fmt == OA_VEC_F32 ? K_F32 : c->fmt == OA_VEC_F16 ? K_F16 : K_I8F;
  if (c->fmt != OA_VEC_I8 || d > I8_INT_MAX_DIM) return 0;
  int32_t n = (d + 31) / 32 * 32;
  int16_t *q16 = aligned_alloc(32, (size_t)n * sizeof *q16);
  if (!q16) return OA_ENOMEM;
  c->q16 = q16;
  float mx = 0;
  for (int32_t i = 0; i < d; i++)
    mx = fmaxf(mx, fabsf(query[i]));
  float inv = mx > 0 ? I8_QMAX / mx : 0;
  int64_t sum = 0;
  for (int32_t i = 0; i < n; i++) {
    int16_t v = i < d ? (int16_t)nearbyintf(query[i] * inv) : 0;
    q16[q16_slot(i)] = v;
    sum += v;
  }
  c->qscale = mx / I8_QMAX;
  c->kind = K_I8Q;
#ifdef TOPN_AVX2
  if (!__builtin_cpu_supports("avxvnni")) return 0;
  int8_t *q8 = aligned_alloc(32, 2 * (size_t)n);
  if (!q8) return OA_ENOMEM;
  for (int32_t i = 0; i < n; i++) {
    int32_t v = q16[q16_slot(i)], lo = (int8_t)(v & 255);
    q8[64 * (i / 32) + i % 32] = (int8_t)((v - lo) / 256);
    q8[64 * (i / 32) + 32 + i % 32] = (int8_t)lo;
  }
  c->q8 = q8;
  c->qcorr = (int32_t)(128 * sum);
  c->kind = K_I8V;
#endif
  return 0;
}

static void query_free(scan_ctx *c) {
  free((void *)c->q);
  free((void *)c->q16);
  free((void *)c->q8);
}

static int check_query(const oa_vecstore *vs, const float *query, oa_error *err) {
  if (!query) return oa_error_set(err, OA_EINVAL, "no query vector");
  int32_t d = oa_vecstore_config_of(vs)->dim;
  for (int32_t i = 0; i < d; i++)
    if (!isfinite(query[i]))
      return oa_error_set(err, OA_ENUMERIC, "query value at index %d is not finite", i);
  return 0;
}

static void ctx_init(scan_ctx *c, const oa_vecstore *vs) {
  memset(c, 0, sizeof *c);
  c->vs = vs;
  c->fmt = oa_vecstore_config_of(vs)->format;
  c->mat = oa_vecstore_matrix(vs);
  c->stride = oa_vecstore_stride(vs);
  c->scales = oa_vecstore_scales(vs);
  c->live = (const uint8_t *)oa_vecstore_live_bits(vs);
  c->rows = oa_vecstore_rows(vs);
}

/* The valid queries' contexts (their heaps, queries, shared floors). */
static void contexts_free(scan_ctx *ctx, int32_t nq, int64_t ntasks) {
  for (int32_t q = 0; q < nq; q++) {
    if (ctx[q].heaps)
      for (int64_t t = 0; t < ntasks; t++)
        oa_topn_heap_free(&ctx[q].heaps[t]);
    free(ctx[q].heaps);
    query_free(&ctx[q]);
  }
  free(ctx);
}

/* Merge a query's ranges: the global top-N is inside the union of the
 * ranges' top-Ns. */
static int merge(scan_ctx *c, int64_t ntasks, oa_topn_result *out, oa_error *err) {
  oa_topn_heap all;
  if (ntasks == 1) {
    all = c->heaps[0];
    memset(&c->heaps[0], 0, sizeof c->heaps[0]);
  } else {
    if (oa_topn_heap_init(&all, c->cap))
      return oa_error_set(err, OA_ENOMEM, "out of memory for a top-%d scan", c->cap);
    for (int64_t t = 0; t < ntasks; t++)
      for (int32_t i = 0; i < c->heaps[t].size; i++)
        oa_topn_heap_push(&all, c->heaps[t].scores[i], c->heaps[t].rows[i]);
  }
  int rc = oa_topn_heap_finish(&all, out, err);
  oa_topn_heap_free(&all);
  return rc;
}

int oa_topn_exact_many(const oa_vecstore *vs, int32_t nq, const float *const *queries,
                       const int32_t *n, const oa_filter *const *filters, int threads,
                       oa_topn_result *out, int *rcs, oa_error *errs) {
  if (nq < 1) return 0;
  /* Each query on its own: a bad one fails alone. */
  int32_t nvalid = 0;
  for (int32_t q = 0; q < nq; q++) {
    oa_error *err = errs ? &errs[q] : NULL;
    const oa_filter *f = filters ? filters[q] : NULL;
    if (n[q] <= 0)
      rcs[q] = oa_error_set(err, OA_EINVAL, "top-N needs N >= 1, got %d", n[q]);
    else if ((rcs[q] = check_query(vs, queries[q], err))) {
    } else if (f && oa_filter_generation(f) != oa_vecstore_generation(vs))
      rcs[q] = oa_error_set(
          err, OA_ESTATE,
          "the filter was compiled before the catalog changed: compile it again");
    nvalid += rcs[q] == 0;
  }
  if (!nvalid) return 0;
  scan_ctx probe;
  ctx_init(&probe, vs);
  int64_t live = oa_vecstore_count(vs), rows = probe.rows;

  oa_pool *pool = NULL;
  size_t bytes = (size_t)rows * probe.stride;
  if (threads <= 0) threads = bytes >= ((size_t)4 << 20) ? 0 : 1;
  if (threads != 1) {
    pool = oa_pool_shared();
    int avail = oa_pool_threads(pool);
    if (threads <= 0 || threads > avail) threads = avail;
  }
  int64_t blocks = (rows + OA_TOPN_BLOCK - 1) / OA_TOPN_BLOCK;
  /* Several ranges per thread so that a thread slowed by other work on
   * the machine does not hold the whole scan back. */
  int64_t ntasks = threads > 1 ? 4 * (int64_t)threads : 1;
  if (ntasks > blocks) ntasks = blocks ? blocks : 1;
  int64_t blocks_per = (blocks + ntasks - 1) / ntasks;
  int64_t per_task = (blocks_per ? blocks_per : 1) * OA_TOPN_BLOCK;
  ntasks = rows ? (rows + per_task - 1) / per_task : 1;

  scan_ctx *ctx = calloc((size_t)nvalid, sizeof *ctx);
  _Atomic float *floors = calloc((size_t)nvalid, sizeof *floors);
  int32_t *which = malloc(sizeof(int32_t) * (size_t)nvalid);
  if (!ctx || !floors || !which) goto oom;
  for (int32_t q = 0, k = 0; q < nq; q++) {
    if (rcs[q]) continue;
    scan_ctx *c = &ctx[k];
    which[k] = q;
    ctx_init(c, vs);
    c->filter = filters ? filters[q] : NULL;
    c->per_task = per_task;
    c->cap = live < n[q] ? (int32_t)live : n[q];
    floors[k] = -INFINITY;
    if (ntasks > 1) c->shared_floor = &floors[k];
    k++;
    if (!(c->heaps = calloc((size_t)ntasks, sizeof *c->heaps)) ||
        prepare_query(c, queries[q]))
      goto oom;
    for (int64_t t = 0; t < ntasks; t++) {
      int64_t span = rows - t * per_task < per_task ? rows - t * per_task : per_task;
      if (oa_topn_heap_init(&c->heaps[t],
                            span < c->cap ? (int32_t)(span > 0 ? span : 0) : c->cap))
        goto oom;
    }
  }
  scan_job job = {ctx, nvalid};
  if (rows) oa_pool_run(pool, (int)ntasks, threads, scan_task, &job);
  for (int32_t k = 0; k < nvalid; k++) {
    int32_t q = which[k];
    rcs[q] = merge(&ctx[k], ntasks, &out[q], errs ? &errs[q] : NULL);
  }
  contexts_free(ctx, nvalid, ntasks);
  free(floors);
  free(which);
  return 0;
oom:
  if (ctx) contexts_free(ctx, nvalid, ntasks);
  free(floors);
  free(which);
  return OA_ENOMEM;
}

int oa_topn_exact(const oa_vecstore *vs, const float *query, int32_t n,
                  const oa_filter *filter, int threads, oa_topn_result *out,
                  oa_error *err) {
  int rc = 0;
  if (oa_topn_exact_many(vs, 1, &query, &n, &filter, threads, out, &rc, err))
    return oa_error_set(err, OA_ENOMEM, "out of memory for a top-%d scan", n);
  return rc;
}

int oa_topn_score_rows(const oa_vecstore *vs, const float *query, const int64_t *rows,
                       int64_t row0, int64_t count, float *out, oa_error *err) {
  int rc;
  if ((rc = check_query(vs, query, err))) return rc;
  scan_ctx c;
  ctx_init(&c, vs);
  for (int64_t i = 0; i < count; i++) {
    int64_t r = rows ? rows[i] : row0 + i;
    if (r < 0 || r >= c.rows)
      return oa_error_set(err, OA_EINVAL, "row %lld is out of range (%lld rows)",
                          (long long)r, (long long)c.rows);
  }
  if (prepare_query(&c, query)) {
    query_free(&c);
    return oa_error_set(err, OA_ENOMEM, "out of memory");
  }
  const uint8_t *rp[8];
  float sc[8], s[8];
  for (int64_t i = 0; i < count; i += 8) {
    int m = count - i < 8 ? (int)(count - i) : 8;
    for (int j = 0; j < 8; j++) {
      int64_t r = rows ? rows[i + (j < m ? j : 0)] : row0 + i + (j < m ? j : 0);
      rp[j] = c.mat + (size_t)r * c.stride;
      sc[j] = c.scales ? c.scales[r] : 1;
    }
    score8_store(s, score8(&c, c.kind, c.nv, rp, sc));
    memcpy(out + i, s, (size_t)m * sizeof *s);
  }
  query_free(&c);
  return 0;
}
