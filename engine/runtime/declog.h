/* The decision log: one JSON line per closed event, compatible with Vowpal
 * Wabbit's DSJSON so logs can be replayed, evaluated offline (off-policy
 * estimators need the logged propensity) or fed to other tools.
 *
 * A line carries VW's fields: `_label_cost` (the negated reward: VW
 * minimises cost), `_label_probability` (propensity of the chosen action),
 * `_label_Action` (its 1-based position in the candidate list),
 * `_labelIndex` (0-based), `a` (1-based candidate positions, the chosen
 * first), `p` (their probabilities in that order), `c` (the context, with
 * `_multi` holding one object per candidate in candidate order), `EventId`,
 * `Timestamp` (decision time, ISO 8601 UTC) and `Version`; plus onearm's
 * own: `policy`, `appVersion`, `signals` (the raw signals, when any came),
 * `rewards` (how many), `defaulted`, `activated`, `learned`.
 *
 * Files: DIR/decisions.jsonl, renamed to DIR/decisions-<unix ms>.jsonl when
 * it passes the rotation size. Lines are buffered; oa_declog_flush writes
 * them (the server flushes on a timer and at shutdown). */
#ifndef ONEARM_RUNTIME_DECLOG_H
#define ONEARM_RUNTIME_DECLOG_H

#include <stddef.h>

#include "runtime/engine.h"

typedef struct oa_declog oa_declog;

/* Opens (appends to) DIR/decisions.jsonl; rotate_bytes 0 = 64 MiB. */
oa_declog *oa_declog_open(const char *dir, size_t rotate_bytes, oa_error *err);
/* Appends the line for ev; wall_now is the current Unix time in seconds. */
int oa_declog_write(oa_declog *log, const oa_closed_event *ev, const char *app_version,
                    double wall_now, oa_error *err);
int oa_declog_flush(oa_declog *log, oa_error *err);
const char *oa_declog_path(const oa_declog *log);
void oa_declog_close(oa_declog *log); /* flushes; NULL is fine */

#endif
