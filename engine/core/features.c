/* Feature spaces: compile a declarative spec once, then turn each context
 * and each action into a compact "part" (sparse own features + hashed cross
 * tokens) so that building φ(x, a) per candidate is a tight scatter loop.
 *
 * Work is split by how often it runs:
 *   oa_features_new      once per policy: validate, normalize, precompute
 *                        per-field seeds, per-coordinate indexes and the
 *                        per-cross salts;
 *   oa_features_compile  once per request (context) or per catalog update
 *                        (action): type checks, transforms, string hashing;
 *   oa_features_join     once per candidate: memset, two sparse scatters and
 *                        one multiply-xorshift per cross pair; no hashing of
 *                        strings, no allocation, no branches on kinds.
 *
 * The hashing decisions are documented in features.h. */
#include "core/features.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/error.h"
#include "core/strmap.h"

#define FS_TAG       "OAFS"
#define FS_VERSION   1u
#define SALT_CONTEXT 0x243f6a8885a308d3ULL
#define SALT_ACTION  0x13198a2e03707344ULL
#define SALT_CROSS   0xa4093822299f31d0ULL
#define MIX_K1       0x9e3779b97f4a7c15ULL
#define MIX_K2       0xd6e8feb86659fd93ULL
#define DEFAULT_BKT  16
#define DEFAULT_XBKT 64
#define TWO_PI       6.283185307179586476925286766559

/* One compiled field. `base`/`range` is where its hashed tokens land. */
typedef struct fs_field {
  oa_field_spec spec; /* normalized */
  uint64_t seed;      /* per-field hashing seed */
  int32_t base, range;
  int32_t offset, width; /* CONCAT block (width 0 in HASHED) */
  int32_t list;          /* cross-token list index on its side, -1 if not crossed */
  int32_t ncoord;        /* NUM 1, CYCLIC 2, DENSE length, else 0 */
  int32_t *coord_idx;    /* output index per coordinate */
  uint64_t *coord_tok;   /* cross token per coordinate */
} fs_field;

typedef struct fs_cross {
  int32_t ctx_slot, act_slot;
  int32_t ctx_list, act_list;
  int32_t buckets; /* normalized (0 in HASHED) */
  int32_t base, range;
  uint64_t salt;
} fs_cross;

struct oa_features {
  int refs;
  oa_layout layout;
  int32_t dim;
  int bias;
  uint64_t seed, digest;
  int32_t n[2];
  fs_field *fields[2]; /* by side, by slot */
  oa_strmap names[2];  /* name -> slot */
  int32_t nlists[2];
  int32_t n_cross;
  fs_cross *cross;
};

struct oa_fpart {
  uint64_t digest; /* of the space that compiled it; 0 = empty */
  int32_t side;
  int32_t n, cap; /* own sparse features */
  int32_t *idx;
  double *val;
  int32_t nlists, lists_cap; /* cross-token lists: list l is [off[l], off[l+1]) */
  int32_t *list_off;
  int32_t ntok, tok_cap;
  uint64_t *tok;
  double *tw;
};

const char *oa_field_kind_name(oa_field_kind k) {
  switch (k) {
  case OA_FK_NUM:
    return "num";
  case OA_FK_CAT:
    return "cat";
  case OA_FK_SET:
    return "set";
  case OA_FK_DENSE:
    return "dense";
  case OA_FK_CYCLIC:
    return "cyclic";
  }
  return "?";
}

static const char *type_name(oa_value_type t) {
  switch (t) {
  case OA_VAL_NONE:
    return "nothing";
  case OA_VAL_NUM:
    return "a number";
  case OA_VAL_STR:
    return "a string";
  case OA_VAL_LIST:
    return "a list";
  case OA_VAL_VEC:
    return "a vector";
  }
  return "an unknown value type";
}

static const char *side_name(int side) {
  return side == OA_SIDE_ACTION ? "action" : "context";
}

/* Range reduction without division: the high 64 bits of h * range. */
static inline int32_t reduce(uint64_t h, int32_t range) {
  return (int32_t)(((unsigned __int128)h * (uint64_t)range) >> 64);
}

/* -0.0 and 0.0 give the same φ, so they serialize (and digest) the same. */
static double canon(double v) {
  return v == 0 ? 0.0 : v;
}

/* ---- Spec validation and compilation ---- */

/* Copy one field spec into its normalized form: defaults applied, flags 0/1,
 * parameters that do not apply to the kind zeroed (so they cannot change
 * the digest without changing φ). */
static int normalize_field(const oa_field_spec *in, int32_t i, oa_layout layout,
                           oa_field_spec *out, oa_error *err) {
  memset(out, 0, sizeof *out);
  const char *end = memchr(in->name, 0, sizeof in->name);
  if (!end) return oa_error_set(err, OA_EINVAL, "field %d: name longer than 63 bytes", i);
  if (end == in->name) return oa_error_set(err, OA_EINVAL, "field %d: empty name", i);
  memcpy(out->name, in->name, (size_t)(end - in->name));
  const char *nm = out->name;
  if (in->side != OA_SIDE_CONTEXT && in->side != OA_SIDE_ACTION)
    return oa_error_set(err, OA_EINVAL,
                        "field '%s': side %d is neither context nor action", nm,
                        (int)in->side);
  out->side = in->side;
  if ((unsigned)in->kind > OA_FK_CYCLIC)
    return oa_error_set(err, OA_EINVAL, "field '%s': unknown kind %d", nm, (int)in->kind);
  out->kind = in->kind;
  if (!isfinite(in->weight))
    return oa_error_set(err, OA_EINVAL, "field '%s': weight must be a finite number", nm);
  out->weight = in->weight == 0 ? 1.0 : in->weight;
  switch (in->kind) {
  case OA_FK_NUM:
    out->log = in->log != 0;
    out->clip = in->clip != 0;
    if (out->clip) {
      if (isnan(in->clip_lo) || isnan(in->clip_hi))
        return oa_error_set(err, OA_EINVAL, "field '%s': clip bounds must be numbers",
                            nm);
      if (in->clip_lo > in->clip_hi)
        return oa_error_set(err, OA_EINVAL, "field '%s': clip_lo %g is above clip_hi %g",
                            nm, in->clip_lo, in->clip_hi);
      out->clip_lo = canon(in->clip_lo);
      out->clip_hi = canon(in->clip_hi);
    }
    if (!isfinite(in->std) || in->std < 0)
      return oa_error_set(err, OA_EINVAL, "field '%s': std must be a finite number >= 0",
                          nm);
    if (in->std > 0) {
      if (!isfinite(in->mean))
        return oa_error_set(err, OA_EINVAL, "field '%s': mean must be finite", nm);
      out->mean = canon(in->mean);
      out->std = in->std;
    }
    break;
  case OA_FK_SET:
    out->normalize = in->normalize != 0; /* fall through */
  case OA_FK_CAT:
    if (in->buckets < 0 || in->buckets > OA_FEATURES_MAX_BUCKETS)
      return oa_error_set(err, OA_EINVAL, "field '%s': buckets must be 1 to %d (0: %d)",
                          nm, OA_FEATURES_MAX_BUCKETS, DEFAULT_BKT);
    if (layout == OA_LAYOUT_CONCAT)
      out->buckets = in->buckets ? in->buckets : DEFAULT_BKT;
    break;
  case OA_FK_DENSE:
    if (in->length <= 0 || in->length > OA_FEATURES_MAX_DENSE)
      return oa_error_set(err, OA_EINVAL,
                          "field '%s' (dense): length must be 1 to %d, got %d", nm,
                          OA_FEATURES_MAX_DENSE, (int)in->length);
    out->length = in->length;
    break;
  case OA_FK_CYCLIC:
    if (!isfinite(in->period) || in->period <= 0)
      return oa_error_set(err, OA_EINVAL,
                          "field '%s' (cyclic): period must be > 0, got %g", nm,
                          in->period);
    out->period = in->period;
    break;
  }
  return 0;
}

static int32_t field_width(const oa_field_spec *f) {
  switch (f->kind) {
  case OA_FK_NUM:
    return 1;
  case OA_FK_CYCLIC:
    return 2;
  case OA_FK_DENSE:
    return f->length;
  default:
    return f->buckets;
  }
}

static uint64_t coord_token(uint64_t field_seed, uint64_t i) {
  return XXH3_64bits_withSeed(&i, sizeof i, field_seed);
}

/* The canonical serialization of a compiled space: what the digest hashes
 * and what spec_save writes. Fields in slot order (context, then action);
 * crosses as indexes into that order. */
static void put_canonical(const oa_features *fs, oa_buf *b) {
  oa_buf_put_u32(b, (uint32_t)fs->layout);
  oa_buf_put_i64(b, fs->dim);
  oa_buf_put_u32(b, (uint32_t)fs->bias);
  oa_buf_put_u64(b, fs->seed);
  oa_buf_put_u32(b, (uint32_t)(fs->n[0] + fs->n[1]));
  for (int s = 0; s < 2; s++)
    for (int32_t k = 0; k < fs->n[s]; k++) {
      const oa_field_spec *f = &fs->fields[s][k].spec;
      oa_buf_put_str(b, f->name);
      oa_buf_put_u32(b, (uint32_t)f->side);
      oa_buf_put_u32(b, (uint32_t)f->kind);
      oa_buf_put_u32(b, (uint32_t)f->log);
      oa_buf_put_u32(b, (uint32_t)f->clip);
      oa_buf_put_f64(b, f->clip_lo);
      oa_buf_put_f64(b, f->clip_hi);
      oa_buf_put_f64(b, f->mean);
      oa_buf_put_f64(b, f->std);
      oa_buf_put_i64(b, f->length);
      oa_buf_put_f64(b, f->period);
      oa_buf_put_i64(b, f->buckets);
      oa_buf_put_u32(b, (uint32_t)f->normalize);
      oa_buf_put_f64(b, f->weight);
    }
  oa_buf_put_u32(b, (uint32_t)fs->n_cross);
  for (int32_t c = 0; c < fs->n_cross; c++) {
    oa_buf_put_i64(b, fs->cross[c].ctx_slot);
    oa_buf_put_i64(b, fs->n[0] + fs->cross[c].act_slot);
    oa_buf_put_i64(b, fs->cross[c].buckets);
  }
}

static void features_free(oa_features *fs) {
  for (int s = 0; s < 2; s++) {
    for (int32_t k = 0; k < fs->n[s]; k++) {
      free(fs->fields[s][k].coord_idx);
      free(fs->fields[s][k].coord_tok);
    }
    free(fs->fields[s]);
    oa_strmap_free(&fs->names[s]);
  }
  free(fs->cross);
  free(fs);
}

/* Lay out blocks (CONCAT) or the shared hash range (HASHED), then derive the
 * per-field coordinate indexes and tokens and the per-cross salts. */
static int compile_layout(oa_features *fs, oa_error *err) {
  int64_t off = fs->bias ? 1 : 0;
  int32_t hbase = fs->bias ? 1 : 0, hrange = fs->dim - hbase;
  if (fs->layout == OA_LAYOUT_HASHED && hrange < 1 && fs->n[0] + fs->n[1] > 0)
    return oa_error_set(
        err, OA_EINVAL,
        "dim %d leaves no room for features next to the bias (need dim >= 2)",
        (int)fs->dim);
  for (int s = 0; s < 2; s++)
    for (int32_t k = 0; k < fs->n[s]; k++) {
      fs_field *f = &fs->fields[s][k];
      if (fs->layout == OA_LAYOUT_CONCAT) {
        f->offset = (int32_t)off;
        f->width = field_width(&f->spec);
        f->base = f->offset;
        f->range = f->width;
        off += f->width;
        if (off > OA_FEATURES_MAX_DIM)
          return oa_error_set(err, OA_EINVAL, "CONCAT dimension exceeds %d at field '%s'",
                              OA_FEATURES_MAX_DIM, f->spec.name);
      } else {
        f->base = hbase;
        f->range = hrange;
      }
      int32_t nc = f->spec.kind == OA_FK_NUM      ? 1
                   : f->spec.kind == OA_FK_CYCLIC ? 2
                   : f->spec.kind == OA_FK_DENSE  ? f->spec.length
                                                  : 0;
      f->ncoord = nc;
      if (!nc) continue;
      f->coord_idx = malloc(sizeof *f->coord_idx * (size_t)nc);
      f->coord_tok = malloc(sizeof *f->coord_tok * (size_t)nc);
      if (!f->coord_idx || !f->coord_tok)
        return oa_error_set(err, OA_ENOMEM, "out of memory");
      for (int32_t i = 0; i < nc; i++) {
        f->coord_tok[i] = coord_token(f->seed, (uint64_t)i);
        f->coord_idx[i] = fs->layout == OA_LAYOUT_CONCAT
                              ? f->offset + i
                              : hbase + reduce(f->coord_tok[i], hrange);
      }
    }
  for (int32_t c = 0; c < fs->n_cross; c++) {
    fs_cross *x = &fs->cross[c];
    if (fs->layout == OA_LAYOUT_CONCAT) {
      x->base = (int32_t)off;
      x->range = x->buckets;
      off += x->buckets;
      if (off > OA_FEATURES_MAX_DIM)
        return oa_error_set(err, OA_EINVAL, "CONCAT dimension exceeds %d at cross %d",
                            OA_FEATURES_MAX_DIM, (int)c);
    } else {
      x->base = hbase;
      x->range = hrange;
    }
    uint64_t seeds[2] = {fs->fields[0][x->ctx_slot].seed,
                         fs->fields[1][x->act_slot].seed};
    x->salt = XXH3_64bits_withSeed(seeds, sizeof seeds, fs->seed ^ SALT_CROSS);
  }
  if (fs->layout == OA_LAYOUT_CONCAT) {
    if (off == 0)
      return oa_error_set(err, OA_EINVAL, "the feature space has no features");
    fs->dim = (int32_t)off;
  }
  return 0;
}

oa_features *oa_features_new(const oa_features_spec *spec, oa_error *err) {
  if (!spec) {
    oa_error_set(err, OA_EINVAL, "no feature spec");
    return NULL;
  }
  if (spec->layout != OA_LAYOUT_HASHED && spec->layout != OA_LAYOUT_CONCAT) {
    oa_error_set(err, OA_EINVAL, "unknown feature layout %d", (int)spec->layout);
    return NULL;
  }
  if (spec->layout == OA_LAYOUT_HASHED &&
      (spec->dim <= 0 || spec->dim > OA_FEATURES_MAX_DIM)) {
    oa_error_set(err, OA_EINVAL, "dim must be 1 to %d for a hashed feature space, got %d",
                 OA_FEATURES_MAX_DIM, (int)spec->dim);
    return NULL;
  }
  if (spec->n_fields < 0 || spec->n_fields > OA_FEATURES_MAX_FIELDS ||
      (spec->n_fields > 0 && !spec->fields)) {
    oa_error_set(err, OA_EINVAL, "a feature space has 0 to %d fields, got %d",
                 OA_FEATURES_MAX_FIELDS, (int)spec->n_fields);
    return NULL;
  }
  if (spec->n_cross < 0 || spec->n_cross > OA_FEATURES_MAX_CROSS ||
      (spec->n_cross > 0 && !spec->cross)) {
    oa_error_set(err, OA_EINVAL, "a feature space has 0 to %d crosses, got %d",
                 OA_FEATURES_MAX_CROSS, (int)spec->n_cross);
    return NULL;
  }
  oa_features *fs = calloc(1, sizeof *fs);
  int32_t *slot_of = calloc((size_t)spec->n_fields + 1, sizeof *slot_of);
  if (!fs || !slot_of) {
    free(fs);
    free(slot_of);
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  fs->refs = 1;
  fs->layout = spec->layout;
  fs->dim = spec->layout == OA_LAYOUT_HASHED ? spec->dim : 0;
  fs->bias = spec->bias != 0;
  fs->seed = spec->seed;
  oa_strmap_init(&fs->names[0]);
  oa_strmap_init(&fs->names[1]);
  for (int s = 0; s < 2; s++) {
    fs->fields[s] = calloc((size_t)spec->n_fields + 1, sizeof(fs_field));
    if (!fs->fields[s]) {
      oa_error_set(err, OA_ENOMEM, "out of memory");
      goto fail;
    }
  }
  for (int32_t i = 0; i < spec->n_fields; i++) {
    oa_field_spec nf;
    if (normalize_field(&spec->fields[i], i, spec->layout, &nf, err)) goto fail;
    int s = nf.side;
    size_t len = strlen(nf.name);
    if (oa_strmap_get(&fs->names[s], nf.name, len, NULL)) {
      oa_error_set(err, OA_EINVAL, "%s field '%s' is declared twice", side_name(s),
                   nf.name);
      goto fail;
    }
    int32_t slot = fs->n[s]++;
    if (oa_strmap_put(&fs->names[s], nf.name, len, slot)) {
      oa_error_set(err, OA_ENOMEM, "out of memory");
      goto fail;
    }
    fs_field *f = &fs->fields[s][slot];
    f->spec = nf;
    f->seed =
        XXH3_64bits_withSeed(nf.name, len, fs->seed ^ (s ? SALT_ACTION : SALT_CONTEXT));
    f->list = -1;
    slot_of[i] = slot;
  }
  if (spec->n_cross) {
    fs->cross = calloc((size_t)spec->n_cross, sizeof *fs->cross);
    if (!fs->cross) {
      oa_error_set(err, OA_ENOMEM, "out of memory");
      goto fail;
    }
  }
  for (int32_t c = 0; c < spec->n_cross; c++) {
    const oa_cross_spec *cs = &spec->cross[c];
    int32_t a = cs->context_field, b = cs->action_field;
    if (a < 0 || a >= spec->n_fields || b < 0 || b >= spec->n_fields) {
      oa_error_set(err, OA_EINVAL,
                   "cross %d: field index out of range (%d, %d; %d fields)", (int)c,
                   (int)a, (int)b, (int)spec->n_fields);
      goto fail;
    }
    if (spec->fields[a].side != OA_SIDE_CONTEXT ||
        spec->fields[b].side != OA_SIDE_ACTION) {
      oa_error_set(
          err, OA_EINVAL,
          "cross %d ('%s' x '%s'): a cross pairs a context field with an action field",
          (int)c, fs->fields[spec->fields[a].side][slot_of[a]].spec.name,
          fs->fields[spec->fields[b].side][slot_of[b]].spec.name);
      goto fail;
    }
    if (cs->buckets < 0 || cs->buckets > OA_FEATURES_MAX_BUCKETS) {
      oa_error_set(err, OA_EINVAL, "cross %d: buckets must be 1 to %d (0: %d)", (int)c,
                   OA_FEATURES_MAX_BUCKETS, DEFAULT_XBKT);
      goto fail;
    }
    fs_cross *x = &fs->cross[c];
    x->ctx_slot = slot_of[a];
    x->act_slot = slot_of[b];
    for (int32_t d = 0; d < c; d++)
      if (fs->cross[d].ctx_slot == x->ctx_slot && fs->cross[d].act_slot == x->act_slot) {
        oa_error_set(err, OA_EINVAL, "cross %d ('%s' x '%s') repeats cross %d", (int)c,
                     fs->fields[0][x->ctx_slot].spec.name,
                     fs->fields[1][x->act_slot].spec.name, (int)d);
        goto fail;
      }
    if (spec->layout == OA_LAYOUT_CONCAT)
      x->buckets = cs->buckets ? cs->buckets : DEFAULT_XBKT;
    fs->n_cross = c + 1;
  }
  /* Token lists: one per crossed field, numbered in slot order. */
  for (int32_t c = 0; c < fs->n_cross; c++) {
    fs->fields[0][fs->cross[c].ctx_slot].list = 0;
    fs->fields[1][fs->cross[c].act_slot].list = 0;
  }
  for (int s = 0; s < 2; s++)
    for (int32_t k = 0; k < fs->n[s]; k++)
      if (fs->fields[s][k].list == 0) fs->fields[s][k].list = fs->nlists[s]++;
  for (int32_t c = 0; c < fs->n_cross; c++) {
    fs->cross[c].ctx_list = fs->fields[0][fs->cross[c].ctx_slot].list;
    fs->cross[c].act_list = fs->fields[1][fs->cross[c].act_slot].list;
  }
  if (compile_layout(fs, err)) goto fail;
  oa_buf b;
  oa_buf_init(&b);
  oa_buf_put_header(&b, FS_TAG, FS_VERSION);
  put_canonical(fs, &b);
  if (b.failed) {
    oa_buf_free(&b);
    oa_error_set(err, OA_ENOMEM, "out of memory");
    goto fail;
  }
  fs->digest = XXH3_64bits(b.data, b.len);
  if (!fs->digest) fs->digest = 1; /* 0 marks an empty part */
  oa_buf_free(&b);
  free(slot_of);
  return fs;
fail:
  free(slot_of);
  features_free(fs);
  return NULL;
}

oa_features *oa_features_retain(oa_features *fs) {
  if (fs) __atomic_add_fetch(&fs->refs, 1, __ATOMIC_RELAXED);
  return fs;
}

void oa_features_release(oa_features *fs) {
  if (fs && __atomic_sub_fetch(&fs->refs, 1, __ATOMIC_ACQ_REL) == 0) features_free(fs);
}

int32_t oa_features_dim(const oa_features *fs) {
  return fs->dim;
}
oa_layout oa_features_layout(const oa_features *fs) {
  return fs->layout;
}
int oa_features_bias(const oa_features *fs) {
  return fs->bias;
}
uint64_t oa_features_digest(const oa_features *fs) {
  return fs->digest;
}
int32_t oa_features_ncross(const oa_features *fs) {
  return fs->n_cross;
}

static int side_ok(int side) {
  return side == OA_SIDE_CONTEXT || side == OA_SIDE_ACTION;
}

int32_t oa_features_nfields(const oa_features *fs, oa_side side) {
  return side_ok(side) ? fs->n[side] : 0;
}

const oa_field_spec *oa_features_field(const oa_features *fs, oa_side side,
                                       int32_t slot) {
  if (!side_ok(side) || slot < 0 || slot >= fs->n[side]) return NULL;
  return &fs->fields[side][slot].spec;
}

int32_t oa_features_slot(const oa_features *fs, oa_side side, const char *name) {
  int64_t v;
  if (!side_ok(side) || !name || !oa_strmap_get(&fs->names[side], name, strlen(name), &v))
    return -1;
  return (int32_t)v;
}

int oa_features_cross(const oa_features *fs, int32_t i, int32_t *ctx_slot,
                      int32_t *act_slot) {
  if (i < 0 || i >= fs->n_cross) return OA_EINVAL;
  if (ctx_slot) *ctx_slot = fs->cross[i].ctx_slot;
  if (act_slot) *act_slot = fs->cross[i].act_slot;
  return 0;
}

int oa_features_block(const oa_features *fs, oa_side side, int32_t slot, int32_t *offset,
                      int32_t *width) {
  if (fs->layout != OA_LAYOUT_CONCAT || !side_ok(side) || slot < 0 || slot >= fs->n[side])
    return OA_EINVAL;
  if (offset) *offset = fs->fields[side][slot].offset;
  if (width) *width = fs->fields[side][slot].width;
  return 0;
}

int oa_features_bind(const oa_features *fs, oa_side side, const oa_field *fields,
                     int32_t n, oa_value *values, oa_error *err) {
  if (!side_ok(side)) return oa_error_set(err, OA_EINVAL, "bad side %d", (int)side);
  int32_t nf = fs->n[side];
  for (int32_t k = 0; k < nf; k++)
    values[k] = (oa_value){.type = OA_VAL_NONE};
  if (n > 0 && !fields) return oa_error_set(err, OA_EINVAL, "no fields given");
  uint8_t seen[OA_FEATURES_MAX_FIELDS] = {0};
  for (int32_t i = 0; i < n; i++) {
    const char *name = fields[i].name;
    if (!name) continue;
    int64_t slot;
    if (!oa_strmap_get(&fs->names[side], name, strlen(name), &slot)) continue;
    if (seen[slot]) {
      for (int32_t k = 0; k < nf; k++)
        values[k] = (oa_value){.type = OA_VAL_NONE};
      return oa_error_set(err, OA_EINVAL, "field '%s' is given twice", name);
    }
    seen[slot] = 1;
    values[slot] = fields[i].value;
  }
  return 0;
}

/* ---- Parts ---- */

oa_fpart *oa_fpart_new(void) {
  return calloc(1, sizeof(oa_fpart));
}

void oa_fpart_free(oa_fpart *p) {
  if (!p) return;
  free(p->idx);
  free(p->val);
  free(p->list_off);
  free(p->tok);
  free(p->tw);
  free(p);
}

size_t oa_fpart_size(const oa_fpart *p) {
  if (!p) return 0;
  return sizeof *p + (size_t)p->cap * (sizeof *p->idx + sizeof *p->val) +
         (size_t)p->lists_cap * sizeof *p->list_off +
         (size_t)p->tok_cap * (sizeof *p->tok + sizeof *p->tw);
}

static void part_reset(oa_fpart *p) {
  p->digest = 0;
  p->n = p->ntok = p->nlists = 0;
}

static int grow_feats(oa_fpart *p, int32_t need) {
  if (need <= p->cap) return 0;
  int32_t cap = p->cap ? p->cap : 32;
  while (cap < need)
    cap *= 2;
  int32_t *idx = realloc(p->idx, sizeof *idx * (size_t)cap);
  if (!idx) return OA_ENOMEM;
  p->idx = idx;
  double *val = realloc(p->val, sizeof *val * (size_t)cap);
  if (!val) return OA_ENOMEM;
  p->val = val;
  p->cap = cap;
  return 0;
}

static int grow_toks(oa_fpart *p, int32_t need) {
  if (need <= p->tok_cap) return 0;
  int32_t cap = p->tok_cap ? p->tok_cap : 32;
  while (cap < need)
    cap *= 2;
  uint64_t *tok = realloc(p->tok, sizeof *tok * (size_t)cap);
  if (!tok) return OA_ENOMEM;
  p->tok = tok;
  double *tw = realloc(p->tw, sizeof *tw * (size_t)cap);
  if (!tw) return OA_ENOMEM;
  p->tw = tw;
  p->tok_cap = cap;
  return 0;
}

static int grow_lists(oa_fpart *p, int32_t nlists) {
  if (nlists + 1 <= p->lists_cap) return 0;
  int32_t *off = realloc(p->list_off, sizeof *off * (size_t)(nlists + 1));
  if (!off) return OA_ENOMEM;
  p->list_off = off;
  p->lists_cap = nlists + 1;
  return 0;
}

int oa_fpart_copy(oa_fpart *dst, const oa_fpart *src, oa_error *err) {
  if (dst == src) return 0;
  part_reset(dst);
  if (grow_feats(dst, src->n) || grow_toks(dst, src->ntok) ||
      grow_lists(dst, src->nlists))
    return oa_error_set(err, OA_ENOMEM, "out of memory");
  if (src->n) {
    memcpy(dst->idx, src->idx, sizeof *dst->idx * (size_t)src->n);
    memcpy(dst->val, src->val, sizeof *dst->val * (size_t)src->n);
  }
  if (src->ntok) {
    memcpy(dst->tok, src->tok, sizeof *dst->tok * (size_t)src->ntok);
    memcpy(dst->tw, src->tw, sizeof *dst->tw * (size_t)src->ntok);
  }
  if (src->list_off && src->nlists)
    memcpy(dst->list_off, src->list_off,
           sizeof *dst->list_off * (size_t)(src->nlists + 1));
  dst->n = src->n;
  dst->ntok = src->ntok;
  dst->nlists = src->nlists;
  dst->side = src->side;
  dst->digest = src->digest;
  return 0;
}

/* ---- Compile ---- */

/* Append one own feature and, when the field is crossed, one token. The
 * capacity was reserved by the caller. */
static inline void emit(oa_fpart *p, const fs_field *f, int32_t idx, uint64_t tok,
                        double v) {
  if (v == 0) return;
  p->idx[p->n] = idx;
  p->val[p->n++] = v;
  if (f->list >= 0) {
    p->tok[p->ntok] = tok;
    p->tw[p->ntok++] = v;
  }
}

static int reserve(oa_fpart *p, int32_t k) {
  if (grow_feats(p, p->n + k) || grow_toks(p, p->ntok + k)) return OA_ENOMEM;
  return 0;
}

static int type_error(const fs_field *f, const char *expects, const oa_value *v,
                      oa_error *err) {
  return oa_error_set(err, OA_EINVAL, "field '%s' (%s) expects %s, got %s", f->spec.name,
                      oa_field_kind_name(f->spec.kind), expects, type_name(v->type));
}

static int not_finite(const fs_field *f, oa_error *err) {
  return oa_error_set(err, OA_ENUMERIC, "field '%s' (%s): value is NaN or infinite",
                      f->spec.name, oa_field_kind_name(f->spec.kind));
}

static inline int32_t token_index(const fs_field *f, uint64_t tok) {
  return f->base + reduce(tok, f->range);
}

/* A categorical number: an integer, hashed as its decimal text so that 3 and
 * "3" are the same category. */
static int cat_number(const fs_field *f, double x, uint64_t *tok, oa_error *err) {
  if (!isfinite(x)) return not_finite(f, err);
  if (x != trunc(x) || fabs(x) >= 9.2e18)
    return oa_error_set(err, OA_EINVAL,
                        "field '%s' (cat) expects a string or an integer, got %g",
                        f->spec.name, x);
  char buf[24];
  int n = snprintf(buf, sizeof buf, "%lld", (long long)x);
  *tok = XXH3_64bits_withSeed(buf, (size_t)n, f->seed);
  return 0;
}

static int compile_field(const fs_field *f, const oa_value *v, oa_fpart *p,
                         oa_error *err) {
  const oa_field_spec *s = &f->spec;
  switch (s->kind) {
  case OA_FK_NUM: {
    if (v->type != OA_VAL_NUM) return type_error(f, "a number", v, err);
    double x = v->num;
    if (!isfinite(x)) return not_finite(f, err);
    if (s->log) x = log1p(x > 0 ? x : 0);
    if (s->clip) x = x < s->clip_lo ? s->clip_lo : x > s->clip_hi ? s->clip_hi : x;
    if (s->std > 0) x = (x - s->mean) / s->std;
    x *= s->weight;
    if (!isfinite(x)) return not_finite(f, err);
    if (reserve(p, 1)) return OA_ENOMEM;
    emit(p, f, f->coord_idx[0], f->coord_tok[0], x);
    return 0;
  }
  case OA_FK_CYCLIC: {
    if (v->type != OA_VAL_NUM) return type_error(f, "a number", v, err);
    if (!isfinite(v->num)) return not_finite(f, err);
    /* fmod first: sin of a huge angle loses all precision. */
    double t = TWO_PI * fmod(v->num, s->period) / s->period;
    if (reserve(p, 2)) return OA_ENOMEM;
    emit(p, f, f->coord_idx[0], f->coord_tok[0], sin(t) * s->weight);
    emit(p, f, f->coord_idx[1], f->coord_tok[1], cos(t) * s->weight);
    return 0;
  }
  case OA_FK_DENSE: {
    if (v->type != OA_VAL_VEC) return type_error(f, "a vector", v, err);
    if (v->count != s->length)
      return oa_error_set(err, OA_EDIM, "field '%s' (dense) expects %d numbers, got %d",
                          s->name, (int)s->length, (int)v->count);
    if (!v->vec)
      return oa_error_set(err, OA_EINVAL, "field '%s' (dense): no data", s->name);
    if (!oa_all_finite(v->vec, v->count)) return not_finite(f, err);
    if (reserve(p, v->count)) return OA_ENOMEM;
    for (int32_t i = 0; i < v->count; i++)
      emit(p, f, f->coord_idx[i], f->coord_tok[i], v->vec[i] * s->weight);
    return 0;
  }
  case OA_FK_CAT: {
    uint64_t tok = 0;
    if (v->type == OA_VAL_STR) {
      if (!v->str && v->len) return type_error(f, "a string or an integer", v, err);
      tok = XXH3_64bits_withSeed(v->str ? v->str : "", v->len, f->seed);
    } else if (v->type == OA_VAL_NUM) {
      int rc = cat_number(f, v->num, &tok, err);
      if (rc) return rc;
    } else {
      return type_error(f, "a string or an integer", v, err);
    }
    if (reserve(p, 1)) return OA_ENOMEM;
    emit(p, f, token_index(f, tok), tok, s->weight);
    return 0;
  }
  case OA_FK_SET: {
    if (v->type == OA_VAL_STR) {
      if (!v->str && v->len) return type_error(f, "a list of strings", v, err);
      uint64_t tok = XXH3_64bits_withSeed(v->str ? v->str : "", v->len, f->seed);
      if (reserve(p, 1)) return OA_ENOMEM;
      emit(p, f, token_index(f, tok), tok, s->weight);
      return 0;
    }
    if (v->type != OA_VAL_LIST) return type_error(f, "a list of strings", v, err);
    int32_t n = v->count;
    if (n < 0 || n > OA_FEATURES_MAX_ITEMS || (n > 0 && !v->strs))
      return oa_error_set(err, OA_EINVAL, "field '%s' (set): bad list of %d items",
                          s->name, (int)n);
    double scale = s->weight;
    if (v->weights) {
      if (!oa_all_finite(v->weights, n)) return not_finite(f, err);
    }
    if (s->normalize) {
      double ss = 0;
      for (int32_t i = 0; i < n; i++)
        ss += v->weights ? v->weights[i] * v->weights[i] : 1.0;
      if (ss > 0) scale /= sqrt(ss);
    }
    if (reserve(p, n)) return OA_ENOMEM;
    for (int32_t i = 0; i < n; i++) {
      const char *item = v->strs[i];
      size_t len = v->lens ? v->lens[i] : item ? strlen(item) : 0;
      if (!item && len)
        return oa_error_set(err, OA_EINVAL, "field '%s' (set): item %d is missing",
                            s->name, (int)i);
      uint64_t tok = XXH3_64bits_withSeed(item ? item : "", len, f->seed);
      emit(p, f, token_index(f, tok), tok, (v->weights ? v->weights[i] : 1.0) * scale);
    }
    return 0;
  }
  }
  return oa_error_set(err, OA_EINVAL, "field '%s': unknown kind", s->name);
}

int oa_features_compile(const oa_features *fs, oa_side side, const oa_value *values,
                        oa_fpart *out, oa_error *err) {
  part_reset(out);
  if (!side_ok(side)) return oa_error_set(err, OA_EINVAL, "bad side %d", (int)side);
  if (grow_lists(out, fs->nlists[side]))
    return oa_error_set(err, OA_ENOMEM, "out of memory");
  out->side = side;
  out->nlists = fs->nlists[side];
  for (int32_t k = 0; k < fs->n[side]; k++) {
    const fs_field *f = &fs->fields[side][k];
    if (f->list >= 0) out->list_off[f->list] = out->ntok;
    if (!values || values[k].type == OA_VAL_NONE) continue;
    int rc = compile_field(f, &values[k], out, err);
    if (rc) {
      if (rc == OA_ENOMEM) oa_error_set(err, OA_ENOMEM, "out of memory");
      part_reset(out);
      return rc;
    }
  }
  if (out->nlists) out->list_off[out->nlists] = out->ntok;
  out->digest = fs->digest;
  return 0;
}

/* ---- Join: the per-candidate hot loop ---- */

void oa_features_join(const oa_features *fs, const oa_fpart *ctx, const oa_fpart *act,
                      double *row) {
  memset(row, 0, sizeof *row * (size_t)fs->dim);
  if (fs->bias) row[0] = 1.0;
  /* A part from another space (or an empty one) contributes nothing: its
   * indexes could point past this row. */
  if (ctx && (ctx->digest != fs->digest || ctx->side != OA_SIDE_CONTEXT)) ctx = NULL;
  if (act && (act->digest != fs->digest || act->side != OA_SIDE_ACTION)) act = NULL;
  if (ctx)
    for (int32_t i = 0; i < ctx->n; i++)
      row[ctx->idx[i]] += ctx->val[i];
  if (!act) return;
  for (int32_t i = 0; i < act->n; i++)
    row[act->idx[i]] += act->val[i];
  if (!ctx) return;
  for (int32_t c = 0; c < fs->n_cross; c++) {
    const fs_cross *x = &fs->cross[c];
    int32_t c0 = ctx->list_off[x->ctx_list], c1 = ctx->list_off[x->ctx_list + 1];
    int32_t a0 = act->list_off[x->act_list], a1 = act->list_off[x->act_list + 1];
    if (c0 == c1 || a0 == a1) continue;
    double *out = row + x->base;
    uint64_t range = (uint64_t)x->range;
    for (int32_t i = c0; i < c1; i++) {
      uint64_t hc = (ctx->tok[i] ^ x->salt) * MIX_K1;
      double wc = ctx->tw[i];
      for (int32_t j = a0; j < a1; j++) {
        uint64_t h = (hc ^ act->tok[j]) * MIX_K2;
        h ^= h >> 32;
        out[(int32_t)(((unsigned __int128)h * range) >> 64)] += wc * act->tw[j];
      }
    }
  }
}

/* ---- Persistence ---- */

int oa_features_spec_save(const oa_features *fs, oa_buf *out) {
  oa_buf_put_header(out, FS_TAG, FS_VERSION);
  put_canonical(fs, out);
  oa_buf_put_u64(out, fs->digest);
  return out->failed ? OA_ENOMEM : 0;
}

oa_features *oa_features_spec_load(oa_reader *in, oa_error *err) {
  if (oa_read_header(in, FS_TAG, FS_VERSION, NULL, err)) return NULL;
  oa_features_spec spec = {0};
  spec.layout = (oa_layout)oa_read_u32(in);
  spec.dim = (int32_t)oa_read_i64(in);
  spec.bias = (int)oa_read_u32(in);
  spec.seed = oa_read_u64(in);
  uint32_t nf = oa_read_u32(in);
  if (in->failed || nf > OA_FEATURES_MAX_FIELDS) {
    oa_error_set(err, OA_EFORMAT, "feature space data is truncated or corrupt");
    return NULL;
  }
  oa_field_spec *fields = calloc(nf + 1, sizeof *fields);
  oa_cross_spec *cross = NULL;
  oa_features *fs = NULL;
  if (!fields) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < nf && !in->failed; i++) {
    oa_field_spec *f = &fields[i];
    oa_read_str(in, f->name, sizeof f->name);
    f->side = (oa_side)oa_read_u32(in);
    f->kind = (oa_field_kind)oa_read_u32(in);
    f->log = (int)oa_read_u32(in);
    f->clip = (int)oa_read_u32(in);
    f->clip_lo = oa_read_f64(in);
    f->clip_hi = oa_read_f64(in);
    f->mean = oa_read_f64(in);
    f->std = oa_read_f64(in);
    f->length = (int32_t)oa_read_i64(in);
    f->period = oa_read_f64(in);
    f->buckets = (int32_t)oa_read_i64(in);
    f->normalize = (int)oa_read_u32(in);
    f->weight = oa_read_f64(in);
  }
  uint32_t nc = oa_read_u32(in);
  if (in->failed || nc > OA_FEATURES_MAX_CROSS) {
    oa_error_set(err, OA_EFORMAT, "feature space data is truncated or corrupt");
    goto done;
  }
  cross = calloc(nc + 1, sizeof *cross);
  if (!cross) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    goto done;
  }
  for (uint32_t c = 0; c < nc; c++) {
    cross[c].context_field = (int32_t)oa_read_i64(in);
    cross[c].action_field = (int32_t)oa_read_i64(in);
    cross[c].buckets = (int32_t)oa_read_i64(in);
  }
  uint64_t digest = oa_read_u64(in);
  if (in->failed) {
    oa_error_set(err, OA_EFORMAT, "feature space data is truncated");
    goto done;
  }
  spec.n_fields = (int32_t)nf;
  spec.fields = fields;
  spec.n_cross = (int32_t)nc;
  spec.cross = cross;
  fs = oa_features_new(&spec, err);
  if (!fs) {
    if (err && err->code != OA_ENOMEM) err->code = OA_EFORMAT;
    oa_error_prefix(err, "stored feature space");
    goto done;
  }
  if (fs->digest != digest) {
    oa_error_set(err, OA_EFORMAT, "stored feature space does not match its digest");
    oa_features_release(fs);
    fs = NULL;
  }
done:
  free(fields);
  free(cross);
  return fs;
}
