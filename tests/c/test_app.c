/* The server's app host (server/app.c) without HTTP: an engine owned by C,
 * an app loaded into it and reloaded — learned state kept, shape changes
 * refused unless reset, Lua explorers and models moved to the new state,
 * broken versions refused with file:line, the instruction budget and the
 * memory cap, the files an app loaded. */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "server/app.h"

static char dir[256];

static void write_file(const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fputs(text, f);
  fclose(f);
}

static const char *app_path(void) {
  static char path[512];
  snprintf(path, sizeof path, "%s/app.lua", dir);
  return path;
}

/* A LinUCB app over dim `dim` with alpha, plus extra app keys. */
static void write_app(int dim, double alpha, const char *extra) {
  char src[2048];
  snprintf(src, sizeof src,
           "local oa = require 'onearm'\n"
           "local space = oa.features { dim = %d, context = { u = 'cat' },\n"
           "  action = { s = 'cat' }, cross = { { 'u', 's' } } }\n"
           "return oa.app {\n"
           "  policies = { p = oa.policy { features = space,\n"
           "    model = oa.linucb { alpha = %g } } },\n"
           "  reward = function(s)\n"
           "    if s.loop then while true do end end\n"
           "    if s.big then local x = string.rep('x', 64 * 1024 * 1024) end\n"
           "    return s.r or 0\n"
           "  end,\n"
           "  %s\n"
           "}\n",
           dim, alpha, extra ? extra : "");
  write_file("app.lua", src);
}

/* One decision with two inline candidates (no fields) and its reward. */
static int decide_learn(oa_engine *e, oa_policy *p, double reward) {
  oa_value none[4] = {0};
  const char *ids[2] = {"a", "b"};
  const oa_value *acts[2] = {none, none};
  oa_decide_request rq = {.n = 2, .ids = ids, .actions = acts, .keep_event = 1};
  oa_decision d;
  oa_error err = {0};
  int rc = oa_policy_decide(p, &rq, &d, &err);
  if (rc) {
    fprintf(stderr, "decide: %s\n", err.message);
    return rc;
  }
  char id[OA_EVENT_ID_MAX];
  snprintf(id, sizeof id, "%s", d.event_id);
  return oa_engine_learn(e, id, reward, &err);
}

static void test_reload_keeps_learned_state(void) {
  write_app(16, 1, NULL);
  oa_error err = {0};
  oa_engine *e = oa_engine_new(1, &err);
  oa_server_app *a = oa_server_app_load(e, app_path(), NULL, &err);
  CHECK(a != NULL);
  if (!a) {
    fprintf(stderr, "%s\n", err.message);
    return;
  }
  oa_policy *p = oa_engine_policy(e, "p");
  CHECK(p != NULL);
  for (int i = 0; i < 5; i++)
    CHECK_OK(decide_learn(e, p, 1));
  char v1[64];
  snprintf(v1, sizeof v1, "%s", oa_server_app_version(a));
  write_app(16, 2.5, NULL);
  CHECK_OK(oa_server_app_reload(a, &err));
  CHECK(oa_engine_policy(e, "p") == p); /* the same policy, learned state kept */
  CHECK(oa_policy_get_stats(p).decisions == 5);
  CHECK(oa_policy_model(p)->updates == 5);
  CHECK_NEAR(oa_policy_params(p).alpha, 2.5, 0);
  CHECK(strcmp(v1, oa_server_app_version(a)) != 0);
  CHECK(oa_server_app_stats(a).reloads == 1);
  CHECK(oa_server_app_lua_bytes(a) > 0);

  /* a broken version: refused with file:line, the old one keeps serving */
  write_file("app.lua", "local oa = require 'onearm'\nlocal x = = 1\n");
  char v2[64];
  snprintf(v2, sizeof v2, "%s", oa_server_app_version(a));
  CHECK(oa_server_app_reload(a, &err) == OA_ESCRIPT);
  CHECK(strstr(err.message, "app.lua:2:") != NULL);
  CHECK(strstr(oa_server_app_last_reload_error(a), "app.lua:2:") != NULL);
  CHECK(!strcmp(v2, oa_server_app_version(a)));
  CHECK(oa_server_app_stats(a).reload_failures == 1);
  CHECK_OK(decide_learn(e, p, 0));

  /* a shape change is refused, then accepted with a reset */
  write_app(32, 1, NULL);
  CHECK(oa_server_app_reload(a, &err) == OA_ESCRIPT);
  CHECK(strstr(err.message, "policy 'p' changed shape (dim 16 \xe2\x86\x92 32); declare "
                            "reset = {'p'}") != NULL);
  CHECK(oa_features_dim(oa_policy_features(oa_engine_policy(e, "p"))) == 16);
  write_app(32, 1, "reset = { 'p' },");
  CHECK_OK(oa_server_app_reload(a, &err));
  p = oa_engine_policy(e, "p");
  CHECK(oa_features_dim(oa_policy_features(p)) == 32);
  CHECK(oa_policy_get_stats(p).decisions == 0);
  CHECK(oa_policy_reset_allowed(p));
  oa_server_app_free(a);
  CHECK(oa_engine_policy(e, "p") != NULL); /* the engine keeps its policies */
  oa_engine_free(e);
}

/* Lua explorers and Lua models belong to a state: a reload moves them to
 * the new one (a Lua model's state through its save/load), and freeing the
 * app leaves the engine usable. */
static void test_lua_parts_follow_reloads(void) {
  const char *src =
      "local oa = require 'onearm'\n"
      "local space = oa.features { dim = 8, context = { u = 'cat' }, action = { s = "
      "'cat' } }\n"
      "local function counter(dim)\n"
      "  return oa.model.lua { dim = dim, n = 0,\n"
      "    score = function(self, X) local t = {} for i = 1, X.rows do t[i] = self.n end"
      " return t end,\n"
      "    update = function(self) self.n = self.n + 1 end,\n"
      "    save = function(self) return tostring(self.n) end,\n"
      "    load = function(self, s) self.n = tonumber(s) end }\n"
      "end\n"
      "return oa.app { policies = {\n"
      "  q = oa.policy { features = space, model = counter,\n"
      "    explore = function(scores) local p = {} for i = 1, #scores do p[i] = 1 / "
      "#scores"
      " end return p end },\n"
      "  g = oa.policy { features = space, model = oa.linucb {},\n"
      "    explore = function(scores) local p = {} for i = 1, #scores do p[i] = i == 1 "
      "and 1 or"
      " 0 end return p end } },\n"
      "  -- %d\n"
      "}\n";
  char text[2048];
  snprintf(text, sizeof text, src, 1);
  write_file("app.lua", text);
  oa_error err = {0};
  oa_engine *e = oa_engine_new(1, &err);
  oa_server_app *a = oa_server_app_load(e, app_path(), NULL, &err);
  CHECK(a != NULL);
  if (!a) {
    fprintf(stderr, "%s\n", err.message);
    return;
  }
  for (int i = 0; i < 3; i++) {
    CHECK_OK(decide_learn(e, oa_engine_policy(e, "q"), 1));
    CHECK_OK(decide_learn(e, oa_engine_policy(e, "g"), 1));
  }
  for (int k = 2; k < 5; k++) { /* the old states are closed each time */
    snprintf(text, sizeof text, src, k);
    write_file("app.lua", text);
    CHECK_OK(oa_server_app_reload(a, &err));
    CHECK_OK(decide_learn(e, oa_engine_policy(e, "q"), 1));
    CHECK_OK(decide_learn(e, oa_engine_policy(e, "g"), 1));
  }
  /* the Lua model kept counting across the reloads */
  oa_value none[2] = {0};
  const char *ids[2] = {"a", "b"};
  const oa_value *acts[2] = {none, none};
  oa_decide_request rq = {.n = 2, .ids = ids, .actions = acts};
  oa_decision d;
  CHECK_OK(oa_policy_decide(oa_engine_policy(e, "q"), &rq, &d, &err));
  CHECK_NEAR(d.mean[0], 6, 0);
  CHECK(oa_policy_get_stats(oa_engine_policy(e, "g")).decisions == 6);
  /* a policy with Lua parts cannot silently outlive its code */
  write_app(16, 1, NULL);
  CHECK(oa_server_app_reload(a, &err) == OA_ESCRIPT);
  CHECK(strstr(err.message, "remove = {'g'}") != NULL);
  write_app(16, 1, "remove = { 'q', 'g' },");
  CHECK_OK(oa_server_app_reload(a, &err));
  CHECK(oa_engine_policy(e, "q") == NULL && oa_engine_policy(e, "g") == NULL);
  oa_server_app_free(a);
  oa_engine_free(e);
}

static void test_limits(void) {
  write_app(16, 1, NULL);
  oa_error err = {0};
  oa_engine *e = oa_engine_new(1, &err);
  oa_app_limits lim = {.memory_bytes = (size_t)32 << 20, .instructions = 200000};
  oa_server_app *a = oa_server_app_load(e, app_path(), &lim, &err);
  CHECK(a != NULL);
  if (!a) {
    fprintf(stderr, "%s\n", err.message);
    return;
  }
  json_object *loop = json_tokener_parse("{\"loop\": true}");
  json_object *big = json_tokener_parse("{\"big\": true}");
  json_object *ok = json_tokener_parse("{\"r\": 0.5}");
  double r = 0;
  CHECK(oa_server_app_reward(a, loop, &r, &err) == OA_ESCRIPT);
  CHECK(strstr(err.message, "app.lua:8: instruction budget exceeded") != NULL);
  CHECK_OK(oa_server_app_reward(a, ok, &r, &err));
  CHECK_NEAR(r, 0.5, 0);
  CHECK(oa_server_app_reward(a, big, &r, &err) == OA_ESCRIPT);
  CHECK(strstr(err.message, "memory limit exceeded") != NULL);
  CHECK(oa_server_app_lua_bytes(a) < lim.memory_bytes);
  CHECK_OK(oa_server_app_reward(a, ok, &r, &err));
  oa_app_stats st = oa_server_app_stats(a);
  CHECK(st.script_errors == 2 && st.budget_errors == 1 && st.memory_errors == 1);
  json_object_put(loop);
  json_object_put(big);
  json_object_put(ok);
  /* a load that runs away is a failed reload, not a stuck process */
  write_app(16, 1, "x = (function() while true do end end)(),");
  CHECK(oa_server_app_reload(a, &err) == OA_ESCRIPT);
  CHECK(strstr(err.message, "instruction budget exceeded") != NULL);
  oa_server_app_free(a);
  oa_engine_free(e);
}

static void test_files(void) {
  write_file("knobs.lua", "return { alpha = 1.5 }\n");
  write_app(16, 1, "-- uses knobs");
  char src[1024];
  snprintf(src, sizeof src,
           "local oa = require 'onearm'\n"
           "local knobs = require 'knobs'\n"
           "local space = oa.features { dim = 8, context = { u = 'cat' } }\n"
           "return oa.app { policies = { p = oa.policy { features = space,\n"
           "  model = oa.linucb { alpha = knobs.alpha } } } }\n");
  write_file("app.lua", src);
  oa_error err = {0};
  oa_engine *e = oa_engine_new(1, &err);
  oa_server_app *a = oa_server_app_load(e, app_path(), NULL, &err);
  CHECK(a != NULL);
  if (!a) {
    fprintf(stderr, "%s\n", err.message);
    return;
  }
  CHECK(oa_server_app_file_count(a) == 2);
  CHECK(!strcmp(oa_server_app_file(a, 0), app_path()));
  CHECK(strstr(oa_server_app_file(a, 1), "/knobs.lua") != NULL);
  char v1[64];
  snprintf(v1, sizeof v1, "%s", oa_server_app_version(a));
  write_file("knobs.lua", "return { alpha = 2 }\n");
  CHECK_OK(oa_server_app_reload(a, &err));
  CHECK(strcmp(v1, oa_server_app_version(a)) != 0); /* the version covers modules */
  CHECK_NEAR(oa_policy_params(oa_engine_policy(e, "p")).alpha, 2, 0);
  oa_server_app_free(a);
  oa_engine_free(e);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/onearm_test_app_XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  setenv("ONEARM_SCRIPTS", ONEARM_SOURCE_DIR "/scripts", 1);
  RUN(test_reload_keeps_learned_state);
  RUN(test_lua_parts_follow_reloads);
  RUN(test_limits);
  RUN(test_files);
  return CHECK_DONE();
}
