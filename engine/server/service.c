/* The service: everything `onearm serve` runs, as an object a host can put
 * on its own libuv loop (onearm.h, "Embedding").
 *
 * It owns the engine (C state that outlives any Lua state), the app (Lua
 * logic, reloadable), the HTTP API, the decision log and the snapshot
 * schedule. Its handles on the host's loop:
 *   expire    closes events whose reward wait has passed, in slices of at
 *             most a millisecond (every 50 ms, sooner while some are due)
 *   snapshot  builds a snapshot between requests and writes it on the
 *             libuv thread pool (fsync never blocks the loop)
 *   flush     flushes the decision log once a second
 *   reload    a uv_async_t: oa_service_request_reload from any thread
 *   debounce  reloads 200 ms after the app's files stop changing
 *   watchers  one uv_fs_event per folder holding an app file
 * Stopping closes them all, then writes a final snapshot and flushes the
 * log before the host's callback runs. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "core/error.h"
#include "core/progress.h"
#include "onearm.h"
#include "catalog/filter.h"
#include "runtime/declog.h"
#include "runtime/retrieval.h"
#include "runtime/snapshot.h"
#include "server/api.h"
#include "server/app.h"
#include "server/catalog_file.h"
#include "server/http.h"
#include "server/json.h"

#define MAX_WATCHED_DIRS 16

typedef struct watched_dir {
  uv_fs_event_t handle;
  char path[1024];
  struct oa_service *service;
} watched_dir;

struct oa_service {
  oa_service_config cfg;
  char *app_path, *data_dir, *listen, *admin_token; /* owned copies */
  char host[256];
  int port;
  oa_engine *engine;
  oa_server_app *app;
  oa_api *api;
  oa_http_server *http;
  oa_declog *log;
  uv_loop_t *loop;
  uv_timer_t expire, snapshot, flush, debounce;
  uv_async_t reload_async;
  watched_dir *watch[MAX_WATCHED_DIRS];
  int n_watch;
  int started, stopping, open_handles, http_done;
  /* a snapshot being written on the thread pool */
  uv_work_t work;
  oa_snapshot_job *snap;
  oa_error work_err;
  int writing;
  void (*done)(oa_service *s, void *ud);
  void *done_ud;
  oa_json_arena arena; /* in-process decisions */
  /* retrieval maintenance (index rebuild, recall) on the thread pool */
  uv_timer_t retr_timer;
  uv_work_t retr_work;
  oa_retrieval_job *retr_job;
};

void oa_service_config_defaults(oa_service_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->snapshot_interval = 60;
  cfg->decision_log = 1;
  cfg->watch_files = 1;
  cfg->restore = 1;
}

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

static double wall_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void log_closed_event(void *ud, const oa_closed_event *ev) {
  oa_service *s = ud;
  oa_error err;
  if (oa_declog_write(s->log, ev, oa_server_app_version(s->app), wall_seconds(), &err))
    fprintf(stderr, "onearm: decision log: %s\n", err.message);
}

/* "HOST:PORT" or "[V6]:PORT". */
static int parse_listen(const char *s, char *host, size_t cap, int *port) {
  const char *colon;
  size_t hlen;
  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (!end || end[1] != ':') return -1;
    hlen = (size_t)(end - s - 1);
    s++;
    colon = end + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon) return -1;
    hlen = (size_t)(colon - s);
  }
  if (hlen == 0 || hlen >= cap) return -1;
  memcpy(host, s, hlen);
  host[hlen] = 0;
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || p < 0 || p > 65535) return -1;
  *port = (int)p;
  return 0;
}

static int is_loopback(const char *host) {
  return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

static int make_dirs(const char *path) {
  char p[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof p) return -1;
  memcpy(p, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != 0) continue;
    char saved = p[i];
    p[i] = 0;
    if (mkdir(p, 0777) && errno != EEXIST) return -1;
    p[i] = saved;
  }
  return 0;
}

/* A random 64-bit value per process (event ids must not repeat across
 * restarts); falls back to time and pid if the kernel has no entropy call. */
static uint64_t process_nonce(void) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 48);
  }
  return v;
}

static void draw_load_progress(void *ud, double fraction, int64_t rows) {
  oa_progress_draw(ud, fraction, rows);
}

/* A catalog file loaded on this thread, with a progress bar on a terminal
 * and one line in the log. */
static int load_catalog_file(oa_engine *e, const char *path, oa_error *err) {
  oa_progress bar;
  oa_progress_begin(&bar);
  int64_t before = oa_catalog_count(oa_engine_catalog(e));
  int rc = oa_catalog_file_load(e, path, draw_load_progress, &bar, err);
  double seconds = oa_progress_end(&bar);
  if (!rc)
    fprintf(stderr, "onearm: catalog: %lld actions from %s (%.1f s)\n",
            (long long)(oa_catalog_count(oa_engine_catalog(e)) - before), path, seconds);
  return rc;
}

int oa_service_load_catalog(oa_service *s, const char *path, oa_error *err) {
  if (!s || !path) return oa_error_set(err, OA_EINVAL, "a catalog load needs a path");
  return load_catalog_file(s->engine, path, err);
}

oa_service *oa_service_new(const oa_service_config *cfg, oa_error *err) {
  if (!cfg->app_path) {
    oa_error_set(err, OA_EINVAL, "a service needs an app path");
    return NULL;
  }
  oa_service *s = calloc(1, sizeof *s);
  if (!s) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    return NULL;
  }
  s->cfg = *cfg;
  s->app_path = strdup(cfg->app_path);
  s->data_dir = strdup(cfg->data_dir ? cfg->data_dir : "./var");
  s->listen = dup_or_null(cfg->listen);
  s->admin_token =
      dup_or_null(cfg->admin_token && cfg->admin_token[0] ? cfg->admin_token : NULL);
  s->port = -1;
  oa_json_arena_init(&s->arena);
  if (!s->app_path || !s->data_dir || (cfg->listen && !s->listen)) {
    oa_error_set(err, OA_ENOMEM, "out of memory");
    goto fail;
  }
  if (s->listen && parse_listen(s->listen, s->host, sizeof s->host, &s->port)) {
    oa_error_set(err, OA_EINVAL, "listen address must be HOST:PORT, got '%s'", s->listen);
    goto fail;
  }
  if (make_dirs(s->data_dir)) {
    oa_error_set(err, OA_EIO, "cannot create data directory '%s': %s", s->data_dir,
                 strerror(errno));
    goto fail;
  }
  if (!(s->engine = oa_engine_new(cfg->seed, err))) goto fail;
  oa_engine_set_id_nonce(s->engine, process_nonce());
  oa_app_limits limits = {cfg->lua_memory_bytes, cfg->lua_instructions, NULL};
  if (!(s->app = oa_server_app_load(s->engine, s->app_path, &limits, err))) goto fail;
  if (cfg->restore) {
    oa_snapshot_report rep;
    if (oa_snapshot_restore(s->engine, s->data_dir, &rep, err)) {
      oa_error_prefix(err, "restoring state from '%s'", s->data_dir);
      goto fail;
    }
    if (rep.used_previous)
      fprintf(stderr, "onearm: newest snapshot unusable (%s); restored %s\n", rep.problem,
              rep.file);
    if (rep.file[0])
      fprintf(stderr,
              "onearm: restored %d policies, %lld actions, %d pending events from %s\n",
              rep.policies_restored, (long long)rep.actions, rep.events_restored,
              rep.file);
  }
  if (cfg->catalog_path && load_catalog_file(s->engine, cfg->catalog_path, err))
    goto fail;
  if (cfg->decision_log) {
    if (!(s->log = oa_declog_open(s->data_dir, cfg->log_rotate_bytes, err))) goto fail;
    oa_engine_set_close_hook(s->engine, log_closed_event, s);
  }
  oa_api_app desc;
  oa_server_app_describe(s->app, &desc);
  desc.admin_token = s->admin_token;
  desc.admin_loopback = s->listen && is_loopback(s->host);
  desc.log_context = cfg->decision_log;
  if (!(s->api = oa_api_new(&desc, err))) goto fail;
  return s;
fail:
  oa_service_free(s);
  return NULL;
}

int oa_service_port(const oa_service *s) {
  return s->http ? oa_http_server_port(s->http) : -1;
}

/* ---- timers ---- */

/* Retrieval maintenance: when the index is missing (big catalog) or
 * stale, or sampled queries wait for their recall check, the work runs on
 * the libuv thread pool; the store is frozen meanwhile (retrieval.h). */
static void retr_work(uv_work_t *w) {
  oa_service *s = w->data;
  oa_retrieval_job_run(s->retr_job);
}

static void maybe_finish_stop(oa_service *s);

static void retr_done(uv_work_t *w, int status) {
  (void)status;
  oa_service *s = w->data;
  oa_engine_retrieval_job_end(s->engine, s->retr_job);
  s->retr_job = NULL;
  if (s->stopping) maybe_finish_stop(s);
}

static void on_retr_timer(uv_timer_t *t) {
  oa_service *s = t->data;
  if (s->retr_job || s->stopping) return;
  int jobs = oa_engine_retrieval_jobs(s->engine);
  if (!jobs || !(s->retr_job = oa_engine_retrieval_job_begin(s->engine, jobs))) return;
  s->retr_work.data = s;
  if (uv_queue_work(s->loop, &s->retr_work, retr_work, retr_done)) {
    oa_retrieval_job_run(s->retr_job); /* no thread pool: do it here */
    retr_done(&s->retr_work, 0);
  }
}

/* Closing an event learns from it and writes its decision-log line (tens
 * of microseconds with a large shortlist), and events come due at the
 * rate decisions were made. Closing them all in one go would stall the
 * loop for milliseconds every tick, so each tick closes what is due for at
 * most EXPIRE_SLICE_NS; when some remain due the next tick comes at once
 * (1 ms), with requests served in between. */
#define EXPIRE_EVERY_MS 50
#define EXPIRE_SLICE_NS (1000 * 1000)
#define EXPIRE_CHUNK    16

static void on_expire(uv_timer_t *t) {
  oa_service *s = t->data;
  oa_server_app_budget_reset(s->app);
  uint64_t start = uv_hrtime();
  int32_t n;
  do
    n = oa_engine_expire_some(s->engine, EXPIRE_CHUNK);
  while (n == EXPIRE_CHUNK && uv_hrtime() - start < EXPIRE_SLICE_NS);
  uv_timer_start(t, on_expire, n == EXPIRE_CHUNK ? 1 : EXPIRE_EVERY_MS, 0);
}

static void on_flush(uv_timer_t *t) {
  oa_service *s = t->data;
  oa_error err;
  if (s->log && oa_declog_flush(s->log, &err))
    fprintf(stderr, "onearm: decision log: %s\n", err.message);
}

static void write_snapshot_work(uv_work_t *w) {
  oa_service *s = w->data;
  oa_snapshot_job_write(s->snap, s->data_dir, &s->work_err);
}

static void write_snapshot_done(uv_work_t *w, int status) {
  oa_service *s = w->data;
  if (status == 0 && s->work_err.code)
    fprintf(stderr, "onearm: snapshot: %s\n", s->work_err.message);
  oa_snapshot_end(s->engine, s->snap);
  s->snap = NULL;
  s->writing = 0;
  if (s->stopping) maybe_finish_stop(s);
}

static void on_snapshot(uv_timer_t *t) {
  oa_service *s = t->data;
  if (s->writing) return; /* the previous one is still being written */
  oa_error err;
  if (!(s->snap = oa_snapshot_begin(s->engine, oa_server_app_version(s->app), &err))) {
    fprintf(stderr, "onearm: snapshot: %s\n", err.message);
    return;
  }
  memset(&s->work_err, 0, sizeof s->work_err);
  s->work.data = s;
  s->writing = 1;
  if (uv_queue_work(s->loop, &s->work, write_snapshot_work, write_snapshot_done)) {
    s->writing = 0;
    oa_snapshot_end(s->engine, s->snap);
    s->snap = NULL;
  }
}

int oa_service_snapshot(oa_service *s, oa_error *err) {
  return oa_snapshot_save(s->engine, s->data_dir, oa_server_app_version(s->app), err);
}

/* ---- reload ---- */

static void close_watchers(oa_service *s);
static void open_watchers(oa_service *s);

int oa_service_reload(oa_service *s, oa_error *err) {
  int rc = oa_server_app_reload(s->app, err);
  if (rc) {
    fprintf(stderr, "onearm: reload failed, the previous app keeps serving: %s\n",
            err->message);
    return rc;
  }
  fprintf(stderr, "onearm: reloaded %s (version %s)\n", s->app_path,
          oa_server_app_version(s->app));
  if (s->cfg.watch_files && s->started && !s->stopping) {
    close_watchers(s);
    open_watchers(s);
  }
  return 0;
}

static void on_reload_async(uv_async_t *a) {
  oa_service *s = a->data;
  if (s->stopping) return;
  oa_error err;
  oa_service_reload(s, &err);
}

int oa_service_request_reload(oa_service *s) {
  return s->started ? uv_async_send(&s->reload_async) : OA_ESTATE;
}

static void on_debounce(uv_timer_t *t) {
  on_reload_async(&((oa_service *)t->data)->reload_async);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status) {
  watched_dir *w = h->data;
  oa_service *s = w->service;
  if (status < 0 || s->stopping) return;
  /* Only files the app loaded matter (not editor swap files). */
  int ours = 0;
  for (int32_t i = 0; filename && i < oa_server_app_file_count(s->app); i++) {
    const char *f = oa_server_app_file(s->app, i);
    const char *base = strrchr(f, '/');
    if (!strcmp(base ? base + 1 : f, filename)) ours = 1;
  }
  if (ours || !filename) uv_timer_start(&s->debounce, on_debounce, 200, 0);
}

static void on_handle_closed(uv_handle_t *h) {
  oa_service *s = h->data;
  s->open_handles--;
  if (s->stopping) maybe_finish_stop(s);
}

static void on_watcher_closed(uv_handle_t *h) {
  watched_dir *w = h->data;
  oa_service *s = w->service;
  free(w);
  s->open_handles--;
  if (s->stopping) maybe_finish_stop(s);
}

static void close_watchers(oa_service *s) {
  for (int i = 0; i < s->n_watch; i++)
    uv_close((uv_handle_t *)&s->watch[i]->handle, on_watcher_closed);
  s->n_watch = 0;
}

static void open_watchers(oa_service *s) {
  for (int32_t i = 0;
       i < oa_server_app_file_count(s->app) && s->n_watch < MAX_WATCHED_DIRS; i++) {
    char dir[1024];
    const char *f = oa_server_app_file(s->app, i);
    const char *slash = strrchr(f, '/');
    if (slash)
      snprintf(dir, sizeof dir, "%.*s", (int)(slash - f), f);
    else
      snprintf(dir, sizeof dir, ".");
    int seen = 0;
    for (int k = 0; k < s->n_watch; k++)
      seen |= !strcmp(s->watch[k]->path, dir);
    if (seen) continue;
    watched_dir *w = calloc(1, sizeof *w);
    if (!w) return;
    snprintf(w->path, sizeof w->path, "%s", dir);
    w->service = s;
    if (uv_fs_event_init(s->loop, &w->handle)) {
      free(w);
      continue;
    }
    w->handle.data = w;
    s->open_handles++;
    if (uv_fs_event_start(&w->handle, on_fs_event, w->path, 0)) {
      uv_close((uv_handle_t *)&w->handle, on_watcher_closed);
      continue;
    }
    s->watch[s->n_watch++] = w;
  }
}

/* ---- start and stop ---- */

static void init_timer(oa_service *s, uv_timer_t *t) {
  uv_timer_init(s->loop, t);
  t->data = s;
  s->open_handles++;
}

int oa_service_start(oa_service *s, struct uv_loop_s *loop, oa_error *err) {
  if (s->started) return oa_error_set(err, OA_ESTATE, "the service is already started");
  s->loop = loop;
  oa_engine_set_clock(s->engine, NULL, NULL);
  if (s->listen) {
    oa_http_config hcfg = oa_http_config_defaults();
    if (s->cfg.max_body_bytes) hcfg.max_body_bytes = s->cfg.max_body_bytes;
    if (s->cfg.max_connections > 0) hcfg.max_connections = s->cfg.max_connections;
    if (s->cfg.idle_timeout > 0)
      hcfg.idle_timeout_ms = (uint64_t)(s->cfg.idle_timeout * 1000);
    s->http = oa_http_server_new(loop, &hcfg, oa_api_handle, s->api, err);
    if (!s->http) return err ? err->code : OA_ENOMEM;
    oa_api_set_server(s->api, loop, s->http);
    if (oa_http_server_listen(s->http, s->host, s->port, err)) {
      oa_http_server_free(s->http);
      s->http = NULL;
      return err ? err->code : OA_EIO;
    }
  }
  s->started = 1;
  init_timer(s, &s->expire);
  init_timer(s, &s->snapshot);
  init_timer(s, &s->flush);
  init_timer(s, &s->debounce);
  uv_async_init(loop, &s->reload_async, on_reload_async);
  s->reload_async.data = s;
  s->open_handles++;
  uv_timer_start(&s->expire, on_expire, EXPIRE_EVERY_MS, 0);
  uv_timer_start(&s->flush, on_flush, 1000, 1000);
  init_timer(s, &s->retr_timer);
  uv_timer_start(&s->retr_timer, on_retr_timer, 500, 2000);
  if (s->cfg.snapshot_interval > 0) {
    uint64_t ms = (uint64_t)(s->cfg.snapshot_interval * 1000);
    uv_timer_start(&s->snapshot, on_snapshot, ms, ms);
  }
  if (s->cfg.watch_files) open_watchers(s);
  return 0;
}

static void maybe_finish_stop(oa_service *s) {
  if (!s->http_done || s->open_handles > 0 || s->writing || s->retr_job || !s->done)
    return;
  oa_error err;
  if (oa_service_snapshot(s, &err))
    fprintf(stderr, "onearm: final snapshot: %s\n", err.message);
  if (s->log && oa_declog_flush(s->log, &err))
    fprintf(stderr, "onearm: decision log: %s\n", err.message);
  void (*done)(oa_service *, void *) = s->done;
  s->done = NULL;
  done(s, s->done_ud);
}

static void on_http_stopped(oa_http_server *h, void *ud) {
  oa_service *s = ud;
  s->http_done = 1;
  maybe_finish_stop(s);
}

void oa_service_stop(oa_service *s, void (*done)(oa_service *s, void *ud), void *ud) {
  if (s->stopping) return;
  s->stopping = 1;
  s->done = done;
  s->done_ud = ud;
  if (!s->started) {
    s->http_done = 1;
    maybe_finish_stop(s);
    return;
  }
  uv_handle_t *handles[] = {
      (uv_handle_t *)&s->expire,       (uv_handle_t *)&s->snapshot,
      (uv_handle_t *)&s->flush,        (uv_handle_t *)&s->debounce,
      (uv_handle_t *)&s->reload_async, (uv_handle_t *)&s->retr_timer};
  for (size_t i = 0; i < sizeof handles / sizeof handles[0]; i++) {
    handles[i]->data = s;
    uv_close(handles[i], on_handle_closed);
  }
  close_watchers(s);
  if (s->http)
    oa_http_server_stop(s->http, on_http_stopped, s);
  else
    on_http_stopped(NULL, s);
}

void oa_service_free(oa_service *s) {
  if (!s) return;
  if (s->http) oa_http_server_free(s->http);
  oa_api_free(s->api);
  if (s->engine) oa_engine_set_close_hook(s->engine, NULL, NULL);
  oa_server_app_free(s->app);
  oa_engine_free(s->engine);
  oa_declog_close(s->log);
  oa_json_arena_free(&s->arena);
  free(s->app_path);
  free(s->data_dir);
  free(s->listen);
  free(s->admin_token);
  free(s);
}

/* ---- in-process calls ---- */

static oa_policy *service_policy(oa_service *s, const char *name, oa_error *err) {
  if (!name) name = oa_server_app_default_policy(s->app);
  oa_policy *p =
      name ? oa_engine_policy(s->engine, name) : oa_engine_policy_at(s->engine, 0);
  if (!p) oa_error_set(err, OA_ENOTFOUND, "unknown policy '%s'", name ? name : "");
  return p;
}

int oa_service_decide(oa_service *s, const char *policy, const char *event_id,
                      const oa_field *context, int32_t n_context,
                      const oa_candidate *cands, int32_t n, oa_result *out,
                      oa_error *err) {
  oa_policy *p = service_policy(s, policy, err);
  if (!p) return OA_ENOTFOUND;
  if (n < 1 || n > OA_MAX_CANDIDATES)
    return oa_error_set(err, OA_EINVAL, "a decision needs 1 to %d candidates, got %d",
                        OA_MAX_CANDIDATES, n);
  oa_features *fs = oa_policy_features(p);
  int32_t nctx = oa_features_nfields(fs, OA_SIDE_CONTEXT);
  int32_t nact = oa_features_nfields(fs, OA_SIDE_ACTION);
  oa_json_arena_reset(&s->arena);
  oa_value *ctx = oa_json_arena_alloc(&s->arena, sizeof(oa_value) * (size_t)(nctx + 1));
  const char **ids = oa_json_arena_alloc(&s->arena, sizeof(char *) * (size_t)n);
  const oa_value **acts = oa_json_arena_alloc(&s->arena, sizeof(oa_value *) * (size_t)n);
  if (!ctx || !ids || !acts) return oa_error_set(err, OA_ENOMEM, "out of memory");
  int rc = oa_features_bind(fs, OA_SIDE_CONTEXT, context, n_context, ctx, err);
  if (rc) return oa_error_prefix(err, "context");
  for (int32_t i = 0; i < n; i++) {
    ids[i] = cands[i].id;
    acts[i] = NULL;
    if (!cands[i].id)
      return oa_error_set(err, OA_EINVAL, "candidate %d has no id", i + 1);
    if (!cands[i].features) continue;
    oa_value *v = oa_json_arena_alloc(&s->arena, sizeof(oa_value) * (size_t)(nact + 1));
    if (!v) return oa_error_set(err, OA_ENOMEM, "out of memory");
    rc = oa_features_bind(fs, OA_SIDE_ACTION, cands[i].features, cands[i].n_features, v,
                          err);
    if (rc) return oa_error_prefix(err, "action '%s'", cands[i].id);
    acts[i] = v;
  }
  oa_decide_request req = {.event_id = event_id,
                           .context = ctx,
                           .n = n,
                           .ids = ids,
                           .actions = acts,
                           .keep_event = 1};
  oa_decision d;
  oa_server_app_budget_reset(s->app);
  rc = oa_policy_decide(p, &req, &d, err);
  if (rc) return rc;
  snprintf(out->event_id, sizeof out->event_id, "%s", d.event_id);
  out->chosen = d.chosen;
  out->chosen_id = cands[d.chosen].id;
  out->n = d.n;
  out->probs = d.prob;
  return 0;
}

int oa_service_reward(oa_service *s, const char *event_id, double value, oa_error *err) {
  oa_server_app_budget_reset(s->app);
  return oa_engine_reward(s->engine, event_id, value, err);
}

int oa_service_upsert_action(oa_service *s, const char *id, const oa_field *features,
                             int32_t n, oa_error *err) {
  if (!id) return oa_error_set(err, OA_EINVAL, "an action needs an id");
  int64_t slot =
      oa_catalog_upsert(oa_engine_catalog(s->engine), id, strlen(id), features, n, err);
  return slot < 0 ? (int)slot : 0;
}

int oa_service_remove_action(oa_service *s, const char *id, oa_error *err) {
  if (!id) return oa_error_set(err, OA_EINVAL, "an action needs an id");
  if (oa_catalog_remove(oa_engine_catalog(s->engine), id, strlen(id)))
    return oa_error_set(err, OA_ENOTFOUND, "unknown action '%s'", id);
  return 0;
}

/* Two-stage in process: the same path as POST /v1/rank with retrieve. */
int oa_service_decide_retrieve(oa_service *s, const char *policy, const char *event_id,
                               const oa_field *context, int32_t n_context,
                               const oa_retrieve_options *opt, oa_result *out,
                               oa_error *err) {
  oa_policy *p = service_policy(s, policy, err);
  if (!p) return OA_ENOTFOUND;
  const oa_retrieval_config *rc = oa_engine_retrieval_config(s->engine);
  if (!rc)
    return oa_error_set(err, OA_EINVAL,
                        "retrieval is not configured: the app needs retrieve = {...}");
  oa_retrieve_options none = {.fresh_share = -1};
  if (!opt) opt = &none;
  if (opt->n_equal < 0 || opt->n_equal > OA_VEC_MAX_META || opt->n_exclude < 0)
    return oa_error_set(err, OA_EINVAL, "bad filter counts");
  oa_features *fs = oa_policy_features(p);
  int32_t nctx = oa_features_nfields(fs, OA_SIDE_CONTEXT);
  oa_json_arena_reset(&s->arena);
  oa_value *ctx = oa_json_arena_alloc(&s->arena, sizeof(oa_value) * (size_t)(nctx + 1));
  if (!ctx) return oa_error_set(err, OA_ENOMEM, "out of memory");
  int rc_ = oa_features_bind(fs, OA_SIDE_CONTEXT, context, n_context, ctx, err);
  if (rc_) return oa_error_prefix(err, "context");
  oa_filter_pred preds[OA_VEC_MAX_META];
  for (int32_t i = 0; i < opt->n_equal; i++)
    preds[i] = (oa_filter_pred){
        .field = opt->equal_fields[i], .op = OA_PRED_EQ, .value = opt->equal_values[i]};
  oa_filter_spec fsp = {.exclude_ids = opt->exclude,
                        .n_exclude = opt->n_exclude,
                        .preds = preds,
                        .n_preds = opt->n_equal};
  oa_retrieve_request rq = {.n = opt->n ? opt->n : rc->n,
                            .mode =
                                opt->approximate ? OA_RETRIEVE_APPROX : OA_RETRIEVE_EXACT,
                            .nprobe = opt->nprobe,
                            .query = opt->query,
                            .query_dim = opt->query_dim,
                            .filter = (opt->n_exclude || opt->n_equal) ? &fsp : NULL,
                            .fresh_share = opt->fresh_share};
  oa_decide_request req = {
      .event_id = event_id, .context = ctx, .keep_event = 1, .retrieve = &rq};
  oa_decision d;
  oa_server_app_budget_reset(s->app);
  rc_ = oa_policy_decide(p, &req, &d, err);
  if (rc_) return rc_;
  snprintf(out->event_id, sizeof out->event_id, "%s", d.event_id);
  out->chosen = d.chosen;
  out->chosen_id = d.ids[d.chosen];
  out->n = d.n;
  out->probs = d.prob;
  return 0;
}
