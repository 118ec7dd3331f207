/* A Lua app serving an engine that C owns, with hot reload.
 *
 * The host (the server) creates the engine and keeps it; the app programs
 * it. An oa_server_app holds one Lua state at a time: the state that ran
 * `require("onearm").load_app(path, engine)` in the app's sandbox, with its
 * hooks (context, schedule, reward, combine). The engine is handed to every
 * state as a borrowed userdata, so closing a state never loses learned state
 * (DESIGN.md §4).
 *
 * Reload (oa_server_app_reload) builds a new state aside and loads the app
 * into a staging engine, makes a canary decision through every policy, then
 * reconciles the live engine: a policy with the same name and shape keeps
 * its model and learned state and takes the new explorer and parameters; a
 * new policy is added; a shape change is refused (the whole reload fails)
 * unless the app lists the policy in `reset = {...}`; policies the app no
 * longer declares keep serving unless it lists them in `remove = {...}`.
 * Only then are the hooks swapped to the new state and the old state closed
 * (at once, or when the last Lua call on its stack returns). A failed
 * reload changes nothing: the old state keeps serving.
 *
 * Limits: every state has a memory cap (a custom allocator) and every hook
 * call an instruction budget (a count hook); a script over either fails
 * that call with OA_ESCRIPT ("instruction budget exceeded" / "memory limit
 * exceeded"), never the process.
 *
 * Lua-written models (oa.model.lua) live in their state: on reload such a
 * policy is rebuilt in the new state, its learned state carried over by the
 * model's save/load (fresh when it has none); its counters and pending
 * events restart.
 *
 * One thread (the loop thread). */
#ifndef ONEARM_SERVER_APP_H
#define ONEARM_SERVER_APP_H

#include "runtime/engine.h"
#include "server/api.h"

typedef struct oa_server_app oa_server_app;

typedef struct oa_app_limits {
  size_t memory_bytes;     /* cap per Lua state; 0: default 256 MiB */
  int64_t instructions;    /* budget per hook call; 0: default 10 million */
  const char *scripts_dir; /* NULL: ONEARM_SCRIPTS from the environment, else the
                              compiled-in directory */
} oa_app_limits;

/* Loads the app file into a new Lua state and reconciles engine (borrowed:
 * it must outlive the app) with it, as a reload would. limits NULL: the
 * defaults. Applies the app's event settings (reward_wait, default_reward,
 * combine, close) to the engine. NULL + err (OA_ESCRIPT, the message with
 * file:line) on failure; the engine may then hold nothing of the app. */
oa_server_app *oa_server_app_load(oa_engine *engine, const char *path,
                                  const oa_app_limits *limits, oa_error *err);
/* Closes the Lua state; the engine and its policies stay with the caller. */
void oa_server_app_free(oa_server_app *a);

/* Reloads the app from its path (see above). 0: the new app serves, the
 * reload counter increments. Otherwise the old app keeps serving, err says
 * why (file:line for script errors), the failure counter increments and
 * the message stays available from oa_server_app_last_reload_error. Logs
 * one line to stderr either way (plus the Lua traceback of a failure).
 * Call it between requests (a signal or timer callback, the admin route);
 * an old state still running a call is closed when that call returns. */
int oa_server_app_reload(oa_server_app *a, oa_error *err);

oa_engine *oa_server_app_engine(oa_server_app *a);
const char *oa_server_app_path(const oa_server_app *a);
/* A hash of the app's sources (its file and the modules it required);
 * valid until the next successful reload. */
const char *oa_server_app_version(const oa_server_app *a);
/* The app's first policy name (the default for requests that name none). */
const char *oa_server_app_default_policy(const oa_server_app *a);

/* The files the current app loaded: its path, then every module it
 * required from its folder or scripts/ (not the onearm library), for a
 * file watcher. Valid until the next successful reload. */
int32_t oa_server_app_file_count(const oa_server_app *a);
const char *oa_server_app_file(const oa_server_app *a, int32_t i);

typedef struct oa_app_stats {
  uint64_t reloads;         /* successful reloads (not the first load) */
  uint64_t reload_failures; /* reloads refused or failed */
  uint64_t script_errors;   /* hook calls that failed (any reason) */
  uint64_t budget_errors;   /* of which: instruction budget exceeded */
  uint64_t memory_errors;   /* of which: memory cap reached */
} oa_app_stats;
oa_app_stats oa_server_app_stats(const oa_server_app *a);
/* Bytes the current Lua state holds. */
uint64_t oa_server_app_lua_bytes(const oa_server_app *a);
/* The message of the last failed reload ("" when none failed or the last
 * reload succeeded). */
const char *oa_server_app_last_reload_error(const oa_server_app *a);

/* Gives the current state a fresh instruction budget. Hooks do this
 * themselves; a host calls it before engine work that may run Lua
 * (oa_engine_expire closing events of a Lua model's policy). */
void oa_server_app_budget_reset(oa_server_app *a);

/* An oa_api_reward_fn (ud = the app): converts the JSON signals to a Lua
 * table and calls the app's reward composition. */
int oa_server_app_reward(void *ud, struct json_object *signals, double *reward,
                         oa_error *err);

/* Fills the API description for this app: engine, hooks (context and
 * schedule on rank, reward, combine), version and default policy (through
 * the hooks, so they follow reloads), and the admin reload route (calling
 * oa_server_app_reload). */
void oa_server_app_describe(oa_server_app *a, oa_api_app *out);

#endif
