/* Feature spaces: every kind's encoding in both layouts, crosses, errors
 * that name the field, spec validation, digests and spec persistence.
 *
 * Hashed indexes are not recomputed here (that would copy the hashing
 * scheme into the test); instead each test finds where a feature lands by
 * compiling it alone, and checks the properties the contract promises:
 * values, distinctness, stability and the bias slot. */
#include "check.h"
#include "core/buf.h"
#include "core/features.h"

#include <string.h>

#define BIG                                                                              \
  (1 << 16) /* hashed dim large enough that a handful of features never collide */

static double row_a[BIG + 256], row_b[BIG + 256], row_c[BIG + 256];

static oa_field_spec fld(const char *name, oa_side side, oa_field_kind kind) {
  oa_field_spec f;
  memset(&f, 0, sizeof f);
  snprintf(f.name, sizeof f.name, "%s", name);
  f.side = side;
  f.kind = kind;
  return f;
}

static oa_value vnum(double x) {
  return (oa_value){.type = OA_VAL_NUM, .num = x};
}
static oa_value vstr(const char *s) {
  return (oa_value){.type = OA_VAL_STR, .str = s, .len = strlen(s)};
}
static oa_value vlist(const char *const *items, const double *w, int n) {
  return (oa_value){.type = OA_VAL_LIST, .strs = items, .weights = w, .count = n};
}
static oa_value vvec(const double *x, int n) {
  return (oa_value){.type = OA_VAL_VEC, .vec = x, .count = n};
}

static oa_features *space(oa_layout layout, int32_t dim, int bias, const oa_field_spec *f,
                          int nf, const oa_cross_spec *c, int nc) {
  oa_features_spec s = {.layout = layout,
                        .dim = dim,
                        .bias = bias,
                        .n_fields = nf,
                        .fields = f,
                        .n_cross = nc,
                        .cross = c,
                        .seed = 11};
  oa_error err = {0};
  oa_features *fs = oa_features_new(&s, &err);
  if (!fs) fprintf(stderr, "oa_features_new: %s\n", err.message);
  return fs;
}

/* Row for (context values, action values); either may be NULL. */
static void row_of(oa_features *fs, const oa_value *ctx, const oa_value *act,
                   double *row) {
  oa_fpart *c = oa_fpart_new(), *a = oa_fpart_new();
  oa_error err = {0};
  CHECK_OK(oa_features_compile(fs, OA_SIDE_CONTEXT, ctx, c, &err));
  if (act) CHECK_OK(oa_features_compile(fs, OA_SIDE_ACTION, act, a, &err));
  oa_features_join(fs, c, act ? a : NULL, row);
  oa_fpart_free(c);
  oa_fpart_free(a);
}

/* Indexes > 0 holding a nonzero value (index 0 is the bias). */
static int nonzeros(const double *row, int dim, int *idx, int cap) {
  int n = 0;
  for (int i = 1; i < dim; i++)
    if (row[i] != 0) {
      if (n < cap) idx[n] = i;
      n++;
    }
  return n;
}

/* ---- Kinds, hashed layout ---- */

static void num_transforms_and_weight(void) {
  oa_field_spec f[5] = {
      fld("x", OA_SIDE_CONTEXT, OA_FK_NUM), fld("lg", OA_SIDE_CONTEXT, OA_FK_NUM),
      fld("cl", OA_SIDE_CONTEXT, OA_FK_NUM), fld("st", OA_SIDE_CONTEXT, OA_FK_NUM),
      fld("all", OA_SIDE_CONTEXT, OA_FK_NUM)};
  f[0].weight = 3;
  f[1].log = 1;
  f[2].clip = 1, f[2].clip_lo = 0, f[2].clip_hi = 10;
  f[3].mean = 5, f[3].std = 2;
  f[4].log = 1, f[4].clip = 1, f[4].clip_lo = 0, f[4].clip_hi = 2, f[4].mean = 1,
  f[4].std = 0.5;
  oa_features *fs = space(OA_LAYOUT_HASHED, BIG, 1, f, 5, NULL, 0);
  CHECK(fs);
  oa_value none[5] = {{0}};
  int idx[8];
  struct {
    int field;
    double in, out;
  } cases[] = {
      {0, 2, 6},   {1, M_E - 1, 1},    {1, -5, 0}, /* log1p(max(v, 0)) */
      {2, 15, 10}, {2, -3, 0},         {2, 4, 4},
      {3, 9, 2},   {4, exp(5) - 1, 2}, /* log -> 5, clip -> 2, standardize -> (2 - 1) /
                                          0.5 */
  };
  int where[5] = {-1, -1, -1, -1, -1};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    oa_value v[5];
    memcpy(v, none, sizeof v);
    v[cases[k].field] = vnum(cases[k].in);
    row_of(fs, v, NULL, row_a);
    CHECK(row_a[0] == 1);
    int n = nonzeros(row_a, BIG, idx, 8);
    if (cases[k].out == 0) {
      CHECK(n == 0);
      continue;
    }
    CHECK(n == 1);
    CHECK_NEAR(row_a[idx[0]], cases[k].out, 1e-12);
    /* A numeric field's index does not depend on its value. */
    if (where[cases[k].field] < 0) where[cases[k].field] = idx[0];
    CHECK(where[cases[k].field] == idx[0]);
  }
  oa_features_release(fs);
}

static void cat_hashes_strings_and_integers(void) {
  oa_field_spec f[2] = {fld("device", OA_SIDE_CONTEXT, OA_FK_CAT),
                        fld("device", OA_SIDE_ACTION, OA_FK_CAT)};
  f[0].weight = 2;
  oa_features *fs = space(OA_LAYOUT_HASHED, BIG, 1, f, 2, NULL, 0);
  CHECK(fs);
  int idx[4];
  oa_value v = vstr("ios");
  row_of(fs, &v, NULL, row_a);
  CHECK(nonzeros(row_a, BIG, idx, 4) == 1);
  int ios = idx[0];
  CHECK(row_a[ios] == 2);
  v = vstr("android");
  row_of(fs, &v, NULL, row_a);
  CHECK(nonzeros(row_a, BIG, idx, 4) == 1 && idx[0] != ios);
  /* 3, 3.0 and "3" are one category; booleans are 0/1. */
  v = vnum(3);
  row_of(fs, &v, NULL, row_a);
  CHECK(nonzeros(row_a, BIG, idx, 4) == 1);
  int three = idx[0];
  v = vstr("3");
  row_of(fs, &v, NULL, row_b);
  CHECK(nonzeros(row_b, BIG, idx, 4) == 1 && idx[0] == three);
  v = vnum(-7);
  row_of(fs, &v, NULL, row_b);
  CHECK(nonzeros(row_b, BIG, idx, 4) == 1 && idx[0] != three);
  /* The same value in the action field of the same name lands elsewhere. */
  oa_value none = {0}, act = vstr("ios");
  row_of(fs, &none, &act, row_a);
  CHECK(nonzeros(row_a, BIG, idx, 4) == 1 && idx[0] != ios && row_a[idx[0]] == 1);
  oa_features_release(fs);
}

static void set_items_weights_and_normalisation(void) {
  oa_field_spec f[2] = {fld("tags", OA_SIDE_CONTEXT, OA_FK_SET),
                        fld("bag", OA_SIDE_CONTEXT, OA_FK_SET)};
  f[1].normalize = 1;
  oa_features *fs = space(OA_LAYOUT_HASHED, BIG, 0, f, 2, NULL, 0);
  CHECK(fs);
  int idx[8], ix = 0, iy = 0;
  const char *x[] = {"x"}, *xy[] = {"x", "y"};
  oa_value v[2] = {vlist(x, NULL, 1), {0}};
  row_of(fs, v, NULL, row_a);
  CHECK(row_a[0] == 0); /* no bias */
  CHECK(nonzeros(row_a, BIG, idx, 8) == 1);
  ix = idx[0];
  v[0] = vstr("y"); /* a single string is a one-item set */
  row_of(fs, v, NULL, row_a);
  CHECK(nonzeros(row_a, BIG, idx, 8) == 1);
  iy = idx[0];
  double w[] = {0.5, 4};
  v[0] = vlist(xy, w, 2);
  row_of(fs, v, NULL, row_a);
  CHECK(nonzeros(row_a, BIG, idx, 8) == 2);
  CHECK(row_a[ix] == 0.5 && row_a[iy] == 4);
  /* normalised bag: weights (3, 4) -> (0.6, 0.8); unweighted pair -> 1/sqrt(2) each */
  double w34[] = {3, 4};
  v[0] = (oa_value){0};
  v[1] = vlist(xy, w34, 2);
  row_of(fs, v, NULL, row_a);
  CHECK(nonzeros(row_a, BIG, idx, 8) == 2);
  double ss = 0;
  for (int i = 0; i < 2; i++)
    ss += row_a[idx[i]] * row_a[idx[i]];
  CHECK_NEAR(ss, 1, 1e-12);
  CHECK_NEAR(fmax(row_a[idx[0]], row_a[idx[1]]), 0.8, 1e-12);
  v[1] = vlist(xy, NULL, 2);
  row_of(fs, v, NULL, row_a);
  CHECK(nonzeros(row_a, BIG, idx, 8) == 2);
  CHECK_NEAR(row_a[idx[0]], sqrt(0.5), 1e-12);
  /* An empty list contributes nothing. */
  v[1] = vlist(xy, NULL, 0);
  row_of(fs, v, NULL, row_a);
  CHECK(nonzeros(row_a, BIG, idx, 8) == 0);
  oa_features_release(fs);
}

static void dense_and_cyclic(void) {
  oa_field_spec f[2] = {fld("emb", OA_SIDE_CONTEXT, OA_FK_DENSE),
                        fld("hour", OA_SIDE_CONTEXT, OA_FK_CYCLIC)};
  f[0].length = 4;
  f[1].period = 24;
  oa_features *fs = space(OA_LAYOUT_HASHED, BIG, 1, f, 2, NULL, 0);
  CHECK(fs);
  int idx[8];
  double e[4] = {0.25, -1, 2, 8};
  oa_value v[2] = {vvec(e, 4), {0}};
  row_of(fs, v, NULL, row_a);
  CHECK(nonzeros(row_a, BIG, idx, 8) == 4);
  double sum = 0, sum2 = 0;
  for (int i = 0; i < 4; i++)
    sum += row_a[idx[i]], sum2 += e[i];
  CHECK_NEAR(sum, sum2, 1e-12);
  /* hour: (sin, cos) at two fixed indexes; 23h is close to 0h, 12h is far. */
  double d23 = 0, d12 = 0;
  v[0] = (oa_value){0};
  v[1] = vnum(0);
  row_of(fs, v, NULL, row_a);
  v[1] = vnum(23);
  row_of(fs, v, NULL, row_b);
  v[1] = vnum(12);
  row_of(fs, v, NULL, row_c);
  CHECK(nonzeros(row_b, BIG, idx, 8) == 2);
  double s = 0, c = 0;
  for (int i = 0; i < 2; i++) {
    s += row_b[idx[i]] * row_b[idx[i]];
    c += row_a[idx[i]];
  }
  CHECK_NEAR(s, 1, 1e-12); /* sin² + cos² */
  CHECK_NEAR(c, 1, 1e-12); /* 0h: sin 0 + cos 1, both at the same indexes */
  for (int i = 1; i < BIG; i++) {
    d23 += (row_a[i] - row_b[i]) * (row_a[i] - row_b[i]);
    d12 += (row_a[i] - row_c[i]) * (row_a[i] - row_c[i]);
  }
  CHECK_NEAR(sqrt(d23), 2 * sin(M_PI / 24), 1e-9);
  CHECK_NEAR(sqrt(d12), 2, 1e-9);
  /* 24h is 0h, -1h is 23h. */
  v[1] = vnum(24);
  row_of(fs, v, NULL, row_c);
  for (int i = 0; i < BIG; i++)
    CHECK_NEAR(row_c[i], row_a[i], 1e-9);
  v[1] = vnum(-1);
  row_of(fs, v, NULL, row_c);
  for (int i = 0; i < BIG; i++)
    CHECK_NEAR(row_c[i], row_b[i], 1e-9);
  oa_features_release(fs);
}

static void missing_fields_give_zeros(void) {
  oa_field_spec f[3] = {fld("a", OA_SIDE_CONTEXT, OA_FK_NUM),
                        fld("b", OA_SIDE_CONTEXT, OA_FK_CAT),
                        fld("t", OA_SIDE_ACTION, OA_FK_CAT)};
  oa_cross_spec c = {.context_field = 1, .action_field = 2};
  oa_features *fs = space(OA_LAYOUT_HASHED, 257, 1, f, 3, &c, 1);
  CHECK(fs);
  oa_value none[2] = {{0}}, act = {0};
  row_of(fs, none, &act, row_a);
  CHECK(row_a[0] == 1 && nonzeros(row_a, 257, NULL, 0) == 0);
  row_of(fs, NULL, NULL, row_a); /* NULL values: an empty record */
  CHECK(row_a[0] == 1 && nonzeros(row_a, 257, NULL, 0) == 0);
  /* join with no parts at all: the bias alone */
  oa_features_join(fs, NULL, NULL, row_a);
  CHECK(row_a[0] == 1 && nonzeros(row_a, 257, NULL, 0) == 0);
  oa_features_release(fs);
}

/* ---- Crosses ---- */

static void crosses_multiply_weights(void) {
  oa_field_spec f[4] = {fld("interests", OA_SIDE_CONTEXT, OA_FK_SET),
                        fld("age", OA_SIDE_CONTEXT, OA_FK_NUM),
                        fld("topic", OA_SIDE_ACTION, OA_FK_CAT),
                        fld("len", OA_SIDE_ACTION, OA_FK_NUM)};
  f[2].weight = 0.5;
  oa_cross_spec c[2] = {{.context_field = 0, .action_field = 2},
                        {.context_field = 1, .action_field = 2}};
  oa_features *fs = space(OA_LAYOUT_HASHED, BIG, 1, f, 4, c, 2);
  CHECK(fs);
  const char *items[] = {"music", "sports"};
  double w[] = {2, 3};
  oa_value ctx[2] = {vlist(items, w, 2), vnum(4)};
  oa_value act[2] = {vstr("music"), vnum(7)};
  oa_value none[2] = {{0}};
  row_of(fs, ctx, act, row_a);  /* everything */
  row_of(fs, ctx, NULL, row_b); /* context own features + bias */
  row_of(fs, none, act, row_c); /* action own features + bias */
  int idx[16];
  for (int i = 0; i < BIG; i++)
    row_a[i] -= row_b[i] + row_c[i];
  row_a[0] += 1; /* the bias was subtracted twice */
  CHECK(row_a[0] == 0);
  /* Pairs: (music, music) 2 * 0.5, (sports, music) 3 * 0.5, (age, music) 4 * 0.5. */
  CHECK(nonzeros(row_a, BIG, idx, 16) == 3);
  double got[3];
  for (int i = 0; i < 3; i++)
    got[i] = row_a[idx[i]];
  double want_sum = 1 + 1.5 + 2, sum = got[0] + got[1] + got[2];
  CHECK_NEAR(sum, want_sum, 1e-12);
  int seen1 = 0, seen15 = 0, seen2 = 0;
  for (int i = 0; i < 3; i++) {
    seen1 += got[i] == 1;
    seen15 += got[i] == 1.5;
    seen2 += got[i] == 2;
  }
  CHECK(seen1 == 1 && seen15 == 1 && seen2 == 1);
  /* Either side missing: no cross at all. */
  oa_value act_no_topic[2] = {{0}, vnum(7)};
  row_of(fs, ctx, act_no_topic, row_a);
  row_of(fs, none, act_no_topic, row_c);
  for (int i = 1; i < BIG; i++)
    row_a[i] -= row_b[i] + row_c[i];
  CHECK(nonzeros(row_a, BIG, idx, 16) == 0);
  oa_value ctx_none[2] = {{0}, {0}};
  row_of(fs, ctx_none, act, row_a);
  row_of(fs, none, act, row_c);
  for (int i = 1; i < BIG; i++)
    row_a[i] -= row_c[i];
  CHECK(nonzeros(row_a, BIG, idx, 16) == 0);
  /* A different topic gives different cross indexes. */
  oa_value act2[2] = {vstr("news"), vnum(7)};
  double *r1 = row_b, *r2 = row_c;
  row_of(fs, ctx, act, r1);
  row_of(fs, ctx, act2, r2);
  int diff = 0;
  for (int i = 1; i < BIG; i++)
    diff += r1[i] != r2[i];
  CHECK(diff >= 6); /* own topic index moves, three cross pairs move */
  oa_features_release(fs);
}

/* ---- CONCAT layout ---- */

static void concat_blocks_and_offsets(void) {
  /* Declared interleaved on purpose: blocks follow side, then declaration order. */
  oa_field_spec f[5] = {
      fld("emb", OA_SIDE_ACTION, OA_FK_DENSE), fld("age", OA_SIDE_CONTEXT, OA_FK_NUM),
      fld("hour", OA_SIDE_CONTEXT, OA_FK_CYCLIC), fld("dev", OA_SIDE_CONTEXT, OA_FK_CAT),
      fld("topic", OA_SIDE_ACTION, OA_FK_CAT)};
  f[0].length = 3;
  f[2].period = 24;
  f[3].buckets = 8;
  oa_cross_spec c = {.context_field = 3, .action_field = 4};
  oa_features *fs = space(OA_LAYOUT_CONCAT, 0, 1, f, 5, &c, 1);
  CHECK(fs);
  if (!fs) return;
  CHECK(oa_features_dim(fs) == 1 + 1 + 2 + 8 + 3 + 16 + 64);
  CHECK(oa_features_nfields(fs, OA_SIDE_CONTEXT) == 3);
  CHECK(oa_features_nfields(fs, OA_SIDE_ACTION) == 2);
  CHECK(oa_features_slot(fs, OA_SIDE_ACTION, "topic") == 1);
  CHECK(oa_features_field(fs, OA_SIDE_ACTION, 1)->buckets == 16);
  int32_t off, w;
  struct {
    oa_side side;
    int slot, off, w;
  } blocks[] = {{OA_SIDE_CONTEXT, 0, 1, 1},
                {OA_SIDE_CONTEXT, 1, 2, 2},
                {OA_SIDE_CONTEXT, 2, 4, 8},
                {OA_SIDE_ACTION, 0, 12, 3},
                {OA_SIDE_ACTION, 1, 15, 16}};
  for (int i = 0; i < 5; i++) {
    CHECK_OK(oa_features_block(fs, blocks[i].side, blocks[i].slot, &off, &w));
    CHECK(off == blocks[i].off && w == blocks[i].w);
  }
  double e[3] = {0.5, -2, 3};
  oa_value ctx[3] = {vnum(40), vnum(6), vstr("ios")};
  oa_value act[2] = {vvec(e, 3), vstr("music")};
  int32_t dim = oa_features_dim(fs);
  row_of(fs, ctx, act, row_a);
  CHECK(row_a[0] == 1);
  CHECK(row_a[1] == 40);
  CHECK_NEAR(row_a[2], 1, 1e-12); /* sin(2π·6/24) */
  CHECK_NEAR(row_a[3], 0, 1e-12);
  int n = 0;
  for (int i = 4; i < 12; i++)
    n += row_a[i] == 1;
  CHECK(n == 1);
  CHECK(row_a[12] == 0.5 && row_a[13] == -2 && row_a[14] == 3);
  n = 0;
  for (int i = 15; i < 31; i++)
    n += row_a[i] == 1;
  CHECK(n == 1);
  n = 0;
  for (int i = 31; i < dim; i++)
    n += row_a[i] == 1;
  CHECK(n == 1);
  oa_features_release(fs);

  /* No bias: the first field starts at 0. HASHED has no blocks. */
  oa_field_spec g = fld("x", OA_SIDE_CONTEXT, OA_FK_NUM);
  fs = space(OA_LAYOUT_CONCAT, 0, 0, &g, 1, NULL, 0);
  CHECK(fs && oa_features_dim(fs) == 1);
  CHECK_OK(oa_features_block(fs, OA_SIDE_CONTEXT, 0, &off, &w));
  CHECK(off == 0);
  oa_features_release(fs);
  fs = space(OA_LAYOUT_HASHED, 8, 0, &g, 1, NULL, 0);
  CHECK(oa_features_block(fs, OA_SIDE_CONTEXT, 0, &off, &w) == OA_EINVAL);
  oa_features_release(fs);
}

static void join_never_writes_past_dim(void) {
  /* Many tokens into a tiny hashed space and a tiny concat block. */
  oa_field_spec f[2] = {fld("s", OA_SIDE_CONTEXT, OA_FK_SET),
                        fld("t", OA_SIDE_ACTION, OA_FK_SET)};
  oa_cross_spec c = {.context_field = 0, .action_field = 1, .buckets = 3};
  char names[200][16];
  const char *items[200];
  for (int i = 0; i < 200; i++) {
    snprintf(names[i], sizeof names[i], "i%d", i);
    items[i] = names[i];
  }
  oa_value ctx = vlist(items, NULL, 200), act = vlist(items, NULL, 100);
  for (int layout = 0; layout < 2; layout++) {
    f[0].buckets = 5;
    oa_features *fs = space((oa_layout)layout, 7, 1, f, 2, &c, 1);
    CHECK(fs);
    int32_t dim = oa_features_dim(fs);
    for (int i = 0; i < 64; i++)
      row_a[dim + i] = 12345;
    row_of(fs, &ctx, &act, row_a);
    for (int i = 0; i < 64; i++)
      CHECK(row_a[dim + i] == 12345);
    double sum = 0;
    for (int i = 1; i < dim; i++)
      sum += row_a[i];
    CHECK_NEAR(sum, 200 + 100 + 200 * 100, 1e-9); /* collisions add, nothing is lost */
    CHECK(row_a[0] == 1);                         /* the bias slot is reserved */
    oa_features_release(fs);
  }
}

/* ---- Errors ---- */

static void wrong_types_and_nan_name_the_field(void) {
  oa_field_spec f[5] = {
      fld("age", OA_SIDE_CONTEXT, OA_FK_NUM), fld("dev", OA_SIDE_CONTEXT, OA_FK_CAT),
      fld("tags", OA_SIDE_CONTEXT, OA_FK_SET), fld("emb", OA_SIDE_CONTEXT, OA_FK_DENSE),
      fld("hour", OA_SIDE_CONTEXT, OA_FK_CYCLIC)};
  f[3].length = 4;
  f[4].period = 24;
  oa_features *fs = space(OA_LAYOUT_HASHED, 1024, 1, f, 5, NULL, 0);
  CHECK(fs);
  oa_fpart *p = oa_fpart_new();
  double e3[3] = {1, 2, 3}, e4[4] = {1, NAN, 3, 4}, wn[2] = {1, INFINITY};
  const char *items[] = {"a", "b"};
  struct {
    int field;
    oa_value v;
    int code;
    const char *msg;
  } cases[] = {
      {0, vstr("x"), OA_EINVAL, "field 'age' (num) expects a number, got a string"},
      {0, vnum(NAN), OA_ENUMERIC, "field 'age'"},
      {0, vnum(-INFINITY), OA_ENUMERIC, "field 'age'"},
      {1, vnum(2.5), OA_EINVAL,
       "field 'dev' (cat) expects a string or an integer, got 2.5"},
      {1, vvec(e3, 3), OA_EINVAL,
       "field 'dev' (cat) expects a string or an integer, got a vector"},
      {1, vnum(NAN), OA_ENUMERIC, "field 'dev'"},
      {2, vnum(1), OA_EINVAL,
       "field 'tags' (set) expects a list of strings, got a number"},
      {2, vlist(items, wn, 2), OA_ENUMERIC, "field 'tags'"},
      {3, vvec(e3, 3), OA_EDIM, "field 'emb' (dense) expects 4 numbers, got 3"},
      {3, vvec(e4, 4), OA_ENUMERIC, "field 'emb'"},
      {3, vstr("x"), OA_EINVAL, "field 'emb' (dense) expects a vector, got a string"},
      {4, vstr("noon"), OA_EINVAL,
       "field 'hour' (cyclic) expects a number, got a string"},
      {4, vnum(INFINITY), OA_ENUMERIC, "field 'hour'"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    oa_value v[5] = {vnum(30), vstr("ios"), {0}, {0}, vnum(3)};
    CHECK_OK(oa_features_compile(fs, OA_SIDE_CONTEXT, v, p, NULL));
    v[cases[k].field] = cases[k].v;
    oa_error err = {0};
    int rc = oa_features_compile(fs, OA_SIDE_CONTEXT, v, p, &err);
    CHECK(rc == cases[k].code && err.code == cases[k].code);
    if (!strstr(err.message, cases[k].msg)) {
      fprintf(stderr, "case %zu: message '%s' lacks '%s'\n", k, err.message,
              cases[k].msg);
      check_failures++;
    }
    /* out is empty after an error: the row is the bias alone */
    oa_features_join(fs, p, NULL, row_a);
    CHECK(row_a[0] == 1 && nonzeros(row_a, 1024, NULL, 0) == 0);
  }
  oa_fpart_free(p);
  oa_features_release(fs);
}

static int spec_error(const oa_features_spec *s, const char *needle) {
  oa_error err = {0};
  oa_features *fs = oa_features_new(s, &err);
  if (fs) {
    oa_features_release(fs);
    fprintf(stderr, "spec accepted, expected an error with '%s'\n", needle);
    return 0;
  }
  if (err.code != OA_EINVAL || !strstr(err.message, needle)) {
    fprintf(stderr, "error %d '%s' lacks '%s'\n", err.code, err.message, needle);
    return 0;
  }
  return 1;
}

static void bad_specs_are_rejected(void) {
  oa_field_spec f[3] = {fld("a", OA_SIDE_CONTEXT, OA_FK_NUM),
                        fld("b", OA_SIDE_CONTEXT, OA_FK_CAT),
                        fld("t", OA_SIDE_ACTION, OA_FK_CAT)};
  oa_cross_spec c = {.context_field = 1, .action_field = 2};
  oa_features_spec s = {.layout = OA_LAYOUT_HASHED,
                        .dim = 64,
                        .bias = 1,
                        .n_fields = 3,
                        .fields = f,
                        .n_cross = 1,
                        .cross = &c};
  oa_features *ok = oa_features_new(&s, NULL);
  CHECK(ok);
  oa_features_release(ok);

  oa_features_spec t = s;
  t.dim = 0;
  CHECK(spec_error(&t, "dim"));
  t.dim = (1 << 24) + 1;
  CHECK(spec_error(&t, "dim"));
  t.dim = 1; /* the bias takes the only slot */
  CHECK(spec_error(&t, "dim"));
  t = s;
  t.layout = (oa_layout)7;
  CHECK(spec_error(&t, "layout"));

  oa_field_spec g[3];
  memcpy(g, f, sizeof g);
  t = s;
  t.fields = g;
  snprintf(g[1].name, sizeof g[1].name, "a");
  CHECK(spec_error(&t, "context field 'a' is declared twice"));
  memcpy(g, f, sizeof g);
  g[1].name[0] = 0;
  CHECK(spec_error(&t, "field 1: empty name"));
  memcpy(g, f, sizeof g);
  memset(g[0].name, 'x', sizeof g[0].name);
  CHECK(spec_error(&t, "longer than 63"));
  memcpy(g, f, sizeof g);
  g[0].kind = OA_FK_DENSE;
  CHECK(spec_error(&t, "field 'a' (dense): length must be"));
  g[0].kind = OA_FK_CYCLIC;
  CHECK(spec_error(&t, "field 'a' (cyclic): period must be > 0"));
  g[0].period = NAN;
  CHECK(spec_error(&t, "period"));
  memcpy(g, f, sizeof g);
  g[0].kind = (oa_field_kind)9;
  CHECK(spec_error(&t, "unknown kind"));
  memcpy(g, f, sizeof g);
  g[0].clip = 1, g[0].clip_lo = 2, g[0].clip_hi = 1;
  CHECK(spec_error(&t, "clip_lo 2 is above clip_hi 1"));
  memcpy(g, f, sizeof g);
  g[0].std = -1;
  CHECK(spec_error(&t, "std"));
  memcpy(g, f, sizeof g);
  g[0].weight = NAN;
  CHECK(spec_error(&t, "weight"));
  memcpy(g, f, sizeof g);
  g[0].side = (oa_side)3;
  CHECK(spec_error(&t, "side"));
  memcpy(g, f, sizeof g);
  g[1].buckets = -1;
  CHECK(spec_error(&t, "buckets"));

  /* Same name on both sides is fine (user language x video language). */
  memcpy(g, f, sizeof g);
  snprintf(g[2].name, sizeof g[2].name, "b");
  t = s;
  t.fields = g;
  ok = oa_features_new(&t, NULL);
  CHECK(ok);
  oa_features_release(ok);

  oa_cross_spec x[2] = {{.context_field = 0, .action_field = 1}, {0}};
  t = s;
  t.cross = x;
  CHECK(spec_error(&t, "a cross pairs a context field with an action field"));
  x[0] = (oa_cross_spec){.context_field = 2, .action_field = 0};
  CHECK(spec_error(&t, "('t' x 'a')"));
  x[0] = (oa_cross_spec){.context_field = 0, .action_field = 3};
  CHECK(spec_error(&t, "out of range"));
  x[0] = (oa_cross_spec){.context_field = 1, .action_field = 2};
  x[1] = x[0];
  t.n_cross = 2;
  CHECK(spec_error(&t, "repeats cross 0"));

  oa_field_spec many[257];
  for (int i = 0; i < 257; i++) {
    char nm[16];
    snprintf(nm, sizeof nm, "f%d", i);
    many[i] = fld(nm, OA_SIDE_CONTEXT, OA_FK_NUM);
  }
  t = s;
  t.fields = many;
  t.n_fields = 257;
  t.n_cross = 0;
  CHECK(spec_error(&t, "fields"));
  t.n_fields = 256;
  ok = oa_features_new(&t, NULL);
  CHECK(ok);
  oa_features_release(ok);

  /* CONCAT: nothing at all is an error; an oversized block is too. */
  t = (oa_features_spec){.layout = OA_LAYOUT_CONCAT};
  CHECK(spec_error(&t, "no features"));
  memcpy(g, f, sizeof g);
  g[1].buckets = 1 << 20;
  g[2].buckets = 1 << 20;
  oa_field_spec h[20];
  for (int i = 0; i < 20; i++) {
    char nm[16];
    snprintf(nm, sizeof nm, "c%d", i);
    h[i] = fld(nm, OA_SIDE_CONTEXT, OA_FK_CAT);
    h[i].buckets = 1 << 20;
  }
  t = (oa_features_spec){.layout = OA_LAYOUT_CONCAT, .n_fields = 20, .fields = h};
  CHECK(spec_error(&t, "CONCAT dimension exceeds"));
}

/* ---- Digest, bind, parts, persistence ---- */

static uint64_t digest_of(const oa_features_spec *s) {
  oa_error err = {0};
  oa_features *fs = oa_features_new(s, &err);
  if (!fs) {
    fprintf(stderr, "digest_of: %s\n", err.message);
    return 0;
  }
  uint64_t d = oa_features_digest(fs);
  oa_features_release(fs);
  return d;
}

static oa_field_spec base_fields[6];
static oa_cross_spec base_cross[1] = {{.context_field = 1, .action_field = 3}};

static oa_features_spec base_spec(oa_field_spec *f) {
  f[0] = fld("age", OA_SIDE_CONTEXT, OA_FK_NUM);
  f[0].log = 1, f[0].clip = 1, f[0].clip_lo = 0, f[0].clip_hi = 5, f[0].mean = 1,
  f[0].std = 2;
  f[1] = fld("tags", OA_SIDE_CONTEXT, OA_FK_SET);
  f[1].normalize = 1;
  f[2] = fld("hour", OA_SIDE_CONTEXT, OA_FK_CYCLIC);
  f[2].period = 24;
  f[3] = fld("topic", OA_SIDE_ACTION, OA_FK_CAT);
  f[4] = fld("emb", OA_SIDE_ACTION, OA_FK_DENSE);
  f[4].length = 3;
  f[5] = fld("len", OA_SIDE_ACTION, OA_FK_NUM);
  f[5].weight = 0.5;
  return (oa_features_spec){.layout = OA_LAYOUT_HASHED,
                            .dim = 512,
                            .bias = 1,
                            .n_fields = 6,
                            .fields = f,
                            .n_cross = 1,
                            .cross = base_cross,
                            .seed = 5};
}

static void digest_tracks_every_parameter(void) {
  oa_field_spec f[6];
  oa_features_spec s = base_spec(f);
  uint64_t d0 = digest_of(&s);
  CHECK(d0 != 0);
  CHECK(digest_of(&s) == d0);
  oa_features_spec t;
#define DIFFERS(change)                                                                  \
  do {                                                                                   \
    t = base_spec(base_fields);                                                          \
    oa_field_spec *g = base_fields;                                                      \
    (void)g;                                                                             \
    change;                                                                              \
    uint64_t d_ = digest_of(&t);                                                         \
    if (d_ == d0 || d_ == 0) {                                                           \
      fprintf(stderr, "%s:%d: digest unchanged by %s\n", __FILE__, __LINE__, #change);   \
      check_failures++;                                                                  \
    }                                                                                    \
  } while (0)
#define SAME(change)                                                                     \
  do {                                                                                   \
    t = base_spec(base_fields);                                                          \
    oa_field_spec *g = base_fields;                                                      \
    (void)g;                                                                             \
    change;                                                                              \
    if (digest_of(&t) != d0) {                                                           \
      fprintf(stderr, "%s:%d: digest changed by %s\n", __FILE__, __LINE__, #change);     \
      check_failures++;                                                                  \
    }                                                                                    \
  } while (0)
  DIFFERS(t.dim = 513);
  DIFFERS(t.bias = 0);
  DIFFERS(t.seed = 6);
  DIFFERS(t.n_cross = 0);
  DIFFERS(g[0].log = 0);
  DIFFERS(g[0].clip = 0);
  DIFFERS(g[0].clip_hi = 6);
  DIFFERS(g[0].clip_lo = -1);
  DIFFERS(g[0].mean = 0);
  DIFFERS(g[0].std = 3);
  DIFFERS(g[0].weight = 2);
  DIFFERS(g[1].normalize = 0);
  DIFFERS(g[1].kind = OA_FK_CAT);
  DIFFERS(g[2].period = 12);
  DIFFERS(g[4].length = 4);
  DIFFERS(g[5].weight = 1);
  DIFFERS(snprintf(g[3].name, sizeof g[3].name, "topics"));
  DIFFERS(g[5].side = OA_SIDE_CONTEXT);
  DIFFERS(t.layout = OA_LAYOUT_CONCAT);
  /* Parameters that cannot change φ do not change the digest. */
  SAME(g[3].log = 1);                       /* log on a CAT field */
  SAME(g[3].buckets = 99);                  /* buckets in HASHED layout */
  SAME(g[0].weight = 1; g[5].weight = 0.5); /* 1 is the default */
  SAME(g[2].mean = 3);                      /* mean on a CYCLIC field */
  SAME(g[0].log = 7);                       /* flags are 0/1 */
  SAME(g[0].clip_lo = -0.0);
  /* Weight 0 means 1. */
  t = base_spec(base_fields);
  base_fields[1].weight = 1;
  uint64_t d1 = digest_of(&t);
  CHECK(d1 == d0);
  /* CONCAT: buckets matter, and 0 means the default. */
  t = base_spec(base_fields);
  t.layout = OA_LAYOUT_CONCAT;
  uint64_t dc = digest_of(&t);
  base_fields[3].buckets = 16;
  CHECK(digest_of(&t) == dc);
  base_fields[3].buckets = 17;
  CHECK(digest_of(&t) != dc);
  t = base_spec(base_fields);
  t.layout = OA_LAYOUT_CONCAT;
  oa_cross_spec xc = base_cross[0];
  xc.buckets = 65;
  t.cross = &xc;
  CHECK(digest_of(&t) != dc);
  xc.buckets = 64;
  CHECK(digest_of(&t) == dc);
  /* Interleaving context and action declarations changes nothing. */
  oa_field_spec r[6];
  t = base_spec(base_fields);
  r[0] = base_fields[3], r[1] = base_fields[0], r[2] = base_fields[4],
  r[3] = base_fields[1], r[4] = base_fields[5], r[5] = base_fields[2];
  oa_cross_spec rc = {.context_field = 3, .action_field = 0};
  t.fields = r;
  t.cross = &rc;
  CHECK(digest_of(&t) == d0);
#undef DIFFERS
#undef SAME
}

static void spec_save_load_round_trip(void) {
  oa_field_spec f[6];
  for (int layout = 0; layout < 2; layout++) {
    oa_features_spec s = base_spec(f);
    s.layout = (oa_layout)layout;
    f[1].buckets = 5;
    oa_features *fs = oa_features_new(&s, NULL);
    CHECK(fs);
    oa_buf b;
    oa_buf_init(&b);
    oa_buf_put_u32(&b, 0xabcd); /* a prefix: the space is one section of a larger file */
    CHECK_OK(oa_features_spec_save(fs, &b));
    oa_buf_put_u32(&b, 0x1234);
    oa_reader r;
    oa_reader_init(&r, b.data, b.len);
    CHECK(oa_read_u32(&r) == 0xabcd);
    oa_error err = {0};
    oa_features *back = oa_features_spec_load(&r, &err);
    CHECK(back);
    if (!back) {
      fprintf(stderr, "load: %s\n", err.message);
      oa_buf_free(&b);
      oa_features_release(fs);
      return;
    }
    CHECK(oa_read_u32(&r) == 0x1234 && !r.failed);
    CHECK(oa_features_digest(back) == oa_features_digest(fs));
    CHECK(oa_features_dim(back) == oa_features_dim(fs));
    CHECK(!strcmp(oa_features_field(back, OA_SIDE_ACTION, 1)->name, "emb"));
    const char *tags[] = {"a", "b", "c"};
    double e[3] = {1, 2, 3};
    oa_value ctx[3] = {vnum(3), vlist(tags, NULL, 3), vnum(7)};
    oa_value act[3] = {vstr("b"), vvec(e, 3), vnum(9)};
    int32_t dim = oa_features_dim(fs);
    row_of(fs, ctx, act, row_a);
    row_of(back, ctx, act, row_b);
    CHECK(memcmp(row_a, row_b, sizeof(double) * (size_t)dim) == 0);
    /* Every truncation fails cleanly. */
    size_t start = 4, end = b.len - 4;
    for (size_t cut = start; cut < end; cut++) {
      oa_reader_init(&r, b.data + start, cut - start);
      oa_features *bad = oa_features_spec_load(&r, &err);
      CHECK(!bad && err.code == OA_EFORMAT);
      oa_features_release(bad);
    }
    /* A flipped byte in the body is caught (digest or validation), or lands
     * in a parameter that does not apply and so leaves the same φ. */
    int caught = 0, tried = 0;
    for (size_t at = start + 8; at < end; at += 3) {
      b.data[at] ^= 0x40;
      oa_reader_init(&r, b.data + start, end - start);
      oa_features *bad = oa_features_spec_load(&r, &err);
      tried++;
      caught += bad == NULL || oa_features_digest(bad) == oa_features_digest(fs);
      oa_features_release(bad);
      b.data[at] ^= 0x40;
    }
    CHECK(caught == tried);
    oa_buf_free(&b);
    oa_features_release(back);
    oa_features_release(fs);
  }
}

static void bind_maps_names_to_slots(void) {
  oa_field_spec f[3] = {fld("age", OA_SIDE_CONTEXT, OA_FK_NUM),
                        fld("dev", OA_SIDE_CONTEXT, OA_FK_CAT),
                        fld("topic", OA_SIDE_ACTION, OA_FK_CAT)};
  oa_features *fs = space(OA_LAYOUT_HASHED, 64, 1, f, 3, NULL, 0);
  CHECK(fs);
  oa_field rec[4] = {
      {"unknown", vnum(1)}, {"dev", vstr("ios")}, {"topic", vstr("x")}, {NULL, vnum(2)}};
  oa_value vals[2];
  oa_error err = {0};
  CHECK_OK(oa_features_bind(fs, OA_SIDE_CONTEXT, rec, 4, vals, &err));
  CHECK(vals[0].type == OA_VAL_NONE);
  CHECK(vals[1].type == OA_VAL_STR && vals[1].str == rec[1].value.str);
  oa_value av[1];
  CHECK_OK(oa_features_bind(fs, OA_SIDE_ACTION, rec, 4, av, &err));
  CHECK(av[0].type == OA_VAL_STR && !strcmp(av[0].str, "x"));
  CHECK_OK(oa_features_bind(fs, OA_SIDE_CONTEXT, NULL, 0, vals, &err));
  CHECK(vals[0].type == OA_VAL_NONE && vals[1].type == OA_VAL_NONE);
  oa_field dup[2] = {{"age", vnum(1)}, {"age", vnum(2)}};
  CHECK(oa_features_bind(fs, OA_SIDE_CONTEXT, dup, 2, vals, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "'age'") != NULL);
  CHECK(oa_features_slot(fs, OA_SIDE_CONTEXT, "dev") == 1);
  CHECK(oa_features_slot(fs, OA_SIDE_CONTEXT, "topic") == -1);
  CHECK(oa_features_slot(fs, OA_SIDE_ACTION, "topic") == 0);
  CHECK(oa_features_field(fs, OA_SIDE_CONTEXT, 2) == NULL);
  CHECK(oa_features_field(fs, OA_SIDE_CONTEXT, 0)->weight == 1);
  oa_features_release(fs);
}

static void parts_copy_deeply_and_belong_to_their_space(void) {
  oa_field_spec f[2] = {fld("tags", OA_SIDE_CONTEXT, OA_FK_SET),
                        fld("topic", OA_SIDE_ACTION, OA_FK_CAT)};
  oa_cross_spec c = {.context_field = 0, .action_field = 1};
  oa_features *fs = space(OA_LAYOUT_HASHED, 4096, 1, f, 2, &c, 1);
  oa_features *other = space(OA_LAYOUT_HASHED, 64, 1, f, 2, &c, 1);
  oa_features *again = space(OA_LAYOUT_HASHED, 4096, 1, f, 2, &c, 1);
  CHECK(fs && other && again);
  const char *tags[] = {"a", "b"};
  oa_value ctx = vlist(tags, NULL, 2), act = vstr("a");
  oa_fpart *pc = oa_fpart_new(), *pa = oa_fpart_new(), *copy = oa_fpart_new();
  CHECK_OK(oa_features_compile(fs, OA_SIDE_CONTEXT, &ctx, pc, NULL));
  CHECK_OK(oa_features_compile(fs, OA_SIDE_ACTION, &act, pa, NULL));
  CHECK(oa_fpart_size(pc) > 0);
  oa_features_join(fs, pc, pa, row_a);
  CHECK_OK(oa_fpart_copy(copy, pc, NULL));
  oa_value ctx2 = vstr("zzz");
  CHECK_OK(oa_features_compile(fs, OA_SIDE_CONTEXT, &ctx2, pc, NULL));
  oa_features_join(fs, copy, pa, row_b);
  CHECK(memcmp(row_a, row_b, sizeof(double) * 4096) == 0);
  /* A space with the same digest accepts the parts. */
  oa_features_join(again, copy, pa, row_b);
  CHECK(memcmp(row_a, row_b, sizeof(double) * 4096) == 0);
  /* Parts of another space, or on the wrong side, contribute nothing. */
  oa_features_join(other, copy, pa, row_b);
  CHECK(row_b[0] == 1 && nonzeros(row_b, 64, NULL, 0) == 0);
  oa_features_join(fs, pa, copy, row_b);
  CHECK(row_b[0] == 1 && nonzeros(row_b, 4096, NULL, 0) == 0);
  oa_fpart_free(pc);
  oa_fpart_free(pa);
  oa_fpart_free(copy);
  oa_features_release(again);
  oa_features_release(other);
  /* Retain/release: still usable after one release of two references. */
  CHECK(oa_features_retain(fs) == fs);
  oa_features_release(fs);
  CHECK(oa_features_dim(fs) == 4096);
  oa_features_release(fs);
  oa_features_release(NULL);
}

int main(void) {
  RUN(num_transforms_and_weight);
  RUN(cat_hashes_strings_and_integers);
  RUN(set_items_weights_and_normalisation);
  RUN(dense_and_cyclic);
  RUN(missing_fields_give_zeros);
  RUN(crosses_multiply_weights);
  RUN(concat_blocks_and_offsets);
  RUN(join_never_writes_past_dim);
  RUN(wrong_types_and_nan_name_the_field);
  RUN(bad_specs_are_rejected);
  RUN(digest_tracks_every_parameter);
  RUN(spec_save_load_round_trip);
  RUN(bind_maps_names_to_slots);
  RUN(parts_copy_deeply_and_belong_to_their_space);
  return CHECK_DONE();
}
