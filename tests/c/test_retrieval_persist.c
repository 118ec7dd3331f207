/* The retrieval store in snapshots (runtime/retrieval_persist.c): the
 * matrix goes to a sidecar .oav next to the snapshot and the IVF index
 * into it; a restore adopts both (mapped, no rebuild) and answers the same
 * top-N; a missing, truncated or corrupt sidecar falls back to rebuilding
 * from the catalog records with the same answers; a bad snapshot changes
 * nothing; old sidecars go with old snapshots; the store is frozen while a
 * snapshot job writes it and catches up at the end. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "core/rng.h"
#include "fixtures.h"
#include "runtime/retrieval.h"
#include "runtime/snapshot.h"

#define DIM 8
#define TOP 10

static char dir[] = "/tmp/onearm-retr-persist-XXXXXX";

static int64_t upsert_item(oa_engine *e, int i) {
  oa_error err;
  char id[32];
  double v[DIM];
  oa_rng r;
  oa_rng_seed(&r, 500 + (uint64_t)i);
  for (int j = 0; j < DIM; j++)
    v[j] = oa_rng_normal(&r);
  snprintf(id, sizeof id, "v%d", i);
  const char *topic = i % 2 ? "music" : "news";
  oa_field f[2] = {{"emb", {.type = OA_VAL_VEC, .count = DIM, .vec = v}},
                   {"topic", str_value(topic)}};
  return oa_catalog_upsert(oa_engine_catalog(e), id, strlen(id), f, 2, &err);
}

/* An engine with policy "p" (user x topic), retrieval over "emb" and
 * `items` catalog actions. */
static oa_engine *make_engine(int items) {
  oa_error err;
  oa_engine *e = oa_engine_new(3, &err);
  oa_features *fs = user_topic_space(16, 1, &err);
  oa_ridge_config rc = {.dim = 16, .lambda = 1, .forget = 1, .v = 1};
  oa_policy_spec spec = {
      "p",  fs,  oa_ridge_new(&rc, &err), OA_EXPLORE_UCB, oa_explore_defaults(),
      NULL, NULL};
  CHECK_OK(oa_engine_add_policy(e, &spec, &err));
  oa_features_release(fs);
  for (int i = 0; i < items; i++)
    CHECK(upsert_item(e, i) >= 0);
  oa_retrieval_config c = {.field = "emb", .dim = DIM, .n_meta = 1};
  snprintf(c.meta[0].name, sizeof c.meta[0].name, "topic");
  c.meta[0].kind = OA_META_CAT;
  CHECK_OK(oa_engine_set_retrieval(e, &c, &err));
  return e;
}

/* The top ids for a fixed query, as one string. */
static void top(oa_engine *e, oa_retrieve_mode mode, char *out, size_t cap) {
  oa_error err;
  float q[DIM] = {0.5f, -1, 0.25f, 2, -0.5f, 1, 0, -2};
  oa_retrieve_request rq = {
      .n = TOP, .mode = mode, .nprobe = 4, .query = q, .query_dim = DIM};
  oa_shortlist s;
  out[0] = 0;
  CHECK_OK(oa_engine_retrieve(e, oa_engine_policy(e, "p"), &rq, NULL, 1, &s, &err));
  for (int i = 0; i < s.n; i++) {
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "%s ", s.ids[i]);
  }
}

/* The sidecars in dir: how many, and the first one's path. */
static int sidecars(char *path, size_t cap) {
  DIR *d = opendir(dir);
  struct dirent *de;
  int n = 0;
  while ((de = readdir(d)))
    if (!strncmp(de->d_name, "state.", 6) && strstr(de->d_name, ".oav") && !n++)
      snprintf(path, cap, "%s/%s", dir, de->d_name);
  closedir(d);
  return n;
}

/* Flips bits of the byte at offset of a file. */
static void flip_byte(const char *path, long offset) {
  FILE *f = fopen(path, "r+b");
  CHECK(f != NULL);
  fseek(f, offset, SEEK_SET);
  int c = fgetc(f);
  fseek(f, offset, SEEK_SET);
  fputc(c ^ 0x40, f);
  fclose(f);
}

static void clear_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -f %s/*", dir);
  CHECK(system(cmd) == 0);
}

/* Restores dir into a new engine and checks the answers against a's. */
static oa_engine *restore_and_compare(oa_engine *a, int adopted, const char *problem) {
  oa_error err;
  char want[512], got[512];
  oa_engine *b = make_engine(0);
  oa_snapshot_report rep;
  CHECK_OK(oa_snapshot_restore(b, dir, &rep, &err));
  CHECK(rep.retrieval_adopted == adopted);
  CHECK(problem ? strstr(rep.retrieval_problem, problem) != NULL
                : rep.retrieval_problem[0] == 0);
  const oa_vecstore *vs = oa_engine_retrieval_store(b);
  CHECK(oa_vecstore_is_mapped(vs) == adopted);
  CHECK(oa_vecstore_count(vs) == oa_vecstore_count(oa_engine_retrieval_store(a)));
  top(a, OA_RETRIEVE_EXACT, want, sizeof want);
  top(b, OA_RETRIEVE_EXACT, got, sizeof got);
  CHECK(!strcmp(want, got));
  return b;
}

static void round_trip_adopts_the_sidecar_and_the_index(void) {
  oa_error err;
  char path[4096], want[512], got[512];
  oa_engine *a = make_engine(400);
  CHECK_OK(oa_catalog_remove(oa_engine_catalog(a), "v7", 2));
  CHECK_OK(oa_engine_retrieval_build_index(a, &err));
  CHECK_OK(oa_snapshot_save(a, dir, "t", &err));
  CHECK(sidecars(path, sizeof path) == 1);
  oa_engine *b = restore_and_compare(a, 1, NULL);
  /* The index came with it: approximate answers are the same too. */
  oa_retrieval_stats st = oa_engine_retrieval_stats(b);
  CHECK(st.index_built && st.builds == 0);
  top(a, OA_RETRIEVE_APPROX, want, sizeof want);
  top(b, OA_RETRIEVE_APPROX, got, sizeof got);
  CHECK(!strcmp(want, got));
  /* The restored catalog keeps feeding the adopted store and its index. */
  CHECK(upsert_item(b, 900) >= 0);
  CHECK(oa_vecstore_find(oa_engine_retrieval_store(b), "v900", 4) >= 0);
  CHECK_OK(oa_catalog_remove(oa_engine_catalog(b), "v1", 2));
  CHECK(oa_vecstore_find(oa_engine_retrieval_store(b), "v1", 2) < 0);
  CHECK(oa_vecstore_count(oa_engine_retrieval_store(b)) == 399);
  oa_engine_free(a);
  oa_engine_free(b);
  clear_dir();
}

static void bad_sidecars_fall_back_to_the_catalog(void) {
  oa_error err;
  char path[4096];
  oa_engine *a = make_engine(300);
  CHECK_OK(oa_snapshot_save(a, dir, "t", &err));
  CHECK(sidecars(path, sizeof path) == 1);
  struct stat st;
  CHECK(stat(path, &st) == 0);
  /* A flipped byte in the matrix (the file's own checksum skips it). */
  flip_byte(path, (long)st.st_size - 100);
  oa_engine_free(restore_and_compare(a, 0, "matrix checksum"));
  /* Truncated. */
  CHECK(truncate(path, st.st_size - 64) == 0);
  oa_engine_free(restore_and_compare(a, 0, "bytes"));
  /* Missing. */
  unlink(path);
  oa_engine_free(restore_and_compare(a, 0, "missing"));
  /* A snapshot without a sidecar (the older two-step API) rebuilds quietly. */
  oa_buf payload;
  CHECK_OK(oa_snapshot_build(a, "t", &payload, &err));
  CHECK_OK(oa_snapshot_write_file(dir, &payload, &err));
  oa_buf_free(&payload);
  oa_engine_free(restore_and_compare(a, 0, NULL));
  oa_engine_free(a);
  clear_dir();
}

static void bad_snapshot_changes_nothing(void) {
  oa_error err;
  char path[4096];
  oa_engine *a = make_engine(200);
  CHECK_OK(oa_snapshot_save(a, dir, "t", &err));
  snprintf(path, sizeof path, "%s/%s", dir, OA_SNAPSHOT_FILE);
  flip_byte(path, 60);
  oa_engine *b = make_engine(5);
  const oa_vecstore *before = oa_engine_retrieval_store(b);
  oa_snapshot_report rep;
  CHECK(oa_snapshot_restore(b, dir, &rep, &err) == OA_EFORMAT);
  CHECK(oa_engine_retrieval_store(b) == before && oa_vecstore_count(before) == 5);
  CHECK(oa_catalog_count(oa_engine_catalog(b)) == 5);
  oa_engine_free(a);
  oa_engine_free(b);
  clear_dir();
}

static void old_sidecars_go_with_old_snapshots(void) {
  oa_error err;
  char path[4096];
  oa_engine *a = make_engine(50);
  for (int i = 0; i < 4; i++) {
    CHECK(upsert_item(a, 100 + i) >= 0);
    CHECK_OK(oa_snapshot_save(a, dir, "t", &err));
    CHECK(sidecars(path, sizeof path) == (i == 0 ? 1 : 2));
  }
  /* The previous snapshot still restores with its own sidecar. */
  snprintf(path, sizeof path, "%s/%s", dir, OA_SNAPSHOT_FILE);
  CHECK(truncate(path, 100) == 0);
  oa_engine *b = make_engine(0);
  oa_snapshot_report rep;
  CHECK_OK(oa_snapshot_restore(b, dir, &rep, &err));
  CHECK(rep.used_previous && rep.retrieval_adopted);
  CHECK(oa_vecstore_count(oa_engine_retrieval_store(b)) == 53);
  oa_engine_free(a);
  oa_engine_free(b);
  clear_dir();
}

typedef struct write_args {
  oa_snapshot_job *job;
  int rc;
} write_args;

static void *write_thread(void *p) {
  write_args *w = p;
  oa_error err;
  w->rc = oa_snapshot_job_write(w->job, dir, &err);
  return NULL;
}

static void a_snapshot_job_freezes_the_store(void) {
  oa_error err;
  oa_engine *a = make_engine(300);
  write_args w = {oa_snapshot_begin(a, "t", &err), -1};
  CHECK(w.job != NULL);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, write_thread, &w) == 0);
  /* Meanwhile the catalog changes at once, the store at the end. */
  CHECK(upsert_item(a, 1000) >= 0);
  CHECK_OK(oa_catalog_remove(oa_engine_catalog(a), "v3", 2));
  CHECK(oa_engine_retrieval_jobs(a) == 0 && !oa_engine_retrieval_job_begin(a, 3));
  pthread_join(t, NULL);
  CHECK_OK(w.rc);
  CHECK(oa_vecstore_find(oa_engine_retrieval_store(a), "v1000", 5) < 0);
  oa_snapshot_end(a, w.job);
  const oa_vecstore *vs = oa_engine_retrieval_store(a);
  CHECK(oa_vecstore_find(vs, "v1000", 5) >= 0 && oa_vecstore_find(vs, "v3", 2) < 0);
  /* The snapshot holds the state at begin, catalog and store alike. */
  oa_engine *b = make_engine(0);
  oa_snapshot_report rep;
  CHECK_OK(oa_snapshot_restore(b, dir, &rep, &err));
  CHECK(rep.retrieval_adopted && rep.actions == 300);
  CHECK(oa_vecstore_count(oa_engine_retrieval_store(b)) == 300);
  CHECK(oa_vecstore_find(oa_engine_retrieval_store(b), "v3", 2) >= 0);
  oa_engine_free(a);
  oa_engine_free(b);
  clear_dir();
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  RUN(round_trip_adopts_the_sidecar_and_the_index);
  RUN(bad_sidecars_fall_back_to_the_catalog);
  RUN(bad_snapshot_changes_nothing);
  RUN(old_sidecars_go_with_old_snapshots);
  RUN(a_snapshot_job_freezes_the_store);
  rmdir(dir);
  return CHECK_DONE();
}
