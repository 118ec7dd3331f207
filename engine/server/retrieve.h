/* The HTTP side of two-stage ranking (retrieve.c): parsing `retrieve` in
 * a rank body, and the `retrieved` summary in its response. */
#ifndef ONEARM_SERVER_RETRIEVE_H
#define ONEARM_SERVER_RETRIEVE_H

#include <json-c/json.h>

#include "runtime/engine.h"
#include "server/json.h"

/* Fills rq from the request's `retrieve` object, its (prepared) context
 * and its excludedActions (may be NULL); arrays come from arena and borrow
 * strings from the documents. 0, or an error for a 400: OA_EINVAL,
 * OA_EDIM (query length), OA_ENUMERIC (non-finite query). */
int oa_api_retrieve_request(oa_engine *e, json_object *retr, json_object *ctx,
                            json_object *excluded, oa_json_arena *arena,
                            oa_retrieve_request *rq, oa_error *err);
/* Appends ,"retrieved":{"n":N,"mode":M,"fresh":K} to a rank response. */
void oa_api_retrieve_put(oa_buf *b, const oa_retrieve_request *rq, int32_t n,
                         int32_t fresh);

#endif
