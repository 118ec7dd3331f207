/* Feature spaces: declared once (from Lua, or from C with this spec),
 * evaluated in C. A feature space turns a context record x and an action
 * record a into a dense row φ(x, a) of `dim` doubles.
 *
 * Field kinds (each field belongs to the context or the action side):
 *   NUM     a number; optional log (log1p(max(v, 0))), clip to [lo, hi],
 *           standardize ((v - mean) / std with the given constants)
 *   CAT     a categorical value (string, or integer number, or boolean),
 *           one-hot, hashed
 *   SET     a set or bag of strings (a list, or a map string -> weight),
 *           each item hashed with its weight (1 by default); a bag's
 *           weights are normalised to unit L2 norm when `normalize` is set
 *   DENSE   a fixed-length array of numbers (an embedding)
 *   CYCLIC  a number on a circle of `period` (hour of day: 24) encoded as
 *           (sin, cos), so 23h and 0h are neighbours
 * Crosses pair one context field with one action field (interests × topic):
 * every (context token, action token) pair is hashed to one index with
 * the product of their values. Numeric fields cross as a single token whose
 * weight is the (transformed) value.
 *
 * Layouts:
 *   HASHED  (default) every feature is hashed into [0, dim): fields, values
 *           and crosses share the space. Two features may collide (land on
 *           the same index): their values add. With k active features the
 *           expected number of colliding pairs is about k²/(2·dim); choose
 *           dim well above the number of active features (docs: README).
 *           Numeric, dense and cyclic fields are hashed per coordinate too.
 *   CONCAT  each field gets its own block in declaration order (context
 *           fields, then action fields, then crosses): NUM 1, CYCLIC 2,
 *           DENSE length, CAT/SET/cross `buckets` slots (values hashed within
 *           the block). dim is the sum. This is concat(x, a) for neural nets.
 * A bias feature (constant 1) is added at index 0 unless bias == 0 (in
 * CONCAT layout it is its own first slot).
 *
 * Missing fields contribute nothing. A value of the wrong type is an
 * OA_EINVAL error that names the field. NaN/Inf are OA_ENUMERIC errors.
 *
 * Hashing (decided in features.c, recorded here):
 *   - Every token is hashed with xxHash3 under a per-field seed derived from
 *     the space's seed, the field's side and its name, so the same value in
 *     two fields (or the same field name on the two sides) lands apart.
 *   - HASHED layout with bias: index 0 is reserved for the bias and every
 *     other feature hashes into [1, dim) (so dim >= 2 when there are
 *     fields); without bias, features hash into [0, dim). Collisions between
 *     other features remain possible (values add), never with the bias.
 *   - Indexes are reduced with a multiply-high range reduction, so any dim
 *     works (no power of two needed).
 *   - CAT numbers must be integers and hash as their decimal text: 3, 3.0
 *     and "3" are the same category; booleans arrive as 0/1.
 *   - Crosses mix the two per-token hashes (precomputed at compile time)
 *     with a salt per (context field, action field) pair; the value is the
 *     product of the two token values, each including its field's weight.
 *     NUM crosses as one token, CYCLIC as two (sin, cos), DENSE as one per
 *     coordinate.
 *   - Field names must be unique per side; a context and an action field
 *     may share a name (user language x video language). */
#ifndef ONEARM_CORE_FEATURES_H
#define ONEARM_CORE_FEATURES_H

#include <stdint.h>

#include "core/buf.h"
#include "onearm.h"

typedef enum oa_field_kind {
  OA_FK_NUM = 0,
  OA_FK_CAT,
  OA_FK_SET,
  OA_FK_DENSE,
  OA_FK_CYCLIC
} oa_field_kind;

typedef enum oa_side { OA_SIDE_CONTEXT = 0, OA_SIDE_ACTION = 1 } oa_side;
typedef enum oa_layout { OA_LAYOUT_HASHED = 0, OA_LAYOUT_CONCAT = 1 } oa_layout;

typedef struct oa_field_spec {
  char name[64];
  oa_side side;
  oa_field_kind kind;
  int log;  /* NUM: log1p(max(v,0)) before clipping */
  int clip; /* NUM: clip to [clip_lo, clip_hi] */
  double clip_lo, clip_hi;
  double mean, std; /* NUM: standardize when std > 0 */
  int32_t length;   /* DENSE: required length */
  double period;    /* CYCLIC: e.g. 24 */
  int32_t buckets;  /* CAT/SET in CONCAT layout (default 16) */
  int normalize;    /* SET: unit L2 norm of the weights */
  double weight;    /* multiplies the field's values (default 1) */
} oa_field_spec;

typedef struct oa_cross_spec {
  int32_t context_field; /* index into the spec's fields (a context field) */
  int32_t action_field;  /* index into the spec's fields (an action field) */
  int32_t buckets;       /* CONCAT layout block size (default 64) */
} oa_cross_spec;

typedef struct oa_features_spec {
  oa_layout layout;
  int32_t dim; /* HASHED: output dimension (required); CONCAT: ignored */
  int bias;    /* 1: add the constant feature */
  int32_t n_fields;
  const oa_field_spec *fields;
  int32_t n_cross;
  const oa_cross_spec *cross;
  uint64_t seed; /* hashing seed (default 0) */
} oa_features_spec;

typedef struct oa_features oa_features;

/* Validate and compile a spec (copied). NULL + err on a bad spec (duplicate
 * field names, a cross that does not pair a context with an action field,
 * dim <= 0, ...). Reference counted: starts at 1. */
oa_features *oa_features_new(const oa_features_spec *spec, oa_error *err);
oa_features *oa_features_retain(oa_features *fs);
void oa_features_release(oa_features *fs); /* frees at 0; NULL is fine */

int32_t oa_features_dim(const oa_features *fs);
/* "num", "cat", "set", "dense", "cyclic" ("?" for anything else). */
const char *oa_field_kind_name(oa_field_kind k);
/* Fields of one side, in declaration order: their "slots". */
int32_t oa_features_nfields(const oa_features *fs, oa_side side);
const oa_field_spec *oa_features_field(const oa_features *fs, oa_side side, int32_t slot);
int32_t oa_features_slot(const oa_features *fs, oa_side side, const char *name); /* -1 */
/* A 64-bit digest of the compiled spec: equal digests mean the same φ. */
uint64_t oa_features_digest(const oa_features *fs);

/* Named fields -> values by slot (values has nfields(side) entries, NONE for
 * missing ones). Fields the space does not declare are ignored. Borrowed:
 * values point into fields. */
int oa_features_bind(const oa_features *fs, oa_side side, const oa_field *fields,
                     int32_t n, oa_value *values, oa_error *err);

/* A compiled half (one context or one action): its own sparse features and
 * the tokens its cross fields contribute. Owned by the caller; reusable
 * (compile resets it). */
typedef struct oa_fpart oa_fpart;
oa_fpart *oa_fpart_new(void);
void oa_fpart_free(oa_fpart *p);
size_t oa_fpart_size(const oa_fpart *p);
/* Copy src into dst (dst's storage is reused). */
int oa_fpart_copy(oa_fpart *dst, const oa_fpart *src, oa_error *err);

/* Compile one side's values (by slot) into out. On error out is reset to
 * empty and err names the field. */
int oa_features_compile(const oa_features *fs, oa_side side, const oa_value *values,
                        oa_fpart *out, oa_error *err);
/* row := φ(x, a), dense, dim doubles (overwritten). act may be NULL (only
 * context features and the bias: the row for per-action models). */
void oa_features_join(const oa_features *fs, const oa_fpart *ctx, const oa_fpart *act,
                      double *row);

/* ---- Added by features.c: limits, introspection, persistence ---- */

#define OA_FEATURES_MAX_DIM     (1 << 24) /* HASHED dim and CONCAT total */
#define OA_FEATURES_MAX_FIELDS  256       /* fields in one space (both sides) */
#define OA_FEATURES_MAX_CROSS   256
#define OA_FEATURES_MAX_DENSE   (1 << 16) /* DENSE length */
#define OA_FEATURES_MAX_BUCKETS (1 << 20) /* CAT/SET/cross block in CONCAT */
#define OA_FEATURES_MAX_ITEMS   (1 << 20) /* items in one SET value */

/* A spec's zero defaults as compiled: weight 0 -> 1, buckets 0 -> 16 for
 * fields and 64 for crosses (CONCAT only; 0 in HASHED where they do not
 * apply). oa_features_field returns the normalized field: parameters that do
 * not apply to its kind are zeroed, flags are 0/1. Slots of the context
 * side come first in the normalized field order, then the action side. */

oa_layout oa_features_layout(const oa_features *fs);
int oa_features_bias(const oa_features *fs);
int32_t oa_features_ncross(const oa_features *fs);
/* Cross i as (context slot, action slot); OA_EINVAL when i is out of range. */
int oa_features_cross(const oa_features *fs, int32_t i, int32_t *ctx_slot,
                      int32_t *act_slot);
/* CONCAT layout: the block of a field ([offset, offset + width) of the row).
 * OA_EINVAL in HASHED layout or for a bad slot. */
int oa_features_block(const oa_features *fs, oa_side side, int32_t slot, int32_t *offset,
                      int32_t *width);

/* Persist a feature space: appends the normalized spec (tagged, versioned,
 * with its digest) to out. 0, or OA_ENOMEM when out failed to grow. */
int oa_features_spec_save(const oa_features *fs, oa_buf *out);
/* Read what oa_features_spec_save wrote and compile it: a new space
 * (refcount 1) with the same digest and the same φ. NULL + err (OA_EFORMAT
 * for truncated or corrupt data, or the validation error). */
oa_features *oa_features_spec_load(oa_reader *in, oa_error *err);

#endif
