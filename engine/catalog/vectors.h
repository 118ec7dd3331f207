/* The vector store: action vectors for retrieval, at catalog scale (10
 * million rows on a 24 GiB machine).
 *
 * Rows live in one contiguous, 64-byte aligned matrix (row stride rounded
 * up to a multiple of 64 bytes) so that a scan streams memory once. An id
 * <-> row map ties rows to action ids; removing an action leaves a hole
 * (no copy of the matrix) that a later insert reuses. Formats:
 *   F32  4 bytes per value (default)
 *   F16  2 bytes per value (IEEE half, converted with F16C)
 *   I8   1 byte per value plus a float scale per row (value = q * scale,
 *        scale = max|v| / 127): a quarter of the memory and bandwidth
 * Each row also carries metadata for filters: up to OA_VEC_MAX_META
 * categorical fields (strings interned per field to int32 codes) and
 * numeric fields (float), declared when the store is created.
 *
 * Threading: writers (upsert/remove) and readers (scans) must not overlap;
 * the engine runs writers on the loop thread between scans. Scans may use
 * several threads over disjoint row ranges. */
#ifndef ONEARM_CATALOG_VECTORS_H
#define ONEARM_CATALOG_VECTORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "onearm.h"

#define OA_VEC_MAX_META 16

typedef enum oa_vec_format { OA_VEC_F32 = 0, OA_VEC_F16, OA_VEC_I8 } oa_vec_format;

typedef enum oa_meta_kind { OA_META_CAT = 0, OA_META_NUM } oa_meta_kind;

typedef struct oa_meta_spec {
  char name[64];
  oa_meta_kind kind;
} oa_meta_spec;

typedef struct oa_vecstore_config {
  int32_t dim;
  oa_vec_format format;
  int32_t n_meta;
  oa_meta_spec meta[OA_VEC_MAX_META];
} oa_vecstore_config;

typedef struct oa_vecstore oa_vecstore;

/* One row's metadata as given to upsert: by meta field index; a NULL
 * string / NaN number means "missing". */
typedef struct oa_meta_value {
  const char *str; /* OA_META_CAT */
  double num;      /* OA_META_NUM */
} oa_meta_value;

oa_vecstore *oa_vecstore_new(const oa_vecstore_config *cfg, oa_error *err);
void oa_vecstore_free(oa_vecstore *vs);
const oa_vecstore_config *oa_vecstore_config_of(const oa_vecstore *vs);

/* Insert or replace; vec has dim finite floats (OA_ENUMERIC otherwise),
 * meta has n_meta values or is NULL. Returns the row (>= 0) or a negative
 * OA_E* code with nothing changed. */
int64_t oa_vecstore_upsert(oa_vecstore *vs, const char *id, size_t idlen,
                           const float *vec, const oa_meta_value *meta, oa_error *err);
int oa_vecstore_remove(oa_vecstore *vs, const char *id,
                       size_t idlen); /* 0 / OA_ENOTFOUND */
int64_t oa_vecstore_find(const oa_vecstore *vs, const char *id,
                         size_t idlen);                         /* row / -1 */
const char *oa_vecstore_id(const oa_vecstore *vs, int64_t row); /* NULL for a hole */
int64_t oa_vecstore_count(const oa_vecstore *vs);               /* live rows */
int64_t oa_vecstore_rows(const oa_vecstore *vs);                /* rows including holes */
/* Bumped by every upsert/remove: indexes compare it to know they are stale. */
uint64_t oa_vecstore_generation(const oa_vecstore *vs);
/* Decode row r into out (dim floats); 0, or OA_ENOTFOUND for a hole. */
int oa_vecstore_get(const oa_vecstore *vs, int64_t row, float *out);
/* Metadata code of a categorical field for row r (-1 missing) / number. */
int32_t oa_vecstore_meta_code(const oa_vecstore *vs, int64_t row, int32_t field);
float oa_vecstore_meta_num(const oa_vecstore *vs, int64_t row, int32_t field);
/* Interned code of a string in a categorical field, -1 when never seen. */
int32_t oa_vecstore_meta_lookup(const oa_vecstore *vs, int32_t field, const char *s);
int32_t oa_vecstore_meta_field(const oa_vecstore *vs, const char *name); /* -1 */
/* Raw access for scans: row r's bytes, and (I8) its scale. */
const void *oa_vecstore_row_ptr(const oa_vecstore *vs, int64_t row);
float oa_vecstore_row_scale(const oa_vecstore *vs, int64_t row);
int oa_vecstore_is_live(const oa_vecstore *vs, int64_t row);
size_t oa_vecstore_size_bytes(const oa_vecstore *vs);

/* Persistence: a documented binary file (see vectors.c) that loads back by
 * memory-mapping the matrix when the file is page aligned. */
int oa_vecstore_save_file(const oa_vecstore *vs, const char *path, oa_error *err);
oa_vecstore *oa_vecstore_load_file(const char *path, oa_error *err);
/* Bulk load a CSV with a header: id, v0..v{dim-1}, then metadata columns
 * named as in the config (others ignored). progress(ud, rows_done,
 * bytes_done, bytes_total) is called now and then (may be NULL). */
int oa_vecstore_load_csv(oa_vecstore *vs, const char *path,
                         void (*progress)(void *ud, int64_t rows, int64_t done,
                                          int64_t total),
                         void *ud, oa_error *err);

/* ---- Extensions (compatible additions) ----
 *
 * Ownership: the store owns everything it returns; pointers (ids, row
 * bytes, scales, live bits, dictionary strings) stay valid until the next
 * upsert/remove/reserve or oa_vecstore_free, whichever comes first. Ids are
 * non-empty, at most OA_VEC_MAX_ID bytes, without NUL bytes. */
#define OA_VEC_MAX_ID 1024

/* Bytes per row in the matrix (a multiple of 64; the bytes past the
 * vector are zero). */
size_t oa_vecstore_stride(const oa_vecstore *vs);
/* The whole matrix (rows * stride bytes) and, for I8, the scales (one
 * float per row, NULL for other formats): for scans that walk rows. */
const void *oa_vecstore_matrix(const oa_vecstore *vs);
const float *oa_vecstore_scales(const oa_vecstore *vs);
/* Live rows as a bitmap: bit (r & 63) of word r >> 6 is set when row r
 * holds an action. Words cover oa_vecstore_rows() rows. */
const uint64_t *oa_vecstore_live_bits(const oa_vecstore *vs);
/* Grow the capacity to at least rows (bulk loads); 0 or OA_ENOMEM. */
int oa_vecstore_reserve(oa_vecstore *vs, int64_t rows, oa_error *err);
/* Categorical dictionaries: number of interned strings of a field and the
 * string of a code (NULL when out of range). */
int32_t oa_vecstore_meta_dict_size(const oa_vecstore *vs, int32_t field);
const char *oa_vecstore_meta_string(const oa_vecstore *vs, int32_t field, int32_t code);
/* 1 while the matrix is a private mapping of the file it was loaded from
 * (it becomes an anonymous copy when the store grows past its size). */
int oa_vecstore_is_mapped(const oa_vecstore *vs);

/* "f32", "f16", "i8"; parse returns 0 or OA_EINVAL. */
const char *oa_vec_format_name(oa_vec_format f);
int oa_vec_format_parse(const char *s, oa_vec_format *out);
/* Bytes per row of the matrix for a dim and format (64-byte rounded). */
size_t oa_vec_row_stride(int32_t dim, oa_vec_format f);

/* Load flags: OA_VEC_LOAD_READ reads the matrix into memory even when the
 * file could be mapped (for files on storage that may change under us). */
#define OA_VEC_LOAD_READ 1
oa_vecstore *oa_vecstore_load_file_ex(const char *path, int flags, oa_error *err);
/* Read the header of a saved file without loading it (onearm catalog info). */
typedef struct oa_vecfile_info {
  uint32_t version;
  oa_vecstore_config config;
  int64_t rows, live;
  uint64_t generation;
  uint64_t ids_bytes, meta_bytes, matrix_offset, matrix_bytes, file_bytes;
  uint64_t checksum;    /* the header's checksum (header, ids and metadata) */
  uint64_t matrix_hash; /* oa_vecstore_save_file_ex only: oa_vecstore_matrix_hash */
} oa_vecfile_info;
int oa_vecstore_file_info(const char *path, oa_vecfile_info *info, oa_error *err);

/* The file's checksum does not cover the matrix (reading it would defeat
 * mapping), so a caller that must detect a corrupt matrix (snapshots)
 * keeps this hash (XXH3 of the rows * stride matrix bytes) beside the file
 * and compares it after loading. */
uint64_t oa_vecstore_matrix_hash(const oa_vecstore *vs);
/* oa_vecstore_save_file that also describes what it wrote (info may be
 * NULL): sizes, the checksum and the matrix hash, so the file can be
 * referenced from another (a snapshot) and checked when it loads back. */
int oa_vecstore_save_file_ex(const oa_vecstore *vs, const char *path,
                             oa_vecfile_info *info, oa_error *err);
/* The checksum of the file the store was loaded from (0: not loaded). */
uint64_t oa_vecstore_file_checksum(const oa_vecstore *vs);

/* Float16 conversions used by the F16 format (round to nearest even). */
uint16_t oa_f32_to_f16(float f);
float oa_f16_to_f32(uint16_t h);

#endif
