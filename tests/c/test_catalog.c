/* The action catalog: upsert/update/remove and slot reuse, versions, deep
 * copies, validation that changes nothing, persistence, and the path a
 * policy takes from catalog fields to a compiled feature part. */
#include "catalog/catalog.h"
#include "check.h"
#include "core/buf.h"
#include "core/features.h"

#include <pthread.h>
#include <string.h>

static oa_value vnum(double x) {
  return (oa_value){.type = OA_VAL_NUM, .num = x};
}
static oa_value vstr(const char *s) {
  return (oa_value){.type = OA_VAL_STR, .str = s, .len = strlen(s)};
}

static int64_t put(oa_catalog *cat, const char *id, const oa_field *f, int32_t n) {
  oa_error err = {0};
  int64_t slot = oa_catalog_upsert(cat, id, strlen(id), f, n, &err);
  if (slot < 0) fprintf(stderr, "upsert '%s': %s\n", id, err.message);
  return slot;
}

static void upsert_update_remove_reuse(void) {
  oa_catalog *cat = oa_catalog_new(NULL);
  CHECK(cat && oa_catalog_count(cat) == 0);
  oa_field f[2] = {{"topic", vstr("music")}, {"duration", vnum(31)}};
  int64_t a = put(cat, "a", f, 2), b = put(cat, "b", f, 1), c = put(cat, "c", NULL, 0);
  CHECK(a == 0 && b == 1 && c == 2);
  CHECK(oa_catalog_count(cat) == 3 && oa_catalog_slots(cat) == 3);
  CHECK(oa_catalog_find(cat, "b", 1) == 1);
  CHECK(oa_catalog_find(cat, "zz", 2) == -1);
  size_t len;
  CHECK(!strcmp(oa_catalog_id(cat, b, &len), "b") && len == 1);
  int32_t n;
  const oa_field *got = oa_catalog_fields(cat, a, &n);
  CHECK(n == 2 && !strcmp(got[0].name, "topic") && got[0].value.type == OA_VAL_STR);
  CHECK(got[0].value.len == 5 && !memcmp(got[0].value.str, "music", 5));
  CHECK(got[1].value.type == OA_VAL_NUM && got[1].value.num == 31);
  CHECK(oa_catalog_fields(cat, c, &n) != NULL && n == 0);

  /* Update in place: same slot, new fields, new version. */
  uint64_t va = oa_catalog_version(cat, a);
  CHECK(va > 0);
  oa_field g[1] = {{"topic", vstr("news")}};
  CHECK(put(cat, "a", g, 1) == a);
  CHECK(oa_catalog_count(cat) == 3);
  got = oa_catalog_fields(cat, a, &n);
  CHECK(n == 1 && !memcmp(got[0].value.str, "news", 4));
  uint64_t va2 = oa_catalog_version(cat, a);
  CHECK(va2 > va && va2 != oa_catalog_version(cat, b));

  /* Remove frees the slot; the next new id reuses it with a fresh version. */
  CHECK_OK(oa_catalog_remove(cat, "b", 1));
  CHECK(oa_catalog_remove(cat, "b", 1) == OA_ENOTFOUND);
  CHECK(oa_catalog_find(cat, "b", 1) == -1);
  CHECK(oa_catalog_count(cat) == 2);
  CHECK(oa_catalog_version(cat, b) == 0);
  CHECK(oa_catalog_fields(cat, b, &n) == NULL && n == 0);
  CHECK(oa_catalog_id(cat, b, &len) == NULL && len == 0);
  int64_t d = put(cat, "d", f, 2);
  CHECK(d == b);
  CHECK(oa_catalog_version(cat, d) > va2);
  CHECK(oa_catalog_slots(cat) == 3);
  CHECK(oa_catalog_version(cat, -1) == 0 && oa_catalog_version(cat, 99) == 0);

  /* Iteration visits live slots in order. */
  CHECK_OK(oa_catalog_remove(cat, "a", 1));
  int64_t seen[4], k = 0;
  for (int64_t s = oa_catalog_next(cat, -1); s >= 0; s = oa_catalog_next(cat, s))
    seen[k++] = s;
  CHECK(k == 2 && seen[0] == 1 && seen[1] == 2);
  CHECK(oa_catalog_size_bytes(cat) > 0);
  oa_catalog_free(cat);
  oa_catalog_free(NULL);
}

static void versions_are_unique_across_catalogs(void) {
  oa_catalog *x = oa_catalog_new(NULL), *y = oa_catalog_new(NULL);
  int64_t sx = put(x, "same", NULL, 0), sy = put(y, "same", NULL, 0);
  CHECK(sx == 0 && sy == 0);
  CHECK(oa_catalog_version(x, 0) != oa_catalog_version(y, 0));
  /* remove then reuse the slot with the same id: still a new version */
  uint64_t v = oa_catalog_version(x, 0);
  CHECK_OK(oa_catalog_remove(x, "same", 4));
  CHECK(put(x, "same", NULL, 0) == 0);
  CHECK(oa_catalog_version(x, 0) > v);
  oa_catalog_free(x);
  oa_catalog_free(y);
}

static void upsert_copies_deeply(void) {
  oa_catalog *cat = oa_catalog_new(NULL);
  char *id = strdup("video-1");
  char *name = strdup("tags");
  char *s1 = strdup("cats"), *s2 = strdup("dogs");
  const char **items = malloc(2 * sizeof *items);
  size_t *lens = malloc(2 * sizeof *lens);
  double *w = malloc(2 * sizeof *w);
  double *vec = malloc(3 * sizeof *vec);
  char *str = strdup("en");
  items[0] = s1, items[1] = s2, lens[0] = 4,
  lens[1] = 3; /* "dog": a length, not strlen */
  w[0] = 0.5, w[1] = 2;
  vec[0] = 1, vec[1] = 2, vec[2] = 3;
  oa_field *f = calloc(3, sizeof *f);
  f[0] = (oa_field){
      name, {.type = OA_VAL_LIST, .count = 2, .strs = items, .lens = lens, .weights = w}};
  f[1] = (oa_field){"emb", {.type = OA_VAL_VEC, .count = 3, .vec = vec}};
  f[2] = (oa_field){"lang", {.type = OA_VAL_STR, .str = str, .len = 2}};
  int64_t slot = oa_catalog_upsert(cat, id, strlen(id), f, 3, NULL);
  CHECK(slot == 0);
  memset(id, 'x', 7);
  memset(name, 'x', 4);
  memset(s1, 'x', 4);
  memset(s2, 'x', 4);
  memset(str, 'x', 2);
  w[0] = vec[0] = 99;
  free(id), free(name), free(s1), free(s2), free(items), free(lens), free(w), free(vec);
  free(str), free(f);
  CHECK(oa_catalog_find(cat, "video-1", 7) == 0);
  int32_t n;
  const oa_field *g = oa_catalog_fields(cat, 0, &n);
  CHECK(n == 3 && !strcmp(g[0].name, "tags"));
  const oa_value *t = &g[0].value;
  CHECK(t->type == OA_VAL_LIST && t->count == 2 && t->lens && t->weights);
  CHECK(t->lens[0] == 4 && !memcmp(t->strs[0], "cats", 4));
  CHECK(t->lens[1] == 3 && !strcmp(t->strs[1], "dog")); /* stored NUL-terminated */
  CHECK(t->weights[0] == 0.5 && t->weights[1] == 2);
  CHECK(g[1].value.count == 3 && g[1].value.vec[0] == 1 && g[1].value.vec[2] == 3);
  CHECK(g[2].value.len == 2 && !strcmp(g[2].value.str, "en"));
  /* A list without lens uses strlen; without weights keeps weights NULL. */
  const char *plain[] = {"a", "bb"};
  oa_field h = {"tags", {.type = OA_VAL_LIST, .count = 2, .strs = plain}};
  CHECK(put(cat, "v2", &h, 1) == 1);
  g = oa_catalog_fields(cat, 1, &n);
  CHECK(g[0].value.lens[1] == 2 && g[0].value.weights == NULL);
  oa_catalog_free(cat);
}

static void bad_input_changes_nothing(void) {
  oa_catalog *cat = oa_catalog_new(NULL);
  oa_field ok[1] = {{"x", vnum(1)}};
  CHECK(put(cat, "a", ok, 1) == 0);
  uint64_t v = oa_catalog_version(cat, 0);
  char long_id[300];
  memset(long_id, 'i', sizeof long_id);
  double nanvec[2] = {1, NAN}, infw[1] = {INFINITY};
  const char *items[1] = {"t"};
  struct {
    const char *id;
    size_t idlen;
    oa_field f;
    int code;
    const char *msg;
  } cases[] = {
      {"", 0, {"x", {.type = OA_VAL_NUM}}, OA_EINVAL, "empty"},
      {long_id, 257, {"x", {.type = OA_VAL_NUM}}, OA_EINVAL, "257 bytes"},
      {"a", 1, {"", {.type = OA_VAL_NUM}}, OA_EINVAL, "no name"},
      {"a", 1, {NULL, {.type = OA_VAL_NUM}}, OA_EINVAL, "no name"},
      {"a", 1, {"x", vnum(NAN)}, OA_ENUMERIC, "field 'x'"},
      {"b",
       1,
       {"e", {.type = OA_VAL_VEC, .count = 2, .vec = nanvec}},
       OA_ENUMERIC,
       "field 'e'"},
      {"b",
       1,
       {"w", {.type = OA_VAL_LIST, .count = 1, .strs = items, .weights = infw}},
       OA_ENUMERIC,
       "field 'w'"},
      {"b", 1, {"l", {.type = OA_VAL_LIST, .count = -1}}, OA_EINVAL, "field 'l'"},
      {"b",
       1,
       {"l", {.type = OA_VAL_LIST, .count = 2, .strs = NULL}},
       OA_EINVAL,
       "field 'l'"},
      {"b",
       1,
       {"s", {.type = OA_VAL_STR, .str = NULL, .len = 3}},
       OA_EINVAL,
       "field 's'"},
      {"b", 1, {"q", {.type = (oa_value_type)42}}, OA_EINVAL, "unknown value type"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    oa_error err = {0};
    int64_t rc =
        oa_catalog_upsert(cat, cases[k].id, cases[k].idlen, &cases[k].f, 1, &err);
    CHECK(rc == cases[k].code && err.code == cases[k].code);
    if (!strstr(err.message, cases[k].msg)) {
      fprintf(stderr, "case %zu: '%s' lacks '%s'\n", k, err.message, cases[k].msg);
      check_failures++;
    }
  }
  oa_field dup[2] = {{"x", vnum(1)}, {"x", vnum(2)}};
  oa_error err = {0};
  CHECK(oa_catalog_upsert(cat, "a", 1, dup, 2, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "'x' is given twice") != NULL);
  CHECK(oa_catalog_upsert(cat, "a", 1, NULL, 3, &err) == OA_EINVAL);
  CHECK(oa_catalog_upsert(cat, NULL, 0, NULL, 0, &err) == OA_EINVAL);
  /* Nothing changed: one action, same fields, same version, no new slot. */
  CHECK(oa_catalog_count(cat) == 1 && oa_catalog_slots(cat) == 1);
  CHECK(oa_catalog_find(cat, "b", 1) == -1);
  CHECK(oa_catalog_version(cat, 0) == v);
  int32_t n;
  const oa_field *f = oa_catalog_fields(cat, 0, &n);
  CHECK(n == 1 && f[0].value.num == 1);
  /* Ids are bytes: an id of exactly 256 bytes, or with a NUL inside, works. */
  CHECK(oa_catalog_upsert(cat, long_id, 256, ok, 1, NULL) == 1);
  CHECK(oa_catalog_upsert(cat, "a\0b", 3, ok, 1, NULL) == 2);
  CHECK(oa_catalog_find(cat, "a\0b", 3) == 2 && oa_catalog_find(cat, "a", 1) == 0);
  oa_catalog_free(cat);
}

static oa_catalog *sample_catalog(int n) {
  oa_catalog *cat = oa_catalog_new(NULL);
  const char *tags[] = {"a", "b", "c"};
  size_t tl[] = {1, 1, 1};
  double w[] = {1, 0.5, 0.25}, e[4] = {0.1, 0.2, 0.3, 0.4};
  char id[32];
  for (int i = 0; i < n; i++) {
    snprintf(id, sizeof id, "video-%d", i);
    e[0] = i;
    oa_field f[5] = {
        {"topic", vstr(i % 2 ? "music" : "news")},
        {"duration", vnum(i * 1.5)},
        {"tags",
         {.type = OA_VAL_LIST,
          .count = 1 + i % 3,
          .strs = tags,
          .lens = tl,
          .weights = i % 2 ? w : NULL}},
        {"emb", {.type = OA_VAL_VEC, .count = 4, .vec = e}},
        {"gone", {.type = OA_VAL_NONE}},
    };
    put(cat, id, f, 5);
  }
  return cat;
}

static int same_value(const oa_value *a, const oa_value *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case OA_VAL_NUM:
    return a->num == b->num;
  case OA_VAL_STR:
    return a->len == b->len && !memcmp(a->str, b->str, a->len);
  case OA_VAL_LIST:
    if (a->count != b->count || !a->weights != !b->weights) return 0;
    for (int32_t k = 0; k < a->count; k++)
      if (a->lens[k] != b->lens[k] || memcmp(a->strs[k], b->strs[k], a->lens[k]) ||
          (a->weights && a->weights[k] != b->weights[k]))
        return 0;
    return 1;
  case OA_VAL_VEC:
    return a->count == b->count &&
           !memcmp(a->vec, b->vec, sizeof(double) * (size_t)a->count);
  default:
    return 1;
  }
}

static void save_load_round_trip(void) {
  oa_catalog *cat = sample_catalog(50);
  CHECK_OK(oa_catalog_remove(cat, "video-7", 7)); /* a hole: saved catalogs are compact */
  oa_buf b;
  oa_buf_init(&b);
  CHECK_OK(oa_catalog_save(cat, &b));
  oa_reader r;
  oa_reader_init(&r, b.data, b.len);
  oa_error err = {0};
  oa_catalog *back = oa_catalog_load(&r, &err);
  CHECK(back);
  if (!back) {
    fprintf(stderr, "load: %s\n", err.message);
    return;
  }
  CHECK(r.pos == b.len);
  CHECK(oa_catalog_count(back) == 49);
  CHECK(oa_catalog_find(back, "video-7", 7) == -1);
  for (int64_t s = oa_catalog_next(cat, -1); s >= 0; s = oa_catalog_next(cat, s)) {
    size_t len;
    const char *id = oa_catalog_id(cat, s, &len);
    int64_t t = oa_catalog_find(back, id, len);
    CHECK(t >= 0);
    int32_t n1, n2;
    const oa_field *f1 = oa_catalog_fields(cat, s, &n1),
                   *f2 = oa_catalog_fields(back, t, &n2);
    CHECK(n1 == n2);
    for (int32_t i = 0; i < n1 && i < n2; i++) {
      CHECK(!strcmp(f1[i].name, f2[i].name));
      CHECK(same_value(&f1[i].value, &f2[i].value));
    }
    /* Fresh versions: a cache built on the old catalog cannot match. */
    CHECK(oa_catalog_version(back, t) != oa_catalog_version(cat, s));
  }
  /* Every truncation fails with OA_EFORMAT and leaks nothing. */
  for (size_t cut = 0; cut < b.len; cut += 1 + cut / 64) {
    oa_reader_init(&r, b.data, cut);
    oa_catalog *bad = oa_catalog_load(&r, &err);
    CHECK(!bad && err.code == OA_EFORMAT);
    oa_catalog_free(bad);
  }
  /* Flipped bytes are caught. */
  for (size_t at = 8; at < b.len; at += 37) {
    b.data[at] ^= 0x10;
    oa_reader_init(&r, b.data, b.len);
    oa_catalog *bad = oa_catalog_load(&r, &err);
    CHECK(!bad);
    oa_catalog_free(bad);
    b.data[at] ^= 0x10;
  }
  /* An empty catalog round-trips too. */
  oa_catalog *empty = oa_catalog_new(NULL);
  oa_buf e;
  oa_buf_init(&e);
  CHECK_OK(oa_catalog_save(empty, &e));
  oa_reader_init(&r, e.data, e.len);
  oa_catalog *eback = oa_catalog_load(&r, &err);
  CHECK(eback && oa_catalog_count(eback) == 0);
  oa_catalog_free(eback);
  oa_catalog_free(empty);
  oa_buf_free(&e);
  oa_buf_free(&b);
  oa_catalog_free(back);
  oa_catalog_free(cat);
}

/* What a policy does with a catalog action: bind its fields to the action
 * slots of its feature space, compile, join; and recompile on a new version. */
static void catalog_fields_compile_into_features(void) {
  oa_catalog *cat = sample_catalog(4);
  oa_field_spec f[4];
  memset(f, 0, sizeof f);
  snprintf(f[0].name, sizeof f[0].name, "topic");
  f[0].side = OA_SIDE_ACTION, f[0].kind = OA_FK_CAT;
  snprintf(f[1].name, sizeof f[1].name, "duration");
  f[1].side = OA_SIDE_ACTION, f[1].kind = OA_FK_NUM;
  snprintf(f[2].name, sizeof f[2].name, "emb");
  f[2].side = OA_SIDE_ACTION, f[2].kind = OA_FK_DENSE, f[2].length = 4;
  snprintf(f[3].name, sizeof f[3].name, "gone");
  f[3].side = OA_SIDE_ACTION, f[3].kind = OA_FK_NUM;
  oa_features_spec s = {
      .layout = OA_LAYOUT_CONCAT, .bias = 1, .n_fields = 4, .fields = f};
  oa_features *fs = oa_features_new(&s, NULL);
  CHECK(fs && oa_features_dim(fs) == 1 + 16 + 1 + 4 + 1);
  oa_value vals[4];
  oa_fpart *part = oa_fpart_new();
  double row[32];
  int64_t slot = oa_catalog_find(cat, "video-3", 7);
  int32_t n;
  const oa_field *fields = oa_catalog_fields(cat, slot, &n);
  CHECK_OK(oa_features_bind(fs, OA_SIDE_ACTION, fields, n, vals, NULL));
  CHECK_OK(oa_features_compile(fs, OA_SIDE_ACTION, vals, part, NULL));
  oa_features_join(fs, NULL, part, row);
  CHECK(row[0] == 1 && row[17] == 4.5);
  CHECK(row[18] == 3 && row[21] == 0.4 && row[22] == 0);
  oa_field upd[1] = {{"duration", vstr("long")}};
  CHECK(put(cat, "video-3", upd, 1) == slot);
  fields = oa_catalog_fields(cat, slot, &n);
  CHECK_OK(oa_features_bind(fs, OA_SIDE_ACTION, fields, n, vals, NULL));
  oa_error err = {0};
  CHECK(oa_features_compile(fs, OA_SIDE_ACTION, vals, part, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "field 'duration' (num)") != NULL);
  oa_fpart_free(part);
  oa_features_release(fs);
  oa_catalog_free(cat);
}

static void many_actions(void) {
  oa_catalog *cat = oa_catalog_new(NULL);
  char id[32];
  oa_field f[1] = {{"x", vnum(0)}};
  for (int i = 0; i < 20000; i++) {
    snprintf(id, sizeof id, "a%d", i);
    f[0].value.num = i;
    CHECK(put(cat, id, f, 1) == i);
  }
  for (int i = 0; i < 20000; i += 2) {
    snprintf(id, sizeof id, "a%d", i);
    CHECK_OK(oa_catalog_remove(cat, id, strlen(id)));
  }
  CHECK(oa_catalog_count(cat) == 10000);
  for (int i = 0; i < 10000; i++) {
    snprintf(id, sizeof id, "b%d", i);
    int64_t s = put(cat, id, f, 1);
    CHECK(s >= 0 && s < 20000 && s % 2 == 0); /* every new id reuses a freed slot */
  }
  CHECK(oa_catalog_slots(cat) == 20000 && oa_catalog_count(cat) == 20000);
  int32_t n;
  const oa_field *g = oa_catalog_fields(cat, oa_catalog_find(cat, "a4001", 5), &n);
  CHECK(n == 1 && g[0].value.num == 4001);
  oa_catalog_free(cat);
}

/* A view saves the catalog as it was when the view began, on another
 * thread, while this one replaces, removes and adds actions. */
static void *save_view(void *arg) {
  void **a = arg;
  CHECK_OK(oa_catalog_view_save(a[0], a[1]));
  return NULL;
}

static void view_keeps_its_instant(void) {
  oa_catalog *cat = oa_catalog_new(NULL);
  char id[32], text[32];
  for (int i = 0; i < 3000; i++) {
    snprintf(id, sizeof id, "a%d", i);
    snprintf(text, sizeof text, "topic-%d", i % 17);
    oa_field f[2] = {{"x", vnum(i)}, {"topic", vstr(text)}};
    CHECK(put(cat, id, f, 2) >= 0);
  }
  oa_buf want, got;
  oa_buf_init(&want);
  oa_buf_init(&got);
  CHECK_OK(oa_catalog_save(cat, &want));
  oa_catalog_view *v = oa_catalog_view_begin(cat);
  CHECK(v != NULL);
  void *args[2] = {v, &got};
  pthread_t t;
  pthread_create(&t, NULL, save_view, args);
  for (int i = 0; i < 3000; i += 3) { /* replace, remove, add */
    snprintf(id, sizeof id, "a%d", i);
    oa_field f[1] = {{"x", vnum(-i)}};
    CHECK(put(cat, id, f, 1) >= 0);
    snprintf(id, sizeof id, "a%d", i + 1);
    CHECK_OK(oa_catalog_remove(cat, id, strlen(id)));
    snprintf(id, sizeof id, "new%d", i);
    CHECK(put(cat, id, f, 1) >= 0);
  }
  pthread_join(t, NULL);
  CHECK(got.len == want.len && !memcmp(got.data, want.data, want.len));
  oa_catalog_view_end(v);
  /* The live catalog has every change. */
  CHECK(oa_catalog_count(cat) == 3000);
  int32_t n;
  const oa_field *g = oa_catalog_fields(cat, oa_catalog_find(cat, "a3", 2), &n);
  CHECK(n == 1 && g[0].value.num == -3);
  CHECK(oa_catalog_find(cat, "a4", 2) < 0);
  oa_buf_free(&want);
  oa_buf_free(&got);
  oa_catalog_free(cat);
}

int main(void) {
  RUN(upsert_update_remove_reuse);
  RUN(versions_are_unique_across_catalogs);
  RUN(upsert_copies_deeply);
  RUN(bad_input_changes_nothing);
  RUN(save_load_round_trip);
  RUN(catalog_fields_compile_into_features);
  RUN(many_actions);
  RUN(view_keeps_its_instant);
  return CHECK_DONE();
}
