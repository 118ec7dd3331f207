/* A Lua app loaded for serving: one lua_State that ran
 * `require("onearm").load_app(path)`, the engine the app built, and the
 * hooks the HTTP API calls (the reward hook for raw signals).
 *
 * The Lua state owns the engine (the app's engine userdata), so the engine
 * lives exactly as long as this object. One thread (the loop thread). */
#ifndef ONEARM_SERVER_APP_H
#define ONEARM_SERVER_APP_H

#include "runtime/engine.h"
#include "server/api.h"

typedef struct oa_server_app oa_server_app;

/* Loads the app file. scripts_dir: where `onearm` and its modules live
 * (NULL: ONEARM_SCRIPTS from the environment, else the compiled-in
 * directory). NULL + err (OA_ESCRIPT with the Lua message and traceback)
 * on failure. Applies the app's event settings (reward_wait,
 * default_reward, combine, close) to the engine. */
oa_server_app *oa_server_app_load(const char *path, const char *scripts_dir,
                                  oa_error *err);
void oa_server_app_free(oa_server_app *a);

oa_engine *oa_server_app_engine(oa_server_app *a);
const char *oa_server_app_version(const oa_server_app *a);
/* The app's first policy name (the default for requests that name none). */
const char *oa_server_app_default_policy(const oa_server_app *a);

/* An oa_api_reward_fn (ud = the app): converts the JSON signals to a Lua
 * table and calls the app's reward composition. */
int oa_server_app_reward(void *ud, struct json_object *signals, double *reward,
                         oa_error *err);

/* Fills the API description for this app. */
void oa_server_app_describe(oa_server_app *a, oa_api_app *out);

#endif
