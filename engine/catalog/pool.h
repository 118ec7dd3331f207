/* A small persistent worker pool for catalog scans.
 *
 * The engine owns its threads: OpenBLAS runs single-threaded and large
 * scans split themselves over this pool. A job is ntasks calls of
 * fn(ud, task); the calling thread works on its own job too, so a job
 * always finishes even when every worker is busy with other callers'
 * jobs, and a pool of 1 thread runs everything inline. Several threads
 * (e.g. libuv's thread pool) may submit jobs at the same time.
 *
 * Do not call oa_pool_run from the libuv loop thread with a large job:
 * it blocks until the job is done. */
#ifndef ONEARM_CATALOG_POOL_H
#define ONEARM_CATALOG_POOL_H

#include "onearm.h"

typedef struct oa_pool oa_pool;

/* A pool of `threads` threads counting the caller (threads - 1 workers);
 * threads <= 0 means one per online CPU. NULL + err on failure. */
oa_pool *oa_pool_new(int threads, oa_error *err);
/* Waits for running jobs' tasks to finish, joins the workers. NULL ok. */
void oa_pool_free(oa_pool *p);
int oa_pool_threads(const oa_pool *p);

/* Runs fn(ud, task) for every task in [0, ntasks) on at most max_threads
 * threads (the caller included; <= 0 = all), returns when all are done.
 * Tasks run in any order and concurrently: fn must only touch what its
 * task owns. */
void oa_pool_run(oa_pool *p, int ntasks, int max_threads, void (*fn)(void *ud, int task),
                 void *ud);

/* The process-wide pool used by retrieval (one thread per CPU), created on
 * first use; never freed before exit unless oa_pool_shared_shutdown is
 * called (leak checkers), after which the next use creates it again. */
oa_pool *oa_pool_shared(void);
void oa_pool_shared_shutdown(void);

#endif
