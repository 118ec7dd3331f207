/* The worker pool (pool.h). Jobs are few and coarse (a scan splits into a
 * handful of row ranges), so one mutex guards the job list and the task
 * counters; the cost is a lock per task, not per row. A caller's job lives
 * on its stack: the caller leaves only when every task has finished and no
 * worker still holds the job. */
#include "catalog/pool.h"
#include "core/error.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define POOL_MAX_THREADS 256

typedef struct pool_job {
  void (*fn)(void *ud, int task);
  void *ud;
  int ntasks, next, done;
  int helpers, max_helpers; /* workers on this job now / allowed */
  struct pool_job *link;
} pool_job;

struct oa_pool {
  pthread_mutex_t mu;
  pthread_cond_t work; /* a job was queued, or stop */
  pthread_cond_t done; /* a job's task finished or a helper left */
  pool_job *jobs;      /* jobs with tasks left to hand out, oldest first */
  int stop, nworkers;
  pthread_t *threads;
};

static pool_job *pick_job(oa_pool *p) {
  for (pool_job *j = p->jobs; j; j = j->link)
    if (j->next < j->ntasks && j->helpers < j->max_helpers) return j;
  return NULL;
}

static void unlink_job(oa_pool *p, pool_job *job) {
  for (pool_job **pp = &p->jobs; *pp; pp = &(*pp)->link)
    if (*pp == job) {
      *pp = job->link;
      return;
    }
}

/* Run tasks of job until none is left to hand out; called with mu held. */
static void work_on(oa_pool *p, pool_job *job) {
  while (job->next < job->ntasks) {
    int t = job->next++;
    if (job->next == job->ntasks) unlink_job(p, job);
    pthread_mutex_unlock(&p->mu);
    job->fn(job->ud, t);
    pthread_mutex_lock(&p->mu);
    if (++job->done == job->ntasks) pthread_cond_broadcast(&p->done);
  }
}

static void *worker_main(void *arg) {
  oa_pool *p = arg;
  pthread_mutex_lock(&p->mu);
  while (!p->stop) {
    pool_job *job = pick_job(p);
    if (!job) {
      pthread_cond_wait(&p->work, &p->mu);
      continue;
    }
    job->helpers++;
    work_on(p, job);
    if (--job->helpers == 0) pthread_cond_broadcast(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

oa_pool *oa_pool_new(int threads, oa_error *err) {
  if (threads <= 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n > 0 ? (int)n : 1;
  }
  if (threads > POOL_MAX_THREADS) threads = POOL_MAX_THREADS;
  oa_pool *p = calloc(1, sizeof *p);
  if (!p || !(p->threads = calloc((size_t)threads, sizeof(pthread_t)))) {
    free(p);
    oa_error_set(err, OA_ENOMEM, "out of memory for a worker pool");
    return NULL;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->done, NULL);
  for (int i = 0; i < threads - 1; i++) {
    if (pthread_create(&p->threads[i], NULL, worker_main, p)) {
      oa_error_set(err, OA_ENOMEM, "cannot start worker thread %d of %d", i + 1,
                   threads - 1);
      oa_pool_free(p);
      return NULL;
    }
    p->nworkers++;
  }
  return p;
}

void oa_pool_free(oa_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nworkers; i++)
    pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->done);
  free(p->threads);
  free(p);
}

int oa_pool_threads(const oa_pool *p) {
  return p ? p->nworkers + 1 : 1;
}

void oa_pool_run(oa_pool *p, int ntasks, int max_threads, void (*fn)(void *ud, int task),
                 void *ud) {
  if (ntasks <= 0) return;
  int helpers = p ? p->nworkers : 0;
  if (max_threads > 0 && max_threads - 1 < helpers) helpers = max_threads - 1;
  if (helpers > ntasks - 1) helpers = ntasks - 1;
  if (helpers <= 0) {
    for (int t = 0; t < ntasks; t++)
      fn(ud, t);
    return;
  }
  pool_job job = {fn, ud, ntasks, 0, 0, 0, helpers, NULL};
  pthread_mutex_lock(&p->mu);
  pool_job **tail = &p->jobs;
  while (*tail)
    tail = &(*tail)->link;
  *tail = &job;
  if (helpers == 1)
    pthread_cond_signal(&p->work);
  else
    pthread_cond_broadcast(&p->work);
  work_on(p, &job);
  while (job.done < job.ntasks || job.helpers > 0)
    pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static oa_pool *shared_pool;

oa_pool *oa_pool_shared(void) {
  pthread_mutex_lock(&shared_mu);
  if (!shared_pool) shared_pool = oa_pool_new(0, NULL);
  oa_pool *p = shared_pool;
  pthread_mutex_unlock(&shared_mu);
  return p;
}

void oa_pool_shared_shutdown(void) {
  pthread_mutex_lock(&shared_mu);
  oa_pool_free(shared_pool);
  shared_pool = NULL;
  pthread_mutex_unlock(&shared_mu);
}
