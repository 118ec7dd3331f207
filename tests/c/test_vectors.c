/* Vector store: rows and holes, formats, metadata, bad input, the binary
 * file (mapped and read), corrupt files, CSV bulk load. */
#include "catalog/vectors.h"
#include "check.h"
#include "core/error.h"
#include "core/rng.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static oa_vecstore *new_store(int32_t dim, oa_vec_format fmt) {
  oa_vecstore_config cfg = {.dim = dim, .format = fmt, .n_meta = 3};
  strcpy(cfg.meta[0].name, "topic");
  cfg.meta[0].kind = OA_META_CAT;
  strcpy(cfg.meta[1].name, "age");
  cfg.meta[1].kind = OA_META_NUM;
  strcpy(cfg.meta[2].name, "language");
  cfg.meta[2].kind = OA_META_CAT;
  oa_error err = {0};
  oa_vecstore *vs = oa_vecstore_new(&cfg, &err);
  if (!vs) fprintf(stderr, "new: %s\n", err.message);
  return vs;
}

static void random_vec(oa_rng *rng, float *v, int d) {
  for (int i = 0; i < d; i++)
    v[i] = (float)oa_rng_normal(rng);
}

static int64_t put(oa_vecstore *vs, const char *id, const float *v) {
  oa_error err = {0};
  int64_t r = oa_vecstore_upsert(vs, id, strlen(id), v, NULL, &err);
  if (r < 0) fprintf(stderr, "upsert %s: %s\n", id, err.message);
  return r;
}

static void upsert_replace_remove_and_reuse_holes(void) {
  oa_vecstore *vs = new_store(5, OA_VEC_F32);
  float a[5] = {1, 2, 3, 4, 5}, b[5] = {-1, 0, 0.5f, 0, 9}, out[5];
  CHECK(put(vs, "a", a) == 0);
  CHECK(put(vs, "b", b) == 1);
  CHECK(put(vs, "c", a) == 2);
  CHECK(oa_vecstore_count(vs) == 3 && oa_vecstore_rows(vs) == 3);
  uint64_t g = oa_vecstore_generation(vs);
  /* Replace keeps the row. */
  CHECK(put(vs, "a", b) == 0);
  CHECK(oa_vecstore_generation(vs) > g);
  CHECK_OK(oa_vecstore_get(vs, 0, out));
  CHECK(!memcmp(out, b, sizeof b));
  CHECK(oa_vecstore_count(vs) == 3);
  /* Remove leaves a hole that the next new id takes. */
  g = oa_vecstore_generation(vs);
  CHECK_OK(oa_vecstore_remove(vs, "b", 1));
  CHECK(oa_vecstore_generation(vs) > g);
  CHECK(oa_vecstore_remove(vs, "b", 1) == OA_ENOTFOUND);
  CHECK(oa_vecstore_find(vs, "b", 1) == -1);
  CHECK(oa_vecstore_id(vs, 1) == NULL && !oa_vecstore_is_live(vs, 1));
  CHECK(oa_vecstore_get(vs, 1, out) == OA_ENOTFOUND);
  CHECK(oa_vecstore_count(vs) == 2 && oa_vecstore_rows(vs) == 3);
  CHECK(put(vs, "d", a) == 1);
  CHECK(!strcmp(oa_vecstore_id(vs, 1), "d"));
  CHECK(oa_vecstore_rows(vs) == 3 && oa_vecstore_count(vs) == 3);
  CHECK(oa_vecstore_find(vs, "c", 1) == 2);
  /* Padding past dim is zero and rows are 64-byte aligned. */
  CHECK(oa_vecstore_stride(vs) == 64);
  CHECK(((uintptr_t)oa_vecstore_row_ptr(vs, 1) & 63) == 0);
  const float *row = oa_vecstore_row_ptr(vs, 1);
  for (int i = 5; i < 16; i++)
    CHECK(row[i] == 0);
  oa_vecstore_free(vs);
}

/* Many ids with churn: the map (backward-shift deletion) stays exact. */
static void id_map_survives_churn(void) {
  oa_vecstore *vs = new_store(4, OA_VEC_I8);
  oa_rng rng;
  oa_rng_seed(&rng, 7);
  float v[4] = {1, 2, 3, 4};
  char id[32];
  int n = 20000;
  static signed char present[20000];
  memset(present, 0, sizeof present);
  for (int step = 0; step < 60000; step++) {
    int k = (int)oa_rng_below(&rng, (uint64_t)n);
    int len = snprintf(id, sizeof id, "item-%d", k);
    if (present[k] && oa_rng_uniform(&rng) < 0.5) {
      CHECK_OK(oa_vecstore_remove(vs, id, (size_t)len));
      present[k] = 0;
    } else {
      v[0] = (float)k;
      CHECK(oa_vecstore_upsert(vs, id, (size_t)len, v, NULL, NULL) >= 0);
      present[k] = 1;
    }
  }
  int64_t live = 0, bad = 0;
  for (int k = 0; k < n; k++) {
    int len = snprintf(id, sizeof id, "item-%d", k);
    int64_t r = oa_vecstore_find(vs, id, (size_t)len);
    live += present[k];
    if ((r >= 0) != present[k]) bad++;
    if (r >= 0) {
      float out[4];
      oa_vecstore_get(vs, r, out);
      if (fabsf(out[0] - (float)k) > (float)k / 100 || strcmp(oa_vecstore_id(vs, r), id))
        bad++;
    }
  }
  CHECK(bad == 0);
  CHECK(oa_vecstore_count(vs) == live);
  /* Holes were reused: rows never exceed the most ids alive at once. */
  CHECK(oa_vecstore_rows(vs) <= n);
  oa_vecstore_free(vs);
}

static void formats_round_trip_within_bounds(void) {
  oa_rng rng;
  oa_rng_seed(&rng, 11);
  int d = 37;
  float v[37], out[37];
  for (int f = 0; f < 3; f++) {
    oa_vecstore *vs = new_store(d, (oa_vec_format)f);
    CHECK(oa_vecstore_stride(vs) == oa_vec_row_stride(d, (oa_vec_format)f));
    CHECK(oa_vecstore_stride(vs) % 64 == 0);
    for (int t = 0; t < 50; t++) {
      random_vec(&rng, v, d);
      char id[16];
      snprintf(id, sizeof id, "x%d", t);
      int64_t r = put(vs, id, v);
      CHECK_OK(oa_vecstore_get(vs, r, out));
      float mx = 0;
      for (int i = 0; i < d; i++)
        mx = fmaxf(mx, fabsf(v[i]));
      for (int i = 0; i < d; i++) {
        double e = fabs((double)out[i] - v[i]);
        if (f == OA_VEC_F32)
          CHECK(e == 0);
        else if (f == OA_VEC_F16)
          CHECK(e <= fabs(v[i]) / 2048 + 6e-8);
        else
          CHECK(e <= mx / 127 / 2 * 1.0001);
      }
      if (f == OA_VEC_I8) CHECK_NEAR(oa_vecstore_row_scale(vs, r), mx / 127, 1e-6);
    }
    oa_vecstore_free(vs);
  }
  /* Half conversions: exact for representable values, round to even. */
  CHECK(oa_f16_to_f32(oa_f32_to_f16(1.5f)) == 1.5f);
  CHECK(oa_f16_to_f32(oa_f32_to_f16(-65504.0f)) == -65504.0f);
  CHECK(oa_f16_to_f32(oa_f32_to_f16(1.0f + 1.0f / 4096)) == 1.0f);
  /* A zero vector in I8 has scale 0 and decodes to zeros. */
  oa_vecstore *vs = new_store(3, OA_VEC_I8);
  float z[3] = {0, 0, 0};
  int64_t r = put(vs, "zero", z);
  CHECK_OK(oa_vecstore_get(vs, r, out));
  CHECK(out[0] == 0 && out[2] == 0 && oa_vecstore_row_scale(vs, r) == 0);
  oa_vecstore_free(vs);
}

static void metadata_is_interned(void) {
  oa_vecstore *vs = new_store(2, OA_VEC_F32);
  float v[2] = {1, 0};
  oa_meta_value m[3] = {{"sports", 0}, {NULL, 12.5}, {"en", 0}};
  int64_t r0 = oa_vecstore_upsert(vs, "a", 1, v, m, NULL);
  m[0].str = "music";
  m[1].num = NAN;
  m[2].str = NULL;
  int64_t r1 = oa_vecstore_upsert(vs, "b", 1, v, m, NULL);
  m[0].str = "sports";
  int64_t r2 = oa_vecstore_upsert(vs, "c", 1, v, m, NULL);
  int64_t r3 = oa_vecstore_upsert(vs, "d", 1, v, NULL, NULL);
  CHECK(oa_vecstore_meta_field(vs, "topic") == 0 &&
        oa_vecstore_meta_field(vs, "age") == 1);
  CHECK(oa_vecstore_meta_field(vs, "nope") == -1);
  int32_t sports = oa_vecstore_meta_lookup(vs, 0, "sports");
  int32_t music = oa_vecstore_meta_lookup(vs, 0, "music");
  CHECK(sports >= 0 && music >= 0 && sports != music);
  CHECK(oa_vecstore_meta_lookup(vs, 0, "news") == -1);
  CHECK(oa_vecstore_meta_code(vs, r0, 0) == sports &&
        oa_vecstore_meta_code(vs, r2, 0) == sports);
  CHECK(oa_vecstore_meta_code(vs, r1, 0) == music);
  CHECK(oa_vecstore_meta_code(vs, r3, 0) == -1);
  CHECK(oa_vecstore_meta_code(vs, r1, 2) == -1);
  CHECK(oa_vecstore_meta_num(vs, r0, 1) == 12.5f);
  CHECK(isnan(oa_vecstore_meta_num(vs, r1, 1)));
  CHECK(oa_vecstore_meta_dict_size(vs, 0) == 2);
  CHECK(!strcmp(oa_vecstore_meta_string(vs, 0, music), "music"));
  CHECK(oa_vecstore_meta_string(vs, 0, 5) == NULL);
  /* Replacing without meta clears it. */
  oa_vecstore_upsert(vs, "a", 1, v, NULL, NULL);
  CHECK(oa_vecstore_meta_code(vs, r0, 0) == -1 && isnan(oa_vecstore_meta_num(vs, r0, 1)));
  oa_vecstore_free(vs);
}

static void bad_input_is_rejected_without_change(void) {
  oa_vecstore *vs = new_store(3, OA_VEC_F16);
  float ok[3] = {1, 2, 3}, out[3];
  put(vs, "a", ok);
  uint64_t g = oa_vecstore_generation(vs);
  oa_error err = {0};
  float nan[3] = {1, NAN, 3}, inf[3] = {INFINITY, 0, 0}, huge[3] = {0, 1e6f, 0};
  CHECK(oa_vecstore_upsert(vs, "a", 1, nan, NULL, &err) == OA_ENUMERIC);
  CHECK(strstr(err.message, "index 1") && strstr(err.message, "'a'"));
  CHECK(oa_vecstore_upsert(vs, "b", 1, inf, NULL, &err) == OA_ENUMERIC);
  CHECK(oa_vecstore_upsert(vs, "b", 1, huge, NULL, &err) == OA_ENUMERIC);
  CHECK(strstr(err.message, "float16") != NULL);
  CHECK(oa_vecstore_upsert(vs, "", 0, ok, NULL, &err) == OA_EINVAL);
  CHECK(oa_vecstore_upsert(vs, "b", 1, NULL, NULL, &err) == OA_EINVAL);
  CHECK(oa_vecstore_upsert(vs, "a\0b", 3, ok, NULL, &err) == OA_EINVAL);
  oa_meta_value m[3] = {{NULL, 0}, {NULL, INFINITY}, {NULL, 0}};
  CHECK(oa_vecstore_upsert(vs, "b", 1, ok, m, &err) == OA_ENUMERIC);
  CHECK(strstr(err.message, "age") != NULL);
  CHECK(oa_vecstore_generation(vs) == g && oa_vecstore_count(vs) == 1);
  CHECK(oa_vecstore_rows(vs) == 1 && oa_vecstore_find(vs, "b", 1) == -1);
  CHECK_OK(oa_vecstore_get(vs, 0, out));
  CHECK(out[0] == 1 && out[1] == 2 && out[2] == 3);
  CHECK(oa_vecstore_remove(vs, "zz", 2) == OA_ENOTFOUND);
  CHECK(oa_vecstore_generation(vs) == g);
  oa_vecstore_free(vs);
  /* Bad configurations. */
  oa_vecstore_config cfg = {.dim = 0};
  CHECK(oa_vecstore_new(&cfg, &err) == NULL && err.code == OA_EINVAL);
  cfg.dim = 4;
  cfg.format = (oa_vec_format)7;
  CHECK(oa_vecstore_new(&cfg, &err) == NULL);
  cfg.format = OA_VEC_F32;
  cfg.n_meta = 2;
  strcpy(cfg.meta[0].name, "x");
  strcpy(cfg.meta[1].name, "x");
  CHECK(oa_vecstore_new(&cfg, &err) == NULL && strstr(err.message, "twice"));
}

static char *tmp_path(const char *name) {
  static char buf[4][256];
  static int k;
  char *p = buf[k++ & 3];
  snprintf(p, 256, "/tmp/onearm_test_vectors_%d_%s", (int)getpid(), name);
  return p;
}

static int stores_equal(const oa_vecstore *a, const oa_vecstore *b) {
  int32_t d = oa_vecstore_config_of(a)->dim;
  if (oa_vecstore_rows(a) != oa_vecstore_rows(b) ||
      oa_vecstore_count(a) != oa_vecstore_count(b))
    return 0;
  float x[64], y[64];
  for (int64_t r = 0; r < oa_vecstore_rows(a); r++) {
    const char *ia = oa_vecstore_id(a, r), *ib = oa_vecstore_id(b, r);
    if (!ia != !ib || (ia && strcmp(ia, ib))) return 0;
    if (!ia) continue;
    oa_vecstore_get(a, r, x);
    oa_vecstore_get(b, r, y);
    if (memcmp(x, y, (size_t)d * 4)) return 0;
    if (oa_vecstore_find(b, ia, strlen(ia)) != r) return 0;
    for (int f = 0; f < oa_vecstore_config_of(a)->n_meta; f++) {
      const char *sa = oa_vecstore_meta_string(a, f, oa_vecstore_meta_code(a, r, f));
      const char *sb = oa_vecstore_meta_string(b, f, oa_vecstore_meta_code(b, r, f));
      if (!sa != !sb || (sa && strcmp(sa, sb))) return 0;
      float na = oa_vecstore_meta_num(a, r, f), nb = oa_vecstore_meta_num(b, r, f);
      if (!(na == nb || (isnan(na) && isnan(nb)))) return 0;
    }
  }
  return 1;
}

static void file_round_trip_mapped_and_read(void) {
  oa_rng rng;
  oa_rng_seed(&rng, 3);
  const char *topics[] = {"sports", "music", "news"};
  for (int f = 0; f < 3; f++) {
    oa_vecstore *vs = new_store(19, (oa_vec_format)f);
    float v[19];
    char id[32];
    for (int i = 0; i < 3000; i++) {
      random_vec(&rng, v, 19);
      snprintf(id, sizeof id, "video-%d", i);
      oa_meta_value m[3] = {{topics[i % 3], 0}, {NULL, i % 7 ? i * 0.5 : NAN}, {NULL, 0}};
      oa_vecstore_upsert(vs, id, strlen(id), v, m, NULL);
    }
    for (int i = 0; i < 3000; i += 5) {
      snprintf(id, sizeof id, "video-%d", i);
      oa_vecstore_remove(vs, id, strlen(id));
    }
    const char *path = tmp_path("rt.oav");
    oa_error err = {0};
    oa_vecfile_info wrote, info;
    CHECK_OK(oa_vecstore_save_file_ex(vs, path, &wrote, &err));
    CHECK_OK(oa_vecstore_file_info(path, &info, &err));
    /* What the writer says it wrote is what the file says it holds. */
    CHECK(wrote.file_bytes == info.file_bytes && wrote.checksum == info.checksum);
    CHECK(wrote.matrix_hash == oa_vecstore_matrix_hash(vs) && wrote.rows == info.rows);
    CHECK(info.rows == 3000 && info.live == 2400 && info.config.dim == 19);
    CHECK(info.config.format == (oa_vec_format)f && info.config.n_meta == 3);
    CHECK(!strcmp(info.config.meta[2].name, "language") &&
          info.matrix_offset % 4096 == 0);
    for (int mode = 0; mode < 2; mode++) {
      oa_vecstore *b = oa_vecstore_load_file_ex(path, mode ? OA_VEC_LOAD_READ : 0, &err);
      CHECK(b != NULL);
      if (!b) {
        fprintf(stderr, "%s\n", err.message);
        continue;
      }
      CHECK(oa_vecstore_is_mapped(b) == !mode);
      CHECK(stores_equal(vs, b));
      CHECK(oa_vecstore_generation(b) == oa_vecstore_generation(vs));
      CHECK(oa_vecstore_file_checksum(b) == wrote.checksum);
      CHECK(oa_vecstore_matrix_hash(b) == wrote.matrix_hash);
      /* Writing to a mapped store is private, and growth copies it out. */
      random_vec(&rng, v, 19);
      CHECK(oa_vecstore_upsert(b, "video-1", 7, v, NULL, NULL) == 1);
      CHECK(oa_vecstore_upsert(b, "new-0", 5, v, NULL, NULL) == 0); /* lowest hole */
      for (int i = 0; i < 700; i++) {
        snprintf(id, sizeof id, "more-%d", i);
        CHECK(oa_vecstore_upsert(b, id, strlen(id), v, NULL, NULL) >= 0);
      }
      CHECK(!oa_vecstore_is_mapped(b) && oa_vecstore_count(b) == 3101);
      oa_vecstore_free(b);
    }
    /* The file itself did not change. */
    oa_vecstore *c = oa_vecstore_load_file(path, &err);
    CHECK(c && stores_equal(vs, c));
    oa_vecstore_free(c);
    unlink(path);
    oa_vecstore_free(vs);
  }
  /* An empty store round-trips too. */
  oa_vecstore *e = new_store(8, OA_VEC_F32);
  const char *path = tmp_path("empty.oav");
  CHECK_OK(oa_vecstore_save_file(e, path, NULL));
  oa_vecstore *e2 = oa_vecstore_load_file(path, NULL);
  CHECK(e2 && oa_vecstore_rows(e2) == 0);
  float v[8] = {1};
  CHECK(e2 && oa_vecstore_upsert(e2, "x", 1, v, NULL, NULL) == 0);
  oa_vecstore_free(e2);
  oa_vecstore_free(e);
  unlink(path);
}

static void corrupt_files_are_rejected(void) {
  oa_vecstore *vs = new_store(8, OA_VEC_F32);
  float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  put(vs, "a", v);
  put(vs, "b", v);
  const char *path = tmp_path("bad.oav");
  CHECK_OK(oa_vecstore_save_file(vs, path, NULL));
  FILE *fp = fopen(path, "rb");
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  unsigned char *data = malloc((size_t)n);
  CHECK(fread(data, 1, (size_t)n, fp) == (size_t)n);
  fclose(fp);
  oa_error err = {0};
  const char *bad = tmp_path("bad2.oav");
  /* Truncated: header only, and matrix cut short. */
  long cuts[] = {10, 128, 140, n - 1};
  for (int i = 0; i < 4; i++) {
    fp = fopen(bad, "wb");
    fwrite(data, 1, (size_t)cuts[i], fp);
    fclose(fp);
    CHECK(oa_vecstore_load_file(bad, &err) == NULL);
    CHECK(err.code == OA_EFORMAT);
  }
  /* A flipped byte in the ids section fails the checksum. */
  data[130] ^= 0x20;
  fp = fopen(bad, "wb");
  fwrite(data, 1, (size_t)n, fp);
  fclose(fp);
  CHECK(oa_vecstore_load_file(bad, &err) == NULL && strstr(err.message, "checksum"));
  data[130] ^= 0x20;
  data[0] = 'X';
  fp = fopen(bad, "wb");
  fwrite(data, 1, (size_t)n, fp);
  fclose(fp);
  CHECK(oa_vecstore_load_file(bad, &err) == NULL && strstr(err.message, "magic"));
  CHECK(oa_vecstore_load_file(tmp_path("missing.oav"), &err) == NULL &&
        err.code == OA_EIO);
  free(data);
  unlink(bad);
  unlink(path);
  oa_vecstore_free(vs);
}

static void write_text(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  fputs(text, fp);
  fclose(fp);
}

static void progress_count(void *ud, int64_t rows, int64_t done, int64_t total) {
  (*(int *)ud)++;
  CHECK(done <= total);
}

static void csv_loads_and_reports_lines(void) {
  const char *path = tmp_path("in.csv");
  write_text(path, "id,v0,v1,v2,topic,ignored,age\n"
                   "a,1,2,3,sports,x,10\r\n"
                   "\n"
                   "b,-1,0.5,2e-1,,y,\n"
                   "c,0,0,1,music,z,3.5\n");
  oa_vecstore *vs = new_store(3, OA_VEC_F32);
  oa_error err = {0};
  int calls = 0;
  CHECK_OK(oa_vecstore_load_csv(vs, path, progress_count, &calls, &err));
  CHECK(calls >= 1);
  CHECK(oa_vecstore_count(vs) == 3);
  float out[3];
  int64_t b = oa_vecstore_find(vs, "b", 1);
  CHECK_OK(oa_vecstore_get(vs, b, out));
  CHECK(out[0] == -1 && out[1] == 0.5f && out[2] == 0.2f);
  CHECK(oa_vecstore_meta_code(vs, b, 0) == -1 && isnan(oa_vecstore_meta_num(vs, b, 1)));
  int64_t c = oa_vecstore_find(vs, "c", 1);
  CHECK(
      !strcmp(oa_vecstore_meta_string(vs, 0, oa_vecstore_meta_code(vs, c, 0)), "music"));
  CHECK(oa_vecstore_meta_num(vs, c, 1) == 3.5f);
  oa_vecstore_free(vs);

  struct {
    const char *text, *needle;
    int code;
  } cases[] = {
      {"id,v0,v1\na,1,2\n", "dimension is 3", OA_EDIM},
      {"name,v0,v1,v2\n", "first column", OA_EINVAL},
      {"id,v0,v2,v1\n", "expected 'v1'", OA_EINVAL},
      {"id,v0,v1,v2\na,1,2,3\nb,1,2\n", ":3: 3 columns", OA_EINVAL},
      {"id,v0,v1,v2\na,1,2,3\nb,1,x,3\n", ":3: column v1: 'x'", OA_EINVAL},
      {"id,v0,v1,v2\na,1,2,3\n\nb,1,nan,3\n", ":4: action 'b'", OA_ENUMERIC},
      {"id,v0,v1,v2,age\na,1,2,3,old\n", "column age", OA_EINVAL},
      {"", "empty", OA_EINVAL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_text(path, cases[i].text);
    vs = new_store(3, OA_VEC_F32);
    int rc = oa_vecstore_load_csv(vs, path, NULL, NULL, &err);
    CHECK(rc == cases[i].code);
    if (!strstr(err.message, cases[i].needle))
      fprintf(stderr, "case %zu: message '%s' lacks '%s'\n", i, err.message,
              cases[i].needle);
    CHECK(strstr(err.message, cases[i].needle) != NULL);
    oa_vecstore_free(vs);
  }
  vs = new_store(3, OA_VEC_F32);
  CHECK(oa_vecstore_load_csv(vs, tmp_path("none.csv"), NULL, NULL, &err) == OA_EIO);
  oa_vecstore_free(vs);
  unlink(path);
}

int main(void) {
  RUN(upsert_replace_remove_and_reuse_holes);
  RUN(id_map_survives_churn);
  RUN(formats_round_trip_within_bounds);
  RUN(metadata_is_interned);
  RUN(bad_input_is_rejected_without_change);
  RUN(file_round_trip_mapped_and_read);
  RUN(corrupt_files_are_rejected);
  RUN(csv_loads_and_reports_lines);
  return CHECK_DONE();
}
