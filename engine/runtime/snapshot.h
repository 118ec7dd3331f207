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
} oa_snapshot_report;

/* Writes a snapshot of e into dir (created if missing). */
int oa_snapshot_save(oa_engine *e, const char *dir, const char *app_version,
                     oa_error *err);
/* The two halves, so a server can build on its loop thread (a consistent
 * copy between requests) and write + fsync on a worker thread: build fills
 * out with the payload; write_file needs nothing but the bytes and the
 * directory, and is safe on any thread. */
int oa_snapshot_build(oa_engine *e, const char *app_version, oa_buf *out, oa_error *err);
int oa_snapshot_write_file(const char *dir, const oa_buf *payload, oa_error *err);
/* Restores the newest good snapshot in dir into e (0 with report->file ""
 * when there is none). */
int oa_snapshot_restore(oa_engine *e, const char *dir, oa_snapshot_report *report,
                        oa_error *err);

#endif
