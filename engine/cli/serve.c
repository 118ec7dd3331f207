/* `onearm serve APP.lua`: create the engine, load the app into it, serve it
 * over HTTP on one libuv loop, reload the app on SIGHUP and when one of its
 * files changes (POST /v1/admin/reload too, through the API), stop
 * gracefully on SIGINT/SIGTERM (stop accepting, finish requests in flight,
 * exit 0).
 *
 * The loop belongs to this command: it creates it, runs it and closes it.
 * Everything else (HTTP layer, API) only registers handles on it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "cli/cli.h"
#include "core/error.h"
#include "server/api.h"
#include "server/app.h"
#include "server/http.h"

#define MAX_WATCH 16

typedef struct serve_state {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm, sighup;
  uv_timer_t expire, debounce;
  uv_fs_event_t *watch[MAX_WATCH]; /* the folders of the app's files (heap: a
                                      closing handle outlives a re-watch) */
  int nwatch;
  oa_http_server *http;
  oa_server_app *app;
  int stopping;
} serve_state;

static void usage(FILE *out) {
  fprintf(
      out,
      "usage: onearm serve APP.lua [--listen HOST:PORT] [--data DIR] [--admin-token T]\n"
      "                            [--max-body BYTES] [--max-connections N]"
      " [--idle-timeout SECONDS]\n"
      "  --listen        address to listen on (default 127.0.0.1:8080; port 0: any free"
      " port)\n"
      "  --data          data directory (default ./var)\n"
      "  --admin-token   token required by catalog routes (also ONEARM_ADMIN_TOKEN)\n");
}

/* "HOST:PORT" or "[V6]:PORT" into host (cap bytes) and port. */
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

static void free_handle(uv_handle_t *h) {
  free(h);
}

static void unwatch(serve_state *st) {
  for (int i = 0; i < st->nwatch; i++)
    uv_close((uv_handle_t *)st->watch[i], free_handle);
  st->nwatch = 0;
}

static void on_stopped(oa_http_server *s, void *ud) {
  serve_state *st = ud;
  uv_close((uv_handle_t *)&st->sigint, NULL);
  uv_close((uv_handle_t *)&st->sigterm, NULL);
  uv_close((uv_handle_t *)&st->sighup, NULL);
  uv_close((uv_handle_t *)&st->expire, NULL);
  uv_close((uv_handle_t *)&st->debounce, NULL);
  unwatch(st);
}

static void watch_files(serve_state *st);
static void on_debounce(uv_timer_t *t);

/* A change under a watched folder to one of the app's files: reload once
 * the writes have settled (editors write in several steps). */
static void on_fs_event(uv_fs_event_t *h, const char *name, int events, int status) {
  serve_state *st = h->data;
  if (status || !name || st->stopping) return;
  int32_t n = oa_server_app_file_count(st->app);
  for (int32_t i = 0; i < n; i++) {
    const char *f = oa_server_app_file(st->app, i);
    const char *base = strrchr(f, '/');
    if (!strcmp(base ? base + 1 : f, name)) {
      uv_timer_start(&st->debounce, on_debounce, 100, 0);
      break;
    }
  }
}

static void reload(serve_state *st) {
  oa_error err = {0};
  if (!oa_server_app_reload(st->app, &err)) {
    unwatch(st); /* the new version may load other files */
    watch_files(st);
  }
}

static void on_debounce(uv_timer_t *t) {
  reload(t->data);
}

static void watch_files(serve_state *st) {
  int32_t n = oa_server_app_file_count(st->app);
  char dirs[MAX_WATCH][4096];
  for (int32_t i = 0; i < n && st->nwatch < MAX_WATCH; i++) {
    const char *f = oa_server_app_file(st->app, i);
    const char *slash = strrchr(f, '/');
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - f) : 1, slash ? f : ".");
    int seen = 0;
    for (int k = 0; k < st->nwatch; k++)
      seen |= !strcmp(dirs[k], dir);
    if (seen) continue;
    uv_fs_event_t *w = malloc(sizeof *w);
    if (!w) break;
    uv_fs_event_init(&st->loop, w);
    w->data = st;
    if (uv_fs_event_start(w, on_fs_event, dir, 0)) {
      uv_close((uv_handle_t *)w, free_handle);
      continue;
    }
    st->watch[st->nwatch] = w;
    snprintf(dirs[st->nwatch], sizeof dirs[0], "%s", dir);
    st->nwatch++;
  }
}

static void on_signal(uv_signal_t *h, int signum) {
  serve_state *st = h->data;
  if (st->stopping) return;
  if (signum == SIGHUP) {
    fprintf(stderr, "onearm: SIGHUP, reloading\n");
    reload(st);
    return;
  }
  st->stopping = 1;
  fprintf(stderr, "onearm: %s, stopping\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
  oa_http_server_stop(st->http, on_stopped, st);
}

/* Events whose reward wait has passed close on this timer, between
 * requests. */
static void on_expire(uv_timer_t *t) {
  serve_state *st = t->data;
  oa_server_app_budget_reset(st->app); /* closing events may run Lua models */
  oa_engine_expire(oa_server_app_engine(st->app));
}

int cli_serve(int argc, char **argv) {
  const char *app_path = NULL, *listen = "127.0.0.1:8080", *data = "./var";
  const char *token = getenv("ONEARM_ADMIN_TOKEN");
  oa_http_config hcfg = oa_http_config_defaults();
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--listen") && v) {
      listen = v, i++;
    } else if (!strcmp(a, "--data") && v) {
      data = v, i++;
    } else if (!strcmp(a, "--admin-token") && v) {
      token = v, i++;
    } else if (!strcmp(a, "--max-body") && v) {
      hcfg.max_body_bytes = (size_t)strtoull(v, NULL, 10), i++;
    } else if (!strcmp(a, "--max-connections") && v) {
      hcfg.max_connections = atoi(v), i++;
    } else if (!strcmp(a, "--idle-timeout") && v) {
      hcfg.idle_timeout_ms = (uint64_t)(atof(v) * 1000), i++;
    } else if (a[0] != '-' && !app_path) {
      app_path = a;
    } else {
      fprintf(stderr, "onearm serve: unexpected argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  char host[256];
  int port;
  if (!app_path || parse_listen(listen, host, sizeof host, &port)) {
    if (app_path)
      fprintf(stderr, "onearm serve: --listen wants HOST:PORT, got '%s'\n", listen);
    usage(stderr);
    return 2;
  }
  if (make_dirs(data)) {
    fprintf(stderr, "onearm serve: cannot create data directory '%s': %s\n", data,
            strerror(errno));
    return 1;
  }

  oa_error err = {0};
  oa_engine *engine = oa_engine_new(0, &err);
  oa_server_app *app = engine ? oa_server_app_load(engine, app_path, NULL, &err) : NULL;
  if (!app) {
    fprintf(stderr, "onearm serve: %s\n", err.message);
    oa_engine_free(engine);
    return 1;
  }
  oa_api_app desc;
  oa_server_app_describe(app, &desc);
  desc.admin_token = token;
  desc.admin_loopback =
      !strcmp(host, "127.0.0.1") || !strcmp(host, "::1") || !strcmp(host, "localhost");
  oa_api *api = oa_api_new(&desc, &err);
  serve_state st;
  memset(&st, 0, sizeof st);
  int rc = 1;
  if (!api || uv_loop_init(&st.loop)) {
    fprintf(stderr, "onearm serve: %s\n",
            api ? "cannot create the event loop" : err.message);
    oa_api_free(api);
    oa_server_app_free(app);
    oa_engine_free(engine);
    return 1;
  }
  st.app = app;
  st.http = oa_http_server_new(&st.loop, &hcfg, oa_api_handle, api, &err);
  if (!st.http) {
    fprintf(stderr, "onearm serve: %s\n", err.message);
    goto done;
  }
  oa_api_set_http(api, st.http);
  uv_signal_init(&st.loop, &st.sigint);
  uv_signal_init(&st.loop, &st.sigterm);
  uv_signal_init(&st.loop, &st.sighup);
  uv_timer_init(&st.loop, &st.expire);
  uv_timer_init(&st.loop, &st.debounce);
  st.sigint.data = st.sigterm.data = st.sighup.data = &st;
  st.expire.data = st.debounce.data = &st;
  if (oa_http_server_listen(st.http, host, port, &err)) {
    fprintf(stderr, "onearm serve: %s\n", err.message);
    st.stopping = 1;
    oa_http_server_stop(st.http, on_stopped, &st);
    uv_run(&st.loop, UV_RUN_DEFAULT);
    goto done;
  }
  uv_signal_start(&st.sigint, on_signal, SIGINT);
  uv_signal_start(&st.sigterm, on_signal, SIGTERM);
  uv_signal_start(&st.sighup, on_signal, SIGHUP);
  watch_files(&st);
  uv_timer_start(&st.expire, on_expire, 250, 250);
  fprintf(stderr, "onearm serving %s on http://%s%s%s:%d\n", app_path,
          strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
          oa_http_server_port(st.http));
  fflush(stderr);
  uv_run(&st.loop, UV_RUN_DEFAULT);
  rc = 0;
done:
  if (st.http) oa_http_server_free(st.http);
  if (uv_loop_close(&st.loop)) {
    uv_run(&st.loop, UV_RUN_DEFAULT); /* drain close callbacks of failed setups */
    uv_loop_close(&st.loop);
  }
  oa_api_free(api);
  oa_server_app_free(app);
  oa_engine_free(engine);
  return rc;
}
