/* The pending-event table: decisions waiting for their rewards. Internal to
 * the runtime; the engine's public calls (engine.h) wrap it. */
#ifndef ONEARM_RUNTIME_EVENTS_H
#define ONEARM_RUNTIME_EVENTS_H

#include "runtime/engine.h"

typedef struct oa__events oa__events;

oa__events *oa__events_new(oa_engine *e, oa_error *err);
void oa__events_free(oa__events *t);
int oa__events_set_capacity(oa__events *t, int32_t capacity, oa_error *err);
int oa__events_pending(const oa__events *t, const char *id, size_t len);
/* Records a decision; the caller already checked the id is not pending. */
int oa__events_keep(oa__events *t, oa_policy *p, const oa_decide_request *req,
                    const oa_decision *d, const oa_batch *batch, oa_error *err);
/* Drops (without learning) every event of a policy that is going away. */
void oa__events_drop_policy(oa__events *t, oa_policy *p);

/* Pending events to and from bytes. Loading appends events whose policy
 * exists with the same row width and skips the rest (counted); corrupt data
 * is OA_EFORMAT (events decoded before it stay). */
int oa__events_save(const oa__events *t, oa_buf *out);
int oa__events_load(oa__events *t, oa_reader *in, int32_t *restored, int32_t *skipped,
                    oa_error *err);

#endif
