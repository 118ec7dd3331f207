/* The vector store (vectors.h): action vectors in one aligned matrix, an
 * id <-> row map, per-row metadata columns, persistence and CSV bulk load.
 *
 * Memory. The matrix is an anonymous mapping grown with mremap, so growing
 * a multi-gigabyte catalog moves page tables instead of copying bytes; it
 * asks for transparent huge pages because scans touch every page. Per-row
 * side arrays (ids, I8 scales, metadata columns, live bits) are plain heap
 * arrays grown by doubling. The id map is a compact open-addressing table
 * of 8-byte slots (32 hash bits, row + 1) with backward-shift deletion, so
 * churn leaves no tombstones; the id strings themselves live once, in the
 * per-row id array. Removing an action zeroes its row, clears its live bit
 * and pushes the row on a free stack that the next new id pops.
 *
 * Binary file (".oav"), all numbers little-endian:
 *
 *   offset size  field
 *   0      8     magic "OAVECS\0\1"
 *   8      4     version (1)
 *   12     4     header size (128)
 *   16     4     dim
 *   20     4     format (0 f32, 1 f16, 2 i8)
 *   24     4     number of metadata fields
 *   28     4     row stride in bytes (multiple of 64)
 *   32     8     rows (including holes)
 *   40     8     live rows
 *   48     8     generation
 *   56     16    ids section: offset, bytes
 *   72     16    meta section: offset, bytes
 *   88     16    matrix section: offset, bytes (= rows * stride)
 *   104    8     checksum: XXH3-64 of the header (this field zero), then
 *                the ids and meta sections, each seeded with the previous
 *   112    16    zero
 *
 *   ids section: per row, u32 length then the id bytes; length 0 = hole.
 *   meta section: per field, u32 kind, u32 name length, name; a
 *     categorical field then has u32 dictionary size, the strings (u32
 *     length + bytes) in code order and i32 codes[rows] (-1 missing); a
 *     numeric field has f32 values[rows] (NaN missing). For I8 the section
 *     ends with f32 scales[rows].
 *   matrix section: starts at a 64-byte aligned offset (the writer aligns
 *     it to 4096 so it can be mapped), rows * stride bytes, bytes past dim
 *     values in a row are zero.
 *
 * The loader checks magic, version, sizes against the file size and the
 * checksum; the matrix is not checksummed (that would read it all and
 * defeat mapping). When the matrix offset is page aligned it is mapped
 * with mmap(MAP_PRIVATE): loading a 10M-row catalog then costs the ids and
 * metadata only, pages come in on the first scan, and writes after the
 * load are copy-on-write, never reaching the file. Otherwise it is read. */
#include "catalog/vectors.h"
#include "core/error.h"
#include "core/strmap.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#define VEC_MAGIC       "OAVECS\0\1"
#define VEC_VERSION     1
#define VEC_HEADER_SIZE 128

enum { MAT_NONE = 0, MAT_ANON, MAT_FILE };

typedef struct meta_col {
  int32_t *codes; /* OA_META_CAT, per row */
  float *nums;    /* OA_META_NUM, per row */
  oa_strmap dict; /* string -> code */
  char **strs;    /* code -> string (owned) */
  int32_t n_strs, cap_strs;
} meta_col;

struct oa_vecstore {
  oa_vecstore_config cfg;
  size_t stride;
  int64_t rows, cap, live;
  uint64_t generation;
  uint8_t *mat;
  size_t mat_bytes; /* mapped length */
  int mat_kind;
  float *scales;
  char **ids;
  uint64_t *livebits;
  int64_t *holes;
  int64_t n_holes, cap_holes;
  uint64_t *slots;   /* id map: hash low 32 bits << 32 | (row + 1); 0 empty */
  size_t n_slots;    /* power of two */
  size_t id_bytes;   /* heap bytes held by id strings */
  uint64_t file_sum; /* checksum of the file loaded from */
  meta_col meta[OA_VEC_MAX_META];
};

/* ---- small helpers ---- */

const char *oa_vec_format_name(oa_vec_format f) {
  return f == OA_VEC_F32 ? "f32" : f == OA_VEC_F16 ? "f16" : f == OA_VEC_I8 ? "i8" : "?";
}

int oa_vec_format_parse(const char *s, oa_vec_format *out) {
  if (!strcmp(s, "f32"))
    *out = OA_VEC_F32;
  else if (!strcmp(s, "f16"))
    *out = OA_VEC_F16;
  else if (!strcmp(s, "i8"))
    *out = OA_VEC_I8;
  else
    return OA_EINVAL;
  return 0;
}

static size_t elem_size(oa_vec_format f) {
  return f == OA_VEC_F32 ? 4 : f == OA_VEC_F16 ? 2 : 1;
}

size_t oa_vec_row_stride(int32_t dim, oa_vec_format f) {
  return ((size_t)dim * elem_size(f) + 63) & ~(size_t)63;
}

/* Float16 by bit manipulation so that the format also works without F16C;
 * with F16C the compiler's intrinsics are used in the hot loops. */
uint16_t oa_f32_to_f16(float f) {
#if defined(__F16C__)
  return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffff;
  if (ax >= 0x7f800000) return sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0);
  if (ax >= 0x477ff000) return sign | 0x7c00; /* rounds past 65504 */
  if (ax < 0x38800000) {                      /* subnormal or zero in half */
    float a;
    memcpy(&a, &ax, 4);
    return sign | (uint16_t)nearbyintf(a * 16777216.0f); /* a / 2^-24 */
  }
  uint32_t m = ax + 0xc8000fff + ((ax >> 13) & 1); /* rebias, round to even */
  return sign | (uint16_t)(m >> 13);
#endif
}

float oa_f16_to_f32(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, x;
  if (e == 0) {
    float v = ldexpf((float)m, -24);
    return sign ? -v : v;
  }
  if (e == 31)
    x = sign | 0x7f800000 | (m << 13);
  else
    x = sign | ((e + 112) << 23) | (m << 13);
  float f;
  memcpy(&f, &x, 4);
  return f;
#endif
}

static int64_t grow_cap(int64_t cur, int64_t need) {
  int64_t c = cur ? cur : 64;
  while (c < need)
    c = c < ((int64_t)1 << 40) ? c * 2 : need;
  return c;
}

static int is_live(const oa_vecstore *vs, int64_t r) {
  return (vs->livebits[r >> 6] >> (r & 63)) & 1;
}

/* ---- matrix memory ---- */

static void mat_release(oa_vecstore *vs) {
  if (vs->mat) munmap(vs->mat, vs->mat_bytes);
  vs->mat = NULL;
  vs->mat_bytes = 0;
  vs->mat_kind = MAT_NONE;
}

static void advise_huge(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
  if (n >= ((size_t)4 << 20)) madvise(p, n, MADV_HUGEPAGE);
#endif
}

/* Make the matrix hold cap rows. Anonymous mappings grow with mremap (no
 * copy); a file mapping is copied once into an anonymous one. New bytes
 * are zero (fresh anonymous pages). */
static int mat_grow(oa_vecstore *vs, int64_t cap) {
  size_t need = (size_t)cap * vs->stride;
  need = (need + 4095) & ~(size_t)4095;
  if (need <= vs->mat_bytes && vs->mat_kind == MAT_ANON) return 0;
  if (vs->mat_kind == MAT_ANON) {
    void *p = mremap(vs->mat, vs->mat_bytes, need, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) return OA_ENOMEM;
    vs->mat = p;
    vs->mat_bytes = need;
    advise_huge(p, need);
    return 0;
  }
  void *p = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return OA_ENOMEM;
  advise_huge(p, need);
  if (vs->mat) memcpy(p, vs->mat, (size_t)vs->rows * vs->stride);
  mat_release(vs);
  vs->mat = p;
  vs->mat_bytes = need;
  vs->mat_kind = MAT_ANON;
  return 0;
}

static int realloc_array(void **p, size_t elem, int64_t old_n, int64_t new_n, int fill) {
  void *q = realloc(*p, (size_t)new_n * elem);
  if (!q) return OA_ENOMEM;
  memset((char *)q + (size_t)old_n * elem, fill, (size_t)(new_n - old_n) * elem);
  *p = q;
  return 0;
}

/* Grow every per-row array to cap rows. A failure leaves the store valid
 * (arrays that did grow are just larger). */
static int store_grow(oa_vecstore *vs, int64_t cap) {
  if (cap <= vs->cap) return 0;
  if (mat_grow(vs, cap)) return OA_ENOMEM;
  int64_t old = vs->cap;
  if (realloc_array((void **)&vs->ids, sizeof(char *), old, cap, 0)) return OA_ENOMEM;
  int64_t ow = (old + 63) / 64, nw = (cap + 63) / 64;
  if (realloc_array((void **)&vs->livebits, 8, ow, nw, 0)) return OA_ENOMEM;
  if (vs->cfg.format == OA_VEC_I8 &&
      realloc_array((void **)&vs->scales, sizeof(float), old, cap, 0))
    return OA_ENOMEM;
  for (int f = 0; f < vs->cfg.n_meta; f++) {
    meta_col *m = &vs->meta[f];
    if (vs->cfg.meta[f].kind == OA_META_CAT) {
      if (realloc_array((void **)&m->codes, 4, old, cap, 0xff)) return OA_ENOMEM; /* -1 */
    } else {
      if (realloc_array((void **)&m->nums, 4, old, cap, 0)) return OA_ENOMEM;
      for (int64_t r = old; r < cap; r++)
        m->nums[r] = NAN;
    }
  }
  vs->cap = cap;
  return 0;
}

int oa_vecstore_reserve(oa_vecstore *vs, int64_t rows, oa_error *err) {
  if (rows <= vs->cap) return 0;
  if (store_grow(vs, rows))
    return oa_error_set(err, OA_ENOMEM, "out of memory reserving %lld vector rows",
                        (long long)rows);
  return 0;
}

/* ---- id map ---- */

static uint64_t id_hash(const char *id, size_t len) {
  return oa_hash_bytes(id, len, 0x0a7ec);
}

static int id_equal(const char *stored, const char *id, size_t len) {
  return memcmp(stored, id, len) == 0 && stored[len] == 0;
}

static int64_t map_find(const oa_vecstore *vs, const char *id, size_t len,
                        size_t *slot_out) {
  if (!vs->n_slots) return -1;
  uint32_t tag = (uint32_t)id_hash(id, len);
  size_t mask = vs->n_slots - 1;
  for (size_t i = tag & mask;; i = (i + 1) & mask) {
    uint64_t s = vs->slots[i];
    if (!s) return -1;
    if ((uint32_t)(s >> 32) == tag) {
      int64_t row = (int64_t)(uint32_t)s - 1;
      if (id_equal(vs->ids[row], id, len)) {
        if (slot_out) *slot_out = i;
        return row;
      }
    }
  }
}

static void map_insert_slot(uint64_t *slots, size_t n, uint32_t tag, int64_t row) {
  size_t mask = n - 1, i = tag & mask;
  while (slots[i])
    i = (i + 1) & mask;
  slots[i] = (uint64_t)tag << 32 | (uint64_t)(row + 1);
}

/* Keep the load factor under 1/2; rehashing uses the stored hash bits, so
 * it never touches the id strings. */
static int map_reserve(oa_vecstore *vs, int64_t count) {
  if ((size_t)count * 2 <= vs->n_slots) return 0;
  size_t n = vs->n_slots ? vs->n_slots : 64;
  while ((size_t)count * 2 > n)
    n *= 2;
  uint64_t *slots = calloc(n, 8);
  if (!slots) return OA_ENOMEM;
  for (size_t i = 0; i < vs->n_slots; i++)
    if (vs->slots[i])
      map_insert_slot(slots, n, (uint32_t)(vs->slots[i] >> 32),
                      (int64_t)(uint32_t)vs->slots[i] - 1);
  free(vs->slots);
  vs->slots = slots;
  vs->n_slots = n;
  return 0;
}

/* Backward-shift deletion: pull later entries of the probe run into the
 * gap so lookups never need tombstones. */
static void map_delete_slot(oa_vecstore *vs, size_t i) {
  size_t mask = vs->n_slots - 1;
  for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    uint64_t s = vs->slots[j];
    if (!s) break;
    size_t home = (uint32_t)(s >> 32) & mask;
    /* Move s into the gap at i when its home is not in (i, j]. */
    if (((j - home) & mask) >= ((j - i) & mask)) {
      vs->slots[i] = s;
      i = j;
    }
  }
  vs->slots[i] = 0;
}

/* ---- construction ---- */

oa_vecstore *oa_vecstore_new(const oa_vecstore_config *cfg, oa_error *err) {
  if (!cfg || cfg->dim <= 0 || cfg->dim > (1 << 20)) {
    oa_error_set(err, OA_EINVAL, "vector dimension must be in 1..%d, got %d", 1 << 20,
                 cfg ? cfg->dim : 0);
    return NULL;
  }
  if (cfg->format != OA_VEC_F32 && cfg->format != OA_VEC_F16 &&
      cfg->format != OA_VEC_I8) {
    oa_error_set(err, OA_EINVAL, "unknown vector format %d", (int)cfg->format);
    return NULL;
  }
  if (cfg->n_meta < 0 || cfg->n_meta > OA_VEC_MAX_META) {
    oa_error_set(err, OA_EINVAL, "at most %d metadata fields, got %d", OA_VEC_MAX_META,
                 cfg->n_meta);
    return NULL;
  }
  for (int f = 0; f < cfg->n_meta; f++) {
    const oa_meta_spec *m = &cfg->meta[f];
    size_t n = strnlen(m->name, sizeof m->name);
    if (n == 0 || n == sizeof m->name ||
        (m->kind != OA_META_CAT && m->kind != OA_META_NUM)) {
      oa_error_set(err, OA_EINVAL,
                   "metadata field %d: needs a name (< 64 bytes) and kind", f);
      return NULL;
    }
    if (!strcmp(m->name, "id") ||
        (m->name[0] == 'v' && m->name[1] >= '0' && m->name[1] <= '9')) {
      oa_error_set(err, OA_EINVAL,
                   "metadata field '%s': name clashes with the CSV columns", m->name);
      return NULL;
    }
    for (int g = 0; g < f; g++)
      if (!strcmp(cfg->meta[g].name, m->name)) {
        oa_error_set(err, OA_EINVAL, "metadata field '%s' declared twice", m->name);
        return NULL;
      }
  }
  oa_vecstore *vs = calloc(1, sizeof *vs);
  if (!vs) {
    oa_error_set(err, OA_ENOMEM, "out of memory for a vector store");
    return NULL;
  }
  vs->cfg = *cfg;
  vs->stride = oa_vec_row_stride(cfg->dim, cfg->format);
  for (int f = 0; f < cfg->n_meta; f++)
    oa_strmap_init(&vs->meta[f].dict);
  return vs;
}

void oa_vecstore_free(oa_vecstore *vs) {
  if (!vs) return;
  mat_release(vs);
  for (int64_t r = 0; r < vs->rows; r++)
    free(vs->ids[r]);
  free(vs->ids);
  free(vs->livebits);
  free(vs->scales);
  free(vs->holes);
  free(vs->slots);
  for (int f = 0; f < vs->cfg.n_meta; f++) {
    meta_col *m = &vs->meta[f];
    free(m->codes);
    free(m->nums);
    oa_strmap_free(&m->dict);
    for (int32_t i = 0; i < m->n_strs; i++)
      free(m->strs[i]);
    free(m->strs);
  }
  free(vs);
}

const oa_vecstore_config *oa_vecstore_config_of(const oa_vecstore *vs) {
  return &vs->cfg;
}

/* ---- encoding ---- */

/* Encode dim values into a row (stride bytes, padding zeroed). For F16 a
 * value that rounds past the half range is an error (checked before any
 * byte of the store changes, since dst is scratch). */
static int encode_row(const oa_vecstore *vs, const float *v, uint8_t *dst, float *scale,
                      oa_error *err) {
  int32_t d = vs->cfg.dim;
  memset(dst, 0, vs->stride);
  *scale = 1;
  switch (vs->cfg.format) {
  case OA_VEC_F32:
    memcpy(dst, v, (size_t)d * 4);
    break;
  case OA_VEC_F16: {
    uint16_t *h = (uint16_t *)dst;
    for (int32_t i = 0; i < d; i++) {
      h[i] = oa_f32_to_f16(v[i]);
      if ((h[i] & 0x7c00) == 0x7c00)
        return oa_error_set(err, OA_ENUMERIC,
                            "value %g at index %d is outside the float16 range (65504)",
                            (double)v[i], i);
    }
    break;
  }
  case OA_VEC_I8: {
    float mx = 0;
    for (int32_t i = 0; i < d; i++)
      mx = fmaxf(mx, fabsf(v[i]));
    int8_t *q = (int8_t *)dst;
    if (mx > 0) {
      float inv = 127.0f / mx;
      for (int32_t i = 0; i < d; i++) {
        float t = nearbyintf(v[i] * inv);
        q[i] = (int8_t)(t > 127 ? 127 : t < -127 ? -127 : t);
      }
    }
    *scale = mx / 127.0f;
    break;
  }
  }
  return 0;
}

static int check_finite(const float *v, int32_t d, oa_error *err) {
  for (int32_t i = 0; i < d; i++)
    if (!isfinite(v[i]))
      return oa_error_set(err, OA_ENUMERIC, "vector value at index %d is not finite (%g)",
                          i, (double)v[i]);
  return 0;
}

static int check_id(const char *id, size_t len, oa_error *err) {
  if (!id || len == 0)
    return oa_error_set(err, OA_EINVAL, "an action id must not be empty");
  if (len > OA_VEC_MAX_ID)
    return oa_error_set(err, OA_EINVAL, "action id of %zu bytes is longer than %d", len,
                        OA_VEC_MAX_ID);
  if (memchr(id, 0, len))
    return oa_error_set(err, OA_EINVAL, "action id contains a NUL byte");
  return 0;
}

/* Intern s in a categorical field; returns the code or OA_ENOMEM. */
static int32_t intern(meta_col *m, const char *s) {
  size_t len = strlen(s);
  int64_t code;
  if (oa_strmap_get(&m->dict, s, len, &code)) return (int32_t)code;
  if (m->n_strs == m->cap_strs) {
    int32_t c = m->cap_strs ? m->cap_strs * 2 : 16;
    char **p = realloc(m->strs, (size_t)c * sizeof *p);
    if (!p) return OA_ENOMEM;
    m->strs = p;
    m->cap_strs = c;
  }
  char *copy = strdup(s);
  if (!copy) return OA_ENOMEM;
  if (oa_strmap_put(&m->dict, s, len, m->n_strs)) {
    free(copy);
    return OA_ENOMEM;
  }
  m->strs[m->n_strs] = copy;
  return m->n_strs++;
}

int64_t oa_vecstore_upsert(oa_vecstore *vs, const char *id, size_t idlen,
                           const float *vec, const oa_meta_value *meta, oa_error *err) {
  int rc;
  if ((rc = check_id(id, idlen, err))) return rc;
  if (!vec)
    return oa_error_set(err, OA_EINVAL, "action '%.*s': no vector", (int)idlen, id);
  if ((rc = check_finite(vec, vs->cfg.dim, err)))
    return oa_error_prefix(err, "action '%.*s'", (int)idlen, id);
  if (meta)
    for (int f = 0; f < vs->cfg.n_meta; f++)
      if (vs->cfg.meta[f].kind == OA_META_NUM && isinf(meta[f].num))
        return oa_error_set(err, OA_ENUMERIC, "action '%.*s': metadata '%s' is infinite",
                            (int)idlen, id, vs->cfg.meta[f].name);
  /* Encode into scratch first: an out-of-range F16 value fails here. */
  uint8_t stack_row[1024];
  uint8_t *row = vs->stride <= sizeof stack_row ? stack_row : malloc(vs->stride);
  if (!row) return oa_error_set(err, OA_ENOMEM, "out of memory");
  float scale;
  if ((rc = encode_row(vs, vec, row, &scale, err))) {
    oa_error_prefix(err, "action '%.*s'", (int)idlen, id);
    goto done;
  }
  int64_t r = map_find(vs, id, idlen, NULL);
  char *copy = NULL;
  if (r < 0) {
    /* Everything that can fail happens before the store changes. */
    if (!vs->n_holes && vs->rows == vs->cap &&
        store_grow(vs, grow_cap(vs->cap, vs->rows + 1)))
      goto oom;
    if (map_reserve(vs, vs->live + 1)) goto oom;
    if (vs->n_holes == 0 && vs->rows >= ((int64_t)1 << 32) - 2) {
      rc = oa_error_set(err, OA_ELIMIT, "vector store is full (2^32 rows)");
      goto done;
    }
    copy = malloc(idlen + 1);
    if (!copy) goto oom;
    memcpy(copy, id, idlen);
    copy[idlen] = 0;
  }
  int32_t codes[OA_VEC_MAX_META];
  if (meta)
    for (int f = 0; f < vs->cfg.n_meta; f++) {
      codes[f] = -1;
      if (vs->cfg.meta[f].kind == OA_META_CAT && meta[f].str &&
          (codes[f] = intern(&vs->meta[f], meta[f].str)) < 0) {
        free(copy);
        goto oom;
      }
    }
  if (r < 0) {
    r = vs->n_holes ? vs->holes[--vs->n_holes] : vs->rows++;
    vs->ids[r] = copy;
    vs->id_bytes += malloc_usable_size(copy) + 8;
    vs->livebits[r >> 6] |= (uint64_t)1 << (r & 63);
    vs->live++;
    map_insert_slot(vs->slots, vs->n_slots, (uint32_t)id_hash(id, idlen), r);
  }
  memcpy(vs->mat + (size_t)r * vs->stride, row, vs->stride);
  if (vs->scales) vs->scales[r] = scale;
  for (int f = 0; f < vs->cfg.n_meta; f++) {
    if (vs->cfg.meta[f].kind == OA_META_CAT)
      vs->meta[f].codes[r] = meta ? codes[f] : -1;
    else
      vs->meta[f].nums[r] = meta ? (float)meta[f].num : NAN;
  }
  vs->generation++;
  rc = 0;
  if (row != stack_row) free(row);
  return r;
oom:
  rc = oa_error_set(err, OA_ENOMEM, "out of memory adding action '%.*s'", (int)idlen, id);
done:
  if (row != stack_row) free(row);
  return rc;
}

int oa_vecstore_remove(oa_vecstore *vs, const char *id, size_t idlen) {
  size_t slot;
  if (!id || !idlen) return OA_ENOTFOUND;
  int64_t r = map_find(vs, id, idlen, &slot);
  if (r < 0) return OA_ENOTFOUND;
  /* The free stack has room for every row, so pushing cannot fail. */
  if (vs->cap_holes < vs->cap) {
    int64_t *h = realloc(vs->holes, (size_t)vs->cap * sizeof *h);
    if (!h) return OA_ENOMEM;
    vs->holes = h;
    vs->cap_holes = vs->cap;
  }
  map_delete_slot(vs, slot);
  vs->id_bytes -= malloc_usable_size(vs->ids[r]) + 8;
  free(vs->ids[r]);
  vs->ids[r] = NULL;
  vs->livebits[r >> 6] &= ~((uint64_t)1 << (r & 63));
  memset(vs->mat + (size_t)r * vs->stride, 0, vs->stride);
  if (vs->scales) vs->scales[r] = 0;
  for (int f = 0; f < vs->cfg.n_meta; f++) {
    if (vs->cfg.meta[f].kind == OA_META_CAT)
      vs->meta[f].codes[r] = -1;
    else
      vs->meta[f].nums[r] = NAN;
  }
  vs->holes[vs->n_holes++] = r;
  vs->live--;
  vs->generation++;
  return 0;
}

/* ---- accessors ---- */

int64_t oa_vecstore_find(const oa_vecstore *vs, const char *id, size_t idlen) {
  if (!id || !idlen) return -1;
  return map_find(vs, id, idlen, NULL);
}

const char *oa_vecstore_id(const oa_vecstore *vs, int64_t row) {
  return row >= 0 && row < vs->rows ? vs->ids[row] : NULL;
}

int64_t oa_vecstore_count(const oa_vecstore *vs) {
  return vs->live;
}
int64_t oa_vecstore_rows(const oa_vecstore *vs) {
  return vs->rows;
}
uint64_t oa_vecstore_generation(const oa_vecstore *vs) {
  return vs->generation;
}
size_t oa_vecstore_stride(const oa_vecstore *vs) {
  return vs->stride;
}
const void *oa_vecstore_matrix(const oa_vecstore *vs) {
  return vs->mat;
}
const float *oa_vecstore_scales(const oa_vecstore *vs) {
  return vs->scales;
}
const uint64_t *oa_vecstore_live_bits(const oa_vecstore *vs) {
  return vs->livebits;
}
int oa_vecstore_is_mapped(const oa_vecstore *vs) {
  return vs->mat_kind == MAT_FILE;
}

int oa_vecstore_is_live(const oa_vecstore *vs, int64_t row) {
  return row >= 0 && row < vs->rows && is_live(vs, row);
}

int oa_vecstore_get(const oa_vecstore *vs, int64_t row, float *out) {
  if (!oa_vecstore_is_live(vs, row)) return OA_ENOTFOUND;
  const uint8_t *p = vs->mat + (size_t)row * vs->stride;
  int32_t d = vs->cfg.dim;
  switch (vs->cfg.format) {
  case OA_VEC_F32:
    memcpy(out, p, (size_t)d * 4);
    break;
  case OA_VEC_F16:
    for (int32_t i = 0; i < d; i++)
      out[i] = oa_f16_to_f32(((const uint16_t *)p)[i]);
    break;
  case OA_VEC_I8:
    for (int32_t i = 0; i < d; i++)
      out[i] = (float)((const int8_t *)p)[i] * vs->scales[row];
    break;
  }
  return 0;
}

const void *oa_vecstore_row_ptr(const oa_vecstore *vs, int64_t row) {
  return vs->mat + (size_t)row * vs->stride;
}

float oa_vecstore_row_scale(const oa_vecstore *vs, int64_t row) {
  return vs->scales ? vs->scales[row] : 1.0f;
}

int32_t oa_vecstore_meta_code(const oa_vecstore *vs, int64_t row, int32_t field) {
  if (field < 0 || field >= vs->cfg.n_meta || vs->cfg.meta[field].kind != OA_META_CAT ||
      row < 0 || row >= vs->rows)
    return -1;
  return vs->meta[field].codes[row];
}

float oa_vecstore_meta_num(const oa_vecstore *vs, int64_t row, int32_t field) {
  if (field < 0 || field >= vs->cfg.n_meta || vs->cfg.meta[field].kind != OA_META_NUM ||
      row < 0 || row >= vs->rows)
    return NAN;
  return vs->meta[field].nums[row];
}

int32_t oa_vecstore_meta_lookup(const oa_vecstore *vs, int32_t field, const char *s) {
  if (field < 0 || field >= vs->cfg.n_meta || vs->cfg.meta[field].kind != OA_META_CAT ||
      !s)
    return -1;
  int64_t code;
  return oa_strmap_get(&vs->meta[field].dict, s, strlen(s), &code) ? (int32_t)code : -1;
}

int32_t oa_vecstore_meta_field(const oa_vecstore *vs, const char *name) {
  for (int f = 0; f < vs->cfg.n_meta; f++)
    if (name && !strcmp(vs->cfg.meta[f].name, name)) return f;
  return -1;
}

int32_t oa_vecstore_meta_dict_size(const oa_vecstore *vs, int32_t field) {
  if (field < 0 || field >= vs->cfg.n_meta || vs->cfg.meta[field].kind != OA_META_CAT)
    return 0;
  return vs->meta[field].n_strs;
}

const char *oa_vecstore_meta_string(const oa_vecstore *vs, int32_t field, int32_t code) {
  if (code < 0 || code >= oa_vecstore_meta_dict_size(vs, field)) return NULL;
  return vs->meta[field].strs[code];
}

size_t oa_vecstore_size_bytes(const oa_vecstore *vs) {
  size_t n = sizeof *vs + vs->mat_bytes + vs->id_bytes;
  n += (size_t)vs->cap *
       (sizeof(char *) + (vs->scales ? 4 : 0) + 4 * (size_t)vs->cfg.n_meta);
  n += (size_t)(vs->cap + 63) / 64 * 8 + (size_t)vs->cap_holes * 8 + vs->n_slots * 8;
  for (int f = 0; f < vs->cfg.n_meta; f++) {
    const meta_col *m = &vs->meta[f];
    n += m->dict.cap * sizeof(oa_strmap_entry) + (size_t)m->cap_strs * sizeof(char *);
    for (int32_t i = 0; i < m->n_strs; i++)
      n += 2 * (strlen(m->strs[i]) + 1);
  }
  return n;
}

/* ---- persistence ---- */

static void put_u32(oa_buf *b, uint32_t v) {
  oa_buf_put_u32(b, v);
}

static void put_bytes_str(oa_buf *b, const char *s, size_t n) {
  put_u32(b, (uint32_t)n);
  oa_buf_put(b, s, n);
}

static void header_fill(uint8_t h[VEC_HEADER_SIZE], const oa_vecstore *vs,
                        uint64_t ids_len, uint64_t meta_len, uint64_t mat_off,
                        uint64_t mat_len) {
  memset(h, 0, VEC_HEADER_SIZE);
  memcpy(h, VEC_MAGIC, 8);
  uint32_t u32s[6] = {VEC_VERSION,
                      VEC_HEADER_SIZE,
                      (uint32_t)vs->cfg.dim,
                      (uint32_t)vs->cfg.format,
                      (uint32_t)vs->cfg.n_meta,
                      (uint32_t)vs->stride};
  memcpy(h + 8, u32s, sizeof u32s);
  uint64_t u64s[9] = {(uint64_t)vs->rows,
                      (uint64_t)vs->live,
                      vs->generation,
                      VEC_HEADER_SIZE,
                      ids_len,
                      VEC_HEADER_SIZE + ids_len,
                      meta_len,
                      mat_off,
                      mat_len};
  memcpy(h + 32, u64s, sizeof u64s);
}

static uint64_t checksum(const uint8_t *header, const void *ids, size_t ids_len,
                         const void *meta, size_t meta_len) {
  uint8_t h[VEC_HEADER_SIZE];
  memcpy(h, header, sizeof h);
  memset(h + 104, 0, 8);
  uint64_t c = oa_hash_bytes(h, sizeof h, 0);
  c = oa_hash_bytes(ids, ids_len, c);
  return oa_hash_bytes(meta, meta_len, c);
}

static int write_all(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n) {
    ssize_t w = write(fd, b, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

uint64_t oa_vecstore_matrix_hash(const oa_vecstore *vs) {
  return oa_hash_bytes(vs->mat, (size_t)vs->rows * vs->stride, 0x0a7ec);
}

uint64_t oa_vecstore_file_checksum(const oa_vecstore *vs) {
  return vs->file_sum;
}

int oa_vecstore_save_file(const oa_vecstore *vs, const char *path, oa_error *err) {
  return oa_vecstore_save_file_ex(vs, path, NULL, err);
}

int oa_vecstore_save_file_ex(const oa_vecstore *vs, const char *path,
                             oa_vecfile_info *info, oa_error *err) {
  oa_buf ids, meta;
  oa_buf_init(&ids);
  oa_buf_init(&meta);
  for (int64_t r = 0; r < vs->rows; r++) {
    const char *s = vs->ids[r];
    put_bytes_str(&ids, s ? s : "", s ? strlen(s) : 0);
  }
  for (int f = 0; f < vs->cfg.n_meta; f++) {
    const meta_col *m = &vs->meta[f];
    put_u32(&meta, (uint32_t)vs->cfg.meta[f].kind);
    put_bytes_str(&meta, vs->cfg.meta[f].name, strlen(vs->cfg.meta[f].name));
    if (vs->cfg.meta[f].kind == OA_META_CAT) {
      put_u32(&meta, (uint32_t)m->n_strs);
      for (int32_t i = 0; i < m->n_strs; i++)
        put_bytes_str(&meta, m->strs[i], strlen(m->strs[i]));
      oa_buf_put(&meta, m->codes, (size_t)vs->rows * 4);
    } else {
      oa_buf_put(&meta, m->nums, (size_t)vs->rows * 4);
    }
  }
  if (vs->scales) oa_buf_put(&meta, vs->scales, (size_t)vs->rows * 4);
  if (ids.failed || meta.failed) {
    oa_buf_free(&ids);
    oa_buf_free(&meta);
    return oa_error_set(err, OA_ENOMEM, "out of memory serialising the vector store");
  }
  uint64_t mat_off = (VEC_HEADER_SIZE + ids.len + meta.len + 4095) & ~(uint64_t)4095;
  uint64_t mat_len = (uint64_t)vs->rows * vs->stride;
  uint8_t h[VEC_HEADER_SIZE];
  header_fill(h, vs, ids.len, meta.len, mat_off, mat_len);
  uint64_t c = checksum(h, ids.data, ids.len, meta.data, meta.len);
  memcpy(h + 104, &c, 8);

  /* Temp file, fsync, rename: a crash leaves the old file or the new one. */
  char tmp[4096];
  int rc = 0;
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp) {
    rc = oa_error_set(err, OA_EINVAL, "path too long: %s", path);
    goto out;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    rc = oa_error_set(err, OA_EIO, "cannot create %s: %s", tmp, strerror(errno));
    goto out;
  }
  static const uint8_t zeros[4096];
  size_t pad = mat_off - (VEC_HEADER_SIZE + ids.len + meta.len);
  if (write_all(fd, h, sizeof h) || write_all(fd, ids.data, ids.len) ||
      write_all(fd, meta.data, meta.len) || write_all(fd, zeros, pad) ||
      write_all(fd, vs->mat, mat_len) || fsync(fd)) {
    rc = oa_error_set(err, OA_EIO, "cannot write %s: %s", tmp, strerror(errno));
    close(fd);
    unlink(tmp);
    goto out;
  }
  if (close(fd) || rename(tmp, path)) {
    rc = oa_error_set(err, OA_EIO, "cannot write %s: %s", path, strerror(errno));
    unlink(tmp);
    goto out;
  }
  if (info) {
    memset(info, 0, sizeof *info);
    info->version = VEC_VERSION;
    info->config = vs->cfg;
    info->rows = vs->rows;
    info->live = vs->live;
    info->generation = vs->generation;
    info->ids_bytes = ids.len;
    info->meta_bytes = meta.len;
    info->matrix_offset = mat_off;
    info->matrix_bytes = mat_len;
    info->file_bytes = mat_off + mat_len;
    info->checksum = c;
    info->matrix_hash = oa_vecstore_matrix_hash(vs);
  }
out:
  oa_buf_free(&ids);
  oa_buf_free(&meta);
  return rc;
}

static int read_at(int fd, void *p, size_t n, off_t off) {
  uint8_t *b = p;
  while (n) {
    ssize_t r = pread(fd, b, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    b += r;
    n -= (size_t)r;
    off += r;
  }
  return 0;
}

typedef struct file_header {
  uint32_t version, header_size, dim, format, n_meta, stride;
  uint64_t rows, live, generation, ids_off, ids_len, meta_off, meta_len, mat_off, mat_len,
      sum;
} file_header;

/* Parse and check the fixed header against the file size. */
static int header_parse(const uint8_t *h, uint64_t file_size, file_header *fh,
                        const char *path, oa_error *err) {
  if (memcmp(h, VEC_MAGIC, 8))
    return oa_error_set(err, OA_EFORMAT, "%s: not a onearm vector file (bad magic)",
                        path);
  memcpy(&fh->version, h + 8, 24);
  memcpy(&fh->rows, h + 32, 80);
  if (fh->version != VEC_VERSION)
    return oa_error_set(err, OA_EFORMAT,
                        "%s: vector file version %u, this build reads %u", path,
                        fh->version, VEC_VERSION);
  if (fh->header_size != VEC_HEADER_SIZE || fh->dim == 0 || fh->dim > (1u << 20) ||
      fh->format > OA_VEC_I8 || fh->n_meta > OA_VEC_MAX_META ||
      fh->stride != oa_vec_row_stride((int32_t)fh->dim, (oa_vec_format)fh->format) ||
      fh->rows >= ((uint64_t)1 << 32) || fh->live > fh->rows)
    return oa_error_set(err, OA_EFORMAT, "%s: corrupt vector file header", path);
  if (fh->ids_off != VEC_HEADER_SIZE || fh->meta_off != fh->ids_off + fh->ids_len ||
      fh->mat_off < fh->meta_off + fh->meta_len || fh->mat_off % 64 ||
      fh->mat_len != fh->rows * fh->stride || fh->ids_len > file_size ||
      fh->meta_len > file_size || fh->mat_off + fh->mat_len > file_size)
    return oa_error_set(
        err, OA_EFORMAT,
        "%s: truncated or corrupt vector file (sections do not fit in %llu "
        "bytes)",
        path, (unsigned long long)file_size);
  return 0;
}

int oa_vecstore_file_info(const char *path, oa_vecfile_info *info, oa_error *err) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return oa_error_set(err, OA_EIO, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  uint8_t h[VEC_HEADER_SIZE];
  file_header fh;
  int rc = 0;
  if (fstat(fd, &st) || st.st_size < VEC_HEADER_SIZE || read_at(fd, h, sizeof h, 0)) {
    rc = oa_error_set(err, OA_EFORMAT, "%s: truncated vector file", path);
    goto out;
  }
  if ((rc = header_parse(h, (uint64_t)st.st_size, &fh, path, err))) goto out;
  memset(info, 0, sizeof *info);
  info->version = fh.version;
  info->config.dim = (int32_t)fh.dim;
  info->config.format = (oa_vec_format)fh.format;
  info->config.n_meta = (int32_t)fh.n_meta;
  info->rows = (int64_t)fh.rows;
  info->live = (int64_t)fh.live;
  info->generation = fh.generation;
  info->ids_bytes = fh.ids_len;
  info->meta_bytes = fh.meta_len;
  info->matrix_offset = fh.mat_off;
  info->matrix_bytes = fh.mat_len;
  info->file_bytes = (uint64_t)st.st_size;
  info->checksum = fh.sum;
  /* Field names and kinds: walk the meta section's field headers. */
  uint8_t *meta = fh.meta_len ? malloc(fh.meta_len) : NULL;
  if (fh.meta_len && (!meta || read_at(fd, meta, fh.meta_len, (off_t)fh.meta_off))) {
    free(meta);
    rc = oa_error_set(err, OA_EIO, "%s: cannot read the metadata section", path);
    goto out;
  }
  oa_reader r;
  oa_reader_init(&r, meta, fh.meta_len);
  for (uint32_t f = 0; f < fh.n_meta && !r.failed; f++) {
    info->config.meta[f].kind = (oa_meta_kind)oa_read_u32(&r);
    oa_read_str(&r, info->config.meta[f].name, sizeof info->config.meta[f].name);
    if (info->config.meta[f].kind == OA_META_CAT) {
      uint32_t n = oa_read_u32(&r);
      for (uint32_t i = 0; i < n && !r.failed; i++) {
        uint32_t len = oa_read_u32(&r);
        if (len > r.len - r.pos)
          r.failed = 1;
        else
          r.pos += len;
      }
    }
    if (fh.rows * 4 > r.len - r.pos)
      r.failed = 1;
    else
      r.pos += fh.rows * 4;
  }
  free(meta);
  if (r.failed) rc = oa_error_set(err, OA_EFORMAT, "%s: corrupt metadata section", path);
out:
  close(fd);
  return rc;
}

oa_vecstore *oa_vecstore_load_file(const char *path, oa_error *err) {
  return oa_vecstore_load_file_ex(path, 0, err);
}

oa_vecstore *oa_vecstore_load_file_ex(const char *path, int flags, oa_error *err) {
  oa_vecstore *vs = NULL;
  uint8_t *ids = NULL, *meta = NULL;
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    oa_error_set(err, OA_EIO, "cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  uint8_t h[VEC_HEADER_SIZE];
  file_header fh;
  if (fstat(fd, &st) || st.st_size < VEC_HEADER_SIZE || read_at(fd, h, sizeof h, 0)) {
    oa_error_set(err, OA_EFORMAT, "%s: truncated vector file", path);
    goto fail;
  }
  if (header_parse(h, (uint64_t)st.st_size, &fh, path, err)) goto fail;
  ids = malloc(fh.ids_len + 1);
  meta = malloc(fh.meta_len + 1);
  if (!ids || !meta) {
    oa_error_set(err, OA_ENOMEM, "%s: out of memory", path);
    goto fail;
  }
  if (read_at(fd, ids, fh.ids_len, (off_t)fh.ids_off) ||
      read_at(fd, meta, fh.meta_len, (off_t)fh.meta_off)) {
    oa_error_set(err, OA_EIO, "%s: read error", path);
    goto fail;
  }
  uint64_t sum;
  memcpy(&sum, h + 104, 8);
  if (checksum(h, ids, fh.ids_len, meta, fh.meta_len) != sum) {
    oa_error_set(err, OA_EFORMAT, "%s: checksum mismatch (corrupt vector file)", path);
    goto fail;
  }

  /* The meta section carries the field declarations: read them first. */
  oa_vecstore_config cfg = {.dim = (int32_t)fh.dim,
                            .format = (oa_vec_format)fh.format,
                            .n_meta = (int32_t)fh.n_meta};
  oa_reader r;
  oa_reader_init(&r, meta, fh.meta_len);
  size_t col_pos[OA_VEC_MAX_META];
  uint32_t n_strs[OA_VEC_MAX_META] = {0};
  size_t strs_pos[OA_VEC_MAX_META];
  for (int f = 0; f < cfg.n_meta && !r.failed; f++) {
    cfg.meta[f].kind = (oa_meta_kind)oa_read_u32(&r);
    oa_read_str(&r, cfg.meta[f].name, sizeof cfg.meta[f].name);
    if (cfg.meta[f].kind == OA_META_CAT) {
      n_strs[f] = oa_read_u32(&r);
      strs_pos[f] = r.pos;
      for (uint32_t i = 0; i < n_strs[f] && !r.failed; i++) {
        uint32_t len = oa_read_u32(&r);
        if (len > r.len - r.pos)
          r.failed = 1;
        else
          r.pos += len;
      }
    } else if (cfg.meta[f].kind != OA_META_NUM) {
      r.failed = 1;
    }
    col_pos[f] = r.pos;
    if (fh.rows * 4 > r.len - r.pos)
      r.failed = 1;
    else
      r.pos += fh.rows * 4;
  }
  size_t scales_pos = r.pos;
  if (cfg.format == OA_VEC_I8) {
    if (fh.rows * 4 > r.len - r.pos)
      r.failed = 1;
    else
      r.pos += fh.rows * 4;
  }
  if (r.failed || r.pos != r.len) {
    oa_error_set(err, OA_EFORMAT, "%s: corrupt metadata section", path);
    goto fail;
  }
  if (!(vs = oa_vecstore_new(&cfg, err))) {
    oa_error_prefix(err, "%s", path);
    goto fail;
  }
  int64_t rows = (int64_t)fh.rows;
  if (store_grow(vs, rows ? rows : 1) || map_reserve(vs, (int64_t)fh.live)) {
    oa_error_set(err, OA_ENOMEM, "%s: out of memory for %lld rows", path,
                 (long long)rows);
    goto fail;
  }
  for (int f = 0; f < cfg.n_meta; f++) {
    meta_col *m = &vs->meta[f];
    if (cfg.meta[f].kind == OA_META_CAT) {
      oa_reader_init(&r, meta + strs_pos[f], fh.meta_len - strs_pos[f]);
      char s[OA_VEC_MAX_ID + 1];
      for (uint32_t i = 0; i < n_strs[f]; i++) {
        uint32_t len = oa_read_u32(&r);
        if (len > OA_VEC_MAX_ID || memchr(meta + strs_pos[f] + r.pos, 0, len)) {
          oa_error_set(err, OA_EFORMAT, "%s: bad metadata string", path);
          goto fail;
        }
        oa_read(&r, s, len);
        s[len] = 0;
        int32_t code = intern(m, s);
        if (code != (int32_t)i) {
          oa_error_set(err, code < 0 ? OA_ENOMEM : OA_EFORMAT,
                       "%s: metadata dictionary of '%s' is corrupt", path,
                       cfg.meta[f].name);
          goto fail;
        }
      }
      memcpy(m->codes, meta + col_pos[f], (size_t)rows * 4);
      for (int64_t k = 0; k < rows; k++)
        if (m->codes[k] < -1 || m->codes[k] >= m->n_strs) {
          oa_error_set(err, OA_EFORMAT, "%s: metadata code out of range", path);
          goto fail;
        }
    } else {
      memcpy(m->nums, meta + col_pos[f], (size_t)rows * 4);
    }
  }
  if (vs->scales) memcpy(vs->scales, meta + scales_pos, (size_t)rows * 4);

  /* Ids, live bits, map and holes. */
  oa_reader_init(&r, ids, fh.ids_len);
  vs->holes = malloc((size_t)vs->cap * sizeof *vs->holes);
  if (!vs->holes) {
    oa_error_set(err, OA_ENOMEM, "%s: out of memory", path);
    goto fail;
  }
  vs->cap_holes = vs->cap;
  for (int64_t k = 0; k < rows; k++) {
    uint32_t len = oa_read_u32(&r);
    if (r.failed || len > OA_VEC_MAX_ID || len > r.len - r.pos) {
      oa_error_set(err, OA_EFORMAT, "%s: corrupt ids section at row %lld", path,
                   (long long)k);
      goto fail;
    }
    const char *id = (const char *)ids + r.pos;
    r.pos += len;
    vs->rows = k + 1; /* so that free() sees the ids set so far */
    if (len == 0) continue;
    if (memchr(id, 0, len) || map_find(vs, id, len, NULL) >= 0) {
      oa_error_set(err, OA_EFORMAT, "%s: bad or duplicate id at row %lld", path,
                   (long long)k);
      goto fail;
    }
    if (!(vs->ids[k] = malloc(len + 1))) {
      oa_error_set(err, OA_ENOMEM, "%s: out of memory", path);
      goto fail;
    }
    memcpy(vs->ids[k], id, len);
    vs->ids[k][len] = 0;
    vs->id_bytes += malloc_usable_size(vs->ids[k]) + 8;
    vs->livebits[k >> 6] |= (uint64_t)1 << (k & 63);
    vs->live++;
    map_insert_slot(vs->slots, vs->n_slots, (uint32_t)id_hash(id, len), k);
  }
  vs->rows = rows;
  if (r.pos != r.len || vs->live != (int64_t)fh.live) {
    oa_error_set(err, OA_EFORMAT, "%s: ids section does not match the header", path);
    goto fail;
  }
  /* Holes are reused lowest row first. */
  for (int64_t k = rows - 1; k >= 0; k--)
    if (!vs->ids[k]) vs->holes[vs->n_holes++] = k;

  /* The matrix: map it when the offset allows, else read it. */
  long page = sysconf(_SC_PAGESIZE);
  if (fh.mat_len && !(flags & OA_VEC_LOAD_READ) && fh.mat_off % (uint64_t)page == 0) {
    void *p = mmap(NULL, fh.mat_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
                   (off_t)fh.mat_off);
    if (p != MAP_FAILED) {
      mat_release(vs);
      vs->mat = p;
      vs->mat_bytes = fh.mat_len;
      vs->mat_kind = MAT_FILE;
      vs->cap = rows; /* growing past the file copies it into memory */
      advise_huge(p, fh.mat_len);
    }
  }
  if (vs->mat_kind != MAT_FILE && fh.mat_len &&
      read_at(fd, vs->mat, fh.mat_len, (off_t)fh.mat_off)) {
    oa_error_set(err, OA_EIO, "%s: cannot read the matrix", path);
    goto fail;
  }
  vs->generation = fh.generation;
  vs->file_sum = sum;
  free(ids);
  free(meta);
  close(fd);
  return vs;
fail:
  oa_vecstore_free(vs);
  free(ids);
  free(meta);
  close(fd);
  return NULL;
}

/* ---- CSV bulk load ---- */

/* Split line (modified in place) at commas; returns the field count. */
static int split_csv(char *line, char **fields, int max) {
  int n = 0;
  char *p = line;
  for (;;) {
    if (n < max) fields[n] = p;
    n++;
    char *c = strchr(p, ',');
    if (!c) break;
    *c = 0;
    p = c + 1;
  }
  return n;
}

int oa_vecstore_load_csv(oa_vecstore *vs, const char *path,
                         void (*progress)(void *ud, int64_t rows, int64_t done,
                                          int64_t total),
                         void *ud, oa_error *err) {
  FILE *fp = fopen(path, "r");
  if (!fp) return oa_error_set(err, OA_EIO, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  int64_t total = fstat(fileno(fp), &st) == 0 ? (int64_t)st.st_size : 0;
  int32_t d = vs->cfg.dim;
  int maxf = d + 1 + 256;
  char **fields = malloc((size_t)maxf * sizeof *fields);
  float *vec = malloc((size_t)d * sizeof *vec);
  int col_meta[256]; /* column - (d+1) -> meta field or -1 */
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int64_t lineno = 0, rows = 0, done = 0;
  int rc = 0, ncols = 0;
  if (!fields || !vec) {
    rc = oa_error_set(err, OA_ENOMEM, "out of memory");
    goto out;
  }
  while ((len = getline(&line, &cap, fp)) >= 0) {
    lineno++;
    done += len;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = 0;
    if (len == 0) continue;
    int n = split_csv(line, fields, maxf);
    if (n > maxf) {
      rc = oa_error_set(err, OA_EINVAL, "%s:%lld: too many columns (%d)", path,
                        (long long)lineno, n);
      goto out;
    }
    if (ncols == 0) { /* the header */
      if (strcmp(fields[0], "id")) {
        rc = oa_error_set(err, OA_EINVAL,
                          "%s:%lld: the first column must be 'id', got '%s'", path,
                          (long long)lineno, fields[0]);
        goto out;
      }
      int nv = 0;
      while (nv + 1 < n && fields[nv + 1][0] == 'v' && fields[nv + 1][1] >= '0' &&
             fields[nv + 1][1] <= '9') {
        char want[16];
        snprintf(want, sizeof want, "v%d", nv);
        if (strcmp(fields[nv + 1], want)) {
          rc = oa_error_set(err, OA_EINVAL, "%s:%lld: column %d is '%s', expected '%s'",
                            path, (long long)lineno, nv + 2, fields[nv + 1], want);
          goto out;
        }
        nv++;
      }
      if (nv != d) {
        rc = oa_error_set(err, OA_EDIM,
                          "%s:%lld: the header has %d vector columns (v0..), the store's "
                          "dimension is %d",
                          path, (long long)lineno, nv, d);
        goto out;
      }
      for (int c = d + 1; c < n; c++)
        col_meta[c - d - 1] = oa_vecstore_meta_field(vs, fields[c]);
      ncols = n;
      continue;
    }
    if (n != ncols) {
      rc = oa_error_set(err, OA_EINVAL, "%s:%lld: %d columns, the header has %d", path,
                        (long long)lineno, n, ncols);
      goto out;
    }
    for (int i = 0; i < d; i++) {
      char *end;
      const char *s = fields[i + 1];
      vec[i] = strtof(s, &end);
      if (end == s || *end) {
        rc = oa_error_set(err, OA_EINVAL, "%s:%lld: column v%d: '%s' is not a number",
                          path, (long long)lineno, i, s);
        goto out;
      }
    }
    oa_meta_value mv[OA_VEC_MAX_META];
    for (int f = 0; f < vs->cfg.n_meta; f++)
      mv[f] = (oa_meta_value){NULL, NAN};
    for (int c = d + 1; c < n; c++) {
      int f = col_meta[c - d - 1];
      if (f < 0 || !fields[c][0]) continue; /* unknown column, or missing value */
      if (vs->cfg.meta[f].kind == OA_META_CAT) {
        mv[f].str = fields[c];
      } else {
        char *end;
        mv[f].num = strtod(fields[c], &end);
        if (*end) {
          rc = oa_error_set(err, OA_EINVAL, "%s:%lld: column %s: '%s' is not a number",
                            path, (long long)lineno, vs->cfg.meta[f].name, fields[c]);
          goto out;
        }
      }
    }
    int64_t row = oa_vecstore_upsert(vs, fields[0], strlen(fields[0]), vec, mv, err);
    if (row < 0) {
      rc = oa_error_prefix(err, "%s:%lld", path, (long long)lineno);
      goto out;
    }
    rows++;
    if (progress && (rows & 0xffff) == 0) progress(ud, rows, done, total);
  }
  if (ferror(fp)) {
    rc = oa_error_set(err, OA_EIO, "%s: read error", path);
    goto out;
  }
  if (ncols == 0) {
    rc = oa_error_set(err, OA_EINVAL, "%s: empty file (no header line)", path);
    goto out;
  }
  if (progress) progress(ud, rows, total, total);
out:
  free(line);
  free(fields);
  free(vec);
  fclose(fp);
  return rc;
}
