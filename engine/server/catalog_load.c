/* Loading a catalog file while serving: see catalog_load.h. */
#include "server/catalog_load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "server/catalog_file.h"

#define SLICE_NS   (4 * 1000 * 1000) /* upsert for at most this long per loop turn */
#define SLICE_ROWS 4096              /* and at most this many rows */

typedef struct load {
  uv_work_t work;
  uv_idle_t idle;
  oa_engine *e;
  char path[4096];
  char vec_name[64];
  int32_t dim;
  int64_t total;
  int tenth; /* progress reported so far, in tenths */
  uint64_t t0;
  oa_catalog_reader *reader;
  oa_catalog_load_result result;
  void (*done)(void *ud, const oa_catalog_load_result *r);
  void *ud;
} load;

static void free_load(uv_handle_t *h) {
  free(h->data);
}

static void finish(load *l) {
  oa_catalog_reader_close(l->reader);
  l->reader = NULL;
  l->result.seconds = (double)(uv_hrtime() - l->t0) * 1e-9;
  if (l->result.rc)
    fprintf(stderr, "onearm: catalog load from %s failed after %lld rows: %s\n", l->path,
            (long long)l->result.loaded, l->result.err.message);
  else
    fprintf(stderr, "onearm: catalog: %lld actions from %s (%.1f s)\n",
            (long long)l->result.loaded, l->path, l->result.seconds);
  l->done(l->ud, &l->result);
  uv_close((uv_handle_t *)&l->idle, free_load);
}

static void fail(load *l, int rc) {
  l->result.rc = rc ? rc : OA_EIO;
  finish(l);
}

/* One slice of upserts per loop turn. */
static void on_idle(uv_idle_t *h) {
  load *l = h->data;
  int rc = oa_catalog_reader_apply(l->reader, l->e, SLICE_ROWS, SLICE_NS, &l->result.err);
  l->result.loaded = oa_catalog_reader_applied(l->reader);
  if (rc <= 0) {
    if (rc < 0)
      fail(l, rc);
    else
      finish(l);
    return;
  }
  int tenth = l->total ? (int)(10 * l->result.loaded / l->total) : 10;
  if (tenth > l->tenth && tenth < 10) {
    l->tenth = tenth;
    fprintf(stderr, "onearm: catalog load: %d%% (%lld of %lld rows)\n", tenth * 10,
            (long long)l->result.loaded, (long long)l->total);
  }
}

static void check_work(uv_work_t *w) {
  load *l = w->data;
  l->result.rc =
      oa_catalog_file_check(l->path, l->vec_name, l->dim, &l->total, &l->result.err);
}

static void check_done(uv_work_t *w, int status) {
  load *l = w->data;
  if (status) {
    fail(l, oa_error_set(&l->result.err, OA_EIO, "the check was cancelled"));
    return;
  }
  if (l->result.rc) {
    finish(l);
    return;
  }
  l->result.checked = 1;
  /* The retrieval store may have been reconfigured (an app reload) while
   * the file was checked: the rows would no longer fit it. */
  int32_t dim;
  const char *vec_name = oa_catalog_file_vec_name(l->e, &dim);
  if (dim != l->dim || strcmp(vec_name, l->vec_name)) {
    fail(l, oa_error_set(&l->result.err, OA_ESTATE,
                         "the app's retrieval settings changed during the load; nothing "
                         "was loaded, try again"));
    return;
  }
  if (!(l->reader = oa_catalog_reader_open(l->path, l->vec_name, &l->result.err))) {
    fail(l, l->result.err.code);
    return;
  }
  uv_idle_start(&l->idle, on_idle);
}

int oa_catalog_load_begin(oa_engine *e, uv_loop_t *loop, const char *path,
                          void (*done)(void *ud, const oa_catalog_load_result *r),
                          void *ud, oa_error *err) {
  if (!e || !loop || !path || !path[0] || !done)
    return oa_error_set(err, OA_EINVAL,
                        "a catalog load needs an engine, a loop and a path");
  load *l = calloc(1, sizeof *l);
  if (!l) return oa_error_set(err, OA_ENOMEM, "out of memory");
  if (strlen(path) >= sizeof l->path) {
    free(l);
    return oa_error_set(err, OA_EINVAL, "the catalog path is too long");
  }
  memcpy(l->path, path, strlen(path) + 1);
  snprintf(l->vec_name, sizeof l->vec_name, "%s", oa_catalog_file_vec_name(e, &l->dim));
  l->e = e;
  l->done = done;
  l->ud = ud;
  l->t0 = uv_hrtime();
  l->work.data = l->idle.data = l;
  uv_idle_init(loop, &l->idle);
  int rc = uv_queue_work(loop, &l->work, check_work, check_done);
  if (rc) {
    uv_close((uv_handle_t *)&l->idle, free_load);
    return oa_error_set(err, OA_EIO, "cannot start the load: %s", uv_strerror(rc));
  }
  return 0;
}
