/* The decision log: one DSJSON line per closed event, with VW's label
 * fields and onearm's own, rotated by size. */
#include "check.h"
#include "fixtures.h"
#include "core/error.h"
#include "runtime/declog.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/onearm-declog-XXXXXX";

static void hook(void *ud, const oa_closed_event *ev) {
  oa_error err;
  CHECK_OK(oa_declog_write(ud, ev, "app-1", 1.8e9, &err));
}

static void logs_dsjson_lines(void) {
  oa_error err = {0};
  oa_declog *log = oa_declog_open(dir, 0, &err);
  CHECK(log != NULL);
  oa_engine *e = oa_engine_new(1, &err);
  oa_field_spec f = {0};
  strcpy(f.name, "topic");
  f.side = OA_SIDE_ACTION;
  f.kind = OA_FK_CAT;
  oa_features_spec spec = {OA_LAYOUT_HASHED, 16, 1, 1, &f, 0, NULL, 0};
  oa_features *fs = oa_features_new(&spec, &err);
  oa_ridge_config rc = {.dim = 16, .lambda = 1, .forget = 1, .v = 1};
  oa_explore_params params = oa_explore_defaults();
  params.epsilon = 0.3;
  oa_policy_spec ps = {"feed \"main\"",
                       fs,
                       oa_ridge_new(&rc, &err),
                       OA_EXPLORE_EGREEDY,
                       params,
                       NULL,
                       NULL};
  CHECK_OK(oa_engine_add_policy(e, &ps, &err));
  oa_engine_set_close_hook(e, hook, log);
  oa_value music = str_value("music"), news = str_value("news");
  const oa_value *actions[2] = {&music, &news};
  const char *ids[2] = {"v1", "v2"};
  oa_decide_request req = {
      .event_id = "ev-1", .n = 2, .ids = ids, .actions = actions, .keep_event = 1};
  oa_decision d;
  CHECK_OK(oa_policy_decide(oa_engine_policy(e, "feed \"main\""), &req, &d, &err));
  CHECK_OK(oa_engine_attach(e, "ev-1",
                            "{\"user\":\"ann\",\"_multi\":[{\"t\":1},{\"t\":2}]}", &err));
  CHECK_OK(oa_engine_add_signals(e, "ev-1", "{\"watched\":0.5}", &err));
  CHECK_OK(oa_engine_add_signals(e, "ev-1", "{\"liked\":true}", &err));
  CHECK_OK(oa_engine_learn(e, "ev-1", 0.75, &err));
  CHECK_OK(oa_declog_flush(log, &err));

  json_object *line = json_object_from_file(oa_declog_path(log));
  CHECK(line != NULL);
  if (line) {
    json_object *v;
    CHECK(json_object_object_get_ex(line, "_label_cost", &v) &&
          json_object_get_double(v) == -0.75);
    CHECK(json_object_object_get_ex(line, "_label_Action", &v) &&
          json_object_get_int(v) == d.chosen + 1);
    CHECK(json_object_object_get_ex(line, "_label_probability", &v) &&
          fabs(json_object_get_double(v) - d.prob[d.chosen]) < 1e-12);
    CHECK(json_object_object_get_ex(line, "a", &v) && json_object_array_length(v) == 2 &&
          json_object_get_int(json_object_array_get_idx(v, 0)) == d.chosen + 1);
    CHECK(json_object_object_get_ex(line, "p", &v) && json_object_array_length(v) == 2);
    CHECK(json_object_object_get_ex(line, "c", &v) &&
          json_object_object_get_ex(v, "_multi", &v));
    CHECK(json_object_object_get_ex(line, "signals", &v) &&
          json_object_array_length(v) == 2);
    CHECK(json_object_object_get_ex(line, "policy", &v) &&
          !strcmp(json_object_get_string(v), "feed \"main\""));
    CHECK(json_object_object_get_ex(line, "EventId", &v) &&
          !strcmp(json_object_get_string(v), "ev-1"));
    CHECK(json_object_object_get_ex(line, "appVersion", &v) &&
          !strcmp(json_object_get_string(v), "app-1"));
    CHECK(json_object_object_get_ex(line, "Timestamp", &v) &&
          !strncmp(json_object_get_string(v), "2027-01-15T", 11));
    json_object_put(line);
  }
  oa_engine_free(e);
  oa_features_release(fs);
  oa_declog_close(log);
}

static void rotates_by_size(void) {
  oa_error err = {0};
  oa_declog *log = oa_declog_open(dir, 300, &err);
  const char *ids[3] = {"a", "b", "c"};
  double probs[3] = {0.2, 0.5, 0.3};
  oa_closed_event ev = {"e", "p", 3, 1, ids, probs, 1, 1, 1, 0, 1, 0, 0, NULL, NULL};
  for (int i = 0; i < 5; i++)
    CHECK_OK(oa_declog_write(log, &ev, "v", 1.8e9 + i, &err));
  oa_declog_close(log);
  /* integers print exactly, negative ones too */
  char cmd[256];
  snprintf(cmd, sizeof cmd,
           "cat %s/decisions*.jsonl | grep -q '\"_label_cost\":-1,\"_label_probability\":0.5,"
           "\"_label_Action\":2,\"_labelIndex\":1,'",
           dir);
  CHECK(system(cmd) == 0);
  snprintf(cmd, sizeof cmd, "test $(ls %s | grep -c '^decisions-') -ge 1", dir);
  CHECK(system(cmd) == 0);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  RUN(logs_dsjson_lines);
  RUN(rotates_by_size);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) return 1;
  return CHECK_DONE();
}
