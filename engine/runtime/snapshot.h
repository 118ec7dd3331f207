/* Snapshots: the engine's learned state in one file, written atomically.
 *
 * A snapshot holds the catalog, every policy's state (statistics, action
 * map, model) and the pending events. The file is
 *   "ONEARMSS" | u32 format version | u64 payload bytes | u64 XXH64(payload) | payload
 * written to DIR/state.oas.tmp, fsync'ed, then renamed over DIR/state.oas
 * after the previous good snapshot is moved to DIR/state.prev.oas; the
 * directory is fsync'ed last. A reader checks magic, version, length and
 * checksum before it parses anything, and falls back to state.prev.oas
 * when state.oas is missing, truncated or corrupt: garbage never loads.
 *
 * The payload (version 2): "SNAP" v2 | str app version | u64 retrieval
 * section bytes | the retrieval section | catalog | policies | events.
 * Version 1 files (no retrieval section) still load.
 *
 * Retrieval at scale: when the engine has a retrieval store, its vector
 * matrix is written first as a sidecar, DIR/state.<16 hex>.oav (the
 * vector store's memory-mappable file, catalog/vectors.c), and the
 * snapshot's retrieval section references it by name, size, checksum and
 * matrix hash, followed by the IVF index (runtime/retrieval_persist.c).
 * Restoring maps the sidecar and adopts it and the index instead of
 * rebuilding them from the catalog records; a missing, truncated, corrupt
 * or mismatched sidecar is reported (report->retrieval_problem) and the
 * store is rebuilt from the catalog records of the same snapshot, which
 * are always complete. Sidecars that neither state.oas nor state.prev.oas
 * references are deleted after each snapshot, so old snapshots and their
 * sidecars go together.
 *
 * Restoring matches saved policies to the engine's policies by name. A
 * policy whose feature space or model shape changed is refused (the whole
 * restore fails and nothing changes) unless that policy was marked with
 * oa_policy_set_reset, in which case it starts fresh. Saved policies the
 * engine no longer has are skipped and reported. */
#ifndef ONEARM_RUNTIME_SNAPSHOT_H
#define ONEARM_RUNTIME_SNAPSHOT_H

#include "runtime/engine.h"

#define OA_SNAPSHOT_FILE "state.oas"
#define OA_SNAPSHOT_PREV "state.prev.oas"

typedef struct oa_snapshot_report {
  char file[4096];   /* the file restored from; "" when none existed */
  int used_previous; /* 1: the newest file was bad and the previous one was used */
  char problem[512]; /* why the newest file was rejected */
  char app_version[128];
  int32_t policies_restored, policies_reset, policies_skipped;
  int32_t events_restored, events_skipped;
  int64_t actions;
  int retrieval_adopted;       /* 1: the store came from the sidecar (no rebuild) */
  char retrieval_problem[512]; /* why a referenced sidecar was not used */
} oa_snapshot_report;

/* Writes a snapshot of e into dir (created if missing), with the retrieval
 * sidecar: begin + write + end on this thread. */
int oa_snapshot_save(oa_engine *e, const char *dir, const char *app_version,
                     oa_error *err);

/* The three steps, so a server builds on its loop thread (a consistent
 * copy between requests) and writes + fsyncs on a worker thread:
 *   begin  (loop thread) serialises catalog, policies and events, and
 *          freezes the retrieval store: catalog changes are applied to the
 *          catalog at once and reach the store at end (retrieval.h);
 *   write  (any thread) writes the sidecar from the frozen store, then
 *          the snapshot; a sidecar that cannot be written is left out
 *          (the snapshot still is) and said on stderr;
 *   end    (loop thread, always, after write or instead of it) thaws the
 *          store and frees the job.
 * The matrix is never copied: the worker writes it from the store. */
typedef struct oa_snapshot_job oa_snapshot_job;
oa_snapshot_job *oa_snapshot_begin(oa_engine *e, const char *app_version, oa_error *err);
int oa_snapshot_job_write(oa_snapshot_job *job, const char *dir, oa_error *err);
void oa_snapshot_end(oa_engine *e, oa_snapshot_job *job);

/* The older two halves: the same snapshot without a sidecar (a restore
 * then rebuilds the retrieval store from the catalog records). build fills
 * out with the payload; write_file needs nothing but the bytes and the
 * directory, and is safe on any thread. */
int oa_snapshot_build(oa_engine *e, const char *app_version, oa_buf *out, oa_error *err);
int oa_snapshot_write_file(const char *dir, const oa_buf *payload, oa_error *err);
/* Restores the newest good snapshot in dir into e (0 with report->file ""
 * when there is none). */
int oa_snapshot_restore(oa_engine *e, const char *dir, oa_snapshot_report *report,
                        oa_error *err);

#endif
