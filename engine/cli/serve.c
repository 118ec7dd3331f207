/* `onearm serve APP.lua`: the service (server/service.c) on a loop of its
 * own. This command owns the loop and the process's signals: SIGINT and
 * SIGTERM stop gracefully (stop accepting, finish requests in flight, write
 * a snapshot, exit 0); SIGHUP reloads the app. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/cli.h"
#include "core/tensor.h"
#include "onearm.h"

typedef struct serve_state {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm, sighup;
  oa_service *service;
  int stopping;
} serve_state;

static void usage(FILE *out) {
  fprintf(
      out,
      "usage: onearm serve APP.lua [--listen HOST:PORT] [--data DIR] [--admin-token T]\n"
      "                            [--snapshot-every SECONDS] [--no-watch] "
      "[--no-restore]\n"
      "                            [--max-body BYTES] [--max-connections N]"
      " [--idle-timeout SECONDS]\n"
      "  --listen          address to listen on (default 127.0.0.1:8080; port 0: any free"
      " port)\n"
      "  --data            data directory: snapshots and the decision log (default "
      "./var)\n"
      "  --admin-token     token for the catalog and reload routes (also"
      " ONEARM_ADMIN_TOKEN)\n"
      "  --snapshot-every  seconds between snapshots (default 60; 0: only at shutdown)\n"
      "  --no-watch        do not reload when the app's files change\n"
      "  --no-restore      start fresh even if the data directory holds a snapshot\n"
      "  --seed            seed for event ids and decision randomness (default 0)\n"
      "  --catalog FILE    upsert a catalog file at start: a CSV (id, v0..vN, fields)\n"
      "                    or a vector file from `onearm catalog load`\n");
}

static void on_stopped(oa_service *s, void *ud) {
  serve_state *st = ud;
  uv_close((uv_handle_t *)&st->sigint, NULL);
  uv_close((uv_handle_t *)&st->sigterm, NULL);
  uv_close((uv_handle_t *)&st->sighup, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  serve_state *st = h->data;
  if (signum == SIGHUP) {
    fprintf(stderr, "onearm: SIGHUP, reloading\n");
    oa_service_request_reload(st->service);
    return;
  }
  if (st->stopping) return;
  st->stopping = 1;
  fprintf(stderr, "onearm: %s, stopping\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
  oa_service_stop(st->service, on_stopped, st);
}

int cli_serve(int argc, char **argv) {
  /* One BLAS thread (DESIGN.md §8): its spinning workers would compete
   * with the loop and the retrieval pool for the same cores. */
  if (!getenv("OPENBLAS_NUM_THREADS")) oa_blas_threads(1);
  oa_service_config cfg;
  oa_service_config_defaults(&cfg);
  cfg.listen = "127.0.0.1:8080";
  cfg.data_dir = "./var";
  cfg.admin_token = getenv("ONEARM_ADMIN_TOKEN");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--listen") && v) {
      cfg.listen = v, i++;
    } else if (!strcmp(a, "--data") && v) {
      cfg.data_dir = v, i++;
    } else if (!strcmp(a, "--admin-token") && v) {
      cfg.admin_token = v, i++;
    } else if (!strcmp(a, "--snapshot-every") && v) {
      cfg.snapshot_interval = atof(v), i++;
    } else if (!strcmp(a, "--seed") && v) {
      cfg.seed = strtoull(v, NULL, 10), i++;
    } else if (!strcmp(a, "--no-watch")) {
      cfg.watch_files = 0;
    } else if (!strcmp(a, "--no-restore")) {
      cfg.restore = 0;
    } else if (!strcmp(a, "--max-body") && v) {
      cfg.max_body_bytes = (size_t)strtoull(v, NULL, 10), i++;
    } else if (!strcmp(a, "--max-connections") && v) {
      cfg.max_connections = atoi(v), i++;
    } else if (!strcmp(a, "--catalog") && v) {
      cfg.catalog_path = v, i++;
    } else if (!strcmp(a, "--idle-timeout") && v) {
      cfg.idle_timeout = atof(v), i++;
    } else if (a[0] != '-' && !cfg.app_path) {
      cfg.app_path = a;
    } else {
      fprintf(stderr, "onearm serve: unexpected argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!cfg.app_path) {
    usage(stderr);
    return 2;
  }
  oa_error err = {0};
  serve_state st;
  memset(&st, 0, sizeof st);
  st.service = oa_service_new(&cfg, &err);
  if (!st.service) {
    fprintf(stderr, "onearm serve: %s\n", err.message);
    return err.code == OA_EINVAL ? 2 : 1;
  }
  if (uv_loop_init(&st.loop)) {
    fprintf(stderr, "onearm serve: cannot create the event loop\n");
    oa_service_free(st.service);
    return 1;
  }
  int rc = 0;
  if (oa_service_start(st.service, &st.loop, &err)) {
    fprintf(stderr, "onearm serve: %s\n", err.message);
    rc = 1;
    oa_service_stop(st.service, NULL, NULL);
  } else {
    uv_signal_init(&st.loop, &st.sigint);
    uv_signal_init(&st.loop, &st.sigterm);
    uv_signal_init(&st.loop, &st.sighup);
    st.sigint.data = st.sigterm.data = st.sighup.data = &st;
    uv_signal_start(&st.sigint, on_signal, SIGINT);
    uv_signal_start(&st.sigterm, on_signal, SIGTERM);
    uv_signal_start(&st.sighup, on_signal, SIGHUP);
    const char *host = cfg.listen;
    const char *colon = strrchr(host, ':');
    fprintf(stderr, "onearm serving %s on http://%.*s:%d\n", cfg.app_path,
            (int)(colon - host), host, oa_service_port(st.service));
    fflush(stderr);
  }
  uv_run(&st.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&st.loop)) {
    uv_run(&st.loop, UV_RUN_DEFAULT);
    uv_loop_close(&st.loop);
  }
  oa_service_free(st.service);
  return rc;
}
