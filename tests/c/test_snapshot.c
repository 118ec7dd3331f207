/* Snapshots: state survives a restart, bad files are detected and the
 * previous good snapshot is used, and a changed policy shape is refused. */
#include "check.h"
#include "fixtures.h"
#include "core/error.h"
#include "runtime/snapshot.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An engine with one LinUCB policy "p" over a 3-action catalog. */
static oa_engine *make_engine(int32_t dim, oa_error *err) {
  oa_engine *e = oa_engine_new(9, err);
  const char *topics[3] = {"a", "b", "c"};
  char id[4];
  for (int i = 0; i < 3; i++) {
    snprintf(id, sizeof id, "v%d", i);
    oa_field f = {"topic", str_value(topics[i])};
    oa_catalog_upsert(oa_engine_catalog(e), id, strlen(id), &f, 1, err);
  }
  oa_features *fs = user_topic_space(dim, 3, err);
  oa_ridge_config rc = {.dim = dim, .lambda = 1, .forget = 1, .v = 1};
  oa_policy_spec spec = {
      "p", fs, oa_ridge_new(&rc, err), OA_EXPLORE_UCB, oa_explore_defaults(), NULL, NULL};
  CHECK_OK(oa_engine_add_policy(e, &spec, err));
  oa_features_release(fs);
  return e;
}

static void train(oa_engine *e, int steps) {
  oa_error err;
  const char *ids[3] = {"v0", "v1", "v2"};
  oa_value ctx = str_value("ann");
  for (int t = 0; t < steps; t++) {
    oa_decide_request req = {.context = &ctx, .n = 3, .ids = ids, .keep_event = 1};
    oa_decision d;
    CHECK_OK(oa_policy_decide(oa_engine_policy(e, "p"), &req, &d, &err));
    CHECK_OK(oa_engine_learn(e, d.event_id, d.chosen == 2 ? 1 : 0, &err));
  }
}

static void scores(oa_engine *e, double out[3]) {
  oa_error err;
  const char *ids[3] = {"v0", "v1", "v2"};
  oa_value ctx = str_value("ann");
  oa_decide_request req = {.event_id = "probe", .context = &ctx, .n = 3, .ids = ids};
  oa_decision d;
  CHECK_OK(oa_policy_decide(oa_engine_policy(e, "p"), &req, &d, &err));
  memcpy(out, d.mean, sizeof(double) * 3);
}

static char dir[] = "/tmp/onearm-snapshot-XXXXXX";

static void state_survives_a_restart(void) {
  oa_error err = {0};
  oa_engine *a = make_engine(64, &err);
  train(a, 300);
  const char *ids[3] = {"v0", "v1", "v2"};
  oa_decide_request req = {.event_id = "pending-1", .n = 3, .ids = ids, .keep_event = 1};
  oa_decision d;
  CHECK_OK(oa_policy_decide(oa_engine_policy(a, "p"), &req, &d, &err));
  CHECK_OK(oa_snapshot_save(a, dir, "v1", &err));
  double before[3], after[3];
  scores(a, before);

  oa_engine *b = make_engine(64, &err);
  oa_catalog_remove(oa_engine_catalog(b), "v1", 2);
  oa_snapshot_report rep;
  CHECK_OK(oa_snapshot_restore(b, dir, &rep, &err));
  CHECK(rep.policies_restored == 1 && rep.events_restored == 1 && rep.actions == 3);
  CHECK(!strcmp(rep.app_version, "v1") && !rep.used_previous);
  scores(b, after);
  for (int i = 0; i < 3; i++)
    CHECK(before[i] == after[i]);
  CHECK(oa_policy_get_stats(oa_engine_policy(b, "p")).rewards == 300);
  CHECK_OK(oa_engine_learn(b, "pending-1", 1, &err));
  oa_engine_free(a);
  oa_engine_free(b);
}

static void truncated_snapshot_falls_back_to_the_previous_one(void) {
  oa_error err = {0};
  oa_engine *a = make_engine(64, &err);
  train(a, 50);
  CHECK_OK(oa_snapshot_save(a, dir, "old", &err));
  train(a, 50);
  CHECK_OK(oa_snapshot_save(a, dir, "new", &err));
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, OA_SNAPSHOT_FILE);
  struct stat st;
  CHECK(stat(path, &st) == 0);
  CHECK(truncate(path, st.st_size - 10) == 0);
  oa_engine *b = make_engine(64, &err);
  oa_snapshot_report rep;
  CHECK_OK(oa_snapshot_restore(b, dir, &rep, &err));
  CHECK(rep.used_previous && !strcmp(rep.app_version, "old"));
  CHECK(strstr(rep.problem, "truncated") != NULL);
  CHECK(oa_policy_get_stats(oa_engine_policy(b, "p")).rewards == 50);

  /* corrupt the previous one too: nothing loads, and the engine is unchanged */
  snprintf(path, sizeof path, "%s/%s", dir, OA_SNAPSHOT_PREV);
  FILE *f = fopen(path, "r+b");
  fseek(f, 40, SEEK_SET);
  fputc(0x5a, f);
  fclose(f);
  oa_engine *c = make_engine(64, &err);
  CHECK(oa_snapshot_restore(c, dir, &rep, &err) == OA_EFORMAT);
  CHECK(strstr(err.message, "checksum") != NULL);
  CHECK(oa_policy_get_stats(oa_engine_policy(c, "p")).rewards == 0);
  oa_engine_free(a);
  oa_engine_free(b);
  oa_engine_free(c);
}

static void changed_shape_is_refused_unless_reset(void) {
  oa_error err = {0};
  oa_engine *a = make_engine(64, &err);
  train(a, 20);
  CHECK_OK(oa_snapshot_save(a, dir, "v", &err));
  oa_engine *b = make_engine(32, &err);
  oa_snapshot_report rep;
  CHECK(oa_snapshot_restore(b, dir, &rep, &err) == OA_EDIM);
  CHECK(strstr(err.message, "'p'") != NULL);
  CHECK(oa_policy_get_stats(oa_engine_policy(b, "p")).rewards == 0);
  oa_policy_set_reset(oa_engine_policy(b, "p"), 1);
  CHECK_OK(oa_snapshot_restore(b, dir, &rep, &err));
  CHECK(rep.policies_reset == 1 && rep.policies_restored == 0);
  oa_engine_free(a);
  oa_engine_free(b);
}

static void no_snapshot_is_not_an_error(void) {
  oa_error err = {0};
  oa_engine *a = make_engine(16, &err);
  oa_snapshot_report rep;
  CHECK_OK(oa_snapshot_restore(a, "/tmp/onearm-no-such-dir", &rep, &err));
  CHECK(rep.file[0] == 0);
  oa_engine_free(a);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  RUN(state_survives_a_restart);
  RUN(truncated_snapshot_falls_back_to_the_previous_one);
  RUN(changed_shape_is_refused_unless_reset);
  RUN(no_snapshot_is_not_an_error);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) return 1;
  return CHECK_DONE();
}
