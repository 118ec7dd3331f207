/* The HTTP API over the runtime: routes, request validation, responses and
 * Prometheus metrics. It is an oa_http_handler (oa_api_handle) over one
 * engine; it knows nothing about Lua: what an app contributes (the reward
 * hook for raw signals, the default policy, the version tag) comes in
 * through oa_api_app, filled by whoever loaded the app (server/app.c for
 * a Lua app, or a C host that built its engine by hand).
 *
 * Routes (JSON in and out; every error is {"error":{"code","message"}}):
 *   POST   /v1/rank                             decide
 *   POST   /v1/events/{eventId}/reward          {value} | {signals}
 *   POST   /v1/events/{eventId}/activate        for deferActivation
 *   PUT    /v1/actions/{id}                     {features}   (admin)
 *   DELETE /v1/actions/{id}                                  (admin)
 *   POST   /v1/actions:batch                    {upsert, remove} (admin)
 *   POST   /v1/actions:load                     {path}: a catalog file (admin;
 *                                               server/catalog_load.h)
 *   GET    /v1/policies, /v1/policies/{name}
 *   GET    /healthz, /metrics
 *   POST   /personalizer/v1.0/rank, .../events/{eventId}/reward, .../activate
 *   POST   /v1/admin/reload                     reload the app (admin)
 * "admin" routes need the admin token (Authorization: Bearer T or
 * X-Admin-Token: T) when one is configured. Without a token, the catalog
 * routes are open and the reload route is allowed only when the host says
 * it listens on loopback only (admin_loopback): the request carries no peer
 * address yet.
 *
 * App hooks (oa_api_hooks, all optional) bring an app's logic in without
 * the API knowing Lua: `rank` runs once per rank request before the
 * decision (the context hook may replace the context; the schedule may set
 * the policy's parameters), `combine` turns each reward into the value the
 * engine keeps (a scripted combination), enter/leave bracket the engine
 * calls of a request (which may run Lua explorers or models). A failing
 * hook answers 500 ScriptError with its message and changes nothing.
 *
 * Events: a reward adds an observation (the engine combines them and closes
 * the event as the app configures); an event ranked with deferActivation
 * learns only if it is activated before it closes. Unknown events are 404,
 * closed ones 409. */
#ifndef ONEARM_SERVER_API_H
#define ONEARM_SERVER_API_H

#include "runtime/engine.h"
#include "server/http.h"

struct json_object;

/* Turn raw signals (a JSON object) into a reward. Returns 0 and *reward, or
 * an OA_E* code with err filled (OA_ESCRIPT for a failing hook). */
typedef int (*oa_api_reward_fn)(void *ud, struct json_object *signals, double *reward,
                                oa_error *err);

/* What an app adds to the API; ud is oa_api_app.hooks_ud. */
typedef struct oa_api_hooks {
  /* Before a rank decision with policy p: ctx is the request's context (a
   * JSON object; Personalizer feature lists arrive merged into one), or
   * NULL. May set *ctx_out to a new reference (the API releases it) that
   * replaces the context, and may change p's parameters. */
  int (*rank)(void *ud, oa_policy *p, struct json_object *ctx,
              struct json_object **ctx_out, oa_error *err);
  /* The value the engine gets for the reward r of event_id (NULL: r). */
  int (*combine)(void *ud, const char *event_id, double r, double *out, oa_error *err);
  /* Around the engine calls of one request (NULL: nothing). */
  void (*enter)(void *ud);
  void (*leave)(void *ud);
  /* POST /v1/admin/reload (NULL: 404). 0 on success; otherwise err says
   * why (answered 422 ReloadFailed with the message). */
  int (*reload)(void *ud, oa_error *err);
  /* The current app version and default policy, asked per request so they
   * follow reloads (NULL: the copies made by oa_api_new). */
  const char *(*version)(void *ud);
  const char *(*default_policy)(void *ud);
  /* Appends Prometheus lines to /metrics (NULL: none). */
  void (*metrics)(void *ud, oa_buf *out);
} oa_api_hooks;

typedef struct oa_api_app {
  oa_engine *engine;          /* borrowed; must outlive the api */
  const char *default_policy; /* NULL: the engine's first policy */
  const char *version;        /* app version tag for responses ("" if none) */
  oa_api_reward_fn reward;    /* NULL: `signals` requests are refused (400) */
  void *reward_ud;
  const char *admin_token;   /* NULL or "": admin routes are open */
  int admin_loopback;        /* 1: the server listens on loopback only (allows the
                                reload route without a token) */
  int log_context;           /* 1: attach each decision's context and candidates (JSON) to
                                its event, for the decision log's `c` field */
  const oa_api_hooks *hooks; /* NULL: none; borrowed, must outlive the api */
  void *hooks_ud;
} oa_api_app;

typedef struct oa_api oa_api;

/* Copies the strings of app. NULL + err on failure. */
oa_api *oa_api_new(const oa_api_app *app, oa_error *err);
void oa_api_free(oa_api *api);

/* The server the api answers for (both borrowed; either may be NULL):
 * /metrics reports the HTTP layer's counters, and large exact retrieval
 * scans run on the loop's thread pool while their responses wait
 * (oa_http_defer); without a loop they run on the calling thread. */
void oa_api_set_server(oa_api *api, uv_loop_t *loop, oa_http_server *http);

/* The oa_http_handler: ud is the oa_api. */
void oa_api_handle(void *ud, const oa_http_request *req, oa_http_response *res);

#endif
