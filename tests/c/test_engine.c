/* The runtime: policies decide over catalog and inline candidates, learn by
 * event id, keep decisions reproducible, and refuse bad input without
 * changing state. */
#include "check.h"
#include "fixtures.h"
#include "core/error.h"
#include "runtime/engine.h"

#include <string.h>

static const char *TOPICS[3] = {"music", "sports", "cooking"};

static oa_engine *engine_with_catalog(oa_error *err) {
  oa_engine *e = oa_engine_new(1234, err);
  char id[8];
  for (int i = 0; i < 3; i++) {
    snprintf(id, sizeof id, "v%d", i);
    oa_field f = {"topic", str_value(TOPICS[i])};
    CHECK(oa_catalog_upsert(oa_engine_catalog(e), id, strlen(id), &f, 1, err) >= 0);
  }
  return e;
}

static oa_policy *add_linucb(oa_engine *e, oa_features *fs, oa_error *err) {
  oa_ridge_config rc = {.dim = oa_features_dim(fs), .lambda = 1, .forget = 1, .v = 1};
  oa_model *m = oa_ridge_new(&rc, err);
  oa_explore_params params = oa_explore_defaults();
  params.alpha = 0.5;
  oa_policy_spec spec = {"reels", fs, m, OA_EXPLORE_UCB, params, NULL, NULL};
  CHECK_OK(oa_engine_add_policy(e, &spec, err));
  return oa_engine_policy(e, "reels");
}

/* User u likes topic u: reward 1 when the topics match. */
static void learns_each_users_favourite_topic(void) {
  oa_error err = {0};
  oa_features *fs = user_topic_space(256, 7, &err);
  CHECK(fs != NULL);
  oa_engine *e = engine_with_catalog(&err);
  oa_policy *p = add_linucb(e, fs, &err);
  const char *ids[3] = {"v0", "v1", "v2"};
  const char *users[3] = {"ann", "bob", "cid"};
  double late_reward = 0;
  for (int t = 0; t < 3000; t++) {
    int u = t % 3;
    oa_value ctx = str_value(users[u]);
    oa_decide_request req = {.context = &ctx, .n = 3, .ids = ids, .keep_event = 1};
    oa_decision d;
    CHECK_OK(oa_policy_decide(p, &req, &d, &err));
    double sum = 0;
    for (int i = 0; i < 3; i++)
      sum += d.prob[i];
    CHECK_NEAR(sum, 1, 1e-9);
    double r = d.chosen == u ? 1 : 0;
    if (t >= 2000) late_reward += r;
    CHECK_OK(oa_engine_learn(e, d.event_id, r, &err));
  }
  CHECK(late_reward / 1000 > 0.95);
  oa_policy_stats st = oa_policy_get_stats(p);
  CHECK(st.decisions == 3000 && st.rewards == 3000);
  CHECK(oa_engine_pending_events(e) == 0);
  oa_engine_free(e);
  oa_features_release(fs);
}

static void same_event_id_gives_same_choice(void) {
  oa_error err = {0};
  oa_features *fs = user_topic_space(256, 7, &err);
  oa_engine *e = engine_with_catalog(&err);
  oa_model *m = oa_ridge_new(
      &(oa_ridge_config){.dim = oa_features_dim(fs), .lambda = 1, .forget = 1, .v = 1},
      &err);
  oa_explore_params params = oa_explore_defaults();
  params.epsilon = 0.9;
  oa_policy_spec spec = {"eg", fs, m, OA_EXPLORE_EGREEDY, params, NULL, NULL};
  CHECK_OK(oa_engine_add_policy(e, &spec, &err));
  oa_policy *p = oa_engine_policy(e, "eg");
  const char *ids[3] = {"v0", "v1", "v2"};
  oa_value ctx = str_value("ann");
  int differs = 0;
  for (int k = 0; k < 50; k++) {
    char id[32];
    snprintf(id, sizeof id, "event-%d", k);
    oa_decide_request req = {.event_id = id, .context = &ctx, .n = 3, .ids = ids};
    oa_decision a, b;
    CHECK_OK(oa_policy_decide(p, &req, &a, &err));
    int first = a.chosen;
    CHECK_OK(oa_policy_decide(p, &req, &b, &err));
    CHECK(b.chosen == first);
    CHECK(!strcmp(b.event_id, id));
    if (first != 0) differs = 1;
  }
  CHECK(differs); /* exploration does happen across event ids */
  oa_engine_free(e);
  oa_features_release(fs);
}

static void bad_input_changes_nothing(void) {
  oa_error err = {0};
  oa_features *fs = user_topic_space(256, 7, &err);
  oa_engine *e = engine_with_catalog(&err);
  oa_policy *p = add_linucb(e, fs, &err);
  const char *bad_ids[2] = {"v0", "nope"};
  oa_value ctx = str_value("ann");
  oa_decide_request req = {.context = &ctx, .n = 2, .ids = bad_ids, .keep_event = 1};
  oa_decision d;
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_ENOTFOUND);
  CHECK(strstr(err.message, "nope") != NULL);
  CHECK(oa_engine_pending_events(e) == 0);
  CHECK(oa_policy_get_stats(p).decisions == 0);

  oa_value wrong = {0};
  wrong.type = OA_VAL_VEC;
  wrong.count = 0;
  req = (oa_decide_request){.context = &wrong, .n = 1, .ids = bad_ids, .keep_event = 1};
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_EINVAL);
  CHECK(strstr(err.message, "user") != NULL);

  req = (oa_decide_request){.context = &ctx, .n = 1, .ids = bad_ids, .keep_event = 1};
  CHECK_OK(oa_policy_decide(p, &req, &d, &err));
  CHECK(oa_engine_learn(e, d.event_id, NAN, &err) == OA_ENUMERIC);
  CHECK(oa_engine_pending_events(e) == 1);
  CHECK(oa_policy_get_stats(p).rewards == 0);
  CHECK_OK(oa_engine_learn(e, d.event_id, 1, &err));
  CHECK(oa_engine_learn(e, d.event_id, 1, &err) == OA_ESTATE);
  CHECK(oa_engine_learn(e, "never-decided", 1, &err) == OA_ENOTFOUND);
  CHECK(oa_policy_get_stats(p).rewards == 1);

  req.event_id = "fixed";
  CHECK_OK(oa_policy_decide(p, &req, &d, &err));
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_EEXIST);
  oa_engine_free(e);
  oa_features_release(fs);
}

static void event_table_is_bounded(void) {
  oa_error err = {0};
  oa_features *fs = user_topic_space(256, 7, &err);
  oa_engine *e = engine_with_catalog(&err);
  CHECK_OK(oa_engine_set_event_capacity(e, 4, &err));
  oa_policy *p = add_linucb(e, fs, &err);
  const char *ids[1] = {"v1"};
  char first[OA_EVENT_ID_MAX];
  for (int k = 0; k < 6; k++) {
    oa_decide_request req = {.n = 1, .ids = ids, .keep_event = 1};
    oa_decision d;
    CHECK_OK(oa_policy_decide(p, &req, &d, &err));
    if (k == 0) strcpy(first, d.event_id);
  }
  CHECK(oa_engine_pending_events(e) == 4);
  oa_event_stats st = oa_engine_event_stats(e);
  CHECK(st.evicted == 2 && st.defaulted == 2);
  CHECK(oa_policy_get_stats(p).rewards == 2); /* evicted events learned the default */
  CHECK(oa_engine_learn(e, first, 1, &err) == OA_ESTATE);
  CHECK(strstr(err.message, "already closed") != NULL);
  oa_engine_free(e);
  oa_features_release(fs);
}

static void per_action_models_map_ids_to_arms(void) {
  oa_error err = {0};
  oa_features *fs = user_topic_space(256, 7, &err);
  oa_engine *e = oa_engine_new(5, &err);
  oa_ridge_config rc = {.dim = oa_features_dim(fs), .lambda = 1, .forget = 1, .v = 1};
  oa_model *m = oa_disjoint_ridge_new(&rc, 2, &err);
  oa_policy_spec spec = {"arms", fs,  m, OA_EXPLORE_UCB, oa_explore_defaults(),
                         NULL,   NULL};
  CHECK_OK(oa_engine_add_policy(e, &spec, &err));
  oa_policy *p = oa_engine_policy(e, "arms");
  const char *ids[3] = {"left", "right", "third"};
  oa_value ctx = str_value("ann");
  for (int t = 0; t < 200; t++) {
    oa_decide_request req = {.context = &ctx, .n = 2, .ids = ids, .keep_event = 1};
    oa_decision d;
    CHECK_OK(oa_policy_decide(p, &req, &d, &err));
    CHECK_OK(oa_engine_learn(e, d.event_id, d.chosen == 1 ? 1.0 : 0.2, &err));
  }
  oa_decide_request req = {.context = &ctx, .n = 2, .ids = ids};
  oa_decision d;
  CHECK_OK(oa_policy_decide(p, &req, &d, &err));
  CHECK(d.chosen == 1);
  req.n = 3; /* a third action does not fit a 2-arm model */
  CHECK(oa_policy_decide(p, &req, &d, &err) == OA_ELIMIT);
  CHECK(strstr(err.message, "third") != NULL);
  oa_engine_free(e);
  oa_features_release(fs);
}

static double fake_now = 0;
static double fake_clock(void *ud) {
  return fake_now;
}

typedef struct closed_log {
  int n;
  double last_reward;
  int last_defaulted, last_learned, last_candidates;
  char last_id[OA_EVENT_ID_MAX];
} closed_log;

static void record_close(void *ud, const oa_closed_event *ev) {
  closed_log *log = ud;
  log->n++;
  log->last_reward = ev->reward;
  log->last_defaulted = ev->defaulted;
  log->last_learned = ev->learned;
  log->last_candidates = ev->n;
  snprintf(log->last_id, sizeof log->last_id, "%s", ev->event_id);
}

static void rewards_combine_wait_and_default(void) {
  oa_error err = {0};
  oa_features *fs = user_topic_space(256, 7, &err);
  oa_engine *e = engine_with_catalog(&err);
  oa_policy *p = add_linucb(e, fs, &err);
  closed_log log = {0};
  oa_engine_set_clock(e, fake_clock, NULL);
  oa_engine_set_close_hook(e, record_close, &log);
  oa_event_config cfg = {.reward_wait = 10,
                         .close_on_reward = 0,
                         .combine = OA_COMBINE_MAX,
                         .default_reward = -1};
  CHECK_OK(oa_engine_set_event_config(e, &cfg, &err));
  const char *ids[3] = {"v0", "v1", "v2"};
  oa_decide_request req = {.event_id = "a", .n = 3, .ids = ids, .keep_event = 1};
  oa_decision d;
  fake_now = 100;
  CHECK_OK(oa_policy_decide(p, &req, &d, &err));
  req.event_id = "b";
  fake_now = 105;
  CHECK_OK(oa_policy_decide(p, &req, &d, &err));
  CHECK_OK(oa_engine_reward(e, "a", 0.3, &err));
  CHECK_OK(oa_engine_reward(e, "a", 0.7, &err));
  CHECK_OK(oa_engine_reward(e, "a", 0.5, &err));
  CHECK(oa_engine_reward(e, "a", INFINITY, &err) == OA_ENUMERIC);
  CHECK(oa_engine_expire(e) == 0);
  fake_now = 110; /* a is due, b is not */
  CHECK(oa_engine_expire(e) == 1);
  CHECK(log.n == 1 && !strcmp(log.last_id, "a"));
  CHECK_NEAR(log.last_reward, 0.7, 0);
  CHECK(log.last_candidates == 3 && log.last_learned && !log.last_defaulted);
  CHECK(oa_engine_reward(e, "a", 1, &err) == OA_ESTATE);
  fake_now = 200;
  CHECK(oa_engine_expire(e) == 1);
  CHECK(log.last_defaulted && log.last_reward == -1);
  CHECK(oa_engine_event_stats(e).defaulted == 1);

  /* deferred: learns only once activated */
  req.event_id = "c";
  req.deferred = 1;
  CHECK_OK(oa_policy_decide(p, &req, &d, &err));
  req.event_id = "d";
  CHECK_OK(oa_policy_decide(p, &req, &d, &err));
  CHECK_OK(oa_engine_activate(e, "d", &err));
  uint64_t before = oa_policy_get_stats(p).rewards;
  fake_now = 300;
  CHECK(oa_engine_expire_some(e, 1) == 1); /* the oldest, c */
  CHECK(log.n == 3 && !strcmp(log.last_id, "c"));
  CHECK(oa_engine_expire_some(e, 5) == 1);
  CHECK(oa_engine_expire_some(e, 5) == 0);
  CHECK(oa_policy_get_stats(p).rewards == before + 1);
  CHECK(oa_engine_event_stats(e).unactivated == 1);
  CHECK(oa_engine_activate(e, "zzz", &err) == OA_ENOTFOUND);
  oa_engine_free(e);
  oa_features_release(fs);
}

static void generated_ids_repeat_only_without_a_nonce(void) {
  oa_error err = {0};
  oa_features *fs = user_topic_space(256, 7, &err);
  char ids[3][OA_EVENT_ID_MAX];
  for (int run = 0; run < 3; run++) {
    oa_engine *e = engine_with_catalog(&err);
    if (run == 2) oa_engine_set_id_nonce(e, 0x1234);
    oa_policy *p = add_linucb(e, fs, &err);
    const char *cands[1] = {"v0"};
    oa_decide_request req = {.n = 1, .ids = cands};
    oa_decision d;
    CHECK_OK(oa_policy_decide(p, &req, &d, &err));
    strcpy(ids[run], d.event_id);
    oa_engine_free(e);
  }
  CHECK(!strcmp(ids[0], ids[1]));
  CHECK(strcmp(ids[0], ids[2]) != 0);
  oa_features_release(fs);
}

int main(void) {
  RUN(learns_each_users_favourite_topic);
  RUN(same_event_id_gives_same_choice);
  RUN(bad_input_changes_nothing);
  RUN(event_table_is_bounded);
  RUN(per_action_models_map_ids_to_arms);
  RUN(rewards_combine_wait_and_default);
  RUN(generated_ids_repeat_only_without_a_nonce);
  return CHECK_DONE();
}
