/* A catalog file loaded into a serving engine without stalling it (POST
 * /v1/actions:load): the file is checked on the libuv thread pool (every
 * row parses, vectors have the retrieval store's length and finite values;
 * on any problem nothing changes), then its rows are upserted on the loop
 * thread in slices of a few milliseconds, so requests keep being served
 * in between. Progress goes to stderr by tenths. */
#ifndef ONEARM_SERVER_CATALOG_LOAD_H
#define ONEARM_SERVER_CATALOG_LOAD_H

#include <uv.h>

#include "runtime/engine.h"

typedef struct oa_catalog_load_result {
  int rc;         /* 0, or the OA_E* code of err */
  oa_error err;   /* the problem (file, line) when rc != 0 */
  int checked;    /* 1 when the file passed its check (a failure after it is partial) */
  int64_t loaded; /* rows upserted */
  double seconds;
} oa_catalog_load_result;

/* Starts loading path into e (both borrowed until done runs). done runs
 * once, on the loop thread, when the load ends. 0, or an error (nothing
 * started, done never runs). */
int oa_catalog_load_begin(oa_engine *e, uv_loop_t *loop, const char *path,
                          void (*done)(void *ud, const oa_catalog_load_result *r),
                          void *ud, oa_error *err);

#endif
